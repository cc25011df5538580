import Provisioning
import Testing

@Suite struct MosquittoPasswordHashTests {
  /// Written by mosquitto_passwd 2.0.11 (Debian 12): `mosquitto_passwd -c -b F meter-main 'correct horse battery'`.
  static let fromMosquittoPasswd =
    "$7$101$+ATiG6OM+TMf4zva$Vp37Ru69Is3yS+MgmG4b1BS+cCs0sU9asUj1Kk0BIZ8CvevjwniJsN8mwN7kghKdrOUOn1PLPpnBovxBDogk1g=="

  @Test func checksAHashMosquittoPasswdWrote() {
    #expect(
      MosquittoPasswordHash.verify(password: "correct horse battery", against: Self.fromMosquittoPasswd) == .matches)
    #expect(MosquittoPasswordHash.verify(password: "correct horse", against: Self.fromMosquittoPasswd) == .differs)
  }

  @Test func makesMosquittosFormat() {
    // PBKDF2-HMAC-SHA512, 101 rounds, salt 00..0b, as Python's hashlib.pbkdf2_hmac computes it.
    let hash = MosquittoPasswordHash.make(password: "pw", salt: Array(0..<12))
    #expect(
      hash
        == "$7$101$AAECAwQFBgcICQoL$l8zqSPOVOsX6BzXddvHVSUz51tfFGYiwZgYMerEYSK2kmFD86m93us2E5cM8HAComZhsUAqG/9HmFNzmBd+GRQ=="
    )
    #expect(MosquittoPasswordHash.verify(password: "pw", against: hash) == .matches)
  }

  @Test func checksMosquitto1sSaltedSHA512() {
    let hash =
      "$6$YWJjZGVmZ2hpamts$gzSYijir7wR6QcZjtkzSBAcVNsudZyrGmXyBmTZ85mgwdkhgOXlodbxVifwiXp5dMSyLUE2X/1NcK90QDtNXuA=="
    #expect(MosquittoPasswordHash.verify(password: "pw", against: hash) == .matches)
    #expect(MosquittoPasswordHash.verify(password: "pW", against: hash) == .differs)
  }

  @Test func anUnknownFormatIsSaidSo() {
    #expect(MosquittoPasswordHash.verify(password: "pw", against: "plaintext") == .unknownFormat)
    #expect(MosquittoPasswordHash.verify(password: "pw", against: "$7$101$notbase64!$x") == .unknownFormat)
  }
}

@Suite struct MosquittoPasswordFileTests {
  @Test func keepsOtherLinesAndOrderWhenAnEntryChanges() {
    let text = "# made by hand\nmeter-main:$7$old\n\npanel-gym:$7$gym\n"
    var file = MosquittoPasswordFile(text: text)
    #expect(file.users == ["meter-main", "panel-gym"])
    #expect(file.text == text)
    file.set("meter-main", hash: "$7$new")
    file.set("meter-ev", hash: "$7$ev")
    #expect(file.text == "# made by hand\nmeter-main:$7$new\n\npanel-gym:$7$gym\nmeter-ev:$7$ev\n")
  }

  @Test func theFirstOfDuplicateEntriesIsTheOneThatCounts() {
    var file = MosquittoPasswordFile(text: "a:$7$one\na:$7$two\n")
    #expect(file.hash(of: "a") == "$7$one")
    file.set("a", hash: "$7$three")
    #expect(file.text == "a:$7$three\n")
  }
}

@Suite struct MosquittoACLTests {
  @Test func readsTheUsersAndWhichOnesWriteMeterTopics() throws {
    let text = """
      # user commented-out
      user microgrid-edge
      topic read building/meters/#
      topic readwrite microgrid-edge/#

      user meter-main
      topic write building/meters/main/#
      user homeassistant
      pattern write microgrid-edge/+/command/%u
      """
    let users = try MosquittoACL.users(in: text, path: "x.acl")
    #expect(users.map(\.name) == ["microgrid-edge", "meter-main", "homeassistant"])
    #expect(users.map(\.line) == [2, 6, 8])
    #expect(users.map(\.writesMeterTopics) == [false, true, false])
  }

  @Test func anACLWithoutUsersIsAnError() {
    #expect(throws: (any Error).self) { try MosquittoACL.users(in: "# nobody\npattern read a/%u\n", path: "x.acl") }
    do {
      _ = try MosquittoACL.users(in: "pattern read a/%u\n", path: "/etc/mosquitto/x.acl")
    } catch {
      #expect("\(error)".hasPrefix("/etc/mosquitto/x.acl: names no user"))
    }
  }
}

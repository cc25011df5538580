import Provisioning
import SiteModel
import Synchronization
import Testing

/// Passwords and salts from a counter, so every run of a test plans the same thing.
func countingGenerator() -> SecretGenerator {
  let next = Mutex<UInt8>(0)
  return SecretGenerator { count in
    next.withLock { value in
      (0..<count).map { _ in
        value &+= 1
        return value % 200
      }
    }
  }
}

let appliancePasswordFile = "/etc/microgrid-edge/mqtt-password"

func survey(
  passwordFile: MosquittoPasswordFile? = nil, applianceState: SecretState = .missing,
  chargers: [ProvisioningSurvey.ChargerPassword] = [], token: ProvisioningSurvey.CentralToken? = nil,
  rotate: [String] = [], extraUsers: [BrokerUser] = []
) -> ProvisioningSurvey {
  ProvisioningSurvey(
    users: [
      BrokerUser(name: "microgrid-edge", role: .appliance, source: "site.yaml: mqtt.username"),
      BrokerUser(name: "microgrid-edge", role: .appliance, source: "x.acl:1"),
      BrokerUser(name: "meter-main", role: .meterGateway, source: "x.acl:5"),
      BrokerUser(name: "homeassistant", role: .homeAssistant, source: "x.acl:9"),
    ] + extraUsers,
    appliance: .init(
      username: "microgrid-edge", password: .file(path: appliancePasswordFile, state: applianceState)),
    passwordFilePath: "/etc/mosquitto/microgrid-edge.passwd", passwordFile: passwordFile, chargers: chargers,
    centralToken: token, rotate: rotate)
}

/// The plan's password file, read back.
func entries(_ plan: ProvisioningPlan) -> MosquittoPasswordFile? {
  plan.passwordFileText.map(MosquittoPasswordFile.init(text:))
}

@Suite struct ProvisioningPlanTests {
  @Test func aNewApplianceGetsEveryUserAndTheAppliancesFile() throws {
    let plan = try ProvisioningPlan.make(
      survey(chargers: [.init(id: "C1", path: "/etc/microgrid-edge/ocpp/C1.password", state: .missing)]),
      generator: countingGenerator())
    let file = try #require(entries(plan))
    #expect(file.users == ["microgrid-edge", "meter-main", "homeassistant"])
    let applianceWrite = try #require(plan.secretWrites.first { $0.path == appliancePasswordFile })
    let password = String(applianceWrite.content.dropLast())
    #expect(applianceWrite.content.hasSuffix("\n") && password.count == SecretGenerator.passwordLength)
    #expect(MosquittoPasswordHash.verify(password: password, against: file.hash(of: "microgrid-edge")!) == .matches)
    // The technician is given the meter's, Home Assistant's and the charger's, not the appliance's.
    let given = plan.credentials.map { ProvisioningReport.rotateName(of: $0.outcome.subject) }
    #expect(given == ["meter-main", "homeassistant", "C1"])
    for (outcome, password) in plan.credentials {
      if case .brokerUser(let user) = outcome.subject {
        #expect(MosquittoPasswordHash.verify(password: password, against: file.hash(of: user.name)!) == .matches)
      }
    }
    let charger = try #require(plan.secretWrites.first { $0.path.hasSuffix("C1.password") })
    #expect(charger.content == plan.credentials.last!.password + "\n")
  }

  @Test func whatExistsAndIsValidIsKept() throws {
    let first = try ProvisioningPlan.make(survey(), generator: countingGenerator())
    let appliance = String(first.secretWrites[0].content.dropLast())
    let again = try ProvisioningPlan.make(
      survey(passwordFile: entries(first), applianceState: .present(appliance)), generator: countingGenerator())
    #expect(again.passwordFileText == nil)
    #expect(again.secretWrites.isEmpty)
    #expect(again.credentials.isEmpty)
    #expect(again.outcomes.allSatisfy { $0.change == .unchanged })
  }

  @Test func aMismatchIsFixedFromTheAppliancesFile() throws {
    let old = MosquittoPasswordFile(
      text:
        "microgrid-edge:\(MosquittoPasswordHash.make(password: "old", salt: Array(0..<12)))\nmeter-main:$7$x\nhomeassistant:$7$y\n"
    )
    let plan = try ProvisioningPlan.make(
      survey(passwordFile: old, applianceState: .present("from-the-file")), generator: countingGenerator())
    #expect(plan.secretWrites.isEmpty, "the daemon's file decides; it is not rewritten")
    let file = try #require(entries(plan))
    #expect(
      MosquittoPasswordHash.verify(password: "from-the-file", against: file.hash(of: "microgrid-edge")!) == .matches)
    #expect(file.hash(of: "meter-main") == "$7$x")
    guard case .repaired(let why, nil) = plan.outcomes[0].change else {
      Issue.record("expected the appliance's entry to be repaired, got \(plan.outcomes[0].change)")
      return
    }
    #expect(why.contains("did not match \(appliancePasswordFile)"))
  }

  @Test func anApplianceMissingFromTheBrokerIsAddedWithItsFilesPassword() throws {
    let old = MosquittoPasswordFile(text: "meter-main:$7$x\nhomeassistant:$7$y\n")
    let plan = try ProvisioningPlan.make(
      survey(passwordFile: old, applianceState: .present("kept")), generator: countingGenerator())
    let file = try #require(entries(plan))
    #expect(MosquittoPasswordHash.verify(password: "kept", against: file.hash(of: "microgrid-edge")!) == .matches)
    #expect(plan.credentials.isEmpty)
  }

  @Test func aMissingApplianceFileGetsANewPasswordInBothPlaces() throws {
    let old = MosquittoPasswordFile(text: "microgrid-edge:$7$lost\nmeter-main:$7$x\nhomeassistant:$7$y\n")
    let plan = try ProvisioningPlan.make(
      survey(passwordFile: old, applianceState: .unusable("has nothing on its first line")),
      generator: countingGenerator())
    let written = try #require(plan.secretWrites.first)
    let file = try #require(entries(plan))
    #expect(
      MosquittoPasswordHash.verify(
        password: String(written.content.dropLast()), against: file.hash(of: "microgrid-edge")!)
        == .matches)
    #expect(file.users == ["microgrid-edge", "meter-main", "homeassistant"], "the entry is replaced in place")
  }

  @Test func rotationReplacesOnlyTheNamedPassword() throws {
    let old = MosquittoPasswordFile(text: "microgrid-edge:$7$a\nmeter-main:$7$x\nhomeassistant:$7$y\n")
    let plan = try ProvisioningPlan.make(
      survey(
        passwordFile: old, applianceState: .present("a"),
        chargers: [.init(id: "C1", path: "/c1", state: .present("charger"))], rotate: ["meter-main", "C1"]),
      generator: countingGenerator())
    let file = try #require(entries(plan))
    #expect(file.hash(of: "homeassistant") == "$7$y")
    #expect(file.hash(of: "meter-main") != "$7$x")
    #expect(plan.credentials.map { ProvisioningReport.rotateName(of: $0.outcome.subject) } == ["meter-main", "C1"])
    #expect(plan.secretWrites.map(\.path) == ["/c1"])
  }

  @Test func chargersSharingAFileShareItsPassword() throws {
    let plan = try ProvisioningPlan.make(
      survey(chargers: [
        .init(id: "C1", path: "/shared", state: .missing), .init(id: "C2", path: "/shared", state: .missing),
      ]), generator: countingGenerator())
    #expect(plan.secretWrites.filter { $0.path == "/shared" }.count == 1)
    let given = plan.credentials.filter { if case .charger = $0.outcome.subject { true } else { false } }
    #expect(given.count == 2 && given[0].password == given[1].password)
  }

  @Test func usersNamedByNothingAreLeftAlone() throws {
    let old = MosquittoPasswordFile(text: "panel-gym:$7$g\n")
    let plan = try ProvisioningPlan.make(survey(passwordFile: old), generator: countingGenerator())
    #expect(plan.otherUsers == ["panel-gym"])
    #expect(entries(plan)?.hash(of: "panel-gym") == "$7$g")
  }

  @Test(arguments: ["panel/gym", "panel+", "#", "a:b", "two words", ""])
  func anInvalidUserNameIsRefusedNamingWhereItCameFrom(name: String) {
    #expect {
      try ProvisioningPlan.make(
        survey(extraUsers: [BrokerUser(name: name, role: .panel, source: "x.acl:42")]), generator: countingGenerator())
    } throws: { error in
      "\(error)".hasPrefix("x.acl:42: ")
    }
  }

  @Test func aUserOnlyThePasswordFileHasCanBeRotated() throws {
    let old = MosquittoPasswordFile(text: "microgrid-edge:$7$a\nmeter-main:$7$x\nhomeassistant:$7$y\npanel-gym:$7$g\n")
    let plan = try ProvisioningPlan.make(
      survey(passwordFile: old, applianceState: .present("a"), rotate: ["panel-gym"]), generator: countingGenerator())
    let (outcome, password) = try #require(plan.credentials.first)
    #expect(ProvisioningReport.rotateName(of: outcome.subject) == "panel-gym")
    #expect(
      MosquittoPasswordHash.verify(password: password, against: entries(plan)!.hash(of: "panel-gym")!) == .matches)
    #expect(plan.otherUsers.isEmpty)
  }

  @Test func rotatingAnUnknownNameIsRefused() {
    #expect(throws: InputError.self) {
      try ProvisioningPlan.make(survey(rotate: ["meter-pv"]), generator: countingGenerator())
    }
  }

  @Test func theCentralTokenIsWrittenWhenSuppliedAndReportedMissingOtherwise() throws {
    let missing = try ProvisioningPlan.make(
      survey(token: .init(path: "/t", state: .missing)), generator: countingGenerator())
    #expect(missing.outcomes.last?.change == .tokenMissing(why: "the file does not exist"))
    let supplied = try ProvisioningPlan.make(
      survey(token: .init(path: "/t", state: .present("old"), supplied: "new")), generator: countingGenerator())
    #expect(supplied.outcomes.last?.change == .tokenWritten(replaced: true))
    #expect(supplied.secretWrites.last == .init(path: "/t", content: "new\n"))
    let same = try ProvisioningPlan.make(
      survey(token: .init(path: "/t", state: .present("new"), supplied: "new")), generator: countingGenerator())
    #expect(same.outcomes.last?.change == .unchanged)
  }
}

@Suite struct SecretGeneratorTests {
  @Test func passwordsUseOnlyTheAlphabet() throws {
    let password = try SecretGenerator.system.password()
    #expect(password.count == 24)
    #expect(password.allSatisfy { SecretGenerator.alphabet.contains($0) })
    #expect(try SecretGenerator.system.password() != password)
  }
}

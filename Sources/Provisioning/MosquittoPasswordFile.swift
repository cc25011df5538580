import CryptoExtras
import Foundation

/// mosquitto's password hashes, as `mosquitto_passwd` 2.0 writes them and the broker checks
/// them (src/password_mosq.c): `$7$<iterations>$<salt>$<hash>`, the hash being
/// PBKDF2-HMAC-SHA512 of the password over a 12-byte salt, 101 iterations, 64 bytes, salt
/// and hash in standard base64. The older `$6$<salt>$<hash>` (one SHA-512 of the password
/// then the salt, mosquitto 1.x) is still accepted by the broker, so it is checked too.
public enum MosquittoPasswordHash {
  public static let iterations = 101
  public static let saltByteCount = 12

  /// The hash line part for `password` with this `salt` (12 random bytes).
  public static func make(password: String, salt: [UInt8], iterations: Int = iterations) -> String {
    "$7$\(iterations)$\(Data(salt).base64EncodedString())$\(Data(pbkdf2(password, salt, iterations)).base64EncodedString())"
  }

  public enum Verdict: Sendable, Hashable {
    case matches, differs
    /// A format this build does not know (so it cannot say whether the password matches).
    case unknownFormat
  }

  /// Whether `hash` (the part after `user:`) is `password`'s.
  public static func verify(password: String, against hash: String) -> Verdict {
    let fields = hash.split(separator: "$", omittingEmptySubsequences: false).map(String.init)
    // "$7$101$salt$hash" splits into "", "7", "101", salt, hash.
    if fields.count == 5, fields[0].isEmpty, fields[1] == "7", let rounds = Int(fields[2]), rounds > 0,
      let salt = Data(base64Encoded: fields[3]), let expected = Data(base64Encoded: fields[4]), expected.count == 64
    {
      return constantTimeEqual(pbkdf2(password, Array(salt), rounds), Array(expected)) ? .matches : .differs
    }
    if fields.count == 4, fields[0].isEmpty, fields[1] == "6", let salt = Data(base64Encoded: fields[2]),
      let expected = Data(base64Encoded: fields[3]), expected.count == 64
    {
      var sha = SHA512()
      sha.update(data: Data(password.utf8))
      sha.update(data: salt)
      return constantTimeEqual(Array(sha.finalize()), Array(expected)) ? .matches : .differs
    }
    return .unknownFormat
  }

  static func pbkdf2(_ password: String, _ salt: [UInt8], _ rounds: Int) -> [UInt8] {
    // mosquitto's own iteration count: far below what CryptoExtras checks for by default,
    // and it must be this low to be mosquitto's format.
    let key = try! KDF.Insecure.PBKDF2.deriveKey(
      from: Array(password.utf8), salt: salt, using: .sha512, outputByteCount: 64, unsafeUncheckedRounds: rounds)
    return key.withUnsafeBytes { Array($0) }
  }

  static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
  }
}

/// A mosquitto password file: one `user:hash` per line. Lines that are not entries
/// (comments, blanks) are kept as they are, and entries keep their order, so rewriting the
/// file changes only the entries that change.
public struct MosquittoPasswordFile: Sendable, Hashable {
  public enum Line: Sendable, Hashable {
    case entry(user: String, hash: String)
    case other(String)
  }

  public var lines: [Line]

  public init(lines: [Line] = []) { self.lines = lines }

  /// Reads the file's text as the broker does: the user is what comes before the first `:`.
  public init(text: String) {
    var body = Substring(text)
    if body.hasSuffix("\n") { body.removeLast() }
    lines =
      body.isEmpty
      ? []
      : body.split(separator: "\n", omittingEmptySubsequences: false).map { raw in
        let line = raw.hasSuffix("\r") ? raw.dropLast() : raw
        guard line.first != "#", let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
          return .other(String(raw))
        }
        return .entry(user: String(line[..<colon]), hash: String(line[line.index(after: colon)...]))
      }
  }

  public var text: String {
    lines.map { line in
      switch line {
      case .entry(let user, let hash): "\(user):\(hash)\n"
      case .other(let text): text + "\n"
      }
    }.joined()
  }

  public var users: [String] {
    lines.compactMap { if case .entry(let user, _) = $0 { user } else { nil } }
  }

  /// The hash of `user` (the first entry, which is the one mosquitto uses).
  public func hash(of user: String) -> String? {
    for case .entry(user, let hash) in lines { return hash }
    return nil
  }

  /// Replaces `user`'s entry in place (dropping any later duplicates, which the broker
  /// would not use anyway), or appends one.
  public mutating func set(_ user: String, hash: String) {
    var replaced = false
    lines = lines.compactMap { line in
      guard case .entry(user, _) = line else { return line }
      if replaced { return nil }
      replaced = true
      return .entry(user: user, hash: hash)
    }
    if !replaced { lines.append(.entry(user: user, hash: hash)) }
  }
}

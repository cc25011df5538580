import Foundation

/// Where new passwords and salts come from: the kernel's random numbers on the appliance,
/// a seeded sequence in tests (so a plan can be checked line by line).
public struct SecretGenerator: Sendable {
  /// `count` random bytes.
  public var bytes: @Sendable (Int) throws -> [UInt8]

  public init(bytes: @escaping @Sendable (Int) throws -> [UInt8]) { self.bytes = bytes }

  /// Letters and digits without the ones a technician misreads when writing a password
  /// down or typing it into a charger's web page (0/O/o, 1/l/I): nothing that needs quoting
  /// in a shell, a URL or YAML either.
  public static let alphabet = Array("23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz")
  /// 24 characters of 56: about 139 bits, and within OCPP's 16 to 40 characters for a
  /// charger's BasicAuthPassword.
  public static let passwordLength = 24

  /// A new password of `passwordLength` characters from `alphabet`, drawn without bias
  /// (bytes at or above the largest multiple of the alphabet's size are thrown away).
  public func password() throws -> String {
    let n = Self.alphabet.count
    let limit = 256 - 256 % n
    var out: [Character] = []
    while out.count < Self.passwordLength {
      for byte in try bytes(Self.passwordLength * 2) where Int(byte) < limit && out.count < Self.passwordLength {
        out.append(Self.alphabet[Int(byte) % n])
      }
    }
    return String(out)
  }

  /// A salt for mosquitto's hash.
  public func salt() throws -> [UInt8] { try bytes(MosquittoPasswordHash.saltByteCount) }

  /// The kernel's random numbers (/dev/urandom).
  public static let system = SecretGenerator { count in
    guard let handle = FileHandle(forReadingAtPath: "/dev/urandom") else {
      throw ProvisioningFailure("/dev/urandom cannot be read: no random numbers for the passwords")
    }
    defer { try? handle.close() }
    let data = try handle.read(upToCount: count) ?? Data()
    guard data.count == count else {
      throw ProvisioningFailure("/dev/urandom gave \(data.count) of \(count) bytes")
    }
    return Array(data)
  }
}

/// Provisioning could not do what it had to on this machine (a file it cannot read or
/// write, a group that does not exist): one line naming what and where.
public struct ProvisioningFailure: Error, Sendable, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}

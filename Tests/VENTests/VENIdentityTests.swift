import Foundation
import Testing

@testable import VEN

/// The fingerprint a VTN registers: checked against what `openssl` and `sha256sum` make of
/// a certificate made here (openleadr's convention; docs/openadr-study.md).
struct VENIdentityTests {
  func shell(_ command: String) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw VENCommandError("\(command) failed") }
    return String(decoding: data, as: UTF8.self)
  }

  @Test func theFingerprintIsTheLastTenBytesOfTheCertificatesSHA256() throws {
    let dir = NSTemporaryDirectory() + "mge-ven-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    _ = try shell(
      "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=ven-test -days 2 -keyout \(dir)/ven.key -out \(dir)/ven.pem")
    let sum = try shell("openssl x509 -in \(dir)/ven.pem -outform DER | sha256sum").prefix(64)
    let expected = stride(from: 44, to: 64, by: 2).map { i -> String in
      let a = sum.index(sum.startIndex, offsetBy: i)
      return String(sum[a..<sum.index(a, offsetBy: 2)]).uppercased()
    }.joined(separator: ":")
    #expect(try VENIdentity.fingerprint(certificateFile: "\(dir)/ven.pem") == expected)
    #expect(expected.count == 29)
    #expect(throws: (any Error).self) { try VENIdentity.fingerprint(certificateFile: "\(dir)/ven.key") }
  }
}

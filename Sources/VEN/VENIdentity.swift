import Crypto
import Foundation
import NIOSSL

/// How a VTN knows this VEN: OpenADR 2.0b's certificate fingerprint, the SHA-256 of the
/// client certificate's DER with only its last 10 bytes kept, as upper-case hex pairs
/// joined by colons (`1F:5E:76:C6:07:DF:2F:A5:62:75`). Staff give it to the VTN's
/// operator with the VEN name; openleadr computes it the same way
/// (docs/openadr-study.md, "TLS, identity and signatures").
public enum VENIdentity {
  public static func fingerprint(certificateFile path: String) throws -> String {
    guard let first = try NIOSSLCertificate.fromPEMFile(path).first else {
      throw VENCommandError("\(path) holds no certificate")
    }
    return fingerprint(der: try first.toDERBytes())
  }

  public static func fingerprint(der: [UInt8]) -> String {
    SHA256.hash(data: der).suffix(10).map { byte in
      let hex = String(byte, radix: 16, uppercase: true)
      return hex.count == 1 ? "0" + hex : hex
    }.joined(separator: ":")
  }
}

import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// The VTN's four simpleHttp services (OpenADR 2.0b profile B, HTTP pull).
public enum VTNService: String, Sendable, CaseIterable {
  case registerParty = "EiRegisterParty"
  case event = "EiEvent"
  case report = "EiReport"
  case poll = "OadrPoll"
}

/// Why an exchange with the VTN failed, in words for the log.
public struct VTNTransportError: Error, Sendable, CustomStringConvertible, Equatable {
  public enum Kind: String, Sendable {
    /// No answer: connection refused, TLS refused, timed out.
    case unreachable
    /// An HTTP answer other than 200.
    case status
    /// The answer's body is over the limit.
    case tooLarge
    /// A 200 whose body is not XML by its Content-Type (an HTML error page, a proxy).
    case notXML
  }
  public var kind: Kind
  public var description: String
  public init(_ kind: Kind, _ description: String) {
    self.kind = kind
    self.description = description
  }
}

/// One request to the VTN and its answer's body. A small protocol so that the VEN's
/// sequence is the same whatever carries it (tests drive it without a network).
public protocol VTNTransport: Sendable {
  /// POSTs `body` to `service`; the answer's body (empty for a VTN's empty 200).
  func post(_ service: VTNService, body: [UInt8]) async throws(VTNTransportError) -> [UInt8]
  func shutdown() async
}

/// simpleHttp over AsyncHTTPClient: `POST {base}/{service}` with
/// `Content-Type: application/xml`, TLS with the VEN's client certificate (OpenADR 2.0b
/// requires it; plain http:// only where the configuration allows it, for tests).
public final class HTTPVTNTransport: VTNTransport {
  public struct Configuration: Sendable {
    /// `https://vtn.example.org/OpenADR2/Simple/2.0b` (the services are appended).
    public var baseURL: String
    /// PEM files: the VEN's certificate (chain), its private key, and the CA(s) the VTN's
    /// certificate must chain to (nil: the system's roots).
    public var certificateFile: String?
    public var keyFile: String?
    public var caFile: String?
    /// The whole request, connect to the last byte of the answer.
    public var timeoutSeconds: Double = 10
    /// The most bytes of an answer read (OpenADR messages are small; a VTN sending more
    /// is broken or hostile).
    public var maximumBodyBytes = 1 << 20

    public init(baseURL: String) { self.baseURL = baseURL }
  }

  public let configuration: Configuration
  /// Made at the first request that can have it: the certificate and key may be put in
  /// place after the appliance started (until then every request fails, saying why).
  private let client = Mutex<HTTPClient?>(nil)
  private let base: String

  public init(_ configuration: Configuration) {
    self.configuration = configuration
    var base = configuration.baseURL
    while base.hasSuffix("/") { base.removeLast() }
    self.base = base
  }

  private func connection() throws(VTNTransportError) -> HTTPClient {
    if let made = client.withLock({ $0 }) { return made }
    var http = HTTPClient.Configuration(
      redirectConfiguration: .disallow,
      timeout: .init(connect: .seconds(Int64(max(1, min(configuration.timeoutSeconds, 10))))),
      decompression: .disabled)
    if base.lowercased().hasPrefix("https://") {
      http.tlsConfiguration = try Self.tls(configuration)
    }
    http.connectionPool.idleTimeout = .seconds(60)
    let made = HTTPClient(eventLoopGroupProvider: .singleton, configuration: http)
    client.withLock { $0 = made }
    return made
  }

  static func tls(_ c: Configuration) throws(VTNTransportError) -> TLSConfiguration {
    var tls = TLSConfiguration.makeClientConfiguration()
    tls.minimumTLSVersion = .tlsv12
    do {
      if let certificateFile = c.certificateFile {
        tls.certificateChain = try NIOSSLCertificate.fromPEMFile(certificateFile).map { .certificate($0) }
      }
      if let keyFile = c.keyFile {
        tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
      }
      if let caFile = c.caFile {
        tls.trustRoots = .file(caFile)
        _ = try NIOSSLCertificate.fromPEMFile(caFile)
      }
    } catch {
      throw VTNTransportError(
        .unreachable,
        "the VEN's TLS files cannot be used (certificate \(c.certificateFile ?? "-"), key \(c.keyFile ?? "-"), CA \(c.caFile ?? "-")): \(error)"
      )
    }
    return tls
  }

  public func post(_ service: VTNService, body: [UInt8]) async throws(VTNTransportError) -> [UInt8] {
    let url = "\(base)/\(service.rawValue)"
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.headers.add(name: "Content-Type", value: "application/xml; charset=utf-8")
    request.body = .bytes(ByteBuffer(bytes: body))
    let timeout = TimeAmount.milliseconds(Int64(configuration.timeoutSeconds * 1000))
    let client = try connection()
    let response: HTTPClientResponse
    do {
      response = try await client.execute(request, timeout: timeout)
    } catch {
      throw VTNTransportError(.unreachable, "\(url): \(Self.describe(error))")
    }
    var collected: [UInt8] = []
    do {
      for try await part in response.body {
        guard collected.count + part.readableBytes <= configuration.maximumBodyBytes else {
          throw VTNTransportError(
            .tooLarge,
            "\(url): the answer is over \(configuration.maximumBodyBytes) bytes; not read further")
        }
        collected += part.readableBytesView
      }
    } catch let error as VTNTransportError {
      throw error
    } catch {
      throw VTNTransportError(
        .unreachable, "\(url): the answer broke off after \(collected.count) bytes (\(Self.describe(error)))")
    }
    guard response.status == .ok else {
      let text = String(decoding: collected.prefix(200), as: UTF8.self)
        .split(whereSeparator: \.isNewline).joined(separator: " ")
      throw VTNTransportError(
        .status,
        "\(url): HTTP \(response.status.code) \(response.status.reasonPhrase)"
          + (text.isEmpty ? "" : ": \(text)"))
    }
    // OpenADR is application/xml (openleadr: `application/xml; charset=utf-8`); a VTN or a
    // proxy in front of it answering something else is not read as OpenADR.
    if !collected.isEmpty {
      let type = response.headers.first(name: "Content-Type")?.lowercased() ?? ""
      let mediaType = type.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
      guard mediaType == "application/xml" || mediaType == "text/xml" else {
        throw VTNTransportError(
          .notXML,
          "\(url): the answer is \(type.isEmpty ? "without a Content-Type" : "'\(type)'"), not application/xml (\(collected.count) bytes); not read"
        )
      }
    }
    return collected
  }

  static func describe(_ error: any Error) -> String {
    if let e = error as? HTTPClientError {
      if e == .deadlineExceeded || e == .readTimeout || e == .connectTimeout { return "timed out" }
      return "\(e)"
    }
    return "\(error)"
  }

  public func shutdown() async {
    let made = client.withLock { c -> HTTPClient? in
      defer { c = nil }
      return c
    }
    try? await made?.shutdown()
  }
}

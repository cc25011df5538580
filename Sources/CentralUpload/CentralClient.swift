import AsyncHTTPClient
import CompressNIO
import Foundation
import NIOCore
import NIOHTTP1
import Store

/// Sends one batch to the central program. One small protocol, so that the uploader's
/// loop is the same whatever carries the batch.
public protocol CentralClient: Sendable {
  /// `ndjson` is the batch, records `first...last`; never throws: every failure is a
  /// `CentralResponse`. `timeout` (seconds) shortens the client's own for this request.
  func post(ndjson: String, first: Int64, last: Int64, timeout: Double?) async -> CentralResponse
  func shutdown() async
}

/// The program's HTTP API (../shared/CENTRAL-API.md) over AsyncHTTPClient: gzip NDJSON,
/// a bearer token, and an Idempotency-Key naming the batch's seqs.
public final class HTTPCentralClient: CentralClient {
  public struct Configuration: Sendable {
    /// `https://program.example/api` (without the /v1/... path).
    public var baseURL: String
    public var siteID: String
    /// The site's bearer token, asked for at every request: a token file that staff
    /// replace after a 401 is used from the next attempt on, without a restart.
    public var token: @Sendable () -> Result<String, StoreError>
    /// The whole request, connect to last byte of the answer.
    public var timeoutSeconds: Double = 30
    public init(baseURL: String, siteID: String, token: @escaping @Sendable () -> Result<String, StoreError>) {
      self.baseURL = baseURL
      self.siteID = siteID
      self.token = token
    }
  }

  public let configuration: Configuration
  private let client: HTTPClient
  private let url: String

  public init(_ configuration: Configuration) {
    self.configuration = configuration
    var base = configuration.baseURL
    while base.hasSuffix("/") { base.removeLast() }
    url = "\(base)/v1/sites/\(configuration.siteID)/records"
    var http = HTTPClient.Configuration(
      redirectConfiguration: .disallow,
      timeout: .init(connect: .seconds(Int64(min(configuration.timeoutSeconds, 10)))),
      decompression: .disabled)
    // A batch that fails on a pooled connection the program closed meanwhile is simply
    // sent again on the next round; the idempotency key makes that harmless.
    http.connectionPool.idleTimeout = .seconds(30)
    client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: http)
  }

  public func post(ndjson: String, first: Int64, last: Int64, timeout: Double? = nil) async -> CentralResponse {
    let token: String
    switch configuration.token() {
    case .success(let t): token = t
    case .failure(let problem): return .unauthorized(status: 0, detail: "\(problem)")
    }
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.headers.add(name: "Authorization", value: "Bearer \(token)")
    request.headers.add(name: "Content-Type", value: "application/x-ndjson")
    request.headers.add(name: "Content-Encoding", value: "gzip")
    request.headers.add(name: "Idempotency-Key", value: "\(configuration.siteID):\(first)-\(last)")
    do {
      var plain = ByteBuffer(string: ndjson)
      let gzipped = try plain.compress(with: .gzip())
      request.body = .bytes(gzipped)
    } catch {
      return .failed("gzip: \(error)")
    }
    do {
      let seconds = min(configuration.timeoutSeconds, timeout ?? .infinity)
      let response = try await client.execute(request, timeout: .milliseconds(Int64(max(0.1, seconds) * 1000)))
      let body = (try? await response.body.collect(upTo: 64 * 1024)).map { String(buffer: $0) } ?? ""
      return Self.classify(
        status: Int(response.status.code), body: body, retryAfter: response.headers.first(name: "Retry-After"))
    } catch {
      return .failed(Self.describe(error))
    }
  }

  /// The contract's answers, and what anything else means for the uploader.
  public static func classify(status: Int, body: String, retryAfter: String?) -> CentralResponse {
    switch status {
    case 200, 201:
      struct Accepted: Decodable {
        let accepted_through: Int64
      }
      guard let parsed = try? JSONDecoder().decode(Accepted.self, from: Data(body.utf8)) else {
        return .failed("HTTP \(status) without accepted_through: \(body.prefix(200))")
      }
      return .accepted(through: parsed.accepted_through)
    case 409: return .alreadyStored
    case 401, 403: return .unauthorized(status: status, detail: String(body.prefix(200)))
    case 413: return .tooLarge
    case 429: return .throttled(retryAfter: retryAfter.flatMap { Double($0.trimmingCharacters(in: .whitespaces)) })
    default: return .failed("HTTP \(status): \(body.prefix(200))")
    }
  }

  static func describe(_ error: any Error) -> String {
    if let e = error as? HTTPClientError {
      if e == .deadlineExceeded { return "timed out" }
      if e == .remoteConnectionClosed { return "the connection was closed before the answer" }
      return "\(e)"
    }
    return "\(error)"
  }

  public func shutdown() async {
    try? await client.shutdown()
  }
}

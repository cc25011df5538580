import AsyncHTTPClient
import CompressNIO
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Store
import Synchronization

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
  /// The connection pool. Replaced after every refusal: a server that answered before it
  /// read the batch may read the rest of the batch as a request of its own and answer that
  /// on the same connection, and the next batch must not get that answer.
  private let pool: Mutex<HTTPClient>
  private let url: String

  public init(_ configuration: Configuration) {
    self.configuration = configuration
    var base = configuration.baseURL
    while base.hasSuffix("/") { base.removeLast() }
    url = "\(base)/v1/sites/\(configuration.siteID)/records"
    pool = Mutex(Self.makeClient(configuration))
  }

  private static func makeClient(_ configuration: Configuration) -> HTTPClient {
    var http = HTTPClient.Configuration(
      redirectConfiguration: .disallow,
      timeout: .init(connect: .seconds(Int64(min(configuration.timeoutSeconds, 10)))),
      decompression: .disabled)
    // A batch that fails on a pooled connection the program closed meanwhile is simply
    // sent again on the next round; the idempotency key makes that harmless.
    http.connectionPool.idleTimeout = .seconds(30)
    return HTTPClient(eventLoopGroupProvider: .singleton, configuration: http)
  }

  /// A new pool in place of `used` (unless another request replaced it already).
  private func retire(_ used: HTTPClient) async {
    let old = pool.withLock { current -> HTTPClient? in
      guard current === used else { return nil }
      current = Self.makeClient(configuration)
      return used
    }
    try? await old?.shutdown()
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
    let seconds = min(configuration.timeoutSeconds, timeout ?? .infinity)
    let client = pool.withLock { $0 }
    let response: HTTPClientResponse
    do {
      response = try await client.execute(request, timeout: .milliseconds(Int64(max(0.1, seconds) * 1000)))
    } catch {
      // No answer arrived (or none AsyncHTTPClient could read: a server that answers before
      // reading the body and resets the connection can make the write fail first).
      return .failed(Self.describe(error, url: url, seconds: seconds))
    }
    // The status is in hand: whatever happens to the body, the answer is classified by it.
    var body = ByteBuffer()
    var bodyBytes = 0
    var brokeOff: String?
    do {
      for try await part in response.body {
        bodyBytes += part.readableBytes
        var part = part
        if body.readableBytes < Self.bodyLimit {
          body.writeImmutableBuffer(
            part.readSlice(length: min(part.readableBytes, Self.bodyLimit - body.readableBytes))!)
        }
      }
    } catch {
      brokeOff = Self.describe(error, url: url, seconds: seconds)
    }
    var answer = Self.classify(
      status: Int(response.status.code), body: String(buffer: body),
      retryAfter: response.headers.first(name: "Retry-After"),
      contentType: response.headers.first(name: "Content-Type"), bodyBytes: bodyBytes)
    if let brokeOff { answer = answer.adding("the answer's body broke off after \(bodyBytes) bytes: \(brokeOff)") }
    if answer.detail != nil { await retire(client) }
    return answer
  }

  /// The most bytes of an answer's body kept (the rest is counted, not kept).
  static let bodyLimit = 64 * 1024

  /// The contract's answers, and what anything else means for the uploader. Every answer
  /// that is not a confirmation carries a line for the log: the status and its name, what
  /// it means here, and what the program said (one line, bounded).
  public static func classify(
    status: Int, body: String, retryAfter: String?, contentType: String? = nil, bodyBytes: Int? = nil
  ) -> CentralResponse {
    let said = summarize(body: body, contentType: contentType, bytes: bodyBytes ?? body.utf8.count)
    func line(_ meaning: String) -> String {
      "\(statusText(status)): \(meaning)" + (said.map { "; the program said: \($0)" } ?? "; the answer had no body")
    }
    switch status {
    case 200, 201:
      struct Accepted: Decodable {
        let accepted_through: Int64
      }
      guard let parsed = try? JSONDecoder().decode(Accepted.self, from: Data(body.utf8)) else {
        return .failed(line("the answer does not say what was stored (no accepted_through)"))
      }
      return .accepted(through: parsed.accepted_through)
    case 409: return .alreadyStored
    case 401, 403: return .unauthorized(status: status, detail: line("the program refuses the site's token"))
    case 413: return .tooLarge(detail: line("the batch is too big for the program"))
    case 429:
      let seconds = retryAfter.flatMap { Double($0.trimmingCharacters(in: .whitespaces)) }
      let asked = retryAfter.map { seconds == nil ? " (Retry-After \"\($0)\" is not a number of seconds)" : "" } ?? ""
      return .throttled(retryAfter: seconds, detail: line("the program asks to slow down\(asked)"))
    default: return .failed(line(meaning(status)))
    }
  }

  /// "HTTP 413 Payload Too Large".
  static func statusText(_ status: Int) -> String {
    let phrase = HTTPResponseStatus(statusCode: status).reasonPhrase
    return phrase.isEmpty ? "HTTP \(status)" : "HTTP \(status) \(phrase)"
  }

  /// What a status the contract does not name means for this site.
  static func meaning(_ status: Int) -> String {
    switch status {
    case 300..<400: return "a redirect, not followed (check central: base_url)"
    case 400: return "the program refused the batch as malformed"
    case 404: return "the program has no such address (check central: base_url and site_id)"
    case 408: return "the program gave up waiting for the batch"
    case 405, 411, 415, 501: return "the program does not take the request as this appliance sends it"
    case 500: return "the program failed on its side"
    case 502: return "a gateway in front of the program could not reach it"
    case 503: return "the program is unavailable"
    case 504: return "a gateway in front of the program timed out waiting for it"
    case 500..<600: return "the program failed on its side"
    default: return "an answer the contract does not have"
    }
  }

  /// An answer's body as one line of at most `limit` characters, for a log: a JSON error's
  /// `error` and `detail`/`message`, an HTML page's text (its tags stripped) with its size,
  /// anything else with its whitespace collapsed. nil when there is no body.
  static func summarize(body: String, contentType: String?, bytes: Int, limit: Int = 160) -> String? {
    let trimmed = body.trimmingCharacters(in: .whitespacesAndNewlines)
    guard !trimmed.isEmpty else { return nil }
    if let object = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any] {
      let parts = ["error", "message", "detail"].compactMap { key -> String? in
        guard let value = object[key] else { return nil }
        return value as? String ?? "\(value)"
      }
      if !parts.isEmpty { return bounded(quoted(parts.joined(separator: ": ")), limit) }
    }
    let lower = trimmed.prefix(512).lowercased()
    if contentType?.lowercased().contains("html") == true || lower.hasPrefix("<!doctype html")
      || lower.contains("<html")
    {
      var text = trimmed.replacingOccurrences(
        of: "<(script|style)[^>]*>.*?</\\1>", with: " ", options: [.regularExpression, .caseInsensitive])
      text = text.replacingOccurrences(of: "<[^>]*>", with: " ", options: .regularExpression)
      for (entity, character) in ["&lt;": "<", "&gt;": ">", "&quot;": "\"", "&#39;": "'", "&nbsp;": " ", "&amp;": "&"] {
        text = text.replacingOccurrences(of: entity, with: character)
      }
      text = oneLine(text)
      let page = "an HTML page (\(bytes) bytes)"
      return text.isEmpty ? page : "\(page): " + bounded(quoted(text), limit)
    }
    let line = bounded(quoted(oneLine(trimmed)), limit)
    return bytes > limit ? "\(line) (\(bytes) bytes)" : line
  }

  /// Whitespace and control characters collapsed to single spaces.
  static func oneLine(_ text: String) -> String {
    text.unicodeScalars.split { CharacterSet.whitespacesAndNewlines.union(.controlCharacters).contains($0) }
      .map { String(String.UnicodeScalarView($0)) }.joined(separator: " ")
  }

  static func quoted(_ text: String) -> String { "\"\(text)\"" }

  static func bounded(_ text: String, _ limit: Int) -> String {
    text.count <= limit ? text : String(text.prefix(limit - 1)) + "…"
  }

  /// A transport failure in words: what broke, where and when, never a parser's or a
  /// socket's bare error code.
  static func describe(_ error: any Error, url: String = "", seconds: Double? = nil) -> String {
    let host = URL(string: url).map { u in u.host.map { h in u.port.map { "\(h):\($0)" } ?? h } ?? url } ?? url
    if let e = error as? HTTPClientError {
      switch e {
      case .deadlineExceeded, .readTimeout, .writeTimeout:
        return "timed out: no answer from \(host)" + (seconds.map { " within \(formatSeconds($0))" } ?? "")
      case .connectTimeout: return "cannot connect to \(host): no connection within the connect timeout"
      case .remoteConnectionClosed: return "\(host) closed the connection before it answered"
      case .cancelled: return "the request was cancelled (the appliance is stopping)"
      default: return "\(host): \(e)"
      }
    }
    if let e = error as? HTTPParserError {
      let what =
        switch e {
        case .invalidConstant, .invalidVersion, .invalidStatus: "it does not begin with an HTTP status line"
        case .headerOverflow: "its headers are too long"
        default: "it breaks HTTP's framing"
        }
      return "the answer from \(host) is not HTTP: \(what) (a server that answered an earlier batch before "
        + "reading it may have answered the rest of that batch as a request of its own)"
    }
    if let e = error as? IOError {
      switch e.errnoCode {
      case ECONNRESET:
        return "\(host) reset the connection while the batch was being sent or before its answer could be read"
      case EPIPE: return "\(host) closed the connection while the batch was being sent (broken pipe), no answer read"
      case ECONNREFUSED: return "cannot connect to \(host): connection refused (nothing listens there)"
      case ETIMEDOUT: return "the connection to \(host) timed out"
      case EHOSTUNREACH, ENETUNREACH: return "cannot reach \(host): \(String(cString: strerror(e.errnoCode)))"
      default: return "connection to \(host) failed: \(String(cString: strerror(e.errnoCode))) (\(e.errnoCode))"
      }
    }
    if let e = error as? NIOConnectionError {
      let causes = e.connectionErrors.map { "\(describe($0.error, url: url))" }
      if let first = causes.first { return first }
      if e.dnsAError != nil || e.dnsAAAAError != nil { return "cannot resolve \(e.host)" }
      return "cannot connect to \(host)"
    }
    if let e = error as? ChannelError {
      switch e {
      case .ioOnClosedChannel, .eof, .outputClosed, .alreadyClosed:
        return "the connection to \(host) closed before an answer was read"
      case .connectTimeout: return "cannot connect to \(host): no connection within the connect timeout"
      default: return "connection to \(host) failed: \(e)"
      }
    }
    return "\(host): \(String(describing: type(of: error))): \(error)"
  }

  static func formatSeconds(_ s: Double) -> String {
    s >= 10 || s == s.rounded() ? "\(Int(s.rounded())) s" : String(format: "%.1f s", s)
  }

  public func shutdown() async {
    try? await pool.withLock { $0 }.shutdown()
  }
}

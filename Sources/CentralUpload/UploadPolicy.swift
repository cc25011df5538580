import Foundation

/// What the central program (or the way to it) answered an upload, in the terms of
/// ../shared/CENTRAL-API.md.
public enum CentralResponse: Sendable, Hashable {
  /// 200/201: everything up to `through` is stored.
  case accepted(through: Int64)
  /// 409: this batch was stored before.
  case alreadyStored
  /// 401/403: the token is wrong.
  case unauthorized(status: Int, detail: String)
  /// 413: the batch is too large.
  case tooLarge(detail: String)
  /// 429: slow down; `retryAfter` seconds when the program said so.
  case throttled(retryAfter: Double?, detail: String)
  /// 5xx, timeouts, refused or dropped connections, and answers the contract does not
  /// have (a 200 without accepted_through): keep everything and retry.
  case failed(String)

  // Every `detail` is one line for the log and the panel: the status and its name, what it
  // means here, and what the program said ("HTTP 413 Payload Too Large: the batch is too big
  // for the program; the program said: ..."), or the transport failure in words.

  /// The line for the log (nil for a confirmation).
  public var detail: String? {
    switch self {
    case .accepted, .alreadyStored: return nil
    case .unauthorized(let status, let detail): return status == 0 ? "no token: \(detail)" : detail
    case .tooLarge(let detail), .throttled(_, let detail), .failed(let detail): return detail
    }
  }

  /// The same answer with more said about it.
  func adding(_ more: String) -> CentralResponse {
    switch self {
    case .accepted, .alreadyStored: return self
    case .unauthorized(let status, let detail): return .unauthorized(status: status, detail: "\(detail); \(more)")
    case .tooLarge(let detail): return .tooLarge(detail: "\(detail); \(more)")
    case .throttled(let after, let detail): return .throttled(retryAfter: after, detail: "\(detail); \(more)")
    case .failed(let detail): return .failed("\(detail); \(more)")
    }
  }
}

/// The connection to the program as panels and logs show it.
public enum UploadState: String, Sendable, Hashable {
  /// No upload tried yet.
  case starting
  /// The last upload went through, or there was nothing to send.
  case connected
  /// The program cannot be reached, or it failed.
  case offline
  /// The program asked to slow down (429).
  case throttled
  /// The program refused the token (401/403): nothing goes up until that is fixed.
  case unauthorized
  /// A single record is larger than the program takes (413).
  case tooLarge = "too-large"
  /// No token file or no URL: records are kept, nothing is sent.
  case notConfigured = "not-configured"
}

/// What to do after an answer: pure, so that every rule of the contract has a unit test.
public struct UploadPolicy: Sendable {
  public struct Configuration: Sendable, Hashable {
    /// First retry after a failure, seconds; doubles per failure up to `maxBackoff`.
    public var initialBackoff: Double = 1
    public var maxBackoff: Double = 300
    /// Retry after a refused token, seconds ("retry slowly").
    public var unauthorizedRetry: Double = 600
    /// The most records in one batch (halved for the session after a 413).
    public var maxRecords = 1000
    public init() {}
  }

  public enum Action: Sendable, Hashable {
    /// The program holds everything through `through`: confirm it locally and go on.
    case confirm(through: Int64)
    /// The program is missing records below the batch (it lost data): send again from
    /// `after + 1` if they are still here.
    case rewind(after: Int64)
    /// Send again now, with at most `maxRecords` per batch.
    case shrink(maxRecords: Int)
    /// Wait this long, then send the same records again.
    case wait(seconds: Double)
  }

  public let configuration: Configuration
  /// Consecutive failures (for the backoff).
  public private(set) var failures = 0
  public private(set) var maxRecords: Int
  public private(set) var state: UploadState = .starting

  public init(_ configuration: Configuration = Configuration()) {
    self.configuration = configuration
    self.maxRecords = max(1, configuration.maxRecords)
  }

  /// `jitter` is a draw from 0..<1 (a test passes a fixed one).
  public mutating func decide(
    _ response: CentralResponse, first: Int64, last: Int64, jitter: Double
  ) -> Action {
    switch response {
    case .accepted(let through):
      failures = 0
      state = .connected
      if through >= first - 1 { return .confirm(through: min(through, last)) }
      return .rewind(after: through)
    case .alreadyStored:
      failures = 0
      state = .connected
      return .confirm(through: last)
    case .unauthorized:
      state = .unauthorized
      return .wait(seconds: jittered(configuration.unauthorizedRetry, jitter))
    case .tooLarge:
      let count = Int(last - first + 1)
      if count > 1 {
        maxRecords = max(1, count / 2)
        return .shrink(maxRecords: maxRecords)
      }
      state = .tooLarge
      failures += 1
      return .wait(seconds: jittered(configuration.maxBackoff, jitter))
    case .throttled(let retryAfter, _):
      state = .throttled
      failures += 1
      if let retryAfter, retryAfter > 0 { return .wait(seconds: min(retryAfter, 3600) * (1 + 0.2 * jitter)) }
      return .wait(seconds: backoff(jitter))
    case .failed:
      state = .offline
      failures += 1
      return .wait(seconds: backoff(jitter))
    }
  }

  /// Exponential backoff with "equal jitter": between half and all of the doubled delay,
  /// so that many sites coming back after a regional outage do not retry in step.
  public func backoff(_ jitter: Double) -> Double {
    let exponent = Double(min(max(failures - 1, 0), 30))
    let delay = min(configuration.maxBackoff, configuration.initialBackoff * pow(2, exponent))
    return delay * (0.5 + 0.5 * jitter)
  }

  private func jittered(_ seconds: Double, _ jitter: Double) -> Double { seconds * (0.8 + 0.4 * jitter) }

}

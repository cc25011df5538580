import Foundation
import Logging
import ServiceLifecycle
import Store
import Synchronization

/// Store-and-forward: sends the outbox to the central program in seq order, and confirms
/// records locally only when the program says it holds them. It keeps no position of
/// its own: after a restart it starts from the store's confirmed watermark, so it resumes
/// exactly where it stopped (a batch whose answer was lost is sent again and answered
/// 409, or stored once more by seq, which the program ignores). It is the first service
/// of the group, so it stops last and can send the records written while the others
/// stopped.
public final class CentralUploader: Service, Sendable {
  public struct Configuration: Sendable {
    public var policy = UploadPolicy.Configuration()
    /// The most NDJSON bytes in one batch before gzip.
    public var maxBytes = 512 * 1024
    /// While connected, a backlog smaller than a batch waits this long for company, so
    /// that a record every second does not make a request every second.
    public var gatherSeconds: Double = 10
    /// A line in the log this often while records wait and the program cannot be reached.
    public var backlogLogSeconds: Double = 600
    /// On a planned stop, how long the last records may take to go up.
    public var drainOnStopSeconds: Double = 5
    public init() {}
  }

  public struct Status: Sendable, Hashable {
    public var state: UploadState = .starting
    public var since = Date()
    public var lastSuccess: Date?
    public var lastError: String?
    public var nextAttempt: Date?
    public var maxRecords: Int
  }

  public let configuration: Configuration
  private let outbox: Outbox
  private let connect: (@Sendable () -> Result<any CentralClient, StoreError>)?
  private let logger: Logger
  private let shared: Mutex<Status>

  /// `connect` makes the client (it reads the token); while it fails, records are kept
  /// and it is tried again every minute. nil: no central program is configured.
  public init(
    configuration: Configuration, outbox: Outbox,
    connect: (@Sendable () -> Result<any CentralClient, StoreError>)?, logger: Logger
  ) {
    self.configuration = configuration
    self.outbox = outbox
    self.connect = connect
    self.logger = logger
    shared = Mutex(Status(maxRecords: configuration.policy.maxRecords))
  }

  public var status: Status { shared.withLock { $0 } }

  public func run() async throws {
    guard let connect else {
      set(.notConfigured, error: "no central: section; records are kept here, nothing is sent")
      try? await gracefulShutdown()
      return
    }
    let connected = Mutex<(any CentralClient)?>(nil)
    await cancelWhenGracefulShutdown {
      var client: (any CentralClient)?
      while client == nil && !Task.isCancelled {
        switch connect() {
        case .success(let c): client = c
        case .failure(let problem):
          if self.status.state != .notConfigured {
            self.logger.error("upload: \(problem); records are kept, trying again every minute")
          }
          self.set(.notConfigured, error: "\(problem)")
          try? await Task.sleep(for: .seconds(60))
        }
      }
      guard let client else { return }
      connected.withLock { $0 = client }
      await self.loop(client)
    }
    guard let client = connected.withLock({ $0 }) else { return }
    // The group stops this service last, after the recording service has written the
    // last records: a planned stop sends them, if the program answers quickly.
    if Task.isShuttingDownGracefully && configuration.drainOnStopSeconds > 0 {
      await drain(client)
    }
    await client.shutdown()
  }

  /// Sends what is left, batch after batch, until nothing is left, an answer is not a
  /// confirmation, or `drainOnStopSeconds` are over.
  private func drain(_ client: any CentralClient) async {
    guard let store = outbox.store else { return }
    let deadline = ContinuousClock.now + .milliseconds(Int64(configuration.drainOnStopSeconds * 1000))
    var sent = 0
    var policy = UploadPolicy(configuration.policy)
    while ContinuousClock.now < deadline,
      let batch = try? store.nextBatch(maxRecords: policy.maxRecords, maxBytes: configuration.maxBytes)
    {
      let left = deadline - ContinuousClock.now
      let response = await client.post(
        ndjson: batch.ndjson, first: batch.first, last: batch.last,
        timeout: Double(left.components.seconds) + Double(left.components.attoseconds) / 1e18)
      guard case .confirm(let through) = policy.decide(response, first: batch.first, last: batch.last, jitter: 0),
        (try? store.accept(through: through)) != nil
      else { break }
      sent += Int(through - batch.first + 1)
    }
    let left = (try? store.counters().backlog) ?? 0
    logger.info(
      "upload: stopping", metadata: ["sent_while_stopping": "\(sent)", "waiting_for_next_start": "\(left)"])
  }

  private func loop(_ client: any CentralClient) async {
    var policy = UploadPolicy(configuration.policy)
    var lastBacklogLog = Date.distantPast
    // What the last warning was about ("HTTP 500 Internal Server Error", a timeout...): a
    // different failure while still offline is worth a warning of its own.
    var lastWarned: String?
    // When the records now waiting were first seen waiting (nil: none wait).
    var waitingSince: ContinuousClock.Instant?
    while !Task.isCancelled {
      guard let store = outbox.store else {
        await pause(1)
        continue
      }
      // The outbox refreshes its counters at every write and confirmation: no query here.
      guard let counters = outbox.status.counters else {
        await pause(1)
        continue
      }
      if counters.backlog <= 0 {
        waitingSince = nil
        // Nothing to send: the state stays as it is. "connected" is said only once the
        // program has answered a batch (an idle start used to claim it, and the first real
        // upload then went unannounced in the log).
        set(policy.state)
        await pause(1)
        continue
      }
      // Gather: while connected, wait until a batch is full or records have waited
      // `gatherSeconds` (on the uploader's own monotonic clock: record times follow the
      // wall clock, which may jump, or site time in a simulation).
      let now = ContinuousClock.now
      if waitingSince == nil { waitingSince = now }
      if policy.state == .connected, counters.backlog < Int64(policy.maxRecords),
        now - waitingSince! < .milliseconds(Int64(configuration.gatherSeconds * 1000))
      {
        await pause(min(1, configuration.gatherSeconds))
        continue
      }
      let batch: RecordStore.Batch
      do {
        guard let next = try store.nextBatch(maxRecords: policy.maxRecords, maxBytes: configuration.maxBytes) else {
          await pause(1)
          continue
        }
        batch = next
      } catch {
        logger.error("upload: cannot read the outbox: \(RecordStore.describe(error))")
        await pause(5)
        continue
      }
      if !batch.missing.isEmpty {
        logger.error(
          "upload: seqs with neither a record nor a placeholder, sent as records_lost",
          metadata: ["seqs": "\(batch.missing.prefix(20))", "count": "\(batch.missing.count)"])
      }
      let response = await client.post(ndjson: batch.ndjson, first: batch.first, last: batch.last, timeout: nil)
      if Task.isCancelled, case .failed = response { break }
      let before = policy.state
      let action = policy.decide(response, first: batch.first, last: batch.last, jitter: Double.random(in: 0..<1))
      report(
        response, action: action, batch: batch, before: before, policy: policy, backlog: counters.backlog,
        lastWarned: &lastWarned)
      switch action {
      case .confirm(let through):
        do {
          try store.accept(through: through)
          outbox.refreshCounters()
          waitingSince = nil
          shared.withLock {
            $0.lastSuccess = Date()
            $0.lastError = nil
            $0.nextAttempt = nil
          }
        } catch {
          logger.error("upload: cannot record the confirmation: \(RecordStore.describe(error))")
          await pause(5)
        }
      case .rewind(let after):
        let back = (try? store.rewind(to: after)) ?? false
        if back {
          logger.warning(
            "upload: the program is missing records after seq \(after) that it had confirmed; sending them again")
        } else {
          logger.critical(
            "upload: the program is missing records after seq \(after), and they are no longer kept here; going on",
            metadata: ["batch": "\(batch.first)-\(batch.last)"])
          try? store.accept(through: batch.last)
        }
        outbox.refreshCounters()
      case .shrink(let maxRecords):
        shared.withLock { $0.maxRecords = maxRecords }
      case .wait(let seconds):
        if policy.state != .unauthorized, Date().timeIntervalSince(lastBacklogLog) >= configuration.backlogLogSeconds {
          lastBacklogLog = Date()
          let oldest = counters.oldestUnuploadedMS.map { Date(timeIntervalSince1970: Double($0) / 1000) }
          logger.warning(
            "upload: \(counters.backlog) records waiting for the central program",
            metadata: [
              "state": "\(policy.state.rawValue)",
              "oldest": "\(oldest.map { "\($0)" } ?? "-")",
              "retry_in_s": "\(Int(seconds.rounded()))",
            ])
        }
        await pause(seconds)
      }
    }
  }

  /// The state, the panel's last error and the log: what the program (or the way to it)
  /// answered, in words, and what the uploader does about it.
  private func report(
    _ response: CentralResponse, action: UploadPolicy.Action, batch: RecordStore.Batch, before: UploadState,
    policy: UploadPolicy, backlog: Int64, lastWarned: inout String?
  ) {
    let detail = response.detail
    // The state, its error and the next attempt's time change together: a panel that
    // reads between them must never see "offline" without when it tries again.
    var retryAt: Date?
    if case .wait(let seconds) = action { retryAt = Date().addingTimeInterval(seconds) }
    set(policy.state, error: detail, nextAttempt: retryAt)
    let range = "\(batch.first)-\(batch.last)"
    let then: String
    switch action {
    case .wait(let seconds): then = "; records kept, retrying in \(HTTPCentralClient.formatSeconds(seconds))"
    default: then = ""
    }
    if case .shrink(let maxRecords) = action {
      logger.warning(
        "upload: the program took the batch as too large; at most \(maxRecords) records per batch now (\(detail ?? ""))",
        metadata: ["batch": "\(range)", "records": "\(batch.last - batch.first + 1)"])
      return
    }
    switch policy.state {
    case .unauthorized:
      // Loud every time: nothing reaches the program until somebody fixes the token.
      logger.error(
        "upload refused: \(detail ?? "")\(then)", metadata: ["batch": "\(range)", "backlog": "\(backlog)"])
    case .connected where before != .connected:
      logger.notice(
        "upload: connected to the central program", metadata: ["backlog": "\(backlog)", "batch": "\(range)"])
    case .offline, .throttled, .tooLarge:
      let kind = detail.map { String($0.prefix { $0 != ":" && $0 != ";" }) }
      if before != policy.state || kind != lastWarned {
        lastWarned = kind
        logger.warning(
          "upload: \(policy.state.rawValue): \(detail ?? "")\(then)",
          metadata: ["batch": "\(range)", "backlog": "\(backlog)"])
      } else {
        logger.debug("upload failed again: \(detail ?? "")\(then)", metadata: ["failures": "\(policy.failures)"])
      }
    default: break
    }
  }

  private func set(_ state: UploadState, error: String? = nil, nextAttempt: Date? = nil) {
    shared.withLock { s in
      if s.state != state {
        s.state = state
        s.since = Date()
      }
      if let error { s.lastError = error }
      if let nextAttempt { s.nextAttempt = nextAttempt }
    }
  }

  /// Sleeps, but wakes at once on shutdown (the loop runs in a task cancelled then).
  private func pause(_ seconds: Double) async {
    try? await Task.sleep(for: .milliseconds(Int64(max(0.01, seconds) * 1000)))
  }
}

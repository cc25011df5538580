import Foundation
import Logging
import Synchronization

/// The side of the store the rest of the appliance talks to. The control loop hands it
/// drafts (`submit`, never blocking, never failing); a writer task writes them once a
/// second in one transaction (`flush`) and keeps the disk budget (`maintain`).
///
/// When the database cannot be written (a full disk, a damaged file, a folder that is
/// gone) drafts wait in memory and the problem shows in `status`; nothing is numbered
/// until it is written, so nothing that waits or is dropped makes a gap in `seq`. Memory
/// is bounded: past `maxPending`, the oldest telemetry drafts go first, then (only if
/// nothing else is left) the oldest of the rest.
public final class Outbox: Sendable {
  public struct Configuration: Sendable {
    public var store: RecordStore.Configuration
    /// Drafts held in memory while the database cannot take them.
    public var maxPending = 20_000
    public init(store: RecordStore.Configuration) { self.store = store }
  }

  /// What panels, logs and alarms show about the store.
  public struct Status: Sendable, Hashable {
    public var counters: RecordStore.Counters?
    public var budgetBytes: Int64
    public var phase: RecordStore.BudgetPhase = .normal
    /// Drafts waiting in memory for the database.
    public var pending = 0
    /// Telemetry never written (budget exhausted or memory bound); never numbered.
    public var telemetryDropped = 0
    /// Other drafts dropped from memory after a long outage of the database itself.
    public var otherDropped = 0
    /// Why the database is not taking records now (nil: it is).
    public var writeProblem: String?
    public var diskFull = false
    /// The database was moved aside since start (the latest reason).
    public var replaced: String?
  }

  public let configuration: Configuration
  private let summarizer: any TelemetrySummarizer
  private let logger: Logger
  private struct State {
    var store: RecordStore?
    var pending: [RecordDraft] = []
    var status: Status
    var lastOpenAttempt: Date?
    /// The budget's work since its last log line, which comes at most hourly in one phase.
    var budgetWork = (deleted: 0, thinned: 0, logged: Date.distantPast)
  }
  private let state: Mutex<State>

  public init(_ configuration: Configuration, summarizer: any TelemetrySummarizer, logger: Logger) {
    self.configuration = configuration
    self.summarizer = summarizer
    self.logger = logger
    state = Mutex(State(status: Status(budgetBytes: configuration.store.budgetBytes)))
    openStore()
  }

  public var status: Status { state.withLock { $0.status } }

  /// The open store for the uploader (nil while there is none).
  public var store: RecordStore? { state.withLock { $0.store } }

  /// Queues a record. Cheap; called on the control loop.
  public func submit(_ draft: RecordDraft) {
    state.withLock { s in
      s.pending.append(draft)
      bound(&s)
    }
  }

  private func bound(_ s: inout State) {
    while s.pending.count > configuration.maxPending {
      if let i = s.pending.firstIndex(where: { $0.kind == .telemetry }) {
        s.pending.remove(at: i)
        s.status.telemetryDropped += 1
      } else {
        s.pending.removeFirst()
        s.status.otherDropped += 1
      }
    }
    s.status.pending = s.pending.count
  }

  /// Writes what is queued in one transaction. Returns the seqs written.
  @discardableResult
  public func flush() -> ClosedRange<Int64>? {
    if store == nil { openStore() }
    // The drafts leave the queue while they are written (new ones queue behind them) and
    // go back to its front if the write fails.
    let (store, drafts, refuse) = state.withLock { s -> (RecordStore?, [RecordDraft], Bool) in
      guard s.store != nil else { return (nil, [], false) }
      defer { s.pending = [] }
      return (s.store, s.pending, s.status.phase == .full)
    }
    guard let store, !drafts.isEmpty else { return nil }
    do {
      let written = try store.append(drafts, refuseTelemetry: refuse)
      let refused = refuse ? drafts.filter { $0.kind == .telemetry }.count : 0
      let counters = try? store.counters()
      let recovered = state.withLock { s -> String? in
        s.status.pending = s.pending.count
        s.status.telemetryDropped += refused
        if let counters { s.status.counters = counters }
        defer {
          s.status.writeProblem = nil
          s.status.diskFull = false
        }
        return s.status.writeProblem
      }
      if let recovered { logger.notice("store: writing again after: \(recovered)") }
      return written
    } catch {
      state.withLock { s in
        s.pending = drafts + s.pending
        bound(&s)
      }
      handle(error, during: "writing \(drafts.count) records")
      return nil
    }
  }

  /// Retention and the disk budget; updates the status. Call every few tens of seconds.
  public func maintain(now: Date = Date()) {
    guard let store = store else { return }
    do {
      let report = try store.maintain(nowMS: Int64(now.timeIntervalSince1970 * 1000))
      let counters = try store.counters()
      let (before, work) = state.withLock { s -> (RecordStore.BudgetPhase, (deleted: Int, thinned: Int)?) in
        let before = s.status.phase
        s.status.phase = report.phase
        s.status.counters = counters
        s.budgetWork.deleted += report.deletedUploaded
        s.budgetWork.thinned += report.thinnedIntervals
        guard report.phase != before || now.timeIntervalSince(s.budgetWork.logged) >= 3600,
          report.phase != .normal || before != .normal
        else { return (before, nil) }
        defer { s.budgetWork = (0, 0, now) }
        return (before, (s.budgetWork.deleted, s.budgetWork.thinned))
      }
      if let work {
        let used = String(format: "%.1f", Double(report.usedBytes) / 1_048_576)
        let budget = String(format: "%.0f", Double(configuration.store.budgetBytes) / 1_048_576)
        let text =
          "store: budget \(report.phase.rawValue) (was \(before.rawValue); \(used) of \(budget) MiB used; "
          + "since the last line: deleted \(work.deleted) uploaded records early, thinned \(work.thinned) intervals)"
        report.phase == .normal ? logger.notice("\(text)") : logger.warning("\(text)")
      }
    } catch {
      handle(error, during: "keeping the disk budget")
    }
  }

  /// Refreshes the counters (for the uploader after a confirmation).
  public func refreshCounters() {
    guard let store, let counters = try? store.counters() else { return }
    state.withLock { $0.status.counters = counters }
  }

  private func handle(_ error: any Error, during what: String) {
    let kind = RecordStore.failureKind(error)
    let text = "\(what): \(RecordStore.describe(error))"
    let first = setProblem(text, kind) == nil
    if first || kind == .corrupt {
      logger.error(
        "store: \(text); records wait in memory (\(status.pending) now)",
        metadata: ["path": "\(configuration.store.path)"])
    }
    if kind == .corrupt {
      // The file went bad under us: close it; the next flush opens it again, which moves
      // it aside and starts a fresh one numbered above the old.
      state.withLock { s in
        s.store?.close()
        s.store = nil
        s.lastOpenAttempt = nil
      }
    }
  }

  /// Records why the database is not taking records; returns the problem before.
  private func setProblem(_ text: String, _ kind: RecordStore.FailureKind) -> String? {
    state.withLock { s in
      defer {
        s.status.writeProblem = text
        s.status.diskFull = kind == .full
      }
      return s.status.writeProblem
    }
  }

  private func openStore() {
    let attempt = state.withLock { s -> Bool in
      // Opening runs an integrity check; do not retry it more than every 10 s.
      if let last = s.lastOpenAttempt, Date().timeIntervalSince(last) < 10 { return false }
      s.lastOpenAttempt = Date()
      return true
    }
    guard attempt else { return }
    do {
      let store = try RecordStore(configuration.store, summarizer: summarizer)
      for notice in store.notices {
        logger.critical("store: \(notice)", metadata: ["path": "\(configuration.store.path)"])
      }
      let counters = try? store.counters()
      state.withLock { s in
        s.store = store
        s.status.counters = counters
        s.status.writeProblem = nil
        if let aside = store.notices.compactMap({ n -> String? in
          if case .movedAside(let to, let reason) = n { return "\(reason); moved to \(to)" }
          return nil
        }).last {
          s.status.replaced = aside
        }
      }
      logger.info(
        "store open",
        metadata: [
          "path": "\(configuration.store.path)", "last_seq": "\(counters?.lastSeq ?? 0)",
          "accepted_through": "\(counters?.acceptedThrough ?? 0)",
        ])
    } catch {
      let text = "opening the store: \(RecordStore.describe(error))"
      let first = setProblem(text, RecordStore.failureKind(error)) != text
      if first { logger.error("store: \(text); records wait in memory") }
    }
  }
}

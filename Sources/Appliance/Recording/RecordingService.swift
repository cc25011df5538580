import CentralUpload
import Foundation
import Logging
import ServiceLifecycle
import Store
import Synchronization

/// What panels show of the records: the outbox and the upload.
public struct RecordsView: Sendable, Hashable {
  public var store: Outbox.Status
  public var upload: CentralUploader.Status?
}

/// Keeps the outbox moving: writes queued records once a second, keeps the disk budget
/// every `maintenanceEverySeconds`, turns the store's and the upload's state into alarms
/// and panel state, and on shutdown writes the last records (and the stop event) before
/// the process ends. The group stops it after the control loop and before the uploader.
public final class RecordingService: Service {
  public struct Configuration: Sendable {
    public var flushEverySeconds: Double = 1
    public var maintenanceEverySeconds: Double = 30
    /// ... or after this many records, or as soon as a write takes the database over the
    /// budget's high mark, whichever comes first (a simulation faster than real time
    /// writes days of records in 30 s).
    public var maintenanceEveryRecords: Int64 = 2000
    /// Alarm when records have waited this long for an unreachable program, seconds.
    public var offlineAlarmSeconds: Double = 3600
    public init() {}
  }

  public let outbox: Outbox
  public let recorder: Recorder
  public let uploader: CentralUploader?
  private let status: SiteStatus
  private let configuration: Configuration
  private let logger: Logger
  private let version: String
  /// The replacement already raised as an alarm (it is raised once).
  private let replacementReported = Mutex<String?>(nil)

  public init(
    outbox: Outbox, recorder: Recorder, uploader: CentralUploader?, status: SiteStatus,
    configuration: Configuration = Configuration(), version: String, logger: Logger
  ) {
    self.outbox = outbox
    self.recorder = recorder
    self.uploader = uploader
    self.status = status
    self.configuration = configuration
    self.version = version
    self.logger = logger
  }

  public func run() async throws {
    recorder.event("appliance_started", [("version", RecordJSON.string(version))])
    outbox.flush()
    outbox.maintain()
    publish()
    var lastMaintenance = (time: Date(), seq: outbox.status.counters?.lastSeq ?? 0)
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      try? await Task.sleep(for: .milliseconds(Int64(configuration.flushEverySeconds * 1000)))
      await onStoreThread { $0.flush() }
      let counters = outbox.status.counters
      let seq = counters?.lastSeq ?? 0
      let store = outbox.configuration.store
      let overBudget = Double(counters?.usedBytes ?? 0) > store.thinAbove * Double(store.budgetBytes)
      if Date().timeIntervalSince(lastMaintenance.time) >= configuration.maintenanceEverySeconds
        || seq - lastMaintenance.seq >= configuration.maintenanceEveryRecords || overBudget
      {
        lastMaintenance = (Date(), seq)
        await onStoreThread { $0.maintain() }
      }
      publish()
    }
    recorder.event("appliance_stopped", [("reason", RecordJSON.string("shutdown"))])
    outbox.flush()
    let s = outbox.status
    logger.info(
      "records written",
      metadata: [
        "last_seq": "\(s.counters?.lastSeq ?? 0)", "accepted_through": "\(s.counters?.acceptedThrough ?? 0)",
        "pending_in_memory": "\(s.pending)",
      ])
    // The store stays open: the uploader stops after this service and sends what it can.
  }

  /// SQLite writes (and their fsyncs) on a thread of their own: a slow SD card then holds up
  /// the records, never one of the few threads the control loop runs on.
  private static let storeQueue = DispatchQueue(label: "microgrid-edge.store")

  private func onStoreThread(_ work: @escaping @Sendable (Outbox) -> Void) async {
    let outbox = outbox
    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
      Self.storeQueue.async {
        work(outbox)
        done.resume()
      }
    }
  }

  /// Panel state and alarms from the outbox's and the upload's status.
  private func publish() {
    let store = outbox.status
    let upload = uploader?.status
    status.updateRecords(RecordsView(store: store, upload: upload))

    status.setAlarm(
      "store-write", .critical,
      store.diskFull
        ? "the disk is full: \(store.pending) records wait in memory (\(store.writeProblem ?? ""))"
        : "the record store cannot be written: \(store.writeProblem ?? ""); \(store.pending) records wait in memory",
      active: store.writeProblem != nil)
    let budgetMB = Int((Double(store.budgetBytes) / 1_048_576).rounded())
    let budgetText: String
    switch store.phase {
    case .normal: budgetText = ""
    case .deletingUploaded: budgetText = "near its \(budgetMB) MiB budget: deleting uploaded records early"
    case .thinning:
      budgetText = "near its \(budgetMB) MiB budget: thinning telemetry not yet uploaded to per-interval summaries"
    case .full:
      budgetText =
        "at its \(budgetMB) MiB budget with nothing left to thin: new telemetry is not recorded "
        + "(\(store.telemetryDropped) so far); events, commands and sessions still are"
    }
    status.setAlarm(
      "store-budget", store.phase == .full ? .critical : .warning, "record store \(budgetText)",
      active: store.phase != .normal)
    if let replaced = store.replaced,
      replacementReported.withLock({ r in
        defer { r = replaced }
        return r != replaced
      })
    {
      // Raised once and cleared at once: it stays on panels until someone acknowledges it.
      status.setAlarm("store-replaced", .warning, "record store \(replaced)", active: true)
      status.setAlarm("store-replaced", .warning, "", active: false)
    }
    guard let upload else { return }
    status.setAlarm(
      "upload-refused", .critical,
      "the central program refuses this site's token: nothing is uploaded until it is fixed (\(upload.lastError ?? ""))",
      active: upload.state == .unauthorized)
    status.setAlarm(
      "upload-too-large", .warning, "a record is larger than the central program takes (413); uploads are stuck",
      active: upload.state == .tooLarge)
    status.setAlarm(
      "upload-not-configured", .warning, "records are kept but not uploaded: \(upload.lastError ?? "")",
      active: upload.state == .notConfigured)
    // How long the program has been unreachable, on the uploader's clock (record times may
    // follow a simulated site).
    let offline = [.offline, .throttled].contains(upload.state) && (store.counters?.backlog ?? 0) > 0
    let waiting = Date().timeIntervalSince(upload.since)
    status.setAlarm(
      "upload-offline", .warning,
      "the central program has not been reachable for \(Int(waiting / 60)) min; \(store.counters?.backlog ?? 0) "
        + "records wait (\(upload.lastError ?? ""))",
      active: offline && waiting >= configuration.offlineAlarmSeconds)
  }
}

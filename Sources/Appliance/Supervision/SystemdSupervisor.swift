import Foundation
import ServiceLifecycle
import Synchronization

/// What systemd shows for the appliance (`systemctl status`): its mode, its alarms, its
/// upload backlog.
public struct SupervisionStatus: Sendable, Hashable {
  public var mode: String
  public var activeAlarms: Int
  /// Records the central program does not have yet (nil: no records kept).
  public var uploadBacklog: Int64?
  /// The control step's site I/O is failing (the drivers hold their safe state).
  public var siteIOFailing = false

  public init(mode: String, activeAlarms: Int, uploadBacklog: Int64?, siteIOFailing: Bool = false) {
    self.mode = mode
    self.activeAlarms = activeAlarms
    self.uploadBacklog = uploadBacklog
    self.siteIOFailing = siteIOFailing
  }

  /// The `STATUS=` text: one line, no secrets.
  public var text: String {
    var parts = ["mode \(mode)", activeAlarms == 1 ? "1 alarm" : "\(activeAlarms) alarms"]
    if let uploadBacklog { parts.append("upload backlog \(uploadBacklog) records") }
    if siteIOFailing { parts.append("site I/O failing") }
    return parts.joined(separator: "; ")
  }

  /// What is sent at once when it changes; the backlog alone waits for the next refresh.
  var urgent: String { "\(mode) \(activeAlarms) \(siteIOFailing)" }
}

/// When to say what to systemd, as a pure schedule over the loop's passes: `READY=1` after
/// the first pass, `WATCHDOG=1` `pingsPerInterval` times per watchdog interval, `STATUS=`
/// when the mode or the alarms change (at once) or the rest of it changes (at most every
/// `statusEvery`), `STOPPING=1` once.
public struct NotifySchedule: Sendable {
  public struct Configuration: Sendable {
    /// systemd asks for a ping at least every half interval; four per interval leave room
    /// for a slow step and a period between passes.
    public var pingsPerInterval = 4
    public var statusEvery: Duration = .seconds(10)
    /// How often the status is looked at (the loop may pass many times a second).
    public var statusCheckEvery: Duration = .seconds(1)
    public init() {}
  }

  public let configuration: Configuration
  public let watchdogInterval: Duration?
  private var ready = false
  private var stopping = false
  private var lastPing: ContinuousClock.Instant?
  private var lastCheck: ContinuousClock.Instant?
  private var sent: (status: SupervisionStatus, at: ContinuousClock.Instant)?

  public init(watchdogInterval: Duration?, configuration: Configuration = Configuration()) {
    self.watchdogInterval = watchdogInterval
    self.configuration = configuration
  }

  /// How often the watchdog is pinged (nil: no watchdog).
  public var pingEvery: Duration? { watchdogInterval.map { $0 / configuration.pingsPerInterval } }

  /// Whether the status should be looked at on this pass (it costs a lock and a copy).
  public func wantsStatus(now: ContinuousClock.Instant) -> Bool {
    !ready || lastCheck.map { now - $0 >= configuration.statusCheckEvery } ?? true
  }

  /// The lines to send after a pass of the loop, in one datagram (empty: nothing).
  public mutating func passed(now: ContinuousClock.Instant, status: SupervisionStatus?) -> [String] {
    guard !stopping else { return [] }
    var lines: [String] = []
    if let status {
      lastCheck = now
      let due =
        sent.map { previous in
          previous.status.urgent != status.urgent
            || (previous.status != status && now - previous.at >= configuration.statusEvery)
        } ?? true
      if due {
        lines.append("STATUS=\(status.text)")
        sent = (status, now)
      }
    }
    if !ready {
      ready = true
      lines.insert("READY=1", at: 0)
    }
    if let every = pingEvery, lastPing.map({ now - $0 >= every }) ?? true {
      lines.append("WATCHDOG=1")
      lastPing = now
    }
    return lines
  }

  /// The lines to send when the appliance begins to stop (once).
  public mutating func stop() -> [String] {
    guard !stopping else { return [] }
    stopping = true
    return ["STOPPING=1", "STATUS=stopping: finishing the control step and saving state"]
  }
}

/// The control loop's heartbeat to systemd (`Type=notify`, `WatchdogSec=`): it is sent
/// from the loop itself, so a loop that hangs stops pinging and systemd restarts the
/// appliance, while a slow upload, a stuck charger or a slow disk (other tasks, their own
/// threads) does not.
public final class SystemdSupervisor: LoopHeartbeat {
  private let notifier: SystemdNotifier
  private let status: @Sendable () -> SupervisionStatus
  private let schedule: Mutex<NotifySchedule>
  private let clock = ContinuousClock()

  public init(
    notifier: SystemdNotifier, configuration: NotifySchedule.Configuration = .init(),
    status: @escaping @Sendable () -> SupervisionStatus
  ) {
    self.notifier = notifier
    self.status = status
    schedule = Mutex(NotifySchedule(watchdogInterval: notifier.watchdogInterval, configuration: configuration))
  }

  public var pingEvery: Duration? { schedule.withLock { $0.pingEvery } }

  public func loopPassed(stepWentThrough: Bool) {
    guard notifier.isActive else { return }
    let now = clock.now
    let wants = schedule.withLock { $0.wantsStatus(now: now) }
    let current = wants ? status() : nil
    let lines = schedule.withLock { $0.passed(now: now, status: current) }
    if !lines.isEmpty { notifier.send(lines.joined(separator: "\n")) }
  }

  public func loopStopping() {
    guard notifier.isActive else { return }
    let lines = schedule.withLock { $0.stop() }
    if !lines.isEmpty { notifier.send(lines.joined(separator: "\n")) }
  }
}

extension SiteStatus {
  /// What `systemctl status` says of the appliance now.
  public var supervisionStatus: SupervisionStatus {
    let view = view
    return SupervisionStatus(
      mode: view.last?.decisions.mode.rawValue ?? "starting",
      activeAlarms: view.alarms.filter(\.active).count,
      uploadBacklog: view.records.map { $0.store.counters?.backlog ?? Int64($0.store.pending) },
      siteIOFailing: siteIOFailing)
  }
}

/// Says STOPPING=1 the moment SIGTERM arrives. It is the last service of the group, so the
/// group tells it first: the others (the panel, then the loop) stop one after another and
/// may take seconds, which systemd should already know about.
public struct StopNotice: Service {
  private let heartbeat: any LoopHeartbeat

  public init(_ heartbeat: any LoopHeartbeat) { self.heartbeat = heartbeat }

  public func run() async throws {
    try? await gracefulShutdown()
    heartbeat.loopStopping()
  }
}

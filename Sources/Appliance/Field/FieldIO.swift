import Foundation
import GPIO
import Logging
import SiteModel
import Synchronization

/// The building's wired signals, over GPIO: the transfer switch's utility-available and
/// position contacts, the emergency stop and the utility meter's pulses in; the transfer
/// command and the load-shed relays out.
///
/// Edges come in on reader threads (one per input, blocked in the kernel), are debounced
/// from their kernel timestamps, and wake the control loop the moment an accepted level
/// changes. A utility contact that drops wakes it at once, before its debounce, so export
/// stops within one step; the transfer waits for the loss to be confirmed.
///
/// The same code runs over `SimulatedGPIO` in tests, the demo and the bench; there,
/// `pump()` takes the pending edges synchronously instead of reader threads.
public final class FieldIO: SnapshotOverlay, DecisionActuator, Sendable {
  public let section: GPIOSection
  public let backend: any GPIOBackend
  private let trigger: StepTrigger?
  private let logger: Logger
  private let status: SiteStatus?
  private let inputs: [Input]
  private let islandCommand: (any GPIOOutput)?
  private let utilityCommand: (any GPIOOutput)?
  /// In restore order, as the controller counts groups.
  private let shedRelays: [(relay: GPIOSection.ShedRelay, line: any GPIOOutput)]
  private let state: Mutex<State>
  private let stopping = Atomic<Bool>(false)

  /// The wired signals.
  public enum Signal: String, Sendable, CaseIterable {
    case utilityAvailable = "utility_available"
    case switchAtUtility = "switch_at_utility"
    case switchAtIsland = "switch_at_island"
    case emergencyStop = "emergency_stop"
    case pulseMeter = "pulse_meter"
  }

  final class Input: Sendable {
    let signal: Signal
    let line: any GPIOInput
    init(signal: Signal, line: any GPIOInput) {
      self.signal = signal
      self.line = line
    }
  }

  struct State {
    var levels: [Signal: DebouncedLevel] = [:]
    var pulse: PulseMeter?
    /// The position the outputs ask for; the relays' states as last written.
    var commanded: TransferSwitchPosition = .utility
    var shed: [Bool] = []
    var failures: [String: String] = [:]
    /// When the utility contact last dropped (raw), for the log line that confirms it.
    var lossEdgeAt: UInt64?
    /// The pulse meter's staleness as last reported to the alarms.
    var pulseStale = false
  }

  /// Default debounce by signal: contacts bounce for a few milliseconds; an emergency stop
  /// acts on its first edge.
  public static func defaultDebounceMs(_ signal: Signal) -> Double {
    switch signal {
    case .emergencyStop, .pulseMeter: 0
    case .utilityAvailable, .switchAtUtility, .switchAtIsland: 20
    }
  }

  /// Requests every configured line. Throws the first line that cannot be had, naming it
  /// and its key in the configuration.
  public init(
    section: GPIOSection, backend: any GPIOBackend, site: SiteDescription, trigger: StepTrigger? = nil,
    status: SiteStatus? = nil, logger: Logger
  ) throws(FieldError) {
    self.section = section
    self.backend = backend
    self.trigger = trigger
    self.status = status
    self.logger = logger
    var opened: [Input] = []
    var outputs: [any GPIOOutput] = []
    func close() {
      for i in opened { i.line.close() }
      for o in outputs { o.close() }
    }
    func input(_ key: String, _ pin: GPIOSection.Pin) throws(FieldError) -> any GPIOInput {
      var r = section.request(pin)
      r.consumer = "microgrid-edge"
      do {
        return try backend.requestInput(r, edges: true)
      } catch {
        close()
        throw FieldError(key: "gpio.\(key)", error: error)
      }
    }
    func output(_ key: String, _ pin: GPIOSection.Pin, initial: Bool) throws(FieldError) -> any GPIOOutput {
      var r = section.request(pin)
      r.consumer = "microgrid-edge"
      do {
        let o = try backend.requestOutput(r, initial: initial)
        outputs.append(o)
        return o
      } catch {
        close()
        throw FieldError(key: "gpio.\(key)", error: error)
      }
    }
    let now = backend.nowNanoseconds()
    var initial = State()
    let signals: [(Signal, GPIOSection.Pin?)] = [
      (.utilityAvailable, section.inputs.utilityAvailable), (.switchAtUtility, section.inputs.switchAtUtility),
      (.switchAtIsland, section.inputs.switchAtIsland), (.emergencyStop, section.inputs.emergencyStop),
    ]
    for (signal, pin) in signals {
      guard let pin else { continue }
      let line = try input("inputs.\(signal.rawValue)", pin)
      opened.append(Input(signal: signal, line: line))
      let level: Bool
      do throws(GPIOError) { level = try line.read() } catch {
        close()
        throw FieldError(key: "gpio.inputs.\(signal.rawValue)", error: error)
      }
      let debounce = pin.debounceMs ?? Self.defaultDebounceMs(signal)
      initial.levels[signal] = DebouncedLevel(
        level: level, at: now, debounceNanoseconds: UInt64(debounce * 1_000_000))
    }
    if let p = section.pulseMeter {
      let pin = GPIOSection.Pin(line: p.line, chip: p.chip, activeLow: p.activeLow, bias: p.bias)
      let line = try input("pulse_meter", pin)
      opened.append(Input(signal: .pulseMeter, line: line))
      initial.pulse = PulseMeter(
        PulseMeter.Configuration(
          kWhPerPulse: p.kWhPerPulse, form: p.form ?? .a, maxKW: p.maxKW ?? site.importLimitKW * 1.5,
          staleAfterSeconds: p.staleAfterSeconds ?? 300),
        startedAt: now)
    }
    // Outputs start where a running building is: on the utility, nothing shed.
    islandCommand = try section.outputs.map { o throws(FieldError) in
      try output("outputs.transfer_to_island", o.transferToIsland, initial: false)
    }
    utilityCommand = try section.outputs?.transferToUtility.map { pin throws(FieldError) in
      try output("outputs.transfer_to_utility", pin, initial: true)
    }
    var relays: [(GPIOSection.ShedRelay, any GPIOOutput)] = []
    for (i, relay) in section.loadShed.enumerated() {
      let pin = GPIOSection.Pin(line: relay.line, chip: relay.chip, activeLow: relay.activeLow)
      relays.append((relay, try output("load_shed.\(i)", pin, initial: false)))
    }
    // The controller restores groups in priority order (then as listed): keep the same order.
    shedRelays = relays.enumerated().sorted { ($0.element.0.priority, $0.offset) < ($1.element.0.priority, $1.offset) }
      .map { ($0.element.0, $0.element.1) }
    initial.shed = shedRelays.map { _ in false }
    inputs = opened
    state = Mutex(initial)
    // The levels the requests set, so the first step writes only what it changes.
    outputLevels.withLock { levels in
      if islandCommand != nil { levels["out.transfer_to_island"] = false }
      if utilityCommand != nil { levels["out.transfer_to_utility"] = true }
      for r in shedRelays { levels["out.load_shed.\(r.relay.id)"] = false }
    }
  }

  // MARK: - Edges in

  /// Starts one reader thread per input (the daemon). Tests and the bench over a
  /// simulated backend may call `pump()` instead.
  public func start() {
    for input in inputs {
      let thread = Thread { [self] in self.readLoop(input) }
      thread.name = "gpio \(input.signal.rawValue)"
      thread.stackSize = 256 * 1024
      thread.start()
    }
    logger.info(
      "GPIO inputs watched",
      metadata: [
        "backend": "\(backend.name)", "inputs": "\(inputs.map { "\($0.signal.rawValue)=\($0.line.description)" })",
      ])
  }

  /// Stops the readers (within one wait, 100 ms) and releases every line. Released outputs
  /// (as at any process exit) may fall back to their defaults: the relays and the transfer
  /// command are wired to be safe undriven (docs/outage-sequence.md).
  public func stop() {
    stopping.store(true, ordering: .relaxed)
    Thread.sleep(forTimeInterval: 0.15)
    for i in inputs { i.line.close() }
    islandCommand?.close()
    utilityCommand?.close()
    for r in shedRelays { r.line.close() }
  }

  private func readLoop(_ input: Input) {
    var failures = 0
    while !stopping.load(ordering: .relaxed) {
      // Wait no longer than a pending debounce needs, so its acceptance is on time.
      let wait = state.withLock { s -> UInt64 in
        guard let due = s.levels[input.signal]?.pendingAcceptance else { return 100_000_000 }
        let now = backend.nowNanoseconds()
        return due > now ? min(100_000_000, due - now) : 0
      }
      do {
        let edges = try input.line.waitForEdges(timeoutNanoseconds: wait)
        take(input.signal, edges)
        if edges.isEmpty && input.signal != .pulseMeter { try resync(input) }
        failures = 0
      } catch {
        if stopping.load(ordering: .relaxed) { return }
        failures += 1
        fail(input.signal.rawValue, "\(error)")
        if failures == 1 || failures % 60 == 0 {
          logger.error(
            "GPIO input failed; retrying every second",
            metadata: ["input": "\(input.signal.rawValue)", "error": "\(error)"])
        }
        Thread.sleep(forTimeInterval: 1)
      }
    }
  }

  /// The kernel keeps 16 events per line and drops the newest when full, so after a burst
  /// the last edge (the level the contact settled at) can be lost. When a wait comes back
  /// empty, the line is read, and a level that differs from the last edge seen counts as
  /// an edge now.
  private func resync(_ input: Input) throws(GPIOError) {
    let level = try input.line.read()
    let differs = state.withLock { $0.levels[input.signal].map { $0.raw != level } ?? false }
    if differs {
      logger.warning(
        "GPIO \(input.signal.rawValue): level differs from the last edge seen (events lost); resynchronized")
      take(input.signal, [LineEdge(active: level, timestampNanoseconds: backend.nowNanoseconds())])
    }
  }

  /// Takes every pending edge now, without waiting (tests, bench, demo over a simulated
  /// backend).
  public func pump() {
    for input in inputs {
      if let edges = try? input.line.waitForEdges(timeoutNanoseconds: 0) { take(input.signal, edges) }
    }
    settle()
  }

  /// Feeds edges into the debouncers or the pulse meter; wakes the loop when it matters.
  func take(_ signal: Signal, _ edges: [LineEdge]) {
    let now = backend.nowNanoseconds()
    let (wake, urgent) = state.withLock { s -> (Bool, Bool) in
      if signal == .pulseMeter {
        for e in edges {
          if s.pulse?.take(e) == .bounce {
            logger.debug("pulse meter: pulse too soon after the last one; dropped as a bounce")
          }
        }
        return (false, false)
      }
      guard var level = s.levels[signal] else { return (false, false) }
      let before = level.level
      let rawBefore = level.raw
      for e in edges { level.take(e) }
      level.settle(at: now)
      s.levels[signal] = level
      // A utility contact that drops is urgent: export stops before the debounce ends.
      let lossEdge = signal == .utilityAvailable && rawBefore && !level.raw
      if lossEdge { s.lossEdgeAt = level.rawSince }
      return (level.level != before || lossEdge, lossEdge || signal == .emergencyStop)
    }
    if wake { trigger?.signal(urgent: urgent) }
  }

  /// Accepts levels whose debounce has run out.
  func settle() {
    let now = backend.nowNanoseconds()
    let changed = state.withLock { s -> Bool in
      var any = false
      for (signal, var level) in s.levels {
        if level.settle(at: now) { any = true }
        s.levels[signal] = level
      }
      return any
    }
    if changed { trigger?.signal(urgent: true) }
  }

  private func fail(_ what: String, _ message: String) {
    let first = state.withLock { s in
      defer { s.failures[what] = message }
      return s.failures[what] == nil
    }
    if first { status?.setAlarm("gpio-\(what)", .critical, "GPIO \(what): \(message)", active: true) }
  }

  private func recovered(_ what: String) {
    let was = state.withLock { s in s.failures.removeValue(forKey: what) != nil }
    if was { status?.setAlarm("gpio-\(what)", .critical, "", active: false) }
  }

  // MARK: - Into the snapshot

  public func overlay(_ s: inout Snapshot) {
    settle()
    let now = backend.nowNanoseconds()
    let view = state.withLock { s in (s.levels, s.pulse) }
    let (levels, pulse) = view
    if let utility = levels[.utilityAvailable] {
      s.utilityAvailable = utility.level
      s.utilityLossPending = utility.level && !utility.raw
    }
    // A position counts only while its contact is closed now and has settled: the moment
    // the switch starts to move it is no longer confirmed anywhere (the island's chargers
    // stop), while its arrival waits out the debounce.
    let atUtility = levels[.switchAtUtility].map { $0.level && $0.raw }
    let atIsland = levels[.switchAtIsland].map { $0.level && $0.raw }
    switch (atUtility, atIsland) {
    case (true?, true?), (false?, false?): s.transferSwitch = .unknown  // moving, or a contact fault
    case (true?, _), (_, false?): s.transferSwitch = .utility
    case (_, true?), (false?, _): s.transferSwitch = .island
    case (nil, nil): break
    }
    if let stop = levels[.emergencyStop] { s.emergencyStop = stop.level || stop.raw }
    if let pulse {
      // The revenue meter sees the building and the chargers together; while on the
      // utility, silence means it has stopped counting (or its wire is cut).
      let onUtility = s.transferSwitch == .utility && s.utilityAvailable
      let stale = onUtility && pulse.isStale(at: now)
      if let kW = pulse.kW(at: now) { s.buildingDemandKW = max(0, kW - s.chargers.reduce(0) { $0 + $1.measuredKW }) }
      if stale { s.inputsFresh = false }
      // Only a change goes to the alarms: this runs on the control loop every step.
      let changed = state.withLock { st in
        defer { st.pulseStale = stale }
        return st.pulseStale != stale
      }
      if changed {
        status?.setAlarm(
          "pulse-meter-stale", .critical,
          "utility meter: no pulse for \(Int(pulse.silentSeconds(at: now))) s on \(section.pulseMeter!.line); safe state: no discharge",
          active: stale)
      }
    }
  }

  // MARK: - Decisions out

  /// Drives the transfer command and the shed relays. Writes only what changes; a write
  /// that fails raises an alarm and is tried again next step.
  public func actuate(_ d: Decisions, _ s: Snapshot) {
    let (position, shed, lossEdge) = state.withLock { st -> (TransferSwitchPosition, [Bool], UInt64?) in
      switch d.transferSwitch {
      case .toIsland: st.commanded = .island
      case .toUtility: st.commanded = .utility
      case .hold:
        // Hold means stay where the switch is: the maintained command follows the confirmed
        // position, so a switch that failed to move is not left with a stale command that
        // would move it later on its own.
        if s.transferSwitch != .unknown { st.commanded = s.transferSwitch }
      }
      // Shed groups past those restored; all connected when nothing is shed.
      let shed = shedRelays.indices.map { d.shedNonCriticalLoads && $0 >= d.restoredLoadGroups }
      defer { if d.transferSwitch == .toIsland { st.lossEdgeAt = nil } }
      return (st.commanded, shed, d.transferSwitch == .toIsland ? st.lossEdgeAt : nil)
    }
    if let island = islandCommand { write(island, position == .island, "transfer_to_island") }
    if let utility = utilityCommand { write(utility, position == .utility, "transfer_to_utility") }
    for (i, relay) in shedRelays.enumerated() { write(relay.line, shed[i], "load_shed.\(relay.relay.id)") }
    if let lossEdge, d.transferSwitch == .toIsland {
      let ms = Double(backend.nowNanoseconds() &- lossEdge) / 1e6
      logger.notice(
        "transfer to island commanded", metadata: ["since_utility_contact_dropped_ms": "\((ms * 10).rounded() / 10)"])
    }
    let changed = state.withLock { st -> [Int] in
      let c = shed.indices.filter { shed[$0] != st.shed[$0] }
      st.shed = shed
      return c
    }
    for i in changed {
      logger.notice(
        shed[i] ? "load group \(shedRelays[i].relay.id) shed" : "load group \(shedRelays[i].relay.id) restored",
        metadata: ["priority": "\(shedRelays[i].relay.priority)", "kw": "\(shedRelays[i].relay.kW)"])
    }
  }

  private func write(_ line: any GPIOOutput, _ active: Bool, _ what: String) {
    let key = "out.\(what)"
    let last = outputLevels.withLock { $0[key] }
    guard last != active else { return }
    do {
      try line.write(active)
      outputLevels.withLock { $0[key] = active }
      recovered(what)
    } catch {
      fail(what, "\(error)")
    }
  }
  private let outputLevels = Mutex<[String: Bool]>([:])

  /// The earliest moment a pending debounce will be accepted (nanoseconds on the
  /// backend's clock), for a caller that steps time itself.
  public var nextAcceptance: UInt64? {
    state.withLock { s in s.levels.values.compactMap(\.pendingAcceptance).min() }
  }

  /// The utility meter's pulses as a demand source: its power now, nil without a pulse
  /// meter, before its first interval, or while it is silent past its staleness.
  public func pulseMeterKW() -> Double? {
    let now = backend.nowNanoseconds()
    return state.withLock { s in
      guard let pulse = s.pulse, !pulse.isStale(at: now) else { return nil }
      return pulse.kW(at: now)
    }
  }

  // MARK: - For panels and gpio-check

  public struct View: Sendable {
    public var inputs: [(signal: Signal, level: Bool, raw: Bool, edges: Int, bounces: Int)]
    public var pulseKW: Double?
    public var pulses: Int
    public var pulsesRejected: Int
    public var commanded: TransferSwitchPosition
    public var shed: [(id: String, shed: Bool)]
  }

  public var view: View {
    let now = backend.nowNanoseconds()
    return state.withLock { s in
      View(
        inputs: Signal.allCases.compactMap { sig in
          s.levels[sig].map { (sig, $0.level, $0.raw, $0.edges, $0.bounces) }
        },
        pulseKW: s.pulse?.kW(at: now), pulses: s.pulse?.pulses ?? 0, pulsesRejected: s.pulse?.rejected ?? 0,
        commanded: s.commanded, shed: zip(shedRelays, s.shed).map { ($0.0.relay.id, $0.1) })
    }
  }
}

/// A line the configuration names could not be had.
public struct FieldError: Error, Sendable, CustomStringConvertible {
  /// The configuration key ("gpio.inputs.utility_available").
  public var key: String
  public var error: GPIOError
  public var description: String { "\(key): \(error)" }
}

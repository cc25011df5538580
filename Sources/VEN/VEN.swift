import Foundation
import Logging
import OpenADR
import ServiceLifecycle
import Synchronization

/// What the VEN needs from the appliance it runs in, and tells it.
public protocol VENHost: Sendable {
  /// Why the site cannot deliver in this event now (nil: it can). Asked at every poll
  /// until the event starts.
  func reasonNotToDeliver(_ entry: EventBook.Entry, now: Double) -> String?
  /// The VEN's state changed: keep it (state store), follow its events.
  func stateChanged(_ state: VENState)
  /// Its status changed (registration, last contact, errors): for panels.
  func statusChanged(_ status: VENStatus)
  /// Raise (active) or clear one of the VEN's alarms.
  func alarm(_ id: String, _ message: String, active: Bool)
  /// A record for the central program: events received, answers given.
  func record(_ kind: String, _ fields: [(String, String)])
}

/// Wakes the VEN's loop before its next poll is due (staff opted out, shutdown). The
/// appliance's `StepTrigger` is one.
public protocol VENWakeUp: Sendable {
  func signal(urgent: Bool)
  /// Returns early when signalled.
  @discardableResult func wait(until deadline: ContinuousClock.Instant) async -> Bool
}

/// How the VEN stands with the VTN, for panels and the log.
public struct VENStatus: Sendable, Hashable {
  public enum Link: String, Sendable {
    case starting, registering, registered, refused, unreachable, cancelled
  }
  public var link: Link = .starting
  public var venID: String?
  public var vtnID: String?
  public var pollSeconds: Double
  /// UTC seconds of the last answer from the VTN.
  public var lastContact: Double?
  public var lastPoll: Double?
  public var lastError: String?
  public var polls = 0
}

/// An OpenADR 2.0b VEN, profile B, simpleHttp pull (docs/openadr.md): registers with the
/// VTN, polls it, keeps its events (`EventBook`) and answers them (optIn / optOut), and
/// sends the reports the VTN asks for. One task, one request at a time.
public final class VEN: Service, Sendable {
  public struct Configuration: Sendable {
    public var venName: String
    /// The venID to register as (nil: the VTN assigns one, kept afterwards).
    public var venID: String?
    /// How often to poll, seconds; slower if the VTN asks for slower.
    public var pollSeconds: Double = 10
    /// An alarm after this long without an answer from the VTN, seconds.
    public var silenceAlarmSeconds: Double = 900
    /// Retries of a failed registration or an unreachable VTN back off up to this.
    public var retryMaxSeconds: Double = 60
    public var limits = EventBook.Limits()
    public init(venName: String) { self.venName = venName }
  }

  public let configuration: Configuration
  private let transport: any VTNTransport
  private let host: any VENHost
  private let logger: Logger
  private let now: @Sendable () -> Double
  private let inner: Mutex<Inner>
  private let wake: any VENWakeUp

  struct Inner {
    var state: VENState
    var status: VENStatus
    var telemetry = TelemetryWindow()
    var failures = 0
    var nextRegistration: Double = 0
    var started: Double
  }

  public init(
    configuration: Configuration, transport: any VTNTransport, host: any VENHost, restored: VENState?,
    wake: any VENWakeUp, logger: Logger, now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }
  ) {
    self.configuration = configuration
    self.transport = transport
    self.host = host
    self.logger = logger
    self.now = now
    var state = restored ?? VENState()
    if state.venID == nil { state.venID = configuration.venID ?? state.registration?.venID }
    inner = Mutex(
      Inner(state: state, status: VENStatus(pollSeconds: configuration.pollSeconds), started: now()))
    self.wake = wake
  }

  public var state: VENState { inner.withLock { $0.state } }
  public var status: VENStatus { inner.withLock { $0.status } }

  /// One second of the site, for the reports.
  public func record(_ sample: TelemetryWindow.Sample) {
    inner.withLock { $0.telemetry.add(sample) }
  }

  // MARK: - Staff

  /// Staff opt out of an event (or back in, with nil): the answer goes to the VTN at once.
  public func staffOpt(eventID: String, optOut: EventBook.StaffOptOut?) -> Result<String, VENCommandError> {
    let result = inner.withLock { s -> Result<String, VENCommandError> in
      guard let entry = s.state.book.entries[eventID] else {
        let known = s.state.book.entries.keys.sorted()
        return .failure(
          VENCommandError(
            "no event \(eventID) from the VTN"
              + (known.isEmpty ? " (there are none)" : " (known: \(known.joined(separator: ", ")))")))
      }
      if entry.isOver(at: now()) { return .failure(VENCommandError("event \(eventID) is over")) }
      if let refusal = entry.refusal {
        return .failure(VENCommandError("event \(eventID) is not followed anyway: \(refusal.reason)"))
      }
      _ = s.state.book.setStaffOptOut(eventID, optOut)
      let opt = s.state.book.entries[eventID]!.opt
      return .success(
        optOut != nil
          ? "opted out of event \(eventID); the VTN is told"
          : (opt == .optIn
            ? "opted back in to event \(eventID); the VTN is told"
            : "staff's opt-out of \(eventID) withdrawn, but the site still cannot deliver: \(s.state.book.entries[eventID]!.optReason ?? "")")
      )
    }
    if case .success = result {
      let state = self.state
      host.stateChanged(state)
      wake.signal(urgent: false)
    }
    return result
  }

  // MARK: - Leaving

  /// Cancels the VEN's registration with the VTN (oadrCancelPartyRegistration), for a site
  /// that leaves the program or moves to another VTN. The events already known are kept
  /// until they end; the next start registers afresh. Returns what to tell the person.
  public func leave() async -> Result<String, VENCommandError> {
    guard let registration = inner.withLock({ $0.state.registration }) else {
      return .failure(VENCommandError("the VEN is not registered with a VTN; nothing to cancel"))
    }
    let body = VENMessage.cancelPartyRegistration(
      requestID: requestID(), registrationID: registration.registrationID, venID: registration.venID)
    guard let answer = await exchange(.registerParty, body, what: "oadrCancelPartyRegistration") else {
      return .failure(
        VENCommandError(
          "the VTN could not be reached, so the registration stands: \(status.lastError ?? "no answer")"))
    }
    switch answer {
    case .canceledPartyRegistration(let c) where c.response.code == 200:
      break
    case .response(let r) where r.code == 200:
      break
    case .canceledPartyRegistration(let c):
      return .failure(VENCommandError("the VTN refused: \(c.response.code) \(c.response.description ?? "")"))
    case .response(let r):
      return .failure(VENCommandError("the VTN refused: \(r.code) \(r.description ?? "")"))
    default:
      return .failure(VENCommandError("the VTN answered \(answer.messageName)"))
    }
    let state = inner.withLock { s -> VENState in
      s.state.registration = nil
      s.state.reports = []
      s.state.reportsRegistered = false
      return s.state
    }
    host.stateChanged(state)
    logger.notice("OpenADR: registration \(registration.registrationID) cancelled with the VTN")
    host.record("openadr_unregistered", [("ven_id", registration.venID)])
    return .success(
      "registration \(registration.registrationID) of VEN \(registration.venID) cancelled with the VTN")
  }

  // MARK: - Service

  public func run() async throws {
    // Whatever was kept is followed at once, before the VTN is reached.
    host.stateChanged(state)
    let clock = ContinuousClock()
    await withGracefulShutdownHandler {
      while !Task.isShuttingDownGracefully && !Task.isCancelled {
        let wait = await round()
        // The poll interval, or sooner when staff changed an answer (or at shutdown).
        await self.wake.wait(until: clock.now.advanced(by: .milliseconds(Int64(max(0.05, wait) * 1000))))
      }
    } onGracefulShutdown: {
      self.wake.signal(urgent: false)
    }
    await transport.shutdown()
    logger.info("OpenADR VEN stopped")
  }

  /// One round: register if need be, poll until the VTN has nothing more, answer, report.
  /// Returns the seconds until the next round.
  func round() async -> Double {
    let t = now()
    let registered = inner.withLock { $0.state.registration != nil }
    if !registered {
      let due = inner.withLock { $0.nextRegistration }
      if t >= due { await register() }
    }
    if inner.withLock({ $0.state.registration != nil }) {
      if !inner.withLock({ $0.state.reportsRegistered }) { await registerReports() }
      await pollUntilIdle()
      await sendReports()
    }
    judge()
    if inner.withLock({ $0.state.registration != nil }) { await answerEvents() }
    checkSilence()
    return inner.withLock { s in
      s.state.registration == nil
        ? max(0.1, min(s.nextRegistration - now(), configuration.retryMaxSeconds))
        : s.status.pollSeconds
    }
  }

  // MARK: - Exchanges

  /// Sends one message and reads the answer. nil: it failed (logged, counted).
  func exchange(_ service: VTNService, _ body: [UInt8], what: String) async -> VTNMessage? {
    try? await attempt(service, body, what: what).get()
  }

  /// Why an exchange failed: the VTN could not be reached (worth sending again), or it
  /// answered something the VEN will not take (an HTTP error, a document refused).
  enum ExchangeFailure: Error {
    case unreachable
    case refused
  }

  /// Sends one message and reads the answer; a failure is logged and counted.
  func attempt(_ service: VTNService, _ body: [UInt8], what: String) async -> Result<VTNMessage, ExchangeFailure> {
    let answer: [UInt8]
    do {
      answer = try await transport.post(service, body: body)
    } catch {
      failed("\(what): \(error.description)", unreachable: error.kind == .unreachable)
      return .failure(error.kind == .unreachable ? .unreachable : .refused)
    }
    contact()
    // openleadr answers the VEN's own oadrResponse with an empty 200 (docs/openadr-study.md).
    if answer.isEmpty { return .success(.response(Response(code: 200, description: "(empty answer)"))) }
    do {
      return .success(try VTNMessage.decode(answer))
    } catch {
      failed("\(what): the VTN's answer is refused: \(error)", unreachable: false)
      return .failure(.refused)
    }
  }

  private func contact() {
    let t = now()
    let changed = inner.withLock { s -> VENStatus in
      s.status.lastContact = t
      s.failures = 0
      return s.status
    }
    host.statusChanged(changed)
  }

  private func failed(_ problem: String, unreachable: Bool) {
    let (status, count) = inner.withLock { s -> (VENStatus, Int) in
      s.failures += 1
      s.status.lastError = problem
      if unreachable && s.status.link != .cancelled && s.status.link != .refused { s.status.link = .unreachable }
      return (s.status, s.failures)
    }
    // Bounded on an SD card: the first failures in full, then one line in ten.
    if count <= 3 || count % 10 == 0 {
      logger.error("OpenADR: \(problem)", metadata: ["failures_in_a_row": "\(count)"])
    }
    host.statusChanged(status)
  }

  private func requestID() -> String { UUID().uuidString.lowercased() }

  // MARK: Registration

  func register() async {
    setLink(.registering)
    let query = VENMessage.queryRegistration(requestID: requestID())
    guard let answer = await exchange(.registerParty, query, what: "oadrQueryRegistration") else {
      return retryRegistrationLater()
    }
    var vtnID: String?
    var requestedPoll: Double?
    if case .createdPartyRegistration(let created) = answer {
      vtnID = created.vtnID
      requestedPoll = created.pollFrequencySeconds
    }
    let (venID, previous) = inner.withLock { ($0.state.venID, $0.state.registration?.registrationID) }
    let create = VENMessage.createPartyRegistration(
      requestID: requestID(), registrationID: previous, venID: venID, venName: configuration.venName)
    guard let reply = await exchange(.registerParty, create, what: "oadrCreatePartyRegistration") else {
      return retryRegistrationLater()
    }
    switch reply {
    case .createdPartyRegistration(let created):
      guard created.response.code == 200, let registrationID = created.registrationID,
        let assigned = created.venID ?? venID
      else {
        refused(
          "the VTN refused the registration"
            + (created.response.code != 200
              ? " (\(created.response.code) \(created.response.description ?? ""))" : " (no registrationID given)"))
        return
      }
      let poll = created.pollFrequencySeconds ?? requestedPoll
      let registration = VENState.Registration(
        venID: assigned, registrationID: registrationID, vtnID: created.vtnID ?? vtnID, requestedPollSeconds: poll)
      let (state, status) = inner.withLock { s -> (VENState, VENStatus) in
        s.state.registration = registration
        s.state.venID = assigned
        s.state.reportsRegistered = false
        s.status.link = .registered
        s.status.venID = assigned
        s.status.vtnID = registration.vtnID
        s.status.lastError = nil
        s.status.pollSeconds = Self.pollSeconds(configured: configuration.pollSeconds, requested: poll)
        return (s.state, s.status)
      }
      logger.notice(
        "OpenADR: registered with the VTN",
        metadata: [
          "ven_id": "\(assigned)", "registration_id": "\(registrationID)", "vtn_id": "\(registration.vtnID ?? "-")",
          "poll_s": "\(status.pollSeconds)",
        ])
      host.alarm("openadr-registration", "", active: false)
      host.record("openadr_registered", [("ven_id", assigned), ("vtn_id", registration.vtnID ?? "")])
      host.stateChanged(state)
      host.statusChanged(status)
    case .response(let r):
      refused("the VTN answered the registration with \(r.code) \(r.description ?? "")")
    default:
      refused("the VTN answered the registration with \(reply.messageName)")
    }
  }

  /// The VEN polls as configured, but never more often than the VTN asks.
  static func pollSeconds(configured: Double, requested: Double?) -> Double {
    guard let requested, requested.isFinite, requested > configured else { return configured }
    return min(requested, 3600)
  }

  private func refused(_ why: String) {
    logger.error("OpenADR: \(why); trying again later")
    let status = inner.withLock { s -> VENStatus in
      s.status.link = .refused
      s.status.lastError = why
      return s.status
    }
    host.alarm("openadr-registration", "OpenADR: \(why)", active: true)
    host.statusChanged(status)
    retryRegistrationLater(at: configuration.retryMaxSeconds)
  }

  private func retryRegistrationLater(at seconds: Double? = nil) {
    inner.withLock { s in
      let backoff = min(configuration.retryMaxSeconds, pow(2, Double(min(s.failures, 6))))
      s.nextRegistration = now() + (seconds ?? backoff)
    }
  }

  private func setLink(_ link: VENStatus.Link) {
    let status = inner.withLock { s -> VENStatus in
      s.status.link = link
      return s.status
    }
    host.statusChanged(status)
  }

  /// Forgets the registration (the VTN asked to register again, or cancelled it).
  private func dropRegistration(_ link: VENStatus.Link, retryIn seconds: Double) {
    let (state, status) = inner.withLock { s -> (VENState, VENStatus) in
      s.state.registration = nil
      s.state.reportsRegistered = false
      s.state.reports = []
      s.status.link = link
      s.nextRegistration = now() + seconds
      return (s.state, s.status)
    }
    host.stateChanged(state)
    host.statusChanged(status)
  }

  // MARK: Polling

  func pollUntilIdle() async {
    // The VTN hands out one message per poll; poll again at once after any that is not
    // the empty answer, up to a bound (a VTN that never runs dry cannot hold the VEN).
    for _ in 0..<10 {
      guard let venID = inner.withLock({ $0.state.registration?.venID }) else { return }
      let answer = await exchange(.poll, VENMessage.poll(venID: venID), what: "oadrPoll")
      let t = now()
      inner.withLock { s in
        s.status.polls += 1
        s.status.lastPoll = t
      }
      guard let answer else { return }
      let more = await handle(answer, polledAt: t)
      guard more else { return }
    }
  }

  /// Acts on what a poll brought. Returns whether to poll again at once.
  func handle(_ message: VTNMessage, polledAt t: Double) async -> Bool {
    switch message {
    case .response(let r):
      if r.code != 200 {
        failed("oadrPoll: the VTN answered \(r.code) \(r.description ?? "")", unreachable: false)
        if r.code == 463 || r.code == 452 { dropRegistration(.registering, retryIn: 0) }
      }
      return false
    case .distributeEvent(let distribution):
      await take(distribution, at: t)
      return true
    case .createReport(let create):
      await subscribe(create.reportRequests, requestID: create.requestID, at: t)
      return true
    case .registeredReport(let registered):
      await subscribe(registered.reportRequests, requestID: registered.response.requestID ?? "", at: t)
      return true
    case .cancelReport(let cancel):
      let state = inner.withLock { s -> VENState in
        s.state.reports.removeAll { cancel.reportRequestIDs.contains($0.reportRequestID) }
        return s.state
      }
      host.stateChanged(state)
      logger.notice("OpenADR: the VTN cancelled reports \(cancel.reportRequestIDs.joined(separator: ", "))")
      if let venID = state.registration?.venID {
        _ = await exchange(
          .report,
          VENMessage.response(code: 200, description: "OK", requestID: cancel.requestID, venID: venID),
          what: "oadrResponse to oadrCancelReport")
      }
      return true
    case .requestReregistration:
      logger.notice("OpenADR: the VTN asks the VEN to register again")
      if let venID = inner.withLock({ $0.state.registration?.venID }) {
        _ = await exchange(
          .registerParty, VENMessage.response(code: 200, description: "OK", requestID: "", venID: venID),
          what: "oadrResponse to oadrRequestReregistration")
      }
      dropRegistration(.registering, retryIn: 0)
      await register()
      return inner.withLock { $0.state.registration != nil }
    case .cancelPartyRegistration(let cancel):
      let venID = inner.withLock { $0.state.registration?.venID ?? $0.state.venID ?? "" }
      logger.warning("OpenADR: the VTN cancelled the VEN's registration; the known events are kept")
      _ = await exchange(
        .registerParty,
        VENMessage.canceledPartyRegistration(
          code: 200, requestID: cancel.requestID, registrationID: cancel.registrationID, venID: venID),
        what: "oadrCanceledPartyRegistration")
      host.alarm(
        "openadr-registration", "OpenADR: the VTN cancelled the registration; registering again in 5 minutes",
        active: true)
      dropRegistration(.cancelled, retryIn: 300)
      return false
    default:
      logger.warning("OpenADR: the VTN answered a poll with \(message.messageName); ignored")
      return false
    }
  }

  // MARK: Events

  private func take(_ distribution: DistributeEvent, at t: Double) async {
    let changes = inner.withLock { s -> [EventBook.Change] in
      s.state.book.take(
        distribution.events, requestID: distribution.requestID ?? distribution.response?.requestID,
        venID: s.state.registration?.venID, now: t, limits: configuration.limits,
        draw: { Double.random(in: 0..<1) })
    }
    for change in changes { note(change) }
    judge()
    let state = self.state
    host.stateChanged(state)
    await answerEvents()
  }

  private func note(_ change: EventBook.Change) {
    let book = inner.withLock { $0.state.book }
    func describe(_ id: String) -> Logger.Metadata {
      guard let e = book.entries[id] else { return ["event": "\(id)"] }
      return [
        "event": "\(id)", "modification": "\(e.modificationNumber)",
        "start": "\(Self.iso(e.siteStart))", "end": "\(Self.iso(e.siteEnd))",
        "randomized_s": "\(Int(e.startOffsetSeconds))", "signals": "\(e.signals)",
        "asks": "\(e.windows.map(\.asked).joined(separator: "; "))",
      ]
    }
    switch change {
    case .added(let id, let m):
      logger.notice("OpenADR: event \(id) received", metadata: describe(id))
      host.record("openadr_event", Self.fields(book.entries[id], change: "received", modification: m))
    case .modified(let id, let from, let to):
      logger.notice("OpenADR: event \(id) modified (\(from) → \(to))", metadata: describe(id))
      host.record("openadr_event", Self.fields(book.entries[id], change: "modified", modification: to))
    case .cancelled(let id, let m):
      logger.notice("OpenADR: event \(id) cancelled", metadata: describe(id))
      host.record("openadr_event", Self.fields(book.entries[id], change: "cancelled", modification: m))
    case .removed(let id):
      logger.info("OpenADR: event \(id) no longer distributed; forgotten")
    case .stale(let id, let received, let kept):
      logger.warning("OpenADR: event \(id) came with modification \(received), older than \(kept); ignored")
    case .refused(let id, let refusal):
      logger.error("OpenADR: event \(id) is not followed: \(refusal.reason) (answered \(refusal.code), optOut)")
    case .notForThisVEN(let id):
      logger.warning("OpenADR: event \(id) targets other VENs; ignored")
    }
  }

  static func fields(_ e: EventBook.Entry?, change: String, modification: Int) -> [(String, String)] {
    guard let e else { return [("change", change)] }
    return [
      ("event_id", e.eventID), ("change", change), ("modification", "\(modification)"),
      ("start", iso(e.siteStart)), ("end", iso(e.siteEnd)), ("signals", e.signals),
    ]
  }

  /// The site's own reasons not to deliver, judged again.
  private func judge() {
    let t = now()
    let book = inner.withLock { $0.state.book }
    var judged: [String: String?] = [:]
    for e in book.entries.values { judged[e.eventID] = host.reasonNotToDeliver(e, now: t) }
    let changed = inner.withLock { s in s.state.book.judge(now: t) { judged[$0.eventID] ?? nil } }
    guard !changed.isEmpty else { return }
    let state = self.state
    for id in changed {
      let e = state.book.entries[id]!
      logger.notice(
        "OpenADR: event \(id): \(e.opt.rawValue)", metadata: ["reason": "\(e.optReason ?? "the site can deliver")"])
    }
    host.stateChanged(state)
  }

  /// Tells the VTN the site's answer to every event whose answer it does not have yet.
  func answerEvents() async {
    let (due, venID) = inner.withLock { ($0.state.book.answersDue, $0.state.registration?.venID) }
    guard !due.isEmpty, let venID else { return }
    let responses = due.map { e in
      EventResponse(
        requestID: e.requestID, eventID: e.eventID, modificationNumber: e.modificationNumber,
        optType: e.opt == .optIn ? .optIn : .optOut, code: e.refusal?.code ?? 200,
        description: e.refusal.map { _ in "not followed" } ?? "OK")
    }
    let body = VENMessage.createdEvent(venID: venID, responses: responses)
    guard let answer = await exchange(.event, body, what: "oadrCreatedEvent") else { return }
    guard case .response(let r) = answer, r.code == 200 else {
      let said: String
      if case .response(let r) = answer { said = "\(r.code) \(r.description ?? "")" } else { said = answer.messageName }
      failed("oadrCreatedEvent: the VTN answered \(said)", unreachable: false)
      // An answer the VTN will not take (it dropped the event meanwhile) is not sent
      // again for this modification.
      inner.withLock { s in
        s.state.book.answered(
          Dictionary(
            due.map { ($0.eventID, EventBook.Answer(modificationNumber: $0.modificationNumber, opt: $0.opt)) },
            uniquingKeysWith: { a, _ in a }))
      }
      return
    }
    let state = inner.withLock { s -> VENState in
      s.state.book.answered(
        Dictionary(
          due.map { ($0.eventID, EventBook.Answer(modificationNumber: $0.modificationNumber, opt: $0.opt)) },
          uniquingKeysWith: { a, _ in a }))
      return s.state
    }
    for e in due {
      logger.notice(
        "OpenADR: told the VTN \(e.opt.rawValue) for event \(e.eventID) (modification \(e.modificationNumber))",
        metadata: e.optReason.map { ["reason": "\($0)"] } ?? [:])
      host.record(
        "openadr_opt",
        [
          ("event_id", e.eventID), ("modification", "\(e.modificationNumber)"), ("opt", e.opt.rawValue),
          ("reason", e.optReason ?? ""),
        ])
    }
    host.stateChanged(state)
  }

  // MARK: Reports

  /// The VEN's reports, registered after every registration: TELEMETRY_USAGE with the
  /// site's grid import, the vehicles' delivered kW and the available discharge.
  func registerReports() async {
    guard let venID = inner.withLock({ $0.state.registration?.venID }) else { return }
    let body = VENMessage.registerReport(
      requestID: requestID(), venID: venID, reports: [Self.telemetryMetadata(at: now())])
    guard let answer = await exchange(.report, body, what: "oadrRegisterReport") else { return }
    inner.withLock { $0.state.reportsRegistered = true }
    switch answer {
    case .registeredReport(let registered):
      await subscribe(registered.reportRequests, requestID: registered.response.requestID ?? "", at: now())
    case .response(let r) where r.code == 200: break
    case .response(let r):
      failed("oadrRegisterReport: the VTN answered \(r.code) \(r.description ?? "")", unreachable: false)
    default:
      failed("oadrRegisterReport: the VTN answered \(answer.messageName)", unreachable: false)
    }
    host.stateChanged(state)
  }

  public static let telemetrySpecifierID = "telemetry-usage"
  public static let gridImportRID = "grid_import_kw"
  public static let deliveredRID = "delivered_kw"
  public static let availableRID = "available_discharge_kw"

  static func telemetryMetadata(at t: Double) -> MetadataReport {
    func point(_ rID: String, _ type: String) -> DataPointDescription {
      DataPointDescription(rID: rID, reportType: type, minPeriodSeconds: 1, maxPeriodSeconds: 3600)
    }
    return MetadataReport(
      reportSpecifierID: telemetrySpecifierID,
      descriptions: [
        point(gridImportRID, "usage"), point(deliveredRID, "deltaUsage"),
        point(availableRID, "upRegulationCapacityAvailable"),
      ], createdDateTime: Date(timeIntervalSince1970: t))
  }

  private func subscribe(_ requests: [ReportRequest], requestID: String, at t: Double) async {
    let known: Set<String> = [Self.gridImportRID, Self.deliveredRID, Self.availableRID]
    var taken: [String] = []
    inner.withLock { s in
      for r in requests {
        guard r.reportSpecifierID == Self.telemetrySpecifierID else {
          logger.warning("OpenADR: the VTN asks for report \(r.reportSpecifierID), which this VEN does not have")
          continue
        }
        let granularity = max(0, r.granularitySeconds ?? 0)
        let back = max(1, r.reportBackDurationSeconds ?? (granularity > 0 ? granularity : 60))
        let rIDs = r.rIDs.isEmpty ? Array(known).sorted() : r.rIDs.filter { known.contains($0) }
        let start = r.intervalStart.map { max($0.timeIntervalSince1970, t) } ?? t
        let until = r.intervalDurationSeconds.flatMap { $0 > 0 ? start + $0 : nil }
        s.state.reports.removeAll { $0.reportRequestID == r.reportRequestID }
        s.state.reports.append(
          VENState.ReportSubscription(
            reportRequestID: r.reportRequestID, reportSpecifierID: r.reportSpecifierID,
            granularitySeconds: min(granularity, back), reportBackSeconds: back, rIDs: rIDs,
            sentThrough: start, until: until))
        taken.append(r.reportRequestID)
      }
    }
    guard !taken.isEmpty, let venID = inner.withLock({ $0.state.registration?.venID }) else { return }
    logger.notice("OpenADR: the VTN asks for reports \(taken.joined(separator: ", "))")
    _ = await exchange(
      .report,
      VENMessage.createdReport(requestID: requestID, venID: venID, pendingReportRequestIDs: taken),
      what: "oadrCreatedReport")
    host.stateChanged(state)
  }

  /// Sends every report whose time has come: the means of each granularity interval.
  func sendReports() async {
    let t = now()
    let (due, venID, telemetry) = inner.withLock { s in
      (s.state.reports.filter { t - $0.sentThrough >= $0.reportBackSeconds }, s.state.registration?.venID, s.telemetry)
    }
    guard let venID, !due.isEmpty else { return }
    var data: [ReportUpdate] = []
    var sentThrough: [String: Double] = [:]
    for sub in due {
      let step = sub.granularitySeconds > 0 ? sub.granularitySeconds : sub.reportBackSeconds
      // After an outage of the VTN, the last 100 intervals at most (an hour at most): a
      // report stays far under the 1 MiB a VTN takes.
      var from = max(sub.sentThrough, t - min(TelemetryWindow.keptSeconds, 100 * step))
      var intervals: [ReportUpdate.IntervalValues] = []
      while from + step <= t {
        let m = telemetry.mean(from: from, to: from + step)
        var values: [(rID: String, value: Double)] = []
        for rID in sub.rIDs {
          let value: Double? =
            switch rID {
            case Self.gridImportRID: m.gridImportKW
            case Self.deliveredRID: m.deliveredKW
            case Self.availableRID: m.availableDischargeKW
            default: nil
            }
          // A value the site did not measure is left out, never sent as 0.
          if let value { values.append((rID, value)) }
        }
        if !values.isEmpty {
          intervals.append(.init(start: Date(timeIntervalSince1970: from), durationSeconds: step, values: values))
        }
        from += step
      }
      sentThrough[sub.reportRequestID] = from
      guard !intervals.isEmpty else { continue }
      data.append(
        ReportUpdate(
          reportRequestID: sub.reportRequestID, reportSpecifierID: sub.reportSpecifierID,
          createdDateTime: Date(timeIntervalSince1970: t), start: intervals[0].start, intervals: intervals))
    }
    if !data.isEmpty {
      let body = VENMessage.updateReport(requestID: requestID(), venID: venID, reports: data)
      switch await attempt(.report, body, what: "oadrUpdateReport") {
      case .failure(.unreachable):
        // Sent again with the next report, up to the hour the telemetry window keeps.
        return
      case .failure(.refused):
        // A VTN that refuses these intervals would refuse them again: they are dropped,
        // not piled onto every later report.
        break
      case .success(.response(let r)) where r.code != 200:
        failed("oadrUpdateReport: the VTN answered \(r.code) \(r.description ?? "")", unreachable: false)
      case .success:
        break
      }
    }
    let state = inner.withLock { s -> VENState in
      for i in s.state.reports.indices {
        if let through = sentThrough[s.state.reports[i].reportRequestID] { s.state.reports[i].sentThrough = through }
      }
      s.state.reports.removeAll { r in r.until.map { r.sentThrough >= $0 } ?? false }
      return s.state
    }
    host.stateChanged(state)
  }

  // MARK: Silence

  private func checkSilence() {
    let t = now()
    let (last, started, count) = inner.withLock { ($0.status.lastContact, $0.started, $0.state.book.entries.count) }
    let silent = t - (last ?? started)
    let active = silent >= configuration.silenceAlarmSeconds
    host.alarm(
      "openadr-silent",
      "OpenADR: no answer from the VTN for \(Int(silent / 60)) min; carrying on with the \(count) event(s) it last sent",
      active: active)
  }

  static func iso(_ utc: Double) -> String {
    Date(timeIntervalSince1970: utc).formatted(.iso8601)
  }
}

public struct VENCommandError: Error, Sendable, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}

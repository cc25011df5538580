import Foundation
import Logging
import OpenADR
import Synchronization
import Testing

@testable import VEN

/// The VEN's sequence against a scripted VTN that answers with documents captured from
/// openleadr's VTN (Tests/Integration/openadr-samples). The real VTN is in the
/// integration tests (test_openadr_ven.py); these pin the order of the exchanges, what a
/// restart keeps, and what an unreachable or lying VTN does to the VEN.
struct VENSequenceTests {
  static let samples = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../Integration/openadr-samples").standardized

  static func sample(_ name: String) -> [UInt8] {
    Array((try? Data(contentsOf: samples.appendingPathComponent(name))) ?? Data())
  }

  /// A VTN that answers from a script, keyed by the message the VEN sent.
  final class ScriptedVTN: VTNTransport, Sendable {
    struct Sent: Sendable {
      var service: VTNService
      var message: String
      var body: String
    }
    let answers: Mutex<[String: [[UInt8]]]>
    let sent = Mutex<[Sent]>([])
    let down = Mutex(false)
    /// Messages answered with HTTP 500.
    let refuse = Mutex<Set<String>>([])

    init(_ answers: [String: [[UInt8]]]) { self.answers = Mutex(answers) }

    static let messages = [
      "oadrQueryRegistration", "oadrCreatePartyRegistration", "oadrRegisterReport", "oadrCreatedReport",
      "oadrUpdateReport", "oadrPoll", "oadrCreatedEvent", "oadrResponse", "oadrCanceledPartyRegistration",
      "oadrCancelPartyRegistration",
    ]

    func post(_ service: VTNService, body: [UInt8]) async throws(VTNTransportError) -> [UInt8] {
      let text = String(decoding: body, as: UTF8.self)
      // Test double only: which message it is, by its element name.
      let message = Self.messages.first { text.contains("<oadr:\($0)") || text.contains(":\($0) ") } ?? "?"
      sent.withLock { $0.append(Sent(service: service, message: message, body: text)) }
      if down.withLock({ $0 }) { throw VTNTransportError(.unreachable, "connection refused") }
      if refuse.withLock({ $0.contains(message) }) {
        throw VTNTransportError(.status, "HTTP 500 Internal Server Error")
      }
      return answers.withLock { a in
        guard var queue = a[message], !queue.isEmpty else {
          return VENSequenceTests.sample("oadrResponse-poll-empty.xml")
        }
        let next = queue.removeFirst()
        if !queue.isEmpty {
          a[message] = queue
        } else if message != "oadrPoll" {
          a[message] = [next]
        } else {
          a[message] = []
        }
        return next
      }
    }
    func shutdown() async {}
    var order: [String] { sent.withLock { $0.map(\.message) } }
  }

  /// Records what the VEN told the appliance.
  final class Host: VENHost, Sendable {
    let states = Mutex<[VENState]>([])
    let alarms = Mutex<[String: String]>([:])
    let records = Mutex<[String]>([])
    let reason = Mutex<String?>(nil)
    func reasonNotToDeliver(_ entry: EventBook.Entry, now: Double) -> String? { reason.withLock { $0 } }
    func stateChanged(_ state: VENState) { states.withLock { $0.append(state) } }
    func statusChanged(_ status: VENStatus) {}
    func alarm(_ id: String, _ message: String, active: Bool) {
      alarms.withLock { $0[id] = active ? message : nil }
    }
    func record(_ kind: String, _ fields: [(String, String)]) { records.withLock { $0.append(kind) } }
    var last: VENState? { states.withLock { $0.last } }
  }

  struct NoWait: VENWakeUp {
    func signal(urgent: Bool) {}
    func wait(until deadline: ContinuousClock.Instant) async -> Bool { false }
  }

  final class Clock: Sendable {
    let t = Mutex(1_796_000_000.0)
    var now: @Sendable () -> Double { { [self] in t.withLock { $0 } } }
    func advance(_ s: Double) { t.withLock { $0 += s } }
  }

  func ven(_ vtn: ScriptedVTN, _ host: Host, restored: VENState? = nil, clock: Clock = Clock()) -> VEN {
    var c = VEN.Configuration(venName: "test-school")
    c.silenceAlarmSeconds = 120
    return VEN(
      configuration: c, transport: vtn, host: host, restored: restored, wake: NoWait(),
      logger: Logger(label: "ven-test"), now: clock.now)
  }

  /// openleadr's VTN asks for what the VEN registered: the captured request, for this VEN's
  /// report and data point.
  static var registeredReport: [UInt8] {
    Array(
      String(decoding: sample("oadrRegisteredReport.xml"), as: UTF8.self)
        .replacingOccurrences(of: "usage-1", with: VEN.telemetrySpecifierID)
        .replacingOccurrences(of: "site-meter-power", with: VEN.gridImportRID).utf8)
  }

  static var normalVTN: [String: [[UInt8]]] {
    [
      "oadrQueryRegistration": [sample("oadrCreatedPartyRegistration-query.xml")],
      "oadrCreatePartyRegistration": [sample("oadrCreatedPartyRegistration.xml")],
      "oadrRegisterReport": [registeredReport],
      "oadrCreatedReport": [sample("oadrResponse-createdReport.xml")],
      "oadrPoll": [sample("oadrDistributeEvent-simple.xml"), sample("oadrResponse-poll-empty.xml")],
      "oadrCreatedEvent": [sample("oadrResponse-createdEvent.xml")],
    ]
  }

  @Test func registersReportsPollsAndAnswersTheEvent() async {
    let vtn = ScriptedVTN(Self.normalVTN)
    let host = Host()
    let ven = ven(vtn, host)
    _ = await ven.round()
    #expect(
      vtn.order == [
        "oadrQueryRegistration", "oadrCreatePartyRegistration", "oadrRegisterReport", "oadrCreatedReport", "oadrPoll",
        "oadrCreatedEvent", "oadrPoll",
      ])
    let state = ven.state
    #expect(state.registration?.venID == "ven-1" && state.registration?.registrationID == "reg-0102eb92")
    #expect(state.reports.count == 1, "the VTN's report request is kept")
    let event = state.book.entries["event-50ed22c7"]
    #expect(event?.answered == EventBook.Answer(modificationNumber: 0, opt: .optIn))
    let created = vtn.sent.withLock { $0.first { $0.message == "oadrCreatedEvent" }?.body } ?? ""
    #expect(created.contains("event-50ed22c7") && created.contains("optIn"))
    #expect(host.records.withLock { $0 }.contains("openadr_event"))
    // Nothing new: the next round is one empty poll.
    let before = vtn.order.count
    _ = await ven.round()
    #expect(Array(vtn.order.dropFirst(before)) == ["oadrPoll"])
  }

  @Test func aRequestForAReportTheVENDoesNotHaveIsNotTaken() async {
    var answers = Self.normalVTN
    answers["oadrRegisterReport"] = [Self.sample("oadrRegisteredReport.xml")]
    let vtn = ScriptedVTN(answers)
    let ven = ven(vtn, Host())
    _ = await ven.round()
    #expect(ven.state.reports.isEmpty)
    #expect(!vtn.order.contains("oadrCreatedReport"))
  }

  @Test func reportsSendTheMeanOfEachGranularityInterval() async {
    let vtn = ScriptedVTN(Self.normalVTN)
    let clock = Clock()
    let ven = ven(vtn, Host(), clock: clock)
    _ = await ven.round()
    #expect(ven.state.reports.first?.granularitySeconds == 2)
    let start = clock.now()
    for (i, kW) in [100.0, 120, 80, 60].enumerated() {
      ven.record(.init(utc: start + Double(i), gridImportKW: kW, deliveredKW: 0, availableDischargeKW: 0))
    }
    clock.advance(4)
    _ = await ven.round()
    let update = vtn.sent.withLock { $0.first { $0.message == "oadrUpdateReport" }?.body } ?? ""
    // Two 2-second intervals: means 110 and 70 kW.
    #expect(update.contains(">110.0<") && update.contains(">70.0<"), "\(update)")
    #expect(update.contains(VEN.gridImportRID) && !update.contains(VEN.deliveredRID))
    #expect(ven.state.reports.first?.sentThrough == start + 4)
  }

  @Test func leavingCancelsTheRegistrationAndKeepsTheEvents() async {
    var answers = Self.normalVTN
    answers["oadrCancelPartyRegistration"] = [Self.sample("oadrCanceledPartyRegistration.xml")]
    let vtn = ScriptedVTN(answers)
    let host = Host()
    let ven = ven(vtn, host)
    _ = await ven.round()
    guard case .success(let text) = await ven.leave() else {
      Issue.record("the VTN's confirmation was not taken")
      return
    }
    #expect(text.contains("reg-0102eb92"))
    #expect(vtn.order.last == "oadrCancelPartyRegistration")
    #expect(ven.state.registration == nil && ven.state.book.entries.count == 1)
    #expect(host.last?.registration == nil, "kept so")
    guard case .failure = await ven.leave() else {
      Issue.record("left twice")
      return
    }
  }

  @Test func reportsTheVTNRefusesAreDroppedAndOnesItMissedAreSentAgain() async {
    let vtn = ScriptedVTN(Self.normalVTN)
    let clock = Clock()
    let ven = ven(vtn, Host(), clock: clock)
    _ = await ven.round()
    func feed(_ seconds: Int) {
      let start = clock.now()
      for i in 0..<seconds {
        ven.record(.init(utc: start + Double(i), gridImportKW: 50, deliveredKW: 0, availableDischargeKW: 0))
      }
      clock.advance(Double(seconds))
    }
    func updates() -> [String] { vtn.sent.withLock { $0.filter { $0.message == "oadrUpdateReport" }.map(\.body) } }
    vtn.refuse.withLock { $0 = ["oadrUpdateReport"] }
    feed(4)
    _ = await ven.round()
    #expect(updates().count == 1)
    let refusedThrough = ven.state.reports[0].sentThrough
    #expect(refusedThrough == clock.now(), "refused intervals are not sent again")
    vtn.refuse.withLock { $0 = [] }
    vtn.down.withLock { $0 = true }
    feed(4)
    _ = await ven.round()
    #expect(ven.state.reports[0].sentThrough == refusedThrough, "missed: kept for the next report")
    vtn.down.withLock { $0 = false }
    feed(2)
    _ = await ven.round()
    let last = updates().last ?? ""
    // The 4 s the VTN missed and the 2 s since: three 2 s intervals, each value once.
    #expect(last.components(separatedBy: "<ei:rID>").count - 1 == 3, "\(last)")
    #expect(ven.state.reports[0].sentThrough == clock.now())
  }

  @Test func aVTNThatAsksForANewRegistrationGetsOne() async {
    var answers = Self.normalVTN
    answers["oadrPoll"] = [Self.sample("oadrRequestReregistration.xml"), Self.sample("oadrResponse-poll-empty.xml")]
    let vtn = ScriptedVTN(answers)
    let ven = ven(vtn, Host())
    _ = await ven.round()
    let order = vtn.order
    let asked = order.firstIndex(of: "oadrPoll")!
    // The VTN's request is answered, then the VEN registers again (as the same venID) and
    // polls on; its reports are registered again in the next round.
    #expect(
      Array(order[asked...].prefix(5)) == [
        "oadrPoll", "oadrResponse", "oadrQueryRegistration", "oadrCreatePartyRegistration", "oadrPoll",
      ], "\(order)")
    _ = await ven.round()
    #expect(vtn.order.filter { $0 == "oadrRegisterReport" }.count == 2)
    let again = vtn.sent.withLock { $0.filter { $0.message == "oadrCreatePartyRegistration" }.last?.body } ?? ""
    #expect(again.contains("ven-1"), "registers again as the venID it was given")
    #expect(ven.state.registration?.registrationID == "reg-0102eb92")
  }

  @Test func anAnswerTheVTNRefusesIsNotSentEveryRound() async {
    let vtn = ScriptedVTN(Self.normalVTN)
    vtn.refuse.withLock { $0 = ["oadrCreatedEvent"] }
    let ven = ven(vtn, Host())
    _ = await ven.round()
    _ = await ven.round()
    _ = await ven.round()
    #expect(vtn.order.filter { $0 == "oadrCreatedEvent" }.count == 1)
    #expect(ven.status.lastError?.hasPrefix("oadrCreatedEvent: HTTP 500") == true, "\(ven.status.lastError ?? "-")")
  }

  @Test func aRefusedRegistrationRaisesTheAlarmAndIsTriedAgainLater() async {
    var answers = Self.normalVTN
    // openleadr's refusal: a 200 with empty IDs (the query's answer has them empty).
    answers["oadrCreatePartyRegistration"] = [Self.sample("oadrCreatedPartyRegistration-query.xml")]
    let vtn = ScriptedVTN(answers)
    let host = Host()
    let clock = Clock()
    let ven = ven(vtn, host, clock: clock)
    let wait = await ven.round()
    #expect(ven.state.registration == nil)
    #expect(host.alarms.withLock { $0["openadr-registration"] }?.contains("refused") == true)
    #expect(!vtn.order.contains("oadrPoll"))
    #expect(wait > 1, "not hammered")
    // Within the retry delay nothing is sent.
    let count = vtn.order.count
    _ = await ven.round()
    #expect(vtn.order.count == count)
  }

  @Test func anUnreachableVTNKeepsTheEventsAndRaisesTheSilenceAlarm() async {
    let clock = Clock()
    let host = Host()
    let first = ven(ScriptedVTN(Self.normalVTN), host, clock: clock)
    _ = await first.round()
    let kept = first.state
    #expect(kept.book.entries.count == 1)
    // A restart with the VTN down: the events are followed at once.
    let vtn = ScriptedVTN(Self.normalVTN)
    vtn.down.withLock { $0 = true }
    let host2 = Host()
    let second = ven(vtn, host2, restored: kept, clock: clock)
    _ = await second.round()
    #expect(second.state.book == kept.book, "nothing is dropped because the VTN cannot be reached")
    #expect(second.status.link == .unreachable)
    #expect(host2.alarms.withLock { $0["openadr-silent"] } == nil)
    clock.advance(180)
    _ = await second.round()
    #expect(host2.alarms.withLock { $0["openadr-silent"] }?.contains("1 event(s)") == true)
    vtn.down.withLock { $0 = false }
    _ = await second.round()
    #expect(host2.alarms.withLock { $0["openadr-silent"] } == nil, "cleared at the next answer")
  }

  @Test func hostileAnswersAreRefusedAndChangeNothing() async {
    for name in ["hostile/billion-laughs.xml", "hostile/external-entity.xml", "hostile/malformed.xml"] {
      var answers = Self.normalVTN
      answers["oadrPoll"] = [Self.sample(name)]
      let vtn = ScriptedVTN(answers)
      let host = Host()
      let ven = ven(vtn, host)
      _ = await ven.round()
      #expect(ven.state.registration != nil, "\(name)")
      #expect(ven.state.book.entries.isEmpty, "\(name)")
      #expect(ven.status.lastError?.contains("refused") == true, "\(name): \(ven.status.lastError ?? "-")")
    }
  }

  @Test func aChangeOfTheSitesAnswerIsSentAgain() async {
    let vtn = ScriptedVTN(Self.normalVTN)
    let host = Host()
    let clock = Clock()
    let ven = ven(vtn, host, clock: clock)
    // The clock is before the captured event's start (2026-12-02T14:49:58Z): judged still.
    _ = await ven.round()
    #expect(ven.state.book.entries["event-50ed22c7"]?.opt == .optIn)
    host.reason.withLock { $0 = "staff have paused V2X" }
    _ = await ven.round()
    let answers = vtn.sent.withLock { $0.filter { $0.message == "oadrCreatedEvent" } }
    #expect(answers.count == 2)
    #expect(answers.last?.body.contains("optOut") == true)
    #expect(ven.state.book.entries["event-50ed22c7"]?.answered?.opt == .optOut)
  }
}

import Control
import Foundation
import SiteModel
import Testing

@Suite("Demand-response events staff announce from a panel: checked, delivered, amended, cancelled")
struct AnnouncedEventsTests {
  let site = Fixtures.site()

  /// 14:00 on the fixtures' Wednesday, a bus plugged in with energy to spare.
  func snapshot(time: Double = 14 * 3600) -> Snapshot {
    var s = Fixtures.snapshot(
      time: time, building: 300,
      chargers: [
        ChargerReading(vehicle: Fixtures.vehicle(energy: 140, departure: time + 10 * 3600, need: 60)), .init(),
      ])
    s.meter.monthPeakKW = 300
    return s
  }

  func local(_ s: Snapshot, plus seconds: Double) -> LocalTime { s.localTime + seconds }

  func refused(_ o: OperatorOverrides.Outcome) -> String? {
    if case .refused(let why) = o { return why }
    return nil
  }

  @Test("an announced event is in every snapshot and the controller delivers in it")
  func delivered() {
    var o = OperatorOverrides()
    let now = snapshot()
    let outcome = o.apply(
      .announceEvent(id: "utility-0714", start: local(now, plus: 3600), end: local(now, plus: 4 * 3600)),
      by: "facilities", site: site, snapshot: now, mode: .gridConnected)
    #expect(refused(outcome) == nil)
    #expect(o.events["utility-0714"]?.announcedBy == "facilities")
    // An hour later the event runs: the controller discharges the bus to the building.
    var controller = Controller(site: site)
    var s = snapshot(time: now.time)
    for t in stride(from: now.time, through: now.time + 3600 + 600, by: 60) {
      s = snapshot(time: t)
      o.overlay(&s)
      _ = controller.step(s)
    }
    #expect(s.events.map(\.id) == ["utility-0714"])
    let d = controller.step(s)
    #expect(d.mode == .demandResponse, "mode \(d.mode) in the event")
    #expect(d.setpointsKW[0] < 0, "the bus should discharge in the event, got \(d.setpointsKW[0]) kW")
  }

  @Test("a cancelled event is not delivered")
  func cancelled() {
    var o = OperatorOverrides()
    let now = snapshot()
    _ = o.apply(
      .announceEvent(id: "e1", start: local(now, plus: 600), end: local(now, plus: 3 * 3600)), by: "u", site: site,
      snapshot: now, mode: .gridConnected)
    #expect(refused(o.apply(.cancelEvent(id: "e1"), by: "u", site: site, snapshot: now, mode: .gridConnected)) == nil)
    var controller = Controller(site: site)
    var last: Decisions?
    for t in stride(from: now.time, through: now.time + 3600, by: 60) {
      var s = snapshot(time: t)
      o.overlay(&s)
      #expect(s.events.isEmpty)
      last = controller.step(s)
    }
    #expect(last?.mode != .demandResponse)
    let again = refused(o.apply(.cancelEvent(id: "e1"), by: "u", site: site, snapshot: now, mode: .gridConnected))
    #expect(again?.contains("no announced event e1") == true)
  }

  @Test("amending moves the end; a running event cannot be moved to start later")
  func amended() {
    var o = OperatorOverrides()
    let now = snapshot()
    _ = o.apply(
      .announceEvent(id: "e1", start: local(now, plus: -600), end: local(now, plus: 3600)), by: "u", site: site,
      snapshot: now, mode: .gridConnected)
    let longer = o.apply(
      .announceEvent(id: "e1", start: local(now, plus: -600), end: local(now, plus: 7200)), by: "u", site: site,
      snapshot: now, mode: .gridConnected)
    if case .applied(let text) = longer { #expect(text.contains("amended")) } else { Issue.record("refused") }
    #expect(o.events["e1"]?.event.endTime == now.time + 7200)
    let later = refused(
      o.apply(
        .announceEvent(id: "e1", start: local(now, plus: 600), end: local(now, plus: 7200)), by: "u", site: site,
        snapshot: now, mode: .gridConnected))
    #expect(later?.contains("running") == true)
  }

  struct BadEvent: Sendable, CustomTestStringConvertible {
    var id: String
    var start: Double
    var end: Double
    var reason: String
    var testDescription: String { reason }
  }

  static let badEvents: [BadEvent] = [
    BadEvent(id: "bad id!", start: 600, end: 3600, reason: "event id"),
    BadEvent(id: "e", start: 3600, end: 600, reason: "end after it starts"),
    BadEvent(id: "e", start: -7200, end: -3600, reason: "over already"),
    BadEvent(id: "e", start: 600, end: 14 * 3600, reason: "12 hours"),
    BadEvent(id: "e", start: 15 * 86_400, end: 15 * 86_400 + 3600, reason: "14 days"),
  ]

  @Test("bad events are refused with the reason", arguments: badEvents)
  func refusedEvents(_ bad: BadEvent) {
    let (id, start, end, reason) = (bad.id, bad.start, bad.end, bad.reason)
    var o = OperatorOverrides()
    let now = snapshot()
    let why = refused(
      o.apply(
        .announceEvent(id: id, start: local(now, plus: start), end: local(now, plus: end)), by: "u", site: site,
        snapshot: now, mode: .gridConnected))
    #expect(why?.contains(reason) == true, "expected '\(reason)', got \(why ?? "applied")")
    #expect(o.events.isEmpty)
  }

  @Test("nothing starts by wall time on an unsynchronized clock")
  func unsynchronized() {
    var o = OperatorOverrides()
    var now = snapshot()
    _ = o.apply(
      .announceEvent(id: "e1", start: local(now, plus: -60), end: local(now, plus: 3600)), by: "u", site: site,
      snapshot: now, mode: .gridConnected)
    now.wallClockUnsynchronized = true
    var s = now
    o.overlay(&s)
    #expect(s.events.isEmpty)
    let why = refused(
      o.apply(
        .announceEvent(id: "e2", start: local(now, plus: 60), end: local(now, plus: 3600)), by: "u", site: site,
        snapshot: now, mode: .gridConnected))
    #expect(why?.contains("not synchronized") == true)
  }

  @Test("instructions survive a restart as data; an island test does not resume")
  func restart() throws {
    var o = OperatorOverrides()
    let now = snapshot()
    _ = o.apply(.setDemandTarget(kW: 300), by: "u", site: site, snapshot: now, mode: .gridConnected)
    _ = o.apply(.holdVehicle("CAR"), by: "u", site: site, snapshot: now, mode: .gridConnected)
    _ = o.apply(.pauseV2X, by: "u", site: site, snapshot: now, mode: .gridConnected)
    _ = o.apply(.startIslandTest, by: "u", site: site, snapshot: now, mode: .gridConnected)
    #expect(o.islandTest == .requested)
    _ = o.apply(
      .announceEvent(id: "e1", start: local(now, plus: 600), end: local(now, plus: 3600)), by: "u", site: site,
      snapshot: now, mode: .gridConnected)
    let data = try JSONEncoder().encode(o)
    var back = try JSONDecoder().decode(OperatorOverrides.self, from: data)
    let dropped = back.restoredAfterRestart()
    #expect(dropped.count == 1 && dropped[0].contains("island test"))
    #expect(back.demandTargetKW == 300 && back.heldVehicles == ["CAR"] && back.dischargePaused)
    #expect(back.islandTest == .none)
    #expect(back.events["e1"] == o.events["e1"])
  }
}

import Foundation
import OpenADR
import Testing

@testable import VEN

/// The event book: what a distribution changes, which windows the site delivers in, and
/// what it answers. Times are UTC seconds; `t0` is an arbitrary afternoon.
struct EventBookTests {
  let t0 = 1_780_000_000.0

  func event(
    _ id: String, mod: Int = 0, status: String = "far", startIn: Double = 600, duration: Double = 3600,
    signal: String = "SIMPLE", type: String = "level", intervals: [(Double, Double)] = [(3600, 2)],
    startAfter: Double? = nil, itemBase: ItemBase? = nil, targets: [String] = [], responseRequired: Bool = true
  ) -> OpenADR.Event {
    var offset = 0.0
    let ivs = intervals.enumerated().map { i, iv -> Interval in
      defer { offset += iv.0 }
      return Interval(uid: "\(i)", offsetSeconds: offset, durationSeconds: iv.0, value: iv.1)
    }
    return OpenADR.Event(
      eventID: id, modificationNumber: mod, status: status, start: Date(timeIntervalSince1970: t0 + startIn),
      durationSeconds: duration, startAfterSeconds: startAfter,
      signals: [Signal(name: signal, type: type, id: "s1", intervals: ivs, itemBase: itemBase)],
      targetVenIDs: targets, responseRequired: responseRequired)
  }

  @Test func aNewEventIsAddedWithItsWindowAndOptedIn() {
    var book = EventBook()
    let changes = book.take([event("e1")], requestID: "r1", venID: "ven-1", now: t0, draw: { 0 })
    #expect(changes == [.added("e1", modificationNumber: 0)])
    let e = book.entries["e1"]!
    #expect(e.windows.count == 1)
    #expect(e.windows[0].start == t0 + 600 && e.windows[0].end == t0 + 4200)
    #expect(e.windows[0].asked == "SIMPLE level 2")
    #expect(e.opt == .optIn && e.answerDue && e.requestID == "r1")
    #expect(e.status(at: t0) == "far" && e.status(at: t0 + 700) == "active" && e.status(at: t0 + 4200) == "completed")
  }

  @Test func theSameModificationAgainChangesNothingAndAHigherOneReplacesIt() {
    var book = EventBook()
    _ = book.take([event("e1")], requestID: "r1", venID: nil, now: t0, draw: { 0 })
    book.answered(["e1": .init(modificationNumber: 0, opt: .optIn)])
    #expect(book.take([event("e1")], requestID: "r2", venID: nil, now: t0 + 10, draw: { 0 }).isEmpty)
    #expect(!book.entries["e1"]!.answerDue)
    let changes = book.take(
      [event("e1", mod: 1, startIn: 1200)], requestID: "r3", venID: nil, now: t0 + 20, draw: { 0 })
    #expect(changes == [.modified("e1", from: 0, to: 1)])
    #expect(book.entries["e1"]!.windows[0].start == t0 + 1200)
    #expect(book.entries["e1"]!.answerDue, "a modification needs its own answer")
    #expect(book.entries["e1"]!.firstReceivedAt == t0)
  }

  @Test func anOlderModificationIsIgnored() {
    var book = EventBook()
    _ = book.take([event("e1", mod: 3)], requestID: "r", venID: nil, now: t0, draw: { 0 })
    let changes = book.take([event("e1", mod: 2, startIn: 99)], requestID: "r", venID: nil, now: t0, draw: { 0 })
    #expect(changes == [.stale("e1", received: 2, kept: 3)])
    #expect(book.entries["e1"]!.modificationNumber == 3 && book.entries["e1"]!.start == t0 + 600)
  }

  @Test func aCancellationOptsOutEndsDeliveryAndIsAnswered() {
    var book = EventBook()
    _ = book.take([event("e1", startIn: -60)], requestID: "r", venID: nil, now: t0, draw: { 0 })
    #expect(book.deliveries(at: t0).count == 1, "running")
    let changes = book.take(
      [event("e1", mod: 1, status: "cancelled", startIn: -60)], requestID: "r2", venID: nil, now: t0 + 5,
      draw: { 0 })
    #expect(changes == [.cancelled("e1", modificationNumber: 1)])
    #expect(book.deliveries(at: t0 + 5).isEmpty)
    #expect(book.entries["e1"]!.answerDue && book.entries["e1"]!.status(at: t0) == "cancelled")
  }

  @Test func anEventNoLongerDistributedIsGone() {
    var book = EventBook()
    _ = book.take([event("e1"), event("e2")], requestID: "r", venID: nil, now: t0, draw: { 0 })
    let changes = book.take([event("e2")], requestID: "r", venID: nil, now: t0, draw: { 0 })
    #expect(changes == [.removed("e1")])
    #expect(book.entries.keys.sorted() == ["e2"])
  }

  @Test func startRandomisationIsDrawnOnceAndShiftsTheWindow() {
    var book = EventBook()
    _ = book.take([event("e1", startAfter: 300)], requestID: "r", venID: nil, now: t0, draw: { 0.5 })
    let e = book.entries["e1"]!
    #expect(e.startOffsetSeconds == 150)
    #expect(e.windows[0].start == t0 + 750 && e.siteEnd == t0 + 4350)
    // The same modification again: the draw stays.
    _ = book.take([event("e1", startAfter: 300)], requestID: "r", venID: nil, now: t0, draw: { 0.9 })
    #expect(book.entries["e1"]!.startOffsetSeconds == 150)
  }

  @Test func onlyIntervalsThatAskMakeWindows() {
    var book = EventBook()
    // Level 0, then 1, then 3, then 0, then 2: two windows.
    let e = event(
      "e1", duration: 500, intervals: [(100, 0), (100, 1), (100, 3), (100, 0), (100, 2)])
    _ = book.take([e], requestID: "r", venID: nil, now: t0, draw: { 0 })
    let windows = book.entries["e1"]!.windows
    #expect(windows.map { $0.start - t0 } == [700, 1000])
    #expect(windows.map { $0.end - t0 } == [900, 1100])
    #expect(windows[0].asked == "SIMPLE level 1; SIMPLE level 3")
    #expect(book.deliveries(at: t0).count == 2)
  }

  @Test func aLoadDispatchInWattsIsReadAsKilowatts() {
    var book = EventBook()
    let e = event(
      "e1", signal: "LOAD_DISPATCH", type: "delta", intervals: [(3600, 50_000)],
      itemBase: ItemBase(kind: "powerReal", itemUnits: "W", siScaleCode: "none"))
    _ = book.take([e], requestID: "r", venID: nil, now: t0, draw: { 0 })
    #expect(book.entries["e1"]!.windows[0].requestedKW == 50)
    #expect(book.entries["e1"]!.windows[0].asked == "LOAD_DISPATCH delta 50.0 kW")
  }

  @Test func signalsItDoesNotFollowAreRefusedWith460() {
    var book = EventBook()
    let changes = book.take(
      [event("e1", signal: "ELECTRICITY_PRICE", type: "price", intervals: [(3600, 0.3)])], requestID: "r",
      venID: nil, now: t0, draw: { 0 })
    #expect(changes.count == 2)
    let e = book.entries["e1"]!
    #expect(e.refusal?.code == 460 && e.opt == .optOut && e.answerDue)
    #expect(book.deliveries(at: t0).isEmpty)
    let odd = EventBook.windows(
      of: event("e2", type: "bogusType"), limits: .init(), now: t0)
    guard case .failure(let refusal) = odd else {
      Issue.record("an unknown SIMPLE type is followed")
      return
    }
    #expect(refusal.code == 460)
  }

  @Test func absurdEventsAreRefusedWith454() {
    for (e, why) in [
      (event("long", duration: 13 * 3600, intervals: [(13 * 3600, 1)]), "lasts 13.0 h"),
      (event("far", startIn: 30 * 86_400), "more than 14 days ahead"),
      (event("open", duration: 0, intervals: [(0, 1)]), "no duration"),
    ] {
      guard case .failure(let refusal) = EventBook.windows(of: e, limits: .init(), now: t0) else {
        Issue.record("\(e.eventID) was followed")
        continue
      }
      #expect(refusal.code == 454 && refusal.reason.contains(why), "\(refusal.reason)")
    }
  }

  @Test func anUnreadableEventIsRefusedWith454AndNoLongerFollowed() {
    var book = EventBook()
    _ = book.take([event("e1")], requestID: "r", venID: nil, now: t0, draw: { 0 })
    #expect(book.deliveries(at: t0).count == 1)
    let problem = OpenADRDocumentError(.invalidValue, "…/xcal:duration: duration \"P9999Y\" is over the limit")
    let changes = book.take(
      [], unreadable: [UnreadableEvent(eventID: "e1", modificationNumber: 1, problem: problem)], requestID: "r2",
      venID: nil, now: t0 + 5, draw: { 0 })
    let e = book.entries["e1"]!
    #expect(changes == [.refused("e1", e.refusal!)])
    #expect(e.refusal?.code == 454 && e.refusal?.reason.contains("P9999Y") == true)
    #expect(e.opt == .optOut && e.answerDue && e.modificationNumber == 1)
    #expect(book.deliveries(at: t0 + 5).isEmpty, "the version kept before is not followed either")
    // The same again: nothing new to say.
    #expect(
      book.take(
        [], unreadable: [UnreadableEvent(eventID: "e1", modificationNumber: 1, problem: problem)], requestID: "r3",
        venID: nil, now: t0 + 9, draw: { 0 }
      ).isEmpty)
  }

  @Test func eventsForOtherVENsAreIgnored() {
    var book = EventBook()
    let changes = book.take([event("e1", targets: ["ven-2"])], requestID: "r", venID: "ven-1", now: t0, draw: { 0 })
    #expect(changes == [.notForThisVEN("e1")])
    #expect(book.entries.isEmpty)
  }

  @Test func staffOptOutSurvivesAModificationAndIsWithdrawn() {
    var book = EventBook()
    _ = book.take([event("e1")], requestID: "r", venID: nil, now: t0, draw: { 0 })
    let known = book.setStaffOptOut("e1", .init(by: "panel-lobby", reason: "school concert"))
    #expect(known)
    #expect(book.entries["e1"]!.opt == .optOut)
    #expect(book.entries["e1"]!.optReason == "staff opted out (panel-lobby): school concert")
    _ = book.take([event("e1", mod: 1)], requestID: "r", venID: nil, now: t0, draw: { 0 })
    #expect(book.entries["e1"]!.opt == .optOut && book.deliveries(at: t0).isEmpty)
    _ = book.setStaffOptOut("e1", nil)
    #expect(book.entries["e1"]!.opt == .optIn)
  }

  @Test func theSiteIsJudgedUntilTheStartThenOnlyAnOutageChangesIt() {
    var book = EventBook()
    _ = book.take([event("e1", startIn: 100)], requestID: "r", venID: nil, now: t0, draw: { 0 })
    #expect(book.judge(now: t0) { _ in "staff have paused V2X" } == ["e1"])
    #expect(book.entries["e1"]!.opt == .optOut)
    #expect(book.judge(now: t0 + 50) { _ in nil } == ["e1"], "resumed before the start: back in")
    // Running: a pause no longer changes the answer given, an outage does.
    #expect(book.judge(now: t0 + 200) { _ in "staff have paused V2X" }.isEmpty)
    #expect(book.judge(now: t0 + 210) { _ in "the site is islanded (utility outage)" } == ["e1"])
  }

  @Test func answersAreDueUntilTheVTNHasTheCurrentOne() {
    var book = EventBook()
    _ = book.take(
      [event("e1"), event("e2", responseRequired: false)], requestID: "r", venID: nil, now: t0, draw: { 0 })
    #expect(book.answersDue.map(\.eventID) == ["e1"])
    book.answered(["e1": .init(modificationNumber: 0, opt: .optIn)])
    #expect(book.answersDue.isEmpty)
    _ = book.setStaffOptOut("e1", .init(by: "x", reason: "y"))
    #expect(book.answersDue.map(\.eventID) == ["e1"], "a changed opt is sent again")
  }

  @Test func theBookSurvivesARestartAsJSON() throws {
    var book = EventBook()
    _ = book.take([event("e1", startAfter: 60)], requestID: "r", venID: nil, now: t0, draw: { 0.25 })
    _ = book.setStaffOptOut("e1", .init(by: "a", reason: "b"))
    let back = try JSONDecoder().decode(EventBook.self, from: JSONEncoder().encode(book))
    #expect(back == book)
  }
}

struct TelemetryWindowTests {
  @Test func meansLeaveOutWhatWasNotMeasuredAndTheWindowIsBounded() {
    var w = TelemetryWindow()
    w.add(.init(utc: 0, gridImportKW: 100, deliveredKW: 10, availableDischargeKW: 50))
    w.add(.init(utc: 1, gridImportKW: .nan, deliveredKW: 20, availableDischargeKW: 50))
    let m = w.mean(from: 0, to: 2)
    #expect(m.gridImportKW == 100 && m.deliveredKW == 15 && m.availableDischargeKW == 50)
    #expect(w.mean(from: 5, to: 9).gridImportKW == nil)
    for t in 2..<5000 { w.add(.init(utc: Double(t), gridImportKW: 1, deliveredKW: 0, availableDischargeKW: 0)) }
    #expect(w.mean(from: 0, to: 100).deliveredKW == nil, "an hour is kept, no more")
    // A clock stepped back starts afresh.
    w.add(.init(utc: 10, gridImportKW: 7, deliveredKW: 0, availableDischargeKW: 0))
    #expect(w.mean(from: 0, to: 5000).gridImportKW == 7)
  }
}

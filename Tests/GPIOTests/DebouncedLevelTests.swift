// Software debounce from the kernel's edge timestamps: what a contact input looks like to the
// appliance when it chatters, when events are lost, and when a recording is replayed.

import GPIO
import Testing

private let ms: UInt64 = 1_000_000

private func edge(_ active: Bool, at time: UInt64) -> LineEdge {
  LineEdge(active: active, timestampNanoseconds: time)
}

@Suite struct DebouncedLevelTests {
  @Test("a change is accepted only once it has held for the debounce time, at edge time + debounce")
  func changeAcceptedAfterHolding() {
    var d = DebouncedLevel(level: false, at: 0, debounceNanoseconds: 20 * ms)
    d.take(edge(true, at: 100 * ms))
    #expect(d.level == false)
    #expect(d.raw == true)

    #expect(d.settle(at: 119 * ms) == false)
    #expect(d.level == false)
    #expect(d.settle(at: 120 * ms - 1) == false)
    #expect(d.level == false)

    #expect(d.settle(at: 120 * ms) == true)
    #expect(d.level == true)
    #expect(d.acceptedAt == 120 * ms)
    // Settling again changes nothing.
    #expect(d.settle(at: 500 * ms) == false)
    #expect(d.acceptedAt == 120 * ms)
  }

  @Test("a late settle still stamps the acceptance at edge time + debounce, not at the settle time")
  func lateSettleStampsEdgePlusDebounce() {
    var d = DebouncedLevel(level: true, at: 0, debounceNanoseconds: 20 * ms)
    d.take(edge(false, at: 50 * ms))
    #expect(d.settle(at: 10_000 * ms) == true)
    #expect(d.level == false)
    #expect(d.acceptedAt == 70 * ms)
  }

  @Test("the next edge accepts a change that had already held long enough before it")
  func nextEdgeAcceptsHeldChange() {
    var d = DebouncedLevel(level: false, at: 0, debounceNanoseconds: 20 * ms)
    d.take(edge(true, at: 100 * ms))
    // Never settled explicitly; the release 30 ms later shows the closure had held.
    d.take(edge(false, at: 130 * ms))
    #expect(d.level == true)
    #expect(d.acceptedAt == 120 * ms)
    #expect(d.bounces == 0)
    #expect(d.pendingAcceptance == 150 * ms)
  }

  @Test("chatter 1–5 ms apart for 100 ms never changes the accepted level; it settles once it holds")
  func chatterIsIgnoredUntilItSettles() {
    var d = DebouncedLevel(level: false, at: 0, debounceNanoseconds: 20 * ms)
    let gaps: [UInt64] = [1, 3, 5, 2, 4, 1, 5, 3, 2, 4]
    var t: UInt64 = 1_000 * ms
    let start = t
    var active = false
    var sent = 0
    var i = 0
    while t - start < 100 * ms {
      active.toggle()
      d.take(edge(active, at: t))
      sent += 1
      #expect(d.level == false, "accepted level changed during chatter at +\((t - start) / ms) ms")
      #expect(d.settle(at: t + 1 * ms) == false)
      t += gaps[i % gaps.count] * ms
      i += 1
    }
    // End the chatter on the closed side.
    if !active {
      active = true
      d.take(edge(true, at: t))
      sent += 1
    }
    let lastEdge = t
    #expect(sent > 30)
    #expect(d.edges == sent)
    // Every closure but the last was released before it held: each is a bounce.
    #expect(d.bounces == (sent - 1) / 2)
    #expect(d.level == false)
    #expect(d.raw == true)

    #expect(d.settle(at: lastEdge + 20 * ms - 1) == false)
    #expect(d.level == false)
    #expect(d.settle(at: lastEdge + 20 * ms) == true)
    #expect(d.level == true)
    #expect(d.acceptedAt == lastEdge + 20 * ms)
  }

  @Test("zero debounce accepts a change at the edge's own timestamp")
  func zeroDebounceAcceptsAtOnce() {
    var d = DebouncedLevel(level: false, at: 0, debounceNanoseconds: 0)
    d.take(edge(true, at: 42 * ms))
    #expect(d.level == true)
    #expect(d.acceptedAt == 42 * ms)
    #expect(d.pendingAcceptance == nil)
    d.take(edge(false, at: 43 * ms))
    #expect(d.level == false)
    #expect(d.acceptedAt == 43 * ms)
    #expect(d.bounces == 0)
    #expect(d.edges == 2)
  }

  @Test("a repeated level (an edge missed in between) is not counted as an edge")
  func repeatedLevelIsNotAnEdge() {
    var d = DebouncedLevel(level: false, at: 0, debounceNanoseconds: 20 * ms)
    d.take(edge(true, at: 10 * ms))
    d.take(edge(true, at: 15 * ms))
    #expect(d.edges == 1)
    #expect(d.bounces == 0)
    #expect(d.raw == true)
    #expect(d.rawSince == 10 * ms)

    // A repeat of the accepted level while settled is not an edge either.
    var settled = DebouncedLevel(level: true, at: 0, debounceNanoseconds: 20 * ms)
    settled.take(edge(true, at: 5 * ms))
    #expect(settled.edges == 0)
    #expect(settled.level == true)
    #expect(settled.pendingAcceptance == nil)
  }

  @Test("resync after a lost event brings the accepted level back to the wire's level")
  func resyncAfterLostEvent() {
    var d = DebouncedLevel(level: false, at: 0, debounceNanoseconds: 20 * ms)
    d.take(edge(true, at: 100 * ms))
    d.settle(at: 200 * ms)
    #expect(d.level == true)
    // The wire went low at 300 ms but the event was lost (queue overflow); a direct read
    // at 400 ms finds it low.
    d.resync(level: false, at: 400 * ms)
    #expect(d.raw == false)
    d.settle(at: 420 * ms)
    #expect(d.level == false)
    #expect(d.acceptedAt == 420 * ms)
    #expect(d.pendingAcceptance == nil)

    // A read that agrees with what it already has changes nothing.
    let before = d
    d.resync(level: false, at: 500 * ms)
    #expect(d == before)
  }

  @Test("resync at start from a read that differs from the assumed level settles to the read level")
  func resyncAtStart() {
    var d = DebouncedLevel(level: false, at: 0, debounceNanoseconds: 20 * ms)
    d.resync(level: true, at: 0)
    #expect(d.settle(at: 20 * ms) == true)
    #expect(d.level == true)
  }

  @Test("pendingAcceptance is nil when settled and the due time while a change is pending")
  func pendingAcceptance() {
    var d = DebouncedLevel(level: true, at: 0, debounceNanoseconds: 20 * ms)
    #expect(d.pendingAcceptance == nil)
    d.take(edge(false, at: 7 * ms))
    #expect(d.pendingAcceptance == 27 * ms)
    d.take(edge(true, at: 9 * ms))  // bounced back before it held
    #expect(d.pendingAcceptance == nil)
    #expect(d.bounces == 1)
    d.take(edge(false, at: 12 * ms))
    #expect(d.pendingAcceptance == 32 * ms)
    d.settle(at: 32 * ms)
    #expect(d.pendingAcceptance == nil)
    #expect(d.level == false)
  }

  @Test("a recorded edge sequence replays to the same result")
  func replayIsDeterministic() {
    // A recording: chatter, a real closure, a flicker, a real release.
    let recording: [LineEdge] = [
      edge(true, at: 10 * ms), edge(false, at: 12 * ms), edge(true, at: 13 * ms), edge(false, at: 17 * ms),
      edge(true, at: 18 * ms), edge(true, at: 30 * ms), edge(false, at: 80 * ms), edge(true, at: 82 * ms),
      edge(false, at: 150 * ms), edge(true, at: 151 * ms), edge(false, at: 153 * ms),
    ]
    func replay() -> (final: DebouncedLevel, accepted: [(Bool, UInt64)]) {
      var d = DebouncedLevel(level: false, at: 0, debounceNanoseconds: 20 * ms)
      var accepted: [(Bool, UInt64)] = []
      for e in recording {
        let before = d.level
        d.take(e)
        if d.level != before { accepted.append((d.level, d.acceptedAt)) }
      }
      if d.settle(at: 1_000 * ms) { accepted.append((d.level, d.acceptedAt)) }
      return (d, accepted)
    }
    let first = replay()
    let second = replay()
    #expect(first.final == second.final)
    #expect(first.accepted.map(\.0) == second.accepted.map(\.0))
    #expect(first.accepted.map(\.1) == second.accepted.map(\.1))
    // And the result is the one the recording should give: closed at 18+20 ms, open at
    // 153+20 ms, with the flickers dropped.
    #expect(first.accepted.map(\.0) == [true, false])
    #expect(first.accepted.map(\.1) == [38 * ms, 173 * ms])
    #expect(first.final.edges == 10)
    #expect(first.final.bounces == 4)
  }
}

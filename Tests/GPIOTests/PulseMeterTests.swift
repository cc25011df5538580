// The KYZ pulse meter: pulses to power and energy, as the appliance reads a utility meter.

import GPIO
import Testing

private let second: UInt64 = 1_000_000_000

private func edge(_ active: Bool, at time: UInt64) -> LineEdge {
  LineEdge(active: active, timestampNanoseconds: time)
}

/// SplitMix64, seeded, so a failing run replays (TestKit is not a dependency of GPIOTests).
private struct SplitMix64: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

@Suite struct PulseMeterTests {
  @Test("Form A counts only closures, and power is kWh per pulse × 3600 / interval")
  func formACountsClosures() throws {
    let start = 10 * second
    var meter = PulseMeter(.init(kWhPerPulse: 0.1, form: .a, maxKW: 600), startedAt: start)
    let interval: UInt64 = 1_200_000_000  // 1.2 s
    for k in 1...5 {
      let t = start + UInt64(k) * interval
      #expect(meter.take(edge(true, at: t)) == .counted)
      #expect(meter.take(edge(false, at: t + 100_000_000)) == .ignored)
    }
    #expect(meter.pulses == 5)
    #expect(meter.rejected == 0)
    let last = start + 5 * interval
    let kW = try #require(meter.kW(at: last))
    #expect(abs(kW - 300) < 1e-9)
    // Still 300 kW until a whole interval has passed without a pulse.
    let later = try #require(meter.kW(at: last + interval))
    #expect(abs(later - 300) < 1e-9)
    #expect(abs(meter.energyKWh - 0.5) < 1e-12)
  }

  @Test("Form C counts every change of the toggling output as a pulse")
  func formCCountsEveryChange() throws {
    var meter = PulseMeter(.init(kWhPerPulse: 0.1, form: .c, maxKW: 600), startedAt: 0)
    var active = false
    for k in 1...6 {
      active.toggle()
      #expect(meter.take(edge(active, at: UInt64(k) * 1_200_000_000)) == .counted)
    }
    #expect(meter.pulses == 6)
    #expect(abs(meter.energyKWh - 0.6) < 1e-12)
    let kW = try #require(meter.kW(at: 6 * 1_200_000_000))
    #expect(abs(kW - 300) < 1e-9)

    // The same edges into a Form A meter count half as many.
    var formA = PulseMeter(.init(kWhPerPulse: 0.1, form: .a, maxKW: 600), startedAt: 0)
    active = false
    for k in 1...6 {
      active.toggle()
      formA.take(edge(active, at: UInt64(k) * 1_200_000_000))
    }
    #expect(formA.pulses == 3)
  }

  @Test("there is no power reading before two pulses have come")
  func noPowerBeforeTwoPulses() {
    var meter = PulseMeter(.init(kWhPerPulse: 0.1, maxKW: 600), startedAt: 0)
    #expect(meter.kW(at: 0) == nil)
    #expect(meter.kW(at: 100 * second) == nil)
    meter.take(edge(true, at: 1 * second))
    #expect(meter.pulses == 1)
    #expect(meter.kW(at: 1 * second) == nil)
    #expect(meter.kW(at: 2 * second) == nil)
    meter.take(edge(true, at: 3 * second))
    #expect(meter.kW(at: 3 * second) != nil)
  }

  @Test("after a long silence power falls as kWh per pulse × 3600 / time since the last pulse, never rising")
  func powerFallsDuringSilence() throws {
    var meter = PulseMeter(.init(kWhPerPulse: 0.1, maxKW: 600), startedAt: 0)
    meter.take(edge(true, at: 10 * second))
    meter.take(edge(true, at: 12 * second))  // 2 s: 180 kW
    let atPulse = try #require(meter.kW(at: 12 * second))
    #expect(abs(atPulse - 180) < 1e-9)

    var previous = atPulse
    for silence: UInt64 in [1, 2, 3, 5, 10, 60, 360, 3600] {
      let kW = try #require(meter.kW(at: 12 * second + silence * second))
      #expect(kW <= 180 + 1e-9, "rose above the last interval's power after \(silence) s")
      #expect(kW <= previous + 1e-12, "rose during the silence at \(silence) s")
      if silence > 2 {
        #expect(abs(kW - 0.1 * 3600 / Double(silence)) < 1e-9)
      }
      previous = kW
    }
    // An hour of silence: 0.1 kW.
    let hour = try #require(meter.kW(at: 12 * second + 3600 * second))
    #expect(abs(hour - 0.1) < 1e-12)
  }

  @Test("a pulse sooner than max kW allows is dropped as a bounce and leaves the power alone")
  func bounceIsRejected() throws {
    // 0.1 kWh at 300 kW at most: pulses closer than 1.2 s are not real.
    var meter = PulseMeter(.init(kWhPerPulse: 0.1, maxKW: 300), startedAt: 0)
    meter.take(edge(true, at: 10 * second))
    meter.take(edge(true, at: 12 * second))  // 180 kW
    #expect(meter.take(edge(false, at: 12 * second + 5_000_000)) == .ignored)
    #expect(meter.take(edge(true, at: 12 * second + 10_000_000)) == .bounce)  // 10 ms later
    #expect(meter.take(edge(true, at: 13 * second)) == .bounce)  // 1 s later: 360 kW
    #expect(meter.rejected == 2)
    #expect(meter.pulses == 2)
    #expect(abs(meter.energyKWh - 0.2) < 1e-12)
    let kW = try #require(meter.kW(at: 13 * second))
    #expect(abs(kW - 180) < 1e-9)

    // The next real pulse is timed from the last counted one, not from the bounce.
    #expect(meter.take(edge(true, at: 15 * second)) == .counted)
    let after = try #require(meter.kW(at: 15 * second))
    #expect(abs(after - 120) < 1e-9)  // 3 s since 12 s
    #expect(meter.rejected == 2)
    #expect(meter.pulses == 3)
  }

  @Test("a pulse exactly at the shortest believable gap is counted")
  func pulseAtTheLimitCounts() {
    var meter = PulseMeter(.init(kWhPerPulse: 0.1, maxKW: 300), startedAt: 0)
    let gap = meter.configuration.minimumGapNanoseconds
    #expect(gap >= 1_199_999_000 && gap <= 1_200_000_000)
    meter.take(edge(true, at: 10 * second))
    #expect(meter.take(edge(true, at: 10 * second + gap)) == .counted)
    #expect(meter.take(edge(true, at: 10 * second + 2 * gap - 1)) == .bounce)
  }

  @Test("the meter is stale after staleAfterSeconds without pulses, counted from start before any pulse")
  func staleness() {
    let start = 1_000 * second
    var meter = PulseMeter(.init(kWhPerPulse: 0.1, maxKW: 600, staleAfterSeconds: 60), startedAt: start)
    #expect(!meter.isStale(at: start))
    #expect(!meter.isStale(at: start + 59 * second))
    #expect(meter.isStale(at: start + 61 * second))
    #expect(abs(meter.silentSeconds(at: start + 61 * second) - 61) < 1e-9)

    meter.take(edge(true, at: start + 100 * second))
    #expect(!meter.isStale(at: start + 100 * second))
    #expect(!meter.isStale(at: start + 159 * second))
    #expect(meter.isStale(at: start + 161 * second))
    #expect(abs(meter.silentSeconds(at: start + 130 * second) - 30) < 1e-9)

    meter.take(edge(true, at: start + 170 * second))
    #expect(!meter.isStale(at: start + 171 * second))
    #expect(meter.pulses == 2)
    #expect(abs(meter.energyKWh - 2 * 0.1) < 1e-12)
  }

  @Test("an hour of a 250 kW load with ±5% jitter measures 250 kWh within one pulse")
  func measuredHourOfJitteredPulses() throws {
    let kWhPerPulse = 0.05
    let loadKW = 250.0
    let nominal = kWhPerPulse * 3600 / loadKW  // 0.72 s
    let start = 5 * second
    var meter = PulseMeter(.init(kWhPerPulse: kWhPerPulse, form: .a, maxKW: 375), startedAt: start)
    var rng = SplitMix64(seed: 0x6D69_6372_6F67_7264)
    var k = 1
    var lastPulse = start
    while true {
      // Each closure within ±5% of a pulse interval of where it is due (the meter's own
      // timing jitters; its count does not drift).
      let jitter = Double.random(in: -0.05...0.05, using: &rng) * nominal
      let seconds = Double(k) * nominal + jitter
      guard seconds <= 3600 else { break }
      let t = start + UInt64(seconds * 1e9)
      #expect(meter.take(edge(true, at: t)) == .counted)
      meter.take(edge(false, at: t + 100_000_000))
      lastPulse = t
      k += 1
    }
    #expect(meter.rejected == 0)
    #expect(abs(meter.energyKWh - loadKW) <= kWhPerPulse + 1e-9, "measured \(meter.energyKWh) kWh")
    let kW = try #require(meter.kW(at: lastPulse))
    #expect(abs(kW - loadKW) < loadKW * 0.15, "power \(kW) kW")
  }
}

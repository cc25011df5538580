import Appliance
import Control
import GPIO
import SiteModel
import TestKit
import Testing

/// The outage sequence end to end over simulated GPIO: recorded edge sequences on the
/// utility contact, the switch's contacts and the emergency stop, through the real
/// debounce, controller and outputs. Each ends in the right state, and the interlocks
/// (judged against the physical truth, not what the pins said) hold at every step.
@Suite("Outage sequence over GPIO")
struct OutageSequenceTests {
  @Test("a flickering utility contact stops export for the flicker but never transfers")
  func flicker() throws {
    let bench = try FieldBench()
    bench.run(until: 900)  // entered service and ramped
    // Contact chatter: 6 ms drops, shorter than the 20 ms debounce, for a second.
    for k in 0..<25 { bench.at(900 + Double(k) * 0.04, .contactGlitch) }
    bench.run(until: 1000)
    #expect(bench.breaches.isEmpty, "\(bench.breaches.prefix(3))")
    #expect(!bench.steps.contains { $0.islandCommand }, "a flicker shorter than the debounce transferred")
    #expect(bench.steps.contains { $0.snapshot.utilityLossPending }, "the drops never reached the controller")
    for st in bench.steps where st.snapshot.utilityLossPending {
      #expect(st.decisions.setpointsKW.allSatisfy { $0 >= 0 }, "discharge during a contact drop at \(st.time)")
    }
    #expect(bench.last.decisions.phase == .normal)
    #expect(bench.last.position == .utility)
  }

  @Test("a two-hour outage: transfer, island, loads back in priority steps, then back after the delay and ramp")
  func twoHourOutage() throws {
    // Two buses with 140 kWh each: enough to bring every group back at first, not to keep
    // them all for two hours.
    let bench = try FieldBench(energies: [140, 140])
    bench.at(900, .utility(false))
    bench.at(900 + 7200, .utility(true))
    bench.run(until: 900 + 7200 + 800)
    #expect(bench.breaches.isEmpty, "\(bench.breaches.prefix(3))")

    // Loss: confirmed after the 20 ms debounce, transfer commanded in that same step.
    let command = try #require(bench.steps.first { $0.islandCommand })
    #expect(command.time >= 900.02 - 1e-6 && command.time <= 900.021, "transfer commanded at \(command.time)")
    #expect(command.decisions.setpointsKW.allSatisfy { $0 == 0 }, "chargers ran before the switch confirmed")
    #expect(command.decisions.phase == .transferring)
    // The switch confirms 150 ms later; the island forms at once.
    let formed = try #require(bench.steps.first { $0.decisions.gridFormingCharger != nil })
    #expect(formed.time <= command.time + 0.15 + 0.03, "island formed at \(formed.time)")
    #expect(formed.decisions.phase == .islanded)
    #expect(formed.shedRelays == [true, true, true], "every group shed at the transfer")

    // Groups come back one at a time, in priority order, at least 30 s apart.
    var restores: [(Double, Int)] = []
    var sheds: [(Double, Int)] = []
    var groups = 0
    for st in bench.steps where st.decisions.restoredLoadGroups != groups {
      let now = st.decisions.restoredLoadGroups
      #expect(abs(now - groups) == 1 || now == 0, "groups went from \(groups) to \(now) at \(st.time)")
      if now > groups {
        restores.append((st.time, now))
      } else if st.snapshot.transferSwitch == .island {
        sheds.append((st.time, now))
      }
      groups = now
    }
    #expect(restores.count >= 3, "restored: \(restores)")
    #expect(restores.prefix(3).map(\.1) == [1, 2, 3])
    for (a, b) in zip(restores, restores.dropFirst()) { #expect(b.0 - a.0 >= 30 - 1e-6) }
    let oneBack = try #require(bench.steps.first { $0.decisions.restoredLoadGroups == 1 })
    #expect(oneBack.shedRelays == [false, true, true], "classrooms (priority 1) first")
    // As the buses drain, the last group restored is shed again: the island never carries
    // more than they can hold for the configured two hours.
    #expect(!sheds.isEmpty, "nothing shed again as the energy ran down")
    #expect(sheds.first?.1 == 2, "gym-hvac (priority 3) should go first")

    // Back: not before 300 s of utility, then re-transfer, ramp, normal.
    let back = 900.0 + 7200
    let reclose = try #require(bench.steps.first { $0.time > back && !$0.islandCommand })
    #expect(reclose.time >= back + 300 && reclose.time <= back + 302, "re-transfer at \(reclose.time)")
    let ramp = bench.steps.filter { $0.time > reclose.time && $0.decisions.phase == .rampingUp }
    #expect(!ramp.isEmpty, "no ramp after re-closing")
    #expect(bench.last.position == .utility)
    #expect(bench.last.shedRelays == [false, false, false])
    // The whole sequence, each phase once, in order.
    var phases: [OutagePhase] = []
    for st in bench.steps where st.time >= 900 && phases.last != st.decisions.phase {
      phases.append(st.decisions.phase)
    }
    #expect(phases == [.normal, .transferring, .islanded, .enterServiceWait, .retransferring, .rampingUp, .normal])
    #expect([.rampingUp, .normal].contains(bench.last.decisions.phase))
  }

  @Test("the utility comes back, then fails again during the wait: the wait starts over")
  func returnThenFail() throws {
    let bench = try FieldBench()
    bench.at(900, .utility(false))
    bench.at(1800, .utility(true))
    bench.at(1920, .utility(false))  // 120 s into the 300 s wait
    bench.at(2400, .utility(true))
    bench.run(until: 3400)
    #expect(bench.breaches.isEmpty, "\(bench.breaches.prefix(3))")
    let reclose = try #require(bench.steps.first { $0.time > 1000 && !$0.islandCommand })
    #expect(reclose.time >= 2700, "re-transferred at \(reclose.time), before 300 s after the last return")
    #expect(bench.steps.contains { $0.time > 1800 && $0.time < 1920 && $0.decisions.phase == .enterServiceWait })
    // During the second loss it was an island again, never dark.
    let during = bench.steps.filter { $0.time > 1921 && $0.time < 2400 }
    #expect(during.allSatisfy { $0.decisions.phase == .islanded && $0.position == .island })
    #expect(bench.last.position == .utility)
  }

  @Test("a transfer switch that never confirms: chargers stay off, the sequence says it is stuck")
  func stuckSwitch() throws {
    let bench = try FieldBench()
    bench.at(800, .switchStuck(true))
    bench.at(900, .utility(false))
    bench.at(1500, .utility(true))
    bench.run(until: 2500)
    #expect(bench.breaches.isEmpty, "\(bench.breaches.prefix(3))")
    let outage = bench.steps.filter { $0.time > 900 && $0.time < 1500 }
    #expect(
      outage.allSatisfy { $0.decisions.setpointsKW.allSatisfy { $0 == 0 } && $0.decisions.gridFormingCharger == nil })
    let stuck = try #require(bench.steps.first { $0.decisions.phase == .transferStuck })
    #expect(stuck.time >= 910 && stuck.time <= 911.1, "stuck reported at \(stuck.time)")
    // Back on the utility it never left: the stale island command is dropped, and it
    // re-enters service after the delay.
    let afterReturn = try #require(bench.step(at: 1502))
    #expect(!afterReturn.islandCommand)
    #expect(afterReturn.decisions.phase == .enterServiceWait)
    #expect([.rampingUp, .normal].contains(bench.last.decisions.phase))
  }

  @Test("emergency stop on the island: everything off at once, the island comes back on release")
  func emergencyStop() throws {
    let bench = try FieldBench()
    bench.at(900, .utility(false))
    bench.at(1200, .emergencyStop(true))
    bench.at(1300, .emergencyStop(false))
    bench.at(2000, .utility(true))
    bench.run(until: 3000)
    #expect(bench.breaches.isEmpty, "\(bench.breaches.prefix(3))")
    let pressed = try #require(bench.steps.first { $0.time >= 1200 })
    #expect(pressed.time < 1200.001, "the press woke the loop at \(pressed.time)")
    #expect(pressed.decisions.phase == .emergencyStop)
    #expect(pressed.decisions.setpointsKW.allSatisfy { $0 == 0 } && pressed.decisions.gridFormingCharger == nil)
    #expect(pressed.islandCommand, "the switch was moved by the emergency stop")
    let resumed = try #require(bench.steps.first { $0.time >= 1300 && $0.decisions.gridFormingCharger != nil })
    #expect(resumed.time <= 1300.1)
    #expect(bench.last.position == .utility)
  }

  @Test("an island test from the panel runs the same sequence with the utility there, and exports nothing")
  func islandTest() throws {
    let bench = try FieldBench(energies: [140, 140])
    bench.at(900, .islandTest(true))
    bench.at(1500, .islandTest(false))
    bench.run(until: 2200)
    #expect(bench.breaches.isEmpty, "\(bench.breaches.prefix(3))")
    let command = try #require(bench.steps.first { $0.islandCommand })
    #expect(command.time >= 900 && command.time <= 901)
    #expect(command.decisions.setpointsKW.allSatisfy { $0 == 0 }, "chargers ran with the switch still closed")
    let formed = try #require(bench.steps.first { $0.decisions.gridFormingCharger != nil })
    #expect(formed.position == .island && formed.decisions.phase == .islanded)
    #expect(
      bench.steps.contains { $0.time < 1500 && $0.decisions.restoredLoadGroups == 3 }, "groups came back in the test")
    // The test ends: back to the utility (stable all along) at once, then the ramp.
    let back = try #require(bench.steps.first { $0.time >= 1500 && !$0.islandCommand })
    #expect(back.time < 1502, "re-transfer at \(back.time)")
    #expect(bench.steps.contains { $0.time > 1500 && $0.decisions.phase == .rampingUp })
    #expect(bench.last.position == .utility)
  }

  @Test("random edge sequences never break the interlocks", arguments: 0..<8)
  func randomized(batch: Int) throws {
    var settings = ControlSettings()
    // Short timings so each sequence goes through many transitions.
    settings.enterServiceDelaySeconds = 30
    settings.enterServiceRampSeconds = 20
    settings.transferConfirmSeconds = 3
    settings.transferRetrySeconds = 10
    settings.loadRestoreStepSeconds = 5
    for trial in 0..<250 {
      let seed = UInt64(batch * 1000 + trial)
      var rng = SeededGenerator(seed: seed)
      let bench = try FieldBench(
        settings: settings,
        energies: [Double.random(in: 0...150, using: &rng), Double.random(in: 0...150, using: &rng)])
      bench.switchTransferSeconds = Double.random(in: 0.02...2, using: &rng)
      var t = 1.0
      var utility = true
      var stop = false
      var stuck = false
      var test = false
      while t < 240 {
        // Real changes last longer than the 20 ms debounce; shorter ones are chatter below.
        t += Double.random(in: 0.03...20, using: &rng)
        switch Int.random(in: 0..<11, using: &rng) {
        case 0..<6:
          utility.toggle()
          bench.at(t, .utility(utility))
        case 6:
          stop.toggle()
          bench.at(t, .emergencyStop(stop))
        case 7:
          stuck.toggle()
          bench.at(t, .switchStuck(stuck))
        case 8:
          test.toggle()
          bench.at(t, .islandTest(test))
        default:
          // Contact chatter: a burst of drops shorter than the debounce (the utility
          // itself stays as it was).
          for k in 0..<Int.random(in: 1...6, using: &rng) {
            bench.at(t + Double(k) * 0.012, .contactGlitch)
          }
        }
      }
      bench.run(until: 260)
      #expect(bench.breaches.isEmpty, "seed \(seed): \(bench.breaches.prefix(3))")
    }
  }
}

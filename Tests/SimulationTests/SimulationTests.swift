import Control
import Foundation
import SiteModel
import Testing

@testable import Simulation

@Suite("Simulating a scenario: physics, causality, costs")
struct SimulationTests {
  func run(_ scenario: Scenario, until: Int? = nil) -> Trace {
    var controller = Controller(site: scenario.site)
    return ScenarioRunner(scenario: scenario).run(&controller, untilMinute: until).trace
  }

  @Test("the trace balances, respects the limits and meets every departure")
  func physics() throws {
    let f = try ScenarioFixture()
    defer { f.remove() }
    let scenario = try Scenario.load(directory: f.directory)
    let trace = run(scenario)
    #expect(trace.intervals.count == scenario.intervalCount)
    #expect(trace.violations.isEmpty)
    for row in trace.intervals {
      #expect(abs(row.gridKW - (row.servedKW + row.evKW)) < 1e-9)
      #expect(row.gridKW <= scenario.site.importLimitKW + 1e-9)
      #expect(row.gridKW >= -scenario.site.exportLimitKW - scenario.site.eventExportLimitKW - 1e-9)
      let inOutage = scenario.outages.contains { $0.contains(minute: row.minute) }
      if inOutage { #expect(row.gridKW == 0) }
    }
    let cost = CostBreakdown(trace: trace, scenario: scenario)
    #expect(cost.shortfallKWh == 0, "\(cost.shortfalls)")
    #expect(trace.departures.count == 5, "four during the run, one at its end")
  }

  @Test("vehicle rows follow the batteries: energy changes by what flowed, with the efficiency")
  func vehicleEnergy() throws {
    let f = try ScenarioFixture()
    defer { f.remove() }
    let scenario = try Scenario.load(directory: f.directory)
    let trace = run(scenario)
    for session in scenario.sessions {
      var energy = session.arriveKWh
      let eta = scenario.site.chargers[session.charger].efficiency
      let rows = trace.vehicles.filter {
        $0.vehicle == session.vehicle && $0.minute >= session.arriveMinute && $0.minute < session.departMinute
      }
      #expect(rows.count == (min(session.departMinute, scenario.durationMinutes) - session.arriveMinute) / 15)
      for r in rows {
        energy += r.chargeKWh * eta - r.dischargeKWh / eta
        #expect(abs(energy - r.energyKWh) < 1e-6)
      }
    }
  }

  @Test("the controller islands the fixture's outage and beats doing nothing")
  func beatsUnmanaged() throws {
    let f = try ScenarioFixture()
    defer { f.remove() }
    let scenario = try Scenario.load(directory: f.directory)
    let managed = CostBreakdown(trace: run(scenario), scenario: scenario)
    var baseline = UnmanagedPolicy(site: scenario.site)
    let unmanaged = CostBreakdown(trace: ScenarioRunner(scenario: scenario).run(&baseline).trace, scenario: scenario)
    #expect(managed.unservedCriticalKWh < unmanaged.unservedCriticalKWh)
    #expect(managed.meanEventDischargeKW > 20)
    #expect(managed.total < unmanaged.total)
  }

  @Test("causality: changing what happens after T leaves the trace before T untouched")
  func causality() throws {
    let t = 1455  // an interval boundary after the event, before the outage
    let original = try ScenarioFixture()
    defer { original.remove() }
    var load = "minute,building_kw\n"
    for row in ScenarioFixture.load.split(separator: "\n").dropFirst() {
      let parts = row.split(separator: ",")
      let minute = Int(parts[0])!
      load += "\(minute),\(minute >= t ? Double(parts[1])! * 2.5 : Double(parts[1])!)\n"
    }
    let json = ScenarioFixture.json
      .replacingOccurrences(
        of: "\"start_minute\": 1500, \"end_minute\": 1620", with: "\"start_minute\": 1455, \"end_minute\": 1995"
      )
      .replacingOccurrences(
        of: "{\"id\": \"E1\", \"notify_minute\": 60, \"start_minute\": 900, \"end_minute\": 1080}",
        with:
          "{\"id\": \"E1\", \"notify_minute\": 60, \"start_minute\": 900, \"end_minute\": 1080}, {\"id\": \"E2\", \"notify_minute\": 1455, \"start_minute\": 2100, \"end_minute\": 2280}"
      )
    let sessions = ScenarioFixture.sessions.replacingOccurrences(
      of: "BUS,C1,1470,2880,100,60", with: "BUS,C1,1470,1995,10,150")
    let changed = try ScenarioFixture(json: json, load: load, sessions: sessions)
    defer { changed.remove() }
    let a = run(try Scenario.load(directory: original.directory))
    let b = run(try Scenario.load(directory: changed.directory))
    #expect(a.intervals.filter { $0.minute < t } == b.intervals.filter { $0.minute < t })
    #expect(a.vehicles.filter { $0.minute < t } == b.vehicles.filter { $0.minute < t })
    #expect(a.intervals != b.intervals, "the change after T should show after T")
  }

  @Test("trace numbers have three decimals, rounded, and no negative zero")
  func fixedFormatting() {
    func text(_ v: Double) -> String {
      var s = ""
      TraceFiles.appendFixed(v, to: &s)
      return s
    }
    #expect(text(0) == "0.000")
    #expect(text(-0.0004) == "0.000")
    #expect(text(1.2345) == "1.235" || text(1.2345) == "1.234")
    #expect(text(-12.5) == "-12.500")
    #expect(text(859) == "859.000")
    #expect(text(0.05) == "0.050")
  }
}

/// Wraps the controller and keeps what the safety filter had to change.
struct InterventionCounter: SitePolicy {
  var controller: Controller
  var interventions: [String] = []
  mutating func step(_ snapshot: Snapshot) -> Decisions {
    let d = controller.step(snapshot)
    interventions += d.safetyInterventions.map { "minute \(Int(snapshot.time / 60)): \($0)" }
    return d
  }
}

@Suite("The controller's own proposals")
struct ProposalTests {
  @Test(
    "in ordinary operation the safety filter has nothing to correct",
    arguments: ["townhall-fleet-baltimore", "school-buses-chicago"])
  func filterIdle(name: String) throws {
    let scenario = try Scenario.load(directory: "scenarios/\(name)")
    var policy = InterventionCounter(controller: Controller(site: scenario.site))
    // Three weeks of summer, with demand-response events.
    _ = ScenarioRunner(scenario: scenario).run(&policy, untilMinute: 290_000)
    #expect(policy.interventions.isEmpty, "\(policy.interventions.prefix(5))")
  }
}

import Appliance
import ArgumentParser
import Control
import Foundation
import SiteFiles
import SiteModel
import Simulation

struct Simulate: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run the controller over a v2x-scenario/1 directory faster than real time.",
    discussion: """
      Writes intervals.csv, vehicles.csv, report.json and chart.html into --out.
      With --record, also every record the appliance would have made (telemetry, events, sessions), in a record
      store that `microgrid-edge report --store` reads; --upload-url sends them to a central receiver.
      Exit status 2 on bad input, with the file, line and field that is wrong.
      """)

  @Argument(help: "The scenario directory (holding scenario.json).")
  var scenario: String

  @Option(help: "Where to write the trace, report and chart.")
  var out: String

  @Option(help: "A site configuration whose control: section tunes the controller.")
  var config: String?

  @Option(help: "Control step in seconds (must divide the demand interval).")
  var step: Double = 60

  @Option(help: "Stop after this many minutes (default: the whole scenario).")
  var minutes: Int?

  @Option(help: "Time every Nth controller step for the report (0: off).")
  var timeEvery: Int = 0

  @Option(help: "Also record the run, as the appliance records a site, into this new record store (SQLite).")
  var record: String?

  @Option(help: "The site id the records are kept under (default: the scenario's name).")
  var siteID: String?

  @Option(help: "After the run, upload the recorded store to this central receiver's base URL.")
  var uploadURL: String?

  @Option(help: "The site's bearer token for --upload-url.")
  var token: String?

  func run() async throws {
    var recording: SimulationRecording?
    try exitOnInputError {
      let scenario = try Scenario.load(directory: self.scenario)
      var job = SimulationJob(scenario: scenario)
      if let config {
        job.settings = try SiteConfigurationFile.load(path: config, environment: ProcessInfo.processInfo.environment)
          .configuration.control
      }
      guard step > 0, scenario.intervalSeconds.truncatingRemainder(dividingBy: step) == 0 else {
        throw InputError(
          source: "--step", message: "\(step) s does not divide the \(Int(scenario.intervalSeconds)) s demand interval")
      }
      job.stepSeconds = step
      if let minutes, minutes <= 0 || minutes % scenario.intervalMinutes != 0 {
        throw InputError(
          source: "--minutes",
          message: "\(minutes) is not a positive multiple of the \(scenario.intervalMinutes)-minute interval")
      }
      job.untilMinute = minutes
      job.sampleTimingEvery = timeEvery
      if uploadURL != nil && (record == nil || token == nil) {
        throw InputError(source: "--upload-url", message: "needs --record and --token")
      }
      if let record {
        let r = try SimulationRecording(path: record, siteID: siteID ?? scenario.name, site: scenario.site)
        job.observeManagedStep = { r.observe($0, $1, $2) }
        recording = r
      }
      let bar = ProgressBar(title: scenario.name)
      let result = job.run { phase, fraction in bar.update(phase: phase, fraction: fraction) }
      bar.finish()
      try job.write(result, to: out)
      printSummary(result.report, out: out)
      if let recording {
        let counters = try recording.finish()
        print("  records              \(counters.lastSeq) in \(recording.path)")
      }
    }
    if let recording, let uploadURL, let token, let store = recording.outbox.store {
      do {
        let batches = try await StoreUpload.all(
          store: store, url: uploadURL, site: siteID ?? recording.recorder.site.name, token: token)
        print("  uploaded             \(batches) batches to \(uploadURL)")
      } catch {
        FileHandle.standardError.write(Data("microgrid-edge: error: \(error)\n".utf8))
        throw ExitCode(1)
      }
    }
  }

  func printSummary(_ r: RunReport, out: String) {
    func money(_ v: Double) -> String { String(format: "$%.0f", v) }
    let c = r.cost
    let u = r.unmanagedCost
    print(
      "\(r.scenario): \(String(format: "%.0f", r.simulatedDays)) days simulated in \(String(format: "%.1f", r.wallClockSeconds)) s"
    )
    print("  cost                 \(money(c.total)) (unmanaged \(money(u.total)), saving \(money(r.savings)))")
    print("  demand charges       \(money(c.demandCharge)) (unmanaged \(money(u.demandCharge)))")
    print(
      "  energy               \(money(c.energyCost - c.exportCredit)) (unmanaged \(money(u.energyCost - u.exportCredit)))"
    )
    print(
      "  demand response      \(money(c.demandResponsePayment)) earned, \(String(format: "%.1f", c.meanEventDischargeKW)) kW mean over \(c.events.count) events"
    )
    print(
      "  departures           \(String(format: "%.3f", c.shortfallKWh)) kWh missing over \(c.shortfalls.count) departures"
    )
    print(
      "  outages              \(String(format: "%.1f", c.unservedCriticalKWh)) kWh critical load unserved (unmanaged \(String(format: "%.1f", u.unservedCriticalKWh)))"
    )
    print(
      "  safety               \(r.violations.isEmpty ? "no violations" : "\(r.violations.count) VIOLATIONS: \(r.violations.prefix(3))")"
    )
    if let t = r.decisionTimeMicros {
      print(
        "  decision time        median \(String(format: "%.1f", t.median)) µs, p99 \(String(format: "%.1f", t.p99)) µs")
    }
    if let t = r.replanTimeMicros {
      print(
        "  re-plan time         median \(String(format: "%.1f", t.median)) µs, p99 \(String(format: "%.1f", t.p99)) µs over \(t.samples) plans"
      )
    }
    print("  trace and report in  \(out)/ (chart: \(out)/chart.html)")
  }
}

/// Progress on a terminal: a bar redrawn in place, only when stderr is a terminal.
final class ProgressBar: @unchecked Sendable {
  let title: String
  let enabled = isatty(STDERR_FILENO) == 1
  private var last = -1

  init(title: String) { self.title = title }

  func update(phase: String, fraction: Double) {
    guard enabled else { return }
    let percent = Int(fraction * 100)
    guard percent != last else { return }
    last = percent
    let filled = percent * 30 / 100
    let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: 30 - filled)
    FileHandle.standardError.write(
      Data("\r\(title) \(phase.padding(toLength: 10, withPad: " ", startingAt: 0)) \(bar) \(percent)%".utf8))
  }

  func finish() {
    if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
  }
}

/// Bad input ends the command with one line on stderr and exit status 2, never a trace.
func exitOnInputError(_ body: () throws -> Void) throws {
  do {
    try body()
  } catch let error as InputError {
    FileHandle.standardError.write(Data("microgrid-edge: error: \(error)\n".utf8))
    throw ExitCode(2)
  }
}

import Appliance
import ArgumentParser
import Foundation
import Reports
import SiteFiles
import SiteModel

/// `microgrid-edge report`: what V2X did, from the appliance's store or the program's
/// uploaded records, as report.html, report.json and CSV tables.
struct ReportCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "report",
    abstract: "Write what V2X did for the building: peaks, savings, events, outages, vehicles (HTML, JSON, CSV).",
    discussion: """
      Reads the appliance's record store (--store; by default the store the site configuration names) or the
      NDJSON files the central program keeps of sites' uploads (--records, files or folders, one file per site).
      Problems with the input are warnings on stderr, naming file and line; the report is still written for
      what is there. Exit status 2 on bad arguments or when no input can be read at all.
      """)

  @Option(help: "A record store file (SQLite). Repeat for several.")
  var store: [String] = []

  @Option(help: "Uploaded records: an NDJSON file ({site}.ndjson) or a folder of them. Repeat for several.")
  var records: [String] = []

  @Option(help: "The site configuration whose store to read when neither --store nor --records is given.")
  var config = "/etc/microgrid-edge/site.yaml"

  @Option(help: "A calendar month, YYYY-MM.")
  var month: String?

  @Option(help: "The billing period that starts in this month (YYYY-MM) on the site's billing cycle day.")
  var period: String?

  @Option(help: "First day, YYYY-MM-DD (local).")
  var from: String?

  @Option(help: "Day after the last, YYYY-MM-DD (local, exclusive).")
  var to: String?

  @Option(help: "The day to draw as stacked power, YYYY-MM-DD (default: the first event's day, else the peak's).")
  var day: String?

  @Option(help: "The program's goal per event across sites, kW.")
  var goalKW = 1000.0

  @Option(help: "Where to write report.html, report.json and the CSV tables.")
  var out = "report"

  func run() throws {
    try exitOnInputError {
      var options = Report.Options()
      options.range = try range()
      options.goalKW = goalKW
      if let day {
        guard let d = ReportRange.parseDate(day) else {
          throw InputError(source: "--day", message: "'\(day)' is not a date like 2026-07-14")
        }
        options.day = d
      }
      guard goalKW > 0 else { throw InputError(source: "--goal-kw", message: "must be above 0") }
      var sources: [RecordSource] = store.map { .store(path: $0) }
      do {
        for path in records { sources += try RecordSource.records(at: path) }
      } catch {
        throw InputError(source: "--records", message: "\(error)")
      }
      if sources.isEmpty { sources = [.store(path: try configuredStore())] }
      let report: Report
      do {
        report = try Report.build(sources: sources, options: options)
      } catch {
        throw InputError(source: "input", message: "\(error)")
      }
      for problem in report.problems {
        FileHandle.standardError.write(Data("microgrid-edge: warning: \(problem)\n".utf8))
      }
      let written: [String]
      do {
        written = try ReportFiles.write(report, to: out)
      } catch {
        throw InputError(source: "--out", message: "\(error)")
      }
      let periods = report.sites.reduce(0) { $0 + $1.periods.count }
      print(
        "report: \(report.sites.count) site\(report.sites.count == 1 ? "" : "s"), \(periods) billing period\(periods == 1 ? "" : "s"), \(report.program.events.count) event\(report.program.events.count == 1 ? "" : "s")"
      )
      for path in written { print("  wrote \(path)") }
    }
  }

  func range() throws -> ReportRange {
    let given = [month != nil, period != nil, from != nil || to != nil].filter { $0 }.count
    guard given <= 1 else {
      throw InputError(source: "--month/--period/--from", message: "give one of --month, --period or --from/--to")
    }
    if let month {
      guard let r = ReportRange.month(month) else {
        throw InputError(source: "--month", message: "'\(month)' is not a month like 2026-07")
      }
      return r
    }
    if let period {
      guard let (y, m) = ReportRange.parseMonth(period) else {
        throw InputError(source: "--period", message: "'\(period)' is not a month like 2026-07")
      }
      return .billingPeriod(year: y, month: m)
    }
    if from != nil || to != nil {
      guard let from, let f = ReportRange.parseDate(from) else {
        throw InputError(source: "--from", message: "'\(from ?? "")' is not a date like 2026-07-01 (--to needs --from)")
      }
      guard let to, let t = ReportRange.parseDate(to) else {
        throw InputError(source: "--to", message: "'\(to ?? "")' is not a date like 2026-08-01 (--from needs --to)")
      }
      guard t.dayNumber > f.dayNumber else { throw InputError(source: "--to", message: "\(to) is not after \(from)") }
      return .dates(from: f, to: t)
    }
    return .all
  }

  /// The store the site configuration names (the appliance's default).
  func configuredStore() throws -> String {
    let file = try SiteConfigurationFile.load(path: config, environment: ProcessInfo.processInfo.environment)
    guard let store = file.configuration.store else {
      throw InputError(source: config, message: "keeps no records (no store: section); give --store or --records")
    }
    return store.path
  }
}

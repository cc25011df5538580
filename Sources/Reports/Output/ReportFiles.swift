import Foundation

/// Writes a report as files: report.html for people, report.json and CSV tables of the
/// same figures for spreadsheets and the program's tools.
public enum ReportFiles {
  /// Writes every file into `directory` (created) and returns their paths.
  public static func write(_ report: Report, to directory: String) throws(ReportInputError) -> [String] {
    do {
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    } catch {
      throw ReportInputError("\(directory): cannot create the output folder (\(error.localizedDescription))")
    }
    var files: [(String, String)] = [("report.html", ReportPage.html(report)), ("report.json", json(report))]
    files += ReportTables.csv(report)
    var written: [String] = []
    for (name, text) in files {
      let path = (directory as NSString).appendingPathComponent(name)
      // Written beside and renamed: a report open in a browser is never half a file.
      let temporary = path + ".partial"
      do {
        try Data(text.utf8).write(to: URL(fileURLWithPath: temporary))
        if rename(temporary, path) != 0 {
          throw ReportInputError("\(path): cannot replace (\(String(cString: strerror(errno))))")
        }
      } catch let error as ReportInputError {
        throw error
      } catch {
        throw ReportInputError("\(path): cannot write (\(error.localizedDescription))")
      }
      written.append(path)
    }
    return written
  }

  static func json(_ report: Report) -> String {
    struct Document: Encodable {
      var format = "microgrid-edge-report/1"
      var generated: String
      var from: String?
      var to: String?
      var sites: [SiteReport]
      var program: ProgramRollup
    }
    let document = Document(
      generated: RecordTime.iso(ms: Int64(report.generated.timeIntervalSince1970 * 1000)), from: report.from,
      to: report.to,
      sites: report.sites, program: report.program)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return (try? String(decoding: encoder.encode(document), as: UTF8.self)).map { $0 + "\n" } ?? "{}\n"
  }
}

/// The CSV tables: one row per site and period, event, outage, vehicle, missed departure,
/// and per program event. RFC 4180 quoting; figures as in report.json.
enum ReportTables {
  static func csv(_ report: Report) -> [(String, String)] {
    var periods = CSV([
      "site", "period", "from", "to", "peak_kw", "peak_without_v2x_kw", "building_peak_kw",
      "demand_charge_per_kw_month", "demand_charge_saved", "imported_kwh", "intervals_measured", "intervals_in_span",
      "events", "outages", "departures_met", "departures_missed", "flagged",
    ])
    var events = CSV([
      "site", "period", "event", "source", "start", "end", "mean_delivered_kw", "expected_payment",
      "measured_share", "opted_out", "opt_reason",
    ])
    var outages = CSV([
      "site", "period", "start", "end", "hours", "critical_load_kwh", "critical_unserved_kwh",
      "vehicle_energy_kwh", "could_have_carried_hours",
    ])
    var vehicles = CSV([
      "site", "period", "vehicle", "sessions", "charged_kwh", "discharged_kwh", "throughput_kwh",
      "equivalent_full_cycles",
    ])
    var departures = CSV(["site", "period", "vehicle", "time", "need_kwh", "energy_kwh", "short_kwh", "cause"])
    for s in report.sites {
      for p in s.periods {
        periods.row([
          s.site, p.period, p.from, p.to, n(p.peakKW), n(p.peakWithoutV2XKW), n(p.buildingPeakKW),
          n(p.demandChargePerKWMonth), money(p.demandChargeSaved), n(p.importedKWh), "\(p.intervalsMeasured)",
          "\(p.intervalsInSpan)", "\(p.events.count)", "\(p.outages.count)", "\(p.departuresMet)",
          "\(p.departuresMissed.count)", s.flagged ? "yes" : "no",
        ])
        for e in p.events {
          events.row([
            s.site, p.period, e.id, e.source, e.start, e.end, n(e.meanDeliveredKW), money(e.expectedPayment),
            n(e.measuredShare), e.optedOut ? "yes" : "no", e.optReason ?? "",
          ])
        }
        for o in p.outages {
          outages.row([
            s.site, p.period, o.start, o.end ?? "", n(o.hours), n(o.criticalLoadKWh),
            n(o.criticalUnservedKWh), n(o.vehicleEnergyKWh), o.couldHaveCarriedHours.map(n) ?? "",
          ])
        }
        for v in p.vehicles {
          vehicles.row([
            s.site, p.period, v.vehicle, "\(v.sessions)", n(v.chargedKWh), n(v.dischargedKWh),
            n(v.throughputKWh), v.equivalentFullCycles.map(n) ?? "",
          ])
        }
        for d in p.departuresMissed {
          departures.row([s.site, p.period, d.vehicle, d.time, n(d.needKWh), n(d.energyKWh), n(d.shortKWh), d.cause])
        }
      }
    }
    var program = CSV(["event", "start", "end", "total_kw", "goal_kw", "goal_met", "sites", "flagged_sites"])
    for e in report.program.events {
      program.row([
        e.id, e.start, e.end, n(e.totalKW), n(report.program.goalKW), e.goalMet ? "yes" : "no",
        e.sites.sorted { $0.key < $1.key }.map { "\($0.key)=\(n($0.value))" }.joined(separator: ";"),
        e.flaggedSites.joined(separator: ";"),
      ])
    }
    return [
      ("periods.csv", periods.text), ("events.csv", events.text), ("outages.csv", outages.text),
      ("vehicles.csv", vehicles.text), ("departures.csv", departures.text), ("program_events.csv", program.text),
    ]
  }

  static func n(_ v: Double) -> String { String(Rounded.kW(v)) }
  static func money(_ v: Double) -> String { String(format: "%.2f", v) }

  struct CSV {
    var text: String
    init(_ header: [String]) { text = Self.line(header) }
    mutating func row(_ fields: [String]) { text += Self.line(fields) }
    static func line(_ fields: [String]) -> String {
      fields.map { f in
        f.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" })
          ? "\"" + f.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : f
      }.joined(separator: ",") + "\r\n"
    }
  }
}

import Foundation
import SiteModel

/// A whole report: each site's figures, and the program's roll-up across them.
public struct Report: Sendable {
  public var generated: Date
  public var range: ReportRange
  public var sites: [SiteReport]
  public var program: ProgramRollup
  var charts: [SiteCharts]
  /// The range's local dates (a billing period's on the first site's cycle day).
  public var from: String?
  public var to: String?

  public struct Options: Sendable {
    public var range: ReportRange = .all
    /// The day drawn as stacked power (default: the first event's day, else the peak's).
    public var day: CivilDate?
    /// The program's goal per event across sites, kW.
    public var goalKW = 1000.0
    public init() {}
  }

  /// Reads every source (one after another: memory holds one site's accumulator and the
  /// finished reports) and rolls the sites up. Throws only when a source cannot be opened.
  public static func build(
    sources: [RecordSource], options: Options = Options(), generated: Date = Date()
  ) throws(ReportInputError) -> Report {
    var sites: [SiteReport] = []
    var charts: [SiteCharts] = []
    var events: [[EventReport]] = []
    var cycleDay: Int?
    for source in sources {
      var acc = try SiteAccumulator.read(source, range: options.range)
      cycleDay = cycleDay ?? acc.facts.billingCycleDay
      let result = acc.finish(day: options.day)
      sites.append(result.report)
      charts.append(result.charts)
      events.append(result.events)
    }
    let (from, to) = options.range.describe(billingCycleDay: cycleDay ?? 1)
    return Report(
      generated: generated, range: options.range, sites: sites,
      program: rollup(sites: sites, events: events, goalKW: options.goalKW), charts: charts, from: from, to: to)
  }

  /// Per event id, the sites' deliveries added up (a site that opted out counts with what
  /// it delivered, usually nothing); sites with lost records are named beside each sum.
  static func rollup(sites: [SiteReport], events: [[EventReport]], goalKW: Double) -> ProgramRollup {
    var program = ProgramRollup(goalKW: goalKW)
    var order: [String] = []
    var byID: [String: ProgramRollup.ProgramEvent] = [:]
    for (site, siteEvents) in zip(sites, events) {
      for e in siteEvents {
        if byID[e.id] == nil {
          order.append(e.id)
          byID[e.id] = .init(
            id: e.id, start: e.start, end: e.end, totalKW: 0, sites: [:], goalMet: false, flaggedSites: [])
        }
        byID[e.id]!.sites[site.site] = Rounded.kW(e.meanDeliveredKW)
        byID[e.id]!.totalKW += Rounded.kW(e.meanDeliveredKW)
        if site.flagged { byID[e.id]!.flaggedSites.append(site.site) }
        if e.optedOut {
          program.optedOut.append(.init(site: site.site, event: e.id, reason: e.optReason ?? "no reason given"))
        }
      }
    }
    program.events = order.map { id in
      var e = byID[id]!
      e.totalKW = Rounded.kW(e.totalKW)
      e.goalMet = e.totalKW >= goalKW
      return e
    }
    .sorted { $0.start < $1.start }
    program.flaggedSites = sites.filter(\.flagged).map(\.site)
    return program
  }

  /// Every problem met, for the command's warnings.
  public var problems: [String] { sites.flatMap(\.problems) }
}

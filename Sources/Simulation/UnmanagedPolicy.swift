import Control
import SiteModel

/// The "doing nothing" reference of SCENARIO.md: each vehicle charges at full power from
/// arrival until it holds its departure need, never discharges, and the building is dark in
/// an outage. Scores are measured against it.
public struct UnmanagedPolicy: SitePolicy {
  public let site: SiteDescription
  public init(site: SiteDescription) { self.site = site }

  public mutating func step(_ s: Snapshot) -> Decisions {
    var d = Decisions.idle(chargers: site.chargers.count)
    let h = s.periodSeconds / 3600
    for i in site.chargers.indices {
      guard i < s.chargers.count, let v = s.chargers[i].vehicle else { continue }
      let eta = site.chargers[i].efficiency
      let missing = v.departureNeedKWh - v.energyKWh
      if missing > 0 { d.setpointsKW[i] = min(site.chargers[i].maxChargeKW, missing / (eta * h)) }
    }
    return d
  }
}

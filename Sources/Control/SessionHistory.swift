import SiteModel

/// The charging sessions seen over the past week, kept so the plan can expect the vehicles
/// that are not here yet: a fleet keeps its rhythm, so the session that began on a charger
/// at this time last week is the best guess for this week (as for the building's load).
public struct SessionHistory: Sendable, Hashable, Codable {
  /// One session as it was when the vehicle arrived.
  public struct Session: Sendable, Hashable, Codable {
    public var charger: Int
    public var arrival: Double
    public var departure: Double
    public var arrivalEnergyKWh: Double
    public var needKWh: Double
    public var batteryKWh: Double
    public var floorKWh: Double
  }

  public static let week = 7 * 86_400.0
  public private(set) var sessions: [Session] = []
  private var plugged: [String?] = []

  public init() {}

  /// Notes the vehicles that arrived since the last step, and forgets sessions that began
  /// more than a week and a day ago.
  public mutating func observe(_ s: Snapshot) {
    if plugged.count != s.chargers.count { plugged = Array(repeating: nil, count: s.chargers.count) }
    for (i, reading) in s.chargers.enumerated() {
      let id = reading.vehicle?.vehicleID
      defer { plugged[i] = id }
      guard let v = reading.vehicle, id != plugged[i] else { continue }
      sessions.append(
        Session(
          charger: i, arrival: s.time, departure: v.departureTime, arrivalEnergyKWh: v.energyKWh,
          needKWh: v.departureNeedKWh, batteryKWh: v.batteryKWh, floorKWh: v.reserveFloorKWh))
    }
    if let first = sessions.first, first.arrival < s.time - Self.week - 86_400 {
      sessions.removeAll { $0.arrival < s.time - Self.week - 86_400 }
    }
  }

  /// The sessions expected to begin in `(from, until]`: those that began a week earlier,
  /// moved on by a week.
  public func expected(from: Double, until: Double) -> [Session] {
    sessions.compactMap { old in
      let arrival = old.arrival + Self.week
      guard arrival > from, arrival <= until else { return nil }
      var next = old
      next.arrival = arrival
      next.departure = old.departure + Self.week
      return next
    }
  }
}

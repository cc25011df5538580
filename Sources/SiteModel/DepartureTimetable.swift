/// When a vehicle leaves, by the week: school buses run their routes at fixed times on
/// school days. For a vehicle whose charger does not say when it leaves (no ISO 15118, no
/// NotifyEVChargingNeeds), the next departure on its timetable is its departure.
public struct DepartureTimetable: Sendable, Hashable, Codable {
  public struct Departure: Sendable, Hashable, Codable {
    /// 0 = Sunday ... 6 = Saturday.
    public var weekdays: Set<Int>
    /// Minutes after local midnight.
    public var minuteOfDay: Int

    public init(weekdays: Set<Int>, minuteOfDay: Int) {
      self.weekdays = weekdays
      self.minuteOfDay = minuteOfDay
    }
  }

  public var departures: [Departure]
  /// Days with no service (holidays, snow days): no departure on them.
  public var noServiceDates: Set<CivilDate>

  public init(departures: [Departure], noServiceDates: Set<CivilDate> = []) {
    self.departures = departures
    self.noServiceDates = noServiceDates
  }

  /// How far ahead a departure is looked for.
  public static let horizonDays = 14

  /// The first departure strictly after `local` (site wall-clock time), within two weeks;
  /// nil when the timetable has none then.
  public func next(after local: LocalTime) -> LocalTime? {
    let today = local.dayNumber
    for day in today...(today + Self.horizonDays) {
      let date = CivilDate(dayNumber: day)
      guard !noServiceDates.contains(date) else { continue }
      let weekday = LocalTime(seconds: Double(day) * 86_400).weekday
      let times = departures.filter { $0.weekdays.contains(weekday) }.map(\.minuteOfDay).sorted()
      for minute in times {
        let t = LocalTime(seconds: Double(day) * 86_400 + Double(minute) * 60)
        if t > local { return t }
      }
    }
    return nil
  }

  /// Day names as the configuration writes them.
  public static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
}

import Control
import SiteModel
import Testing

@Suite("Session history: who will be plugged in, from last week's sessions")
struct SessionHistoryTests {
  let site = Fixtures.site()

  func snapshot(at time: Double, _ vehicles: [PluggedVehicle?]) -> Snapshot {
    Fixtures.snapshot(time: time, chargers: vehicles.map { ChargerReading(vehicle: $0) })
  }

  @Test("a session seen last week is expected at the same time this week, once per arrival")
  func expectsLastWeeksSession() {
    var history = SessionHistory()
    let bus = Fixtures.vehicle(energy: 30, departure: 10 * 3600, need: 90)
    // Plugged from 2 h to 10 h on C1, seen every minute: one session, not 480.
    for minute in 0..<(12 * 60) {
      let t = Double(minute) * 60
      history.observe(snapshot(at: t, [t >= 2 * 3600 && t < 10 * 3600 ? bus : nil, nil]))
    }
    #expect(history.sessions.count == 1)
    let week = SessionHistory.week
    let next = history.expected(from: week, until: week + 86_400)
    #expect(next.count == 1)
    #expect(next.first?.arrival == week + 2 * 3600)
    #expect(next.first?.departure == week + 10 * 3600)
    #expect(next.first?.needKWh == 90)
    #expect(next.first?.arrivalEnergyKWh == 30)
    #expect(next.first?.charger == 0)
    // Nothing is expected outside the window asked about.
    #expect(history.expected(from: week + 3 * 3600, until: week + 86_400).isEmpty)
  }

  @Test("a vehicle that changes charger, or a new vehicle on the same charger, is a new session")
  func newSessions() {
    var history = SessionHistory()
    let bus = Fixtures.vehicle(energy: 30, departure: 20 * 3600, need: 90)
    let car = Fixtures.vehicle("CAR", battery: 62, reserve: 8, energy: 10, departure: 20 * 3600, need: 30)
    history.observe(snapshot(at: 0, [bus, nil]))
    history.observe(snapshot(at: 60, [car, bus]))
    history.observe(snapshot(at: 120, [car, bus]))
    #expect(history.sessions.map(\.charger) == [0, 0, 1])
  }

  @Test("sessions older than a week and a day are forgotten")
  func forgetsOldSessions() {
    var history = SessionHistory()
    let bus = Fixtures.vehicle(energy: 30, departure: 3600, need: 90)
    history.observe(snapshot(at: 0, [bus, nil]))
    history.observe(snapshot(at: 60, [nil, nil]))
    history.observe(snapshot(at: SessionHistory.week + 86_400 + 120, [nil, nil]))
    #expect(history.sessions.isEmpty)
  }
}

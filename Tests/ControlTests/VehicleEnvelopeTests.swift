import Control
import SiteModel
import Testing

@Suite("Vehicle envelope: how far a vehicle may charge or discharge")
struct VehicleEnvelopeTests {
  let charger = ChargerSpec(id: "C1", maxChargeKW: 60, maxDischargeKW: 60, efficiency: 0.94, gridForming: true)

  @Test("a vehicle with little time left must charge at full power")
  func lateVehicleMustCharge() {
    // 42 kWh missing, 45 minutes left: after this minute 60 kW * 0.94 * 44 min = 41.4 kWh
    // can still go in, so this minute must carry the rest at about 41 kW.
    let v = Fixtures.vehicle(energy: 30, departure: 2700, need: 72)
    let env = VehicleEnvelope(
      vehicle: v, charger: charger, time: 0, periodSeconds: 60, margins: .physical, floorKWh: 20)
    #expect(env.mustChargeKW > 40)
    #expect(env.maxDischargeKW == 0)
  }

  @Test("a vehicle with a long stay need not charge yet, and may lend down to its reserve")
  func earlyVehicleMayDischarge() {
    let v = Fixtures.vehicle(energy: 100, departure: 12 * 3600, need: 70)
    let env = VehicleEnvelope(
      vehicle: v, charger: charger, time: 0, periodSeconds: 60, margins: .physical, floorKWh: 20)
    #expect(env.mustChargeKW == 0)
    #expect(env.maxDischargeKW == 60)
    // One minute from the floor: only what lies above it.
    let low = Fixtures.vehicle(energy: 20.5, departure: 12 * 3600, need: 70)
    let lowEnv = VehicleEnvelope(
      vehicle: low, charger: charger, time: 0, periodSeconds: 60, margins: .physical, floorKWh: 20)
    #expect(abs(lowEnv.maxDischargeKW - 0.5 * 0.94 * 60) < 1e-9)
  }

  @Test("discharge never goes below what can still be recharged by departure")
  func dischargeKeepsDepartureReachable() {
    // 2 h left at 60 kW * 0.94: up to 112.8 kWh can still go in, so a 150 kWh need keeps
    // at least 37.2 kWh in the battery.
    let v = Fixtures.vehicle(energy: 40, departure: 7200, need: 150)
    let env = VehicleEnvelope(
      vehicle: v, charger: charger, time: 0, periodSeconds: 60, margins: .physical, floorKWh: 0)
    let afterStep = 40 - env.maxDischargeKW / 60 / 0.94
    #expect(afterStep + 60 * 0.94 * (7200 - 60) / 3600 >= 150 - 1e-9)
  }

  @Test("a full battery cannot charge")
  func fullBattery() {
    let v = Fixtures.vehicle(energy: 155, departure: 7200, need: 100)
    let env = VehicleEnvelope(
      vehicle: v, charger: charger, time: 0, periodSeconds: 60, margins: .physical, floorKWh: 20)
    #expect(env.maxChargeKW == 0)
  }
}

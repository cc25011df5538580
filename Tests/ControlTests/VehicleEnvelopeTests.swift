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

  @Test("ride-through: a need out of reach after a 4 h stop is charged at full rate now")
  func rideThroughChargesAtFullRate() {
    // 80 kWh missing, 5 h left. Without the rule the next 5 h at 56.4 kWh/h leave it free
    // to wait; if charging may stop 4 h (and the reclosing minute), only 58 minutes of
    // charging are sure: 54.5 kWh, short of 80, so it charges at full power now.
    let v = Fixtures.vehicle(energy: 40, departure: 5 * 3600, need: 120)
    let ride = VehicleEnvelope.Margins(
      departureMarginSeconds: 0, chargeRateFraction: 1, shavingRechargeFraction: 0, rideThroughSeconds: 4 * 3600)
    let without = VehicleEnvelope(
      vehicle: v, charger: charger, time: 0, periodSeconds: 60, margins: .physical, floorKWh: 20)
    let with = VehicleEnvelope(vehicle: v, charger: charger, time: 0, periodSeconds: 60, margins: ride, floorKWh: 20)
    #expect(without.mustChargeKW == 0 && without.maxDischargeKW > 0)
    #expect(with.mustChargeKW == 60 && with.maxDischargeKW == 0)
    // Its pace aims at the need 4 h before departure: all of it within the first hour.
    #expect(with.paceKW == 60)
  }

  @Test("ride-through: a vehicle lends only what it could still recharge after a 4 h stop")
  func rideThroughLimitsDischarge() {
    let ride = VehicleEnvelope.Margins(
      departureMarginSeconds: 0, chargeRateFraction: 1, shavingRechargeFraction: 0, rideThroughSeconds: 4 * 3600)
    // 8 h left: after the step, a 4 h stop and the minute that recloses, 3 h 58 min of
    // charging (223.7 kWh) are sure, so it may lend down to its reserve.
    let long = VehicleEnvelope(
      vehicle: Fixtures.vehicle(energy: 110, departure: 8 * 3600, need: 120), charger: charger, time: 0,
      periodSeconds: 60, margins: ride, floorKWh: 20)
    #expect(long.maxDischargeKW == 60)
    // 4 h 40 min left: 38 minutes of charging are sure (35.7 kWh), so it keeps 84.3 kWh
    // and lends only the 0.7 kWh above that. Without the rule it could lend 60 kW.
    let v = Fixtures.vehicle(energy: 85, departure: 4 * 3600 + 40 * 60, need: 120)
    let short = VehicleEnvelope(vehicle: v, charger: charger, time: 0, periodSeconds: 60, margins: ride, floorKWh: 20)
    let keep = 120 - 60 * 0.94 * (38.0 / 60)
    #expect(short.mustChargeKW == 0)
    #expect(short.maxDischargeKW < 60)
    #expect(abs((85 - short.maxDischargeKW / 60 / 0.94) - keep) < 1e-9)
    let plain = VehicleEnvelope(
      vehicle: v, charger: charger, time: 0, periodSeconds: 60, margins: .physical, floorKWh: 20)
    #expect(plain.maxDischargeKW == 60)
  }

  @Test("a full battery cannot charge")
  func fullBattery() {
    let v = Fixtures.vehicle(energy: 155, departure: 7200, need: 100)
    let env = VehicleEnvelope(
      vehicle: v, charger: charger, time: 0, periodSeconds: 60, margins: .physical, floorKWh: 20)
    #expect(env.maxChargeKW == 0)
  }
}

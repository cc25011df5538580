import Foundation
import SiteModel
import Testing

@testable import Appliance

/// The utility's presence from its voltage and frequency: lost outside IEEE 1547's trip
/// range, back only inside the narrower enter-service range.
@Suite("Utility voltage and frequency")
struct UtilitySenseTests {
  let limits = UtilitySection(detect: .voltage, nominalVolts: 277).limits

  @Test("hysteresis: a sag to 0.9 pu keeps the utility, 0.87 loses it, and it is back only at 0.917 pu and 59.5 Hz")
  func hysteresis() {
    func judge(_ v: Double, _ hz: Double, _ was: Bool) -> Bool {
      UtilitySense.judge(volts: [v * 277], hz: [hz], limits: limits, wasAvailable: was)
    }
    #expect(judge(0.90, 60, true))
    #expect(!judge(0.87, 60, true))
    #expect(!judge(0.90, 60, false), "0.90 pu is not enough to come back")
    #expect(judge(0.95, 60, false))
    #expect(!judge(1.0, 58.4, true), "under-frequency trips")
    #expect(!judge(1.0, 59.4, false), "59.4 Hz is not enough to come back")
    #expect(judge(1.0, 59.6, false))
    #expect(!judge(1.06, 60, false), "over 1.05 pu is not back")
    #expect(
      !UtilitySense.judge(volts: [277, 277, 200], hz: [60], limits: limits, wasAvailable: true),
      "one phase down is a loss")
  }

  func meters() -> MeterInputs {
    MeterInputs(meters: [
      MeterSpec(id: "va", role: .utilityVoltage, topic: "m/va", unit: .volt),
      MeterSpec(id: "hz", role: .utilityFrequency, topic: "m/hz", unit: .hertz),
    ])
  }

  func snapshot(contact: Bool) -> Snapshot {
    Snapshot(
      time: 0, localTime: LocalTime(seconds: 0), periodSeconds: 1, buildingDemandKW: 100, utilityAvailable: contact,
      chargers: [])
  }

  @Test("voltage detection: the meters decide; with both, either one can say lost")
  func overlay() {
    let m = meters()
    let voltage = UtilitySense(section: UtilitySection(detect: .voltage, nominalVolts: 277), meters: m)
    let both = UtilitySense(section: UtilitySection(detect: .both, nominalVolts: 277), meters: m)
    m.ingest(topic: "m/va", payload: Array("276.5".utf8))
    m.ingest(topic: "m/hz", payload: Array("60.01".utf8))
    var s = snapshot(contact: false)
    voltage.overlay(&s)
    #expect(s.utilityAvailable, "the meters say it is there; the contact does not count")
    s = snapshot(contact: false)
    both.overlay(&s)
    #expect(!s.utilityAvailable, "with both, a contact that says lost wins")
    m.ingest(topic: "m/va", payload: Array("120".utf8))
    s = snapshot(contact: true)
    both.overlay(&s)
    #expect(!s.utilityAvailable, "with both, a voltage that says lost wins")
    s = snapshot(contact: true)
    voltage.overlay(&s)
    #expect(!s.utilityAvailable)
  }

  @Test("a voltage meter that goes quiet leaves the last verdict, and marks the inputs stale")
  func staleKeepsVerdict() {
    let m = MeterInputs(meters: [
      MeterSpec(id: "va", role: .utilityVoltage, topic: "m/va", unit: .volt, staleAfterSeconds: 0.5)
    ])
    let sense = UtilitySense(section: UtilitySection(detect: .voltage, nominalVolts: 277), meters: m)
    m.ingest(topic: "m/va", payload: Array("100".utf8), at: .now - .seconds(5))
    var s = snapshot(contact: true)
    sense.overlay(&s)
    #expect(s.utilityAvailable, "a stale reading must not decide")
    m.overlay(&s)
    #expect(!s.inputsFresh)
  }

  @Test("a voltage meter must read volts, and voltage detection needs a nominal and a meter")
  func configuration() throws {
    let tests = ConfigurationTests()
    let base = try tests.exampleText()
    let mqtt = "mqtt:\n  host: 127.0.0.1\n"
    let meter = "meters:\n  - {id: va, role: utility_voltage, topic: m/va, unit: V}\n"
    var e = try tests.failure(base + mqtt + meter + "utility:\n  detect: voltage\n")
    #expect(e.description.contains("utility.nominal_volts"), "\(e)")
    e = try tests.failure(base + mqtt + "utility:\n  detect: both\n  nominal_volts: 277\n")
    #expect(e.description.contains("utility_voltage"), "\(e)")
    e = try tests.failure(
      base + mqtt + meter.replacingOccurrences(of: "unit: V", with: "unit: kW")
        + "utility:\n  detect: voltage\n  nominal_volts: 277\n")
    #expect(e.description.contains("meters[0].unit"), "\(e)")
    let good = try tests.load(base + mqtt + meter + "utility:\n  detect: voltage\n  nominal_volts: 277\n")
    #expect(good.configuration.utility?.detect == .voltage)
  }
}

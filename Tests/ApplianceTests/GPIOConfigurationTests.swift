import Foundation
import GPIO
import SiteModel
import Testing

@testable import Appliance

/// The `gpio:` section: the town hall's wiring loads, and each kind of mistake an
/// electrician could make in it is named with its key.
extension ConfigurationTests {
  func townhallText() throws -> String {
    let text = try String(contentsOfFile: "config/example-townhall.yaml", encoding: .utf8)
    return text.replacingOccurrences(of: "../scenarios", with: FileManager.default.currentDirectoryPath + "/scenarios")
  }

  @Test("the town hall's pins load, and its shed groups reach the site in restore order")
  func townhallPins() throws {
    let c = try load(try townhallText()).configuration
    let gpio = try #require(c.gpio)
    #expect(gpio.backend == .simulated)
    #expect(gpio.pins.filter { !$0.output }.count == 4)
    #expect(gpio.pins.filter(\.output).count == 4)  // the transfer command and three relays
    #expect(c.site.sheddableLoads.map(\.id) == ["offices-lighting", "council-chamber-hvac", "garage-heaters"])
    #expect(c.site.restoredLoadKW(groups: 2) == 37)
    #expect(gpio.inputs.emergencyStop?.activeLow == true)
    #expect(gpio.request(gpio.inputs.utilityAvailable!).chip == "pinctrl-bcm2711")
  }

  @Test(
    "mistakes in the gpio: section name their key",
    arguments: [
      ("backend: simulated", "backend: wiringpi", "gpio.backend", "libgpiod, simulated"),
      (
        "switch_at_island: {line: GPIO23}", "switch_at_island: {line: GPIO22}", "gpio.inputs.switch_at_utility",
        "already used"
      ),
      (
        "- {id: garage-heaters, line: GPIO16", "- {id: offices-lighting, line: GPIO16", "gpio.load_shed[2].id",
        "used twice"
      ),
      (
        "utility_available: {line: GPIO17, debounce_ms: 20}", "utility_available: {line: GPIO17, debounce_ms: -5}",
        "gpio.inputs.utility_available.debounce_ms", "0 to 10000"
      ),
      ("  chip: pinctrl-bcm2711 ", "  chip: null ", "gpio.inputs.utility_available.line", "needs a chip"),
    ])
  func gpioMistakes(change: (String, String, String, String)) throws {
    var text = try townhallText()
    #expect(text.contains(change.0), "the example no longer has \(change.0)")
    text = text.replacingOccurrences(of: change.0, with: change.1)
    if change.1 == "  chip: null " {
      // Lines by number need a chip.
      text = text.replacingOccurrences(of: "{line: GPIO17, debounce_ms: 20}", with: "{line: 17}")
    }
    let e = try failure(text)
    #expect(e.description.contains(change.2), "\(e)")
    if !change.3.isEmpty { #expect(e.description.contains(change.3), "\(e)") }
  }

  @Test("a pulse meter needs a positive energy per pulse, and the utility meter is read once")
  func pulseMeterMistakes() throws {
    let base = try townhallText().replacingOccurrences(
      of: "  outputs:\n    transfer_to_island",
      with: "  pulse_meter: {line: GPIO25, kwh_per_pulse: 0}\n  outputs:\n    transfer_to_island")
    let e = try failure(base)
    #expect(e.description.contains("gpio.pulse_meter.kwh_per_pulse"), "\(e)")
    let good = base.replacingOccurrences(of: "kwh_per_pulse: 0}", with: "kwh_per_pulse: 0.1}")
    #expect(try load(good).configuration.gpio?.pulseMeter?.kWhPerPulse == 0.1)
  }

  @Test("a switch commanded over GPIO must report its position")
  func commandWithoutContacts() throws {
    let text = try townhallText()
      .replacingOccurrences(
        of: "    switch_at_utility: {line: GPIO22}                     # position contacts\n", with: ""
      )
      .replacingOccurrences(of: "    switch_at_island: {line: GPIO23}\n", with: "")
    let e = try failure(text)
    #expect(e.description.contains("position contacts"), "\(e)")
  }
}

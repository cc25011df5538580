import GPIO
import SiteModel

/// The wires between a simulated building and simulated pins: the plant's utility and
/// transfer switch drive the contacts the appliance reads, so the demo runs the outage
/// sequence through the same GPIO path (debounce, urgent wake-ups, outputs) as a site.
///
/// It sits in the overlays before `FieldIO`: it sees the plant's truth in the snapshot,
/// sets the pins, and `FieldIO` then puts what the pins say in its place. (The plant's
/// switch follows the controller's decisions directly; the command pins are driven all
/// the same and show on the panel.)
public final class SimulatedWiring: SnapshotOverlay {
  private let gpio: SimulatedGPIO
  private let section: GPIOSection

  public init(gpio: SimulatedGPIO, section: GPIOSection) {
    self.gpio = gpio
    self.section = section
    // At rest: utility present, switch on the utility, emergency stop released.
    set(section.inputs.utilityAvailable, true)
    set(section.inputs.switchAtUtility, true)
    set(section.inputs.switchAtIsland, false)
    set(section.inputs.emergencyStop, false)
  }

  public func overlay(_ s: inout Snapshot) {
    set(section.inputs.utilityAvailable, s.utilityAvailable)
    set(section.inputs.switchAtUtility, s.transferSwitch == .utility)
    set(section.inputs.switchAtIsland, s.transferSwitch == .island)
  }

  /// Drives a pin to a logical level, as its wiring (active-low or not) puts it on the wire.
  private func set(_ pin: GPIOSection.Pin?, _ active: Bool) {
    guard let pin else { return }
    let high = active != (pin.activeLow ?? false)
    switch pin.line {
    case .name(let name): gpio.drive(line: name, high: high)
    case .offset(let offset): gpio.drive(chip: pin.chip ?? section.chip ?? "gpiochip0", offset: offset, high: high)
    }
  }
}

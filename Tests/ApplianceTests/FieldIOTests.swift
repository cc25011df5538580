import Foundation
import GPIO
import Logging
import SiteModel
import Testing

@testable import Appliance

/// FieldIO on its own: what a pin that cannot be had says, the pulse meter in the
/// snapshot, the emergency stop's first edge.
@Suite("Field I/O over GPIO")
struct FieldIOTests {
  static var quiet: Logger {
    var l = Logger(label: "field-io-test")
    l.logLevel = .critical
    return l
  }

  func snapshot(chargerKW: Double = 0) -> Snapshot {
    Snapshot(
      time: 0, localTime: LocalTime(seconds: 0), periodSeconds: 1, buildingDemandKW: 0,
      chargers: [ChargerReading(measuredKW: chargerKW)])
  }

  @Test("no GPIO chip: the daemon's error names the configuration key, the chip and what to do")
  func noChip() throws {
    let dir = NSTemporaryDirectory() + "mge-nochip-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var error: FieldError?
    do {
      _ = try FieldIO(
        section: FieldBench.pins, backend: LibgpiodBackend(devicePrefix: dir), site: FieldBench.site(),
        logger: Self.quiet)
    } catch let e { error = e }
    let e = try #require(error, "FieldIO came up without a chip")
    #expect(e.key == "gpio.inputs.utility_available")
    #expect(e.error.kind == .noChip)
    #expect(e.description.contains("gpiochip0"))
    #expect(e.description.contains("gpio-check"))
  }

  @Test("a line another program holds is refused as busy, naming it; lines already taken are given back")
  func busyLine() throws {
    let gpio = SimulatedGPIO.raspberryPi(manualClock: true)
    gpio.reserve(line: "GPIO5", by: "old-ats-script")
    var error: FieldError?
    do {
      _ = try FieldIO(section: FieldBench.pins, backend: gpio, site: FieldBench.site(), logger: Self.quiet)
    } catch let e { error = e }
    let e = try #require(error)
    #expect(e.key == "gpio.outputs.transfer_to_island")
    #expect(e.error.kind == .busy)
    #expect(e.description.contains("old-ats-script"))
    // The inputs requested before the failure were released: nothing else is held.
    let used = try gpio.chips()[0].lines.filter(\.used).map(\.offset)
    #expect(used == [5], "still held: \(used)")
  }

  @Test("the utility meter's pulses give the building's load; silence on the utility is stale, on the island is not")
  func pulseMeter() throws {
    let gpio = SimulatedGPIO.raspberryPi(manualClock: true)
    var pins = GPIOSection(backend: .simulated, chip: "gpiochip0")
    pins.inputs.utilityAvailable = .init(line: .name("GPIO17"), debounceMs: 0)
    var meter = GPIOSection.PulseMeterPin(line: .name("GPIO25"), kWhPerPulse: 0.1)
    meter.staleAfterSeconds = 30
    pins.pulseMeter = meter
    gpio.drive(line: "GPIO17", high: true)
    let field = try FieldIO(section: pins, backend: gpio, site: FieldBench.site(), logger: Self.quiet)
    // 0.1 kWh every 1.2 s is 300 kW at the meter; 40 kW of it is the charger.
    for _ in 0..<10 {
      gpio.advance(nanoseconds: 1_150_000_000)
      gpio.drive(line: "GPIO25", high: true)
      gpio.advance(nanoseconds: 50_000_000)
      gpio.drive(line: "GPIO25", high: false)  // Form A: the release is not a pulse
      field.pump()
    }
    var s = snapshot(chargerKW: 40)
    field.overlay(&s)
    #expect(abs(s.buildingDemandKW - 260) < 0.5, "\(s.buildingDemandKW)")
    #expect(s.inputsFresh)
    // A bounce 5 ms after a pulse is not a pulse.
    gpio.advance(nanoseconds: 1_150_000_000)
    gpio.drive(line: "GPIO25", high: true)
    gpio.advance(nanoseconds: 1_000_000)
    gpio.drive(line: "GPIO25", high: false)
    gpio.advance(nanoseconds: 4_000_000)
    gpio.drive(line: "GPIO25", high: true)
    field.pump()
    #expect(field.view.pulsesRejected == 1)
    #expect(field.view.pulses == 11)
    // A minute of silence on the utility: stale, no discharge.
    gpio.advance(nanoseconds: 60_000_000_000)
    s = snapshot()
    field.overlay(&s)
    #expect(!s.inputsFresh)
    #expect(s.buildingDemandKW < 10, "the load should fall with the silence: \(s.buildingDemandKW)")
    // On the island the meter sees nothing by design: not stale.
    gpio.drive(line: "GPIO17", high: false)
    field.pump()
    s = snapshot()
    field.overlay(&s)
    #expect(!s.utilityAvailable)
    #expect(s.inputsFresh)
  }

  @Test("an emergency stop acts on its first edge, even with a debounce; release waits for it")
  func emergencyStopFirstEdge() throws {
    let gpio = SimulatedGPIO.raspberryPi(manualClock: true)
    var pins = GPIOSection(backend: .simulated, chip: "gpiochip0")
    pins.inputs.emergencyStop = .init(line: .name("GPIO24"), activeLow: true, debounceMs: 50)
    gpio.drive(line: "GPIO24", high: true)
    let field = try FieldIO(section: pins, backend: gpio, site: FieldBench.site(), logger: Self.quiet)
    gpio.drive(line: "GPIO24", high: false)  // pressed
    field.pump()
    var s = snapshot()
    field.overlay(&s)
    #expect(s.emergencyStop, "the press must count at once")
    gpio.advance(nanoseconds: 100_000_000)
    gpio.drive(line: "GPIO24", high: true)  // released
    gpio.advance(nanoseconds: 10_000_000)
    field.pump()
    s = snapshot()
    field.overlay(&s)
    #expect(s.emergencyStop, "a release shorter than the debounce must not count yet")
    gpio.advance(nanoseconds: 60_000_000)
    field.pump()
    s = snapshot()
    field.overlay(&s)
    #expect(!s.emergencyStop)
  }

  @Test("reader threads: an edge wakes the loop; a lost edge is found by reading the line")
  func readerThreads() async throws {
    let gpio = SimulatedGPIO.raspberryPi()
    var pins = GPIOSection(backend: .simulated, chip: "gpiochip0")
    pins.inputs.utilityAvailable = .init(line: .name("GPIO17"), debounceMs: 20)
    gpio.drive(line: "GPIO17", high: true)
    let trigger = StepTrigger()
    let field = try FieldIO(
      section: pins, backend: gpio, site: FieldBench.site(), trigger: trigger, logger: Self.quiet)
    field.start()
    defer { field.stop() }
    _ = trigger.takePending()
    gpio.drive(line: "GPIO17", high: false)
    let woke = await trigger.wait(until: .now + .seconds(2))
    #expect(woke, "the drop did not wake the loop")
    var s = snapshot()
    field.overlay(&s)
    #expect(s.utilityLossPending || !s.utilityAvailable)
    // The return's event is lost (a full kernel queue): the reader finds the level itself.
    gpio.drive(line: "GPIO17", high: true, losingEdge: true)
    let deadline = ContinuousClock.now + .seconds(3)
    repeat {
      try await Task.sleep(for: .milliseconds(20))
      s = snapshot()
      s.utilityAvailable = false
      field.overlay(&s)
    } while !s.utilityAvailable && ContinuousClock.now < deadline
    #expect(s.utilityAvailable, "the lost return was never noticed")
  }
}

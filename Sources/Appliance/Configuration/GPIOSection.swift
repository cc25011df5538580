import Foundation
import GPIO
import SiteFiles
import SiteModel

/// The `gpio:` section: which pins carry the transfer switch's contacts and command, the
/// emergency stop, the utility meter's pulses and the load-shed relays. See
/// docs/configuration.md and docs/outage-sequence.md.
public struct GPIOSection: Codable, Sendable, Hashable {
  public enum Backend: String, Codable, Sendable, CaseIterable {
    /// The kernel's GPIO character device through libgpiod (the site computer).
    case libgpiod
    /// In-memory pins: the demo, tests, and a site computer before it is wired.
    case simulated
    /// The building emulator's pins, served by another process over a Unix socket
    /// (`emulator_socket`; Tests/Integration/gpio_line_server.py). A site swaps it for real
    /// pins by setting `backend: libgpiod`, chip and lines unchanged.
    case emulated
  }

  /// A line by offset (`17`) or name (`GPIO17`).
  public enum LineRef: Codable, Sendable, Hashable, CustomStringConvertible {
    case offset(Int)
    case name(String)

    public init(from decoder: any Decoder) throws {
      let c = try decoder.singleValueContainer()
      if let n = try? c.decode(Int.self) {
        self = .offset(n)
      } else {
        self = .name(try c.decode(String.self))
      }
    }

    public func encode(to encoder: any Encoder) throws {
      var c = encoder.singleValueContainer()
      switch self {
      case .offset(let n): try c.encode(n)
      case .name(let s): try c.encode(s)
      }
    }

    public var description: String {
      switch self {
      case .offset(let n): "\(n)"
      case .name(let s): s
      }
    }
  }

  /// One pin: where it is and how it is wired.
  public struct Pin: Codable, Sendable, Hashable {
    public var line: LineRef
    /// Overrides the section's chip for this pin.
    public var chip: String?
    /// The signal is true when the pin is low (a contact to ground with a pull-up).
    public var activeLow: Bool?
    public var bias: LineRequest.Bias?
    /// Software debounce: a change counts once it has held this long (inputs only).
    public var debounceMs: Double?

    public init(
      line: LineRef, chip: String? = nil, activeLow: Bool? = nil, bias: LineRequest.Bias? = nil,
      debounceMs: Double? = nil
    ) {
      self.line = line
      self.chip = chip
      self.activeLow = activeLow
      self.bias = bias
      self.debounceMs = debounceMs
    }

    enum CodingKeys: String, CodingKey {
      case line, chip, bias
      case activeLow = "active_low"
      case debounceMs = "debounce_ms"
    }
  }

  public struct Inputs: Codable, Sendable, Hashable {
    /// The transfer switch's "utility available" contact (ASCO 18G style): the utility is
    /// present and within the switch's pickup settings.
    public var utilityAvailable: Pin?
    /// The switch's position contacts: closed to the utility, closed to the island side.
    public var switchAtUtility: Pin?
    public var switchAtIsland: Pin?
    /// The emergency stop (usually active-low: a normally-closed mushroom button).
    public var emergencyStop: Pin?

    public init(
      utilityAvailable: Pin? = nil, switchAtUtility: Pin? = nil, switchAtIsland: Pin? = nil, emergencyStop: Pin? = nil
    ) {
      self.utilityAvailable = utilityAvailable
      self.switchAtUtility = switchAtUtility
      self.switchAtIsland = switchAtIsland
      self.emergencyStop = emergencyStop
    }

    enum CodingKeys: String, CodingKey {
      case utilityAvailable = "utility_available"
      case switchAtUtility = "switch_at_utility"
      case switchAtIsland = "switch_at_island"
      case emergencyStop = "emergency_stop"
    }
  }

  public struct Outputs: Codable, Sendable, Hashable {
    /// Held active while the building should be off the utility.
    public var transferToIsland: Pin
    /// Held active while the building should be on the utility (for switches with two
    /// command inputs).
    public var transferToUtility: Pin?

    public init(transferToIsland: Pin, transferToUtility: Pin? = nil) {
      self.transferToIsland = transferToIsland
      self.transferToUtility = transferToUtility
    }

    enum CodingKeys: String, CodingKey {
      case transferToIsland = "transfer_to_island"
      case transferToUtility = "transfer_to_utility"
    }
  }

  /// The utility meter's KYZ output.
  public struct PulseMeterPin: Codable, Sendable, Hashable {
    public var line: LineRef
    public var chip: String?
    public var activeLow: Bool?
    public var bias: LineRequest.Bias?
    public var kWhPerPulse: Double
    public var form: PulseMeter.Form?
    /// The highest believable import, kW (default: 1.5× the service limit).
    public var maxKW: Double?
    /// No pulse this long while on the utility raises an alarm and makes inputs stale.
    public var staleAfterSeconds: Double?

    public init(line: LineRef, kWhPerPulse: Double, form: PulseMeter.Form? = nil) {
      self.line = line
      self.kWhPerPulse = kWhPerPulse
      self.form = form
    }

    enum CodingKeys: String, CodingKey {
      case line, chip, bias, form
      case activeLow = "active_low"
      case kWhPerPulse = "kwh_per_pulse"
      case maxKW = "max_kw"
      case staleAfterSeconds = "stale_after_seconds"
    }
  }

  /// One load-shed relay: active sheds the group.
  public struct ShedRelay: Codable, Sendable, Hashable {
    public var id: String
    public var line: LineRef
    public var chip: String?
    public var activeLow: Bool?
    /// 1 comes back first.
    public var priority: Int
    public var kW: Double

    public init(id: String, line: LineRef, priority: Int, kW: Double) {
      self.id = id
      self.line = line
      self.priority = priority
      self.kW = kW
    }

    enum CodingKeys: String, CodingKey {
      case id, line, chip, priority
      case activeLow = "active_low"
      case kW = "kw"
    }
  }

  public var backend: Backend
  /// The chip for every pin that names none: "gpiochip0", "/dev/gpiochip0", "0" or a
  /// label like "pinctrl-bcm2711". Nil: lines are found by name on any chip.
  public var chip: String?
  public var inputs: Inputs
  public var outputs: Outputs?
  public var pulseMeter: PulseMeterPin?
  public var loadShed: [ShedRelay]
  /// The building emulator's line server socket (backend `emulated` only). A relative path
  /// is relative to the configuration's folder, and resolved against it once validated.
  public var emulatorSocket: String?

  public init(
    backend: Backend, chip: String? = nil, inputs: Inputs = Inputs(), outputs: Outputs? = nil,
    pulseMeter: PulseMeterPin? = nil, loadShed: [ShedRelay] = [], emulatorSocket: String? = nil
  ) {
    self.backend = backend
    self.chip = chip
    self.inputs = inputs
    self.outputs = outputs
    self.pulseMeter = pulseMeter
    self.loadShed = loadShed
    self.emulatorSocket = emulatorSocket
  }

  enum CodingKeys: String, CodingKey {
    case backend, chip, inputs, outputs
    case pulseMeter = "pulse_meter"
    case loadShed = "load_shed"
    case emulatorSocket = "emulator_socket"
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let text = try c.decode(String.self, forKey: .backend)
    guard let backend = Backend(rawValue: text) else {
      throw DecodingError.dataCorruptedError(
        forKey: .backend, in: c,
        debugDescription: "'\(text)' is not one of \(Backend.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    self.backend = backend
    chip = try c.decodeIfPresent(String.self, forKey: .chip)
    inputs = try c.decodeIfPresent(Inputs.self, forKey: .inputs) ?? Inputs()
    outputs = try c.decodeIfPresent(Outputs.self, forKey: .outputs)
    pulseMeter = try c.decodeIfPresent(PulseMeterPin.self, forKey: .pulseMeter)
    loadShed = try c.decodeIfPresent([ShedRelay].self, forKey: .loadShed) ?? []
    emulatorSocket = try c.decodeIfPresent(String.self, forKey: .emulatorSocket)
  }

  /// Every pin with its key path in the file, for checks and `gpio-check`.
  public var pins: [(key: [String], pin: Pin, output: Bool)] {
    var all: [([String], Pin, Bool)] = []
    let named: [(String, Pin?)] = [
      ("utility_available", inputs.utilityAvailable), ("switch_at_utility", inputs.switchAtUtility),
      ("switch_at_island", inputs.switchAtIsland), ("emergency_stop", inputs.emergencyStop),
    ]
    for (key, pin) in named { if let pin { all.append((["gpio", "inputs", key], pin, false)) } }
    if let p = pulseMeter {
      all.append(
        (["gpio", "pulse_meter"], Pin(line: p.line, chip: p.chip, activeLow: p.activeLow, bias: p.bias), false))
    }
    if let o = outputs {
      all.append((["gpio", "outputs", "transfer_to_island"], o.transferToIsland, true))
      if let u = o.transferToUtility { all.append((["gpio", "outputs", "transfer_to_utility"], u, true)) }
    }
    for (i, r) in loadShed.enumerated() {
      all.append((["gpio", "load_shed", "\(i)"], Pin(line: r.line, chip: r.chip, activeLow: r.activeLow), true))
    }
    return all
  }

  /// The request for a pin, with the section's chip when it names none.
  public func request(_ pin: Pin) -> LineRequest {
    let line: LineRequest.Address =
      switch pin.line {
      case .offset(let n): .offset(n)
      case .name(let s): .name(s)
      }
    return LineRequest(
      chip: pin.chip ?? chip, line: line, activeLow: pin.activeLow ?? false, bias: pin.bias ?? .asIs)
  }

  /// The shed groups as the controller knows them.
  public var sheddableLoads: [SheddableLoad] {
    loadShed.map { SheddableLoad(id: $0.id, priority: $0.priority, kW: $0.kW) }
  }

  func validated(document: StructuredDocument) throws(InputError) -> GPIOSection {
    var seen: [String: String] = [:]
    for (key, pin, _) in pins {
      let where_ = "\(pin.chip ?? chip ?? "*")/\(pin.line)"
      if case .offset(let n) = pin.line, n < 0 { throw document.error(at: key + ["line"], "must be 0 or more") }
      if case .offset = pin.line, pin.chip ?? chip == nil {
        throw document.error(at: key + ["line"], "a line by number needs a chip (gpio.chip or the pin's chip)")
      }
      if let other = seen[where_] {
        throw document.error(at: key + ["line"], "line \(pin.line) is already used by \(other)")
      }
      seen[where_] = key.joined(separator: ".")
      if let d = pin.debounceMs, !(d >= 0 && d <= 10_000) {
        throw document.error(at: key + ["debounce_ms"], "must be 0 to 10000")
      }
    }
    if inputs.switchAtUtility == nil && inputs.switchAtIsland == nil && outputs != nil {
      throw document.error(
        at: ["gpio", "inputs"],
        "a transfer switch commanded over GPIO needs its position contacts (switch_at_utility and/or switch_at_island)")
    }
    if let p = pulseMeter {
      guard p.kWhPerPulse > 0 && p.kWhPerPulse.isFinite else {
        throw document.error(at: ["gpio", "pulse_meter", "kwh_per_pulse"], "must be above 0 (the meter's Ke)")
      }
      if let m = p.maxKW, !(m > 0) { throw document.error(at: ["gpio", "pulse_meter", "max_kw"], "must be above 0") }
      if let s = p.staleAfterSeconds, !(s >= 1) {
        throw document.error(at: ["gpio", "pulse_meter", "stale_after_seconds"], "must be 1 or more")
      }
    }
    var ids = Set<String>()
    for (i, r) in loadShed.enumerated() {
      guard !r.id.isEmpty, ids.insert(r.id).inserted else {
        throw document.error(at: ["gpio", "load_shed", "\(i)", "id"], "'\(r.id)' is empty or used twice")
      }
      guard r.kW >= 0 && r.kW.isFinite else {
        throw document.error(at: ["gpio", "load_shed", "\(i)", "kw"], "must be 0 or more")
      }
    }
    if !loadShed.isEmpty && outputs == nil && inputs.utilityAvailable == nil {
      throw document.error(at: ["gpio", "load_shed"], "shed relays without an outage input cannot be used")
    }
    var s = self
    switch (backend, emulatorSocket) {
    case (.emulated, nil):
      throw document.error(
        at: ["gpio", "emulator_socket"], "missing: the emulated backend needs the building emulator's socket")
    case (.emulated, let socket?):
      // Relative to the configuration's folder, as the other sections' paths.
      guard !socket.isEmpty else {
        throw document.error(at: ["gpio", "emulator_socket"], "must name the building emulator's socket")
      }
      let path = MQTTSection.resolve(socket, base: (document.source as NSString).deletingLastPathComponent)
      guard path.utf8.count <= 107 else {
        throw document.error(
          at: ["gpio", "emulator_socket"], "'\(path)' is too long for a Unix socket's path (at most 107 bytes)")
      }
      s.emulatorSocket = path
    case (_, _?):
      throw document.error(
        at: ["gpio", "emulator_socket"], "only for backend: emulated (this backend is \(backend.rawValue))")
    case (_, nil):
      break
    }
    return s
  }
}

extension GPIOSection {
  /// The backend this section names. `devicePrefix`: where libgpiod looks for
  /// `gpiochip*` (tests point it elsewhere); `simulatedSpeed`: simulated pins keep the pace
  /// of a simulated building run faster than real time.
  public func makeBackend(devicePrefix: String = "/dev", simulatedSpeed: Double = 1) -> any GPIOBackend {
    switch backend {
    case .libgpiod: LibgpiodBackend(devicePrefix: devicePrefix)
    case .simulated: SimulatedGPIO.raspberryPi(timeScale: simulatedSpeed)
    case .emulated: EmulatedGPIO(socketPath: emulatorSocket ?? "")
    }
  }
}

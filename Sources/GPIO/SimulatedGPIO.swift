import Foundation
import Synchronization

/// A GPIO backend with no hardware: chips and lines in memory. Tests and the demo drive its
/// inputs (`drive`) and read its outputs (`level`); it behaves like the kernel's character
/// device where the appliance can tell: a line is held by one request at a time, edges
/// carry timestamps, and closed lines refuse work.
///
/// Time is the process's monotonic clock (times `timeScale`, so that a simulated building
/// running faster than real time has pins that keep its pace) unless `manualClock` is set:
/// then tests move time with `advance`, and edges are stamped with it.
public final class SimulatedGPIO: GPIOBackend, @unchecked Sendable {
  // @unchecked: every field below is guarded by `condition`'s lock, which also wakes
  // waiting readers; NSCondition is not marked Sendable.
  private let condition = NSCondition()
  private var chipTable: [SimChip]
  private var manualNow: UInt64?
  private let timeScale: Double
  private let startedAt: UInt64
  /// Every output write as (chip, offset, logical level, time), oldest first.
  private var writes: [OutputWrite] = []

  public struct OutputWrite: Sendable, Hashable {
    public var chip: String
    public var offset: Int
    public var active: Bool
    public var timestampNanoseconds: UInt64
  }

  struct SimChip {
    var name: String
    var label: String
    var lines: [SimLine]
  }

  struct SimLine {
    var name: String?
    /// Electrical level: true is high.
    var high = false
    var holder: Holder?
    /// Edges waiting for the holder's reader, electrical level after each.
    var pending: [(high: Bool, at: UInt64)] = []
    /// A line the kernel will not give out (say, held by the firmware).
    var reservedBy: String?
  }

  struct Holder {
    var consumer: String
    var output: Bool
    var activeLow: Bool
    var edges: Bool
    var token: Int
  }
  private var nextToken = 1

  public let name = "simulated"

  /// `chips`: name, label and line names (nil for an unnamed line) of each chip.
  public init(
    chips: [(name: String, label: String, lines: [String?])], manualClock: Bool = false, timeScale: Double = 1
  ) {
    chipTable = chips.map { c in SimChip(name: c.name, label: c.label, lines: c.lines.map { SimLine(name: $0) }) }
    manualNow = manualClock ? 1_000_000_000 : nil
    self.timeScale = timeScale > 0 ? timeScale : 1
    startedAt = Self.monotonic()
  }

  /// A Raspberry Pi 4's header chip: gpiochip0, "pinctrl-bcm2711", lines GPIO0…GPIO57.
  public static func raspberryPi(manualClock: Bool = false, timeScale: Double = 1) -> SimulatedGPIO {
    SimulatedGPIO(
      chips: [(name: "gpiochip0", label: "pinctrl-bcm2711", lines: (0..<58).map { "GPIO\($0)" })],
      manualClock: manualClock, timeScale: timeScale)
  }

  private static func monotonic() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
  }

  // MARK: - Driving it (tests, demo)

  /// Sets an input's electrical level; an edge is queued for its reader when it changes.
  /// `at`: the edge's timestamp (default: now). `losingEdge`: the level changes but the
  /// event is lost, as when the kernel's 16-event queue overflows.
  public func drive(chip: String, offset: Int, high: Bool, at: UInt64? = nil, losingEdge: Bool = false) {
    condition.lock()
    defer { condition.unlock() }
    guard let c = chipTable.firstIndex(where: { $0.name == chip }), offset >= 0, offset < chipTable[c].lines.count
    else { return }
    let stamp = at ?? nowLocked()
    if chipTable[c].lines[offset].high != high {
      chipTable[c].lines[offset].high = high
      if chipTable[c].lines[offset].holder?.edges == true && !losingEdge {
        chipTable[c].lines[offset].pending.append((high, stamp))
      }
      condition.broadcast()
    }
  }

  /// Sets an input by its line name.
  public func drive(line name: String, high: Bool, at: UInt64? = nil, losingEdge: Bool = false) {
    guard let (chip, offset) = locate(name) else { return }
    drive(chip: chip, offset: offset, high: high, at: at, losingEdge: losingEdge)
  }

  /// The electrical level of a line (an output's as last written).
  public func isHigh(line name: String) -> Bool {
    guard let (chip, offset) = locate(name) else { return false }
    condition.lock()
    defer { condition.unlock() }
    return chipTable.first { $0.name == chip }!.lines[offset].high
  }

  /// Output writes so far, and clears the list.
  public func takeWrites() -> [OutputWrite] {
    condition.lock()
    defer {
      writes.removeAll()
      condition.unlock()
    }
    return writes
  }

  /// Marks a line as held by another program, as `gpioinfo` would show it.
  public func reserve(line name: String, by consumer: String) {
    guard let (chip, offset) = locate(name) else { return }
    condition.lock()
    defer { condition.unlock() }
    let c = chipTable.firstIndex { $0.name == chip }!
    chipTable[c].lines[offset].reservedBy = consumer
  }

  /// Moves the manual clock on.
  public func advance(nanoseconds: UInt64) {
    condition.lock()
    defer { condition.unlock() }
    if let now = manualNow { manualNow = now + nanoseconds }
  }

  private func locate(_ name: String) -> (String, Int)? {
    condition.lock()
    defer { condition.unlock() }
    for c in chipTable {
      if let o = c.lines.firstIndex(where: { $0.name == name }) { return (c.name, o) }
    }
    return nil
  }

  // MARK: - GPIOBackend

  public func nowNanoseconds() -> UInt64 {
    condition.lock()
    defer { condition.unlock() }
    return nowLocked()
  }

  private func nowLocked() -> UInt64 {
    if let manualNow { return manualNow }
    let real = Self.monotonic()
    guard timeScale != 1 else { return real }
    return startedAt + UInt64(Double(real - startedAt) * timeScale)
  }

  public func chips() throws(GPIOError) -> [ChipInfo] {
    condition.lock()
    defer { condition.unlock() }
    return chipTable.map { c in
      ChipInfo(
        name: c.name, label: c.label, path: "/dev/\(c.name)",
        lines: c.lines.enumerated().map { o, l in
          ChipInfo.Line(
            offset: o, name: l.name, consumer: l.holder?.consumer ?? l.reservedBy,
            used: l.holder != nil || l.reservedBy != nil, isOutput: l.holder?.output ?? false,
            activeLow: l.holder?.activeLow ?? false)
        })
    }
  }

  public func requestInput(_ request: LineRequest, edges: Bool) throws(GPIOError) -> any GPIOInput {
    let (c, o, token) = try claim(request, output: false, edges: edges)
    return Line(gpio: self, chip: c, offset: o, token: token, request: request, where_: describe(c, o))
  }

  public func requestOutput(_ request: LineRequest, initial: Bool) throws(GPIOError) -> any GPIOOutput {
    let (c, o, token) = try claim(request, output: true, edges: false)
    let line = Line(gpio: self, chip: c, offset: o, token: token, request: request, where_: describe(c, o))
    try line.write(initial)
    return line
  }

  private func describe(_ c: Int, _ o: Int) -> String {
    condition.lock()
    defer { condition.unlock() }
    let chip = chipTable[c]
    let name = chip.lines[o].name.map { "\"\($0)\" = " } ?? ""
    return "\(name)line \(o) on \(chip.name) (\(chip.label))"
  }

  private func claim(_ request: LineRequest, output: Bool, edges: Bool) throws(GPIOError) -> (Int, Int, Int) {
    condition.lock()
    defer { condition.unlock() }
    let subject = request.description
    var candidates: [Int]
    if let chip = request.chip {
      candidates = chipTable.indices.filter {
        LineRequest.chip(chip, matchesName: chipTable[$0].name, label: chipTable[$0].label)
      }
      guard !candidates.isEmpty else {
        throw GPIOError(
          .noChip, subject: subject,
          detail:
            "no chip \"\(chip)\"; chips here: \(chipTable.map { "\($0.name) (\($0.label))" }.joined(separator: ", "))"
        )
      }
    } else {
      candidates = Array(chipTable.indices)
    }
    var found: (Int, Int)?
    switch request.line {
    case .offset(let o):
      guard request.chip != nil else {
        throw GPIOError(.noChip, subject: subject, detail: "a line by offset needs a chip")
      }
      let c = candidates[0]
      guard o >= 0 && o < chipTable[c].lines.count else {
        throw GPIOError(
          .noLine, subject: subject, detail: "\(chipTable[c].name) has lines 0…\(chipTable[c].lines.count - 1)")
      }
      found = (c, o)
    case .name(let n):
      for c in candidates {
        if let o = chipTable[c].lines.firstIndex(where: { $0.name == n }) {
          found = (c, o)
          break
        }
      }
    }
    guard let (c, o) = found else {
      throw GPIOError(.noLine, subject: subject, detail: "no line by that name")
    }
    let line = chipTable[c].lines[o]
    if let holder = line.holder?.consumer ?? line.reservedBy {
      throw GPIOError(.busy, subject: subject, detail: "the line is in use by \"\(holder)\"", errno: EBUSY)
    }
    let token = nextToken
    nextToken += 1
    chipTable[c].lines[o].holder = Holder(
      consumer: request.consumer, output: output, activeLow: request.activeLow, edges: edges, token: token)
    chipTable[c].lines[o].pending = []
    if !output && request.bias != .asIs {
      // A pull sets an unconnected input's level, as on the real pin.
      if request.bias == .pullUp { chipTable[c].lines[o].high = true }
      if request.bias == .pullDown { chipTable[c].lines[o].high = false }
    }
    return (c, o, token)
  }

  /// A requested line; it stops working once released (or once the line is taken over).
  final class Line: GPIOInput, GPIOOutput, @unchecked Sendable {
    // @unchecked: immutable apart from what SimulatedGPIO guards with its lock.
    let gpio: SimulatedGPIO
    let chip: Int
    let offset: Int
    let token: Int
    let request: LineRequest
    let description: String

    init(gpio: SimulatedGPIO, chip: Int, offset: Int, token: Int, request: LineRequest, where_: String) {
      self.gpio = gpio
      self.chip = chip
      self.offset = offset
      self.token = token
      self.request = request
      self.description = where_
    }

    private func held() throws(GPIOError) -> SimLine {
      let line = gpio.chipTable[chip].lines[offset]
      guard line.holder?.token == token else {
        throw GPIOError(.closed, subject: description, detail: "the line was released")
      }
      return line
    }

    func read() throws(GPIOError) -> Bool {
      gpio.condition.lock()
      defer { gpio.condition.unlock() }
      return try held().high != request.activeLow
    }

    func waitForEdges(timeoutNanoseconds: UInt64) throws(GPIOError) -> [LineEdge] {
      gpio.condition.lock()
      defer { gpio.condition.unlock() }
      // The timeout is on the backend's (possibly faster) clock.
      let deadline = Date().addingTimeInterval(Double(timeoutNanoseconds) / 1e9 / gpio.timeScale)
      while try held().pending.isEmpty {
        if !gpio.condition.wait(until: deadline) { break }
      }
      let pending = try held().pending
      gpio.chipTable[chip].lines[offset].pending = []
      return pending.map { LineEdge(active: $0.high != request.activeLow, timestampNanoseconds: $0.at) }
    }

    func write(_ active: Bool) throws(GPIOError) {
      gpio.condition.lock()
      defer { gpio.condition.unlock() }
      _ = try held()
      let high = active != request.activeLow
      gpio.chipTable[chip].lines[offset].high = high
      gpio.writes.append(
        OutputWrite(
          chip: gpio.chipTable[chip].name, offset: offset, active: active, timestampNanoseconds: gpio.nowLocked()))
    }

    func close() {
      gpio.condition.lock()
      defer { gpio.condition.unlock() }
      if gpio.chipTable[chip].lines[offset].holder?.token == token {
        gpio.chipTable[chip].lines[offset].holder = nil
        gpio.chipTable[chip].lines[offset].pending = []
      }
      gpio.condition.broadcast()
    }
  }
}

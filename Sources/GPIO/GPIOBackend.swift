// The GPIO interface the appliance uses: request lines, read and write them, wait for edges.
// Two backends implement it: `LibgpiodBackend` (the kernel's character device through
// libgpiod v1, on the site computer) and `SimulatedGPIO` (tests, demo, bench). Everything
// above this file (debounce, pulse metering, the transfer switch and relays) works the same
// on both.

/// Which line on which chip. Lines are found by offset on a chip, or by name (on one chip,
/// or on any chip when `chip` is nil: names like "GPIO17" are unique on a Pi).
public struct LineRequest: Sendable, Hashable, CustomStringConvertible {
  public enum Address: Sendable, Hashable {
    case offset(Int)
    case name(String)
  }

  public enum Bias: String, Sendable, Hashable, Codable, CaseIterable {
    /// Leave the pin's pull as it is.
    case asIs = "as-is"
    case disabled
    case pullUp = "pull-up"
    case pullDown = "pull-down"
  }

  /// A chip by name ("gpiochip0"), path ("/dev/gpiochip0"), number ("0") or label
  /// ("pinctrl-bcm2711"); nil: search every chip for the line's name.
  public var chip: String?
  public var line: Address
  /// The line is active when its electrical level is low: reads and writes here are
  /// logical (true = active), the backend inverts.
  public var activeLow: Bool
  public var bias: Bias
  /// Shown by `gpioinfo` as the line's user.
  public var consumer: String

  public init(
    chip: String?, line: Address, activeLow: Bool = false, bias: Bias = .asIs, consumer: String = "microgrid-edge"
  ) {
    self.chip = chip
    self.line = line
    self.activeLow = activeLow
    self.bias = bias
    self.consumer = consumer
  }

  public var description: String {
    let where_: String
    switch line {
    case .offset(let o): where_ = "line \(o)"
    case .name(let n): where_ = "line \"\(n)\""
    }
    return chip.map { "\(where_) on \($0)" } ?? where_
  }
}

extension LineRequest {
  /// Whether the chip called `name` with `label` is the one `wanted` asks for: by name
  /// ("gpiochip0"), path ("/dev/gpiochip0"), number ("0") or label ("pinctrl-bcm2711").
  public static func chip(_ wanted: String, matchesName name: String, label: String) -> Bool {
    let bare = wanted.hasPrefix("/dev/") ? String(wanted.dropFirst(5)) : wanted
    return name == bare || label == wanted || Int(wanted).map { "gpiochip\($0)" } == name
  }
}

/// One edge on an input line, as the kernel stamped it.
public struct LineEdge: Sendable, Hashable {
  /// The logical level after the edge (true: active).
  public var active: Bool
  /// Nanoseconds on the backend's clock (`GPIOBackend.nowNanoseconds`): CLOCK_MONOTONIC
  /// for libgpiod on kernels from 5.7.
  public var timestampNanoseconds: UInt64

  public init(active: Bool, timestampNanoseconds: UInt64) {
    self.active = active
    self.timestampNanoseconds = timestampNanoseconds
  }
}

/// A line requested as an input.
public protocol GPIOInput: AnyObject, Sendable {
  /// What was requested, and where it was found ("GPIO17 = line 17 on gpiochip0").
  var description: String { get }
  /// The logical level now.
  func read() throws(GPIOError) -> Bool
  /// Waits up to `timeoutNanoseconds` for edges and returns those that came, oldest first
  /// (empty on timeout). Blocking: call it from a thread of its own. Only for inputs
  /// requested with edges.
  func waitForEdges(timeoutNanoseconds: UInt64) throws(GPIOError) -> [LineEdge]
  /// Releases the line. Reads and waits after this throw.
  func close()
}

/// A line requested as an output.
public protocol GPIOOutput: AnyObject, Sendable {
  var description: String { get }
  /// Sets the logical level (true: active).
  func write(_ active: Bool) throws(GPIOError)
  /// Releases the line. The kernel does not promise to hold its level after that (it may
  /// go back to its default), so relays must be wired to be safe when not driven.
  func close()
}

/// A chip and its lines, as `microgrid-edge gpio-check` lists them.
public struct ChipInfo: Sendable, Hashable {
  public struct Line: Sendable, Hashable {
    public var offset: Int
    public var name: String?
    /// Who holds it, when it is in use.
    public var consumer: String?
    public var used: Bool
    public var isOutput: Bool
    public var activeLow: Bool

    public init(offset: Int, name: String?, consumer: String?, used: Bool, isOutput: Bool, activeLow: Bool) {
      self.offset = offset
      self.name = name
      self.consumer = consumer
      self.used = used
      self.isOutput = isOutput
      self.activeLow = activeLow
    }
  }
  /// "gpiochip0"
  public var name: String
  /// "pinctrl-bcm2711"
  public var label: String
  public var path: String
  public var lines: [Line]

  public init(name: String, label: String, path: String, lines: [Line]) {
    self.name = name
    self.label = label
    self.path = path
    self.lines = lines
  }
}

/// A GPIO implementation: the kernel's, or a simulated one.
public protocol GPIOBackend: Sendable {
  /// "libgpiod 1.6.3" or "simulated".
  var name: String { get }
  /// Every chip it can see. A chip that cannot be opened is reported as an error, not
  /// skipped silently.
  func chips() throws(GPIOError) -> [ChipInfo]
  /// Requests an input; `edges`: both-edge events with timestamps.
  func requestInput(_ request: LineRequest, edges: Bool) throws(GPIOError) -> any GPIOInput
  /// Requests an output driven to `initial` (logical) at once.
  func requestOutput(_ request: LineRequest, initial: Bool) throws(GPIOError) -> any GPIOOutput
  /// Now, on the clock edge timestamps use.
  func nowNanoseconds() -> UInt64
}

/// What went wrong with a chip or line, with what to do about it.
public struct GPIOError: Error, Sendable, Hashable, CustomStringConvertible {
  public enum Kind: String, Sendable, Hashable {
    /// No such chip (no /dev/gpiochipN, or no chip with that label).
    case noChip = "no-chip"
    /// The chip has no such line (offset past its end, or no line by that name).
    case noLine = "no-line"
    /// Another program (or another request of ours) holds the line.
    case busy
    /// The process may not open the chip (group gpio, udev rule).
    case permission
    /// The kernel refused the request (bias on an old kernel, a pin that cannot be an input).
    case refused
    /// Reading, writing or waiting failed on a line that was requested.
    case io
    /// The line was closed.
    case closed
  }

  public var kind: Kind
  /// The request it was about ("line \"GPIO17\" on gpiochip0").
  public var subject: String
  /// What happened, with the OS's words where there are some.
  public var detail: String
  public var errno: Int32?

  public init(_ kind: Kind, subject: String, detail: String, errno: Int32? = nil) {
    self.kind = kind
    self.subject = subject
    self.detail = detail
    self.errno = errno
  }

  public var description: String {
    let advice: String
    switch kind {
    case .noChip: advice = "check the chip name in gpio: (`microgrid-edge gpio-check` lists the chips found)"
    case .noLine: advice = "check the line in gpio: (`microgrid-edge gpio-check` lists each chip's lines)"
    case .busy: advice = "another program holds it (`gpioinfo` shows the user); stop it or pick another line"
    case .permission: advice = "run as a member of the gpio group (the rootfs overlay's udev rule grants it)"
    case .refused, .io, .closed: advice = "check the wiring and the kernel log"
    }
    return "GPIO \(subject): \(detail) (\(kind.rawValue)); \(advice)"
  }
}

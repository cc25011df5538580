// The kernel's GPIO character device through libgpiod v1 (1.6, Debian 12 / Raspberry Pi OS
// bookworm). This is the only file that imports CGPIOD: libgpiod v2 has a different API under
// the same pkg-config name, so a v2 backend would be a second file beside this one.
// Facts about the v1 API cited here are in docs/notes/libgpiod-v1-reference.md.

import CGPIOD
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

public struct LibgpiodBackend: GPIOBackend {
  /// Where the `gpiochip*` device nodes are: "/dev", or a temporary directory in tests.
  public let devicePrefix: String

  public init(devicePrefix: String = "/dev") {
    self.devicePrefix = devicePrefix
  }

  public var name: String { "libgpiod " + String(cString: gpiod_version_string()) }

  public func chips() throws(GPIOError) -> [ChipInfo] {
    var found: [ChipInfo] = []
    for path in try devicePaths() {
      let chip = try Chip(path: path, subject: path)
      defer { chip.close() }
      // Raspberry Pi OS adds a gpiochip4 symlink to gpiochip0 on some boards: list each chip once.
      if found.contains(where: { $0.name == chip.name }) { continue }
      found.append(try chip.info())
    }
    return found
  }

  public func requestInput(_ request: LineRequest, edges: Bool) throws(GPIOError) -> any GPIOInput {
    var flags = request.activeLow ? Int32(GPIOD_LINE_REQUEST_FLAG_ACTIVE_LOW) : 0
    switch request.bias {
    case .asIs: break
    case .disabled: flags |= Int32(GPIOD_LINE_REQUEST_FLAG_BIAS_DISABLE)
    case .pullUp: flags |= Int32(GPIOD_LINE_REQUEST_FLAG_BIAS_PULL_UP)
    case .pullDown: flags |= Int32(GPIOD_LINE_REQUEST_FLAG_BIAS_PULL_DOWN)
    }
    let type = edges ? GPIOD_LINE_REQUEST_EVENT_BOTH_EDGES : GPIOD_LINE_REQUEST_DIRECTION_INPUT
    let held = try requestLine(request, type: Int32(type), flags: flags, defaultValue: 0)
    return LibgpiodInput(held: held, edges: edges)
  }

  public func requestOutput(_ request: LineRequest, initial: Bool) throws(GPIOError) -> any GPIOOutput {
    // Bias is ignored. Current kernels do accept it on output requests, but it only matters for
    // open-drain/open-source outputs, which LineRequest cannot ask for; on a push-pull pin the
    // driver overrides any pull, and on a pre-5.5 kernel the flag would fail the request (EINVAL).
    let flags = request.activeLow ? Int32(GPIOD_LINE_REQUEST_FLAG_ACTIVE_LOW) : 0
    let type = Int32(GPIOD_LINE_REQUEST_DIRECTION_OUTPUT)
    let held = try requestLine(request, type: type, flags: flags, defaultValue: initial ? 1 : 0)
    return LibgpiodOutput(held: held)
  }

  /// The clock the kernel stamps edges with: CLOCK_MONOTONIC since Linux 5.7 (bookworm runs 6.x).
  public func nowNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return nanoseconds(now)
  }
}

// MARK: - Finding chips and lines

extension LibgpiodBackend {
  /// `<prefix>/gpiochip*`, in chip-number order. Each is opened on its own rather than through
  /// gpiod_chip_iter, which fails as a whole when any one chip cannot be opened.
  private func devicePaths() throws(GPIOError) -> [String] {
    guard let directory = opendir(devicePrefix) else {
      let code = errno
      if code == ENOENT || code == ENOTDIR { return [] }
      throw GPIOError(.io, subject: devicePrefix, detail: errnoText(code), errno: code)
    }
    defer { closedir(directory) }
    var names: [String] = []
    while let entry = readdir(directory) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { bytes in
        String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
      }
      if name.hasPrefix("gpiochip") { names.append(name) }
    }
    // gpiochip10 sorts after gpiochip9, not after gpiochip1.
    names.sort { a, b in
      let (x, y) = (Int(a.dropFirst(8)) ?? .max, Int(b.dropFirst(8)) ?? .max)
      return x != y ? x < y : a < b
    }
    return names.map { devicePrefix + "/" + $0 }
  }

  /// "chips in /dev: gpiochip0, gpiochip1", for error details.
  private func chipList() -> String {
    let prefixLength = devicePrefix.count + 1
    let names = ((try? devicePaths()) ?? []).map { $0.dropFirst(prefixLength) }
    if names.isEmpty { return "there are no gpiochip devices in \(devicePrefix)" }
    return "chips in \(devicePrefix): " + names.joined(separator: ", ")
  }

  /// Opens the chip the request names; the caller closes it.
  private func openChip(for request: LineRequest) throws(GPIOError) -> Chip {
    let subject = request.description
    guard let wanted = request.chip else {
      guard case .name(let lineName) = request.line else {
        throw GPIOError(
          .noChip, subject: subject, detail: "a line given by offset needs a chip (name, number or label)")
      }
      return try scan(subject: subject, lookingFor: "line \"\(lineName)\"", absent: .noLine) { chip in
        chip.hasLine(named: lineName)
      }
    }
    let path: String
    if wanted.hasPrefix("/") {
      path = wanted
    } else if !wanted.isEmpty, wanted.allSatisfy({ $0.isASCII && $0.isNumber }) {
      path = devicePrefix + "/gpiochip" + wanted
    } else if wanted.hasPrefix("gpiochip") {
      path = devicePrefix + "/" + wanted
    } else {
      return try scan(subject: subject, lookingFor: "a chip labelled \"\(wanted)\"", absent: .noChip) {
        $0.label == wanted
      }
    }
    do throws(GPIOError) {
      return try Chip(path: path, subject: subject)
    } catch {
      guard error.errno == ENOENT else { throw error }
      throw GPIOError(.noChip, subject: subject, detail: "\(path) does not exist; \(chipList())", errno: ENOENT)
    }
  }

  /// Opens every chip in turn and returns the first that `matches` (the caller closes it). A chip
  /// that cannot be opened might be the one wanted, so if nothing matches, its error is thrown
  /// rather than a misleading "not found" (`absent`).
  private func scan(
    subject: String, lookingFor wanted: String, absent: GPIOError.Kind, matches: (Chip) -> Bool
  ) throws(GPIOError) -> Chip {
    var searched: [String] = []
    var firstFailure: GPIOError?
    for path in try devicePaths() {
      let chip: Chip
      do throws(GPIOError) {
        chip = try Chip(path: path, subject: subject)
      } catch {
        if firstFailure == nil { firstFailure = error }
        continue
      }
      if matches(chip) { return chip }
      searched.append("\(chip.name) [\(chip.label)] (\(chip.lineCount) lines)")
      chip.close()
    }
    if var failure = firstFailure {
      failure.detail += " (while looking for \(wanted))"
      throw failure
    }
    if searched.isEmpty {
      throw GPIOError(.noChip, subject: subject, detail: "looked for \(wanted), but \(chipList())")
    }
    throw GPIOError(absent, subject: subject, detail: "no \(wanted) on \(searched.joined(separator: ", "))")
  }

  /// Opens the chip, finds the line and requests it; on any failure the chip is closed again.
  private func requestLine(
    _ request: LineRequest, type: Int32, flags: Int32, defaultValue: Int32
  ) throws(GPIOError) -> HeldLine {
    let chip = try openChip(for: request)
    let line: OpaquePointer
    do throws(GPIOError) {
      line = try chip.line(request.line, subject: request.description)
      let failure: Int32? = request.consumer.withCString { consumer in
        var config = gpiod_line_request_config(consumer: consumer, request_type: type, flags: flags)
        return gpiod_line_request(line, &config, defaultValue) == 0 ? nil : errno
      }
      if let failure { throw requestError(failure, line: line, request: request) }
    } catch {
      chip.close()
      throw error
    }
    let description = describe(line, on: chip)
    return HeldLine(LineHandles(chip: chip.handle, line: line), description: description)
  }

  private func requestError(_ code: Int32, line: OpaquePointer, request: LineRequest) -> GPIOError {
    var error = GPIOError(code, subject: request.description, about: "requesting the line")
    switch code {
    case EBUSY:
      // The info read at get_line may be stale; refresh it to name whoever holds the line.
      if gpiod_line_update(line) == 0, let holder = gpiod_line_consumer(line) {
        error.detail += " (held by \"\(String(cString: holder))\")"
      }
    case EINVAL where request.bias != .asIs:
      error.detail += " (bias needs Linux 5.5 or later; try bias: as-is)"
    default:
      break
    }
    return error
  }

  /// `"GPIO17" = line 17 on gpiochip0 (pinctrl-bcm2711)`
  private func describe(_ line: OpaquePointer, on chip: Chip) -> String {
    let place = "line \(gpiod_line_offset(line)) on \(chip.name) (\(chip.label))"
    guard let name = gpiod_line_name(line) else { return place }
    return "\"\(String(cString: name))\" = \(place)"
  }
}

/// An open chip handle (not owned: whoever opened it calls `close()` or hands the handle on).
private struct Chip {
  let handle: OpaquePointer
  let path: String

  init(path: String, subject: String) throws(GPIOError) {
    guard let handle = gpiod_chip_open(path) else {
      throw GPIOError(errno, subject: subject, about: path)
    }
    self.handle = handle
    self.path = path
  }

  var name: String { String(cString: gpiod_chip_name(handle)) }
  var label: String { String(cString: gpiod_chip_label(handle)) }
  var lineCount: Int { Int(gpiod_chip_num_lines(handle)) }

  func close() { gpiod_chip_close(handle) }

  func hasLine(named name: String) -> Bool { gpiod_chip_find_line(handle, name) != nil }

  /// The line object belongs to the chip: it is freed by gpiod_chip_close, never by us.
  func line(_ address: LineRequest.Address, subject: String) throws(GPIOError) -> OpaquePointer {
    let line: OpaquePointer?
    switch address {
    case .offset(let offset):
      guard offset >= 0, offset < lineCount else {
        throw GPIOError(
          .noLine, subject: subject, detail: "\(name) (\(label)) has \(lineCount) lines, 0 to \(lineCount - 1)")
      }
      line = gpiod_chip_get_line(handle, UInt32(offset))
    case .name(let lineName):
      line = gpiod_chip_find_line(handle, lineName)
      if line == nil, errno == ENOENT {
        throw GPIOError(
          .noLine, subject: subject, detail: "no line named \"\(lineName)\" on \(name) (\(label), \(lineCount) lines)",
          errno: ENOENT)
      }
    }
    guard let line else { throw GPIOError(errno, subject: subject, about: "\(path) (\(name))") }
    return line
  }

  func info() throws(GPIOError) -> ChipInfo {
    var lines: [ChipInfo.Line] = []
    for offset in 0..<lineCount {
      let line = try line(.offset(offset), subject: path)
      lines.append(
        ChipInfo.Line(
          offset: offset,
          name: gpiod_line_name(line).map { String(cString: $0) },
          consumer: gpiod_line_consumer(line).map { String(cString: $0) },
          used: gpiod_line_is_used(line),
          isOutput: gpiod_line_direction(line) == GPIOD_LINE_DIRECTION_OUTPUT,
          activeLow: gpiod_line_active_state(line) == GPIOD_LINE_ACTIVE_STATE_LOW))
    }
    return ChipInfo(name: name, label: label, path: path, lines: lines)
  }
}

// MARK: - Requested lines

/// A requested line and the chip it belongs to: used together, closed together.
private struct LineHandles {
  let chip: OpaquePointer
  let line: OpaquePointer
}

/// A requested line and the chip handle it came through. The lock is held for the whole of every
/// libgpiod call on the line, including the blocking wait for edges, so `close()` can never free
/// the handle (and its fd) under a call still using it. The cost: `close()` or `read()` from
/// another thread blocks until a wait in progress returns, which is at most that wait's timeout.
private final class HeldLine: Sendable {
  let description: String
  private let handles: Mutex<LineHandles?>

  init(_ handles: sending LineHandles, description: String) {
    self.description = description
    self.handles = Mutex(handles)
  }

  deinit { close() }

  func use<Value: Sendable>(
    _ body: (OpaquePointer) throws(GPIOError) -> Value
  ) throws(GPIOError) -> Value {
    try handles.withLock { (handles) throws(GPIOError) -> Value in
      guard let handles else {
        throw GPIOError(.closed, subject: description, detail: "the line was closed")
      }
      return try body(handles.line)
    }
  }

  /// Releases the line and closes the chip, once; later calls do nothing.
  func close() {
    handles.withLock { handles in
      guard let held = handles else { return }
      gpiod_line_release(held.line)
      gpiod_chip_close(held.chip)
      handles = nil
    }
  }

  func ioError(_ code: Int32, _ doing: String) -> GPIOError {
    GPIOError(.io, subject: description, detail: "\(doing): \(errnoText(code))", errno: code)
  }
}

private final class LibgpiodInput: GPIOInput {
  private let held: HeldLine
  private let edges: Bool

  init(held: HeldLine, edges: Bool) {
    self.held = held
    self.edges = edges
  }

  var description: String { held.description }

  func read() throws(GPIOError) -> Bool {
    try held.use { line throws(GPIOError) in
      // Logical: the kernel applies ACTIVE_LOW. Works on event requests too.
      let value = gpiod_line_get_value(line)
      guard value >= 0 else { throw held.ioError(errno, "reading the level") }
      return value == 1
    }
  }

  func waitForEdges(timeoutNanoseconds: UInt64) throws(GPIOError) -> [LineEdge] {
    try held.use { line throws(GPIOError) in
      guard edges else {
        throw GPIOError(.refused, subject: description, detail: "the line was requested without edges")
      }
      var timeout = timespec(
        tv_sec: Int(clamping: timeoutNanoseconds / 1_000_000_000),
        tv_nsec: Int(timeoutNanoseconds % 1_000_000_000))
      switch gpiod_line_event_wait(line, &timeout) {
      case 0:
        return []
      case 1:
        return try readQueuedEdges(line)
      default:
        let code = errno
        // A signal cut the wait short: an early empty return is still "up to the timeout".
        if code == EINTR { return [] }
        throw held.ioError(code, "waiting for edges")
      }
    }
  }

  /// Reads what the kernel has queued, without blocking. Edge types are logical: for a both-edges
  /// request the v1 kernel classifies each event by the line's logical value (ACTIVE_LOW applied)
  /// read when it handles the interrupt, so under contact bounce two events in a row can have the
  /// same type; debounce must go by the timestamps.
  private func readQueuedEdges(_ line: OpaquePointer) throws(GPIOError) -> [LineEdge] {
    let batch = 16  // libgpiod's cap per call, and the kernel's FIFO depth
    var buffer = [gpiod_line_event](repeating: gpiod_line_event(), count: batch)
    var edges: [LineEdge] = []
    while true {
      let count = Int(gpiod_line_event_read_multiple(line, &buffer, UInt32(batch)))
      guard count >= 0 else { throw held.ioError(errno, "reading edges") }
      for event in buffer.prefix(count) {
        edges.append(
          LineEdge(
            active: event.event_type == GPIOD_LINE_EVENT_RISING_EDGE, timestampNanoseconds: nanoseconds(event.ts)))
      }
      // A full batch may have more behind it; event_read blocks on an empty queue, so poll first.
      var now = timespec()
      guard count == batch, gpiod_line_event_wait(line, &now) == 1 else { return edges }
    }
  }

  func close() { held.close() }
}

private final class LibgpiodOutput: GPIOOutput {
  private let held: HeldLine

  init(held: HeldLine) { self.held = held }

  var description: String { held.description }

  func write(_ active: Bool) throws(GPIOError) {
    try held.use { line throws(GPIOError) in
      // Logical: the kernel applies ACTIVE_LOW.
      guard gpiod_line_set_value(line, active ? 1 : 0) == 0 else { throw held.ioError(errno, "setting the level") }
    }
  }

  func close() { held.close() }
}

// MARK: - Errors and conversions

extension GPIOError {
  /// An error from opening a chip or requesting a line, sorted by errno. `thing` is what was
  /// being opened or done, and leads the detail.
  fileprivate init(_ code: Int32, subject: String, about thing: String) {
    let text = errnoText(code)
    switch code {
    case ENOENT:
      self.init(.noChip, subject: subject, detail: "\(thing): \(text)", errno: code)
    case EACCES, EPERM:
      self.init(.permission, subject: subject, detail: "\(thing): \(text)", errno: code)
    case EBUSY:
      self.init(.busy, subject: subject, detail: "\(thing): \(text)", errno: code)
    case EINVAL, EOPNOTSUPP:
      self.init(.refused, subject: subject, detail: "\(thing): the kernel refused: \(text)", errno: code)
    case ENOTTY, ENODEV, EISDIR:
      // libgpiod 1.6 answers ENOTTY for anything that is not a GPIO chip's character device
      // (a regular file, /dev/null); open() gives EISDIR for a directory.
      self.init(.noChip, subject: subject, detail: "\(thing) is not a GPIO character device (\(text))", errno: code)
    default:
      self.init(.io, subject: subject, detail: "\(thing): \(text)", errno: code)
    }
  }
}

private func errnoText(_ code: Int32) -> String {
  String(cString: strerror(code))
}

private func nanoseconds(_ time: timespec) -> UInt64 {
  UInt64(clamping: time.tv_sec) &* 1_000_000_000 &+ UInt64(clamping: time.tv_nsec)
}

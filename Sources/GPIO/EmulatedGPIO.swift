// GPIO lines served by another process: a building emulator is the building's wiring, and the
// appliance runs its production code path (FieldIO, debounce, the pulse meter) over them. The
// server side is Tests/Integration/gpio_line_server.py.
//
// Protocol 1: newline-delimited JSON (one UTF-8 object a line) over a Unix domain socket
// (SOCK_STREAM). The client sends requests carrying an integer "id"; the server answers each,
// in the order asked, with that "id" and "ok": true plus the fields below, or "ok": false,
// "error": KIND, "detail": TEXT, where KIND is a `GPIOError.Kind` raw value (no-chip,
// no-line, busy, refused, closed, io). Levels on the wire are electrical (true = high): the
// client applies active-low. Between answers the server pushes edges, which carry no "id":
//
//     {"event": "edge", "handle": H, "high": BOOL, "ns": T}    T: CLOCK_MONOTONIC nanoseconds
//
//     hello    {"protocol": 1}                  -> {"protocol": 1, "server": NAME}
//     chips    {}                               -> {"chips": [{"name", "label", "lines":
//              [{"offset", "name" (or null), "used", "consumer" (or null), "output",
//                "active_low"}]}]}
//     request  {"chip": STR (absent: any chip), "line": INT or STR, "output": BOOL,
//               "edges": BOOL, "initial": BOOL (outputs: level driven at once),
//               "active_low": BOOL (shown by chips only), "consumer": STR}
//              -> {"handle": H, "chip", "label", "offset", "name", "high"}
//     read     {"handle": H}                    -> {"high": BOOL}
//     write    {"handle": H, "high": BOOL}      -> {}
//     release  {"handle": H}                    -> {}
//
// The server finds a chip as `LineRequest.chip(_:matchesName:label:)` does, holds each line
// for one request at a time (busy otherwise), releases everything a client held when it
// disconnects, and pushes an edge to a holder that asked for them on every change of level,
// stamped when it changed. An edge is always sent before the answer to any later read. Bias
// is not on the wire: the server decides a line's idle level.
//
// One connection per backend, opened on first use, with one reader thread that takes the
// answers and queues the edges. If the connection drops, the lines requested over it fail
// with .io naming the socket from then on (a restarted server does not know them); the
// next request or chips() connects again.

import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A GPIO backend whose chips and lines are served over a Unix socket by another process
/// (the building emulator's `gpio_line_server.py`), in protocol 1 above.
public final class EmulatedGPIO: GPIOBackend {
  /// The protocol this client speaks; the server's hello must say the same.
  public static let protocolVersion = 1

  /// Where the line server listens.
  public let socketPath: String
  /// How long to wait for any one answer before the call fails with .io.
  public let answerTimeoutSeconds: Double
  /// The live connection, if there is one.
  private let current = Mutex<Connection?>(nil)

  /// Connects lazily: nothing happens until the first `chips()` or request.
  public init(socketPath: String, answerTimeoutSeconds: Double = 5) {
    self.socketPath = socketPath
    self.answerTimeoutSeconds = answerTimeoutSeconds > 0 ? answerTimeoutSeconds : 5
  }

  public var name: String { "emulated (line server at \(socketPath))" }

  /// CLOCK_MONOTONIC, the clock the server stamps edges with (same machine).
  public func nowNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(clamping: now.tv_sec) &* 1_000_000_000 &+ UInt64(clamping: now.tv_nsec)
  }

  public func chips() throws(GPIOError) -> [ChipInfo] {
    let subject = "emulated chips"
    let link = try connection(subject: subject)
    let answer = try link.call(Outgoing(op: "chips"), subject: subject)
    guard let chips = answer.chips else {
      throw GPIOError(.io, subject: subject, detail: "the line server at \(socketPath) answered chips without chips")
    }
    return chips.map { chip in
      ChipInfo(
        name: chip.name, label: chip.label, path: "/dev/\(chip.name)",
        lines: chip.lines.map { l in
          ChipInfo.Line(
            offset: l.offset, name: l.name, consumer: l.consumer, used: l.used ?? false, isOutput: l.output ?? false,
            activeLow: l.activeLow ?? false)
        })
    }
  }

  /// Bias is accepted and ignored: the server decides an input's idle level.
  public func requestInput(_ request: LineRequest, edges: Bool) throws(GPIOError) -> any GPIOInput {
    try claim(request, output: false, edges: edges, high: nil)
  }

  /// `initial` is logical; the server is sent the electrical level.
  public func requestOutput(_ request: LineRequest, initial: Bool) throws(GPIOError) -> any GPIOOutput {
    try claim(request, output: true, edges: false, high: initial != request.activeLow)
  }

  /// The connection, opened (again) when there is none or it has dropped.
  private func connection(subject: String) throws(GPIOError) -> Connection {
    let path = socketPath
    let timeout = answerTimeoutSeconds
    return try current.withLock { (current) throws(GPIOError) -> Connection in
      if let live = current, live.isAlive { return live }
      current = nil
      let opened = try Connection.open(path: path, timeout: timeout, subject: subject)
      current = opened
      return opened
    }
  }

  private func claim(_ request: LineRequest, output: Bool, edges: Bool, high: Bool?) throws(GPIOError) -> EmulatedLine {
    let subject = request.description
    let link = try connection(subject: subject)
    var message = Outgoing(op: "request")
    message.chip = request.chip
    message.line =
      switch request.line {
      case .offset(let o): .offset(o)
      case .name(let n): .name(n)
      }
    message.output = output
    message.edges = edges
    message.initial = high
    message.activeLow = request.activeLow
    message.consumer = request.consumer
    let answer = try link.call(message, subject: subject)
    guard let handle = answer.handle else {
      throw GPIOError(.io, subject: subject, detail: "the line server at \(socketPath) answered without a handle")
    }
    let place = "line \(answer.offset.map(String.init) ?? "?") on \(answer.chip ?? "?") (\(answer.label ?? "?"))"
    return EmulatedLine(
      connection: link, handle: handle, activeLow: request.activeLow, edges: edges && !output,
      description: answer.name.map { "\"\($0)\" = \(place)" } ?? place)
  }
}

// MARK: - A requested line

/// A line held on the server; it stops working once closed, or once the connection drops.
private final class EmulatedLine: GPIOInput, GPIOOutput {
  let connection: Connection
  let handle: Int
  let activeLow: Bool
  let edges: Bool
  let description: String

  init(connection: Connection, handle: Int, activeLow: Bool, edges: Bool, description: String) {
    self.connection = connection
    self.handle = handle
    self.activeLow = activeLow
    self.edges = edges
    self.description = description
  }

  deinit { close() }

  func read() throws(GPIOError) -> Bool {
    var message = Outgoing(op: "read")
    message.handle = handle
    let answer = try connection.lineCall(handle, message, subject: description)
    guard let high = answer.high else {
      throw GPIOError(.io, subject: description, detail: "the line server at \(connection.path) sent no level")
    }
    return high != activeLow
  }

  func waitForEdges(timeoutNanoseconds: UInt64) throws(GPIOError) -> [LineEdge] {
    guard edges else {
      throw GPIOError(.refused, subject: description, detail: "the line was requested without edges")
    }
    return try connection.waitForEdges(
      handle, timeoutNanoseconds: timeoutNanoseconds, activeLow: activeLow, subject: description)
  }

  func write(_ active: Bool) throws(GPIOError) {
    var message = Outgoing(op: "write")
    message.handle = handle
    message.high = active != activeLow
    _ = try connection.lineCall(handle, message, subject: description)
  }

  func close() { connection.release(handle, subject: description) }
}

// MARK: - The connection

/// One socket to the line server, its reader thread, the answers waited for and the edges
/// queued for each line held. The reader holds it weakly: once no backend or line uses it,
/// it shuts the socket and the reader thread ends.
private final class Connection: @unchecked Sendable {
  // @unchecked: every `var` below is guarded by `condition`'s lock, which also wakes the
  // callers waiting for answers and edges; NSCondition is not marked Sendable.
  let path: String
  private let timeout: Double
  private let socket: UnixSocket
  private let condition = NSCondition()
  /// Why the connection is gone; nil while it works.
  private var failure: String?
  private var nextID = 1
  /// The op of each request sent and not yet answered.
  private var waiting: [Int: String] = [:]
  /// Requests whose caller gave up waiting: their answers are dropped (and a line granted
  /// late is released).
  private var abandoned: Set<Int> = []
  private var answers: [Int: Incoming] = [:]
  /// Each line held, with the edges (electrical level, timestamp) not yet taken.
  private var lines: [Int: [(high: Bool, ns: UInt64)]] = [:]

  private init(path: String, timeout: Double, socket: UnixSocket) {
    self.path = path
    self.timeout = timeout
    self.socket = socket
  }

  deinit { socket.shutdown() }

  /// Connects, starts the reader and checks the server's hello.
  static func open(path: String, timeout: Double, subject: String) throws(GPIOError) -> Connection {
    let socket: UnixSocket
    do throws(SocketFailure) {
      socket = try UnixSocket(connectingTo: path, sendTimeoutSeconds: timeout)
    } catch {
      throw GPIOError(
        .noChip, subject: subject,
        detail: "cannot connect to the line server at \(path): \(error.text); is the building emulator running? "
          + "(gpio.emulator_socket)",
        errno: error.code)
    }
    let connection = Connection(path: path, timeout: timeout, socket: socket)
    connection.startReader()
    var hello = Outgoing(op: "hello")
    hello.protocolVersion = EmulatedGPIO.protocolVersion
    let answer: Incoming
    do throws(GPIOError) {
      answer = try connection.call(hello, subject: subject)
    } catch {
      connection.fail("no hello")
      throw GPIOError(
        .noChip, subject: subject, detail: "\(path) is not a line server that answers: \(error.detail)",
        errno: error.errno)
    }
    guard answer.protocolVersion == EmulatedGPIO.protocolVersion else {
      connection.fail("protocol mismatch")
      throw GPIOError(
        .refused, subject: subject,
        detail:
          "the line server at \(path) speaks protocol \(answer.protocolVersion.map(String.init) ?? "?"), "
          + "this appliance \(EmulatedGPIO.protocolVersion)")
    }
    return connection
  }

  var isAlive: Bool {
    condition.lock()
    defer { condition.unlock() }
    return failure == nil
  }

  /// Marks the connection gone (the first reason stays), wakes every waiter and shuts the
  /// socket, so the server releases every line held over it.
  func fail(_ reason: String) {
    condition.lock()
    if failure == nil { failure = reason }
    condition.broadcast()
    condition.unlock()
    socket.shutdown()
  }

  private func gone(_ subject: String, _ reason: String) -> GPIOError {
    GPIOError(.io, subject: subject, detail: "the line server at \(path) went away (\(reason))")
  }

  private func refusal(_ answer: Incoming, subject: String) -> GPIOError {
    let kind = answer.error.flatMap(GPIOError.Kind.init(rawValue:)) ?? .io
    return GPIOError(
      kind, subject: subject, detail: "\(answer.detail ?? "refused") (line server at \(path))",
      errno: kind == .busy ? EBUSY : nil)
  }

  /// Sends a request and waits (at most the timeout) for its answer; a refusal is thrown as
  /// its GPIOError.
  func call(_ request: Outgoing, subject: String) throws(GPIOError) -> Incoming {
    var request = request
    condition.lock()
    if let failure {
      condition.unlock()
      throw gone(subject, failure)
    }
    let id = nextID
    nextID += 1
    waiting[id] = request.op
    condition.unlock()
    request.id = id
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.withoutEscapingSlashes]
    guard var bytes = try? encoder.encode(request) else {
      throw GPIOError(.io, subject: subject, detail: "cannot encode the \(request.op) request")
    }
    bytes.append(0x0A)
    if let code = socket.send(bytes) {
      fail("writing to it: \(errnoText(code))")
    }
    condition.lock()
    defer { condition.unlock() }
    let deadline = monotonicSeconds() + timeout
    while answers[id] == nil && failure == nil {
      if !waitLocked(until: deadline) { break }
    }
    if let answer = answers.removeValue(forKey: id) {
      guard answer.ok == true else { throw refusal(answer, subject: subject) }
      return answer
    }
    if let failure {
      waiting[id] = nil
      throw gone(subject, failure)
    }
    abandoned.insert(id)
    throw GPIOError(
      .io, subject: subject,
      detail: "the line server at \(path) did not answer \(request.op) within \(formatSeconds(timeout)) s")
  }

  /// A call about a held line: .closed once it was released.
  func lineCall(_ handle: Int, _ request: Outgoing, subject: String) throws(GPIOError) -> Incoming {
    condition.lock()
    let held = lines[handle] != nil
    condition.unlock()
    guard held else { throw GPIOError(.closed, subject: subject, detail: "the line was released") }
    return try call(request, subject: subject)
  }

  func waitForEdges(
    _ handle: Int, timeoutNanoseconds: UInt64, activeLow: Bool, subject: String
  ) throws(GPIOError) -> [LineEdge] {
    condition.lock()
    defer { condition.unlock() }
    let deadline = monotonicSeconds() + Double(timeoutNanoseconds) / 1e9
    var timedOut = false
    while true {
      guard let pending = lines[handle] else {
        throw GPIOError(.closed, subject: subject, detail: "the line was released")
      }
      if !pending.isEmpty {
        lines[handle] = []
        return pending.map { LineEdge(active: $0.high != activeLow, timestampNanoseconds: $0.ns) }
      }
      if let failure { throw gone(subject, failure) }
      if timedOut { return [] }
      timedOut = !waitLocked(until: deadline)
    }
  }

  /// Forgets the line and, while the connection works, waits for the server to release it.
  func release(_ handle: Int, subject: String) {
    condition.lock()
    let held = lines.removeValue(forKey: handle) != nil
    let alive = failure == nil
    condition.broadcast()
    condition.unlock()
    guard held && alive else { return }
    var message = Outgoing(op: "release")
    message.handle = handle
    _ = try? call(message, subject: subject)
  }

  /// Waits on the condition until woken or until `deadline` (monotonic seconds); false
  /// once the deadline has passed. Each wait is at most a second, so a step of the wall
  /// clock (which NSCondition's deadline is on) cannot stretch it. Called with the lock held.
  private func waitLocked(until deadline: Double) -> Bool {
    let remaining = deadline - monotonicSeconds()
    guard remaining > 0 else { return false }
    _ = condition.wait(until: Date(timeIntervalSinceNow: min(remaining, 1)))
    return monotonicSeconds() < deadline
  }

  // MARK: Reading

  private func startReader() {
    let socket = self.socket
    let thread = Thread { [weak self] in
      var chunk = [UInt8](repeating: 0, count: 64 * 1024)
      var partial: [UInt8] = []
      let decoder = JSONDecoder()
      reading: while true {
        let (count, code) = chunk.withUnsafeMutableBytes { buffer in
          let n = recv(socket.fd, buffer.baseAddress, buffer.count, 0)
          return (n, n < 0 ? errno : 0)
        }
        if count < 0 && code == EINTR { continue }
        guard let self else { break }
        if count == 0 {
          self.fail("it closed the connection")
          break
        }
        if count < 0 {
          self.fail("reading from it: \(errnoText(code))")
          break
        }
        var start = 0
        for i in 0..<count where chunk[i] == 0x0A {
          partial.append(contentsOf: chunk[start..<i])
          start = i + 1
          let line = partial
          partial.removeAll(keepingCapacity: true)
          if let problem = self.dispatch(line, decoder: decoder) {
            self.fail(problem)
            break reading
          }
        }
        partial.append(contentsOf: chunk[start..<count])
        if partial.count > 1 << 20 {
          self.fail("it sent a line of more than 1 MiB")
          break
        }
      }
      socket.close()
    }
    thread.name = "gpio emulator"
    thread.stackSize = 256 * 1024
    thread.start()
  }

  /// Takes one line from the server: an edge or an answer. Returns what is wrong with a
  /// line that is not the protocol.
  private func dispatch(_ line: [UInt8], decoder: JSONDecoder) -> String? {
    if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { return nil }
    guard let message = try? decoder.decode(Incoming.self, from: Data(line)) else {
      let text = String(decoding: line.prefix(120), as: UTF8.self)
      return "it sent something that is not protocol \(EmulatedGPIO.protocolVersion): \(text)"
    }
    var lateRelease: Int?
    condition.lock()
    if message.event == "edge" {
      defer { condition.unlock() }
      guard let handle = message.handle, let high = message.high, let ns = message.ns else {
        return "it sent an edge without handle, high and ns"
      }
      // Edges for a line already released are dropped.
      if lines[handle] != nil {
        lines[handle]!.append((high, ns))
        condition.broadcast()
      }
      return nil
    }
    if let id = message.id, let op = waiting.removeValue(forKey: id) {
      let granted = op == "request" && message.ok == true ? message.handle : nil
      if abandoned.remove(id) != nil {
        lateRelease = granted
      } else {
        // The line's queue exists before its first edge can arrive.
        if let granted { lines[granted] = [] }
        answers[id] = message
        condition.broadcast()
      }
    }
    condition.unlock()
    if let handle = lateRelease {
      // A line granted after its caller gave up: give it back, without waiting.
      condition.lock()
      let id = nextID
      nextID += 1
      waiting[id] = "release"
      abandoned.insert(id)
      condition.unlock()
      var release = Outgoing(op: "release")
      release.id = id
      release.handle = handle
      if var bytes = try? JSONEncoder().encode(release) {
        bytes.append(0x0A)
        _ = socket.send(bytes)
      }
    }
    return nil
  }
}

// MARK: - Messages

/// A request; nil fields are left out.
private struct Outgoing: Encodable {
  enum LineField: Encodable {
    case offset(Int)
    case name(String)

    func encode(to encoder: any Encoder) throws {
      var c = encoder.singleValueContainer()
      switch self {
      case .offset(let o): try c.encode(o)
      case .name(let n): try c.encode(n)
      }
    }
  }

  var id = 0
  var op: String
  var protocolVersion: Int?
  var chip: String?
  var line: LineField?
  var output: Bool?
  var edges: Bool?
  var initial: Bool?
  var activeLow: Bool?
  var consumer: String?
  var handle: Int?
  var high: Bool?

  init(op: String) { self.op = op }

  enum CodingKeys: String, CodingKey {
    case id, op, chip, line, output, edges, initial, consumer, handle, high
    case protocolVersion = "protocol"
    case activeLow = "active_low"
  }
}

/// An answer or an edge; every field is optional, and unknown ones are ignored.
private struct Incoming: Decodable, Sendable {
  struct Chip: Decodable, Sendable {
    var name: String
    var label: String
    var lines: [Line]
  }

  struct Line: Decodable, Sendable {
    var offset: Int
    var name: String?
    var used: Bool?
    var consumer: String?
    var output: Bool?
    var activeLow: Bool?

    enum CodingKeys: String, CodingKey {
      case offset, name, used, consumer, output
      case activeLow = "active_low"
    }
  }

  var id: Int?
  var ok: Bool?
  var error: String?
  var detail: String?
  var event: String?
  var handle: Int?
  var high: Bool?
  var ns: UInt64?
  var protocolVersion: Int?
  var server: String?
  var chips: [Chip]?
  var chip: String?
  var label: String?
  var offset: Int?
  var name: String?

  enum CodingKeys: String, CodingKey {
    case id, ok, error, detail, event, handle, high, ns, server, chips, chip, label, offset, name
    case protocolVersion = "protocol"
  }
}

// MARK: - The socket

private struct SocketFailure: Error {
  var code: Int32
  var text: String
}

/// A connected Unix stream socket. Only the reader thread closes it, after its last recv;
/// sends and shutdowns are refused from then on, so a reused descriptor number is never
/// touched.
private final class UnixSocket: Sendable {
  let fd: Int32
  private let state = Mutex(true)

  init(connectingTo path: String, sendTimeoutSeconds: Double) throws(SocketFailure) {
    var address = sockaddr_un()
    let bytes = Array(path.utf8)
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    guard !bytes.isEmpty, bytes.count < capacity else {
      throw SocketFailure(code: ENAMETOOLONG, text: "a socket path must be 1 to \(capacity - 1) bytes")
    }
    #if canImport(Glibc)
      let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    #else
      let fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)
    #endif
    guard fd >= 0 else { throw SocketFailure(code: errno, text: errnoText(errno)) }
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
    // A server that stops reading fails a send after this long instead of blocking it.
    let seconds = max(1, Int(sendTimeoutSeconds.rounded(.up)))
    var limit = timeval(tv_sec: seconds, tv_usec: 0)
    _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    let result = withUnsafePointer(to: &address) { pointer in
      pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
      }
    }
    if result != 0 {
      let code = errno
      _ = closeDescriptor(fd)
      throw SocketFailure(code: code, text: errnoText(code))
    }
    self.fd = fd
  }

  /// Sends all of `bytes`; the errno when it cannot.
  func send(_ bytes: Data) -> Int32? {
    state.withLock { isOpen -> Int32? in
      guard isOpen else { return EPIPE }
      return bytes.withUnsafeBytes { raw -> Int32? in
        var sent = 0
        while sent < raw.count {
          let n = sendBytes(fd, raw.baseAddress! + sent, raw.count - sent)
          if n < 0 {
            if errno == EINTR { continue }
            return errno == EAGAIN || errno == EWOULDBLOCK ? ETIMEDOUT : errno
          }
          sent += n
        }
        return nil
      }
    }
  }

  /// Wakes the reader and makes the server see the connection end.
  func shutdown() {
    state.withLock { isOpen in
      if isOpen { _ = shutdownSocket(fd) }
    }
  }

  func close() {
    state.withLock { isOpen in
      if isOpen { _ = closeDescriptor(fd) }
      isOpen = false
    }
  }
}

// The C calls by other names: inside UnixSocket, close, send and shutdown are its own.
private func closeDescriptor(_ fd: Int32) -> Int32 { close(fd) }
private func shutdownSocket(_ fd: Int32) -> Int32 { shutdown(fd, Int32(SHUT_RDWR)) }
private func sendBytes(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
  send(fd, bytes, count, Int32(MSG_NOSIGNAL))
}

private func errnoText(_ code: Int32) -> String {
  String(cString: strerror(code))
}

private func monotonicSeconds() -> Double {
  var now = timespec()
  clock_gettime(CLOCK_MONOTONIC, &now)
  return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

private func formatSeconds(_ seconds: Double) -> String {
  seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)
}

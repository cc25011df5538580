// The emulated backend against a real line server in another process
// (Tests/Integration/gpio_line_server.py): chips, finding and holding lines, edges with
// CLOCK_MONOTONIC timestamps, active-low as the server sees it, and what happens when the
// server is not there, stops answering or goes away. Every wait is bounded.

import Dispatch
import Foundation
import GPIO
import Synchronization
import Testing

/// `python3 Tests/Integration/gpio_line_server.py --socket PATH` as a child process, driven
/// over its stdin ("set", "level", "holder") as the building would drive the pins.
private final class LineServerProcess: @unchecked Sendable {
  // @unchecked: `lines` and `writes` are guarded by `condition`; the rest is set in init.
  let socketPath: String
  private let process = Process()
  private let input = Pipe()
  private let output = Pipe()
  private let condition = NSCondition()
  private var lines: [String] = []
  private var writes: [String] = []
  private var partial = Data()

  init() throws {
    // A write to the stdin of a server that was killed must fail, not kill the test run.
    signal(SIGPIPE, SIG_IGN)
    let tag = UUID().uuidString.prefix(8).lowercased()
    socketPath = "/tmp/mge-gpio-\(tag).sock"
    let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [
      "python3", repo.appendingPathComponent("Tests/Integration/gpio_line_server.py").path, "--socket", socketPath,
    ]
    process.standardInput = input
    process.standardOutput = output
    output.fileHandleForReading.readabilityHandler = { [weak self] handle in
      let data = handle.availableData
      guard let self else { return }
      if data.isEmpty {
        handle.readabilityHandler = nil
        return
      }
      self.take(data)
    }
    try process.run()
    _ = try next("ready")
  }

  deinit {
    if process.isRunning {
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
    }
    try? FileManager.default.removeItem(atPath: socketPath)
  }

  private func take(_ data: Data) {
    condition.lock()
    defer { condition.unlock() }
    partial.append(data)
    while let end = partial.firstIndex(of: 0x0A) {
      let line = String(decoding: partial[partial.startIndex..<end], as: UTF8.self)
      partial.removeSubrange(partial.startIndex...end)
      if line.hasPrefix("write ") { writes.append(String(line.dropFirst(6))) } else { lines.append(line) }
    }
    condition.broadcast()
  }

  /// The next answer line, which must start with `prefix` (within 5 s).
  private func next(_ prefix: String) throws -> String {
    condition.lock()
    defer { condition.unlock() }
    let deadline = Date(timeIntervalSinceNow: 5)
    while lines.isEmpty {
      guard condition.wait(until: deadline) else { throw ServerProblem("no answer from the line server") }
    }
    let line = lines.removeFirst()
    guard line.hasPrefix(prefix) else { throw ServerProblem("expected \(prefix), got \(line)") }
    return line
  }

  private func command(_ text: String, answer prefix: String) throws -> String {
    try input.fileHandleForWriting.write(contentsOf: Data((text + "\n").utf8))
    return try next(prefix)
  }

  /// Drives an input's electrical level (an edge to its holder if it changes).
  func set(_ name: String, _ high: Bool, at: UInt64? = nil) throws {
    _ = try command("set \(name) \(high ? 1 : 0)\(at.map { " \($0)" } ?? "")", answer: "ok")
  }

  /// A line's electrical level as the server has it.
  func level(_ name: String) throws -> Bool {
    try command("level \(name)", answer: "level \(name) ").hasSuffix(" 1")
  }

  /// The line's consumer on the server, or nil.
  func holder(_ name: String) throws -> String? {
    let consumer = String(try command("holder \(name)", answer: "holder \(name) ").dropFirst(8 + name.count))
    return consumer == "-" ? nil : consumer
  }

  /// The writes the server has reported ("GPIO5 1"), waiting up to 2 s for `count` of them.
  func writesSeen(atLeast count: Int) -> [String] {
    condition.lock()
    defer { condition.unlock() }
    let deadline = Date(timeIntervalSinceNow: 2)
    while writes.count < count && condition.wait(until: deadline) {}
    return writes
  }

  func post(_ signalNumber: Int32) { kill(process.processIdentifier, signalNumber) }

  /// Stops the server with SIGSTOP and waits (up to 5 s) until every one of its threads is
  /// stopped. kill() returns once the signal is queued; the group stop only reaches the
  /// client threads after the thread that took the signal has run, and on a loaded machine a
  /// client thread can answer one more request in between.
  func stopAndWait() throws {
    kill(process.processIdentifier, SIGSTOP)
    let tasks = "/proc/\(process.processIdentifier)/task"
    let deadline = ContinuousClock.now + .seconds(5)
    while ContinuousClock.now < deadline {
      let threads = (try? FileManager.default.contentsOfDirectory(atPath: tasks)) ?? []
      let states = threads.compactMap { threadState(at: "\(tasks)/\($0)/stat") }
      if !states.isEmpty && states.count == threads.count && states.allSatisfy({ $0 == "T" || $0 == "t" }) {
        return
      }
      usleep(2_000)
    }
    throw ServerProblem("the line server did not stop within 5 s")
  }

  /// The state letter of /proc/PID/task/TID/stat: the field after the ")" closing the name.
  private func threadState(at path: String) -> Character? {
    guard let stat = try? String(contentsOfFile: path, encoding: .utf8),
      let close = stat.lastIndex(of: ")")
    else { return nil }
    return stat[stat.index(after: close)...].first { $0 != " " }
  }

  /// Kills it outright (no goodbye on the socket but the kernel's) and waits for the exit.
  func killNow() {
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
  }
}

private struct ServerProblem: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}

/// What a call on another thread came back with.
private final class Outcome<Value: Sendable>: Sendable {
  let value = Mutex<Value?>(nil)
}

/// Runs `body` on a thread of its own; its result, or nil if it took longer than `seconds`.
private func onThread<Value: Sendable>(within seconds: Double, _ body: @escaping @Sendable () -> Value) -> Value? {
  let outcome = Outcome<Value>()
  let done = DispatchSemaphore(value: 0)
  Thread.detachNewThread {
    let value = body()
    outcome.value.withLock { $0 = value }
    done.signal()
  }
  guard done.wait(timeout: .now() + seconds) == .success else { return nil }
  return outcome.value.withLock { $0 }
}

private func named(_ name: String, activeLow: Bool = false, consumer: String = "microgrid-edge") -> LineRequest {
  LineRequest(chip: nil, line: .name(name), activeLow: activeLow, consumer: consumer)
}

@Suite struct EmulatedGPIOTests {
  // MARK: Chips and finding lines

  @Test("chips() lists the server's gpiochip0 \"pinctrl-bcm2711\" with GPIO0…GPIO57, and who holds what")
  func chipsFromTheServer() throws {
    let server = try LineServerProcess()
    let gpio = EmulatedGPIO(socketPath: server.socketPath)
    #expect(gpio.name.contains(server.socketPath))
    let chips = try gpio.chips()
    #expect(chips.count == 1)
    let chip = try #require(chips.first)
    #expect(chip.name == "gpiochip0")
    #expect(chip.label == "pinctrl-bcm2711")
    #expect(chip.path == "/dev/gpiochip0")
    #expect(chip.lines.map(\.name) == (0..<58).map { "GPIO\($0)" })
    #expect(chip.lines.map(\.offset) == Array(0..<58))
    #expect(chip.lines.allSatisfy { !$0.used && $0.consumer == nil && !$0.isOutput })

    let input = try gpio.requestInput(named("GPIO17", consumer: "transfer-switch"), edges: true)
    let output = try gpio.requestOutput(named("GPIO5", activeLow: true, consumer: "transfer-command"), initial: false)
    let lines = try gpio.chips()[0].lines
    #expect(lines[17].used && lines[17].consumer == "transfer-switch" && !lines[17].isOutput)
    #expect(lines[5].used && lines[5].consumer == "transfer-command" && lines[5].isOutput && lines[5].activeLow)
    #expect(lines.filter(\.used).count == 2)
    input.close()
    output.close()
    #expect(try gpio.chips()[0].lines.filter(\.used).isEmpty)
  }

  @Test("a line is found by name on any chip, and by offset on a chip's name, path, number or label")
  func everySpellingFindsTheSameLine() throws {
    let server = try LineServerProcess()
    let gpio = EmulatedGPIO(socketPath: server.socketPath)
    let requests = [
      LineRequest(chip: nil, line: .name("GPIO17"), consumer: "by-name"),
      LineRequest(chip: "gpiochip0", line: .offset(17), consumer: "by-chip-name"),
      LineRequest(chip: "/dev/gpiochip0", line: .offset(17), consumer: "by-path"),
      LineRequest(chip: "0", line: .offset(17), consumer: "by-number"),
      LineRequest(chip: "pinctrl-bcm2711", line: .offset(17), consumer: "by-label"),
      LineRequest(chip: "gpiochip0", line: .name("GPIO17"), consumer: "by-name-on-chip"),
    ]
    for request in requests {
      let input = try gpio.requestInput(request, edges: false)
      #expect(input.description == "\"GPIO17\" = line 17 on gpiochip0 (pinctrl-bcm2711)", "\(request)")
      #expect(try server.holder("GPIO17") == request.consumer, "\(request)")
      // The same wire: the server driving GPIO17 shows on this handle.
      try server.set("GPIO17", true)
      #expect(try input.read() == true)
      try server.set("GPIO17", false)
      #expect(try input.read() == false)
      input.close()
      // close() returns once the server has released it.
      #expect(try server.holder("GPIO17") == nil, "\(request)")
    }
  }

  // MARK: Refusals

  @Test("the server's refusals come back as .noChip, .noLine and .busy, naming the socket")
  func refusals() throws {
    let server = try LineServerProcess()
    let gpio = EmulatedGPIO(socketPath: server.socketPath)
    let noChip = try #require(
      gpioFailure { try gpio.requestInput(LineRequest(chip: "gpiochip4", line: .offset(17)), edges: false) })
    #expect(noChip.kind == .noChip)
    #expect(noChip.description.contains("gpiochip4") && noChip.description.contains("pinctrl-bcm2711"))
    #expect(noChip.detail.contains(server.socketPath))

    let pastTheEnd = try #require(
      gpioFailure { try gpio.requestOutput(LineRequest(chip: "gpiochip0", line: .offset(58)), initial: false) })
    #expect(pastTheEnd.kind == .noLine)
    #expect(pastTheEnd.description.contains("line 58") && pastTheEnd.detail.contains("57"))

    let unknown = try #require(gpioFailure { try gpio.requestInput(named("RELAY"), edges: true) })
    #expect(unknown.kind == .noLine)
    #expect(unknown.description.contains("RELAY"))

    let noChipGiven = try #require(
      gpioFailure { try gpio.requestInput(LineRequest(chip: nil, line: .offset(17)), edges: false) })
    #expect(noChipGiven.kind == .noChip)

    let first = try gpio.requestInput(named("GPIO22", consumer: "transfer-switch"), edges: true)
    let again = try #require(gpioFailure { try gpio.requestOutput(named("GPIO22", consumer: "relay"), initial: false) })
    #expect(again.kind == .busy)
    #expect(again.description.contains("transfer-switch") && !again.description.contains("\"relay\""))
    // Another process (another connection) is refused the same way.
    let other = EmulatedGPIO(socketPath: server.socketPath)
    let elsewhere = try #require(gpioFailure { try other.requestInput(named("GPIO22"), edges: false) })
    #expect(elsewhere.kind == .busy)
    #expect(try first.read() == false)
    first.close()
    let taken = try other.requestInput(named("GPIO22", consumer: "second"), edges: false)
    #expect(try server.holder("GPIO22") == "second")
    taken.close()
  }

  @Test("a closed line's read, write and wait throw .closed; a line without edges refuses to wait")
  func closedLines() throws {
    let server = try LineServerProcess()
    let gpio = EmulatedGPIO(socketPath: server.socketPath)
    let input = try gpio.requestInput(named("GPIO17"), edges: true)
    let output = try gpio.requestOutput(named("GPIO6"), initial: false)
    let plain = try gpio.requestInput(named("GPIO27"), edges: false)
    #expect(gpioFailure { try plain.waitForEdges(timeoutNanoseconds: 0) }?.kind == .refused)
    input.close()
    output.close()
    #expect(gpioFailure { try input.read() }?.kind == .closed)
    #expect(gpioFailure { try input.waitForEdges(timeoutNanoseconds: 0) }?.kind == .closed)
    #expect(gpioFailure { try output.write(true) }?.kind == .closed)
    #expect(try server.level("GPIO6") == false)
    input.close()  // twice is harmless
    #expect(try server.holder("GPIO17") == nil && server.holder("GPIO6") == nil)
    #expect(try server.holder("GPIO27") == "microgrid-edge")
  }

  // MARK: Edges

  @Test("edges arrive through waitForEdges with the server's CLOCK_MONOTONIC stamps, oldest first")
  func edgesWithMonotonicTimestamps() throws {
    let server = try LineServerProcess()
    let gpio = EmulatedGPIO(socketPath: server.socketPath)
    let input = try gpio.requestInput(named("GPIO17"), edges: true)
    #expect(try input.waitForEdges(timeoutNanoseconds: 0) == [])

    let before = gpio.nowNanoseconds()
    try server.set("GPIO17", true)
    let after = gpio.nowNanoseconds()
    let edges = try input.waitForEdges(timeoutNanoseconds: 2_000_000_000)
    #expect(edges.map(\.active) == [true])
    let stamp = try #require(edges.first).timestampNanoseconds
    #expect(stamp >= before && stamp <= after, "edge at \(stamp), set between \(before) and \(after)")

    // Stamps the server gives are kept exactly, in order; an unchanged level is no edge.
    let base = gpio.nowNanoseconds()
    try server.set("GPIO17", false, at: base + 1_000)
    try server.set("GPIO17", false, at: base + 2_000)
    try server.set("GPIO17", true, at: base + 3_000)
    try server.set("GPIO17", false, at: base + 4_000)
    _ = try server.level("GPIO17")
    var burst: [LineEdge] = []
    let deadline = ContinuousClock.now + .seconds(2)
    while burst.count < 3 && ContinuousClock.now < deadline {
      burst += try input.waitForEdges(timeoutNanoseconds: 100_000_000)
    }
    #expect(
      burst == [
        LineEdge(active: false, timestampNanoseconds: base + 1_000),
        LineEdge(active: true, timestampNanoseconds: base + 3_000),
        LineEdge(active: false, timestampNanoseconds: base + 4_000),
      ])
  }

  @Test("a reader blocked in waitForEdges wakes when the edge comes, and times out empty when none does")
  func blockedReaderWakes() throws {
    let server = try LineServerProcess()
    let gpio = EmulatedGPIO(socketPath: server.socketPath)
    let input = try gpio.requestInput(named("GPIO23"), edges: true)
    let began = ContinuousClock.now
    #expect(try input.waitForEdges(timeoutNanoseconds: 150_000_000) == [])
    let waited = ContinuousClock.now - began
    #expect(waited >= .milliseconds(140) && waited < .seconds(1), "\(waited)")

    let ready = DispatchSemaphore(value: 0)
    let outcome = Outcome<Result<[LineEdge], GPIOError>>()
    let done = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
      ready.signal()
      let r = Result { () throws(GPIOError) in try input.waitForEdges(timeoutNanoseconds: 4_000_000_000) }
      outcome.value.withLock { $0 = r }
      done.signal()
    }
    ready.wait()
    Thread.sleep(forTimeInterval: 0.1)
    let edgeAt = ContinuousClock.now
    try server.set("GPIO23", true)
    #expect(done.wait(timeout: .now() + 3) == .success)
    #expect(ContinuousClock.now - edgeAt < .seconds(1))
    let result = try #require(outcome.value.withLock { $0 })
    #expect(try result.get().map(\.active) == [true])
  }

  // MARK: Levels

  @Test("active-low: reads and edges are logical, writes reach the server as electrical levels")
  func activeLowAsTheServerSeesIt() throws {
    let server = try LineServerProcess()
    let gpio = EmulatedGPIO(socketPath: server.socketPath)
    // An emergency stop wired to ground: low on the wire is "pressed" (active).
    let stop = try gpio.requestInput(
      LineRequest(chip: "gpiochip0", line: .name("GPIO24"), activeLow: true, bias: .pullUp), edges: true)
    #expect(try stop.read() == true)  // the server's idle level is low; bias is not its business
    try server.set("GPIO24", true)
    #expect(try stop.read() == false)
    let edges = try stop.waitForEdges(timeoutNanoseconds: 2_000_000_000)
    #expect(edges.map(\.active) == [false])

    let command = try gpio.requestOutput(named("GPIO5", activeLow: true), initial: false)
    #expect(try server.level("GPIO5") == true)  // inactive on an active-low line is high
    try command.write(true)
    #expect(try server.level("GPIO5") == false)
    try command.write(false)
    #expect(try server.level("GPIO5") == true)
    let relay = try gpio.requestOutput(named("GPIO6"), initial: true)
    #expect(try server.level("GPIO6") == true)
    try relay.write(false)
    #expect(try server.level("GPIO6") == false)
    // The server's on_output saw every level, the requests' initial ones included.
    #expect(server.writesSeen(atLeast: 5) == ["GPIO5 1", "GPIO5 0", "GPIO5 1", "GPIO6 1", "GPIO6 0"])
  }

  @Test("threads reading and writing their own lines at once all get their own answers")
  func concurrentUse() throws {
    let server = try LineServerProcess()
    let gpio = EmulatedGPIO(socketPath: server.socketPath)
    let pairs = try (0..<6).map { i in
      (
        try gpio.requestOutput(named("GPIO\(i + 2)"), initial: false),
        try gpio.requestInput(named("GPIO\(i + 20)"), edges: true)
      )
    }
    for i in 0..<6 where i % 2 == 1 { try server.set("GPIO\(i + 20)", true) }
    let failures = Outcome<Int>()
    failures.value.withLock { $0 = 0 }
    DispatchQueue.concurrentPerform(iterations: 6) { i in
      let (output, input) = pairs[i]
      for round in 0..<40 {
        let wrong: Bool
        do throws(GPIOError) {
          try output.write(round % 2 == 0)
          wrong = try input.read() != (i % 2 == 1)
        } catch {
          wrong = true
        }
        if wrong { failures.value.withLock { $0! += 1 } }
      }
    }
    #expect(failures.value.withLock { $0 } == 0)
    for i in 0..<6 { #expect(try server.level("GPIO\(i + 2)") == false) }
  }

  // MARK: No server, a stalled server, a server that goes away

  @Test("no socket: .noChip naming the socket, at once")
  func missingSocket() throws {
    let path = "/tmp/mge-gpio-absent-\(UUID().uuidString.prefix(8)).sock"
    let gpio = EmulatedGPIO(socketPath: path)
    let began = ContinuousClock.now
    let chips = try #require(gpioFailure { try gpio.chips() })
    #expect(chips.kind == .noChip)
    #expect(chips.description.contains(path))
    #expect(chips.description.contains("No such file or directory"))
    let input = try #require(gpioFailure { try gpio.requestInput(named("GPIO17"), edges: true) })
    #expect(input.kind == .noChip)
    #expect(input.description.contains(path) && input.description.contains("GPIO17"))
    let output = try #require(gpioFailure { try gpio.requestOutput(named("GPIO5"), initial: false) })
    #expect(output.kind == .noChip)
    #expect(ContinuousClock.now - began < .seconds(1))
  }

  @Test("a server that stops answering costs one call its answer timeout (.io), and then answers again")
  func stalledServer() throws {
    let server = try LineServerProcess()
    let gpio = EmulatedGPIO(socketPath: server.socketPath, answerTimeoutSeconds: 0.5)
    let input = try gpio.requestInput(named("GPIO17"), edges: true)
    defer { server.post(SIGCONT) }
    try server.stopAndWait()
    let began = ContinuousClock.now
    let error = try #require(gpioFailure { try input.read() })
    #expect(error.kind == .io)
    #expect(error.description.contains(server.socketPath) && error.description.contains("did not answer"))
    #expect(ContinuousClock.now - began < .seconds(2))
    server.post(SIGCONT)
    // The late answer is dropped; the next call gets its own.
    try server.set("GPIO17", true)
    #expect(try input.read() == true)
    #expect(try input.waitForEdges(timeoutNanoseconds: 2_000_000_000).map(\.active) == [true])
  }

  @Test("a server that goes away mid-wait: the waiter gets .io naming the socket at once, then every call does")
  func serverGoesAwayMidWait() throws {
    let server = try LineServerProcess()
    let gpio = EmulatedGPIO(socketPath: server.socketPath)
    let input = try gpio.requestInput(named("GPIO17"), edges: true)
    let output = try gpio.requestOutput(named("GPIO5"), initial: false)
    let ready = DispatchSemaphore(value: 0)
    let outcome = Outcome<Result<[LineEdge], GPIOError>>()
    let done = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
      ready.signal()
      let r = Result { () throws(GPIOError) in try input.waitForEdges(timeoutNanoseconds: 5_000_000_000) }
      outcome.value.withLock { $0 = r }
      done.signal()
    }
    ready.wait()
    Thread.sleep(forTimeInterval: 0.1)
    let killedAt = ContinuousClock.now
    server.killNow()
    #expect(done.wait(timeout: .now() + 4) == .success, "the wait did not end when the server went away")
    #expect(ContinuousClock.now - killedAt < .seconds(2))
    let result = try #require(outcome.value.withLock { $0 })
    guard case .failure(let error) = result else {
      Issue.record("the wait returned \(result) after the server went away")
      return
    }
    #expect(error.kind == .io)
    #expect(error.description.contains(server.socketPath) && error.description.contains("went away"))

    #expect(gpioFailure { try input.read() }?.kind == .io)
    #expect(gpioFailure { try input.waitForEdges(timeoutNanoseconds: 0) }?.kind == .io)
    let write = try #require(gpioFailure { try output.write(true) })
    #expect(write.kind == .io && write.description.contains(server.socketPath))
    // A new request tries again; nobody is listening on the socket any more.
    let again = try #require(
      onThread(within: 3) { gpioFailure { try gpio.requestInput(named("GPIO22"), edges: true) } } ?? nil)
    #expect(again.kind == .noChip && again.description.contains(server.socketPath))
    input.close()
    output.close()
  }
}

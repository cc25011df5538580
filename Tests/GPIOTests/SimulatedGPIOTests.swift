// The simulated backend behaves like the kernel's character device wherever the appliance can
// tell: how lines are found, who holds them, levels, bias, edges and their timestamps.

import Dispatch
import Foundation
import GPIO
import Synchronization
import Testing

private func named(_ name: String, consumer: String = "microgrid-edge") -> LineRequest {
  LineRequest(chip: nil, line: .name(name), consumer: consumer)
}

/// What a reader thread saw.
private final class ReaderResult: Sendable {
  let value = Mutex<(edges: [LineEdge], seconds: Double)?>(nil)
}

@Suite struct SimulatedGPIOTests {
  // MARK: Chips and finding lines

  @Test("raspberryPi() lists gpiochip0 \"pinctrl-bcm2711\" with 58 lines GPIO0…GPIO57")
  func raspberryPiChip() throws {
    let gpio = SimulatedGPIO.raspberryPi()
    let chips = try gpio.chips()
    #expect(chips.count == 1)
    let chip = try #require(chips.first)
    #expect(chip.name == "gpiochip0")
    #expect(chip.label == "pinctrl-bcm2711")
    #expect(chip.path == "/dev/gpiochip0")
    #expect(chip.lines.count == 58)
    #expect(chip.lines.map(\.name) == (0..<58).map { "GPIO\($0)" })
    #expect(chip.lines.map(\.offset) == Array(0..<58))
    #expect(chip.lines.allSatisfy { !$0.used && $0.consumer == nil && !$0.isOutput })
  }

  @Test("a line is found by name on any chip, and by offset on a chip's name, path, number or label")
  func everySpellingFindsTheSameLine() throws {
    let gpio = SimulatedGPIO.raspberryPi(manualClock: true)
    let requests = [
      LineRequest(chip: nil, line: .name("GPIO17")),
      LineRequest(chip: "gpiochip0", line: .offset(17)),
      LineRequest(chip: "/dev/gpiochip0", line: .offset(17)),
      LineRequest(chip: "0", line: .offset(17)),
      LineRequest(chip: "pinctrl-bcm2711", line: .offset(17)),
      LineRequest(chip: "gpiochip0", line: .name("GPIO17")),
    ]
    for request in requests {
      let input = try gpio.requestInput(request, edges: false)
      #expect(input.description.contains("line 17 on gpiochip0"), "\(request): \(input.description)")
      let used = try gpio.chips()[0].lines.filter(\.used).map(\.offset)
      #expect(used == [17], "\(request)")
      // It is the same wire: driving GPIO17 shows on this handle.
      gpio.drive(line: "GPIO17", high: true)
      #expect(try input.read() == true)
      gpio.drive(line: "GPIO17", high: false)
      #expect(try input.read() == false)
      input.close()
    }
  }

  @Test("a missing chip is .noChip, naming the chip asked for and listing the chips there")
  func missingChip() throws {
    let gpio = SimulatedGPIO.raspberryPi()
    let error = try #require(
      gpioFailure { try gpio.requestInput(LineRequest(chip: "gpiochip4", line: .offset(17)), edges: false) })
    #expect(error.kind == .noChip)
    #expect(error.description.contains("gpiochip4"))
    #expect(error.description.contains("gpiochip0"))
    #expect(error.description.contains("pinctrl-bcm2711"))

    let output = try #require(
      gpioFailure { try gpio.requestOutput(LineRequest(chip: "9", line: .name("GPIO5")), initial: false) })
    #expect(output.kind == .noChip)
    #expect(output.description.contains("\"9\""))
  }

  @Test("offset 99 on gpiochip0 is .noLine naming the chip")
  func offsetPastTheEnd() throws {
    let gpio = SimulatedGPIO.raspberryPi()
    let error = try #require(
      gpioFailure { try gpio.requestInput(LineRequest(chip: "gpiochip0", line: .offset(99)), edges: true) })
    #expect(error.kind == .noLine)
    #expect(error.description.contains("line 99"))
    // What it says about the chip names the chip found, whichever way it was asked for.
    #expect(error.detail.contains("gpiochip0"))
    #expect(error.detail.contains("57"))
    let byLabel = try #require(
      gpioFailure { try gpio.requestOutput(LineRequest(chip: "pinctrl-bcm2711", line: .offset(99)), initial: false) })
    #expect(byLabel.kind == .noLine)
    #expect(byLabel.description.contains("gpiochip0"))
  }

  @Test("an unknown line name is .noLine, with or without a chip")
  func unknownName() throws {
    let gpio = SimulatedGPIO.raspberryPi()
    let anywhere = try #require(gpioFailure { try gpio.requestInput(named("GPIO99"), edges: false) })
    #expect(anywhere.kind == .noLine)
    #expect(anywhere.description.contains("GPIO99"))
    let onChip = try #require(
      gpioFailure {
        try gpio.requestOutput(LineRequest(chip: "gpiochip0", line: .name("RELAY")), initial: false)
      })
    #expect(onChip.kind == .noLine)
    #expect(onChip.description.contains("RELAY"))
  }

  @Test("a line by offset with no chip is .noChip")
  func offsetWithoutChip() throws {
    let gpio = SimulatedGPIO.raspberryPi()
    let error = try #require(
      gpioFailure { try gpio.requestInput(LineRequest(chip: nil, line: .offset(17)), edges: false) })
    #expect(error.kind == .noChip)
    #expect(error.description.contains("line 17"))
  }

  // MARK: Who holds a line

  @Test("a line requested twice is .busy, naming the first consumer")
  func requestedTwiceIsBusy() throws {
    let gpio = SimulatedGPIO.raspberryPi()
    let first = try gpio.requestInput(named("GPIO17", consumer: "transfer-switch"), edges: true)
    defer { first.close() }
    let error = try #require(
      gpioFailure {
        try gpio.requestOutput(LineRequest(chip: "gpiochip0", line: .offset(17), consumer: "relay"), initial: false)
      })
    #expect(error.kind == .busy)
    #expect(error.description.contains("transfer-switch"))
    #expect(!error.description.contains("\"relay\""))
    // The first holder still has it.
    #expect(try first.read() == false)
  }

  @Test("a line reserved by another program is .busy, naming that program")
  func reservedLineIsBusy() throws {
    let gpio = SimulatedGPIO.raspberryPi()
    gpio.reserve(line: "GPIO4", by: "w1-gpio")
    let error = try #require(gpioFailure { try gpio.requestInput(named("GPIO4"), edges: false) })
    #expect(error.kind == .busy)
    #expect(error.description.contains("w1-gpio"))
    let line = try #require(try gpio.chips()[0].lines.first { $0.name == "GPIO4" })
    #expect(line.used)
    #expect(line.consumer == "w1-gpio")
  }

  @Test("after close() the line can be requested again, and the closed handle's read, write and wait throw .closed")
  func closeReleasesTheLine() throws {
    let gpio = SimulatedGPIO.raspberryPi(manualClock: true)
    let input = try gpio.requestInput(named("GPIO17", consumer: "first"), edges: true)
    input.close()
    #expect(try gpio.chips()[0].lines[17].used == false)
    #expect(gpioFailure { try input.read() }?.kind == .closed)
    #expect(gpioFailure { try input.waitForEdges(timeoutNanoseconds: 0) }?.kind == .closed)

    let output = try gpio.requestOutput(named("GPIO17", consumer: "second"), initial: false)
    #expect(try gpio.chips()[0].lines[17].consumer == "second")
    // The old handle stays closed even though the line is held again.
    #expect(gpioFailure { try input.read() }?.kind == .closed)
    output.close()
    #expect(gpioFailure { try output.write(true) }?.kind == .closed)
    #expect(gpio.isHigh(line: "GPIO17") == false)
    #expect(gpio.takeWrites().count == 1)  // only the initial level, not the refused write

    let again = try gpio.requestInput(named("GPIO17", consumer: "third"), edges: false)
    #expect(try again.read() == false)
  }

  @Test("closing a handle wakes its waiting reader with .closed")
  func closeWakesAWaitingReader() throws {
    let gpio = SimulatedGPIO.raspberryPi(manualClock: true)
    let input = try gpio.requestInput(named("GPIO22"), edges: true)
    let waiting = DispatchSemaphore(value: 0)
    let done = DispatchSemaphore(value: 0)
    let box = ClosedBox()
    DispatchQueue.global().async {
      waiting.signal()
      box.kind.withLock { $0 = gpioFailure { try input.waitForEdges(timeoutNanoseconds: 2_000_000_000) }?.kind }
      done.signal()
    }
    waiting.wait()
    Thread.sleep(forTimeInterval: 0.05)
    let began = ContinuousClock.now
    input.close()
    #expect(done.wait(timeout: .now() + 5) == .success)
    #expect(ContinuousClock.now - began < .seconds(1))
    #expect(box.kind.withLock { $0 } == .closed)
  }

  // MARK: Levels

  @Test("an active-low input reads true when the wire is driven low")
  func activeLowInput() throws {
    let gpio = SimulatedGPIO.raspberryPi()
    gpio.drive(line: "GPIO5", high: true)
    let input = try gpio.requestInput(LineRequest(chip: nil, line: .name("GPIO5"), activeLow: true), edges: false)
    #expect(try input.read() == false)
    gpio.drive(line: "GPIO5", high: false)
    #expect(try input.read() == true)
    let info = try gpio.chips()[0].lines[5]
    #expect(info.activeLow)
  }

  @Test("an active-low output written true drives the wire low")
  func activeLowOutput() throws {
    let gpio = SimulatedGPIO.raspberryPi()
    let output = try gpio.requestOutput(LineRequest(chip: nil, line: .name("GPIO6"), activeLow: true), initial: false)
    #expect(gpio.isHigh(line: "GPIO6") == true)
    try output.write(true)
    #expect(gpio.isHigh(line: "GPIO6") == false)
    try output.write(false)
    #expect(gpio.isHigh(line: "GPIO6") == true)

    let plain = try gpio.requestOutput(named("GPIO7"), initial: true)
    #expect(gpio.isHigh(line: "GPIO7") == true)
    try plain.write(false)
    #expect(gpio.isHigh(line: "GPIO7") == false)
  }

  @Test("pull-up bias makes an unconnected input read high, pull-down low")
  func biasSetsAnUnconnectedInput() throws {
    let gpio = SimulatedGPIO.raspberryPi()
    let up = try gpio.requestInput(LineRequest(chip: nil, line: .name("GPIO23"), bias: .pullUp), edges: false)
    #expect(try up.read() == true)
    #expect(gpio.isHigh(line: "GPIO23"))
    // Active-low with a pull-up: an open contact is inactive.
    let openContact = try gpio.requestInput(
      LineRequest(chip: nil, line: .name("GPIO24"), activeLow: true, bias: .pullUp), edges: false)
    #expect(try openContact.read() == false)

    gpio.drive(line: "GPIO25", high: true)
    let down = try gpio.requestInput(LineRequest(chip: nil, line: .name("GPIO25"), bias: .pullDown), edges: false)
    #expect(try down.read() == false)
  }

  // MARK: Edges

  @Test("drive() at given timestamps queues edges in order with those timestamps and logical levels")
  func edgesCarryTimestampsAndLogicalLevels() throws {
    let gpio = SimulatedGPIO.raspberryPi(manualClock: true)
    let plain = try gpio.requestInput(named("GPIO17"), edges: true)
    let inverted = try gpio.requestInput(LineRequest(chip: nil, line: .name("GPIO27"), activeLow: true), edges: true)
    let times: [UInt64] = [2_000_000_000, 2_000_500_000, 2_003_000_000, 2_100_000_000]
    for (i, t) in times.enumerated() {
      gpio.drive(line: "GPIO17", high: i % 2 == 0, at: t)
      gpio.drive(line: "GPIO27", high: i % 2 == 0, at: t)
    }
    let expected = times.enumerated().map { i, t in LineEdge(active: i % 2 == 0, timestampNanoseconds: t) }
    #expect(try plain.waitForEdges(timeoutNanoseconds: 0) == expected)
    let expectedInverted = times.enumerated().map { i, t in LineEdge(active: i % 2 != 0, timestampNanoseconds: t) }
    #expect(try inverted.waitForEdges(timeoutNanoseconds: 0) == expectedInverted)
    // Taken once: the queue is empty now.
    #expect(try plain.waitForEdges(timeoutNanoseconds: 0) == [])
  }

  @Test("with a manual clock an edge driven without a timestamp is stamped with the clock's time")
  func edgesUseTheManualClock() throws {
    let gpio = SimulatedGPIO.raspberryPi(manualClock: true)
    let input = try gpio.requestInput(named("GPIO17"), edges: true)
    let before = gpio.nowNanoseconds()
    gpio.advance(nanoseconds: 250_000_000)
    #expect(gpio.nowNanoseconds() == before + 250_000_000)
    gpio.drive(line: "GPIO17", high: true)
    #expect(
      try input.waitForEdges(timeoutNanoseconds: 0) == [
        LineEdge(active: true, timestampNanoseconds: before + 250_000_000)
      ])
  }

  @Test("driving a line to the level it already has queues no edge")
  func noEdgeWithoutAChange() throws {
    let gpio = SimulatedGPIO.raspberryPi(manualClock: true)
    let input = try gpio.requestInput(named("GPIO17"), edges: true)
    gpio.drive(line: "GPIO17", high: false, at: 2_000_000_000)
    #expect(try input.waitForEdges(timeoutNanoseconds: 0) == [])
    gpio.drive(line: "GPIO17", high: true, at: 2_000_000_001)
    gpio.drive(line: "GPIO17", high: true, at: 2_000_000_002)
    #expect(
      try input.waitForEdges(timeoutNanoseconds: 0) == [LineEdge(active: true, timestampNanoseconds: 2_000_000_001)])
  }

  @Test("an input requested without edges queues none")
  func noEdgesWhenNotRequested() throws {
    let gpio = SimulatedGPIO.raspberryPi(manualClock: true)
    let input = try gpio.requestInput(named("GPIO17"), edges: false)
    gpio.drive(line: "GPIO17", high: true, at: 2_000_000_000)
    #expect(try input.waitForEdges(timeoutNanoseconds: 0) == [])
    #expect(try input.read() == true)
  }

  @Test("waitForEdges with a zero timeout returns at once when there are none")
  func zeroTimeoutReturnsAtOnce() throws {
    let gpio = SimulatedGPIO.raspberryPi(manualClock: true)
    let input = try gpio.requestInput(named("GPIO17"), edges: true)
    let began = ContinuousClock.now
    #expect(try input.waitForEdges(timeoutNanoseconds: 0) == [])
    #expect(ContinuousClock.now - began < .milliseconds(500))
  }

  @Test("a short timeout with no edges returns empty after about that long")
  func shortTimeoutExpires() throws {
    let gpio = SimulatedGPIO.raspberryPi(manualClock: true)
    let input = try gpio.requestInput(named("GPIO17"), edges: true)
    let began = ContinuousClock.now
    #expect(try input.waitForEdges(timeoutNanoseconds: 50_000_000) == [])
    let waited = ContinuousClock.now - began
    #expect(waited >= .milliseconds(45))
    #expect(waited < .seconds(2))
  }

  @Test("a reader waiting on another thread wakes when drive() is called")
  func waitingReaderWakes() throws {
    let gpio = SimulatedGPIO.raspberryPi(manualClock: true)
    let input = try gpio.requestInput(named("GPIO17"), edges: true)
    let result = ReaderResult()
    let waiting = DispatchSemaphore(value: 0)
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
      waiting.signal()
      let began = ContinuousClock.now
      let edges = (try? input.waitForEdges(timeoutNanoseconds: 2_000_000_000)) ?? []
      let elapsed = ContinuousClock.now - began
      let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
      result.value.withLock { $0 = (edges, seconds) }
      done.signal()
    }
    thread.start()
    waiting.wait()
    Thread.sleep(forTimeInterval: 0.1)  // let it block in the wait
    gpio.drive(line: "GPIO17", high: true, at: 3_000_000_000)
    #expect(done.wait(timeout: .now() + 5) == .success)
    let seen = try #require(result.value.withLock { $0 })
    #expect(seen.edges == [LineEdge(active: true, timestampNanoseconds: 3_000_000_000)])
    #expect(seen.seconds < 1.0, "the reader took \(seen.seconds) s: it ran to the timeout, not woken by the edge")
  }

  @Test("an edge on another line does not end a reader's wait")
  func otherLinesEdgesDoNotWake() throws {
    let gpio = SimulatedGPIO.raspberryPi(manualClock: true)
    let input = try gpio.requestInput(named("GPIO17"), edges: true)
    let other = try gpio.requestInput(named("GPIO18"), edges: true)
    defer { other.close() }
    let result = ReaderResult()
    let done = DispatchSemaphore(value: 0)
    DispatchQueue.global().async {
      let edges = (try? input.waitForEdges(timeoutNanoseconds: 300_000_000)) ?? []
      result.value.withLock { $0 = (edges, 0) }
      done.signal()
    }
    Thread.sleep(forTimeInterval: 0.05)
    gpio.drive(line: "GPIO18", high: true, at: 3_000_000_000)
    #expect(done.wait(timeout: .now() + 5) == .success)
    #expect(result.value.withLock { $0?.edges } == [])
    #expect(try other.waitForEdges(timeoutNanoseconds: 0).count == 1)
  }

  // MARK: What gpio-check and the tests see

  @Test("chips() shows a requested line as used with its consumer, and outputs as outputs")
  func chipsShowsHolders() throws {
    let gpio = SimulatedGPIO.raspberryPi()
    let input = try gpio.requestInput(named("GPIO17", consumer: "grid-sense"), edges: true)
    let output = try gpio.requestOutput(
      LineRequest(chip: "gpiochip0", line: .offset(22), activeLow: true, consumer: "relay-1"), initial: false)
    let lines = try gpio.chips()[0].lines
    #expect(lines[17].used)
    #expect(lines[17].consumer == "grid-sense")
    #expect(!lines[17].isOutput)
    #expect(lines[22].used)
    #expect(lines[22].consumer == "relay-1")
    #expect(lines[22].isOutput)
    #expect(lines[22].activeLow)
    #expect(lines.filter(\.used).map(\.offset) == [17, 22])

    input.close()
    output.close()
    let after = try gpio.chips()[0].lines
    #expect(!after[17].used && after[17].consumer == nil)
    #expect(!after[22].used && after[22].consumer == nil && !after[22].isOutput)
  }

  @Test("takeWrites() records output writes in order, and clears them")
  func takeWritesRecordsInOrder() throws {
    let gpio = SimulatedGPIO.raspberryPi(manualClock: true)
    let t0 = gpio.nowNanoseconds()
    let relay = try gpio.requestOutput(named("GPIO22"), initial: false)
    let contactor = try gpio.requestOutput(
      LineRequest(chip: nil, line: .name("GPIO23"), activeLow: true), initial: false)
    gpio.advance(nanoseconds: 1_000)
    try relay.write(true)
    gpio.advance(nanoseconds: 1_000)
    try contactor.write(true)
    try relay.write(false)
    let writes = gpio.takeWrites()
    #expect(writes.map(\.offset) == [22, 23, 22, 23, 22])
    #expect(writes.map(\.active) == [false, false, true, true, false])
    #expect(writes.allSatisfy { $0.chip == "gpiochip0" })
    #expect(writes.map(\.timestampNanoseconds) == [t0, t0, t0 + 1_000, t0 + 2_000, t0 + 2_000])
    #expect(gpio.takeWrites() == [])
    try relay.write(true)
    #expect(gpio.takeWrites().map(\.active) == [true])
  }
}

private final class ClosedBox: Sendable {
  let kind = Mutex<GPIOError.Kind?>(nil)
}

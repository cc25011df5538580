// The libgpiod backend's error paths, on a machine without GPIO chips: each test points the
// backend at a temporary directory standing in for /dev and puts in it only what the case needs.

import Foundation
import GPIO
import Testing

@Suite struct LibgpiodBackendTests {
  @Test func nameIsTheLibraryVersion() {
    #expect(LibgpiodBackend().name.hasPrefix("libgpiod 1.6"))
  }

  @Test func clockMovesForward() {
    let backend = LibgpiodBackend()
    let first = backend.nowNanoseconds()
    #expect(first > 0)
    #expect(backend.nowNanoseconds() >= first)
  }

  // MARK: No chips at all

  @Test func emptyDirectoryListsNoChips() throws {
    let dev = try DeviceDirectory()
    defer { dev.remove() }
    #expect(try LibgpiodBackend(devicePrefix: dev.path).chips() == [])
  }

  @Test func missingDirectoryListsNoChips() throws {
    #expect(try LibgpiodBackend(devicePrefix: "/nonexistent-\(UUID())").chips() == [])
  }

  @Test func missingChipIsNamedByItsPath() throws {
    let dev = try DeviceDirectory()
    defer { dev.remove() }
    let backend = LibgpiodBackend(devicePrefix: dev.path)
    let spellings = ["gpiochip0": "gpiochip0", "0": "gpiochip0", "\(dev.path)/gpiochip7": "gpiochip7"]
    for (chip, file) in spellings {
      let request = LineRequest(chip: chip, line: .offset(17))
      let input = try #require(gpioFailure { try backend.requestInput(request, edges: true) })
      #expect(input.kind == .noChip)
      #expect(input.errno == ENOENT)
      #expect(input.description.contains("\(dev.path)/\(file) does not exist"))
      #expect(input.description.contains("no gpiochip devices in \(dev.path)"))

      let output = try #require(gpioFailure { try backend.requestOutput(request, initial: false) })
      #expect(output.kind == .noChip)
      #expect(output.description.contains("\(dev.path)/\(file)"))
    }
  }

  @Test func missingLabelIsNamed() throws {
    let dev = try DeviceDirectory()
    defer { dev.remove() }
    let request = LineRequest(chip: "pinctrl-bcm2711", line: .offset(17))
    let backend = LibgpiodBackend(devicePrefix: dev.path)
    let error = try #require(gpioFailure { try backend.requestInput(request, edges: false) })
    #expect(error.kind == .noChip)
    #expect(error.description.contains("chip labelled \"pinctrl-bcm2711\""))
  }

  @Test func lineNameWithoutChipIsNamed() throws {
    let dev = try DeviceDirectory()
    defer { dev.remove() }
    let request = LineRequest(chip: nil, line: .name("GPIO17"))
    let backend = LibgpiodBackend(devicePrefix: dev.path)
    let error = try #require(gpioFailure { try backend.requestInput(request, edges: true) })
    #expect(error.kind == .noChip || error.kind == .noLine)
    #expect(error.detail.contains("line \"GPIO17\""))
  }

  @Test func lineOffsetWithoutChipIsRejected() throws {
    let dev = try DeviceDirectory()
    defer { dev.remove() }
    let request = LineRequest(chip: nil, line: .offset(17))
    let backend = LibgpiodBackend(devicePrefix: dev.path)
    let error = try #require(gpioFailure { try backend.requestInput(request, edges: true) })
    #expect(error.kind == .noChip)
    #expect(error.description.contains("line 17"))
    #expect(error.detail.contains("needs a chip"))
  }

  // MARK: Something that is not a GPIO chip

  /// libgpiod 1.6 answers ENOTTY for a file that is not a character device.
  @Test func regularFileIsNotAChip() throws {
    let dev = try DeviceDirectory()
    defer { dev.remove() }
    let path = try dev.addFile("gpiochip0")
    let backend = LibgpiodBackend(devicePrefix: dev.path)
    try expectNotAChip(path, errno: ENOTTY) { try backend.chips() }
    try expectNotAChip(path, errno: ENOTTY) {
      try backend.requestInput(LineRequest(chip: "gpiochip0", line: .offset(17)), edges: true)
    }
  }

  /// A character device without a /sys/bus/gpio entry: libgpiod 1.6 answers ENOTTY too.
  @Test func symlinkToDevNullIsNotAChip() throws {
    let dev = try DeviceDirectory()
    defer { dev.remove() }
    let path = try dev.addSymlink("gpiochip1", to: "/dev/null")
    let backend = LibgpiodBackend(devicePrefix: dev.path)
    try expectNotAChip(path, errno: ENOTTY) { try backend.chips() }
    try expectNotAChip(path, errno: ENOTTY) {
      try backend.requestOutput(LineRequest(chip: "1", line: .offset(0)), initial: true)
    }
  }

  /// open(O_RDWR) refuses a directory with EISDIR before libgpiod looks at it.
  @Test func directoryIsNotAChip() throws {
    let dev = try DeviceDirectory()
    defer { dev.remove() }
    let path = dev.path + "/gpiochip2"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
    try expectNotAChip(path, errno: EISDIR) { try LibgpiodBackend(devicePrefix: dev.path).chips() }
  }

  /// While looking for a label or a line name, a chip that cannot be opened might be the one
  /// wanted: its error is reported, not "not found".
  @Test func searchReportsAChipItCouldNotOpen() throws {
    let dev = try DeviceDirectory()
    defer { dev.remove() }
    let path = try dev.addFile("gpiochip0")
    let backend = LibgpiodBackend(devicePrefix: dev.path)
    let byLabel = LineRequest(chip: "pinctrl-rp1", line: .offset(17))
    let labelError = try expectNotAChip(path, errno: ENOTTY) { try backend.requestInput(byLabel, edges: true) }
    #expect(labelError.detail.contains("while looking for a chip labelled \"pinctrl-rp1\""))

    let byName = LineRequest(chip: nil, line: .name("GPIO17"))
    let nameError = try expectNotAChip(path, errno: ENOTTY) { try backend.requestInput(byName, edges: true) }
    #expect(nameError.detail.contains("while looking for line \"GPIO17\""))
  }

  // MARK: This machine's /dev

  @Test(.enabled(if: !hasGPIOChips, "this machine has GPIO chips"))
  func realDevHasNoChips() throws {
    let backend = LibgpiodBackend()
    #expect(try backend.chips() == [])
    let request = LineRequest(chip: "gpiochip0", line: .offset(17))
    let error = try #require(gpioFailure { try backend.requestInput(request, edges: true) })
    #expect(error.kind == .noChip)
    #expect(error.subject == "line 17 on gpiochip0")
    #expect(error.description.contains("/dev/gpiochip0 does not exist"))
  }
}

// MARK: - Helpers

private let hasGPIOChips = ((try? FileManager.default.contentsOfDirectory(atPath: "/dev")) ?? [])
  .contains { $0.hasPrefix("gpiochip") }

/// Expects `body` to fail because `path` is not a GPIO chip, and returns the error.
@discardableResult
private func expectNotAChip<T>(
  _ path: String, errno code: Int32, sourceLocation: SourceLocation = #_sourceLocation,
  _ body: () throws -> T
) throws -> GPIOError {
  let thrown = gpioFailure(body)
  let error = try #require(thrown, sourceLocation: sourceLocation)
  #expect(error.kind == .noChip, sourceLocation: sourceLocation)
  #expect(error.errno == code, sourceLocation: sourceLocation)
  #expect(error.description.contains("\(path) is not a GPIO character device"), sourceLocation: sourceLocation)
  return error
}

/// A fresh directory standing in for /dev.
private struct DeviceDirectory {
  let path: String

  init() throws {
    path = FileManager.default.temporaryDirectory.appendingPathComponent("gpio-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  }

  func addFile(_ name: String) throws -> String {
    let file = path + "/" + name
    try Data("not a chip\n".utf8).write(to: URL(fileURLWithPath: file))
    return file
  }

  func addSymlink(_ name: String, to target: String) throws -> String {
    let link = path + "/" + name
    try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
    return link
  }

  func remove() {
    try? FileManager.default.removeItem(atPath: path)
  }
}

import Appliance
import ArgumentParser
import Foundation
import GPIO
import SiteModel

/// What an electrician runs after wiring: which chips the computer has, and whether every
/// pin the configuration names is there, free, and reading what the panel shows.
struct GPIOCheck: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "gpio-check",
    abstract: "List the GPIO chips found and read every input the site configuration names.",
    discussion: """
      Outputs are only looked up, never driven: requesting one would set it.
      Exit status 0 when every pin is there and free, 1 when one is missing or busy,
      2 when the configuration itself is wrong.
      """)

  @Option(help: "The site configuration file (YAML).")
  var config: String

  @Option(help: "Where libgpiod looks for gpiochip devices.")
  var devicePrefix: String = "/dev"

  func run() throws {
    var section: GPIOSection?
    try exitOnInputError {
      let loaded = try SiteConfigurationFile.load(path: config, environment: ProcessInfo.processInfo.environment)
      section = loaded.configuration.gpio
    }
    guard let section else {
      print("\(config): no gpio: section; nothing is wired to GPIO")
      return
    }
    let backend = section.makeBackend(devicePrefix: devicePrefix)
    print("backend: \(backend.name)")
    var problems = 0
    func problem(_ text: String) {
      problems += 1
      print("  PROBLEM \(text)")
    }
    let chips: [ChipInfo]
    do {
      chips = try backend.chips()
    } catch {
      problem("\(error)")
      chips = []
    }
    if chips.isEmpty {
      print("chips: none found in \(devicePrefix) (is this the site computer? is the gpio group set?)")
    } else {
      print("chips:")
      for chip in chips {
        let used = chip.lines.filter(\.used)
        print("  \(chip.name) [\(chip.label)] \(chip.lines.count) lines, \(used.count) in use (\(chip.path))")
        for line in used {
          print("    line \(line.offset) \(line.name ?? "(unnamed)"): used by \(line.consumer ?? "?")")
        }
      }
    }
    print("pins:")
    for (key, pin, output) in section.pins {
      let request = section.request(pin)
      let name = key.joined(separator: ".")
      if output {
        // Look it up on the chips instead of requesting it: a request drives the pin.
        guard let (chip, line) = Self.find(request, in: chips) else {
          problem("\(name): \(request) not found on any chip listed above")
          continue
        }
        if line.used {
          problem("\(name): \(request) is on \(chip.name) but in use by \(line.consumer ?? "another program")")
        } else {
          print("  \(name): \(request) = line \(line.offset) on \(chip.name): free (output, not driven)")
        }
        continue
      }
      do {
        let input = try backend.requestInput(request, edges: false)
        defer { input.close() }
        let level = try input.read()
        print("  \(name): \(input.description): \(level ? "active" : "inactive")\(Self.meaning(key.last!, level))")
      } catch {
        problem("\(name): \(error)")
      }
    }
    if problems > 0 {
      print("\(problems) problem\(problems == 1 ? "" : "s")")
      throw ExitCode(1)
    }
    print("every configured pin is there")
  }

  static func find(_ request: LineRequest, in chips: [ChipInfo]) -> (ChipInfo, ChipInfo.Line)? {
    let candidates = chips.filter { chip in
      guard let want = request.chip else { return true }
      return chip.path == want || LineRequest.chip(want, matchesName: chip.name, label: chip.label)
    }
    for chip in candidates {
      switch request.line {
      case .offset(let o):
        if let line = chip.lines.first(where: { $0.offset == o }) { return (chip, line) }
      case .name(let n):
        if let line = chip.lines.first(where: { $0.name == n }) { return (chip, line) }
      }
    }
    return nil
  }

  /// What a reading means for the signals staff care about.
  static func meaning(_ key: String, _ level: Bool) -> String {
    switch key {
    case "utility_available": level ? " (utility present)" : " (utility NOT present)"
    case "switch_at_utility": level ? " (switch on the utility)" : ""
    case "switch_at_island": level ? " (switch on the island side)" : ""
    case "emergency_stop": level ? " (EMERGENCY STOP PRESSED)" : " (released)"
    default: ""
    }
  }
}

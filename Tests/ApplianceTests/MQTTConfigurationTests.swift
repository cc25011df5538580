import Foundation
import SiteModel
import Testing

@testable import Appliance

@Suite("mqtt: and meters: sections: defaults, and mistakes named with their key")
struct MQTTConfigurationTests {
  let base = ConfigurationTests()

  let meters = """

    mqtt:
      username: microgrid-edge
      password: secret
    meters:
      - id: main
        role: grid_import
        topic: building/meters/main/power
        value: $.power.total
        unit: W
    """

  @Test func defaultsFollowTheSiteName() throws {
    let loaded = try base.load(try base.exampleText() + meters)
    let mqtt = try #require(loaded.configuration.mqtt)
    #expect(mqtt.topicPrefix == "microgrid-edge/example-primary-school-four-electric-buses")
    #expect(mqtt.clientID == "microgrid-edge-example-primary-school-four-electric-buses")
    #expect(mqtt.port == 1883 && mqtt.protocol == "5" && mqtt.stateEverySeconds == 5)
    #expect(mqtt.discovery.enabled && mqtt.discovery.commandUser == "homeassistant")
    #expect(loaded.configuration.meters.first?.staleAfterSeconds == 10)
    #expect(loaded.warnings.isEmpty, "\(loaded.warnings)")
    #expect(mqtt.clientConfiguration().availability?.topic == "\(mqtt.topicPrefix!)/status")
  }

  @Test func passwordFileIsReadRelativeToTheConfiguration() throws {
    let dir = NSTemporaryDirectory() + "mge-pw-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try "s3cret\n".write(toFile: dir + "/pw", atomically: true, encoding: .utf8)
    let path = dir + "/site.yaml"
    try (try base.exampleText() + "\nmqtt:\n  username: me\n  password_file: pw\n").write(
      toFile: path, atomically: true, encoding: .utf8)
    let loaded = try SiteConfigurationFile.load(path: path, environment: [:])
    let mqtt = try #require(loaded.configuration.mqtt)
    #expect(mqtt.passwordFile == dir + "/pw")
    #expect(mqtt.passwordProblem() == nil)
    // Read at each connection: a changed file is used, a vanished one is a reason.
    let read = try #require(mqtt.clientConfiguration().readPassword)
    #expect(try read().get() == "s3cret")
    try "n3w\n".write(toFile: dir + "/pw", atomically: true, encoding: .utf8)
    #expect(try read().get() == "n3w")
    try FileManager.default.removeItem(atPath: dir + "/pw")
    #expect(throws: (any Error).self) { try read().get() }
    #expect(mqtt.passwordProblem()?.contains("\(dir)/pw cannot be read") == true)
  }

  @Test(arguments: [
    ("  port: 70000\n", "mqtt.port", "TCP port"),
    ("  protocol: \"4\"\n", "mqtt.protocol", "3.1.1"),
    ("  topic_prefix: a/+/b\n", "mqtt.topic_prefix", "wildcards"),
    ("  username: me\n  password: a\n  password_file: /nonexistent/pw\n", "mqtt.password_file", "not both"),
    ("  tls:\n    ca_file: /nonexistent/ca.pem\n", "mqtt.tls.ca_file", "cannot read"),
    ("  state_every_seconds: 0\n", "mqtt.state_every_seconds", "0.5"),
    ("  command_users: [\"a/b\"]\n", "mqtt.command_users", "user name"),
  ])
  func brokenMQTTSettingsAreNamed(line: String, key: String, words: String) throws {
    let e = try base.failure(try base.exampleText() + "\nmqtt:\n" + line)
    #expect(e.description.contains(key) && e.description.contains(words), "\(e)")
  }

  @Test(arguments: [
    ("role: grid_import", "role: solar", "meters[0].role", "building_load"),
    ("unit: W", "unit: MW", "meters[0].unit", "kWh"),
    ("value: $.power.total", "value: power.total", "meters[0].value", "JSON path"),
    ("topic: building/meters/main/power", "topic: building/+/power", "meters[0].topic", "wildcards"),
  ])
  func brokenMetersAreNamed(from: String, to: String, key: String, words: String) throws {
    let e = try base.failure(try base.exampleText() + meters.replacingOccurrences(of: from, with: to))
    #expect(e.description.contains(key) && e.description.contains(words), "\(e)")
  }

  @Test func metersNeedABroker() throws {
    let text =
      try base.exampleText()
      + meters.replacingOccurrences(
        of: "mqtt:\n  username: microgrid-edge\n  password: secret\n", with: "")
    let e = try base.failure(text)
    #expect(e.description.contains("mqtt"), "\(e)")
  }
}

import Foundation
import Logging
import MQTT
import Synchronization
import Testing

/// Collects what a client receives, for assertions.
final class Inbox: Sendable {
  private let messages = Mutex<[MQTTClient.Message]>([])
  var all: [MQTTClient.Message] { messages.withLock { $0 } }
  func add(_ m: MQTTClient.Message) { messages.withLock { $0.append(m) } }
  func count(topic: String) -> Int { all.filter { $0.topic == topic }.count }

  /// Waits up to `timeout` seconds for `condition`; true if it came true.
  func wait(_ timeout: Double = 10, until condition: ([MQTTClient.Message]) -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
      if condition(all) { return true }
      try? await Task.sleep(for: .milliseconds(10))
    }
    return condition(all)
  }
}

func waitFor(_ timeout: Double = 10, _ condition: () -> Bool) async -> Bool {
  let deadline = Date().addingTimeInterval(timeout)
  while Date() < deadline {
    if condition() { return true }
    try? await Task.sleep(for: .milliseconds(10))
  }
  return condition()
}

func makeClient(
  _ broker: Broker, id: String, version: MQTTClient.ProtocolVersion = .v5, inbox: Inbox? = nil,
  subscribe: [String] = [], initialDelay: Double = 0.2, availability: String? = nil
) throws -> MQTTClient {
  var c = MQTTClient.Configuration()
  c.port = broker.port
  c.clientID = id
  c.protocolVersion = version
  c.initialReconnectDelay = initialDelay
  c.maximumReconnectDelay = max(initialDelay, 1)
  if let availability { c.availability = .init(topic: availability) }
  var logger = Logger(label: "test.\(id)")
  logger.logLevel = .warning
  let client = try MQTTClient(
    configuration: c, handlers: .init(message: { inbox?.add($0) }), logger: logger)
  if !subscribe.isEmpty { try client.subscribe(subscribe, qos: 1) }
  return client
}

@Suite("MQTT client against a real mosquitto", .serialized)
struct MQTTClientTests {
  @Test(arguments: [MQTTClient.ProtocolVersion.v5, .v311])
  func publishesAndReceives(version: MQTTClient.ProtocolVersion) async throws {
    let broker = try Broker()
    try broker.start()
    defer { broker.stop() }
    let inbox = Inbox()
    let sub = try makeClient(broker, id: "sub", version: version, inbox: inbox, subscribe: ["meters/+/power"])
    let pub = try makeClient(broker, id: "pub", version: version)
    sub.start()
    pub.start()
    defer {
      sub.stop()
      pub.stop()
    }
    #expect(await waitFor { sub.isConnected && pub.isConnected }, "both clients should connect to \(broker.port)")
    try await Task.sleep(for: .milliseconds(100))  // let the SUBSCRIBE land
    #expect(pub.publish("meters/main/power", "42.5", qos: 1) == .sent)
    pub.publish("meters/main/energy", "1", qos: 1)  // not subscribed
    #expect(await inbox.wait { $0.contains { $0.topic == "meters/main/power" } })
    #expect(inbox.all.map { String(decoding: $0.payload, as: UTF8.self) } == ["42.5"])
  }

  @Test func retainedOnlineAndLastWillOffline() async throws {
    let broker = try Broker()
    try broker.start()
    defer { broker.stop() }
    let watcher = Inbox()
    let watch = try makeClient(broker, id: "watch", inbox: watcher, subscribe: ["site/status"])
    watch.start()
    defer { watch.stop() }
    #expect(await waitFor { watch.isConnected })
    let appliance = try makeClient(broker, id: "appliance", availability: "site/status")
    appliance.start()
    #expect(
      await watcher.wait { $0.last.map { String(decoding: $0.payload, as: UTF8.self) } == "online" },
      "the appliance should announce itself online")
    appliance.stop()
    #expect(
      await watcher.wait { $0.last.map { String(decoding: $0.payload, as: UTF8.self) } == "offline" },
      "a clean stop should say offline")
    // The retained value is what a panel that connects later sees.
    let late = Inbox()
    let lateClient = try makeClient(broker, id: "late", inbox: late, subscribe: ["site/status"])
    lateClient.start()
    defer { lateClient.stop() }
    #expect(await late.wait { $0.first.map { $0.retain && $0.payload == Array("offline".utf8) } == true })
  }

  @Test func connectsWhenTheBrokerComesUpAfterTheClient() async throws {
    let broker = try Broker()
    defer { broker.stop() }
    let inbox = Inbox()
    let client = try makeClient(broker, id: "early", inbox: inbox, subscribe: ["t/#"])
    client.start()
    defer { client.stop() }
    try await Task.sleep(for: .milliseconds(800))
    #expect(!client.isConnected)
    #expect(client.statistics.connectFailures >= 1, "the failed first connects should be counted")
    try broker.start()
    defer { broker.stop() }
    #expect(await waitFor { client.isConnected }, "the client should keep retrying until the broker is up")
    let other = try makeClient(broker, id: "other")
    other.start()
    defer { other.stop() }
    #expect(await waitFor { other.isConnected })
    try await Task.sleep(for: .milliseconds(100))
    other.publish("t/x", "1", qos: 1)
    #expect(await inbox.wait { $0.count == 1 }, "subscriptions made before the first connect should hold")
  }

  @Test func recoversFromABrokerRestartAndResubscribes() async throws {
    let broker = try Broker()
    try broker.start()
    defer { broker.stop() }
    let inbox = Inbox()
    let client = try makeClient(broker, id: "steady", inbox: inbox, subscribe: ["t/#"])
    client.start()
    defer { client.stop() }
    #expect(await waitFor { client.isConnected })
    try broker.restart()
    #expect(await waitFor { client.statistics.connectionLosses == 1 }, "the loss should be noticed")
    #expect(await waitFor { client.isConnected && client.statistics.connects == 2 }, "and the client reconnect")
    let other = try makeClient(broker, id: "other")
    other.start()
    defer { other.stop() }
    #expect(await waitFor { other.isConnected })
    try await Task.sleep(for: .milliseconds(100))
    other.publish("t/after-restart", "1", qos: 1)
    #expect(await inbox.wait { $0.contains { $0.topic == "t/after-restart" } }, "resubscribed after the restart")
  }

  /// QoS 1 publishes made while the broker is away are held by libmosquitto and sent after
  /// the reconnect, once each: `.queued` tells the caller not to publish them again.
  @Test func queuedPublishesArriveOnceAfterTheReconnect() async throws {
    let broker = try Broker()
    try broker.start()
    defer { broker.stop() }
    let inbox = Inbox()
    // The subscriber reconnects fast; the publisher slowly, so the subscriber is back first.
    let sub = try makeClient(broker, id: "sub", inbox: inbox, subscribe: ["q/#"], initialDelay: 0.1)
    let pub = try makeClient(broker, id: "pub", initialDelay: 2)
    sub.start()
    pub.start()
    defer {
      sub.stop()
      pub.stop()
    }
    #expect(await waitFor { sub.isConnected && pub.isConnected })
    broker.stop()
    #expect(await waitFor { !pub.isConnected })
    let outcomes = (0..<5).map { pub.publish("q/\($0)", "\($0)", qos: 1) }
    #expect(outcomes.allSatisfy { $0 == .queued }, "QoS 1 while down should be queued, got \(outcomes)")
    #expect(pub.publish("q/zero", "x", qos: 0) != .sent, "QoS 0 while down cannot be sent")
    try broker.start()
    defer { broker.stop() }
    #expect(await inbox.wait(15) { $0.count >= 5 }, "the queued messages should arrive after the reconnect")
    try await Task.sleep(for: .milliseconds(1500))
    let topics = inbox.all.map(\.topic).sorted()
    #expect(topics == (0..<5).map { "q/\($0)" }, "each queued message exactly once, got \(topics)")
  }

  @Test func aRefusedLoginIsRetriedAndReported() async throws {
    let broker = try Broker(extraConfiguration: "allow_anonymous false\n")
    try broker.start()
    defer { broker.stop() }
    let client = try makeClient(broker, id: "anon")
    client.start()
    defer { client.stop() }
    #expect(await waitFor { client.statistics.connectFailures >= 2 }, "refusals count as failures and are retried")
    #expect(!client.isConnected)
  }

  /// TLS with a throwaway CA: the client checks the broker's certificate and host name.
  @Test func connectsOverTLSAndRefusesAnUntrustedBroker() async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mge-tls-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    func openssl(_ args: String...) throws {
      let p = Process()
      p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
      p.arguments = args
      p.currentDirectoryURL = URL(fileURLWithPath: dir)
      p.standardOutput = FileHandle.nullDevice
      p.standardError = FileHandle.nullDevice
      try p.run()
      p.waitUntilExit()
      #expect(p.terminationStatus == 0, "openssl \(args.joined(separator: " "))")
    }
    try openssl(
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
      "-subj", "/CN=test CA", "-keyout", "ca.key", "-out", "ca.pem")
    try openssl(
      "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=127.0.0.1",
      "-keyout", "server.key", "-out", "server.csr")
    try "subjectAltName=IP:127.0.0.1,DNS:localhost\n".write(toFile: dir + "/san.ext", atomically: true, encoding: .utf8)
    try openssl(
      "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
      "-extfile", "san.ext", "-out", "server.pem")
    // Another CA, which the client must not accept the broker under.
    try openssl(
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
      "-subj", "/CN=other CA", "-keyout", "other.key", "-out", "other.pem")
    let broker = try Broker(
      extraConfiguration:
        "allow_anonymous true\ncafile \(dir)/ca.pem\ncertfile \(dir)/server.pem\nkeyfile \(dir)/server.key\n")
    try broker.start()
    defer { broker.stop() }
    func client(ca: String) throws -> MQTTClient {
      var c = MQTTClient.Configuration()
      c.port = broker.port
      c.clientID = "tls-\(ca)"
      c.tls = .init(caFile: "\(dir)/\(ca)")
      c.initialReconnectDelay = 0.2
      var logger = Logger(label: "test.tls")
      logger.logLevel = .critical
      return try MQTTClient(configuration: c, handlers: .init(message: { _ in }), logger: logger)
    }
    let trusted = try client(ca: "ca.pem")
    trusted.start()
    defer { trusted.stop() }
    #expect(await waitFor { trusted.isConnected }, "a broker certified by the configured CA should be accepted")
    let untrusted = try client(ca: "other.pem")
    untrusted.start()
    defer { untrusted.stop() }
    #expect(await waitFor(3) { untrusted.statistics.connectFailures >= 2 })
    #expect(!untrusted.isConnected, "a broker certified by another CA must be refused")
  }

  @Test func rejectsInvalidFiltersAndBadTLSFiles() throws {
    let client = try MQTTClient(configuration: .init(), handlers: .init(message: { _ in }), logger: Logger(label: "t"))
    #expect(throws: MQTTError.self) { try client.subscribe(["a/#/b"]) }
    var tls = MQTTClient.Configuration()
    tls.tls = .init(caFile: "/nonexistent/ca.pem")
    #expect(throws: MQTTError.self) {
      _ = try MQTTClient(configuration: tls, handlers: .init(message: { _ in }), logger: Logger(label: "t"))
    }
  }
}

@Suite struct TopicFilterTests {
  @Test func matchesLikeTheSpecification() throws {
    let cases: [(String, String, Bool)] = [
      ("a/b", "a/b", true), ("a/b", "a/c", false), ("a/+", "a/b", true), ("a/+", "a/b/c", false),
      ("a/#", "a", true), ("a/#", "a/b/c", true), ("#", "x/y", true), ("+/+", "a/b", true),
      ("+", "$SYS", false), ("#", "$SYS/x", false), ("a/+/c", "a//c", true), ("a/b", "a/b/", false),
    ]
    for (filter, topic, expected) in cases {
      let f = try #require(TopicFilter(filter))
      #expect(f.matches(topic) == expected, "\(filter) vs \(topic)")
    }
    for bad in ["", "a/#/b", "a/b#", "a+/b"] { #expect(TopicFilter(bad) == nil, "\(bad) is not a filter") }
    #expect(TopicFilter("s/command/+")?.capture("s/command/alice") == "alice")
    #expect(TopicFilter("s/command/+")?.capture("s/state") == nil)
  }
}

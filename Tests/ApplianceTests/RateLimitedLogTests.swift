import Foundation
import Logging
import Synchronization
import Testing

@testable import Appliance

/// The lines a logger was given, as a log file would hold them.
final class CapturedLog: Sendable {
  struct Line: Sendable {
    var level: Logger.Level
    var message: String
    var metadata: Logger.Metadata
  }
  let lines = Mutex<[Line]>([])
  var all: [Line] { lines.withLock { $0 } }

  var logger: Logger {
    Logger(label: "test") { _ in Handler(log: self) }
  }

  struct Handler: LogHandler {
    let log: CapturedLog
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
      get { metadata[key] }
      set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
      log.lines.withLock {
        $0.append(.init(level: event.level, message: "\(event.message)", metadata: event.metadata ?? [:]))
      }
    }
  }
}

@Suite("Refused input is logged within bounds, and every refusal is still accounted for")
struct RateLimitedLogTests {
  @Test("10,000 junk payloads on two topics: a handful of lines each, and summaries that count the rest")
  func floodIsBounded() throws {
    let captured = CapturedLog()
    var configuration = RateLimitedLog.Configuration()
    configuration.intervalSeconds = 60
    configuration.linesPerInterval = 5
    let log = RateLimitedLog(logger: captured.logger, configuration: configuration)
    let start = ContinuousClock.now
    // 10,000 refusals over 150 s: three intervals on each topic.
    for i in 0..<10_000 {
      let at = start + .milliseconds(i * 15)
      let topic = i % 5 == 0 ? "homeassistant/status" : "building/meters/main/power"
      log.refused(on: topic, "\(topic): junk number \(i)", at: at)
    }
    log.flush(at: start + .seconds(151), everything: true)
    let lines = captured.all
    #expect(lines.count <= 2 * 3 * (5 + 1), "\(lines.count) lines for 10,000 refusals")
    // Every refusal is either a line of its own or counted in a summary.
    let summaries = lines.filter { $0.metadata["suppressed"] != nil }
    let suppressed = summaries.compactMap { Int("\($0.metadata["suppressed"]!)") }.reduce(0, +)
    #expect((lines.count - summaries.count) + suppressed == 10_000)
    let meter = try #require(summaries.first { "\($0.metadata["topic"]!)" == "building/meters/main/power" })
    #expect(meter.level == .error)
    #expect(meter.message.contains("more refused in 60 s") && meter.message.contains("the last: building/meters"))
  }

  @Test("a quiet topic logs every refusal; a topic flood does not hide another topic's first lines")
  func quietTopicsLogEverything() {
    let captured = CapturedLog()
    let log = RateLimitedLog(logger: captured.logger)
    let start = ContinuousClock.now
    for i in 0..<100 { log.refused(on: "noisy", "noisy \(i)", at: start + .milliseconds(i)) }
    log.refused(on: "quiet", "quiet 1", at: start + .seconds(1))
    log.refused(on: "quiet", "quiet 2", at: start + .seconds(70))
    log.flush(at: start + .seconds(200))
    let messages = captured.all.map(\.message)
    #expect(messages.filter { $0.hasPrefix("quiet") } == ["quiet 1", "quiet 2"])
    #expect(messages.filter { $0.hasPrefix("noisy: 95 more refused") }.count == 1, "\(messages)")
  }

  @Test("a client inventing topics shares one entry past the limit, so the table stays bounded")
  func inventedTopicsAreBounded() {
    let captured = CapturedLog()
    var configuration = RateLimitedLog.Configuration()
    configuration.maximumTopics = 10
    let log = RateLimitedLog(logger: captured.logger, configuration: configuration)
    for i in 0..<1000 { log.refused(on: "t/\(i)", "junk on t/\(i)") }
    log.flush(everything: true)
    let lines = captured.all
    #expect(lines.count == 10 + 5 + 1, "10 tracked topics, 5 lines and a summary for the rest: \(lines.count)")
    #expect(lines.last?.message.hasPrefix("(other topics): 985 more refused") == true)
  }
}

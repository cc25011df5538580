import Foundation
import Testing

@testable import OpenADR

@Suite("Parse time of the biggest sample and of a 1 MiB document (printed; bounds only catch a blow-up)")
struct ParseTimeTests {
  /// The load-dispatch sample with its intervals repeated until the body is just under 1 MiB.
  static func megabyteDistribution() throws -> (bytes: [UInt8], intervals: Int) {
    let text = String(decoding: try Samples.bytes("oadrDistributeEvent-load-dispatch.xml"), as: UTF8.self)
    let open = try #require(text.range(of: "<ei:interval>"))
    let close = try #require(text.range(of: "</ei:interval>"))
    let interval = String(text[open.lowerBound..<close.upperBound])
    var intervals = ""
    var count = 0
    while text.utf8.count + intervals.utf8.count + interval.utf8.count < Limits.default.maxBytes {
      intervals += interval
      count += 1
    }
    let document = text.replacingCharacters(in: open.lowerBound..<close.upperBound, with: intervals)
    return (Array(document.utf8), count + 1)
  }

  func time(_ body: () throws -> Void) rethrows -> Duration {
    let clock = ContinuousClock()
    let start = clock.now
    try body()
    return clock.now - start
  }

  @Test func parseTimes() throws {
    let sample = try Samples.bytes("oadrDistributeEvent-load-dispatch.xml")
    _ = try VTNMessage.decode(sample)
    let runs = 50
    let small = try time { for _ in 0..<runs { _ = try VTNMessage.decode(sample) } }
    let (big, intervals) = try Self.megabyteDistribution()
    var decoded: VTNMessage?
    let large = try time { decoded = try VTNMessage.decode(big) }
    guard case .distributeEvent(let distribution) = decoded else { return #expect(Bool(false)) }
    #expect(distribution.events.first?.signals.first?.intervals.count == intervals)
    #expect(distribution.events.first?.signals.first?.intervals.last?.offsetSeconds == Double(intervals - 1) * 300)
    print(
      "OpenADR parse: \(sample.count)-byte sample \(small / runs) each; \(big.count)-byte document "
        + "(\(intervals) intervals) \(large)")
    #expect(small / runs < .milliseconds(50))
    #expect(large < .seconds(10))
  }
}

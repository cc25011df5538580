import Foundation
import Testing

@testable import CentralUpload

/// The reference receiver (Tests/Integration/central_receiver.py, the judge of the
/// integration tests) as a process on a free loopback port, with faults: the real HTTP path
/// of `HTTPCentralClient`, against a server that answers the way real ones do.
final class ReceiverProcess: @unchecked Sendable {
  static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Integration/central_receiver.py")
  static let site = "site-1"
  static let token = "tok-answers"

  let directory: URL
  private let process = Process()
  private(set) var port = 0

  init(faults: String) throws {
    directory = FileManager.default.temporaryDirectory.appendingPathComponent("mge-receiver-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [
      "python3", Self.script.path, "--port", "0", "--site", Self.site, "--token", Self.token, "--data",
      directory.appendingPathComponent("data").path, "--faults", faults,
    ]
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    try process.run()
    // "listening on 127.0.0.1:PORT", or the process ends and says nothing.
    var line = Data()
    while !line.contains(UInt8(ascii: "\n")) {
      let chunk = out.fileHandleForReading.availableData
      if chunk.isEmpty { break }
      line.append(chunk)
    }
    let text = String(decoding: line, as: UTF8.self)
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...].prefix { $0.isNumber })
    else {
      stop()
      throw ReceiverError(message: "\(Self.script.path) did not say where it listens: \(text.debugDescription)")
    }
    self.port = port
  }

  var url: String { "http://127.0.0.1:\(port)" }

  /// The seqs stored, from the receiver's own file (one record a line).
  var storedSeqs: [Int64] {
    let file = directory.appendingPathComponent("data/\(Self.site).ndjson")
    let text = (try? String(contentsOf: file, encoding: .utf8)) ?? ""
    return text.split(separator: "\n").compactMap { line in
      (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["seq"].flatMap { $0 as? NSNumber }?
        .int64Value
    }
  }

  func stop() {
    // SIGKILL: a spawned process inherits the test runner's blocked SIGTERM.
    if process.isRunning {
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
    }
  }

  deinit {
    stop()
    try? FileManager.default.removeItem(at: directory)
  }
}

struct ReceiverError: Error, CustomStringConvertible {
  let message: String
  var description: String { message }
}

@Suite("The program's refusals, from a real server, in words an operator can act on")
struct CentralAnswersTests {
  /// A batch of `count` records, `padding` random characters each (so that gzip cannot make
  /// it small: the body is still being sent when a server answers without reading it).
  static func batch(first: Int64, count: Int, padding: Int) -> String {
    (first..<first + Int64(count)).map { seq in
      let noise = (0..<padding / 16).map { _ in String(UInt64.random(in: 0...UInt64.max), radix: 16) }.joined()
      return #"{"seq":\#(seq),"kind":"telemetry","time":"2026-07-14T19:00:00.000Z","noise":"\#(noise)"}"#
    }.joined(separator: "\n") + "\n"
  }

  static func client(_ rx: ReceiverProcess) -> HTTPCentralClient {
    var c = HTTPCentralClient.Configuration(
      baseURL: rx.url, siteID: ReceiverProcess.site, token: { .success(ReceiverProcess.token) })
    c.timeoutSeconds = 10
    return HTTPCentralClient(c)
  }

  /// One line, bounded, and never a parser's or a socket's bare words.
  static func expectReadable(_ detail: String?, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let text = detail ?? ""
    #expect(
      !text.contains("\n") && !text.contains("\r"), "\(what): more than one line: \(text)",
      sourceLocation: sourceLocation)
    #expect(text.count <= 400, "\(what): \(text.count) characters: \(text)", sourceLocation: sourceLocation)
    #expect(!text.contains("invalid constant string"), "\(what): \(text)", sourceLocation: sourceLocation)
  }

  /// A server that answers 413, 429 or 500 as soon as it has the request's head, without
  /// reading the body: it closes the connection (`early=1`), or keeps it and then reads the
  /// unread body as a request of its own (`early=keep`, what produced `invalid constant
  /// string` and a stray `HTTP 400: <!DOCTYPE HTML>`). Each answer is named by its status;
  /// the next batch on the same client is stored: nothing is lost.
  @Test(arguments: ["1", "keep", "keep:seconds=0.5"])
  func anAnswerBeforeTheBodyIsReadIsNamedByItsStatus(early: String) async throws {
    let cases: [(fault: String, expected: String, what: (CentralResponse) -> Bool)] = [
      (
        "http_413", "HTTP 413 Payload Too Large: the batch is too big for the program",
        { if case .tooLarge = $0 { true } else { false } }
      ),
      (
        "http_429", "HTTP 429 Too Many Requests: the program asks to slow down",
        { if case .throttled(3, _) = $0 { true } else { false } }
      ),
      (
        "http_500", "HTTP 500 Internal Server Error: the program failed on its side",
        { if case .failed = $0 { true } else { false } }
      ),
    ]
    for (fault, expected, what) in cases {
      let rx = try ReceiverProcess(faults: "\(fault):n=1:early=\(early):retry_after=3")
      let client = Self.client(rx)
      let body = Self.batch(first: 1, count: 400, padding: 2000)  // ~850 KB, ~450 KB gzipped
      let refused = await client.post(ndjson: body, first: 1, last: 400, timeout: nil)
      #expect(what(refused), "\(fault) early=\(early): \(refused)")
      let detail = refused.detail ?? ""
      #expect(detail.hasPrefix(expected), "\(fault) early=\(early): \(detail)")
      #expect(detail.contains(#"the program said: "injected: fault \#(fault)"#), "\(fault) early=\(early): \(detail)")
      Self.expectReadable(detail, "\(fault) early=\(early)")
      // Sent again (the uploader keeps every record): stored, the next batch too.
      let again = await client.post(ndjson: body, first: 1, last: 400, timeout: nil)
      #expect(again == .accepted(through: 400), "\(fault) early=\(early), then: \(again.detail ?? "\(again)")")
      let next = await client.post(
        ndjson: Self.batch(first: 401, count: 10, padding: 100), first: 401, last: 410, timeout: nil)
      #expect(next == .accepted(through: 410), "\(fault) early=\(early), then: \(next.detail ?? "\(next)")")
      let stored = rx.storedSeqs
      let complete = stored == Array(1...410)
      #expect(complete, "\(fault) early=\(early): stored \(stored.count) records, \(stored.prefix(3))...")
      await client.shutdown()
    }
  }

  @Test func anHTMLPageIsSaidInOneLineWithItsSize() async throws {
    let rx = try ReceiverProcess(faults: "http_400_html:n=1")
    let client = Self.client(rx)
    let body = Self.batch(first: 1, count: 5, padding: 100)
    let refused = await client.post(ndjson: body, first: 1, last: 5, timeout: nil)
    guard case .failed(let detail) = refused else {
      Issue.record("a 400 is a failure to retry, got \(refused)")
      return
    }
    #expect(
      detail.hasPrefix(
        "HTTP 400 Bad Request: the program refused the batch as malformed; the program said: an HTML page ("),
      "\(detail)")
    #expect(
      detail.contains(#"bytes): "Error response Error response Error code: 400 Message: Bad Request."#), "\(detail)")
    #expect(!detail.contains("<"), "no tags: \(detail)")
    Self.expectReadable(detail, "400 with an HTML page")
    #expect(await client.post(ndjson: body, first: 1, last: 5, timeout: nil) == .accepted(through: 5))
    await client.shutdown()
  }

  @Test func noServerAtAllIsSaidInWords() async throws {
    let rx = try ReceiverProcess(faults: "none")
    let url = rx.url
    rx.stop()
    var c = HTTPCentralClient.Configuration(baseURL: url, siteID: "site-1", token: { .success("t") })
    c.timeoutSeconds = 5
    let client = HTTPCentralClient(c)
    let answer = await client.post(ndjson: Self.batch(first: 1, count: 1, padding: 0), first: 1, last: 1, timeout: nil)
    guard case .failed(let detail) = answer else {
      Issue.record("nothing listening is a failure to retry, got \(answer)")
      return
    }
    #expect(detail.contains("cannot connect to 127.0.0.1:\(rx.port)") && detail.contains("refused"), "\(detail)")
    Self.expectReadable(detail, "nothing listening")
    await client.shutdown()
  }
}

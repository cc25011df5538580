import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing

@testable import CentralUpload
@testable import Store

@Suite("Upload policy: every answer of the contract, and the backoff")
struct UploadPolicyTests {
  @Test func acceptedAnswersConfirmWhatTheProgramHolds() {
    var p = UploadPolicy()
    #expect(p.decide(.accepted(through: 20), first: 11, last: 20, jitter: 0.5) == .confirm(through: 20))
    #expect(p.state == .connected)
    // A partial answer confirms the part; the rest goes again.
    #expect(p.decide(.accepted(through: 15), first: 11, last: 20, jitter: 0.5) == .confirm(through: 15))
    // Never more than the batch.
    #expect(p.decide(.accepted(through: 30), first: 11, last: 20, jitter: 0.5) == .confirm(through: 20))
    // Below the batch: the program is missing earlier records.
    #expect(p.decide(.accepted(through: 4), first: 11, last: 20, jitter: 0.5) == .rewind(after: 4))
    #expect(p.decide(.alreadyStored, first: 11, last: 20, jitter: 0.5) == .confirm(through: 20))
  }

  @Test func failuresBackOffExponentiallyWithJitterUpToTheCap() {
    var c = UploadPolicy.Configuration()
    c.initialBackoff = 1
    c.maxBackoff = 60
    var p = UploadPolicy(c)
    var waits: [Double] = []
    for _ in 0..<10 {
      guard case .wait(let s) = p.decide(.failed("refused"), first: 1, last: 1, jitter: 1) else {
        Issue.record("a failure must wait")
        return
      }
      waits.append(s)
    }
    #expect(waits == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60])
    #expect(p.state == .offline)
    // Jitter spreads a wait over half to all of it.
    #expect(p.backoff(0) == 30 && p.backoff(1) == 60)
    // One success resets the backoff.
    _ = p.decide(.accepted(through: 1), first: 1, last: 1, jitter: 0)
    #expect(p.failures == 0)
    #expect(p.decide(.failed("x"), first: 2, last: 2, jitter: 1) == .wait(seconds: 1))
  }

  @Test func aRefusedTokenRetriesSlowly() {
    var c = UploadPolicy.Configuration()
    c.unauthorizedRetry = 600
    var p = UploadPolicy(c)
    guard case .wait(let s) = p.decide(.unauthorized(status: 401, detail: ""), first: 1, last: 5, jitter: 0.5) else {
      Issue.record("401 must wait")
      return
    }
    #expect(s >= 480 && s <= 720)
    #expect(p.state == .unauthorized)
  }

  @Test func tooLargeHalvesTheBatchDownToOneRecord() {
    var p = UploadPolicy()
    #expect(p.decide(.tooLarge(detail: ""), first: 1, last: 1000, jitter: 0) == .shrink(maxRecords: 500))
    #expect(p.maxRecords == 500)
    #expect(p.decide(.tooLarge(detail: ""), first: 1, last: 3, jitter: 0) == .shrink(maxRecords: 1))
    guard case .wait = p.decide(.tooLarge(detail: ""), first: 1, last: 1, jitter: 0) else {
      Issue.record("a single record that is too large must wait, not shrink")
      return
    }
    #expect(p.state == .tooLarge)
  }

  @Test func throttlingHonoursRetryAfter() {
    var p = UploadPolicy()
    #expect(p.decide(.throttled(retryAfter: 7, detail: ""), first: 1, last: 1, jitter: 0) == .wait(seconds: 7))
    #expect(p.state == .throttled)
    guard case .wait(let s) = p.decide(.throttled(retryAfter: nil, detail: ""), first: 1, last: 1, jitter: 1) else {
      Issue.record("429 must wait")
      return
    }
    #expect(s == 2)  // the second failure's backoff
  }

  @Test func httpAnswersAreClassifiedAsTheContractSays() {
    typealias C = HTTPCentralClient
    #expect(C.classify(status: 200, body: #"{"accepted_through": 42}"#, retryAfter: nil) == .accepted(through: 42))
    #expect(C.classify(status: 201, body: #"{"accepted_through":7,"x":1}"#, retryAfter: nil) == .accepted(through: 7))
    #expect(C.classify(status: 409, body: "", retryAfter: nil) == .alreadyStored)
    guard case .tooLarge = C.classify(status: 413, body: "", retryAfter: nil) else {
      Issue.record("413 is a batch too large")
      return
    }
    guard case .throttled(5, _) = C.classify(status: 429, body: "", retryAfter: " 5 ") else {
      Issue.record("429 with Retry-After 5")
      return
    }
    guard case .throttled(nil, let soon) = C.classify(status: 429, body: "", retryAfter: "soon") else {
      Issue.record("429 with a Retry-After that is not seconds")
      return
    }
    #expect(soon.contains(#"Retry-After "soon" is not a number of seconds"#), "\(soon)")
    for status in [401, 403] {
      guard case .unauthorized(let s, _) = C.classify(status: status, body: "no", retryAfter: nil) else {
        Issue.record("\(status) is a refused token")
        continue
      }
      #expect(s == status)
    }
    // A 200 that does not say what it holds confirms nothing.
    for body in ["", "{}", #"{"accepted_through":"7"}"#, "<html>"] {
      guard case .failed = C.classify(status: 200, body: body, retryAfter: nil) else {
        Issue.record("200 with \(body) must not confirm")
        continue
      }
    }
    guard case .failed = C.classify(status: 503, body: "busy", retryAfter: nil) else {
      Issue.record("503 is a failure to retry")
      return
    }
  }

  @Test func everyRefusalSaysTheStatusWhatItMeansAndWhatTheProgramSaid() {
    typealias C = HTTPCentralClient
    let json = #"{"error": "too_many_records", "detail": "1000 records, the limit is 50"}"#
    #expect(
      C.classify(status: 413, body: json, retryAfter: nil).detail
        == #"HTTP 413 Payload Too Large: the batch is too big for the program; the program said: "#
        + #""too_many_records: 1000 records, the limit is 50""#)
    #expect(
      C.classify(status: 429, body: "", retryAfter: "3").detail
        == "HTTP 429 Too Many Requests: the program asks to slow down; the answer had no body")
    #expect(
      C.classify(status: 503, body: "upstream\n  busy\r\n", retryAfter: nil).detail
        == #"HTTP 503 Service Unavailable: the program is unavailable; the program said: "upstream busy""#)
    // An HTML page: its text on one line, its size, never its tags or its line breaks.
    let page = """
      <!DOCTYPE HTML>
      <html lang="en">
          <head><title>Error response</title><style>p { color: red; }</style></head>
          <body><h1>Error response</h1><p>Error code: 400</p><p>Message: Bad Request &amp; more.</p></body>
      </html>
      """
    let html = C.classify(status: 400, body: page, retryAfter: nil, contentType: "text/html").detail ?? ""
    #expect(
      html
        == "HTTP 400 Bad Request: the program refused the batch as malformed; the program said: an HTML page "
        + #"(\#(page.utf8.count) bytes): "Error response Error response Error code: 400 Message: Bad Request & more.""#)
    // Bounded, whatever comes.
    let long =
      C.classify(status: 500, body: String(repeating: "stack frame\n", count: 5000), retryAfter: nil).detail ?? ""
    #expect(long.count < 300 && !long.contains("\n") && long.hasSuffix("(60000 bytes)"), "\(long)")
    let big = C.classify(status: 502, body: "<html>" + String(repeating: "<p>x</p>", count: 9000), retryAfter: nil)
    #expect((big.detail ?? "").count < 300 && !(big.detail ?? "").contains("<p>"), "\(big.detail ?? "")")
  }
}

/// A program in memory: stores each seq once, as the reference receiver does, and fails
/// as told. The real HTTP path runs against the reference receiver in the integration tests.
final class ProgramDouble: CentralClient {
  struct State {
    var stored: [Int64: String] = [:]
    var script: [CentralResponse?] = []
    var posts = 0
  }
  let state = Mutex(State())

  func post(ndjson: String, first: Int64, last: Int64, timeout: Double?) async -> CentralResponse {
    state.withLock { s in
      s.posts += 1
      if !s.script.isEmpty, let scripted = s.script.removeFirst() { return scripted }
      for line in ndjson.split(separator: "\n") {
        let object = try! JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        let seq = (object["seq"] as! NSNumber).int64Value
        if s.stored[seq] == nil { s.stored[seq] = String(line) }
      }
      var watermark: Int64 = 0
      while s.stored[watermark + 1] != nil { watermark += 1 }
      return .accepted(through: min(watermark, last))
    }
  }
  func shutdown() async {}
}

@Suite("Uploader: sends the outbox in order and confirms only what the program holds")
struct UploaderTests {
  let folder = Folder()

  func outbox() -> Outbox {
    let c = Outbox.Configuration(store: RecordStore.Configuration(path: folder.file("store.db"), siteID: "site-1"))
    return Outbox(c, summarizer: MeanSummary(), logger: Logger(label: "test"))
  }

  @Test func everythingArrivesOnceThroughFailuresAndARestart() async throws {
    let box = outbox()
    let program = ProgramDouble()
    program.state.withLock {
      $0.script = [
        .failed("refused"), .throttled(retryAfter: 0.05, detail: ""), nil, .tooLarge(detail: ""), .failed("timed out"),
      ]
    }
    for i in 0..<250 { box.submit(telemetry(i, at: Int64(Date().timeIntervalSince1970 * 1000) - 60_000)) }
    box.flush()
    var c = CentralUploader.Configuration()
    c.policy.initialBackoff = 0.01
    c.policy.maxBackoff = 0.05
    c.policy.maxRecords = 100
    c.gatherSeconds = 0
    let uploader = CentralUploader(
      configuration: c, outbox: box, connect: { .success(program) }, logger: Logger(label: "test"))
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await uploader.run() }
      for _ in 0..<200 where try box.store!.counters().backlog > 0 {
        try await Task.sleep(for: .milliseconds(50))
      }
      group.cancelAll()
    }
    #expect(try box.store!.counters().acceptedThrough == 250)
    #expect(program.state.withLock { $0.stored.count } == 250)
    #expect(uploader.status.maxRecords == 50)  // halved after the 413
    #expect(uploader.status.state == .connected)
  }

  @Test func withoutATokenRecordsAreKeptAndTheStateSaysWhy() async throws {
    let box = outbox()
    box.submit(event("kept", at: t0))
    box.flush()
    let uploader = CentralUploader(
      configuration: .init(), outbox: box,
      connect: { .failure(StoreError(path: "/etc/microgrid-edge/central-token", problem: "cannot read")) },
      logger: Logger(label: "test"))
    let task = Task { try await uploader.run() }
    for _ in 0..<100 where uploader.status.state != .notConfigured {
      try await Task.sleep(for: .milliseconds(50))
    }
    task.cancel()
    #expect(uploader.status.state == .notConfigured)
    #expect(uploader.status.lastError?.contains("central-token") == true)
    #expect(try box.store!.counters().backlog == 1)
  }
}

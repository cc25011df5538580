import Foundation
import GRDB
import Logging
import Synchronization
import Testing

@testable import Store

/// A fresh folder per test, removed afterwards.
final class Folder {
  let path: String
  init() {
    path = FileManager.default.temporaryDirectory.appendingPathComponent("store-tests-\(UUID().uuidString)").path
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  }
  deinit { try? FileManager.default.removeItem(atPath: path) }
  func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
  var contents: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }
}

/// Means of grid_kw, enough to see that a summary stands for its records.
struct MeanSummary: TelemetrySummarizer {
  func summarize(_ records: [(timeMS: Int64, body: String)], intervalStartMS: Int64, intervalEndMS: Int64) -> String {
    let values = records.compactMap { r -> Double? in
      (try? JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any])?["grid_kw"] as? Double
    }
    let mean = values.reduce(0, +) / Double(max(1, values.count))
    return RecordJSON.object([
      ("summary", RecordJSON.object([("records", String(records.count))])), ("grid_kw", RecordJSON.number(mean)),
    ])
  }
}

func telemetry(_ i: Int, at ms: Int64, padding: Int = 0) -> RecordDraft {
  RecordDraft(
    kind: .telemetry, timeMS: ms,
    body: RecordJSON.object(
      [("grid_kw", RecordJSON.number(Double(i)))]
        + (padding > 0 ? [("pad", RecordJSON.string(String(repeating: "x", count: padding)))] : [])))
}

func event(_ name: String, at ms: Int64) -> RecordDraft {
  RecordDraft(kind: .event, timeMS: ms, body: RecordJSON.object([("event", RecordJSON.string(name))]))
}

/// The uploaded lines of a batch as JSON objects.
func lines(_ batch: RecordStore.Batch) -> [[String: Any]] {
  batch.ndjson.split(separator: "\n").map {
    (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) ?? [:]
  }
}

func seq(_ line: [String: Any]) -> Int64 { (line["seq"] as? NSNumber)?.int64Value ?? -1 }

/// Every line from the watermark on, batch by batch, confirming as it goes.
func drain(_ store: RecordStore, batch: Int = 300) throws -> [[String: Any]] {
  var out: [[String: Any]] = []
  while let b = try store.nextBatch(maxRecords: batch, maxBytes: 1 << 22) {
    out += lines(b)
    try store.accept(through: b.last)
  }
  return out
}

let t0: Int64 = 1_784_000_000_000  // 2026-07-14

@Suite("Record store: gapless seqs, the upload's lines, retention, the disk budget, damaged files")
struct RecordStoreTests {
  let folder = Folder()
  var configuration: RecordStore.Configuration {
    RecordStore.Configuration(path: folder.file("store.db"), siteID: "site-1")
  }

  @Test func seqsAreGaplessAndContinueAfterReopening() throws {
    var store = try RecordStore(configuration, summarizer: MeanSummary())
    #expect(try store.append((0..<10).map { telemetry($0, at: t0 + Int64($0) * 1000) }) == 1...10)
    #expect(try store.append([event("a", at: t0)]) == 11...11)
    #expect(try store.append([]) == nil)
    store.close()
    store = try RecordStore(configuration, summarizer: MeanSummary())
    #expect(store.notices.isEmpty)
    #expect(try store.append([event("b", at: t0)]) == 12...12)
    #expect(try store.counters().lastSeq == 12)
    let ledger = try #require(try SeqLedger.load(path: configuration.path + ".seq"))
    #expect(ledger.reservedThrough >= 12)
    #expect(ledger.siteID == "site-1")
  }

  @Test func refusedTelemetryTakesNoNumber() throws {
    let store = try RecordStore(configuration, summarizer: MeanSummary())
    let written = try store.append(
      [telemetry(1, at: t0), event("x", at: t0), telemetry(2, at: t0), event("y", at: t0)], refuseTelemetry: true)
    #expect(written == 1...2)
    let all = try drain(store)
    #expect(all.map { $0["event"] as? String } == ["x", "y"])
  }

  @Test func batchLinesAreTheContractsRecords() throws {
    let store = try RecordStore(configuration, summarizer: MeanSummary())
    try store.append([
      RecordDraft(kind: .event, timeMS: t0 + 1250, body: #"{"event":"islanded","note":"a \"quoted\" word"}"#),
      RecordDraft(kind: .command, timeMS: t0, body: "{}"),
      telemetry(7, at: t0 + 2000),
    ])
    let batch = try #require(try store.nextBatch(maxRecords: 10, maxBytes: 1 << 20))
    #expect(batch.first == 1 && batch.last == 3 && batch.ndjson.hasSuffix("\n"))
    let l = lines(batch)
    #expect(l.count == 3)
    #expect(l[0]["time"] as? String == "2026-07-14T03:33:21.250Z")
    #expect(l[0]["kind"] as? String == "event" && l[0]["note"] as? String == #"a "quoted" word"#)
    #expect(Set(l[1].keys) == ["seq", "kind", "time"])
    #expect(l[2]["grid_kw"] as? Double == 7)
    // Limits: records, and bytes (but always at least one line).
    #expect(try store.nextBatch(maxRecords: 2, maxBytes: 1 << 20)?.last == 2)
    #expect(try store.nextBatch(maxRecords: 10, maxBytes: 1)?.last == 1)
  }

  @Test func confirmationsMoveTheWatermarkOnlyForward() throws {
    let store = try RecordStore(configuration, summarizer: MeanSummary())
    try store.append((0..<5).map { telemetry($0, at: t0) })
    try store.accept(through: 3)
    #expect(try store.nextBatch(maxRecords: 10, maxBytes: 1 << 20)?.first == 4)
    try store.accept(through: 2)  // an older answer arriving late changes nothing
    #expect(try store.counters().acceptedThrough == 3)
    try store.accept(through: 99)  // never past what exists
    #expect(try store.counters().acceptedThrough == 5)
    #expect(try store.nextBatch(maxRecords: 10, maxBytes: 1 << 20) == nil)
    // The program lost 3...5: they are still here, so they go again.
    #expect(try store.rewind(to: 2))
    #expect(try store.nextBatch(maxRecords: 10, maxBytes: 1 << 20)?.first == 3)
  }

  @Test func retentionDeletesOnlyWhatTheProgramHas() throws {
    var c = configuration
    c.retentionSeconds = 3600
    let store = try RecordStore(c, summarizer: MeanSummary())
    try store.append((0..<10).map { telemetry($0, at: t0) })
    try store.accept(through: 6)
    _ = try store.maintain(nowMS: t0 + 2 * 3_600_000)
    let left = try drain(store)
    #expect(left.map(seq) == [7, 8, 9, 10])
    // 1...6 are gone, so a program that lost them cannot have them again.
    #expect(try !store.rewind(to: 3))
  }

  @Test func theBudgetThinsTelemetryAndNeverEvents() throws {
    var c = configuration
    c.budgetBytes = 400 * 1024
    c.summaryIntervalSeconds = 60
    let store = try RecordStore(c, summarizer: MeanSummary())
    var events: [Int64] = []
    // An hour at 1 Hz with ~500-byte records, an event every 100 s: about 4 times the budget.
    for second in stride(from: 0, to: 3600, by: 50) {
      var drafts = (second..<second + 50).map { telemetry($0, at: t0 + Int64($0) * 1000, padding: 450) }
      if second % 100 == 0 { drafts.insert(event("e\(second)", at: t0 + Int64(second) * 1000), at: 10) }
      let written = try #require(try store.append(drafts))
      if second % 100 == 0 { events.append(written.lowerBound + 10) }
      _ = try store.maintain(nowMS: t0)
    }
    // The phase (and so the alarm) holds while the backlog keeps the store near its budget.
    let phase = try store.maintain(nowMS: t0)
    #expect(phase.phase == .thinning, "\(phase)")
    #expect(try store.counters().usedBytes <= c.budgetBytes)
    let last = try store.counters().lastSeq
    let all = try drain(store)
    // Once the program has everything, the budget frees the room and the phase is over.
    _ = try store.maintain(nowMS: t0)
    #expect(try store.maintain(nowMS: t0).phase == .normal)
    // Every seq exactly once, in order.
    #expect(all.map(seq) == Array(1...last))
    // Every event whole.
    for e in events { #expect(all[Int(e) - 1]["event"] as? String != nil, "event \(e) kept") }
    // Thinned lines point at a summary that exists, inside the same interval.
    let stubs = all.filter { $0["thinned_into"] != nil }
    let summaries = all.filter { $0["summary"] != nil }
    #expect(stubs.count > 2000)
    #expect(summaries.count >= 30)
    for s in stubs.prefix(200) {
      let target = (s["thinned_into"] as! NSNumber).int64Value
      #expect(all[Int(target) - 1]["summary"] != nil)
      #expect(target < seq(s))
    }
    // The newest telemetry kept its detail.
    #expect(all.last?["pad"] != nil)
    // A summary is the mean of what it replaced. t0 is 20 s into its minute, so the first
    // interval holds seconds 0...39.
    #expect(summaries.first?["grid_kw"] as? Double == 19.5)
    #expect((summaries.first?["summary"] as? [String: Any])?["records"] as? Int == 40)
  }

  @Test func aFullBudgetRefusesNothingButTelemetry() throws {
    var c = configuration
    c.budgetBytes = 40 * 1024
    let store = try RecordStore(c, summarizer: MeanSummary())
    try store.append((0..<400).map { i in event("e\(i)", at: t0) })
    #expect(try store.maintain(nowMS: t0).phase == .full)
    // Still over budget, events stay: nothing to thin.
    #expect(try drain(store).count == 400)
  }

  @Test func aCorruptDatabaseIsMovedAsideAndNumbersAreNeverReused() throws {
    var c = configuration
    c.seqBlock = 50
    var store = try RecordStore(c, summarizer: MeanSummary())
    try store.append((0..<10).map { telemetry($0, at: t0) })
    try store.accept(through: 4)
    store.close()
    let reserved = try #require(try SeqLedger.load(path: c.path + ".seq")).reservedThrough
    #expect(reserved == 50)  // one block, taken when the database was made
    for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: c.path + suffix) }
    try Data(repeating: 0x5A, count: 8192).write(to: URL(fileURLWithPath: c.path))

    store = try RecordStore(c, summarizer: MeanSummary())
    #expect(store.notices.contains { if case .movedAside = $0 { true } else { false } })
    // 5...10 were written and never confirmed; 11...50 were reserved: all may be lost.
    #expect(store.notices.contains(.recordsLost(first: 5, last: 50)))
    #expect(folder.contents.contains { $0.hasPrefix("store.db.corrupt-") })
    #expect(try store.append([event("after", at: t0)]) == 51...51)
    let all = try drain(store)
    #expect(all.map(seq) == Array(5...51))
    #expect(all.dropLast().allSatisfy { $0["event"] as? String == "records_lost" })
    #expect(all.last?["event"] as? String == "after")
  }

  @Test func aForeignDatabaseIsMovedAsideUntouched() throws {
    let queue = try DatabaseQueue(path: configuration.path)
    try queue.write { db in
      try db.execute(
        sql: "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices VALUES (1, 9.5)")
    }
    try queue.close()
    let original = try Data(contentsOf: URL(fileURLWithPath: configuration.path))
    let store = try RecordStore(configuration, summarizer: MeanSummary())
    let reason = store.notices.compactMap { n -> String? in
      if case .movedAside(_, let reason) = n { reason } else { nil }
    }.first
    #expect(reason?.contains("not a Microgrid Edge store") == true)
    #expect(reason?.contains("invoices") == true)
    let aside = try #require(folder.contents.first { $0.hasPrefix("store.db.corrupt-") && !$0.hasSuffix("-wal") })
    // Byte for byte as it was: checked read-only, never switched to WAL or written.
    #expect(try Data(contentsOf: URL(fileURLWithPath: folder.file(aside))) == original)
    let kept = try DatabaseQueue(path: folder.file(aside))
    #expect(try kept.read { try Double.fetchOne($0, sql: "SELECT total FROM invoices") } == 9.5)
    #expect(try store.append([event("x", at: t0)]) == 1...1)
  }

  @Test func anotherSitesDatabaseIsNotUploadedAsThisOnes() throws {
    var other = configuration
    other.siteID = "site-2"
    let first = try RecordStore(other, summarizer: MeanSummary())
    try first.append([event("theirs", at: t0)])
    first.close()
    try? FileManager.default.removeItem(atPath: configuration.path + ".seq")
    let store = try RecordStore(configuration, summarizer: MeanSummary())
    #expect(
      store.notices.contains { n in
        if case .movedAside(_, let reason) = n { reason.contains("site-2") } else { false }
      })
    #expect(try drain(store).isEmpty)
  }

  @Test func anUnwritableFolderIsAClearError() {
    let c = RecordStore.Configuration(path: "/proc/microgrid-edge/store.db", siteID: "s")
    #expect {
      try RecordStore(c, summarizer: MeanSummary())
    } throws: { error in
      "\(error)".contains("/proc/microgrid-edge")
    }
  }

  @Test func timesAreUTCWithMilliseconds() {
    #expect(RecordLine.isoTime(ms: 0) == "1970-01-01T00:00:00.000Z")
    #expect(RecordLine.isoTime(ms: -1) == "1969-12-31T23:59:59.999Z")
    #expect(RecordLine.isoTime(ms: 1_784_000_001_007) == "2026-07-14T03:33:21.007Z")
  }
}

@Suite("Outbox: records wait in memory while the database cannot take them")
struct OutboxTests {
  let folder = Folder()

  @Test func aFullDiskKeepsRecordsAndLosesNoNumber() throws {
    // A page limit makes SQLite answer SQLITE_FULL exactly as a full disk does.
    var store = RecordStore.Configuration(path: folder.file("store.db"), siteID: "site-1")
    store.prepareDatabase = { db in try db.execute(sql: "PRAGMA max_page_count = 40") }
    store.budgetBytes = 40 * 4096
    let outbox = Outbox(Outbox.Configuration(store: store), summarizer: MeanSummary(), logger: Logger(label: "test"))
    var written: [ClosedRange<Int64>] = []
    var full = false
    for i in 0..<400 {
      outbox.submit(telemetry(i, at: t0 + Int64(i) * 1000, padding: 300))
      if i % 10 == 9 {
        if let w = outbox.flush() { written.append(w) } else { full = true }
      }
    }
    #expect(full)
    let status = outbox.status
    #expect(status.diskFull)
    #expect(status.writeProblem?.contains("full") == true)
    #expect(status.pending > 0)
    let pendingBefore = status.pending
    // The program takes what is written; the budget frees its pages; writing resumes.
    let s = try #require(outbox.store)
    try s.accept(through: try s.counters().lastSeq)
    outbox.maintain(now: Date(timeIntervalSince1970: Double(t0) / 1000))
    while outbox.status.pending > 0, let w = outbox.flush() {
      written.append(w)
      try s.accept(through: w.upperBound)
      outbox.maintain(now: Date(timeIntervalSince1970: Double(t0) / 1000))
    }
    #expect(outbox.status.pending == 0)
    #expect(outbox.status.writeProblem == nil)
    // Nothing lost, no number skipped: 400 records numbered 1...400.
    #expect(written.first?.lowerBound == 1)
    #expect(written.last?.upperBound == 400)
    for (a, b) in zip(written, written.dropFirst()) { #expect(b.lowerBound == a.upperBound + 1) }
    #expect(pendingBefore > 0)
  }

  @Test func memoryIsBoundedAndTelemetryGoesFirst() {
    var store = RecordStore.Configuration(path: "/proc/no-store-here/store.db", siteID: "site-1")
    store.budgetBytes = 1 << 20
    var c = Outbox.Configuration(store: store)
    c.maxPending = 10
    let outbox = Outbox(c, summarizer: MeanSummary(), logger: Logger(label: "test"))
    outbox.submit(event("first", at: t0))
    for i in 0..<30 { outbox.submit(telemetry(i, at: t0)) }
    #expect(outbox.flush() == nil)
    let status = outbox.status
    #expect(status.pending == 10)
    #expect(status.telemetryDropped == 21)
    #expect(status.otherDropped == 0)
    #expect(status.writeProblem?.contains("/proc/no-store-here") == true)
  }
}

import Foundation
import GRDB
import Logging
import Synchronization

/// Turns the telemetry of one summary interval into one record body, when the disk budget
/// needs the room. The appliance knows what its telemetry holds; the store does not.
public protocol TelemetrySummarizer: Sendable {
  /// `records` are the interval's telemetry bodies in seq order (at least two).
  func summarize(_ records: [(timeMS: Int64, body: String)], intervalStartMS: Int64, intervalEndMS: Int64) -> String
}

/// The outbox in SQLite: every record the site creates, numbered by a per-site `seq` that
/// has no gaps and is never reused, until the central program has confirmed it.
///
/// Layout (migration "v1"):
/// - `record`: one row per record, `seq` is the rowid. `body` holds the members besides
///   seq/kind/time as JSON text.
/// - `placeholder`: runs of seqs whose rows are gone but whose numbers must still reach the
///   program: telemetry thinned into a summary (`{"thinned_into": S}`), or records lost
///   with a database that had to be replaced (`{"event": "records_lost"}`). Uploads
///   synthesize one line per seq from them, so the program's record stays gapless.
/// - `counter`: the next seq and the program's confirmed watermark, updated in the same
///   transaction as the rows, so a power cut can never leave a number used twice.
/// - `meta`: the site id, so another site's database is never uploaded as this one's.
///
/// Durability: WAL with `synchronous=FULL`, so a commit is on disk when `append` returns:
/// a number is never handed to the uploader and then rolled back by a power cut.
/// Writers batch (one transaction a second), which is what keeps this cheap.
///
/// Thread safety: every method may be called from any thread; GRDB serializes writes and
/// lets reads (uploads) run beside them.
public final class RecordStore: Sendable {
  public struct Configuration: Sendable {
    public var path: String
    public var siteID: String
    /// The size the database's used pages should stay under (`store.budget_mb`).
    public var budgetBytes: Int64 = 1 << 30
    /// Uploaded records are kept this long, then deleted (`store.retention_days`).
    public var retentionSeconds: Double = 7 * 86_400
    /// Thinned telemetry keeps one summary per interval of this length.
    public var summaryIntervalSeconds: Double = 900
    /// Thinning starts above this share of the budget and goes down to `thinTo`.
    public var thinAbove = 0.9
    public var thinTo = 0.8
    /// Seqs reserved in the ledger at a time.
    public var seqBlock: Int64 = 1000
    /// Run on every connection after the store's own settings (tests: a page limit).
    public var prepareDatabase: (@Sendable (Database) throws -> Void)?

    public init(path: String, siteID: String) {
      self.path = path
      self.siteID = siteID
    }
  }

  /// Something that happened while opening, for the logs and the alarms.
  public enum Notice: Sendable, Hashable, CustomStringConvertible {
    case movedAside(to: String, reason: String)
    case recordsLost(first: Int64, last: Int64)
    case ledgerProblem(String)

    public var description: String {
      switch self {
      case .movedAside(let to, let reason): "database moved aside to \(to): \(reason); a fresh one was started"
      case .recordsLost(let first, let last):
        "seqs \(first)...\(last) may have been lost with the old database; they go up as records_lost events"
      case .ledgerProblem(let text): "seq ledger: \(text)"
      }
    }
  }

  /// Where the store stands, cheap enough to read every second.
  public struct Counters: Sendable, Hashable {
    /// The highest seq handed out (0: none yet).
    public var lastSeq: Int64
    /// Every seq up to this one is confirmed by the program.
    public var acceptedThrough: Int64
    /// Time of the oldest record not yet confirmed, ms since 1970.
    public var oldestUnuploadedMS: Int64?
    /// Pages in use (not on the free list), bytes: what the budget is about.
    public var usedBytes: Int64
    public var backlog: Int64 { lastSeq - acceptedThrough }
  }

  /// What the disk budget made the store do.
  public enum BudgetPhase: String, Sendable, Hashable {
    /// Under the budget (only retention deletes).
    case normal
    /// Deleting uploaded records before their retention is over.
    case deletingUploaded = "deleting-uploaded"
    /// Replacing un-uploaded telemetry detail by per-interval summaries.
    case thinning
    /// Nothing left to thin: new telemetry is refused until the program takes records.
    case full
  }

  public struct Maintenance: Sendable, Hashable {
    public var phase: BudgetPhase = .normal
    public var deletedUploaded = 0
    public var thinnedIntervals = 0
    public var usedBytes: Int64 = 0
  }

  public let configuration: Configuration
  public let notices: [Notice]
  private let pool: DatabasePool
  private let summarizer: any TelemetrySummarizer
  private let ledger: Mutex<SeqLedger>
  private var ledgerPath: String { configuration.path + ".seq" }

  /// "MGE1": marks the file as ours, so a foreign SQLite file is recognised as such.
  static let applicationID: Int32 = 0x4D47_4531

  // MARK: - Opening

  /// Opens the store, moving aside a database that is corrupt, foreign or another site's
  /// and starting a fresh one (see `notices`). Throws only when no database can be had
  /// at all (an unwritable folder, a full disk).
  public init(_ configuration: Configuration, summarizer: any TelemetrySummarizer) throws {
    self.configuration = configuration
    self.summarizer = summarizer
    let path = configuration.path
    var notices: [Notice] = []

    let folder = (path as NSString).deletingLastPathComponent
    if !folder.isEmpty {
      do {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
      } catch {
        throw StoreError(path: folder, problem: "cannot create the store's folder: \(error.localizedDescription)")
      }
    }

    var knownLedger: SeqLedger?
    do {
      knownLedger = try SeqLedger.load(path: path + ".seq")
      if let l = knownLedger, l.siteID != configuration.siteID {
        notices.append(.ledgerProblem("belongs to site \(l.siteID), not \(configuration.siteID); ignored"))
        knownLedger = nil
      }
    } catch {
      notices.append(.ledgerProblem("\(error); ignored"))
    }

    var existing: DatabasePool?
    if FileManager.default.fileExists(atPath: path) {
      // Checked through a read-only connection first: a file that is not ours must be
      // moved aside exactly as it was (a WAL pool would rewrite its header).
      var problem: String?
      do {
        problem = try Self.problem(at: path, siteID: configuration.siteID)
      } catch {
        problem = "cannot be opened (\(Self.describe(error)))"
      }
      if problem == nil {
        do {
          existing = try Self.openPool(configuration)
        } catch {
          problem = "cannot be opened for writing (\(Self.describe(error)))"
        }
      }
      if let problem {
        let aside = try Self.moveAside(path)
        notices.append(.movedAside(to: aside, reason: problem))
      }
    }
    let pool = try existing ?? Self.openPool(configuration)
    let fresh = existing == nil

    // A fresh database after a lost one starts above every number the old one could have
    // used; the numbers the program has not confirmed become records_lost placeholders.
    var startSeq: Int64 = 1
    var lost: ClosedRange<Int64>?
    if fresh, let l = knownLedger, l.reservedThrough > 0 {
      startSeq = l.reservedThrough + 1
      if l.acceptedThrough < l.reservedThrough { lost = (l.acceptedThrough + 1)...l.reservedThrough }
    }
    let migrator = Self.migrator(siteID: configuration.siteID, startSeq: startSeq, lost: lost)
    do {
      try migrator.migrate(pool)
    } catch {
      throw StoreError(path: path, problem: "cannot set up the database: \(Self.describe(error))")
    }
    if let lost { notices.append(.recordsLost(first: lost.lowerBound, last: lost.upperBound)) }

    let (next, accepted) = try pool.read { db in try Self.counter(db) }
    var ledger =
      knownLedger
      ?? SeqLedger(siteID: configuration.siteID, reservedThrough: 0, acceptedThrough: 0)
    if fresh && lost == nil { ledger.acceptedThrough = accepted }
    if ledger.reservedThrough < next - 1 || ledger.acceptedThrough < accepted || fresh {
      ledger.reservedThrough = max(ledger.reservedThrough, next - 1 + configuration.seqBlock)
      ledger.acceptedThrough = max(ledger.acceptedThrough, accepted)
      try ledger.save(path: path + ".seq")
    }
    self.pool = pool
    self.ledger = Mutex(ledger)
    self.notices = notices
  }

  private static func openPool(_ configuration: Configuration) throws -> DatabasePool {
    var config = GRDB.Configuration()
    config.busyMode = .timeout(10)
    config.maximumReaderCount = 2
    let extra = configuration.prepareDatabase
    config.prepareDatabase { db in
      // FULL: in WAL mode this fsyncs the log at every commit, so a commit survives a
      // power cut (NORMAL could roll back the last commits, and with them seqs that an
      // upload already sent).
      try db.execute(sql: "PRAGMA synchronous = FULL")
      // The log is truncated back to this after a checkpoint; it does not stay at its peak.
      try db.execute(sql: "PRAGMA journal_size_limit = 8388608")
      // Each connection's page cache is heap memory (SQLite's default is 2 MiB, and this pool
      // has three connections). Inserts touch the table's and the indexes' right edges and
      // uploads read the newest rows, a few dozen pages; every other read comes from the
      // kernel's page cache, which is not the daemon's. So 512 KiB a connection.
      try db.execute(sql: "PRAGMA cache_size = -512")
      try extra?(db)
    }
    return try DatabasePool(path: configuration.path, configuration: config)
  }

  /// nil when the database is ours, this site's and intact; otherwise why not.
  private static func problem(at path: String, siteID: String) throws -> String? {
    var config = GRDB.Configuration()
    config.readonly = true
    let queue = try DatabaseQueue(path: path, configuration: config)
    defer { try? queue.close() }
    return try queue.read { db in
      let check = try String.fetchAll(db, sql: "PRAGMA quick_check")
      guard check == ["ok"] else {
        return "fails its integrity check (\(check.prefix(3).joined(separator: "; ")))"
      }
      let id = try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0
      let tables = try String.fetchAll(
        db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
      if id != applicationID {
        if tables.isEmpty { return nil }  // an empty SQLite file: nothing to lose
        return "not a Microgrid Edge store (application_id \(id), tables \(tables.prefix(5).joined(separator: ", ")))"
      }
      guard tables.contains("meta") else { return "a Microgrid Edge store without its meta table" }
      let owner = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'site_id'")
      if owner != siteID { return "the store of site \(owner ?? "(none)"), not of \(siteID)" }
      return nil
    }
  }

  /// Renames the database and its WAL files to `<path>.corrupt-<UTC time>`.
  private static func moveAside(_ path: String) throws -> String {
    let stamp = RecordLine.isoTime(ms: Int64(Date().timeIntervalSince1970 * 1000))
      .replacingOccurrences(of: ":", with: "").replacingOccurrences(of: ".", with: "")
    var target = "\(path).corrupt-\(stamp)"
    var n = 1
    while FileManager.default.fileExists(atPath: target) {
      n += 1
      target = "\(path).corrupt-\(stamp)-\(n)"
    }
    for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
      guard rename(path + suffix, target + suffix) == 0 else {
        throw StoreError(path: path + suffix, problem: "cannot move the damaged database aside: \(errnoText())")
      }
    }
    return target
  }

  private static func migrator(siteID: String, startSeq: Int64, lost: ClosedRange<Int64>?) -> DatabaseMigrator {
    var migrator = DatabaseMigrator()
    migrator.registerMigration("v1") { db in
      try db.execute(
        sql: """
          PRAGMA application_id = \(applicationID);
          CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
          CREATE TABLE counter (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            next_seq INTEGER NOT NULL,
            accepted_through INTEGER NOT NULL);
          CREATE TABLE record (
            seq INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            time_ms INTEGER NOT NULL,
            summary INTEGER NOT NULL DEFAULT 0,
            body TEXT NOT NULL);
          -- Thinning walks the un-summarised telemetry from the oldest; this keeps that walk
          -- from reading every event and summary on the way.
          CREATE INDEX record_detail ON record (seq) WHERE kind = 'telemetry' AND summary = 0;
          CREATE TABLE placeholder (
            first_seq INTEGER PRIMARY KEY,
            last_seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            first_time_ms INTEGER NOT NULL,
            last_time_ms INTEGER NOT NULL,
            body TEXT NOT NULL);
          """)
      try db.execute(
        sql: "INSERT INTO meta (key, value) VALUES ('site_id', ?), ('created', ?)",
        arguments: [siteID, RecordLine.isoTime(ms: Int64(Date().timeIntervalSince1970 * 1000))])
      let acceptedThrough = lost.map { $0.lowerBound - 1 } ?? startSeq - 1
      try db.execute(
        sql: "INSERT INTO counter (id, next_seq, accepted_through) VALUES (1, ?, ?)",
        arguments: [startSeq, acceptedThrough])
      if let lost {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        try db.execute(
          sql: """
            INSERT INTO placeholder (first_seq, last_seq, kind, first_time_ms, last_time_ms, body)
            VALUES (?, ?, 'event', ?, ?, ?)
            """,
          arguments: [
            lost.lowerBound, lost.upperBound, now, now,
            RecordJSON.object([
              ("event", RecordJSON.string("records_lost")),
              ("reason", RecordJSON.string("the store's database was damaged or replaced; this seq's record is gone")),
            ]),
          ])
      }
    }
    return migrator
  }

  private static func counter(_ db: Database) throws -> (next: Int64, accepted: Int64) {
    guard let row = try Row.fetchOne(db, sql: "SELECT next_seq, accepted_through FROM counter WHERE id = 1") else {
      throw StoreError(path: db.description, problem: "the counter row is missing")
    }
    return (row[0], row[1])
  }

  /// Folds the log into the database file and closes it, so that the file alone holds
  /// everything (a copy of it is a backup). Errors only cost that.
  public func close() {
    _ = try? pool.writeWithoutTransaction { try $0.checkpoint(.truncate) }
    try? pool.close()
  }

  // MARK: - Writing

  /// Numbers and writes the drafts in one transaction; returns the seqs they got (nil
  /// when none was written). With `refuseTelemetry` (the budget is exhausted) telemetry
  /// drafts are left out: they never get a number, so leaving them out makes no gap.
  @discardableResult
  public func append(_ drafts: [RecordDraft], refuseTelemetry: Bool = false) throws -> ClosedRange<Int64>? {
    try pool.write { db in
      let (next, _) = try Self.counter(db)
      var seq = next
      let insert = try db.cachedStatement(sql: "INSERT INTO record (seq, kind, time_ms, body) VALUES (?, ?, ?, ?)")
      for draft in drafts where !(refuseTelemetry && draft.kind == .telemetry) {
        try insert.execute(arguments: [seq, draft.kind.rawValue, draft.timeMS, draft.body])
        seq += 1
      }
      guard seq > next else { return nil }
      try db.execute(sql: "UPDATE counter SET next_seq = ? WHERE id = 1", arguments: [seq])
      // The ledger must cover a number before the number is committed; written inside
      // the transaction, a failure here rolls the records back with it.
      try reserve(through: seq - 1)
      return next...(seq - 1)
    }
  }

  private func reserve(through seq: Int64) throws {
    try ledger.withLock { l in
      guard l.reservedThrough < seq else { return }
      var updated = l
      updated.reservedThrough = seq + configuration.seqBlock
      try updated.save(path: ledgerPath)
      l = updated
    }
  }

  // MARK: - Uploading

  /// The next records to upload, from the first the program has not confirmed.
  public struct Batch: Sendable, Hashable {
    public var first: Int64
    public var last: Int64
    /// NDJSON: one line per seq from first to last, each ending in a newline.
    public var ndjson: String
    public var count: Int { Int(last - first + 1) }
    /// Seqs that had neither a row nor a placeholder (should never happen; logged).
    public var missing: [Int64]
  }

  public func nextBatch(maxRecords: Int, maxBytes: Int) throws -> Batch? {
    try pool.read { db in
      let (next, accepted) = try Self.counter(db)
      guard accepted + 1 < next, maxRecords > 0 else { return nil }
      let from = accepted + 1
      let to = min(next - 1, from + Int64(maxRecords) - 1)
      let placeholders = try Row.fetchAll(
        db,
        sql: """
          SELECT first_seq, last_seq, kind, first_time_ms, last_time_ms, body FROM placeholder
          WHERE last_seq >= ? AND first_seq <= ? ORDER BY first_seq
          """, arguments: [from, to])
      var p = 0
      var seq = from
      var text = ""
      var missing: [Int64] = []
      func full() -> Bool { seq > from && text.utf8.count >= maxBytes }
      func fill(upTo end: Int64) {
        while seq <= end && !full() {
          while p < placeholders.count && (placeholders[p]["last_seq"] as Int64) < seq { p += 1 }
          if p < placeholders.count, (placeholders[p]["first_seq"] as Int64) <= seq {
            let row = placeholders[p]
            let first: Int64 = row["first_seq"]
            let last: Int64 = row["last_seq"]
            let t0: Int64 = row["first_time_ms"]
            let t1: Int64 = row["last_time_ms"]
            // Thinned telemetry was periodic, so its time is close to the interpolation.
            let time = last > first ? t0 + (t1 - t0) * (seq - first) / (last - first) : t0
            text += RecordLine.make(seq: seq, kind: row["kind"], timeMS: time, body: row["body"])
          } else {
            missing.append(seq)
            text += RecordLine.make(
              seq: seq, kind: "event", timeMS: Int64(Date().timeIntervalSince1970 * 1000),
              body: RecordJSON.object([("event", RecordJSON.string("records_lost"))]))
          }
          text += "\n"
          seq += 1
        }
      }
      let rows = try Row.fetchCursor(
        db, sql: "SELECT seq, kind, time_ms, body FROM record WHERE seq BETWEEN ? AND ? ORDER BY seq",
        arguments: [from, to])
      while let row = try rows.next(), !full() {
        let rowSeq: Int64 = row[0]
        fill(upTo: rowSeq - 1)
        if full() { break }
        text += RecordLine.make(seq: rowSeq, kind: row[1], timeMS: row[2], body: row[3])
        text += "\n"
        seq = rowSeq + 1
      }
      fill(upTo: to)
      return Batch(first: from, last: seq - 1, ndjson: text, missing: missing)
    }
  }

  /// The program confirmed every seq up to `seq`.
  public func accept(through seq: Int64) throws {
    let accepted = try pool.write { db -> Int64 in
      let (next, accepted) = try Self.counter(db)
      let value = min(max(accepted, seq), next - 1)
      if value != accepted {
        try db.execute(sql: "UPDATE counter SET accepted_through = ? WHERE id = 1", arguments: [value])
      }
      return value
    }
    try ledger.withLock { l in
      guard l.acceptedThrough < accepted else { return }
      var updated = l
      updated.acceptedThrough = accepted
      try updated.save(path: ledgerPath)
      l = updated
    }
  }

  /// The program says it is missing records from `seq + 1` on, below what it confirmed
  /// before (it lost data). Goes back if every one of them is still here; false if not.
  public func rewind(to seq: Int64) throws -> Bool {
    try pool.write { db in
      let (_, accepted) = try Self.counter(db)
      guard seq < accepted, seq >= 0 else { return false }
      let rows =
        try Int64.fetchOne(
          db, sql: "SELECT COUNT(*) FROM record WHERE seq > ? AND seq <= ?", arguments: [seq, accepted]) ?? 0
      let covered =
        try Int64.fetchOne(
          db,
          sql: """
            SELECT COALESCE(SUM(MIN(last_seq, ?) - MAX(first_seq, ?) + 1), 0) FROM placeholder
            WHERE last_seq > ? AND first_seq <= ?
            """, arguments: [accepted, seq + 1, seq, accepted]) ?? 0
      guard rows + covered == accepted - seq else { return false }
      try db.execute(sql: "UPDATE counter SET accepted_through = ? WHERE id = 1", arguments: [seq])
      return true
    }
  }

  public func counters() throws -> Counters {
    try pool.read { db in
      let (next, accepted) = try Self.counter(db)
      var oldest: Int64?
      if next - 1 > accepted {
        let fromRow = try Int64.fetchOne(
          db, sql: "SELECT time_ms FROM record WHERE seq > ? ORDER BY seq LIMIT 1", arguments: [accepted])
        let fromPlaceholder = try Int64.fetchOne(
          db, sql: "SELECT first_time_ms FROM placeholder WHERE last_seq > ? ORDER BY first_seq LIMIT 1",
          arguments: [accepted])
        oldest = [fromRow, fromPlaceholder].compactMap { $0 }.min()
      }
      return Counters(
        lastSeq: next - 1, acceptedThrough: accepted, oldestUnuploadedMS: oldest, usedBytes: try usedBytes(db))
    }
  }

  private func usedBytes(_ db: Database) throws -> Int64 {
    let pageSize = try Int64.fetchOne(db, sql: "PRAGMA page_size") ?? 4096
    let pages = try Int64.fetchOne(db, sql: "PRAGMA page_count") ?? 0
    let free = try Int64.fetchOne(db, sql: "PRAGMA freelist_count") ?? 0
    return (pages - free) * pageSize
  }

  // MARK: - Retention and the disk budget

  /// Deletes uploaded records past their retention, then keeps the database inside its
  /// budget: uploaded records first (oldest first), then un-uploaded telemetry detail
  /// (oldest interval first, kept as a summary). Events, commands and sessions that are
  /// not uploaded are never touched. Does at most `workLimit` transactions per call, so
  /// that a large backlog is worked off across calls without holding the writer long.
  public func maintain(nowMS: Int64, workLimit: Int = 200) throws -> Maintenance {
    var report = Maintenance()
    var work = 0
    let cutoff = nowMS - Int64(configuration.retentionSeconds * 1000)
    while work < workLimit {
      let n = try deleteUploaded(olderThanMS: cutoff, limit: 5000)
      work += 1
      if n == 0 { break }
    }
    let budget = Double(configuration.budgetBytes)
    var used = try pool.read { try usedBytes($0) }
    if Double(used) > configuration.thinAbove * budget {
      report.phase = .deletingUploaded
      while Double(used) > configuration.thinTo * budget && work < workLimit {
        let n = try deleteUploaded(olderThanMS: nil, limit: 2000)
        work += 1
        if n == 0 { break }
        report.deletedUploaded += n
        used = try pool.read { try usedBytes($0) }
      }
      while Double(used) > configuration.thinTo * budget && work < workLimit {
        report.phase = .thinning
        work += 1
        guard try thinOldestInterval() else { break }
        report.thinnedIntervals += 1
        used = try pool.read { try usedBytes($0) }
      }
      if Double(used) > budget { report.phase = .full }
    }
    // Thinning holds (and so does its alarm) until the program has the thinned stretch:
    // otherwise the alarm would flap with every 10 % the backlog grows.
    if report.phase == .normal {
      let pending = try pool.read { db -> Bool in
        let (_, accepted) = try Self.counter(db)
        return try Bool.fetchOne(
          db, sql: "SELECT EXISTS (SELECT 1 FROM placeholder WHERE kind = 'telemetry' AND last_seq > ?)",
          arguments: [accepted]) ?? false
      }
      if pending { report.phase = .thinning }
    }
    report.usedBytes = used
    return report
  }

  /// Deletes up to `limit` uploaded records (all ages when `olderThanMS` is nil), oldest first.
  private func deleteUploaded(olderThanMS: Int64?, limit: Int) throws -> Int {
    try pool.write { db in
      let (_, accepted) = try Self.counter(db)
      if let olderThanMS {
        try db.execute(
          sql: "DELETE FROM record WHERE seq IN (SELECT seq FROM record WHERE seq <= ? AND time_ms < ? LIMIT ?)",
          arguments: [accepted, olderThanMS, limit])
        let n = db.changesCount
        try db.execute(
          sql: "DELETE FROM placeholder WHERE last_seq <= ? AND last_time_ms < ?", arguments: [accepted, olderThanMS])
        return n
      }
      try db.execute(
        sql: "DELETE FROM record WHERE seq IN (SELECT seq FROM record WHERE seq <= ? ORDER BY seq LIMIT ?)",
        arguments: [accepted, limit])
      let n = db.changesCount
      try db.execute(sql: "DELETE FROM placeholder WHERE last_seq <= ?", arguments: [accepted])
      return n
    }
  }

  /// Replaces the oldest interval of un-uploaded telemetry detail by one summary record
  /// (the interval's first seq) and placeholders for the rest. False: nothing to thin.
  func thinOldestInterval() throws -> Bool {
    let interval = max(1, Int64(configuration.summaryIntervalSeconds * 1000))
    return try pool.write { db in
      let (_, accepted) = try Self.counter(db)
      let rows = try Row.fetchAll(
        db,
        sql: """
          SELECT seq, time_ms, body FROM record INDEXED BY record_detail
          WHERE kind = 'telemetry' AND summary = 0 AND seq > ? ORDER BY seq LIMIT 5000
          """, arguments: [accepted])
      guard let head = rows.first else { return false }
      let bucket = (head["time_ms"] as Int64).floorDiv(interval)
      var group: [(seq: Int64, timeMS: Int64, body: String)] = []
      for row in rows {
        let t: Int64 = row["time_ms"]
        guard t.floorDiv(interval) == bucket else { break }
        group.append((row["seq"], t, row["body"]))
      }
      let summaryBody =
        group.count > 1
        ? summarizer.summarize(
          group.map { ($0.timeMS, $0.body) }, intervalStartMS: bucket * interval, intervalEndMS: (bucket + 1) * interval
        )
        : group[0].body
      try db.execute(
        sql: "UPDATE record SET body = ?, summary = 1 WHERE seq = ?", arguments: [summaryBody, group[0].seq])
      guard group.count > 1 else { return true }
      try db.execute(
        sql: "DELETE FROM record WHERE kind = 'telemetry' AND summary = 0 AND seq > ? AND seq <= ?",
        arguments: [group[0].seq, group[group.count - 1].seq])
      let stub = RecordJSON.object([("thinned_into", String(group[0].seq))])
      let insert = try db.cachedStatement(
        sql: """
          INSERT INTO placeholder (first_seq, last_seq, kind, first_time_ms, last_time_ms, body)
          VALUES (?, ?, 'telemetry', ?, ?, ?)
          """)
      var runStart = 1
      for i in 1..<group.count where i == group.count - 1 || group[i + 1].seq != group[i].seq + 1 {
        try insert.execute(
          arguments: [group[runStart].seq, group[i].seq, group[runStart].timeMS, group[i].timeMS, stub])
        runStart = i + 1
      }
      return true
    }
  }
}

extension Int64 {
  func floorDiv(_ d: Int64) -> Int64 {
    let q = self / d
    return (self % d != 0 && (self < 0) != (d < 0)) ? q - 1 : q
  }
}

extension RecordStore {
  /// SQLite's own words for an error, without GRDB's SQL echo.
  public static func describe(_ error: any Error) -> String {
    if let e = error as? DatabaseError {
      return "SQLite error \(e.extendedResultCode.rawValue): \(e.message ?? "\(e.resultCode)")"
    }
    return "\(error)"
  }

  /// The kinds of failure the writer treats differently.
  public enum FailureKind: Sendable, Hashable {
    /// The disk (or the file's limit) is full: keep the records in memory and retry.
    case full
    /// The file is damaged: move it aside and start a fresh one.
    case corrupt
    case other
  }

  public static func failureKind(_ error: any Error) -> FailureKind {
    guard let e = error as? DatabaseError else {
      if let s = error as? StoreError, s.problem.contains("No space") { return .full }
      return .other
    }
    switch e.resultCode {
    case .SQLITE_FULL: return .full
    case .SQLITE_CORRUPT, .SQLITE_NOTADB: return .corrupt
    case .SQLITE_IOERR:
      return e.message?.localizedCaseInsensitiveContains("disk") == true ? .full : .other
    default: return .other
    }
  }
}

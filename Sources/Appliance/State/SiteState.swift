import Control
import Foundation
import GRDB
import Logging
import SiteModel
import Synchronization
import VEN

/// The appliance's own state that must survive a restart and a power cut, in SQLite beside
/// the record store (`state.path`, default /var/lib/microgrid-edge/state.db):
///
/// - the demand meter: the billing period's peak and the interval in progress;
/// - the closed demand intervals of the last year (for staff and reports);
/// - the controller's load and session histories, so a restart does not cost the week of
///   history the forecasts need;
/// - staff's standing instructions (demand target, holds, V2X pause, departures) and the
///   demand-response events they announced.
///
/// Each is a small JSON document under a key, written when it changes (the interval in
/// progress every few seconds), in WAL mode with `synchronous=NORMAL`: a power cut can lose
/// the last seconds, never the file. The schema has a version (GRDB's migrator) and a
/// database that is damaged or not ours is moved aside with an alarm, and a fresh one
/// carries on. Bounded: one row per key, and at most a year of 15-minute intervals.
///
/// Every method may be called from any thread; a failed write is logged (once a minute at
/// most) and raises `state-store`, never stops the appliance.
public final class SiteState: Sendable {
  public let path: String
  /// Intervals kept: a year of 15-minute intervals.
  public static let maximumIntervals = 366 * 96
  /// "MGS1": marks the file as the appliance's state.
  static let applicationID: Int32 = 0x4D47_5331
  public static let schemaVersion = 1

  private let queue: DatabaseQueue
  private let logger: Logger
  private let problems = Mutex<(last: Date?, count: Int)>((nil, 0))
  /// Set when the database had to be replaced: the reason, for the alarm.
  public let movedAside: String?
  private let onProblem: Mutex<(@Sendable (String?) -> Void)?> = Mutex(nil)

  public init(path: String, logger: Logger) throws {
    self.path = path
    self.logger = logger
    let folder = (path as NSString).deletingLastPathComponent
    if !folder.isEmpty {
      try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }
    var movedAside: String?
    if FileManager.default.fileExists(atPath: path), let problem = Self.problem(at: path) {
      let aside = path + ".bad-\(Int(Date().timeIntervalSince1970))"
      try? FileManager.default.moveItem(atPath: path, toPath: aside)
      for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
      movedAside = "\(path) \(problem); moved aside to \(aside), starting afresh"
      logger.error("state store: \(movedAside!)")
    }
    var config = GRDB.Configuration()
    config.busyMode = .timeout(5)
    config.prepareDatabase { db in
      try db.execute(sql: "PRAGMA journal_mode = WAL")
      try db.execute(sql: "PRAGMA synchronous = NORMAL")
      // Small and bounded on an SD card: checkpoint every 100 pages, truncate the log back.
      try db.execute(sql: "PRAGMA wal_autocheckpoint = 100")
      try db.execute(sql: "PRAGMA journal_size_limit = 1048576")
    }
    queue = try DatabaseQueue(path: path, configuration: config)
    self.movedAside = movedAside
    try Self.migrator.migrate(queue)
  }

  private static var migrator: DatabaseMigrator {
    var m = DatabaseMigrator()
    m.registerMigration("v1") { db in
      try db.execute(sql: "PRAGMA application_id = \(applicationID)")
      try db.execute(
        sql: """
          CREATE TABLE state (key TEXT PRIMARY KEY, json BLOB NOT NULL, saved_at REAL NOT NULL);
          CREATE TABLE demand_interval (
            start REAL PRIMARY KEY, mean_kw REAL NOT NULL, measured_s REAL NOT NULL,
            missing_s REAL NOT NULL, counts_toward_peak INTEGER NOT NULL, note TEXT);
          """)
    }
    return m
  }

  /// nil when the file is the appliance's state and intact.
  private static func problem(at path: String) -> String? {
    do {
      var config = GRDB.Configuration()
      config.readonly = true
      let q = try DatabaseQueue(path: path, configuration: config)
      defer { try? q.close() }
      return try q.read { db -> String? in
        let check = try String.fetchAll(db, sql: "PRAGMA quick_check")
        guard check == ["ok"] else { return "fails its integrity check (\(check.prefix(2).joined(separator: "; ")))" }
        let id = try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0
        let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'")
        if id == 0 && tables.isEmpty { return nil }
        guard id == applicationID else { return "is not the appliance's state (application_id \(id))" }
        return nil
      }
    } catch {
      return "cannot be read (\(error))"
    }
  }

  /// Called with a message when a write fails, and with nil when writes work again.
  public func onWriteProblem(_ handler: @escaping @Sendable (String?) -> Void) {
    onProblem.withLock { $0 = handler }
  }

  // MARK: - Documents

  func save<T: Encodable>(_ key: String, _ value: T) {
    do {
      let data = try JSONEncoder().encode(value)
      try queue.write { db in
        try db.execute(
          sql: "INSERT INTO state (key, json, saved_at) VALUES (?, ?, ?) "
            + "ON CONFLICT(key) DO UPDATE SET json = excluded.json, saved_at = excluded.saved_at",
          arguments: [key, data, Date().timeIntervalSince1970])
      }
      writeWorked()
    } catch {
      writeFailed("saving \(key): \(error)")
    }
  }

  func load<T: Decodable>(_ key: String, as type: T.Type) -> T? {
    do {
      guard
        let data = try queue.read({ db in
          try Data.fetchOne(db, sql: "SELECT json FROM state WHERE key = ?", arguments: [key])
        })
      else { return nil }
      return try JSONDecoder().decode(T.self, from: data)
    } catch {
      logger.error("state store: \(path): \(key) cannot be read back (\(error)); starting it afresh")
      return nil
    }
  }

  private func writeWorked() {
    let recovered = problems.withLock { p -> Bool in
      defer { p = (nil, 0) }
      return p.count > 0
    }
    if recovered {
      logger.notice("state store: writes work again", metadata: ["path": "\(path)"])
      onProblem.withLock { $0 }?(nil)
    }
  }

  private func writeFailed(_ what: String) {
    let now = Date()
    let log = problems.withLock { p -> Int? in
      p.count += 1
      guard p.last.map({ now.timeIntervalSince($0) >= 60 }) ?? true else { return nil }
      p.last = now
      return p.count
    }
    if let count = log {
      logger.error("state store: \(path): \(what)", metadata: ["failed_writes": "\(count)"])
      onProblem.withLock { $0 }?("the state store \(path) cannot be written (\(what)); state kept in memory")
    }
  }

  // MARK: - What is kept

  struct SavedMeter: Codable {
    var configuration: DemandMeter.Configuration
    var meter: DemandMeter
  }

  public func saveDemandMeter(_ meter: DemandMeter) {
    save("demand_meter", SavedMeter(configuration: meter.configuration, meter: meter))
  }

  /// The meter as saved, if it was kept for the same interval length and billing cycle.
  public func loadDemandMeter(configuration: DemandMeter.Configuration) -> DemandMeter? {
    guard let saved = load("demand_meter", as: SavedMeter.self) else { return nil }
    guard saved.configuration.intervalSeconds == configuration.intervalSeconds,
      saved.configuration.billingCycleDay == configuration.billingCycleDay
    else {
      logger.warning(
        "state store: the saved demand meter was kept for another interval or billing cycle; starting afresh")
      return nil
    }
    return saved.meter
  }

  public func appendDemandInterval(_ i: DemandMeter.ClosedInterval) {
    do {
      try queue.write { db in
        try db.execute(
          sql: "INSERT OR REPLACE INTO demand_interval VALUES (?, ?, ?, ?, ?, ?)",
          arguments: [i.start, i.meanKW, i.measuredSeconds, i.missingSeconds, i.countsTowardPeak, i.note])
        try db.execute(
          sql:
            "DELETE FROM demand_interval WHERE start NOT IN (SELECT start FROM demand_interval ORDER BY start DESC LIMIT ?)",
          arguments: [Self.maximumIntervals])
      }
      writeWorked()
    } catch {
      writeFailed("recording a demand interval: \(error)")
    }
  }

  /// The closed intervals, newest first.
  public func demandIntervals(limit: Int = 96) -> [DemandMeter.ClosedInterval] {
    (try? queue.read { db in
      try Row.fetchAll(
        db, sql: "SELECT * FROM demand_interval ORDER BY start DESC LIMIT ?", arguments: [limit]
      ).map { row in
        DemandMeter.ClosedInterval(
          start: row["start"], meanKW: row["mean_kw"], measuredSeconds: row["measured_s"],
          missingSeconds: row["missing_s"], countsTowardPeak: row["counts_toward_peak"], note: row["note"])
      }
    }) ?? []
  }

  public func intervalCount() -> Int {
    (try? queue.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM demand_interval") }) ?? 0
  }

  struct Histories: Codable {
    var load: LoadHistory
    var sessions: SessionHistory
  }

  public func saveHistories(load: LoadHistory, sessions: SessionHistory) {
    save("histories", Histories(load: load, sessions: sessions))
  }

  public func loadHistories() -> (load: LoadHistory, sessions: SessionHistory)? {
    load("histories", as: Histories.self).map { ($0.load, $0.sessions) }
  }

  public func saveOverrides(_ overrides: OperatorOverrides) { save("overrides", overrides) }

  /// The OpenADR VEN's registration, events (with the answers given) and report requests.
  public func saveVEN(_ state: VENState) { save("openadr_ven", state) }
  public func loadVEN() -> VENState? { load("openadr_ven", as: VENState.self) }
  public func loadOverrides() -> OperatorOverrides? { load("overrides", as: OperatorOverrides.self) }
}

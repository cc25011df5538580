import Foundation
import GRDB

/// Reads a store file as it stands, for reports: read-only, so it can run beside the
/// appliance that is writing it, and never moves or repairs anything.
public struct StoreReader {
  /// One row, in seq order. The body is a JSON object's bytes (only valid during the call).
  public struct Row {
    public var seq: Int64
    public var kind: String
    public var timeMS: Int64
    public var body: UnsafeRawBufferPointer
  }

  public let path: String
  public let siteID: String

  /// Opens `path` read-only and checks that it is a Microgrid Edge store.
  public init(path: String) throws {
    guard FileManager.default.fileExists(atPath: path) else {
      throw StoreError(path: path, problem: "no such file")
    }
    self.path = path
    var config = GRDB.Configuration()
    config.readonly = true
    do {
      let queue = try DatabaseQueue(path: path, configuration: config)
      defer { try? queue.close() }
      siteID = try queue.read { db -> String in
        let id = try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0
        guard id == RecordStore.applicationID else {
          throw StoreError(path: path, problem: "not a Microgrid Edge record store (application_id \(id))")
        }
        return try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'site_id'") ?? "unknown-site"
      }
    } catch let error as StoreError {
      throw error
    } catch {
      throw StoreError(path: path, problem: "cannot be read (\(error))")
    }
  }

  /// Every stored record from `fromMS` (inclusive) to `toMS` (exclusive), in seq order, and
  /// the seq ranges that thinning replaced by a summary (`covered`), so that a reader does
  /// not take them for lost records.
  public func forEach(
    fromMS: Int64 = .min, toMS: Int64 = .max, covered: (ClosedRange<Int64>) -> Void,
    _ body: (Row) throws -> Void
  ) throws {
    var config = GRDB.Configuration()
    config.readonly = true
    let queue = try DatabaseQueue(path: path, configuration: config)
    defer { try? queue.close() }
    try queue.read { db in
      let ranges = try GRDB.Row.fetchAll(
        db, sql: "SELECT first_seq, last_seq FROM placeholder WHERE last_time_ms >= ? AND first_time_ms < ?",
        arguments: [fromMS, toMS])
      for r in ranges {
        let first: Int64 = r[0]
        let last: Int64 = r[1]
        if first <= last { covered(first...last) }
      }
      let rows = try GRDB.Row.fetchCursor(
        db, sql: "SELECT seq, kind, time_ms, body FROM record WHERE time_ms >= ? AND time_ms < ? ORDER BY seq",
        arguments: [fromMS, toMS])
      while let row = try rows.next() {
        let seq: Int64 = row[0]
        let kind: String = row[1]
        let time: Int64 = row[2]
        try row.withUnsafeData(atIndex: 3) { data in
          guard let data else { return }
          try data.withUnsafeBytes { bytes in
            try body(Row(seq: seq, kind: kind, timeMS: time, body: bytes))
          }
        }
      }
    }
  }
}

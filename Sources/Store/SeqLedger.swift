import Foundation

/// A small file beside the database that remembers, outside it, how far the site's `seq`
/// may have gone and how far the central program has confirmed.
///
/// Why: `seq` must never be reused. If the database is lost (corrupt, foreign, deleted),
/// a fresh one that started again at 1 would hand the program new records under numbers
/// it already stored, and it would keep the old ones: silent data loss. With the ledger,
/// a fresh database starts above every number the old one could have used, and the
/// numbers in between go up as explicit `records_lost` events, so the program's record
/// stays gapless and says what happened.
///
/// The store reserves numbers in blocks (`reservedThrough`), so the file is written once
/// per block, not once per record. It is replaced atomically (write, fsync, rename, fsync
/// the folder), so a power cut leaves the old or the new version, never half of one.
public struct SeqLedger: Sendable, Hashable, Codable {
  public var siteID: String
  /// No seq above this was handed out.
  public var reservedThrough: Int64
  /// The central program confirmed every seq up to this one.
  public var acceptedThrough: Int64

  enum CodingKeys: String, CodingKey {
    case siteID = "site_id"
    case reservedThrough = "reserved_through"
    case acceptedThrough = "accepted_through"
  }

  public init(siteID: String, reservedThrough: Int64, acceptedThrough: Int64) {
    self.siteID = siteID
    self.reservedThrough = reservedThrough
    self.acceptedThrough = acceptedThrough
  }

  /// nil when there is no file; throws when there is one that cannot be read.
  static func load(path: String) throws -> SeqLedger? {
    guard FileManager.default.fileExists(atPath: path) else { return nil }
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    do {
      let ledger = try JSONDecoder().decode(SeqLedger.self, from: data)
      guard ledger.reservedThrough >= 0, ledger.acceptedThrough >= 0 else {
        throw StoreError(path: path, problem: "negative numbers in the seq ledger")
      }
      return ledger
    } catch let error as StoreError {
      throw error
    } catch {
      throw StoreError(path: path, problem: "not a seq ledger (\(error))")
    }
  }

  func save(path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    var data = try encoder.encode(self)
    data.append(UInt8(ascii: "\n"))
    try AtomicFile.write(data, to: path)
  }
}

/// Write-then-rename with the fsyncs that make it survive a power cut.
enum AtomicFile {
  static func write(_ data: Data, to path: String) throws {
    let temporary = path + ".tmp"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw StoreError(path: temporary, problem: "cannot create: \(errnoText())") }
    var failure: String?
    data.withUnsafeBytes { raw in
      var offset = 0
      while offset < raw.count {
        let n = Foundation.write(fd, raw.baseAddress! + offset, raw.count - offset)
        if n < 0 {
          if errno == EINTR { continue }
          failure = "cannot write: \(errnoText())"
          return
        }
        offset += n
      }
    }
    if failure == nil && fsync(fd) != 0 { failure = "cannot fsync: \(errnoText())" }
    close(fd)
    if let failure {
      unlink(temporary)
      throw StoreError(path: temporary, problem: failure)
    }
    guard rename(temporary, path) == 0 else {
      let text = errnoText()
      unlink(temporary)
      throw StoreError(path: path, problem: "cannot replace: \(text)")
    }
    let folder = (path as NSString).deletingLastPathComponent
    let dfd = open(folder.isEmpty ? "." : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dfd >= 0 {
      fsync(dfd)
      close(dfd)
    }
  }
}

func errnoText() -> String { String(cString: strerror(errno)) }

/// A problem with the store, naming the file.
public struct StoreError: Error, CustomStringConvertible, Sendable {
  public var path: String
  public var problem: String
  public init(path: String, problem: String) {
    self.path = path
    self.problem = problem
  }
  public var description: String { "\(path): \(problem)" }
}

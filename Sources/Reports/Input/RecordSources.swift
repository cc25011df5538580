import Foundation
import Store

/// Where a report's records come from: the appliance's own store, or the NDJSON files the
/// central program keeps of what sites uploaded (one file per site, as the reference
/// receiver stores them: `{site}.ndjson`).
public enum RecordSource: Sendable, Hashable {
  case store(path: String)
  case ndjson(path: String, site: String)

  /// The sources a `--records` argument names: a file, or every `*.ndjson` in a folder
  /// (not the receiver's `*.keys.ndjson`).
  public static func records(at path: String) throws(ReportInputError) -> [RecordSource] {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
      throw ReportInputError("\(path): no such file or folder")
    }
    guard isDirectory.boolValue else { return [.ndjson(path: path, site: siteID(ofFile: path))] }
    let names: [String]
    do {
      names = try FileManager.default.contentsOfDirectory(atPath: path)
    } catch {
      throw ReportInputError("\(path): cannot list the folder (\(error.localizedDescription))")
    }
    let files = names.filter { $0.hasSuffix(".ndjson") && !$0.hasSuffix(".keys.ndjson") }.sorted()
    guard !files.isEmpty else { throw ReportInputError("\(path): no .ndjson files in the folder") }
    return files.map { .ndjson(path: (path as NSString).appendingPathComponent($0), site: siteID(ofFile: $0)) }
  }

  static func siteID(ofFile path: String) -> String {
    let name = (path as NSString).lastPathComponent
    return name.hasSuffix(".ndjson") ? String(name.dropLast(".ndjson".count)) : name
  }

  var path: String {
    switch self {
    case .store(let p), .ndjson(let p, _): p
    }
  }
}

/// An input that cannot be read at all (as opposed to a bad line, which is a warning).
public struct ReportInputError: Error, CustomStringConvertible, Sendable {
  public var description: String
  public init(_ description: String) { self.description = description }
}

extension SiteAccumulator {
  /// Feeds every record of `source` in. Lines that cannot be read are problems; only an
  /// input that cannot be opened at all throws.
  static func read(_ source: RecordSource, range: ReportRange) throws(ReportInputError) -> SiteAccumulator {
    switch source {
    case .ndjson(let path, let site):
      var acc = SiteAccumulator(site: site, source: path, range: range)
      try NDJSONReader.read(path: path) { line, bytes in
        let object: JSONObjectView
        do {
          object = try JSONObjectView(bytes: bytes)
        } catch {
          acc.problem("\(path):\(line): not a JSON object (\(error)); skipped")
          return true
        }
        guard case .number(let seqValue)? = object["seq"], seqValue >= 1, seqValue == seqValue.rounded() else {
          acc.problem("\(path):\(line): no seq (a whole number from 1); skipped")
          return true
        }
        guard case .string(let k, false)? = object["kind"] else {
          acc.problem("\(path):\(line): no kind; skipped")
          return true
        }
        guard let time = object.timeMS("time") else {
          acc.problem("\(path):\(line): no time like 2026-07-14T19:00:00.000Z; skipped")
          return true
        }
        let kind = Substring(decoding: UnsafeRawBufferPointer(rebasing: bytes[k]), as: UTF8.self)
        acc.add(seq: Int64(seqValue), kind: kind, timeMS: time, body: object) { "\(path):\(line)" }
        return acc.wants(utcMS: time)
      }
      return acc
    case .store(let path):
      let reader: StoreReader
      do {
        reader = try StoreReader(path: path)
      } catch {
        throw ReportInputError("\(error)")
      }
      var acc = SiteAccumulator(site: reader.siteID, source: path, range: range)
      do {
        try reader.forEach(covered: { acc.cover($0) }) { row in
          let object: JSONObjectView
          do {
            object = try JSONObjectView(bytes: row.body)
          } catch {
            acc.problem("\(path): seq \(row.seq): a body that is not a JSON object (\(error)); skipped")
            return
          }
          acc.add(seq: row.seq, kind: Substring(row.kind), timeMS: row.timeMS, body: object) {
            "\(path): seq \(row.seq)"
          }
        }
      } catch {
        acc.problem("\(path): reading stopped early: \(error)")
      }
      return acc
    }
  }
}

/// Reads a file line by line in large blocks, handing each line's bytes (without its
/// newline) to `body`, which returns false to stop. Memory: one block and one line.
enum NDJSONReader {
  static let blockBytes = 4 << 20

  static func read(path: String, _ body: (Int, UnsafeRawBufferPointer) -> Bool) throws(ReportInputError) {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw ReportInputError("\(path): cannot open (\(String(cString: strerror(errno))))") }
    defer { close(fd) }
    let block = UnsafeMutableRawBufferPointer.allocate(byteCount: blockBytes, alignment: 16)
    defer { block.deallocate() }
    var carry: [UInt8] = []  // a line that spans two blocks
    var line = 0
    var keepGoing = true
    while keepGoing {
      let n = Foundation.read(fd, block.baseAddress!, blockBytes)
      if n < 0 {
        if errno == EINTR { continue }
        throw ReportInputError("\(path): read failed after line \(line) (\(String(cString: strerror(errno))))")
      }
      if n == 0 { break }
      let bytes = UnsafeRawBufferPointer(rebasing: block[0..<n])
      var start = 0
      while keepGoing, let nl = memchr(bytes.baseAddress! + start, 0x0A, n - start) {
        let end = UnsafeRawPointer(nl) - bytes.baseAddress!
        line += 1
        if carry.isEmpty {
          keepGoing = emit(line, UnsafeRawBufferPointer(rebasing: bytes[start..<end]), body)
        } else {
          carry.append(contentsOf: bytes[start..<end])
          keepGoing = carry.withUnsafeBytes { emit(line, $0, body) }
          carry.removeAll(keepingCapacity: true)
        }
        start = end + 1
      }
      if keepGoing && start < n { carry.append(contentsOf: bytes[start..<n]) }
    }
    if keepGoing && !carry.isEmpty {
      line += 1
      _ = carry.withUnsafeBytes { emit(line, $0, body) }
    }
  }

  private static func emit(_ line: Int, _ bytes: UnsafeRawBufferPointer, _ body: (Int, UnsafeRawBufferPointer) -> Bool)
    -> Bool
  {
    var b = bytes
    if b.last == 0x0D { b = UnsafeRawBufferPointer(rebasing: b.dropLast()) }
    if b.isEmpty { return true }
    return body(line, b)
  }
}

import SiteModel

/// A small CSV reader for the scenario's numeric tables: a header row with known column
/// names, then plain comma-separated fields (no quoting). Every error names the file, the
/// line and the column.
public struct CSVTable: Sendable {
  public let source: String
  public let columns: [String]
  /// Data rows with their 1-based line numbers.
  public private(set) var rows: [(line: Int, fields: [Substring])] = []

  public init(path: String, expectedColumns: [String]) throws(InputError) {
    let text = try readText(path: path)
    try self.init(text: text, source: path, expectedColumns: expectedColumns)
  }

  public init(text: String, source: String, expectedColumns: [String]) throws(InputError) {
    self.source = source
    self.columns = expectedColumns
    var lineNumber = 0
    var sawHeader = false
    // Split on bytes of a plain array: Swift treats "\r\n" as one Character, and slices of a
    // String's views that end inside it keep the "\r" whatever one drops.
    let bytes = Array(text.utf8)
    var lineStart = 0
    while lineStart <= bytes.count {
      var lineEnd = lineStart
      while lineEnd < bytes.count && bytes[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
      var contentEnd = lineEnd
      if contentEnd > lineStart && bytes[contentEnd - 1] == UInt8(ascii: "\r") { contentEnd -= 1 }
      let line = Substring(String(decoding: bytes[lineStart..<contentEnd], as: UTF8.self))
      lineStart = lineEnd + 1
      lineNumber += 1
      if line.allSatisfy({ $0 == " " }) { continue }
      let fields = line.split(separator: ",", omittingEmptySubsequences: false).map {
        $0.trimmingSpaces()
      }
      if !sawHeader {
        let header = fields.map(String.init)
        guard header == expectedColumns else {
          throw InputError(
            source: source, line: lineNumber,
            message: "header is '\(line.prefix(80))', expected '\(expectedColumns.joined(separator: ","))'")
        }
        sawHeader = true
        continue
      }
      guard fields.count == expectedColumns.count else {
        throw InputError(
          source: source, line: lineNumber,
          message:
            "has \(fields.count) fields, expected \(expectedColumns.count) (\(expectedColumns.joined(separator: ",")))")
      }
      rows.append((lineNumber, fields))
    }
    if !sawHeader {
      throw InputError(
        source: source, line: 1, message: "is empty; expected the header '\(expectedColumns.joined(separator: ","))'")
    }
  }

  public func error(line: Int, column: Int? = nil, _ message: String) -> InputError {
    InputError(source: source, line: line, field: column.map { columns[$0] }, message: message)
  }

  /// A finite number, or an error naming the cell.
  public func number(_ row: (line: Int, fields: [Substring]), _ column: Int) throws(InputError) -> Double {
    let text = row.fields[column]
    guard let value = Double(text), value.isFinite else {
      throw error(line: row.line, column: column, "'\(text)' is not a number")
    }
    return value
  }

  /// A whole number, or an error naming the cell.
  public func integer(_ row: (line: Int, fields: [Substring]), _ column: Int) throws(InputError) -> Int {
    let text = row.fields[column]
    if let value = Int(text) { return value }
    if let value = Double(text), value.isFinite, value == value.rounded(), abs(value) < 1e15 {
      return Int(value)
    }
    throw error(line: row.line, column: column, "'\(text)' is not a whole number")
  }
}

extension Substring {
  func trimmingSpaces() -> Substring {
    var s = self[...]
    while s.first == " " || s.first == "\t" { s = s.dropFirst() }
    while s.last == " " || s.last == "\t" { s = s.dropLast() }
    return s
  }
}

import Foundation
import Testing

@testable import OpenADR

/// The captured documents of Tests/Integration/openadr-samples (see its README).
enum Samples {
  static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Integration/openadr-samples")

  static func bytes(_ name: String) throws -> [UInt8] {
    Array(try Data(contentsOf: directory.appendingPathComponent(name)))
  }

  static func decode(_ name: String) throws -> VTNMessage {
    try VTNMessage.decode(try bytes(name))
  }

  /// The README's table: file → direction ("VTN -> VEN" or "VEN -> VTN").
  static func directions() throws -> [(file: String, direction: String)] {
    let readme = try String(contentsOf: directory.appendingPathComponent("README.md"), encoding: .utf8)
    return readme.split(separator: "\n").compactMap { line in
      let cells = line.split(separator: "|", omittingEmptySubsequences: false).map {
        $0.trimmingCharacters(in: .whitespaces)
      }
      guard cells.count > 3, cells[1].hasPrefix("`"), cells[1].hasSuffix(".xml`") else { return nil }
      return (String(cells[1].dropFirst().dropLast()), cells[2])
    }
  }
}

/// The error thrown by `body`, or nil.
/// Why a document, or the first event of a distribution, could not be read (an event that
/// names itself is kept aside as unreadable rather than failing the whole distribution).
func decodingError(_ bytes: [UInt8], limits: Limits = .default) -> OpenADRDocumentError? {
  do {
    if case .distributeEvent(let d) = try VTNMessage.decode(bytes, limits: limits) {
      return d.unreadable.first?.problem
    }
    return nil
  } catch {
    return error
  }
}

/// An instant from seconds since 1970, compared to a microsecond.
func expectDate(_ date: Date?, _ seconds: Double, sourceLocation: SourceLocation = #_sourceLocation) {
  guard let date else {
    Issue.record("no date, expected \(seconds)", sourceLocation: sourceLocation)
    return
  }
  #expect(
    abs(date.timeIntervalSince1970 - seconds) < 1e-6, "\(date.timeIntervalSince1970) vs \(seconds)",
    sourceLocation: sourceLocation)
}

import Foundation
import Testing

@testable import OpenADR

/// openleadr's own checks (Tests/Integration/openadr_validate.py: the 2.0b XSD with lxml,
/// then openleadr's reader) run on what the builders write: the VTN accepts nothing else.
enum Validator {
  static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Integration/openadr_validate.py")

  static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", script.path] + arguments
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
  }

  /// python3 with openleadr 0.5.36 and lxml (scripts/setup none installs them).
  static let isAvailable = (try? run(["--check"]).status) == 0
}

@Suite("The VEN's documents against openleadr's 2.0b schema")
struct SchemaValidationTests {
  @Test(
    "every builder's document is schema-valid and openleadr reads its values; a broken one is not",
    .enabled(if: Validator.isAvailable, "needs python3 with openleadr and lxml: run scripts/setup none"))
  func validate() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mge-openadr-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let documents = Built.documents()
    for (name, bytes) in documents {
      try Data(bytes).write(to: folder.appendingPathComponent(name + ".xml"))
    }
    // The control: the schema check must be able to fail (venID is required in oadrPoll).
    let broken = String(decoding: VENMessage.poll(venID: "ven-1"), as: UTF8.self)
      .replacingOccurrences(of: "<ei:venID>ven-1</ei:venID>", with: "")
    try Data(broken.utf8).write(to: folder.appendingPathComponent("zz-broken-poll.xml"))

    let (status, output) = try Validator.run([folder.path])
    #expect(status == 0)
    var results: [String: [String: Any]] = [:]
    for line in output.split(separator: "\n") {
      let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
      if let object, let file = object["file"] as? String { results[file] = object }
    }
    #expect(results.count == documents.count + 1)
    for (name, _) in documents {
      let result = results[name + ".xml"]
      #expect(result?["valid"] as? Bool == true, "\(name): \(result?["error"] ?? "no result")")
    }
    #expect(results["zz-broken-poll.xml"]?["valid"] as? Bool == false)

    // What openleadr reads from them.
    func payload(_ name: String) -> [String: Any] { results[name + ".xml"]?["payload"] as? [String: Any] ?? [:] }
    #expect(payload("createPartyRegistration")["ven_name"] as? String == "ven <&> \"quoted\" 'single' \u{FFFD}bell é")
    #expect(payload("poll")["ven_id"] as? String == "ven <&> \"quoted\" 'single' \u{FFFD}bell é")
    let responses = payload("createdEvent")["event_responses"] as? [[String: Any]]
    #expect(responses?.map { $0["opt_type"] as? String } == ["optIn", "optOut"])
    #expect(responses?.map { $0["modification_number"] as? Int } == [2, 0])
    #expect(responses?.last?["response_code"] as? Int == 460)
    let reports = payload("updateReport")["reports"] as? [[String: Any]]
    let intervals = reports?.first?["intervals"] as? [[String: Any]]
    // One interval per value, each with one report_payload that openleadr turns into a float.
    #expect(intervals?.count == 4)
    #expect(intervals?.first?["dtstart"] as? String == "2026-12-02 14:44:59.001921+00:00")
    #expect(intervals?.first?["duration"] as? String == "0:00:02")
    let values = intervals?.compactMap { $0["report_payload"] as? [String: Any] }
    #expect(
      values?.map { $0["r_id"] as? String }
        == ["site-grid-import", "site-available-discharge", "site-grid-import", "site-available-discharge"])
    #expect(values?.prefix(3).map { $0["value"] as? Double } == [41.5, 1e-7, -3])
    let registered = payload("registerReport")["reports"] as? [[String: Any]]
    let descriptions = registered?.first?["report_descriptions"] as? [[String: Any]]
    #expect(descriptions?.map { $0["report_type"] as? String } == ["usage", "upRegulationCapacityAvailable"])
    let measurement = descriptions?.first?["measurement"] as? [String: Any]
    #expect(measurement?["name"] as? String == "powerReal")
    #expect(measurement?["scale"] as? String == "k")
  }
}

import Foundation
import Testing

@testable import Reports

@Suite struct JSONScannerTests {
  func parse(_ text: String) throws -> (JSONObjectView?, JSONScanError?) {
    var result: (JSONObjectView?, JSONScanError?) = (nil, nil)
    var t = text
    t.withUTF8 { buffer in
      do {
        let view = try JSONObjectView(bytes: UnsafeRawBufferPointer(buffer))
        result.0 = view
      } catch let error as JSONScanError { result.1 = error } catch {}
    }
    return result
  }

  @Test func readsTheMembersAReportUses() throws {
    let text =
      #"{"seq":7,"kind":"telemetry","time":"2026-07-14T19:00:01.250Z","grid_kw":-12.5,"utility":true,"x":null,"chargers":[{"id":"C1","kw":3e1}]}"#
    var t = text
    try t.withUTF8 { buffer in
      let o = try JSONObjectView(bytes: UnsafeRawBufferPointer(buffer))
      #expect(o.number("seq") == 7)
      #expect(o.stringEquals("kind", "telemetry"))
      #expect(o.number("grid_kw") == -12.5)
      #expect(o.bool("utility") == true)
      #expect(o.timeMS("time") == 1_784_055_601_250)
      #expect(o.objects("chargers").first?.number("kw") == 30)
      #expect(o.number("missing") == nil)
    }
  }

  @Test(arguments: [
    #"{"seq":7,"kind":"telem"#, #"{"a":1,}"#, #"{"a":01x}"#, #"{"a":1} trailing"#, #"["not an object"]"#,
    #"{"a":tru}"#, "{\"a\":\"tab\tinside\"}",
  ])
  func refusesBrokenLines(_ text: String) throws {
    let (view, error) = try parse(text)
    #expect(view == nil)
    #expect(error != nil)
  }

  @Test func unescapesOnlyWhenNeeded() throws {
    var t = #"{"reason":"the \"big\" bus\nleft"}"#
    try t.withUTF8 { buffer in
      let o = try JSONObjectView(bytes: UnsafeRawBufferPointer(buffer))
      #expect(o.string("reason") == "the \"big\" bus\nleft")
    }
  }

  @Test func timesMustBeRealDates() {
    #expect(RecordTime.parseMS("2026-06-31T00:00:00.000Z") == nil)
    #expect(RecordTime.parseMS("2026-07-14 19:00:00.000Z") == nil)
    #expect(RecordTime.parseMS("2026-07-14T19:00:00Z") == 1_784_055_600_000)
    #expect(RecordTime.parseMS("1970-01-01T00:00:00.5Z") == 500)
  }
}

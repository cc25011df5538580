import Foundation
import Testing

@testable import OpenADR

@Suite("Reading XML safely: the element tree and what is refused before and while parsing")
struct XMLTreeTests {
  func parse(_ text: String, limits: Limits = .default) throws(OpenADRDocumentError) -> XMLTreeElement {
    try XMLTreeElement.parse(Array(text.utf8), limits: limits)
  }

  func refusal(_ text: String, limits: Limits = .default) -> OpenADRDocumentError? {
    refusal(Array(text.utf8), limits: limits)
  }

  func refusal(_ bytes: [UInt8], limits: Limits = .default) -> OpenADRDocumentError? {
    do {
      _ = try XMLTreeElement.parse(bytes, limits: limits)
      return nil
    } catch {
      return error
    }
  }

  @Test("elements by namespace and local name, whitespace-only text dropped, entities and CDATA read")
  func tree() throws {
    let root = try parse(
      """
      <?xml version="1.0" encoding="UTF-8"?>
      <a:root xmlns:a="urn:a" xmlns="urn:default" a:id="x" plain="y">
        <child>one &amp; &lt;two&gt; &#233;</child>
        <a:child><![CDATA[<not markup>]]></a:child>
        <!-- a comment --><?pi data?>
      </a:root>
      """)
    #expect(root.name == XMLName("urn:a", "root"))
    #expect(root.text == nil)
    #expect(
      root.attributes == [
        XMLAttribute(name: XMLName("urn:a", "id"), value: "x"), XMLAttribute(name: XMLName("", "plain"), value: "y"),
      ])
    #expect(root.children.map(\.name) == [XMLName("urn:default", "child"), XMLName("urn:a", "child")])
    #expect(root.children[0].text == "one & <two> é")
    #expect(root.children[1].text == "<not markup>")
  }

  @Test("document type declarations are refused before the parser sees them")
  func doctype() {
    let cases = [
      "<?xml version=\"1.0\"?>\n<!DOCTYPE r [<!ENTITY e \"x\">]>\n<r>&e;</r>",
      "<!DOCTYPE r SYSTEM \"http://example.com/r.dtd\"><r/>",
      "<!-- first --><!DOCTYPE r><r/>",
      // A notation declaration crashes XMLParser on Linux (Prescreen.swift): if this reached
      // the parser, the test process would die here.
      "<?xml version=\"1.0\"?>\n<!DOCTYPE r [<!NOTATION n SYSTEM \"n\">]><r/>",
      "<r><!ENTITY e \"x\"></r>",
      "<r/><!DOCTYPE r>",
    ]
    for text in cases {
      let error = refusal(text)
      #expect(error?.kind == .documentTypeDeclaration, "\(text)")
      #expect(error?.message.hasPrefix("document type declarations are refused (entity expansion") == true)
    }
    #expect(refusal("<?xml version=\"1.0\"?>\n<!DOCTYPE r>\n<r/>")?.message.hasSuffix("at line 2, column 1") == true)
    // The same words in a comment, a CDATA section or a processing instruction are not markup.
    #expect(refusal("<r><!-- <!DOCTYPE r> --><![CDATA[<!ENTITY x>]]><?pi <!DOCTYPE?></r>") == nil)
  }

  @Test("a billion laughs with 30 levels: refused at once, nothing expanded")
  func billionLaughs() {
    var declarations = "<!ENTITY l0 \"lol\">"
    for level in 1...30 {
      declarations += "<!ENTITY l\(level) \"" + String(repeating: "&l\(level - 1);", count: 10) + "\">"
    }
    let text = "<?xml version=\"1.0\"?>\n<!DOCTYPE r [\(declarations)]>\n<r>&l30;</r>"
    let clock = ContinuousClock()
    let started = clock.now
    #expect(refusal(text)?.kind == .documentTypeDeclaration)
    #expect(clock.now - started < .milliseconds(100))
  }

  @Test("an entity reference without a DTD is refused (not left to libxml2's recovery)")
  func undeclaredEntity() {
    let error = refusal("<r>&xxe;</r>")
    #expect(error?.kind == .entityReference)
    #expect(error?.message.hasPrefix("entity reference &xxe; refused") == true)
  }

  @Test("not UTF-8: refused before XMLParser, which traps on an invalid name")
  func encodings() {
    // <a\xFF> would be SIGILL inside XMLParser (swift-corelibs-foundation issue 5534).
    var error = refusal([0x3C, 0x61, 0xFF, 0x3E, 0x3C, 0x2F, 0x61, 0x3E])
    #expect(error == OpenADRDocumentError(.encoding, "body is not valid UTF-8 at line 1, column 3 (byte 2)"))
    error = refusal(Array("<r>\n<!-- ".utf8) + [0xC3] + Array(" --></r>".utf8))
    #expect(error?.message == "body is not valid UTF-8 at line 2, column 6 (byte 9)")
    error = refusal([0xFF, 0xFE, 0x3C, 0x00, 0x72, 0x00, 0x2F, 0x00, 0x3E, 0x00])
    #expect(error?.kind == .encoding)
    error = refusal("<?xml version=\"1.0\" encoding=\"UTF-7\"?><r>+ADw-!DOCTYPE</r>")
    #expect(
      error
        == OpenADRDocumentError(
          .encoding, "the XML declaration names encoding \"UTF-7\"; only UTF-8 documents are read"))
    #expect(refusal("<?xml version='1.0' encoding='utf-8'?><r/>") == nil)
    #expect(refusal([0xEF, 0xBB, 0xBF] + Array("<?xml version=\"1.0\" encoding=\"UTF-8\"?><r>é</r>".utf8)) == nil)
  }

  @Test("the limits: size, depth, elements, text")
  func limits() {
    var error = refusal(String(repeating: " ", count: 100) + "<r/>", limits: Limits(maxBytes: 64))
    #expect(error == OpenADRDocumentError(.tooLarge, "body is 104 bytes, over the 64-byte limit"))
    error = decodingError(Array(repeating: 0x20, count: 10_485_760))
    #expect(error == OpenADRDocumentError(.tooLarge, "body is 10485760 bytes, over the 1048576-byte limit"))

    let deep = String(repeating: "<a>", count: 65) + String(repeating: "</a>", count: 65)
    #expect(refusal(deep)?.kind == .tooDeep)
    #expect(refusal(String(repeating: "<a>", count: 64) + String(repeating: "</a>", count: 64)) == nil)
    // Far deeper than libxml2's own limit of 256 would allow: still our refusal, quickly.
    let veryDeep = String(repeating: "<a>", count: 100_000)
    #expect(refusal(veryDeep)?.message.hasPrefix("elements nest deeper than 64") == true)

    let many = "<r>" + String(repeating: "<a/>", count: 101) + "</r>"
    #expect(
      refusal(many, limits: Limits(maxElements: 100))
        == OpenADRDocumentError(.tooManyElements, "more than 100 elements"))
    #expect(refusal(many, limits: Limits(maxElements: 102)) == nil)

    let long = "<r><t>" + String(repeating: "x", count: 70_000) + "</t></r>"
    #expect(refusal(long)?.message.hasPrefix("text of t is over the 65536-byte limit") == true)
  }

  @Test("not well-formed: line and column from the parser")
  func notWellFormed() {
    #expect(
      refusal("<r>\n  <a>\n</b></r>")
        == OpenADRDocumentError(
          .notWellFormed,
          "not well-formed XML at line 3, column 5: the closing tag does not match the opening tag (libxml2 error 76)"))
    #expect(refusal("<r>")?.kind == .notWellFormed)
    #expect(refusal("<r/><s/>")?.kind == .notWellFormed)
    #expect(refusal("<p:r/>")?.kind == .notWellFormed)
    #expect(refusal("")?.kind == .empty)
    #expect(refusal(" \n ")?.kind == .empty)
    #expect(refusal("abc")?.kind != nil)
  }

  @Test("safe from any thread: 200 documents decoded in parallel give the same values")
  func concurrent() async throws {
    let bytes = try Samples.bytes("oadrDistributeEvent-load-dispatch.xml")
    let hostile = try Samples.bytes("hostile/billion-laughs.xml")
    let expected = try VTNMessage.decode(bytes)
    let results = await withTaskGroup(of: Bool.self) { group in
      for i in 0..<200 {
        group.addTask {
          if i % 2 == 0 { return (try? VTNMessage.decode(bytes)) == expected }
          return decodingError(hostile)?.kind == .documentTypeDeclaration
        }
      }
      return await group.reduce(into: [Bool]()) { $0.append($1) }
    }
    #expect(results.count == 200 && results.allSatisfy { $0 })
  }
}

// What is refused before XMLParser sees a single byte.
//
// FoundationXML's XMLParser on Linux (swift-corelibs-foundation, libxml2 underneath) cannot
// be trusted with a hostile document on its own; what was seen with Swift 6.3.1 and Debian's
// libxml2 2.9.14:
// - it turns on libxml2's entity substitution (XML_PARSE_NOENT) and recovery mode: libxml2's
//   own amplification check stops the billion laughs, but `parse()` can return true for a
//   document with errors, and an internal entity's text silently disappears;
// - it wires no `entityDecl` callback, so `foundInternalEntityDeclaration` and
//   `foundExternalEntityDeclaration` never fire: a DTD cannot be refused from the delegate;
// - a `<!NOTATION …>` declaration in a DTD crashes the process (SIGSEGV in its notation
//   callback), and a name or comment that is not valid UTF-8 traps (SIGILL; known upstream,
//   swift-corelibs-foundation issue 5534).
// So the bytes are screened first: size, UTF-8 only, and no markup declaration anywhere.
// A markup declaration (`<!DOCTYPE`, `<!ENTITY`, `<!ELEMENT`, `<!ATTLIST`, `<!NOTATION`) is
// the only way to define an entity, so with none there is nothing to expand; OpenADR
// documents never carry one. The scan is linear and allocates nothing.

enum Prescreen {
  static func check(_ bytes: [UInt8], limits: Limits) throws(OpenADRDocumentError) {
    if bytes.count > limits.maxBytes {
      throw OpenADRDocumentError(
        .tooLarge, "body is \(bytes.count) bytes, over the \(limits.maxBytes)-byte limit")
    }
    if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) {
      throw OpenADRDocumentError(.empty, "body is empty (\(bytes.count) bytes, no XML)")
    }
    // XMLParser does not parse at all below 4 bytes (it waits for more to guess the encoding
    // from); the shortest document, `<a/>`, is 4.
    if bytes.count < 4 {
      throw OpenADRDocumentError(
        .notWellFormed, "not well-formed XML at line 1, column 1: \(bytes.count) bytes cannot be a document")
    }
    try checkUTF8(bytes)
    try checkDeclaredEncoding(bytes)
    try checkNoMarkupDeclarations(bytes)
  }

  /// Every byte sequence must be UTF-8 (OpenADR's encoding, the only one openleadr writes).
  /// A UTF-16 document fails here too: its byte order mark, or its zero bytes, are not UTF-8
  /// text a document may start with.
  private static func checkUTF8(_ bytes: [UInt8]) throws(OpenADRDocumentError) {
    if bytes.starts(with: [0xFE, 0xFF]) || bytes.starts(with: [0xFF, 0xFE]) {
      throw OpenADRDocumentError(.encoding, "body is UTF-16 (byte order mark); only UTF-8 documents are read")
    }
    var iterator = bytes.makeIterator()
    var decoder = Unicode.UTF8()
    var offset = 0
    while true {
      switch decoder.decode(&iterator) {
      case .scalarValue(let scalar):
        offset += UTF8.width(scalar)
      case .emptyInput:
        return
      case .error:
        let (line, column) = position(of: offset, in: bytes)
        throw OpenADRDocumentError(
          .encoding, "body is not valid UTF-8 at line \(line), column \(column) (byte \(offset))")
      }
    }
  }

  /// `<?xml version="1.0" encoding="…"?>` may only name UTF-8 (or its subset US-ASCII):
  /// libxml2 would otherwise decode the rest with another encoding (UTF-7 spells `<` as
  /// `+ADw-`), and the markup scan below would not see what the parser sees.
  private static func checkDeclaredEncoding(_ bytes: [UInt8]) throws(OpenADRDocumentError) {
    var start = 0
    if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { start = 3 }
    guard bytes[start...].starts(with: Array("<?xml".utf8)),
      let end = find(Array("?>".utf8), in: bytes, from: start)
    else { return }
    let declaration = String(decoding: bytes[start..<end], as: UTF8.self)
    guard let range = declaration.range(of: "encoding") else { return }
    // encoding = "name" or 'name'
    var rest = declaration[range.upperBound...].drop { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
    guard rest.first == "=" else { return }
    rest = rest.dropFirst().drop { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
    guard let quote = rest.first, quote == "\"" || quote == "'" else { return }
    let name = rest.dropFirst().prefix { $0 != quote }
    switch name.lowercased() {
    case "utf-8", "utf8", "us-ascii", "ascii": return
    default:
      throw OpenADRDocumentError(
        .encoding, "the XML declaration names encoding \"\(name)\"; only UTF-8 documents are read")
    }
  }

  /// Any `<!` that does not open a comment or a CDATA section is a markup declaration: refused
  /// wherever it is. Raw `<` can only start markup outside comments, CDATA sections and
  /// processing instructions (text and attribute values must escape it), so those three are
  /// skipped whole.
  private static func checkNoMarkupDeclarations(_ bytes: [UInt8]) throws(OpenADRDocumentError) {
    let lt = UInt8(ascii: "<")
    let commentOpen = Array("<!--".utf8)
    let cdataOpen = Array("<![CDATA[".utf8)
    var i = 0
    while i < bytes.count {
      guard bytes[i] == lt else {
        i += 1
        continue
      }
      let next = i + 1 < bytes.count ? bytes[i + 1] : 0
      if next == UInt8(ascii: "?") {
        i = (find(Array("?>".utf8), in: bytes, from: i + 2) ?? bytes.count) + 2
      } else if bytes[i...].starts(with: commentOpen) {
        i = (find(Array("-->".utf8), in: bytes, from: i + 4) ?? bytes.count) + 3
      } else if bytes[i...].starts(with: cdataOpen) {
        i = (find(Array("]]>".utf8), in: bytes, from: i + 9) ?? bytes.count) + 3
      } else if next == UInt8(ascii: "!") {
        let (line, column) = position(of: i, in: bytes)
        let word = String(decoding: bytes[i..<min(bytes.count, i + 10)].prefix { $0 > 0x20 }, as: UTF8.self)
        throw OpenADRDocumentError(
          .documentTypeDeclaration,
          "document type declarations are refused (entity expansion, external entities): \(word)… at line \(line), column \(column)"
        )
      } else {
        i += 1
      }
    }
  }

  /// The index of the first occurrence of `needle` at or after `from`.
  private static func find(_ needle: [UInt8], in bytes: [UInt8], from: Int) -> Int? {
    guard let first = needle.first, from <= bytes.count - needle.count else { return nil }
    var i = from
    while i <= bytes.count - needle.count {
      if bytes[i] == first && bytes[i..<(i + needle.count)].elementsEqual(needle) { return i }
      i += 1
    }
    return nil
  }

  /// 1-based line and column (in bytes) of a byte offset, as the parser counts them.
  static func position(of offset: Int, in bytes: [UInt8]) -> (line: Int, column: Int) {
    var line = 1
    var lineStart = 0
    for i in 0..<min(offset, bytes.count) where bytes[i] == 0x0A {
      line += 1
      lineStart = i + 1
    }
    return (line, offset - lineStart + 1)
  }
}

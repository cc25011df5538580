// A small namespace-aware element tree, read with FoundationXML's XMLParser.
//
// The tree is what both directions share: the decoder reads VTN documents into it, the VEN
// builders make one and `XMLWriter` serializes it. It keeps what OpenADR needs and no more:
// elements by (namespace, local name), their text, their children in order. Whitespace-only
// text is dropped (openleadr leaves stray indentation between elements). Attributes are by
// expanded name too: XMLParser on Linux hands them over by qualified name only (it drops
// their namespace URI), so the builder resolves their prefixes from the prefix mappings it
// is told about. (OpenADR reads no attribute from a VTN; `oadr:Id` and `ei:schemaVersion` are
// fixed values. They are kept so that the tree reads back what the writer wrote.)
//
// Safety: `Prescreen` runs first (size, UTF-8, no DTD: see there why XMLParser alone is not
// enough); the delegate then enforces depth, element count and text length while parsing and
// stops at the first error of any kind. Every call makes its own XMLParser and delegate, so
// parsing is safe from any thread; the result is a plain Sendable value.

import Foundation

#if canImport(FoundationXML)
  import FoundationXML
#endif

struct XMLAttribute: Sendable, Equatable {
  var name: XMLName
  var value: String
}

struct XMLTreeElement: Sendable, Equatable {
  var name: XMLName
  var attributes: [XMLAttribute]
  /// The element's text, nil when it had none or only whitespace.
  var text: String?
  var children: [XMLTreeElement]

  init(_ name: XMLName, text: String? = nil, attributes: [XMLAttribute] = [], children: [XMLTreeElement] = []) {
    self.name = name
    self.attributes = attributes
    self.text = text
    self.children = children
  }

  /// Parses `bytes` into a tree, or says why not.
  static func parse(_ bytes: [UInt8], limits: Limits = .default) throws(OpenADRDocumentError) -> XMLTreeElement {
    try Prescreen.check(bytes, limits: limits)
    let parser = XMLParser(data: Data(bytes))
    parser.shouldProcessNamespaces = true
    parser.shouldReportNamespacePrefixes = true
    parser.shouldResolveExternalEntities = false
    parser.externalEntityResolvingPolicy = .never
    let builder = TreeBuilder(limits: limits, bytes: bytes)
    parser.delegate = builder
    // The result of parse() is not trusted: in libxml2's recovery mode (which XMLParser turns
    // on) it can be true for a document with errors. The delegate saw every error.
    _ = withExtendedLifetime(builder) { parser.parse() }
    if let failure = builder.failure { throw failure }
    if let error = parser.parserError {
      throw OpenADRDocumentError(.notWellFormed, "not well-formed XML: \(error.localizedDescription)")
    }
    guard let root = builder.root else {
      throw OpenADRDocumentError(.empty, "body has no root element (\(bytes.count) bytes)")
    }
    return root
  }
}

/// Builds the tree from XMLParser's callbacks, refusing as soon as a limit is passed.
private final class TreeBuilder: NSObject, XMLParserDelegate {
  struct Open {
    var element: XMLTreeElement
    var text: String = ""
    var textBytes = 0
  }

  let limits: Limits
  let bytes: [UInt8]
  var stack: [Open] = []
  /// Prefix → the URIs it is bound to, innermost last (for attributes).
  var prefixes: [String: [String]] = ["xml": ["http://www.w3.org/XML/1998/namespace"]]
  var root: XMLTreeElement?
  var elementCount = 0
  private(set) var failure: OpenADRDocumentError?

  init(limits: Limits, bytes: [UInt8]) {
    self.limits = limits
    self.bytes = bytes
  }

  private func fail(_ parser: XMLParser, _ error: OpenADRDocumentError) {
    if failure == nil { failure = error }
    parser.abortParsing()
  }

  func parser(
    _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName qName: String?,
    attributes attributeDict: [String: String] = [:]
  ) {
    guard failure == nil else { return }
    elementCount += 1
    if elementCount > limits.maxElements {
      return fail(parser, OpenADRDocumentError(.tooManyElements, "more than \(limits.maxElements) elements"))
    }
    if stack.count >= limits.maxDepth {
      return fail(
        parser,
        OpenADRDocumentError(
          .tooDeep, "elements nest deeper than \(limits.maxDepth) at line \(parser.lineNumber)"))
    }
    // Sorted: a dictionary's order is not the document's, but it should be the same every time.
    let attributes = attributeDict.sorted { $0.key < $1.key }.map { qualified, value in
      guard let colon = qualified.firstIndex(of: ":") else {
        return XMLAttribute(name: XMLName("", qualified), value: value)
      }
      let prefix = String(qualified[..<colon])
      let local = String(qualified[qualified.index(after: colon)...])
      return XMLAttribute(name: XMLName(prefixes[prefix]?.last ?? "", local), value: value)
    }
    stack.append(Open(element: XMLTreeElement(XMLName(namespaceURI ?? "", elementName), attributes: attributes)))
  }

  func parser(_ parser: XMLParser, didStartMappingPrefix prefix: String, toURI namespaceURI: String) {
    prefixes[prefix, default: []].append(namespaceURI)
  }

  func parser(_ parser: XMLParser, didEndMappingPrefix prefix: String) {
    _ = prefixes[prefix]?.popLast()
  }

  func parser(_ parser: XMLParser, foundCharacters string: String) {
    appendText(parser, string)
  }

  func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
    appendText(parser, String(decoding: CDATABlock, as: UTF8.self))
  }

  private func appendText(_ parser: XMLParser, _ string: String) {
    guard failure == nil, !stack.isEmpty else { return }
    stack[stack.count - 1].textBytes += string.utf8.count
    if stack[stack.count - 1].textBytes > limits.maxTextBytes {
      let name = stack[stack.count - 1].element.name
      return fail(
        parser,
        OpenADRDocumentError(
          .textTooLong, "text of \(name) is over the \(limits.maxTextBytes)-byte limit (line \(parser.lineNumber))"))
    }
    stack[stack.count - 1].text += string
  }

  func parser(
    _ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?
  ) {
    guard failure == nil, var open = stack.popLast() else { return }
    let isBlank = open.text.allSatisfy { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" }
    open.element.text = isBlank ? nil : open.text
    if stack.isEmpty {
      root = open.element
    } else {
      stack[stack.count - 1].element.children.append(open.element)
    }
  }

  // An entity other than the five predefined ones: there is no DTD (Prescreen), so it is
  // undeclared; refused rather than left to libxml2's recovery.
  func parser(_ parser: XMLParser, resolveExternalEntityName name: String, systemID: String?) -> Data? {
    fail(
      parser,
      OpenADRDocumentError(
        .entityReference,
        "entity reference &\(name); refused (only &amp; &lt; &gt; &quot; &apos; are read) at line \(parser.lineNumber)"
      ))
    return nil
  }

  // Never called on Linux (no DTD reaches the parser, and XMLParser does not report entity
  // declarations there); on Darwin they would be. Refused all the same.
  func parser(_ parser: XMLParser, foundInternalEntityDeclarationWithName name: String, value: String?) {
    refuseDeclaration(parser, "<!ENTITY \(name)")
  }
  func parser(
    _ parser: XMLParser, foundExternalEntityDeclarationWithName name: String, publicID: String?, systemID: String?
  ) {
    refuseDeclaration(parser, "<!ENTITY \(name)")
  }
  func parser(_ parser: XMLParser, foundElementDeclarationWithName elementName: String, model: String) {
    refuseDeclaration(parser, "<!ELEMENT \(elementName)")
  }
  func parser(
    _ parser: XMLParser, foundAttributeDeclarationWithName attributeName: String, forElement elementName: String,
    type: String?, defaultValue: String?
  ) {
    refuseDeclaration(parser, "<!ATTLIST \(elementName)")
  }

  private func refuseDeclaration(_ parser: XMLParser, _ what: String) {
    fail(
      parser,
      OpenADRDocumentError(
        .documentTypeDeclaration,
        "document type declarations are refused (entity expansion, external entities): \(what) at line \(parser.lineNumber)"
      ))
  }

  func parser(_ parser: XMLParser, parseErrorOccurred parseError: Error) {
    guard failure == nil else { return }
    let code = (parseError as NSError).code
    // libxml2's warnings (xmlerror.h: an unknown XML version, xml:lang, a namespace URI that
    // is not absolute, xml:space, a colon in a name) do not make the document unreadable.
    if [97, 98, 99, 100, 102, 106].contains(code) { return }
    failure = OpenADRDocumentError(
      .notWellFormed,
      "not well-formed XML at line \(parser.lineNumber), column \(parser.columnNumber): \(Self.describe(libxml2Error: code))"
    )
    parser.abortParsing()
  }

  /// The common libxml2 error codes (xmlerror.h, `xmlParserErrors`) in words; XMLParser on
  /// Linux hands over the code only.
  static func describe(libxml2Error code: Int) -> String {
    let words: [Int: String] = [
      4: "no root element ('<' expected)", 5: "the document ends too early (unclosed elements)",
      9: "a character that XML does not allow", 23: "an entity reference without ';'",
      26: "an undeclared entity", 38: "'<' in an attribute value", 39: "an attribute value without quotes",
      40: "an unterminated attribute value", 41: "an attribute without a value", 42: "an attribute given twice",
      45: "an unterminated comment", 64: "a reserved name ('xml…')", 65: "a space is required here",
      68: "a name is required here", 73: "'>' expected", 74: "'</' expected",
      76: "the closing tag does not match the opening tag", 77: "an unterminated tag",
      85: "the elements are not balanced", 86: "content after the root element", 89: "an entity reference loop",
      201: "a namespace prefix that is not declared", 202: "an invalid qualified name",
      203: "an attribute given twice (namespaces)",
    ]
    return "\(words[code] ?? "parser error") (libxml2 error \(code))"
  }
}

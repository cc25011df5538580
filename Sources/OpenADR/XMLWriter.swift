// Serializing an `XMLTreeElement` as UTF-8 XML: the only way the VEN's documents are made.
//
// Every text and attribute value goes through `escape`, never pasted: `& < > " '` become
// references, and the characters XML 1.0 cannot carry at all (control characters other than
// tab, line feed and carriage return, lone surrogates are impossible in a Swift String,
// U+FFFE/U+FFFF) become U+FFFD, so that no value can make the document ill-formed or change
// its structure. Namespaces: every namespace used anywhere in the tree is declared once, on
// the root, with the prefixes of `NS.prefixes` (openleadr's own; an unknown namespace gets
// `ns1`, `ns2`...). openleadr's VTN validates namespaces, not prefixes (study, "Document
// shape"), so declaring them up front is as good as openleadr's per-element declarations.

enum XMLWriter {
  /// `<?xml version="1.0" encoding="utf-8"?>`, a newline, then the element, as UTF-8.
  static func document(_ root: XMLTreeElement) -> [UInt8] {
    var prefixes: [String: String] = [:]
    var declarations: [(prefix: String, uri: String)] = []
    var used: [String] = []
    collectNamespaces(root, into: &used)
    for (prefix, uri) in NS.prefixes where used.contains(uri) {
      prefixes[uri] = prefix
      declarations.append((prefix, uri))
    }
    for uri in used where prefixes[uri] == nil && !uri.isEmpty {
      let prefix = "ns\(declarations.count + 1)"
      prefixes[uri] = prefix
      declarations.append((prefix, uri))
    }
    var out = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
    write(root, prefixes: prefixes, declarations: declarations, to: &out)
    out += "\n"
    return Array(out.utf8)
  }

  private static func collectNamespaces(_ element: XMLTreeElement, into used: inout [String]) {
    for uri in [element.name.namespace] + element.attributes.map(\.name.namespace) where !used.contains(uri) {
      used.append(uri)
    }
    for child in element.children { collectNamespaces(child, into: &used) }
  }

  private static func qualified(_ name: XMLName, _ prefixes: [String: String]) -> String {
    guard let prefix = prefixes[name.namespace] else { return name.local }
    return "\(prefix):\(name.local)"
  }

  private static func write(
    _ element: XMLTreeElement, prefixes: [String: String], declarations: [(prefix: String, uri: String)],
    to out: inout String
  ) {
    let tag = qualified(element.name, prefixes)
    out += "<" + tag
    for (prefix, uri) in declarations {
      out += " xmlns:\(prefix)=\"\(escape(uri))\""
    }
    for attribute in element.attributes {
      out += " \(qualified(attribute.name, prefixes))=\"\(escape(attribute.value))\""
    }
    if element.children.isEmpty && (element.text ?? "").isEmpty {
      out += "/>"
      return
    }
    out += ">"
    if let text = element.text { out += escape(text) }
    for child in element.children {
      write(child, prefixes: prefixes, declarations: [], to: &out)
    }
    out += "</" + tag + ">"
  }

  /// Text or attribute value, escaped for either place. Tab, line feed and carriage return
  /// are written as references too: in an attribute a parser would otherwise turn them into
  /// spaces, and a raw carriage return would be read back as a line feed.
  static func escape(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars {
      switch scalar {
      case "&": out += "&amp;"
      case "<": out += "&lt;"
      case ">": out += "&gt;"
      case "\"": out += "&quot;"
      case "'": out += "&apos;"
      case "\t": out += "&#9;"
      case "\n": out += "&#10;"
      case "\r": out += "&#13;"
      default:
        let value = scalar.value
        if value < 0x20 || value == 0xFFFE || value == 0xFFFF {
          out.unicodeScalars.append("\u{FFFD}")
        } else {
          out.unicodeScalars.append(scalar)
        }
      }
    }
    return out
  }
}

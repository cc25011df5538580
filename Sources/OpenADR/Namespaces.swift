// The XML namespaces of OpenADR 2.0b (docs/openadr-study.md, "Document shape, namespaces,
// prefixes"). Elements are told apart by (namespace, local name), never by prefix: openleadr
// writes the same element with a prefix in one document and under a default namespace in
// another. The prefixes here are only the ones this codec writes, and the ones it uses to
// name elements in error messages.

/// An element's or attribute's expanded name.
struct XMLName: Hashable, Sendable, CustomStringConvertible {
  let namespace: String
  let local: String

  init(_ namespace: String, _ local: String) {
    self.namespace = namespace
    self.local = local
  }

  /// `prefix:local` with the conventional prefix of the namespace, for messages; an unknown
  /// namespace is spelled out in braces.
  var description: String {
    if let prefix = NS.prefix(for: namespace) { return "\(prefix):\(local)" }
    return namespace.isEmpty ? local : "{\(namespace)}\(local)"
  }
}

enum NS {
  static let oadr = "http://openadr.org/oadr-2.0b/2012/07"
  static let ei = "http://docs.oasis-open.org/ns/energyinterop/201110"
  static let pyld = "http://docs.oasis-open.org/ns/energyinterop/201110/payloads"
  static let xcal = "urn:ietf:params:xml:ns:icalendar-2.0"
  static let strm = "urn:ietf:params:xml:ns:icalendar-2.0:stream"
  static let emix = "http://docs.oasis-open.org/ns/emix/2011/06"
  static let power = "http://docs.oasis-open.org/ns/emix/2011/06/power"
  static let scale = "http://docs.oasis-open.org/ns/emix/2011/06/siscale"
  static let ds = "http://www.w3.org/2000/09/xmldsig#"

  /// In the order the writer declares them on the root element.
  static let prefixes: [(prefix: String, uri: String)] = [
    ("oadr", oadr), ("ei", ei), ("pyld", pyld), ("xcal", xcal), ("strm", strm), ("emix", emix),
    ("power", power), ("scale", scale), ("ds", ds),
  ]

  static func prefix(for uri: String) -> String? {
    prefixes.first { $0.uri == uri }?.prefix
  }
}

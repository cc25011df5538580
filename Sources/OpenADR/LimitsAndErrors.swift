// What a VTN's document may cost us, and the one error type for everything that is refused.
//
// A VTN is a peer on the network: its bodies are untrusted input. The limits bound the work
// and memory of reading one (docs/openadr-study.md, "Entities and large bodies"); every
// refusal is an `OpenADRDocumentError` whose message says what was wrong and where, in words
// an operator can act on.

/// The bounds a document must stay within to be read at all.
public struct Limits: Sendable, Equatable {
  /// Bytes of the whole body. openleadr's VTN (aiohttp) refuses requests over 1 MiB, so a
  /// bigger answer from it would be odd.
  public var maxBytes: Int
  /// Open elements at once. OpenADR documents nest about 12 deep; 64 is ample.
  public var maxDepth: Int
  /// Elements in the whole document: bounds the tree's memory (a 1 MiB oadrDistributeEvent
  /// of small intervals has about 30,000).
  public var maxElements: Int
  /// UTF-8 bytes of the text of one element (an X.509 certificate in a signature is ~2 KB).
  public var maxTextBytes: Int
  /// The longest duration accepted anywhere (an event, an interval, a poll frequency, a
  /// report's granularity): longer ones are a VTN's mistake or an attack on our arithmetic.
  public var maxDurationSeconds: Double

  public init(
    maxBytes: Int = 1_048_576, maxDepth: Int = 64, maxElements: Int = 50_000, maxTextBytes: Int = 65_536,
    maxDurationSeconds: Double = 366 * 86_400
  ) {
    self.maxBytes = maxBytes
    self.maxDepth = maxDepth
    self.maxElements = maxElements
    self.maxTextBytes = maxTextBytes
    self.maxDurationSeconds = maxDurationSeconds
  }

  public static let `default` = Limits()
}

/// Why a document was refused. `kind` is for code (the VEN answers some kinds differently),
/// `message` for people.
public struct OpenADRDocumentError: Error, CustomStringConvertible, Equatable, Sendable {
  public enum Kind: String, Sendable, Equatable, CaseIterable {
    /// The body is over `Limits.maxBytes`.
    case tooLarge
    /// Nothing to read: no bytes, or no root element.
    case empty
    /// Not UTF-8 (invalid bytes, a UTF-16 byte order mark, another declared encoding).
    case encoding
    /// A document type declaration or another markup declaration (`<!DOCTYPE`, `<!ENTITY`…).
    case documentTypeDeclaration
    /// A reference to an entity other than the five predefined ones.
    case entityReference
    /// Deeper than `Limits.maxDepth`.
    case tooDeep
    /// More elements than `Limits.maxElements`.
    case tooManyElements
    /// One element's text over `Limits.maxTextBytes`.
    case textTooLong
    /// The parser's own refusal: the bytes are not well-formed XML.
    case notWellFormed
    /// Well-formed, but not an OpenADR 2.0b payload (another root, another namespace).
    case notOpenADR
    /// An OpenADR message this codec does not read (e.g. one a VEN sends, not a VTN).
    case unsupportedMessage
    /// A required element or value is missing.
    case missingValue
    /// A value that cannot be read or is out of bounds (a negative modificationNumber, a
    /// duration of 9999 years, a number that is not finite).
    case invalidValue
  }

  public let kind: Kind
  public let message: String

  public init(_ kind: Kind, _ message: String) {
    self.kind = kind
    self.message = message
  }

  public var description: String { message }
}

import Foundation

/// One OCPP-J message on the WebSocket (OCPP 2.x part 4, "JSON over WebSockets"):
/// `[2, id, action, payload]` a call, `[3, id, payload]` its result, `[4, id, code,
/// description, details]` its error. (2.1 adds `[5, …]` CALLRESULTERROR and `[6, …]` SEND;
/// they are read, answered where needed, and never sent.)
public enum OCPPFrame: Sendable, Hashable {
  case call(id: String, action: String, payload: JSONValue)
  case result(id: String, payload: JSONValue)
  case error(id: String, code: OCPPErrorCode, description: String, details: JSONValue)
  /// 2.1: an error about a CALLRESULT this side sent.
  case resultError(id: String, code: OCPPErrorCode, description: String, details: JSONValue)
  /// 2.1: a call that expects no answer.
  case send(id: String, action: String, payload: JSONValue)

  public var messageID: String {
    switch self {
    case .call(let id, _, _), .result(let id, _), .error(let id, _, _, _), .resultError(let id, _, _, _),
      .send(let id, _, _):
      id
    }
  }

  /// The wire text (compact JSON array).
  public var text: String {
    let array: JSONValue =
      switch self {
      case .call(let id, let action, let payload): [2, .string(id), .string(action), payload]
      case .result(let id, let payload): [3, .string(id), payload]
      case .error(let id, let code, let description, let details):
        [4, .string(id), .string(code.rawValue), .string(description), details]
      case .resultError(let id, let code, let description, let details):
        [5, .string(id), .string(code.rawValue), .string(description), details]
      case .send(let id, let action, let payload): [6, .string(id), .string(action), payload]
      }
    return array.jsonText
  }

  /// Reads one frame. A frame that cannot be read throws `OCPPFrameError`, which carries
  /// the message id when one could be found, so the sender still gets a CALLERROR.
  public static func parse(_ text: String) throws(OCPPFrameError) -> OCPPFrame {
    let value: JSONValue
    do {
      value = try JSONValue.parse(text)
    } catch {
      throw OCPPFrameError(messageID: nil, code: .rpcFrameworkError, description: "not JSON: \(brief(text))")
    }
    guard let a = value.arrayValue, let type = a.first?.intValue else {
      throw OCPPFrameError(
        messageID: nil, code: .rpcFrameworkError, description: "not an OCPP-J array [type, id, ...]: \(brief(text))")
    }
    guard let id = a[safe: 1]?.stringValue, !id.isEmpty, id.count <= 36 else {
      throw OCPPFrameError(
        messageID: nil, code: .rpcFrameworkError, description: "message id missing or not a string of 1-36 characters")
    }
    func fail(_ what: String) -> OCPPFrameError {
      OCPPFrameError(messageID: id, code: .rpcFrameworkError, description: what)
    }
    switch type {
    case 2, 6:
      guard a.count == 4, let action = a[2].stringValue else {
        throw fail("a \(type == 2 ? "CALL" : "SEND") needs [\(type), id, action, payload]")
      }
      guard case .object = a[3] else {
        throw OCPPFrameError(
          messageID: id, code: .formatViolation, description: "payload of \(action) is \(a[3].typeName), not an object"
        )
      }
      return type == 2 ? .call(id: id, action: action, payload: a[3]) : .send(id: id, action: action, payload: a[3])
    case 3:
      guard a.count == 3 else { throw fail("a CALLRESULT needs [3, id, payload]") }
      return .result(id: id, payload: a[2])
    case 4, 5:
      guard a.count >= 4, let code = a[2].stringValue else {
        throw fail("a CALLERROR needs [4, id, code, description, details]")
      }
      let errorCode = OCPPErrorCode(rawValue: code) ?? .genericError
      let description = a[3].stringValue ?? ""
      let details = a[safe: 4] ?? [:]
      return type == 4
        ? .error(id: id, code: errorCode, description: description, details: details)
        : .resultError(id: id, code: errorCode, description: description, details: details)
    default:
      throw OCPPFrameError(
        messageID: id, code: .messageTypeNotSupported, description: "message type \(type) is not an OCPP-J type")
    }
  }

  static func brief(_ text: String) -> String {
    text.count <= 80 ? text : String(text.prefix(77)) + "..."
  }
}

/// OCPP-J error codes (2.0.1 and 2.1 part 4, 4.3).
public enum OCPPErrorCode: String, Sendable, Hashable, Codable {
  case formatViolation = "FormatViolation"
  case genericError = "GenericError"
  case internalError = "InternalError"
  case messageTypeNotSupported = "MessageTypeNotSupported"
  case notImplemented = "NotImplemented"
  case notSupported = "NotSupported"
  case occurrenceConstraintViolation = "OccurrenceConstraintViolation"
  case propertyConstraintViolation = "PropertyConstraintViolation"
  case protocolError = "ProtocolError"
  case rpcFrameworkError = "RpcFrameworkError"
  case securityError = "SecurityError"
  case typeConstraintViolation = "TypeConstraintViolation"
}

/// A frame that could not be read, as the CALLERROR to answer it with.
public struct OCPPFrameError: Error, Sendable, Hashable, CustomStringConvertible {
  public var messageID: String?
  public var code: OCPPErrorCode
  public var description: String
}

extension Array {
  subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}

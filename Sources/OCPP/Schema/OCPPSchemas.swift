import Foundation
import Synchronization

/// Which half of an exchange a payload is: the CALL (request) or its CALLRESULT (response).
public enum OCPPMessageKind: Sendable, Hashable {
  case request
  case response
}

/// A schema file that could not be read, parsed or compiled, named so it can be found.
public struct OCPPSchemaError: Error, Sendable, CustomStringConvertible {
  public var file: String
  public var reason: String

  public var description: String { "\(file): \(reason)" }
}

/// Every official schema of one OCPP edition, compiled, by action.
public final class OCPPSchemas: Sendable {
  public let version: OCPPVersion
  /// How many schema files were compiled (2.0.1 ships 128, 2.1 ships 181).
  public let schemaCount: Int
  private let requests: [String: JSONSchema]
  private let responses: [String: JSONSchema]

  private init(version: OCPPVersion, schemas: [String: JSONSchema]) {
    self.version = version
    schemaCount = schemas.count
    var requests: [String: JSONSchema] = [:]
    var responses: [String: JSONSchema] = [:]
    for (name, schema) in schemas {
      if name.hasSuffix("Response") {
        responses[String(name.dropLast("Response".count))] = schema
      } else if name.hasSuffix("Request") {
        requests[String(name.dropLast("Request".count))] = schema
      } else {
        // 2.1's SEND messages (NotifyPeriodicEventStream) have one schema named after the
        // action and no response; the payload travels like a request.
        requests[name] = schema
      }
    }
    self.requests = requests
    self.responses = responses
  }

  /// The actions with at least one schema, sorted.
  public var actions: [String] { Set(requests.keys).union(responses.keys).sorted() }

  public func knows(action: String) -> Bool { requests[action] != nil || responses[action] != nil }

  public func schema(action: String, kind: OCPPMessageKind) -> JSONSchema? {
    switch kind {
    case .request: requests[action]
    case .response: responses[action]
    }
  }

  /// The ways `payload` breaks the schema of `action`'s request or response (at most
  /// `SchemaViolation.defaultLimit`); empty when it conforms. An action without a schema
  /// yields a single violation at the root; `knows(action:)` tells that case apart.
  public func validate(action: String, kind: OCPPMessageKind, payload: JSONValue) -> [SchemaViolation] {
    guard let schema = schema(action: action, kind: kind) else {
      let what = kind == .request ? "request" : "response"
      return [SchemaViolation(path: "", message: "OCPP \(version.rawValue) has no \(what) schema for \"\(action)\"")]
    }
    return schema.validate(payload)
  }

  // MARK: Loading

  /// Loads and compiles every bundled schema of `version`.
  public static func load(_ version: OCPPVersion) throws -> OCPPSchemas {
    guard let root = Bundle.module.url(forResource: "Schemas", withExtension: nil) else {
      throw OCPPSchemaError(file: "Schemas", reason: "not found in the OCPP resource bundle")
    }
    return try load(version, from: root.appendingPathComponent(version.schemaDirectory, isDirectory: true))
  }

  /// Loads and compiles every `*.json` in `directory` (e.g. a newer copy of the schemas).
  public static func load(_ version: OCPPVersion, from directory: URL) throws -> OCPPSchemas {
    let files: [URL]
    do {
      files = try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
        .filter { $0.pathExtension == "json" }
        .sorted { $0.lastPathComponent < $1.lastPathComponent }
    } catch {
      throw OCPPSchemaError(file: directory.path, reason: "cannot list: \(error)")
    }
    var schemas: [String: JSONSchema] = [:]
    for file in files {
      let name = file.deletingPathExtension().lastPathComponent
      do {
        schemas[name] = try JSONSchema(JSONValue.parse(Data(contentsOf: file)))
      } catch {
        throw OCPPSchemaError(file: "\(version.schemaDirectory)/\(file.lastPathComponent)", reason: "\(error)")
      }
    }
    guard !schemas.isEmpty else { throw OCPPSchemaError(file: directory.path, reason: "holds no *.json schema") }
    return OCPPSchemas(version: version, schemas: schemas)
  }

  private static let cache = Mutex<[OCPPVersion: OCPPSchemas]>([:])

  /// The bundled schemas of `version`, loaded on first use and then shared. Loading happens
  /// under the lock so that concurrent first callers compile the files once; a failure is not
  /// cached.
  public static func shared(_ version: OCPPVersion) throws -> OCPPSchemas {
    try cache.withLock { loaded in
      if let schemas = loaded[version] { return schemas }
      let schemas = try load(version)
      loaded[version] = schemas
      return schemas
    }
  }
}

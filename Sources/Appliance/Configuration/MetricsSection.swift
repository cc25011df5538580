import SiteFiles
import SiteModel

/// `metrics:`: the Prometheus endpoint (docs/metrics.md). Without the section there is none.
public struct MetricsSection: Codable, Sendable, Hashable {
  /// Where it listens: loopback by default, so only the appliance itself (or an SSH
  /// tunnel, or a local Prometheus agent) reads it.
  public var address: String?
  public var port: Int?

  public init(address: String? = nil, port: Int? = nil) {
    self.address = address
    self.port = port
  }

  public var endpointConfiguration: MetricsEndpoint.Configuration {
    var c = MetricsEndpoint.Configuration()
    if let address { c.address = address }
    if let port { c.port = port }
    return c
  }

  func validated(document: StructuredDocument) throws(InputError) -> MetricsSection {
    if let address, address.isEmpty || address.contains(where: \.isWhitespace) {
      throw document.error(at: ["metrics", "address"], "must be an address to listen on, e.g. 127.0.0.1")
    }
    if let port, !(0...65_535).contains(port) {
      throw document.error(at: ["metrics", "port"], "must be a port, 1 to 65535 (0: any free port)")
    }
    return self
  }
}

import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// `GET /metrics` in Prometheus's text format, on the configured address (loopback by
/// default: the site's network is not the place to publish a building's state). A port
/// that cannot be bound is an alarm, never a reason to stop the appliance: the control
/// loop matters more than its metrics.
public struct MetricsEndpoint: Service {
  public struct Configuration: Sendable {
    public var address = "127.0.0.1"
    /// 9464 is Prometheus's customary exporter port for an application; 0 takes any
    /// free port (tests), logged as `metrics endpoint ready`.
    public var port = 9464
    public init() {}
  }

  private let configuration: Configuration
  private let metrics: ApplianceMetrics
  private let status: SiteStatus?
  private let logger: Logger

  public init(configuration: Configuration, metrics: ApplianceMetrics, status: SiteStatus?, logger: Logger) {
    self.configuration = configuration
    self.metrics = metrics
    self.status = status
    self.logger = logger
  }

  public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

  public func run() async throws {
    let metrics = metrics
    let router = Router()
    router.get("metrics") { _, _ -> Response in
      Response(
        status: .ok, headers: [.contentType: Self.contentType],
        body: ResponseBody(byteBuffer: ByteBuffer(bytes: metrics.exposition())))
    }
    let logger = logger
    let address = configuration.address
    var serverLogger = logger
    // Hummingbird logs every request at info; a scrape every 15 s is not news.
    serverLogger.logLevel = .warning
    let app = Application(
      router: router,
      configuration: .init(address: .hostname(address, port: configuration.port), serverName: nil),
      onServerRunning: { channel in
        logger.info(
          "metrics endpoint ready",
          metadata: ["address": "\(address)", "port": "\(channel.localAddress?.port ?? 0)", "path": "/metrics"])
      },
      logger: serverLogger)
    do {
      try await app.run()
      status?.setAlarm("metrics-endpoint", .warning, "", active: false)
    } catch {
      guard !Task.isCancelled && !Task.isShuttingDownGracefully else { return }
      let what = "the metrics endpoint cannot listen on \(address):\(configuration.port) (\(error)); no /metrics"
      logger.error("\(what)")
      status?.setAlarm("metrics-endpoint", .warning, what, active: true)
      // The rest of the appliance runs on; this service waits for the stop like the others.
      try? await gracefulShutdown()
    }
  }
}

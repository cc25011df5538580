import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import ServiceLifecycle

/// A WebSocket server on SwiftNIO, as small as OCPP-J needs: text messages in and out, pings
/// to notice dead connections, and, unlike a general-purpose server, a refused upgrade
/// answered with the HTTP status that says why (401 for a wrong password, as OCPP's security
/// profiles 1 and 2 require; 404 for an unknown charger; 400 for no common subprotocol).
struct WebSocketServer: Sendable {
  struct Configuration: Sendable {
    var host: String
    var port: Int
    var tls: NIOSSLContext?
    var pingSeconds: Int
    var maxMessageBytes = 1 << 20
  }

  /// Whether an upgrade request is let in.
  enum Admission: Sendable {
    /// Upgrade, answering with this subprotocol.
    case accept(subprotocol: String)
    case refuse(HTTPResponseStatus, String)
  }

  let configuration: Configuration
  let logger: Logger
  /// Decides from the request head alone (path, Authorization, Sec-WebSocket-Protocol).
  let admit: @Sendable (HTTPRequestHead) -> Admission
  /// Serves one upgraded connection until either side ends it.
  let serve: @Sendable (HTTPRequestHead, WebSocketConnection) async -> Void

  enum Negotiated: Sendable {
    case webSocket(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>, HTTPRequestHead)
    /// A plain request, or a refused upgrade (whose head NIO has already consumed: the
    /// refusal is kept from when it was decided).
    case http(NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, refused: (HTTPResponseStatus, String)?)
  }

  /// Listens until the task is cancelled or the service group shuts down gracefully.
  func run(onListening: @Sendable (Int) async -> Void) async throws {
    let configuration = self.configuration
    let admit = self.admit
    let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .serverChannelOption(.backlog, value: 256)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      // TCP_NODELAY is an IPPROTO_TCP option: `.socketOption(.tcp_nodelay)` would set
      // SOL_SOCKET option 1, SO_DEBUG, which needs CAP_NET_ADMIN and fails (EACCES) for
      // the service's user on every connection.
      .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
      .bind(host: configuration.host, port: configuration.port) { channel in
        channel.eventLoop.makeCompletedFuture {
          let refusal = NIOLockedValueBox<(HTTPResponseStatus, String)?>(nil)
          if let tls = configuration.tls {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
          }
          let upgrader = NIOTypedWebSocketServerUpgrader<Negotiated>(
            maxFrameSize: configuration.maxMessageBytes,
            shouldUpgrade: { channel, head in
              switch admit(head) {
              case .accept(let subprotocol):
                return channel.eventLoop.makeSucceededFuture(HTTPHeaders([("Sec-WebSocket-Protocol", subprotocol)]))
              case .refuse(let status, let why):
                // Not upgraded: answered below with the status and the reason.
                refusal.withLockedValue { $0 = (status, why) }
                return channel.eventLoop.makeSucceededFuture(nil)
              }
            },
            upgradePipelineHandler: { channel, head in
              channel.eventLoop.makeCompletedFuture {
                // Fragmented messages arrive whole; a protocol error closes with its code.
                try channel.pipeline.syncOperations.addHandler(
                  NIOWebSocketFrameAggregator(
                    minNonFinalFragmentSize: 1, maxAccumulatedFrameCount: 1024,
                    maxAccumulatedFrameSize: configuration.maxMessageBytes))
                let ws = try NIOAsyncChannel<WebSocketFrame, WebSocketFrame>(wrappingChannelSynchronously: channel)
                return Negotiated.webSocket(ws, head)
              }
            })
          let upgrade = NIOTypedHTTPServerUpgradeConfiguration(
            upgraders: [upgrader],
            notUpgradingCompletionHandler: { channel in
              channel.eventLoop.makeCompletedFuture {
                .http(
                  try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(
                    wrappingChannelSynchronously: channel),
                  refused: refusal.withLockedValue { $0 })
              }
            })
          return try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(
            configuration: .init(upgradeConfiguration: upgrade))
        }
      }
    await onListening(server.channel.localAddress?.port ?? configuration.port)
    try await withGracefulShutdownHandler {
      try await server.executeThenClose { inbound in
        try await withThrowingDiscardingTaskGroup { group in
          for try await negotiation in inbound {
            group.addTask { await self.handle(negotiation) }
          }
        }
      }
    } onGracefulShutdown: {
      server.channel.close(promise: nil)
    }
  }

  private func handle(_ negotiation: EventLoopFuture<Negotiated>) async {
    do {
      switch try await negotiation.get() {
      case .webSocket(let channel, let head):
        await serve(head, WebSocketConnection(channel: channel, pingSeconds: configuration.pingSeconds, logger: logger))
      case .http(let channel, let refused):
        try await answer(channel, refused: refused)
      }
    } catch {
      logger.debug("connection ended before it was served", metadata: ["error": "\(error)"])
    }
  }

  /// Anything that was not upgraded: a refused upgrade gets its status and reason; a plain
  /// request (no upgrade asked for) gets the admission's reason, or 400.
  private func answer(
    _ channel: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, refused: (HTTPResponseStatus, String)?
  ) async throws {
    try await channel.executeThenClose { inbound, outbound in
      var answer = refused
      if answer == nil {
        for try await part in inbound {
          guard case .head(let head) = part else { continue }
          switch admit(head) {
          case .refuse(let status, let why): answer = (status, why)
          case .accept: answer = (.badRequest, "expected a WebSocket upgrade (OCPP-J)")
          }
          break
        }
      }
      guard let (status, text) = answer else { return }
      logger.warning("charger refused", metadata: ["status": "\(status.code)", "why": "\(text)"])
      var headers = HTTPHeaders([("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close")])
      if status == .unauthorized { headers.add(name: "WWW-Authenticate", value: #"Basic realm="microgrid-edge OCPP""#) }
      let body = ByteBuffer(string: text + "\n")
      headers.add(name: "Content-Length", value: "\(body.readableBytes)")
      try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers)))
      try await outbound.write(.body(.byteBuffer(body)))
      try await outbound.write(.end(nil))
    }
  }
}

/// One upgraded WebSocket: whole text messages in, text out; pings every `pingSeconds`,
/// and a peer that has answered nothing for two of them is closed.
struct WebSocketConnection: Sendable {
  let channel: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>
  let pingSeconds: Int
  let logger: Logger

  /// Runs until the peer closes, the connection dies, or `outgoing` finishes (then it is
  /// closed from this side). Each text message is handed to `received`.
  func run(outgoing: AsyncStream<String>, received: @escaping @Sendable (String) -> Void) async {
    let lastHeard = NIOLockedValueBox(ContinuousClock.now)
    do {
      try await channel.executeThenClose { inbound, outbound in
        try await withThrowingTaskGroup(of: Void.self) { group in
          group.addTask {
            for await text in outgoing {
              try await outbound.write(WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: text)))
            }
            try await outbound.write(Self.close(.normalClosure))
          }
          group.addTask {
            while true {
              try await Task.sleep(for: .seconds(pingSeconds))
              if ContinuousClock.now - lastHeard.withLockedValue({ $0 }) > .seconds(2 * pingSeconds) {
                logger.warning("WebSocket peer answers no pings; closing")
                try await outbound.write(Self.close(.goingAway))
                return
              }
              try await outbound.write(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer()))
            }
          }
          group.addTask {
            for try await frame in inbound {
              lastHeard.withLockedValue { $0 = .now }
              switch frame.opcode {
              case .text:
                received(String(buffer: frame.unmaskedData))
              case .ping:
                try await outbound.write(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData))
              case .connectionClose:
                try? await outbound.write(Self.close(.normalClosure))
                return
              case .binary:
                logger.warning("binary WebSocket message ignored (OCPP-J is text)")
              default:
                break
              }
            }
          }
          // Whichever ends first ends the connection.
          try await group.next()
          group.cancelAll()
        }
      }
    } catch {
      logger.debug("WebSocket connection ended", metadata: ["error": "\(error)"])
    }
  }

  static func close(_ code: WebSocketErrorCode) -> WebSocketFrame {
    var data = ByteBuffer()
    data.write(webSocketErrorCode: code)
    return WebSocketFrame(fin: true, opcode: .connectionClose, data: data)
  }
}

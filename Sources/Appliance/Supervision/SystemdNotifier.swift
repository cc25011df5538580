import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// systemd's notify protocol (sd_notify(3)): datagrams of `KEY=value` lines to the socket
/// named by `NOTIFY_SOCKET`. Written here rather than linked from libsystemd because it is
/// one `sendto` and the appliance must not depend on systemd being there: started by hand
/// or in a test without the variable, every call is a no-op.
///
/// Sends never block (`MSG_DONTWAIT`): the control loop calls this, and a full socket
/// buffer must cost it a lost ping, not a stalled step.
public final class SystemdNotifier: Sendable {
  /// Where the datagrams go (nil: not started by systemd, or the socket is unusable).
  public let socketPath: String?
  /// `WATCHDOG_USEC` when it is meant for this process (`WATCHDOG_PID` absent or ours).
  public let watchdogInterval: Duration?
  /// Why the socket is not used, for the log (nil: fine or not asked for).
  public let problem: String?
  private let socket: Mutex<Int32>
  private let failures = Mutex<(count: Int, last: String?)>((0, nil))

  public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
    watchdogInterval = Self.watchdogInterval(environment: environment, pid: getpid())
    guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty else {
      socketPath = nil
      problem = nil
      socket = Mutex(-1)
      return
    }
    guard path.hasPrefix("/") || path.hasPrefix("@") else {
      socketPath = nil
      problem = "NOTIFY_SOCKET=\(path) is neither a path nor an abstract socket (@name); not notifying systemd"
      socket = Mutex(-1)
      return
    }
    guard path.utf8.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path) else {
      socketPath = nil
      problem = "NOTIFY_SOCKET=\(path) is longer than a socket address can hold; not notifying systemd"
      socket = Mutex(-1)
      return
    }
    let fd = Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    socketPath = fd >= 0 ? path : nil
    problem = fd >= 0 ? nil : "cannot make a socket for NOTIFY_SOCKET (\(String(cString: strerror(errno))))"
    socket = Mutex(fd)
  }

  deinit {
    socket.withLock { fd in
      if fd >= 0 { close(fd) }
    }
  }

  /// `WATCHDOG_USEC`, if this process is the one systemd watches.
  static func watchdogInterval(environment: [String: String], pid: Int32) -> Duration? {
    guard let text = environment["WATCHDOG_USEC"], let usec = UInt64(text), usec > 0 else { return nil }
    if let owner = environment["WATCHDOG_PID"], Int32(owner) != pid { return nil }
    return .microseconds(Int64(clamping: usec))
  }

  /// Whether anything is listening for the notifications.
  public var isActive: Bool { socketPath != nil }

  /// Sends one datagram (`READY=1`, `STATUS=...`, several lines at once). False when it
  /// could not be sent; the reason is kept for `lastFailure`, never thrown.
  @discardableResult
  public func send(_ message: String) -> Bool {
    guard let path = socketPath else { return false }
    var (address, length) = Self.address(path)
    let payload = Array(message.utf8)
    let sent = socket.withLock { fd -> Int in
      guard fd >= 0 else { return -1 }
      return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { a in
          payload.withUnsafeBytes { p in
            sendto(fd, p.baseAddress, p.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL), a, length)
          }
        }
      }
    }
    if sent == payload.count { return true }
    let reason = sent < 0 ? String(cString: strerror(errno)) : "sent \(sent) of \(payload.count) bytes"
    failures.withLock { $0 = ($0.count + 1, reason) }
    return false
  }

  /// A socket address for a path, or an abstract name (`@name`: a NUL byte where the text
  /// has '@', and no terminating NUL), with its length.
  static func address(_ name: String) -> (sockaddr_un, socklen_t) {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    var bytes = Array(name.utf8)
    let abstract = bytes.first == UInt8(ascii: "@")
    if abstract { bytes[0] = 0 }
    let length = withUnsafeMutableBytes(of: &address.sun_path) { raw -> Int in
      raw.copyBytes(from: bytes.prefix(raw.count))
      return MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1)
    }
    return (address, socklen_t(length))
  }

  /// How many notifications could not be sent, and the last reason.
  public var lastFailure: (count: Int, reason: String?) {
    failures.withLock { ($0.count, $0.last) }
  }
}

import Foundation

/// A real mosquitto broker on a free loopback port, for tests: started and stopped by the
/// test itself (scripts/setup installs mosquitto). `restart()` keeps the port.
final class Broker: @unchecked Sendable {
  let port: Int
  private let directory: URL
  private var process: Process?

  static var executable: String {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].first { FileManager.default.isExecutableFile(atPath: $0) }
      ?? "/usr/sbin/mosquitto"
  }

  init(extraConfiguration: String = "allow_anonymous true\n") throws {
    port = try Self.freePort()
    directory = FileManager.default.temporaryDirectory.appendingPathComponent("mge-broker-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let conf = """
      listener \(port) 127.0.0.1
      persistence false
      log_dest file \(directory.path)/mosquitto.log
      \(extraConfiguration)
      \(getuid() == 0 ? "user root" : "")
      """
    // As root, mosquitto would switch to the mosquitto user and could not read the test's
    // files (keys are private); it stays root for tests.
    try conf.write(to: directory.appendingPathComponent("mosquitto.conf"), atomically: true, encoding: .utf8)
  }

  deinit {
    stop()
    try? FileManager.default.removeItem(at: directory)
  }

  func start() throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: Self.executable)
    p.arguments = ["-c", directory.appendingPathComponent("mosquitto.conf").path]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    process = p
    let deadline = Date().addingTimeInterval(10)
    while Date() < deadline {
      if Self.accepts(port: port) { return }
      Thread.sleep(forTimeInterval: 0.02)
    }
    throw BrokerError(message: "mosquitto did not listen on \(port) within 10 s: \(log)")
  }

  func stop() {
    guard let p = process else { return }
    // SIGKILL: the test runner's threads block SIGTERM, and a spawned mosquitto inherits
    // that mask, so it would never see a SIGTERM. Nothing is persisted, so nothing is lost.
    kill(p.processIdentifier, SIGKILL)
    p.waitUntilExit()
    process = nil
  }

  func restart() throws {
    stop()
    try start()
  }

  var log: String {
    (try? String(contentsOf: directory.appendingPathComponent("mosquitto.log"), encoding: .utf8)) ?? ""
  }

  struct BrokerError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
  }

  static func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
      }
    }
    guard bound else { throw BrokerError(message: "no free port") }
    return Int(UInt16(bigEndian: address.sin_port))
  }

  static func accepts(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    return withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
      }
    }
  }
}

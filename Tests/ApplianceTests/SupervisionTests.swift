import Foundation
import Testing

@testable import Appliance

#if canImport(Glibc)
  import Glibc
#endif

/// systemd's notify protocol as the appliance speaks it: when it says READY, STATUS,
/// WATCHDOG and STOPPING (a pure schedule), and the datagrams themselves on a real socket.
@Suite("Supervision: the notify schedule and the notify socket")
struct SupervisionTests {
  let status = SupervisionStatus(mode: "grid-connected", activeAlarms: 0, uploadBacklog: 3)

  @Test("READY and STATUS after the first pass; pings four times per watchdog interval, never more")
  func schedule() {
    var s = NotifySchedule(watchdogInterval: .seconds(4))
    let t0 = ContinuousClock.now
    #expect(s.passed(now: t0, status: status) == ["READY=1", "STATUS=\(status.text)", "WATCHDOG=1"])
    // A loop stepping on meter readings passes many times a second: one ping a second.
    var pings = 0
    for ms in stride(from: 50, through: 10_000, by: 50) {
      let now = t0.advanced(by: .milliseconds(ms))
      let current = s.wantsStatus(now: now) ? status : nil
      pings += s.passed(now: now, status: current).filter { $0 == "WATCHDOG=1" }.count
    }
    #expect(pings == 10)
    #expect(s.pingEvery == .seconds(1))
  }

  @Test("STATUS at once when the mode or the alarms change; a changed backlog alone waits for the refresh")
  func statusChanges() {
    var s = NotifySchedule(watchdogInterval: nil)
    let t0 = ContinuousClock.now
    _ = s.passed(now: t0, status: status)
    var busier = status
    busier.uploadBacklog = 40
    #expect(s.passed(now: t0.advanced(by: .seconds(2)), status: busier) == [])
    #expect(s.passed(now: t0.advanced(by: .seconds(11)), status: busier) == ["STATUS=\(busier.text)"])
    var islanded = busier
    islanded.mode = "islanded"
    islanded.activeAlarms = 1
    #expect(s.passed(now: t0.advanced(by: .seconds(12)), status: islanded) == ["STATUS=\(islanded.text)"])
    #expect(islanded.text == "mode islanded; 1 alarm; upload backlog 40 records")
    // Without a watchdog there are no pings at all.
    #expect(s.pingEvery == nil)
  }

  @Test("STOPPING once; nothing after it, not even a ping")
  func stopping() {
    var s = NotifySchedule(watchdogInterval: .seconds(2))
    let t0 = ContinuousClock.now
    _ = s.passed(now: t0, status: status)
    #expect(s.stop().first == "STOPPING=1")
    #expect(s.stop() == [])
    #expect(s.passed(now: t0.advanced(by: .seconds(5)), status: status) == [])
  }

  @Test("WATCHDOG_USEC is this process's only when WATCHDOG_PID is absent or ours")
  func watchdogEnvironment() {
    #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "30000000"], pid: 7) == .seconds(30))
    #expect(
      SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"], pid: 7)
        == .seconds(30))
    #expect(
      SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"], pid: 7) == nil)
    #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "soon"], pid: 7) == nil)
    #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "0"], pid: 7) == nil)
  }

  @Test("datagrams reach a socket at a path and an abstract one; a bad NOTIFY_SOCKET is said, not fatal")
  func socket() throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("notify-\(UUID().uuidString).sock").path
    for name in [path, "@mge-test-\(UUID().uuidString)"] {
      let listener = try DatagramListener(name)
      defer { listener.close() }
      let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": name])
      #expect(notifier.isActive && notifier.problem == nil)
      #expect(notifier.send("READY=1\nSTATUS=mode safe"))
      #expect(listener.receive() == "READY=1\nSTATUS=mode safe")
    }
    let absent = SystemdNotifier(environment: [:])
    #expect(!absent.isActive && absent.problem == nil && !absent.send("READY=1"))
    let relative = SystemdNotifier(environment: ["NOTIFY_SOCKET": "run/notify"])
    #expect(!relative.isActive && relative.problem?.contains("neither a path nor an abstract socket") == true)
    let long = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/" + String(repeating: "x", count: 200)])
    #expect(!long.isActive && long.problem?.contains("longer than a socket address") == true)
    // Nobody listening (systemd went away): a failed send is counted, never thrown.
    let gone = SystemdNotifier(environment: ["NOTIFY_SOCKET": path + ".gone"])
    #expect(!gone.send("WATCHDOG=1"))
    #expect(gone.lastFailure.count == 1 && gone.lastFailure.reason != nil)
  }
}

/// A receiving end for the notifier's datagrams (what systemd holds).
final class DatagramListener {
  let fd: Int32
  let path: String

  init(_ name: String) throws {
    path = name
    fd = Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
    var (address, length) = SystemdNotifier.address(name)
    let rc = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    guard rc == 0 else { throw POSIXError(.EADDRINUSE) }
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
  }

  func receive() -> String? {
    var buffer = [UInt8](repeating: 0, count: 4096)
    let n = recv(fd, &buffer, buffer.count, 0)
    return n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : nil
  }

  func close() {
    Glibc.close(fd)
    if !path.hasPrefix("@") { unlink(path) }
  }
}

/// Start-up's code pages given back: which mappings qualify, and that the kernel takes it.
@Suite("Start-up pages: only read-only file mappings are given back")
struct StartupPagesReleaseTests {
  @Test("code and constant data of files qualify; written, anonymous and special mappings do not")
  func mappings() {
    let maps = """
      55d0c0000000-55d0c1000000 r-xp 00000000 fe:01 123 /usr/lib/microgrid-edge/microgrid-edge
      55d0c1000000-55d0c1200000 r--p 01000000 fe:01 123 /usr/lib/microgrid-edge/microgrid-edge
      55d0c1200000-55d0c1210000 rw-p 01200000 fe:01 123 /usr/lib/microgrid-edge/microgrid-edge
      55d0c2000000-55d0c3000000 rw-p 00000000 00:00 0 [heap]
      7f0000000000-7f0000100000 rw-p 00000000 00:00 0
      7ffc00000000-7ffc00002000 r-xp 00000000 00:00 0 [vdso]
      """
    let found = StartupPagesRelease.fileMappings(maps)
    #expect(found.map(\.start) == [0x55d0_c000_0000, 0x55d0_c100_0000])
    #expect(found.map(\.length) == [0x100_0000, 0x20_0000])
  }

  @Test("this process's own file pages are given back without harm, and it runs on")
  func ownPages() throws {
    let (asked, refused) = StartupPagesRelease.pageOutFileMappings()
    #expect(asked > 0)
    #expect(refused == 0, "a kernel without MADV_PAGEOUT refuses every mapping")
    #expect(StartupPagesRelease.residentFileKiB() != nil)
  }
}

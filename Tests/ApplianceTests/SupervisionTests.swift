import Foundation
import Synchronization
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

/// Start-up's code pages given back: which mappings and pages qualify, when, and that the
/// kernel takes it.
@Suite("Start-up pages: only file pages are given back, after the first step")
struct StartupPagesReleaseTests {
  @Test("read-only file mappings qualify; written, anonymous and special ones do not")
  func mappings() {
    let maps = """
      55d0c0000000-55d0c1000000 r-xp 00000000 fe:01 123 /usr/lib/microgrid-edge/microgrid-edge
      55d0c1000000-55d0c1200000 r--p 01000000 fe:01 123 /usr/lib/microgrid-edge/microgrid-edge
      55d0c1200000-55d0c1210000 rw-p 01200000 fe:01 123 /usr/lib/microgrid-edge/microgrid-edge
      55d0c2000000-55d0c3000000 rw-p 00000000 00:00 0 [heap]
      7f0000000000-7f0000100000 rw-p 00000000 00:00 0
      7f0000200000-7f0000300000 r--p 00000000 fe:01 456 /var/lib/a folder/with spaces.db
      7ffc00000000-7ffc00002000 r-xp 00000000 00:00 0 [vdso]
      """
    let found = StartupPagesRelease.fileMappings(maps)
    #expect(found.map(\.start) == [0x55d0_c000_0000, 0x55d0_c100_0000, 0x7f00_0020_0000])
    #expect(found.map(\.length) == [0x100_0000, 0x20_0000, 0x10_0000])
    #expect(found.last?.path == "/var/lib/a folder/with spaces.db")
  }

  @Test("a read-only mapping's pages leave memory and are read back when needed; a written mapping is left alone")
  func ownPages() throws {
    // Two files of 16 pages, one mapped read-only, one privately writable, every page
    // read; one page of the writable mapping then written. (Not the whole test process:
    // dropping its code would have every other test read it back from disk. And files
    // on a disk: tmpfs pages could only go to swap.)
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let folder =
      FileManager.default.fileExists(atPath: ".build") ? ".build" : FileManager.default.temporaryDirectory.path
    func mapped(_ name: String, _ protection: Int32) throws -> (String, UnsafeMutableRawPointer) {
      let given = "\(folder)/pages-\(getpid())-\(name)"
      try Data(repeating: 7, count: 16 * page).write(to: URL(fileURLWithPath: given))
      // As /proc/self/maps names it: absolute, without symbolic links.
      let full = try #require(realpath(given, nil).map { String(cString: $0) })
      let fd = open(full, O_RDONLY)
      try #require(fd >= 0)
      fsync(fd)  // clean pages: dirty ones wait for writeback first
      defer { close(fd) }
      let address = try #require(mmap(nil, 16 * page, protection, MAP_PRIVATE, fd, 0))
      try #require(address != MAP_FAILED)
      return (full, address)
    }
    let (readOnlyPath, readOnly) = try mapped("ro", PROT_READ)
    let (writablePath, writable) = try mapped("rw", PROT_READ | PROT_WRITE)
    defer {
      munmap(readOnly, 16 * page)
      munmap(writable, 16 * page)
      unlink(readOnlyPath)
      unlink(writablePath)
    }
    var sum = 0
    for i in 0..<16 {
      sum += Int(readOnly.load(fromByteOffset: i * page, as: UInt8.self))
      sum += Int(writable.load(fromByteOffset: i * page, as: UInt8.self))
    }
    #expect(sum == 2 * 16 * 7)
    writable.storeBytes(of: 42, toByteOffset: 3 * page, as: UInt8.self)
    func residentPages(_ address: UnsafeMutableRawPointer) -> Int {
      var vector = [UInt8](repeating: 0, count: 16)
      _ = mincore(address, 16 * page, &vector)
      return vector.filter { $0 & 1 != 0 }.count
    }
    #expect(residentPages(readOnly) == 16)
    let (asked, refused) = StartupPagesRelease.pageOutFileMappings(of: readOnlyPath)
    #expect(asked == 1)
    #expect(refused == 0, "a kernel without MADV_PAGEOUT refuses every mapping")
    #expect(StartupPagesRelease.pageOutFileMappings(of: writablePath).0 == 0, "a writable mapping is not asked for")
    // The file's pages are gone from memory (no other process maps them), and come back
    // from the file when read; the written mapping keeps what was written.
    #expect(residentPages(readOnly) == 0)
    #expect(readOnly.load(fromByteOffset: 3 * page, as: UInt8.self) == 7, "read back from the file")
    #expect(writable.load(fromByteOffset: 3 * page, as: UInt8.self) == 42)
    #expect(StartupPagesRelease.residentFileKiB() != nil)
  }

  @Test("/proc/self/maps is read whole, past the first 4 KiB")
  func readsAllOfMaps() throws {
    let maps = try #require(StartupPagesRelease.procFile("/proc/self/maps"))
    // This test process maps far more than 4 KiB of lines; the last one is [vsyscall] or
    // the stack, at the top of the address space.
    #expect(maps.utf8.count > 4096)
    #expect(maps.contains("[stack]"))
  }

  @Test(
    "the service releases at the first step and again at the delay; without a step, once at the delay",
    .timeLimit(.minutes(5)))
  func releasesWhen() async throws {
    // The releases it makes, in order: the step's, then the delay's (not the kernel's,
    // whose page-out of a whole test process is slow and would slow every other test).
    // Waited for as they come, not against the clock: beside 300 other tests on two
    // cores, a task may not run for minutes.
    let made = Mutex<[ContinuousClock.Instant]>([])
    let (releases, released) = AsyncStream.makeStream(of: Void.self)
    let captured = CapturedLog()
    let pageOut: @Sendable () -> (Int, Int) = {
      made.withLock { $0.append(.now) }
      released.yield()
      return (1, 0)
    }
    var next = releases.makeAsyncIterator()
    // A step long before the delay: released at once; a stop then ends the wait for the second.
    let stepped = StartupPagesRelease(delay: .seconds(3600), logger: captured.logger, pageOut: pageOut)
    let run = Task { try await stepped.run() }
    stepped.firstStep.signal()
    _ = await next.next()
    run.cancel()
    try await run.value
    #expect(
      made.withLock { $0.count } == 1, "released after the first step, not at the delay, and not again once stopped")
    #expect(captured.all.map { "\($0.metadata["after"] ?? "")" } == ["the first control step"])
    // No step by the delay: one release at the delay, and the service ends.
    made.withLock { $0 = [] }
    let started = ContinuousClock.now
    let unstepped = StartupPagesRelease(delay: .milliseconds(300), logger: captured.logger, pageOut: pageOut)
    try await unstepped.run()
    let at = try #require(made.withLock { $0.first })
    #expect(made.withLock { $0.count } == 1)
    #expect(at - started >= .milliseconds(300))
    #expect(captured.all.last.map { "\($0.metadata["after"] ?? "")" } == "0.3 seconds after start")
  }

  @Test("the first release waits for the first control step, and a stop ends the waits")
  func waitsForFirstStep() async throws {
    let release = StartupPagesRelease.FirstStep()
    let done = Mutex(false)
    let waiter = Task {
      await release.wait()
      done.withLock { $0 = true }
    }
    try await Task.sleep(for: .milliseconds(100))
    #expect(!done.withLock { $0 }, "released before any step")
    release.signal()
    release.signal()  // only the first counts
    await waiter.value
    #expect(done.withLock { $0 })
    // Once signalled, a later wait returns at once; a cancelled one too.
    await release.wait()
    let never = StartupPagesRelease.FirstStep()
    let cancelled = Task { await never.wait() }
    cancelled.cancel()
    await cancelled.value
  }
}

/// The allocator settings the daemon applies first thing (docs/metrics.md, "Memory").
@Suite("Malloc tuning")
struct MallocTuningTests {
  @Test("glibc takes every setting, and large blocks then come from mappings of their own")
  func glibcTakesThem() throws {
    #expect(MallocTuning.apply())
    // With glibc's defaults, freeing a large mapped block raises the threshold to its
    // size, and blocks below it then come from the heap. Freeing every other one of a row
    // of them leaves holes the heap cannot trim: they stay resident. With the tuning each
    // is a mapping of its own, given back when freed.
    let size = 4 * Int(MallocTuning.mmapThresholdBytes)
    free(malloc(4 * size))
    var blocks: [UnsafeMutableRawPointer] = []
    for _ in 0..<32 {
      let block = try #require(malloc(size))
      memset(block, 1, size)
      blocks.append(block)
    }
    let held = try #require(Self.anonymousKiB())
    for (index, block) in blocks.enumerated() where index % 2 == 0 { free(block) }
    let after = try #require(Self.anonymousKiB())
    for (index, block) in blocks.enumerated() where index % 2 == 1 { free(block) }
    // Half of it, as tests running beside this one allocate too (without the tuning,
    // nothing comes back).
    let freed = 16 * size / 1024
    #expect(held - after >= freed / 2, "freeing half the blocks gave them back to the kernel")
  }

  static func anonymousKiB() -> Int? { StartupPagesRelease.statusKiB("RssAnon:") }

}

import Foundation
import Logging
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Gives back the file pages that only start-up needed. Loading the configuration (Yams),
/// the OCPP schemas, the databases' migrations and the TLS and HTTP stacks maps some
/// 15 MiB of the binary's code and constant data that the running loop never uses again
/// (the kernel maps 64 KiB around each page fault, so little use maps much); they stay
/// resident, and counted in RSS, until memory runs short. This asks the kernel to drop
/// them now (`madvise(MADV_PAGEOUT)`, Linux 5.4 and later), twice: right after the first
/// control step (start-up proper is over, so the appliance's RSS is soon what it needs)
/// and once more `delay` after start, when the first upload, the broker connection and
/// the panel's first messages have run too. Only clean pages still backed by their file
/// are asked for: any that are needed again are read back from the file, and written
/// pages (relocated data, variables) are never pushed to swap.
public struct StartupPagesRelease: Service, StepObserver {
  public var delay: Duration
  private let logger: Logger
  let firstStep: FirstStep
  /// What a release does: (mappings asked, mappings refused). The kernel's, but for tests
  /// of when it happens.
  private let pageOut: @Sendable () -> (Int, Int)

  public init(delay: Duration = .seconds(60), logger: Logger) {
    self.init(delay: delay, logger: logger, pageOut: { Self.pageOutFileMappings() })
  }

  init(delay: Duration, logger: Logger, pageOut: @escaping @Sendable () -> (Int, Int)) {
    self.delay = delay
    self.logger = logger
    self.firstStep = FirstStep()
    self.pageOut = pageOut
  }

  /// Called on the control loop after each step; only the first one does anything.
  public func observe(_ step: StepRecord) { firstStep.signal() }

  public func run() async throws {
    let started = ContinuousClock.now
    let deadline = started + delay
    // The first control step, or the delay if the loop has not stepped by then (a field
    // site that waits for its meters or the clock); a stop ends the wait at once.
    let firstStep = firstStep
    let stepped =
      (try? await cancelWhenGracefulShutdown {
        await withTaskGroup(of: Bool.self) { group in
          group.addTask {
            await firstStep.wait()
            return true
          }
          group.addTask {
            try? await Task.sleep(until: deadline)
            return false
          }
          let first = await group.next() ?? false
          group.cancelAll()
          return first
        }
      }) ?? false
    guard release(after: stepped ? "the first control step" : "\(delay) after start") else { return }
    guard stepped else { return }
    try? await cancelWhenGracefulShutdown { try await Task.sleep(until: deadline) }
    _ = release(after: "\(delay) after start")
  }

  /// false when stopping, or when this kernel cannot page out (no point asking again).
  private func release(after moment: String) -> Bool {
    guard !Task.isShuttingDownGracefully && !Task.isCancelled else { return false }
    let before = Self.residentFileKiB()
    let (asked, refused) = pageOut()
    let after = Self.residentFileKiB()
    if asked > 0 && refused == asked {
      logger.debug("start-up code pages kept: this kernel has no MADV_PAGEOUT")
      return false
    }
    if let before, let after {
      logger.info(
        "start-up code pages released",
        metadata: [
          "after": "\(moment)", "file_backed_mib_before": "\(before / 1024)",
          "file_backed_mib_after": "\(after / 1024)",
        ])
    }
    return true
  }

  /// A file mapping of this process: code and constant data, or a private writable
  /// mapping (a binary's data segment) whose unwritten pages are still the file's.
  struct FileMapping: Equatable {
    var start: UInt
    var length: Int
    var writable: Bool
  }

  /// Mappings of files, from /proc/self/maps. Shared writable ones (another process
  /// may be writing them) are left alone.
  static func fileMappings(_ maps: String) -> [FileMapping] {
    maps.split(separator: "\n").compactMap { line in
      let fields = line.split(separator: " ", omittingEmptySubsequences: true)
      guard fields.count >= 6, fields[5].hasPrefix("/") else { return nil }
      let permissions = fields[1]
      let writable = permissions.contains("w")
      if writable && permissions.contains("s") { return nil }
      let range = fields[0].split(separator: "-")
      guard range.count == 2, let start = UInt(range[0], radix: 16), let end = UInt(range[1], radix: 16), end > start
      else { return nil }
      return FileMapping(start: start, length: Int(end - start), writable: writable)
    }
  }

  /// The runs of pages, as (first page, count), that are resident and still the file's,
  /// from pagemap entries (one 64-bit word per page: bit 63 present, bit 61 a file page;
  /// a private page once written is anonymous).
  static func fileBackedRuns(_ entries: [UInt64]) -> [(first: Int, count: Int)] {
    var runs: [(first: Int, count: Int)] = []
    var start: Int?
    for (index, entry) in entries.enumerated() {
      let fileBacked = entry & (1 << 63) != 0 && entry & (1 << 61) != 0
      if fileBacked, start == nil { start = index }
      if !fileBacked, let first = start {
        runs.append((first, index - first))
        start = nil
      }
    }
    if let first = start { runs.append((first, entries.count - first)) }
    return runs
  }

  /// (mappings asked, mappings the kernel refused).
  static func pageOutFileMappings() -> (Int, Int) {
    guard let maps = try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8) else { return (0, 0) }
    let mappings = fileMappings(maps)
    let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
    let pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
    defer { if pagemap >= 0 { close(pagemap) } }
    var refused = 0
    for m in mappings {
      var ranges: [(start: UInt, length: Int)] = [(m.start, m.length)]
      if m.writable {
        // Only the pages pagemap says are still the file's; without pagemap, none.
        guard pagemap >= 0, let entries = pagemapEntries(pagemap, start: m.start, pages: m.length / pageSize) else {
          continue
        }
        ranges = fileBackedRuns(entries).map { (m.start + UInt($0.first * pageSize), $0.count * pageSize) }
      }
      var ok = true
      for r in ranges where madvise(UnsafeMutableRawPointer(bitPattern: r.start), r.length, 21 /* MADV_PAGEOUT */) != 0
      {
        ok = false
      }
      if !ok { refused += 1 }
    }
    return (mappings.count, refused)
  }

  private static func pagemapEntries(_ fd: Int32, start: UInt, pages: Int) -> [UInt64]? {
    guard pages > 0 else { return [] }
    let pageSize = UInt(sysconf(Int32(_SC_PAGESIZE)))
    var entries = [UInt64](repeating: 0, count: pages)
    let wanted = pages * MemoryLayout<UInt64>.size
    let got = entries.withUnsafeMutableBytes { pread(fd, $0.baseAddress, wanted, off_t(start / pageSize) * 8) }
    return got == wanted ? entries : nil
  }

  static func residentFileKiB() -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix("RssFile:") {
      return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    }
    return nil
  }

  /// The first control step, once: the loop signals, the service waits.
  final class FirstStep: Sendable {
    private let state = Mutex<(done: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    func signal() {
      let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
        guard !s.done else { return nil }
        s.done = true
        defer { s.waiter = nil }
        return s.waiter
      }
      waiter?.resume()
    }

    /// Returns once the first step has run (or the task is cancelled).
    func wait() async {
      await withTaskCancellationHandler {
        await withCheckedContinuation { continuation in
          let resumeNow = state.withLock { s -> Bool in
            if s.done || Task.isCancelled { return true }
            s.waiter = continuation
            return false
          }
          if resumeNow { continuation.resume() }
        }
      } onCancel: {
        signalCancelled()
      }
    }

    private func signalCancelled() {
      let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
        defer { s.waiter = nil }
        return s.waiter
      }
      waiter?.resume()
    }
  }
}

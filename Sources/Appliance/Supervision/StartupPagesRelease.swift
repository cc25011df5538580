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
/// the panel's first messages have run too. Only read-only file mappings are asked for:
/// their pages are clean, and any that are needed again are read back from the file.
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

  /// A read-only mapping of a file: code and constant data, never written. (Of a private
  /// writable mapping, such as the binary's data segment, the kernel pages out nothing,
  /// not even the pages never written: tried on Linux 6.18.)
  struct FileMapping: Equatable {
    var start: UInt
    var length: Int
    var path: String
  }

  /// Read-only mappings of files, from /proc/self/maps.
  static func fileMappings(_ maps: String) -> [FileMapping] {
    maps.split(separator: "\n").compactMap { line in
      let fields = line.split(separator: " ", omittingEmptySubsequences: true)
      guard fields.count >= 6, fields[5].hasPrefix("/"), !fields[1].contains("w") else { return nil }
      let range = fields[0].split(separator: "-")
      guard range.count == 2, let start = UInt(range[0], radix: 16), let end = UInt(range[1], radix: 16), end > start
      else { return nil }
      // (A path with spaces is several fields; it is the rest of the line.)
      return FileMapping(start: start, length: Int(end - start), path: fields[5...].joined(separator: " "))
    }
  }

  /// (mappings asked, mappings the kernel refused); of one file's mappings only, if given
  /// (for tests).
  static func pageOutFileMappings(of file: String? = nil) -> (Int, Int) {
    guard let maps = procFile("/proc/self/maps") else { return (0, 0) }
    let mappings = fileMappings(maps).filter { file == nil || $0.path == file }
    var refused = 0
    for m in mappings {
      if madvise(UnsafeMutableRawPointer(bitPattern: m.start), m.length, 21 /* MADV_PAGEOUT */) != 0 { refused += 1 }
    }
    return (mappings.count, refused)
  }

  /// A /proc file whole. `String(contentsOfFile:)` goes by the size stat gives, which is
  /// 0 there: it makes one read of 4 KiB, and /proc/self/maps is longer (the appliance's
  /// has some 150 lines), so the mappings after the first 4 KiB were never seen.
  static func procFile(_ path: String) -> String? {
    guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
    defer { try? handle.close() }
    guard let data = try? handle.readToEnd() else { return nil }
    return String(decoding: data, as: UTF8.self)
  }

  static func residentFileKiB() -> Int? { statusKiB("RssFile:") }

  /// A KiB figure of /proc/self/status, such as "RssFile:" or "RssAnon:".
  static func statusKiB(_ field: String) -> Int? {
    guard let status = procFile("/proc/self/status") else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix(field) {
      return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    }
    return nil
  }

  /// The first control step, once: the loop signals, the service waits.
  final class FirstStep: Sendable {
    private let state = Mutex<(done: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    func signal() { resumeWaiter(markingDone: true) }

    /// Hands the waiter, if any, its resumption outside the lock.
    private func resumeWaiter(markingDone: Bool) {
      let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
        if markingDone {
          guard !s.done else { return nil }
          s.done = true
        }
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
        resumeWaiter(markingDone: false)
      }
    }
  }
}

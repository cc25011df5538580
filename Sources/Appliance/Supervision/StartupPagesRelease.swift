import Foundation
import Logging
import ServiceLifecycle

#if canImport(Glibc)
  import Glibc
#endif

/// Gives back, once, the code pages that only start-up needed. Loading the configuration
/// (Yams), the OCPP schemas, the databases' migrations and the TLS and HTTP stacks touches
/// some 25 MiB of the binary's and its libraries' code that the running loop never uses
/// again; they stay resident (and counted in RSS) until memory runs short. A minute after
/// start this asks the kernel to drop them now (`madvise(MADV_PAGEOUT)`, Linux 5.4 and
/// later): only clean, file-backed pages that no other process maps are dropped, and any
/// that are needed again are read back from the file. What remains resident is the code
/// the appliance actually runs, so its RSS is what it needs, and a leak shows.
public struct StartupPagesRelease: Service {
  public var delay: Duration
  private let logger: Logger

  public init(delay: Duration = .seconds(60), logger: Logger) {
    self.delay = delay
    self.logger = logger
  }

  public func run() async throws {
    // A stop before then ends the wait at once.
    let delay = delay
    try? await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
    guard !Task.isShuttingDownGracefully && !Task.isCancelled else { return }
    let before = Self.residentFileKiB()
    let (asked, refused) = Self.pageOutFileMappings()
    let after = Self.residentFileKiB()
    if asked > 0 && refused == asked {
      logger.debug("start-up code pages kept: this kernel has no MADV_PAGEOUT")
      return
    }
    if let before, let after {
      logger.info(
        "start-up code pages released",
        metadata: ["file_backed_mib_before": "\(before / 1024)", "file_backed_mib_after": "\(after / 1024)"])
    }
  }

  /// Read-only and executable mappings of files: code and constant data, never written.
  static func fileMappings(_ maps: String) -> [(start: UInt, length: Int)] {
    maps.split(separator: "\n").compactMap { line in
      let fields = line.split(separator: " ", omittingEmptySubsequences: true)
      guard fields.count >= 6, fields[5].hasPrefix("/"), !fields[1].contains("w") else { return nil }
      let range = fields[0].split(separator: "-")
      guard range.count == 2, let start = UInt(range[0], radix: 16), let end = UInt(range[1], radix: 16), end > start
      else { return nil }
      return (start, Int(end - start))
    }
  }

  /// (mappings asked, mappings the kernel refused).
  static func pageOutFileMappings() -> (Int, Int) {
    guard let maps = try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8) else { return (0, 0) }
    var refused = 0
    let mappings = fileMappings(maps)
    for m in mappings {
      if madvise(UnsafeMutableRawPointer(bitPattern: m.start), m.length, 21 /* MADV_PAGEOUT */) != 0 { refused += 1 }
    }
    return (mappings.count, refused)
  }

  static func residentFileKiB() -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix("RssFile:") {
      return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    }
    return nil
  }
}

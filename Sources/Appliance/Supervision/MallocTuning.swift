#if canImport(Glibc)
  import Glibc
#endif

/// glibc's allocator, set for a daemon that runs for months in a small memory budget.
/// With its defaults, each thread that allocates may get an arena of its own (up to eight
/// per core: the NIO event loops, the concurrency pool, SQLite's writers), freed memory
/// stays in the arena it came from, and the threshold above which a block gets its own
/// mapping (given back to the kernel when freed) climbs to the largest block freed so far.
/// An upload batch (half a MiB of NDJSON, its gzip and its body) then leaves megabytes
/// scattered over arenas, and RSS wanders by the batch. Measured over three simulated days
/// (bench/soak.py, 2026-12-03): anonymous memory 7.2-8.8 MiB and rising with the
/// defaults, 5.9-6.1 MiB and flat with these; CPU per site day within the runs' noise
/// (10.2-10.9 s either way).
public enum MallocTuning {
  /// Two arenas: the main one and one shared by every other thread.
  public static let arenas: Int32 = 2
  /// Blocks from 128 KiB get a mapping of their own, whatever was freed before.
  public static let mmapThresholdBytes: Int32 = 128 * 1024
  /// Free memory above 256 KiB at the top of the heap goes back to the kernel.
  public static let trimThresholdBytes: Int32 = 256 * 1024

  /// Call first thing in the daemon, before it starts threads. Returns whether glibc took
  /// every setting (false on another C library, where nothing is changed).
  @discardableResult
  public static func apply() -> Bool {
    #if canImport(Glibc)
      // malloc.h is not part of Swift's Glibc module: mallopt is looked up by name.
      guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return false }
      typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
      let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
      // mallopt's parameters (malloc.h): M_ARENA_MAX -8, M_MMAP_THRESHOLD -3, M_TRIM_THRESHOLD -1.
      // Setting the two thresholds also turns off their dynamic adjustment.
      let results = [mallopt(-8, arenas), mallopt(-3, mmapThresholdBytes), mallopt(-1, trimThresholdBytes)]
      return results.allSatisfy { $0 == 1 }
    #else
      return false
    #endif
  }
}

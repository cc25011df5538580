import Foundation

/// Runs long synchronous work (a simulated year, thousands of controller steps) on a
/// thread of its own and awaits it. Swift Testing runs tests in parallel on the
/// cooperative thread pool, which has one thread per core: a test that computes for
/// seconds on it starves every other test's tasks, and their timing checks fail (a
/// 50 ms sleep took over 2 s in CI). Work given to `offPool` leaves the pool free.
public func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
  try await withCheckedThrowingContinuation { continuation in
    let thread = Thread {
      do { continuation.resume(returning: try work()) } catch { continuation.resume(throwing: error) }
    }
    thread.stackSize = 8 << 20
    thread.start()
  }
}

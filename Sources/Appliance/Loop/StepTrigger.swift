import Synchronization

/// Wakes the control loop early: an input with fresh data (a meter reading) signals it, and
/// the loop steps at once instead of waiting out its period. Signals between two waits
/// collapse into one: the loop always works from the latest readings, never a backlog.
public final class StepTrigger: Sendable {
  private struct State {
    var pending = false
    var urgent = false
    var waiter: CheckedContinuation<Void, Never>?
  }
  private let state = Mutex(State())

  public init() {}

  /// Safe from any thread (the MQTT network thread, GPIO readers). `urgent` (a utility
  /// contact that dropped, an emergency stop): the loop steps without its minimum gap.
  public func signal(urgent: Bool = false) {
    let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
      if urgent { s.urgent = true }
      if let w = s.waiter {
        s.waiter = nil
        return w
      }
      s.pending = true
      return nil
    }
    waiter?.resume()
  }

  /// Returns at `deadline`, or earlier when signalled. True when a signal woke it.
  @discardableResult
  public func wait(until deadline: ContinuousClock.Instant) async -> Bool {
    if state.withLock({ s in
      defer { s.pending = false }
      return s.pending
    }) {
      return true
    }
    return await withTaskGroup(of: Bool.self) { group in
      group.addTask {
        try? await Task.sleep(until: deadline, clock: .continuous)
        return false
      }
      group.addTask {
        await self.waitForSignal()
        return !Task.isCancelled
      }
      let first = await group.next() ?? false
      group.cancelAll()
      releaseWaiter()
      return first
    }
  }

  /// Whether any signal came since the last wait; clears it (for callers that step
  /// time themselves, such as tests).
  public func takePending() -> Bool {
    state.withLock { s in
      defer { s.pending = false }
      return s.pending
    }
  }

  /// Whether an urgent signal came since the last call; clears it.
  public func takeUrgent() -> Bool {
    state.withLock { s in
      defer { s.urgent = false }
      return s.urgent
    }
  }

  private func waitForSignal() async {
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
      let resumeNow = state.withLock { s -> Bool in
        // Checked under the lock, so a release that ran before this registers is not missed.
        if s.pending || Task.isCancelled {
          s.pending = false
          return true
        }
        s.waiter = c
        return false
      }
      if resumeNow { c.resume() }
    }
  }

  private func releaseWaiter() {
    let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
      defer { s.waiter = nil }
      return s.waiter
    }
    waiter?.resume()
  }
}

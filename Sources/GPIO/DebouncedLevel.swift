/// Software debounce for a contact input, from the kernel's edge timestamps (libgpiod v1
/// has no debounce of its own). A new level is accepted once it has held for the debounce
/// time: a contact that chatters, or a utility that flickers, changes nothing until it
/// settles. Pure: time comes in with each call, so a recorded edge sequence replays
/// exactly.
public struct DebouncedLevel: Sendable, Hashable {
  public let debounceNanoseconds: UInt64
  /// The level as accepted.
  public private(set) var level: Bool
  /// When `level` was accepted (the moment the last edge before it had held for the
  /// debounce time), nanoseconds.
  public private(set) var acceptedAt: UInt64
  /// The level on the wire now, and since when.
  public private(set) var raw: Bool
  public private(set) var rawSince: UInt64
  /// Edges seen, and edges that did not last (bounces), for diagnostics.
  public private(set) var edges = 0
  public private(set) var bounces = 0

  public init(level: Bool, at time: UInt64, debounceNanoseconds: UInt64) {
    self.debounceNanoseconds = debounceNanoseconds
    self.level = level
    self.raw = level
    self.rawSince = time
    self.acceptedAt = time
  }

  /// Takes an edge. With no debounce it is accepted at once.
  public mutating func take(_ edge: LineEdge) {
    settle(at: edge.timestampNanoseconds)
    guard edge.active != raw else { return }  // a repeated level (missed edge between)
    edges += 1
    if raw != level { bounces += 1 }  // the previous change did not last
    raw = edge.active
    rawSince = edge.timestampNanoseconds
    settle(at: edge.timestampNanoseconds)
  }

  /// Takes a level read directly (after the kernel's event queue overflowed, or at start).
  public mutating func resync(level now: Bool, at time: UInt64) {
    take(LineEdge(active: now, timestampNanoseconds: time))
  }

  /// Accepts the wire's level if it has held long enough by `time`. Returns true when the
  /// accepted level changed.
  @discardableResult
  public mutating func settle(at time: UInt64) -> Bool {
    guard raw != level, time >= rawSince, time - rawSince >= debounceNanoseconds else { return false }
    level = raw
    acceptedAt = rawSince + debounceNanoseconds
    return true
  }

  /// When the pending change (if any) would be accepted.
  public var pendingAcceptance: UInt64? { raw != level ? rawSince + debounceNanoseconds : nil }
}

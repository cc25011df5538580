import GPIO
import Testing

/// The GPIOError `body` throws, or nil if it returns (recording an issue when it throws
/// something else).
func gpioFailure<T>(_ body: () throws -> T) -> GPIOError? {
  do {
    _ = try body()
    return nil
  } catch let error as GPIOError {
    return error
  } catch {
    Issue.record("expected a GPIOError, got \(error)")
    return nil
  }
}

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif
import Synchronization

/// SIGTERM and SIGINT that arrive before swift-service-lifecycle has installed its own
/// handlers (while the configuration and the scenario are being read) would otherwise
/// kill the process with the default action. `install()` catches them from the first
/// moment; the control loop treats one as a request to stop, like a graceful shutdown.
public enum StartupSignals {
  static let received = Atomic<Int32>(0)

  /// Installs a handler that only records the signal (an atomic store is safe in a
  /// signal handler). ServiceGroup replaces it once it runs.
  public static func install() {
    for signalNumber in [SIGTERM, SIGINT] {
      signal(signalNumber) { number in StartupSignals.received.store(number, ordering: .relaxed) }
    }
  }

  /// A signal arrived before the service group took over.
  public static var stopRequested: Bool { received.load(ordering: .relaxed) != 0 }
}

import ArgumentParser
import Foundation

/// The single executable: the daemon and its tools.
@main
struct MicrogridEdge: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "microgrid-edge",
    abstract: "On-site energy manager for buildings that use parked electric vehicles as their battery.",
    version: "0.1.0",
    subcommands: [
      Run.self, Simulate.self, CheckConfig.self, Provision.self, GPIOCheck.self, BenchStore.self, BenchOutage.self,
      BenchField.self, OpenADRLeave.self, ReportCommand.self,
    ])

  /// Like ArgumentParser's own entry point, except that a mistake on the command line is
  /// bad input like any other: one line on stderr and exit status 2 (help and --version
  /// still print in full and exit 0).
  static func main() async {
    do {
      var command = try parseAsRoot()
      if var asyncCommand = command as? AsyncParsableCommand {
        try await asyncCommand.run()
      } else {
        try command.run()
      }
    } catch {
      let code = exitCode(for: error)
      if code == .success || error is ExitCode || error is CleanExit {
        exit(withError: error)
      }
      let message = message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
      FileHandle.standardError.write(Data("microgrid-edge: error: \(message) (see microgrid-edge --help)\n".utf8))
      Foundation.exit(2)
    }
  }
}

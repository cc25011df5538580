import ArgumentParser
import Foundation

/// The single executable: the daemon and its tools.
@main
struct MicrogridEdge: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "microgrid-edge",
    abstract: "On-site energy manager for buildings that use parked electric vehicles as their battery.",
    version: "0.1.0",
    subcommands: [Run.self, Simulate.self, CheckConfig.self])
}

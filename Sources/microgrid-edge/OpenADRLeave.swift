import Appliance
import ArgumentParser
import Foundation
import Logging
import SiteModel
import VEN

/// `microgrid-edge openadr-leave`: cancels the VEN's registration with the utility's VTN
/// (oadrCancelPartyRegistration), for a site that leaves the program or changes VTN. Run
/// it with the appliance stopped: the daemon keeps its own copy of the registration.
struct OpenADRLeave: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "openadr-leave",
    abstract: "Cancel the OpenADR VEN's registration with its VTN (stop the appliance first).",
    discussion: "Exit status 0 when the VTN confirmed, 1 when it refused or could not be reached, 2 on bad input.")

  @Option(help: "The site configuration file (YAML).")
  var config: String

  func run() async throws {
    var configuration: SiteConfiguration!
    try exitOnInputError {
      configuration = try SiteConfigurationFile.load(path: config, environment: ProcessInfo.processInfo.environment)
        .configuration
    }
    guard let section = configuration.openADR else {
      try exitOnInputError { throw InputError(source: config, field: "openadr", message: "no openadr: section") }
      return
    }
    guard let path = configuration.state?.path else {
      try exitOnInputError { throw InputError(source: config, field: "state", message: "no state store to read") }
      return
    }
    let logger = Logger(label: "microgrid-edge")
    let state = try SiteState(path: path, logger: logger)
    let status = SiteStatus(site: configuration.site, meters: nil, state: state, logger: logger)
    let link = OpenADRLink(status: status, state: state, recorder: nil, site: configuration.site, logger: logger)
    let ven = VEN(
      configuration: section.venConfiguration, transport: HTTPVTNTransport(section.transportConfiguration),
      host: link, restored: link.restored, wake: StepTrigger(), logger: logger)
    let result = await ven.leave()
    switch result {
    case .success(let text): print(text)
    case .failure(let error):
      FileHandle.standardError.write(Data("microgrid-edge: openadr-leave: \(error)\n".utf8))
      throw ExitCode(1)
    }
  }
}

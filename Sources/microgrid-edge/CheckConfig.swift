import Appliance
import VEN
import ArgumentParser
import Foundation
import SimulatedSite
import SiteModel

struct CheckConfig: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "check-config",
    abstract: "Check a site configuration file and say what is wrong, with file, line and key.",
    discussion: "Exit status 0 when the file is good, 2 when it is not.")

  @Argument(help: "The site configuration file (YAML).")
  var file: String

  func run() throws {
    try exitOnInputError {
      let loaded = try SiteConfigurationFile.load(path: file, environment: ProcessInfo.processInfo.environment)
      if !loaded.warnings.isEmpty {
        for warning in loaded.warnings {
          FileHandle.standardError.write(Data("microgrid-edge: error: \(warning)\n".utf8))
        }
        throw ExitCode(2)
      }
      let c = loaded.configuration
      let scenario = c.plant == nil ? nil : try c.simulatedScenario()
      for (key, variable) in loaded.overrides.sorted(by: { $0.key < $1.key }) {
        print("\(key) is set by the environment variable \(variable)")
      }
      print("\(file): OK")
      print(
        "  site \(c.site.name): import limit \(c.site.importLimitKW) kW, export limit \(c.site.exportLimitKW) kW (\(c.site.eventExportLimitKW) kW in events)"
      )
      print(
        "  \(c.site.chargers.count) chargers (\(c.site.chargers.filter(\.gridForming).count) grid-forming), \(c.site.vehicles.count) vehicles"
      )
      if let scenario, let plant = c.plant {
        print(
          "  plant: simulated, following \(scenario.name) from minute \(plant.startMinute ?? 0) at \(plant.speed ?? 1)x"
        )
        print(
          "  state: "
            + (c.state.map { "\($0.path) (staff's instructions and events)" }
              ?? "none: staff's instructions are kept in memory only (add state: or store: to keep them)"))
      } else {
        let sync = c.time.map { $0.synchronized == "kernel" ? "the kernel's NTP status" : "\($0.synchronized)" } ?? ""
        print(
          "  field site: the building the appliance is wired to; time zone \(c.time?.zone ?? "?"), clock trusted from \(sync)"
        )
        print(
          "  demand: \(Int(c.site.demandIntervalSeconds / 60))-minute intervals, billing periods from day \(c.billing.cycleStartDay); grid import from \(Self.demandSource(c))"
        )
        print("  state: \(c.state?.path ?? "?") (peak, interval in progress, histories, instructions, events)")
        let timetabled = c.vehicleDefaults.byCharger.keys.sorted().map { c.site.chargers[$0].id }
        print(
          "  vehicles that send no needs: \(timetabled.isEmpty ? "no timetables" : "timetables at \(timetabled.joined(separator: ", "))"); otherwise a \(c.vehicleDefaults.defaultStaySeconds / 3600) h stay, \(Int(c.vehicleDefaults.defaultNeedFraction * 100)) % of the battery"
        )
      }
      print(
        "  enter-service delay \(Int(c.control.enterServiceDelaySeconds)) s, ramp \(Int(c.control.enterServiceRampSeconds)) s"
      )
      if let mqtt = c.mqtt {
        for line in Self.mqttSummary(mqtt, siteName: c.site.name) { print("  " + line) }
        if let problem = mqtt.passwordProblem() { print("  WARNING: \(problem)") }
      }
      for m in c.meters {
        print(
          "  meter \(m.id): \(m.role.rawValue) on \(m.topic)\(m.value.map { " at \($0)" } ?? ""), \(m.unit.rawValue), stale after \(m.staleAfterSeconds) s"
        )
      }
      if let gpio = c.gpio {
        let pins = gpio.pins
        print(
          "  gpio: \(gpio.backend.rawValue), \(pins.filter { !$0.output }.count) inputs, \(pins.filter(\.output).count) outputs, \(gpio.loadShed.count) shed groups (check the wiring with gpio-check)"
        )
      }
      if let ocpp = c.ocpp {
        let scheme = ocpp.tlsCertificate == nil ? "ws" : "wss"
        print(
          "  ocpp: \(ocpp.chargers.map(\.id).joined(separator: ", ")) connect to \(scheme)://\(ocpp.host):\(ocpp.port)\(ocpp.path)/<id> (Basic auth)"
            + (ocpp.upstream.map { "; Local Controller under \($0.url)" } ?? ""))
        for problem in ocpp.passwordProblems() { print("  WARNING: \(problem)") }
      }
      if !c.mqttChargers.isEmpty {
        print("  mqtt chargers: \(c.mqttChargers.map { "\($0.id) on \($0.topic)/state" }.joined(separator: ", "))")
      }
      if let store = c.store {
        print(
          "  records: \(store.path), budget \(Int(store.budgetMB)) MiB, telemetry every \(store.telemetryEverySeconds) s, uploaded records kept \(store.retentionDays) days"
        )
      } else {
        print("  records: none kept (no store: section)")
      }
      if let central = c.central {
        let token: String
        switch central.readToken() {
        case .success: token = "token readable"
        case .failure(let problem): token = "WARNING: \(problem)"
        }
        print("  upload: \(central.baseURL) as site \(central.siteID ?? "?"); \(token)")
      } else if c.store != nil {
        print("  upload: none (no central: section)")
      }
      if let openADR = c.openADR {
        let tls =
          openADR.certificateFile.map {
            "TLS client certificate \($0)" + (openADR.caFile.map { ", VTN CA \($0)" } ?? "")
          }
          ?? "plain HTTP (tests only)"
        print(
          "  openadr: VEN \(openADR.venName ?? "?") of \(openADR.vtnURL), polled every \(openADR.pollSeconds) s; \(tls)"
        )
        for problem in openADR.fileProblems() { print("  WARNING: \(problem)") }
        if let certificate = openADR.certificateFile, openADR.fileProblems().isEmpty {
          do {
            print(
              "  openadr: the VTN knows this VEN by its certificate's fingerprint \(try VENIdentity.fingerprint(certificateFile: certificate))"
            )
          } catch {
            print("  WARNING: openadr.certificate_file: \(certificate) is not a PEM certificate (\(error))")
          }
        }
      } else {
        print("  openadr: none (no openadr: section; events come from panels only)")
      }
    }
  }

  /// The broker, and the topics panels and Home Assistant use (docs/mqtt-api.md).
  static func mqttSummary(_ mqtt: MQTTSection, siteName: String) -> [String] {
    let prefix = mqtt.topicPrefix ?? "microgrid-edge/\(MQTTSection.slug(siteName))"
    let login =
      mqtt.username.map { user in "as \(user)" + (mqtt.passwordFile.map { ", password from \($0)" } ?? "") }
      ?? "anonymous"
    let security = mqtt.tls.map { "TLS, CA \($0.caFile)" + ($0.insecure ? ", host name NOT checked" : "") } ?? "no TLS"
    var lines = [
      "mqtt: broker \(mqtt.host):\(mqtt.port) (MQTT \(mqtt.protocol), \(security), keepalive \(mqtt.keepaliveSeconds) s), \(login)",
      "panels: state on \(prefix)/state every \(mqtt.stateEverySeconds) s at most, status on \(prefix)/status, setpoints on \(prefix)/setpoints",
    ]
    if mqtt.commandUsers.isEmpty {
      lines.append(
        "commands: \(prefix)/command/<user> from any user the broker lets write there; replies on \(prefix)/reply/<user>"
      )
    } else {
      lines.append(
        "commands: only from \(mqtt.commandUsers.map { "\(prefix)/command/\($0)" }.joined(separator: ", ")) (mqtt.command_users); replies on \(prefix)/reply/<user>"
      )
    }
    if mqtt.discovery.enabled {
      let user = mqtt.discovery.commandUser
      let allowed = mqtt.commandUsers.isEmpty || mqtt.commandUsers.contains(user)
      lines.append(
        "home assistant: discovery under \(mqtt.discovery.prefix)/, its controls command as \(user) on \(prefix)/command/\(user)"
          + (allowed ? "" : " (WARNING: \(user) is not in mqtt.command_users, so every control will be refused)"))
    } else {
      lines.append("home assistant: no discovery (mqtt.discovery.enabled is false)")
    }
    return lines
  }

  /// Which source the field site's demand meter counts (see `GridImportSource`).
  static func demandSource(_ c: SiteConfiguration) -> String {
    let sources = GridImportSource.order(meters: c.meters, pulseMeter: c.gpio?.pulseMeter != nil)
    return sources.isEmpty
      ? "NOTHING (add a grid_import meter, a pulse meter or building meters)" : sources.joined(separator: ", then ")
  }
}

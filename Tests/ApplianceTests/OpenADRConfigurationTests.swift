import Foundation
import SiteModel
import Testing

@testable import Appliance

/// `openadr:`: TLS is required at a site, the poll interval is bounded, the section is for
/// the field site only (docs/openadr.md, "Configuration").
@Suite("OpenADR configuration: TLS at a site, the poll interval, the field site only")
struct OpenADRConfigurationTests {
  static let shipped = "rootfs-overlay/etc/microgrid-edge/site.yaml"

  func load(_ environment: [String: String], path: String = Self.shipped) throws(InputError) -> SiteConfiguration {
    try SiteConfigurationFile.load(path: path, environment: environment).configuration
  }

  func error(_ environment: [String: String], path: String = Self.shipped) -> InputError? {
    do {
      _ = try load(environment, path: path)
      return nil
    } catch {
      return error
    }
  }

  @Test func theShippedConfigurationIsAVENOverTLS() throws {
    let c = try #require(try load([:]).openADR)
    #expect(c.vtnURL.hasPrefix("https://"))
    #expect(c.certificateFile == "/etc/microgrid-edge/openadr/ven.pem")
    #expect(c.venName == "example-school" && c.pollSeconds == 10)
    let ven = c.venConfiguration
    #expect(ven.silenceAlarmSeconds == 15 * 60 && ven.limits.maximumDurationSeconds == 12 * 3600)
  }

  @Test func plainHTTPIsForTestsOnly() throws {
    let http = ["MGE_OPENADR__VTN_URL": "http://127.0.0.1:8080/OpenADR2/Simple/2.0b"]
    let refused = try #require(error(http))
    #expect(refused.field == "openadr.vtn_url")
    #expect(refused.message.contains("needs TLS with a client certificate"), "\(refused)")
    let test = http.merging([OpenADRSection.plainHTTPForTestsVariable: "1", "MGE_OPENADR__POLL_SECONDS": "1"]) {
      $1
    }
    #expect(try load(test).openADR?.pollSeconds == 1)
  }

  @Test func theCertificateIsRequiredAndThePollIntervalBounded() throws {
    let noCertificate = try #require(
      error(["MGE_OPENADR__CERTIFICATE_FILE": ""]))
    #expect(noCertificate.field == "openadr.certificate_file", "\(noCertificate)")
    for poll in ["5", "61"] {
      let e = try #require(error(["MGE_OPENADR__POLL_SECONDS": poll]))
      #expect(e.field == "openadr.poll_seconds" && e.message.contains("10 to 60"), "\(e)")
    }
    let url = try #require(error(["MGE_OPENADR__VTN_URL": "vtn.example.org"]))
    #expect(url.field == "openadr.vtn_url")
  }

  @Test func aSimulatedPlantHasNoVEN() throws {
    let example = "config/example-school.yaml"
    let e = try #require(
      error(
        [
          "MGE_OPENADR__VTN_URL": "https://vtn.example.org/OpenADR2/Simple/2.0b",
          "MGE_OPENADR__CERTIFICATE_FILE": "ven.pem", "MGE_OPENADR__KEY_FILE": "ven.key",
        ], path: example))
    #expect(e.field == "openadr" && e.message.contains("field site only"), "\(e)")
  }
}

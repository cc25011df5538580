import Foundation
import SiteModel
import Testing

@testable import Appliance

@Suite("Meter inputs: readings understood, bad ones refused with the reason, staleness")
struct MeterInputsTests {
  let t0 = ContinuousClock.now

  func at(_ seconds: Double) -> ContinuousClock.Instant { t0.advanced(by: .seconds(seconds)) }

  func snapshot(chargerKW: [Double] = [0, 0]) -> Snapshot {
    Snapshot(
      time: 0, localTime: LocalTime(seconds: 0), periodSeconds: 1, buildingDemandKW: 999,
      chargers: chargerKW.map { ChargerReading(measuredKW: $0) })
  }

  @Test func plainNumbersAndJSONPathsInEachUnit() {
    let inputs = MeterInputs(meters: [
      MeterSpec(id: "a", role: .buildingLoad, topic: "m/a", unit: .watt),
      MeterSpec(id: "b", role: .buildingLoad, topic: "m/b", value: "$.channels[1].p", unit: .kilowatt, scale: 2),
      MeterSpec(id: "c", role: .buildingLoad, topic: "m/c", value: "$.e", unit: .kilowattHour),
    ])
    #expect(inputs.ingest(topic: "m/a", payload: Array(" 12500 \n".utf8), at: at(0)).isEmpty)
    #expect(
      inputs.ingest(topic: "m/b", payload: Array(#"{"channels":[{"p":1},{"p":"3.5"}]}"#.utf8), at: at(0)).isEmpty)
    #expect(inputs.ingest(topic: "m/c", payload: Array(#"{"e": 1000}"#.utf8), at: at(0)).isEmpty)
    // A register gives power only from its second reading: 0.5 kWh in 60 s is 30 kW.
    var s = snapshot()
    inputs.overlay(&s, at: at(1))
    #expect(!s.inputsFresh, "meter c has no power yet, so inputs are not complete")
    #expect(inputs.ingest(topic: "m/c", payload: Array(#"{"e": 1000.5}"#.utf8), at: at(60)).isEmpty)
    // a and b read a minute ago are stale by now (10 s): they report again.
    inputs.ingest(topic: "m/a", payload: Array("12500".utf8), at: at(59))
    inputs.ingest(topic: "m/b", payload: Array(#"{"channels":[{"p":1},{"p":3.5}]}"#.utf8), at: at(59))
    s = snapshot()
    inputs.overlay(&s, at: at(60))
    #expect(s.inputsFresh)
    #expect(abs(s.buildingDemandKW - (12.5 + 7 + 30)) < 1e-9, "got \(s.buildingDemandKW)")
  }

  @Test func aGridMeterCountsTheChargersOut() {
    let inputs = MeterInputs(meters: [MeterSpec(id: "g", role: .gridImport, topic: "g", unit: .kilowatt)])
    inputs.ingest(topic: "g", payload: Array("250".utf8), at: at(0))
    var s = snapshot(chargerKW: [40, -10])
    inputs.overlay(&s, at: at(0.5))
    #expect(s.buildingDemandKW == 220)
  }

  @Test(arguments: [
    ("", "empty"), ("abc", "not JSON"), (#"{"x":1}"#, "nothing at $.p"), (#"{"p":true}"#, "not a number"),
    (#"{"p":null}"#, "not a number"), (#"{"p":"1e999"}"#, "finite"), (#"[1,2]"#, "no object"),
    (#"{"p":{"q":1}}"#, "not a number"), (String(repeating: "[", count: 5000), "not JSON"),
  ])
  func badPayloadsAreRefusedAndChangeNothing(payload: String, reason: String) {
    let inputs = MeterInputs(meters: [
      MeterSpec(id: "m", role: .buildingLoad, topic: "t", value: "$.p", unit: .kilowatt)
    ])
    inputs.ingest(topic: "t", payload: Array(#"{"p": 100}"#.utf8), at: at(0))
    let problems = inputs.ingest(topic: "t", payload: Array(payload.utf8), at: at(1))
    #expect(problems.count == 1)
    #expect(problems.first?.description.contains(reason) == true, "\(problems)")
    #expect(problems.first?.description.contains("meter m (topic t)") == true)
    #expect(inputs.statuses(at: at(1)).first?.kW == 100, "the last good reading stands")
  }

  @Test func invalidUTF8AndHugePlainPayloadsAreRefused() {
    let inputs = MeterInputs(meters: [MeterSpec(id: "m", role: .buildingLoad, topic: "t", unit: .watt)])
    #expect(inputs.ingest(topic: "t", payload: [0xff, 0xfe, 0x31], at: at(0)).count == 1)
    #expect(inputs.ingest(topic: "t", payload: Array(repeating: 0x31, count: 100_000), at: at(0)).count == 1)
    #expect(inputs.ingest(topic: "t", payload: Array("nan".utf8), at: at(0)).count == 1)
    #expect(inputs.ingest(topic: "t", payload: Array("-1e308".utf8), at: at(0)).count == 1, "implausible")
    #expect(inputs.ingest(topic: "other", payload: Array("1".utf8), at: at(0)).isEmpty, "not a meter topic")
  }

  @Test func aRegisterThatGoesBackwardsIsRefused() {
    let inputs = MeterInputs(meters: [MeterSpec(id: "e", role: .buildingLoad, topic: "e", unit: .kilowattHour)])
    inputs.ingest(topic: "e", payload: Array("500".utf8), at: at(0))
    let problems = inputs.ingest(topic: "e", payload: Array("499".utf8), at: at(10))
    #expect(problems.first?.problem.contains("backwards") == true)
  }

  @Test func readingsGoStaleAndTheSnapshotSaysSo() {
    let inputs = MeterInputs(meters: [
      MeterSpec(id: "m", role: .buildingLoad, topic: "t", unit: .kilowatt, staleAfterSeconds: 3)
    ])
    var s = snapshot()
    inputs.overlay(&s, at: at(0))
    #expect(!s.inputsFresh && s.buildingDemandKW == 999, "no reading yet: stale, and the plant's value stays")
    inputs.ingest(topic: "t", payload: Array("80".utf8), at: at(1))
    s = snapshot()
    inputs.overlay(&s, at: at(3.9))
    #expect(s.inputsFresh && s.buildingDemandKW == 80)
    s = snapshot()
    inputs.overlay(&s, at: at(4.1))
    #expect(!s.inputsFresh && s.buildingDemandKW == 80)
    #expect(inputs.statuses(at: at(4.1)).first?.stale == true)
  }

  @Test func anAcceptedReadingWakesTheLoop() async {
    let trigger = StepTrigger()
    let inputs = MeterInputs(
      meters: [MeterSpec(id: "m", role: .buildingLoad, topic: "t", unit: .kilowatt)], trigger: trigger)
    inputs.ingest(topic: "t", payload: Array("x".utf8))
    let clock = ContinuousClock()
    var start = clock.now
    #expect(
      await trigger.wait(until: clock.now.advanced(by: .milliseconds(200))) == false, "a refused reading does not wake")
    #expect(clock.now - start >= .milliseconds(190))
    inputs.ingest(topic: "t", payload: Array("5".utf8))
    start = clock.now
    #expect(await trigger.wait(until: clock.now.advanced(by: .seconds(5))) == true)
    #expect(clock.now - start < .seconds(1))
    Task {
      try? await Task.sleep(for: .milliseconds(50))
      inputs.ingest(topic: "t", payload: Array("6".utf8))
    }
    start = clock.now
    #expect(
      await trigger.wait(until: clock.now.advanced(by: .seconds(5))) == true, "a reading during the wait wakes it")
    #expect(clock.now - start < .seconds(2))
  }
}

@Suite("Panel commands: parsed strictly, every problem named")
struct PanelCommandParsingTests {
  let site = SiteDescription(
    name: "t", importLimitKW: 500, exportLimitKW: 0, eventExportLimitKW: 0, criticalLoadFraction: 0.3, chargers: [],
    vehicles: [])

  func parse(_ text: String) -> PanelJSON.ParsedCommand { PanelJSON.command(Array(text.utf8), site: site) }

  @Test func validCommands() throws {
    #expect(
      try parse(#"{"request_id":"1","command":"set_demand_target","kw":300}"#).result.get()
        == .control(.setDemandTarget(kW: 300)))
    #expect(
      try parse(#"{"request_id":"1","command":"set_demand_target","kw":null}"#).result.get()
        == .control(.setDemandTarget(kW: nil)))
    #expect(
      try parse(#"{"request_id":"1","command":"hold_vehicle","vehicle":"BUS-1"}"#).result.get()
        == .control(.holdVehicle("BUS-1")))
    let departure = try parse(
      #"{"request_id":"1","command":"set_departure","vehicle":"B","departure":"2024-07-15T17:30"}"#
    )
    .result.get()
    #expect(
      departure
        == .control(
          .setDeparture(vehicle: "B", departure: CivilDate.parseLocalDateTime("2024-07-15T17:30"), needKWh: nil)))
    #expect(
      try parse(#"{"request_id":"1","command":"acknowledge_alarm","alarm":"all"}"#).result.get()
        == .acknowledgeAlarm("all"))
    // A "user" in the payload is not who sent it; it is simply not read.
    #expect(try parse(#"{"request_id":"1","command":"pause_v2x","user":"root"}"#).result.get() == .control(.pauseV2X))
  }

  @Test(arguments: [
    ("not json", "not a JSON object", false), ("[1]", "not a JSON object", false),
    (#"{"command":"pause_v2x"}"#, "request_id", false),
    (#"{"request_id":5,"command":"pause_v2x"}"#, "request_id", false),
    (#"{"request_id":"1"}"#, "command is missing", true),
    (#"{"request_id":"1","command":"reboot"}"#, "unknown command", true),
    (#"{"request_id":"1","command":"set_demand_target"}"#, "kw is missing", true),
    (#"{"request_id":"1","command":"set_demand_target","kw":"300"}"#, "kw must be a number", true),
    (#"{"request_id":"1","command":"set_demand_target","kw":true}"#, "kw must be a number", true),
    (#"{"request_id":"1","command":"hold_vehicle"}"#, "vehicle must be a string", true),
    (#"{"request_id":"1","command":"set_departure","vehicle":"B","departure":"tomorrow"}"#, "site local time", true),
  ])
  func invalidCommands(text: String, reason: String, hasID: Bool) {
    let parsed = parse(text)
    guard case .failure(let problem) = parsed.result else {
      Issue.record("\(text) was accepted")
      return
    }
    #expect(problem.text.contains(reason), "\(problem.text)")
    #expect((parsed.requestID != nil) == hasID)
  }

  @Test func oversizedCommandsAreRefusedUnread() {
    let huge = #"{"request_id":"1","command":"pause_v2x","pad":""# + String(repeating: "x", count: 10_000) + #""}"#
    guard case .failure(let problem) = parse(huge).result else {
      Issue.record("accepted")
      return
    }
    #expect(problem.text.contains("bytes"))
  }
}

@Suite("Alarms stay listed until cleared and acknowledged")
struct AlarmBoardTests {
  @Test func lifecycle() {
    var board = AlarmBoard()
    let first = board.raise("a", .critical, "broken", at: Date())
    let again = board.raise("a", .critical, "still broken", at: Date())
    #expect(first && !again, "raising an active alarm again is not new")
    let cleared = board.clear("a")
    #expect(cleared)
    #expect(board.listed.map(\.id) == ["a"], "a cleared alarm nobody acknowledged stays listed")
    let seen = board.acknowledge("a", by: "ops")
    #expect(seen == .acknowledged && board.listed.isEmpty)
    board.raise("b", .warning, "x", at: Date())
    let seenActive = board.acknowledge("b", by: "ops")
    #expect(seenActive == .acknowledged)
    #expect(board.listed.map(\.id) == ["b"], "an acknowledged alarm stays while active")
    let seenTwice = board.acknowledge("b", by: "ops")
    #expect(seenTwice == .alreadyAcknowledged)
    board.clear("b")
    #expect(board.listed.isEmpty)
    let unknown = board.acknowledge("zzz", by: "ops")
    #expect(unknown == .unknown)
  }
}

"""Self-tests of the OCPP test tools: the simulated charging stations (ocpp_peers.py) and the
upstream CSMS (ocpp_upstream.py). The CSMS here is ocpp_upstream's UpstreamCSMS, i.e. the
`ocpp` package's own server side, which validates every frame against the edition's
schemas, so a peer that sends something malformed fails here before it can confuse a test
of the appliance. No microgrid-edge binary is involved.

Every test runs its own CSMS on a free 127.0.0.1 port, with HTTP Basic auth on, and peers
with a short meter interval (0.2 s) so that the whole file takes well under a minute.
"""
import asyncio
import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ocpp_peers import JsonLines, SimulatedChargePoint, Vehicle
from ocpp_upstream import UpstreamCSMS

HERE = Path(__file__).resolve().parent
PASSWORD = "peer-secret"
CRASH_MARKERS = ("Traceback", "Error while handling request")


@pytest.fixture(scope="session", autouse=True)
def _binary_is_there():
    """Overrides conftest.py's fixture of the same name: these tests need the ocpp package
    and websockets, not the appliance binary."""


# ----------------------------------------------------------------------------- helpers

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(scenario, timeout=30):
    asyncio.run(asyncio.wait_for(scenario(), timeout))


async def eventually(condition, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)


def samples(transaction_event):
    """{measurand: value} of a TransactionEvent's (first) meter value."""
    return {s["measurand"]: s["value"] for s in transaction_event["meterValue"][0]["sampledValue"]}


def updates(csms, charger_id):
    return [e for e in csms.calls(charger_id, "TransactionEvent") if e["eventType"] == "Updated"]


class Bench:
    """A CSMS and the peers of one test; `async with Bench() as bench:`. Leaving stops every
    peer and the CSMS, and re-raises a peer's crash."""

    def __init__(self, port=0, **csms_options):
        self.csms = UpstreamCSMS(port=port, password=PASSWORD, **csms_options)
        self.url = f"ws://127.0.0.1:{port}/ocpp"
        self.runs = {}

    async def __aenter__(self):
        await self.csms.start()
        self.url = f"ws://127.0.0.1:{self.csms.port}/ocpp"
        return self

    def peer(self, charger_id, version="2.1", vehicle=None, password=PASSWORD, **options):
        options = {"meter_interval": 0.2, "connect_timeout": 5.0, **options}
        peer = SimulatedChargePoint(charger_id, self.url, version=version, password=password,
                                    vehicle=vehicle or Vehicle(), **options)
        self.runs[peer] = asyncio.create_task(peer.run())
        return peer

    async def __aexit__(self, *exc_info):
        for peer in self.runs:
            peer.stop()
        results = await asyncio.gather(*self.runs.values(), return_exceptions=True)
        await self.csms.stop()
        crashes = [r for r in results if isinstance(r, BaseException)]
        if crashes and exc_info[0] is None:
            raise crashes[0]


# ----------------------------------------------------------------------------- 2.1

def test_v21_peer_announces_v2x_needs_and_follows_a_discharge_setpoint():
    vehicle = Vehicle(capacity_kwh=100, soc_pct=60, need_kwh=20, depart_in_s=7200, max_kw=50,
                      max_discharge_kw=40, min_soc_pct=30, voltage_v=400)

    async def scenario():
        async with Bench() as bench:
            csms, peer = bench.csms, bench.peer("CP21", vehicle=vehicle)
            boot = (await csms.wait_call("CP21", "BootNotification"))[0]
            assert boot == {"reason": "PowerUp", "chargingStation": {
                "model": "SimulatedChargePoint", "vendorName": "MicrogridEdgeTests"}}
            needs = (await csms.wait_call("CP21", "NotifyEVChargingNeeds"))[0]
            assert [s["connectorStatus"] for s in csms.calls("CP21", "StatusNotification")] == \
                ["Available", "Occupied"]
            started = csms.calls("CP21", "TransactionEvent")[0]
            assert (started["eventType"], started["triggerReason"], started["seqNo"]) == \
                ("Started", "CablePluggedIn", 0)
            assert started["evse"] == {"id": 1, "connectorId": 1}
            assert started["idToken"] == {"idToken": "EV-CP21", "type": "Local"}
            assert started["transactionInfo"]["transactionId"] == peer.transaction_id

            assert needs["evseId"] == 1
            charging = needs["chargingNeeds"]
            departure = datetime.fromisoformat(charging.pop("departureTime").replace("Z", "+00:00"))
            assert abs(departure.timestamp() - (time.time() + 7200)) < 60
            assert charging == {
                "requestedEnergyTransfer": "DC_BPT", "controlMode": "DynamicControl",
                "mobilityNeedsMode": "EVCC",
                "dcChargingParameters": {"evMaxPower": 50000, "evMaxCurrent": 125, "evMaxVoltage": 400,
                                         "energyAmount": 20000, "stateOfCharge": 60,
                                         "evEnergyCapacity": 100000},
                "v2xChargingParameters": {"maxChargePower": 50000, "minChargePower": 0,
                                          "maxDischargePower": 40000, "minDischargePower": 0,
                                          "evMinEnergyRequest": -30000, "evTargetEnergyRequest": 20000,
                                          "evMaxEnergyRequest": 40000}}, charging

            # No profile yet: charging at its maximum, and the meter says so.
            await eventually(lambda: any(samples(e)["Power.Active.Import"] == 50000
                                         for e in updates(csms, "CP21")), "a meter value at +50 kW")
            assert peer.power_w == 50000

            assert await csms.push("CP21", setpoint_w=-30000) == {"status": "Accepted"}
            assert peer.power_w == -30000, "a CentralSetpoint applies at once"
            before = peer.energy_wh
            await eventually(lambda: any(samples(e)["Power.Active.Import"] == -30000
                                         for e in updates(csms, "CP21")), "a meter value at -30 kW")
            await asyncio.sleep(0.3)
            assert peer.energy_wh < before, "discharging must empty the battery"
            last = samples(updates(csms, "CP21")[-1])
            assert last["Energy.Active.Export.Register"] > 0
            assert last["Energy.Active.Import.Register"] > 0
            assert 59 < last["SoC"] < 61
            seqs = [e["seqNo"] for e in csms.calls("CP21", "TransactionEvent")]
            assert seqs == list(range(len(seqs))), f"seqNo must count up from 0: {seqs}"

            # Beyond what the vehicle can give: clamped to maxDischargePower.
            assert await csms.push("CP21", setpoint_w=-80000) == {"status": "Accepted"}
            assert peer.power_w == -40000

            composite = await csms.call("CP21", "GetCompositeSchedule", {"duration": 600, "evseId": 1})
            assert composite["status"] == "Accepted"
            assert composite["schedule"]["chargingSchedulePeriod"] == \
                [{"startPeriod": 0, "setpoint": -80000, "operationMode": "CentralSetpoint"}]

            assert await csms.call("CP21", "ClearChargingProfile", {"chargingProfileId": 1}) == \
                {"status": "Accepted"}
            assert peer.power_w == 50000, "without a profile it charges at its maximum again"
            assert peer.violations == [] and peer.call_errors == []
    run(scenario)


def test_v21_unidirectional_vehicle_asks_for_dc_and_flags_a_discharge_setpoint():
    async def scenario():
        async with Bench() as bench:
            peer = bench.peer("UNI", vehicle=Vehicle(bidirectional=False))
            needs = (await bench.csms.wait_call("UNI", "NotifyEVChargingNeeds"))[0]["chargingNeeds"]
            assert needs["requestedEnergyTransfer"] == "DC"
            assert needs["v2xChargingParameters"]["maxDischargePower"] == 0
            assert await bench.csms.push("UNI", setpoint_w=-10000) == {"status": "Accepted"}
            assert peer.power_w == 0
            assert any("cannot discharge" in v for v in peer.violations), peer.violations
    run(scenario)


def test_discharging_below_the_announced_reserve_is_a_violation():
    # 100 Wh battery at 21 %, reserve 20 %: 1 Wh to give, 21 Wh in all (0.76 s at -100 kW).
    vehicle = Vehicle(capacity_kwh=0.1, soc_pct=21, min_soc_pct=20, max_kw=100)

    async def scenario():
        async with Bench() as bench:
            peer = bench.peer("RES", vehicle=vehicle)
            await bench.csms.wait_call("RES", "NotifyEVChargingNeeds")
            await bench.csms.push("RES", setpoint_w=-100000)
            await eventually(lambda: peer.violations, "a violation for going below the reserve")
            assert "below the announced reserve" in peer.violations[0]
            await eventually(lambda: peer.energy_wh == 0 and peer.power_w == 0,
                             "an empty battery stops discharging")
    run(scenario)


def test_vehicles_come_and_go_on_an_empty_connector():
    """plug_in / unplug, as the building emulator uses them: one transaction per vehicle,
    its name as the idToken, its own departure, efficiency in the battery, and a TxProfile
    that leaves with its transaction."""
    async def scenario():
        async with Bench() as bench:
            csms = bench.csms
            peer = SimulatedChargePoint("BAY", bench.url, password=PASSWORD, vehicle=None,
                                        meter_interval=0.2, connect_timeout=5.0)
            bench.runs[peer] = asyncio.create_task(peer.run())
            await csms.wait_call("BAY", "StatusNotification")
            await asyncio.sleep(0.5)
            assert csms.calls("BAY", "TransactionEvent") == [] and peer.power_now_w() == 0

            departure = int(time.time()) + 900
            await peer.plug_in(Vehicle(capacity_kwh=100, soc_pct=50, need_kwh=-10, max_kw=40,
                                       efficiency=0.9, name="BUS-7"), departure=departure)
            started = csms.calls("BAY", "TransactionEvent")[0]
            assert started["eventType"] == "Started"
            assert started["idToken"] == {"idToken": "BUS-7", "type": "Local"}
            needs = csms.calls("BAY", "NotifyEVChargingNeeds")[0]["chargingNeeds"]
            assert needs["departureTime"] == datetime.fromtimestamp(departure, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            assert needs["v2xChargingParameters"]["evTargetEnergyRequest"] == -10000, \
                "it may leave with 10 kWh less than it came with"
            assert await csms.push("BAY", setpoint_w=-20000) == {"status": "Accepted"}  # a TxProfile
            await asyncio.sleep(1.0)
            energy_wh = await peer.unplug()
            assert peer.export_wh > 4, "it discharged at 20 kW for a second"
            assert energy_wh - 50000 == pytest.approx(0.9 * peer.import_wh - peer.export_wh / 0.9, abs=1e-6), \
                "the battery gains 90 % of what the outlet gives it and pays 1/0.9 of what it sends out"
            ended = csms.calls("BAY", "TransactionEvent")[-1]
            assert (ended["eventType"], ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == \
                ("Ended", "EVDeparted", "EVDisconnected")
            assert csms.calls("BAY", "StatusNotification")[-1]["connectorStatus"] == "Available"
            assert peer.power_now_w() == 0 and peer.transaction_id is None

            await peer.plug_in(Vehicle(max_kw=30, name="CAR-2"))
            assert len(set(peer.transactions)) == 2
            starts = [e for e in csms.calls("BAY", "TransactionEvent") if e["eventType"] == "Started"]
            assert [e["idToken"]["idToken"] for e in starts] == ["BUS-7", "CAR-2"]
            assert peer.power_now_w() == 30000, "the first vehicle's TxProfile left with its transaction"
            with pytest.raises(RuntimeError):
                await peer.plug_in(Vehicle())
            assert peer.violations == [] and peer.call_errors == []
    run(scenario)


# ----------------------------------------------------------------------------- 2.0.1

def test_v201_peer_flags_a_negative_limit_and_2_1_fields_as_violations():
    async def scenario():
        async with Bench() as bench:
            csms, peer = bench.csms, bench.peer("CP201", version="2.0.1")
            charging = (await csms.wait_call("CP201", "NotifyEVChargingNeeds"))[0]["chargingNeeds"]
            assert charging["requestedEnergyTransfer"] == "DC"
            assert set(charging) == {"requestedEnergyTransfer", "departureTime", "dcChargingParameters"}

            # The upstream sends a 2.0.1 charger the value as a limit: negative, on purpose.
            assert await csms.push("CP201", setpoint_w=-20000) == {"status": "Accepted"}
            assert peer.power_w == 0, "a 2.0.1 vehicle never discharges"
            assert any("negative limit" in v for v in peer.violations), peer.violations

            profile = {"evseId": 1, "chargingProfile": {
                "id": 2, "stackLevel": 1, "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Relative", "chargingSchedule": [{
                    "id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [
                        {"startPeriod": 0, "setpoint": -5000, "operationMode": "CentralSetpoint"}]}]}}
            reply = await csms.call("CP201", "SetChargingProfile", profile)
            assert reply["callError"]["code"] == "FormatViolation", reply
            flagged = " ".join(peer.violations)
            assert "`operationMode`" in flagged and "`setpoint`" in flagged, peer.violations
    run(scenario)


# ----------------------------------------------------------------------------- knobs

def test_reject_profiles_answers_rejected_and_keeps_charging():
    async def scenario():
        async with Bench() as bench:
            peer = bench.peer("REJ", reject_profiles=True)
            await bench.csms.wait_call("REJ", "NotifyEVChargingNeeds")
            assert await bench.csms.push("REJ", setpoint_w=-30000) == {"status": "Rejected"}
            await asyncio.sleep(0.3)
            assert peer.power_w == 60000
    run(scenario)


def test_nonsense_reports_impossible_soc_and_power():
    async def scenario():
        async with Bench() as bench:
            bench.peer("NON", nonsense=True, vehicle=Vehicle(max_kw=50))
            await eventually(lambda: updates(bench.csms, "NON"), "a meter value")
            reported = samples(updates(bench.csms, "NON")[0])
            assert reported["SoC"] == 250
            assert reported["Power.Active.Import"] == -500000, "10 x max, wrong sign while charging"
    run(scenario)


def test_send_invalid_is_answered_with_a_callerror_by_the_package():
    async def scenario():
        async with Bench() as bench:
            peer = bench.peer("BAD", send_invalid=True)
            await bench.csms.wait_call("BAD", "NotifyEVChargingNeeds", count=2)
            assert bench.csms.calls("BAD", "NotifyEVChargingNeeds")[0] == {"evseId": 1}
            assert [(e["id"], e["kind"]) for e in peer.call_errors] == [("bad-1", "CALLERROR")]
            assert peer.call_errors[0]["code"] == "ProtocolError"  # the package's word for "required"
            assert peer.violations == []
    run(scenario)


def test_reboot_after_reconnects_with_a_new_boot_and_a_new_transaction():
    async def scenario():
        async with Bench() as bench:
            peer = bench.peer("RBT", reboot_after=0.5)
            boots = await bench.csms.wait_call("RBT", "BootNotification", count=2, timeout=10)
            assert [b["reason"] for b in boots] == ["PowerUp", "PowerUp"]
            await bench.csms.wait_call("RBT", "NotifyEVChargingNeeds", count=2)
            started = [e["transactionInfo"]["transactionId"] for e in bench.csms.calls("RBT", "TransactionEvent")
                       if e["eventType"] == "Started"]
            assert len(started) == 2 and started[0] != started[1]
            assert peer.transactions == started
            assert [s["connectorStatus"] for s in bench.csms.calls("RBT", "StatusNotification")] == \
                ["Available", "Occupied"] * 2
    run(scenario)


def test_disconnect_after_closes_and_stays_away():
    async def scenario():
        async with Bench() as bench:
            peer = bench.peer("GONE", disconnect_after=0.5)
            await bench.csms.wait_call("GONE", "NotifyEVChargingNeeds")
            await asyncio.wait_for(bench.runs[peer], 5)
            await asyncio.sleep(0.5)
            assert "GONE" not in bench.csms.stations
            assert len(bench.csms.calls("GONE", "BootNotification")) == 1
            assert not peer.gave_up
    run(scenario)


# ----------------------------------------------------------------------------- handlers

@pytest.mark.parametrize("version", ["2.1", "2.0.1"])
def test_handlers_of_calls_from_the_csms(version):
    async def scenario():
        async with Bench(heartbeat_interval=30) as bench:
            csms, peer = bench.csms, bench.peer("H", version=version)
            await csms.wait_call("H", "NotifyEVChargingNeeds")

            assert await csms.call("H", "TriggerMessage", {"requestedMessage": "Heartbeat"}) == {"status": "Accepted"}
            await csms.wait_call("H", "Heartbeat")
            assert await csms.call("H", "TriggerMessage", {"requestedMessage": "MeterValues"}) == {"status": "Accepted"}
            meter = (await csms.wait_call("H", "MeterValues"))[0]
            assert meter["evseId"] == 1 and samples(meter)["Power.Active.Import"] == 60000
            assert await csms.call("H", "TriggerMessage", {"requestedMessage": "LogStatusNotification"}) == \
                {"status": "NotImplemented"}

            got = await csms.call("H", "GetVariables", {"getVariableData": [
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "NoSuchThing"}},
                {"component": {"name": "NoSuchCtrlr"}, "variable": {"name": "Enabled"}}]})
            assert [(r["attributeStatus"], r.get("attributeValue")) for r in got["getVariableResult"]] == \
                [("Accepted", "30"), ("UnknownVariable", None), ("UnknownComponent", None)]
            got = await csms.call("H", "SetVariables", {"setVariableData": [
                {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedInterval"},
                 "attributeValue": "0.5"},
                {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "Enabled"},
                 "attributeValue": "false"}]})
            assert [r["attributeStatus"] for r in got["setVariableResult"]] == ["Accepted", "Rejected"]
            assert peer.meter_interval == 0.5

            composite = await csms.call("H", "GetCompositeSchedule", {"duration": 60, "evseId": 1})
            assert composite["schedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 60000}]
            assert await csms.call("H", "ChangeAvailability", {"operationalStatus": "Operative"}) == \
                {"status": "Accepted"}
            # No handler: NotImplemented for both editions (the package's v21 would not answer).
            reply = await csms.call("H", "UnlockConnector", {"evseId": 1, "connectorId": 1})
            assert reply["callError"]["code"] == "NotImplemented", reply

            assert await csms.call("H", "RequestStopTransaction", {"transactionId": "nope"}) == \
                {"status": "Rejected"}
            transaction_id = peer.transaction_id
            assert await csms.call("H", "RequestStopTransaction", {"transactionId": transaction_id}) == \
                {"status": "Accepted"}
            await eventually(lambda: csms.calls("H", "TransactionEvent")[-1]["eventType"] == "Ended",
                             "TransactionEvent Ended")
            ended = csms.calls("H", "TransactionEvent")[-1]
            assert ended["triggerReason"] == "RemoteStop"
            assert ended["transactionInfo"] == {"transactionId": transaction_id, "stoppedReason": "Remote"}
            assert peer.power_w == 0 and peer.transaction_id is None

            assert await csms.call("H", "Reset", {"type": "Immediate"}) == {"status": "Accepted"}
            boots = await csms.wait_call("H", "BootNotification", count=2)
            assert boots[1]["reason"] == "RemoteReset"
            await csms.wait_call("H", "NotifyEVChargingNeeds", count=2)
            assert len(peer.transactions) == 2
            assert peer.violations == []
    run(scenario)


# ----------------------------------------------------------------------------- connecting

def test_peer_waits_for_a_late_csms():
    port = free_port()

    async def scenario():
        bench = Bench(port=port)
        early = SimulatedChargePoint("LATE", bench.url, password=PASSWORD, connect_timeout=10)
        task = asyncio.create_task(early.run())
        await asyncio.sleep(1.0)
        async with bench:
            await bench.csms.wait_call("LATE", "BootNotification")
            early.stop()
            await task
        assert early.boots == ["PowerUp"] and not early.gave_up
    run(scenario)


def test_wrong_password_is_refused_and_the_peer_gives_up(tmp_path):
    log = JsonLines(tmp_path / "peer.jsonl")

    async def scenario():
        async with Bench() as bench:
            peer = SimulatedChargePoint("PW", bench.url, password="wrong", connect_timeout=1, log=log)
            await peer.run()
            assert peer.gave_up and peer.boots == []
            assert "PW" not in bench.csms.received
    run(scenario)
    log.close()
    events = [json.loads(line) for line in (tmp_path / "peer.jsonl").read_text().splitlines()]
    assert any("401" in e.get("error", "") for e in events), events
    assert events[-1]["event"] == "gave_up"


# ----------------------------------------------------------------------------- command lines

def _post(port, path, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_command_lines(tmp_path):
    upstream_log, peers_log = tmp_path / "upstream.jsonl", tmp_path / "peers.jsonl"
    upstream = subprocess.Popen(
        [sys.executable, str(HERE / "ocpp_upstream.py"), "--port", "0", "--control-port", "0",
         "--log", str(upstream_log), "--password", PASSWORD, "--auto-push", "CP1=-20000@0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = upstream.stdout.readline().split()
        assert ready[:1] == ["READY"] and len(ready) == 3, f"expected READY <port> <control_port>, got {ready}"
        port, control_port = int(ready[1]), int(ready[2])
        peers = subprocess.Popen(
            [sys.executable, str(HERE / "ocpp_peers.py"), "--url", f"ws://127.0.0.1:{port}/ocpp",
             "--charger", f"CP1:2.1:{PASSWORD}", "--charger", f"CP2:2.0.1:{PASSWORD}",
             "--fleet", "2", "--password", PASSWORD, "--reject-profiles", "CP2",
             "--meter-interval", "0.5", "--duration", "5", "--log", str(peers_log)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 10
            while not any(line.get("event") == "booted" and line["charger"] == "CP2"
                          for line in (_read_jsonl(peers_log) if peers_log.exists() else [])):
                assert time.monotonic() < deadline, "CP2 did not boot"
                time.sleep(0.1)
            assert _post(control_port, "/push", {"charger": "CP2", "limit_w": 5000}) == (200, {"status": "Rejected"})
            assert _post(control_port, "/push", {"charger": "NOPE", "limit_w": 5000})[0] == 404
            assert _post(control_port, "/call", {"charger": "BENCH-002", "action": "TriggerMessage",
                                                 "payload": {"requestedMessage": "Heartbeat"}}) == \
                (200, {"status": "Accepted"})
            out, err = peers.communicate(timeout=20)
        finally:
            if peers.poll() is None:
                peers.kill()
                peers.communicate()
        assert peers.returncode == 0, err
        assert not any(marker in err for marker in CRASH_MARKERS), err
        summaries = {s["charger"]: s for s in map(json.loads, out.splitlines())}
        assert set(summaries) == {"CP1", "CP2", "BENCH-001", "BENCH-002"}
        assert all(s["boots"] == ["PowerUp"] for s in summaries.values()), summaries
        assert summaries["CP1"]["power_w"] == -20000, "the auto-push setpoint"
        assert summaries["CP2"]["power_w"] == 60000, "CP2 rejects profiles"

        received = [line for line in _read_jsonl(peers_log) if "action" in line]
        assert {(line["charger"], line["action"]) for line in received} >= {
            ("CP1", "SetChargingProfile"), ("CP2", "SetChargingProfile"), ("BENCH-002", "TriggerMessage")}
    finally:
        upstream.send_signal(signal.SIGTERM)
        _, upstream_err = upstream.communicate(timeout=10)
    assert upstream.returncode == 0, upstream_err
    assert not any(marker in upstream_err for marker in CRASH_MARKERS), upstream_err
    upstream_lines = _read_jsonl(upstream_log)
    booted = {line["charger"] for line in upstream_lines if line.get("action") == "BootNotification"}
    assert booted == {"CP1", "CP2", "BENCH-001", "BENCH-002"}
    pushes = [line for line in upstream_lines if line.get("event") == "push"]
    assert {(p["charger"], p["reply"].get("status")) for p in pushes} == {("CP1", "Accepted"), ("CP2", "Rejected")}


def test_peers_command_line_refuses_unknown_station_names():
    proc = subprocess.run([sys.executable, str(HERE / "ocpp_peers.py"), "--url", "ws://127.0.0.1:9/ocpp",
                           "--charger", "CP1:2.1", "--nonsense", "CP9"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "CP9" in proc.stderr, proc.stderr

"""Self-tests of the building emulator (building_emulator.py) against independent peers, not
the appliance: a real mosquitto with the shipped ACL (conftest's `broker`), a paho
subscriber as the appliance's meter input, and a CSMS written with the `ocpp` package
(ocpp_upstream.UpstreamCSMS) that accepts the emulator's charge points and sends them
charging profiles. What the test expects of the building (its load, its sessions) it
reads from the scenario's files itself. No microgrid-edge binary is involved.
"""
import asyncio
import csv
import json
import math
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from building_emulator import BuildingEmulator, ChargerSpec
from mge_helpers import copy_scenario, read_json, write_json
from mqtt_broker import free_port
from ocpp_upstream import UpstreamCSMS

HERE = Path(__file__).resolve().parent
TOWNHALL = HERE.parents[1] / "scenarios" / "townhall-fleet-baltimore"
EMULATOR = HERE / "building_emulator.py"
GRID_TOPIC = "building/meters/main/power"
BUILDING_TOPIC = "building/meters/main/building"
PASSWORD = "emulator-test-secret"
# 2023-07-12 13:20 in the town hall: CAR-1 on C1 (until minute 277500), CAR-2 on C2 and
# CAR-3 on C3 are plugged in, and the hourly load holds until 14:00 (minute 277320).
START = 277280
CHARGER_KW = 15.0   # C1, C2 and C3 of the town hall charge at up to 15 kW


@pytest.fixture(scope="session", autouse=True)
def _binary_is_there():
    """Overrides conftest.py's fixture of the same name: the emulator needs no appliance."""


# ----------------------------------------------------------------------------- helpers

def load_kw(scenario_dir, minute):
    """The building's load at `minute`, read straight from load.csv (a step function)."""
    with open(Path(scenario_dir) / "load.csv") as f:
        value = None
        for row in csv.DictReader(f):
            if float(row["minute"]) > minute:
                break
            value = float(row["building_kw"])
    return value


def iso(unix):
    return datetime.fromtimestamp(unix, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def meter_power(transaction_event):
    return next(s["value"] for s in transaction_event["meterValue"][0]["sampledValue"]
                if s["measurand"] == "Power.Active.Import")


def truth(path, kind):
    return [r for r in map(json.loads, Path(path).read_text().splitlines()) if r["kind"] == kind]


class Readings:
    """What a subscriber receives on one topic: [(arrival wall time, W)]."""

    def __init__(self, client, topic):
        self.items = []
        client.message_callback_add(topic, lambda c, u, msg: self.items.append(
            (time.time(), json.loads(msg.payload)["power"])))
        client.subscribe_and_wait(topic)

    def since(self, wall):
        return [w for t, w in self.items if t >= wall]


class Building:
    """The emulator and a CSMS for its charge points, in this asyncio loop:
    `async with Building(broker, tmp_path, chargers=[...], **options) as b:`."""

    def __init__(self, broker, tmp_path, scenario=TOWNHALL, chargers=(), **options):
        self.csms = UpstreamCSMS(password=PASSWORD)
        self.log = tmp_path / "truth.jsonl"
        self.scenario, self.broker, self.options = scenario, broker, options
        self.chargers = [ChargerSpec.parse(text) for text in chargers]

    async def __aenter__(self):
        await self.csms.start()
        self.emulator = BuildingEmulator(
            self.scenario, chargers=self.chargers, ocpp_url=f"ws://127.0.0.1:{self.csms.port}/ocpp",
            mqtt_port=self.broker.port, mqtt_password=self.broker.users["meter-main"],
            log_path=self.log, **self.options)
        self.task = asyncio.create_task(self.emulator.run())
        while self.emulator.started_at is None:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc_info):
        self.emulator.stop()
        try:
            self.summary = await asyncio.wait_for(self.task, 15)
        finally:
            await self.csms.stop()


def run(scenario, timeout=60):
    return asyncio.run(asyncio.wait_for(scenario(), timeout))


def held_intervals(samples, seconds, stop_wall):
    """Demand intervals recomputed from the samples: each sample's grid import holds until
    the next one (the last until `stop_wall`); {start: (covered seconds, mean kW, peak)}."""
    out = {}
    ends = [s["wall"] for s in samples[1:]] + [stop_wall]
    for sample, end in zip(samples, ends):
        t = sample["wall"]
        while t < end - 1e-9:
            start = math.floor(t / seconds) * seconds
            upto = min(end, start + seconds)
            covered, kws, peak = out.get(start, (0.0, 0.0, None))
            out[start] = (covered + upto - t, kws + sample["grid_kw"] * (upto - t), peak)
            t = upto
    for sample in samples:
        start = math.floor(sample["wall"] / seconds) * seconds
        covered, kws, peak = out[start]
        out[start] = (covered, kws, sample["grid_kw"] if peak is None else max(peak, sample["grid_kw"]))
    return {start: (covered, kws / covered, peak) for start, (covered, kws, peak) in out.items()}


# ----------------------------------------------------------------------------- meter and setpoints

def test_grid_import_is_building_plus_chargers_every_second_and_follows_the_setpoints(broker, tmp_path):
    """C1 (2.1) is told to discharge 8 kW, C2 (2.0.1) to charge at most 5 kW: the grid
    reading drops by 15 + 8 + 15 - 5 = 33 kW, and the truth log says the same."""
    appliance = broker.client("microgrid-edge")
    grid, building = Readings(appliance, GRID_TOPIC), Readings(appliance, BUILDING_TOPIC)
    load = load_kw(TOWNHALL, START)

    async def scenario():
        async with Building(broker, tmp_path, chargers=["C1:2.1:" + PASSWORD, "C2:2.0.1:" + PASSWORD],
                            start_minute=START, building_topic=BUILDING_TOPIC, demand_interval_seconds=2) as b:
            csms = b.csms
            for cid in ("C1", "C2"):
                await csms.wait_call(cid, "NotifyEVChargingNeeds")
            await asyncio.sleep(5.5)   # long enough for a whole 2 s demand interval at full charge
            before = grid.since(time.time() - 1.2)
            assert before and all(abs(w - (load + 2 * CHARGER_KW) * 1000) < 1 for w in before), \
                f"both vehicles charge at 15 kW on a {load} kW building, but the meter says {before}"
            assert [meter_power(csms.calls(cid, "TransactionEvent")[-1]) for cid in ("C1", "C2")] == [15000, 15000]

            assert await csms.push("C1", setpoint_w=-8000) == {"status": "Accepted"}
            assert await csms.push("C2", limit_w=5000) == {"status": "Accepted"}
            pushed = time.time()
            await asyncio.sleep(5.5)   # and one after the setpoints
            after = grid.since(pushed + 0.2)
            assert len(after) >= 2 and all(abs(w - (load - 8 + 5) * 1000) < 1 for w in after), \
                f"expected {(load - 3) * 1000} W after the setpoints, the meter says {after}"
            assert abs((after[-1] - before[-1]) - (-33000)) < 1
            assert [meter_power(csms.calls(cid, "TransactionEvent")[-1]) for cid in ("C1", "C2")] == [-8000, 5000]
        return b
    b = run(scenario)
    time.sleep(0.3)  # the last readings on their way to the subscriber

    times = [t for t, _ in grid.items]
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    assert len(times) >= 10 and all(0.75 < gap < 1.25 for gap in gaps), f"readings not every second: {gaps}"
    assert building.items and all(w == round(load * 1000, 1) for _, w in building.items)

    samples, intervals = truth(b.log, "sample"), truth(b.log, "interval")
    assert samples == b.emulator.samples and intervals == b.emulator.intervals
    assert [s["grid_kw"] * 1000 for s in samples] == pytest.approx([w for _, w in grid.items], abs=0.2), \
        "the truth log's samples are not what was published"
    for s in samples:
        assert s["utility"] and s["building_kw"] == load
        assert abs(s["grid_kw"] - (s["building_kw"] + sum(s["charger_kw"].values()))) < 1e-3

    stop_wall = min(b.emulator.stopped_at, samples[-1]["wall"] + 1.0)
    expected = held_intervals(samples, 2, stop_wall)
    assert [i["start"] for i in intervals] == sorted(expected)
    for interval in intervals:
        covered, mean, peak = expected[interval["start"]]
        assert abs(interval["seconds"] - covered) < 0.01 and abs(interval["mean_grid_kw"] - mean) < 0.05, interval
        assert interval["peak_sample_kw"] == pytest.approx(peak, abs=1e-3)
    full = [i for i in intervals if i["seconds"] > 1.99]
    assert len(full) >= 4, f"expected several complete 2 s intervals, got {intervals}"
    assert max(i["mean_grid_kw"] for i in full) == pytest.approx(load + 30, abs=0.01)
    assert min(i["mean_grid_kw"] for i in full) == pytest.approx(load - 3, abs=0.01)


# ----------------------------------------------------------------------------- needs or not

def test_a_noneeds_charger_never_sends_its_vehicles_needs(broker, tmp_path):
    async def scenario():
        async with Building(broker, tmp_path, chargers=["C1:2.1:" + PASSWORD, "C3:2.1:" + PASSWORD + ":noneeds"],
                            start_minute=START) as b:
            csms = b.csms
            needs = (await csms.wait_call("C1", "NotifyEVChargingNeeds"))[0]
            events = await csms.wait_call("C3", "TransactionEvent", count=4)
            await asyncio.sleep(1.0)
            assert csms.calls("C3", "NotifyEVChargingNeeds") == []
            assert events[0]["eventType"] == "Started" and events[0]["idToken"]["idToken"] == "CAR-3"
            assert meter_power(events[-1]) == CHARGER_KW * 1000, "a vehicle without needs charges on its own"
            # CAR-1's departure (minute 277500) as a wall time, at --speed 1
            assert needs["chargingNeeds"]["departureTime"] == iso(math.ceil(b.emulator.started_at + (277500 - START) * 60))
            assert csms.calls("C1", "TransactionEvent")[0]["idToken"]["idToken"] == "CAR-1"
    run(scenario)


# ----------------------------------------------------------------------------- the scenario's clock

def test_sessions_and_load_follow_the_scenario_clock_at_speed_60(broker, tmp_path):
    """At --speed 60 a scenario minute lasts a second: a session arriving 3 minutes after the
    start plugs in 3 s after it and leaves 15 s later; the load steps at the hour; the
    outage that follows zeroes the grid import."""
    arrive = 277320                      # 14:00: the hourly load steps here too
    scenario_dir = copy_scenario("townhall-fleet-baltimore", tmp_path / "scenario")
    (scenario_dir / "sessions.csv").write_text(
        "vehicle,charger,arrive_minute,depart_minute,arrive_kwh,depart_min_kwh\n"
        f"CAR-1,C1,{arrive},{arrive + 15},30.0,30.05\n"      # 15 kW x 15 s is enough
        f"CAR-2,C2,{arrive},{arrive + 15},40.0,45.0\n")      # and this is not
    meta = read_json(scenario_dir / "scenario.json")
    meta["outages"] = [{"start_minute": arrive + 15, "end_minute": arrive + 30}]
    write_json(scenario_dir / "scenario.json", meta)
    start = arrive - 3

    async def scenario():
        async with Building(broker, tmp_path, scenario=scenario_dir, speed=60, start_minute=start,
                            chargers=["C1:2.1:" + PASSWORD, "C2:2.0.1:" + PASSWORD]) as b:
            csms, t0 = b.csms, b.emulator.started_at
            await csms.wait_call("C1", "NotifyEVChargingNeeds", timeout=6)
            started_at = next(t for t, action, _ in csms.received["C1"] if action == "TransactionEvent")
            assert abs(started_at - (t0 + 3)) < 0.5, f"plugged in {started_at - t0:.2f} s after the start, not 3 s"
            departure = math.ceil(t0 + 18)
            assert csms.calls("C1", "NotifyEVChargingNeeds")[0]["chargingNeeds"]["departureTime"] == iso(departure)
            await csms.wait_call("C1", "StatusNotification", count=3, timeout=20)   # Available again
            ended = [(t, p) for t, action, p in csms.received["C1"]
                     if action == "TransactionEvent" and p["eventType"] == "Ended"]
            assert len(ended) == 1 and abs(ended[0][0] - departure) < 0.5
            assert ended[0][1]["triggerReason"] == "EVDeparted"
            while len(b.emulator.departures) < 2 and time.time() < departure + 10:
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)   # a sample or two in the outage
        return b

    b = run(scenario)
    departures = {d["vehicle"]: d for d in b.emulator.departures}
    assert set(departures) == {"CAR-1", "CAR-2"} and departures == {d["vehicle"]: d for d in truth(b.log, "departure")}
    # 15 kW from the plug-in to the departure at the charger's 93 % efficiency
    plugged_s = math.ceil(b.emulator.started_at + 18) - (b.emulator.started_at + 3)
    assert departures["CAR-1"]["energy_kwh"] == pytest.approx(30 + 15 * 0.93 * plugged_s / 3600, abs=0.002)
    assert not departures["CAR-1"]["short"] and departures["CAR-2"]["short"]
    assert b.summary["left_short"] == ["CAR-2"] and b.summary["stopped"] == "stop()"

    samples = b.emulator.samples
    for s in samples:
        assert s["scenario_minute"] == pytest.approx(start + (s["wall"] - b.emulator.started_at), abs=0.05)
        assert s["building_kw"] == load_kw(scenario_dir, math.floor(s["scenario_minute"]))
        assert s["utility"] == (s["scenario_minute"] < arrive + 15)
        if not s["utility"]:
            assert s["grid_kw"] == 0
    assert {s["building_kw"] for s in samples if s["scenario_minute"] < arrive} == {load_kw(scenario_dir, start)}
    assert load_kw(scenario_dir, start) != load_kw(scenario_dir, arrive)
    assert any(not s["utility"] for s in samples)
    charging = [s for s in samples if arrive + 1 <= s["scenario_minute"] < arrive + 14]
    assert charging and all(s["charger_kw"] == {"C1": 15.0, "C2": 15.0} for s in charging)


# ----------------------------------------------------------------------------- command line

def test_command_line_publishes_until_sigterm_and_prints_a_summary(broker, tmp_path):
    appliance = broker.client("microgrid-edge")
    grid, building = Readings(appliance, GRID_TOPIC), Readings(appliance, BUILDING_TOPIC)
    log = tmp_path / "truth.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(EMULATOR), str(TOWNHALL), "--mqtt-port", str(broker.port),
         "--mqtt-password", broker.users["meter-main"], "--building-topic", BUILDING_TOPIC,
         "--start-minute", str(START), "--demand-interval-seconds", "2", "--log", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE)
    try:
        deadline = time.time() + 15
        while len(grid.items) < 3 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert len(grid.items) >= 3, f"no readings: {proc.poll()} {proc.stderr.read() if proc.poll() is not None else ''}"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and err == "", err
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    summary = json.loads(lines[0])
    assert summary["stopped"] == "SIGTERM" and summary["samples"] == len(truth(log, "sample")) >= 3
    load = load_kw(TOWNHALL, START)
    assert all(w == round(load * 1000, 1) for _, w in grid.items + building.items), "no chargers: grid = building"
    kinds = [json.loads(line)["kind"] for line in log.read_text().splitlines()]
    assert kinds[0] == "start" and kinds[-1] == "stop" and "interval" in kinds


def emulator_command(*args, timeout=20):
    return subprocess.run([sys.executable, str(EMULATOR), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=HERE)


def broken_sessions(tmp_path):
    directory = copy_scenario("townhall-fleet-baltimore", tmp_path / "broken")
    lines = (directory / "sessions.csv").read_text().splitlines()
    fields = lines[2].split(",")
    lines[2] = ",".join(fields[:2] + ["soon"] + fields[3:])    # line 3's arrive_minute
    (directory / "sessions.csv").write_text("\n".join(lines) + "\n")
    return directory


BAD_ARGUMENTS = {
    "missing scenario": (lambda tmp: [tmp / "no-such-building"], "no-such-building: no such scenario directory"),
    "unknown charger": (lambda tmp: [TOWNHALL, "--charger", "C9:2.1:pw", "--ocpp-url", "ws://127.0.0.1:1/ocpp"],
                        "--charger C9: no charger C9 in"),
    "bad version": (lambda tmp: [TOWNHALL, "--charger", "C1:1.6:pw", "--ocpp-url", "ws://127.0.0.1:1/ocpp"],
                    "VERSION must be 2.1 or 2.0.1"),
    "charger without url": (lambda tmp: [TOWNHALL, "--charger", "C1:2.1:pw"], "--ocpp-url"),
    "zero speed": (lambda tmp: [TOWNHALL, "--speed", "0"], "--speed 0"),
    "not a number": (lambda tmp: [TOWNHALL, "--meter-every", "often"], "--meter-every"),
    "past the end": (lambda tmp: [TOWNHALL, "--start-minute", "600000"], "--start-minute 600000: outside"),
    "bad sessions.csv": (lambda tmp: [broken_sessions(tmp)], "sessions.csv:3: arrive_minute: 'soon' is not a number"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS))
def test_bad_arguments_give_one_line_naming_what_and_where(case, tmp_path):
    make_args, expected = BAD_ARGUMENTS[case]
    proc = emulator_command(*make_args(tmp_path), "--mqtt-port", free_port())
    assert proc.returncode == 2 and proc.stdout == "", proc
    assert len(proc.stderr.splitlines()) == 1 and expected in proc.stderr, proc.stderr


def test_an_unreachable_or_refusing_broker_is_named(broker):
    port = free_port()
    proc = emulator_command(TOWNHALL, "--mqtt-port", port)
    assert proc.returncode == 1 and proc.stderr == \
        f"building_emulator: error: cannot reach the MQTT broker at 127.0.0.1:{port}: Connection refused\n"
    proc = emulator_command(TOWNHALL, "--mqtt-port", broker.port, "--mqtt-password", "wrong")
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert f"the MQTT broker at 127.0.0.1:{broker.port}: it refused user 'meter-main'" in proc.stderr

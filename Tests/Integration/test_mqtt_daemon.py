"""The `run` daemon against a real mosquitto, as docs/mqtt-api.md specifies it: status and
last will, meter readings in (fresh and stale), commands and replies, who a command is
from, the broker's ACL end to end, 10,000 hostile payloads, broker restarts and a broker
that is down at start, Home Assistant discovery, and an island test by command.

Every test runs its own broker (conftest `broker`, the shipped ACL) and daemon
(mqtt_daemon.Daemon, config/example-school.yaml plus an `mqtt:` section and one meter
`main`, building_load in W on building/meters/main/power, stale after 3 s), at speed 1
from minute 60 of the school-bus scenario, when all four buses are parked with energy.
"""
import hashlib
import json
import math
import random
import re
import signal
import threading
import time
import uuid
from collections import Counter

import pytest

from mqtt_broker import Broker, Collector, ConnectRefused
from mqtt_daemon import (DAEMON_USER, METER_TOPIC, STALE_AFTER, VEHICLES, Daemon, Meter,
                         Panel, alarm, brief, meter_entry, parse_json, setpoints_of, topic,
                         wait_retained_status, write_config)

STATUS = topic("status")
STATE = topic("state")
LOBBY_COMMANDS = topic("command/panel-lobby")
HA_COMMANDS = topic("command/homeassistant")
KW_TOL = 0.05            # the state may round powers to 0.1 kW


# -- fixtures -----------------------------------------------------------------------------

class Site:
    """One daemon on the test broker, with a meter (meter-main) and a panel (panel-lobby)."""

    def __init__(self, broker, tmp_path):
        self.broker = broker
        self.tmp_path = tmp_path
        self.daemons = []
        self.clients = []
        self.daemon = self.meter = self.panel = None

    def start(self, meter_w=None, start_minute=60, speed=1, panel=True, **config):
        directory = self.tmp_path / f"site-{len(self.daemons) + 1}"
        config_path = write_config(directory, self.broker, **config)
        self.daemon = Daemon(config_path, directory, speed=speed, start_minute=start_minute)
        self.daemons.append(self.daemon)
        if self.broker.running:
            self.meter = self.add(Meter(self.broker))
            if meter_w is not None:
                self.meter.stream(meter_w)
            if panel:
                self.panel = self.add(Panel(self.broker, "panel-lobby"))
        return self

    def add(self, client):
        self.clients.append(client)
        return client

    def close(self):
        for c in self.clients:
            try:
                c.close()
            except Exception:
                pass
        for d in self.daemons:
            d.kill()

    # common waits, asserting with what was seen
    def wait_online(self, timeout=15):
        assert self.panel.wait_status("online", timeout), (
            f"expected P/status `online` (retained) within {timeout} s of starting the daemon, "
            f"the panel saw {self.panel.status_value()!r}\n{self.daemon.describe()}")

    def wait_fresh(self, timeout=10, building_kw=None):
        def ok(s):
            fresh = s["inputs_fresh"] is True and s["mode"] != "safe"
            if building_kw is not None:
                fresh = fresh and abs(s["building_load_kw"] - building_kw) <= KW_TOL
            return fresh
        state = self.panel.wait_state(ok, timeout)
        assert state is not None, (
            f"test setup: expected a state with fresh inputs (meter streaming"
            f"{'' if building_kw is None else f' {building_kw} kW'}) and mode not `safe` within "
            f"{timeout} s; last state: {brief(self.panel.state())}\n{self.daemon.describe()}")
        return state


@pytest.fixture
def site(broker, tmp_path):
    s = Site(broker, tmp_path)
    yield s
    s.close()


def no_crash(daemon):
    markers = daemon.crash_markers()
    assert not markers, f"expected no crash in the daemon's output, found {markers}\n{daemon.describe()}"


def expect_outcome(reply, outcome, what):
    assert reply.get("outcome") == outcome, (
        f"expected {what} to be {outcome}, the reply was {json.dumps(reply)}")
    if outcome != "applied":
        assert isinstance(reply.get("reason"), str) and reply["reason"].strip(), (
            f"expected a reason with the {outcome} reply to {what}, the reply was {json.dumps(reply)}")


def vehicle_of(state, vehicle_id):
    for c in state.get("chargers") or []:
        v = c.get("vehicle")
        if v and v.get("id") == vehicle_id:
            return v
    return None


# -- status and last will -----------------------------------------------------------------

def test_status_online_while_running_and_offline_after_sigterm(site, broker):
    s = site.start(meter_w=100_000)
    s.wait_online()
    seen = wait_retained_status(broker, "online", 2)
    assert seen == "online", f"expected a new subscriber to get the retained P/status `online`, got {seen!r}"
    time.sleep(1)
    assert s.daemon.running, f"expected the daemon to keep running\n{s.daemon.describe()}"

    rc = s.daemon.stop()
    assert rc == 0, f"expected exit status 0 after SIGTERM, got {rc}\n{s.daemon.describe()}"
    seen = wait_retained_status(broker, "offline", 5)
    assert seen == "offline", (
        f"expected the retained P/status to be `offline` after SIGTERM, a new subscriber got {seen!r}\n"
        f"{s.daemon.describe()}")
    assert s.panel.status_value() == "offline", (
        f"expected the panel's last P/status to be `offline`, it is {s.panel.status_value()!r}")
    no_crash(s.daemon)


def test_last_will_says_offline_after_sigkill(site, broker):
    # keepalive 5 s: libmosquitto refuses anything from 1 to 4 (see the next test).
    s = site.start(meter_w=100_000, keepalive=5)
    s.wait_online()
    s.daemon.kill()
    t0 = time.monotonic()
    # The broker publishes the will when it sees the connection gone: at once when the
    # kernel closes the socket, at the latest 1.5 keepalives (7.5 s) later.
    seen = wait_retained_status(broker, "offline", 10)
    took = time.monotonic() - t0
    assert seen == "offline", (
        f"expected the broker to publish the daemon's last will (P/status `offline`, retained) "
        f"within 10 s of SIGKILL with keepalive 5 s; after {took:.1f} s a new subscriber gets {seen!r}\n"
        f"--- broker log (tail) ---\n{broker.log()[-2000:]}")


def test_a_hung_daemon_is_declared_offline_by_keepalive_and_comes_back(site, broker):
    """SIGSTOP keeps the socket open: only the keepalive (5 s) tells the broker the daemon
    is gone, after 1.5 keepalives. SIGCONT: it notices the dropped connection and says
    `online` again."""
    s = site.start(meter_w=100_000, keepalive=5)
    s.wait_online()
    s.daemon.proc.send_signal(signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        seen = wait_retained_status(broker, "offline", 12)
        took = time.monotonic() - t0
    finally:
        s.daemon.proc.send_signal(signal.SIGCONT)
    assert seen == "offline", (
        f"expected the broker to publish the last will (P/status `offline`) about 7.5 s (1.5 x "
        f"keepalive 5 s) after the daemon froze; after {took:.1f} s a new subscriber gets {seen!r}\n"
        f"--- broker log (tail) ---\n{broker.log()[-2000:]}")
    assert took >= 3, f"expected the will only after the keepalive ran out, it came after {took:.1f} s"
    seen = wait_retained_status(broker, "online", 15)
    assert seen == "online", (
        f"expected the daemon, resumed, to reconnect and say `online` within 15 s, got {seen!r}\n"
        f"{s.daemon.describe()}")
    expect_outcome(s.panel.command("pause_v2x"), "applied", "pause_v2x after the daemon came back")


def test_a_keepalive_the_configuration_accepts_works(site, broker):
    """keepalive_seconds: 2 must either be refused when the daemon starts (naming the key)
    or work; not be accepted and then fail every connect attempt."""
    s = site.start(meter_w=100_000, keepalive=2)
    online = s.panel.wait_status("online", 10)
    if not online:
        rc = s.daemon.proc.poll()
        refused = rc not in (None, 0) and "keepalive" in (s.daemon.log() + s.daemon.stderr())
        assert refused, (
            f"expected keepalive_seconds: 2 to work (P/status online) or to be refused at start with "
            f"a message naming keepalive_seconds; after 10 s the daemon is "
            f"{'running' if rc is None else f'exited ({rc})'} and never connected\n{s.daemon.describe()}")


# -- meters -------------------------------------------------------------------------------

def test_meter_readings_reach_the_controller(site):
    s = site.start(meter_w=123_456)
    s.wait_online()

    def ok(st):
        m = meter_entry(st)
        return (abs(st["building_load_kw"] - 123.456) <= KW_TOL and st["inputs_fresh"] is True
                and m is not None and m["stale"] is False)
    state = s.panel.wait_state(ok, 10)
    assert state is not None, (
        f"expected P/state to show building_load_kw ≈ 123.456, inputs_fresh true and meter `main` "
        f"not stale within 10 s of {{\"power\": 123456}} (W) at 2 Hz; last state: {brief(s.panel.state())}, "
        f"meters: {(s.panel.state() or {}).get('meters')}\n{s.daemon.describe()}")
    m = meter_entry(state)
    assert m.get("role") == "building_load" and abs(m.get("kw", math.nan) - 123.456) <= KW_TOL, (
        f"expected the state's meter entry to say role building_load, kw ≈ 123.456, got {m}")
    assert state.get("schema") == "microgrid-edge/state/1", f"expected schema microgrid-edge/state/1, got {state.get('schema')!r}"
    assert state.get("site") == "Example primary school (four electric buses)", f"expected the site's name, got {state.get('site')!r}"
    # The billing period's figures, reckoned live as `microgrid-edge report` does (docs/reports.md).
    period = state.get("period")
    assert isinstance(period, dict) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(period.get("start"))), (
        f"expected the state's period block with its first day, got {period!r}")
    assert all(isinstance(period.get(k), (int, float)) for k in ("peak_kw", "peak_without_v2x_kw", "demand_charge_saved")), (
        f"expected the period's peak, peak without V2X and saving as numbers, got {period}")


def test_meter_units_paths_scale_and_roles(site, broker):
    """Three building_load sub-meters that add up: kW as a string under $.ENERGY.Power, W
    under $.channels[2].w fitted backwards (scale -1), and a plain-number kWh register whose
    power is the change over time; a register going backwards is an error. Then, on a
    second daemon, a grid_import meter: the building is the import minus the chargers."""
    meters = [
        {"id": "tasmota", "role": "building_load", "topic": "building/meters/main/tasmota",
         "value": "$.ENERGY.Power", "unit": "kW", "stale_after_seconds": 5},
        {"id": "ct", "role": "building_load", "topic": "building/meters/main/ct",
         "value": "$.channels[2].w", "unit": "W", "scale": -1, "stale_after_seconds": 5},
        {"id": "register", "role": "building_load", "topic": "building/meters/main/register",
         "unit": "kWh", "stale_after_seconds": 5},
    ]
    s = site.start(meters=meters)
    s.wait_online()
    meter = s.meter.client
    energy = 1000.0
    t_end = time.monotonic() + 6
    while time.monotonic() < t_end:     # 0.01 kWh a second is 36 kW
        meter.publish("building/meters/main/tasmota", json.dumps({"ENERGY": {"Power": "12.5"}}), qos=1)
        meter.publish("building/meters/main/ct", json.dumps({"channels": [{"w": 1}, {"w": 2}, {"w": -20000}]}), qos=1)
        meter.publish("building/meters/main/register", json.dumps(round(energy, 3)), qos=1)
        energy += 0.01
        time.sleep(1.0)
    st = s.panel.state()
    got = {m["id"]: m.get("kw") for m in (st or {}).get("meters") or []}
    assert st and st["inputs_fresh"] is True, f"expected all three meters fresh, state {brief(st)}, meters {got}"
    assert got.get("tasmota") is not None and abs(got["tasmota"] - 12.5) <= KW_TOL, (
        f"expected meter tasmota ({{\"ENERGY\": {{\"Power\": \"12.5\"}}}} in kW) at 12.5 kW, got {got}")
    assert got.get("ct") is not None and abs(got["ct"] - 20.0) <= KW_TOL, (
        f"expected meter ct (channels[2].w = -20000 W, scale -1) at +20.0 kW, got {got}")
    assert got.get("register") is not None and 30 <= got["register"] <= 43, (
        f"expected meter register (+0.01 kWh a second) at about 36 kW, got {got}")
    assert abs(st["building_load_kw"] - sum(got.values())) <= 0.1, (
        f"expected building_load_kw to be the sum of the building_load meters {got}, got {st['building_load_kw']}")

    errors = st["mqtt"]["input_errors"]
    after = s.daemon.log_size()
    meter.publish("building/meters/main/register", json.dumps(round(energy - 5, 3)), qos=1).wait_for_publish(5)
    st = s.panel.wait_state(lambda x: x["mqtt"]["input_errors"] >= errors + 1, 3)
    assert st, (f"expected a kWh register going backwards to be counted in mqtt.input_errors (was {errors}), "
                f"state says {(s.panel.state() or {}).get('mqtt')}")
    assert s.daemon.wait_for_log(r"(?m)^\S+ error .*register.*building/meters/main/register", 3, after), (
        f"expected an error line naming the meter and its topic for the backwards register\n{s.daemon.describe()}")
    s.daemon.stop()

    s2 = site.start(meter_w=150_000, meters=[{"id": "main", "role": "grid_import", "topic": METER_TOPIC,
                                              "value": "$.power", "unit": "W", "stale_after_seconds": 3}])
    # (the first daemon's state is still retained: wait for the second one's)
    st = s2.panel.wait_state(lambda x: [m["id"] for m in x["meters"]] == ["main"] and x["inputs_fresh"]
                             and x["mode"] != "safe", 15)
    assert st, f"expected a fresh state from the second daemon, last: {brief(s2.panel.state())}\n{s2.daemon.describe()}"
    chargers_kw = sum((c.get("power_kw") or 0) for c in st["chargers"])
    assert abs(st["building_load_kw"] - (150.0 - chargers_kw)) <= 0.5, (
        f"expected, with a grid_import meter at 150 kW, building_load_kw = 150 - the chargers' "
        f"{chargers_kw:.2f} kW, got {st['building_load_kw']} (state {brief(st)})")
    assert abs(st["grid_import_kw"] - 150.0) <= 0.5, f"expected grid_import_kw 150 from the meter, got {brief(st)}"


def test_stale_meter_gives_the_safe_state_and_an_alarm_until_readings_return(site):
    s = site.start(meter_w=123_456)
    s.wait_online()
    s.wait_fresh(building_kw=123.456)

    last = s.meter.stop_stream()
    budget = STALE_AFTER + 2

    def safe(st):
        a = alarm(st, "meter-main-stale")
        return st["mode"] == "safe" and st["inputs_fresh"] is False and a is not None and a["active"] is True
    state = s.panel.wait_state(safe, max(0.1, last + budget - time.monotonic()))
    took = time.monotonic() - last
    assert state is not None, (
        f"expected, within stale_after + 2 = {budget} s of the last reading, a state with mode `safe`, "
        f"inputs_fresh false and an active alarm meter-main-stale; after {took:.1f} s the last state is "
        f"{brief(s.panel.state())}\n{s.daemon.describe()}")
    a = alarm(state, "meter-main-stale")
    assert a.get("severity") == "critical" and "main" in (a.get("message") or ""), (
        f"expected the alarm meter-main-stale to be critical and name the meter, got {a}")
    assert meter_entry(state) and meter_entry(state)["stale"] is True, (
        f"expected the meter entry to say stale true, got {meter_entry(state)}")

    # While safe: no discharge, in the state and in P/setpoints.
    i_state, i_sp = s.panel.states.count(), s.panel.setpoints.count()
    time.sleep(3)
    states = [st for st in s.panel.states.values(i_state) if st]
    assert states and all(st["mode"] == "safe" for st in states), (
        f"expected the daemon to stay safe (state every second) while no reading comes, got modes "
        f"{[st.get('mode') for st in states]}")
    discharging = [(st.get("time"), setpoints_of(st)) for st in states
                   if any((v or 0) < 0 for v in setpoints_of(st).values())]
    assert not discharging, f"expected no negative charger setpoint (discharge) while safe, got {discharging}"
    sps = [sp for sp in s.panel.setpoints.values(i_sp) if sp and sp.get("mode") == "safe"]
    bad = [sp for sp in sps if any((v or 0) < 0 for v in (sp.get("setpoints_kw") or {}).values())]
    assert not bad, f"expected no negative setpoint on P/setpoints while safe, got {bad}"

    expect_outcome(s.panel.command("start_island_test"), "refused", "start_island_test with stale inputs")

    # Readings return: the alarm clears itself (kept, inactive, until acknowledged).
    s.meter.stream(123_456)

    def recovered(st):
        a = alarm(st, "meter-main-stale")
        return st["inputs_fresh"] is True and st["mode"] != "safe" and a is not None and a["active"] is False
    state = s.panel.wait_state(recovered, 6)
    assert state is not None, (
        f"expected, within 6 s of readings resuming, fresh inputs, a mode other than safe and the alarm "
        f"meter-main-stale still listed (unacknowledged) with active false; last state: "
        f"{brief(s.panel.state())}\n{s.daemon.describe()}")
    expect_outcome(s.panel.command("acknowledge_alarm", alarm="meter-main-stale"), "applied",
                   "acknowledge_alarm of the cleared meter-main-stale")
    state = s.panel.wait_state(lambda x: alarm(x, "meter-main-stale") is None, 3)
    assert state is not None, (f"expected the acknowledged, cleared alarm to leave the list, alarms: "
                               f"{(s.panel.state() or {}).get('alarms')}")
    expect_outcome(s.panel.command("acknowledge_alarm", alarm="no-such-alarm"), "refused",
                   "acknowledge_alarm of an unknown alarm")


# -- commands -----------------------------------------------------------------------------

def test_commands_round_trip(site):
    s = site.start(meter_w=123_456)
    s.wait_online()
    first = s.wait_fresh()
    commands_before = (first.get("mqtt") or {}).get("commands", 0)
    p = s.panel

    r = p.command("set_demand_target", kw=300)
    expect_outcome(r, "applied", "set_demand_target 300")
    assert r.get("command") == "set_demand_target" and r.get("user") == "panel-lobby" and r.get("time"), (
        f"expected the reply to name the command, the user panel-lobby and a time, got {json.dumps(r)}")
    st = p.wait_state(lambda x: x["demand_target_kw"] == 300 and x["demand_target_source"] == "operator", 5)
    assert st, f"expected the state to show demand_target_kw 300 from `operator`, last: {brief(p.state())}"

    r = p.command("set_demand_target", kw=None)
    expect_outcome(r, "applied", "set_demand_target null")
    st = p.wait_state(lambda x: x["demand_target_source"] == "auto", 5)
    assert st, f"expected demand_target_source back to `auto` after kw null, last: {brief(p.state())}"

    r = p.command("pause_v2x")
    expect_outcome(r, "applied", "pause_v2x")
    st = p.wait_state(lambda x: x["v2x_paused"] is True
                      and all((v or 0) >= 0 for v in setpoints_of(x).values()), 5)
    assert st, f"expected v2x_paused true and no negative setpoint after pause_v2x, last: {brief(p.state())}"
    expect_outcome(p.command("pause_v2x"), "applied", "pause_v2x when already paused")
    expect_outcome(p.command("resume_v2x"), "applied", "resume_v2x")
    st = p.wait_state(lambda x: x["v2x_paused"] is False, 5)
    assert st, f"expected v2x_paused false after resume_v2x, last: {brief(p.state())}"

    r = p.command("hold_vehicle", vehicle="BUS-1")
    expect_outcome(r, "applied", "hold_vehicle BUS-1 (configured, plugged in on C1)")
    st = p.wait_state(lambda x: vehicle_of(x, "BUS-1")["held"] is True, 5)
    assert st, f"expected BUS-1 held in the state, its entry: {vehicle_of(p.state() or {}, 'BUS-1')}"
    expect_outcome(p.command("hold_vehicle", vehicle="BUS-99"), "refused", "hold_vehicle of BUS-99 (not configured)")
    expect_outcome(p.command("release_vehicle", vehicle="BUS-2"), "refused", "release_vehicle of BUS-2 (not held)")
    expect_outcome(p.command("release_vehicle", vehicle="BUS-1"), "applied", "release_vehicle of held BUS-1")
    st = p.wait_state(lambda x: vehicle_of(x, "BUS-1")["held"] is False, 5)
    assert st, f"expected BUS-1 no longer held, its entry: {vehicle_of(p.state() or {}, 'BUS-1')}"

    # set_departure: site time is 2023-01-01 01:00; BUS-1 is plugged in until 2023-01-03.
    for fields, why in (({"departure": "2022-12-31T08:00"}, "a departure in the past"),
                        ({"departure": "2023-01-12T08:00"}, "a departure more than 7 days ahead"),
                        ({"need_kwh": 200}, "a need above the 155 kWh battery")):
        expect_outcome(p.command("set_departure", vehicle="BUS-1", **fields), "refused", f"set_departure with {why}")
    expect_outcome(p.command("set_departure", vehicle="BUS-1", departure="2023-01-02T07:30", need_kwh=90),
                   "applied", "set_departure BUS-1 2023-01-02T07:30, need 90 kWh")
    st = p.wait_state(lambda x: vehicle_of(x, "BUS-1")["departure"].startswith("2023-01-02T07:30")
                      and vehicle_of(x, "BUS-1")["need_kwh"] == 90
                      and vehicle_of(x, "BUS-1")["set_by"] == "panel-lobby", 5)
    assert st, (f"expected BUS-1's departure 2023-01-02T07:30, need 90 kWh, set_by panel-lobby in the state, "
                f"its entry: {vehicle_of(p.state() or {}, 'BUS-1')}")

    for kw in (-5, 0):
        r = p.command("set_demand_target", kw=kw)
        expect_outcome(r, "refused", f"set_demand_target {kw}")
    expect_outcome(p.command("set_demand_target", kw=5000), "refused",
                   "set_demand_target 5000 (above the 859 kW import limit)")
    time.sleep(1.2)
    assert p.state()["demand_target_source"] == "auto", (
        f"expected refused targets to change nothing (source auto), state: {brief(p.state())}")

    since = p.replies.count()
    p.send(b'{"request_id": "broken-1", "command": ')
    r = p.replies.wait(lambda x: x.get("outcome") == "invalid", 5, since=since)
    assert r is not None, (
        f"expected an `invalid` reply to malformed JSON within 5 s, replies: {p.replies.values(since)}\n"
        f"{s.daemon.describe()}")
    assert r.get("request_id") is None and r.get("reason"), (
        f"expected request_id null and a reason in the reply to malformed JSON, got {json.dumps(r)}")

    st = p.wait_state(lambda x: x["mqtt"]["commands"] >= commands_before + 16, 3)
    assert st, (f"expected the state's mqtt.commands to count the 16 understood commands "
                f"(was {commands_before}), last: {(p.state() or {}).get('mqtt')}")


def test_the_user_is_the_topic_not_the_payload(site, broker):
    s = site.start(meter_w=123_456)
    s.wait_online()
    s.wait_fresh()
    ha = site.add(Panel(broker, "homeassistant"))
    after = s.daemon.log_size()

    r = s.panel.command("set_departure", vehicle="BUS-3", need_kwh=60, extra={"user": "homeassistant"})
    expect_outcome(r, "applied", "set_departure BUS-3 need 60 kWh from panel-lobby")
    assert r.get("user") == "panel-lobby", (
        f"expected the reply to name panel-lobby (the command topic's user), not the payload's "
        f"`user`: homeassistant; got {json.dumps(r)}")
    st = s.panel.wait_state(lambda x: vehicle_of(x, "BUS-3")["set_by"] == "panel-lobby", 5)
    assert st, (f"expected BUS-3's set_by to be panel-lobby, its entry: "
                f"{vehicle_of(s.panel.state() or {}, 'BUS-3')}")

    entry = None
    deadline = time.monotonic() + 3
    while entry is None and time.monotonic() < deadline:
        entry = next((e for e in s.daemon.entries(after) if "set_departure" in e[1]), None)
        time.sleep(0.05)
    assert entry, f"expected a log line for the set_departure command\n{s.daemon.describe()}"
    level, text = entry
    assert "panel-lobby" in text, f"expected the command's log line to name panel-lobby, got: {text}"
    assert not re.search(r"user[=:\"' ]+homeassistant", text), (
        f"expected the log to attribute the command to panel-lobby, not homeassistant: {text}")
    assert level == "notice", f"expected the command to be logged at notice level, got {level}: {text}"
    time.sleep(0.5)
    leaked = [x for x in ha.replies.values() if x and x.get("request_id") == r["request_id"]]
    assert not leaked, f"expected no reply on homeassistant's reply topic, got {leaked}"


def test_command_users_limits_who_may_command(site, broker):
    s = site.start(meter_w=123_456, mqtt_extra={"command_users": ["homeassistant"]})
    s.wait_online()
    s.wait_fresh()
    expect_outcome(s.panel.command("pause_v2x"), "refused", "pause_v2x from panel-lobby, not in command_users")
    ha = site.add(Panel(broker, "homeassistant"))
    expect_outcome(ha.command("pause_v2x"), "applied", "pause_v2x from homeassistant, in command_users")
    assert s.panel.wait_state(lambda x: x["v2x_paused"] is True, 5), f"expected v2x paused, {brief(s.panel.state())}"


def test_the_broker_acl_holds_end_to_end(site, broker):
    s = site.start(meter_w=50_000)
    s.wait_online()
    s.wait_fresh(building_kw=50.0)
    i = s.panel.states.count()

    lobby = broker.client("panel-lobby")
    other_meter = broker.client("meter-ev")
    codes = []
    for _ in range(5):
        codes.append(lobby.publish_and_wait(METER_TOPIC, json.dumps({"power": 999_999}), qos=1).value)
        codes.append(other_meter.publish_and_wait(METER_TOPIC, json.dumps({"power": 888_888}), qos=1).value)
        # panel-lobby forging Home Assistant's command topic
        codes.append(lobby.publish_and_wait(HA_COMMANDS, json.dumps(
            {"request_id": "forged", "command": "set_demand_target", "kw": 444}), qos=1).value)
        time.sleep(0.3)
    time.sleep(2)
    states = [x for x in s.panel.states.values(i) if x]
    assert len(states) >= 2, f"expected states every second meanwhile, got {len(states)}"
    forged = [(x.get("time"), x.get("building_load_kw"), x.get("demand_target_kw")) for x in states
              if abs(x["building_load_kw"] - 50.0) > KW_TOL or x.get("demand_target_kw") == 444]
    assert not forged, (
        f"expected readings forged by panel-lobby (999.999 kW) and meter-ev (888.888 kW) on "
        f"{METER_TOPIC}, and panel-lobby's command on {HA_COMMANDS}, to change nothing "
        f"(building_load_kw stays 50.0); states that changed: {forged}; PUBACK codes {codes}")
    assert set(codes) == {135}, f"expected every forged publish to be refused (135 Not authorized), got {codes}"

    with pytest.raises(ConnectRefused):
        broker.client(None)


# -- hostile input ------------------------------------------------------------------------

def _fuzz_payloads(rng, n_meter, n_command, n_ha):
    """[(kind, payload bytes, expectation, request_id or None)].
    kind: meter | command | ha. expectation: `error` (meter: must be rejected), `maybe`
    (meter: acceptable per the doc, not counted), `invalid`, `refused`, `invalid|refused`
    (commands), `none` (homeassistant/status)."""
    out = []

    def rbytes(n):
        return bytes(rng.getrandbits(8) for _ in range(n))

    def nested(depth, opener="[", closer="]", inner="1"):
        return opener * depth + inner + closer * depth

    bad_utf8 = [b"\xff\xfe\xfd", b'{"power": "\xc3\x28"}', b"\xed\xa0\x80", b'{"po\xffwer": 5}',
                b"\xc0\xaf", b'\x80{"power": 1}', b'{"power": 1}\xff']
    meter_kinds = [
        lambda: rbytes(rng.randint(1, 300)),
        lambda: rng.choice(bad_utf8),
        lambda: b"",
        lambda: rng.choice([b" ", b"\n", b"\t\t", b"null", b"true", b"false", b"{}", b"[]", b'""']),
        lambda: rng.choice([b"12", b"-3.5", b'"12"', b"[123]", b'{"pow": 5}', b'{"POWER": 5}',
                            b'{"power_w": 5}', b'{"power": {"total": 5}}', b'{"value": {"power": 5}}']),
        lambda: b'{"power": ' + rng.choice([b"true", b"false", b"null", b"[1]", b"[]", b'{"v": 1}',
                                             b'"abc"', b'""', b'"12abc"', b'"nan"', b'"inf"',
                                             b'"-Infinity"', b'"1e999"', b'"NaN"']) + b"}",
        lambda: b'{"power": ' + rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999",
                                             b"nan", b"inf", b"1e99999"]) + b"}",
        lambda: nested(rng.choice([100, 1000, 10000, 50000])).encode(),
        lambda: (b'{"power": ' + nested(rng.choice([100, 1000, 5000])).encode() + b"}"),
        lambda: ('{"a":' * rng.choice([100, 2000, 20000]) + "1" + "}" * 1).encode(),   # unbalanced
        lambda: ('{"power":' * rng.choice([50, 500, 5000]) + "1" + "}" * 5000).encode(),
        lambda: rng.choice([b'{"power": 5', b'{"power" 5}', b'{"power": --5}', b"power=5",
                            b'{"power": }', b'{"power": 5}}}']),
    ]
    # Not JSON, but what a lenient parser reads as a number: not counted as must-reject.
    lenient = [b'{"power": 5,}', b"{'power': 5}", b'{"power": 0x10}', b'{"power": 1.}', b'{"power": +5}']
    for _ in range(n_meter):
        r = rng.random()
        if r < 0.01:      # huge
            p = rng.choice([lambda: rbytes(100_000),
                            lambda: b'{"power": "' + b"7" * 100_000 + b'x"}',
                            lambda: b"[" + b"1," * 50_000 + b"1]",
                            lambda: b'{"pad": "' + b"x" * 100_000 + b'"}'])()
            out.append(("meter", p, "error", None))
        elif r < 0.015:   # negative, or lenient JSON: acceptable per the doc, not counted
            p = rng.choice([json.dumps({"power": rng.choice([-5000, -0.5, -123456])}).encode(),
                            rng.choice(lenient)])
            out.append(("meter", p, "maybe", None))
        else:
            out.append(("meter", rng.choice(meter_kinds)(), "error", None))

    def rid():
        return f"fz-{uuid.uuid4().hex[:12]}"

    def obj(**fields):
        r = rid()
        return json.dumps({"request_id": r, **fields}).encode(), r

    def invalid_obj():
        choice = rng.randrange(12)
        if choice == 0:
            return obj(command=rng.choice(["self_destruct", "", "PAUSE_V2X", "pause-v2x", "set demand target"]))
        if choice == 1:
            return obj(command=rng.choice([None, 5, True, [], {}, ["pause_v2x"], {"pause_v2x": 1}]))
        if choice == 2:
            return obj(command="set_demand_target", kw=rng.choice(["abc", True, False, [1], {}, {"kw": 5}, ""]))
        if choice == 3:
            return obj(command=rng.choice(["hold_vehicle", "release_vehicle"]),
                       vehicle=rng.choice([5, None, True, [], {}, ["BUS-1"]]))
        if choice == 4:
            return obj(command=rng.choice(["hold_vehicle", "release_vehicle", "set_departure"]))   # no vehicle
        if choice == 5:
            return obj(command="acknowledge_alarm", alarm=rng.choice([5, None, [], {}, False]))
        if choice == 6:     # NaN / Infinity literals: not JSON (no request_id can be read)
            lit = rng.choice(["NaN", "Infinity", "-Infinity", "nan", "inf"])
            return f'{{"request_id": "{rid()}", "command": "set_demand_target", "kw": {lit}}}'.encode(), None
        if choice == 7:     # request_id of the wrong type, or too long: no id to echo
            bad = rng.choice([5, 1.5, True, [], {}, "x" * 65, "y" * 1000])
            return json.dumps({"request_id": bad, "command": "pause_v2x"}).encode(), None
        if choice == 8:
            return json.dumps({"command": "self_destruct"}).encode(), None
        if choice == 9:
            return json.dumps({"request_id": None, "command": "self_destruct"}).encode(), None
        if choice == 10:
            return obj(command="set_departure", vehicle="BUS-1", need_kwh=rng.choice(["lots", True, [], {}]))
        return obj(command="set_demand_target", kw=rng.choice([[300], {"value": 300}]))

    command_kinds = [
        lambda: (rbytes(rng.randint(1, 300)), None),
        lambda: (rng.choice(bad_utf8 + [b'{"request_id": "\xff", "command": "pause_v2x"}']), None),
        lambda: (b"", None),
        lambda: (rng.choice([b" ", b"null", b"true", b"5", b'"pause_v2x"', b"[]", b"{}",
                             b'[{"request_id": "a", "command": "pause_v2x"}]']), None),
        lambda: (nested(rng.choice([100, 1000, 10000, 50000])).encode(), None),
        lambda: (('{"request_id": "deep", "command": ' + nested(rng.choice([100, 1000, 5000])) + "}").encode(), None),
        lambda: (('{"a":' * rng.choice([100, 2000, 20000])).encode(), None),
        lambda: (rng.choice([b'{"request_id": "t1", "command": "pause_v2x"', b"{'request_id': 'a'}",
                             b'{"request_id": "t2", "command": }', b"command=pause_v2x"]), None),
        invalid_obj, invalid_obj, invalid_obj, invalid_obj,
    ]
    for _ in range(n_command):
        r = rng.random()
        if r < 0.01:
            p = rng.choice([lambda: rbytes(100_000),
                            lambda: json.dumps({"request_id": "h" * 100_000, "command": "pause_v2x"}).encode(),
                            lambda: b'{"request_id": "huge", "command": "' + b"z" * 100_000 + b'"}'])()
            out.append(("command", p, "invalid", None))
        elif r < 0.08:    # well-formed but not now (or not at all): refused
            p, rid_ = rng.choice([
                lambda: obj(command="set_demand_target", kw=rng.choice([-5, -0.001, 0, -1e308, 1e9, 5000])),
                lambda: obj(command="hold_vehicle", vehicle=f"NOPE-{rng.randrange(1000)}"),
                lambda: obj(command="release_vehicle", vehicle=rng.choice(list(VEHICLES))),
                lambda: obj(command="end_island_test"),
                lambda: obj(command="acknowledge_alarm", alarm=f"no-such-alarm-{rng.randrange(1000)}"),
                lambda: obj(command="set_departure", vehicle="BUS-2", need_kwh=1e9),
            ])()
            out.append(("command", p, "refused", rid_))
        elif r < 0.09:    # 1e999: not JSON to some parsers (invalid), infinite to others (invalid or refused)
            p = f'{{"request_id": "{rid()}", "command": "set_demand_target", "kw": {rng.choice(["1e999", "-1e999"])}}}'.encode()
            out.append(("command", p, "invalid|refused", None))
        else:
            p, rid_ = rng.choice(command_kinds)()
            out.append(("command", p, "invalid", rid_))

    for _ in range(n_ha):
        p = rng.choice([lambda: rbytes(rng.randint(0, 200)), lambda: b"", lambda: b"offline",
                        lambda: rng.choice([b"ONLINE", b"online ", b" online", b"onlin", b"\xffonline"]),
                        lambda: nested(10000).encode(), lambda: rbytes(100_000) if rng.random() < 0.05 else b"x"])()
        if p == b"online":
            p = b"online!"
        out.append(("ha", p, "none", None))
    rng.shuffle(out)
    return out


def _key(topic_, payload):
    return topic_, hashlib.sha1(payload).hexdigest()


def test_ten_thousand_hostile_payloads(site, broker):
    s = site.start(meter_w=60_000)
    s.wait_online()
    s.wait_fresh(building_kw=60.0)
    errors_before = (s.panel.state().get("mqtt") or {}).get("input_errors", 0)
    log_start = s.daemon.log_size()
    meter = site.add(broker.client("meter-main"))
    lobby = s.panel.client
    ha = site.add(broker.client("homeassistant"))
    publishers = {"meter": (meter, METER_TOPIC), "command": (lobby, LOBBY_COMMANDS),
                  "ha": (ha, "homeassistant/status")}
    payloads = _fuzz_payloads(random.Random(20261127), 4500, 4500, 1000)
    assert len(payloads) == 10_000
    fuzz_keys = {_key(publishers[kind][1], p) for kind, p, _, _ in payloads}

    # The witness reads every fuzzed topic as the appliance's user (under another client id)
    # to learn what the broker actually delivered. The meter stream's valid readings go on
    # meanwhile on the meter topic; they are not fuzz payloads and are not counted.
    witness = site.add(broker.client(DAEMON_USER, client_id=f"witness-{uuid.uuid4().hex[:8]}"))
    lock = threading.Lock()
    delivered = Counter()

    def on_message(client, userdata, msg):
        k = _key(msg.topic, bytes(msg.payload))
        if k in fuzz_keys:
            with lock:
                delivered[k] += 1
    witness.on_message = on_message
    for t in (METER_TOPIC, LOBBY_COMMANDS, "homeassistant/status"):
        witness.subscribe_and_wait(t, qos=1)

    replies_before = s.panel.replies.count()
    t0 = time.monotonic()
    sent_commands = sent_total = 0
    replies_keep_up = True
    burst = 200
    for start in range(0, len(payloads), burst):
        infos = []
        for kind, p, _, _ in payloads[start:start + burst]:
            client, t = publishers[kind]
            infos.append(client.publish(t, p, qos=1))
            sent_commands += kind == "command"
        sent_total += len(infos)
        for info in infos:
            info.wait_for_publish(30)
        # Pace: wait until the witness has the burst and the daemon has answered it.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with lock:
                witnessed = sum(delivered.values())
            answered = s.panel.replies.count() - replies_before
            if witnessed >= sent_total and (answered >= sent_commands or not replies_keep_up):
                break
            time.sleep(0.01)
        else:
            replies_keep_up = False      # do not wait 10 s for every burst
    publish_seconds = time.monotonic() - t0

    assert s.daemon.running, f"expected the daemon to survive 10,000 hostile payloads\n{s.daemon.describe()}"

    # What the broker delivered, by expectation (a payload sent n times counts as delivered
    # as often as the witness got it).
    with lock:
        remaining = Counter(delivered)
    meter_errors = command_invalid = command_refused = command_any = 0
    want_by_rid = {}
    for kind, p, exp, rid in payloads:
        k = _key(publishers[kind][1], p)
        if remaining[k] <= 0:
            continue
        remaining[k] -= 1
        if kind == "meter" and exp == "error":
            meter_errors += 1
        elif kind == "command":
            command_any += 1
            command_invalid += exp == "invalid"
            command_refused += exp == "refused"
            if rid is not None:
                want_by_rid[rid] = exp
    n_sent = Counter(kind for kind, *_ in payloads)
    n_meter_errors = sum(1 for kind, _, exp, _ in payloads if kind == "meter" and exp == "error")
    undelivered = len(payloads) - sum(delivered.values())
    assert command_any >= 0.99 * n_sent["command"] and meter_errors >= 0.99 * n_meter_errors, (
        f"test setup: expected the broker to deliver nearly every payload (paced QoS 1); the witness "
        f"got {command_any} of {n_sent['command']} commands and {meter_errors} of {n_meter_errors} "
        f"rejectable meter payloads")

    # Every delivered command got exactly one reply, with the expected outcome.
    deadline = time.monotonic() + 20
    while s.panel.replies.count() - replies_before < command_any and time.monotonic() < deadline:
        time.sleep(0.1)
    replies = [r for r in s.panel.replies.values(replies_before)]
    unparsable = sum(1 for r in replies if r is None)
    assert unparsable == 0, f"expected every reply to be JSON, {unparsable} were not"
    assert len(replies) == command_any, (
        f"expected one reply per delivered command ({command_any}), got {len(replies)}\n{s.daemon.describe()}")
    outcomes = Counter(r.get("outcome") for r in replies)
    assert outcomes["invalid"] >= command_invalid and outcomes["refused"] >= command_refused, (
        f"expected at least {command_invalid} `invalid` and {command_refused} `refused` replies, got {dict(outcomes)}")
    assert outcomes["applied"] == 0, (
        f"expected no hostile payload to be applied, got {outcomes['applied']}: "
        f"{[r for r in replies if r.get('outcome') == 'applied'][:5]}")
    by_rid = {r.get("request_id"): r for r in replies if r.get("request_id") is not None}
    wrong = []
    for rid, exp in want_by_rid.items():
        r = by_rid.get(rid)
        if r is None or r.get("outcome") not in exp.split("|"):
            wrong.append((rid, exp, r))
    assert not wrong, (f"expected each well-identified command's reply to echo its request_id with the "
                       f"expected outcome; {len(wrong)} did not, e.g. {wrong[:5]}")
    not_panel = [r for r in replies if r.get("user") != "panel-lobby"]
    assert not not_panel, f"expected every reply to name panel-lobby, e.g. {not_panel[:3]}"

    # Logged within bounds: per topic, five lines a minute in full and one summary for the
    # rest (docs/mqtt-api.md); every rejection is counted in the state.
    st = s.panel.wait_state(lambda x: x["mqtt"]["input_errors"] >= errors_before + meter_errors, 5)
    assert st, (f"expected the state's mqtt.input_errors to count the {meter_errors} rejected meter payloads "
                f"(was {errors_before}), it says {(s.panel.state() or {}).get('mqtt')}")
    minutes = math.ceil((time.monotonic() - t0) / 60) + 1
    bound = minutes * (5 + 1)
    for t in (METER_TOPIC, LOBBY_COMMANDS, "homeassistant/status"):
        n = s.daemon.count_entries(("error", "critical"), t, log_start)
        assert 1 <= n <= bound, (
            f"expected between 1 and {bound} error lines naming {t} ({minutes} minutes of 5 lines and a "
            f"summary), found {n}\n{s.daemon.describe(2000)}")
    log_bytes = len(s.daemon.log()) - log_start

    # Still working: a valid command and a valid reading.
    r = s.panel.command("set_demand_target", kw=321)
    expect_outcome(r, "applied", "set_demand_target 321 after the hostile payloads")
    assert s.panel.wait_state(lambda x: x["demand_target_kw"] == 321, 5), (
        f"expected demand_target_kw 321 after the command, state: {brief(s.panel.state())}")
    s.meter.value = 77_777
    st = s.panel.wait_state(lambda x: abs(x["building_load_kw"] - 77.777) <= KW_TOL
                            and x["inputs_fresh"] is True, 5)
    assert st, (f"expected a valid reading (77.777 kW) to show in the state after the hostile payloads, "
                f"state: {brief(s.panel.state())}")
    assert s.daemon.running, f"expected the daemon still running at the end\n{s.daemon.describe()}"

    # A clean stop writes the summaries still open: every rejected meter payload is then a
    # line of its own or counted in a summary naming the topic.
    # (Exit status 1 is the simulated plant's verdict on the fuzz's own readings: a
    # building_load of -123 kW is, on paper, a building exporting. It is no crash.)
    rc = s.daemon.stop()
    assert rc == 0 or (rc == 1 and s.daemon.lines("critical", "the simulated site saw safety violations")), (
        f"expected a clean exit after SIGTERM, got {rc}\n{s.daemon.describe()}")
    no_crash(s.daemon)
    entries = [text for lv, text in s.daemon.entries(log_start) if lv in ("error", "critical") and METER_TOPIC in text]
    summarized = [int(m.group(1)) for m in (re.search(r"suppressed=(\d+)", e) for e in entries) if m]
    single = len(entries) - len(summarized)
    assert meter_errors <= single + sum(summarized) <= n_sent["meter"], (
        f"expected the {meter_errors} payloads known to be rejectable (and at most the {n_sent['meter']} sent) "
        f"accounted for in the log: {single} single lines and summaries of {summarized}\n{s.daemon.describe(2000)}")
    print(f"fuzz: {len(payloads)} payloads published in {publish_seconds:.1f} s; delivered: "
          f"{meter_errors} rejectable meter, {command_any} commands ({command_invalid} invalid, "
          f"{command_refused} refused); replies {dict(outcomes)}; {log_bytes} bytes of log while flooded; "
          f"meter lines {single} single + {len(summarized)} summaries; undelivered {undelivered}")


# -- the broker going away ----------------------------------------------------------------

def test_broker_restart_is_ridden_through(site, broker):
    s = site.start(meter_w=123_456)
    s.wait_online()
    s.wait_fresh()
    broker.restart()
    t0 = time.monotonic()
    seen = wait_retained_status(broker, "online", 10)
    took = time.monotonic() - t0
    assert seen == "online", (
        f"expected the daemon to reconnect and re-announce P/status `online` (retained) within 10 s "
        f"of a broker restart (which lost every retained message), after {took:.1f} s got {seen!r}\n"
        f"{s.daemon.describe()}")
    panel = site.add(Panel(broker, "panel-lobby"))
    st = panel.wait_state(lambda x: True, 5)
    assert st, f"expected the state republished after the restart\n{s.daemon.describe()}"
    expect_outcome(panel.command("pause_v2x"), "applied", "pause_v2x after the broker restart")
    s.meter.value = 77_000       # the meter's paho client reconnects by itself
    st = panel.wait_state(lambda x: abs(x["building_load_kw"] - 77.0) <= KW_TOL and x["inputs_fresh"], 10)
    assert st, (f"expected meter readings to reach the daemon again after the restart (it subscribes "
                f"again), state: {brief(panel.state())}\n{s.daemon.describe()}")
    assert s.daemon.running
    no_crash(s.daemon)


def test_broker_down_at_start(tmp_path):
    late = Broker(tmp_path / "late-broker")
    clients = []
    daemon = None
    try:
        config = write_config(tmp_path / "site", late)
        daemon = Daemon(config, tmp_path / "site", start_minute=60)
        time.sleep(4)
        assert daemon.running, f"expected the daemon to keep running with the broker down\n{daemon.describe()}"
        failures = [text for level, text in daemon.entries()
                    if level in ("warning", "error", "critical")
                    and re.search(r"(?i)mqtt|broker|connect", text)]
        assert failures, (f"expected the log to report that the broker cannot be reached\n"
                          f"{daemon.describe()}")
        # ~4 attempts in 4 s (0, 0.5, 1.5, 3.5 s): the first failure is logged, then every tenth.
        assert len(failures) <= 2, (
            f"expected only the first connect failure to be logged in the first 4 s, got "
            f"{len(failures)} lines:\n" + "\n".join(failures[:10]))
        late.start()
        t0 = time.monotonic()
        seen = wait_retained_status(late, "online", 15)
        took = time.monotonic() - t0
        assert seen == "online", (
            f"expected P/status `online` within 15 s of the broker starting, after {took:.1f} s got "
            f"{seen!r}\n{daemon.describe()}")
        meter = Meter(late)
        clients.append(meter)
        meter.stream(123_456)
        panel = Panel(late, "panel-lobby")
        clients.append(panel)
        expect_outcome(panel.command("set_demand_target", kw=300), "applied",
                       "set_demand_target 300 once the broker is up")
        st = panel.wait_state(lambda x: x["demand_target_kw"] == 300
                              and abs(x["building_load_kw"] - 123.456) <= KW_TOL, 10)
        assert st, f"expected target 300 and the meter's 123.456 kW in the state, got {brief(panel.state())}"
        no_crash(daemon)
    finally:
        for c in clients:
            c.close()
        if daemon is not None:
            daemon.kill()
        late.close()


# -- Home Assistant -----------------------------------------------------------------------

ABBREVIATIONS = {
    "stat_t": "state_topic", "val_tpl": "value_template", "cmd_t": "command_topic",
    "cmd_tpl": "command_template", "avty_t": "availability_topic", "avty": "availability",
    "dev": "device", "ids": "identifiers", "uniq_id": "unique_id", "obj_id": "object_id",
    "pl_avail": "payload_available", "pl_not_avail": "payload_not_available",
    "unit_of_meas": "unit_of_measurement", "dev_cla": "device_class", "stat_cla": "state_class",
    "t": "topic", "mf": "manufacturer", "mdl": "model", "sw": "sw_version", "json_attr_t": "json_attributes_topic",
    "pl_on": "payload_on", "pl_off": "payload_off", "pl_prs": "payload_press", "avty_mode": "availability_mode",
}


def expand(config):
    """Home Assistant's abbreviated discovery keys expanded, and `~` substituted."""
    def walk(v, base):
        if isinstance(v, dict):
            return {ABBREVIATIONS.get(k, k): walk(x, base) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x, base) for x in v]
        if isinstance(v, str) and base is not None:
            if v.startswith("~"):
                return base + v[1:]
            if v.endswith("~"):
                return v[:-1] + base
        return v
    return walk({k: v for k, v in config.items() if k != "~"}, config.get("~"))


def availability_topics(cfg):
    topics = []
    if cfg.get("availability_topic"):
        topics.append(cfg["availability_topic"])
    for a in cfg.get("availability") or []:
        if isinstance(a, dict) and a.get("topic"):
            topics.append(a["topic"])
    return topics


def render_command_template(template, value):
    """Render an HA command_template for `value`: jinja2 when installed (with `now()`), else
    substitute `{{ value }}` only. Returns (payload, notes)."""
    notes = []
    others = [e for e in re.findall(r"{{(.*?)}}|{%(.*?)%}", template)
              if (e[0] or e[1]).strip() != "value"]
    if others:
        notes.append(f"the template uses more than {{{{ value }}}}: {others}")
    try:
        import jinja2
        from datetime import datetime, timezone
        env = jinja2.Environment(undefined=jinja2.StrictUndefined)
        env.globals["now"] = lambda: datetime.now(timezone.utc)
        return env.from_string(template).render(value=value), notes
    except ImportError:
        notes.append("jinja2 is not installed: only {{ value }} was substituted")
    except Exception as e:         # something only Home Assistant's template engine knows
        notes.append(f"jinja2 could not render it ({e}): only {{{{ value }}}} was substituted")
    return re.sub(r"{{\s*value\s*}}", str(value), template), notes


SHARED_OPTIONS = ("availability", "availability_mode", "availability_template", "availability_topic",
                  "command_topic", "payload_available", "payload_not_available", "state_topic")


def test_home_assistant_discovery_and_control(site, broker):
    s = site.start(meter_w=123_456)
    s.wait_online()
    s.wait_fresh()
    ha = site.add(broker.client("homeassistant"))
    col = Collector(ha, "homeassistant/#")
    first = col.wait_for(lambda m: m.topic.endswith("/config"), timeout=5)
    assert first is not None, f"expected a retained discovery config under homeassistant/#\n{s.daemon.describe()}"
    n = -1
    while n != len(col.messages):        # until no new config for 0.5 s
        n = len(col.messages)
        time.sleep(0.5)
    devices = {}
    for m in col.messages:
        if m.topic.endswith("/config") and m.payload:
            parsed = parse_json(m.payload)
            assert isinstance(parsed, dict), f"expected a JSON object in {m.topic}, got {m.payload[:200]!r}"
            assert m.retain, f"expected {m.topic} to be retained"
            devices[m.topic] = expand(parsed)
    # Device-based discovery (Home Assistant 2024.11+): one config for the whole device,
    # its entities under `components`, no per-entity configs any more.
    assert len(devices) == 1 and re.fullmatch(r"homeassistant/device/microgrid_edge_[^/]+/config", next(iter(devices))), (
        f"expected one config, on homeassistant/device/microgrid_edge_<site>/config, got {sorted(devices)}")
    device_topic, device = next(iter(devices.items()))
    assert device.get("origin", {}).get("name"), f"expected the device config to name its origin: {device}"
    # Each component as Home Assistant builds it: the device's shared options, then its own.
    configs = {}
    for key, c in (device.get("components") or device.get("cmps") or {}).items():
        c = expand(c)
        merged = {k: device[k] for k in SHARED_OPTIONS if k in device}
        merged.update({k: v for k, v in c.items() if k not in ("platform", "p")})
        merged["device"] = device.get("device")
        configs[f"{device_topic}/{c.get('platform') or c.get('p')}/{key}"] = merged
    listing = "\n".join(f"{t}: {json.dumps(c)[:300]}" for t, c in sorted(configs.items()))
    assert configs, f"expected components in the device config: {device}"
    kind = lambda t: t.split("/")[-2]    # noqa: E731

    sensors = [c for t, c in configs.items() if kind(t) == "sensor"
               and c.get("state_topic") == STATE and "grid_import_kw" in (c.get("value_template") or "")]
    assert sensors, f"expected a sensor with state_topic {STATE} and a value_template using grid_import_kw:\n{listing}"
    numbers = [(t, c) for t, c in configs.items() if kind(t) == "number"
               and c.get("command_topic") == HA_COMMANDS]
    assert numbers, f"expected a number whose command_topic is {HA_COMMANDS}:\n{listing}"
    untrusted = [t for t, c in configs.items() if ("state_topic" in c or "command_topic" in c) and c.get("qos") != 1]
    assert not untrusted, f"expected qos 1 on every entity with a state or command topic (docs/mqtt-api.md): {untrusted}"
    assert not [t for t, c in configs.items() if "object_id" in c], "expected no object_id (deprecated in HA 2025.10)"
    for platform in ("switch", "button"):
        assert any(kind(t) == platform for t in configs), f"expected a {platform} among the configs:\n{listing}"

    no_avail = [t for t, c in configs.items() if STATUS not in availability_topics(c)]
    assert not no_avail, f"expected every config to use {STATUS} for availability, these do not: {no_avail}"
    ids = {json.dumps((c.get("device") or {}).get("identifiers")) for c in configs.values()}
    assert all(json.loads(i) for i in ids) and len(ids) == 1, (
        f"expected every config to name one device with identifiers, got identifiers {ids}")

    number_topic, number = numbers[0]
    template = number.get("command_template")
    assert template, f"expected the number {number_topic} to have a command_template (commands are JSON): {number}"
    payload, notes = render_command_template(template, 250)
    for note in notes:
        print(f"HA number command_template: {note}")
    replies = site.add(Panel(broker, "homeassistant"))
    since = replies.replies.count()
    ha.publish_and_wait(HA_COMMANDS, payload, qos=int(number.get("qos", 0)) or 1)
    st = s.panel.wait_state(lambda x: x["demand_target_kw"] == 250 and x["demand_target_source"] == "operator", 5)
    assert st, (f"expected demand_target_kw 250 after Home Assistant's number published {payload!r} "
                f"(rendered from {template!r}); state: {brief(s.panel.state())}; replies to homeassistant: "
                f"{replies.replies.values(since)}\n{s.daemon.describe()}")
    r = replies.replies.wait(lambda x: True, 3, since=since)
    assert r and r.get("outcome") == "applied" and r.get("user") == "homeassistant", (
        f"expected an `applied` reply for homeassistant, got {r}")

    # The other controls, pressed as Home Assistant would: the V2X switch and the
    # "acknowledge all alarms" button.
    switch = next((c for t, c in configs.items() if kind(t) == "switch"
                   and "v2x" in t and c.get("command_topic") == HA_COMMANDS), None)
    assert switch and switch.get("payload_on"), f"expected a V2X switch publishing to {HA_COMMANDS}:\n{listing}"
    ha.publish_and_wait(HA_COMMANDS, switch["payload_on"], qos=1)
    assert s.panel.wait_state(lambda x: x["v2x_paused"] is True, 5), (
        f"expected v2x_paused true after the switch's payload_on {switch['payload_on']!r}; replies: "
        f"{replies.replies.values(since)}")
    ack = next((c for t, c in configs.items() if kind(t) == "button"
                and "acknowledge_alarm" in (c.get("payload_press") or "")), None)
    assert ack, f"expected an acknowledge-alarms button:\n{listing}"
    # A cleared alarm for the button: the meter goes quiet past its stale_after, then reads
    # again; meter-main-stale is listed until acknowledged.
    s.meter.stop_stream()
    assert s.panel.wait_state(lambda x: (alarm(x, "meter-main-stale") or {}).get("active") is True,
                              STALE_AFTER + 3), f"test setup: expected meter-main-stale, {brief(s.panel.state())}"
    s.meter.stream(123_456)
    assert s.panel.wait_state(lambda x: (alarm(x, "meter-main-stale") or {}).get("active") is False, 6), (
        f"test setup: expected the cleared, unacknowledged alarm meter-main-stale in the state, "
        f"state: {brief(s.panel.state())}")
    i = replies.replies.count()
    ha.publish_and_wait(HA_COMMANDS, ack["payload_press"], qos=1)
    r = replies.replies.wait(lambda x: True, 3, since=i)
    st = s.panel.wait_state(lambda x: not [a for a in x["alarms"] if not a["active"]], 5)
    assert st, (f"expected the button's {ack['payload_press']!r} to acknowledge every alarm, so that cleared "
                f"ones leave the list; reply {r}; alarms now {(s.panel.state() or {}).get('alarms')}")

    # Home Assistant restarting announces itself: the configs come again.
    col.clear()
    ha.publish_and_wait("homeassistant/status", b"online", qos=1)
    again = col.wait_for(lambda m: m.topic == device_topic, timeout=5)
    assert again is not None, f"expected the configs republished after homeassistant/status `online`"


# -- island test --------------------------------------------------------------------------

def islanded(x):
    return (x["mode"] == "islanded" and x["loads_shed"] is True and x["island_test"] == "running"
            and x["transfer_switch"] != "utility" and abs(x["grid_import_kw"]) <= 0.5)


def test_island_test_by_command(site):
    # Minute 60: four buses parked with 78..122 kWh on grid-forming chargers. The
    # controller forms no island until the enter-service delay after its start has run
    # (see the next test), so it is 5 s here.
    s = site.start(meter_w=100_000, control={"enter_service_delay_seconds": 5})
    s.wait_online()
    s.wait_fresh(building_kw=100.0)
    st = s.panel.wait_state(lambda x: x["mode"] == "grid-connected", 10)
    assert st, f"test setup: expected mode grid-connected, last state {brief(s.panel.state())}"
    # A test is refused until the utility has been seen stable for the delay (the next
    # test shows the refusal); 5 s after start it is.
    time.sleep(6)

    r = s.panel.command("start_island_test")
    expect_outcome(r, "applied", "start_island_test with four buses parked on grid-forming chargers")
    st = s.panel.wait_state(islanded, 15)
    assert st, (f"expected, within 15 s of start_island_test (5 s enter-service delay since start), mode "
                f"islanded, loads_shed true, island_test running, the transfer switch off the utility and "
                f"no grid exchange; last state {brief(s.panel.state())}\n{s.daemon.describe()}")
    serving = [c for c in st["chargers"] if (c.get("setpoint_kw") or 0) < 0]
    assert serving, f"expected a grid-forming charger discharging to carry the critical loads, state {brief(st)}"
    expect_outcome(s.panel.command("start_island_test"), "refused", "a second start_island_test")

    r = s.panel.command("end_island_test")
    expect_outcome(r, "applied", "end_island_test")
    t0 = time.monotonic()
    st = s.panel.wait_state(lambda x: x["mode"] == "grid-connected" and x["transfer_switch"] == "utility"
                            and x["island_test"] == "none" and x["loads_shed"] is False, 10)
    assert st, (f"expected mode grid-connected, transfer_switch utility, island_test none and loads restored "
                f"within 10 s of end_island_test (the utility was there all along: at once), last state "
                f"{brief(s.panel.state())}\n{s.daemon.describe()}")
    print(f"island test: back on the utility {time.monotonic() - t0:.1f} s after end_island_test")
    expect_outcome(s.panel.command("end_island_test"), "refused", "end_island_test with no test running")
    no_crash(s.daemon)


def test_island_test_right_after_start_is_carried_out_or_refused(site):
    """With the default 300 s enter-service delay, an island test asked for in the first
    minutes after start must either run within seconds or be refused with a reason; not be
    `applied` ("opening the transfer switch") and then sit in `requested` for minutes."""
    s = site.start(meter_w=100_000)
    s.wait_online()
    s.wait_fresh(building_kw=100.0)
    r = s.panel.command("start_island_test")
    if r.get("outcome") == "refused":
        expect_outcome(r, "refused", "start_island_test during the enter-service delay")
        return
    expect_outcome(r, "applied", "start_island_test")
    st = s.panel.wait_state(islanded, 15)
    assert st, (f"expected the island test, `applied` ({r.get('reason')!r}), to run within 15 s "
                f"(or to be refused with a reason); the state still says {brief(s.panel.state())}\n"
                f"{s.daemon.describe(2500)}")

"""The appliance seen through a real Home Assistant (2025.4.4) on the same broker.

Home Assistant is set up as an installer would: onboarded through its REST API, the MQTT
integration added through its config flow. Before the appliance starts, the broker holds
the per-entity discovery configs an older appliance left retained, so the upgrade to
device-based discovery is part of what is tested. Then everything is checked through
Home Assistant's REST API: the entities and their names, their states against the
appliance's P/state, every control (the state must change), a refusal shown in the
"Last command" sensor, an island test with no target, QoS 1 as the broker saw it, and
availability when the appliance stops.

Home Assistant, the broker and the appliance are started once for the module (Home
Assistant takes a few seconds to start); the tests run in file order and build on each
other's state, the last one stops the appliance.
"""
import json
import re
import time

import pytest

from home_assistant import HomeAssistant, unavailable_reason

_unavailable = unavailable_reason()
if _unavailable:
    _could_run, _reason = _unavailable
    if _could_run:
        pytest.fail(_reason, pytrace=False)
    pytest.skip(_reason, allow_module_level=True)

from mqtt_broker import Broker, Collector  # noqa: E402  (paho-mqtt: only when not skipped)
from mqtt_daemon import DAEMON_USER, PREFIX, STALE_AFTER, Daemon, Meter, Panel, brief, write_config  # noqa: E402

SITE_NAME = "Example primary school (four electric buses)"   # config/example-school.yaml
DEVICE = f"Microgrid Edge: {SITE_NAME}"
NODE = "microgrid_edge_example_primary_school_four_electric_buses"
DEVICE_TOPIC = f"homeassistant/device/{NODE}/config"
LEGACY_FILTER = f"homeassistant/+/{NODE}/+/config"
IMPORT_LIMIT = 859                                            # site.import_limit_kw
BUILDING_KW = 100.0

# What an appliance before device-based discovery left retained: one config per entity,
# with `object_id` (which fixed the entity ids). Three of its entities, and one of a
# charger C9 that the site no longer has.
LEGACY = {
    "sensor/grid_import": {"name": "Grid import", "state_topic": f"{PREFIX}/state",
                           "value_template": "{{ value_json.grid_import_kw }}",
                           "unit_of_measurement": "kW", "device_class": "power"},
    "sensor/charger_c1_power": {"name": "C1 power", "state_topic": f"{PREFIX}/state",
                                "value_template": "{{ value_json.chargers[0].power_kw }}",
                                "unit_of_measurement": "kW", "device_class": "power"},
    "sensor/charger_c9_power": {"name": "C9 power", "state_topic": f"{PREFIX}/state",
                                "value_template": "{{ 0 }}", "unit_of_measurement": "kW"},
    "number/demand_target_set": {
        "name": "Set demand target", "state_topic": f"{PREFIX}/state",
        "value_template": "{{ value_json.demand_target_kw }}",
        "command_topic": f"{PREFIX}/command/homeassistant",
        "command_template": '{"request_id":"ha-target-{{ value }}","command":"set_demand_target","kw":{{ value }}}',
        "min": 1, "max": IMPORT_LIMIT, "step": 1, "mode": "box"},
}

# Every entity of the device: entity id (after the domain and NODE_) -> its own name.
# The migrated ones keep the ids their old object_id gave them; the others get theirs
# from the device's name and their own, as Home Assistant makes them.
EXPECTED = {
    "sensor.mode": "Mode",
    "sensor.grid_import": "Grid import",                    # migrated
    "sensor.building_load": "Building load",
    "sensor.demand_target": "Demand target",
    "sensor.month_peak_demand": "Month peak demand",
    "sensor.alarms": "Alarms",
    "sensor.next_demand_response_event": "Next demand-response event",
    "sensor.peak_without_v2x": "Peak without V2X",
    "sensor.demand_charge_saved_this_period": "Demand charge saved this period",
    "sensor.last_event_delivery": "Last event delivery",
    "sensor.last_command": "Last command",
    "sensor.charger_c1_power": "C1 power",                  # migrated
    "number.demand_target_set": "Set demand target",         # migrated
    "button.demand_target_automatic": "Demand target: automatic",
    "switch.v2x_paused": "V2X paused",
    "button.start_island_test": "Start island test",
    "button.end_island_test": "End island test",
    "button.acknowledge_all_alarms": "Acknowledge all alarms",
}
for _c in ("c1", "c2", "c3", "c4"):
    EXPECTED.update({f"sensor.{_c}_setpoint": f"{_c.upper()} setpoint",
                     f"sensor.{_c}_vehicle": f"{_c.upper()} vehicle",
                     f"sensor.{_c}_vehicle_energy": f"{_c.upper()} vehicle energy"})
    if _c != "c1":
        EXPECTED[f"sensor.{_c}_power"] = f"{_c.upper()} power"


def eid(short):
    domain, rest = short.split(".", 1)
    return f"{domain}.{NODE}_{rest}"


MODE = eid("sensor.mode")
TARGET = eid("sensor.demand_target")
NUMBER = eid("number.demand_target_set")
LAST = eid("sensor.last_command")
SWITCH = eid("switch.v2x_paused")


class Rig:
    pass


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ha")
    r = Rig()
    r.timings = {}
    with Broker(tmp / "broker") as broker:
        r.broker = broker
        r.ha = HomeAssistant(tmp / "home-assistant")
        try:
            r.timings["ha_start_s"] = r.ha.start()
            r.ha.onboard()
            t = time.monotonic()
            entry = r.ha.add_mqtt(broker.host, broker.port, "homeassistant", broker.users["homeassistant"])
            assert entry.get("type") == "create_entry", f"expected the MQTT config flow to create an entry: {entry}"
            r.timings["mqtt_entry_s"] = time.monotonic() - t

            # The older appliance's retained configs, and Home Assistant's entities from them.
            old = broker.client(DAEMON_USER)
            for key, fields in LEGACY.items():
                platform, obj = key.split("/")
                config = dict(fields, unique_id=f"{NODE}_{obj}", object_id=f"{NODE}_{obj}",
                              availability_topic=f"{PREFIX}/status",
                              device={"identifiers": [NODE], "name": DEVICE, "manufacturer": "Microgrid Edge",
                                      "model": "microgrid-edge", "sw_version": "old"})
                old.publish_and_wait(f"homeassistant/{platform}/{NODE}/{obj}/config", json.dumps(config), retain=True)
            for key in LEGACY:
                platform, obj = key.split("/")
                assert r.ha.wait_state(f"{platform}.{NODE}_{obj}", lambda s: True, 15), (
                    f"test setup: expected Home Assistant to make {platform}.{NODE}_{obj} from the legacy "
                    f"config\n{r.ha.describe()}")
            old.close()

            site = tmp / "site"
            r.daemon = Daemon(write_config(site, broker, control={"enter_service_delay_seconds": 5}), site)
            r.started = time.monotonic()
            r.meter = Meter(broker)
            r.meter.stream(BUILDING_KW * 1000)
            r.panel = Panel(broker, "panel-lobby")
            # The replies Home Assistant's commands get, as another client of that user sees them.
            r.replies = Panel(broker, "homeassistant").replies
            assert r.panel.wait_status("online", 15), f"test setup: the appliance did not come online\n" \
                                                      f"{r.daemon.describe()}"
            assert r.panel.wait_state(lambda s: s["inputs_fresh"] and s["mode"] == "grid-connected", 15), (
                f"test setup: expected a grid-connected state with fresh inputs; last {brief(r.panel.state())}")
            assert r.ha.wait_state(MODE, lambda s: s["state"] == "grid-connected", 15), (
                f"test setup: expected {MODE} to read grid-connected\n{r.ha.describe()}")
            yield r
        finally:
            for name in ("meter", "panel"):
                if getattr(r, name, None):
                    getattr(r, name).close()
            if getattr(r, "daemon", None):
                r.daemon.kill()
            r.ha.stop()
            print(f"home assistant timings: {r.timings}")


def device_states(rig):
    return {k: v for k, v in rig.ha.states().items() if k.split(".", 1)[1].startswith(NODE + "_")}


def mqtt_log_problems(rig):
    """Home Assistant's log lines at WARNING or above from its MQTT integration or its
    templates (a template that fails on the state, a value out of an entity's range)."""
    return [line for line in rig.ha.log().splitlines()
            if re.search(r" (WARNING|ERROR|CRITICAL) ", line)
            and re.search(r"components\.mqtt|helpers\.template|Invalid value for", line)]


def press_and_reply(rig, domain, service, entity_id, **data):
    """Call a Home Assistant service on one of the device's entities; the appliance's reply
    to it (on P/reply/homeassistant)."""
    since = rig.replies.count()
    rig.ha.call(domain, service, entity_id=entity_id, **data)
    reply = rig.replies.wait(lambda r: True, 5, since=since)
    assert reply is not None, (f"expected the appliance to answer {domain}.{service} on {entity_id} on "
                               f"{PREFIX}/reply/homeassistant\n{rig.daemon.describe(2000)}")
    return reply


def last_command_is(rig, reply):
    """Home Assistant's "Last command" sensor once it shows `reply`."""
    got = rig.ha.wait_state(LAST, lambda s: s["state"] == reply["outcome"]
                            and s["attributes"].get("request_id") == reply["request_id"], 5)
    assert got, (f"expected {LAST} to show the reply {reply}, it shows {rig.ha.state(LAST)}")
    return got


# -- the device ---------------------------------------------------------------------------

def test_upgrade_moves_old_entities_to_the_device_without_duplicates(rig):
    seen = Collector(rig.broker.client("homeassistant"), LEGACY_FILTER)
    time.sleep(0.5)
    left = [m.topic for m in seen.messages if m.payload]
    assert not left, f"expected the old per-entity configs cleared from the broker, still retained: {left}"
    device = Collector(rig.broker.client("homeassistant"), DEVICE_TOPIC).wait_for(timeout=3)
    assert device is not None and device.retain and json.loads(device.payload)["components"], (
        f"expected one retained device config on {DEVICE_TOPIC}, got {device}")
    states = device_states(rig)
    # The migrated entities kept their entity ids and are driven by the device config.
    for key in ("sensor/grid_import", "sensor/charger_c1_power", "number/demand_target_set"):
        platform, obj = key.split("/")
        s = states.get(f"{platform}.{NODE}_{obj}")
        assert s and s["state"] not in ("unavailable", "unknown") and not s["attributes"].get("restored"), (
            f"expected {platform}.{NODE}_{obj} kept and live after the upgrade, got {s}")
    dupes = sorted(k for k in states if re.search(r"_\d+$", k)
                   or k in (eid("number.set_demand_target"), eid("sensor.c1_power")))
    assert not dupes, f"expected no second entity beside a migrated one, got {dupes}"
    assert eid("sensor.charger_c9_power") not in states, (
        f"expected the entity of the charger the site no longer has to be removed, got "
        f"{states.get(eid('sensor.charger_c9_power'))}")
    conflicts = [line for line in rig.ha.log().splitlines() if "conflicting MQTT discovery" in line]
    assert not conflicts, f"expected Home Assistant to take the migration without conflicts: {conflicts}"


def test_entities_have_the_expected_ids_and_names(rig):
    states = device_states(rig)
    expected = {eid(k): f"{DEVICE} {name}" for k, name in EXPECTED.items()}
    missing = sorted(set(expected) - set(states))
    extra = sorted(set(states) - set(expected))
    assert not missing and not extra, f"expected exactly the device's entities; missing {missing}, extra {extra}"
    wrong = {k: states[k]["attributes"].get("friendly_name") for k, name in expected.items()
             if states[k]["attributes"].get("friendly_name") != name}
    assert not wrong, f"expected friendly names '<device> <entity>', got {wrong}"
    repeated = [n for n in (s["attributes"].get("friendly_name", "") for s in states.values())
                if n.count("Microgrid Edge") != 1]
    assert not repeated, f"expected the device's name once in every friendly name: {repeated}"


def test_states_match_the_appliance_state(rig):
    st = rig.panel.state()

    def same(s):
        want = {
            MODE: st["mode"],
            eid("sensor.building_load"): st["building_load_kw"],
            eid("sensor.c2_vehicle"): st["chargers"][1]["vehicle"]["id"],
            eid("sensor.c3_vehicle_energy"): st["chargers"][2]["vehicle"]["energy_kwh"],
            eid("sensor.alarms"): len(st["alarms"]),
            TARGET: st["demand_target_kw"],
            SWITCH: "on" if st["v2x_paused"] else "off",
            # The billing period's figures (the report's reckoning, live).
            eid("sensor.peak_without_v2x"): st["period"]["peak_without_v2x_kw"],
            eid("sensor.demand_charge_saved_this_period"): st["period"]["demand_charge_saved"],
        }
        return {k: (s[k]["state"], v) for k, v in want.items() if str(s[k]["state"]) != str(v)
                and not (isinstance(v, float) and abs(float(s[k]["state"]) - v) < 0.01)}

    deadline = time.monotonic() + 5
    while (diff := same(rig.ha.states())) and time.monotonic() < deadline:
        time.sleep(0.3)
        st = rig.panel.state()
    assert not diff, f"expected Home Assistant's states to be the appliance's (ha, appliance): {diff}"
    assert abs(float(rig.ha.state(eid("sensor.building_load"))["state"]) - BUILDING_KW) < 0.1


# -- the controls -------------------------------------------------------------------------

def test_number_sets_the_demand_target(rig):
    reply = press_and_reply(rig, "number", "set_value", NUMBER, value=250)
    assert reply["outcome"] == "applied" and reply["command"] == "set_demand_target", reply
    st = rig.panel.wait_state(lambda s: s["demand_target_kw"] == 250 and s["demand_target_source"] == "operator", 5)
    assert st, f"expected the appliance's target 250 kW from an operator, state {brief(rig.panel.state())}"
    got = rig.ha.wait_state(TARGET, lambda s: s["state"] == "250" and s["attributes"].get("source") == "operator", 5)
    assert got, f"expected {TARGET} 250 (source operator), got {rig.ha.state(TARGET)}"
    assert rig.ha.wait_state(NUMBER, lambda s: float(s["state"]) == 250, 5), rig.ha.state(NUMBER)
    last_command_is(rig, reply)


def test_button_gives_the_target_back_to_the_controller(rig):
    assert rig.panel.state()["demand_target_source"] == "operator", "test order: the number test sets it"
    reply = press_and_reply(rig, "button", "press", eid("button.demand_target_automatic"))
    assert reply["outcome"] == "applied", reply
    # The first state after the command may still carry the last step's 250 kW: the
    # controller's own figure follows with its next step.
    st = rig.panel.wait_state(lambda s: s["demand_target_source"] == "auto" and s["demand_target_kw"] != 250, 5)
    assert st, f"expected the target back to `auto` after the button, state {brief(rig.panel.state())}"
    got = rig.ha.wait_state(TARGET, lambda s: s["attributes"].get("source") == "auto"
                            and float(s["state"]) == st["demand_target_kw"], 5)
    assert got, f"expected {TARGET} to show the controller's own target {st['demand_target_kw']}, " \
                f"got {rig.ha.state(TARGET)}"
    last_command_is(rig, reply)


def test_switch_pauses_and_resumes_v2x(rig):
    reply = press_and_reply(rig, "switch", "turn_on", SWITCH)
    assert reply["outcome"] == "applied" and reply["command"] == "pause_v2x", reply
    assert rig.panel.wait_state(lambda s: s["v2x_paused"] is True, 5), brief(rig.panel.state())
    assert rig.ha.wait_state(SWITCH, lambda s: s["state"] == "on", 5), rig.ha.state(SWITCH)
    reply = press_and_reply(rig, "switch", "turn_off", SWITCH)
    assert reply["outcome"] == "applied" and reply["command"] == "resume_v2x", reply
    assert rig.panel.wait_state(lambda s: s["v2x_paused"] is False, 5), brief(rig.panel.state())
    assert rig.ha.wait_state(SWITCH, lambda s: s["state"] == "off", 5), rig.ha.state(SWITCH)


def test_a_refusal_shows_in_home_assistant(rig):
    # No island test runs: ending one is refused.
    assert rig.panel.state()["island_test"] == "none"
    reply = press_and_reply(rig, "button", "press", eid("button.end_island_test"))
    assert reply["outcome"] == "refused", f"expected end_island_test with no test refused, got {reply}"
    got = last_command_is(rig, reply)
    assert got["attributes"].get("reason") == reply["reason"] and reply["reason"], (
        f"expected the refusal's reason {reply['reason']!r} on {LAST}, got {got['attributes']}")
    assert got["attributes"].get("command") == "end_island_test", got


def test_acknowledge_button_clears_the_cleared_alarms(rig):
    # A cleared alarm to acknowledge: the meter goes quiet past its stale_after, then
    # reads again (meter-main-stale latches until someone has seen it).
    rig.meter.stop_stream()
    assert rig.panel.wait_state(lambda s: any(a["id"] == "meter-main-stale" and a["active"] for a in s["alarms"]),
                                STALE_AFTER + 3), f"test setup: expected meter-main-stale, {brief(rig.panel.state())}"
    rig.meter.stream(BUILDING_KW * 1000)
    st = rig.panel.wait_state(lambda s: any(not a["active"] for a in s["alarms"]) and s["inputs_fresh"], 6)
    assert st, f"test setup: expected meter-main-stale listed, cleared and unacknowledged: {rig.panel.state()}"
    press_and_reply(rig, "button", "press", eid("button.acknowledge_all_alarms"))
    st = rig.panel.wait_state(lambda s: all(a["active"] for a in s["alarms"]), 5)
    assert st is not None, f"expected only active alarms left, got {rig.panel.state()['alarms']}"
    n = str(len(st["alarms"]))
    assert rig.ha.wait_state(eid("sensor.alarms"), lambda s: s["state"] == n, 5), rig.ha.state(eid("sensor.alarms"))


def test_island_test_has_no_target_and_home_assistant_takes_it(rig):
    # The enter-service delay (5 s here) must have run before an island test may start.
    time.sleep(max(0.0, rig.started + 6 - time.monotonic()))
    before = len(rig.ha.log())
    reply = press_and_reply(rig, "button", "press", eid("button.start_island_test"))
    assert reply["outcome"] == "applied", f"expected the island test to start, got {reply}"
    st = rig.panel.wait_state(lambda s: s["mode"] == "islanded", 10)
    assert st, f"expected the appliance islanded, state {brief(rig.panel.state())}"
    assert st["demand_target_kw"] is None, f"expected no demand target off the grid, got {st['demand_target_kw']}"
    assert rig.ha.wait_state(MODE, lambda s: s["state"] == "islanded", 5), rig.ha.state(MODE)
    for entity in (TARGET, NUMBER):
        assert rig.ha.wait_state(entity, lambda s: s["state"] == "unknown", 5), (
            f"expected {entity} unknown while islanded, got {rig.ha.state(entity)}")
    time.sleep(3)     # three states at least, each of which HA used to log an error for
    problems = [line for line in rig.ha.log()[before:].splitlines()
                if " ERROR " in line or "Invalid value" in line]
    assert not problems, f"expected no Home Assistant errors while islanded, got {problems}"

    reply = press_and_reply(rig, "button", "press", eid("button.end_island_test"))
    assert reply["outcome"] == "applied", reply
    assert rig.panel.wait_state(lambda s: s["mode"] != "islanded" and s["demand_target_kw"] is not None, 10)
    assert rig.ha.wait_state(NUMBER, lambda s: s["state"] not in ("unknown", "unavailable"), 10), rig.ha.state(NUMBER)


def test_home_assistant_uses_qos_1(rig):
    log = rig.broker.log()
    ids = re.findall(r"New client connected from \S+ as (\S+) \(p\d, c\d, k\d+, u'homeassistant'\)", log)
    # The config flow's trial connection comes first, the test's own clients are test-*.
    ids = [i for i in ids if not i.startswith("test-")]
    assert ids, "expected Home Assistant's connection in the broker's log"
    ha = ids[-1]
    # mosquitto logs a SUBSCRIBE as "Received SUBSCRIBE from <id>", a line
    # "<tab><filter> (QoS n)" for each of its filters, and "Sending SUBACK to <id>". The
    # last subscription to a filter is the one in force.
    subs = {}
    inside = False
    for line in log.splitlines():
        if line.endswith(f"Received SUBSCRIBE from {ha}"):
            inside = True
        elif inside and line.endswith(f"Sending SUBACK to {ha}"):
            inside = False
        elif inside and (m := re.search(r"\t(\S+) \(QoS (\d)\)$", line)):
            subs[m.group(1)] = int(m.group(2))
    for topic in (f"{PREFIX}/state", f"{PREFIX}/reply/homeassistant", f"{PREFIX}/status"):
        assert subs.get(topic) == 1, f"expected Home Assistant to subscribe {topic} at QoS 1, got {subs.get(topic)}"
    commands = re.findall(rf"Received PUBLISH from {re.escape(ha)} \(d\d, q(\d), r\d, m\d+, '{PREFIX}/command/", log)
    assert commands and set(commands) == {"1"}, f"expected Home Assistant's commands at QoS 1, got q{commands}"


def test_no_mqtt_problems_in_home_assistant_log(rig):
    assert not mqtt_log_problems(rig), "\n".join(mqtt_log_problems(rig))


def test_entities_go_unavailable_when_the_appliance_stops(rig):
    assert rig.daemon.stop() == 0, rig.daemon.describe()
    deadline = time.monotonic() + 10
    while True:
        states = device_states(rig)
        live = sorted(k for k, s in states.items() if s["state"] != "unavailable")
        if not live or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert states and not live, f"expected every entity unavailable once the appliance stopped, still live: {live}"

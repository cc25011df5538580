"""Staff's instructions across a clean restart of the daemon (issue 20, item 2).

With a `state:` section they survive: a demand target, a held vehicle and a V2X pause set
from a panel are in force again after SIGTERM and a restart, on the simulated plant as at
the field site. Without one they cannot, so they are dropped loudly: the reply says so,
an alarm stands while any is in force, and the stop logs each one it drops.

Each test runs its own broker (conftest `broker`) and the daemon on config/example-school.yaml
plus an `mqtt:` section (mqtt_daemon.write_config), at speed 1 from minute 60.
"""
from mqtt_daemon import VEHICLES, Daemon, Meter, Panel, alarm, brief, write_config

HELD = VEHICLES[0]


def start(broker, directory, config_path):
    daemon = Daemon(config_path, directory, speed=1, start_minute=60)
    meter = Meter(broker)
    meter.stream(120_000)
    panel = Panel(broker, "panel-lobby")
    assert panel.wait_status("online", 15), f"expected the daemon online within 15 s\n{daemon.describe()}"
    # A state of this daemon (no command handled yet: the retained one may be the last
    # daemon's) with fresh inputs.
    assert panel.wait_state(lambda s: s["mqtt"]["commands"] == 0 and s["inputs_fresh"] is True
                            and s["mode"] != "safe", 10), (
        f"test setup: expected fresh inputs, last state {brief(panel.state())}\n{daemon.describe()}")
    return daemon, meter, panel


def instruct(panel):
    """Target 300 kW, hold one bus, pause V2X; returns the replies."""
    replies = [panel.command("set_demand_target", kw=300), panel.command("hold_vehicle", vehicle=HELD),
               panel.command("pause_v2x")]
    assert all(r.get("outcome") == "applied" for r in replies), f"expected all three applied, got {replies}"
    return replies


def in_force(state):
    return (state["demand_target_kw"] == 300 and state["demand_target_source"] == "operator"
            and HELD in state["held_vehicles"] and state["v2x_paused"] is True)


def stop(daemon, meter, panel):
    rc = daemon.stop()
    meter.close()
    panel.close()
    assert rc == 0, f"expected exit status 0 after SIGTERM, got {rc}\n{daemon.describe()}"


def test_instructions_survive_a_restart_with_a_state_store(broker, tmp_path):
    config = write_config(tmp_path, broker)
    with open(config, "a", encoding="utf-8") as f:
        f.write(f"state:\n  path: {tmp_path / 'state.db'}\n")
    daemon, meter, panel = start(broker, tmp_path, config)
    try:
        replies = instruct(panel)
        assert not any("memory only" in (r.get("reason") or "") for r in replies), (
            f"with a state store, no reply should warn of memory only: {replies}")
        assert panel.wait_state(in_force, 5), f"expected the three instructions in the state, {brief(panel.state())}"
    finally:
        stop(daemon, meter, panel)

    daemon, meter, panel = start(broker, tmp_path, config)
    try:
        st = panel.wait_state(lambda s: s["mqtt"]["commands"] == 0 and in_force(s), 5)
        assert st, (
            f"expected, after a clean restart, the demand target 300 (operator), {HELD} held and V2X paused; "
            f"the state says target {panel.state().get('demand_target_kw')} "
            f"({panel.state().get('demand_target_source')}), held {panel.state().get('held_vehicles')}, "
            f"paused {panel.state().get('v2x_paused')}\n{daemon.describe()}")
        assert alarm(st, "instructions-not-kept") is None, f"no memory-only alarm with a store: {st['alarms']}"
        restored = daemon.lines(containing="staff's instructions restored")
        assert restored and HELD in restored[0], f"expected a log line naming what was restored, got {restored}"
    finally:
        stop(daemon, meter, panel)


def test_instructions_without_a_state_store_are_dropped_loudly(broker, tmp_path):
    config = write_config(tmp_path, broker)
    daemon, meter, panel = start(broker, tmp_path, config)
    try:
        warned = daemon.lines(containing="no state: section")
        assert warned, f"expected a start-up warning that instructions are kept in memory only\n{daemon.describe()}"
        replies = instruct(panel)
        assert all("kept in memory only" in (r.get("reason") or "") for r in replies), (
            f"expected every reply to say the instruction is kept in memory only, got {replies}")
        st = panel.wait_state(lambda s: in_force(s) and alarm(s, "instructions-not-kept") is not None, 5)
        assert st, f"expected the alarm instructions-not-kept while instructions are in force, {brief(panel.state())}"
        a = alarm(st, "instructions-not-kept")
        assert a["active"] and a["severity"] == "warning" and HELD in a["message"] and "V2X paused" in a["message"], (
            f"expected an active warning naming what a restart would drop, got {a}")
        after = daemon.log_size()
    finally:
        stop(daemon, meter, panel)
    dropped = daemon.lines(containing="staff's instruction dropped", after=after)
    assert len(dropped) == 3 and any(HELD in line for line in dropped) and any("300" in line for line in dropped), (
        f"expected the stop to log each of the three instructions it drops, got {dropped}\n{daemon.describe()}")

    daemon, meter, panel = start(broker, tmp_path, config)
    try:
        st = panel.state()
        assert st["demand_target_source"] == "auto" and not st["held_vehicles"] and st["v2x_paused"] is False, (
            f"test premise: without a store nothing comes back, got {brief(st)}")
    finally:
        stop(daemon, meter, panel)

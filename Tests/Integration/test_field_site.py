"""The shipped configuration as the field site: no plant, no scenario; the building is what
the broker's meters and the OCPP endpoint show. Real mosquitto, the real binary, paho as
the meter gateway and the panel, SIGKILL for the power cut."""
import time
from datetime import datetime, timezone

from field_site import SHIPPED_METER_TOPIC, SHIPPED_PREFIX, SHIPPED_SITE, FieldSite
from mge_helpers import CRASH_MARKERS, describe, run
from mqtt_daemon import Daemon, Meter, Panel


def _iso(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def test_shipped_configuration_checks_as_a_field_site(tmp_path):
    site = FieldSite(tmp_path)
    proc = run(["check-config", SHIPPED_SITE], env=site.env())
    assert proc.returncode == 0, describe(proc)
    out = proc.stdout
    assert "field site: the building the appliance is wired to; time zone America/Chicago" in out, out
    assert "grid import from grid meter main" in out, out
    assert "meter main: grid_import on building/meters/main/power" in out, out
    # The broker and every topic panels and Home Assistant use (issue 20, item 6).
    assert f"mqtt: broker 127.0.0.1:{site.broker_port} (MQTT 5, no TLS, keepalive 30 s), as microgrid-edge" in out, out
    assert "panels: state on microgrid-edge/example-school/state" in out, out
    assert ("commands: microgrid-edge/example-school/command/<user> from any user the broker lets write there"
            in out), out
    assert ("home assistant: discovery under homeassistant/, its controls command as homeassistant on "
            "microgrid-edge/example-school/command/homeassistant") in out, out
    assert "stale after 10.0 s" in out, out
    assert "ocpp: C1, C2, C3, C4" in out, out
    assert "plant:" not in out and "scenario" not in out, out


def test_a_missing_charger_password_file_is_a_warning_and_refuses_only_that_charger(tmp_path):
    """Passwords in files are read at each connection: check-config names the file that is
    not there yet and passes; the running appliance refuses that charger (401) until the
    file exists, then lets it in, with no restart."""
    import base64
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    site = FieldSite(tmp_path)
    env = site.env()
    missing = tmp_path / "later" / "C3.password"
    env["MGE_OCPP__CHARGERS__2__PASSWORD_FILE"] = str(missing)
    proc = run(["check-config", SHIPPED_SITE], env=env)
    assert proc.returncode == 0, describe(proc)
    assert f"WARNING: ocpp.chargers[2].password_file: charger C3: its password file {missing}" in proc.stdout, \
        describe(proc)
    daemon = Daemon(SHIPPED_SITE, tmp_path / "run", start_minute=None, env=env)
    try:
        assert daemon.wait_for_log("OCPP endpoint listening", timeout=20), daemon.describe()

        def handshake(password):
            auth = base64.b64encode(f"C3:{password}".encode()).decode()
            try:
                with connect(f"{site.ocpp_url}/C3", subprotocols=["ocpp2.1"], open_timeout=5,
                             additional_headers={"Authorization": f"Basic {auth}"}):
                    return 101
            except InvalidStatus as e:
                return e.response.status_code

        assert handshake("c3-later-password-2026") == 401, daemon.describe()
        assert "C3.password cannot be read; refused until it can be read" in daemon.log(), daemon.describe()
        missing.parent.mkdir()
        missing.write_text("c3-later-password-2026\n")
        assert handshake("c3-later-password-2026") == 101, daemon.describe()
        assert handshake("wrong-password") == 401
    finally:
        assert daemon.stop() == 0, daemon.describe()


def test_a_missing_broker_password_file_is_waited_for_then_used(tmp_path):
    """Installed before its secrets: the appliance comes up without its MQTT password file,
    names the file it waits for, stays offline and safe, and joins the broker once the file
    is in place, with no restart."""
    from mqtt_broker import Broker
    broker = Broker(tmp_path / "broker")
    broker.start()
    site = FieldSite(tmp_path / "site", broker=broker)
    env = site.env()
    later = tmp_path / "later" / "mqtt-password"
    env["MGE_MQTT__PASSWORD_FILE"] = str(later)
    daemon = Daemon(SHIPPED_SITE, tmp_path / "run", start_minute=None, env=env)
    panel = Panel(broker, prefix=SHIPPED_PREFIX)
    try:
        waiting = daemon.wait_for_log(r"not tried: the password \S*mqtt-password cannot be read; retrying", 20)
        assert waiting, daemon.describe()
        assert daemon.running and panel.status_value() != "online", daemon.describe()
        later.parent.mkdir()
        later.write_text(broker.users["microgrid-edge"] + "\n")
        assert panel.wait_status("online", timeout=40), daemon.describe()
    finally:
        panel.close()
        rc = daemon.stop()
        broker.close()
    assert rc == 0, daemon.describe()


def test_with_broker_meters_and_chargers_absent_it_stays_up_safe_and_keeps_retrying(tmp_path):
    from mqtt_broker import Broker
    broker = Broker(tmp_path / "broker")      # made, not started: nothing listens on its port
    site = FieldSite(tmp_path / "site", broker=broker)
    daemon = Daemon(SHIPPED_SITE, tmp_path, start_minute=None,
                    env=site.env(MGE_LOGGING__STATUS_EVERY_SECONDS="2"))
    try:
        time.sleep(8)
        assert daemon.running, daemon.describe()
        log = daemon.log()
        assert "plant=none: the field site" in log, daemon.describe()
        # The meter is alarmed once its first reading was due (stale_after_seconds: 10).
        assert daemon.wait_for_log("alarm meter-main-stale raised", 10), daemon.describe()
        assert daemon.lines(containing=f"connect to 127.0.0.1:{site.broker_port} failed"), daemon.describe()
        statuses = daemon.lines(level="info", containing="] status")
        assert len(statuses) >= 3, daemon.describe()
        assert all("mode=safe" in line for line in statuses), "\n".join(statuses)
        # Nothing discharges without a meter: every status line's setpoints are empty.
        assert all("setpoints_kw= " in line for line in statuses), "\n".join(statuses)
        assert "OCPP endpoint listening" in log, daemon.describe()
        # No GPIO chip on this machine: the wired signals are retried, the site stays safe.
        assert "alarm gpio-unavailable raised" in log, daemon.describe()
        # The broker comes up: the appliance, still retrying, joins it and says online.
        broker.start()
        panel = Panel(broker, prefix=SHIPPED_PREFIX)
        try:
            assert panel.wait_status("online", timeout=40), daemon.describe()
            state = panel.wait_state(lambda s: s.get("mode") == "safe", timeout=10)
            assert state and state["inputs_fresh"] is False, state
            assert any(a["id"] == "meter-main-stale" and a["active"] for a in state["alarms"]), state["alarms"]
        finally:
            panel.close()
    finally:
        rc = daemon.stop()
        broker.close()
    assert rc == 0, daemon.describe()
    assert not any(m in daemon.log() + daemon.stderr() for m in CRASH_MARKERS), daemon.describe()


def test_sigkill_mid_period_forgets_neither_peak_nor_interval_nor_history(tmp_path, broker):
    """A power cut mid-interval: the period's peak, the interval in progress (up to the
    last few seconds saved) and the load history are the same after the restart."""
    site = FieldSite(tmp_path / "site", broker=broker)
    env = site.env(MGE_DEMAND_INTERVAL_MINUTES="1", MGE_LOGGING__STATUS_EVERY_SECONDS="10")
    meter = Meter(broker, topic=SHIPPED_METER_TOPIC)
    meter.stream(250_000, hz=2)          # 250 kW at the service
    daemon = Daemon(SHIPPED_SITE, tmp_path / "run1", start_minute=None, env=env)
    panel = Panel(broker, prefix=SHIPPED_PREFIX)
    try:
        # Two closed 1-minute intervals at 250 kW, then 100 kW into the third.
        state = panel.wait_state(lambda s: s.get("history", {}).get("load_intervals", 0) >= 2, timeout=150)
        assert state, f"no two closed intervals within 150 s\n{daemon.describe()}"
        assert abs(state["demand"]["period_peak_kw"] - 250) < 2, state["demand"]
        meter.value = 100_000
        before = panel.wait_state(
            lambda s: s["history"]["load_intervals"] >= 2 and 15 <= s["demand"]["interval_measured_s"] <= 45
            and abs(s["grid_import_kw"] - 100) < 1, timeout=70)
        assert before, f"no state 15-45 s into an interval at 100 kW\n{daemon.describe()}"
        # Wait past the next periodic save (every 5 s) of that reading, then cut the power.
        time.sleep(0.3)
        killed_at = time.time()
        daemon.kill()
        meter.value = 100_000
        daemon2 = Daemon(SHIPPED_SITE, tmp_path / "run2", start_minute=None, env=env)
        try:
            after = panel.wait_state(lambda s: _iso(s["time"]) > killed_at, timeout=20)
            assert after, f"no state from the restarted appliance\n{daemon2.describe()}"
            assert after["demand"]["period_peak_kw"] == before["demand"]["period_peak_kw"], (before, after)
            assert after["history"]["load_intervals"] >= before["history"]["load_intervals"], (before, after)
            assert "load and session history restored" in daemon2.log(), daemon2.describe()
            if after["demand"]["interval_measured_s"] >= before["demand"]["interval_measured_s"] - 6:
                # Same interval: its energy so far is kept (at most one save, 5 s, lost).
                lost_kwh = before["demand"]["interval_import_kwh"] - after["demand"]["interval_import_kwh"]
                assert lost_kwh < 100 * 6 / 3600 + 0.01, (before["demand"], after["demand"])
            else:
                # The restart crossed into the next interval; it was closed with its
                # measurement, so the history grew.
                assert after["history"]["load_intervals"] > before["history"]["load_intervals"], (before, after)
        finally:
            assert daemon2.stop() == 0, daemon2.describe()
    finally:
        meter.close()
        panel.close()
        if daemon.running:
            daemon.stop()


def test_staff_instructions_and_announced_events_survive_a_restart(tmp_path, broker):
    site = FieldSite(tmp_path / "site", broker=broker)
    env = site.env()
    meter = Meter(broker, topic=SHIPPED_METER_TOPIC)
    meter.stream(180_000, hz=2)
    daemon = Daemon(SHIPPED_SITE, tmp_path / "run1", start_minute=None, env=env)
    panel = Panel(broker, prefix=SHIPPED_PREFIX)
    try:
        assert panel.wait_state(lambda s: "mode" in s, timeout=20), daemon.describe()
        assert panel.command("set_demand_target", kw=300)["outcome"] == "applied"
        assert panel.command("hold_vehicle", vehicle="BUS-1")["outcome"] == "applied"
        assert panel.command("pause_v2x")["outcome"] == "applied"
        reply = panel.command("announce_event", event="utility-dr-1", start="2099-01-01T14:00",
                              end="2099-01-01T18:00")
        assert reply["outcome"] == "refused" and "14 days" in reply["reason"], reply
        state = panel.state()
        site_now = datetime.strptime(state["site_time"], "%Y-%m-%dT%H:%M:%S")
        start = site_now.replace(microsecond=0).timestamp() + 3 * 3600
        fmt = lambda t: datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M")
        reply = panel.command("announce_event", event="utility-dr-1", start=fmt(start), end=fmt(start + 3600))
        assert reply["outcome"] == "applied", reply
        reply = panel.command("announce_event", event="utility-dr-2", start=fmt(start), end=fmt(start + 1800))
        assert reply["outcome"] == "applied", reply
        assert panel.command("cancel_event", event="utility-dr-2")["outcome"] == "applied"
        assert daemon.stop() == 0, daemon.describe()
        stopped_at = time.time()
        daemon = Daemon(SHIPPED_SITE, tmp_path / "run2", start_minute=None, env=env)
        after = panel.wait_state(lambda s: _iso(s["time"]) > stopped_at, timeout=20)
        assert after, daemon.describe()
        assert after["demand_target_kw"] == 300 and after["demand_target_source"] == "operator", after
        assert after["held_vehicles"] == ["BUS-1"], after
        assert after["v2x_paused"] is True, after
        assert [e["id"] for e in after["announced_events"]] == ["utility-dr-1"], after["announced_events"]
        assert after["announced_events"][0]["announced_by"] == "panel-lobby"
        assert "staff's instructions restored" in daemon.log(), daemon.describe()
    finally:
        meter.close()
        panel.close()
        if daemon.running:
            daemon.stop()

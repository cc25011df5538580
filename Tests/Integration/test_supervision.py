"""The appliance under systemd's supervision and Prometheus's eye (issue 18), tested from
outside against the release binary:

- the notify protocol (sd_notify(3)) on a NOTIFY_SOCKET this test listens on: READY=1 after
  the first control step, STATUS= with the mode, the alarms and the upload backlog,
  WATCHDOG=1 at least twice per WATCHDOG_USEC while an upload hangs, STOPPING=1 on SIGTERM;
  and no pings once the control loop is made to hang (the test hook
  MICROGRID_EDGE_TEST_HANG_LOOP_AFTER_STEPS), so that systemd would restart it;
- /metrics, scraped and parsed with prometheus_client's own parser: every metric of
  docs/metrics.md, with values that match the panel's MQTT state of the same moment;
- a metrics port that is taken: an alarm, and the appliance runs on.

The daemon is config/example-school.yaml's simulated plant with the building's load from an
MQTT meter on a real mosquitto, a record store, and a central program that accepts
connections and never answers (a hung upload).
"""
import contextlib
import json
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mqtt_daemon import CHARGERS, Daemon, Meter, Panel, write_config

WATCHDOG_S = 3.0


class NotifyListener:
    """A NOTIFY_SOCKET: every datagram with the monotonic time it came."""

    def __init__(self, directory):
        self.path = str(Path(directory) / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def lines(self):
        """(time, line) for every line of every datagram."""
        return [(t, line) for t, text in list(self.messages) for line in text.split("\n")]

    def times(self, line):
        return [t for t, l in self.lines() if l == line]

    def wait(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [(t, l) for t, l in self.lines() if predicate(l)]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"expected {what} on NOTIFY_SOCKET within {timeout} s; got {self.messages}")

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class SilentCentral:
    """A central program that accepts every connection and never answers: an upload that hangs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(c)

    def close(self):
        self.sock.close()
        for c in self.connections:
            c.close()


def site_config(tmp, broker, central_port, metrics_port=0, meter=True):
    config = write_config(tmp, broker, meters=None if meter else [])
    (tmp / "token").write_text("test-token\n")
    extra = f"""
store:
  path: {json.dumps(str(tmp / "data" / "store.db"))}
  telemetry_every_seconds: 1
central:
  base_url: "http://127.0.0.1:{central_port}"
  site_id: test-site
  token_file: {json.dumps(str(tmp / "token"))}
  timeout_seconds: 30
  gather_seconds: 1
metrics:
  address: 127.0.0.1
  port: {metrics_port}
"""
    config.write_text(config.read_text() + extra)
    return config


def metrics_port(daemon, timeout=20):
    m = daemon.wait_for_log(r"port=(\d+) \[\w+\] metrics endpoint ready", timeout)
    assert m, f"expected 'metrics endpoint ready' in the log; {daemon.describe()}"
    return int(m.group(1))


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers["Content-Type"]
        text = r.read().decode()
    samples = {}
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = family
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families, samples


def value(samples, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"expected {name}{labels} in /metrics; have {sorted(k for k in samples if k[0] == name)}"
    return samples[key]


@pytest.fixture
def site(tmp_path, broker):
    central = SilentCentral()
    notify = NotifyListener(tmp_path)
    made = []

    def start(hang_after=None, port=0, speed=1, meter=True):
        env = {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6))}
        if hang_after is not None:
            env["MICROGRID_EDGE_TEST_HANG_LOOP_AFTER_STEPS"] = str(hang_after)
        d = Daemon(site_config(tmp_path, broker, central.port, port, meter), tmp_path, speed=speed, env=env)
        made.append(d)
        return d

    meter = Meter(broker)
    meter.stream(180_000)
    yield start, notify, central
    meter.stop_stream()
    for d in made:
        if d.running:
            d.kill()
        d.close()
    notify.close()
    central.close()


def test_ready_status_watchdog_and_stopping_while_the_upload_hangs(site):
    start, notify, central = site
    d = start()
    t_ready, _ = notify.wait(lambda l: l == "READY=1", 20, "READY=1")
    assert "control loop started" in d.log(), d.describe()
    _, status = notify.wait(lambda l: l.startswith("STATUS=mode ") and "upload backlog" in l, 15,
                            "STATUS= with the mode, the alarms and the upload backlog")
    assert " alarm" in status, status
    # Ten seconds with the upload hanging on a program that never answers.
    time.sleep(10)
    assert central.connections, "expected the uploader to have connected to the silent program"
    assert d.running, d.describe()
    pings = [t for t in notify.times("WATCHDOG=1") if t >= t_ready]
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert len(pings) >= 2 * 10 / WATCHDOG_S, f"expected at least 2 pings per {WATCHDOG_S} s; got {len(pings)}"
    assert max(gaps) <= WATCHDOG_S / 2, f"expected a ping at least every {WATCHDOG_S / 2} s; gaps {gaps}"
    # The backlog grows while the upload hangs, and STATUS says so.
    statuses = [l for _, l in notify.lines() if l.startswith("STATUS=mode")]
    backlogs = [int(l.split("upload backlog ")[1].split()[0]) for l in statuses if "upload backlog" in l]
    assert backlogs and backlogs[-1] > 0, statuses
    t_term = time.monotonic()
    d.proc.send_signal(15)
    d._wait(20)
    assert d.proc.returncode == 0, d.describe()
    stopping = notify.times("STOPPING=1")
    assert len(stopping) == 1, notify.messages[-5:]
    # At once, before the panel and the loop have taken their time to stop.
    assert stopping[0] - t_term < 1.0, (stopping[0] - t_term, notify.messages[-5:])
    assert not [t for t in notify.times("WATCHDOG=1") if t > stopping[0]], "no ping after STOPPING=1"


def test_a_hung_control_loop_stops_the_pings_while_the_rest_runs(site):
    start, notify, _ = site
    d = start(hang_after=5)
    notify.wait(lambda l: l == "READY=1", 20, "READY=1")
    port = metrics_port(d)
    assert d.wait_for_log(r"test hook: the control loop hangs now", 20), d.describe()
    hung_at = time.monotonic()
    time.sleep(3 * WATCHDOG_S)
    late = [t for t in notify.times("WATCHDOG=1") if t > hung_at + 0.5]
    assert not late, f"expected no ping after the loop hung; got {len(late)}"
    assert notify.times("WATCHDOG=1"), "expected pings before the hang"
    # Only the loop is stuck: the process answers a scrape, its step count frozen at 5.
    assert d.running, d.describe()
    _, samples = scrape(port)
    assert value(samples, "microgrid_edge_control_steps_total") == 5
    # systemd would now send SIGABRT, then SIGKILL; a hung loop does not heed SIGTERM.
    d.kill()


def test_metrics_match_the_panel_state(site, broker):
    start, _, _ = site
    d = start(speed=0.1, meter=False)
    port = metrics_port(d)
    panel = Panel(broker)
    assert panel.wait_state(lambda s: s.get("grid_import_kw") is not None and s["chargers"][0]["vehicle"], 30), \
        d.describe()
    families, _ = scrape(port)
    expected = {
        "microgrid_edge_grid_import_watts": "gauge",
        "microgrid_edge_demand_interval_mean_import_watts": "gauge",
        "microgrid_edge_billing_period_peak_watts": "gauge",
        "microgrid_edge_vehicle_energy_joules": "gauge",
        "microgrid_edge_charger_setpoint_watts": "gauge",
        "microgrid_edge_mode": "gauge",
        "microgrid_edge_alarms_active": "gauge",
        "microgrid_edge_upload_backlog_records": "gauge",
        "microgrid_edge_upload_oldest_record_age_seconds": "gauge",
        "microgrid_edge_control_step_duration_seconds": "histogram",
        "microgrid_edge_mqtt_connected": "gauge",
        "microgrid_edge_mqtt_input_errors": "counter",
        "microgrid_edge_control_steps": "counter",
    }
    for name, kind in expected.items():
        assert name in families, f"expected {name} in /metrics; have {sorted(families)}"
        assert families[name].type == kind, (name, families[name].type)
        assert name == "microgrid_edge_control_step_duration_seconds" or families[name].documentation, name

    # At a tenth of real time the loop steps every 10 s: a state and the scrape right after
    # it are of the same step.
    # The interval in progress must have a measured part (it starts empty on the hour).
    assert panel.wait_state(lambda s: s["demand"]["interval_measured_s"] > 0, 30), d.describe()
    since = len(panel.states.values())
    s = panel.states.wait(lambda s: True, 15, since=since)
    assert s is not None, "expected a fresh state"
    _, samples = scrape(port)
    assert value(samples, "microgrid_edge_grid_import_watts") == pytest.approx(s["grid_import_kw"] * 1000, abs=1)
    demand = s["demand"]
    mean_w = demand["interval_import_kwh"] / (demand["interval_measured_s"] / 3600) * 1000
    # The panel rounds the interval's kWh to 0.001: that much, over the measured seconds.
    rounding_w = 0.0005 / (demand["interval_measured_s"] / 3600) * 1000
    assert value(samples, "microgrid_edge_demand_interval_mean_import_watts") == pytest.approx(
        mean_w, abs=rounding_w + 1)
    assert value(samples, "microgrid_edge_billing_period_peak_watts") == pytest.approx(
        demand["period_peak_kw"] * 1000, abs=1)
    for c in s["chargers"]:
        assert value(samples, "microgrid_edge_charger_setpoint_watts", charger=c["id"]) == pytest.approx(
            c["setpoint_kw"] * 1000, abs=1)
        v = c["vehicle"]
        assert v, c
        assert value(samples, "microgrid_edge_vehicle_energy_joules", charger=c["id"], vehicle=v["id"]) == \
            pytest.approx(v["energy_kwh"] * 3.6e6, abs=3.6e3)
    assert {c["id"] for c in s["chargers"]} == set(CHARGERS)
    for mode in ("grid-connected", "islanded", "safe", "demand-response"):
        assert value(samples, "microgrid_edge_mode", mode=mode) == (1 if s["mode"] == mode else 0)
    for severity in ("warning", "critical"):
        active = [a for a in s["alarms"] if a["active"] and a["severity"] == severity]
        assert value(samples, "microgrid_edge_alarms_active", severity=severity) == len(active)
    for a in s["alarms"]:
        assert value(samples, "microgrid_edge_alarm", alarm=a["id"], severity=a["severity"]) == (
            1 if a["active"] else 0)
    store = s["records"]["store"]
    assert value(samples, "microgrid_edge_upload_backlog_records") == store["backlog"] + store["pending_in_memory"]
    assert store["backlog"] > 0, "the upload hangs, so records wait"
    assert value(samples, "microgrid_edge_upload_oldest_record_age_seconds") > 0
    assert value(samples, "microgrid_edge_mqtt_connected") == 1
    count = value(samples, "microgrid_edge_control_step_duration_seconds_count")
    assert count >= 2, "a step every 10 s, for more than 20 s"
    assert value(samples, "microgrid_edge_control_step_duration_seconds_bucket", le="+Inf") == count
    assert value(samples, "microgrid_edge_control_steps_total") >= count - 1
    # Not found is not a crash.
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
    assert e.value.code == 404
    assert d.running, d.describe()


def test_a_taken_metrics_port_is_an_alarm_and_the_appliance_runs_on(site, broker):
    start, notify, _ = site
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        d = start(port=taken.getsockname()[1])
        notify.wait(lambda l: l == "READY=1", 20, "READY=1")
        assert d.wait_for_log(r"the metrics endpoint cannot listen on 127\.0\.0\.1:\d+", 20), d.describe()
        panel = Panel(broker)
        state = panel.wait_state(lambda s: any(a["id"] == "metrics-endpoint" for a in s["alarms"]), 10)
        alarm = next(a for a in state["alarms"] if a["id"] == "metrics-endpoint")
        assert alarm["active"] and alarm["severity"] == "warning", alarm
        time.sleep(2)
        assert d.running, d.describe()
        assert len(notify.times("WATCHDOG=1")) >= 2
    finally:
        taken.close()


def test_stuck_chargers_do_not_starve_the_watchdog(tmp_path):
    """Two charge points that connect and then stop: C1 boots and then reads nothing more
    (its TCP window fills with the appliance's calls), C2 never says a word. The loop keeps
    pinging, and SIGTERM still stops the appliance cleanly."""
    import base64
    from websockets.sync.client import connect
    from ocpp_site import PASSWORDS, free_port
    from ocpp_site import site_config as ocpp_config

    port = free_port()
    config = ocpp_config(tmp_path, port)
    notify = NotifyListener(tmp_path)
    d = Daemon(config, tmp_path, start_minute=None,
               env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6))})
    sockets = contextlib.ExitStack()
    connected = []
    try:
        notify.wait(lambda l: l == "READY=1", 20, "READY=1")
        assert d.wait_for_log(r"OCPP endpoint ready", 20), d.describe()
        for cid in ("C1", "C2"):
            auth = base64.b64encode(f"{cid}:{PASSWORDS[cid]}".encode()).decode()
            connected.append(sockets.enter_context(connect(
                f"ws://127.0.0.1:{port}/ocpp/{cid}", subprotocols=["ocpp2.1"],
                additional_headers={"Authorization": f"Basic {auth}"}, open_timeout=10)))
        boot = [2, "boot-1", "BootNotification",
                {"reason": "PowerUp", "chargingStation": {"model": "Stuck", "vendorName": "Test"}}]
        connected[0].send(json.dumps(boot))
        assert json.loads(connected[0].recv(timeout=10))[0] == 3, "the appliance answers the boot"
        start = time.monotonic()
        time.sleep(15)
        assert d.running, d.describe()
        pings = [t for t in notify.times("WATCHDOG=1") if t >= start]
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert len(pings) >= 2 * 15 / WATCHDOG_S and max(gaps) <= WATCHDOG_S / 2, (len(pings), gaps)
        d.proc.send_signal(15)
        d._wait(20)
        assert d.proc.returncode == 0, d.describe()
        assert notify.times("STOPPING=1"), notify.messages[-3:]
    finally:
        # Dropped, not closed politely: a stuck charger does not answer a close either.
        for ws in connected:
            ws.socket.close()
        sockets.close()
        if d.running:
            d.kill()
        d.close()
        notify.close()


def test_a_taken_ocpp_port_is_retried_and_the_appliance_runs_on(tmp_path):
    """The OCPP endpoint's port is taken at start: the endpoint says so and listens again
    (backing off), the control loop keeps pinging, and once the port is free the chargers'
    endpoint is there."""
    from ocpp_site import site_config as ocpp_config
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    notify = NotifyListener(tmp_path)
    d = Daemon(ocpp_config(tmp_path, port), tmp_path, start_minute=None,
               env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6))})
    try:
        assert d.wait_for_log(r"OCPP endpoint failed; listening again in \d+ s", 20), d.describe()
        notify.wait(lambda l: l == "READY=1", 20, "READY=1")
        taken.close()
        assert d.wait_for_log(r"OCPP endpoint ready", 20), d.describe()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        time.sleep(2 * WATCHDOG_S)
        assert d.running, d.describe()
        assert len(notify.times("WATCHDOG=1")) >= 4, notify.messages
        d.proc.send_signal(15)
        d._wait(20)
        assert d.proc.returncode == 0, d.describe()
    finally:
        taken.close()
        if d.running:
            d.kill()
        d.close()
        notify.close()

"""One run of the shipped production configuration against the emulated building, for the
end-to-end test and the demo: a real mosquitto with the shipped ACL, the central program's
reference receiver, the building emulator (meters on MQTT, the four bus chargers as OCPP
charge points, the wired signals over the emulated GPIO backend), the appliance with
nothing but addresses, ports and paths changed, plus 1-minute demand intervals and a
10 s enter-service delay so that a few minutes show what a day would.

No pytest at import.

    run = FieldRun(tmp)            # the synthetic school day below
    run.start(); run.wait_until(...); run.announce_event(...); run.stop()
    run.samples(), run.intervals(), run.states ...
"""
import json
import math
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from central_receiver import CentralReceiver
from field_site import SHIPPED_METER_TOPIC, SHIPPED_PREFIX, SHIPPED_SITE, FieldSite, emulated_school
from mge_helpers import REPO
from mqtt_broker import Broker
from mqtt_daemon import Daemon, Panel

EMULATOR = REPO / "Tests" / "Integration" / "building_emulator.py"
SITE_ID, TOKEN = "example-school", "field-demo-token"

# The building: a school afternoon whose load swings between about 170 and 300 kW, a new
# level each minute. Four buses plugged in, needing more than they hold but leaving in the
# evening: the appliance may charge them in the valleys and lend their energy at the peaks.
LOAD = [235 + 65 * math.sin(m * 1.7) + 20 * math.sin(m * 0.45) for m in range(60)]
SESSIONS = [
    ("BUS-1", "C1", 0, 600, 110.0, 90.0),
    ("BUS-2", "C2", 0, 600, 100.0, 90.0),
    ("BUS-3", "C3", 0, 600, 120.0, 90.0),
    ("BUS-4", "C4", 0, 600, 60.0, 90.0),
]
# C4's vehicle sends no NotifyEVChargingNeeds: the appliance manages it from its timetable.
CHARGER_NEEDS = {"C1": "needs", "C2": "needs", "C3": "needs", "C4": "noneeds"}
OUTAGE_MINUTES = (5.5, 6.25)         # scenario minutes = real minutes (speed 1)
ENTER_SERVICE_DELAY = 10


class FieldRun:
    def __init__(self, directory, outage=OUTAGE_MINUTES, enter_service_delay=ENTER_SERVICE_DELAY):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.outage = outage
        self.enter_service_delay = enter_service_delay
        self.broker = Broker(self.dir / "broker")
        self.receiver = CentralReceiver(self.dir / "central", tokens={SITE_ID: TOKEN})
        self.site = FieldSite(self.dir / "site", broker=self.broker)
        self.scenario = emulated_school(self.dir / "scenario", LOAD, SESSIONS, outages=[outage] if outage else [])
        self.gpio_socket = self.dir / "gpio.sock"
        self.truth = self.dir / "truth.jsonl"
        self.emulator = self.daemon = self.panel = None
        self.started_at = None

    def env(self, **extra):
        """The daemon's environment; `extra` adds or replaces overrides (MGE_…)."""
        token = self.dir / "central-token"
        token.write_text(TOKEN + "\n")
        return self.site.env(
            MGE_GPIO__BACKEND="emulated", MGE_GPIO__EMULATOR_SOCKET=str(self.gpio_socket),
            MGE_CENTRAL__BASE_URL=self.receiver.url, MGE_CENTRAL__TOKEN_FILE=str(token),
            MGE_DEMAND_INTERVAL_MINUTES="1",
            MGE_CONTROL__ENTER_SERVICE_DELAY_SECONDS=str(self.enter_service_delay),
            MGE_CONTROL__ENTER_SERVICE_RAMP_SECONDS="0",
            MGE_LOGGING__STATUS_EVERY_SECONDS="15", **extra)

    def start(self):
        self.start_building()
        self.start_daemon()

    def start_building(self, emulator=True):
        """The broker, the central receiver, the panel and (unless emulator=False: no
        meters, no chargers, no GPIO) the building emulator; not the daemon."""
        self.broker.start()
        self.receiver.start()
        if not emulator:
            self.started_at = time.time()
            self.panel = Panel(self.broker, prefix=SHIPPED_PREFIX)
            return
        chargers = []
        for cid, needs in CHARGER_NEEDS.items():
            chargers += ["--charger", f"{cid}:2.1:{self.site.charger_passwords[cid]}:{needs}"]
        self.emulator_log = open(self.dir / "emulator.out", "w")
        self.emulator = subprocess.Popen(
            [sys.executable, str(EMULATOR), str(self.scenario), "--mqtt-port", str(self.broker.port),
             "--mqtt-user", "meter-main", "--mqtt-password", self.broker.users["meter-main"],
             "--grid-topic", SHIPPED_METER_TOPIC, "--ocpp-url", self.site.ocpp_url, *chargers,
             "--gpio-socket", str(self.gpio_socket), "--log", str(self.truth),
             "--peer-log", str(self.dir / "ocpp.jsonl"), "--demand-interval-seconds", "60"],
            stdout=self.emulator_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(REPO))
        deadline = time.monotonic() + 10
        while not self.gpio_socket.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.started_at = time.time()
        self.panel = Panel(self.broker, prefix=SHIPPED_PREFIX)

    def start_daemon(self, directory=None, env=None):
        """The appliance on the shipped configuration (env: self.env() unless given); a
        second call after stopping the first one is a restart on the same state files."""
        self.daemon = Daemon(SHIPPED_SITE, directory or self.dir / "daemon", start_minute=None,
                             env=env if env is not None else self.env())
        return self.daemon

    def scrape_metrics(self):
        """{(name, labels): value} of one scrape of the daemon's /metrics, parsed by
        prometheus_client's own parser."""
        import re
        import urllib.request
        from prometheus_client.parser import text_string_to_metric_families
        m = re.search(r"port=(\d+) \[\w+\] metrics endpoint ready", self.daemon.log())
        assert m, f"expected 'metrics endpoint ready' in the daemon's log; {self.describe()}"
        with urllib.request.urlopen(f"http://127.0.0.1:{m.group(1)}/metrics", timeout=5) as r:
            text = r.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def elapsed(self):
        return time.time() - self.started_at

    def sleep_until(self, seconds):
        time.sleep(max(0.0, self.started_at + seconds - time.time()))

    def site_time(self):
        state = self.panel.state() or {}
        return datetime.strptime(state["site_time"], "%Y-%m-%dT%H:%M:%S")

    def announce_event(self, event_id, minutes_ahead=1, minutes=1):
        """An event from the next whole minute + `minutes_ahead` - 1, for `minutes` (site
        time); returns (reply, start, end) as wall-clock seconds."""
        now = self.site_time()
        start = now.replace(second=0, microsecond=0).timestamp() + 60 * minutes_ahead
        fmt = lambda t: datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M")
        reply = self.panel.command("announce_event", event=event_id, start=fmt(start), end=fmt(start + 60 * minutes))
        # The panel's site time may be a few seconds old; the event starts on a whole minute
        # of the wall clock (zone offsets are whole minutes), so round to it.
        offset = time.time() - now.timestamp()
        wall_start = round((start + offset) / 60) * 60
        return reply, wall_start, wall_start + 60 * minutes

    def stop(self):
        codes = {}
        if self.daemon:
            codes["daemon"] = self.daemon.stop()
        if self.emulator and self.emulator.poll() is None:
            self.emulator.terminate()
            try:
                codes["emulator"] = self.emulator.wait(20)
            except subprocess.TimeoutExpired:
                self.emulator.kill()
                codes["emulator"] = None
        if self.panel:
            self.panel.close()
        self.receiver.stop()
        self.broker.close()
        return codes

    # what happened
    def truth_records(self, kind):
        if not self.truth.exists():
            return []
        out = []
        for line in self.truth.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("kind") == kind:
                out.append(r)
        return out

    def states(self):
        return self.panel.states.values() if self.panel else []

    def describe(self):
        out = self.daemon.describe(6000) if self.daemon else ""
        emulator_out = self.dir / "emulator.out"
        if emulator_out.exists():
            out += "\n--- emulator ---\n" + emulator_out.read_text()[-3000:]
        return out

"""The `run` daemon on MQTT, driven from outside: a site configuration pointing at a test
broker, the daemon as a subprocess, and the clients that talk to it (a panel, a meter).

No pytest at import: bench/mqtt_bench.py uses this module too.

    with Broker(tmp / "broker") as broker:
        config = write_config(tmp, broker)                 # example-school + mqtt + a meter
        daemon = Daemon(config, tmp, start_minute=60)
        meter = Meter(broker)
        meter.stream(123456)                                # {"power": 123456} at 2 Hz
        panel = Panel(broker, "panel-lobby")
        reply = panel.command("set_demand_target", kw=300)
        state = panel.wait_state(lambda s: s["demand_target_kw"] == 300, timeout=5)
        daemon.stop()

The configuration is config/example-school.yaml, edited as text (PyYAML is not among the
test dependencies): `plant.scenario` becomes an absolute path, chosen keys of a section
are set in place (the configuration loader refuses a key written twice), and the `mqtt:`
and `meters:` sections of docs/mqtt-api.md are appended.
"""
import itertools
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt

from mge_helpers import BINARY, CLEAN_ENV, CONFIGS, CRASH_MARKERS, REPO, SCENARIOS
from mqtt_broker import Collector

EXAMPLE = CONFIGS / "example-school.yaml"
SCENARIO = SCENARIOS / "school-buses-chicago"
PREFIX = "microgrid-edge/test-site"
METER_TOPIC = "building/meters/main/power"
STALE_AFTER = 3
DAEMON_USER = "microgrid-edge"
VEHICLES = ("BUS-1", "BUS-2", "BUS-3", "BUS-4")
CHARGERS = ("C1", "C2", "C3", "C4")
# Minute 60 of the school-bus scenario (Sunday 2023-01-01 01:00): all four buses parked on
# their grid-forming chargers since minute 0 with 78..122 kWh (reserve 20 kWh), staying
# until minute ~3240; no demand-response event or outage for weeks.
PARKED_MINUTE = 60

LEVELS = ("trace", "debug", "info", "notice", "warning", "error", "critical")
# swift-log's StreamLogHandler: "<time> <level> <label>: <metadata> [<source>] <message>"
LOG_LINE = re.compile(r"^(\S+) (trace|debug|info|notice|warning|error|critical) ")

_ids = itertools.count(1)


def topic(suffix):
    return f"{PREFIX}/{suffix}"


# -- configuration ------------------------------------------------------------------------

def _set_in_section(text, section, key, value):
    """Set `key: value` (value already rendered as YAML) in the top-level `section`,
    replacing the key's line if the section has it, else inserting it as the section's
    first key. Appends the section if the file has none."""
    lines = text.split("\n")
    try:
        start = next(i for i, l in enumerate(lines) if re.match(rf"^{re.escape(section)}:\s*(#.*)?$", l))
    except StopIteration:
        return text.rstrip("\n") + f"\n\n{section}:\n  {key}: {value}\n"
    end = next((i for i in range(start + 1, len(lines))
                if lines[i] and not lines[i].startswith((" ", "#"))), len(lines))
    for i in range(start + 1, end):
        if re.match(rf"^  {re.escape(key)}:", lines[i]):
            lines[i] = f"  {key}: {value}"
            return "\n".join(lines)
    lines.insert(start + 1, f"  {key}: {value}")
    return "\n".join(lines)


def _yaml(value):
    """A scalar, list or mapping as flow-style YAML (JSON is YAML)."""
    return json.dumps(value)


def config_text(broker_port, password_file, *, keepalive=None, control=None, logging=None,
                state_every=1, client_id=None, discovery=True, meters=None, mqtt_extra=None,
                host="127.0.0.1"):
    """The site configuration as text. `control`/`logging`: {key: value} set in those
    sections. `meters`: a list of meter mappings (default: the one building_load meter
    `main` on building/meters/main/power, `$.power` in W, stale after 3 s)."""
    text = EXAMPLE.read_text()
    text, n = re.subn(r"(?m)^(\s*scenario:\s*).*$", lambda m: m.group(1) + _yaml(str(SCENARIO)), text)
    if n != 1:
        raise RuntimeError(f"expected one `scenario:` line in {EXAMPLE}, found {n}")
    for key, value in (control or {}).items():
        text = _set_in_section(text, "control", key, _yaml(value))
    for key, value in (logging or {}).items():
        text = _set_in_section(text, "logging", key, _yaml(value))
    if meters is None:
        meters = [{"id": "main", "role": "building_load", "topic": METER_TOPIC, "value": "$.power",
                   "unit": "W", "stale_after_seconds": STALE_AFTER}]
    mqtt_section = {
        "host": host,
        "port": broker_port,
        "protocol": "5",
        "client_id": client_id or f"mge-daemon-{uuid.uuid4().hex[:8]}",
        "username": DAEMON_USER,
        "password_file": str(password_file),
        "topic_prefix": PREFIX,
        "state_every_seconds": state_every,
    }
    if keepalive is not None:
        mqtt_section["keepalive_seconds"] = keepalive
    mqtt_section.update(mqtt_extra or {})
    out = [text.rstrip("\n"), "", "# Added by Tests/Integration/mqtt_daemon.py", "mqtt:"]
    for key, value in mqtt_section.items():
        out.append(f"  {key}: {_yaml(value)}")
    out += ["  discovery:", f"    enabled: {_yaml(bool(discovery))}",
            "    prefix: homeassistant", "    command_user: homeassistant"]
    if meters:
        out.append("meters:")
        for meter in meters:
            first = True
            for key, value in meter.items():
                out.append(f"  {'- ' if first else '  '}{key}: {_yaml(value)}")
                first = False
    return "\n".join(out) + "\n"


def write_config(directory, broker, name="site.yaml", password=None, **kwargs):
    """Write the password file and the site configuration into `directory`; returns the
    configuration's path. `broker` is an mqtt_broker.Broker (its port is used, started or
    not). Keyword arguments go to config_text()."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    password_file = directory / "mqtt-password"
    password_file.write_text((password if password is not None else broker.users[DAEMON_USER]) + "\n")
    path = directory / name
    path.write_text(config_text(broker.port, password_file, **kwargs))
    return path


# -- the daemon ---------------------------------------------------------------------------

def _default_signals():
    # A runner started in the background may have SIGINT ignored; the child would inherit it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class Daemon:
    """`microgrid-edge run --config CONFIG --speed SPEED [--start-minute M]` as a subprocess,
    stdout (the log) and stderr in files under `directory`."""

    def __init__(self, config, directory, speed=1, start_minute=PARKED_MINUTE, args=(), env=None,
                 binary=None):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        n = next(_ids)
        self.log_path = directory / f"daemon-{n}.log"
        self.err_path = directory / f"daemon-{n}.err"
        self.args = [str(binary or BINARY), "run", "--config", str(config), "--speed", str(speed)]
        if start_minute is not None:
            self.args += ["--start-minute", str(start_minute)]
        self.args += [str(a) for a in args]
        self._out = open(self.log_path, "wb")
        self._err = open(self.err_path, "wb")
        full_env = dict(CLEAN_ENV)
        full_env.update(env or {})
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.args, stdout=self._out, stderr=self._err, cwd=str(REPO),
                                     env=full_env, stdin=subprocess.DEVNULL,
                                     preexec_fn=_default_signals)

    @property
    def pid(self):
        return self.proc.pid

    @property
    def running(self):
        return self.proc.poll() is None

    def log(self):
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stderr(self):
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def lines(self, level=None, containing=None, after=0):
        """Log lines (from character offset `after`) whose level is `level` (a name or a
        tuple of names) and that contain `containing`."""
        levels = (level,) if isinstance(level, str) else level
        out = []
        for line in self.log()[after:].splitlines():
            if levels is not None:
                m = LOG_LINE.match(line)
                if not m or m.group(2) not in levels:
                    continue
            if containing is not None and containing not in line:
                continue
            out.append(line)
        return out

    def entries(self, after=0):
        """Log entries from character offset `after`: a line that starts with a time and a
        level, joined with any following lines that do not (a message or metadata value
        holding a newline), as (level, text) pairs."""
        out = []
        for line in self.log()[after:].splitlines():
            m = LOG_LINE.match(line)
            if m:
                out.append([m.group(2), line])
            elif out:
                out[-1][1] += "\n" + line
        return [tuple(e) for e in out]

    def count_entries(self, level, containing, after=0):
        levels = (level,) if isinstance(level, str) else level
        return sum(1 for lv, text in self.entries(after) if lv in levels and containing in text)

    def describe(self, chars=4000):
        rc = self.proc.returncode
        return (f"command: {' '.join(self.args)}\n"
                f"daemon: {'running, pid ' + str(self.pid) if rc is None else 'exited with status ' + str(rc)}\n"
                f"--- daemon log (stdout, last {chars} chars) ---\n{self.log()[-chars:]}\n"
                f"--- daemon stderr (last 2000 chars) ---\n{self.stderr()[-2000:]}")

    def wait_for_log(self, pattern, timeout, after=0):
        """The first match of the regex `pattern` in the log (from character offset
        `after`) within `timeout` seconds, or None (also if the daemon exits first)."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log(), after)
            if m:
                return m
            if self.proc.poll() is not None:
                return rx.search(self.log(), after)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def log_size(self):
        """The current length of the log in characters, for `after=`."""
        return len(self.log())

    def crash_markers(self):
        text = self.log() + self.stderr()
        return [m for m in CRASH_MARKERS if m in text]

    def _wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=10.0):
        """SIGTERM and wait; returns the exit status, or None if it is still running after
        `timeout` s (it is then killed, so nothing lingers)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            rc = self._wait(timeout)
            if rc is None:
                self.kill()
                return None
        self._close_files()
        return self.proc.returncode

    def kill(self):
        """SIGKILL, as in a crash or power cut. Returns the exit status (-9)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close_files()
        return self.proc.returncode

    def _close_files(self):
        for f in (self._out, self._err):
            try:
                f.close()
            except Exception:
                pass

    def close(self):
        self.kill()

    # /proc figures, for the bench
    def cpu_seconds(self):
        """utime + stime of the process so far, in seconds (Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def rss_kib(self):
        """VmRSS in KiB, or None once the process is gone."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            return None
        return None


# -- clients ------------------------------------------------------------------------------

def parse_json(payload):
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None


class _Stream:
    """Messages on one topic filter, parsed, with arrival times."""

    def __init__(self):
        self.cond = threading.Condition()
        self.items = []      # (monotonic time, parsed payload or None, raw bytes, retained)

    def add(self, payload, retain):
        with self.cond:
            self.items.append((time.monotonic(), parse_json(payload), bytes(payload), retain))
            self.cond.notify_all()

    def latest(self):
        with self.cond:
            return self.items[-1][1] if self.items else None

    def count(self):
        with self.cond:
            return len(self.items)

    def values(self, since=0):
        with self.cond:
            return [v for _, v, _, _ in self.items[since:]]

    def wait(self, predicate, timeout, since=None):
        """The first parsed message, from index `since` (default: the latest one received
        before the call, then every later one), for which predicate is true; or None."""
        deadline = time.monotonic() + timeout
        with self.cond:
            i = max(len(self.items) - 1, 0) if since is None else since
            while True:
                while i < len(self.items):
                    value = self.items[i][1]
                    i += 1
                    try:
                        if value is not None and predicate(value):
                            return value
                    except (KeyError, TypeError, IndexError, AttributeError):
                        pass
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)


class Panel:
    """A panel logged in as `user`: it reads P/state, P/status, P/setpoints and its own
    P/reply/<user>, and sends commands on P/command/<user>."""

    def __init__(self, broker, user="panel-lobby", prefix=PREFIX, client_id=None):
        self.user = user
        self.prefix = prefix
        self.client = broker.client(user, client_id=client_id)
        self.command_topic = f"{prefix}/command/{user}"
        self.reply_topic = f"{prefix}/reply/{user}"
        self.states = _Stream()
        self.replies = _Stream()
        self.setpoints = _Stream()
        self.status = _Stream()
        for filt, stream in ((self.reply_topic, self.replies), (f"{prefix}/state", self.states),
                             (f"{prefix}/setpoints", self.setpoints), (f"{prefix}/status", self.status)):
            self.client.message_callback_add(filt, self._handler(stream))
            self.client.subscribe_and_wait(filt, qos=1)

    @staticmethod
    def _handler(stream):
        def on_message(client, userdata, msg):
            stream.add(msg.payload, msg.retain)
        return on_message

    def close(self):
        self.client.close()

    # commands
    def new_request_id(self):
        return f"{self.user}-{next(_ids)}-{uuid.uuid4().hex[:8]}"

    def send(self, payload, qos=1):
        """Publish raw bytes (or a str, or a dict as JSON) on this panel's command topic."""
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        return self.client.publish_and_wait(self.command_topic, payload, qos=qos)

    def command(self, command, timeout=5.0, request_id=None, extra=None, **fields):
        """Send {"request_id": <fresh>, "command": command, **fields} and return the parsed
        reply with that request_id; raises AssertionError naming what was sent if none
        arrives within `timeout` s."""
        rid = request_id or self.new_request_id()
        body = {"request_id": rid, "command": command, **fields, **(extra or {})}
        since = self.replies.count()
        self.send(body)
        reply = self.replies.wait(lambda r: r.get("request_id") == rid, timeout, since=since)
        assert reply is not None, (
            f"expected a reply on {self.reply_topic} to {json.dumps(body)} within {timeout} s, "
            f"got none; replies seen meanwhile: {self.replies.values(since)}")
        return reply

    # state
    def state(self):
        return self.states.latest()

    def wait_state(self, predicate, timeout=5.0):
        """The latest state or a later one for which predicate(state) is true, or None."""
        return self.states.wait(predicate, timeout)

    def status_value(self):
        """The last P/status payload received, as text, or None."""
        with self.status.cond:
            return self.status.items[-1][2].decode(errors="replace") if self.status.items else None

    def wait_status(self, value, timeout=5.0):
        """True once the last P/status received is `value` (within `timeout` s)."""
        deadline = time.monotonic() + timeout
        with self.status.cond:
            while True:
                if self.status.items and self.status.items[-1][2] == value.encode():
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.status.cond.wait(left)


class Meter:
    """A meter gateway logged in as `user` (meter-main) publishing {"power": W} on `topic`."""

    def __init__(self, broker, user="meter-main", topic=METER_TOPIC, client_id=None):
        self.topic = topic
        self.client = broker.client(user, client_id=client_id)
        self._thread = None
        self._stop = threading.Event()
        self.value = None
        self.published = 0
        self.last_publish = None      # monotonic time of the last successful publish

    def publish(self, watts, qos=1, wait=True):
        return self.publish_raw(json.dumps({"power": watts}), qos=qos, wait=wait)

    def publish_raw(self, payload, qos=1, wait=True):
        if wait:
            rc = self.client.publish_and_wait(self.topic, payload, qos=qos)
        else:
            rc = self.client.publish(self.topic, payload, qos=qos)
        self.published += 1
        self.last_publish = time.monotonic()
        return rc

    def stream(self, watts, hz=2.0):
        """Publish {"power": watts} every 1/hz s in a background thread until stop_stream();
        `self.value` may be changed meanwhile. Errors while the broker is away are ignored."""
        self.stop_stream()
        self.value = watts
        self._stop = threading.Event()
        stop = self._stop

        def loop():
            while not stop.is_set():
                try:
                    info = self.client.publish(self.topic, json.dumps({"power": self.value}), qos=1)
                    if info.rc == mqtt.MQTT_ERR_SUCCESS:
                        self.published += 1
                        self.last_publish = time.monotonic()
                except Exception:
                    pass
                stop.wait(1.0 / hz)

        self._thread = threading.Thread(target=loop, name="meter-stream", daemon=True)
        self._thread.start()

    def stop_stream(self):
        """Stop the stream; returns the monotonic time of the last publish."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(5)
            self._thread = None
        return self.last_publish

    def close(self):
        self.stop_stream()
        self.client.close()


def statuses(broker, prefix=PREFIX, timeout=2.0, user="panel-lobby"):
    """A fresh client's view of the retained P/status: the payload as text, or None if
    nothing is retained (waits up to `timeout` s for it)."""
    c = broker.client(user)
    try:
        col = Collector(c, f"{prefix}/status")
        msg = col.wait_for(timeout=timeout)
        return None if msg is None else msg.payload.decode(errors="replace")
    finally:
        c.close()


def wait_retained_status(broker, value, timeout, prefix=PREFIX, user="panel-lobby"):
    """Poll with fresh subscribers until the retained P/status is `value`; returns the last
    value seen (so the caller can assert on it). Works across broker restarts."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = statuses(broker, prefix, timeout=0.5, user=user)
        except (ConnectionError, TimeoutError, OSError) as e:
            last = f"<cannot connect: {e}>"
        if last == value or time.monotonic() >= deadline:
            return last
        time.sleep(0.2)


# -- small state helpers ------------------------------------------------------------------

def alarm(state, alarm_id):
    for a in (state or {}).get("alarms") or []:
        if a.get("id") == alarm_id:
            return a
    return None


def meter_entry(state, meter_id="main"):
    for m in (state or {}).get("meters") or []:
        if m.get("id") == meter_id:
            return m
    return None


def setpoints_of(state):
    return {c.get("id"): c.get("setpoint_kw") for c in (state or {}).get("chargers") or []}


def brief(state, keys=("time", "mode", "building_load_kw", "grid_import_kw", "demand_target_kw",
                       "demand_target_source", "inputs_fresh", "transfer_switch", "loads_shed",
                       "island_test", "v2x_paused", "mqtt")):
    """A one-line summary of a state for assertion messages."""
    if state is None:
        return "no state"
    short = {k: state.get(k) for k in keys if k in state}
    short["setpoints"] = setpoints_of(state)
    short["alarms"] = [(a.get("id"), a.get("active")) for a in state.get("alarms") or []]
    return json.dumps(short)

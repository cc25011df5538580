"""One building played from a v2x-scenario/1 directory, from OUTSIDE the appliance and
through its real interfaces only, so that the appliance runs its production code path (no
plant: section) against something that behaves like the building:

- a meter gateway on the building's MQTT broker publishes the true grid import;
- each charger is an OCPP charge point (ocpp_peers.SimulatedChargePoint) connecting to the
  appliance; the scenario's sessions plug vehicles in and out of it on schedule, and the
  vehicles follow the appliance's setpoints within their limits;
- a truth log records what really happened (grid import, demand intervals, what each
  vehicle had when it left), for a test to judge the appliance by.

No pytest at import. Command line:

    python3 building_emulator.py scenarios/school-buses-chicago \\
        --mqtt-port 1883 --mqtt-user meter-main --mqtt-password meter-main-pw \\
        --ocpp-url ws://127.0.0.1:8887/ocpp --charger C1:2.1:c1-pw --charger C2:2.0.1:c2-pw:noneeds \\
        [--grid-topic building/meters/main/power] [--building-topic building/meters/main/building] \\
        [--meter-every 1] [--speed 1] [--start-minute 0] [--demand-interval-seconds 900] \\
        [--ocpp-meter-interval 1] [--log truth.jsonl] [--peer-log ocpp.jsonl] [--duration SECONDS]

    -> runs until SIGINT/SIGTERM, --duration or the scenario's end, then prints one summary
       JSON line on stdout; exit status 0. A bad argument, scenario or charger id: one line
       on stderr, exit status 2; an unreachable or refusing broker: one line, exit status 1.

As a class, inside an asyncio loop:

    emulator = BuildingEmulator("scenarios/townhall-fleet-baltimore", mqtt_port=port,
                                mqtt_password="meter-main-pw", ocpp_url=url,
                                chargers=[ChargerSpec.parse("C1:2.1:secret")], start_minute=277280)
    task = asyncio.create_task(emulator.run())     # EmulatorError if the broker is unreachable
    ... emulator.samples, emulator.intervals, emulator.departures, emulator.peers["C1"] ...
    emulator.stop(); summary = await task

What it does
------------
Clocks. The emulator starts at wall time `started_at` at scenario minute `start_minute`;
the scenario's clock (load series, outages, session timetable) runs `speed` scenario seconds
per real second: minute(t) = start_minute + (t - started_at) × speed / 60. Vehicle physics
(kW × real seconds) and the meter run in real time, so at a speed above 1 a session lasts
speed times shorter than in the scenario and its vehicle may leave short through no fault
of the appliance's.

Meter. Every `meter_every` seconds (from started_at) it publishes {"power": W} (QoS 0: a
stale reading must not arrive late after a broker outage) on `grid_topic`: the building's
load at the scenario minute (load.csv as a step function) plus every charger's actual
power at the outlet (+ charging, - discharging). While an outage of the scenario covers
the minute the utility is down and the grid import is 0 (the transfer switch is not
emulated yet). With `building_topic` the load alone goes there too.

Chargers. One SimulatedChargePoint per ChargerSpec (ID:VERSION:PASSWORD[:needs|:noneeds]),
connecting to {ocpp_url}/{ID} with Basic auth and retrying forever (a charger keeps dialling
its CSMS). Each session of sessions.csv on that charger (ids as in scenario.json) plugs a
Vehicle in at its arrival: battery_kwh, reserve_kwh and the arrival energy from the
scenario, the charger's ratings and efficiency, the vehicle id as its idToken, and
"need" = depart_min_kwh - arrive_kwh (negative when it may come back with less). Its
departure is the wall time of depart_minute, rounded up to a whole second; that is both the
departureTime of NotifyEVChargingNeeds (not sent at all for `noneeds`) and when the vehicle
is unplugged. A session already running at start_minute plugs in at once with its arrival
energy; sessions over by then are skipped; a charger between sessions stays connected and
empty.

Truth log (--log, JSON lines, appended, flushed per line; the same lists in memory):
  {"kind": "start", "wall", "scenario", "start_minute", "speed", "chargers"}
  {"kind": "sample", "wall", "scenario_minute", "building_kw", "charger_kw": {"C1": …},
   "grid_kw", "utility"}                                     every meter period (samples)
  {"kind": "interval", "start", "seconds", "mean_grid_kw", "peak_sample_kw"}   (intervals)
     a demand interval [start, start + demand_interval_seconds) with start a multiple of
     that many seconds since the epoch: each sample's grid import holds until the next
     sample; `seconds` is how much of the interval that covered (less in the first and last
     one), mean_grid_kw the time-weighted mean over it, peak_sample_kw the highest sample
     taken in it. Written when the interval is over (the last, partial one at stop).
  {"kind": "arrival", "wall", "charger", "vehicle", "energy_kwh", "need_kwh", "departure"}
  {"kind": "departure", "wall", "charger", "vehicle", "energy_kwh", "need_kwh", "short"}
     energies in the battery, need_kwh = depart_min_kwh; short: energy_kwh < need_kwh
     (arrivals, departures)
  {"kind": "stop", …the summary}
"""
import argparse
import asyncio
import bisect
import csv
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ocpp_peers import SUBPROTOCOLS, JsonLines, SimulatedChargePoint, Vehicle

FORMAT = "v2x-scenario/1"
MQTT_CONNECT_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0           # seconds a charge point gets to close its socket at stop
SESSION_COLUMNS = ("vehicle", "charger", "arrive_minute", "depart_minute", "arrive_kwh", "depart_min_kwh")


class EmulatorError(Exception):
    """A one-line reason the emulator cannot run; exit_status 2 for bad input, 1 for a
    broker that cannot be reached or refuses."""

    def __init__(self, message, exit_status=2):
        super().__init__(message)
        self.exit_status = exit_status


@dataclass(frozen=True)
class ChargerSpec:
    id: str
    version: str = "2.1"
    password: str | None = None
    needs: bool = True    # False: the vehicle never sends NotifyEVChargingNeeds

    @classmethod
    def parse(cls, text):
        """ID:VERSION:PASSWORD[:needs|:noneeds] (the password may contain colons)."""
        charger_id, _, rest = text.partition(":")
        version, _, password = rest.partition(":")
        needs = True
        for suffix, value in ((":needs", True), (":noneeds", False)):
            if password.endswith(suffix):
                password, needs = password[:-len(suffix)], value
        if not charger_id or not password:
            raise EmulatorError(f"--charger {text!r}: expected ID:VERSION:PASSWORD[:needs|:noneeds]")
        if version not in SUBPROTOCOLS:
            raise EmulatorError(f"--charger {text!r}: VERSION must be 2.1 or 2.0.1, not {version!r}")
        return cls(charger_id, version, password, needs)


@dataclass(frozen=True)
class Session:
    vehicle: str
    charger: str
    arrive_minute: float
    depart_minute: float
    arrive_kwh: float
    depart_min_kwh: float


class Scenario:
    """What the emulator needs of a v2x-scenario/1 directory, checked with file:line."""

    def __init__(self, directory):
        self.dir = Path(directory)
        meta_path = self.dir / "scenario.json"
        if not self.dir.is_dir():
            raise EmulatorError(f"{self.dir}: no such scenario directory")
        try:
            meta = json.loads(meta_path.read_text())
        except OSError as e:
            raise EmulatorError(f"{meta_path}: cannot read: {e.strerror}")
        except ValueError as e:
            raise EmulatorError(f"{meta_path}: not JSON: {e}")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise EmulatorError(f"{meta_path}: format: expected {FORMAT!r}")
        try:
            self.name = meta.get("name", self.dir.name)
            self.duration_minutes = float(meta["duration_minutes"])
            self.chargers = {c["id"]: c for c in meta["chargers"]}
            self.vehicles = {v["id"]: v for v in meta["vehicles"]}
            self.outages = sorted((float(o["start_minute"]), float(o["end_minute"]))
                                  for o in meta.get("outages", []))
            load_csv, sessions_csv = meta["load_csv"], meta["sessions_csv"]
        except (KeyError, TypeError, ValueError) as e:
            raise EmulatorError(f"{meta_path}: missing or malformed field {e}")
        load = [(self._number(row, "minute", where), self._number(row, "building_kw", where))
                for row, where in self._rows(load_csv, ("minute", "building_kw"))]
        if not load or load[0][0] != 0 or any(b[0] <= a[0] for a, b in zip(load, load[1:])):
            raise EmulatorError(f"{self.dir / load_csv}: minute: rows must start at 0 and increase")
        self._load_minutes, self._load_kw = [m for m, _ in load], [kw for _, kw in load]
        self.sessions = [self._session(row, where) for row, where in self._rows(sessions_csv, SESSION_COLUMNS)]
        self._check_no_overlap(sessions_csv)

    def _rows(self, name, columns):
        path = self.dir / name
        try:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                missing = [c for c in columns if c not in (reader.fieldnames or [])]
                if missing:
                    raise EmulatorError(f"{path}:1: missing column(s) {', '.join(missing)}")
                return [(row, f"{path}:{reader.line_num}") for row in reader]
        except OSError as e:
            raise EmulatorError(f"{path}: cannot read: {e.strerror}")

    @staticmethod
    def _number(row, column, where):
        try:
            value = float(row[column])
        except (TypeError, ValueError):
            raise EmulatorError(f"{where}: {column}: {row[column]!r} is not a number")
        if not math.isfinite(value):
            raise EmulatorError(f"{where}: {column}: {row[column]!r} is not a finite number")
        return value

    def _session(self, row, where):
        if row["charger"] not in self.chargers:
            raise EmulatorError(f"{where}: charger: unknown charger {row['charger']!r}")
        if row["vehicle"] not in self.vehicles:
            raise EmulatorError(f"{where}: vehicle: unknown vehicle {row['vehicle']!r}")
        session = Session(row["vehicle"], row["charger"],
                          *(self._number(row, column, where) for column in SESSION_COLUMNS[2:]))
        if session.depart_minute <= session.arrive_minute:
            raise EmulatorError(f"{where}: depart_minute: must be after arrive_minute")
        return session

    def _check_no_overlap(self, sessions_csv):
        for charger_id in self.chargers:
            mine = self.sessions_on(charger_id)
            for before, after in zip(mine, mine[1:]):
                if after.arrive_minute < before.depart_minute:
                    raise EmulatorError(f"{self.dir / sessions_csv}: charger {charger_id} has two vehicles at "
                                        f"minute {after.arrive_minute:g} ({before.vehicle}, {after.vehicle})")

    def sessions_on(self, charger_id):
        return sorted((s for s in self.sessions if s.charger == charger_id), key=lambda s: s.arrive_minute)

    def building_kw(self, minute):
        """The load series as a step function (each row holds until the next)."""
        return self._load_kw[max(0, bisect.bisect_right(self._load_minutes, minute) - 1)]

    def utility_up(self, minute):
        return not any(start <= minute < end for start, end in self.outages)


class DemandIntervals:
    """Grid-import samples into wall-clock demand intervals (see the module docstring)."""

    def __init__(self, seconds):
        self.seconds = seconds
        self._held = None       # (wall, kW) of the latest sample, which holds until the next
        self._current = None    # the interval being filled

    def add(self, wall, kw):
        """Takes a sample; returns the intervals it completed."""
        done = self._hold_until(wall)
        start = math.floor(wall / self.seconds) * self.seconds
        if self._current is not None and self._current["start"] != start:
            done.append(self._finish())
        if self._current is None:
            self._current = {"start": start, "kws": 0.0, "seconds": 0.0, "peak": None}
        peak = self._current["peak"]
        self._current["peak"] = kw if peak is None else max(peak, kw)
        self._held = (wall, kw)
        return done

    def close(self, wall):
        """At stop: the latest sample holds until `wall` (at most one meter period, say);
        returns the intervals that completes, the partial last one included."""
        done = self._hold_until(wall)
        if self._current is not None:
            done.append(self._finish())
        self._held = None
        return done

    def _hold_until(self, end):
        done = []
        if self._held is None:
            return done
        t, kw = self._held
        while t < end:
            start = math.floor(t / self.seconds) * self.seconds
            if self._current is not None and self._current["start"] != start:
                done.append(self._finish())
            if self._current is None:  # the previous sample's value runs into a new interval
                self._current = {"start": start, "kws": 0.0, "seconds": 0.0, "peak": None}
            upto = min(end, start + self.seconds)
            self._current["kws"] += kw * (upto - t)
            self._current["seconds"] += upto - t
            t = upto
        return done

    def _finish(self):
        c, self._current = self._current, None
        start = int(c["start"]) if float(c["start"]).is_integer() else c["start"]
        return {"kind": "interval", "start": start, "seconds": round(c["seconds"], 3),
                "mean_grid_kw": round(c["kws"] / c["seconds"], 4) if c["seconds"] else None,
                "peak_sample_kw": None if c["peak"] is None else round(c["peak"], 4)}


class BuildingEmulator:
    """The building; see the module docstring. Raises EmulatorError for bad arguments at
    construction and for an unreachable broker in run()."""

    def __init__(self, scenario_dir, chargers=(), ocpp_url=None, mqtt_host="127.0.0.1", mqtt_port=1883,
                 mqtt_user="meter-main", mqtt_password=None, grid_topic="building/meters/main/power",
                 building_topic=None, meter_every=1.0, speed=1.0, start_minute=0.0,
                 demand_interval_seconds=900.0, log_path=None, peer_log_path=None, duration=None,
                 ocpp_meter_interval=1.0, gpio_socket=None):
        for name, value in (("--speed", speed), ("--meter-every", meter_every),
                            ("--demand-interval-seconds", demand_interval_seconds),
                            ("--ocpp-meter-interval", ocpp_meter_interval)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise EmulatorError(f"{name} {value}: must be a positive number")
        if meter_every > demand_interval_seconds:
            raise EmulatorError(f"--meter-every {meter_every:g}: longer than the demand interval "
                                f"({demand_interval_seconds:g} s)")
        if duration is not None and not duration > 0:
            raise EmulatorError(f"--duration {duration}: must be a positive number of seconds")
        self.scenario = Scenario(scenario_dir)
        if not 0 <= start_minute < self.scenario.duration_minutes:
            raise EmulatorError(f"--start-minute {start_minute:g}: outside {self.scenario.dir}'s "
                                f"0..{self.scenario.duration_minutes:g} minutes")
        self.chargers = list(chargers)
        for spec in self.chargers:
            if spec.id not in self.scenario.chargers:
                raise EmulatorError(f"--charger {spec.id}: no charger {spec.id} in {self.scenario.dir / 'scenario.json'} "
                                    f"(it has {', '.join(self.scenario.chargers)})")
        ids = [spec.id for spec in self.chargers]
        if len(set(ids)) != len(ids):
            raise EmulatorError(f"--charger: {sorted({i for i in ids if ids.count(i) > 1})} given twice")
        if self.chargers and not (ocpp_url or "").startswith(("ws://", "wss://")):
            raise EmulatorError(f"--ocpp-url {ocpp_url!r}: chargers need a ws:// or wss:// URL of the CSMS")
        self.ocpp_url, self.ocpp_meter_interval = ocpp_url, ocpp_meter_interval
        self.mqtt_host, self.mqtt_port, self.mqtt_user, self.mqtt_password = mqtt_host, mqtt_port, mqtt_user, mqtt_password
        self.grid_topic, self.building_topic = grid_topic, building_topic
        self.meter_every, self.speed, self.start_minute = meter_every, speed, start_minute
        self.demand_interval_seconds, self.duration = demand_interval_seconds, duration
        self.log_path, self.peer_log_path = log_path, peer_log_path
        # The wired signals (building_wiring.py): the utility contact follows the scenario's
        # outages, the transfer switch the appliance's command; on the island the service
        # carries nothing and the vehicles carry the building.
        self.wiring = None
        if gpio_socket:
            from building_wiring import BuildingWiring
            self.wiring = BuildingWiring(gpio_socket)

        self.samples, self.intervals, self.arrivals, self.departures = [], [], [], []
        self.peers = {}             # charger id -> SimulatedChargePoint (from run() on)
        self.started_at = None      # wall time of start_minute
        self.stopped_at = None
        self.stop_reason = None
        self.unpublished = 0        # readings paho could not send (broker away)
        self._demand = DemandIntervals(demand_interval_seconds)
        self._log = self._peer_log = self._mqtt = self._loop = self._stopping = None

    # ------------------------------------------------------------------ clocks

    def scenario_minute_at(self, wall):
        if self.started_at is None:
            return self.start_minute  # the scenario's clock starts with run()
        return self.start_minute + (wall - self.started_at) * self.speed / 60

    def wall_time_of(self, minute):
        return self.started_at + (minute - self.start_minute) * 60 / self.speed

    @property
    def scenario_minute(self):
        return self.scenario_minute_at(time.time())

    @property
    def utility(self):
        """Whether the utility is up now (False during the scenario's outages)."""
        return self.scenario.utility_up(self.scenario_minute)

    # ------------------------------------------------------------------ lifecycle

    def stop(self, reason="stop()"):
        """Ends run() (safe from any thread and from a signal handler)."""
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._request_stop, reason)

    def _request_stop(self, reason):
        if not self._stopping.is_set():
            self.stop_reason = reason
            self._stopping.set()

    async def run(self):
        """Plays the building until stop(), `duration` or the scenario's end; returns the summary."""
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        await self._loop.run_in_executor(None, self._connect_mqtt)
        self._log = open(self.log_path, "a", encoding="utf-8") if self.log_path else None
        self._peer_log = JsonLines(self.peer_log_path) if self.peer_log_path else None
        self.started_at = time.time()
        self._write({"kind": "start", "wall": round(self.started_at, 3), "scenario": self.scenario.name,
                     "start_minute": self.start_minute, "speed": self.speed,
                     "chargers": {s.id: {"version": s.version, "needs": s.needs} for s in self.chargers}})
        if self.duration is not None:
            self._loop.call_later(self.duration, self._request_stop, "duration")
        for spec in self.chargers:
            self.peers[spec.id] = SimulatedChargePoint(
                spec.id, self.ocpp_url, version=spec.version, password=spec.password, vehicle=None,
                meter_interval=self.ocpp_meter_interval, connect_timeout=math.inf,
                notify_needs=spec.needs, log=self._peer_log)
        peer_runs = [asyncio.create_task(peer.run()) for peer in self.peers.values()]
        players = [asyncio.create_task(self._meter())] + \
            [asyncio.create_task(self._play_sessions(spec.id)) for spec in self.chargers]
        for task in players:  # a charger's timetable may run out; only a crash ends the run
            task.add_done_callback(self._stop_on_crash)
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait(peer_runs + [stopping], return_when=asyncio.FIRST_COMPLETED)
            self.stop_reason = self.stop_reason or "a charge point ended"
        finally:
            self.stopped_at = time.time()
            for task in players + [stopping]:
                task.cancel()
            for peer in self.peers.values():
                peer.stop()
            results = await asyncio.gather(*players, return_exceptions=True)
            finished, late = await asyncio.wait(peer_runs, timeout=STOP_TIMEOUT) if peer_runs else (set(), set())
            for task in late:
                task.cancel()
            results += [task.exception() for task in finished if not task.cancelled()]
            # the last sample holds until the stop, but for no longer than a meter period
            last_sample = self.samples[-1]["wall"] if self.samples else self.stopped_at
            for record in self._demand.close(min(self.stopped_at, last_sample + self.meter_every)):
                self._record(self.intervals, record)
            self._disconnect_mqtt()
            if self.wiring:
                self.wiring.close()
            summary = self.summary()
            self._write({**summary, "kind": "stop"})
            for log in (self._log, self._peer_log):
                if log:
                    log.close()
        crashes = [r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]
        if crashes:
            raise crashes[0]  # a bug in here must not pass for a clean run
        return summary

    def _stop_on_crash(self, task):
        if not task.cancelled() and task.exception() is not None:
            self._request_stop(f"crashed: {task.exception()!r}")

    def summary(self):
        plugged = {cid: {"vehicle": peer.vehicle.name, "energy_kwh": round(peer.energy_wh / 1000, 3)}
                   for cid, peer in self.peers.items() if peer.vehicle is not None}
        full = [i for i in self.intervals if i["seconds"] >= self.demand_interval_seconds - self.meter_every]
        return {"kind": "summary", "scenario": self.scenario.name, "stopped": self.stop_reason,
                "seconds": round(time.time() - self.started_at, 3) if self.started_at else 0,
                "samples": len(self.samples), "intervals": len(self.intervals),
                "max_full_interval_kw": max((i["mean_grid_kw"] for i in full), default=None),
                "arrivals": len(self.arrivals), "departures": len(self.departures),
                "left_short": [d["vehicle"] for d in self.departures if d["short"]],
                "plugged_in": plugged, "unpublished": self.unpublished,
                "chargers": {cid: {"boots": len(p.boots), "transactions": len(p.transactions),
                                   "violations": p.violations, "gave_up": p.gave_up}
                             for cid, p in self.peers.items()}}

    # ------------------------------------------------------------------ MQTT

    def _connect_mqtt(self):
        where = f"{self.mqtt_host}:{self.mqtt_port}"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"building-emulator-{os.getpid()}-{id(self):x}")
        if self.mqtt_user is not None:
            client.username_pw_set(self.mqtt_user, self.mqtt_password)
        answered, outcome = threading.Event(), {}

        def on_connect(_client, _userdata, _flags, reason_code, _properties):
            outcome.setdefault("rc", reason_code)
            answered.set()
        client.on_connect = on_connect
        client.reconnect_delay_set(min_delay=0.5, max_delay=10)
        try:
            client.connect(self.mqtt_host, self.mqtt_port, keepalive=30)
        except (OSError, ValueError) as e:
            raise EmulatorError(f"cannot reach the MQTT broker at {where}: {getattr(e, 'strerror', None) or e}", 1)
        client.loop_start()
        if not answered.wait(MQTT_CONNECT_TIMEOUT) or outcome["rc"].is_failure:
            client.loop_stop()
            why = f"it refused user {self.mqtt_user!r}: {outcome['rc']}" if outcome else \
                f"no CONNACK within {MQTT_CONNECT_TIMEOUT:g} s"
            raise EmulatorError(f"the MQTT broker at {where}: {why}", 1)
        client.on_connect = None  # paho reconnects by itself from here on
        self._mqtt = client

    def _disconnect_mqtt(self):
        if self._mqtt is not None:
            self._mqtt.disconnect()
            self._mqtt.loop_stop()
            self._mqtt = None

    def _publish(self, topic, kw):
        info = self._mqtt.publish(topic, json.dumps({"power": round(kw * 1000, 1)}), qos=0)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.unpublished += 1

    # ------------------------------------------------------------------ the building

    async def _sleep_until(self, wall):
        """False when the emulator stops first."""
        if self._stopping.is_set():
            return False
        try:
            await asyncio.wait_for(self._stopping.wait(), max(0.0, wall - time.time()))
            return False
        except asyncio.TimeoutError:
            return True

    async def _meter(self):
        tick = 0
        while await self._sleep_until(self.started_at + tick * self.meter_every):
            tick += 1
            wall = time.time()
            minute = self.scenario_minute_at(wall)
            if minute >= self.scenario.duration_minutes:
                self._request_stop("end of scenario")
                return
            self._take_sample(wall, minute)

    def _take_sample(self, wall, minute):
        building_kw = self.scenario.building_kw(minute)
        charger_kw = {cid: peer.power_now_w() / 1000 for cid, peer in self.peers.items()}
        utility = self.scenario.utility_up(minute)
        fed = utility
        if self.wiring:
            self.wiring.set_utility(utility)
            fed = self.wiring.on_utility
        grid_kw = building_kw + sum(charger_kw.values()) if fed else 0.0
        self._publish(self.grid_topic, grid_kw)
        if self.building_topic:
            self._publish(self.building_topic, building_kw)
        self._record(self.samples, {
            "kind": "sample", "wall": round(wall, 3), "scenario_minute": round(minute, 3),
            "building_kw": building_kw, "charger_kw": {cid: round(kw, 4) for cid, kw in charger_kw.items()},
            "grid_kw": round(grid_kw, 4), "utility": utility,
            **({"switch": self.wiring.position,
                "island_served_kw": round(max(0.0, -sum(charger_kw.values())), 4) if self.wiring.islanded else 0.0}
               if self.wiring else {})})
        for record in self._demand.add(wall, grid_kw):
            self._record(self.intervals, record)

    async def _play_sessions(self, charger_id):
        peer, spec = self.peers[charger_id], self.scenario.chargers[charger_id]
        for session in self.scenario.sessions_on(charger_id):
            if session.depart_minute <= self.start_minute:
                continue
            if not await self._sleep_until(self.wall_time_of(session.arrive_minute)):
                return
            car = self.scenario.vehicles[session.vehicle]
            departure = math.ceil(self.wall_time_of(session.depart_minute))
            await peer.plug_in(Vehicle(
                capacity_kwh=car["battery_kwh"], soc_pct=100 * session.arrive_kwh / car["battery_kwh"],
                need_kwh=session.depart_min_kwh - session.arrive_kwh,
                min_soc_pct=100 * car.get("reserve_kwh", 0) / car["battery_kwh"],
                max_kw=spec["max_charge_kw"], max_discharge_kw=spec.get("max_discharge_kw", 0),
                efficiency=spec.get("efficiency", 1.0), name=session.vehicle), departure=departure)
            self._record(self.arrivals, {
                "kind": "arrival", "wall": round(time.time(), 3), "charger": charger_id,
                "vehicle": session.vehicle, "energy_kwh": session.arrive_kwh,
                "need_kwh": session.depart_min_kwh, "departure": departure})
            if not await self._sleep_until(departure):
                return
            energy_kwh = await peer.unplug() / 1000
            self._record(self.departures, {
                "kind": "departure", "wall": round(time.time(), 3), "charger": charger_id,
                "vehicle": session.vehicle, "energy_kwh": round(energy_kwh, 4),
                "need_kwh": session.depart_min_kwh, "short": energy_kwh < session.depart_min_kwh})

    # ------------------------------------------------------------------ the truth log

    def _record(self, where, record):
        where.append(record)
        self._write(record)

    def _write(self, record):
        if self._log:
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()


# ---------------------------------------------------------------------- command line

class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        sys.stderr.write(f"building_emulator: error: {message} (see --help)\n")
        sys.exit(2)


def _arguments(argv):
    p = _Parser(prog="building_emulator", description="Plays one building (meter over MQTT, chargers "
                "over OCPP) from a v2x-scenario/1 directory; see the module docstring.")
    p.add_argument("scenario", metavar="SCENARIO_DIR")
    p.add_argument("--mqtt-host", default="127.0.0.1")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument("--mqtt-user", default="meter-main")
    p.add_argument("--mqtt-password")
    p.add_argument("--grid-topic", default="building/meters/main/power")
    p.add_argument("--building-topic", help="also publish the building's load alone here")
    p.add_argument("--meter-every", type=float, default=1.0, metavar="SECONDS")
    p.add_argument("--ocpp-url", help="the CSMS, e.g. ws://127.0.0.1:8887/ocpp (the charger id is appended)")
    p.add_argument("--charger", action="append", default=[], metavar="ID:VERSION:PASSWORD[:needs|:noneeds]")
    p.add_argument("--gpio-socket", metavar="PATH",
                   help="serve the building's wired signals (transfer switch, utility contact) to the "
                        "appliance's emulated GPIO backend on this Unix socket")
    p.add_argument("--ocpp-meter-interval", type=float, default=1.0, metavar="SECONDS",
                   help="how often each charger sends MeterValues")
    p.add_argument("--speed", type=float, default=1.0, help="scenario seconds per real second")
    p.add_argument("--start-minute", type=float, default=0.0)
    p.add_argument("--demand-interval-seconds", type=float, default=900.0)
    p.add_argument("--log", help="truth log (JSON lines, appended)")
    p.add_argument("--peer-log", help="the charge points' own OCPP log (JSON lines, appended)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    return p.parse_args(argv)


async def _main(args):
    emulator = BuildingEmulator(
        args.scenario, chargers=[ChargerSpec.parse(text) for text in args.charger], ocpp_url=args.ocpp_url,
        mqtt_host=args.mqtt_host, mqtt_port=args.mqtt_port, mqtt_user=args.mqtt_user,
        mqtt_password=args.mqtt_password, grid_topic=args.grid_topic, building_topic=args.building_topic,
        meter_every=args.meter_every, speed=args.speed, start_minute=args.start_minute,
        demand_interval_seconds=args.demand_interval_seconds, log_path=args.log,
        peer_log_path=args.peer_log, duration=args.duration, ocpp_meter_interval=args.ocpp_meter_interval,
        gpio_socket=args.gpio_socket)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, emulator.stop, signal.Signals(sig).name)
    summary = await emulator.run()
    print(json.dumps(summary), flush=True)


def main(argv=None):
    args = _arguments(argv)
    # The ocpp package logs every CALLERROR with a traceback, which would read as a crash;
    # the charge points' own log (--peer-log) has them.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("ocpp").setLevel(logging.CRITICAL)
    try:
        asyncio.run(_main(args))
    except EmulatorError as e:
        sys.stderr.write(f"building_emulator: error: {e}\n")
        return e.exit_status
    return 0


if __name__ == "__main__":
    sys.exit(main())

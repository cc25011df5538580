"""The shipped production configuration (rootfs-overlay/etc/microgrid-edge/site.yaml) run
as the field site, for the tests and the demo: no plant, the building is whatever stands
behind the broker and the OCPP endpoint.

Only addresses, ports and paths change, through the documented environment overrides
(`MGE_<KEY PATH>`), plus what a test names on purpose (a short demand interval, a short
enter-service delay). Nothing else of the file is edited.

No pytest at import: scripts/demo uses it too.

    env = FieldSite(tmp, broker=broker, ocpp_port=port).env(MGE_DEMAND_INTERVAL_MINUTES="1")
    daemon = Daemon(SHIPPED_SITE, tmp, start_minute=None, env=env)
"""
import socket
from pathlib import Path

from mge_helpers import REPO

SHIPPED_SITE = REPO / "rootfs-overlay" / "etc" / "microgrid-edge" / "site.yaml"
SHIPPED_PREFIX = "microgrid-edge/example-school"
SHIPPED_METER_TOPIC = "building/meters/main/power"
SHIPPED_CHARGERS = ("C1", "C2", "C3", "C4")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FieldSite:
    """The files and overrides the shipped configuration needs on a test machine: its
    MQTT password (the broker's `microgrid-edge` user), one password file per OCPP charger,
    the state and store databases, and the file that says the clock is synchronized (on
    the appliance, systemd-timesyncd keeps /run/systemd/timesync/synchronized)."""

    def __init__(self, directory, broker=None, broker_port=None, ocpp_port=None, synchronized=True):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.broker = broker
        self.broker_port = broker.port if broker else (broker_port or free_port())
        self.ocpp_port = ocpp_port or free_port()
        self.mqtt_password = self.dir / "mqtt-password"
        self.mqtt_password.write_text((broker.users["microgrid-edge"] if broker else "no-broker-pw") + "\n")
        self.charger_passwords = {cid: f"{cid.lower()}-field-password-2026" for cid in SHIPPED_CHARGERS}
        self.synchronized_file = self.dir / "clock-synchronized"
        if synchronized:
            self.synchronized_file.write_text("")
        for cid, password in self.charger_passwords.items():
            (self.dir / f"{cid}.password").write_text(password + "\n")
        self.state_db = self.dir / "var" / "state.db"
        self.store_db = self.dir / "var" / "store.db"

    @property
    def ocpp_url(self):
        return f"ws://127.0.0.1:{self.ocpp_port}/ocpp"

    def env(self, **extra):
        env = {
            "MGE_MQTT__PORT": str(self.broker_port),
            "MGE_MQTT__PASSWORD_FILE": str(self.mqtt_password),
            "MGE_OCPP__HOST": "127.0.0.1",
            "MGE_OCPP__PORT": str(self.ocpp_port),
            "MGE_STATE__PATH": str(self.state_db),
            "MGE_STORE__PATH": str(self.store_db),
            "MGE_TIME__SYNCHRONIZED": str(self.synchronized_file),
            # Any free port: tests run side by side.
            "MGE_METRICS__PORT": "0",
        }
        for i, cid in enumerate(SHIPPED_CHARGERS):
            env[f"MGE_OCPP__CHARGERS__{i}__PASSWORD_FILE"] = str(self.dir / f"{cid}.password")
        env.update({k: str(v) for k, v in extra.items()})
        return env


def emulated_school(dest, load_kw, sessions, outages=(), duration_minutes=None):
    """A small v2x-scenario/1 directory for the building emulator: the shipped school's
    site, chargers and buses (from scenarios/school-buses-chicago), with `load_kw` one value
    per scenario minute, `sessions` as (vehicle, charger, arrive_minute, depart_minute,
    arrive_kwh, depart_min_kwh) and `outages` as (start_minute, end_minute)."""
    import json
    source = REPO / "scenarios" / "school-buses-chicago" / "scenario.json"
    meta = json.loads(source.read_text())
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    meta.update({
        "name": "emulated-school", "duration_minutes": duration_minutes or len(load_kw),
        "dr_events": [], "outages": [{"start_minute": a, "end_minute": b} for a, b in outages],
    })
    (dest / "scenario.json").write_text(json.dumps(meta, indent=1))
    (dest / "load.csv").write_text("minute,building_kw\n" + "".join(f"{m},{kw:.3f}\n" for m, kw in enumerate(load_kw)))
    (dest / "sessions.csv").write_text(
        "vehicle,charger,arrive_minute,depart_minute,arrive_kwh,depart_min_kwh\n"
        + "".join(",".join(str(v) for v in s) + "\n" for s in sessions))
    return dest

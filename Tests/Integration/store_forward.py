"""Store-and-forward, driven from outside: a site configuration with `store:` and `central:`
sections, the `run` daemon on it, the store's SQLite database read beside it, and the
reference receiver (central_receiver.CentralReceiver) as the judge of what arrived.

No pytest at import: bench/store_bench.py uses this module too.

    rx = CentralReceiver(tmp / "central", tokens={SITE_ID: TOKEN}).start()
    site = StoreSite(tmp / "site", port=rx.port)
    daemon = site.start(speed=60)
    ...
    daemon.stop()
    settler, counters, audit = site.settle(rx)       # a quiet run that sends the backlog
    assert_complete(rx, counters.last_seq)

Record times follow site time. With `--speed S > 1` a run's record times run ahead of the
wall clock (by up to S - 1 times its length), and every run starts its site timeline at
the wall clock again, so times are only compared within one run. `settle()` sends what is
left in one quiet run (speed 1, no telemetry), which gives a fixed point to compare the
receiver with the store.
"""
import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import tempfile
import time
from collections import namedtuple
from pathlib import Path

from mge_helpers import CONFIGS, CRASH_MARKERS, SCENARIOS, cpu_model
from mqtt_daemon import Daemon

EXAMPLE = CONFIGS / "example-school.yaml"
SCENARIO = SCENARIOS / "school-buses-chicago"
SITE_ID = "site-1"
TOKEN = "tok-site-1-3f9a"
APPLICATION_ID = 0x4D474531
# Ten minutes before the February outage of the school-bus scenario (minute 57300..57360):
# at --speed 60 the utility goes at 10 s real, so a short run has mode, utility and
# transfer-switch events besides telemetry.
BEFORE_OUTAGE_MINUTE = 57290
# Sunday 2023-01-01 01:00: buses parked, nothing happens for weeks (quiet runs).
QUIET_MINUTE = 60

STORE_DEFAULTS = {
    "path": "data/store.db",
    "telemetry_every_seconds": 1,
    "budget_mb": 1024,
    "retention_days": 7,
    "summary_interval_minutes": 15,
}
CENTRAL_DEFAULTS = {
    "base_url": None,               # http://127.0.0.1:PORT
    "site_id": SITE_ID,
    "token_file": "token",
    "timeout_seconds": 2,
    "batch_max_records": 1000,
    "batch_max_kb": 512,
    "gather_seconds": 2,
    "retry_max_seconds": 2,
    "unauthorized_retry_seconds": 600,
    "offline_alarm_minutes": 60,
}
# The settling run (see StoreSite.settle): wall-clock record times and no telemetry, so
# that the store stops growing once its start events are written.
SETTLE_STORE = {"telemetry_every_seconds": 3600}
SETTLE_CENTRAL = {"gather_seconds": 1, "retry_max_seconds": 2}

Counters = namedtuple("Counters", "last_seq accepted_through used_bytes page_size site_id "
                                  "application_id records placeholders")


def _yaml(value):
    return json.dumps(value)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_text(store, central, log_level="info"):
    """config/example-school.yaml with an absolute scenario path, then `store:` and (unless
    `central` is None) `central:`; values of None are left out."""
    text = EXAMPLE.read_text()
    text, n = re.subn(r"(?m)^(\s*scenario:\s*).*$", lambda m: m.group(1) + _yaml(str(SCENARIO)), text)
    if n != 1:
        raise RuntimeError(f"expected one `scenario:` line in {EXAMPLE}, found {n}")
    text, n = re.subn(r"(?m)^(\s*level:\s*)\S+", lambda m: m.group(1) + log_level, text)
    if n != 1:
        raise RuntimeError(f"expected one `level:` line in {EXAMPLE}, found {n}")
    out = [text.rstrip("\n"), "", "# Added by Tests/Integration/store_forward.py", "store:"]
    out += [f"  {k}: {_yaml(v)}" for k, v in store.items() if v is not None]
    if central is not None:
        out.append("central:")
        out += [f"  {k}: {_yaml(v)}" for k, v in central.items() if v is not None]
    return "\n".join(out) + "\n"


class StoreSite:
    """One site folder: `site.yaml`, the token file, the store under `data/` (or wherever
    `store["path"]` says), and the logs of every daemon run on it."""

    def __init__(self, directory, port=None, store=None, central=None, token=TOKEN,
                 with_central=True, log_level="info"):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.logs = self.directory / "logs"
        self.config = self.directory / "site.yaml"
        self.store = dict(STORE_DEFAULTS)
        self.central = dict(CENTRAL_DEFAULTS) if with_central else None
        self.log_level = log_level
        if self.central is not None and port is not None:
            self.central["base_url"] = f"http://127.0.0.1:{port}"
        self.daemons = []
        self.configure(store=store, central=central)
        if token is not None and self.central is not None:
            self.write_token(token)

    # -- files
    def configure(self, store=None, central=None):
        """Update keys of the two sections and rewrite site.yaml."""
        self.store.update(store or {})
        if self.central is not None:
            self.central.update(central or {})
        self.config.write_text(config_text(self.store, self.central, self.log_level))
        return self

    def _resolve(self, p):
        p = Path(p)
        return p if p.is_absolute() else self.directory / p

    @property
    def db(self):
        return self._resolve(self.store["path"])

    @property
    def ledger_path(self):
        return Path(str(self.db) + ".seq")

    @property
    def token_path(self):
        return self._resolve(self.central["token_file"])

    @property
    def site_id(self):
        return self.central["site_id"] if self.central else None

    def write_token(self, token):
        """Replace the token file atomically (the appliance reads it at every request)."""
        tmp = self.token_path.with_name(self.token_path.name + ".new")
        tmp.write_text(token + "\n")
        os.replace(tmp, self.token_path)

    def ledger(self):
        """The seq ledger as a dict, or None when there is none."""
        try:
            return json.loads(self.ledger_path.read_text())
        except FileNotFoundError:
            return None

    def moved_aside(self):
        """Databases moved aside (`<path>.corrupt-*`, without their -wal/-shm)."""
        return sorted(p for p in self.db.parent.glob(self.db.name + ".corrupt-*")
                      if not p.name.endswith(("-wal", "-shm")))

    # -- daemons
    def start(self, speed=60, start_minute=BEFORE_OUTAGE_MINUTE, args=(), env=None, binary=None):
        d = Daemon(self.config, self.logs, speed=speed, start_minute=start_minute, args=args, env=env,
                   binary=binary)
        self.daemons.append(d)
        return d

    def close(self):
        for d in self.daemons:
            try:
                d.kill()
            except Exception:
                pass

    def all_logs(self):
        return "".join(d.log() + d.stderr() for d in self.daemons)

    def crash_markers(self):
        text = self.all_logs()
        return [m for m in CRASH_MARKERS if m in text]

    # -- the database
    def counters(self):
        """Counters of the store (None when there is no database file yet)."""
        return read_store(self.db)

    def try_counters(self):
        """counters(), or None while the database is missing or not set up yet."""
        try:
            return read_store(self.db)
        except (sqlite3.Error, OSError, TypeError):
            return None

    def settle(self, rx, timeout=90, extra_store=None, extra_central=None):
        """Start one more run whose job is to send what the store still holds, and wait until
        the receiver holds the database's last seq and the database has it confirmed.

        The run is quiet (speed 1, so record times are wall-clock times; no telemetry, so no
        new records after its start events), which gives the comparison a fixed point. The
        batch limits are the site's own. site.yaml is restored afterwards; the run is left
        running (the caller stops it). Returns (daemon, counters, audit); raises
        AssertionError on timeout."""
        saved_store, saved_central = dict(self.store), dict(self.central)
        self.configure(store={**SETTLE_STORE, **(extra_store or {})},
                       central={**SETTLE_CENTRAL, **(extra_central or {})})
        try:
            before = (self.try_counters() or (0,))[0]
            d = self.start(speed=1, start_minute=QUIET_MINUTE)
            # Its own start events first (and its signal handlers in place before a stop).
            deadline = time.monotonic() + 30
            while (self.try_counters() or (0,))[0] <= before or "control loop started" not in d.log():
                if time.monotonic() > deadline or not d.running:
                    raise AssertionError(f"expected the settling run to start and write its start "
                                         f"events within 30 s (store at {before} before)\n{d.describe()}")
                time.sleep(0.1)
            counters, audit = wait_confirmed(self, rx, timeout, d)
            return d, counters, audit
        finally:
            self.store, self.central = saved_store, saved_central
            self.configure()


def _connect_ro(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    con.execute("PRAGMA query_only = 1")
    return con


def read_store(db):
    """Counters of the store at `db`, read without writing to it. None if there is no file.

    Read-only first (the daemon may be writing: WAL readers do not disturb it). If SQLite
    cannot open it read-only (a WAL left by a SIGKILL needs recovery, which needs write
    access), the file and its WAL are copied and the copy is read."""
    db = Path(db)
    if not db.exists():
        return None
    try:
        con = _connect_ro(db)
        try:
            return _counters(con)
        finally:
            con.close()
    except sqlite3.Error:
        pass
    with tempfile.TemporaryDirectory(prefix="mge-store-copy-") as tmp:
        copy = Path(tmp) / db.name
        shutil.copyfile(db, copy)
        wal = Path(str(db) + "-wal")
        if wal.exists():
            shutil.copyfile(wal, Path(str(copy) + "-wal"))
        con = sqlite3.connect(str(copy), timeout=10)
        try:
            return _counters(con)
        finally:
            con.close()


def _counters(con):
    next_seq, accepted = con.execute("SELECT next_seq, accepted_through FROM counter WHERE id = 1").fetchone()
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    free = con.execute("PRAGMA freelist_count").fetchone()[0]
    app_id = con.execute("PRAGMA application_id").fetchone()[0]
    row = con.execute("SELECT value FROM meta WHERE key = 'site_id'").fetchone()
    records = con.execute("SELECT COUNT(*) FROM record").fetchone()[0]
    placeholders = con.execute("SELECT COUNT(*) FROM placeholder").fetchone()[0]
    return Counters(next_seq - 1, accepted, (pages - free) * page_size, page_size,
                    row[0] if row else None, app_id, records, placeholders)


def checkpoint(db):
    """Fold the WAL into the database file and remove it (the daemon must not be running):
    the store as one file at rest, so that damage done to the file is damage to the data."""
    con = sqlite3.connect(str(db), timeout=10)
    try:
        busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise RuntimeError(f"{db}: the WAL could not be checkpointed (busy)")
    finally:
        con.close()
    for suffix in ("-wal", "-shm"):
        p = Path(str(db) + suffix)
        if p.exists() and p.stat().st_size == 0 and suffix == "-wal":
            p.unlink()


def query_store(db, sql, args=()):
    """Rows of a read-only query on the store (daemon running or not)."""
    con = _connect_ro(db)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def wait_confirmed(site, rx, timeout, daemon=None, site_id=None):
    """Wait until the database's last seq is confirmed (counter.accepted_through == last)
    and the receiver's highest seq is that last seq. Returns (counters, audit)."""
    site_id = site_id or site.site_id
    deadline = time.monotonic() + timeout
    c = a = None
    while True:
        c = site.try_counters()
        a = rx.audit(site_id)
        if c is not None and c.last_seq > 0 and c.accepted_through == c.last_seq and a.last == c.last_seq:
            return c, a
        if time.monotonic() >= deadline:
            break
        if daemon is not None and not daemon.running:
            break
        time.sleep(0.25)
    raise AssertionError(
        f"expected the receiver to hold the store's last seq and the store to have it confirmed "
        f"within {timeout} s; store: {c}, receiver audit: {brief_audit(a)}\n"
        f"last requests: {brief_requests(rx.requests[-8:])}\n"
        + (daemon.describe() if daemon is not None else ""))


def brief_audit(a):
    if a is None:
        return "none"
    return (f"Audit(count={a.count}, first={a.first}, last={a.last}, gaps={a.gaps[:10]}"
            f"{'...' if len(a.gaps) > 10 else ''}, duplicates={a.duplicates[:10]}"
            f"{'...' if len(a.duplicates) > 10 else ''})")


def brief_requests(entries):
    keys = ("status", "fault", "idempotency_key", "records", "new_records", "accepted_through",
            "error")
    return "\n  " + "\n  ".join(json.dumps({k: e.get(k) for k in keys}) for e in entries)


def assert_complete(rx, last, site_id=SITE_ID, context=""):
    """The receiver holds every seq 1..last exactly once, no seq came back with different
    content, and nothing above `last`."""
    a = rx.audit(site_id)
    conflicts = rx.conflicts(site_id)
    assert a.gaps == [] and a.duplicates == [] and a.first == 1 and a.last == last \
        and a.count == last and conflicts == [], (
            f"expected the receiver to hold every seq 1..{last} exactly once with no conflicts; "
            f"got {brief_audit(a)}, conflicts {conflicts[:20]}\n{context}")
    return a


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def iso_ms(text):
    """'2026-11-27T14:00:00.250Z' -> ms since 1970."""
    from datetime import datetime, timezone
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
               .timestamp() * 1000 + 0.5)


def machine_line():
    return f"machine: {os.cpu_count()} CPUs (nproc), {cpu_model() or 'unknown CPU'}"

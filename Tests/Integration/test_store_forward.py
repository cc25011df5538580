"""Store-and-forward end to end: the `run` daemon keeps every record in its SQLite store and
uploads it to the central program (Tests/Integration/central_receiver.py, the judge), and
the program ends up with every seq exactly once, whatever happens on the way: SIGKILL
mid-upload, a receiver that is down, flaps, refuses the token, takes only small batches or
says "slow down", a full disk, a damaged, foreign or other site's database, a disk budget
far below what the site writes.

Every test runs its own receiver (port 0) and site folder under tmp_path; daemons run the
school-bus example at --speed 60 or more. After the part under test, StoreSite.settle()
runs the appliance once more, quietly, until the store's last seq is confirmed, and the
receiver's audit must then be exactly 1..last: no gap, no duplicate, no conflict.
"""
import os
import random
import re
import sqlite3
import statistics
import subprocess
import threading
import time
from pathlib import Path

import pytest

from central_receiver import CentralReceiver
from store_forward import (APPLICATION_ID, BEFORE_OUTAGE_MINUTE, SITE_ID, TOKEN, StoreSite,
                           assert_complete, brief_audit, brief_requests, checkpoint, iso_ms,
                           query_store, read_store, sha256)

TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\Z")
SEED = 20261127


class Env:
    """Receivers and sites of one test; everything is stopped / killed at the end."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.receivers = []
        self.sites = []

    def receiver(self, tokens=None, start=True, **kwargs):
        rx = CentralReceiver(self.tmp / f"central-{len(self.receivers) + 1}",
                             tokens=tokens or {SITE_ID: TOKEN}, **kwargs)
        self.receivers.append(rx)
        if start:
            rx.start()
        return rx

    def down_receiver(self, **kwargs):
        """A receiver with a port of its own that is not listening (yet)."""
        rx = self.receiver(**kwargs)
        rx.stop()
        return rx

    def site(self, port, name="site", **kwargs):
        s = StoreSite(self.tmp / name, port=port, **kwargs)
        self.sites.append(s)
        return s

    def close(self):
        for s in self.sites:
            s.close()
        for rx in self.receivers:
            try:
                rx.stop()
            except Exception:
                pass


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.close()


def wait_log(daemon, pattern, timeout, what, after=0):
    m = daemon.wait_for_log(pattern, timeout, after=after)
    assert m is not None, f"expected {what} (log /{pattern}/) within {timeout} s\n{daemon.describe()}"
    return m


def wait_until(predicate, timeout, interval=0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def stop_cleanly(daemon, what="the daemon"):
    rc = daemon.stop(timeout=20)
    assert rc == 0, f"expected {what} to stop on SIGTERM with status 0, got {rc}\n{daemon.describe()}"
    assert daemon.crash_markers() == [], f"crash markers in {what}'s output\n{daemon.describe()}"
    return rc


def settle_and_check(site, rx, context="", **kwargs):
    """A quiet run sends what is left; the receiver must then hold 1..last. Stopped cleanly,
    it sends its own stop event too (the drain of a planned stop): 1..last again after it.
    Returns the store's counters after the stop."""
    settler, c, _ = site.settle(rx, **kwargs)
    try:
        assert_complete(rx, c.last_seq, site.site_id, context=context + "\n" + settler.describe(2000))
    finally:
        stop_cleanly(settler, "the settling run")
    after = site.counters()
    assert after.last_seq > c.last_seq, f"expected a stop event from the settling run: {c} -> {after}"
    assert_complete(rx, after.last_seq, site.site_id,
                    context=f"(after the settling run's clean stop, which should send its stop event)\n"
                            f"{settler.describe(2000)}")
    return after


def log_metadata(line, key):
    m = re.search(rf"\b{re.escape(key)}=(\S+)", line)
    return m.group(1) if m else None


# -- a. the happy path ------------------------------------------------------------------------

def test_every_record_arrives_once_in_seq_order(env):
    rx = env.receiver()
    site = env.site(rx.port)
    d = site.start(speed=60, start_minute=BEFORE_OUTAGE_MINUTE)
    wait_log(d, r"store open", 20, "the store to open")
    time.sleep(20)
    assert d.running, f"expected the daemon to keep running\n{d.describe()}"
    stop_cleanly(d)
    written = d.lines(containing="records written")
    assert written, f"expected a `records written` line at the clean stop\n{d.describe()}"
    first_run = site.counters()
    assert log_metadata(written[-1], "last_seq") == str(first_run.last_seq), (
        f"expected `records written` to say last_seq={first_run.last_seq} (the database's), "
        f"got: {written[-1]}")
    # A planned stop with the program reachable sends everything, the stop event included.
    stopping = d.lines(containing="upload: stopping")
    assert first_run.accepted_through == first_run.last_seq and rx.audit(SITE_ID).last == first_run.last_seq, (
        f"expected a clean stop to send the last records (through the stop event, seq "
        f"{first_run.last_seq}) before exiting; store {first_run}, receiver "
        f"{brief_audit(rx.audit(SITE_ID))}, log: {stopping}\n{d.describe()}")
    assert first_run.last_seq >= 600, (
        f"expected >= 600 records from 20 s at speed 60 with telemetry every site second, "
        f"the store has {first_run}")
    assert first_run.application_id == APPLICATION_ID and first_run.site_id == SITE_ID, first_run
    assert any("upload: connected to the central program" in l for l in d.lines("notice")), d.describe()

    c = settle_and_check(site, rx)
    assert c.accepted_through == c.last_seq

    records = rx.records(SITE_ID)
    assert [r["seq"] for r in records] == list(range(1, c.last_seq + 1))
    kinds = {r["kind"] for r in records}
    assert {"event", "telemetry"} <= kinds, f"expected events and telemetry, got kinds {kinds}"
    assert records[0]["kind"] == "event" and records[0].get("event") == "appliance_started" \
        and records[0].get("version"), f"expected seq 1 to be appliance_started with a version: {records[0]}"
    bad_times = [r for r in records if not TIME_RE.match(r["time"])]
    assert bad_times == [], f"expected UTC ISO 8601 times with ms, got {bad_times[:3]}"
    events = [r.get("event") for r in records if r["kind"] == "event"]
    for name in ("mode", "utility_lost", "appliance_stopped"):
        assert name in events, f"expected a `{name}` event (the outage starts 10 min in), got {events}"
    stops = [r["seq"] for r in records if r.get("event") == "appliance_stopped"]
    assert stops[0] <= first_run.last_seq, f"expected the first run's stop event among its seqs: {stops}"

    telemetry = [r for r in records if r["kind"] == "telemetry" and r["seq"] <= first_run.last_seq]
    assert len(telemetry) >= 600, f"expected >= 600 telemetry records, got {len(telemetry)}"
    members = {"mode", "grid_kw", "grid_kw_max", "grid_kw_min", "building_kw", "target_kw",
               "month_peak_kw", "utility", "switch", "shed", "inputs_fresh", "steps", "chargers"}
    missing = [(r["seq"], members - set(r)) for r in telemetry if not members <= set(r)]
    assert missing == [], f"expected every telemetry record to have {sorted(members)}: {missing[:3]}"
    assert all(len(r["chargers"]) == 4 for r in telemetry), telemetry[0]
    times = [iso_ms(r["time"]) for r in telemetry]
    backwards = [(telemetry[i]["seq"], telemetry[i]["time"], telemetry[i + 1]["time"])
                 for i in range(len(times) - 1) if times[i + 1] < times[i]]
    assert backwards == [], f"expected telemetry times never to go back within a run: {backwards[:5]}"
    steps = [b - a for a, b in zip(times, times[1:])]
    assert statistics.median(steps) == 1000, (
        f"expected telemetry every site second (1000 ms apart), median gap {statistics.median(steps)} ms")
    assert any(r.get("event") == "utility_lost" and r["seq"] <= first_run.last_seq for r in records)


# -- b. SIGKILL, a receiver that goes away and flaps -----------------------------------------

FLAKY = ("refuse:p=0.08,timeout:p=0.08:seconds=1,http_500:p=0.1,drop_mid_body:p=0.1,"
         "accept_but_drop_response:p=0.2")


def test_kill_9_during_uploads_to_a_flapping_receiver_loses_nothing_and_repeats_nothing(env):
    rng = random.Random(SEED)
    rx = env.receiver(faults=FLAKY, seed=SEED)
    site = env.site(rx.port, central={"batch_max_records": 50, "timeout_seconds": 2,
                                      "retry_max_seconds": 2, "gather_seconds": 1})
    runs = []          # (run, seconds before the kill, counters after the kill, ledger)
    kills = 10
    for i in range(kills):
        if i == 3:
            rx.stop()                   # the program goes away for two runs (~7 s)
        if i == 5:
            rx.start()
        d = site.start(speed=120)
        pause = rng.uniform(1, 6)
        time.sleep(pause)
        assert d.running, f"expected run {i + 1} to be running when it is killed\n{d.describe()}"
        d.kill()
        c = site.counters()
        runs.append((i + 1, round(pause, 1), c, site.ledger()))
    history = "\n".join(f"run {i}: killed after {p} s: {c}, ledger {l}" for i, p, c, l in runs)

    # Every run opened exactly what the one before it had committed: no seq went back.
    opened = []
    for d in site.daemons:
        lines = d.lines(containing="store open")
        opened.append(int(log_metadata(lines[0], "last_seq")) if lines else None)
    for k in range(1, len(runs)):
        if opened[k] is not None:
            assert opened[k] == runs[k - 1][2].last_seq, (
                f"expected run {k + 1} to open the store at last_seq {runs[k - 1][2].last_seq} "
                f"(what the killed run {k} had committed), its log says {opened[k]}\n{history}")
    for i, _, c, ledger in runs:
        assert ledger is not None and ledger["reserved_through"] >= c.last_seq \
            and ledger["accepted_through"] <= c.accepted_through, (
                f"expected the seq ledger to cover every used seq and claim no more than the "
                f"database confirmed after run {i}: {ledger} vs {c}\n{history}")
    assert runs[-1][2].last_seq > runs[0][2].last_seq

    # The program comes back for good; one more run stops cleanly; the rest goes up.
    rx.clear_faults()
    if not rx.running:
        rx.start()
    d = site.start(speed=60)
    time.sleep(4)
    stop_cleanly(d, "the last run")
    settler, c, a = site.settle(rx, timeout=90)
    try:
        requests = rx.requests
        faults = {}
        for e in requests:
            if e["fault"]:
                faults[e["fault"]] = faults.get(e["fault"], 0) + 1
        context = (f"{history}\nfaults fired: {faults}; requests: {len(requests)}\n"
                   f"last requests: {brief_requests(requests[-6:])}")
        assert_complete(rx, c.last_seq, context=context)
        assert sum(faults.values()) >= 3, f"expected the faults to have fired: {context}"
        moved = [l for l in site.all_logs().splitlines() if "moved aside" in l]
        assert moved == [] and site.moved_aside() == [], (
            f"expected SIGKILL never to damage the database (nothing moved aside): {moved}")
        assert site.crash_markers() == [], f"crash markers in a run's output\n{context}"
        # Same content for a seq at the receiver as in the store (for the rows still there).
        rows = dict(query_store(site.db, "SELECT seq, kind FROM record"))
        got = {r["seq"]: r["kind"] for r in rx.records(SITE_ID)}
        differ = [(s, k, got.get(s)) for s, k in rows.items() if got.get(s) != k]
        assert differ == [], f"expected the receiver's kinds to match the store's: {differ[:10]}"
    finally:
        stop_cleanly(settler, "the settling run")


# -- c. the program is down at start ---------------------------------------------------------

def test_receiver_down_at_start_then_everything_arrives_once(env):
    rx = env.down_receiver()
    site = env.site(rx.port)
    d = site.start(speed=60)
    wait_log(d, r"warning .*upload: offline:", 15, "an `upload: offline` warning")
    time.sleep(10)
    c = site.counters()
    assert c.last_seq >= 400 and c.accepted_through == 0, (
        f"expected a backlog of >= 400 records and nothing confirmed after 10 s offline: {c}")
    assert rx.audit(SITE_ID).count == 0
    offline = d.lines("warning", "upload: offline")
    assert len(offline) == 1, (
        f"expected one `upload: offline` warning while it stays offline (not one per retry), "
        f"got {len(offline)}:\n" + "\n".join(offline[:5]))
    after = d.log_size()
    rx.start()
    wait_log(d, r"notice .*upload: connected to the central program", 20,
             "`upload: connected` once the program is back", after=after)
    assert wait_until(lambda: site.counters().accepted_through >= c.last_seq, 20), (
        f"expected the backlog written while offline (through seq {c.last_seq}) to be confirmed "
        f"within 20 s of the program coming back; store {site.counters()}, receiver "
        f"{brief_audit(rx.audit(SITE_ID))}\n{d.describe()}")
    stop_cleanly(d)
    settle_and_check(site, rx, context=d.describe(2000))


# -- d. a wrong token, then the right one ---------------------------------------------------

def test_wrong_token_is_refused_loudly_records_are_kept_and_a_new_token_is_used_without_restart(env):
    rx = env.receiver()
    site = env.site(rx.port, token="not-the-token", central={"unauthorized_retry_seconds": 2})
    d = site.start(speed=60)
    wait_log(d, r"alarm upload-refused raised", 15, "alarm upload-refused")
    assert wait_until(lambda: len(d.lines("error", "upload refused: HTTP 401")) >= 3, 15), (
        f"expected `upload refused: HTTP 401` at error level at every attempt (every ~2 s)\n{d.describe()}")
    c = site.counters()
    assert c.last_seq >= 100 and c.accepted_through == 0, (
        f"expected records kept and none confirmed while the token is refused: {c}")
    statuses = {e["status"] for e in rx.requests}
    assert rx.audit(SITE_ID).count == 0 and statuses == {401}, (
        f"expected nothing stored at the receiver and only 401 answers, got statuses {statuses}")
    attempts = [e["time"] for e in rx.requests]
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert gaps and min(gaps) >= 1.5, (
        f"expected retries after a 401 no faster than unauthorized_retry_seconds (2 s, jitter "
        f"0.8..1.2), got gaps {[round(g, 2) for g in gaps]}")

    after = d.log_size()
    site.write_token(TOKEN)
    wait_log(d, r"alarm upload-refused cleared", 15, "alarm upload-refused cleared with the new token",
             after=after)
    assert wait_until(lambda: site.counters().accepted_through >= c.last_seq, 15), (
        f"expected the records kept while refused (through {c.last_seq}) to go up with the new "
        f"token, without a restart; store {site.counters()}\n{d.describe()}")
    assert d.running and len(site.daemons) == 1
    stop_cleanly(d)
    settle_and_check(site, rx)
    events = [r for r in rx.records(SITE_ID) if r["kind"] == "event"]
    assert any(r.get("event") == "alarm_raised" and r.get("id") == "upload-refused" for r in events), (
        f"expected an alarm_raised event for upload-refused among {[(r.get('event'), r.get('id')) for r in events]}")


# -- e. 413 ---------------------------------------------------------------------------------

def test_batch_too_large_shrinks_batches_and_everything_arrives_once(env):
    rx = env.receiver(max_records=50)
    site = env.site(rx.port, central={"batch_max_records": 1000})
    d = site.start(speed=200)
    m = wait_log(d, r"warning .*upload: the program took the batch as too large; at most (\d+) records per batch now",
                 40, "the batch-shrinking warning")
    assert wait_until(lambda: any(e["status"] in (200, 201) and e["records"] > 1 for e in rx.requests), 30), (
        f"expected batches to go up once they are small enough\n{brief_requests(rx.requests[-8:])}\n{d.describe()}")
    time.sleep(5)
    stop_cleanly(d)
    shrinks = [int(x) for x in re.findall(r"at most (\d+) records per batch now", d.log())]
    assert shrinks[-1] <= 50, f"expected the batch size to end at <= 50 records, shrinks: {shrinks}"
    accepted = [e for e in rx.requests if e["status"] in (200, 201)]
    too_big = [e for e in accepted if e["records"] > 50]
    assert too_big == [] and any(e["status"] == 413 for e in rx.requests)
    confirmed = site.counters().accepted_through
    assert confirmed >= 500, (
        f"expected uploads to keep up in small batches (>= 500 records confirmed), got {confirmed}; "
        f"{brief_audit(rx.audit(SITE_ID))}")
    settle_and_check(site, rx, context=d.describe(2000))
    late = [e for e in rx.requests if e["status"] in (200, 201) and e["records"] > 50]
    assert late == [], f"expected every accepted batch to hold <= 50 records: {brief_requests(late[:3])}"


# -- f. 429 with Retry-After ---------------------------------------------------------------

def test_429_retry_after_is_honoured(env):
    rx = env.receiver(faults="http_429:n=1:retry_after=3")
    site = env.site(rx.port)
    d = site.start(speed=60)
    assert wait_until(lambda: any(e["status"] in (200, 201) for e in rx.requests), 20), (
        f"expected an accepted batch after the 429\n{brief_requests(rx.requests)}\n{d.describe()}")
    reqs = rx.requests
    assert reqs[0]["status"] == 429 and reqs[0]["fault"] == "http_429", brief_requests(reqs[:3])
    wait = reqs[1]["time"] - reqs[0]["time"]
    assert 2.95 <= wait <= 6.0, (
        f"expected the next request 3..3.6 s (Retry-After 3, jitter up to +20%) after the 429, "
        f"it came after {wait:.2f} s\n{brief_requests(reqs[:3])}")
    assert d.lines("warning", "upload: throttled"), f"expected an `upload: throttled` warning\n{d.describe()}"
    first_of = [int(e["idempotency_key"].rsplit(":", 1)[1].split("-")[0]) for e in reqs[:2]]
    assert first_of == [1, 1], (
        f"expected the retry to start at seq 1 like the throttled batch, first seqs {first_of}")
    stop_cleanly(d)


# -- g. a full disk -----------------------------------------------------------------------

def _mount_tmpfs(path, size):
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the full-disk test (needs root / CAP_SYS_ADMIN): "
                    f"{r.stderr.strip() or r.returncode}")


def _umount(path):
    for _ in range(20):
        r = subprocess.run(["umount", str(path)], capture_output=True, text=True)
        if r.returncode == 0 or "not mounted" in r.stderr:
            return
        time.sleep(0.25)
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_full_disk_raises_store_write_keeps_running_and_recovers_without_gaps(env, tmp_path):
    mnt = tmp_path / "small-disk"
    _mount_tmpfs(mnt, "3m")
    try:
        rx = env.down_receiver()
        site = env.site(rx.port, store={"path": str(mnt / "store.db")})
        d = site.start(speed=200)
        wait_log(d, r"alarm store-write raised", 90, "alarm store-write (the 3 MiB disk fills)")
        errors = [l for l in d.lines("error") if "store:" in l]
        assert errors, f"expected an error line from the store\n{d.describe()}"
        assert any(str(mnt) in l or "full" in l.lower() or "disk" in l.lower() for l in errors), (
            f"expected the store's error to name the path or say the disk is full: {errors[:3]}")
        time.sleep(3)
        assert d.running and d.crash_markers() == [], f"expected the daemon to ride it out\n{d.describe()}"
        during = site.counters()

        after = d.log_size()
        r = subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], capture_output=True, text=True)
        assert r.returncode == 0, f"remount failed: {r.stderr}"
        rx.start()
        wait_log(d, r"alarm store-write cleared", 20, "alarm store-write cleared once there is room",
                 after=after)
        assert wait_until(lambda: site.counters().last_seq > during.last_seq, 10), (
            f"expected the store to take records again (last_seq above {during.last_seq})")
        time.sleep(3)
        stop_cleanly(d)
        assert d.lines("notice", "store: writing again after"), (
            f"expected a `store: writing again after` notice once the disk had room\n{d.describe()}")
        c = settle_and_check(site, rx, context=d.describe(3000))
        assert c.last_seq > during.last_seq
    finally:
        env.close()
        _umount(mnt)


# -- h. a damaged database ----------------------------------------------------------------

def _damage(db, how):
    size = db.stat().st_size
    noise = random.Random(SEED).randbytes
    with open(db, "r+b") as f:
        if how == "header":
            f.write(noise(4096))              # the header and the schema page
        elif how == "middle":
            f.seek((size // 2) // 4096 * 4096)
            f.write(noise(3 * 4096))          # three whole pages of the record table
        elif how == "truncated":
            f.truncate(size // 3)
        f.flush()
        os.fsync(f.fileno())


@pytest.mark.parametrize("how", ["header", "middle", "truncated"])
def test_damaged_database_is_moved_aside_and_seqs_are_never_reused(env, how):
    rx = env.receiver()
    site = env.site(rx.port)
    d = site.start(speed=60)
    assert wait_until(lambda: (site.try_counters() or (0, 0))[1] > 0, 20), (
        f"expected a first upload\n{d.describe()}")
    time.sleep(3)
    stop_cleanly(d)
    old = site.counters()
    ledger = site.ledger()
    # The store at rest as one file: a clean stop leaves its pages in the WAL (store.db
    # itself is one page then), and damage to the file must be damage to the data.
    checkpoint(site.db)
    wal = Path(str(site.db) + "-wal")
    assert not wal.exists() and site.db.stat().st_size > 64 * 1024, (
        f"expected the checkpointed store in one file of > 64 KiB, got {site.db.stat().st_size} "
        f"bytes, WAL {'present' if wal.exists() else 'gone'}")
    _damage(site.db, how)

    d2 = site.start(speed=60)
    m = wait_log(d2, r"critical .*store: database moved aside to (\S+): (.*); a fresh one was started", 20,
                 "the damaged database moved aside")
    assert Path(m.group(1)).exists() and site.moved_aside() == [Path(m.group(1))], (
        f"expected the damaged file at {m.group(1)}, found {site.moved_aside()}")
    lost = wait_log(d2, r"critical .*store: seqs (\d+)\.\.\.(\d+) may have been lost", 10,
                    "the lost seqs named")
    first_lost, last_lost = int(lost.group(1)), int(lost.group(2))
    assert first_lost == old.accepted_through + 1 and last_lost == ledger["reserved_through"] \
        and last_lost >= old.last_seq, (
            f"expected seqs {old.accepted_through + 1}...{ledger['reserved_through']} (after the "
            f"confirmed ones, through the ledger's reservation) to be named lost, got "
            f"{first_lost}...{last_lost}; old store {old}, ledger {ledger}")
    wait_log(d2, r"alarm store-replaced raised", 15, "alarm store-replaced")
    time.sleep(3)
    assert d2.running, f"expected the daemon to keep running on a fresh database\n{d2.describe()}"
    new = site.counters()
    assert new.application_id == APPLICATION_ID and new.site_id == SITE_ID
    first_new = query_store(site.db, "SELECT MIN(seq) FROM record")[0][0]
    assert first_new == last_lost + 1, (
        f"expected the fresh database to number from {last_lost + 1} (above everything the old one "
        f"could have used), its first record is seq {first_new}")
    stop_cleanly(d2)

    settle_and_check(site, rx, context=d2.describe(3000))
    records = {r["seq"]: r for r in rx.records(SITE_ID)}
    not_lost = [s for s in range(first_lost, last_lost + 1)
                if records[s]["kind"] != "event" or records[s].get("event") != "records_lost"]
    assert not_lost == [], (
        f"expected seqs {first_lost}..{last_lost} to arrive as records_lost events, these did not: "
        f"{[records[s] for s in not_lost[:3]]}")
    assert records[first_new].get("event") == "appliance_started", records[first_new]
    assert records[1].get("event") == "appliance_started", records[1]


# -- i. someone else's SQLite file --------------------------------------------------------

def test_foreign_sqlite_file_is_moved_aside_intact(env):
    rx = env.receiver()
    site = env.site(rx.port)
    site.db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(site.db)
    con.execute("CREATE TABLE inventory (item TEXT PRIMARY KEY, qty INTEGER)")
    con.executemany("INSERT INTO inventory VALUES (?, ?)", [(f"part-{i}", i) for i in range(500)])
    con.commit()
    con.close()
    digest = sha256(site.db)
    original = site.db.read_bytes()[:100]

    d = site.start(speed=60)
    m = wait_log(d, r"critical .*store: database moved aside to (\S+): (.*); a fresh one was started", 20,
                 "the foreign database moved aside")
    aside, reason = Path(m.group(1)), m.group(2)
    assert "not a Microgrid Edge store" in reason and "inventory" in reason, (
        f"expected the reason to say it is not a Microgrid Edge store (and name its table), got {reason!r}")
    con = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT COUNT(*), SUM(qty) FROM inventory").fetchone()
    finally:
        con.close()
    assert rows == (500, sum(range(500))), f"expected the foreign table intact at {aside}, got {rows}"
    assert wait_until(lambda: (site.try_counters() or (0,))[0] > 0, 10), d.describe()
    c = site.counters()
    assert c.application_id == APPLICATION_ID and c.site_id == SITE_ID, c
    assert wait_until(lambda: rx.audit(SITE_ID).first == 1, 10), "expected seq 1 uploaded from the fresh store"
    stop_cleanly(d)
    with open(aside, "rb") as f:
        header = f.read(100)
    assert sha256(aside) == digest, (
        f"expected the foreign file moved aside byte for byte as it was ({aside}); it was changed: "
        f"header bytes 18-19 (write/read format, 1 = rollback journal, 2 = WAL) are now "
        f"{header[18]}/{header[19]}, were {original[18]}/{original[19]}; changed header offsets: "
        f"{[i for i in range(100) if header[i] != original[i]]} (opened for the check as a WAL "
        f"DatabasePool?)")


# -- j. another site's database -----------------------------------------------------------

def test_another_sites_database_is_moved_aside_not_uploaded(env):
    tokens = {"site-1": "tok-one-8c1d", "site-2": "tok-two-51ae"}
    rx = env.receiver(tokens=tokens)
    site = env.site(rx.port, token=tokens["site-1"])
    d = site.start(speed=60)
    assert wait_until(lambda: rx.audit("site-1").count > 0, 20), d.describe()
    stop_cleanly(d)
    before = rx.audit("site-1")

    site.configure(central={"site_id": "site-2"})
    site.write_token(tokens["site-2"])
    d2 = site.start(speed=60)
    m = wait_log(d2, r"critical .*store: database moved aside to (\S+): (.*); a fresh one was started", 20,
                 "site-1's database moved aside")
    assert "site-1" in m.group(2) and "site-2" in m.group(2), (
        f"expected the reason to name the other site (site-1) and this one, got {m.group(2)!r}")
    wait_log(d2, r"alarm store-replaced raised", 15, "alarm store-replaced")
    assert wait_until(lambda: rx.audit("site-2").count > 0, 15), (
        f"expected site-2's own records to go up\n{d2.describe()}")
    c = site.counters()
    assert c.site_id == "site-2", c
    first = query_store(site.db, "SELECT MIN(seq) FROM record")[0][0]
    assert first == 1 and rx.audit("site-2").first == 1, (
        f"expected site-2's seqs to start at 1 (seqs are per site), store starts at {first}, "
        f"receiver {brief_audit(rx.audit('site-2'))}")
    assert rx.audit("site-1") == before, "expected nothing more for site-1"
    stop_cleanly(d2)
    lost = [r for r in rx.records("site-2") if r.get("event") == "records_lost"]
    assert lost == [], f"expected no records_lost for a site that never had records: {lost[:3]}"


# -- k. the disk budget ------------------------------------------------------------------

def test_disk_budget_thins_telemetry_only_and_everything_still_arrives(env):
    rx = env.down_receiver()
    site = env.site(rx.port, store={"budget_mb": 1, "summary_interval_minutes": 1})
    d = site.start(speed=300)
    samples = []
    stop_sampling = threading.Event()

    def sample():
        while not stop_sampling.is_set():
            try:
                c = read_store(site.db)
                if c:
                    samples.append((time.monotonic(), c.used_bytes, c.last_seq))
            except sqlite3.Error:
                pass
            stop_sampling.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        wait_log(d, r"warning .*store: budget thinning", 60, "the budget thinning telemetry")
        wait_log(d, r"alarm store-budget raised", 5, "alarm store-budget")
        # Run on until the site has written a dozen budgets' worth (~700 bytes a record).
        assert wait_until(lambda: (site.try_counters() or (0,))[0] >= 18000, 90), (
            f"expected 18000 records within 90 s at --speed 300: {site.try_counters()}\n{d.describe()}")
    finally:
        stop_sampling.set()
        sampler.join(5)
    assert d.running, d.describe()
    offline = site.counters()
    stop_cleanly(d)
    thinning_lines = d.lines("warning", "store: budget thinning")
    logged_used = [float(x) for x in re.findall(r"store: budget [\w-]+ \([^)]*?([\d.]+) of 1 MiB used", d.log())]

    rx.start()
    c = settle_and_check(site, rx, context=d.describe(2000), timeout=120)
    records = rx.records(SITE_ID)
    by_kind = {}
    for r in records:
        by_kind.setdefault(r["kind"], []).append(r)
    thinned_events = [r for k in ("event", "command", "session") for r in by_kind.get(k, [])
                      if "thinned_into" in r or ("event" not in r and k == "event")]
    assert thinned_events == [], f"expected no event/command/session thinned: {thinned_events[:3]}"
    telemetry = by_kind.get("telemetry", [])
    stubs = [r for r in telemetry if "thinned_into" in r]
    summaries = {r["seq"]: r for r in telemetry if "summary" in r}
    full = [r for r in telemetry if "thinned_into" not in r and "summary" not in r]
    assert stubs and summaries, (
        f"expected thinned telemetry (thinned_into) and summaries, got {len(stubs)} stubs, "
        f"{len(summaries)} summaries, {len(full)} full records")
    orphans = [r for r in stubs if r["thinned_into"] not in summaries]
    assert orphans == [], f"expected every thinned_into to name a summary record: {orphans[:3]}"
    counts = {}
    for r in stubs:
        counts[r["thinned_into"]] = counts.get(r["thinned_into"], 0) + 1
    wrong = [(s, summaries[s]["summary"], counts.get(s, 0)) for s in summaries
             if summaries[s]["summary"]["records"] != counts.get(s, 0) + 1]
    assert wrong == [], (
        f"expected each summary's `records` to be 1 + the records thinned into it: {wrong[:5]}")
    assert offline.last_seq >= 18000, f"expected >= 18000 records written while offline: {offline}"

    # Last: the size. Used pages right after each maintenance, and as sampled meanwhile.
    mib = 1 << 20
    assert logged_used and max(logged_used) <= 1.0, (
        f"expected the store at or under its 1 MiB budget after each maintenance, the log says "
        f"{logged_used}\n" + "\n".join(thinning_lines[:5]))
    peak = max(u for _, u, _ in samples)
    t0 = samples[0][0]
    timeline = ", ".join(f"{t - t0:.0f}s:{u / mib:.2f}MiB" for t, u, _ in samples[::4])
    assert peak < 1.3 * mib, (
        f"expected the database's used pages to stay near the 1 MiB budget (< 1.3 MiB), the peak "
        f"was {peak / mib:.2f} MiB; used over time: {timeline}")


# -- l. gathering at --speed > 1 ------------------------------------------------------------

def test_small_backlog_goes_up_within_gather_seconds_at_speed(env):
    """gather_seconds: while connected, a backlog smaller than a batch waits at most this
    long. At --speed 60 (60 records a real second) with gather_seconds 2 the receiver should
    never be more than a few seconds (a few hundred records) behind the store."""
    rx = env.receiver()
    site = env.site(rx.port, central={"gather_seconds": 2, "batch_max_records": 1000})
    d = site.start(speed=60)
    wait_log(d, r"upload: connected to the central program", 15, "the first upload")
    lags = []
    deadline = time.monotonic() + 14
    while time.monotonic() < deadline:
        c = site.counters()
        lags.append(c.last_seq - c.accepted_through)
        time.sleep(0.5)
    stop_cleanly(d)
    assert max(lags) < 400, (
        f"expected the store's unconfirmed backlog to stay under 400 records (gather_seconds 2 "
        f"at 60 records/s), it reached {max(lags)}; backlog every 0.5 s: {lags}. (Gathering must "
        f"wait on the uploader's own clock: record times follow site time, which at --speed 60 "
        f"lies ahead of the wall clock.)")


# -- m. what staff see on a panel ------------------------------------------------------------

def test_panel_shows_connectivity_and_backlog(env, broker, tmp_path):
    """The retained state carries the upload's state and the backlog: offline with records
    waiting while the program is away, connected with the backlog gone once it is back."""
    from mqtt_daemon import Daemon, Panel, write_config
    rx = env.down_receiver()
    directory = tmp_path / "panel-site"
    config = write_config(directory, broker, meters=[])
    token = directory / "token"
    token.write_text(TOKEN + "\n")
    with open(config, "a") as f:
        f.write(f"store:\n  path: {directory / 'store.db'}\n  telemetry_every_seconds: 1\n"
                f"central:\n  base_url: http://127.0.0.1:{rx.port}\n  site_id: {SITE_ID}\n"
                f"  token_file: {token}\n  timeout_seconds: 2\n  retry_max_seconds: 1\n"
                f"  gather_seconds: 1\n")
    d = Daemon(config, directory, speed=10)
    panel = Panel(broker, "panel-lobby")
    try:
        def records(state):
            return (state or {}).get("records") or {}

        offline = panel.wait_state(
            lambda s: records(s).get("upload", {}).get("state") == "offline"
            and records(s).get("store", {}).get("backlog", 0) >= 20, 30)
        assert offline is not None, (
            f"expected the state to show upload offline with a backlog of 20 or more while the "
            f"program is down; last records section: {records(panel.state())}\n{d.describe()}")
        upload = records(offline)["upload"]
        assert upload["last_error"] and "refused" in upload["last_error"].lower(), (
            f"expected last_error to say the connection was refused: {upload}")
        assert upload["next_attempt"], f"expected the next attempt's time: {upload}"
        assert records(offline)["store"]["oldest_unuploaded"], records(offline)

        rx.start()
        back = panel.wait_state(
            lambda s: records(s).get("upload", {}).get("state") == "connected"
            and records(s).get("store", {}).get("backlog", 10**9) < 15, 30)
        assert back is not None, (
            f"expected upload connected and the backlog worked off (< 15) within 30 s of the program "
            f"coming back; last records section: {records(panel.state())}\n{d.describe()}")
        assert records(back)["upload"]["accepted_through"] >= records(offline)["store"]["last_seq"], (
            f"expected everything that waited to be confirmed: {records(back)} vs {records(offline)}")
        assert rx.audit(SITE_ID).gaps == [], rx.audit(SITE_ID)
    finally:
        panel.close()
        d.stop()


# -- i. refusals an operator can read -------------------------------------------------------

# The program answers before it reads the batch (413 keeping the connection and then
# answering the unread body as a request of its own, 500 and 429 closing it), then 400 with
# an HTML page; one of each, in this order, then it takes everything.
EARLY_REFUSALS = ("http_413:n=1:early=keep:seconds=0.5,http_500:n=1:early=1,"
                  "http_429:n=1:early=1:retry_after=1,http_400_html:n=1")


def test_refusals_are_logged_with_status_reason_and_a_bounded_body_and_nothing_is_lost(env):
    rx = env.receiver(faults=EARLY_REFUSALS)
    site = env.site(rx.port, central={"retry_max_seconds": 1})
    d = site.start(speed=60)
    wait_log(d, r"notice .*upload: connected to the central program", 40,
             "`upload: connected` once the four refusals are over")
    expected = [
        # (split when the batch has records to split, else kept and retried: both say it)
        ("warning", "upload: ",
         'HTTP 413 Payload Too Large: the batch is too big for the program; the program said: '
         '"injected: fault http_413: send smaller batches"'),
        ("warning", "upload: offline: ",
         'HTTP 500 Internal Server Error: the program failed on its side; the program said: '
         '"injected: fault http_500"; records kept, retrying in'),
        ("warning", "upload: throttled: ",
         'HTTP 429 Too Many Requests: the program asks to slow down; the program said: '
         '"injected: fault http_429"; records kept, retrying in'),
        ("warning", "upload: offline: ",
         'HTTP 400 Bad Request: the program refused the batch as malformed; the program said: '
         'an HTML page ('),
    ]
    uploads = [l for l in d.lines() if "[CentralUpload]" in l and "upload" in l]
    for level, start, text in expected:
        found = [l for l in d.lines(level, start) if text in l]
        assert found, (f"expected a {level} line `{start}...{text}...`, the uploader logged:\n  "
                       + "\n  ".join(uploads))
    html = [l for l in uploads if "an HTML page (" in l][0]
    assert "<" not in html and re.search(r"an HTML page \(\d+ bytes\): \"Error response", html), html
    bad = [l for l in uploads if "invalid constant" in l or len(l) > 600]
    assert bad == [], f"expected no parser jargon and bounded lines, got {bad}"
    assert [e["status"] for e in rx.requests[:4]] == [413, 500, 429, 400], brief_requests(rx.requests[:6])
    stop_cleanly(d)
    settle_and_check(site, rx, context=d.describe(3000))

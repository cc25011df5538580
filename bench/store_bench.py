#!/usr/bin/env python3
"""Store-and-forward bench: how fast the record store writes and uploads, and whether the
daemon's memory stays flat through a simulated week with the central program unreachable.

    python3 bench/store_bench.py [--binary PATH] [--records 200000] [--week-speed 3000]
                                 [--week-wall-cap 420] [--skip-week] [--json-only]

(a) throughput: `microgrid-edge bench-store` writes --records telemetry-sized records in
    transactions of 100 (as the appliance does once a second: WAL, synchronous=FULL), then
    uploads them to the reference receiver (Tests/Integration/central_receiver.py, started
    in this process, fsync per batch, 8 MiB bodies) in batches of 1000. Again with one
    record per transaction (5000 records) to show what batching buys.
(b) a week offline: `microgrid-edge run --speed S --stop-after 7d` on the school-bus example
    with telemetry every site second, a 64 MiB disk budget (so telemetry is thinned during
    the week) and `central.base_url` on a closed port. VmRSS is sampled every 2 s; the
    site time reached comes from the store (the newest telemetry record's time). If the
    control loop cannot keep the speed, the achieved speed (site s / real s) is reported
    and the run is cut at --week-wall-cap seconds.

Prints a readable report and one JSON line per part. Figures depend on the machine (its
line is printed first); compare ratios. Exit status 0, or 2 if the bench could not run.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "Integration"))

from central_receiver import CentralReceiver  # noqa: E402
from mge_helpers import BINARY, CLEAN_ENV  # noqa: E402
from store_forward import QUIET_MINUTE, StoreSite, free_port, machine_line, query_store  # noqa: E402

MIB = 1 << 20
DAY = 86_400


def say(args, text=""):
    if not args.json_only:
        print(text, flush=True)


# -- (a) bench-store ---------------------------------------------------------------------

def bench_store(args, tmp, records, batch, label):
    rx = CentralReceiver(tmp / f"central-{label}", tokens={"bench-site": "bench-token"},
                         max_body_bytes=8 << 20).start()
    try:
        cmd = [str(args.binary), "bench-store", "--dir", str(tmp / f"store-{label}"),
               "--records", str(records), "--batch", str(batch), "--upload-url", rx.url,
               "--site", "bench-site", "--token", "bench-token"]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(CLEAN_ENV), timeout=900)
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n"
                               f"{proc.stderr[-2000:]}")
        line = [l for l in proc.stdout.splitlines() if l.startswith("{")][-1]
        result = json.loads(line)
        audit = rx.audit("bench-site")
        result["receiver_ok"] = (audit.count == records and audit.last == records
                                 and not audit.gaps and not audit.duplicates)
        result["wall_seconds"] = round(wall, 2)
        return result
    finally:
        rx.stop()


# -- (b) a week offline ------------------------------------------------------------------

def newest_site_time(db):
    """ms of the newest un-thinned telemetry record (uses the partial index)."""
    try:
        rows = query_store(db, "SELECT time_ms FROM record WHERE kind = 'telemetry' AND summary = 0 "
                               "ORDER BY seq DESC LIMIT 1")
        return rows[0][0] if rows else None
    except Exception:
        return None


def linear_slope(xs, ys):
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def week_offline(args, tmp):
    closed = free_port()
    site = StoreSite(tmp / "week", port=closed,
                     store={"telemetry_every_seconds": 1, "budget_mb": 64},
                     central={"timeout_seconds": 5, "retry_max_seconds": 300, "gather_seconds": 10})
    week = 7 * DAY
    d = site.start(speed=args.week_speed, start_minute=QUIET_MINUTE, args=["--stop-after", "7d"],
                   binary=args.binary)
    wall0 = time.time()
    t0 = time.monotonic()
    samples = []                # (real s, site s, rss MiB)
    site_s = 0.0
    try:
        while d.running and time.monotonic() - t0 < args.week_wall_cap:
            time.sleep(2)
            rss = d.rss_kib()
            if rss is None:
                break
            newest = newest_site_time(site.db)
            if newest is not None:
                site_s = max(site_s, newest / 1000 - wall0)
            samples.append((time.monotonic() - t0, site_s, rss / 1024))
    finally:
        capped = d.running
        if capped:
            d.stop(timeout=60)
        else:
            d.kill()
    real = time.monotonic() - t0
    c = site.try_counters()
    db_file = site.db.stat().st_size if site.db.exists() else 0
    wal = Path(str(site.db) + "-wal")
    warm = [s for s in samples if s[1] >= 3600]
    result = {
        "speed_asked": args.week_speed,
        "site_days": round(site_s / DAY, 3),
        "real_seconds": round(real, 1),
        "achieved_speed": round(site_s / real, 1) if real > 0 else None,
        "completed_week": site_s >= week - 120 and not capped,
        "cut_at_wall_cap": capped,
        "samples": len(samples),
        "records_written": c.last_seq if c else None,
        "db_file_mb": round(db_file / MIB, 2),
        "db_used_mb": round(c.used_bytes / MIB, 2) if c else None,
        "wal_mb": round(wal.stat().st_size / MIB, 2) if wal.exists() else 0,
        "thinning_lines": len(d.lines("warning", "store: budget thinning")),
        "exit_status": d.proc.returncode,
        "crash_markers": d.crash_markers(),
    }
    if warm:
        rss_vals = [s[2] for s in samples]
        start_rss = warm[0][2]
        # Warmed up: one site day in, the 64 MiB store has reached its budget (the site writes
        # about 60 MiB of telemetry a day) and thinning runs; caches are as full as they get.
        settled = [s for s in samples if s[1] >= DAY] or warm
        half = [s for s in warm if s[1] >= warm[-1][1] / 2] or warm
        slope = linear_slope([s[1] / DAY for s in half], [s[2] for s in half])
        by_day = {}
        for day in range(0, 8):
            at = [s for s in samples if s[1] >= max(day * DAY, 3600)]
            if at:
                by_day[f"d{day}" if day else "h1"] = round(at[0][2], 1)
        growth = max(s[2] for s in settled) - settled[0][2]
        result.update({
            "rss_start_mib": round(start_rss, 1),
            "rss_after_warmup_mib": round(settled[0][2], 1),
            "rss_median_mib": round(statistics.median(rss_vals), 1),
            "rss_max_mib": round(max(rss_vals), 1),
            "rss_end_mib": round(samples[-1][2], 1),
            "rss_by_site_day": by_day,
            "slope_mib_per_site_day": round(slope, 3) if slope is not None else None,
            "growth_after_warmup_mib": round(growth, 1),
            "verdict": "flat" if growth < 10 else "growing",
        })
    else:
        result["verdict"] = "no samples after the first simulated hour"
    return result, d


class _Skip(Exception):
    pass


def report_throughput(args, batched, single):
    say(args, "== record store throughput (bench-store; WAL, synchronous=FULL; receiver fsyncs each batch)")
    for r in (batched, single):
        say(args, f"  {r['records']:>7} records, {r['batch']:>3} per transaction: "
                  f"written {r['written_per_s']:>9,.0f}/s ({r['write_seconds']:.2f} s), "
                  f"{r['bytes_per_record']:.0f} B/record, db {r['database_mb']:.1f} MiB; "
                  f"uploaded {r.get('uploaded_per_s', 0):>9,.0f}/s in {r.get('upload_batches')} "
                  f"batches ({r.get('upload_seconds', 0):.2f} s); receiver complete: {r['receiver_ok']}")
    ratio = batched["written_per_s"] / single["written_per_s"]
    say(args, f"  batching 100 records per transaction writes {ratio:.0f}x as many records/s as one per "
              f"transaction (each commit is an fsync); the appliance writes once a second.")
    print(json.dumps({"bench": "store-throughput", "batched": batched, "single": single,
                      "batching_ratio": round(ratio, 1)}), flush=True)



def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", type=Path, default=BINARY)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--week-speed", type=float, default=3000)
    ap.add_argument("--week-wall-cap", type=float, default=420,
                    help="cut the week run after this many real seconds (default 420)")
    ap.add_argument("--skip-week", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--json-only", action="store_true")
    args = ap.parse_args()
    if not (args.binary.is_file() and os.access(args.binary, os.X_OK)):
        print(f"store bench: no executable at {args.binary}", file=sys.stderr)
        return 2

    say(args, machine_line())
    with tempfile.TemporaryDirectory(prefix="mge-store-bench-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            if args.skip_throughput:
                raise _Skip()
            batched = bench_store(args, tmp, args.records, 100, "batched")
            single = bench_store(args, tmp, 5000, 1, "single")
        except _Skip:
            batched = None
        except Exception as e:       # noqa: BLE001 - the bench reports and goes on
            print(f"store bench: bench-store failed: {e}", file=sys.stderr)
            return 2
        if batched is not None:
            report_throughput(args, batched, single)
        if args.skip_week:
            return 0
        say(args, f"== a week offline: run --speed {args.week_speed:g} --stop-after 7d, telemetry every site "
                  f"second, budget 64 MiB, central on a closed port (cut at {args.week_wall_cap:g} s real)")
        week, d = week_offline(args, tmp)
        say(args, f"  reached {week['site_days']} site days in {week['real_seconds']} s real: achieved speed "
                  f"{week['achieved_speed']}x (asked {args.week_speed:g}x)"
                  + ("" if week["completed_week"] else " - the week was NOT completed"))
        if "rss_start_mib" in week:
            say(args, f"  RSS after 1 site hour {week['rss_start_mib']} MiB, after 1 site day (warmed up) "
                      f"{week['rss_after_warmup_mib']}, median {week['rss_median_mib']}, max {week['rss_max_mib']}, "
                      f"end {week['rss_end_mib']} MiB; slope over the second half "
                      f"{week['slope_mib_per_site_day']} MiB per site day")
            say(args, "  RSS by site day (MiB): " + ", ".join(f"{k} {v}" for k, v in week["rss_by_site_day"].items()))
            say(args, f"  verdict: {week['verdict']} (max - RSS after warm-up = {week['growth_after_warmup_mib']} MiB; "
                      f"flat means < 10 MiB)")
        say(args, f"  records written {week['records_written']}, database file {week['db_file_mb']} MiB "
                  f"(used {week['db_used_mb']} MiB, WAL {week['wal_mb']} MiB), budget thinning lines "
                  f"{week['thinning_lines']}, exit status {week['exit_status']}, crash markers "
                  f"{week['crash_markers'] or 'none'}")
        print(json.dumps({"bench": "week-offline-rss", "machine": machine_line(), **week}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

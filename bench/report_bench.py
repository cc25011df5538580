#!/usr/bin/env python3
"""Report bench: how long `microgrid-edge report` takes over one site-year of records as the
central program stores them, and whether its memory stays bounded (it must stream, not hold
the year).

    python3 bench/report_bench.py [--binary PATH] [--records N] [--max-seconds 30]
                                  [--max-rss-mib 200] [--max-growth 0.20] [--generate-only]
                                  [--cache DIR] [--json-only]

The input: one site-year of 5-second telemetry (365 x 17,280 = 6,307,200 records by default;
--records N telemetry records for a quick run), plus what the appliance records beside it:
the `site` event first and daily (tariff, calendar, chargers, vehicles), mode changes, demand-response events
(announced, started, ended), outages (utility lost and restored, the transfer switch,
loads shed and restored) and one session record per vehicle departure. It is built from the
school-bus scenario (scenarios/school-buses-chicago: its hourly building load, its four
60 kW chargers and four buses with their sessions, its 30 events and 3 outages) by a simple
controller model: charge up to a demand target, discharge in events, carry the critical
load in outages. Every line is one NDJSON record in the appliance's member order
(docs/store-and-forward.md), with the `served_kw` and `ev_kw` means and each plugged
vehicle's `need_kwh`, as `simulate --record` writes them, seq 1.. without a gap,
times at the telemetry window's end in UTC with milliseconds. The lines are written from
templates (no json.dumps per line), and cached under --cache (default
$TMPDIR/mge-report-bench), keyed by the record count and the generator's version: the first
run takes a minute or two and about 6 GiB of disk (the year and its first half), later
runs none.

Then: `microgrid-edge report --records FILE --out DIR`, timed, with its memory read from
/proc/PID/status every 20 ms: the peak is VmHWM (the kernel's high-water mark of its RSS),
as last read before the exit. Again over
the first half of the same file (the first half-year, cut at a line): the report must stream,
so the peak RSS over the year may exceed the half-year's by at most --max-growth. The report's
own record count must equal the file's line count.

Prints the input, one line with the figures (records, seconds, records/s, peak RSS, the
half-year's, the machine), a verdict and a JSON line. Exit status 0 when every target is met, 1 when
one is missed (over --max-seconds for the year, over --max-rss-mib, RSS growth over
--max-growth, a report that fails or counts other than the file holds), 2 when the bench
could not run (no binary, or a binary without `report`). Figures depend on the machine and
on the page cache (the file is read from the cache after the first run); compare ratios.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "Integration"))

from mge_helpers import BINARY, CLEAN_ENV, cpu_model  # noqa: E402

GENERATOR_VERSION = 2
STEP_S = 5
YEAR_STEPS = 365 * 86_400 // STEP_S          # 6,307,200
SCENARIO = REPO / "scenarios" / "school-buses-chicago"
SITE = "bench-site"
MIB = 1 << 20


def machine_line():
    return f"machine: {os.cpu_count()} CPUs (nproc), {cpu_model() or 'unknown CPU'}"


# --------------------------------------------------------------------------- the records

def iso_ms(epoch_s):
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _load_scenario():
    sc = json.loads((SCENARIO / "scenario.json").read_text())
    hourly = []
    for line in (SCENARIO / "load.csv").read_text().splitlines()[1:]:
        minute, kw = line.split(",")
        hourly.append((int(minute), float(kw)))
    sessions = {c["id"]: [] for c in sc["chargers"]}
    for line in (SCENARIO / "sessions.csv").read_text().splitlines()[1:]:
        v, c, a, d, akwh, need = line.split(",")
        sessions[c].append((int(a), int(d), v, float(akwh), float(need)))
    for s in sessions.values():
        s.sort()
    return sc, hourly, sessions


def _site_record(sc, seq, time_s):
    t = sc["tariff"]
    return json.dumps({
        "seq": seq, "kind": "event", "time": iso_ms(time_s), "event": "site", "name": sc["name"],
        "time_zone": "Etc/UTC", "utc_offset_s": 0, "demand_interval_s": 900, "billing_cycle_day": 1,
        "critical_load_fraction": sc["site"]["critical_load_fraction"],
        "tariff": {"demand_charge_per_kw_month": t["demand_charge_per_kw_month"],
                   "energy_price_per_kwh": t["energy_price_per_kwh"], "dr_payment_per_kw": t["dr_payment_per_kw"]},
        "chargers": [{"id": c["id"], "max_charge_kw": c["max_charge_kw"],
                      "max_discharge_kw": c["max_discharge_kw"], "efficiency": c["efficiency"]}
                     for c in sc["chargers"]],
        "vehicles": [{"id": v["id"], "battery_kwh": v["battery_kwh"], "reserve_kwh": v["reserve_kwh"]}
                     for v in sc["vehicles"]],
    }, separators=(",", ":"))


TELEMETRY = ('{"seq":%d,"kind":"telemetry","time":"%s","mode":"%s","grid_kw":%.2f,"grid_kw_max":%.2f,'
             '"grid_kw_min":%.2f,"building_kw":%.2f,"served_kw":%.2f,"ev_kw":%.2f,"target_kw":%.1f,'
             '"month_peak_kw":%.1f,"utility":%s,"switch":"%s","shed":%s,"inputs_fresh":true,"steps":5,'
             '"chargers":[%s]}\n')
PLUGGED = '{"id":"%s","kw":%.2f,"setpoint_kw":%.2f,"online":true,"vehicle":"%s","energy_kwh":%.2f,"need_kwh":%.2f}'
EMPTY = '{"id":"%s","kw":0,"setpoint_kw":0,"online":true}'
EVENT = '{"seq":%d,"kind":"event","time":"%s","event":"%s"%s}\n'
SESSION = ('{"seq":%d,"kind":"session","time":"%s","vehicle":"%s","charger":"%s","plugged_in":"%s",'
           '"unplugged":"%s","energy_at_arrival_kwh":%.2f,"energy_at_departure_kwh":%.2f,'
           '"lowest_energy_kwh":%.2f,"charged_kwh":%.2f,"discharged_kwh":%.2f,"departure_need_kwh":%.2f,'
           '"need_met":%s}\n')


def generate(path, steps, half_path=None):
    """Write `steps` telemetry records and the events and sessions among them to path (and
    the lines up to the middle step to half_path). Returns {"records", "half_records"}."""
    sc, hourly, sessions = _load_scenario()
    start = datetime.fromisoformat(sc["start"]).replace(tzinfo=timezone.utc).timestamp()
    chargers = sc["chargers"]
    ids = [c["id"] for c in chargers]
    cmax = [float(c["max_charge_kw"]) for c in chargers]
    dmax = [float(c["max_discharge_kw"]) for c in chargers]
    eff = [float(c["efficiency"]) for c in chargers]
    battery = {v["id"]: float(v["battery_kwh"]) for v in sc["vehicles"]}
    reserve = {v["id"]: float(v["reserve_kwh"]) for v in sc["vehicles"]}
    crit = float(sc["site"]["critical_load_fraction"])
    export_limit = float(sc["site"]["event_export_limit_kw"])
    n = len(ids)

    # What happens at which step (a step is the 5 s window ending at start + (k+1)*5 s).
    def step_of(minute):
        return minute * 60 // STEP_S
    dr_announce = {step_of(e["notify_minute"]): e for e in sc["dr_events"]}
    dr_start = {step_of(e["start_minute"]): e for e in sc["dr_events"]}
    dr_end = {step_of(e["end_minute"]): e for e in sc["dr_events"]}
    out_start = {step_of(o["start_minute"]) for o in sc["outages"]}
    out_end = {step_of(o["end_minute"]) for o in sc["outages"]}
    # Per charger: the next session's (arrive step, depart step, vehicle, kWh, need).
    queue = [[(step_of(a), step_of(d), v, akwh, need) for a, d, v, akwh, need in sessions[c]] for c in ids]
    nxt = [0] * n
    plugged = [None] * n       # [vehicle, energy, arrival energy, lowest, charged, discharged, need, depart, plugged-in time]

    # Building load: the hourly figures, linearly between hours, with a deterministic ripple.
    loads = [kw for _, kw in hourly]
    nload = len(loads)

    seq = 3
    lines = [_site_record(sc, 1, start) + "\n",
             EVENT % (2, iso_ms(start), "appliance_started", ',"version":"report-bench"'),
             EVENT % (3, iso_ms(start), "mode", ',"from":null,"to":"grid-connected","grid_kw":0,"target_kw":250')]
    written = 0
    half_step = steps // 2 if half_path else -1
    half_records = half_bytes = None
    f = open(path, "w", buffering=1 << 22)

    next_month = _next_month(start)
    mode = "grid-connected"
    grid = 0.0          # the last step's, for mode events
    utility = True
    in_event = None
    month_peak = 0.0
    interval_sum = 0.0
    interval_n = 0
    target = 250.0
    rng = 0x2545F491

    def event(name, members=""):
        nonlocal seq
        seq += 1
        lines.append(EVENT % (seq, now_iso, name, members))

    for k in range(steps):
        t = start + (k + 1) * STEP_S
        now_iso = _iso_fast(t)
        # A new month starts a new peak (a window belongs to the month it starts in).
        if t - STEP_S >= next_month:
            next_month = _next_month(next_month)
            month_peak = 0.0
        # The site record, at the start and daily (as the appliance states it).
        if k and k % (86_400 // STEP_S) == 0:
            seq += 1
            lines.append(_site_record(sc, seq, t - STEP_S) + "\n")
        # State changes at this step, as the appliance records them: the cause first.
        if k in out_start:
            utility = False
            event("utility_lost")
            event("mode", ',"from":"%s","to":"islanded","grid_kw":%.1f,"target_kw":%.1f' % (mode, grid, target))
            mode = "islanded"
            event("transfer_switch_command", ',"command":"toIsland"')
            event("transfer_switch", ',"from":"utility","to":"island"')
            event("loads_shed")
        if k in out_end:
            utility = True
            event("utility_restored")
            event("transfer_switch_command", ',"command":"toUtility"')
            event("transfer_switch", ',"from":"island","to":"utility"')
            event("loads_restored")
            to = "demand-response" if in_event else "grid-connected"
            event("mode", ',"from":"islanded","to":"%s","grid_kw":%.1f,"target_kw":%.1f' % (to, grid, target))
            mode = to
        if k in dr_announce:
            e = dr_announce[k]
            event("dr_event_announced", ',"id":"%s","starts_in_s":%d,"lasts_s":%d,"start":"%s","end":"%s"' % (
                e["id"], (e["start_minute"] - e["notify_minute"]) * 60, (e["end_minute"] - e["start_minute"]) * 60,
                iso_ms(start + e["start_minute"] * 60), iso_ms(start + e["end_minute"] * 60)))
        if k in dr_start:
            e = dr_start[k]
            in_event = [e["id"], 0.0, 0, t]
            if utility:
                event("mode", ',"from":"%s","to":"demand-response","grid_kw":%.1f,"target_kw":%.1f' % (mode, grid, target))
                mode = "demand-response"
            event("dr_event_started", ',"id":"%s","mode":"%s"' % (e["id"], mode))
        if k in dr_end and in_event:
            event("dr_event_ended", ',"id":"%s","mean_grid_kw":%.1f,"seconds":%d' % (
                in_event[0], in_event[1] / max(1, in_event[2]), round(t - in_event[3])))
            in_event = None
            if utility:
                event("mode", ',"from":"demand-response","to":"grid-connected","grid_kw":%.1f,"target_kw":%.1f' % (grid, target))
                mode = "grid-connected"
        # Vehicles leave (a session record) and arrive.
        for i in range(n):
            p = plugged[i]
            if p is not None and k >= p[7]:
                seq += 1
                lines.append(SESSION % (seq, now_iso, p[0], ids[i], p[8], now_iso, p[2], p[1], p[3], p[4], p[5],
                                        p[6], "true" if p[1] + 1e-6 >= p[6] else "false"))
                plugged[i] = None
            q = queue[i]
            if plugged[i] is None and nxt[i] < len(q) and k >= q[nxt[i]][0]:
                a, d, v, akwh, need = q[nxt[i]]
                nxt[i] += 1
                if d > k:
                    plugged[i] = [v, akwh, akwh, akwh, 0.0, 0.0, need, d, now_iso]

        # The building and the controller's step.
        minute = k * STEP_S / 60.0
        h = int(minute // 60)
        frac = (minute - h * 60) / 60.0
        base = loads[h % nload] * (1 - frac) + loads[(h + 1) % nload] * frac
        rng = (rng * 1103515245 + 12345) & 0x7FFFFFFF
        ripple = (rng / 0x7FFFFFFF - 0.5) * 0.04
        building = base * (1 + ripple)
        parts = []
        ev = 0.0
        served = building
        if not utility:
            served = building * crit
            need_kw = served
            live = [i for i in range(n) if plugged[i] is not None and plugged[i][1] > reserve[plugged[i][0]] * 0.5]
        elif in_event:
            live = [i for i in range(n) if plugged[i] is not None and plugged[i][1] > reserve[plugged[i][0]] + 10]
            share = (building + export_limit) / len(live) if live else 0.0
        for i in range(n):
            p = plugged[i]
            if p is None:
                parts.append(EMPTY % ids[i])
                continue
            v, energy = p[0], p[1]
            if not utility:
                kw = -min(dmax[i], need_kw / len(live)) if i in live else 0.0
            elif in_event:
                kw = -min(dmax[i] * 0.92, share) if i in live else 0.0
            else:
                # Under the demand target, and at least what the departure still needs
                # (spread over the time left, with a margin).
                room = battery[v] * 0.95 - energy
                headroom = max(0.0, target - building - ev)
                kw = min(cmax[i], headroom, room * 3600 / STEP_S / eff[i]) if room > 0 else 0.0
                if energy < p[6] + 1:
                    hours_left = max(STEP_S / 3600, (p[7] - k) * STEP_S / 3600 - 0.5)
                    kw = max(kw, min(cmax[i], (p[6] + 1 - energy) / eff[i] / hours_left * 1.2))
            if kw > 0:
                energy += kw * eff[i] * STEP_S / 3600
                p[4] += kw * STEP_S / 3600
            elif kw < 0:
                energy += kw / eff[i] * STEP_S / 3600
                p[5] += -kw * STEP_S / 3600
            p[1] = energy
            if energy < p[3]:
                p[3] = energy
            ev += kw
            parts.append(PLUGGED % (ids[i], kw, kw, v, energy, p[6]))
        if not utility:
            grid = 0.0
            served = min(served, -ev)
        else:
            grid = building + ev
        if in_event:
            in_event[1] += grid
            in_event[2] += 1
        interval_sum += grid
        interval_n += 1
        if interval_n == 900 // STEP_S:
            mean = interval_sum / interval_n
            if mean > month_peak:
                month_peak = mean
                target = max(target, month_peak * 0.97)
            interval_sum, interval_n = 0.0, 0
        spread = abs(ripple) * base
        seq += 1
        lines.append(TELEMETRY % (seq, now_iso, mode, grid, grid + spread, grid - spread, building, served, ev,
                                  target, month_peak, "true" if utility else "false",
                                  "utility" if utility else "island", "false" if utility else "true",
                                  ",".join(parts)))
        if k + 1 == half_step:
            chunk = "".join(lines)
            f.write(chunk)
            written += len(chunk)
            lines.clear()
            half_records, half_bytes = seq, written
        elif len(lines) >= 20_000:
            chunk = "".join(lines)
            f.write(chunk)
            written += len(chunk)
            lines.clear()
    f.write("".join(lines))
    f.close()
    if half_path:
        with open(path, "rb") as src, open(half_path, "wb") as dst:
            left = half_bytes
            while left > 0:
                block = src.read(min(left, 1 << 24))
                dst.write(block)
                left -= len(block)
    return {"records": seq, "half_records": half_records}


def _next_month(epoch_s):
    """The start of the UTC calendar month after the one epoch_s is in."""
    d = datetime.fromtimestamp(epoch_s, timezone.utc)
    return datetime(d.year + (d.month == 12), d.month % 12 + 1, 1, tzinfo=timezone.utc).timestamp()


_ISO_MINUTE = [None, None]


def _iso_fast(t):
    """iso_ms(t) for whole seconds, formatting the date and time once a minute."""
    minute = int(t // 60)
    if _ISO_MINUTE[0] != minute:
        _ISO_MINUTE[0] = minute
        _ISO_MINUTE[1] = iso_ms(minute * 60)[:17]
    return "%s%02d.000Z" % (_ISO_MINUTE[1], int(t - minute * 60))


def cached_input(cache, steps):
    """(full path, half path, meta) for `steps` telemetry records, generated when missing."""
    cache.mkdir(parents=True, exist_ok=True)
    # The same file name (the site id) in both: the two reports differ only in the length.
    stem = cache / f"{steps}-v{GENERATOR_VERSION}"
    full, half, meta_path = stem / "year" / f"{SITE}.ndjson", stem / "half" / f"{SITE}.ndjson", stem / "meta.json"
    if meta_path.exists() and full.exists() and half.exists():
        meta = json.loads(meta_path.read_text())
        if full.stat().st_size == meta["bytes"]:
            return full, half, meta, 0.0
    for p in (full, half, meta_path):
        if p.exists():
            p.unlink()
    full.parent.mkdir(parents=True, exist_ok=True)
    half.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    counts = generate(full, steps, half)
    meta = {**counts, "steps": steps, "bytes": full.stat().st_size, "half_bytes": half.stat().st_size}
    meta_path.write_text(json.dumps(meta))
    return full, half, meta, time.monotonic() - t0


# --------------------------------------------------------------------------- the run

def run_report(binary, records_path, out_dir):
    """Run `report --records PATH --out DIR`: wall seconds, peak RSS (wait4) and polled max."""
    shutil.rmtree(out_dir, ignore_errors=True)
    cmd = [str(binary), "report", "--records", str(records_path), "--out", str(out_dir)]
    err_path = Path(str(out_dir) + ".stderr")
    polled, hwm = [0], [0]
    with open(err_path, "wb") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                env=dict(CLEAN_ENV))

        def poll():
            status = f"/proc/{proc.pid}/status"
            while True:
                try:
                    with open(status) as s:
                        fields = dict(line.split(":", 1) for line in s if line.startswith(("VmRSS", "VmHWM")))
                except OSError:
                    return
                if "VmHWM" not in fields:
                    return              # a zombie has no memory
                polled[0] = max(polled[0], int(fields["VmRSS"].split()[0]))
                hwm[0] = max(hwm[0], int(fields["VmHWM"].split()[0]))
                time.sleep(0.02)
        th = threading.Thread(target=poll, daemon=True)
        th.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        th.join(1)
    stderr = err_path.read_text(errors="replace")
    # The peak is VmHWM, the high-water mark of the process's own memory since its exec,
    # as last read (at most 20 ms before the exit). ru_maxrss from wait4 is also kept, but
    # Linux counts into it the memory of this Python process the child was forked from.
    return {"exit_status": proc.returncode, "seconds": round(wall, 2),
            "max_rss_mib": round(max(hwm[0], polled[0]) * 1024 / MIB, 1),
            "polled_rss_mib": round(polled[0] * 1024 / MIB, 1),
            "ru_maxrss_mib": round(usage.ru_maxrss * 1024 / MIB, 1),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2), "stderr": stderr[-2000:]}


def reported_records(out_dir):
    try:
        r = json.loads((Path(out_dir) / "report.json").read_text())
        return sum(s.get("records", 0) for s in r["sites"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", type=Path, default=BINARY)
    ap.add_argument("--records", type=int, default=YEAR_STEPS,
                    help=f"telemetry records (5 s apart) to generate (default {YEAR_STEPS:,}: a year)")
    ap.add_argument("--max-seconds", type=float, default=30.0,
                    help="most wall seconds for the full input (default 30)")
    ap.add_argument("--max-rss-mib", type=float, default=200.0, help="most peak RSS in MiB (default 200)")
    ap.add_argument("--max-growth", type=float, default=0.20,
                    help="most growth of peak RSS from the half input to the full one (default 0.20)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mge-report-bench")
    ap.add_argument("--generate-only", action="store_true", help="write (or find) the input and stop")
    ap.add_argument("--json-only", action="store_true")
    args = ap.parse_args()
    say = (lambda *_: None) if args.json_only else (lambda text: print(text, flush=True))
    if args.records < 2:
        ap.error("--records must be at least 2")

    if args.generate_only:
        full, half, meta, gen_s = cached_input(args.cache, args.records)
        say(f"input: {full} ({meta['records']:,} records, {meta['bytes'] / MIB:,.0f} MiB) "
            + (f"generated in {gen_s:.0f} s" if gen_s else "already in the cache"))
        return 0
    if not (args.binary.is_file() and os.access(args.binary, os.X_OK)):
        print(f"report bench: no executable at {args.binary}", file=sys.stderr)
        return 2
    probe = subprocess.run([str(args.binary), "report", "--help"], capture_output=True, text=True,
                           env=dict(CLEAN_ENV), timeout=30)
    if probe.returncode != 0 or "--records" not in probe.stdout + probe.stderr:
        print(f"report bench: {args.binary} has no `report` command with --records (report --help: exit "
              f"{probe.returncode}: {probe.stderr.strip()[:300]})", file=sys.stderr)
        return 2
    full, half, meta, gen_s = cached_input(args.cache, args.records)
    say(f"input: {full} ({meta['records']:,} records, {meta['bytes'] / MIB:,.0f} MiB; first half "
        f"{meta['half_records']:,} records) " + (f"generated in {gen_s:.0f} s" if gen_s else "from the cache"))

    misses = []
    results = {}
    with tempfile.TemporaryDirectory(prefix="mge-report-bench-") as tmp:
        for label, path, count in (("half", half, meta["half_records"]), ("full", full, meta["records"])):
            r = run_report(args.binary, path, Path(tmp) / label)
            r["records"] = count
            r["reported_records"] = reported_records(Path(tmp) / label)
            r["records_per_s"] = round(count / r["seconds"]) if r["seconds"] > 0 else None
            results[label] = r
            if r["exit_status"] != 0:
                misses.append(f"{label}: report exited {r['exit_status']}: {r['stderr'].strip()[-500:]}")
            elif r["reported_records"] != count:
                misses.append(f"{label}: report.json counts {r['reported_records']} records, the file holds {count}")
            if r["max_rss_mib"] > args.max_rss_mib:
                misses.append(f"{label}: max RSS {r['max_rss_mib']} MiB > {args.max_rss_mib:g} MiB")
    full_r, half_r = results["full"], results["half"]
    if full_r["seconds"] > args.max_seconds:
        misses.append(f"full: {full_r['seconds']} s > {args.max_seconds:g} s")
    growth = full_r["max_rss_mib"] / half_r["max_rss_mib"] - 1 if half_r["max_rss_mib"] else None
    if growth is not None and growth > args.max_growth:
        misses.append(f"peak RSS grows {growth:.0%} from the half input to the full one (> {args.max_growth:.0%}): "
                      f"it does not stream")
    say(f"report: records {full_r['records']:,}  seconds {full_r['seconds']:.1f}  records/s "
        f"{full_r['records_per_s'] or 0:,}  max RSS {full_r['max_rss_mib']:.1f} MiB  (CPU {full_r['cpu_seconds']:.1f} s; "
        f"half-year {half_r['records']:,} records {half_r['seconds']:.1f} s {half_r['max_rss_mib']:.1f} MiB, RSS "
        f"growth {'n/a' if growth is None else f'{growth:+.1%}'})  {machine_line()}, page cache warm after the first run")
    say(f"verdict: {'met' if not misses else 'MISSED'} (full input <= {args.max_seconds:g} s, RSS <= "
        f"{args.max_rss_mib:g} MiB, growth half -> full {growth if growth is None else f'{growth:+.1%}'} <= "
        f"{args.max_growth:.0%})" + "".join(f"\n  missed: {m}" for m in misses))
    print(json.dumps({"bench": "report", "machine": machine_line(), "records": full_r["records"],
                      "seconds": full_r["seconds"], "records_per_s": full_r["records_per_s"],
                      "max_rss_mib": full_r["max_rss_mib"], "half": {k: v for k, v in half_r.items() if k != "stderr"},
                      "rss_growth": None if growth is None else round(growth, 3), "met": not misses,
                      "misses": misses}), flush=True)
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())

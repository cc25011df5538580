#!/usr/bin/env python3
"""Outages placed at random inside vehicle stays: does any vehicle leave shorter than
charge-on-arrival (the unmanaged reference) would have left it?

    outage_ridethrough.py [--binary PATH] [--seeds N] [--per-run K] [--min-hours H]
                          [--max-hours H] [--config SITE_YAML] [--out DIR] [--json]
                          SCENARIO_DIR...

Issue 16's rule: for an outage of up to `outage_ride_through_hours` (2 h by default)
beginning at any moment of a stay, no vehicle leaves shorter than charge-on-arrival would.
For each scenario and each seed this bench writes a copy of the scenario whose own outages
are replaced by K outages, each one:
- beginning at a random interval inside a randomly chosen session's stay,
- lasting a random whole number of intervals between --min-hours and --max-hours,
- at least two days from every other outage and clear of demand-response events, so that
  no stay meets two outages and each placement is judged on its own.

It runs `microgrid-edge simulate` on the copy (the controller and the unmanaged reference
over the same year), checks the trace with bench/check_trace.py (0 violations), and
compares, session by session, the kWh missing at departure in report.json: the
controller's (`cost.shortfalls`) against the reference's (`unmanaged_cost.shortfalls`).
A session may be short of the reference by what the enter-service wait costs a vehicle
that charged at full rate from arrival (RECLOSE_SECONDS at its charger's rate); those are
counted and shown, and anything beyond that fails.

Exit status 0 when no session is shorter than the reference's (beyond 0.01 kWh) and no
trace has a violation; 1 otherwise; 2 on bad arguments or input.
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import check_trace  # noqa: E402  (bench/check_trace.py: the independent checker)
import variants  # noqa: E402  (bench/variants.py: scenario reading, validation, writing)

TOLERANCE_KWH = 0.01
# After an outage the building recloses only once the utility has been stable for the
# enter-service delay (300 s), the switch has confirmed (up to 10 s) and the reclosing step
# (60 s) has passed, idle; the reference, a building without an island, charges the
# moment the utility is back. A vehicle that has charged at full rate since it arrived
# can lose that much charging and no more: the allowance, at its charger's full rate.
RECLOSE_SECONDS = 300 + 10 + 2 * 60
APART_MINUTES = 2 * 1440   # outages this far apart: no stay in these scenarios is longer
SEED = 20261204


def place_outages(rng, base, per_run, min_hours, max_hours):
    """K outages, each inside a random session's stay, apart from each other and events."""
    sc = base["sc"]
    step, duration = sc["interval_minutes"], sc["duration_minutes"]
    events = [variants.span(e) for e in sc["dr_events"]]
    lengths = list(range(max(step, round(min_hours * 60 / step) * step),
                         round(max_hours * 60 / step) * step + 1, step))
    stays = [s for s in base["sessions"] if s["depart"] - s["arrive"] >= step]
    outages = []
    for _ in range(per_run):
        for _ in range(1000):  # rejection sampling; seeded, so deterministic
            s = rng.choice(stays)
            start = rng.randrange(s["arrive"] // step, s["depart"] // step) * step
            end = min(duration, start + rng.choice(lengths))
            if start < step or end <= start:
                continue
            if any(variants.overlaps((start, end), e, variants.GAP) for e in events):
                continue
            if any(variants.overlaps((start, end), (o["start_minute"], o["end_minute"]), APART_MINUTES)
                   for o in outages):
                continue
            outages.append(dict(start_minute=start, end_minute=end))
            break
    return sorted(outages, key=lambda o: o["start_minute"])


def run_one(binary, base, outages, name, work, config):
    sc = json.loads(json.dumps(base["sc"]))
    sc.update(name=name, load_csv="load.csv", sessions_csv="sessions.csv", outages=outages)
    problems = variants.validate(sc, base["load"], base["sessions"])
    if problems:
        raise variants.InputError(f"{name}: the placed outages do not make a valid scenario: {problems[:3]}")
    variants.write(work, sc, base["load"], base["sessions"])
    scenario_dir, out = os.path.join(work, name), os.path.join(work, name + "-trace")
    cmd = [binary, "simulate", scenario_dir, "--out", out] + (["--config", config] if config else [])
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()[-800:]}")
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    violations, _ = check_trace.check(scenario_dir, out)
    return report, violations, seconds


def judge(base, outages, report):
    """Per session that meets an outage: (vehicle, departure, controller's missing kWh,
    reference's missing kWh, the outage)."""
    # report.json names these departMinute and missingKWh (Costing.Shortfall's own names).
    def by_session(shortfalls):
        return {(s["vehicle"], s["departMinute"]): s["missingKWh"] for s in shortfalls}
    missing, reference = by_session(report["cost"]["shortfalls"]), by_session(report["unmanaged_cost"]["shortfalls"])
    chargers = {c["id"]: c for c in base["sc"]["chargers"]}
    hit = []
    for s in base["sessions"]:
        o = next((o for o in outages if variants.overlaps((s["arrive"], s["depart"]), variants.span(o))), None)
        if o is None:
            continue
        key = (s["vehicle"], s["depart"])
        hit.append(dict(vehicle=s["vehicle"], arrive_minute=s["arrive"], depart_minute=s["depart"],
                        outage=[o["start_minute"], o["end_minute"]],
                        missing_kwh=round(missing.get(key, 0.0), 3),
                        reference_missing_kwh=round(reference.get(key, 0.0), 3),
                        allowance_kwh=round(chargers[s["charger"]]["max_charge_kw"]
                                            * chargers[s["charger"]]["efficiency"] * RECLOSE_SECONDS / 3600, 3)))
    return hit


def main(argv):
    opts = dict(binary=os.path.join(HERE, "..", ".build", "release", "microgrid-edge"), seeds="3", per_run="24",
                min_hours="1", max_hours="2", config=None, out=None)
    scenarios, as_json, args = [], False, argv[1:]
    while args:
        a = args.pop(0)
        if a == "--json":
            as_json = True
        elif a.startswith("--") and a[2:].replace("-", "_") in opts and args:
            opts[a[2:].replace("-", "_")] = args.pop(0)
        elif a.startswith("--"):
            print(__doc__.split("\n\n")[1], file=sys.stderr)
            return 2
        else:
            scenarios.append(a)
    try:
        seeds, per_run = int(opts["seeds"]), int(opts["per_run"])
        min_hours, max_hours = float(opts["min_hours"]), float(opts["max_hours"])
    except ValueError as e:
        print(f"outage_ridethrough: {e}", file=sys.stderr)
        return 2
    if not scenarios or seeds < 1 or per_run < 1 or not 0 < min_hours <= max_hours:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    work = opts["out"] or tempfile.mkdtemp(prefix="mge-ridethrough-")
    results, failed = [], False
    for path in scenarios:
        root, name = os.path.split(os.path.normpath(path))
        try:
            base = variants.read_scenario(root, name)
        except variants.InputError as e:
            print(f"outage_ridethrough: {e}", file=sys.stderr)
            return 2
        for seed in range(seeds):
            rng = random.Random(f"{SEED}/{name}/{seed}")
            outages = place_outages(rng, base, per_run, min_hours, max_hours)
            report, violations, seconds = run_one(opts["binary"], base, outages, f"{name}-ride{seed}", work,
                                                  opts["config"])
            hit = judge(base, outages, report)
            behind = [h for h in hit if h["missing_kwh"] > h["reference_missing_kwh"] + TOLERANCE_KWH]
            worse = [h for h in behind if h["missing_kwh"] > h["reference_missing_kwh"] + h["allowance_kwh"]
                     + TOLERANCE_KWH]
            row = dict(scenario=name, seed=seed, outages=len(outages), sessions_hit=len(hit),
                       missing_kwh=round(sum(h["missing_kwh"] for h in hit), 3),
                       reference_missing_kwh=round(sum(h["reference_missing_kwh"] for h in hit), 3),
                       shorter_than_reference=worse, within_reclose_allowance=len(behind) - len(worse),
                       violations=violations[:10], violation_count=len(violations),
                       demand_charge=round(report["cost"]["demand_charge"], 2), seconds=round(seconds, 1))
            results.append(row)
            failed |= bool(worse or violations)
            if not as_json:
                print(f"{name} seed {seed}: {len(outages)} outages, {len(hit)} stays hit; missing "
                      f"{row['missing_kwh']:.1f} kWh (charge-on-arrival {row['reference_missing_kwh']:.1f}); "
                      f"{len(worse)} shorter than charge-on-arrival ({len(behind) - len(worse)} more within the "
                      f"enter-service allowance); {len(violations)} violations; "
                      f"{seconds:.0f} s", flush=True)
                for h in (worse + behind)[:5]:
                    print(f"  {h['vehicle']} {h['arrive_minute']}-{h['depart_minute']}, outage {h['outage']}: "
                          f"{h['missing_kwh']} kWh missing, charge-on-arrival {h['reference_missing_kwh']} "
                          f"(allowance {h['allowance_kwh']})")
                for v in violations[:5]:
                    print("  violation: " + v)
    if as_json:
        print(json.dumps(dict(work=work, results=results), indent=1))
    else:
        hit = sum(r["sessions_hit"] for r in results)
        worse = sum(len(r["shorter_than_reference"]) for r in results)
        allowed = sum(r["within_reclose_allowance"] for r in results)
        print(f"all: {sum(r['outages'] for r in results)} outages, {hit} stays hit, {worse} shorter than "
              f"charge-on-arrival ({allowed} more within the enter-service allowance), "
              f"{sum(r['violation_count'] for r in results)} violations, missing "
              f"{sum(r['missing_kwh'] for r in results):.1f} kWh against charge-on-arrival's "
              f"{sum(r['reference_missing_kwh'] for r in results):.1f} (files in {work})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

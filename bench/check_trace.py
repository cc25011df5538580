#!/usr/bin/env python3
"""Independent checker for a v2x-scenario/1 trace (intervals.csv, vehicles.csv).

Written from shared/benchmark/SCENARIO.md alone, with no code shared with the Swift
simulator, so that a bug there cannot hide itself here. It checks the physics and the
rules, and costs the trace:

    check_trace.py SCENARIO_DIR TRACE_DIR [--json]

Exit status 0 when the trace has no violation, 1 when it has, 2 on unreadable input.
Numbers in the trace carry three decimals, so equalities hold within a rounding tolerance.
"""
import bisect
import csv
import json
import os
import sys
from datetime import datetime, timedelta

TOL_KW = 0.002        # two rounded terms of half a milli-unit each
TOL_KWH = 0.003       # three rounded terms in an interval's energy balance
ENTER_SERVICE_DELAY_MIN = 5  # IEEE 1547-2018 default: the island may stay up this long after an outage
# After that wait, the switch's confirmation and the step that recloses it (a minute each at
# the simulator's step): a controller that obeys the wait charges nothing until then, so a
# departure's reachable energy counts no charging in them.
RECLOSE_MIN = 2


def load_scenario(directory):
    with open(os.path.join(directory, "scenario.json")) as f:
        sc = json.load(f)
    load = []
    with open(os.path.join(directory, sc["load_csv"])) as f:
        for row in csv.DictReader(f):
            load.append((int(row["minute"]), float(row["building_kw"])))
    sessions = []
    with open(os.path.join(directory, sc["sessions_csv"])) as f:
        for row in csv.DictReader(f):
            sessions.append(dict(vehicle=row["vehicle"], charger=row["charger"],
                                 arrive=int(row["arrive_minute"]), depart=int(row["depart_minute"]),
                                 arrive_kwh=float(row["arrive_kwh"]), need=float(row["depart_min_kwh"])))
    return sc, load, sessions


def building_mean(load, start, length, minutes=None):
    """Mean of the step function `load` over [start, start+length) minutes.

    `minutes` is the list of row minutes (for bisection); only the rows that overlap the
    window are visited."""
    minutes = minutes if minutes is not None else [m for m, _ in load]
    i = max(0, bisect.bisect_right(minutes, start) - 1)
    total = 0.0
    while i < len(load) and load[i][0] < start + length:
        m, kw = load[i]
        end = load[i + 1][0] if i + 1 < len(load) else float("inf")
        lo, hi = max(m, start), min(end, start + length)
        if hi > lo:
            total += kw * (hi - lo)
        i += 1
    return total / length


def check(scenario_dir, trace_dir):
    sc, load, sessions = load_scenario(scenario_dir)
    step = sc["interval_minutes"]
    hours = step / 60.0
    n = sc["duration_minutes"] // step
    site = sc["site"]
    chargers = {c["id"]: c for c in sc["chargers"]}
    vehicles = {v["id"]: v for v in sc["vehicles"]}
    outages = [(o["start_minute"], o["end_minute"]) for o in sc["outages"]]
    events = sc["dr_events"]
    violations = []
    load_minutes = [m for m, _ in load]

    def in_outage(minute):
        return any(a <= minute < b for a, b in outages)

    def after_outage(minute):
        # The interval that holds the enter-service wait after an outage ends.
        return any(b <= minute < b + max(step, ENTER_SERVICE_DELAY_MIN) for _, b in outages)

    def in_event(minute):
        return any(e["start_minute"] <= minute < e["end_minute"] for e in events)

    with open(os.path.join(trace_dir, "intervals.csv")) as f:
        rows = list(csv.DictReader(f))
    if len(rows) != n:
        violations.append(f"intervals.csv has {len(rows)} rows, the scenario has {n} intervals")
    intervals = {}
    for i, r in enumerate(rows):
        m = int(r["minute"])
        b, s, ev, g = (float(r[k]) for k in ("building_kw", "served_kw", "ev_kw", "grid_kw"))
        intervals[m] = (b, s, ev, g)
        where = f"intervals.csv minute {m}"
        if m != i * step:
            violations.append(f"{where}: expected minute {i * step}")
        expected_b = building_mean(load, m, step, load_minutes)
        if abs(b - expected_b) > TOL_KW:
            violations.append(f"{where}: building_kw {b} but the load is {expected_b:.3f}")
        if abs(g - (s + ev)) > TOL_KW:
            violations.append(f"{where}: grid_kw {g} != served_kw + ev_kw = {s + ev:.3f}")
        if s > b + TOL_KW:
            violations.append(f"{where}: served {s} more than demand {b}")
        if s < b - TOL_KW and not (in_outage(m) or after_outage(m)):
            violations.append(f"{where}: served {s} less than demand {b} outside an outage")
        if in_outage(m) and abs(g) > 0.0005:
            violations.append(f"{where}: grid exchange {g} kW during an outage")
        if g > site["import_limit_kw"] + TOL_KW:
            violations.append(f"{where}: import {g} kW above the {site['import_limit_kw']} kW limit")
        limit = site["event_export_limit_kw"] if in_event(m) else site["export_limit_kw"]
        if g < -limit - TOL_KW:
            violations.append(f"{where}: export {-g} kW above the {limit} kW limit")

    # Vehicle rows, session by session.
    by_vehicle = {}
    with open(os.path.join(trace_dir, "vehicles.csv")) as f:
        for r in csv.DictReader(f):
            by_vehicle.setdefault(r["vehicle"], {})[int(r["minute"])] = (
                float(r["charge_kwh"]), float(r["discharge_kwh"]), float(r["energy_kwh"]))
    ev_from_vehicles = {}
    seen_rows = 0
    shortfall_kwh = 0.0
    shortfalls = []
    for s in sessions:
        if s["arrive"] >= n * step:
            continue
        v = vehicles.get(s["vehicle"])
        c = chargers.get(s["charger"])
        rows_v = by_vehicle.get(s["vehicle"], {})
        e = s["arrive_kwh"]
        # The most it could hold: full power whenever the grid is up and the building could be
        # back on it (not in the enter-service wait and reclosing after an outage).
        best = s["arrive_kwh"]
        floor = min(v["reserve_kwh"], s["arrive_kwh"])
        end = min(s["depart"], n * step)
        for m in range(s["arrive"], end, step):
            where = f"vehicles.csv {s['vehicle']} minute {m}"
            if m not in rows_v:
                violations.append(f"{where}: missing row while plugged into {s['charger']}")
                continue
            seen_rows += 1
            ch, dis, energy = rows_v[m]
            if ch > c["max_charge_kw"] * hours + TOL_KWH or dis > c["max_discharge_kw"] * hours + TOL_KWH:
                violations.append(f"{where}: charge {ch} / discharge {dis} kWh beyond {s['charger']}'s rating")
            if ch < -TOL_KWH or dis < -TOL_KWH:
                violations.append(f"{where}: negative energy flow")
            if in_outage(m) and ch > TOL_KWH:
                violations.append(f"{where}: charged {ch} kWh during an outage")
            # Continuity interval by interval from the previous row, so three-decimal
            # rounding does not accumulate over a long session.
            expected = e + ch * c["efficiency"] - dis / c["efficiency"]
            if abs(expected - energy) > TOL_KWH:
                violations.append(f"{where}: energy {energy} kWh, but the flows give {expected:.3f}")
            e = energy
            if energy < -TOL_KWH or energy > v["battery_kwh"] + TOL_KWH:
                violations.append(f"{where}: energy {energy} kWh outside the battery")
            if dis > TOL_KWH and energy < floor - TOL_KWH and not (in_outage(m) or after_outage(m)):
                violations.append(f"{where}: discharged to {energy} kWh, below its reserve {floor}")
            if not in_outage(m):
                share = 1.0
                if after_outage(m):
                    share = max(0.0, (step - ENTER_SERVICE_DELAY_MIN - RECLOSE_MIN) / step)
                best = min(v["battery_kwh"], best + c["max_charge_kw"] * hours * c["efficiency"] * share)
            ev_from_vehicles[m] = ev_from_vehicles.get(m, 0.0) + (ch - dis) / hours
        if s["depart"] <= n * step:
            missing = s["need"] - e
            possible = max(0.0, s["need"] - best)
            if missing > TOL_KWH:
                shortfall_kwh += missing
                shortfalls.append(dict(vehicle=s["vehicle"], depart_minute=s["depart"], missing_kwh=round(missing, 3),
                                       unavoidable_kwh=round(possible, 3)))
                if missing > possible + TOL_KWH:
                    violations.append(
                        f"{s['vehicle']} left at minute {s['depart']} with {e:.3f} kWh; needed {s['need']}, "
                        f"and {s['need'] - possible:.3f} was reachable")
    total_rows = sum(len(x) for x in by_vehicle.values())
    if total_rows != seen_rows:
        violations.append(f"vehicles.csv has {total_rows - seen_rows} rows for vehicles that were not plugged in")
    for m, (b, s_, ev, g) in intervals.items():
        if abs(ev - ev_from_vehicles.get(m, 0.0)) > 0.05:
            violations.append(f"intervals.csv minute {m}: ev_kw {ev} but the vehicles add to {ev_from_vehicles.get(m, 0.0):.3f}")

    cost = costs(sc, intervals, step, shortfall_kwh, outages)
    cost["shortfalls"] = shortfalls
    return violations, cost


def costs(sc, intervals, step, shortfall_kwh, outages):
    t = sc["tariff"]
    hours = step / 60.0
    start = datetime.fromisoformat(sc["start"])
    peaks = {}
    imported = exported = unserved = 0.0
    for m, (b, s, ev, g) in sorted(intervals.items()):
        month = (start + timedelta(minutes=m)).strftime("%Y-%m")
        peaks[month] = max(peaks.get(month, 0.0), g)
        imported += max(0.0, g) * hours
        exported += max(0.0, -g) * hours
        if any(a <= m < e for a, e in outages):
            unserved += max(0.0, b * sc["site"]["critical_load_fraction"] - s) * hours
    event_means = []
    for e in sc["dr_events"]:
        ms = range(e["start_minute"], e["end_minute"], step)
        if all(m in intervals for m in ms):
            event_means.append(sum(-intervals[m][2] for m in ms) / len(ms))
    mean_event = sum(event_means) / len(event_means) if event_means else 0.0
    c = dict(
        demand_charge=sum(t["demand_charge_per_kw_month"] * max(0.0, p) for p in peaks.values()),
        energy_cost=t["energy_price_per_kwh"] * imported,
        export_credit=t["export_credit_per_kwh"] * exported,
        dr_payment=t["dr_payment_per_kw"] * mean_event,
        shortfall_penalty=t["departure_shortfall_penalty_per_kwh"] * shortfall_kwh,
        unserved_critical_penalty=t["unserved_critical_penalty_per_kwh"] * unserved,
        monthly_peaks_kw={k: round(v, 3) for k, v in peaks.items()},
        mean_event_discharge_kw=mean_event,
        shortfall_kwh=shortfall_kwh,
        unserved_critical_kwh=unserved,
    )
    c["total"] = (c["demand_charge"] + c["energy_cost"] - c["export_credit"] - c["dr_payment"]
                  + c["shortfall_penalty"] + c["unserved_critical_penalty"])
    return c


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        violations, cost = check(args[0], args[1])
    except (OSError, KeyError, ValueError) as e:
        print(f"check_trace: cannot read the input: {e}", file=sys.stderr)
        return 2
    if "--json" in argv:
        print(json.dumps(dict(violations=violations, cost=cost), indent=1, sort_keys=True))
    else:
        name = os.path.basename(os.path.normpath(args[0]))
        print(f"{name}: {len(violations)} violations, cost ${cost['total']:,.0f} "
              f"(demand ${cost['demand_charge']:,.0f}, energy ${cost['energy_cost']:,.0f}, "
              f"DR -${cost['dr_payment']:,.0f}, shortfall ${cost['shortfall_penalty']:,.0f}, "
              f"unserved ${cost['unserved_critical_penalty']:,.0f})")
        for v in violations[:20]:
            print("  " + v)
        if len(violations) > 20:
            print(f"  ... and {len(violations) - 20} more")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

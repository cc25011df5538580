#!/usr/bin/env python3
"""Held-out benchmark scenarios, built deterministically from the three shared ones.

    variants.py SHARED_SCENARIOS_DIR OUT_DIR

The controller was tuned on high-school-mixed-chicago, school-buses-chicago and
townhall-fleet-baltimore. These held-out variants are other buildings, fleets and years
built the same way from the same data, to check that its score generalises rather than
fits those three. Each is a complete v2x-scenario/1 directory in OUT_DIR:

- buses-at-townhall: the town hall's load scaled to the school-buses building's peak, with
  the school-buses fleet, sessions, site limits and tariff.
- townhall-fleet-at-highschool: the high school's load scaled down to the town hall's peak,
  with the town hall's fleet, sessions, site limits and tariff.
- school-buses-shifted-year: school-buses with its load SHIFT_WEEKS whole weeks later, so
  each day keeps its weekday and sessions but monthly peaks, holidays and weather fall on
  other dates: another year of the same building.
- highschool-fewer-chargers: the high school with its first 5 chargers only, the sessions
  on them and the vehicles that still have sessions.

In every variant the demand-response events and outages are redrawn, in the originals'
style, from a fixed seed rather than copied, so the controller meets event and outage days
it was not tuned on. All else (sessions, chargers, vehicles, prices) is copied unchanged.
Outputs are validated before they are written. Exit status 0 when all are written, 1 if
a variant fails validation (it is not written), 2 on unreadable input.
"""
import bisect
import csv
import json
import math
import os
import random
import sys
from datetime import datetime, timedelta

SEED = 20240917
DAY, WEEK, YEAR = 1440, 7 * 1440, 525600
# A 364-day shift with wrap-around on a 365-day scenario is a rotation by one day, which
# puts Sunday's load on Monday. Whole weeks wrapped by whole weeks keep every weekday.
SHIFT_WEEKS = 1
EVENTS_PER_YEAR = 30                       # every original has exactly 30
EVENT_MINUTES = 180
OUTAGE_MINUTES = (45, 60, 120, 180, 240, 360, 480, 720)  # the originals' lengths
GAP = 60                                   # keep outages this far from events and each other
LOAD_HEADER = ["minute", "building_kw"]
SESSION_HEADER = ["vehicle", "charger", "arrive_minute", "depart_minute", "arrive_kwh", "depart_min_kwh"]


class InputError(Exception):
    pass


def read_csv(path, header):
    try:
        with open(path, newline="") as f:  # newline="": the csv module takes CRLF or LF
            rows = list(csv.reader(f))
    except (OSError, UnicodeError, csv.Error) as e:
        raise InputError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}")
    if not rows or [h.strip() for h in rows[0]] != header:
        raise InputError(f"{path}: header must be {','.join(header)}")
    if len(rows) < 2:
        raise InputError(f"{path}: has no rows")
    rows = [(n, r) for n, r in enumerate(rows[1:], start=2) if r]
    for n, r in rows:
        if len(r) != len(header):
            raise InputError(f"{path}: line {n}: {len(r)} fields, not {len(header)}")
    return rows


def number(path, line, text, kind):
    try:
        return kind(text)
    except ValueError:
        raise InputError(f"{path}: line {line}: '{text}' is not {'an integer' if kind is int else 'a number'}")


def read_scenario(root, name):
    d = os.path.join(root, name)
    path = os.path.join(d, "scenario.json")
    try:
        with open(path) as f:
            sc = json.load(f)
        if sc["format"] != "v2x-scenario/1":
            raise InputError(f"{path}: format is '{sc['format']}', not v2x-scenario/1")
        lpath, spath = os.path.join(d, sc["load_csv"]), os.path.join(d, sc["sessions_csv"])
        missing = {"duration_minutes", "interval_minutes", "site", "tariff", "chargers", "vehicles"} - set(sc)
        if missing:
            raise InputError(f"{path}: missing {', '.join(sorted(missing))}")
        datetime.fromisoformat(sc["start"])
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}")
    except ValueError as e:  # bad JSON, undecodable bytes or a bad start time
        raise InputError(f"{path}: {e}")
    except (KeyError, TypeError) as e:
        raise InputError(f"{path}: missing or malformed key {e}")
    load = [(number(lpath, n, r[0], int), number(lpath, n, r[1], float)) for n, r in read_csv(lpath, LOAD_HEADER)]
    # Sessions keep their original text (raw), so they are written back exactly as read.
    sessions = [dict(raw=r, vehicle=r[0], charger=r[1], arrive=number(spath, n, r[2], int),
                     depart=number(spath, n, r[3], int), arrive_kwh=number(spath, n, r[4], float),
                     need=number(spath, n, r[5], float)) for n, r in read_csv(spath, SESSION_HEADER)]
    return dict(name=name, sc=sc, load=load, sessions=sessions)


def peak(load):
    return max(kw for _, kw in load)


def scaled(load, target_peak):
    f = target_peak / peak(load)
    return [(m, kw * f) for m, kw in load]


def shifted(load, duration):
    # New minute m shows the old load at m - shift, wrapped by the whole weeks the
    # scenario holds (364 days of a 365-day year), looked up in the old step function. With
    # hourly rows and whole-day shifts each output row is exactly one input row.
    period, shift = duration // WEEK * WEEK, SHIFT_WEEKS * WEEK
    minutes = [m for m, _ in load]
    return [(m, load[bisect.bisect_right(minutes, (m - shift) % period) - 1][1]) for m in minutes]


def overlaps(a, b, gap=0):
    return a[0] < b[1] + gap and b[0] < a[1] + gap


def span(x):
    return x["start_minute"], x["end_minute"]


def draw_events_and_outages(rng, sc):
    """DR events: summer (June-September) weekdays, notified at 16:00 the day before, starting
    at 15:00 or 16:00, 3 h long, 30 a year. Outages: 2-3 a year at any time on the interval
    grid, 45 min to 12 h, away from events and from each other."""
    start = datetime.fromisoformat(sc["start"])
    duration, step = sc["duration_minutes"], sc["interval_minutes"]
    midnight0 = -(start.hour * 60 + start.minute)  # minute of the first day's local midnight
    by_year = {}  # calendar year -> candidate event days, as the minute of their midnight
    for m0 in range(midnight0 + DAY, duration, DAY):
        day = (start + timedelta(minutes=m0)).date()
        if 6 <= day.month <= 9 and day.weekday() < 5 and m0 - 8 * 60 >= 0 and m0 + 19 * 60 <= duration:
            by_year.setdefault(day.year, []).append(m0)
    events = []
    for days in by_year.values():  # filled in calendar order
        for m0 in sorted(rng.sample(days, min(EVENTS_PER_YEAR, len(days)))):
            s = m0 + rng.choice((15, 16)) * 60  # notified at 16:00 the day before (m0 - 8 h)
            events.append(dict(id=f"E{len(events) + 1}", notify_minute=m0 - 8 * 60, start_minute=s,
                               end_minute=s + EVENT_MINUTES))
    outages = []
    # Rejection sampling: deterministic, as the RNG is seeded; a year has room to spare.
    for _ in range(max(1, round(duration / YEAR)) * rng.randint(2, 3)):
        for _ in range(1000):
            length = rng.choice(OUTAGE_MINUTES)
            a = rng.randrange(DAY // step, (duration - length) // step) * step  # on the grid
            if not any(overlaps((a, a + length), span(x), GAP) for x in events + outages):
                outages.append(dict(start_minute=a, end_minute=a + length))
                break
    outages.sort(key=lambda o: o["start_minute"])
    return events, outages


def validate(sc, load, sessions):
    duration, step = sc["duration_minutes"], sc["interval_minutes"]
    chargers = {c["id"] for c in sc["chargers"]}
    battery = {v["id"]: v["battery_kwh"] for v in sc["vehicles"]}
    problems = []
    if load[0][0] != 0 or load[-1][0] >= duration or any(m % step or kw < 0 for m, kw in load) or \
            any(b[0] <= a[0] for a, b in zip(load, load[1:])):
        problems.append("load.csv: rows must start at minute 0 and increase on the interval grid "
                        "within the duration, with kW 0 or more")
    last = {}
    for s in sorted(sessions, key=lambda s: s["arrive"]):
        where = f"sessions.csv: {s['vehicle']} on {s['charger']} at minute {s['arrive']}"
        if s["charger"] not in chargers or s["vehicle"] not in battery:
            problems.append(f"{where}: unknown charger or vehicle")
            continue
        if not 0 <= s["arrive"] < s["depart"] <= duration or s["arrive"] % step or s["depart"] % step:
            problems.append(f"{where}: arrive < depart must lie within the duration, on the grid")
        if not 0 <= s["need"] <= battery[s["vehicle"]] or not 0 <= s["arrive_kwh"] <= battery[s["vehicle"]]:
            problems.append(f"{where}: energy outside the battery")
        for key in (("vehicle", s["vehicle"]), ("charger", s["charger"])):
            if last.get(key, -1) > s["arrive"]:  # the latest departure so far of that vehicle/charger
                problems.append(f"{where}: overlaps an earlier session of the same {key[0]}")
            last[key] = max(last.get(key, -1), s["depart"])
    ev, out = sc["dr_events"], sc["outages"]
    if len({e["id"] for e in ev}) != len(ev):
        problems.append("scenario.json: duplicate event id")
    for e in ev:
        if not 0 <= e["notify_minute"] < e["start_minute"] < e["end_minute"] <= duration or \
                any(e[k] % step for k in ("notify_minute", "start_minute", "end_minute")):
            problems.append(f"scenario.json: event {e['id']}: needs 0 <= notify < start < end <= duration, on the grid")
        if any(overlaps(span(e), span(o)) for o in out):
            problems.append(f"scenario.json: event {e['id']} overlaps an outage")
    for i, o in enumerate(out):
        if not 0 <= o["start_minute"] < o["end_minute"] <= duration or any(m % step for m in span(o)):
            problems.append(f"scenario.json: outage at {o['start_minute']}: needs 0 <= start < end <= duration, on the grid")
        if i and o["start_minute"] < out[i - 1]["end_minute"]:
            problems.append(f"scenario.json: outages at {out[i - 1]['start_minute']} and {o['start_minute']} overlap")
    return problems


def build(name, base, load, keep_chargers=None):
    """base gives the fleet, sessions, site, tariff and calendar; load is the building."""
    sc = json.loads(json.dumps(base["sc"]))  # deep copy, key order kept
    sessions = base["sessions"]
    if keep_chargers is not None:
        sc["chargers"] = sc["chargers"][:keep_chargers]
        ids = {c["id"] for c in sc["chargers"]}
        sessions = [s for s in sessions if s["charger"] in ids]
        used = {s["vehicle"] for s in sessions}
        sc["vehicles"] = [v for v in sc["vehicles"] if v["id"] in used]
    load = [(m, round(kw, 3)) for m, kw in load]
    sc.update(name=name, load_csv="load.csv", sessions_csv="sessions.csv")
    # The service must carry the building's peak with every charger at full charge.
    need = peak(load) + sum(c["max_charge_kw"] for c in sc["chargers"])
    sc["site"]["import_limit_kw"] = max(sc["site"]["import_limit_kw"], math.ceil(need))
    # One RNG per variant, seeded by its name: a variant does not change if others are added.
    sc["dr_events"], sc["outages"] = draw_events_and_outages(random.Random(f"{SEED}/{name}"), sc)
    return sc, load, sessions


def write(out_dir, sc, load, sessions):
    d = os.path.join(out_dir, sc["name"])
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "scenario.json"), "w") as f:
        json.dump(sc, f, indent=1)
        f.write("\n")
    with open(os.path.join(d, "load.csv"), "w", newline="") as f:
        f.write(",".join(LOAD_HEADER) + "\n" + "".join(f"{m},{kw:.3f}\n" for m, kw in load))
    with open(os.path.join(d, "sessions.csv"), "w", newline="") as f:
        f.write(",".join(SESSION_HEADER) + "\n" + "".join(",".join(s["raw"]) + "\n" for s in sessions))


def main(argv):
    if len(argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    shared, out_dir = argv[1], argv[2]
    try:
        hs, sb, th = (read_scenario(shared, n) for n in
                      ("high-school-mixed-chicago", "school-buses-chicago", "townhall-fleet-baltimore"))
    except InputError as e:
        print(f"variants.py: {e}", file=sys.stderr)
        return 2
    # A load moved to another scenario must cover the same calendar.
    for a, b in ((th, sb), (hs, th)):
        if any(a["sc"][k] != b["sc"][k] for k in ("start", "duration_minutes")):
            print(f"variants.py: {a['name']} and {b['name']} cover different periods", file=sys.stderr)
            return 2
    status = 0
    for sc, load, sessions in (
            build("buses-at-townhall", sb, scaled(th["load"], peak(sb["load"]))),
            build("townhall-fleet-at-highschool", th, scaled(hs["load"], peak(th["load"]))),
            build("school-buses-shifted-year", sb, shifted(sb["load"], sb["sc"]["duration_minutes"])),
            build("highschool-fewer-chargers", hs, hs["load"], keep_chargers=5)):
        problems = validate(sc, load, sessions)
        if problems:
            print(f"variants.py: {sc['name']} not written:\n  " + "\n  ".join(problems[:10]), file=sys.stderr)
            status = 1
            continue
        write(out_dir, sc, load, sessions)
        print(f"{sc['name']}: {len(load)} load rows (peak {peak(load):.3f} kW), {len(sessions)} sessions, "
              f"{len(sc['chargers'])} chargers, {len(sc['vehicles'])} vehicles, {len(sc['dr_events'])} events, "
              f"{len(sc['outages'])} outages, import limit {sc['site']['import_limit_kw']} kW")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))

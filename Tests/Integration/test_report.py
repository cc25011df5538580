"""`microgrid-edge report`: the monthly report a site (and the program) reads, checked against
what really happened.

    simulate SCENARIO --out DIR --record STORE.db [--site-id ID] [--upload-url URL --token T]
    report [--store DB]... [--records FILE_OR_DIR]... [--month M | --period M | --from D --to D]
           [--day D] [--out DIR] [--goal-kw KW]

a. Figures against the simulator: a whole year of the town-hall fleet (it has events,
   outages and departures nobody can meet) simulated with --record, reported from the store.
   Every month's peak, peak without V2X, building peak and demand charge saved equal the
   simulator's own cost.monthly_peaks / unmanaged_cost.monthly_peaks; every event's
   delivery equals the simulator's meanDischargeKW; outages, vehicle energy and missed
   departures equal the trace and cost.shortfalls.
b. Roll-up: the three shared scenarios, each simulated for four days around two program
   events with --record and uploaded through the appliance's own client to ONE reference
   receiver (central_receiver.py); `report --records <its data dir>` sums the sites' event
   deliveries per event and judges the program goal. A line cut out of one site's stored
   NDJSON (a seq gap) flags that site, and only that site.
c. The page: report.html opened from file:// in headless Chromium (browser.py): no console
   error, no exception, no failed load, nothing fetched but the file, a real screenshot, and
   the four charts (svg.chart[data-chart=peaks|events|day|vehicles]) laid out and drawn.
d. Bad input: a truncated last line, a record of a foreign kind and a month without records
   are warnings naming the file and line (or the month), exit 0, the report still written;
   a missing --records path or a garbage --month is exit 2 with an error naming it.

The simulations run once per module (module-scoped fixtures).
"""
import base64
import csv
import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from browser import Browser, find_chromium
from central_receiver import CentralReceiver
from mge_helpers import CRASH_MARKERS, SCENARIOS, describe, read_json, run, simulate, write_json

YEAR_SCENARIO = "townhall-fleet-baltimore"
ROLLUP_SCENARIOS = ["school-buses-chicago", "high-school-mixed-chicago", "townhall-fleet-baltimore"]
# One site uploads under an id of its own (--site-id), the others under the default (the
# scenario's name).
ROLLUP_SITE_IDS = {"school-buses-chicago": "school-buses-chicago",
                   "high-school-mixed-chicago": "high-school-mixed-chicago",
                   "townhall-fleet-baltimore": "townhall-7"}
SCENARIO_START = datetime(2023, 1, 1)        # all three start 2023-01-01T00:00 (local = UTC)
# The shared scenarios' events share ids (E1..E30) but not windows: the program calls one
# event at one time for every site, so the roll-up copies get the same two windows
# (scenario minutes, the day before notified): Tuesday 3 and Wednesday 4 January 2023,
# three hours each, inside a four-day run that keeps the uploads small.
ROLLUP_EVENTS = [{"id": "E1", "notify_minute": 2280, "start_minute": 3720, "end_minute": 3900},
                 {"id": "E2", "notify_minute": 3660, "start_minute": 5100, "end_minute": 5280}]
ROLLUP_MINUTES = 5760
GOAL_KW = 1000.0
CSV_FILES = ["periods.csv", "events.csv", "outages.csv", "vehicles.csv", "departures.csv", "program_events.csv"]
CHARTS = ["peaks", "events", "day", "vehicles"]
WARNING = "microgrid-edge: warning:"
ERROR = "microgrid-edge: error:"

# Tolerances. The store's telemetry carries grid_kw and building_kw with two decimals per
# record (the mean over its window), so a 15-minute mean rebuilt from records is within
# 0.005 kW of the simulator's, and the report's own rounding to two decimals adds 0.005:
# 0.05 kW is five times that, and still far below any real error (one step of one
# charger is several kW).
KW_TOL = 0.05
# A demand charge saved is rate x (two peaks), each within 0.01 kW of the simulator's:
# 22 $/kW x 0.02 kW = $0.44, plus cent rounding; $1 keeps margin and still catches a wrong
# rate or a peak one kW off ($22).
DOLLAR_TOL = 1.0
# Session records carry kWh with two decimals.
KWH_TOL = 0.05
# Event and outage boundaries: the simulator's step is one minute.
MINUTE = timedelta(minutes=1)


# --------------------------------------------------------------------------- helpers

def report(*args, timeout=300):
    return run(["report", *args], timeout=timeout)


def assert_no_crash(proc, what):
    for marker in CRASH_MARKERS:
        assert marker not in proc.stdout + proc.stderr, f"[{what}] crash marker {marker!r}\n{describe(proc)}"


def report_ok(out, *args, what="report", timeout=300):
    """`report ... --out out`, which must exit 0 and write report.json; returns (proc, json)."""
    proc = report(*args, "--out", out, timeout=timeout)
    assert_no_crash(proc, what)
    assert proc.returncode == 0, f"[{what}] expected exit status 0\n{describe(proc)}"
    path = Path(out) / "report.json"
    assert path.is_file(), f"[{what}] expected {path} to be written\n{describe(proc)}"
    data = read_json(path)
    assert data.get("format") == "microgrid-edge-report/1", f"[{what}] format is {data.get('format')!r}"
    return proc, data


def warnings(proc):
    return [line for line in proc.stderr.splitlines() if line.startswith(WARNING)]


def when(text):
    """An ISO time of the report (with or without seconds, milliseconds, Z) as naive UTC."""
    assert isinstance(text, str), f"expected an ISO time, got {text!r}"
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t.replace(tzinfo=None) if t.tzinfo is None else (t - t.utcoffset()).replace(tzinfo=None)


def at_minute(minute):
    return SCENARIO_START + timedelta(minutes=minute)


def close(a, b, tol):
    return a is not None and b is not None and abs(a - b) <= tol


def store_counts(db):
    """(records, first seq, last seq) of a record store, read-only."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*), min(seq), max(seq) FROM record").fetchone()
    finally:
        con.close()


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def site_of(data, site_id):
    sites = [s for s in data["sites"] if s["site"] == site_id]
    assert len(sites) == 1, (f"expected one site {site_id!r} in report.json, the sites are "
                             f"{[s['site'] for s in data['sites']]}")
    return sites[0]


def events_of(site):
    """{event id: event} over all periods of a site."""
    out = {}
    for p in site["periods"]:
        for e in p["events"]:
            assert e["id"] not in out, f"event {e['id']} of site {site['site']} appears in two periods"
            out[e["id"]] = e
    return out


def scenario_sessions(name):
    with open(SCENARIOS / name / "sessions.csv", newline="") as f:
        return [dict(r, arrive_minute=int(r["arrive_minute"]), depart_minute=int(r["depart_minute"]))
                for r in csv.DictReader(f)]


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def year(tmp_path_factory):
    """A whole year of the town-hall fleet with --record, and `report --store` over it."""
    root = tmp_path_factory.mktemp("year")
    scenario_dir = SCENARIOS / YEAR_SCENARIO
    store = root / "store.db"
    simulate(scenario_dir, root / "sim", "--record", store, timeout=900)
    assert store.is_file(), f"expected simulate --record to write {store}"
    proc, data = report_ok(root / "report", "--store", store, what="report --store (a year)")
    return SimpleNamespace(root=root, scenario=read_json(scenario_dir / "scenario.json"),
                           sim=read_json(root / "sim" / "report.json"), sim_dir=root / "sim", store=store,
                           out=root / "report", proc=proc, data=data, site=site_of(data, YEAR_SCENARIO))


@pytest.fixture(scope="module")
def rollup(tmp_path_factory):
    """Three sites, four days each around two program events, uploaded to one receiver;
    then `report --records <the receiver's data dir>`."""
    root = tmp_path_factory.mktemp("rollup")
    tokens = {ROLLUP_SITE_IDS[n]: f"tok-{i}-{n}" for i, n in enumerate(ROLLUP_SCENARIOS)}
    sites = {}
    with CentralReceiver(root / "central", tokens=tokens, max_body_bytes=8 << 20) as rx:
        for name in ROLLUP_SCENARIOS:
            site_id = ROLLUP_SITE_IDS[name]
            scenario = root / "scenarios" / name
            shutil.copytree(SCENARIOS / name, scenario)
            sc = read_json(scenario / "scenario.json")
            sc["dr_events"] = [dict(e) for e in ROLLUP_EVENTS]
            write_json(scenario / "scenario.json", sc)
            store = root / f"{name}.db"
            extra = ["--site-id", site_id] if site_id != name else []
            simulate(scenario, root / "sim" / name, "--minutes", ROLLUP_MINUTES, "--record", store,
                     "--upload-url", rx.url, "--token", tokens[site_id], *extra, timeout=600)
            sites[site_id] = SimpleNamespace(name=name, store=store, sim=read_json(root / "sim" / name / "report.json"),
                                             audit=rx.audit(site_id), counts=store_counts(store),
                                             ndjson=rx.store_path(site_id))
        data_dir = rx.data_dir
    proc, data = report_ok(root / "report", "--records", data_dir, "--goal-kw", GOAL_KW,
                           what="report --records <receiver data dir>")
    return SimpleNamespace(root=root, sites=sites, data_dir=data_dir, out=root / "report", proc=proc, data=data)


# --------------------------------------------------------------------------- a. the year

def test_year_site_header_and_files(year):
    """The store's site, all its records without a gap, twelve calendar months, every file."""
    s = year.site
    count, first, last = store_counts(year.store)
    assert s["site"] == YEAR_SCENARIO, "the site id of a store written without --site-id is the scenario's name"
    assert s["time_zone"] == "Etc/UTC"
    assert (s["records"], s["seq_first"], s["seq_last"]) == (count, first, last), (
        f"expected the report to read every record of the store (count, first, last seq = "
        f"{(count, first, last)}), it says {(s['records'], s['seq_first'], s['seq_last'])}")
    assert count > 525_600 // 15, f"a year at one-minute steps should make far more than {count} records"
    assert s["seq_gaps"] == [] and s["flagged"] is False and s["problems"] == [], (
        f"a complete store is not flagged: gaps {s['seq_gaps']}, problems {s['problems']}")
    months = [p["period"] for p in s["periods"]]
    assert months == [f"2023-{m:02d}" for m in range(1, 13)], f"expected the twelve months of 2023, got {months}"
    for p in s["periods"]:
        y, m = map(int, p["period"].split("-"))
        nxt = f"{y + (m == 12)}-{m % 12 + 1:02d}"
        assert (p["from"], p["to"]) == (f"{p['period']}-01T00:00", f"{nxt}-01T00:00"), p["period"]
    assert year.data["program"]["flagged_sites"] == []
    for name in ["report.html"] + CSV_FILES:
        path = year.out / name
        assert path.is_file() and path.stat().st_size > 0, f"expected {path} to be written"
    periods = read_csv(year.out / "periods.csv")
    assert len(periods) == 12, f"expected one periods.csv row per month, got {len(periods)}"
    assert len(read_csv(year.out / "events.csv")) == len(year.sim["cost"]["events"]), \
        "expected one events.csv row per event of the year"


def test_year_monthly_peaks_match_the_simulator(year):
    """Peak with and without V2X, the building's peak and the demand charge saved, per month."""
    managed = {m["month"]: m for m in year.sim["cost"]["monthly_peaks"]}
    unmanaged = {m["month"]: m for m in year.sim["unmanaged_cost"]["monthly_peaks"]}
    rate = year.scenario["tariff"]["demand_charge_per_kw_month"]
    wrong = []
    for p in year.site["periods"]:
        m = p["period"]
        x, y = managed[m]["peakKW"], unmanaged[m]["peakKW"]
        if not close(p["peak_kw"], x, KW_TOL):
            wrong.append(f"{m}: peak_kw {p['peak_kw']} vs the simulator's {x:.3f}")
        if not close(p["peak_without_v2x_kw"], y, KW_TOL):
            wrong.append(f"{m}: peak_without_v2x_kw {p['peak_without_v2x_kw']} vs the unmanaged {y:.3f}")
        if not close(p["building_peak_kw"], managed[m]["buildingPeakKW"], KW_TOL):
            wrong.append(f"{m}: building_peak_kw {p['building_peak_kw']} vs {managed[m]['buildingPeakKW']:.3f}")
        if p["demand_charge_per_kw_month"] != rate:
            wrong.append(f"{m}: demand_charge_per_kw_month {p['demand_charge_per_kw_month']} vs the tariff's {rate}")
        if not close(p["demand_charge_saved"], rate * (y - x), DOLLAR_TOL):
            wrong.append(f"{m}: demand_charge_saved {p['demand_charge_saved']} vs {rate} x ({y:.2f} - {x:.2f}) "
                         f"= {rate * (y - x):.2f}")
    assert wrong == [], "monthly figures differ from the simulator's:\n  " + "\n  ".join(wrong)
    saved = sum(p["demand_charge_saved"] for p in year.site["periods"])
    assert saved > 0, "V2X lowers the town hall's peaks: the year's demand charge saved must be positive"


def test_year_events_match_the_simulator(year):
    """Every event of the year, in its window, with the simulator's mean discharge."""
    got = events_of(year.site)
    windows = {e["id"]: e for e in year.scenario["dr_events"]}
    sim = {e["id"]: e["meanDischargeKW"] for e in year.sim["cost"]["events"]}
    assert sorted(got) == sorted(sim), f"expected the events {sorted(sim)}, the report has {sorted(got)}"
    wrong = []
    for eid, kw in sim.items():
        e, w = got[eid], windows[eid]
        if not close(e["mean_delivered_kw"], kw, KW_TOL):
            wrong.append(f"{eid}: mean_delivered_kw {e['mean_delivered_kw']} vs meanDischargeKW {kw:.3f}")
        if abs(when(e["start"]) - at_minute(w["start_minute"])) > MINUTE or \
                abs(when(e["end"]) - at_minute(w["end_minute"])) > MINUTE:
            wrong.append(f"{eid}: window {e['start']}..{e['end']} vs the scenario's "
                         f"{at_minute(w['start_minute'])}..{at_minute(w['end_minute'])}")
    assert wrong == [], "events differ from the simulator's:\n  " + "\n  ".join(wrong)
    # The scenario's DR payment: dr_payment_per_kw x the mean over events of the mean
    # delivery, so the expected payments of the year add up to the simulator's.
    total = sum(e["expected_payment"] for e in got.values())
    assert close(total, year.sim["cost"]["dr_payment"], DOLLAR_TOL * len(got)), (
        f"expected the events' expected payments to add up to the simulator's DR payment "
        f"{year.sim['cost']['dr_payment']:.2f}, they add up to {total:.2f}")
    # Each event sits in the period its start is in.
    for p in year.site["periods"]:
        for e in p["events"]:
            assert e["start"][:7] == p["period"], f"event {e['id']} ({e['start']}) listed under {p['period']}"


def test_year_outages_match_the_scenario(year):
    """Each outage of the scenario once, its length, and the critical load it carried."""
    got = [o for p in year.site["periods"] for o in p["outages"]]
    want = sorted(year.scenario["outages"], key=lambda w: w["start_minute"])
    assert len(got) == len(want), f"expected {len(want)} outages, the report lists {len(got)}: {got}"
    fraction = year.scenario["site"]["critical_load_fraction"]
    intervals = read_csv(year.sim_dir / "intervals.csv")
    battery_total = sum(v["battery_kwh"] for v in year.scenario["vehicles"])
    for o, w in zip(sorted(got, key=lambda o: when(o["start"])), want):
        start, end = at_minute(w["start_minute"]), at_minute(w["end_minute"])
        assert abs(when(o["start"]) - start) <= MINUTE and abs(when(o["end"]) - end) <= MINUTE, (
            f"outage {o['start']}..{o['end']} vs the scenario's {start}..{end}")
        hours = (w["end_minute"] - w["start_minute"]) / 60
        assert close(o["hours"], hours, 2 / 60), f"outage at {o['start']}: {o['hours']} h, the scenario's {hours} h"
        # The critical load the vehicles carried is what the trace served (intervals.csv:
        # 15-minute means, three decimals; the outages are on quarter hours), and with what
        # was left unserved it is the critical share of the building's demand.
        inside = [r for r in intervals if w["start_minute"] <= int(r["minute"]) < w["end_minute"]]
        served = sum(float(r["served_kw"]) * 0.25 for r in inside)
        critical = sum(float(r["building_kw"]) * 0.25 for r in inside) * fraction
        assert close(o["critical_load_kwh"], served, 0.01 * served + 0.5), (
            f"outage at {o['start']}: critical_load_kwh {o['critical_load_kwh']} vs the {served:.1f} kWh served in the trace")
        assert close(o["critical_load_kwh"] + o["critical_unserved_kwh"], critical, 0.01 * critical + 0.5), (
            f"outage at {o['start']}: served {o['critical_load_kwh']} + unserved {o['critical_unserved_kwh']} kWh vs "
            f"{fraction} x the building's {critical / fraction:.1f} kWh = {critical:.1f}")
        assert 0 <= o["vehicle_energy_kwh"] <= battery_total, o
        assert o["could_have_carried_hours"] >= 0, o


def test_year_vehicle_energy_matches_the_trace(year):
    """Charged and discharged kWh per vehicle over the year against vehicles.csv, and the
    derived figures consistent with them."""
    trace = defaultdict(lambda: [0.0, 0.0])
    for r in read_csv(year.sim_dir / "vehicles.csv"):
        trace[r["vehicle"]][0] += float(r["charge_kwh"])
        trace[r["vehicle"]][1] += float(r["discharge_kwh"])
    battery = {v["id"]: v["battery_kwh"] for v in year.scenario["vehicles"]}
    etas = [c["efficiency"] for c in year.scenario["chargers"]]
    got = defaultdict(lambda: [0.0, 0.0, 0])
    for p in year.site["periods"]:
        for v in p["vehicles"]:
            b = battery[v["vehicle"]]
            # Throughput is what went in and out of the battery: charged x efficiency plus
            # discharged / efficiency (charged and discharged are at the building side), with
            # the efficiency of the chargers the vehicle used.
            c, d = v["charged_kwh"], v["discharged_kwh"]
            low, high = c * min(etas) + d / max(etas), c * max(etas) + d / min(etas)
            assert low - 0.02 <= v["throughput_kwh"] <= high + 0.02, (
                f"{p['period']} {v}: battery-side throughput should be within {low:.2f}..{high:.2f}")
            # Equivalent full cycles: throughput / (2 x battery) or discharged / battery, by
            # convention; either lies between these two.
            assert v["discharged_kwh"] / b * 0.99 - 0.01 <= v["equivalent_full_cycles"] <= \
                v["throughput_kwh"] / b * 1.01 + 0.01, f"{p['period']} {v}: battery {b} kWh"
            g = got[v["vehicle"]]
            g[0] += v["charged_kwh"]
            g[1] += v["discharged_kwh"]
            g[2] += v["sessions"]
    assert sorted(got) == sorted(trace), f"expected the vehicles {sorted(trace)}, the report has {sorted(got)}"
    sessions = scenario_sessions(YEAR_SCENARIO)
    wrong = []
    for vid, (charged, discharged) in trace.items():
        # 2 %: a session still plugged in at the end of the year may be counted where it
        # ends (never, in a one-year run); any wrong unit or sign is far more.
        for what, a, b in (("charged", got[vid][0], charged), ("discharged", got[vid][1], discharged)):
            if not close(a, b, 0.02 * b + 2):
                wrong.append(f"{vid}: {what}_kwh over the year {a:.1f} vs the trace's {b:.1f}")
        # A session that ends at the end of the run (the year's last sessions do, with no
        # need) was never seen to end: it may count or not.
        ended = sum(1 for s in sessions if s["vehicle"] == vid and s["depart_minute"] < 525_600)
        begun = sum(1 for s in sessions if s["vehicle"] == vid and s["arrive_minute"] < 525_600)
        if not ended <= got[vid][2] <= begun:
            wrong.append(f"{vid}: {got[vid][2]} sessions, the scenario has {ended} (ended) to {begun} (begun)")
    assert wrong == [], "vehicle figures differ from the trace:\n  " + "\n  ".join(wrong)


def test_year_missed_departures_are_the_simulators_shortfalls(year):
    """Every departure the simulator counts short is a missed departure, with its shortfall."""
    shortfalls = year.sim["cost"]["shortfalls"]
    assert shortfalls, "test setup: the town-hall year is expected to have shortfalls"
    missed = [m for p in year.site["periods"] for m in p["departures"]["missed"]]
    met = sum(p["departures"]["met"] for p in year.site["periods"])
    assert len(missed) == len(shortfalls), (
        f"expected {len(shortfalls)} missed departures (cost.shortfalls), the report has {len(missed)}")
    unmatched = []
    for s in shortfalls:
        t = at_minute(s["departMinute"])
        hits = [m for m in missed if m["vehicle"] == s["vehicle"] and abs(when(m["time"]) - t) <= MINUTE]
        if len(hits) != 1 or not close(hits[0]["short_kwh"], s["missingKWh"], KWH_TOL):
            unmatched.append(f"{s['vehicle']} at {t}: {s['missingKWh']:.2f} kWh short; report: {hits}")
    assert unmatched == [], "shortfalls without their missed departure:\n  " + "\n  ".join(unmatched)
    for m in missed:
        assert close(m["short_kwh"], m["need_kwh"] - m["energy_kwh"], 0.02), m
        assert isinstance(m["cause"], str) and m["cause"].strip(), f"a missed departure says why: {m}"
    sessions = scenario_sessions(YEAR_SCENARIO)
    ended = sum(1 for s in sessions if s["depart_minute"] < 525_600)
    begun = sum(1 for s in sessions if s["arrive_minute"] < 525_600)
    assert ended <= met + len(missed) <= begun, (
        f"met {met} + missed {len(missed)} departures; the scenario has {ended} to {begun}")


# --------------------------------------------------------------------------- b. the roll-up

def test_rollup_uploads_arrived_whole(rollup):
    """What the appliance uploaded is all of its store (the receiver's audit), and the report
    reads all of it for each site (the keys files are not sites)."""
    for site_id, s in rollup.sites.items():
        count, first, last = s.counts
        assert (s.audit.count, s.audit.first, s.audit.last, s.audit.gaps, s.audit.duplicates) == \
            (count, 1, last, [], []), f"{site_id}: the receiver holds {s.audit}, the store {s.counts}"
    got = sorted(s["site"] for s in rollup.data["sites"])
    assert got == sorted(rollup.sites), f"expected the sites {sorted(rollup.sites)}, the report has {got}"
    for site_id, s in rollup.sites.items():
        r = site_of(rollup.data, site_id)
        assert (r["records"], r["seq_first"], r["seq_last"]) == (s.counts[0], 1, s.counts[2]), (site_id, r)
        assert r["flagged"] is False and r["seq_gaps"] == [], (site_id, r["seq_gaps"], r["problems"])
    assert rollup.data["program"]["flagged_sites"] == []


def test_rollup_event_totals_are_the_sum_of_the_sites(rollup):
    """program.events: per event id the sites' deliveries, their sum, and the goal."""
    program = rollup.data["program"]
    assert program["goal_kw"] == GOAL_KW
    per_site = {site_id: events_of(site_of(rollup.data, site_id)) for site_id in rollup.sites}
    events = {e["id"]: e for e in program["events"]}
    assert sorted(events) == [e["id"] for e in ROLLUP_EVENTS], f"program events: {sorted(events)}"
    for w in ROLLUP_EVENTS:
        e = events[w["id"]]
        assert abs(when(e["start"]) - at_minute(w["start_minute"])) <= MINUTE and \
            abs(when(e["end"]) - at_minute(w["end_minute"])) <= MINUTE, (w, e)
        delivered = {site_id: per_site[site_id][w["id"]]["mean_delivered_kw"] for site_id in rollup.sites}
        assert set(e["sites"]) == set(delivered), f"{w['id']}: sites {e['sites']}"
        for site_id, kw in delivered.items():
            assert close(e["sites"][site_id], kw, 0.01), f"{w['id']} {site_id}: {e['sites'][site_id]} vs {kw}"
            sim = {x["id"]: x["meanDischargeKW"] for x in rollup.sites[site_id].sim["cost"]["events"]}
            assert close(kw, sim[w["id"]], KW_TOL), (
                f"{w['id']} {site_id}: delivered {kw} kW, the simulator's meanDischargeKW {sim[w['id']]:.3f}")
        assert close(e["total_kw"], sum(delivered.values()), 0.01), (
            f"{w['id']}: total_kw {e['total_kw']}, the sites' sum {sum(delivered.values()):.3f} ({delivered})")
        assert e["goal_met"] is (e["total_kw"] >= GOAL_KW), e
    opted = {(o["site"], o["event"]) for o in program["opted_out"]}
    flagged = {(site_id, eid) for site_id, evs in per_site.items() for eid, e in evs.items() if e["opted_out"]}
    assert opted == flagged, f"program.opted_out {opted} vs the sites' opted-out events {flagged}"


def test_rollup_goal_is_judged_against_goal_kw(rollup, tmp_path):
    """The same events against a goal just under and just over their totals."""
    totals = [e["total_kw"] for e in rollup.data["program"]["events"]]
    for goal, met in ((min(totals) - 1, True), (max(totals) + 1, False)):
        _, data = report_ok(tmp_path / f"goal-{goal:.0f}", "--records", rollup.data_dir, "--goal-kw", f"{goal:.2f}",
                            what=f"report --goal-kw {goal:.2f}")
        assert close(data["program"]["goal_kw"], goal, 0.005)
        got = {e["id"]: e["goal_met"] for e in data["program"]["events"]}
        assert got == {e["id"]: met for e in ROLLUP_EVENTS}, f"goal {goal:.2f} kW, totals {totals}: goal_met {got}"


def test_rollup_seq_gap_flags_that_site_only(rollup, tmp_path):
    """One line cut from the middle of one site's stored NDJSON: that site is flagged with
    its gap (the missing seqs, as the receiver's audit gives them), a warning names the file
    and line, the other sites are clean."""
    data_dir = tmp_path / "data"
    shutil.copytree(rollup.data_dir, data_dir)
    victim = "school-buses-chicago"
    path = data_dir / f"{victim}.ndjson"
    lines = path.read_text().splitlines(keepends=True)
    middle = len(lines) // 2
    while json.loads(lines[middle])["kind"] != "telemetry":
        middle += 1
    seq = json.loads(lines[middle])["seq"]
    path.write_text("".join(lines[:middle] + lines[middle + 1:]))
    proc, data = report_ok(tmp_path / "report", "--records", data_dir, what="report with a seq gap")
    s = site_of(data, victim)
    assert s["flagged"] is True, f"expected {victim} to be flagged after seq {seq} was cut out: {s}"
    assert s["seq_gaps"] == [{"from": seq, "to": seq}], f"expected the gap of seq {seq}, got {s['seq_gaps']}"
    assert s["problems"], "a flagged site says what is wrong in problems"
    assert s["records"] == len(lines) - 1
    assert data["program"]["flagged_sites"] == [victim]
    for other in rollup.sites:
        if other != victim:
            o = site_of(data, other)
            assert o["flagged"] is False and o["seq_gaps"] == [], (other, o["seq_gaps"], o["problems"])
    named = [w for w in warnings(proc) if f"{victim}.ndjson" in w and re.search(rf"\b{seq}\b", w)]
    assert named, f"expected a warning naming {victim}.ndjson and the missing seq {seq}\n{describe(proc)}"
    assert not [w for w in warnings(proc) if victim not in w], f"warnings about the clean sites\n{describe(proc)}"


# --------------------------------------------------------------------------- c. the page

def png_size(path):
    head = Path(path).read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def png_colours(browser, path):
    """Distinct colours in a PNG (every 7th pixel), decoded by Chromium from a data: URL."""
    page = browser.open("about:blank", settle=False)
    b64 = base64.b64encode(Path(path).read_bytes()).decode()
    return page.evaluate(
        "(async () => { const img = new Image(); img.src = 'data:image/png;base64," + b64 + "';"
        " await img.decode(); const c = document.createElement('canvas'); c.width = img.width;"
        " c.height = img.height; const g = c.getContext('2d'); g.drawImage(img, 0, 0);"
        " const d = g.getImageData(0, 0, c.width, c.height).data; const seen = new Set();"
        " for (let i = 0; i < d.length; i += 28) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);"
        " return seen.size; })()", await_promise=True)


CHART_SCAN = """(() => {
  const out = {};
  for (const svg of document.querySelectorAll('svg.chart[data-chart]')) {
    const r = svg.getBoundingClientRect();
    let drawn = 0;
    for (const el of svg.querySelectorAll('path, rect, polyline, polygon, circle')) {
      const tag = el.tagName.toLowerCase();
      if (tag === 'path' && !(el.getAttribute('d') || '').trim()) continue;
      if ((tag === 'polyline' || tag === 'polygon') && !(el.getAttribute('points') || '').trim()) continue;
      let b;
      try { b = el.getBBox(); } catch (e) { continue; }
      const ok = (tag === 'rect' || tag === 'circle') ? (b.width > 0 && b.height > 0) : (b.width > 0 || b.height > 0);
      if (ok && getComputedStyle(el).display !== 'none') drawn++;
    }
    (out[svg.dataset.chart] = out[svg.dataset.chart] || []).push({width: r.width, height: r.height, drawn});
  }
  return out;
})()"""


@pytest.fixture(scope="module")
def browser():
    if not find_chromium():
        pytest.fail("no chromium: scripts/setup installs Debian's chromium package", pytrace=False)
    with Browser() as b:
        yield b


@pytest.mark.parametrize("which", ["year", "rollup"])
def test_page_renders_in_a_browser(which, request, browser, tmp_path):
    """report.html from file://: no error of any kind, nothing fetched, a real screenshot,
    the four charts laid out with drawn marks, the sites named on the page."""
    r = request.getfixturevalue(which)
    html = Path(r.out) / "report.html"
    page = browser.open(html.resolve().as_uri())
    assert page.errors == [], f"expected no console errors, exceptions or failed loads\n{page.describe()}"
    assert page.external_requests == [], f"expected the page to fetch nothing\n{page.describe()}"
    own = [q["url"] for q in page.requests if q["url"].startswith("file:")]
    assert own == [html.resolve().as_uri()], f"expected the page to load only itself (one file)\n{page.describe()}"
    shot = page.screenshot(tmp_path / f"{which}.png")
    width, height = png_size(shot)
    assert shot.stat().st_size > 10_000, f"screenshot {shot} is only {shot.stat().st_size} bytes"
    assert width >= 800 and height >= 600, f"screenshot {width}x{height}"
    colours = png_colours(browser, shot)
    assert colours > 8, f"the screenshot has {colours} colours: the page is (nearly) blank"
    charts = page.evaluate(CHART_SCAN)
    for name in CHARTS:
        assert charts.get(name), f"expected an <svg class=\"chart\" data-chart=\"{name}\">, found {sorted(charts)}"
        for c in charts[name]:
            assert c["width"] > 0 and c["height"] > 0, f"chart {name} is not laid out: {c}"
            assert c["drawn"] >= 2, f"chart {name} has {c['drawn']} drawn marks (path/rect/polyline...): {c}"
    text = page.evaluate("document.body.innerText")
    for s in r.data["sites"]:
        assert s["site"] in text, f"expected the page to name site {s['site']!r}"
    assert page.errors == [], f"errors after the scans\n{page.describe()}"


def test_browser_harness_catches_errors(tmp_path):
    """The page test above is only as good as browser.py: on a page with an SVG and a
    deliberate console.error, a missing file, an exception and an outside request, it sees
    each; on a clean page, none; and Chromium is gone after the `with`."""
    good = tmp_path / "good.html"
    good.write_text('<!doctype html><meta charset="utf-8"><title>ok</title><body><h1>Report</h1>'
                    '<svg class="chart" data-chart="peaks" width="300" height="120">'
                    '<rect x="10" y="20" width="40" height="80" fill="#2a6"/><path d="M0 100 L300 10" stroke="#c33"/>'
                    '<path d=""/></svg><script>console.log("drawn")</script>')
    bad = tmp_path / "bad.html"
    bad.write_text('<!doctype html><meta charset="utf-8"><link rel="stylesheet" href="missing.css">'
                   '<svg width="10" height="10"></svg><script>console.error("deliberate", 42)</script>'
                   '<img src="http://192.0.2.1/pixel.png"><script>throw new Error("boom")</script>')
    with Browser() as b:
        pgid = b.proc.pid
        p = b.open(good.as_uri())
        assert p.errors == [] and p.external_requests == [], p.describe()
        assert [m["text"] for m in p.console] == ["drawn"]
        charts = p.evaluate(CHART_SCAN)
        assert charts == {"peaks": [{"width": 300, "height": 120, "drawn": 2}]}, charts
        q = b.open(bad.as_uri())
        errors = "\n".join(q.errors)
        assert "console.error: deliberate 42" in errors, q.describe()
        assert "Error: boom" in errors, q.describe()
        assert "missing.css" in errors, q.describe()
        assert q.external_requests == ["http://192.0.2.1/pixel.png"], q.describe()
        shot = p.screenshot(tmp_path / "good.png")
        assert png_colours(b, shot) > 2
    left = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split()
    assert left == [], f"Chromium processes left after the with block: {left}"


# --------------------------------------------------------------------------- d. bad input

@pytest.fixture(scope="module")
def one_site(rollup, tmp_path_factory):
    """One site's stored NDJSON (the roll-up's school buses) and its clean report."""
    root = tmp_path_factory.mktemp("one-site")
    src = rollup.sites["school-buses-chicago"].ndjson
    clean = root / "clean" / "school-buses-chicago.ndjson"
    clean.parent.mkdir()
    shutil.copy(src, clean)
    _, data = report_ok(root / "clean-report", "--records", clean, what="report on one clean file")
    return SimpleNamespace(root=root, path=clean, lines=clean.read_text().splitlines(keepends=True), data=data)


def figures(site):
    """The event deliveries and monthly peaks of a site, for comparing two reports."""
    return {p["period"]: (p["peak_kw"], sorted((e["id"], e["mean_delivered_kw"]) for e in p["events"]))
            for p in site["periods"]}


def bad_copy(one_site, tmp_path, lines):
    path = tmp_path / "in" / one_site.path.name
    path.parent.mkdir()
    path.write_text("".join(lines))
    return path


def test_truncated_last_line_is_a_warning(one_site, tmp_path):
    last = one_site.lines[-1]
    path = bad_copy(one_site, tmp_path, one_site.lines[:-1] + [last[:len(last) // 2]])
    n = len(one_site.lines)
    proc, data = report_ok(tmp_path / "out", "--records", path, what="a truncated last line")
    named = [w for w in warnings(proc) if f"{path.name}:{n}:" in w]
    assert named, f"expected a warning naming {path.name}:{n}: (the truncated line)\n{describe(proc)}"
    s = data["sites"][0]
    assert s["records"] == n - 1, f"expected the {n - 1} whole records to be read, the report says {s['records']}"
    assert (tmp_path / "out" / "report.html").is_file()
    # The truncated line is the last record (after the events): the figures are the clean ones.
    assert figures(s) == figures(one_site.data["sites"][0])


def test_foreign_kind_is_a_warning(one_site, tmp_path):
    last = json.loads(one_site.lines[-1])
    weather = json.dumps({"seq": last["seq"] + 1, "kind": "weather", "time": last["time"], "temperature_c": -3.5},
                         separators=(",", ":")) + "\n"
    path = bad_copy(one_site, tmp_path, one_site.lines + [weather])
    n = len(one_site.lines) + 1
    proc, data = report_ok(tmp_path / "out", "--records", path, what="a record of kind weather")
    named = [w for w in warnings(proc) if f"{path.name}:{n}:" in w and "weather" in w]
    assert named, f"expected a warning naming {path.name}:{n}: and the kind 'weather'\n{describe(proc)}"
    assert figures(data["sites"][0]) == figures(one_site.data["sites"][0])
    assert (tmp_path / "out" / "report.html").is_file()


def test_month_without_records_is_a_warning(one_site, tmp_path):
    proc, data = report_ok(tmp_path / "out", "--records", one_site.path, "--month", "2024-06",
                           what="--month 2024-06 (no records)")
    assert [w for w in warnings(proc) if "2024-06" in w], \
        f"expected a warning naming the month 2024-06, which has no records\n{describe(proc)}"
    assert data["from"] == "2024-06-01", data["from"]
    assert (tmp_path / "out" / "report.html").is_file()
    assert all(e == [] for s in data["sites"] for p in s["periods"] for e in (p["events"], p["outages"])), \
        "a month without records has no events or outages"


def test_missing_records_path_is_an_error(tmp_path):
    missing = tmp_path / "no-such-dir" / "site.ndjson"
    proc = report("--records", missing, "--out", tmp_path / "out")
    assert_no_crash(proc, "missing --records")
    assert proc.returncode == 2, f"expected exit status 2\n{describe(proc)}"
    assert any(line.startswith(ERROR) and str(missing) in line for line in proc.stderr.splitlines()), (
        f"expected '{ERROR} ...' naming {missing}\n{describe(proc)}")
    assert not (tmp_path / "out" / "report.json").exists(), "nothing could be read: no report"


@pytest.mark.parametrize("month", ["2023-13", "2023-7x", "July", "2023-00"])
def test_garbage_month_is_an_error(one_site, tmp_path, month):
    proc = report("--records", one_site.path, "--month", month, "--out", tmp_path / "out")
    assert_no_crash(proc, f"--month {month}")
    assert proc.returncode == 2, f"expected exit status 2 for --month {month}\n{describe(proc)}"
    assert any(line.startswith(ERROR) and month in line for line in proc.stderr.splitlines()), (
        f"expected '{ERROR} ...' naming {month!r}\n{describe(proc)}")

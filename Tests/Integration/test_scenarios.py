"""Full-year simulations of the three shared scenarios, checked by the independent checker."""
import csv
import importlib.util
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from mge_helpers import (CHECK_TRACE, SCENARIOS, SCENARIO_NAMES, check_trace, describe, read_json,
                         simulate)

COST_TOLERANCE = 5.0  # dollars


@dataclass
class Run:
    name: str
    scenario_dir: Path
    out: Path
    sim: object        # CompletedProcess of `simulate`
    check: object      # CompletedProcess of check_trace.py
    checked: dict      # its JSON (or None when it printed none)
    report: dict


@pytest.fixture(scope="module", params=SCENARIO_NAMES)
def year(request, tmp_path_factory):
    """Simulate one scenario's whole year once, check it once; every test below reads the result."""
    name = request.param
    scenario_dir = SCENARIOS / name
    out = tmp_path_factory.mktemp(name)
    sim = simulate(scenario_dir, out)
    check, checked = check_trace(scenario_dir, out)
    report = read_json(out / "report.json")
    return Run(name, scenario_dir, out, sim, check, checked, report)


def _checker_text(run):
    return (f"check_trace.py exit status {run.check.returncode}\n--- its stderr ---\n{run.check.stderr[-3000:]}\n"
            f"--- its stdout (first 3000 chars) ---\n{run.check.stdout[:3000]}")


def test_simulation_writes_all_outputs(year):
    missing = [f for f in ("intervals.csv", "vehicles.csv", "report.json", "chart.html") if not (year.out / f).is_file()]
    assert not missing, f"expected simulate to write {missing} into {year.out}\n{describe(year.sim)}"
    assert year.name in year.sim.stdout, f"expected the summary on stdout to name {year.name}\n{describe(year.sim)}"
    assert year.sim.stderr.strip() == "", f"expected nothing on stderr from a good run\n{describe(year.sim)}"


def test_one_intervals_row_per_interval(year):
    sc = read_json(year.scenario_dir / "scenario.json")
    step = sc["interval_minutes"]
    expected = sc["duration_minutes"] // step
    assert expected == 35040, f"the shared scenarios are a year of 15-minute intervals, got {expected}"
    with open(year.out / "intervals.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        minutes = [int(row[0]) for row in reader]
    assert header == ["minute", "building_kw", "served_kw", "ev_kw", "grid_kw"], \
        f"expected the intervals.csv header of SCENARIO.md, got {header}"
    assert len(minutes) == expected, f"expected {expected} intervals rows, got {len(minutes)}"
    wrong = [(i, m) for i, m in enumerate(minutes) if m != i * step]
    assert not wrong, f"expected row i to be minute i*{step}; first mismatches (row, minute): {wrong[:5]}"


def test_checker_finds_no_violations(year):
    assert year.checked is not None, f"expected check_trace.py --json to print JSON\n{_checker_text(year)}"
    violations = year.checked["violations"]
    assert violations == [], (f"expected no violations in the {year.name} trace, the checker found "
                              f"{len(violations)}; first ones:\n  " + "\n  ".join(violations[:15]))
    assert year.check.returncode == 0, f"expected check_trace.py to exit 0 with no violations\n{_checker_text(year)}"
    assert year.report.get("violations") == [], \
        f"expected report.json to list no violations, it has {year.report.get('violations')!r}"


def test_report_cost_matches_checker(year):
    assert year.checked is not None, f"expected check_trace.py --json to print JSON\n{_checker_text(year)}"
    reported = year.report["cost"]["total"]
    checked = year.checked["cost"]["total"]
    assert abs(reported - checked) <= COST_TOLERANCE, (
        f"expected report.json cost.total within ${COST_TOLERANCE} of the checker's; "
        f"report.json says ${reported:,.2f}, check_trace.py says ${checked:,.2f} "
        f"(difference ${reported - checked:,.2f})\nreport cost: "
        f"{ {k: v for k, v in year.report['cost'].items() if k not in ('events', 'monthly_peaks')} }\n"
        f"checker cost: { {k: v for k, v in year.checked['cost'].items() if k not in ('monthly_peaks_kw', 'shortfalls')} }")


def test_managed_cost_below_unmanaged(year):
    managed = year.report["cost"]["total"]
    unmanaged = year.report["unmanaged_cost"]["total"]
    assert managed < unmanaged, (f"expected the managed cost below the unmanaged reference in {year.name}; "
                                 f"managed ${managed:,.2f}, unmanaged ${unmanaged:,.2f}")
    if year.checked is not None:
        assert year.checked["cost"]["total"] < unmanaged, (
            f"expected the checker's cost of the trace (${year.checked['cost']['total']:,.2f}) below the "
            f"unmanaged reference (${unmanaged:,.2f})")


def test_chart_is_html_with_svg(year):
    text = (year.out / "chart.html").read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>"), f"expected chart.html to start with '<!doctype html>', it starts {text[:80]!r}"
    assert "<svg" in text, f"expected chart.html ({len(text)} chars) to contain an <svg> element"


def test_checker_building_mean_matches_a_full_scan():
    """The checker bisects into the load table; it must agree with integrating every row."""
    spec = importlib.util.spec_from_file_location("check_trace", str(CHECK_TRACE))
    ct = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ct)

    def full_scan(load, start, length):
        total = 0.0
        for i, (m, kw) in enumerate(load):
            end = load[i + 1][0] if i + 1 < len(load) else float("inf")
            lo, hi = max(m, start), min(end, start + length)
            if hi > lo:
                total += kw * (hi - lo)
        return total / length

    rng = random.Random(1547)
    for name in SCENARIO_NAMES:
        _, load, _ = ct.load_scenario(str(SCENARIOS / name))
        starts = list(range(0, 600, 15)) + [rng.randrange(0, 35040) * 15 for _ in range(40)] + [525585, 525600]
        for start in starts:
            for length in (15, 7, 90):
                want = full_scan(load, start, length)
                got = ct.building_mean(load, start, length)
                assert abs(got - want) < 1e-9, f"{name}: building_mean({start}, {length}) = {got!r}, a full scan gives {want!r}"

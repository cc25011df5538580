"""The references a score is measured against (bench/optimum.py), cross-checked against
the simulator: two independent implementations of SCENARIO.md that must agree."""
import importlib.util
import json
import subprocess
import sys

import pytest

from mge_helpers import REPO, SCENARIOS, describe, read_json, simulate

OPTIMUM = REPO / "bench" / "optimum.py"
JANUARY_MINUTES = 31 * 24 * 60


@pytest.mark.parametrize("name", ["school-buses-chicago", "townhall-fleet-baltimore"])
def test_controller_lies_between_the_optimum_and_doing_nothing(tmp_path, name):
    out = tmp_path / "trace"
    proc = simulate(SCENARIOS / name, out, "--minutes", JANUARY_MINUTES)
    assert proc.returncode == 0, describe(proc)
    report = read_json(out / "report.json")
    opt = subprocess.run(
        [sys.executable, str(OPTIMUM), str(SCENARIOS / name), "--months", "1", "--trace", str(out), "--json"],
        capture_output=True, text=True, timeout=600, cwd=str(REPO))
    assert opt.returncode == 0, f"optimum.py failed:\n{opt.stderr}"
    result = json.loads(opt.stdout)
    optimal, unmanaged, trace = result["optimal"]["total"], result["unmanaged"]["total"], result["trace"]["total"]
    # The simulator's own unmanaged reference and the Python one agree to the cent.
    assert abs(unmanaged - report["unmanaged_cost"]["total"]) < 1.0, (
        f"unmanaged: Python {unmanaged:.2f}, simulator {report['unmanaged_cost']['total']:.2f}")
    # The optimum is a lower bound; the controller does better than doing nothing.
    assert optimal <= trace + 1e-6, f"optimum {optimal:.2f} above the controller's {trace:.2f}"
    assert trace < unmanaged, f"controller {trace:.2f} not below unmanaged {unmanaged:.2f}"
    assert 0 < result["score"] <= 1, f"score {result['score']}"


def load_optimum_module():
    spec = importlib.util.spec_from_file_location("optimum", str(OPTIMUM))
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(OPTIMUM.parent))   # it imports check_trace beside it
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    module._import_solver()
    return module


def test_ride_through_floor_is_the_lower_of_charge_on_arrival_and_what_full_rate_cannot_make_up():
    """One 15-minute-interval stay worked by hand: arrives at minute 0 with 10 kWh, needs
    40 kWh at minute 480 (8 h), charger 10 kW at 100 %. With a 2 h rule the stop is 125
    minutes (the outage and the 5-minute enter-service wait)."""
    opt = load_optimum_module()

    class FakeSite:   # what charge-on-arrival and the floor read of a Site
        step, h = 15, 0.25
        outage = opt.np.zeros(32, bool)

    session = dict(t0=0, t1=32, arrive=0, depart=480, arrive_kwh=10.0, need=40.0,
                   charger_spec=dict(max_charge_kw=10.0, efficiency=1.0), vehicle_spec=dict(battery_kwh=60.0))
    offs = opt.np.array([0, 32])
    floor = opt.ride_through_floor(FakeSite(), [session], offs, opt.np.zeros(32, bool), 2.0)
    rate = 10.0 / 60
    for j, value in enumerate(floor):
        end = (j + 1) * 15
        on_arrival = min(40.0, 10.0 + rate * end)
        after = rate * max(0.0, 480 - end - 125)
        assert value == pytest.approx(max(0.0, min(on_arrival, 40.0 - after))), f"interval {j}"
    # Early on full rate after any outage still covers the need: no floor at all. Late,
    # the floor is charge-on-arrival's own energy (the rule then means: charge at full rate).
    assert floor[0] == 0.0
    assert floor[-1] == pytest.approx(40.0)
    # From the first interval of a real outage on, the comparison does not hold: no floor.
    region = opt.np.zeros(32, bool)
    region[20:] = True
    cut = opt.ride_through_floor(FakeSite(), [session], offs, region, 2.0)
    assert list(cut[:20]) == pytest.approx(list(floor[:20])) and not cut[20:].any()


def test_the_ride_through_rule_raises_the_optimum_and_the_controller_keeping_it_stays_above(tmp_path):
    """The optimum under the rule is a lower bound for a controller that keeps the rule:
    it costs more than the plain optimum, more at 4 h than at 2 h, and never more than
    the controller's own run with the rule at 2 h (its report says which rule it kept)."""
    name = "school-buses-chicago"
    out = tmp_path / "trace"
    proc = simulate(SCENARIOS / name, out, "--minutes", JANUARY_MINUTES)
    assert proc.returncode == 0, describe(proc)
    report = read_json(out / "report.json")
    assert report["control"]["outage_ride_through_hours"] == 2, report["control"]
    totals = {}
    for hours in (0, 2, 4):
        opt = subprocess.run(
            [sys.executable, str(OPTIMUM), str(SCENARIOS / name), "--months", "1", "--trace", str(out),
             "--ride-through-hours", str(hours), "--json"],
            capture_output=True, text=True, timeout=600, cwd=str(REPO))
        assert opt.returncode == 0, f"optimum.py --ride-through-hours {hours} failed:\n{opt.stderr}"
        result = json.loads(opt.stdout)
        assert result["ride_through_hours"] == hours
        assert result["optimal"]["proven_optimal"], result["optimal"]
        totals[hours] = result["optimal"]["total"]
        trace = result["trace"]["total"]
    assert totals[0] < totals[2] < totals[4], totals
    assert totals[2] <= trace + 1e-6, f"the 2 h optimum {totals[2]:.2f} above the controller's {trace:.2f}"


def test_a_bad_ride_through_value_is_refused_with_the_usage():
    for bad in ("-1", "49", "two"):
        proc = subprocess.run([sys.executable, str(OPTIMUM), str(SCENARIOS / "school-buses-chicago"),
                               "--ride-through-hours", bad], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "--ride-through-hours" in proc.stderr, (bad, proc.stderr)

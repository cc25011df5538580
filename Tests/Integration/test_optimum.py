"""The references a score is measured against (bench/optimum.py), cross-checked against
the simulator: two independent implementations of SCENARIO.md that must agree."""
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

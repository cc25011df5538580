"""Shared helpers for the Microgrid Edge integration tests.

The tests drive the already-built release binary as a black box. Paths are resolved
relative to the repository root (three levels above this file), and the binary can be
replaced with the MGE_BINARY environment variable.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("MGE_BINARY") or REPO / ".build" / "release" / "microgrid-edge")
SCENARIOS = REPO / "scenarios"
CONFIGS = REPO / "config"
CHECK_TRACE = REPO / "bench" / "check_trace.py"
SCENARIO_NAMES = ["school-buses-chicago", "townhall-fleet-baltimore", "high-school-mixed-chicago"]

# Words that must never appear in the output of a well-behaved command line tool.
CRASH_MARKERS = ("Fatal error", "Stack dump", "Traceback", "Segmentation fault", "fatalError",
                 "Illegal instruction", "Current stack trace")

# Every test starts from a clean slate of MGE_* variables: only what a test sets applies.
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("MGE_")}


def run(args, env=None, timeout=120, cwd=None):
    """Run the binary with `args`; returns the CompletedProcess (text mode)."""
    full_env = dict(CLEAN_ENV)
    if env:
        full_env.update(env)
    return subprocess.run([str(BINARY)] + [str(a) for a in args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=str(cwd or REPO))


def describe(proc):
    """A compact account of a finished process for assertion messages."""
    return (f"command: {' '.join(map(str, proc.args))}\nexit status: {proc.returncode}\n"
            f"--- stdout (last 2000 chars) ---\n{proc.stdout[-2000:]}\n"
            f"--- stderr ---\n{proc.stderr[-4000:]}")


def simulate(scenario_dir, out_dir, *extra, env=None, timeout=120):
    """Simulate a scenario into out_dir and insist that it succeeds."""
    proc = run(["simulate", scenario_dir, "--out", out_dir, *extra], env=env, timeout=timeout)
    assert proc.returncode == 0, f"expected `simulate` to succeed (exit 0)\n{describe(proc)}"
    return proc


def copy_scenario(name, dest):
    """Copy scenarios/<name> to dest (a path that does not exist yet) and return dest."""
    shutil.copytree(SCENARIOS / name, dest)
    return Path(dest)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


# ---------------------------------------------------------------------------
# The independent trace checker.
#
# bench/check_trace.py computes each interval's building demand with `building_mean`,
# which walks the whole load table for every interval: 35040 x 8760 iterations, about
# three minutes per full-year scenario. The tests run the checker unchanged except for
# that one function, replaced by `fast_building_mean`, which visits only the load rows
# that overlap the interval, in the same order, and so returns bit-identical floats
# (test_scenarios.py::test_fast_building_mean_matches_the_checkers_own checks that).
# Set MGE_FULL_CHECKER=1 to run the checker exactly as shipped instead.
# ---------------------------------------------------------------------------

_FAST_WRAPPER = r"""
import bisect, importlib.util, sys
spec = importlib.util.spec_from_file_location("check_trace", sys.argv[1])
ct = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ct)
_minutes = {}
def fast_building_mean(load, start, length):
    mins = _minutes.get(id(load))
    if mins is None or len(mins) != len(load):
        mins = _minutes[id(load)] = [m for m, _ in load]
    i = max(0, bisect.bisect_right(mins, start) - 1)
    total = 0.0
    stop = start + length
    while i < len(load) and load[i][0] < stop:
        m, kw = load[i]
        end = load[i + 1][0] if i + 1 < len(load) else float("inf")
        lo, hi = max(m, start), min(end, stop)
        if hi > lo:
            total += kw * (hi - lo)
        i += 1
    return total / length
ct.fast_building_mean = fast_building_mean
if __name__ == "__main__":
    ct.building_mean = fast_building_mean
    sys.exit(ct.main(["check_trace.py"] + sys.argv[2:]))
"""


def load_checker_module():
    """bench/check_trace.py as a module, with `fast_building_mean` attached (not installed)."""
    namespace = {"__name__": "mge_fast_checker"}
    saved = sys.argv
    try:
        sys.argv = ["wrapper", str(CHECK_TRACE)]
        exec(compile(_FAST_WRAPPER, "fast_checker_wrapper", "exec"), namespace)
    finally:
        sys.argv = saved
    return namespace["ct"]


def check_trace(scenario_dir, trace_dir, timeout=600):
    """Run the independent checker with --json. Returns (CompletedProcess, parsed JSON or None)."""
    if os.environ.get("MGE_FULL_CHECKER") == "1":
        cmd = [sys.executable, str(CHECK_TRACE), str(scenario_dir), str(trace_dir), "--json"]
    else:
        cmd = [sys.executable, "-c", _FAST_WRAPPER, str(CHECK_TRACE), str(scenario_dir), str(trace_dir), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(REPO))
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        data = None
    return proc, data

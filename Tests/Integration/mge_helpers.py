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


# The independent trace checker (bench/check_trace.py), run as shipped.


def check_trace(scenario_dir, trace_dir, timeout=600):
    """Run the independent checker with --json. Returns (CompletedProcess, parsed JSON or None)."""
    cmd = [sys.executable, str(CHECK_TRACE), str(scenario_dir), str(trace_dir), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(REPO))
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        data = None
    return proc, data


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (for the benches' machine line), or None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None

#!/usr/bin/env python3
"""OCPP at scale: 50 charge points (ocpp_peers.py, the Python `ocpp` package) connected to
the appliance at once, each sent a new setpoint every second, and what that costs the
appliance in CPU and memory. The same site without OCPP chargers is measured first, so the
chargers' share shows as a difference.

    bench/ocpp_bench.py --binary .build/release/microgrid-edge [--chargers 50] [--seconds 60]

Prints one table and a JSON line; exit 1 when not every charger got its setpoints.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "Integration"))
from ocpp_site import Daemon, free_port, site_config  # noqa: E402

PEERS = REPO / "Tests" / "Integration" / "ocpp_peers.py"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(pid, seconds):
    """CPU (% of one core) and RSS (MiB, mean and max) over `seconds`."""
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    samples = []
    while time.monotonic() - start < seconds:
        samples.append(rss_mib(pid))
        time.sleep(1)
    cpu = (cpu_seconds(pid) - start_cpu) / (time.monotonic() - start) * 100
    return cpu, sum(samples) / len(samples), max(samples)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default=str(REPO / ".build" / "release" / "microgrid-edge"))
    p.add_argument("--chargers", type=int, default=50)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--log", default="/tmp/ocpp-bench-daemon.log", help="where the daemon's log is kept")
    a = p.parse_args()
    ids = [f"BENCH-{i:03d}" for i in range(1, a.chargers + 1)]
    password = "bench-password-2026"
    every_second = "  setpoint_deadband_kw: 0\n  setpoint_refresh_seconds: 1\n"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # The same site, its extra chargers idle and not on OCPP: the baseline.
        (tmp / "base").mkdir()
        base_config = site_config(tmp / "base", free_port(), passwords={"C1": password}, extra_chargers=ids,
                                  status_every=3600)
        base = Daemon(base_config, tmp / "base", binary=a.binary)
        time.sleep(5)
        base_cpu, base_rss, _ = measure(base.proc.pid, min(20, a.seconds))
        base.stop()

        (tmp / "ocpp").mkdir()
        port = free_port()
        config = site_config(tmp / "ocpp", port, passwords={cid: password for cid in ids}, extra_chargers=ids,
                             ocpp_extra=every_second, status_every=3600)
        daemon = Daemon(config, tmp / "ocpp", binary=a.binary)
        log = tmp / "peers.jsonl"
        fleet = subprocess.Popen(
            [sys.executable, str(PEERS), "--url", f"ws://127.0.0.1:{port}/ocpp", "--fleet", str(a.chargers),
             "--password", password, "--log", str(log), "--duration", str(a.seconds + 60), "--connect-timeout", "30",
             "--vehicle-kwh", "200", "--soc", "70", "--need-kwh", "20", "--depart-in", "28800", "--max-kw", "15"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while daemon.text().count("charger connected") < a.chargers and time.time() < deadline:
            time.sleep(0.5)
        connected = daemon.text().count("charger connected")
        time.sleep(10)  # every vehicle plugged in and first profiles sent
        window_start = time.time()
        cpu, rss, rss_max = measure(daemon.proc.pid, a.seconds)
        window_end = time.time()
        during = daemon.text()
        fleet_cpu = None
        try:
            fleet_cpu = cpu_seconds(fleet.pid)
        except OSError:
            pass
        fleet.terminate()
        fleet.communicate(timeout=60)
        out = daemon.stop()
        per_charger = {}
        for line in log.read_text().splitlines():
            r = json.loads(line)
            if r.get("action") == "SetChargingProfile" and window_start <= r["t"] <= window_end:
                per_charger[r["charger"]] = per_charger.get(r["charger"], 0) + 1
        span = window_end - window_start
        rates = [per_charger.get(cid, 0) / span for cid in ids]
        refused = during.count("charger refused") + during.count("not relied on")
        Path(a.log).write_text(out)
    result = {
        "chargers": a.chargers, "connected": connected, "seconds": round(span, 1),
        "profiles_per_s": round(sum(rates), 1), "slowest_charger_profiles_per_s": round(min(rates), 2),
        "cpu_pct_one_core": round(cpu, 1), "baseline_cpu_pct": round(base_cpu, 1),
        "rss_mib": round(rss, 1), "rss_max_mib": round(rss_max, 1), "baseline_rss_mib": round(base_rss, 1),
        "faults_logged": refused, "fleet_cpu_s": fleet_cpu,
    }
    print(f"machine: {os.cpu_count()} cores; release build; {a.chargers} OCPP 2.1 charge points in one Python process")
    print(f"  connected                      {connected}/{a.chargers}")
    print(f"  SetChargingProfile sent        {result['profiles_per_s']}/s in all, "
          f"slowest charger {result['slowest_charger_profiles_per_s']}/s (target 1/s each)")
    print(f"  appliance CPU                  {result['cpu_pct_one_core']} % of one core "
          f"(same site without OCPP: {result['baseline_cpu_pct']} %)")
    print(f"  appliance RSS                  {result['rss_mib']} MiB mean, {result['rss_max_mib']} max "
          f"(without OCPP: {result['baseline_rss_mib']} MiB)")
    print(f"  chargers refused or not relied on during the run: {refused} (daemon log: {a.log})")
    print(json.dumps(result))
    ok = connected == a.chargers and min(rates) >= 0.8 and refused == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

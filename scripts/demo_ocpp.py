#!/usr/bin/env python3
"""The demo's OCPP part: the town hall's simulated building in a demand-response event, with
two real charge points (written with the Python `ocpp` package) connecting to the appliance:
C1 speaks OCPP 2.1, C2 OCPP 2.0.1. A charging platform upstream (also the `ocpp` package)
sees them through the appliance, which is its Local Controller. About 40 s in real time.

    scripts/demo_ocpp.py BINARY OUT_DIR
"""
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "Integration"))
from ocpp_site import PASSWORDS, Daemon, free_port, site_config  # noqa: E402

PEERS = REPO / "Tests" / "Integration" / "ocpp_peers.py"
UPSTREAM = REPO / "Tests" / "Integration" / "ocpp_upstream.py"


def say(text):
    print(f"  {text}", flush=True)


def main():
    binary, out = Path(sys.argv[1]).resolve(), (Path(sys.argv[2]) / "ocpp-demo").resolve()
    out.mkdir(parents=True, exist_ok=True)
    upstream_log = out / "upstream.jsonl"
    upstream_log.unlink(missing_ok=True)
    upstream = subprocess.Popen([sys.executable, str(UPSTREAM), "--log", str(upstream_log)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ready = upstream.stdout.readline().split()
    up_port = int(ready[1])
    port = free_port()
    config = site_config(out, port, upstream=f"ws://127.0.0.1:{up_port}")
    daemon = Daemon(config, out, binary=binary)
    say(f"appliance listening for charge points on ws://127.0.0.1:{port}/ocpp/<id>; "
        f"charging platform upstream on ws://127.0.0.1:{up_port}")
    peers_log = out / "chargers.jsonl"
    peers_log.unlink(missing_ok=True)
    say("C1 (OCPP 2.1) and C2 (OCPP 2.0.1) connect, each with a 200 kWh vehicle at 80 % "
        "that needs 10 kWh more by 8 h from now; the building is in a demand-response event")
    peers = subprocess.run(
        [sys.executable, str(PEERS), "--url", f"ws://127.0.0.1:{port}/ocpp", "--log", str(peers_log),
         "--duration", "30", "--charger", f"C1:2.1:{PASSWORDS['C1']}", "--charger", f"C2:2.0.1:{PASSWORDS['C2']}",
         "--vehicle-kwh", "200", "--soc", "80", "--need-kwh", "10", "--depart-in", "28800", "--max-kw", "15",
         "--min-soc", "30"], capture_output=True, text=True, timeout=120)
    text = daemon.stop()
    upstream.terminate()
    upstream.wait(10)
    summary = {json.loads(l)["charger"]: json.loads(l) for l in peers.stdout.splitlines() if l.startswith("{")}
    sent = {"C1": [], "C2": []}
    for line in peers_log.read_text().splitlines():
        r = json.loads(line)
        if r.get("action") == "SetChargingProfile":
            period = r["payload"]["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"][0]
            sent[r["charger"]].append(period)
    c1 = [p.get("setpoint", 0) / 1000 for p in sent["C1"]]
    c2 = [p.get("limit", 0) / 1000 for p in sent["C2"]]
    say(f"C1 (2.1) got {len(c1)} CentralSetpoint profiles: {', '.join(f'{x:+.1f}' for x in c1[:8])} kW"
        f"{' …' if len(c1) > 8 else ''}; its vehicle ended at {summary['C1']['power_w'] / 1000:+.1f} kW, "
        f"{summary['C1']['energy_wh'] / 1000:.1f} kWh")
    say(f"C2 (2.0.1) got {len(c2)} charge limits: {', '.join(f'{x:.1f}' for x in c2[:8])} kW; "
        f"never a discharge: {all(x >= 0 for x in c2) and not summary['C2']['violations']}")
    upstream_calls = [json.loads(l) for l in upstream_log.read_text().splitlines()]
    seen = sorted({c["action"] for c in upstream_calls if c.get("action")})
    say(f"the platform upstream saw, through the appliance: {', '.join(seen)}")
    ok = (min(c1, default=0) < 0 and all(x >= 0 for x in c2) and not summary["C2"]["violations"]
          and "BootNotification" in seen and "control loop stopped cleanly" in text)
    print(f"ocpp: {'2.1 charger discharged in the event, 2.0.1 charger given limits only, platform relayed' if ok else 'NOT as expected'}; "
          f"daemon log: {out / 'daemon.log'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

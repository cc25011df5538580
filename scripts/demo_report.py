"""Demo step 9: what V2X did for the building, from the appliance's own records.

Step 1 simulated a year of school-buses-chicago with --record: every record the appliance
makes (telemetry, events, sessions) went into a record store. Here `microgrid-edge report`
reads that store, writes report.html (inline SVG charts), report.json and CSV tables, and
the figures are checked month by month against the simulator's own report.json.

    python3 scripts/demo_report.py BINARY OUT_DIR
"""
import json
import subprocess
import sys
import time
from pathlib import Path

binary, out = sys.argv[1], Path(sys.argv[2])
sim = out / "school-buses-chicago"
report_dir = out / "report"
started = time.monotonic()
run = subprocess.run([binary, "report", "--store", str(sim / "store.db"), "--out", str(report_dir)],
                     capture_output=True, text=True)
seconds = time.monotonic() - started
print(run.stdout.strip())
if run.returncode != 0:
    print(run.stderr, file=sys.stderr)
    sys.exit(f"report failed (exit {run.returncode})")

report = json.loads((report_dir / "report.json").read_text())
simulated = json.loads((sim / "report.json").read_text())
scenario = json.loads(Path("scenarios/school-buses-chicago/scenario.json").read_text())
rate = scenario["tariff"]["demand_charge_per_kw_month"]
managed = {m["month"]: m["peakKW"] for m in simulated["cost"]["monthly_peaks"]}
unmanaged = {m["month"]: m["peakKW"] for m in simulated["unmanaged_cost"]["monthly_peaks"]}
site = report["sites"][0]
worst_kw, worst_usd, total = 0.0, 0.0, 0.0
print(f"{'period':8} {'peak with V2X':>14} {'without':>9} {'saved':>9}   simulator's saving")
for p in site["periods"]:
    month = p["period"]
    saved = rate * (unmanaged[month] - managed[month])
    worst_kw = max(worst_kw, abs(p["peak_kw"] - managed[month]), abs(p["peak_without_v2x_kw"] - unmanaged[month]))
    worst_usd = max(worst_usd, abs(p["demand_charge_saved"] - saved))
    total += p["demand_charge_saved"]
    print(f"{month:8} {p['peak_kw']:11.1f} kW {p['peak_without_v2x_kw']:6.1f} kW {p['demand_charge_saved']:8.0f} $"
          f"   {saved:8.0f} $")
events = {e["id"]: e["meanDischargeKW"] for e in simulated["cost"]["events"]}
ours = {e["id"]: e["mean_delivered_kw"] for p in site["periods"] for e in p["events"]}
worst_event = max((abs(ours.get(k, float("inf")) - v) for k, v in events.items()), default=0.0)
missed = sum(len(p["departures"]["missed"]) for p in site["periods"])
print(f"report: {site['records']:,} records in {seconds:.1f} s; demand charges saved ${total:,.0f} over the year; "
      f"{len(ours)} events; {missed} departures missed (simulator: {len(simulated['cost']['shortfalls'])})")
print(f"agreement with the simulator: peaks within {worst_kw:.3f} kW, savings within ${worst_usd:.2f} a month, "
      f"event deliveries within {worst_event:.3f} kW")
print(f"open {report_dir.resolve()}/report.html in a browser (works offline: inline SVG, nothing fetched)")
if worst_kw > 0.05 or worst_usd > 1.5 or worst_event > 0.05 or missed != len(simulated["cost"]["shortfalls"]):
    sys.exit("the report disagrees with the simulator")

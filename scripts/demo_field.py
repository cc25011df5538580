#!/usr/bin/env python3
"""Demo step 7: the shipped production configuration runs an emulated building.

rootfs-overlay/etc/microgrid-edge/site.yaml, with only addresses, ports and paths changed
(and 1-minute demand intervals and a 10 s enter-service delay, so that six minutes show
what a day would), runs a school emulated from outside the appliance
(Tests/Integration/building_emulator.py): its main meter on a real mosquitto, four buses
on OCPP 2.1 charge points, the transfer switch and utility contact over the emulated GPIO
backend, records to the central program's reference receiver. Peak shaving on the meter's
real-time data, a demand-response event staff announce on a panel, an outage islanded and
reconnected, records uploaded.

    python3 scripts/demo_field.py BINARY OUT_DIR
"""
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "Integration"))
from field_run import SITE_ID, FieldRun  # noqa: E402

RUN_SECONDS = 410


def iso(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def main():
    # The binary is the release build that Tests/Integration's helpers run (MGE_BINARY
    # overrides it there); sys.argv[1] is taken for symmetry with the other demo steps.
    out = Path(sys.argv[2]).resolve()
    work = out / "field-demo"
    shutil.rmtree(work, ignore_errors=True)
    run = FieldRun(work)

    def say(text):
        print(f"  {time.strftime('%H:%M:%S')} {text}", flush=True)

    say("starting: mosquitto, the central receiver, the building emulator, and the appliance on the shipped site.yaml")
    run.start()
    try:
        run.sleep_until(180)
        metrics = run.scrape_metrics()
        ocpp = sorted(dict(k[1])["charger"] for k, v in metrics.items()
                      if k[0] == "microgrid_edge_ocpp_connected" and v == 1)
        steps = metrics.get(("microgrid_edge_control_step_duration_seconds_count", ()), 0)
        say(f"/metrics: {len(metrics)} series; OCPP connected: {', '.join(ocpp) or 'none'}; "
            f"MQTT connected: {metrics.get(('microgrid_edge_mqtt_connected', ())) == 1}; {steps:.0f} control steps timed")
        reply, start, end = run.announce_event("utility-dr-demo", minutes_ahead=1, minutes=1)
        say(f"panel: announce_event utility-dr-demo (one minute): {reply['outcome']}: {reply['reason']}")
        run.sleep_until(RUN_SECONDS)
        final = run.panel.state()
    finally:
        codes = run.stop()

    print()
    print("  demand intervals (1 minute), from the building's own meter:")
    print("    start (UTC)  true mean kW   target kW   buses kW   what happened")
    samples = run.truth_records("sample")
    intervals = [i for i in run.truth_records("interval") if i["seconds"] >= 55]
    over = 0
    for i in intervals:
        a, b = i["start"], i["start"] + 60
        targets = [s["demand_target_kw"] for s in run.states()
                   if s and "time" in s and a - 1 <= iso(s["time"]) < b + 1 and s.get("demand_target_kw") is not None]
        modes = {s["mode"] for s in run.states() if s and "time" in s and a <= iso(s["time"]) < b}
        inside = [s for s in samples if a <= s["wall"] < b]
        buses = sum(sum(s["charger_kw"].values()) for s in inside) / max(1, len(inside))
        target = max(targets) if targets else float("nan")
        note = ", ".join(sorted(modes))
        if "islanded" not in modes and "demand-response" not in modes and targets and a > run.started_at + 30:
            if i["mean_grid_kw"] > target * 1.03 + 3:
                over += 1
                note += "  (over the target)"
        print(f"    {datetime.fromtimestamp(a, timezone.utc).strftime('%H:%M')}        {i['mean_grid_kw']:10.1f}   {target:9.1f}"
              f"   {buses:8.1f}   {note}")
    log = run.daemon.log()
    phases = [line.split("outage sequence: ")[1].split()[0] for line in log.splitlines() if "outage sequence: " in line]
    records = run.receiver.records(SITE_ID)
    event_samples = [s for s in samples if start + 5 <= s["wall"] < end - 5]
    event_kw = sum(sum(s["charger_kw"].values()) for s in event_samples) / max(1, len(event_samples))
    c4 = next((c for c in (final or {}).get("chargers", []) if c["id"] == "C4"), {})
    print()
    say(f"event: the buses gave {-event_kw:.0f} kW on average while it ran")
    say(f"outage: {' → '.join(phases)}")
    say(f"C4's bus sent no needs: managed from its timetable, leaving {((c4.get('vehicle') or {}).get('departure'))}")
    say(f"records: the program holds {len(records)} records, 1..{records[-1]['seq'] if records else 0} in order")
    ok = (codes.get("daemon") == 0 and over == 0 and event_kw < -30 and "islanded" in phases
          and "enter-service-wait" in phases and phases[-1] == "normal" and records)
    print(f"field site: shipped site.yaml on the emulated school: {len(intervals)} intervals, {over} over target; "
          f"event delivered {-event_kw:.0f} kW; outage {'islanded and reclosed' if 'islanded' in phases else 'NOT islanded'}; "
          f"{len(records)} records uploaded; stopped cleanly: {codes.get('daemon') == 0}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

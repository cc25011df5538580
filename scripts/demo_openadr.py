#!/usr/bin/env python3
"""Demo step 8: the utility's VTN dispatches the emulated school over OpenADR 2.0b.

The shipped site.yaml as the field site (Tests/Integration/openadr_site.py): the emulated
school (its meter on a real mosquitto, four buses on OCPP 2.1, the switch on emulated
GPIO) and, as the utility, openleadr 0.5.36's VTN (Tests/Integration/openadr_vtn.py) over
TLS with certificates made here, the VEN known to it by its certificate's fingerprint.
The VTN announces an event with a minute's notice; the appliance opts in, the buses
deliver in it, and the reports the VTN receives show it. Then a second event, which staff
opt out of from a panel: the VTN is told. The VEN polls every 2 s here (the shipped
interval is 10 s) so that the demo takes three minutes.

    python3 scripts/demo_openadr.py BINARY OUT_DIR
"""
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "Integration"))
from openadr_site import (  # noqa: E402
    Certificates, OpenADRSite, VTNProcess, answers, parse_utc, report_intervals, utc_iso)
from openadr_vtn import fingerprint  # noqa: E402


def main():
    out = Path(sys.argv[2]).resolve()
    work = out / "openadr-demo"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    def say(text):
        print(f"  {time.strftime('%H:%M:%S')} {text}", flush=True)

    pki = Certificates(work / "pki")
    ven_fp = fingerprint(pki.cert("ven"))
    vtn = VTNProcess(work / "vtn", tls=pki, ven_fingerprint=ven_fp, report_granularity=10, poll_freq=2)
    site = OpenADRSite(work / "site", vtn, openadr={
        "poll_seconds": 2, "certificate_file": pki.cert("ven"), "key_file": pki.key("ven"), "ca_file": pki.ca})
    say(f"starting: the VTN over TLS (it knows the VEN by fingerprint {ven_fp}), mosquitto, the emulated school, "
        "and the appliance on the shipped site.yaml")
    site.start()
    delivered = []
    try:
        state = site.wait_link("registered", 60)
        assert state, site.describe()
        adr = site.openadr_of(state)
        say(f"registered with VTN {adr['vtn_id']} as {adr['ven_id']} over TLS "
            f"(the VTN saw fingerprint {vtn.messages('oadrCreatePartyRegistration')[-1].get('tls_fingerprint')})")
        assert site.wait_vehicles(3, 120), site.describe()
        start = time.time() + 60
        event = vtn.add_event(signal="SIMPLE", level=2, start=utc_iso(start), duration_s=60)
        say(f"VTN: event {event}, SIMPLE level 2, from {utc_iso(start)[11:19]} UTC for 60 s")
        created = vtn.wait_message("oadrCreatedEvent", where=answers(event), timeout=30)[-1]
        opt = [r for r in created["payload"]["event_responses"] if r["event_id"] == event][0]["opt_type"]
        say(f"the appliance answered {opt}")
        shown = site.wait_state(lambda s: (s.get("next_event") or {}).get("id") == event, 20)
        say(f"panel: next event {shown['next_event']['id']} from {shown['next_event']['start']} site time")
        time.sleep(max(0, start + 65 - time.time()))
        grid = [s.get("grid_import_kw") for s in site.states_between(start + 5, start + 60)
                if s.get("grid_import_kw") is not None]
        samples = site.samples_between(start + 5, start + 60)
        for s in samples:
            delivered.append(sum(max(0.0, -kw) for kw in (s.get("charger_kw") or {}).values()))
        time.sleep(12)
        reports = [iv for r in vtn.messages("oadrUpdateReport") for iv in report_intervals(r)]
        in_event = [v.get("delivered_kw") for _, t, _, v in reports
                    if t is not None and start <= t < start + 60 and v.get("delivered_kw") is not None]
        say(f"in the event: grid import {min(grid):.0f}-{max(grid):.0f} kW on the panel; the buses gave "
            f"{sum(delivered) / max(1, len(delivered)):.0f} kW on average (the emulator's meters); the VTN's reports "
            f"say {sum(in_event) / max(1, len(in_event)):.0f} kW mean over {len(in_event)} report intervals")
        second_start = time.time() + 120
        second = vtn.add_event(signal="LOAD_DISPATCH", signal_type="delta", kw=80, start=utc_iso(second_start),
                               duration_s=60)
        vtn.wait_message("oadrCreatedEvent", where=answers(second, "optIn"), timeout=30)
        say(f"VTN: event {second}, LOAD_DISPATCH 80 kW, in two minutes: opted in")
        reply = site.panel.command("opt_out_event", event=second, reason="evening concert: buses needed full")
        say(f"panel: opt_out_event {second}: {reply['outcome']}: {reply['reason']}")
        vtn.wait_message("oadrCreatedEvent", where=answers(second, "optOut"), timeout=30)
        state = site.wait_state(lambda s: (site.event_of(s, second) or {}).get("opt") == "optOut", 10)
        say(f"the VTN was told optOut; the panel shows: {site.event_of(state, second)['reason']}")
        polls = len(vtn.messages("oadrPoll"))
    finally:
        codes = site.stop()
    print()
    print(f"OpenADR: a VTN over TLS dispatched the emulated school: opted in, the VTN's reports show "
          f"{sum(in_event) / max(1, len(in_event)):.0f} kW delivered in the event; staff's opt-out reached the VTN; "
          f"{polls} polls; stopped cleanly: {all(c == 0 for c in codes.values())}")


if __name__ == "__main__":
    main()

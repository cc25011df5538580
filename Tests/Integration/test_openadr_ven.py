"""The appliance as an OpenADR 2.0b VEN (issue 17: profile B, simpleHttp pull) against the
real openleadr 0.5.36 VTN (openadr_vtn.py), on the shipped configuration as the field site
(openadr_site.py): the release binary, a real mosquitto, the emulated school (four buses on
OCPP 2.1 charge points, the meter on MQTT, GPIO over the emulated backend), the VEN polling
every second; only environment overrides change the shipped site.yaml.

What runs. Four scenarios, each a script in a background thread with its own broker, VTN
and daemon(s), all started together when the module starts (they mostly wait on real
time, so side by side they take as long as the longest); each test then judges what its
scenario saw (the VTN's records, the panel states, the daemon's log, the building's truth
log):

- `announced` (about 1 min 55 s; the emulated school): registration; six events at once
  (SIMPLE level 2 with 40 s notice for 90 s, far-off ones to opt out of, to modify and to
  randomise, one too long and one too far ahead); staff's opt-out and opt-in; the main
  event runs 45 s with the buses discharging and the telemetry reports at 5 s, then the
  VTN cancels it; then pause_v2x / resume_v2x; the records at the central receiver.
- `vtn_down` (about 1 min 40 s; the emulated school): the VTN down at start, then up; an
  event during which the VTN goes down again; the silence alarm (silence_alarm_minutes
  0.2); a restart of the daemon with the VTN down, in the middle of the event.
- `tls` (about 20 s; no building): the VTN on TLS with client certificates made with
  openssl; one daemon with the VEN's certificate, one with a certificate from another CA.
- `refused` (about 10 s; no building): a VTN that refuses every registration.
- `hostile` (about 50 s; no building, a meter on MQTT): a report request (oadrCreateReport),
  then each hostile answer the peer makes, one poll each, then a normal event, then the
  VTN cancels the registration.

Plus check-config runs (a second each). The whole file takes about 2 min 5 s of wall time
(two cores; scripts/test runs it beside the other integration tests).
"""
import re
import threading
import time
import traceback

import pytest

from field_site import SHIPPED_METER_TOPIC, SHIPPED_SITE, FieldSite
from mge_helpers import CONFIGS, CRASH_MARKERS, describe, run
from mqtt_daemon import Meter, alarm
from openadr_site import (Certificates, OpenADRSite, VTNProcess, answers, event_responses, parse_site_local,
                          parse_utc, report_intervals, report_payloads, utc_iso)
from openadr_vtn import fingerprint

NOTICE_S = 40            # the main event's notice
MAIN_S = 90              # its length as announced (the VTN cancels it after DISCHARGE_S)
DISCHARGE_S = 45
REPORT_S = 5             # the TELEMETRY_USAGE granularity the VTN asks for at registration
STAFF_REASON = "the buses are needed for a school trip"
HOSTILE = ("malformed", "not-xml", "unknown-signal-name", "unknown-signal-type", "absurd-duration",
           "negative-duration", "wrong-namespace", "wrong-content-type", "http-500", "huge",
           "billion-laughs", "external-entity", "slow")
SLOW_S = 6               # the slow answer's delay; the VEN's timeout_seconds is 3 there
# The error line each hostile answer must bring (case aside): about the poll that brought
# it, naming the problem, or the event it brought refused with its reason.
HOSTILE_ERRORS = {
    "malformed": r"oadrPoll: .*not well-formed",
    "not-xml": r"oadrPoll: .*(not well-formed|not xml|no root element)",
    "unknown-signal-name": r"event hostile-\S+ is not followed: .*x-MGE-UNKNOWN-SIGNAL.*460",
    "unknown-signal-type": r"(event hostile-\S+ is not followed: .*bogusType.*460|oadrPoll: .*bogusType)",
    "absurd-duration": r"(oadrPoll: .*P9999Y|event hostile-\S+ is not followed: .*(duration|lasts).*454)",
    "negative-duration": r"(oadrPoll: .*(-PT1H|negative)|event hostile-\S+ is not followed: .*negative.*454)",
    "wrong-namespace": r"oadrPoll: .*(namespace|2\.0a)",
    "wrong-content-type": r"oadrPoll: .*(content.type|text/html)",
    "http-500": r"oadrPoll: .*HTTP 500",
    "huge": r"oadrPoll: .*(over|too large|limit).*",
    "billion-laughs": r"oadrPoll: .*(DOCTYPE|entit)",
    "external-entity": r"oadrPoll: .*(DOCTYPE|entit)",
    "slow": r"oadrPoll: .*(timed out|timeout)",
}


# ----------------------------------------------------------------------------- scenarios

class Scenario:
    """A script run in a background thread; what it saw is kept in `facts` for the tests,
    with the sites it ran (their logs, the VTN's records, the panel's states)."""

    def __init__(self, name, body, directory, limit):
        self.name, self.body, self.dir, self.limit = name, body, directory, limit
        self.facts, self.steps, self.sites, self.cleanup = {}, [], [], []
        self.error = None
        self.t0 = time.time()
        self.thread = threading.Thread(target=self._run, name=f"scenario-{name}", daemon=True)
        self.thread.start()

    def site(self, site):
        self.sites.append(site)
        return site

    def step(self, text):
        self.steps.append(f"{time.time() - self.t0:6.1f} s  {text}")

    def _run(self):
        try:
            self.body(self)
            self.step("done")
        except BaseException:  # noqa: BLE001 - reported by the tests
            self.error = traceback.format_exc()
            self.step("FAILED")
        finally:
            for close in self.cleanup:
                try:
                    close()
                except Exception:  # noqa: BLE001
                    pass
            for site in self.sites:
                try:
                    site.codes = site.stop()
                except Exception:  # noqa: BLE001
                    self.error = (self.error or "") + "\nwhile stopping:\n" + traceback.format_exc()

    def finish(self):
        self.thread.join(self.limit - (time.time() - self.t0))
        if self.thread.is_alive():
            self.error = (self.error or "") + f"\nthe scenario did not end within {self.limit} s"
            for site in self.sites:
                site.stop()
        return self

    def describe(self):
        out = [f"=== scenario {self.name}: steps ==="] + self.steps
        if self.error:
            out += ["=== its error ===", self.error]
        for site in self.sites:
            out += [f"=== site {site.dir.name} ===", site.describe()]
        return "\n".join(out)

    def need(self, *names):
        """The facts a test judges; fails (with the scenario's story) if it never got there."""
        self.finish()
        missing = [n for n in names if n not in self.facts]
        if missing:
            pytest.fail(f"scenario {self.name} stopped before {missing}\n{self.describe()}", pytrace=False)
        values = [self.facts[n] for n in names]
        return values[0] if len(values) == 1 else values


def _wait(what, value):
    assert value, f"expected {what}"
    return value


def _announced(sc):
    vtn = VTNProcess(sc.dir / "vtn", report_granularity=REPORT_S)
    site = sc.site(OpenADRSite(sc.dir / "site", vtn))
    site.start()
    sc.step("started: VTN, broker, receiver, building, daemon")
    sc.facts["registered_state"] = _wait("the panel to show link registered within 40 s",
                                         site.wait_link("registered", 40))
    sc.step("registered")
    _wait("three buses plugged in within 60 s", site.wait_vehicles(3, 60))
    sc.step("buses plugged in")
    now = time.time()
    ev = {
        "opt": vtn.add_event(signal="SIMPLE", level=1, start=utc_iso(now + 3600), duration_s=1800),
        "mod": vtn.add_event(signal="LOAD_DISPATCH", signal_type="delta", kw=50, start=utc_iso(now + 7200),
                             duration_s=1800),
        "random": vtn.add_event(signal="SIMPLE", level=1, start=utc_iso(now + 5400), duration_s=1800,
                                start_after_s=600),
        "too_long": vtn.add_event(signal="SIMPLE", level=1, start=utc_iso(now + 3 * 3600), duration_s=13 * 3600),
        "too_far": vtn.add_event(signal="SIMPLE", level=1, start=utc_iso(now + 15 * 86400), duration_s=1800),
    }
    main_start = round(now + NOTICE_S)
    ev["main"] = vtn.add_event(signal="SIMPLE", level=2, start=utc_iso(main_start), duration_s=MAIN_S,
                               notification_s=NOTICE_S)
    sc.facts.update(events=ev, main_start=main_start, random_start=now + 5400, added_at=now)
    sc.step(f"events added: {ev}")
    vtn.wait_message("oadrCreatedEvent", answers(ev["main"], "optIn", 0), timeout=20)
    sc.facts["main_answered"] = time.time()
    for key in ("opt", "mod", "random"):
        vtn.wait_message("oadrCreatedEvent", answers(ev[key], "optIn", 0), timeout=10)
    for key in ("too_long", "too_far"):
        vtn.wait_message("oadrCreatedEvent", answers(ev[key], modification=0), timeout=10)
    sc.facts["answers_in"] = True
    sc.step("every event answered")
    sc.facts["next_event_state"] = _wait(
        "next_event to show the main event", site.wait_state(
            lambda s: (s.get("next_event") or {}).get("id") == ev["main"]
            and site.event_of(s, ev["random"]) is not None, 15))
    sc.facts["random_first"] = site.event_of(sc.facts["next_event_state"], ev["random"])

    # Staff opt out of a far-off event from the panel, and back in.
    mark = vtn.mark()
    sc.facts["opt_out_reply"] = site.panel.command("opt_out_event", event=ev["opt"], reason=STAFF_REASON)
    sc.facts["opt_out_answer"] = vtn.wait_message("oadrCreatedEvent", answers(ev["opt"], "optOut", 0),
                                                  since=mark, timeout=10)[0]
    sc.facts["opt_out_state"] = _wait("the panel to show the opt-out", site.wait_state(
        lambda s: (site.event_of(s, ev["opt"]) or {}).get("opt") == "optOut", 10))
    mark = vtn.mark()
    sc.facts["opt_in_reply"] = site.panel.command("opt_in_event", event=ev["opt"])
    sc.facts["opt_in_answer"] = vtn.wait_message("oadrCreatedEvent", answers(ev["opt"], "optIn", 0),
                                                 since=mark, timeout=10)[0]
    sc.facts["opt_in_state"] = _wait("the panel to show optIn again", site.wait_state(
        lambda s: (site.event_of(s, ev["opt"]) or {}).get("opt") == "optIn", 10))
    sc.facts["cancel_reply"] = site.panel.command("cancel_event", event=ev["main"])
    sc.step("opt-out, opt-in, cancel_event done")

    # The VTN moves a far-off event.
    moved_start = now + 3 * 3600 + 600
    mark = vtn.mark()
    sc.facts["mod_number"] = vtn.modify_event(ev["mod"], start=utc_iso(moved_start), duration_s=2400,
                                              reason="moved by the utility")
    sc.facts["moved"] = (moved_start, moved_start + 2400)
    vtn.wait_message("oadrCreatedEvent", answers(ev["mod"], "optIn", sc.facts["mod_number"]), since=mark, timeout=10)
    sc.facts["mod_state"] = _wait("the panel to show the modification", site.wait_state(
        lambda s: (site.event_of(s, ev["mod"]) or {}).get("modification") == sc.facts["mod_number"], 10))
    sc.step("modified event answered")

    # The main event runs.
    time.sleep(max(0.0, main_start + DISCHARGE_S - time.time()))
    sc.facts["random_later"] = site.event_of(site.panel.state(), ev["random"])
    mark = vtn.mark()
    # Taken before the cancellation: the VEN may poll before cancel_event() returns.
    sc.facts["cancelled_at"] = time.time()
    sc.facts["cancel_number"] = vtn.cancel_event(ev["main"])
    sc.step("main event cancelled by the VTN")
    sc.facts["cancel_answer"] = vtn.wait_message(
        "oadrCreatedEvent", answers(ev["main"], modification=sc.facts["cancel_number"]), since=mark, timeout=10)[0]
    sc.facts["cancel_answered"] = time.time()
    sc.facts["after_cancel_state"] = _wait("next_event to drop the cancelled event", site.wait_state(
        lambda s: (s.get("next_event") or {}).get("id") != ev["main"], 10, since_time=sc.facts["cancel_answered"]))
    time.sleep(20)
    sc.facts["observed_after_cancel"] = time.time()

    # Staff pause V2X: every event the site still follows is opted out, with the reason.
    mark = vtn.mark()
    sc.facts["pause_reply"] = site.panel.command("pause_v2x")
    vtn.wait_message("oadrCreatedEvent", answers(ev["opt"], "optOut", 0), since=mark, timeout=10)
    sc.facts["paused_state"] = _wait("the panel to show the pause as the reason", site.wait_state(
        lambda s: (site.event_of(s, ev["opt"]) or {}).get("reason") == "staff have paused V2X", 10))
    mark = vtn.mark()
    site.panel.command("resume_v2x")
    vtn.wait_message("oadrCreatedEvent", answers(ev["opt"], "optIn", 0), since=mark, timeout=10)
    sc.facts["resumed"] = True
    sc.step("pause_v2x / resume_v2x answered")
    deadline = time.time() + 20
    while time.time() < deadline:
        kinds = {r.get("event") for r in site.receiver.records("example-school")}
        if {"openadr_registered", "openadr_event", "openadr_opt"} <= kinds:
            break
        time.sleep(0.5)
    sc.facts["central_records"] = site.receiver.records("example-school")


def _vtn_down(sc):
    vtn = VTNProcess(sc.dir / "vtn", down=True)
    site = sc.site(OpenADRSite(sc.dir / "site", vtn, openadr={"silence_alarm_minutes": 0.2, "timeout_seconds": 2}))
    site.start()
    sc.step("started with the VTN down")
    sc.facts["unreachable_state"] = _wait("link unreachable within 30 s", site.wait_link("unreachable", 30))
    time.sleep(max(0.0, 8 - (time.time() - sc.t0)))
    sc.facts["down_running"] = site.daemon.running
    sc.facts["down_log"] = site.openadr_lines(level=("error", "warning"))
    vtn.start_vtn()
    sc.facts["up_at"] = time.time()
    sc.step("VTN up")
    sc.facts["registered_state"] = _wait("link registered within 60 s of the VTN coming up",
                                         site.wait_link("registered", 60))
    sc.facts["registered_at"] = time.time()
    sc.step("registered")
    _wait("three buses plugged in within 60 s", site.wait_vehicles(3, 60))
    start = round(time.time() + 25)
    event = vtn.add_event(signal="SIMPLE", level=1, start=utc_iso(start), duration_s=70)
    sc.facts.update(event=event, start=start, end=start + 70)
    vtn.wait_message("oadrCreatedEvent", answers(event, "optIn", 0), timeout=15)
    sc.step("event answered optIn")
    time.sleep(max(0.0, start + 3 - time.time()))
    vtn.stop_vtn()
    sc.facts["vtn_down_at"] = time.time()
    sc.step("VTN down during the event")
    sc.facts["silent_state"] = _wait("the openadr-silent alarm within 40 s", site.wait_state(
        lambda s: (alarm(s, "openadr-silent") or {}).get("active"), 40, since_time=sc.facts["vtn_down_at"]))
    sc.facts["silent_at"] = time.time()
    time.sleep(max(0.0, start + 25 - time.time()))
    sc.facts["restart_requested"] = time.time()
    rc, stopped = site.restart_daemon()
    sc.facts.update(first_rc=rc, restarted_at=stopped)
    sc.step(f"daemon restarted (first exit status {rc})")
    sc.facts["restored_state"] = _wait("the restarted daemon to follow the kept event", site.wait_state(
        lambda s: (s.get("next_event") or {}).get("id") == event and s["next_event"]["active"], 30,
        since_time=stopped))
    sc.facts["restored_discharging"] = _wait("the restarted daemon to discharge the buses", site.wait_state(
        lambda s: sum(c.get("power_kw") or 0 for c in s.get("chargers") or []) < -30, 30, since_time=stopped))
    sc.step("restarted daemon discharges")
    time.sleep(max(0.0, start + 60 - time.time()))
    sc.facts["second_log"] = site.daemon.log()


def _tls(sc):
    pki = Certificates(sc.dir / "pki")
    vtn = VTNProcess(sc.dir / "vtn", tls=pki)
    vtn.start()

    def tls_files(name):
        return {"certificate_file": pki.cert(name), "key_file": pki.key(name), "ca_file": pki.ca}
    good = sc.site(OpenADRSite(sc.dir / "good", vtn, building=False, openadr=tls_files("ven")))
    rogue = sc.site(OpenADRSite(sc.dir / "rogue", vtn, building=False, openadr=tls_files("rogue")))
    good.start()
    rogue.start()
    sc.step("VTN on TLS, two daemons")
    sc.facts["pki"] = pki
    sc.facts["good_state"] = _wait("the VEN with the right certificate to register within 40 s",
                                   good.wait_link("registered", 40))
    sc.facts["rogue_state"] = _wait("the VEN with another CA's certificate to show link unreachable",
                                    rogue.wait_link("unreachable", 30))
    time.sleep(3)
    sc.facts["rogue_running"] = rogue.daemon.running
    sc.facts["rogue_log"] = rogue.daemon.log()
    sc.facts["records"] = vtn.records()


def _refused(sc):
    vtn = VTNProcess(sc.dir / "vtn", reject_registration=True)
    site = sc.site(OpenADRSite(sc.dir / "site", vtn, building=False))
    site.start()
    sc.facts["refused_state"] = _wait("link refused within 30 s", site.wait_link("refused", 30))
    sc.facts["refused_log"] = site.daemon.log()
    sc.facts["refused_running"] = site.daemon.running


def _hostile(sc):
    vtn = VTNProcess(sc.dir / "vtn")
    site = sc.site(OpenADRSite(sc.dir / "site", vtn, building=False, openadr={"timeout_seconds": 3}))
    site.start()
    sc.facts["site"] = site
    # No building, but a meter: the reports need the grid import.
    meter = Meter(site.broker, topic=SHIPPED_METER_TOPIC)
    meter.stream(180_000, hz=1)
    sc.cleanup.append(meter.close)
    _wait("link registered within 40 s", site.wait_link("registered", 40))
    sc.step("registered")
    request = vtn.request_report(granularity_s=2, report_back_duration_s=4)
    try:
        vtn.wait_message("oadrCreatedReport", timeout=15)
        sc.facts["report"] = (request, vtn.wait_message(
            "oadrUpdateReport", lambda r: any(i[0] == request for i in report_intervals(r)), timeout=20))
        sc.step("report requested and sent")
    except AssertionError as e:
        sc.facts["report"] = (request, e)      # judged by its test; the hostile ones go on
        sc.step("report requested, NOT sent")
    sc.facts["steps_before"] = (time.time(), site.control_steps())
    rss = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            value = site.rss_mib()
            if value is not None:
                rss.append((time.time(), value))
            stop.wait(0.1)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    outcomes = {}
    sc.facts["hostile"] = outcomes
    try:
        for kind in HOSTILE:
            mark, offset = vtn.mark(), site.daemon.log_size()
            vtn.set_hostile(kind, count=1, delay_s=SLOW_S)
            record = vtn.wait_message(None, lambda r: r.get("hostile") == kind, since=mark, timeout=15)[0]
            index = vtn.records().index(record)
            error = site.daemon.wait_for_log(rf"(?im)^\S+ error .*OpenADR: .*{HOSTILE_ERRORS[kind]}.*$",
                                             timeout=10, after=offset)
            answered = None
            if kind == "unknown-signal-name":
                answered = vtn.wait_message("oadrCreatedEvent", lambda r: any(
                    x.get("opt_type") == "optOut" and int(x.get("response_code") or 0) == 460
                    for x in event_responses(r)), since=mark, timeout=10)[0]
            carried_on = vtn.wait_message("oadrPoll", lambda r: not r.get("hostile") and r.get("status") == 200,
                                          since=index + 1, timeout=15)
            outcomes[kind] = {"record": record, "error": error.group(0) if error else None,
                              "lines": site.openadr_lines(after=offset, level=("error", "warning", "notice")),
                              "answered": answered, "carried_on": bool(carried_on),
                              "rss_mib": max((v for t, v in rss if t >= record["t"] - 1), default=None),
                              "running": site.daemon.running}
            sc.step(f"hostile {kind}: {'error logged' if error else 'NO error line'}")
    finally:
        stop.set()
        sampler.join(2)
    sc.facts["rss"] = rss
    sc.facts["rss_before"] = rss[0][1] if rss else None
    sc.facts["steps_after"] = (time.time(), site.control_steps())
    mark = vtn.mark()
    event = vtn.add_event(signal="SIMPLE", level=1, notice_s=600, duration_s=600)
    sc.facts["normal"] = (event, vtn.wait_message("oadrCreatedEvent", answers(event, modification=0),
                                                  since=mark, timeout=15)[0])
    sc.step("a normal event answered after the hostile ones")
    mark = vtn.mark()
    vtn.control("cancel-registration")
    sc.facts["canceled"] = vtn.wait_message("oadrCanceledPartyRegistration", since=mark, timeout=10)[0]
    sc.facts["cancelled_state"] = _wait("link cancelled and the registration alarm", site.wait_state(
        lambda s: site.openadr_of(s).get("link") == "cancelled"
        and (alarm(s, "openadr-registration") or {}).get("active"), 10))
    sc.step("the VTN cancelled the registration")


SCENARIOS = {"announced": (_announced, 240), "vtn_down": (_vtn_down, 240), "tls": (_tls, 120),
             "refused": (_refused, 90), "hostile": (_hostile, 180)}


def _scenario(name, tmp_path_factory):
    body, limit = SCENARIOS[name]
    return Scenario(name, body, tmp_path_factory.mktemp(f"openadr-{name}"), limit)


@pytest.fixture(scope="module")
def announced(tmp_path_factory):
    sc = _scenario("announced", tmp_path_factory)
    yield sc
    sc.finish()


@pytest.fixture(scope="module")
def vtn_down(tmp_path_factory):
    sc = _scenario("vtn_down", tmp_path_factory)
    yield sc
    sc.finish()


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    sc = _scenario("tls", tmp_path_factory)
    yield sc
    sc.finish()


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
    sc = _scenario("refused", tmp_path_factory)
    yield sc
    sc.finish()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    sc = _scenario("hostile", tmp_path_factory)
    yield sc
    sc.finish()


@pytest.fixture(scope="module", autouse=True)
def _side_by_side(request):
    """Starts every scenario the selected tests need at once, so that they run together."""
    for name in SCENARIOS:
        if any(name in item.fixturenames for item in request.session.items
               if item.module is request.module):
            request.getfixturevalue(name)


def _crash_markers(site):
    text = "".join(d.log() + d.stderr() for d in site.daemons)
    return [m for m in CRASH_MARKERS if m in text]


# ----------------------------------------------------------------------------- registration

def test_it_registers_with_the_vtn_and_shows_the_ven_id_it_was_given(announced):
    state = announced.need("registered_state")
    site = announced.sites[0]
    records = site.vtn.records()
    types = [r["type"] for r in records]
    for message in ("oadrQueryRegistration", "oadrCreatePartyRegistration", "oadrRegisterReport"):
        assert message in types, f"the VTN never received {message}: {types[:20]}"
    assert types.index("oadrQueryRegistration") < types.index("oadrCreatePartyRegistration") \
        < types.index("oadrRegisterReport"), types[:20]
    created = next(r for r in records if r["type"] == "oadrCreatePartyRegistration")
    assigned = created["response_payload"]["ven_id"]
    assert assigned and created["response_payload"]["registration_id"], created["response_payload"]
    assert created["payload"].get("ven_name") == "example-school-ven", created["payload"]
    openadr = state["openadr"]
    assert openadr["link"] == "registered" and openadr["ven_id"] == assigned, openadr
    assert openadr["vtn_id"] == "MGE-TEST-VTN", openadr
    # The report it registers: METADATA_TELEMETRY_USAGE with its three data points.
    register = next(r for r in records if r["type"] == "oadrRegisterReport")
    reports = register["payload"]["reports"]
    usage = [r for r in reports if r["report_name"] == "METADATA_TELEMETRY_USAGE"]
    assert usage and usage[0]["report_specifier_id"] == "telemetry-usage", reports
    assert {d["r_id"] for d in usage[0]["report_descriptions"]} == \
        {"grid_import_kw", "delivered_kw", "available_discharge_kw"}, usage[0]
    # Every later message names the venID it was given; and it polls about every second.
    later = [r for r in records if r["type"] in ("oadrPoll", "oadrCreatedEvent", "oadrUpdateReport")]
    assert later and all(r["ven_id"] == assigned for r in later), {r["ven_id"] for r in later}
    assert "OpenADR: registered with the VTN" in site.daemons[0].log(), announced.describe()
    polls = [r["t"] for r in records if r["type"] == "oadrPoll"]
    assert len(polls) > 60, f"only {len(polls)} polls"


def test_it_polls_again_at_once_after_a_non_empty_answer(announced):
    announced.need("answers_in")
    records = announced.sites[0].vtn.records()
    polls = [(i, r) for i, r in enumerate(records) if r["type"] == "oadrPoll"]
    gaps = []
    for (i, r), (_, nxt) in zip(polls, polls[1:]):
        if r["response_type"] in ("oadrDistributeEvent", "oadrCreateReport"):
            gaps.append((r["response_type"], round(nxt["t"] - r["t"], 2)))
    assert gaps and any(t == "oadrDistributeEvent" for t, _ in gaps), gaps
    # The answer to the distribution (oadrCreatedEvent) comes in between; well under the
    # one-second poll interval in all.
    assert all(gap < 0.8 for _, gap in gaps), gaps


def test_a_vtn_that_refuses_the_registration_raises_the_registration_alarm(refused):
    state, log, running = refused.need("refused_state", "refused_log", "refused_running")
    assert running, log[-3000:]
    assert state["openadr"]["link"] == "refused" and state["openadr"]["last_error"], state["openadr"]
    a = alarm(state, "openadr-registration")
    assert a and a["active"] and a["severity"] == "critical", state["alarms"]
    assert re.search(r"(?m)^\S+ error .*OpenADR: the VTN refused the registration", log), log[-3000:]


# ----------------------------------------------------------------------------- events

def test_an_announced_event_is_answered_optin_and_shown_as_the_next_event(announced):
    ev, main_start, state = announced.need("events", "main_start", "next_event_state")
    site = announced.sites[0]
    answer = site.vtn.messages("oadrCreatedEvent", where=answers(ev["main"], modification=0))[0]
    response = next(r for r in event_responses(answer) if r["event_id"] == ev["main"])
    assert response["opt_type"] == "optIn" and int(response["response_code"]) == 200, response
    assert answer["response_payload"]["response"]["response_code"] == 200, answer["response_payload"]
    nxt = state["next_event"]
    assert nxt["id"] == ev["main"] and nxt["active"] is False, nxt
    assert abs(parse_site_local(nxt["start"]) - main_start) <= 1.5, (nxt, main_start)
    assert abs(parse_site_local(nxt["end"]) - (main_start + MAIN_S)) <= 1.5, (nxt, main_start)
    shown = site.event_of(state, ev["main"])
    assert shown["opt"] == "optIn" and shown["modification"] == 0 and shown["status"] in ("far", "near"), shown
    assert abs(parse_utc(shown["start"]) - main_start) <= 1 and "SIMPLE level 2" in shown["asks"], shown
    log = site.daemons[0].log()
    assert f"OpenADR: event {ev['main']} received" in log, announced.describe()
    assert f"OpenADR: told the VTN optIn for event {ev['main']} (modification 0)" in log, announced.describe()


def test_during_the_event_the_buses_discharge_and_the_reports_say_so(announced):
    ev, start, cancelled_at = announced.need("events", "main_start", "cancelled_at")
    site = announced.sites[0]
    window = (start + 8, cancelled_at - 1)
    states = site.states_between(*window)
    assert states and all(s["mode"] == "demand-response" for s in states), \
        "; ".join(f"{s['time']} {s['mode']}" for s in states)
    assert all((s.get("next_event") or {}).get("active") for s in states), [s.get("next_event") for s in states]
    shown = [(s["time"], (site.event_of(s, ev["main"]) or {}).get("status")) for s in states]
    # Told at each state's time: an event that has begun shows active from its first second,
    # not from the VEN's next poll. The first few states that do not, in full, if any.
    assert all(status == "active" for _, status in shown), \
        [(s["time"], site.openadr_of(s)) for s in states if (site.event_of(s, ev["main"]) or {}).get("status") != "active"][:3]
    # What the building really saw: the buses gave energy back, the grid import dropped.
    samples = site.samples_between(*window)
    assert len(samples) > 20, f"{len(samples)} samples in the event"
    charger = sum(sum(s["charger_kw"].values()) for s in samples) / len(samples)
    grid = sum(s["grid_kw"] for s in samples) / len(samples)
    building = sum(s["building_kw"] for s in samples) / len(samples)
    assert charger < -30, f"mean charger power in the event {charger:.1f} kW"
    assert grid < building - 30, (grid, building)
    # The oadrUpdateReports the VTN received: delivered_kw > 0 in the event's intervals.
    intervals = [i for r in site.vtn.messages("oadrUpdateReport") for i in report_intervals(r)]
    assert intervals, "the VTN received no oadrUpdateReport"
    assert all(i[2] in (None, REPORT_S) for i in intervals), {i[2] for i in intervals}
    inside = [i for i in intervals if i[1] is not None and window[0] <= i[1] and i[1] + REPORT_S <= window[1]]
    assert len(inside) >= 4, f"{len(inside)} report intervals inside the event: {intervals[-20:]}"
    assert all(i[3].get("delivered_kw", 0) > 10 for i in inside), [i[3] for i in inside]
    assert all(set(i[3]) == {"grid_import_kw", "delivered_kw", "available_discharge_kw"} for i in inside)
    # The mean it reports agrees with what the chargers did in those same intervals (within
    # a few kW): the emulator's samples, not the appliance's own readings.
    delivered = sum(i[3]["delivered_kw"] for i in inside) / len(inside)
    covered = [s for s in samples if any(i[1] <= s["wall"] < i[1] + REPORT_S for i in inside)]
    assert covered, "no emulator samples in the reported intervals"
    truth = sum(sum(s["charger_kw"].values()) for s in covered) / len(covered)
    assert abs(delivered + truth) < max(15, 0.2 * abs(truth)), \
        (delivered, truth, [(i[1], i[3]["delivered_kw"]) for i in inside])


def test_the_vtn_accepts_the_reports_each_interval_once_every_report_back_duration(announced):
    """The VTN asked at registration for TELEMETRY_USAGE at 5 s granularity, reportBackDuration
    5 s: an oadrUpdateReport about every 5 s, each one the VTN takes (oadrUpdatedReport),
    each interval sent once."""
    announced.need("cancelled_at")
    updates = announced.sites[0].vtn.messages("oadrUpdateReport")
    assert len(updates) >= 10, f"{len(updates)} oadrUpdateReports"
    refused = [(r["status"], r["response_type"]) for r in updates
               if r["status"] != 200 or r["response_type"] != "oadrUpdatedReport"]
    assert not refused, (f"the VTN refused {len(refused)} of {len(updates)} oadrUpdateReports "
                         f"({sorted(set(refused))}); the first one it refused:\n"
                         f"{next(r for r in updates if r['status'] != 200)['xml'][:1500]}")
    span = updates[-1]["t"] - updates[0]["t"]
    assert len(updates) - 1 <= span / REPORT_S * 1.5 + 1, \
        f"{len(updates)} oadrUpdateReports in {span:.0f} s, for a reportBackDuration of {REPORT_S} s"
    sent = [v for r in updates for v in report_payloads(r)]
    repeated = len(sent) - len(set(sent))
    assert not repeated, f"{repeated} of {len(sent)} values (interval, rID) were sent more than once"


def test_a_modified_event_is_answered_for_its_new_modification_and_shown_with_its_new_times(announced):
    ev, number, (start, end), state = announced.need("events", "mod_number", "moved", "mod_state")
    site = announced.sites[0]
    assert number == 1
    answer = site.vtn.messages("oadrCreatedEvent", where=answers(ev["mod"], modification=1))
    assert answer and any(r["opt_type"] == "optIn" for r in event_responses(answer[-1])
                          if r["event_id"] == ev["mod"]), answer
    shown = site.event_of(state, ev["mod"])
    assert abs(parse_utc(shown["start"]) - start) <= 1 and abs(parse_utc(shown["end"]) - end) <= 1, (shown, start)
    assert "LOAD_DISPATCH delta 50" in shown["asks"] and shown["requested_kw"] == 50, shown
    assert f"OpenADR: event {ev['mod']} modified (0 → 1)" in site.daemons[0].log(), announced.describe()


def test_a_cancelled_event_is_answered_and_its_discharge_stops(announced):
    ev, number, answer, answered, state, observed = announced.need(
        "events", "cancel_number", "cancel_answer", "cancel_answered", "after_cancel_state", "observed_after_cancel")
    site = announced.sites[0]
    assert number == 1
    response = next(r for r in event_responses(answer) if r["event_id"] == ev["main"])
    assert int(response["response_code"]) == 200, response
    assert answer["response_payload"]["response"]["response_code"] == 200, answer["response_payload"]
    assert (state.get("next_event") or {}).get("id") != ev["main"], state.get("next_event")
    shown = site.event_of(state, ev["main"])
    assert shown is None or shown["status"] == "cancelled", shown
    # The VTN has its answer: it no longer distributes the event.
    vtn_events = [e["event_id"] for es in site.vtn.state()["events"].values() for e in es] \
        if site.vtn.proc.poll() is None else None
    assert vtn_events is None or ev["main"] not in vtn_events, vtn_events
    later = site.states_between(answered + 3, observed)
    assert later and not any(s["mode"] == "demand-response" for s in later), \
        "; ".join(f"{s['time']} {s['mode']}" for s in later)
    before = site.samples_between(announced.facts["main_start"] + 8, announced.facts["cancelled_at"] - 1)
    after = site.samples_between(answered + 5, observed)
    mean = lambda ss: sum(sum(s["charger_kw"].values()) for s in ss) / max(1, len(ss))  # noqa: E731
    assert after and mean(after) > mean(before) + 30, (mean(before), mean(after))
    assert f"OpenADR: event {ev['main']} cancelled" in site.daemons[0].log(), announced.describe()


def test_events_it_will_not_follow_are_answered_optout_with_the_code_that_says_why(announced):
    ev, _ = announced.need("events", "answers_in")
    site = announced.sites[0]
    for key in ("too_long", "too_far"):
        answer = site.vtn.messages("oadrCreatedEvent", where=answers(ev[key], modification=0))[-1]
        response = next(r for r in event_responses(answer) if r["event_id"] == ev[key])
        assert response["opt_type"] == "optOut" and int(response["response_code"]) == 454, (key, response)
    state = announced.facts["next_event_state"]
    assert "13.0 h" in (site.event_of(state, ev["too_long"]) or {}).get("reason", ""), \
        site.event_of(state, ev["too_long"])


def test_start_randomisation_is_drawn_once_within_startafter(announced):
    ev, first, later, nominal = announced.need("events", "random_first", "random_later", "random_start")
    start = parse_utc(first["start"])
    assert nominal - 1 <= start <= nominal + 600 + 1, (first, nominal)
    assert later and later["start"] == first["start"] and later["end"] == first["end"], (first, later)


# ----------------------------------------------------------------------------- staff

def test_staff_opt_out_from_the_panel_then_back_in(announced):
    ev, reply, answer, state, reply_in, answer_in, state_in = announced.need(
        "events", "opt_out_reply", "opt_out_answer", "opt_out_state", "opt_in_reply", "opt_in_answer", "opt_in_state")
    assert reply["outcome"] == "applied", reply
    response = next(r for r in event_responses(answer) if r["event_id"] == ev["opt"])
    assert response["opt_type"] == "optOut" and response["modification_number"] == 0, response
    shown = announced.sites[0].event_of(state, ev["opt"])
    assert shown["opt"] == "optOut" and STAFF_REASON in shown["reason"] and "panel-lobby" in shown["reason"], shown
    assert reply_in["outcome"] == "applied", reply_in
    response = next(r for r in event_responses(answer_in) if r["event_id"] == ev["opt"])
    assert response["opt_type"] == "optIn" and response["modification_number"] == 0, response
    assert announced.sites[0].event_of(state_in, ev["opt"])["reason"] in (None, ""), state_in


def test_cancel_event_on_an_event_from_the_vtn_is_refused(announced):
    reply = announced.need("cancel_reply")
    assert reply["outcome"] == "refused" and "came from the utility's VTN" in reply.get("reason", ""), reply


def test_pause_v2x_opts_out_with_its_reason_and_resume_opts_back_in(announced):
    ev, reply, state, _ = announced.need("events", "pause_reply", "paused_state", "resumed")
    assert reply["outcome"] == "applied", reply
    shown = announced.sites[0].event_of(state, ev["opt"])
    assert shown["opt"] == "optOut" and shown["reason"] == "staff have paused V2X", shown
    assert announced.sites[0].event_of(state, ev["mod"])["opt"] == "optOut"


def test_records_of_registration_events_and_answers_reach_the_central_program(announced):
    records = announced.need("central_records")
    ev = announced.facts["events"]
    by_kind = {}
    for r in records:
        by_kind.setdefault(r.get("event"), []).append(r)
    assert {"openadr_registered", "openadr_event", "openadr_opt"} <= set(by_kind), sorted(k for k in by_kind if k)
    assert any(r.get("event_id") == ev["main"] for r in by_kind["openadr_event"]), by_kind["openadr_event"][:3]
    assert any(r.get("event_id") == ev["opt"] and r.get("opt") == "optOut" for r in by_kind["openadr_opt"]), \
        by_kind["openadr_opt"][:5]


# ----------------------------------------------------------------------------- the VTN away

def test_with_the_vtn_down_at_start_it_runs_and_registers_once_the_vtn_is_up(vtn_down):
    state, running, lines, up_at, registered = vtn_down.need(
        "unreachable_state", "down_running", "down_log", "up_at", "registered_state")
    site = vtn_down.sites[0]
    assert running, vtn_down.describe()
    assert state["openadr"]["link"] == "unreachable" and state["openadr"]["last_error"], state["openadr"]
    assert lines and any(str(site.vtn.port) in line for line in lines), lines
    assert registered["openadr"]["ven_id"], registered["openadr"]
    created = site.vtn.messages("oadrCreatePartyRegistration")
    assert created and created[0]["t"] >= up_at, created
    assert vtn_down.facts["registered_at"] - up_at < 40


def test_with_the_vtn_down_during_an_event_the_event_runs_and_the_silence_is_alarmed(vtn_down):
    start, end, down_at, silent, silent_at = vtn_down.need("start", "end", "vtn_down_at", "silent_state", "silent_at")
    site = vtn_down.sites[0]
    a = alarm(silent, "openadr-silent")
    assert a["severity"] == "warning" and a["active"], a
    assert silent_at - down_at < 30, (down_at, silent_at)
    assert silent["openadr"]["link"] == "unreachable", silent["openadr"]
    restarted = vtn_down.facts.get("restart_requested", end)
    states = site.states_between(start + 8, restarted)
    assert states and all(s["mode"] == "demand-response" for s in states), \
        "; ".join(f"{s['time']} {s['mode']}" for s in states)
    samples = site.samples_between(max(start + 8, down_at + 1), restarted)
    assert samples, "no samples while the VTN was down"
    mean = sum(sum(s["charger_kw"].values()) for s in samples) / len(samples)
    assert mean < -30, f"mean charger power with the VTN down: {mean:.1f} kW"


def test_a_restart_with_the_vtn_down_follows_the_kept_event(vtn_down):
    rc, restarted, state, discharging, event = vtn_down.need(
        "first_rc", "restarted_at", "restored_state", "restored_discharging", "event")
    site = vtn_down.sites[0]
    assert rc == 0, vtn_down.describe()
    assert state["next_event"]["id"] == event and state["next_event"]["active"], state["next_event"]
    assert site.event_of(state, event)["opt"] == "optIn", site.event_of(state, event)
    assert state["openadr"]["link"] != "registered", state["openadr"]
    assert parse_utc(discharging["time"]) - restarted < 30
    second = site.daemons[1]
    assert second.running or site.codes.get("daemon") == 0, second.describe()
    assert "OpenADR: registered with the VTN" not in vtn_down.facts.get("second_log", second.log())
    assert not _crash_markers(site), _crash_markers(site)


# ----------------------------------------------------------------------------- TLS

def test_over_tls_the_ven_registers_with_its_certificate(tls):
    state, pki, records = tls.need("good_state", "pki", "records")
    assert state["openadr"]["link"] == "registered" and state["openadr"]["ven_id"], state["openadr"]
    created = [r for r in records if r["type"] == "oadrCreatePartyRegistration"]
    assert created, [r["type"] for r in records]
    assert created[0]["tls_fingerprint"] == fingerprint(pki.cert("ven")), created[0]["tls_fingerprint"]
    assert all(r["tls_fingerprint"] == fingerprint(pki.cert("ven")) for r in records), \
        {r["tls_fingerprint"] for r in records}
    assert any(r["type"] == "oadrPoll" for r in records)


def test_over_tls_a_certificate_from_another_ca_is_refused(tls):
    state, running, log, records, pki = tls.need("rogue_state", "rogue_running", "rogue_log", "records", "pki")
    assert running, log[-3000:]
    assert state["openadr"]["link"] == "unreachable", state["openadr"]
    assert state["openadr"]["last_error"], state["openadr"]
    assert re.search(r"(?m)^\S+ error .*OpenADR: ", log), log[-3000:]
    assert not any(r["tls_fingerprint"] == fingerprint(pki.cert("rogue")) for r in records)


def _check(tmp_path, **env):
    site = FieldSite(tmp_path)
    return run(["check-config", SHIPPED_SITE], env=site.env(**env))


VTN = "://127.0.0.1:9/OpenADR2/Simple/2.0b"


def test_check_config_refuses_plain_http_unless_the_test_variable_is_set(tmp_path):
    proc = _check(tmp_path, MGE_OPENADR__VTN_URL="http" + VTN)
    assert proc.returncode != 0, describe(proc)
    out = proc.stdout + proc.stderr
    assert "vtn_url" in out and "https://" in out, describe(proc)
    proc = _check(tmp_path, MGE_OPENADR__VTN_URL="http" + VTN, MICROGRID_EDGE_TEST_OPENADR_PLAIN_HTTP="1",
                  MGE_OPENADR__POLL_SECONDS="1")
    assert proc.returncode == 0, describe(proc)
    assert "openadr: VEN" in proc.stdout, describe(proc)


def test_check_config_refuses_https_without_a_client_certificate(tmp_path):
    # Empty overrides: the shipped file may name certificate files of its own.
    proc = _check(tmp_path, MGE_OPENADR__VTN_URL="https" + VTN, MGE_OPENADR__CERTIFICATE_FILE="",
                  MGE_OPENADR__KEY_FILE="")
    assert proc.returncode != 0, describe(proc)
    assert "certificate_file" in proc.stdout + proc.stderr, describe(proc)
    pem = tmp_path / "ven.pem"
    pem.write_text("not read by check-config\n")
    proc = _check(tmp_path, MGE_OPENADR__VTN_URL="https" + VTN, MGE_OPENADR__CERTIFICATE_FILE=str(pem),
                  MGE_OPENADR__KEY_FILE=str(pem))
    assert proc.returncode == 0, describe(proc)
    assert "TLS client certificate" in proc.stdout, describe(proc)
    # A site polls every 10 to 60 s.
    proc = _check(tmp_path, MGE_OPENADR__VTN_URL="https" + VTN, MGE_OPENADR__CERTIFICATE_FILE=str(pem),
                  MGE_OPENADR__KEY_FILE=str(pem), MGE_OPENADR__POLL_SECONDS="1")
    assert proc.returncode != 0 and "poll_seconds" in proc.stdout + proc.stderr, describe(proc)


def test_check_config_refuses_openadr_with_a_simulated_plant(tmp_path):
    proc = run(["check-config", CONFIGS / "example-school.yaml"],
               env={"MGE_OPENADR__VTN_URL": "http" + VTN, "MICROGRID_EDGE_TEST_OPENADR_PLAIN_HTTP": "1",
                    "MGE_OPENADR__POLL_SECONDS": "1"})
    assert proc.returncode != 0, describe(proc)
    assert "plant" in proc.stdout + proc.stderr, describe(proc)
    assert not any(m in proc.stdout + proc.stderr for m in CRASH_MARKERS), describe(proc)


# ----------------------------------------------------------------------------- a hostile VTN

@pytest.mark.parametrize("kind", HOSTILE)
def test_a_hostile_answer_is_logged_and_the_ven_carries_on(hostile, kind):
    outcomes = hostile.need("hostile")
    if kind not in outcomes:
        pytest.fail(f"the scenario stopped before {kind}\n{hostile.describe()}", pytrace=False)
    o = outcomes[kind]
    assert o["running"], hostile.describe()
    assert o["error"], (f"no error line for {kind} matching {HOSTILE_ERRORS[kind]!r}; the OpenADR lines "
                        f"after it: {o['lines']}")
    assert o["carried_on"], f"no normal poll after {kind}"
    if kind == "unknown-signal-name":
        response = next(r for r in event_responses(o["answered"]) if int(r["response_code"]) == 460)
        assert response["opt_type"] == "optOut", response
    if kind in ("huge", "billion-laughs"):
        before = hostile.facts.get("rss_before")
        assert o["rss_mib"] is not None, "no RSS read"
        assert o["rss_mib"] < 60 and (before is None or o["rss_mib"] - before < 8), \
            f"RSS {before:.1f} MiB before the hostile answers, {o['rss_mib']:.1f} MiB after {kind}"
    if kind == "external-entity":
        # Nothing of /etc/passwd went anywhere: not into the log, not back to the VTN.
        site = hostile.facts["site"]
        assert "root:x:0:0" not in site.daemon.log()
        assert not any("root:x:0:0" in (r.get("xml") or "") for r in site.vtn.records())


def test_after_the_hostile_answers_it_kept_its_control_loop_and_takes_a_normal_event(hostile):
    (t0, before), (t1, after), (event, answer), rss = hostile.need("steps_before", "steps_after", "normal", "rss")
    site = hostile.facts["site"]
    assert before is not None and after is not None, (before, after)
    # The control loop steps about once a second throughout.
    assert after - before >= 0.7 * (t1 - t0), (before, after, t1 - t0)
    assert any(r["event_id"] == event for r in event_responses(answer)), answer
    assert max(v for _, v in rss) < 60, \
        f"RSS {rss[0][1]:.1f} MiB before the hostile answers, at most {max(v for _, v in rss):.1f} MiB"
    assert not _crash_markers(site), _crash_markers(site)
    assert site.codes.get("daemon") == 0, hostile.describe()


def test_a_registration_the_vtn_cancels_is_confirmed_and_alarmed(hostile):
    canceled, state = hostile.need("canceled", "cancelled_state")
    assert canceled["status"] == 200, canceled
    assert (canceled["payload"] or {}).get("registration_id"), canceled["payload"]
    a = alarm(state, "openadr-registration")
    assert a["severity"] == "critical" and a["active"], a
    assert state["openadr"]["link"] == "cancelled", state["openadr"]


def test_reports_the_vtn_asks_for_later_are_sent(hostile):
    request, updates = hostile.need("report")
    if isinstance(updates, AssertionError):
        pytest.fail(f"{updates}\n{hostile.describe()}", pytrace=False)
    intervals = [i for r in updates for i in report_intervals(r) if i[0] == request]
    assert intervals and all(i[2] in (None, 2) for i in intervals), intervals
    assert all(r["status"] == 200 and r["response_type"] == "oadrUpdatedReport" for r in updates), \
        [(r["status"], r["response_type"]) for r in updates]
    # No chargers here: only the grid import (from the meter) is measured, and only what
    # was measured is sent.
    assert all("grid_import_kw" in i[3] and set(i[3]) <= {"grid_import_kw", "delivered_kw", "available_discharge_kw"}
               for i in intervals), [i[3] for i in intervals]
    assert all(abs(i[3]["grid_import_kw"] - 180) < 1 for i in intervals), [i[3] for i in intervals]
    created = hostile.facts["site"].vtn.messages("oadrCreatedReport")
    assert created and request in created[0]["xml"], created

"""Self-tests of the OpenADR 2.0b test peer (openadr_vtn.py, openleadr 0.5.36's VTN), driven
by openleadr's own VEN (OpenADRClient), so that the peer is known to speak what openleadr
speaks before the appliance's VEN is tested against it; and of its hostile bodies. No
microgrid-edge binary is involved.

Every test runs its own VTN on a free 127.0.0.1 port with a poll frequency of 1 s; the
client is driven by hand (client._poll()) where the scheduler would only add waiting, and
by OpenADRClient.run() in the end-to-end test. The whole file takes about 20 s.
"""
import asyncio
import hashlib
import http.client
import json
import logging
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest
from lxml import etree
from openleadr import OpenADRClient
from openleadr.messaging import create_message, parse_message, validate_xml_schema

from openadr_vtn import HOSTILE_KINDS, TEN_MIB, JsonLines, VTNPeer, billion_laughs_dtd, fingerprint, hostile_body

HERE = Path(__file__).resolve().parent
logging.getLogger("openleadr").setLevel(logging.CRITICAL)   # it logs every refused connection


# openleadr 0.5.36 stores itself in its aiohttp application under a plain string key.
pytestmark = pytest.mark.filterwarnings("ignore:It is recommended to use web.AppKey")


@pytest.fixture(scope="session", autouse=True)
def _binary_is_there():
    """Overrides conftest.py's fixture of the same name: these tests need openleadr, not
    the appliance binary."""


# ----------------------------------------------------------------------------- helpers

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(scenario, timeout=30):
    asyncio.run(asyncio.wait_for(scenario(), timeout))


def make_client(peer, opt="optIn", **options):
    """openleadr's VEN, answering every event with `opt` (a dict {"value"} to change it later)."""
    client = OpenADRClient(ven_name="mge-selftest", vtn_url=peer.url, show_fingerprint=False, **options)
    answer = opt if isinstance(opt, dict) else {"value": opt}

    async def on_event(event):
        return answer["value"]

    client.add_handler("on_event", on_event)
    client.add_handler("on_update_event", on_event)
    return client


async def close_client(client):
    if client.scheduler.running:
        client.scheduler.shutdown(wait=False)
    if client.report_queue_task:
        client.report_queue_task.cancel()
    if client.client_session:
        await client.client_session.close()


async def register(client):
    await client.query_registration()
    await client.create_party_registration()
    assert client.registration_id, "the VEN should be registered"


def distributed(record):
    """The events of a recorded oadrPoll answered with oadrDistributeEvent."""
    assert record["response_type"] == "oadrDistributeEvent", record["response_xml"][:2000]
    return {e["event_descriptor"]["event_id"]: e for e in record["response_payload"]["events"]}


def delivered(peer, event_id, modification_number):
    """The event as first distributed with that modificationNumber."""
    for record in peer.messages("oadrPoll"):
        if record["response_type"] == "oadrDistributeEvent":
            event = distributed(record).get(event_id)
            if event and event["event_descriptor"]["modification_number"] == modification_number:
                return event
    raise AssertionError(f"{event_id} #{modification_number} was not distributed")


def responses(record):
    return {(r["event_id"], r["modification_number"]): r for r in record["payload"]["event_responses"]}


async def poll_until(client, peer, response_type, tries=5):
    for _ in range(tries):
        n = len(peer.records)
        await client._poll()
        found = [r for r in peer.messages("oadrPoll", since=n) if r["response_type"] == response_type]
        if found:
            return found[-1]
    raise AssertionError(f"no oadrPoll answered with {response_type} in {tries} polls: "
                         f"{[r['response_type'] for r in peer.messages('oadrPoll')]}")


def parse_utc(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ----------------------------------------------------------------------------- the VTN

def test_registration_events_and_reports_with_openleadrs_own_ven(tmp_path):
    """OpenADRClient.run() in full: registration, report registration, polling every 1 s; an
    event with 60 s of notice, opted in; modified; cancelled; a TELEMETRY_USAGE report
    requested and updated; the registration cancelled."""
    log = JsonLines(tmp_path / "vtn.jsonl")

    async def scenario():
        async with VTNPeer(port=0, ven_id="ven-1", log=log) as peer:
            client = make_client(peer)
            client.add_report(callback=lambda: 42.5, resource_id="site-meter", measurement="RealPower",
                              sampling_rate=timedelta(seconds=1), report_duration=timedelta(seconds=1),
                              report_specifier_id="usage-1", r_id="site-power")
            try:
                await client.run()
                assert client.ven_id == "ven-1" and client.registration_id == peer.vens["ven-1"]["registration_id"]
                assert [r["type"] for r in peer.records[:4]] == [
                    "oadrQueryRegistration", "oadrCreatePartyRegistration", "oadrRegisterReport", "oadrRequestEvent"]
                created = peer.messages("oadrCreatePartyRegistration")[0]
                assert created["response_type"] == "oadrCreatedPartyRegistration"
                assert created["response_payload"]["registration_id"] == client.registration_id
                assert created["response_payload"]["requested_oadr_poll_freq"] == 1.0
                metadata = peer.messages("oadrRegisterReport")[0]["payload"]["reports"][0]
                assert metadata["report_name"] == "METADATA_TELEMETRY_USAGE"
                assert metadata["report_specifier_id"] == "usage-1"
                assert [d["r_id"] for d in metadata["report_descriptions"]] == ["site-power"]

                # An event with 60 s of notice, delivered on the next poll and opted in.
                added = datetime.now(timezone.utc)
                event_id = peer.add_event(signal="SIMPLE", level=2, notice_s=60, duration_s=120, ramp_up_s=10,
                                          start_after_s=5)
                opted = await peer.wait_message("oadrCreatedEvent", timeout=5)
                assert responses(opted[0])[(event_id, 0)]["opt_type"] == "optIn"
                delivery = [r for r in peer.messages("oadrPoll") if r["response_type"] == "oadrDistributeEvent"][0]
                event = distributed(delivery)[event_id]
                assert event["event_descriptor"]["event_status"] == "far"
                assert event["event_descriptor"]["modification_number"] == 0
                period = event["active_period"]
                assert 55 <= (parse_utc(period["dtstart"]) - added).total_seconds() <= 65
                assert (period["duration"], period["notification"], period["ramp_up"]) == (120, 60, 10)
                assert period["tolerance"]["tolerate"]["startafter"] == 5
                signal_ = event["event_signals"][0]
                assert (signal_["signal_name"], signal_["signal_type"], signal_["intervals"][0]["signal_payload"]) \
                    == ("SIMPLE", "level", 2.0)

                # Modified: modificationNumber 1, the new level, opted in again.
                assert peer.modify_event(event_id, level=3, reason="deeper") == 1
                opted = await peer.wait_message("oadrCreatedEvent", where=lambda r: (event_id, 1) in responses(r))
                assert responses(opted[0])[(event_id, 1)]["opt_type"] == "optIn"
                event = delivered(peer, event_id, 1)
                assert event["event_descriptor"]["modification_reason"] == "deeper"
                assert event["event_signals"][0]["intervals"][0]["signal_payload"] == 3.0

                # Cancelled: eventStatus cancelled, modificationNumber 2; once the VEN has
                # answered, openleadr drops the event from its queue.
                assert peer.cancel_event(event_id) == 2
                await peer.wait_message("oadrCreatedEvent", where=lambda r: (event_id, 2) in responses(r))
                cancelled = [r for r in peer.messages("oadrPoll") if r["response_type"] == "oadrDistributeEvent"][-1]
                assert distributed(cancelled)[event_id]["event_descriptor"]["event_status"] == "cancelled"
                assert peer.state()["events"]["ven-1"] == []

                # A TELEMETRY_USAGE report at 1 s: oadrCreateReport on a poll, then values.
                request_id = peer.request_report(granularity_s=1)
                await peer.wait_message("oadrCreatedReport",
                                        where=lambda r: r["payload"]["pending_reports"][0]["report_request_id"] == request_id)
                update = (await peer.wait_message("oadrUpdateReport", timeout=5))[0]
                report = update["payload"]["reports"][0]
                assert (report["report_request_id"], report["report_name"]) == (request_id, "TELEMETRY_USAGE")
                assert report["intervals"][0]["report_payload"] == {"r_id": "site-power", "value": 42.5}
                assert update["response_type"] == "oadrUpdatedReport"

                await client.cancel_party_registration()
                cancel = peer.messages("oadrCancelPartyRegistration")[0]
                assert cancel["response_type"] == "oadrCanceledPartyRegistration"
                assert peer.vens["ven-1"]["registration_id"] is None
                kind, answer = await client.poll()
                assert kind == "oadrRequestReregistration", answer
                assert peer.messages("oadrPoll")[-1]["response_type"] == "oadrRequestReregistration"
            finally:
                await client.stop()
    run(scenario)
    log.close()
    lines = [json.loads(line) for line in (tmp_path / "vtn.jsonl").read_text().splitlines()]
    assert lines[0]["event"] == "started" and lines[-1]["event"] == "stopped"
    assert {"oadrCreatedEvent", "oadrRegisterReport", "oadrUpdateReport"} <= {line.get("type") for line in lines}
    assert all(line["xml"].startswith("<?xml") for line in lines if line.get("type"))


def test_load_dispatch_opt_out_and_startafter():
    """A LOAD_DISPATCH kW setpoint in two intervals, opted out of; the xml is what it says."""
    async def scenario():
        async with VTNPeer(port=0) as peer:
            client = make_client(peer, opt="optOut")
            try:
                await register(client)
                assert client.ven_id.startswith("ven-")      # assigned by the VTN
                event_id = peer.add_event(signal="LOAD_DISPATCH", notice_s=30, intervals=[[60, -75], [60, -50]],
                                          start_after_s=20, priority=1)
                record = await poll_until(client, peer, "oadrDistributeEvent")
                event = distributed(record)[event_id]
                signal_ = event["event_signals"][0]
                assert (signal_["signal_name"], signal_["signal_type"]) == ("LOAD_DISPATCH", "setpoint")
                assert [i["signal_payload"] for i in signal_["intervals"]] == [-75.0, -50.0]
                assert event["active_period"]["duration"] == 120
                tree = etree.fromstring(record["response_xml"].encode())
                ns = {"power": "http://docs.oasis-open.org/ns/emix/2011/06/power",
                      "scale": "http://docs.oasis-open.org/ns/emix/2011/06/siscale",
                      "xcal": "urn:ietf:params:xml:ns:icalendar-2.0"}
                assert tree.findtext(".//power:powerReal/power:itemUnits", namespaces=ns) == "W"
                assert tree.findtext(".//power:powerReal/scale:siScaleCode", namespaces=ns) == "k"
                assert tree.findtext(".//xcal:tolerate/xcal:startafter", namespaces=ns) == "PT20S"
                opted = await peer.wait_message("oadrCreatedEvent")
                assert responses(opted[0])[(event_id, 0)]["opt_type"] == "optOut"
                # An answer for a modificationNumber the VTN does not have: 452.
                bogus = create_message("oadrCreatedEvent", ven_id=client.ven_id,
                                       response={"response_code": 200, "response_description": "OK", "request_id": None},
                                       event_responses=[{"response_code": 200, "response_description": "OK",
                                                         "request_id": "x", "event_id": event_id,
                                                         "modification_number": 9, "opt_type": "optIn"}])
                async with aiohttp.ClientSession() as session:
                    async with session.post(f"{peer.url}/EiEvent", data=bogus,
                                            headers={"Content-Type": "application/xml"}) as response:
                        kind, payload = parse_message(await response.read())
                assert (kind, payload["response"]["response_code"]) == ("oadrResponse", 452)
            finally:
                await close_client(client)
    run(scenario)


def test_vtn_down_at_start_and_during_an_event():
    """Nothing listens until start(); stop() closes the port and the open keep-alive
    connections, and start() again brings back the same registrations and events."""
    async def scenario():
        port = free_port()
        peer = VTNPeer(port=port, ven_id="ven-1")
        client = make_client(peer)
        try:
            assert await client.query_registration() == (None, {})        # connection refused
            await peer.start()
            assert peer.url.endswith(f":{port}/OpenADR2/Simple/2.0b")
            await register(client)
            event_id = peer.add_event(level=1, notice_s=0, duration_s=600)
            first = await poll_until(client, peer, "oadrDistributeEvent")
            assert distributed(first)[event_id]["event_descriptor"]["event_status"] == "active"
            await peer.stop()
            assert not peer.listening
            assert await client.poll() == (None, {})                     # the kept-alive connection is gone
            peer.modify_event(event_id, level=2)
            await peer.start()
            again = await poll_until(client, peer, "oadrDistributeEvent")
            event = distributed(again)[event_id]
            assert event["event_descriptor"]["modification_number"] == 1
            assert peer.vens["ven-1"]["registration_id"] == client.registration_id
        finally:
            await close_client(client)
            await peer.close()
    run(scenario)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, and certificates signed by it for the VTN, the VEN and another VEN."""
    folder = tmp_path_factory.mktemp("pki")

    def openssl(*args):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", folder / "ca.key", "-out", folder / "ca.pem",
            "-days", "2", "-subj", "/CN=MGE test CA")
    (folder / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("vtn", "ven", "other"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", folder / f"{name}.key", "-out",
                folder / f"{name}.csr", "-subj", f"/CN=mge-test-{name}")
        openssl("x509", "-req", "-in", folder / f"{name}.csr", "-CA", folder / "ca.pem", "-CAkey", folder / "ca.key",
                "-CAcreateserial", "-out", folder / f"{name}.pem", "-days", "2", "-extfile", folder / "ext")
    return folder


def test_fingerprint_is_the_last_ten_bytes_of_the_sha256_of_the_der(pki):
    der = subprocess.run(["openssl", "x509", "-in", pki / "ven.pem", "-outform", "DER"], check=True,
                         capture_output=True).stdout
    tail = hashlib.sha256(der).digest()[-10:]
    assert fingerprint(pki / "ven.pem") == ":".join(f"{b:02X}" for b in tail)


def test_tls_with_a_fingerprint_check(pki):
    tls = {"cert": str(pki / "vtn.pem"), "key": str(pki / "vtn.key"), "ca": str(pki / "ca.pem")}

    def ven(peer, name, **options):
        return make_client(peer, cert=str(pki / f"{name}.pem"), key=str(pki / f"{name}.key"),
                           ca_file=str(pki / "ca.pem"), disable_signature=True, **options)

    async def scenario():
        expected = fingerprint(pki / "ven.pem")
        async with VTNPeer(port=0, tls=tls, ven_fingerprint=expected) as peer:
            assert peer.url.startswith("https://")
            right, wrong = ven(peer, "ven"), ven(peer, "other")
            try:
                await wrong.create_party_registration()
                assert wrong.registration_id is None
                refused = peer.messages("oadrCreatePartyRegistration")[0]
                assert refused["tls_fingerprint"] == fingerprint(pki / "other.pem")
                assert refused["response_payload"].get("registration_id") is None      # openleadr's "rejected"
                await register(right)
                kind, answer = await right.poll()
                assert kind == "oadrResponse" and answer["response"]["response_code"] == 200
                # Another certificate using the registered venID: openleadr's 463.
                wrong.ven_id = right.ven_id
                kind, answer = await wrong.poll()
                assert (kind, answer["response"]["response_code"]) == ("oadrResponse", 463)
            finally:
                await close_client(right)
                await close_client(wrong)
        # Trust on first use: no fingerprint given, the first certificate is remembered.
        async with VTNPeer(port=0, tls=tls, ven_id="ven-9") as peer:
            first = ven(peer, "other")
            try:
                await register(first)
                assert peer.vens["ven-9"]["fingerprint"] == fingerprint(pki / "other.pem")
                # Signatures: openleadr's VTN default (verify) refuses an unsigned message with
                # HTTP 500; the peer does not verify unless asked.
                assert (await first.poll())[0] == "oadrResponse"
            finally:
                await close_client(first)
        async with VTNPeer(port=0, tls=tls, verify_signatures=True) as peer:
            unsigned = ven(peer, "ven")
            signed = make_client(peer, cert=str(pki / "ven.pem"), key=str(pki / "ven.key"), ca_file=str(pki / "ca.pem"))
            try:
                await register(unsigned)
                assert await unsigned.poll() == (None, {})
                assert peer.messages("oadrPoll")[-1]["status"] == 500
                signed.ven_id = unsigned.ven_id
                assert (await signed.poll())[0] == "oadrResponse"
            finally:
                await close_client(unsigned)
                await close_client(signed)
    run(scenario)


# ----------------------------------------------------------------------------- the script

def _http(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_script_with_control_endpoint_and_control_file(tmp_path):
    log, commands = tmp_path / "vtn.jsonl", tmp_path / "commands.jsonl"
    commands.write_text("")
    vtn = subprocess.Popen([sys.executable, str(HERE / "openadr_vtn.py"), "--port", str(free_port()), "--control-port", "0",
                            "--log", str(log), "--control-file", str(commands), "--ven-id", "ven-7", "--down"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = vtn.stdout.readline().split()
        assert ready[:1] == ["READY"] and len(ready) == 3, f"expected READY <port> <control_port>, got {ready}"
        port, control = int(ready[1]), int(ready[2])
        assert _http(control, "GET", "/state")[1]["listening"] is False

        async def scenario():
            peer_url = f"http://127.0.0.1:{port}/OpenADR2/Simple/2.0b"
            client = OpenADRClient(ven_name="mge-selftest", vtn_url=peer_url, show_fingerprint=False)
            client.add_handler("on_event", lambda event: "optIn")
            try:
                assert await client.query_registration() == (None, {})            # down at start
                assert _http(control, "POST", "/start") == (200, {})
                await client.create_party_registration()
                assert client.ven_id == "ven-7"
                status, reply = _http(control, "POST", "/event", {"signal": "SIMPLE", "level": 1, "notice_s": 5})
                assert status == 200 and reply["event_id"]
                assert (await client.poll())[0] == "oadrDistributeEvent"
                await client._on_event((await client.request_event())[1])
                with open(commands, "a") as f:
                    f.write(json.dumps({"cmd": "event/cancel", "event_id": reply["event_id"]}) + "\n")
                deadline = time.monotonic() + 5
                while _http(control, "GET", "/state")[1]["events"]["ven-7"][0]["event_status"] != "cancelled":
                    assert time.monotonic() < deadline, "the control file's cancel did not arrive"
                    await asyncio.sleep(0.1)
                assert _http(control, "POST", "/event", {"signal": "NOPE"})[0] == 400
                assert _http(control, "POST", "/hostile", {"kind": "not-xml", "count": 1}) == (200, {})
                assert await client.poll() == (None, {})
                assert (await client.poll())[0] == "oadrDistributeEvent"      # hostile once, then normal
                assert _http(control, "POST", "/stop") == (200, {})
                assert await client.poll() == (None, {})
            finally:
                await close_client(client)
        run(scenario)
        status, created = _http(control, "GET", "/messages?type=oadrCreatedEvent")
        assert status == 200 and created[0]["payload"]["event_responses"][0]["opt_type"] == "optIn"
    finally:
        vtn.send_signal(signal.SIGTERM)
        out, err = vtn.communicate(timeout=10)
    assert vtn.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(line.get("event") == "control" and "reply" in line for line in lines)
    assert any(line.get("hostile") == "not-xml" for line in lines)


# ----------------------------------------------------------------------------- hostile bodies

OADR = "{http://openadr.org/oadr-2.0b/2012/07}"
EI = "{http://docs.oasis-open.org/ns/energyinterop/201110}"
SAFE = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)


def safe_tree(body):
    return etree.fromstring(body, SAFE)


def expanded_length(entities, name, known=None):
    """The length of entity `name` once every reference in it is expanded (memoized: the
    expansion itself would be gigabytes)."""
    known = {} if known is None else known
    if name not in known:
        text = entities[name]
        known[name] = len(re.sub(r"&\w+;", "", text)) + sum(
            expanded_length(entities, r, known) for r in re.findall(r"&(\w+);", text))
    return known[name]


def test_hostile_bodies_are_what_they_claim():
    bodies = {kind: hostile_body(kind, "MGE-TEST-VTN", "ven-1") for kind in HOSTILE_KINDS}

    with pytest.raises(etree.XMLSyntaxError):
        safe_tree(bodies["malformed"][2])
    with pytest.raises(etree.XMLSyntaxError):
        safe_tree(bodies["not-xml"][2])
    assert bodies["empty"][:3] == (200, "application/xml", b"")
    assert bodies["http-500"][0] == 500

    name = bodies["unknown-signal-name"][2]
    assert safe_tree(name).findtext(f".//{EI}signalName") == "x-MGE-UNKNOWN-SIGNAL"
    validate_xml_schema(name)                                   # an extension token: schema-valid
    kind = bodies["unknown-signal-type"][2]
    assert safe_tree(kind).findtext(f".//{EI}signalType") == "bogusType"
    with pytest.raises(etree.XMLSyntaxError):
        validate_xml_schema(kind)                               # not in the enumeration

    for hostile, duration in (("absurd-duration", "P9999Y"), ("negative-duration", "-PT1H")):
        tree = safe_tree(bodies[hostile][2])
        durations = [e.text for e in tree.iter("{urn:ietf:params:xml:ns:icalendar-2.0}duration") if e.text]
        assert durations == [duration, duration], durations
        validate_xml_schema(bodies[hostile][2])                 # both fit the schema's pattern

    huge = bodies["huge"][2]
    assert len(huge) == TEN_MIB
    assert safe_tree(huge).find(f".//{OADR}oadrDistributeEvent") is not None

    laughs = bodies["billion-laughs"][2].decode()
    dtd, reference = billion_laughs_dtd()
    assert f"<!DOCTYPE oadr:oadrPayload [{dtd}]>" in laughs and reference in laughs
    assert len(laughs) < 4096
    entities = dict(re.findall(r'<!ENTITY (\w+) "([^"]*)">', laughs))
    assert expanded_length(entities, reference[1:-1]) == 3 * 10**9
    # Without the DTD, and with the reference replaced, it is an ordinary event.
    plain = re.sub(r"<!DOCTYPE[^\[]*\[.*?\]>", "", laughs, flags=re.S).replace(reference, "lol")
    assert safe_tree(plain.encode()).findtext(f".//{EI}vtnComment") == "lol"
    # lxml 5.3.2 (libxml2 2.12) refuses it quickly, as openleadr parses and even without
    # resolving entities.
    started = time.monotonic()
    with pytest.raises(etree.XMLSyntaxError, match="amplification"):
        validate_xml_schema(laughs.encode())
    with pytest.raises(etree.XMLSyntaxError, match="amplification"):
        safe_tree(laughs.encode())
    assert time.monotonic() - started < 5

    xxe = bodies["external-entity"][2]
    assert b'<!ENTITY xxe SYSTEM "file:///etc/passwd">' in xxe and b"&xxe;" in xxe
    assert b"root:" not in etree.tostring(safe_tree(xxe))

    assert b"http://openadr.org/oadr-2.0a/2012/07" in bodies["wrong-namespace"][2]
    assert b"http://openadr.org/oadr-2.0b/2012/07" not in bodies["wrong-namespace"][2]
    with pytest.raises(etree.XMLSyntaxError):
        validate_xml_schema(bodies["wrong-namespace"][2])
    assert bodies["wrong-content-type"][1] == "text/html"
    assert parse_message(bodies["wrong-content-type"][2])[0] == "oadrResponse"
    assert parse_message(bodies["slow"][2])[0] == "oadrResponse"
    for good in ("unknown-signal-type", "absurd-duration", "huge", "external-entity"):
        assert safe_tree(bodies[good][2]).find(f".//{EI}vtnID").text == "MGE-TEST-VTN"


def test_hostile_mode_answers_polls_and_keeps_registration():
    async def scenario():
        async with VTNPeer(port=0, ven_id="ven-1") as peer:
            client = make_client(peer)
            try:
                peer.set_hostile("billion-laughs")
                await register(client)                              # registration is not hostile
                for _ in range(2):
                    assert await client.poll() == (None, {})        # openleadr's VEN gives up on it
                polls = peer.messages("oadrPoll")
                assert [r["hostile"] for r in polls] == ["billion-laughs"] * 2
                assert billion_laughs_dtd()[0] in polls[0]["response_xml"]
                peer.set_hostile("huge", count=1)
                assert (await client.poll())[0] == "oadrDistributeEvent"   # well-formed, a comment
                assert peer.messages("oadrPoll")[-1]["response_bytes"] == TEN_MIB
                assert len(peer.messages("oadrPoll")[-1]["response_xml"]) == 4096
                assert (await client.poll())[0] == "oadrResponse"    # count 1: back to normal
                peer.set_hostile("slow", count=1, delay_s=0.5)
                started = time.monotonic()
                assert (await client.poll())[0] == "oadrResponse"
                assert time.monotonic() - started >= 0.5
            finally:
                await close_client(client)
    run(scenario)

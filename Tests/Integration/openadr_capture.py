"""Captures the sample OpenADR 2.0b documents in openadr-samples/: openleadr's own VTN
(openadr_vtn.VTNPeer, on openleadr 0.5.36's OpenADRServer) and openleadr's own VEN
(OpenADRClient) talking on 127.0.0.1, every HTTP body written exactly as it went over the
wire (VTNPeer records request and response bodies in an aiohttp middleware, before and after
openleadr's handlers), plus the hostile bodies of openadr_vtn.hostile_body() (all but the
10 MiB one). About 15 s, little CPU.

    python3 Tests/Integration/openadr_capture.py [--out Tests/Integration/openadr-samples]

The IDs (UUIDs, "event-…", "reg-…") and timestamps differ on every run. README.md in the
output folder is written by this script: one line per file (direction, service, HTTP
status, Content-Type).
"""
import argparse
import asyncio
import logging
import shutil
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import aiohttp
from openleadr import OpenADRClient
from openleadr.messaging import create_message

from openadr_vtn import HOSTILE_KINDS, VTNPeer, fingerprint, hostile_body

HERE = Path(__file__).resolve().parent


class Samples:
    def __init__(self, out):
        self.out = out
        self.rows = []

    def write(self, name, body, direction, service, status, content_type, note):
        path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body.encode() if isinstance(body, str) else body)
        self.rows.append((name, direction, service, status, content_type, note))

    def exchange(self, record, request_name, response_name, note_request="", note_response=""):
        """Both bodies of one recorded exchange (None for a name: not written)."""
        if request_name:
            self.write(request_name, record["xml"], "VEN -> VTN", record["service"], "", record["content_type"],
                       note_request)
        if response_name:
            self.write(response_name, record["response_xml"], "VTN -> VEN", record["service"], record["status"],
                       record["response_content_type"], note_response)

    def readme(self):
        lines = ["# OpenADR 2.0b sample documents",
                 "",
                 "Captured by `Tests/Integration/openadr_capture.py`: openleadr 0.5.36's VTN",
                 "(`openadr_vtn.VTNPeer`) and openleadr's VEN (`OpenADRClient`) on 127.0.0.1, each HTTP",
                 "body byte for byte as it went over the wire (plain HTTP, unsigned, except in `signed/`).",
                 "Service paths are under `/OpenADR2/Simple/2.0b/`. `hostile/` holds the bad oadrPoll",
                 "answers of `openadr_vtn.hostile_body()` (not the 10 MiB one). IDs and times differ on",
                 "every run; see docs/openadr-study.md for what the documents mean.",
                 "",
                 "| file | direction | service | HTTP status | Content-Type | what |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for name, direction, service, status, content_type, note in self.rows:
            lines.append(f"| `{name}` | {direction} | {service} | {status} | {content_type or ''} | {note} |")
        (self.out / "README.md").write_text("\n".join(lines) + "\n")


def last(peer, message_type, since=0, where=None):
    found = [r for r in peer.messages(message_type, since=since) if where is None or where(r)]
    assert found, f"no {message_type} recorded: {[r['type'] for r in peer.records]}"
    return found[-1]


async def raw_post(url, body, content_type="application/xml"):
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body, headers={"Content-Type": content_type}) as response:
            return response.status, await response.read()


async def plain(samples):
    peer = VTNPeer(port=0, ven_id="ven-1", report_granularity_s=2)
    await peer.start()
    client = OpenADRClient(ven_name="mge-sample-ven", vtn_url=peer.url)
    client.add_report(callback=lambda: 41.5, resource_id="site-meter", measurement="RealPower",
                      sampling_rate=timedelta(seconds=1), report_duration=timedelta(seconds=2),
                      report_specifier_id="usage-1", r_id="site-meter-power")
    opt = {"value": "optIn"}

    async def on_event(event):
        return opt["value"]

    client.add_handler("on_event", on_event)
    client.add_handler("on_update_event", on_event)
    try:
        await client.query_registration()
        samples.exchange(last(peer, "oadrQueryRegistration"), "oadrQueryRegistration.xml",
                         "oadrCreatedPartyRegistration-query.xml", "", "answer to the query: no venID / registrationID")
        await client.create_party_registration()
        samples.exchange(last(peer, "oadrCreatePartyRegistration"), "oadrCreatePartyRegistration.xml",
                         "oadrCreatedPartyRegistration.xml", "", "registered: venID, registrationID, poll frequency")
        # What OpenADRClient.run() would start: the report scheduler and the sender.
        client.scheduler.start()
        client.report_queue_task = asyncio.get_running_loop().create_task(client._report_queue_worker())
        await client.register_reports(client.reports)     # also sends oadrCreatedReport (the request)
        samples.exchange(last(peer, "oadrRegisterReport"), "oadrRegisterReport.xml", "oadrRegisteredReport.xml",
                         "METADATA_TELEMETRY_USAGE", "with an oadrReportRequest (granularity PT2S)")
        samples.exchange(last(peer, "oadrCreatedReport"), "oadrCreatedReport.xml", "oadrResponse-createdReport.xml")
        await client.request_event()
        samples.exchange(last(peer, "oadrRequestEvent"), "oadrRequestEvent.xml", "oadrResponse-requestEvent-none.xml",
                         "", "no events yet: an oadrResponse, not an empty oadrDistributeEvent")
        await client._poll()
        samples.exchange(last(peer, "oadrPoll"), "oadrPoll.xml", "oadrResponse-poll-empty.xml", "", "nothing pending")

        event_id = peer.add_event(signal="SIMPLE", level=2, notice_s=300, duration_s=600, ramp_up_s=60,
                                  recovery_s=30, start_after_s=120, market_context="http://MarketContext1")
        n = len(peer.records)
        await client._poll()
        samples.exchange(last(peer, "oadrPoll", n), None, "oadrDistributeEvent-simple.xml", "",
                         "SIMPLE level 2, notice 5 min, ramp-up, recovery, startafter; modificationNumber 0")
        samples.exchange(last(peer, "oadrCreatedEvent", n), "oadrCreatedEvent-optIn.xml", "oadrResponse-createdEvent.xml")

        n = len(peer.records)
        peer.modify_event(event_id, level=3, duration_s=900, reason="deeper shed")
        await client._poll()
        samples.exchange(last(peer, "oadrPoll", n), None, "oadrDistributeEvent-modified.xml", "",
                         "the same event, level 3, 15 min: modificationNumber 1, modificationDateTime/Reason")
        samples.exchange(last(peer, "oadrCreatedEvent", n), "oadrCreatedEvent-modified.xml", None,
                         "optIn for modificationNumber 1")

        n = len(peer.records)
        peer.cancel_event(event_id)
        await client._poll()
        samples.exchange(last(peer, "oadrPoll", n), None, "oadrDistributeEvent-cancelled.xml", "",
                         "eventStatus cancelled, modificationNumber 2")
        samples.exchange(last(peer, "oadrCreatedEvent", n), "oadrCreatedEvent-cancelled.xml", None,
                         "the VEN's answer to the cancellation (openleadr's VEN: optIn)")

        n = len(peer.records)
        opt["value"] = "optOut"
        peer.add_event(signal="LOAD_DISPATCH", kw=-75, notice_s=120, intervals=[[300, -75], [300, -50]])
        await client._poll()
        samples.exchange(last(peer, "oadrPoll", n), None, "oadrDistributeEvent-load-dispatch.xml", "",
                         "LOAD_DISPATCH setpoint, powerReal kW (scale k), two intervals")
        samples.exchange(last(peer, "oadrCreatedEvent", n), "oadrCreatedEvent-optOut.xml", None)

        n = len(peer.records)
        request_id = peer.request_report(granularity_s=1, report_back_duration_s=1)
        await client._poll()
        samples.exchange(last(peer, "oadrPoll", n), None, "oadrCreateReport.xml", "",
                         "TELEMETRY_USAGE at granularity PT1S (queued by the peer, delivered on poll)")
        update = await peer.wait_message("oadrUpdateReport", since=n, timeout=10,
                                         where=lambda r: request_id in r["xml"])
        samples.exchange(update[0], "oadrUpdateReport.xml", "oadrUpdatedReport.xml")

        # Errors, with openleadr's own documents where one is needed.
        url = peer.url
        created = create_message("oadrCreatedEvent", ven_id=client.ven_id,
                                 response={"response_code": 200, "response_description": "OK", "request_id": None},
                                 event_responses=[{"response_code": 200, "response_description": "OK",
                                                   "request_id": "r1", "event_id": "no-such-event",
                                                   "modification_number": 7, "opt_type": "optIn"}])
        n = len(peer.records)
        await raw_post(f"{url}/EiEvent", created)
        samples.exchange(last(peer, "oadrCreatedEvent", n), "error-oadrCreatedEvent-unknown-event.xml",
                         "error-oadrResponse-452.xml", "an event ID / modificationNumber the VTN does not have",
                         "responseCode 452")
        poll = create_message("oadrPoll", ven_id=client.ven_id)
        n = len(peer.records)
        await raw_post(f"{url}/EiEvent", poll)
        samples.exchange(last(peer, "oadrPoll", n), None, "error-oadrResponse-459-wrong-service.xml", "",
                         "oadrPoll sent to EiEvent: responseCode 459")
        n = len(peer.records)
        await raw_post(f"{url}/OadrPoll", poll, content_type="text/xml")
        samples.exchange(last(peer, "oadrPoll", n, lambda r: r["status"] == 500), None,
                         "error-http500-content-type.txt", "",
                         "Content-Type text/xml: HTTP 500, empty (openleadr 0.5.36 bug: meant as 400)")
        n = len(peer.records)
        await raw_post(f"{url}/OadrPoll", poll.replace("<ei:venID>", "<ei:venId>").replace("</ei:venID>", "</ei:venId>"))
        samples.exchange(last(peer, "oadrPoll", n, lambda r: r["status"] == 400), None,
                         "error-http400-schema.txt", "",
                         "a schema-invalid document: HTTP 400, plain text")
        n = len(peer.records)
        await raw_post(f"{url}/OadrPoll", create_message("oadrPoll", ven_id="ven-unknown"))
        samples.exchange(last(peer, "oadrPoll", n), None, "oadrRequestReregistration-unknown-ven.xml", "",
                         "oadrPoll from a venID the VTN has no registration for")

        n = len(peer.records)
        await client.cancel_party_registration()
        samples.exchange(last(peer, "oadrCancelPartyRegistration", n), "oadrCancelPartyRegistration.xml",
                         "oadrCanceledPartyRegistration.xml")
        n = len(peer.records)
        await client.poll()
        samples.exchange(last(peer, "oadrPoll", n), None, "oadrRequestReregistration.xml", "",
                         "oadrPoll after the VEN cancelled its registration")
        answer = create_message("oadrResponse", ven_id=client.ven_id,
                                response={"response_code": 200, "response_description": "OK", "request_id": None})
        n = len(peer.records)
        await raw_post(f"{url}/EiRegisterParty", answer)
        samples.exchange(last(peer, "oadrResponse", n), "oadrResponse-ven.xml", "http200-empty-body.txt",
                         "the VEN's oadrResponse (e.g. to oadrRequestReregistration)",
                         "the VTN's answer to any oadrResponse: HTTP 200, empty body")

        # A VTN-initiated cancellation, and the VEN's oadrCanceledPartyRegistration.
        await client.create_party_registration()
        n = len(peer.records)
        peer.cancel_registration(client.ven_id)
        await client._poll()
        samples.exchange(last(peer, "oadrPoll", n), None, "oadrCancelPartyRegistration-vtn.xml", "",
                         "VTN-initiated cancellation (queued by the peer)")
        samples.exchange(last(peer, "oadrCanceledPartyRegistration", n), "oadrCanceledPartyRegistration-ven.xml",
                         "oadrResponse-canceledPartyRegistration.xml", "",
                         "the peer's handler (openleadr's VTN alone answers 459)")
    finally:
        await client.stop()
        await peer.close()


def make_pki(folder):
    """A CA and a VTN and a VEN certificate signed by it (openssl, RSA 2048)."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{folder}/ca.key", "-out", f"{folder}/ca.pem",
        "-days", "2", "-subj", "/CN=MGE test CA")
    (folder / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("vtn", "ven"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{folder}/{name}.key", "-out", f"{folder}/{name}.csr",
            "-subj", f"/CN=mge-test-{name}")
        run("x509", "-req", "-in", f"{folder}/{name}.csr", "-CA", f"{folder}/ca.pem", "-CAkey", f"{folder}/ca.key",
            "-CAcreateserial", "-out", f"{folder}/{name}.pem", "-days", "2", "-extfile", f"{folder}/ext")


async def signed(samples, folder):
    """TLS with client certificates, both sides signing (XML signature, detached), the VTN
    verifying."""
    tls = {"cert": str(folder / "vtn.pem"), "key": str(folder / "vtn.key"), "ca": str(folder / "ca.pem")}
    peer = VTNPeer(port=0, tls=tls, ven_fingerprint=fingerprint(folder / "ven.pem"), sign=True,
                   verify_signatures=True)
    await peer.start()
    client = OpenADRClient(ven_name="mge-sample-ven", vtn_url=peer.url, cert=str(folder / "ven.pem"),
                           key=str(folder / "ven.key"), ca_file=str(folder / "ca.pem"), show_fingerprint=False,
                           vtn_fingerprint=fingerprint(folder / "vtn.pem"))
    try:
        await client.create_party_registration()
        samples.exchange(last(peer, "oadrCreatePartyRegistration"), "signed/oadrCreatePartyRegistration.xml",
                         "signed/oadrCreatedPartyRegistration.xml", "signed by the VEN", "signed by the VTN")
        await client.poll()
        samples.exchange(last(peer, "oadrPoll"), "signed/oadrPoll.xml", "signed/oadrResponse.xml",
                         "signed by the VEN", "signed by the VTN")
    finally:
        await client.client_session.close()
        await peer.close()


def hostile(samples):
    for kind in HOSTILE_KINDS:
        if kind == "huge":
            continue
        status, content_type, body = hostile_body(kind, "MGE-TEST-VTN", "ven-1")
        samples.write(f"hostile/{kind}.xml", body, "VTN -> VEN", "OadrPoll", status, content_type,
                      f"hostile: {kind}")


async def main_async(out):
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    samples = Samples(out)
    await plain(samples)
    with tempfile.TemporaryDirectory() as folder:
        make_pki(Path(folder))
        await signed(samples, Path(folder))
    hostile(samples)
    samples.readme()
    return samples


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(HERE / "openadr-samples"))
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    logging.getLogger("openleadr").setLevel(logging.INFO if args.verbose else logging.CRITICAL)
    samples = asyncio.run(asyncio.wait_for(main_async(Path(args.out)), 120))
    print(f"{len(samples.rows)} samples in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

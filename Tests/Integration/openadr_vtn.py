"""An OpenADR 2.0b VTN (profile B, simpleHttp, HTTP pull) for the appliance's VEN to talk to,
built on the Python openleadr package's OpenADRServer (openleadr==0.5.36, lxml==5.3.2:
Tests/Integration/requirements-openadr.txt, installed by scripts/setup). Importable, and
runnable as a script:

    python3 openadr_vtn.py --port P [--host 127.0.0.1] [--control-port 0] [--log FILE] \
        [--vtn-id MGE-TEST-VTN] [--ven-id VEN] [--poll-freq 1] [--reject-registration] \
        [--tls --cert vtn.pem --key vtn.key --ca ca.pem [--ven-fingerprint AA:BB:..]] \
        [--sign] [--verify-signatures] [--report-granularity S] [--control-file F] \
        [--hostile KIND] [--down] [--verbose]
    -> prints "READY <port> <control_port>" on stdout once it listens (with --down only the
       control endpoint listens, and the VTN starts on POST /start: give --port); serves until SIGINT /
       SIGTERM (exit status 0).

    peer = VTNPeer(port=0, ven_id="ven-1", log=JsonLines("vtn.jsonl"))
    await peer.start()                    # peer.port, peer.url (…/OpenADR2/Simple/2.0b)
    event_id = peer.add_event(signal="SIMPLE", level=2, notice_s=60, duration_s=300)
    await peer.wait_message("oadrCreatedEvent")        # -> the records so far (see Records)
    peer.modify_event(event_id, level=3); peer.cancel_event(event_id)
    peer.request_report(granularity_s=5)               # oadrCreateReport on the next poll
    await peer.stop(); await peer.start()              # down and up again, state kept

VTN
---
openleadr's own services at http(s)://HOST:PORT/OpenADR2/Simple/2.0b/{EiRegisterParty,
EiEvent, EiReport, OadrPoll} (POST, Content-Type application/xml; anything else is HTTP 404),
answering as openleadr 0.5.36 does (docs/openadr-study.md), with these handlers:
- oadrQueryRegistration: openleadr's default (profile 2.0b, simpleHttp, the poll frequency).
- oadrCreatePartyRegistration: accepted unless --reject-registration, or (TLS) when the
  client certificate's fingerprint differs from --ven-fingerprint. venID: the VEN's own,
  else --ven-id, else "ven-<8 hex>"; registrationID "reg-<8 hex>" (kept when the VEN
  re-registers with it). Without --ven-fingerprint the fingerprint of the certificate
  that registered is remembered and required from then on (trust on first use). Rejected:
  openleadr's answer, an oadrCreatedPartyRegistration with 200 and EMPTY venID and
  registrationID.
- oadrCancelPartyRegistration: a known registrationID is forgotten and answered with
  oadrCanceledPartyRegistration; an unknown one with oadrResponse 452.
- oadrCanceledPartyRegistration (the VEN confirming a VTN-initiated cancellation, 200):
  the registration is forgotten; oadrResponse. (openleadr alone answers it with 459.)
- Every other message names a venID; one this VTN has no registration for is answered with
  oadrRequestReregistration (openleadr's ven_lookup check).
- oadrRegisterReport: recorded; with --report-granularity S the VTN asks, in its
  oadrRegisteredReport, for every rID of a METADATA_TELEMETRY_USAGE report at granularity
  S (reportBackDuration S); without it oadrRegisteredReport carries no request.
- oadrCreatedEvent, oadrCreatedReport, oadrUpdateReport, oadrRegisteredReport: recorded,
  answered as openleadr does (oadrResponse / oadrUpdatedReport).
- oadrPoll: first whatever the test queued (request_report -> oadrCreateReport,
  request_reregistration -> oadrRequestReregistration, cancel_registration ->
  oadrCancelPartyRegistration), one per poll; then openleadr's own queue: an
  oadrDistributeEvent with all of the VEN's events whenever one was added, modified or
  cancelled since the last distribution, else an empty oadrResponse.
TLS (--tls): openleadr's server context: the VTN's --cert/--key, client certificates
required and checked against --ca. The fingerprint openleadr uses is the last 10 bytes of
the SHA-256 of the client certificate's DER, upper-case hex, colon-separated
(VTNPeer.fingerprint(path) computes it). XML signatures are not required unless
--verify-signatures (openleadr's own default is to require them on TLS); --sign signs the
VTN's messages with --cert/--key.

Events (add_event / POST /event): one signal, SIMPLE (signalType level, payload 0-3) or
LOAD_DISPATCH (signalType setpoint unless signal_type says otherwise, itemBase powerReal in
kW, scale k; the value is `kw`, else `level`); start at `start` (ISO 8601 UTC) or now +
notice_s (default 60); one interval of duration_s (default 300) or `intervals`
[[duration_s, value], …]; x-eiNotification (notification_s; without a start, default the
notice), x-eiRampUp (ramp_up_s), x-eiRecovery (recovery_s), tolerance startafter
(start_after_s), priority, market_context, response_required always|never, vtn_comment,
test_event. modify_event changes any of those, adds 1 to the modificationNumber and sets
modificationDateTime (and modificationReason). cancel_event sets eventStatus cancelled and
adds 1 to the modificationNumber. eventStatus (far / near / active / completed) is what
openleadr computes when it distributes (near only within the ramp-up period).

Hostile mode (set_hostile / POST /hostile / --hostile KIND): oadrPoll is answered with a bad
body instead (registration and the other services stay as above), for `count` polls
(default: until cleared). KINDS (hostile_body() makes them; HOSTILE_KINDS lists them):
  malformed            an oadrDistributeEvent cut off mid-element (not well-formed)
  not-xml              plain text
  empty                an empty 200 body
  unknown-signal-name  a schema-valid event with signalName x-MGE-UNKNOWN-SIGNAL
  unknown-signal-type  a well-formed event with signalType bogusType (schema-invalid)
  absurd-duration      a schema-valid event whose durations (period, interval) are P9999Y
  negative-duration    a schema-valid event whose durations (period, interval) are -PT1H
  huge                 a well-formed oadrDistributeEvent padded with comments to exactly 10 MiB
  billion-laughs       internal DTD entities that expand to 3 * 10^9 bytes ("lol" x 10^9)
  external-entity      a DTD entity SYSTEM "file:///etc/passwd" used in vtnComment
  wrong-namespace      an oadrDistributeEvent in the 2.0a namespace
  wrong-content-type   a valid oadrResponse sent as text/html
  http-500             HTTP 500 with an empty body
  slow                 a valid oadrResponse after delay_s seconds (default 15)

Records: every HTTP exchange on the VTN port, as a dict kept in peer.records and appended
to the log (JSON lines, flushed per line, t = Unix time):
    {"t", "service", "path", "status", "content_type", "response_content_type", "type",
     "ven_id", "payload", "xml",
     "response_type", "response_payload", "response_xml", "response_bytes", "tls_fingerprint",
     "hostile"}
  type / payload: the request's message name and openleadr's parse of it (None when it
  does not parse), e.g. oadrCreatedEvent {"event_responses": [{"event_id",
  "modification_number", "opt_type": "optIn"|"optOut", "response_code", …}]},
  oadrRegisterReport {"reports": [{"report_name": "METADATA_TELEMETRY_USAGE",
  "report_specifier_id", "report_descriptions": [{"r_id", …}]}]}, oadrUpdateReport
  {"reports": [{"report_request_id", "intervals": [{"dtstart", "report_payload": {"r_id",
  "value"}}]}]}; datetimes as ISO 8601 strings, durations as seconds. xml / response_xml:
  the bodies as on the wire (a hostile body over 4 KiB is cut to its first 4 KiB;
  response_bytes is its full length). Also {"t", "event": "started" | "stopped" |
  "control", …}.

Control endpoint (HTTP/1.1 on 127.0.0.1:control_port, JSON bodies; 400 {"error"} for a bad
request), and the same commands as JSON lines {"cmd": "event", …} appended to
--control-file (read every 0.2 s; each reply is logged as {"event": "control"}):
    POST /event                {"signal": "SIMPLE", "level": 1, "notice_s": 60, …} -> {"event_id"}
    POST /event/modify         {"event_id", …same fields…, "reason"} -> {"event_id", "modification_number"}
    POST /event/cancel         {"event_id"} -> {"event_id", "modification_number"}
    POST /report               {"granularity_s": 5, "report_back_duration_s", "ven_id"} -> {"report_request_id"}
    POST /reregister           {"ven_id"} -> {}
    POST /cancel-registration  {"ven_id"} -> {}
    POST /hostile              {"kind": "billion-laughs" | null, "count": 1, "delay_s"} -> {}
    POST /stop, POST /start    the VTN port down / up; the control endpoint and all state stay
    GET  /state                -> {"listening", "port", "vens": {…}, "events": {ven: [{"event_id",
                                   "modification_number", "event_status"}]}, "queued": {…}}
    GET  /messages?type=oadrCreatedEvent&since=0   -> [records…] (since: index into the list)
"""
import argparse
import asyncio
import json
import logging
import signal
import sys
import time
import uuid
from dataclasses import asdict, is_dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path

from aiohttp import web
from openleadr import OpenADRServer, enums, errors, objects, utils
from openleadr.messaging import create_message, parse_message

PREFIX = "/OpenADR2/Simple/2.0b"
SERVICES = ("EiRegisterParty", "EiEvent", "EiReport", "OadrPoll")
HOSTILE_CAP = 4096          # bytes of a hostile body that go into a record
RECORD_CAP = 1 << 20        # bytes of any other body that go into a record
TEN_MIB = 10 * 1024 * 1024


def utc_now():
    return datetime.now(timezone.utc)


def _short_id(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _jsonable(value):
    """openleadr's parsed payloads -> JSON: datetimes ISO 8601, durations in seconds."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if is_dataclass(value):
        return _jsonable(asdict(value))
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _parse(body):
    """(message type, payload) of an OpenADR document, or (None, None)."""
    if not body:
        return None, None
    try:
        message_type, payload = parse_message(body)
        return message_type, _jsonable(payload)
    except Exception:  # noqa: BLE001 - anything the VEN sends must be recordable
        return None, None


def _text(body, cap):
    return body[:cap].decode("utf-8", errors="replace")


class JsonLines:
    """Append-only JSON-lines log, flushed per line so that a test can tail it."""

    def __init__(self, path):
        self._file = open(path, "a", encoding="utf-8")

    def write(self, **record):
        self._file.write(json.dumps({"t": round(time.time(), 3), **record}, default=str) + "\n")
        self._file.flush()

    def close(self):
        self._file.close()


def fingerprint(cert_path):
    """openleadr's fingerprint of a PEM certificate (utils.certificate_fingerprint)."""
    return utils.certificate_fingerprint(Path(cert_path).read_text())


# ----------------------------------------------------------------------------- hostile bodies

HOSTILE_KINDS = ("malformed", "not-xml", "empty", "unknown-signal-name", "unknown-signal-type",
                 "absurd-duration", "negative-duration", "huge", "billion-laughs", "external-entity",
                 "wrong-namespace", "wrong-content-type", "http-500", "slow")


def _sample_event(ven_id, signal_name="SIMPLE", signal_type="level", value=1.0):
    start = utc_now() + timedelta(minutes=1)
    return {"event_descriptor": {"event_id": _short_id("hostile"), "modification_number": 0,
                                 "market_context": "http://MarketContext1", "event_status": "far",
                                 "created_date_time": utc_now(), "priority": 0},
            "active_period": {"dtstart": start, "duration": timedelta(minutes=10)},
            "event_signals": [{"intervals": [{"dtstart": start, "duration": timedelta(minutes=10),
                                              "signal_payload": value}],
                               "signal_name": signal_name, "signal_type": signal_type,
                               "signal_id": _short_id("signal")}],
            "targets": [{"ven_id": ven_id}], "response_required": "always"}


def _distribute(vtn_id, ven_id, **event):
    return create_message("oadrDistributeEvent", vtn_id=vtn_id, request_id=_short_id("req"),
                          response={"response_code": 200, "response_description": "OK", "request_id": None},
                          events=[_sample_event(ven_id, **event)])


def _replace(document, old, new, count=-1):
    assert old in document, f"hostile_body: {old!r} not in the template"
    return document.replace(old, new, count)


def _with_dtd(document, dtd, vtn_comment):
    """Put an internal DTD in front of the root and `vtn_comment` (raw, e.g. an entity
    reference) into the event's descriptor."""
    document = _replace(document, '<?xml version="1.0" encoding="utf-8"?>',
                        f'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE oadr:oadrPayload [{dtd}]>', 1)
    return _replace(document, "</ei:eventStatus>", f"</ei:eventStatus><ei:vtnComment>{vtn_comment}</ei:vtnComment>", 1)


def billion_laughs_dtd(levels=10, fanout=10):
    """lol0 = "lol", lolN = fanout x lol(N-1): lol(levels-1) expands to 3 * fanout^(levels-1) bytes."""
    entities = ['<!ENTITY lol0 "lol">']
    entities += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * fanout}">' for i in range(1, levels)]
    return "".join(entities), f"&lol{levels - 1};"


def hostile_body(kind, vtn_id="MGE-TEST-VTN", ven_id="ven-1"):
    """(HTTP status, Content-Type, body bytes) of a hostile answer to oadrPoll."""
    if kind == "malformed":
        document = _distribute(vtn_id, ven_id)
        cut = document.index("<ei:signalName>") + len("<ei:signalName>SIM")
        return 200, "application/xml", (document[:cut] + "</oadr:oadrPayload>").encode()
    if kind == "not-xml":
        return 200, "application/xml", b"this is not an OpenADR document {\"oops\": true}\n"
    if kind == "empty":
        return 200, "application/xml", b""
    if kind == "unknown-signal-name":
        document = _distribute(vtn_id, ven_id)
        return 200, "application/xml", _replace(document, "<ei:signalName>SIMPLE</ei:signalName>",
                                                 "<ei:signalName>x-MGE-UNKNOWN-SIGNAL</ei:signalName>").encode()
    if kind == "unknown-signal-type":
        document = _distribute(vtn_id, ven_id)
        return 200, "application/xml", _replace(document, "<ei:signalType>level</ei:signalType>",
                                                 "<ei:signalType>bogusType</ei:signalType>").encode()
    if kind in ("absurd-duration", "negative-duration"):
        duration = "P9999Y" if kind == "absurd-duration" else "-PT1H"
        document = _replace(_distribute(vtn_id, ven_id), "<duration>PT10M</duration>",
                            f"<duration>{duration}</duration>")          # the active period
        return 200, "application/xml", _replace(document, "<xcal:duration>PT10M</xcal:duration>",
                                                 f"<xcal:duration>{duration}</xcal:duration>").encode()  # the interval
    if kind == "huge":
        document = _distribute(vtn_id, ven_id).encode()
        head, tail = document.rsplit(b"</oadr:oadrPayload>", 1)
        # 1 KiB comments (one 10 MB comment would exceed libxml2's limit for one node).
        room = TEN_MIB - len(document)
        chunk = b"<!--" + b"x" * 1017 + b"-->\n"
        padding = chunk * (room // len(chunk) - 1)
        rest = room - len(padding)
        padding += b"<!--" + b"x" * (rest - 7) + b"-->"
        body = head + padding + b"</oadr:oadrPayload>" + tail
        assert len(body) == TEN_MIB
        return 200, "application/xml", body
    if kind == "billion-laughs":
        dtd, reference = billion_laughs_dtd()
        return 200, "application/xml", _with_dtd(_distribute(vtn_id, ven_id), dtd, reference).encode()
    if kind == "external-entity":
        return 200, "application/xml", _with_dtd(_distribute(vtn_id, ven_id),
                                                 '<!ENTITY xxe SYSTEM "file:///etc/passwd">', "&xxe;").encode()
    if kind == "wrong-namespace":
        document = _distribute(vtn_id, ven_id)
        return 200, "application/xml", _replace(document, "http://openadr.org/oadr-2.0b/2012/07",
                                                 "http://openadr.org/oadr-2.0a/2012/07").encode()
    if kind in ("wrong-content-type", "slow"):
        body = create_message("oadrResponse", ven_id=ven_id,
                              response={"response_code": 200, "response_description": "OK", "request_id": None})
        return 200, ("text/html" if kind == "wrong-content-type" else "application/xml"), body.encode()
    if kind == "http-500":
        return 500, "text/plain", b""
    raise ValueError(f"unknown hostile kind {kind!r}; one of {', '.join(HOSTILE_KINDS)}")


# ----------------------------------------------------------------------------- the VTN

class ControlError(ValueError):
    """A bad control request (HTTP 400)."""


def _seconds(value, name):
    if value is None:
        return None
    try:
        return timedelta(seconds=float(value))
    except (TypeError, ValueError):
        raise ControlError(f"{name} must be a number of seconds, not {value!r}") from None


def _datetime(value):
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ControlError(f"start must be an ISO 8601 date-time, not {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class VTNPeer:
    """The VTN; see the module docstring. tls: {"cert", "key", "ca"} paths or None."""

    def __init__(self, host="127.0.0.1", port=0, control_port=None, vtn_id="MGE-TEST-VTN",
                 ven_id=None, ven_fingerprint=None, tls=None, sign=False, verify_signatures=False,
                 poll_freq_s=1, accept_registration=True, report_granularity_s=None, log=None,
                 control_file=None, hostile=None):
        self.host, self.port, self.control_port = host, port, control_port
        self.vtn_id, self.ven_id, self.ven_fingerprint = vtn_id, ven_id, ven_fingerprint
        self.tls, self.accept_registration = tls, accept_registration
        self.report_granularity = _seconds(report_granularity_s, "report_granularity_s")
        self.log, self.control_file = log, control_file
        self.records = []
        self.vens = {}          # ven_id -> {"ven_id", "ven_name", "fingerprint", "registration_id"}
        self.queued = {}        # ven_id -> [(message type, payload)] for the next polls
        self.hostile = None     # {"kind", "count", "delay_s"}
        self._runner = self._control = self._control_task = None
        if hostile:
            self.set_hostile(hostile)
        if ven_id:
            # Known before it registers (its fingerprint too, on TLS), not yet registered.
            self.vens[ven_id] = {"ven_id": ven_id, "ven_name": None, "fingerprint": ven_fingerprint,
                                 "registration_id": None}

        tls = tls or {}
        self.server = OpenADRServer(
            vtn_id=vtn_id, http_host=host, http_port=port, show_fingerprint=False,
            http_cert=tls.get("cert"), http_key=tls.get("key"), http_ca_file=tls.get("ca"),
            requested_poll_freq=timedelta(seconds=poll_freq_s), ven_lookup=self._ven_lookup)
        # OpenADRServer keeps the message factory, the signature switch and ven_lookup on the
        # VTNService CLASS (shared by every server in the process): set them per service
        # instance, so that two peers in one test process stay apart.
        signing = {}
        if sign:
            if not tls:
                raise ValueError("sign needs the TLS certificate and key")
            signing = {"cert": Path(tls["cert"]).read_bytes(), "key": Path(tls["key"]).read_bytes()}
        for service in self.server.services.values():
            service._create_message = partial(create_message, **signing)
            service.verify_message_signatures = verify_signatures
            service.ven_lookup = self._ven_lookup
        self.server.add_handler("on_create_party_registration", self._on_create_party_registration)
        self.server.add_handler("on_cancel_party_registration", self._on_cancel_party_registration)
        self.server.add_handler("on_register_report", self._on_register_report)
        self.server.add_handler("on_update_report", self._on_update_report)
        self.server.add_handler("on_created_report", self._on_created_report)
        # oadrPoll: the queued messages first, then openleadr's own event queue. (An on_poll
        # handler would switch openleadr's event queue off altogether.)
        poll_service = self.server.services["poll_service"]
        self._openleadr_poll = poll_service.handlers["oadrPoll"]
        poll_service.handlers["oadrPoll"] = self._poll
        report_service = self.server.services["report_service"]
        report_service.handlers["oadrRegisteredReport"] = self._registered_report
        registration_service = self.server.services["registration_service"]
        registration_service.handlers["oadrCanceledPartyRegistration"] = self._canceled_party_registration

    # ------------------------------------------------------------------ life cycle

    @property
    def url(self):
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}{PREFIX}"

    @property
    def listening(self):
        return self._runner is not None

    async def start(self, vtn=True):
        """Start (or start again) the VTN port, and the control endpoint and the control
        file the first time (vtn=False: those alone)."""
        if self.control_port is not None and self._control is None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._control_http)
            self._control = web.AppRunner(app, access_log=None)
            await self._control.setup()
            site = web.TCPSite(self._control, "127.0.0.1", self.control_port)
            await site.start()
            self.control_port = site._server.sockets[0].getsockname()[1]
        if self.control_file and self._control_task is None:
            self._control_task = asyncio.create_task(self._tail_control_file())
        if self._runner is not None or not vtn:
            return
        # A new aiohttp application each time (one cannot be started twice), on openleadr's
        # own service handlers, with the recorder in front.
        # aiohttp's default request size limit (1 MiB, then HTTP 413), as OpenADRServer has.
        app = web.Application(middlewares=[self._recorder])
        app.add_routes([web.post(f"{PREFIX}/{s.__service_name__}", s.handler)
                        for s in self.server.services.values()])
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=self.server.ssl_context,
                           reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._runner = runner
        self._event("started", port=self.port, tls=bool(self.tls))

    async def stop(self):
        """Take the VTN port down (open connections are closed); all state is kept."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
            self._event("stopped", port=self.port)

    async def close(self):
        """Stop everything, control endpoint included."""
        await self.stop()
        if self._control_task is not None:
            self._control_task.cancel()
            self._control_task = None
        if self._control is not None:
            await self._control.cleanup()
            self._control = None

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc):
        await self.close()

    # ------------------------------------------------------------------ records

    def _event(self, event, **fields):
        if self.log:
            self.log.write(event=event, **fields)

    def messages(self, message_type=None, service=None, since=0):
        """The records (oldest first) of requests of `message_type` (and/or to `service`)."""
        return [r for r in self.records[since:]
                if (message_type is None or r["type"] == message_type)
                and (service is None or r["service"] == service)]

    async def wait_message(self, message_type, count=1, timeout=10.0, where=None, since=0):
        """The matching records once at least `count` came; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.messages(message_type, since=since) if where is None or where(r)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} {message_type} within {timeout} s, got {len(found)}; "
                                     f"received: {[r['type'] or r['path'] for r in self.records]}")
            await asyncio.sleep(0.05)

    @web.middleware
    async def _recorder(self, request, handler):
        service = request.path.rstrip("/").rsplit("/", 1)[-1]
        hostile = self.hostile if service == "OadrPoll" else None
        body = b""
        try:
            body = await request.read()     # cached: openleadr's handler reads it again
            if hostile:
                ven_id = (_parse(body)[1] or {}).get("ven_id") or self.ven_id or "ven-1"
                response = await self._hostile_response(hostile, ven_id)
            else:
                response = await handler(request)
        except web.HTTPException as exc:    # 404, 405 (unknown paths, methods), 413 (over 1 MiB)
            self._record(request, service, body, exc, None)
            raise
        self._record(request, service, body, response, hostile)
        return response

    def _record(self, request, service, body, response, hostile):
        response_body = response.body if isinstance(response.body, bytes) else (response.text or "").encode()
        message_type, payload = _parse(body)
        response_type, response_payload = (None, None) if hostile else _parse(response_body)
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        peer_cert = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        record = {"t": round(time.time(), 3), "service": service, "path": request.path,
                  "status": response.status, "content_type": request.headers.get("Content-Type"),
                  "response_content_type": response.headers.get("Content-Type"), "type": message_type,
                  "ven_id": (payload or {}).get("ven_id"), "payload": payload,
                  "xml": _text(body, RECORD_CAP), "response_type": response_type,
                  "response_payload": response_payload,
                  "response_xml": _text(response_body, HOSTILE_CAP if hostile else RECORD_CAP),
                  "response_bytes": len(response_body),
                  "tls_fingerprint": utils.certificate_fingerprint_from_der(peer_cert) if peer_cert else None,
                  "hostile": hostile["kind"] if hostile else None}
        self.records.append(record)
        if self.log:
            self.log.write(**{k: v for k, v in record.items() if k != "t"})

    # ------------------------------------------------------------------ registration

    def _ven_lookup(self, ven_id):
        return self.vens.get(ven_id)

    def _on_create_party_registration(self, payload):
        offered = payload.get("fingerprint")          # set by openleadr on TLS only
        known = self.vens.get(payload.get("ven_id")) or {}
        expected = self.ven_fingerprint or known.get("fingerprint")
        if not self.accept_registration:
            self._event("registration_rejected", reason="rejecting every registration", ven_id=payload.get("ven_id"))
            return False
        if self.tls and expected and offered != expected:
            self._event("registration_rejected", reason="fingerprint", offered=offered, expected=expected)
            return False
        ven_id = payload.get("ven_id") or self.ven_id or _short_id("ven")
        registration_id = known.get("registration_id")
        if not registration_id or payload.get("registration_id") != registration_id:
            registration_id = _short_id("reg")
        self.vens[ven_id] = {"ven_id": ven_id, "ven_name": payload.get("ven_name"),
                             "fingerprint": expected or offered, "registration_id": registration_id}
        return ven_id, registration_id

    def _on_cancel_party_registration(self, payload):
        ven = self.vens.get(payload.get("ven_id"))
        if not ven or not ven["registration_id"] or ven["registration_id"] != payload.get("registration_id"):
            raise errors.InvalidIdError(f"no registration {payload.get('registration_id')} "
                                        f"for venID {payload.get('ven_id')}")
        registration_id, ven["registration_id"] = ven["registration_id"], None
        return "oadrCanceledPartyRegistration", {"ven_id": ven["ven_id"], "registration_id": registration_id}

    def _canceled_party_registration(self, payload):
        ven = self.vens.get(payload.get("ven_id"))
        code = (payload.get("response") or {}).get("response_code")
        if ven and code == 200 and payload.get("registration_id") == ven["registration_id"]:
            ven["registration_id"] = None
        return "oadrResponse", {}

    def _default_ven(self, ven_id=None):
        if ven_id:
            return ven_id
        registered = [v for v, info in self.vens.items() if info["registration_id"]]
        if len(registered) == 1:
            return registered[0]
        if self.ven_id:
            return self.ven_id
        raise ControlError(f"say which ven_id (registered: {registered})")

    def request_reregistration(self, ven_id=None):
        """oadrRequestReregistration on the VEN's next poll."""
        ven_id = self._default_ven(ven_id)
        self.queued.setdefault(ven_id, []).append(("oadrRequestReregistration", {}))

    def cancel_registration(self, ven_id=None):
        """oadrCancelPartyRegistration (VTN-initiated) on the VEN's next poll; the VTN forgets
        the registration when the VEN confirms it (oadrCanceledPartyRegistration, 200)."""
        ven_id = self._default_ven(ven_id)
        self.queued.setdefault(ven_id, []).append(("oadrCancelPartyRegistration", None))

    # ------------------------------------------------------------------ polling

    async def _poll(self, payload):
        ven_id = payload["ven_id"]
        queue = self.queued.get(ven_id)
        if queue:
            message_type, message = queue.pop(0)
            if message_type == "oadrCancelPartyRegistration":
                message = {"registration_id": (self.vens.get(ven_id) or {}).get("registration_id"),
                           "ven_id": ven_id}
            return message_type, dict(message)
        return await self._openleadr_poll(payload)

    async def _hostile_response(self, hostile, ven_id):
        if hostile["count"] is not None:
            hostile["count"] -= 1
            if hostile["count"] <= 0:
                self.hostile = None
        status, content_type, body = hostile_body(hostile["kind"], self.vtn_id, ven_id)
        if hostile["kind"] == "slow":
            await asyncio.sleep(hostile["delay_s"])
        return web.Response(body=body, status=status, content_type=content_type)

    def set_hostile(self, kind, count=None, delay_s=15.0):
        """Answer oadrPoll with hostile_body(kind) for `count` polls (None: until cleared);
        kind None clears it."""
        if kind is None:
            self.hostile = None
            return
        if kind not in HOSTILE_KINDS:
            raise ControlError(f"unknown hostile kind {kind!r}; one of {', '.join(HOSTILE_KINDS)}")
        self.hostile = {"kind": kind, "count": None if count is None else int(count), "delay_s": float(delay_s)}

    # ------------------------------------------------------------------ events

    def _build_intervals(self, start, duration_s, intervals, value):
        if intervals:
            out, at = [], start
            for duration, payload in intervals:
                length = _seconds(duration, "interval duration")
                out.append({"dtstart": at, "duration": length, "signal_payload": float(payload)})
                at += length
            return out
        return [{"dtstart": start, "duration": _seconds(duration_s, "duration_s"), "signal_payload": float(value)}]

    def _signal(self, signal, signal_type, intervals, signal_id=None):
        signal = (signal or "SIMPLE").upper()
        measurement = None
        if signal == "SIMPLE":
            signal_type = signal_type or "level"
            if any(i["signal_payload"] not in (0, 1, 2, 3) for i in intervals):
                raise ControlError("a SIMPLE level is 0, 1, 2 or 3")
        elif signal == "LOAD_DISPATCH":
            signal_type = signal_type or "setpoint"
            measurement = objects.Measurement(name="powerReal", description="RealPower", unit="W", scale="k",
                                              power_attributes=objects.PowerAttributes(hertz=60, voltage=480, ac=True))
        else:
            raise ControlError(f"signal is SIMPLE or LOAD_DISPATCH, not {signal!r}")
        if signal_type not in enums.SIGNAL_TYPE.values:
            raise ControlError(f"unknown signal_type {signal_type!r}")
        event_signal = objects.EventSignal(intervals=[objects.Interval(**i) for i in intervals], signal_name=signal,
                                           signal_type=signal_type, signal_id=signal_id or _short_id("signal"),
                                           measurement=measurement)
        return asdict(event_signal)

    @staticmethod
    def _active_period(intervals, notification_s=None, ramp_up_s=None, recovery_s=None, start_after_s=None):
        start = min(i["dtstart"] for i in intervals)
        end = max(i["dtstart"] + i["duration"] for i in intervals)
        period = {"dtstart": start, "duration": end - start,
                  "notification_period": _seconds(notification_s, "notification_s"),
                  "ramp_up_period": _seconds(ramp_up_s, "ramp_up_s"),
                  "recovery_period": _seconds(recovery_s, "recovery_s"),
                  "tolerance": None}
        if start_after_s is not None:
            period["tolerance"] = {"startafter": _seconds(start_after_s, "start_after_s")}
        return period

    def add_event(self, ven_id=None, signal="SIMPLE", level=1, kw=None, start=None, notice_s=60.0,
                  duration_s=300.0, intervals=None, signal_type=None, notification_s=None, ramp_up_s=None,
                  recovery_s=None, start_after_s=None, priority=None, market_context="http://MarketContext1",
                  response_required="always", vtn_comment=None, test_event=None, event_id=None):
        """Queue a new event for the VEN (delivered on its next poll); returns its eventID."""
        ven_id = self._default_ven(ven_id)
        if start is None:
            start = utc_now() + timedelta(seconds=float(notice_s or 0))
            if notification_s is None and notice_s:
                notification_s = notice_s       # x-eiNotification: the notice given
        else:
            start = _datetime(start)
        value = kw if kw is not None else level
        if response_required not in ("always", "never"):
            raise ControlError("response_required is always or never")
        event_intervals = self._build_intervals(start, duration_s, intervals, value)
        event_signal = self._signal(signal, signal_type, event_intervals)
        event_id = event_id or _short_id("event")
        event = {"event_descriptor": {"event_id": event_id, "modification_number": 0,
                                      "market_context": market_context, "event_status": "far",
                                      "created_date_time": utc_now(), "modification_date_time": None,
                                      "priority": priority if priority is not None else 0,
                                      "test_event": test_event, "vtn_comment": vtn_comment},
                 "event_signals": [event_signal], "targets": [{"ven_id": ven_id}],
                 "targets_by_type": {"ven_id": [ven_id]}, "response_required": response_required}
        self.server.add_raw_event(ven_id=ven_id, event=event, callback=self._opt_callback)
        # openleadr 0.5.36's add_raw_event (and so add_event) replaces the active period with
        # one made from the intervals alone, dropping notification, ramp-up, recovery and
        # tolerance: put ours back (the queued event is this very dict).
        event["active_period"] = self._active_period(event_intervals, notification_s, ramp_up_s,
                                                     recovery_s, start_after_s)
        return event_id

    def _find_event(self, event_id):
        for ven_id, events in self.server.events.items():
            for event in events:
                if event["event_descriptor"]["event_id"] == event_id:
                    return ven_id, event
        raise ControlError(f"no event {event_id!r} (queued: "
                           f"{[e['event_descriptor']['event_id'] for es in self.server.events.values() for e in es]})")

    def modify_event(self, event_id, reason=None, **changes):
        """Change a queued event (same fields as add_event); returns the new modificationNumber."""
        ven_id, event = self._find_event(event_id)
        if event["event_descriptor"]["event_status"] == "cancelled":
            raise ControlError(f"event {event_id} is cancelled")
        unknown = set(changes) - {"signal", "level", "kw", "start", "notice_s", "duration_s", "intervals",
                                  "signal_type", "notification_s", "ramp_up_s", "recovery_s", "start_after_s",
                                  "priority", "market_context", "response_required", "vtn_comment", "test_event"}
        if unknown:
            raise ControlError(f"cannot modify {sorted(unknown)}")
        period, old_signal = event["active_period"], event["event_signals"][0]
        old_intervals = old_signal["intervals"]
        if "start" in changes or "notice_s" in changes:
            start = (_datetime(changes["start"]) if changes.get("start") is not None
                     else utc_now() + timedelta(seconds=float(changes.get("notice_s") or 0)))
        else:
            start = period["dtstart"]
        if "intervals" in changes:
            intervals = changes["intervals"]
        else:
            value = changes.get("kw", changes.get("level"))
            durations = [i["duration"].total_seconds() for i in old_intervals]
            if "duration_s" in changes:
                durations = [float(changes["duration_s"])] if len(durations) == 1 else None
                if durations is None:
                    raise ControlError("give intervals to change the duration of a multi-interval event")
            intervals = [[d, value if value is not None else i["signal_payload"]]
                         for d, i in zip(durations, old_intervals)]
        event_intervals = self._build_intervals(start, None, intervals, None)
        signal = changes.get("signal", old_signal["signal_name"])
        signal_type = changes.get("signal_type", old_signal["signal_type"] if signal == old_signal["signal_name"] else None)
        event["event_signals"] = [self._signal(signal, signal_type, event_intervals, old_signal["signal_id"])]

        def keep(name, key):
            if name in changes:
                return changes[name]
            value = period.get(key)
            if key == "tolerance":
                return value["startafter"].total_seconds() if value else None
            return value.total_seconds() if value is not None else None

        event["active_period"] = self._active_period(
            event_intervals, keep("notification_s", "notification_period"), keep("ramp_up_s", "ramp_up_period"),
            keep("recovery_s", "recovery_period"), keep("start_after_s", "tolerance"))
        descriptor = event["event_descriptor"]
        for name in ("priority", "market_context", "vtn_comment", "test_event"):
            if name in changes:
                descriptor[name] = changes[name]
        if "response_required" in changes:
            event["response_required"] = changes["response_required"]
        descriptor["modification_date_time"] = utc_now()
        if reason:
            descriptor["modification_reason"] = reason
        number = utils.increment_event_modification_number(event)
        self.server.events_updated[ven_id] = True
        self.server.event_callbacks[event_id] = (event, self._opt_callback)
        return number

    def cancel_event(self, event_id):
        """Cancel a queued event (openleadr's cancel_event); returns the new modificationNumber."""
        ven_id, event = self._find_event(event_id)
        self.server.cancel_event(ven_id, event_id)
        event["event_descriptor"]["modification_date_time"] = utc_now()
        self.server.event_callbacks[event_id] = (event, self._opt_callback)
        return event["event_descriptor"]["modification_number"]

    def _opt_callback(self, ven_id, event_id, opt_type):
        self._event("opt", ven_id=ven_id, event_id=event_id, opt_type=opt_type)

    # ------------------------------------------------------------------ reports

    def _registered_usage_report(self, ven_id):
        for report in reversed(self.server.registered_reports.get(ven_id, [])):
            if report["report_name"] == "TELEMETRY_USAGE":   # openleadr strips "METADATA_"
                return report
        return None

    def _on_register_report(self, report):
        if self.report_granularity is None or report["report_name"] != "METADATA_TELEMETRY_USAGE":
            return None
        return [(rd["r_id"], self._report_values, self.report_granularity, self.report_granularity)
                for rd in report["report_descriptions"]]

    def _report_values(self, values):
        """openleadr's per-rID callback; the values are in the oadrUpdateReport record already."""

    def _on_update_report(self, report):
        return None

    def _on_created_report(self, payload):
        return None

    async def _registered_report(self, payload):
        return "oadrResponse", {}

    def request_report(self, granularity_s=5.0, report_back_duration_s=None, ven_id=None,
                       report_specifier_id=None, r_ids=None, reading_type="Direct Read"):
        """oadrCreateReport on the VEN's next poll: the VEN's registered TELEMETRY_USAGE report
        (or report_specifier_id / r_ids as given) at `granularity_s`; returns the
        reportRequestID."""
        ven_id = self._default_ven(ven_id)
        granularity = _seconds(granularity_s, "granularity_s")
        back = _seconds(report_back_duration_s, "report_back_duration_s") or granularity
        registered = self._registered_usage_report(ven_id)
        if report_specifier_id is None:
            if registered is None:
                raise ControlError(f"{ven_id} registered no TELEMETRY_USAGE report; give report_specifier_id and r_ids")
            report_specifier_id = registered["report_specifier_id"]
        descriptions = (registered or {}).get("report_descriptions") or []
        if r_ids is None:
            r_ids = [rd["r_id"] for rd in descriptions]
        reading_types = {rd["r_id"]: rd.get("reading_type", reading_type) for rd in descriptions}
        report_request_id = _short_id("rrq")
        request = objects.ReportRequest(report_request_id=report_request_id, report_specifier=objects.ReportSpecifier(
            report_specifier_id=report_specifier_id, granularity=granularity, report_back_duration=back,
            specifier_payloads=[objects.SpecifierPayload(r_id=r, reading_type=reading_types.get(r, reading_type))
                                for r in r_ids]))
        self.queued.setdefault(ven_id, []).append(("oadrCreateReport", {"report_requests": [request]}))
        return report_request_id

    # ------------------------------------------------------------------ control

    def state(self):
        return {"listening": self.listening, "port": self.port, "url": self.url, "vens": self.vens,
                "events": {ven: [{"event_id": e["event_descriptor"]["event_id"],
                                  "modification_number": e["event_descriptor"]["modification_number"],
                                  "event_status": e["event_descriptor"]["event_status"]} for e in events]
                           for ven, events in self.server.events.items()},
                "queued": {ven: [t for t, _ in q] for ven, q in self.queued.items()},
                "hostile": self.hostile, "records": len(self.records)}

    async def control(self, command, body):
        """Run one control command (the path without its slash: "event", "event/modify", …)."""
        body = dict(body or {})
        if command == "event":
            return {"event_id": self.add_event(**body)}
        if command == "event/modify":
            event_id = body.pop("event_id", None)
            return {"event_id": event_id, "modification_number": self.modify_event(event_id, **body)}
        if command == "event/cancel":
            return {"event_id": body["event_id"], "modification_number": self.cancel_event(body["event_id"])}
        if command == "report":
            return {"report_request_id": self.request_report(**body)}
        if command == "reregister":
            self.request_reregistration(body.get("ven_id"))
            return {}
        if command == "cancel-registration":
            self.cancel_registration(body.get("ven_id"))
            return {}
        if command == "hostile":
            self.set_hostile(body.get("kind"), body.get("count"), body.get("delay_s", 15.0))
            return {}
        if command == "stop":
            await self.stop()
            return {}
        if command == "start":
            await self.start()
            return {}
        if command == "state":
            return _jsonable(self.state())
        raise ControlError(f"unknown command {command!r}")

    async def _control_http(self, request):
        command = request.path.strip("/")
        try:
            if request.method == "GET" and command == "messages":
                since = int(request.query.get("since", 0))
                return web.json_response(self.messages(request.query.get("type"), request.query.get("service"), since))
            if request.method == "GET" and command == "state":
                return web.json_response(_jsonable(self.state()))
            if request.method != "POST":
                return web.json_response({"error": f"{request.method} /{command}: not a control request"}, status=400)
            raw = await request.read()
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ControlError("the body is a JSON object")
            return web.json_response(_jsonable(await self.control(command, body)))
        except (ControlError, KeyError, TypeError, json.JSONDecodeError) as err:
            return web.json_response({"error": f"{err.__class__.__name__}: {err}"}, status=400)

    async def _tail_control_file(self):
        path, offset, pending = Path(self.control_file), 0, b""
        while True:
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                    offset += len(chunk)
            except FileNotFoundError:
                chunk = b""
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if not line.strip():
                    continue
                try:
                    body = json.loads(line)
                    reply = await self.control(body.pop("cmd"), body)
                    self._event("control", cmd=line.decode(errors="replace"), reply=_jsonable(reply))
                except Exception as err:  # noqa: BLE001 - a bad line is reported, not fatal
                    self._event("control", cmd=line.decode(errors="replace"), error=f"{err.__class__.__name__}: {err}")
            await asyncio.sleep(0.2)


# ---------------------------------------------------------------------- command line

async def _main(args):
    log = JsonLines(args.log) if args.log else None
    tls = {"cert": args.cert, "key": args.key, "ca": args.ca} if args.tls else None
    peer = VTNPeer(args.host, args.port, args.control_port, args.vtn_id, args.ven_id, args.ven_fingerprint,
                   tls, args.sign, args.verify_signatures, args.poll_freq, not args.reject_registration,
                   args.report_granularity, log, args.control_file, args.hostile)
    await peer.start(vtn=not args.down)
    print(f"READY {peer.port} {peer.control_port}", flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    await stopped.wait()
    await peer.close()
    if log:
        log.close()
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description="OpenADR 2.0b VTN (openleadr 0.5.36) for tests.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="VTN port (0: a free one)")
    p.add_argument("--control-port", type=int, default=0, help="HTTP control port (0: a free one)")
    p.add_argument("--control-file", help="JSON-lines file of control commands to follow")
    p.add_argument("--log", help="JSON-lines file to append the records to")
    p.add_argument("--vtn-id", default="MGE-TEST-VTN")
    p.add_argument("--ven-id", help="the venID to assign (and to know before registration)")
    p.add_argument("--ven-fingerprint", help="TLS: the only client certificate fingerprint accepted")
    p.add_argument("--poll-freq", type=float, default=1, help="oadrRequestedOadrPollFreq, seconds (whole)")
    p.add_argument("--reject-registration", action="store_true")
    p.add_argument("--report-granularity", type=float, help="request TELEMETRY_USAGE at registration, seconds")
    p.add_argument("--tls", action="store_true", help="HTTPS with client certificates (--cert --key --ca)")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--ca")
    p.add_argument("--sign", action="store_true", help="sign the VTN's messages (XML signature, --cert/--key)")
    p.add_argument("--verify-signatures", action="store_true", help="require signed VEN messages on TLS")
    p.add_argument("--hostile", choices=HOSTILE_KINDS, help="answer every oadrPoll with this bad body")
    p.add_argument("--down", action="store_true", help="start with the VTN port down (POST /start)")
    p.add_argument("--verbose", action="store_true", help="openleadr's log on stderr")
    args = p.parse_args(argv)
    if args.tls and not (args.cert and args.key and args.ca):
        p.error("--tls needs --cert, --key and --ca")
    if args.down and not args.port:
        p.error("--down needs --port (the port the VTN will listen on once started)")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    # openleadr warns about every handler it thinks is missing; that is not a failure.
    logging.getLogger("openleadr").setLevel(logging.INFO if args.verbose else logging.ERROR)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())

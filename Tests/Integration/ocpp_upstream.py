"""An upstream (cloud) CSMS written with the `ocpp` package (ocpp.v21 / ocpp.v201 ChargePoint
on the server side), for the appliance to connect to as a charging station, and for the
self-tests of ocpp_peers.py. Importable, and runnable as a script:

    python3 ocpp_upstream.py [--host 127.0.0.1] [--port 0] [--control-port 0] [--log FILE] \
        [--password PW] [--heartbeat-interval 30] [--auto-push CP1=-80000@5 ...] [--verbose]
    -> prints "READY <port> <control_port>" on stdout once both listen; serves until SIGINT /
       SIGTERM (exit status 0).

    csms = UpstreamCSMS(password="pw"); await csms.start()      # csms.port, csms.control_port
    payloads = await csms.wait_call("CP1", "NotifyEVChargingNeeds")
    reply = await csms.push("CP1", setpoint_w=-80000)          # {"status": "Accepted"}
    await csms.stop()

WebSocket: ws://HOST:PORT/<charger_id> (the last path segment is the charger id), subprotocol
ocpp2.1 or ocpp2.0.1 (a connection offering neither is closed with 1002). With a password,
the opening handshake needs `Authorization: Basic base64(<charger_id>:<password>)`, else HTTP
401. A second connection with the same id takes over from the first.

Answers (the package validates every CALL against the edition's schema first and answers a
CALLERROR itself when it fails): BootNotification Accepted with the heartbeat interval
(default 30 s) and the current time; Heartbeat the current time; StatusNotification,
TransactionEvent, MeterValues empty; NotifyEVChargingNeeds Accepted; Authorize Accepted. A
CALL it has no handler for: CALLERROR NotImplemented.

Pushing a profile (push(), POST /push, --auto-push): SetChargingProfile {evseId: 1,
chargingProfile: {id: 1, stackLevel: 0, chargingProfilePurpose: "TxProfile" with the
transactionId of the charger's running transaction (from its TransactionEvents), else
"TxDefaultProfile", chargingProfileKind: "Absolute", chargingSchedule: [{id: 1,
chargingRateUnit: "W", startSchedule: now, chargingSchedulePeriod: [{startPeriod: 0, ...}]}]}}
where the period is, for setpoint_w on 2.1: {setpoint, operationMode: "CentralSetpoint"};
for limit_w on 2.1, or any value on 2.0.1: {limit} (so a negative value gives a 2.0.1
charger a negative limit, on purpose). Always id 1, so a push replaces the previous one.
--auto-push ID=W@S pushes W (setpoint on 2.1, limit on 2.0.1) S seconds after each
connection of ID.

Control endpoint (HTTP/1.1 on 127.0.0.1:control_port, JSON bodies, one request per connection):
    POST /push  {"charger": "CP1", "setpoint_w": -80000}   or {"charger", "limit_w"}
    POST /call  {"charger": "CP1", "action": "Reset", "payload": {"type": "Immediate"}}
                sends the frame exactly as given (no schema check on this side)
    GET  /chargers  -> {"CP1": {"version": "2.1", "transaction_id": "…" | null}, …}
A reply from the charger is 200 with the CALLRESULT payload (e.g. {"status": "Rejected"}) or
{"callError": {"code", "description", "details"}}; 404 {"error"} when the charger is not
connected, 504 {"error"} when it does not answer in 10 s, 400 {"error"} for a bad request.

Log (--log FILE, JSON lines, appended, flushed per line, t = Unix time):
    {"t", "charger", "action", "payload"}            every CALL received, payload as on the wire
    {"t", "charger", "event": "connected", "subprotocol"} / {"event": "disconnected"}
    {"t", "charger", "event": "call_error", "frame"} an error frame received from the charger
    {"t", "charger", "event": "push", "request", "reply"}   every push (HTTP, auto or library)
"""
import argparse
import asyncio
import base64
import hmac
import json
import logging
import signal
import sys
import time
from http import HTTPStatus

import websockets.exceptions
from ocpp import v21, v201
from ocpp.charge_point import remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import OCPPError, UnknownCallErrorCodeError
from ocpp.routing import on
from ocpp.v21 import datatypes as datatypes21
from ocpp.v201 import datatypes as datatypes201

from ocpp_peers import RESPONSE_TIMEOUT, JsonLines, OcppEndpoint, utc_now

try:  # websockets >= 13: the new asyncio implementation
    from websockets.asyncio.server import serve as ws_serve
    NEW_API = True
except ImportError:  # older releases: the legacy one, with other request accessors
    from websockets import serve as ws_serve
    NEW_API = False


class _Upstream(OcppEndpoint):
    """The CSMS's side of one charger's connection."""

    def __init__(self, csms, charger_id, connection):
        super().__init__(charger_id, connection, response_timeout=RESPONSE_TIMEOUT)
        self.csms = csms
        self.transaction_id = None

    def on_call_frame(self, unique_id, action, payload):
        self.csms.record(self.id, action, payload)

    def on_error_frame(self, frame):
        self.csms.log_event(self.id, "call_error", frame=frame)

    @on("BootNotification")
    def _boot_notification(self, charging_station, reason, **_):
        return self._call_result.BootNotification(
            current_time=utc_now(), interval=self.csms.heartbeat_interval, status="Accepted")

    @on("Heartbeat")
    def _heartbeat(self, **_):
        return self._call_result.Heartbeat(current_time=utc_now())

    @on("StatusNotification")
    def _status_notification(self, **_):
        return self._call_result.StatusNotification()

    @on("TransactionEvent")
    def _transaction_event(self, event_type, transaction_info, **_):
        self.transaction_id = None if event_type == "Ended" else transaction_info["transaction_id"]
        return self._call_result.TransactionEvent()

    @on("MeterValues")
    def _meter_values(self, **_):
        return self._call_result.MeterValues()

    @on("NotifyEVChargingNeeds")
    def _notify_ev_charging_needs(self, **_):
        return self._call_result.NotifyEVChargingNeeds(status="Accepted")

    @on("Authorize")
    def _authorize(self, id_token, **_):
        return self._call_result.Authorize(id_token_info=self.datatypes.IdTokenInfoType(status="Accepted"))


class _Upstream21(_Upstream, v21.ChargePoint):
    datatypes = datatypes21


class _Upstream201(_Upstream, v201.ChargePoint):
    datatypes = datatypes201


EDITIONS = {"ocpp2.1": _Upstream21, "ocpp2.0.1": _Upstream201}


def _error_reply(code, description, details):
    return {"callError": {"code": code, "description": description, "details": details}}


class UpstreamCSMS:
    """The server; see the module docstring. auto_push: {charger: (watts, delay_s)}."""

    def __init__(self, host="127.0.0.1", port=0, control_port=None, password=None,
                 heartbeat_interval=30, auto_push=None, log=None):
        self.host, self.port, self.control_port = host, port, control_port
        self.password, self.heartbeat_interval = password, heartbeat_interval
        self.auto_push, self.log = auto_push or {}, log
        self.stations = {}      # charger id -> _Upstream of its current connection
        self.received = {}      # charger id -> [(t, action, payload)]
        self._server = self._control = None

    async def start(self):
        kwargs = {"subprotocols": list(EDITIONS)}
        if self.password is not None:
            kwargs["process_request"] = self._check_new if NEW_API else self._check_legacy
        self._server = await ws_serve(self._serve, self.host, self.port, **kwargs)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.control_port is not None:
            self._control = await asyncio.start_server(self._http, "127.0.0.1", self.control_port)
            self.control_port = self._control.sockets[0].getsockname()[1]

    async def stop(self):
        for server in (self._control, self._server):
            if server is not None:
                server.close()
                await server.wait_closed()

    # ------------------------------------------------------------------ records

    def log_event(self, charger_id, event, **fields):
        if self.log:
            self.log.write(charger=charger_id, event=event, **fields)

    def record(self, charger_id, action, payload):
        self.received.setdefault(charger_id, []).append((time.time(), action, payload))
        if self.log:
            self.log.write(charger=charger_id, action=action, payload=payload)

    def calls(self, charger_id, action):
        """Payloads of the CALLs `action` received from the charger, oldest first."""
        return [payload for _, a, payload in self.received.get(charger_id, []) if a == action]

    async def wait_call(self, charger_id, action, count=1, timeout=10.0):
        """The payloads once at least `count` `action` CALLs came from the charger."""
        deadline = time.monotonic() + timeout
        while len(self.calls(charger_id, action)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} {action} from {charger_id} within {timeout} s, got "
                                     f"{len(self.calls(charger_id, action))}; received: "
                                     f"{[a for _, a, _ in self.received.get(charger_id, [])]}")
            await asyncio.sleep(0.05)
        return self.calls(charger_id, action)

    # ------------------------------------------------------------------ WebSocket side

    def _authorized(self, path, headers):
        charger_id = path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return scheme.lower() == "basic" and user == charger_id and \
            hmac.compare_digest(password.encode(), self.password.encode())

    async def _check_new(self, connection, request):
        if self._authorized(request.path, request.headers):
            return None
        response = connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        response.headers["WWW-Authenticate"] = 'Basic realm="ocpp"'
        return response

    async def _check_legacy(self, path, headers):
        if self._authorized(path, headers):
            return None
        return HTTPStatus.UNAUTHORIZED, [("WWW-Authenticate", 'Basic realm="ocpp"')], b"Unauthorized\n"

    async def _serve(self, connection):
        path = connection.request.path if NEW_API else connection.path
        charger_id = path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        edition = EDITIONS.get(connection.subprotocol)
        if edition is None or not charger_id:
            await connection.close(1002, "a charger id and subprotocol ocpp2.1 or ocpp2.0.1 are required")
            return
        station = edition(self, charger_id, connection)
        self.stations[charger_id] = station
        self.log_event(charger_id, "connected", subprotocol=connection.subprotocol)
        auto = None
        if charger_id in self.auto_push:
            auto = asyncio.create_task(self._auto_push(charger_id, *self.auto_push[charger_id]))
        try:
            await station.start()
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            if auto:
                auto.cancel()
            if self.stations.get(charger_id) is station:
                del self.stations[charger_id]
            self.log_event(charger_id, "disconnected")

    async def _auto_push(self, charger_id, watts, delay):
        await asyncio.sleep(delay)
        await self.push(charger_id, setpoint_w=watts)

    # ------------------------------------------------------------------ commands

    async def push(self, charger_id, setpoint_w=None, limit_w=None):
        """SetChargingProfile (see the module docstring); the charger's reply as a dict. On
        2.0.1 setpoint_w is sent as a limit."""
        station = self.stations.get(charger_id)
        if station is None:
            return {"error": f"{charger_id} is not connected"}
        if setpoint_w is None and limit_w is None:
            raise ValueError("push needs setpoint_w or limit_w")
        dt = station.datatypes
        if setpoint_w is not None and isinstance(station, _Upstream21):
            period = dt.ChargingSchedulePeriodType(start_period=0, setpoint=setpoint_w,
                                                   operation_mode="CentralSetpoint")
        else:
            period = dt.ChargingSchedulePeriodType(start_period=0, limit=setpoint_w if limit_w is None else limit_w)
        schedule = dt.ChargingScheduleType(id=1, charging_rate_unit="W", start_schedule=utc_now(),
                                           charging_schedule_period=[period])
        profile = dt.ChargingProfileType(
            id=1, stack_level=0, charging_profile_kind="Absolute", charging_schedule=[schedule],
            charging_profile_purpose="TxProfile" if station.transaction_id else "TxDefaultProfile",
            transaction_id=station.transaction_id)
        request = station._call.SetChargingProfile(evse_id=1, charging_profile=profile)
        try:
            result = await station.call(request, suppress=False)
            reply = snake_to_camel_case(remove_nones(serialize_as_dict(result)))
        except OCPPError as e:
            reply = _error_reply(e.code, e.description, e.details)
        except UnknownCallErrorCodeError as e:
            reply = _error_reply(None, str(e), None)
        except asyncio.TimeoutError:
            reply = {"error": f"{charger_id} did not answer in {RESPONSE_TIMEOUT:g} s"}
        except websockets.exceptions.ConnectionClosed:
            reply = {"error": f"{charger_id} disconnected"}
        self.log_event(charger_id, "push", request=snake_to_camel_case(remove_nones(serialize_as_dict(request))),
                       reply=reply)
        return reply

    async def call(self, charger_id, action, payload):
        """Send [2, id, action, payload] exactly as given; the charger's reply as a dict."""
        station = self.stations.get(charger_id)
        if station is None:
            return {"error": f"{charger_id} is not connected"}
        try:
            frame = await station.send_raw([2, f"up-{time.monotonic_ns()}", action, payload])
        except asyncio.TimeoutError:
            return {"error": f"{charger_id} did not answer in {RESPONSE_TIMEOUT:g} s"}
        except websockets.exceptions.ConnectionClosed:
            return {"error": f"{charger_id} disconnected"}
        if frame[0] == 3:
            return frame[2]
        return _error_reply(*(frame + [None, None, None])[2:5])

    # ------------------------------------------------------------------ HTTP control

    async def _http(self, reader, writer):
        try:
            method, target, _ = (await reader.readline()).decode("latin-1").split(" ", 2)
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status, reply = await self._dispatch(method, target, json.loads(body) if body else {})
        except (ValueError, KeyError, TypeError, asyncio.IncompleteReadError) as e:
            status, reply = HTTPStatus.BAD_REQUEST, {"error": f"bad request: {e}"}
        data = json.dumps(reply).encode()
        writer.write(f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    async def _dispatch(self, method, target, body):
        if (method, target) == ("GET", "/chargers"):
            return HTTPStatus.OK, {cid: {"version": s._ocpp_version, "transaction_id": s.transaction_id}
                                   for cid, s in self.stations.items()}
        if (method, target) == ("POST", "/push"):
            reply = await self.push(body["charger"], setpoint_w=body.get("setpoint_w"),
                                    limit_w=body.get("limit_w"))
        elif (method, target) == ("POST", "/call"):
            reply = await self.call(body["charger"], body["action"], body.get("payload", {}))
        else:
            return HTTPStatus.NOT_FOUND, {"error": f"no {method} {target}; see ocpp_upstream.py"}
        if "error" not in reply:
            return HTTPStatus.OK, reply
        if reply["error"].endswith("not connected"):
            return HTTPStatus.NOT_FOUND, reply
        return HTTPStatus.GATEWAY_TIMEOUT, reply


# ---------------------------------------------------------------------- command line

def _auto_push(values):
    """["CP1=-80000@5", …] -> {"CP1": (-80000.0, 5.0), …}"""
    out = {}
    for value in values or []:
        name, _, rest = value.partition("=")
        watts, _, delay = rest.partition("@")
        out[name] = (float(watts), float(delay or 0))
    return out


async def _main(args):
    log = JsonLines(args.log) if args.log else None
    csms = UpstreamCSMS(args.host, args.port, args.control_port, args.password,
                        args.heartbeat_interval, _auto_push(args.auto_push), log)
    await csms.start()
    print(f"READY {csms.port} {csms.control_port}", flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    await stopped.wait()
    await csms.stop()
    if log:
        log.close()
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description="Upstream OCPP 2.1 / 2.0.1 CSMS for tests.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="WebSocket port (0: a free one)")
    p.add_argument("--control-port", type=int, default=0, help="HTTP control port (0: a free one)")
    p.add_argument("--log", help="JSON-lines file to append to")
    p.add_argument("--password", help="require HTTP Basic auth <charger_id>:<password>")
    p.add_argument("--heartbeat-interval", type=int, default=30)
    p.add_argument("--auto-push", action="append", metavar="ID=WATTS@SECONDS")
    p.add_argument("--verbose", action="store_true", help="log every frame (ocpp package, stderr)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    # The package logs every CALLERROR it sends with a traceback, which would read as a crash.
    logging.getLogger("ocpp").setLevel(logging.INFO if args.verbose else logging.CRITICAL)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())

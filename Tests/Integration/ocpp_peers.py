"""Simulated OCPP 2.1 / 2.0.1 charging stations with a vehicle plugged in, written with the
`ocpp` package (ocpp.v21 / ocpp.v201 ChargePoint, call, call_result, datatypes, @on), so
that the appliance's CSMS is tested against charge points that were not written by us.

Importable, and runnable as a script:

    python3 ocpp_peers.py --url ws://127.0.0.1:8887/ocpp \
        --charger CP1:2.1:secret --charger CP2:2.0.1:secret2 [--fleet 20 --password pw] \
        [--vehicle-kwh 200 --soc 60 --need-kwh 40 --depart-in 3600 --max-kw 60 \
         --max-discharge-kw 60 --min-soc 20 --voltage 400 | --no-vehicle] \
        [--meter-interval 1] [--log out.jsonl] [--duration 30] [--connect-timeout 30] \
        [--reject-profiles CP2] [--nonsense CP1] [--send-invalid CP1] [--unidirectional CP1] \
        [--disconnect-after CP1=10] [--reboot-after CP1=15] [--ca ca.pem] [--verbose]

    -> runs every charger in one asyncio loop until --duration, SIGINT or SIGTERM, then prints
       one JSON summary line per charger on stdout (charger, version, boots, transactions,
       power_w, energy_wh, soc, received, call_errors, violations, gave_up). Exit status 0,
       or 1 when a charger gave up connecting. The flags naming chargers are repeatable and
       take comma-separated lists. --fleet N adds 2.1 chargers BENCH-001..BENCH-N.

    peer = SimulatedChargePoint("CP1", "ws://127.0.0.1:8887/ocpp", version="2.1",
                                password="secret", vehicle=Vehicle(capacity_kwh=200))
    task = asyncio.create_task(peer.run())
    ... peer.received, peer.call_errors, peer.violations, peer.power_w, peer.energy_wh ...
    peer.stop(); await task

    # a station whose vehicles come and go (vehicle=None at first: an empty connector)
    await peer.plug_in(Vehicle(capacity_kwh=155, name="BUS-1"), departure=time.time() + 600)
    energy_wh = await peer.unplug()

Connection
----------
WebSocket to {url}/{charger_id} with subprotocol "ocpp2.1" (version "2.1") or "ocpp2.0.1"
(version "2.0.1"), `Authorization: Basic base64(charger_id:password)` when a password is
given, TLS for wss:// (a CA file with --ca). A refused or failed connection (also HTTP 401,
or a CSMS that does not select the subprotocol) is retried with backoff from 0.2 s to 5 s,
for up to connect_timeout seconds per (re)connection; then the charger gives up
(`gave_up`). A connection that the CSMS drops is re-opened the same way and the station
resumes WITHOUT a new BootNotification (it did not reboot): it sends a StatusNotification
and carries on with its transaction.

What each station sends (exact wire fields; every timestamp is UTC "…T…Z" with ms)
--------------------------------------------------------------------------------
1. BootNotification {reason: "PowerUp" ("RemoteReset" after a Reset, "Triggered" on
   TriggerMessage), chargingStation: {model: "SimulatedChargePoint", vendorName:
   "MicrogridEdgeTests"}}. Pending/Rejected: retried after `interval` (at least 1 s).
   Accepted: Heartbeat {} every `interval` seconds (none when interval <= 0).
2. StatusNotification {timestamp, connectorStatus: "Available", evseId: 1, connectorId: 1}.
3. With a vehicle (once per power cycle):
   StatusNotification {… connectorStatus: "Occupied" …};
   TransactionEvent {eventType: "Started", timestamp, triggerReason: "CablePluggedIn",
     seqNo: 0, transactionInfo: {transactionId: "<charger>-<8 hex>", chargingState:
     "EVConnected"}, evse: {id: 1, connectorId: 1}, idToken: {idToken: "EV-<charger>",
     type: "Local"}} (evse and idToken only in this first event, as OCPP asks; the idToken
     is the vehicle's name when it has one);
   NotifyEVChargingNeeds (none with notify_needs=False) {evseId: 1, chargingNeeds: {
     requestedEnergyTransfer: "DC_BPT" (2.1, vehicle can discharge) | "DC" (2.0.1, or a
                              2.1 vehicle marked unidirectional),
     departureTime: start of the simulation + depart_in_s (fixed for the whole run), or
                    the departure given to plug_in(),
     dcChargingParameters: {
       evMaxPower    W   = max_kw × 1000,
       evMaxCurrent  A   = evMaxPower / voltage_v,
       evMaxVoltage  V   = voltage_v,
       energyAmount  Wh  = max(0, target − now)   (what is still needed for departure),
       stateOfCharge %   = round(SoC now), integer 0..100,
       evEnergyCapacity Wh = capacity_kwh × 1000},
     and in 2.1 only:
     controlMode: "DynamicControl", mobilityNeedsMode: "EVCC",
     v2xChargingParameters: {
       maxChargePower W = max_kw × 1000,   minChargePower: 0,
       maxDischargePower W = max_discharge_kw × 1000 (positive; 0 when unidirectional),
       minDischargePower: 0,
       evMinEnergyRequest    Wh = reserve − now  (negative: the vehicle can give that much),
       evTargetEnergyRequest Wh = target − now   (positive: still to add by departure),
       evMaxEnergyRequest    Wh = capacity − now}}}
   where now = energy in the battery when the message is sent, reserve = min_soc_pct of
   the capacity, target = min(capacity, initial energy + need_kwh) fixed at construction.
   Every number in NotifyEVChargingNeeds is rounded to a whole number (2.0.1's schema wants
   integers there); the Swift side should still read them as numbers.
4. Every meter_interval seconds while the transaction runs: TransactionEvent {eventType:
   "Updated", timestamp, triggerReason: "MeterValuePeriodic", seqNo: n, transactionInfo:
   {transactionId, chargingState: "Charging" | "SuspendedEVSE" (power 0)}, meterValue: [
   {timestamp, sampledValue: [
     {value: W  signed (negative while discharging), measurand: "Power.Active.Import",
      context: "Sample.Periodic", location: "Outlet", unitOfMeasure: {unit: "W", multiplier: 0}},
     {value: %  1 decimal, measurand: "SoC", … location: "EV", unitOfMeasure: {unit: "Percent", …}},
     {value: Wh cumulative charged,    measurand: "Energy.Active.Import.Register", … "Wh"},
     {value: Wh cumulative discharged, measurand: "Energy.Active.Export.Register", … "Wh"}]}]}.
   In 2.1 every TransactionEvent also carries offline: false (the package's default). The
   same meterValue entry is used by TriggerMessage MeterValues (MeterValues {evseId: 1,
   meterValue}), and by the Ended event.
5. TransactionEvent {eventType: "Ended", triggerReason: "RemoteStop" (RequestStopTransaction)
   | "ResetCommand" (Reset), transactionInfo: {transactionId, stoppedReason: "Remote" |
   "ImmediateReset"}, meterValue}; afterwards the power is 0 and no Updated events follow.

How the battery follows the CSMS
--------------------------------
The profile in effect is the stored one with the highest stackLevel (the latest received
wins a tie), whatever its purpose; its first chargingSchedule; the period in effect is the
last one whose startPeriod <= seconds since startSchedule (or since the profile arrived,
when it has no startSchedule); outside [start, start + duration) the profile does not apply.
 - no profile in effect (also after ClearChargingProfile): charge at max_kw until full;
 - 2.1 operationMode "CentralSetpoint" with a setpoint: power = setpoint (W; negative =
   discharge), clamped to [max(−maxDischargePower, dischargeLimit), min(maxChargePower,
   limit)]; operationMode "Idle": 0;
 - otherwise (any 2.0.1 profile, 2.1 without setpoint or in another mode): `limit` is a
   charge cap: power = min(maxChargePower, max(0, limit)); no limit: maxChargePower.
 - chargingRateUnit "A": W = A × 400 V × (numberPhases, or 3).
Energy is integrated with the applied power (the battery gains power × efficiency while
charging and loses power / efficiency while discharging; Vehicle.efficiency, default 1; the
power and the energy registers are at the outlet), clamped to [0, capacity]; at either bound
the power becomes 0. A 2.0.1 vehicle never discharges.

Vehicles coming and going
-------------------------
A vehicle given to the constructor is plugged in for the station's whole life. A station
built with vehicle=None has an empty connector; `await plug_in(vehicle, departure)` plugs
one in (as in 3. above, at once when connected, else after the next boot) and
`await unplug()` takes it away: TransactionEvent Ended {triggerReason: "EVDeparted",
stoppedReason: "EVDisconnected"}, its TxProfiles deleted (TxDefaultProfiles stay, as OCPP
says), StatusNotification Available; it returns the energy left in the battery (Wh). An
unplug while the CSMS is unreachable ends the transaction without telling it.

Handlers (CALLs from the CSMS)
------------------------------
SetChargingProfile: stored, Accepted (Rejected, and not stored, with reject_profiles).
ClearChargingProfile: by chargingProfileId, or by criteria (purpose / stackLevel), or all:
  Accepted when something was removed, else Unknown. GetCompositeSchedule: Accepted with the
  periods from now on (the profile's, or one period with limit = max power), in the asked
  unit. Reset: Accepted, ends the transaction, closes the socket, boots again ("RemoteReset")
  with a new transaction. TriggerMessage: BootNotification, Heartbeat, StatusNotification,
  MeterValues, TransactionEvent (only during a transaction) are Accepted and then sent;
  others NotImplemented. GetVariables / SetVariables: OCPPCommCtrlr.HeartbeatInterval and
  SampledDataCtrlr.TxUpdatedInterval (read/write, seconds), SmartChargingCtrlr.Enabled
  ("true", read-only: Set is Rejected); other variables of those components
  UnknownVariable, other components UnknownComponent, attributeType other than Actual
  NotSupportedAttributeType. RequestStopTransaction: Accepted for the running transaction
  (then Ended), else Rejected. ChangeAvailability: Accepted. Any other action: CALLERROR
  NotImplemented (NotSupported if the edition has no such action). The ocpp package
  validates every CALL against the edition's schema first and answers a CALLERROR itself.

Violations (what the CSMS did wrong, in `violations`)
-----------------------------------------------------
 - 2.0.1: a SetChargingProfile with a negative limit, or any period field that 2.0.1 does not
   have (setpoint, operationMode, dischargeLimit, …); checked before the package validates
   (which then answers FormatViolation for unknown fields);
 - 2.1: a negative setpoint for a vehicle that cannot discharge; discharging the battery
   below the reserve it announced (once per transaction);
 - the CSMS did not select the offered subprotocol;
 - send_invalid: the CSMS answered the schema-invalid CALL with a CALLRESULT, or not at all.

Misbehaviour knobs
------------------
reject_profiles: SetChargingProfile -> Rejected. nonsense: meter values report SoC 250 % and a
power of 10 × max_kw with the wrong sign (negative while the battery charges or idles,
positive while it discharges); the battery itself still follows the CSMS. disconnect_after
S: S seconds after the first accepted boot, close the socket and stay away. reboot_after S:
S seconds after the first accepted boot, close the socket (no Ended: a power loss), wait 2 s,
reconnect with BootNotification "PowerUp" and a new transaction (once). send_invalid: after
each accepted boot, send [2, "bad-<n>", "NotifyEVChargingNeeds", {"evseId": 1}] (no
chargingNeeds) straight onto the socket and wait up to 10 s for the answer.

Records
-------
received: [(t, action, payload)] for every CALL from the CSMS, payload as on the wire;
call_errors: [{t, id, kind: "CALLERROR" | "CALLRESULTERROR", code, description, details}] for
every error frame received; violations: [str]; boots: [reason of each accepted boot];
transactions: [transactionId]; power_w, energy_wh (in the battery), soc_pct, import_wh,
export_wh, gave_up. With a log (JsonLines / --log FILE), one JSON object per line, flushed at
once and appended, t = Unix time in seconds:
  {"t", "charger", "action", "payload"}   a CALL received from the CSMS
  {"t", "charger", "call_error": {...}}   an error frame received (fields as in call_errors)
  {"t", "charger", "violation": "..."}
  {"t", "charger", "event": "connected" | "connect_failed" | "gave_up" | "booted" |
   "boot_not_accepted" | "disconnected" | "timeout", ...details}

Note: ocpp 2.1.0's v21 ChargePoint silently drops a CALL for which it has no handler (its
v201 answers NotImplemented); OcppEndpoint answers such CALLs itself for both editions.
"""
import argparse
import asyncio
import base64
import json
import logging
import math
import signal
import ssl as ssl_module
import sys
import time
import uuid
from dataclasses import dataclass, is_dataclass
from datetime import datetime, timezone

import websockets.exceptions
from ocpp import v21, v201
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import NotSupportedError, OCPPError, UnknownCallErrorCodeError
from ocpp.messages import Call
from ocpp.routing import after, on
from ocpp.v21 import datatypes as datatypes21
from ocpp.v201 import datatypes as datatypes201

try:  # websockets >= 13: the new asyncio implementation, whose header argument is additional_headers
    from websockets.asyncio.client import connect as ws_connect
    HEADERS_ARG = "additional_headers"
except ImportError:  # older releases: the legacy implementation, which calls it extra_headers
    from websockets import connect as ws_connect
    HEADERS_ARG = "extra_headers"

SUBPROTOCOLS = {"2.1": "ocpp2.1", "2.0.1": "ocpp2.0.1"}
RESPONSE_TIMEOUT = 10.0       # seconds to wait for the CSMS's answer to a CALL
REBOOT_PAUSE = 2.0            # seconds a rebooting station stays away
AMPS_TO_WATTS = 400.0         # V per phase-count for profiles in A (see module docstring)
TRIGGERABLE = ("BootNotification", "Heartbeat", "StatusNotification", "MeterValues",
               "TransactionEvent")
# Period fields that exist in OCPP 2.0.1; anything else in a 2.0.1 profile is a 2.1 field.
PERIOD_FIELDS_201 = {"startPeriod", "limit", "numberPhases", "phaseToUse", "customData"}


def utc_now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text):
    """Unix time of an OCPP date-time ("…Z" or with an offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class JsonLines:
    """Append-only JSON-lines log, flushed per line so that a test can tail it."""

    def __init__(self, path):
        self._file = open(path, "a", encoding="utf-8")

    def write(self, **record):
        self._file.write(json.dumps({"t": round(time.time(), 3), **record}) + "\n")
        self._file.flush()

    def close(self):
        self._file.close()


class OcppEndpoint:
    """Mixin for an ocpp ChargePoint subclass, either side of the socket: sees every frame
    before the package routes it (on_call_frame / on_error_frame, for recording), answers
    CALLs that have no handler (ocpp 2.1.0's v21 would stay silent), understands 2.1's
    CALLRESULTERROR (which the package cannot parse), and can send raw frames whose answer
    must not reach the package's pending-call queue (send_raw)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._raw_waiters = {}
        self.last_answer_id = None  # of the latest CALLRESULT / CALLERROR

    def on_call_frame(self, unique_id, action, payload):
        raise NotImplementedError

    def on_error_frame(self, frame):
        raise NotImplementedError

    async def route_message(self, raw_msg):
        try:
            frame = json.loads(raw_msg)
        except ValueError:
            frame = None
        if not (isinstance(frame, list) and len(frame) >= 3 and isinstance(frame[1], str)):
            await super().route_message(raw_msg)  # the package logs what is not OCPP-J
            return
        kind, unique_id = frame[0], frame[1]
        if kind == 2 and len(frame) >= 4:
            self.on_call_frame(unique_id, frame[2], frame[3])
            if "_on_action" not in self.route_map.get(frame[2], {}):
                await self._send(self._unhandled(unique_id, frame[2], frame[3]))
                return
        if kind in (3, 4):
            self.last_answer_id = unique_id
        if kind in (4, 5):
            self.on_error_frame(frame)
        if kind in (3, 4, 5) and unique_id in self._raw_waiters:
            self._raw_waiters.pop(unique_id).set_result(frame)
            return
        if kind != 5:
            await super().route_message(raw_msg)

    def _unhandled(self, unique_id, action, payload):
        known = is_dataclass(getattr(self._call, action, None))
        error = (OcppNotImplemented if known else NotSupportedError)(
            details={"cause": f"{action} is not handled by this {self._ocpp_version} endpoint"})
        return Call(unique_id, action, payload).create_call_error(error).to_json()

    async def send_raw(self, frame, timeout=RESPONSE_TIMEOUT):
        """Send a CALL frame (a list) as is; return the answering frame (a list)."""
        waiter = asyncio.get_running_loop().create_future()
        self._raw_waiters[frame[1]] = waiter
        try:
            await self._connection.send(json.dumps(frame))
            return await asyncio.wait_for(waiter, timeout)
        finally:
            self._raw_waiters.pop(frame[1], None)


@dataclass
class Vehicle:
    """The EV behind the connector. Energies in kWh here; the wire carries Wh and W."""
    capacity_kwh: float = 200.0
    soc_pct: float = 60.0           # at the start of the simulation
    need_kwh: float = 40.0          # to add by departure
    depart_in_s: float = 3600.0
    max_kw: float = 60.0            # charging
    max_discharge_kw: float | None = None  # None: same as max_kw
    min_soc_pct: float = 20.0       # reserve it will not give (evMinEnergyRequest)
    voltage_v: float = 400.0
    bidirectional: bool = True      # only a 2.1 station can use it
    efficiency: float = 1.0         # battery gets W x efficiency charging, gives W / efficiency
    name: str | None = None         # its idToken (default "EV-<charger>")


class _Station(OcppEndpoint):
    """The wire side of a SimulatedChargePoint for one connection (a new one per socket, so
    that a reconnect starts with a clean pending-call queue); state lives in self.sim."""

    def __init__(self, sim, connection):
        super().__init__(sim.charger_id, connection, response_timeout=RESPONSE_TIMEOUT)
        self.sim = sim

    def on_call_frame(self, unique_id, action, payload):
        self.sim.record_call(action, payload)

    def on_error_frame(self, frame):
        self.sim.record_error(frame)

    @on("SetChargingProfile")
    def _set_charging_profile(self, evse_id, charging_profile, **_):
        return self._call_result.SetChargingProfile(status=self.sim.set_profile(charging_profile))

    @on("ClearChargingProfile")
    def _clear_charging_profile(self, charging_profile_id=None, charging_profile_criteria=None, **_):
        status = self.sim.clear_profiles(charging_profile_id, charging_profile_criteria or {})
        return self._call_result.ClearChargingProfile(status=status)

    @on("GetCompositeSchedule")
    def _get_composite_schedule(self, duration, evse_id, charging_rate_unit=None, **_):
        schedule = self.sim.composite_schedule(duration, evse_id, charging_rate_unit)
        return self._call_result.GetCompositeSchedule(status="Accepted", schedule=schedule)

    @on("Reset")
    def _reset(self, type, **_):
        return self._call_result.Reset(status="Accepted")

    @after("Reset")
    async def _after_reset(self, type, **_):
        await self.sim.reset()

    @on("TriggerMessage")
    def _trigger_message(self, requested_message, **_):
        if requested_message not in TRIGGERABLE:
            status = "NotImplemented"
        elif requested_message == "TransactionEvent" and self.sim.transaction_id is None:
            status = "Rejected"
        else:
            status = "Accepted"
        return self._call_result.TriggerMessage(status=status)

    @after("TriggerMessage")
    async def _after_trigger_message(self, requested_message, **_):
        await self.sim.send_triggered(requested_message)

    @on("GetVariables")
    def _get_variables(self, get_variable_data, **_):
        return self._call_result.GetVariables(
            get_variable_result=[self.sim.get_variable(item) for item in get_variable_data])

    @on("SetVariables")
    def _set_variables(self, set_variable_data, **_):
        return self._call_result.SetVariables(
            set_variable_result=[self.sim.set_variable(item) for item in set_variable_data])

    @on("RequestStopTransaction")
    def _request_stop_transaction(self, transaction_id, **_):
        ok = transaction_id == self.sim.transaction_id
        return self._call_result.RequestStopTransaction(status="Accepted" if ok else "Rejected")

    @after("RequestStopTransaction")
    async def _after_request_stop_transaction(self, transaction_id, **_):
        if transaction_id == self.sim.transaction_id:
            await self.sim.end_transaction("RemoteStop", "Remote")

    @on("ChangeAvailability")
    def _change_availability(self, operational_status, **_):
        return self._call_result.ChangeAvailability(status="Accepted")


class _Station21(_Station, v21.ChargePoint):
    datatypes = datatypes21


class _Station201(_Station, v201.ChargePoint):
    datatypes = datatypes201


class SimulatedChargePoint:
    """One charging station (one EVSE, one connector) and its vehicle; see the module
    docstring for the behaviour. Run it with `await run()`, end it with stop()."""

    def __init__(self, charger_id, url, version="2.1", password=None, vehicle=None,
                 meter_interval=1.0, reject_profiles=False, nonsense=False,
                 disconnect_after=None, reboot_after=None, send_invalid=False, ssl=None,
                 connect_timeout=30.0, log=None, notify_needs=True):
        if version not in SUBPROTOCOLS:
            raise ValueError(f"version must be one of {sorted(SUBPROTOCOLS)}, not {version!r}")
        self.charger_id, self.version, self.vehicle = charger_id, version, vehicle
        self.url = url.rstrip("/") + "/" + charger_id
        self.password, self.ssl, self.connect_timeout = password, ssl, connect_timeout
        self.meter_interval, self.heartbeat_interval = meter_interval, 0
        self.reject_profiles, self.nonsense, self.send_invalid = reject_profiles, nonsense, send_invalid
        self.disconnect_after, self.reboot_after = disconnect_after, reboot_after
        self.notify_needs = notify_needs
        self.log = log

        self.received, self.call_errors, self.violations = [], [], []
        self.boots, self.transactions = [], []
        self.gave_up = False
        self.power_w = 0.0
        self.import_wh = self.export_wh = 0.0
        self._take_vehicle(vehicle)

        self.transaction_id = None
        self._station = None
        self._live = False      # a session is running and past its own plug-in step
        self._plugging = asyncio.Event()  # set while no plug-in is half done
        self._plugging.set()
        self._commands = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._timers = []
        self._invalid_sent = 0
        self._power_cycle()

    def _take_vehicle(self, vehicle, departure=None):
        """The battery and limits of `vehicle` (None: an empty connector)."""
        self.vehicle = vehicle
        self.max_charge_w = self.max_discharge_w = 0.0
        self.energy_wh = self.capacity_wh = self.reserve_wh = self.target_wh = 0.0
        self._below_reserve_reported = False
        if vehicle:
            self.capacity_wh = vehicle.capacity_kwh * 1000
            self.energy_wh = self.capacity_wh * vehicle.soc_pct / 100
            self.reserve_wh = self.capacity_wh * vehicle.min_soc_pct / 100
            self.target_wh = min(self.capacity_wh, self.energy_wh + vehicle.need_kwh * 1000)
            self.departure = time.time() + vehicle.depart_in_s if departure is None else departure
            self.max_charge_w = vehicle.max_kw * 1000
            if self.version == "2.1" and vehicle.bidirectional:
                discharge_kw = vehicle.max_kw if vehicle.max_discharge_kw is None else vehicle.max_discharge_kw
                self.max_discharge_w = discharge_kw * 1000

    # ------------------------------------------------------------------ vehicles coming and going

    async def plug_in(self, vehicle, departure=None):
        """A vehicle arrives at the empty connector: while connected, StatusNotification
        Occupied, TransactionEvent Started and (unless notify_needs is False)
        NotifyEVChargingNeeds with `departure` (Unix time; default now + depart_in_s);
        while not, all of that as soon as the station has (re)booted."""
        if self.vehicle is not None:
            raise RuntimeError(f"{self.charger_id} already has a vehicle plugged in")
        self._take_vehicle(vehicle, departure)
        if self._live and not self._plugged:  # else the session's own _operate plugs it in
            try:
                await self._plug_in()
            except websockets.exceptions.ConnectionClosed:
                if self.transaction_id is None:
                    self._plugged = False  # not started yet: the next connection starts it

    async def unplug(self):
        """The vehicle leaves: TransactionEvent Ended (EVDeparted / EVDisconnected), its
        TxProfiles are dropped (OCPP deletes them with the transaction), StatusNotification
        Available. Returns the energy in its battery at that moment (Wh)."""
        if self.vehicle is None:
            return 0.0
        if not self._plugging.is_set():
            await self._plugging.wait()  # a plug-in still talking to the CSMS: Started before Ended
        await self.end_transaction("EVDeparted", "EVDisconnected")
        energy_wh = self.energy_wh
        self._plugged = False
        self._profiles = {pid: entry for pid, entry in self._profiles.items()
                          if entry[0].get("charging_profile_purpose") != "TxProfile"}
        self._take_vehicle(None)
        if self._live:
            try:
                await self._status("Available")
            except websockets.exceptions.ConnectionClosed:
                pass  # the next connection's StatusNotification says Available
        return energy_wh

    def power_now_w(self):
        """Integrates the battery up to now and returns the power it draws from now on
        (W at the outlet, negative while discharging)."""
        self._advance()
        return self.power_w

    # ------------------------------------------------------------------ recording

    @property
    def soc_pct(self):
        return 100 * self.energy_wh / self.capacity_wh if self.capacity_wh else 0.0

    def _log(self, **record):
        if self.log:
            self.log.write(charger=self.charger_id, **record)

    def record_call(self, action, payload):
        self.received.append((time.time(), action, payload))
        self._log(action=action, payload=payload)
        if action == "SetChargingProfile" and self.version == "2.0.1":
            self._check_profile_201(payload)

    def record_error(self, frame):
        kind = "CALLERROR" if frame[0] == 4 else "CALLRESULTERROR"
        fields = (frame + [None, None, None])[2:5]
        error = dict(zip(("code", "description", "details"), fields), id=frame[1], kind=kind)
        self.call_errors.append({"t": time.time(), **error})
        self._log(call_error=error)

    def _violation(self, text):
        self.violations.append(text)
        self._log(violation=text)

    def _check_profile_201(self, payload):
        try:
            periods = [period for schedule in payload["chargingProfile"]["chargingSchedule"]
                       for period in schedule["chargingSchedulePeriod"]]
        except (KeyError, TypeError):
            return  # malformed: the package's schema check answers it
        for period in periods:
            if not isinstance(period, dict):
                continue
            for field in sorted(set(period) - PERIOD_FIELDS_201):
                self._violation(f"SetChargingProfile to a 2.0.1 station has `{field}`, "
                                f"which OCPP 2.0.1 does not have: {period}")
            limit = period.get("limit")
            if isinstance(limit, (int, float)) and limit < 0:
                self._violation(f"SetChargingProfile to a 2.0.1 station has a negative "
                                f"limit ({limit}): 2.0.1 cannot discharge")

    # ------------------------------------------------------------------ lifecycle

    def stop(self):
        """End run(): closes the socket; the transaction is left as it is."""
        self._stopping.set()
        self._commands.put_nowait("stop")

    async def run(self, duration=None):
        """Connect, boot, simulate; returns after stop(), `duration` seconds,
        disconnect_after, or when a (re)connection could not be made in time."""
        loop = asyncio.get_running_loop()
        if duration is not None:
            self._timers.append(loop.call_later(duration, self.stop))
        boot_reason = "PowerUp"
        try:
            while not self._stopping.is_set():
                connection = await self._connect()
                if connection is None:
                    break
                outcome = await self._session(connection, boot_reason)
                if outcome in ("stop", "disconnect"):
                    break
                if outcome == "lost":
                    boot_reason = None if self._booted else boot_reason
                    continue
                self._power_cycle()
                if outcome == "reboot":
                    boot_reason = "PowerUp"
                    await self._pause(REBOOT_PAUSE)
                else:
                    boot_reason = "RemoteReset"
        finally:
            for timer in self._timers:
                timer.cancel()

    def _power_cycle(self):
        """State that a station loses when it restarts."""
        self._booted = self._plugged = False
        self.transaction_id, self._seq = None, 0
        self._profiles = {}     # id -> (profile dict in snake_case, Unix time received)
        self._tick = None
        self._below_reserve_reported = False
        self.power_w = 0.0

    async def _pause(self, seconds):
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _connect(self):
        kwargs = {"subprotocols": [SUBPROTOCOLS[self.version]], "open_timeout": RESPONSE_TIMEOUT}
        if self.password is not None:
            token = base64.b64encode(f"{self.charger_id}:{self.password}".encode()).decode()
            kwargs[HEADERS_ARG] = {"Authorization": f"Basic {token}"}
        if self.ssl is not None:
            kwargs["ssl"] = self.ssl
        deadline, delay = time.monotonic() + self.connect_timeout, 0.2
        while not self._stopping.is_set():
            try:
                connection = await ws_connect(self.url, **kwargs)
            except (OSError, asyncio.TimeoutError, websockets.exceptions.InvalidHandshake) as e:
                self._log(event="connect_failed", error=f"{type(e).__name__}: {e}")
            else:
                if connection.subprotocol == SUBPROTOCOLS[self.version]:
                    self._log(event="connected", subprotocol=connection.subprotocol)
                    return connection
                self._violation(f"the CSMS did not select subprotocol {SUBPROTOCOLS[self.version]} "
                                f"(selected: {connection.subprotocol})")
                await connection.close()
            if time.monotonic() + delay > deadline:
                self.gave_up = True
                self._log(event="gave_up", after_s=self.connect_timeout)
                return None
            await self._pause(delay)
            delay = min(delay * 2, 5.0)
        return None

    async def _session(self, connection, boot_reason):
        """One socket's life; returns why it ended: lost, stop, disconnect, reboot, reset."""
        self._station = (_Station21 if self.version == "2.1" else _Station201)(self, connection)
        reader = asyncio.create_task(self._station.start())
        worker = asyncio.create_task(self._operate(boot_reason))
        command = asyncio.create_task(self._commands.get())
        try:
            await asyncio.wait({reader, worker, command}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._live = False
            for task in (reader, worker, command):
                task.cancel()
            await connection.close()
            self._log(event="disconnected")
        for task in (reader, worker):  # a bug in here must not pass for a lost connection
            if task.done() and not task.cancelled() and task.exception() is not None \
                    and not isinstance(task.exception(), websockets.exceptions.ConnectionClosed):
                raise task.exception()
        return command.result() if command.done() and not command.cancelled() else "lost"

    async def _call(self, name, **fields):
        """A CALL through the ocpp package; None when answered with a CALLERROR (recorded by
        record_error), with a CALLRESULT that fails the schema (a violation), or not at all."""
        station = self._station
        unique_id = str(uuid.uuid4())
        try:
            return await station.call(getattr(station._call, name)(**fields), suppress=False,
                                      unique_id=unique_id)
        except (OCPPError, UnknownCallErrorCodeError) as e:
            if station.last_answer_id != unique_id:
                raise  # the package refused our own CALL: a bug in this file, not the CSMS's
            if not (self.call_errors and self.call_errors[-1]["id"] == unique_id):
                self._violation(f"the CSMS's answer to {name} does not match the schema: {e}")
            return None
        except asyncio.TimeoutError:
            self._log(event="timeout", action=name)
            return None

    async def _operate(self, boot_reason):
        if boot_reason:
            await self._boot(boot_reason)
            if self.send_invalid:
                await self._send_invalid()
            await self._status("Available")
        else:
            await self._status("Occupied" if self._plugged else "Available")
        self._live = True  # from here on, plug_in() talks to the CSMS itself
        if self.vehicle and not self._plugged:
            await self._plug_in()
        await asyncio.gather(self._heartbeats(), self._meter_loop())

    async def _boot_notification(self, reason):
        dt = self._station.datatypes
        result = await self._call("BootNotification", reason=reason, charging_station=dt.ChargingStationType(
            model="SimulatedChargePoint", vendor_name="MicrogridEdgeTests"))
        if result and result.status == "Accepted":
            self.heartbeat_interval = result.interval
        return result

    async def _boot(self, reason):
        while True:
            result = await self._boot_notification(reason)
            status = result.status if result else None
            if status == "Accepted":
                break
            self._log(event="boot_not_accepted", status=status)
            await asyncio.sleep(max(result.interval if result else 0, 1))
        self._booted = True
        self._log(event="booted", reason=reason, interval=result.interval)
        if not self.boots:
            loop = asyncio.get_running_loop()
            if self.disconnect_after is not None:
                self._timers.append(loop.call_later(self.disconnect_after, self._commands.put_nowait, "disconnect"))
            if self.reboot_after is not None:
                self._timers.append(loop.call_later(self.reboot_after, self._commands.put_nowait, "reboot"))
        self.boots.append(reason)

    async def _send_invalid(self):
        self._invalid_sent += 1
        unique_id = f"bad-{self._invalid_sent}"
        try:
            reply = await self._station.send_raw([2, unique_id, "NotifyEVChargingNeeds", {"evseId": 1}])
        except asyncio.TimeoutError:
            self._violation(f"no answer to the schema-invalid CALL {unique_id} "
                            f"within {RESPONSE_TIMEOUT:g} s")
            return
        if reply[0] == 3:
            self._violation(f"the CSMS answered the schema-invalid CALL {unique_id} "
                            f"(NotifyEVChargingNeeds without chargingNeeds) with a CALLRESULT: {reply}")

    async def _status(self, status):
        await self._call("StatusNotification", timestamp=utc_now(), connector_status=status,
                         evse_id=1, connector_id=1)

    async def _plug_in(self):
        self._plugged = True
        self._plugging = asyncio.Event()
        try:
            await self._status("Occupied")
            self.transaction_id = f"{self.charger_id}-{uuid.uuid4().hex[:8]}"
            self.transactions.append(self.transaction_id)
            self._seq, self._tick = 0, None
            self._advance()
            dt = self._station.datatypes
            await self._transaction_event(
                "Started", "CablePluggedIn", meter=False, evse=dt.EVSEType(id=1, connector_id=1),
                id_token=dt.IdTokenType(id_token=self.vehicle.name or f"EV-{self.charger_id}", type="Local"))
            if self.notify_needs:
                await self._call("NotifyEVChargingNeeds", evse_id=1, charging_needs=self._charging_needs())
        finally:
            self._plugging.set()

    def _charging_needs(self):
        dt, e = self._station.datatypes, self.energy_wh
        dc = dt.DCChargingParametersType(
            ev_max_power=round(self.max_charge_w),
            ev_max_current=round(self.max_charge_w / self.vehicle.voltage_v),
            ev_max_voltage=round(self.vehicle.voltage_v),
            energy_amount=round(max(0.0, self.target_wh - e)),
            state_of_charge=round(self.soc_pct),
            ev_energy_capacity=round(self.capacity_wh))
        departure = datetime.fromtimestamp(self.departure, timezone.utc)
        departure = departure.isoformat(timespec="seconds").replace("+00:00", "Z")
        if self.version == "2.0.1":
            return dt.ChargingNeedsType(requested_energy_transfer="DC", departure_time=departure,
                                        dc_charging_parameters=dc)
        v2x = dt.V2XChargingParametersType(
            min_charge_power=0, max_charge_power=round(self.max_charge_w),
            min_discharge_power=0, max_discharge_power=round(self.max_discharge_w),
            ev_min_energy_request=round(self.reserve_wh - e),
            ev_target_energy_request=round(self.target_wh - e),
            ev_max_energy_request=round(self.capacity_wh - e))
        return dt.ChargingNeedsType(
            requested_energy_transfer="DC_BPT" if self.max_discharge_w > 0 else "DC",
            departure_time=departure, control_mode="DynamicControl", mobility_needs_mode="EVCC",
            dc_charging_parameters=dc, v2x_charging_parameters=v2x)

    async def _heartbeats(self):
        while True:  # the interval can change (SetVariables, a triggered BootNotification)
            await asyncio.sleep(self.heartbeat_interval if self.heartbeat_interval > 0 else 1)
            if self.heartbeat_interval > 0:
                await self._call("Heartbeat")

    async def _meter_loop(self):
        while True:
            await asyncio.sleep(self.meter_interval)
            self._advance()
            if self.transaction_id is not None:
                await self._transaction_event("Updated", "MeterValuePeriodic")

    async def _transaction_event(self, event_type, trigger, meter=True, charging_state=None,
                                 stopped_reason=None, **fields):
        dt = self._station.datatypes
        if charging_state is None and event_type == "Updated":
            charging_state = "Charging" if self.power_w else "SuspendedEVSE"
        elif charging_state is None and event_type == "Started":
            charging_state = "EVConnected"
        info = dt.TransactionType(transaction_id=self.transaction_id, charging_state=charging_state,
                                  stopped_reason=stopped_reason)
        seq, self._seq = self._seq, self._seq + 1
        await self._call("TransactionEvent", event_type=event_type, timestamp=utc_now(),
                         trigger_reason=trigger, seq_no=seq, transaction_info=info,
                         meter_value=[self._meter_value()] if meter else None, **fields)

    def _meter_value(self):
        dt = self._station.datatypes
        power, soc = self.power_w, self.soc_pct
        if self.nonsense:
            power, soc = (-10 if power >= 0 else 10) * self.max_charge_w, 250.0

        def sample(value, measurand, unit, location="Outlet"):
            return dt.SampledValueType(value=round(value, 1), measurand=measurand, context="Sample.Periodic",
                                       location=location, unit_of_measure=dt.UnitOfMeasureType(unit=unit, multiplier=0))
        return dt.MeterValueType(timestamp=utc_now(), sampled_value=[
            sample(power, "Power.Active.Import", "W"),
            sample(soc, "SoC", "Percent", location="EV"),
            sample(self.import_wh, "Energy.Active.Import.Register", "Wh"),
            sample(self.export_wh, "Energy.Active.Export.Register", "Wh")])

    async def end_transaction(self, trigger, reason):
        if self.transaction_id is None:
            return
        self._advance()
        try:
            await self._transaction_event("Ended", trigger, stopped_reason=reason)
        except websockets.exceptions.ConnectionClosed:
            pass  # the station still ends it; the CSMS learns from the next connection
        self.transaction_id = None
        self._advance()

    async def reset(self):
        await self.end_transaction("ResetCommand", "ImmediateReset")
        self._commands.put_nowait("reset")

    async def send_triggered(self, message):
        try:
            if message == "BootNotification":
                await self._boot_notification("Triggered")
            elif message == "Heartbeat":
                await self._call("Heartbeat")
            elif message == "StatusNotification":
                await self._status("Occupied" if self._plugged else "Available")
            elif message == "MeterValues":
                self._advance()
                await self._call("MeterValues", evse_id=1, meter_value=[self._meter_value()])
            elif message == "TransactionEvent" and self.transaction_id is not None:
                self._advance()
                await self._transaction_event("Updated", "Trigger")
        except websockets.exceptions.ConnectionClosed:
            pass  # answered by the next connection's StatusNotification

    # ------------------------------------------------------------------ the battery

    def _advance(self):
        """Integrate the battery up to now at the power applied so far, then apply the
        profile in effect now."""
        now = time.monotonic()
        if self._tick is not None and self.transaction_id is not None:
            wh = self.power_w * (now - self._tick) / 3600  # at the outlet
            efficiency = self.vehicle.efficiency if self.vehicle else 1.0
            stored = wh * efficiency if wh > 0 else wh / efficiency
            self.energy_wh = min(max(self.energy_wh + stored, 0.0), self.capacity_wh)
            self.import_wh += max(wh, 0.0)
            self.export_wh += max(-wh, 0.0)
            if self.energy_wh < self.reserve_wh and self.power_w < 0 and not self._below_reserve_reported:
                self._below_reserve_reported = True
                self._violation(f"discharged below the announced reserve of {self.reserve_wh:.0f} Wh "
                                f"(now {self.energy_wh:.0f} Wh)")
        self._tick = now
        power = self._wanted_power() if self.transaction_id is not None else 0.0
        if (power > 0 and self.energy_wh >= self.capacity_wh) or (power < 0 and self.energy_wh <= 0):
            power = 0.0
        self.power_w = power

    def _period_in_effect(self):
        """(period, chargingRateUnit, seconds since the schedule started, all its periods by
        startPeriod), or None when no profile applies now."""
        if not self._profiles:
            return None
        profile, received_at = max(self._profiles.values(), key=lambda pr: (pr[0]["stack_level"], pr[1]))
        schedule = profile["charging_schedule"][0]
        start = parse_time(schedule["start_schedule"]) if schedule.get("start_schedule") else received_at
        elapsed = time.time() - start
        if elapsed < 0 or (schedule.get("duration") is not None and elapsed >= schedule["duration"]):
            return None
        periods = sorted(schedule["charging_schedule_period"], key=lambda p: p["start_period"])
        started = [p for p in periods if p["start_period"] <= elapsed]
        return (started[-1], schedule["charging_rate_unit"], elapsed, periods) if started else None

    @staticmethod
    def _watts(value, unit, period):
        return value * AMPS_TO_WATTS * (period.get("number_phases") or 3) if unit == "A" else value

    def _wanted_power(self):
        found = self._period_in_effect()
        if found is None:
            return self.max_charge_w
        period, unit = found[0], found[1]
        mode = period.get("operation_mode")
        if mode == "Idle":
            return 0.0
        if mode == "CentralSetpoint" and period.get("setpoint") is not None:
            low, high = -self.max_discharge_w, self.max_charge_w
            if period.get("discharge_limit") is not None:
                low = max(low, self._watts(period["discharge_limit"], unit, period))
            if period.get("limit") is not None:
                high = min(high, self._watts(period["limit"], unit, period))
            return min(max(self._watts(period["setpoint"], unit, period), low), high)
        if period.get("limit") is None:
            return self.max_charge_w
        return min(self.max_charge_w, max(0.0, self._watts(period["limit"], unit, period)))

    def set_profile(self, profile):
        if self.reject_profiles:
            return "Rejected"
        if self.max_discharge_w == 0 and self.version == "2.1":
            for schedule in profile["charging_schedule"]:
                for period in schedule["charging_schedule_period"]:
                    if (period.get("setpoint") or 0) < 0:
                        self._violation(f"negative setpoint {period['setpoint']} for a vehicle "
                                        f"that cannot discharge")
        self._advance()
        self._profiles[profile["id"]] = (profile, time.time())
        self._advance()
        return "Accepted"

    def clear_profiles(self, profile_id, criteria):
        def matches(pid, profile):
            if profile_id is not None:
                return pid == profile_id
            return all(criteria.get(key) in (None, profile.get(key))
                       for key in ("charging_profile_purpose", "stack_level"))
        doomed = [pid for pid, (profile, _) in self._profiles.items() if matches(pid, profile)]
        self._advance()
        for pid in doomed:
            del self._profiles[pid]
        self._advance()
        return "Accepted" if doomed else "Unknown"

    def composite_schedule(self, duration, evse_id, unit):
        """The schedule from now on, in `unit` (default: the profile's, or W)."""
        dt = self._station.datatypes
        found = self._period_in_effect()
        if found is None:
            periods, own_unit = [{"start_period": 0, "limit": self.max_charge_w}], "W"
        else:
            period, own_unit, elapsed, all_periods = found
            periods = [dict(p, start_period=max(0, math.ceil(p["start_period"] - elapsed)))
                       for p in all_periods if p["start_period"] >= period["start_period"]]
            periods = [p for p in periods if p["start_period"] < duration]
        unit = unit or own_unit
        keep = ("limit", "number_phases") if self.version == "2.0.1" else \
            ("limit", "setpoint", "discharge_limit", "operation_mode", "number_phases")
        out = []
        for p in periods:
            q = {"start_period": p["start_period"]}
            for key in keep:
                if p.get(key) is None:
                    continue
                value = p[key]
                if key in ("limit", "setpoint", "discharge_limit") and unit != own_unit:
                    watts = self._watts(value, own_unit, p)
                    value = watts if unit == "W" else watts / (AMPS_TO_WATTS * (p.get("number_phases") or 3))
                q[key] = round(value, 1) if isinstance(value, float) else value
            out.append(q)
        return dt.CompositeScheduleType(evse_id=evse_id, duration=duration, schedule_start=utc_now(),
                                        charging_rate_unit=unit, charging_schedule_period=out)

    # ------------------------------------------------------------------ device model

    def _variables(self):
        """(component, variable) -> (current value, setter or None when read-only)."""
        def set_heartbeat(value):
            self.heartbeat_interval = int(value)

        def set_meter(value):
            if value <= 0:
                raise ValueError("interval must be positive")
            self.meter_interval = value
        return {("OCPPCommCtrlr", "HeartbeatInterval"): (str(self.heartbeat_interval), set_heartbeat),
                ("SampledDataCtrlr", "TxUpdatedInterval"): (f"{self.meter_interval:g}", set_meter),
                ("SmartChargingCtrlr", "Enabled"): ("true", None)}

    def _lookup(self, item):
        """(status, entry) for a GetVariables / SetVariables item."""
        variables = self._variables()
        key = (item["component"]["name"], item["variable"]["name"])
        if key[0] not in {component for component, _ in variables}:
            return "UnknownComponent", None
        if key not in variables:
            return "UnknownVariable", None
        if item.get("attribute_type", "Actual") != "Actual":
            return "NotSupportedAttributeType", None
        return "Accepted", variables[key]

    def get_variable(self, item):
        status, entry = self._lookup(item)
        return self._station.datatypes.GetVariableResultType(
            attribute_status=status, component=item["component"], variable=item["variable"],
            attribute_type=item.get("attribute_type", "Actual"),
            attribute_value=entry[0] if entry else None)

    def set_variable(self, item):
        status, entry = self._lookup(item)
        if entry is not None:
            try:
                if entry[1] is None:
                    raise ValueError("read-only")
                entry[1](float(item["attribute_value"]))
            except ValueError:
                status = "Rejected"
        return self._station.datatypes.SetVariableResultType(
            attribute_status=status, component=item["component"], variable=item["variable"],
            attribute_type=item.get("attribute_type", "Actual"))

    def summary(self):
        return {"charger": self.charger_id, "version": self.version, "boots": self.boots,
                "transactions": self.transactions, "power_w": round(self.power_w, 1),
                "energy_wh": round(self.energy_wh, 1), "soc": round(self.soc_pct, 2),
                "received": len(self.received), "call_errors": self.call_errors,
                "violations": self.violations, "gave_up": self.gave_up}


# ---------------------------------------------------------------------- command line

def _names(values):
    return {name for value in values or [] for name in value.split(",") if name}


def _timed(values):
    """["CP1=10", …] -> {"CP1": 10.0, …}"""
    out = {}
    for value in values or []:
        name, _, seconds = value.partition("=")
        out[name] = float(seconds)
    return out


def _arguments(argv):
    p = argparse.ArgumentParser(description="Simulated OCPP 2.1 / 2.0.1 charging stations.")
    p.add_argument("--url", required=True, help="CSMS base URL, e.g. ws://127.0.0.1:8887/ocpp")
    p.add_argument("--charger", action="append", default=[], metavar="ID:VERSION[:PASSWORD]",
                   help="a station; VERSION is 2.1 or 2.0.1 (repeatable)")
    p.add_argument("--fleet", type=int, default=0, metavar="N", help="add 2.1 stations BENCH-001..N")
    p.add_argument("--password", help="password of the --fleet stations")
    v = Vehicle()
    p.add_argument("--vehicle-kwh", type=float, default=v.capacity_kwh)
    p.add_argument("--soc", type=float, default=v.soc_pct, help="initial SoC, %%")
    p.add_argument("--need-kwh", type=float, default=v.need_kwh, help="energy to add by departure")
    p.add_argument("--depart-in", type=float, default=v.depart_in_s, help="seconds to departure")
    p.add_argument("--max-kw", type=float, default=v.max_kw)
    p.add_argument("--max-discharge-kw", type=float, help="default: --max-kw")
    p.add_argument("--min-soc", type=float, default=v.min_soc_pct, help="reserve, %%")
    p.add_argument("--voltage", type=float, default=v.voltage_v)
    p.add_argument("--no-vehicle", action="store_true", help="stations without a vehicle")
    p.add_argument("--meter-interval", type=float, default=1.0)
    p.add_argument("--log", help="JSON-lines file to append to")
    p.add_argument("--duration", type=float, help="seconds to run (default: until SIGINT/SIGTERM)")
    p.add_argument("--connect-timeout", type=float, default=30.0)
    p.add_argument("--ca", help="CA file for wss://")
    for flag in ("reject-profiles", "nonsense", "send-invalid", "unidirectional"):
        p.add_argument(f"--{flag}", action="append", metavar="ID[,ID…]")
    for flag in ("disconnect-after", "reboot-after"):
        p.add_argument(f"--{flag}", action="append", metavar="ID=SECONDS")
    p.add_argument("--verbose", action="store_true", help="log every frame (ocpp package, stderr)")
    args = p.parse_args(argv)

    args.stations = []
    for spec in args.charger:
        parts = spec.split(":", 2)
        if len(parts) < 2 or parts[1] not in SUBPROTOCOLS:
            p.error(f"--charger {spec!r}: expected ID:VERSION[:PASSWORD], VERSION 2.1 or 2.0.1")
        args.stations.append((parts[0], parts[1], parts[2] if len(parts) == 3 else None))
    args.stations += [(f"BENCH-{i:03d}", "2.1", args.password) for i in range(1, args.fleet + 1)]
    if not args.stations:
        p.error("no station: give --charger or --fleet")
    known = {station[0] for station in args.stations}
    for flag in ("reject_profiles", "nonsense", "send_invalid", "unidirectional",
                 "disconnect_after", "reboot_after"):
        named = _timed(getattr(args, flag)) if flag.endswith("after") else _names(getattr(args, flag))
        if set(named) - known:
            p.error(f"--{flag.replace('_', '-')}: unknown station(s) {sorted(set(named) - known)}")
        setattr(args, flag, named)
    return args


async def _main(args):
    log = JsonLines(args.log) if args.log else None
    ssl_context = ssl_module.create_default_context(cafile=args.ca) if args.ca else None
    peers = []
    for charger_id, version, password in args.stations:
        vehicle = None if args.no_vehicle else Vehicle(
            capacity_kwh=args.vehicle_kwh, soc_pct=args.soc, need_kwh=args.need_kwh,
            depart_in_s=args.depart_in, max_kw=args.max_kw, max_discharge_kw=args.max_discharge_kw,
            min_soc_pct=args.min_soc, voltage_v=args.voltage,
            bidirectional=charger_id not in args.unidirectional)
        peers.append(SimulatedChargePoint(
            charger_id, args.url, version=version, password=password, vehicle=vehicle,
            meter_interval=args.meter_interval, reject_profiles=charger_id in args.reject_profiles,
            nonsense=charger_id in args.nonsense, send_invalid=charger_id in args.send_invalid,
            disconnect_after=args.disconnect_after.get(charger_id),
            reboot_after=args.reboot_after.get(charger_id), ssl=ssl_context,
            connect_timeout=args.connect_timeout, log=log))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: [peer.stop() for peer in peers])
    try:
        await asyncio.gather(*(peer.run(duration=args.duration) for peer in peers))
    finally:
        if log:
            log.close()
    for peer in peers:
        print(json.dumps(peer.summary()), flush=True)
    return 1 if any(peer.gave_up for peer in peers) else 0


def main(argv=None):
    args = _arguments(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    # The package logs every CALLERROR it sends or receives with a traceback; the log file
    # has them already, and tracebacks on stderr would read as crashes.
    logging.getLogger("ocpp").setLevel(logging.INFO if args.verbose else logging.CRITICAL)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())

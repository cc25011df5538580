"""The appliance as the site's CSMS, against charge points written with the Python `ocpp`
package (ocpp_peers.py) and, in Local Controller mode, under a CSMS written with it too
(ocpp_upstream.py). The daemon is the release binary, on the town hall's simulated building,
with two of its six chargers on OCPP: C1 speaks 2.1, C2 2.0.1.

The building is in a demand-response event from the first minute, so the controller wants
every vehicle that can to discharge: a 2.1 charger must be told to, a 2.0.1 charger never.
"""
import base64
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ocpp_site import PASSWORDS, Daemon, free_port, site_config

HERE = Path(__file__).resolve().parent
PEERS = HERE / "ocpp_peers.py"
UPSTREAM = HERE / "ocpp_upstream.py"


@pytest.fixture
def daemon_factory(tmp_path):
    made = []

    def make(config):
        d = Daemon(config, config.parent)
        made.append(d)
        return d
    yield make
    for d in made:
        d.stop()


def run_peers(tmp_path, port, *args, duration=25, name="peers"):
    """Runs ocpp_peers.py to the end; returns (per-charger summaries, log lines)."""
    log = tmp_path / f"{name}.jsonl"
    cmd = [sys.executable, str(PEERS), "--url", f"ws://127.0.0.1:{port}/ocpp", "--log", str(log),
           "--duration", str(duration), "--connect-timeout", "15", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    summaries = {}
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            s = json.loads(line)
            summaries[s["charger"]] = s
    lines = [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []
    assert summaries, f"ocpp_peers.py printed no summary (exit {p.returncode}):\n{p.stderr[-3000:]}"
    return summaries, lines


def profiles(lines, charger):
    return [l["payload"] for l in lines if l.get("charger") == charger and l.get("action") == "SetChargingProfile"]


def periods(profile):
    return profile["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"]


VEHICLE = ["--vehicle-kwh", "200", "--soc", "80", "--need-kwh", "10", "--depart-in", "28800", "--max-kw", "15",
           "--min-soc", "30"]


def test_a_21_charger_is_told_to_discharge_and_a_201_charger_never(tmp_path, daemon_factory):
    port = free_port()
    daemon = daemon_factory(site_config(tmp_path, port))
    summaries, lines = run_peers(tmp_path, port, "--charger", f"C1:2.1:{PASSWORDS['C1']}",
                                 "--charger", f"C2:2.0.1:{PASSWORDS['C2']}", *VEHICLE)
    c1, c2 = profiles(lines, "C1"), profiles(lines, "C2")
    assert c1 and c2, f"both chargers should get charging profiles; C1 {len(c1)}, C2 {len(c2)}"
    setpoints = [p["setpoint"] for prof in c1 for p in periods(prof)]
    assert all(p.get("operationMode") == "CentralSetpoint" for prof in c1 for p in periods(prof))
    assert min(setpoints) < -1000, f"C1 (2.1) should be told to discharge in the event; setpoints {setpoints}"
    assert summaries["C1"]["power_w"] < 0, f"C1's vehicle should be discharging at the end: {summaries['C1']}"
    assert summaries["C1"]["energy_wh"] < 160000, "C1's battery should have given energy"
    for prof in c2:
        for p in periods(prof):
            assert p["limit"] >= 0 and "setpoint" not in p and "operationMode" not in p, (
                f"C2 (2.0.1) was sent a discharge or a 2.1-only field: {p}")
    assert summaries["C2"]["violations"] == [], summaries["C2"]["violations"]
    assert summaries["C1"]["call_errors"] == [] and summaries["C2"]["call_errors"] == []
    out = daemon.stop()
    assert "EV-C1 plugged into C1" in out and "EV-C2 plugged into C2" in out
    assert "charger connected" in out and "ocpp=ocpp2.0.1" in out


def upgrade(port, path, headers):
    """A raw WebSocket upgrade request: the HTTP status line and body of the answer."""
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
    for k, v in headers.items():
        request += f"{k}: {v}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall((request + "\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        # The body (the reason) may come in a later segment than the head.
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            chunk = s.recv(4096)
            if not chunk:
                break
            body += chunk
    return (head + b"\r\n\r\n" + body).decode(errors="replace")


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_only_configured_chargers_with_their_password_and_an_ocpp_subprotocol_get_in(tmp_path, daemon_factory):
    port = free_port()
    daemon = daemon_factory(site_config(tmp_path, port))
    good = {"Authorization": basic("C1", PASSWORDS["C1"]), "Sec-WebSocket-Protocol": "ocpp2.1"}
    ok = upgrade(port, "/ocpp/C1", good)
    assert ok.startswith("HTTP/1.1 101") and "ocpp2.1" in ok, ok
    wrong = upgrade(port, "/ocpp/C1", {**good, "Authorization": basic("C1", "guess")})
    assert wrong.startswith("HTTP/1.1 401") and "wrong username or password" in wrong, wrong
    other = upgrade(port, "/ocpp/C2", good)  # C1's credentials for C2
    assert other.startswith("HTTP/1.1 401"), other
    unknown = upgrade(port, "/ocpp/C9", {**good, "Authorization": basic("C9", "x")})
    assert unknown.startswith("HTTP/1.1 404") and "not in this site's configuration" in unknown, unknown
    v16 = upgrade(port, "/ocpp/C1", {**good, "Sec-WebSocket-Protocol": "ocpp1.6"})
    assert v16.startswith("HTTP/1.1 400") and "ocpp2.0.1" in v16, v16
    both = upgrade(port, "/ocpp/C1", {**good, "Sec-WebSocket-Protocol": "ocpp2.0.1, ocpp2.1"})
    assert "Sec-WebSocket-Protocol: ocpp2.1" in both.replace("sec-websocket-protocol", "Sec-WebSocket-Protocol"), both
    out = daemon.stop()
    assert "charger refused" in out


def test_a_message_that_breaks_its_schema_gets_a_callerror_and_the_charger_carries_on(tmp_path, daemon_factory):
    port = free_port()
    daemon = daemon_factory(site_config(tmp_path, port))
    summaries, lines = run_peers(tmp_path, port, "--charger", f"C1:2.1:{PASSWORDS['C1']}", "--send-invalid", "C1",
                                 *VEHICLE, duration=12)
    errors = summaries["C1"]["call_errors"]
    assert errors, f"the invalid NotifyEVChargingNeeds should have been answered with a CALLERROR: {summaries['C1']}"
    text = json.dumps(errors)
    assert "OccurrenceConstraintViolation" in text and "chargingNeeds" in text, text
    assert profiles(lines, "C1"), "the charger should still be managed after its bad message"
    out = daemon.stop()
    assert "OCPP call refused" in out and "control loop stopped cleanly" in out


def test_chargers_that_reject_lie_or_vanish_are_not_relied_on_and_raise_alarms(tmp_path, daemon_factory):
    port = free_port()
    daemon = daemon_factory(site_config(tmp_path, port))
    summaries, lines = run_peers(tmp_path, port, "--charger", f"C1:2.1:{PASSWORDS['C1']}",
                                 "--charger", f"C2:2.0.1:{PASSWORDS['C2']}", "--reject-profiles", "C1",
                                 "--nonsense", "C2", *VEHICLE, duration=15)
    out = daemon.text()
    assert "charger not relied on" in out
    assert "charger=C1" in out and "rejected 2 charging profiles in a row" in out, out[-3000:]
    assert "reports a state of charge of 250 %" in out or "on a charger rated" in out, out[-3000:]
    assert "alarm charger-C1 raised" in out and "alarm charger-C2 raised" in out, "each raises its alarm"
    # The site stayed within its limits: the simulated plant saw no violation.
    out = daemon.stop()
    assert "the simulated site saw no safety violation" in out


def test_a_charger_that_disconnects_goes_offline_and_one_that_reboots_comes_back(tmp_path, daemon_factory):
    port = free_port()
    daemon = daemon_factory(site_config(tmp_path, port))
    summaries, lines = run_peers(tmp_path, port, "--charger", f"C1:2.1:{PASSWORDS['C1']}",
                                 "--charger", f"C2:2.0.1:{PASSWORDS['C2']}", "--disconnect-after", "C2=5",
                                 "--reboot-after", "C1=6", *VEHICLE, duration=16)
    assert summaries["C1"]["boots"].count("PowerUp") >= 2 or len(summaries["C1"]["boots"]) >= 2, summaries["C1"]
    out = daemon.stop()
    assert "charger=C2 [Chargers] charger disconnected" in out or ("charger disconnected" in out and "C2" in out)
    assert "charger=C2 why=not connected" in out
    assert "alarm charger-C2 raised" in out, "a charger that went away raises its alarm"
    # After its reboot C1 got a profile for its new transaction.
    txs = summaries["C1"]["transactions"]
    assert len(txs) >= 2, summaries["C1"]
    assert any(p["chargingProfile"].get("transactionId") == txs[-1] for p in profiles(lines, "C1")), (
        f"C1 should be managed again after its reboot (transaction {txs[-1]})")


def start_upstream(tmp_path):
    log = tmp_path / "upstream.jsonl"
    p = subprocess.Popen([sys.executable, str(UPSTREAM), "--log", str(log)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line.startswith("READY"), f"ocpp_upstream.py did not start: {line} {p.stderr.read()[-2000:]}"
    _, port, control = line.split()
    return p, int(port), int(control), log


def control(port, method, path, body=None):
    data = json.dumps(body or {}).encode()
    req = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode() + data
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(req)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    head, _, body = out.decode().partition("\r\n\r\n")
    return int(head.split()[1]), json.loads(body or "{}")


def test_local_controller_relays_to_the_platform_and_keeps_its_setpoints_within_the_site(tmp_path, daemon_factory):
    upstream, up_port, control_port, up_log = start_upstream(tmp_path)
    try:
        port = free_port()
        daemon = daemon_factory(site_config(tmp_path, port, upstream=f"ws://127.0.0.1:{up_port}"))
        peers = subprocess.Popen(
            [sys.executable, str(PEERS), "--url", f"ws://127.0.0.1:{port}/ocpp", "--log", str(tmp_path / "p.jsonl"),
             "--duration", "40", "--charger", f"C1:2.1:{PASSWORDS['C1']}", *VEHICLE],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # The platform sees the charger through the appliance.
        deadline = time.time() + 20
        while time.time() < deadline:
            status, chargers = control(control_port, "GET", "/chargers")
            if chargers.get("C1", {}).get("transaction_id"):
                break
            time.sleep(0.5)
        assert chargers.get("C1", {}).get("version") == "2.1", f"the platform should see C1 on 2.1: {chargers}"
        # It asks for 80 kW of charging from a 15 kW charger in the middle of the event:
        # accepted as a request, carried out within the charger's rating.
        status, reply = control(control_port, "POST", "/push", {"charger": "C1", "setpoint_w": 80000})
        assert status == 200 and reply.get("status") == "Accepted", (status, reply)
        time.sleep(4)
        # Then it asks the charger for a variable: relayed, and the charger's own answer comes back.
        status, reply = control(control_port, "POST", "/call", {"charger": "C1", "action": "GetVariables",
                                "payload": {"getVariableData": [{"component": {"name": "EVSE"},
                                                                 "variable": {"name": "Power"}}]}})
        assert status == 200 and "getVariableResult" in reply, (status, reply)
        # The platform goes away: its request lapses and the site's own control resumes.
        killed = time.time()
        upstream.terminate()
        upstream.wait(10)
        out, err = peers.communicate(timeout=60)
        lines = [json.loads(l) for l in (tmp_path / "p.jsonl").read_text().splitlines()]
        sent = [(prof_line["t"], p["setpoint"]) for prof_line in lines
                if prof_line.get("charger") == "C1" and prof_line.get("action") == "SetChargingProfile"
                for p in periods(prof_line["payload"])]
        assert sent, "C1 should have received profiles"
        assert all(-15000 <= kw <= 15000 for _, kw in sent), (
            f"no setpoint beyond C1's 15 kW rating, whatever the platform asked: {sent}")
        assert any(kw >= 14000 for t, kw in sent if t < killed), f"the platform's request should be followed: {sent}"
        # (The request lapses the moment the link drops: the next profile may come within
        # milliseconds of the kill.)
        assert any(kw < 0 for t, kw in sent if t > killed), (
            f"after the platform is gone the site's own control (discharge in the event) resumes: {sent}")
        calls = [json.loads(l) for l in up_log.read_text().splitlines()]
        actions = {c.get("action") for c in calls if c.get("charger") == "C1"}
        assert {"BootNotification", "TransactionEvent", "NotifyEVChargingNeeds"} <= actions, actions
        text = daemon.stop()
        assert "upstream setpoint" in text and "upstream CSMS unreachable" in text, text[-3000:]
        assert "the simulated site saw no safety violation" in text
    finally:
        if upstream.poll() is None:
            upstream.kill()


def test_the_appliance_stops_promptly_with_chargers_connected(tmp_path, daemon_factory):
    port = free_port()
    daemon = daemon_factory(site_config(tmp_path, port))
    log = tmp_path / "p.jsonl"
    peers = subprocess.Popen(
        [sys.executable, str(PEERS), "--url", f"ws://127.0.0.1:{port}/ocpp", "--log", str(log), "--duration", "60",
         "--connect-timeout", "2", "--charger", f"C1:2.1:{PASSWORDS['C1']}", "--charger",
         f"C2:2.0.1:{PASSWORDS['C2']}", *VEHICLE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 20
        while time.time() < deadline and not (log.exists() and "SetChargingProfile" in log.read_text()):
            time.sleep(0.2)
        assert "SetChargingProfile" in log.read_text(), "the chargers should be managed before the stop"
        started = time.time()
        daemon.proc.terminate()
        daemon.proc.wait(20)
        took = time.time() - started
        out = daemon.stop()
        assert took < 10, f"SIGTERM with two chargers connected took {took:.1f} s"
        assert "control loop stopped cleanly" in out, out[-2000:]
    finally:
        peers.kill()
        peers.communicate()


@pytest.mark.parametrize("change, key, words", [
    (("{id: C2, password: c2-secret-password-2026", "{id: C9, password: c2-secret-password-2026"),
     "ocpp.chargers[1].id", "not one of the site's chargers"),
    (("{id: C2, password: c2-secret-password-2026", "{id: C2, password: ''"), "ocpp.chargers[1].password", "must be set"),
    (("{id: C2, password: c2-secret-password-2026", "{id: C1, password: c2-secret-password-2026"),
     "ocpp.chargers[1].id", "listed twice"),
    (("heartbeat_seconds: 10", "heartbeat_seconds: 10\n  tls_key: key.pem"), "ocpp.tls_certificate",
     "needs both"),
    (("offline_after_seconds: 25", "offline_after_seconds: 5"), "ocpp.offline_after_seconds", "longer than"),
    (("speed: 1 ", "speed: 60 "), "plant.speed", "real time"),
])
def test_a_broken_ocpp_section_is_refused_naming_its_key(tmp_path, change, key, words):
    config = site_config(tmp_path, 8887)
    text = config.read_text()
    assert change[0] in text, change[0]
    config.write_text(text.replace(change[0], change[1], 1))
    from mge_helpers import BINARY, CLEAN_ENV
    p = subprocess.run([str(BINARY), "check-config", str(config)], capture_output=True, text=True, env=CLEAN_ENV,
                       timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode != 0, f"check-config accepted a broken ocpp section:\n{out}"
    assert key in out and words in out, f"expected the error to name {key} ({words}):\n{out}"


def test_check_config_describes_the_ocpp_chargers(tmp_path):
    from mge_helpers import BINARY, CLEAN_ENV
    config = site_config(tmp_path, 8887, upstream="wss://platform.example/ocpp")
    p = subprocess.run([str(BINARY), "check-config", str(config)], capture_output=True, text=True, env=CLEAN_ENV,
                       timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ocpp: C1, C2 connect to ws://127.0.0.1:8887/ocpp/<id>" in p.stdout, p.stdout
    assert "Local Controller under wss://platform.example/ocpp" in p.stdout, p.stdout


def test_security_profile_2_over_tls(tmp_path, daemon_factory):
    """wss:// with the appliance's certificate (self-signed here, trusted by the charger as its CA)."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem"), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    port = free_port()
    daemon = daemon_factory(site_config(tmp_path, port, ocpp_extra="  tls_certificate: cert.pem\n  tls_key: key.pem\n"))
    log = tmp_path / "tls.jsonl"
    p = subprocess.run([sys.executable, str(PEERS), "--url", f"wss://127.0.0.1:{port}/ocpp", "--ca",
                        str(tmp_path / "cert.pem"), "--log", str(log), "--duration", "8", "--connect-timeout", "10",
                        "--charger", f"C1:2.1:{PASSWORDS['C1']}", *VEHICLE], capture_output=True, text=True, timeout=90)
    lines = [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []
    assert profiles(lines, "C1"), f"C1 should be managed over wss://:\n{p.stdout}\n{p.stderr[-2000:]}"
    # Plain ws:// to the TLS port gets nowhere.
    plain = subprocess.run([sys.executable, str(PEERS), "--url", f"ws://127.0.0.1:{port}/ocpp", "--duration", "3",
                            "--connect-timeout", "2", "--charger", f"C2:2.0.1:{PASSWORDS['C2']}", "--no-vehicle"],
                           capture_output=True, text=True, timeout=60)
    assert '"gave_up": true' in plain.stdout, plain.stdout
    out = daemon.stop()
    assert "wss://127.0.0.1" in out and "charger=C1 ocpp=ocpp2.1" in out

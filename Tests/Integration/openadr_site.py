"""The shipped configuration as the field site, with its OpenADR 2.0b VEN pointed at the
openleadr 0.5.36 test VTN (openadr_vtn.py), for Tests/Integration/test_openadr_ven.py.

No pytest at import. What runs, per OpenADRSite:
- the VTN: `python3 openadr_vtn.py --control-port 0 --log vtn.jsonl …` as a subprocess
  (VTNProcess), driven over its HTTP control endpoint; its records are read back with
  GET /messages. A subprocess keeps openleadr's asyncio loop and the 10 MiB hostile bodies
  out of the test process (and its GIL), and a peer that dies cannot take pytest with it;
- field_run.FieldRun's pieces: a real mosquitto with the shipped ACL, the central
  program's reference receiver, the panel (paho), and, unless building=False, the building
  emulator (meter, the four buses on OCPP 2.1 charge points, GPIO over the emulated
  backend);
- the daemon on rootfs-overlay/etc/microgrid-edge/site.yaml, changed only by environment
  overrides: FieldRun's (addresses, ports, paths, 1-minute demand intervals) plus the whole
  `openadr:` section (MGE_OPENADR__…), with poll_seconds 1 and plain http:// allowed by
  MICROGRID_EDGE_TEST_OPENADR_PLAIN_HTTP=1 (set on TLS too, for the 1 s polls).

    vtn = VTNProcess(tmp / "vtn", report_granularity=5)
    site = OpenADRSite(tmp, vtn)                     # building=True: the emulated school
    site.start()                                     # the VTN, the building, the daemon
    site.wait_link("registered", 30)
    event_id = vtn.add_event(signal="SIMPLE", level=2, notice_s=40, duration_s=90)
    vtn.wait_message("oadrCreatedEvent", where=answers(event_id, "optIn", 0))
    site.restart_daemon(); site.stop()

Certificates(dir) makes a test PKI with the openssl command line: a CA, the VTN's server
certificate for 127.0.0.1, the VEN's client certificate, and a second CA with a VEN
certificate of its own (the one the VTN must refuse).
"""
import json
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from field_run import FieldRun
from field_site import free_port
from mge_helpers import REPO

HERE = Path(__file__).resolve().parent
VTN_SCRIPT = HERE / "openadr_vtn.py"
PLAIN_HTTP_VARIABLE = "MICROGRID_EDGE_TEST_OPENADR_PLAIN_HTTP"
SITE_ZONE = ZoneInfo("America/Chicago")       # the shipped site.yaml's time.zone


# ----------------------------------------------------------------------------- times

def utc_iso(t):
    """Unix seconds -> ISO 8601 UTC with Z, as the VTN takes them."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_utc(text):
    """An ISO 8601 UTC time ("…Z", with or without fractions) -> Unix seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def parse_site_local(text):
    """A site-local time as panels show it ("2026-12-03T07:28:11", America/Chicago) -> Unix
    seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=SITE_ZONE).timestamp()


# ----------------------------------------------------------------------------- PKI

class Certificates:
    """A test PKI made with `openssl`: ca.pem (the CA the VTN and the VEN trust), vtn.pem /
    vtn.key (the VTN's server certificate, subjectAltName IP:127.0.0.1), ven.pem / ven.key
    (the VEN's client certificate), other-ca.pem and rogue.pem / rogue.key (a VEN
    certificate from another CA)."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ca("ca", "Microgrid Edge test utility CA")
        self._leaf("vtn", "ca", "127.0.0.1", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        self._leaf("ven", "ca", "mge-test-ven", "extendedKeyUsage=clientAuth\n")
        self._ca("other-ca", "Some other CA")
        self._leaf("rogue", "other-ca", "mge-test-ven", "extendedKeyUsage=clientAuth\n")

    def path(self, name):
        return self.dir / name

    @property
    def ca(self):
        return self.dir / "ca.pem"

    def cert(self, name):
        return self.dir / f"{name}.pem"

    def key(self, name):
        return self.dir / f"{name}.key"

    def _openssl(self, *args):
        proc = subprocess.run(["openssl", *args], cwd=self.dir, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)} failed:\n{proc.stderr}")

    def _ca(self, name, cn):
        self._openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                      "-out", f"{name}.pem", "-days", "3", "-subj", f"/CN={cn}",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def _leaf(self, name, ca, cn, extensions):
        ext = self.dir / f"{name}.ext"
        ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                       + extensions)
        self._openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                      "-subj", f"/CN={cn}")
        self._openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                      "-CAcreateserial", "-out", f"{name}.pem", "-days", "3", "-extfile", ext.name)


# ----------------------------------------------------------------------------- the VTN

class VTNControlError(RuntimeError):
    pass


class VTNProcess:
    """openadr_vtn.py as a subprocess with its control endpoint (see its docstring)."""

    def __init__(self, directory, *, down=False, port=None, tls=None, ven_fingerprint=None,
                 report_granularity=None, ven_id=None, vtn_id="MGE-TEST-VTN", poll_freq=1,
                 reject_registration=False, hostile=None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "vtn.jsonl"
        self.err_path = self.dir / "vtn.err"
        self.tls = tls                      # a Certificates, or None
        self.down = down
        self.port = port or (free_port() if down else 0)
        self.vtn_id = vtn_id
        self.args = [sys.executable, str(VTN_SCRIPT), "--port", str(self.port), "--control-port", "0",
                     "--log", str(self.log_path), "--vtn-id", vtn_id, "--poll-freq", str(poll_freq)]
        if down:
            self.args.append("--down")
        if tls is not None:
            self.args += ["--tls", "--cert", str(tls.cert("vtn")), "--key", str(tls.key("vtn")),
                          "--ca", str(tls.ca)]
        if ven_fingerprint:
            self.args += ["--ven-fingerprint", ven_fingerprint]
        if report_granularity is not None:
            self.args += ["--report-granularity", str(report_granularity)]
        if ven_id:
            self.args += ["--ven-id", ven_id]
        if reject_registration:
            self.args.append("--reject-registration")
        if hostile:
            self.args += ["--hostile", hostile]
        self.proc = None
        self.control_port = None
        self._records = []
        self._lock = threading.Lock()

    # life cycle
    def start(self, timeout=20):
        if self.proc is not None:
            return self
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self._err, stdin=subprocess.DEVNULL,
                                     cwd=str(REPO), text=True)
        lines = queue.Queue()

        def read():
            for line in self.proc.stdout:
                lines.put(line)
        threading.Thread(target=read, name="vtn-stdout", daemon=True).start()
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            line = ""
        if not line.startswith("READY "):
            self.close()
            raise RuntimeError(f"the VTN peer did not say READY within {timeout} s: {line!r}\n{self.stderr()}")
        _, port, control_port = line.split()
        self.port, self.control_port = int(port), int(control_port)
        return self

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.records()
            except Exception:  # noqa: BLE001 - closing must not fail
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def stderr(self):
        try:
            return self.err_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/OpenADR2/Simple/2.0b"

    # control
    def _http(self, method, path, body=None):
        data = json.dumps(body or {}).encode() if method == "POST" else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.control_port}/{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise VTNControlError(f"VTN control {method} /{path} {body}: HTTP {e.code} {e.read().decode(errors='replace')}")

    def control(self, command, **body):
        return self._http("POST", command, body)

    def add_event(self, **fields):
        """POST /event; returns the eventID."""
        return self.control("event", **fields)["event_id"]

    def modify_event(self, event_id, **fields):
        """POST /event/modify; returns the new modificationNumber."""
        return self.control("event/modify", event_id=event_id, **fields)["modification_number"]

    def cancel_event(self, event_id):
        return self.control("event/cancel", event_id=event_id)["modification_number"]

    def request_report(self, **fields):
        return self.control("report", **fields)["report_request_id"]

    def set_hostile(self, kind, count=None, delay_s=15.0):
        return self.control("hostile", kind=kind, count=count, delay_s=delay_s)

    def stop_vtn(self):
        """The VTN port down (the peer keeps its state and the control endpoint)."""
        return self.control("stop")

    def start_vtn(self):
        return self.control("start")

    def state(self):
        return self._http("GET", "state")

    # records
    def records(self):
        """Every exchange so far (the peer's records, oldest first); once the peer is
        stopped, the ones read before (close() reads the last ones first)."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                fresh = self._http("GET", f"messages?since={len(self._records)}")
                self._records.extend(fresh)
            return list(self._records)

    def mark(self):
        """An index into records(): what comes after it is new."""
        return len(self.records())

    def messages(self, message_type=None, since=0, where=None):
        return [r for r in self.records()[since:]
                if (message_type is None or r.get("type") == message_type) and (where is None or where(r))]

    def wait_message(self, message_type, where=None, timeout=15.0, since=0, count=1):
        """The matching records once `count` came; AssertionError naming what did come."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(message_type, since, where)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                seen = [(r.get("type") or r.get("path"), r.get("status")) for r in self.records()[since:]][-40:]
                raise AssertionError(f"expected {count} {message_type} at the VTN within {timeout} s, got "
                                     f"{len(found)}; received meanwhile (last 40): {seen}")
            time.sleep(0.1)

    def describe(self, last=30):
        try:
            recs = self.records()
        except Exception as e:  # noqa: BLE001 - a description must not fail
            return f"--- VTN: records unavailable ({e}) ---\n{self.stderr()}"
        lines = [f"{r['t']:.1f} {r.get('service')} {r.get('type')} -> {r.get('status')} {r.get('response_type')}"
                 f"{' hostile=' + r['hostile'] if r.get('hostile') else ''}" for r in recs[-last:]]
        return f"--- VTN (last {last} of {len(recs)} exchanges) ---\n" + "\n".join(lines) + "\n" + self.stderr()


def event_responses(record):
    """The eventResponses of an oadrCreatedEvent record: [{"event_id", "modification_number",
    "opt_type", "response_code", …}]."""
    return ((record or {}).get("payload") or {}).get("event_responses") or []


def answers(event_id, opt=None, modification=None, code=None):
    """A `where` for wait_message("oadrCreatedEvent"): an answer for this event (and opt,
    modificationNumber, responseCode when given)."""
    def match(record):
        return any(r.get("event_id") == event_id and (opt is None or r.get("opt_type") == opt)
                   and (modification is None or r.get("modification_number") == modification)
                   and (code is None or int(r.get("response_code") or 0) == code)
                   for r in event_responses(record))
    return match


def report_intervals(record):
    """The intervals of an oadrUpdateReport record, read from its XML (namespace prefixes
    aside): [(report_request_id, dtstart Unix seconds, duration_s or None, {rID: value})],
    the intervals of one report that start together merged (a VEN may give each rID an
    interval of its own, as openleadr's does, or put them all in one)."""
    merged = {}
    for request_id, start, duration, values in _report_intervals(record):
        key = (request_id, start)
        if key in merged:
            merged[key][3].update(values)
        else:
            merged[key] = (request_id, start, duration, dict(values))
    return list(merged.values())


def report_payloads(record):
    """[(report_request_id, dtstart, rID)] of every value an oadrUpdateReport carries."""
    return [(request_id, start, r_id) for request_id, start, _, values in _report_intervals(record)
            for r_id in values]


def _report_intervals(record):
    from lxml import etree
    out = []
    try:
        root = etree.fromstring(record["xml"].encode(), etree.XMLParser(resolve_entities=False, no_network=True))
    except (etree.XMLSyntaxError, KeyError, ValueError):
        return out

    def local(el):
        return etree.QName(el).localname

    def first(el, name):
        return next((e for e in el.iter() if isinstance(e.tag, str) and local(e) == name), None)

    for report in (e for e in root.iter() if isinstance(e.tag, str) and local(e) == "oadrReport"):
        request_id = first(report, "reportRequestID")
        request_id = request_id.text if request_id is not None else None
        for interval in (e for e in report.iter() if isinstance(e.tag, str) and local(e) == "interval"):
            start = first(interval, "date-time")
            duration = next((e for e in interval.iter() if isinstance(e.tag, str) and local(e) == "duration"
                             and (e.text or "").strip()), None)
            values = {}
            for payload in (e for e in interval.iter() if isinstance(e.tag, str) and local(e) == "oadrReportPayload"):
                r_id, value = first(payload, "rID"), first(payload, "value")
                if r_id is not None and value is not None:
                    values[r_id.text] = float(value.text)
            out.append((request_id, parse_utc(start.text) if start is not None else None,
                        _duration_seconds(duration.text) if duration is not None and duration.text else None,
                        values))
    return out


def _duration_seconds(text):
    """A plain ISO 8601 duration (PnDTnHnMnS) -> seconds (None if it is not one)."""
    import re
    m = re.fullmatch(r"(-)?P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?)?", text.strip())
    if not m:
        return None
    sign, d, h, mi, s = m.groups()
    total = int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)
    return -total if sign else total


# ----------------------------------------------------------------------------- the site

class OpenADRSite(FieldRun):
    """FieldRun with the VEN: `openadr` gives keys of the openadr: section (beyond vtn_url,
    which is the VTN's, and poll_seconds 1), as MGE_OPENADR__<KEY> overrides. building=False:
    no emulator (no meter, no chargers, the GPIO backend as shipped, so absent)."""

    def __init__(self, directory, vtn, building=True, openadr=None, test_variable=True, extra_env=None):
        super().__init__(directory, outage=None)
        self.vtn = vtn
        self.building = building
        self.openadr = {"poll_seconds": 1, "ven_name": "example-school-ven", **(openadr or {})}
        # The test variable allows plain http:// and polls under 10 s: set on TLS too.
        self.test_variable = test_variable
        self.extra_env = dict(extra_env or {})
        self.daemons = []

    def env(self, **extra):
        env = super().env(MGE_CENTRAL__GATHER_SECONDS="1", **extra)
        if not self.building:
            env.pop("MGE_GPIO__BACKEND")
            env.pop("MGE_GPIO__EMULATOR_SOCKET")
        env["MGE_OPENADR__VTN_URL"] = self.vtn.url
        for key, value in self.openadr.items():
            if value is not None:
                env[f"MGE_OPENADR__{key.upper()}"] = str(value)
        if self.test_variable:
            env[PLAIN_HTTP_VARIABLE] = "1"
        env.update({k: str(v) for k, v in self.extra_env.items()})
        return env

    def start(self):
        self.vtn.start()
        self.start_building(emulator=self.building)
        return self.start_daemon()

    def start_daemon(self, directory=None, env=None):
        daemon = super().start_daemon(directory or self.dir / f"daemon-{len(self.daemons) + 1}", env)
        self.daemons.append(daemon)
        return daemon

    def restart_daemon(self):
        """SIGTERM, then the same configuration and state files again; returns (exit status
        of the first, Unix time it was stopped)."""
        rc = self.daemon.stop()
        stopped = time.time()
        self.start_daemon()
        return rc, stopped

    def stop(self):
        try:
            return super().stop()
        finally:
            self.vtn.close()

    # what panels see
    @staticmethod
    def openadr_of(state):
        return (state or {}).get("openadr") or {}

    @staticmethod
    def event_of(state, event_id):
        return next((e for e in OpenADRSite.openadr_of(state).get("events") or [] if e.get("id") == event_id), None)

    def wait_state(self, predicate, timeout, since_time=None):
        """The latest panel state, or a later one, for which predicate holds (states older
        than Unix time `since_time`, by their `time`, are skipped); None after `timeout`."""
        def check(state):
            if since_time is not None and parse_utc(state["time"]) < since_time:
                return False
            return predicate(state)
        deadline = time.monotonic() + timeout
        while True:
            found = self.panel.wait_state(check, min(1.0, max(0.0, deadline - time.monotonic())))
            if found is not None or time.monotonic() >= deadline:
                return found
            if self.daemon is not None and not self.daemon.running:
                raise AssertionError(f"the daemon exited (status {self.daemon.proc.returncode}):\n"
                                     f"{self.daemon.stderr()[-2000:]}")

    def wait_link(self, link, timeout, since_time=None):
        return self.wait_state(lambda s: self.openadr_of(s).get("link") == link, timeout, since_time)

    def wait_vehicles(self, count=3, timeout=60):
        """A state with `count` chargers online with a vehicle holding energy to spare."""
        def ready(state):
            plugged = [c for c in state.get("chargers") or [] if c.get("online") and c.get("vehicle")
                       and c["vehicle"]["energy_kwh"] > 25]
            return len(plugged) >= count
        return self.wait_state(ready, timeout)

    def states_between(self, start, end):
        return [s for s in self.states() if s and "time" in s and start <= parse_utc(s["time"]) < end]

    def samples_between(self, start, end):
        """The emulator's truth samples (what the chargers really did) in [start, end)."""
        return [s for s in self.truth_records("sample") if start <= s["wall"] < end]

    def rss_mib(self):
        kib = self.daemon.rss_kib() if self.daemon else None
        return None if kib is None else kib / 1024

    def control_steps(self):
        """The daemon's control step count from /metrics (None if it cannot be read)."""
        try:
            return self.scrape_metrics().get(("microgrid_edge_control_step_duration_seconds_count", ()))
        except Exception:  # noqa: BLE001 - the caller judges None
            return None

    def openadr_lines(self, after=0, level=None):
        return [line for line in self.daemon.lines(level=level, after=after) if "OpenADR" in line]

    def describe(self):
        out = super().describe()
        return out + "\n" + self.vtn.describe()

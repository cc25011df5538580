"""A real Home Assistant for the integration tests, driven through its REST API.

No pytest at import. The venv is made by scripts/setup-home-assistant (called by
scripts/setup); `unavailable_reason()` says why a test cannot run here (no Python 3.13 on
the machine, or setup not run), so the test can skip with that reason.

    ha = HomeAssistant(tmp / "ha")
    ha.start()                       # hass -c <dir>, waits for its HTTP API
    ha.onboard()                     # creates the owner through the onboarding API: token
    ha.add_mqtt(broker.host, broker.port, "homeassistant", "homeassistant-pw")
    ha.states()                      # GET /api/states
    ha.call("number", "set_value", entity_id="number.x", value=250)
    ha.stop()

Home Assistant is started with --skip-pip: whatever its integrations need was installed
by the setup script, and the test needs no network.
"""
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from mqtt_broker import free_port

HA_VERSION = "2025.4.4"
VENV = Path(os.environ.get("MGE_HA_VENV") or "/var/cache/microgrid-edge/ha-venv")
MARKER = VENV / f".microgrid-edge-ha-{HA_VERSION}"
HASS = VENV / "bin" / "hass"
SETUP = Path(__file__).resolve().parents[2] / "scripts" / "setup-home-assistant"
START_TIMEOUT = 90.0


def _python_313():
    """A Python 3.13 interpreter on this machine, found as the setup script finds it."""
    candidates = []
    pyenv = Path(os.environ.get("PYENV_ROOT") or "/root/.pyenv") / "versions"
    if pyenv.is_dir():
        candidates += sorted(pyenv.glob("3.13*/bin/python3"))
    for d in os.environ.get("PATH", "").split(os.pathsep):
        candidates.append(Path(d) / "python3.13")
    return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


def unavailable_reason():
    """None when Home Assistant is installed; otherwise (can_run, why not): can_run is
    False where no Python 3.13 exists (the test is skipped), True where it could have
    been installed but was not (the test fails: a broken install must not pass quietly)."""
    if MARKER.is_file() and HASS.is_file():
        return None
    if _python_313() is None:
        return (False, f"no Python 3.13 on this machine (Home Assistant {HA_VERSION} needs it; Debian 12 "
                       f"has 3.11): the test against a real Home Assistant cannot run here")
    return (True, f"Home Assistant {HA_VERSION} is not installed in {VENV}: run {SETUP.name} "
                  f"(scripts/test runs it)")


CONFIGURATION = """\
# Written by Tests/Integration/home_assistant.py: the least Home Assistant that serves
# the REST API, onboarding and config flows. MQTT is added as a config entry, by REST.
homeassistant:
  name: Test building
  latitude: 41.88
  longitude: -87.63
  elevation: 180
  unit_system: metric
  time_zone: America/Chicago
  country: US
  currency: USD
http:
  server_host: 127.0.0.1
  server_port: {port}
logger:
  default: warning
  logs:
    homeassistant.components.mqtt: info
"""


class HomeAssistant:
    def __init__(self, directory):
        self.directory = Path(directory)
        self.config_dir = self.directory / "config"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.client_id = f"{self.base}/"
        self.token = None
        self.proc = None
        self.output = None
        (self.config_dir / "configuration.yaml").write_text(CONFIGURATION.format(port=self.port))

    @property
    def log_path(self):
        return self.config_dir / "home-assistant.log"

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self, chars=4000):
        rc = None if self.proc is None else self.proc.poll()
        state = "not started" if self.proc is None else ("running" if rc is None else f"exited with {rc}")
        return f"home assistant ({state}), log (last {chars} chars):\n{self.log()[-chars:]}"

    # -- process ---------------------------------------------------------------------

    def start(self, timeout=START_TIMEOUT):
        self.output = open(self.directory / "hass.out", "wb")
        self.proc = subprocess.Popen([str(HASS), "-c", str(self.config_dir), "--skip-pip"],
                                     stdout=self.output, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Home Assistant exited at start\n{self.describe()}")
            try:
                # The onboarding API answers without a token: HA is up once it does.
                self.request("GET", "/api/onboarding", auth=False, timeout=2)
                return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.5)
        raise TimeoutError(f"Home Assistant did not answer on {self.base} within {timeout} s\n"
                           f"{self.describe()}")

    def stop(self, timeout=30.0):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.output:
            self.output.close()

    # -- REST ------------------------------------------------------------------------

    def request(self, method, path, body=None, auth=True, timeout=10, form=False):
        headers = {}
        data = None
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                text = r.read().decode()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path} -> HTTP {e.code}: {e.read().decode(errors='replace')[:500]}")
        return json.loads(text) if text else None

    def onboard(self):
        """The owner account, created the way the first browser visit creates it; then an
        access token from the authorization code onboarding returns."""
        created = self.request("POST", "/api/onboarding/users", auth=False, body={
            "client_id": self.client_id, "name": "Facilities", "username": "facilities",
            "password": "facilities-pw", "language": "en"})
        token = self.request("POST", "/auth/token", auth=False, form=True, body={
            "grant_type": "authorization_code", "code": created["auth_code"], "client_id": self.client_id})
        self.token = token["access_token"]

    def add_mqtt(self, host, port, username, password):
        """The MQTT integration, added through its config flow as in Settings > Devices &
        services > Add integration > MQTT. Returns the created entry's result."""
        step = self.request("POST", "/api/config/config_entries/flow",
                            body={"handler": "mqtt", "show_advanced_options": False})
        answers = {"broker": host, "port": port, "username": username, "password": password}
        for _ in range(5):
            if step.get("type") == "create_entry":
                return step
            if step.get("type") == "menu":
                # Not seen in 2025.4 without a supervisor; pick the manual broker set-up.
                step = self.request("POST", f"/api/config/config_entries/flow/{step['flow_id']}",
                                    body={"next_step_id": "broker"})
                continue
            if step.get("type") != "form":
                raise RuntimeError(f"unexpected MQTT config flow step: {step}")
            wanted = {f["name"] for f in step.get("data_schema", [])}
            body = {k: v for k, v in answers.items() if k in wanted}
            step = self.request("POST", f"/api/config/config_entries/flow/{step['flow_id']}", body=body)
            if step.get("errors"):
                raise RuntimeError(f"MQTT config flow refused {body}: {step['errors']}")
        raise RuntimeError(f"the MQTT config flow did not finish: {step}")

    def states(self):
        return {s["entity_id"]: s for s in self.request("GET", "/api/states")}

    def state(self, entity_id):
        try:
            return self.request("GET", f"/api/states/{entity_id}")
        except RuntimeError as e:
            if "HTTP 404" in str(e):
                return None
            raise

    def wait_state(self, entity_id, predicate, timeout=10.0):
        """The entity's state object once predicate(state object) holds, or None."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.state(entity_id)
            if s is not None and predicate(s):
                return s
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.2)

    def call(self, domain, service, **data):
        return self.request("POST", f"/api/services/{domain}/{service}", body=data)

"""A site with chargers on OCPP, for the tests, the demo and the bench: the town hall's
simulated building with some of its chargers (or extra ones) connecting over OCPP, a
demand-response event running from the first minute (so the controller wants every vehicle
that can to discharge), and the daemon started and stopped around it.

No pytest at import: scripts/demo_ocpp.py and bench/ocpp_bench.py use it too.
"""
import socket
import subprocess
import time

from mge_helpers import BINARY, CLEAN_ENV, CONFIGS, CRASH_MARKERS, copy_scenario, read_json, write_json

START_MINUTE = 277260  # 2023-07-12 13:00, a July weekday afternoon
PASSWORDS = {"C1": "c1-secret-password-2026", "C2": "c2-secret-password-2026"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def site_config(directory, port, passwords=PASSWORDS, upstream=None, extra_chargers=(), ocpp_extra="",
                status_every=5):
    """Writes the configuration (and the scenario copy it follows) into `directory`.
    `passwords`: charger id -> password, for the chargers on OCPP. `extra_chargers`: ids of
    chargers added to the site beyond the town hall's six (each 15 kW both ways)."""
    scenario = copy_scenario("townhall-fleet-baltimore", directory / "scenario")
    meta = read_json(scenario / "scenario.json")
    meta["dr_events"] = [{"id": "afternoon-event", "notify_minute": START_MINUTE - 60,
                          "start_minute": START_MINUTE - 15, "end_minute": START_MINUTE + 180}]
    write_json(scenario / "scenario.json", meta)
    text = (CONFIGS / "example-townhall.yaml").read_text()
    text = text[:text.index("\ngpio:")]
    # Absolute: the loader resolves a relative path from the configuration's folder.
    text = text.replace("../scenarios/townhall-fleet-baltimore", str(scenario.resolve()))
    text = text.replace("start_minute: 451665", f"start_minute: {START_MINUTE}")
    text = text.replace("enter_service_delay_seconds: 300", "enter_service_delay_seconds: 3")
    text = text.replace("enter_service_ramp_seconds: 300", "enter_service_ramp_seconds: 0")
    text = text.replace("status_every_seconds: 900", f"status_every_seconds: {status_every}")
    if extra_chargers:
        extra = "".join(f"  - {{id: {cid}, max_charge_kw: 15, max_discharge_kw: 15, efficiency: 0.93, "
                        f"grid_forming: false}}\n" for cid in extra_chargers)
        text = text.replace("\nvehicles:", extra + "\nvehicles:", 1)
    chargers = "\n".join(f"    - {{id: {cid}, password: {pw}, upstream_password: up-{pw}}}"
                         for cid, pw in passwords.items())
    text += f"""
ocpp:
  host: 127.0.0.1
  port: {port}
  heartbeat_seconds: 10
  offline_after_seconds: 25
{ocpp_extra}  chargers:
{chargers}
"""
    if upstream:
        text += f"  upstream: {{url: '{upstream}', reconnect_seconds: 1}}\n"
    path = directory / "site.yaml"
    path.write_text(text)
    return path


class Daemon:
    """`microgrid-edge run` on a configuration, its output in a file; ready once its OCPP
    endpoint listens."""

    def __init__(self, config, directory, binary=BINARY):
        self.log_path = directory / "daemon.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([str(binary), "run", "--config", str(config)], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=CLEAN_ENV)
        deadline = time.time() + 30
        while "OCPP endpoint ready" not in self.text():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited:\n{self.text()[-3000:]}")
            if time.time() > deadline:
                raise RuntimeError(f"no 'OCPP endpoint ready' in 30 s:\n{self.text()[-3000:]}")
            time.sleep(0.1)

    def text(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        """SIGTERM, then the whole output; raises if it shows a crash."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()
        out = self.text()
        for marker in CRASH_MARKERS:
            if marker in out:
                raise AssertionError(f"the daemon crashed ({marker}):\n{out[-3000:]}")
        return out

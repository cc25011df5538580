#!/usr/bin/env python3
"""The demo's MQTT part: the appliance on a real mosquitto broker with the shipped ACL.

A meter gateway (user meter-main) publishes the school's building load; a panel (user
panel-lobby) watches the retained state and sends commands, as a wall tablet or Home
Assistant would. It runs in real time, about a minute, and narrates what happens.

    scripts/demo_mqtt.py BINARY OUT_DIR
"""
import csv
import re
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "Integration"))
from mqtt_broker import Broker  # noqa: E402  (the tests' broker: mosquitto with the shipped ACL)

PREFIX = "microgrid-edge/demo-school"
METER_TOPIC = "building/meters/main/power"
SCENARIO = REPO / "scenarios" / "school-buses-chicago"
# Sunday 2023-01-01 01:00: the four buses are parked on their grid-forming chargers.
START_MINUTE = 60


def say(text):
    print(f"  {text}", flush=True)


def config_text(broker, password_file):
    text = (REPO / "config" / "example-school.yaml").read_text()
    text = text.replace("../scenarios", str(REPO / "scenarios"))
    # The demo is a minute long: the utility counts as stable after 10 s, not IEEE 1547's
    # 300 s, so the vehicles may discharge (and island) within it.
    text = re.sub(r"enter_service_delay_seconds: *\d+", "enter_service_delay_seconds: 10", text)
    return text + f"""
mqtt:
  port: {broker.port}
  username: microgrid-edge
  password_file: {password_file}
  topic_prefix: {PREFIX}
  state_every_seconds: 2
meters:
  - id: main
    role: building_load
    topic: {METER_TOPIC}
    value: $.power
    unit: W
    stale_after_seconds: 4
"""


def building_kw_at(minute):
    with open(SCENARIO / "load.csv") as f:
        rows = [(int(r["minute"]), float(r["building_kw"])) for r in csv.DictReader(f)]
    return min(rows, key=lambda r: abs(r[0] - minute))[1]


class Watcher:
    """The panel's view: the latest retained state, and replies by request id."""

    def __init__(self, client):
        self.client = client
        self.lock = threading.Condition()
        self.state, self.status, self.replies = None, None, {}
        client.on_message = self.on_message
        for t in (f"{PREFIX}/state", f"{PREFIX}/status", f"{PREFIX}/reply/panel-lobby"):
            client.subscribe(t, qos=1)

    def on_message(self, client, userdata, msg):
        with self.lock:
            if msg.topic.endswith("/state"):
                self.state = json.loads(msg.payload)
            elif msg.topic.endswith("/status"):
                self.status = msg.payload.decode()
            else:
                reply = json.loads(msg.payload)
                self.replies[reply.get("request_id")] = reply
            self.lock.notify_all()

    def wait(self, predicate, timeout=20):
        with self.lock:
            return self.lock.wait_for(lambda: predicate(self), timeout)

    def command(self, command, **fields):
        request_id = f"demo-{command}-{time.monotonic_ns()}"
        self.client.publish(f"{PREFIX}/command/panel-lobby",
                            json.dumps({"request_id": request_id, "command": command, **fields}), qos=1)
        self.wait(lambda w: request_id in w.replies, 10)
        reply = self.replies.get(request_id, {"outcome": "no reply", "reason": ""})
        say(f"panel-lobby → {command} {json.dumps(fields) if fields else ''}: "
            f"{reply['outcome']}, \"{reply['reason']}\"")
        return reply


def kw(value):
    """A power from the state, which is null where it does not apply (no target off the grid)."""
    return "none" if value is None else f"{value:.0f} kW"


def describe(state):
    discharging = {c["id"]: c["setpoint_kw"] for c in state["chargers"] if c["setpoint_kw"] < -0.05}
    return (f"mode {state['mode']}, building {state['building_load_kw']:.0f} kW, grid {state['grid_import_kw']:.0f} kW, "
            f"target {kw(state['demand_target_kw'])} ({state['demand_target_source']}), "
            f"discharging {discharging or 'none'}, alarms {[a['id'] for a in state['alarms'] if a['active']]}")


def main():
    binary, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp, Broker(tmp) as broker:
        broker.start()
        say(f"mosquitto on 127.0.0.1:{broker.port} with rootfs-overlay's ACL; users: {', '.join(broker.users)}")
        password_file = Path(tmp) / "appliance-password"
        password_file.write_text(broker.users["microgrid-edge"] + "\n")
        config = Path(tmp) / "site.yaml"
        config.write_text(config_text(broker, password_file))
        log_path = out / "mqtt-daemon.log"
        with open(log_path, "w") as log:
            daemon = subprocess.Popen([str(binary), "run", "--config", str(config), "--start-minute",
                                       str(START_MINUTE)], stdout=log, stderr=subprocess.STDOUT)
        panel = Watcher(broker.client("panel-lobby"))
        meter = broker.client("meter-main")
        base_w = building_kw_at(START_MINUTE) * 1000
        feeding = threading.Event()
        feeding.set()
        stop = threading.Event()

        def gateway():
            i = 0
            while not stop.is_set():
                if feeding.is_set():
                    meter.publish(METER_TOPIC, json.dumps({"power": base_w + 1500 * (i % 3)}), qos=0)
                i += 1
                time.sleep(0.5)

        threading.Thread(target=gateway, daemon=True).start()
        try:
            if not panel.wait(lambda w: w.status == "online" and w.state and w.state["inputs_fresh"]):
                raise SystemExit(f"the appliance did not come up; its log:\n{log_path.read_text()[-3000:]}")
            say(f"appliance online; meter gateway publishing {base_w / 1000:.0f} kW; {describe(panel.state)}")
            time.sleep(11)  # the 10 s enter-service delay after start-up
            target = round(base_w / 1000 - 40)
            panel.command("set_demand_target", kw=target)
            panel.wait(lambda w: abs((w.state["demand_target_kw"] or 0) - target) < 0.5
                       and any(c["setpoint_kw"] < -1 for c in w.state["chargers"]), 10)
            say(describe(panel.state))
            results["shaving"] = any(c["setpoint_kw"] < -1 for c in panel.state["chargers"])
            panel.command("hold_vehicle", vehicle="BUS-1")
            time.sleep(2.5)
            bus1 = next(c for c in panel.state["chargers"] if c["vehicle"] and c["vehicle"]["id"] == "BUS-1")
            say(f"BUS-1 held: {bus1['vehicle']['held']}, its setpoint {bus1['setpoint_kw']} kW")
            results["hold"] = bus1["setpoint_kw"] >= 0
            panel.command("release_vehicle", vehicle="BUS-2")
            panel.command("start_island_test")
            results["island"] = panel.wait(lambda w: w.state["mode"] == "islanded", 15)
            say(f"island test: {describe(panel.state)}, loads shed {panel.state['loads_shed']}")
            panel.command("end_island_test")
            panel.wait(lambda w: w.state["mode"] == "grid-connected" and w.state["transfer_switch"] == "utility", 15)
            say(f"after the test: {describe(panel.state)}")
            feeding.clear()
            say("the meter gateway goes quiet ...")
            results["stale"] = panel.wait(lambda w: w.state["mode"] == "safe", 15)
            say(describe(panel.state))
            meter.publish(METER_TOPIC, "not a number", qos=1)
            feeding.set()
            panel.wait(lambda w: w.state["inputs_fresh"], 10)
            say(f"readings back: {describe(panel.state)}")
            panel.command("acknowledge_alarm", alarm="all")
            panel.command("set_demand_target", kw=None)
            panel.command("reboot_the_building")
            time.sleep(2.5)
            say(f"input errors counted: {panel.state['mqtt']['input_errors']}, commands handled: "
                f"{panel.state['mqtt']['commands']}")
        finally:
            stop.set()
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(20)
        results["offline"] = panel.wait(lambda w: w.status == "offline", 5)
        say(f"SIGTERM: exit {code}, retained status now '{panel.status}'")
        results["clean_exit"] = code == 0
    failed = [k for k, ok in results.items() if not ok]
    print(f"mqtt: {'all steps as expected' if not failed else 'NOT as expected: ' + ', '.join(failed)}; "
          f"daemon log: {log_path}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

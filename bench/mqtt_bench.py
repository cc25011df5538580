#!/usr/bin/env python3
"""MQTT bench: how fast the daemon answers a meter, and whether it keeps up with a flood.

    python3 bench/mqtt_bench.py [--binary PATH] [--readings 1000] [--rate 20]
                                [--flood-rate 1000] [--flood-seconds 30] [--json-only]

Starts its own mosquitto (Tests/Integration/mqtt_broker.Broker, the shipped ACL) and the
daemon (`microgrid-edge run`, speed 1, minute 60 of the school-bus scenario: four buses
parked with energy) on config/example-school.yaml plus an `mqtt:` section and one meter
`main` (building_load, W, $.power, stale after 3 s), with
control.enter_service_delay_seconds 5 so that discharge is allowed soon. It sets a demand
target of 100 kW by command (as panel-lobby), then measures:

(a) latency: N readings alternating between a low and a high building load (20 kW and
    400 kW, against the 100 kW target: charge headroom, then up to 240 kW of discharge),
    paced at --rate Hz; for each reading, the time from its publish until the next
    P/setpoints message whose setpoints differ from the message before it. Both times are
    taken in this process (one monotonic clock). Target: p99 < 50 ms. Also shown: the
    same readings' delivery by the broker to another subscriber (the transport's share),
    the slowest readings, and readings whose answer was reverted to the previous
    setpoints before the next reading (a stale step published after a fresh one).
(b) throughput: --flood-rate meter messages per second for --flood-seconds s, paced, each
    a new value (100,000 W + 10 W x sequence number, so the state's building_load_kw tells
    which reading the daemon last used). Sampled from every P/state: the lag behind the
    latest published reading (messages and ms), mqtt.input_errors, and the daemon's CPU
    time per second (/proc/<pid>/stat utime+stime) and RSS. It fell behind if, at the end,
    the state does not reflect a reading published within the last 1 s.

The simulated plant keeps its own building load (the scenario's), so discharging for the
meter's 400 kW shows in the plant as export, and the daemon reports those "violations" and
exits 1 when stopped: an artifact of a real meter beside a simulated plant, shown, not
judged.

Prints a table and one JSON line (`--json-only`: the JSON line alone). Exit status 0 when
p99 < 50 ms and it kept up, 1 otherwise, 2 if the bench could not run.
"""
import argparse
import bisect
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "Integration"))

from mge_helpers import cpu_model  # noqa: E402
from mqtt_broker import Broker  # noqa: E402
from mqtt_daemon import (DAEMON_USER, METER_TOPIC, PREFIX, Daemon, Panel, brief,  # noqa: E402
                         write_config)

TARGET_KW = 100.0
LOW_W, HIGH_W = 20_000, 400_000
FLOOD_BASE_W, FLOOD_STEP_W = 100_000, 10
P99_LIMIT_MS = 50.0


def percentile(values, q):
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def machine():
    model = cpu_model()
    mosq = None
    try:
        out = subprocess.run(["/usr/sbin/mosquitto", "-h"], capture_output=True, text=True, timeout=5)
        mosq = (out.stdout or out.stderr).splitlines()[0].strip()
    except Exception:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    import paho.mqtt
    return {"nproc": os.cpu_count(), "cpu": model or platform.processor() or "unknown",
            "kernel": platform.release(), "python": platform.python_version(),
            "paho": paho.mqtt.__version__, "mosquitto": mosq, "loadavg_1m": load}


class Setpoints:
    """Every P/setpoints message with its arrival time (monotonic)."""

    def __init__(self, client):
        self.items = []
        self.lock = threading.Lock()
        client.message_callback_add(f"{PREFIX}/setpoints", self._on)
        client.subscribe_and_wait(f"{PREFIX}/setpoints", qos=0)

    def _on(self, client, userdata, msg):
        t = time.monotonic()
        try:
            sp = json.loads(msg.payload).get("setpoints_kw")
        except (ValueError, AttributeError):
            sp = None
        with self.lock:
            self.items.append((t, sp))

    def snapshot(self):
        with self.lock:
            return list(self.items)


class Echo:
    """The meter readings as the broker delivers them to another subscriber (the daemon's
    user, another client id): the broker-and-client part of each latency."""

    def __init__(self, client):
        self.arrivals = {}
        client.message_callback_add(METER_TOPIC, self._on)
        client.subscribe_and_wait(METER_TOPIC, qos=0)

    def _on(self, client, userdata, msg):
        t = time.monotonic()
        try:
            seq = json.loads(msg.payload).get("seq")
        except (ValueError, AttributeError):
            return
        if seq is not None:
            self.arrivals.setdefault(seq, t)


def pace(t_next):
    delay = t_next - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def latency_phase(meter, setpoints, echo, n, rate, log):
    """Publish n alternating readings at `rate` Hz; per reading, ms until the next setpoints
    message that differs from its predecessor."""
    period = 1.0 / rate
    sends = []
    t_next = time.monotonic() + 0.2
    for i in range(n):
        pace(t_next)
        w = LOW_W if i % 2 else HIGH_W      # the warm-up was LOW_W: the first reading is a change
        t = time.monotonic()
        meter.publish(METER_TOPIC, json.dumps({"power": w, "seq": i}), qos=0)
        sends.append(t)
        t_next += period
    time.sleep(0.5)
    msgs = setpoints.snapshot()
    changes = [t for (t, sp), (_, prev) in zip(msgs[1:], msgs[:-1]) if sp != prev]
    latencies, unanswered, late, per_reading = [], 0, 0, []
    j = 0
    for i, t in enumerate(sends):
        while j < len(changes) and changes[j] <= t:
            j += 1
        if j == len(changes):
            unanswered += 1
            continue
        ms = (changes[j] - t) * 1000
        latencies.append(ms)
        echo_ms = (echo.arrivals[i] - t) * 1000 if i in echo.arrivals else None
        per_reading.append((ms, i, echo_ms))
        if i + 1 < len(sends) and changes[j] > sends[i + 1]:
            late += 1      # the first change came after the next reading was already out
    # A reading answered and then reverted: within its interval (until the next reading)
    # the setpoints changed, but the last message puts back what was in force before it
    # (a step computed from an older reading published after the fresh one).
    reverted = []
    k = 0
    for i, t in enumerate(sends[:-1]):
        while k < len(msgs) and msgs[k][0] <= t:
            k += 1
        before = msgs[k - 1][1] if k else None
        inside = [sp for tm, sp in msgs[k:] if tm <= sends[i + 1]]
        if before is not None and any(sp != before for sp in inside) and inside[-1] == before:
            reverted.append(i)
    echoes = [e for _, _, e in per_reading if e is not None]
    slowest = [{"reading": i, "ms": round(ms, 2), "echo_ms": None if e is None else round(e, 2),
                "at_s": round(sends[i] - sends[0], 3)} for ms, i, e in sorted(per_reading, reverse=True)[:10]]
    log(f"latency: {n} readings, {len(changes)} setpoint changes observed")
    return {"readings": n, "rate_hz": rate, "changes": len(changes), "unanswered": unanswered,
            "answered_after_next_reading": late,
            "p50_ms": percentile(latencies, 50), "p90_ms": percentile(latencies, 90),
            "p99_ms": percentile(latencies, 99), "max_ms": max(latencies) if latencies else None,
            "mean_ms": statistics.fmean(latencies) if latencies else None,
            "reverted_after_answer": len(reverted), "reverted_readings": reverted[:20],
            "over_10ms": sum(1 for x in latencies if x > 10), "over_50ms": sum(1 for x in latencies if x > 50),
            "echo_p50_ms": percentile(echoes, 50), "echo_p99_ms": percentile(echoes, 99),
            "echo_max_ms": max(echoes) if echoes else None, "slowest": slowest}


def flood_phase(meter, panel, daemon, rate, seconds, log):
    """`rate` readings per second for `seconds` s; samples lag, errors, CPU and RSS."""
    n_total = int(rate * seconds)
    sends = [None] * n_total
    state_i = panel.states.count()
    errors_before = (panel.state() or {}).get("mqtt", {}).get("input_errors")
    cpu0, wall0 = daemon.cpu_seconds(), time.monotonic()
    cpu_samples, rss_samples = [], [daemon.rss_kib()]
    sampler_stop = threading.Event()

    def sampler():
        last_cpu, last_t = cpu0, wall0
        while not sampler_stop.wait(1.0):
            try:
                c, t = daemon.cpu_seconds(), time.monotonic()
                cpu_samples.append((c - last_cpu) / (t - last_t))
                rss_samples.append(daemon.rss_kib())
                last_cpu, last_t = c, t
            except (OSError, IndexError):
                break
    th = threading.Thread(target=sampler, daemon=True)
    th.start()

    batch = max(1, rate // 100)           # 10 ms slots
    period = batch / rate
    t_start = time.monotonic()
    t_next = t_start
    seq = 0
    while seq < n_total:
        pace(t_next)
        for _ in range(min(batch, n_total - seq)):
            w = FLOOD_BASE_W + FLOOD_STEP_W * seq
            meter.publish(METER_TOPIC, json.dumps({"power": w}), qos=0)
            sends[seq] = time.monotonic()
            seq += 1
        t_next += period
    t_end = time.monotonic()
    achieved = n_total / (t_end - t_start)
    # The state right after the end: which reading does it reflect?
    end_state = panel.states.wait(lambda s: True, 2.0, since=panel.states.count())
    t_end_state = time.monotonic()
    time.sleep(2.0)
    sampler_stop.set()
    th.join(2)
    cpu1, wall1 = daemon.cpu_seconds(), time.monotonic()
    rss_samples.append(daemon.rss_kib())
    settled = panel.state()

    def seq_of(state):
        kw = (state or {}).get("building_load_kw")
        if kw is None:
            return None
        return round((kw * 1000 - FLOOD_BASE_W) / FLOOD_STEP_W)

    # Lag sampled at every state received during the flood.
    lags_msgs, lags_ms = [], []
    with panel.states.cond:
        items = list(panel.states.items[state_i:])
    for t_recv, st, _, _ in items:
        if t_recv > t_end or st is None:
            continue
        k = seq_of(st)
        if k is None or not 0 <= k < n_total or sends[k] is None:
            continue
        latest = bisect.bisect_right(sends, t_recv) - 1      # the last reading out by then
        if latest < 0:
            continue
        lags_msgs.append(max(0, latest - k))
        # ms: how much older the reading this state shows is than the latest one out.
        lags_ms.append(max(0.0, sends[latest] - sends[k]) * 1000)
    k_end = seq_of(end_state)
    end_reading_age = None
    if k_end is not None and 0 <= k_end < n_total:
        end_reading_age = t_end - sends[k_end]          # s before the last publish
    k_settled = seq_of(settled)
    errors_after = (settled or {}).get("mqtt", {}).get("input_errors")
    fell_behind = end_state is None or end_reading_age is None or end_reading_age > 1.0
    log(f"flood: {n_total} readings in {t_end - t_start:.1f} s ({achieved:.0f}/s)")
    return {
        "rate_hz": rate, "seconds": seconds, "published": n_total, "achieved_rate_hz": round(achieved, 1),
        "states_sampled": len(lags_msgs),
        "lag_msgs_p50": percentile(lags_msgs, 50), "lag_msgs_max": max(lags_msgs) if lags_msgs else None,
        "lag_ms_p50": percentile(lags_ms, 50), "lag_ms_max": max(lags_ms) if lags_ms else None,
        "end_state_reading_seq": k_end, "end_state_reading_age_s": end_reading_age,
        "end_state_received_after_s": t_end_state - t_end,
        "settled_reading_seq": k_settled, "last_seq": n_total - 1,
        "settled_lag_msgs": None if k_settled is None else n_total - 1 - k_settled,
        "input_errors_before": errors_before, "input_errors_after": errors_after,
        "cpu_s_per_s": (cpu1 - cpu0) / (wall1 - wall0),
        "cpu_s_per_s_max": max(cpu_samples) if cpu_samples else None,
        "rss_mib_start": rss_samples[0] / 1024 if rss_samples[0] else None,
        "rss_mib_max": max(r for r in rss_samples if r) / 1024,
        "fell_behind": fell_behind,
    }


def fmt(v, unit="", digits=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}{unit}"
    return f"{v}{unit}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.environ.get("MGE_BINARY") or str(REPO / ".build/release/microgrid-edge"))
    ap.add_argument("--readings", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--flood-rate", type=int, default=1000)
    ap.add_argument("--flood-seconds", type=float, default=30.0)
    ap.add_argument("--start-minute", type=int, default=60)
    ap.add_argument("--keep", action="store_true", help="keep the working directory (logs)")
    ap.add_argument("--json-only", action="store_true")
    args = ap.parse_args()

    def log(msg):
        if not args.json_only:
            print(f"[mqtt_bench] {msg}", file=sys.stderr, flush=True)

    binary = Path(args.binary)
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        print(f"mqtt_bench: no executable daemon at {binary} (build it, or pass --binary)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="mqtt-bench-"))
    broker = Broker(work / "broker")
    daemon = None
    result = {"bench": "mqtt", "binary": str(binary), "machine": machine()}
    status = 2
    try:
        broker.start()
        config = write_config(work / "site", broker, control={"enter_service_delay_seconds": 5})
        daemon = Daemon(config, work / "site", speed=1, start_minute=args.start_minute, binary=binary)
        meter = broker.client("meter-main")
        panel = Panel(broker, "panel-lobby")
        observer = broker.client("panel-lobby")
        if not panel.wait_status("online", 15):
            raise RuntimeError(f"the daemon did not say online within 15 s\n{daemon.describe()}")
        # Fresh inputs, the target, and the enter-service delay behind us.
        t_fresh = time.monotonic() + 10
        fresh = None
        while time.monotonic() < t_fresh and fresh is None:
            meter.publish(METER_TOPIC, json.dumps({"power": LOW_W}), qos=0)
            fresh = panel.wait_state(lambda s: s["inputs_fresh"] and s["mode"] != "safe", 0.5)
        if fresh is None:
            raise RuntimeError(f"no fresh state within 10 s: {brief(panel.state())}\n{daemon.describe()}")
        reply = panel.command("set_demand_target", kw=TARGET_KW)
        if reply.get("outcome") != "applied":
            raise RuntimeError(f"set_demand_target {TARGET_KW} was not applied: {reply}")
        setpoints = Setpoints(observer)
        echo = Echo(broker.client(DAEMON_USER, client_id=f"bench-echo-{os.getpid()}"))
        warm_until = daemon.started + 8
        while time.monotonic() < warm_until:
            meter.publish(METER_TOPIC, json.dumps({"power": LOW_W}), qos=0)
            time.sleep(0.25)
        log(f"daemon pid {daemon.pid} ready; state: {brief(panel.state())}")

        lat = latency_phase(meter, setpoints, echo, args.readings, args.rate, log)
        result["latency"] = lat
        flood = flood_phase(meter, panel, daemon, args.flood_rate, args.flood_seconds, log)
        result["flood"] = flood
        result["daemon_running"] = daemon.running
        # With meters, the simulated plant takes its building from them, so its physics
        # agree with the controller's: any safety violation it saw (exit status 1) fails.
        running_before_stop = daemon.running
        result["daemon_exit_status"] = daemon.stop()
        critical = daemon.lines(level="critical")
        result["daemon_critical_lines"] = len(critical)
        result["daemon_critical_first"] = critical[0][:300] if critical else None

        ok_latency = lat["p99_ms"] is not None and lat["p99_ms"] < P99_LIMIT_MS and lat["unanswered"] == 0
        ok_flood = not flood["fell_behind"]
        result["pass"] = {"latency_p99_under_50ms": ok_latency, "kept_up": ok_flood,
                          "input_errors_unchanged": flood["input_errors_after"] == flood["input_errors_before"],
                          "daemon_running": running_before_stop,
                          "daemon_stopped_cleanly": result["daemon_exit_status"] == 0}
        status = 0 if ok_latency and ok_flood and running_before_stop and result["daemon_exit_status"] == 0 else 1

        if not args.json_only:
            m = result["machine"]
            print(f"\nMQTT bench on {m['nproc']} CPU ({m['cpu']}), {m['mosquitto']}, paho {m['paho']}, "
                  f"load avg {fmt(m['loadavg_1m'], digits=2)}")
            print(f"\n(a) latency: meter reading -> changed P/setpoints, {lat['readings']} readings at "
                  f"{fmt(lat['rate_hz'], ' Hz', 0)} alternating {LOW_W // 1000}/{HIGH_W // 1000} kW, target {TARGET_KW:.0f} kW")
            print(f"  {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}  changes  unanswered  answered-late")
            print(f"  {fmt(lat['p50_ms'], ' ms'):>8} {fmt(lat['p90_ms'], ' ms'):>8} {fmt(lat['p99_ms'], ' ms'):>8} "
                  f"{fmt(lat['max_ms'], ' ms'):>8}  {lat['changes']:>7}  {lat['unanswered']:>10}  "
                  f"{lat['answered_after_next_reading']:>13}   (p99 target < {P99_LIMIT_MS:.0f} ms: "
                  f"{'ok' if ok_latency else 'FAIL'})")
            print(f"  over 10 ms: {lat['over_10ms']}, over 50 ms: {lat['over_50ms']}; the same readings "
                  f"delivered by the broker to another subscriber: p50 {fmt(lat['echo_p50_ms'], ' ms')}, "
                  f"p99 {fmt(lat['echo_p99_ms'], ' ms')}, max {fmt(lat['echo_max_ms'], ' ms')}")
            if lat["reverted_after_answer"]:
                print(f"  WARNING: {lat['reverted_after_answer']} reading(s) answered and then reverted to the "
                      f"previous setpoints before the next reading (readings {lat['reverted_readings']})")
            print("  slowest: " + ", ".join(f"#{x['reading']} {x['ms']:.1f} ms (echo {fmt(x['echo_ms'], ' ms')})"
                                            for x in lat["slowest"][:5]))
            f = flood
            print(f"\n(b) throughput: {f['published']} readings at {f['rate_hz']}/s for {f['seconds']:.0f} s "
                  f"(achieved {f['achieved_rate_hz']}/s)")
            rows = [
                ("lag behind the latest reading, per state (p50 / max)",
                 f"{fmt(f['lag_msgs_p50'], ' msgs')} / {fmt(f['lag_msgs_max'], ' msgs')}; "
                 f"{fmt(f['lag_ms_p50'], ' ms')} / {fmt(f['lag_ms_max'], ' ms')}"),
                ("states sampled during the flood", f"{f['states_sampled']}"),
                ("state at the end shows a reading published", f"{fmt(f['end_state_reading_age_s'], ' s', 3)} "
                 f"before the last (limit 1 s): {'kept up' if not f['fell_behind'] else 'FELL BEHIND'}"),
                ("after 2 s the state shows reading", f"{f['settled_reading_seq']} of {f['last_seq']}"),
                ("mqtt.input_errors before / after", f"{f['input_errors_before']} / {f['input_errors_after']}"),
                ("daemon CPU (s per s, mean / max 1-s sample)",
                 f"{fmt(f['cpu_s_per_s'], digits=3)} / {fmt(f['cpu_s_per_s_max'], digits=3)}"),
                ("daemon RSS (start / max)", f"{fmt(f['rss_mib_start'], ' MiB')} / {fmt(f['rss_mib_max'], ' MiB')}"),
            ]
            for k, v in rows:
                print(f"  {k:<50} {v}")
            print(f"\n  daemon exit status on SIGTERM: {result['daemon_exit_status']}"
                  + (f" ({result['daemon_critical_lines']} critical line(s): "
                     f"{result['daemon_critical_first'][:160]}...)" if critical else ""))
            print()
        print(json.dumps(result, sort_keys=True))
        return status
    except Exception as e:
        print(f"mqtt_bench: {e}", file=sys.stderr)
        if daemon is not None:
            print(daemon.describe(3000), file=sys.stderr)
        result["error"] = str(e)
        print(json.dumps(result, sort_keys=True))
        return 2
    finally:
        if daemon is not None:
            daemon.stop()
            log(f"working directory {work}{' (removed)' if not args.keep and status == 0 else ''}")
        broker.close()
        if not args.keep and status == 0:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

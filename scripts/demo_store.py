#!/usr/bin/env python3
"""Demo step 5: store-and-forward through a network outage, a crash and a flapping link.

The town hall's daemon records and uploads to the reference receiver of the central
program (Tests/Integration/central_receiver.py). The link goes down for a while, the
daemon is killed with SIGKILL while records wait, it comes back, the link flaps (resets,
timeouts, 500s, answers lost after storing), then settles. At the end the receiver holds
every record 1..N exactly once.

    python3 scripts/demo_store.py BINARY OUT_DIR
"""
import json
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "Integration"))
from central_receiver import CentralReceiver  # noqa: E402

SITE, TOKEN = "example-townhall", "demo-token-1"


def main():
    binary, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    work = out / "store-demo"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "token").write_text(TOKEN + "\n")
    rx = CentralReceiver(work / "central", tokens={SITE: TOKEN})
    rx.start()
    config = (REPO / "config" / "example-townhall.yaml").read_text()
    config = re.sub(r"scenario: .*", f"scenario: {REPO / 'scenarios' / 'townhall-fleet-baltimore'}", config)
    config += f"""
store:
  path: {work / 'store.db'}
  telemetry_every_seconds: 5
central:
  base_url: {rx.url}
  site_id: {SITE}
  token_file: {work / 'token'}
  timeout_seconds: 2
  gather_seconds: 2
  retry_max_seconds: 2
"""
    (work / "site.yaml").write_text(config)
    logs = []

    def start():
        log = open(work / f"daemon-{len(logs) + 1}.log", "w")
        logs.append(log.name)
        return subprocess.Popen([str(binary), "run", "--config", str(work / "site.yaml"), "--speed", "600"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def db(query):
        with sqlite3.connect(f"file:{work / 'store.db'}?mode=ro", uri=True, timeout=5) as c:
            return c.execute(query).fetchone()

    def say(text):
        print(f"  {time.strftime('%H:%M:%S')} {text}", flush=True)

    daemon = start()
    time.sleep(6)
    say(f"uploading: the program holds 1..{rx.accepted_through(SITE)}")
    rx.stop()
    say("the link to the program is down")
    time.sleep(8)
    last, accepted = db("SELECT next_seq - 1, accepted_through FROM counter")
    say(f"records wait in SQLite: last seq {last}, confirmed through {accepted} (backlog {last - accepted})")
    daemon.send_signal(signal.SIGKILL)
    daemon.wait()
    say("daemon killed with SIGKILL (as in a power cut); started again")
    daemon = start()
    time.sleep(3)
    rx.start()
    rx.set_faults("refuse:p=0.2,timeout:p=0.15:seconds=3,http_500:p=0.2,accept_but_drop_response:p=0.2,seed=5")
    say("the link is back but flapping: resets, timeouts, 500s, answers lost after storing")
    time.sleep(10)
    rx.clear_faults()
    say("the link is steady again")
    deadline = time.time() + 60
    while time.time() < deadline:
        last = db("SELECT next_seq - 1 FROM counter")[0]
        if rx.accepted_through(SITE) >= last:
            break
        time.sleep(0.5)
    # A planned stop: the uploader stops last and sends the stop event on its way out.
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(20)
    rx.stop()

    audit = rx.audit(SITE)
    last = db("SELECT next_seq - 1 FROM counter")[0]
    kinds = {}
    for record in rx.records(SITE):
        kinds[record["kind"]] = kinds.get(record["kind"], 0) + 1
    requests = rx.requests
    offline = sum(1 for name in logs for line in open(name) if "upload: offline" in line)
    ok = (audit.count == last and audit.first == 1 and audit.last == last and not audit.gaps
          and not audit.duplicates and not rx.conflicts(SITE))
    faults = sum(1 for r in requests if r.get("fault"))
    say(f"{len(requests)} upload requests, {faults} of them failed on purpose; "
        f"the daemon logged going offline {offline} times")
    print(f"store-and-forward: the program holds seqs 1..{audit.last} exactly once "
          f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}); gaps {audit.gaps or 'none'}, "
          f"duplicates {audit.duplicates or 'none'}, records the appliance made: {last}: "
          f"{'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

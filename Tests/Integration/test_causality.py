"""Causality: "The trace up to a time T stays byte-identical when load, sessions, events and
outages after T are changed."

Each test simulates an untouched copy of school-buses-chicago and a copy whose future after T
has been rewritten, both up to T + RUN_AFTER_T minutes, and compares the traces line by line:
every intervals.csv / vehicles.csv line with minute < T must be byte-identical, and (so that
the test can fail) the traces must differ somewhere at or after T.
"""

import pytest

from mge_helpers import copy_scenario, read_json, simulate, write_json

SCENARIO = "school-buses-chicago"
RUN_AFTER_T = 14400  # ten days after T keeps each run well under a second
# 255000 = 2023-06-27 02:00, summer break: the buses stay plugged in from June 23 to August 28
#   while event E5 (announced at 254400 for 255840..256020) is pending and E6.. are to come.
# 364320 = 2023-09-11 00:00, a school week: buses come and go; E24 is announced (363840) for
#   365220..365400, E25.. are announced later.
# 365295 = 2023-09-11 15:15, in the middle of event E24.
T_VALUES = [255000, 364320, 365295]
SUMMER_T = 255000  # no session begins within RUN_AFTER_T of it


# --------------------------------------------------------------------------------------------
# Scenario surgery: every change touches only what the controller may learn at or after T.
# --------------------------------------------------------------------------------------------

def _read_lines(path):
    with open(path, newline="") as f:
        return f.read().splitlines()


def _write_lines(path, lines):
    with open(path, "w", newline="") as f:
        f.write("\n".join(lines) + "\n")


def change_load(d, t):
    """Multiply every load row from minute t on by 1.7, splitting the row that covers t."""
    lines = _read_lines(d / "load.csv")
    header, rows = lines[0], [tuple(l.split(",")) for l in lines[1:] if l.strip()]
    out = [header]
    have_t = any(int(m) == t for m, _ in rows)
    for i, (m, kw) in enumerate(rows):
        minute = int(m)
        nxt = int(rows[i + 1][0]) if i + 1 < len(rows) else None
        if minute >= t:
            out.append(f"{minute},{float(kw) * 1.7:.3f}")
        else:
            out.append(f"{m},{kw}")
            if not have_t and minute < t and (nxt is None or nxt > t):
                out.append(f"{t},{float(kw) * 1.7:.3f}")
    _write_lines(d / "load.csv", out)


def change_sessions(d, t):
    """Sessions that begin at or after t: other energies, some leave earlier, one is dropped."""
    sc = read_json(d / "scenario.json")
    battery = {v["id"]: v["battery_kwh"] for v in sc["vehicles"]}
    lines = _read_lines(d / "sessions.csv")
    out = [lines[0]]
    changed = dropped = 0
    for line in lines[1:]:
        if not line.strip():
            continue
        vehicle, charger, arrive, depart, arrive_kwh, need = line.split(",")
        arrive, depart = int(arrive), int(depart)
        if arrive < t:
            out.append(line)
            continue
        if not dropped and arrive >= t + 2880:
            dropped = 1          # this vehicle simply does not come in this time
            continue
        cap = battery[vehicle]
        new_arrive_kwh = min(cap, max(0.0, float(arrive_kwh) * 0.6))
        new_need = min(cap - 1.0, float(need) * 1.25 + 5.0)
        if changed % 2 == 0 and depart - arrive >= 60:
            depart -= 15         # shorter stays cannot create overlaps
        out.append(f"{vehicle},{charger},{arrive},{depart},{new_arrive_kwh:.2f},{new_need:.2f}")
        changed += 1
    assert changed > 0, f"no session arrives at or after minute {t}: the test would not test anything"
    assert dropped, f"no session arrives after minute {t + 2880}: none was dropped"
    _write_lines(d / "sessions.csv", out)


def _free_event_window(events, after, length=180):
    """A start minute (15:00 on some day after `after`) clear of every event by a day."""
    start = (after // 1440 + 1) * 1440 + 15 * 60
    while any(not (start + length + 1440 <= e["start_minute"] or e["end_minute"] + 1440 <= start) for e in events):
        start += 1440
    return start


def change_events(d, t, notify_offset=0):
    """Move every event announced at or after t, and add one announced at t + notify_offset."""
    sc = read_json(d / "scenario.json")
    moved = 0
    for e in sc["dr_events"]:
        if e["notify_minute"] >= t:
            e["notify_minute"] += 60
            e["start_minute"] += 120
            e["end_minute"] += 120
            moved += 1
    assert moved > 0, f"no event is announced at or after minute {t}"
    add_event(sc, t, notify_offset, "LATE")
    write_json(d / "scenario.json", sc)


def add_event(sc, t, notify_offset, ident):
    notify = t + notify_offset
    start = _free_event_window(sc["dr_events"], notify + 600)
    sc["dr_events"].append({"id": ident, "notify_minute": notify, "start_minute": start, "end_minute": start + 180})
    sc["dr_events"].sort(key=lambda e: e["start_minute"])


def add_late_event(d, t, notify_offset):
    sc = read_json(d / "scenario.json")
    add_event(sc, t, notify_offset, "LATE")
    write_json(d / "scenario.json", sc)


def add_outages(d, t, first_offset=0):
    """An outage starting at t + first_offset (two hours) and another three days later."""
    sc = read_json(d / "scenario.json")
    new = [(t + first_offset, t + first_offset + 120), (t + 4320, t + 4560)]
    for a, b in new:
        for o in sc["outages"]:
            assert b <= o["start_minute"] or o["end_minute"] <= a, f"the added outage {a}..{b} overlaps {o}"
        sc["outages"].append({"start_minute": a, "end_minute": b})
    sc["outages"].sort(key=lambda o: o["start_minute"])
    write_json(d / "scenario.json", sc)


def change_everything(d, t):
    change_load(d, t)
    change_sessions(d, t)
    change_events(d, t)
    add_outages(d, t)


VARIANTS = {
    "everything": change_everything,
    "load-only": change_load,
    "sessions-only": change_sessions,
    "events-moved-and-one-announced-at-T": lambda d, t: change_events(d, t, notify_offset=0),
    "event-announced-after-T-starting-later": lambda d, t: add_late_event(d, t, notify_offset=15),
    "event-announced-well-after-T": lambda d, t: add_late_event(d, t, notify_offset=600),
    "outage-starting-at-T": lambda d, t: add_outages(d, t, 0),
    "outage-starting-after-T": lambda d, t: add_outages(d, t, 240),
}


# --------------------------------------------------------------------------------------------
# Trace comparison
# --------------------------------------------------------------------------------------------

def split_trace(path, t):
    """(header, lines with minute < t, lines with minute >= t) of a trace CSV, as raw text."""
    lines = _read_lines(path)
    before, after = [], []
    for line in lines[1:]:
        (before if int(line.split(",", 1)[0]) < t else after).append(line)
    return lines[0], before, after


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"line {i + 2}: original {x!r}, changed {y!r}"
    if len(a) != len(b):
        return f"the original has {len(a)} such lines, the changed one {len(b)}"
    return "none"


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    """The untouched scenario, simulated once per T."""
    result = {}
    for t in T_VALUES:
        root = tmp_path_factory.mktemp(f"baseline-{t}")
        scenario = copy_scenario(SCENARIO, root / "scenario")
        simulate(scenario, root / "out", "--minutes", t + RUN_AFTER_T)
        result[t] = root / "out"
    return result


def test_simulation_is_deterministic(baselines, tmp_path):
    """Two runs of the same scenario give the same trace (else causality could not be judged)."""
    t = T_VALUES[0]
    scenario = copy_scenario(SCENARIO, tmp_path / "scenario")
    simulate(scenario, tmp_path / "out", "--minutes", t + RUN_AFTER_T)
    for name in ("intervals.csv", "vehicles.csv"):
        a, b = _read_lines(baselines[t] / name), _read_lines(tmp_path / "out" / name)
        assert a == b, f"expected two runs of one scenario to write the same {name}; first difference: {first_difference(a, b)}"


CASES = [pytest.param(v, t, id=f"{v}-T{t}") for v in VARIANTS for t in T_VALUES
         if not (v == "sessions-only" and t == SUMMER_T)]


@pytest.mark.parametrize("variant,t", CASES)
def test_trace_before_t_ignores_the_future(variant, t, baselines, tmp_path):
    assert t % 15 == 0
    changed = copy_scenario(SCENARIO, tmp_path / "changed")
    VARIANTS[variant](changed, t)
    out = tmp_path / "out"
    simulate(changed, out, "--minutes", t + RUN_AFTER_T)

    differs_after = []
    for name in ("intervals.csv", "vehicles.csv"):
        h0, before0, after0 = split_trace(baselines[t] / name, t)
        h1, before1, after1 = split_trace(out / name, t)
        assert h0 == h1, f"{name}: headers differ: {h0!r} vs {h1!r}"
        if name == "intervals.csv":
            assert len(before0) == t // 15, f"expected {t // 15} intervals before minute {t}, the baseline has {len(before0)}"
        assert before0 == before1, (
            f"[{variant}, T={t}] expected {name} lines with minute < {t} to be byte-identical after changing only "
            f"what happens from minute {t} on; first difference: {first_difference(before0, before1)}")
        if after0 != after1:
            differs_after.append(name)
    assert differs_after, (f"[{variant}, T={t}] expected the change to alter the trace at or after minute {t} "
                           f"(otherwise this test proves nothing), but both traces are identical there")


def test_comparison_notices_a_change_just_before_t(baselines, tmp_path):
    """Negative control: a load change one interval before T must show up before T."""
    t = T_VALUES[1]
    changed = copy_scenario(SCENARIO, tmp_path / "changed")
    change_load(changed, t - 15)
    out = tmp_path / "out"
    simulate(changed, out, "--minutes", t + RUN_AFTER_T)
    _, before0, _ = split_trace(baselines[t] / "intervals.csv", t)
    _, before1, _ = split_trace(out / "intervals.csv", t)
    assert before0[:-1] == before1[:-1], "expected the trace before T - 15 to be unchanged"
    assert before0[-1] != before1[-1], (
        f"expected a load change from minute {t - 15} to alter the interval at {t - 15}: "
        f"{before0[-1]!r} vs {before1[-1]!r}")

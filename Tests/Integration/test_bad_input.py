"""Bad input of any kind: exit status 2 and ONE line on stderr,

    microgrid-edge: error: <file>[:<line>]: [<field>: ]<message>

naming the file (and the line where there is one), never a crash or a stack trace.
"""
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mge_helpers import CONFIGS, CRASH_MARKERS, REPO, copy_scenario, describe, read_json, run, write_json

PREFIX = "microgrid-edge: error:"
ANY_LINE = -1
BASE = "school-buses-chicago"


@dataclass
class Expect:
    file: str                     # basename that must appear in the message
    line: int = None              # the line number that must follow it (":LINE:"), if any; ANY_LINE: some line
    mentions: list = field(default_factory=list)   # further substrings the message must hold


def assert_one_line_error(proc, expect, what):
    """Exit 2, exactly one non-empty stderr line in the documented format, no crash."""
    text = describe(proc)
    for marker in CRASH_MARKERS:
        assert marker not in proc.stdout + proc.stderr, f"[{what}] expected no '{marker}' in the output\n{text}"
    assert proc.returncode == 2, f"[{what}] expected exit status 2, got {proc.returncode}\n{text}"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), (
        f"[{what}] expected exactly one non-empty line on stderr, got {len(lines)}\n{text}")
    message = lines[0]
    assert message.startswith(PREFIX), f"[{what}] expected stderr to start with {PREFIX!r}\n{text}"
    assert expect.file in message, f"[{what}] expected the message to name {expect.file!r}\n{text}"
    if expect.line is not None:
        m = re.search(re.escape(expect.file) + r":(\d+):", message)
        wanted = "LINE" if expect.line == ANY_LINE else expect.line
        assert m, f"[{what}] expected '{expect.file}:{wanted}:' (file and line) in the message\n{text}"
        assert expect.line == ANY_LINE or int(m.group(1)) == expect.line, (
            f"[{what}] expected line {expect.line} of {expect.file}, the message gives line {m.group(1)}\n{text}")
    for needle in expect.mentions:
        assert needle in message, f"[{what}] expected the message to mention {needle!r}\n{text}"
    return message


def line_of(path, needle):
    """1-based number of the first line of `path` that contains `needle`."""
    for i, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not found in {path}")


def edit_text(path, old, new, count=1):
    text = Path(path).read_text()
    assert old in text, f"test setup: {old!r} not in {path}"
    Path(path).write_text(text.replace(old, new, count))


def set_csv_line(path, number, new_line):
    """Replace 1-based line `number` of a CSV file."""
    lines = Path(path).read_text().splitlines()
    lines[number - 1] = new_line
    Path(path).write_text("\n".join(lines) + "\n")


def csv_line(path, number):
    return Path(path).read_text().splitlines()[number - 1]


# --------------------------------------------------------------------------------------------
# Broken scenarios. Each builder breaks a fresh copy `d` of school-buses-chicago and returns
# (the directory to simulate, what the error must say).
# --------------------------------------------------------------------------------------------

def missing_directory(d):
    return d.parent / "no-such-scenario", Expect("no-such-scenario")


def missing_load_csv(d):
    (d / "load.csv").unlink()
    return d, Expect("load.csv")


def load_not_a_number(d):
    minute = csv_line(d / "load.csv", 101).split(",")[0]
    set_csv_line(d / "load.csv", 101, f"{minute},abc")
    return d, Expect("load.csv", 101, ["building_kw"])


def load_negative(d):
    set_csv_line(d / "load.csv", 5, "240,-50")
    return d, Expect("load.csv", 5, ["building_kw"])


def load_minutes_out_of_order(d):
    a, b = csv_line(d / "load.csv", 3), csv_line(d / "load.csv", 4)
    set_csv_line(d / "load.csv", 3, b)
    set_csv_line(d / "load.csv", 4, a)
    return d, Expect("load.csv", 4, ["minute"])


def json_number_is_a_string(d):
    edit_text(d / "scenario.json", '"import_limit_kw": 859', '"import_limit_kw": "lots"')
    return d, Expect("scenario.json", line_of(d / "scenario.json", '"import_limit_kw"'), ["import_limit_kw"])


def json_negative_duration(d):
    edit_text(d / "scenario.json", '"duration_minutes": 525600', '"duration_minutes": -15')
    return d, Expect("scenario.json", line_of(d / "scenario.json", '"duration_minutes"'), ["duration_minutes"])


def json_missing_required_key(d):
    sc = read_json(d / "scenario.json")
    del sc["interval_minutes"]
    write_json(d / "scenario.json", sc)
    return d, Expect("scenario.json", None, ["interval_minutes"])


def json_efficiency_above_one(d):
    sc = read_json(d / "scenario.json")
    sc["chargers"][2]["efficiency"] = 1.5
    write_json(d / "scenario.json", sc)
    return d, Expect("scenario.json", line_of(d / "scenario.json", "1.5"), ["efficiency"])


def json_event_notified_after_start(d):
    sc = read_json(d / "scenario.json")
    sc["dr_events"][0]["notify_minute"] = sc["dr_events"][0]["start_minute"] + 15
    write_json(d / "scenario.json", sc)
    return d, Expect("scenario.json", None, ["dr_events[0]"])


def json_outage_ends_before_start(d):
    sc = read_json(d / "scenario.json")
    sc["outages"][0]["end_minute"] = sc["outages"][0]["start_minute"] - 15
    write_json(d / "scenario.json", sc)
    return d, Expect("scenario.json", None, ["outages[0]"])


def sessions_overlap_for_one_vehicle(d):
    # Line 2: BUS-1,C1,0,3255,...; line 7: BUS-1,C1,3405,3735,...: make line 7 arrive at 3000.
    fields = csv_line(d / "sessions.csv", 7).split(",")
    assert fields[0] == "BUS-1" and csv_line(d / "sessions.csv", 2).startswith("BUS-1,"), "test setup"
    fields[2] = "3000"
    set_csv_line(d / "sessions.csv", 7, ",".join(fields))
    return d, Expect("sessions.csv", 7, ["BUS-1"])


def sessions_overlap_on_one_charger(d):
    # Line 9 (BUS-2, 3420..3735) moved onto C1, which BUS-1 holds 3405..3735 (line 7).
    fields = csv_line(d / "sessions.csv", 9).split(",")
    assert fields[0] == "BUS-2", "test setup"
    fields[1] = "C1"
    set_csv_line(d / "sessions.csv", 9, ",".join(fields))
    return d, Expect("sessions.csv", 9, ["C1"])


def session_departs_before_arriving(d):
    set_csv_line(d / "sessions.csv", 3, "BUS-2,C2,3240,15,95.62,58.83")
    return d, Expect("sessions.csv", 3)


def session_unknown_charger(d):
    set_csv_line(d / "sessions.csv", 3, "BUS-2,C9,0,3240,95.62,58.83")
    return d, Expect("sessions.csv", 3, ["C9"])


def session_unknown_vehicle(d):
    set_csv_line(d / "sessions.csv", 3, "BUS-9,C2,0,3240,95.62,58.83")
    return d, Expect("sessions.csv", 3, ["BUS-9"])


def session_truncated_row(d):
    set_csv_line(d / "sessions.csv", 5, "BUS-4,C4,0,3255,122.0")
    return d, Expect("sessions.csv", 5)


def session_arrives_above_battery(d):
    set_csv_line(d / "sessions.csv", 3, "BUS-2,C2,0,3240,195.62,58.83")
    return d, Expect("sessions.csv", 3, ["arrive_kwh"])


def session_minute_off_the_interval_grid(d):
    set_csv_line(d / "sessions.csv", 3, "BUS-2,C2,7,3240,95.62,58.83")
    return d, Expect("sessions.csv", 3, ["arrive_minute"])


def load_minute_off_the_interval_grid(d):
    # SCENARIO.md: "Every minute value in the scenario is a multiple of [interval_minutes]."
    set_csv_line(d / "load.csv", 3, "61,70.630")
    return d, Expect("load.csv", 3, ["minute"])


def json_does_not_parse(d):
    edit_text(d / "scenario.json", '"export_limit_kw": 0,', '"export_limit_kw": zero,')
    return d, Expect("scenario.json", line_of(d / "scenario.json", '"export_limit_kw": zero'))


def json_truncated(d):
    text = (d / "scenario.json").read_text()
    (d / "scenario.json").write_text(text[: len(text) // 2])   # a copy cut off half way
    return d, Expect("scenario.json", ANY_LINE)


SCENARIO_CASES = [
    missing_directory,
    missing_load_csv,
    load_not_a_number,
    load_negative,
    load_minutes_out_of_order,
    json_number_is_a_string,
    json_negative_duration,
    json_missing_required_key,
    json_efficiency_above_one,
    json_event_notified_after_start,
    json_outage_ends_before_start,
    sessions_overlap_for_one_vehicle,
    sessions_overlap_on_one_charger,
    session_departs_before_arriving,
    session_unknown_charger,
    session_unknown_vehicle,
    session_truncated_row,
    session_arrives_above_battery,
    session_minute_off_the_interval_grid,
    json_does_not_parse,
    json_truncated,
    load_minute_off_the_interval_grid,
]


@pytest.mark.parametrize("breaker", SCENARIO_CASES, ids=lambda f: f.__name__)
def test_broken_scenario(breaker, tmp_path):
    d = copy_scenario(BASE, tmp_path / "scenario")
    target, expect = breaker(d)
    proc = run(["simulate", target, "--out", tmp_path / "out", "--minutes", 1440])
    assert_one_line_error(proc, expect, breaker.__name__)


def test_scenario_that_is_a_file(tmp_path):
    f = tmp_path / "scenario.json"
    f.write_text("{}\n")
    proc = run(["simulate", f, "--out", tmp_path / "out"])
    assert_one_line_error(proc, Expect("scenario.json"), "scenario path is a file")


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_both_line_endings_are_accepted(tmp_path, ending):
    # The shipped CSV files have CRLF endings; normalize, then write the ending under test.
    d = copy_scenario(BASE, tmp_path / "scenario")
    for name in ("load.csv", "sessions.csv"):
        p = d / name
        p.write_bytes(p.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", ending))
    proc = run(["simulate", d, "--out", tmp_path / "out", "--minutes", 1440])
    assert proc.returncode == 0, f"expected CSV files with {ending!r} line endings to be read\n{describe(proc)}"


# --------------------------------------------------------------------------------------------
# Site configuration (check-config)
# --------------------------------------------------------------------------------------------

@pytest.fixture
def config(tmp_path):
    """config/example-school.yaml copied into tmp, with the scenario path made absolute."""
    text = (CONFIGS / "example-school.yaml").read_text()
    old = "scenario: ../scenarios/school-buses-chicago"
    assert old in text, "test setup: the example configuration changed"
    path = tmp_path / "site.yaml"
    path.write_text(text.replace(old, f"scenario: {REPO / 'scenarios' / 'school-buses-chicago'}"))
    return path


def replace_line(path, startswith, new_line):
    """Replace the first line starting with `startswith`; returns its 1-based number."""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(startswith):
            lines[i] = new_line
            path.write_text("\n".join(lines) + "\n")
            return i + 1
    raise AssertionError(f"test setup: no line starts with {startswith!r} in {path}")


def insert_after(path, startswith, new_line):
    """Insert a line after the first one starting with `startswith`; returns its 1-based number."""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(startswith):
            lines.insert(i + 1, new_line)
            path.write_text("\n".join(lines) + "\n")
            return i + 2
    raise AssertionError(f"test setup: no line starts with {startswith!r} in {path}")


@pytest.mark.parametrize("name", ["example-school.yaml", "example-townhall.yaml"])
def test_shipped_configs_are_ok(name):
    proc = run(["check-config", CONFIGS / name])
    assert proc.returncode == 0, f"expected the shipped {name} to pass check-config\n{describe(proc)}"
    assert f"{name}: OK" in proc.stdout, f"expected '{name}: OK' on stdout\n{describe(proc)}"


def test_copied_config_is_ok(config):
    proc = run(["check-config", config])
    assert proc.returncode == 0 and f"{config}: OK" in proc.stdout, \
        f"expected the copied example configuration to be OK\n{describe(proc)}"


def test_config_broken_yaml_syntax(config):
    line = replace_line(config, "  import_limit_kw:", "  import_limit_kw: 859: 860")
    assert_one_line_error(run(["check-config", config]), Expect(config.name, line, ["YAML"]), "broken YAML")


def test_config_unclosed_quote(config):
    replace_line(config, "  export_limit_kw:", '  export_limit_kw: "0')
    # The parser only notices at the end of the file; any line is fine, but the format is not.
    assert_one_line_error(run(["check-config", config]), Expect(config.name), "unclosed quote")


def test_config_unknown_key(config):
    line = insert_after(config, "  import_limit_kw:", "  import_limt_kw: 900")
    assert_one_line_error(run(["check-config", config]), Expect(config.name, line, ["import_limt_kw"]),
                          "unknown key")


def test_config_unknown_top_level_key(config):
    line = insert_after(config, "demand_interval_minutes:", "demand_intervall_minutes: 15")
    assert_one_line_error(run(["check-config", config]), Expect(config.name, line, ["demand_intervall_minutes"]),
                          "unknown top-level key")


def test_config_misspelled_required_key(config):
    line = replace_line(config, "  import_limit_kw:", "  import_limt_kw: 859")
    assert_one_line_error(run(["check-config", config]), Expect(config.name, line, ["import_limt_kw"]),
                          "misspelled key")


def test_config_wrong_type(config):
    line = replace_line(config, "  import_limit_kw:", "  import_limit_kw: lots")
    assert_one_line_error(run(["check-config", config]), Expect(config.name, line, ["import_limit_kw"]),
                          "wrong type")


def test_config_wrong_type_in_list(config):
    line = replace_line(config, "    max_discharge_kw: 60", "    max_discharge_kw: sixty")
    assert_one_line_error(run(["check-config", config]), Expect(config.name, line, ["max_discharge_kw"]),
                          "wrong type in a list entry")


def test_config_duplicate_key(config):
    line = insert_after(config, "  import_limit_kw:", "  import_limit_kw: 900")
    assert_one_line_error(run(["check-config", config]), Expect(config.name, line, ["import_limit_kw"]),
                          "duplicate key")


def test_config_empty_file(tmp_path):
    p = tmp_path / "empty.yaml"
    p.write_text("")
    assert_one_line_error(run(["check-config", p]), Expect("empty.yaml"), "empty file")


def test_config_missing_file(tmp_path):
    assert_one_line_error(run(["check-config", tmp_path / "absent.yaml"]), Expect("absent.yaml"), "missing file")


@pytest.mark.parametrize("var,value", [
    ("MGE_SITE__IMPORT_LIMIT_KW", "abc"),
    ("MGE_SITE__IMPORT_LIMT_KW", "900"),           # no such key
    ("MGE_CHARGERS__9__MAX_CHARGE_KW", "50"),      # no such list entry
    ("MGE_CHARGERS__0__MAX_CHARGE_KW", "fifty"),
])
def test_config_bad_environment_override(config, var, value):
    proc = run(["check-config", config], env={var: value})
    message = assert_one_line_error(proc, Expect(var, None, [f"environment variable {var}"]),
                                    f"{var}={value}")
    assert message.startswith(f"{PREFIX} environment variable {var}"), f"expected the variable as the source\n{describe(proc)}"


def test_config_good_environment_override(config):
    proc = run(["check-config", config], env={"MGE_SITE__IMPORT_LIMIT_KW": "900"})
    assert proc.returncode == 0, f"expected MGE_SITE__IMPORT_LIMIT_KW=900 to be accepted\n{describe(proc)}"
    assert f"{config}: OK" in proc.stdout, f"expected '{config}: OK'\n{describe(proc)}"
    assert "900" in proc.stdout, f"expected check-config to show the overridden import limit 900\n{describe(proc)}"
    assert "859" not in proc.stdout, f"expected the file's 859 kW to be overridden\n{describe(proc)}"


def test_config_good_list_override(config):
    # Every charger of the scenario must match the configuration, so change all four.
    env = {f"MGE_CHARGERS__{i}__EFFICIENCY": "0.94" for i in range(4)}
    proc = run(["check-config", config], env=env)
    assert proc.returncode == 0, f"expected list-index overrides with unchanged values to be accepted\n{describe(proc)}"


def test_documented_list_override(config):
    var = "MGE_CHARGERS__0__MAX_CHARGE_KW"
    proc = run(["check-config", config], env={var: "50"})
    if proc.returncode != 0:
        assert_one_line_error(proc, Expect(var), f"{var}=50")


# --------------------------------------------------------------------------------------------
# Configuration errors through the other subcommands
# --------------------------------------------------------------------------------------------

def test_run_missing_config(tmp_path):
    proc = run(["run", "--config", tmp_path / "absent.yaml", "--stop-after", "1m"], timeout=30)
    assert_one_line_error(proc, Expect("absent.yaml"), "run with a missing config")


def test_run_bad_environment_override(config):
    proc = run(["run", "--config", config, "--stop-after", "1m"], env={"MGE_PLANT__SPEED": "fast"}, timeout=30)
    assert_one_line_error(proc, Expect("MGE_PLANT__SPEED", None, ["environment variable MGE_PLANT__SPEED"]),
                          "run with MGE_PLANT__SPEED=fast")


def test_run_bad_stop_after(config):
    proc = run(["run", "--config", config, "--stop-after", "5x"], timeout=30)
    assert_one_line_error(proc, Expect("--stop-after"), "run --stop-after 5x")


def test_start_minute_past_the_scenario_in_config(config):
    proc = run(["check-config", config], env={"MGE_PLANT__START_MINUTE": "99999999"})
    assert_one_line_error(proc, Expect(config.name, None, ["start_minute"]), "plant.start_minute past the end")


def test_run_start_minute_past_the_scenario(config):
    proc = run(["run", "--config", config, "--start-minute", "99999999", "--speed", "3600", "--stop-after", "1m"],
               timeout=30)
    assert_one_line_error(proc, Expect("start", None, []), "run --start-minute 99999999")


def test_simulate_with_bad_config(config, tmp_path):
    line = replace_line(config, "  enter_service_delay_seconds:", "  enter_service_delay_seconds: soon")
    proc = run(["simulate", REPO / "scenarios" / BASE, "--out", tmp_path / "out", "--config", config,
                "--minutes", 60])
    assert_one_line_error(proc, Expect(config.name, line, ["enter_service_delay_seconds"]), "simulate --config")


def test_simulate_step_not_dividing_the_interval(tmp_path):
    proc = run(["simulate", REPO / "scenarios" / BASE, "--out", tmp_path / "out", "--step", 7, "--minutes", 60])
    assert_one_line_error(proc, Expect("--step"), "--step 7")


@pytest.mark.parametrize("args", [
    ["simulate", "scenarios/school-buses-chicago", "--out", "OUT", "--minutes", "abc"],
    ["simulate", "scenarios/school-buses-chicago", "--out", "OUT", "--bogus"],
], ids=["minutes-abc", "unknown-option"])
def test_command_line_usage_errors(args, tmp_path):
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    proc = run(args)
    assert_one_line_error(proc, Expect(""), " ".join(args))

"""`microgrid-edge provision` into a temporary root with the shipped site.yaml and ACL.

The command is run as a black box: the files it leaves (content, owner, mode), what it
says, that a second run changes nothing, rotation, repairs, the central token, errors, and
that a real mosquitto running on the password file it made accepts every user with the
password it gave out (and refuses a wrong one).
"""
import base64
import hashlib
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from mge_helpers import BINARY, CLEAN_ENV, REPO, describe

SHIPPED_SITE = REPO / "rootfs-overlay" / "etc" / "microgrid-edge" / "site.yaml"
SHIPPED_ACL = REPO / "rootfs-overlay" / "etc" / "mosquitto" / "microgrid-edge.acl"
ACL_USERS = ["microgrid-edge", "meter-main", "meter-ev", "homeassistant"]
CHARGERS = ["C1", "C2", "C3", "C4"]
MOSQUITTO_GID, DAEMON_GID = 4001, 4002    # in the temporary root's etc/group


class Appliance:
    """A temporary root with the groups an installed appliance has."""

    def __init__(self, base, groups=True):
        self.root = base / "root"
        (self.root / "etc").mkdir(parents=True)
        if groups:
            (self.root / "etc" / "group").write_text(
                f"root:x:0:\nmosquitto:x:{MOSQUITTO_GID}:\nmicrogrid-edge:x:{DAEMON_GID}:\n")

    def path(self, appliance_path):
        return self.root / appliance_path.lstrip("/")

    @property
    def passwd(self):
        return self.path("/etc/mosquitto/microgrid-edge.passwd")

    @property
    def mqtt_password(self):
        return self.path("/etc/microgrid-edge/mqtt-password")

    def charger(self, cid):
        return self.path(f"/etc/microgrid-edge/ocpp/{cid}.password")

    @property
    def token(self):
        return self.path("/etc/microgrid-edge/central-token")

    def provision(self, *extra, input=None, expect=0):
        args = ["provision", "--config", SHIPPED_SITE, "--acl", SHIPPED_ACL, "--root", self.root, *extra]
        proc = run(args, stdin_text=input)
        assert proc.returncode == expect, f"expected provision to exit {expect}\n{describe(proc)}"
        return proc

    @staticmethod
    def credentials_path(proc):
        """The credentials file a run says it wrote."""
        found = re.search(r"^New passwords are in (\S+) \(root only", proc.stdout, re.MULTILINE)
        assert found, f"expected stdout to say where the new passwords are\n{describe(proc)}"
        return Path(found.group(1))

    def credentials_files(self):
        return sorted((self.root / "root").glob("microgrid-edge-credentials-*.txt"))

    def snapshot(self):
        """Every file under the root (but the credentials files): bytes, owner, mode."""
        out = {}
        for p in sorted(self.root.rglob("*")):
            if p.is_file() and not p.name.startswith("microgrid-edge-credentials-"):
                st = p.stat()
                out[str(p.relative_to(self.root))] = (p.read_bytes(), st.st_uid, st.st_gid,
                                                      stat.S_IMODE(st.st_mode))
        return out

    def passwd_entries(self):
        return dict(line.split(":", 1) for line in self.passwd.read_text().splitlines() if ":" in line)


def run(args, stdin_text=None):
    """mge_helpers.run, with standard input (provision reads the central token from it)."""
    return subprocess.run([str(BINARY)] + [str(a) for a in args], capture_output=True, text=True,
                          env=dict(CLEAN_ENV), timeout=120, cwd=str(REPO),
                          input=stdin_text if stdin_text is not None else "")


def credentials(text):
    """{"MQTT user NAME" | "charger ID": password} from a credentials file or stdout."""
    return dict(re.findall(r"^  ((?:MQTT user|charger) [^:]+): (\S+)$", text, re.MULTILINE))


def mosquitto_hash_matches(password, entry):
    """Checks a `$7$` entry the way mosquitto does (PBKDF2-HMAC-SHA512)."""
    _, kind, rounds, salt, digest = entry.split("$")
    assert kind == "7", f"expected mosquitto 2.0's $7$ format, got {entry[:10]}..."
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(rounds), 64)
    return base64.b64encode(got).decode() == digest


def owner_mode(path):
    st = path.stat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


@pytest.fixture
def appliance(tmp_path):
    return Appliance(tmp_path)


@pytest.fixture
def first_run(appliance):
    proc = appliance.provision("--panel", "panel-lobby")
    files = appliance.credentials_files()
    assert files == [appliance.credentials_path(proc)], \
        f"expected one credentials file under {appliance.root}/root\n{describe(proc)}"
    return proc, credentials(files[0].read_text())


def test_first_run_creates_every_secret_with_its_owner_and_mode(appliance, first_run):
    proc, creds = first_run
    assert list(appliance.passwd_entries()) == ACL_USERS + ["panel-lobby"], appliance.passwd.read_text()
    assert owner_mode(appliance.passwd) == (0, MOSQUITTO_GID, 0o640)
    for path in [appliance.mqtt_password] + [appliance.charger(c) for c in CHARGERS]:
        assert owner_mode(path) == (0, DAEMON_GID, 0o640), f"{path}: expected root:microgrid-edge 640"
        assert re.fullmatch(r"[A-Za-z0-9]{24}\n", path.read_text()), f"{path}: {path.read_text()!r}"
    assert not appliance.token.exists(), "no token was supplied, so none may be written"
    assert "central token" in proc.stdout and "STILL MISSING" in proc.stdout, describe(proc)
    assert "systemctl reload mosquitto" in proc.stdout, describe(proc)
    # The technician gets the meters', Home Assistant's, the panel's and the chargers'
    # passwords; the appliance's own is only in its file.
    assert sorted(creds) == sorted([f"MQTT user {u}" for u in ACL_USERS[1:] + ["panel-lobby"]] +
                                   [f"charger {c}" for c in CHARGERS]), creds
    for cid in CHARGERS:
        assert appliance.charger(cid).read_text() == creds[f"charger {cid}"] + "\n"
    entries = appliance.passwd_entries()
    assert mosquitto_hash_matches(appliance.mqtt_password.read_text().strip(), entries["microgrid-edge"])
    for name in ACL_USERS[1:] + ["panel-lobby"]:
        assert mosquitto_hash_matches(creds[f"MQTT user {name}"], entries[name]), name
    cred_file = appliance.credentials_files()[0]
    assert owner_mode(cred_file)[2] == 0o600
    assert str(cred_file) in proc.stdout, "expected stdout to say where the new passwords are"


def test_secrets_never_reach_stdout_or_stderr_unless_asked(appliance, first_run):
    proc, creds = first_run
    secrets = list(creds.values()) + [appliance.mqtt_password.read_text().strip()]
    for secret in secrets:
        assert secret not in proc.stdout and secret not in proc.stderr, \
            "a password was printed although standard output is not a terminal"
    proc = appliance.provision("--rotate", "meter-ev", "--show-passwords")
    shown = credentials(proc.stdout)
    assert list(shown) == ["MQTT user meter-ev"], describe(proc)
    assert shown["MQTT user meter-ev"] not in proc.stderr
    assert len(appliance.credentials_files()) == 1, "--show-passwords writes no credentials file"


def test_a_second_run_changes_nothing(appliance, first_run):
    before = appliance.snapshot()
    proc = appliance.provision("--panel", "panel-lobby")
    assert appliance.snapshot() == before, "expected the second run to leave every file as it was"
    assert "Nothing was created or changed." in proc.stdout, describe(proc)
    assert ": created" not in proc.stdout and "reload" not in proc.stdout, describe(proc)
    assert len(appliance.credentials_files()) == 1, "no new passwords, so no new credentials file"


def test_a_real_mosquitto_accepts_the_users_with_their_passwords(tmp_path, appliance, first_run):
    from mqtt_broker import Broker, ConnectRefused
    _, creds = first_run
    passwords = {name.removeprefix("MQTT user "): pw for name, pw in creds.items() if name.startswith("MQTT")}
    # The daemon logs in with what its password file holds.
    passwords["microgrid-edge"] = appliance.mqtt_password.read_text().splitlines()[0]
    with Broker(tmp_path / "broker", users=passwords, password_file=appliance.passwd) as broker:
        for user, password in passwords.items():
            client = broker.client(user, password)
            assert client.is_connected(), f"expected mosquitto to accept {user} with its password"
        for user in passwords:
            with pytest.raises(ConnectRefused):
                broker.client(user, passwords[user][::-1])
                pytest.fail(f"expected mosquitto to refuse {user} with a wrong password")


def test_rotation_replaces_one_password(tmp_path, appliance, first_run):
    from mqtt_broker import Broker, ConnectRefused
    _, old = first_run
    before = appliance.passwd_entries()
    c2 = appliance.charger("C2").read_text()
    proc = appliance.provision("--rotate", "meter-main", "--rotate", "C2")
    new = credentials(appliance.credentials_path(proc).read_text())
    assert len(appliance.credentials_files()) == 2, "each run with new passwords has its own file"
    assert sorted(new) == ["MQTT user meter-main", "charger C2"], describe(proc)
    after = appliance.passwd_entries()
    assert after["meter-main"] != before["meter-main"]
    assert {u: h for u, h in after.items() if u != "meter-main"} == \
        {u: h for u, h in before.items() if u != "meter-main"}
    assert appliance.charger("C2").read_text() == new["charger C2"] + "\n" != c2
    assert "systemctl reload mosquitto" in proc.stdout
    with Broker(tmp_path / "broker", password_file=appliance.passwd) as broker:
        assert broker.client("meter-main", new["MQTT user meter-main"]).is_connected()
        with pytest.raises(ConnectRefused):
            broker.client("meter-main", old["MQTT user meter-main"])


def test_the_appliances_password_and_its_broker_entry_are_made_to_agree(appliance, first_run):
    # Someone changed the appliance's file: the broker's entry follows the file.
    appliance.mqtt_password.write_text("typed-by-hand-0123456789\n")
    proc = appliance.provision()
    assert "did not match" in proc.stdout, describe(proc)
    assert mosquitto_hash_matches("typed-by-hand-0123456789", appliance.passwd_entries()["microgrid-edge"])
    assert appliance.mqtt_password.read_text() == "typed-by-hand-0123456789\n"
    # The file is lost: the old password cannot be had from its hash, so a new one goes in both.
    appliance.mqtt_password.unlink()
    proc = appliance.provision()
    password = appliance.mqtt_password.read_text().strip()
    assert password != "typed-by-hand-0123456789" and "was missing" in proc.stdout, describe(proc)
    assert mosquitto_hash_matches(password, appliance.passwd_entries()["microgrid-edge"])
    assert password not in proc.stdout


def test_wrong_owners_and_modes_are_fixed_and_contents_kept(appliance, first_run):
    charger = appliance.charger("C3")
    content = charger.read_bytes()
    os.chown(charger, 0, 0)
    os.chmod(charger, 0o644)
    os.chmod(appliance.passwd, 0o666)
    passwd = appliance.passwd.read_bytes()
    proc = appliance.provision()
    assert owner_mode(charger) == (0, DAEMON_GID, 0o640) and charger.read_bytes() == content
    assert owner_mode(appliance.passwd) == (0, MOSQUITTO_GID, 0o640) and appliance.passwd.read_bytes() == passwd
    assert f"fixed {charger}" in proc.stdout and "mode 644 -> 640" in proc.stdout, describe(proc)


def test_the_central_token_from_standard_input_or_a_file(tmp_path, appliance, first_run):
    proc = appliance.provision("--central-token", "-", input="tok-from-office-123\n")
    assert appliance.token.read_text() == "tok-from-office-123\n"
    assert owner_mode(appliance.token) == (0, DAEMON_GID, 0o640)
    assert "tok-from-office-123" not in proc.stdout + proc.stderr
    assert "STILL MISSING" not in proc.stdout, describe(proc)
    source = tmp_path / "token.txt"
    source.write_text("tok-second\n")
    appliance.provision("--central-token-file", source)
    assert appliance.token.read_text() == "tok-second\n"
    proc = appliance.provision("--central-token", "tok-on-argv", expect=2)
    assert "standard input" in proc.stderr and not appliance.token.read_text().startswith("tok-on"), describe(proc)


def test_without_the_groups_it_says_so_and_leaves_the_files_group_root(tmp_path):
    appliance = Appliance(tmp_path, groups=False)
    proc = appliance.provision()
    assert "group microgrid-edge is not in" in proc.stderr and "group mosquitto is not in" in proc.stderr, \
        describe(proc)
    assert owner_mode(appliance.mqtt_password) == (0, 0, 0o640)


def _one_line_error(proc, *words):
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("microgrid-edge: error: "), describe(proc)
    for word in words:
        assert word in lines[0], f"expected the error to name {word!r}\n{describe(proc)}"


def test_an_unreadable_configuration_is_one_line_naming_it(appliance, tmp_path):
    missing = tmp_path / "no-such-site.yaml"
    proc = run(["provision", "--config", missing, "--acl", SHIPPED_ACL, "--root", appliance.root])
    assert proc.returncode == 2
    _one_line_error(proc, str(missing))
    assert not appliance.passwd.exists()


@pytest.mark.parametrize("acl_text,words", [
    pytest.param("# nobody\npattern read microgrid-edge/+/status\n", ["names no user"], id="no-users"),
    pytest.param("user microgrid-edge\nuser meter/main\n", [":2:", "meter/main"], id="slash"),
    pytest.param("user microgrid-edge\nuser panel+1\n", [":2:", "panel+1"], id="plus"),
    pytest.param("user microgrid-edge\n# user a comment\nuser pan#el\n", [":3:", "pan#el"], id="hash"),
])
def test_a_bad_acl_is_one_line_naming_the_file_and_nothing_is_written(appliance, tmp_path, acl_text, words):
    acl = tmp_path / "bad.acl"
    acl.write_text(acl_text)
    proc = run(["provision", "--config", SHIPPED_SITE, "--acl", acl, "--root", appliance.root])
    assert proc.returncode == 2
    _one_line_error(proc, str(acl), *words)
    assert [p for p in appliance.root.rglob("*") if p.is_file()] == [appliance.root / "etc" / "group"]


def test_a_bad_panel_name_is_refused(appliance):
    proc = appliance.provision("--panel", "gym/1", expect=2)
    _one_line_error(proc, "--panel gym/1")
    assert not appliance.passwd.exists()


def test_an_unwritable_folder_is_one_line_and_leaves_no_partial_files(appliance):
    # /etc/mosquitto is a file, so the broker's password file cannot be written (root may
    # write anywhere else): nothing is, not even the daemon's files, which could be.
    appliance.path("/etc/mosquitto").write_text("not a folder\n")
    proc = appliance.provision(expect=1)
    _one_line_error(proc, str(appliance.path("/etc/mosquitto")), "is not a folder")
    assert not appliance.mqtt_password.exists() and not appliance.charger("C1").exists(), \
        "no file may be written when one of them cannot be"
    assert not list(appliance.root.rglob(".*provision*")), "no temporary file may be left"
    assert not appliance.credentials_files()

"""The Debian package (scripts/package) installed on a clean Debian 12 root, as on an
appliance: debootstrap's bookworm minbase with the packages the .deb depends on
(scripts/setup-debian-root, cached under /var/cache/microgrid-edge), copied afresh for
this run, the .deb installed with apt inside `chroot`, then the daemon started from there.

The package is the one scripts/test made (MGE_DEB), or else one made here from the binary
under test (MGE_BINARY or .build/release/microgrid-edge, which must be built with
--static-swift-stdlib). No systemd runs in the chroot: the maintainer scripts must cope,
and the daemon is started as the unit would start it (its user, groups, command line and
environment file). The root needs the network to the Debian mirror the first time it is
made; without it this test fails, saying so.

Only loopback is used: the daemon's OCPP endpoint, MQTT broker and central program are
pointed at 127.0.0.1 through the documented MGE_ overrides (the installed site.yaml names
the building's addresses and the program's real URL); nothing else of the installed
configuration changes.
"""
import configparser
import json
import re
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mge_helpers import BINARY, CRASH_MARKERS, REPO

HERE = Path(__file__).resolve().parent
OVERLAY = REPO / "rootfs-overlay"
UNIT = "/lib/systemd/system/microgrid-edge.service"
PEERS = HERE / "ocpp_peers.py"
SHIPPED_CONFFILES = sorted("/" + str(p.relative_to(OVERLAY))
                           for p in (OVERLAY / "etc").rglob("*") if p.is_file())

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (debootstrap, chroot, mount)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(cmd, timeout=300, check=True, **kwargs):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and p.returncode != 0:
        pytest.fail(f"command failed (exit {p.returncode}): {shlex.join(map(str, cmd))}\n"
                    f"--- stdout ---\n{p.stdout[-3000:]}\n--- stderr ---\n{p.stderr[-3000:]}", pytrace=False)
    return p


class Root:
    """A fresh copy of the cached Debian root, with /proc mounted while it is in use."""

    ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive",
           "HOME": "/root"}

    def __init__(self, path):
        self.path = Path(path)

    def __truediv__(self, inside):
        return self.path / str(inside).lstrip("/")

    def run(self, *args, userspec=None, groups=None, check=True, timeout=300, env=None):
        cmd = ["chroot"]
        if userspec:
            cmd += [f"--userspec={userspec}"]
        if groups:
            cmd += [f"--groups={groups}"]
        full_env = dict(self.ENV, **(env or {}))
        return sh(cmd + [str(self.path), *map(str, args)], timeout=timeout, check=check, env=full_env)

    def popen(self, args, userspec, groups, env, log):
        cmd = ["chroot", f"--userspec={userspec}", f"--groups={groups}", str(self.path), *map(str, args)]
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(self.ENV, **env),
                                start_new_session=True)

    def mount_proc(self):
        (self / "proc").mkdir(exist_ok=True)
        sh(["mount", "-t", "proc", "proc", str(self / "proc")])

    def unmount_all(self):
        # Whatever is mounted inside the copy, deepest first, so that removing it can never
        # reach into the machine's own /proc.
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        inside = [p for p in points if p == str(self.path) or p.startswith(str(self.path) + "/")]
        for point in sorted(inside, key=len, reverse=True):
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True)
        with open("/proc/self/mountinfo") as f:
            return not [line for line in f if line.split()[4].startswith(str(self.path) + "/")]


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    """The .deb under test: MGE_DEB (scripts/test's), or one made here from the binary."""
    given = os.environ.get("MGE_DEB")
    if given:
        path = Path(given)
        assert path.is_file(), f"MGE_DEB={given} is not a file"
        return path
    out = tmp_path_factory.mktemp("dist")
    sh([str(REPO / "scripts" / "package"), "--binary", str(BINARY), "--out", str(out), "--no-lintian"], timeout=600)
    debs = list(out.glob("microgrid-edge_*.deb"))
    assert len(debs) == 1, f"scripts/package made {debs} in {out}"
    return debs[0]


@pytest.fixture(scope="module")
def cached_root():
    p = subprocess.run([str(REPO / "scripts" / "setup-debian-root")], capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        pytest.fail("could not make the Debian 12 root that the package is installed into "
                    "(scripts/setup-debian-root; it needs the network to the Debian mirror the first time):\n"
                    + p.stderr[-3000:], pytrace=False)
    return Path(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def installed(deb, cached_root, tmp_path_factory):
    """A fresh copy of the cached root with the package installed in it (apt, in the chroot)."""
    base = Path(tmp_path_factory.mktemp("debian-root"))
    root = Root(base / "root")
    sh(["cp", "-a", "--reflink=auto", str(cached_root), str(root.path)], timeout=600)
    try:
        root.mount_proc()
        assert not (root / "run/systemd/system").exists(), "the root must not look like a booted systemd"
        shutil.copy(deb, root / "tmp" / deb.name)
        inside = f"/tmp/{deb.name}"
        # Everything the package needs must already be in the root (apt resolves it there,
        # with no download): a new dependency must be added to scripts/setup-debian-root.
        plan = root.run("apt-get", "install", "-s", "-y", inside)
        extra = [line.split()[1] for line in plan.stdout.splitlines()
                 if line.startswith("Inst ") and line.split()[1] != "microgrid-edge"]
        assert not extra, (f"the package needs {extra}, which the cached root lacks: add them to "
                           f"scripts/setup-debian-root's list")
        # (Not --no-download: apt then looks for the local .deb among its downloads.)
        install = root.run("apt-get", "install", "-y", inside)
        root.install_log = install.stdout + install.stderr
        root.deb_inside = inside
        yield root
    finally:
        # The copy goes (a few hundred MB), but only once nothing is mounted in it.
        if root.unmount_all():
            shutil.rmtree(base, ignore_errors=True)


def unit_settings():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(OVERLAY / "lib" / "systemd" / "system" / "microgrid-edge.service")
    return parser["Service"]


def stat_of(root, path):
    """(uid, gid, mode) of a file in the root: numbers, as the root's own passwd gives them."""
    st = os.lstat(root / path)
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


def ids(root, name):
    """uid, gid and groups of `name` as the root's own files say (not this machine's)."""
    passwd = root.run("getent", "passwd", name).stdout.strip().split(":")
    groups = root.run("id", "-Gn", name).stdout.split()
    return int(passwd[2]), int(passwd[3]), passwd[5], passwd[6], groups


def test_files_land_where_the_unit_expects_them(installed):
    root = installed
    service = unit_settings()
    for key in ("ExecStart", "ExecStartPre"):
        program = service[key].split()[0]
        assert root.run("test", "-x", program, check=False).returncode == 0, \
            f"{key}={service[key]}: {program} is not an executable in the installed root"
    # The command is a symlink to the real binary, whose OCPP schemas lie beside it.
    assert os.readlink(root / "usr/bin/microgrid-edge") == "../lib/microgrid-edge/microgrid-edge"
    bundle = root / "usr/lib/microgrid-edge/microgrid-edge_OCPP.resources/Schemas"
    assert sorted(p.name for p in bundle.iterdir()) == ["v201", "v21"]
    assert len(list((bundle / "v21").glob("*.json"))) > 100
    version = root.run("/usr/bin/microgrid-edge", "--version").stdout.strip()
    assert root.deb_inside.split("_")[1].startswith(version + "-"), (version, root.deb_inside)

    # The unit, the udev rule and the /etc files are rootfs-overlay's, byte for byte.
    for f in [UNIT, "/lib/udev/rules.d/60-microgrid-edge-gpio.rules", *SHIPPED_CONFFILES]:
        assert (root / f).read_bytes() == (OVERLAY / f.lstrip("/")).read_bytes(), f"{f} differs from rootfs-overlay"
    assert (root / "etc/mosquitto/conf.d/microgrid-edge.conf").is_file()
    conffiles = root.run("dpkg-query", "--control-show", "microgrid-edge", "conffiles").stdout.split()
    assert sorted(conffiles) == SHIPPED_CONFFILES
    # Enabled as deb-systemd-helper does it, with no systemd running.
    wants = root / "etc/systemd/system/multi-user.target.wants/microgrid-edge.service"
    assert os.readlink(wants) == UNIT
    for doc in ("copyright", "changelog.Debian.gz", "README.md"):
        assert (root / "usr/share/doc/microgrid-edge" / doc).is_file(), doc
    assert (root / "usr/share/man/man1/microgrid-edge.1.gz").is_file()


def test_user_group_and_folders(installed):
    root = installed
    uid, gid, home, shell, groups = ids(root, "microgrid-edge")
    assert uid < 1000 and shell == "/usr/sbin/nologin" and home == "/var/lib/microgrid-edge"
    assert "microgrid-edge" in groups and "gpio" in groups, groups
    # The state folder the unit's StateDirectory= names, with the mode it keeps (0750).
    assert stat_of(root, "/var/lib/microgrid-edge") == (uid, gid, 0o750)
    assert unit_settings()["StateDirectoryMode"] == "0750"
    # The chargers' passwords go in /etc/microgrid-edge/ocpp: root's, readable by the group.
    assert stat_of(root, "/etc/microgrid-edge/ocpp") == (0, gid, 0o750)


def test_check_config_passes_as_the_service_user(installed):
    p = installed.run("/usr/bin/microgrid-edge", "check-config", "/etc/microgrid-edge/site.yaml",
                      userspec="microgrid-edge:microgrid-edge", groups="gpio", check=False)
    assert p.returncode == 0, f"check-config failed in the installed root:\n{p.stdout}\n{p.stderr}"
    # Installed before its secrets: it says which file it waits for.
    assert "/etc/microgrid-edge/mqtt-password" in p.stdout, p.stdout


def provisioned_passwords(root):
    """`microgrid-edge provision` inside the root, as the technician runs it after the
    install; returns {user or charger id: password} from the credentials file it wrote."""
    creds = "/root/credentials.txt"
    p = root.run("microgrid-edge", "provision", "--config", "/etc/microgrid-edge/site.yaml",
                 "--credentials-out", creds)
    assert "STILL MISSING" in p.stdout, p.stdout            # no central token given: it says so
    text = (root / creds).read_text()
    assert stat_of(root, creds)[2] == 0o600
    found = {}
    for line in text.splitlines():
        words = line.strip().split()
        if len(words) >= 3 and words[0] in ("MQTT", "charger") and words[-2].endswith(":"):
            found[words[-2].rstrip(":")] = words[-1]
    return found, p.stdout


def test_provision_then_the_daemon_runs_from_the_installed_files(installed, tmp_path):
    """As on an appliance: provision makes the secrets with the documented owners and modes;
    the root's own mosquitto runs the installed drop-in's ACL and the provisioned password
    file (on a free port); the daemon starts as the unit starts it (its user, groups,
    command line and environment file), logs in to that broker with its provisioned
    password, and an OCPP 2.1 charge point connects with its provisioned password, which
    loads the schemas from beside the installed binary (Bundle.module falls back to the
    build folder, which is not in the root: a package without them would crash here)."""
    root = installed
    service = unit_settings()
    passwords, summary = provisioned_passwords(root)
    assert "C1" in passwords and "meter-main" in passwords, (passwords.keys(), summary)
    assert "microgrid-edge" not in passwords, "the appliance's own password is never shown"
    _, appliance_gid, _, _, _ = ids(root, "microgrid-edge")
    mosquitto_gid = int(root.run("getent", "group", "mosquitto").stdout.split(":")[2])
    for path, gid in (("/etc/microgrid-edge/mqtt-password", appliance_gid),
                      ("/etc/microgrid-edge/ocpp/C1.password", appliance_gid),
                      ("/etc/mosquitto/microgrid-edge.passwd", mosquitto_gid)):
        assert stat_of(root, path) == (0, gid, 0o640), (path, stat_of(root, path))
    # Provisioning again changes nothing.
    again = root.run("microgrid-edge", "provision", "--config", "/etc/microgrid-edge/site.yaml",
                     "--credentials-out", "/root/credentials-2.txt")
    assert "Nothing was created or changed" in again.stdout, again.stdout

    # The root's mosquitto with the installed ACL and the provisioned users, on a free port.
    mqtt_port = free_port()
    (root / "etc/mosquitto/test.conf").write_text(
        f"listener {mqtt_port} 127.0.0.1\nallow_anonymous false\n"
        "password_file /etc/mosquitto/microgrid-edge.passwd\nacl_file /etc/mosquitto/microgrid-edge.acl\n")
    broker_log = open(tmp_path / "mosquitto.log", "w")
    broker = root.popen(["mosquitto", "-c", "/etc/mosquitto/test.conf"], userspec="mosquitto:mosquitto",
                        groups="mosquitto", env={}, log=broker_log)
    ocpp_port = free_port()
    env = {
        "MGE_OCPP__HOST": "127.0.0.1", "MGE_OCPP__PORT": str(ocpp_port),
        "MGE_MQTT__HOST": "127.0.0.1", "MGE_MQTT__PORT": str(mqtt_port),
        "MGE_CENTRAL__BASE_URL": f"http://127.0.0.1:{free_port()}/api",  # nobody listens there
        "MGE_METRICS__PORT": "0",
    }
    for line in (root / "etc/microgrid-edge/environment").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env.setdefault(key.strip(), value.strip())
    args = shlex.split(service["ExecStart"])
    log_path = tmp_path / "daemon.log"
    with open(log_path, "w") as log:
        daemon = root.popen(args, userspec=f"{service['User']}:{service['Group']}",
                            groups=service["SupplementaryGroups"], env=env, log=log)
    try:
        deadline = time.monotonic() + 20
        while "MQTT connected" not in log_path.read_text() and time.monotonic() < deadline:
            assert daemon.poll() is None, f"the daemon exited ({daemon.returncode}):\n{log_path.read_text()[-4000:]}"
            time.sleep(0.2)
        assert "MQTT connected" in log_path.read_text(), (
            f"the daemon did not log in to the root's broker with its provisioned password:\n"
            f"{log_path.read_text()[-3000:]}\n{(tmp_path / 'mosquitto.log').read_text()[-2000:]}")
        peers = subprocess.run(
            [sys.executable, str(PEERS), "--url", f"ws://127.0.0.1:{ocpp_port}/ocpp",
             "--charger", f"C1:2.1:{passwords['C1']}", "--duration", "6", "--connect-timeout", "15"],
            capture_output=True, text=True, timeout=90)
        summaries = [json.loads(l) for l in peers.stdout.splitlines() if l.startswith("{")]
        text = log_path.read_text()
        assert daemon.poll() is None, f"the daemon exited ({daemon.returncode}) when a charger connected:\n{text[-4000:]}"
        assert summaries and not summaries[0]["gave_up"], f"C1 could not connect:\n{peers.stderr[-3000:]}\n{text[-3000:]}"
        # Its BootNotification was accepted (validated against the installed schemas).
        assert summaries[0]["boots"], summaries
        assert not summaries[0]["violations"] and not summaries[0]["call_errors"], summaries
        assert "metrics endpoint ready" in text, text[-3000:]
    finally:
        if daemon.poll() is None:
            os.kill(daemon.pid, signal.SIGTERM)
        try:
            code = daemon.wait(timeout=int(service["TimeoutStopSec"]))
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
            code = "killed"
        if broker.poll() is None:
            broker.terminate()
            broker.wait(10)
        broker_log.close()
    text = log_path.read_text()
    assert code == 0, f"the daemon did not stop cleanly on SIGTERM (exit {code}):\n{text[-4000:]}"
    assert not [m for m in CRASH_MARKERS if m in text], text[-4000:]
    # No secret in its log.
    assert not [k for k, pw in passwords.items() if pw in text], "a provisioned password is in the daemon's log"
    # It made its databases in the state folder, as its user.
    uid, _, _, _, _ = ids(root, "microgrid-edge")
    made = sorted(p.name for p in (root / "var/lib/microgrid-edge").iterdir())
    assert "state.db" in made and "store.db" in made, made
    assert os.stat(root / "var/lib/microgrid-edge/state.db").st_uid == uid


def test_systemd_analyze_verify_passes_on_the_installed_unit(installed):
    p = installed.run("systemd-analyze", "verify", UNIT, check=False)
    assert p.returncode == 0 and "microgrid-edge" not in p.stdout + p.stderr, \
        f"systemd-analyze verify {UNIT} in the installed root:\n{p.stdout}\n{p.stderr}"


def test_reinstall_keeps_a_changed_conffile(installed):
    root = installed
    env_file = root / "etc/microgrid-edge/environment"
    env_file.write_text(env_file.read_text() + "MGE_SITE__IMPORT_LIMIT_KW=700\n")
    root.run("dpkg", "-i", root.deb_inside)
    assert "MGE_SITE__IMPORT_LIMIT_KW=700" in env_file.read_text()


def test_remove_keeps_the_state_and_purge_removes_it(installed):
    # Last: it takes the package away.
    root = installed
    marker = root / "var/lib/microgrid-edge/kept-by-remove"
    marker.write_text("the billing period's peak lives here\n")
    root.run("dpkg", "-r", "microgrid-edge")
    assert marker.exists(), "dpkg -r removed /var/lib/microgrid-edge"
    assert (root / "etc/microgrid-edge/site.yaml").exists(), "dpkg -r removed a conffile"
    assert not (root / "usr/lib/microgrid-edge").exists() and not (root / UNIT).exists()
    status = root.run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "microgrid-edge").stdout
    assert status.strip() == "rc", status

    root.run("dpkg", "-P", "microgrid-edge")
    assert not (root / "var/lib/microgrid-edge").exists(), "dpkg -P kept /var/lib/microgrid-edge"
    assert not (root / "etc/microgrid-edge").exists(), "dpkg -P kept /etc/microgrid-edge"
    assert not (root / "etc/mosquitto/conf.d/microgrid-edge.conf").exists()
    assert not os.path.lexists(root / "etc/systemd/system/multi-user.target.wants/microgrid-edge.service")
    # The user stays (docs/packaging.md: files may still belong to it).
    assert root.run("getent", "passwd", "microgrid-edge", check=False).returncode == 0


def test_package_refuses_a_binary_of_another_architecture(tmp_path):
    # An x86_64 binary packaged as arm64 would install on a Pi and not run.
    host = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    other = "arm64" if host == "amd64" else "amd64"
    p = subprocess.run([str(REPO / "scripts" / "package"), "--arch", other, "--binary", str(BINARY),
                        "--out", str(tmp_path), "--no-lintian"], capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and f"not {other}" in p.stderr, p.stdout + p.stderr
    assert not list(tmp_path.glob("*.deb"))


def test_depends_asks_for_the_loader_the_binary_needs(deb):
    """The binary is linked with packed relative relocations (RELR): only glibc 2.36's
    loader starts it. dpkg-shlibdeps alone said libc6 (>= 2.35); the package must not let
    apt install it next to a loader that refuses it."""
    with tempfile.TemporaryDirectory() as d:
        sh(["dpkg-deb", "-x", str(deb), d])
        versions = sh(["readelf", "-VW", f"{d}/usr/lib/microgrid-edge/microgrid-edge"]).stdout
    depends = sh(["dpkg-deb", "--field", str(deb), "Depends"]).stdout
    libc = re.search(r"libc6 \(>= ([^)]+)\)", depends)
    assert libc, f"Depends names no libc6 version: {depends}"
    if "GLIBC_ABI_DT_RELR" in versions:
        ok = subprocess.run(["dpkg", "--compare-versions", libc.group(1), "ge", "2.36"]).returncode == 0
        assert ok, f"the binary needs GLIBC_ABI_DT_RELR (glibc 2.36) but Depends says {libc.group(0)}"

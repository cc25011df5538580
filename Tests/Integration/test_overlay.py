"""The files rootfs-overlay ships for the appliance's /etc are valid as shipped."""
from field_site import FieldSite
from mge_helpers import REPO, describe, run

OVERLAY_SITE = REPO / "rootfs-overlay" / "etc" / "microgrid-edge" / "site.yaml"


def test_shipped_site_configuration_passes_check_config(tmp_path):
    # On the appliance the password files live under /etc and the databases under
    # /var/lib; here the same keys are pointed at stand-ins through the documented overrides.
    proc = run(["check-config", OVERLAY_SITE], env=FieldSite(tmp_path).env())
    assert proc.returncode == 0, f"expected the shipped site.yaml to pass check-config\n{describe(proc)}"
    assert "error" not in proc.stdout.lower() + proc.stderr.lower(), describe(proc)


def test_shipped_site_configuration_names_a_missing_password_file(tmp_path):
    # Installed before its secrets: the broker password is read at each connection, so the
    # configuration passes, with a warning naming the file it waits for.
    env = FieldSite(tmp_path).env()
    del env["MGE_MQTT__PASSWORD_FILE"]
    proc = run(["check-config", OVERLAY_SITE], env=env)
    assert proc.returncode == 0, f"expected check-config to pass without the password file yet\n{describe(proc)}"
    warning = [line for line in proc.stdout.splitlines() if "WARNING: mqtt.password_file" in line]
    assert warning and "/etc/microgrid-edge/mqtt-password cannot be read" in warning[0], describe(proc)

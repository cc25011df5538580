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
    env = FieldSite(tmp_path).env()
    del env["MGE_MQTT__PASSWORD_FILE"]
    proc = run(["check-config", OVERLAY_SITE], env=env)
    assert proc.returncode == 2, f"expected exit 2 without the password file\n{describe(proc)}"
    assert "mqtt.password_file" in proc.stderr and "/etc/microgrid-edge/mqtt-password" in proc.stderr, describe(proc)

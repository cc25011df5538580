"""The appliance's shipped mosquitto configuration, checked against a real broker.

Every test runs mosquitto with rootfs-overlay/etc/mosquitto/microgrid-edge.acl as shipped
(see mqtt_broker.Broker) and the users microgrid-edge (the appliance), meter-main,
meter-ev, homeassistant and panel-lobby.

Proving that a message was NOT delivered: after the message under test, the same client
publishes a "sentinel" on a topic it may write and the observer may read, and the test
waits for the sentinel. A connection's messages reach a subscriber in order, so once the
sentinel is there, the message under test would have arrived before it had the broker let
it through. (No fixed sleeps: the whole file runs in about ten seconds.)
"""
import socket
import struct
import uuid
from pathlib import Path

import pytest

from mqtt_broker import (DEFAULT_USERS, SHIPPED_ACL, SHIPPED_CONF, Broker, Collector,
                         ConnectRefused)

SITE = "microgrid-edge/s1"
NOT_AUTHORIZED = 135            # MQTT v5 reason code 0x87
BAD_CREDENTIALS = 134           # MQTT v5 reason code 0x86 (paho maps v3.1.1 codes onto these)
PROTOCOLS = [pytest.param(5, id="mqtt5"), pytest.param(311, id="mqtt311")]


# -- helpers ------------------------------------------------------------------------------

def unique(label):
    return f"{label}-{uuid.uuid4().hex[:10]}".encode()


def sentinel_topic(user):
    """A topic `user` may write and the appliance may read."""
    if user.startswith("meter-"):
        return f"building/meters/{user[len('meter-'):]}/sentinel"
    return f"{SITE}/command/{user}"


def flush(publisher, user, seen):
    """Publish a sentinel from `publisher` (logged in as `user`) and wait until the
    collector `seen` has it: afterwards, anything `publisher` sent earlier that the broker
    let through has reached `seen` too."""
    payload = unique("sentinel")
    rc = publisher.publish_and_wait(sentinel_topic(user), payload, qos=1)
    got = seen.wait_for(lambda m: m.payload == payload, timeout=5)
    assert got is not None, (
        f"test setup: expected {user}'s sentinel on {sentinel_topic(user)} to reach the "
        f"observer (PUBACK reason {rc}), but it never arrived; received: {seen.messages}")


def describe(messages):
    return "; ".join(f"{m.topic}={m.payload!r}{' (retained)' if m.retain else ''}"
                     for m in messages) or "nothing"


def assert_publish_denied(broker, user, topic, protocol, observer_seen, retain=False):
    """`user` publishes (QoS 1) on `topic`; the broker must drop it: the observer, who may
    read `topic`, never gets it, and with MQTT v5 the PUBACK says 135 Not authorized."""
    client = broker.client(user, protocol=protocol)
    payload = unique(f"forged-by-{user}")
    rc = client.publish_and_wait(topic, payload, qos=1, retain=retain)
    flush(client, user, observer_seen)
    leaked = [m for m in observer_seen.messages if m.payload == payload]
    assert not leaked, (
        f"expected the broker to drop {user}'s publish on {topic} (the ACL gives {user} no "
        f"write access there), but the observer received it: {describe(leaked)}")
    if protocol == 5:
        assert rc.value == NOT_AUTHORIZED, (
            f"expected MQTT v5 PUBACK reason code {NOT_AUTHORIZED} (Not authorized) for "
            f"{user}'s publish on {topic}, got {rc.value} ({rc})")
    if retain:
        assert_not_retained(broker, topic, payload, user)
    return rc


def assert_not_retained(broker, topic, payload, user):
    """A new subscriber to `topic` gets no retained copy of `payload`. Sentinel: a message
    the appliance retains on another topic, subscribed to second; mosquitto sends the
    retained messages of a SUBSCRIBE while handling it, so they arrive in that order."""
    marker_topic, marker = f"{SITE}/test/retained-marker", unique("marker")
    broker.client("microgrid-edge").publish_and_wait(marker_topic, marker, retain=True)
    late_client = broker.client("microgrid-edge")
    late = Collector(late_client, topic)
    got_marker = Collector(late_client, marker_topic).wait_for(
        lambda m: m.payload == marker, timeout=5)
    assert got_marker is not None, f"test setup: the retained marker on {marker_topic} is missing"
    stored = [m for m in late.messages if m.payload == payload]
    assert not stored, (f"expected no retained message on {topic} after {user}'s denied "
                        f"publish, but a new subscriber got {describe(stored)}")


@pytest.fixture
def appliance(broker):
    return broker.client("microgrid-edge")


@pytest.fixture
def seen(appliance):
    """Everything the appliance user may read (it subscribes to all topics)."""
    return Collector(appliance, "#")


# -- who gets in --------------------------------------------------------------------------

def _remaining_length(n):
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _raw_anonymous_connect_then_publish(broker, protocol, topic, payload):
    """Send an anonymous CONNECT and, without waiting for the CONNACK, a QoS 0 PUBLISH, as
    a hostile client would. Returns the CONNACK's return/reason code (None if none)."""
    level = 5 if protocol == 5 else 4
    props = b"\x00" if level == 5 else b""
    connect_vh = _utf8("MQTT") + bytes([level, 0x02]) + struct.pack("!H", 30) + props
    connect_body = connect_vh + _utf8(f"anon-{uuid.uuid4().hex[:8]}")
    publish_body = _utf8(topic) + props + payload
    packets = (b"\x10" + _remaining_length(len(connect_body)) + connect_body
               + b"\x30" + _remaining_length(len(publish_body)) + publish_body)
    with socket.create_connection((broker.host, broker.port), timeout=5) as s:
        s.sendall(packets)
        data = b""
        try:
            while len(data) < 4:
                chunk = s.recv(64)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
    if len(data) >= 4 and data[0] == 0x20:
        return data[3]
    return None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_anonymous_clients_are_refused_and_cannot_command(broker, seen, protocol):
    with pytest.raises(ConnectRefused) as refused:
        client = broker.client(None, protocol=protocol)
        pytest.fail(f"expected the broker to refuse an anonymous CONNECT (allow_anonymous "
                    f"false), but it accepted it ({client})")
    rc = refused.value.reason_code
    assert rc is not None and rc.value in (NOT_AUTHORIZED, BAD_CREDENTIALS), (
        f"expected CONNACK 'Not authorized' ({NOT_AUTHORIZED}) or 'Bad user name or "
        f"password' ({BAD_CREDENTIALS}) for an anonymous client, got {refused.value}")

    # A hostile client does not wait for the CONNACK: its PUBLISH must go nowhere either.
    topic = f"{SITE}/command/panel-lobby"
    payload = unique("anonymous-command")
    code = _raw_anonymous_connect_then_publish(broker, protocol, topic, payload)
    expected_codes = (NOT_AUTHORIZED, BAD_CREDENTIALS) if protocol == 5 else (4, 5)
    assert code in expected_codes, (
        f"expected the raw anonymous CONNECT to be refused with one of {expected_codes}, "
        f"got CONNACK code {code}")
    flush(broker.client("panel-lobby"), "panel-lobby", seen)
    leaked = [m for m in seen.messages if m.payload == payload]
    assert not leaked, (f"expected an anonymous client's command on {topic} to be dropped, "
                        f"but the appliance received {describe(leaked)}")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("username,password", [
    pytest.param("panel-lobby", "not-the-password", id="wrong-password"),
    pytest.param("microgrid-edge", "", id="empty-password"),
    pytest.param("no-such-user", "no-such-user-pw", id="unknown-user"),
])
def test_wrong_credentials_are_refused(broker, protocol, username, password):
    try:
        broker.client(username, password, protocol=protocol)
    except ConnectRefused as e:
        assert e.reason_code is not None and e.reason_code.value in (
            NOT_AUTHORIZED, BAD_CREDENTIALS), (
            f"expected CONNACK 'Not authorized' or 'Bad user name or password' for "
            f"{username!r} with a wrong password, got {e}")
    else:
        pytest.fail(f"expected the broker to refuse {username!r} with password "
                    f"{password!r}, but it accepted the connection")


@pytest.mark.parametrize("user", DEFAULT_USERS)
def test_every_shipped_example_user_can_log_in(broker, user):
    client = broker.client(user)
    assert client.is_connected(), f"expected {user} to be connected with its password"


# -- meters -------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_panel_cannot_write_a_meter_topic(broker, appliance, protocol):
    meters = Collector(appliance, "building/meters/#")
    topic = "building/meters/main/power"
    # The panel publishes, then the meter gateway: if the panel's message got through it
    # would be before the gateway's, which is the positive control.
    panel = broker.client("panel-lobby", protocol=protocol)
    forged = unique("forged-power")
    rc = panel.publish_and_wait(topic, forged, qos=1, retain=True)
    meter = broker.client("meter-main", protocol=protocol)
    genuine = unique("power")
    meter_rc = meter.publish_and_wait(topic, genuine, qos=1)
    got = meters.wait_for(lambda m: m.payload == genuine, timeout=5)
    assert got is not None, (
        f"positive control: expected meter-main's publish on {topic} to reach the appliance "
        f"(PUBACK {meter_rc}), but it did not; the appliance received "
        f"{describe(meters.messages)}")
    leaked = [m for m in meters.messages if m.payload == forged]
    assert not leaked, (
        f"expected panel-lobby's publish on {topic} to be dropped (panels may not write "
        f"meter topics), but the appliance received {describe(leaked)}")
    if protocol == 5:
        assert rc.value == NOT_AUTHORIZED, (
            f"expected MQTT v5 PUBACK reason code {NOT_AUTHORIZED} (Not authorized) for "
            f"panel-lobby's publish on {topic}, got {rc.value} ({rc})")
        assert not meter_rc.is_failure, (
            f"expected meter-main's publish on its own topic to be acknowledged without "
            f"error, got {meter_rc.value} ({meter_rc})")
    assert_not_retained(broker, topic, forged, "panel-lobby")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("topic", [
    "building/meters/ev/power",
    "building/meters/ev",
    "building/meters/mainx/power",
    f"{SITE}/state",
    f"{SITE}/status",
    f"{SITE}/setpoints",
    f"{SITE}/command/panel-lobby",
    "homeassistant/status",
])
def test_meter_gateway_writes_only_its_own_subtree(broker, seen, protocol, topic):
    assert_publish_denied(broker, "meter-main", topic, protocol, seen)


def test_meter_gateways_write_their_own_subtrees(broker, seen):
    for user, topic in (("meter-main", "building/meters/main/power"),
                        ("meter-main", "building/meters/main"),
                        ("meter-ev", "building/meters/ev/charger-3/energy")):
        payload = unique("reading")
        rc = broker.client(user).publish_and_wait(topic, payload, qos=1)
        got = seen.wait_for(lambda m: m.payload == payload, timeout=5)
        assert got is not None and not rc.is_failure, (
            f"expected {user}'s publish on {topic} to reach the appliance, got PUBACK "
            f"{rc.value} ({rc}) and delivery {got}")


# -- panels: commands and the appliance's topics ------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("user", ["panel-lobby", "homeassistant", "meter-ev"])
def test_a_user_can_command_under_its_own_name(broker, appliance, protocol, user):
    commands = Collector(appliance, f"{SITE}/command/+")
    topic = f"{SITE}/command/{user}"
    payload = unique('{"set":"reserve","value":40}')
    rc = broker.client(user, protocol=protocol).publish_and_wait(topic, payload, qos=1)
    got = commands.wait_for(lambda m: m.payload == payload, timeout=5)
    assert got is not None, (
        f"expected {user}'s command on {topic} to reach the appliance subscribed to "
        f"{SITE}/command/+ (PUBACK {rc.value} {rc}), but it received "
        f"{describe(commands.messages)}")
    assert got.topic.rsplit("/", 1)[-1] == user, (
        f"expected the command topic's last level to name the sender {user}, got {got.topic}")
    assert not rc.is_failure, f"expected no error in the PUBACK, got {rc.value} ({rc})"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("topic", [
    f"{SITE}/command/homeassistant",      # impersonating another panel
    f"{SITE}/command/microgrid-edge",     # impersonating the appliance
    f"{SITE}/command/panel-lobby/extra",  # deeper than command/+ (not its own topic)
    f"{SITE}/state",
    f"{SITE}/status",
    f"{SITE}/setpoints",
    f"{SITE}/reply/panel-lobby",
    "homeassistant/status",               # only the homeassistant user sends the birth message
    "homeassistant/sensor/microgrid_edge_s1/config",
])
def test_panel_cannot_impersonate_or_write_appliance_topics(broker, seen, protocol, topic):
    assert_publish_denied(broker, "panel-lobby", topic, protocol, seen,
                          retain=topic.endswith(("/state", "/status", "/config")))


def test_homeassistant_sends_its_birth_message(broker, seen):
    payload = unique("online")
    rc = broker.client("homeassistant").publish_and_wait("homeassistant/status", payload)
    got = seen.wait_for(lambda m: m.payload == payload, timeout=5)
    assert got is not None and not rc.is_failure, (
        f"expected the homeassistant user's birth message on homeassistant/status to reach "
        f"the appliance, got PUBACK {rc.value} ({rc}) and delivery {got}")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_panel_reads_state_and_its_own_replies_only(broker, appliance, protocol):
    # Retained before the panel subscribes, as the appliance leaves them.
    retained = {
        f"{SITE}/status": b"online",
        f"{SITE}/state": b'{"soc":0.62}',
        f"{SITE}/reply/panel-lobby": unique("reply-to-lobby"),
        f"{SITE}/reply/homeassistant": unique("reply-to-ha"),
        f"{SITE}/command/homeassistant": unique("someone-elses-command"),
        "homeassistant/sensor/microgrid_edge_s1/config": b'{"name":"SoC"}',
    }
    for topic, payload in retained.items():
        rc = appliance.publish_and_wait(topic, payload, qos=1, retain=True)
        assert not rc.is_failure, f"test setup: appliance could not publish {topic}: {rc}"

    panel = broker.client("panel-lobby", protocol=protocol)
    everything = Collector(panel, "#")
    # A subscription to someone else's reply topic is granted by mosquitto 2.0 ...
    other = Collector(panel, f"{SITE}/reply/homeassistant")
    # ... and live messages follow the same rules as retained ones.
    live = {f"{SITE}/setpoints": unique("setpoints"),
            f"{SITE}/reply/panel-lobby": unique("live-reply-to-lobby"),
            f"{SITE}/reply/homeassistant": unique("live-reply-to-ha")}
    for topic, payload in live.items():
        appliance.publish_and_wait(topic, payload, qos=1)
    sentinel = unique("state-update")
    appliance.publish_and_wait(f"{SITE}/state", sentinel, qos=1)
    assert everything.wait_for(lambda m: m.payload == sentinel, timeout=5) is not None, (
        f"expected panel-lobby to receive a live update of {SITE}/state, got "
        f"{describe(everything.messages)}")

    got = {(m.topic, m.payload): m for m in everything.messages}
    for topic in (f"{SITE}/status", f"{SITE}/state", f"{SITE}/reply/panel-lobby",
                  "homeassistant/sensor/microgrid_edge_s1/config"):
        m = got.get((topic, retained[topic]))
        assert m is not None and m.retain, (
            f"expected panel-lobby to receive the retained {topic} when it subscribed, "
            f"got {describe(everything.messages)}")
    for topic in (f"{SITE}/setpoints", f"{SITE}/reply/panel-lobby"):
        assert (topic, live[topic]) in got, (
            f"expected panel-lobby to receive the live message on {topic}, "
            f"got {describe(everything.messages)}")

    forbidden = {retained[f"{SITE}/reply/homeassistant"], live[f"{SITE}/reply/homeassistant"],
                 retained[f"{SITE}/command/homeassistant"]}
    leaked = [m for m in everything.messages + other.messages if m.payload in forbidden]
    assert not leaked, (
        f"expected panel-lobby to receive nothing from homeassistant's reply or command "
        f"topics (only the addressee reads a reply), but it got {describe(leaked)}")


def test_reply_reaches_its_addressee(broker, appliance):
    ha = Collector(broker.client("homeassistant"), f"{SITE}/reply/+")
    payload = unique("reply")
    appliance.publish_and_wait(f"{SITE}/reply/homeassistant", payload)
    got = ha.wait_for(lambda m: m.payload == payload, timeout=5)
    assert got is not None, (f"expected homeassistant to receive its reply on "
                             f"{SITE}/reply/homeassistant, got {describe(ha.messages)}")


def test_meter_gateway_cannot_read_other_meters(broker, appliance):
    meter_main = broker.client("meter-main")
    meters = Collector(meter_main, "building/meters/#")
    state = Collector(meter_main, f"{SITE}/state")
    payload = unique("ev-power")
    rc = broker.client("meter-ev").publish_and_wait("building/meters/ev/power", payload)
    assert not rc.is_failure, f"test setup: meter-ev could not publish: {rc}"
    # meter-ev's message was handled when its PUBACK came; the appliance's state update
    # comes later on meter-main's connection, so it is the sentinel.
    sentinel = unique("state")
    appliance.publish_and_wait(f"{SITE}/state", sentinel)
    assert state.wait_for(lambda m: m.payload == sentinel, timeout=5) is not None, (
        f"expected meter-main to read {SITE}/state (every user reads the appliance's "
        f"state), got {describe(state.messages)}")
    assert meters.messages == [], (
        f"expected meter-main to read no meter topics, got {describe(meters.messages)}")


# -- last wills ---------------------------------------------------------------------------

def test_a_panels_last_will_cannot_forge_the_appliance_status(broker, seen):
    status = f"{SITE}/status"
    forged = unique("offline")
    broker.client("panel-lobby", will=(status, forged, 1, True)).drop()
    # Control: a will on a topic the panel may write IS published when it drops.
    allowed = unique("lobby-will")
    broker.client("panel-lobby", will=(f"{SITE}/command/panel-lobby", allowed, 1, False)).drop()
    assert seen.wait_for(lambda m: m.payload == allowed, timeout=5) is not None, (
        f"positive control: expected panel-lobby's will on its own command topic to be "
        f"published when it dropped, got {describe(seen.messages)}")
    # The appliance's own will goes through.
    genuine = unique("offline")
    broker.client("microgrid-edge", will=(status, genuine, 1, True)).drop()
    assert seen.wait_for(lambda m: m.payload == genuine, timeout=5) is not None, (
        f"expected the appliance's last will on {status} to be published when it dropped, "
        f"got {describe(seen.messages)}")
    leaked = [m for m in seen.messages if m.payload == forged]
    assert not leaked, (f"expected panel-lobby's last will on {status} to be dropped, but "
                        f"it was published: {describe(leaked)}")


# -- the shipped files themselves ---------------------------------------------------------

def test_acl_file_has_no_rules_for_anonymous_clients_and_no_inline_comments():
    seen_user = False
    for n, line in enumerate(SHIPPED_ACL.read_text().splitlines(), 1):
        where = f"{SHIPPED_ACL.name}:{n}"
        if not line.strip() or line.startswith("#"):
            continue
        assert not line.lstrip().startswith("#"), (
            f"{where}: expected comments to start in the first column (mosquitto refuses an "
            f"indented '#'), got {line!r}")
        words = line.split()
        assert words[0] in ("user", "topic", "pattern"), (
            f"{where}: expected a `user`, `topic` or `pattern` line, got {line!r}")
        most = 2 if words[0] == "user" else 3
        assert len(words) <= most, (
            f"{where}: expected at most {most} words (no comment after a rule), got {line!r}")
        if words[0] == "user":
            seen_user = True
        assert words[0] != "topic" or seen_user, (
            f"{where}: expected no `topic` line before the first `user` line (it would apply "
            f"to anonymous clients), got {line!r}")


def _assert_shipped_conf_works(broker):
    client = broker.client("panel-lobby")
    assert client.is_connected(), "expected panel-lobby to log in"
    with pytest.raises(ConnectRefused):
        broker.client(None)
        pytest.fail("expected the shipped conf to refuse anonymous clients, but the broker "
                    "accepted one")
    # The shipped ACL is in force: panel-lobby may not write a meter topic.
    seen = Collector(broker.client("microgrid-edge"), "#")
    assert_publish_denied(broker, "panel-lobby", "building/meters/main/power", 5, seen)


def test_shipped_conf_file_loads(tmp_path):
    b = Broker(tmp_path)
    text = b.shipped_conf_text()
    b.use_conf(text)
    with b:
        _assert_shipped_conf_works(b)
        errors = [line for line in b.log().splitlines() if "Error" in line]
        assert not errors, f"expected no errors in the broker's log, got {errors}"


# Debian 12's /etc/mosquitto/mosquitto.conf, used if the machine has none.
DEBIAN_MAIN_CONF = """\
pid_file /run/mosquitto/mosquitto.pid
persistence true
persistence_location /var/lib/mosquitto/
log_dest file /var/log/mosquitto/mosquitto.log
include_dir /etc/mosquitto/conf.d
"""


def test_shipped_conf_file_fits_debians_mosquitto_conf(tmp_path):
    """The conf.d file is read after Debian's mosquitto.conf: no setting may clash."""
    system = Path("/etc/mosquitto/mosquitto.conf")
    main = system.read_text() if system.is_file() else DEBIAN_MAIN_CONF
    b = Broker(tmp_path)
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / SHIPPED_CONF.name).write_text(b.shipped_conf_text())
    out = []
    for line in main.splitlines():
        key = line.split()[0] if line.split() else ""
        if key == "pid_file":
            line = f"pid_file {tmp_path / 'mosquitto.pid'}"
        elif key == "persistence_location":
            line = f"persistence_location {tmp_path}/"
        elif key == "log_dest" and line.split()[1:2] == ["file"]:
            line = f"log_dest file {b.log_file}"
        elif key == "include_dir":
            line = f"include_dir {conf_d}"
        out.append(line)
    assert any(line.startswith("include_dir") for line in out), (
        f"expected {system if system.is_file() else 'the Debian default'} to include a "
        f"conf.d directory, got:\n{main}")
    b.use_conf("\n".join(out) + "\n")
    with b:
        _assert_shipped_conf_works(b)


def test_tls_listener_with_the_shipped_acl(tmp_path):
    with Broker(tmp_path, tls=True) as b:
        assert b.ca_file is not None and Path(b.ca_file).is_file(), "expected a CA file"
        seen = Collector(b.client("microgrid-edge"), "#")
        payload = unique("tls-command")
        b.client("panel-lobby").publish_and_wait(f"{SITE}/command/panel-lobby", payload)
        assert seen.wait_for(lambda m: m.payload == payload, timeout=5) is not None, (
            f"expected a command over TLS to reach the appliance, got {describe(seen.messages)}")
        with pytest.raises(ConnectRefused):
            b.client(None)
            pytest.fail("expected an anonymous TLS client to be refused")


def test_broker_restarts_on_the_same_port(broker, appliance):
    port = broker.port
    broker.restart()
    assert broker.port == port and broker.running, (
        f"expected the broker back on port {port}, got port {broker.port}, "
        f"running={broker.running}")
    client = broker.client("panel-lobby")
    assert client.is_connected(), "expected a new client to connect after the restart"

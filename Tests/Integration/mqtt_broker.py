"""A real mosquitto broker for the integration tests, with the appliance's shipped ACL.

No pytest at import: the module can be used from a script as well as from fixtures.

    with Broker(tmp_path) as broker:          # default users, password f"{name}-pw"
        appliance = broker.client("microgrid-edge", "microgrid-edge-pw")
        meters = Collector(appliance, "building/meters/#")
        meter = broker.client("meter-main", "meter-main-pw")
        meter.publish("building/meters/main/power", b"12.5", qos=1).wait_for_publish(5)
        msg = meters.wait_for(lambda m: m.topic.endswith("/power"), timeout=2)

The broker listens on 127.0.0.1 at a free port and uses the SHIPPED ACL file
(rootfs-overlay/etc/mosquitto/microgrid-edge.acl) in place, so the tests check exactly
the rules the appliance ships. Everything else (password file, configuration, log, TLS
certificates) is written into the directory given to the constructor.
"""
import itertools
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import namedtuple
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[2]
SHIPPED_ACL = REPO / "rootfs-overlay" / "etc" / "mosquitto" / "microgrid-edge.acl"
SHIPPED_CONF = REPO / "rootfs-overlay" / "etc" / "mosquitto" / "conf.d" / "microgrid-edge.conf"
MOSQUITTO = Path(os.environ.get("MOSQUITTO") or "/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = os.environ.get("MOSQUITTO_PASSWD") or shutil.which("mosquitto_passwd") \
    or "/usr/bin/mosquitto_passwd"

DEFAULT_USERS = ("microgrid-edge", "meter-main", "meter-ev", "homeassistant", "panel-lobby")
HOST = "127.0.0.1"
START_TIMEOUT = 10.0

_client_ids = itertools.count(1)


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on at the moment of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _tail(text, chars=4000):
    return text if len(text) <= chars else "..." + text[-chars:]


def _protocol(protocol):
    """5 -> MQTT v5; 4, 311 or "3.1.1" -> MQTT v3.1.1; 3 or "3.1" -> MQTT v3.1."""
    table = {5: mqtt.MQTTv5, "5": mqtt.MQTTv5, "5.0": mqtt.MQTTv5,
             4: mqtt.MQTTv311, 311: mqtt.MQTTv311, "3.1.1": mqtt.MQTTv311,
             3: mqtt.MQTTv31, "3.1": mqtt.MQTTv31}
    if protocol not in table:
        raise ValueError(f"unknown MQTT protocol {protocol!r} (use 5, 311 or 3)")
    return table[protocol]


class ConnectRefused(ConnectionError):
    """The broker answered CONNECT with a refusal (or closed the connection instead).

    reason_code is paho's ReasonCode; for MQTT v3.1.1 paho maps the CONNACK return code
    onto the v5 codes (5 "not authorised" -> 135, 4 "bad user name or password" -> 134)."""

    def __init__(self, username, reason_code, protocol):
        self.username = username
        self.reason_code = reason_code      # paho ReasonCode, or None if there was no CONNACK
        self.protocol = protocol
        if reason_code is None:
            why = "the connection was closed before a CONNACK arrived"
        else:
            why = f"CONNACK reason code {reason_code.value} ({reason_code})"
        who = f"user {username!r}" if username is not None else "an anonymous client"
        super().__init__(f"broker refused {who} (MQTT protocol {protocol}): {why}")


class BrokerClient(mqtt.Client):
    """A paho-mqtt 2.x client (callback API version 2) that also records the broker's
    acknowledgements: PUBACK/PUBREC reason codes by message id and SUBACK reason codes by
    message id, so tests can see what MQTT v5 says about a denied publish or subscribe.

    It remains a plain paho client: set on_message, publish, subscribe as usual, but chain
    to the on_publish/on_subscribe methods here if you replace those callbacks."""

    def __init__(self, *args, **kwargs):
        super().__init__(CallbackAPIVersion.VERSION2, *args, **kwargs)
        self._acks = threading.Condition()
        self.puback_codes = {}     # mid -> ReasonCode of the PUBACK (QoS 1) or PUBREC/PUBCOMP (QoS 2)
        self.suback_codes = {}     # mid -> list of ReasonCode, one per topic filter
        self.on_publish = self._record_publish
        self.on_subscribe = self._record_subscribe

    def _record_publish(self, client, userdata, mid, reason_code, properties):
        with self._acks:
            self.puback_codes[mid] = reason_code
            self._acks.notify_all()

    def _record_subscribe(self, client, userdata, mid, reason_code_list, properties):
        with self._acks:
            self.suback_codes[mid] = list(reason_code_list)
            self._acks.notify_all()

    def _wait_ack(self, table, mid, timeout, what):
        deadline = time.monotonic() + timeout
        with self._acks:
            while mid not in table:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {what} for message id {mid} within {timeout} s")
                self._acks.wait(left)
            return table[mid]

    def publish_and_wait(self, topic, payload=None, qos=1, retain=False, timeout=5.0,
                         properties=None):
        """Publish and wait until the broker has acknowledged it (QoS 1/2) or the message
        has been written to the socket (QoS 0). Returns the reason code paho reported:
        for MQTT v5 with QoS >= 1 the broker's (e.g. 135 "Not authorized"); for QoS 0 and
        for MQTT v3.1.1 always Success, because those carry no reason code."""
        info = self.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"paho could not send PUBLISH to {topic!r}: "
                               f"{mqtt.error_string(info.rc)}")
        return self._wait_ack(self.puback_codes, info.mid, timeout, "PUBACK")

    def subscribe_and_wait(self, topic_filter, qos=1, timeout=5.0):
        """Subscribe and wait for the SUBACK; returns its list of reason codes."""
        rc, mid = self.subscribe(topic_filter, qos=qos)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"paho could not send SUBSCRIBE {topic_filter!r}: "
                               f"{mqtt.error_string(rc)}")
        return self._wait_ack(self.suback_codes, mid, timeout, "SUBACK")

    def drop(self):
        """Vanish without a DISCONNECT, like a client that crashed or lost power: stop the
        network thread and close the socket, so the broker publishes the last will."""
        # The constructor's reconnect_on_failure, turned off so that the network thread
        # ends when it sees the connection gone (instead of dialling again); shutting the
        # socket down wakes that thread at once, where loop_stop() alone waits up to 1 s.
        self._reconnect_on_failure = False
        sock = self.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.loop_stop()
        if sock is not None:
            sock.close()

    def close(self):
        """Disconnect and stop the network thread (safe to call more than once)."""
        try:
            self.disconnect()
        except Exception:
            pass
        self.loop_stop()


Message = namedtuple("Message", "topic payload retain qos")


class Collector:
    """Subscribes `client` to `topic_filter` and keeps every message that arrives on it.

    It registers a per-filter callback (message_callback_add), so several collectors can
    share one client. The constructor returns after the SUBACK, so a message published
    afterwards cannot be missed. `granted` holds the SUBACK's reason codes."""

    def __init__(self, client, topic_filter, qos=1, timeout=5.0):
        self.client = client
        self.topic_filter = topic_filter
        self._lock = threading.Condition()
        self._messages = []
        client.message_callback_add(topic_filter, self._on_message)
        if isinstance(client, BrokerClient):
            self.granted = client.subscribe_and_wait(topic_filter, qos=qos, timeout=timeout)
        else:
            got = threading.Event()
            codes = []
            previous = client.on_subscribe

            def on_subscribe(c, userdata, mid, reason_code_list, properties):
                codes.extend(reason_code_list)
                got.set()
                if previous:
                    previous(c, userdata, mid, reason_code_list, properties)
            client.on_subscribe = on_subscribe
            client.subscribe(topic_filter, qos=qos)
            if not got.wait(timeout):
                raise TimeoutError(f"no SUBACK for {topic_filter!r} within {timeout} s")
            client.on_subscribe = previous
            self.granted = codes

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self._messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos))
            self._lock.notify_all()

    @property
    def messages(self):
        """A copy of everything received so far, oldest first."""
        with self._lock:
            return list(self._messages)

    def clear(self):
        with self._lock:
            self._messages.clear()

    def wait_for(self, predicate=None, timeout=5.0):
        """The first message (already received or arriving within `timeout` seconds) for
        which predicate(message) is true, or None. predicate=None matches any message."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._lock:
            while True:
                for msg in self._messages[seen:]:
                    if predicate is None or predicate(msg):
                        return msg
                seen = len(self._messages)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(left)

    def stop(self):
        """Unsubscribe and stop collecting."""
        self.client.message_callback_remove(self.topic_filter)
        try:
            self.client.unsubscribe(self.topic_filter)
        except Exception:
            pass


class Broker:
    """A mosquitto process on 127.0.0.1:<free port> using the shipped ACL file.

    users: {username: password}; by default microgrid-edge, meter-main, meter-ev,
    homeassistant and panel-lobby, each with the password f"{name}-pw".
    password_file: use this mosquitto password file as it is (e.g. one `microgrid-edge
    provision` made) instead of writing one from `users`; `users` then only gives
    `client()` its default passwords.
    tls=True: a throwaway CA and a server certificate for 127.0.0.1/localhost are made in
    tmpdir, the listener speaks TLS only, and `ca_file` names the CA for clients.

    Use one Broker per directory. `stop()` is idempotent; `close()` (also __exit__) stops
    the broker and disconnects every client made by `client()`."""

    def __init__(self, tmpdir, users=None, tls=False, password_file=None):
        self.tmpdir = Path(tmpdir)
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        self._users = dict(users) if users is not None else {u: f"{u}-pw" for u in DEFAULT_USERS}
        self.tls = bool(tls)
        self.port = free_port()
        self.acl_file = SHIPPED_ACL
        self.password_file = Path(password_file) if password_file else self.tmpdir / "mosquitto.passwd"
        self.conf_file = self.tmpdir / "mosquitto.conf"
        self.log_file = self.tmpdir / "mosquitto.log"
        self.output_file = self.tmpdir / "mosquitto.out"    # the process's stdout/stderr
        self.ca_file = None
        self.cert_file = None
        self.key_file = None
        self._proc = None
        self._output = None
        self._clients = []
        self._custom_conf = False
        self._started_once = False
        if not SHIPPED_ACL.is_file():
            raise FileNotFoundError(f"the shipped ACL file is missing: {SHIPPED_ACL}")
        if password_file is None:
            self._write_password_file()
        if self.tls:
            self._make_certificates()
        self._write_conf()

    # -- properties -------------------------------------------------------------------

    @property
    def host(self):
        return HOST

    @property
    def users(self):
        """{username: password} (a copy)."""
        return dict(self._users)

    @property
    def pid(self):
        return self._proc.pid if self._proc else None

    @property
    def running(self):
        return self._proc is not None and self._proc.poll() is None

    # -- files ------------------------------------------------------------------------

    def _write_password_file(self):
        if self.password_file.exists():
            self.password_file.unlink()
        if not self._users:
            # mosquitto needs the file to exist; an empty one means nobody can log in.
            self.password_file.write_text("")
            return
        first = True
        for name, password in self._users.items():
            cmd = [MOSQUITTO_PASSWD] + (["-c"] if first else []) + \
                ["-b", str(self.password_file), name, password]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd[:-1])} <password> failed "
                                   f"(exit {proc.returncode}): {proc.stdout}{proc.stderr}")
            first = False

    def _make_certificates(self):
        d = self.tmpdir
        ca_key, ca_crt = d / "ca.key", d / "ca.crt"
        key, csr, crt, ext = d / "server.key", d / "server.csr", d / "server.crt", d / "server.ext"
        ext.write_text("basicConstraints = critical, CA:FALSE\n"
                       "keyUsage = critical, digitalSignature\n"
                       "extendedKeyUsage = serverAuth\n"
                       "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
                       "subjectKeyIdentifier = hash\n"
                       "authorityKeyIdentifier = keyid, issuer\n")
        steps = [
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "2",
             "-keyout", ca_key, "-out", ca_crt, "-subj", "/CN=Microgrid Edge test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
            ["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
             "-CAcreateserial", "-days", "2", "-out", crt, "-extfile", ext],
        ]
        for cmd in steps:
            cmd = [str(c) for c in cmd]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n"
                                   f"{proc.stdout}{proc.stderr}")
        self.ca_file, self.cert_file, self.key_file = ca_crt, crt, key

    def _run_as_line(self):
        # mosquitto started as root drops to the `mosquitto` user, which cannot read files
        # in a private temporary directory; the test broker has no reason to.
        return "user root\n" if os.geteuid() == 0 else ""

    def _write_conf(self):
        lines = [
            "# Written by Tests/Integration/mqtt_broker.py",
            "per_listener_settings false",
            f"listener {self.port} {HOST}",
        ]
        if self.tls:
            lines += [f"cafile {self.ca_file}", f"certfile {self.cert_file}",
                      f"keyfile {self.key_file}"]
        lines += [
            "allow_anonymous false",
            f"password_file {self.password_file}",
            f"acl_file {self.acl_file}",
            "persistence false",
            f"log_dest file {self.log_file}",
            "log_type all",
            # As the shipped conf: small messages go out at once, not after a delayed ACK.
            "set_tcp_nodelay true",
        ]
        self.conf_file.write_text("\n".join(lines) + "\n" + self._run_as_line())

    def shipped_conf_text(self):
        """The shipped conf.d/microgrid-edge.conf with only what must change for a test
        rewritten: every active `listener` line binds 127.0.0.1 (the first on self.port,
        any further one on another free port), password_file is this broker's, acl_file
        is the shipped ACL, and when running as root a `user root` line is appended."""
        out, listeners = [], 0
        for line in SHIPPED_CONF.read_text().splitlines():
            words = line.split()
            key = words[0] if words else ""
            if key == "listener":
                port = self.port if listeners == 0 else free_port()
                listeners += 1
                line = f"listener {port} {HOST}"
            elif key == "password_file":
                line = f"password_file {self.password_file}"
            elif key == "acl_file":
                line = f"acl_file {self.acl_file}"
            out.append(line)
        if listeners == 0:
            raise ValueError(f"{SHIPPED_CONF} has no active `listener` line")
        return "\n".join(out) + "\n" + self._run_as_line()

    def use_conf(self, text):
        """Replace the generated configuration with `text` (takes effect at the next
        start). The process's stdout/stderr still go to output_file, so log() shows the
        broker's messages even if `text` sets no log_dest."""
        if self.running:
            raise RuntimeError("use_conf() while the broker is running; stop() it first")
        self.conf_file.write_text(text)
        self._custom_conf = True

    # -- process ----------------------------------------------------------------------

    def start(self, timeout=START_TIMEOUT):
        """Start mosquitto and wait until its port accepts TCP connections."""
        if self.running:
            return self
        for attempt in range(3):
            self._spawn()
            if self._wait_listening(timeout):
                return self
            self.kill()
            # The free port may have been taken between free_port() and bind(); choose
            # another one, unless the port must stay the same (a restart) or the conf was
            # given verbatim.
            taken = "Address already in use" in self.log()
            if taken and not self._custom_conf and not self._started_once and attempt < 2:
                self.port = free_port()
                self._write_conf()
                continue
            break
        raise RuntimeError(f"mosquitto did not accept connections on {HOST}:{self.port} "
                           f"within {timeout} s (conf {self.conf_file})\n"
                           f"--- mosquitto log (tail) ---\n{_tail(self.log())}")

    def _spawn(self):
        if not MOSQUITTO.is_file():
            raise FileNotFoundError(f"no mosquitto broker at {MOSQUITTO} (run scripts/setup)")
        self._output = open(self.output_file, "ab")
        self._proc = subprocess.Popen([str(MOSQUITTO), "-c", str(self.conf_file)],
                                      stdin=subprocess.DEVNULL, stdout=self._output,
                                      stderr=subprocess.STDOUT, cwd=str(self.tmpdir))

    def _wait_listening(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    self._started_once = True
                    return True
            except OSError:
                time.sleep(0.01)
        return False

    def _reap(self, sig, timeout):
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    pass
                if sig == signal.SIGTERM:
                    self._wake(proc)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        if self._output is not None:
            self._output.close()
            self._output = None

    def _wake(self, proc):
        # mosquitto 2.0 notices SIGTERM when its event loop next wakes up, which can be
        # 100 ms later once clients have come and gone; a TCP connection wakes it at once.
        try:
            proc.wait(0.01)
            return
        except subprocess.TimeoutExpired:
            pass
        try:
            socket.create_connection((HOST, self.port), timeout=0.2).close()
        except OSError:
            pass

    def stop(self, timeout=10.0):
        """SIGTERM and wait (SIGKILL if it has not gone after `timeout` s). Idempotent.
        Clients made by client() keep trying to reconnect, so a restart() finds them back."""
        self._reap(signal.SIGTERM, timeout)

    def kill(self):
        """SIGKILL, as in a crash or power cut: the broker saves nothing and sends no
        last wills. Idempotent."""
        self._reap(signal.SIGKILL, 10.0)

    def restart(self, timeout=START_TIMEOUT):
        """stop() then start() on the same port."""
        self.stop()
        return self.start(timeout)

    def close(self):
        """Disconnect every client made by client(), then stop(). Idempotent."""
        clients, self._clients = self._clients, []
        for c in clients:
            c.close()
        self.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.kill()
        except Exception:
            pass

    def log(self):
        """The broker's log file and its stdout/stderr, as text."""
        parts = []
        for path in (self.log_file, self.output_file):
            try:
                parts.append(path.read_text(errors="replace"))
            except FileNotFoundError:
                pass
        return "".join(parts)

    # -- clients ----------------------------------------------------------------------

    def client(self, username=None, password=None, client_id=None, protocol=5, timeout=10.0,
               keepalive=30, will=None):
        """A BrokerClient (a paho-mqtt 2.x Client, CallbackAPIVersion.VERSION2), connected
        and with loop_start() running. password defaults to the one in `users` when
        username is one of them. will=(topic, payload, qos, retain) sets a last will.
        Raises ConnectRefused, naming the reason code, if the broker refuses."""
        if username is not None and password is None:
            password = self._users.get(username)
        if client_id is None:
            client_id = f"test-{username or 'anonymous'}-{os.getpid()}-{next(_client_ids)}"
        c = BrokerClient(client_id=client_id, protocol=_protocol(protocol))
        if username is not None:
            c.username_pw_set(username, password)
        if self.tls:
            c.tls_set(ca_certs=str(self.ca_file))
        if will is not None:
            c.will_set(*will)
        c.reconnect_delay_set(min_delay=0.1, max_delay=1)

        done = threading.Event()
        result = {}

        def on_connect(client, userdata, flags, reason_code, properties):
            result.setdefault("rc", reason_code)
            done.set()

        def on_disconnect(client, userdata, flags, reason_code, properties):
            result.setdefault("disconnected", reason_code)
            done.set()

        c.on_connect = on_connect
        c.on_disconnect = on_disconnect
        try:
            c.connect(HOST, self.port, keepalive=keepalive)
        except OSError as e:
            raise ConnectionError(f"cannot reach the broker at {HOST}:{self.port}: {e}") from e
        c.loop_start()
        if not done.wait(timeout):
            c.close()
            raise TimeoutError(f"no CONNACK from {HOST}:{self.port} within {timeout} s")
        rc = result.get("rc")
        if rc is None or rc.is_failure:
            c.close()
            raise ConnectRefused(username, rc, protocol)
        c.on_connect = None
        c.on_disconnect = None
        self._clients.append(c)
        return c

"""The building's GPIO wiring, served to the appliance over a Unix socket (the server side of
`Sources/GPIO/EmulatedGPIO.swift`). Standard library only. Importable, and runnable as a
script:

    python3 Tests/Integration/gpio_line_server.py --socket PATH
    -> prints "ready PATH", serves until stdin closes, SIGTERM or SIGINT (exit status 0).

    with LineServer(tmp_path / "gpio.sock") as pins:      # a Raspberry Pi 4 header
        pins.on_output(lambda name, high: ...)            # GPIO5 written: move the switch
        pins.set_input("GPIO17", True)                    # utility available
        assert pins.level("GPIO5") is False               # transfer command not driven

The appliance runs with `gpio: {backend: emulated, emulator_socket: PATH, ...}` and its
production code path (FieldIO, debounce, pulse meter) over these pins.

Protocol 1 (newline-delimited JSON, one object a line, UTF-8, over SOCK_STREAM)
-----------------------------------------------------------------------------
The client sends requests with an integer "id"; the server answers each, in order, with
the same "id" and "ok": true plus the fields below, or "ok": false, "error": KIND,
"detail": TEXT, where KIND is one of no-chip, no-line, busy, refused, closed, io (the
appliance's GPIOError kinds). Levels are electrical (true = high): active-low is the
client's business. Between answers the server pushes edges, which carry no "id":

    {"event": "edge", "handle": H, "high": BOOL, "ns": T}    T: CLOCK_MONOTONIC nanoseconds

    hello    {"protocol": 1}                          -> {"protocol": 1, "server": NAME}
    chips    {}                                       -> {"chips": [{"name", "label",
             "lines": [{"offset", "name" (or null), "used", "consumer" (or null),
                        "output", "active_low"}]}]}
    request  {"chip": STR or null, "line": INT or STR, "output": BOOL, "edges": BOOL,
              "initial": BOOL (outputs: the level to drive at once), "active_low": BOOL
              (shown in chips only), "consumer": STR}
             -> {"handle": H, "chip", "label", "offset", "name", "high"}
    read     {"handle": H}                            -> {"high": BOOL}
    write    {"handle": H, "high": BOOL}              -> {}
    release  {"handle": H}                            -> {}   (unknown handles too)

A chip is found by name ("gpiochip0"), path ("/dev/gpiochip0"), number ("0") or label, as
`LineRequest.chip(_:matchesName:label:)` matches; with no chip, a line by name is looked
for on every chip. A line is held by one request at a time (busy otherwise); a client that
disconnects releases every line it held. Edges go only to a holder that asked for them,
on every change of level, stamped when the level changed. Bias is not part of the
protocol: the server decides a line's idle level (low unless set_input said otherwise).
"""
import argparse
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

PROTOCOL = 1
SERVER_NAME = "gpio_line_server.py"


def raspberry_pi_chips():
    """A Raspberry Pi 4's header chip: gpiochip0, "pinctrl-bcm2711", lines GPIO0..GPIO57."""
    return [("gpiochip0", "pinctrl-bcm2711", [f"GPIO{i}" for i in range(58)])]


def chip_matches(wanted, name, label):
    """The same rule as LineRequest.chip(_:matchesName:label:) in Sources/GPIO/GPIOBackend.swift."""
    bare = wanted[5:] if wanted.startswith("/dev/") else wanted
    number = None
    try:
        number = int(wanted)
    except ValueError:
        pass
    return name == bare or label == wanted or (number is not None and f"gpiochip{number}" == name)


class Refusal(Exception):
    def __init__(self, kind, detail):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class _Line:
    __slots__ = ("chip", "offset", "name", "high", "holder")

    def __init__(self, chip, offset, name):
        self.chip = chip
        self.offset = offset
        self.name = name
        self.high = False
        self.holder = None  # _Hold


class _Hold:
    __slots__ = ("client", "handle", "consumer", "output", "edges", "active_low")

    def __init__(self, client, handle, consumer, output, edges, active_low):
        self.client = client
        self.handle = handle
        self.consumer = consumer
        self.output = output
        self.edges = edges
        self.active_low = active_low


class _Client:
    def __init__(self, sock):
        self.sock = sock
        self.holds = {}  # handle -> _Line
        self.alive = True


class LineServer:
    """Serves chips and lines on `socket_path` from a background thread, from the moment it
    is constructed (the socket exists when __init__ returns).

    chips: [(name, label, [line name or None, ...]), ...]; default: a Raspberry Pi 4 header.
    """

    def __init__(self, socket_path, chips=None):
        self.socket_path = str(socket_path)
        self._lock = threading.Lock()
        self._chips = []
        for name, label, names in (chips if chips is not None else raspberry_pi_chips()):
            self._chips.append((name, label, [_Line(name, i, n) for i, n in enumerate(names)]))
        self._by_name = {}
        for _, _, lines in self._chips:
            for line in lines:
                if line.name is not None:
                    self._by_name.setdefault(line.name, line)
        self._callbacks = []
        self._clients = []
        self._next_handle = 1
        self._closed = False
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.socket_path)
        self._listener.listen(16)
        self._thread = threading.Thread(target=self._accept_loop, name="gpio-line-server", daemon=True)
        self._thread.start()

    # ---- the building's side

    def set_input(self, name, high, at_ns=None):
        """Drives line `name` to `high` (electrical). When the level changes and the holder
        asked for edges, an edge stamped `at_ns` (default: now, CLOCK_MONOTONIC) is pushed to
        it. Driving a line the appliance holds as an output is a ValueError."""
        high = bool(high)
        with self._lock:
            line = self._line(name)
            hold = line.holder
            if hold is not None and hold.output:
                raise ValueError(f"{name} is held as an output by {hold.consumer!r}")
            if line.high == high:
                return
            line.high = high
            if hold is not None and hold.edges:
                stamp = time.monotonic_ns() if at_ns is None else int(at_ns)
                # Sent under the lock: an edge always reaches the client before the answer
                # to any read made after it.
                self._send(hold.client, {"event": "edge", "handle": hold.handle, "high": high, "ns": stamp})

    def level(self, name):
        """The electrical level of line `name`: an output's as last written, an input's as
        driven."""
        with self._lock:
            return self._line(name).high

    def holder(self, name):
        """Who holds line `name` (its consumer), or None."""
        with self._lock:
            hold = self._line(name).holder
            return hold.consumer if hold is not None else None

    def on_output(self, callback):
        """Calls callback(name, high) after every write to an output, and for the initial
        level of every output requested (electrical levels). It runs on the writing client's
        thread after the write is answered: keep it short (start a threading.Timer to move a
        contact later); it may call set_input."""
        with self._lock:
            self._callbacks.append(callback)

    def close(self):
        """Stops serving: every client is disconnected (their lines released) and the socket
        file removed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            clients = list(self._clients)
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        for c in clients:
            self._drop(c)
        self._thread.join(timeout=2)
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- serving

    def _line(self, name):
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no line named {name!r}") from None

    def _accept_loop(self):
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            # A client that stops reading costs it its connection, not the server its thread.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 5, 0))
            client = _Client(sock)
            with self._lock:
                if self._closed:
                    sock.close()
                    return
                self._clients.append(client)
            threading.Thread(target=self._client_loop, args=(client,), name="gpio-line-client",
                             daemon=True).start()

    def _client_loop(self, client):
        buffered = b""
        try:
            while client.alive:
                try:
                    chunk = client.sock.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                buffered += chunk
                while b"\n" in buffered:
                    raw, buffered = buffered.split(b"\n", 1)
                    if raw.strip():
                        self._handle(client, raw)
                if len(buffered) > 1 << 20:
                    break
        finally:
            self._drop(client)

    def _handle(self, client, raw):
        try:
            message = json.loads(raw)
            if not isinstance(message, dict):
                raise ValueError("not an object")
        except ValueError as e:
            with self._lock:
                self._send(client, {"ok": False, "error": "refused", "detail": f"not a JSON object: {e}"})
            return
        notify = []
        with self._lock:
            try:
                answer = self._answer(client, message, notify)
                answer["ok"] = True
            except Refusal as r:
                answer = {"ok": False, "error": r.kind, "detail": r.detail}
            except (KeyError, TypeError, ValueError) as e:
                answer = {"ok": False, "error": "refused", "detail": f"bad request: {e!r}"}
            if "id" in message:
                answer["id"] = message["id"]
            self._send(client, answer)
            callbacks = list(self._callbacks)
        for name, high in notify:
            for callback in callbacks:
                callback(name, high)

    def _answer(self, client, m, notify):
        op = m.get("op")
        if op == "hello":
            return {"protocol": PROTOCOL, "server": SERVER_NAME}
        if op == "chips":
            return {"chips": [self._chip_info(c) for c in self._chips]}
        if op == "request":
            return self._request(client, m, notify)
        if op in ("read", "write"):
            line = client.holds.get(m["handle"])
            if line is None:
                raise Refusal("closed", f"handle {m['handle']} is not held by this client")
            if op == "read":
                return {"high": line.high}
            if not line.holder.output:
                raise Refusal("refused", f"line {line.offset} on {line.chip} is an input")
            high = bool(m["high"])
            line.high = high
            notify.append((self._display(line), high))
            return {}
        if op == "release":
            line = client.holds.pop(m["handle"], None)
            if line is not None:
                line.holder = None
            return {}
        raise Refusal("refused", f"unknown op {op!r}")

    @staticmethod
    def _display(line):
        return line.name if line.name is not None else f"{line.chip}:{line.offset}"

    @staticmethod
    def _chip_info(chip):
        name, label, lines = chip
        return {"name": name, "label": label, "lines": [
            {"offset": l.offset, "name": l.name, "used": l.holder is not None,
             "consumer": l.holder.consumer if l.holder else None,
             "output": bool(l.holder and l.holder.output),
             "active_low": bool(l.holder and l.holder.active_low)} for l in lines]}

    def _request(self, client, m, notify):
        wanted, address = m.get("chip"), m["line"]
        if wanted is not None:
            candidates = [c for c in self._chips if chip_matches(str(wanted), c[0], c[1])]
            if not candidates:
                here = ", ".join(f"{n} ({l})" for n, l, _ in self._chips) or "none"
                raise Refusal("no-chip", f"no chip \"{wanted}\"; chips here: {here}")
        else:
            candidates = self._chips
        if isinstance(address, bool) or not isinstance(address, (int, str)):
            raise Refusal("refused", f"line must be an offset or a name, not {address!r}")
        line = None
        if isinstance(address, int):
            if wanted is None:
                raise Refusal("no-chip", "a line by offset needs a chip")
            name, _, lines = candidates[0]
            if not 0 <= address < len(lines):
                raise Refusal("no-line", f"{name} has {len(lines)} lines, 0 to {len(lines) - 1}")
            line = lines[address]
        else:
            for _, _, lines in candidates:
                line = next((l for l in lines if l.name == address), None)
                if line is not None:
                    break
            if line is None:
                where = ", ".join(f"{n} ({l})" for n, l, _ in candidates)
                raise Refusal("no-line", f"no line named \"{address}\" on {where}")
        if line.holder is not None:
            raise Refusal("busy", f"the line is in use by \"{line.holder.consumer}\"")
        output = bool(m.get("output", False))
        handle = self._next_handle
        self._next_handle += 1
        line.holder = _Hold(client, handle, str(m.get("consumer", "")), output,
                            bool(m.get("edges", False)) and not output, bool(m.get("active_low", False)))
        client.holds[handle] = line
        if output:
            line.high = bool(m.get("initial", False))
            notify.append((self._display(line), line.high))
        label = next(l for n, l, _ in self._chips if n == line.chip)
        return {"handle": handle, "chip": line.chip, "label": label, "offset": line.offset, "name": line.name,
                "high": line.high}

    def _send(self, client, message):
        """Called with the lock held. A client that cannot take a line is dropped."""
        if not client.alive:
            return
        try:
            client.sock.sendall(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        except OSError:
            client.alive = False
            try:
                client.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _drop(self, client):
        with self._lock:
            client.alive = False
            for line in client.holds.values():
                if line.holder is not None and line.holder.client is client:
                    line.holder = None
            client.holds.clear()
            if client in self._clients:
                self._clients.remove(client)
                try:
                    client.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                client.sock.close()


def _main(argv=None):
    """Serves until stdin closes, SIGTERM or SIGINT. Reads commands on stdin, one a line,
    answering each on stdout (so a test in another language can be the building):

        set NAME 0|1 [NS]   -> "ok" (or "error TEXT")      drive an input
        level NAME          -> "level NAME 0|1"            a line's electrical level
        holder NAME         -> "holder NAME CONSUMER|-"
        quit                -> exits

    and prints "write NAME 0|1" whenever an output is written (or requested)."""
    parser = argparse.ArgumentParser(description="Serve emulated GPIO lines on a Unix socket.")
    parser.add_argument("--socket", required=True, help="the socket's path")
    args = parser.parse_args(argv)
    out_lock = threading.Lock()

    def say(text):
        with out_lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server = LineServer(args.socket)
    server.on_output(lambda name, high: say(f"write {name} {int(high)}"))
    try:
        say(f"ready {server.socket_path}")
        for raw in sys.stdin:
            words = raw.split()
            if not words:
                continue
            try:
                if words[0] == "set" and len(words) in (3, 4):
                    server.set_input(words[1], words[2] == "1", int(words[3]) if len(words) == 4 else None)
                    say("ok")
                elif words[0] == "level" and len(words) == 2:
                    say(f"level {words[1]} {int(server.level(words[1]))}")
                elif words[0] == "holder" and len(words) == 2:
                    say(f"holder {words[1]} {server.holder(words[1]) or '-'}")
                elif words[0] == "quit":
                    break
                else:
                    say(f"error unknown command: {raw.strip()}")
            except (KeyError, ValueError) as e:
                say(f"error {e}")
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(_main())

"""Reference receiver for the central program's ingest API (/work/shared/CENTRAL-API.md).

The appliance is the client; this is the program's side of the contract, used as the judge
of the appliance's store-and-forward upload. Standard library only. Importable, and
runnable as a script:

    python3 Tests/Integration/central_receiver.py --port 0 --site S --token T --data DIR \
        [--site S2 --token T2 ...] [--faults SPEC] [--seed N]
    -> prints "listening on 127.0.0.1:PORT", serves until SIGTERM / SIGINT (exit status 0).

    with CentralReceiver(tmp_path / "central", tokens={"site-1": "secret"}) as rx:
        ... upload to f"{rx.url}/v1/sites/site-1/records" ...
        assert rx.audit("site-1") == (n, 1, n, [], [])

The contract (what the document says)
-------------------------------------
    POST {base_url}/v1/sites/{site_id}/records
    Authorization: Bearer {site token}
    Content-Type: application/x-ndjson
    Content-Encoding: gzip
    Idempotency-Key: {site_id}:{first_seq}-{last_seq}
    body: gzip of NDJSON, one record a line, in seq order; every record has
          seq (per site, from 1, +1 per record, never repeats), kind (telemetry | event |
          command | session), time (UTC ISO 8601 with milliseconds).
    200/201 {"accepted_through": LAST_SEQ}: everything up to LAST_SEQ is stored.
    409: this Idempotency-Key was stored before; treat as success.
    401/403: the token is wrong.   413: batch too large.   429/5xx: retry with backoff.
    The program stores each seq once. A batch that arrives twice is harmless.

Where the document is silent, this receiver chooses the strict reading (D1..D20)
--------------------------------------------------------------------------------
D1  Check order: path (404) -> method (405, Allow: POST) -> token (401/403) -> rate limit
    (429) -> Content-Type / Content-Encoding (415) -> Idempotency-Key (400) -> framing
    (411/400/501) -> size on the wire (413) -> gzip (400) -> decoded size (413) -> record
    count (413) -> NDJSON and records (400) -> key vs body (400) -> 409 -> store -> 200/201.
D2  401 (with `WWW-Authenticate: Bearer`) when Authorization is missing, is not
    "Bearer <token>" (the scheme is matched case-insensitively, as HTTP says), or the token
    is nobody's. 403 when the token is valid for another site (also for a site id this
    receiver does not know). Tokens are compared in constant time.
D3  Content-Type must be application/x-ndjson (the only parameter allowed: charset=utf-8);
    Content-Encoding must be exactly `gzip` (no x-gzip, no stacked codings). Otherwise 415.
    A body that is not valid gzip (or has trailing bytes after the gzip members) is 400
    "bad_gzip". Multi-member gzip is accepted (it is valid gzip).
D4  Idempotency-Key must match `{site_id}:{first}-{last}` exactly: site_id equal to the one
    in the path, first and last decimal integers >= 1 without sign or leading zeros,
    first <= last. Otherwise 400 "bad_idempotency_key". first/last must equal the first
    and last record's seq, else 400 "key_mismatch".
D5  The body must be UTF-8 NDJSON: lines separated by "\n" (a "\r" before it is tolerated),
    a final newline optional, no empty lines, each line one JSON object, no duplicate
    member names, no NaN/Infinity. Each record: seq an integer >= 1 (not a bool/float/
    string), kind one of the four kinds, time a string "YYYY-MM-DDTHH:MM:SS.mmmZ" that is
    a real date. Extra members are allowed and stored as sent. Anything else: 400
    ("bad_json" / "bad_record", with the 1-based "line"). An empty body: 400 "empty_batch".
D6  Inside a batch every seq must be the previous + 1 (this also rejects duplicates and
    decreasing seqs): otherwise 400 "seq_not_consecutive" with the line.
D7  Every 4xx/5xx rejects the WHOLE batch: nothing of it is stored. A request whose body
    ends early (client closed the connection) stores nothing and gets no answer.
D8  "Too large" (413, nothing stored) means any of: more than max_body_bytes on the wire
    (checked from Content-Length before reading, and while reading chunked bodies), more
    than max_decoded_bytes after gunzip (checked while decompressing, so a gzip bomb costs
    nothing), more than max_records lines. The body of a refused request is still read
    and discarded (up to DRAIN_LIMIT) so that the client sees the 413 and not a reset.
D9  accepted_through = min(W, last) where W is the site's contiguous watermark: the
    largest N such that every seq 1..N is stored (seq starts at 1). So it never claims
    more than the batch and never claims a seq that is not stored. Normally it equals the
    batch's last seq.
D10 Gap (the batch starts after W + 1): the document says a gap means lost data and the
    program wants every record, so the batch IS stored, but accepted_through = W (< first),
    which tells the appliance truthfully that the records below are still missing. The
    gap shows in audit(). When the missing records arrive, W jumps past the stored ones.
D11 Overlap with stored seqs (a different key): stored seqs are skipped (each seq stored
    once), new ones stored. 201 when this request stored at least one new record, 200 when
    it stored nothing new. If an already-stored seq arrives with different content, the
    first one is kept and the seq is recorded in conflicts(site) and in the request log
    (the appliance must never reuse a seq); the status is not changed by it.
D12 409 when a request with this Idempotency-Key was stored before (accepted 200/201, even
    if the answer was lost) AND W >= last (so "treat as success" is true). The body is
    {"error": "already_stored", "idempotency_key": KEY}: no accepted_through, because the
    document promises none for 409; a client must not need it. If the key was stored but
    a gap below it is still open, the answer is 200 {"accepted_through": W} instead: a 409
    would make the appliance believe everything through last is stored. The body of a
    replay is validated like any other (a malformed replay is 400, not 409).
D13 Keys are durable like records (a journal per site), so a restart keeps 409 answers.
D14 429 only when a rate limit is configured (rate_limit=(n, seconds), per site, token
    bucket) or injected; Retry-After is an integer number of seconds >= 1.
D15 Other errors: 404 unknown path, 405 other method, 411 no Content-Length and not
    chunked, 400 invalid Content-Length / both Content-Length and Transfer-Encoding /
    a repeated header, 501 a transfer coding other than chunked, 500 unexpected. Error
    bodies are JSON {"error": CODE, "detail": TEXT[, "line": N]}.
D16 HTTP/1.1 with keep-alive; `Expect: 100-continue` answered; chunked bodies accepted.
D17 Storage: DATA/{site}.ndjson, one record a line exactly as sent (without "\r"),
    appended and fsync'd before the answer; DATA/{site}.keys.ndjson, the stored keys. On
    start a torn last line (no final newline: a crash during the append, never answered)
    is cut off; any other unreadable line makes start() fail (the store is corrupt).
D18 audit(site) reads the file, not the memory: (count = record lines, first = smallest
    seq, last = largest, gaps = missing (a, b) ranges inside 1..last, duplicates = seqs on
    more than one line). An unreadable line raises ValueError.
D19 Site ids must be [A-Za-z0-9][A-Za-z0-9._-]* (they name files); tokens must be
    distinct per site (a token shared by two sites would make 403 meaningless).
D20 The control endpoint (/_control/..., not part of the public API) answers only clients
    on a loopback address; from elsewhere it is 404 like any unknown path. Faults never
    apply to it.

Failure injection
-----------------
Faults apply to every request that is not /_control. At most one fault fires per request:
the first in the list that fires. A fault fires with probability p (default 1) at most n
times (default unlimited); with both it is "at most n times, each with probability p".
The random draws come from random.Random(seed) (draws only for faults that have p).

    refuse                   reset the connection (RST) as soon as the request head is read;
                             nothing answered. For a real "connection refused" (nothing
                             listening) use stop()/start(), or POST /_control/stop.
    timeout[:seconds=S]      read the request, answer nothing for S s (default 30), then
                             close the connection (FIN). Nothing stored.
    http_500                 500 {"error": "injected"}; nothing stored.
    http_413                 413 whatever the size; nothing stored.
    http_429[:retry_after=R] 429 with Retry-After: R (default: retry_after, 1); nothing stored.
    http_400_html            400 with an HTML page (text/html, several lines), as a proxy or a
                             web framework's default error page answers; nothing stored.
      early=1 (or close)     (with any of the four http_ faults) answer as soon as the request
                             head is read, WITHOUT reading the body, then close the connection
                             (Connection: close), as servers that refuse early do. The unread
                             body makes the kernel reset the connection, so the client may see
                             a write error or a reset although the answer was sent.
      early=keep             the same answer, but the connection stays open with the body
                             unread: the server then reads the body as the next request and
                             answers that garbage (http.server's HTML error page, without a
                             status line), as a naive server does. With seconds=S it waits S s
                             before it reads on, so that the client's next request on the same
                             connection gets that answer.
    drop_mid_body[:bytes=B]  read B bytes of the body (default half of Content-Length, at
                             least 1) then reset the connection; nothing stored.
    accept_but_drop_response process the request normally (a valid batch IS stored, its key
                             recorded), then reset the connection instead of answering. The
                             retry gets 409 (D12) and nothing is stored twice.

Spec string (--faults, set_faults, /_control/faults): entries separated by ",", each
`name[:key=value]...` with keys p, n, seconds, retry_after, bytes, early; plus an optional
entry `seed=N`. Example: "http_500:p=0.3,timeout:n=1:seconds=2,seed=7". JSON form: a list of
objects {"name": ..., "p": ..., "n": ..., ...}.

Control endpoint (loopback only):
    GET  /_control/faults               -> {"faults": [...], "seed": N}
    POST /_control/faults  {"faults": SPEC-or-list-or-null, "seed": N}  (replaces all)
    GET  /_control/requests             -> {"requests": [...]}     (the request log)
    GET  /_control/audit?site=S         -> {"count":..,"first":..,"last":..,"gaps":..,"duplicates":..}
    POST /_control/stop    {"seconds": S} -> 202, then not listening for S s, then listening
                                             again on the same port.
"""
import argparse
import hashlib
import hmac
import http.server
import ipaddress
import json
import math
import os
import random
import re
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import zlib
from collections import namedtuple
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

__all__ = ["CentralReceiver", "Audit", "Fault", "parse_faults", "audit_file", "FAULT_NAMES",
           "KINDS"]

KINDS = frozenset({"telemetry", "event", "command", "session"})
FAULT_NAMES = ("refuse", "timeout", "http_500", "http_413", "http_429", "http_400_html",
               "drop_mid_body", "accept_but_drop_response")
SITE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
RECORDS_PATH_RE = re.compile(r"/v1/sites/([^/]+)/records\Z")
KEY_RE = re.compile(r"(?P<site>.+):(?P<first>[1-9][0-9]*)-(?P<last>[1-9][0-9]*)\Z")
TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\Z")
DRAIN_LIMIT = 64 << 20          # bytes read and discarded from a refused body at most

# What a proxy in front of the program (or a framework's default handler) answers: an HTML
# page over several lines, nothing an operator can read in a log line as it is.
HTML_400 = """<!DOCTYPE HTML>
<html lang="en">
    <head>
        <meta charset="utf-8">
        <title>Error response</title>
    </head>
    <body>
        <h1>Error response</h1>
        <p>Error code: 400</p>
        <p>Message: Bad Request.</p>
        <p>Error code explanation: 400 - Bad request syntax or unsupported method.</p>
    </body>
</html>
"""

Audit = namedtuple("Audit", "count first last gaps duplicates")


# --------------------------------------------------------------------------- faults

class Fault:
    """One injected fault; see the module docstring."""

    KEYS = ("p", "n", "seconds", "retry_after", "bytes", "early")
    EARLY = ("http_500", "http_413", "http_429", "http_400_html")

    def __init__(self, name, p=None, n=None, seconds=None, retry_after=None, bytes=None,
                 early=None):
        if name not in FAULT_NAMES:
            raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULT_NAMES)})")
        if p is not None and not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"fault {name}: p must be in [0, 1], got {p!r}")
        if n is not None and int(n) < 0:
            raise ValueError(f"fault {name}: n must be >= 0, got {n!r}")
        if seconds is not None and float(seconds) < 0:
            raise ValueError(f"fault {name}: seconds must be >= 0, got {seconds!r}")
        if retry_after is not None and int(retry_after) < 0:
            raise ValueError(f"fault {name}: retry_after must be >= 0, got {retry_after!r}")
        if bytes is not None and int(bytes) < 0:
            raise ValueError(f"fault {name}: bytes must be >= 0, got {bytes!r}")
        self.name = name
        self.p = None if p is None else float(p)
        self.n = None if n is None else int(n)          # remaining firings
        self.seconds = None if seconds is None else float(seconds)
        self.retry_after = None if retry_after is None else int(retry_after)
        self.bytes = None if bytes is None else int(bytes)
        modes = {"0": None, "false": None, "1": "close", "true": "close", "close": "close",
                 "keep": "keep"}
        if early is not None and str(early).lower() not in modes:
            raise ValueError(f"fault {name}: early must be 1 (or close) or keep, got {early!r}")
        self.early = None if early is None else modes[str(early).lower()]
        if self.early and name not in self.EARLY:
            raise ValueError(f"fault {name}: early applies only to {', '.join(self.EARLY)}")
        self.fired = 0

    @classmethod
    def from_any(cls, item):
        if isinstance(item, Fault):
            return item
        if isinstance(item, str):
            faults, seed = parse_faults(item)
            if len(faults) != 1 or seed is not None:
                raise ValueError(f"expected one fault, got {item!r}")
            return faults[0]
        if isinstance(item, dict):
            unknown = set(item) - set(cls.KEYS) - {"name", "fired"}
            if unknown:
                raise ValueError(f"unknown fault keys {sorted(unknown)} in {item!r}")
            if "name" not in item:
                raise ValueError(f"fault without a name: {item!r}")
            return cls(item["name"], **{k: item.get(k) for k in cls.KEYS})
        raise ValueError(f"cannot make a fault from {item!r}")

    def to_dict(self):
        d = {"name": self.name}
        for k in self.KEYS:
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        d["fired"] = self.fired
        return d

    def __repr__(self):
        return f"Fault({self.to_dict()})"


def parse_faults(spec):
    """Spec string (or JSON text) -> (list of Fault, seed or None). See the module docstring."""
    if spec is None:
        return [], None
    spec = spec.strip()
    if not spec or spec.lower() == "none":
        return [], None
    if spec[0] in "[{":
        data = json.loads(spec)
        if isinstance(data, dict):
            seed = data.get("seed")
            items = data.get("faults") or []
        else:
            seed, items = None, data
        return [Fault.from_any(i) for i in items], seed
    faults, seed = [], None
    aliases = {"secs": "seconds", "s": "seconds", "retry-after": "retry_after"}
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        if entry.startswith("seed="):
            seed = int(entry[5:])
            continue
        name, *parts = entry.split(":")
        kw = {}
        for part in parts:
            k, sep, v = part.partition("=")
            k = aliases.get(k.strip(), k.strip())
            if not sep or k not in Fault.KEYS:
                raise ValueError(f"bad fault option {part!r} in {entry!r} "
                                 f"(expected one of {', '.join(Fault.KEYS)} as key=value)")
            kw[k] = v.strip()
        faults.append(Fault(name.strip(), **kw))
    return faults, seed


# --------------------------------------------------------------------------- storage

def _parse_stored_line(line, where):
    try:
        obj = json.loads(line)
        seq = obj["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise ValueError("seq is not an integer")
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{where}: unreadable record ({e}): {line[:200]!r}") from None
    return obj, seq


def _canonical_hash(obj):
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def audit_file(path):
    """Consistency check of one NDJSON store file -> Audit (see D18). Missing file: empty."""
    path = Path(path)
    if not path.exists():
        return Audit(0, None, None, [], [])
    seen, dups, count = set(), set(), 0
    with open(path, "r", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                raise ValueError(f"{path}:{number}: empty line")
            _, seq = _parse_stored_line(line, f"{path}:{number}")
            count += 1
            if seq in seen:
                dups.add(seq)
            seen.add(seq)
    if not seen:
        return Audit(0, None, None, [], [])
    last = max(seen)
    gaps, start = [], None
    for s in range(1, last + 1):
        if s not in seen:
            if start is None:
                start = s
        elif start is not None:
            gaps.append((start, s - 1))
            start = None
    return Audit(count, min(seen), last, gaps, sorted(dups))


class _SiteStore:
    """One site's durable records (append-only NDJSON) and stored keys, with a memory index."""

    def __init__(self, data_dir, site, fsync=True):
        self.site = site
        self.path = Path(data_dir) / f"{site}.ndjson"
        self.keys_path = Path(data_dir) / f"{site}.keys.ndjson"
        self.fsync = fsync
        self.hashes = {}        # seq -> sha256 of the canonical record
        self.keys = set()
        self.watermark = 0
        self.conflicts = []
        self._load()

    @staticmethod
    def _cut_torn_tail(path):
        if not path.exists():
            return
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(path, "r+b") as f:
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())

    def _load(self):
        self._cut_torn_tail(self.path)
        self._cut_torn_tail(self.keys_path)
        if self.path.exists():
            with open(self.path, "r", encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    line = line.rstrip("\n")
                    obj, seq = _parse_stored_line(line, f"{self.path}:{number}")
                    self.hashes.setdefault(seq, _canonical_hash(obj))
        if self.keys_path.exists():
            with open(self.keys_path, "r", encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    try:
                        self.keys.add(json.loads(line)["key"])
                    except (ValueError, KeyError, TypeError):
                        raise ValueError(f"{self.keys_path}:{number}: unreadable key line "
                                         f"{line[:200]!r}") from None
        self._advance()

    def _advance(self):
        while self.watermark + 1 in self.hashes:
            self.watermark += 1

    def _append(self, path, data):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def store(self, records):
        """records: list of (seq, line text, hash), all new. Durable before return."""
        if records:
            self._append(self.path, "".join(line + "\n" for _, line, _ in records)
                         .encode("utf-8"))
            for seq, _, h in records:
                self.hashes[seq] = h
            self._advance()

    def remember_key(self, key, first, last, new):
        if key in self.keys:
            return
        line = json.dumps({"key": key, "first": first, "last": last, "new": new,
                           "time": time.time()}) + "\n"
        self._append(self.keys_path, line.encode("utf-8"))
        self.keys.add(key)


# --------------------------------------------------------------------------- HTTP

class _Reject(Exception):
    """An HTTP error answer (nothing stored)."""

    def __init__(self, status, code, detail, line=None, headers=None):
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail, self.line = status, code, detail, line
        self.headers = headers or {}

    def body(self):
        b = {"error": self.code, "detail": self.detail}
        if self.line is not None:
            b["line"] = self.line
        return b


class _Abort(Exception):
    """Close the connection without an answer; rst=True: with a TCP reset."""

    def __init__(self, rst=True):
        super().__init__("abort")
        self.rst = rst


class _IncompleteBody(Exception):
    pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def server_bind(self):
        # http.server.HTTPServer.server_bind does a (possibly slow) reverse DNS lookup.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = host, port


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "central-receiver/1"
    sys_version = ""

    # ---- plumbing
    def setup(self):
        self.rx = self.server.receiver
        self.generation = self.server.generation
        self.timeout = self.rx.socket_timeout
        super().setup()
        self.rx._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.rx._track(self.connection, False)

    def handle(self):
        try:
            super().handle()
        except _Abort as a:
            self._close(rst=a.rst)
        except (OSError, _IncompleteBody):
            self.close_connection = True

    def _close(self, rst):
        self.close_connection = True
        try:
            if rst:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass

    def log_message(self, fmt, *args):
        if self.rx.verbose:
            sys.stderr.write("central-receiver: %s - %s\n" % (self.address_string(), fmt % args))

    def _commit_log(self):
        entry, self._entry = getattr(self, "_entry", None), None
        if entry is not None:
            entry["bytes"] = self.body_bytes
            self.rx._log(entry)

    def _send_json(self, status, body, headers=None, close=False):
        data = (json.dumps(body) + "\n").encode("utf-8") if body is not None else b""
        self._send(status, data, "application/json", headers, close)

    def _send(self, status, data, content_type, headers=None, close=False):
        self._commit_log()       # logged before the answer leaves: a client sees it at once
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def handle_one_request(self):
        delay, self._keep_delay = getattr(self, "_keep_delay", 0), 0
        if delay:
            time.sleep(delay)
        super().handle_one_request()

    def _send_html(self, status, page, close=False):
        self._send(status, page.encode("utf-8"), "text/html; charset=utf-8", close=close)

    # ---- body framing
    def _single_header(self, name):
        values = self.headers.get_all(name) or []
        if len(values) > 1:
            raise _Reject(400, "repeated_header", f"{name} is given {len(values)} times")
        return values[0].strip() if values else None

    def _framing(self):
        """-> ("length", n) or ("chunked", None); raises _Reject."""
        te = self._single_header("Transfer-Encoding")
        cl = self._single_header("Content-Length")
        if te is not None:
            if cl is not None:
                raise _Reject(400, "bad_framing", "both Content-Length and Transfer-Encoding")
            if te.lower() != "chunked":
                raise _Reject(501, "unsupported_transfer_encoding",
                              f"Transfer-Encoding {te!r} (only chunked)")
            return ("chunked", None)
        if cl is None:
            raise _Reject(411, "length_required", "no Content-Length and not chunked")
        if not cl.isdigit() or not cl.isascii():
            raise _Reject(400, "bad_content_length", f"Content-Length {cl!r}")
        return ("length", int(cl))

    def _read_exact(self, n):
        data = self.rfile.read(n)
        self.body_bytes += len(data)
        if len(data) != n:
            raise _IncompleteBody(f"body ended after {self.body_bytes} bytes")
        return data

    def _read_body(self, limit):
        """The whole body (at most `limit` bytes, else _Reject 413 after draining)."""
        kind, n = self.framing
        if kind == "length":
            if n > limit:
                self._drain()
                raise _Reject(413, "body_too_large",
                              f"body of {n} bytes, the limit is {limit} bytes")
            data = self._read_exact(n)
            self.body_done = True
            return data
        parts, total, too_large = [], 0, False
        while True:
            size_line = self.rfile.readline(1024)
            self.body_bytes += len(size_line)
            if not size_line.endswith(b"\n"):
                raise _IncompleteBody("chunk size line ended early")
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _Abort(rst=False) from None
            if size == 0:
                while True:                      # trailers
                    t = self.rfile.readline(8192)
                    self.body_bytes += len(t)
                    if not t.endswith(b"\n"):
                        raise _IncompleteBody("trailer ended early")
                    if t in (b"\r\n", b"\n"):
                        break
                break
            chunk = self._read_exact(size)
            self._read_exact(2)
            total += size
            if total > limit:
                too_large = True
            elif not too_large:
                parts.append(chunk)
            if total > DRAIN_LIMIT:
                self.close_connection = True
                raise _Reject(413, "body_too_large", f"body over {limit} bytes")
        self.body_done = True
        if too_large:
            raise _Reject(413, "body_too_large", f"body of {total} bytes, the limit is {limit}")
        return b"".join(parts)

    def _drain(self):
        """Read and discard the rest of the body so the client can read our answer."""
        if self.body_done or self.framing is None:
            if self.framing is None:
                self.close_connection = True
            return
        try:
            kind, n = self.framing
            if kind == "length" and n > DRAIN_LIMIT:
                self.close_connection = True
                return
            if kind == "length":
                left = n
                while left:
                    got = self.rfile.read(min(left, 65536))
                    if not got:
                        raise _IncompleteBody("body ended early")
                    self.body_bytes += len(got)
                    left -= len(got)
                self.body_done = True
            else:
                self._read_body(0)          # chunked: read everything, keep nothing
        except _Reject:
            pass

    # ---- dispatch
    def do_POST(self):
        self._dispatch()

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_POST

    def _dispatch(self):
        self.body_bytes, self.body_done, self.framing = 0, False, None
        path = urlsplit(self.path).path
        if path.startswith("/_control/") or path == "/_control":
            if self.rx.control and _is_loopback(self.client_address[0]):
                return self._control(path)
        self._records(path)

    # ---- the public API
    def _records(self, path):
        rx = self.rx
        entry = {"time": time.time(), "client": self.client_address[0], "method": self.command,
                 "path": self.path, "site": None, "status": None, "fault": None,
                 "idempotency_key": self.headers.get("Idempotency-Key"), "first_seq": None,
                 "last_seq": None, "bytes": 0, "records": None, "new_records": 0,
                 "accepted_through": None, "conflicts": [], "gap": False, "dropped_status": None, "error": None}
        self._entry = entry
        m = RECORDS_PATH_RE.match(path)
        if m:
            entry["site"] = m.group(1)
        fault = rx._pick_fault()
        if fault is not None:
            entry["fault"] = fault.name
        try:
            try:
                self.framing = self._framing()
            except _Reject:
                self.framing = None
            if fault is not None and fault.name != "accept_but_drop_response":
                self._inject(fault, entry)          # raises or answers
                return
            status, body, headers = self._process(m, entry)
            if fault is not None:                   # accept_but_drop_response
                entry["dropped_status"] = status
                entry["error"] = f"answer {status} dropped (fault)"
                raise _Abort(rst=True)
            entry["status"] = status
            self._send_json(status, body, headers)
        except _Reject as r:
            self._drain()
            entry["status"], entry["error"] = r.status, f"{r.code}: {r.detail}"
            if r.line is not None:
                entry["error"] += f" (line {r.line})"
            self._send_json(r.status, r.body(), r.headers, close=self.close_connection)
        except _IncompleteBody as e:
            entry["error"] = f"incomplete body: {e}"
            raise
        except (_Abort, OSError):
            raise
        except Exception as e:                      # a bug here must not look like success
            entry["status"], entry["error"] = 500, f"internal: {e!r}"
            self._send_json(500, {"error": "internal", "detail": repr(e)}, close=True)
        finally:
            self._commit_log()

    def _inject(self, fault, entry):
        name = fault.name
        if name == "refuse":
            entry["error"] = "connection reset (fault refuse)"
            raise _Abort(rst=True)
        if name == "drop_mid_body":
            kind, n = self.framing or ("length", 0)
            want = fault.bytes if fault.bytes is not None else max(1, (n or 0) // 2)
            if kind == "length":
                want = min(want, n)
            got = self.rfile.read(want) if want else b""
            self.body_bytes += len(got)
            entry["error"] = f"connection reset after {len(got)} body bytes (fault drop_mid_body)"
            raise _Abort(rst=True)
        if fault.early == "close":
            # The answer goes out with the body unread, and the connection is closed.
            self.close_connection = True
        elif fault.early == "keep":
            # The body stays in the stream: the "next request", read after `seconds`.
            self._keep_delay = fault.seconds or 0
        else:
            self._drain()
        if name == "timeout":
            seconds = 30.0 if fault.seconds is None else fault.seconds
            entry["error"] = f"no answer for {seconds} s, then closed (fault timeout)"
            self._commit_log()
            self.rx._stop_event_for(self.generation).wait(seconds)
            raise _Abort(rst=False)
        if name == "http_500":
            status, body, headers = 500, {"error": "injected", "detail": "fault http_500"}, {}
        elif name == "http_413":
            status, body, headers = 413, {"error": "injected",
                                          "detail": "fault http_413: send smaller batches"}, {}
        elif name == "http_400_html":
            entry["status"], entry["error"] = 400, f"injected {name}"
            self._send_html(400, HTML_400, close=self.close_connection)
            return
        else:  # http_429
            ra = self.rx.retry_after if fault.retry_after is None else fault.retry_after
            status, body, headers = 429, {"error": "injected", "detail": "fault http_429"}, \
                {"Retry-After": str(ra)}
        entry["status"] = status
        entry["error"] = f"injected {name}" + (f" (early={fault.early}, body unread)" if fault.early else "")
        self._send_json(status, body, headers, close=self.close_connection)

    def _process(self, m, entry):
        rx = self.rx
        if m is None:
            raise _Reject(404, "not_found", f"no such path {urlsplit(self.path).path!r}")
        if self.command != "POST":
            raise _Reject(405, "method_not_allowed", f"{self.command} (only POST)",
                          headers={"Allow": "POST"})
        site = m.group(1)
        # token
        auth = self._single_header("Authorization")
        challenge = {"WWW-Authenticate": 'Bearer realm="central", error="invalid_token"'}
        if auth is None:
            raise _Reject(401, "unauthorized", "no Authorization header", headers=challenge)
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token or token != token.strip() or " " in token:
            raise _Reject(401, "unauthorized", "Authorization is not 'Bearer <token>'",
                          headers=challenge)
        owner = rx._token_owner(token)
        if owner is None:
            raise _Reject(401, "unauthorized", "unknown token", headers=challenge)
        if owner != site:
            raise _Reject(403, "forbidden", f"the token is not valid for site {site!r}")
        retry = rx._rate_check(site)
        if retry is not None:
            raise _Reject(429, "rate_limited", f"rate limit, retry after {retry} s",
                          headers={"Retry-After": str(retry)})
        # headers
        ctype = self._single_header("Content-Type")
        if ctype is None or not _is_ndjson(ctype):
            raise _Reject(415, "unsupported_media_type",
                          f"Content-Type {ctype!r}, expected application/x-ndjson")
        enc = self._single_header("Content-Encoding")
        if enc is None or enc.lower() != "gzip":
            raise _Reject(415, "unsupported_content_encoding",
                          f"Content-Encoding {enc!r}, expected gzip")
        key = self._single_header("Idempotency-Key")
        if key is None:
            raise _Reject(400, "bad_idempotency_key", "no Idempotency-Key header")
        km = KEY_RE.match(key)
        if km is None or km.group("site") != site:
            raise _Reject(400, "bad_idempotency_key",
                          f"Idempotency-Key {key!r}, expected {site}:FIRST-LAST")
        first, last = int(km.group("first")), int(km.group("last"))
        entry["first_seq"], entry["last_seq"] = first, last
        if first > last:
            raise _Reject(400, "bad_idempotency_key", f"Idempotency-Key {key!r}: first > last")
        if self.framing is None:
            self.framing = self._framing()          # raises the framing error
        raw = self._read_body(rx.max_body_bytes)
        decoded = _gunzip(raw, rx.max_decoded_bytes)
        records = _parse_ndjson(decoded, rx.max_records)
        entry["records"] = len(records)
        if records[0][0] != first or records[-1][0] != last:
            raise _Reject(400, "key_mismatch",
                          f"Idempotency-Key {key!r} but the body holds seq "
                          f"{records[0][0]}..{records[-1][0]}")
        return rx._store_batch(site, key, first, last, records, entry, self.generation)

    # ---- control
    def _control(self, path):
        rx = self.rx
        q = parse_qs(urlsplit(self.path).query)
        try:
            self.framing = self._framing() if self.command in ("POST", "PUT") else ("length", 0)
            payload = None
            if self.command == "POST":
                raw = self._read_body(1 << 20)
                payload = json.loads(raw or b"{}")
            if path == "/_control/faults" and self.command == "GET":
                return self._send_json(200, rx._faults_state())
            if path == "/_control/faults" and self.command == "POST":
                rx.set_faults(payload.get("faults"), seed=payload.get("seed"))
                return self._send_json(200, rx._faults_state())
            if path == "/_control/requests" and self.command == "GET":
                return self._send_json(200, {"requests": rx.requests})
            if path == "/_control/audit" and self.command == "GET":
                a = rx.audit(q.get("site", [""])[0])
                return self._send_json(200, a._asdict())
            if path == "/_control/stop" and self.command == "POST":
                seconds = float(payload.get("seconds", 1.0))
                self._send_json(202, {"stopping_for": seconds}, close=True)
                threading.Thread(target=rx._pause, args=(seconds,), daemon=True).start()
                return None
            return self._send_json(404, {"error": "not_found", "detail": path})
        except (ValueError, TypeError, AttributeError, _Reject) as e:
            self._drain()
            return self._send_json(400, {"error": "bad_control_request", "detail": str(e)},
                                   close=True)


def _is_loopback(host):
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _is_ndjson(ctype):
    media, *params = [p.strip() for p in ctype.split(";")]
    if media.lower() != "application/x-ndjson":
        return False
    for p in params:
        k, _, v = p.partition("=")
        if k.strip().lower() != "charset" or v.strip().strip('"').lower() != "utf-8":
            return False
    return True


def _gunzip(data, limit):
    out, total = [], 0
    if not data:
        raise _Reject(400, "bad_gzip", "empty body (not gzip)")
    while True:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = d.decompress(data, limit - total + 1)
        except zlib.error as e:
            raise _Reject(400, "bad_gzip", f"body is not gzip: {e}") from None
        total += len(chunk)
        if total > limit or d.unconsumed_tail:
            raise _Reject(413, "decoded_too_large",
                          f"body decompresses to more than {limit} bytes")
        out.append(chunk)
        if not d.eof:
            raise _Reject(400, "bad_gzip", "gzip stream truncated")
        data = d.unused_data
        if not data:
            return b"".join(out)


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _no_duplicate_members(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError(f"duplicate member {k!r}")
        obj[k] = v
    return obj


def _valid_time(value):
    if not isinstance(value, str) or not TIME_RE.match(value):
        return False
    try:
        datetime.strptime(value[:-1], "%Y-%m-%dT%H:%M:%S.%f")
    except ValueError:
        return False
    return True


def _parse_ndjson(data, max_records):
    """-> [(seq, line, hash)]; raises _Reject (D5, D6, D8)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Reject(400, "bad_json", f"body is not UTF-8: {e}") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if not lines:
        raise _Reject(400, "empty_batch", "the body holds no record")
    if max_records is not None and len(lines) > max_records:
        raise _Reject(413, "too_many_records",
                      f"{len(lines)} records, the limit is {max_records}")
    out = []
    for number, line in enumerate(lines, 1):
        if line.endswith("\r"):
            line = line[:-1]
        if not line.strip():
            raise _Reject(400, "bad_json", "empty line", line=number)
        try:
            obj = json.loads(line, parse_constant=_reject_constant,
                             object_pairs_hook=_no_duplicate_members)
        except ValueError as e:
            raise _Reject(400, "bad_json", f"not JSON: {e}", line=number) from None
        if not isinstance(obj, dict):
            raise _Reject(400, "bad_record", "a record must be a JSON object", line=number)
        seq = obj.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise _Reject(400, "bad_record", f"seq {seq!r} is not an integer >= 1", line=number)
        if obj.get("kind") not in KINDS:
            raise _Reject(400, "bad_record",
                          f"kind {obj.get('kind')!r} is not one of {sorted(KINDS)}", line=number)
        if not _valid_time(obj.get("time")):
            raise _Reject(400, "bad_record", f"time {obj.get('time')!r} is not UTC ISO 8601 "
                          "with milliseconds (YYYY-MM-DDTHH:MM:SS.mmmZ)", line=number)
        if out and seq != out[-1][0] + 1:
            raise _Reject(400, "seq_not_consecutive",
                          f"seq {seq} follows seq {out[-1][0]} (must be +1)", line=number)
        out.append((seq, line, _canonical_hash(obj)))
    return out


# --------------------------------------------------------------------------- the receiver

class CentralReceiver:
    """The central program's ingest endpoint, with durable per-site storage and faults.

    data_dir        directory for DATA/{site}.ndjson and DATA/{site}.keys.ndjson
    tokens          {site_id: token}
    max_body_bytes  largest body on the wire (gzip), else 413
    max_decoded_bytes  largest body after gunzip, else 413 (default 16 x max_body_bytes)
    max_records     most records in one batch, else 413 (None: no limit)
    rate_limit      None or (requests, seconds) per site, else 429 with Retry-After
    retry_after     Retry-After seconds for an injected http_429 without its own value
    faults, seed    initial faults (spec string, list, or None); see set_faults
    """

    def __init__(self, data_dir, tokens, host="127.0.0.1", port=0, max_body_bytes=1 << 20,
                 max_decoded_bytes=None, max_records=None, rate_limit=None, retry_after=1,
                 faults=None, seed=None, control=True, socket_timeout=30.0, fsync=True,
                 verbose=False):
        if not tokens:
            raise ValueError("tokens: at least one {site: token}")
        for site, token in tokens.items():
            if not SITE_RE.match(site):
                raise ValueError(f"site id {site!r} must match {SITE_RE.pattern}")
            if not isinstance(token, str) or not token or any(c.isspace() for c in token):
                raise ValueError(f"token for site {site!r} must be a non-empty word")
        if len(set(tokens.values())) != len(tokens):
            raise ValueError("two sites share a token")
        self.data_dir = Path(data_dir)
        self.tokens = dict(tokens)
        self.host, self.port = host, int(port)
        self.max_body_bytes = int(max_body_bytes)
        self.max_decoded_bytes = int(max_decoded_bytes or 16 * self.max_body_bytes)
        self.max_records = max_records
        self.rate_limit = rate_limit
        self.retry_after = int(retry_after)
        self.control = control
        self.socket_timeout = socket_timeout
        self.fsync = fsync
        self.verbose = verbose
        self._lock = threading.RLock()
        self._server = None
        self._thread = None
        self._generation = 0
        self._stop_events = {}
        self._connections = set()
        self._stores = {}
        self._buckets = {}
        self._requests = []
        self._faults, self._seed, self._rng = [], None, random.Random()
        self.set_faults(faults, seed=seed)
        self.data_dir.mkdir(parents=True, exist_ok=True)

    # ---- life cycle
    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def running(self):
        return self._server is not None

    def start(self):
        """Load the stores from disk and listen (on the same port as before, if any)."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("already running")
            self._stores = {site: _SiteStore(self.data_dir, site, self.fsync)
                            for site in self.tokens}
            self._generation += 1
            server = _Server((self.host, self.port), _Handler)
            server.receiver, server.generation = self, self._generation
            self._stop_events[self._generation] = threading.Event()
            self.port = server.server_address[1]
            self._server = server
            self._thread = threading.Thread(target=server.serve_forever,
                                            kwargs={"poll_interval": 0.05},
                                            name=f"central-receiver:{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self):
        """Stop listening and cut every open connection (clients see refused / reset)."""
        with self._lock:
            server, thread = self._server, self._thread
            if server is None:
                return
            self._server = self._thread = None
            self._stop_events[server.generation].set()
            conns = list(self._connections)
        server.shutdown()
        server.server_close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if thread is not None:
            thread.join(5)

    def restart(self):
        """stop() then start() on the same port; the stores are reloaded from disk."""
        self.stop()
        return self.start()

    def _pause(self, seconds):
        self.stop()
        time.sleep(seconds)
        self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _track(self, conn, add):
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)

    def _stop_event_for(self, generation):
        with self._lock:
            return self._stop_events[generation]

    # ---- faults
    def set_faults(self, faults=None, seed=None):
        """Replace the faults. faults: None/"" (none), a spec string, a Fault, a dict, or a
        list of those. seed: for the probability draws (a spec's seed=N counts too)."""
        if faults is None or isinstance(faults, str):
            parsed, spec_seed = parse_faults(faults)
        elif isinstance(faults, (Fault, dict)):
            parsed, spec_seed = [Fault.from_any(faults)], None
        else:
            parsed, spec_seed = [Fault.from_any(f) for f in faults], None
        seed = seed if seed is not None else spec_seed
        with self._lock:
            self._faults = parsed
            self._seed = seed
            self._rng = random.Random(seed)
        return self.faults

    def clear_faults(self):
        self.set_faults(None)

    @property
    def faults(self):
        with self._lock:
            return [f.to_dict() for f in self._faults]

    def _faults_state(self):
        with self._lock:
            return {"faults": self.faults, "seed": self._seed}

    def _pick_fault(self):
        with self._lock:
            for f in self._faults:
                if f.n is not None and f.n <= 0:
                    continue
                if f.p is not None and self._rng.random() >= f.p:
                    continue
                if f.n is not None:
                    f.n -= 1
                f.fired += 1
                return f
        return None

    # ---- auth and rate
    def _token_owner(self, token):
        owner = None
        for site, t in self.tokens.items():
            if hmac.compare_digest(t.encode("utf-8"), token.encode("utf-8", "surrogateescape")):
                owner = site
        return owner

    def _rate_check(self, site):
        if not self.rate_limit:
            return None
        n, per = self.rate_limit
        rate = n / per
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(site, (float(n), now))
            tokens = min(float(n), tokens + (now - then) * rate)
            if tokens >= 1.0:
                self._buckets[site] = (tokens - 1.0, now)
                return None
            self._buckets[site] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / rate))

    # ---- storage
    def _store_batch(self, site, key, first, last, records, entry, generation):
        with self._lock:
            if generation != self._generation or self._server is None:
                raise _Abort(rst=True)           # stopped while this request was running
            store = self._stores[site]
            conflicts = [seq for seq, _, h in records
                         if seq in store.hashes and store.hashes[seq] != h]
            if conflicts:
                store.conflicts.extend(conflicts)
                entry["conflicts"] = conflicts
            if key in store.keys and store.watermark >= last:
                return 409, {"error": "already_stored", "idempotency_key": key}, {}
            new = [r for r in records if r[0] not in store.hashes]
            store.store(new)
            store.remember_key(key, first, last, len(new))
            through = min(store.watermark, last)
            entry["new_records"] = len(new)
            entry["accepted_through"] = through
            entry["gap"] = through < last
            return (201 if new else 200), {"accepted_through": through}, {}

    def stored_seqs(self, site):
        """Sorted seqs stored for the site (memory index; after start(), equals the file)."""
        with self._lock:
            store = self._stores.get(site)
            if store is None:
                store = _SiteStore(self.data_dir, site, self.fsync) \
                    if site in self.tokens else None
            return sorted(store.hashes) if store else []

    def accepted_through(self, site):
        """The contiguous watermark W of D9 (0 when nothing is stored)."""
        with self._lock:
            store = self._stores.get(site)
            return store.watermark if store else 0

    def conflicts(self, site):
        """Seqs that arrived again with content different from the stored record (D11)."""
        with self._lock:
            store = self._stores.get(site)
            return list(store.conflicts) if store else []

    def records(self, site):
        """The stored records of the site as dicts, in seq order (first copy of each seq)."""
        path = self.store_path(site)
        out = {}
        with self._lock:
            if path.exists():
                with open(path, encoding="utf-8") as f:
                    for line in f:
                        obj = json.loads(line)
                        out.setdefault(obj["seq"], obj)
        return [out[s] for s in sorted(out)]

    def store_path(self, site):
        return self.data_dir / f"{site}.ndjson"

    def audit(self, site):
        """Consistency check of the site's file -> Audit(count, first, last, gaps, duplicates)."""
        if not SITE_RE.match(site or ""):
            raise ValueError(f"bad site id {site!r}")
        with self._lock:
            return audit_file(self.store_path(site))

    # ---- request log
    def _log(self, entry):
        with self._lock:
            self._requests.append(entry)
        if self.verbose:
            sys.stderr.write(f"central-receiver: {json.dumps(entry)}\n")

    @property
    def requests(self):
        """Copy of the request log: dicts with time, client, method, path, site, status (None:
        no answer was sent), fault, idempotency_key, first_seq, last_seq, bytes (body bytes
        read), records, new_records, accepted_through, conflicts, gap, dropped_status (the
        status an accept_but_drop_response request would have had), error."""
        with self._lock:
            return [dict(e) for e in self._requests]

    def clear_requests(self):
        with self._lock:
            self._requests.clear()


# --------------------------------------------------------------------------- script

def _rate(text):
    n, _, per = text.partition("/")
    return (int(n), float(per or 1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--site", action="append", required=True, help="site id (repeatable)")
    p.add_argument("--token", action="append", required=True,
                   help="token of the --site in the same position (repeatable)")
    p.add_argument("--data", required=True, help="data directory")
    p.add_argument("--faults", default=None, help="fault spec, e.g. 'http_500:p=0.3,seed=1'")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-body-bytes", type=int, default=1 << 20)
    p.add_argument("--max-decoded-bytes", type=int, default=None)
    p.add_argument("--max-records", type=int, default=None)
    p.add_argument("--rate-limit", type=_rate, default=None, help="N/SECONDS per site")
    p.add_argument("--retry-after", type=int, default=1)
    p.add_argument("--no-control", action="store_true")
    p.add_argument("--verbose", action="store_true")
    a = p.parse_args(argv)
    if len(a.site) != len(a.token):
        p.error(f"{len(a.site)} --site but {len(a.token)} --token")
    rx = CentralReceiver(a.data, dict(zip(a.site, a.token)), host=a.host, port=a.port,
                         max_body_bytes=a.max_body_bytes, max_decoded_bytes=a.max_decoded_bytes,
                         max_records=a.max_records, rate_limit=a.rate_limit,
                         retry_after=a.retry_after, faults=a.faults, seed=a.seed,
                         control=not a.no_control, verbose=a.verbose)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    rx.start()
    print(f"listening on {rx.host}:{rx.port}", flush=True)
    while not done.wait(0.5):
        pass
    rx.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

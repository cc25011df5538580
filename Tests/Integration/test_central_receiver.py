"""Tests of the reference receiver (central_receiver.py) itself: it judges the appliance's
upload later, so it has to implement /work/shared/CENTRAL-API.md exactly (and the choices
written in its docstring where the document is silent). Clients here are plain
http.client and raw sockets, never the receiver's own code."""
import gzip
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from central_receiver import Audit, CentralReceiver, parse_faults

HERE = Path(__file__).resolve().parent
SITE, TOKEN = "site-a", "token-a"
OTHER_SITE, OTHER_TOKEN = "site-b", "token-b"
TOKENS = {SITE: TOKEN, OTHER_SITE: OTHER_TOKEN}
PATH = f"/v1/sites/{SITE}/records"
MAX_BODY = 32 * 1024


# ----------------------------------------------------------------------------- helpers

def record(seq, kind="telemetry", **extra):
    r = {"seq": seq, "kind": kind, "time": "2026-07-14T19:00:%02d.%03dZ" % (seq % 60, seq % 1000)}
    r.update(extra)
    return r


def ndjson(records):
    return "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")


def batch(first, last, site=SITE, **extra):
    """(gzip body, headers) of a valid batch first..last."""
    body = gzip.compress(ndjson(record(s, **extra) for s in range(first, last + 1)))
    return body, headers(site, f"{site}:{first}-{last}")


def headers(site=SITE, key=None, token=TOKEN, **over):
    h = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson",
         "Content-Encoding": "gzip"}
    if key is not None:
        h["Idempotency-Key"] = key
    for k, v in over.items():
        k = k.replace("_", "-")
        if v is None:
            h.pop(k, None)
        else:
            h[k] = v
    return h


class Answer:
    def __init__(self, status, headers, raw):
        self.status, self.headers, self.raw = status, headers, raw
        try:
            self.json = json.loads(raw) if raw else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return f"HTTP {self.status} {self.raw[:300]!r}"


def post(rx, body, hdrs, path=PATH, method="POST", timeout=5, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", rx.port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=hdrs)
        r = c.getresponse()
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        if conn is None:
            c.close()


def send(rx, first, last, site=SITE, **kw):
    body, h = batch(first, last, site=site)
    return post(rx, body, h, path=f"/v1/sites/{site}/records", **kw)


def expect(answer, status, body=None, what=""):
    assert answer.status == status, \
        f"{what}: expected HTTP {status}{' ' + json.dumps(body) if body else ''}, got {answer!r}"
    if body is not None:
        assert answer.json == body, f"{what}: expected body {body}, got {answer.raw!r}"


def expect_error(answer, status, code, what):
    expect(answer, status, what=what)
    assert isinstance(answer.json, dict) and answer.json.get("error") == code, \
        f"{what}: expected JSON error {code!r}, got {answer.raw!r}"


def expect_stored(rx, seqs, what, site=SITE):
    got = rx.stored_seqs(site)
    assert got == list(seqs), f"{what}: expected stored seqs {list(seqs)[:5]}..({len(seqs)}), " \
                              f"got {got[:20]}..({len(got)})"
    a = rx.audit(site)
    assert a.count == len(seqs) and a.duplicates == [], \
        f"{what}: expected {len(seqs)} record lines without duplicates in the file, got {a}"


def expect_disconnect(fn, what):
    """fn() must fail at the connection level (no HTTP answer)."""
    try:
        got = fn()
    except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine,
            socket.timeout, OSError) as e:
        return e
    pytest.fail(f"{what}: expected the connection to fail without an answer, got {got!r}")


@pytest.fixture
def rx(tmp_path):
    with CentralReceiver(tmp_path / "central", TOKENS, max_body_bytes=MAX_BODY,
                         max_records=500) as r:
        yield r


# ----------------------------------------------------------------------------- contract

def test_accepted_batch_is_stored_and_answered_with_accepted_through(rx):
    a = send(rx, 1, 10)
    expect(a, 201, {"accepted_through": 10}, "first batch 1-10")
    expect_stored(rx, range(1, 11), "after 1-10")
    lines = rx.store_path(SITE).read_text().splitlines()
    assert [json.loads(l) for l in lines] == [record(s) for s in range(1, 11)], \
        f"expected the 10 records stored as sent, got {lines[:3]}..."
    assert rx.audit(SITE) == Audit(10, 1, 10, [], []), \
        f"expected a clean audit of 1..10, got {rx.audit(SITE)}"
    log = rx.requests[-1]
    assert (log["status"], log["idempotency_key"], log["first_seq"], log["last_seq"],
            log["new_records"]) == (201, f"{SITE}:1-10", 1, 10, 10) and log["bytes"] > 0, \
        f"expected a request log entry 201 {SITE}:1-10 with 10 new records, got {log}"


def test_replay_with_same_key_is_409_and_stored_once(rx):
    expect(send(rx, 1, 10), 201, {"accepted_through": 10}, "first upload")
    for attempt in (2, 3):
        a = send(rx, 1, 10)
        expect_error(a, 409, "already_stored", f"replay #{attempt} of {SITE}:1-10")
        assert "accepted_through" not in a.json, \
            f"expected no accepted_through in a 409 (the document promises none), got {a.raw!r}"
    expect_stored(rx, range(1, 11), "after two replays")


def test_keep_alive_connection_serves_several_batches(rx):
    c = http.client.HTTPConnection("127.0.0.1", rx.port, timeout=5)
    try:
        for first in (1, 6, 11):
            body, h = batch(first, first + 4)
            expect(post(rx, body, h, conn=c), 201, {"accepted_through": first + 4},
                   f"batch {first}-{first + 4} on one keep-alive connection")
        # an error answer must leave the connection usable too
        expect_error(post(rx, b"x" * 10, headers(key=f"{SITE}:16-16"), conn=c), 400, "bad_gzip",
                     "garbage body on the same connection")
        body, h = batch(16, 16)
        expect(post(rx, body, h, conn=c), 201, {"accepted_through": 16}, "after an error answer")
    finally:
        c.close()
    expect_stored(rx, range(1, 17), "after the keep-alive batches")


def test_overlapping_batch_stores_only_the_new_seqs(rx):
    expect(send(rx, 1, 10), 201, {"accepted_through": 10}, "1-10")
    expect(send(rx, 5, 15), 201, {"accepted_through": 15}, "5-15 overlapping 5-10")
    expect_stored(rx, range(1, 16), "after the overlap")
    expect(send(rx, 1, 15), 200, {"accepted_through": 15},
           "1-15, a new key whose seqs are all stored already")
    expect(send(rx, 3, 4), 200, {"accepted_through": 4},
           "3-4 (stored): accepted_through must not exceed the batch's last seq")
    expect_stored(rx, range(1, 16), "after fully stored batches")
    assert rx.conflicts(SITE) == [], f"expected no conflicts, got {rx.conflicts(SITE)}"


def test_same_seq_with_other_content_is_kept_once_and_reported(rx):
    expect(send(rx, 1, 3), 201, {"accepted_through": 3}, "1-3")
    body = gzip.compress(ndjson([record(3, kind="event", event="islanded"), record(4)]))
    a = post(rx, body, headers(key=f"{SITE}:3-4"))
    expect(a, 201, {"accepted_through": 4}, "3-4 where 3 differs from the stored 3")
    assert rx.conflicts(SITE) == [3], f"expected conflict on seq 3, got {rx.conflicts(SITE)}"
    assert rx.records(SITE)[2] == record(3), \
        f"expected the first copy of seq 3 kept, got {rx.records(SITE)[2]}"
    expect_stored(rx, range(1, 5), "after the conflict")


def test_gap_is_stored_but_not_acknowledged_until_filled(rx):
    expect(send(rx, 1, 5), 201, {"accepted_through": 5}, "1-5")
    a = send(rx, 11, 15)
    expect(a, 201, {"accepted_through": 5},
           "11-15 after 1-5 (gap 6-10): stored, but only 1..5 is contiguous")
    assert rx.audit(SITE) == Audit(10, 1, 15, [(6, 10)], []), \
        f"expected audit with gap 6-10, got {rx.audit(SITE)}"
    assert rx.requests[-1]["gap"] is True, f"expected gap flagged in the log: {rx.requests[-1]}"
    expect(send(rx, 11, 15), 200, {"accepted_through": 5},
           "replay of 11-15 while the gap is open: not 409 (that would mean 'all stored')")
    expect(send(rx, 6, 10), 201, {"accepted_through": 10}, "6-10 filling the gap")
    expect_error(send(rx, 11, 15), 409, "already_stored", "replay of 11-15 after the gap closed")
    expect_stored(rx, range(1, 16), "after the gap was filled")
    assert rx.accepted_through(SITE) == 15, f"expected watermark 15, got {rx.accepted_through(SITE)}"


def test_first_batch_not_starting_at_1_is_a_gap(rx):
    body, h = batch(3, 4, site=OTHER_SITE)
    h["Authorization"] = f"Bearer {OTHER_TOKEN}"
    a = post(rx, body, h, path=f"/v1/sites/{OTHER_SITE}/records")
    expect(a, 201, {"accepted_through": 0}, "3-4 on an empty store (seq starts at 1)")
    assert rx.audit(OTHER_SITE).gaps == [(1, 2)], \
        f"expected gap 1-2, got {rx.audit(OTHER_SITE)}"


def test_missing_or_wrong_token_is_401(rx):
    body, h = batch(1, 3)
    cases = {"no Authorization": None, "unknown token": "Bearer nope",
             "Basic scheme": f"Basic {TOKEN}", "empty token": "Bearer ",
             "token without scheme": TOKEN}
    for what, auth in cases.items():
        hh = dict(h)
        hh.pop("Authorization")
        if auth is not None:
            hh["Authorization"] = auth
        a = post(rx, body, hh)
        expect_error(a, 401, "unauthorized", what)
        assert a.headers.get("www-authenticate", "").startswith("Bearer"), \
            f"{what}: expected a WWW-Authenticate: Bearer header, got {a.headers}"
    a = post(rx, body, dict(h, Authorization=f"bearer {TOKEN}"))
    expect(a, 201, {"accepted_through": 3}, "lower-case 'bearer' scheme (HTTP: case-insensitive)")


def test_other_sites_token_is_403(rx):
    body, h = batch(1, 3)
    expect_error(post(rx, body, dict(h, Authorization=f"Bearer {OTHER_TOKEN}")), 403,
                 "forbidden", "site-a path with site-b's token")
    body, h = batch(1, 3, site="site-unknown")
    expect_error(post(rx, body, h, path="/v1/sites/site-unknown/records"), 403, "forbidden",
                 "unknown site with a valid token (of site-a)")
    expect_error(post(rx, body, dict(h, Authorization="Bearer nope"),
                      path="/v1/sites/site-unknown/records"), 401, "unauthorized",
                 "unknown site with an unknown token")
    expect_stored(rx, [], "after 401/403 answers")
    expect_stored(rx, [], "other site after 401/403 answers", site=OTHER_SITE)


def test_path_and_method(rx):
    body, h = batch(1, 1)
    for path in ("/v1/sites/site-a/record", "/v1/sites/site-a/records/", "/v2/sites/site-a/records",
                 "/"):
        expect_error(post(rx, body, h, path=path), 404, "not_found", f"POST {path}")
    a = post(rx, None, h, method="GET")
    expect_error(a, 405, "method_not_allowed", "GET on the records path")
    assert a.headers.get("allow") == "POST", f"expected Allow: POST, got {a.headers}"
    expect_error(post(rx, body, h, method="PUT"), 405, "method_not_allowed", "PUT")
    expect_stored(rx, [], "after 404/405")


def test_content_type_and_encoding(rx):
    plain = ndjson([record(1)])
    key = f"{SITE}:1-1"
    expect_error(post(rx, plain, headers(key=key)), 400, "bad_gzip",
                 "plain NDJSON body labelled Content-Encoding: gzip")
    expect_error(post(rx, plain, headers(key=key, Content_Encoding=None)), 415,
                 "unsupported_content_encoding", "no Content-Encoding")
    gz = gzip.compress(plain)
    for enc in ("deflate", "x-gzip", "gzip, identity", "identity"):
        expect_error(post(rx, gz, headers(key=key, Content_Encoding=enc)), 415,
                     "unsupported_content_encoding", f"Content-Encoding {enc}")
    for ctype in (None, "application/json", "text/plain", "application/x-ndjson; charset=latin-1"):
        expect_error(post(rx, gz, headers(key=key, Content_Type=ctype)), 415,
                     "unsupported_media_type", f"Content-Type {ctype}")
    expect_error(post(rx, gz[:-6], headers(key=key)), 400, "bad_gzip", "truncated gzip")
    expect_error(post(rx, gz + b"junk", headers(key=key)), 400, "bad_gzip",
                 "gzip with trailing garbage")
    expect_stored(rx, [], "after rejected encodings")
    expect(post(rx, gz, headers(key=key, Content_Type="application/x-ndjson; charset=utf-8")),
           201, {"accepted_through": 1}, "charset=utf-8 parameter")
    two = gzip.compress(ndjson([record(2)])) + gzip.compress(ndjson([record(3)]))
    expect(post(rx, two, headers(key=f"{SITE}:2-3")), 201, {"accepted_through": 3},
           "multi-member gzip (valid gzip)")


def test_idempotency_key_format_and_consistency(rx):
    body = gzip.compress(ndjson(record(s) for s in range(1, 11)))
    bad = [None, "", f"{SITE}:1:10", f"{SITE}:10-1", f"{SITE}:01-10", f"{SITE}: 1-10",
           f"{OTHER_SITE}:1-10", "1-10", f"{SITE}:0-10", f"{SITE}:-1-10", f"{SITE}:1-1x"]
    for key in bad:
        expect_error(post(rx, body, headers(key=key)), 400, "bad_idempotency_key",
                     f"Idempotency-Key {key!r}")
    for key in (f"{SITE}:1-9", f"{SITE}:2-10", f"{SITE}:1-11"):
        expect_error(post(rx, body, headers(key=key)), 400, "key_mismatch",
                     f"Idempotency-Key {key!r} with a body of 1..10")
    expect_stored(rx, [], "after bad keys")


def test_malformed_ndjson_rejects_the_whole_batch(rx):
    good = [json.dumps(record(s)) for s in range(1, 6)]
    cases = {
        "broken JSON on line 3": (good[:2] + ['{"seq": 3, "kind": '] + good[3:], "bad_json", 3),
        "empty line 2": (good[:1] + [""] + good[1:], "bad_json", 2),
        "array on line 4": (good[:3] + ["[4]"] + good[4:], "bad_record", 4),
        "seq as string": (good[:1] + ['{"seq": "2", "kind": "event", '
                                       '"time": "2026-07-14T19:00:00.000Z"}'] + good[2:],
                          "bad_record", 2),
        "no seq": (['{"kind": "event", "time": "2026-07-14T19:00:00.000Z"}'], "bad_record", 1),
        "unknown kind": (good[:4] + [json.dumps(record(5, kind="metric"))], "bad_record", 5),
        "time without ms": (good[:1] + [json.dumps(dict(record(2), time="2026-07-14T19:00:00Z"))],
                            "bad_record", 2),
        "time not UTC": (good[:1] + [json.dumps(dict(record(2),
                                                     time="2026-07-14T19:00:00.000+02:00"))],
                         "bad_record", 2),
        "impossible date": (good[:1] + [json.dumps(dict(record(2),
                                                        time="2026-02-30T19:00:00.000Z"))],
                            "bad_record", 2),
        "NaN value": (good[:1] + ['{"seq": 2, "kind": "telemetry", '
                                  '"time": "2026-07-14T19:00:00.000Z", "p": NaN}'], "bad_json", 2),
        "duplicate member": (good[:1] + ['{"seq": 2, "seq": 2, "kind": "telemetry", '
                                         '"time": "2026-07-14T19:00:00.000Z"}'], "bad_json", 2),
    }
    for what, (lines, code, line) in cases.items():
        data = ("\n".join(lines) + "\n").encode()
        a = post(rx, gzip.compress(data), headers(key=f"{SITE}:1-5"))
        expect_error(a, 400, code, what)
        assert a.json.get("line") == line, f"{what}: expected line {line}, got {a.raw!r}"
    bad_utf8 = gzip.compress(b'{"seq": 1, "kind": "event", "time": "\xff"}\n')
    expect_error(post(rx, bad_utf8, headers(key=f"{SITE}:1-1")), 400, "bad_json", "not UTF-8")
    expect_error(post(rx, gzip.compress(b""), headers(key=f"{SITE}:1-1")), 400, "empty_batch",
                 "empty NDJSON")
    expect_stored(rx, [], "after malformed batches")
    crlf = gzip.compress(b"".join(json.dumps(record(s)).encode() + b"\r\n" for s in (1, 2)))
    expect(post(rx, crlf, headers(key=f"{SITE}:1-2")), 201, {"accepted_through": 2},
           "CRLF line ends")
    no_final_nl = gzip.compress(json.dumps(record(3)).encode())
    expect(post(rx, no_final_nl, headers(key=f"{SITE}:3-3")), 201, {"accepted_through": 3},
           "no final newline")
    assert all(not l.endswith("\r") for l in rx.store_path(SITE).read_text().split("\n")), \
        "expected records stored without \\r"


def test_seq_must_increase_by_one_inside_a_batch(rx):
    for seqs in ([1, 2, 4], [1, 2, 2, 3], [3, 2, 1], [1, 3, 2]):
        body = gzip.compress(ndjson(record(s) for s in seqs))
        a = post(rx, body, headers(key=f"{SITE}:{min(seqs)}-{max(seqs)}"))
        expect_error(a, 400, "seq_not_consecutive", f"seqs {seqs}")
    expect_stored(rx, [], "after non-consecutive batches")


def test_too_large_is_413_and_nothing_stored(rx):
    rnd = random.Random(1)
    noise = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(MAX_BODY * 2))
    body = gzip.compress(ndjson([record(1, blob=noise)]))
    assert len(body) > MAX_BODY
    expect_error(post(rx, body, headers(key=f"{SITE}:1-1")), 413, "body_too_large",
                 f"{len(body)} gzip bytes with a limit of {MAX_BODY}")
    bomb = gzip.compress(ndjson([record(1, blob="0" * (16 * MAX_BODY + 10))]))
    assert len(bomb) < MAX_BODY
    expect_error(post(rx, bomb, headers(key=f"{SITE}:1-1")), 413, "decoded_too_large",
                 "small gzip that decompresses past the limit")
    body, h = batch(1, 501)
    expect_error(post(rx, body, h), 413, "too_many_records", "501 records with max_records=500")
    expect_stored(rx, [], "after 413s")
    body, h = batch(1, 500)
    expect(post(rx, body, h), 201, {"accepted_through": 500}, "500 records (the limit)")


def test_chunked_body_is_accepted_and_limited(rx):
    body, h = batch(1, 5)

    def chunks(data, size=7):
        for i in range(0, len(data), size):
            yield data[i:i + size]

    c = http.client.HTTPConnection("127.0.0.1", rx.port, timeout=5)
    try:
        c.request("POST", PATH, body=chunks(body), headers=h, encode_chunked=True)
        r = c.getresponse()
        a = Answer(r.status, dict(r.getheaders()), r.read())
    finally:
        c.close()
    expect(a, 201, {"accepted_through": 5}, "chunked upload of 1-5")
    big = os.urandom(MAX_BODY + 100)
    c = http.client.HTTPConnection("127.0.0.1", rx.port, timeout=5)
    try:
        c.request("POST", PATH, body=chunks(big, 4096), headers=headers(key=f"{SITE}:6-6"),
                  encode_chunked=True)
        r = c.getresponse()
        a = Answer(r.status, dict(r.getheaders()), r.read())
    finally:
        c.close()
    expect_error(a, 413, "body_too_large", "chunked body over the limit")
    head = raw_request_head(rx.port, 0, key=f"{SITE}:6-6").replace(b"Content-Length: 0\r\n", b"")
    with socket.create_connection(("127.0.0.1", rx.port), timeout=5) as s:
        s.sendall(head)
        answer = read_until_closed(s)
    assert answer.startswith(b"HTTP/1.1 411 ") and b"length_required" in answer, \
        f"expected 411 length_required for a POST without Content-Length, got {answer[:300]!r}"


def test_rate_limit_is_429_with_retry_after(tmp_path):
    with CentralReceiver(tmp_path / "c", TOKENS, rate_limit=(2, 60)) as rx:
        expect(send(rx, 1, 1), 201, {"accepted_through": 1}, "1st request in the window")
        expect(send(rx, 2, 2), 201, {"accepted_through": 2}, "2nd request in the window")
        a = send(rx, 3, 3)
        expect_error(a, 429, "rate_limited", "3rd request with rate_limit=(2, 60 s)")
        ra = a.headers.get("retry-after", "")
        assert ra.isdigit() and 1 <= int(ra) <= 30, \
            f"expected Retry-After of 1..30 s (one token per 30 s), got {ra!r}"
        expect_stored(rx, [1, 2], "after the 429")


# ----------------------------------------------------------------------------- faults

def test_fault_refuse_resets_the_connection_then_recovers(rx):
    rx.set_faults("refuse:n=2")
    for i in (1, 2):
        expect_disconnect(lambda: send(rx, 1, 3), f"request {i} under refuse:n=2")
    expect(send(rx, 1, 3), 201, {"accepted_through": 3}, "third request (fault used up)")
    assert [e["fault"] for e in rx.requests] == ["refuse", "refuse", None], \
        f"expected two refused requests then one normal, got {rx.requests}"


def test_stop_start_is_connection_refused_on_the_same_port(rx):
    expect(send(rx, 1, 5), 201, {"accepted_through": 5}, "before stop")
    port = rx.port
    rx.stop()
    e = expect_disconnect(lambda: send(rx, 6, 8), "request while stopped")
    assert isinstance(e, ConnectionRefusedError), f"expected connection refused, got {e!r}"
    rx.start()
    assert rx.port == port, f"expected the same port {port} after start, got {rx.port}"
    expect(send(rx, 6, 8), 201, {"accepted_through": 8}, "after start")


def test_fault_timeout_answers_nothing_then_closes(rx):
    rx.set_faults("timeout:n=1:seconds=1.2")
    started = time.monotonic()
    e = expect_disconnect(lambda: send(rx, 1, 3, timeout=0.4), "client timeout 0.4 s")
    assert isinstance(e, socket.timeout), f"expected a client timeout, got {e!r}"
    rx.set_faults("timeout:n=1:seconds=0.6")
    started = time.monotonic()
    e = expect_disconnect(lambda: send(rx, 1, 3, timeout=5), "client timeout 5 s, fault 0.6 s")
    waited = time.monotonic() - started
    assert 0.5 <= waited < 4, f"expected the connection closed after ~0.6 s, got {waited:.2f} s"
    expect_stored(rx, [], "after timeouts")
    expect(send(rx, 1, 3), 201, {"accepted_through": 3}, "after the fault")


@pytest.mark.parametrize("spec,status,code", [("http_500:n=1", 500, "injected"),
                                              ("http_413:n=1", 413, "injected"),
                                              ("http_429:n=1:retry_after=7", 429, "injected")])
def test_fault_http_answers_and_stores_nothing(rx, spec, status, code):
    rx.set_faults(spec)
    a = send(rx, 1, 3)
    expect_error(a, status, code, f"small valid batch under {spec}")
    if status == 429:
        assert a.headers.get("retry-after") == "7", f"expected Retry-After: 7, got {a.headers}"
    expect_stored(rx, [], f"after {spec}")
    expect(send(rx, 1, 3), 201, {"accepted_through": 3}, f"next request after {spec}")


def raw_request_head(port, length, key=f"{SITE}:1-10"):
    return (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/x-ndjson\r\n"
            f"Content-Encoding: gzip\r\nIdempotency-Key: {key}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def read_until_closed(s, timeout=5):
    s.settimeout(timeout)
    data = b""
    try:
        while True:
            got = s.recv(65536)
            if not got:
                break
            data += got
    except ConnectionResetError:
        pass
    return data


def test_fault_drop_mid_body_closes_without_answer(rx):
    body, _ = batch(1, 10)
    rx.set_faults({"name": "drop_mid_body", "n": 1})
    with socket.create_connection(("127.0.0.1", rx.port), timeout=5) as s:
        s.sendall(raw_request_head(rx.port, len(body)) + body[:len(body) // 2])
        data = read_until_closed(s)
    assert data == b"", f"expected the connection closed without an answer, got {data[:200]!r}"
    log = rx.requests[-1]
    assert log["fault"] == "drop_mid_body" and log["status"] is None \
        and 0 < log["bytes"] <= len(body) // 2, \
        f"expected a drop after at most half of {len(body)} bytes, got {log}"
    expect_stored(rx, [], "after drop_mid_body")
    expect(send(rx, 1, 10), 201, {"accepted_through": 10}, "retry after the drop")


def test_client_closing_mid_body_stores_nothing(rx):
    body, _ = batch(1, 10)
    with socket.create_connection(("127.0.0.1", rx.port), timeout=5) as s:
        s.sendall(raw_request_head(rx.port, len(body)) + body[:len(body) // 2])
        s.shutdown(socket.SHUT_WR)
        data = read_until_closed(s)
    assert data == b"", f"expected no answer to a half body, got {data[:200]!r}"
    deadline = time.monotonic() + 3
    while not rx.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    log = rx.requests[-1] if rx.requests else None
    assert log and log["status"] is None and "incomplete" in (log["error"] or ""), \
        f"expected an unanswered 'incomplete body' entry, got {log}"
    expect_stored(rx, [], "after a half body")


def test_fault_accept_but_drop_response_then_retry_is_idempotent(rx):
    rx.set_faults("accept_but_drop_response:n=1")
    expect_disconnect(lambda: send(rx, 1, 10), "upload under accept_but_drop_response")
    expect_stored(rx, range(1, 11), "the batch is stored although the answer was dropped")
    log = rx.requests[-1]
    assert log["status"] is None and log["dropped_status"] == 201 and log["new_records"] == 10, \
        f"expected an unanswered request whose dropped answer was 201 with 10 new, got {log}"
    a = send(rx, 1, 10)
    expect_error(a, 409, "already_stored", "retry of the same batch")
    expect_stored(rx, range(1, 11), "after the retry (stored once)")
    rx.set_faults("accept_but_drop_response:n=1")
    expect_disconnect(lambda: send(rx, 11, 20), "second batch, answer dropped")
    expect(send(rx, 11, 25), 201, {"accepted_through": 25},
           "client re-batches 11-25 under a new key after the lost answer")
    expect_stored(rx, range(1, 26), "after the re-batched retry")


def test_probabilistic_faults_are_reproducible_with_a_seed(tmp_path):
    def statuses(seed):
        with CentralReceiver(tmp_path / f"c{seed}-{time.monotonic_ns()}", TOKENS,
                             faults="http_500:p=0.5", seed=seed) as rx:
            return [send(rx, 1, 1).status for _ in range(24)]

    a, b = statuses(1234), statuses(1234)
    assert a == b, f"expected the same statuses with the same seed, got {a} and {b}"
    assert 500 in a and any(s in (200, 201, 409) for s in a), \
        f"expected a mix of 500 and normal answers at p=0.5, got {a}"
    assert statuses(99) != a or statuses(7) != a, "expected another seed to give another sequence"
    faults, seed = parse_faults("http_500:p=0.3,timeout:n=1:seconds=2,seed=7")
    assert seed == 7 and [f.to_dict() for f in faults] == [
        {"name": "http_500", "p": 0.3, "fired": 0},
        {"name": "timeout", "n": 1, "seconds": 2.0, "fired": 0}], \
        f"expected the parsed spec, got {faults} seed {seed}"
    with pytest.raises(ValueError):
        parse_faults("http_501")


def test_control_endpoint_sets_faults_at_runtime(rx):
    def control(method, path, payload=None):
        c = http.client.HTTPConnection("127.0.0.1", rx.port, timeout=5)
        try:
            body = json.dumps(payload).encode() if payload is not None else None
            c.request(method, path, body=body,
                      headers={"Content-Type": "application/json"} if body else {})
            r = c.getresponse()
            return Answer(r.status, {}, r.read())
        finally:
            c.close()

    a = control("POST", "/_control/faults", {"faults": "http_500:n=1"})
    expect(a, 200, what="POST /_control/faults")
    assert a.json["faults"][0]["name"] == "http_500", f"expected the fault echoed, got {a.raw!r}"
    expect_error(send(rx, 1, 2), 500, "injected", "records request after setting http_500")
    expect(send(rx, 1, 2), 201, {"accepted_through": 2}, "next request")
    a = control("GET", "/_control/requests")
    assert [e["status"] for e in a.json["requests"]] == [500, 201], \
        f"expected the request log [500, 201] (control calls not logged), got {a.raw[:400]!r}"
    a = control("GET", f"/_control/audit?site={SITE}")
    expect(a, 200, {"count": 2, "first": 1, "last": 2, "gaps": [], "duplicates": []},
           "GET /_control/audit")
    expect(control("POST", "/_control/faults", {"faults": [{"name": "nope"}]}), 400,
           what="unknown fault name")
    a = control("POST", "/_control/stop", {"seconds": 0.5})
    expect(a, 202, what="POST /_control/stop")
    time.sleep(0.2)
    e = expect_disconnect(lambda: send(rx, 3, 3), "request while paused by /_control/stop")
    assert isinstance(e, ConnectionRefusedError), f"expected refused while paused, got {e!r}"
    deadline = time.monotonic() + 5
    while not rx.running and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)
    expect(send(rx, 3, 3), 201, {"accepted_through": 3}, "after the pause")


def test_restart_keeps_stored_records_and_keys(rx, tmp_path):
    expect(send(rx, 1, 10), 201, {"accepted_through": 10}, "before restart")
    expect(send(rx, 15, 16), 201, {"accepted_through": 10}, "with a gap before restart")
    port = rx.port
    rx.restart()
    assert rx.port == port, f"expected the same port {port}, got {rx.port}"
    assert rx.stored_seqs(SITE) == list(range(1, 11)) + [15, 16], \
        f"expected 1..10, 15, 16 after restart, got {rx.stored_seqs(SITE)}"
    expect_error(send(rx, 1, 10), 409, "already_stored", "replay of 1-10 after restart")
    expect(send(rx, 11, 14), 201, {"accepted_through": 14}, "11-14 after restart")
    expect_error(send(rx, 15, 16), 409, "already_stored", "replay of 15-16, gap now closed")
    rx.stop()
    with CentralReceiver(tmp_path / "central", TOKENS) as again:
        assert again.stored_seqs(SITE) == list(range(1, 17)), \
            f"expected a new receiver on the same data dir to see 1..16, got " \
            f"{again.stored_seqs(SITE)}"
        expect(send(again, 17, 17), 201, {"accepted_through": 17}, "new receiver continues")


def test_torn_last_line_is_cut_on_start(tmp_path):
    data = tmp_path / "c"
    data.mkdir()
    (data / f"{SITE}.ndjson").write_text(
        "".join(json.dumps(record(s)) + "\n" for s in (1, 2)) + '{"seq": 3, "ki')
    with CentralReceiver(data, TOKENS) as rx:
        assert rx.stored_seqs(SITE) == [1, 2], f"expected 1, 2 kept, got {rx.stored_seqs(SITE)}"
        expect(send(rx, 3, 4), 201, {"accepted_through": 4}, "3-4 after the torn line")
        assert rx.audit(SITE) == Audit(4, 1, 4, [], []), f"got {rx.audit(SITE)}"


def test_audit_finds_gaps_and_duplicates_in_a_hand_made_file(tmp_path):
    data = tmp_path / "c"
    data.mkdir()
    seqs = [1, 2, 3, 5, 5, 6, 9, 2]
    (data / f"{SITE}.ndjson").write_text("".join(json.dumps(record(s)) + "\n" for s in seqs))
    (data / f"{OTHER_SITE}.ndjson").write_text(
        "".join(json.dumps(record(s)) + "\n" for s in (3, 4)))
    rx = CentralReceiver(data, TOKENS)
    a = rx.audit(SITE)
    assert a == Audit(8, 1, 9, [(4, 4), (7, 8)], [2, 5]), \
        f"expected Audit(count=8, first=1, last=9, gaps=[(4, 4), (7, 8)], duplicates=[2, 5]), " \
        f"got {a}"
    b = rx.audit(OTHER_SITE)
    assert b == Audit(2, 3, 4, [(1, 2)], []), f"expected a gap 1-2 before seq 3, got {b}"
    assert rx.audit("site-none") == Audit(0, None, None, [], []), "expected an empty audit"
    (data / f"{OTHER_SITE}.ndjson").write_text('{"seq": 1}\nnot json\n')
    with pytest.raises(ValueError):
        rx.audit(OTHER_SITE)
    assert rx.stored_seqs(SITE) == [1, 2, 3, 5, 6, 9], \
        f"expected the index to hold each seq once, got {rx.stored_seqs(SITE)}"


def test_concurrent_overlapping_uploads_store_each_seq_once(rx):
    errors = []

    def worker(i):
        try:
            for first in range(1 + (i % 3) * 5, 61, 10):
                a = send(rx, first, first + 9)
                if a.status not in (200, 201, 409):
                    errors.append(f"{first}: {a!r}")
        except Exception as e:      # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert not errors, f"expected only 200/201/409 answers, got {errors[:5]}"
    top = max(rx.stored_seqs(SITE))
    expect_stored(rx, range(1, top + 1), "after concurrent overlapping uploads")
    assert rx.audit(SITE).gaps == [], f"expected no gaps, got {rx.audit(SITE)}"


def test_script_runs_with_faults_and_stops_on_sigterm(tmp_path):
    proc = subprocess.Popen([sys.executable, str(HERE / "central_receiver.py"), "--port", "0",
                             "--token", TOKEN, "--site", SITE, "--data", str(tmp_path / "d"),
                             "--faults", "http_500:n=1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on 127.0.0.1:"), \
            f"expected 'listening on 127.0.0.1:PORT', got {line!r} / {proc.stderr.read() if proc.poll() is not None else ''}"

        class Where:
            port = int(line.rsplit(":", 1)[1])

        expect_error(send(Where, 1, 2), 500, "injected", "first request with --faults http_500:n=1")
        expect(send(Where, 1, 2), 201, {"accepted_through": 2}, "second request")
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(10)
        assert rc == 0, f"expected exit status 0 on SIGTERM, got {rc}: {proc.stderr.read()}"
        lines = (tmp_path / "d" / f"{SITE}.ndjson").read_text().splitlines()
        assert [json.loads(l)["seq"] for l in lines] == [1, 2], f"expected 1, 2 stored, got {lines}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

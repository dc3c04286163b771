"""The status listener: /metrics as Prometheus text, /health for HAProxy,
and the HTTP edges (404, 405, 400, oversized, bound address)."""

import re
import signal
import socket
import time

import pytest

from ghtest import ALICE, free_port
from test_tls import certs  # noqa: F401  (the session-wide certificates fixture)

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^{}]*\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"(,|$)')


def http(port, request, host="127.0.0.1", timeout=5.0, source=None):
    """Send raw request bytes (from the loopback address source, if given);
    return (status, headers dict, body bytes)."""
    src = (source, 0) if source else None
    with socket.create_connection((host, port), timeout=timeout, source_address=src) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    assert int(headers["content-length"]) == len(body)
    assert headers["connection"] == "close"
    return status, headers, body


def get(port, path):
    return http(port, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())


def parse_prometheus(text):
    """A strict parser of text format 0.0.4: every sample line is
    name{labels} value, every family has HELP then TYPE before its samples,
    no series appears twice. Returns {(name, frozenset(labels)): value}."""
    helps, types, series = {}, {}, {}
    assert text.endswith("\n")
    for line in text.splitlines():
        assert line, "empty line"
        if line.startswith("#"):
            parts = line.split(" ", 3)
            assert parts[1] in ("HELP", "TYPE"), line
            name = parts[2]
            if parts[1] == "HELP":
                assert name not in helps, "second HELP for " + name
                helps[name] = parts[3]
            else:
                assert name in helps, "TYPE before HELP for " + name
                assert name not in types, "second TYPE for " + name
                assert parts[3] in ("counter", "gauge", "histogram"), line
                types[name] = parts[3]
            continue
        m = SAMPLE_RE.match(line)
        assert m, "bad sample line %r" % line
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        float(value)
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and types.get(name[:-len(suffix)]) == "histogram":
                family = name[:-len(suffix)]
        assert family in types, "no TYPE for " + name
        if types[family] == "counter":
            assert name.endswith("_total"), name
        pairs = []
        rest = labels[1:-1] if labels else ""
        while rest:
            lm = LABEL_RE.match(rest)
            assert lm, "bad labels in %r" % line
            pairs.append((lm.group(1), lm.group(2)))
            rest = rest[lm.end():]
        key = (name, frozenset(pairs))
        assert key not in series, "duplicate series " + line
        series[key] = float(value)
    return series


def value(series, name, **labels):
    return series[(name, frozenset(labels.items()))]


def scrape(port):
    status, headers, body = get(port, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse_prometheus(body.decode())


@pytest.fixture
def status_gh(gatehouse):
    port = free_port()
    gh = gatehouse(status={"address": "127.0.0.1:%d" % port})
    gh.status_port = port
    return gh


def test_metrics_move_with_logins_and_bytes(status_gh):
    gh, port = status_gh, status_gh.status_port
    before = scrape(port)
    assert value(before, "gatehouse_up") == 1
    assert value(before, "gatehouse_connections", protocol="imap", phase="relay") == 0

    m = gh.imap()
    assert m.login(*ALICE)[0] == "OK"
    assert m.select("INBOX", readonly=True)[0] == "OK"
    mid = scrape(port)
    assert value(mid, "gatehouse_connections", protocol="imap", phase="relay") == 1
    assert m.fetch("1", "(BODY.PEEK[])")[0] == "OK"
    m.logout()

    bad = gh.imap()
    with pytest.raises(Exception):
        bad.login(ALICE[0], "wrong-password")
    bad.shutdown()
    gh.wait_audit(2)

    deadline = time.monotonic() + 3
    while True:
        after = scrape(port)
        if value(after, "gatehouse_connections", protocol="imap", phase="relay") == 0 or \
                time.monotonic() > deadline:
            break
        time.sleep(0.05)
    d = lambda name, **l: value(after, name, **l) - value(before, name, **l)
    assert d("gatehouse_logins_total", protocol="imap", result="ok") == 1
    assert d("gatehouse_logins_total", protocol="imap", result="fail") == 1
    assert d("gatehouse_connections_accepted_total", protocol="imap") >= 2
    assert d("gatehouse_relay_bytes_total", direction="client_to_backend") > 0
    assert d("gatehouse_relay_bytes_total", direction="backend_to_client") > 100
    assert d("gatehouse_lookups_total") >= 1
    assert value(after, "gatehouse_connections", protocol="imap", phase="relay") == 0
    inf = value(after, "gatehouse_lookup_duration_seconds_bucket", le="+Inf")
    assert inf == value(after, "gatehouse_lookup_duration_seconds_count") >= 1


def test_http_edges(status_gh):
    port = status_gh.status_port
    status, _, body = get(port, "/health")
    assert (status, body) == (200, b"ok\n")
    assert get(port, "/nope")[0] == 404
    assert http(port, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")[0] == 405
    assert http(port, b"GARBAGE\r\n\r\n")[0] == 400
    big = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n"
    assert http(port, big)[0] == 431
    # Bound to 127.0.0.1 only: another loopback address is refused.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", port), timeout=2).close()


def test_health_503_while_draining(status_gh):
    gh, port = status_gh, status_gh.status_port
    m = gh.imap()
    assert m.login(*ALICE)[0] == "OK"
    t0 = time.monotonic()
    gh.signal(signal.SIGTERM)
    deadline = t0 + 2
    while True:
        status, _, body = get(port, "/health")
        if status == 503:
            break
        assert time.monotonic() < deadline, "still %d %r after SIGTERM" % (status, body)
        time.sleep(0.05)
    assert body == b"draining\n"
    gh.proc.wait(gh.settings["shutdown_timeout"] + 3)
    assert gh.proc.returncode == 0
    assert time.monotonic() - t0 < gh.settings["shutdown_timeout"] + 3


def test_tls_handshake_counters(gatehouse, certs, tmp_path):
    from test_tls import _resume, imaps, start_tls_gh
    port = free_port()
    t = start_tls_gh(gatehouse, certs, tls=None, status={"address": "127.0.0.1:%d" % port})
    before = scrape(port)
    m = imaps(t.imaps)
    assert m.login(*ALICE)[0] == "OK"
    m.logout()
    with socket.create_connection(("127.0.0.1", t.imaps), timeout=5) as s:
        s.sendall(b"this is not a ClientHello\r\n" * 4)
        s.settimeout(5)
        while s.recv(4096):
            pass
    out = _resume(t.imaps, t.imaps, tmp_path, version="-tls1_2")
    assert "Reused, TLSv1.2," in out, out[-2000:]
    deadline = time.monotonic() + 3
    while True:
        after = scrape(port)
        d = lambda name, **l: value(after, name, **l) - value(before, name, **l)
        if d("gatehouse_tls_handshakes_total", result="ok") >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert d("gatehouse_tls_handshakes_total", result="ok") == 3
    assert d("gatehouse_tls_handshakes_total", result="failed") == 1
    assert d("gatehouse_tls_resumptions_total") == 1

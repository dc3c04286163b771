"""Edges of the HTTP proxy (issue 6) beyond the issue's list: request
smuggling shapes, RFC 9112 musts (Host), odd backend responses (no length,
204, huge heads, garbage, hang-ups), clients that vanish mid-body, and the
client-IP hash spreading clients over the web backends."""

import base64
import hashlib
import os
import socket
import time

import pytest

from conftest import VALGRIND, ZIMBRA_IDS, mint_zm_auth_token
from ghtest import BOB, FakeBackend
from httpstore import HttpClient, header, header_all, payload_iter, payload_sha256

HOST = "mail.example.com"


def https(gh, **kw):
    return HttpClient(gh.https_port, tls=True, **kw)


def bob_cookie():
    return ("Cookie", "ZM_AUTH_TOKEN=" + mint_zm_auth_token(ZIMBRA_IDS[BOB[0]]))


def exchange(gh, data, timeout=5.0):
    """Send raw bytes on a new TLS connection: (first response, closed after?)."""
    c = https(gh, timeout=timeout)
    try:
        c.send(data)
        r = c.read_response()
        return r, c.is_closed(2.0)
    finally:
        c.close()


def still_serves(gh):
    with https(gh) as c:
        r = c.request(path="/echo?alive=1")
        assert (r.status, r.json()["path"]) == (200, "/echo?alive=1")


# ---------------------------------------------------------------- requests

def test_http11_without_host_is_400(http_gh, web):
    """RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host."""
    gh = http_gh()
    r, _ = exchange(gh, b"GET /echo?nohost=1 HTTP/1.1\r\nAccept: */*\r\n\r\n")
    assert r.status == 400, r
    assert all(not b.requests for b in web.all)


def test_two_host_headers_are_400(http_gh, web):
    gh = http_gh()
    r, _ = exchange(gh, b"GET /echo HTTP/1.1\r\nHost: mail.example.com\r\n"
                        b"Host: evil.example.org\r\n\r\n")
    assert r.status == 400, r
    assert all(not b.requests for b in web.all)


def test_content_length_with_chunked_is_not_smuggled(http_gh, web):
    """Both framings: refuse with 400, or forward only the chunked framing
    (RFC 9112 6.1) so the backend cannot read the body differently."""
    gh = http_gh()
    smuggled = b"GET /echo?smuggled=1 HTTP/1.1\r\nHost: mail.example.com\r\n\r\n"
    body = b"0\r\n\r\n" + smuggled
    c = https(gh)
    try:
        c.send(b"POST /upload HTTP/1.1\r\nHost: mail.example.com\r\n"
               b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(body) + body)
        r = c.read_response()
        if r.status != 400:
            assert r.status == 200 and r.json()["length"] == 0, r
        c.is_closed(1.0)
    finally:
        c.close()
    for b in web.all:
        for method, target, headers in b.requests:
            if target == "/upload":
                assert header(headers, "Content-Length") is None, headers
    # If anything reached a backend as a second request, it came from this
    # connection's "body" only when the proxy read TE first: then it must
    # have been answered as a request of its own, never glued to the POST.
    assert not any(t == "/echo?smuggled=1" and header(h, "Content-Length")
                   for b in web.all for _, t, h in b.requests)


@pytest.mark.parametrize("te", ["chunked, gzip", "identity", "gzip"])
def test_transfer_encoding_not_ending_in_chunked_is_400(http_gh, web, te):
    """RFC 9112 6.3: a request whose Transfer-Encoding does not end in
    chunked has no reliable length: 400, never forwarded."""
    gh = http_gh()
    r, closed = exchange(gh, b"POST /upload?te=1 HTTP/1.1\r\nHost: mail.example.com\r\n"
                             b"Transfer-Encoding: %s\r\n\r\nhello" % te.encode())
    assert r.status in (400, 501), r
    assert closed
    assert all(not b.requests for b in web.all)


def test_obs_fold_is_400_or_unfolded(http_gh, web):
    """RFC 9112 5.2: a folded header line is refused with 400, or each fold
    is replaced by a space before forwarding; never forwarded so that the
    backend reads a different head."""
    gh = http_gh()
    r, closed = exchange(gh, b"GET /echo?fold=1 HTTP/1.1\r\nHost: mail.example.com\r\n"
                             b"X-Folded: a\r\n b\r\nX-After: c\r\n\r\n")
    got = [(t, h) for b in web.all for _, t, h in b.requests]
    if r.status == 400:
        assert closed and not got
    else:
        assert r.status == 200, r
        assert len(got) == 1, got
        t, h = got[0]
        assert t == "/echo?fold=1"
        assert header(h, "X-Folded") in ("a b", "a  b"), h
        assert header(h, "X-After") == "c"
        assert header_all(h, "X-Forwarded-For") == ["127.0.0.1"]
    still_serves(gh)


@pytest.mark.parametrize("data", [
    b"GET /echo HTTP/1.1\r\nHost: mail.example.com\r\nX-Nul: a\x00b\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: mail.example.com\r\nX-Bare: a\rb\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: mail.example.com\r\nX Space: a\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: mail.example.com\r\n : empty-name\r\n\r\n",
], ids=["nul", "bare-cr", "space-in-name", "empty-name"])
def test_header_injection_shapes_are_400(http_gh, web, data):
    gh = http_gh()
    r, closed = exchange(gh, data)
    assert r.status == 400, r
    assert closed
    assert all(not b.requests for b in web.all)
    still_serves(gh)


@pytest.mark.parametrize("body", [
    b"zz\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhelloXX0\r\n\r\n",
    b"ffffffffffffffffffff\r\n",
], ids=["bad-size", "no-crlf-after-data", "size-overflow"])
def test_malformed_chunked_body_closes_cleanly(http_gh, web, body):
    gh = http_gh()
    c = https(gh, timeout=5)
    try:
        c.send(b"POST /upload HTTP/1.1\r\nHost: mail.example.com\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + body)
        try:
            r = c.read_response()
            assert r.status in (400, 502), r
        except Exception:
            pass                      # closed without an answer is also clean
        assert c.is_closed(5.0)
    finally:
        c.close()
    still_serves(gh)


def test_client_vanishing_mid_upload_does_not_poison_the_pool(http_gh, web):
    gh = http_gh(workers=1)
    for i in range(3):
        c = https(gh)
        c.send(HttpClient.build("POST", "/upload?cut=%d" % i, headers=[
            bob_cookie(), ("Content-Length", str(10 << 20))]) + b"x" * 300000)
        time.sleep(0.2)
        c.close()
    time.sleep(0.3)
    with https(gh) as c:
        for i in range(3):
            r = c.request(path="/echo?after-cut=%d" % i, headers=[bob_cookie()])
            assert (r.status, r.backend, r.json()["path"]) == (
                200, "store-b", "/echo?after-cut=%d" % i)


def test_client_vanishing_mid_download(http_gh, web):
    gh = http_gh(workers=1)
    for i in range(3):
        c = https(gh)
        c.send(HttpClient.build(path="/download?size=%d" % (30 << 20)))
        c.rd.head()
        c.rd.exact(100000)
        c.close()
    with https(gh) as c:
        r = c.request(path="/download?size=1000")
        assert r.body == b"".join(payload_iter(1000))
        r = c.request(path="/echo?after=1")
        assert r.json()["path"] == "/echo?after=1"


# ---------------------------------------------------------------- responses

def test_response_without_length_is_relayed_whole(http_gh, web):
    """A backend body delimited by its close: the client gets every byte,
    either chunked (and the connection lives on) or ending with a close."""
    gh = http_gh()
    n = 3_000_017
    with https(gh, timeout=20) as c:
        r = c.request(path="/eof?size=%d" % n, headers=[bob_cookie()])
        assert r.status == 200
        assert len(r.body) == n and hashlib.sha256(r.body).hexdigest() == payload_sha256(n)
        if "chunked" in (r.header("Transfer-Encoding") or "").lower():
            assert c.request(path="/echo?after-eof=1").json()["path"] == "/echo?after-eof=1"


def test_204_and_304_have_no_body_and_keep_the_connection(http_gh, web):
    gh = http_gh()
    with https(gh) as c:
        for code in (204, 304, 204):
            r = c.request(path="/status?code=%d" % code)
            assert (r.status, r.body) == (code, b"")
        r = c.request(path="/echo?after=1")
        assert (r.status, r.json()["path"]) == (200, "/echo?after=1")


def test_large_response_header_is_relayed(http_gh, web):
    gh = http_gh()
    with https(gh) as c:
        r = c.request(path="/echo?bighead=12000")
        assert r.status == 200 and r.header("X-Big") == "h" * 12000


@pytest.mark.parametrize("answer", [
    b"garbage that is not HTTP\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n",       # head cut off
    b"",                                                  # closes at once
    b"HTTP/1.1 200 OK\r\nX-Big: " + b"h" * 200000 + b"\r\n\r\n",
], ids=["garbage", "cut-head", "close", "endless-head"])
def test_broken_backend_answer_is_502(http_gh, web, answer):
    fake = FakeBackend(answer, close_after_greeting=True)
    try:
        gh = http_gh(http={"backends": ["127.0.0.1:%d" % fake.port], "backend_timeout": 3.0})
        t0 = time.monotonic()
        with https(gh, timeout=8) as c:
            r = c.request(path="/echo?broken=1")
        assert r.status == 502, r
        assert time.monotonic() - t0 < 5
    finally:
        fake.close()


def test_backend_silent_after_accept_is_504(http_gh, web):
    fake = FakeBackend(b"", close_after_greeting=False, hold=6.0)
    try:
        gh = http_gh(http={"backends": ["127.0.0.1:%d" % fake.port], "backend_timeout": 1.0})
        t0 = time.monotonic()
        with https(gh, timeout=8) as c:
            r = c.request(path="/echo?silent=1")
        assert r.status == 504, r
        assert time.monotonic() - t0 < 3
    finally:
        fake.close()


# ---------------------------------------------------------------- the client-IP hash

def test_client_ip_hash_spreads_and_sticks(http_gh, web):
    """Clients from 127.0.0.10 .. 127.0.0.49 land on both web backends, and
    each client address always on the same one."""
    gh = http_gh(http={"access_log": "off"})
    first = {}
    for i in range(10, 50):
        src = "127.0.0.%d" % i
        with https(gh, source=src) as c:
            r = c.request(path="/echo")
            assert r.status == 200 and r.backend in web.hash_names, r
            first[src] = r.backend
            assert header_all(r.json()["headers"], "X-Forwarded-For") == [src]
    assert set(first.values()) == web.hash_names, first
    for src in ("127.0.0.10", "127.0.0.23", "127.0.0.37"):
        with https(gh, source=src) as c:
            assert c.request(path="/echo").backend == first[src]


def test_basic_auth_with_bad_base64_goes_to_the_hash(http_gh, web, lookup):
    gh = http_gh()
    with https(gh) as c:
        for value in ("Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode(),
                      "Basic ", "Basic " + base64.b64encode(b":only-pass").decode(),
                      "Basic " + base64.b64encode(os.urandom(600)).decode()):
            r = c.request(path="/Microsoft-Server-ActiveSync",
                          headers=[("Authorization", value)])
            assert r.status == 200 and r.backend in web.hash_names, (value, r)


@pytest.mark.skipif(VALGRIND, reason="timing: valgrind is 10-30x slower")
def test_many_clients_at_once(http_gh, web):
    """60 TLS clients open together, each doing 3 keep-alive requests."""
    import threading
    gh = http_gh()
    errors = []

    def client(i):
        try:
            with https(gh, timeout=20) as c:
                for k in range(3):
                    r = c.request(path="/echo?c=%d&k=%d" % (i, k))
                    assert r.json()["path"] == "/echo?c=%d&k=%d" % (i, k)
        except Exception as e:            # collected: asserted below
            errors.append((i, repr(e)))
    threads = [threading.Thread(target=client, args=(i,)) for i in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors[:5]


# ---------------------------------------------------------------- lookups and the cache

@pytest.mark.parametrize("mode", ["hang", "garbage", "error500"])
def test_broken_lookup_falls_back_to_the_hash(http_gh, web, lookup, mode):
    lookup.mode = mode
    gh = http_gh(lookup={"servers": [lookup.url], "timeout": 1.0})
    t0 = time.monotonic()
    with https(gh, timeout=8) as c:
        r = c.request(path="/echo?lk=1", headers=[bob_cookie()])
    assert r.status == 200 and r.backend in web.hash_names, r
    assert time.monotonic() - t0 < 4


def test_token_route_in_memcached_under_zimbras_key(http_gh, web, lookup, memcached):
    """Reference 2.2: a zimbraId route is cached as route:proto=http;id=<id>,
    a Basic user's as route:proto=http;user=<name>; a second gatehouse
    sharing the memcached routes without a lookup."""
    cache = {"cache": {"memcached": [memcached.address]}}
    gh = http_gh(**cache)
    zid = ZIMBRA_IDS[BOB[0]]
    with https(gh) as c:
        assert c.request(path="/echo", headers=[bob_cookie()]).backend == "store-b"
        auth = "Basic " + base64.b64encode(b"alice@example.com:alice-secret").decode()
        assert c.request(path="/service/home/~/",
                         headers=[("Authorization", auth)]).backend == "store-a"
    v = memcached.wait_for("route:proto=http;id=%s" % zid)
    assert v == ("127.0.0.1:%d" % web.b.port).encode(), v
    v = memcached.wait_for("route:proto=http;user=alice@example.com")
    assert v == ("127.0.0.1:%d" % web.a.port).encode(), v
    n = len(lookup.requests)
    gh2 = http_gh(**cache)
    with https(gh2) as c:
        assert c.request(path="/echo", headers=[bob_cookie()]).backend == "store-b"
    assert len(lookup.requests) == n, "the second gatehouse asked the lookup service"


# ---------------------------------------------------------------- connections

def test_deep_pipeline_answered_in_order(http_gh, web):
    gh = http_gh()
    with https(gh, timeout=20) as c:
        c.send(b"".join(HttpClient.build(path="/echo?p=%d" % i) for i in range(100)))
        for i in range(100):
            r = c.read_response()
            assert (r.status, r.json()["path"]) == (200, "/echo?p=%d" % i)


def test_half_closed_client_gets_its_answer(http_gh, web):
    """`printf 'GET ...' | nc`: the client shuts its sending side after the
    request; the answer still arrives, then the connection is closed."""
    gh = http_gh(mode="both")
    c = HttpClient(gh.plain_port, tls=False)
    try:
        c.send(HttpClient.build(path="/echo?half=1"))
        c.sock.shutdown(socket.SHUT_WR)
        r = c.read_response()
        assert (r.status, r.json()["path"]) == (200, "/echo?half=1")
        assert c.is_closed(3.0)
    finally:
        c.close()


def test_second_request_head_is_timed_too(http_gh, web):
    gh = http_gh(http={"header_timeout": 1.0, "keepalive_timeout": 30.0})
    with https(gh, timeout=6) as c:
        assert c.request(path="/echo").status == 200
        t0 = time.monotonic()
        c.send(b"GET /echo HTTP/1.1\r\nHost: mail.example.com\r\n")
        r = c.read_response()
        assert r.status == 408, r
        assert time.monotonic() - t0 < 3.0


def test_sigterm_lets_a_request_in_flight_finish(http_gh, web):
    import signal
    gh = http_gh(shutdown_timeout=3.0)
    with https(gh, timeout=8) as c:
        c.send(HttpClient.build(path="/slow?secs=1"))
        time.sleep(0.3)
        gh.signal(signal.SIGTERM)
        r = c.read_response()
        assert (r.status, r.json()["path"]) == (200, "/slow?secs=1")
    assert gh.proc.wait(6) == 0


def test_backend_hop_by_hop_headers_do_not_reach_the_client(http_gh, web):
    gh = http_gh()
    with https(gh) as c:
        r = c.request(path="/echo?hop=1")
        assert r.status == 200
        names = {k.lower() for k, _ in r.headers}
        assert "x-backend-hop" not in names, r.headers
        assert r.header("Keep-Alive") != "timeout=99", r.headers
        for v in header_all(r.headers, "Connection"):
            assert "x-backend-hop" not in v.lower()
        assert r.header("X-Backend") in web.hash_names
        assert c.request(path="/echo?after=1").json()["path"] == "/echo?after=1"


# ---------------------------------------------------------------- timers vs. long exchanges

def test_backend_answering_before_the_body_is_relayed(http_gh, web):
    """A backend that refuses an upload at once (413) without reading it:
    the client gets the 413 (then the connection may close), nothing hangs."""
    gh = http_gh(http={"backend_timeout": 3.0})
    c = https(gh, timeout=8)
    try:
        c.send(HttpClient.build("POST", "/early?code=413",
                                headers=[("Content-Length", str(5 << 20))]))
        try:
            for p in payload_iter(1 << 20):
                c.send(p)
        except OSError:
            pass
        r = c.read_response()
        assert (r.status, r.body) == (413, b"too large"), r
    finally:
        c.close()
    still_serves(gh)


def test_slow_reader_download_outlives_the_backend_timeout(http_gh, web):
    """backend_timeout bounds the wait for the response head, not a long
    download that the client reads slowly."""
    gh = http_gh(http={"backend_timeout": 1.0, "keepalive_timeout": 1.0})
    n = 12 * (1 << 20)
    with https(gh, timeout=10) as c:
        c.send(HttpClient.build(path="/download?size=%d" % n))
        c.rd.head()
        h = hashlib.sha256()
        got = 0
        for piece in c.rd.pieces(n):
            h.update(piece)
            got += len(piece)
            if got < (1 << 20):
                continue
            if got - len(piece) < (1 << 20):
                time.sleep(2.5)            # longer than both timeouts
        assert h.hexdigest() == payload_sha256(n)


def test_idle_websocket_outlives_http_timeouts(http_gh, web):
    gh = http_gh(http={"backend_timeout": 1.0, "keepalive_timeout": 1.0,
                       "header_timeout": 1.0})
    from httpstore import ws_accept, ws_frame, ws_read_frame
    key = base64.b64encode(os.urandom(16)).decode()
    with https(gh, timeout=10) as c:
        r = c.request(path="/ws", headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                           ("Sec-WebSocket-Key", key),
                                           ("Sec-WebSocket-Version", "13")])
        assert r.status == 101 and r.header("Sec-WebSocket-Accept") == ws_accept(key)
        time.sleep(2.5)
        c.send(ws_frame(1, b"still here", mask=os.urandom(4)))
        assert ws_read_frame(c.rd, expect_masked=False) == (1, b"still here")


def test_alpn_never_selects_h2_when_http2_is_off(http_gh, web):
    """A listener with http2 = false speaks HTTP/1.1 only: offered h2
    first, ALPN picks http/1.1 (or nothing), and the request works."""
    import ssl
    gh = http_gh(listen_extra={"http2": False})
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    raw = socket.create_connection(("127.0.0.1", gh.https_port), timeout=5)
    with ctx.wrap_socket(raw, server_hostname="webmail.example.net") as s:
        assert s.selected_alpn_protocol() in (None, "http/1.1")
        s.sendall(HttpClient.build(path="/echo?alpn=1", host="webmail.example.net"))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("where", ["dead", "slow"])
def test_error_answer_after_a_request_body(http_gh, web, where):
    """502/504 for a POST with a body: the body is not taken for a next
    request (the connection goes on correctly or closes)."""
    from ghtest import free_port
    if where == "dead":
        gh = http_gh(http={"backends": ["127.0.0.1:%d" % free_port()]})
        path, want = "/upload", 502
    else:
        gh = http_gh(http={"backend_timeout": 1.0})
        path, want = "/slow?secs=3", 504
    body = b"GET /echo?smuggled=1 HTTP/1.1\r\nHost: mail.example.com\r\n\r\n" * 100
    with https(gh, timeout=8) as c:
        c.send(HttpClient.build("POST", path, body=body))
        r = c.read_response()
        assert r.status == want, r
        if "close" in (r.header("Connection") or "").lower():
            assert c.is_closed(3.0)
        else:
            c.send(HttpClient.build(path="/echo?next=1"))
            r = c.read_response()
            assert r.status in (200, 502), r
    for b in web.all:
        assert not [t for _, t, _ in b.requests if "smuggled" in t]


# ---------------------------------------------------------------- hostile names

def test_hostile_basic_and_rest_names_never_inject(http_gh, web, lookup, memcached):
    """Basic user names and REST path users with CR/LF, spaces, controls or
    300 bytes: the request is answered (hash, 400 or 403), the name never
    reaches memcached unescaped or the lookup service as a header break."""
    gh = http_gh(cache={"memcached": [memcached.address], "l1_entries": 0})
    evil_users = [b"alice@example.com\r\nX-Injected: 1", b"alice example.com",
                  b"x" * 300, b"tab\there", b"del\x7fete", b"nul\x00byte",
                  b"a\r\nset route:proto=http;user=x 0 0 1\r\n1"]
    with https(gh) as c:
        for u in evil_users:
            cred = base64.b64encode(u + b":pw").decode()
            r = c.request(path="/Microsoft-Server-ActiveSync",
                          headers=[("Authorization", "Basic " + cred)])
            assert r.status in (200, 400, 403), (u, r)
            if r.status == 200:
                assert r.backend in web.hash_names, (u, r)
            if "close" in (r.header("Connection") or "").lower():
                c.close()
                c = https(gh)
        for path in ("/home/%s/inbox" % ("y" * 300), "/home/a%20b/inbox",
                     "/home/a%09b/inbox", "/home/a%00b/inbox", "/service/home/%7f/x"):
            r = c.request(path=path)
            assert r.status in (200, 400, 403), (path, r)
            if "close" in (r.header("Connection") or "").lower():
                c.close()
                c = https(gh)
        c.close()
    for q in lookup.requests:
        assert "X-Injected" not in q, q.raw
        assert b"\r\nset " not in q.raw, q.raw
    assert memcached.get("route:proto=http;user=x") is None
    assert memcached.items() == 0, "no lookup succeeded, so nothing may be cached"
    still_serves(gh)


# ---------------------------------------------------------------- reload

def test_sighup_changes_the_hash_backends_and_keeps_a_download(http_gh, web):
    """SIGHUP with http.backends = [web-2] only: new requests all go to
    web-2, a download running across the reload completes byte-exact, and
    the old keep-alive connection keeps working."""
    import re
    import signal
    from ghtest import to_libconfig
    gh = http_gh(workers=1)
    n = 20 << 20
    with https(gh, timeout=15) as old, https(gh, timeout=15) as dl:
        assert old.request(path="/echo").status == 200
        dl.send(HttpClient.build(path="/download?size=%d" % n))
        dl.rd.head()
        first = dl.rd.exact(1 << 20)
        gh.settings["http"]["backends"] = [web.web2.address]
        gh.conf_path.write_text(to_libconfig(gh.settings))
        gh.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while not re.search(r"reloaded .*new sessions use it", gh.error_log()):
            assert time.monotonic() < deadline, gh.error_log()[-2000:]
            time.sleep(0.05)
        time.sleep(0.3)
        h = hashlib.sha256(first)
        for piece in dl.rd.pieces(n - len(first)):
            h.update(piece)
        assert h.hexdigest() == payload_sha256(n)
        assert old.request(path="/echo?old=1").status == 200
    for src in ("127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"):
        with https(gh, source=src) as c:
            assert c.request(path="/echo?new=1").backend == "web-2"


@pytest.mark.parametrize("body", [
    b"5\r\nhello\r\n0\r\n" + b"".join(b"X-T%d: %s\r\n" % (i, b"t" * 100) for i in range(3000)) + b"\r\n",
    b"5;" + b"e" * 200000 + b"\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\n0\r\nX-Long: " + b"v" * 300000 + b"\r\n\r\n",
], ids=["trailer-flood", "extension-flood", "long-trailer"])
def test_hostile_chunked_metadata_is_bounded(http_gh, web, body):
    """Trailers and chunk extensions are client-controlled too: a flood of
    them gets 400/431/413 or is relayed, never unbounded memory or a crash."""
    gh = http_gh()
    c = https(gh, timeout=8)
    try:
        c.send(b"POST /upload HTTP/1.1\r\nHost: mail.example.com\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            c.send(body)
        except OSError:
            pass
        try:
            r = c.read_response()
            assert r.status in (200, 400, 413, 431, 502), r
        except Exception:
            pass                     # a close without an answer is clean too
    finally:
        c.close()
    still_serves(gh)


def test_backend_connect_timeout(http_gh, web):
    """A backend whose accept queue is full drops our SYNs: the connect
    times out after limits.connect_timeout with 502/504, not a hang."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):            # fill the accept queue (nobody accepts)
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.2)
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            probe.connect(("127.0.0.1", port))
            pytest.skip("this kernel completes connects to a full accept queue")
        except (socket.timeout, OSError):
            pass
        finally:
            probe.close()
        gh = http_gh(http={"backends": ["127.0.0.1:%d" % port]},
                     limits={"connect_timeout": 1.0})
        t0 = time.monotonic()
        with https(gh, timeout=8) as c:
            r = c.request(path="/echo?ct=1")
        assert r.status in (502, 504), r
        assert time.monotonic() - t0 < 4
    finally:
        for s in fillers:
            s.close()
        lst.close()


def test_absolute_form_targets(http_gh, web):
    """RFC 9112 3.2.2: absolute-form must be accepted (or at least refused
    cleanly); the %0d/%0a rule and REST routing apply to its path too."""
    gh = http_gh()
    with https(gh) as c:
        r = c.request(path="https://mail.example.com/home/bob/inbox?x=1")
        assert r.status in (200, 400), r
        if r.status == 200:
            assert r.backend == "store-b", r
            assert r.json()["path"] in ("/home/bob/inbox?x=1",
                                        "https://mail.example.com/home/bob/inbox?x=1")
        else:
            c.close()
            c = https(gh)
        r = c.request(path="https://mail.example.com/service/home/alice/x%0d%0aSet-Cookie:%20a")
        assert r.status in (400, 403), r
        c.close()
    for b in web.all:
        assert not [t for _, t, _ in b.requests if "%0d" in t.lower()]


@pytest.mark.parametrize("answer,ok_body", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello12", None),
    (b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello", None),
    (b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 5\r\n\r\nhello", b"hello"),
], ids=["cl-and-te", "two-lengths", "bad-length", "obs-fold"])
def test_ambiguous_backend_framing(http_gh, web, answer, ok_body):
    """A backend answer with ambiguous framing: 502, or (where RFC 9112
    gives one reading) relayed with that reading and one framing only."""
    fake = FakeBackend(answer, close_after_greeting=True)
    try:
        gh = http_gh(http={"backends": ["127.0.0.1:%d" % fake.port], "backend_timeout": 3.0})
        with https(gh, timeout=8) as c:
            r = c.request(path="/echo?framing=1")
            if ok_body is None or r.status == 502:
                assert r.status == 502, r
            else:
                assert (r.status, r.body) == (200, ok_body), r
                framings = [k.lower() for k, _ in r.headers
                            if k.lower() in ("content-length", "transfer-encoding")]
                assert len(framings) == 1, r.headers
                for v in header_all(r.headers, "X-Folded"):
                    assert "\r" not in v and "\n" not in v
    finally:
        fake.close()


# ---------------------------------------------------------------- PROXY protocol

def test_proxy_protocol_client_address_everywhere(http_gh, web, lookup):
    """HTTPS listener behind HAProxy (PROXY v1 before TLS): the address it
    carries is the client IP for X-Forwarded-For, X-Real-IP, the lookup's
    Client-IP and the hash; the access log names it too."""
    import ssl
    from ghtest import free_port
    plain_port, https_port = free_port(), free_port()
    gh = http_gh(trusted_proxies=["127.0.0.1/32"], listen=[
        {"address": "127.0.0.1:%d" % plain_port, "protocol": "http", "mode": "redirect"},
        {"address": "127.0.0.1:%d" % https_port, "protocol": "http", "tls": True,
         "proxy_protocol": True}])
    gh.plain_port, gh.https_port = plain_port, https_port
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def request(client_ip, headers=()):
        raw = socket.create_connection(("127.0.0.1", https_port), timeout=5)
        raw.sendall(b"PROXY TCP4 %s 127.0.0.1 40000 443\r\n" % client_ip.encode())
        s = ctx.wrap_socket(raw, server_hostname=HOST)
        c = HttpClient.__new__(HttpClient)
        c.sock = s
        from httpstore import _Reader
        c.rd = _Reader(s)
        try:
            return c.request(path="/echo?pp=1", headers=list(headers))
        finally:
            c.close()

    r = request("203.0.113.50", [("X-Forwarded-For", "6.6.6.6")])
    h = r.json()["headers"]
    assert header_all(h, "X-Forwarded-For") == ["203.0.113.50"], h
    assert header_all(h, "X-Real-IP") == ["203.0.113.50"], h
    r = request("203.0.113.51", [bob_cookie()])
    assert r.backend == "store-b"
    q = [x for x in lookup.requests if x.get("Auth-User") == ZIMBRA_IDS[BOB[0]]]
    assert q and q[-1]["Client-IP"] == "203.0.113.51", [dict(x) for x in q]
    # The hash follows the carried address: many addresses reach both backends.
    seen = {request("198.51.100.%d" % i).backend for i in range(1, 30)}
    assert seen == web.hash_names, seen
    log = gh.access_log_path.read_text()
    assert "203.0.113.50" in log


# ---------------------------------------------------------------- static routes

def test_static_routes_use_the_http_backend_port(http_gh, web):
    """No lookup service: a static route without a port sends web requests
    to http.backend_port; a zimbraId has no static route (hash)."""
    gh = http_gh(lookup=None, routes=[{"match": "@example.com", "server": "127.0.0.1"}],
                 http={"backend_port": web.b.port})
    auth = "Basic " + base64.b64encode(b"alice@example.com:x").decode()
    with https(gh) as c:
        r = c.request(path="/service/home/~/", headers=[("Authorization", auth)])
        assert (r.status, r.backend) == (200, "store-b"), r
        r = c.request(path="/echo", headers=[bob_cookie()])
        assert r.status == 200 and r.backend in web.hash_names, r


# ---------------------------------------------------------------- WebSocket edges

def _ws_upgrade(path="/ws", extra=()):
    key = base64.b64encode(os.urandom(16)).decode()
    return key, HttpClient.build(path=path, headers=[
        ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13")] + list(extra))


def test_websocket_frame_sent_with_the_upgrade(http_gh, web):
    """A client that sends its first frame right behind the upgrade request
    (before the 101): the frame is relayed once the backend switched."""
    from httpstore import ws_accept, ws_frame, ws_read_frame
    gh = http_gh()
    key, req = _ws_upgrade()
    with https(gh) as c:
        c.send(req + ws_frame(1, b"early bird", mask=os.urandom(4)))
        r = c.read_response()
        assert r.status == 101 and r.header("Sec-WebSocket-Accept") == ws_accept(key)
        assert ws_read_frame(c.rd, expect_masked=False) == (1, b"early bird")


def test_websocket_on_plain_both_mode_and_backend_close(http_gh, web):
    """WebSocket over plain HTTP (mode both); when the backend goes away the
    client's connection is closed too."""
    from httpstore import ws_frame, ws_read_frame
    gh = http_gh(mode="both")
    key, req = _ws_upgrade()
    with HttpClient(gh.plain_port, tls=False) as c:
        c.send(req)
        assert c.read_response().status == 101
        c.send(ws_frame(2, b"\x00\xff" * 1000, mask=os.urandom(4)))
        assert ws_read_frame(c.rd, expect_masked=False) == (2, b"\x00\xff" * 1000)
        web.web1.stop()
        web.web2.stop()
        assert c.is_closed(5.0)
    web.web1.start()
    web.web2.start()


def test_imap_and_http_listeners_side_by_side(http_gh, web, stores):
    """One gatehouse with IMAP and HTTP listeners: each speaks its protocol,
    and an HTTP request to the IMAP port gets an IMAP answer, not a proxy."""
    import imaplib
    from ghtest import ALICE, free_port
    plain_port, https_port, imap_port = free_port(), free_port(), free_port()
    gh = http_gh(listen=[
        {"address": "127.0.0.1:%d" % plain_port, "protocol": "http", "mode": "redirect"},
        {"address": "127.0.0.1:%d" % https_port, "protocol": "http", "tls": True},
        {"address": "127.0.0.1:%d" % imap_port, "protocol": "imap", "starttls": "optional"}])
    gh.plain_port, gh.https_port = plain_port, https_port
    m = imaplib.IMAP4("127.0.0.1", imap_port, timeout=10)
    assert m.login(*ALICE)[0] == "OK"
    with https(gh) as c:
        assert c.request(path="/echo?side=1").status == 200
    m.logout()
    with socket.create_connection(("127.0.0.1", imap_port), timeout=5) as s:
        assert s.recv(100).startswith(b"* OK")
        s.sendall(b"GET / HTTP/1.1\r\nHost: mail.example.com\r\n\r\n")
        time.sleep(0.3)
        assert b"HTTP/1.1" not in s.recv(4096)
    assert not [t for b in web.all for _, t, _ in b.requests if t == "/"]


def test_idle_pool_is_capped_by_backend_keepalive(http_gh, web):
    """workers=1, backend_keepalive=2: six concurrent slow requests open six
    backend connections; afterwards only two stay open in the pool."""
    import threading
    gh = http_gh(workers=1, http={"backend_keepalive": 2})
    cookie = bob_cookie()
    results = []

    def one(i):
        with https(gh, timeout=10) as c:
            results.append(c.request(path="/slow?secs=0.5&i=%d" % i, headers=[cookie]).status)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert results == [200] * 6
    assert web.b.connections == 6
    deadline = time.monotonic() + 3
    while web.b.open_connections != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert web.b.open_connections == 2
    # The pooled two serve the next requests.
    with https(gh) as c:
        for i in range(2):
            assert c.request(path="/echo?i=%d" % i, headers=[cookie]).backend == "store-b"
    assert web.b.connections == 6


def test_many_slowloris_connections_do_not_starve_others(http_gh, web):
    """100 connections holding half a request head: a normal client is served
    at once meanwhile, and every slow one is closed after header_timeout."""
    gh = http_gh(http={"header_timeout": 1.5})
    slow = []
    try:
        for i in range(100):
            s = socket.create_connection(("127.0.0.1", gh.plain_port), timeout=5)
            s.sendall(b"GET /slow-%d HTTP/1.1\r\nHost: mail.example.com\r\nX-A: " % i)
            slow.append(s)
        t0 = time.monotonic()
        with https(gh) as c:
            assert c.request(path="/echo?meanwhile=1").status == 200
        assert time.monotonic() - t0 < 1.0
        time.sleep(2.0)
        for s in slow:
            s.settimeout(3)
            data = b""
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            assert data.startswith(b"HTTP/1.1 408"), data[:100]
    finally:
        for s in slow:
            s.close()

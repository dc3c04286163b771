"""HTTP/1.1 pipelining with exchanges that own their backend connections
(issue 15): the next request is routed and connected while the one before it
is in flight, answers go out in order, each exchange has its own deadline,
the access log names each exchange's own backend, and the pipeline depth is
bounded."""

import hashlib
import select
import socket
import ssl
import time

import pytest

from conftest import ZIMBRA_IDS, mint_zm_auth_token
from ghtest import ALICE, BOB, CAROL
from httpstore import HttpClient

HOST = "mail.example.com"


def basic(user):
    import base64
    return ("Authorization", "Basic " + base64.b64encode(("%s:%s" % user).encode()).decode())


def bob_cookie():
    return ("Cookie", "ZM_AUTH_TOKEN=" + mint_zm_auth_token(ZIMBRA_IDS[BOB[0]]))


def paths_seen(backend):
    with backend._lock:
        return [target for _, target, _ in backend.requests]


def wait_for(cond, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def nothing_to_read(c, wait=0.05):
    """No answer byte has reached the client yet. (A readable socket says
    nothing: TLS 1.3 session tickets arrive after the handshake. What a read
    finds is kept for the next read_response.)"""
    if c.rd.buf:
        return False
    timeout = c.sock.gettimeout()
    c.sock.settimeout(wait)
    try:
        data = c.sock.recv(65536)
    except (socket.timeout, ssl.SSLWantReadError):
        return True
    finally:
        c.sock.settimeout(timeout)
    c.rd.buf += data
    return False


def test_second_backend_is_connected_while_the_first_is_slow(http_gh, web):
    gh = http_gh()
    with HttpClient(gh.https_port, timeout=10) as c:
        c.send(HttpClient.build(path="/slow?secs=1.5&n=1", headers=[bob_cookie()]) +
               HttpClient.build(path="/echo?n=2", headers=[basic(ALICE)]))
        # store-a has the second request while store-b still sleeps on the first.
        assert wait_for(lambda: "/echo?n=2" in paths_seen(web.a), 1.2), paths_seen(web.a)
        assert web.a.connections >= 1
        assert nothing_to_read(c), "an answer came before the slow first one"
        r1 = c.read_response()
        r2 = c.read_response()
        assert (r1.status, r1.backend, r1.json()["path"]) == (200, "store-b", "/slow?secs=1.5&n=1")
        assert (r2.status, r2.backend, r2.json()["path"]) == (200, "store-a", "/echo?n=2")
        # The connection goes on.
        assert c.request(path="/echo?n=3").status == 200
    # The access log names each exchange's own backend.
    lines = []
    assert wait_for(lambda: len(gh.access_log_path.read_text().splitlines()) >= 3, 3.0)
    lines = gh.access_log_path.read_text().splitlines()
    first = [ln for ln in lines if "n=1" in ln]
    second = [ln for ln in lines if "n=2" in ln]
    assert first and web.b.address in first[0], lines
    assert second and web.a.address in second[0], lines


@pytest.fixture
def blackhole():
    """A port whose accept queue is full: connects to it never complete."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):            # fill the accept queue: SYNs are dropped
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
        yield port
    finally:
        for s in fillers:
            s.close()
        lst.close()


def route_carol(lookup, host, port):
    """The lookup sends carol's web requests to host:port (a name: resolved
    by gatehouse for that exchange)."""
    for login, (ip, ports, canonical) in list(lookup.users.items()):
        if canonical == CAROL[0] and isinstance(ports, dict):
            lookup.users[login] = (host, dict(ports, http=port), canonical)


def test_a_connect_deadline_ends_its_own_exchange_only(http_gh, web, lookup, blackhole):
    """Carol's backend never accepts: her exchange's connect deadline fires
    while bob's slow request is in flight. Bob's answer still comes first and
    whole; carol's 504 follows it (answers in order), then the close."""
    route_carol(lookup, "127.0.0.1", blackhole)
    gh = http_gh(limits={"connect_timeout": 1.0})
    with HttpClient(gh.https_port, timeout=10) as c:
        t0 = time.monotonic()
        c.send(HttpClient.build(path="/slow?secs=2.5&n=1", headers=[bob_cookie()]) +
               HttpClient.build(path="/echo?n=2", headers=[basic(CAROL)]))
        # The connect deadline fires at about 1 s, long before bob's answer.
        assert wait_for(lambda: "timed out after 1.0 s" in gh.error_log(), 2.2), \
            gh.error_log()[-2000:]
        assert nothing_to_read(c)
        r1 = c.read_response()
        took = time.monotonic() - t0
        r2 = c.read_response()
        assert (r1.status, r1.backend) == (200, "store-b"), r1
        assert took >= 2.0, took
        assert r2.status == 504, r2
        assert c.is_closed(3.0)


def test_exchanges_resolve_their_own_backend_names(http_gh, web, lookup):
    """A route that names its backend by a host name: the exchange resolves
    it itself, while another exchange of the connection is in flight."""
    route_carol(lookup, "localhost", web.a.port)
    gh = http_gh()
    with HttpClient(gh.https_port, timeout=10) as c:
        c.send(HttpClient.build(path="/slow?secs=0.5&n=1", headers=[bob_cookie()]) +
               HttpClient.build(path="/echo?n=2", headers=[basic(CAROL)]))
        r1, r2 = c.read_response(), c.read_response()
    assert (r1.status, r1.backend) == (200, "store-b")
    assert (r2.status, r2.backend, r2.json()["path"]) == (200, "store-a", "/echo?n=2")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_closing_mid_connect_releases_the_connect(http_gh, web, lookup, blackhole, host):
    """Clients that go away while their exchanges connect (an address, or a
    name being resolved, behind a slow first request): nothing of the
    cancelled connects comes back to haunt the worker (the e2e fixture fails
    on a BUG line; the ASan build on a use after free), and it serves on."""
    route_carol(lookup, host, blackhole)
    gh = http_gh(limits={"connect_timeout": 5.0})
    for i in range(5):
        c = HttpClient(gh.https_port, timeout=10)
        c.send(HttpClient.build(path="/slow?secs=0.3&n=%d" % i, headers=[bob_cookie()]) +
               HttpClient.build(path="/echo?carol=%d" % i, headers=[basic(CAROL)]))
        time.sleep(0.05 * i)
        c.close()
    time.sleep(0.5)
    with HttpClient(gh.https_port, timeout=10) as c:
        r = c.request(path="/echo?after=1", headers=[basic(ALICE)])
        assert (r.status, r.backend) == (200, "store-a")
    assert "BUG at" not in gh.error_log()


def test_a_read_deadline_starts_at_the_exchanges_turn(http_gh, web):
    """backend_timeout 1 s: the first answer takes 0.6 s, the second backend
    0.6 s after the first was answered. Each exchange's read deadline counts
    from its own turn, so both are answered; a third that takes 3 s gets its
    504 and the connection closes after it."""
    gh = http_gh(http={"backend_timeout": 1.0})
    with HttpClient(gh.https_port, timeout=10) as c:
        c.send(HttpClient.build(path="/slow?secs=0.6&n=1", headers=[bob_cookie()]) +
               HttpClient.build(path="/slow?secs=1.1&n=2", headers=[basic(ALICE)]) +
               HttpClient.build(path="/slow?secs=3&n=3", headers=[bob_cookie()]))
        r1, r2, r3 = (c.read_response() for _ in range(3))
        assert (r1.status, r1.json()["path"]) == (200, "/slow?secs=0.6&n=1")
        assert (r2.status, r2.json()["path"]) == (200, "/slow?secs=1.1&n=2")
        assert r3.status == 504, r3
        assert c.is_closed(3.0)


def test_pipeline_depth_is_bounded(http_gh, web):
    """Twenty pipelined slow requests: at most eight (HTTP_MAX_PIPELINE) reach
    backends before the first is answered; all twenty come back, in order."""
    gh = http_gh()
    n = 20
    with HttpClient(gh.https_port, timeout=30) as c:
        c.send(b"".join(HttpClient.build(path="/slow?secs=1&n=%d" % i) for i in range(n)))

        def seen():
            return sum(len(paths_seen(b)) for b in (web.web1, web.web2))
        assert wait_for(lambda: seen() >= 8, 0.9), seen()
        time.sleep(0.2)
        assert nothing_to_read(c)
        assert seen() == 8, seen()
        got = [c.read_response() for _ in range(n)]
    assert [r.json()["path"] for r in got] == ["/slow?secs=1&n=%d" % i for i in range(n)]
    assert all(r.status == 200 for r in got)


def test_body_then_next_head_in_one_write(http_gh, web):
    """A POST whose body ends in the middle of a read, the next request's head
    behind it: the body reaches the backend intact and the next request is
    parsed from what follows it."""
    gh = http_gh()
    body = bytes(range(256)) * 3000 + b"tail"
    with HttpClient(gh.https_port, timeout=20) as c:
        c.send(HttpClient.build("POST", "/upload?n=1", headers=[basic(ALICE)], body=body) +
               HttpClient.build(path="/echo?n=2", headers=[bob_cookie()]) +
               HttpClient.build("POST", "/upload?n=3", headers=[
                   bob_cookie(), ("Transfer-Encoding", "chunked")]) +
               b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" +
               HttpClient.build(path="/echo?n=4"))
        r1, r2, r3, r4 = (c.read_response() for _ in range(4))
    assert r1.json() == {"backend": "store-a", "length": len(body),
                         "sha256": hashlib.sha256(body).hexdigest()}
    assert (r2.backend, r2.json()["path"]) == ("store-b", "/echo?n=2")
    assert r3.json() == {"backend": "store-b", "length": 11,
                         "sha256": hashlib.sha256(b"hello world").hexdigest()}
    assert r4.json()["path"] == "/echo?n=4"


def test_local_answer_behind_a_slow_one_waits_its_turn(http_gh, web):
    """The second request is refused by gatehouse itself (encoded CR/LF): its
    403 comes after the first request's answer, not before."""
    gh = http_gh()
    with HttpClient(gh.https_port, timeout=10) as c:
        c.send(HttpClient.build(path="/slow?secs=1&n=1", headers=[bob_cookie()]) +
               HttpClient.build(path="/home/alice/x%0d%0aSet-Cookie:%20a=b"))
        time.sleep(0.5)
        assert nothing_to_read(c)
        r1 = c.read_response()
        r2 = c.read_response()
        assert (r1.status, r1.backend) == (200, "store-b")
        assert r2.status == 403, r2
        assert c.is_closed(3.0)

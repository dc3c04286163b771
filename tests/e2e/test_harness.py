"""Self-tests of the e2e harness: the Dovecot mailstores, the fake lookup
service and the helpers.  None of these needs the gatehouse binary."""

import hashlib
import imaplib
import poplib
import re
import socket
import time

import pytest

from ghtest import (ALICE, BOB, CAROL, RawImap, direct_imap, free_port, parse_audit_line,
                    to_libconfig)


# ---------------------------------------------------------------- Dovecot

@pytest.mark.parametrize("user", [ALICE, CAROL, BOB], ids=["alice", "carol", "bob"])
def test_store_direct_login(stores, user):
    store = stores.store_for(user[0])
    here, other = ("store-b", "store-a") if store is stores.b else ("store-a", "store-b")
    m = direct_imap(store)
    try:
        assert m.welcome.startswith(b"* OK")
        assert m.login(*user)[0] == "OK"
        assert m.select("INBOX")[0] == "OK"
        typ, data = m.search(None, "SUBJECT", '"marker %s"' % here)
        assert typ == "OK" and len(data[0].split()) == 1
        typ, data = m.search(None, "SUBJECT", '"marker %s"' % other)
        assert typ == "OK" and data[0].split() == []
    finally:
        m.logout()


def test_store_wrong_password_is_rejected_quickly(stores):
    """auth_failure_delay = 0 answers a failure on Dovecot's 0.5 s failure
    timer, and the anvil auth penalty is off (every proxied client is
    127.0.0.1), so neither a retry on the same connection nor a new
    connection is slowed down."""
    m = direct_imap(stores.a)
    for _ in range(2):
        t0 = time.monotonic()
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            m.login(ALICE[0], "wrong")
        assert time.monotonic() - t0 < 1.5
    m2 = direct_imap(stores.a)
    t0 = time.monotonic()
    assert m2.login(*ALICE)[0] == "OK"
    assert time.monotonic() - t0 < 1.0
    m2.logout()
    t0 = time.monotonic()
    assert m.login(*ALICE)[0] == "OK"
    assert time.monotonic() - t0 < 1.0
    m.logout()


def test_store_big_message_byte_exact(stores):
    path = stores.a.manifest["users"][ALICE[0]]["messages"][3]["file"]
    with open(path, "rb") as f:
        on_disk = f.read()
    assert on_disk == stores.big_bytes
    assert stores.big_size > 10 * 1024 * 1024 - 1024
    m = direct_imap(stores.a, ALICE)
    try:
        m.select("INBOX", readonly=True)
        typ, data = m.uid("FETCH", str(stores.big_uid), "(BODY.PEEK[])")
        assert typ == "OK"
        body = data[0][1]
        assert len(body) == stores.big_size
        assert hashlib.sha256(body).hexdigest() == stores.big_sha256
    finally:
        m.logout()


@pytest.mark.parametrize("user", [ALICE, BOB], ids=["alice", "bob"])
def test_store_pop3_login(stores, user):
    store = stores.store_for(user[0])
    p = poplib.POP3("127.0.0.1", store.pop3_port, timeout=10)
    try:
        assert p.getwelcome().startswith(b"+OK")
        p.user(user[0])
        assert p.pass_(user[1]).startswith(b"+OK")
        count, size = p.stat()
        assert count >= 2
    finally:
        p.quit()


def test_store_honours_originating_ip(stores):
    """login_trusted_networks lets a proxy on loopback pass the client IP."""
    with RawImap(stores.a.imap_port) as c:
        assert c.greeting.startswith(b"* OK")
        lines = c.command("a", 'ID ("X-ORIGINATING-IP" "192.0.2.77" "X-VIA" "harness")')
        assert lines[-1].startswith(b"a OK")
        assert c.command("b", "LOGIN %s %s" % ALICE)[-1].startswith(b"b OK")
        c.command("c", "LOGOUT")
    # Dovecot logs the ID (with rip=) and the Login line separately: wait
    # for the Login line itself.
    login = re.compile(r"Login: user=<alice@example.com>.*rip=192\.0\.2\.77")
    deadline = time.monotonic() + 3
    while not login.search(stores.a.log_text()):
        assert time.monotonic() < deadline, stores.a.log_tail()
        time.sleep(0.05)


# ---------------------------------------------------------------- lookupd

def _lookup_get(lookup, user, version="HTTP/1.0", extra=b""):
    req = ("GET /service/extension/nginx-lookup %s\r\n"
           "Host: 127.0.0.1\r\n"
           "Auth-Method: username\r\n"
           "Auth-User: %s\r\n"
           "Auth-Pass: _password_\r\n"
           "Auth-Protocol: imap\r\n"
           "Auth-Login-Attempt: 1\r\n"
           "X-Proxy-IP: 127.0.0.1\r\n"
           "Client-IP: 127.0.0.1\r\n" % (version, user)).encode() + extra + b"\r\n"
    s = socket.create_connection(("127.0.0.1", lookup.port), timeout=3)
    try:
        s.sendall(req)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data
            data += chunk
    finally:
        s.close()


def _headers(resp):
    head = resp.split(b"\r\n\r\n")[0].decode()
    lines = head.split("\r\n")
    return lines[0], dict(l.split(": ", 1) for l in lines[1:])


def test_lookupd_routes_known_user(lookup, stores):
    status, h = _headers(_lookup_get(lookup, "alice@example.com"))
    assert status == "HTTP/1.0 200 OK"
    assert h["Auth-Status"] == "OK"
    assert h["Auth-Server"] == "127.0.0.1"
    assert h["Auth-Port"] == str(stores.a.imap_port)
    assert h["Auth-User"] == "alice@example.com"
    assert len(lookup.requests) == 1
    r = lookup.requests[0]
    assert (r.method, r.path) == ("GET", "/service/extension/nginx-lookup")
    assert r["auth-user"] == r["Auth-User"] == "alice@example.com"
    assert r["Client-IP"] == "127.0.0.1"


def test_lookupd_qualifies_bob(lookup, stores):
    _, h = _headers(_lookup_get(lookup, "bob"))
    assert h["Auth-Port"] == str(stores.b.imap_port)
    assert h["Auth-User"] == "bob@example.com"


def test_lookupd_unescapes_user(lookup):
    _, h = _headers(_lookup_get(lookup, "carol%40example.com"))
    assert h["Auth-Status"] == "OK" and h["Auth-User"] == "carol@example.com"


def test_lookupd_unknown_user(lookup):
    lookup.auth_wait = 3
    status, h = _headers(_lookup_get(lookup, "nobody@example.com"))
    assert status.startswith("HTTP/1.0 200")
    assert h["Auth-Status"] == "user not found:nobody@example.com"
    assert h["Auth-Wait"] == "3"


def test_lookupd_keepalive(lookup):
    req = (b"GET /service/extension/nginx-lookup HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"Auth-User: bob\r\n\r\n")
    with socket.create_connection(("127.0.0.1", lookup.port), timeout=3) as s:
        s.sendall(req)
        first = s.recv(4096)
        s.sendall(req)
        second = s.recv(4096)
    assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 200")
    assert len(lookup.requests) == 2


@pytest.mark.parametrize("mode", ["garbage", "half", "error500"])
def test_lookupd_broken_modes(lookup, mode):
    lookup.mode = mode
    resp = _lookup_get(lookup, "alice@example.com")
    if mode == "garbage":
        assert not resp.startswith(b"HTTP/")
    elif mode == "half":
        assert resp.startswith(b"HTTP/1.0 200") and b"\r\n\r\n" not in resp
    else:
        assert resp.startswith(b"HTTP/1.0 500")
    assert len(lookup.requests) == 1


def test_lookupd_hang_and_stop(lookup):
    lookup.mode = "hang"
    with pytest.raises(socket.timeout):
        with socket.create_connection(("127.0.0.1", lookup.port), timeout=0.5) as s:
            s.sendall(b"GET / HTTP/1.0\r\nAuth-User: x\r\n\r\n")
            s.recv(10)
    lookup.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", lookup.port), timeout=1)


# ---------------------------------------------------------------- helpers

def test_parse_audit_line():
    line = ('2024-01-02T03:04:05.678Z session=1a2b proto=imap client=127.0.0.1:5000 '
            'login="we\\"ird\\\\n\\xc3\\xa9" user="" result=fail reason="user not found:x" '
            'backend=- source=lookup latency_ms=12')
    r = parse_audit_line(line)
    assert r["ts"] == "2024-01-02T03:04:05.678Z"
    assert r["login"] == 'we"ird\\n\u00e9'
    assert r["user"] == ""
    assert r["reason"] == "user not found:x"
    assert r["backend"] == "-" and r["latency_ms"] == "12"


def test_to_libconfig():
    text = to_libconfig({"workers": 2, "shutdown_timeout": 2.0, "x": None,
                         "limits": {"max_line": 8192, "max_auth_wait": 0.0},
                         "lookup": {"servers": ["http://a/b"]},
                         "routes": [{"match": "@example.com", "server": "127.0.0.1:1"}],
                         "imap": {"send_id": True, "greeting": 'say "hi"'}})
    assert "workers = 2;\n" in text
    assert "shutdown_timeout = 2.0;\n" in text
    assert "x =" not in text
    assert 'servers = [ "http://a/b" ];' in text
    assert re.search(r'routes = \(\n\s+\{\n\s+match = "@example.com";', text)
    assert "send_id = true;" in text
    assert 'greeting = "say \\"hi\\"";' in text


def test_free_port_is_closed():
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", free_port()), timeout=1)

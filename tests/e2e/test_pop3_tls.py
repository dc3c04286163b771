"""POP3 with TLS: STLS on 110-style listeners, implicit TLS (995).

Uses the certificates of test_tls.py and the POP3 fixtures of test_pop3.py.
"""
import hashlib
import poplib
import socket
import ssl
import subprocess
import time

import pytest

from ghtest import ALICE, BOB, check_audit, free_port
from test_pop3 import pop3_settings
from test_tls import certs, client_ctx, tls_group  # noqa: F401  (certs is a fixture)


def _ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.fixture
def tls3(gatehouse, certs):  # noqa: F811
    """gatehouse with POP3 on an implicit-TLS port, a STLS-required port and
    a STLS-optional port."""
    p995, req, opt = free_port(), free_port(), free_port()
    gh = gatehouse(**pop3_settings(
        tls=tls_group(certs),
        listen=[{"address": "127.0.0.1:%d" % p995, "protocol": "pop3", "tls": True},
                {"address": "127.0.0.1:%d" % req, "protocol": "pop3", "starttls": "required"},
                {"address": "127.0.0.1:%d" % opt, "protocol": "pop3", "starttls": "optional"}]))
    gh.p995, gh.req, gh.opt = p995, req, opt
    return gh


def _raw(port, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    f = s.makefile("rb")
    assert f.readline().startswith(b"+OK")
    return s, f


def _capa(f, s):
    s.sendall(b"CAPA\r\n")
    assert f.readline().startswith(b"+OK")
    caps = []
    while True:
        line = f.readline().rstrip(b"\r\n")
        if line == b".":
            return caps
        caps.append(line)


def test_capabilities_before_and_after_stls(tls3):
    s, f = _raw(tls3.req)
    caps = _capa(f, s)
    assert b"STLS" in caps
    assert b"USER" not in caps and not any(c.startswith(b"SASL") for c in caps)
    s.sendall(b"USER alice@example.com\r\n")
    assert f.readline().startswith(b"-ERR [AUTH] Cleartext logins are disabled")
    s.sendall(b"STLS\r\n")
    assert f.readline() == b"+OK Begin TLS negotiation now\r\n"
    t = _ctx().wrap_socket(s)
    tf = t.makefile("rb")
    caps = _capa(tf, t)
    assert b"STLS" not in caps and b"USER" in caps
    assert any(c.startswith(b"SASL") and b"PLAIN" in c for c in caps)
    t.close()


def test_stls_optional_allows_cleartext(tls3):
    s, f = _raw(tls3.opt)
    caps = _capa(f, s)
    assert b"STLS" in caps and b"USER" in caps
    m = poplib.POP3("127.0.0.1", tls3.opt, timeout=10)
    m.user(ALICE[0])
    assert m.pass_(ALICE[1]).startswith(b"+OK")
    m.quit()
    s.close()


def test_stls_injection_is_dropped(tls3):
    """`STLS\\r\\nCAPA\\r\\n` in one write: CAPA must never be answered inside TLS."""
    s, f = _raw(tls3.req)
    s.sendall(b"STLS\r\nCAPA\r\n")
    assert f.readline() == b"+OK Begin TLS negotiation now\r\n"
    t = _ctx().wrap_socket(s)
    t.settimeout(0.7)
    with pytest.raises((socket.timeout, TimeoutError)):
        t.recv(100)
    t.settimeout(5)
    t.sendall(b"NOOP\r\n")
    assert t.recv(100) == b"+OK\r\n"
    t.close()


def test_stls_then_login_and_big_retr(tls3, stores):
    m = poplib.POP3("127.0.0.1", tls3.req, timeout=30)
    m.stls(context=_ctx())
    m.user(ALICE[0])
    assert m.pass_(ALICE[1]).startswith(b"+OK")
    resp, lines, octets = m.retr(4)
    body = b"\r\n".join(lines) + b"\r\n"
    assert hashlib.sha256(body).hexdigest() == stores.big_sha256
    m.quit()
    check_audit(tls3, login=ALICE[0], result="ok", proto="pop3")


def test_pop3s_login_auth_plain_and_second_store(tls3):
    m = poplib.POP3_SSL("127.0.0.1", tls3.p995, timeout=10, context=_ctx())
    m.user(BOB[0])
    assert m.pass_(BOB[1]).startswith(b"+OK")
    count, _ = m.stat()
    assert count >= 1
    found = False
    for i in range(1, count + 1):
        if b"marker store-b" in b"\n".join(m.top(i, 0)[1]):
            found = True
    assert found
    m.quit()


def test_curl_pop3s_and_ssl_reqd(tls3):
    for url, extra in (("pop3s://127.0.0.1:%d/1" % tls3.p995, []),
                       ("pop3://127.0.0.1:%d/1" % tls3.req, ["--ssl-reqd"])):
        out = subprocess.run(["curl", "-sS", "-k", *extra, "--max-time", "15", "--url", url,
                              "--user", "%s:%s" % ALICE], capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert b"Subject:" in out.stdout


def test_stls_twice_and_on_pop3s(tls3):
    t = _ctx().wrap_socket(socket.create_connection(("127.0.0.1", tls3.p995), timeout=10))
    f = t.makefile("rb")
    assert f.readline().startswith(b"+OK")
    t.sendall(b"STLS\r\n")
    assert f.readline().startswith(b"-ERR TLS is already active")
    t.sendall(b"NOOP\r\n")
    assert f.readline() == b"+OK\r\n"
    t.close()


def test_alpn_pop3_accepted_imap_refused(tls3):
    ok = _ctx()
    ok.set_alpn_protocols(["pop3"])
    t = ok.wrap_socket(socket.create_connection(("127.0.0.1", tls3.p995), timeout=10))
    assert t.selected_alpn_protocol() == "pop3"
    t.close()
    bad = _ctx()
    bad.set_alpn_protocols(["imap"])
    with pytest.raises(ssl.SSLError):
        bad.wrap_socket(socket.create_connection(("127.0.0.1", tls3.p995), timeout=10))
    time.sleep(0.1)
    m = poplib.POP3_SSL("127.0.0.1", tls3.p995, timeout=10, context=_ctx())
    m.user(ALICE[0])
    assert m.pass_(ALICE[1]).startswith(b"+OK")
    m.quit()

"""Self-tests of the HTTP test tooling (httpstore.py, the lookup service's
zimbraId routes, the token minting): no gatehouse involved, so a failure
here is the harness's, not the proxy's."""

import base64
import hashlib
import os
import socket
import time
import urllib.request

import pytest

from conftest import ZIMBRA_IDS, mint_zm_auth_token
from ghtest import ALICE, BOB
from httpstore import (HttpBackend, HttpClient, payload, payload_sha256, ws_accept,
                       ws_frame, ws_read_frame)


def test_backend_echo_keepalive_and_counters():
    with HttpBackend("web-x") as b:
        with HttpClient(b.port, tls=False) as c:
            r = c.request(path="/echo?a=1", headers=[("X-Forwarded-For", "1.2.3.4"),
                                                     ("x-MiXeD", "Case  kept")])
            assert (r.status, r.backend) == (200, "web-x")
            e = r.json()
            assert e["backend"] == "web-x" and e["method"] == "GET" and e["path"] == "/echo?a=1"
            assert e["headers"] == [["Host", "mail.example.com"],
                                    ["X-Forwarded-For", "1.2.3.4"], ["x-MiXeD", "Case  kept"]]
            r = c.request("POST", "/upload", body=b"abc")
            assert r.json()["sha256"] == hashlib.sha256(b"abc").hexdigest()
            r = c.request("POST", "/upload", headers=[("Transfer-Encoding", "chunked")],
                          body=b"2\r\nab\r\n1;x=y\r\nc\r\n0\r\nT: 1\r\n\r\n")
            assert (r.json()["length"], r.json()["sha256"]) == (
                3, hashlib.sha256(b"abc").hexdigest())
        with HttpClient(b.port, tls=False) as c:
            assert c.request(path="/status?code=404").status == 404
        assert b.connections == 2 and len(b.requests) == 4


def test_backend_download_chunked_slow_close():
    with HttpBackend("web-y") as b:
        with HttpClient(b.port, tls=False) as c:
            r = c.request(path="/download?size=200001")
            assert r.header("Content-Length") == "200001" and r.body == payload(200001)
            r = c.request(path="/chunked?size=300000")
            assert r.header("Transfer-Encoding") == "chunked"
            assert hashlib.sha256(r.body).hexdigest() == payload_sha256(300000)
            t0 = time.monotonic()
            assert c.request(path="/slow?secs=0.3").status == 200
            assert time.monotonic() - t0 >= 0.3
            r = c.request(path="/close")
            assert r.header("Connection") == "close"
            assert c.is_closed(2.0)


def test_backend_websocket_and_restart_on_same_port():
    b = HttpBackend("web-z").start()
    port = b.port
    key = base64.b64encode(os.urandom(16)).decode()
    with HttpClient(port, tls=False) as c:
        r = c.request(path="/ws", headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                           ("Sec-WebSocket-Key", key),
                                           ("Sec-WebSocket-Version", "13")])
        assert r.status == 101 and r.header("Sec-WebSocket-Accept") == ws_accept(key)
        c.send(ws_frame(1, b"x" * 70000, mask=b"\x01\x02\x03\x04"))
        assert ws_read_frame(c.rd, expect_masked=False) == (1, b"x" * 70000)
        b.stop()                       # closes live connections too
        assert c.is_closed(2.0)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    b.start()
    assert b.port == port
    with HttpClient(port, tls=False) as c:
        assert c.request(path="/echo").status == 200
    b.stop()


def test_rfc6455_accept_example():
    # The example from RFC 6455 section 1.3.
    assert ws_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_minted_token_shape():
    zid = ZIMBRA_IDS[BOB[0]]
    tok = mint_zm_auth_token(zid, exp_ms=1700000000000)
    n, hmac, hexpart = tok.split("_")
    assert n == "0" and len(hmac) == 40 and int(hmac, 16) >= 0
    assert bytes.fromhex(hexpart).decode() == (
        "id=36:%s;exp=13:1700000000000;type=6:zimbra;" % zid)


def test_lookup_zimbra_id_routes_and_statuses(web, lookup):
    def ask(method, user, proto="http"):
        req = urllib.request.Request(lookup.url, headers={
            "Auth-Method": method, "Auth-User": user, "Auth-Pass": "_password_",
            "Auth-Protocol": proto, "Auth-Login-Attempt": "0", "Client-IP": "127.0.0.1",
            "X-Proxy-IP": "127.0.0.1", "X-Proxy-Host": "mail.example.com"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return dict(r.headers)
    h = ask("zimbraId", ZIMBRA_IDS[BOB[0]])
    assert (h["Auth-Status"], h["Auth-Port"], h["Auth-User"]) == ("OK", str(web.b.port), BOB[0])
    h = ask("zimbraId", ZIMBRA_IDS[ALICE[0]], "httpssl")
    assert (h["Auth-Status"], h["Auth-Port"]) == ("OK", str(web.a.port))
    # A zimbraId is not a login, and a login is not a zimbraId.
    assert ask("plain", ZIMBRA_IDS[BOB[0]])["Auth-Status"].startswith("user not found")
    assert ask("zimbraId", BOB[0])["Auth-Status"].startswith("user not found")
    # Name lookups get the http port for http, the IMAP port for imap.
    assert ask("plain", "bob")["Auth-Port"] == str(web.b.port)
    assert ask("plain", ALICE[0], "imap")["Auth-Port"] != str(web.a.port)
    lookup.statuses[ZIMBRA_IDS[BOB[0]]] = "Client-IP 127.0.0.1 is not allowed on this domain"
    assert ask("zimbraId", ZIMBRA_IDS[BOB[0]])["Auth-Status"] == (
        "Client-IP 127.0.0.1 is not allowed on this domain")
    q = lookup.requests[0]
    assert (q["Auth-Method"], q["X-Proxy-Host"]) == ("zimbraId", "mail.example.com")

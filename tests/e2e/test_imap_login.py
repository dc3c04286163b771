"""IMAP logins through gatehouse: every way a client can log in, every way a
login can fail, and the audit line each attempt leaves."""

import re
import socket
import threading
import time

import pytest

from ghtest import (ALICE, BOB, CAROL, FakeBackend, assert_can_login, b64, check_audit,
                    closed_port, quote, search_count)

UNAVAILABLE = b"NO [UNAVAILABLE] Service temporarily unavailable, try again later"


def backend(store):
    return "127.0.0.1:%d" % store.imap_port


# ---------------------------------------------------------------- success

def test_login_ok(gh, stores, lookup):
    m = gh.imap()
    port = m.sock.getsockname()[1]
    assert m.login(*ALICE)[0] == "OK"
    assert m.select("INBOX")[0] == "OK"
    assert search_count(m, "marker store-a") == 1
    assert search_count(m, "marker store-b") == 0
    m.logout()
    check_audit(gh, login=ALICE[0], user=ALICE[0], result="ok",
                backend=backend(stores.a), source="lookup", client_port=port)
    assert len(gh.audit_lines()) == 1
    gh.assert_no_secret(ALICE[1])


def test_lookup_request_headers(gh, lookup):
    """What gatehouse sends to the lookup service (reference §1.2)."""
    with gh.raw() as c:
        assert c.command("a", "LOGIN %s %s" % ALICE)[-1].startswith(b"a OK")
        c.command("b", "LOGOUT")
    assert len(lookup.requests) >= 1
    r = lookup.requests[0]
    assert r.method == "GET"
    assert r.path == "/service/extension/nginx-lookup"
    assert r["Auth-Method"] == "username"
    assert r["Auth-User"] in (ALICE[0], ALICE[0].replace("@", "%40"))
    assert r["Auth-Pass"] == "_password_"
    assert r["Auth-Protocol"] == "imap"
    assert re.fullmatch(r"\d+", r["Auth-Login-Attempt"])
    assert r["Client-IP"] == "127.0.0.1"
    assert r["X-Proxy-IP"] == "127.0.0.1"
    for req in lookup.requests:
        assert ALICE[1].encode() not in req.raw


def test_login_second_store(gh, stores):
    m = gh.imap()
    assert m.login(*BOB)[0] == "OK"
    assert m.select("INBOX")[0] == "OK"
    assert search_count(m, "marker store-b") == 1
    assert search_count(m, "marker store-a") == 0
    m.logout()
    check_audit(gh, login=BOB[0], user=BOB[0], result="ok",
                backend=backend(stores.b), source="lookup")
    gh.assert_no_secret(BOB[1])


def test_login_uses_canonical_user(gh, stores):
    """Dovecot only knows bob@example.com: logging in as plain `bob` works
    only if gatehouse logs in upstream with the lookup's Auth-User."""
    m = gh.imap()
    assert m.login("bob", BOB[1])[0] == "OK"
    assert m.select("INBOX")[0] == "OK"
    assert search_count(m, "marker store-b") == 1
    m.logout()
    check_audit(gh, login="bob", user=BOB[0], result="ok",
                backend=backend(stores.b), source="lookup")
    gh.assert_no_secret(BOB[1])


def test_dovecot_sees_client_ip(gh, stores):
    """gatehouse sends ID ("X-ORIGINATING-IP" ...) before the backend login."""
    before = stores.a.log_text().count("ID sent:")
    assert_can_login(gh)
    deadline = time.monotonic() + 3
    while True:
        log = stores.a.log_text()
        ids = [l for l in log.splitlines() if "ID sent:" in l][before:]
        if ids:
            break
        assert time.monotonic() < deadline, "no ID seen by Dovecot:\n" + stores.a.log_tail()
        time.sleep(0.05)
    assert re.search(r"x-originating-ip=127\.0\.0\.1", ids[-1], re.I), ids[-1]


# ---------------------------------------------------------------- AUTHENTICATE

def test_authenticate_plain_imaplib(gh, stores):
    """imaplib (3.11) never uses SASL-IR: AUTHENTICATE PLAIN, `+`, response."""
    m = gh.imap()
    typ, _ = m.authenticate("PLAIN", lambda _: ("\0%s\0%s" % ALICE).encode())
    assert typ == "OK"
    assert m.select("INBOX")[0] == "OK"
    m.logout()
    check_audit(gh, login=ALICE[0], user=ALICE[0], result="ok",
                backend=backend(stores.a), source="lookup")
    gh.assert_no_secret(ALICE[1])


def test_authenticate_plain_sasl_ir(gh, stores):
    with gh.raw() as c:
        lines = c.command("a", "AUTHENTICATE PLAIN " + b64("\0%s\0%s" % ALICE))
        assert lines[-1].startswith(b"a OK"), lines
        assert not any(l.startswith(b"+") for l in lines)
        assert c.command("b", "SELECT INBOX")[-1].startswith(b"b OK")
        c.command("c", "LOGOUT")
    check_audit(gh, login=ALICE[0], user=ALICE[0], result="ok",
                backend=backend(stores.a), source="lookup")
    gh.assert_no_secret(ALICE[1], b64("\0%s\0%s" % ALICE))


def test_authenticate_plain_sasl_ir_with_authzid(gh, stores):
    """authzid equal to authcid is the same login."""
    with gh.raw() as c:
        lines = c.command("a", "AUTHENTICATE PLAIN " +
                          b64("%s\0%s\0%s" % (BOB[0], BOB[0], BOB[1])))
        assert lines[-1].startswith(b"a OK"), lines
        c.command("b", "LOGOUT")
    check_audit(gh, login=BOB[0], user=BOB[0], result="ok",
                backend=backend(stores.b))


def test_authenticate_plain_continuation_raw(gh, stores):
    with gh.raw() as c:
        c.send("a AUTHENTICATE PLAIN\r\n")
        assert c.readline().startswith(b"+")
        c.send(b64("\0%s\0%s" % CAROL) + "\r\n")
        assert c.read_tagged("a")[-1].startswith(b"a OK")
        c.command("b", "LOGOUT")
    check_audit(gh, login=CAROL[0], user=CAROL[0], result="ok",
                backend=backend(stores.a))
    gh.assert_no_secret(CAROL[1])


def test_authenticate_login(gh, stores):
    with gh.raw() as c:
        c.send("a AUTHENTICATE LOGIN\r\n")
        assert c.readline().startswith(b"+")
        c.send(b64(ALICE[0]) + "\r\n")
        assert c.readline().startswith(b"+")
        c.send(b64(ALICE[1]) + "\r\n")
        assert c.read_tagged("a")[-1].startswith(b"a OK")
        c.command("b", "LOGOUT")
    check_audit(gh, login=ALICE[0], user=ALICE[0], result="ok",
                backend=backend(stores.a))
    gh.assert_no_secret(ALICE[1])


def test_authenticate_cancel(gh):
    with gh.raw() as c:
        c.send("a AUTHENTICATE PLAIN\r\n")
        assert c.readline().startswith(b"+")
        c.send("*\r\n")
        assert c.read_tagged("a")[-1].startswith(b"a BAD")
        assert c.command("b", "LOGIN %s %s" % ALICE)[-1].startswith(b"b OK")
        c.command("c", "LOGOUT")


@pytest.mark.parametrize("length", [1, 7, 8, 9, 4000])
def test_authenticate_bad_base64_everywhere(gatehouse, stores, length):
    """Every SASL response that is not base64 gets its BAD (or, for the
    password, a failed login) and the session goes on. "!" x 8 once made the
    PLAIN path wipe past its decode buffer (issue 14)."""
    gh = gatehouse(limits={"max_bad_commands": 20, "max_login_failures": 5})
    bang = "!" * length
    with gh.raw() as c:
        assert c.command("a", "AUTHENTICATE PLAIN " + bang)[-1] == b"a BAD Invalid base64 data"
        c.send("b AUTHENTICATE PLAIN\r\n")
        assert c.readline().startswith(b"+")
        c.send(bang + "\r\n")
        assert c.read_tagged("b")[-1] == b"b BAD Invalid base64 data"
        assert c.command("c", "AUTHENTICATE LOGIN " + bang)[-1] == b"c BAD Invalid initial response"
        c.send("d AUTHENTICATE LOGIN\r\n")
        assert c.readline() == b"+ VXNlcm5hbWU6"
        c.send(bang + "\r\n")
        assert c.read_tagged("d")[-1] == b"d BAD Invalid user name response"
        c.send("e AUTHENTICATE LOGIN " + b64(ALICE[0]) + "\r\n")
        assert c.readline() == b"+ UGFzc3dvcmQ6"
        c.send(bang + "\r\n")
        assert c.read_tagged("e")[-1].startswith(b"e NO [AUTHENTICATIONFAILED]")
        assert c.command("f", "NOOP")[-1].startswith(b"f OK")
        assert c.command("g", "LOGIN %s %s" % ALICE)[-1].startswith(b"g OK")
        c.command("h", "LOGOUT")
    recs = gh.wait_audit(2)
    assert [r["result"] for r in recs] == ["fail", "ok"]
    assert "invalid password response" in recs[0]["reason"]
    gh.assert_no_secret(ALICE[1])


def test_authenticate_unknown_mechanism(gh):
    with gh.raw() as c:
        line = c.command("a", "AUTHENTICATE X-UNKNOWN-MECH")[-1]
        assert re.match(rb"a (NO|BAD)", line), line
        assert c.command("b", "NOOP")[-1].startswith(b"b OK")


# ---------------------------------------------------------------- literals and quoting

def test_literal_login(gh, stores):
    with gh.raw() as c:
        c.send("a LOGIN {17}\r\n")
        assert c.readline().startswith(b"+ ")
        c.send("alice@example.com {12}\r\n")
        assert c.readline().startswith(b"+ ")
        c.send("alice-secret\r\n")
        assert c.read_tagged("a")[-1].startswith(b"a OK")
        c.command("b", "LOGOUT")
    check_audit(gh, login=ALICE[0], user=ALICE[0], result="ok",
                backend=backend(stores.a), source="lookup")
    gh.assert_no_secret(ALICE[1])


def test_literal_plus_login(gh, stores):
    with gh.raw() as c:
        c.send("a LOGIN {17+}\r\nalice@example.com {12+}\r\nalice-secret\r\n")
        lines = c.read_tagged("a")
        assert lines[-1].startswith(b"a OK"), lines
        assert not any(l.startswith(b"+") for l in lines), lines
        c.command("b", "LOGOUT")
    check_audit(gh, login=ALICE[0], user=ALICE[0], result="ok",
                backend=backend(stores.a))
    gh.assert_no_secret(ALICE[1])


def test_quoted_password_with_escapes_imaplib(gh, stores):
    m = gh.imap()
    assert m.login(*CAROL)[0] == "OK"      # imaplib quotes and escapes the password
    assert m.select("INBOX")[0] == "OK"
    assert search_count(m, "marker store-a") == 1
    m.logout()
    check_audit(gh, login=CAROL[0], user=CAROL[0], result="ok",
                backend=backend(stores.a), source="lookup")
    gh.assert_no_secret(CAROL[1], quote(CAROL[1]))


def test_quoted_login_raw(gh, stores):
    with gh.raw() as c:
        lines = c.command("a", "LOGIN %s %s" % (quote(CAROL[0]), quote(CAROL[1])))
        assert lines[-1].startswith(b"a OK"), lines
        c.command("b", "LOGOUT")
    check_audit(gh, login=CAROL[0], user=CAROL[0], result="ok")
    gh.assert_no_secret(CAROL[1])


def test_literal_password_with_specials(gh, stores):
    pw = CAROL[1].encode()
    with gh.raw() as c:
        c.send("a LOGIN {17}\r\n")
        assert c.readline().startswith(b"+ ")
        c.send(b"carol@example.com {%d}\r\n" % len(pw))
        assert c.readline().startswith(b"+ ")
        c.send(pw + b"\r\n")
        assert c.read_tagged("a")[-1].startswith(b"a OK")
        c.command("b", "LOGOUT")
    check_audit(gh, login=CAROL[0], user=CAROL[0], result="ok",
                backend=backend(stores.a))
    gh.assert_no_secret(CAROL[1])


# ---------------------------------------------------------------- failures

def test_wrong_password_then_right(gh, stores):
    with gh.raw() as c:
        t0 = time.monotonic()
        line = c.command("a", "LOGIN %s wrong-secret" % ALICE[0])[-1]
        assert line.startswith(b"a NO"), line
        assert b"AUTHENTICATIONFAILED" in line      # Dovecot's own line, our tag
        assert time.monotonic() - t0 < 3
        t0 = time.monotonic()
        line = c.command("b", "LOGIN %s %s" % ALICE)[-1]
        assert line.startswith(b"b OK"), line
        assert time.monotonic() - t0 < 3
        assert c.command("c", "SELECT INBOX")[-1].startswith(b"c OK")
        c.command("d", "LOGOUT")
    recs = gh.wait_audit(2)
    check_audit(recs[0], login=ALICE[0], user=ALICE[0], result="fail",
                reason="backend rejected", backend=backend(stores.a), source="lookup")
    check_audit(recs[1], login=ALICE[0], user=ALICE[0], result="ok",
                backend=backend(stores.a), source="lookup")
    assert recs[0]["session"] == recs[1]["session"]
    gh.assert_no_secret(ALICE[1], "wrong-secret")


def test_unknown_user(gh, lookup):
    with gh.raw() as c:
        t0 = time.monotonic()
        line = c.command("a", "LOGIN nobody@example.com some-password")[-1]
        assert line == b"a NO [AUTHENTICATIONFAILED] Authentication failed"
        assert time.monotonic() - t0 < 2, "max_auth_wait = 0 must cap Auth-Wait"
    check_audit(gh, login="nobody@example.com", user="", result="fail",
                reason="user not found", backend="-", source=("lookup", "-"))
    gh.assert_no_secret("some-password")
    assert_can_login(gh)


def test_auth_wait_is_honoured(gatehouse, lookup):
    lookup.auth_wait = 1
    gh = gatehouse(limits={"max_auth_wait": 10.0})
    with gh.raw() as c:
        t0 = time.monotonic()
        line = c.command("a", "LOGIN nobody@example.com pw")[-1]
        took = time.monotonic() - t0
        assert line.startswith(b"a NO [AUTHENTICATIONFAILED]")
        assert 1.0 <= took < 4.0, took
    check_audit(gh, login="nobody@example.com", result="fail",
                reason="user not found")


def test_auth_wait_is_capped(gatehouse, lookup):
    lookup.auth_wait = 30
    gh = gatehouse(limits={"max_auth_wait": 1.0})
    with gh.raw() as c:
        t0 = time.monotonic()
        line = c.command("a", "LOGIN nobody@example.com pw")[-1]
        took = time.monotonic() - t0
        assert line.startswith(b"a NO [AUTHENTICATIONFAILED]")
        assert 0.9 <= took < 4.0, took


def test_too_many_login_failures(gatehouse, stores):
    gh = gatehouse(limits={"max_login_failures": 3})
    with gh.raw() as c:
        for tag in ("a", "b", "c"):
            line = c.command(tag, "LOGIN %s bad-%s" % (ALICE[0], tag))[-1]
            assert line.startswith(tag.encode() + b" NO"), line
        lines = c.read_until_closed(3)
        assert lines and lines[0] == b"* BYE Too many login failures", lines
    recs = gh.wait_audit(3)
    for r in recs:
        check_audit(r, login=ALICE[0], result="fail", reason="backend rejected",
                    backend=backend(stores.a))
    gh.assert_no_secret("bad-a", "bad-b", "bad-c")
    assert_can_login(gh)


def test_lookup_down(gh, lookup):
    lookup.stop()
    with gh.raw() as c:
        t0 = time.monotonic()
        line = c.command("a", "LOGIN %s %s" % ALICE, timeout=5)[-1]
        assert line == b"a " + UNAVAILABLE
        assert time.monotonic() - t0 < 2.0
    check_audit(gh, login=ALICE[0], result="tempfail", backend="-",
                source=("lookup", "-"))
    gh.assert_no_secret(ALICE[1])


@pytest.mark.parametrize("mode", ["garbage", "half", "error500", "hang"])
def test_lookup_broken(gatehouse, lookup, mode):
    gh = gatehouse(lookup={"timeout": 1.0})
    lookup.mode = mode
    with gh.raw() as c:
        t0 = time.monotonic()
        line = c.command("a", "LOGIN %s %s" % ALICE, timeout=6)[-1]
        assert line == b"a " + UNAVAILABLE
        assert time.monotonic() - t0 < 3.0
    assert len(lookup.requests) >= 1
    check_audit(gh, login=ALICE[0], result="tempfail", backend="-",
                source=("lookup", "-"))
    gh.assert_no_secret(ALICE[1])
    lookup.mode = "normal"
    assert_can_login(gh)


def test_lookup_failover(gatehouse, lookup, stores):
    dead = "http://127.0.0.1:%d/service/extension/nginx-lookup" % closed_port()
    gh = gatehouse(lookup={"servers": [dead, lookup.url]})
    for user in (ALICE, BOB, ALICE):
        assert_can_login(gh, user)
    recs = gh.wait_audit(3)
    assert [r["result"] for r in recs] == ["ok"] * 3


def test_backend_down(gh, lookup):
    port = closed_port()
    lookup.users[ALICE[0]] = ("127.0.0.1", port, ALICE[0])
    with gh.raw() as c:
        t0 = time.monotonic()
        line = c.command("a", "LOGIN %s %s" % ALICE, timeout=5)[-1]
        assert line == b"a " + UNAVAILABLE
        assert time.monotonic() - t0 < 2.0
    check_audit(gh, login=ALICE[0], user=ALICE[0], result="tempfail",
                backend="127.0.0.1:%d" % port, source="lookup")
    gh.assert_no_secret(ALICE[1])
    assert_can_login(gh, BOB)


def test_backend_silent(gatehouse, lookup):
    """A backend that accepts but never greets: backend_timeout applies."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        port = silent.getsockname()[1]
        lookup.users[ALICE[0]] = ("127.0.0.1", port, ALICE[0])
        gh = gatehouse(limits={"backend_timeout": 1.0, "connect_timeout": 1.0})
        with gh.raw() as c:
            t0 = time.monotonic()
            line = c.command("a", "LOGIN %s %s" % ALICE, timeout=8)[-1]
            assert line == b"a " + UNAVAILABLE
            assert time.monotonic() - t0 < 4.0
        check_audit(gh, login=ALICE[0], result="tempfail",
                    backend="127.0.0.1:%d" % port)
    finally:
        silent.close()


@pytest.mark.parametrize("greeting,close", [
    (b"* PREAUTH [CAPABILITY IMAP4rev1] Logged in as admin\r\n", False),
    (b"* BYE Server shutting down\r\n", False),
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", False),
    (b"* OK fake backend ready\r\n", True),
], ids=["preauth", "bye", "not-imap", "closes"])
def test_backend_misbehaves(gatehouse, lookup, greeting, close):
    """A backend greeting other than `* OK`, or a backend that hangs up, is a
    temporary failure; a PREAUTH greeting is never passed to the client."""
    with FakeBackend(greeting, close_after_greeting=close, hold=2.0) as fb:
        lookup.users[ALICE[0]] = ("127.0.0.1", fb.port, ALICE[0])
        gh = gatehouse(limits={"backend_timeout": 1.0})
        with gh.raw() as c:
            t0 = time.monotonic()
            lines = c.command("a", "LOGIN %s %s" % ALICE, timeout=6)
            assert lines[-1] == b"a " + UNAVAILABLE, lines
            assert not any(b"PREAUTH" in l for l in lines), lines
            assert time.monotonic() - t0 < 3.0
            assert c.command("b", "NOOP")[-1].startswith(b"b OK")
        check_audit(gh, login=ALICE[0], result="tempfail",
                    backend="127.0.0.1:%d" % fb.port)
    if greeting.startswith(b"* PREAUTH"):
        for data in fb.received:
            assert ALICE[1].encode() not in data, "password sent to a PREAUTH backend"


def test_backend_id_reply_not_leaked(gh):
    """The client sees the backend's tagged LOGIN answer, not our ID exchange."""
    with gh.raw() as c:
        lines = c.command("a", "LOGIN %s %s" % ALICE)
        assert lines[-1].startswith(b"a OK"), lines
        assert not any(l.startswith(b"* ID") for l in lines), lines
        assert sum(1 for l in lines if l.startswith(b"a ")) == 1, lines
        c.command("b", "LOGOUT")


def test_login_name_with_crlf_is_not_injected(gh, lookup):
    """A literal login name carrying CRLF and a header must not reach the
    lookup request as a header."""
    login = b"alice@example.com\r\nAuth-Status: OK"
    with gh.raw() as c:
        c.send(b"a LOGIN {%d+}\r\n%s {12+}\r\nalice-secret\r\n" % (len(login), login))
        line = c.read_tagged("a")[-1]
        assert re.match(rb"a (NO|BAD)", line), line
        assert c.command("b", "NOOP")[-1].startswith(b"b OK")
    for req in lookup.requests:
        assert "Auth-Status" not in req, req.raw
        assert b"\r\nAuth-Status" not in req.raw


def test_password_with_crlf_is_not_injected(gh, stores):
    """A literal password carrying CRLF + a command is one (wrong) password."""
    pw = b"x\r\nz LOGIN alice@example.com alice-secret"
    with gh.raw() as c:
        c.send(b"a LOGIN alice@example.com {%d+}\r\n%s\r\n" % (len(pw), pw))
        lines = c.read_tagged("a")
        assert lines[-1].startswith(b"a NO"), lines
        assert not any(l.startswith(b"z ") for l in lines), lines
        assert c.command("b", "LOGIN %s %s" % ALICE)[-1].startswith(b"b OK")
        c.command("c", "LOGOUT")
    recs = gh.wait_audit(2)
    assert [r["result"] for r in recs] == ["fail", "ok"]


@pytest.mark.parametrize("what", ["login", "password"])
def test_login_too_long(gh, lookup, what):
    long = "x" * 300 + "@example.com" if what == "login" else "p" * 1100
    user, pw = (long, "pw") if what == "login" else (ALICE[0], long)
    with gh.raw() as c:
        c.send("a LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(user), user, len(pw), pw))
        line = c.read_tagged("a")[-1]
        assert re.match(rb"a (NO|BAD)", line), line
        assert c.command("b", "NOOP")[-1].startswith(b"b OK")
    if what == "login":
        assert lookup.requests == []
    assert_can_login(gh)


# ---------------------------------------------------------------- static routes

def test_static_route(gatehouse, lookup, stores):
    gh = gatehouse(lookup=None, routes=[
        {"match": "@example.com", "server": "127.0.0.1:%d" % stores.a.imap_port}])
    m = gh.imap()
    assert m.login(*ALICE)[0] == "OK"
    assert m.select("INBOX")[0] == "OK"
    assert search_count(m, "marker store-a") == 1
    m.logout()
    check_audit(gh, login=ALICE[0], user=ALICE[0], result="ok",
                backend=backend(stores.a), source="static")
    assert lookup.requests == []
    gh.assert_no_secret(ALICE[1])


# ---------------------------------------------------------------- audit log format

def test_audit_escapes_login(gh):
    """A login with a quote, a backslash and non-ASCII bytes (sent as a literal)."""
    login = b'we"ird\\name\xc3\xa9'
    with gh.raw() as c:
        c.send(b"a LOGIN {%d+}\r\n%s pw\r\n" % (len(login), login))
        line = c.read_tagged("a")[-1]
        assert line.startswith(b"a NO"), line
    raw = gh.wait_audit(1)[-1]["_raw"]
    assert 'login="we\\"ird\\\\name\\xc3\\xa9"' in raw, raw
    assert all(0x20 <= ord(ch) < 0x7f for ch in raw), raw
    rec = gh.last_audit()
    assert rec["login"] == login.decode("utf-8")
    assert rec["result"] == "fail"


def test_concurrent_logins(gh, stores):
    """Several clients at once, on both stores; one audit line each."""
    errors = []

    def worker(user):
        try:
            assert_can_login(gh, user)
        except Exception as e:            # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(u,))
               for u in (ALICE, BOB, CAROL) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    recs = gh.wait_audit(12)
    assert sorted(r["result"] for r in recs) == ["ok"] * 12
    assert len({r["session"] for r in recs}) == 12

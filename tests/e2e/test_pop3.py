"""POP3 through gatehouse: the commands served before login, every way to
log in (USER/PASS, AUTH PLAIN/LOGIN/XOAUTH2), the backend login replay
(XCLIENT/XOIP, lock-step and pipelined), every way a login can fail, hostile
input, and the audit line each attempt leaves.  Clients: python's poplib,
curl and raw sockets; backends: the real Dovecot POP3 listeners of the two
stores, and scripted fakes for what Dovecot cannot show."""

import hashlib
import poplib
import re
import socket
import subprocess
import threading
import time

import pytest

from ghtest import (ALICE, BOB, CAROL, FakeBackend, RawImap, b64, check_audit, closed_port,
                    deep_merge, free_port)

UNAVAILABLE = b"-ERR [SYS/TEMP] Service temporarily unavailable, try again later"
AUTHFAILED = b"-ERR [AUTH] Authentication failed"
DOVECOT_BAD_PASSWORD = b"-ERR [AUTH] Authentication failed."


def backend(store):
    return "127.0.0.1:%d" % store.pop3_port


def xoauth2(user, token="ya29.test-token"):
    return b64("user=%s\x01auth=Bearer %s\x01\x01" % (user, token))


# ---------------------------------------------------------------- fixtures


class RawPop3(RawImap):
    """RawImap's line client, with POP3 helpers."""

    def cmd(self, text, timeout=None):
        """Send one command; return the one-line answer."""
        self.send(text + "\r\n")
        return self.readline(timeout)

    def multiline(self, timeout=None):
        """The body of a multi-line answer (after its first line), un-stuffed."""
        out = []
        while True:
            line = self.readline(timeout)
            if line == b".":
                return out
            out.append(line[1:] if line.startswith(b"..") else line)


def pop3_settings(**overrides):
    """A gatehouse with one POP3 listener that tells Dovecot the client's
    address with XCLIENT (the test stores trust 127.0.0.0/8)."""
    base = {"listen": [{"address": "127.0.0.1:%d" % free_port(), "protocol": "pop3"}],
            "pop3": {"client_ip_command": "xclient"}}
    return deep_merge(base, overrides)


@pytest.fixture
def pop3gh(gatehouse):
    """Factory: pop3gh(**overrides) -> a started gatehouse serving POP3."""
    def factory(**overrides):
        gh = gatehouse(**pop3_settings(**overrides))
        gh.pop3 = lambda timeout=10: poplib.POP3("127.0.0.1", gh.port, timeout=timeout)
        gh.raw3 = lambda timeout=10.0: RawPop3(gh.port, timeout=timeout)
        return gh
    return factory


@pytest.fixture
def gh(pop3gh):
    """The default POP3 gatehouse (shadows conftest's IMAP one)."""
    return pop3gh()


def assert_can_login(gh, user=ALICE, marker="marker store-a"):
    """A fresh connection through gatehouse logs in and sees the user's mail."""
    m = gh.pop3()
    try:
        assert m.user(user[0]).startswith(b"+OK")
        assert m.pass_(user[1]).startswith(b"+OK")
        count, _ = m.stat()
        assert count >= 2
        assert any(marker.encode() in l for l in m.top(2, 0)[1])
    finally:
        try:
            m.quit()
        except Exception:
            pass


class ScriptedPop3:
    """A fake POP3 backend on 127.0.0.1: sends `greeting`, records every line
    it gets, and answers each with respond(line) (bytes, or None to hang up).
    A pending `expect_raw` answer is used once for the next line."""

    def __init__(self, respond, greeting=b"+OK fake POP3 ready\r\n"):
        self.respond = respond
        self.greeting = greeting
        self.lines = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        try:
            conn.sendall(self.greeting)
            conn.settimeout(0.1)
            while not self._stop.is_set():
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    self.lines.append(line)
                    answer = self.respond(line)
                    if answer is None:
                        return
                    conn.sendall(answer)
                try:
                    chunk = conn.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    return
                buf += chunk
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self._stop.set()
        self.sock.close()
        self._thread.join(2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------- before login

def test_greeting_and_capa(gh):
    with gh.raw3() as c:
        assert c.greeting == b"+OK POP3 ready"
        assert c.cmd("CAPA") == b"+OK Capability list follows"
        caps = c.multiline()
        assert caps == [b"TOP", b"USER", b"UIDL", b"RESP-CODES", b"PIPELINING",
                        b"AUTH-RESP-CODE", b"SASL PLAIN LOGIN"]
        # No TLS on this listener: STLS is neither offered nor served.
        assert b"STLS" not in caps
        assert c.cmd("NOOP") == b"+OK"
        assert c.cmd("capa") == b"+OK Capability list follows"
        assert c.multiline()[-1] == b"SASL PLAIN LOGIN"
    m = gh.pop3()
    assert set(m.capa()) >= {"TOP", "USER", "UIDL", "PIPELINING", "SASL"}
    m.quit()


def test_configured_greeting_and_capabilities(pop3gh):
    gh = pop3gh(pop3={"greeting": "Zimbra POP3 ready", "capabilities": ["TOP", "EXPIRE 31"],
                      "sasl_mechanisms": ["PLAIN", "XOAUTH2"]})
    with gh.raw3() as c:
        assert c.greeting == b"+OK Zimbra POP3 ready"
        assert c.cmd("CAPA").startswith(b"+OK")
        assert c.multiline() == [b"TOP", b"EXPIRE 31", b"SASL PLAIN XOAUTH2"]
        assert c.cmd("AUTH") == b"+OK"
        assert c.multiline() == [b"PLAIN", b"XOAUTH2"]
        assert c.cmd("AUTH LOGIN") == b"-ERR Unsupported authentication mechanism"


def test_quit_before_login(gh):
    with gh.raw3() as c:
        assert c.cmd("QUIT") == b"+OK Logging out"
        assert c.read_until_closed(3) == []
    assert gh.audit_lines() == []


def test_stls_without_tls(gh):
    """STLS on a port without TLS: refused, and the session goes on."""
    with gh.raw3() as c:
        assert c.cmd("STLS") == b"-ERR STLS not available on this port"
        assert c.cmd("USER %s" % ALICE[0]) == b"+OK"
        assert c.cmd("PASS %s" % ALICE[1]).startswith(b"+OK")
        assert c.cmd("QUIT").startswith(b"+OK")


def test_unknown_commands_before_login(gh):
    with gh.raw3() as c:
        for cmd in ("STAT", "APOP alice 0123456789abcdef0123456789abcdef"):
            assert c.cmd(cmd) == b"-ERR invalid command"
        assert c.cmd("NOOP") == b"+OK"


def test_auth_mechanism_list(gh):
    with gh.raw3() as c:
        assert c.cmd("AUTH") == b"+OK"
        assert c.multiline() == [b"PLAIN", b"LOGIN"]
        # XOAUTH2 is served only when configured.
        assert c.cmd("AUTH XOAUTH2 " + xoauth2(ALICE[0])) == \
            b"-ERR Unsupported authentication mechanism"
        assert c.cmd("AUTH CRAM-MD5") == b"-ERR Unsupported authentication mechanism"
        assert c.cmd("NOOP") == b"+OK"


# ---------------------------------------------------------------- logins

def test_user_pass_poplib(gh, stores, lookup):
    m = gh.pop3()
    port = m.sock.getsockname()[1]
    assert m.getwelcome() == b"+OK POP3 ready"
    assert m.user(ALICE[0]) == b"+OK"
    assert m.pass_(ALICE[1]).startswith(b"+OK")
    count, size = m.stat()
    assert count == 4
    resp, listing, _ = m.list()
    assert len(listing) == 4
    assert listing[3] == b"4 %d" % stores.big_size
    _, lines, _ = m.retr(2)
    assert b"Subject: marker store-a" in lines
    m.quit()
    check_audit(gh, login=ALICE[0], user=ALICE[0], result="ok",
                backend=backend(stores.a), source="lookup", client_port=port, proto="pop3")
    assert len(gh.audit_lines()) == 1
    assert lookup.requests[-1]["Auth-Protocol"] == "pop3"
    assert lookup.requests[-1]["Auth-Pass"] == "_password_"
    gh.assert_no_secret(ALICE[1])


def test_retr_big_message_byte_exact(gh, stores):
    m = gh.pop3(timeout=30)
    m.user(ALICE[0])
    m.pass_(ALICE[1])
    t0 = time.monotonic()
    resp, lines, octets = m.retr(4)
    took = time.monotonic() - t0
    # poplib strips CRLF and undoes dot-stuffing: put the line ends back.
    body = b"\r\n".join(lines) + b"\r\n"
    assert octets == stores.big_size
    assert len(body) == stores.big_size
    assert hashlib.sha256(body).hexdigest() == stores.big_sha256
    assert body == stores.big_bytes
    assert took < 15, "10 MiB took %.1fs through the proxy" % took
    m.quit()


def test_second_store(gh, stores):
    assert_can_login(gh, BOB, "marker store-b")
    check_audit(gh, login=BOB[0], user=BOB[0], result="ok",
                backend=backend(stores.b), source="lookup", proto="pop3")
    gh.assert_no_secret(BOB[1])


def test_canonical_user(gh, stores):
    """Dovecot knows only bob@example.com: `bob` works only if gatehouse logs
    in with the lookup's Auth-User."""
    assert_can_login(gh, ("bob", BOB[1]), "marker store-b")
    check_audit(gh, login="bob", user=BOB[0], result="ok",
                backend=backend(stores.b), proto="pop3")


def test_password_with_spaces_and_quotes(gh, stores):
    assert_can_login(gh, CAROL)
    check_audit(gh, login=CAROL[0], user=CAROL[0], result="ok", proto="pop3")
    gh.assert_no_secret(CAROL[1])


def test_auth_plain_initial_response(gh, stores):
    with gh.raw3() as c:
        line = c.cmd("AUTH PLAIN " + b64("\0%s\0%s" % ALICE))
        assert line.startswith(b"+OK"), line
        assert re.fullmatch(rb"\+OK 4 \d+", c.cmd("STAT"))
        assert c.cmd("QUIT").startswith(b"+OK")
    check_audit(gh, login=ALICE[0], user=ALICE[0], result="ok",
                backend=backend(stores.a), proto="pop3")
    gh.assert_no_secret(ALICE[1], b64("\0%s\0%s" % ALICE))


def test_auth_plain_continuation_and_authzid(gh, stores):
    with gh.raw3() as c:
        assert c.cmd("AUTH PLAIN") == b"+ "
        line = c.cmd(b64("%s\0%s\0%s" % (BOB[0], BOB[0], BOB[1])))
        assert line.startswith(b"+OK"), line
        assert c.cmd("QUIT").startswith(b"+OK")
    check_audit(gh, login=BOB[0], user=BOB[0], result="ok",
                backend=backend(stores.b), proto="pop3")


def test_auth_login(gh, stores):
    with gh.raw3() as c:
        assert c.cmd("AUTH LOGIN") == b"+ VXNlcm5hbWU6"
        assert c.cmd(b64(CAROL[0])) == b"+ UGFzc3dvcmQ6"
        assert c.cmd(b64(CAROL[1])).startswith(b"+OK")
        assert c.cmd("QUIT").startswith(b"+OK")
    with gh.raw3() as c:
        assert c.cmd("AUTH LOGIN " + b64(ALICE[0])) == b"+ UGFzc3dvcmQ6"
        assert c.cmd(b64(ALICE[1])).startswith(b"+OK")
        assert c.cmd("QUIT").startswith(b"+OK")
    recs = gh.wait_audit(2)
    assert [(r["login"], r["result"]) for r in recs] == [(CAROL[0], "ok"), (ALICE[0], "ok")]
    gh.assert_no_secret(CAROL[1])


def test_auth_cancel_then_login(gh):
    with gh.raw3() as c:
        assert c.cmd("AUTH PLAIN") == b"+ "
        assert c.cmd("*") == b"-ERR authentication aborted"
        assert c.cmd("AUTH LOGIN") == b"+ VXNlcm5hbWU6"
        assert c.cmd("*") == b"-ERR authentication aborted"
        assert c.cmd("USER %s" % ALICE[0]) == b"+OK"
        assert c.cmd("PASS %s" % ALICE[1]).startswith(b"+OK")
        assert c.cmd("QUIT").startswith(b"+OK")
    assert [r["result"] for r in gh.wait_audit(1)] == ["ok"]


def test_auth_bad_base64(gh):
    with gh.raw3() as c:
        assert c.cmd("AUTH PLAIN not-base64!") == b"-ERR Invalid base64 data"
        assert c.cmd("AUTH PLAIN " + b64("no-nuls-here")) == AUTHFAILED
        assert c.cmd("NOOP") == b"+OK"
    check_audit(gh, login="", result="fail", reason="malformed PLAIN",
                proto="pop3")


@pytest.mark.parametrize("length", [1, 7, 8, 9, 4000])
def test_auth_bad_base64_everywhere(pop3gh, stores, length):
    """Every SASL response that is not base64, in every mechanism, gets its
    -ERR (or, for the password, a failed login) and the session goes on
    (issue 14: the decode buffers are wiped by their own size)."""
    gh = pop3gh(limits={"max_bad_commands": 20, "max_login_failures": 5},
                pop3={"sasl_mechanisms": ["PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"]})
    bang = "!" * length
    bad = b"-ERR Invalid base64 data"
    with gh.raw3() as c:
        assert c.cmd("AUTH PLAIN " + bang) == bad
        assert c.cmd("AUTH PLAIN") == b"+ "
        assert c.cmd(bang) == bad
        assert c.cmd("AUTH LOGIN " + bang) == b"-ERR Invalid initial response"
        assert c.cmd("AUTH LOGIN") == b"+ VXNlcm5hbWU6"
        assert c.cmd(bang) == b"-ERR Invalid user name response"
        assert c.cmd("AUTH LOGIN " + b64(ALICE[0])) == b"+ UGFzc3dvcmQ6"
        assert c.cmd(bang) == AUTHFAILED
        for mech in ("XOAUTH2", "OAUTHBEARER"):
            assert c.cmd("AUTH %s %s" % (mech, bang)) == bad
            assert c.cmd("AUTH " + mech) == b"+ "
            assert c.cmd(bang) == bad
        assert c.cmd("NOOP") == b"+OK"
        assert c.cmd("USER %s" % ALICE[0]) == b"+OK"
        assert c.cmd("PASS %s" % ALICE[1]).startswith(b"+OK")
        assert c.cmd("QUIT").startswith(b"+OK")
    recs = gh.wait_audit(2)
    assert [r["result"] for r in recs] == ["fail", "ok"]
    assert "invalid password response" in recs[0]["reason"]
    gh.assert_no_secret(ALICE[1])


def test_curl_sasl(gh, stores):
    """curl logs in with AUTH (CAPA offers SASL PLAIN LOGIN) and RETRs."""
    url = "pop3://127.0.0.1:%d/2" % gh.port
    for extra in ([], ["--sasl-ir"]):
        out = subprocess.run(["curl", "-sS", "--max-time", "10", "--user", "%s:%s" % ALICE,
                              url] + extra, capture_output=True, timeout=20)
        assert out.returncode == 0, out.stderr
        assert b"Subject: marker store-a" in out.stdout
    out = subprocess.run(["curl", "-sS", "--max-time", "10", "--user", "%s:%s" % BOB,
                          "pop3://127.0.0.1:%d/" % gh.port], capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    listing = out.stdout.splitlines()
    # Other tests append to bob's INBOX: at least his three messages.
    assert len(listing) >= 3 and all(re.fullmatch(rb"\d+ \d+", l) for l in listing), listing
    recs = gh.wait_audit(3)
    assert [r["result"] for r in recs] == ["ok"] * 3
    gh.assert_no_secret(ALICE[1], BOB[1])


def test_curl_user_pass(pop3gh, stores):
    """With no SASL offered, curl falls back to USER/PASS."""
    gh = pop3gh(pop3={"sasl_mechanisms": []})
    out = subprocess.run(["curl", "-sS", "--max-time", "10", "--user", "%s:%s" % BOB,
                          "pop3://127.0.0.1:%d/2" % gh.port], capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert b"Subject: marker store-b" in out.stdout
    check_audit(gh, login=BOB[0], result="ok", backend=backend(stores.b),
                proto="pop3")


# ---------------------------------------------------------------- backend replay

def dovecot_logins(store, since):
    return [l for l in store.log_text().splitlines()[since:] if "pop3-login: Info: Login:" in l]


@pytest.mark.parametrize("pipelining", [False, True])
@pytest.mark.parametrize("auth", ["user", "plain"])
def test_backend_replay_modes(pop3gh, stores, pipelining, auth):
    """USER/PASS or AUTH PLAIN, lock-step or in one write: Dovecot logs the
    client's own port (XCLIENT), not gatehouse's."""
    gh = pop3gh(pop3={"backend_auth": auth, "backend_pipelining": pipelining})
    since = len(stores.a.log_text().splitlines())
    m = gh.pop3()
    port = m.sock.getsockname()[1]
    m.user(ALICE[0])
    assert m.pass_(ALICE[1]).startswith(b"+OK")
    assert m.stat()[0] == 4
    m.quit()
    deadline = time.monotonic() + 3
    while not dovecot_logins(stores.a, since):
        assert time.monotonic() < deadline, stores.a.log_tail()
        time.sleep(0.05)
    line = dovecot_logins(stores.a, since)[-1]
    assert "rip=127.0.0.1" in line and "rport=%d," % port in line, line


@pytest.mark.parametrize("command", ["xoip", "none"])
def test_client_ip_command_variants(pop3gh, command):
    gh = pop3gh(pop3={"client_ip_command": command})
    assert_can_login(gh)


def test_long_password_goes_after_continuation(pop3gh, stores):
    """AUTH PLAIN whose initial response would pass 255 octets is sent
    without it (RFC 5034), and the client's long AUTH line is accepted."""
    gh = pop3gh(pop3={"backend_auth": "plain"})
    long_pw = "x" * 400
    with gh.raw3() as c:
        line = c.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (ALICE[0], long_pw)))
        assert line == DOVECOT_BAD_PASSWORD, line
        assert c.cmd("USER %s" % ALICE[0]) == b"+OK"
        assert c.cmd("PASS %s" % ALICE[1]).startswith(b"+OK")
        c.cmd("QUIT")
    gh.assert_no_secret(long_pw)


def test_xoauth2_passed_through(pop3gh, lookup):
    """The client's XOAUTH2 message reaches the backend unchanged; the user
    inside it is what gatehouse looks up."""
    def respond(line):
        if line.startswith(b"AUTH XOAUTH2 "):
            return b"+OK Logged in via token\r\n"
        return b"+OK\r\n"

    token = xoauth2(ALICE[0])
    with ScriptedPop3(respond) as fake:
        lookup.users[ALICE[0]] = ("127.0.0.1", fake.port, "canonical@example.com")
        gh = pop3gh(pop3={"sasl_mechanisms": ["PLAIN", "XOAUTH2"]})
        with gh.raw3() as c:
            assert c.cmd("AUTH XOAUTH2 " + token) == b"+OK Logged in via token"
            assert c.cmd("STAT") == b"+OK"
        with gh.raw3() as c:
            assert c.cmd("AUTH XOAUTH2") == b"+ "
            assert c.cmd(token) == b"+OK Logged in via token"
        assert fake.lines.count(b"AUTH XOAUTH2 " + token.encode()) == 2
        assert fake.lines[0].startswith(b"XCLIENT ADDR=127.0.0.1 PORT=")
        assert b"STAT" in fake.lines
    assert lookup.requests[-1]["Auth-User"] in (ALICE[0], ALICE[0].replace("@", "%40"))
    check_audit(gh, login=ALICE[0], user="canonical@example.com", result="ok",
                backend="127.0.0.1:%d" % fake.port, proto="pop3")
    gh.assert_no_secret("ya29.test-token", token)


def test_xoauth2_failure_and_long_token(pop3gh, lookup):
    """A token the backend rejects: its error challenge is answered for the
    client and the -ERR relayed. A token longer than 255 octets goes after
    the backend's continuation."""
    def respond(line):
        if line == b"AUTH XOAUTH2":
            return b"+ \r\n"
        if line.startswith(b"AUTH XOAUTH2 ") or len(line) > 255:
            return b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n"
        if line == b"":
            return b"-ERR [AUTH] Invalid token\r\n"
        return b"+OK\r\n"

    long_token = xoauth2(ALICE[0], "t" * 400)
    with ScriptedPop3(respond) as fake:
        lookup.users[ALICE[0]] = ("127.0.0.1", fake.port, ALICE[0])
        gh = pop3gh(pop3={"sasl_mechanisms": ["XOAUTH2"], "client_ip_command": "none",
                          "backend_pipelining": True})
        with gh.raw3() as c:
            assert c.cmd("AUTH XOAUTH2 " + xoauth2(ALICE[0])) == b"-ERR [AUTH] Invalid token"
            assert c.cmd("AUTH XOAUTH2 " + long_token) == b"-ERR [AUTH] Invalid token"
            assert c.cmd("NOOP") == b"+OK"
        assert b"AUTH XOAUTH2" in fake.lines
        assert long_token.encode() in fake.lines
    recs = gh.wait_audit(2)
    assert [r["result"] for r in recs] == ["fail", "fail"]
    assert "Invalid token" in recs[0]["reason"]


def test_backend_error_without_code_gets_auth(pop3gh, lookup):
    def respond(line):
        return b"-ERR bad password\r\n" if line.startswith(b"PASS ") else b"+OK\r\n"

    with ScriptedPop3(respond) as fake:
        lookup.users[ALICE[0]] = ("127.0.0.1", fake.port, ALICE[0])
        gh = pop3gh()
        with gh.raw3() as c:
            c.cmd("USER %s" % ALICE[0])
            assert c.cmd("PASS nope") == b"-ERR [AUTH] bad password"
            assert c.cmd("NOOP") == b"+OK"


# ---------------------------------------------------------------- failures

def test_wrong_password_then_right(gh, stores):
    with gh.raw3() as c:
        t0 = time.monotonic()
        assert c.cmd("USER %s" % ALICE[0]) == b"+OK"
        assert c.cmd("PASS wrong-secret") == DOVECOT_BAD_PASSWORD
        assert time.monotonic() - t0 < 3
        # The failed attempt used up the USER: PASS alone is refused.
        assert c.cmd("PASS %s" % ALICE[1]).startswith(b"-ERR")
        assert c.cmd("USER %s" % ALICE[0]) == b"+OK"
        assert c.cmd("PASS %s" % ALICE[1]).startswith(b"+OK")
        assert c.cmd("STAT").startswith(b"+OK 4 ")
        c.cmd("QUIT")
    recs = gh.wait_audit(2)
    check_audit(recs[0], login=ALICE[0], user=ALICE[0], result="fail",
                reason="backend rejected", backend=backend(stores.a), source="lookup",
                proto="pop3")
    check_audit(recs[1], login=ALICE[0], result="ok", proto="pop3")
    assert recs[0]["session"] == recs[1]["session"]
    gh.assert_no_secret("wrong-secret")


def test_pass_before_user(gh):
    with gh.raw3() as c:
        line = c.cmd("PASS %s" % ALICE[1])
        assert line.startswith(b"-ERR") and b"USER" in line, line
        assert c.cmd("USER").startswith(b"-ERR")
        assert c.cmd("USER %s" % ALICE[0]) == b"+OK"
        assert c.cmd("PASS %s" % ALICE[1]).startswith(b"+OK")
        c.cmd("QUIT")


def test_unknown_user(gh, lookup):
    with gh.raw3() as c:
        t0 = time.monotonic()
        c.cmd("USER nobody@example.com")
        assert c.cmd("PASS some-password") == AUTHFAILED
        assert time.monotonic() - t0 < 2, "max_auth_wait = 0 must cap Auth-Wait"
        assert c.cmd("NOOP") == b"+OK"
    check_audit(gh, login="nobody@example.com", user="", result="fail",
                reason="user not found", backend="-", proto="pop3")
    gh.assert_no_secret("some-password")
    assert_can_login(gh)


def test_auth_wait_is_honoured(pop3gh, lookup):
    lookup.auth_wait = 1
    gh = pop3gh(limits={"max_auth_wait": 10.0})
    with gh.raw3() as c:
        c.cmd("USER nobody@example.com")
        t0 = time.monotonic()
        assert c.cmd("PASS pw") == AUTHFAILED
        assert 1.0 <= time.monotonic() - t0 < 4.0


def test_too_many_login_failures(pop3gh, stores):
    gh = pop3gh(limits={"max_login_failures": 3})
    with gh.raw3() as c:
        for i in range(2):
            c.cmd("USER %s" % ALICE[0])
            assert c.cmd("PASS bad-%d" % i) == DOVECOT_BAD_PASSWORD
        c.cmd("USER %s" % ALICE[0])
        assert c.cmd("PASS bad-2") == b"-ERR [AUTH] Too many login failures"
        assert c.read_until_closed(3) == []
    recs = gh.wait_audit(3)
    for r in recs:
        check_audit(r, login=ALICE[0], result="fail", reason="backend rejected", proto="pop3")
    gh.assert_no_secret("bad-0", "bad-1", "bad-2")
    assert_can_login(gh)


def test_lookup_down(gh, lookup):
    lookup.stop()
    with gh.raw3() as c:
        c.cmd("USER %s" % ALICE[0])
        t0 = time.monotonic()
        assert c.cmd("PASS %s" % ALICE[1], timeout=5) == UNAVAILABLE
        assert time.monotonic() - t0 < 2.0
        assert c.cmd("NOOP") == b"+OK"
    check_audit(gh, login=ALICE[0], result="tempfail", backend="-", proto="pop3")


def test_backend_down(gh, lookup):
    port = closed_port()
    lookup.users[ALICE[0]] = ("127.0.0.1", port, ALICE[0])
    with gh.raw3() as c:
        c.cmd("USER %s" % ALICE[0])
        t0 = time.monotonic()
        assert c.cmd("PASS %s" % ALICE[1], timeout=5) == UNAVAILABLE
        assert time.monotonic() - t0 < 2.0
    check_audit(gh, login=ALICE[0], user=ALICE[0], result="tempfail",
                backend="127.0.0.1:%d" % port, source="lookup", proto="pop3")
    assert_can_login(gh, BOB, "marker store-b")


@pytest.mark.parametrize("greeting,close", [
    (b"-ERR go away\r\n", False),
    (b"* OK this is IMAP\r\n", False),
    (b"+OK fake backend ready\r\n", True),
], ids=["err", "not-pop3", "closes"])
def test_backend_misbehaves(pop3gh, lookup, greeting, close):
    with FakeBackend(greeting, close_after_greeting=close, hold=2.0) as fb:
        lookup.users[ALICE[0]] = ("127.0.0.1", fb.port, ALICE[0])
        gh = pop3gh(limits={"backend_timeout": 1.0})
        with gh.raw3() as c:
            c.cmd("USER %s" % ALICE[0])
            t0 = time.monotonic()
            assert c.cmd("PASS %s" % ALICE[1], timeout=6) == UNAVAILABLE
            assert time.monotonic() - t0 < 3.0
            assert c.cmd("NOOP") == b"+OK"
        check_audit(gh, login=ALICE[0], result="tempfail",
                    backend="127.0.0.1:%d" % fb.port, proto="pop3")
    for data in fb.received:
        assert ALICE[1].encode() not in data, "password sent to a backend that never said +OK"


def test_backend_silent_after_greeting(pop3gh, lookup):
    """A backend that greets and then never answers: backend_timeout."""
    with FakeBackend(b"+OK hello\r\n", hold=3.0) as fb:
        lookup.users[ALICE[0]] = ("127.0.0.1", fb.port, ALICE[0])
        gh = pop3gh(limits={"backend_timeout": 1.0})
        with gh.raw3() as c:
            c.cmd("USER %s" % ALICE[0])
            t0 = time.monotonic()
            assert c.cmd("PASS %s" % ALICE[1], timeout=6) == UNAVAILABLE
            assert 0.9 <= time.monotonic() - t0 < 3.0
    # Lock-step: only the client-IP command was sent, never the password.
    for data in fb.received:
        assert data.startswith(b"XCLIENT ") and ALICE[1].encode() not in data


def test_login_name_too_long(pop3gh, lookup):
    gh = pop3gh(limits={"max_login": 16})
    with gh.raw3() as c:
        assert c.cmd("USER %s" % ("x" * 40)) == b"+OK"
        assert c.cmd("PASS pw") == AUTHFAILED
        assert c.cmd("NOOP") == b"+OK"
    check_audit(gh, login="", result="fail", reason="login name too long",
                proto="pop3")
    assert lookup.requests == []


def test_name_with_space_is_not_looked_up(gh, lookup):
    with gh.raw3() as c:
        assert c.cmd("USER alice@example.com Auth-Status: OK") == b"+OK"
        assert c.cmd("PASS pw") == AUTHFAILED
    assert lookup.requests == []
    check_audit(gh, login="alice@example.com Auth-Status: OK", result="fail",
                reason="invalid login name", proto="pop3")


# ---------------------------------------------------------------- hostile input

def test_overlong_line(gh):
    with gh.raw3() as c:
        c.send("USER " + "x" * 300 + "\r\n")
        assert c.read_until_closed(3) == [b"-ERR line too long"]
    assert_can_login(gh)


def test_overlong_auth_line(pop3gh):
    gh = pop3gh(limits={"max_line": 1024})
    with gh.raw3() as c:
        assert c.cmd("AUTH PLAIN") == b"+ "
        c.send("A" * 2000 + "\r\n")
        assert c.read_until_closed(3) == [b"-ERR line too long"]
    assert_can_login(gh)


def test_garbage_and_too_many_bad_commands(gh):
    with gh.raw3() as c:
        c.send(b"\xff\xfe\x00 garbage\r\n")
        assert c.readline() == b"-ERR invalid command"
        assert c.cmd("GET / HTTP/1.1") == b"-ERR invalid command"
        assert c.cmd("") == b"-ERR invalid command"
        assert c.cmd("NOOP") == b"+OK"
        assert c.cmd("NOOP extra").startswith(b"-ERR")
        assert c.cmd("RETR 1") == b"-ERR too many invalid commands"
        assert c.read_until_closed(3) == []
    assert gh.audit_lines() == []
    assert_can_login(gh)


def test_preauth_timeout(pop3gh):
    gh = pop3gh(limits={"preauth_timeout": 1.0})
    with gh.raw3() as c:
        t0 = time.monotonic()
        assert c.read_until_closed(5) == [b"-ERR Disconnected for inactivity"]
        assert 0.9 <= time.monotonic() - t0 < 3.0


# ---------------------------------------------------------------- pipelining

def test_pipelined_login_and_commands(gh, stores):
    """One write: answered in order; STAT and QUIT reach Dovecot after our
    backend login."""
    with gh.raw3() as c:
        c.send("USER %s\r\nPASS %s\r\nSTAT\r\nQUIT\r\n" % ALICE)
        lines = c.read_until_closed(5)
        assert len(lines) == 4, lines
        assert lines[0] == b"+OK"
        assert lines[1].startswith(b"+OK")
        assert re.fullmatch(rb"\+OK 4 \d+", lines[2]), lines
        assert lines[3].startswith(b"+OK Logging out"), lines
    check_audit(gh, login=ALICE[0], result="ok", proto="pop3")


def test_pipelined_wrong_password(gh):
    """After a failed login the pipelined commands are answered by gatehouse."""
    with gh.raw3() as c:
        c.send("CAPA\r\nUSER %s\r\nPASS wrong\r\nSTAT\r\nNOOP\r\nQUIT\r\n" % ALICE[0])
        lines = c.read_until_closed(5)
        assert lines[0] == b"+OK Capability list follows"
        i = lines.index(b".")
        assert lines[i + 1:] == [b"+OK", DOVECOT_BAD_PASSWORD, b"-ERR invalid command",
                                 b"+OK", b"+OK Logging out"], lines
    gh.assert_no_secret("wrong")


def test_pipelined_auth_plain(gh):
    with gh.raw3() as c:
        c.send("NOOP\r\nAUTH PLAIN\r\n%s\r\nLIST 2\r\nQUIT\r\n" % b64("\0%s\0%s" % BOB))
        lines = c.read_until_closed(5)
        assert lines[:2] == [b"+OK", b"+ "], lines
        assert lines[2].startswith(b"+OK"), lines
        assert re.fullmatch(rb"\+OK 2 \d+", lines[3]), lines
        assert lines[4].startswith(b"+OK Logging out"), lines


def test_concurrent_logins(gh, stores):
    errors = []

    def worker(user, marker):
        try:
            assert_can_login(gh, user, marker)
        except Exception as e:            # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=a)
               for a in ((ALICE, "marker store-a"), (BOB, "marker store-b"),
                         (CAROL, "marker store-a")) * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    recs = gh.wait_audit(9)
    assert sorted(r["result"] for r in recs) == ["ok"] * 9


# ---------------------------------------------------------------- static routes

def test_static_route_default_port_per_protocol(gatehouse, lookup, stores):
    """A route without a port uses pop3.backend_port for POP3 and
    imap.backend_port for IMAP, in the same gatehouse."""
    pop_port, imap_port = free_port(), free_port()
    gh = gatehouse(lookup=None,
                   routes=[{"match": "@example.com", "server": "127.0.0.1"}],
                   imap={"backend_port": stores.a.imap_port},
                   pop3={"backend_port": stores.a.pop3_port, "client_ip_command": "xclient"},
                   listen=[{"address": "127.0.0.1:%d" % pop_port, "protocol": "pop3"},
                           {"address": "127.0.0.1:%d" % imap_port, "protocol": "imap"}])
    m = poplib.POP3("127.0.0.1", pop_port, timeout=10)
    m.user(ALICE[0])
    assert m.pass_(ALICE[1]).startswith(b"+OK")
    assert m.stat()[0] == 4
    m.quit()
    import imaplib
    im = imaplib.IMAP4("127.0.0.1", imap_port, timeout=10)
    assert im.login(*ALICE)[0] == "OK"
    im.logout()
    recs = gh.wait_audit(2)
    check_audit(recs[0], login=ALICE[0], result="ok", source="static",
                backend=backend(stores.a), proto="pop3")
    check_audit(recs[1], login=ALICE[0], result="ok", source="static",
                backend="127.0.0.1:%d" % stores.a.imap_port, proto="imap")
    assert lookup.requests == []


# ---------------------------------------------------------------- route cache

def test_warm_login_skips_lookup_and_rejection_forgets_route(gh, lookup, stores):
    """POP3 routes are cached under their own protocol; a password the
    mailstore rejects forgets the route."""
    assert_can_login(gh)
    assert_can_login(gh)
    recs = gh.wait_audit(2)
    assert [r["source"] for r in recs] == ["lookup", "l1"]
    assert len(lookup.requests) == 1
    with gh.raw3() as c:
        c.cmd("USER %s" % ALICE[0])
        assert c.cmd("PASS wrong-secret") == DOVECOT_BAD_PASSWORD
    assert_can_login(gh)
    recs = gh.wait_audit(4)
    assert recs[2]["source"] == "l1" and recs[2]["result"] == "fail"
    assert recs[3]["source"] == "lookup" and recs[3]["result"] == "ok"
    assert len(lookup.requests) == 2
    gh.assert_no_secret("wrong-secret")


def test_moved_mailbox_is_found_at_once(gh, lookup, stores):
    """A cached route whose backend is gone: gatehouse looks the user up
    again before answering the client."""
    with ScriptedPop3(lambda line: b"+OK\r\n") as fake:
        lookup.users[ALICE[0]] = ("127.0.0.1", fake.port, ALICE[0])
        with gh.raw3() as c:
            c.cmd("USER %s" % ALICE[0])
            assert c.cmd("PASS %s" % ALICE[1]) == b"+OK"
    lookup.users[ALICE[0]] = ("127.0.0.1", {"pop3": stores.a.pop3_port}, ALICE[0])
    assert_can_login(gh)
    recs = gh.wait_audit(2)
    assert recs[1]["result"] == "ok" and recs[1]["source"] == "lookup", recs[1]
    assert recs[1]["backend"] == backend(stores.a)
    assert len(lookup.requests) == 2

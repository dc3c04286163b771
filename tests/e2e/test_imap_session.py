"""After the login: relaying, big literals, IDLE, LOGOUT and pipelining."""

import hashlib
import re
import shutil
import socket
import subprocess
import time

import pytest

from mailstore import make_message
from ghtest import ALICE, BOB, check_audit, direct_imap


def test_fetch_big_message_byte_exact(gh, stores):
    m = gh.imap(timeout=30)
    assert m.login(*ALICE)[0] == "OK"
    assert m.select("INBOX", readonly=True)[0] == "OK"
    t0 = time.monotonic()
    typ, data = m.uid("FETCH", str(stores.big_uid), "(RFC822.SIZE BODY.PEEK[])")
    took = time.monotonic() - t0
    assert typ == "OK"
    assert b"RFC822.SIZE %d" % stores.big_size in data[0][0]
    body = data[0][1]
    assert len(body) == stores.big_size
    assert hashlib.sha256(body).hexdigest() == stores.big_sha256
    assert body == stores.big_bytes
    assert took < 10, "10 MiB took %.1fs through the proxy" % took
    m.logout()
    gh.assert_no_secret(ALICE[1])


def idle_then_done(m, secs):
    """IDLE through an imaplib connection for secs, then DONE: long enough
    for gatehouse's worker to go quiet, trim its pool and heap, and the
    session to hold only what an idle session keeps."""
    m.send(b"idl1 IDLE\r\n")
    assert m.readline().startswith(b"+"), "no IDLE continuation"
    time.sleep(secs)
    m.send(b"DONE\r\n")
    while True:
        line = m.readline()
        assert line, "connection closed during IDLE"
        if line.startswith(b"idl1 "):
            assert line.startswith(b"idl1 OK"), line
            return


def idle_then_big_fetch_twice(m, stores):
    """Log m in as ALICE, then twice: IDLE for 1.5 s, FETCH the 10 MiB
    message and check it byte for byte; log out."""
    assert m.login(*ALICE)[0] == "OK"
    assert m.select("INBOX", readonly=True)[0] == "OK"
    for _ in range(2):
        idle_then_done(m, 1.5)
        typ, data = m.uid("FETCH", str(stores.big_uid), "(BODY.PEEK[])")
        assert typ == "OK"
        body = data[0][1]
        assert len(body) == stores.big_size
        assert hashlib.sha256(body).hexdigest() == stores.big_sha256
    m.logout()


def test_idle_then_big_fetch_byte_exact(gh, stores):
    """A session that sat idle (its login buffers given back, the worker's
    free buffers trimmed) relays a 10 MiB FETCH byte for byte, and a
    second IDLE and FETCH after it."""
    idle_then_big_fetch_twice(gh.imap(timeout=30), stores)
    gh.assert_no_secret(ALICE[1])


def test_idle_sees_new_mail(gh, stores):
    with gh.raw() as c:
        assert c.command("a", "LOGIN %s %s" % BOB)[-1].startswith(b"a OK")
        lines = c.command("b", "SELECT INBOX")
        assert lines[-1].startswith(b"b OK")
        exists = [int(m.group(1)) for m in
                  (re.match(rb"\* (\d+) EXISTS", l) for l in lines) if m]
        assert exists, lines
        count = exists[-1]

        c.send("c IDLE\r\n")
        assert c.readline().startswith(b"+"), "no IDLE continuation"
        t0 = time.monotonic()
        time.sleep(1.0)
        d = direct_imap(stores.b, BOB)
        try:
            typ, _ = d.append("INBOX", None, None,
                              make_message("idle test %f" % time.time(), "new mail"))
            assert typ == "OK"
        finally:
            d.logout()
        want = b"* %d EXISTS" % (count + 1)
        seen = []
        while want not in seen:
            seen.append(c.readline(timeout=5))
        # Stay idle for about 3 s in all, then end the IDLE.
        time.sleep(max(0.0, 3.0 - (time.monotonic() - t0)))
        c.send("DONE\r\n")
        assert c.read_tagged("c")[-1].startswith(b"c OK")
        assert c.command("d", "NOOP")[-1].startswith(b"d OK")
        c.command("e", "LOGOUT")


def test_logout_after_login(gh):
    with gh.raw() as c:
        assert c.command("a", "LOGIN %s %s" % ALICE)[-1].startswith(b"a OK")
        lines = c.command("z", "LOGOUT")
        assert lines[0].startswith(b"* BYE"), lines
        assert lines[-1].startswith(b"z OK"), lines
        assert c.read_until_closed(3) == []


def test_logout_before_login(gh):
    with gh.raw() as c:
        lines = c.command("a", "LOGOUT")
        assert lines == [b"* BYE Logging out", b"a OK LOGOUT completed"]
        assert c.read_until_closed(3) == []
    assert gh.audit_lines() == []


def test_pipelined_after_login(gh, stores):
    with gh.raw() as c:
        c.send("a LOGIN %s %s\r\nb SELECT INBOX\r\nc LOGOUT\r\n" % ALICE)
        a = c.read_tagged("a")
        assert a[-1].startswith(b"a OK"), a
        b = c.read_tagged("b")
        assert b[-1].startswith(b"b OK"), b
        assert any(re.match(rb"\* \d+ EXISTS", l) for l in b), b
        cl = c.read_tagged("c")
        assert cl[0].startswith(b"* BYE") and cl[-1].startswith(b"c OK"), cl
        assert c.read_until_closed(3) == []
    check_audit(gh, login=ALICE[0], user=ALICE[0], result="ok",
                backend="127.0.0.1:%d" % stores.a.imap_port)
    gh.assert_no_secret(ALICE[1])


def test_pipelined_before_and_after_login(gh):
    """Local commands, the login and backend commands in one write, answered in order."""
    with gh.raw() as c:
        c.send("a CAPABILITY\r\nb NOOP\r\nc LOGIN %s %s\r\nd NOOP\r\ne LOGOUT\r\n" % BOB)
        tags = []
        for tag in "abcde":
            lines = c.read_tagged(tag)
            tags.append(lines[-1].split(b" ", 2)[:2])
        assert tags == [[t.encode(), b"OK"] for t in "abcde"], tags
        assert c.read_until_closed(3) == []


def test_pipelined_failed_login(gh):
    """Commands pipelined behind a rejected login are handled by gatehouse."""
    with gh.raw() as c:
        c.send("a LOGIN %s wrong\r\nb NOOP\r\nc LOGIN %s %s\r\nd NOOP\r\n"
               % (ALICE[0], ALICE[0], ALICE[1]))
        assert c.read_tagged("a")[-1].startswith(b"a NO")
        assert c.read_tagged("b")[-1].startswith(b"b OK")
        assert c.read_tagged("c")[-1].startswith(b"c OK")
        assert c.read_tagged("d")[-1].startswith(b"d OK")
        c.command("e", "LOGOUT")
    gh.assert_no_secret(ALICE[1])


def test_client_disconnect_mid_session(gh):
    """Closing the client side abruptly must not disturb gatehouse."""
    for _ in range(3):
        c = gh.raw()
        assert c.command("a", "LOGIN %s %s" % ALICE)[-1].startswith(b"a OK")
        c.send("b SELECT INBOX\r\n")
        c.close()
    m = gh.imap()
    assert m.login(*ALICE)[0] == "OK"
    m.logout()


def test_append_big_message_through_proxy(gh, stores):
    """Client-to-backend relay of a 3 MiB literal, checked byte for byte on the store."""
    from mailstore import make_big_message
    data = make_big_message(3, seed=99, subject="appended through gatehouse %f" % time.time())
    m = gh.imap(timeout=30)
    assert m.login(*BOB)[0] == "OK"
    typ, resp = m.append("INBOX", None, None, data)
    assert typ == "OK", resp
    m.logout()
    d = direct_imap(stores.b, BOB)
    try:
        d.select("INBOX", readonly=True)
        typ, found = d.search(None, "HEADER", "Message-ID", "<big-99@gatehouse.test>")
        num = found[0].split()[-1]
        typ, fetched = d.fetch(num, "(BODY.PEEK[])")
        assert hashlib.sha256(fetched[0][1]).hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        d.logout()


def test_slow_reader(gh, stores):
    """A client that stops reading in the middle of the 10 MiB message still
    gets every byte in order (gatehouse must apply backpressure to the
    backend, not drop, reorder or buffer without bound)."""
    with gh.raw(timeout=30) as c:
        assert c.command("a", "LOGIN %s %s" % ALICE)[-1].startswith(b"a OK")
        assert c.command("b", "EXAMINE INBOX")[-1].startswith(b"b OK")
        c.send("c UID FETCH %d (BODY.PEEK[])\r\n" % stores.big_uid)
        time.sleep(1.0)            # let every buffer on the way fill up
        head = c.readline()
        m = re.search(rb"\{(\d+)\}$", head)
        assert m, head
        size = int(m.group(1))
        first = c.read_literal(1024 * 1024)
        time.sleep(0.5)            # and stall once more
        body = first + c.read_literal(size - len(first), timeout=30)
        assert hashlib.sha256(body).hexdigest() == stores.big_sha256
        assert c.read_tagged("c")[-1].startswith(b"c OK")
        c.command("d", "LOGOUT")


def test_half_close_right_after_login(gh, stores):
    """A client that sends its login and commands and then shuts its sending
    side at once (printf ... | nc) still gets every answer: the end of its
    stream, arriving while the login is with the lookup and the backend, is
    not acted on before the commands in front of it."""
    with gh.raw() as c:
        c.send("a LOGIN %s %s\r\nb SELECT INBOX\r\nc LOGOUT\r\n" % ALICE)
        c.sock.shutdown(socket.SHUT_WR)
        assert c.read_tagged("a")[-1].startswith(b"a OK")
        b = c.read_tagged("b")
        assert b[-1].startswith(b"b OK") and any(re.match(rb"\* \d+ EXISTS", l) for l in b), b
        cl = c.read_tagged("c")
        assert cl[0].startswith(b"* BYE") and cl[-1].startswith(b"c OK"), cl
        assert c.read_until_closed(3) == []
    check_audit(gh, login=ALICE[0], user=ALICE[0], result="ok",
                backend="127.0.0.1:%d" % stores.a.imap_port)


def test_half_close_during_login_without_commands(gh):
    """The same with nothing behind the login: logged in, then the EOF
    reaches the backend and the session ends cleanly."""
    with gh.raw() as c:
        c.send("a LOGIN %s %s\r\n" % BOB)
        c.sock.shutdown(socket.SHUT_WR)
        assert c.read_tagged("a")[-1].startswith(b"a OK")
        rest = c.read_until_closed(5)  # raises if the session is left open
        assert not any(b" BAD " in l or b" NO " in l for l in rest), rest
    check_audit(gh, login=BOB[0], result="ok")


def test_client_sockets_keepalive(gh):
    """Accepted connections carry TCP keepalive (set once on the listening
    socket and inherited): `ss` shows the kernel's keepalive timer on
    gatehouse's side of the connection, first probe within 60 s."""
    if shutil.which("ss") is None:
        pytest.fail("ss (iproute2) is needed: scripts/deps.sh test installs it")
    with gh.raw() as c:
        port = c.sock.getsockname()[1]
        out = subprocess.run(
            ["ss", "-tnoH", "state", "established", "( dport = :%d )" % port],
            capture_output=True, text=True, check=True).stdout
        assert "127.0.0.1:%d" % gh.port in out, out
        m = re.search(r"timer:\(keepalive,(\d+)(?:min)?(\d*)", out)
        assert m, "no keepalive timer on gatehouse's socket: %r" % out
        c.command("z", "LOGOUT")


def _keepalive_timers(port):
    """ss's view of gatehouse's established sockets to `port`: the text of
    each line, with the kernel's keepalive timer if the socket has one."""
    out = subprocess.run(
        ["ss", "-tnoH", "state", "established", "( dport = :%d )" % port],
        capture_output=True, text=True, check=True).stdout
    return [l for l in out.splitlines() if l.strip()]


def test_backend_sockets_keepalive_once_they_last(gatehouse, stores):
    """A mail backend connection gets TCP keepalive from the worker's sweep
    (every half of limits.backend_keepalive), not at connect: a session
    that lasts past one sweep has the kernel's keepalive timer on its
    backend socket, probing after at most limits.backend_keepalive s."""
    if shutil.which("ss") is None:
        pytest.fail("ss (iproute2) is needed: scripts/deps.sh test installs it")
    gh = gatehouse(limits={"backend_keepalive": 4})
    with gh.raw() as c:
        assert c.command("a", "LOGIN %s %s" % ALICE)[-1].startswith(b"a OK")
        deadline = time.monotonic() + 6
        while True:
            lines = _keepalive_timers(stores.a.imap_port)
            assert len(lines) == 1, lines
            m = re.search(r"timer:\(keepalive,(\d+(?:\.\d+)?)(m?s|sec|min)?", lines[0])
            if m or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert m, "no keepalive timer on the backend socket after 6 s: %r" % lines
        secs = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
        assert secs <= 4, lines
        # The session still relays.
        assert c.command("b", "NOOP")[-1].startswith(b"b OK")
        c.command("z", "LOGOUT")

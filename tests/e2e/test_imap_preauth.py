"""Before the login: gatehouse's own greeting and commands, and hostile input.
After every bad-input case a fresh connection must still log in."""

import random
import re
import socket
import time

import pytest

from ghtest import ALICE, assert_can_login

GREETING = (b"* OK [CAPABILITY IMAP4rev1 ID LITERAL+ SASL-IR IDLE NAMESPACE "
            b"AUTH=PLAIN AUTH=LOGIN] Gatehouse IMAP proxy ready")


# ---------------------------------------------------------------- local commands

def test_greeting(gh):
    with gh.raw() as c:
        assert c.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1")
        caps = re.match(rb"\* OK \[CAPABILITY ([^\]]*)\]", c.greeting).group(1).split()
        assert b"AUTH=PLAIN" in caps
        assert c.greeting == GREETING


def test_greeting_is_configurable(gatehouse):
    gh = gatehouse(imap={"greeting": "Hello from the test"})
    with gh.raw() as c:
        assert c.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1")
        assert c.greeting.endswith(b"] Hello from the test")


def test_capability(gh):
    with gh.raw() as c:
        lines = c.command("a", "CAPABILITY")
        assert len(lines) == 2, lines
        assert lines[0].startswith(b"* CAPABILITY ")
        caps = lines[0].split()[2:]
        assert b"IMAP4rev1" in caps and b"AUTH=PLAIN" in caps
        assert lines[1].startswith(b"a OK")


def test_capability_imaplib(gh):
    m = gh.imap()
    assert "IMAP4REV1" in m.capabilities
    assert "AUTH=PLAIN" in m.capabilities
    typ, data = m.capability()
    assert typ == "OK" and b"IMAP4rev1" in data[0]
    m.logout()


def test_noop(gh):
    with gh.raw() as c:
        lines = c.command("a", "NOOP")
        assert len(lines) == 1 and lines[0].startswith(b"a OK"), lines
        assert c.command("x1", "noop")[-1].startswith(b"x1 OK")


def test_id(gh):
    with gh.raw() as c:
        lines = c.command("a", 'ID ("name" "pytest" "version" "1.0")')
        assert len(lines) == 2, lines
        assert lines[0].startswith(b"* ID (")
        assert lines[1].startswith(b"a OK")
        lines = c.command("b", "ID NIL")
        assert lines[0].startswith(b"* ID ") and lines[-1].startswith(b"b OK")
        # ID before LOGIN must not break the login.
        assert c.command("c", "LOGIN %s %s" % ALICE)[-1].startswith(b"c OK")
        c.command("d", "LOGOUT")


def test_unknown_command(gh):
    with gh.raw() as c:
        assert c.command("a", "FOO") == [b"a BAD Invalid command"]
        assert c.command("b", "SELECT INBOX")[-1].startswith(b"b BAD")
        assert c.command("c", "NOOP")[-1].startswith(b"c OK")


def test_syntax_errors(gh):
    with gh.raw() as c:
        assert c.command("a", "LOGIN")[-1].startswith(b"a BAD")
        assert c.command("b", 'LOGIN "unterminated')[-1].startswith(b"b BAD")
        assert c.command("c", "NOOP")[-1].startswith(b"c OK")
    assert_can_login(gh)


def test_preauth_timeout(gatehouse):
    gh = gatehouse(limits={"preauth_timeout": 1.0})
    with gh.raw() as c:
        t0 = time.monotonic()
        lines = c.read_until_closed(5)
        assert 0.8 <= time.monotonic() - t0 < 3.0
        assert all(l.startswith(b"* BYE") for l in lines), lines
    assert_can_login(gh)


# ---------------------------------------------------------------- hostile input

def test_line_too_long(gh):
    with gh.raw() as c:
        t0 = time.monotonic()
        c.send_ignoring_reset(b"a LOGIN " + b"x" * 10000)
        time.sleep(0.1)
        c.send_ignoring_reset(b"y" * 5000 + b"\r\n")
        lines = c.read_until_closed(3)
        assert b"* BYE Line too long" in lines, lines
        assert time.monotonic() - t0 < 2.5
    assert_can_login(gh)


def test_line_too_long_while_still_sending_gets_bye_and_fin(gh):
    """A client still sending when its BYE goes out gets the BYE and a FIN,
    not a reset (which may cost a client the answer it has not read):
    gatehouse reads and drops what it sends until it closes too (a
    lingering close). Without it the sends below fail with a reset."""
    with gh.raw() as c:
        c.sock.settimeout(10)
        c.sock.sendall(b"a LOGIN " + b"x" * 10000)
        for _ in range(32):                 # 2 MiB after the BYE
            c.sock.sendall(b"y" * 65536)
        c.sock.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = c.sock.recv(65536)      # a reset raises here
            if not chunk:
                break
            data += chunk
        assert b"* BYE Line too long\r\n" in data, data
    assert_can_login(gh)


def test_lingering_close_is_bounded(gh):
    """A client that never stops sending is closed all the same, within
    the 5 s gatehouse gives a closing connection."""
    with gh.raw() as c:
        c.sock.settimeout(10)
        c.sock.sendall(b"a LOGIN " + b"x" * 10000)
        t0 = time.monotonic()
        for _ in range(16):                 # lingering: these are read
            c.sock.sendall(b"y" * 65536)
        with pytest.raises(OSError):
            while time.monotonic() - t0 < 30:
                c.sock.sendall(b"y" * 4096)
                time.sleep(0.001)
        assert time.monotonic() - t0 < 8
    assert_can_login(gh)


def test_sync_literal_too_large(gh):
    with gh.raw() as c:
        c.send("a LOGIN {4294967296}\r\n")
        line = c.readline()
        assert not line.startswith(b"+"), line
        assert line == b"a BAD Literal too large"
        assert c.command("b", "NOOP")[-1].startswith(b"b OK")
    assert_can_login(gh)


def test_sync_literal_over_max_literal(gatehouse):
    gh = gatehouse(limits={"max_literal": 4096})
    with gh.raw() as c:
        c.send("a LOGIN {4097}\r\n")
        assert c.readline() == b"a BAD Literal too large"
        c.send("b LOGIN {17}\r\n")
        assert c.readline().startswith(b"+ ")
        c.send("alice@example.com {12}\r\n")
        assert c.readline().startswith(b"+ ")
        c.send("alice-secret\r\n")
        assert c.read_tagged("b")[-1].startswith(b"b OK")


def test_nonsync_literal_too_large(gh):
    with gh.raw() as c:
        c.send_ignoring_reset("a LOGIN {4294967296+}\r\n")
        lines = c.read_until_closed(3)
        assert lines and lines[0] == b"* BYE Literal too large", lines
    assert_can_login(gh)


def test_literal_length_overflow(gh):
    """A length that does not fit in 64 bits is just a literal too large."""
    with gh.raw() as c:
        c.send("a LOGIN {99999999999999999999999}\r\n")
        line = c.readline()
        assert not line.startswith(b"+"), line
        assert line.startswith(b"a BAD"), line
    assert_can_login(gh)


def test_nul_byte(gh):
    with gh.raw() as c:
        c.send(b"a LOGIN alice\x00@example.com alice-secret\r\n")
        assert c.readline() == b"a BAD NUL byte in command"
        assert c.command("b", "NOOP")[-1].startswith(b"b OK")
    assert gh.audit_lines() == []
    assert_can_login(gh)


def test_binary_garbage(gh):
    rnd = random.Random(1234)
    junk = bytes(b for b in range(0x80, 0x100))
    lines = []
    for _ in range(20):
        n = rnd.randint(10, 200)
        lines.append(bytes(rnd.choice(junk) for _ in range(n)))
    with gh.raw() as c:
        c.send_ignoring_reset(b"\r\n".join(lines) + b"\r\n")
        got = c.read_until_closed(3)
        assert got, "nothing came back"
        assert got[-1] == b"* BYE Too many invalid commands", got
        bads = [l for l in got[:-1] if b" BAD " in l]
        assert 1 <= len(bads) <= 5, got
        assert all(l.startswith(b"* BAD") for l in got[:-1]), got
    assert_can_login(gh)


def test_too_many_bad_commands(gatehouse):
    gh = gatehouse(limits={"max_bad_commands": 3})
    with gh.raw() as c:
        c.send_ignoring_reset("".join("t%d FOO\r\n" % i for i in range(10)))
        got = c.read_until_closed(3)
        assert got[-1] == b"* BYE Too many invalid commands", got
        bads = [l for l in got if re.match(rb"t\d+ BAD", l)]
        assert 1 <= len(bads) <= 3, got
    assert_can_login(gh)


@pytest.mark.parametrize("tag", [b"x" * 65, b"a{b", b"*", b"+", b"a%b", b'a"b', b"a(b",
                                 b"\xff", b"a\x80b", b"t\xc3\xa9"],
                         ids=["too-long", "brace", "star", "plus", "percent", "quote",
                              "paren", "xff", "x80", "utf8"])
def test_bad_tags(gh, tag):
    """An invalid tag (RFC 3501: ASTRING-CHARs but "+", 7-bit only) is never
    echoed back: the answer is untagged."""
    with gh.raw() as c:
        c.send(tag + b" NOOP\r\n")
        line = c.readline()
        assert line.startswith(b"* BAD"), line
        assert c.command("z", "NOOP")[-1].startswith(b"z OK")


def test_unusual_valid_tag(gh):
    """']' is allowed in a tag."""
    with gh.raw() as c:
        assert c.command("a]1", "NOOP")[-1].startswith(b"a]1 OK")


def test_slowloris_bytes(gh):
    """A command delivered one byte at a time still works."""
    with gh.raw() as c:
        for b in b"a LOGIN alice@example.com alice-secret\r\n":
            c.send(bytes([b]))
        assert c.read_tagged("a")[-1].startswith(b"a OK")
        c.command("b", "LOGOUT")


def test_client_closes_before_greeting_read(gh):
    for _ in range(5):
        c = gh.raw(read_greeting=False)
        c.close()
    for _ in range(3):
        c = gh.raw()
        c.send("a LOGIN %s %s\r\n" % ALICE)   # close while the login is in flight
        c.close()
    time.sleep(0.3)
    assert_can_login(gh)


def test_pipelined_burst_larger_than_the_line_buffer(gh):
    """3000 short commands (~36 KiB, four times max_line) in one write: every
    one is answered, in order; none is lost to the bounded input buffer."""
    burst = b"".join(b"t%d NOOP\r\n" % i for i in range(3000))
    with gh.raw() as c:
        c.send(burst)
        for i in range(3000):
            assert c.readline() == b"t%d OK NOOP completed" % i
        # ...and a pipelined login behind another burst still goes through.
        c.send(b"".join(b"u%d NOOP\r\n" % i for i in range(1500)) +
               b"a LOGIN %s %s\r\nb SELECT INBOX\r\n" % (ALICE[0].encode(), ALICE[1].encode()))
        for i in range(1500):
            assert c.readline() == b"u%d OK NOOP completed" % i
        assert c.read_tagged("a")[-1].startswith(b"a OK")
        assert c.read_tagged("b")[-1].startswith(b"b OK")

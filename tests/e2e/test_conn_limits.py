"""Caps on concurrent connections: per client address and in total."""
import socket
import time

from ghtest import ALICE
from test_pop3 import pop3_settings


def _greet(port, source="127.0.0.1", timeout=5):
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    f = s.makefile("rb")
    return s, f.readline()


def _settle():
    """The fixture checks the port with a connection of its own: let that
    session end so it is not counted."""
    time.sleep(0.5)


def _closed(s):
    s.settimeout(3)
    return s.recv(100) == b""


def test_per_ip_cap(gatehouse):
    gh = gatehouse(limits={"max_connections_per_ip": 3})
    held = [_greet(gh.port, source="127.0.0.6") for _ in range(3)]
    assert all(g.startswith(b"* OK") for _, g in held)
    s, g = _greet(gh.port, source="127.0.0.6")
    assert g == b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n"
    assert _closed(s)
    # Another address is not affected.
    other, g = _greet(gh.port, source="127.0.0.2")
    assert g.startswith(b"* OK")
    other.close()
    assert "per_ip connection cap reached" in gh.error_log()
    # One closes: the address may connect again, and log in.
    held.pop()[0].close()
    time.sleep(0.2)
    s, g = _greet(gh.port, source="127.0.0.6")
    assert g.startswith(b"* OK")
    s.sendall(b"a LOGIN %s %s\r\n" % (ALICE[0].encode(), ALICE[1].encode()))
    assert s.makefile("rb").readline().startswith(b"a OK")
    s.close()
    for s, _ in held:
        s.close()


def test_total_cap_and_pop3_message(gatehouse):
    gh = gatehouse(**pop3_settings(limits={"max_connections": 2}))
    _settle()
    a, g1 = _greet(gh.port, "127.0.0.3")
    b, g2 = _greet(gh.port, "127.0.0.4")
    assert g1.startswith(b"+OK") and g2.startswith(b"+OK")
    c, g3 = _greet(gh.port, "127.0.0.5")
    assert g3 == b"-ERR [SYS/TEMP] Too many connections, try again later\r\n"
    assert _closed(c)
    assert "total connection cap reached" in gh.error_log()
    a.close()
    time.sleep(0.2)
    d, g4 = _greet(gh.port, "127.0.0.5")
    assert g4.startswith(b"+OK")
    b.close()
    d.close()


def test_no_cap_by_default(gatehouse):
    gh = gatehouse()
    held = [_greet(gh.port) for _ in range(40)]
    assert all(g.startswith(b"* OK") for _, g in held)
    for s, _ in held:
        s.close()

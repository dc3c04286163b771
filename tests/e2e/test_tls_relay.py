"""The copy relay with a TLS client and a plain backend, byte for byte.

A stream reads into a pool buffer (16 KiB) and, after a read that filled
one, into a bulk buffer (64 KiB) until a read comes back short; a bulk
read handed to a TLS stream leaves as four full records in one writev.
These tests hold both ends of the relay (test_splice's HandoverBackend
gives the test the backend's socket after the login) and check that bytes
arrive intact and in order whatever the sizes of the backend's writes,
that a client that stops reading keeps gatehouse's memory bounded, and
that a session that went idle after a bulk transfer relays small
exchanges both ways again.
"""

import socket
import threading
import time

import pytest

from test_splice import HandoverBackend, pattern, readline_raw, recv_exact
from test_tls import certs, client_ctx, tls_group  # noqa: F401 (fixture)
from h2raw import rss_kib, rss_meaningful
from ghtest import free_port

USER = "user@example.com"
MiB = 1 << 20


@pytest.fixture
def backend():
    b = HandoverBackend()
    yield b
    b.close()


def start_gh(gatehouse, certs, be):
    port = free_port()
    return gatehouse(lookup=None, workers=1, tls=tls_group(certs),
                     listen=[{"address": "127.0.0.1:%d" % port, "protocol": "imap", "tls": True}],
                     routes=[{"match": "@example.com", "server": "127.0.0.1:%d" % be.port}])


def tls_login(gh, be):
    raw = socket.create_connection(("127.0.0.1", gh.port), timeout=30)
    c = client_ctx().wrap_socket(raw)
    assert readline_raw(c).startswith(b"* OK")
    c.sendall(b"a LOGIN %s pw\r\n" % USER.encode())
    line = readline_raw(c)
    assert line.startswith(b"a OK"), line
    conn, rest = be.take()
    assert rest == b""
    return c, conn


def recv_hash(sock, n):
    """The sha256 of the next n bytes (60 s: 50 MB through TLS on a loaded machine)."""
    return recv_exact(sock, n, timeout=60.0)


# Write sizes around the pool buffer (16 KiB), the bulk buffer (64 KiB) and
# a TLS record (16 KiB of plaintext), and much larger ones.
SIZES = [1, 100, 16383, 16384, 16385, 5, 65535, 65536, 65537, 300000, 7, 1 << 20, 49152 + 3]


def send_in_sizes(sock, data):
    off, i = 0, 0
    while off < len(data):
        n = SIZES[i % len(SIZES)]
        sock.sendall(data[off:off + n])
        off += n
        i += 1


def test_tls_bulk_both_ways_intact(gatehouse, certs, backend):
    """50 MB backend -> TLS client and 20 MB TLS client -> backend at once,
    written in sizes that switch the reads between pool and bulk buffers:
    both arrive in order, byte for byte."""
    gh = start_gh(gatehouse, certs, backend)
    c, b = tls_login(gh, backend)
    down, down_sum = pattern(50 * 1000 * 1000, 3)
    up, up_sum = pattern(20 * 1000 * 1000, 4)
    errors = []

    def writer(sock, data):
        try:
            send_in_sizes(sock, data)
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(b, down)),
               threading.Thread(target=writer, args=(c, up))]
    # The TLS socket is used by a writer thread and this reader: Python's
    # ssl module allows one of each at a time.
    for t in threads:
        t.start()
    got_up = {}
    t_up = threading.Thread(target=lambda: got_up.setdefault("h", recv_hash(b, len(up))))
    t_up.start()
    assert recv_hash(c, len(down)) == down_sum
    t_up.join(60)
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert got_up.get("h") == up_sum
    # Small exchanges still go through, both ways, after the bulk.
    b.sendall(b"* 1 EXISTS\r\n")
    assert readline_raw(c) == b"* 1 EXISTS\r\n"
    c.sendall(b"x NOOP\r\n")
    assert readline_raw(b) == b"x NOOP\r\n"
    c.close()
    b.close()


def test_tls_slow_reader_bounded(gatehouse, certs, backend):
    """A TLS client that reads nothing while the backend sends 40 MB: the
    relay stops reading the backend, gatehouse's RSS grows by a bounded
    amount, and once the client reads, all of it arrives intact."""
    gh = start_gh(gatehouse, certs, backend)
    c, b = tls_login(gh, backend)
    down, down_sum = pattern(40 * 1000 * 1000, 5)
    sent = {"n": 0}

    def writer():
        try:
            for off in range(0, len(down), 65536):
                b.sendall(down[off:off + 65536])
                sent["n"] = off + 65536
        except OSError:
            pass

    base = rss_kib(gh.proc.pid)
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    time.sleep(2.0)
    grown = rss_kib(gh.proc.pid) - base
    assert sent["n"] < len(down), "the backend was never held back"
    if rss_meaningful():
        assert grown < 8 * 1024, "RSS grew by %d KiB behind a client reading nothing" % grown
    assert recv_hash(c, len(down)) == down_sum
    t.join(30)
    c.close()
    b.close()


def test_tls_idle_after_bulk_resumes(gatehouse, certs, backend):
    """A bulk transfer, then an idle pause (the stream's next read is a bulk
    buffer that finds a few bytes), then line-sized traffic both ways and
    another bulk transfer: all intact."""
    gh = start_gh(gatehouse, certs, backend)
    c, b = tls_login(gh, backend)
    for round_ in range(2):
        data, digest = pattern(3 * MiB + round_, 6 + round_)
        b.sendall(data)
        assert recv_hash(c, len(data)) == digest
        time.sleep(0.5)
        for i in range(20):
            b.sendall(b"* %d EXISTS\r\n" % i)
            assert readline_raw(c) == b"* %d EXISTS\r\n" % i
            c.sendall(b"t%d NOOP\r\n" % i)
            assert readline_raw(b) == b"t%d NOOP\r\n" % i
    c.close()
    b.close()

"""The splice(2) relay (proxy/relay_splice.c): plain client, plain backend.

The backend is a scripted IMAP server on 127.0.0.1 (`HandoverBackend`): it
greets, answers the proxy's ID and LOGIN, then hands the raw socket to the
test. The test then holds both ends of the relay and can send, stall,
half-close and compare bytes exactly. With log_level = debug gatehouse logs
"relay: splice" when a session switches, which tells a spliced session from
a copied one without strace. Sessions start on the copy relay and switch at
their first bulk transfer (a read that fills a whole relay buffer), so an
idle session keeps two descriptors.
"""

import hashlib
import os
import queue
import re
import signal
import socket
import threading
import time

import pytest

from conftest import VALGRIND

USER = "user@example.com"
MiB = 1 << 20


class HandoverBackend:
    """Greets, answers every tagged line with OK and, after the LOGIN,
    puts (socket, bytes read beyond the login line) on self.conns."""

    def __init__(self, after_login=b""):
        self.after_login = after_login
        self.conns = queue.Queue()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
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
            threading.Thread(target=self._login, args=(conn,), daemon=True).start()

    def _login(self, conn):
        conn.settimeout(10)
        buf = b""
        try:
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1 ID] fake ready\r\n")
            while True:
                while b"\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        conn.close()
                        return
                    buf += chunk
                line, buf = buf.split(b"\r\n", 1)
                tag, _, rest = line.partition(b" ")
                if rest.upper().startswith(b"LOGIN "):
                    conn.sendall(tag + b" OK logged in\r\n" + self.after_login)
                    conn.settimeout(None)
                    self.conns.put((conn, buf))
                    return
                conn.sendall(tag + b" OK done\r\n")
        except OSError:
            conn.close()

    def take(self, timeout=10):
        return self.conns.get(timeout=timeout)

    def close(self):
        self._stop.set()
        self.sock.close()
        self._thread.join(2)


@pytest.fixture
def backend():
    b = HandoverBackend()
    yield b
    b.close()


def start_gh(gatehouse, be, **limits):
    return gatehouse(lookup=None, log_level="debug", workers=2, limits=limits,
                     routes=[{"match": "@example.com", "server": "127.0.0.1:%d" % be.port}])


def readline_raw(sock):
    """One line read a byte at a time, so nothing after it is consumed."""
    line = b""
    while not line.endswith(b"\r\n"):
        ch = sock.recv(1)
        assert ch, "EOF after %r" % line
        line += ch
    return line


def login(gh, be, extra=b"", rcvbuf=0):
    """A logged-in client socket, the backend's socket for it and the bytes
    the backend got after the login; extra is sent in the same write as the
    LOGIN (pipelined behind it); rcvbuf: a small receive buffer for the
    client, so that what gatehouse writes to it queues."""
    c = socket.socket()
    if rcvbuf:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    c.settimeout(10)
    c.connect(("127.0.0.1", gh.port))
    assert readline_raw(c).startswith(b"* OK")
    c.sendall(b"a LOGIN %s pw\r\n" % USER.encode() + extra)
    line = readline_raw(c)
    assert line.startswith(b"a OK"), line
    conn, rest = be.take()
    return c, conn, rest


def session_ids_with(gh, text):
    return set(re.findall(r"session=(\w+) .*%s" % re.escape(text), gh.error_log()))


def wait_log(gh, text, count=1, timeout=5.0):
    deadline = time.monotonic() + timeout
    while len(session_ids_with(gh, text)) < count:
        if time.monotonic() > deadline:
            pytest.fail("expected %d session(s) logging %r:\n%s" % (count, text, gh.error_log()[-3000:]))
        time.sleep(0.02)


def recv_exact(sock, n, timeout=30.0):
    sock.settimeout(timeout)
    h = hashlib.sha256()
    got = 0
    while got < n:
        chunk = sock.recv(min(1 << 20, n - got))
        if not chunk:
            raise AssertionError("EOF after %d of %d bytes" % (got, n))
        h.update(chunk)
        got += len(chunk)
    return h.hexdigest()


def recv_eof(sock, timeout=10.0):
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def pattern(n, seed):
    """n pseudo-random bytes (repeatable), and their sha256."""
    block = hashlib.sha256(b"%d" % seed).digest() * 2048       # 64 KiB
    block = bytes((b + i) & 0xFF for i, b in enumerate(block))
    data = (block * (n // len(block) + 1))[:n]
    data = data[7:] + data[:7]      # blocks not aligned with the pipe size
    return data, hashlib.sha256(data).hexdigest()


def exchange(c, b, size):
    """Send size bytes each way at once; check both arrive intact."""
    up, up_sum = pattern(size, 1)
    down, down_sum = pattern(size, 2)
    errors = []

    def send(sock, data):
        try:
            sock.sendall(data)
        except OSError as e:
            errors.append(e)

    ts = [threading.Thread(target=send, args=(c, up)), threading.Thread(target=send, args=(b, down))]
    for t in ts:
        t.start()
    got_down = recv_exact(c, size)
    got_up = recv_exact(b, size)
    for t in ts:
        t.join(30)
    assert not errors
    assert got_up == up_sum, "client -> backend bytes differ"
    assert got_down == down_sum, "backend -> client bytes differ"


def to_splice(gh, c, b, count=1):
    """A bulk transfer each way, after which the session is spliced."""
    exchange(c, b, 256 * 1024)
    wait_log(gh, "relay: splice", count=count)


def fds(gh):
    """(all descriptors, pipe descriptors) of the gatehouse process."""
    pid = gh.proc.pid
    total = pipes = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        total += 1
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("pipe:"):
                pipes += 1
        except OSError:
            pass
    return total, pipes


def fd_kinds(gh):
    kinds = {}
    for fd in os.listdir("/proc/%d/fd" % gh.proc.pid):
        try:
            k = os.readlink("/proc/%d/fd/%s" % (gh.proc.pid, fd)).split(":")[0]
        except OSError:
            continue
        kinds[k] = kinds.get(k, 0) + 1
    return kinds


# ---------------------------------------------------------------- bytes

@pytest.mark.parametrize("splice", [True, False])
def test_bulk_both_ways(gatehouse, backend, splice):
    """16 MiB each way at the same time, byte-exact; splice = false copies
    (no "relay: splice" line) and must give the same bytes."""
    gh = start_gh(gatehouse, backend, splice=splice)
    c, b, rest = login(gh, backend)
    assert rest == b""
    exchange(c, b, 16 * MiB)
    if splice:
        wait_log(gh, "relay: splice")
    else:
        time.sleep(0.2)
        assert not session_ids_with(gh, "relay: splice")
    c.close()
    assert recv_eof(b) == b""
    b.close()


def test_queued_at_start_keeps_order(gatehouse):
    """Bytes pipelined behind the LOGIN, and bytes the backend sends right
    after its answer, are written by the login code before the relay
    starts: they must come first, then the spliced rest, nothing lost or
    reordered. (When such a write is still queued, the relay copies until
    the queues drain and then switches; on loopback the kernel's send
    buffer takes these few KiB at once, so that path is not reached here.)"""
    head_down = b"* 1 EXISTS\r\n" * 6000                   # 70 KiB after the login answer
    be = HandoverBackend(after_login=head_down)
    try:
        gh = start_gh(gatehouse, be)
        up_head = b"b NOOP\r\n" * 512                       # 4 KiB pipelined
        c, b, rest = login(gh, be, extra=up_head, rcvbuf=4096)
        time.sleep(0.5)                                    # gatehouse's queue fills
        more, more_sum = pattern(2 * MiB, 6)
        b.sendall(more[:65536])                            # read by the copy relay
        time.sleep(0.2)
        c.settimeout(10)
        got = b""
        while len(got) < len(head_down) + 65536:
            chunk = c.recv(65536)
            assert chunk
            got += chunk
        assert got[:len(head_down)] == head_down
        assert got[len(head_down):] == more[:65536]
        b.sendall(more[65536:])
        assert recv_exact(c, len(more) - 65536) == hashlib.sha256(more[65536:]).hexdigest()
        # The client's pipelined bytes reach the backend first, in order.
        b.settimeout(10)
        while len(rest) < len(up_head):
            rest += b.recv(65536)
        assert rest == up_head
        exchange(c, b, 4 * MiB)
        wait_log(gh, "relay: splice")
        c.close()
        b.close()
    finally:
        be.close()


@pytest.mark.parametrize("first", ["client", "backend"])
def test_half_close(gatehouse, backend, first):
    """EOF from one side becomes a FIN on the other once every byte is out;
    the other direction keeps working until it ends too."""
    gh = start_gh(gatehouse, backend)
    c, b, _ = login(gh, backend)
    to_splice(gh, c, b)
    x, y = (c, b) if first == "client" else (b, c)
    data, _ = pattern(3 * MiB, 3)
    x.sendall(data)
    x.shutdown(socket.SHUT_WR)
    assert recv_eof(y, 20) == data           # all bytes, then EOF
    back, _ = pattern(2 * MiB, 4)
    y.sendall(back)                          # the other way still flows
    x.settimeout(20)
    got = b""
    while len(got) < len(back):
        chunk = x.recv(1 << 20)
        assert chunk, "EOF before the reverse direction finished"
        got += chunk
    assert got == back
    y.close()
    assert recv_eof(x) == b""
    x.close()
    deadline = time.monotonic() + 5
    while "both sides closed" not in gh.error_log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "closing: both sides closed" in gh.error_log()


def test_reset_closes_session(gatehouse, backend):
    gh = start_gh(gatehouse, backend)
    c, b, _ = login(gh, backend)
    to_splice(gh, c, b)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    b.close()                                # RST
    c.settimeout(5)
    try:
        while c.recv(65536):
            pass
    except ConnectionResetError:
        pass
    c.close()


# ---------------------------------------------------------------- bounds

@pytest.mark.skipif(VALGRIND, reason="timing")
def test_stalled_reader_is_bounded(gatehouse, backend):
    """The client stops reading while the backend pushes 64 MiB: gatehouse's
    RSS stays flat and it holds at most one pipe per direction; then the
    client reads again and gets every byte."""
    gh = start_gh(gatehouse, backend)
    c, b, _ = login(gh, backend)
    to_splice(gh, c, b)
    _, pipes0 = fds(gh)
    rss0 = gh.rss_kb()
    data, digest = pattern(64 * MiB, 5)
    sent = [0]

    def push():
        try:
            b.sendall(data)
            sent[0] = len(data)
        except OSError:
            pass
    t = threading.Thread(target=push)
    t.start()
    time.sleep(1.5)                          # the client reads nothing meanwhile
    assert sent[0] == 0, "64 MiB went through a stalled client?"
    growth = gh.rss_kb() - rss0
    _, pipes = fds(gh)
    assert growth < 4096, "RSS grew by %d KiB while the client stalled" % growth
    assert pipes - pipes0 <= 2, "held %d pipe fds for one blocked direction" % (pipes - pipes0)
    assert recv_exact(c, len(data), 60) == digest
    t.join(10)
    c.close()
    b.close()


def test_idle_sessions_hold_no_pipes(gatehouse, backend):
    """100 spliced sessions that moved some bytes and then went quiet hold
    their sockets (and one dup each) but no pipe: only the per-worker pools
    keep a few spare pipes (at most 16 per worker)."""
    gh = start_gh(gatehouse, backend)
    total0, pipes0 = fds(gh)
    pairs = []
    for _ in range(100):
        c, b, _ = login(gh, backend)
        pairs.append((c, b))
    for c, b in pairs:
        exchange(c, b, 64 * 1024)
    wait_log(gh, "relay: splice", count=100, timeout=10)
    time.sleep(0.3)
    total, pipes = fds(gh)
    assert pipes - pipes0 <= 2 * 16 * 2, "idle sessions hold pipes: %d pipe fds" % (pipes - pipes0)
    # Client socket, backend socket and a dup of each per session.
    assert total - total0 <= 100 * 4 + (pipes - pipes0) + 4, fd_kinds(gh)
    for c, b in pairs:
        c.close()
        b.close()
    deadline = time.monotonic() + 5
    while fds(gh)[0] - total0 > 2 * 16 * 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    total, pipes = fds(gh)
    assert total - total0 <= 2 * 16 * 2, "descriptors left after close: %d" % (total - total0)


def test_small_exchanges_keep_copying(gatehouse, backend):
    """Sessions that only trade short lines (commands, IDLE) never fill a
    relay buffer: they stay on the copy relay with two descriptors each and
    no poll of their own."""
    gh = start_gh(gatehouse, backend)
    total0, _ = fds(gh)
    pairs = []
    for _ in range(50):
        c, b, _ = login(gh, backend)
        pairs.append((c, b))
    for c, b in pairs:
        exchange(c, b, 4096)
    time.sleep(0.3)
    assert not session_ids_with(gh, "relay: splice")
    total, _ = fds(gh)
    assert total - total0 <= 50 * 2 + 4, fd_kinds(gh)
    for c, b in pairs:
        c.close()
        b.close()


@pytest.mark.skipif(VALGRIND, reason="takes over a minute")
def test_idle_timeout_closes_spliced_session(gatehouse, backend):
    """idle_timeout (60 s at least) closes a quiet spliced session, and
    traffic through the splice relay keeps a busy one open."""
    signal.alarm(150)                         # longer than the default test limit
    gh = start_gh(gatehouse, backend, idle_timeout=60.0)
    quiet_c, quiet_b, _ = login(gh, backend)
    busy_c, busy_b, _ = login(gh, backend)
    to_splice(gh, busy_c, busy_b)
    to_splice(gh, quiet_c, quiet_b, count=2)
    start = time.monotonic()
    closed_at = None
    quiet_c.settimeout(0.5)
    while time.monotonic() - start < 75:
        # The busy session relays a little both ways every few seconds.
        exchange(busy_c, busy_b, 4096)
        try:
            if quiet_c.recv(1) == b"":
                closed_at = time.monotonic() - start
                break
        except socket.timeout:
            pass
        time.sleep(2)
    assert closed_at is not None, "quiet spliced session still open after 75 s"
    assert 55 <= closed_at <= 66, closed_at
    assert "idle timeout" in gh.error_log()
    exchange(busy_c, busy_b, 64 * 1024)       # the busy one is still relaying
    for s in (quiet_b, busy_c, busy_b):
        s.close()


def test_no_pipe_falls_back_to_copying(gatehouse, backend):
    """With no descriptor to spare (pipe2 fails with EMFILE) a direction
    copies that burst through a relay buffer instead: the session goes on
    and every byte arrives. Then, with descriptors again, it splices."""
    import resource
    gh = start_gh(gatehouse, backend)
    c, b, _ = login(gh, backend)
    # Exactly one relay buffer from the backend (one write, so one read):
    # a bulk read, which switches the session, and nothing left to splice,
    # so no pipe is made before the limit below.
    down, digest = pattern(16 * 1024, 9)
    b.sendall(down)
    assert recv_exact(c, len(down)) == digest
    wait_log(gh, "relay: splice")
    pid = gh.proc.pid
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, old[1]))   # no new fd at all
    try:
        exchange(c, b, 2 * MiB)
        assert "relay: no pipe (Too many open files), copying this burst" in gh.error_log()
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
    _, pipes0 = fds(gh)
    exchange(c, b, 2 * MiB)
    c.close()
    b.close()
    assert "closing: connection error" not in gh.error_log()

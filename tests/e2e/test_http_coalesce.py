"""How backend responses reach HTTPS clients when gatehouse gathers its
writes (a response's head and the body bytes read with it go out as one
TLS record): a response in one backend write, split at every offset,
bodies larger than one buffer, pipelined batches, and a response followed
at once by the backend's close.  The client must see exactly the bytes the
backend framed, in order, whatever the backend's write pattern."""

import socket
import threading
import time

from httpstore import HttpClient

HOST = "mail.example.com"


class ScriptedBackend:
    """A web backend on 127.0.0.1 that answers each request head it reads
    with answer(n) (n counts requests over all connections): a list of byte
    strings, each sent with its own sendall, `gap` seconds apart.  It closes
    the connection after an answer when close_after is set."""

    def __init__(self, answer, gap=0.0, close_after=False):
        self.answer, self.gap, self.close_after = answer, gap, close_after
        self.count = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stop_ev = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def _accept(self):
        while not self.stop_ev.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        conn.settimeout(10)
        try:
            while not self.stop_ev.is_set():
                i = buf.find(b"\r\n\r\n")
                if i < 0:
                    d = conn.recv(65536)
                    if not d:
                        return
                    buf += d
                    continue
                head, buf = buf[:i], buf[i + 4:]
                with self.lock:
                    n = self.count
                    self.count += 1
                # answer(n) or, when it takes two, answer(n, request line):
                # pipelined requests reach the backend on several
                # connections, so n is the order of arrival, not of sending.
                args = (n, head.split(b"\r\n", 1)[0])[:self.answer.__code__.co_argcount]
                for k, piece in enumerate(self.answer(*args)):
                    if k and self.gap:
                        time.sleep(self.gap)
                    conn.sendall(piece)
                if self.close_after:
                    return
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self):
        self.stop_ev.set()
        self.sock.close()


def response(body, extra=b""):
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n"
            % (len(body), extra)) + body


def start(http_gh, backend):
    return http_gh(http={"backends": [backend.address]})


def client(gh):
    return HttpClient(gh.https_port, tls=True)


def test_head_and_body_in_one_backend_write(http_gh):
    """The usual small answer: head and body arrive in one read and leave
    as one record; several in a row on one keep-alive connection."""
    be = ScriptedBackend(lambda n: [response(b"hello, world %d\n" % n)])
    try:
        gh = start(http_gh, be)
        with client(gh) as c:
            for i in range(5):
                r = c.request(path="/one?%d" % i)
                assert r.status == 200, r
                assert r.body == b"hello, world %d\n" % i
                assert r.header("Content-Length") == str(len(r.body))
    finally:
        be.stop()


def test_response_split_at_every_offset(http_gh):
    """The backend's answer split in two writes at each offset: the head
    may end in the first piece, the second, or with body bytes after it."""
    full = response(b"0123456789abcdef\n", extra=b"X-Extra: yes\r\n")
    be = ScriptedBackend(lambda n: [full[:n % len(full) + 1], full[n % len(full) + 1:]]
                         if n % len(full) + 1 < len(full) else [full], gap=0.01)
    try:
        gh = start(http_gh, be)
        with client(gh) as c:
            for i in range(len(full)):
                r = c.request(path="/split?%d" % i)
                assert r.status == 200, (i, r)
                assert r.body == b"0123456789abcdef\n", i
                assert r.header("X-Extra") == "yes", i
    finally:
        be.stop()


def test_body_larger_than_one_buffer_after_the_head(http_gh):
    """Head plus 100 KB in one backend write: the gathered bytes overflow
    one buffer several times and must still arrive whole and in order."""
    body = bytes((i * 7 + i // 251) & 0xFF for i in range(100 * 1024))
    be = ScriptedBackend(lambda n: [response(body)])
    try:
        gh = start(http_gh, be)
        with client(gh) as c:
            for _ in range(3):
                r = c.request(path="/big")
                assert r.status == 200, r
                assert r.body == body
    finally:
        be.stop()


def test_pipelined_batch_answered_in_order(http_gh):
    """Eight requests in one TLS write; each answer in one backend write;
    the answers come back complete and in request order."""
    be = ScriptedBackend(lambda n, line: [response(b"answer " + line.split(b" ")[1] + b"\n")])
    try:
        gh = start(http_gh, be)
        with client(gh) as c:
            c.send(b"".join(HttpClient.build(path="/p%d" % i) for i in range(8)))
            bodies = [c.read_response().body for _ in range(8)]
            assert bodies == [b"answer /p%d\n" % i for i in range(8)]
            r = c.request(path="/after")
            assert r.body == b"answer /after\n"
    finally:
        be.stop()


def test_answer_then_backend_close_in_one_read(http_gh):
    """A response with Connection: close followed at once by the backend's
    FIN: the client gets the whole response, then its connection closes
    (nothing held back is lost at the close)."""
    be = ScriptedBackend(lambda n: [response(b"last words\n", extra=b"Connection: close\r\n")],
                         close_after=True)
    try:
        gh = start(http_gh, be)
        with client(gh) as c:
            r = c.request(path="/bye", headers=[("Connection", "close")])
            assert r.status == 200, r
            assert r.body == b"last words\n"
            assert c.is_closed(3.0)
        # A keep-alive client is answered in full too; the backend's close
        # only costs the pooled connection.
        with client(gh) as c:
            for i in range(3):
                r = c.request(path="/again%d" % i)
                assert r.body == b"last words\n", i
    finally:
        be.stop()

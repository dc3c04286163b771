"""WebSocket over HTTP/2 (RFC 8441 extended CONNECT, issue 19): the server's
SETTINGS say ENABLE_CONNECT_PROTOCOL (http.h2_websocket), a CONNECT with
:protocol websocket goes to the backend as the HTTP/1.1 Upgrade an
HTTP/1.1 browser would send (same location table and `websocket` flag, a
fresh Sec-WebSocket-Key), the backend's 101 (with the accept of that key)
becomes :status 200, and the stream carries the bytes both ways with flow
control. Raw frames (h2raw.py) against the running proxy; the backends are
HttpBackend's /ws (a real WebSocket echo) and a scripted one below."""
import base64
import ctypes
import ctypes.util
import os
import signal
import socket
import struct
import threading
import time

import pytest

from h2raw import (CONNECT_ERROR, DATA, END_HEADERS, END_STREAM, HEADERS, PROTOCOL_ERROR,
                   RST_STREAM, SETTINGS, WINDOW_UPDATE, RawH2, assert_serves, block, frame,
                   rss_kib, rss_meaningful)
from httpstore import HttpBackend, ws_accept, ws_frame
from conftest import VALGRIND
from test_http2 import group  # noqa: F401 (fixture)

HOST = "mail.example.com"
S_ENABLE_CONNECT_PROTOCOL = 8


class _NV(ctypes.Structure):
    _fields_ = [("name", ctypes.POINTER(ctypes.c_uint8)), ("value", ctypes.POINTER(ctypes.c_uint8)),
                ("namelen", ctypes.c_size_t), ("valuelen", ctypes.c_size_t),
                ("flags", ctypes.c_uint8)]


_ng = ctypes.CDLL(ctypes.util.find_library("nghttp2") or "libnghttp2.so.14")
_ng.nghttp2_hd_inflate_hd2.restype = ctypes.c_ssize_t
_ng.nghttp2_hd_inflate_hd2.argtypes = [ctypes.c_void_p, ctypes.POINTER(_NV),
                                       ctypes.POINTER(ctypes.c_int), ctypes.c_char_p,
                                       ctypes.c_size_t, ctypes.c_int]


class WsH2(RawH2):
    """RawH2 whose header blocks are decoded by libnghttp2's HPACK inflater
    (Huffman strings included: the answers' header names and values are
    asserted here, not only :status)."""

    def __init__(self, *a, **kw):
        self.inf = ctypes.c_void_p()
        assert _ng.nghttp2_hd_inflate_new(ctypes.byref(self.inf)) == 0
        super().__init__(*a, **kw)

    def headers_of(self, f):
        p = f[3]
        if f[1] & 0x8:
            p = p[1:len(p) - p[0]]
        if f[1] & 0x20:
            p = p[5:]
        out, nv, flags = {}, _NV(), ctypes.c_int(0)
        while True:
            n = _ng.nghttp2_hd_inflate_hd2(self.inf, ctypes.byref(nv), ctypes.byref(flags),
                                           p, len(p), 1)
            assert n >= 0, n
            p = p[n:]
            if flags.value & 0x02:
                out[ctypes.string_at(nv.name, nv.namelen).decode("latin-1")] = \
                    ctypes.string_at(nv.value, nv.valuelen).decode("latin-1")
            if flags.value & 0x01:
                _ng.nghttp2_hd_inflate_end_headers(self.inf)
                return out
            if n == 0 and not p:
                return out


class WsBackend:
    """A scripted HTTP/1.1 WebSocket backend. What it does after the request
    head depends on the path's last segment (see _serve); every head it got
    and every EOF it saw is recorded."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.heads = []
        self.eofs = []          # paths whose connection saw the client's FIN
        self.flooded = {}       # path -> bytes the flood got into the socket
        self.stop_ev = threading.Event()
        self.conns = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def _accept(self):
        while not self.stop_ev.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def stop(self):
        self.stop_ev.set()
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass

    def wait(self, pred, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if pred():
                    return True
            time.sleep(0.05)
        return False

    def _serve(self, c):
        # Longer than the idle-timeout test (gatehouse's 60 s must act
        # first, not this backend's own timeout).
        c.settimeout(150)
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
        except OSError:
            return
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split()[1]
        hdrs = {}
        for ln in lines[1:]:
            k, v = ln.split(":", 1)
            hdrs.setdefault(k.strip().lower(), v.strip())
        with self.lock:
            self.heads.append((lines[0], hdrs))
        what = path.rsplit("/", 1)[-1].split("?")[0]
        key = hdrs.get("sec-websocket-key", "")
        extra = ""
        if "sec-websocket-protocol" in hdrs:
            extra += "Sec-WebSocket-Protocol: %s\r\n" % hdrs["sec-websocket-protocol"].split(",")[0]
        if "sec-websocket-extensions" in hdrs:
            extra += "Sec-WebSocket-Extensions: %s\r\n" % hdrs["sec-websocket-extensions"]
        ok = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
              "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n" % (ws_accept(key), extra))
        try:
            if what == "no":
                c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nno socket\n")
                time.sleep(1)
                return
            if what == "badaccept":
                c.sendall(ok.replace(ws_accept(key), ws_accept(key + "x")).encode())
                time.sleep(2)
                return
            if what == "slow":
                time.sleep(0.5)
            c.sendall(ok.encode())
            if what == "flood":
                sent, chunk = 0, b"f" * 65536
                c.settimeout(5)
                try:
                    while not self.stop_ev.is_set():
                        sent += c.send(chunk)
                        with self.lock:
                            self.flooded[path] = sent
                except socket.timeout:
                    pass        # the proxy stopped reading us: stay connected
                self.stop_ev.wait(60)
                return
            if what == "deaf":
                self.stop_ev.wait(60)
                return
            if what == "reset":
                time.sleep(0.3)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()       # RST: a failed connection, not an EOF
                return
            if what == "close":
                c.sendall(b"bye")
                c.close()
                return
            # echo (and "half"): every byte back; on EOF say so and close.
            if rest:
                c.sendall(rest)
            while True:
                d = c.recv(65536)
                if not d:
                    with self.lock:
                        self.eofs.append(path)
                    c.sendall(b"after-eof")
                    return
                c.sendall(d)
        except OSError:
            with self.lock:
                self.eofs.append(path)
        finally:
            try:
                c.close()
            except OSError:
                pass


@pytest.fixture
def wsb():
    b = WsBackend()
    yield b
    b.stop()


@pytest.fixture
def ws_gh(http_gh, group, wsb):  # noqa: F811
    def factory(http=None, **overrides):
        g = group(1)
        locs = [
            {"match": "= /ws", "upstream": "b0", "websocket": True},
            {"match": "^~ /s/", "upstream": "scripted"},
            {"match": "^~ /nows/", "upstream": "scripted", "websocket": False},
            {"match": "/", "upstream": "b0"},
        ]
        gh = http_gh(upstreams=[{"name": "b0", "servers": [g[0].address]},
                                {"name": "scripted", "servers": [wsb.address]}],
                     locations=locs, http=http, listen_extra={"http2": True}, **overrides)
        return gh, g
    return factory


def ws_connect(c, sid, path, protocol="websocket", extra=(), end_stream=False):
    fields = [(":method", "CONNECT"), (":protocol", protocol), (":scheme", "https"),
              (":authority", HOST), (":path", path), ("sec-websocket-version", "13")]
    fields += list(extra)
    c.send_frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid, block(fields))


def data(c, sid, payload, end=False):
    c.send_frame(DATA, END_STREAM if end else 0, sid, payload)


def read_data(c, sid, n, timeout=20):
    """n bytes of DATA on stream sid (windows reopened as they come)."""
    got = b""
    while len(got) < n:
        f = c.until(lambda f: f[2] == sid and f[0] in (DATA, RST_STREAM), timeout)
        assert f[0] == DATA, "stream %d reset: %r" % (sid, f[3])
        got += f[3]
        if f[3]:
            c.window_update(sid, len(f[3]))
            c.window_update(0, len(f[3]))
    return got


def read_to_end(c, sid, timeout=20):
    got = b""
    while True:
        f = c.until(lambda f: f[2] == sid and f[0] in (DATA, RST_STREAM), timeout)
        assert f[0] == DATA, "stream %d reset: %r" % (sid, f[3])
        got += f[3]
        if f[1] & END_STREAM:
            return got


def access_lines(gh, needle, n=1, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            lines = [ln for ln in gh.access_log_path.read_text().splitlines() if needle in ln]
        except FileNotFoundError:
            lines = []
        if len(lines) >= n:
            return lines
        time.sleep(0.05)
    raise AssertionError("no %d access lines with %r:\n%s" % (n, needle, gh.logs_text()))


def masked(opcode, payload):
    return ws_frame(opcode, payload, mask=os.urandom(4))


def parse_frames(b):
    out = []
    while len(b) >= 2:
        n = b[1] & 0x7f
        i = 2
        if n == 126:
            n, i = struct.unpack("!H", b[2:4])[0], 4
        elif n == 127:
            n, i = struct.unpack("!Q", b[2:10])[0], 10
        if len(b) < i + n:
            break
        out.append((b[0] & 0x0f, b[i:i + n]))
        b = b[i + n:]
    return out, b


# ---------------------------------------------------------------- SETTINGS

def test_settings_offer_extended_connect_and_the_setting_turns_it_off(ws_gh):
    gh, _ = ws_gh()
    c = WsH2(gh.https_port)
    try:
        c.until(lambda f: f[0] == SETTINGS and not f[1] & 1)
        assert c.settings.get(S_ENABLE_CONNECT_PROTOCOL) == 1
    finally:
        c.close()
    gh, _ = ws_gh(http={"h2_websocket": False})
    c = WsH2(gh.https_port)
    try:
        c.until(lambda f: f[0] == SETTINGS and not f[1] & 1)
        assert c.settings.get(S_ENABLE_CONNECT_PROTOCOL, 0) == 0
        # Without the setting a :protocol is malformed (RFC 8441 3).
        ws_connect(c, 1, "/ws")
        assert c.rst(1) == PROTOCOL_ERROR
    finally:
        c.close()
    assert_serves(gh)


# ---------------------------------------------------------------- echo

def test_text_and_binary_frames_echo_through_an_h2_stream(ws_gh):
    gh, g = ws_gh()
    c = WsH2(gh.https_port)
    try:
        ws_connect(c, 1, "/ws")
        f = c.until(lambda f: f[0] in (HEADERS, RST_STREAM) and f[2] == 1)
        assert f[0] == HEADERS and f[4][":status"] == "200", f
        assert "sec-websocket-accept" not in f[4] and "upgrade" not in f[4]
        assert not f[1] & END_STREAM
        data(c, 1, masked(1, b"hello over h2"))
        data(c, 1, masked(2, bytes(range(256)) * 40))
        want = ws_frame(1, b"hello over h2") + ws_frame(2, bytes(range(256)) * 40)
        assert read_data(c, 1, len(want)) == want
        # A close frame: the backend answers it and closes; END_STREAM.
        data(c, 1, masked(8, b"\x03\xe8"))
        assert read_to_end(c, 1) == ws_frame(8, b"\x03\xe8")
    finally:
        c.close()
    # Logged like the HTTP/1.1 upgrade, on the h2 session (status 200: what
    # the client got).
    ln = access_lines(gh, 'path="/ws"')[0]
    assert "method=GET" in ln and "status=200" in ln and "upstream=127.0.0.1:" in ln
    # One line per tunnel: none more at its end.
    assert_serves(gh)
    assert len(access_lines(gh, 'path="/ws"')) == 1


def test_backend_gets_an_http11_upgrade_with_a_fresh_key(ws_gh, wsb):
    gh, _ = ws_gh()
    c = WsH2(gh.https_port)
    try:
        ws_connect(c, 1, "/s/echo?x=1", extra=[
            ("sec-websocket-protocol", "chat, superchat"),
            ("sec-websocket-extensions", "permessage-deflate"),
            ("sec-websocket-key", "client-sent-this"), ("origin", "https://" + HOST)])
        f = c.until(lambda f: f[0] in (HEADERS, RST_STREAM) and f[2] == 1)
        assert f[0] == HEADERS and f[4][":status"] == "200", f
        # Subprotocol and extensions come back to the client.
        assert f[4].get("sec-websocket-protocol") == "chat"
        assert f[4].get("sec-websocket-extensions") == "permessage-deflate"
        data(c, 1, b"ping")
        assert read_data(c, 1, 4) == b"ping"
    finally:
        c.close()
    line, h = wsb.heads[0]
    assert line == "GET /s/echo?x=1 HTTP/1.1"
    assert h["upgrade"].lower() == "websocket" and "upgrade" in h["connection"].lower()
    assert h["sec-websocket-version"] == "13"
    assert h["sec-websocket-protocol"] == "chat, superchat"
    key = h["sec-websocket-key"]
    assert key != "client-sent-this" and len(base64.b64decode(key)) == 16
    assert h["host"] == HOST and h["origin"] == "https://" + HOST
    # Two tunnels get two keys.
    c = WsH2(gh.https_port)
    try:
        ws_connect(c, 1, "/s/echo")
        assert c.status(1) == "200"
    finally:
        c.close()
    assert wsb.wait(lambda: len(wsb.heads) == 2)
    assert wsb.heads[1][1]["sec-websocket-key"] != key


def test_two_tunnels_and_requests_in_parallel_on_one_connection(ws_gh):
    gh, g = ws_gh()
    c = WsH2(gh.https_port)
    try:
        ws_connect(c, 1, "/ws")
        ws_connect(c, 3, "/s/echo")
        assert c.status(1) == "200" and c.status(3) == "200"
        c.request(5, "/echo?plain=1")
        data(c, 3, b"to-three")
        data(c, 1, masked(1, b"to-one"))
        c.request(7, "/echo?plain=2")
        assert read_data(c, 3, 8) == b"to-three"
        assert read_data(c, 1, len(ws_frame(1, b"to-one"))) == ws_frame(1, b"to-one")
        s5, b5 = c.response(5)
        s7, b7 = c.response(7)
        assert s5 == "200" and b"plain=1" in b5 and s7 == "200" and b"plain=2" in b7
        # The tunnels are still up after the requests ended.
        data(c, 3, b"again")
        assert read_data(c, 3, 5) == b"again"
    finally:
        c.close()


def test_data_sent_before_the_answer_waits_for_the_tunnel(ws_gh, wsb):
    """DATA that comes before the backend's 101 waits in the engine (the
    client's window) and goes to the backend once the tunnel starts, never
    into the HTTP/1.1 request."""
    gh, _ = ws_gh()
    c = WsH2(gh.https_port)
    try:
        ws_connect(c, 1, "/s/slow")
        data(c, 1, b"early bytes")
        assert c.status(1) == "200"
        assert read_data(c, 1, 11) == b"early bytes"
    finally:
        c.close()


# ---------------------------------------------------------------- refusals

def test_location_without_websocket_is_refused_as_for_http11(ws_gh, wsb):
    gh, _ = ws_gh()
    c = WsH2(gh.https_port)
    try:
        ws_connect(c, 1, "/nows/echo")
        status, body = c.response(1)
        assert status == "403", (status, body)
    finally:
        c.close()
    assert wsb.heads == []


def test_unknown_protocol_and_plain_connect_are_refused(ws_gh, wsb):
    gh, _ = ws_gh()
    c = WsH2(gh.https_port)
    try:
        ws_connect(c, 1, "/s/echo", protocol="foo")
        status, _ = c.response(1)
        assert status == "501"
        # Extended CONNECT without :protocol is malformed (RFC 9113 8.5:
        # no :scheme or :path on a plain CONNECT).
        c.send_frame(HEADERS, END_HEADERS, 3, block([
            (":method", "CONNECT"), (":scheme", "https"), (":authority", HOST),
            (":path", "/s/echo")]))
        assert c.rst(3) == PROTOCOL_ERROR
        # A plain CONNECT stays refused.
        c.send_frame(HEADERS, END_HEADERS, 5, block([
            (":method", "CONNECT"), (":authority", "example.org:443")]))
        status, _ = c.response(5)
        assert status == "501"
        # The connection still works.
        c.request(7, "/echo")
        assert c.response(7)[0] == "200"
    finally:
        c.close()
    assert wsb.heads == []


def test_backend_non_101_goes_to_the_client_as_a_response(ws_gh):
    gh, _ = ws_gh()
    c = WsH2(gh.https_port)
    try:
        ws_connect(c, 1, "/s/no")
        status, body = c.response(1)
        assert (status, body) == ("404", b"no socket\n")
    finally:
        c.close()


def test_wrong_sec_websocket_accept_is_502(ws_gh):
    gh, _ = ws_gh()
    c = WsH2(gh.https_port)
    try:
        ws_connect(c, 1, "/s/badaccept")
        status, _ = c.response(1)
        assert status == "502"
    finally:
        c.close()
    assert "Sec-WebSocket-Accept does not match" in gh.error_log()


# ---------------------------------------------------------------- ends

def test_end_stream_half_closes_the_backend(ws_gh, wsb):
    """Client END_STREAM is a FIN to the backend (shutdown(SHUT_WR)): it
    sees EOF and may still answer; then its close is END_STREAM."""
    gh, _ = ws_gh()
    c = WsH2(gh.https_port)
    try:
        ws_connect(c, 1, "/s/half")
        assert c.status(1) == "200"
        data(c, 1, b"last words", end=True)
        assert read_to_end(c, 1) == b"last wordsafter-eof"
    finally:
        c.close()
    assert wsb.wait(lambda: "/s/half" in wsb.eofs)


def test_rst_stream_closes_the_backend(ws_gh, wsb):
    gh, _ = ws_gh()
    c = WsH2(gh.https_port)
    try:
        ws_connect(c, 1, "/s/echo?rst")
        assert c.status(1) == "200"
        data(c, 1, b"x")
        assert read_data(c, 1, 1) == b"x"
        c.reset(1)
        assert wsb.wait(lambda: "/s/echo?rst" in wsb.eofs)
        c.request(3, "/echo")
        assert c.response(3)[0] == "200"
    finally:
        c.close()


def test_backend_close_is_end_stream(ws_gh):
    gh, _ = ws_gh()
    c = WsH2(gh.https_port)
    try:
        ws_connect(c, 1, "/s/close")
        assert c.status(1) == "200"
        assert read_to_end(c, 1) == b"bye"
        c.request(3, "/echo")
        assert c.response(3)[0] == "200"
    finally:
        c.close()


def test_backend_reset_is_rst_stream_connect_error(ws_gh):
    """RFC 9113 8.5: a tunnel whose backend connection fails is reset with
    CONNECT_ERROR (a clean close is END_STREAM, above)."""
    gh, _ = ws_gh()
    c = WsH2(gh.https_port)
    try:
        ws_connect(c, 1, "/s/reset")
        assert c.status(1) == "200"
        assert c.rst(1) == CONNECT_ERROR
        c.request(3, "/echo")
        assert c.response(3)[0] == "200"
    finally:
        c.close()


@pytest.mark.skipif(VALGRIND, reason="takes over a minute")
def test_idle_tunnel_is_reset_after_idle_timeout_a_busy_one_stays(ws_gh):
    """limits.idle_timeout (60 s at least), as for HTTP/1.1's WebSocket
    relay: a tunnel with nothing either way is reset with CONNECT_ERROR and
    logged; a tunnel with traffic on the same connection stays up."""
    signal.alarm(150)                         # longer than the default test limit
    gh, _ = ws_gh(limits={"idle_timeout": 60.0})
    c = WsH2(gh.https_port)
    try:
        ws_connect(c, 1, "/s/echo")           # quiet
        ws_connect(c, 3, "/s/echo")           # busy
        assert c.status(1) == "200" and c.status(3) == "200"
        start = time.monotonic()
        reset_at = code = None
        while time.monotonic() - start < 75:
            data(c, 3, b"ping")
            assert read_data(c, 3, 4) == b"ping"
            try:
                code = c.rst(1, timeout=3)
            except (AssertionError, TimeoutError, socket.timeout):  # no RST_STREAM yet
                continue
            reset_at = time.monotonic() - start
            break
        assert reset_at is not None, "quiet tunnel still open after 75 s"
        assert code == CONNECT_ERROR
        assert 55 <= reset_at <= 68, reset_at
        data(c, 3, b"still")
        assert read_data(c, 3, 5) == b"still"
        assert "WebSocket over HTTP/2 idle for 60 s, closing" in gh.error_log()
    finally:
        c.close()


# ---------------------------------------------------------------- bounds

def test_client_that_never_reads_a_flooding_backend_stalls_its_stream_only(ws_gh, wsb):
    gh, _ = ws_gh()
    c = WsH2(gh.https_port)
    try:
        ws_connect(c, 1, "/s/flood")
        assert c.status(1) == "200"
        # The connection's window stays open, the stream's is never
        # reopened: nothing past its first 64 KiB is taken, and the
        # backend is held once gatehouse's bounded queue is full.
        c.window_update(0, 1 << 30)
        time.sleep(1)
        before = rss_kib(gh.proc.pid)
        assert wsb.wait(lambda: wsb.flooded.get("/s/flood", 0) > 0)
        time.sleep(2)
        sent = wsb.flooded["/s/flood"]
        time.sleep(2)
        # The backend's writes stopped (its socket buffers and ours full),
        # far below what it would send in 4 s.
        assert wsb.flooded["/s/flood"] < 16 << 20, wsb.flooded
        assert wsb.flooded["/s/flood"] == sent
        if rss_meaningful():
            assert rss_kib(gh.proc.pid) - before < 4 << 10
        # Other streams still work.
        c.request(3, "/echo?other")
        s, b = c.response(3)
        assert s == "200" and b"other" in b
        ws_connect(c, 5, "/s/echo")
        assert c.status(5) == "200"
        data(c, 5, b"still")
        assert read_data(c, 5, 5) == b"still"
    finally:
        c.close()


def test_backend_that_never_reads_stops_the_clients_window(ws_gh):
    """The client's stream window comes back only as the backend takes the
    bytes: a deaf backend gets at most gatehouse's queue, then the client
    is left without window."""
    gh, _ = ws_gh()
    c = WsH2(gh.https_port, settings=b"")
    try:
        ws_connect(c, 1, "/s/deaf")
        assert c.status(1) == "200"
        chunk = b"d" * 16384
        sent = 0
        returned = 0
        # Send whatever window we are given, for a while.
        window = 65535
        deadline = time.time() + 8
        while time.time() < deadline:
            while window >= len(chunk):
                data(c, 1, chunk)
                sent += len(chunk)
                window -= len(chunk)
            try:
                f = c.next_frame(timeout=1)
            except Exception:
                continue
            if f[0] == WINDOW_UPDATE and f[2] == 1:
                n = int.from_bytes(f[3], "big")
                window += n
                returned += n
        # Gatehouse took no more than its bounded queue (relay_high_water)
        # plus kernel buffers; the client's window stopped coming back.
        assert sent < 32 << 20, sent
        last = returned
        time.sleep(1)
        try:
            while True:
                f = c.next_frame(timeout=0.5)
                if f[0] == WINDOW_UPDATE and f[2] == 1:
                    returned += int.from_bytes(f[3], "big")
        except Exception:
            pass
        assert returned == last
        assert window < len(chunk)
        # Another stream still works.
        c.request(3, "/echo?other")
        assert c.response(3)[0] == "200"
    finally:
        c.close()


def test_reload_goaway_lets_the_tunnel_run_on(ws_gh):
    """A reload drains the connections of the older configuration with
    GOAWAY; a tunnel in flight goes on (as an HTTP/1.1 WebSocket relay
    does, which no reload touches) until one side ends it."""
    from h2raw import GOAWAY
    gh, _ = ws_gh()
    c = WsH2(gh.https_port)
    try:
        ws_connect(c, 1, "/s/echo?reload")
        assert c.status(1) == "200"
        data(c, 1, b"before")
        assert read_data(c, 1, 6) == b"before"
        gh.signal(signal.SIGHUP)
        f = c.until(lambda f: f[0] == GOAWAY, 10)
        assert int.from_bytes(f[3][:4], "big") == 1        # the tunnel's stream finishes
        data(c, 1, b"after")
        assert read_data(c, 1, 5) == b"after"
        data(c, 1, b"", end=True)
        assert read_to_end(c, 1) == b"after-eof"
        assert c.closed(10)     # the drained connection ends with its last stream
    finally:
        c.close()
    assert_serves(gh)


def test_shutdown_goaway_lets_the_tunnel_finish(ws_gh):
    """SIGTERM: GOAWAY, the tunnel goes on until it ends, then the
    connection and the process (well within shutdown_timeout)."""
    from h2raw import GOAWAY
    gh, _ = ws_gh()
    c = WsH2(gh.https_port)
    try:
        ws_connect(c, 1, "/s/echo?term")
        assert c.status(1) == "200"
        gh.signal(signal.SIGTERM)
        c.until(lambda f: f[0] == GOAWAY, 10)
        data(c, 1, b"still here")
        assert read_data(c, 1, 10) == b"still here"
        data(c, 1, b"", end=True)
        assert read_to_end(c, 1) == b"after-eof"
        assert c.closed(10)
    finally:
        c.close()
    gh.proc.wait(timeout=15)
    assert gh.proc.returncode == 0

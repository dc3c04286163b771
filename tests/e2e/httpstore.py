#!/usr/bin/env python3
"""Test HTTP backends for the e2e suite, and a small HTTP/1.1 client.

`HttpBackend(name, host="127.0.0.1")` is an HTTP/1.1 server in threads (one
per connection) with keep-alive.  Every response carries `X-Backend: <name>`.
Paths:

  /upload            reads the body (Content-Length or chunked) in pieces and
                     answers JSON {"backend", "length", "sha256"}; sends
                     `100 Continue` first when asked (Expect); ?delay=S waits S
                     seconds before reading
  /download?size=N   N bytes of payload(N), with Content-Length (type=T: its
                     Content-Type, default application/octet-stream)
  /text?size=N       N bytes of text_payload(N) (compressible), type=T
                     (default text/html), chunked=1 (else Content-Length),
                     any ?hdr= (ETag, Content-Encoding, Cache-Control...)
  /chunked?size=N    the same bytes, Transfer-Encoding: chunked (varying sizes);
                     &trailer=1 adds trailer fields (HTTP/1.0 requests get /eof)
  /slow?secs=S       sleeps S seconds, then answers like /echo
  /status?code=N     answers status N (like /echo otherwise)
  /early?code=N      answers N at once without reading the body, then closes
  /close             answers like /echo with `Connection: close` and closes
  /eof?size=N        N bytes with neither Content-Length nor chunking, then closes
  ?bighead=N         (on /echo etc.) adds a response header of N bytes
  ?hop=1             adds hop-by-hop headers to the answer (Keep-Alive, one
                     named by Connection)
  ?hdr=Name:Value    (on /echo etc., repeatable) adds that response header
  /status?code=204   (and 304) answers with no body
  /ws                a WebSocket (RFC 6455) handshake, then echoes every data
                     frame, answers pings, and closes on a close frame
  anything else      (/echo..., /home/..., /Microsoft-Server-ActiveSync ...)
                     answers JSON {"backend", "method", "path", "version",
                     "headers": [[name, value], ...] exactly as received,
                     "body_length", "body_sha256"}

With `.ssl_context` set (any time) it speaks TLS on new connections.
`.connections` counts accepted connections (to prove the proxy pools its
backend connections), `.open_connections` those still open, `.requests` lists (method, path, headers) per request.
`stop()` closes the listener and every connection and joins the threads;
`start()` again listens on the same port.

`HttpClient(port, tls=True)` is a raw keep-alive client: `request()` sends
one request and `read_response()` reads one response (Content-Length,
chunked or read-to-close bodies), so tests can pipeline and check bytes.
"""

import base64
import hashlib
import json
import socket
import ssl
import struct
import threading
import time
import urllib.parse

from mailstore import _free_port

MAX_HEAD = 65536
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ---------------------------------------------------------------- payloads

_BLOCK = b"".join(hashlib.sha256(b"gatehouse-%d" % i).digest() for i in range(2048))  # 64 KiB


def payload_iter(n, piece=65536):
    """N deterministic bytes (a repeated 64 KiB block), in pieces."""
    left = n
    while left > 0:
        k = min(left, piece, len(_BLOCK))
        yield _BLOCK[:k]
        left -= k


def payload(n):
    return b"".join(payload_iter(n))


def payload_sha256(n):
    h = hashlib.sha256()
    for p in payload_iter(n):
        h.update(p)
    return h.hexdigest()


def text_payload(n):
    """N bytes of deterministic, compressible text."""
    out, i = [], 0
    size = 0
    while size < n:
        ln = b"<p>line %d of a page that compresses well, %d</p>\n" % (i, i * 7919 % 1000)
        out.append(ln)
        size += len(ln)
        i += 1
    return b"".join(out)[:n]


def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + WS_GUID).digest()).decode()


# ---------------------------------------------------------------- stream reader

class Closed(Exception):
    pass


class _Reader:
    """Buffered reads from a socket, with a bound on head size."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Closed()
        self.buf += chunk

    def head(self, limit=MAX_HEAD):
        """Bytes up to and including the blank line (CRLF CRLF)."""
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                h, self.buf = self.buf[:i + 4], self.buf[i + 4:]
                return h
            if len(self.buf) > limit:
                raise ValueError("head too large")
            self._fill()

    def line(self, limit=4096):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                ln, self.buf = self.buf[:i], self.buf[i + 2:]
                return ln
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self._fill()

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def pieces(self, n):
        """Yield exactly n bytes in pieces, never holding more than one read."""
        left = n
        while left > 0:
            if not self.buf:
                self._fill()
            d, self.buf = self.buf[:left], self.buf[left:]
            left -= len(d)
            yield d

    def chunked_pieces(self):
        """Yield the data of a chunked body; consume the trailers."""
        while True:
            size_line = self.line()
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while self.line() != b"":
                    pass
                return
            yield from self.pieces(size)
            if self.exact(2) != b"\r\n":
                raise ValueError("bad chunk end")

    def until_close(self):
        while True:
            if self.buf:
                d, self.buf = self.buf, b""
                yield d
            try:
                self._fill()
            except (Closed, OSError):
                return


def parse_head(head):
    """(start line parts, [(name, value), ...]) of a request or response head."""
    lines = head[:-4].split(b"\r\n")
    first = lines[0].decode("latin-1")
    headers = []
    for ln in lines[1:]:
        name, sep, value = ln.decode("latin-1").partition(":")
        if not sep:
            raise ValueError("bad header line %r" % ln)
        headers.append((name, value.strip(" \t")))
    return first, headers


def header(headers, name, default=None):
    """The first value of header `name` (case-insensitive)."""
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return default


def header_all(headers, name):
    return [v for k, v in headers if k.lower() == name.lower()]


# ---------------------------------------------------------------- the backend

class HttpBackend:
    def __init__(self, name, host="127.0.0.1", port=None):
        self.name = name
        self.host = host
        self.port = port or _free_port()
        self.connections = 0
        self.requests = []
        self.ws_sessions = 0
        self.ssl_context = None   # an ssl.SSLContext: speak TLS (upstream.tls = true)
        self.tls_handshakes = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = None
        self._threads = []
        self._conns = set()

    @property
    def open_connections(self):
        """Connections accepted and not yet closed (by either side)."""
        with self._lock:
            return len(self._conns)

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    # -- lifecycle
    def start(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(128)
        s.settimeout(0.1)
        self._sock = s
        self._stop.clear()
        t = threading.Thread(target=self._accept_loop, name="web-" + self.name, daemon=True)
        t.start()
        self._threads = [t]
        return self

    def stop(self):
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in list(self._threads):
            t.join(5)
        self._threads = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            # Head and body go in separate writes: without this, Nagle and
            # the peer's delayed ACK add 40 ms to every answer.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                self._conns.add(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    # -- one connection
    def _serve(self, conn):
        ctx = self.ssl_context
        if ctx is not None:
            try:
                conn.settimeout(5)
                tls = ctx.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                with self._lock:
                    self._conns.discard(conn)
                conn.close()
                return
            with self._lock:
                self._conns.discard(conn)
                self._conns.add(tls)
                self.tls_handshakes += 1
            conn = tls
        conn.settimeout(0.2)
        rd = _Reader(conn)
        try:
            while not self._stop.is_set():
                try:
                    head = self._head(rd)
                except (Closed, OSError, ValueError):
                    return
                if head is None:
                    return
                if not self._handle(conn, rd, head):
                    return
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _head(self, rd):
        while True:
            try:
                return rd.head()
            except socket.timeout:
                if self._stop.is_set():
                    return None

    def _body(self, rd, headers):
        """Stream the request body: (length, sha256 hex)."""
        h = hashlib.sha256()
        n = 0
        te = (header(headers, "Transfer-Encoding") or "").lower()
        if "chunked" in te:
            it = rd.chunked_pieces()
        else:
            it = rd.pieces(int(header(headers, "Content-Length") or 0))
        for piece in it:             # the caller set a 30 s timeout
            h.update(piece)
            n += len(piece)
        return n, h.hexdigest()

    def _send_head(self, conn, status, headers, version="HTTP/1.1"):
        reason = {101: "Switching Protocols", 200: "OK", 204: "No Content",
                  404: "Not Found", 500: "Internal Server Error"}.get(status, "Status")
        lines = ["%s %d %s" % (version, status, reason), "X-Backend: %s" % self.name]
        lines += ["%s: %s" % kv for kv in headers]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def _handle(self, conn, rd, head):
        first, headers = parse_head(head)
        method, target, version = (first.split(" ") + ["", "", ""])[:3]
        with self._lock:
            self.requests.append((method, target, headers))
        url = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(url.query))
        conn_tokens = [t.strip().lower() for t in
                       ",".join(header_all(headers, "Connection")).split(",")]
        keep = ("close" not in conn_tokens and
                (version == "HTTP/1.1" or "keep-alive" in conn_tokens))
        conn.settimeout(30)
        try:
            if url.path == "/ws" and "websocket" in (header(headers, "Upgrade") or "").lower():
                self._websocket(conn, rd, headers)
                return False
            if url.path == "/early":
                # Answer without reading the body, then close gracefully
                # (stop sending, drain what comes for up to 2 s).
                body = b"too large"
                self._send_head(conn, int(query.get("code", "413")), [
                    ("Content-Length", str(len(body))), ("Connection", "close")])
                conn.sendall(body)
                conn.shutdown(socket.SHUT_WR)
                conn.settimeout(0.2)
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline:
                    try:
                        if not conn.recv(65536):
                            break
                    except socket.timeout:
                        continue
                return False
            if url.path == "/upload":
                if "100-continue" in (header(headers, "Expect") or "").lower():
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                # delay=S: read nothing for S seconds (the client must be held back).
                deadline = time.monotonic() + float(query.get("delay", "0"))
                while time.monotonic() < deadline and not self._stop.is_set():
                    time.sleep(0.05)
            length, digest = self._body(rd, headers)
            if url.path == "/close":
                keep = False
            ka = [("Connection", "keep-alive" if keep else "close")]
            if url.path == "/upload":
                body = json.dumps({"backend": self.name, "length": length,
                                   "sha256": digest}).encode()
                self._send_head(conn, 200, [("Content-Type", "application/json"),
                                            ("Content-Length", str(len(body)))] + ka)
                conn.sendall(body)
            elif url.path == "/download":
                n = int(query.get("size", "0"))
                ctype = query.get("type", "application/octet-stream")
                self._send_head(conn, 200, [("Content-Type", ctype),
                                            ("Content-Length", str(n))] + ka)
                if method != "HEAD":
                    for p in payload_iter(n):
                        conn.sendall(p)
            elif url.path == "/text":
                data = text_payload(int(query.get("size", "0")))
                extra = [tuple(p.strip() for p in hv.split(":", 1))
                         for hv in urllib.parse.parse_qs(url.query).get("hdr", [])]
                ctype = [("Content-Type", query.get("type", "text/html"))]
                if "chunked" in query:
                    self._send_head(conn, 200, ctype + [("Transfer-Encoding", "chunked")] +
                                    extra + ka)
                    if method != "HEAD":
                        for k in range(0, len(data), 1000):
                            part = data[k:k + 1000]
                            conn.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
                        conn.sendall(b"0\r\n\r\n")
                else:
                    self._send_head(conn, 200, ctype + [("Content-Length", str(len(data)))] +
                                    extra + ka)
                    if method != "HEAD":
                        conn.sendall(data)
            elif url.path in ("/eof", "/chunked") and (url.path == "/eof" or
                                                       version != "HTTP/1.1"):
                # No Content-Length, no chunking: the body ends when we close.
                n = int(query.get("size", "0"))
                self._send_head(conn, 200, [("Content-Type", "application/octet-stream"),
                                            ("Connection", "close")])
                for p in payload_iter(n):
                    conn.sendall(p)
                return False
            elif url.path == "/chunked":
                n = int(query.get("size", "0"))
                self._send_head(conn, 200, [("Content-Type", "application/octet-stream"),
                                            ("Transfer-Encoding", "chunked")] + ka)
                data_iter = payload_iter(n, piece=65536)
                k = 0
                for p in data_iter:
                    # Varying chunk sizes: split each piece in two uneven parts.
                    cut = (k * 7919) % (len(p) + 1)
                    k += 1
                    for part in (p[:cut], p[cut:]):
                        if part:
                            conn.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
                if "trailer" in query:        # trailer fields after the last chunk
                    conn.sendall(b"0\r\nX-Sum: %s\r\nX-More: 1\r\n\r\n"
                                 % payload_sha256(n).encode())
                else:
                    conn.sendall(b"0\r\n\r\n")
            else:
                if url.path == "/slow":
                    deadline = time.monotonic() + float(query.get("secs", "1"))
                    while time.monotonic() < deadline and not self._stop.is_set():
                        time.sleep(0.05)
                status = int(query.get("code", "200")) if url.path == "/status" else 200
                body = json.dumps({"backend": self.name, "method": method, "path": target,
                                   "version": version, "headers": headers,
                                   "body_length": length, "body_sha256": digest}).encode()
                extra = []
                if "bighead" in query:        # one large response header
                    extra.append(("X-Big", "h" * int(query["bighead"])))
                for hv in urllib.parse.parse_qs(url.query).get("hdr", []):
                    extra.append(tuple(p.strip() for p in hv.split(":", 1)))
                if "hop" in query:            # hop-by-hop headers in the answer
                    extra += [("Keep-Alive", "timeout=99"), ("X-Backend-Hop", "1"),
                              ("Proxy-Authenticate", "Basic realm=x")]
                    ka = [("Connection", "%s, X-Backend-Hop" % ka[0][1])]
                if status in (204, 304):      # no body, and no length for 204
                    self._send_head(conn, status, extra + ka)
                else:
                    self._send_head(conn, status, [("Content-Type", "application/json"),
                                                   ("Content-Length", str(len(body)))]
                                    + extra + ka)
                    if method != "HEAD":
                        conn.sendall(body)
        except (OSError, Closed, ValueError):
            return False
        finally:
            try:
                conn.settimeout(0.2)
            except OSError:
                pass
        return keep

    def _websocket(self, conn, rd, headers):
        key = header(headers, "Sec-WebSocket-Key") or ""
        self._send_head(conn, 101, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                    ("Sec-WebSocket-Accept", ws_accept(key))])
        with self._lock:
            self.ws_sessions += 1
        conn.settimeout(60)     # a timeout mid-frame would desynchronise: stop() shuts it down
        while not self._stop.is_set():
            try:
                opcode, data = ws_read_frame(rd, expect_masked=True)
            except socket.timeout:
                continue
            except (Closed, OSError, ValueError):
                return
            if opcode == 8:
                conn.sendall(ws_frame(8, data[:2]))
                return
            if opcode == 9:
                conn.sendall(ws_frame(10, data))
            elif opcode in (1, 2):
                conn.sendall(ws_frame(opcode, data))


# ---------------------------------------------------------------- WebSocket frames

def ws_frame(opcode, data, mask=None):
    """One final frame; masked with the 4-byte `mask` if given (client side)."""
    b0 = 0x80 | opcode
    n = len(data)
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return hdr + mask + data
    return hdr + data


def ws_read_frame(rd, expect_masked):
    """(opcode, payload) of one frame (no fragmentation support needed)."""
    b0, b1 = rd.exact(2)
    opcode = b0 & 0x0F
    masked = bool(b1 & 0x80)
    if masked != expect_masked:
        raise ValueError("mask bit %s" % masked)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", rd.exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", rd.exact(8))[0]
    if n > 16 << 20:
        raise ValueError("frame too large")
    mask = rd.exact(4) if masked else None
    data = rd.exact(n)
    if mask:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return opcode, data


# ---------------------------------------------------------------- a raw client

class Response:
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version, self.status, self.reason = version, status, reason
        self.headers, self.body, self.raw_head = headers, body, raw_head

    def header(self, name, default=None):
        return header(self.headers, name, default)

    def json(self):
        return json.loads(self.body)

    @property
    def backend(self):
        return self.header("X-Backend")

    def __repr__(self):
        return "<Response %s %s backend=%s %d bytes>" % (self.status, self.reason,
                                                         self.backend, len(self.body))


class HttpClient:
    """One keep-alive connection to gatehouse (TLS without verification when
    tls=True, SNI = server_name)."""

    def __init__(self, port, tls=True, server_name="mail.example.com", timeout=10.0,
                 host="127.0.0.1", source=None):
        raw = socket.create_connection((host, port), timeout=timeout,
                                       source_address=(source, 0) if source else None)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.sock = ctx.wrap_socket(raw, server_hostname=server_name)
        else:
            self.sock = raw
        self.sock.settimeout(timeout)
        self.rd = _Reader(self.sock)

    def send(self, data):
        self.sock.sendall(data)

    @staticmethod
    def build(method="GET", path="/echo", host="mail.example.com", headers=(), body=None,
              version="HTTP/1.1"):
        lines = ["%s %s %s" % (method, path, version)]
        if host is not None:
            lines.append("Host: %s" % host)
        lines += ["%s: %s" % kv for kv in headers]
        if body is not None and not any(k.lower() in ("content-length", "transfer-encoding")
                                         for k, _ in headers):
            lines.append("Content-Length: %d" % len(body))
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")

    def request(self, method="GET", path="/echo", host="mail.example.com", headers=(),
                body=None, version="HTTP/1.1"):
        self.send(self.build(method, path, host, headers, body, version))
        return self.read_response(head_only=(method == "HEAD"))

    def read_response(self, head_only=False, limit=64 << 20):
        raw = self.rd.head()
        first, headers = parse_head(raw)
        parts = first.split(" ", 2)
        version, status = parts[0], int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        te = (header(headers, "Transfer-Encoding") or "").lower()
        cl = header(headers, "Content-Length")
        if head_only or status in (101, 204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in te:
            body = b"".join(self.rd.chunked_pieces())
        elif cl is not None:
            body = self.rd.exact(int(cl))
        else:
            body = b"".join(self.rd.until_close())
        if len(body) > limit:
            raise ValueError("body too large")
        return Response(version, status, reason, headers, body, raw)

    def is_closed(self, timeout=2.0):
        """True if the peer closes (EOF or reset) within `timeout` seconds."""
        if self.rd.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except socket.timeout:
            return False
        except (OSError, ssl.SSLError):
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="test HTTP backend")
    ap.add_argument("--name", default="web-1")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    a = ap.parse_args()
    b = HttpBackend(a.name, a.host, a.port).start()
    print("%s listening on %s" % (b.name, b.address), flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        b.stop()

"""A raw HTTP/2 client for the e2e tests (issue 19): TLS with ALPN h2, frames
written and read as bytes, a small HPACK encoder (literal fields without
indexing, no Huffman: every decoder takes them) and a small HPACK decoder
for gatehouse's answers (static and dynamic table; Huffman strings are
not decoded and come back as None: the tests read :status, which
libnghttp2 sends indexed or, for a 3-digit code, as 3 raw bytes)."""
import socket
import ssl
import time

HOST = "mail.example.com"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags (RFC 9113 6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

# Error codes (RFC 9113 7).
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, \
    STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, \
    CONNECT_ERROR, ENHANCE_YOUR_CALM = range(12)

# SETTINGS identifiers.
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS, S_INITIAL_WINDOW_SIZE, \
    S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = range(1, 7)

STATIC = [None, (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"),
          (":path", "/index.html"), (":scheme", "http"), (":scheme", "https"),
          (":status", "200"), (":status", "204"), (":status", "206"), (":status", "304"),
          (":status", "400"), (":status", "404"), (":status", "500")]
STATIC += [(n, "") for n in (
    "accept-charset accept-encoding accept-language accept-ranges accept "
    "access-control-allow-origin age allow authorization cache-control "
    "content-disposition content-encoding content-language content-length "
    "content-location content-range content-type cookie date etag expect expires "
    "from host if-match if-modified-since if-none-match if-range "
    "if-unmodified-since last-modified link location max-forwards "
    "proxy-authenticate proxy-authorization range referer refresh retry-after "
    "server set-cookie strict-transport-security transfer-encoding user-agent "
    "vary via www-authenticate").split()]
STATIC[16] = ("accept-encoding", "gzip, deflate")
assert len(STATIC) == 62


def frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + \
        sid.to_bytes(4, "big") + payload


def hpack_int(n, prefix=7, first=0):
    top = (1 << prefix) - 1
    if n < top:
        return bytes([first | n])
    out, n = [first | top], n - top
    while n >= 128:
        out.append((n & 127) | 128)
        n >>= 7
    return bytes(out + [n])


def block(fields):
    """Literal header fields without indexing, new names, no Huffman."""
    out = b""
    for k, v in fields:
        k = k.encode() if isinstance(k, str) else k
        v = v.encode() if isinstance(v, str) else v
        out += b"\x00" + hpack_int(len(k)) + k + hpack_int(len(v)) + v
    return out


def req_fields(path, method="GET", extra=()):
    return [(":method", method), (":scheme", "https"), (":authority", HOST),
            (":path", path)] + list(extra)


class Decoder:
    def __init__(self):
        self.dyn = []

    def _int(self, b, i, prefix):
        n = b[i] & ((1 << prefix) - 1)
        i += 1
        if n < (1 << prefix) - 1:
            return n, i
        m = 0
        while True:
            n += (b[i] & 127) << m
            m += 7
            i += 1
            if not b[i - 1] & 128:
                return n, i

    def _str(self, b, i):
        huff = b[i] & 0x80
        n, i = self._int(b, i, 7)
        s = b[i:i + n]
        return (None if huff else s.decode("latin-1")), i + n

    def _get(self, idx):
        return STATIC[idx] if idx < len(STATIC) else self.dyn[idx - len(STATIC)]

    def decode(self, b):
        out, i = [], 0
        while i < len(b):
            c = b[i]
            if c & 0x80:
                idx, i = self._int(b, i, 7)
                out.append(self._get(idx))
                continue
            if c & 0xe0 == 0x20:
                _, i = self._int(b, i, 5)     # table size update
                continue
            add = c & 0xc0 == 0x40
            idx, i = self._int(b, i, 6 if add else 4)
            if idx:
                name = self._get(idx)[0]
            else:
                name, i = self._str(b, i)
            value, i = self._str(b, i)
            out.append((name, value))
            if add:
                self.dyn.insert(0, (name, value))
        return out


class RawH2:
    """One HTTP/2 connection. next_frame() acknowledges the server's
    SETTINGS (unless auto_ack is False) and remembers them in .settings;
    .frames keeps every frame read."""

    def __init__(self, port, preface=True, auto_ack=True, settings=b""):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname=HOST)
        assert self.sock.selected_alpn_protocol() == "h2"
        self.buf = b""
        self.write_failed = False
        self.auto_ack = auto_ack
        self.settings = None
        self.frames = []
        self.pending = []       # read, decoded, not yet matched by until()
        self.dec = Decoder()
        if preface:
            self.send(PREFACE + frame(SETTINGS, 0, 0, settings))

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            # After a failed write OpenSSL may hold part of a record; a
            # later write (a SETTINGS ACK) would then end the TLS state
            # and the server's last frames, still unread, with it.
            self.write_failed = True
            raise

    def send_all_or_closed(self, data):
        """Send data in 16 KiB writes; stop quietly when the server has
        ended the connection meanwhile (its GOAWAY is then read)."""
        try:
            for i in range(0, len(data), 16384):
                self.send(data[i:i + 16384])
        except (OSError, ssl.SSLError):
            return False
        return True

    def send_frame(self, ftype, flags, sid, payload=b""):
        self.send(frame(ftype, flags, sid, payload))

    def request(self, sid, path, method="GET", extra=(), end_stream=True):
        self.send_frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid,
                        block(req_fields(path, method, extra)))

    def window_update(self, sid, n):
        self.send_frame(WINDOW_UPDATE, 0, sid, n.to_bytes(4, "big"))

    def reset(self, sid, code=CANCEL):
        self.send_frame(RST_STREAM, 0, sid, code.to_bytes(4, "big"))

    def next_frame(self, timeout=20):
        self.sock.settimeout(timeout)
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            d = self.sock.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        n = int.from_bytes(self.buf[:3], "big")
        f = (self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7fffffff,
             self.buf[9:9 + n])
        self.buf = self.buf[9 + n:]
        self.frames.append(f)
        if f[0] == SETTINGS and not f[1] & ACK:
            self.settings = {int.from_bytes(f[3][i:i + 2], "big"):
                             int.from_bytes(f[3][i + 2:i + 6], "big")
                             for i in range(0, len(f[3]), 6)}
            if self.auto_ack and not self.write_failed:
                try:
                    self.send_frame(SETTINGS, ACK, 0)
                except OSError:
                    pass        # the server may have closed already
        return f

    def headers_of(self, f):
        """The decoded fields of a HEADERS frame (no CONTINUATION from
        gatehouse for the small heads of these tests)."""
        p = f[3]
        if f[1] & PADDED:
            p = p[1:len(p) - p[0]]
        if f[1] & PRIORITY_FLAG:
            p = p[5:]
        return dict(self.dec.decode(p))

    def until(self, pred, timeout=30):
        """The first frame (read before and not matched yet, or read now)
        for which pred(frame) is true; HEADERS come with their decoded
        fields as a fifth item. EOFError when the connection ends first."""
        for i, f in enumerate(self.pending):
            if pred(f):
                del self.pending[i]
                return f
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            assert left > 0, "no such frame in %ds: %r" % (timeout, self.frames[-10:])
            f = self.next_frame(timeout=left)
            if f[0] == HEADERS:
                f = f + (self.headers_of(f),)
            if pred(f):
                return f
            self.pending.append(f)

    def goaway(self, timeout=30):
        """(error code, last stream id) of the server's GOAWAY."""
        f = self.until(lambda f: f[0] == GOAWAY, timeout)
        return int.from_bytes(f[3][4:8], "big"), int.from_bytes(f[3][:4], "big") & 0x7fffffff

    def rst(self, sid, timeout=30):
        """The RST_STREAM code for stream sid."""
        f = self.until(lambda f: f[0] == RST_STREAM and f[2] == sid, timeout)
        return int.from_bytes(f[3], "big")

    def status(self, sid, timeout=30):
        f = self.until(lambda f: f[0] == HEADERS and f[2] == sid, timeout)
        return f[4].get(":status")

    def response(self, sid, timeout=30):
        """(status, body) of stream sid, read to its END_STREAM (the stream
        window is reopened as DATA comes)."""
        status, body = None, b""
        while True:
            f = self.until(lambda f: f[2] == sid and f[0] in (HEADERS, DATA, RST_STREAM),
                           timeout)
            if f[0] == RST_STREAM:
                raise AssertionError("stream %d reset: %d" % (sid, int.from_bytes(f[3], "big")))
            if f[0] == HEADERS and status is None:
                status = f[4].get(":status")
            if f[0] == DATA:
                body += f[3]
                if f[3] and not f[1] & END_STREAM:
                    try:
                        self.window_update(sid, len(f[3]))
                        self.window_update(0, len(f[3]))
                    except OSError:
                        pass
            if f[1] & END_STREAM:
                return status, body

    def closed(self, timeout=30):
        """True once the server closed the connection (frames before it are
        kept in .frames)."""
        deadline = time.time() + timeout
        try:
            while time.time() < deadline:
                self.next_frame(timeout=max(0.1, deadline - time.time()))
        except (EOFError, ConnectionResetError, ssl.SSLError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _sanitized():
    from conftest import GATEHOUSE_BIN
    try:
        return b"__asan_init" in GATEHOUSE_BIN.read_bytes()
    except OSError:
        return False


def rss_meaningful():
    """Under ASan (freed memory sits in its quarantine) or valgrind RSS says
    nothing about gatehouse's own bounds (as in test_faults.py)."""
    from conftest import VALGRIND
    return not VALGRIND and not _sanitized()


def rss_kib(pid):
    for ln in open("/proc/%d/status" % pid):
        if ln.startswith("VmRSS:"):
            return int(ln.split()[1])
    return 0


def assert_serves(gh, path="/echo?still=up"):
    """gatehouse is up and answers a new HTTP/2 connection."""
    assert gh.proc.poll() is None, "gatehouse exited"
    c = RawH2(gh.https_port)
    try:
        c.request(1, path)
        status, body = c.response(1)
        assert status == "200", status
        return body
    finally:
        c.close()

"""Helpers shared by the gatehouse end-to-end tests.

- RawImap: a line-oriented IMAP client over a plain socket with timeouts
  everywhere, for the byte-level cases imaplib cannot express.
- parse_audit_line: the audit log line format -> dict.
- to_libconfig: python values -> libconfig text for gatehouse's config.
- free_port / closed_port.
"""

import errno
import re
import socket
import time

# ---------------------------------------------------------------- accounts

ALICE = ("alice@example.com", "alice-secret")                 # store A
CAROL = ("carol@example.com", 'carol pass "quoted"\\x')       # store A: space, quotes, a backslash
BOB = ("bob@example.com", "bob-secret")                       # store B

# ---------------------------------------------------------------- ports


from mailstore import _free_port as free_port  # noqa: E402  (one helper for both)


closed_port = free_port   # a port nobody listens on (connection refused)


# ---------------------------------------------------------------- raw IMAP


class ConnectionClosed(Exception):
    pass


class _SockOwner:
    """A client over self.sock: close() and `with` close the socket."""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RawImap(_SockOwner):
    """Minimal IMAP client: send bytes, read CRLF-terminated lines."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0, read_greeting=True, source=None):
        # source: a local address to connect from (127.0.0.x: a distinct client IP).
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.timeout = timeout
        self.buf = bytearray()
        self.greeting = self.readline() if read_greeting else None

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def send_ignoring_reset(self, data):
        """Send; the peer may already have closed (that is what some tests expect)."""
        try:
            self.send(data)
            return True
        except OSError as e:
            if e.errno in (errno.EPIPE, errno.ECONNRESET):
                return False
            raise

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise ConnectionClosed("connection closed by peer; unread: %r" % bytes(self.buf[:200]))
        self.buf += chunk

    def readline(self, timeout=None):
        """Return one line without its CRLF; ConnectionClosed on EOF."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no complete line within %.1fs; have %r"
                                     % (timeout or self.timeout, bytes(self.buf[:200])))
            self._fill(left)
        i = self.buf.index(b"\r\n")
        line = bytes(self.buf[:i])
        del self.buf[:i + 2]
        return line

    def read_literal(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("literal incomplete")
            self._fill(left)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_tagged(self, tag, timeout=None):
        """Read lines up to and including the one tagged `tag`; return them all.

        Literals inside responses are read and kept inline (as bytes)."""
        if isinstance(tag, str):
            tag = tag.encode()
        lines = []
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            left = max(0.01, deadline - time.monotonic())
            line = self.readline(left)
            m = re.search(rb"\{(\d+)\}$", line)
            if m and not line.startswith(tag + b" "):
                line += b"\r\n" + self.read_literal(int(m.group(1)), left)
                line += self.readline(left)
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def command(self, tag, text, timeout=None):
        self.send("%s %s\r\n" % (tag, text))
        return self.read_tagged(tag, timeout)

    def read_until_closed(self, timeout=None):
        """Read everything until EOF (or reset); return the lines seen.

        Raises socket.timeout when the peer keeps the connection open."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("connection still open after %.1fs; have %r"
                                     % (timeout or self.timeout, bytes(self.buf[:200])))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            self.buf += chunk
        data = bytes(self.buf)
        self.buf = bytearray()
        lines = data.split(b"\r\n")
        if lines and lines[-1] == b"":
            lines.pop()
        return lines

    def is_closed(self, timeout=0.5):
        """True if the peer closed (EOF or reset) within timeout; no data expected."""
        try:
            self.sock.settimeout(timeout)
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        if chunk:
            self.buf += chunk
            return False
        return True



def quote(s):
    """IMAP quoted string."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------- audit log

AUDIT_TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
AUDIT_KEYS = ("session", "proto", "client", "login", "user", "result", "reason",
              "backend", "source", "latency_ms")


def _unescape(s):
    out = bytearray()
    i = 0
    b = s.encode("latin-1") if isinstance(s, str) else s
    while i < len(b):
        c = b[i]
        if c == 0x5C and i + 1 < len(b):
            n = b[i + 1]
            if n == ord("x") and i + 3 < len(b):
                out.append(int(b[i + 2:i + 4], 16))
                i += 4
                continue
            out.append(n)
            i += 2
            continue
        out.append(c)
        i += 1
    return out.decode("utf-8", "replace")


def parse_audit_line(line):
    """Parse `<ts> key=value key="quoted" ...` into a dict (ts under "ts").

    Quoted values are unescaped (\\" \\\\ \\xHH).  Raises ValueError on a
    malformed line."""
    if isinstance(line, bytes):
        line = line.decode("latin-1")
    line = line.rstrip("\r\n")
    ts, sep, rest = line.partition(" ")
    if not sep:
        raise ValueError("audit line without fields: %r" % line)
    rec = {"ts": ts, "_raw": line}
    i = 0
    n = len(rest)
    while i < n:
        while i < n and rest[i] == " ":
            i += 1
        if i >= n:
            break
        eq = rest.find("=", i)
        if eq < 0:
            raise ValueError("bad audit field at %r in %r" % (rest[i:], line))
        key = rest[i:eq]
        if not re.match(r"^[a-z_]+$", key):
            raise ValueError("bad audit key %r in %r" % (key, line))
        i = eq + 1
        if i < n and rest[i] == '"':
            j = i + 1
            while j < n and rest[j] != '"':
                j += 2 if rest[j] == "\\" else 1
            if j >= n:
                raise ValueError("unterminated quote in %r" % line)
            rec[key] = _unescape(rest[i + 1:j])
            i = j + 1
        else:
            j = rest.find(" ", i)
            j = n if j < 0 else j
            rec[key] = rest[i:j]
            i = j
    return rec


# ---------------------------------------------------------------- libconfig


def _lc_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        r = repr(v)
        return r if ("." in r or "e" in r) else r + ".0"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError("cannot write %r as libconfig" % (v,))


def _lc_value(v, indent):
    pad = "  " * (indent + 1)
    if isinstance(v, dict):
        inner = "".join("%s%s = %s;\n" % (pad, k, _lc_value(x, indent + 1))
                        for k, x in v.items() if x is not None)
        return "{\n" + inner + "  " * indent + "}"
    if isinstance(v, (list, tuple)):
        if any(isinstance(x, (dict, list, tuple)) for x in v):
            # a libconfig list: ( ... )
            return "(\n" + ",\n".join(pad + _lc_value(x, indent + 1) for x in v) + \
                "\n" + "  " * indent + ")"
        return "[ " + ", ".join(_lc_scalar(x) for x in v) + " ]"
    return _lc_scalar(v)


def to_libconfig(settings):
    """Top-level dict -> libconfig text.  None values are left out."""
    return "".join("%s = %s;\n" % (k, _lc_value(v, 0))
                   for k, v in settings.items() if v is not None)


def deep_merge(base, over):
    """Merge dict `over` into a copy of `base`; None in `over` deletes a key."""
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def check_audit(rec, *, login, result, user=None, backend=None, source=None,
                client_port=None, reason=None, proto="imap", timeout=3.0):
    """Assert one parsed audit record.  backend/source may be a tuple of
    acceptable values; None skips the check.

    rec may be a gatehouse instead: its newest record is checked, waiting up
    to `timeout` for one that passes.  A worker writes its audit lines once
    per loop pass, so the line of a login can reach the file a moment after
    the client has seen the answer (and an older line is still the newest)."""
    kw = dict(login=login, result=result, user=user, backend=backend, source=source,
              client_port=client_port, reason=reason, proto=proto)
    if hasattr(rec, "last_audit"):
        def passes(r):
            try:
                _check_audit_record(r, **kw)
                return True
            except AssertionError:
                return False
        rec = rec.last_audit(timeout=timeout, until=passes)
    return _check_audit_record(rec, **kw)


def _check_audit_record(rec, *, login, result, user, backend, source, client_port, reason,
                        proto):
    raw = rec.get("_raw", "")
    assert AUDIT_TS_RE.match(rec["ts"]), "bad timestamp in %r" % raw
    for k in AUDIT_KEYS:
        assert k in rec, "audit line lacks %s=: %r" % (k, raw)
    assert re.fullmatch(r"[0-9a-fA-F]+", rec["session"]), raw
    assert rec["proto"] == proto, raw
    if client_port is not None:
        assert rec["client"] == "127.0.0.1:%d" % client_port, raw
    else:
        assert re.fullmatch(r"127\.0\.0\.1:\d+", rec["client"]), raw
    assert rec["login"] == login, raw
    assert rec["result"] == result, raw
    if user is not None:
        assert rec["user"] == user, raw
    for key, want in (("backend", backend), ("source", source)):
        if want is None:
            continue
        if isinstance(want, tuple):
            assert rec[key] in want, raw
        else:
            assert rec[key] == want, raw
    if reason is not None:
        assert reason in rec["reason"], raw
    assert re.fullmatch(r"\d+", rec["latency_ms"]), raw
    return rec


# ---------------------------------------------------------------- small IMAP helpers

def b64(s):
    import base64
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def search_count(m, subject):
    """Number of messages whose Subject contains `subject` (imaplib, mailbox selected)."""
    typ, data = m.search(None, "SUBJECT", quote(subject))
    assert typ == "OK"
    return len(data[0].split())


def assert_can_login(gh, user=ALICE):
    """A fresh connection through gatehouse still logs in and selects INBOX."""
    m = gh.imap()
    try:
        assert m.login(*user)[0] == "OK"
        assert m.select("INBOX", readonly=True)[0] == "OK"
    finally:
        try:
            m.logout()
        except Exception:
            pass


def direct_imap(store, user=None):
    """imaplib connection straight to a Dovecot store (logged in if user given)."""
    import imaplib
    m = imaplib.IMAP4("127.0.0.1", store.imap_port, timeout=10)
    if user:
        m.login(*user)
    return m


# ---------------------------------------------------------------- fake backends

class ThreadedServer:
    """A stand-in server on 127.0.0.1 (an ephemeral port, self.port): each
    connection is served by self._serve(conn) on a thread of its own; close()
    (or `with`) stops accepting. Subclasses set their state, then call
    ThreadedServer.__init__."""

    def __init__(self):
        import threading
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        import threading
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        raise NotImplementedError

    def close(self):
        self._stop.set()
        self.sock.close()
        self._thread.join(2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FakeBackend(ThreadedServer):
    """A misbehaving IMAP backend on 127.0.0.1: sends `greeting`, then records
    what the proxy sends until it closes (or `hold` seconds pass); with
    close_after_greeting it hangs up right after the greeting."""

    def __init__(self, greeting, close_after_greeting=False, hold=5.0):
        self.greeting = greeting
        self.close_after_greeting = close_after_greeting
        self.hold = hold
        self.received = []
        ThreadedServer.__init__(self)

    def _serve(self, conn):
        data = b""
        try:
            conn.sendall(self.greeting)
            if self.close_after_greeting:
                return
            conn.settimeout(0.1)
            deadline = time.monotonic() + self.hold
            while time.monotonic() < deadline and not self._stop.is_set():
                try:
                    chunk = conn.recv(4096)
                except socket.timeout:
                    continue
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        finally:
            self.received.append(data)
            conn.close()


# ---------------------------------------------------------------- raw TLS records

BAD_TLS_RECORD = b"\x17\x03\x03\x00\x20" + b"\xaa" * 32   # application data whose MAC fails


class TlsBio(_SockOwner):
    """A TLS client driven through ssl.MemoryBIO over a plain socket, so a
    test decides which records go on the wire and in how many TCP writes.

    handshake() completes the handshake; records(*plaintexts) encrypts each
    piece (<= 16384 bytes) as one record and returns the bytes without
    sending them; close_notify() returns the alert's bytes; send_raw()
    writes bytes with one sendall.  recv_some()/readline()/read_all() read
    the server's decrypted data (SSLError and EOF end the stream)."""

    def __init__(self, sock, server_hostname="mail.example.com", maximum_version=None,
                 timeout=10.0):
        import ssl
        self.ssl = ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if maximum_version is not None:
            ctx.maximum_version = maximum_version
        self.sock = sock
        self.timeout = timeout
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname)
        self.buf = bytearray()
        self.eof = False          # the server closed (EOF, alert or reset)
        self.error = None         # the SSLError that ended the stream, if any

    @classmethod
    def connect(cls, port, host="127.0.0.1", timeout=10.0, rcvbuf=None, **kw):
        """A new TCP connection (SO_RCVBUF set before connect if given), handshaken."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect((host, port))
        t = cls(s, timeout=timeout, **kw)
        t.handshake()
        return t

    def _flush(self):
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def handshake(self):
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except self.ssl.SSLWantReadError:
                self._flush()
                if time.monotonic() > deadline:
                    raise socket.timeout("TLS handshake timed out")
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionClosed("closed during the TLS handshake")
                self.incoming.write(chunk)

    @property
    def version(self):
        return self.obj.version()

    def records(self, *plaintexts):
        """Encrypt each piece as one record; return the bytes (not sent)."""
        for p in plaintexts:
            assert len(p) <= 16384, "one record holds at most 16384 bytes"
            n = self.obj.write(p)
            assert n == len(p)
        return self.outgoing.read()

    def records_of(self, data, size=16384):
        """Encrypt `data` as records of `size` plaintext bytes; return the bytes."""
        return self.records(*[data[i:i + size] for i in range(0, len(data), size)])

    def close_notify(self):
        """The close_notify alert's bytes (not sent)."""
        try:
            self.obj.unwrap()
        except self.ssl.SSLWantReadError:
            pass
        return self.outgoing.read()

    def send_raw(self, data):
        """Everything in one write (one sendall)."""
        self.sock.sendall(data)

    def send(self, data):
        """Plaintext through TLS, flushed at once."""
        if isinstance(data, str):
            data = data.encode()
        self.send_raw(self.records_of(data))

    def _pump(self, timeout):
        """Decrypt what the server sent; False once the stream ended."""
        if self.eof:
            return False
        while True:
            try:
                chunk = self.obj.read(65536)
                if not chunk:                 # close_notify from the server
                    self.eof = True
                    return False
                self.buf += chunk
                return True
            except self.ssl.SSLWantReadError:
                pass
            except self.ssl.SSLError as e:    # an alert, a bad record
                self.eof, self.error = True, e
                return False
            self.sock.settimeout(max(0.01, timeout))
            try:
                raw = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                raw = b""
            if not raw:
                self.eof = True
                return False
            self.incoming.write(raw)

    def recv_some(self, timeout=None):
        """Some decrypted bytes (b"" once the stream has ended)."""
        if not self.buf:
            self._pump(timeout or self.timeout)
        data = bytes(self.buf)
        self.buf = bytearray()
        return data

    def readline(self, timeout=None):
        """One line without its CRLF; ConnectionClosed at the end of the stream."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no complete line within %.1fs; have %r"
                                     % (timeout or self.timeout, bytes(self.buf[:200])))
            if not self._pump(left):
                raise ConnectionClosed("TLS stream ended (%s); unread: %r"
                                       % (self.error, bytes(self.buf[:200])))
        i = self.buf.index(b"\r\n")
        line = bytes(self.buf[:i])
        del self.buf[:i + 2]
        return line

    def read_all(self, timeout=None):
        """Everything until the server ends the stream; socket.timeout if it does not."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("TLS stream still open after %.1fs; have %r"
                                     % (timeout or self.timeout, bytes(self.buf[:200])))
            self._pump(left)
        data = bytes(self.buf)
        self.buf = bytearray()
        return data


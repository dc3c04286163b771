"""TLS on the client side: implicit TLS (IMAPS), STARTTLS, SNI virtual hosts
with RSA + ECDSA certificates, ALPN, protocol versions, session resumption
with shared ticket keys, certificate reload on SIGHUP, `gatehouse -t` on bad
certificates, and hostile or idle TLS clients.

Certificates are made once per run with the openssl CLI (fixture `certs`).
Clients: python's ssl/imaplib, `openssl s_client` and curl, every one of
them bounded by a timeout.
"""

import contextlib
import hashlib
import imaplib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ghtest import ALICE, BOB, RawImap, b64, check_audit, free_port, to_libconfig

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
CURL = shutil.which("curl") or "/usr/bin/curl"

# ---------------------------------------------------------------- certificates


class Certs:
    """The files made by the `certs` fixture (all paths are str)."""

    def __init__(self, d):
        self.dir = d
        p = lambda name: os.path.join(d, name)  # noqa: E731
        self.default_crt, self.default_key = p("default.crt"), p("default.key")
        self.default2_crt, self.default2_key = p("default2.crt"), p("default2.key")
        self.mail_rsa_crt, self.mail_rsa_key = p("mail-rsa.crt"), p("mail-rsa.key")
        self.mail_ec_crt, self.mail_ec_key = p("mail-ec.crt"), p("mail-ec.key")
        self.org_crt, self.org_key = p("org.crt"), p("org.key")
        self.broken_crt = p("broken.crt")
        self.ticket1, self.ticket2, self.ticket3 = p("t1.key"), p("t2.key"), p("t3.key")


def _openssl(*args):
    r = subprocess.run([OPENSSL, *args], capture_output=True, timeout=30)
    assert r.returncode == 0, (args, r.stderr.decode(errors="replace"))


@pytest.fixture(scope="session")
def certs():
    d = tempfile.mkdtemp(prefix="gh-tls-", dir="/tmp")
    c = Certs(d)
    try:
        def selfsigned(crt, key, cn, ec=False):
            newkey = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if ec
                      else ["-newkey", "rsa:2048"])
            _openssl("req", "-x509", *newkey, "-nodes", "-keyout", key, "-out", crt,
                     "-days", "3", "-subj", "/CN=" + cn)

        selfsigned(c.default_crt, c.default_key, "default.test")
        selfsigned(c.default2_crt, c.default2_key, "default2.test")
        selfsigned(c.mail_rsa_crt, c.mail_rsa_key, "mail.example.com rsa")
        selfsigned(c.mail_ec_crt, c.mail_ec_key, "mail.example.com ecdsa", ec=True)
        selfsigned(c.org_crt, c.org_key, "wildcard.example.org")
        Path(c.broken_crt).write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
                                      "-----END CERTIFICATE-----\n")
        for t in (c.ticket1, c.ticket2, c.ticket3):
            Path(t).write_bytes(os.urandom(80))
        yield c
    finally:
        shutil.rmtree(d, ignore_errors=True)


def tls_group(certs, **extra):
    g = {"cert": certs.default_crt, "key": certs.default_key}
    g.update(extra)
    return g


def vhosts(certs):
    return [
        {"names": ["mail.example.com"], "cert": certs.mail_rsa_crt, "key": certs.mail_rsa_key,
         "ecdsa_cert": certs.mail_ec_crt, "ecdsa_key": certs.mail_ec_key},
        {"names": ["*.example.org"], "cert": certs.org_crt, "key": certs.org_key},
    ]


class TlsGh:
    """A started gatehouse with three listeners: IMAPS, STARTTLS required,
    STARTTLS optional."""

    def __init__(self, gh, imaps, required, optional):
        self.gh = gh
        self.imaps = imaps
        self.required = required
        self.optional = optional

    def __getattr__(self, name):
        return getattr(self.gh, name)


def tls_settings(certs, tls=None, with_vhosts=True, **overrides):
    """Overrides for the gatehouse factory: the certificates, the vhosts and
    three listeners (IMAPS, STARTTLS required, STARTTLS optional)."""
    imaps, required, optional = free_port(), free_port(), free_port()
    settings = {
        "tls": tls if tls is not None else tls_group(certs),
        "vhosts": vhosts(certs) if with_vhosts else None,
        "listen": [
            {"address": "127.0.0.1:%d" % imaps, "protocol": "imap", "tls": True},
            {"address": "127.0.0.1:%d" % required, "protocol": "imap", "starttls": "required"},
            {"address": "127.0.0.1:%d" % optional, "protocol": "imap", "starttls": "optional"},
        ],
    }
    settings.update(overrides)
    return settings, (imaps, required, optional)


def start_tls_gh(gatehouse, certs, tls=None, with_vhosts=True, **overrides):
    settings, ports = tls_settings(certs, tls, with_vhosts, **overrides)
    return TlsGh(gatehouse(**settings), *ports)


@contextlib.contextmanager
def private_tls_gh(tmp_path, lookup, certs, **overrides):
    """A gatehouse outside the `gatehouse` factory, for tests of inputs that
    once crashed it: a crash must fail the test, not error its teardown.
    Leaves by checking that it is alive and clean and stops with status 0."""
    from conftest import Gatehouse, default_settings   # the fixtures' own class
    from ghtest import deep_merge
    d = tmp_path / "private"
    d.mkdir()
    settings, ports = tls_settings(certs, **overrides)
    settings = deep_merge(default_settings(d, ports[0], lookup), settings)
    gh = Gatehouse(d, settings, ports[0])
    gh.start()
    try:
        yield TlsGh(gh, *ports)
        assert gh.proc.poll() is None, "gatehouse died (%s):\n%s" % (
            gh.proc.returncode, gh.logs_text()[-3000:])
        gh.assert_healthy()
        assert gh.stop() == 0, gh.logs_text()[-3000:]
        gh.assert_healthy()
    finally:
        gh.kill()


@pytest.fixture
def tgh(gatehouse, certs):
    return start_tls_gh(gatehouse, certs)


# ---------------------------------------------------------------- clients


def client_ctx(**kw):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def imaps(port, timeout=10, **kw):
    return imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=client_ctx(**kw), timeout=timeout)


def s_client(port, *args, send=b"", timeout=10):
    """Run `openssl s_client`; return (exit status, stdout + stderr)."""
    r = subprocess.run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port, *args],
                       input=send, capture_output=True, timeout=timeout)
    return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace")


def subject_cn(out):
    m = re.search(r"^subject=.*?CN\s*=\s*([^,/\n]+?)\s*$", out, re.M)
    assert m, "no subject= line in s_client output:\n" + out[-3000:]
    return m.group(1)


def curl(*args, timeout=20):
    r = subprocess.run([CURL, "-sS", "--max-time", str(timeout - 5), *args],
                       capture_output=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr.decode("utf-8", "replace")


class TlsLines(RawImap):
    """RawImap over an already wrapped (TLS) socket."""

    def __init__(self, sock, timeout=10.0):
        self.sock = sock
        self.timeout = timeout
        self.buf = bytearray()
        self.greeting = None


def raw_tls(port, timeout=10.0, server_hostname=None, **ctxkw):
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    t = client_ctx(**ctxkw).wrap_socket(sock, server_hostname=server_hostname)
    c = TlsLines(t, timeout)
    c.greeting = c.readline()
    return c


class BioClient:
    """TLS through memory BIOs over a plain socket, so that a TLS record and
    what follows it (a close_notify, bytes that are no record) leave in ONE
    write and reach gatehouse in one read."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = client_ctx().wrap_bio(self.inc, self.out)
        self.buf = b""
        self.closed = False
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._recv()
        self._flush()

    def _flush(self):
        if self.out.pending:
            self.sock.sendall(self.out.read())

    def _recv(self):
        try:
            d = self.sock.recv(65536)
        except ConnectionResetError:
            d = b""
        if not d:
            self.closed = True
            raise ConnectionError("closed by gatehouse")
        self.inc.write(d)

    def _more(self):
        try:
            self.buf += self.obj.read(65536)
        except ssl.SSLWantReadError:
            self._recv()

    def readline(self):
        while b"\r\n" not in self.buf:
            self._more()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def send_with_tail(self, plaintext, tail):
        """plaintext as a record, then `tail` ("close_notify" or "garbage"), in one write."""
        self.obj.write(plaintext)
        if tail == "close_notify":
            try:
                self.obj.unwrap()
            except ssl.SSLWantReadError:
                pass
            data = self.out.read()
        else:
            data = self.out.read() + b"\x17\x03\x03\x00\x05hello"
        self.sock.sendall(data)

    def lines_until_closed(self, timeout=5.0):
        """Every line until gatehouse closes (close_notify, alert or FIN)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                self._more()
        except (ConnectionError, ssl.SSLError):
            pass
        return [l for l in self.buf.split(b"\r\n") if l]

    def close(self):
        self.sock.close()


def wait_log(gh, pattern, count=1, timeout=5.0):
    """Wait until the error log matches `pattern` at least `count` times."""
    deadline = time.monotonic() + timeout
    while True:
        text = gh.error_log()
        found = re.findall(pattern, text)
        if len(found) >= count:
            return text
        if time.monotonic() > deadline:
            pytest.fail("%r not in the error log %d time(s):\n%s" % (pattern, count, text[-3000:]))
        time.sleep(0.02)


def alice_uid1(stores):
    return stores.a.manifest["users"][ALICE[0]]["messages"][0]["uid"]


def fetch_big(m, stores):
    assert m.login(*ALICE)[0] == "OK"
    assert m.select("INBOX", readonly=True)[0] == "OK"
    typ, data = m.uid("FETCH", str(stores.big_uid), "(RFC822.SIZE BODY.PEEK[])")
    assert typ == "OK"
    assert b"RFC822.SIZE %d" % stores.big_size in data[0][0]
    body = data[0][1]
    assert len(body) == stores.big_size
    assert hashlib.sha256(body).hexdigest() == stores.big_sha256
    assert body == stores.big_bytes
    m.logout()


# ---------------------------------------------------------------- SNI, RSA / ECDSA


def test_sni_picks_the_certificate(tgh):
    cases = [
        ((), "default.test"),
        (("-servername", "mail.example.com"), None),        # RSA or ECDSA: the client's choice
        (("-servername", "MAIL.Example.COM"), None),
        (("-servername", "imap.example.org"), "wildcard.example.org"),
        (("-servername", "deep.imap.example.org"), "default.test"),   # * is one label
        (("-servername", "example.org"), "default.test"),
        (("-servername", "unknown.test"), "default.test"),
    ]
    for args, want in cases:
        rc, out = s_client(tgh.imaps, *args)
        cn = subject_cn(out)
        if want is None:
            assert cn.startswith("mail.example.com "), (args, out[-2000:])
        else:
            assert cn == want, (args, out[-2000:])


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_ecdsa_and_rsa_on_one_vhost(tgh, version):
    rc, out = s_client(tgh.imaps, version, "-servername", "mail.example.com",
                       "-sigalgs", "ECDSA+SHA256")
    assert subject_cn(out) == "mail.example.com ecdsa", out[-2000:]
    rc, out = s_client(tgh.imaps, version, "-servername", "mail.example.com",
                       "-sigalgs", "RSA-PSS+SHA256:RSA+SHA256")
    assert subject_cn(out) == "mail.example.com rsa", out[-2000:]
    # The default certificate is RSA only.
    rc, out = s_client(tgh.imaps, version, "-sigalgs", "RSA-PSS+SHA256:RSA+SHA256")
    assert subject_cn(out) == "default.test", out[-2000:]


def test_sni_on_starttls(tgh):
    """STARTTLS handshakes go through the same SNI selection."""
    rc, out = s_client(tgh.required, "-starttls", "imap", "-servername", "x.example.org")
    assert subject_cn(out) == "wildcard.example.org", out[-2000:]
    rc, out = s_client(tgh.optional, "-starttls", "imap")
    assert subject_cn(out) == "default.test", out[-2000:]


# ---------------------------------------------------------------- full sessions


def test_imaps_fetch_big_message(tgh, stores):
    m = imaps(tgh.imaps, timeout=30)
    assert "AUTH=PLAIN" in m.capabilities and "STARTTLS" not in m.capabilities
    assert "LOGINDISABLED" not in m.capabilities
    fetch_big(m, stores)
    check_audit(tgh, login=ALICE[0], user=ALICE[0], result="ok",
                backend="127.0.0.1:%d" % stores.a.imap_port)
    tgh.assert_no_secret(ALICE[1])


def test_imaps_idle_then_big_fetch(tgh, stores):
    """An implicit-TLS session that sat idle (record buffers released, the
    worker's pool and heap trimmed meanwhile) relays a 10 MiB FETCH byte
    for byte, twice."""
    from test_imap_session import idle_then_big_fetch_twice
    idle_then_big_fetch_twice(imaps(tgh.imaps, timeout=30), stores)
    tgh.assert_no_secret(ALICE[1])


@pytest.mark.parametrize("which", ["required", "optional"])
def test_starttls_fetch_big_message(tgh, stores, which):
    m = imaplib.IMAP4("127.0.0.1", getattr(tgh, which), timeout=30)
    assert "STARTTLS" in m.capabilities
    typ, _ = m.starttls(ssl_context=client_ctx())
    assert typ == "OK"
    # imaplib asked again inside TLS
    assert "STARTTLS" not in m.capabilities and "LOGINDISABLED" not in m.capabilities
    assert "AUTH=PLAIN" in m.capabilities
    fetch_big(m, stores)
    check_audit(tgh, login=ALICE[0], user=ALICE[0], result="ok",
                backend="127.0.0.1:%d" % stores.a.imap_port)


def test_curl_imaps_and_starttls(tgh, stores):
    uid = alice_uid1(stores)
    user = "%s:%s" % ALICE
    rc, body, err = curl("-k", "--url", "imaps://127.0.0.1:%d/INBOX;UID=%d" % (tgh.imaps, uid),
                         "--user", user)
    assert rc == 0, err
    assert b"Subject: Welcome alice" in body, body[:500]
    rc, body, err = curl("-k", "--ssl-reqd",
                         "--url", "imap://127.0.0.1:%d/INBOX;UID=%d" % (tgh.required, uid),
                         "--user", user)
    assert rc == 0, err
    assert b"Subject: Welcome alice" in body, body[:500]
    # Without TLS curl cannot log in on the required port.
    rc, body, err = curl("--url", "imap://127.0.0.1:%d/INBOX;UID=%d" % (tgh.required, uid),
                         "--user", user)
    assert rc != 0 and b"Welcome alice" not in body
    tgh.wait_audit(2)
    for rec in tgh.audit_records():
        check_audit(rec, login=ALICE[0], user=ALICE[0], result="ok")
    tgh.assert_no_secret(ALICE[1])


def test_tls_slow_reader_and_big_append(tgh, stores):
    """Backpressure inside TLS both ways: a client that stalls in the middle
    of the 10 MiB FETCH, then a 3 MiB APPEND; both byte-exact."""
    from mailstore import make_big_message
    c = raw_tls(tgh.imaps, timeout=30)
    try:
        assert c.greeting.startswith(b"* OK")
        assert c.command("a", "LOGIN %s %s" % ALICE)[-1].startswith(b"a OK")
        assert c.command("b", "EXAMINE INBOX")[-1].startswith(b"b OK")
        c.send("c UID FETCH %d (BODY.PEEK[])\r\n" % stores.big_uid)
        time.sleep(1.0)
        head = c.readline()
        m = re.search(rb"\{(\d+)\}$", head)
        assert m, head
        size = int(m.group(1))
        first = c.read_literal(1024 * 1024)
        time.sleep(0.3)
        body = first + c.read_literal(size - len(first), timeout=30)
        assert hashlib.sha256(body).hexdigest() == stores.big_sha256
        assert c.read_tagged("c")[-1].startswith(b"c OK")
        c.command("d", "LOGOUT")
    finally:
        c.close()

    data = make_big_message(3, seed=123, subject="appended over TLS %f" % time.time())
    m = imaps(tgh.imaps, timeout=30)
    assert m.login(*BOB)[0] == "OK"
    typ, resp = m.append("INBOX", None, None, data)
    assert typ == "OK", resp
    assert m.select("INBOX", readonly=True)[0] == "OK"
    typ, found = m.search(None, "HEADER", "Message-ID", "<big-123@gatehouse.test>")
    num = found[0].split()[-1]
    typ, fetched = m.fetch(num, "(BODY.PEEK[])")
    assert hashlib.sha256(fetched[0][1]).hexdigest() == hashlib.sha256(data).hexdigest()
    m.logout()


def test_pipelined_with_the_handshake(tgh):
    """Commands sent right after the handshake, before the greeting was read,
    are answered after the greeting, in order."""
    sock = socket.create_connection(("127.0.0.1", tgh.imaps), timeout=10)
    t = client_ctx().wrap_socket(sock)
    t.sendall(b"a CAPABILITY\r\nb NOOP\r\nc LOGIN %s %s\r\nd NOOP\r\ne LOGOUT\r\n"
              % (BOB[0].encode(), BOB[1].encode()))
    c = TlsLines(t)
    try:
        assert c.readline().startswith(b"* OK [CAPABILITY ")
        for tag in "abcde":
            assert c.read_tagged(tag)[-1].startswith(tag.encode() + b" OK")
        assert c.read_until_closed(3) == []
    finally:
        c.close()


# ---------------------------------------------------------------- STARTTLS


def test_starttls_injection_is_discarded(tgh):
    """CVE-2011-0411: a command sent in plaintext behind STARTTLS must not be
    executed inside TLS."""
    with RawImap(tgh.required, timeout=10) as c:
        assert b"STARTTLS" in c.greeting
        c.send(b"a STARTTLS\r\nb CAPABILITY\r\n")
        assert c.readline() == b"a OK Begin TLS negotiation now"
        assert not c.buf, "bytes after the STARTTLS answer: %r" % bytes(c.buf)
        t = client_ctx().wrap_socket(c.sock)
        tc = TlsLines(t)
        t.settimeout(0.7)
        try:
            got = t.recv(4096)
        except (socket.timeout, ssl.SSLWantReadError):
            got = b""
        assert got == b"", "answer to the injected command: %r" % got
        lines = tc.command("c", "CAPABILITY")
        assert lines[-1] == b"c OK CAPABILITY completed", lines
        assert not any(l.startswith(b"b ") for l in lines), lines
        caps = lines[0].split()
        assert b"AUTH=PLAIN" in caps and b"STARTTLS" not in caps, lines
        # No second STARTTLS inside TLS.
        assert tc.command("d", "STARTTLS")[-1].startswith(b"d BAD")
        assert tc.command("e", "LOGIN %s %s" % ALICE)[-1].startswith(b"e OK")
        tc.command("f", "LOGOUT")
        t.close()


def test_required_refuses_cleartext_login(tgh):
    with RawImap(tgh.required, timeout=10) as c:
        caps = c.greeting.split(b"]")[0].split()
        assert b"STARTTLS" in caps and b"LOGINDISABLED" in caps, c.greeting
        assert not any(x.startswith(b"AUTH=") for x in caps), c.greeting
        lines = c.command("a", "CAPABILITY")
        assert b"LOGINDISABLED" in lines[0] and b"AUTH=" not in lines[0], lines
        r = c.command("b", "LOGIN %s %s" % ALICE)[-1]
        assert r.startswith(b"b NO [PRIVACYREQUIRED]"), r
        r = c.command("c", "AUTHENTICATE PLAIN")[-1]
        assert r.startswith(b"c NO [PRIVACYREQUIRED]"), r
        c.send("d STARTTLS\r\n")
        assert c.readline() == b"d OK Begin TLS negotiation now"
        tc = TlsLines(client_ctx().wrap_socket(c.sock))
        lines = tc.command("e", "CAPABILITY")
        assert b"AUTH=PLAIN" in lines[0] and b"STARTTLS" not in lines[0], lines
        assert b"LOGINDISABLED" not in lines[0], lines
        plain = b64("\0%s\0%s" % ALICE)
        assert tc.command("f", "AUTHENTICATE PLAIN " + plain)[-1].startswith(b"f OK")
        assert tc.command("g", "SELECT INBOX")[-1].startswith(b"g OK")
        tc.command("h", "LOGOUT")
    assert len(tgh.audit_lines()) == 1      # the refused LOGIN is no login attempt
    tgh.assert_no_secret(ALICE[1])


def test_optional_allows_cleartext_login(tgh):
    m = imaplib.IMAP4("127.0.0.1", tgh.optional, timeout=10)
    for cap in ("STARTTLS", "AUTH=PLAIN", "AUTH=LOGIN"):
        assert cap in m.capabilities, m.capabilities
    assert "LOGINDISABLED" not in m.capabilities
    assert m.login(*ALICE)[0] == "OK"
    assert m.select("INBOX", readonly=True)[0] == "OK"
    m.logout()


def test_starttls_default_is_required_with_a_certificate(gatehouse, certs):
    port = free_port()
    gh = gatehouse(tls=tls_group(certs),
                   listen=[{"address": "127.0.0.1:%d" % port, "protocol": "imap"}])
    with gh.raw() as c:
        assert b"STARTTLS LOGINDISABLED" in c.greeting, c.greeting
        assert c.command("a", "LOGIN %s %s" % ALICE)[-1].startswith(b"a NO [PRIVACYREQUIRED]")


def test_no_starttls_without_certificate(gh):
    with gh.raw() as c:
        assert b"STARTTLS" not in c.greeting and b"LOGINDISABLED" not in c.greeting
        lines = c.command("a", "CAPABILITY")
        assert b"STARTTLS" not in lines[0] and b"AUTH=PLAIN" in lines[0], lines
        assert c.command("b", "STARTTLS")[-1].startswith(b"b NO")
        # still a working plaintext session
        assert c.command("c", "LOGIN %s %s" % ALICE)[-1].startswith(b"c OK")
        c.command("d", "LOGOUT")


def test_starttls_on_imaps_is_bad(tgh):
    c = raw_tls(tgh.imaps)
    try:
        assert c.command("a", "STARTTLS")[-1].startswith(b"a BAD")
        assert c.command("b", "NOOP")[-1] == b"b OK NOOP completed"
    finally:
        c.close()


# ---------------------------------------------------------------- ALPN and versions


def test_alpn(tgh):
    rc, out = s_client(tgh.imaps, "-alpn", "pop3")
    assert rc != 0 and "no application protocol" in out, out[-2000:]
    rc, out = s_client(tgh.imaps, "-alpn", "imap", "-ign_eof", send=b"a LOGOUT\r\n")
    assert rc == 0 and "ALPN protocol: imap" in out, out[-2000:]
    assert "* OK" in out
    rc, out = s_client(tgh.imaps, "-alpn", "http/1.1,imap")
    assert rc == 0 and "ALPN protocol: imap" in out, out[-2000:]
    rc, out = s_client(tgh.imaps)                     # no ALPN at all is fine
    assert rc == 0 and "No ALPN negotiated" in out, out[-2000:]
    # the same after STARTTLS
    rc, out = s_client(tgh.optional, "-starttls", "imap", "-alpn", "pop3")
    assert rc != 0 and "no application protocol" in out, out[-2000:]
    rc, out = s_client(tgh.optional, "-starttls", "imap", "-alpn", "imap")
    assert rc == 0 and "ALPN protocol: imap" in out, out[-2000:]
    # the refusal is logged with its reason
    wait_log(tgh, r"TLS handshake failed: .*ALPN")
    # and gatehouse goes on serving
    m = imaps(tgh.imaps)
    m.logout()


def test_tls_versions(tgh):
    rc, out = s_client(tgh.imaps, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert rc != 0 and "alert protocol version" in out, out[-2000:]
    for v, name in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        rc, out = s_client(tgh.imaps, v, "-ign_eof", send=b"a LOGOUT\r\n")
        assert rc == 0 and re.search(r"New, %s," % name, out), (v, out[-2000:])
        assert "* BYE" in out


def test_tls13_only(gatehouse, certs):
    t = start_tls_gh(gatehouse, certs, tls=tls_group(certs, protocols=["TLSv1.3"]))
    rc, out = s_client(t.imaps, "-tls1_2")
    assert rc != 0 and "alert protocol version" in out, out[-2000:]
    rc, out = s_client(t.imaps, "-tls1_3")
    assert rc == 0 and "New, TLSv1.3," in out, out[-2000:]
    with pytest.raises(ssl.SSLError):
        imaps(t.imaps, maximum_version=ssl.TLSVersion.TLSv1_2)
    m = imaps(t.imaps, minimum_version=ssl.TLSVersion.TLSv1_3)
    m.logout()


def test_certificate_file_chain_is_what_goes_out(gatehouse, tmp_path):
    """A certificate file with its intermediate serves clients that trust
    only the root (the file's chain is sent, in order); a leaf-only file
    sends the leaf alone (gatehouse builds no chain of its own), and such
    a client rejects it. CN=chain.test under root -> intermediate."""
    d = str(tmp_path)
    p = lambda n: os.path.join(d, n)  # noqa: E731
    ext = p("ext.cnf")
    Path(ext).write_text("[ca]\nbasicConstraints=critical,CA:true\nkeyUsage=keyCertSign,cRLSign\n"
                         "[leaf]\nbasicConstraints=CA:false\nsubjectAltName=DNS:chain.test\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", p("root.key"), "-out", p("root.crt"), "-days", "3",
             "-subj", "/CN=Chain Test Root", "-extensions", "ca", "-config", ext)
    for name, cn, issuer, section in (("inter", "Chain Test Intermediate", "root", "ca"),
                                      ("leaf", "chain.test", "inter", "leaf")):
        _openssl("req", "-new", *ec, "-keyout", p(name + ".key"), "-out", p(name + ".csr"),
                 "-subj", "/CN=" + cn, "-config", ext)
        _openssl("x509", "-req", "-in", p(name + ".csr"), "-CA", p(issuer + ".crt"),
                 "-CAkey", p(issuer + ".key"), "-CAcreateserial", "-days", "3",
                 "-extfile", ext, "-extensions", section, "-out", p(name + ".crt"))
    Path(p("full.crt")).write_bytes(Path(p("leaf.crt")).read_bytes() +
                                    Path(p("inter.crt")).read_bytes())
    os.chmod(p("leaf.key"), 0o644)

    def listen():
        port = free_port()
        return port, [{"address": "127.0.0.1:%d" % port, "protocol": "imap", "tls": True}]

    root_only = ssl.create_default_context(cafile=p("root.crt"))
    full_port, full_listen = listen()
    gatehouse(tls={"cert": p("full.crt"), "key": p("leaf.key")}, vhosts=None, listen=full_listen)
    with socket.create_connection(("127.0.0.1", full_port), timeout=10) as raw:
        with root_only.wrap_socket(raw, server_hostname="chain.test") as t:
            assert t.recv(200).startswith(b"* OK")
    rc, out = s_client(full_port, "-showcerts", "-servername", "chain.test")
    assert rc == 0, out[-2000:]
    assert re.findall(r"^ ?\d s:.*$", out, re.M) == [" 0 s:CN = chain.test",
                                                      " 1 s:CN = Chain Test Intermediate"], out

    leaf_port, leaf_listen = listen()
    gatehouse(tls={"cert": p("leaf.crt"), "key": p("leaf.key")}, vhosts=None, listen=leaf_listen)
    rc, out = s_client(leaf_port, "-showcerts", "-servername", "chain.test")
    assert re.findall(r"^ ?\d s:.*$", out, re.M) == [" 0 s:CN = chain.test"], out
    with socket.create_connection(("127.0.0.1", leaf_port), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            root_only.wrap_socket(raw, server_hostname="chain.test")


# ---------------------------------------------------------------- resumption


def _resume(port_a, port_b, tmp_path, version="-tls1_2", name="sess.pem"):
    """Handshake with A saving the session, then offer it to B; B's s_client output."""
    sess = str(tmp_path / name)
    rc, out = s_client(port_a, version, "-ign_eof", "-sess_out", sess, send=b"a LOGOUT\r\n")
    assert rc == 0 and "New, " in out, out[-2000:]
    assert os.path.getsize(sess) > 0
    rc, out = s_client(port_b, version, "-ign_eof", "-sess_in", sess, send=b"a LOGOUT\r\n")
    assert rc == 0, out[-2000:]
    return out


def test_ticket_keys_shared_by_two_processes(gatehouse, certs, tmp_path):
    keys = {"ticket_keys": [certs.ticket1]}
    a = start_tls_gh(gatehouse, certs, tls=tls_group(certs, **keys))
    b = start_tls_gh(gatehouse, certs, tls=tls_group(certs, **keys))
    out = _resume(a.imaps, b.imaps, tmp_path)
    assert "Reused, TLSv1.2," in out, out[-2000:]
    out = _resume(b.imaps, a.imaps, tmp_path, version="-tls1_3", name="s13.pem")
    assert "Reused, TLSv1.3," in out, out[-2000:]
    # A resumed session still works end to end.
    assert "* BYE" in out


def test_ticket_key_rotation(gatehouse, certs, tmp_path):
    """The first key encrypts, the others only decrypt."""
    a = start_tls_gh(gatehouse, certs, tls=tls_group(certs, ticket_keys=[certs.ticket1]))
    b = start_tls_gh(gatehouse, certs,
                     tls=tls_group(certs, ticket_keys=[certs.ticket2, certs.ticket1]))
    c = start_tls_gh(gatehouse, certs, tls=tls_group(certs, ticket_keys=[certs.ticket2]))
    assert "Reused, TLSv1.2," in _resume(a.imaps, b.imaps, tmp_path, name="ab.pem")
    # b issues under ticket2, which a does not know but c does
    assert "New, TLSv1.2," in _resume(b.imaps, a.imaps, tmp_path, name="ba.pem")
    assert "Reused, TLSv1.2," in _resume(b.imaps, c.imaps, tmp_path, name="bc.pem")


def test_no_resumption_without_shared_keys(gatehouse, certs, tmp_path):
    a = start_tls_gh(gatehouse, certs, tls=tls_group(certs, ticket_keys=[certs.ticket1]))
    b = start_tls_gh(gatehouse, certs, tls=tls_group(certs, ticket_keys=[certs.ticket3]))
    c = start_tls_gh(gatehouse, certs)           # OpenSSL's own random ticket keys
    d = start_tls_gh(gatehouse, certs)
    for x, y, n in ((a, b, "ab"), (c, d, "cd"), (c, a, "ca")):
        for v in ("-tls1_2", "-tls1_3"):
            out = _resume(x.imaps, y.imaps, tmp_path, version=v, name=n + v + ".pem")
            assert "New, TLSv1." in out and "Reused" not in out, (n, v, out[-2000:])
    # Each resumes its own sessions (ticket or session cache).
    for x, n in ((a, "aa"), (c, "cc")):
        out = _resume(x.imaps, x.imaps, tmp_path, name=n + ".pem")
        assert "Reused, TLSv1.2," in out, (n, out[-2000:])


def test_session_cache_without_tickets(gatehouse, certs, tmp_path):
    a = start_tls_gh(gatehouse, certs, tls=tls_group(certs, session_tickets=False))
    b = start_tls_gh(gatehouse, certs, tls=tls_group(certs, session_tickets=False))
    out = _resume(a.imaps, a.imaps, tmp_path, name="aa.pem")
    assert "Reused, TLSv1.2," in out, out[-2000:]
    assert "TLS session ticket:" not in out
    out = _resume(a.imaps, b.imaps, tmp_path, name="ab.pem")
    assert "Reused" not in out, out[-2000:]


def test_tls13_one_ticket_per_handshake(gatehouse, certs, tmp_path):
    """TLS 1.3: one NewSessionTicket per handshake (OpenSSL sends two by
    default, each a session copy, encoded and encrypted); a resumed
    connection gets a fresh one, so a client always has one to use. With
    session_tickets off the ticket is a session-cache id (stateful) and
    resumes on the same gatehouse."""
    arrived = "Post-Handshake New Session Ticket arrived"
    for tickets in (True, False):
        g = start_tls_gh(gatehouse, certs, tls=tls_group(certs, session_tickets=tickets))
        sess = str(tmp_path / ("t13-%s.pem" % tickets))
        rc, out = s_client(g.imaps, "-tls1_3", "-ign_eof", "-sess_out", sess,
                           send=b"a LOGOUT\r\n")
        assert rc == 0 and "New, TLSv1.3," in out, out[-2000:]
        assert out.count(arrived) == 1, (tickets, out[-3000:])
        rc, out = s_client(g.imaps, "-tls1_3", "-ign_eof", "-sess_in", sess,
                           send=b"a LOGOUT\r\n")
        assert rc == 0 and "Reused, TLSv1.3," in out, (tickets, out[-2000:])
        assert out.count(arrived) == 1, (tickets, out[-3000:])
        assert "* BYE" in out


# ---------------------------------------------------------------- reload


def _reload(gh, n_ok_before, n_bad_before, expect_ok):
    gh.conf_path.write_text(to_libconfig(gh.settings))
    gh.signal(signal.SIGHUP)
    if expect_ok:
        return wait_log(gh, r"reloaded .*new sessions use it", n_ok_before + 1)
    return wait_log(gh, r"reload refused", n_bad_before + 1)


def test_reload_certificate(tgh, certs, stores):
    gh = tgh.gh
    old = imaps(tgh.imaps)
    assert old.login(*ALICE)[0] == "OK"
    assert old.select("INBOX", readonly=True)[0] == "OK"
    assert subject_cn(s_client(tgh.imaps)[1]) == "default.test"

    gh.settings["tls"]["cert"] = certs.default2_crt
    gh.settings["tls"]["key"] = certs.default2_key
    _reload(gh, 0, 0, True)
    assert old.noop()[0] == "OK"
    assert old.select("INBOX", readonly=True)[0] == "OK"
    assert subject_cn(s_client(tgh.imaps)[1]) == "default2.test"
    rc, out = s_client(tgh.required, "-starttls", "imap")
    assert subject_cn(out) == "default2.test"
    # vhosts came back with the new snapshot
    rc, out = s_client(tgh.imaps, "-servername", "a.example.org")
    assert subject_cn(out) == "wildcard.example.org"

    # A broken certificate: refused, the last good one stays.
    gh.settings["tls"]["cert"] = certs.broken_crt
    text = _reload(gh, 1, 0, False)
    line = [l for l in text.splitlines() if "reload refused" in l][-1]
    assert "tls.cert" in line and "broken.crt" in line, line
    assert re.search(r"gatehouse\.conf:\d+: tls\.cert: ", line), line
    assert subject_cn(s_client(tgh.imaps)[1]) == "default2.test"
    assert old.noop()[0] == "OK"
    m = imaps(tgh.imaps)
    assert m.login(*BOB)[0] == "OK"
    m.logout()
    old.logout()
    gh.assert_healthy()


def test_reload_then_old_sessions_end(tmp_path, lookup, certs):
    """After a reload, once no session of the old configuration is left, new
    connections on every listener still behave as configured."""
    with private_tls_gh(tmp_path, lookup, certs) as t:
        gh = t.gh
        gh.settings["tls"]["cert"] = certs.default2_crt
        gh.settings["tls"]["key"] = certs.default2_key
        _reload(gh, 0, 0, True)
        time.sleep(0.2)      # the workers have taken the new snapshot; nothing holds the old
        for _ in range(3):
            assert subject_cn(s_client(t.imaps)[1]) == "default2.test"
            with RawImap(t.required, timeout=5) as c:
                assert b"STARTTLS LOGINDISABLED" in c.greeting, c.greeting
            with RawImap(t.optional, timeout=5) as c:
                assert b"STARTTLS AUTH=PLAIN" in c.greeting, c.greeting
        m = imaps(t.imaps)
        assert m.login(*ALICE)[0] == "OK"
        m.logout()


# ---------------------------------------------------------------- gatehouse -t


def _check(gatehouse_bin, tmp_path, tls, vhost_list=None, listen=None):
    conf = tmp_path / "gatehouse.conf"
    conf.write_text(to_libconfig({
        "workers": 1,
        "error_log": str(tmp_path / "err.log"),
        "audit_log": str(tmp_path / "audit.log"),
        "tls": tls,
        "vhosts": vhost_list,
        "listen": listen or [{"address": "127.0.0.1:%d" % free_port(), "protocol": "imap",
                              "tls": True}],
    }))
    r = subprocess.run([str(gatehouse_bin), "-t", "-c", str(conf)], capture_output=True,
                       text=True, timeout=10)
    return r.returncode, r.stdout + r.stderr


def test_config_check_certificates(gatehouse_bin, tmp_path, certs):
    rc, out = _check(gatehouse_bin, tmp_path, tls_group(certs), vhosts(certs))
    assert rc == 0, out

    missing = str(tmp_path / "missing.crt")
    rc, out = _check(gatehouse_bin, tmp_path, {"cert": missing, "key": certs.default_key})
    assert rc == 1, out
    assert re.search(r"gatehouse\.conf:\d+: tls\.cert: ", out) and "missing.crt" in out, out

    rc, out = _check(gatehouse_bin, tmp_path, {"cert": certs.default_crt, "key": certs.org_key})
    assert rc == 1, out
    assert re.search(r"gatehouse\.conf:\d+: tls", out) and "org.key" in out, out

    # RSA certificate with an ECDSA key
    rc, out = _check(gatehouse_bin, tmp_path, {"cert": certs.default_crt, "key": certs.mail_ec_key})
    assert rc == 1, out
    assert re.search(r"gatehouse\.conf:\d+: tls", out), out

    rc, out = _check(gatehouse_bin, tmp_path, {"cert": certs.broken_crt, "key": certs.default_key})
    assert rc == 1, out
    assert re.search(r"gatehouse\.conf:\d+: tls\.cert: ", out) and "broken.crt" in out, out

    bad_vhost = vhosts(certs)
    bad_vhost[1]["key"] = certs.default_key
    rc, out = _check(gatehouse_bin, tmp_path, tls_group(certs), bad_vhost)
    assert rc == 1, out
    assert re.search(r"gatehouse\.conf:\d+: vhosts\.\[1\]", out), out

    bad_vhost = vhosts(certs)
    bad_vhost[0]["ecdsa_cert"] = missing
    rc, out = _check(gatehouse_bin, tmp_path, tls_group(certs), bad_vhost)
    assert rc == 1, out
    assert re.search(r"gatehouse\.conf:\d+: vhosts\.\[0\]\.ecdsa_cert: ", out), out


def test_config_check_listeners_and_vhosts(gatehouse_bin, tmp_path, certs):
    rc, out = _check(gatehouse_bin, tmp_path, None)
    assert rc == 1, out
    assert re.search(r"gatehouse\.conf:\d+: listen\.\[0\]\.tls: ", out), out

    plain = {"address": "127.0.0.1:%d" % free_port(), "protocol": "imap"}
    rc, out = _check(gatehouse_bin, tmp_path, None, listen=[dict(plain, starttls="required")])
    assert rc == 1, out
    assert re.search(r"gatehouse\.conf:\d+: listen\.\[0\]\.starttls: ", out), out
    rc, out = _check(gatehouse_bin, tmp_path, None, listen=[plain])       # plain, no TLS: fine
    assert rc == 0, out

    rc, out = _check(gatehouse_bin, tmp_path, tls_group(certs),
                     listen=[dict(plain, tls=True, starttls="optional")])
    assert rc == 1, out
    assert re.search(r"gatehouse\.conf:\d+: listen\.\[0\]\.starttls: ", out), out

    # vhosts need a default certificate
    rc, out = _check(gatehouse_bin, tmp_path, None, vhosts(certs), listen=[plain])
    assert rc == 1, out
    assert re.search(r"gatehouse\.conf:\d+: tls\.cert: ", out), out

    twice = vhosts(certs)
    twice[1]["names"] = ["imap.example.net", "MAIL.example.com"]
    rc, out = _check(gatehouse_bin, tmp_path, tls_group(certs), twice)
    assert rc == 1, out
    assert re.search(r"gatehouse\.conf:\d+: vhosts\.\[1\]\.names: .*mail\.example\.com", out), out

    rc, out = _check(gatehouse_bin, tmp_path, tls_group(certs, protocols=["TLSv1.1"]))
    assert rc == 1 and re.search(r"gatehouse\.conf:\d+: tls\.protocols", out), out


def test_encrypted_key_does_not_prompt(gatehouse_bin, tmp_path, certs):
    """A key with a passphrase is an error, not a prompt on the terminal (which
    would hang `gatehouse -t`, or a SIGHUP reload, until someone answers)."""
    import fcntl
    import select
    import termios
    key = str(tmp_path / "enc.key")
    _openssl("pkey", "-in", certs.default_key, "-aes256", "-passout", "pass:x", "-out", key)
    conf = tmp_path / "enc.conf"
    conf.write_text(to_libconfig({
        "error_log": str(tmp_path / "err.log"), "audit_log": str(tmp_path / "audit.log"),
        "tls": {"cert": certs.default_crt, "key": key},
        "listen": [{"address": "127.0.0.1:%d" % free_port(), "protocol": "imap", "tls": True}],
    }))
    master, slave = os.openpty()

    def controlling_tty():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    p = subprocess.Popen([str(gatehouse_bin), "-t", "-c", str(conf)], stdin=slave, stdout=slave,
                         stderr=slave, preexec_fn=controlling_tty)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 5
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(master, 4096)
                except OSError:          # EIO: the child has gone
                    break
                if not chunk:
                    break
                out += chunk
            elif p.poll() is not None:
                break
        try:
            rc = p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            rc = None
    finally:
        if p.poll() is None:
            p.kill()
        p.wait(5)
        os.close(master)
    text = out.decode("utf-8", "replace")
    assert rc is not None, "gatehouse -t waits on the terminal: %r" % text
    assert rc == 1 and "pass phrase" not in text.lower(), text
    assert "enc.key" in text, text


# ---------------------------------------------------------------- hostile and idle clients


def test_plaintext_on_imaps_port(tgh):
    with RawImap(tgh.imaps, timeout=5, read_greeting=False) as c:
        t0 = time.monotonic()
        c.send_ignoring_reset("a LOGIN %s %s\r\n" % ALICE)
        lines = c.read_until_closed(3)
        assert time.monotonic() - t0 < 2.0
        assert not any(l.startswith(b"* OK") or l.startswith(b"a ") for l in lines), lines
    wait_log(tgh, r"TLS handshake failed")
    m = imaps(tgh.imaps)
    assert m.login(*ALICE)[0] == "OK"
    m.logout()
    assert len(tgh.audit_lines()) == 1
    tgh.assert_no_secret(ALICE[1])


def test_garbage_after_handshake(tgh):
    """A valid handshake followed by bytes that are no TLS record ends the
    session; the others carry on."""
    keep = raw_tls(tgh.imaps)
    c = raw_tls(tgh.imaps)
    raw = c.sock                                   # ssl socket: write under it
    os.write(raw.fileno(), b"\x17\x03\x03\x00\x05hello")
    try:
        c.read_until_closed(3)
    except ssl.SSLError:
        pass
    c.close()
    assert keep.command("a", "NOOP")[-1] == b"a OK NOOP completed"
    keep.close()


def test_idle_tls_client_times_out(gatehouse, certs):
    t = start_tls_gh(gatehouse, certs, limits={"preauth_timeout": 1.0})
    # Handshake done, then nothing: the pre-login timeout.
    c = raw_tls(t.imaps)
    t0 = time.monotonic()
    assert c.greeting.startswith(b"* OK")
    lines = c.read_until_closed(4)
    took = time.monotonic() - t0
    assert lines and lines[0].startswith(b"* BYE"), lines
    assert 0.7 < took < 3.0, took
    c.close()
    # TCP only, no ClientHello: the handshake timeout.
    with RawImap(t.imaps, timeout=5, read_greeting=False) as r:
        t0 = time.monotonic()
        assert r.read_until_closed(4) == []
        took = time.monotonic() - t0
        assert 0.7 < took < 3.0, took
    # STARTTLS, then no handshake.
    with RawImap(t.required, timeout=5) as r:
        r.send("a STARTTLS\r\n")
        assert r.readline().startswith(b"a OK")
        t0 = time.monotonic()
        assert r.read_until_closed(4) == []
        took = time.monotonic() - t0
        assert 0.7 < took < 3.0, took
    m = imaps(t.imaps)
    m.logout()


@pytest.mark.parametrize("tail", ["close_notify", "garbage"])
@pytest.mark.parametrize("who", ["wrong password", "unknown user"])
def test_failed_login_with_tail_in_one_segment(tgh, who, tail):
    """A failed LOGIN and, in the same TCP segment, a close_notify (or bytes
    that are no TLS record): gatehouse answers NO, ends that session and
    keeps serving.  (Resuming reads after the failure handed the buffered
    record over at once, the session closed inside that call and
    imap_login_failed went on with its freed state: SIGSEGV.)"""
    login = ("%s wrong" % ALICE[0]) if who == "wrong password" else "nobody@example.com x"
    c = BioClient(tgh.imaps)
    try:
        assert c.readline().startswith(b"* OK")
        c.send_with_tail(b"a LOGIN %s\r\n" % login.encode(), tail)
        lines = c.lines_until_closed(5)
        assert lines and lines[0].startswith(b"a NO"), lines
    finally:
        c.close()
    time.sleep(0.1)
    assert tgh.proc.poll() is None, "gatehouse died:\n" + tgh.logs_text()[-3000:]
    m = imaps(tgh.imaps)
    assert m.login(*BOB)[0] == "OK"
    m.logout()
    tgh.assert_healthy()


def test_login_then_bad_record_in_one_segment(tmp_path, lookup, certs):
    """A successful LOGIN followed, in the same TCP segment, by bytes that are
    no TLS record: the relay starts, finds the bad record and must end just
    that session."""
    with private_tls_gh(tmp_path, lookup, certs) as t:
        c = BioClient(t.imaps)
        try:
            assert c.readline().startswith(b"* OK")
            c.send_with_tail(b"a LOGIN %s %s\r\n" % (ALICE[0].encode(), ALICE[1].encode()),
                             "garbage")
            lines = c.lines_until_closed(5)
            assert lines and lines[0].startswith(b"a OK"), lines
        finally:
            c.close()
        time.sleep(0.2)
        assert t.gh.proc.poll() is None, "gatehouse died:\n" + t.gh.logs_text()[-3000:]
        m = imaps(t.imaps)
        assert m.login(*BOB)[0] == "OK"
        m.logout()


def test_login_then_close_notify_in_one_segment(tgh):
    """LOGIN and close_notify together: the login completes, the close is a
    clean end of the client's side."""
    c = BioClient(tgh.imaps)
    try:
        assert c.readline().startswith(b"* OK")
        c.send_with_tail(b"a LOGIN %s %s\r\nb NOOP\r\n" % (ALICE[0].encode(), ALICE[1].encode()),
                         "close_notify")
        lines = c.lines_until_closed(5)
        assert any(l.startswith(b"a OK") for l in lines), lines
    finally:
        c.close()
    check_audit(tgh, login=ALICE[0], user=ALICE[0], result="ok")
    assert tgh.proc.poll() is None
    m = imaps(tgh.imaps)
    m.logout()


def test_sigterm_drains_tls_sessions(gatehouse, certs):
    """SIGTERM: a logged-in IMAPS session keeps working during the drain and
    ends cleanly; a connection still in its handshake is closed at the
    deadline; gatehouse exits 0."""
    t = start_tls_gh(gatehouse, certs, shutdown_timeout=1.5)
    m = imaps(t.imaps)
    assert m.login(*ALICE)[0] == "OK"
    stalled = RawImap(t.imaps, timeout=5, read_greeting=False)
    time.sleep(0.1)
    t0 = time.monotonic()
    t.signal(signal.SIGTERM)
    wait_log(t.gh, r"no longer accepting connections")
    assert m.noop()[0] == "OK"
    assert m.select("INBOX", readonly=True)[0] == "OK"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", t.imaps), timeout=1).close()
    assert stalled.read_until_closed(4) == []
    assert t.proc.wait(5) == 0
    assert time.monotonic() - t0 < 4.0
    stalled.close()
    try:
        m.shutdown()
    except OSError:
        pass


# ---------------------------------------------------------------- audit


def test_audit_tls_logins(tgh, stores):
    m = imaps(tgh.imaps)
    assert m.login(*ALICE)[0] == "OK"
    port1 = m.sock.getsockname()[1]
    m.logout()
    m = imaplib.IMAP4("127.0.0.1", tgh.required, timeout=10)
    m.starttls(ssl_context=client_ctx())
    with pytest.raises(imaplib.IMAP4.error):
        m.login(BOB[0], "wrong")
    port2 = m.sock.getsockname()[1]
    assert m.login(*BOB)[0] == "OK"
    m.logout()
    recs = tgh.wait_audit(3)
    check_audit(recs[0], login=ALICE[0], user=ALICE[0], result="ok", client_port=port1,
                backend="127.0.0.1:%d" % stores.a.imap_port, source="lookup")
    check_audit(recs[1], login=BOB[0], result="fail", client_port=port2)
    check_audit(recs[2], login=BOB[0], user=BOB[0], result="ok", client_port=port2,
                backend="127.0.0.1:%d" % stores.b.imap_port)
    tgh.assert_no_secret(ALICE[1], BOB[1])

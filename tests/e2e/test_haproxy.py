"""Gatehouse behind a load balancer speaking the PROXY protocol: raw v1/v2
headers from the test, bad and untrusted ones, then a real HAProxy in front of
two gatehouses."""

import os
import shutil
import socket
import ssl
import struct
import subprocess
import time

import pytest

from ghtest import ALICE, BOB, free_port

CLIENT = "192.0.2.55"
SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(vercmd, fam, body):
    return SIG + bytes([vercmd, fam]) + struct.pack(">H", len(body)) + body


def v2_tcp4(src, sport, dst, dport, tlvs=b""):
    return v2(0x21, 0x11, socket.inet_aton(src) + socket.inet_aton(dst)
              + struct.pack(">HH", sport, dport) + tlvs)


def v1_tcp4(src, sport, dst, dport):
    return ("PROXY TCP4 %s %s %d %d\r\n" % (src, dst, sport, dport)).encode()


class Conn:
    def __init__(self, port, src="127.0.0.1", timeout=5.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.bind((src, 0))
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.sock.recv(4096)
            if not d:
                raise EOFError("closed; got %r" % self.buf)
            self.buf += d
        l, _, self.buf = self.buf.partition(b"\r\n")
        return l

    def until_tagged(self, tag):
        lines = []
        while True:
            l = self.line()
            lines.append(l)
            if l.startswith(tag + b" "):
                return lines

    def closed_silently(self, within):
        """The server closes without sending a byte, within `within` seconds."""
        self.sock.settimeout(within)
        try:
            d = self.sock.recv(4096)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        assert d == b"", "server sent %r" % d
        return True

    def close(self):
        self.sock.close()


def proxied_gatehouse(gatehouse, **extra):
    port = free_port()
    settings = dict(
        listen=[{"address": "127.0.0.1:%d" % port, "protocol": "imap",
                 "proxy_protocol": True}],
        trusted_proxies=["127.0.0.1/32"],
        limits={"proxy_header_timeout": 1.0})
    settings.update(extra)
    return gatehouse(**settings)


def login(port, header, user=ALICE, src="127.0.0.1"):
    c = Conn(port, src=src)
    c.send(header)
    assert c.line().startswith(b"* OK")
    c.send(("a LOGIN %s %s\r\n" % user).encode())
    assert c.until_tagged(b"a")[-1].startswith(b"a OK")
    c.send(b"b LOGOUT\r\n")
    c.until_tagged(b"b")
    c.close()


def wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def pgh(gatehouse):
    return proxied_gatehouse(gatehouse)


@pytest.mark.parametrize("version", [1, 2])
def test_good_header_real_client_everywhere(pgh, stores, version):
    sport = 40000 + version
    hdr = (v1_tcp4 if version == 1 else v2_tcp4)(CLIENT, sport, "198.51.100.7", 143)
    login(pgh.port, hdr)
    rec = pgh.last_audit(client="%s:%d" % (CLIENT, sport))
    assert rec["client"] == "%s:%d" % (CLIENT, sport), rec["_raw"]
    assert rec["result"] == "ok"
    assert wait_for(lambda: any("Login: user=<%s>" % ALICE[0] in l and "rip=%s" % CLIENT in l
                                for l in stores.a.log_text().splitlines()))


def test_header_and_command_in_one_write(pgh):
    c = Conn(pgh.port)
    c.send(v2_tcp4(CLIENT, 1234, "198.51.100.7", 143) + b"a CAPABILITY\r\n")
    assert c.line().startswith(b"* OK")
    assert c.until_tagged(b"a")[-1].startswith(b"a OK")
    c.close()


@pytest.fixture
def cert(tmp_path):
    crt, key = str(tmp_path / "pp.crt"), str(tmp_path / "pp.key")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                        "-days", "2", "-subj", "/CN=pp.test"], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return {"cert": crt, "key": key}


def test_ssl_tlv_counts_as_tls(gatehouse, cert):
    """With STARTTLS required, a client that spoke TLS to the balancer (SSL
    TLV) may log in, and no STARTTLS is offered."""
    g = proxied_gatehouse(gatehouse, tls=cert)
    plain = Conn(g.port)
    plain.send(v2_tcp4(CLIENT, 1, "198.51.100.7", 143))
    greet = plain.line()
    assert b"STARTTLS" in greet and b"LOGINDISABLED" in greet, greet
    plain.close()
    c = Conn(g.port)
    c.send(v2_tcp4(CLIENT, 2, "198.51.100.7", 143, tlvs=b"\x20\x00\x05\x01\x00\x00\x00\x00"))
    greet = c.line()
    assert b"STARTTLS" not in greet and b"LOGINDISABLED" not in greet, greet
    c.send(("a LOGIN %s %s\r\n" % ALICE).encode())
    assert c.until_tagged(b"a")[-1].startswith(b"a OK")
    c.close()


def test_header_before_tls_client_hello(gatehouse, cert):
    """On an implicit-TLS listener the header comes first, then the handshake;
    header and ClientHello may share one segment."""
    port = free_port()
    g = gatehouse(listen=[{"address": "127.0.0.1:%d" % port, "protocol": "imap",
                           "tls": True, "proxy_protocol": True}],
                  trusted_proxies=["127.0.0.1/32"], tls=cert)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for together in (False, True):
        raw = socket.create_connection(("127.0.0.1", g.port), timeout=5)
        hdr = v1_tcp4(CLIENT, 4321, "198.51.100.7", 993)
        if together:
            # Hold the header back until the ClientHello is ready: one write.
            inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
            obj = ctx.wrap_bio(inb, outb)
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            raw.sendall(hdr + outb.read())
            while True:
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    if outb.pending:
                        raw.sendall(outb.read())
                    d = raw.recv(65536)
                    assert d, "closed during the handshake"
                    inb.write(d)
            if outb.pending:
                raw.sendall(outb.read())
            data = b""
            while b"\r\n" not in data:
                try:
                    data += obj.read(4096)
                except ssl.SSLWantReadError:
                    inb.write(raw.recv(65536))
            assert data.startswith(b"* OK"), data
            raw.close()
        else:
            raw.sendall(hdr)
            t = ctx.wrap_socket(raw)
            f = t.makefile("rb")
            assert f.readline().startswith(b"* OK")
            t.sendall(("a LOGIN %s %s\r\n" % ALICE).encode())
            while True:
                l = f.readline()
                assert l, "closed"
                if l.startswith(b"a "):
                    assert l.startswith(b"a OK"), l
                    break
            t.close()
    rec = g.last_audit(client="%s:4321" % CLIENT)
    assert rec["client"] == "%s:4321" % CLIENT, rec["_raw"]


def test_v2_local_health_check(pgh, lookup):
    c = Conn(pgh.port)
    c.send(v2(0x20, 0x00, b""))
    assert c.line().startswith(b"* OK")
    c.send(b"a LOGOUT\r\n")
    c.until_tagged(b"a")
    c.close()
    time.sleep(0.2)
    assert lookup.requests == []
    assert pgh.audit_lines() == []


def test_pop3_real_client_via_xclient(gatehouse, stores):
    port = free_port()
    g = gatehouse(listen=[{"address": "127.0.0.1:%d" % port, "protocol": "pop3",
                           "proxy_protocol": True}],
                  trusted_proxies=["127.0.0.1/32"], pop3={"client_ip_command": "xclient"})
    since = len(stores.a.log_text().splitlines())
    c = Conn(g.port)
    c.send(v1_tcp4(CLIENT, 45678, "198.51.100.7", 110))
    assert c.line().startswith(b"+OK")
    c.send(("USER %s\r\n" % ALICE[0]).encode())
    assert c.line().startswith(b"+OK")
    c.send(("PASS %s\r\n" % ALICE[1]).encode())
    assert c.line().startswith(b"+OK")
    c.send(b"QUIT\r\n")
    c.line()
    c.close()
    rec = g.last_audit(client="%s:45678" % CLIENT)
    assert rec["client"] == "%s:45678" % CLIENT, rec["_raw"]
    assert wait_for(lambda: any("pop3-login: Info: Login:" in l and "rip=%s" % CLIENT in l
                                and "rport=45678," in l
                                for l in stores.a.log_text().splitlines()[since:]))


BAD = {
    "oversized": SIG + b"\x21\x11\xff\xff" + b"\0" * 64,
    "bad_signature": b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c" + b"\0" * 12,
    "bad_family": v2(0x21, 0x41, b"\0" * 12),
    "tlv_overrun": v2_tcp4(CLIENT, 1, "198.51.100.7", 143, tlvs=b"\x04\x00\x09zz"),
    "bad_crc": v2_tcp4(CLIENT, 1, "198.51.100.7", 143, tlvs=b"\x03\x00\x04abcd"),
    "no_header": b"a LOGIN alice@example.com x\r\n",
    "v1_leading_zero": b"PROXY TCP4 192.0.2.055 198.51.100.7 1 143\r\n",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_header_closed(pgh, lookup, case):
    c = Conn(pgh.port)
    c.send(BAD[case])
    t0 = time.monotonic()
    assert c.closed_silently(0.8), "not closed promptly"
    assert time.monotonic() - t0 < 0.8
    c.close()
    assert "bad PROXY header" in pgh.error_log()
    login(pgh.port, v2_tcp4(CLIENT, 5, "198.51.100.7", 143))
    assert len(lookup.requests) == 1


def test_truncated_header_times_out(pgh):
    c = Conn(pgh.port)
    hdr = v2_tcp4(CLIENT, 1, "198.51.100.7", 143)
    c.send(hdr[:len(hdr) // 2])
    assert not c.closed_silently(0.5), "closed before the header timeout"
    assert c.closed_silently(2.0), "not closed after the header timeout"
    c.close()
    assert wait_for(lambda: "no complete PROXY header" in pgh.error_log())
    login(pgh.port, v1_tcp4(CLIENT, 6, "198.51.100.7", 143))


def test_untrusted_source_closed(pgh, lookup):
    c = Conn(pgh.port, src="127.0.0.2")
    t0 = time.monotonic()
    assert c.closed_silently(1.0)
    assert time.monotonic() - t0 < 0.5
    c.close()
    assert wait_for(lambda: "127.0.0.2" in pgh.error_log()
                    and "not in trusted_proxies" in pgh.error_log())
    login(pgh.port, v2_tcp4(CLIENT, 7, "198.51.100.7", 143))


# ---------------------------------------------------------------- real HAProxy

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)


@pytest.fixture
def haproxy(tmp_path):
    if HAPROXY is None:
        pytest.skip("haproxy not installed")
    procs = []

    def start(backends):
        port = free_port()
        lines = [
            "global",
            "  log stderr format raw local0 info",
            "defaults",
            "  mode tcp",
            "  timeout connect 2s",
            "  timeout client 35m",
            "  timeout server 35m",
            "frontend imap",
            "  bind 127.0.0.1:%d" % port,
            "  default_backend gatehouses",
            "backend gatehouses",
            "  balance roundrobin",
            "  option tcp-check",
            "  tcp-check expect string *\\ OK",
        ]
        for i, (gport, opt) in enumerate(backends):
            lines.append("  server gh%d 127.0.0.1:%d %s check inter 500ms" % (i, gport, opt))
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text("\n".join(lines) + "\n")
        p = subprocess.Popen([HAPROXY, "-f", str(cfg), "-db"], stdin=subprocess.DEVNULL,
                             stdout=open(tmp_path / "haproxy.out", "wb"),
                             stderr=subprocess.STDOUT)
        procs.append(p)
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if p.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("haproxy did not start:\n%s"
                                % (tmp_path / "haproxy.out").read_text())
                time.sleep(0.05)
        return port

    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def test_real_haproxy(gatehouse, haproxy, stores, lookup):
    g1 = proxied_gatehouse(gatehouse)
    g2 = proxied_gatehouse(gatehouse)
    port = haproxy([(g1.port, "send-proxy-v2"), (g2.port, "send-proxy")])
    time.sleep(1.2)     # a couple of health checks reach both
    assert lookup.requests == [], "health checks caused lookups"
    assert g1.audit_lines() == [] and g2.audit_lines() == []
    users = [ALICE, BOB, ALICE, BOB]
    for u in users:
        c = Conn(port, src="127.0.0.7")
        assert c.line().startswith(b"* OK")
        c.send(("a LOGIN %s %s\r\n" % u).encode())
        assert c.until_tagged(b"a")[-1].startswith(b"a OK")
        c.send(b"b SELECT INBOX\r\nc SEARCH SUBJECT \"marker store-\"\r\nd LOGOUT\r\n")
        c.until_tagged(b"d")
        c.close()
    assert wait_for(lambda: len(g1.audit_lines()) + len(g2.audit_lines()) >= len(users))
    time.sleep(0.6)     # more health checks: still no extra audit lines
    recs = g1.audit_records() + g2.audit_records()
    assert len(recs) == len(users)
    assert g1.audit_lines() and g2.audit_lines(), "roundrobin used one gatehouse only"
    for r in recs:
        assert r["client"].startswith("127.0.0.7:"), r["_raw"]
        assert r["result"] == "ok"
        want = stores.b if r["login"] == BOB[0] else stores.a
        assert r["backend"] == "127.0.0.1:%d" % want.imap_port, r["_raw"]
    for store, user in ((stores.a, ALICE[0]), (stores.b, BOB[0])):
        assert wait_for(lambda: any("Login: user=<%s>" % user in l and "rip=127.0.0.7" in l
                                    for l in store.log_text().splitlines()))
    # The route cache may answer repeat logins; every request carries the client.
    assert 1 <= len(lookup.requests) <= len(users)
    for r in lookup.requests:
        assert r["Client-IP"] == "127.0.0.7"

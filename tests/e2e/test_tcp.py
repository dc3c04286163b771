"""TCP listeners (protocol = "tcp"): Carbonio's XMPP 5222 and LDAPS 8636.

gatehouse accepts (terminating TLS with its certificates when the listener
says tls = true), connects to a server of the listener's upstream group
(TLS again when the group says so, a PROXY header first when
send_proxy_protocol says so), fails over to another server when a connect
fails, and relays bytes both ways. What a client and the upstream see is
asserted: the bytes, the PROXY header, the audit line."""

import socket
import ssl
import subprocess
import threading
import time

import pytest

from ghtest import ThreadedServer, free_port


class Echo(ThreadedServer):
    """Echoes every byte back; records what each connection sent first
    (its first `peek` bytes) so PROXY headers can be checked. With
    tls_ctx it speaks TLS."""

    def __init__(self, tls_ctx=None, peek=256):
        self.first = []
        self.tls_ctx = tls_ctx
        self.peek = peek
        self.lock = threading.Lock()
        ThreadedServer.__init__(self)

    def _serve(self, conn):
        conn.settimeout(10)
        try:
            if self.tls_ctx is not None:
                conn = self.tls_ctx.wrap_socket(conn, server_side=True)
            got = b""
            recorded = False
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                if not recorded:
                    got += data
                    if len(got) >= self.peek or b"\n" in got:
                        with self.lock:
                            self.first.append(got)
                        recorded = True
                conn.sendall(data)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()


V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def parse_proxy_header(data):
    """({version, src: (ip, port), dst: (ip, port)}, rest) of a PROXY v1/v2
    header over TCP4 at the start of data."""
    if data.startswith(b"PROXY "):
        line, _, rest = data.partition(b"\r\n")
        _, fam, src, dst, sp, dp = line.decode().split(" ")
        assert fam == "TCP4"
        return {"version": 1, "src": (src, int(sp)), "dst": (dst, int(dp))}, rest
    assert data.startswith(V2_SIG), data[:32]
    assert data[12] == 0x21 and data[13] == 0x11
    n = int.from_bytes(data[14:16], "big")
    a = data[16:16 + n]
    src = (socket.inet_ntoa(a[0:4]), int.from_bytes(a[8:10], "big"))
    dst = (socket.inet_ntoa(a[4:8]), int.from_bytes(a[10:12], "big"))
    return {"version": 2, "src": src, "dst": dst}, data[16 + n:]


def read_line_within(f, seconds):
    import select
    deadline = time.monotonic() + seconds
    got = b""
    while not got.endswith(b"\n") and time.monotonic() < deadline:
        r, _, _ = select.select([f], [], [], 0.2)
        if r:
            b = f.read1(4096) if hasattr(f, "read1") else f.read(1)
            if not b:
                break
            got += b
    return got


def dead_port():
    """A loopback port nothing listens on (connects are refused)."""
    return free_port()


def tcp_settings(upstream, listen, **over):
    s = {"upstreams": [upstream], "listen": listen}
    s.update(over)
    return s


def group(name, ports, **kw):
    g = {"name": name, "servers": ["127.0.0.1:%d" % p for p in ports], "balance": "round_robin"}
    g.update(kw)
    return g


def exchange(port, payload, tls=False, server_hostname="mail.example.com"):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s, server_hostname=server_hostname)
    try:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            data = s.recv(65536)
            if not data:
                break
            got += data
        return got
    finally:
        s.close()


@pytest.fixture
def echo():
    with Echo() as e:
        yield e


def test_plain_tcp_listener_relays_both_ways_and_audits(gatehouse, echo):
    port = free_port()
    gh = gatehouse(lookup=None, **tcp_settings(
        group("xmpp", [echo.port]),
        [{"address": "127.0.0.1:%d" % port, "protocol": "tcp", "upstream": "xmpp"}]))
    assert exchange(port, b"<stream:stream to='example.com'>\n") == \
        b"<stream:stream to='example.com'>\n"
    big = bytes(range(256)) * 8192  # 2 MiB, every byte value
    assert exchange(port, big) == big
    rec = gh.last_audit(result="ok")
    assert rec["proto"] == "tcp"
    assert rec["backend"] == "127.0.0.1:%d" % echo.port
    assert rec["source"] == "xmpp"


def test_client_bytes_sent_before_the_upstream_answers_arrive_first(gatehouse, echo):
    port = free_port()
    gatehouse(lookup=None, **tcp_settings(
        group("x", [echo.port]),
        [{"address": "127.0.0.1:%d" % port, "protocol": "tcp", "upstream": "x"}]))
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"first\n")
    s.sendall(b"second\n")
    got = b""
    while len(got) < 13:
        got += s.recv(100)
    s.close()
    assert got == b"first\nsecond\n"


def test_tls_listener_terminates_tls_with_s_client(gatehouse, echo, web_certs):
    port = free_port()
    gatehouse(lookup=None, tls={"cert": web_certs.crt, "key": web_certs.key}, **tcp_settings(
        group("ldap", [echo.port]),
        [{"address": "127.0.0.1:%d" % port, "protocol": "tcp", "tls": True,
          "upstream": "ldap"}]))
    p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                          "-servername", "mail.example.com", "-quiet"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        p.stdin.write(b"hello over tls\n")
        p.stdin.flush()
        line = read_line_within(p.stdout, 10)
    finally:
        p.kill()
        p.wait()
    assert line == b"hello over tls\n"
    # The upstream saw plaintext.
    deadline = time.monotonic() + 3
    while not echo.first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert echo.first and echo.first[0].startswith(b"hello over tls")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_send_proxy_protocol_names_the_client(gatehouse, echo, version):
    port = free_port()
    gatehouse(lookup=None, **tcp_settings(
        group("x", [echo.port]),
        [{"address": "127.0.0.1:%d" % port, "protocol": "tcp", "upstream": "x",
          "send_proxy_protocol": version}]))
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    client_port = s.getsockname()[1]
    s.sendall(b"payload\n")
    got = b""
    deadline = time.monotonic() + 10
    while b"payload\n" not in got and time.monotonic() < deadline:
        got += s.recv(1000)
    s.close()
    # The echo returns the header too: the upstream received it first.
    hdr, rest = parse_proxy_header(got)
    assert hdr["version"] == int(version[1])
    assert hdr["src"] == ("127.0.0.1", client_port)
    assert hdr["dst"] == ("127.0.0.1", port)
    assert rest == b"payload\n"


def test_upstream_tls_to_the_server(gatehouse, web_certs):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(web_certs.crt, web_certs.key)
    with Echo(tls_ctx=ctx) as e:
        port = free_port()
        gatehouse(lookup=None, **tcp_settings(
            group("x", [e.port], tls=True, verify=False, sni="mail.example.com"),
            [{"address": "127.0.0.1:%d" % port, "protocol": "tcp", "upstream": "x"}]))
        assert exchange(port, b"over tls to the upstream\n") == b"over tls to the upstream\n"


def test_a_refused_server_fails_over_and_is_then_left_alone(gatehouse, echo):
    dead = dead_port()
    port = free_port()
    gh = gatehouse(lookup=None, **tcp_settings(
        group("x", [dead, echo.port], max_fails=1, fail_timeout=30),
        [{"address": "127.0.0.1:%d" % port, "protocol": "tcp", "upstream": "x"}],
        workers=1))
    for k in range(6):
        assert exchange(port, b"ping %d\n" % k) == b"ping %d\n" % k
    # Every connection reached the live server; the dead one was tried once
    # (max_fails 1 marks it down for 30 s), not once per connection.
    recs = [r for r in gh.audit_records() if r.get("proto") == "tcp"]
    # (One more than ours: the fixture connects once to see it listening.)
    assert len(recs) >= 6 and all(r["result"] == "ok" for r in recs)
    assert all(r["backend"] == "127.0.0.1:%d" % echo.port for r in recs)
    tried_dead = gh.logs_text().count("127.0.0.1:%d failed" % dead)
    assert tried_dead == 1, gh.logs_text()[-3000:]


def test_all_servers_down_closes_promptly_with_a_tempfail(gatehouse):
    port = free_port()
    gh = gatehouse(lookup=None, **tcp_settings(
        group("x", [dead_port(), dead_port()]),
        [{"address": "127.0.0.1:%d" % port, "protocol": "tcp", "upstream": "x"}]))
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    t0 = time.monotonic()
    assert s.recv(100) == b""
    assert time.monotonic() - t0 < 3
    s.close()
    rec = gh.last_audit(result="tempfail")
    assert rec["proto"] == "tcp" and "no live upstream" in rec["reason"]


@pytest.mark.parametrize("listen,upstreams,message", [
    ({"protocol": "tcp"}, [group("x", [1])], "upstream: required for a tcp listener"),
    ({"protocol": "tcp", "upstream": "nope"}, [group("x", [1])], 'no upstream group called "nope"'),
    ({"protocol": "tcp", "upstream": "x"}, [group("x", [1], balance="route")],
     "needs ip_hash or round_robin"),
    ({"protocol": "imap", "upstream": "x"}, [group("x", [1])], "only for tcp listeners"),
    ({"protocol": "tcp", "upstream": "x", "send_proxy_protocol": "v3"}, [group("x", [1])],
     "must be one of off, v1, v2"),
])
def test_tcp_listener_configuration_errors(tmp_path, listen, upstreams, message):
    from ghtest import to_libconfig
    import os
    listen = dict(listen, address="127.0.0.1:%d" % free_port())
    conf = tmp_path / "g.conf"
    conf.write_text(to_libconfig({"upstreams": upstreams, "listen": [listen],
                                  "lookup": {"servers": ["http://127.0.0.1:1/x"]}}))
    binary = os.environ.get("GATEHOUSE_BIN", "build/gatehouse")
    r = subprocess.run([binary, "-t", "-c", str(conf)], capture_output=True, timeout=20)
    assert r.returncode != 0
    assert message in r.stderr.decode(), r.stderr.decode()

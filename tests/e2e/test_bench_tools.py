"""The benchmark's own tools, so `make bench` measures what it says.

gh-fastmail (the minimal IMAP/POP3/lookup/HTTP backend) is checked byte by
byte for what nginx and gatehouse send it (LOGIN with synchronising
literals, AUTHENTICATE with and without SASL-IR, the auth_http request),
and gh-loadgen against it: completed operations, bytes, the idle "ready"
line, errors counted when nothing listens, and its refusal to load anything
but loopback. Both binaries sit beside gatehouse (GATEHOUSE_BIN's folder).
"""
import json
import pathlib
import socket
import subprocess
import time

import pytest

from conftest import GATEHOUSE_BIN
from ghtest import free_port
from test_tls import certs, start_tls_gh, tls_group  # noqa: F401  (certs is a fixture)

BUILD = GATEHOUSE_BIN.parent
FASTMAIL = BUILD / "gh-fastmail"
LOADGEN = BUILD / "gh-loadgen"
MSG = 100_000


@pytest.fixture
def fastmail():
    if not FASTMAIL.exists() or not LOADGEN.exists():
        pytest.fail("gh-fastmail / gh-loadgen not built in %s" % BUILD)
    ports = {k: free_port() for k in ("imap", "pop3", "lookup", "http")}
    argv = [str(FASTMAIL), "--msg-size", str(MSG)]
    for k, p in ports.items():
        argv += ["--" + k, str(p)]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "fastmail ready"
        yield ports
    finally:
        p.terminate()
        p.wait(5)
    assert p.returncode == 0, p.stderr.read()


def talk(port, steps, timeout=5.0):
    """Send each chunk, then read until the expected bytes arrive."""
    s = socket.create_connection(("127.0.0.1", port), timeout)
    got = b""
    try:
        for send, expect in steps:
            if send:
                s.sendall(send)
            while expect not in got:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            assert expect in got, "no %r in %r" % (expect, got[-300:])
    finally:
        s.close()
    return got


def loadgen(*args, timeout=30):
    out = subprocess.run([str(LOADGEN), *map(str, args)], capture_output=True, text=True,
                         timeout=timeout)
    lines = [l for l in out.stdout.splitlines() if l.startswith('{"scenario"')]
    return out, (json.loads(lines[-1]) if lines else None)


def test_fastmail_imap_login_with_literals(fastmail):
    # What nginx sends: LOGIN {n} / + / user {n} / + / password.
    got = talk(fastmail["imap"], [
        (None, b"* OK "),
        (b"a1 LOGIN {4}\r\n", b"+ OK\r\n"),
        (b"user {6}\r\n", b"+ OK\r\n+ OK\r\n"),
        (b"secret\r\n", b"a1 OK"),
        (b"a2 AUTHENTICATE PLAIN\r\n", b"+ \r\n"),
        (b"AHVzZXIAc2VjcmV0\r\n", b"a2 OK"),
        (b"a3 AUTHENTICATE PLAIN AHVzZXIAc2VjcmV0\r\n", b"a3 OK"),
        (b"a4 ID (\"x\" \"y\")\r\na5 SELECT INBOX\r\n", b"a5 OK"),
        (b"a6 FETCH 1 BODY[]\r\n", b"a6 OK Fetch completed\r\n"),
        (b"a7 IDLE\r\n", b"+ idling\r\n"),
        (b"DONE\r\na8 LOGOUT\r\n", b"a8 OK"),
    ])
    head = b"* 1 FETCH (BODY[] {%d}\r\n" % MSG
    i = got.index(head) + len(head)
    assert got[i + MSG:i + MSG + 3] == b")\r\n"
    assert b"* ID NIL\r\na4 OK" in got


def test_fastmail_pop3_and_lookup(fastmail):
    got = talk(fastmail["pop3"], [
        (None, b"+OK"),
        (b"XOIP 127.0.0.9\r\nUSER u\r\nPASS p\r\nSTAT\r\n", b"+OK 1 %d\r\n" % MSG),
        (b"RETR 1\r\n", b"\r\n.\r\n"),
        (b"QUIT\r\n", b"+OK Bye"),
    ])
    assert got.count(b"+OK") >= 6
    for proto, port in (("imap", fastmail["imap"]), ("pop3", fastmail["pop3"])):
        ans = talk(fastmail["lookup"], [(
            b"GET /auth HTTP/1.0\r\nHost: x\r\nAuth-Method: plain\r\nAuth-User: u\r\n"
            b"Auth-Pass: p\r\nAuth-Protocol: " + proto.encode() + b"\r\n\r\n",
            b"\r\n\r\n")])
        assert ans.startswith(b"HTTP/1.0 200 OK\r\n")
        assert b"Auth-Status: OK\r\n" in ans and b"Auth-Server: 127.0.0.1\r\n" in ans
        assert b"Auth-Port: %d\r\n" % port in ans
    two = talk(fastmail["http"], [(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
                                   b"hello, world\nHTTP/1.1 200 OK")])
    assert two.count(b"HTTP/1.1 200 OK\r\n") >= 2
    # /api/ paths: the proxied-API row's small JSON answer, on the same keep-alive connection.
    api = talk(fastmail["http"], [(b"GET /api/v1/status?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                                   b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n",
                                   b"hello, world\n")])
    head, _, rest = api.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in head
    body = rest[:int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])]
    assert json.loads(body) == {"ok": True, "user": "bench@example.com", "unread": 3,
                                "quota": [1024, 4096]}


@pytest.mark.parametrize("scen,port,unit", [("imap-login", "imap", None),
                                            ("pop3-login", "pop3", None),
                                            ("imap-fetch", "imap", MSG),
                                            ("pop3-retr", "pop3", MSG)])
def test_loadgen_scenarios(fastmail, scen, port, unit):
    t0 = time.time()
    out, res = loadgen(scen, "--port", fastmail[port], "-c", 4, "-d", 1)
    assert out.returncode == 0 and res, out.stderr
    assert time.time() - t0 < 5
    assert res["scenario"] == scen and res["clients"] == 4
    assert res["ops"] > 10 and res["errors"] == 0, res
    assert 0 < res["p50_ms"] <= res["p99_ms"] <= res["max_ms"] + 0.01
    if unit:
        assert res["bytes"] >= res["ops"] * unit
        assert res["mb_per_s"] > 0


def test_loadgen_idle_ready_line(fastmail):
    p = subprocess.Popen([str(LOADGEN), "imap-idle", "--port", str(fastmail["imap"]), "-c", "50",
                          "-d", "10", "--hold", "10"], stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(p.stdout.readline()) == {"ready": 50}
        p.terminate()  # ends the hold early, cleanly
        out, _ = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
    res = json.loads(out.strip().splitlines()[-1])
    assert p.returncode == 0
    assert res["ready"] == 50 and res["errors"] == 0


def test_loadgen_counts_errors_and_stops(fastmail):
    dead = free_port()
    t0 = time.time()
    out, res = loadgen("imap-login", "--port", dead, "-c", 3, "-d", 1, "--timeout", 1)
    assert time.time() - t0 < 5
    assert res["ops"] == 0 and res["errors"] > 0 and res["error_kinds"]["connect"] == res["errors"]
    # A backend that answers nonsense is a protocol error, not a hang.
    out, res = loadgen("pop3-login", "--port", fastmail["imap"], "-c", 2, "-d", 1)
    assert res["ops"] == 0 and res["error_kinds"]["protocol"] > 0


def test_loadgen_refuses_non_loopback_and_bad_bounds():
    for args in (["--host", "10.0.0.1"], ["-c", "5000"], ["-d", "600"], ["--resume"]):
        out, res = loadgen("imap-login", "--port", 143, *args, timeout=5)
        assert out.returncode == 2 and res is None, out.stdout


def test_loadgen_tls_full_handshakes_or_resumed(fastmail, gatehouse, certs):
    """Through gatehouse's IMAPS listener: without --resume every login is a
    full handshake; with it, each client's every connection after its first
    resumes with the ticket it was sent (both proxies send tickets)."""
    t = start_tls_gh(gatehouse, certs, lookup=None, routes=[
        {"match": "@example.com", "server": "127.0.0.1:%d" % fastmail["imap"]}])
    out, full = loadgen("imap-login", "--port", t.imaps, "-c", 2, "-d", 1, "--tls",
                        "--sni", "mail.example.com")
    assert out.returncode == 0 and full, out.stderr
    assert full["ops"] > 5 and full["errors"] == 0, full
    assert full["resumed"] == 0 and full["handshakes"] >= full["ops"], full
    out, res = loadgen("imap-login", "--port", t.imaps, "-c", 2, "-d", 1, "--tls",
                       "--sni", "mail.example.com", "--resume")
    assert out.returncode == 0 and res, out.stderr
    assert res["ops"] > 5 and res["errors"] == 0, res
    assert res["handshakes"] - 2 <= res["resumed"] < res["handshakes"], res


def test_tls13_tickets_renewed_on_resumption_with_key_files(fastmail, gatehouse, certs):
    """With ticket key files (several gatehouses behind one balancer), a
    resumed TLS 1.3 connection gets a fresh ticket: clients use a ticket
    once, so without it every other reconnection was a full handshake."""
    t = start_tls_gh(gatehouse, certs, tls=tls_group(certs, ticket_keys=[certs.ticket1]),
                     lookup=None, routes=[
                         {"match": "@example.com", "server": "127.0.0.1:%d" % fastmail["imap"]}])
    out, res = loadgen("imap-login", "--port", t.imaps, "-c", 2, "-d", 1, "--tls",
                       "--sni", "mail.example.com", "--resume")
    assert out.returncode == 0 and res, out.stderr
    assert res["ops"] > 5 and res["errors"] == 0, res
    assert res["handshakes"] - 2 <= res["resumed"] < res["handshakes"], res


def test_bench_web_rows(tmp_path):
    """bench.py --rows web runs only the web rows, against nginx configured
    the same way: every row measured on nginx without errors (its static
    answers carry ETag and Last-Modified, checked before the run), and on
    gatehouse either measured without errors or skipped with the reason
    (a binary whose root locations do not serve files yet). Nothing here
    compares speeds."""
    import shutil
    import sys
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            pytest.skip("%s is not installed (scripts/deps.sh bench)" % tool)
    if not pathlib.Path("/usr/lib/nginx/modules/ngx_mail_module.so").exists():
        pytest.skip("libnginx-mod-mail is not installed (scripts/deps.sh bench)")
    out = tmp_path / "web.json"
    root = pathlib.Path(__file__).resolve().parents[2]
    p = subprocess.run(["/usr/bin/python3", str(root / "bench" / "bench.py"), "--rows", "web",
                        "--rounds", "1", "--secs", "1", "--http-clients", "4",
                        "--build", str(BUILD), "--json", str(out)],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    recs = [json.loads(l) for l in out.read_text().splitlines()]
    assert {r["scenario"] for r in recs} == {"web-api", "web-static-4k", "web-static-64k",
                                             "web-h2"}
    for scen in ("web-api", "web-static-4k", "web-static-64k"):
        ng = [r for r in recs if r["scenario"] == scen and r["target"] == "nginx"]
        assert len(ng) == 1 and "skipped" not in ng[0], ng
        assert ng[0]["errors"] == 0 and ng[0]["requests"] > 0
        assert ng[0]["p50_ms"] is not None and ng[0]["p99_ms"] is not None
        gh = [r for r in recs if r["scenario"] == scen and r["target"] == "gatehouse"]
        assert len(gh) == 1, gh
        if "skipped" in gh[0]:
            assert scen != "web-api", gh  # the proxied API works on every branch
            assert "static files are not served" in gh[0]["skipped"]
        else:
            assert gh[0]["errors"] == 0 and gh[0]["requests"] > 0
    # HTTP/2 (h2load, many streams per connection) on both proxies.
    if shutil.which("h2load") is not None:
        for t in ("nginx", "gatehouse"):
            h2 = [r for r in recs if r["scenario"] == "web-h2" and r["target"] == t]
            assert len(h2) == 1 and "skipped" not in h2[0], h2
            assert h2[0]["errors"] == 0 and h2[0]["requests"] > 0, h2
    assert "Web cost per proxy" in p.stdout
    assert "Login cost per proxy" not in p.stdout  # --rows web ran no login storm

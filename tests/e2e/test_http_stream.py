"""The HTTP proxy's streams (issue 6): 50 MiB uploads and downloads
byte-exact through HTTPS, chunked bodies both ways, a WebSocket echo through
gatehouse over TLS, and wrk driving keep-alive HTTPS traffic."""

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import time

from conftest import ZIMBRA_IDS, mint_zm_auth_token
from ghtest import BOB
from httpstore import (HttpClient, payload_iter, payload_sha256, ws_accept, ws_frame,
                       ws_read_frame)

HOST = "mail.example.com"
MIB = 1 << 20


def curl(gh, path, *args, timeout=50):
    """curl over HTTPS to gatehouse with SNI/Host mail.example.com."""
    r = subprocess.run(["curl", "-sS", "-k", "--max-time", str(timeout - 5),
                        "--resolve", "%s:%d:127.0.0.1" % (HOST, gh.https_port),
                        *args, "https://%s:%d%s" % (HOST, gh.https_port, path)],
                       capture_output=True, timeout=timeout)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r


def write_payload(path, n):
    with open(path, "wb") as f:
        for p in payload_iter(n):
            f.write(p)
    return path


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def bob_cookie():
    return "ZM_AUTH_TOKEN=" + mint_zm_auth_token(ZIMBRA_IDS[BOB[0]])


# ---------------------------------------------------------------- bodies

def test_upload_50mib_byte_exact(http_gh, web, tmp_path):
    gh = http_gh()
    n = 50 * MIB
    f = write_payload(tmp_path / "up.bin", n)
    r = curl(gh, "/upload", "--data-binary", "@%s" % f,
             "-H", "Content-Type: application/octet-stream", "-H", "Expect:",
             "-b", bob_cookie())
    e = json.loads(r.stdout)
    assert e == {"backend": "store-b", "length": n, "sha256": payload_sha256(n)}


def test_download_50mib_byte_exact(http_gh, web, tmp_path):
    gh = http_gh()
    n = 50 * MIB
    out = tmp_path / "down.bin"
    r = curl(gh, "/download?size=%d" % n, "-o", str(out), "-D", "-",
             "-w", "\\n%{http_code} %{size_download}")
    text = r.stdout.decode("latin-1")
    assert text.rstrip().endswith("200 %d" % n), text[-300:]
    assert re.search(r"(?im)^x-backend: web-[12]\r?$", text), text
    assert os.path.getsize(out) == n
    assert sha256_file(out) == payload_sha256(n)


def test_chunked_upload(http_gh, web, tmp_path):
    gh = http_gh()
    n = 8 * MIB + 12345
    f = write_payload(tmp_path / "up.bin", n)
    r = curl(gh, "/upload", "--data-binary", "@%s" % f, "-H", "Transfer-Encoding: chunked",
             "-H", "Expect:")
    e = json.loads(r.stdout)
    assert (e["length"], e["sha256"]) == (n, payload_sha256(n))


def test_chunked_upload_raw_with_extensions_and_trailers(http_gh, web):
    """Small chunks, a chunk extension and a trailer, then a second request
    on the same connection (the body's end was found exactly)."""
    gh = http_gh()
    data = b"".join(payload_iter(100000))
    body = b""
    pos, size = 0, 1
    while pos < len(data):
        part = data[pos:pos + size]
        body += b"%x;ext=1\r\n" % len(part) + part + b"\r\n"
        pos += len(part)
        size = size * 3 + 1
    body += b"0\r\nX-Trailer: t\r\n\r\n"
    with HttpClient(gh.https_port) as c:
        c.send(HttpClient.build("POST", "/upload", headers=[("Transfer-Encoding", "chunked")])
               + body)
        r = c.read_response()
        assert r.status == 200, r
        assert (r.json()["length"], r.json()["sha256"]) == (
            len(data), hashlib.sha256(data).hexdigest())
        r = c.request(path="/echo?after-chunked=1")
        assert (r.status, r.json()["path"]) == (200, "/echo?after-chunked=1")


def test_chunked_download(http_gh, web, tmp_path):
    gh = http_gh()
    n = 20 * MIB + 7
    # Raw: the response stays chunked (nothing buffered to learn a length)
    # and the connection is reusable afterwards.
    with HttpClient(gh.https_port, timeout=30) as c:
        r = c.request(path="/chunked?size=%d" % 3_000_001)
        assert r.status == 200, r
        assert "chunked" in (r.header("Transfer-Encoding") or "").lower()
        assert r.header("Content-Length") is None
        assert hashlib.sha256(r.body).hexdigest() == payload_sha256(3_000_001)
        r = c.request(path="/echo?after=1")
        assert r.json()["path"] == "/echo?after=1"
    out = tmp_path / "chunked.bin"
    curl(gh, "/chunked?size=%d" % n, "-o", str(out))
    assert os.path.getsize(out) == n
    assert sha256_file(out) == payload_sha256(n)


def test_upload_and_download_on_one_keepalive_connection(http_gh, web):
    gh = http_gh()
    body = b"".join(payload_iter(3 * MIB))
    with HttpClient(gh.https_port, timeout=30) as c:
        for i in range(2):
            r = c.request("POST", "/upload?i=%d" % i, body=body)
            assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()
            r = c.request(path="/download?size=%d" % (2 * MIB))
            assert hashlib.sha256(r.body).hexdigest() == payload_sha256(2 * MIB)


def test_head_request_has_no_body(http_gh, web):
    gh = http_gh()
    with HttpClient(gh.https_port) as c:
        r = c.request("HEAD", "/download?size=1000")
        assert r.status == 200 and r.header("Content-Length") == "1000" and r.body == b""
        r = c.request(path="/echo?after-head=1")
        assert r.json()["path"] == "/echo?after-head=1"


# ---------------------------------------------------------------- WebSocket

def test_websocket_echo_over_tls(http_gh, web):
    gh = http_gh()
    key = base64.b64encode(os.urandom(16)).decode()
    with HttpClient(gh.https_port) as c:
        r = c.request(path="/echo?before-ws=1")
        assert r.status == 200
        r = c.request(path="/ws", headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                           ("Sec-WebSocket-Key", key),
                                           ("Sec-WebSocket-Version", "13"),
                                           ("Cookie", bob_cookie())])
        assert r.status == 101, r
        assert r.backend == "store-b"
        assert r.header("Upgrade").lower() == "websocket"
        assert "upgrade" in r.header("Connection").lower()
        assert r.header("Sec-WebSocket-Accept") == ws_accept(key)
        c.send(ws_frame(1, b"hello through gatehouse", mask=os.urandom(4)))
        assert ws_read_frame(c.rd, expect_masked=False) == (1, b"hello through gatehouse")
        big = os.urandom(300000)
        c.send(ws_frame(2, big, mask=os.urandom(4)))
        assert ws_read_frame(c.rd, expect_masked=False) == (2, big)
        c.send(ws_frame(9, b"ping!", mask=os.urandom(4)))
        assert ws_read_frame(c.rd, expect_masked=False) == (10, b"ping!")
        # Many small frames in one write.
        c.send(b"".join(ws_frame(1, b"m%d" % i, mask=os.urandom(4)) for i in range(50)))
        for i in range(50):
            assert ws_read_frame(c.rd, expect_masked=False) == (1, b"m%d" % i)
        c.send(ws_frame(8, b"\x03\xe8", mask=os.urandom(4)))
        assert ws_read_frame(c.rd, expect_masked=False) == (8, b"\x03\xe8")
        assert c.is_closed(5.0)
    assert web.b.ws_sessions == 1


def test_websocket_refused_by_backend_stays_http(http_gh, web):
    """A backend that answers an Upgrade with 200 keeps the connection in HTTP."""
    gh = http_gh()
    with HttpClient(gh.https_port) as c:
        r = c.request(path="/echo?ws=no", headers=[
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", base64.b64encode(os.urandom(16)).decode()),
            ("Sec-WebSocket-Version", "13")])
        assert r.status == 200, r
        r = c.request(path="/echo?then=1")
        assert (r.status, r.json()["path"]) == (200, "/echo?then=1")


# ---------------------------------------------------------------- wrk

def parse_wrk(text):
    m = re.search(r"(\d+) requests in", text)
    requests = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    non2xx = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = sum(int(x) for x in m.groups()) if m else 0
    return requests, non2xx, errors


def test_wrk_https_keepalive_without_errors(http_gh, web):
    # wrk is a test dependency (scripts/deps.sh test): missing, this fails.
    assert shutil.which("wrk"), "wrk not installed: run scripts/deps.sh test"
    gh = http_gh()
    r = subprocess.run(["wrk", "-t1", "-c8", "-d3s", "--timeout", "5s",
                        "-H", "Host: " + HOST,
                        "https://127.0.0.1:%d/echo" % gh.https_port],
                       capture_output=True, timeout=30)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    print(out)
    requests, non2xx, errors = parse_wrk(out)
    assert requests > 100, out
    assert non2xx == 0, out
    assert errors == 0, out
    # Keep-alive both ways: far fewer backend connections than requests.
    conns = web.web1.connections + web.web2.connections
    assert 0 < conns <= 16, "%d backend connections for %d requests" % (conns, requests)


def test_expect_100_continue_is_relayed(http_gh, web):
    """The backend's interim 100 Continue reaches the client before the body
    is sent, then the final answer; the connection stays usable."""
    gh = http_gh()
    body = b"".join(payload_iter(200000))
    with HttpClient(gh.https_port) as c:
        c.send(HttpClient.build("POST", "/upload", headers=[
            ("Content-Length", str(len(body))), ("Expect", "100-continue")]))
        r = c.read_response()
        assert r.status == 100, r
        c.send(body)
        r = c.read_response()
        assert r.status == 200, r
        assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()
        assert c.request(path="/echo?after=1").json()["path"] == "/echo?after=1"


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _is_asan(path):
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


def test_bodies_are_streamed_with_backpressure(http_gh, web):
    """A client that stops reading a 50 MiB download, and a backend that
    stops reading a 50 MiB upload: gatehouse holds back the sender instead of
    buffering the body (its RSS grows by far less than the body)."""
    import threading
    from conftest import GATEHOUSE_BIN
    gh = http_gh()
    check_rss = not _is_asan(GATEHOUSE_BIN)   # ASan's quarantine keeps freed memory
    n = 50 * MIB
    with HttpClient(gh.https_port, timeout=30) as c:
        c.send(HttpClient.build(path="/download?size=%d" % n))
        first = c.rd.head()
        assert b" 200 " in first.split(b"\r\n")[0]
        base = _rss_kib(gh.proc.pid)
        time.sleep(2.0)                        # not reading: the proxy must stop reading too
        grown = _rss_kib(gh.proc.pid) - base
        print("download: RSS +%d KiB while the client was not reading" % grown)
        h = hashlib.sha256()
        for piece in c.rd.pieces(n):
            h.update(piece)
        assert h.hexdigest() == payload_sha256(n)
    if check_rss:
        assert grown < 16 * 1024, "RSS grew by %d KiB while the client was not reading" % grown

    body_sent = [0]
    with HttpClient(gh.https_port, timeout=30) as c:
        c.send(HttpClient.build("POST", "/upload?delay=2", headers=[
            ("Content-Length", str(n))]))

        def sender():
            for p in payload_iter(n):
                c.sock.sendall(p)
                body_sent[0] += len(p)
        t = threading.Thread(target=sender, daemon=True)
        base = _rss_kib(gh.proc.pid)
        t.start()
        time.sleep(1.5)                        # the backend reads nothing for 2 s
        held = body_sent[0]
        grown = _rss_kib(gh.proc.pid) - base
        print("upload: %d bytes accepted, RSS +%d KiB while the backend was not reading"
              % (held, grown))
        r = c.read_response()
        t.join(20)
        assert r.json() == {"backend": r.backend, "length": n, "sha256": payload_sha256(n)}
    assert held < 24 * MIB, "%d bytes accepted while the backend read nothing" % held
    if check_rss:
        assert grown < 16 * 1024, "RSS grew by %d KiB while the backend was not reading" % grown


def test_small_exchanges_have_no_nagle_delay(http_gh, web):
    """Sequential small requests on a warm keep-alive connection: the
    median round trip stays far below the 40 ms of a Nagle / delayed-ACK
    stall (the backend writes head and body separately)."""
    gh = http_gh()
    times = []
    with HttpClient(gh.https_port) as c:
        c.request(path="/echo?warm=1")
        for i in range(30):
            t0 = time.perf_counter()
            r = c.request("POST", "/upload?i=%d" % i, body=b"x" * 100)
            times.append(time.perf_counter() - t0)
            assert r.status == 200
    times.sort()
    assert times[len(times) // 2] < 0.015, ["%.1f ms" % (t * 1000) for t in times]


def test_chunked_download_with_trailers(http_gh, web):
    gh = http_gh()
    with HttpClient(gh.https_port, timeout=20) as c:
        for i in range(2):
            r = c.request(path="/chunked?size=%d&trailer=1&i=%d" % (1_000_003, i))
            assert r.status == 200, r
            assert hashlib.sha256(r.body).hexdigest() == payload_sha256(1_000_003)
        r = c.request(path="/echo?after-trailers=1")
        assert (r.status, r.json()["path"]) == (200, "/echo?after-trailers=1")


def test_http10_client_never_gets_chunked(http_gh, web):
    """RFC 9112 7: chunked must not be sent to an HTTP/1.0 client; a
    chunked backend answer reaches it delimited by the close."""
    gh = http_gh()
    n = 1_500_001
    with HttpClient(gh.https_port, timeout=20) as c:
        r = c.request(path="/chunked?size=%d" % n, version="HTTP/1.0")
        assert r.status == 200, r
        assert "chunked" not in (r.header("Transfer-Encoding") or "").lower(), r.headers
        assert hashlib.sha256(r.body).hexdigest() == payload_sha256(n)

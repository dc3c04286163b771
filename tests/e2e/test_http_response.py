"""What gatehouse changes in HTTP responses (issue 18 item 5): headers the
operator adds (http.add_headers, a location's add_headers) on proxied and
local answers, the https fix-up of a backend's Location on TLS listeners,
strict server names, the operator's error pages, compression.

The backends (httpstore.HttpBackend) add any `?hdr=Name:Value` to their
answer, so a test can make them send HSTS or a Location."""

import urllib.parse

from httpstore import HttpClient, header, header_all

HOST = "mail.example.com"
HSTS = "Strict-Transport-Security"


def https(gh, **kw):
    return HttpClient(gh.https_port, tls=True, **kw)


def plain(gh, **kw):
    return HttpClient(gh.plain_port, tls=False, **kw)


def q(*hdrs):
    return "&".join("hdr=" + urllib.parse.quote(h) for h in hdrs)


def located(web, **loc):
    """Overrides with one location "/" (its options loc) to a group of web-1."""
    return {"upstreams": [{"name": "web", "servers": [web.web1.address]}],
            "locations": [dict({"match": "/", "upstream": "web"}, **loc)]}


# ---------------------------------------------------------------- added headers

def test_added_headers_replace_the_backends_and_never_double(http_gh, web):
    gh = http_gh(http={"add_headers": ["%s: max-age=31536000" % HSTS,
                                       "X-Content-Type-Options: nosniff"]},
                 **located(web, add_headers=["X-Frame-Options: DENY",
                                             "X-Content-Type-Options: nosniff-loc"]))
    c = https(gh)
    r = c.request(path="/echo?" + q("%s: max-age=5" % HSTS, "X-Frame-Options: ALLOW",
                                    "Set-Cookie: a=b"))
    assert r.status == 200
    assert header_all(r.headers, HSTS) == ["max-age=31536000"]
    assert header_all(r.headers, "X-Frame-Options") == ["DENY"]
    assert header_all(r.headers, "X-Content-Type-Options") == ["nosniff-loc"]
    assert header_all(r.headers, "Set-Cookie") == ["a=b"]
    # The next request on the connection, with nothing from the backend.
    r = c.request(path="/echo")
    assert header_all(r.headers, HSTS) == ["max-age=31536000"]


def test_vhost_headers_between_global_and_location(http_gh, web, web_certs):
    """A vhost's add_headers go on its Host's responses, replacing the
    global ones of the same name; a location's replace the vhost's."""
    vhosts = [{"names": ["webmail.example.net"], "cert": web_certs.crt, "key": web_certs.key,
               "add_headers": ["Content-Security-Policy: default-src 'self'",
                               "X-Frame-Options: SAMEORIGIN", "X-Vh: vh"]}]
    gh = http_gh(http={"add_headers": ["X-Frame-Options: DENY", "%s: max-age=1" % HSTS]},
                 vhosts=vhosts, **located(web, add_headers=["X-Vh: loc"]))
    c = https(gh)
    r = c.request(path="/echo", host="webmail.example.net:%d" % gh.https_port)
    assert header_all(r.headers, "Content-Security-Policy") == ["default-src 'self'"]
    assert header_all(r.headers, "X-Frame-Options") == ["SAMEORIGIN"]
    assert header_all(r.headers, "X-Vh") == ["loc"]
    assert header_all(r.headers, HSTS) == ["max-age=1"]
    r = c.request(path="/echo", host=HOST)
    assert header(r.headers, "Content-Security-Policy") is None
    assert header_all(r.headers, "X-Frame-Options") == ["DENY"]


def test_added_headers_on_static_files(http_gh, web, tmp_path):
    """A file a `root` location serves gets the global, vhost and location
    headers like any answer (HSTS on the web client's own files)."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "app.js").write_bytes(b"var a = 1;\n")
    gh = http_gh(http={"add_headers": ["%s: max-age=31536000" % HSTS,
                                       "X-Frame-Options: DENY"]},
                 locations=[{"match": "^~ /static/", "root": str(root),
                             "rewrite_prefix": "/", "add_headers": ["X-Frame-Options: SAMEORIGIN"]},
                            {"match": "/", "upstream": "web"}],
                 upstreams=[{"name": "web", "servers": [web.web1.address]}])
    c = https(gh)
    for _ in range(2):  # looked up, then from the open-file cache
        r = c.request(path="/static/app.js")
        assert (r.status, r.body) == (200, b"var a = 1;\n")
        assert header_all(r.headers, HSTS) == ["max-age=31536000"]
        assert header_all(r.headers, "X-Frame-Options") == ["SAMEORIGIN"]


def test_added_headers_on_local_answers(http_gh, web):
    gh = http_gh(http={"add_headers": ["%s: max-age=31536000" % HSTS]},
                 **located(web, add_headers=["X-Frame-Options: DENY"]))
    web.web1.stop()
    web.web2.stop()
    r = https(gh).request(path="/echo")
    assert r.status == 502
    assert header_all(r.headers, HSTS) == ["max-age=31536000"]
    assert header_all(r.headers, "X-Frame-Options") == ["DENY"]
    # The port-80 redirect: no location, the global ones.
    r = plain(gh).request(path="/x")
    assert r.status == 301
    assert header_all(r.headers, HSTS) == ["max-age=31536000"]
    assert header(r.headers, "X-Frame-Options") is None


def test_add_headers_configuration_errors(http_gh, web, gatehouse_bin, tmp_path):
    import subprocess
    from ghtest import to_libconfig
    for bad, msg in [(["Content-Length: 5"], "Content-Length is written by gatehouse itself"),
                     (["X-A: 1", "x-a: 2"], "names a header twice"),
                     (["No colon"], "must be \"Name: value\"")]:
        conf = tmp_path / "bad.conf"
        conf.write_text(to_libconfig({"http": {"backends": ["127.0.0.1:1"], "add_headers": bad}}))
        r = subprocess.run([gatehouse_bin, "-t", "-c", str(conf)], capture_output=True, timeout=10)
        assert r.returncode != 0
        assert msg in r.stderr.decode(), r.stderr


# ---------------------------------------------------------------- Location fix-up

def test_backend_location_becomes_https_on_tls_listeners(http_gh, web):
    gh = http_gh(mode="both")
    c = https(gh)
    r = c.request(path="/status?code=302&" + q("Location: http://%s:8080/zimbra/?a=1" % HOST))
    assert r.status == 302
    assert header(r.headers, "Location") == "https://%s/zimbra/?a=1" % HOST
    # The Host as the client sent it, port included.
    r = c.request(path="/status?code=302&" + q("Location: http://%s/x" % HOST,
                                                "Refresh: 0; url=http://%s/y" % HOST),
                  host=HOST + ":%d" % gh.https_port)
    assert header(r.headers, "Location") == "https://%s:%d/x" % (HOST, gh.https_port)
    assert header(r.headers, "Refresh") == "0; url=https://%s:%d/y" % (HOST, gh.https_port)
    # Another host is left alone.
    r = c.request(path="/status?code=302&" + q("Location: http://other.example.org/x"))
    assert header(r.headers, "Location") == "http://other.example.org/x"
    # Plain listeners: as the backend sent it.
    r = plain(gh).request(path="/status?code=302&" + q("Location: http://%s/x" % HOST))
    assert header(r.headers, "Location") == "http://%s/x" % HOST


# ---------------------------------------------------------------- strict server names

def test_strict_server_names_refuse_unknown_hosts_on_tls(http_gh, web, web_certs):
    vhosts = [{"names": ["*.example.net"], "cert": web_certs.crt, "key": web_certs.key}]
    gh = http_gh(mode="both", http={"strict_server_names": True}, vhosts=vhosts)
    for host in (HOST, "MAIL.example.com:443", "webmail.example.net", "a.example.net"):
        r = https(gh).request(path="/echo", host=host)
        assert r.status == 200, host
    for host in ("other.example.org", "127.0.0.1", "example.net", "a.b.example.net",
                 "mail.example.com.evil.org"):
        before = sum(len(b.requests) for b in web.all)
        c = https(gh)
        r = c.request(path="/echo?strict", host=host)
        assert r.status == 400, host
        assert c.is_closed()
        assert sum(len(b.requests) for b in web.all) == before, host
    # HTTP/1.0 without Host: not one of ours either.
    c = https(gh)
    c.send(b"GET /echo HTTP/1.0\r\n\r\n")
    assert c.read_response().status == 400
    # Plain listeners (mode both) are not concerned.
    assert plain(gh).request(path="/echo", host="other.example.org").status == 200


def test_unknown_hosts_are_proxied_without_strict_server_names(http_gh, web):
    gh = http_gh()
    assert https(gh).request(path="/echo", host="other.example.org").status == 200


# ---------------------------------------------------------------- error pages

def _wait_log(gh, pattern, count, timeout=5.0):
    import re
    import time
    deadline = time.monotonic() + timeout
    while len(re.findall(pattern, gh.error_log())) < count:
        assert time.monotonic() < deadline, gh.error_log()[-2000:]
        time.sleep(0.02)


def test_operator_error_pages_for_502_and_504_and_reload(http_gh, web, tmp_path):
    import signal
    import time
    from ghtest import to_libconfig
    p5xx = tmp_path / "5xx.html"
    p504 = tmp_path / "504.html"
    p5xx.write_bytes(b"<html>down for maintenance \xc3\xa9</html>\n")
    p504.write_bytes(b"<html>slow</html>\n" * 1000)
    pages = [{"status": [502, 503], "file": str(p5xx)}, {"status": 504, "file": str(p504)}]
    gh = http_gh(http={"error_pages": pages, "backend_timeout": 1,
                       "add_headers": ["%s: max-age=1" % HSTS]})
    r = https(gh).request(path="/slow?secs=3")
    assert r.status == 504
    assert r.body == p504.read_bytes()
    assert header(r.headers, "Content-Type") == "text/html; charset=utf-8"
    assert header(r.headers, HSTS) == "max-age=1"
    # The same page for an answer kept behind a pipelined request.
    c = https(gh)
    c.send(c.build("GET", "/echo", HOST, (), None, "HTTP/1.1") +
           c.build("GET", "/slow?secs=3", HOST, (), None, "HTTP/1.1"))
    assert c.read_response().status == 200
    r = c.read_response()
    assert r.status == 504 and r.body == p504.read_bytes()
    web.web1.stop()
    web.web2.stop()
    r = https(gh).request(path="/echo")
    assert r.status == 502 and r.body == p5xx.read_bytes()
    # A 400 has no page of the operator's: the built-in one.
    c = https(gh)
    c.send(b"GET /echo HTTP/1.1\r\n\r\n")
    r = c.read_response()
    assert r.status == 400 and b"400 Bad Request" in r.body
    # A reload reads the file again.
    p5xx.write_bytes(b"<html>back soon</html>\n")
    gh.conf_path.write_text(to_libconfig(gh.settings))
    gh.signal(signal.SIGHUP)
    _wait_log(gh, r"reloaded .*new sessions use it", 1)
    time.sleep(0.2)
    assert https(gh).request(path="/echo").body == b"<html>back soon</html>\n"


def test_error_pages_configuration_errors(gatehouse_bin, tmp_path):
    import subprocess
    from ghtest import to_libconfig
    big = tmp_path / "big.html"
    big.write_bytes(b"x" * 65537)
    ok = tmp_path / "ok.html"
    ok.write_bytes(b"ok")
    for pages, msg in [([{"status": 502, "file": str(tmp_path / "missing.html")}],
                        "missing.html: No such file or directory"),
                       ([{"status": 502, "file": str(big)}], "larger than 65536 bytes"),
                       ([{"status": 502, "file": str(tmp_path)}], "not a regular file"),
                       ([{"status": 302, "file": str(ok)}], "must be between 400 and 599"),
                       ([{"status": [502, 502], "file": str(ok)}], "status 502 has a page already"),
                       ([{"status": 502, "file": "ok.html"}], "must be an absolute path")]:
        conf = tmp_path / "bad.conf"
        conf.write_text(to_libconfig({"http": {"backends": ["127.0.0.1:1"], "error_pages": pages}}))
        r = subprocess.run([gatehouse_bin, "-t", "-c", str(conf)], capture_output=True, timeout=10)
        assert r.returncode != 0
        assert msg in r.stderr.decode(), r.stderr


# ---------------------------------------------------------------- compression

def _unbrotli(data, size):
    """Decode br with libbrotlidec (ctypes): the decoded bytes, which must be size."""
    import ctypes
    lib = ctypes.CDLL("libbrotlidec.so.1")
    out = ctypes.create_string_buffer(size + 1)
    n = ctypes.c_size_t(size + 1)
    rc = lib.BrotliDecoderDecompress(ctypes.c_size_t(len(data)), data, ctypes.byref(n), out)
    assert rc == 1, "brotli stream does not decode"
    return out.raw[:n.value]


def _decode(coding, body, size):
    import zlib
    if coding == "gzip":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = d.decompress(body) + d.flush()
        assert d.eof and not d.unused_data
        return out
    assert coding == "br"
    return _unbrotli(body, size)


def _sha(b):
    import hashlib
    return hashlib.sha256(b).hexdigest()


def test_compressed_bodies_decode_to_the_backends(http_gh, web):
    from httpstore import text_payload
    gh = http_gh()
    c = https(gh)
    for coding, ae in (("gzip", "gzip"), ("br", "gzip, br"), ("gzip", "br;q=0.5, gzip")):
        for path, size in (("/text?size=300000", 300000), ("/text?size=300000&chunked=1", 300000),
                           ("/text?size=300&type=application/json;charset=utf-8", 300)):
            r = c.request(path=path + "&" + q("ETag: \"v1\""), headers=[("Accept-Encoding", ae)])
            assert r.status == 200, path
            assert header(r.headers, "Content-Encoding") == coding, (path, ae)
            assert header(r.headers, "Content-Length") is None
            assert header(r.headers, "Transfer-Encoding") == "chunked"
            assert header(r.headers, "Vary") == "Accept-Encoding"
            assert header(r.headers, "ETag") == 'W/"v1"'
            assert len(r.body) < size
            assert _sha(_decode(coding, r.body, size)) == _sha(text_payload(size)), (path, ae)


def test_what_is_not_compressed(http_gh, web):
    from httpstore import text_payload
    gh = http_gh()
    c = https(gh)
    gz = [("Accept-Encoding", "gzip, br")]
    cases = [
        ("/text?size=255", None),                                   # under min_length
        ("/text?size=5000&type=image/png", None),                   # not a listed type
        ("/text?size=5000&" + q("Content-Encoding: identity"), None),  # the backend's choice
        ("/text?size=5000&" + q("Cache-Control: private, no-transform"), None),
        ("/download?size=5000", None),                              # octet-stream
        ("/status?code=404&" + q("X-Pad: " + "p" * 400), None),     # not a 200
    ]
    for path, _ in cases:
        r = c.request(path=path, headers=gz)
        assert header(r.headers, "Content-Encoding") in (None, "identity"), path
        assert header(r.headers, "Vary") is None, path
    # No Accept-Encoding, or refusing both: as the backend sent it.
    for hdrs in ([], [("Accept-Encoding", "identity")], [("Accept-Encoding", "gzip;q=0, br;q=0")]):
        r = c.request(path="/text?size=5000", headers=hdrs)
        assert header(r.headers, "Content-Encoding") is None
        assert r.body == text_payload(5000)
    # HEAD: the head as for GET? No: nothing to compress, the backend's head.
    r = c.request(method="HEAD", path="/text?size=5000", headers=gz)
    assert header(r.headers, "Content-Encoding") is None
    assert header(r.headers, "Content-Length") == "5000"
    # HTTP/1.0 clients: plain (no chunked framing for them).
    c10 = https(gh)
    c10.send(c10.build("GET", "/text?size=5000", HOST, gz, None, "HTTP/1.0"))
    r = c10.read_response()
    assert header(r.headers, "Content-Encoding") is None and r.body == text_payload(5000)
    # Switched off: never.
    gh2 = http_gh(http={"compression": {"gzip": False, "br": False}})
    r = https(gh2).request(path="/text?size=5000", headers=gz)
    assert header(r.headers, "Content-Encoding") is None


def test_compressed_keepalive_and_pipelining(http_gh, web):
    """Several compressed answers on one connection, pipelined: each decodes."""
    from httpstore import text_payload
    gh = http_gh(http={"compression": {"gzip_level": 1, "br_level": 0}})
    c = https(gh)
    sizes = [1000, 70000, 256, 200000]
    reqs = b"".join(c.build("GET", "/text?size=%d%s" % (n, "&chunked=1" if i % 2 else ""), HOST,
                            [("Accept-Encoding", "br" if i % 2 else "gzip")], None, "HTTP/1.1")
                    for i, n in enumerate(sizes))
    c.send(reqs)
    for i, n in enumerate(sizes):
        r = c.read_response()
        coding = "br" if i % 2 else "gzip"
        assert header(r.headers, "Content-Encoding") == coding
        assert _decode(coding, r.body, n) == text_payload(n)
    assert not c.is_closed(0.3)


def test_curl_compressed(http_gh, web):
    import subprocess
    from httpstore import text_payload
    gh = http_gh()
    url = "https://%s:%d/text?size=100000" % (HOST, gh.https_port)
    for ae in ("gzip", "br"):
        r = subprocess.run(["curl", "-sS", "-k", "--resolve", "%s:%d:127.0.0.1" % (HOST, gh.https_port),
                            "--compressed", "-H", "Accept-Encoding: " + ae, "-D", "/dev/stderr", url],
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert ("content-encoding: %s" % ae) in r.stderr.decode().lower()
        assert _sha(r.stdout) == _sha(text_payload(100000))


def test_compression_follows_a_slow_client(http_gh, web):
    """64 MiB that do not compress, to a client that reads nothing for a
    while: gatehouse holds a bounded amount (the client's pace drives the
    compressor), then every byte arrives and decodes."""
    import time
    import zlib
    from httpstore import payload_sha256
    gh = http_gh()
    size = 64 << 20
    c = https(gh)
    rss0 = gh.rss_kb()
    c.send(c.build("GET", "/download?size=%d&type=text/plain" % size, HOST,
                   [("Accept-Encoding", "gzip")], None, "HTTP/1.1"))
    time.sleep(2.0)
    grown = gh.rss_kb() - rss0
    assert grown < 16 * 1024, "gatehouse grew by %d KiB for a client that reads nothing" % grown
    head = c.rd.head()
    assert b"Content-Encoding: gzip" in head
    import hashlib
    h = hashlib.sha256()
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for piece in c.rd.chunked_pieces():
        h.update(d.decompress(piece))
    h.update(d.flush())
    assert d.eof
    assert h.hexdigest() == payload_sha256(size)


def test_max_active_compressors_then_plain(http_gh, web):
    """One worker, max_active = 1: while a slow client holds the one
    compressor, another response goes out plain; once it is done, the next
    is compressed again."""
    from httpstore import text_payload
    gh = http_gh(http={"compression": {"max_active": 1}}, workers=1)
    gz = [("Accept-Encoding", "gzip")]
    slow = https(gh)
    slow.send(slow.build("GET", "/download?size=%d&type=text/plain" % (64 << 20), HOST, gz, None,
                         "HTTP/1.1"))
    assert b"Content-Encoding: gzip" in slow.rd.head()
    r = https(gh).request(path="/text?size=5000", headers=gz)
    assert header(r.headers, "Content-Encoding") is None
    assert r.body == text_payload(5000)
    slow.close()
    import time
    deadline = time.monotonic() + 5
    while True:
        r = https(gh).request(path="/text?size=5000", headers=gz)
        if header(r.headers, "Content-Encoding") == "gzip" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert header(r.headers, "Content-Encoding") == "gzip", "the compressor was not given back"


def test_compression_configuration_errors(gatehouse_bin, tmp_path):
    import subprocess
    from ghtest import to_libconfig
    for z, msg in [({"gzip_level": 0}, "gzip_level: must be between 1 and 9"),
                   ({"br_level": 4}, "br_level: must be between 0 and 3"),
                   ({"types": ["text"]}, "must be a media type"),
                   ({"types": ["text/html; charset=utf-8"]}, "must be a media type"),
                   ({"max_active": -1}, "max_active: must be between 0 and 100000"),
                   ({"level": 5}, "level")]:
        conf = tmp_path / "bad.conf"
        conf.write_text(to_libconfig({"http": {"backends": ["127.0.0.1:1"], "compression": z}}))
        r = subprocess.run([gatehouse_bin, "-t", "-c", str(conf)], capture_output=True, timeout=10)
        assert r.returncode != 0, z
        assert msg in r.stderr.decode(), r.stderr
    conf = tmp_path / "good.conf"
    conf.write_text(to_libconfig({"http": {"backends": ["127.0.0.1:1"], "compression": {
        "types": ["text/*", "application/json"], "gzip_level": 9, "br_level": 3, "min_length": 0}}}))
    r = subprocess.run([gatehouse_bin, "-t", "-c", str(conf)], capture_output=True, timeout=10)
    assert r.returncode == 0, r.stderr

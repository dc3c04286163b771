"""The open-file cache of root locations (http.open_file_cache_max,
http.open_file_cache_valid): a file changed, deleted or replaced on disk is
seen once the validity time has passed, never later; within it, the file
kept open is what is served; a symlink that leaves the root is refused even
when the file it replaced was cached; more files than the cache holds are
all served right; precompressed siblings only for a client that takes
them, with ETag and 304 as before."""
import gzip
import os
import time

from httpstore import HttpClient
from test_http_locations import curl_get, group, start  # noqa: F401 (fixtures)

VALID = 1.0   # open_file_cache_valid in these tests (seconds)


def cache_gh(http_gh, group, root, **http):  # noqa: F811
    g = group(1)
    settings = {"open_file_cache_valid": VALID}
    settings.update(http)
    return start(http_gh, [{"name": "api", "servers": [g[0].address]}],
                 [{"match": "^~ /static/", "root": str(root), "rewrite_prefix": "/"},
                  {"match": "/", "upstream": "api"}], http=settings)


def www(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (tmp_path / "secret.txt").write_bytes(b"top secret\n")
    return root


def past(path, secs):
    t = time.time() - secs
    os.utime(str(path), (t, t))


def test_a_changed_file_is_served_new_after_the_validity_time(http_gh, group, tmp_path):  # noqa: F811
    root = www(tmp_path)
    f = root / "app.js"
    f.write_bytes(b"version one\n")
    past(f, 3600)
    gh = cache_gh(http_gh, group, root, open_file_cache_valid=30)
    with HttpClient(gh.https_port) as c:
        r1 = c.request(path="/static/app.js")
        assert (r1.status, r1.body) == (200, b"version one\n")
        # Replaced by a deploy (a new file renamed over it): within the
        # 30 s the worker still sends the file it holds open, whole.
        tmp = root / "app.js.new"
        tmp.write_bytes(b"version two, longer\n")
        os.rename(str(tmp), str(f))
        r2 = c.request(path="/static/app.js")
        assert (r2.status, r2.body, r2.header("ETag")) == (200, b"version one\n", r1.header("ETag"))
    gh.stop()
    gh = cache_gh(http_gh, group, root)   # valid 1 s
    with HttpClient(gh.https_port) as c:
        etag = c.request(path="/static/app.js").header("ETag")
        f.write_bytes(b"version three, in place\n")   # same inode, new size and mtime
        past(f, 60)
        time.sleep(VALID + 0.3)
        r = c.request(path="/static/app.js", headers=[("If-None-Match", etag)])
        assert (r.status, r.body) == (200, b"version three, in place\n")
        assert r.header("ETag") != etag
        r304 = c.request(path="/static/app.js", headers=[("If-None-Match", r.header("ETag"))])
        assert (r304.status, r304.body) == (304, b"")


def test_a_deleted_file_is_404_after_the_validity_time(http_gh, group, tmp_path):  # noqa: F811
    root = www(tmp_path)
    (root / "gone.css").write_bytes(b"body{}\n")
    gh = cache_gh(http_gh, group, root)
    with HttpClient(gh.https_port) as c:
        assert c.request(path="/static/gone.css").status == 200
        os.unlink(str(root / "gone.css"))
        time.sleep(VALID + 0.3)
        assert c.request(path="/static/gone.css").status == 404
    # And back again (the 404 closed that connection).
    (root / "gone.css").write_bytes(b"body{color:red}\n")
    with HttpClient(gh.https_port) as c:
        r = c.request(path="/static/gone.css")
        assert (r.status, r.body) == (200, b"body{color:red}\n")


def test_a_cached_file_replaced_by_a_symlink_out_is_refused(http_gh, group, tmp_path):  # noqa: F811
    root = www(tmp_path)
    (root / "page.html").write_bytes(b"<p>page</p>\n")
    gh = cache_gh(http_gh, group, root)
    with HttpClient(gh.https_port) as c:
        assert c.request(path="/static/page.html").body == b"<p>page</p>\n"
        os.unlink(str(root / "page.html"))
        os.symlink(str(tmp_path / "secret.txt"), str(root / "page.html"))
        time.sleep(VALID + 0.3)
        r = c.request(path="/static/page.html")
        assert r.status == 403
        assert b"top secret" not in r.body
    # Never served from another location's cache entry either: a fresh
    # connection (maybe another worker) sees the same.
    st, _, body = curl_get(gh.https_port, "/static/page.html")
    assert st == 403 and b"top secret" not in body


def test_siblings_only_for_a_client_that_takes_them(http_gh, group, tmp_path):  # noqa: F811
    root = www(tmp_path)
    js = b"console.log('identity');\n" * 20
    (root / "app.js").write_bytes(js)
    (root / "app.js.br").write_bytes(b"BROTLI-BYTES")
    (root / "app.js.gz").write_bytes(gzip.compress(js))
    gh = cache_gh(http_gh, group, root)
    with HttpClient(gh.https_port) as c:
        for _ in range(2):   # the second time from the cache
            r = c.request(path="/static/app.js")
            assert (r.status, r.body) == (200, js)
            assert r.header("Content-Encoding") is None
            assert r.header("Vary") is None      # the answer does not depend on it
            r = c.request(path="/static/app.js", headers=[("Accept-Encoding", "gzip")])
            assert (r.header("Content-Encoding"), r.header("Vary")) == ("gzip", "Accept-Encoding")
            assert gzip.decompress(r.body) == js
            r = c.request(path="/static/app.js", headers=[("Accept-Encoding", "gzip, br")])
            assert (r.header("Content-Encoding"), r.body) == ("br", b"BROTLI-BYTES")
            r = c.request(path="/static/app.js", headers=[("Accept-Encoding", "identity")])
            assert (r.body, r.header("Vary")) == (js, None)
            # ETag and 304 for the identity file.
            r = c.request(path="/static/app.js")
            r304 = c.request(path="/static/app.js", headers=[("If-None-Match", r.header("ETag"))])
            assert (r304.status, r304.body) == (304, b"")


def test_more_files_than_the_cache_holds_all_served_right(http_gh, group, tmp_path):  # noqa: F811
    root = www(tmp_path)
    files = {}
    for i in range(40):
        body = (b"file %d " % i) * (i * 37 + 1)
        (root / ("f%02d.txt" % i)).write_bytes(body)
        files["/static/f%02d.txt" % i] = body
    (root / "big.bin").write_bytes(os.urandom(300000))
    files["/static/big.bin"] = (root / "big.bin").read_bytes()
    gh = cache_gh(http_gh, group, root, open_file_cache_max=4, open_file_cache_valid=30)
    with HttpClient(gh.https_port) as c:
        for _ in range(3):
            for path, body in files.items():
                r = c.request(path=path)
                assert (r.status, r.body) == (200, body), path
                assert r.header("Content-Length") == str(len(body))
        # Pipelined: answers in order, from the cache and not.
        paths = list(files)[:10]
        c.send(b"".join(HttpClient.build(path=p) for p in paths))
        for p in paths:
            assert c.read_response().body == files[p]
    assert gh.proc.poll() is None

"""Small files' bytes kept in the open-file cache (http.open_file_cache_mem,
http.open_file_cache_mem_file): a file up to the per-file bound is read
into memory when it is opened, and answered from those bytes (no read of
the file) while its entry is trusted (open_file_cache_valid). What a
client sees: the bytes are the file's, whole or in ranges, with HEAD and
304 as for any file; a file rewritten in place is answered with the bytes
read when it was opened until the validity time has passed, then with the
new ones (also when it grew beyond the bound); a file beyond the bound, or
with the memory setting at 0, is read from the file each time; and the
memory bound lets go of the least recently used file's bytes first."""
import os
import time

from httpstore import HttpClient
from test_http_locations import group  # noqa: F401 (fixtures)
from test_http_static_cache import VALID, cache_gh as mem_gh  # noqa: F401 (same listener)


def rewrite_in_place(path, data):
    """New bytes in the same file (same inode), as an editor saving over it."""
    with open(str(path), "r+b") as f:
        f.write(data)
        f.truncate(len(data))


def test_small_files_are_served_whole_from_memory(http_gh, group, tmp_path):  # noqa: F811
    root = tmp_path / "www"
    root.mkdir()
    files = {}
    for name, size in (("one.txt", 1), ("small.js", 4096), ("odd.css", 4099),
                       ("edge.bin", 65536), ("over.bin", 65537), ("big.bin", 300000)):
        data = os.urandom(size)
        (root / name).write_bytes(data)
        files["/static/" + name] = data
    gh = mem_gh(http_gh, group, root, open_file_cache_valid=30)
    with HttpClient(gh.https_port) as c:
        for _ in range(3):   # the first from the disk, then from the cache
            for path, data in files.items():
                r = c.request(path=path)
                assert (r.status, r.body) == (200, data), path
                assert r.header("Content-Length") == str(len(data))
        # Pipelined, in order.
        c.send(b"".join(HttpClient.build(path=p) for p in files))
        for p in files:
            assert c.read_response().body == files[p]
    assert gh.proc.poll() is None


def test_head_range_and_304_from_the_bytes_in_memory(http_gh, group, tmp_path):  # noqa: F811
    root = tmp_path / "www"
    root.mkdir()
    data = bytes(range(256)) * 40   # 10240 bytes
    f = root / "app.js"
    f.write_bytes(data)
    gh = mem_gh(http_gh, group, root, open_file_cache_valid=30)
    with HttpClient(gh.https_port) as c:
        r = c.request(path="/static/app.js")
        etag = r.header("ETag")
        assert (r.status, r.body) == (200, data)
        # Now in memory: the file on disk says something else (same
        # inode); every answer below is the bytes read when it was opened.
        rewrite_in_place(f, b"x" * len(data))
        h = c.request(method="HEAD", path="/static/app.js")
        assert (h.status, h.body, h.header("Content-Length"), h.header("ETag")) == \
            (200, b"", str(len(data)), etag)
        r = c.request(path="/static/app.js", headers=[("Range", "bytes=100-299")])
        assert (r.status, r.body) == (206, data[100:300])
        assert r.header("Content-Range") == "bytes 100-299/%d" % len(data)
        r = c.request(path="/static/app.js", headers=[("Range", "bytes=-10")])
        assert (r.status, r.body) == (206, data[-10:])
        r = c.request(path="/static/app.js", headers=[("If-None-Match", etag)])
        assert (r.status, r.body) == (304, b"")
        r = c.request(path="/static/app.js", headers=[("If-None-Match", '"other"')])
        assert (r.status, r.body) == (200, data)
        r = c.request(path="/static/app.js", headers=[("Range", "bytes=%d-" % len(data))])
        assert r.status == 416


def test_a_file_rewritten_in_place_is_served_new_after_the_validity_time(http_gh, group, tmp_path):  # noqa: F811
    root = tmp_path / "www"
    root.mkdir()
    f = root / "conf.json"
    old = b'{"version": 1, "pad": "' + b"a" * 2000 + b'"}\n'
    f.write_bytes(old)
    gh = mem_gh(http_gh, group, root)
    with HttpClient(gh.https_port) as c:
        assert c.request(path="/static/conf.json").body == old
        new = old.replace(b'"version": 1', b'"version": 2')
        assert len(new) == len(old)
        rewrite_in_place(f, new)
        # Within the validity time: the bytes read when it was opened,
        # never a mix of old and new.
        assert c.request(path="/static/conf.json").body == old
        time.sleep(VALID + 0.3)
        r = c.request(path="/static/conf.json")
        assert (r.status, r.body) == (200, new)
        # Grown beyond the per-file bound: served whole from the file.
        bigger = os.urandom(70000)
        rewrite_in_place(f, bigger)
        time.sleep(VALID + 0.3)
        for _ in range(2):
            r = c.request(path="/static/conf.json")
            assert (r.status, r.body, r.header("Content-Length")) == (200, bigger, "70000")
        # And small again.
        rewrite_in_place(f, b"{}\n")
        time.sleep(VALID + 0.3)
        for _ in range(2):
            assert c.request(path="/static/conf.json").body == b"{}\n"


def test_beyond_the_file_bound_or_with_no_memory_the_file_is_read_each_time(http_gh, group, tmp_path):  # noqa: F811
    root = tmp_path / "www"
    root.mkdir()
    small, large = root / "small.txt", root / "large.txt"
    small.write_bytes(b"s" * 1000)
    large.write_bytes(b"l" * 3000)
    gh = mem_gh(http_gh, group, root, open_file_cache_valid=30, open_file_cache_mem_file=2048)
    with HttpClient(gh.https_port) as c:
        assert c.request(path="/static/small.txt").body == b"s" * 1000
        assert c.request(path="/static/large.txt").body == b"l" * 3000
        rewrite_in_place(small, b"S" * 1000)
        rewrite_in_place(large, b"L" * 3000)
        # Kept open, not in memory: the file's current bytes.
        assert c.request(path="/static/large.txt").body == b"L" * 3000
        # In memory: the bytes it had when it was opened.
        assert c.request(path="/static/small.txt").body == b"s" * 1000
    gh.stop()
    gh = mem_gh(http_gh, group, root, open_file_cache_valid=30, open_file_cache_mem=0)
    with HttpClient(gh.https_port) as c:
        assert c.request(path="/static/small.txt").body == b"S" * 1000
        rewrite_in_place(small, b"t" * 1000)
        assert c.request(path="/static/small.txt").body == b"t" * 1000


def test_the_memory_bound_lets_go_of_the_least_recently_used_bytes(http_gh, group, tmp_path):  # noqa: F811
    root = tmp_path / "www"
    root.mkdir()
    a, b = root / "a.txt", root / "b.txt"
    a.write_bytes(b"a" * 6000)
    b.write_bytes(b"b" * 6000)
    gh = mem_gh(http_gh, group, root, open_file_cache_valid=30, open_file_cache_mem=10000)
    with HttpClient(gh.https_port) as c:
        assert c.request(path="/static/a.txt").body == b"a" * 6000
        # b does not fit beside a: a's bytes go (its fd stays), b's are kept.
        assert c.request(path="/static/b.txt").body == b"b" * 6000
        rewrite_in_place(a, b"A" * 6000)
        rewrite_in_place(b, b"B" * 6000)
        assert c.request(path="/static/a.txt").body == b"A" * 6000
        assert c.request(path="/static/b.txt").body == b"b" * 6000
    assert gh.proc.poll() is None

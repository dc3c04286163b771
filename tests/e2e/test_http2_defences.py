"""HTTP/2 limits and defences through the real listener (issue 19): each
test speaks raw frames (h2raw.py) to a started gatehouse, asserts the
exact frames it answers (GOAWAY code and last-stream-id, RST_STREAM codes,
:status 431, SETTINGS values), and that gatehouse is still up and serves a
new connection afterwards. Limits: include/h2.h, HACKING "HTTP/2 engine"."""
import time

import pytest

from h2raw import (ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, ENHANCE_YOUR_CALM,
                   GOAWAY, HEADERS, NO_ERROR, PING, PRIORITY, PROTOCOL_ERROR, REFUSED_STREAM,
                   RST_STREAM, COMPRESSION_ERROR, S_HEADER_TABLE_SIZE, S_INITIAL_WINDOW_SIZE,
                   S_MAX_CONCURRENT_STREAMS, S_MAX_HEADER_LIST_SIZE, S_ENABLE_PUSH,
                   SETTINGS, STREAM_CLOSED, WINDOW_UPDATE, RawH2, assert_serves, block,
                   frame, req_fields, rss_kib, rss_meaningful)
from test_http2 import group, h2  # noqa: F401 (fixtures)


def assert_calm_logged(gh, why):
    """The error log names the bound a GOAWAY ENHANCE_YOUR_CALM was for, so
    an operator can tell a flood from a client past a limit set too low."""
    want = "HTTP/2 GOAWAY ENHANCE_YOUR_CALM: " + why
    for _ in range(50):
        if want in gh.error_log():
            return
        time.sleep(0.05)
    raise AssertionError("no %r in the error log:\n%s" % (want, gh.logs_text()))


def test_settings_announce_the_configured_limits(h2):
    gh, g, _ = h2(http={"h2_max_streams": 5, "max_header_size": 8192})
    c = RawH2(gh.https_port)
    try:
        # SETTINGS, the ACK of ours, a WINDOW_UPDATE of the connection.
        c.until(lambda f: f[0] == SETTINGS and f[1] & ACK)
        c.until(lambda f: f[0] == WINDOW_UPDATE and f[2] == 0)
        assert c.settings[S_MAX_CONCURRENT_STREAMS] == 5
        assert c.settings[S_MAX_HEADER_LIST_SIZE] == 8192
        assert c.settings[S_HEADER_TABLE_SIZE] == 4096
        assert c.settings[S_INITIAL_WINDOW_SIZE] == 65535
        assert c.settings[S_ENABLE_PUSH] == 0
        # The connection window is opened to 1 MiB at once.
        wu = [f for f in c.frames if f[0] == WINDOW_UPDATE and f[2] == 0]
        assert [int.from_bytes(f[3], "big") for f in wu] == [(1 << 20) - 65535]
    finally:
        c.close()


def test_one_stream_past_max_concurrent_streams(h2):
    """After the client acknowledged SETTINGS_MAX_CONCURRENT_STREAMS, one
    stream more is a connection error (RFC 9113 5.1.2: PROTOCOL_ERROR;
    libnghttp2 names the last stream it took); before the ack, it is
    refused alone (RST_STREAM REFUSED_STREAM) and the others are served."""
    gh, g, _ = h2(http={"h2_max_streams": 3})
    c = RawH2(gh.https_port)
    try:
        c.until(lambda f: f[0] == SETTINGS and not f[1] & ACK)    # acknowledged
        c.until(lambda f: f[0] == SETTINGS and f[1] & ACK)
        for sid in (1, 3, 5, 7):
            c.request(sid, "/slow?secs=2&s=%d" % sid)
        assert c.goaway() == (PROTOCOL_ERROR, 5)
        assert c.closed()
    finally:
        c.close()
    # Not acknowledged yet: the fourth is refused, the three are answered.
    c = RawH2(gh.https_port, auto_ack=False)
    try:
        for sid in (1, 3, 5, 7):
            c.request(sid, "/slow?secs=1&s=%d" % sid)
        assert c.rst(7) == REFUSED_STREAM
        for sid in (1, 3, 5):
            assert c.response(sid)[0] == "200"
        assert not [f for f in c.frames if f[0] == GOAWAY]
    finally:
        c.close()
    assert_serves(gh)


def test_header_list_too_large_or_too_many_headers_is_431(h2):
    gh, g, _ = h2(http={"max_header_size": 4096, "max_headers": 20})
    c = RawH2(gh.https_port)
    try:
        c.request(1, "/echo?big", extra=[("x-big", "v" * 5000)])
        assert c.status(1) == "431"
        c.request(3, "/echo?many", extra=[("x-h%d" % i, "v") for i in range(30)])
        assert c.status(3) == "431"
        # The connection goes on: the next request is served.
        c.request(5, "/echo?fine", extra=[("x-h%d" % i, "v") for i in range(5)])
        assert c.response(5)[0] == "200"
        assert not [f for f in c.frames if f[0] in (GOAWAY, RST_STREAM) and f[2] in (0, 5)]
    finally:
        c.close()
    # Neither reached a backend.
    assert not [t for b in g for _, t, _ in list(b.requests) if "big" in t or "many" in t]
    assert_serves(gh)


@pytest.mark.parametrize("prefix", [
    # A dynamic table size update to 8192, above our 4096 (RFC 7541 4.2, 6.3).
    b"\x3f\xe1\x3f",
    # An indexed field with index 0 (RFC 7541 6.1).
    b"\x80",
    # An indexed field past the static and (empty) dynamic table.
    b"\xff\x80\x01",
    # A string literal whose length runs past the block.
    b"\x00\x7f\x90\x01ab",
], ids=["table-size-above-setting", "index-0", "index-past-table", "truncated-literal"])
def test_bad_hpack_is_compression_error(h2, prefix):
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        c.request(1, "/echo?first")
        assert c.response(1)[0] == "200"
        c.send_frame(HEADERS, END_HEADERS | END_STREAM, 3,
                     prefix + block(req_fields("/echo?second")))
        code, last = c.goaway()
        assert code == COMPRESSION_ERROR
        assert last in (1, 3)     # libnghttp2 may name the stream it opened
        assert c.closed()
    finally:
        c.close()
    assert not [t for b in g for _, t, _ in list(b.requests) if "second" in t]
    assert_serves(gh)


def test_continuation_flood_is_cut_off_with_bounded_memory(h2):
    """CVE-2024-27316: HEADERS without END_HEADERS and CONTINUATION frames
    without end: GOAWAY ENHANCE_YOUR_CALM after 8 (max_continuations), and
    what follows is not kept."""
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    pid = gh.proc.pid
    try:
        c.request(1, "/echo?first")
        assert c.response(1)[0] == "200"
        base = rss_kib(pid)
        c.send_frame(HEADERS, 0, 3, block(req_fields("/echo?flood")))
        piece = block([("x-c", "v" * 16000)])
        sent = 0
        try:
            for i in range(2000):      # 32 MB of CONTINUATION
                c.send_frame(CONTINUATION, 0, 3, piece)
                sent += 1
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        assert sent >= 4     # the 64 KiB block bound comes first
        assert c.goaway() == (ENHANCE_YOUR_CALM, 1)
        assert_calm_logged(gh, "header block too large")
        if rss_meaningful():
            assert rss_kib(pid) - base < 8 * 1024
        assert c.closed()
    finally:
        c.close()
    assert not [t for b in g for _, t, _ in list(b.requests) if "flood" in t]
    assert_serves(gh)


def test_small_continuation_frames_past_the_bound(h2):
    """Nine small CONTINUATION frames: the bound counts frames, not bytes."""
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        blk = block(req_fields("/echo?c9", extra=[("x-%d" % i, "v") for i in range(12)]))
        parts = [blk[i * 10:(i + 1) * 10] for i in range(10)] + [blk[100:]]
        assert all(parts[:10])
        out = frame(HEADERS, 0, 1, parts[0])
        for p in parts[1:-1]:
            out += frame(CONTINUATION, 0, 1, p)
        out += frame(CONTINUATION, END_HEADERS, 1, parts[-1])
        c.send(out)
        assert c.goaway() == (ENHANCE_YOUR_CALM, 0)
        assert_calm_logged(gh, "CONTINUATION flood")
    finally:
        c.close()
    # Eight are fine.
    c = RawH2(gh.https_port)
    try:
        blk = block(req_fields("/echo?c8"))
        n = len(blk) // 9
        parts = [blk[i * n:(i + 1) * n] for i in range(8)] + [blk[8 * n:]]
        out = frame(HEADERS, END_STREAM, 1, parts[0])
        for p in parts[1:-1]:
            out += frame(CONTINUATION, 0, 1, p)
        out += frame(CONTINUATION, END_HEADERS, 1, parts[-1])
        c.send(out)
        assert c.response(1)[0] == "200"
    finally:
        c.close()


def _flood(c, kind, n):
    if kind == "settings":
        one = frame(SETTINGS, 0, 0, (4).to_bytes(2, "big") + (65535).to_bytes(4, "big"))
    elif kind == "ping":
        one = frame(PING, 0, 0, b"12345678")
    elif kind == "priority":
        one = frame(PRIORITY, 0, 9, (0).to_bytes(4, "big") + b"\x10")
    elif kind == "window-update":
        one = frame(WINDOW_UPDATE, 0, 0, (1).to_bytes(4, "big"))
    elif kind == "unknown":
        one = frame(0xfa, 0, 0, b"junk")
    elif kind == "empty-data":
        c.request(1, "/upload", method="POST", end_stream=False)
        one = frame(DATA, 0, 1, b"")
    elif kind == "empty-headers-continuation":
        c.send(frame(HEADERS, 0, 1, block(req_fields("/echo?e"))))
        one = frame(CONTINUATION, 0, 1, b"")
    # One burst, in writes of 16 KiB (frames cut across them).
    c.send_all_or_closed(one * n)


@pytest.mark.parametrize("kind,n", [
    ("settings", 1500), ("ping", 1500), ("priority", 1500), ("window-update", 1500),
    ("unknown", 1500), ("empty-data", 40), ("empty-headers-continuation", 40),
])
def test_floods_end_with_enhance_your_calm(h2, kind, n):
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        c.until(lambda f: f[0] == SETTINGS and f[1] & ACK)
        _flood(c, kind, n)
        # The last stream whose head was complete: the POST's, else none.
        assert c.goaway() == (ENHANCE_YOUR_CALM, 1 if kind == "empty-data" else 0)
        assert c.closed()
        # Empty CONTINUATION frames meet the 8-frame bound before the 32
        # empty frames' one.
        assert_calm_logged(gh, {"empty-data": "empty frame flood",
                                "empty-headers-continuation": "CONTINUATION flood"}
                           .get(kind, "control frame flood"))
    finally:
        c.close()
    assert_serves(gh)


def test_pings_at_a_browsers_pace_are_answered(h2):
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        for i in range(50):
            c.send_frame(PING, 0, 0, i.to_bytes(8, "big"))
        for i in range(50):
            f = c.until(lambda f: f[0] == PING)
            assert f[1] & ACK and f[3] == i.to_bytes(8, "big")
        c.request(1, "/echo")
        assert c.response(1)[0] == "200"
        assert not [f for f in c.frames if f[0] == GOAWAY]
    finally:
        c.close()


def test_a_client_that_never_reads_keeps_memory_bounded(h2):
    """Downloads with wide-open windows and PINGs (below the control budget),
    never reading: gatehouse holds at most its per-connection bounds (its
    input stops once 512 control frames wait), does not crash, and serves
    others meanwhile and afterwards."""
    gh, g, _ = h2()
    pid = gh.proc.pid
    c = RawH2(gh.https_port,
              settings=(4).to_bytes(2, "big") + (0x7fffffff).to_bytes(4, "big"))
    c.sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
    try:
        c.until(lambda f: f[0] == SETTINGS and f[1] & ACK)
        base = rss_kib(pid)
        c.window_update(0, (1 << 31) - 1 - 65535)
        for sid in range(1, 20, 2):
            c.request(sid, "/download?size=20000000&s=%d" % sid)
        c.sock.settimeout(5)
        sent = 0
        try:
            for i in range(900):
                c.send_frame(PING, 0, 0, i.to_bytes(8, "big"))
                sent += 1
        except (OSError, TimeoutError):
            pass
        # 200 MB are behind it; wait until the backends have given what
        # the proxy takes.
        time.sleep(3)
        grown = rss_kib(pid) - base
        print("RSS grown by %d KiB" % grown)
        if rss_meaningful():
            assert grown < 24 * 1024, grown
        assert gh.proc.poll() is None
        # Another client is served meanwhile.
        assert_serves(gh, "/echo?meanwhile")
    finally:
        c.close()
    assert_serves(gh)


def test_even_stream_id_is_protocol_error(h2):
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        c.request(1, "/echo?odd")
        assert c.response(1)[0] == "200"
        c.request(2, "/echo?even")
        assert c.goaway() == (PROTOCOL_ERROR, 1)
        assert c.closed()
    finally:
        c.close()
    assert not [t for b in g for _, t, _ in list(b.requests) if "even" in t]
    assert_serves(gh)


def test_stream_ids_going_backwards(h2):
    """A HEADERS below the highest stream id opens nothing: libnghttp2
    cannot tell it from a stream closed and forgotten (RFC 9113 5.1.1: every
    lower idle id was implicitly closed), so it is ignored, and each one
    costs the client from its control budget: a flood of them ends with
    GOAWAY ENHANCE_YOUR_CALM naming the last stream served."""
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        c.request(4001, "/echo?high")
        assert c.response(4001)[0] == "200"
        c.request(3, "/echo?low")
        c.request(4003, "/echo?next")
        assert c.response(4003)[0] == "200"
        assert not [f for f in c.frames if f[2] == 3]
        out = b"".join(frame(HEADERS, END_HEADERS | END_STREAM, sid,
                             block(req_fields("/echo?back")))
                       for sid in range(5, 4000, 2))
        c.send_all_or_closed(out)
        assert c.goaway() == (ENHANCE_YOUR_CALM, 4003)
    finally:
        c.close()
    assert not [t for b in g for _, t, _ in list(b.requests) if "low" in t or "back" in t]
    assert_serves(gh)


@pytest.mark.parametrize("ftype,payload", [
    (DATA, b"x"),
    (HEADERS, block(req_fields("/echo?zero"))),
    (RST_STREAM, (8).to_bytes(4, "big")),
    (PRIORITY, (0).to_bytes(4, "big") + b"\x10"),
    (CONTINUATION, b""),
], ids=["data", "headers", "rst_stream", "priority", "continuation"])
def test_frames_that_need_a_stream_on_stream_0(h2, ftype, payload):
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        c.send_frame(ftype, END_HEADERS if ftype == HEADERS else 0, 0, payload)
        assert c.goaway() == (PROTOCOL_ERROR, 0)
        assert c.closed()
    finally:
        c.close()
    assert_serves(gh)


@pytest.mark.parametrize("ftype,payload", [
    (SETTINGS, b""), (PING, b"12345678"), (GOAWAY, b"\0\0\0\0\0\0\0\0"),
], ids=["settings", "ping", "goaway"])
def test_connection_frames_on_a_stream(h2, ftype, payload):
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        c.send_frame(ftype, 0, 1, payload)
        assert c.goaway() == (PROTOCOL_ERROR, 0)
    finally:
        c.close()
    assert_serves(gh)


def test_data_on_an_idle_stream_is_protocol_error(h2):
    """RFC 9113 5.1: idle, any frame but HEADERS or PRIORITY."""
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        c.send_frame(DATA, END_STREAM, 5, b"hello")
        assert c.goaway() == (PROTOCOL_ERROR, 0)
    finally:
        c.close()
    assert_serves(gh)


def test_data_on_a_half_closed_remote_stream_is_stream_closed(h2):
    """RFC 9113 5.1: half-closed (remote), a frame other than WINDOW_UPDATE,
    PRIORITY or RST_STREAM is STREAM_CLOSED (libnghttp2: a connection
    error)."""
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        c.request(1, "/slow?secs=2")
        c.send_frame(DATA, 0, 1, b"late")
        assert c.goaway() == (STREAM_CLOSED, 1)
    finally:
        c.close()
    assert_serves(gh)


def test_data_on_a_closed_stream_is_ignored_and_keeps_the_window(h2):
    """A stream answered and forgotten: DATA on it is ignored (RFC 9113 5.1
    allows it after some time), and its bytes do not use up the
    connection's 1 MiB window: gatehouse gives the window back for them, so
    a client keeping to the window sends 2 MiB of it, then a request with a
    body, and is served."""
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    sent = 0    # DATA payload bytes on the connection (its window counts them all)

    def conn_room():
        granted = sum(int.from_bytes(f[3][:4], "big") & 0x7fffffff
                      for f in c.frames if f[0] == WINDOW_UPDATE and f[2] == 0)
        return 65535 + granted - sent

    def wait_conn_room(n):
        while conn_room() < n:
            f = c.until(lambda f: (f[0] == WINDOW_UPDATE and f[2] == 0) or
                        f[0] in (GOAWAY, RST_STREAM))
            assert f[0] == WINDOW_UPDATE, f

    try:
        c.request(1, "/echo?one")
        assert c.response(1)[0] == "200"
        for _ in range(128):                  # 2 MiB, twice the connection window
            wait_conn_room(16384)
            c.send_frame(DATA, 0, 1, b"z" * 16384)
            sent += 16384
        c.request(3, "/upload", method="POST", end_stream=False)
        body = b"b" * 200000
        done = 0
        window = 65535  # stream 3's, as announced; reopened by its WINDOW_UPDATEs
        while done < len(body):
            n = min(16384, len(body) - done)
            while window < n:
                f = c.until(lambda f: (f[0] == WINDOW_UPDATE and f[2] == 3) or
                            f[0] in (GOAWAY, RST_STREAM))
                assert f[0] == WINDOW_UPDATE, f
                window += int.from_bytes(f[3][:4], "big") & 0x7fffffff
            wait_conn_room(n)
            c.send_frame(DATA, END_STREAM if done + n == len(body) else 0, 3,
                         body[done:done + n])
            done += n
            sent += n
            window -= n
        status, out = c.response(3)
        assert status == "200"
        assert b'"length": 200000' in out or b'"length":200000' in out, out[:300]
        assert not [f for f in c.frames if f[0] == GOAWAY]
    finally:
        c.close()


def test_requests_per_connection_end_with_a_graceful_goaway(h2):
    """h2_max_requests: the last stream is named by GOAWAY NO_ERROR, the
    streams in flight finish, one opened after it is ignored (safe to
    retry); streams past the limit sent before the GOAWAY are refused."""
    gh, g, _ = h2(http={"h2_max_requests": 3})
    c = RawH2(gh.https_port)
    try:
        for sid in (1, 3, 5):
            c.request(sid, "/slow?secs=1&s=%d" % sid)
        assert c.goaway() == (NO_ERROR, 5)
        c.request(7, "/echo?seventh")
        for sid in (1, 3, 5):
            assert c.response(sid)[0] == "200"
        # A stream opened after the GOAWAY is ignored (RFC 9113 6.8: the
        # client knows it was not processed), and the connection ends.
        assert c.closed()
        assert not [f for f in c.frames if f[2] == 7]
    finally:
        c.close()
    # Sent in one write (read before the GOAWAY goes out): the fourth
    # is refused.
    c = RawH2(gh.https_port)
    try:
        c.send(b"".join(frame(HEADERS, END_HEADERS | END_STREAM, sid,
                              block(req_fields("/echo?s=%d&again" % sid)))
                        for sid in (1, 3, 5, 7)))
        assert c.goaway() == (NO_ERROR, 5)
        for sid in (1, 3, 5):
            assert c.response(sid)[0] == "200"
        assert c.rst(7) == REFUSED_STREAM
    finally:
        c.close()
    assert not [t for b in g for _, t, _ in list(b.requests) if "seventh" in t or "s=7" in t]
    assert_serves(gh)


def test_goaway_on_shutdown_names_the_stream_in_flight(h2):
    import signal
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        c.request(1, "/echo?a")
        assert c.response(1)[0] == "200"
        c.request(3, "/slow?secs=2")
        from test_http2 import wait_backend_got
        wait_backend_got(g, "/slow")
        gh.signal(signal.SIGHUP)
        assert c.goaway() == (NO_ERROR, 3)
        status, body = c.response(3)
        assert status == "200"
        assert c.closed()
    finally:
        c.close()
    assert_serves(gh)


def test_new_streams_past_the_rate_end_with_enhance_your_calm(h2):
    """http.h2_stream_rate: after a burst of 1000 new streams, more than
    h2_stream_rate per second (here 1) is GOAWAY ENHANCE_YOUR_CALM; the
    streams come in batches of 100, each answered before the next, so the
    concurrency limit is never what ends it."""
    gh, g, _ = h2(http={"h2_stream_rate": 1, "h2_max_requests": 0, "h2_max_streams": 128})
    c = RawH2(gh.https_port)
    sid, goaway = 1, None
    try:
        while goaway is None and sid < 2 * 1200:
            batch = list(range(sid, sid + 200, 2))
            c.send_all_or_closed(b"".join(frame(HEADERS, END_HEADERS | END_STREAM, i,
                                  block(req_fields("/gone"))) for i in batch))
            sid += 200
            for i in batch:
                f = c.until(lambda f: f[0] == GOAWAY or (f[2] == i and f[1] & END_STREAM))
                if f[0] == GOAWAY:
                    goaway = (int.from_bytes(f[3][4:8], "big"),
                              int.from_bytes(f[3][:4], "big"))
                    break
        assert goaway is not None
        code, last = goaway
        assert code == ENHANCE_YOUR_CALM
        # At least the burst of 1000 was served (ids 1..1999), and not all.
        assert 1999 <= last < 2 * 1100
        assert_calm_logged(gh, "new streams past the stream rate")
    finally:
        c.close()
    assert_serves(gh)

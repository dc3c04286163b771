"""h2spec-style conformance cases (RFC 9113) against the real listener
(issue 19): raw frames (h2raw.py) in, the exact frames gatehouse answers
out, and gatehouse serves a new connection afterwards. Stream errors end
one stream (RST_STREAM) and the connection goes on; connection errors end
it (GOAWAY with the code)."""
import pytest

from h2raw import (ACK, CONTINUATION, PRIORITY, PRIORITY_FLAG, DATA, END_HEADERS, END_STREAM, FLOW_CONTROL_ERROR,
                   FRAME_SIZE_ERROR, GOAWAY, HEADERS, PADDED, PING, PROTOCOL_ERROR,
                   RST_STREAM, SETTINGS, WINDOW_UPDATE, HOST, RawH2, assert_serves, block,
                   frame, req_fields)
from test_http2 import group, h2  # noqa: F401 (fixtures)


def setting(ident, value):
    return ident.to_bytes(2, "big") + value.to_bytes(4, "big")


def test_bad_preface_closes_the_connection(h2):
    """RFC 9113 3.4: a preface that is not the client magic: the connection
    ends, no stream is served."""
    gh, g, _ = h2()
    c = RawH2(gh.https_port, preface=False)
    try:
        c.send(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST.encode())
        assert c.closed()
        assert not [f for f in c.frames if f[0] in (HEADERS, DATA)]
        # What came before the close, if anything, was our SETTINGS or a GOAWAY.
        assert {f[0] for f in c.frames} <= {SETTINGS, WINDOW_UPDATE, GOAWAY}
    finally:
        c.close()
    # A preface whose first frame is not SETTINGS (3.4): PROTOCOL_ERROR.
    c = RawH2(gh.https_port, preface=False)
    try:
        c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(PING, 0, 0, b"12345678"))
        assert c.closed()
        goaway = [f for f in c.frames if f[0] == GOAWAY]
        assert not goaway or int.from_bytes(goaway[0][3][4:8], "big") == PROTOCOL_ERROR
    finally:
        c.close()
    assert not g[0].requests and not g[1].requests
    assert_serves(gh)


@pytest.mark.parametrize("what,data", [
    # 4.2: larger than SETTINGS_MAX_FRAME_SIZE (16384).
    ("data-16385", lambda: frame(DATA, 0, 1, b"x" * 16385)),
    ("headers-16385", lambda: frame(HEADERS, END_HEADERS, 3, b"\x00" * 16385)),
    # 6.7: PING of a length other than 8.
    ("ping-7", lambda: frame(PING, 0, 0, b"1234567")),
    # 6.5: SETTINGS whose length is not a multiple of 6; ACK with a payload.
    ("settings-5", lambda: frame(SETTINGS, 0, 0, b"\0\0\0\0\0")),
    ("settings-ack-payload", lambda: frame(SETTINGS, ACK, 0, setting(4, 1))),
    # 6.9: WINDOW_UPDATE of a length other than 4.
    ("window-update-3", lambda: frame(WINDOW_UPDATE, 0, 0, b"\0\0\1")),
])
def test_frame_size_errors(h2, what, data):
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        c.request(1, "/upload", method="POST", end_stream=False)
        c.send(data())
        code, last = c.goaway()
        assert code == FRAME_SIZE_ERROR
        assert last == 1
        assert c.closed()
    finally:
        c.close()
    assert_serves(gh)


MALFORMED = [
    ("no-path", [(":method", "GET"), (":scheme", "https"), (":authority", HOST)]),
    ("no-method", [(":scheme", "https"), (":authority", HOST), (":path", "/echo")]),
    ("no-scheme", [(":method", "GET"), (":authority", HOST), (":path", "/echo")]),
    ("empty-path", req_fields("")),
    ("uppercase-name", req_fields("/echo", extra=[("X-Upper", "1")])),
    ("connection-header", req_fields("/echo", extra=[("connection", "keep-alive")])),
    ("keep-alive-header", req_fields("/echo", extra=[("keep-alive", "5")])),
    ("transfer-encoding", req_fields("/echo", extra=[("transfer-encoding", "chunked")])),
    ("upgrade", req_fields("/echo", extra=[("upgrade", "h2c")])),
    ("te-gzip", req_fields("/echo", extra=[("te", "gzip")])),
    ("unknown-pseudo", req_fields("/echo", extra=[(":foo", "bar")])),
    ("response-pseudo", req_fields("/echo", extra=[(":status", "200")])),
    ("duplicate-path", req_fields("/echo", extra=[(":path", "/other")])),
    ("pseudo-after-regular", [(":method", "GET"), (":scheme", "https"), ("x-a", "1"),
                              (":authority", HOST), (":path", "/echo")]),
    ("space-in-name", req_fields("/echo", extra=[("x a", "1")])),
    ("newline-in-value", req_fields("/echo", extra=[("x-a", "1\r\nx-b: 2")])),
]


@pytest.mark.parametrize("what,fields", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_request_is_rst_stream_protocol_error(h2, what, fields):
    """RFC 9113 8.1.1, 8.2, 8.3: a malformed request is a stream error of
    type PROTOCOL_ERROR; it reaches no backend and the connection goes on."""
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        c.send_frame(HEADERS, END_HEADERS | END_STREAM, 1, block(fields))
        assert c.rst(1) == PROTOCOL_ERROR
        assert not [f for f in c.frames if f[0] == HEADERS]
        c.request(3, "/echo?after")
        assert c.response(3)[0] == "200"
        assert not [f for f in c.frames if f[0] == GOAWAY]
    finally:
        c.close()
    assert [t for _, t, _ in list(g[0].requests)] == ["/echo?after"]


@pytest.mark.parametrize("declared,sent", [(10, 5), (3, 5), (0, 1)])
def test_content_length_mismatch_is_protocol_error(h2, declared, sent):
    """RFC 9113 8.1.1: DATA that do not add up to content-length."""
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        # One write: the DATA arrive before any answer could.
        c.send(frame(HEADERS, END_HEADERS, 1,
                     block(req_fields("/upload", "POST",
                                      [("content-length", str(declared))]))) +
               frame(DATA, END_STREAM, 1, b"d" * sent))
        assert c.rst(1) == PROTOCOL_ERROR
        assert not [f for f in c.frames if f[0] == HEADERS and f[2] == 1]
        c.request(3, "/echo?after")
        assert c.response(3)[0] == "200"
    finally:
        c.close()
    assert_serves(gh)


def test_content_length_that_matches_is_served(h2):
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        c.request(1, "/upload", method="POST", end_stream=False,
                  extra=[("content-length", "5")])
        c.send_frame(DATA, 0, 1, b"ab")
        c.send_frame(DATA, END_STREAM | PADDED, 1, b"\x04cde" + b"\0" * 4)
        status, body = c.response(1)
        assert status == "200" and b"5" in body
    finally:
        c.close()


def test_window_update_of_zero(h2):
    """RFC 9113 6.9: an increment of 0 is PROTOCOL_ERROR: a connection error
    on stream 0; on a stream RFC 9113 asks for a stream error, and
    libnghttp2 makes it a connection error (5.4.1 allows it)."""
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        c.request(1, "/slow?secs=1")
        c.window_update(1, 0)
        assert c.goaway() == (PROTOCOL_ERROR, 1)
        assert c.closed()
    finally:
        c.close()
    c = RawH2(gh.https_port)
    try:
        c.request(1, "/echo?first")
        assert c.response(1)[0] == "200"
        c.window_update(0, 0)
        assert c.goaway() == (PROTOCOL_ERROR, 1)
        assert c.closed()
    finally:
        c.close()
    assert_serves(gh)


def test_window_overflow_is_flow_control_error(h2):
    """RFC 9113 6.9.1: a window past 2^31-1 is FLOW_CONTROL_ERROR: a stream
    error on a stream, a connection error on the connection."""
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        c.request(1, "/slow?secs=1")
        c.window_update(1, 0x7fffffff)
        assert c.rst(1) == FLOW_CONTROL_ERROR
        c.request(3, "/echo?after")
        assert c.response(3)[0] == "200"
        c.window_update(0, 0x7fffffff)
        assert c.goaway() == (FLOW_CONTROL_ERROR, 3)
        assert c.closed()
    finally:
        c.close()
    assert_serves(gh)


@pytest.mark.parametrize("payload,code", [
    (setting(2, 2), PROTOCOL_ERROR),                  # ENABLE_PUSH other than 0/1
    (setting(4, 0x80000000), FLOW_CONTROL_ERROR),     # INITIAL_WINDOW_SIZE > 2^31-1
    (setting(5, 16383), PROTOCOL_ERROR),              # MAX_FRAME_SIZE below 2^14
    (setting(5, 1 << 24), PROTOCOL_ERROR),            # MAX_FRAME_SIZE above 2^24-1
], ids=["enable-push-2", "initial-window-too-large", "max-frame-small", "max-frame-large"])
def test_bad_settings_values(h2, payload, code):
    """RFC 9113 6.5.2."""
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        c.send_frame(SETTINGS, 0, 0, payload)
        assert c.goaway()[0] == code
        assert c.closed()
    finally:
        c.close()
    assert_serves(gh)


def test_unknown_setting_and_unknown_frame_are_ignored(h2):
    """RFC 9113 5.5, 6.5.2: unknown SETTINGS identifiers and frame types
    are ignored (a few are no flood)."""
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        c.send_frame(SETTINGS, 0, 0, setting(0x99, 7))
        c.send_frame(0xfa, 0, 0, b"whatever")
        c.send_frame(0xfa, 0xff, 1, b"on a stream")
        c.request(1, "/echo?fine")
        assert c.response(1)[0] == "200"
        assert not [f for f in c.frames if f[0] == GOAWAY]
    finally:
        c.close()


def test_continuation_rules(h2):
    """RFC 9113 6.10: a CONTINUATION without a HEADERS before it, or another
    frame in the middle of a header block: connection error PROTOCOL_ERROR."""
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        c.send_frame(CONTINUATION, END_HEADERS, 1, block(req_fields("/echo")))
        assert c.goaway()[0] == PROTOCOL_ERROR
    finally:
        c.close()
    c = RawH2(gh.https_port)
    try:
        blk = block(req_fields("/echo"))
        c.send(frame(HEADERS, END_STREAM, 1, blk[:10]) + frame(PING, 0, 0, b"12345678") +
               frame(CONTINUATION, END_HEADERS, 1, blk[10:]))
        assert c.goaway()[0] == PROTOCOL_ERROR
    finally:
        c.close()
    c = RawH2(gh.https_port)
    try:
        # A CONTINUATION of another stream.
        blk = block(req_fields("/echo"))
        c.send(frame(HEADERS, END_STREAM, 1, blk[:10]) +
               frame(CONTINUATION, END_HEADERS, 3, blk[10:]))
        assert c.goaway()[0] == PROTOCOL_ERROR
    finally:
        c.close()
    assert_serves(gh)


def test_padding_longer_than_the_frame(h2):
    """RFC 9113 6.1, 6.2: padding that is not shorter than the payload:
    PROTOCOL_ERROR."""
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        c.send_frame(HEADERS, END_HEADERS | END_STREAM | PADDED, 1, b"\xff" + b"\0" * 10)
        assert c.goaway()[0] == PROTOCOL_ERROR
    finally:
        c.close()
    assert_serves(gh)


def test_headers_after_end_stream_is_stream_closed(h2):
    """RFC 9113 5.1: half-closed (remote), a second HEADERS (not trailers
    after END_STREAM) is STREAM_CLOSED."""
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        c.request(1, "/slow?secs=2")
        c.send_frame(HEADERS, END_HEADERS | END_STREAM, 1, block([("x-trailer", "1")]))
        f = c.until(lambda f: f[0] in (GOAWAY, RST_STREAM))
        assert int.from_bytes(f[3][-4:] if f[0] == RST_STREAM else f[3][4:8], "big") == 5
    finally:
        c.close()
    assert_serves(gh)


def test_priority_abuse(h2):
    """RFC 7540 priorities are off (SETTINGS_NO_RFC7540_PRIORITIES): a
    PRIORITY frame, even one making a stream depend on itself, is ignored
    (and pays from the control budget); HEADERS that depend on their own
    stream are PROTOCOL_ERROR (RFC 9113 5.3.1; libnghttp2 ends the
    connection); a PRIORITY frame of a length other than 5 is
    FRAME_SIZE_ERROR (6.3)."""
    gh, g, _ = h2()
    c = RawH2(gh.https_port)
    try:
        c.send_frame(PRIORITY, 0, 3, (3).to_bytes(4, "big") + b"\x10")
        c.send_frame(PRIORITY, 0, 7, (0x80000005).to_bytes(4, "big") + b"\xff")
        c.request(5, "/echo?after-priority")
        assert c.response(5)[0] == "200"
        assert not [f for f in c.frames if f[0] in (GOAWAY, RST_STREAM)]
    finally:
        c.close()
    c = RawH2(gh.https_port)
    try:
        c.send_frame(HEADERS, END_HEADERS | END_STREAM | PRIORITY_FLAG, 1,
                     (1).to_bytes(4, "big") + b"\x10" + block(req_fields("/echo?self")))
        assert c.goaway() == (PROTOCOL_ERROR, 0)
    finally:
        c.close()
    c = RawH2(gh.https_port)
    try:
        c.send_frame(PRIORITY, 0, 3, b"\0\0\0")
        assert c.goaway() == (FRAME_SIZE_ERROR, 0)
    finally:
        c.close()
    assert not [t for b in g for _, t, _ in list(b.requests) if "self" in t]
    assert_serves(gh)

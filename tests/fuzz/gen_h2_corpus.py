#!/usr/bin/env python3
"""Write the seed corpus of fuzz_h2 (tests/fuzz/corpus/h2/): the normal
shapes of an HTTP/2 client and the attack shapes the engine defends
against. Input format (tests/fuzz/fuzz_h2.c): byte 0 seeds the harness's
choices, byte 1 holds flags (1: no preface is sent for the client,
2: extended CONNECT enabled), then the client's bytes after the preface
and an empty SETTINGS frame.

Header blocks use HPACK literals without indexing or Huffman coding
(RFC 7541 6.2.2), which any decoder accepts; enough for seeds."""
import os
import struct
import sys

DATA, HEADERS, PRIORITY, RST, SETTINGS, PING, GOAWAY, WU, CONT = 0, 1, 2, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(ftype, flags, sid, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, sid) + payload


def hpack_int(v, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if v < limit:
        return bytes([first | v])
    out = [first | limit]
    v -= limit
    while v >= 128:
        out.append(v % 128 + 128)
        v //= 128
    out.append(v)
    return bytes(out)


def block(fields):
    out = b""
    for name, value in fields:
        out += b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value
    return out


def req(path=b"/", method=b"GET", extra=()):
    return block([(b":method", method), (b":scheme", b"https"), (b":authority", b"a.example"),
                  (b":path", path)] + list(extra))


def headers(sid, fields_block, end_stream=True):
    return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid, fields_block)


def seeds():
    ack = frame(SETTINGS, ACK, 0)
    s = {}
    s["get"] = ack + headers(1, req())
    s["post"] = ack + headers(1, req(b"/up", b"POST", [(b"content-length", b"10")]), False) + \
        frame(DATA, 0, 1, b"hello") + frame(DATA, END_STREAM, 1, b"world")
    s["many"] = ack + b"".join(headers(i, req(b"/%d" % i)) for i in range(1, 40, 2))
    s["cookies"] = ack + headers(1, req(extra=[(b"cookie", b"a=1"), (b"cookie", b"b=2")]))
    s["trailers"] = ack + headers(1, req(b"/t", b"POST"), False) + frame(DATA, 0, 1, b"x") + \
        headers(1, block([(b"x-trailer", b"1")]))
    s["rapid_reset"] = ack + b"".join(
        headers(i, req(), False) + frame(RST, 0, i, struct.pack(">I", 8)) for i in range(1, 80, 2))
    b = req(extra=[(b"x-%d" % i, b"v") for i in range(12)])
    pieces = [b[i:i + 8] for i in range(0, len(b), 8)]
    s["continuation"] = ack + frame(HEADERS, END_STREAM, 1, pieces[0]) + b"".join(
        frame(CONT, END_HEADERS if i == len(pieces) - 1 else 0, 1, p)
        for i, p in enumerate(pieces[1:], 1))
    s["continuation_endless"] = ack + frame(HEADERS, END_STREAM, 1, req()) + \
        frame(CONT, 0, 1, b"") * 40
    s["big_header"] = ack + headers(1, req(extra=[(b"x-big", b"v" * 3000)]))
    s["settings_flood"] = frame(SETTINGS, 0, 0, struct.pack(">HI", 3, 100)) * 150
    s["ping_flood"] = ack + frame(PING, 0, 0, b"12345678") * 150
    s["empty_data"] = ack + headers(1, req(b"/", b"POST"), False) + frame(DATA, 0, 1) * 40
    s["window_update"] = ack + frame(WU, 0, 0, struct.pack(">I", 1)) * 150
    s["priority"] = ack + b"".join(frame(PRIORITY, 0, i, struct.pack(">IB", 0, 16))
                                   for i in range(1, 300, 2))
    s["even_id"] = ack + headers(2, req())
    s["backwards"] = ack + headers(5, req()) + headers(3, req())
    s["goaway"] = ack + headers(1, req()) + frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0))
    s["window_small"] = frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 10)) + ack + \
        headers(1, req()) + headers(3, req())
    s["malformed"] = ack + headers(1, req(extra=[(b"connection", b"close")])) + \
        headers(3, req(extra=[(b"te", b"gzip")])) + headers(5, block([(b":method", b"GET")]))
    out = {name: b"\x2a\x00" + data for name, data in s.items()}
    out["extended_connect"] = b"\x07\x02" + ack + headers(1, block([
        (b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"https"),
        (b":authority", b"a.example"), (b":path", b"/ws")]), False)
    out["extended_connect_data"] = b"\x07\x02" + ack + headers(1, block([
        (b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"https"),
        (b":authority", b"a.example"), (b":path", b"/ws")]), False) + \
        frame(DATA, 0, 1, b"\x81\x80abcd") + frame(DATA, END_STREAM, 1, b"") + \
        headers(3, block([(b":method", b"CONNECT"), (b":protocol", b"foo"), (b":scheme", b"https"),
                          (b":authority", b"a.example"), (b":path", b"/x")]), False) + \
        frame(RST, 0, 3, struct.pack(">I", 8))
    out["no_preface"] = b"\x01\x01GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    return out


def main():
    where = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus", "h2")
    os.makedirs(where, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(where, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()

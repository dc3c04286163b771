#!/usr/bin/env python3
"""Write the seed corpora of the fuzz_session_* targets.

Each seed is a script for tests/harness/gh_script.c: one flags byte
(mode = (flags & 3) % 3: 0 plain, 1 STARTTLS-capable, 2 implicit TLS; 0x04 a
4 KiB send buffer on the session's end; 0x08 the backend rejects logins;
0x10 the backend stays silent), then operations. Run from anywhere:

    python3 tests/fuzz/gen_session_corpus.py

It rewrites the named seeds in tests/fuzz/corpus/session_{imap,pop3,http,http2,tcp}/
(the output is the same on every run) and keeps the units named by their
SHA-1 there: what 10-minute runs found, minimised with libFuzzer's
-merge=1 (README "Tests").

Seeds named known_* reproduce security review findings 1a/1b/1c: they
crashed main at 278b31b at once (their unit tests are in
tests/unit/harness/). --no-known leaves them out, to fuzz an old tree.
"""
import os
import re
import sys

(SEND, RUN, BSEND, BCLOSE, READ_TOGGLE, TIMER, SHUT_WR, CLOSE_NOTIFY,
 BAD_RECORD, CLOSE, TLS_START, HOLD, FLUSH, SETTLE, LOGIN_TOGGLE, RAW,
 REPEAT) = range(17)

PLAIN, STARTTLS, TLS = 0, 1, 2
SMALL_SNDBUF, LOGIN_FAILS, BACKEND_SILENT = 0x04, 0x08, 0x10


def num(n):
    assert 0 <= n < 0x8000
    return bytes([n]) if n < 0x80 else bytes([0x80 | (n >> 8), n & 0xFF])


def b(x):
    return x.encode() if isinstance(x, str) else bytes(x)


def send(x, op=SEND):
    x = b(x)
    return bytes([op]) + num(len(x)) + x


def bsend(x):
    return send(x, BSEND)


def raw(x):
    return send(x, RAW)


def repeat(count, prefix, unit):
    prefix, unit = b(prefix), b(unit)
    return (bytes([REPEAT]) + num(count) + num(len(prefix)) + prefix +
            num(len(unit)) + unit)


def run(n=4):
    return bytes([RUN, n - 1])


def op(*ops):
    return bytes(ops)


def script(flags, *parts):
    return bytes([flags]) + b"".join(parts)


S = op(SETTLE)

IMAP = {
    "login": script(PLAIN, send("a LOGIN alice secret\r\n"), S,
                    send("b SELECT INBOX\r\n"), S, send("c LOGOUT\r\n"), S),
    "login_split": script(PLAIN, send("a LOG"), run(2), send("IN ali"), run(1),
                          send("ce secret\r\nb NOOP\r\n"), S),
    "starttls_login": script(STARTTLS, send("a STARTTLS\r\n"), S, op(TLS_START), S,
                             send("b CAPABILITY\r\n"), S,
                             send("c LOGIN alice secret\r\n"), S),
    "tls_login": script(TLS, send("a LOGIN alice secret\r\n"), S,
                        send("b NOOP\r\n"), S),
    "authenticate_plain_ir": script(PLAIN, send("a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n"), S),
    "authenticate_plain": script(STARTTLS, send("a AUTHENTICATE PLAIN\r\n"), S,
                                 send("AGFsaWNlAHNlY3JldA==\r\n"), S),
    "login_literals": script(PLAIN, send("a LOGIN {5}\r\n"), S, send("alice {6}\r\n"), S,
                             send("secret\r\n"), S),
    "pipelined": script(PLAIN, send("a CAPABILITY\r\nb NOOP\r\nc ID (\"name\" \"x\")\r\n"
                                    "d LOGIN alice secret\r\ne SELECT INBOX\r\nf LOGOUT\r\n"), S),
    "login_rejected": script(PLAIN | LOGIN_FAILS, send("a LOGIN alice bad\r\n"), S,
                             op(LOGIN_TOGGLE), send("b LOGIN alice secret\r\n"), S),
    "eof_mid_command": script(PLAIN, send("a LOG"), run(2), op(SHUT_WR), S),
    "preauth_timeout": script(PLAIN, S, op(TIMER), S),
    "backend_scripted": script(PLAIN | BACKEND_SILENT, send("a LOGIN alice secret\r\n"), S,
                               bsend("* OK [CAPABILITY IMAP4rev1 LITERAL+] hi\r\n"), S,
                               bsend("* ID NIL\r\ngh1 OK\r\ngh2 OK done\r\n"), S,
                               send("b NOOP\r\n"), S, bsend("b OK\r\n"), S, op(BCLOSE), S),
    "backend_login_timeout": script(PLAIN | BACKEND_SILENT, send("a LOGIN alice secret\r\n"),
                                    S, op(TIMER), S),
    # security review 1c
    "known_1c_tls_fail_close_notify": script(TLS | LOGIN_FAILS, op(HOLD),
                                    repeat(1998, "a LOGIN x bad\r\n", "b NOOP\r\n"),
                                    op(CLOSE_NOTIFY, FLUSH), S),
    "tls_bad_record": script(TLS, op(HOLD), send("a NOOP\r\n"), op(BAD_RECORD, FLUSH), S),
    # security review 2
    "unread_flood": script(PLAIN | SMALL_SNDBUF, op(READ_TOGGLE),
                           repeat(400, "", "a NOOP\r\n"), run(16),
                           repeat(400, "", "a NOOP\r\n"), run(16), op(READ_TOGGLE), S),
}

POP3 = {
    "login": script(PLAIN, send("USER alice\r\n"), S, send("PASS secret\r\n"), S,
                    send("STAT\r\n"), S, send("QUIT\r\n"), S),
    "login_pipelined": script(PLAIN, send("CAPA\r\nUSER alice\r\nPASS secret\r\nLIST\r\n"), S),
    "stls_login": script(STARTTLS, send("STLS\r\n"), S, op(TLS_START), S,
                         send("CAPA\r\n"), S, send("USER alice\r\nPASS secret\r\n"), S),
    "tls_login": script(TLS, send("USER alice\r\nPASS secret\r\n"), S),
    "auth_plain_ir": script(PLAIN, send("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"), S),
    "auth_plain": script(STARTTLS, send("AUTH PLAIN\r\n"), S, send("AGFsaWNlAHNlY3JldA==\r\n"), S),
    "auth_login": script(PLAIN, send("AUTH LOGIN\r\n"), S, send("YWxpY2U=\r\n"), S,
                         send("c2VjcmV0\r\n"), S),
    "login_rejected": script(PLAIN | LOGIN_FAILS, send("USER alice\r\nPASS bad\r\n"), S,
                             send("USER alice\r\nPASS again\r\n"), S),
    "eof_mid_command": script(PLAIN, send("USER al"), run(2), op(SHUT_WR), S),
    "preauth_timeout": script(PLAIN, S, op(TIMER), S),
    "backend_scripted": script(PLAIN | BACKEND_SILENT, send("USER alice\r\nPASS secret\r\n"), S,
                               bsend("+OK hi\r\n"), S, bsend("+OK\r\n+OK\r\n+OK in\r\n"), S,
                               send("STAT\r\n"), S, bsend("+OK 0 0\r\n"), S, op(BCLOSE), S),
    # security review 1c
    "known_1c_tls_fail_close_notify": script(TLS | LOGIN_FAILS, op(HOLD),
                                    repeat(2664, "USER x\r\nPASS bad\r\n", "NOOP\r\n"),
                                    op(CLOSE_NOTIFY, FLUSH), S),
    # security review 2
    "unread_flood": script(PLAIN | SMALL_SNDBUF, op(READ_TOGGLE),
                           repeat(500, "", "CAPA\r\n"), run(16), op(READ_TOGGLE), S),
}

GET = "GET /1 HTTP/1.1\r\nHost: mail.a.test\r\n\r\n"
POST_HEAD = "POST /2 HTTP/1.1\r\nHost: mail.a.test\r\nContent-Length: 16364\r\n\r\n"
HTTP = {
    "get": script(PLAIN, send(GET), S),
    "get_post_pipelined": script(PLAIN, send(GET + "POST /2 HTTP/1.1\r\nHost: mail.a.test\r\n"
                                        "Content-Length: 5\r\n\r\nhello" + GET), S),
    "post_chunked": script(PLAIN, send("POST /c HTTP/1.1\r\nHost: mail.a.test\r\n"
                                       "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"), run(4),
                           send("0\r\n\r\n"), S),
    "rest_user": script(PLAIN, send("GET /home/alice/inbox HTTP/1.1\r\nHost: mail.a.test\r\n\r\n"), S),
    "basic_auth": script(PLAIN, send("GET /Microsoft-Server-ActiveSync HTTP/1.1\r\n"
                                     "Host: mail.a.test\r\nAuthorization: Basic YWxpY2U6c2VjcmV0\r\n\r\n"), S),
    "redirect": script(STARTTLS, send("GET /x HTTP/1.1\r\nHost: mail.a.test\r\n\r\n"), S),
    "tls_get": script(TLS, send(GET), S, send(GET), S),
    "keepalive_timeout": script(PLAIN, send(GET), S, op(TIMER), S),
    "backend_scripted": script(PLAIN | BACKEND_SILENT, send(GET), S,
                               bsend("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"), S,
                               send(GET), S, op(BCLOSE), S),
    "eof_mid_head": script(PLAIN, send("GET /1 HTTP/1.1\r\nHo"), run(2), op(SHUT_WR), S),
    "websocket": script(PLAIN | BACKEND_SILENT,
                        send("GET /ws HTTP/1.1\r\nHost: mail.a.test\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\n\r\n"), S,
                        bsend("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\n\r\n"), S, send("\x81\x00"), S,
                        bsend("\x81\x00"), S),
    # compression (gzip of a chunked answer, br of a sized one) and the
    # https fix-up of a Location on TLS
    "gzip_chunked": script(PLAIN | BACKEND_SILENT,
                           send("GET /z HTTP/1.1\r\nHost: mail.a.test\r\nAccept-Encoding: gzip\r\n\r\n"), S,
                           bsend("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nETag: \"e\"\r\n"
                                 "Transfer-Encoding: chunked\r\n\r\n12c\r\n" + "<p>x</p>" * 37 + "abcd\r\n"), S,
                           bsend("5\r\nhello\r\n0\r\n\r\n"), S, send(GET), S),
    "br_sized_tls_location": script(TLS | BACKEND_SILENT,
                                    send("GET /z HTTP/1.1\r\nHost: mail.a.test\r\nAccept-Encoding: br;q=1, gzip;q=0.5\r\n\r\n"), S,
                                    bsend("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                          "Location: http://mail.a.test:8080/x\r\nRefresh: 0; url=http://mail.a.test/y\r\n"
                                          "Content-Length: 300\r\n\r\n" + "{\"a\":1}" * 37), S,
                                    bsend("abcd"), S),
    # security review 1a
    "known_1a_tls_get_post_close_notify": script(TLS, op(HOLD), repeat(16284, GET + POST_HEAD, "B"),
                                        send("B" * 80), op(CLOSE_NOTIFY, FLUSH), S),
    # security review 1b
    "known_1b_tls_post_bad_record": script(TLS, op(HOLD),
                                  repeat(16322, "POST /x HTTP/1.1\r\nHost: mail.a.test\r\n"
                                         "Content-Length: 16332\r\n\r\n", "B"),
                                  send("B" * 10 + "GET /next HTTP/1.1\r\nHost: mail.a.test\r\n\r\n"
                                       + "F" * 149),
                                  op(BAD_RECORD, FLUSH), S),
}

TCP = {
    # Plain, PROXY v2 to the upstream, implicit TLS (the listener's mode).
    "plain_relay": script(PLAIN, send("<stream:stream to='a.test'>"), S, bsend("<stream:features/>"),
                          S, send("x" * 3000), S),
    "proxy_v2_relay": script(STARTTLS, send("bind"), S, bsend("ok"), S),
    "tls_relay": script(TLS, send("\x30\x0c\x02\x01\x01\x60\x07"), S, bsend("\x30\x0c"), S),
    "bytes_before_connect": script(PLAIN | BACKEND_SILENT, send("early"), op(RUN), send("more"), S),
    "upstream_closes": script(PLAIN, send("a"), S, op(BCLOSE), S),
    "client_half_close": script(PLAIN, send("a"), S, op(SHUT_WR), S),
    "connect_timer": script(PLAIN | BACKEND_SILENT, op(TIMER), S, send("late"), S),
    "tls_close_notify": script(TLS, send("a"), S, op(CLOSE_NOTIFY), S),
    "not_reading": script(PLAIN | SMALL_SNDBUF, op(READ_TOGGLE), bsend("y" * 20000), S,
                          bsend("y" * 20000), S, op(READ_TOGGLE), S),
}


# HTTP/2 (fuzz_session_http2: implicit TLS, the client offers ALPN h2).
def h2_frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


def h2_lit(name, value):
    """An HPACK literal field without indexing (lengths < 127, no Huffman)."""
    return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()


def h2_get(sid, path, method="GET", end=True):
    block = b"".join(h2_lit(k, v) for k, v in ((":method", method), (":scheme", "https"),
                                               (":authority", "mail.example.com"),
                                               (":path", path)))
    return h2_frame(1, 0x5 if end else 0x4, sid, block)


def h2_ws(sid, path, protocol="websocket"):
    """A WebSocket extended CONNECT (RFC 8441), no END_STREAM."""
    block = b"".join(h2_lit(k, v) for k, v in ((":method", "CONNECT"), (":protocol", protocol),
                                               (":scheme", "https"),
                                               (":authority", "mail.example.com"),
                                               (":path", path), ("sec-websocket-version", "13")))
    return h2_frame(1, 0x4, sid, block)


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0)
# A fuzz build sends RFC 6455's sample key (http2.c): this is its accept.
H2_WS_101 = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
             "Sec-WebSocket-Protocol: chat\r\n\r\n")
H2_OK = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

HTTP2 = {
    "get": script(TLS, send(H2_PREFACE + h2_get(1, "/echo")), S, bsend(H2_OK), S),
    "two_streams": script(TLS, send(H2_PREFACE + h2_get(1, "/a") + h2_get(3, "/b")), S,
                          bsend(H2_OK), S, bsend(H2_OK), S),
    "post_body": script(TLS, send(H2_PREFACE + h2_get(1, "/up", "POST", end=False) +
                                  h2_frame(0, 0, 1, b"x" * 100) + h2_frame(0, 1, 1, b"y")), S,
                        bsend(H2_OK), S),
    "reset": script(TLS, send(H2_PREFACE + h2_get(1, "/a") +
                              h2_frame(3, 0, 1, (8).to_bytes(4, "big"))), S),
    "chunked_answer": script(TLS, send(H2_PREFACE + h2_get(1, "/c")), S,
                             bsend("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   "3\r\nabc\r\n0\r\n\r\n"), S),
    "timer": script(TLS | BACKEND_SILENT, send(H2_PREFACE + h2_get(1, "/slow")), S,
                    op(TIMER), S),
    "not_reading": script(TLS | SMALL_SNDBUF, op(READ_TOGGLE),
                          send(H2_PREFACE + h2_get(1, "/big")), S,
                          bsend("HTTP/1.1 200 OK\r\nContent-Length: 40000\r\n\r\n" + "z" * 20000),
                          S, bsend("z" * 20000), S, op(READ_TOGGLE), S),
    "goaway": script(TLS, send(H2_PREFACE + h2_frame(7, 0, 0, bytes(8))), S),
    # WebSocket over HTTP/2: a tunnel per stream.
    "ws_echo": script(TLS | BACKEND_SILENT, send(H2_PREFACE + h2_ws(1, "/ws")), S, bsend(H2_WS_101 + "\x81\x01a"),
                      S, send(h2_frame(0, 0, 1, b"\x81\x80abcd")), S, bsend("\x81\x01b"), S,
                      send(h2_frame(0, 1, 1, b"\x88\x80abcd")), S, bsend("\x88\x00"), S,
                      op(BCLOSE), S),
    "ws_two_and_get": script(TLS | BACKEND_SILENT, send(H2_PREFACE + h2_ws(1, "/ws") + h2_get(3, "/a") +
                                       h2_ws(5, "/ws")), S, bsend(H2_WS_101), S, bsend(H2_OK), S,
                             bsend(H2_WS_101), S, send(h2_frame(0, 0, 5, b"x" * 300)), S,
                             send(h2_frame(3, 0, 1, (8).to_bytes(4, "big"))), S),
    "ws_bad_accept": script(TLS | BACKEND_SILENT, send(H2_PREFACE + h2_ws(1, "/ws")), S,
                            bsend(H2_WS_101.replace("s3pP", "AAAA")), S),
    "ws_refused": script(TLS | BACKEND_SILENT, send(H2_PREFACE + h2_ws(1, "/ws") + h2_frame(0, 0, 1, b"early")), S,
                         bsend("HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno"), S),
    "ws_other_protocol": script(TLS, send(H2_PREFACE + h2_ws(1, "/ws", "foo") +
                                          h2_ws(3, "/ws", "WebSocket")), S),
    "ws_backend_close": script(TLS | BACKEND_SILENT, send(H2_PREFACE + h2_ws(1, "/ws")), S,
                               bsend(H2_WS_101 + "bye"), S, op(BCLOSE), S,
                               send(h2_frame(0, 0, 1, b"late")), S),
    "ws_not_reading": script(TLS | SMALL_SNDBUF | BACKEND_SILENT, op(READ_TOGGLE), send(H2_PREFACE + h2_ws(1, "/ws")),
                             S, bsend(H2_WS_101 + "z" * 20000), S, bsend("z" * 30000), S,
                             bsend("z" * 30000), S, op(READ_TOGGLE), S),
    "ws_timer": script(TLS | BACKEND_SILENT, send(H2_PREFACE + h2_ws(1, "/ws")), S, bsend(H2_WS_101), S,
                       op(TIMER), S, op(TIMER), S),
    "ws_end_stream": script(TLS | BACKEND_SILENT, send(H2_PREFACE + h2_ws(1, "/ws")), S, bsend(H2_WS_101), S,
                            send(h2_frame(0, 1, 1, b"fin")), S, bsend("after"), S, op(BCLOSE), S),
}


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    for name, seeds in (("session_imap", IMAP), ("session_pop3", POP3), ("session_http", HTTP),
                        ("session_http2", HTTP2), ("session_tcp", TCP)):
        d = os.path.join(root, name)
        os.makedirs(d, exist_ok=True)
        # Units a fuzzer found and `-merge=1` kept are named by their SHA-1:
        # they stay; the named seeds are written anew.
        for f in os.listdir(d):
            if not re.fullmatch(r"[0-9a-f]{40}", f):
                os.unlink(os.path.join(d, f))
        for seed, data in seeds.items():
            if seed.startswith("known_") and "--no-known" in sys.argv[1:]:
                continue
            with open(os.path.join(d, seed), "wb") as f:
                f.write(data)
        print(f"{d}: {len(os.listdir(d))} seeds")


if __name__ == "__main__":
    main()

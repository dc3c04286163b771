"""Login throttling (reference §2.7): per-IP connections in a fixed window
with protocol overrides, per-user logins, failed logins per IP, the
whitelist, Zimbra's deny messages and keys, counts shared by two gatehouses
through memcached, fail-open when memcached is down, and in-process counts
without memcached.

Clients connect from their own 127.0.0.x addresses, so the fixture's
readiness probe (from 127.0.0.1) is never counted against them."""
import hashlib
import socket
import threading
import time

from ghtest import ALICE, BOB, RawImap, free_port, quote
from test_cache import with_cache
from test_pop3 import pop3_settings
from test_status import http
from test_tls import certs, tls_group  # noqa: F401  (certs is a fixture)

IP_BYE = "* BYE Login rejected from this IP"
USER_BYE = "* BYE Login rejected for this user"


def greet(gh, source, timeout=5.0):
    """Connect from source; c.greeting is the first line, as text."""
    c = RawImap(gh.port, source=source, timeout=timeout)
    c.greeting = c.greeting.decode()
    return c


def refused_from_ip(c):
    assert c.greeting == IP_BYE, c.greeting
    assert c.is_closed(timeout=3)


def login(c, user, tag="a1"):
    c.send("%s LOGIN %s %s\r\n" % (tag, quote(user[0]), quote(user[1])))
    return [line.decode() for line in c.read_tagged(tag)]


def throttle(**kw):
    return {"throttle": kw}


def merged(*dicts):
    out = {}
    for d in dicts:
        for k, v in d.items():
            if isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = {**out[k], **v}
            else:
                out[k] = v
    return out


def test_ip_limit_refuses_the_next_connection_with_zimbras_message(gatehouse, memcached):
    gh = gatehouse(**merged(with_cache(memcached), throttle(ip_limit=3, ip_window=600)))
    held = [greet(gh, "127.0.0.31") for _ in range(3)]
    assert all(c.greeting.startswith("* OK") for c in held)
    late = greet(gh, "127.0.0.31")
    refused_from_ip(late)
    # The counter is Zimbra's key, with the window fixed at the first count.
    key = "throttle:proto=i,ip=127.0.0.31"
    assert memcached.get(key) == b"4"
    assert 590 <= memcached.ttl(key) <= 600
    # Another address is not affected; the connections already in are.
    other = greet(gh, "127.0.0.32")
    assert other.greeting.startswith("* OK")
    assert login(held[0], ALICE)[-1].startswith("a1 OK")
    assert "ip throttle: deny" in gh.error_log()
    for c in held + [other]:
        c.close()


def test_refusal_is_counted_in_metrics(gatehouse, memcached):
    status_port = free_port()
    gh = gatehouse(**merged(with_cache(memcached), throttle(ip_limit=1),
                            {"status": {"address": "127.0.0.1:%d" % status_port}}))
    greet(gh, "127.0.0.33").close()
    refused_from_ip(greet(gh, "127.0.0.33"))
    code, _, body = http(status_port, b"GET /metrics HTTP/1.0\r\n\r\n")
    assert code == 200
    assert b'gatehouse_errors_total{kind="throttled"} 1' in body, body[-2000:]


def test_pop3_override_and_message(gatehouse, memcached):
    gh = gatehouse(**pop3_settings(**merged(with_cache(memcached),
                                            throttle(ip_limit=10, ip_limit_pop3=2))))
    ok = [greet(gh, "127.0.0.34") for _ in range(2)]
    assert all(c.greeting.startswith("+OK") for c in ok)
    late = greet(gh, "127.0.0.34")
    assert late.greeting == "-ERR Login rejected from this IP"
    assert late.is_closed(timeout=3)
    assert memcached.get("throttle:proto=p,ip=127.0.0.34") == b"3"
    for c in ok:
        c.close()


def test_whitelisted_address_is_never_refused(gatehouse, memcached):
    gh = gatehouse(**merged(with_cache(memcached),
                            throttle(ip_limit=2, whitelist=["127.0.0.36", "127.0.1.0/24"])))
    for src in ("127.0.0.36", "127.0.1.7"):
        conns = [greet(gh, src) for _ in range(5)]
        assert all(c.greeting.startswith("* OK") for c in conns), src
        assert login(conns[-1], ALICE)[-1].startswith("a1 OK")
        for c in conns:
            c.close()
    # Not counted at all.
    assert memcached.get("throttle:proto=i,ip=127.0.0.36") is None
    # A neighbour outside the whitelist is.
    greet(gh, "127.0.0.37").close()
    greet(gh, "127.0.0.37").close()
    refused_from_ip(greet(gh, "127.0.0.37"))


def test_two_gatehouses_share_the_count(gatehouse, memcached):
    settings = merged(with_cache(memcached), throttle(ip_limit=3))
    first = gatehouse(**settings)
    second = gatehouse(**settings)
    a = greet(first, "127.0.0.38")
    b = greet(first, "127.0.0.38")
    c = greet(second, "127.0.0.38")
    assert all(x.greeting.startswith("* OK") for x in (a, b, c))
    refused_from_ip(greet(second, "127.0.0.38"))
    refused_from_ip(greet(first, "127.0.0.38"))
    for x in (a, b, c):
        x.close()


def test_hashed_keys(gatehouse, memcached):
    gh = gatehouse(**merged(with_cache(memcached, hash_keys=True), throttle(ip_limit=1)))
    greet(gh, "127.0.0.39").close()
    key = hashlib.sha256(b"throttle:proto=i,ip=127.0.0.39").hexdigest()
    assert memcached.wait_for(key) == b"1"
    refused_from_ip(greet(gh, "127.0.0.39"))


def test_user_limit_counts_successful_logins(gatehouse, memcached):
    gh = gatehouse(**merged(with_cache(memcached), throttle(user_limit=2)))
    for i in range(2):
        c = greet(gh, "127.0.0.40")
        assert login(c, ALICE)[-1].startswith("a1 OK")
        c.close()
    deadline = time.monotonic() + 3
    while memcached.get("throttle:user=" + ALICE[0]) != b"2":
        assert time.monotonic() < deadline, memcached.get("throttle:user=" + ALICE[0])
        time.sleep(0.02)
    c = greet(gh, "127.0.0.41")  # another address: the limit is the user's
    lines = login(c, ALICE)
    assert lines == [USER_BYE, "a1 NO LOGIN failed"], lines
    assert c.is_closed(timeout=3)
    rec = gh.last_audit(result="throttled")
    assert rec["result"] == "throttled" and rec["login"] == ALICE[0], rec
    # Other users log in; a failed password is not a counted login.
    c = greet(gh, "127.0.0.41")
    assert login(c, BOB)[-1].startswith("a1 OK")
    c.close()
    assert memcached.get("throttle:user=" + BOB[0]) == b"1"


def test_user_over_the_limit_after_the_backend_login_gets_bye(gatehouse, memcached, lookup):
    """The check before the lookup only reads the count; the count after the
    backend accepted can still go over (a concurrent login): BYE then."""
    gh = gatehouse(**merged(with_cache(memcached, l1_entries=0), throttle(user_limit=2)))
    key = "throttle:user=" + ALICE[0]
    c = greet(gh, "127.0.0.42")
    assert login(c, ALICE)[-1].startswith("a1 OK")
    c.close()
    assert memcached.wait_for(key) == b"1"
    memcached.command(b"delete route:proto=imap;user=" + ALICE[0].encode() + b"\r\n",
                      until=(None, b"\r\n"))
    lookup.delay = 1.0
    c = greet(gh, "127.0.0.42")
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("lines", login(c, ALICE)))
    t.start()
    time.sleep(0.4)  # the check has read 1 (< 2); the lookup is running
    assert memcached.command(("incr %s 1\r\n" % key).encode(), until=(None, b"\r\n")) == b"2\r\n"
    t.join(10)
    assert result["lines"] == [USER_BYE, "a1 NO LOGIN failed"], result
    assert c.is_closed(timeout=3)
    assert memcached.get(key) == b"3"
    rec = gh.last_audit(result="throttled")
    assert rec["result"] == "throttled", rec


def test_failed_logins_per_ip(gatehouse, memcached):
    gh = gatehouse(**merged(with_cache(memcached), throttle(failed_limit=2, failed_window=300)))
    c = greet(gh, "127.0.0.43")
    for tag in ("a1", "a2"):
        lines = login(c, (ALICE[0], "wrong"), tag=tag)
        assert lines[-1].startswith(tag + " NO"), lines
    # Counted on the thread pool, fire and forget: wait for the second count.
    deadline = time.monotonic() + 3
    while memcached.get("throttle:failed,ip=127.0.0.43") != b"2":
        assert time.monotonic() < deadline, memcached.get("throttle:failed,ip=127.0.0.43")
        time.sleep(0.02)
    # The next attempt on the same connection is refused before any lookup.
    lines = login(c, ALICE, tag="a3")
    assert lines == [IP_BYE, "a3 NO LOGIN failed"], lines
    assert c.is_closed(timeout=3)
    # A new connection from the address is refused at once.
    refused_from_ip(greet(gh, "127.0.0.43"))
    # Others are not.
    c = greet(gh, "127.0.0.44")
    assert login(c, ALICE)[-1].startswith("a1 OK")
    c.close()


def test_failed_count_is_asked_only_for_addresses_seen_failing(gatehouse, memcached):
    """failed_limit is on by default, so its cost matters: a connection from
    an address that never failed a login here makes no memcached round trip
    before its greeting; once the address fails here, its connections are
    checked against the shared count (which another gatehouse may have
    raised)."""
    gh = gatehouse(**merged(with_cache(memcached), throttle(failed_limit=3, failed_window=300)))
    gets = lambda: int(memcached.stats()["cmd_get"])  # noqa: E731
    before = gets()
    for _ in range(5):
        c = greet(gh, "127.0.0.47")
        assert c.greeting.startswith("* OK"), c.greeting
        c.close()
    assert gets() == before, "clean connections asked memcached for their failed count"
    # Another gatehouse counted this address's failures to the limit already.
    memcached.command(b"set throttle:failed,ip=127.0.0.48 0 300 1\r\n3\r\n", until=(None, b"\r\n"))
    c = greet(gh, "127.0.0.48")
    assert c.greeting.startswith("* OK"), "not seen failing here: not asked"
    lines = login(c, (ALICE[0], "wrong"), tag="a1")
    assert lines[-1].startswith("a1 NO"), lines
    c.close()
    # From its first failure here on, the shared count decides.
    deadline = time.monotonic() + 3
    while True:
        c = greet(gh, "127.0.0.48")
        if c.greeting == IP_BYE:
            break
        c.close()
        assert time.monotonic() < deadline, "the shared failed count was not asked"
        time.sleep(0.05)


def test_fail_open_when_memcached_is_down(gatehouse, memcached):
    gh = gatehouse(**merged(with_cache(memcached, timeout=0.2),
                            throttle(ip_limit=1, user_limit=1, failed_limit=1)))
    memcached.stop()
    for i in range(3):
        c = greet(gh, "127.0.0.45")
        assert c.greeting.startswith("* OK"), c.greeting
        assert login(c, ALICE)[-1].startswith("a1 OK")
        c.close()
    # Back: counting resumes.
    memcached.start()
    deadline = time.monotonic() + 15
    while True:
        c = greet(gh, "127.0.0.46")
        g = c.greeting
        c.close()
        if g == IP_BYE:
            break
        assert time.monotonic() < deadline, "throttling did not resume with memcached"
        time.sleep(0.5)


def test_in_process_counts_without_memcached(gatehouse):
    gh = gatehouse(**throttle(ip_limit=2, ip_message="Too many connections from your address"))
    greet(gh, "127.0.0.47").close()
    greet(gh, "127.0.0.47").close()
    c = greet(gh, "127.0.0.47")
    assert c.greeting == "* BYE Too many connections from your address"
    assert c.is_closed(timeout=3)


def test_implicit_tls_is_refused_inside_tls(gatehouse, memcached, certs):
    import ssl
    port = free_port()
    gatehouse(**merged(with_cache(memcached), throttle(ip_limit=1), {
        "tls": tls_group(certs),
        "listen": [{"address": "127.0.0.1:%d" % free_port(), "protocol": "imap"},
                   {"address": "127.0.0.1:%d" % port, "protocol": "imap", "tls": True}]}))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    answers = []
    for _ in range(2):
        raw = socket.create_connection(("127.0.0.1", port), timeout=5,
                                       source_address=("127.0.0.48", 0))
        with ctx.wrap_socket(raw) as s:
            answers.append(s.recv(200))
    assert answers[0].startswith(b"* OK")
    assert answers[1] == (IP_BYE + "\r\n").encode()


def test_config_is_checked(gatehouse_bin, tmp_path):
    import subprocess
    conf = tmp_path / "g.conf"
    conf.write_text('listen = ( { address = "127.0.0.1:1"; protocol = "imap"; } );\n'
                    'throttle = { ip_limit = 5; whitelist = [ "10.1.2.3/8" ]; };\n')
    r = subprocess.run([str(gatehouse_bin), "-t", "-c", str(conf)], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode != 0
    assert "throttle.whitelist" in r.stderr and ":2:" in r.stderr, r.stderr


def test_session_closed_during_its_login_check_frees_the_held_query(gatehouse):
    """Issue 14 (review finding 9): a session closed while its login check
    waits on memcached used to leak the held route query, password copy
    included. memcached here accepts and never answers, so the check is in
    flight when SIGTERM's drain deadline closes the session. Under ASan or
    valgrind the teardown fails on a leak report; everywhere, gatehouse must
    exit cleanly once the check times out."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held = []
    stop = threading.Event()

    def accept():
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])  # read nothing, answer nothing
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        gh = gatehouse(**merged({"cache": {"memcached": ["127.0.0.1:%d" % silent.getsockname()[1]],
                                           "timeout": 2.0}},
                                throttle(user_limit=5), {"shutdown_timeout": 0.2}))
        c = RawImap(gh.port, source="127.0.0.50", timeout=5.0)
        c.send("a1 LOGIN %s %s\r\n" % (quote(ALICE[0]), quote(ALICE[1])))
        deadline = time.monotonic() + 5
        while not held:
            assert time.monotonic() < deadline, "the check never reached memcached"
            time.sleep(0.05)
        time.sleep(0.2)
        assert gh.stop(10.0) == 0
        assert c.is_closed(timeout=3)
        gh.assert_healthy()
    finally:
        stop.set()
        t.join()
        for s in held:
            s.close()
        silent.close()

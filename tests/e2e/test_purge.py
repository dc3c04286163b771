"""`gatehouse purge` and POST /purge on the status listener: a user's
routes and aliases leave memcached (every key form, hashed or not) and
the L1 of every running gatehouse notified; the endpoint answers only
loopback and status.purge_from; bad input is refused before anything is
purged.
"""

import hashlib
import socket
import subprocess

import pytest

from conftest import GATEHOUSE_BIN
from ghtest import free_port
from ghtest import ALICE, BOB, assert_can_login, check_audit

from test_cache import backend, route_key, with_cache
from test_status import http


def status_conf(port, **kw):
    st = {"address": "127.0.0.1:%d" % port}
    st.update(kw)
    return {"status": st}


def purge(gh, *args):
    p = subprocess.run([str(GATEHOUSE_BIN), "purge", "-c", str(gh.conf_path)] + list(args),
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def post_purge(port, query, host="127.0.0.1", source=None):
    req = ("POST /purge%s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" % query).encode()
    return http(port, req, host=host, source=source)[::2]


def two_gatehouses(gatehouse, memcached, **cache):
    ports = [free_port(), free_port()]
    ghs = [gatehouse(**with_cache(memcached, **cache), **status_conf(p)) for p in ports]
    for gh, p in zip(ghs, ports):
        gh.status_port = p
    return ghs


def test_purge_removes_memcached_keys_and_both_l1(gatehouse, lookup, memcached, stores):
    lookup.cache_alias = True
    first, second = two_gatehouses(gatehouse, memcached)
    # "bob" (unqualified) leaves an alias and a route; the second gatehouse
    # finds both in memcached; then each has the route in its L1.
    assert_can_login(first, ("bob", BOB[1]))
    assert memcached.wait_for("alias:user=bob;ip=127.0.0.1") == BOB[0].encode()
    assert memcached.wait_for(route_key(BOB[0])) == backend(stores.b).encode()
    assert_can_login(second, ("bob", BOB[1]))
    assert_can_login(first, ("bob", BOB[1]))
    assert_can_login(second, ("bob", BOB[1]))
    assert len(lookup.requests) == 1
    for gh in (first, second):
        check_audit(gh.last_audit(2), login="bob", user=BOB[0], result="ok", source="l1")

    urls = ["http://127.0.0.1:%d" % g.status_port for g in (first, second)]
    for target in (first, second):
        rc, out, err = purge(first, "-n", urls[0], "-n", urls[1], BOB[0].upper())
        assert rc == 0, out + err
        assert memcached.get(route_key(BOB[0])) is None
        assert memcached.get("alias:user=bob;ip=127.0.0.1") is None
        assert "notify %s: purged %s l1=" % (urls[0], BOB[0].upper()) in out
        assert "notify %s: purged %s l1=" % (urls[1], BOB[0].upper()) in out
        for proto in ("imap", "imapssl", "pop3", "pop3ssl", "http", "httpssl"):
            assert "route:proto=%s;user=%s" % (proto, BOB[0].upper()) in out
            assert "route:proto=%s;user=bob@127.0.0.1" % proto in out
        assert "alias:user=bob;ip=127.0.0.1" in out
        n = len(lookup.requests)
        assert_can_login(target, ("bob", BOB[1]))
        assert len(lookup.requests) == n + 1, "the L1 entry must be gone"
        check_audit(target.last_audit(source="lookup"), login="bob", user=BOB[0], result="ok", source="lookup")
        memcached.wait_for(route_key(BOB[0]))
        memcached.wait_for("alias:user=bob;ip=127.0.0.1")


def test_purge_output_and_case(gatehouse, lookup, memcached, stores):
    first, second = two_gatehouses(gatehouse, memcached)
    assert_can_login(first, ALICE)
    assert memcached.wait_for(route_key(ALICE[0]))
    rc, out, err = purge(first, "-n", "http://127.0.0.1:%d" % first.status_port, ALICE[0])
    assert rc == 0, out + err
    assert "memcached %s: deleted %s\n" % (memcached.address, route_key(ALICE[0])) in out
    assert "memcached %s: not found %s\n" % (memcached.address, route_key(ALICE[0], "pop3")) in out
    assert "purged %s l1=1" % ALICE[0] in out
    assert memcached.get(route_key(ALICE[0])) is None
    # The default notify target: the status listener of the config read.
    rc, out, err = purge(second, ALICE[0])
    assert rc == 0, out + err
    assert "notify http://127.0.0.1:%d: purged %s l1=0" % (second.status_port, ALICE[0]) in out


def test_purge_hashed_keys(gatehouse, lookup, memcached, stores):
    gh = gatehouse(**with_cache(memcached, hash_keys=True))
    assert_can_login(gh, ALICE)
    hashed = hashlib.sha256(route_key(ALICE[0]).encode()).hexdigest()
    assert memcached.wait_for(hashed)
    rc, out, err = purge(gh, "--no-notify", ALICE[0])
    assert rc == 0, out + err
    assert "deleted %s (%s)" % (route_key(ALICE[0]), hashed) in out
    assert memcached.get(hashed) is None


def test_purge_fails_when_memcached_or_notify_fails(gatehouse, lookup, memcached):
    gh = gatehouse(**with_cache(memcached))
    dead = free_port()
    rc, out, _ = purge(gh, "-n", "http://127.0.0.1:%d" % dead, ALICE[0])
    assert rc == 1
    assert "notify http://127.0.0.1:%d: failed" % dead in out
    memcached.stop()
    rc, out, _ = purge(gh, "--no-notify", ALICE[0])
    assert rc == 1
    assert "memcached %s: error route:proto=imap;user=%s" % (memcached.address, ALICE[0]) in out


def test_endpoint_only_from_loopback_or_purge_from(gatehouse):
    """POST /purge is for the administration host: loopback by default, or
    exactly the addresses in status.purge_from (which replaces loopback).
    Loopback addresses only (127.0.0.0/8)."""
    port = free_port()
    gatehouse(status={"address": "127.0.0.1:%d" % port})
    assert post_purge(port, "?user=" + ALICE[0], source="127.0.0.3")[0] == 200
    port2 = free_port()
    gh = gatehouse(status={"address": "127.0.0.1:%d" % port2, "purge_from": ["127.0.0.2/32"]})
    status, body = post_purge(port2, "?user=" + ALICE[0], source="127.0.0.3")
    assert status == 403, body
    assert post_purge(port2, "?user=" + ALICE[0])[0] == 403  # 127.0.0.1: not listed
    status, body = post_purge(port2, "?user=" + ALICE[0], source="127.0.0.2")
    assert (status, body) == (200, ("purged %s l1=0\n" % ALICE[0]).encode())
    # GET /metrics still answers anyone who reaches the listener.
    req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    assert http(port2, req, source="127.0.0.3")[0] == 200
    assert gh.proc.poll() is None


def test_bad_input_is_refused(gatehouse, memcached):
    port = free_port()
    gh = gatehouse(**with_cache(memcached), **status_conf(port))
    for args in ([], ["a b"], ["a\x01b"], ["ok@a.test", "bad\r\nset x"], [""]):
        rc, out, err = purge(gh, *args)
        assert rc == 2, (args, out, err)
        assert out == ""
    rc, _, err = purge(gh, "-n", "ftp://x", "--ip", "not-an-ip", "a")
    assert rc == 2 and "not an IP address" in err
    for q in ("", "?", "?user=", "?user=a%20b", "?user=a+b", "?user=a%0d%0aset%20x",
              "?user=a%00", "?user=a%4", "?name=a", "?user=ok&user=a%01"):
        status, body = post_purge(port, q)
        assert status == 400, (q, body)
    req = b"GET /purge?user=a HTTP/1.1\r\nHost: x\r\n\r\n"
    assert http(port, req)[0] == 405
    assert post_purge(port, "?user=ok%40a.test")[1] == b"purged ok@a.test l1=0\n"
    assert gh.proc.poll() is None

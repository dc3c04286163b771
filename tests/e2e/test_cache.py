"""The route cache end to end: the real gatehouse, real memcached, real
Dovecot mailstores and the fake lookup service (which counts requests).

A warm login costs no lookup; keys and values are Zimbra's; several
gatehouses share one memcached; 50 concurrent cold logins make one lookup;
a mailbox that moved is found at once; logins survive the lookup service
or memcached going away; invalid names never reach memcached.
"""

import hashlib
import os
import re
import shutil
import socket
import tempfile
import threading
import time

import pytest

from ghtest import ALICE, BOB, CAROL, assert_can_login, check_audit, quote, search_count
from mailstore import Mailstore, make_message
from mcd import Memcached

UNAVAILABLE = b"NO [UNAVAILABLE] Service temporarily unavailable, try again later"


def route_key(user, proto="imap"):
    return "route:proto=%s;user=%s" % (proto, user)


def backend(store):
    return "127.0.0.1:%d" % store.imap_port


def with_cache(mc, **kw):
    """gatehouse overrides: memcached at mc (a Memcached or a list of them)."""
    mcs = mc if isinstance(mc, list) else [mc]
    cache = {"memcached": [m.address for m in mcs]}
    cache.update(kw)
    return {"cache": cache}


def oaat(data):
    """Jenkins' one-at-a-time hash (libmemcached's MEMCACHED_HASH_DEFAULT)."""
    h = 0
    for c in data:
        h = (h + c) & 0xFFFFFFFF
        h = (h + (h << 10)) & 0xFFFFFFFF
        h ^= h >> 6
    h = (h + (h << 3)) & 0xFFFFFFFF
    h ^= h >> 11
    return (h + (h << 15)) & 0xFFFFFFFF


def login_line(gh, user, tag="a"):
    with gh.raw() as c:
        line = c.command(tag, "LOGIN %s %s" % (quote(user[0]), quote(user[1])))[-1]
        if line.startswith(tag.encode() + b" OK"):
            c.command("z", "LOGOUT")
        return line


# ---------------------------------------------------------------- warm logins

def test_warm_login_makes_no_lookup(gatehouse, lookup, memcached, stores):
    gh = gatehouse(**with_cache(memcached))
    assert_can_login(gh)
    assert len(lookup.requests) == 1
    assert_can_login(gh)
    assert_can_login(gh)
    assert len(lookup.requests) == 1, "a warm login must not ask the lookup service"
    recs = gh.wait_audit(3)
    check_audit(recs[0], login=ALICE[0], user=ALICE[0], result="ok",
                backend=backend(stores.a), source="lookup")
    for r in recs[1:]:
        check_audit(r, login=ALICE[0], user=ALICE[0], result="ok",
                    backend=backend(stores.a), source="l1")


def test_l1_alone_without_memcached(gatehouse, lookup):
    gh = gatehouse()          # the default: no memcached, L1 on
    assert_can_login(gh)
    assert_can_login(gh)
    assert len(lookup.requests) == 1
    assert gh.last_audit(2)["source"] == "l1"


def test_key_value_and_ttl_in_memcached(gatehouse, lookup, memcached, stores):
    gh = gatehouse(**with_cache(memcached, ttl=1234))
    assert_can_login(gh)
    value = memcached.wait_for(route_key(ALICE[0]))
    assert value == backend(stores.a).encode()
    ttl = memcached.ttl(route_key(ALICE[0]))
    assert 1200 < ttl <= 1234, ttl
    # Login == account: no alias is written.
    assert memcached.get("alias:user=%s;ip=127.0.0.1" % ALICE[0]) is None
    assert memcached.items() == 1


def test_hashed_keys(gatehouse, lookup, memcached, stores):
    gh = gatehouse(**with_cache(memcached, hash_keys=True))
    assert_can_login(gh)
    hashed = hashlib.sha256(route_key(ALICE[0]).encode()).hexdigest()
    assert memcached.wait_for(hashed) == backend(stores.a).encode()
    assert memcached.get(route_key(ALICE[0])) is None
    assert memcached.items() == 1
    assert 3500 < memcached.ttl(hashed) <= 3600


def test_memcached_source_when_l1_is_off(gatehouse, lookup, memcached, stores):
    gh = gatehouse(**with_cache(memcached, l1_entries=0))
    assert_can_login(gh)
    memcached.wait_for(route_key(ALICE[0]))
    assert_can_login(gh)
    assert len(lookup.requests) == 1
    recs = gh.wait_audit(2)
    check_audit(recs[1], login=ALICE[0], user=ALICE[0], result="ok",
                backend=backend(stores.a), source="memcached")


def test_two_gatehouses_share_memcached(gatehouse, lookup, memcached, stores):
    first = gatehouse(**with_cache(memcached))
    second = gatehouse(**with_cache(memcached))
    assert_can_login(first, BOB)
    assert len(lookup.requests) == 1
    memcached.wait_for(route_key(BOB[0]))
    assert_can_login(second, BOB)
    assert len(lookup.requests) == 1, "the second gatehouse must find the route in memcached"
    check_audit(second, login=BOB[0], user=BOB[0], result="ok",
                backend=backend(stores.b), source="memcached")


def test_modula_picks_the_server_zimbra_would(gatehouse, lookup, memcached, stores):
    """Two servers: the key lands on one-at-a-time(key) % 2, in config order;
    with that server down the next one in order takes it."""
    other = Memcached().start()
    try:
        servers = [memcached, other]
        gh = gatehouse(**with_cache(servers, l1_entries=0, retry_interval=30))
        for user in (ALICE, BOB, CAROL):
            assert_can_login(gh, user)
            key = route_key(user[0])
            want = servers[oaat(key.encode()) % 2]
            want.wait_for(key)
            assert servers[1 - servers.index(want)].get(key) is None
        # Take down the server alice's key is on: her next login's route goes
        # to the other one.
        key = route_key(ALICE[0])
        dead = servers[oaat(key.encode()) % 2]
        alive = servers[1 - servers.index(dead)]
        dead.stop()
        assert_can_login(gh)
        assert_can_login(gh)
        alive.wait_for(key)
    finally:
        other.stop()


def test_consistent_distribution(gatehouse, lookup, memcached, stores):
    other = Memcached().start()
    try:
        gh = gatehouse(**with_cache([memcached, other], distribution="consistent",
                                    l1_entries=0))
        for user in (ALICE, BOB, CAROL):
            assert_can_login(gh, user)
        deadline = time.monotonic() + 3
        while memcached.items() + other.items() < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert memcached.items() + other.items() == 3
        for user in (ALICE, BOB, CAROL):
            key = route_key(user[0])
            assert (memcached.get(key) is None) != (other.get(key) is None), key
        assert_can_login(gh, CAROL)
        assert len(lookup.requests) == 3
        assert gh.last_audit(4)["source"] == "memcached"
    finally:
        other.stop()


# ---------------------------------------------------------------- aliases

def test_alias_cached_when_the_lookup_says_so(gatehouse, lookup, memcached, stores):
    lookup.cache_alias = True
    gh = gatehouse(**with_cache(memcached, l1_entries=0))
    assert_can_login(gh, ("bob", BOB[1]))
    assert memcached.wait_for("alias:user=bob;ip=127.0.0.1") == BOB[0].encode()
    assert memcached.wait_for(route_key(BOB[0])) == backend(stores.b).encode()
    assert_can_login(gh, ("bob", BOB[1]))
    assert len(lookup.requests) == 1
    check_audit(gh.last_audit(2), login="bob", user=BOB[0], result="ok",
                backend=backend(stores.b), source="memcached")


def test_alias_not_cached_stays_in_l1(gatehouse, lookup, memcached, stores):
    """ip:port under "bob" would lose the canonical name: L1 only."""
    gh = gatehouse(**with_cache(memcached))
    assert_can_login(gh, ("bob", BOB[1]))
    assert_can_login(gh, ("bob", BOB[1]))
    assert len(lookup.requests) == 1
    check_audit(gh.last_audit(2), login="bob", user=BOB[0], result="ok", source="l1")
    time.sleep(0.2)
    assert memcached.items() == 0
    assert int(memcached.stats()["cmd_get"]) > 0


# ---------------------------------------------------------------- single-flight

def test_concurrent_cold_logins_make_one_lookup(gatehouse, lookup, memcached, stores):
    n = 50
    lookup.delay = 0.5
    gh = gatehouse(workers=2, **with_cache(memcached))
    clients = [gh.raw(timeout=20) for _ in range(n)]
    results = [None] * n
    go = threading.Barrier(n)

    def run(i):
        c = clients[i]
        try:
            go.wait(10)
            results[i] = c.command("a%d" % i, "LOGIN %s %s" % ALICE, timeout=20)[-1]
            c.command("z", "LOGOUT", timeout=10)
        except Exception as e:          # reported below
            results[i] = repr(e).encode()
        finally:
            c.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    bad = [(i, r) for i, r in enumerate(results) if not (r or b"").startswith(b"a%d OK" % i)]
    assert not bad, bad[:5]
    assert len(lookup.requests) == 1, "%d lookups for one cold user" % len(lookup.requests)
    recs = gh.wait_audit(n)
    assert sorted(r["source"] for r in recs).count("lookup") >= 1
    assert all(r["result"] == "ok" for r in recs)


# ---------------------------------------------------------------- invalidation

@pytest.fixture
def store_c():
    """A third mailstore, only for this module: alice lives here first."""
    root = tempfile.mkdtemp(prefix="gh-e2e-c-", dir="/tmp")
    os.chmod(root, 0o755)
    st = Mailstore(os.path.join(root, "store-c"), name="store-c")
    st.add_user(ALICE[0], ALICE[1], [
        make_message("marker store-c", "This message lives on store C.", to=ALICE[0])])
    st.write()
    st.start()
    yield st
    st.terminate()
    st.stop()
    shutil.rmtree(root, ignore_errors=True)


def _marker_count(gh, marker):
    m = gh.imap()
    try:
        assert m.login(*ALICE)[0] == "OK"
        assert m.select("INBOX", readonly=True)[0] == "OK"
        return search_count(m, marker)
    finally:
        m.logout()


def test_moved_mailbox_is_found_without_waiting_for_the_ttl(gatehouse, lookup, memcached,
                                                            stores, store_c):
    lookup.users[ALICE[0]] = ("127.0.0.1", store_c.imap_port, ALICE[0])
    gh = gatehouse(**with_cache(memcached))
    assert _marker_count(gh, "marker store-c") == 1
    assert memcached.wait_for(route_key(ALICE[0])) == backend(store_c).encode()
    assert len(lookup.requests) == 1

    # The mailbox moves to store A; store C goes away.
    store_c.terminate()
    store_c.stop()
    lookup.users[ALICE[0]] = ("127.0.0.1", stores.a.imap_port, ALICE[0])
    t0 = time.monotonic()
    assert _marker_count(gh, "marker store-a") == 1
    assert time.monotonic() - t0 < 3
    assert len(lookup.requests) == 2, "one fresh lookup after the cached route failed"
    check_audit(gh.last_audit(2), login=ALICE[0], user=ALICE[0], result="ok",
                backend=backend(stores.a), source="lookup")
    assert memcached.wait_for(route_key(ALICE[0])) == backend(stores.a).encode()
    assert "looking \"%s\" up again" % ALICE[0] in gh.error_log()
    # From now on the new route is the cached one.
    assert_can_login(gh)
    assert len(lookup.requests) == 2
    assert gh.last_audit(3)["source"] == "l1"


def test_cached_route_refused_twice_fails_after_one_retry(gatehouse, lookup, memcached):
    """The fresh lookup still names the dead backend: one retry only, then
    the temporary failure, and the route is gone from the caches."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    lookup.users[ALICE[0]] = ("127.0.0.1", port, ALICE[0])
    gh = gatehouse(limits={"backend_timeout": 1.0}, **with_cache(memcached))
    try:
        # A backend that never greets: a temporary failure, but the route
        # itself was fine and stays cached.
        assert login_line(gh, ALICE) == b"a " + UNAVAILABLE
        memcached.wait_for(route_key(ALICE[0]))
    finally:
        silent.close()
    t0 = time.monotonic()
    assert login_line(gh, ALICE) == b"a " + UNAVAILABLE
    assert time.monotonic() - t0 < 3
    assert len(lookup.requests) == 2
    check_audit(gh.last_audit(2), login=ALICE[0], result="tempfail",
                backend="127.0.0.1:%d" % port, source="lookup")
    memcached.wait_for(route_key(ALICE[0]), present=False)


def test_wrong_password_forgets_the_route(gatehouse, lookup, memcached, stores):
    gh = gatehouse(**with_cache(memcached))
    assert_can_login(gh)
    memcached.wait_for(route_key(ALICE[0]))
    assert login_line(gh, (ALICE[0], "wrong-secret")).startswith(b"a NO")
    memcached.wait_for(route_key(ALICE[0]), present=False)
    assert len(lookup.requests) == 1, "the failed login itself came from L1"
    assert_can_login(gh)
    assert len(lookup.requests) == 2
    check_audit(gh.last_audit(3), login=ALICE[0], result="ok", source="lookup")
    gh.assert_no_secret("wrong-secret")


# ---------------------------------------------------------------- outages

def test_lookup_down_cached_users_still_log_in(gatehouse, lookup, memcached, stores):
    gh = gatehouse(**with_cache(memcached))
    assert_can_login(gh)
    memcached.wait_for(route_key(ALICE[0]))
    lookup.stop()
    assert_can_login(gh)
    assert gh.last_audit(2)["source"] == "l1"
    t0 = time.monotonic()
    assert login_line(gh, BOB) == b"a " + UNAVAILABLE
    assert time.monotonic() - t0 < 2
    check_audit(gh.last_audit(3), login=BOB[0], result="tempfail", backend="-")
    # A restarted gatehouse has an empty L1: memcached still knows alice.
    assert gh.stop() == 0
    gh.start()
    assert_can_login(gh)
    assert gh.last_audit(4)["source"] == "memcached"


def test_memcached_down_then_back(gatehouse, lookup, memcached, stores):
    gh = gatehouse(**with_cache(memcached, l1_entries=0, retry_interval=1, timeout=0.3))
    assert_can_login(gh)
    memcached.wait_for(route_key(ALICE[0]))
    memcached.stop()
    for _ in range(3):
        t0 = time.monotonic()
        assert_can_login(gh)
        assert time.monotonic() - t0 < 2
    assert len(lookup.requests) == 4
    assert all(r["result"] == "ok" for r in gh.wait_audit(4))
    warnings = [l for l in gh.error_log().splitlines()
                if " warn " in l and "memcached %s" % memcached.address in l]
    assert len(warnings) == 1, warnings

    memcached.start()
    time.sleep(1.2)                      # the server's retry interval
    assert_can_login(gh)
    memcached.wait_for(route_key(ALICE[0]))
    assert "memcached %s: reachable again" % memcached.address in gh.error_log()
    assert_can_login(gh)
    assert gh.last_audit(6)["source"] == "memcached"


def test_memcached_silent_is_bounded(gatehouse, lookup, stores):
    """A memcached that accepts but never answers costs at most the timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        addr = "127.0.0.1:%d" % silent.getsockname()[1]
        gh = gatehouse(cache={"memcached": [addr], "timeout": 0.3, "l1_entries": 0})
        t0 = time.monotonic()
        assert_can_login(gh)
        assert time.monotonic() - t0 < 2.5
        assert_can_login(gh)
    assert re.search(r"warn memcached %s: get failed" % re.escape(addr), gh.error_log())


# ---------------------------------------------------------------- hostile names

def test_bad_names_never_reach_memcached(gatehouse, lookup, memcached):
    gh = gatehouse(**with_cache(memcached))
    names = [b"alice@example.com\r\nset route:proto=imap;user=x 0 0 1",
             b"alice example.com", b"x" * 300, b"tab\there", b"del\x7fete"]
    for i, name in enumerate(names):
        with gh.raw() as c:
            c.send(b"t%d LOGIN {%d+}\r\n%s {12+}\r\nalice-secret\r\n" % (i, len(name), name))
            line = c.read_tagged("t%d" % i)[-1]
            assert re.match(rb"t%d (NO|BAD)" % i, line), line
    stats = memcached.stats()
    assert stats["cmd_get"] == "0" and stats["cmd_set"] == "0", stats
    assert stats["curr_items"] == "0"
    assert lookup.requests == []
    assert_can_login(gh)
    assert int(memcached.stats()["cmd_get"]) > 0

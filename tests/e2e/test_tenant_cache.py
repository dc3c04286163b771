"""The route cache never answers for another tenant (issue 16 part 1).

The fake lookup service qualifies an unqualified name as Zimbra's servlet
does (reference section 1.3): a mail login by the address the client
connected to (X-Proxy-IP: 127.0.0.1 is a.test, 127.0.0.2 is b.test), a web
login by the vhost (X-Proxy-Host), and refuses a Client-IP outside a
domain's allow-list.  "john" of a.test is alice's mailbox on store A,
"john" of b.test is bob's on store B.  Every client connects from
127.0.0.1 (one NAT address) unless a test says otherwise.

Each test failed on the cache as it was (L1 keyed "<proto> <login>",
flights ignoring the proxy and client IPs, HTTP writing the mail alias
`alias:user=<login>;ip=<client ip>`): john of b.test was sent to store A
as alice (`source=l1 user="alice@example.com"`, or source=memcached), and
the lookup never heard of him.
"""

import threading

import pytest

from ghtest import ALICE, BOB, RawImap, ThreadedServer, check_audit, free_port, quote
from httpstore import HttpClient

JOHN_A = ("john", ALICE[1])   # john of a.test: alice's mailbox on store A
JOHN_B = ("john", BOB[1])     # john of b.test: bob's mailbox on store B


def backend(store):
    return "127.0.0.1:%d" % store.imap_port


def login(port, host, user, source="127.0.0.1", tag="a"):
    """LOGIN through the listener host:port; the tagged answer (bytes)."""
    with RawImap(port, host=host, source=source) as c:
        line = c.command(tag, "LOGIN %s %s" % (quote(user[0]), quote(user[1])))[-1]
        if line.startswith(tag.encode() + b" OK"):
            c.command("z", "LOGOUT")
        return line


def ok(line):
    return line.startswith(b"a OK")


@pytest.fixture
def tenants(lookup, stores):
    """The lookup service with two tenants behind two VIPs."""
    lookup.users["john@a.test"] = ("127.0.0.1", {"imap": stores.a.imap_port,
                                                 "pop3": stores.a.pop3_port}, ALICE[0])
    lookup.users["john@b.test"] = ("127.0.0.1", {"imap": stores.b.imap_port,
                                                 "pop3": stores.b.pop3_port}, BOB[0])
    lookup.vips.update({"127.0.0.1": "a.test", "127.0.0.2": "b.test"})
    return lookup


def vip_gatehouse(gatehouse, **overrides):
    """IMAP listeners on VIP A (127.0.0.1, gh.port) and VIP B (127.0.0.2, gh.vip_b)."""
    a, b = free_port(), free_port()
    gh = gatehouse(listen=[{"address": "127.0.0.1:%d" % a, "protocol": "imap"},
                           {"address": "127.0.0.2:%d" % b, "protocol": "imap"}],
                   **overrides)
    gh.vip_b = b
    return gh


def no_l1(memcached):
    return {"cache": {"memcached": [memcached.address], "l1_entries": 0}}


def proxy_ips(lookup):
    return [r.get("X-Proxy-IP") for r in lookup.requests]


# ---------------------------------------------------------------- mail, two VIPs

def test_l1_does_not_serve_one_vips_john_on_another(gatehouse, tenants, stores):
    """Was: VIP B's login got `source=l1 user="alice@example.com"` and went
    to store A with bob's password (NO)."""
    gh = vip_gatehouse(gatehouse)
    assert ok(login(gh.port, "127.0.0.1", JOHN_A))
    assert ok(login(gh.vip_b, "127.0.0.2", JOHN_B))
    recs = gh.wait_audit(2)
    check_audit(recs[0], login="john", user=ALICE[0], result="ok",
                backend=backend(stores.a), source="lookup")
    check_audit(recs[1], login="john", user=BOB[0], result="ok",
                backend=backend(stores.b), source="lookup")
    assert proxy_ips(tenants) == ["127.0.0.1", "127.0.0.2"]
    # Each VIP's own route is warm, and stays its own.
    assert ok(login(gh.vip_b, "127.0.0.2", JOHN_B))
    assert ok(login(gh.port, "127.0.0.1", JOHN_A))
    recs = gh.wait_audit(4)
    check_audit(recs[2], login="john", user=BOB[0], result="ok",
                backend=backend(stores.b), source="l1")
    check_audit(recs[3], login="john", user=ALICE[0], result="ok",
                backend=backend(stores.a), source="l1")
    assert len(tenants.requests) == 2


def test_memcached_alias_is_keyed_by_the_vip(gatehouse, tenants, memcached, stores):
    """Was: the alias was written as `alias:user=john;ip=127.0.0.1` (the
    client's address, the same for every NAT'ed client), so VIP B read
    alice from it: `source=memcached user="alice@example.com"`, NO."""
    tenants.cache_alias = True
    gh = vip_gatehouse(gatehouse, **no_l1(memcached))
    assert ok(login(gh.port, "127.0.0.1", JOHN_A))
    assert memcached.wait_for("alias:user=john;ip=127.0.0.1") == ALICE[0].encode()
    assert ok(login(gh.vip_b, "127.0.0.2", JOHN_B))
    assert memcached.wait_for("alias:user=john;ip=127.0.0.2") == BOB[0].encode()
    assert memcached.wait_for("route:proto=imap;user=%s" % BOB[0]) == backend(stores.b).encode()
    recs = gh.wait_audit(2)
    check_audit(recs[1], login="john", user=BOB[0], result="ok",
                backend=backend(stores.b), source="lookup")
    # Warm: each VIP's alias leads to its own account.
    assert ok(login(gh.vip_b, "127.0.0.2", JOHN_B))
    assert ok(login(gh.port, "127.0.0.1", JOHN_A))
    recs = gh.wait_audit(4)
    check_audit(recs[2], login="john", user=BOB[0], result="ok",
                backend=backend(stores.b), source="memcached")
    check_audit(recs[3], login="john", user=ALICE[0], result="ok",
                backend=backend(stores.a), source="memcached")
    assert proxy_ips(tenants) == ["127.0.0.1", "127.0.0.2"]


class OkImap(ThreadedServer):
    """An IMAP backend that says OK to every command and records the LOGIN
    lines it got."""

    def __init__(self):
        self.logins = []
        ThreadedServer.__init__(self)

    def _serve(self, conn):
        buf = b""
        try:
            conn.sendall(b"* OK fake ready\r\n")
            conn.settimeout(5)
            while not self._stop.is_set():
                while b"\r\n" not in buf:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                line, buf = buf.split(b"\r\n", 1)
                tag, _, rest = line.partition(b" ")
                cmd = rest.split(b" ", 1)[0].upper()
                if cmd == b"LOGIN":
                    self.logins.append(line.decode("latin-1"))
                if cmd == b"LOGOUT":
                    conn.sendall(b"* BYE bye\r\n" + tag + b" OK LOGOUT completed\r\n")
                    return
                conn.sendall(tag + b" OK " + cmd + b" completed\r\n")
        except OSError:
            pass
        finally:
            conn.close()


def test_unqualified_route_key_carries_the_vip(gatehouse, tenants, memcached):
    """A lookup that answers the unqualified name itself (no other
    Auth-User) is cached as `route:proto=imap;user=dave@<VIP>`. Was:
    `route:proto=imap;user=dave`, and VIP A, where no dave exists, got VIP
    B's route from memcached (`source=memcached user="dave"`)."""
    with OkImap() as fake:
        tenants.users["dave@b.test"] = ("127.0.0.1", fake.port, "dave")
        gh = vip_gatehouse(gatehouse, **no_l1(memcached))
        assert ok(login(gh.vip_b, "127.0.0.2", ("dave", "pw-dave")))
        assert memcached.wait_for("route:proto=imap;user=dave@127.0.0.2") == \
            ("127.0.0.1:%d" % fake.port).encode()
        assert memcached.get("route:proto=imap;user=dave") is None
        # VIP A's dave would be dave@a.test: unknown there.
        line = login(gh.port, "127.0.0.1", ("dave", "pw-dave"))
        assert not ok(line), line
        recs = gh.wait_audit(2)
        check_audit(recs[1], login="dave", result="fail")
        assert recs[1]["source"] != "memcached", recs[1]
        assert proxy_ips(tenants) == ["127.0.0.2", "127.0.0.1"]
        assert len(fake.logins) == 1, fake.logins


def test_concurrent_logins_share_a_flight_only_on_the_same_vip(gatehouse, tenants, stores):
    """Was: one flight for every "john", so half of the logins below went to
    the other tenant's mailstore (NO) after a single lookup."""
    tenants.delay = 0.5
    gh = vip_gatehouse(gatehouse)
    results = {}

    def run(i, port, host, user):
        results[i] = login(port, host, user)

    threads = [threading.Thread(target=run, args=(i, gh.port, "127.0.0.1", JOHN_A))
               for i in range(3)]
    threads += [threading.Thread(target=run, args=(i, gh.vip_b, "127.0.0.2", JOHN_B))
                for i in range(3, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(ok(results.get(i, b"")) for i in range(6)), results
    assert sorted(proxy_ips(tenants)) == ["127.0.0.1", "127.0.0.2"], \
        "one lookup per VIP: the three logins on each VIP share it"
    recs = gh.wait_audit(6)
    for r in recs:
        want = backend(stores.a) if r["user"] == ALICE[0] else backend(stores.b)
        assert r["user"] in (ALICE[0], BOB[0]) and r["backend"] == want, r
    assert sum(r["user"] == BOB[0] for r in recs) == 3


# ---------------------------------------------------------------- Client-IP allow-list

def test_client_ip_refused_by_the_domain_is_not_served_from_l1(gatehouse, lookup, stores,
                                                               memcached):
    """Was: after one allowed login from 127.0.0.1, the refused 127.0.0.3
    logged in with `source=l1`, no lookup asked. memcached keeps Zimbra's
    key (no client address): a memcached hit skips the allow-list, as in
    Zimbra (documented in the README)."""
    lookup.users["bob@deny.test"] = ("127.0.0.1", {"imap": stores.b.imap_port}, BOB[0])
    lookup.allowed_ips["deny.test"] = ["127.0.0.1"]
    user = ("bob@deny.test", BOB[1])
    gh = gatehouse()
    assert ok(login(gh.port, "127.0.0.1", user))
    line = login(gh.port, "127.0.0.1", user, source="127.0.0.3")
    assert not ok(line), line
    recs = gh.wait_audit(2)
    assert (recs[1]["client"].split(":")[0], recs[1]["result"]) == ("127.0.0.3", "fail"), recs[1]
    assert "not allowed" in recs[1]["reason"], recs[1]
    assert [r.get("Client-IP") for r in lookup.requests] == ["127.0.0.1", "127.0.0.3"]
    # The allowed address is still warm in L1.
    assert ok(login(gh.port, "127.0.0.1", user))
    assert gh.wait_audit(3)[2]["source"] == "l1"

    # memcached, L1 off: the shared route has no client address in its key.
    lookup.cache_alias = True
    mgh = gatehouse(**no_l1(memcached))
    assert ok(login(mgh.port, "127.0.0.1", user))
    assert memcached.wait_for("alias:user=bob@deny.test;ip=127.0.0.1") == BOB[0].encode()
    memcached.wait_for("route:proto=imap;user=%s" % BOB[0])
    assert ok(login(mgh.port, "127.0.0.1", user, source="127.0.0.3"))
    rec = mgh.wait_audit(2)[1]
    assert (rec["client"].split(":")[0], rec["source"]) == ("127.0.0.3", "memcached"), rec


# ---------------------------------------------------------------- web, two vhosts

def web_users(lookup, web, stores):
    lookup.vhosts.update({"mail.a.test": "a.test", "mail.b.test": "b.test"})
    lookup.users["john@a.test"] = ("127.0.0.1", {"imap": stores.a.imap_port,
                                                 "http": web.a.port}, ALICE[0])
    lookup.users["john@b.test"] = ("127.0.0.1", {"imap": stores.b.imap_port,
                                                 "http": web.b.port}, BOB[0])


def test_l1_does_not_serve_one_vhosts_john_on_another(http_gh, web, lookup, stores):
    """Was: the second request (Host mail.b.test) went to store-a with no
    lookup: L1 held "http john"."""
    web_users(lookup, web, stores)
    gh = http_gh()
    with HttpClient(gh.https_port, tls=True) as c:
        for host, store in (("mail.a.test", "store-a"), ("mail.b.test", "store-b"),
                            ("mail.a.test", "store-a"), ("mail.b.test", "store-b")):
            r = c.request(path="/home/john/inbox", host=host)
            assert (r.status, r.backend) == (200, store), (host, r)
    johns = [q for q in lookup.requests if q.get("Auth-User") == "john"]
    assert [q.get("X-Proxy-Host") for q in johns] == ["mail.a.test", "mail.b.test"]


def test_web_alias_is_keyed_by_vhost_and_never_routes_mail(http_gh, gatehouse, web, lookup,
                                                          stores, memcached):
    """Was: one unauthenticated GET wrote `alias:user=john;ip=127.0.0.1`
    (the mail alias, by client address), and an IMAP login of john on VIP B
    from the same address went to store A as alice (`source=memcached`)."""
    web_users(lookup, web, stores)
    lookup.vips.update({"127.0.0.1": "a.test", "127.0.0.2": "b.test"})
    lookup.cache_alias = True
    wgh = http_gh(cache={"memcached": [memcached.address], "l1_entries": 0})
    with HttpClient(wgh.https_port, tls=True) as c:
        r = c.request(path="/home/john/inbox", host="mail.a.test")
        assert (r.status, r.backend) == (200, "store-a"), r
    assert memcached.wait_for("alias:user=john;vhost=mail.a.test") == ALICE[0].encode()
    assert memcached.get("alias:user=john;ip=127.0.0.1") is None, "web wrote a mail alias"

    mgh = vip_gatehouse(gatehouse, **no_l1(memcached))
    assert ok(login(mgh.vip_b, "127.0.0.2", JOHN_B))
    check_audit(mgh.wait_audit(1)[0], login="john", user=BOB[0], result="ok",
                backend=backend(stores.b), source="lookup")

    # The vhost alias serves that vhost only.
    with HttpClient(wgh.https_port, tls=True) as c:
        r = c.request(path="/home/john/inbox", host="mail.b.test")
        assert (r.status, r.backend) == (200, "store-b"), r
        r = c.request(path="/home/john/inbox", host="mail.a.test")
        assert (r.status, r.backend) == (200, "store-a"), r
    johns = [q.get("X-Proxy-Host") for q in lookup.requests
             if q.get("Auth-User") == "john" and q.get("Auth-Protocol", "").startswith("http")]
    assert johns == ["mail.a.test", "mail.b.test"], johns


# ---------------------------------------------------------------- Zimbra's client tags

def test_client_tag_is_looked_up_without_and_sent_upstream_with(gatehouse, lookup, memcached):
    """Was: the lookup was asked for "tagged@a.test/tb" (user not found)."""
    with OkImap() as fake:
        lookup.users["tagged@a.test"] = ("127.0.0.1", fake.port, "tagged@a.test")
        gh = gatehouse(cache={"memcached": [memcached.address]})
        assert ok(login(gh.port, "127.0.0.1", ("tagged@a.test/tb", "pw-tagged")))
        assert [q.get("Auth-User") for q in lookup.requests] == ["tagged@a.test"]
        assert memcached.wait_for("route:proto=imap;user=tagged@a.test") == \
            ("127.0.0.1:%d" % fake.port).encode()
        assert memcached.get("route:proto=imap;user=tagged@a.test/tb") is None
        # Another tag, the same cached route.
        assert ok(login(gh.port, "127.0.0.1", ("tagged@a.test/wm", "pw-tagged")))
        assert len(lookup.requests) == 1
        recs = gh.wait_audit(2)
        check_audit(recs[0], login="tagged@a.test/tb", user="tagged@a.test", result="ok",
                    source="lookup")
        check_audit(recs[1], login="tagged@a.test/wm", user="tagged@a.test", result="ok",
                    source="l1")
        logins = [l.split(" ", 1)[1] for l in fake.logins]
        assert logins == ['LOGIN "tagged@a.test/tb" "pw-tagged"',
                          'LOGIN "tagged@a.test/wm" "pw-tagged"'], fake.logins

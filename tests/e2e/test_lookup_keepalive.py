"""The lookup client keeps its connections alive (route/lookup.c): one
connection carries many lookups, a connection the service closed or dropped
is replaced without failing the login or holding the server down, and the
idle pool is bounded in number and in time."""

import threading
import time

from ghtest import ALICE, BOB, assert_can_login, quote

NOBODY_PASS = "whatever"


def login_line(gh, user, password, tag="a"):
    with gh.raw() as c:
        line = c.command(tag, "LOGIN %s %s" % (quote(user), quote(password)))[-1]
        if line.startswith(tag.encode() + b" OK"):
            c.command("z", "LOGOUT")
        return line


def wait_for(pred, timeout):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_one_connection_carries_many_lookups(gatehouse, lookup, stores):
    gh = gatehouse(workers=1, limits={"auth_failure_delay": 0})
    assert_can_login(gh, ALICE)
    assert_can_login(gh, BOB)
    assert login_line(gh, "nobody@example.com", NOBODY_PASS).startswith(b"a NO")
    assert len(lookup.requests) == 3
    assert lookup.connections == 1
    assert all(r.get("Connection", "").lower() == "keep-alive" for r in lookup.requests)


def test_connection_dropped_by_the_service_is_replaced(gatehouse, lookup, stores):
    """The service closes a kept-alive connection when the next request
    arrives on it (unanswered): the login goes on over a new connection,
    without a warning and without holding the server down."""
    gh = gatehouse(workers=1)
    assert_can_login(gh, ALICE)
    lookup.drop_reused = True
    assert_can_login(gh, BOB)
    assert lookup.connections == 2
    assert [r.get("Auth-User") for r in lookup.requests] == [ALICE[0], BOB[0]]
    assert "lookup server" not in gh.error_log()
    lookup.drop_reused = False
    assert login_line(gh, "nobody@example.com", NOBODY_PASS).startswith(b"a NO")
    assert lookup.connections == 2


def test_connection_closed_by_the_service_is_reopened(gatehouse, lookup, stores):
    """A restarted service closed every connection: the next lookup
    connects anew and the login succeeds."""
    gh = gatehouse(workers=1)
    assert_can_login(gh, ALICE)
    lookup.stop()
    lookup.start()
    assert_can_login(gh, BOB)
    assert lookup.connections == 2
    assert "lookup server" not in gh.error_log()


def test_not_reused_when_the_service_closes(gatehouse, lookup, stores):
    """A service that answers Connection: close gets a connection per
    lookup, as before."""
    lookup.keep_alive = False
    gh = gatehouse(workers=1)
    assert_can_login(gh, ALICE)
    assert_can_login(gh, BOB)
    assert lookup.connections == 2
    assert wait_for(lambda: lookup.open == 0, 2)


def test_idle_pool_is_bounded_in_number_and_time(gatehouse, lookup, stores):
    """20 lookups at once open 20 connections; at most 8 per worker stay
    open once they are answered, and none 5 s after."""
    lookup.delay = 0.5
    gh = gatehouse(workers=1, limits={"auth_failure_delay": 0})
    lines = []

    def one(i):
        lines.append(login_line(gh, "nobody%d@example.com" % i, NOBODY_PASS, tag="t%d" % i))

    ts = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert len(lines) == 20 and all(b" NO " in l for l in lines), lines
    assert lookup.connections == 20
    assert wait_for(lambda: lookup.open <= 8, 2), lookup.open
    time.sleep(0.5)
    assert lookup.open <= 8
    assert wait_for(lambda: lookup.open == 0, 8), lookup.open

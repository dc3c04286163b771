"""SIGHUP reloads the whole configuration without dropping sessions: route
table changes, listeners added and removed, a broken file refused."""
import imaplib
import re
import signal
import socket
import time

import pytest

from ghtest import ALICE, BOB, check_audit, free_port, to_libconfig


def _wait_log(gh, pattern, count, timeout=5.0):
    deadline = time.monotonic() + timeout
    while len(re.findall(pattern, gh.error_log())) < count:
        if time.monotonic() > deadline:
            pytest.fail("%r not logged %d time(s):\n%s" % (pattern, count, gh.error_log()[-2000:]))
        time.sleep(0.02)


def _reload(gh, ok_before, bad_before, expect_ok):
    gh.conf_path.write_text(to_libconfig(gh.settings))
    gh.signal(signal.SIGHUP)
    if expect_ok:
        _wait_log(gh, r"reloaded .*new sessions use it", ok_before + 1)
        time.sleep(0.2)  # the workers take the snapshot through their async handles
    else:
        _wait_log(gh, r"reload refused", bad_before + 1)


def _login_lands_on(port, user, store):
    m = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    assert m.login(*user)[0] == "OK"
    assert m.select("INBOX", readonly=True)[0] == "OK"
    typ, data = m.search(None, "SUBJECT", '"marker %s"' % store)
    assert typ == "OK" and data[0].split(), (store, data)
    m.logout()


def test_reload_routes_and_listeners_keeps_sessions(gatehouse, stores):
    """Static routes only: before the reload only alice has a route; the
    reload adds one for the rest of example.com (bob, on store B) and a
    second listener, then removes the first listener."""
    first = free_port()
    gh = gatehouse(lookup=None,
                   routes=[{"match": ALICE[0], "server": "127.0.0.1:%d" % stores.a.imap_port}],
                   listen=[{"address": "127.0.0.1:%d" % first, "protocol": "imap"}])
    # An IMAP session open across the reload.
    old = imaplib.IMAP4("127.0.0.1", first, timeout=10)
    assert old.login(*ALICE)[0] == "OK"
    assert old.select("INBOX", readonly=True)[0] == "OK"
    m = imaplib.IMAP4("127.0.0.1", first, timeout=10)
    with pytest.raises(m.error):
        m.login(*BOB)               # no route for bob yet
    m.shutdown()

    second = free_port()
    gh.settings["routes"].append({"match": "@example.com",
                                  "server": "127.0.0.1:%d" % stores.b.imap_port})
    gh.settings["listen"].append({"address": "127.0.0.1:%d" % second, "protocol": "imap"})
    _reload(gh, 0, 0, True)
    assert "adding listener 127.0.0.1:%d" % second in gh.error_log()

    assert old.noop()[0] == "OK"                   # the session survived
    assert old.select("INBOX", readonly=True)[0] == "OK"
    _login_lands_on(second, BOB, "store-b")        # new listener, new route
    _login_lands_on(first, ALICE, "store-a")       # old listener, old route
    check_audit(gh, login=ALICE[0], result="ok", source="static")

    # Remove the first listener: the open session on it goes on; new
    # connections to it are refused.
    gh.settings["listen"] = [gh.settings["listen"][1]]
    _reload(gh, 1, 0, True)
    assert old.noop()[0] == "OK"
    time.sleep(0.1)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", first), timeout=2).close()
    _login_lands_on(second, ALICE, "store-a")

    # A broken file is refused and everything stays as it was.
    gh.settings["limits"]["max_line"] = 3
    gh.conf_path.write_text(to_libconfig(gh.settings))
    gh.signal(signal.SIGHUP)
    _wait_log(gh, r"reload refused.*limits\.max_line", 1)
    _login_lands_on(second, BOB, "store-b")
    assert old.noop()[0] == "OK"
    old.logout()


def test_reload_refuses_a_listener_it_cannot_bind(gatehouse, stores):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))          # no SO_REUSEPORT: nobody may share it
    taken.listen(1)
    port = free_port()
    gh = gatehouse(listen=[{"address": "127.0.0.1:%d" % port, "protocol": "imap"}])
    gh.settings["listen"].append({"address": "127.0.0.1:%d" % taken.getsockname()[1],
                                  "protocol": "imap"})
    _reload(gh, 0, 0, False)
    assert re.search(r"reload refused.*listen\.\[1\]\.address: cannot listen on", gh.error_log())
    _login_lands_on(port, ALICE, "store-a")
    taken.close()

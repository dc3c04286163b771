"""TLS towards the mailstores and the lookup service.

A Dovecot mailstore that only speaks IMAPS on its internal port (Zimbra's
7993 with zimbraReverseProxySSLToUpstreamEnabled), and the lookup service
over HTTPS (Zimbra's 7072 is HTTPS). gatehouse must ask the lookup for
`imapssl`, speak TLS to the backend (optionally verifying its certificate
and name), and still log the user in with the client seeing plain IMAP.
"""
import os
import ssl
import subprocess

import pytest

from ghtest import check_audit
from lookupd import LookupServer
from mailstore import Mailstore, make_message

USER, PASSWORD = "dave@example.com", "dave-secret"


def _cert(directory, name, cn, san):
    crt, key = os.path.join(directory, name + ".crt"), os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "2", "-subj", "/CN=" + cn, "-addext", "subjectAltName=" + san],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(key, 0o644)  # Dovecot's master reads it as root, login processes get it from there
    return crt, key


@pytest.fixture(scope="module")
def tls_store(tmp_path_factory):
    base = "/tmp/gh-e2e-upstream-%d" % os.getpid()
    os.makedirs(base, exist_ok=True)
    os.chmod(base, 0o755)
    crt, key = _cert(base, "store", "mailstore.test", "IP:127.0.0.1,DNS:mailstore.test")
    other, _ = _cert(base, "other", "someone.else", "DNS:someone.else")
    store = Mailstore(os.path.join(base, "store"))
    store.ssl_cert, store.ssl_key = crt, key
    store.add_user(USER, PASSWORD, [make_message("marker store-tls", "over TLS")])
    store.write()
    store.start()
    store.ca, store.wrong_ca = crt, other
    yield store
    store.stop()
    subprocess.run(["rm", "-rf", base])


@pytest.fixture
def https_lookup(tls_store):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls_store.ssl_cert, tls_store.ssl_key)
    srv = LookupServer(users={USER: ("127.0.0.1", tls_store.imaps_port, USER)})
    srv.ssl_context = ctx
    srv.start()
    yield srv
    srv.stop()


def _login_and_find_marker(gh):
    m = gh.imap()
    assert m.login(USER, PASSWORD)[0] == "OK"
    assert m.select("INBOX")[0] == "OK"
    typ, data = m.search(None, "SUBJECT", '"marker store-tls"')
    assert typ == "OK" and data[0].split(), data
    m.logout()


def test_backend_over_tls_with_https_lookup(gatehouse, https_lookup, tls_store):
    gh = gatehouse(lookup={"servers": [https_lookup.url]}, upstream={"tls": True})
    _login_and_find_marker(gh)
    req = https_lookup.requests[-1]
    assert req["Auth-Protocol"] == "imapssl"
    assert req["Auth-User"] == USER
    check_audit(gh, login=USER, user=USER, result="ok",
                backend="127.0.0.1:%d" % tls_store.imaps_port, source="lookup")
    # Dovecot saw a TLS connection from the proxy, on its IMAPS port.
    log = tls_store.log_text()
    assert "user=<%s>" % USER in log and "TLS" in log


def test_backend_certificate_verified(gatehouse, https_lookup, tls_store):
    gh = gatehouse(lookup={"servers": [https_lookup.url], "verify": True},
                   upstream={"tls": True, "verify": True, "ca": tls_store.ca})
    _login_and_find_marker(gh)


def test_backend_certificate_rejected_is_a_prompt_tempfail(gatehouse, https_lookup, tls_store):
    gh = gatehouse(lookup={"servers": [https_lookup.url]},
                   upstream={"tls": True, "verify": True, "ca": tls_store.wrong_ca})
    m = gh.imap()
    with pytest.raises(m.error) as e:
        m.login(USER, PASSWORD)
    assert b"[UNAVAILABLE]" in str(e.value).encode()
    check_audit(gh, login=USER, result="tempfail")
    assert "certificate verify failed" in gh.error_log()
    # gatehouse keeps serving: the same user without verification logs in.
    gh2 = gatehouse(lookup={"servers": [https_lookup.url]}, upstream={"tls": True})
    _login_and_find_marker(gh2)


def test_lookup_certificate_rejected(gatehouse, https_lookup, tls_store):
    gh = gatehouse(lookup={"servers": [https_lookup.url], "verify": True},
                   upstream={"tls": True, "ca": tls_store.wrong_ca})
    m = gh.imap()
    with pytest.raises(m.error) as e:
        m.login(USER, PASSWORD)
    assert b"[UNAVAILABLE]" in str(e.value).encode()
    assert "TLS" in gh.error_log()
    assert https_lookup.requests == []


def test_plain_backend_port_with_upstream_tls_fails_cleanly(gatehouse, https_lookup, tls_store):
    """A backend that does not speak TLS (a plain IMAP port) must give a
    prompt NO [UNAVAILABLE], not a hang or garbage to the client."""
    https_lookup.users[USER] = ("127.0.0.1", tls_store.imap_port, USER)
    gh = gatehouse(lookup={"servers": [https_lookup.url]}, upstream={"tls": True})
    m = gh.imap()
    with pytest.raises(m.error) as e:
        m.login(USER, PASSWORD)
    assert b"[UNAVAILABLE]" in str(e.value).encode()

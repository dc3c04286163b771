"""The admin console listener (issue 18, item 4): Zimbra's 9071 / Carbonio's
6071 in front of the mailstores' 7071 over TLS.

An upstream group with `admin = true` is nginx's zmauth_admin: requests are
routed by the zimbraId of the ZM_ADMIN_AUTH_TOKEN cookie alone, the lookup
is asked with `Auth-Zimbra-Admin: True`, and the answer is cached apart from
users' routes (L1, the single-flight table, and memcached under Zimbra's
`route:proto=<p>;admin=1;id=<id>`), so an admin route never answers a user's
request nor the reverse. `rewrite_redirects = true` sends a backend's
`Location: https://<host>:7071/...` back as the client's Host (the listener
port). Local answers (cookie guard 307, fixed answers) carry
http.add_headers, the vhost's and the location's.

The lookup (lookupd.LookupServer) answers admin requests from .admin_ids
only, as the servlet accepts admin accounts only there; its request log
shows what gatehouse asked."""

import ssl
import subprocess
import urllib.parse

import pytest

from conftest import ZIMBRA_IDS, mint_zm_auth_token
from ghtest import ALICE, free_port
from httpstore import HttpBackend, HttpClient

HOST = "mail.example.com"
ZID = ZIMBRA_IDS[ALICE[0]]
HSTS = "max-age=31536000; includeSubDomains"


@pytest.fixture(scope="module")
def up_cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("admincert")
    crt, key = str(d / "up.crt"), str(d / "up.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "2", "-subj", "/CN=mailstore.internal",
                    "-addext", "subjectAltName=DNS:mailstore.internal"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return crt, key


@pytest.fixture
def tls_backends(up_cert):
    """Factory: tls_backends(*names) -> started TLS HttpBackends."""
    crt, key = up_cert
    made = []

    def factory(*names):
        out = []
        for n in names:
            b = HttpBackend(n)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(crt, key)
            b.ssl_context = ctx
            made.append(b.start())
            out.append(made[-1])
        return out

    yield factory
    for b in made:
        b.stop()


def admin_site(gatehouse, web, web_certs, up_cert, tmp_path, admin_servers, user_servers,
               **extra):
    """A main HTTPS listener whose "/" goes to the routed TLS group "ms", and
    an admin listener whose /service goes to the admin group (admin = true,
    rewrite_redirects = true) with Host <host>:7071; "/" there is Carbonio's
    cookie guard, /robots.txt a fixed answer. Returns (gh, main, admin)."""
    crt, _ = up_cert
    main_port, admin_port = free_port(), free_port()
    tls_group = {"tls": True, "sni": "mailstore.internal", "verify": True,
                 "balance": "route"}
    settings = dict(
        tls={"cert": web_certs.crt, "key": web_certs.key},
        vhosts=[{"names": [HOST], "cert": web_certs.crt, "key": web_certs.key,
                 "add_headers": ["X-Frame-Options: sameorigin"]}],
        upstream={"ca": crt},
        http={"backends": web.hash_backends(), "server_name": HOST,
              "access_log": str(tmp_path / "access.log"),
              "add_headers": ["Strict-Transport-Security: " + HSTS]},
        upstreams=[dict(tls_group, name="admin", servers=admin_servers, admin=True,
                        rewrite_redirects=True),
                   dict(tls_group, name="ms", servers=user_servers)],
        locations=[{"match": "/", "upstream": "ms"}],
        listen=[{"address": "127.0.0.1:%d" % main_port, "protocol": "http", "tls": True},
                {"address": "127.0.0.1:%d" % admin_port, "protocol": "http", "tls": True,
                 "locations": [
                     {"match": "^~ /service", "upstream": "admin", "host": "$host:7071"},
                     {"match": "= /status", "upstream": "admin", "host": "$host:7071"},
                     {"match": "= /robots.txt", "return": 200, "body": "no\n",
                      "add_headers": ["X-Robots-Tag: noindex"]},
                     {"match": "/", "redirect": "/carbonioAdmin", "status": 307,
                      "require_cookie": "ZM_ADMIN_AUTH_TOKEN", "login_redirect": "/login/",
                      "add_headers": ["X-Content-Type-Options: nosniff"]}]}])
    settings.update(extra)
    return gatehouse(**settings), main_port, admin_port


def get(port, path, cookie=None, host=HOST):
    with HttpClient(port) as c:
        return c.request(path=path, host=host,
                         headers=[("Cookie", cookie)] if cookie else [])


def lookups(lookup):
    """(Auth-Method, Auth-User, Auth-Protocol, admin?) of each lookup so far."""
    return [(r.get("Auth-Method"), r.get("Auth-User"), r.get("Auth-Protocol"),
             r.get("Auth-Zimbra-Admin")) for r in lookup.requests]


def test_admin_cookie_routes_through_an_admin_lookup_and_never_shares_a_route(
        gatehouse, lookup, web, web_certs, up_cert, tls_backends, tmp_path):
    admin_a, admin_h, user_a, user_h = tls_backends("admin-a", "admin-h", "user-a", "user-h")
    lookup.admin_ids[ZID] = ("127.0.0.1", admin_a.port, ALICE[0])
    lookup.ids[ZID] = ("127.0.0.1", {"http": user_a.port}, ALICE[0])
    gh, main, admin = admin_site(gatehouse, web, web_certs, up_cert, tmp_path,
                                 [admin_h.address], [user_h.address])
    token = mint_zm_auth_token(ZID)

    # The admin console: routed by ZM_ADMIN_AUTH_TOKEN through an admin
    # lookup to the server it names, over TLS, Host <host>:7071.
    r = get(admin, "/service/admin/soap/GetInfoRequest",
            "ZM_ADMIN_AUTH_TOKEN=%s; JSESSIONID=1" % token)
    assert (r.status, r.backend) == (200, "admin-a"), r
    hdrs = {k.lower(): v for k, v in r.json()["headers"]}
    assert hdrs["host"] == "mail.example.com:7071"
    assert lookups(lookup) == [("zimbraId", ZID, "httpssl", "True")]
    raw = lookup.requests[0].raw.decode()
    # Where nginx's zmauth puts it: after Client-IP, before X-Proxy-Host.
    assert raw.index("Client-IP:") < raw.index("Auth-Zimbra-Admin: True") < \
        raw.index("X-Proxy-Host:"), raw

    # The same token value as a user's ZM_AUTH_TOKEN on 443: a user lookup
    # (no admin header), not the admin route from L1.
    r = get(main, "/service/soap/GetInfoRequest", "ZM_AUTH_TOKEN=%s" % token)
    assert (r.status, r.backend) == (200, "user-a"), r
    assert lookups(lookup)[1] == ("zimbraId", ZID, "httpssl", None)

    # Both now come from L1, each its own route.
    assert get(admin, "/service/x", "ZM_ADMIN_AUTH_TOKEN=" + token).backend == "admin-a"
    assert get(main, "/service/x", "ZM_AUTH_TOKEN=" + token).backend == "user-a"
    assert len(lookup.requests) == 2

    # On the admin listener a user's cookie (or a REST path user) routes
    # nothing: the admin group's hash, no lookup.
    assert get(admin, "/service/home/%s/inbox" % ALICE[0],
               "ZM_AUTH_TOKEN=" + token).backend == "admin-h"
    assert get(admin, "/service/x").backend == "admin-h"
    assert len(lookup.requests) == 2
    # The token never reaches a log (the http_gh-style check).
    gh.assert_no_secret(token.split("_", 2)[2], token.split("_", 2)[1])


def test_admin_route_in_memcached_under_zimbras_admin_key(
        gatehouse, lookup, web, web_certs, up_cert, tls_backends, tmp_path, memcached):
    admin_a, admin_h, user_a, user_h = tls_backends("admin-a", "admin-h", "user-a", "user-h")
    lookup.admin_ids[ZID] = ("127.0.0.1", admin_a.port, ALICE[0])
    lookup.ids[ZID] = ("127.0.0.1", {"http": user_a.port}, ALICE[0])
    # A user's route for the id is in memcached already: an admin request
    # must not take it.
    user_key = "route:proto=httpssl;id=%s" % ZID
    admin_key = "route:proto=httpssl;admin=1;id=%s" % ZID
    value = b"127.0.0.1:%d" % user_a.port
    memcached.command(b"set %s 0 0 %d\r\n%s\r\n" % (user_key.encode(), len(value), value),
                      until=(None, b"\r\n"))
    gh, main, admin = admin_site(gatehouse, web, web_certs, up_cert, tmp_path,
                                 [admin_h.address], [user_h.address],
                                 cache={"memcached": [memcached.address], "l1_entries": 0})
    token = mint_zm_auth_token(ZID)
    r = get(admin, "/service/admin/soap/GetInfoRequest", "ZM_ADMIN_AUTH_TOKEN=" + token)
    assert (r.status, r.backend) == (200, "admin-a"), r
    assert lookups(lookup) == [("zimbraId", ZID, "httpssl", "True")]
    assert memcached.wait_for(admin_key) == b"127.0.0.1:%d" % admin_a.port
    assert memcached.get(user_key) == value
    # With L1 off, the next admin request is answered by memcached's admin
    # key, the user's by the user key: no further lookup.
    assert get(admin, "/service/y", "ZM_ADMIN_AUTH_TOKEN=" + token).backend == "admin-a"
    assert get(main, "/service/y", "ZM_AUTH_TOKEN=" + token).backend == "user-a"
    assert len(lookup.requests) == 1


def test_backend_location_rewritten_to_the_listener_port(
        gatehouse, lookup, web, web_certs, up_cert, tls_backends, tmp_path):
    admin_h, user_h = tls_backends("admin-h", "user-h")
    gh, main, admin = admin_site(gatehouse, web, web_certs, up_cert, tmp_path,
                                 [admin_h.address], [user_h.address])
    host = "%s:%d" % (HOST, admin)
    port = admin_h.port

    def location(target):
        with HttpClient(admin) as c:
            r = c.request(path="/status?code=302&hdr=" +
                          urllib.parse.quote("Location:" + target, safe=""), host=host)
        assert r.status == 302, r
        return r.header("Location")

    # The mailstore names itself at the port it was reached on (7071 in a
    # real site): the client gets its own Host, the admin listener's port.
    assert location("https://%s:%d/zimbraAdmin/?x=1" % (HOST, port)) == \
        "https://%s/zimbraAdmin/?x=1" % host
    assert location("http://%s:%d/a" % (HOST, port)) == "https://%s/a" % host
    # Another host, or another port of ours, is left alone.
    assert location("https://other.example.com:%d/a" % port) == \
        "https://other.example.com:%d/a" % port
    assert location("https://%s:1/a" % HOST) == "https://%s:1/a" % HOST
    assert location("/relative") == "/relative"


def test_local_answers_carry_the_added_headers(
        gatehouse, lookup, web, web_certs, up_cert, tls_backends, tmp_path):
    admin_h, user_h = tls_backends("admin-h", "user-h")
    gh, main, admin = admin_site(gatehouse, web, web_certs, up_cert, tmp_path,
                                 [admin_h.address], [user_h.address])
    # The cookie guard's 307: http.add_headers, the vhost's, the location's.
    r = get(admin, "/")
    assert (r.status, r.header("Location")) == (307, "/login/")
    assert r.header("Strict-Transport-Security") == HSTS
    assert r.header("X-Frame-Options") == "sameorigin"
    assert r.header("X-Content-Type-Options") == "nosniff"
    # The redirect past the guard too.
    r = get(admin, "/", "ZM_ADMIN_AUTH_TOKEN=x")
    assert (r.status, r.header("Location")) == (307, "/carbonioAdmin")
    assert r.header("Strict-Transport-Security") == HSTS
    # A fixed answer: its body, and every added header exactly once.
    r = get(admin, "/robots.txt")
    assert (r.status, r.body) == (200, b"no\n")
    names = [k.lower() for k, _ in r.headers]
    for h in ("strict-transport-security", "x-frame-options", "x-robots-tag"):
        assert names.count(h) == 1, r.headers
    assert "x-content-type-options" not in names
    # A Host that is not the vhost's: no vhost header, the global one stays.
    r = get(admin, "/robots.txt", host="127.0.0.1")
    assert r.header("Strict-Transport-Security") == HSTS
    assert r.header("X-Frame-Options") is None


def test_admin_needs_route_balance(gatehouse_bin, tmp_path):
    conf = tmp_path / "g.conf"
    conf.write_text('upstreams = ( { name = "a"; servers = [ "127.0.0.1:1" ]; admin = true;\n'
                    '  balance = "ip_hash"; } );\n'
                    'listen = ( { address = "127.0.0.1:%d"; protocol = "http"; } );\n'
                    % free_port())
    r = subprocess.run([str(gatehouse_bin), "-t", "-c", str(conf)], capture_output=True)
    assert r.returncode != 0
    assert b'admin: only with balance = "route"' in r.stdout + r.stderr

"""gatehouse-confgen (tools/): the dumps of an invented multi-domain Zimbra
site in zimbra-site/ (written from the attribute documentation) become a
gatehouse.conf that `gatehouse -t` accepts, with the settings they imply;
what gatehouse cannot express, and unknown proxy attributes, are reported."""

import re
import subprocess
import sys

import pytest

from conftest import GATEHOUSE_BIN, REPO

HERE = REPO / "tests" / "e2e"
CONFGEN = REPO / "tools" / "gatehouse-confgen"
SITE = HERE / "zimbra-site"
HOSTS = ["mbox1.example.com=127.0.0.1", "mbox2.example.com=127.0.0.2",
         "proxy1.example.com=127.0.0.3"]


def make_pair(d, name):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=" + name, "-keyout", str(d / (name + ".key")),
                    "-out", str(d / (name + ".crt"))], check=True, capture_output=True, timeout=60)
    return (d / (name + ".crt")).read_text().strip(), (d / (name + ".key")).read_text().strip()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The dumps with real certificates in place of @CERT x@ / @KEY x@."""
    d = tmp_path_factory.mktemp("site")
    pem = {n: make_pair(d, n) for n in ("default", "example.com", "example.org")}
    for f in ("config.txt", "servers.txt", "domains.txt"):
        t = (SITE / f).read_text()
        t = re.sub(r"@CERT (\S+)@", lambda m: pem[m.group(1)][0], t)
        t = re.sub(r"@KEY (\S+)@", lambda m: pem[m.group(1)][1], t)
        (d / f).write_text(t)
    return d


def confgen(site, out, *extra):
    argv = [sys.executable, str(CONFGEN), "--config", str(site / "config.txt"),
            "--server", str(site / "servers.txt"), "--domains", str(site / "domains.txt"),
            "--cert-dir", str(out.parent / "tls"), "-o", str(out)]
    for h in HOSTS:
        argv += ["--map-host", h]
    return subprocess.run(argv + list(extra), capture_output=True, text=True, timeout=60)


def setting(text, group, key):
    """The value text of group.key (group None = top level) in a written conf."""
    if group:
        m = re.search(r"^%s = \{\n(.*?)^\};" % group, text, re.S | re.M)
        assert m, group
        text = m.group(1)
    m = re.search(r"^\s*%s = (.*?);(  #.*)?$" % re.escape(key), text, re.M)
    assert m, (group, key)
    return m.group(1)


def test_confgen_site_passes_gatehouse_check(site, tmp_path):
    out = tmp_path / "gatehouse.conf"
    r = confgen(site, out)
    assert r.returncode == 0, r.stderr
    t = out.read_text()
    # The proxy server's values win over the global config's.
    assert setting(t, None, "workers") == "2"
    assert setting(t, None, "log_level") == '"info"'          # notice
    assert setting(t, "throttle", "ip_limit") == "200"
    assert setting(t, "throttle", "ip_limit_pop3") == "50"
    assert setting(t, "throttle", "whitelist") == '[ "10.0.0.0/8", "2001:db8::/32" ]'
    assert setting(t, "throttle", "ip_message") == '"Login rejected from this IP"'
    # Lookup targets and web backends: the two mailbox servers, TLS upstream.
    assert setting(t, "lookup", "servers") == (
        '[ "https://127.0.0.1:7072/service/extension/nginx-lookup", '
        '"https://127.0.0.2:7072/service/extension/nginx-lookup" ]')
    assert setting(t, "lookup", "timeout") == "15.0"
    assert setting(t, "upstream", "tls") == "true"
    assert setting(t, "http", "backends") == '[ "127.0.0.1:8443", "127.0.0.2:8443" ]'
    assert setting(t, "http", "server_name") == '"mail.example.com"'
    # memcached: every server running it; Zimbra keys are not hashed.
    assert setting(t, "cache", "memcached") == '[ "127.0.0.3:11211", "127.0.0.2:11211" ]'
    assert setting(t, "cache", "ttl") == "3600"
    assert setting(t, "cache", "hash_keys") == "false"
    assert setting(t, "limits", "connect_timeout") == "120.0"
    assert setting(t, "tls", "session_cache") == "40000"
    assert setting(t, "tls", "session_timeout") == "600.0"
    assert "XLIST" in setting(t, "imap", "capabilities")
    assert setting(t, "pop3", "sasl_mechanisms") == '[ "PLAIN" ]'
    # Listeners: STARTTLS only on 143, on for 110; mail mode redirect.
    assert '{ address = "0.0.0.0:143"; protocol = "imap"; starttls = "required"; }' in t
    assert '{ address = "0.0.0.0:993"; protocol = "imap"; tls = true; }' in t
    assert '{ address = "0.0.0.0:110"; protocol = "pop3"; starttls = "optional"; }' in t
    assert '{ address = "0.0.0.0:995"; protocol = "pop3"; tls = true; }' in t
    assert '{ address = "0.0.0.0:80"; protocol = "http"; mode = "redirect"; }' in t
    assert '{ address = "0.0.0.0:443"; protocol = "http"; tls = true; }' in t
    # vhosts: own certificates for example.com / example.org, the default one
    # for example.net, and a name two domains claim goes to the first.
    tls = tmp_path / "tls"
    assert '{ names = [ "mail.example.com", "webmail.example.com" ]; cert = "%s/example.com.crt";' \
        % tls in t
    assert '{ names = [ "mail.example.org" ]; cert = "%s/example.org.crt";' % tls in t
    assert '{ names = [ "mail.example.net" ]; cert = "%s/default.crt";' % tls in t
    assert (tls / "example.org.key").stat().st_mode & 0o077 in (0, 0o040)
    # The response side: strict names, the global headers; compression is
    # on in both (not written).
    assert setting(t, "http", "strict_server_names") == "true"
    assert setting(t, "http", "add_headers") == '[ "Strict-Transport-Security: max-age=31536000" ]'
    assert "compression" not in t
    # Every written setting names its attribute.
    assert "# zimbraReverseProxyIPLoginLimit" in t
    r = subprocess.run([str(GATEHOUSE_BIN), "-t", "-c", str(out)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


def test_confgen_reports_what_it_cannot_express(site, tmp_path):
    r = confgen(site, tmp_path / "gatehouse.conf")
    err = r.stderr
    for attr in ("zimbraReverseProxyUpstreamPollingTimeout",
                 "zimbraMailProxyReconnectTimeout", "zimbraReverseProxyWorkerConnections",
                 "zimbraReverseProxyUpstreamConnectTimeout"):
        assert re.search(r"^gatehouse-confgen: not expressible: .*%s" % attr, err, re.M), attr
    # Per domain: the VIP and the domain's own response header.
    assert re.search(r"not expressible: domain example.org: zimbraVirtualIPAddress = 192.0.2.20",
                     err)
    assert re.search(r"not expressible: domain example.org: zimbraReverseProxyResponseHeaders", err)
    assert re.search(r"^gatehouse-confgen: unknown: .*zimbraReverseProxyFutureKnob = 42", err, re.M)
    assert "mail.example.com is already a name of another domain" in err
    for attr in ("zimbraHttpCompressionEnabled", "zimbraReverseProxyStrictServerNameEnabled"):
        assert attr + " =" not in err, attr
    # Defaults that behave the same are not reported.
    assert "zimbraReverseProxyAdminEnabled" not in err
    assert "zimbraReverseProxyImapSaslGssapiEnabled" not in err
    m = re.search(r"wrote .*: (\d+) attributes translated, (\d+) not expressible, (\d+) unknown, "
                  r"(\d+) notes, (\d+) known without effect, (\d+) not about the proxy ignored$",
                  err.strip().split("\n")[-1])
    assert m, err
    assert int(m.group(2)) == len(re.findall(r": not expressible: ", err))
    assert int(m.group(3)) == 1
    assert int(m.group(6)) > 0      # zimbraMtaMaxMessageSize and friends
    assert "zimbraMtaMaxMessageSize" not in err
    v = confgen(site, tmp_path / "v.conf", "--verbose")
    assert "ignored (not about the proxy): zimbraMtaMaxMessageSize" in v.stderr
    strict = confgen(site, tmp_path / "s.conf", "--strict")
    assert strict.returncode == 3


def test_confgen_carbonio_and_mode_changes(site, tmp_path):
    cfg = (site / "config.txt").read_text()
    cfg = cfg.replace("zimbraReverseProxyMailMode: redirect", "zimbraReverseProxyMailMode: mixed")
    cfg = cfg.replace("zimbraReverseProxyAdminEnabled: FALSE", "zimbraReverseProxyAdminEnabled: TRUE")
    cfg = cfg.replace("zimbraReverseProxySSLToUpstreamEnabled: TRUE",
                      "zimbraReverseProxySSLToUpstreamEnabled: FALSE")
    cfg = cfg.replace("zimbraReverseProxyZmlookupCachingEnabled: TRUE",
                      "zimbraReverseProxyZmlookupCachingEnabled: FALSE")
    cfg += "carbonioAdminProxyPort: 6071\n"
    (tmp_path / "config.txt").write_text(cfg)
    for f in ("servers.txt", "domains.txt"):
        (tmp_path / f).write_text((site / f).read_text())
    out = tmp_path / "gatehouse.conf"
    r = confgen(tmp_path, out)
    assert r.returncode == 0, r.stderr
    t = out.read_text()
    assert setting(t, "cache", "hash_keys") == "true"          # Carbonio
    assert setting(t, "cache", "memcached") == "[ ]"
    assert setting(t, "upstream", "tls") == "false"
    assert setting(t, "http", "backends") == '[ "127.0.0.1:8080", "127.0.0.2:8080" ]'
    assert '{ address = "0.0.0.0:80"; protocol = "http"; mode = "redirect"; }' in t
    assert "zimbraReverseProxyMailMode = mixed" not in r.stderr  # its own wording
    assert re.search(r"not expressible: .*mixed is not available", r.stderr) is None
    assert "mixed is not available" in r.stderr
    assert "zimbraReverseProxyAdminEnabled = TRUE" in r.stderr
    assert "zimbraAdminProxyPort = 9071" in r.stderr
    assert "carbonioAdminProxyPort = 6071" in r.stderr
    r = subprocess.run([str(GATEHOUSE_BIN), "-t", "-c", str(out)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


def test_confgen_attributes_are_in_the_readme():
    """Every attribute the tool reads is in the README's table."""
    table = subprocess.run([sys.executable, str(CONFGEN), "--attribute-table"], capture_output=True,
                           text=True, check=True).stdout
    readme = (REPO / "README.md").read_text()
    for row in table.strip().split("\n"):
        assert row in readme, "README lacks: " + row


def site_variant(site, d, edit_cfg):
    (d / "config.txt").write_text(edit_cfg((site / "config.txt").read_text()))
    for f in ("servers.txt", "domains.txt"):
        (d / f).write_text((site / f).read_text())
    return d


def test_confgen_web_zimbra(site, tmp_path):
    """--web zimbra: conf/zimbra.conf's groups with the site's mailstores
    (TLS 8443 here), login and EWS pools, passive-health numbers and
    long-poll timeout; its locations; the 9071 admin listener when
    zimbraReverseProxyAdminEnabled. Those attributes are then translated,
    not reported, and gatehouse -t accepts the file."""
    def edit(cfg):
        cfg = cfg.replace("zimbraReverseProxyAdminEnabled: FALSE",
                          "zimbraReverseProxyAdminEnabled: TRUE")
        cfg = cfg.replace("zimbraAdminProxyPort: 9071", "zimbraAdminProxyPort: 9171")
        cfg = cfg.replace("zimbraReverseProxyUpstreamPollingTimeout: 1h",
                          "zimbraReverseProxyUpstreamPollingTimeout: 30m")
        cfg = cfg.replace("zimbraMailProxyReconnectTimeout: 10", "zimbraMailProxyReconnectTimeout: 45")
        return cfg + ("zimbraReverseProxyUpstreamLoginServers: mbox2.example.com\n"
                      "zimbraReverseProxyUpstreamEwsServers: mbox1.example.com:9443\n")
    d = site_variant(site, tmp_path, edit)
    # The mailstores' admin port (zimbraAdminPort): the admin group's servers
    # and the Host the admin listener sends them.
    srv = d / "servers.txt"
    srv.write_text(srv.read_text().replace("zimbraMailSSLPort: 8443\n",
                                           "zimbraMailSSLPort: 8443\nzimbraAdminPort: 7171\n"))
    out = tmp_path / "gatehouse.conf"
    r = confgen(d, out, "--web", "zimbra")
    assert r.returncode == 0, r.stderr
    t = out.read_text()
    tls = 'tls = true; verify = false; balance = "route"; '
    assert ('{ name = "mailstores"; servers = [ "127.0.0.1:8443", "127.0.0.2:8443" ]; ' + tls
            + 'max_fails = 1; fail_timeout = 45.0; }') in t
    assert ('{ name = "login"; servers = [ "127.0.0.2:8443" ]; ' + tls
            + 'max_fails = 1; fail_timeout = 45.0; }') in t
    assert '{ name = "ews"; servers = [ "127.0.0.1:9443" ]; ' + tls in t
    assert '{ name = "zx"; servers = [ "127.0.0.1:8743", "127.0.0.2:8743" ]; ' + tls in t
    assert ('{ name = "admin"; servers = [ "127.0.0.1:7171", "127.0.0.2:7171" ]; ' + tls
            + 'admin = true; rewrite_redirects = true; }') in t
    # The table's locations, the long polls at the site's timeout.
    assert '{ match = "= /"; upstream = "login"; }' in t
    assert re.search(r'"\^~ /Microsoft-Server-ActiveSync"; upstream = "mailstores"; '
                     r'read_timeout = 1800\.0;', t)
    assert re.search(r'"~\* \^/ews/Exchange.asmx"; upstream = "ews"; read_timeout = 1800\.0;', t)
    assert re.search(r'"\^~ /service/soap/NoOpRequest"; upstream = "mailstores"; '
                     r'read_timeout = 1220;', t)
    assert "read_timeout = 3600" not in t
    assert re.search(r'\{ address = "0\.0\.0\.0:9171"; protocol = "http"; tls = true;\s+'
                     r'locations = \(\s+\{ match = "\^~ /service"; upstream = "admin"; '
                     r'host = "\$host:7171"; \}', t)
    for attr in ("zimbraReverseProxyUpstreamPollingTimeout", "zimbraMailProxyReconnectTimeout",
                 "zimbraMailProxyMaxFails", "zimbraReverseProxyAdminEnabled",
                 "zimbraAdminProxyPort", "zimbraAdminPort",
                 "zimbraReverseProxyUpstreamLoginServers",
                 "zimbraReverseProxyUpstreamEwsServers"):
        assert attr not in r.stderr, attr
    assert "zimbraReverseProxyResponseHeaders" in r.stderr     # still not written
    g = subprocess.run([str(GATEHOUSE_BIN), "-t", "-c", str(out)], capture_output=True, text=True,
                       timeout=30)
    assert g.returncode == 0, g.stdout + g.stderr
    # Without --web the same site reports them, and writes no groups.
    plain = confgen(d, tmp_path / "plain.conf")
    assert "zimbraReverseProxyUpstreamLoginServers" in plain.stderr
    assert "upstreams = (" not in (tmp_path / "plain.conf").read_text()


def test_confgen_web_carbonio(site, tmp_path):
    """--web carbonio: the mesh groups as shipped, the mailstores plain 8080
    (no TLS upstream here), the login URLs in the guards and the logout
    redirect, the 6071 admin listener at carbonioAdminProxyPort; a login
    URL that is not a path or URL is reported and the table's kept."""
    def edit(cfg):
        cfg = cfg.replace("zimbraReverseProxySSLToUpstreamEnabled: TRUE",
                          "zimbraReverseProxySSLToUpstreamEnabled: FALSE")
        return cfg + ("carbonioAdminProxyPort: 6072\n"
                      "carbonioWebUILoginURL: https://login.example.com/\n"
                      "carbonioWebUILogoutURL: /bye/\n"
                      "carbonioAdminUILoginURL: javascript:alert(1)\n"
                      "carbonioAdminUILogoutURL: /admin-bye/\n")
    d = site_variant(site, tmp_path, edit)
    out = tmp_path / "gatehouse.conf"
    r = confgen(d, out, "--web", "carbonio")
    assert r.returncode == 0, r.stderr
    t = out.read_text()
    assert setting(t, "cache", "hash_keys") == "true"
    assert ('{ name = "mailstores"; servers = [ "127.0.0.1:8080", "127.0.0.2:8080" ]; '
            'balance = "route"; max_fails = 1; fail_timeout = 10.0; }') in t
    assert '{ name = "zx"; servers = [ "127.0.0.1:8742", "127.0.0.2:8742" ]; balance = "route"; }' in t
    assert '{ name = "files"; servers = [ "127.78.0.1:20000" ]; balance = "round_robin"; }' in t
    assert '{ name = "carbonio-catalog"; servers = [ "127.78.0.1:20012" ]; balance = "round_robin"; }' in t
    main_locs = t.split("\nlocations = (", 1)[1].split("\n);", 1)[0]
    assert main_locs.count('login_redirect = "https://login.example.com/"') == 3
    assert '"/static/login/"' not in main_locs.replace('"^~ /static/"', "")
    assert re.search(r'match = "~/logout";\s+logout = \[[^]]*\];\s+redirect = "/bye/"', main_locs)
    admin = t.split('address = "0.0.0.0:6072"', 1)[1]
    assert 'login_redirect = "/login/"' in admin                    # the bad URL: table's kept
    assert re.search(r'redirect = "/admin-bye/"; status = 307;', admin)
    assert "carbonioAdminUILoginURL = javascript:alert(1): not a path or an http(s) URL" in r.stderr
    for attr in ("carbonioAdminProxyPort", "carbonioWebUILoginURL", "carbonioWebUILogoutURL",
                 "carbonioAdminUILogoutURL"):
        assert "not expressible: %s" % attr not in r.stderr, attr
    g = subprocess.run([str(GATEHOUSE_BIN), "-t", "-c", str(out)], capture_output=True, text=True,
                       timeout=30)
    assert g.returncode == 0, g.stdout + g.stderr


def test_confgen_compression_off_and_a_refused_header(site, tmp_path):
    """zimbraHttpCompressionEnabled FALSE turns gatehouse's compression off;
    a response header gatehouse refuses (framing) is reported, not written."""
    (tmp_path / "s").mkdir()
    d = site_variant(site, tmp_path / "s", lambda c: c.replace(
        "zimbraHttpCompressionEnabled: TRUE", "zimbraHttpCompressionEnabled: FALSE").replace(
        "zimbraReverseProxyResponseHeaders: Strict-Transport-Security: max-age=31536000",
        "zimbraReverseProxyResponseHeaders: Strict-Transport-Security: max-age=31536000\n"
        "zimbraReverseProxyResponseHeaders: Transfer-Encoding: chunked"))
    out = tmp_path / "g.conf"
    r = confgen(d, out)
    assert r.returncode == 0, r.stderr
    t = out.read_text()
    assert setting(t, "http", "compression") == "{ gzip = false; br = false; }"
    assert setting(t, "http", "add_headers") == '[ "Strict-Transport-Security: max-age=31536000" ]'
    assert re.search(r"not expressible: zimbraReverseProxyResponseHeaders = Transfer-Encoding",
                     r.stderr)
    g = subprocess.run([str(GATEHOUSE_BIN), "-t", "-c", str(out)], capture_output=True, text=True,
                       timeout=30)
    assert g.returncode == 0, g.stdout + g.stderr

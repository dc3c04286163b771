"""monitoring/: the certificate expiry and max_connections metrics (also
across a reload), the Prometheus rules (promtool check/test rules) and the
Grafana dashboard, whose queries may only use metrics gatehouse exports."""
import calendar
import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ghtest import free_port, to_libconfig
from test_status import scrape, value
from test_tls import OPENSSL

MON = Path(__file__).resolve().parents[2] / "monitoring"
NAME_RE = re.compile(r"\bgatehouse_[a-z0-9_]+")


def _cert(d, name, days, ec=False):
    """A self-signed certificate; returns (crt, key, notAfter as a Unix time)."""
    crt, key = str(d / (name + ".crt")), str(d / (name + ".key"))
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if ec else ["-newkey", "rsa:2048"]
    subprocess.run([OPENSSL, "req", "-x509", *newkey, "-nodes", "-keyout", key, "-out", crt,
                    "-days", str(days), "-subj", "/CN=" + name], check=True, capture_output=True)
    out = subprocess.run([OPENSSL, "x509", "-in", crt, "-noout", "-enddate"], check=True,
                         capture_output=True, text=True).stdout.strip()
    not_after = calendar.timegm(time.strptime(out.split("=", 1)[1], "%b %d %H:%M:%S %Y %Z"))
    return crt, key, not_after


def _expiry(series, name, kind):
    return series[("gatehouse_tls_certificate_expiry_seconds",
                   frozenset({("name", name), ("kind", kind)}))]


def _wait_log(gh, pattern, count, timeout=5.0):
    deadline = time.monotonic() + timeout
    while len(re.findall(pattern, gh.error_log())) < count:
        assert time.monotonic() < deadline, gh.error_log()[-2000:]
        time.sleep(0.02)


@pytest.fixture
def tls_gh(gatehouse, tmp_path):
    d = tmp_path / "certs"
    d.mkdir()
    dflt = _cert(d, "default", 30)
    rsa = _cert(d, "mail-rsa", 10)
    ec = _cert(d, "mail-ec", 5, ec=True)
    port = free_port()
    gh = gatehouse(status={"address": "127.0.0.1:%d" % port},
                   limits={"max_connections": 123},
                   tls={"cert": dflt[0], "key": dflt[1]},
                   vhosts=[{"names": ["mail.example.com", "imap.example.com"],
                            "cert": rsa[0], "key": rsa[1], "ecdsa_cert": ec[0], "ecdsa_key": ec[1]}])
    gh.status_port = port
    gh.cert_dir = d
    gh.not_after = {"default": dflt[2], "rsa": rsa[2], "ecdsa": ec[2]}
    return gh


def test_certificate_expiry_and_max_connections_follow_reloads(tls_gh):
    gh, port = tls_gh, tls_gh.status_port
    s = scrape(port)
    exp = "gatehouse_tls_certificate_expiry_seconds"
    assert _expiry(s, "default", "rsa") == gh.not_after["default"]
    assert _expiry(s, "mail.example.com", "rsa") == gh.not_after["rsa"]
    assert _expiry(s, "mail.example.com", "ecdsa") == gh.not_after["ecdsa"]
    assert len([k for k in s if k[0] == exp]) == 3
    assert value(s, "gatehouse_max_connections") == 123

    # A renewed default certificate and no vhost any more, another cap.
    crt, key, not_after = _cert(gh.cert_dir, "renewed", 90)
    gh.settings["tls"].update(cert=crt, key=key)
    del gh.settings["vhosts"]
    gh.settings["limits"]["max_connections"] = 0
    gh.conf_path.write_text(to_libconfig(gh.settings))
    gh.signal(signal.SIGHUP)
    _wait_log(gh, r"reloaded .*new sessions use it", 1)
    s = scrape(port)
    assert _expiry(s, "default", "rsa") == not_after
    assert [k for k in s if k[0] == exp] == [(exp, frozenset({("name", "default"), ("kind", "rsa")}))]
    assert value(s, "gatehouse_max_connections") == 0

    # A refused reload (missing key) keeps the running certificates' metrics.
    gh.settings["tls"]["key"] = str(gh.cert_dir / "missing.key")
    gh.conf_path.write_text(to_libconfig(gh.settings))
    gh.signal(signal.SIGHUP)
    _wait_log(gh, r"reload refused", 1)
    assert _expiry(scrape(port), "default", "rsa") == not_after


def _exprs(node):
    """Every "expr" string in a Grafana dashboard (panels, rows, templating)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("expr", "definition") and isinstance(v, str):
                yield v
            else:
                yield from _exprs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _exprs(v)


def _exported(series):
    names = {k[0] for k in series}
    for n in list(names):
        for suffix in ("_bucket", "_sum", "_count"):
            if n.endswith(suffix):
                names.add(n[:-len(suffix)])
    return names


def test_dashboard_and_rules_use_only_exported_metrics(tls_gh):
    exported = _exported(scrape(tls_gh.status_port))
    assert "gatehouse_tls_certificate_expiry_seconds" in exported

    d = json.loads((MON / "grafana-dashboard.json").read_text())
    assert d["schemaVersion"] >= 36
    tvars = {v["name"]: v for v in d["templating"]["list"]}
    assert tvars["datasource"]["type"] == "datasource" and tvars["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
    used = set()
    exprs = list(_exprs(d))
    assert len(exprs) >= 20
    for e in exprs:
        names = set(NAME_RE.findall(e))
        assert names, e
        assert names <= exported, (e, names - exported)
        used |= names
    # The panels the dashboard promises.
    for want in ("gatehouse_logins_total", "gatehouse_route_l1_total", "gatehouse_route_memcached_total",
                 "gatehouse_lookup_duration_seconds_bucket", "gatehouse_connections",
                 "gatehouse_relay_bytes_total", "gatehouse_tls_handshakes_total",
                 "gatehouse_errors_total", "gatehouse_tls_certificate_expiry_seconds"):
        assert want in used, want

    rules = (MON / "prometheus-rules.yml").read_text()
    exprs = re.findall(r"expr: (\|\n(?:\s{10}.*\n)+|.*\n)", rules)
    assert len(exprs) == 9
    names = set(NAME_RE.findall(rules))
    assert names and names <= exported, names - exported


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing (scripts/deps.sh test installs prometheus)")
def test_promtool_check_and_test_rules():
    r = subprocess.run([PROMTOOL, "check", "rules", "prometheus-rules.yml"], cwd=MON,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 9 rules found" in r.stdout + r.stderr
    r = subprocess.run([PROMTOOL, "test", "rules", "prometheus-rules.test.yml"], cwd=MON,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    alerts = set(re.findall(r"^\s+- alert: (\w+)", (MON / "prometheus-rules.yml").read_text(), re.M))
    tested = set(re.findall(r"alertname: (\w+)", (MON / "prometheus-rules.test.yml").read_text()))
    assert alerts == tested, alerts ^ tested

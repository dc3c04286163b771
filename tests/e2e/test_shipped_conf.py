"""The shipped configurations: conf/carbonio.conf and conf/zimbra.conf (the
Proxy role's listeners, upstream groups and locations) and conf/gatehouse.conf
pass `gatehouse -t` once their certificate paths name real certificates, and
a mistake in a location is reported with its file, line and setting."""

import re
import subprocess
from pathlib import Path

import pytest

from test_tls import certs  # noqa: F401  (the fixture)

REPO = Path(__file__).resolve().parents[2]
CERT_DIRS = {"carbonio": "/opt/zextras/conf", "zimbra": "/opt/zimbra/conf"}


def check(gatehouse_bin, path):
    return subprocess.run([str(gatehouse_bin), "-t", "-c", str(path)], capture_output=True,
                          text=True, timeout=30)


def with_certs(name, certs, tmp_path):  # noqa: F811
    text = (REPO / "conf" / (name + ".conf")).read_text()
    d = CERT_DIRS[name]
    assert d + "/nginx.crt" in text and d + "/nginx.key" in text
    text = text.replace(d + "/nginx.crt", certs.default_crt).replace(d + "/nginx.key",
                                                                      certs.default_key)
    out = tmp_path / (name + ".conf")
    out.write_text(text)
    return out, text


@pytest.mark.parametrize("name", ["carbonio", "zimbra"])
def test_shipped_role_config_is_valid(gatehouse_bin, certs, tmp_path, name):  # noqa: F811
    path, _ = with_certs(name, certs, tmp_path)
    r = check(gatehouse_bin, path)
    assert r.returncode == 0, r.stderr
    assert (r.stdout + r.stderr).strip() == "%s: configuration is valid" % path


def test_shipped_gatehouse_conf_is_valid(gatehouse_bin):
    r = check(gatehouse_bin, REPO / "conf" / "gatehouse.conf")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("name", ["carbonio", "zimbra"])
def test_missing_certificate_named(gatehouse_bin, tmp_path, name):
    """As shipped, on a machine without the role's certificate, -t says which."""
    r = check(gatehouse_bin, REPO / "conf" / (name + ".conf"))
    assert r.returncode == 1
    assert re.search(r"conf/%s\.conf:\d+: tls\.cert: cannot load certificate %s/nginx\.crt"
                     % (name, CERT_DIRS[name]), r.stderr), r.stderr


def test_location_mistake_names_line_and_setting(gatehouse_bin, certs, tmp_path):  # noqa: F811
    path, text = with_certs("carbonio", certs, tmp_path)
    text = text.replace('upstream = "tasks";', 'upstream = "taks";', 1)
    path.write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if '"taks"' in ln)
    r = check(gatehouse_bin, path)
    assert r.returncode == 1
    assert re.search(r"%s:%d: locations\.\[\d+\]\.upstream: no upstream group \"taks\""
                     % (re.escape(str(path)), line), r.stderr), r.stderr

    path.write_text(text.replace('"taks"', '"tasks"').replace(
        '"~ ^/carbonio(/|$)"', '"~ ^/carbonio(/|$"', 1))
    r = check(gatehouse_bin, path)
    assert r.returncode == 1
    assert re.search(r"locations\.\[\d+\]\.match: bad regex at offset \d+: missing closing "
                     r"parenthesis", r.stderr), r.stderr

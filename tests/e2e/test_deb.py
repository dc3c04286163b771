"""The Debian package (make deb, debian/): built once per source state with
scripts/deb.sh (cached in build-deb/<digest>/, or GATEHOUSE_DEB names a
.deb), unpacked with dpkg-deb -x into a throwaway root — never into this
machine's /usr — and run there: the unit's ExecStartPre/ExecStart command
lines with the packaged configuration edited as an administrator would
(loopback port, a route to the Dovecot mailstore fixture), a real IMAP login
through it, a reload and a drain, then the root is removed."""

import hashlib
import imaplib
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO
from ghtest import ALICE, free_port
from mailstore import die_with_parent
from test_sd_notify import NotifySocket

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None,
                                reason="dpkg-deb is missing: not a Debian system")


def meson_version():
    return re.search(r"version\s*:\s*'([^']+)'", (REPO / "meson.build").read_text()).group(1)


def source_digest():
    """Digest of what scripts/deb.sh packages (tracked and new files)."""
    r = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       cwd=REPO, capture_output=True)
    if r.returncode != 0:
        return None
    h = hashlib.sha256()
    for name in sorted(n for n in r.stdout.decode().split("\0") if n):
        p = REPO / name
        h.update(name.encode() + b"\0")
        if p.is_symlink():
            h.update(os.readlink(p).encode())
        elif p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="module")
def deb():
    if os.environ.get("GATEHOUSE_DEB"):
        return Path(os.environ["GATEHOUSE_DEB"])
    digest = source_digest() or "nogit"
    out = REPO / "build-deb" / digest
    found = sorted(out.glob("gatehouse_*.deb")) if out.is_dir() else []
    if found:
        return found[0]
    if shutil.which("dpkg-buildpackage") is None:
        pytest.fail("dpkg-buildpackage is missing: scripts/deps.sh test installs it")
    if (REPO / "build-deb").is_dir():        # older source states
        shutil.rmtree(REPO / "build-deb")
    r = subprocess.run(["bash", str(REPO / "scripts" / "deb.sh"), str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=900,
                       env=dict(os.environ, GATEHOUSE_DEB_NO_LINTIAN="1"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return sorted(out.glob("gatehouse_*.deb"))[0]


@pytest.fixture(scope="module")
def root(deb, tmp_path_factory):
    """The package unpacked into a throwaway root, removed afterwards."""
    d = tmp_path_factory.mktemp("deb-root")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(d)], check=True, timeout=60)
    subprocess.run(["dpkg-deb", "-e", str(deb), str(d / "DEBIAN")], check=True, timeout=60)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_deb_name_and_contents(deb, root):
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                          text=True).stdout.strip()
    assert deb.name == "gatehouse_%s_%s.deb" % (meson_version(), arch)
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True).stdout
    for path in ("./usr/sbin/gatehouse", "./usr/sbin/gatehouse-confgen",
                 "./etc/gatehouse/gatehouse.conf", "./etc/gatehouse/tls/",
                 "./lib/systemd/system/gatehouse.service", "./etc/logrotate.d/gatehouse",
                 "./usr/share/man/man8/gatehouse.8.gz", "./usr/share/man/man5/gatehouse.conf.5.gz",
                 "./usr/share/man/man8/gatehouse-confgen.8.gz",
                 "./usr/share/gatehouse/zimbra.conf", "./usr/share/gatehouse/carbonio.conf"):
        assert re.search(r" %s$" % re.escape(path), listing, re.M), path
    conffiles = (root / "DEBIAN" / "conffiles").read_text().split()
    assert "/etc/gatehouse/gatehouse.conf" in conffiles
    assert "/etc/logrotate.d/gatehouse" in conffiles
    # The packaged configuration is the documented one, and its reference page
    # is made from it.
    assert (root / "etc/gatehouse/gatehouse.conf").read_bytes() == \
        (REPO / "conf/gatehouse.conf").read_bytes()
    postinst = (root / "DEBIAN" / "postinst").read_text()
    assert re.search(r"adduser .*--system .*gatehouse", postinst.replace("\\\n", " "))
    unit = (root / "lib/systemd/system/gatehouse.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "User=gatehouse" in unit
    reloads = re.findall(r"^ExecReload=(.*)$", unit, re.M)
    assert "-t" in reloads[0].split() and "-HUP" in reloads[1], reloads
    logrotate = (root / "etc/logrotate.d/gatehouse").read_text()
    assert "USR1" in logrotate and "/var/log/gatehouse/" in logrotate
    r = subprocess.run([str(root / "usr/sbin/gatehouse"), "-v"], capture_output=True, text=True)
    assert r.stdout.startswith("gatehouse %s (systemd)" % meson_version()), r
    r = subprocess.run(["/usr/bin/python3", str(root / "usr/sbin/gatehouse-confgen"), "--help"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "zmprov" in r.stdout, r


def unit_command(root, key):
    """The unit's KEY= command line, its paths moved into the throwaway root."""
    unit = (root / "lib/systemd/system/gatehouse.service").read_text()
    argv = shlex.split(re.search(r"^%s=(.*)$" % key, unit, re.M).group(1))
    return [str(root) + a if a.startswith(("/usr/", "/etc/")) else a for a in argv]


def test_deb_installed_proxy_logs_in(root, stores, tmp_path):
    # Edit the one file, as the README says: a loopback port, a route.
    conf_path = root / "etc/gatehouse/gatehouse.conf"
    text = conf_path.read_text()
    port = free_port()
    text, n = re.subn(r'^listen = \(\n  \{ address = "0\.0\.0\.0:143";',
                      'listen = (\n  { address = "127.0.0.1:%d";' % port, text, flags=re.M)
    assert n == 1
    text, n = re.subn(r"^routes = \( \);",
                      'routes = ( { match = "@example.com"; server = "127.0.0.1:%d"; } );'
                      % stores.a.imap_port, text, flags=re.M)
    assert n == 1
    text, n = re.subn(r"^workers = 0;", "workers = 1;", text, flags=re.M)
    assert n == 1
    conf_path.write_text(text)

    check = unit_command(root, "ExecStartPre")
    r = subprocess.run(check, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "configuration is valid" in r.stdout, r

    ns = NotifySocket(tmp_path)
    err = tmp_path / "stderr.log"
    proc = subprocess.Popen(die_with_parent(unit_command(root, "ExecStart")),
                            env=dict(os.environ, NOTIFY_SOCKET=ns.path),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(err, "wb"))
    try:
        ns.wait_for("READY=1")
        with imaplib.IMAP4("127.0.0.1", port, timeout=10) as m:
            typ, _ = m.login(*ALICE)
            assert typ == "OK"
            typ, data = m.select("INBOX")
            assert typ == "OK" and int(data[0]) >= 1
            m.logout()
        # systemctl reload: the check, then SIGHUP.
        reload_check = unit_command(root, "ExecReload")
        assert subprocess.run(reload_check, capture_output=True, timeout=30).returncode == 0
        ns.messages.clear()
        proc.send_signal(signal.SIGHUP)
        ns.wait_for("READY=1")
        proc.send_signal(signal.SIGTERM)
        ns.wait_for("STOPPING=1")
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ns.close()
    log = err.read_text()
    assert "started" in log and "reloaded" in log and "gatehouse stopped" in log, log


def _installed(name="gatehouse"):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
    return "install ok installed" in r.stdout


@pytest.mark.skipif(not (os.geteuid() == 0 and (os.environ.get("CI") == "true" or
                                                os.environ.get("GATEHOUSE_TEST_DPKG_INSTALL"))),
                    reason="installs into this machine's /usr: only as root in CI, or with "
                           "GATEHOUSE_TEST_DPKG_INSTALL=1")
def test_deb_installs_with_dpkg_and_purges(deb):
    """dpkg -i runs the maintainer scripts (the gatehouse user, the log
    directory, the unit enabled but not started), the installed binary
    accepts the installed configuration, and dpkg --purge takes it all away
    but the user (Debian policy)."""
    if _installed():
        pytest.skip("a gatehouse package is installed here already: not touching it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        r = subprocess.run(["dpkg", "-i", str(deb)], capture_output=True, text=True,
                           timeout=300, env=env)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert _installed()
        assert os.access("/usr/sbin/gatehouse", os.X_OK)
        assert subprocess.run(["getent", "passwd", "gatehouse"], capture_output=True).returncode == 0
        st = os.stat("/var/log/gatehouse")
        assert pwd.getpwuid(st.st_uid).pw_name == "gatehouse"
        r = subprocess.run(["/usr/sbin/gatehouse", "-t", "-c", "/etc/gatehouse/gatehouse.conf"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        r = subprocess.run(["dpkg-query", "-W", "-f=${Conffiles}", "gatehouse"],
                           capture_output=True, text=True)
        assert "/etc/gatehouse/gatehouse.conf" in r.stdout
    finally:
        r = subprocess.run(["dpkg", "--purge", "gatehouse"], capture_output=True, text=True,
                           timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert not _installed()
    for gone in ("/usr/sbin/gatehouse", "/etc/gatehouse/gatehouse.conf", "/var/log/gatehouse",
                 "/lib/systemd/system/gatehouse.service"):
        assert not os.path.exists(gone), gone

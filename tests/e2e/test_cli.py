"""The command line and process life cycle: -v, -t, SIGTERM, SIGINT."""

import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import VALGRIND
from ghtest import ALICE, to_libconfig, free_port
from test_tls import wait_log


def run(bin_, *args, cwd=None):
    return subprocess.run([str(bin_), *args], capture_output=True, text=True,
                          timeout=10, cwd=cwd)


def test_version(gatehouse_bin):
    r = run(gatehouse_bin, "-v")
    assert r.returncode == 0
    assert re.match(r"^gatehouse \d+\.\d+", r.stdout + r.stderr), r


def test_config_check_good(gatehouse_bin, tmp_path, lookup, stores):
    conf = tmp_path / "good.conf"
    conf.write_text(to_libconfig({
        "workers": 2,
        "log_level": "info",
        "error_log": str(tmp_path / "err.log"),
        "audit_log": str(tmp_path / "audit.log"),
        "shutdown_timeout": 2.0,
        "limits": {"preauth_timeout": 60.0, "idle_timeout": 2100.0,
                   "connect_timeout": 10.0, "backend_timeout": 30.0,
                   "max_line": 8192, "max_literal": 4096, "max_tag": 64,
                   "max_login": 256, "max_password": 1024, "max_bad_commands": 5,
                   "max_login_failures": 3, "max_auth_wait": 10.0},
        "imap": {"greeting": "Gatehouse IMAP proxy ready", "send_id": True,
                 "backend_auth": "auto", "backend_port": 7143},
        "lookup": {"servers": [lookup.url], "timeout": 10.0, "retry_interval": 60.0},
        "routes": [{"match": "@example.com",
                    "server": "127.0.0.1:%d" % stores.a.imap_port}],
        "listen": [{"address": "127.0.0.1:%d" % free_port(), "protocol": "imap"}],
    }))
    r = run(gatehouse_bin, "-t", "-c", str(conf))
    assert r.returncode == 0, r


def test_config_check_empty_is_valid(gatehouse_bin, tmp_path):
    conf = tmp_path / "empty.conf"
    conf.write_text("# every setting is optional\n")
    r = run(gatehouse_bin, "-t", "-c", str(conf))
    assert r.returncode == 0, r


def test_config_check_bad_value(gatehouse_bin, tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text('workers = 2;\nlimits = { max_line = 3; };\n')
    r = run(gatehouse_bin, "-t", "-c", str(conf))
    assert r.returncode == 1, r
    out = r.stdout + r.stderr
    assert re.search(r"bad\.conf:2: limits\.max_line: ", out), out


def test_config_check_syntax_error(gatehouse_bin, tmp_path):
    conf = tmp_path / "syntax.conf"
    conf.write_text('workers = 2;\nlog_level = "info";\nlimits = { max_line = ; };\n')
    r = run(gatehouse_bin, "-t", "-c", str(conf))
    assert r.returncode == 1, r
    assert re.search(r"syntax\.conf:3:", r.stdout + r.stderr), r


def test_config_missing_file(gatehouse_bin, tmp_path):
    r = run(gatehouse_bin, "-t", "-c", str(tmp_path / "nope.conf"))
    assert r.returncode == 1, r
    assert "nope.conf" in r.stdout + r.stderr


def test_bad_config_refuses_to_start(gatehouse_bin, tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text('limits = { max_line = 3; };\n')
    r = run(gatehouse_bin, "-c", str(conf))
    assert r.returncode != 0, r


def _wait_exit(proc, limit):
    t0 = time.monotonic()
    try:
        proc.wait(limit)
    except subprocess.TimeoutExpired:
        pytest.fail("gatehouse still running %.1fs after the signal" % limit)
    return time.monotonic() - t0


def test_sigterm_closes_sessions(gatehouse):
    gh = gatehouse(shutdown_timeout=2.0)
    c = gh.raw()
    assert c.command("a", "LOGIN %s %s" % ALICE)[-1].startswith(b"a OK")
    assert c.command("b", "SELECT INBOX")[-1].startswith(b"b OK")
    gh.signal(signal.SIGTERM)
    t0 = time.monotonic()
    # It stops accepting at once, and says so once it has...
    wait_log(gh, r"signal 15: closing the listening sockets, draining sessions for up to 2\.0 s")
    wait_log(gh, r"listening sockets closed: no longer accepting connections")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", gh.port), timeout=1).close()
    # ...and exits 0 within shutdown_timeout, closing the session.
    _wait_exit(gh.proc, 2.0 + 1.5 - (time.monotonic() - t0))
    assert gh.proc.returncode == 0, gh.logs_text()
    lines = c.read_until_closed(2)
    assert all(l.startswith(b"* ") for l in lines), lines
    c.close()
    gh.assert_healthy()


def test_sigterm_with_no_sessions_is_quick(gatehouse):
    gh = gatehouse(shutdown_timeout=5.0)
    gh.signal(signal.SIGTERM)
    took = _wait_exit(gh.proc, 3.0)
    assert gh.proc.returncode == 0
    assert took < 2.0


def test_sigint(gatehouse):
    gh = gatehouse()
    m = gh.imap()
    m.login(*ALICE)
    gh.signal(signal.SIGINT)
    _wait_exit(gh.proc, 4.0)
    assert gh.proc.returncode == 0
    m.shutdown()


def test_relative_log_paths(gatehouse):
    """Relative paths in the config resolve against the working directory."""
    gh = gatehouse(audit_log="rel-audit.log", error_log="rel-error.log")
    m = gh.imap()
    m.login(*ALICE)
    m.logout()
    gh.audit_path = gh.dir / "rel-audit.log"
    rec = gh.last_audit()
    assert rec["result"] == "ok"
    assert (gh.dir / "rel-error.log").exists()


@pytest.mark.skipif(VALGRIND, reason="valgrind manages the descriptor limit itself")
def test_open_files_limit_raised_to_the_hard_limit(gatehouse):
    """Started from a shell whose soft limit is low, gatehouse raises it to
    the hard one, logs it, and warns when max_connections needs more."""
    gh = gatehouse(_prefix=["prlimit", "--nofile=256:4096", "--"],
                   limits={"max_connections": 2000})
    limits = (Path("/proc/%d/limits" % gh.proc.pid)).read_text()
    row = [l for l in limits.splitlines() if l.startswith("Max open files")][0]
    assert row.split()[3:5] == ["4096", "4096"], row
    log = gh.error_log()
    assert "open files limit raised from 256 to 4096" in log, log
    # 2000 sessions x 4 descriptors + 128 spare = 8128 > 4096.
    assert re.search(r"warn .*open files limit 4096 is below what max_connections = 2000 "
                     r"may need \(8128\)", log), log
    # It works, of course.
    m = gh.imap()
    assert m.login(*ALICE)[0] == "OK"
    m.logout()


@pytest.mark.skipif(VALGRIND, reason="valgrind manages the descriptor limit itself")
def test_open_files_limit_no_warning_when_it_suffices(gatehouse):
    gh = gatehouse(_prefix=["prlimit", "--nofile=256:4096", "--"],
                   limits={"max_connections": 500})
    log = gh.error_log()
    assert "open files limit raised from 256 to 4096" in log, log
    assert "is below what max_connections" not in log, log

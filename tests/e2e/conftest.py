"""Fixtures for gatehouse's end-to-end tests.

Session scope: two private Dovecot mailstores (store A: alice, carol;
store B: bob) on free 127.0.0.1 ports.  Function scope: a fake lookup
service (`lookup`), a private memcached (`memcached`) and a factory that
starts gatehouse (`gatehouse`).

Environment:
  GATEHOUSE_BIN       the binary (default <repo>/build/gatehouse)
  GATEHOUSE_E2E_KEEP  if set, keep the mailstore directory after the run
  GATEHOUSE_VALGRIND  if 1, run gatehouse under valgrind's leak checker; a
                      test fails when its log shows a definite leak or any
                      memory error (scripts/ci-valgrind.sh)
"""

import imaplib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ghtest                                    # noqa: E402
from ghtest import free_port, parse_audit_line, to_libconfig, deep_merge  # noqa: E402
from ghtest import ALICE, BOB, CAROL  # noqa: E402
from lookupd import LookupServer                 # noqa: E402
from mailstore import Mailstore, make_message, make_big_message, die_with_parent  # noqa: E402

REPO = HERE.parents[1]
GATEHOUSE_BIN = Path(os.environ.get("GATEHOUSE_BIN") or REPO / "build" / "gatehouse")


PASSWORDS = (ALICE[1], BOB[1], CAROL[1])
SANITIZER_RE = re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|"
                          r"runtime error:|Segmentation fault|core dumped|"
                          r"\bBUG at [^ ]+:[0-9]+:")


VALGRIND = os.environ.get("GATEHOUSE_VALGRIND") == "1"
# Everything gatehouse does is ~10-30x slower under valgrind: start-up,
# teardown and the per-test limit scale by this (tests may use it too).
SLOW = 5 if VALGRIND else 1
VALGRIND_ERROR_EXIT = 99
VALGRIND_BAD_RE = re.compile(r"definitely lost: [1-9][0-9,]* bytes|"
                             r"ERROR SUMMARY: [1-9][0-9,]* errors")

TEST_TIME_LIMIT = 60 * SLOW     # seconds; no pytest-timeout on this machine


@pytest.fixture(autouse=True)
def _time_limit():
    """Fail (rather than hang) a test that runs longer than TEST_TIME_LIMIT."""
    def expired(signum, frame):
        raise TimeoutError("test exceeded %d s" % TEST_TIME_LIMIT)
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIME_LIMIT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------- mailstores

class Stores:
    """The two session-wide mailstores and what is in them."""

    def __init__(self, root):
        self.root = root
        self.a = Mailstore(os.path.join(root, "store-a"), name="store-a")
        self.b = Mailstore(os.path.join(root, "store-b"), name="store-b")
        big = make_big_message(10, seed=7, subject="big message")
        self.big_bytes = big
        self.a.add_user(ALICE[0], ALICE[1], [
            make_message("Welcome alice", "Hello alice.", to=ALICE[0]),
            make_message("marker store-a", "This message lives on store A.", to=ALICE[0]),
            make_message("a small note", "Nothing to see here.\n-- \nalice", to=ALICE[0]),
            big,
        ])
        self.a.add_user(CAROL[0], CAROL[1], [
            make_message("Welcome carol", "Hello carol.", to=CAROL[0]),
            make_message("marker store-a", "This message lives on store A.", to=CAROL[0]),
        ])
        self.b.add_user(BOB[0], BOB[1], [
            make_message("Welcome bob", "Hello bob.", to=BOB[0]),
            make_message("marker store-b", "This message lives on store B.", to=BOB[0]),
            make_message("another note", "Still nothing.", to=BOB[0]),
        ])
        self.a.write()
        self.b.write()
        info = self.a.manifest["users"][ALICE[0]]["messages"][3]
        self.big_uid = info["uid"]
        self.big_size = info["size"]
        self.big_sha256 = info["sha256"]

    def start(self):
        self.a.start()
        self.b.start()

    def stop(self):
        self.a.terminate()
        self.b.terminate()
        self.a.stop()
        self.b.stop()

    def store_for(self, user):
        return self.b if user.startswith("bob") else self.a


@pytest.fixture(scope="session")
def stores():
    root = tempfile.mkdtemp(prefix="gh-e2e-", dir="/tmp")
    os.chmod(root, 0o755)      # Dovecot's mail uid must traverse it
    st = Stores(root)
    try:
        st.start()
        yield st
    finally:
        st.stop()
        if not os.environ.get("GATEHOUSE_E2E_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- memcached

@pytest.fixture
def memcached():
    """A private memcached on a free port (mcd.Memcached), stopped afterwards;
    a test may stop() and start() it again on the same port."""
    from mcd import Memcached
    mc = Memcached().start()
    yield mc
    mc.stop()


# ---------------------------------------------------------------- lookup

@pytest.fixture
def lookup(stores):
    # Each store's port by Auth-Protocol: IMAP and POP3 logins land on the
    # same mailstore, on its listener for that protocol.
    a = ("127.0.0.1", {"imap": stores.a.imap_port, "pop3": stores.a.pop3_port})
    b = ("127.0.0.1", {"imap": stores.b.imap_port, "pop3": stores.b.pop3_port})
    srv = LookupServer({
        ALICE[0]: a + (ALICE[0],),
        CAROL[0]: a + (CAROL[0],),
        BOB[0]: b + (BOB[0],),
        "bob": b + (BOB[0],),
    })
    srv.start()
    yield srv
    srv.stop()
    for req in srv.requests:
        for pw in PASSWORDS:
            assert pw.encode() not in req.raw, "password sent to the lookup service"


# ---------------------------------------------------------------- gatehouse

class Gatehouse:
    def __init__(self, directory, settings, port):
        self.dir = Path(directory)
        self.settings = settings
        self.port = port
        self.conf_path = self.dir / "gatehouse.conf"
        self.audit_path = Path(settings.get("audit_log", self.dir / "audit.log"))
        self.error_log_path = Path(settings.get("error_log", self.dir / "error.log"))
        self.stdout_path = self.dir / "stdout.log"
        self.stderr_path = self.dir / "stderr.log"
        self.proc = None

    # -- process
    valgrind_log_path = property(lambda self: self.dir / "valgrind.log")

    def start(self, timeout=10.0, prefix=()):
        """Start the binary; prefix is argv put before it (e.g. prlimit)."""
        if not GATEHOUSE_BIN.exists():
            pytest.fail("gatehouse binary not found at %s (set GATEHOUSE_BIN)" % GATEHOUSE_BIN)
        self.conf_path.write_text(to_libconfig(self.settings))
        argv = [str(GATEHOUSE_BIN), "-c", str(self.conf_path)]
        if VALGRIND:
            argv = ["valgrind", "--leak-check=full", "--show-leak-kinds=definite",
                    "--errors-for-leak-kinds=definite", "--error-exitcode=%d" % VALGRIND_ERROR_EXIT,
                    "--log-file=%s" % self.valgrind_log_path] + argv
            timeout *= SLOW * 2
        self.proc = subprocess.Popen(
            die_with_parent(list(prefix) + argv),
            cwd=str(self.dir),
            stdin=subprocess.DEVNULL, stdout=open(self.stdout_path, "wb"),
            stderr=open(self.stderr_path, "wb"))
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail("gatehouse exited with %s at start-up:\n%s" % (
                    self.proc.returncode, self.logs_text()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                # Every worker binds its listeners one after another: with
                # several, wait for the others too (valgrind widens the gap).
                for port in self._other_loopback_ports():
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail("gatehouse did not accept on 127.0.0.1:%d within %.0fs:\n%s"
                            % (self.port, timeout, self.logs_text()))
            time.sleep(0.02)

    def _other_loopback_ports(self):
        ports = []
        for l in self.settings.get("listen") or []:
            host, _, port = str(l.get("address", "")).rpartition(":")
            if host == "127.0.0.1" and port.isdigit() and int(port) != self.port:
                ports.append(int(port))
        return ports

    def signal(self, sig):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout=10.0):
        """SIGTERM, wait; return the exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self.proc.returncode

    # -- resources (from /proc; under valgrind they include valgrind's own)
    def rss_kb(self):
        """Resident set size in KiB."""
        for line in Path("/proc/%d/status" % self.proc.pid).read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS for pid %d" % self.proc.pid)

    def fd_count(self):
        """Open file descriptors."""
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def valgrind_problems(self):
        """The valgrind log when it shows a definite leak or an error, else ''."""
        text = self._read(self.valgrind_log_path) if VALGRIND else ""
        return text if VALGRIND_BAD_RE.search(text) else ""

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    # -- clients
    def imap(self, timeout=10):
        return imaplib.IMAP4("127.0.0.1", self.port, timeout=timeout)

    def raw(self, timeout=10.0, read_greeting=True):
        return ghtest.RawImap(self.port, timeout=timeout, read_greeting=read_greeting)

    # -- logs
    @staticmethod
    def _read(path):
        try:
            return Path(path).read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""

    def error_log(self):
        return self._read(self.error_log_path)

    def logs_text(self):
        return "--- stderr\n%s--- stdout\n%s--- error_log\n%s" % (
            self._read(self.stderr_path), self._read(self.stdout_path), self.error_log())

    def audit_lines(self):
        """The audit log's login-attempt lines (those carrying result=)."""
        return [l for l in self._read(self.audit_path).splitlines()
                if " result=" in l]

    def audit_records(self):
        return [parse_audit_line(l) for l in self.audit_lines()]

    def wait_audit(self, count=1, timeout=3.0):
        """Wait until the audit log holds at least `count` lines; return the records."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.audit_lines()
            if len(lines) >= count:
                return [parse_audit_line(l) for l in lines]
            if time.monotonic() > deadline:
                pytest.fail("expected %d audit line(s) in %s, found %d:\n%s" % (
                    count, self.audit_path, len(lines), "\n".join(lines)))
            time.sleep(0.02)

    def last_audit(self, count=None, timeout=3.0, until=None, **want):
        """The newest audit record, waiting for `count` lines if given, and
        for the newest to have the fields in `want` (result="fail", ...) and
        to pass `until(rec)`: a worker writes its lines once per loop pass,
        so a client can see the answer to its login a moment before the line
        is in the file.  After `timeout` the newest record is returned as it
        is, for the caller's assertion to show."""
        deadline = time.monotonic() + timeout
        while True:
            rec = self.wait_audit(count or 1, timeout)[-1]
            if (all(rec.get(k) == v for k, v in want.items()) and
                    (until is None or until(rec))) or time.monotonic() > deadline:
                return rec
            time.sleep(0.02)

    def assert_no_secret(self, *secrets):
        """No password may appear in any log gatehouse writes."""
        texts = {"audit_log": self._read(self.audit_path),
                 "error_log": self.error_log(),
                 "stderr": self._read(self.stderr_path),
                 "stdout": self._read(self.stdout_path)}
        for s in secrets:
            for name, text in texts.items():
                assert s not in text, "password %r found in gatehouse %s" % (s, name)

    def assert_healthy(self):
        text = self._read(self.stderr_path) + self.error_log()
        m = SANITIZER_RE.search(text)
        assert not m, "gatehouse reported %r:\n%s" % (m.group(0), self.logs_text())


def default_settings(directory, port, lookup):
    return {
        "workers": 2,
        "log_level": "info",
        "error_log": str(Path(directory) / "error.log"),
        "audit_log": str(Path(directory) / "audit.log"),
        "shutdown_timeout": 2.0,
        "limits": {
            "preauth_timeout": 30.0,
            "connect_timeout": 2.0,
            "backend_timeout": 5.0,
            "max_auth_wait": 0.0,
            # Production answers a rejected login after 10 s; the suite's
            # many wrong passwords would take minutes.  Tests of the delay
            # set it.
            "auth_failure_delay": 0.0,
        },
        # On in production (1000 an hour); here every test's failures come
        # from 127.0.0.1 and would add up.  Tests of the limit set it.
        "throttle": {"failed_limit": 0},
        "lookup": {"servers": [lookup.url], "timeout": 5.0} if lookup else None,
        "listen": [{"address": "127.0.0.1:%d" % port, "protocol": "imap"}],
    }


@pytest.fixture
def gatehouse(tmp_path, lookup):
    """Factory: gatehouse(**overrides) -> a started Gatehouse.

    Overrides are deep-merged into the default settings; a None value removes
    a setting (gatehouse(lookup=None, routes=[...]) gives a static-only
    proxy).  On teardown every instance gets SIGTERM and must exit 0 within
    10 s without a sanitizer report."""
    started = []

    def factory(_prefix=(), **overrides):
        d = tmp_path / ("gh%d" % len(started))
        d.mkdir()
        port = free_port()
        settings = deep_merge(default_settings(d, port, lookup), overrides)
        if "listen" in overrides:
            # Listeners given by the test: gh.port is the first one's.
            port = int(settings["listen"][0]["address"].rsplit(":", 1)[1])
        gh = Gatehouse(d, settings, port)
        started.append(gh)
        return gh.start(prefix=_prefix)

    yield factory

    problems = []
    for gh in started:
        was_running = gh.proc is not None and gh.proc.poll() is None
        rc = gh.stop(10.0 * SLOW)
        vg = gh.valgrind_problems()
        if vg:
            problems.append("valgrind found a definite leak or a memory error:\n" + vg[-6000:])
        if rc is None:
            problems.append("gatehouse did not exit within %d s of SIGTERM (killed)" % (10 * SLOW))
        elif rc != 0:
            problems.append("gatehouse exited with status %s%s" % (
                rc, "" if was_running else " (before teardown)"))
        m = SANITIZER_RE.search(gh._read(gh.stderr_path) + gh.error_log())
        if m:
            problems.append("gatehouse reported %r" % m.group(0))
        try:
            gh.assert_no_secret(*PASSWORDS)
        except AssertionError as e:
            problems.append(str(e))
        if problems:
            problems.append(gh.logs_text()[-4000:])
            break
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture
def gh(gatehouse):
    """A gatehouse with the default settings (lookup service, no static routes)."""
    return gatehouse()


@pytest.fixture
def gatehouse_bin():
    if not GATEHOUSE_BIN.exists():
        pytest.fail("gatehouse binary not found at %s (set GATEHOUSE_BIN)" % GATEHOUSE_BIN)
    return GATEHOUSE_BIN


# ---------------------------------------------------------------- HTTP (issue 6)
# Test web backends (httpstore.HttpBackend) for the stores and for the
# client-IP hash, zimbraId routes in the lookup service, certificates for the
# HTTPS listener, ZM_AUTH_TOKEN minting and an HTTP gatehouse factory.

from httpstore import HttpBackend        # noqa: E402

ZIMBRA_IDS = {                           # account -> zimbraId (a uuid, 36 chars)
    ALICE[0]: "6a1f0c3e-6a2b-4c1d-9e8f-0a1b2c3d4e5f",
    CAROL[0]: "c4a7d2b1-1f2e-4d3c-8b9a-112233445566",
    BOB[0]: "b0b0b0b0-2c3d-4e5f-a6b7-c8d9e0f1a2b3",
}


def mint_zm_auth_token(zimbra_id, exp_ms=None, extra=""):
    """A ZM_AUTH_TOKEN value shaped like Zimbra's: `0_<40 hex hmac>_<hex>`,
    the hex part encoding `id=36:<uuid>;exp=13:<ms>;type=6:zimbra;`.  The
    HMAC is random: the proxy only routes on the id, the mailbox verifies."""
    exp = str(exp_ms if exp_ms is not None else int(time.time() * 1000) + 3600_000)
    fields = "id=%d:%s;exp=%d:%s;type=6:zimbra;%s" % (len(zimbra_id), zimbra_id,
                                                      len(exp), exp, extra)
    token = "0_%s_%s" % (os.urandom(20).hex(), fields.encode().hex())
    MINTED_TOKENS.append(token)
    return token


MINTED_TOKENS = []     # every token minted in this run: none may appear in a log


class WebBackends:
    """store-a / store-b: the stores' web servers (the lookup answers their
    ports for Auth-Protocol http/httpssl); web-1 (127.0.0.1) and web-2
    (127.0.0.2): the backends for the client-IP hash."""

    def __init__(self):
        self.a = HttpBackend("store-a")
        self.b = HttpBackend("store-b")
        self.web1 = HttpBackend("web-1", host="127.0.0.1")
        self.web2 = HttpBackend("web-2", host="127.0.0.2")
        self.all = [self.a, self.b, self.web1, self.web2]
        self.by_name = {b.name: b for b in self.all}
        self.hash_names = {"web-1", "web-2"}

    def start(self):
        for b in self.all:
            b.start()
        return self

    def stop(self):
        for b in self.all:
            b.stop()

    def hash_backends(self):
        return [self.web1.address, self.web2.address]


@pytest.fixture
def web(lookup):
    """Started WebBackends; the lookup routes alice/carol to store-a's web
    port and bob to store-b's for protocol http/httpssl, by name and by
    zimbraId (ZIMBRA_IDS)."""
    w = WebBackends().start()
    for login, (ip, ports, canonical) in list(lookup.users.items()):
        store = w.b if canonical == BOB[0] else w.a
        if isinstance(ports, dict):
            ports = dict(ports, http=store.port)
        lookup.users[login] = (ip, ports, canonical)
    for account, zid in ZIMBRA_IDS.items():
        store = w.b if account == BOB[0] else w.a
        lookup.ids[zid] = ("127.0.0.1", {"http": store.port}, account)
    try:
        yield w
    finally:
        w.stop()


class WebCerts:
    def __init__(self, d):
        self.dir = d
        self.crt = os.path.join(d, "mail.crt")
        self.key = os.path.join(d, "mail.key")


@pytest.fixture(scope="session")
def web_certs():
    """A self-signed RSA certificate for mail.example.com and webmail.example.net."""
    d = tempfile.mkdtemp(prefix="gh-web-", dir="/tmp")
    c = WebCerts(d)
    try:
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", c.key, "-out", c.crt, "-days", "3",
                            "-subj", "/CN=mail.example.com",
                            "-addext", "subjectAltName=DNS:mail.example.com,"
                                       "DNS:webmail.example.net"],
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        yield c
    finally:
        shutil.rmtree(d, ignore_errors=True)


def http_settings(directory, web, web_certs, mode="redirect", http=None, **overrides):
    """Overrides for the gatehouse factory as agreed for issue 6: a plain
    listener in `mode` and an HTTPS listener, the web backends for the hash,
    server_name mail.example.com, vhost webmail.example.net, access log in
    `directory`.  Returns (settings, plain_port, https_port)."""
    plain, https = free_port(), free_port()
    # listen_extra: settings of the HTTPS listener (e.g. {"http2": True}).
    listen_extra = overrides.pop("listen_extra", None) or {}
    h = {
        "backends": web.hash_backends(),
        "server_name": "mail.example.com",
        "access_log": str(Path(directory) / "access.log"),
    }
    h.update(http or {})
    settings = {
        "tls": {"cert": web_certs.crt, "key": web_certs.key},
        "vhosts": [{"names": ["webmail.example.net"], "cert": web_certs.crt,
                    "key": web_certs.key}],
        "listen": [
            {"address": "127.0.0.1:%d" % plain, "protocol": "http", "mode": mode},
            dict({"address": "127.0.0.1:%d" % https, "protocol": "http", "tls": True},
                 **listen_extra),
        ],
        "http": h,
    }
    settings.update(overrides)
    return settings, plain, https


@pytest.fixture
def http_gh(gatehouse, web, web_certs, tmp_path):
    """Factory: http_gh(mode="redirect", http={...}, **overrides) -> a started
    Gatehouse with .plain_port, .https_port and .access_log_path (the agreed
    HTTP configuration; `http` entries override the http group's)."""
    count = [0]
    started = []

    def factory(mode="redirect", http=None, **overrides):
        d = tmp_path / ("web%d" % count[0])
        count[0] += 1
        d.mkdir()
        settings, plain, https = http_settings(d, web, web_certs, mode, http, **overrides)
        gh = gatehouse(**settings)
        gh.plain_port, gh.https_port = plain, https
        gh.access_log_path = Path(settings["http"].get("access_log", d / "access.log"))
        started.append(gh)
        return gh

    yield factory

    # No password, token or Basic credential of the accounts in any log.
    import base64
    secrets = list(PASSWORDS) + [t.split("_", 2)[2] for t in MINTED_TOKENS]
    secrets += [t.split("_", 2)[1] for t in MINTED_TOKENS]
    secrets += [base64.b64encode(("%s:%s" % u).encode()).decode() for u in (ALICE, BOB, CAROL)]
    for gh in started:
        logs = {"access_log": gh._read(gh.access_log_path), "error_log": gh.error_log(),
                "stderr": gh._read(gh.stderr_path), "audit_log": gh._read(gh.audit_path)}
        for name, text in logs.items():
            for s in secrets:
                assert s not in text, "secret %r in gatehouse's %s" % (s[:12] + "...", name)

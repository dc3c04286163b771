"""systemd readiness (proxy/main.c, sd_notify(3)): with NOTIFY_SOCKET set,
gatehouse says READY=1 once its listeners are bound, RELOADING=1 then
READY=1 around a SIGHUP, STOPPING=1 when SIGTERM starts the drain, and
WATCHDOG=1 every half WATCHDOG_USEC. The socket here is a datagram socket
the test holds, as systemd's is."""

import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import GATEHOUSE_BIN, VALGRIND
from ghtest import free_port
from mailstore import die_with_parent


class NotifySocket:
    """A unix datagram socket standing in for systemd's notify socket."""

    def __init__(self, directory):
        self.path = os.path.join(str(directory), "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def wait_for(self, line, timeout=10.0):
        """Read datagrams until one holds `line`; return every line seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(line in m.split("\n") for m in self.messages):
                return self.messages
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                break
        raise AssertionError("no %r from gatehouse; got %r" % (line, self.messages))

    def close(self):
        self.sock.close()


def systemd_build(binary):
    out = subprocess.run([str(binary), "-v"], capture_output=True, text=True, timeout=10).stdout
    return "(systemd)" in out


@pytest.mark.skipif(VALGRIND, reason="timing of watchdog pings under valgrind")
def test_notify_ready_reload_watchdog_stopping(tmp_path):
    if not systemd_build(GATEHOUSE_BIN):
        pytest.skip("gatehouse built without libsystemd (gatehouse -v has no \"(systemd)\")")
    port = free_port()
    conf = tmp_path / "gatehouse.conf"
    conf.write_text('workers = 1;\nshutdown_timeout = 1.0;\n'
                    'listen = ( { address = "127.0.0.1:%d"; protocol = "imap"; } );\n' % port)
    ns = NotifySocket(tmp_path)
    env = dict(os.environ, NOTIFY_SOCKET=ns.path, WATCHDOG_USEC="200000")
    proc = subprocess.Popen(die_with_parent([str(GATEHOUSE_BIN), "-c", str(conf)]), env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "stderr.log", "wb"))
    try:
        ns.wait_for("READY=1")
        # READY means the listener is bound: a connection gets the greeting.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            assert c.recv(200).startswith(b"* OK")
        ns.wait_for("WATCHDOG=1", timeout=2.0)
        ns.messages.clear()
        proc.send_signal(signal.SIGHUP)
        ns.wait_for("RELOADING=1")
        ns.wait_for("READY=1")
        # A reload that is refused still ends the RELOADING state.
        conf.write_text("workers = ;\n")
        ns.messages.clear()
        proc.send_signal(signal.SIGHUP)
        msgs = ns.wait_for("READY=1")
        assert any("STATUS=reload refused" in m for m in msgs), msgs
        proc.send_signal(signal.SIGTERM)
        ns.wait_for("STOPPING=1")
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ns.close()

"""A private memcached for gatehouse's end-to-end tests, and a tiny client.

    mc = Memcached()           # a free port on 127.0.0.1
    mc.start()                 # memcached -l 127.0.0.1 -p PORT -U 0 [-u nobody]
    mc.get(key)                # value bytes or None        (text protocol "get")
    mc.ttl(key)                # remaining TTL in seconds    (meta "mg <key> t v")
    mc.items()                 # number of items held (stats curr_items)
    mc.stats()                 # dict of "stats"
    mc.stop()                  # SIGTERM; start() again reuses the port

memcached runs under `setpriv --pdeathsig TERM` like the Dovecot stores, so
a killed test run does not leave it behind.  As root, setpriv also drops to
`nobody` itself: memcached's own `-u` would clear the death signal (Linux
resets it when a process changes its user).
"""

import os
import pwd
import shutil
import socket
import subprocess
import time

from mailstore import _free_port, die_with_parent

MEMCACHED = shutil.which("memcached") or "/usr/bin/memcached"


class Memcached:
    def __init__(self, port=None):
        self.port = port or _free_port()
        self.proc = None

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    @staticmethod
    def _argv(port):
        argv = [MEMCACHED, "-l", "127.0.0.1", "-p", str(port), "-U", "0"]
        setpriv = shutil.which("setpriv")
        if os.geteuid() != 0:
            return die_with_parent(argv)
        if setpriv is None:
            return argv + ["-u", "nobody"]
        nobody = pwd.getpwnam("nobody")
        return [setpriv, "--pdeathsig", "TERM", "--reuid", str(nobody.pw_uid),
                "--regid", str(nobody.pw_gid), "--clear-groups", "--"] + argv

    def start(self, timeout=5.0):
        self.proc = subprocess.Popen(self._argv(self.port), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.command(b"version\r\n", until=(None, b"\r\n")).startswith(b"VERSION"):
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("memcached did not start on port %d" % self.port)
            time.sleep(0.02)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- the text protocol, one command per connection
    def command(self, data, until=(b"END\r\n", b"\r\n"), timeout=3.0):
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(data)
            buf = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return buf
                buf += chunk
                if until[0] and buf.endswith(until[0]):
                    return buf
                if until[0] is None and buf.endswith(until[1]):
                    return buf

    def get(self, key):
        """The value stored under key (bytes), or None."""
        if isinstance(key, str):
            key = key.encode()
        resp = self.command(b"get " + key + b"\r\n")
        if resp == b"END\r\n":
            return None
        head, _, rest = resp.partition(b"\r\n")
        parts = head.split()
        assert parts[0] == b"VALUE" and parts[1] == key, resp
        n = int(parts[3])
        return rest[:n]

    def ttl(self, key):
        """Seconds the key has left (-1: no expiry), or None if absent."""
        if isinstance(key, str):
            key = key.encode()
        resp = self.command(b"mg " + key + b" t v\r\n", until=(None, b"\r\n"))
        if resp.startswith(b"EN"):
            return None
        head = resp.split(b"\r\n", 1)[0].split()
        assert head[0] == b"VA", resp
        for flag in head[2:]:
            if flag.startswith(b"t"):
                return int(flag[1:])
        raise AssertionError("no TTL in %r" % resp)

    def stats(self):
        resp = self.command(b"stats\r\n")
        out = {}
        for line in resp.split(b"\r\n"):
            parts = line.split()
            if len(parts) == 3 and parts[0] == b"STAT":
                out[parts[1].decode()] = parts[2].decode()
        return out

    def items(self):
        return int(self.stats()["curr_items"])

    def wait_for(self, key, present=True, timeout=3.0):
        """Wait until key is (or is no longer) held; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.get(key)
            if (v is not None) == present:
                return v
            if time.monotonic() > deadline:
                raise AssertionError("memcached key %r %s after %.1f s (%d items)" % (
                    key, "missing" if present else "still there", timeout, self.items()))
            time.sleep(0.02)

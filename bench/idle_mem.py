#!/usr/bin/env python3
"""Memory per idle logged-in IMAP connection through gatehouse, plain and TLS.

Starts a private Dovecot mailstore and gatehouse on loopback, opens K
connections (plain on one listener, IMAPS on another), logs each in, sends
IDLE, and reads gatehouse's RSS (VmRSS) before and after. Prints KiB per
idle connection. Bounded: K connections per mode (default 1000), loopback
only, everything stopped at the end.

    /usr/bin/python3 bench/idle_mem.py [--conns K] [--gatehouse build/gatehouse]
"""
import argparse
import os
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from mailstore import Mailstore, make_message, _free_port  # noqa: E402

USER, PASSWORD = "idle@example.com", "idle-secret"


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def read_until(sock, marker, limit=65536):
    buf = b""
    while marker not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("connection closed, got %r" % buf[-200:])
        buf += chunk
        if len(buf) > limit:
            raise RuntimeError("no %r in %r" % (marker, buf[-200:]))
    return buf


def open_idle(port, ctx):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if ctx is not None:
        s = ctx.wrap_socket(s)
    read_until(s, b"\r\n")
    s.sendall(b"a LOGIN %s %s\r\n" % (USER.encode(), PASSWORD.encode()))
    read_until(s, b"a OK")
    s.sendall(b"b IDLE\r\n")
    read_until(s, b"+ ")
    return s


def measure(pid, port, ctx, conns):
    before = rss_kib(pid)
    socks = [open_idle(port, ctx) for _ in range(conns)]
    time.sleep(1.0)
    after = rss_kib(pid)
    for s in socks:
        s.close()
    time.sleep(0.5)
    return before, after, (after - before) / conns


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--gatehouse", default=os.path.join(ROOT, "build", "gatehouse"))
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    work = tempfile.mkdtemp(prefix="gh-bench-idle-", dir="/tmp")
    os.chmod(work, 0o755)
    store = Mailstore(os.path.join(work, "store"), imap_port=_free_port(), pop3_port=_free_port())
    store.add_user(USER, PASSWORD, [make_message("hello", "idle bench")])
    store.write()
    n = 2 * args.conns + 50
    extra = ("service imap {\n  process_limit = %d\n}\n"
             "service imap-login {\n  service_count = 0\n  client_limit = %d\n"
             "  process_min_avail = 2\n}\n"
             "default_client_limit = %d\ndefault_process_limit = %d\n" % (n, n, 2 * n, n + 50))
    with open(store.conf_path, "a") as f:
        f.write("\n" + extra + "\n")
    store.start()
    key, crt = os.path.join(work, "k.pem"), os.path.join(work, "c.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "2", "-subj", "/CN=bench.test"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    plain, tls = _free_port(), _free_port()
    conf = os.path.join(work, "gatehouse.conf")
    with open(conf, "w") as f:
        f.write('workers = 2; log_level = "warn"; audit_log = "off";\n'
                'tls = { cert = "%s"; key = "%s"; };\n'
                'routes = ( { match = "*"; server = "127.0.0.1:%d"; } );\n'
                'listen = ( { address = "127.0.0.1:%d"; protocol = "imap"; starttls = "off"; },\n'
                '           { address = "127.0.0.1:%d"; protocol = "imap"; tls = true; } );\n'
                % (crt, key, store.imap_port, plain, tls))
    gh = subprocess.Popen([args.gatehouse, "-c", conf])
    try:
        time.sleep(0.5)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        print("idle IMAP connections through gatehouse (%d per mode, logged in, in IDLE)"
              % args.conns)
        for name, port, c in (("plain", plain, None), ("TLS", tls, ctx)):
            b, a, per = measure(gh.pid, port, c, args.conns)
            print("  %-5s RSS %6d KiB -> %6d KiB: %.1f KiB per idle connection" % (name, b, a, per))
    finally:
        gh.terminate()
        gh.wait(timeout=15)
        store.stop()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()

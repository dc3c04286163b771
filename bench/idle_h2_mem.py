#!/usr/bin/env python3
"""Memory per idle HTTP/2 connection: gatehouse against nginx (`http2 on`).

Starts gh-fastmail (its HTTP port answers a 70-byte JSON), gatehouse and
nginx, one worker each, both with the same certificate and a proxied
location /api/ to that backend over HTTP/1.1 keep-alive. Opens K TLS
connections (ALPN h2) to each proxy in turn; on each: the preface, an
empty SETTINGS, the ACK of the server's, one GET /api/v1/status (HPACK
literals), its whole answer read (END_STREAM), then nothing: an idle
HTTP/2 connection after one request. Reads the worker's RSS (VmRSS)
before and after and prints KiB per idle connection, and the ratio; then
gatehouse's with ALPN http/1.1 (one GET, then idle) for what is not
HTTP/2's.
Bounded: K connections per proxy (default 500), loopback only,
everything stopped at the end.

    /usr/bin/python3 bench/idle_h2_mem.py --build build-hpr [--conns K]
"""
import argparse
import os
import resource
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (spawn, stop_all, free_port, wait_port, Fastmail)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + \
        struct.pack(">I", sid) + payload


def hpack_literal(name, value):
    # Literal header field without indexing, new name (RFC 7541 6.2.2),
    # lengths below 127 (no Huffman).
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def read_frame(sock, buf):
    while len(buf) < 9:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed")
        buf += chunk
    n = int.from_bytes(buf[:3], "big")
    while len(buf) < 9 + n:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed")
        buf += chunk
    return buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7fffffff, buf[9:9 + n], \
        buf[9 + n:]


def open_idle(port, ctx):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = ctx.wrap_socket(s, server_hostname="bench.test")
    if s.selected_alpn_protocol() != "h2":
        raise RuntimeError("no h2 from port %d" % port)
    block = b"".join([b"\x82", b"\x87",  # :method GET, :scheme https (static table)
                      hpack_literal(b":path", b"/api/v1/status"),
                      hpack_literal(b":authority", b"bench.test")])
    s.sendall(PREFACE + frame(4, 0, 0) + frame(1, 0x5, 1, block))  # END_STREAM|END_HEADERS
    buf, acked, done = b"", False, False
    while not (acked and done):
        kind, flags, sid, payload, buf = read_frame(s, buf)
        if kind == 4 and not flags & 1:
            s.sendall(frame(4, 1, 0))  # ACK their SETTINGS
            acked = True
        elif kind in (0, 1) and sid == 1 and flags & 1:
            done = True
        elif kind == 3 and sid == 1:
            raise RuntimeError("stream reset")
        elif kind == 7:
            raise RuntimeError("GOAWAY")
    return s


def open_idle_h1(port, ctx):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = ctx.wrap_socket(s, server_hostname="bench.test")
    s.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: bench.test\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, body = buf.split(b"\r\n\r\n", 1)
    n = int([ln.split(b":")[1] for ln in head.split(b"\r\n")
             if ln.lower().startswith(b"content-length:")][0])
    while len(body) < n:
        body += s.recv(65536)
    return s


def measure(pid, port, ctx, conns, opener=open_idle, hold=0.0):
    for _ in range(20):  # warm-up: allocator arenas, TLS session cache
        opener(port, ctx).close()
    time.sleep(0.5)
    before = bench.rss_kib(pid)
    socks = [opener(port, ctx) for _ in range(conns)]
    # Idle for 2 s: past gatehouse's HTTP_IDLE_RELEASE_MS (0.5 s), after
    # which an idle HTTP/1.1 connection gives back its spare exchange and
    # input buffer.
    time.sleep(2.0)
    after = bench.rss_kib(pid)
    if hold > 0:
        print("  holding %d idle connections for %.0f s (pid %d)" % (conns, hold, pid),
              flush=True)
        time.sleep(hold)
    for s in socks:
        s.close()
    time.sleep(0.5)
    return before, after, (after - before) / conns


def nginx_worker(master):
    for _ in range(50):
        try:
            with open("/proc/%d/task/%d/children" % (master, master)) as f:
                kids = [int(x) for x in f.read().split()]
            if kids:
                return kids[0]
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("no nginx worker")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=500)
    ap.add_argument("--build", default=os.path.join(os.path.dirname(HERE), "build"))
    ap.add_argument("--wrap", default="",
                    help="command gatehouse runs under (e.g. 'heaptrack -o F'); RSS figures"
                    " are then the wrapper's and meaningless: for attribution only")
    ap.add_argument("--hold", type=float, default=0.0,
                    help="seconds to keep gatehouse's idle connections open before closing"
                    " them (for gdb or a heap profiler)")
    ap.add_argument("--no-nginx", action="store_true", help="gatehouse only")
    ap.add_argument("--no-h1", action="store_true", help="skip the HTTP/1.1 connections")
    ap.add_argument("--no-h2", action="store_true", help="skip the HTTP/2 connections")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    d = tempfile.mkdtemp(prefix="gh-bench-idleh2-", dir="/tmp")
    os.chmod(d, 0o755)
    try:
        fm = bench.Fastmail(args.build, d, 1000)
        key, crt = os.path.join(d, "k.pem"), os.path.join(d, "c.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                        "-days", "2", "-subj", "/CN=bench.test"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        gport, nport = bench.free_port(), bench.free_port()
        conf = os.path.join(d, "gatehouse.conf")
        with open(conf, "w") as f:
            f.write('workers = 1; log_level = "warn"; audit_log = "off";\n'
                    'error_log = "%s/gatehouse-error.log";\n'
                    'tls = { cert = "%s"; key = "%s"; protocols = [ "TLSv1.3" ]; };\n'
                    'routes = ( { match = "*"; server = "127.0.0.1:%d"; } );\n'
                    'http = { keepalive_timeout = 600.0; };\n'
                    'upstreams = ( { name = "api"; servers = [ "127.0.0.1:%d" ]; '
                    'keepalive = 64; } );\n'
                    'listen = ( { address = "127.0.0.1:%d"; protocol = "http"; tls = true;\n'
                    '  locations = ( { match = "^~ /api/"; upstream = "api"; } ); } );\n'
                    % (d, crt, key, fm.imap, fm.http, gport))
        gh = bench.spawn(args.wrap.split() + [os.path.join(args.build, "gatehouse"), "-c", conf])
        bench.wait_port(gport, gh, "gatehouse")
        os.makedirs(os.path.join(d, "nginx", "tmp"), exist_ok=True)
        nconf = os.path.join(d, "nginx", "nginx.conf")
        with open(nconf, "w") as f:
            f.write("""worker_processes 1;
worker_rlimit_nofile 40000;
daemon off;
master_process on;
pid %(p)s/nginx.pid;
error_log %(p)s/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    %(temps)s
    %(web)s
}
""" % {"p": os.path.join(d, "nginx"), "temps": bench.nginx_temps(os.path.join(d, "nginx")),
       "web": bench.nginx_web(fm.http, nport, "ssl_certificate %s; ssl_certificate_key %s; "
                              "ssl_protocols TLSv1.3;" % (crt, key), bench.web_root(d)).strip()})
        if not args.no_nginx:
            ng = bench.spawn(["nginx", "-p", os.path.join(d, "nginx"), "-c", nconf],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            bench.wait_port(nport, ng, "nginx")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        print("idle HTTP/2 connections after one request (%d per proxy, one worker each)"
              % args.conns)
        res = {"nginx": 0}
        runs = [] if args.no_h2 else [("gatehouse", gh.pid, gport, args.hold)]
        if not args.no_nginx and not args.no_h2:
            runs.append(("nginx", nginx_worker(ng.pid), nport, 0.0))
        for name, pid, port, hold in runs:
            b, a, per = measure(pid, port, ctx, args.conns, hold=hold)
            res[name] = per
            print("  %-9s RSS %6d KiB -> %6d KiB: %.1f KiB per idle h2 connection"
                  % (name, b, a, per))
        if res["nginx"] > 0 and "gatehouse" in res:
            print("  gatehouse/nginx: %.2fx" % (res["gatehouse"] / res["nginx"]))
        # gatehouse after one HTTP/1.1 request (ALPN http/1.1): what is not
        # HTTP/2's. Measured after the h2 connections closed, so memory they
        # freed is used again: a lower bound (nginx's shows 0 that way).
        if args.no_h1:
            return
        ctx1 = ssl.create_default_context()
        ctx1.check_hostname = False
        ctx1.verify_mode = ssl.CERT_NONE
        ctx1.set_alpn_protocols(["http/1.1"])
        b, a, per = measure(gh.pid, gport, ctx1, args.conns, open_idle_h1,
                          hold=args.hold)
        print("  gatehouse RSS %6d KiB -> %6d KiB: %.1f KiB per idle HTTP/1.1 connection"
              " (at least)" % (b, a, per))
    finally:
        bench.stop_all()
        subprocess.run(["rm", "-rf", d])


if __name__ == "__main__":
    main()

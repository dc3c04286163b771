#!/usr/bin/env python3
"""request_instr.py - user-space instructions per HTTPS request, gatehouse
against nginx, counted by valgrind's callgrind.

bench.py's web rows measure CPU time per request on a shared 2-core
machine, where one build's runs swing by 15 %. Instruction counts do not
swing: this script runs each proxy (one process, one worker) under
callgrind with instrumentation off, warms it up, turns counting on
(`callgrind_control -i on`) for N requests made by h2load, dumps, and
divides. The kernel's share (TCP, wake-ups: most of the CPU time of these
rows) is not counted, and an instruction is not a fixed time; the figure
says how much user-space work each proxy does per request, and moves
only when code changes. One skew: valgrind counts a `rep stosb` or `rep
movsb` once per byte, and glibc's memset and memcpy use them for blocks
of a few KiB and more, so zeroing or copying a big block weighs far more
here than in CPU time; each row also prints the mem* functions' share
and the ratio without it.

Rows (the same locations, files and backend as bench.py's web rows):
  web-static-4k  GET /static/4k.js over HTTP/1.1 (h2load --h1, 8 connections)
  web-api        GET /api/v1/status over HTTP/1.1, proxied to the backend
  web-h2         GET /api/v1/status over HTTP/2 (4 connections x 32 streams)

Usage: request_instr.py [--build DIR] [-n N] [--only ROWS]
Needs valgrind, nginx, h2load (nghttp2-client). Loopback only.
"""

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402

ROWS = {
    "web-static-4k": ("/static/4k.js", ["--h1", "-c8", "-m1"]),
    "web-api": ("/api/v1/status", ["--h1", "-c8", "-m1"]),
    "web-h2": ("/api/v1/status", ["-c4", "-m32"]),
}


def h2load(port, path, opts, n):
    out = subprocess.run(["h2load", "-t1", "-n%d" % n, *opts,
                          "https://127.0.0.1:%d%s" % (port, path)],
                         capture_output=True, text=True, timeout=600)
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out.stdout)
    ok = int(m.group(1)) if m else 0
    if ok != n:
        raise RuntimeError("h2load: %d of %d succeeded\n%s%s" % (ok, n, out.stdout, out.stderr))
    return ok


def count(d, name, argv, port, path, opts, n):
    """Instructions per request of argv (one process) under callgrind."""
    out = os.path.join(d, "cg-%s" % name)
    for f in glob.glob(out + ".*"):
        os.unlink(f)
    p = bench.spawn(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                     "--callgrind-out-file=%s.%%p" % out, *argv],
                    stdout=open(os.path.join(d, name + ".out"), "w"), stderr=subprocess.STDOUT)
    try:
        bench.wait_port(port, p, name, timeout=60)
        h2load(port, path, opts, 200)  # warm-up: pools, caches, allocator
        subprocess.run(["callgrind_control", "-i", "on", str(p.pid)], check=True,
                       capture_output=True, timeout=60)
        h2load(port, path, opts, n)
        subprocess.run(["callgrind_control", "-d", str(p.pid)], check=True,
                       capture_output=True, timeout=60)
        time.sleep(0.5)
    finally:
        bench.stop(p, timeout=30)
    # The dump holds what ran since counting began; the file written at
    # exit, what ran after the dump (shutdown): both are summed, the
    # second is close to nothing.
    total = mem = 0
    for f in glob.glob(out + ".*"):
        with open(f) as fh:
            for line in fh:
                if line.startswith("summary:"):
                    total += int(line.split()[1])
        ann = subprocess.run(["callgrind_annotate", "--threshold=100", f], capture_output=True,
                             text=True, timeout=120).stdout
        for line in ann.splitlines():
            m = re.match(r"\s*([\d,]+) .*:__(memset|memmove|memcpy)\w*", line)
            if m:
                mem += int(m.group(1).replace(",", ""))
    return total / n, mem / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(os.path.dirname(HERE), "build"))
    ap.add_argument("-n", type=int, default=20000,
                    help="requests counted per row (the row's 4-8 TLS handshakes are in"
                    " the count: ~2.7M instructions each, at most 1.1K per request at 20,000)")
    ap.add_argument("--only", default=",".join(ROWS), help="rows, comma-separated")
    ap.add_argument("--keep", action="store_true",
                    help="keep the run's directory (callgrind files for callgrind_annotate)")
    a = ap.parse_args()
    rows = [r.strip() for r in a.only.split(",") if r.strip()]
    for r in rows:
        if r not in ROWS:
            sys.exit("unknown row %s (rows: %s)" % (r, ", ".join(ROWS)))
    d = tempfile.mkdtemp(prefix="gh-bench-instr-", dir="/tmp")
    os.chmod(d, 0o755)
    try:
        fm = bench.Fastmail(a.build, d, 1000)
        bench.make_web_files(d)
        key, crt = os.path.join(d, "k.pem"), os.path.join(d, "c.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                        "-days", "2", "-subj", "/CN=bench.test"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.chmod(key, 0o644)
        gport, nport = bench.free_port(), bench.free_port()
        gconf = os.path.join(d, "gatehouse.conf")
        with open(gconf, "w") as f:
            f.write('workers = 1; log_level = "warn";\n'
                    'error_log = "%s/gatehouse-error.log"; audit_log = "off";\n'
                    'tls = { cert = "%s"; key = "%s"; protocols = [ "TLSv1.3" ]; };\n'
                    'routes = ( { match = "*"; server = "127.0.0.1:%d"; } );\n'
                    'http = { backends = [ "127.0.0.1:%d" ]; keepalive_timeout = 600.0;\n'
                    '  h2_max_requests = 100000; h2_stream_rate = 1000000; };\n'
                    'upstreams = ( { name = "api"; servers = [ "127.0.0.1:%d" ];\n'
                    '  balance = "round_robin"; keepalive = 64; } );\n'
                    'listen = ( { address = "127.0.0.1:%d"; protocol = "http"; tls = true;\n'
                    '  locations = (\n%s\n  ); } );\n'
                    % (d, crt, key, fm.imap, fm.http, fm.http, gport, bench.web_locations(d)))
        ng = os.path.join(d, "nginx")
        os.makedirs(os.path.join(ng, "tmp"), exist_ok=True)
        nconf = os.path.join(ng, "nginx.conf")
        with open(nconf, "w") as f:
            f.write("""master_process off;
daemon off;
pid %(p)s/nginx.pid;
error_log %(p)s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    %(temps)s
    %(web)s
}
""" % {"p": ng, "temps": bench.nginx_temps(ng),
                "web": bench.nginx_web(fm.http, nport, "ssl_certificate %s; ssl_certificate_key %s; "
                                       "ssl_protocols TLSv1.3;" % (crt, key),
                                       bench.web_root(d)).strip()})
        gh_argv = [os.path.join(a.build, "gatehouse"), "-c", gconf]
        ng_argv = ["nginx", "-p", ng, "-c", nconf]
        print("user-space instructions per request, callgrind, %d requests counted per row"
              % a.n)
        for r in rows:
            path, opts = ROWS[r]
            g, gm = count(d, "gatehouse-" + r, gh_argv, gport, path, opts, a.n)
            n, nm = count(d, "nginx-" + r, ng_argv, nport, path, opts, a.n)
            print("  %-14s gatehouse %6.0f (mem* %5.0f)  nginx %6.0f (mem* %5.0f)  "
                  "gatehouse/nginx %.3fx, without mem* %.3fx"
                  % (r, g, gm, n, nm, g / n, (g - gm) / (n - nm)), flush=True)
    finally:
        bench.stop_all()
        if a.keep:
            print("kept %s (callgrind files cg-<proxy>-<row>.<pid>*)" % d)
        else:
            subprocess.run(["rm", "-rf", d])


if __name__ == "__main__":
    main()

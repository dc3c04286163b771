#!/usr/bin/env python3
"""CPU gatehouse spends per HTTP response with and without compression,
and the memory one compressor holds.

One worker, a plain listener (mode both) in front of one test backend
(tests/e2e/httpstore.py) serving /text?size=N (compressible HTML); a
keep-alive client asks N times for the page with Accept-Encoding none,
gzip and br. The figure is gatehouse's own CPU time (utime + stime from
/proc) per response, so other load on the machine changes it little. The
compressor's memory comes from its debug line ("compressor held N bytes",
http_compressor_held at the end of the response).

    bench/compress_cpu.py [--build build-m] [--size 20000] [--count 2000]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))

from ghtest import free_port, to_libconfig  # noqa: E402
from httpstore import HttpBackend, HttpClient  # noqa: E402


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build-m")
    ap.add_argument("--size", type=int, default=20000)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--gzip-level", type=int, default=6)
    ap.add_argument("--br-level", type=int, default=1)
    a = ap.parse_args()
    backend = HttpBackend("bench")
    backend.start()
    d = tempfile.mkdtemp(prefix="gh-zbench-")
    port = free_port()
    conf = os.path.join(d, "gatehouse.conf")
    log = os.path.join(d, "error.log")
    with open(conf, "w") as f:
        f.write(to_libconfig({
            "workers": 1, "log_level": "debug", "error_log": log,
            "listen": [{"address": "127.0.0.1:%d" % port, "protocol": "http", "mode": "both"}],
            "http": {"backends": [backend.address],
                     "compression": {"gzip_level": a.gzip_level, "br_level": a.br_level}},
        }))
    gh = subprocess.Popen([os.path.join(HERE, "..", a.build, "gatehouse"), "-c", conf])
    try:
        for _ in range(100):
            try:
                HttpClient(port, tls=False).close()
                break
            except OSError:
                time.sleep(0.05)
        path = "/text?size=%d" % a.size
        rows = []
        for coding in ("identity", "gzip", "br"):
            c = HttpClient(port, tls=False)
            hdrs = [] if coding == "identity" else [("Accept-Encoding", coding)]
            r = c.request(path=path, headers=hdrs)           # warm-up
            t0 = cpu_seconds(gh.pid)
            for _ in range(a.count):
                r = c.request(path=path, headers=hdrs)
            t1 = cpu_seconds(gh.pid)
            c.close()
            rows.append((coding, (t1 - t0) / a.count * 1e6, len(r.body)))
        held = {}
        with open(log) as f:
            for m in re.finditer(r": (gzip|br) \d+ -> \d+ bytes, compressor held (\d+) bytes", f.read()):
                held[m.group(1)] = int(m.group(2))
        print("body %d bytes text/html, %d responses each, gzip level %d, br quality %d"
              % (a.size, a.count, a.gzip_level, a.br_level))
        base = rows[0][1]
        for coding, us, n in rows:
            extra = "" if coding == "identity" else \
                ", +%.0f us for compressing, compressor held %.0f KiB" % (us - base, held.get(coding, 0) / 1024)
            print("%-8s %7.1f us CPU per response, %6d bytes on the wire%s" % (coding, us, n, extra))
    finally:
        gh.terminate()
        gh.wait(10)
        backend.stop()


if __name__ == "__main__":
    main()

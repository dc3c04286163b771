#!/usr/bin/env python3
"""gatehouse against nginx, on one machine, in one run (`make bench`).

Starts, in a private temporary directory on loopback only:
  - gh-fastmail: a minimal fast IMAP + POP3 backend, the auth_http lookup
    responder for both proxies, and a tiny HTTP/1.1 backend;
  - memcached (gatehouse's L2 route cache);
  - gatehouse (workers = W; lookup = fastmail; L1 + memcached cache);
  - nginx (Debian's, with libnginx-mod-mail; worker_processes = W; mail
    proxy with auth_http = fastmail, plus an HTTPS reverse proxy in front of
    the same HTTP backend);
and runs each scenario against gatehouse, nginx and the backend directly,
alternating the order every round, R rounds.  Load comes from gh-loadgen
(C) and, for HTTPS, wrk.  Prints a table of medians with the
gatehouse/nginx ratio and each proxy's CPU time during the run (summed over
all its processes and threads, from /proc/<pid>/stat), and writes every raw
result as JSON lines to --json.

The operator's workload (rows "N users"): gh-loadgen --users N logs in as
user0..userN-1 in turn (N = --users, 10,000 by default), a cyclic scan over a
site.  Each plain storm runs a cold pass first (gatehouse restarted, so its
L1 is empty, and memcached flushed: every route is looked up; gh-loadgen
--count N, every user once) and then a warm pass of S seconds; the TLS
storms run warm over the same users with an ECDSA P-256 and an RSA-2048
certificate.  nginx has no route cache: its cold and warm passes are the
same work (an auth_http request per login).  For every login run the
detail table gives, per proxy: rate, CPU per login split user/system (from
/proc/<pid>/stat, all processes and threads), system calls per login
(`perf stat -e raw_syscalls:sys_enter` attached for a window in the middle
of warm runs, divided by the logins in that window at the run's rate),
context switches per login (voluntary/involuntary, summed over
/proc/<pid>/task/*/status) and p50/p99 latency.  The single-user storms
stay as their own rows.

Both proxies get the same certificates (an ECDSA P-256 one, and an RSA-2048
one for the "RSA" rows: gatehouse picks it by SNI, nginx on a listener of its
own; made here with the openssl CLI), nginx proxy_buffer 16k and
worker_processes = W = the machine's cores; TLS 1.3 only with their default session tickets (the
"TLS resumed" storm offers each client's last ticket), the same worker
count and low log levels
(nginx error_log warn; gatehouse log_level warn, audit lines to a file).
Gatehouse pipelines its POP3 backend login (pop3.backend_pipelining, for
mailstores that announce PIPELINING, as fastmail and Dovecot do); nginx
cannot. --pop3-lockstep measures gatehouse's default lock-step login.

The web front door (rows "web"): the same HTTPS listener configuration on
both proxies, on a port of its own: an upstream location `^~ /api/` to
gh-fastmail's HTTP port (a 70-byte JSON answer; gatehouse: an upstream group
with keep-alive, nginx: an `upstream` block with `keepalive`, HTTP/1.1 and
the forwarding headers gatehouse sends), and a root location `^~ /static/`
over a directory holding a 4 KiB and a 64 KiB file (nginx: `sendfile on`,
`open_file_cache`, ETag and Last-Modified as both send them by default).
wrk drives them with keep-alive connections (--http-clients); each row
gives requests/s, proxy CPU per request user/system, system calls per
request and wrk's p50/p99.  Before a row is measured each proxy's answer is
checked (status, body bytes, ETag / Last-Modified for files); a proxy that
answers something else (a binary whose locations do not serve files yet)
is skipped for that row, with the reason in the table. Row "web-h2": the
same API location over HTTP/2 (gatehouse: http2 on by default; nginx:
`listen ... ssl http2`), h2load with --h2-clients connections of
--h2-streams concurrent streams each (wrk offers no ALPN, so the HTTP/1.1
rows stay HTTP/1.1).

    /usr/bin/python3 bench/bench.py [--rounds R] [--secs S] [--clients C]
        [--idle K] [--no-idle-warm-tls] [--workers W] [--users N] [--only SCEN,...]
        [--rows GROUP,...] [--build DIR] [--json FILE]

--rows picks groups of rows: mail (IMAP/POP3 storms and FETCH), idle,
https (the plain HTTPS row), web (proxied API and static files).

Environment: BENCH_ROUNDS, BENCH_SECS, BENCH_CLIENTS, BENCH_IDLE,
BENCH_USERS override the defaults (3, 10, 50, 1000, 10000); BENCH_TLS_CLIENTS (200) the TLS login
storms' clients.  Every run is bounded (loadgen -d, its own
timeouts, and a kill after d + 30 s), and every process started here is
killed on exit, also on Ctrl-C.
"""
import argparse
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
USER, PASSWORD = "bench@example.com", "bench-secret"
SNI, RSA_SNI = "mail.example.com", "rsa.example.com"
NGINX_MAIL_MODULE = "/usr/lib/nginx/modules/ngx_mail_module.so"

_children = []
_used_ports = set()


# ------------------------------------------------------------------ helpers

def _pdeathsig():
    """Child: die with the orchestrator, so nothing outlives a killed run."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn(argv, **kw):
    kw.setdefault("stdin", subprocess.DEVNULL)
    p = subprocess.Popen(argv, preexec_fn=_pdeathsig, **kw)
    _children.append(p)
    return p


def stop(p, timeout=5.0):
    if p is None or p.poll() is not None:
        return
    p.terminate()
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def stop_all():
    for p in reversed(_children):
        stop(p, 3.0)


def free_port():
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _used_ports:
            _used_ports.add(port)
            return port


def wait_port(port, proc, what, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s does not listen on %d" % (what, port))


def family(pid):
    """pid and all its descendants (nginx: master and workers)."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pid):
    """utime + stime of pid and its descendants, all threads included."""
    total = 0
    for p in family(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def cpu_split(pid):
    """(utime, stime) in seconds of pid and its descendants, all threads."""
    u = s = 0
    for p in family(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        u += int(fields[11])
        s += int(fields[12])
    return u / CLK_TCK, s / CLK_TCK


def ctx_switches(pid):
    """(voluntary, involuntary) context switches of every thread of pid and
    its descendants (/proc/<pid>/status counts only the main thread)."""
    v = nv = 0
    for p in family(pid):
        try:
            tids = os.listdir("/proc/%d/task" % p)
        except OSError:
            continue
        for t in tids:
            try:
                with open("/proc/%d/task/%s/status" % (p, t)) as f:
                    for line in f:
                        if line.startswith("voluntary_ctxt_switches:"):
                            v += int(line.split()[1])
                        elif line.startswith("nonvoluntary_ctxt_switches:"):
                            nv += int(line.split()[1])
            except OSError:
                pass
    return v, nv


PERF = shutil.which("perf")


def syscall_window(pid, delay, secs):
    """Counts the system calls of pid's processes (every thread) for secs
    seconds from delay on: perf stat on the raw_syscalls:sys_enter
    tracepoint. Returns a Popen whose stderr syscall_count() reads, or None
    where perf cannot count here."""
    if not PERF or secs <= 0:
        return None
    pids = ",".join(str(p) for p in family(pid))
    return spawn(["sh", "-c", 'sleep %.2f; exec "$0" stat -x, -e raw_syscalls:sys_enter -p %s '
                  '-- sleep %.2f' % (delay, pids, secs), PERF],
                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def syscall_count(p):
    if p is None:
        return None
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        stop(p)
        return None
    for line in err.splitlines():
        f = line.split(",")
        if len(f) > 2 and "raw_syscalls:sys_enter" in line and f[0].strip().isdigit():
            return int(f[0])
    return None


def nginx_temps(prefix):
    """nginx's temporary paths under prefix (an http block's lines)."""
    return "\n    ".join("%s_temp_path %s/tmp/%s;" % (k, prefix, v) for k, v in
                         (("client_body", "body"), ("proxy", "proxy"), ("fastcgi", "fastcgi"),
                          ("uwsgi", "uwsgi"), ("scgi", "scgi")))


NGINX_WEB = """    include /etc/nginx/mime.types;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=10000 inactive=60s;
    open_file_cache_valid 30s;
    open_file_cache_min_uses 1;
    open_file_cache_errors on;
    keepalive_requests 10000000;
    keepalive_timeout 600s;
    upstream api { server 127.0.0.1:%(api)d; keepalive 64; }
    server {
        listen 127.0.0.1:%(port)d ssl http2;
        %(ssl)s
        location ^~ /api/ {
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
        location ^~ /static/ {
            root %(www)s;
        }
    }
"""


def nginx_web(api, port, ssl, www):
    """The web rows' nginx: an http block's settings, the API upstream (at
    127.0.0.1:api) and the server on port with gatehouse's web locations
    (/api/ proxied, /static/ from www); ssl: the certificate lines."""
    return NGINX_WEB % {"api": api, "port": port, "ssl": ssl, "www": www}


def rss_kib(pid):
    total = 0
    for p in family(pid):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ------------------------------------------------------------ the web rows

# scenario key -> (listener port key, request path); the file sizes of the
# static rows. One directory under the run's: <d>/www/static/.
WEB_FILES = {"web-static-4k": 4096, "web-static-64k": 65536}
WEB_PATHS = {"https": ("https", "/"), "web-api": ("web", "/api/v1/status"),
             "web-h2": ("web", "/api/v1/status"),
             "web-static-4k": ("web", "/static/4k.js"), "web-static-64k": ("web", "/static/64k.js")}


def web_root(d):
    return os.path.join(d, "www")


def make_web_files(d):
    """The static rows' files: text (a JavaScript bundle's bytes), world
    readable, with an mtime in the past so both servers' ETag and
    Last-Modified are stable."""
    st = os.path.join(web_root(d), "static")
    os.makedirs(st, exist_ok=True)
    for d_ in (d, web_root(d), st):
        os.chmod(d_, 0o755)
    line = b"function f(a,b){return a.map(function(x){return x*b+1;});}\n"
    for key_, size in WEB_FILES.items():
        path = os.path.join(st, WEB_PATHS[key_][1].rsplit("/", 1)[1])
        with open(path, "wb") as f:
            f.write((line * (size // len(line) + 1))[:size])
        os.chmod(path, 0o644)
        os.utime(path, (time.time() - 3600, time.time() - 3600))


def web_locations(d):
    """gatehouse's locations for the web rows (nginx's are the same, in
    its own syntax)."""
    return ('      { match = "^~ /api/"; upstream = "api"; },\n'
            '      { match = "^~ /static/"; root = "%s"; }' % web_root(d))


def https_get(port, path, timeout=5.0):
    """One HTTPS GET (no certificate check: the bench's own): (status,
    headers dict with lower-case names, body)."""
    import http.client
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def web_check(d, key_, port):
    """None when the answer on port is what the row measures, else why not."""
    path = WEB_PATHS[key_][1]
    try:
        st, h, body = https_get(port, path)
    except (OSError, ValueError) as e:
        return "GET %s failed: %s" % (path, e)
    if st != 200:
        return "GET %s answered %d" % (path, st)
    if key_ == "web-h2":
        import ssl
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        try:
            with socket.create_connection(("127.0.0.1", port), 5) as raw, \
                    ctx.wrap_socket(raw, server_hostname=SNI) as s:
                if s.selected_alpn_protocol() != "h2":
                    return "no HTTP/2: ALPN chose %s" % s.selected_alpn_protocol()
        except OSError as e:
            return "TLS with ALPN h2 failed: %s" % e
    if key_ in ("web-api", "web-h2"):
        try:
            ok = json.loads(body).get("ok") is True
        except ValueError:
            ok = False
        return None if ok else "GET %s is not the backend's JSON answer" % path
    if key_ in WEB_FILES:
        with open(os.path.join(web_root(d), path.lstrip("/")), "rb") as f:
            want = f.read()
        if body != want:
            return ("GET %s did not answer the file (%d bytes, not %d): static files are not "
                    "served by this binary" % (path, len(body), len(want)))
        missing = [n for n in ("etag", "last-modified") if n not in h]
        if missing:
            return "GET %s has no %s" % (path, " / ".join(missing))
    return None


# ------------------------------------------------------------ the services

class Fastmail:
    def __init__(self, build, d, msg_size):
        self.imap, self.pop3, self.lookup, self.http = (free_port() for _ in range(4))
        self.proc = spawn([os.path.join(build, "gh-fastmail"), "--imap", str(self.imap),
                           "--pop3", str(self.pop3), "--lookup", str(self.lookup),
                           "--http", str(self.http), "--msg-size", str(msg_size)],
                          stdout=open(os.path.join(d, "fastmail.log"), "w"),
                          stderr=subprocess.STDOUT)
        for p in (self.imap, self.pop3, self.lookup, self.http):
            wait_port(p, self.proc, "gh-fastmail")


class Memcached:
    def __init__(self, d):
        self.port = free_port()
        argv = [shutil.which("memcached") or "/usr/bin/memcached", "-l", "127.0.0.1",
                "-p", str(self.port), "-U", "0", "-m", "64"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]
        self.proc = spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc, "memcached")


class Proxy:
    """One proxy under test: its listeners, and (re)start / stop."""
    name = "?"

    def __init__(self, d, ports):
        self.d = d
        self.ports = ports    # imap, imaps, pop3, pop3s, https
        self.proc = None
        self.https_ok = True
        self.https_why = ""

    @property
    def pid(self):
        return self.proc.pid

    def restart(self):
        self.stop()
        self.start()

    def stop(self):
        stop(self.proc)
        self.proc = None


class Gatehouse(Proxy):
    name = "gatehouse"

    def __init__(self, d, bin_, fm, mc, cert, key, rsa, workers, ports, pop3_pipelining=True):
        super().__init__(d, ports)
        self.bin = bin_
        listen = [
            '{ address = "127.0.0.1:%d"; protocol = "imap"; starttls = "off"; }' % ports["imap"],
            '{ address = "127.0.0.1:%d"; protocol = "imap"; tls = true; }' % ports["imaps"],
            '{ address = "127.0.0.1:%d"; protocol = "pop3"; starttls = "off"; }' % ports["pop3"],
            '{ address = "127.0.0.1:%d"; protocol = "pop3"; tls = true; }' % ports["pop3s"],
        ]
        base = """workers = %(workers)d;
log_level = "warn";
error_log = "%(d)s/gatehouse-error.log";
audit_log = "%(d)s/gatehouse-audit.log";
shutdown_timeout = 1.0;
limits = { preauth_timeout = 30.0; connect_timeout = 5.0; backend_timeout = 10.0; };
lookup = { servers = [ "http://127.0.0.1:%(lk)d/auth" ]; timeout = 5.0; };
cache = { memcached = [ "127.0.0.1:%(mc)d" ]; ttl = 3600; };
tls = { cert = "%(cert)s"; key = "%(key)s"; protocols = [ "TLSv1.3" ]; };
vhosts = ( { names = [ "%(rsa_sni)s" ]; cert = "%(rsa_cert)s"; key = "%(rsa_key)s"; } );
pop3 = { backend_pipelining = %(pipe)s; };
""" % {"workers": workers, "d": d, "lk": fm.lookup, "mc": mc.port, "cert": cert, "key": key,
           "rsa_sni": RSA_SNI, "rsa_cert": rsa[0], "rsa_key": rsa[1],
           "pipe": "true" if pop3_pipelining else "false"}
        # The HTTP front end comes from another branch; the agreed settings
        # are used when this binary accepts them (`gatehouse -t`).
        http_listen = '{ address = "127.0.0.1:%d"; protocol = "http"; tls = true; }' % ports["https"]
        # The web rows' listener: its own locations (see web_locations).
        http_listen += (',\n  { address = "127.0.0.1:%d"; protocol = "http"; tls = true;\n'
                        '    locations = (\n%s\n    ); }' % (ports["web"], web_locations(d)))
        # h2_max_requests as nginx's keepalive_requests (NGINX_WEB; h2load
        # does not reconnect after a GOAWAY, so its streams in flight count
        # as failed): 10 million, as 100,000 was reached by h2load's busiest
        # connection (8,000+ requests/s for 15 s). h2_stream_rate: nginx has no
        # per-connection stream rate; h2load's busiest connection opens
        # 5,000-10,000 streams/s here and went past the default 10,000/s
        # in bursts (GOAWAY ENHANCE_YOUR_CALM, logged, counted as errors).
        http_conf = ('http = { backends = [ "127.0.0.1:%d" ]; h2_max_requests = 10000000; '
                     'h2_stream_rate = 1000000; };\n'
                     'upstreams = (\n  { name = "api"; servers = [ "127.0.0.1:%d" ]; '
                     'balance = "round_robin"; keepalive = 64; }\n);\n' % (fm.http, fm.http))
        self.conf = os.path.join(d, "gatehouse.conf")
        with_http = base + http_conf + "listen = (\n  %s\n);\n" % ",\n  ".join(listen + [http_listen])
        with open(self.conf, "w") as f:
            f.write(with_http)
        t = subprocess.run([self.bin, "-t", "-c", self.conf], capture_output=True, text=True,
                           timeout=30)
        if t.returncode != 0:
            self.https_ok = False
            self.https_why = ("gatehouse has no HTTP front end yet (gatehouse -t: %s)"
                              % (t.stderr.strip().splitlines() or ["refused"])[-1])
            with open(self.conf, "w") as f:
                f.write(base + "listen = (\n  %s\n);\n" % ",\n  ".join(listen))
            t = subprocess.run([self.bin, "-t", "-c", self.conf], capture_output=True, text=True,
                               timeout=30)
            if t.returncode != 0:
                raise RuntimeError("gatehouse refuses the bench config: " + t.stderr)

    def start(self):
        self.proc = spawn([self.bin, "-c", self.conf], cwd=self.d,
                          stdout=open(os.path.join(self.d, "gatehouse.out"), "a"),
                          stderr=subprocess.STDOUT)
        for k in ("imap", "imaps", "pop3", "pop3s") + (("https", "web") if self.https_ok else ()):
            wait_port(self.ports[k], self.proc, "gatehouse")
        # The RSA rows use the same listener, by SNI.
        self.ports["imaps_rsa"] = self.ports["imaps"]


class Nginx(Proxy):
    name = "nginx"

    def __init__(self, d, fm, cert, key, rsa, workers, ports):
        super().__init__(d, ports)
        self.prefix = os.path.join(d, "nginx")
        os.makedirs(os.path.join(self.prefix, "tmp"), exist_ok=True)
        os.chmod(self.prefix, 0o755)
        ssl = ("ssl_certificate %s; ssl_certificate_key %s; ssl_protocols TLSv1.3;"
               % (cert, key))
        conf = """
load_module %(mod)s;
worker_processes %(workers)d;
worker_rlimit_nofile 40000;
daemon off;
master_process on;
pid %(p)s/nginx.pid;
error_log %(p)s/error.log warn;
events { worker_connections 20000; multi_accept on; }
mail {
    auth_http 127.0.0.1:%(lk)d/auth;
    proxy_pass_error_message on;
    proxy_buffer 16k;
    %(ssl)s
    server { listen 127.0.0.1:%(imap)d; protocol imap; }
    server { listen 127.0.0.1:%(imaps)d ssl; protocol imap; }
    server { listen 127.0.0.1:%(imaps_rsa)d ssl; protocol imap;
             ssl_certificate %(rsa_cert)s; ssl_certificate_key %(rsa_key)s; }
    server { listen 127.0.0.1:%(pop3)d; protocol pop3; }
    server { listen 127.0.0.1:%(pop3s)d ssl; protocol pop3; }
}
http {
    access_log off;
    %(temps)s
    upstream backend { server 127.0.0.1:%(http)d; keepalive 64; }
    server {
        listen 127.0.0.1:%(https)d ssl;
        %(ssl)s
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    # The web rows: the same locations as gatehouse's web listener.
    %(web_block)s
}
""" % dict(mod=NGINX_MAIL_MODULE, workers=workers, p=self.prefix, lk=fm.lookup, ssl=ssl,
           temps=nginx_temps(self.prefix),
           web_block=nginx_web(fm.http, ports["web"], ssl, web_root(d)).strip(),
           http=fm.http, rsa_cert=rsa[0], rsa_key=rsa[1], www=web_root(d), **ports)
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        t = subprocess.run(["nginx", "-t", "-p", self.prefix, "-c", self.conf],
                           capture_output=True, text=True, timeout=30)
        if t.returncode != 0:
            raise RuntimeError("nginx refuses the bench config: " + t.stderr)

    def start(self):
        self.proc = spawn(["nginx", "-p", self.prefix, "-c", self.conf],
                          stdout=open(os.path.join(self.prefix, "nginx.out"), "a"),
                          stderr=subprocess.STDOUT)
        for k in ("imap", "imaps", "imaps_rsa", "pop3", "pop3s", "https", "web"):
            wait_port(self.ports[k], self.proc, "nginx")


class Direct:
    """The backend itself, for the 'direct' column (plain only)."""
    name = "direct"

    def __init__(self, fm):
        self.fm = fm
        self.ports = {"imap": fm.imap, "pop3": fm.pop3, "http": fm.http}
        self.pid = fm.proc.pid


# -------------------------------------------------------------- scenarios

class Runner:
    def __init__(self, args, d):
        self.a = args
        self.d = d
        self.loadgen = os.path.join(args.build, "gh-loadgen")
        self.raw = open(args.json, "w") if args.json else None

    def record(self, rec):
        if self.raw:
            self.raw.write(json.dumps(rec) + "\n")
            self.raw.flush()

    def loadgen_run(self, scen, port, tls, clients, secs, extra=(), sni=SNI):
        argv = [self.loadgen, scen, "--port", str(port), "-c", str(clients), "-d", str(secs),
                "--user", USER, "--pass", PASSWORD] + list(extra)
        if tls:
            argv += ["--tls", "--sni", sni]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 40)
        lines = [l for l in out.stdout.splitlines() if l.startswith("{\"scenario\"")]
        if not lines:
            raise RuntimeError("gh-loadgen gave no result: %s %s" % (out.stdout, out.stderr))
        return json.loads(lines[-1])

    def measure(self, target, fn, syscalls=False):
        """Runs fn() and adds the CPU seconds the target (proxy_cpu_s, split
        proxy_user_s / proxy_sys_s), its context switches (proxy_vcsw,
        proxy_ivcsw) and the backend's CPU (backend_cpu_s) during it;
        gh-loadgen reports its own as cpu_s. syscalls: count the target's
        system calls in a window of the run's middle third (proxy_syscalls
        over syscall_window_s)."""
        pid, bpid = target.pid, self.backend_pid
        (u0, s0), (v0, n0) = cpu_split(pid), ctx_switches(pid)
        b0, t0 = cpu_seconds(bpid), time.time()
        win = min(2.0, self.a.secs / 3) if syscalls else 0
        perf = syscall_window(pid, self.a.secs / 3, win) if win >= 0.5 else None
        res = fn()
        (u1, s1), (v1, n1) = cpu_split(pid), ctx_switches(pid)
        res["proxy_user_s"] = round(u1 - u0, 3)
        res["proxy_sys_s"] = round(s1 - s0, 3)
        res["proxy_cpu_s"] = round(u1 - u0 + s1 - s0, 3)
        res["proxy_vcsw"], res["proxy_ivcsw"] = v1 - v0, n1 - n0
        res["backend_cpu_s"] = round(cpu_seconds(bpid) - b0, 3)
        res["wall_s"] = round(time.time() - t0, 3)
        n = syscall_count(perf)
        if n is not None:
            res["proxy_syscalls"], res["syscall_window_s"] = n, win
        return res

    def flush_memcached(self):
        with socket.create_connection(("127.0.0.1", self.mc.port), 5) as c:
            c.sendall(b"flush_all\r\n")
            if not c.recv(64).startswith(b"OK"):
                raise RuntimeError("memcached refused flush_all")

    def run_users(self, key_, target, tls):
        """The operator's workload over --users N users: for plain storms a
        cold pass (fresh proxy, flushed memcached, every user once) then a
        warm pass of --secs; for TLS storms (the routes warmed by an
        unmeasured plain pass) a warm pass. Returns [(scenario key, res)]."""
        proto = key_.split("-")[0]
        rsa = "-rsa" in key_
        n = self.a.users
        clients = self.a.tls_clients if tls else self.a.clients
        out = []
        if hasattr(target, "restart"):
            target.restart()
        if not tls:
            self.flush_memcached()
            res = self.measure(target, lambda: self.loadgen_run(
                proto + "-login", target.ports[proto], False, clients, 60,
                ["--users", str(n), "--count", str(n)]))
            out.append((key_ + "-cold", res))
        else:
            self.loadgen_run(proto + "-login", target.ports[proto], False, self.a.clients, 60,
                             ["--users", str(n), "--count", str(n)])
        port = target.ports[proto + ("s_rsa" if rsa else "s") if tls else proto]
        res = self.measure(target, lambda: self.loadgen_run(
            proto + "-login", port, tls, clients, self.a.secs, ["--users", str(n)],
            sni=RSA_SNI if rsa else SNI), syscalls=True)
        out.append((key_, res))
        return out

    def warm(self, target, port, proto):
        """One login first, so the proxy's route cache holds the user."""
        self.loadgen_run(proto + "-login", port, False, 1, 0.3)

    def run_mail(self, scen, target, port, tls, resume=False):
        """resume: each client offers the session ticket of its previous
        connection (a mail client reconnecting), so logins are resumed
        handshakes (PSK + ECDHE) instead of full ones."""
        return self.measure(target, lambda: self.loadgen_run(
            scen, port, tls,
            (self.a.tls_clients if tls else self.a.clients) if "login" in scen else self.a.bulk_clients,
            self.a.secs, ["-t", str(self.a.lg_threads)] + (["--resume"] if resume else [])),
            syscalls="login" in scen)

    def run_idle(self, target, port, tls):
        """K clients logged in and idling: (RSS after - RSS before) / K,
        on a freshly started proxy warmed by one login."""
        if hasattr(target, "restart"):
            target.restart()
            self.warm(target, target.ports["imap"], "imap")
            if tls and self.a.idle_warm_tls:
                # One TLS login too, so the delta holds what the K
                # connections keep, not the TLS library's code and
                # one-off tables first touched by the first handshake
                # (nginx: ~3 KiB per connection of 1000, over its two
                # worker processes; gatehouse: ~0.2 KiB).
                self.loadgen_run("imap-login", port, True, 1, 0.3)
            time.sleep(0.3)
        k = self.a.idle
        before = rss_kib(target.pid)
        argv = [self.loadgen, "imap-idle", "--port", str(port), "-c", str(k), "-d", "60",
                "--hold", "60", "--timeout", "20", "--user", USER, "--pass", PASSWORD]
        if tls:
            argv += ["--tls", "--sni", "mail.example.com"]
        p = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready = None
        end = time.time() + 60
        while time.time() < end:
            line = p.stdout.readline()
            if not line:
                break
            if line.startswith("{\"ready\""):
                ready = json.loads(line)["ready"]
                break
        time.sleep(1.0)  # let the last IDLE replies settle
        after = rss_kib(target.pid)
        p.send_signal(signal.SIGTERM)
        rest, _ = p.communicate(timeout=90)
        res = {}
        for l in rest.splitlines():
            if l.startswith("{\"scenario\""):
                res = json.loads(l)
        res.update({"ready": ready or 0, "rss_before_kib": before, "rss_after_kib": after,
                    "kib_per_conn": round((after - before) / k, 2) if ready == k else None})
        return res

    def run_h2load(self, target, url):
        """h2load -t1 -c<h2_clients> -m<h2_streams> for --secs: HTTP/2, many
        streams per connection; requests/s (succeeded / h2load's duration),
        errors (failed + errored + non-2xx), mean latency; measure() adds
        the proxy's CPU, context switches and system calls."""
        mult = {"us": 0.001, "ms": 1, "s": 1000}

        def go():
            out = subprocess.run(["h2load", "-t1", "-c%d" % self.a.h2_clients,
                                  "-m%d" % self.a.h2_streams,
                                  "-D%d" % max(1, int(self.a.secs)), url],
                                 capture_output=True, text=True, timeout=self.a.secs + 30)
            fin = re.search(r"finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", out.stdout)
            req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                            r"(\d+) failed, (\d+) errored", out.stdout)
            st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out.stdout)
            lat = re.search(r"time for request:\s+[\d.]+\w+\s+[\d.]+\w+\s+([\d.]+)(us|ms|s)",
                            out.stdout)
            ok = int(req.group(4)) if req else 0
            secs = float(fin.group(1)) * mult[fin.group(2)] / 1000 if fin else 0
            nerr = (int(req.group(5)) + int(req.group(6)) if req else 1) + \
                (int(st.group(3)) + int(st.group(4)) if st else 0)
            if not fin or "h2" not in out.stdout:
                nerr += 1
            if nerr:
                # Say what h2load counted, so an error can be told apart
                # (status codes, failed/errored streams, a refused session).
                sys.stderr.write("h2load reported %d error(s):\n%s%s" % (nerr, out.stdout,
                                                                         out.stderr))
            return {"ops_per_s": ok / secs if secs else 0.0, "errors": nerr, "requests": ok,
                    "secs": secs, "mean_ms": float(lat.group(1)) * mult[lat.group(2)] if lat
                    else None, "p50_ms": None, "p99_ms": None}
        return self.measure(target, go, syscalls=True)

    def run_wrk(self, target, url):
        """wrk -t1 -c<http_clients> --latency for --secs: requests/s
        (requests / wrk's own duration), errors (non-2xx/3xx and socket
        errors), mean, p50 and p99 latency; measure() adds the proxy's CPU,
        context switches and system calls."""
        mult = {"us": 0.001, "ms": 1, "s": 1000}

        def go():
            out = subprocess.run(["wrk", "-t1", "-c%d" % self.a.http_clients,
                                  "-d%ds" % max(1, int(self.a.secs)), "--latency", url],
                                 capture_output=True, text=True, timeout=self.a.secs + 30)
            m = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
            n = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s)", out.stdout)
            errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
            sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                             out.stdout)
            nerr = (int(errs.group(1)) if errs else 0) + (sum(map(int, sock.groups())) if sock else 0)
            lat = re.search(r"Latency\s+([\d.]+)(us|ms|s)", out.stdout)
            pct = {int(k): float(v) * mult[u] for k, v, u in
                   re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out.stdout, re.M)}
            res = {"ops_per_s": float(m.group(1)) if m else 0.0, "errors": nerr,
                   "mean_ms": float(lat.group(1)) * mult[lat.group(2)] if lat else None,
                   "p50_ms": pct.get(50), "p99_ms": pct.get(99)}
            if n:
                res["requests"] = int(n.group(1))
                res["secs"] = float(n.group(2)) * mult[n.group(3)] / 1000
            return res
        return self.measure(target, go, syscalls=True)


SCENARIOS = [
    # key, label, kind, tls
    ("imap-login-users", "IMAP login storm, N users", "users", False),
    ("pop3-login-users", "POP3 login storm, N users", "users", False),
    ("imap-login-tls-users", "IMAP login storm, TLS ECDSA, N users", "users", True),
    ("imap-login-tls-rsa-users", "IMAP login storm, TLS RSA-2048, N users", "users", True),
    ("imap-login", "IMAP login storm", "mail", False),
    ("imap-login-tls", "IMAP login storm, TLS", "mail", True),
    ("imap-login-tls-resume", "IMAP login storm, TLS resumed", "mail", True),
    ("pop3-login", "POP3 login storm", "mail", False),
    ("pop3-login-tls", "POP3 login storm, TLS", "mail", True),
    ("imap-fetch", "IMAP bulk FETCH", "mail", False),
    ("imap-fetch-tls", "IMAP bulk FETCH, TLS", "mail", True),
    ("imap-idle", "IMAP idle connections", "idle", False),
    ("imap-idle-tls", "IMAP idle connections, TLS", "idle", True),
    ("https", "HTTPS requests (wrk)", "http", True),
    ("web-api", "HTTPS proxied API (JSON, upstream location)", "http", True),
    ("web-static-4k", "HTTPS static file, 4 KiB (root location)", "http", True),
    ("web-static-64k", "HTTPS static file, 64 KiB (root location)", "http", True),
    ("web-h2", "HTTP/2 proxied API, many streams per connection (h2load)", "http", True),
]

# --rows groups: scenario key -> group.
def row_group(key_):
    if key_.startswith("web-"):
        return "web"
    if key_ == "https":
        return "https"
    if "idle" in key_:
        return "idle"
    return "mail"


ROW_GROUPS = ("mail", "idle", "https", "web")


def main():
    env = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=int(env("BENCH_ROUNDS", "3")))
    ap.add_argument("--secs", type=float, default=float(env("BENCH_SECS", "10")))
    ap.add_argument("--clients", type=int, default=int(env("BENCH_CLIENTS", "50")))
    ap.add_argument("--tls-clients", type=int, default=int(env("BENCH_TLS_CLIENTS", "200")),
                    help="clients in the TLS login storms: enough to saturate a proxy, "
                         "whose TLS logins wait on handshakes")
    ap.add_argument("--bulk-clients", type=int, default=8)
    ap.add_argument("--http-clients", type=int, default=32)
    ap.add_argument("--h2-clients", type=int, default=8,
                    help="HTTP/2 connections in the web-h2 row (h2load -c)")
    ap.add_argument("--h2-streams", type=int, default=32,
                    help="concurrent streams per connection in the web-h2 row (h2load -m)")
    ap.add_argument("--idle", type=int, default=int(env("BENCH_IDLE", "1000")))
    ap.add_argument("--idle-warm-tls", action=argparse.BooleanOptionalAction, default=True,
                    help="imap-idle-tls: warm each proxy with one TLS login too (the default),"
                    " so its first handshake's one-off memory is not counted per connection;"
                    " --no-idle-warm-tls for the earlier runs' way")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                    help="both proxies' workers (default: the machine's cores)")
    ap.add_argument("--users", type=int, default=int(env("BENCH_USERS", "10000")),
                    help="distinct users in the 'N users' storms")
    ap.add_argument("--lg-threads", type=int, default=1)
    ap.add_argument("--msg-size", type=int, default=1 << 20)
    ap.add_argument("--pop3-lockstep", action="store_true",
                    help="gatehouse waits for each POP3 backend answer (its default) instead of "
                         "pipelining XOIP, USER and PASS to the backend, which announces PIPELINING")
    ap.add_argument("--only", default=env("BENCH_ONLY", ""),
                    help="comma-separated scenario keys (default: all)")
    ap.add_argument("--rows", default=env("BENCH_ROWS", ""),
                    help="comma-separated row groups: %s (default: all)" % ", ".join(ROW_GROUPS))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--json", default="", help="write every raw result here (JSON lines)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--report", default="", help="only print the table of an earlier --json file")
    a = ap.parse_args()
    a.build = os.path.abspath(a.build)
    if not (1 <= a.rounds <= 20 and 1 <= a.secs <= 60 and 1 <= a.clients <= 1000
            and 1 <= a.tls_clients <= 1000 and 1 <= a.bulk_clients <= 1000
            and 1 <= a.http_clients <= 1000 and 1 <= a.idle <= 10000
            and 1 <= a.users <= 1000000):
        ap.error("bounds: rounds 1..20, secs 1..60, clients 1..1000, idle 1..10000")
    if a.report:
        return report(a.report, a)
    only = set(filter(None, a.only.split(",")))
    rows = set(filter(None, a.rows.split(",")))
    if rows - set(ROW_GROUPS):
        ap.error("--rows: unknown group(s) %s; groups: %s"
                 % (", ".join(sorted(rows - set(ROW_GROUPS))), ", ".join(ROW_GROUPS)))
    scen = [s for s in SCENARIOS if (not only or s[0] in only)
            and (not rows or row_group(s[0]) in rows)]
    if not scen:
        ap.error("no scenario left after --only / --rows")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    d = tempfile.mkdtemp(prefix="gh-bench-", dir="/tmp")
    os.chmod(d, 0o755)
    try:
        return run(a, d, scen)
    finally:
        stop_all()
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)
        else:
            print("kept", d)


def run(a, d, scen):
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=mail.example.com"],
                   check=True, capture_output=True)
    os.chmod(key, 0o644)
    rsa = (os.path.join(d, "rsa-cert.pem"), os.path.join(d, "rsa-key.pem"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", rsa[1],
                    "-out", rsa[0], "-days", "2", "-subj", "/CN=" + RSA_SNI],
                   check=True, capture_output=True)
    os.chmod(rsa[1], 0o644)
    fm = Fastmail(a.build, d, a.msg_size)
    mc = Memcached(d)
    make_web_files(d)
    gports = {k: free_port() for k in ("imap", "imaps", "pop3", "pop3s", "https", "web")}
    nports = {k: free_port() for k in ("imap", "imaps", "imaps_rsa", "pop3", "pop3s", "https",
                                       "web")}
    gh = Gatehouse(d, os.path.join(a.build, "gatehouse"), fm, mc, cert, key, rsa, a.workers,
                   gports, not a.pop3_lockstep)
    ng = Nginx(d, fm, cert, key, rsa, a.workers, nports)
    direct = Direct(fm)
    gh.start()
    ng.start()
    r = Runner(a, d)
    r.backend_pid = fm.proc.pid
    r.mc = mc
    for t in (gh, ng):
        r.warm(t, t.ports["imap"], "imap")
        r.warm(t, t.ports["pop3"], "pop3")
    print("gatehouse %s, nginx %s, %d workers each, %d rounds of %gs, login clients %d plain / "
          "%d TLS, %d bulk clients, %d idle, gatehouse POP3 backend login %s"
          % (gh.bin, subprocess.run(["nginx", "-v"], capture_output=True, text=True)
             .stderr.strip().split("/")[-1], a.workers, a.rounds, a.secs, a.clients,
             a.tls_clients, a.bulk_clients, a.idle,
             "lock-step" if a.pop3_lockstep else "pipelined"), flush=True)
    if not gh.https_ok:
        print("https: " + gh.https_why, flush=True)
    # What each proxy answers on the web rows, checked once before any run.
    skip = {}  # (scenario, target name) -> why it is not measured
    for key_, _, _, _ in scen:
        if key_ not in WEB_PATHS or key_ == "https":
            continue
        for t in (gh, ng):
            why = (gh.https_why if t is gh and not gh.https_ok
                   else "h2load is not installed (nghttp2-client)"
                   if key_ == "web-h2" and shutil.which("h2load") is None
                   else web_check(d, key_, t.ports[WEB_PATHS[key_][0]]))
            if why:
                skip[(key_, t.name)] = why
                r.record({"scenario": key_, "target": t.name, "skipped": why})
                print("%s: %s skipped: %s" % (key_, t.name, why), flush=True)

    results = {}  # (scen, target) -> [res]
    for rnd in range(a.rounds):
        for key_, label, kind, tls in scen:
            targets = [gh, ng] if rnd % 2 == 0 else [ng, gh]
            if not tls and kind != "idle":
                targets.append(direct)
            for t in targets:
                if kind == "users":
                    for k2, res in r.run_users(key_, t, tls):
                        res.update({"scenario": k2, "target": t.name, "round": rnd + 1,
                                    "users": a.users})
                        r.record(res)
                        results.setdefault((k2, t.name), []).append(res)
                        print("  round %d %-24s %-9s %s" % (rnd + 1, k2, t.name,
                                                           summary("mail", k2, res)), flush=True)
                    continue
                if kind == "mail":
                    base = key_.replace("-tls", "").replace("-resume", "")
                    proto = base.split("-")[0]
                    port = t.ports[proto + ("s" if tls else "")]
                    res = r.run_mail(base, t, port, tls, resume=key_.endswith("-resume"))
                elif kind == "idle":
                    port = t.ports["imaps" if tls else "imap"]
                    res = r.run_idle(t, port, tls)
                else:
                    if (t is gh and not gh.https_ok) or (key_, t.name) in skip:
                        continue
                    port_key, path = WEB_PATHS[key_]
                    url = ("https://127.0.0.1:%d%s" % (t.ports[port_key], path)) if t is not direct \
                        else "http://127.0.0.1:%d%s" % (t.ports["http"], path)
                    res = r.run_h2load(t, url) if key_ == "web-h2" else r.run_wrk(t, url)
                res.update({"scenario": key_, "target": t.name, "round": rnd + 1})
                r.record(res)
                results.setdefault((key_, t.name), []).append(res)
                print("  round %d %-16s %-9s %s" % (rnd + 1, key_, t.name, summary(kind, key_, res)),
                      flush=True)
    print()
    print(table(scen, results, a, gh.https_ok, skip))
    keys = {k[0] for k in results} | {k[0] for k in skip}
    if keys & {k for k, _ in DETAIL_ROWS}:
        print()
        print(detail(scen, results, a))
    if keys & {k for k, _ in WEB_DETAIL_ROWS}:
        print()
        print(web_detail(scen, results, skip))
    return 0


def summary(kind, key_, res):
    if kind == "idle":
        return "%s KiB/conn (%s ready, RSS %s -> %s KiB), errors %s" % (
            res.get("kib_per_conn"), res.get("ready"), res.get("rss_before_kib"),
            res.get("rss_after_kib"), res.get("errors"))
    cpu = res.get("proxy_cpu_s")
    if "fetch" in key_:
        return "%.1f MB/s, p50 %.2f ms, errors %s, cpu %.2fs" % (
            res["mb_per_s"], res["p50_ms"], res["errors"], cpu)
    if kind == "http":
        return "%.0f req/s, errors %s, cpu %.2fs" % (res["ops_per_s"], res["errors"], cpu)
    return "%.0f/s, p50 %.2f ms, p99 %.2f ms, errors %s, cpu %.2fs" % (
        res["ops_per_s"], res["p50_ms"], res["p99_ms"], res["errors"], cpu)


def fmt(x, nd=0):
    if x is None:
        return "-"
    return ("{:,.%df}" % nd).format(x)


def cpu_per_unit(kind, key_, res):
    """The proxy's CPU per unit of work in one run: microseconds per login
    or request, seconds per GB relayed. Less sensitive than the rates to
    other load on a shared machine."""
    cpu = res.get("proxy_cpu_s")
    if cpu is None or kind == "idle":
        return None
    if "fetch" in key_:
        gb = (res.get("bytes") or 0) / 1e9
        return cpu / gb if gb else None
    n = (res.get("ops_per_s") or 0) * (res.get("secs") or res.get("wall_s") or 0)
    return cpu * 1e6 / n if n else None


def table(scen, results, a, https_ok, skip=None):
    rows = ["| scenario | metric | gatehouse | nginx | direct | gatehouse/nginx | "
            "proxy CPU per unit, gatehouse / nginx |",
            "|---|---|---|---|---|---|---|"]
    for key_, label, kind, tls in scen:
        if kind == "users":
            continue

        def med(target, field):
            return median([r.get(field) for r in results.get((key_, target), [])])

        def med_cpu(target):
            return median([cpu_per_unit(kind, key_, r) for r in results.get((key_, target), [])])
        if kind == "idle":
            metric, field, nd, unit = "KiB per idle conn (%d)" % a.idle, "kib_per_conn", 1, ""
        elif "fetch" in key_:
            metric, field, nd, unit = ("MB/s (%d MiB msg)" % (a.msg_size >> 20), "mb_per_s", 0,
                                       "s/GB")
        elif kind == "http":
            metric, field, nd, unit = "requests/s", "ops_per_s", 0, "µs/request"
        else:
            metric, field, nd, unit = "logins/s", "ops_per_s", 0, "µs/login"
        g, n, dr = med("gatehouse", field), med("nginx", field), med("direct", field)
        ratio = "%.2f×" % (g / n) if g is not None and n else "-"
        if kind == "http" and not https_ok:
            ratio = "skipped: no HTTP front end"
        why = [w for (k, t), w in (skip or {}).items() if k == key_]
        if why:
            ratio = "skipped (%s): %s" % (", ".join(t for (k, t) in skip if k == key_), why[0])
        cg, cn = med_cpu("gatehouse"), med_cpu("nginx")
        cpu = "-" if kind == "idle" else "%s / %s %s" % (fmt(cg, 2 if unit == "s/GB" else 0),
                                                         fmt(cn, 2 if unit == "s/GB" else 0), unit)
        errs = sum(r.get("errors") or 0 for k, v in results.items() if k[0] == key_ for r in v)
        rows.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            label + (" (errors: %d)" % errs if errs else ""), metric, fmt(g, nd), fmt(n, nd),
            fmt(dr, nd), ratio, cpu))
        if kind == "mail" and "login" in key_:
            gp, np_ = med("gatehouse", "p99_ms"), med("nginx", "p99_ms")
            g5, n5 = med("gatehouse", "p50_ms"), med("nginx", "p50_ms")
            rows.append("| %s | p50 / p99 ms | %s / %s | %s / %s | %s / %s | | |" % (
                label, fmt(g5, 2), fmt(gp, 2), fmt(n5, 2), fmt(np_, 2),
                fmt(med("direct", "p50_ms"), 2), fmt(med("direct", "p99_ms"), 2)))
    return "\n".join(rows)


def per_login(res, field):
    """field per login in one run (µs for CPU seconds); system calls over
    their window at the run's rate."""
    ops = (res.get("ops_per_s") or 0) * (res.get("secs") or res.get("wall_s") or 0)
    if field == "proxy_syscalls":
        w = res.get("syscall_window_s")
        n = res.get(field)
        return n / (res["ops_per_s"] * w) if n is not None and w and res.get("ops_per_s") else None
    v = res.get(field)
    if v is None or not ops:
        return None
    return v * 1e6 / ops if field.endswith("_s") else v / ops


def spread(xs, nd=0):
    """median [min-max] over the rounds."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    m = statistics.median(xs)
    if len(xs) == 1:
        return fmt(m, nd)
    return "%s [%s–%s]" % (fmt(m, nd), fmt(min(xs), nd), fmt(max(xs), nd))


DETAIL_ROWS = [
    # scenario key, label
    ("imap-login", "IMAP login, 1 user"),
    ("imap-login-users-cold", "IMAP login, N users, cold"),
    ("imap-login-users", "IMAP login, N users, warm"),
    ("pop3-login", "POP3 login, 1 user"),
    ("pop3-login-users-cold", "POP3 login, N users, cold"),
    ("pop3-login-users", "POP3 login, N users, warm"),
    ("imap-login-tls", "IMAP TLS login (ECDSA), 1 user"),
    ("imap-login-tls-users", "IMAP TLS login (ECDSA), N users"),
    ("imap-login-tls-rsa-users", "IMAP TLS login (RSA-2048), N users"),
    ("imap-login-tls-resume", "IMAP TLS resumed, 1 user"),
    ("pop3-login-tls", "POP3 TLS login (ECDSA), 1 user"),
]


def detail(scen, results, a):
    """Per proxy and login storm: rate, CPU per login user/system, system
    calls and context switches per login, latency; median [min-max] of the
    rounds."""
    rows = ["Login cost per proxy (N = %d users; median [min–max] over rounds; CPU µs per "
            "login; system calls per login from perf stat raw_syscalls:sys_enter over a "
            "window of warm runs)" % a.users, "",
            "| storm | proxy | logins/s | CPU user | CPU sys | CPU total | gatehouse/nginx "
            "CPU | syscalls | ctx sw vol / invol | p50 / p99 ms |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for key_, label in DETAIL_ROWS:
        if not any(k[0] == key_ for k in results):
            continue
        tot = {}
        for t in ("gatehouse", "nginx"):
            rs = results.get((key_, t), [])
            if rs:
                tot[t] = median([per_login(r, "proxy_cpu_s") for r in rs])
        for t in ("gatehouse", "nginx"):
            rs = results.get((key_, t), [])
            if not rs:
                continue
            ratio = ""
            if t == "gatehouse" and tot.get("nginx") and tot.get("gatehouse"):
                ratio = "%.2f×" % (tot["gatehouse"] / tot["nginx"])
            rows.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s |" % (
                label, t, spread([r.get("ops_per_s") for r in rs]),
                spread([per_login(r, "proxy_user_s") for r in rs]),
                spread([per_login(r, "proxy_sys_s") for r in rs]),
                spread([per_login(r, "proxy_cpu_s") for r in rs]), ratio,
                spread([per_login(r, "proxy_syscalls") for r in rs], 1),
                fmt(median([per_login(r, "proxy_vcsw") for r in rs]), 2),
                fmt(median([per_login(r, "proxy_ivcsw") for r in rs]), 2),
                fmt(median([r.get("p50_ms") for r in rs]), 2),
                fmt(median([r.get("p99_ms") for r in rs]), 2)))
    return "\n".join(rows)


WEB_DETAIL_ROWS = [
    ("https", "HTTPS, / (plain hash route)"),
    ("web-api", "HTTPS proxied API"),
    ("web-static-4k", "HTTPS static 4 KiB"),
    ("web-static-64k", "HTTPS static 64 KiB"),
    ("web-h2", "HTTP/2 proxied API (h2load)"),
]


def web_detail(scen, results, skip=None):
    """Per proxy and web row: requests/s, CPU per request user/system,
    system calls per request, p50/p99; median [min-max] of the rounds."""
    rows = ["Web cost per proxy (median [min–max] over rounds; CPU µs per request; system "
            "calls per request from perf stat raw_syscalls:sys_enter over a window of each "
            "run; wrk latency percentiles)", "",
            "| row | proxy | requests/s | CPU user | CPU sys | CPU total | gatehouse/nginx CPU "
            "| syscalls | p50 / p99 ms | errors |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for key_, label in WEB_DETAIL_ROWS:
        if not any(k[0] == key_ for k in results) and not any(k[0] == key_ for k in (skip or {})):
            continue
        tot = {t: median([per_login(r, "proxy_cpu_s") for r in results.get((key_, t), [])])
               for t in ("gatehouse", "nginx")}
        for t in ("gatehouse", "nginx"):
            rs = results.get((key_, t), [])
            if not rs:
                if (key_, t) in (skip or {}):
                    rows.append("| %s | %s | skipped: %s | | | | | | | |" % (label, t, skip[(key_, t)]))
                continue
            ratio = ""
            if t == "gatehouse" and tot.get("nginx") and tot.get("gatehouse"):
                ratio = "%.2f×" % (tot["gatehouse"] / tot["nginx"])
            rows.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %d |" % (
                label, t, spread([r.get("ops_per_s") for r in rs]),
                spread([per_login(r, "proxy_user_s") for r in rs], 1),
                spread([per_login(r, "proxy_sys_s") for r in rs], 1),
                spread([per_login(r, "proxy_cpu_s") for r in rs], 1), ratio,
                spread([per_login(r, "proxy_syscalls") for r in rs], 2),
                fmt(median([r.get("p50_ms") for r in rs]), 2),
                fmt(median([r.get("p99_ms") for r in rs]), 2),
                sum(r.get("errors") or 0 for r in rs)))
    return "\n".join(rows)


def report(path, a):
    """The table again from a --json file of an earlier run."""
    results, https_ok, skip = {}, False, {}
    for line in open(path):
        r = json.loads(line)
        if "skipped" in r:
            skip[(r["scenario"], r["target"])] = r["skipped"]
            continue
        results.setdefault((r["scenario"], r["target"]), []).append(r)
        https_ok = https_ok or (r["scenario"] in WEB_PATHS and r["target"] == "gatehouse")
    keys = {k[0] for k in results} | {k[0] for k in skip}
    print(table([s for s in SCENARIOS if s[0] in keys], results, a, https_ok, skip))
    if keys & {k for k, _ in DETAIL_ROWS}:
        print()
        print(detail(SCENARIOS, results, a))
    if keys & {k for k, _ in WEB_DETAIL_ROWS}:
        print()
        print(web_detail(SCENARIOS, results, skip))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)

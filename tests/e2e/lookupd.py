#!/usr/bin/env python3
"""A fake Zimbra route-lookup service (port 7072, "nginx-lookup").

It speaks the auth_http protocol described in
/work/shared/reference/zimbra-proxy.md section 1: the proxy sends
`GET /service/extension/nginx-lookup HTTP/1.0` (or 1.1) with the headers
Auth-Method, Auth-User, Auth-Pass, Auth-Protocol, Auth-Login-Attempt,
X-Proxy-IP and Client-IP; the answer is always HTTP 200 with

    Auth-Status: OK                 or   Auth-Status: user not found:<name>
    Auth-Server: <ip>                    Auth-Wait: <n>
    Auth-Port: <port>
    Auth-User: <canonical name>

Auth-User in the request is %XX-unescaped before the user table is consulted,
as Zimbra's servlet does.  HTTP/1.1 requests without `Connection: close` get
keep-alive (`Content-Length: 0`, the connection stays open), and HTTP/1.0
ones with `Connection: keep-alive`; other HTTP/1.0 ones are answered and
closed.  `lk.connections` counts the connections accepted, `lk.open` those
still open; `lk.drop_reused = True` closes a connection, unanswered, when a
second request arrives on it (a server that dropped an idle connection);
`lk.keep_alive = False` closes every connection after its answer.

In-process use (pytest):

    lk = LookupServer(users={"alice@example.com": ("127.0.0.1", 7143, "alice@example.com")})
    # the port may depend on the request's Auth-Protocol ("imapssl" and
    # "pop3ssl" fall back to "imap" and "pop3"):
    lk.users["bob"] = ("127.0.0.1", {"imap": 7143, "pop3": 7110}, "bob@example.com")
    lk.start()
    lk.url        # http://127.0.0.1:<port>/service/extension/nginx-lookup
    lk.requests   # list of LookupRequest (case-insensitive dicts of headers,
                  # plus .method .path .version); len() = number of lookups
    lk.mode = "garbage"   # normal | garbage | hang | half | error500
    lk.auth_wait = 1      # Auth-Wait sent with failures
    lk.delay = 0.5        # seconds to sleep before answering (normal mode)
    lk.cache_alias = True # add "Auth-Cache-Alias: TRUE" to OK answers
    # web routes: the port dict may hold "http" (httpssl falls back to it);
    # `Auth-Method: zimbraId` requests (ZM_AUTH_TOKEN) look Auth-User up in
    # .ids (zimbraId -> route) instead of .users:
    lk.ids["0f7c...-uuid"] = ("127.0.0.1", {"http": 8080}, "bob@example.com")
    # the admin console (`Auth-Zimbra-Admin: True`, nginx's zmauth_admin):
    # such requests are answered from .admin_ids only (the servlet accepts
    # admin accounts only and answers zimbraAdminPort); other requests never
    # see .admin_ids:
    lk.admin_ids["0f7c...-uuid"] = ("127.0.0.1", 7071, "admin@example.com")
    # a failure text answered for a login or zimbraId instead of its route
    # (e.g. the servlet's access-denied answer, which HTTP turns into 403):
    lk.statuses["bob"] = "Client-IP 127.0.0.1 is not allowed on this domain"
    # Zimbra's qualification of an unqualified name (reference section 1.3):
    # mail logins by X-Proxy-IP (zimbraVirtualIPAddress), web ones by
    # X-Proxy-Host (zimbraVirtualHostname), else default_domain; zimbraIds
    # are never qualified.  The users table is then consulted with the
    # qualified name:
    lk.vips["127.0.0.2"] = "b.test"
    lk.vhosts["mail.b.test"] = "b.test"
    lk.default_domain = "a.test"
    # zimbraDomainAllowedIPs: a Client-IP outside a domain's list (exact
    # addresses) gets "Client-IP <ip> is not allowed on this domain":
    lk.allowed_ips["deny.test"] = ["127.0.0.1"]
    lk.stop()             # closes the listening socket: connection refused

Modes: "garbage" answers non-HTTP bytes and closes; "hang" accepts and reads
the request but never answers (until the client closes or stop()); "half"
sends the first half of a valid response head and closes; "error500" answers
`HTTP/1.0 500 Internal Server Error`.

Standalone (manual testing):

    lookupd.py --port 7072 --route alice@example.com=127.0.0.1:7143[=canonical] ...
"""

import argparse
import signal
import socket
import socketserver
import sys
import threading
import time
import urllib.parse

PATH = "/service/extension/nginx-lookup"
MODES = ("normal", "garbage", "hang", "half", "error500")


class LookupRequest(dict):
    """Headers as received (original names), looked up case-insensitively."""

    def __init__(self, method="", path="", version="", raw=b""):
        super().__init__()
        self.method, self.path, self.version, self.raw = method, path, version, raw
        self.time = time.monotonic()
        self._lower = {}

    def __setitem__(self, k, v):
        super().__setitem__(k, v)
        self._lower[k.lower()] = k

    def _key(self, k):
        return self._lower.get(k.lower(), k)

    def __getitem__(self, k):
        return super().__getitem__(self._key(k))

    def __contains__(self, k):
        return k.lower() in self._lower

    def get(self, k, default=None):
        return super().get(self._key(k), default)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        srv = self.server.owner
        with srv._lock:
            srv.connections += 1
            srv.open += 1
            srv._socks.add(self.request)
        try:
            self._serve(srv)
        finally:
            with srv._lock:
                srv.open -= 1
                srv._socks.discard(self.request)

    def _serve(self, srv):
        sock = self.request
        sock.settimeout(0.2)
        buf = b""
        served = 0
        while not srv._stopping.is_set():
            # Read one request head.
            while b"\r\n\r\n" not in buf and b"\n\n" not in buf:
                try:
                    chunk = sock.recv(4096)
                except socket.timeout:
                    if srv._stopping.is_set():
                        return
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                if len(buf) > 65536:
                    return
            sep = b"\r\n\r\n" if b"\r\n\r\n" in buf else b"\n\n"
            head, buf = buf.split(sep, 1)
            req = self._parse(head)
            served += 1
            if served > 1 and srv.drop_reused:
                return
            with srv._lock:
                srv.requests.append(req)
                mode = srv.mode
            keep = self._respond(srv, sock, req, mode)
            if not keep:
                return

    @staticmethod
    def _parse(head):
        lines = head.replace(b"\r\n", b"\n").split(b"\n")
        parts = lines[0].decode("latin-1").split()
        req = LookupRequest(*(parts + ["", "", ""])[:3], raw=head)
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            req[name.strip()] = value.strip()
        return req

    @staticmethod
    def _port_for(ports, protocol):
        """The port of a per-protocol route for this Auth-Protocol."""
        proto = protocol.lower()
        if proto not in ports and proto.endswith("ssl"):
            proto = proto[:-3]
        return ports.get(proto, ports.get("imap"))

    def _send(self, sock, data):
        try:
            sock.sendall(data)
        except OSError:
            pass

    def _respond(self, srv, sock, req, mode):
        if mode == "garbage":
            self._send(sock, b"\x00\x01\x02 this is not HTTP \xff\xfe\r\n\r\n")
            return False
        if mode == "hang":
            while not srv._stopping.is_set():
                try:
                    if not sock.recv(4096):
                        return False
                except socket.timeout:
                    continue
                except OSError:
                    return False
            return False
        if mode == "error500":
            self._send(sock, b"HTTP/1.0 500 Internal Server Error\r\n"
                             b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            return False
        if srv.delay:
            time.sleep(srv.delay)
        login = urllib.parse.unquote(req.get("Auth-User", ""))
        by_id = req.get("Auth-Method", "").lower() == "zimbraid"
        admin = req.get("Auth-Zimbra-Admin", "") == "True"
        with srv._lock:
            if not by_id:
                login = srv.qualify(login, req)
            status = srv.statuses.get(login) or srv.refusal(login, by_id, req)
            table = srv.admin_ids if admin else srv.ids if by_id else srv.users
            route = None if status or (admin and not by_id) else table.get(login)
        conn = req.get("Connection", "").lower()
        keep = srv.keep_alive and (conn != "close" if req.version.upper() == "HTTP/1.1"
                                   else conn == "keep-alive")
        lines = ["HTTP/1.1 200 OK" if req.version.upper() == "HTTP/1.1"
                 else "HTTP/1.0 200 OK"]
        if route is not None:
            ip, port, canonical = route
            if isinstance(port, dict):
                port = self._port_for(port, req.get("Auth-Protocol", ""))
            lines += ["Auth-Status: OK", "Auth-Server: %s" % ip,
                      "Auth-Port: %d" % port,
                      "Auth-User: %s" % canonical.replace("%", "%25")]
            if srv.cache_alias:
                lines.append("Auth-Cache-Alias: TRUE")
        else:
            lines += ["Auth-Status: %s" % (status or "user not found:%s" % login),
                      "Auth-Wait: %s" % srv.auth_wait]
        lines += ["Content-Length: 0",
                  "Connection: %s" % ("keep-alive" if keep else "close")]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        if mode == "half":
            self._send(sock, data[:len(data) // 2])
            return False
        self._send(sock, data)
        return keep


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


class LookupServer:
    def __init__(self, users=None, host="127.0.0.1", port=0, mode="normal",
                 auth_wait=10):
        self.users = dict(users or {})     # login -> (ip, port or {proto: port}, canonical)
        self.ids = {}                      # zimbraId -> route, for Auth-Method: zimbraId
        self.admin_ids = {}                # zimbraId -> route, for Auth-Zimbra-Admin: True
        self.statuses = {}                 # login or zimbraId -> Auth-Status failure text
        self.requests = []
        self.connections = 0               # accepted so far
        self.open = 0                      # still open
        self.drop_reused = False           # close, unanswered, a connection's 2nd request
        self.keep_alive = True             # False: answer every request with Connection: close
        self._socks = set()                # connections being served
        self.mode = mode
        self.auth_wait = auth_wait
        self.delay = 0.0
        self.cache_alias = False           # send Auth-Cache-Alias: TRUE with OK
        self.vips = {}                     # X-Proxy-IP -> domain of unqualified mail names
        self.vhosts = {}                   # X-Proxy-Host -> domain of unqualified web names
        self.default_domain = None         # else this domain (None: left unqualified)
        self.allowed_ips = {}              # domain -> [Client-IP allowed]
        self.host = host
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = None
        self._thread = None
        self.ssl_context = None            # set before start(): serve https

    def qualify(self, login, req):
        """Zimbra's servlet: qualify an unqualified name (no '@' but last)."""
        if "@" in login[:-1]:
            return login
        proto = req.get("Auth-Protocol", "").lower()
        if proto.startswith("http"):
            domain = self.vhosts.get(req.get("X-Proxy-Host", ""))
        else:
            domain = self.vips.get(req.get("X-Proxy-IP", ""))
        domain = domain or self.default_domain
        return "%s@%s" % (login, domain) if domain else login

    def refusal(self, login, by_id, req):
        """zimbraDomainAllowedIPs of the account's domain, or None."""
        if by_id:
            route = self.ids.get(login)
            account = route[2] if route else ""
        else:
            account = login
        allowed = self.allowed_ips.get(account.rpartition("@")[2])
        ip = req.get("Client-IP", "")
        if allowed is not None and ip not in allowed:
            return "Client-IP %s is not allowed on this domain" % ip
        return None

    @property
    def port(self):
        return self._port

    @property
    def url(self):
        scheme = "https" if self.ssl_context else "http"
        return "%s://%s:%d%s" % (scheme, self.host, self._port, PATH)

    def start(self):
        self._stopping.clear()
        self._server = _TCPServer((self.host, self._port), _Handler)
        self._server.owner = self
        self._port = self._server.server_address[1]
        if self.ssl_context is not None:
            self._server.socket = self.ssl_context.wrap_socket(self._server.socket,
                                                               server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="lookupd", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Close the listening socket and the open connections: new
        connections are refused."""
        srv, self._server = self._server, None
        if srv is None:
            return
        self._stopping.set()
        # As a stopped server: its kept-alive connections end too.
        with self._lock:
            for s in list(self._socks):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        srv.shutdown()
        srv.server_close()
        self._thread.join(5)

    @property
    def running(self):
        return self._server is not None

    def __setattr__(self, k, v):
        if k == "mode" and v not in MODES:
            raise ValueError("mode must be one of %s" % (MODES,))
        super().__setattr__(k, v)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None):
    ap = argparse.ArgumentParser(description="fake Zimbra nginx-lookup service")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7072)
    ap.add_argument("--route", action="append", default=[],
                    metavar="LOGIN=IP:PORT[=CANONICAL]")
    ap.add_argument("--mode", default="normal", choices=MODES)
    ap.add_argument("--auth-wait", type=int, default=10)
    args = ap.parse_args(argv)
    users = {}
    for r in args.route:
        parts = r.split("=")
        if len(parts) not in (2, 3):
            ap.error("bad --route %r" % r)
        ip, _, port = parts[1].rpartition(":")
        users[parts[0]] = (ip, int(port), parts[2] if len(parts) == 3 else parts[0])
    srv = LookupServer(users, args.host, args.port, args.mode, args.auth_wait).start()
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print("lookupd listening on %s (mode %s, %d routes)" % (srv.url, srv.mode, len(users)),
          flush=True)
    seen = 0
    try:
        while True:
            time.sleep(0.2)
            while seen < len(srv.requests):
                r = srv.requests[seen]
                seen += 1
                print("%s %s %s" % (r.method, r.path, dict(r)), flush=True)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

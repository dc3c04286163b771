/*
 * conf.h - the configuration snapshot.
 *
 * A snapshot is loaded once from a libconfig file, validated whole, and then
 * never changed: workers read it without locks. It is reference counted so a
 * reload (SIGHUP) can swap in a new one while sessions started under the old
 * one keep using it until they end.
 */
#ifndef GATEHOUSE_CONF_H
#define GATEHOUSE_CONF_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "tls.h"

#define CONF_MAX_LISTEN 32
#define CONF_MAX_LOOKUP_SERVERS 16
#define CONF_MAX_CAPS 32
#define CONF_MAX_MEMCACHED 16


enum conf_proto {
	CONF_PROTO_IMAP = 0,
	CONF_PROTO_POP3,
	CONF_PROTO_HTTP,
	CONF_PROTO_TCP,    /* bytes relayed to an upstream group (XMPP 5222, LDAPS 8636) */
};
#define CONF_PROTO_COUNT 4 /* not in the enum: switches over it stay exhaustive */

/* What a plain (non-TLS) HTTP listener does with requests. */
enum conf_http_mode {
	CONF_HTTP_MODE_REDIRECT = 0, /* 301 to https://<host><uri> (the default) */
	CONF_HTTP_MODE_HTTPS,        /* an error page that says to use https (403) */
	CONF_HTTP_MODE_BOTH,         /* proxy plain HTTP too */
};

/* One web backend for the client-IP hash: an IP literal or name, and a port. */
struct conf_http_backend {
	char *host;
	uint16_t port;
};

enum conf_backend_auth {
	CONF_BACKEND_AUTH_AUTO = 0, /* quoted LOGIN, else LITERAL+, else AUTHENTICATE PLAIN */
	CONF_BACKEND_AUTH_LOGIN,    /* always LOGIN (quoted or LITERAL+) */
	CONF_BACKEND_AUTH_PLAIN,    /* always AUTHENTICATE PLAIN with SASL-IR */
};

enum conf_log_level {
	CONF_LOG_ERROR = 0,
	CONF_LOG_WARN,
	CONF_LOG_INFO,
	CONF_LOG_DEBUG,
};

/* STARTTLS/STLS on a plain listener. */
enum conf_starttls {
	CONF_STARTTLS_OFF = 0,   /* not offered; logins in clear text allowed */
	CONF_STARTTLS_OPTIONAL,  /* offered; clear-text logins allowed */
	CONF_STARTTLS_REQUIRED,  /* offered; no login before TLS (LOGINDISABLED) */
};

/* --- upstream groups and locations (core/conf_location.c) --- */

/* How a request picks a server of an upstream group. */
enum conf_balance {
	CONF_BALANCE_ROUTE = 0,   /* per-user routing (lookup + route cache), else the client-IP hash */
	CONF_BALANCE_IP_HASH,     /* a hash of the client address over the servers */
	CONF_BALANCE_ROUND_ROBIN, /* each request the next server */
};
#define CONF_BALANCE_COUNT 3 /* not in the enum: switches over it stay exhaustive */

/* A named group of web servers that locations send requests to. */
struct conf_upstream {
	char *name;
	struct conf_http_backend *servers; /* port filled in from `port` when not written */
	int nservers;                      /* >= 1 */
	uint16_t port;                     /* default port of servers written without one */
	bool tls;                          /* speak TLS to the servers */
	char *sni;                         /* name sent as SNI and verified; NULL = the server's host */
	bool verify;                       /* check the certificate (upstream.ca or the system's) */
	enum conf_balance balance;
	int max_fails;                     /* failures within fail_timeout that mark a server down; 0 = never */
	double fail_timeout;               /* that window, and how long a server stays down, seconds */
	int keepalive;                     /* idle pooled connections per worker to this group */
	/* The admin console's mailstores (nginx's zmauth_admin; balance
	   "route" only): routed by the ZM_ADMIN_AUTH_TOKEN cookie alone, looked
	   up with "Auth-Zimbra-Admin: True", cached apart from users' routes. */
	bool admin;
	/* A backend's Location / Refresh "http[s]://<the request's host>:<the
	   server's port>/..." goes back as the client's scheme and Host
	   (nginx's proxy_redirect https://$host:7071/ https://$http_host/). */
	bool rewrite_redirects;
	int line;
};

/* How a location's pattern is compared with the normalized path (nginx's). */
enum conf_loc_match {
	CONF_LOC_EXACT = 0,   /* "= /path": the whole path */
	CONF_LOC_PREFIX,      /* "/path": a prefix; the longest wins unless a regex matches */
	CONF_LOC_PREFIX_STOP, /* "^~ /path": a prefix that, when longest, stops the regex search */
	CONF_LOC_REGEX,       /* "~ re": PCRE2, case-sensitive, anywhere unless anchored */
	CONF_LOC_REGEX_ICASE, /* "~* re": the same, case-insensitive */
};

/* What a location does with a request. */
enum conf_loc_action {
	CONF_LOC_UPSTREAM = 0, /* proxy to an upstream group */
	CONF_LOC_STATIC,       /* files under a root directory */
	CONF_LOC_RETURN,       /* a fixed answer: status, body, content type */
	CONF_LOC_REDIRECT,     /* status + Location */
	CONF_LOC_LOGOUT,       /* expire cookies, then redirect */
};

/* A header added to responses: "Name: value", both checked at load. */
/* An operator's page for a status gatehouse answers itself (http.error_pages). */
struct conf_error_page {
	int status;
	char *body;     /* the file's bytes, read at load */
	size_t len;
};

struct conf_header {
	char *name;
	char *value;
};

struct pcre2_real_code_8; /* pcre2_code, without pulling pcre2.h into every file */

struct conf_location {
	enum conf_loc_match match;
	char *pattern;                 /* the path or the regex, without its modifier */
	size_t pattern_len;
	struct pcre2_real_code_8 *re;  /* regexes: compiled (JIT when available) at load */
	enum conf_loc_action action;

	int upstream;                  /* CONF_LOC_UPSTREAM: index in conf.upstreams */
	char *root;                    /* CONF_LOC_STATIC: directory (absolute, no trailing '/') */
	char *index;                   /*   file served for a path ending in '/', NULL = none */
	char *fallback;                /*   file for paths that do not exist (single-page app), or NULL */
	char *cache_control;           /*   Cache-Control value, or NULL */
	int status;                    /* RETURN: status; REDIRECT/LOGOUT: 301/302/303/307/308 */
	char *body;                    /* RETURN: the body ("" allowed) */
	char *content_type;            /* RETURN: its type */
	char *target;                  /* REDIRECT/LOGOUT: the Location */
	char **cookies;                /* LOGOUT: names of the cookies to expire */
	int ncookies;

	/* Any action: a request without this cookie gets 307 to login_redirect. */
	char *require_cookie;
	char *login_redirect;

	/* Options (upstream locations unless said otherwise). */
	double read_timeout;           /* seconds for the backend's answer; 0 = http.backend_timeout */
	char *rewrite_prefix;          /* prefix/exact locations (upstream, static): replaces the
					  matched prefix; NULL = path unchanged */
	bool websocket;                /* WebSocket upgrades allowed (default true; else 403) */
	char *host;                    /* Host sent to the backend; "$host" = the client's name; NULL = as sent */
	struct conf_header *headers;   /* any action: added to responses */
	int nheaders;
	int line;
};

/* A list of locations in configuration order (the order regexes are tried). */
struct conf_location_table {
	struct conf_location *loc;
	int n;
};

struct conf_listen {
	char *address; /* as written: "127.0.0.1:143", "[::1]:143", "*:143" */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	enum conf_proto proto;
	bool tls;                   /* implicit TLS (993, 995, 443) */
	enum conf_starttls starttls; /* plain listeners only */
	bool starttls_set;          /* written in the file (else follows the certificate) */
	bool proxy_protocol;        /* a PROXY protocol header precedes everything (HAProxy) */
	enum conf_http_mode mode;   /* plain http listeners only */
	bool http2;                 /* TLS http listeners: ALPN offers "h2" first (default true) */
	/* http listeners: their own locations, or NULL for the top-level ones
	   (conf_http_locations). Owned by the snapshot. */
	struct conf_location_table *locations;
	/* tcp listeners: the upstream group (index in conf.upstreams) and the
	   PROXY protocol version sent to it first (0: none, 1, 2). */
	int upstream;
	int send_proxy;
	int line; /* line in the config file, for messages */
};

/* One entry of trusted_proxies: family, network bytes, prefix length. */
struct conf_cidr {
	int family;       /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	int prefix;
};

/* One lookup server: "http://HOST:PORT/PATH". HOST is resolved at load. */
struct conf_lookup_server {
	char *url;
	char *host; /* as written, sent as the Host header */
	char *path; /* "/service/extension/nginx-lookup" if the URL has none */
	bool tls;   /* https:// (Zimbra's 7072 is HTTPS) */
	struct sockaddr_storage addr;
	socklen_t addrlen;
};

/*
 * A static route: `match` is a full login ("alice@example.com"), a domain
 * ("@example.com") or "*". `host` may be an IP or a hostname. `user`, if set,
 * replaces the login sent to the backend.
 */
struct conf_route {
	char *match;
	char *host;
	uint16_t port;  /* 0 = the protocol's backend_port (see conf_backend_port) */
	char *user;
};

/* One memcached server of cache.memcached: "HOST[:PORT]", port 11211 by default. */
struct conf_memcached {
	char *host;
	uint16_t port;
};

/* How keys are spread over several memcached servers. */
enum conf_cache_distribution {
	CONF_CACHE_MODULA = 0,   /* one-at-a-time hash mod N, dead ones skipped (Zimbra's nginx) */
	CONF_CACHE_CONSISTENT,   /* ketama (libmemcached) */
};

/* How POP3 tells the backend the client's address before logging in. */
enum conf_pop3_client_ip {
	CONF_POP3_CLIENT_IP_XOIP = 0, /* "XOIP <ip>" (Zimbra) */
	CONF_POP3_CLIENT_IP_XCLIENT,  /* "XCLIENT ADDR=<ip> PORT=<port>" (Dovecot) */
	CONF_POP3_CLIENT_IP_NONE,
};

/* How POP3 logs in to the backend. */
enum conf_pop3_backend_auth {
	CONF_POP3_BACKEND_AUTH_USER = 0, /* USER + PASS */
	CONF_POP3_BACKEND_AUTH_PLAIN,    /* AUTH PLAIN with an initial response */
};

/* SASL mechanisms the POP3 front end offers (a bit set). */
#define CONF_SASL_PLAIN 0x1u
#define CONF_SASL_LOGIN 0x2u
#define CONF_SASL_XOAUTH2 0x4u
#define CONF_SASL_OAUTHBEARER 0x8u

struct conf {
	atomic_int refs;
	char *path;

	int workers;                /* >= 1 after load (0 in the file = one per core) */
	enum conf_log_level log_level;
	char *error_log;            /* NULL = stderr */
	char *audit_log;            /* NULL = stderr; "off" = no audit log */
	double shutdown_timeout;    /* seconds to drain sessions on SIGTERM */

	/* Bounds on everything a client controls, and on every wait. */
	struct {
		double preauth_timeout;  /* seconds without a complete command before login */
		double idle_timeout;     /* seconds without traffic once relaying */
		double connect_timeout;  /* backend TCP connect */
		double backend_timeout;  /* backend greeting and login answer */
		size_t max_line;         /* pre-auth command line incl. literals */
		size_t max_literal;      /* one pre-auth literal */
		size_t max_tag;          /* IMAP tag length */
		size_t max_login;        /* login name length */
		size_t max_password;     /* password length */
		int max_bad_commands;    /* then BYE and close */
		int max_login_failures;  /* failed logins per connection, then BYE and close */
		double max_auth_wait;    /* cap on the lookup's Auth-Wait, seconds */
		double auth_failure_delay; /* wait before answering a rejected login (Zimbra's
					      zimbraReverseProxyAuthWaitInterval), seconds */
		size_t max_connections;  /* concurrent client connections, 0 = no cap */
		size_t max_connections_per_ip; /* per client address, 0 = no cap */
		size_t relay_buffer;     /* size of one relay buffer */
		size_t relay_high_water; /* stop reading a side when the other's queue passes this */
		size_t preauth_output;   /* before login: stop reading and answering past this queue */
		bool splice;             /* relay plain-to-plain sessions with splice(2) */
		double proxy_header_timeout; /* seconds for a PROXY protocol header to arrive */
		int backend_keepalive;   /* mail backends: TCP keepalive after this many idle
					    seconds, set on connections that outlive half of it */
	} limits;

	struct {
		char *greeting;          /* text after "* OK [CAPABILITY ...] " */
		char *caps[CONF_MAX_CAPS];
		int ncaps;               /* capabilities before login, AUTH= added by gatehouse */
		bool send_id;            /* send ID with X-ORIGINATING-IP to the backend */
		enum conf_backend_auth backend_auth;
		uint16_t backend_port;   /* default port when a static route gives none */
	} imap;

	struct {
		char *greeting;          /* text after "+OK " */
		char *caps[CONF_MAX_CAPS];
		int ncaps;               /* CAPA lines; SASL and STLS added by gatehouse */
		unsigned sasl;           /* CONF_SASL_* offered in AUTH and CAPA */
		enum conf_pop3_client_ip client_ip_command;
		enum conf_pop3_backend_auth backend_auth;
		bool backend_pipelining; /* client IP command and login in one write */
		uint16_t backend_port;   /* default port when a static route gives none */
	} pop3;

	struct {
		struct conf_lookup_server servers[CONF_MAX_LOOKUP_SERVERS];
		int nservers;            /* 0 = no lookup service, static routes only */
		double timeout;          /* per attempt (connect + answer), seconds */
		double retry_interval;   /* hold-down of a failed server, seconds */
		bool send_password;      /* send the real password instead of "_password_" */
		bool verify;             /* https: check the server's certificate (upstream.ca) */
	} lookup;

	/* The status listener (core/conf_status.c): /metrics and /health on the
	   main thread. address NULL = no listener. */
	struct {
		char *address;
		struct sockaddr_storage addr;
		socklen_t addrlen;
		struct conf_cidr *purge_from; /* may POST /purge (none set: loopback only) */
		int npurge_from;
	} status;

	/* The route cache (core/conf_cache.c): L1 in process, then memcached. */
	struct {
		struct conf_memcached servers[CONF_MAX_MEMCACHED];
		int nservers;            /* 0 = no memcached (L1 still works) */
		int ttl;                 /* memcached entry lifetime, seconds */
		bool hash_keys;          /* send SHA-256 hex keys (Carbonio) */
		enum conf_cache_distribution distribution;
		double timeout;          /* connect and per-operation wait, seconds */
		int retry_interval;      /* a failed memcached server is skipped this long */
		size_t l1_entries;       /* 0 = no L1 */
		double l1_ttl;           /* seconds; 0 = no L1 */
	} cache;

	struct conf_route *routes;
	int nroutes;

	struct conf_listen listen[CONF_MAX_LISTEN];
	int nlisten;

	/* Login throttling (core/conf_throttle.c), Zimbra's: counts live in
	   memcached (shared by every proxy) or, without memcached, in process. */
	struct {
		int ip_limit;            /* connections per client address per window, 0 = off */
		int ip_limit_imap;       /* > 0: replaces ip_limit for IMAP */
		int ip_limit_pop3;       /* > 0: replaces ip_limit for POP3 */
		int ip_window;           /* seconds, fixed from the first count */
		int user_limit;          /* successful logins per user per window, 0 = off */
		int user_window;
		int failed_limit;        /* failed logins per client address per window, 0 = off */
		int failed_window;
		struct conf_cidr *whitelist; /* never IP-throttled */
		int nwhitelist;
		char *ip_message;        /* "Login rejected from this IP" */
		char *user_message;      /* "Login rejected for this user" */
	} throttle;

	/* Peers allowed to send a PROXY header on proxy_protocol listeners. */
	struct conf_cidr *trusted_proxies;
	int ntrusted_proxies;

	/* The server certificates and how TLS is spoken (tls/: tls_server_new). */
	struct tls_settings tls;
	struct tls_vhost *vhosts;
	int nvhosts;
	/* Per vhost (same index): the headers its HTTP responses get
	   (add_headers in the vhost; Zimbra's per-domain
	   zimbraReverseProxyResponseHeaders). NULL when there are no vhosts. */
	struct conf_vhost_http {
		struct conf_header *headers;
		int nheaders;
	} *vhost_http;

	/* The HTTP/HTTPS reverse proxy (core/conf_http.c). */
	struct {
		struct conf_http_backend *backends; /* targets of the client-IP hash */
		int nbackends;
		uint16_t backend_port;   /* port for static routes without one (http/httpssl) */
		char *server_name;       /* a Host the redirect may name besides the vhosts */
		uint16_t https_port;     /* port in redirect Locations (omitted when 443) */
		size_t max_header_size;  /* request head bytes -> 431 */
		int max_headers;         /* header lines per request -> 431 */
		size_t max_uri;          /* request-target bytes -> 414 */
		double header_timeout;   /* seconds for a whole request head -> 408 */
		double keepalive_timeout; /* idle client keep-alive between requests */
		double backend_timeout;  /* seconds waiting for the backend's answer -> 504 */
		int backend_keepalive;   /* idle pooled backend connections per worker */
		int open_file_cache_max; /* static files kept open per worker (http_fcache.h) */
		double open_file_cache_valid; /* seconds a kept file is trusted; 0 = no cache */
		size_t open_file_cache_mem; /* bytes of kept files held in memory per worker */
		size_t open_file_cache_mem_file; /* the largest file held in memory */
		char *access_log;        /* NULL = off, "stderr", or a file */
		/* Added to every response (proxied or answered by gatehouse),
		   replacing the backend's header of the same name; a location's
		   add_headers of the same name replaces one of these. */
		struct conf_header *add_headers;
		int nadd_headers;
		/* TLS listeners: a Host that is not server_name or a vhost
		   name gets 400 (zimbraReverseProxyStrictServerNameEnabled). */
		bool strict_server_names;
		/* HTTP/2 (TLS listeners with http2 on): streams open at once per
		   connection (SETTINGS_MAX_CONCURRENT_STREAMS) and streams over a
		   connection's life before a graceful GOAWAY (0: no limit). */
		int h2_max_streams;
		int h2_max_requests;
		/* New streams per second per connection after a burst of 1000
		   (past it: GOAWAY ENHANCE_YOUR_CALM). */
		int h2_stream_rate;
		/* WebSocket over HTTP/2 (RFC 8441 extended CONNECT): offered
		   with SETTINGS_ENABLE_CONNECT_PROTOCOL; off: browsers open
		   their WebSockets over HTTP/1.1. */
		bool h2_websocket;
		/* Pages for the 4xx/5xx answers gatehouse makes itself. */
		struct conf_error_page *error_pages;
		int nerror_pages;
		/* Compression of responses the backend did not compress. */
		struct {
			bool gzip, br;
			int gzip_level;     /* 1..9 */
			int br_level;       /* 0..3 */
			size_t min_length;  /* bytes of Content-Length at least */
			char **types;       /* media types (a star subtype covers all) */
			int ntypes;
			int max_active;     /* compressors per worker at once */
		} compression;
	} http;

	/* Upstream groups and the top-level locations (core/conf_location.c);
	   locations NULL = none (every request goes the per-user way). */
	struct conf_upstream *upstreams;
	int nupstreams;
	struct conf_location_table *locations;

	/* TLS towards the mailstores (Zimbra's default: imapssl on 7993). */
	struct {
		bool tls;
		bool verify;             /* check the backend's certificate and name */
		char *ca;                /* CA file for verify; NULL = the system's */
	} upstream;

	/* Built from the above when the snapshot is loaded (certificates read
	   then); NULL when no certificate is configured. */
	struct tls_server *tls_server;
	/* Client context for upstream.tls and https lookup servers, or NULL. */
	struct tls_client *tls_client;
};

/*
 * Load and validate FILE. On success returns a snapshot with one reference.
 * On failure returns NULL and writes "FILE:LINE: setting: what is wrong" (or
 * "FILE: what is wrong" when no line applies) into err (always NUL-terminated).
 */
struct conf *conf_load(const char *path, char *err, size_t errlen);

/* Take / drop a reference. The last conf_unref frees the snapshot. */
struct conf *conf_ref(struct conf *c);
void conf_unref(struct conf *c);

/* Parse "HOST:PORT", "[V6]:PORT" or "*:PORT" into addr. Returns 0 or -1. */
int conf_parse_addr(const char *s, struct sockaddr_storage *addr, socklen_t *len);

extern const char *const conf_proto_names[];

/*
 * Bounds on a login name and a host name, with their terminating NUL, for
 * every layer (the configuration's static routes, the route resolver and
 * its cache keys, the protocols); route.h names them ROUTE_MAX_USER/HOST.
 */
#define CONF_MAX_HOST 256
#define CONF_MAX_USER 512

/*
 * A login or host name may be used (in the configuration, as a lookup
 * argument or a cache key) only if it is 1..max bytes with no control
 * characters (< 0x20, 0x7f), no space and no NUL. (CVE-2022-27924 poisoned
 * Zimbra's memcached through names.)
 */
bool conf_name_valid(const char *name, size_t len, size_t max);

/*
 * Is sa (the peer of a connection) inside trusted_proxies? IPv4-mapped IPv6
 * addresses count as IPv4.
 */
bool conf_proxy_trusted(const struct conf *c, const struct sockaddr *sa);

/*
 * Is the address ip (text, IPv4 or IPv6; IPv4-mapped IPv6 counts as IPv4)
 * inside one of the n networks of list? false for text that is no address.
 */
bool conf_cidr_match(const struct conf_cidr *list, int n, const char *ip);

/*
 * The backend port a static route without one uses, for a lookup protocol
 * name ("imap", "pop3", "imapssl", ...): pop3.backend_port for the POP3
 * names, http.backend_port for "http"/"httpssl", imap.backend_port for
 * everything else.
 */
uint16_t conf_backend_port(const struct conf *c, const char *protocol);

/*
 * The locations of listener l (an http listener of c): its own if it has
 * some, else the top-level ones, else NULL. Valid as long as c.
 */
const struct conf_location_table *conf_http_locations(const struct conf *c,
						      const struct conf_listen *l);

/* The upstream group called name, or NULL. */
/* The vhost whose names hold host[0..len) (a Host value: port and case
   ignored; an exact name before a "*." one), or -1. */
int conf_vhost_for_host(const struct conf *c, const char *host, size_t len);

/* The operator's page for status (http.error_pages), or NULL. */
const struct conf_error_page *conf_http_error_page(const struct conf *c, int status);

const struct conf_upstream *conf_upstream_find(const struct conf *c, const char *name);

#endif

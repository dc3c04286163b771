/*
 * status.c - the status listener on the main thread's loop: a tiny HTTP/1.1
 * server for /metrics, /health and POST /purge (from loopback or
 * status.purge_from only). Request handling (status_handle) is a
 * function of the bytes received; the libuv part only buffers, bounds
 * (STATUS_MAX_REQUEST bytes, STATUS_READ_TIMEOUT seconds) and writes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

#include "conf.h"
#include "gh.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "route.h"
#include "status.h"

/* The response buffer of one connection: headers plus the metrics text. */
#define STATUS__OUT_CAP (256 * 1024)
#define STATUS__MAX_URL 4096
#define STATUS__LINGER_MS 1000

/* ---- request handling (no I/O) ---- */

struct status_req {
	llhttp_t http;
	llhttp_settings_t settings;
	char url[STATUS__MAX_URL];
	size_t url_len;
	bool url_long;
	bool head_done;
};

static int status__on_url(llhttp_t *h, const char *at, size_t n)
{
	struct status_req *r = h->data;

	if (r->url_len + n >= sizeof(r->url)) {
		r->url_long = true;
		return 0;
	}
	memcpy(r->url + r->url_len, at, n);
	r->url_len += n;
	r->url[r->url_len] = '\0';
	return 0;
}

/* The head is all we need: stop there (a body, if any, is ignored). */
static int status__on_headers_complete(llhttp_t *h)
{
	struct status_req *r = h->data;

	r->head_done = true;
	return HPE_PAUSED;
}

static size_t status__respond(char *out, size_t cap, int code, const char *reason,
			      const char *type, const char *body, size_t blen)
{
	int n = snprintf(out, cap,
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n",
			 code, reason, type, blen);
	if (n < 0 || (size_t)n + blen > cap)
		return 0;
	memmove(out + n, body, blen);
	return (size_t)n + blen;
}

static size_t status__text(char *out, size_t cap, int code, const char *reason, const char *body)
{
	return status__respond(out, cap, code, reason, "text/plain; charset=utf-8", body,
			       strlen(body));
}

static size_t status__metrics(char *out, size_t cap)
{
	struct metrics_snapshot m;
	const size_t head = 160; /* room for the response head, rendered after the body */

	if (cap <= head)
		return 0;
	metrics_snapshot(&m);
	size_t blen = metrics_render(&m, out + head, cap - head);
	if (blen >= cap - head)
		return 0;
	return status__respond(out, cap, 200, "OK", "text/plain; version=0.0.4; charset=utf-8",
			       out + head, blen);
}

/* Percent-decode in[0..n) into out (cap bytes, NUL-terminated); '+' is a
   space (and so refused later). Length, or -1 for bad escapes or NUL. */
static long status__unescape(const char *in, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int ch = (unsigned char)in[i];
		if (ch == '%') {
			if (i + 2 >= n)
				return -1;
			int h1 = gh_hexval((unsigned char)in[i + 1]), h2 = gh_hexval((unsigned char)in[i + 2]);
			if (h1 < 0 || h2 < 0)
				return -1;
			ch = h1 * 16 + h2;
			i += 2;
		} else if (ch == '+') {
			ch = ' ';
		}
		if (ch == 0 || o + 1 >= cap)
			return -1;
		out[o++] = (char)ch;
	}
	out[o] = '\0';
	return (long)o;
}

/*
 * POST /purge?user=NAME[&user=NAME...]: forget every L1 entry of each
 * name. Every name is checked before any is purged.
 */
static size_t status__purge(const char *query, char *out, size_t cap)
{
	char names[16][ROUTE_MAX_USER];
	int n = 0;
	const char *p = query;

	while (p != NULL && *p != '\0') {
		const char *amp = strchr(p, '&');
		size_t len = amp ? (size_t)(amp - p) : strlen(p);
		long nl;

		if (len < 5 || memcmp(p, "user=", 5) != 0 || n == (int)ARRAY_SIZE(names) ||
		    (nl = status__unescape(p + 5, len - 5, names[n], sizeof(names[n]))) <= 0 ||
		    !route_name_valid(names[n], (size_t)nl, ROUTE_MAX_USER - 1))
			return status__text(out, cap, 400, "Bad Request",
					    "bad request: expected user=NAME (up to 16, no spaces "
					    "or control characters)\n");
		n++;
		p = amp ? amp + 1 : NULL;
	}
	if (n == 0)
		return status__text(out, cap, 400, "Bad Request", "bad request: no user=NAME\n");

	const size_t head = 160;
	size_t blen = 0;
	if (cap <= head)
		return 0;
	for (int i = 0; i < n; i++) {
		size_t k = route_purge_l1(names[i]);
		int w = snprintf(out + head + blen, cap - head - blen, "purged %s l1=%zu\n", names[i], k);
		if (w < 0 || (size_t)w >= cap - head - blen)
			return 0;
		blen += (size_t)w;
		log_write(LOG_INFO, "status: purge %s: %zu L1 entries removed", names[i], k);
	}
	return status__respond(out, cap, 200, "OK", "text/plain; charset=utf-8", out + head, blen);
}

static size_t status__route(const struct status_req *r, bool draining, bool admin, char *out,
			    size_t cap)
{
	if (r->url_long)
		return status__text(out, cap, 404, "Not Found", "not found\n");
	size_t plen = strcspn(r->url, "?#");
	bool metrics = plen == 8 && memcmp(r->url, "/metrics", 8) == 0;
	bool health = plen == 7 && memcmp(r->url, "/health", 7) == 0;
	bool purge = plen == 6 && memcmp(r->url, "/purge", 6) == 0;

	if (purge) {
		if (llhttp_get_method((llhttp_t *)&r->http) != HTTP_POST)
			return status__respond(out, cap, 405, "Method Not Allowed",
					       "text/plain; charset=utf-8", "method not allowed\n", 19);
		if (!admin)
			return status__text(out, cap, 403, "Forbidden",
					    "forbidden: only from loopback or status.purge_from\n");
		if (r->url[plen] == '#')
			return status__text(out, cap, 400, "Bad Request", "bad request\n");
		return status__purge(r->url[plen] == '?' ? r->url + plen + 1 : "", out, cap);
	}
	if (!metrics && !health)
		return status__text(out, cap, 404, "Not Found", "not found\n");
	if (llhttp_get_method((llhttp_t *)&r->http) != HTTP_GET)
		return status__respond(out, cap, 405, "Method Not Allowed", "text/plain; charset=utf-8",
				       "method not allowed\n", 19);
	if (health)
		return draining ? status__text(out, cap, 503, "Service Unavailable", "draining\n")
				: status__text(out, cap, 200, "OK", "ok\n");
	return status__metrics(out, cap);
}

size_t status_handle(const char *req, size_t n, bool draining, char *out, size_t cap)
{
	return status_handle_from(req, n, draining, false, out, cap);
}

size_t status_handle_from(const char *req, size_t n, bool draining, bool admin, char *out,
			  size_t cap)
{
	struct status_req r;
	size_t len;

	memset(&r, 0, sizeof(r));
	llhttp_settings_init(&r.settings);
	r.settings.on_url = status__on_url;
	r.settings.on_headers_complete = status__on_headers_complete;
	llhttp_init(&r.http, HTTP_REQUEST, &r.settings);
	r.http.data = &r;

	size_t take = n < STATUS_MAX_REQUEST ? n : STATUS_MAX_REQUEST;
	llhttp_errno_t rc = llhttp_execute(&r.http, req, take);
	if (rc == HPE_PAUSED && r.head_done)
		len = status__route(&r, draining, admin, out, cap);
	else if (rc != HPE_OK)
		len = status__text(out, cap, 400, "Bad Request", "bad request\n");
	else if (n >= STATUS_MAX_REQUEST)
		len = status__text(out, cap, 431, "Request Header Fields Too Large",
				   "request too large\n");
	else
		return 0;
	if (len == 0)
		len = status__text(out, cap, 500, "Internal Server Error", "response too large\n");
	return len;
}

/* ---- the listener ---- */

struct status_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_write_t wr;
	uv_shutdown_t shut;
	int refs;       /* open handles */
	bool closing;
	bool answered;
	size_t in_len;
	char in[STATUS_MAX_REQUEST];
	char *out;
	struct list link;  /* on S.conns */
};

static struct {
	struct conf_cidr *purge_from; /* besides loopback */
	int npurge_from;
	uv_tcp_t server;
	bool started;
	bool draining;
	struct list conns; /* of status_conn.link; set up by status_start */
} S;

static void status__handle_closed(uv_handle_t *h)
{
	struct status_conn *c = h->data;

	if (--c->refs > 0)
		return;
	free(c->out);
	free(c);
}

static void status__close(struct status_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	list_remove(&c->link);
	uv_close((uv_handle_t *)&c->tcp, status__handle_closed);
	uv_close((uv_handle_t *)&c->timer, status__handle_closed);
}

static void status__alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void status__read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void status__timeout(uv_timer_t *t)
{
	status__close(t->data);
}

/* Answered and FIN sent: read (and drop) what the client still sends until
   it closes, for at most STATUS__LINGER_MS, so that unread request bytes do
   not turn our close into a reset that destroys the response in flight. */
static void status__shut_done(uv_shutdown_t *req, int status)
{
	struct status_conn *c = req->data;

	if (c->closing)
		return;
	if (status < 0 || uv_read_start((uv_stream_t *)&c->tcp, status__alloc, status__read) < 0) {
		status__close(c);
		return;
	}
	uv_timer_start(&c->timer, status__timeout, STATUS__LINGER_MS, 0);
}

static void status__written(uv_write_t *wr, int status)
{
	struct status_conn *c = wr->data;

	if (c->closing)
		return;
	c->shut.data = c;
	if (status < 0 || uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, status__shut_done) < 0)
		status__close(c);
}

static void status__alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct status_conn *c = h->data;

	*buf = uv_buf_init(c->in + c->in_len, (unsigned)(sizeof(c->in) - c->in_len));
}

/* May this connection's peer purge? Inside status.purge_from when it is
   set, else loopback only. */
static bool status__admin(struct status_conn *c)
{
	static const struct conf_cidr loopback[] = {
		{ AF_INET, { 127 }, 8 },
		{ AF_INET6, { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 }, 128 },
	};
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	char ip[INET6_ADDRSTRLEN];

	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0)
		return false;
	if (ss.ss_family == AF_INET)
		uv_ip4_name((const struct sockaddr_in *)&ss, ip, sizeof(ip));
	else if (ss.ss_family == AF_INET6)
		uv_ip6_name((const struct sockaddr_in6 *)&ss, ip, sizeof(ip));
	else
		return false;
	if (S.npurge_from > 0)
		return conf_cidr_match(S.purge_from, S.npurge_from, ip);
	return conf_cidr_match(loopback, (int)ARRAY_SIZE(loopback), ip);
}

static void status__read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct status_conn *c = st->data;

	if (nread == 0 || c->closing)
		return;
	if (nread < 0) {
		status__close(c);
		return;
	}
	if (c->answered)
		return; /* lingering: c->in_len stays 0, the bytes are dropped */
	c->in_len += (size_t)nread;
	size_t len = status_handle_from(c->in, c->in_len, S.draining, status__admin(c), c->out,
					STATUS__OUT_CAP);
	if (len == 0)
		return;
	c->answered = true;
	c->in_len = 0;
	uv_read_stop(st);
	uv_timer_stop(&c->timer);
	uv_buf_t b = uv_buf_init(c->out, (unsigned)len);
	c->wr.data = c;
	if (uv_write(&c->wr, st, &b, 1, status__written) < 0)
		status__close(c);
}

static void status__accept(uv_stream_t *server, int status)
{
	if (status < 0)
		return;
	struct status_conn *c = calloc(1, sizeof(*c));
	if (c == NULL || (c->out = malloc(STATUS__OUT_CAP)) == NULL) {
		free(c);
		return;
	}
	uv_tcp_init(server->loop, &c->tcp);
	uv_timer_init(server->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->refs = 2;
	list_insert_head(&S.conns, &c->link);
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
	    uv_read_start((uv_stream_t *)&c->tcp, status__alloc, status__read) < 0) {
		status__close(c);
		return;
	}
	uv_timer_start(&c->timer, status__timeout, (uint64_t)(STATUS_READ_TIMEOUT * 1000.0), 0);
}

int status_start(uv_loop_t *loop, const struct sockaddr *addr, const char **err_out)
{
	int rc;

	uv_tcp_init(loop, &S.server);
	list_init(&S.conns);
	S.started = true;
	if ((rc = uv_tcp_bind(&S.server, addr, 0)) < 0 ||
	    (rc = uv_listen((uv_stream_t *)&S.server, 64, status__accept)) < 0) {
		*err_out = uv_strerror(rc);
		return rc;
	}
	return 0;
}

int status_set_purge_from(const struct conf_cidr *list, int n)
{
	struct conf_cidr *copy = NULL;

	if (n > 0 && (copy = malloc((size_t)n * sizeof(*copy))) == NULL)
		return -1;
	if (n > 0)
		memcpy(copy, list, (size_t)n * sizeof(*copy));
	free(S.purge_from);
	S.purge_from = copy;
	S.npurge_from = n;
	return 0;
}

void status_set_draining(void)
{
	S.draining = true;
}

void status_stop(void)
{
	if (!S.started)
		return;
	S.started = false;
	free(S.purge_from);
	S.purge_from = NULL;
	S.npurge_from = 0;
	list_foreach(it, &S.conns)
		status__close(list_entry(it, struct status_conn, link));
	uv_close((uv_handle_t *)&S.server, NULL);
}

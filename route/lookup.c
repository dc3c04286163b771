/*
 * lookup.c - the asynchronous client for the route lookup service.
 *
 * One HTTP/1.0 request per attempt, as Zimbra's servlet expects. Unlike
 * Zimbra's nginx, a timeout fails over to the next server too, so one slow
 * lookup server does not stall logins for the full timeout on every try.
 * Health is per worker (thread-local): no locks on the login path.
 *
 * Connections are kept alive (HTTP/1.0 "Connection: keep-alive"): a server
 * that answers with Connection: keep-alive and Content-Length: 0 leaves its
 * connection in the worker's idle pool (at most LOOKUP_IDLE_MAX, each closed
 * after LOOKUP_IDLE_MS unused, or when the server sends anything or closes
 * it), and the next lookup to that server of the same configuration takes
 * it instead of connecting: no socket, connect or close per cold login. A
 * pooled connection that fails before any byte of its answer (the server
 * closed it meanwhile) is not the server's failure: the lookup goes again
 * to the same server on a new connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "list.h"
#include "log.h"
#include "lookup_client.h"
#include "stream.h"
#include "tls.h"
#include "secret.h"

#define LOOKUP_REQ_MAX 4096
#define LOOKUP_IDLE_MAX 8       /* idle kept-alive connections per worker */
#define LOOKUP_IDLE_MS 5000     /* then closed */

struct lookup_attempt;

struct lookup_call {
	uv_loop_t *loop;
	struct conf *conf;
	lookup_done_cb cb;
	void *arg;
	/* A private copy of the query. */
	char *method, *user, *password, *protocol, *client_ip, *proxy_ip;
	char *host;                    /* X-Proxy-Host, or NULL */
	bool admin;                    /* Auth-Zimbra-Admin: True */
	int attempt_no;
	unsigned tried;                /* bit per server index */
	int ntried;
	struct lookup_attempt *cur;
	int live;                      /* attempts not yet freed */
	bool finished;                 /* cb called or aborted */
	bool fresh_only;               /* a pooled connection went stale: connect anew */
	char error[160];
};

struct lookup_attempt {
	struct stream st;              /* TCP, with TLS for https:// servers */
	struct pool pool;              /* a few small buffers of its own */
	uv_timer_t timer;
	uv_connect_t connect;
	struct lookup_call *call;      /* NULL while idle in the pool */
	struct conf *conf;             /* a reference: the servers[] it is to */
	int server;
	int handles;                   /* open handles (stream, timer) */
	bool closing;
	bool idle;                     /* in the pool (link) */
	bool reused;                   /* this request went on a pooled connection */
	bool got_bytes;                /* some of its answer arrived */
	struct list link;
	size_t reqlen;
	char req[LOOKUP_REQ_MAX];
	struct lookup_parser parser;
	struct lookup_response resp;
};

/* Per-worker health of the lookup servers of the current config. */
static _Thread_local struct {
	const struct conf *conf;
	unsigned rr;
	uint64_t down_until[CONF_MAX_LOOKUP_SERVERS];
} lk;

/* Per-worker idle kept-alive connections, newest first. */
static _Thread_local struct {
	struct list idle;
	int n;
} lkp;

static struct list *lookup__idle(void)
{
	if (lkp.idle.next == NULL)
		list_init(&lkp.idle);
	return &lkp.idle;
}

static void lookup__try_next(struct lookup_call *call);

static void lookup__call_free(struct lookup_call *call)
{
	if (call->password) {
		secret_wipe(call->password, strlen(call->password));
		free(call->password);
	}
	free(call->method);
	free(call->user);
	free(call->protocol);
	free(call->client_ip);
	free(call->proxy_ip);
	free(call->host);
	conf_unref(call->conf);
	free(call);
}

static void lookup__attempt_unref(struct lookup_attempt *a)
{
	struct lookup_call *call = a->call;

	if (--a->handles > 0)
		return;
	secret_wipe(a->req, sizeof(a->req));
	pool_destroy(&a->pool);
	conf_unref(a->conf);
	free(a);
	if (call != NULL && --call->live == 0 && call->finished)
		lookup__call_free(call);
}

static void lookup__timer_closed(uv_handle_t *h)
{
	lookup__attempt_unref(h->data);
}

static void lookup__stream_closed(struct stream *st)
{
	lookup__attempt_unref(st->owner);
}

static void lookup__attempt_close(struct lookup_attempt *a)
{
	if (a->closing)
		return;
	a->closing = true;
	if (a->idle) {
		list_remove(&a->link);
		lkp.n--;
		a->idle = false;
	}
	if (a->call != NULL && a->call->cur == a)
		a->call->cur = NULL;
	stream_close(&a->st);
	uv_close((uv_handle_t *)&a->timer, lookup__timer_closed);
}

static void lookup__finish(struct lookup_call *call, const struct lookup_response *resp,
			   const char *server)
{
	call->finished = true;
	call->cb(call->arg, resp, server, call->error);
	if (call->live == 0)
		lookup__call_free(call);
}

static void lookup__server_name(const struct conf *c, int i, char *out, size_t n)
{
	snprintf(out, n, "%s", c->lookup.servers[i].url);
}

/* This attempt failed: hold its server down and try another. */
static void lookup__attempt_failed(struct lookup_attempt *a, const char *why)
{
	struct lookup_call *call = a->call;
	char name[256];

	lookup__server_name(call->conf, a->server, name, sizeof(name));
	snprintf(call->error, sizeof(call->error), "%s", why);
	log_write(LOG_WARN, "lookup server %s: %s (user \"%s\")", name, why, call->user);
	if (lk.conf == call->conf)
		lk.down_until[a->server] =
			uv_now(call->loop) + (uint64_t)(call->conf->lookup.retry_interval * 1000.0);
	lookup__attempt_close(a);
	if (!call->finished)
		lookup__try_next(call);
}

static void lookup__idle_expired(uv_timer_t *t)
{
	lookup__attempt_close(t->data);
}

/* a answered and its connection may carry another request: keep it idle,
   reading (anything the server sends, or its close, ends it), not holding
   the loop open. Its call no longer counts it. */
static void lookup__park(struct lookup_attempt *a)
{
	struct lookup_call *call = a->call;

	a->call = NULL;
	a->idle = true;
	list_insert_head(lookup__idle(), &a->link);
	lkp.n++;
	uv_unref((uv_handle_t *)&a->st.tcp);
	uv_unref((uv_handle_t *)&a->timer);
	uv_timer_start(&a->timer, lookup__idle_expired, LOOKUP_IDLE_MS, 0);
	if (--call->live == 0 && call->finished)
		lookup__call_free(call);
}

/* An idle connection to server i of call's configuration, taken out of the
   pool, or NULL. */
static struct lookup_attempt *lookup__unpark(struct lookup_call *call, int i)
{
	list_foreach(it, lookup__idle()) {
		struct lookup_attempt *a = list_entry(it, struct lookup_attempt, link);

		if (a->conf != call->conf || a->server != i || a->closing)
			continue;
		list_remove(&a->link);
		lkp.n--;
		a->idle = false;
		uv_ref((uv_handle_t *)&a->st.tcp);
		uv_ref((uv_handle_t *)&a->timer);
		return a;
	}
	return NULL;
}

/* A request on a pooled connection failed before any byte of its answer:
   the server had closed it. Go again to the same server, connecting. */
static void lookup__attempt_stale(struct lookup_attempt *a)
{
	struct lookup_call *call = a->call;

	call->tried &= ~(1u << a->server);
	call->ntried--;
	call->fresh_only = true;
	lookup__attempt_close(a);
	if (!call->finished)
		lookup__try_next(call);
}

static void lookup__answered(struct lookup_attempt *a)
{
	struct lookup_call *call = a->call;
	char server[64];
	char ip[46] = "?";
	const struct sockaddr_storage *ss = &call->conf->lookup.servers[a->server].addr;

	if (a->resp.http_status != 200) {
		char why[64];
		snprintf(why, sizeof(why), "answered HTTP status %d", a->resp.http_status);
		lookup__attempt_failed(a, why);
		return;
	}
	if (ss->ss_family == AF_INET6)
		uv_ip6_name((const struct sockaddr_in6 *)ss, ip, sizeof(ip));
	else
		uv_ip4_name((const struct sockaddr_in *)ss, ip, sizeof(ip));
	snprintf(server, sizeof(server), "%s:%u", ip,
		 ntohs(((const struct sockaddr_in *)ss)->sin_port));
	if (lk.conf == call->conf)
		lk.down_until[a->server] = 0;
	if (!a->parser.reusable || lkp.n >= LOOKUP_IDLE_MAX) {
		lookup__attempt_close(a);
		lookup__finish(call, &a->resp, server);
		return;
	}
	/* Answer first (a->resp is read inside), then into the pool. */
	call->cur = NULL;
	lookup__finish(call, &a->resp, server);
	lookup__park(a);
}

static void lookup__timeout(uv_timer_t *t)
{
	struct lookup_attempt *a = t->data;

	if (a->closing || a->idle)
		return;
	char why[64];
	snprintf(why, sizeof(why), "no answer within %.1f s", a->call->conf->lookup.timeout);
	lookup__attempt_failed(a, why);
}

static void lookup__on_read(struct stream *st, struct pbuf *b, int status)
{
	struct lookup_attempt *a = st->owner;

	if (a->closing || a->idle) {
		/* Idle: the server closed it or said something unasked. */
		pbuf_put(b);
		lookup__attempt_close(a);
		return;
	}
	if (b == NULL && a->reused && !a->got_bytes) {
		lookup__attempt_stale(a);
		return;
	}
	if (b != NULL)
		a->got_bytes = true;
	if (b == NULL) {
		if (status == UV_EOF && lookup_parser_eof(&a->parser) == 1) {
			lookup__answered(a);
			return;
		}
		lookup__attempt_failed(a, status == UV_EOF ? "closed the connection before answering"
							   : uv_strerror(status));
		return;
	}
	int rc = lookup_parser_feed(&a->parser, b->data + b->off, b->len);
	pbuf_put(b);
	if (rc < 0)
		lookup__attempt_failed(a, "sent a malformed answer");
	else if (rc == 1)
		lookup__answered(a);
}

static void lookup__tls_done(struct stream *st, int status)
{
	struct lookup_attempt *a = st->owner;
	char why[200];

	if (a->closing || status == 0)
		return;
	snprintf(why, sizeof(why), "TLS: %s", tls_error(st->tls));
	lookup__attempt_failed(a, why);
}

static void lookup__connected(uv_connect_t *req, int status)
{
	struct lookup_attempt *a = req->data;
	const struct conf_lookup_server *srv = &a->call->conf->lookup.servers[a->server];

	if (a->closing)
		return;
	if (status < 0) {
		char why[96];
		snprintf(why, sizeof(why), "connect: %s", uv_strerror(status));
		lookup__attempt_failed(a, why);
		return;
	}
	if (srv->tls) {
		/* SNI and name checks want the host without IPv6 brackets. */
		char host[300];
		size_t hl = strlen(srv->host);
		if (srv->host[0] == '[' && hl > 2)
			snprintf(host, sizeof(host), "%.*s", (int)(hl - 2), srv->host + 1);
		else
			snprintf(host, sizeof(host), "%s", srv->host);
		struct tls_conn *t = tls_conn_client(a->call->conf->tls_client, host,
						     a->call->conf->lookup.verify);
		if (t == NULL || stream_start_tls(&a->st, t, lookup__tls_done) < 0) {
			tls_conn_free(t);
			lookup__attempt_failed(a, "TLS: out of memory");
			return;
		}
		if (a->closing)
			return;
	}
	/* Over TLS the request waits inside the stream until the handshake is
	   done. The copy may hold the password: it is wiped once written. */
	int rc = stream_read_start(&a->st);
	if (rc == 0)
		rc = stream_write_copy(&a->st, a->req, a->reqlen, true);
	secret_wipe(a->req, sizeof(a->req));
	if (rc < 0)
		lookup__attempt_failed(a, uv_strerror(rc));
}

static int lookup__pick(struct lookup_call *call)
{
	const struct conf *c = call->conf;
	int n = c->lookup.nservers;
	uint64_t now = uv_now(call->loop);
	int best = -1;

	if (lk.conf != c) {
		memset(&lk, 0, sizeof(lk));
		lk.conf = c;
	}
	unsigned start = lk.rr++;
	for (int k = 0; k < n; k++) {
		int i = (int)((start + (unsigned)k) % (unsigned)n);
		if (call->tried & (1u << i))
			continue;
		if (lk.down_until[i] <= now)
			return i;
		if (best < 0 || lk.down_until[i] < lk.down_until[best])
			best = i;
	}
	/* Every server left is held down. On the first attempt probe the one
	   that failed longest ago, so a login fails fast when all are down and
	   succeeds as soon as one is back; after a failure, give up. */
	return call->ntried == 0 ? best : -1;
}

/* call's request to srv (keep-alive) into buf; its length, or -1. */
static int lookup__request(const struct lookup_call *call, const struct conf_lookup_server *srv,
			   char *buf, size_t cap)
{
	struct lookup_query q = {
		.method = call->method,
		.user = call->user,
		.password = call->password,
		.protocol = call->protocol,
		.attempt = call->attempt_no,
		.client_ip = call->client_ip,
		.proxy_ip = call->proxy_ip,
		.host = call->host,
		.admin = call->admin,
		.keep_alive = true,
	};

	return lookup_build_request(buf, cap, srv->host, srv->path, &q,
				    call->conf->lookup.send_password);
}

/* Send call's request to server a->server on a's pooled connection. */
static void lookup__send_reused(struct lookup_call *call, struct lookup_attempt *a)
{
	const struct conf_lookup_server *srv = &call->conf->lookup.servers[a->server];

	a->call = call;
	a->reused = true;
	a->got_bytes = false;
	call->live++;
	call->cur = a;
	lookup_parser_init(&a->parser, &a->resp);
	uv_timer_start(&a->timer, lookup__timeout, (uint64_t)(call->conf->lookup.timeout * 1000.0), 0);
	int len = lookup__request(call, srv, a->req, sizeof(a->req));
	if (len < 0) {
		lookup__attempt_close(a);
		snprintf(call->error, sizeof(call->error), "request too large");
		lookup__finish(call, NULL, NULL);
		return;
	}
	/* The copy may hold the password: it is wiped once written. */
	int rc = stream_write_copy(&a->st, a->req, (size_t)len, true);
	secret_wipe(a->req, sizeof(a->req));
	if (rc < 0)
		lookup__attempt_stale(a);
}

static void lookup__try_next(struct lookup_call *call)
{
	int i = lookup__pick(call);
	const struct conf_lookup_server *srv;
	struct lookup_attempt *a;
	int rc, len;

	if (i < 0) {
		if (call->error[0] == '\0')
			snprintf(call->error, sizeof(call->error), "no lookup server available");
		lookup__finish(call, NULL, NULL);
		return;
	}
	call->tried |= 1u << i;
	call->ntried++;
	srv = &call->conf->lookup.servers[i];
	a = call->fresh_only ? NULL : lookup__unpark(call, i);
	if (a != NULL) {
		lookup__send_reused(call, a);
		return;
	}
	a = calloc(1, sizeof(*a));
	if (a == NULL) {
		snprintf(call->error, sizeof(call->error), "out of memory");
		lookup__finish(call, NULL, NULL);
		return;
	}
	a->call = call;
	a->conf = conf_ref(call->conf);
	a->server = i;
	list_init(&a->link);
	len = lookup__request(call, srv, a->req, sizeof(a->req));
	if (len < 0) {
		conf_unref(a->conf);
		free(a);
		snprintf(call->error, sizeof(call->error), "request too large");
		lookup__finish(call, NULL, NULL);
		return;
	}
	a->reqlen = (size_t)len;
	lookup_parser_init(&a->parser, &a->resp);
	pool_init(&a->pool, 4096, 2);
	stream_init(&a->st, call->loop, &a->pool, a);
	a->st.on_read = lookup__on_read;
	a->st.on_close = lookup__stream_closed;
	uv_timer_init(call->loop, &a->timer);
	a->timer.data = a;
	a->handles = 2;
	call->live++;
	call->cur = a;
	uv_timer_start(&a->timer, lookup__timeout, (uint64_t)(call->conf->lookup.timeout * 1000.0), 0);
	a->connect.data = a;
	rc = uv_tcp_connect(&a->connect, &a->st.tcp, (const struct sockaddr *)&srv->addr,
			    lookup__connected);
	if (rc < 0) {
		char why[96];
		snprintf(why, sizeof(why), "connect: %s", uv_strerror(rc));
		lookup__attempt_failed(a, why);
	}
}

static char *lookup__dup(const char *s)
{
	return strdup(s ? s : "");
}

struct lookup_call *lookup_start(uv_loop_t *loop, struct conf *c, const struct lookup_query *q,
				 lookup_done_cb cb, void *arg)
{
	struct lookup_call *call = calloc(1, sizeof(*call));

	if (call == NULL)
		return NULL;
	call->loop = loop;
	call->conf = conf_ref(c);
	call->cb = cb;
	call->arg = arg;
	call->method = lookup__dup(q->method);
	call->user = lookup__dup(q->user);
	call->password = q->password ? strdup(q->password) : NULL;
	call->protocol = lookup__dup(q->protocol);
	call->client_ip = lookup__dup(q->client_ip);
	call->proxy_ip = lookup__dup(q->proxy_ip);
	call->attempt_no = q->attempt;
	call->host = q->host ? strdup(q->host) : NULL;
	call->admin = q->admin;
	if ((q->host && !call->host) || !call->method || !call->user || !call->protocol || !call->client_ip ||
	    !call->proxy_ip || (q->password && !call->password)) {
		lookup__call_free(call);
		return NULL;
	}
	lookup__try_next(call);
	return call;
}

void lookup_abort(struct lookup_call *call)
{
	if (call->finished)
		return;
	call->finished = true;
	if (call->cur)
		lookup__attempt_close(call->cur);
	if (call->live == 0)
		lookup__call_free(call);
}

void lookup_pool_close(void)
{
	list_foreach(it, lookup__idle())
		lookup__attempt_close(list_entry(it, struct lookup_attempt, link));
}

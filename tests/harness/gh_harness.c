/*
 * gh_harness.c - the session test harness (see gh_harness.h): a fake
 * worker, a socketpair client with an OpenSSL memory-BIO TLS client, and a
 * loopback backend that answers as a mailstore or web server.
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "audit.h"
#include "gh_harness.h"
#include "http.h"
#include "imap.h"
#include "log.h"
#include "pop3.h"
#include "tcp.h"
#include "route.h"

/* ---- buffers ---- */

static void gh__buf_add(struct gh_buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		uint8_t *q = realloc(b->p, cap);
		if (q == NULL)
			abort();
		b->p = q;
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void gh__buf_free(struct gh_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static void gh__buf_drop(struct gh_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
	} else {
		memmove(b->p, b->p + n, b->len - n);
		b->len -= n;
	}
	if (b->p)
		b->p[b->len] = 0;
}

void gh_out_clear(struct gh_conn *c)
{
	gh__buf_drop(&c->out, c->out.len);
}

size_t gh_count(const struct gh_buf *b, const char *needle)
{
	size_t k = 0, nl = strlen(needle);

	if (b->p == NULL || nl == 0)
		return 0;
	const uint8_t *p = b->p, *end = b->p + b->len;
	while (p < end) {
		const uint8_t *q = memmem(p, (size_t)(end - p), needle, nl);
		if (q == NULL)
			break;
		k++;
		p = q + nl;
	}
	return k;
}

/* ---- environment ---- */

static int gh__make_cert(const char *dir)
{
	char path[128];
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *x = X509_new();
	int rc = -1;

	if (key == NULL || x == NULL)
		goto out;
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400 * 365);
	X509_set_pubkey(x, key);
	X509_NAME *n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"mail.a.test", -1,
				   -1, 0);
	X509_set_issuer_name(x, n);
	if (X509_sign(x, key, EVP_sha256()) <= 0)
		goto out;
	snprintf(path, sizeof(path), "%s/h.crt", dir);
	FILE *f = fopen(path, "w");
	if (f == NULL)
		goto out;
	PEM_write_X509(f, x);
	fclose(f);
	snprintf(path, sizeof(path), "%s/h.key", dir);
	f = fopen(path, "w");
	if (f == NULL)
		goto out;
	PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	rc = 0;
out:
	X509_free(x);
	EVP_PKEY_free(key);
	return rc;
}

static const char *const gh__proto_names[] = { "imap", "pop3", "http", "tcp" };

static void gh__flush_audit(uv_prepare_t *p)
{
	(void)p;
	audit_flush();
}

static void gh__rmdir(const char *dir)
{
	static const char *const files[] = { "h.crt", "h.key", "h.conf" };
	char path[128];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
}

int gh_env_init(struct gh_env *e, const char *extra, char *err, size_t errlen)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	char path[128], lst[2048];
	size_t lo = 0;

	memset(e, 0, sizeof(*e));
	e->backend_lfd = -1;
	signal(SIGPIPE, SIG_IGN);
	session_register(CONF_PROTO_IMAP, &imap_proto);
	session_register(CONF_PROTO_POP3, &pop3_proto);
	session_register(CONF_PROTO_HTTP, &http_proto);
	session_register(CONF_PROTO_TCP, &tcp_proto);
	const char *lv = getenv("GH_HARNESS_LOG");
	log_open(NULL, lv && strcmp(lv, "debug") == 0 ? LOG_DEBUG
		       : lv && strcmp(lv, "info") == 0 ? LOG_INFO : LOG_ERROR);
	audit_open(lv ? NULL : "off");

	strcpy(e->dir, "/tmp/gh-harness-XXXXXX");
	if (mkdtemp(e->dir) == NULL || gh__make_cert(e->dir) < 0) {
		snprintf(err, errlen, "making the certificate: %s", strerror(errno));
		return -1;
	}
	e->backend_lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (e->backend_lfd < 0 || bind(e->backend_lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(e->backend_lfd, 64) < 0 ||
	    getsockname(e->backend_lfd, (struct sockaddr *)&a, &alen) < 0) {
		snprintf(err, errlen, "backend socket: %s", strerror(errno));
		goto fail;
	}
	e->backend_port = ntohs(a.sin_port);

	for (int p = 0; p < 4; p++) {
		for (int m = 0; m < 3; m++) {
			const char *opt;
			if (p == GH_TCP)
				opt = m == GH_TLS	    ? "tls = true; upstream = \"h\";"
				      : m == GH_PLAIN ? "upstream = \"h\";"
						      : "upstream = \"h\"; send_proxy_protocol = \"v2\";";
			else if (m == GH_TLS)
				opt = "tls = true;";
			else if (p == GH_HTTP)
				opt = m == GH_PLAIN ? "mode = \"both\";" : "mode = \"redirect\";";
			else
				opt = m == GH_PLAIN ? "starttls = \"off\";" : "starttls = \"optional\";";
			lo += (size_t)snprintf(lst + lo, sizeof(lst) - lo,
					       "%s  { address = \"127.0.0.1:%d\"; protocol = \"%s\"; %s }",
					       lo ? ",\n" : "", 20000 + p * 3 + m, gh__proto_names[p], opt);
		}
	}
	snprintf(path, sizeof(path), "%s/h.conf", e->dir);
	FILE *f = fopen(path, "w");
	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	fprintf(f,
		"workers = 1;\n"
		"audit_log = \"off\";\n"
		"tls = { cert = \"%1$s/h.crt\"; key = \"%1$s/h.key\"; };\n"
		/* A rejected login is answered after a timer of 0 s (still the
		   AUTH_WAIT phase), and no failed-login count is asked for before
		   the greeting: a session is synchronous to drive, and a fuzzer
		   does not wait 10 s per failure. The e2e suite covers both. */
		"limits = { auth_failure_delay = 0.0; };\n"
		"throttle = { failed_limit = 0; };\n"
		"routes = ( { match = \"*\"; server = \"127.0.0.1:%2$u\"; } );\n"
		"http = { backends = [ \"127.0.0.1:%2$u\" ]; server_name = \"mail.a.test\"; };\n"
		"upstreams = ( { name = \"h\"; servers = [ \"127.0.0.1:%2$u\" ]; "
		"balance = \"round_robin\"; },\n"
		"  { name = \"r\"; servers = [ \"127.0.0.1:%2$u\" ]; } );\n"
		/* A few locations (HTTP paths outside them go the http.backends
		   way): local answers, a group with rewrites, long polls. */
		"locations = (\n"
		"  { match = \"= /robots.txt\"; return = 200; body = \"no\"; },\n"
		"  { match = \"/logout\"; logout = [ \"ZM_AUTH_TOKEN\" ]; redirect = \"/l/\"; },\n"
		"  { match = \"^~ /c/\"; upstream = \"r\"; require_cookie = \"ZM_AUTH_TOKEN\";\n"
		"    login_redirect = \"/l/\"; add_headers = [ \"X-L: 1\" ]; },\n"
		"  { match = \"^~ /g/\"; upstream = \"h\"; rewrite_prefix = \"/\"; host = \"$host:7071\";\n"
		"    websocket = false; },\n"
		"  { match = \"~ ^/lp/\"; upstream = \"r\"; read_timeout = 3600; }\n"
		");\n"
		"listen = (\n%3$s\n);\n%4$s\n",
		e->dir, e->backend_port, lst, extra ? extra : "");
	fclose(f);
	e->conf = conf_load(path, err, errlen);
	if (e->conf == NULL)
		goto fail;
	if (e->conf->nlisten != GH_NLISTEN) {
		snprintf(err, errlen, "expected %d listeners, got %d", GH_NLISTEN, e->conf->nlisten);
		goto fail;
	}

	/* What worker_start and worker__run set up that sessions touch. */
	struct worker *w = &e->w;
	w->id = 0;
	list_init(&w->sessions);
	w->conf = conf_ref(e->conf);
	w->listen_conf = conf_ref(e->conf);
	atomic_init(&w->commands, 0);
	atomic_init(&w->pending_conf, NULL);
	pool_init(&w->pool, (uint32_t)e->conf->limits.relay_buffer, 16);
	if (uv_loop_init(&w->loop) < 0) {
		snprintf(err, errlen, "uv_loop_init failed");
		goto fail;
	}
	uv_timer_init(&w->loop, &w->trim_timer);
	w->trim_timer.data = w;
	uv_unref((uv_handle_t *)&w->trim_timer);
	uv_prepare_init(&w->loop, &w->flush);
	uv_prepare_start(&w->flush, gh__flush_audit);
	uv_unref((uv_handle_t *)&w->flush);
	route_worker_init(&w->loop);
	for (int i = 0; i < GH_NLISTEN; i++) {
		e->l[i].w = w;
		e->l[i].cl = &e->conf->listen[i];
		e->l[i].index = i;
		e->l[i].fd = -1;
	}
	w->nlisteners = 0;

	e->cli_ctx = SSL_CTX_new(TLS_client_method());
	if (e->cli_ctx == NULL) {
		snprintf(err, errlen, "SSL_CTX_new failed");
		goto fail;
	}
	SSL_CTX_set_verify(e->cli_ctx, SSL_VERIFY_NONE, NULL);
	/* The certificate and the config are read: nothing needs the files. */
	gh__rmdir(e->dir);
	return 0;

fail:
	if (e->backend_lfd >= 0)
		close(e->backend_lfd);
	e->backend_lfd = -1;
	gh__rmdir(e->dir);
	return -1;
}

static bool gh__own_handle(struct gh_env *e, uv_handle_t *h)
{
	return h == (uv_handle_t *)&e->w.trim_timer || h == (uv_handle_t *)&e->w.flush;
}

struct gh_walk {
	struct gh_env *e;
	int n;
};

static void gh__count_handle(uv_handle_t *h, void *arg)
{
	struct gh_walk *k = arg;

	if (!gh__own_handle(k->e, h) && !uv_is_closing(h))
		k->n++;
}

int gh_env_live_handles(struct gh_env *e)
{
	struct gh_walk k = { e, 0 };

	uv_walk(&e->w.loop, gh__count_handle, &k);
	return k.n;
}

int gh_env_fini(struct gh_env *e)
{
	struct worker *w = &e->w;

	audit_flush();
	session_http_pool_close(&w->loop);
	route_worker_close(&w->loop);
	worker_upstream_health_reset(w);
	uv_close((uv_handle_t *)&w->trim_timer, NULL);
	uv_close((uv_handle_t *)&w->flush, NULL);
	for (int i = 0; i < 100; i++)
		uv_run(&w->loop, UV_RUN_NOWAIT);
	int rc = uv_loop_close(&w->loop);
	pool_destroy(&w->pool);
	slab_destroy(&w->mail_sessions);
	conf_unref(w->conf);
	conf_unref(w->listen_conf);
	conf_unref(e->conf);
	SSL_CTX_free(e->cli_ctx);
	close(e->backend_lfd);
	gh__rmdir(e->dir);
	return rc;
}

/* ---- the connection ---- */

struct session *gh_session(struct gh_conn *c)
{
	list_foreach(it, &c->e->w.sessions) {
		struct session *s = list_entry(it, struct session, worker_link);
		if (s->id == c->sid)
			return s;
	}
	return NULL;
}

static void gh__tls_new(struct gh_conn *c)
{
	c->ssl = SSL_new(c->e->cli_ctx);
	c->rbio = BIO_new(BIO_s_mem());
	c->wbio = BIO_new(BIO_s_mem());
	BIO_set_mem_eof_return(c->rbio, -1);
	SSL_set_bio(c->ssl, c->rbio, c->wbio);
	SSL_set_tlsext_host_name(c->ssl, "mail.a.test");
	if (c->e->tls_max_version)
		SSL_set_max_proto_version(c->ssl, c->e->tls_max_version);
	SSL_set_connect_state(c->ssl);
}

/* Move what the TLS client wrote into pend. */
static void gh__tls_out(struct gh_conn *c)
{
	uint8_t buf[4096];
	int n;

	while ((n = BIO_read(c->wbio, buf, sizeof(buf))) > 0)
		gh__buf_add(&c->pend, buf, (size_t)n);
}

static void gh__queue(struct gh_conn *c);

static void gh__tls_handshake(struct gh_conn *c)
{
	if (c->ssl == NULL || c->tls_done || c->tls_failed)
		return;
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->tls_done = true;
	} else {
		int e = SSL_get_error(c->ssl, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
			c->tls_failed = true;
	}
	ERR_clear_error();
	gh__tls_out(c);
}

void gh_tls_start(struct gh_conn *c)
{
	if (c->ssl != NULL || c->fd < 0)
		return;
	gh__tls_new(c);
	gh__tls_handshake(c);
	gh__queue(c);
}

int gh_conn_open(struct gh_conn *c, struct gh_env *e, enum gh_proto proto, enum gh_mode mode,
		 int sndbuf)
{
	static unsigned next_port;
	int sv[2];

	memset(c, 0, sizeof(*c));
	c->e = e;
	c->proto = proto;
	c->mode = mode;
	c->fd = -1;
	c->reading = true;
	c->backend_auto = true;
	c->backend_login_ok = true;
	c->backend_reading = true;
	for (int i = 0; i < GH_MAX_BACKENDS; i++)
		c->b[i].fd = -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	c->fd = sv[0];
	c->sfd = sv[1];
	fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
	if (sndbuf > 0)
		setsockopt(c->sfd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	struct sockaddr_in peer = { .sin_family = AF_INET };
	peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	peer.sin_port = htons((uint16_t)(40000 + next_port++ % 20000));
	struct session *s = worker_take(&e->w, &e->l[proto * 3 + mode], c->sfd,
					(const struct sockaddr *)&peer);
	if (s == NULL) {
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	c->sid = s->id;
	gh__buf_add(&c->out, "", 0); /* never NULL: strstr-able from the start */
	gh__buf_add(&c->bsent, "", 0);
	if (mode == GH_TLS)
		gh_tls_start(c);
	gh_settle(c, 200);
	return 0;
}

/* Write what pend holds; tries > 1: run the loop and retry while the
   session's end is full. Returns the bytes written. */
static size_t gh__flush(struct gh_conn *c, int tries)
{
	size_t done = 0;

	while (c->pend.len > 0 && tries > 0) {
		if (c->fd < 0) {
			c->pend.len = 0;
			break;
		}
		ssize_t n = send(c->fd, c->pend.p, c->pend.len, MSG_NOSIGNAL);
		if (n > 0) {
			gh__buf_drop(&c->pend, (size_t)n);
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			c->pend.len = 0; /* the session's end is gone */
			break;
		}
		/* The session's end is full: let it read. */
		if (--tries > 0)
			uv_run(&c->e->w.loop, UV_RUN_NOWAIT);
	}
	return done;
}

void gh_flush(struct gh_conn *c)
{
	c->hold = false;
	gh__flush(c, 64);
}

static void gh__queue(struct gh_conn *c)
{
	if (!c->hold)
		gh__flush(c, 64);
}

void gh_send_raw(struct gh_conn *c, const void *data, size_t len)
{
	gh__buf_add(&c->pend, data, len);
	gh__queue(c);
}

void gh_send(struct gh_conn *c, const void *data, size_t len, size_t rec)
{
	if (c->ssl == NULL || !c->tls_done || c->tls_failed) {
		gh_send_raw(c, data, len);
		return;
	}
	if (rec == 0 || rec > 16384)
		rec = 16384;
	const uint8_t *p = data;
	while (len > 0) {
		size_t n = len < rec ? len : rec;
		if (SSL_write(c->ssl, p, (int)n) <= 0) {
			ERR_clear_error();
			break;
		}
		p += n;
		len -= n;
	}
	gh__tls_out(c);
	gh__queue(c);
}

void gh_sends(struct gh_conn *c, const char *str)
{
	gh_send(c, str, strlen(str), 0);
}

void gh_send_bad_record(struct gh_conn *c)
{
	uint8_t rec[5 + 32] = { 0x17, 0x03, 0x03, 0x00, 0x20 };

	memset(rec + 5, 0xAA, 32);
	gh_send_raw(c, rec, sizeof(rec));
}

void gh_send_close_notify(struct gh_conn *c)
{
	if (c->ssl == NULL || !c->tls_done)
		return;
	SSL_shutdown(c->ssl);
	ERR_clear_error();
	gh__tls_out(c);
	gh__queue(c);
}

void gh_client_shutdown(struct gh_conn *c)
{
	gh__flush(c, 64);
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_WR);
}

void gh_client_close(struct gh_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->pend.len = 0;
}

void gh_fire_timer(struct gh_conn *c)
{
	struct session *s = gh_session(c);

	/* Only what could happen for real: an armed timer of a live session. */
	if (s != NULL && !s->closed && uv_is_active((uv_handle_t *)&s->timer)) {
		s->timer_due_ms = 0; /* its time has come (not an early, lazy wake) */
		session__timer_fired(&s->timer);
	}
}

/* ---- the client's side ---- */

static bool gh__client_read(struct gh_conn *c)
{
	uint8_t buf[16384];
	bool moved = false;

	if (c->fd < 0 || c->eof || !c->reading)
		return false;
	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
			c->eof = true;
			break;
		}
		if (n < 0)
			break;
		moved = true;
		if (c->ssl == NULL)
			gh__buf_add(&c->out, buf, (size_t)n);
		else
			BIO_write(c->rbio, buf, (int)n);
	}
	if (c->ssl != NULL && moved) {
		gh__tls_handshake(c);
		while (c->tls_done && !c->tls_failed && !c->tls_peer_closed) {
			int n = SSL_read(c->ssl, buf, sizeof(buf));
			if (n > 0) {
				gh__buf_add(&c->out, buf, (size_t)n);
				continue;
			}
			int e = SSL_get_error(c->ssl, n);
			if (e == SSL_ERROR_ZERO_RETURN)
				c->tls_peer_closed = true;
			else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				c->tls_failed = true;
			break;
		}
		ERR_clear_error();
		gh__tls_out(c); /* key updates, alerts */
	}
	return moved;
}

/* ---- the backend's side ---- */

struct gh_backend *gh_backend(struct gh_conn *c)
{
	for (int i = c->nbackends < GH_MAX_BACKENDS ? c->nbackends - 1 : GH_MAX_BACKENDS - 1;
	     i >= 0; i--)
		if (c->b[i].fd >= 0)
			return &c->b[i];
	return NULL;
}

static void gh__bsend(struct gh_backend *b, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (b->fd >= 0 && len > 0) {
		ssize_t n = send(b->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n <= 0)
			return; /* a full or dead socket: a script's business */
		p += n;
		len -= (size_t)n;
	}
}

static void gh__bsends(struct gh_backend *b, const char *s)
{
	gh__bsend(b, s, strlen(s));
}

void gh_backend_send(struct gh_conn *c, const void *data, size_t len)
{
	struct gh_backend *b = gh_backend(c);

	if (b != NULL)
		gh__bsend(b, data, len);
}

void gh_backend_close(struct gh_conn *c)
{
	struct gh_backend *b = gh_backend(c);

	if (b != NULL) {
		close(b->fd);
		b->fd = -1;
	}
}

static void gh__greet(struct gh_conn *c, struct gh_backend *b)
{
	if (c->proto == GH_IMAP)
		gh__bsends(b, "* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID AUTH=PLAIN] ready\r\n");
	else if (c->proto == GH_POP3)
		gh__bsends(b, "+OK ready\r\n");
}

/* One complete IMAP command at b->in[done..): its length, or 0. Literals
   ({n} and {n+}) are part of the command. */
static size_t gh__imap_cmd(struct gh_backend *b, size_t *lit_sync)
{
	const uint8_t *p = b->in.p + b->done;
	size_t n = b->in.len - b->done, i = 0;

	*lit_sync = 0;
	for (;;) {
		const uint8_t *nl = memchr(p + i, '\n', n - i);
		if (nl == NULL)
			return 0;
		size_t end = (size_t)(nl - p) + 1, e = end - 1;
		if (e > i && p[e - 1] == '\r')
			e--;
		if (e > i && p[e - 1] == '}') {
			size_t k = e - 1, lit = 0, mul = 1;
			if (k > i && p[k - 1] == '+')
				k--;
			else
				*lit_sync = end; /* a synchronising literal: "+ go ahead" */
			while (k > i && p[k - 1] >= '0' && p[k - 1] <= '9') {
				lit += (size_t)(p[k - 1] - '0') * mul;
				mul *= 10;
				k--;
			}
			if (k > i && p[k - 1] == '{' && lit < (1u << 20)) {
				if (end + lit > n)
					return 0;
				i = end + lit;
				continue;
			}
		}
		return end;
	}
}

static void gh__imap_answer(struct gh_conn *c, struct gh_backend *b)
{
	for (;;) {
		size_t sync;
		size_t len = gh__imap_cmd(b, &sync);
		if (len == 0) {
			/* Answer each synchronising literal once. */
			if (sync > 0 && b->done + sync > b->lit_acked) {
				gh__bsends(b, "+ go ahead\r\n");
				b->lit_acked = b->done + sync;
			}
			return;
		}
		char line[256], tag[64] = "*", cmd[32] = "";
		size_t ll = len < sizeof(line) - 1 ? len : sizeof(line) - 1;
		memcpy(line, b->in.p + b->done, ll);
		line[ll] = 0;
		b->done += len;
		if (b->sasl_wait) {
			b->sasl_wait = false;
			snprintf(line, sizeof(line), "%s %s\r\n", b->sasl_tag,
				 c->backend_login_ok ? "OK Logged in" : "NO [AUTHENTICATIONFAILED] Failed");
			gh__bsends(b, line);
			continue;
		}
		sscanf(line, "%63s %31s", tag, cmd);
		char ans[512];
		if (strcasecmp(cmd, "CAPABILITY") == 0) {
			snprintf(ans, sizeof(ans),
				 "* CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID AUTH=PLAIN\r\n%s OK done\r\n",
				 tag);
		} else if (strcasecmp(cmd, "ID") == 0) {
			snprintf(ans, sizeof(ans), "* ID NIL\r\n%s OK ID done\r\n", tag);
		} else if (strcasecmp(cmd, "LOGIN") == 0 ||
			   (strcasecmp(cmd, "AUTHENTICATE") == 0 && strchr(line + strlen(tag) + 14, ' '))) {
			snprintf(ans, sizeof(ans), "%s %s\r\n", tag,
				 c->backend_login_ok ? "OK [CAPABILITY IMAP4rev1] Logged in"
						     : "NO [AUTHENTICATIONFAILED] Authentication failed.");
		} else if (strcasecmp(cmd, "AUTHENTICATE") == 0) {
			b->sasl_wait = true;
			snprintf(b->sasl_tag, sizeof(b->sasl_tag), "%s", tag);
			snprintf(ans, sizeof(ans), "+ \r\n");
		} else if (strcasecmp(cmd, "LOGOUT") == 0) {
			snprintf(ans, sizeof(ans), "* BYE bye\r\n%s OK LOGOUT done\r\n", tag);
		} else {
			snprintf(ans, sizeof(ans), "%s OK %s done\r\n", tag, cmd);
		}
		gh__bsends(b, ans);
	}
}

static void gh__pop3_answer(struct gh_conn *c, struct gh_backend *b)
{
	for (;;) {
		const uint8_t *p = b->in.p + b->done;
		const uint8_t *nl = memchr(p, '\n', b->in.len - b->done);
		if (nl == NULL)
			return;
		size_t len = (size_t)(nl - p) + 1;
		char line[256];
		size_t ll = len < sizeof(line) - 1 ? len : sizeof(line) - 1;
		memcpy(line, p, ll);
		line[ll] = 0;
		b->done += len;
		const char *ok = c->backend_login_ok ? "+OK logged in\r\n" : "-ERR [AUTH] failed\r\n";
		if (b->sasl_wait) {
			b->sasl_wait = false;
			gh__bsends(b, ok);
		} else if (strncasecmp(line, "PASS", 4) == 0) {
			gh__bsends(b, ok);
		} else if (strncasecmp(line, "AUTH ", 5) == 0) {
			if (strchr(line + 5, ' ')) {
				gh__bsends(b, ok);
			} else {
				b->sasl_wait = true;
				gh__bsends(b, "+ \r\n");
			}
		} else if (strncasecmp(line, "QUIT", 4) == 0) {
			gh__bsends(b, "+OK bye\r\n");
		} else {
			gh__bsends(b, "+OK\r\n");
		}
	}
}

/* Complete requests in b->in[done..) each get "200 ok <n>". */
/* The TCP listener's upstream echoes what it got. */
static void gh__tcp_answer(struct gh_backend *b)
{
	gh__bsend(b, b->in.p + b->done, b->in.len - b->done);
	b->done = b->in.len;
}

static void gh__http_answer(struct gh_conn *c, struct gh_backend *b)
{
	(void)c;
	for (;;) {
		const uint8_t *p = b->in.p + b->done;
		size_t n = b->in.len - b->done;
		const uint8_t *eoh = memmem(p, n, "\r\n\r\n", 4);
		if (eoh == NULL)
			return;
		size_t head = (size_t)(eoh - p) + 4, body = 0;
		bool chunked = false;
		for (size_t i = 0; i < head;) {
			const uint8_t *nl = memchr(p + i, '\n', head - i);
			size_t ll = nl ? (size_t)(nl - (p + i)) : head - i;
			if (ll > 15 && strncasecmp((const char *)p + i, "Content-Length:", 15) == 0)
				body = strtoul((const char *)p + i + 15, NULL, 10);
			if (ll > 18 && strncasecmp((const char *)p + i, "Transfer-Encoding:", 18) == 0 &&
			    memmem(p + i, ll, "chunked", 7))
				chunked = true;
			i += ll + 1;
		}
		if (chunked) {
			const uint8_t *end = memmem(p + head, n - head, "0\r\n\r\n", 5);
			if (end == NULL)
				return;
			body = (size_t)(end - (p + head)) + 5;
		}
		if (head + body > n)
			return;
		b->done += head + body;
		char ans[256];
		static unsigned nresp;
		char msg[32];
		int ml = snprintf(msg, sizeof(msg), "ok %u\n", nresp++);
		snprintf(ans, sizeof(ans), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", ml, msg);
		gh__bsends(b, ans);
	}
}

static bool gh__backend_io(struct gh_conn *c)
{
	struct gh_env *e = c->e;
	bool moved = false;
	uint8_t buf[16384];

	for (;;) {
		int fd = accept4(e->backend_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			break;
		moved = true;
		if (c->nbackends >= GH_MAX_BACKENDS) {
			close(fd);
			c->nbackends++;
			continue;
		}
		struct gh_backend *b = &c->b[c->nbackends++];
		int one = 1;
		/* No Nagle: a second small answer must not wait for a delayed ACK
		   that the bounded steps would never see. */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		b->fd = fd;
		if (c->backend_auto)
			gh__greet(c, b);
	}
	for (int i = 0; i < GH_MAX_BACKENDS && i < c->nbackends; i++) {
		struct gh_backend *b = &c->b[i];
		if (b->fd < 0 || b->eof || !c->backend_reading)
			continue;
		for (;;) {
			ssize_t n = recv(b->fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
				       errno != EINTR)) {
				b->eof = true;
				break;
			}
			if (n < 0)
				break;
			moved = true;
			gh__buf_add(&b->in, buf, (size_t)n);
			gh__buf_add(&c->bsent, buf, (size_t)n);
		}
		if (c->backend_auto && b->in.len > b->done) {
			if (c->proto == GH_IMAP)
				gh__imap_answer(c, b);
			else if (c->proto == GH_POP3)
				gh__pop3_answer(c, b);
			else if (c->proto == GH_TCP)
				gh__tcp_answer(b);
			else
				gh__http_answer(c, b);
		}
		if (b->eof) {
			/* Gatehouse closed it (or shut down its side): so do we. */
			close(b->fd);
			b->fd = -1;
		}
	}
	return moved;
}

/* ---- stepping ---- */

bool gh_step(struct gh_conn *c)
{
	bool moved = false;

	uv_run(&c->e->w.loop, UV_RUN_NOWAIT);
	moved |= gh__backend_io(c);
	moved |= gh__client_read(c);
	if (!c->hold && c->pend.len > 0 && gh__flush(c, 1) > 0)
		moved = true;
	return moved;
}

void gh_settle(struct gh_conn *c, int max)
{
	int quiet = 0;

	for (int i = 0; i < max && quiet < 3; i++)
		quiet = gh_step(c) ? 0 : quiet + 1;
}

bool gh_wait_out(struct gh_conn *c, const char *needle, int max)
{
	for (int i = 0; i < max; i++) {
		if (c->out.p && strstr((const char *)c->out.p, needle))
			return true;
		gh_step(c);
	}
	return c->out.p && strstr((const char *)c->out.p, needle);
}

bool gh_wait_gone(struct gh_conn *c, int max)
{
	for (int i = 0; i < max && gh_session(c) != NULL; i++)
		gh_step(c);
	return gh_session(c) == NULL;
}

size_t gh_client_queued(struct gh_conn *c)
{
	struct session *s = gh_session(c);

	return s ? s->client.queued : 0;
}

size_t gh_pool_bytes(struct gh_conn *c)
{
	const struct pool *p = &c->e->w.pool;

	return (p->outstanding - p->big_outstanding) * p->size + p->big_outstanding * p->big_size;
}

int gh_conn_close(struct gh_conn *c)
{
	struct gh_env *e = c->e;
	struct session *s = gh_session(c);
	int rc = 0;

	if (s != NULL && !s->closed)
		session_close(s, "harness teardown");
	gh_client_close(c);
	for (int i = 0; i < GH_MAX_BACKENDS; i++) {
		if (c->b[i].fd >= 0)
			close(c->b[i].fd);
		c->b[i].fd = -1;
	}
	for (int i = 0; i < 1000 && gh_session(c) != NULL; i++)
		uv_run(&e->w.loop, UV_RUN_NOWAIT);
	if (gh_session(c) != NULL)
		rc = -1;
	session_http_pool_close(&e->w.loop);
	/* Drain accepted-but-unseen backend connections. */
	for (;;) {
		int fd = accept4(e->backend_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			break;
		close(fd);
	}
	for (int i = 0; i < 10; i++)
		uv_run(&e->w.loop, UV_RUN_NOWAIT);
	if (gh_env_live_handles(e) != 0 || e->w.pool.outstanding != 0)
		rc = -1;
	if (c->ssl)
		SSL_free(c->ssl);
	c->ssl = NULL;
	gh__buf_free(&c->pend);
	gh__buf_free(&c->out);
	gh__buf_free(&c->bsent);
	for (int i = 0; i < GH_MAX_BACKENDS; i++)
		gh__buf_free(&c->b[i].in);
	c->e = NULL;
	return rc;
}

/*
 * gh-loadgen: the benchmark's load generator (libuv + OpenSSL).
 *
 *   gh-loadgen SCENARIO --port P [--host 127.0.0.1] [--tls] [--sni NAME]
 *              [-c CLIENTS] [-d SECONDS] [-t THREADS] [--user U] [--pass W]
 *              [--timeout SECONDS] [--hold SECONDS] [--window N]
 *              [--users N] [--count K]
 *
 * Scenarios (every client runs its loop until the -d deadline):
 *   imap-login  connect, [TLS], greeting, LOGIN, SELECT INBOX, LOGOUT, again
 *   pop3-login  connect, [TLS], greeting, USER, PASS, STAT, QUIT, again
 *   imap-fetch  log in and SELECT once, then FETCH 1 BODY[] over and over
 *   pop3-retr   log in once, then RETR 1 over and over
 *   imap-idle   log in, SELECT, IDLE; once every client idles print
 *               {"ready":N} and hold them for --hold seconds (or SIGTERM)
 * --window N: at most N connections per thread between connect and
 * greeting at a time (default 64), so K idle clients arrive as a ramp, not
 * one burst into the listen backlog.
 * --users N: log in as N distinct users, user0..userN-1 (with the domain
 * of --user if it has one), taken in turn by every new connection of every
 * client, so the proxy sees a cyclic scan over N users (an operator's
 * site), not one user.  --count K: stop after K connections in all (with
 * --users N and K = N, every user exactly once: the cold pass).
 * One JSON line on stdout gives the result: completed operations (logins or
 * fetches) and their rate, p50/p99/max latency of one operation (a whole
 * login cycle, or one fetch), bytes received and MB/s, errors by kind, and
 * the load generator's own CPU time.
 *
 * Bounds: -c <= 1000 (imap-idle: <= 10000), -d <= 60 s, every step waits at
 * most --timeout seconds (default 10), and a hard deadline of d + timeout +
 * 5 s stops the loops whatever is still open.  A client that fails counts
 * one error and starts over after 10 ms, so a dead target cannot make it
 * spin.  Loopback addresses only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <uv.h>

#define LG_LINE_MAX 4096
#define LG_READ_BUF 65536
#define LG_MAX_THREADS 16
#define LG_HIST_FINE 100000 /* 10 us buckets up to 1 s */
#define LG_HIST_COARSE 60000 /* then 1 ms buckets up to 61 s */

enum lg_scenario { LG_IMAP_LOGIN, LG_POP3_LOGIN, LG_IMAP_FETCH, LG_POP3_RETR, LG_IMAP_IDLE };
enum lg_err { LG_E_CONNECT, LG_E_TLS, LG_E_PROTO, LG_E_TIMEOUT, LG_E_EOF, LG_E_COUNT };
static const char *const lg_err_names[LG_E_COUNT] = { "connect", "tls", "protocol", "timeout", "eof" };

/* Where a client is in its script: each step names the reply it waits for. */
enum lg_step {
	LG_S_CONNECT, LG_S_GREETING, LG_S_LOGIN, LG_S_USER, LG_S_PASS, LG_S_SELECT,
	LG_S_STAT, LG_S_LOGOUT, LG_S_BYE_EOF, LG_S_FETCH, LG_S_RETR, LG_S_IDLE_WAIT,
	LG_S_IDLING
};

struct lg_opts {
	enum lg_scenario scen;
	const char *scen_name;
	const char *host;
	int port;
	bool tls;
	const char *sni;
	int clients;
	double secs;
	int threads;
	const char *user;
	const char *pass;
	double timeout;
	double hold;
	int window;                /* connections being set up at once per thread */
	bool resume;               /* TLS: offer the last session ticket each reconnect */
	unsigned users;            /* 0: every login as --user; N: user0..userN-1 in turn */
	uint64_t count;            /* 0: until -d; K: at most K connections in all */
};

struct lg_thread;

struct lg_client {
	uv_tcp_t tcp;
	uv_connect_t creq;
	uv_timer_t timer;
	struct lg_thread *th;
	SSL *ssl;
	BIO *rbio;                 /* network -> OpenSSL */
	BIO *wbio;                 /* OpenSSL -> network */
	SSL_SESSION *sess;         /* --resume: the newest ticket the server sent */
	enum lg_step step;
	bool handshaking;
	bool open;                 /* tcp handle initialised and not yet closed */
	bool counted_ready;
	bool again_now;            /* reconnect at once: the last cycle ended well */
	uint64_t t_op;             /* start of the operation being timed, ns */
	uint64_t user_idx;         /* --users: this connection's user */
	size_t lit_left;           /* literal or message bytes still to skip */
	bool in_body;              /* POP3 RETR: reading the multi-line answer */
	size_t in_len;
	char in[LG_LINE_MAX];
};

struct lg_write {
	uv_write_t req;
	size_t len;
	char data[];
};

struct lg_thread {
	pthread_t tid;
	uv_loop_t loop;
	uv_timer_t deadline;
	uv_timer_t hard;
	uv_async_t wake;
	struct lg_client *clients;
	int n;
	int started;
	int setting_up;            /* started but not yet past the greeting */
	bool stopping;
	SSL_CTX *ctx;
	/* results */
	uint64_t ops;
	uint64_t bytes;
	uint64_t handshakes;       /* TLS handshakes finished, and how many resumed */
	uint64_t resumed;
	uint64_t errors[LG_E_COUNT];
	uint32_t *hist;
	uint64_t max_us;
	int ready;
	char rbuf[LG_READ_BUF];
	char pbuf[LG_READ_BUF];
};

static struct lg_opts lg_o;
static struct sockaddr_in lg_addr;
static struct lg_thread lg_threads[LG_MAX_THREADS];
static atomic_int lg_ready_total;
static atomic_uint_fast64_t lg_next_conn; /* connections started, all threads */
static atomic_int lg_ready_printed;
static atomic_bool lg_stop_all;

static uint64_t lg_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void lg_hist_add(struct lg_thread *th, uint64_t us)
{
	size_t i = us < 1000000 ? us / 10
				: LG_HIST_FINE + (us - 1000000 >= (uint64_t)LG_HIST_COARSE * 1000
							  ? LG_HIST_COARSE - 1 : (us - 1000000) / 1000);
	th->hist[i]++;
	if (us > th->max_us)
		th->max_us = us;
}

static double lg_hist_us(size_t i)
{
	return i < LG_HIST_FINE ? (double)i * 10 + 5 : 1e6 + (double)(i - LG_HIST_FINE) * 1000 + 500;
}

static void lg_start(struct lg_client *c);
static void lg_restart(struct lg_client *c, enum lg_err why);
static void lg_feed(struct lg_client *c, const char *p, size_t n);

/* ------------------------------------------------------------ writing */

static void lg_written(uv_write_t *w, int status)
{
	free(w->data);
}

/* Sends bytes on the socket: uv_try_write first (a command almost always
 * fits), a copied uv_write for the rest. */
static int lg_send_raw(struct lg_client *c, const char *p, size_t n)
{
	uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
	int k = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
	if (k == UV_EAGAIN)
		k = 0;
	if (k < 0)
		return k;
	if ((size_t)k == n)
		return 0;
	struct lg_write *w = malloc(sizeof(*w) + n - (size_t)k);
	if (!w)
		return UV_ENOMEM;
	memcpy(w->data, p + k, n - (size_t)k);
	w->req.data = w;
	b = uv_buf_init(w->data, (unsigned)(n - (size_t)k));
	int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, lg_written);
	if (rc < 0)
		free(w);
	return rc;
}

static int lg_flush_tls(struct lg_client *c)
{
	char *p;
	long n = BIO_get_mem_data(c->wbio, &p);
	if (n <= 0)
		return 0;
	int rc = lg_send_raw(c, p, (size_t)n);
	(void)BIO_reset(c->wbio);
	return rc;
}

static void lg_send(struct lg_client *c, const char *s)
{
	size_t n = strlen(s);
	int rc;
	if (c->ssl) {
		if (SSL_write(c->ssl, s, (int)n) != (int)n) {
			lg_restart(c, LG_E_TLS);
			return;
		}
		rc = lg_flush_tls(c);
	} else {
		rc = lg_send_raw(c, s, n);
	}
	if (rc < 0)
		lg_restart(c, LG_E_EOF);
}

/* ------------------------------------------------------- lifecycle */

static void lg_arm(struct lg_client *c);

static void lg_closed(uv_handle_t *h)
{
	struct lg_client *c = h->data;
	c->open = false;
	if (c->th->stopping || atomic_load(&lg_stop_all))
		return;
	if (c->again_now)
		lg_start(c);
	else
		lg_arm(c);
}

static void lg_close(struct lg_client *c)
{
	if (c->ssl) {
		/* After a good cycle the session stays resumable: OpenSSL marks
		   the session of an SSL freed without a shutdown as bad. */
		if (c->again_now)
			SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
		SSL_free(c->ssl); /* frees both BIOs */
		c->ssl = NULL;
	}
	uv_timer_stop(&c->timer);
	if (c->open && !uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, lg_closed);
}

static void lg_setup_done(struct lg_client *c)
{
	if (c->counted_ready)
		return;
	c->counted_ready = true;
	struct lg_thread *th = c->th;
	th->setting_up--;
	if (!th->stopping && th->started < th->n) {
		th->setting_up++;
		lg_start(&th->clients[th->started++]);
	}
}

/* A failed client counts an error and starts over after a short pause. */
static void lg_restart(struct lg_client *c, enum lg_err why)
{
	if (!c->th->stopping)
		c->th->errors[why]++;
	if (c->step == LG_S_IDLING) {
		c->th->ready--;
		atomic_fetch_sub(&lg_ready_total, 1);
	}
	c->step = LG_S_CONNECT;
	c->again_now = false;
	lg_setup_done(c);
	lg_close(c);
}

/* The server closed after LOGOUT/QUIT: a good cycle, start the next one. */
static void lg_cycle_done(struct lg_client *c)
{
	c->step = LG_S_CONNECT;
	c->again_now = true;
	lg_close(c);
}

static void lg_timer_fired(uv_timer_t *t)
{
	struct lg_client *c = t->data;
	if (c->step == LG_S_CONNECT && !c->open) {
		lg_start(c); /* the pause after an error is over */
		return;
	}
	lg_restart(c, LG_E_TIMEOUT);
}

/* Waits 10 ms before the next connection (after an error or a close). */
static void lg_arm(struct lg_client *c)
{
	uv_timer_start(&c->timer, lg_timer_fired, 10, 0);
}

static void lg_step_to(struct lg_client *c, enum lg_step s)
{
	c->step = s;
	if (s == LG_S_IDLING)
		uv_timer_stop(&c->timer);
	else
		uv_timer_start(&c->timer, lg_timer_fired, (uint64_t)(lg_o.timeout * 1000), 0);
}

/* One finished operation: count it and its latency. */
static void lg_op_done(struct lg_client *c)
{
	uint64_t now = lg_now_ns();
	c->th->ops++;
	lg_hist_add(c->th, (now - c->t_op) / 1000);
	c->t_op = now;
}

/* ---------------------------------------------------------- protocol */

/* The login name of this connection: --user, or user<k> with its domain. */
static const char *lg_user(const struct lg_client *c, char *buf, size_t len)
{
	if (!lg_o.users)
		return lg_o.user;
	const char *at = strchr(lg_o.user, '@');
	snprintf(buf, len, "user%" PRIu64 "%s", c->user_idx % lg_o.users, at ? at : "");
	return buf;
}

static void lg_login_cmd(struct lg_client *c)
{
	char buf[1200], ub[1100];
	const char *user = lg_user(c, ub, sizeof(ub));
	if (lg_o.scen == LG_POP3_LOGIN || lg_o.scen == LG_POP3_RETR) {
		snprintf(buf, sizeof(buf), "USER %s\r\n", user);
		lg_step_to(c, LG_S_USER);
	} else {
		snprintf(buf, sizeof(buf), "a1 LOGIN \"%s\" \"%s\"\r\n", user, lg_o.pass);
		lg_step_to(c, LG_S_LOGIN);
	}
	lg_send(c, buf);
}

static bool lg_tagged(const char *line, size_t n, const char *tag, bool *ok)
{
	size_t tl = strlen(tag);
	if (n < tl + 3 || memcmp(line, tag, tl) || line[tl] != ' ')
		return false;
	*ok = !memcmp(line + tl + 1, "OK", 2);
	return true;
}

/* An IMAP line ending in {n}: the next n bytes are a literal. */
static void lg_imap_literal(struct lg_client *c, const char *line, size_t n)
{
	if (n < 3 || line[n - 1] != '}')
		return;
	size_t i = n - 1;
	while (i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9')
		i--;
	if (i > 0 && line[i - 1] == '{' && i < n - 1)
		c->lit_left = (size_t)strtoull(line + i, NULL, 10);
}

static void lg_line(struct lg_client *c, const char *line, size_t n)
{
	bool ok = false;
	bool pop = lg_o.scen == LG_POP3_LOGIN || lg_o.scen == LG_POP3_RETR;
	bool pok = n >= 3 && !memcmp(line, "+OK", 3);
	switch (c->step) {
	case LG_S_GREETING:
		if (pop ? !pok : (n < 4 || memcmp(line, "* OK", 4)))
			goto bad;
		lg_setup_done(c);
		lg_login_cmd(c);
		return;
	case LG_S_LOGIN:
		if (!pop && line[0] == '*')
			return;
		if (!lg_tagged(line, n, "a1", &ok) || !ok)
			goto bad;
		lg_step_to(c, LG_S_SELECT);
		lg_send(c, "a2 SELECT INBOX\r\n");
		return;
	case LG_S_USER: {
		if (!pok)
			goto bad;
		char buf[1200];
		snprintf(buf, sizeof(buf), "PASS %s\r\n", lg_o.pass);
		lg_step_to(c, LG_S_PASS);
		lg_send(c, buf);
		return;
	}
	case LG_S_PASS:
		if (!pok)
			goto bad;
		if (lg_o.scen == LG_POP3_RETR) {
			c->t_op = lg_now_ns();
			lg_step_to(c, LG_S_RETR);
			lg_send(c, "RETR 1\r\n");
		} else {
			lg_step_to(c, LG_S_STAT);
			lg_send(c, "STAT\r\n");
		}
		return;
	case LG_S_STAT:
		if (!pok)
			goto bad;
		lg_step_to(c, LG_S_LOGOUT);
		lg_send(c, "QUIT\r\n");
		return;
	case LG_S_SELECT:
		if (line[0] == '*')
			return;
		if (!lg_tagged(line, n, "a2", &ok) || !ok)
			goto bad;
		if (lg_o.scen == LG_IMAP_FETCH) {
			c->t_op = lg_now_ns();
			lg_step_to(c, LG_S_FETCH);
			lg_send(c, "f FETCH 1 BODY[]\r\n");
		} else if (lg_o.scen == LG_IMAP_IDLE) {
			lg_step_to(c, LG_S_IDLE_WAIT);
			lg_send(c, "a3 IDLE\r\n");
		} else {
			lg_step_to(c, LG_S_LOGOUT);
			lg_send(c, "a3 LOGOUT\r\n");
		}
		return;
	case LG_S_LOGOUT:
		if (pop) {
			if (!pok)
				goto bad;
		} else {
			if (line[0] == '*')
				return;
			if (!lg_tagged(line, n, "a3", &ok) || !ok)
				goto bad;
		}
		/* The login cycle is done; the server closes next.  Waiting for
		 * its close leaves TIME_WAIT on the server side, so the client's
		 * ephemeral ports do not run out in a long storm. */
		lg_op_done(c);
		lg_step_to(c, LG_S_BYE_EOF);
		return;
	case LG_S_FETCH:
		if (line[0] == '*') {
			lg_imap_literal(c, line, n);
			return;
		}
		if (n == 1 && line[0] == ')')
			return;
		if (!lg_tagged(line, n, "f", &ok) || !ok)
			goto bad;
		lg_op_done(c);
		if (c->th->stopping)
			return;
		lg_step_to(c, LG_S_FETCH);
		lg_send(c, "f FETCH 1 BODY[]\r\n");
		return;
	case LG_S_RETR:
		if (!c->in_body) {
			if (!pok)
				goto bad;
			c->in_body = true;
			return;
		}
		if (n == 1 && line[0] == '.') {
			c->in_body = false;
			lg_op_done(c);
			if (c->th->stopping)
				return;
			lg_step_to(c, LG_S_RETR);
			lg_send(c, "RETR 1\r\n");
		}
		return;
	case LG_S_IDLE_WAIT:
		if (line[0] == '*')
			return;
		if (line[0] != '+')
			goto bad;
		lg_step_to(c, LG_S_IDLING);
		c->th->ready++;
		{
			int total = atomic_fetch_add(&lg_ready_total, 1) + 1;
			if (total == lg_o.clients && !atomic_exchange(&lg_ready_printed, 1)) {
				printf("{\"ready\":%d}\n", total);
				fflush(stdout);
			}
		}
		return;
	case LG_S_IDLING:
		if (line[0] == '*')
			return; /* untagged updates while idling are fine */
		goto bad;
	default:
		goto bad;
	}
bad:
	lg_restart(c, LG_E_PROTO);
}

/* Plaintext from the server: lines into in[], literal and message bytes
 * skipped without a copy. */
static void lg_feed(struct lg_client *c, const char *p, size_t n)
{
	c->th->bytes += n;
	while (n > 0 && c->open && c->step != LG_S_CONNECT) {
		if (c->lit_left) {
			size_t k = n < c->lit_left ? n : c->lit_left;
			c->lit_left -= k;
			p += k;
			n -= k;
			continue;
		}
		const char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) + 1 : n;
		if (c->step == LG_S_RETR && c->in_body && c->in_len == 0 && nl && take > 3) {
			/* A whole body line that cannot be the "." terminator. */
			p += take;
			n -= take;
			continue;
		}
		if (c->in_len + take > LG_LINE_MAX) {
			lg_restart(c, LG_E_PROTO);
			return;
		}
		memcpy(c->in + c->in_len, p, take);
		c->in_len += take;
		p += take;
		n -= take;
		if (!nl)
			return;
		size_t ll = c->in_len - 1;
		if (ll && c->in[ll - 1] == '\r')
			ll--;
		c->in_len = 0;
		lg_line(c, c->in, ll);
	}
}

/* --------------------------------------------------------------- I/O */

static void lg_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct lg_client *c = h->data;
	buf->base = c->th->rbuf;
	buf->len = LG_READ_BUF;
}

static void lg_tls_progress(struct lg_client *c)
{
	if (c->handshaking) {
		int r = SSL_do_handshake(c->ssl);
		if (lg_flush_tls(c) < 0) {
			lg_restart(c, LG_E_EOF);
			return;
		}
		if (r != 1) {
			int e = SSL_get_error(c->ssl, r);
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				lg_restart(c, LG_E_TLS);
			return;
		}
		c->handshaking = false;
		c->th->handshakes++;
		if (SSL_session_reused(c->ssl))
			c->th->resumed++;
	}
	for (;;) {
		int r = SSL_read(c->ssl, c->th->pbuf, LG_READ_BUF);
		if (r > 0) {
			lg_feed(c, c->th->pbuf, (size_t)r);
			if (!c->ssl)
				return; /* restarted inside */
			continue;
		}
		int e = SSL_get_error(c->ssl, r);
		if (lg_flush_tls(c) < 0) {
			lg_restart(c, LG_E_EOF);
			return;
		}
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			return;
		if (e == SSL_ERROR_ZERO_RETURN) {
			/* close_notify: as a TCP EOF (lg_read). */
			if (c->step == LG_S_BYE_EOF)
				lg_cycle_done(c);
			else
				lg_restart(c, LG_E_EOF);
			return;
		}
		lg_restart(c, LG_E_TLS);
		return;
	}
}

static void lg_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct lg_client *c = s->data;
	if (nread == 0)
		return;
	if (nread < 0) {
		/* The server's close after LOGOUT/QUIT ends a good cycle. */
		if (c->step == LG_S_BYE_EOF) {
			lg_cycle_done(c);
		} else {
			lg_restart(c, LG_E_EOF);
		}
		return;
	}
	if (!c->ssl) {
		lg_feed(c, buf->base, (size_t)nread);
		return;
	}
	if (BIO_write(c->rbio, buf->base, (int)nread) != (int)nread) {
		lg_restart(c, LG_E_TLS);
		return;
	}
	lg_tls_progress(c);
}

static void lg_connected(uv_connect_t *req, int status)
{
	struct lg_client *c = req->data;
	if (!c->open || c->step != LG_S_CONNECT || uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	if (status < 0) {
		lg_restart(c, LG_E_CONNECT);
		return;
	}
	lg_step_to(c, LG_S_GREETING);
	if (lg_o.tls) {
		c->ssl = SSL_new(c->th->ctx);
		c->rbio = BIO_new(BIO_s_mem());
		c->wbio = BIO_new(BIO_s_mem());
		if (!c->ssl || !c->rbio || !c->wbio) {
			lg_restart(c, LG_E_TLS);
			return;
		}
		SSL_set_bio(c->ssl, c->rbio, c->wbio);
		SSL_set_connect_state(c->ssl);
		SSL_set_app_data(c->ssl, c);
		if (c->sess)
			SSL_set_session(c->ssl, c->sess);
		if (lg_o.sni)
			SSL_set_tlsext_host_name(c->ssl, lg_o.sni);
		c->handshaking = true;
	}
	uv_read_start((uv_stream_t *)&c->tcp, lg_alloc, lg_read);
	if (c->ssl)
		lg_tls_progress(c);
}

static void lg_stop_thread(struct lg_thread *th);

/* --count: the connections are all taken; the thread stops once none of its
   clients has one open (a client pausing after an error does not restart). */
static void lg_count_done(struct lg_thread *th)
{
	for (int i = 0; i < th->n; i++)
		if (th->clients[i].open)
			return;
	lg_stop_thread(th);
}

static void lg_start(struct lg_client *c)
{
	struct lg_thread *th = c->th;
	if (th->stopping)
		return;
	if (lg_o.users || lg_o.count) {
		c->user_idx = atomic_fetch_add(&lg_next_conn, 1);
		if (lg_o.count && c->user_idx >= lg_o.count) {
			lg_count_done(th);
			return;
		}
	}
	c->step = LG_S_CONNECT;
	c->in_len = 0;
	c->lit_left = 0;
	c->in_body = false;
	c->handshaking = false;
	c->t_op = lg_now_ns(); /* a login cycle is timed from the connect */
	uv_tcp_init(&th->loop, &c->tcp);
	c->tcp.data = c;
	c->open = true;
	uv_tcp_nodelay(&c->tcp, 1);
	c->creq.data = c;
	uv_timer_start(&c->timer, lg_timer_fired, (uint64_t)(lg_o.timeout * 1000), 0);
	int rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&lg_addr, lg_connected);
	if (rc < 0) {
		th->errors[LG_E_CONNECT]++;
		lg_close(c);
	}
}

/* ------------------------------------------------------------ threads */

static void lg_walk_close(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void lg_stop_thread(struct lg_thread *th)
{
	if (th->stopping)
		return;
	th->stopping = true;
	for (int i = 0; i < th->n; i++) {
		struct lg_client *c = &th->clients[i];
		if (c->ssl) {
			SSL_free(c->ssl);
			c->ssl = NULL;
		}
		if (c->sess) {
			SSL_SESSION_free(c->sess);
			c->sess = NULL;
		}
		uv_timer_stop(&c->timer);
		uv_close((uv_handle_t *)&c->timer, NULL);
		if (c->open && !uv_is_closing((uv_handle_t *)&c->tcp))
			uv_close((uv_handle_t *)&c->tcp, NULL);
	}
	uv_timer_stop(&th->deadline);
	uv_close((uv_handle_t *)&th->deadline, NULL);
	uv_close((uv_handle_t *)&th->wake, NULL);
	/* The hard timer stays until the last handle closes; unref so it
	 * does not keep the loop alive on its own. */
	uv_unref((uv_handle_t *)&th->hard);
}

static void lg_deadline(uv_timer_t *t)
{
	lg_stop_thread(t->data);
}

static void lg_hard(uv_timer_t *t)
{
	struct lg_thread *th = t->data;
	uv_walk(&th->loop, lg_walk_close, NULL);
	uv_stop(&th->loop);
}

static void lg_woken(uv_async_t *a)
{
	lg_stop_thread(a->data);
}

static void *lg_thread_main(void *arg)
{
	struct lg_thread *th = arg;
	uv_run(&th->loop, UV_RUN_DEFAULT);
	/* After a hard stop, let the close callbacks run. */
	uv_run(&th->loop, UV_RUN_NOWAIT);
	return NULL;
}

static int lg_thread_init(struct lg_thread *th, int n, SSL_CTX *ctx)
{
	th->n = n;
	th->ctx = ctx;
	th->clients = calloc((size_t)n, sizeof(*th->clients));
	th->hist = calloc(LG_HIST_FINE + LG_HIST_COARSE, sizeof(uint32_t));
	if (!th->clients || !th->hist || uv_loop_init(&th->loop) < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		th->clients[i].th = th;
		uv_timer_init(&th->loop, &th->clients[i].timer);
		th->clients[i].timer.data = &th->clients[i];
	}
	uv_timer_init(&th->loop, &th->deadline);
	th->deadline.data = th;
	uv_timer_init(&th->loop, &th->hard);
	th->hard.data = th;
	uv_async_init(&th->loop, &th->wake, lg_woken);
	th->wake.data = th;
	double run = lg_o.scen == LG_IMAP_IDLE ? lg_o.secs + lg_o.hold : lg_o.secs;
	uv_timer_start(&th->deadline, lg_deadline, (uint64_t)(run * 1000), 0);
	uv_timer_start(&th->hard, lg_hard, (uint64_t)((run + lg_o.timeout + 5) * 1000), 0);
	int first = n < lg_o.window ? n : lg_o.window;
	for (int i = 0; i < first; i++) {
		th->started++;
		th->setting_up++;
		lg_start(&th->clients[i]);
	}
	return 0;
}

static void lg_on_term(int sig)
{
	atomic_store(&lg_stop_all, true);
	for (int i = 0; i < lg_o.threads; i++)
		uv_async_send(&lg_threads[i].wake);
}

static void lg_usage(void)
{
	fprintf(stderr,
		"usage: gh-loadgen imap-login|pop3-login|imap-fetch|pop3-retr|imap-idle --port P\n"
		"       [--host 127.0.0.1] [--tls] [--sni NAME] [-c CLIENTS] [-d SECONDS] [-t THREADS]\n"
		"       [--user U] [--pass W] [--timeout SECONDS] [--hold SECONDS] [--window N]\n"
		"       [--resume]   (with --tls: resume each client's last session by its ticket)\n"
		"       [--users N]  (log in as user0..userN-1 in turn) [--count K] (K connections in all)\n");
	exit(2);
}

static double lg_num(const char *v, double lo, double hi, const char *what)
{
	char *end;
	double x = v ? strtod(v, &end) : 0;
	if (!v || *end || x < lo || x > hi) {
		fprintf(stderr, "gh-loadgen: %s must be %g..%g\n", what, lo, hi);
		exit(2);
	}
	return x;
}

static void lg_parse(int argc, char **argv)
{
	static const char *const names[] = { "imap-login", "pop3-login", "imap-fetch", "pop3-retr", "imap-idle" };
	if (argc < 2)
		lg_usage();
	int s = -1;
	for (int i = 0; i < 5; i++)
		if (!strcmp(argv[1], names[i]))
			s = i;
	if (s < 0)
		lg_usage();
	lg_o = (struct lg_opts){ .scen = (enum lg_scenario)s, .scen_name = names[s], .host = "127.0.0.1",
				 .clients = 32, .secs = 10, .threads = 1, .user = "user@example.com",
				 .pass = "secret", .timeout = 10, .hold = 5, .window = 64 };
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--tls")) {
			lg_o.tls = true;
			continue;
		}
		if (!strcmp(a, "--resume")) {
			lg_o.resume = true;
			continue;
		}
		if (!v)
			lg_usage();
		i++;
		if (!strcmp(a, "--port"))
			lg_o.port = (int)lg_num(v, 1, 65535, "--port");
		else if (!strcmp(a, "--host"))
			lg_o.host = v;
		else if (!strcmp(a, "--sni"))
			lg_o.sni = v;
		else if (!strcmp(a, "-c"))
			lg_o.clients = (int)lg_num(v, 1, lg_o.scen == LG_IMAP_IDLE ? 10000 : 1000, "-c");
		else if (!strcmp(a, "-d"))
			lg_o.secs = lg_num(v, 0.1, 60, "-d");
		else if (!strcmp(a, "-t"))
			lg_o.threads = (int)lg_num(v, 1, LG_MAX_THREADS, "-t");
		else if (!strcmp(a, "--user") && strlen(v) < 1000)
			lg_o.user = v;
		else if (!strcmp(a, "--pass") && strlen(v) < 1000)
			lg_o.pass = v;
		else if (!strcmp(a, "--timeout"))
			lg_o.timeout = lg_num(v, 0.1, 60, "--timeout");
		else if (!strcmp(a, "--window"))
			lg_o.window = (int)lg_num(v, 1, 1000, "--window");
		else if (!strcmp(a, "--users"))
			lg_o.users = (unsigned)lg_num(v, 1, 10000000, "--users");
		else if (!strcmp(a, "--count"))
			lg_o.count = (uint64_t)lg_num(v, 1, 100000000, "--count");
		else if (!strcmp(a, "--hold"))
			lg_o.hold = lg_num(v, 0, 600, "--hold");
		else
			lg_usage();
	}
	if (!lg_o.port || (lg_o.resume && !lg_o.tls))
		lg_usage();
	if (lg_o.threads > lg_o.clients)
		lg_o.threads = lg_o.clients;
	/* Loopback only: the benchmark must never load anything else. */
	if (uv_ip4_addr(lg_o.host, lg_o.port, &lg_addr) < 0 ||
	    (ntohl(lg_addr.sin_addr.s_addr) >> 24) != 127) {
		fprintf(stderr, "gh-loadgen: --host must be an IPv4 loopback address (127.0.0.0/8)\n");
		exit(2);
	}
}

/* A ticket arrived (TLS 1.3 sends them after the handshake): keep the
   newest for the client's next connection. Returning 1 keeps the reference. */
static int lg_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct lg_client *c = SSL_get_app_data(ssl);

	if (c == NULL)
		return 0;
	if (c->sess)
		SSL_SESSION_free(c->sess);
	c->sess = sess;
	return 1;
}

static double lg_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
	lg_parse(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	SSL_CTX *ctx = NULL;
	if (lg_o.tls) {
		ctx = SSL_CTX_new(TLS_client_method());
		if (!ctx)
			return 1;
		/* Same version against every target. Without --resume a full
		 * handshake per connection (no session cache), the worst case
		 * for a proxy; with it each client offers the newest ticket it
		 * was sent, as a mail client reconnecting does. */
		SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
		SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		if (lg_o.resume) {
			SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
								    SSL_SESS_CACHE_NO_INTERNAL_STORE);
			SSL_CTX_sess_set_new_cb(ctx, lg_new_session);
		} else {
			SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
		}
		SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	}
	int per = lg_o.clients / lg_o.threads, extra = lg_o.clients % lg_o.threads;
	for (int i = 0; i < lg_o.threads; i++)
		if (lg_thread_init(&lg_threads[i], per + (i < extra), ctx) < 0) {
			fprintf(stderr, "gh-loadgen: out of memory\n");
			return 1;
		}
	struct sigaction sa = { .sa_handler = lg_on_term };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	uint64_t t0 = lg_now_ns();
	for (int i = 0; i < lg_o.threads; i++)
		pthread_create(&lg_threads[i].tid, NULL, lg_thread_main, &lg_threads[i]);
	for (int i = 0; i < lg_o.threads; i++)
		pthread_join(lg_threads[i].tid, NULL);
	double elapsed = (double)(lg_now_ns() - t0) / 1e9;
	/* Rates use the load phase only: -d seconds (imap-idle has no rate). */
	double secs = elapsed < lg_o.secs ? elapsed : lg_o.secs;

	uint64_t ops = 0, bytes = 0, errs[LG_E_COUNT] = { 0 }, max_us = 0, err_total = 0;
	uint64_t handshakes = 0, resumed = 0;
	int ready = 0;
	for (int i = 0; i < lg_o.threads; i++) {
		struct lg_thread *th = &lg_threads[i];
		ops += th->ops;
		bytes += th->bytes;
		handshakes += th->handshakes;
		resumed += th->resumed;
		ready += th->ready;
		if (th->max_us > max_us)
			max_us = th->max_us;
		for (int e = 0; e < LG_E_COUNT; e++)
			errs[e] += th->errors[e];
		if (i > 0)
			for (size_t b = 0; b < LG_HIST_FINE + LG_HIST_COARSE; b++)
				lg_threads[0].hist[b] += th->hist[b];
	}
	double p50 = 0, p99 = 0;
	uint64_t seen = 0;
	for (size_t b = 0; b < LG_HIST_FINE + LG_HIST_COARSE && ops; b++) {
		seen += lg_threads[0].hist[b];
		if (!p50 && seen * 2 >= ops)
			p50 = lg_hist_us(b);
		if (!p99 && seen * 100 >= ops * 99) {
			p99 = lg_hist_us(b);
			break;
		}
	}
	for (int e = 0; e < LG_E_COUNT; e++)
		err_total += errs[e];
	printf("{\"scenario\":\"%s\",\"port\":%d,\"tls\":%s,\"clients\":%d,\"threads\":%d,\"secs\":%.3f,"
	       "\"ops\":%" PRIu64 ",\"ops_per_s\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
	       "\"bytes\":%" PRIu64 ",\"mb_per_s\":%.2f,\"ready\":%d,\"errors\":%" PRIu64 ",\"error_kinds\":{",
	       lg_o.scen_name, lg_o.port, lg_o.tls ? "true" : "false", lg_o.clients, lg_o.threads, secs, ops,
	       secs > 0 ? (double)ops / secs : 0, p50 / 1000, p99 / 1000, (double)max_us / 1000, bytes,
	       secs > 0 ? (double)bytes / secs / 1e6 : 0, lg_o.scen == LG_IMAP_IDLE ? atomic_load(&lg_ready_total) : ready,
	       err_total);
	for (int e = 0; e < LG_E_COUNT; e++)
		printf("%s\"%s\":%" PRIu64, e ? "," : "", lg_err_names[e], errs[e]);
	printf("},\"handshakes\":%" PRIu64 ",\"resumed\":%" PRIu64 ",\"cpu_s\":%.3f}\n", handshakes,
	       resumed, lg_cpu_s());
	fflush(stdout);
	if (ctx)
		SSL_CTX_free(ctx);
	return 0;
}

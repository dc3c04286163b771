/*
 * gh-fastmail: a deliberately small and fast mail backend for the benchmark.
 *
 * One libuv loop serves four things on loopback, so that in `make bench` the
 * proxies, not the backend, are the bottleneck:
 *   - IMAP: greeting, CAPABILITY, ID, NOOP, LOGIN (atoms, quoted strings and
 *     {n}/{n+} literals: nginx sends LOGIN with synchronising literals and
 *     waits for "+"), AUTHENTICATE PLAIN (with or without SASL-IR), SELECT /
 *     EXAMINE, FETCH of one in-memory message of configurable size,
 *     IDLE/DONE, LOGOUT.
 *   - POP3: USER/PASS, AUTH PLAIN, XOIP, XCLIENT, CAPA, STAT, LIST, RETR,
 *     NOOP, QUIT.
 *   - the auth_http lookup responder for both proxies: Auth-Status OK,
 *     Auth-Server 127.0.0.1 and Auth-Port chosen by Auth-Protocol, then
 *     close (nginx's auth_http does one request per connection).
 *   - a tiny HTTP/1.1 keep-alive server, the backend of the HTTPS
 *     scenarios: a request whose path starts with /api/ gets a small JSON
 *     200 answer (the "proxied API" row), every other one the same small
 *     text 200 answer.
 * Every credential is accepted: the benchmark measures proxies, not
 * authentication.  Connections come from a free list and the big message is
 * written straight from its one static copy, so the hot path does no
 * malloc and no copy.  Every buffer is fixed: a line longer than the input
 * buffer gets an error and a close.
 *
 *   gh-fastmail [--imap P] [--pop3 P] [--lookup P] [--http P] [--msg-size N]
 *
 * Prints "fastmail ready" on stdout once every listener is bound.
 */
#define _GNU_SOURCE /* memmem */
#include <ctype.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#define FM_IN_SIZE 8192
#define FM_OUT_SIZE 4096
#define FM_TAG_MAX 64
#define FM_MSG_MAX (256u << 20)

enum fm_kind { FM_IMAP, FM_POP3, FM_LOOKUP, FM_HTTP };

/* What the next input line means for the IMAP and POP3 state machines. */
enum fm_state {
	FM_CMD,        /* a new command */
	FM_CONT,       /* the rest of a command after a literal */
	FM_SASL,       /* the client's answer to an AUTHENTICATE / AUTH "+" */
	FM_IDLE        /* inside IDLE, waiting for DONE */
};

struct fm_conn {
	uv_tcp_t tcp;
	uv_write_t wr;
	struct fm_conn *next_free;
	enum fm_kind kind;
	enum fm_state state;
	bool writing;
	bool closing;
	bool close_after_write;
	size_t lit_left;             /* literal bytes still to skip */
	char tag[FM_TAG_MAX + 1];    /* tag of the command being assembled */
	char cmd[16];                /* its name, upper case */
	size_t in_len;
	char in[FM_IN_SIZE];
	size_t out_len;
	char out[FM_OUT_SIZE];
	bool body_pending;           /* the message follows out[] in this write */
	char tail[FM_TAG_MAX + 64];  /* what follows the message */
	size_t tail_len;
};

struct fm_listener {
	uv_tcp_t tcp;
	enum fm_kind kind;
	int port;
};

static uv_loop_t *fm_loop;
static struct fm_conn *fm_free_list;
static char *fm_msg;
static size_t fm_msg_len = 1u << 20;
static int fm_imap_port, fm_pop3_port;
static const char fm_http_answer[] =
	"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world\n";
#define FM_JSON_BODY "{\"ok\":true,\"user\":\"bench@example.com\",\"unread\":3,\"quota\":[1024,4096]}\n"
static const char fm_json_answer[] =
	"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
	"Content-Length: 70\r\n\r\n" FM_JSON_BODY;
_Static_assert(sizeof(FM_JSON_BODY) - 1 == 70, "Content-Length of the JSON answer");

static void fm_process(struct fm_conn *c);

/* The message: header lines and 76-character body lines, CRLF, exactly
 * fm_msg_len bytes; no line starts with '.', so POP3 needs no dot-stuffing. */
static int fm_make_message(size_t n)
{
	static const char head[] = "From: bench@example.com\r\nTo: user@example.com\r\n"
				   "Subject: bench message\r\n\r\n";
	fm_msg = malloc(n);
	if (!fm_msg)
		return -1;
	size_t i = 0;
	for (; i < n && i < sizeof(head) - 1; i++)
		fm_msg[i] = head[i];
	size_t col = 0;
	for (; i < n; i++) {
		if (col == 76) {
			fm_msg[i] = '\r';
			col++;
		} else if (col == 77) {
			fm_msg[i] = '\n';
			col = 0;
		} else {
			fm_msg[i] = (char)('a' + (i % 26));
			col++;
		}
	}
	/* End on CRLF so the POP3 terminator and IMAP ")" follow a full line. */
	if (n >= 2) {
		fm_msg[n - 2] = '\r';
		fm_msg[n - 1] = '\n';
	}
	return 0;
}

static struct fm_conn *fm_conn_get(void)
{
	struct fm_conn *c = fm_free_list;
	if (c)
		fm_free_list = c->next_free;
	else
		c = malloc(sizeof(*c));
	return c;
}

static void fm_closed(uv_handle_t *h)
{
	struct fm_conn *c = h->data;
	c->next_free = fm_free_list;
	fm_free_list = c;
}

static void fm_close(struct fm_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	uv_close((uv_handle_t *)&c->tcp, fm_closed);
}

static void fm_put(struct fm_conn *c, const char *s, size_t n)
{
	/* Callers reserve room first (fm_process keeps 1 KiB free per line);
	 * a reply that still does not fit is cut, never overflows. */
	if (n > FM_OUT_SIZE - c->out_len)
		n = FM_OUT_SIZE - c->out_len;
	memcpy(c->out + c->out_len, s, n);
	c->out_len += n;
}

static void fm_puts(struct fm_conn *c, const char *s)
{
	fm_put(c, s, strlen(s));
}

static void fm_putf(struct fm_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fm_putf(struct fm_conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(c->out + c->out_len, FM_OUT_SIZE - c->out_len, fmt, ap);
	va_end(ap);
	if (n > 0)
		c->out_len += (size_t)n < FM_OUT_SIZE - c->out_len ? (size_t)n : FM_OUT_SIZE - c->out_len - 1;
}

static void fm_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct fm_conn *c = h->data;
	buf->base = c->in + c->in_len;
	buf->len = FM_IN_SIZE - c->in_len;
}

static void fm_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void fm_written(uv_write_t *w, int status)
{
	struct fm_conn *c = w->data;
	c->writing = false;
	c->out_len = 0;
	c->body_pending = false;
	c->tail_len = 0;
	if (status < 0 || c->close_after_write) {
		fm_close(c);
		return;
	}
	if (c->closing)
		return;
	fm_process(c);
	if (!c->writing && !c->closing)
		uv_read_start((uv_stream_t *)&c->tcp, fm_alloc, fm_read);
}

/* Sends what process() queued: out[], then the message and its tail when a
 * FETCH or RETR asked for it.  Reading pauses until the write completes, so
 * at most one write is in flight and out[] is never touched under it. */
static void fm_flush(struct fm_conn *c)
{
	if (c->writing || c->closing || (c->out_len == 0 && !c->body_pending)) {
		if (c->close_after_write && !c->writing)
			fm_close(c);
		return;
	}
	uv_buf_t bufs[3];
	unsigned nb = 0;
	if (c->out_len)
		bufs[nb++] = uv_buf_init(c->out, (unsigned)c->out_len);
	if (c->body_pending) {
		bufs[nb++] = uv_buf_init(fm_msg, (unsigned)fm_msg_len);
		if (c->tail_len)
			bufs[nb++] = uv_buf_init(c->tail, (unsigned)c->tail_len);
	}
	c->wr.data = c;
	if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, bufs, nb, fm_written) < 0) {
		fm_close(c);
		return;
	}
	c->writing = true;
	uv_read_stop((uv_stream_t *)&c->tcp);
}

/* --------------------------------------------------------------- IMAP */

/* Reads the next IMAP word (atom or quoted string) at *p; returns false at
 * the end of the line.  Only used to find the tag and the command name. */
static bool fm_word(const char **p, const char *end, char *out, size_t cap)
{
	const char *s = *p;
	while (s < end && *s == ' ')
		s++;
	if (s >= end)
		return false;
	size_t n = 0;
	while (s < end && *s != ' ') {
		if (n + 1 < cap)
			out[n++] = *s;
		s++;
	}
	out[n] = 0;
	*p = s;
	return true;
}

/* A line ending in {n} or {n+}: sets *n and *sync; false otherwise. */
static bool fm_literal(const char *line, size_t len, size_t *n, bool *sync)
{
	if (len < 3 || line[len - 1] != '}')
		return false;
	size_t i = len - 1;
	*sync = true;
	if (line[i - 1] == '+') {
		*sync = false;
		i--;
	}
	size_t end = i;
	while (i > 0 && isdigit((unsigned char)line[i - 1]))
		i--;
	if (i == end || i == 0 || line[i - 1] != '{' || end - i > 9)
		return false;
	*n = (size_t)strtoul(line + i, NULL, 10);
	return true;
}

static void fm_imap_command(struct fm_conn *c)
{
	const char *t = c->tag, *k = c->cmd;
	if (!strcmp(k, "CAPABILITY")) {
		fm_putf(c, "* CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID IDLE AUTH=PLAIN\r\n"
			   "%s OK Capability completed\r\n", t);
	} else if (!strcmp(k, "ID")) {
		fm_putf(c, "* ID NIL\r\n%s OK ID completed\r\n", t);
	} else if (!strcmp(k, "NOOP")) {
		fm_putf(c, "%s OK NOOP completed\r\n", t);
	} else if (!strcmp(k, "LOGIN") || !strcmp(k, "AUTHENTICATE")) {
		fm_putf(c, "%s OK Logged in\r\n", t);
	} else if (!strcmp(k, "SELECT") || !strcmp(k, "EXAMINE")) {
		fm_putf(c, "* FLAGS (\\Seen)\r\n* 1 EXISTS\r\n* 0 RECENT\r\n"
			   "* OK [UIDVALIDITY 1] UIDs valid\r\n* OK [UIDNEXT 2] next\r\n"
			   "%s OK [READ-WRITE] %s completed\r\n", t, k);
	} else if (!strcmp(k, "FETCH")) {
		fm_putf(c, "* 1 FETCH (BODY[] {%zu}\r\n", fm_msg_len);
		c->body_pending = true;
		int n = snprintf(c->tail, sizeof(c->tail), ")\r\n%s OK Fetch completed\r\n", t);
		c->tail_len = n > 0 ? (size_t)n : 0;
	} else if (!strcmp(k, "IDLE")) {
		fm_puts(c, "+ idling\r\n");
		c->state = FM_IDLE;
	} else if (!strcmp(k, "LOGOUT")) {
		fm_putf(c, "* BYE Logging out\r\n%s OK Logout completed\r\n", t);
		c->close_after_write = true;
	} else {
		fm_putf(c, "%s BAD Unknown command\r\n", t);
	}
}

/* One IMAP line (without CRLF).  A line that ends in a literal announces
 * n bytes that belong to the same command; the command completes on the
 * first line that does not end in one. */
static void fm_imap_line(struct fm_conn *c, const char *line, size_t len)
{
	if (c->state == FM_IDLE) {
		if (len == 4 && !strncasecmp(line, "DONE", 4)) {
			c->state = FM_CMD;
			fm_putf(c, "%s OK Idle completed\r\n", c->tag);
		} else {
			fm_puts(c, "* BAD expected DONE\r\n");
		}
		return;
	}
	if (c->state == FM_SASL) {
		c->state = FM_CMD;
		fm_putf(c, "%s OK Logged in\r\n", c->tag);
		return;
	}
	if (c->state == FM_CMD) {
		const char *p = line, *end = line + len;
		char arg[16];
		if (!fm_word(&p, end, c->tag, sizeof(c->tag)) ||
		    !fm_word(&p, end, c->cmd, sizeof(c->cmd))) {
			fm_puts(c, "* BAD Empty command\r\n");
			return;
		}
		for (char *q = c->cmd; *q; q++)
			*q = (char)toupper((unsigned char)*q);
		if (!strcmp(c->cmd, "UID") && fm_word(&p, end, c->cmd, sizeof(c->cmd))) {
			for (char *q = c->cmd; *q; q++)
				*q = (char)toupper((unsigned char)*q);
		}
		if (!strcmp(c->cmd, "AUTHENTICATE")) {
			/* Without an initial response the client answers a "+". */
			bool ir = fm_word(&p, end, arg, sizeof(arg)) && fm_word(&p, end, arg, sizeof(arg));
			if (!ir) {
				fm_puts(c, "+ \r\n");
				c->state = FM_SASL;
				return;
			}
		}
	}
	size_t n;
	bool sync;
	if (fm_literal(line, len, &n, &sync)) {
		if (sync)
			fm_puts(c, "+ OK\r\n");
		c->lit_left = n;
		c->state = FM_CONT;
		return;
	}
	c->state = FM_CMD;
	fm_imap_command(c);
}

/* --------------------------------------------------------------- POP3 */

static void fm_pop3_line(struct fm_conn *c, const char *line, size_t len)
{
	if (c->state == FM_SASL) {
		c->state = FM_CMD;
		fm_puts(c, "+OK Logged in\r\n");
		return;
	}
	char cmd[16], arg[16];
	const char *p = line, *end = line + len;
	if (!fm_word(&p, end, cmd, sizeof(cmd))) {
		fm_puts(c, "-ERR Empty command\r\n");
		return;
	}
	for (char *q = cmd; *q; q++)
		*q = (char)toupper((unsigned char)*q);
	if (!strcmp(cmd, "USER") || !strcmp(cmd, "XOIP") || !strcmp(cmd, "XCLIENT") ||
	    !strcmp(cmd, "NOOP")) {
		fm_puts(c, "+OK\r\n");
	} else if (!strcmp(cmd, "PASS")) {
		fm_puts(c, "+OK Logged in\r\n");
	} else if (!strcmp(cmd, "AUTH")) {
		bool ir = fm_word(&p, end, arg, sizeof(arg)) && fm_word(&p, end, arg, sizeof(arg));
		if (ir) {
			fm_puts(c, "+OK Logged in\r\n");
		} else {
			fm_puts(c, "+ \r\n");
			c->state = FM_SASL;
		}
	} else if (!strcmp(cmd, "CAPA")) {
		fm_puts(c, "+OK\r\nUSER\r\nSASL PLAIN\r\nPIPELINING\r\n.\r\n");
	} else if (!strcmp(cmd, "STAT")) {
		fm_putf(c, "+OK 1 %zu\r\n", fm_msg_len);
	} else if (!strcmp(cmd, "LIST")) {
		fm_putf(c, "+OK 1 messages\r\n1 %zu\r\n.\r\n", fm_msg_len);
	} else if (!strcmp(cmd, "RETR")) {
		fm_putf(c, "+OK %zu octets\r\n", fm_msg_len);
		c->body_pending = true;
		memcpy(c->tail, ".\r\n", 3);
		c->tail_len = 3;
	} else if (!strcmp(cmd, "QUIT")) {
		fm_puts(c, "+OK Bye\r\n");
		c->close_after_write = true;
	} else {
		fm_puts(c, "-ERR Unknown command\r\n");
	}
}

/* --------------------------------------------------------- HTTP heads */

/* The value of header `name` in a request head, or NULL. */
static const char *fm_header(const char *head, size_t len, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);
	const char *p = head, *end = head + len;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		if ((size_t)(eol - p) > nl && !strncasecmp(p, name, nl) && p[nl] == ':') {
			const char *v = p + nl + 1;
			while (v < eol && *v == ' ')
				v++;
			const char *ve = eol;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
				ve--;
			*vlen = (size_t)(ve - v);
			return v;
		}
		p = eol + 1;
	}
	return NULL;
}

static void fm_lookup_head(struct fm_conn *c, const char *head, size_t len)
{
	size_t vl = 0;
	const char *proto = fm_header(head, len, "Auth-Protocol", &vl);
	int port = fm_imap_port;
	if (proto && vl >= 4 && !strncasecmp(proto, "pop3", 4))
		port = fm_pop3_port;
	/* HTTP/1.0 keep-alive when asked (gatehouse), else close (nginx). */
	const char *conn = fm_header(head, len, "Connection", &vl);
	bool keep = conn && vl == 10 && !strncasecmp(conn, "keep-alive", 10);
	fm_putf(c, "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\n"
		   "Auth-Port: %d\r\nContent-Length: 0\r\nConnection: %s\r\n\r\n", port,
		   keep ? "keep-alive" : "close");
	c->close_after_write = !keep;
}

static void fm_http_head(struct fm_conn *c, const char *head, size_t len)
{
	size_t vl = 0;
	const char *cl = fm_header(head, len, "Content-Length", &vl);
	if (cl)
		c->lit_left = (size_t)strtoul(cl, NULL, 10);
	const char *conn = fm_header(head, len, "Connection", &vl);
	const char *eol = memchr(head, '\n', len);
	bool http10 = eol && eol - head >= 9 && !memcmp(eol - 9, "HTTP/1.0", 8);
	bool keep = conn && vl == 10 && !strncasecmp(conn, "keep-alive", 10);
	if ((conn && vl == 5 && !strncasecmp(conn, "close", 5)) || (http10 && !keep))
		c->close_after_write = true;
	const char *sp = memchr(head, ' ', len);
	if (sp && (size_t)(head + len - sp) > 6 && !memcmp(sp + 1, "/api/", 5))
		fm_put(c, fm_json_answer, sizeof(fm_json_answer) - 1);
	else
		fm_put(c, fm_http_answer, sizeof(fm_http_answer) - 1);
}

/* ------------------------------------------------------------ driving */

static void fm_process(struct fm_conn *c)
{
	size_t off = 0;
	bool need_more = false;
	while (!c->writing && !c->closing && !c->close_after_write && !c->body_pending) {
		if (c->lit_left) {
			size_t k = c->in_len - off < c->lit_left ? c->in_len - off : c->lit_left;
			off += k;
			c->lit_left -= k;
			if (c->lit_left)
				break;
			continue;
		}
		if (FM_OUT_SIZE - c->out_len < 1024) {
			fm_flush(c);
			break;
		}
		const char *p = c->in + off;
		size_t avail = c->in_len - off;
		if (c->kind == FM_LOOKUP || c->kind == FM_HTTP) {
			const char *e = memmem(p, avail, "\r\n\r\n", 4);
			if (!e) {
				need_more = true;
				break;
			}
			size_t hl = (size_t)(e - p) + 4;
			if (c->kind == FM_LOOKUP)
				fm_lookup_head(c, p, hl);
			else
				fm_http_head(c, p, hl);
			off += hl;
			continue;
		}
		const char *nl = memchr(p, '\n', avail);
		if (!nl) {
			need_more = true;
			break;
		}
		size_t ll = (size_t)(nl - p);
		if (ll && p[ll - 1] == '\r')
			ll--;
		off += (size_t)(nl - p) + 1;
		if (c->kind == FM_IMAP)
			fm_imap_line(c, p, ll);
		else
			fm_pop3_line(c, p, ll);
	}
	if (off) {
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
	}
	if (need_more && c->in_len == FM_IN_SIZE) {
		/* A line longer than the whole buffer: refuse it and close. */
		c->out_len = 0;
		fm_puts(c, c->kind == FM_POP3 ? "-ERR line too long\r\n" : "* BAD line too long\r\n");
		c->close_after_write = true;
	}
	fm_flush(c);
}

static void fm_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct fm_conn *c = s->data;
	if (nread < 0) {
		fm_close(c);
		return;
	}
	c->in_len += (size_t)nread;
	fm_process(c);
}

static void fm_accept(uv_stream_t *server, int status)
{
	struct fm_listener *l = server->data;
	if (status < 0)
		return;
	struct fm_conn *c = fm_conn_get();
	if (!c)
		return;
	memset(c, 0, offsetof(struct fm_conn, in));
	c->out_len = 0;
	c->body_pending = false;
	c->tail_len = 0;
	c->kind = l->kind;
	uv_tcp_init(fm_loop, &c->tcp);
	c->tcp.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
		fm_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	if (c->kind == FM_IMAP)
		fm_puts(c, "* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID IDLE AUTH=PLAIN] fastmail ready\r\n");
	else if (c->kind == FM_POP3)
		fm_puts(c, "+OK fastmail POP3 ready\r\n");
	fm_flush(c);
	if (!c->writing && !c->closing)
		uv_read_start((uv_stream_t *)&c->tcp, fm_alloc, fm_read);
}

static int fm_listen(struct fm_listener *l, enum fm_kind kind, int port)
{
	struct sockaddr_in sa;
	l->kind = kind;
	l->port = port;
	uv_ip4_addr("127.0.0.1", port, &sa);
	uv_tcp_init(fm_loop, &l->tcp);
	l->tcp.data = l;
	int rc = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&sa, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&l->tcp, 4096, fm_accept);
	if (rc < 0)
		fprintf(stderr, "gh-fastmail: cannot listen on 127.0.0.1:%d: %s\n", port, uv_strerror(rc));
	return rc;
}

static void fm_on_signal(uv_signal_t *s, int signum)
{
	uv_stop(fm_loop);
}

static int fm_port_arg(const char *v)
{
	long p = v ? strtol(v, NULL, 10) : 0;
	if (p < 1 || p > 65535) {
		fprintf(stderr, "gh-fastmail: bad port %s\n", v ? v : "(none)");
		exit(2);
	}
	return (int)p;
}

int main(int argc, char **argv)
{
	int ports[4] = { 0, 0, 0, 0 };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--imap"))
			ports[FM_IMAP] = fm_port_arg(v), i++;
		else if (!strcmp(a, "--pop3"))
			ports[FM_POP3] = fm_port_arg(v), i++;
		else if (!strcmp(a, "--lookup"))
			ports[FM_LOOKUP] = fm_port_arg(v), i++;
		else if (!strcmp(a, "--http"))
			ports[FM_HTTP] = fm_port_arg(v), i++;
		else if (!strcmp(a, "--msg-size") && v) {
			unsigned long long n = strtoull(v, NULL, 10);
			if (n < 64 || n > FM_MSG_MAX) {
				fprintf(stderr, "gh-fastmail: --msg-size must be 64..%u\n", FM_MSG_MAX);
				return 2;
			}
			fm_msg_len = (size_t)n;
			i++;
		} else {
			fprintf(stderr, "usage: gh-fastmail [--imap P] [--pop3 P] [--lookup P] [--http P] "
					"[--msg-size N]\n");
			return 2;
		}
	}
	fm_imap_port = ports[FM_IMAP];
	fm_pop3_port = ports[FM_POP3];
	if (fm_make_message(fm_msg_len) < 0)
		return 1;
	/* A client that closes under a write must not kill the server. */
	signal(SIGPIPE, SIG_IGN);
	fm_loop = uv_default_loop();
	static struct fm_listener ls[4];
	for (int k = 0; k < 4; k++)
		if (ports[k] && fm_listen(&ls[k], (enum fm_kind)k, ports[k]) < 0)
			return 1;
	uv_signal_t sigterm, sigint;
	uv_signal_init(fm_loop, &sigterm);
	uv_signal_start(&sigterm, fm_on_signal, SIGTERM);
	uv_signal_init(fm_loop, &sigint);
	uv_signal_start(&sigint, fm_on_signal, SIGINT);
	printf("fastmail ready\n");
	fflush(stdout);
	uv_run(fm_loop, UV_RUN_DEFAULT);
	return 0;
}

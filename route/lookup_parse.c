/*
 * route/lookup_parse.c - the pure half of the lookup client: build the
 * nginx-style auth request, and parse the answer's head incrementally with
 * llhttp. No I/O and no allocation, so tests and the fuzzer drive it with
 * any split of the bytes.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gh.h"
#include "lookup.h"

/* Which response header the current value belongs to. */
enum lookup__field {
	LOOKUP__F_OTHER = 0,
	LOOKUP__F_STATUS,
	LOOKUP__F_SERVER,
	LOOKUP__F_PORT,
	LOOKUP__F_USER,
	LOOKUP__F_WAIT,
	LOOKUP__F_CACHE_ALIAS,
};

static const struct {
	const char *name;
	enum lookup__field field;
} lookup__fields[] = {
	{ "Auth-Status", LOOKUP__F_STATUS },
	{ "Auth-Server", LOOKUP__F_SERVER },
	{ "Auth-Port", LOOKUP__F_PORT },
	{ "Auth-User", LOOKUP__F_USER },
	{ "Auth-Wait", LOOKUP__F_WAIT },
	{ "Auth-Cache-Alias", LOOKUP__F_CACHE_ALIAS },
};

/* --- request ---------------------------------------------------------- */

/* A bounded appender: once something does not fit, everything after fails. */
struct lookup_buf {
	char *out;
	size_t cap;
	size_t len;
	bool overflow;
};

static void lookup__put(struct lookup_buf *b, const char *s, size_t n)
{
	if (b->overflow || n > b->cap - b->len) {
		b->overflow = true;
		return;
	}
	memcpy(b->out + b->len, s, n);
	b->len += n;
}

static void lookup__puts(struct lookup_buf *b, const char *s)
{
	lookup__put(b, s, strlen(s));
}

/* Header values we do not escape must not be able to end the line. */
static bool lookup__header_safe(const char *s)
{
	if (s == NULL)
		return false;
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	}
	return true;
}

/* %-escape space, '%', controls and 8-bit bytes, as nginx's zmauth does. */
static void lookup__put_escaped(struct lookup_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p <= 0x20 || *p == '%' || *p >= 0x7f) {
			char e[3] = { '%', hex[*p >> 4], hex[*p & 0x0f] };
			lookup__put(b, e, 3);
		} else {
			lookup__put(b, (const char *)p, 1);
		}
	}
}

int lookup_build_request(char *out, size_t cap, const char *host, const char *path,
			 const struct lookup_query *q, bool send_password)
{
	struct lookup_buf b = { .out = out, .cap = cap };
	char attempt[16];

	if (out == NULL || q == NULL || q->user == NULL)
		return -1;
	if (!lookup__header_safe(host) || !lookup__header_safe(path) || strchr(path, ' ') != NULL
	    || !lookup__header_safe(q->method) || !lookup__header_safe(q->protocol)
	    || !lookup__header_safe(q->client_ip) || !lookup__header_safe(q->proxy_ip)
	    || (q->host != NULL && !lookup__header_safe(q->host)))
		return -1;
	snprintf(attempt, sizeof(attempt), "%d", q->attempt);

	lookup__puts(&b, "GET ");
	lookup__puts(&b, path);
	lookup__puts(&b, " HTTP/1.0\r\nHost: ");
	lookup__puts(&b, host);
	lookup__puts(&b, "\r\nAuth-Method: ");
	lookup__puts(&b, q->method);
	lookup__puts(&b, "\r\nAuth-User: ");
	lookup__put_escaped(&b, q->user);
	lookup__puts(&b, "\r\nAuth-Pass: ");
	if (send_password && q->password != NULL)
		lookup__put_escaped(&b, q->password);
	else
		lookup__puts(&b, "_password_");
	lookup__puts(&b, "\r\nAuth-Protocol: ");
	lookup__puts(&b, q->protocol);
	lookup__puts(&b, "\r\nAuth-Login-Attempt: ");
	lookup__puts(&b, attempt);
	lookup__puts(&b, "\r\nX-Proxy-IP: ");
	lookup__puts(&b, q->proxy_ip);
	lookup__puts(&b, "\r\nClient-IP: ");
	lookup__puts(&b, q->client_ip);
	/* Where nginx's ngx_zm_lookup_create_request puts it. */
	if (q->admin)
		lookup__puts(&b, "\r\nAuth-Zimbra-Admin: True");
	if (q->host != NULL && q->host[0] != '\0') {
		lookup__puts(&b, "\r\nX-Proxy-Host: ");
		lookup__puts(&b, q->host);
	}
	if (q->keep_alive)
		lookup__puts(&b, "\r\nConnection: keep-alive");
	lookup__puts(&b, "\r\n\r\n");

	if (b.overflow || b.len > (size_t)INT32_MAX) {
		/* What was written may hold part of the password. */
		memset(out, 0, cap);
		return -1;
	}
	/* A NUL after the bytes when there is room: handy for logs and tests. */
	if (b.len < cap)
		out[b.len] = '\0';
	return (int)b.len;
}

/* --- response --------------------------------------------------------- */

static struct lookup_parser *lookup__of(llhttp_t *h)
{
	return (struct lookup_parser *)h->data;
}

static bool lookup__is_ws(char ch)
{
	return ch == ' ' || ch == '\t';
}

static int lookup__on_field(llhttp_t *h, const char *at, size_t n)
{
	struct lookup_parser *p = lookup__of(h);

	/* Only short names matter; a longer one is some header we ignore. */
	if (n > sizeof(p->fbuf) - 1 - p->flen) {
		p->field_too_long = true;
		return 0;
	}
	memcpy(p->fbuf + p->flen, at, n);
	p->flen += n;
	return 0;
}

static int lookup__on_field_complete(llhttp_t *h)
{
	struct lookup_parser *p = lookup__of(h);

	p->field = LOOKUP__F_OTHER;
	if (!p->field_too_long) {
		p->fbuf[p->flen] = '\0';
		for (size_t i = 0; i < ARRAY_SIZE(lookup__fields); i++) {
			if (strcasecmp(p->fbuf, lookup__fields[i].name) == 0) {
				p->field = lookup__fields[i].field;
				break;
			}
		}
	}
	p->flen = 0;
	p->field_too_long = false;
	p->vlen = 0;
	p->value_too_long = false;
	return 0;
}

static int lookup__on_value(llhttp_t *h, const char *at, size_t n)
{
	struct lookup_parser *p = lookup__of(h);

	if (p->field == LOOKUP__F_OTHER)
		return 0;
	for (size_t i = 0; i < n; i++) {
		/* Leading blanks are dropped here, so the buffer always starts with
		 * a non-blank byte. */
		if (p->vlen == 0 && lookup__is_ws(at[i]))
			continue;
		if (p->vlen < sizeof(p->vbuf) - 1) {
			p->vbuf[p->vlen++] = at[i];
		} else if (!lookup__is_ws(at[i])) {
			/* A non-blank byte past a full buffer: even trimmed, the
			 * value is longer than we keep. Blanks may be trailing. */
			p->value_too_long = true;
		}
	}
	return 0;
}

/* Decimal lo..hi and nothing else; -1 otherwise. */
static int lookup__number(const char *s, int lo, int hi)
{
	long v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
		if (v > hi)
			return -1;
	}
	return v < lo ? -1 : (int)v;
}

/*
 * Unescape %XX once into out (in place is fine: out never runs ahead of in).
 * Returns false when the result holds a NUL or a control byte: such a name
 * would be unsafe to log, cache or send upstream.
 */
static bool lookup__unescape(const char *in, char *out)
{
	size_t o = 0;

	for (size_t i = 0; in[i] != '\0'; i++) {
		unsigned char ch = (unsigned char)in[i];
		int hi, lo;

		if (ch == '%' && (hi = gh_hexval((unsigned char)in[i + 1])) >= 0
		    && (lo = gh_hexval((unsigned char)in[i + 2])) >= 0) {
			ch = (unsigned char)(hi << 4 | lo);
			i += 2;
		}
		if (ch < 0x20 || ch == 0x7f)
			return false;
		out[o++] = (char)ch;
	}
	out[o] = '\0';
	return true;
}

static int lookup__on_value_complete(llhttp_t *h)
{
	struct lookup_parser *p = lookup__of(h);
	struct lookup_response *r = p->out;
	int field = p->field;

	p->field = LOOKUP__F_OTHER;
	if (field == LOOKUP__F_OTHER)
		return 0;
	if (p->value_too_long)
		return -1;
	while (p->vlen > 0 && lookup__is_ws(p->vbuf[p->vlen - 1]))
		p->vlen--;
	p->vbuf[p->vlen] = '\0';
	const char *v = p->vbuf;

	switch (field) {
	case LOOKUP__F_STATUS:
		/* Two answers in one head would be ambiguous: refuse them. */
		if (r->has_status)
			return -1;
		memcpy(r->status, v, p->vlen + 1);
		r->has_status = true;
		break;
	case LOOKUP__F_SERVER:
		if (r->has_server)
			return -1;
		if (p->vlen >= 2 && v[0] == '[' && v[p->vlen - 1] == ']') {
			memcpy(r->server, v + 1, p->vlen - 2);
			r->server[p->vlen - 2] = '\0';
		} else {
			memcpy(r->server, v, p->vlen + 1);
		}
		r->has_server = true;
		break;
	case LOOKUP__F_PORT:
		r->port = lookup__number(v, 1, 65535);
		break;
	case LOOKUP__F_USER:
		if (r->has_user)
			return -1;
		if (p->vlen > 0 && lookup__unescape(v, r->user)) {
			r->has_user = true;
		} else {
			r->user[0] = '\0';
		}
		break;
	case LOOKUP__F_WAIT:
		r->wait = lookup__number(v, 0, 3600);
		break;
	case LOOKUP__F_CACHE_ALIAS:
		r->cache_alias = strcasecmp(v, "TRUE") == 0;
		break;
	}
	p->vlen = 0;
	return 0;
}

static int lookup__on_headers_complete(llhttp_t *h)
{
	struct lookup_parser *p = lookup__of(h);

	p->out->http_status = llhttp_get_status_code(h);
	p->done = true;
	p->reusable = llhttp_should_keep_alive(h) && (h->flags & F_CONTENT_LENGTH) &&
		      !(h->flags & F_CHUNKED) && h->content_length == 0;
	/* Stop here: the body, if any, means nothing to us. */
	return HPE_PAUSED;
}

void lookup_parser_init(struct lookup_parser *p, struct lookup_response *out)
{
	memset(p, 0, sizeof(*p));
	memset(out, 0, sizeof(*out));
	out->port = -1;
	out->wait = -1;
	p->out = out;

	llhttp_settings_init(&p->settings);
	p->settings.on_header_field = lookup__on_field;
	p->settings.on_header_field_complete = lookup__on_field_complete;
	p->settings.on_header_value = lookup__on_value;
	p->settings.on_header_value_complete = lookup__on_value_complete;
	p->settings.on_headers_complete = lookup__on_headers_complete;
	/* The settings live inside p, so p must not move after this. */
	llhttp_init(&p->http, HTTP_RESPONSE, &p->settings);
	p->http.data = p;
}

int lookup_parser_feed(struct lookup_parser *p, const uint8_t *data, size_t n)
{
	if (p->done)
		return 1;
	if (p->http.error != HPE_OK)
		return -1;

	size_t room = LOOKUP_MAX_RESPONSE - p->total;
	size_t take = n < room ? n : room;
	llhttp_errno_t rc = llhttp_execute(&p->http, (const char *)data, take);
	p->total += take;

	if (p->done) {
		/* Bytes after the head (a body, another answer) make the
		   connection unfit for the next request. */
		if (llhttp_get_error_pos(&p->http) != (const char *)data + take)
			p->reusable = false;
		return 1;
	}
	if (rc != HPE_OK)
		return -1;
	if (take < n) {
		/* Sticky: llhttp returns this error on every later call. */
		p->http.error = HPE_USER;
		p->http.reason = "response head too large";
		return -1;
	}
	return 0;
}

int lookup_parser_eof(struct lookup_parser *p)
{
	if (p->done)
		return 1;
	/* Sticky like any other failure, should bytes still arrive. */
	if (p->http.error == HPE_OK) {
		p->http.error = HPE_USER;
		p->http.reason = "connection closed before the response head was complete";
	}
	return -1;
}

/*
 * libFuzzer target for the request-head path of the HTTP front end, all
 * pure code: protocols/http_parse.c (heads and body framing over llhttp),
 * http_route.c (routing decision, encoded CR/LF), http_head.c (the rewritten
 * request head, the access-log target, redirect host checks).
 *
 * The first byte seeds the split points; the rest is a client byte stream
 * fed the way the front end feeds it (message bytes at the head of a buffer,
 * head then body consumed, parser reset per message), once whole and once
 * in pseudo-random chunks. Both runs must produce the same transcript, and
 * every span the parser returns must lie inside the head it parsed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "http.h"
#include "http_compress.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_BUF 4096

struct fz {
	struct http_parser p;
	struct http_head h;
	struct http_header hdr[16];
	uint8_t buf[FZ_BUF];
	size_t len;
	bool in_body, failed;
	uint64_t hash;
	uint64_t body;   /* body bytes of the current message */
};

static void fz_mix(struct fz *f, uint64_t v)
{
	f->hash = (f->hash ^ v) * 1099511628211ull;
}

static void fz_span_ok(struct http_span s, size_t hl)
{
	if ((size_t)s.off + s.len > hl)
		abort();
}

static void fz_head(struct fz *f, int hl)
{
	static char out[FZ_BUF + 2048], name[256], tgt[512];
	static struct conf c;
	const struct http_head *h = &f->h;

	if ((size_t)hl > f->len)
		abort();
	fz_span_ok(h->uri, (size_t)hl);
	for (int i = 0; i < h->nhdr; i++) {
		fz_span_ok(h->hdr[i].name, (size_t)hl);
		fz_span_ok(h->hdr[i].value, (size_t)hl);
	}
	fz_mix(f, (uint64_t)hl);
	fz_mix(f, h->method);
	fz_mix(f, (uint64_t)h->nhdr);
	enum http_route_kind k = http_route_pick(f->buf, h, name, sizeof(name));
	if (k != HTTP_ROUTE_HASH && (name[0] == '\0' || strlen(name) >= sizeof(name)))
		abort();
	fz_mix(f, k);
	fz_mix(f, http_uri_has_encoded_crlf(f->buf, h->uri));
	struct http_span ou, au;
	if (http_target_origin(f->buf, h->uri, &ou, &au)) {
		if (ou.off < h->uri.off || ou.off + ou.len > h->uri.off + h->uri.len ||
		    au.off < h->uri.off || au.off + au.len > h->uri.off + h->uri.len)
			abort();
		fz_mix(f, ou.len);
	}
	struct http_fwd fw = { .client_ip = "192.0.2.1", .trusted = (hl & 1) != 0, .https = true,
			       .websocket = h->upgrade };
	int n = http_rewrite_request(f->buf, h, &fw, out, sizeof(out));
	if (n > (int)sizeof(out))
		abort();
	if (n > 0 && (n < 4 || memcmp(out + n - 4, "\r\n\r\n", 4) != 0))
		abort();
	fz_mix(f, (uint64_t)n);
	http_log_target(f->buf, h->uri, tgt, sizeof(tgt));
	if (strlen(tgt) >= sizeof(tgt))
		abort();
	c.http.server_name = "mail.example.com";
	const struct http_header *hh = http_header_find(f->buf, h, "Host");
	if (hh != NULL && http_redirect_host_ok(&c, (const char *)f->buf + hh->value.off, hh->value.len,
						name, sizeof(name)) &&
	    strcmp(name, "mail.example.com") != 0)
		abort();
	if (hh != NULL)
		fz_mix(f, http_redirect_host_local((const char *)f->buf + hh->value.off, hh->value.len));
	const struct http_header *ae = http_header_find(f->buf, h, "Accept-Encoding");
	if (ae != NULL) {
		enum http_coding cd = http_coding_pick((const char *)f->buf + ae->value.off,
						       ae->value.len, ~0u);
		if (cd >= HTTP_CODING_N)
			abort();
		fz_mix(f, cd);
	}
	const struct http_header *ct = http_header_find(f->buf, h, "Content-Type");
	if (ct != NULL) {
		static const char *const types[] = { "text/*", "application/json" };
		fz_mix(f, http_compress_type_ok((const char *)f->buf + ct->value.off, ct->value.len,
						types, 2));
	}
	memmove(f->buf, f->buf + hl, f->len - (size_t)hl);
	f->len -= (size_t)hl;
	f->in_body = true;
}

static void fz_step(struct fz *f)
{
	while (!f->failed) {
		if (!f->in_body) {
			if (f->len == 0)
				return;
			int rc = http_parse_head(&f->p, f->buf, f->len);
			if (rc == HTTP_NEED_MORE)
				return;
			if (rc < 0) {
				fz_mix(f, (uint64_t)-rc);
				f->failed = true;
				return;
			}
			fz_head(f, rc);
			continue;
		}
		bool done = false;
		long n = http_parse_body(&f->p, f->buf, f->len, &done);
		if (n < 0) {
			fz_mix(f, 7777);
			f->failed = true;
			return;
		}
		if ((size_t)n > f->len)
			abort();
		f->body += (uint64_t)n;
		memmove(f->buf, f->buf + n, f->len - (size_t)n);
		f->len -= (size_t)n;
		if (!done)
			return;
		fz_mix(f, f->body);
		f->body = 0;
		f->in_body = false;
		http_parser_reset(&f->p);
	}
}

static uint64_t fz_run(struct fz *f, const uint8_t *d, size_t n, unsigned seed, bool whole)
{
	struct http_limits lim = { .max_head = 2048, .max_uri = 512, .max_headers = 16 };
	size_t i = 0;

	memset(f, 0, sizeof(*f));
	f->hash = 14695981039346656037ull;
	f->h.hdr = f->hdr;
	f->h.hdr_cap = 16;
	http_parser_init(&f->p, HTTP_REQUEST, &lim, &f->h);
	while (i < n && !f->failed) {
		size_t k = whole ? n - i : (size_t)(seed = seed * 1103515245u + 12345u) % 97 + 1;
		if (k > n - i)
			k = n - i;
		if (f->len + k > FZ_BUF) {
			/* The front end never buffers more than a head: stop here. */
			break;
		}
		uint8_t *copy = malloc(k);
		if (copy == NULL)
			abort();
		memcpy(copy, d + i, k);
		memcpy(f->buf + f->len, copy, k);
		f->len += k;
		free(copy);
		i += k;
		fz_step(f);
	}
	if (i < n && !f->failed)
		return 0; /* cut short: transcripts are not comparable */
	if (f->in_body && !f->failed)
		fz_mix(f, http_parse_eof(&f->p) ? f->body : 1);
	return f->hash | 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fz a, b;

	if (size < 1)
		return 0;
	unsigned seed = data[0];
	uint64_t x = fz_run(&a, data + 1, size - 1, seed, true);
	uint64_t y = fz_run(&b, data + 1, size - 1, seed, false);
	if (x != 0 && y != 0 && x != y)
		abort();
	return 0;
}

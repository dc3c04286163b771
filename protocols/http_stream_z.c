/*
 * http_stream_z.c - compressing a response body the backend sent plain
 * (http.compression): the coding the client takes, chosen with its
 * request; the decision on the response head; then each backend read's
 * body bytes go through the exchange's compressor into chunks for the
 * client.
 *
 * Bounds. At most http.compression.max_active compressors run at once per
 * worker (each holds what http_compressor_held says: up to ~260 KiB for
 * gzip, ~100 KiB for br quality 1); a response beyond that goes out
 * uncompressed. Output is made from one backend read at a time (at most
 * its size plus the compressor's own buffered bytes, written as it comes),
 * and the next read is handled only once the client's queue is under
 * limits.relay_high_water, as for plain bodies: the client's pace drives
 * the compressor. When a read is all handled and the response is not over,
 * what was taken is flushed, so a streamed response is not held back.
 */
#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "http_compress.h"
#include "http_int.h"
#include "metrics.h"

/* Compressors running on this thread (a worker is a thread). */
static _Thread_local int http__z_active;

/* Room for one chunk of compressed output, with its size line. */
#define HTTP__Z_OUT 16384
#define HTTP__Z_PRE 10

int http__z_running(void)
{
	return http__z_active;
}

void http__z_accept(struct http_exchange *x)
{
	const struct session *s = x->s;
	const struct conf *c = s->conf;
	const struct http_head *h = &x->reqh;
	unsigned allowed = (c->http.compression.gzip ? HTTP_CODING_BIT(HTTP_CODING_GZIP) : 0) |
			   (c->http.compression.br ? HTTP_CODING_BIT(HTTP_CODING_BR) : 0);

	x->z_coding = HTTP_CODING_IDENTITY;
	/* HTTP/1.0 clients know no chunked framing: they get the body plain
	   rather than a close-delimited one (keep-alive kept). */
	if (allowed == 0 || x->is_head || x->websocket || h->major != 1 || h->minor == 0)
		return;
	const struct http_header *ae = http_header_find(http__src(x), h, "Accept-Encoding");
	if (ae != NULL)
		x->z_coding = http_coding_pick((const char *)http__src(x) + ae->value.off, ae->value.len,
					       allowed);
}

bool http__z_start(struct http_exchange *x, const uint8_t *base, struct http_resp_edit *e)
{
	const struct conf *c = x->s->conf;
	uint64_t length;

	if (x->z_coding == HTTP_CODING_IDENTITY || x->z != NULL ||
	    !http_compress_response_ok(base, &x->resph, c, &length))
		return false;
	if (http__z_active >= c->http.compression.max_active) {
		session_log(x->s, LOG_DEBUG, "%s %s: %d compressors running, sent uncompressed",
			    x->method, x->path, http__z_active);
		return false;
	}
	int level = x->z_coding == HTTP_CODING_GZIP ? c->http.compression.gzip_level
						    : c->http.compression.br_level;
	x->z = http_compressor_new(x->z_coding, level, length);
	if (x->z == NULL)
		return false; /* no memory for it: plain is still an answer */
	http__z_active++;
	e->content_encoding = http_coding_names[x->z_coding];
	return true;
}

void http__z_end(struct http_exchange *x)
{
	if (x->z == NULL)
		return;
	http_compressor_free(x->z);
	x->z = NULL;
	http__z_active--;
}

/* Write out[HTTP__Z_PRE .. HTTP__Z_PRE + n) as one chunk. */
static void http__z_chunk(struct http_exchange *x, uint8_t *out, size_t n)
{
	char line[HTTP__Z_PRE + 1];
	int ll = snprintf(line, sizeof(line), "%zx\r\n", n);
	uint8_t *start = out + HTTP__Z_PRE - ll;

	memcpy(start, line, (size_t)ll);
	memcpy(out + HTTP__Z_PRE + n, "\r\n", 2);
	x->bytes_sent += (uint64_t)ll + n + 2;
	http__out(x, start, (size_t)ll + n + 2);
}

/* Push in[0..len) through x's compressor (mode 0: take it, 1: flush, 2:
   finish), writing what comes out. False on a library error. */
static bool http__z_push(struct http_exchange *x, const uint8_t *in, size_t len, int mode)
{
	uint8_t out[HTTP__Z_PRE + HTTP__Z_OUT + 2];
	size_t cap = HTTP__Z_OUT;

	for (;;) {
		size_t used = 0, olen = 0;
		int rc = mode == 1 ? http_compressor_flush(x->z, out + HTTP__Z_PRE, cap, &olen)
				   : http_compressor_run(x->z, in, len, &used, out + HTTP__Z_PRE, cap,
							 &olen, mode == 2);
		if (rc < 0)
			return false;
		if (used > 0) { /* in is NULL when flushing or finishing */
			in += used;
			len -= used;
		}
		if (olen > 0) {
			http__z_chunk(x, out, olen);
			if (x->s->closed)
				return true;
		}
		if (mode == 2 && rc == 1) {
			x->bytes_sent += 5;
			http__out(x, "0\r\n\r\n", 5);
			return true;
		}
		if (mode == 1 && rc == 1)
			return true;
		/* All taken, and the last call had room to spare: nothing waits. */
		if (mode == 0 && len == 0 && olen < cap)
			return true;
	}
}

bool http__z_body_step(struct http_exchange *x)
{
	struct session *s = x->s;
	struct pbuf *b = x->in;
	bool done = false;
	size_t dlen = 0;

	long n = http_parse_body_data(&x->resp, b->data + b->off, b->len, &done, &dlen);
	if (n < 0) {
		http__abort(x, "malformed response body from backend");
		return false;
	}
	metrics_relayed(false, (size_t)n);
	if (!http__z_push(x, b->data + b->off, dlen, 0)) {
		http__abort(x, "compressing the response failed");
		return false;
	}
	if (s->closed)
		return false;
	http__in_consume(x, (size_t)n);
	if (done) {
		x->resp_done = true;
		return true;
	}
	/* The backend pauses here: what it sent so far goes out. */
	if (x->in == NULL && !http__z_push(x, NULL, 0, 1)) {
		http__abort(x, "compressing the response failed");
		return false;
	}
	if (s->closed)
		return false;
	if (n > 0)
		http__deadline(x, x->read_timeout);
	return true;
}

bool http__z_finish(struct http_exchange *x)
{
	if (x->z == NULL)
		return true;
	bool ok = http__z_push(x, NULL, 0, 2);
	/* What one compressor costs (bench/compress_cpu.py reads it). */
	session_log(x->s, LOG_DEBUG, "%s %s: %s %llu -> %llu bytes, compressor held %zu bytes",
		    x->method, x->path, http_coding_names[x->z_coding],
		    (unsigned long long)x->resp_bytes_in, (unsigned long long)x->bytes_sent,
		    http_compressor_held(x->z));
	http__z_end(x);
	if (!ok)
		http__abort(x, "compressing the response failed");
	return ok && !x->s->closed;
}

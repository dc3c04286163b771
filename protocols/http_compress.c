/*
 * http_compress.c - gzip (zlib) and br (libbrotli) for response bodies,
 * and the choice of coding from Accept-Encoding. No I/O.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <brotli/encode.h>
#include <zlib.h>

#include "gh.h"
#include "http_compress.h"

const char *const http_coding_names[HTTP_CODING_N] = { "identity", "gzip", "br" };
GH_NAMES_CHECK(http_coding_names, HTTP_CODING_N);

/* ---- Accept-Encoding ---- */

static bool http_compress__ows(char c)
{
	return c == ' ' || c == '\t';
}

/* A qvalue (RFC 9110 §12.4.2: "0", "0.5", "1.000") as thousandths, or -1. */
static int http_compress__qvalue(const char *p, size_t n)
{
	if (n == 0 || (p[0] != '0' && p[0] != '1'))
		return -1;
	int q = (p[0] - '0') * 1000;
	if (n == 1)
		return q;
	if (p[1] != '.' || n > 5)
		return -1;
	int scale = 100;
	for (size_t i = 2; i < n; i++, scale /= 10) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		q += (p[i] - '0') * scale;
	}
	return q > 1000 ? -1 : q;
}

/* The q of one list member "coding *( OWS ; OWS name=value )" (its
   coding name already taken: p starts after it), or -1 when malformed. */
static int http_compress__member_q(const char *p, size_t n)
{
	int q = 1000;
	size_t i = 0;

	for (;;) {
		while (i < n && http_compress__ows(p[i]))
			i++;
		if (i == n)
			return q;
		if (p[i] != ';')
			return -1;
		i++;
		while (i < n && http_compress__ows(p[i]))
			i++;
		size_t end = i;
		while (end < n && p[end] != ';' && !http_compress__ows(p[end]))
			end++;
		if (end - i >= 2 && (p[i] == 'q' || p[i] == 'Q') && p[i + 1] == '=') {
			if ((q = http_compress__qvalue(p + i + 2, end - i - 2)) < 0)
				return -1;
		}
		i = end;
	}
}

enum http_coding http_coding_pick(const char *v, size_t n, unsigned allowed)
{
	/* q in thousandths per coding as the client ranked it; -1: not named. */
	int q[HTTP_CODING_N] = { -1, -1, -1 };
	int star = -1;
	size_t i = 0;

	if (v == NULL)
		return HTTP_CODING_IDENTITY;
	while (i < n) {
		size_t end = i;
		while (end < n && v[end] != ',')
			end++;
		size_t a = i;
		while (a < end && http_compress__ows(v[a]))
			a++;
		size_t t = a;
		while (t < end && v[t] != ';' && !http_compress__ows(v[t]))
			t++;
		if (t > a) {
			int mq = http_compress__member_q(v + t, end - t);
			if (mq < 0)
				return HTTP_CODING_IDENTITY;
			if (t - a == 1 && v[a] == '*')
				star = mq;
			for (int c = 0; c < HTTP_CODING_N; c++) {
				const char *name = http_coding_names[c];
				if (strlen(name) == t - a && strncasecmp(v + a, name, t - a) == 0)
					q[c] = mq;
			}
			/* "x-gzip" is gzip (RFC 9110 §8.4.1.3). */
			if (t - a == 6 && strncasecmp(v + a, "x-gzip", 6) == 0)
				q[HTTP_CODING_GZIP] = mq;
		}
		i = end + 1;
	}
	enum http_coding best = HTTP_CODING_IDENTITY;
	int best_q = 0;
	for (int c = HTTP_CODING_BR; c > HTTP_CODING_IDENTITY; c--) {
		int cq = q[c] >= 0 ? q[c] : star;
		if ((allowed & HTTP_CODING_BIT(c)) && cq > best_q) {
			best = (enum http_coding)c;
			best_q = cq;
		}
	}
	return best;
}

bool http_compress_type_ok(const char *ct, size_t n, const char *const *types, int ntypes)
{
	size_t len = 0;

	while (len < n && ct[len] != ';' && !http_compress__ows(ct[len]))
		len++;
	const char *slash = memchr(ct, '/', len);
	for (int i = 0; i < ntypes; i++) {
		const char *t = types[i];
		size_t tl = strlen(t);
		if (tl == len && strncasecmp(ct, t, len) == 0)
			return true;
		/* A type ending in "/" and a star: every subtype. */
		if (slash != NULL && tl >= 2 && t[tl - 1] == '*' && t[tl - 2] == '/' &&
		    tl - 1 == (size_t)(slash - ct) + 1 && strncasecmp(ct, t, tl - 1) == 0)
			return true;
	}
	return false;
}

/* ---- compressors ---- */

struct http_compressor {
	enum http_coding coding;
	size_t held;            /* bytes the library holds (counted below) */
	bool finished;
	union {
		z_stream z;
		BrotliEncoderState *br;
	};
};

/* Each block is prefixed with its size so frees can be counted. */
#define HTTP_COMPRESS__HDR 16

static void *http_compress__alloc(struct http_compressor *zc, size_t n)
{
	uint8_t *p = malloc(n + HTTP_COMPRESS__HDR);

	if (p == NULL)
		return NULL;
	memcpy(p, &n, sizeof(n));
	zc->held += n;
	return p + HTTP_COMPRESS__HDR;
}

static void http_compress__free(struct http_compressor *zc, void *ptr)
{
	if (ptr == NULL)
		return;
	uint8_t *p = (uint8_t *)ptr - HTTP_COMPRESS__HDR;
	size_t n;
	memcpy(&n, p, sizeof(n));
	zc->held -= n;
	free(p);
}

static voidpf http_compress__zalloc(voidpf opaque, uInt items, uInt size)
{
	if (size != 0 && items > SIZE_MAX / size)
		return NULL;
	return http_compress__alloc(opaque, (size_t)items * size);
}

static void http_compress__zfree(voidpf opaque, voidpf ptr)
{
	http_compress__free(opaque, ptr);
}

static void *http_compress__balloc(void *opaque, size_t n)
{
	return http_compress__alloc(opaque, n);
}

static void http_compress__bfree(void *opaque, void *ptr)
{
	http_compress__free(opaque, ptr);
}

/* log2 of the window a body of length bytes needs, in [lo, hi]. */
static int http_compress__window(uint64_t length, int lo, int hi)
{
	int w = lo;

	if (length == 0)
		return hi;
	while (w < hi && ((uint64_t)1 << w) < length)
		w++;
	return w;
}

static bool http_compress__gzip_init(struct http_compressor *zc, int level, uint64_t length)
{
	int w = http_compress__window(length, 9, 15);
	/* memLevel follows the window as nginx does: 8 for 32 KiB. */
	int mem = w - 7 < 1 ? 1 : w - 7;

	zc->z.zalloc = http_compress__zalloc;
	zc->z.zfree = http_compress__zfree;
	zc->z.opaque = zc;
	level = level < 1 ? 1 : level > 9 ? 9 : level;
	/* windowBits + 16: a gzip header and trailer around the deflate data. */
	return deflateInit2(&zc->z, level, Z_DEFLATED, w + 16, mem, Z_DEFAULT_STRATEGY) == Z_OK;
}

static bool http_compress__br_init(struct http_compressor *zc, int level, uint64_t length)
{
	zc->br = BrotliEncoderCreateInstance(http_compress__balloc, http_compress__bfree, zc);
	if (zc->br == NULL)
		return false;
	level = level < 0 ? 0 : level > 3 ? 3 : level;
	BrotliEncoderSetParameter(zc->br, BROTLI_PARAM_QUALITY, (uint32_t)level);
	BrotliEncoderSetParameter(zc->br, BROTLI_PARAM_LGWIN,
				  (uint32_t)http_compress__window(length, BROTLI_MIN_WINDOW_BITS, 16));
	if (length != 0 && length <= UINT32_MAX)
		BrotliEncoderSetParameter(zc->br, BROTLI_PARAM_SIZE_HINT, (uint32_t)length);
	return true;
}

struct http_compressor *http_compressor_new(enum http_coding coding, int level, uint64_t length)
{
	struct http_compressor *zc;

	if (coding != HTTP_CODING_GZIP && coding != HTTP_CODING_BR)
		return NULL;
	if ((zc = calloc(1, sizeof(*zc))) == NULL)
		return NULL;
	zc->coding = coding;
	bool ok = coding == HTTP_CODING_GZIP ? http_compress__gzip_init(zc, level, length)
					     : http_compress__br_init(zc, level, length);
	if (!ok) {
		/* deflateInit2 frees what it took; a NULL br took nothing. */
		free(zc);
		return NULL;
	}
	return zc;
}

size_t http_compressor_held(const struct http_compressor *z)
{
	return z->held;
}

static int http_compress__gzip_run(struct http_compressor *zc, const uint8_t *in, size_t in_len,
				   size_t *in_used, uint8_t *out, size_t out_cap, size_t *out_len,
				   bool finish)
{
	/* uInt is 32 bits: hand over at most 1 GiB a call. */
	uInt ilen = in_len > (1u << 30) ? 1u << 30 : (uInt)in_len;
	uInt olen = out_cap > (1u << 30) ? 1u << 30 : (uInt)out_cap;
	bool all_in = ilen == in_len;

	zc->z.next_in = (Bytef *)(uintptr_t)in;
	zc->z.avail_in = ilen;
	zc->z.next_out = out;
	zc->z.avail_out = olen;
	int rc = deflate(&zc->z, finish && all_in ? Z_FINISH : Z_NO_FLUSH);
	*in_used = ilen - zc->z.avail_in;
	*out_len = olen - zc->z.avail_out;
	if (rc == Z_STREAM_END)
		return 1;
	/* Z_BUF_ERROR: no progress was possible (no room or nothing to do). */
	return rc == Z_OK || rc == Z_BUF_ERROR ? 0 : -1;
}

static int http_compress__br_run(struct http_compressor *zc, const uint8_t *in, size_t in_len,
				 size_t *in_used, uint8_t *out, size_t out_cap, size_t *out_len,
				 bool finish)
{
	const uint8_t *next_in = in;
	size_t avail_in = in_len;
	uint8_t *next_out = out;
	size_t avail_out = out_cap;

	if (!BrotliEncoderCompressStream(zc->br, finish ? BROTLI_OPERATION_FINISH
						       : BROTLI_OPERATION_PROCESS,
					 &avail_in, &next_in, &avail_out, &next_out, NULL))
		return -1;
	*in_used = in_len - avail_in;
	*out_len = out_cap - avail_out;
	return finish && BrotliEncoderIsFinished(zc->br) ? 1 : 0;
}

int http_compressor_run(struct http_compressor *z, const uint8_t *in, size_t in_len,
			size_t *in_used, uint8_t *out, size_t out_cap, size_t *out_len, bool finish)
{
	*in_used = 0;
	*out_len = 0;
	if (z->finished)
		return 1;
	int rc = z->coding == HTTP_CODING_GZIP
			 ? http_compress__gzip_run(z, in, in_len, in_used, out, out_cap, out_len, finish)
			 : http_compress__br_run(z, in, in_len, in_used, out, out_cap, out_len, finish);
	if (rc == 1)
		z->finished = true;
	return rc;
}

int http_compressor_flush(struct http_compressor *z, uint8_t *out, size_t out_cap,
			  size_t *out_len)
{
	*out_len = 0;
	if (z->finished)
		return 1;
	if (out_cap < HTTP_COMPRESS_FLUSH_MIN)
		return -1;
	uInt olen = out_cap > (1u << 30) ? 1u << 30 : (uInt)out_cap;
	if (z->coding == HTTP_CODING_GZIP) {
		z->z.next_in = NULL;
		z->z.avail_in = 0;
		z->z.next_out = out;
		z->z.avail_out = olen;
		int rc = deflate(&z->z, Z_SYNC_FLUSH);
		*out_len = olen - z->z.avail_out;
		if (rc != Z_OK && rc != Z_BUF_ERROR)
			return -1;
		/* A full buffer may leave more to come (zlib's rule). */
		return z->z.avail_out > 0 ? 1 : 0;
	}
	const uint8_t *next_in = NULL;
	size_t avail_in = 0, avail_out = olen;
	uint8_t *next_out = out;
	if (!BrotliEncoderCompressStream(z->br, BROTLI_OPERATION_FLUSH, &avail_in, &next_in,
					 &avail_out, &next_out, NULL))
		return -1;
	*out_len = olen - avail_out;
	return BrotliEncoderHasMoreOutput(z->br) ? 0 : 1;
}

void http_compressor_free(struct http_compressor *z)
{
	if (z == NULL)
		return;
	if (z->coding == HTTP_CODING_GZIP)
		deflateEnd(&z->z);
	else
		BrotliEncoderDestroyInstance(z->br);
	GH_BUG_ON(z->held != 0);
	free(z);
}

/*
 * http_compress.h - compression of response bodies the backend did not
 * compress (gzip with zlib, br with libbrotli), as a streaming engine with
 * no I/O: the HTTP front end decides from the request's Accept-Encoding and
 * the response's headers, then pushes body bytes through a compressor in
 * bounded pieces.
 *
 * Memory. A compressor's window follows the body's length when the
 * backend announced it (a 3 KB page gets a 4 KB window, not 32 KB): at most
 * 32 KiB for gzip (memLevel lowered with it) and 64 KiB for br. Its
 * allocations go through counting allocators, so http_compressor_held()
 * is what it really holds. Measured (test_http_compress.c), for a 1 MiB
 * body of unknown length / a 3 KB one announced: gzip any level 262 / 38
 * KiB; br quality 1 103 / 22 KiB, 2..3 663 / 307 KiB, 4..8 1.6 / 0.56 MiB,
 * 9 2.3 / 1.3 MiB. So br's quality is clamped to 0..3 here (the higher
 * ones are for files compressed ahead, the .br siblings static files
 * serve); gzip's level changes the time, not the memory. The caller bounds
 * how many run at once.
 */
#ifndef GATEHOUSE_HTTP_COMPRESS_H
#define GATEHOUSE_HTTP_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum http_coding {
	HTTP_CODING_IDENTITY = 0,
	HTTP_CODING_GZIP,
	HTTP_CODING_BR,
	HTTP_CODING_N
};

/* "identity", "gzip", "br": the Content-Encoding token. */
extern const char *const http_coding_names[HTTP_CODING_N];

/* Bits of the codings an operator allows, for http_coding_pick. */
#define HTTP_CODING_BIT(c) (1u << (c))

/*
 * The coding to answer with for the Accept-Encoding value v[0..n) (RFC
 * 9110 §12.5.3): the allowed coding the client ranks highest (q-values;
 * "*" stands for any coding it did not name; q=0 refuses), br before gzip
 * when ranked the same. IDENTITY when the client allows none of them, the
 * header is absent (v NULL) or malformed.
 */
enum http_coding http_coding_pick(const char *v, size_t n, unsigned allowed);

/*
 * Is a response with Content-Type ct[0..n) (parameters ignored, no case)
 * worth compressing: its media type is one of types[0..ntypes) (a type
 * whose subtype is a star covers all of its subtypes)?
 */
bool http_compress_type_ok(const char *ct, size_t n, const char *const *types, int ntypes);

struct http_compressor;

/*
 * A compressor for coding (GZIP or BR) at level (gzip 1..9, br 0..3;
 * clamped), sized for a body of length bytes (0: unknown). NULL when out
 * of memory or coding is IDENTITY.
 */
struct http_compressor *http_compressor_new(enum http_coding coding, int level, uint64_t length);

/* Bytes the compressor's library state holds now (counted allocations). */
size_t http_compressor_held(const struct http_compressor *z);

/*
 * Push in[0..in_len) and take compressed bytes into out[0..out_cap).
 * *in_used and *out_len say how much was taken and written. With finish
 * set (the body is complete; in_len may be 0) the stream is closed once
 * all of in is taken. Returns 1 when the stream is complete and every
 * byte written, 0 when called again with more room (or more input) makes
 * progress, -1 on a library error. Never holds more than its own state:
 * out_cap bounds what one call produces.
 */
int http_compressor_run(struct http_compressor *z, const uint8_t *in, size_t in_len,
			size_t *in_used, uint8_t *out, size_t out_cap, size_t *out_len, bool finish);

/*
 * Emit everything taken so far (gzip Z_SYNC_FLUSH, br FLUSH) into
 * out[0..out_cap), *out_len written: a streamed response's pieces reach
 * the client when the backend pauses. out_cap must be at least
 * HTTP_COMPRESS_FLUSH_MIN (zlib repeats its flush marker forever into
 * rooms of 6 bytes or less). Returns 1 when all is out, 0 when called
 * again with more room gives more, -1 on a library error or a room too small.
 */
#define HTTP_COMPRESS_FLUSH_MIN 16
int http_compressor_flush(struct http_compressor *z, uint8_t *out, size_t out_cap,
			  size_t *out_len);

void http_compressor_free(struct http_compressor *z);

#endif

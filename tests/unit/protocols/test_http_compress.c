/*
 * Response compression: the coding picked from Accept-Encoding, the types
 * worth compressing, and gzip/br streams that real decoders (zlib's
 * inflate, libbrotli's decoder) turn back into the body, whatever the
 * pieces the body and the room arrive in.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include <brotli/decode.h>
#include <zlib.h>

#include "gh.h"
#include "http_compress.h"

static const unsigned both = HTTP_CODING_BIT(HTTP_CODING_GZIP) | HTTP_CODING_BIT(HTTP_CODING_BR);

static enum http_coding pick(const char *v, unsigned allowed)
{
	return http_coding_pick(v, v ? strlen(v) : 0, allowed);
}

Test(http_compress, accept_encoding_ranks_codings)
{
	cr_expect_eq(pick(NULL, both), HTTP_CODING_IDENTITY);
	cr_expect_eq(pick("", both), HTTP_CODING_IDENTITY);
	cr_expect_eq(pick("gzip", both), HTTP_CODING_GZIP);
	cr_expect_eq(pick("gzip, deflate, br", both), HTTP_CODING_BR);
	cr_expect_eq(pick("gzip, deflate, br, zstd", HTTP_CODING_BIT(HTTP_CODING_GZIP)),
		     HTTP_CODING_GZIP);
	cr_expect_eq(pick("br;q=0.5, gzip;q=0.8", both), HTTP_CODING_GZIP);
	cr_expect_eq(pick("br ; q=1.0 ,gzip;q=0.999", both), HTTP_CODING_BR);
	cr_expect_eq(pick("GZIP", both), HTTP_CODING_GZIP);
	cr_expect_eq(pick("x-gzip", both), HTTP_CODING_GZIP);
	cr_expect_eq(pick("*", both), HTTP_CODING_BR);
	cr_expect_eq(pick("*;q=0.5, br;q=0", both), HTTP_CODING_GZIP);
	cr_expect_eq(pick("gzip;q=0", both), HTTP_CODING_IDENTITY);
	cr_expect_eq(pick("identity", both), HTTP_CODING_IDENTITY);
	cr_expect_eq(pick("deflate", both), HTTP_CODING_IDENTITY);
	cr_expect_eq(pick("br", 0), HTTP_CODING_IDENTITY);
	/* Malformed q-values: nothing is trusted. */
	cr_expect_eq(pick("gzip;q=2", both), HTTP_CODING_IDENTITY);
	cr_expect_eq(pick("gzip;q=0.12345", both), HTTP_CODING_IDENTITY);
	cr_expect_eq(pick("gzip;q=", both), HTTP_CODING_IDENTITY);
	cr_expect_eq(pick("gzip;q=x", both), HTTP_CODING_IDENTITY);
	/* Other parameters and empty members are ignored. */
	cr_expect_eq(pick(",, gzip;level=1 ,", both), HTTP_CODING_GZIP);
}

Test(http_compress, types_worth_compressing)
{
	const char *types[] = { "text/*", "application/json", "application/javascript",
				"image/svg+xml" };
	const int n = (int)ARRAY_SIZE(types);
	const char *yes[] = { "text/html", "text/html; charset=utf-8", "TEXT/CSS", "text/plain;x=y",
			      "application/json", "Application/JSON; charset=utf-8",
			      "image/svg+xml" };
	const char *no[] = { "", "text", "texts/html", "application/jsonx", "image/png",
			     "application/octet-stream", "application/json-seq", "tex/html" };

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
		cr_expect(http_compress_type_ok(yes[i], strlen(yes[i]), types, n), "%s", yes[i]);
	for (size_t i = 0; i < ARRAY_SIZE(no); i++)
		cr_expect(!http_compress_type_ok(no[i], strlen(no[i]), types, n), "%s", no[i]);
}

/* A body with some repetition, as pages have. */
static uint8_t *body_of(size_t n)
{
	uint8_t *b = malloc(n);
	uint32_t x = 12345;

	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		b[i] = (i % 97 < 60) ? (uint8_t)("<div class=\"msg\">hello</div>\n"[i % 29])
				     : (uint8_t)('a' + (x >> 16) % 26);
	}
	return b;
}

/* Compress body through pieces of in_step bytes into rooms of out_step
   bytes; returns the stream (length in *len). */
static uint8_t *squeeze(enum http_coding c, int level, const uint8_t *body, size_t n,
			bool announce, size_t in_step, size_t out_step, size_t *len, size_t *peak)
{
	struct http_compressor *z = http_compressor_new(c, level, announce ? n : 0);
	size_t cap = n + 1024, olen = 0, off = 0;
	uint8_t *out = malloc(cap);
	int rc = 0;

	cr_assert_not_null(z);
	*peak = 0;
	for (int guard = 0; rc == 0; guard++) {
		cr_assert(guard < 10000000, "no progress");
		size_t take = n - off < in_step ? n - off : in_step;
		size_t room = cap - olen < out_step ? cap - olen : out_step;
		size_t used, wrote;
		rc = http_compressor_run(z, body + off, take, &used, out + olen, room, &wrote,
					 off + take == n);
		cr_assert_geq(rc, 0);
		cr_assert_leq(used, take);
		cr_assert_leq(wrote, room);
		off += used;
		olen += wrote;
		if (http_compressor_held(z) > *peak)
			*peak = http_compressor_held(z);
		cr_assert_lt(olen, cap, "output larger than the input plus slack");
	}
	cr_assert_eq(off, n);
	/* Finished streams stay finished. */
	size_t used, wrote;
	cr_assert_eq(http_compressor_run(z, NULL, 0, &used, out, 1, &wrote, true), 1);
	cr_assert_eq(wrote, 0);
	http_compressor_free(z);
	*len = olen;
	return out;
}

static void gunzip_check(const uint8_t *z, size_t zlen, const uint8_t *body, size_t n)
{
	uint8_t *out = malloc(n + 1);
	z_stream s = { 0 };

	cr_assert_eq(inflateInit2(&s, 15 + 16), Z_OK);
	s.next_in = (Bytef *)(uintptr_t)z;
	s.avail_in = (uInt)zlen;
	s.next_out = out;
	s.avail_out = (uInt)n + 1;
	cr_assert_eq(inflate(&s, Z_FINISH), Z_STREAM_END);
	cr_assert_eq(s.total_out, n);
	cr_assert_eq(s.avail_in, 0, "bytes after the gzip trailer");
	cr_assert(memcmp(out, body, n) == 0);
	inflateEnd(&s);
	free(out);
}

static void unbrotli_check(const uint8_t *z, size_t zlen, const uint8_t *body, size_t n)
{
	uint8_t *out = malloc(n + 1);
	size_t outlen = n + 1;

	cr_assert_eq(BrotliDecoderDecompress(zlen, z, &outlen, out), BROTLI_DECODER_RESULT_SUCCESS);
	cr_assert_eq(outlen, n);
	cr_assert(memcmp(out, body, n) == 0);
	free(out);
}

static void round_trip(enum http_coding c, int level, size_t n, bool announce, size_t in_step,
		       size_t out_step)
{
	uint8_t *body = body_of(n);
	size_t zlen, peak;
	uint8_t *z = squeeze(c, level, body, n, announce, in_step, out_step, &zlen, &peak);

	if (c == HTTP_CODING_GZIP)
		gunzip_check(z, zlen, body, n);
	else
		unbrotli_check(z, zlen, body, n);
	if (n > 4096)
		cr_expect_lt(zlen, n / 2, "%zu -> %zu: not compressed", n, zlen);
	free(z);
	free(body);
}

Test(http_compress, gzip_round_trips_in_any_pieces)
{
	round_trip(HTTP_CODING_GZIP, 1, 0, true, 16384, 16384);
	round_trip(HTTP_CODING_GZIP, 1, 1, false, 16384, 16384);
	round_trip(HTTP_CODING_GZIP, 6, 100000, true, 16384, 16384);
	round_trip(HTTP_CODING_GZIP, 6, 100000, false, 1000, 7);
	round_trip(HTTP_CODING_GZIP, 9, 5000, true, 1, 1);
	round_trip(HTTP_CODING_GZIP, 1, 1 << 20, false, 16384, 4096);
}

Test(http_compress, br_round_trips_in_any_pieces)
{
	round_trip(HTTP_CODING_BR, 4, 0, true, 16384, 16384);
	round_trip(HTTP_CODING_BR, 4, 1, false, 16384, 16384);
	round_trip(HTTP_CODING_BR, 4, 100000, true, 16384, 16384);
	round_trip(HTTP_CODING_BR, 1, 100000, false, 1000, 7);
	round_trip(HTTP_CODING_BR, 9, 5000, true, 1, 1);
	round_trip(HTTP_CODING_BR, 5, 1 << 20, false, 16384, 4096);
}

/* What one compressor holds at the largest settings, and that a small
   announced body gets a small window. These bounds are what the
   http_compress.h comment states. */
Test(http_compress, memory_is_bounded_and_follows_the_length)
{
	const size_t n = 1 << 20;
	uint8_t *body = body_of(n);
	size_t zlen, gz_big, gz_small, br_big, br_small;
	uint8_t *z;

	z = squeeze(HTTP_CODING_GZIP, 9, body, n, false, 16384, 16384, &zlen, &gz_big);
	free(z);
	z = squeeze(HTTP_CODING_GZIP, 9, body, 3000, true, 16384, 16384, &zlen, &gz_small);
	free(z);
	z = squeeze(HTTP_CODING_BR, 9, body, n, false, 16384, 16384, &zlen, &br_big);
	free(z);
	z = squeeze(HTTP_CODING_BR, 9, body, 3000, true, 16384, 16384, &zlen, &br_small);
	free(z);
	cr_log_info("held: gzip %zu / %zu (3 KB), br %zu / %zu (3 KB)", gz_big, gz_small, br_big,
		    br_small);
	cr_expect_leq(gz_big, 300 * 1024);
	cr_expect_leq(gz_small, gz_big / 4);
	cr_expect_leq(br_big, 700 * 1024);
	cr_expect_lt(br_small, br_big / 2);
	free(body);
}

Test(http_compress, identity_has_no_compressor)
{
	cr_expect_null(http_compressor_new(HTTP_CODING_IDENTITY, 1, 0));
	http_compressor_free(NULL);
}

/* A flush makes everything taken so far decodable, in any room, and the
   stream goes on after it. */
Test(http_compress, flush_emits_what_was_taken)
{
	for (int c = HTTP_CODING_GZIP; c <= HTTP_CODING_BR; c++) {
		const uint8_t part[] = "<p>first part of a streamed answer</p>\n";
		size_t n = sizeof(part) - 1, used, wrote, olen = 0;
		uint8_t out[4096];
		struct http_compressor *z = http_compressor_new((enum http_coding)c, 5, 0);

		cr_assert_eq(http_compressor_run(z, part, n, &used, out, sizeof(out), &wrote, false), 0);
		cr_assert_eq(used, n);
		olen += wrote;
		int rc;
		cr_assert_eq(http_compressor_flush(z, out, HTTP_COMPRESS_FLUSH_MIN - 1, &wrote), -1);
		for (int guard = 0; (rc = http_compressor_flush(z, out + olen, HTTP_COMPRESS_FLUSH_MIN,
								&wrote)) == 0; guard++) {
			cr_assert_lt(guard, 1000);
			olen += wrote;
		}
		cr_assert_eq(rc, 1);
		olen += wrote;
		/* A decoder gets the whole part from what is out now. */
		if (c == HTTP_CODING_GZIP) {
			uint8_t dec[256];
			z_stream s = { 0 };
			cr_assert_eq(inflateInit2(&s, 15 + 16), Z_OK);
			s.next_in = out;
			s.avail_in = (uInt)olen;
			s.next_out = dec;
			s.avail_out = sizeof(dec);
			cr_assert_eq(inflate(&s, Z_SYNC_FLUSH), Z_OK);
			cr_assert_eq(s.total_out, n);
			cr_assert(memcmp(dec, part, n) == 0);
			inflateEnd(&s);
		} else {
			uint8_t dec[256];
			size_t ain = olen, aout = sizeof(dec);
			const uint8_t *nin = out;
			uint8_t *nout = dec;
			BrotliDecoderState *d = BrotliDecoderCreateInstance(NULL, NULL, NULL);
			cr_assert_eq(BrotliDecoderDecompressStream(d, &ain, &nin, &aout, &nout, NULL),
				     BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT);
			cr_assert_eq(sizeof(dec) - aout, n);
			cr_assert(memcmp(dec, part, n) == 0);
			BrotliDecoderDestroyInstance(d);
		}
		/* Then the stream ends normally. */
		for (rc = 0; rc == 0; olen += wrote)
			rc = http_compressor_run(z, NULL, 0, &used, out + olen, sizeof(out) - olen, &wrote, true);
		cr_assert_eq(rc, 1);
		http_compressor_free(z);
	}
}

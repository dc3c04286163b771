/*
 * libFuzzer target for protocols/http_static_hdr.c: the request headers a
 * static file answer reads (Range, If-None-Match, If-Modified-Since,
 * Accept-Encoding) are client bytes. Whatever the input, a range is inside
 * the file and not empty, the encodings are known bits, and the input is
 * read from a private buffer of exactly its size (ASan catches over-reads).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_static_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size ? size : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	struct http_static_hval v = { copy, size };
	static const uint64_t sizes[] = { 0, 1, 10, 65536, UINT64_MAX / 2 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint64_t start = 0, len = 0;
		int r = http_static__range(v, sizes[i], &start, &len);
		if (r < -1 || r > 1)
			abort();
		if (r == 1 && (len == 0 || start >= sizes[i] || len > sizes[i] - start))
			abort();
	}
	if (http_static__encodings(v) & ~(HTTP_STATIC_ENC_BR | HTTP_STATIC_ENC_GZIP))
		abort();
	(void)http_static__etag_match(v, "\"5f3e9a2b-1a4\"");
	time_t t;
	if (http_static__parse_date(copy, size, &t) && size != 29)
		abort();
	free(copy);
	return 0;
}

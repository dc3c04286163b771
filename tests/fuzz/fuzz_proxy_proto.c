/*
 * libFuzzer target for proxy/proxy_proto.c.
 *
 * The first input byte seeds the split points; the rest is what a client
 * sends first. It is parsed whole, then fed in pseudo-random growing prefixes
 * (the caller's way: same head, longer n); both must agree. Every call gets a
 * private buffer of exactly n bytes so that ASan catches a read past the end.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fz_call(struct pp_state *st, const uint8_t *p, size_t n, struct pp_header *h)
{
	uint8_t *copy = malloc(n ? n : 1);
	if (copy == NULL)
		abort();
	memcpy(copy, p, n);
	int rc = pp_parse(st, copy, n, h);
	free(copy);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint32_t seed = data[0] * 2654435761u + 1;
	data++;
	size--;

	struct pp_state st;
	struct pp_header whole, part;
	memset(&st, 0, sizeof(st));
	memset(&whole, 0, sizeof(whole));
	int rc_whole = fz_call(&st, data, size, &whole);
	if (rc_whole > (int)size || rc_whole > PP_MAX_HEADER)
		abort();

	memset(&st, 0, sizeof(st));
	memset(&part, 0, sizeof(part));
	size_t n = 0;
	int rc = 0;
	while (n < size) {
		seed = seed * 1103515245u + 12345u;
		n += 1 + (seed >> 16) % 64;
		if (n > size)
			n = size;
		rc = fz_call(&st, data, n, &part);
		if (rc != 0)
			break;
	}
	if (rc != rc_whole)
		abort();
	if (rc > 0 && memcmp(&part, &whole, sizeof(part)) != 0)
		abort();
	return 0;
}

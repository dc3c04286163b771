/*
 * libFuzzer target for protocols/http_token.c: ZM_AUTH_TOKEN decoding and
 * cookie lookup. Whatever the input, a returned id must be 1..63 bytes of
 * [A-Za-z0-9-], NUL-terminated within the room given, and the input is read
 * from a private buffer of exactly its size (ASan catches over-reads).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fz_check_id(const char *id, int rc, size_t cap)
{
	if (rc == -1)
		return;
	if (rc <= 0 || (size_t)rc >= cap || (size_t)rc >= HTTP_ZIMBRA_ID_MAX || strlen(id) != (size_t)rc)
		abort();
	for (int i = 0; i < rc; i++) {
		char c = id[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-'))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char id[HTTP_ZIMBRA_ID_MAX];
	char *copy = malloc(size ? size : 1);

	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	/* As a token, with full room and with little room. */
	int rc = http_token_zimbra_id(copy, size, id, sizeof(id));
	fz_check_id(id, rc, sizeof(id));
	size_t small = size ? (size_t)(data[0] % 8) + 1 : 1;
	int rc2 = http_token_zimbra_id(copy, size, id, small);
	fz_check_id(id, rc2, small);
	if (rc2 > 0 && rc2 != rc)
		abort();
	/* As a Cookie header value: a found value lies inside the input. */
	size_t vl;
	const char *v = http_cookie_find(copy, size, "ZM_AUTH_TOKEN", &vl);
	if (v != NULL) {
		if (v < copy || v + vl > copy + size)
			abort();
		rc = http_token_zimbra_id(v, vl, id, sizeof(id));
		fz_check_id(id, rc, sizeof(id));
	}
	free(copy);
	return 0;
}

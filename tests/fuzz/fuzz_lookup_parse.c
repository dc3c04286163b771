/*
 * libFuzzer target for route/lookup_parse.c: the lookup answer parser, fed
 * whole, split in two and one byte at a time, must agree with itself and
 * never crash; route_from_lookup and lookup_build_request then run on what
 * it produced.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lookup.h"
#include "route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Feed data cut at `at` (size = no cut), or byte by byte when bytewise. */
static int fuzz_run(const uint8_t *data, size_t size, size_t at, bool bytewise,
		    struct lookup_response *out)
{
	struct lookup_parser p;
	int rc = 0;

	lookup_parser_init(&p, out);
	if (bytewise) {
		for (size_t i = 0; i < size && rc == 0; i++)
			rc = lookup_parser_feed(&p, data + i, 1);
	} else {
		rc = lookup_parser_feed(&p, data, at);
		if (rc == 0)
			rc = lookup_parser_feed(&p, data + at, size - at);
	}
	if (rc == 0)
		rc = lookup_parser_eof(&p);
	/* Once decided, the answer sticks. */
	if (lookup_parser_feed(&p, data, size) != rc || lookup_parser_eof(&p) != rc)
		abort();
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lookup_response whole, other;
	int rc = fuzz_run(data, size, size, false, &whole);

	/* The split point comes from the input, so the fuzzer can steer it. */
	size_t at = size > 0 ? data[size - 1] * 131u % (size + 1) : 0;
	if (fuzz_run(data, size, at, false, &other) != rc || memcmp(&whole, &other, sizeof(whole)) != 0)
		abort();
	if (size <= 2048) {
		if (fuzz_run(data, size, 0, true, &other) != rc
		    || memcmp(&whole, &other, sizeof(whole)) != 0)
			abort();
	}

	if (rc == 1) {
		struct route r;
		route_from_lookup(&whole, "fuzz@example.com", &r);
		if (memchr(r.reason, '\0', sizeof(r.reason)) == NULL)
			abort();
		if (r.result == ROUTE_OK
		    && !route_name_valid(r.user, strlen(r.user), ROUTE_MAX_USER - 1))
			abort();
	}

	/* The input as a user name and password: escaping must stay in bounds. */
	char *text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	struct lookup_query q = {
		.method = "username", .user = text, .password = text, .protocol = "imap",
		.attempt = 1, .client_ip = "192.0.2.1", .proxy_ip = "192.0.2.2",
	};
	char req[1024];
	int n = lookup_build_request(req, sizeof(req), "127.0.0.1", "/x", &q, size % 2 == 0);
	if (n > (int)sizeof(req))
		abort();
	if (n > 0) {
		/* Escaping keeps every field on its line: the request line, eight
		 * headers and the blank line, so exactly ten CRs and ten LFs. */
		int cr = 0, lf = 0;
		for (int i = 0; i < n; i++) {
			cr += req[i] == '\r';
			lf += req[i] == '\n';
		}
		if (cr != 10 || lf != 10)
			abort();
	}
	free(text);
	return 0;
}

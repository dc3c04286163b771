/*
 * http_t.h - a parsed request head for the HTTP unit tests.
 */
#ifndef GATEHOUSE_HTTP_T_H
#define GATEHOUSE_HTTP_T_H

#include <criterion/criterion.h>
#include <string.h>

#include "http.h"

struct http_t {
	struct http_parser p;
	struct http_head h;
	struct http_header hdr[64];
	uint8_t buf[8192];
};

/* Parse a complete head (kind HTTP_REQUEST or HTTP_RESPONSE) into t. */
static inline void http_t_parse(struct http_t *t, llhttp_type_t kind, const char *text)
{
	struct http_limits lim = { .max_head = 8192, .max_uri = 4096, .max_headers = 64 };
	size_t n = strlen(text);

	memset(t, 0, sizeof(*t));
	t->h.hdr = t->hdr;
	t->h.hdr_cap = 64;
	http_parser_init(&t->p, kind, &lim, &t->h);
	cr_assert_lt(n, sizeof(t->buf));
	memcpy(t->buf, text, n);
	int rc = http_parse_head(&t->p, t->buf, n);
	cr_assert_gt(rc, 0, "head did not parse (%d): %s", rc, text);
}

#endif

/*
 * Tests for protocols/http_token.c: the zimbraId inside a ZM_AUTH_TOKEN, and
 * finding a cookie in a Cookie header.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "http.h"

/* "0_<hmac>_<hex of fields>" as Zimbra shapes it. */
static void tk_make(char *out, size_t cap, const char *fields)
{
	int n = snprintf(out, cap, "0_0123456789abcdef0123456789abcdef01234567_");
	for (const char *p = fields; *p && (size_t)n + 3 < cap; p++)
		n += snprintf(out + n, cap - (size_t)n, "%02x", (unsigned char)*p);
}

static int tk_id(const char *tok, char *id)
{
	return http_token_zimbra_id(tok, strlen(tok), id, HTTP_ZIMBRA_ID_MAX);
}

Test(http_token, zimbra_token_gives_its_id)
{
	char tok[1024], id[HTTP_ZIMBRA_ID_MAX];

	tk_make(tok, sizeof(tok), "id=36:6a1f0c3e-6a2b-4c1d-9e8f-0a1b2c3d4e5f;exp=13:1700000000000;type=6:zimbra;");
	cr_assert_eq(tk_id(tok, id), 36);
	cr_assert_str_eq(id, "6a1f0c3e-6a2b-4c1d-9e8f-0a1b2c3d4e5f");
	/* Fields in another order; values holding ';' and '=' are skipped by length. */
	tk_make(tok, sizeof(tok), "exp=13:1700000000000;x=5:a;b=c;id=4:abcd");
	cr_assert_eq(tk_id(tok, id), 4);
	cr_assert_str_eq(id, "abcd");
	/* Upper-case hex is hex too. */
	char up[1024];
	snprintf(up, sizeof(up), "%s", tok);
	for (char *p = strrchr(up, '_'); *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	cr_assert_eq(tk_id(up, id), 4);
}

Test(http_token, malformed_tokens_give_no_id)
{
	char tok[1024], id[HTTP_ZIMBRA_ID_MAX];
	const char *bad_fields[] = {
		"exp=13:1700000000000;type=6:zimbra;",   /* no id */
		"id=0:;",                                /* empty id */
		"id=40:abc",                             /* length past the end */
		"id=3:a b;",                             /* not an id character */
		"id=3:a\nb;",
		"id=x:abc;",                             /* length not a number */
		"id3:abc;",                              /* no '=' */
		"id=3abc;",                              /* no ':' */
		"foo=3:abcXid=3:abc;",                   /* a record not ended by ';' */
		"id=70:0123456789012345678901234567890123456789012345678901234567890123456789",
	};
	for (size_t i = 0; i < sizeof(bad_fields) / sizeof(bad_fields[0]); i++) {
		tk_make(tok, sizeof(tok), bad_fields[i]);
		cr_expect_eq(tk_id(tok, id), -1, "accepted %s", bad_fields[i]);
	}
	const char *bad[] = {
		"", "0", "0_", "0_ab", "0_ab_", "x_ab_6964", "0_zz_6964", "0_ab_696", "0_ab_6g",
		"_ab_69643d313a61", "0__69643d313a61",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(tk_id(bad[i], id), -1, "accepted %s", bad[i]);
	/* A good token, but no room for its id. */
	tk_make(tok, sizeof(tok), "id=4:abcd;");
	cr_assert_eq(http_token_zimbra_id(tok, strlen(tok), id, 4), -1);
	cr_assert_eq(http_token_zimbra_id(tok, strlen(tok), id, 5), 4);
}

Test(http_token, every_prefix_of_a_token_is_refused_or_exact)
{
	char tok[1024], id[HTTP_ZIMBRA_ID_MAX];

	tk_make(tok, sizeof(tok), "id=36:6a1f0c3e-6a2b-4c1d-9e8f-0a1b2c3d4e5f;exp=13:1700000000000;");
	size_t n = strlen(tok);
	for (size_t k = 0; k < n; k++) {
		char *copy = strndup(tok, k);
		int rc = http_token_zimbra_id(copy, k, id, sizeof(id));
		/* A cut inside the id record never yields a (wrong, shorter) id. */
		cr_assert(rc == -1 || rc == 36, "prefix %zu gave %d", k, rc);
		free(copy);
	}
}

Test(http_token, cookie_lookup)
{
	const char *v = "JSESSIONID=abc; ZM_AUTH_TOKEN=0_x_y ;ZM_TEST=true; Q=\"quoted\"";
	size_t n;
	const char *c = http_cookie_find(v, strlen(v), "ZM_AUTH_TOKEN", &n);

	cr_assert_not_null(c);
	cr_assert_eq(n, 5);
	cr_assert(strncmp(c, "0_x_y", 5) == 0);
	c = http_cookie_find(v, strlen(v), "Q", &n);
	cr_assert_not_null(c);
	cr_assert(n == 6 && strncmp(c, "quoted", 6) == 0);
	cr_assert_null(http_cookie_find(v, strlen(v), "ZM_AUTH", &n));
	cr_assert_null(http_cookie_find(v, strlen(v), "AUTH_TOKEN", &n));
	cr_assert_null(http_cookie_find("", 0, "A", &n));
}

/* Tests for protocols/sasl.c: base64 (RFC 4648), PLAIN (RFC 4616) and the
   sasl_secret buffers responses are decoded into. */
#include <criterion/criterion.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "sasl.h"

/* RFC 4648 section 10. */
static const struct {
	const char *plain;
	const char *b64;
} t_vectors[] = {
	{ "", "" },
	{ "f", "Zg==" },
	{ "fo", "Zm8=" },
	{ "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" },
	{ "fooba", "Zm9vYmE=" },
	{ "foobar", "Zm9vYmFy" },
};

/* Decode a NUL-terminated string into a buffer of exactly outcap bytes. */
static int t_decode(const char *in, size_t outcap, uint8_t *copy_out)
{
	uint8_t *out = malloc(outcap ? outcap : 1);
	int n;

	cr_assert_not_null(out);
	n = sasl_b64_decode(in, strlen(in), out, outcap);
	if (n > 0 && copy_out)
		memcpy(copy_out, out, (size_t)n);
	free(out);
	return n;
}

Test(sasl, rfc4648_encode)
{
	for (size_t i = 0; i < sizeof(t_vectors) / sizeof(t_vectors[0]); i++) {
		size_t n = strlen(t_vectors[i].plain);
		char out[SASL_B64_ENCODED_SIZE(6)];

		cr_assert_eq(SASL_B64_ENCODED_SIZE(n), strlen(t_vectors[i].b64) + 1);
		cr_assert_eq(sasl_b64_encode((const uint8_t *)t_vectors[i].plain, n, out),
			     strlen(t_vectors[i].b64));
		cr_assert_str_eq(out, t_vectors[i].b64);
	}
}

Test(sasl, rfc4648_decode)
{
	for (size_t i = 0; i < sizeof(t_vectors) / sizeof(t_vectors[0]); i++) {
		size_t n = strlen(t_vectors[i].plain);
		uint8_t out[8];

		cr_assert_eq(t_decode(t_vectors[i].b64, sizeof(out), out), (int)n, "vector %zu", i);
		cr_assert_eq(memcmp(out, t_vectors[i].plain, n), 0);
	}
}

Test(sasl, binary_round_trip)
{
	uint8_t in[256], back[256];
	char enc[SASL_B64_ENCODED_SIZE(256)];

	for (int i = 0; i < 256; i++)
		in[i] = (uint8_t)(255 - i);
	for (size_t n = 0; n <= sizeof(in); n++) {
		size_t len = sasl_b64_encode(in, n, enc);

		cr_assert_eq(len + 1, SASL_B64_ENCODED_SIZE(n));
		cr_assert_eq(sasl_b64_decode(enc, len, back, n), (int)n);
		cr_assert_eq(memcmp(in, back, n), 0);
	}
	/* Every alphabet character, and the top and bottom bytes. */
	cr_assert_eq(t_decode("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 48, NULL), 48);
	cr_assert_eq(t_decode("////", 3, back), 3);
	cr_assert_eq(back[0], 0xff);
	cr_assert_eq(back[2], 0xff);
	cr_assert_eq(t_decode("AAA=", 2, back), 2);
	cr_assert_eq(back[0], 0);
}

Test(sasl, decode_invalid_chars)
{
	static const char *bad[] = {
		"Zm9vY mF", "Zm9v\nYmF", "Zm9-", "Zm9_", "Zm9v\r\n", "Zm*v", "Zm9v\x80YmE",
		"Zm9v YmF", ".AAA", "AA A",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(t_decode(bad[i], 16, NULL), -1, "\"%s\"", bad[i]);
	/* A NUL inside the counted input is just another bad character. */
	cr_assert_eq(sasl_b64_decode("Zm\0v", 4, (uint8_t[4]){ 0 }, 4), -1);
}

Test(sasl, decode_bad_padding)
{
	static const char *bad[] = {
		"====", "A===", "=AAA", "Zg=a", "Z=g=", "Zm=v", "Zg==Zm8=", "Zm8=Zm9v",
		"Zh==", "Zm9=", /* pad bits not zero: not the canonical encoding */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(t_decode(bad[i], 16, NULL), -1, "\"%s\"", bad[i]);
}

Test(sasl, decode_length_not_multiple_of_4)
{
	static const char *bad[] = { "Z", "Zg", "Zg=", "Zm9", "Zm9vY", "Zm9vYmF", "=" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(t_decode(bad[i], 16, NULL), -1, "\"%s\"", bad[i]);
}

Test(sasl, decode_capacity)
{
	uint8_t out[6];

	/* Exact room is enough; one byte less is refused without writing. */
	cr_assert_eq(t_decode("Zm9vYmFy", 6, out), 6);
	cr_assert_eq(t_decode("Zm9vYmFy", 5, NULL), -1);
	cr_assert_eq(t_decode("Zm9vYmE=", 5, out), 5);
	cr_assert_eq(t_decode("Zm9vYmE=", 4, NULL), -1);
	cr_assert_eq(t_decode("Zg==", 1, out), 1);
	cr_assert_eq(t_decode("Zg==", 0, NULL), -1);
	cr_assert_eq(t_decode("", 0, NULL), 0);

	memset(out, 0xaa, sizeof(out));
	cr_assert_eq(sasl_b64_decode("Zm9vYmFy", 8, out, 5), -1);
	for (size_t i = 0; i < sizeof(out); i++)
		cr_assert_eq(out[i], 0xaa, "byte %zu written", i);
}

/* Parse a counted PLAIN message and return the three parts as strings. */
static int t_plain(const char *msg, size_t n, char *authz, char *authc, char *pass)
{
	struct sasl_plain sp;
	uint8_t *copy = malloc(n ? n : 1);
	int rc;

	cr_assert_not_null(copy);
	memcpy(copy, msg, n);
	rc = sasl_plain_parse(copy, n, &sp);
	if (rc == 0) {
		cr_assert_leq((size_t)sp.authz.off + sp.authz.len, n);
		cr_assert_leq((size_t)sp.authc.off + sp.authc.len, n);
		cr_assert_leq((size_t)sp.pass.off + sp.pass.len, n);
		memcpy(authz, copy + sp.authz.off, sp.authz.len);
		authz[sp.authz.len] = '\0';
		memcpy(authc, copy + sp.authc.off, sp.authc.len);
		authc[sp.authc.len] = '\0';
		memcpy(pass, copy + sp.pass.off, sp.pass.len);
		pass[sp.pass.len] = '\0';
	}
	free(copy);
	return rc;
}

#define T_PLAIN(s, z, c, p) t_plain((s), sizeof(s) - 1, (z), (c), (p))

Test(sasl, plain_without_authzid)
{
	char z[64], c[64], p[64];

	cr_assert_eq(T_PLAIN("\0tim\0tanstaaftanstaaf", z, c, p), 0);
	cr_assert_str_eq(z, "");
	cr_assert_str_eq(c, "tim");
	cr_assert_str_eq(p, "tanstaaftanstaaf");
}

Test(sasl, plain_with_authzid)
{
	char z[64], c[64], p[64];

	cr_assert_eq(T_PLAIN("Ursel\0Kurt\0xipj3plmq", z, c, p), 0);
	cr_assert_str_eq(z, "Ursel");
	cr_assert_str_eq(c, "Kurt");
	cr_assert_str_eq(p, "xipj3plmq");
}

Test(sasl, plain_from_base64)
{
	uint8_t msg[64];
	struct sasl_plain sp;
	int n;

	/* "\0user@example.com\0p4ss" as a client sends it after AUTHENTICATE PLAIN. */
	n = sasl_b64_decode("AHVzZXJAZXhhbXBsZS5jb20AcDRzcw==", 32, msg, sizeof(msg));
	cr_assert_eq(n, 22);
	cr_assert_eq(sasl_plain_parse(msg, (size_t)n, &sp), 0);
	cr_assert_eq(sp.authz.len, 0);
	cr_assert_eq(sp.authc.off, 1);
	cr_assert_eq(sp.authc.len, 16);
	cr_assert_eq(memcmp(msg + sp.authc.off, "user@example.com", 16), 0);
	cr_assert_eq(sp.pass.off, 18);
	cr_assert_eq(sp.pass.len, 4);
}

Test(sasl, plain_empty_password_allowed)
{
	char z[64], c[64], p[64];

	cr_assert_eq(T_PLAIN("\0tim\0", z, c, p), 0);
	cr_assert_str_eq(c, "tim");
	cr_assert_str_eq(p, "");
	cr_assert_eq(T_PLAIN("a\0b\0", z, c, p), 0);
	cr_assert_str_eq(z, "a");
	cr_assert_str_eq(c, "b");
}

Test(sasl, plain_malformed)
{
	char z[64], c[64], p[64];
	struct sasl_plain sp;

	cr_assert_eq(T_PLAIN("", z, c, p), -1);
	cr_assert_eq(T_PLAIN("timpass", z, c, p), -1);       /* no NUL */
	cr_assert_eq(T_PLAIN("tim\0pass", z, c, p), -1);     /* one NUL */
	cr_assert_eq(T_PLAIN("\0", z, c, p), -1);
	cr_assert_eq(T_PLAIN("\0tim\0pa\0ss", z, c, p), -1); /* three NULs */
	cr_assert_eq(T_PLAIN("\0tim\0pass\0", z, c, p), -1);
	cr_assert_eq(T_PLAIN("\0\0\0", z, c, p), -1);
	cr_assert_eq(T_PLAIN("\0\0pass", z, c, p), -1);      /* empty authcid */
	cr_assert_eq(T_PLAIN("admin\0\0pass", z, c, p), -1);
	cr_assert_eq(T_PLAIN("\0\0", z, c, p), -1);
	cr_assert_eq(sasl_plain_parse(NULL, 0, &sp), -1);
}

/* ---- SASL response lines, fields, PLAIN encoding, XOAUTH2 ---- */

Test(sasl, response_decode)
{
	uint8_t out[8];

	/* "" and "=" are the empty response (RFC 4959, RFC 5034). */
	cr_assert_eq(sasl_response_decode((const uint8_t *)"", 0, out, 0), 0);
	cr_assert_eq(sasl_response_decode((const uint8_t *)"=", 1, out, 0), 0);
	cr_assert_eq(sasl_response_decode((const uint8_t *)"Zm9v", 4, out, SASL_RESPONSE_DECODED_MAX(4)), 3);
	cr_assert_eq(memcmp(out, "foo", 3), 0);
	cr_assert_eq(sasl_response_decode((const uint8_t *)"==", 2, out, sizeof(out)), -1);
	cr_assert_eq(sasl_response_decode((const uint8_t *)"*", 1, out, sizeof(out)), -1);
	cr_assert_eq(sasl_response_decode((const uint8_t *)"Zm9", 3, out, sizeof(out)), -1);
	cr_assert_eq(sasl_response_decode((const uint8_t *)"Zm9vYmFy", 8, out, 5), -1);
}

Test(sasl, take)
{
	char dst[6] = "xxxxx";

	cr_assert(sasl_take(dst, sizeof(dst), (const uint8_t *)"alice", 5));
	cr_assert_str_eq(dst, "alice");
	cr_assert(sasl_take(dst, sizeof(dst), (const uint8_t *)"", 0));
	cr_assert_str_eq(dst, "");
	strcpy(dst, "keep");
	cr_assert_not(sasl_take(dst, sizeof(dst), (const uint8_t *)"alice!", 6)); /* no room for NUL */
	cr_assert_not(sasl_take(dst, sizeof(dst), (const uint8_t *)"a\0b", 3));
	cr_assert_str_eq(dst, "keep");
}

Test(sasl, plain_encode)
{
	char out[SASL_B64_ENCODED_SIZE(64)];
	uint8_t back[64];
	struct sasl_plain sp;

	/* The vector of plain_from_base64, built from its parts. */
	cr_assert_eq(sasl_plain_encode("", 0, "user@example.com", 16, "p4ss", 4, out), 32);
	cr_assert_str_eq(out, "AHVzZXJAZXhhbXBsZS5jb20AcDRzcw==");
	/* Every length modulo 3, with an authzid. */
	for (size_t pl = 0; pl < 6; pl++) {
		size_t n = sasl_plain_encode("admin", 5, "bob", 3, "123456", pl, out);
		cr_assert_eq(n + 1, SASL_B64_ENCODED_SIZE(5 + 3 + pl + 2));
		int m = sasl_b64_decode(out, n, back, sizeof(back));
		cr_assert_eq(m, (int)(5 + 3 + pl + 2));
		cr_assert_eq(sasl_plain_parse(back, (size_t)m, &sp), 0);
		cr_assert_eq(memcmp(back + sp.authz.off, "admin", 5), 0);
		cr_assert_eq(memcmp(back + sp.authc.off, "bob", 3), 0);
		cr_assert_eq(sp.pass.len, pl);
		cr_assert_eq(memcmp(back + sp.pass.off, "123456", pl), 0);
	}
}

/* Parse a C-string-literal XOAUTH2 message (its length from sizeof). */
#define T_XO(lit, out) sasl_xoauth2_parse((const uint8_t *)(lit), sizeof(lit) - 1, (out))

static bool t_span(const char *msg, struct sasl_span s, const char *want)
{
	return s.len == strlen(want) && memcmp(msg + s.off, want, s.len) == 0;
}

Test(sasl, xoauth2_user)
{
	static const char m[] = "user=someuser@example.com\001auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\001\001";
	struct sasl_xoauth2 x;

	cr_assert_eq(T_XO(m, &x), 0);
	cr_assert(t_span(m, x.user, "someuser@example.com"));
	cr_assert(t_span(m, x.token, "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"));

	/* The same message as a client sends it: base64. */
	static const char b64[] = "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==";
	uint8_t dec[256];
	int n = sasl_response_decode((const uint8_t *)b64, sizeof(b64) - 1, dec, sizeof(dec));
	cr_assert_eq(n, (int)sizeof(m) - 1);
	cr_assert_eq(memcmp(dec, m, (size_t)n), 0);
	cr_assert_eq(sasl_xoauth2_parse(dec, (size_t)n, &x), 0);
	cr_assert(t_span((const char *)dec, x.user, "someuser@example.com"));
}

Test(sasl, xoauth2_order_and_extra_keys)
{
	static const char a[] = "auth=bearer tok\001user=u@x\001\001";
	static const char b[] = "host=imap.example.com\001user=u\001port=110\001auth=Bearer t\001\001";
	struct sasl_xoauth2 x;

	cr_assert_eq(T_XO(a, &x), 0);
	cr_assert(t_span(a, x.user, "u@x"));
	cr_assert(t_span(a, x.token, "tok"));
	cr_assert_eq(T_XO(b, &x), 0);
	cr_assert(t_span(b, x.user, "u"));
	cr_assert(t_span(b, x.token, "t"));
}

Test(sasl, xoauth2_malformed)
{
	struct sasl_xoauth2 x;

	cr_assert_eq(T_XO("", &x), -1);
	cr_assert_eq(T_XO("\001\001", &x), -1);
	cr_assert_eq(T_XO("user=u\001auth=Bearer t\001", &x), -1);        /* one final ^A */
	cr_assert_eq(T_XO("user=u\001auth=Bearer t", &x), -1);
	cr_assert_eq(T_XO("user=u\001\001auth=Bearer t\001\001", &x), -1); /* empty pair inside */
	cr_assert_eq(T_XO("auth=Bearer t\001\001", &x), -1);               /* no user */
	cr_assert_eq(T_XO("user=u\001\001", &x), -1);                      /* no auth */
	cr_assert_eq(T_XO("user=\001auth=Bearer t\001\001", &x), -1);      /* empty user */
	cr_assert_eq(T_XO("user=u\001auth=Bearer \001\001", &x), -1);      /* empty token */
	cr_assert_eq(T_XO("user=u\001auth=Basic dTpw\001\001", &x), -1);   /* not Bearer */
	cr_assert_eq(T_XO("user=u\001user=v\001auth=Bearer t\001\001", &x), -1);
	cr_assert_eq(T_XO("user=u\001auth=Bearer t\001auth=Bearer s\001\001", &x), -1);
	cr_assert_eq(T_XO("user=u\0v\001auth=Bearer t\001\001", &x), -1); /* NUL */
	cr_assert_eq(T_XO("user=u\001auth=Bearer t\001\001\001", &x), -1);
}

/* Parse a C-string-literal OAUTHBEARER message (its length from sizeof). */
#define T_OB(lit, out) sasl_oauthbearer_parse((const uint8_t *)(lit), sizeof(lit) - 1, (out))

Test(sasl, oauthbearer_rfc7628_example)
{
	/* RFC 7628 section 4.1, with the authzid gatehouse needs for its lookup. */
	static const char m[] = "n,a=user@example.com,\001host=server.example.com\001port=143\001"
				"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\001\001";
	struct sasl_xoauth2 x;

	cr_assert_eq(T_OB(m, &x), 0);
	cr_assert(t_span(m, x.user, "user@example.com"));
	cr_assert(t_span(m, x.token, "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="));

	/* "y," (client supports binding, server did not offer it) and auth first. */
	static const char y[] = "y,a=u@x,\001auth=bearer t\001\001";
	cr_assert_eq(T_OB(y, &x), 0);
	cr_assert(t_span(y, x.user, "u@x"));
	cr_assert(t_span(y, x.token, "t"));

	/* As a client sends it: base64 of the message. */
	static const char b64[] = "bixhPXVAeCwBYXV0aD1iZWFyZXIgdAEB";
	uint8_t dec[64];
	int n = sasl_response_decode((const uint8_t *)b64, sizeof(b64) - 1, dec, sizeof(dec));
	cr_assert_eq(n, (int)sizeof(y) - 1);
	cr_assert_eq(memcmp(dec, "n,a=u@x,\001auth=bearer t\001\001", (size_t)n), 0);
	cr_assert_eq(sasl_oauthbearer_parse(dec, (size_t)n, &x), 0);
	cr_assert(t_span((const char *)dec, x.user, "u@x"));
}

Test(sasl, oauthbearer_every_prefix_refused)
{
	static const char m[] = "n,a=u@x,\001port=143\001auth=Bearer tok\001\001";
	struct sasl_xoauth2 x;

	for (size_t k = 0; k < sizeof(m) - 1; k++)
		cr_assert_eq(sasl_oauthbearer_parse((const uint8_t *)m, k, &x), -1, "prefix %zu", k);
	cr_assert_eq(T_OB(m, &x), 0);
}

Test(sasl, oauthbearer_malformed)
{
	struct sasl_xoauth2 x;

	cr_assert_eq(T_OB("", &x), -1);
	cr_assert_eq(T_OB("\001\001", &x), -1);
	cr_assert_eq(T_OB("n,,\001auth=Bearer t\001\001", &x), -1);          /* no authzid */
	cr_assert_eq(T_OB("n,a=,\001auth=Bearer t\001\001", &x), -1);        /* empty authzid */
	cr_assert_eq(T_OB("p=tls-unique,a=u,\001auth=Bearer t\001\001", &x), -1); /* binding */
	cr_assert_eq(T_OB("x,a=u,\001auth=Bearer t\001\001", &x), -1);
	cr_assert_eq(T_OB("n,a=u=2Cv,\001auth=Bearer t\001\001", &x), -1);   /* escaped */
	cr_assert_eq(T_OB("n,a=u\001auth=Bearer t\001\001", &x), -1);       /* header unended */
	cr_assert_eq(T_OB("n,a=u,auth=Bearer t\001\001", &x), -1);          /* no ^A after header */
	cr_assert_eq(T_OB("n,a=u,\001\001", &x), -1);                       /* no auth */
	cr_assert_eq(T_OB("n,a=u,\001auth=Bearer \001\001", &x), -1);       /* empty token */
	cr_assert_eq(T_OB("n,a=u,\001auth=Basic dTpw\001\001", &x), -1);
	cr_assert_eq(T_OB("n,a=u,\001auth=Bearer t\001auth=Bearer s\001\001", &x), -1);
	cr_assert_eq(T_OB("n,a=u,\001\001auth=Bearer t\001\001", &x), -1);  /* empty pair */
	cr_assert_eq(T_OB("n,a=u,\001p0rt=1\001auth=Bearer t\001\001", &x), -1); /* key not letters */
	cr_assert_eq(T_OB("n,a=u,\001port\001auth=Bearer t\001\001", &x), -1);  /* no '=' */
	cr_assert_eq(T_OB("n,a=u\0,\001auth=Bearer t\001\001", &x), -1);   /* NUL */
	cr_assert_eq(T_OB("n,a=u,\001auth=Bearer t\001", &x), -1);          /* one final ^A */
}

/* ---- sasl_secret: the decode buffer that knows its own size ---- */

/*
 * The block behind sec is at least sec->cap bytes, and cap covers the most
 * decoding n characters can write. malloc_usable_size is exact under ASan
 * and rounds up only a little in glibc, so a cap larger than the block
 * fails here even without ASan (the old code wiped n bytes of a 3n/4 one).
 */
static void t_secret_sized(const struct sasl_secret *sec, size_t n)
{
	cr_assert_not_null(sec->p);
	cr_assert_geq(sec->cap, n / 4 * 3, "n %zu: cap %zu is less than decoding may write", n, sec->cap);
	cr_assert_geq(malloc_usable_size(sec->p), sec->cap, "n %zu: cap %zu is more than the block", n,
		      sec->cap);
	cr_assert_leq(sec->len, sec->cap);
}

/* Free twice: the first wipes and NULLs, the second does nothing. */
static void t_secret_free_twice(struct sasl_secret *sec)
{
	sasl_secret_free(sec);
	cr_assert_null(sec->p);
	cr_assert_eq(sec->cap, 0);
	cr_assert_eq(sec->len, 0);
	sasl_secret_free(sec);
	cr_assert_null(sec->p);
}

/* "a AUTHENTICATE PLAIN !!!!!!!!" once wiped 8 bytes of a 7-byte block. */
Test(sasl, secret_invalid_base64_of_every_length)
{
	static uint8_t bang[8192];
	size_t lens[65];

	memset(bang, '!', sizeof(bang));
	for (size_t n = 1; n <= 64; n++)
		lens[n - 1] = n;
	lens[64] = sizeof(bang);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct sasl_secret sec;

		memset(&sec, 0xa5, sizeof(sec)); /* decode must not rely on a zeroed struct */
		cr_assert_eq(sasl_secret_decode(bang, lens[i], &sec), -1, "n %zu", lens[i]);
		t_secret_sized(&sec, lens[i]);
		cr_assert_eq(sec.len, 0);
		t_secret_free_twice(&sec);
	}
}

/* A bad quantum after good ones: part of the secret is already written. */
Test(sasl, secret_invalid_after_a_valid_prefix)
{
	char in[4 * 40 + 4];

	for (size_t k = 0; k < 40; k++) {
		struct sasl_secret sec;
		size_t n = 0;

		for (size_t j = 0; j < k; j++, n += 4)
			memcpy(in + n, "cGFz", 4); /* "pas" */
		memcpy(in + n, "c3!v", 4);
		n += 4;
		cr_assert_eq(sasl_secret_decode((const uint8_t *)in, n, &sec), -1, "k %zu", k);
		t_secret_sized(&sec, n);
		t_secret_free_twice(&sec);
	}
}

Test(sasl, secret_good_inputs_have_their_length)
{
	for (size_t i = 0; i < sizeof(t_vectors) / sizeof(t_vectors[0]); i++) {
		const char *b64 = t_vectors[i].b64;
		size_t n = strlen(t_vectors[i].plain);
		struct sasl_secret sec;

		cr_assert_eq(sasl_secret_decode((const uint8_t *)b64, strlen(b64), &sec), 0, "vector %zu", i);
		t_secret_sized(&sec, strlen(b64));
		cr_assert_eq(sec.len, n, "vector %zu", i);
		cr_assert_eq(memcmp(sec.p, t_vectors[i].plain, n), 0);
		t_secret_free_twice(&sec);
	}
	/* "=" is the empty response (RFC 4959). */
	struct sasl_secret e;
	cr_assert_eq(sasl_secret_decode((const uint8_t *)"=", 1, &e), 0);
	cr_assert_not_null(e.p, "even an empty response has a block to free");
	cr_assert_eq(e.len, 0);
	t_secret_free_twice(&e);
}

Test(sasl, secret_round_trip_of_every_length)
{
	uint8_t in[300];
	char enc[SASL_B64_ENCODED_SIZE(300)];

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 7 + 1);
	for (size_t n = 0; n <= sizeof(in); n++) {
		size_t el = sasl_b64_encode(in, n, enc);
		struct sasl_secret sec;

		cr_assert_eq(sasl_secret_decode((const uint8_t *)enc, el, &sec), 0, "n %zu", n);
		t_secret_sized(&sec, el);
		cr_assert_eq(sec.len, n);
		cr_assert_eq(memcmp(sec.p, in, n), 0);
		t_secret_free_twice(&sec);
	}
}

Test(sasl, secret_free_of_a_zeroed_secret)
{
	struct sasl_secret z = { 0 };

	t_secret_free_twice(&z);
}

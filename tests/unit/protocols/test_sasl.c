/* Tests for protocols/sasl.c: base64 (RFC 4648) and PLAIN (RFC 4616). */
#include <criterion/criterion.h>
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

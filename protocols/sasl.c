/*
 * sasl.c - base64 (RFC 4648 section 4), SASL response lines, the PLAIN
 * message (RFC 4616) and the XOAUTH2 message.
 *
 * The decoder is strict: it is fed client-supplied credentials, and there is
 * no client that needs leniency (whitespace, missing padding, non-zero pad
 * bits), while every accepted variant is one more way for two parsers along
 * the path to disagree about the same bytes.
 */
#include "sasl.h"
#include "secret.h"

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


static const char sasl__alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t sasl_b64_encode(const uint8_t *in, size_t n, char *out)
{
	size_t i = 0, o = 0;

	for (; n - i >= 3; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[o++] = sasl__alphabet[v >> 18];
		out[o++] = sasl__alphabet[(v >> 12) & 63];
		out[o++] = sasl__alphabet[(v >> 6) & 63];
		out[o++] = sasl__alphabet[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		out[o++] = sasl__alphabet[v >> 18];
		out[o++] = sasl__alphabet[(v >> 12) & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		out[o++] = sasl__alphabet[v >> 18];
		out[o++] = sasl__alphabet[(v >> 12) & 63];
		out[o++] = sasl__alphabet[(v >> 6) & 63];
		out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

/* The 6-bit value of one alphabet character, or -1. */
static int sasl__b64_value(char ch)
{
	unsigned char c = (unsigned char)ch;

	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int sasl_b64_decode(const char *in, size_t n, uint8_t *out, size_t outcap)
{
	size_t pad = 0, len, o = 0;

	if (n % 4 != 0)
		return -1;
	if (n == 0)
		return 0;
	if (in[n - 1] == '=')
		pad = in[n - 2] == '=' ? 2 : 1;
	len = n / 4 * 3 - pad;
	/* Check the room before writing anything. */
	if (len > outcap || len > INT_MAX)
		return -1;

	for (size_t i = 0; i < n; i += 4) {
		bool last = i + 4 == n;
		int a = sasl__b64_value(in[i]);
		int b = sasl__b64_value(in[i + 1]);
		int c = last && pad == 2 ? 0 : sasl__b64_value(in[i + 2]);
		int d = last && pad >= 1 ? 0 : sasl__b64_value(in[i + 3]);
		uint32_t v;

		/* '=' anywhere but the final one or two places lands here too. */
		if (a < 0 || b < 0 || c < 0 || d < 0)
			return -1;
		v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
		/* Bits that padding drops must be zero (canonical encoding). */
		if (last && pad == 2 && (v & 0xffff) != 0)
			return -1;
		if (last && pad == 1 && (v & 0xff) != 0)
			return -1;
		out[o++] = (uint8_t)(v >> 16);
		if (!(last && pad == 2))
			out[o++] = (uint8_t)(v >> 8);
		if (!(last && pad >= 1))
			out[o++] = (uint8_t)v;
	}
	return (int)o;
}

int sasl_plain_parse(const uint8_t *p, size_t n, struct sasl_plain *out)
{
	const uint8_t *nul1, *nul2;
	size_t a, b;

	memset(out, 0, sizeof(*out));
	if (n == 0 || n > UINT32_MAX)
		return -1;
	nul1 = memchr(p, 0, n);
	if (!nul1)
		return -1;
	a = (size_t)(nul1 - p);
	nul2 = memchr(nul1 + 1, 0, n - a - 1);
	if (!nul2)
		return -1;
	b = (size_t)(nul2 - p);
	/* A third NUL would end up inside the password. */
	if (memchr(nul2 + 1, 0, n - b - 1))
		return -1;
	if (b == a + 1)
		return -1;

	out->authz.off = 0;
	out->authz.len = (uint32_t)a;
	out->authc.off = (uint32_t)(a + 1);
	out->authc.len = (uint32_t)(b - a - 1);
	out->pass.off = (uint32_t)(b + 1);
	out->pass.len = (uint32_t)(n - b - 1);
	return 0;
}

size_t sasl_plain_encode(const char *authz, size_t az, const char *authc, size_t ac,
			 const char *pass, size_t pl, char *out)
{
	const struct {
		const char *p;
		size_t n;
	} part[5] = { { authz, az }, { "", 1 }, { authc, ac }, { "", 1 }, { pass, pl } };
	uint8_t group[3];
	size_t g = 0, o = 0;

	out[0] = '\0';
	for (size_t k = 0; k < 5; k++) {
		for (size_t i = 0; i < part[k].n; i++) {
			group[g++] = (uint8_t)part[k].p[i];
			if (g == 3) {
				o += sasl_b64_encode(group, 3, out + o);
				g = 0;
			}
		}
	}
	if (g > 0)
		o += sasl_b64_encode(group, g, out + o);
	secret_wipe(group, sizeof(group));
	return o;
}

int sasl_response_decode(const uint8_t *in, size_t n, uint8_t *out, size_t outcap)
{
	if (n == 0 || (n == 1 && in[0] == '='))
		return 0;
	return sasl_b64_decode((const char *)in, n, out, outcap);
}

int sasl_secret_decode(const uint8_t *b64, size_t n, struct sasl_secret *out)
{
	int len;

	out->len = 0;
	out->cap = SASL_RESPONSE_DECODED_MAX(n);
	out->p = malloc(out->cap);
	if (out->p == NULL) {
		out->cap = 0;
		return -1;
	}
	len = sasl_response_decode(b64, n, out->p, out->cap);
	if (len < 0)
		return -1;
	out->len = (size_t)len;
	return 0;
}

void sasl_secret_free(struct sasl_secret *sec)
{
	if (sec->p != NULL) {
		secret_wipe(sec->p, sec->cap);
		free(sec->p);
	}
	sec->p = NULL;
	sec->cap = 0;
	sec->len = 0;
}

bool sasl_take(char *dst, size_t cap, const uint8_t *src, size_t n)
{
	if (n >= cap || memchr(src, '\0', n))
		return false;
	memcpy(dst, src, n);
	dst[n] = '\0';
	return true;
}

int sasl_xoauth2_parse(const uint8_t *p, size_t n, struct sasl_xoauth2 *out)
{
	bool have_user = false, have_auth = false;
	size_t i = 0;

	memset(out, 0, sizeof(*out));
	if (n < 2 || n > UINT32_MAX || p[n - 1] != 1 || p[n - 2] != 1 || memchr(p, 0, n))
		return -1;
	/* Pairs, each ended by ^A; the final ^A ends the list. */
	while (i < n - 1) {
		const uint8_t *sep = memchr(p + i, 1, n - 1 - i);
		size_t j = (size_t)(sep - p); /* sep exists: p[n - 2] is ^A */

		if (j == i)
			return -1; /* an empty pair before the end */
		if (j - i >= 5 && memcmp(p + i, "user=", 5) == 0) {
			if (have_user || j - i == 5)
				return -1;
			have_user = true;
			out->user.off = (uint32_t)(i + 5);
			out->user.len = (uint32_t)(j - i - 5);
		} else if (j - i >= 5 && memcmp(p + i, "auth=", 5) == 0) {
			if (have_auth || j - i <= 12 || strncasecmp((const char *)p + i + 5, "Bearer ", 7) != 0)
				return -1;
			have_auth = true;
			out->token.off = (uint32_t)(i + 12);
			out->token.len = (uint32_t)(j - i - 12);
		}
		i = j + 1;
	}
	return have_user && have_auth ? 0 : -1;
}

int sasl_oauthbearer_parse(const uint8_t *p, size_t n, struct sasl_xoauth2 *out)
{
	bool have_auth = false;
	size_t i, a;

	memset(out, 0, sizeof(*out));
	if (n < 5 || n > UINT32_MAX || p[n - 1] != 1 || p[n - 2] != 1 || memchr(p, 0, n))
		return -1;
	/* gs2-header: cbind flag, authzid, then the first ^A. */
	if ((p[0] != 'n' && p[0] != 'y') || p[1] != ',' || p[2] != 'a' || p[3] != '=')
		return -1;
	for (a = 4; a < n && p[a] != ','; a++)
		if (p[a] == '=' || p[a] == 1)
			return -1;
	if (a == 4 || a + 1 >= n || p[a + 1] != 1)
		return -1;
	out->user.off = 4;
	out->user.len = (uint32_t)(a - 4);
	/* kvpairs, each "key=value" ended by ^A; the final ^A ends the list. */
	for (i = a + 2; i < n - 1;) {
		const uint8_t *sep = memchr(p + i, 1, n - 1 - i);
		size_t j = (size_t)(sep - p); /* sep exists: p[n - 2] is ^A */
		size_t k = i;

		while (k < j && ((p[k] | 0x20) >= 'a' && (p[k] | 0x20) <= 'z'))
			k++;
		if (k == i || k == j || p[k] != '=')
			return -1;
		if (k - i == 4 && memcmp(p + i, "auth", 4) == 0) {
			if (have_auth || j - i <= 12 || strncasecmp((const char *)p + i + 5, "Bearer ", 7) != 0)
				return -1;
			have_auth = true;
			out->token.off = (uint32_t)(i + 12);
			out->token.len = (uint32_t)(j - i - 12);
		}
		i = j + 1;
	}
	return have_auth ? 0 : -1;
}

/*
 * libFuzzer target for protocols/sasl.c.
 *
 * The input is tried as base64 text (decode, then re-encode must give the
 * same text back, since only canonical encodings are accepted), as binary
 * (encode, then decode must give it back), as a PLAIN message, as an
 * XOAUTH2 message, as an OAUTHBEARER message, as the parts of a PLAIN
 * message to encode, and as a LOGIN exchange (two SASL response lines, a
 * user and a password, each decoded and taken into bounded fields). Buffers
 * are sized exactly so ASan sees any write past the promised capacity.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fz_decode(const uint8_t *data, size_t size)
{
	size_t cap = size / 4 * 3;
	char *text = malloc(size ? size : 1);
	uint8_t *out = malloc(cap ? cap : 1);
	char *again;
	int n;

	if (!text || !out)
		abort();
	memcpy(text, data, size);
	n = sasl_b64_decode(text, size, out, cap);
	if (n >= 0) {
		if ((size_t)n > cap || size % 4 != 0 || (size_t)n + 2 < cap)
			abort();
		again = malloc(SASL_B64_ENCODED_SIZE((size_t)n));
		if (!again)
			abort();
		if (sasl_b64_encode(out, (size_t)n, again) != size || memcmp(again, text, size) != 0)
			abort();
		free(again);
		/* One byte less room must be refused. */
		if (n > 0 && sasl_b64_decode(text, size, out, (size_t)n - 1) != -1)
			abort();
	}
	free(text);
	free(out);
}

static void fz_round_trip(const uint8_t *data, size_t size)
{
	size_t elen = SASL_B64_ENCODED_SIZE(size);
	char *enc = malloc(elen);
	uint8_t *back = malloc(size ? size : 1);

	if (!enc || !back)
		abort();
	if (sasl_b64_encode(data, size, enc) != elen - 1 || enc[elen - 1] != '\0')
		abort();
	if (sasl_b64_decode(enc, elen - 1, back, size) != (int)size || memcmp(back, data, size) != 0)
		abort();
	free(enc);
	free(back);
}

static void fz_plain(const uint8_t *data, size_t size)
{
	uint8_t *msg = malloc(size ? size : 1);
	struct sasl_plain sp;
	size_t nuls = 0, first = 0, second = 0;

	if (!msg)
		abort();
	memcpy(msg, data, size);
	for (size_t i = 0; i < size; i++) {
		if (msg[i] != 0)
			continue;
		if (nuls == 0)
			first = i;
		else if (nuls == 1)
			second = i;
		nuls++;
	}
	if (sasl_plain_parse(msg, size, &sp) == 0) {
		if (nuls != 2 || sp.authc.len == 0 || sp.authz.off != 0)
			abort();
		if (sp.authc.off != sp.authz.len + 1 || msg[sp.authz.len] != 0)
			abort();
		if (sp.pass.off != sp.authc.off + sp.authc.len + 1 || msg[sp.pass.off - 1] != 0)
			abort();
		if ((size_t)sp.pass.off + sp.pass.len != size)
			abort();
	} else if (nuls == 2 && second > first + 1) {
		abort(); /* two NULs around a non-empty authcid must parse */
	}
	free(msg);
}

/* XOAUTH2: whatever parses has its spans inside the message, non-empty, and
   framed as "user=" / "auth=Bearer ". */
static void fz_xoauth2(const uint8_t *data, size_t size)
{
	uint8_t *msg = malloc(size ? size : 1);
	struct sasl_xoauth2 x;

	if (!msg)
		abort();
	memcpy(msg, data, size);
	if (sasl_xoauth2_parse(msg, size, &x) == 0) {
		if (x.user.len == 0 || x.token.len == 0 || x.user.off < 5 || x.token.off < 12)
			abort();
		if ((size_t)x.user.off + x.user.len > size - 2 || (size_t)x.token.off + x.token.len > size - 2)
			abort();
		if (memcmp(msg + x.user.off - 5, "user=", 5) != 0 || msg[x.user.off + x.user.len] != 1)
			abort();
		if (msg[x.token.off + x.token.len] != 1 || memchr(msg, 0, size))
			abort();
	}
	free(msg);
}

/* OAUTHBEARER: the user is the GS2 authzid, unescaped, right after "n,a="
   or "y,a=" and before the header's ',' ^A; the token follows "auth=Bearer ". */
static void fz_oauthbearer(const uint8_t *data, size_t size)
{
	uint8_t *msg = malloc(size ? size : 1);
	struct sasl_xoauth2 x;

	if (!msg)
		abort();
	memcpy(msg, data, size);
	if (sasl_oauthbearer_parse(msg, size, &x) == 0) {
		if (x.user.off != 4 || x.user.len == 0 || x.token.len == 0 || x.token.off < 12)
			abort();
		if ((size_t)x.user.off + x.user.len + 2 > size - 2 ||
		    (size_t)x.token.off + x.token.len > size - 2)
			abort();
		if ((msg[0] != 'n' && msg[0] != 'y') || memcmp(msg + 1, ",a=", 3) != 0)
			abort();
		if (msg[x.user.off + x.user.len] != ',' || msg[x.user.off + x.user.len + 1] != 1 ||
		    memchr(msg + x.user.off, '=', x.user.len) || memchr(msg + x.user.off, 1, x.user.len))
			abort();
		if (strncasecmp((const char *)msg + x.token.off - 12, "auth=Bearer ", 12) != 0 ||
		    msg[x.token.off + x.token.len] != 1 || memchr(msg, 0, size))
			abort();
	}
	free(msg);
}

/* LOGIN: the input split at its first byte's value into two response lines
   (user, password), decoded as the front ends do and taken into fields of
   the configured bounds (here 64 bytes). */
static void fz_login(const uint8_t *data, size_t size)
{
	if (size < 1)
		return;
	size_t rest = size - 1, ul = data[0] % (rest + 1);
	const uint8_t *line[2] = { data + 1, data + 1 + ul };
	size_t len[2] = { ul, rest - ul };

	for (int k = 0; k < 2; k++) {
		size_t cap = SASL_RESPONSE_DECODED_MAX(len[k]);
		uint8_t *in = malloc(len[k] ? len[k] : 1), *out = malloc(cap);
		char field[65];

		if (!in || !out)
			abort();
		memcpy(in, line[k], len[k]);
		int n = sasl_response_decode(in, len[k], out, cap);
		if (n > (int)cap)
			abort();
		if (n >= 0) {
			memset(field, 'x', sizeof(field));
			bool ok = sasl_take(field, sizeof(field), out, (size_t)n);
			if (ok != ((size_t)n < sizeof(field) && !memchr(out, 0, (size_t)n)))
				abort();
			if (ok && (field[n] != '\0' || memcmp(field, out, (size_t)n) != 0))
				abort();
			if (!ok && memchr(field, 0, sizeof(field)))
				abort(); /* a refused field is left untouched */
		}
		free(in);
		free(out);
	}
}

/* PLAIN encoding: the input split at its first two bytes' values decodes
   back to "authz NUL authc NUL pass". */
static void fz_plain_encode(const uint8_t *data, size_t size)
{
	if (size < 2)
		return;
	size_t rest = size - 2, az = data[0] % (rest + 1), ac = data[1] % (rest - az + 1);
	size_t pl = rest - az - ac, n = rest + 2;
	const char *p = (const char *)data + 2;
	char *enc = malloc(SASL_B64_ENCODED_SIZE(n));
	uint8_t *back = malloc(n);

	if (!enc || !back)
		abort();
	size_t el = sasl_plain_encode(p, az, p + az, ac, p + az + ac, pl, enc);
	if (el + 1 != SASL_B64_ENCODED_SIZE(n) || enc[el] != '\0')
		abort();
	if (sasl_b64_decode(enc, el, back, n) != (int)n)
		abort();
	if (memcmp(back, p, az) || back[az] || memcmp(back + az + 1, p + az, ac) || back[az + 1 + ac] ||
	    memcmp(back + az + ac + 2, p + az + ac, pl))
		abort();
	free(enc);
	free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fz_decode(data, size);
	fz_round_trip(data, size);
	fz_plain(data, size);
	fz_xoauth2(data, size);
	fz_oauthbearer(data, size);
	fz_plain_encode(data, size);
	fz_login(data, size);
	return 0;
}

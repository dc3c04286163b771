/*
 * http_token.c - the zimbraId inside a ZM_AUTH_TOKEN cookie, and cookie
 * lookup. Pure functions over bounded input.
 *
 * A token is "<key version>_<hmac>_<hex>"; the hex part decodes to
 * "field=len:value;field=len:value;..." (reference §1.6), e.g.
 * "id=36:<uuid>;exp=13:<ms>;type=6:zimbra;". Values carry their length, so
 * a value may itself hold ';' or '=': the decoder follows the lengths and
 * never searches for separators inside a value.
 */
#include <string.h>

#include "gh.h"
#include "http.h"

/* Longest token we look at; Zimbra's are a few hundred bytes. */
#define HTTP_TOKEN_MAX 4096

/* The byte at index i of the decoded hex part (hex has 2*i+1 < n digits). */
static int tok__byte(const char *hex, size_t i)
{
	int hi = gh_hexval((unsigned char)hex[2 * i]), lo = gh_hexval((unsigned char)hex[2 * i + 1]);

	return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static bool tok__id_char(int c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

int http_token_zimbra_id(const char *tok, size_t len, char *id_out, size_t cap)
{
	if (tok == NULL || id_out == NULL || cap == 0 || len == 0 || len > HTTP_TOKEN_MAX)
		return -1;
	id_out[0] = '\0';
	/* Part 1: the key version, digits. */
	size_t i = 0;
	while (i < len && tok[i] >= '0' && tok[i] <= '9')
		i++;
	if (i == 0 || i >= len || tok[i] != '_')
		return -1;
	/* Part 2: the HMAC, hex digits. */
	size_t h = ++i;
	while (i < len && gh_hexval((unsigned char)tok[i]) >= 0)
		i++;
	if (i == h || i >= len || tok[i] != '_')
		return -1;
	const char *hex = tok + i + 1;
	size_t hexlen = len - i - 1;
	if (hexlen == 0 || hexlen % 2 != 0)
		return -1;
	size_t n = hexlen / 2; /* decoded bytes */

	/* Walk "name=len:value;" records over the decoded bytes. */
	size_t pos = 0;
	while (pos < n) {
		char name[16];
		size_t nl = 0;
		int c;
		while (pos < n && (c = tok__byte(hex, pos)) != '=') {
			if (c < 0 || nl + 1 >= sizeof(name))
				return -1;
			name[nl++] = (char)c;
			pos++;
		}
		if (pos >= n)
			return -1;
		name[nl] = '\0';
		pos++; /* '=' */
		size_t vlen = 0, digits = 0;
		while (pos < n && (c = tok__byte(hex, pos)) != ':') {
			if (c < '0' || c > '9' || ++digits > 6)
				return -1;
			vlen = vlen * 10 + (size_t)(c - '0');
			pos++;
		}
		if (pos >= n || digits == 0)
			return -1;
		pos++; /* ':' */
		if (vlen > n - pos)
			return -1;
		if (strcmp(name, "id") == 0) {
			if (vlen == 0 || vlen >= HTTP_ZIMBRA_ID_MAX || vlen >= cap)
				return -1;
			for (size_t k = 0; k < vlen; k++) {
				c = tok__byte(hex, pos + k);
				if (!tok__id_char(c))
					return -1;
				id_out[k] = (char)c;
			}
			id_out[vlen] = '\0';
			return (int)vlen;
		}
		/* Check the skipped value is hex too: a bad token is refused whole. */
		for (size_t k = 0; k < vlen; k++)
			if (tok__byte(hex, pos + k) < 0)
				return -1;
		pos += vlen;
		if (pos < n) {
			if (tok__byte(hex, pos) != ';')
				return -1;
			pos++;
		}
	}
	return -1;
}

const char *http_cookie_find(const char *v, size_t vlen, const char *name, size_t *len_out)
{
	size_t nl = strlen(name);
	size_t i = 0;

	while (i < vlen) {
		while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ';'))
			i++;
		size_t start = i;
		while (i < vlen && v[i] != ';')
			i++;
		size_t end = i;
		while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
			end--;
		if (end - start > nl && memcmp(v + start, name, nl) == 0 && v[start + nl] == '=') {
			const char *val = v + start + nl + 1;
			size_t l = end - start - nl - 1;
			/* A quoted cookie value (RFC 6265 allows DQUOTEs around it). */
			if (l >= 2 && val[0] == '"' && val[l - 1] == '"') {
				val++;
				l -= 2;
			}
			*len_out = l;
			return val;
		}
	}
	*len_out = 0;
	return NULL;
}

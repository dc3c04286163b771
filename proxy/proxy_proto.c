/*
 * proxy_proto.c - the PROXY protocol header parser (see proxy_proto.h and
 * HAProxy's doc/proxy-protocol.txt). Strict: anything the specification does
 * not allow is an error, because the header decides which address every log
 * line, lookup and backend hint will carry.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "proxy_proto.h"

static const uint8_t pp__v2_sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };
static const char pp__v1_sig[] = "PROXY ";

#define PP__TLV_CRC32C 0x03
#define PP__TLV_AUTHORITY 0x02
#define PP__TLV_UNIQUE_ID 0x05
#define PP__TLV_SSL 0x20
#define PP__SSL_CLIENT_SSL 0x01

uint32_t pp_crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
	}
	return ~crc;
}

const char *pp_strerror(int rc)
{
	switch (rc) {
	case PP_ERR_SIGNATURE: return "not a PROXY protocol header";
	case PP_ERR_TOO_LONG: return "header too long";
	case PP_ERR_V1_SYNTAX: return "malformed v1 header";
	case PP_ERR_VERSION: return "unsupported v2 version";
	case PP_ERR_COMMAND: return "unknown v2 command";
	case PP_ERR_FAMILY: return "unknown v2 address family or protocol";
	case PP_ERR_LENGTH: return "v2 length too short for its addresses";
	case PP_ERR_TLV: return "malformed v2 TLV";
	case PP_ERR_CRC: return "v2 CRC32C mismatch";
	default: return "unknown error";
	}
}

/* ---- v1 ---- */

/* A decimal without leading zeros, at most max. */
static bool pp__dec(const char *s, size_t len, unsigned max, unsigned *out)
{
	unsigned v = 0;

	if (len == 0 || len > 5 || (len > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

static bool pp__v1_ipv4(const char *s, size_t len, struct sockaddr_in *sin)
{
	uint8_t b[4];
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		size_t start = i;
		while (i < len && s[i] != '.')
			i++;
		unsigned v;
		if (!pp__dec(s + start, i - start, 255, &v))
			return false;
		b[part] = (uint8_t)v;
		if (part < 3) {
			if (i >= len)
				return false;
			i++; /* the dot */
		}
	}
	if (i != len)
		return false;
	sin->sin_family = AF_INET;
	memcpy(&sin->sin_addr, b, 4);
	return true;
}

static bool pp__v1_ipv6(const char *s, size_t len, struct sockaddr_in6 *sin6)
{
	char buf[INET6_ADDRSTRLEN];

	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) != 1)
		return false;
	sin6->sin6_family = AF_INET6;
	return true;
}

/* The next space-separated token of line[*pos..end); exactly one space follows
   unless it is the last. */
static bool pp__token(const char *line, size_t end, size_t *pos, bool last,
		      const char **tok, size_t *tlen)
{
	size_t i = *pos;

	while (i < end && line[i] != ' ')
		i++;
	if (i == *pos)
		return false;
	*tok = line + *pos;
	*tlen = i - *pos;
	if (last) {
		if (i != end)
			return false;
		*pos = i;
	} else {
		if (i >= end)
			return false;
		*pos = i + 1; /* a second space makes the next token empty: refused */
	}
	return true;
}

static int pp__v1(struct pp_state *st, const uint8_t *p, size_t n, struct pp_header *out)
{
	/* The CR must sit at index PP_V1_MAX - 2 at the latest. */
	size_t lim = n < PP_V1_MAX - 1 ? n : PP_V1_MAX - 1;
	size_t i = st->scanned;

	while (i < lim && p[i] != '\r' && p[i] != '\n')
		i++;
	st->scanned = i;
	if (i >= lim)
		return n >= PP_V1_MAX - 1 ? PP_ERR_TOO_LONG : 0;
	if (p[i] == '\n')
		return PP_ERR_V1_SYNTAX; /* a lone LF */
	if (i + 1 >= n)
		return 0;
	if (p[i + 1] != '\n')
		return PP_ERR_V1_SYNTAX;
	size_t total = i + 2;

	const char *line = (const char *)p;
	size_t end = i, pos = 6;
	struct pp_header h;
	memset(&h, 0, sizeof(h));
	h.version = 1;
	h.cmd = PP_CMD_PROXY;
	h.family = AF_UNSPEC;

	if (end - pos >= 7 && memcmp(line + pos, "UNKNOWN", 7) == 0 &&
	    (end - pos == 7 || line[pos + 7] == ' ')) {
		/* The rest, if any, is ignored by the specification. */
		*out = h;
		return (int)total;
	}
	int fam;
	if (end - pos >= 5 && memcmp(line + pos, "TCP4 ", 5) == 0)
		fam = AF_INET;
	else if (end - pos >= 5 && memcmp(line + pos, "TCP6 ", 5) == 0)
		fam = AF_INET6;
	else
		return PP_ERR_V1_SYNTAX;
	pos += 5;

	const char *t[4];
	size_t tl[4];
	for (int k = 0; k < 4; k++)
		if (!pp__token(line, end, &pos, k == 3, &t[k], &tl[k]))
			return PP_ERR_V1_SYNTAX;
	unsigned sport, dport;
	if (!pp__dec(t[2], tl[2], 65535, &sport) || !pp__dec(t[3], tl[3], 65535, &dport))
		return PP_ERR_V1_SYNTAX;
	if (fam == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&h.src, *d4 = (struct sockaddr_in *)&h.dst;
		if (!pp__v1_ipv4(t[0], tl[0], s4) || !pp__v1_ipv4(t[1], tl[1], d4))
			return PP_ERR_V1_SYNTAX;
		s4->sin_port = htons((uint16_t)sport);
		d4->sin_port = htons((uint16_t)dport);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&h.src, *d6 = (struct sockaddr_in6 *)&h.dst;
		if (!pp__v1_ipv6(t[0], tl[0], s6) || !pp__v1_ipv6(t[1], tl[1], d6))
			return PP_ERR_V1_SYNTAX;
		s6->sin6_port = htons((uint16_t)sport);
		d6->sin6_port = htons((uint16_t)dport);
	}
	h.family = fam;
	*out = h;
	return (int)total;
}

/* ---- v2 ---- */

/* Sub-TLVs of the SSL TLV must tile its value exactly. */
static bool pp__tlvs_ok(const uint8_t *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		if (len - i < 3)
			return false;
		size_t vlen = ((size_t)p[i + 1] << 8) | p[i + 2];
		if (vlen > len - i - 3)
			return false;
		i += 3 + vlen;
	}
	return true;
}

static int pp__v2_tlvs(const uint8_t *p, size_t start, size_t total, struct pp_header *h)
{
	size_t i = start;

	while (i < total) {
		if (total - i < 3)
			return PP_ERR_TLV;
		uint8_t type = p[i];
		size_t vlen = ((size_t)p[i + 1] << 8) | p[i + 2];
		size_t v = i + 3;
		if (vlen > total - v)
			return PP_ERR_TLV;
		switch (type) {
		case PP__TLV_CRC32C: {
			if (vlen != 4)
				return PP_ERR_TLV;
			static const uint8_t zero[4];
			uint32_t want = ((uint32_t)p[v] << 24) | ((uint32_t)p[v + 1] << 16) |
					((uint32_t)p[v + 2] << 8) | p[v + 3];
			uint32_t crc = pp_crc32c(0, p, v);
			crc = pp_crc32c(crc, zero, 4);
			crc = pp_crc32c(crc, p + v + 4, total - v - 4);
			if (crc != want)
				return PP_ERR_CRC;
			break;
		}
		case PP__TLV_AUTHORITY:
			if (vlen > 255)
				return PP_ERR_TLV;
			break;
		case PP__TLV_UNIQUE_ID:
			if (vlen > 128)
				return PP_ERR_TLV;
			break;
		case PP__TLV_SSL:
			if (vlen < 5 || !pp__tlvs_ok(p + v + 5, vlen - 5))
				return PP_ERR_TLV;
			h->ssl = (p[v] & PP__SSL_CLIENT_SSL) != 0;
			break;
		default:
			break;
		}
		i = v + vlen;
	}
	return 0;
}

static int pp__v2(const uint8_t *p, size_t n, struct pp_header *out)
{
	if (n < PP_V2_HEADER)
		return 0;
	if ((p[12] >> 4) != 2)
		return PP_ERR_VERSION;
	unsigned cmd = p[12] & 0x0F;
	if (cmd > 1)
		return PP_ERR_COMMAND;
	unsigned fam = p[13] >> 4, proto = p[13] & 0x0F;
	if (fam > 3 || proto > 2)
		return PP_ERR_FAMILY;
	size_t len = ((size_t)p[14] << 8) | p[15];
	size_t total = PP_V2_HEADER + len;
	if (total > PP_MAX_HEADER)
		return PP_ERR_TOO_LONG;
	if (n < total)
		return 0;
	static const size_t addr_sizes[4] = { 0, 12, 36, 216 };
	size_t alen = addr_sizes[fam];
	if (len < alen)
		return PP_ERR_LENGTH;

	struct pp_header h;
	memset(&h, 0, sizeof(h));
	h.version = 2;
	h.cmd = cmd == 0 ? PP_CMD_LOCAL : PP_CMD_PROXY;
	h.family = AF_UNSPEC;
	int rc = pp__v2_tlvs(p, PP_V2_HEADER + alen, total, &h);
	if (rc < 0)
		return rc;
	if (h.cmd == PP_CMD_LOCAL) {
		h.ssl = false; /* the proxy's own connection: nothing to vouch for */
	} else if (proto == 1 && fam == 1) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&h.src, *d4 = (struct sockaddr_in *)&h.dst;
		s4->sin_family = d4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, p + 16, 4);
		memcpy(&d4->sin_addr, p + 20, 4);
		memcpy(&s4->sin_port, p + 24, 2);
		memcpy(&d4->sin_port, p + 26, 2);
		h.family = AF_INET;
	} else if (proto == 1 && fam == 2) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&h.src, *d6 = (struct sockaddr_in6 *)&h.dst;
		s6->sin6_family = d6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, p + 16, 16);
		memcpy(&d6->sin6_addr, p + 32, 16);
		memcpy(&s6->sin6_port, p + 48, 2);
		memcpy(&d6->sin6_port, p + 50, 2);
		h.family = AF_INET6;
	}
	/* UNSPEC, UDP and UNIX: valid, but the real endpoints stay in force. */
	*out = h;
	return (int)total;
}

int pp_parse(struct pp_state *st, const uint8_t *p, size_t n, struct pp_header *out)
{
	size_t k = n < sizeof(pp__v2_sig) ? n : sizeof(pp__v2_sig);
	if (memcmp(p, pp__v2_sig, k) == 0)
		return n < sizeof(pp__v2_sig) ? 0 : pp__v2(p, n, out);
	k = n < 6 ? n : 6;
	if (memcmp(p, pp__v1_sig, k) == 0) {
		if (n < 6)
			return 0;
		if (st->scanned < 6)
			st->scanned = 6;
		return pp__v1(st, p, n, out);
	}
	return PP_ERR_SIGNATURE;
}

/* ---- building ---- */

static int pp__family(const char *ip, void *addr16)
{
	if (inet_pton(AF_INET, ip, addr16) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, ip, addr16) == 1)
		return AF_INET6;
	return AF_UNSPEC;
}

static int pp__build_v1(int fam, const char *src_ip, uint16_t src_port, const char *dst_ip,
			uint16_t dst_port, uint8_t *out, size_t cap)
{
	int n;

	if (fam == AF_UNSPEC)
		n = snprintf((char *)out, cap, "PROXY UNKNOWN\r\n");
	else
		n = snprintf((char *)out, cap, "PROXY %s %s %s %u %u\r\n",
			     fam == AF_INET ? "TCP4" : "TCP6", src_ip, dst_ip, src_port, dst_port);
	return n < 0 || (size_t)n >= cap ? -1 : n;
}

int pp_build(int version, const char *src_ip, uint16_t src_port, const char *dst_ip,
	     uint16_t dst_port, bool ssl, uint8_t *out, size_t cap)
{
	uint8_t sa[16], da[16];
	int fs = pp__family(src_ip, sa), fd = pp__family(dst_ip, da);
	int fam = fs == fd ? fs : AF_UNSPEC;

	if (version == 1)
		return pp__build_v1(fam, src_ip, src_port, dst_ip, dst_port, out, cap);
	size_t alen = fam == AF_INET ? 12 : fam == AF_INET6 ? 36 : 0;
	size_t tlv = ssl ? 3 + 5 : 0;
	size_t len = PP_V2_HEADER + alen + tlv;
	if (cap < len)
		return -1;
	memcpy(out, pp__v2_sig, sizeof(pp__v2_sig));
	out[12] = 0x21; /* version 2, PROXY */
	out[13] = fam == AF_INET ? 0x11 : fam == AF_INET6 ? 0x21 : 0x00;
	out[14] = (uint8_t)((alen + tlv) >> 8);
	out[15] = (uint8_t)(alen + tlv);
	uint8_t *p = out + PP_V2_HEADER;
	size_t al = fam == AF_INET ? 4 : 16;
	if (alen != 0) {
		memcpy(p, sa, al);
		memcpy(p + al, da, al);
		p[2 * al] = (uint8_t)(src_port >> 8);
		p[2 * al + 1] = (uint8_t)src_port;
		p[2 * al + 2] = (uint8_t)(dst_port >> 8);
		p[2 * al + 3] = (uint8_t)dst_port;
		p += alen;
	}
	if (ssl) {
		/* PP2_TYPE_SSL: client flags (PP2_CLIENT_SSL), verify = 0 (ok). */
		const uint8_t t[8] = { 0x20, 0x00, 0x05, 0x01, 0, 0, 0, 0 };
		memcpy(p, t, sizeof(t));
	}
	return (int)len;
}

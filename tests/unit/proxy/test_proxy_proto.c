/*
 * Tests for proxy/proxy_proto.c. Every vector is parsed whole, one byte at a
 * time, and split in two at every offset (the caller's way: the same buffer
 * head, growing). All runs must give the same result and the same header;
 * each call gets a private buffer of exactly n bytes so ASan sees overreads.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "proxy_proto.h"

static int pt_call(struct pp_state *st, const uint8_t *p, size_t n, struct pp_header *h)
{
	uint8_t *copy = malloc(n ? n : 1);
	cr_assert_not_null(copy);
	memcpy(copy, p, n);
	int rc = pp_parse(st, copy, n, h);
	free(copy);
	return rc;
}

static void pt_same(int rc_a, const struct pp_header *a, int rc_b, const struct pp_header *b,
		    const char *how, size_t at)
{
	cr_assert_eq(rc_a, rc_b, "%s at %zu: rc %d vs %d", how, at, rc_b, rc_a);
	if (rc_a > 0)
		cr_assert(memcmp(a, b, sizeof(*a)) == 0, "%s at %zu: header differs", how, at);
}

/* Returns the whole-input result; *h is its header. */
static int pt_run(const uint8_t *p, size_t n, struct pp_header *h)
{
	struct pp_state st;
	struct pp_header hw, hx;

	memset(&hw, 0, sizeof(hw));
	memset(&st, 0, sizeof(st));
	int whole = pt_call(&st, p, n, &hw);

	/* one byte at a time */
	memset(&st, 0, sizeof(st));
	memset(&hx, 0, sizeof(hx));
	int rc = 0;
	for (size_t k = 1; k <= n; k++) {
		rc = pt_call(&st, p, k, &hx);
		if (rc != 0)
			break;
	}
	pt_same(whole, &hw, rc, &hx, "bytewise", 0);

	/* split at every offset */
	for (size_t k = 0; k <= n; k++) {
		memset(&st, 0, sizeof(st));
		memset(&hx, 0, sizeof(hx));
		rc = pt_call(&st, p, k, &hx);
		if (rc == 0)
			rc = pt_call(&st, p, n, &hx);
		pt_same(whole, &hw, rc, &hx, "split", k);
	}
	*h = hw;
	return whole;
}

static int pt_str(const char *s, struct pp_header *h)
{
	return pt_run((const uint8_t *)s, strlen(s), h);
}

static void pt_addr(const struct sockaddr_storage *ss, const char *ip, unsigned port)
{
	char buf[64];
	unsigned got;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &s->sin_addr, buf, sizeof(buf));
		got = ntohs(s->sin_port);
	} else {
		cr_assert_eq(ss->ss_family, AF_INET6);
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &s->sin6_addr, buf, sizeof(buf));
		got = ntohs(s->sin6_port);
	}
	cr_assert_str_eq(buf, ip);
	cr_assert_eq(got, port);
}

/* ---- v2 builders ---- */

static const uint8_t sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

struct v2 {
	uint8_t b[2048];
	size_t n;
};

static void v2_start(struct v2 *v, uint8_t vercmd, uint8_t fam)
{
	memcpy(v->b, sig, 12);
	v->b[12] = vercmd;
	v->b[13] = fam;
	v->n = 16;
}

static void v2_put(struct v2 *v, const void *p, size_t n)
{
	memcpy(v->b + v->n, p, n);
	v->n += n;
}

static void v2_tlv(struct v2 *v, uint8_t type, const void *p, size_t n)
{
	uint8_t h[3] = { type, (uint8_t)(n >> 8), (uint8_t)n };
	v2_put(v, h, 3);
	if (n)
		v2_put(v, p, n);
}

/* Set the length field from what was put. */
static void v2_end(struct v2 *v)
{
	size_t len = v->n - 16;
	v->b[14] = (uint8_t)(len >> 8);
	v->b[15] = (uint8_t)len;
}

static void v2_ipv4(struct v2 *v)
{
	const uint8_t a[12] = { 192, 0, 2, 55, 198, 51, 100, 7, 0xDC, 0x04, 0x00, 0x8F };
	v2_put(v, a, sizeof(a)); /* 192.0.2.55:56324 -> 198.51.100.7:143 */
}

/* ---- v1 ---- */

Test(proxy_proto, v1_tcp4)
{
	struct pp_header h;
	const char *s = "PROXY TCP4 192.0.2.1 198.51.100.7 56324 993\r\n";
	cr_assert_eq(pt_str(s, &h), (int)strlen(s));
	cr_assert_eq(h.version, 1);
	cr_assert_eq(h.cmd, PP_CMD_PROXY);
	cr_assert_eq(h.family, AF_INET);
	pt_addr(&h.src, "192.0.2.1", 56324);
	pt_addr(&h.dst, "198.51.100.7", 993);
	cr_assert(!h.ssl);
}

Test(proxy_proto, v1_trailing_bytes_not_consumed)
{
	struct pp_header h;
	const char *hdr = "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n";
	char s[128];
	snprintf(s, sizeof(s), "%sa1 CAPABILITY\r\n", hdr);
	cr_assert_eq(pt_str(s, &h), (int)strlen(hdr));
	pt_addr(&h.src, "0.0.0.0", 0);
	pt_addr(&h.dst, "255.255.255.255", 65535);
}

Test(proxy_proto, v1_tcp6)
{
	struct pp_header h;
	const char *s = "PROXY TCP6 2001:db8::1 ::1 1234 143\r\n";
	cr_assert_eq(pt_str(s, &h), (int)strlen(s));
	cr_assert_eq(h.family, AF_INET6);
	pt_addr(&h.src, "2001:db8::1", 1234);
	pt_addr(&h.dst, "::1", 143);
}

Test(proxy_proto, v1_unknown)
{
	struct pp_header h;
	cr_assert_eq(pt_str("PROXY UNKNOWN\r\n", &h), 15);
	cr_assert_eq(h.cmd, PP_CMD_PROXY);
	cr_assert_eq(h.family, AF_UNSPEC);
	const char *s = "PROXY UNKNOWN ffff::1 whatever 1 2\r\n";
	cr_assert_eq(pt_str(s, &h), (int)strlen(s));
	cr_assert_eq(h.family, AF_UNSPEC);
}

Test(proxy_proto, v1_bad)
{
	struct pp_header h;
	const char *bad[] = {
		"PROXY TCP4 192.0.2.01 198.51.100.7 56324 993\r\n",  /* leading zero in address */
		"PROXY TCP4 192.0.2.1 198.51.100.7 056324 993\r\n",  /* leading zero in port */
		"PROXY TCP4 192.0.2.1  198.51.100.7 56324 993\r\n",  /* double space */
		"PROXY TCP4 192.0.2.1 198.51.100.7 56324 993 \r\n",  /* trailing space */
		"PROXY TCP4 192.0.2.1 198.51.100.7 65536 993\r\n",   /* port range */
		"PROXY TCP4 192.0.2.256 198.51.100.7 1 993\r\n",     /* octet range */
		"PROXY TCP4 192.0.2 198.51.100.7 1 993\r\n",         /* three octets */
		"PROXY TCP4 2001:db8::1 198.51.100.7 1 993\r\n",     /* family mismatch */
		"PROXY TCP6 192.0.2.1 ::1 1 993\r\n",                /* family mismatch */
		"PROXY TCP4 192.0.2.1 198.51.100.7 56324\r\n",       /* missing port */
		"PROXY TCP5 192.0.2.1 198.51.100.7 1 2\r\n",         /* protocol */
		"PROXY TCP4 192.0.2.1 198.51.100.7 1 2\n",           /* lone LF */
		"PROXY TCP4 192.0.2.1 198.51.100.7 1 2\rX",          /* lone CR */
		"PROXY UNKNOWNX\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(pt_str(bad[i], &h), PP_ERR_V1_SYNTAX, "vector %zu", i);
}

Test(proxy_proto, v1_truncated_needs_more)
{
	struct pp_header h;
	cr_assert_eq(pt_str("PROXY TCP4 192.0.2.1 198.51.100.7 56324 993", &h), 0);
	cr_assert_eq(pt_str("PROXY TCP4 192.0.2.1 198.51.100.7 56324 993\r", &h), 0);
	cr_assert_eq(pt_str("PROX", &h), 0);
}

Test(proxy_proto, v1_too_long)
{
	struct pp_header h;
	char s[200];
	/* 105 bytes + CRLF = 107: the longest allowed line */
	memset(s, 0, sizeof(s));
	memcpy(s, "PROXY UNKNOWN ", 14);
	memset(s + 14, 'x', 105 - 14);
	memcpy(s + 105, "\r\n", 2);
	cr_assert_eq(pt_str(s, &h), 107);
	/* 108 bytes: refused */
	memset(s + 14, 'x', 106 - 14);
	memcpy(s + 106, "\r\n", 3);
	cr_assert_eq(pt_str(s, &h), PP_ERR_TOO_LONG);
	/* no line end at all */
	memset(s + 14, 'x', 150);
	s[164] = '\0';
	cr_assert_eq(pt_str(s, &h), PP_ERR_TOO_LONG);
}

Test(proxy_proto, bad_signature)
{
	struct pp_header h;
	cr_assert_eq(pt_str("a1 LOGIN x y\r\n", &h), PP_ERR_SIGNATURE);
	cr_assert_eq(pt_str("PROXYTCP4\r\n", &h), PP_ERR_SIGNATURE);
	const uint8_t almost[16] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x55, 0x0A, 0x21, 0x11, 0, 12 };
	cr_assert_eq(pt_run(almost, sizeof(almost), &h), PP_ERR_SIGNATURE);
	const uint8_t tls_hello[6] = { 0x16, 0x03, 0x01, 0x00, 0xA5, 0x01 };
	cr_assert_eq(pt_run(tls_hello, sizeof(tls_hello), &h), PP_ERR_SIGNATURE);
}

/* ---- v2 ---- */

Test(proxy_proto, v2_proxy_ipv4)
{
	struct v2 v;
	struct pp_header h;
	v2_start(&v, 0x21, 0x11);
	v2_ipv4(&v);
	v2_end(&v);
	cr_assert_eq(pt_run(v.b, v.n, &h), 28);
	cr_assert_eq(h.version, 2);
	cr_assert_eq(h.cmd, PP_CMD_PROXY);
	cr_assert_eq(h.family, AF_INET);
	pt_addr(&h.src, "192.0.2.55", 56324);
	pt_addr(&h.dst, "198.51.100.7", 143);
	/* protocol bytes after the header are left alone */
	v2_put(&v, "a1 NOOP\r\n", 9);
	cr_assert_eq(pt_run(v.b, v.n, &h), 28);
}

Test(proxy_proto, v2_proxy_ipv6)
{
	struct v2 v;
	struct pp_header h;
	struct in6_addr a, b;
	inet_pton(AF_INET6, "2001:db8::55", &a);
	inet_pton(AF_INET6, "2001:db8:1::7", &b);
	v2_start(&v, 0x21, 0x21);
	v2_put(&v, &a, 16);
	v2_put(&v, &b, 16);
	v2_put(&v, "\x04\xD2\x00\x8F", 4);
	v2_end(&v);
	cr_assert_eq(pt_run(v.b, v.n, &h), 52);
	cr_assert_eq(h.family, AF_INET6);
	pt_addr(&h.src, "2001:db8::55", 1234);
	pt_addr(&h.dst, "2001:db8:1::7", 143);
}

Test(proxy_proto, v2_local)
{
	struct v2 v;
	struct pp_header h;
	v2_start(&v, 0x20, 0x00);
	v2_end(&v);
	cr_assert_eq(pt_run(v.b, v.n, &h), 16);
	cr_assert_eq(h.cmd, PP_CMD_LOCAL);
	cr_assert_eq(h.family, AF_UNSPEC);

	/* LOCAL with addresses and TLVs: all skipped, real endpoints kept */
	v2_start(&v, 0x20, 0x11);
	v2_ipv4(&v);
	v2_tlv(&v, 0x04, "\0\0\0", 3);
	v2_tlv(&v, 0x20, "\x01\0\0\0\0", 5);
	v2_end(&v);
	cr_assert_eq(pt_run(v.b, v.n, &h), (int)v.n);
	cr_assert_eq(h.cmd, PP_CMD_LOCAL);
	cr_assert_eq(h.family, AF_UNSPEC);
	cr_assert(!h.ssl);
}

Test(proxy_proto, v2_unspec_udp_unix)
{
	struct v2 v;
	struct pp_header h;
	v2_start(&v, 0x21, 0x00);
	v2_end(&v);
	cr_assert_eq(pt_run(v.b, v.n, &h), 16);
	cr_assert_eq(h.family, AF_UNSPEC);
	v2_start(&v, 0x21, 0x12);
	v2_ipv4(&v);
	v2_end(&v);
	cr_assert_eq(pt_run(v.b, v.n, &h), 28);
	cr_assert_eq(h.family, AF_UNSPEC);
	v2_start(&v, 0x21, 0x31);
	uint8_t un[216] = { '/' };
	v2_put(&v, un, sizeof(un));
	v2_end(&v);
	cr_assert_eq(pt_run(v.b, v.n, &h), 232);
	cr_assert_eq(h.family, AF_UNSPEC);
}

static void v2_with_crc(struct v2 *v, bool good)
{
	v2_start(v, 0x21, 0x11);
	v2_ipv4(v);
	v2_tlv(v, 0x05, "id-42", 5);
	size_t at = v->n + 3;
	v2_tlv(v, 0x03, "\0\0\0\0", 4);
	v2_end(v);
	uint32_t crc = pp_crc32c(0, v->b, v->n);
	if (!good)
		crc ^= 1;
	v->b[at] = (uint8_t)(crc >> 24);
	v->b[at + 1] = (uint8_t)(crc >> 16);
	v->b[at + 2] = (uint8_t)(crc >> 8);
	v->b[at + 3] = (uint8_t)crc;
}

Test(proxy_proto, crc32c)
{
	/* the standard check value */
	cr_assert_eq(pp_crc32c(0, (const uint8_t *)"123456789", 9), 0xE3069283u);
	struct v2 v;
	struct pp_header h;
	v2_with_crc(&v, true);
	cr_assert_eq(pt_run(v.b, v.n, &h), (int)v.n);
	pt_addr(&h.src, "192.0.2.55", 56324);
	v2_with_crc(&v, false);
	cr_assert_eq(pt_run(v.b, v.n, &h), PP_ERR_CRC);
	/* CRC32C of the wrong length */
	v2_start(&v, 0x21, 0x11);
	v2_ipv4(&v);
	v2_tlv(&v, 0x03, "\0\0\0", 3);
	v2_end(&v);
	cr_assert_eq(pt_run(v.b, v.n, &h), PP_ERR_TLV);
}

Test(proxy_proto, ssl_tlv)
{
	struct v2 v;
	struct pp_header h;
	v2_start(&v, 0x21, 0x11);
	v2_ipv4(&v);
	/* client=SSL, verify=0, sub-TLV VERSION "TLSv1.3" */
	uint8_t ssl[5 + 3 + 7] = { 0x01, 0, 0, 0, 0, 0x21, 0, 7, 'T', 'L', 'S', 'v', '1', '.', '3' };
	v2_tlv(&v, 0x20, ssl, sizeof(ssl));
	v2_end(&v);
	cr_assert_eq(pt_run(v.b, v.n, &h), (int)v.n);
	cr_assert(h.ssl);
	/* client flags without SSL */
	v2_start(&v, 0x21, 0x11);
	v2_ipv4(&v);
	v2_tlv(&v, 0x20, "\x00\0\0\0\0", 5);
	v2_end(&v);
	cr_assert_eq(pt_run(v.b, v.n, &h), (int)v.n);
	cr_assert(!h.ssl);
	/* sub-TLV overrunning the SSL TLV */
	v2_start(&v, 0x21, 0x11);
	v2_ipv4(&v);
	ssl[7] = 9;
	v2_tlv(&v, 0x20, ssl, sizeof(ssl));
	v2_end(&v);
	cr_assert_eq(pt_run(v.b, v.n, &h), PP_ERR_TLV);
}

Test(proxy_proto, tlv_limits)
{
	struct v2 v;
	struct pp_header h;
	uint8_t big[300];
	memset(big, 'a', sizeof(big));
	v2_start(&v, 0x21, 0x11);
	v2_ipv4(&v);
	v2_tlv(&v, 0x02, big, 255);
	v2_tlv(&v, 0x05, big, 128);
	v2_end(&v);
	cr_assert_eq(pt_run(v.b, v.n, &h), (int)v.n);
	v2_start(&v, 0x21, 0x11);
	v2_ipv4(&v);
	v2_tlv(&v, 0x02, big, 256);
	v2_end(&v);
	cr_assert_eq(pt_run(v.b, v.n, &h), PP_ERR_TLV);
	v2_start(&v, 0x21, 0x11);
	v2_ipv4(&v);
	v2_tlv(&v, 0x05, big, 129);
	v2_end(&v);
	cr_assert_eq(pt_run(v.b, v.n, &h), PP_ERR_TLV);
}

Test(proxy_proto, tlv_overrun)
{
	struct v2 v;
	struct pp_header h;
	v2_start(&v, 0x21, 0x11);
	v2_ipv4(&v);
	v2_put(&v, "\x04\x00\x09zz", 5); /* says 9 bytes, 2 left */
	v2_end(&v);
	cr_assert_eq(pt_run(v.b, v.n, &h), PP_ERR_TLV);
	/* a TLV header cut short by the length */
	v2_start(&v, 0x21, 0x11);
	v2_ipv4(&v);
	v2_put(&v, "\x04\x00", 2);
	v2_end(&v);
	cr_assert_eq(pt_run(v.b, v.n, &h), PP_ERR_TLV);
}

Test(proxy_proto, v2_bad_fixed_part)
{
	struct v2 v;
	struct pp_header h;
	v2_start(&v, 0x11, 0x11); /* version 1 */
	v2_ipv4(&v);
	v2_end(&v);
	cr_assert_eq(pt_run(v.b, v.n, &h), PP_ERR_VERSION);
	v2_start(&v, 0x22, 0x11); /* command 2 */
	v2_ipv4(&v);
	v2_end(&v);
	cr_assert_eq(pt_run(v.b, v.n, &h), PP_ERR_COMMAND);
	const uint8_t fams[] = { 0x41, 0x13, 0x10 + 0x0F, 0xF1 };
	for (size_t i = 0; i < sizeof(fams); i++) {
		v2_start(&v, 0x21, fams[i]);
		v2_ipv4(&v);
		v2_end(&v);
		cr_assert_eq(pt_run(v.b, v.n, &h), PP_ERR_FAMILY, "family %02x", fams[i]);
	}
	/* length below the address block */
	v2_start(&v, 0x21, 0x21);
	v2_ipv4(&v);
	v2_end(&v);
	cr_assert_eq(pt_run(v.b, v.n, &h), PP_ERR_LENGTH);
}

Test(proxy_proto, v2_truncated_and_oversized)
{
	struct v2 v;
	struct pp_header h;
	v2_start(&v, 0x21, 0x11);
	v2_ipv4(&v);
	v2_end(&v);
	cr_assert_eq(pt_run(v.b, v.n - 1, &h), 0);
	cr_assert_eq(pt_run(v.b, 15, &h), 0);
	cr_assert_eq(pt_run(v.b, 7, &h), 0);
	/* 16 + 1521 > 1536 */
	v2_start(&v, 0x21, 0x11);
	v.b[14] = (uint8_t)(1521 >> 8);
	v.b[15] = (uint8_t)1521;
	cr_assert_eq(pt_run(v.b, 16, &h), PP_ERR_TOO_LONG);
	/* exactly 1536 is fine */
	v2_start(&v, 0x21, 0x11);
	v2_ipv4(&v);
	uint8_t pad[1520 - 12 - 3];
	memset(pad, 0, sizeof(pad));
	v2_tlv(&v, 0x04, pad, sizeof(pad));
	v2_end(&v);
	cr_assert_eq(v.n, 1536);
	cr_assert_eq(pt_run(v.b, v.n, &h), 1536);
}

Test(proxy_proto, strerror)
{
	for (int rc = -9; rc <= -1; rc++)
		cr_assert_str_neq(pp_strerror(rc), "unknown error");
}

/* What pp_build writes, pp_parse (HAProxy's format, tested above) reads
   back with the same endpoints. */
static void pt_build_round_trip(int version, const char *src, uint16_t sport, const char *dst,
				uint16_t dport, bool ssl, int family)
{
	uint8_t out[128];
	int n = pp_build(version, src, sport, dst, dport, ssl, out, sizeof(out));
	cr_assert_gt(n, 0, "v%d %s -> %s", version, src, dst);
	struct pp_state st = { 0 };
	struct pp_header h;
	cr_assert_eq(pp_parse(&st, out, (size_t)n, &h), n, "v%d %s -> %s", version, src, dst);
	cr_expect_eq(h.version, version);
	cr_expect_eq(h.cmd, PP_CMD_PROXY);
	cr_expect_eq(h.family, family);
	if (family == AF_UNSPEC)
		return;
	char a[64], b[64];
	uint16_t ps, pd;
	if (family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)&h.src, *d4 = (const void *)&h.dst;
		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		inet_ntop(AF_INET, &d4->sin_addr, b, sizeof(b));
		ps = ntohs(s4->sin_port);
		pd = ntohs(d4->sin_port);
	} else {
		const struct sockaddr_in6 *s6 = (const void *)&h.src, *d6 = (const void *)&h.dst;
		inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
		inet_ntop(AF_INET6, &d6->sin6_addr, b, sizeof(b));
		ps = ntohs(s6->sin6_port);
		pd = ntohs(d6->sin6_port);
	}
	cr_expect_str_eq(a, src);
	cr_expect_str_eq(b, dst);
	cr_expect_eq(ps, sport);
	cr_expect_eq(pd, dport);
	if (version == 2)
		cr_expect_eq(h.ssl, ssl);
}

Test(proxy_proto, build_reads_back)
{
	for (int v = 1; v <= 2; v++) {
		pt_build_round_trip(v, "192.0.2.10", 51234, "127.0.0.1", 5222, false, AF_INET);
		pt_build_round_trip(v, "2001:db8::7", 1, "::1", 65535, v == 2, AF_INET6);
		pt_build_round_trip(v, "192.0.2.10", 5, "::1", 6, false, AF_UNSPEC);
		pt_build_round_trip(v, "?", 5, "?", 6, false, AF_UNSPEC);
	}
	pt_build_round_trip(2, "192.0.2.10", 443, "10.0.0.1", 8636, true, AF_INET);
}

Test(proxy_proto, build_exact_bytes_and_short_room)
{
	uint8_t out[128];
	int n = pp_build(1, "192.0.2.10", 51234, "127.0.0.1", 5222, false, out, sizeof(out));
	cr_assert_eq(n, 44);
	cr_expect(memcmp(out, "PROXY TCP4 192.0.2.10 127.0.0.1 51234 5222\r\n", 44) == 0);
	cr_expect_eq(pp_build(1, "192.0.2.10", 51234, "127.0.0.1", 5222, false, out, 44), -1);
	n = pp_build(2, "192.0.2.10", 1, "127.0.0.1", 2, false, out, sizeof(out));
	cr_assert_eq(n, 28);
	cr_expect_eq(out[12], 0x21);
	cr_expect_eq(out[13], 0x11);
	cr_expect_eq(out[15], 12);
	cr_expect_eq(pp_build(2, "192.0.2.10", 1, "127.0.0.1", 2, false, out, 27), -1);
}

/*
 * proxy_proto.h - pure, resumable parser for the PROXY protocol header
 * (versions 1 and 2) that a load balancer such as HAProxy sends before the
 * client's first byte.
 *
 * No I/O, no allocation. The caller keeps the bytes read so far in one
 * buffer, starting at the connection's first byte, and calls pp_parse() again
 * with the whole buffer (same head, longer n) as more arrive. Only call it on
 * listeners configured for the PROXY protocol: the header is never guessed.
 */
#ifndef GATEHOUSE_PROXY_PROTO_H
#define GATEHOUSE_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PP_V1_MAX 107       /* a v1 line, CRLF included */
#define PP_V2_HEADER 16     /* fixed part of a v2 header */
#define PP_MAX_HEADER 1536  /* a v2 header (16 + length) above this is refused */

/* Return values of pp_parse() below zero. */
enum pp_error {
	PP_ERR_SIGNATURE = -1, /* neither "PROXY " nor the v2 signature */
	PP_ERR_TOO_LONG = -2,  /* v1 without CRLF within 107 bytes, v2 over PP_MAX_HEADER */
	PP_ERR_V1_SYNTAX = -3, /* malformed v1 line */
	PP_ERR_VERSION = -4,   /* v2 version nibble is not 2 */
	PP_ERR_COMMAND = -5,   /* v2 command is neither LOCAL nor PROXY */
	PP_ERR_FAMILY = -6,    /* v2 unknown address family or transport */
	PP_ERR_LENGTH = -7,    /* v2 length too short for the address block */
	PP_ERR_TLV = -8,       /* a TLV overruns the header or breaks its own rules */
	PP_ERR_CRC = -9,       /* CRC32C TLV does not match */
};

enum pp_command {
	PP_CMD_LOCAL = 0,      /* health check by the proxy itself: keep the real endpoints */
	PP_CMD_PROXY,          /* relayed connection: addresses below, if family says so */
};

/* Byte-level state kept between calls. Zero it before the first call. */
struct pp_state {
	size_t scanned;        /* v1: bytes already searched for the line end */
};

struct pp_header {
	int version;           /* 1 or 2 */
	enum pp_command cmd;
	/* AF_INET or AF_INET6 when src/dst carry the client's addresses (TCP);
	   AF_UNSPEC otherwise (v1 UNKNOWN, v2 UNSPEC, UDP, UNIX, LOCAL): then the
	   connection's own endpoints stay in force. */
	int family;
	struct sockaddr_storage src;
	struct sockaddr_storage dst;
	bool ssl;              /* v2 SSL TLV: the client spoke TLS to the proxy */
};

/*
 * Parse the header at the start of p[0..n). Returns the header's length
 * (> 0; bytes after it belong to the protocol) with *out filled, 0 when more
 * bytes are needed, or a negative pp_error. out is written only on success.
 */
int pp_parse(struct pp_state *st, const uint8_t *p, size_t n, struct pp_header *out);

/* A short English name for a pp_parse() error, for logs. */
const char *pp_strerror(int rc);

/*
 * Write the header gatehouse sends to an upstream that expects one (TCP
 * listeners, `proxy_protocol` on their upstream): version 1 or 2, the
 * client's address (src_ip, src_port) and the address it reached
 * (dst_ip, dst_port), both text as getnameinfo writes them; with ssl, v2
 * adds an SSL TLV saying the client spoke TLS to gatehouse. Addresses of
 * two families (or unparsable) become v1 "PROXY UNKNOWN" / a v2 PROXY
 * header with family UNSPEC. Returns the length, or -1 if cap is short
 * (PP_V1_MAX and 16 + 36 + 8 bytes always suffice).
 */
int pp_build(int version, const char *src_ip, uint16_t src_port, const char *dst_ip,
	     uint16_t dst_port, bool ssl, uint8_t *out, size_t cap);

/* CRC32C (Castagnoli) of p[0..n), continuing from crc (start with 0). */
uint32_t pp_crc32c(uint32_t crc, const uint8_t *p, size_t n);

#endif

/*
 * sasl.h - SASL payload helpers: base64 and the PLAIN message (RFC 4616).
 * Pure functions, no allocation.
 */
#ifndef GATEHOUSE_SASL_H
#define GATEHOUSE_SASL_H

#include <stddef.h>
#include <stdint.h>

/* Bytes needed by sasl_b64_encode for n input bytes, including the NUL. */
#define SASL_B64_ENCODED_SIZE(n) ((((n) + 2) / 3) * 4 + 1)

/* Encode n bytes; writes a NUL-terminated string and returns its length. */
size_t sasl_b64_encode(const uint8_t *in, size_t n, char *out);

/*
 * Decode standard base64 (RFC 4648 alphabet, '=' padding required to a
 * multiple of 4; no whitespace). Returns the decoded length, or -1 when the
 * input is malformed or the result would exceed outcap.
 */
int sasl_b64_decode(const char *in, size_t n, uint8_t *out, size_t outcap);

struct sasl_span {
	uint32_t off;
	uint32_t len;
};

/* Parsed PLAIN message: spans into the decoded buffer. */
struct sasl_plain {
	struct sasl_span authz; /* may be empty */
	struct sasl_span authc; /* never empty */
	struct sasl_span pass;
};

/*
 * Split a decoded PLAIN message "authzid NUL authcid NUL passwd".
 * Returns 0, or -1 when there are not exactly two NULs or authcid is empty.
 */
int sasl_plain_parse(const uint8_t *p, size_t n, struct sasl_plain *out);

#endif

/*
 * sasl.h - SASL payload helpers shared by the IMAP and POP3 front ends:
 * base64, SASL response lines, the PLAIN message (RFC 4616) and the user
 * inside an XOAUTH2 or OAUTHBEARER message. Pure functions, no allocation,
 * except the sasl_secret pair, which owns the buffer a response decodes into.
 */
#ifndef GATEHOUSE_SASL_H
#define GATEHOUSE_SASL_H

#include <stdbool.h>
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

/* Room sasl_response_decode needs for a response of n characters. */
#define SASL_RESPONSE_DECODED_MAX(n) ((n) / 4 * 3 + 1)

/*
 * Decode one SASL response as clients send it after a "+" continuation or
 * as an initial response: "" and "=" are the empty response (RFC 4959,
 * RFC 5034), anything else is strict base64. Returns the decoded length, or
 * -1 when malformed or longer than outcap.
 */
int sasl_response_decode(const uint8_t *in, size_t n, uint8_t *out, size_t outcap);

/*
 * A decoded SASL response: it may hold a password or a token, so it carries
 * the size of its own block and the only way to let it go is
 * sasl_secret_free, which wipes all of it. Wipe sizes counted at the call
 * site are how an overflow (more than the block) or a leftover secret (less
 * than was written) creeps in.
 */
struct sasl_secret {
	uint8_t *p;   /* malloc'ed, or NULL */
	size_t cap;   /* bytes at p: what decoding may write, and what is wiped */
	size_t len;   /* decoded bytes (0 when decoding failed) */
};

/*
 * Decode one SASL response of n characters (as sasl_response_decode) into a
 * fresh buffer described by *out. Returns 0, or -1 on malformed base64 or no
 * memory. Either way *out must be released with sasl_secret_free: a failed
 * decode may have written part of the secret before it stopped.
 */
int sasl_secret_decode(const uint8_t *b64, size_t n, struct sasl_secret *out);

/* Wipe all sec->cap bytes, free them and zero *sec. Safe on a zeroed or
   already freed secret. */
void sasl_secret_free(struct sasl_secret *sec);

/*
 * Copy a decoded field (a name or a password) into dst as a C string.
 * false when it needs more than cap - 1 bytes or contains a NUL; dst is
 * then untouched.
 */
bool sasl_take(char *dst, size_t cap, const uint8_t *src, size_t n);

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

/*
 * Base64 of the PLAIN message "authz NUL authc NUL pass" (RFC 4616), written
 * to out, which must hold SASL_B64_ENCODED_SIZE(az + ac + pl + 2) bytes,
 * without assembling the message (and so the password) anywhere else.
 * Returns the encoded length; out is NUL-terminated.
 */
size_t sasl_plain_encode(const char *authz, size_t az, const char *authc, size_t ac,
			 const char *pass, size_t pl, char *out);

/* Parsed XOAUTH2 message: spans into the decoded buffer. */
struct sasl_xoauth2 {
	struct sasl_span user;  /* never empty */
	struct sasl_span token; /* the bearer token, never empty */
};

/*
 * Split a decoded XOAUTH2 message "user=U ^A auth=Bearer T ^A ^A" (Google's
 * format; other "key=value" pairs are skipped). gatehouse only needs the
 * user, to look the route up; the message itself goes to the backend as the
 * client sent it. Returns 0, or -1 when the framing is wrong, a NUL occurs,
 * user or auth is missing, repeated or empty, or auth is not "Bearer ...".
 */
int sasl_xoauth2_parse(const uint8_t *p, size_t n, struct sasl_xoauth2 *out);

/*
 * Split a decoded OAUTHBEARER message (RFC 7628 section 3.1):
 * "n,a=U,^A key=value ^A ... auth=Bearer T ^A ^A". Like XOAUTH2, gatehouse
 * only needs the user (the GS2 authzid) for the lookup and replays the
 * message itself. The same struct as XOAUTH2 carries the spans. Returns 0,
 * or -1 when the GS2 header is not "n," or "y," (channel binding, "p=",
 * cannot survive a proxy), the authzid is missing, empty or escaped (=2C,
 * =3D: no mail address needs them), a NUL occurs, a key is not letters, a
 * pair has no '=', auth is missing, repeated or not "Bearer <token>", or
 * the framing is wrong.
 */
int sasl_oauthbearer_parse(const uint8_t *p, size_t n, struct sasl_xoauth2 *out);

#endif

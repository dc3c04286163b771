/*
 * http_location.h - which location of a table (conf.h: struct
 * conf_location_table) a request path gets, and the normalized path it is
 * matched on (protocols/http_location.c). Pure: no I/O, no allocation per
 * call; the table belongs to a configuration snapshot, the scratch to one
 * thread.
 */
#ifndef GATEHOUSE_HTTP_LOCATION_H
#define GATEHOUSE_HTTP_LOCATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"

/* Errors of http_path_normalize. */
#define HTTP_PATH_EBAD (-1)   /* no leading '/', a bad %XX, a control byte or space -> 400 */
#define HTTP_PATH_EABOVE (-2) /* a ".." segment would climb above "/" -> 400 */
#define HTTP_PATH_ESPACE (-3) /* out has less than the path's length + 1 bytes */

/*
 * Normalize the path of an origin-form request-target p[0..n): the bytes
 * up to the first '?' or '#' (or n), whose count goes to *consumed_out (so
 * p + *consumed_out is the query, if any). The result, NUL-terminated in
 * out (cap bytes; the path's length + 1 always suffices: it never grows):
 *   - %XX of an unreserved character (ALPHA DIGIT - . _ ~) is decoded;
 *     any other %XX stays encoded with upper-case hex ("%2f" -> "%2F"), so
 *     an encoded '/', '?', NUL or '%' never becomes a separator here;
 *   - empty segments are merged ("//" -> "/");
 *   - "." segments are dropped and ".." ones remove the segment before
 *     them, after decoding ("/a/%2e%2e/b" -> "/b"); one above "/" is an
 *     error, never silently clamped;
 *   - a trailing "/." or "/.." leaves a trailing '/' ("/a/b/.." -> "/a/").
 * Bytes >= 0x80 are kept as they are. Returns the length (>= 1) or one of
 * HTTP_PATH_E*. Idempotent: normalizing a result gives it back.
 */
int http_path_normalize(const uint8_t *p, size_t n, char *out, size_t cap, size_t *consumed_out);

/*
 * Regex matching needs a PCRE2 match block; one per thread (a worker makes
 * one at start), since a table is shared by every worker. NULL on no
 * memory. Free with http_location_scratch_free (NULL is fine).
 */
struct http_location_scratch;
struct http_location_scratch *http_location_scratch_new(void);
void http_location_scratch_free(struct http_location_scratch *sc);

/*
 * The location of t (may be NULL: none) for the normalized path[0..len),
 * with nginx's precedence: an exact ("=") location equal to the path; else
 * the longest prefix location ("/p" or "^~ /p") that starts the path, which
 * wins at once if it is "^~"; else the first regex ("~", "~*"), in table
 * order, that matches; else that longest prefix; else NULL. Prefixes are
 * compared byte for byte (case-sensitive, as nginx on Linux). A regex that
 * fails to run (its match limit reached: a pathological pattern) counts as
 * not matching. sc is required if t has regexes (else they never match).
 * A linear scan: tables hold tens of locations, and a scan of them costs
 * less than the request's parsing.
 */
const struct conf_location *http_location_match(const struct conf_location_table *t,
						const char *path, size_t len,
						struct http_location_scratch *sc);

/*
 * The path the location sends on (upstream) or looks up (static): for a
 * prefix or exact location with rewrite_prefix, path[0..len) with the
 * matched prefix replaced by it ("/services/chats/events/x" with
 * rewrite_prefix "/events" under "/services/chats/events" -> "/events/x";
 * a doubled '/' at the seam is merged); otherwise path unchanged. Writes a
 * NUL-terminated result into out (cap bytes; not overlapping path).
 * Returns its length, or -1 if cap is too small.
 */
int http_location_rewrite(const struct conf_location *l, const char *path, size_t len,
			  char *out, size_t cap);

/*
 * The answer a location makes itself, before any upstream or file: the
 * require_cookie guard (no such cookie, or an empty one: 307 to
 * login_redirect), a fixed answer (return), a redirect, or a logout (one
 * expiring Set-Cookie per cookie, HttpOnly, Secure, SameSite=Strict, then
 * the redirect). The strings point into the location (the snapshot).
 */
struct http_location_answer {
	int status;
	const char *location;     /* Location value, or NULL */
	const char *content_type; /* for body, or NULL (no body) */
	const char *body;
	size_t body_len;
	size_t headers_len;       /* header lines written into the caller's buffer */
	size_t own_len;           /* of which the answer's own (Set-Cookie), before l's add_headers */
};

/* Room http_location_local may need for header lines: 32 Set-Cookie lines
   and the location's add_headers (at most 4096 bytes, checked at load). */
#define HTTP_LOCATION_HEADERS_MAX 12288

/*
 * Does location l answer this request itself? cookie is the request's
 * Cookie header value (NULL if none). If so, fills *out, writes its header
 * lines (CRLF-terminated: Set-Cookie, then l's add_headers) into hdr (cap
 * bytes, HTTP_LOCATION_HEADERS_MAX suffice) and returns true; false when
 * the request goes on to the upstream group or the static files (their
 * responses get l's add_headers from http_location_add_headers). Pure.
 */
bool http_location_local(const struct conf_location *l, const char *cookie, size_t cookie_len,
			 char *hdr, size_t cap, struct http_location_answer *out);

/* Write l's add_headers as header lines into hdr (cap bytes). Returns the
   length, or -1 if cap is too small. */
int http_location_add_headers(const struct conf_location *l, char *hdr, size_t cap);

#endif

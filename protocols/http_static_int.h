/*
 * http_static_int.h - the pure header work of static files
 * (http_static_hdr.c), shared with http_static.c and its tests: MIME
 * types, ETag and dates, conditional requests, Range, Accept-Encoding.
 * Private to protocols/.
 */
#ifndef GATEHOUSE_HTTP_STATIC_INT_H
#define GATEHOUSE_HTTP_STATIC_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "http_static.h"

#define HTTP_STATIC_ETAG_MAX 40
#define HTTP_STATIC_DATE_MAX 32

/* Content encodings of precompressed siblings (a bit set). */
#define HTTP_STATIC_ENC_BR 0x1u
#define HTTP_STATIC_ENC_GZIP 0x2u

/* The Content-Type for path's extension (application/octet-stream if unknown). */
const char *http_static__mime(const char *path);

/* nginx's ETag: "<mtime hex>-<size hex>", quotes included. */
void http_static__etag(char *out, size_t cap, time_t mtime, uint64_t size);

/* An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), and its parse (only
   that form; false for anything else). */
void http_static__date(char *out, size_t cap, time_t t);
bool http_static__parse_date(const char *p, size_t n, time_t *out);

/* Does If-None-Match v name etag (weak comparison; "*" matches)? */
bool http_static__etag_match(struct http_static_hval v, const char *etag);

/*
 * A Range header against a file of size bytes: 1 and the one range in
 * *start / *len; 0 when it is to be ignored (absent, not "bytes=", bad
 * syntax, several ranges: the whole file is sent); -1 when unsatisfiable
 * (416).
 */
int http_static__range(struct http_static_hval v, uint64_t size, uint64_t *start, uint64_t *len);

/* The encodings of HTTP_STATIC_ENC_* that Accept-Encoding v accepts
   (q > 0, by name or by "*"). */
unsigned http_static__encodings(struct http_static_hval v);

/*
 * Open rel (relative to the directory rootfd, "" = itself) one component
 * at a time with O_NOFOLLOW: no symlink anywhere. What http_static.c uses
 * where openat2 is missing; an fd or -1 with errno (ELOOP for a symlink).
 */
int http_static__open_nofollow(int rootfd, const char *rel, int flags);

#endif

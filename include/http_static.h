/*
 * http_static.h - static files of a `root` location, as a module with no
 * session in it (protocols/http_static.c, http_static_hdr.c): a request
 * (root, path, method, a few request headers) becomes a response plan
 * (status, header lines, and an open file with the range to send), and
 * the body is read from the plan in bounded pieces.
 *
 * Blocking. http_static_plan and http_static_read touch the disk (open,
 * fstat, pread), so the event loop never calls them (CONVENTIONS rule 8):
 * the session runs them on libuv's thread pool (uv_queue_work, like the
 * memcached calls) and continues in the after-work callback, one piece at
 * a time, the next piece asked for when the client has taken the last
 * (its write callback): one piece of memory per response, and a slow disk
 * holds a pool thread, never a worker. Why not an open-file cache first
 * (nginx's open_file_cache): a miss needs the pool anyway, and a cache
 * must decide how stale it may serve a file that a deploy replaced; it can
 * go in front of http_static_plan later, measured, for small hot files.
 * A plan is used by one thread at a time (the pool thread, then the loop
 * after the hand-over that uv_queue_work orders).
 */
#ifndef GATEHOUSE_HTTP_STATIC_H
#define GATEHOUSE_HTTP_STATIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Room for the header lines of a plan (Cache-Control is bounded at load). */
#define HTTP_STATIC_HEADERS_MAX 2048
/* The largest piece http_static_read is asked for; the caller's buffer. */
#define HTTP_STATIC_PIECE 65536

/* A request header's value as received (p NULL or n 0: absent). */
struct http_static_hval {
	const char *p;
	size_t n;
};

struct http_static_req {
	const char *root;          /* the location's directory, absolute */
	const char *path;          /* normalized (http_path_normalize) and rewritten
				      (http_location_rewrite), NUL-terminated */
	const char *client_path;   /* the client's normalized path, for the 301 that adds
				      a '/' to a directory; NULL = 404 instead */
	const char *index;         /* for paths ending in '/'; NULL = none */
	const char *fallback;      /* for paths that do not exist ("/index.html"); NULL = 404 */
	const char *cache_control; /* NULL = no Cache-Control */
	const char *method;        /* "GET", "HEAD", ...: others get 405 */
	struct http_static_hval if_none_match, if_modified_since, if_range, range, accept_encoding;
};

struct http_static_plan {
	int status;        /* 200, 206, 301, 304, 403, 404, 405, 416, 500 */
	/* Header lines, each ending in CRLF, to write after the status line
	   (Content-Type, Content-Length, ETag, Last-Modified, Accept-Ranges,
	   Content-Range, Content-Encoding, Vary, Cache-Control, Location,
	   Allow, as the status needs). 403, 404 and 500 carry none: the
	   caller answers them with its own error page (as 405 and 416, with
	   their Allow and Content-Range lines). */
	char headers[HTTP_STATIC_HEADERS_MAX];
	size_t headers_len;
	int fd;            /* open while body bytes remain to send, else -1 */
	uint64_t offset;   /* first byte of the file to send */
	uint64_t length;   /* bytes to send (0 for HEAD, 304, errors) */
	uint64_t sent;     /* bytes read so far by http_static_read */
	const char *why;   /* a short reason for the log (static text, no client bytes) */
};

/*
 * Plan the answer to rq (blocking: run it on the thread pool). Never fails
 * as a function: every outcome is a status in *out (500 when the file
 * system misbehaves). Nothing outside rq->root is opened: "..", encoded
 * '/' or '\' (%2F, %5C), NUL (%00) and backslashes are refused (403);
 * symlinks may be followed only while they stay under the root
 * (openat2 RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS; where openat2 is
 * missing, every component is opened with O_NOFOLLOW, so no symlink at
 * all); only regular files are served (no directory listing: a directory
 * without index is 403). A multi-range request gets the whole file (200),
 * as nginx may answer it. When out->fd >= 0 the caller must end with
 * http_static_close.
 */
void http_static_plan(const struct http_static_req *rq, struct http_static_plan *out);

/*
 * Read the next piece of the plan's body into buf (at most cap bytes,
 * cap <= HTTP_STATIC_PIECE): returns the bytes read (> 0), 0 once all
 * were read, or -errno (-EIO when the file shrank under us: the response
 * promised its length, so the connection must be cut). Blocking: the
 * thread pool.
 */
ssize_t http_static_read(struct http_static_plan *p, uint8_t *buf, size_t cap);

/* Close the plan's file (if open). */
void http_static_close(struct http_static_plan *p);

#endif

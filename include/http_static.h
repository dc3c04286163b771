/*
 * http_static.h - static files of a `root` location, as a module with no
 * session in it (protocols/http_static.c, http_static_hdr.c): a request
 * (root, path, method, a few request headers) becomes a response plan
 * (status, header lines, and an open file with the range to send), and
 * the body is read from the plan in bounded pieces.
 *
 * Two halves. http_static_lookup (and http_static_plan, which is
 * lookup + answer for one request) touches the disk (open, fstat), so the
 * event loop never calls it (CONVENTIONS rule 8): the session runs it on
 * libuv's thread pool and keeps what it found (struct http_static_file:
 * the open file, its size and mtime, its siblings) in the worker's
 * open-file cache (http_fcache.h). http_static_answer is pure: the plan
 * for one request from a found file, on the loop. The body is read with
 * http_static_read_cached on the loop (preadv2 RWF_NOWAIT: only what the
 * page cache holds) and with http_static_read on the pool when that says
 * -EAGAIN. A plan is used by one thread at a time (the pool thread, then
 * the loop after the hand-over that uv_queue_work orders).
 */
#ifndef GATEHOUSE_HTTP_STATIC_H
#define GATEHOUSE_HTTP_STATIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

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
	bool fd_shared;    /* fd belongs to a struct http_static_file (the cache's):
			      http_static_close forgets it without closing */
	uint64_t offset;   /* first byte of the file to send */
	uint64_t length;   /* bytes to send (0 for HEAD, 304, errors) */
	uint64_t sent;     /* bytes read so far by http_static_read */
	/* The file's bytes in memory (a struct http_static_one's mem, kept
	   by whoever keeps fd open): the pieces are copied from here, with
	   no system call. NULL: read from fd. */
	const uint8_t *mem;
	const char *why;   /* a short reason for the log (static text, no client bytes) */
};

/* Precompressed siblings: [0] ".br", [1] ".gz". */
#define HTTP_STATIC_NENC 2

/* Room for an ETag ("mtime-size" in hex, quoted) and an HTTP date. */
#define HTTP_STATIC_VAL_ETAG 40
#define HTTP_STATIC_VAL_DATE 32

/* One open file of a struct http_static_file, with its validators made
   once (ETag, Last-Modified), not per request. */
struct http_static_one {
	int fd;            /* -1 = none (or a sibling not probed) */
	uint64_t size;
	time_t mtime;
	char etag[HTTP_STATIC_VAL_ETAG];
	char last_modified[HTTP_STATIC_VAL_DATE];
	/* Its size bytes read into memory (http_static_file_load; freed by
	   http_static_file_close), or NULL. */
	uint8_t *mem;
};

/* A file found for a request: what the open-file cache keeps. */
struct http_static_file {
	struct http_static_one file; /* the file (regular) */
	const char *mime;  /* its Content-Type (static text) */
	bool probed;       /* the siblings were looked for (enc[] says) */
	struct http_static_one enc[HTTP_STATIC_NENC];
};

/* Open a location's root directory (O_PATH; blocking): an fd or -1. */
int http_static_root_open(const char *root);

/*
 * Find the file rq names under rootfd (blocking: the thread pool), with the
 * rules of http_static_plan (rootfd -1: the root is missing, 404). true:
 * *f holds it (its fds are the caller's: http_static_file_close); its
 * siblings are probed only when rq's Accept-Encoding takes br or gzip.
 * false: *p is the whole answer (301, 403, 404, 405, 500; no fd).
 */
bool http_static_lookup(const struct http_static_req *rq, int rootfd, struct http_static_file *f,
			struct http_static_plan *p);

/*
 * The plan for rq from a found file (pure: no system call). The plan's fd
 * is one of f's (fd_shared): f must stay open while the plan reads.
 * Vary: Accept-Encoding is sent when the client takes a coding and a
 * sibling exists (f probed); a request that takes none is answered with
 * the file without Vary (its answer is the same whatever exists beside it).
 */
void http_static_answer(const struct http_static_req *rq, const struct http_static_file *f,
			struct http_static_plan *p);

/* An empty file (every fd -1); and closing its fds but keep (and
   freeing the bytes it holds in memory). */
void http_static_file_init(struct http_static_file *f);
void http_static_file_close(struct http_static_file *f, int keep);

/*
 * Read the whole of f's file and of each sibling found that is at most
 * max bytes (and not empty) into memory (blocking: the thread pool), for
 * the open-file cache to answer from with no system call. A read that
 * fails or comes back short (the file shrank since its fstat) leaves that
 * one without (read from its fd as before). Returns the bytes now held.
 */
size_t http_static_file_load(struct http_static_file *f, uint64_t max);

/* The bytes f holds in memory (file and siblings). */
size_t http_static_file_mem(const struct http_static_file *f);

/* Let go of f's bytes in memory (its fds stay). */
void http_static_file_unload(struct http_static_file *f);

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

/* As http_static_read, without blocking: -EAGAIN when the page cache does
   not hold the piece (preadv2 RWF_NOWAIT; always where it is missing), so
   the loop may call it. */
ssize_t http_static_read_cached(struct http_static_plan *p, uint8_t *buf, size_t cap);

/* Close the plan's file (if open and its own). */
void http_static_close(struct http_static_plan *p);

#endif

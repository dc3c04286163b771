/*
 * http_static.c - static files (include/http_static.h): a request becomes
 * a plan (status, header lines, an open file and the range to send), the
 * body is read in pieces. Blocking file-system calls only: the caller runs
 * them on the thread pool. The header work is in http_static_hdr.c.
 */
/* O_PATH, openat2 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#ifdef SYS_openat2
#include <linux/openat2.h>
#endif

#include "gh.h"
#include "http_static_int.h"

/* The longest client path a 301 names (beyond it: 404). */
#define HTTP_STATIC_LOCATION_MAX 1024

static int st__close(int fd)
{
	return fd >= 0 ? close(fd) : 0;
}

/*
 * Open rel under the directory rootfd without ever leaving it, one
 * component at a time, no symlink followed (the fallback when openat2 is
 * missing or filtered).
 */
int http_static__open_nofollow(int rootfd, const char *rel, int flags)
{
	char comp[NAME_MAX + 1];
	int dir = rootfd;

	for (;;) {
		size_t n = strcspn(rel, "/");
		if (n > NAME_MAX) {
			st__close(dir != rootfd ? dir : -1);
			errno = ENAMETOOLONG;
			return -1;
		}
		memcpy(comp, rel, n);
		comp[n] = '\0';
		bool last = rel[n] == '\0';
		int fd = openat(dir, n == 0 ? "." : comp, last ? flags | O_NOFOLLOW | O_CLOEXEC
						       : O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int saved = errno;
		if (dir != rootfd)
			close(dir);
		errno = saved;
		if (fd < 0 || last)
			return fd;
		dir = fd;
		rel += n + 1;
	}
}

/* Open rel (relative, "" = the root) beneath rootfd: symlinks may be
   followed only while they stay beneath it. */
static int st__open_beneath(int rootfd, const char *rel, int flags)
{
#ifdef SYS_openat2
	struct open_how how;
	memset(&how, 0, sizeof(how));
	how.flags = (uint64_t)(flags | O_CLOEXEC);
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
	long fd = syscall(SYS_openat2, rootfd, rel[0] != '\0' ? rel : ".", &how, sizeof(how));
	/* ENOSYS: an older kernel; EPERM: a seccomp filter that does not know it. */
	if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
		return (int)fd;
#endif
	return http_static__open_nofollow(rootfd, rel, flags);
}

/*
 * The file name under the root for a normalized path: every %XX decoded,
 * the leading '/' dropped. false (403) for what could leave the root or
 * name another file than it seems: an encoded '/' or '\', NUL, a raw '\',
 * a "." or ".." segment (normalization removed them; checked again here).
 */
static bool st__rel(const char *path, char *out, size_t cap)
{
	size_t o = 0;

	if (path[0] != '/')
		return false;
	for (const char *p = path + 1; *p != '\0'; p++) {
		int c = (unsigned char)*p;
		if (c == '%') {
			int hi = gh_hexval((unsigned char)p[1]);
			int lo = hi >= 0 ? gh_hexval((unsigned char)p[2]) : -1;
			if (lo < 0)
				return false;
			c = hi * 16 + lo;
			p += 2;
			if (c == '/' || c == '\\' || c == '\0')
				return false;
		} else if (c == '\\') {
			return false;
		}
		if (o + 1 >= cap)
			return false;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	for (const char *s = out; *s != '\0';) {
		size_t n = strcspn(s, "/");
		if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
			return false;
		s += n + (s[n] == '/');
	}
	return true;
}

static void st__fail(struct http_static_plan *p, int status, const char *why)
{
	http_static_close(p);
	p->status = status;
	p->why = why;
	p->headers_len = 0;
	p->headers[0] = '\0';
	p->length = 0;
}

__attribute__((format(printf, 2, 3)))
static void st__hdr(struct http_static_plan *p, const char *fmt, ...)
{
	va_list ap;
	size_t room = sizeof(p->headers) - p->headers_len;

	if (p->status >= 500) /* failed already: stays without header lines */
		return;

	va_start(ap, fmt);
	int n = vsnprintf(p->headers + p->headers_len, room, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= room) {
		/* Cannot happen with the bounds of the configuration; fail
		   closed: no header lines, no file (as every 500). */
		st__fail(p, 500, "static: headers too long");
		return;
	}
	p->headers_len += (size_t)n;
}

/* Append the n bytes of s to the header lines (no format: the lines of
   every answer are made per request). */
static void st__cat(struct http_static_plan *p, const char *s, size_t n)
{
	if (p->status >= 500)
		return;
	if (n >= sizeof(p->headers) - p->headers_len) {
		st__fail(p, 500, "static: headers too long");
		return;
	}
	memcpy(p->headers + p->headers_len, s, n);
	p->headers_len += n;
	p->headers[p->headers_len] = '\0';
}

static void st__cats(struct http_static_plan *p, const char *s)
{
	st__cat(p, s, strlen(s));
}

/* Append v in decimal. */
static void st__u64(struct http_static_plan *p, uint64_t v)
{
	char d[24];
	size_t i = sizeof(d);

	do
		d[--i] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	st__cat(p, d + i, sizeof(d) - i);
}

/* errno of a failed open -> status. */
static int st__errno_status(int e)
{
	if (e == ENOENT || e == ENOTDIR || e == ENAMETOOLONG)
		return 404;
	if (e == EACCES || e == EPERM || e == ELOOP || e == EXDEV)
		return 403;
	return 500;
}

/* A precompressed sibling (rel + ".br" / ".gz") that is a regular file. */
static int st__sibling(int rootfd, const char *rel, const char *ext, struct stat *st)
{
	char name[PATH_MAX];

	if (snprintf(name, sizeof(name), "%s%s", rel, ext) >= (int)sizeof(name))
		return -1;
	int fd = st__open_beneath(rootfd, name, O_RDONLY | O_NONBLOCK | O_NOCTTY);
	if (fd >= 0 && (fstat(fd, st) < 0 || !S_ISREG(st->st_mode))) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Is s printable ASCII without spaces (fit for a Location header)? */
static bool st__ascii(const char *s, size_t max)
{
	size_t n = strlen(s);

	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return n > 0 && n < max;
}

/*
 * Open the file rq names (its index, or the fallback when it does not
 * exist) into p->fd and *st; rel is the decoded name and gets the one
 * served. On failure p carries the status.
 */
static void st__resolve(const struct http_static_req *rq, int rootfd, char *rel, size_t cap,
			struct http_static_plan *p, struct stat *st)
{
	size_t n = strlen(rel);
	bool dir_wanted = n == 0 || rel[n - 1] == '/', fallback_used = false;

	for (;;) {
		const char *fb = rq->fallback && !fallback_used ? rq->fallback + 1 : NULL;
		if (dir_wanted && rq->index == NULL && fb == NULL)
			return st__fail(p, 403, "static: directory without index");
		if (dir_wanted && rq->index == NULL)
			goto fallback;
		if (dir_wanted && snprintf(rel + n, cap - n, "%s", rq->index) >= (int)(cap - n))
			return st__fail(p, 404, "static: name too long");
		p->fd = st__open_beneath(rootfd, rel, O_RDONLY | O_NONBLOCK | O_NOCTTY);
		if (p->fd < 0) {
			int status = st__errno_status(errno);
			if (status == 404 && fb != NULL)
				goto fallback;
			return st__fail(p, status, status == 404 ? "static: no such file"
					: status == 403 ? "static: not allowed (permissions or a symlink out)"
					: "static: open failed");
		}
		if (fstat(p->fd, st) < 0)
			return st__fail(p, 500, "static: fstat failed");
		if (S_ISDIR(st->st_mode) && !dir_wanted) {
			if (rq->client_path == NULL || !st__ascii(rq->client_path, HTTP_STATIC_LOCATION_MAX))
				return st__fail(p, 404, "static: a directory");
			st__fail(p, 301, "static: directory, adding '/'");
			st__hdr(p, "Location: %s/\r\n", rq->client_path);
			return;
		}
		if (!S_ISREG(st->st_mode))
			return st__fail(p, 403, "static: not a regular file");
		return;
fallback:
		if (p->fd >= 0)
			close(p->fd);
		p->fd = -1;
		if (snprintf(rel, cap, "%s", rq->fallback + 1) >= (int)cap)
			return st__fail(p, 404, "static: name too long");
		n = strlen(rel);
		dir_wanted = false;
		fallback_used = true;
	}
}

/* The precompressed siblings (".br", ".gz"), in the order of preference. */
static const struct {
	const char *ext, *name;
	unsigned bit;
} st__encs[HTTP_STATIC_NENC] = { { ".br", "br", HTTP_STATIC_ENC_BR },
				 { ".gz", "gzip", HTTP_STATIC_ENC_GZIP } };

_Static_assert(HTTP_STATIC_VAL_ETAG >= HTTP_STATIC_ETAG_MAX, "ETag room");
_Static_assert(HTTP_STATIC_VAL_DATE >= HTTP_STATIC_DATE_MAX, "date room");

/* o is fd, opened and fstat'ed as *st: its size, mtime and validators. */
static void st__one(struct http_static_one *o, int fd, const struct stat *st)
{
	o->fd = fd;
	o->size = (uint64_t)st->st_size;
	o->mtime = st->st_mtime;
	http_static__etag(o->etag, sizeof(o->etag), o->mtime, o->size);
	http_static__date(o->last_modified, sizeof(o->last_modified), o->mtime);
}

/* Look for every sibling of rel into f->enc (fd -1: none). */
static void st__probe(int rootfd, const char *rel, struct http_static_file *f)
{
	for (size_t i = 0; i < HTTP_STATIC_NENC; i++) {
		struct stat sst;
		int fd = st__sibling(rootfd, rel, st__encs[i].ext, &sst);
		if (fd >= 0)
			st__one(&f->enc[i], fd, &sst);
	}
	f->probed = true;
}

/* 304 for a conditional GET/HEAD that the file still satisfies. */
static bool st__not_modified(const struct http_static_req *rq, time_t mtime, const char *etag)
{
	time_t since;

	if (rq->if_none_match.p != NULL && rq->if_none_match.n > 0)
		return http_static__etag_match(rq->if_none_match, etag);
	return rq->if_modified_since.p != NULL
	       && http_static__parse_date(rq->if_modified_since.p, rq->if_modified_since.n, &since)
	       && mtime <= since;
}

static bool st__hval_is(struct http_static_hval v, const char *s)
{
	return v.n == strlen(s) && memcmp(v.p, s, v.n) == 0;
}

/* The headers and range of a found file. */
static void st__respond(const struct http_static_req *rq, const char *mime, bool head,
			const char *encoding, bool vary, const struct http_static_one *o,
			struct http_static_plan *p)
{
	const char *etag = o->etag, *lm = o->last_modified;
	uint64_t size = o->size, start = 0, len = size;

	if (st__not_modified(rq, o->mtime, etag)) {
		st__fail(p, 304, "static: not modified");
		st__cats(p, "Last-Modified: ");
		st__cats(p, lm);
		st__cats(p, "\r\nETag: ");
		st__cats(p, etag);
		st__cat(p, "\r\n", 2);
	} else {
		int r = 0;
		/* If-Range: the range only if the file is still the one named. */
		if (rq->if_range.p == NULL || st__hval_is(rq->if_range, etag) || st__hval_is(rq->if_range, lm))
			r = http_static__range(rq->range, size, &start, &len);
		if (r < 0) {
			st__fail(p, 416, "static: range not satisfiable");
			st__hdr(p, "Content-Range: bytes */%llu\r\n", (unsigned long long)size);
			return;
		}
		p->status = r > 0 ? 206 : 200;
		p->why = r > 0 ? "static: range" : "static: file";
		st__cats(p, "Content-Type: ");
		st__cats(p, mime);
		st__cats(p, "\r\nContent-Length: ");
		st__u64(p, len);
		st__cats(p, "\r\nLast-Modified: ");
		st__cats(p, lm);
		st__cats(p, "\r\nETag: ");
		st__cats(p, etag);
		st__cats(p, "\r\nAccept-Ranges: bytes\r\n");
		if (r > 0) {
			st__cats(p, "Content-Range: bytes ");
			st__u64(p, start);
			st__cat(p, "-", 1);
			st__u64(p, start + len - 1);
			st__cat(p, "/", 1);
			st__u64(p, size);
			st__cat(p, "\r\n", 2);
		}
		if (encoding != NULL) {
			st__cats(p, "Content-Encoding: ");
			st__cats(p, encoding);
			st__cat(p, "\r\n", 2);
		}
		p->offset = start;
		p->length = head ? 0 : len;
	}
	if (vary)
		st__cats(p, "Vary: Accept-Encoding\r\n");
	if (rq->cache_control != NULL) {
		st__cats(p, "Cache-Control: ");
		st__cats(p, rq->cache_control);
		st__cat(p, "\r\n", 2);
	}
	if (p->status >= 500 || p->length == 0)
		http_static_close(p);
}

static void st__init(struct http_static_plan *p)
{
	p->fd = -1;
	p->fd_shared = false;
	p->headers_len = 0;
	p->headers[0] = '\0';
	p->offset = p->length = p->sent = 0;
	p->mem = NULL;
	p->status = 500;
	p->why = "static";
}

/* 405 for what is neither GET nor HEAD; *head for HEAD. */
static bool st__method(const struct http_static_req *rq, struct http_static_plan *p, bool *head)
{
	*head = strcmp(rq->method, "HEAD") == 0;
	if (*head || strcmp(rq->method, "GET") == 0)
		return true;
	st__fail(p, 405, "static: method not allowed");
	st__hdr(p, "Allow: GET, HEAD\r\n");
	return false;
}

int http_static_root_open(const char *root)
{
	return open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

void http_static_file_init(struct http_static_file *f)
{
	memset(f, 0, sizeof(*f));
	f->file.fd = -1;
	for (size_t i = 0; i < HTTP_STATIC_NENC; i++)
		f->enc[i].fd = -1;
}

void http_static_file_close(struct http_static_file *f, int keep)
{
	http_static_file_unload(f);
	if (f->file.fd != keep)
		st__close(f->file.fd);
	f->file.fd = -1;
	for (size_t i = 0; i < HTTP_STATIC_NENC; i++) {
		if (f->enc[i].fd != keep)
			st__close(f->enc[i].fd);
		f->enc[i].fd = -1;
	}
}

/* o's whole file into memory (o->mem), if it is 1..max bytes and reads whole. */
static size_t st__load(struct http_static_one *o, uint64_t max)
{
	if (o->fd < 0 || o->mem != NULL || o->size == 0 || o->size > max)
		return 0;
	uint8_t *m = malloc((size_t)o->size);
	if (m == NULL)
		return 0;
	size_t got = 0;
	while (got < o->size) {
		ssize_t n = pread(o->fd, m + got, (size_t)o->size - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (got != o->size) { /* shrank, or failed: read from the fd as before */
		free(m);
		return 0;
	}
	o->mem = m;
	return got;
}

size_t http_static_file_load(struct http_static_file *f, uint64_t max)
{
	st__load(&f->file, max);
	for (size_t i = 0; i < HTTP_STATIC_NENC; i++)
		st__load(&f->enc[i], max);
	return http_static_file_mem(f);
}

size_t http_static_file_mem(const struct http_static_file *f)
{
	size_t n = f->file.mem != NULL ? (size_t)f->file.size : 0;

	for (size_t i = 0; i < HTTP_STATIC_NENC; i++)
		n += f->enc[i].mem != NULL ? (size_t)f->enc[i].size : 0;
	return n;
}

void http_static_file_unload(struct http_static_file *f)
{
	free(f->file.mem);
	f->file.mem = NULL;
	for (size_t i = 0; i < HTTP_STATIC_NENC; i++) {
		free(f->enc[i].mem);
		f->enc[i].mem = NULL;
	}
}

bool http_static_lookup(const struct http_static_req *rq, int rootfd, struct http_static_file *f,
			struct http_static_plan *p)
{
	char rel[PATH_MAX];
	struct stat st;
	bool head;

	st__init(p);
	http_static_file_init(f);
	if (!st__method(rq, p, &head))
		return false;
	/* Room kept for an index name or a ".br" suffix. */
	if (!st__rel(rq->path, rel, sizeof(rel) - NAME_MAX - 4)) {
		st__fail(p, 403, "static: refused path (encoded '/' or '\\', NUL, dot segment)");
		return false;
	}
	if (rootfd < 0) {
		st__fail(p, 404, "static: root directory missing");
		return false;
	}
	st__resolve(rq, rootfd, rel, sizeof(rel), p, &st);
	if (p->fd < 0)
		return false;
	st__one(&f->file, p->fd, &st);
	p->fd = -1;
	/* The type is the asked file's, also when a .br or .gz is sent. */
	f->mime = http_static__mime(rel);
	/* Siblings are looked for only when the client takes one of them:
	   without, the answer is the file whatever exists beside it. */
	if (http_static__encodings(rq->accept_encoding) != 0)
		st__probe(rootfd, rel, f);
	return true;
}

void http_static_answer(const struct http_static_req *rq, const struct http_static_file *f,
			struct http_static_plan *p)
{
	unsigned ok = http_static__encodings(rq->accept_encoding);
	const char *enc = NULL;
	bool head, vary = false;

	st__init(p);
	if (!st__method(rq, p, &head))
		return;
	const struct http_static_one *o = &f->file;
	for (size_t i = 0; ok != 0 && f->probed && i < HTTP_STATIC_NENC; i++) {
		if (f->enc[i].fd < 0)
			continue;
		/* A sibling exists: the answer depends on Accept-Encoding. */
		vary = true;
		if (enc != NULL || !(ok & st__encs[i].bit))
			continue;
		enc = st__encs[i].name;
		o = &f->enc[i];
	}
	p->fd = o->fd;
	p->fd_shared = true;
	p->mem = o->mem;
	st__respond(rq, f->mime, head, enc, vary, o, p);
}

void http_static_plan(const struct http_static_req *rq, struct http_static_plan *p)
{
	struct http_static_file f;
	int rootfd = -1;
	bool head;

	/* The root is opened only for a request that gets that far. */
	st__init(p);
	if (st__method(rq, p, &head))
		rootfd = http_static_root_open(rq->root);
	if (http_static_lookup(rq, rootfd, &f, p)) {
		http_static_answer(rq, &f, p);
		/* The plan owns the file it sends; the others are closed. */
		p->fd_shared = false;
		http_static_file_close(&f, p->fd);
	}
	st__close(rootfd);
}

/* The next piece with preadv2's flags (RWF_NOWAIT: -EAGAIN unless the
   page cache holds it). */
static ssize_t st__read(struct http_static_plan *p, uint8_t *buf, size_t cap, int flags)
{
	if (p->fd < 0 || p->sent >= p->length)
		return 0;
	uint64_t left = p->length - p->sent;
	size_t want = cap < left ? cap : (size_t)left;
	if (want > HTTP_STATIC_PIECE)
		want = HTTP_STATIC_PIECE;
	if (p->mem != NULL) {
		memcpy(buf, p->mem + p->offset + p->sent, want);
		p->sent += want;
		return (ssize_t)want;
	}
	struct iovec iov = { buf, want };
	ssize_t n;
	do
		n = preadv2(p->fd, &iov, 1, (off_t)(p->offset + p->sent), flags);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -EIO;
	p->sent += (uint64_t)n;
	return n;
}

ssize_t http_static_read(struct http_static_plan *p, uint8_t *buf, size_t cap)
{
	return st__read(p, buf, cap, 0);
}

ssize_t http_static_read_cached(struct http_static_plan *p, uint8_t *buf, size_t cap)
{
#ifdef RWF_NOWAIT
	return st__read(p, buf, cap, RWF_NOWAIT);
#else
	(void)p, (void)buf, (void)cap;
	return -EAGAIN;
#endif
}

void http_static_close(struct http_static_plan *p)
{
	if (!p->fd_shared)
		st__close(p->fd);
	p->fd = -1;
	p->fd_shared = false;
	p->mem = NULL;
}

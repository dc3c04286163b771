/*
 * Tests for protocols/http_static.c and http_static_hdr.c: plans for a
 * real directory tree (files, index, fallback, precompressed siblings,
 * conditional and range requests, HEAD, methods), no escape from the root
 * (dot segments, encoded slashes, backslashes, symlinks out, FIFOs), the
 * body read in bounded pieces, and the pure header helpers.
 */
#define _GNU_SOURCE /* O_PATH */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "http_static.h"
#include "http_static_int.h"

static char st_t_dir[64];
static char st_t_root[96];

static void st_t_file(const char *name, const char *content, size_t n)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", st_t_root, name);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "%s", path);
	cr_assert_eq(fwrite(content, 1, n, f), n);
	cr_assert_eq(fclose(f), 0);
}

#define ST_T_FILE(name, text) st_t_file(name, text, strlen(text))

static void st_t_setup(void)
{
	char p[256];

	snprintf(st_t_dir, sizeof(st_t_dir), "/tmp/gh-static-XXXXXX");
	cr_assert_not_null(mkdtemp(st_t_dir));
	snprintf(st_t_root, sizeof(st_t_root), "%s/root", st_t_dir);
	cr_assert_eq(mkdir(st_t_root, 0755), 0);
	snprintf(p, sizeof(p), "%s/outside", st_t_dir);
	cr_assert_eq(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/outside/secret.txt", st_t_dir);
	FILE *f = fopen(p, "w");
	cr_assert_not_null(f);
	fputs("secret", f);
	fclose(f);
	ST_T_FILE("index.html", "<h1>home</h1>");
	ST_T_FILE("data.bin", "0123456789");
	ST_T_FILE("empty.txt", "");
	ST_T_FILE("app.js", "console.log('identity')");
	ST_T_FILE("app.js.br", "BROTLI");
	ST_T_FILE("app.js.gz", "GZIP");
	ST_T_FILE("style.css", "body{}");
	ST_T_FILE("style.css.gz", "GZCSS");
	ST_T_FILE("my file.txt", "spaced");
	snprintf(p, sizeof(p), "%s/sub", st_t_root);
	cr_assert_eq(mkdir(p, 0755), 0);
	ST_T_FILE("sub/index.html", "sub index");
	snprintf(p, sizeof(p), "%s/nodir", st_t_root);
	cr_assert_eq(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/link_in", st_t_root);
	cr_assert_eq(symlink("index.html", p), 0);
	snprintf(p, sizeof(p), "%s/link_out", st_t_root);
	cr_assert_eq(symlink("../outside/secret.txt", p), 0);
	snprintf(p, sizeof(p), "%s/link_abs", st_t_root);
	cr_assert_eq(symlink("/etc/hostname", p), 0);
	snprintf(p, sizeof(p), "%s/linkdir_out", st_t_root);
	cr_assert_eq(symlink("../outside", p), 0);
	snprintf(p, sizeof(p), "%s/fifo", st_t_root);
	cr_assert_eq(mkfifo(p, 0644), 0);
}

static void st_t_teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", st_t_dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(http_static, .init = st_t_setup, .fini = st_t_teardown);

static struct http_static_hval st_t_h(const char *v)
{
	struct http_static_hval h = { v, v ? strlen(v) : 0 };
	return h;
}

/* A GET of path (a plan to inspect; the caller closes). */
static struct http_static_req st_t_req(const char *path)
{
	struct http_static_req rq = {
		.root = st_t_root, .path = path, .client_path = path, .index = "index.html",
		.method = "GET",
	};
	return rq;
}

/* The whole body of a plan, read in pieces of at most `piece` bytes. */
static size_t st_t_body(struct http_static_plan *p, char *out, size_t cap, size_t piece)
{
	size_t got = 0;
	ssize_t n;

	while ((n = http_static_read(p, (uint8_t *)out + got, piece)) > 0) {
		cr_assert_leq((size_t)n, piece);
		got += (size_t)n;
		cr_assert_lt(got, cap);
	}
	cr_assert_eq(n, 0, "read error %zd", n);
	out[got] = '\0';
	http_static_close(p);
	return got;
}

static void st_t_has(const struct http_static_plan *p, const char *line)
{
	cr_assert_not_null(strstr(p->headers, line), "no \"%s\" in:\n%s", line, p->headers);
}

static void st_t_lacks(const struct http_static_plan *p, const char *name)
{
	cr_assert_null(strstr(p->headers, name), "\"%s\" in:\n%s", name, p->headers);
}

Test(http_static, get_a_file)
{
	struct http_static_req rq = st_t_req("/index.html");
	struct http_static_plan p;
	char body[64], etag[64], lm[64], path[256];
	struct stat st;

	rq.cache_control = "no-cache";
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 200, "%d %s", p.status, p.why);
	snprintf(path, sizeof(path), "%s/index.html", st_t_root);
	cr_assert_eq(stat(path, &st), 0);
	snprintf(etag, sizeof(etag), "ETag: \"%llx-d\"\r\n", (unsigned long long)st.st_mtime);
	http_static__date(lm, sizeof(lm), st.st_mtime);
	st_t_has(&p, "Content-Type: text/html\r\n");
	st_t_has(&p, "Content-Length: 13\r\n");
	st_t_has(&p, etag);
	st_t_has(&p, lm);
	st_t_has(&p, "Accept-Ranges: bytes\r\n");
	st_t_has(&p, "Cache-Control: no-cache\r\n");
	st_t_lacks(&p, "Vary");
	st_t_lacks(&p, "Content-Encoding");
	cr_assert_eq(p.headers_len, strlen(p.headers));
	cr_assert_eq(st_t_body(&p, body, sizeof(body), 4), 13);
	cr_assert_str_eq(body, "<h1>home</h1>");
}

Test(http_static, head_and_methods)
{
	struct http_static_req rq = st_t_req("/data.bin");
	struct http_static_plan p;

	rq.method = "HEAD";
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 200);
	st_t_has(&p, "Content-Length: 10\r\n");
	cr_assert_eq(p.length, 0);
	cr_assert_eq(p.fd, -1);
	cr_assert_eq(http_static_read(&p, (uint8_t[8]){ 0 }, 8), 0);

	rq.method = "POST";
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 405);
	cr_assert_str_eq(p.headers, "Allow: GET, HEAD\r\n");
	cr_assert_eq(p.fd, -1);
}

Test(http_static, index_directory_and_fallback)
{
	struct http_static_req rq = st_t_req("/");
	struct http_static_plan p;
	char body[64];

	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 200);
	st_t_body(&p, body, sizeof(body), 64);
	cr_assert_str_eq(body, "<h1>home</h1>");

	rq = st_t_req("/sub/");
	http_static_plan(&rq, &p);
	st_t_body(&p, body, sizeof(body), 64);
	cr_assert_str_eq(body, "sub index");

	rq = st_t_req("/sub");
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 301);
	cr_assert_str_eq(p.headers, "Location: /sub/\r\n");
	cr_assert_eq(p.fd, -1);
	rq.client_path = NULL;
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 404);

	rq = st_t_req("/nodir/");
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 404, "index missing");
	rq.index = NULL;
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 403, "no directory listing");
	cr_assert_eq(p.headers_len, 0);

	rq = st_t_req("/missing/deeper.js");
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 404);
	rq.fallback = "/index.html";
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 200, "single-page-app fallback");
	st_t_has(&p, "Content-Type: text/html\r\n");
	st_t_body(&p, body, sizeof(body), 64);
	cr_assert_str_eq(body, "<h1>home</h1>");

	rq = st_t_req("/nodir/");
	rq.index = NULL;
	rq.fallback = "/index.html";
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 200);
	http_static_close(&p);

	rq = st_t_req("/x");
	rq.fallback = "/gone.html";
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 404, "a missing fallback is a 404, not a loop");

	rq = st_t_req("/index.html");
	rq.root = "/nonexistent-gatehouse-root";
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 404);
}

Test(http_static, conditional)
{
	struct http_static_req rq = st_t_req("/data.bin");
	struct http_static_plan p;
	char etag[64], lm[64], path[256];
	struct stat st;

	snprintf(path, sizeof(path), "%s/data.bin", st_t_root);
	cr_assert_eq(stat(path, &st), 0);
	http_static__etag(etag, sizeof(etag), st.st_mtime, 10);
	http_static__date(lm, sizeof(lm), st.st_mtime);

	rq.if_none_match = st_t_h(etag);
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 304);
	cr_assert_eq(p.fd, -1);
	st_t_has(&p, etag);
	st_t_lacks(&p, "Content-Length");

	char list[128];
	snprintf(list, sizeof(list), "\"x\", W/%s", etag);
	rq.if_none_match = st_t_h(list);
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 304, "weak comparison, in a list");
	rq.if_none_match = st_t_h("*");
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 304);

	rq.if_none_match = st_t_h("\"other\"");
	rq.if_modified_since = st_t_h(lm);
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 200, "If-None-Match wins over If-Modified-Since");
	http_static_close(&p);

	rq.if_none_match = st_t_h(NULL);
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 304);
	rq.if_modified_since = st_t_h("Thu, 01 Jan 1970 00:00:00 GMT");
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 200);
	http_static_close(&p);
	rq.if_modified_since = st_t_h("yesterday");
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 200, "an unreadable date is ignored");
	http_static_close(&p);
}

static void st_t_range(const char *range, int status, const char *body, const char *content_range)
{
	struct http_static_req rq = st_t_req("/data.bin");
	struct http_static_plan p;
	char got[64];

	rq.range = st_t_h(range);
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, status, "%s: %d", range, p.status);
	if (content_range != NULL)
		st_t_has(&p, content_range);
	else
		st_t_lacks(&p, "Content-Range");
	if (body == NULL) {
		cr_assert_eq(p.fd, -1);
		return;
	}
	st_t_body(&p, got, sizeof(got), 3);
	cr_assert_str_eq(got, body, "%s", range);
}

Test(http_static, ranges)
{
	st_t_range("bytes=2-5", 206, "2345", "Content-Range: bytes 2-5/10\r\n");
	st_t_range("bytes=7-", 206, "789", "Content-Range: bytes 7-9/10\r\n");
	st_t_range("bytes=-3", 206, "789", "Content-Range: bytes 7-9/10\r\n");
	st_t_range("bytes=-30", 206, "0123456789", "Content-Range: bytes 0-9/10\r\n");
	st_t_range("bytes=8-100", 206, "89", "Content-Range: bytes 8-9/10\r\n");
	st_t_range("bytes=10-", 416, NULL, "Content-Range: bytes */10\r\n");
	st_t_range("bytes=-0", 416, NULL, "Content-Range: bytes */10\r\n");
	/* Several ranges: the whole file, as nginx may answer. */
	st_t_range("bytes=0-1,3-4", 200, "0123456789", NULL);
	st_t_range("bytes=5-2", 200, "0123456789", NULL);
	st_t_range("bytes=x-", 200, "0123456789", NULL);
	st_t_range("lines=1-2", 200, "0123456789", NULL);
	st_t_range("bytes=99999999999999999999-", 200, "0123456789", NULL);

	struct http_static_req rq = st_t_req("/data.bin");
	struct http_static_plan p;
	rq.range = st_t_h("bytes=0-1");
	rq.if_range = st_t_h("\"stale\"");
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 200, "If-Range names another version: whole file");
	st_t_has(&p, "Content-Length: 10\r\n");
	http_static_close(&p);

	rq = st_t_req("/empty.txt");
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 200);
	st_t_has(&p, "Content-Length: 0\r\n");
	cr_assert_eq(p.fd, -1);
	rq.range = st_t_h("bytes=0-");
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 416);
}

static void st_t_enc(const char *path, const char *ae, const char *body, const char *enc)
{
	struct http_static_req rq = st_t_req(path);
	struct http_static_plan p;
	char got[64];

	rq.accept_encoding = st_t_h(ae);
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 200);
	/* Vary only when the client takes a coding (the siblings are looked
	   for then only): identity for everyone else, whatever exists. */
	if (ae != NULL && strcmp(ae, "identity") != 0)
		st_t_has(&p, "Vary: Accept-Encoding\r\n");
	else
		st_t_lacks(&p, "Vary");
	if (enc != NULL) {
		char line[64];
		snprintf(line, sizeof(line), "Content-Encoding: %s\r\n", enc);
		st_t_has(&p, line);
	} else {
		st_t_lacks(&p, "Content-Encoding");
	}
	st_t_body(&p, got, sizeof(got), 64);
	cr_assert_str_eq(got, body, "%s with %s", path, ae ? ae : "(none)");
}

Test(http_static, precompressed)
{
	st_t_enc("/app.js", "gzip, deflate, br", "BROTLI", "br");
	st_t_enc("/app.js", "gzip", "GZIP", "gzip");
	st_t_enc("/app.js", "br;q=0, gzip;q=0.5", "GZIP", "gzip");
	st_t_enc("/app.js", "*", "BROTLI", "br");
	st_t_enc("/app.js", "*, br;q=0", "GZIP", "gzip");
	st_t_enc("/app.js", "identity", "console.log('identity')", NULL);
	st_t_enc("/app.js", NULL, "console.log('identity')", NULL);
	st_t_enc("/style.css", "br", "body{}", NULL);
	st_t_enc("/style.css", "br, gzip", "GZCSS", "gzip");

	/* The type is the file's, not the sibling's. */
	struct http_static_req rq = st_t_req("/app.js");
	struct http_static_plan p;
	rq.accept_encoding = st_t_h("br");
	http_static_plan(&rq, &p);
	st_t_has(&p, "Content-Type: application/javascript\r\n");
	st_t_has(&p, "Content-Length: 6\r\n");
	http_static_close(&p);
}

static int st_t_status(const char *path)
{
	struct http_static_req rq = st_t_req(path);
	struct http_static_plan p;

	http_static_plan(&rq, &p);
	int status = p.status;
	http_static_close(&p);
	return status;
}

static bool st_t_have_openat2(void)
{
#ifdef SYS_openat2
	long r = syscall(SYS_openat2, -1, "", NULL, 0);
	return !(r < 0 && (errno == ENOSYS || errno == EPERM));
#else
	return false;
#endif
}

Test(http_static, no_escape)
{
	cr_assert_eq(st_t_status("/../outside/secret.txt"), 403);
	cr_assert_eq(st_t_status("/sub/../../outside/secret.txt"), 403);
	cr_assert_eq(st_t_status("/./index.html"), 403);
	cr_assert_eq(st_t_status("/..%2Foutside%2Fsecret.txt"), 403);
	cr_assert_eq(st_t_status("/sub%2findex.html"), 403);
	cr_assert_eq(st_t_status("/sub%5Cindex.html"), 403);
	cr_assert_eq(st_t_status("/sub\\index.html"), 403);
	cr_assert_eq(st_t_status("/index.html%00.png"), 403);
	cr_assert_eq(st_t_status("/%zz"), 403);
	cr_assert_eq(st_t_status("/link_out"), 403);
	cr_assert_eq(st_t_status("/link_abs"), 403);
	cr_assert_eq(st_t_status("/linkdir_out/secret.txt"), 403);
	cr_assert_eq(st_t_status("/fifo"), 403, "only regular files (and the open does not block)");
	/* A symlink that stays inside: followed with openat2, refused without. */
	cr_assert_eq(st_t_status("/link_in"), st_t_have_openat2() ? 200 : 403);
	cr_assert_eq(st_t_status("/my%20file.txt"), 200, "other %XX decoded for the file name");
	cr_assert_eq(st_t_status("/data.bin/x"), 404);
}

/* Header lines that do not fit (a caller passing more than the loader
   allows): 500 with no lines and no file, never a cut header. */
Test(http_static, headers_overflow)
{
	static char cc[HTTP_STATIC_HEADERS_MAX + 10];
	struct http_static_req rq = st_t_req("/app.js");
	struct http_static_plan p;

	memset(cc, 'c', sizeof(cc) - 1);
	rq.cache_control = cc;
	rq.accept_encoding = st_t_h("br");
	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 500);
	cr_assert_eq(p.headers_len, 0);
	cr_assert_str_eq(p.headers, "");
	cr_assert_eq(p.fd, -1);
	cr_assert_eq(p.length, 0);
}

/* The fallback opener (kernels without openat2): no symlink at all. */
Test(http_static, open_nofollow)
{
	int root = open(st_t_root, O_PATH | O_DIRECTORY);
	cr_assert_geq(root, 0);
	int fd = http_static__open_nofollow(root, "sub/index.html", O_RDONLY);
	cr_assert_geq(fd, 0);
	close(fd);
	fd = http_static__open_nofollow(root, "", O_RDONLY);
	cr_assert_geq(fd, 0, "the root itself");
	close(fd);
	const char *refused[] = { "link_in", "link_out", "linkdir_out/secret.txt", "link_abs" };
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		errno = 0;
		cr_assert_eq(http_static__open_nofollow(root, refused[i], O_RDONLY), -1, "%s", refused[i]);
		cr_assert(errno == ELOOP || errno == ENOTDIR, "%s: %s", refused[i], strerror(errno));
	}
	errno = 0;
	cr_assert_eq(http_static__open_nofollow(root, "sub/missing", O_RDONLY), -1);
	cr_assert_eq(errno, ENOENT);
	close(root);
}

/* The body comes in pieces no larger than asked or HTTP_STATIC_PIECE. */
Test(http_static, pieces)
{
	static char big[200000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	st_t_file("big.txt", big, sizeof(big));
	struct http_static_req rq = st_t_req("/big.txt");
	struct http_static_plan p;
	static uint8_t buf[HTTP_STATIC_PIECE * 2];
	size_t total = 0, reads = 0;
	ssize_t n;

	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 200);
	while ((n = http_static_read(&p, buf, sizeof(buf))) > 0) {
		cr_assert_leq(n, HTTP_STATIC_PIECE);
		cr_assert_eq(memcmp(buf, big + total, (size_t)n), 0);
		total += (size_t)n;
		reads++;
	}
	cr_assert_eq(n, 0);
	cr_assert_eq(total, sizeof(big));
	cr_assert_eq(reads, 4);
	http_static_close(&p);
}

/* A file cut short after the plan promised its length: -EIO, never a
   short body passed off as complete. */
Test(http_static, file_shrinks)
{
	struct http_static_req rq = st_t_req("/data.bin");
	struct http_static_plan p;
	char path[256];
	uint8_t buf[64];

	http_static_plan(&rq, &p);
	cr_assert_eq(p.status, 200);
	snprintf(path, sizeof(path), "%s/data.bin", st_t_root);
	cr_assert_eq(truncate(path, 3), 0);
	cr_assert_eq(http_static_read(&p, buf, sizeof(buf)), 3);
	cr_assert_eq(http_static_read(&p, buf, sizeof(buf)), -EIO);
	http_static_close(&p);
}

/* ---- the pure helpers ---- */

Test(http_static_hdr, mime)
{
	cr_assert_str_eq(http_static__mime("/a/b.HTML"), "text/html");
	cr_assert_str_eq(http_static__mime("/x.woff2"), "font/woff2");
	cr_assert_str_eq(http_static__mime("/x.svg"), "image/svg+xml");
	cr_assert_str_eq(http_static__mime("/x.tar.gz"), "application/octet-stream");
	cr_assert_str_eq(http_static__mime("/dir.js/README"), "application/octet-stream");
	cr_assert_str_eq(http_static__mime("/noext"), "application/octet-stream");
}

Test(http_static_hdr, dates)
{
	char d[HTTP_STATIC_DATE_MAX];
	time_t t;

	http_static__date(d, sizeof(d), 784111777);
	cr_assert_str_eq(d, "Sun, 06 Nov 1994 08:49:37 GMT");
	cr_assert(http_static__parse_date(d, strlen(d), &t));
	cr_assert_eq(t, 784111777);
	cr_assert(!http_static__parse_date("Sunday, 06-Nov-94 08:49:37 GMT", 30, &t));
	cr_assert(!http_static__parse_date("Sun, 06 Nov 1994 08:49:37 UTC", 29, &t));
	cr_assert(!http_static__parse_date("Sun, 06 Xyz 1994 08:49:37 GMT", 29, &t));
	cr_assert(!http_static__parse_date("Sun, 06 Nov 1994 25:49:37 GMT", 29, &t));
	cr_assert(!http_static__parse_date("Sun, 06 Nov 1994 08:49:37 GMT", 28, &t));
	http_static__etag(d, sizeof(d), 0x5f3e9a2b, 0x1a4);
	cr_assert_str_eq(d, "\"5f3e9a2b-1a4\"");
}

Test(http_static_hdr, encodings)
{
	cr_assert_eq(http_static__encodings(st_t_h(NULL)), 0);
	cr_assert_eq(http_static__encodings(st_t_h("gzip, br")), HTTP_STATIC_ENC_BR | HTTP_STATIC_ENC_GZIP);
	cr_assert_eq(http_static__encodings(st_t_h("GZIP;q=1.0")), HTTP_STATIC_ENC_GZIP);
	cr_assert_eq(http_static__encodings(st_t_h("gzip;q=0, br;q=0.001")), HTTP_STATIC_ENC_BR);
	cr_assert_eq(http_static__encodings(st_t_h("gzip;q=0.000")), 0);
	cr_assert_eq(http_static__encodings(st_t_h("*;q=0")), 0);
	cr_assert_eq(http_static__encodings(st_t_h("brotli, xgzip")), 0);
}

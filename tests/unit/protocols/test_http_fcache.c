/*
 * Tests for protocols/http_fcache.c: the worker's open-file cache keeps at
 * most its bound of files (least recently used out first, their fds
 * closed), trusts an entry only for its validity time, never answers a
 * request for another root, path, index or fallback, keeps an evicted or
 * flushed entry's fds open while a reference reads from it, and keeps the
 * root directories likewise.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "http_fcache.h"

static bool fc_t_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

/* A found file with a fresh fd (of /dev/null) and the given size. */
static struct http_static_file fc_t_file(uint64_t size)
{
	struct http_static_file f;

	http_static_file_init(&f);
	f.file.fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	cr_assert_geq(f.file.fd, 0);
	f.file.size = size;
	f.mime = "text/plain";
	return f;
}

static struct http_static_req fc_t_req(const char *root, const char *path)
{
	struct http_static_req rq;

	memset(&rq, 0, sizeof(rq));
	rq.root = root;
	rq.path = path;
	rq.method = "GET";
	return rq;
}

Test(http_fcache, hit_only_for_the_same_root_path_index_and_fallback)
{
	struct http_fcache *c = http_fcache_new(10, 2000, 0);
	struct http_static_req rq = fc_t_req("/srv/a", "/x.js");
	struct http_static_file f = fc_t_file(7);

	struct http_fcache_entry *e = http_fcache_put(c, &rq, &f, 1000);
	cr_assert_not_null(e);
	cr_assert_eq(f.file.fd, -1, "the cache took the fd");
	http_fcache_release(e);

	e = http_fcache_get(c, &rq, 1500);
	cr_assert_not_null(e);
	cr_assert_eq(http_fcache_file(e)->file.size, 7);
	http_fcache_release(e);

	struct http_static_req other = fc_t_req("/srv/b", "/x.js");
	cr_assert_null(http_fcache_get(c, &other, 1500), "another root");
	other = fc_t_req("/srv/a", "/x.jss");
	cr_assert_null(http_fcache_get(c, &other, 1500), "another path");
	other = fc_t_req("/srv/a", "/x.j");
	cr_assert_null(http_fcache_get(c, &other, 1500), "a prefix of the path");
	other = fc_t_req("/srv/a", "/x.js");
	other.index = "index.html";
	cr_assert_null(http_fcache_get(c, &other, 1500), "with an index");
	other = fc_t_req("/srv/a", "/x.js");
	other.fallback = "/index.html";
	cr_assert_null(http_fcache_get(c, &other, 1500), "with a fallback");
	/* The root and path swapped around the separator. */
	other = fc_t_req("/srv/a/x.js", "");
	cr_assert_null(http_fcache_get(c, &other, 1500));
	http_fcache_free(c);
}

Test(http_fcache, trusted_for_its_validity_time_only)
{
	struct http_fcache *c = http_fcache_new(10, 2000, 0);
	struct http_static_req rq = fc_t_req("/srv/a", "/x.js");
	struct http_static_file f = fc_t_file(1);
	struct http_fcache_entry *e = http_fcache_put(c, &rq, &f, 1000);
	int fd = http_fcache_file(e)->file.fd;

	http_fcache_release(e);
	e = http_fcache_get(c, &rq, 2999);
	cr_assert_not_null(e);
	http_fcache_release(e);
	cr_assert_null(http_fcache_get(c, &rq, 3000), "2 s after it was opened");
	cr_assert_eq(http_fcache_count(c), 0);
	cr_assert_not(fc_t_open(fd), "the stale entry's fd is closed");
	http_fcache_free(c);
}

Test(http_fcache, siblings_unknown_are_a_miss_for_a_client_taking_a_coding)
{
	struct http_fcache *c = http_fcache_new(10, 2000, 0);
	struct http_static_req rq = fc_t_req("/srv/a", "/x.js");
	struct http_static_file f = fc_t_file(1);

	http_fcache_release(http_fcache_put(c, &rq, &f, 0));
	rq.accept_encoding.p = "gzip";
	rq.accept_encoding.n = 4;
	cr_assert_null(http_fcache_get(c, &rq, 10));
	rq.accept_encoding.p = "identity";
	rq.accept_encoding.n = 8;
	struct http_fcache_entry *e = http_fcache_get(c, &rq, 10);
	cr_assert_not_null(e);
	http_fcache_release(e);
	http_fcache_free(c);
}

Test(http_fcache, bounded_least_recently_used_out_first)
{
	struct http_fcache *c = http_fcache_new(3, 60000, 0);
	char paths[8][16];
	int fds[8];

	for (int i = 0; i < 8; i++) {
		snprintf(paths[i], sizeof(paths[i]), "/f%d", i);
		struct http_static_req rq = fc_t_req("/srv", paths[i]);
		struct http_static_file f = fc_t_file((uint64_t)i);
		/* Numbers of its own (a closed fd's number is not reused here). */
		int hi = fcntl(f.file.fd, F_DUPFD_CLOEXEC, 300 + 2 * i);
		cr_assert_eq(hi, 300 + 2 * i);
		close(f.file.fd);
		f.file.fd = hi;
		struct http_fcache_entry *e = http_fcache_put(c, &rq, &f, (uint64_t)i);
		cr_assert_not_null(e);
		fds[i] = http_fcache_file(e)->file.fd;
		http_fcache_release(e);
		cr_assert_leq(http_fcache_count(c), 3);
		if (i == 1) {
			/* f0 used again: f1 is now the oldest. */
			struct http_static_req r0 = fc_t_req("/srv", paths[0]);
			http_fcache_release(http_fcache_get(c, &r0, 2));
		}
		if (i == 3) {
			struct http_static_req r1 = fc_t_req("/srv", paths[1]);
			cr_assert_null(http_fcache_get(c, &r1, 4), "f1 went first");
			struct http_static_req r0 = fc_t_req("/srv", paths[0]);
			struct http_fcache_entry *e0 = http_fcache_get(c, &r0, 4);
			cr_assert_not_null(e0, "f0, used since, stayed");
			http_fcache_release(e0);
		}
	}
	cr_assert_eq(http_fcache_count(c), 3);
	int open_fds = 0;
	for (int i = 0; i < 8; i++)
		open_fds += fc_t_open(fds[i]);
	cr_assert_eq(open_fds, 3, "the evicted files' fds are closed");
	http_fcache_free(c);
	for (int i = 0; i < 8; i++)
		cr_assert_not(fc_t_open(fds[i]), "closed when the cache is freed");
}

Test(http_fcache, an_entry_in_use_stays_open_until_released)
{
	struct http_fcache *c = http_fcache_new(1, 60000, 0);
	struct http_static_req a = fc_t_req("/srv", "/a"), b = fc_t_req("/srv", "/b");
	struct http_static_file fa = fc_t_file(1), fb = fc_t_file(2);
	struct http_fcache_entry *ea = http_fcache_put(c, &a, &fa, 0);
	int fd = http_fcache_file(ea)->file.fd;

	/* Evicted by b while a response still reads a. */
	struct http_fcache_entry *eb = http_fcache_put(c, &b, &fb, 1);
	cr_assert_null(http_fcache_get(c, &a, 2));
	cr_assert(fc_t_open(fd));
	cr_assert_eq(http_fcache_file(ea)->file.size, 1);
	http_fcache_release(ea);
	cr_assert_not(fc_t_open(fd));

	/* Flushed (a new configuration) while in use: the same. */
	int fdb = http_fcache_file(eb)->file.fd;
	http_fcache_flush(c);
	cr_assert_eq(http_fcache_count(c), 0);
	cr_assert(fc_t_open(fdb));
	http_fcache_release(eb);
	cr_assert_not(fc_t_open(fdb));
	http_fcache_free(c);
}

Test(http_fcache, idle_entries_let_go_after_a_minute)
{
	struct http_fcache *c = http_fcache_new(10, 1000000, 0);
	struct http_static_req a = fc_t_req("/srv", "/a"), b = fc_t_req("/srv", "/b");
	struct http_static_file fa = fc_t_file(1);

	http_fcache_release(http_fcache_put(c, &a, &fa, 0));
	cr_assert_null(http_fcache_get(c, &b, 60000));
	cr_assert_eq(http_fcache_count(c), 0);
	http_fcache_free(c);
}

Test(http_fcache, roots_kept_for_the_validity_time_and_in_use)
{
	struct http_fcache *c = http_fcache_new(10, 2000, 0);
	struct http_fcache_root *r;
	int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	cr_assert_eq(http_fcache_root(c, "/srv", 0, &r), -1);
	cr_assert_null(r);
	http_fcache_root_put(c, "/srv", fd, 0);
	cr_assert_eq(http_fcache_root(c, "/srv", 1999, &r), fd);
	cr_assert_not_null(r);
	struct http_fcache_root *r2;
	cr_assert_eq(http_fcache_root(c, "/srv/x", 10, &r2), -1, "another root");
	cr_assert_eq(http_fcache_root(c, "/srv", 2000, &r2), -1, "too old: opened again");
	/* Replaced by a new open while r still uses the old one. */
	int fd2 = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	http_fcache_root_put(c, "/srv", fd2, 2000);
	cr_assert(fc_t_open(fd));
	http_fcache_root_release(r);
	cr_assert_not(fc_t_open(fd));
	http_fcache_free(c);
	cr_assert_not(fc_t_open(fd2));
}

/* A found file holding size bytes in memory. */
static struct http_static_file fc_t_mem_file(uint64_t size)
{
	struct http_static_file f = fc_t_file(size);

	f.file.mem = malloc((size_t)size);
	cr_assert_not_null(f.file.mem);
	memset(f.file.mem, 'm', (size_t)size);
	return f;
}

Test(http_fcache, bytes_in_memory_bounded_least_recently_used_let_go_first)
{
	struct http_fcache *c = http_fcache_new(10, 60000, 10000);
	struct http_static_req ra = fc_t_req("/srv", "/a"), rb = fc_t_req("/srv", "/b"),
			       rc = fc_t_req("/srv", "/c");
	struct http_static_file fa = fc_t_mem_file(6000), fb = fc_t_mem_file(6000),
				fc = fc_t_mem_file(20000);

	struct http_fcache_entry *ea = http_fcache_put(c, &ra, &fa, 0);
	cr_assert_eq(http_fcache_mem(c), 6000);
	cr_assert_not_null(http_fcache_file(ea)->file.mem);
	/* a is being read from (a reference): its bytes stay, b's do not fit. */
	struct http_fcache_entry *eb = http_fcache_put(c, &rb, &fb, 1);
	cr_assert_null(http_fcache_file(eb)->file.mem);
	cr_assert_eq(http_fcache_mem(c), 6000);
	http_fcache_release(eb);
	http_fcache_release(ea);
	/* Put again (looked up again): a's bytes, unused now, make room. */
	fb = fc_t_mem_file(6000);
	eb = http_fcache_put(c, &rb, &fb, 2);
	cr_assert_not_null(http_fcache_file(eb)->file.mem);
	cr_assert_eq(http_fcache_mem(c), 6000);
	ea = http_fcache_get(c, &ra, 3);
	cr_assert_not_null(ea, "a is still kept, with its fd");
	cr_assert_null(http_fcache_file(ea)->file.mem);
	http_fcache_release(ea);
	http_fcache_release(eb);
	/* Larger than the whole bound: kept without its bytes. */
	struct http_fcache_entry *ec = http_fcache_put(c, &rc, &fc, 4);
	cr_assert_null(http_fcache_file(ec)->file.mem);
	cr_assert_eq(http_fcache_mem(c), 6000, "b's bytes were not let go for nothing");
	http_fcache_release(ec);
	/* Bytes leave the count with their entry. */
	http_fcache_flush(c);
	cr_assert_eq(http_fcache_mem(c), 0);
	http_fcache_free(c);
}

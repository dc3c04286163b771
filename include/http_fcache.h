/*
 * http_fcache.h - a worker's open-file cache for `root` locations
 * (protocols/http_fcache.c), as nginx's open_file_cache: the root
 * directories opened once, and the files found (struct http_static_file:
 * fd, size, mtime, siblings) by (root, index, fallback, path), so a hot
 * file is answered with no open, no fstat and no thread-pool hand-off.
 *
 * Loop thread only, no locks: the thread pool opens, the loop puts what
 * it found here. Bounded: at most `max` files (each with up to three fds),
 * the least recently used evicted first, and one that nobody asked for in
 * a minute goes at the next use of the cache. An entry is trusted for
 * `valid` ms after it was opened (http.open_file_cache_valid): after that
 * the next request looks the file up again under the same rules (openat2
 * RESOLVE_BENEATH), so a file changed, replaced or deleted on disk is seen
 * then at the latest. Entries are counted (refs): one evicted or flushed
 * while a response still reads from it is closed when that ends.
 *
 * Small files' bytes (read on the pool with the lookup:
 * http_static_file_load) are kept with their entry, at most mem_max bytes
 * in all (http.open_file_cache_mem): a hit is then answered from memory
 * with no read at all. When a put would pass the bound, the bytes of the
 * least recently used entries no response reads from are let go first
 * (their fds stay); a file that still does not fit is kept without its
 * bytes. Bytes leave the count when their entry leaves the cache (one a
 * response still reads from is freed when that ends).
 */
#ifndef GATEHOUSE_HTTP_FCACHE_H
#define GATEHOUSE_HTTP_FCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_static.h"

struct http_fcache;
struct http_fcache_entry;
struct http_fcache_root;

/* A cache of at most max files (>= 1), each trusted valid_ms, holding at
   most mem_max bytes of them in memory (0: none). NULL: no memory. */
struct http_fcache *http_fcache_new(size_t max, uint64_t valid_ms, size_t mem_max);

/* Forget everything (a new configuration): what is still in use is closed
   when released. */
void http_fcache_flush(struct http_fcache *c);

/* Flush and free (the worker ends; NULL is fine). */
void http_fcache_free(struct http_fcache *c);

/* The file rq names under its root, still valid at now_ms, with its
   siblings probed if rq's Accept-Encoding takes a coding: a reference
   (http_fcache_release), or NULL (look it up on the pool). */
struct http_fcache_entry *http_fcache_get(struct http_fcache *c, const struct http_static_req *rq,
					  uint64_t now_ms);

/* Keep *f (found at now_ms for rq): the cache takes its fds and bytes in
   memory (on success *f is left empty; bytes beyond the memory bound are
   freed) and returns a reference; NULL (no memory, or a key too long): *f
   is untouched, still the caller's. */
struct http_fcache_entry *http_fcache_put(struct http_fcache *c, const struct http_static_req *rq,
					  struct http_static_file *f, uint64_t now_ms);

/* The entry's file (valid while referenced). */
const struct http_static_file *http_fcache_file(const struct http_fcache_entry *e);

/* Drop a reference (closes the fds of an entry the cache has let go). */
void http_fcache_release(struct http_fcache_entry *e);

/* The root directory's fd opened less than valid_ms ago: a reference in
   *ref_out and its fd; -1 when it is to be opened again (on the pool). */
int http_fcache_root(struct http_fcache *c, const char *root, uint64_t now_ms,
		     struct http_fcache_root **ref_out);

/* Keep fd, just opened for root (>= 0; the cache takes it, and closes it
   at once when out of memory). */
void http_fcache_root_put(struct http_fcache *c, const char *root, int fd, uint64_t now_ms);

/* Drop a root reference (NULL is fine). */
void http_fcache_root_release(struct http_fcache_root *r);

/* Files held, and their bytes held in memory (for tests and the debug log). */
size_t http_fcache_count(const struct http_fcache *c);
size_t http_fcache_mem(const struct http_fcache *c);

#endif

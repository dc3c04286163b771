/*
 * http_fcache.c - a worker's open-file cache (include/http_fcache.h): a
 * hash table of entries by key (root, index, fallback, path), a list in
 * use order for eviction, and the few root directories. Loop thread only.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_fcache.h"
#include "http_static_int.h"
#include "list.h"

/* The longest key kept (a longer path is looked up every time). */
#define FC_KEY_MAX 4096
/* An entry nobody asked for in this long is let go (nginx's "inactive"):
   a deleted file's space is not held by an idle fd for long. */
#define FC_INACTIVE_MS 60000
/* Entries a put looks at, least recently used first, for bytes to let go
   of when the memory bound is reached (the cost stays bounded per put). */
#define FC_MEM_SCAN 16

struct http_fcache_entry {
	struct http_fcache_entry *hnext;
	struct list lru;           /* c->lru, most recently used first */
	struct http_fcache *c;     /* NULL once let go (freed at refs 0) */
	unsigned refs;
	uint32_t hash;
	uint64_t opened_ms, used_ms;
	size_t mem;                /* bytes of f held in memory (counted in c->mem_used) */
	struct http_static_file f;
	size_t keylen;
	char key[];
};

struct http_fcache_root {
	struct http_fcache_root *next;
	struct http_fcache *c;     /* NULL once let go */
	unsigned refs;
	int fd;
	uint64_t opened_ms;
	char path[];
};

struct http_fcache {
	struct http_fcache_entry **buckets;
	size_t nbuckets;           /* a power of two */
	size_t count, max;
	size_t mem_used, mem_max;  /* files' bytes held in memory, and their bound */
	uint64_t valid_ms;
	struct list lru;
	struct http_fcache_root *roots;
};

static uint32_t fc__hash(const char *k, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)k[i]) * 16777619u;
	return h;
}

static bool fc__add(char *k, size_t cap, size_t *o, char tag, const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	if (*o + n + 2 > cap)
		return false;
	k[(*o)++] = s != NULL ? tag : '-';
	memcpy(k + *o, s != NULL ? s : "", n);
	*o += n;
	k[(*o)++] = '\0';
	return true;
}

/* The key of what rq's lookup depends on; 0 when too long. Two requests
   with the same key find the same file (the method, conditionals and
   ranges are answered from the entry). */
static size_t fc__key(const struct http_static_req *rq, char *k, size_t cap)
{
	size_t o = 0;

	if (!fc__add(k, cap, &o, 'r', rq->root) || !fc__add(k, cap, &o, 'i', rq->index)
	    || !fc__add(k, cap, &o, 'f', rq->fallback) || !fc__add(k, cap, &o, 'p', rq->path))
		return 0;
	return o;
}

struct http_fcache *http_fcache_new(size_t max, uint64_t valid_ms, size_t mem_max)
{
	struct http_fcache *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->max = max > 0 ? max : 1;
	c->nbuckets = 16;
	while (c->nbuckets < c->max && c->nbuckets < ((size_t)1 << 20))
		c->nbuckets <<= 1;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	if (c->buckets == NULL) {
		free(c);
		return NULL;
	}
	c->valid_ms = valid_ms;
	c->mem_max = mem_max;
	list_init(&c->lru);
	return c;
}

static void fc__free_entry(struct http_fcache_entry *e)
{
	http_static_file_close(&e->f, -1);
	free(e);
}

/* Let e go: out of the table; closed now or at its last release. */
static void fc__drop(struct http_fcache_entry *e)
{
	struct http_fcache *c = e->c;
	struct http_fcache_entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	list_remove(&e->lru);
	c->count--;
	c->mem_used -= e->mem;
	e->mem = 0;
	e->c = NULL;
	if (e->refs == 0)
		fc__free_entry(e);
}

static struct http_fcache_entry *fc__find(struct http_fcache *c, const char *k, size_t n,
					  uint32_t h)
{
	for (struct http_fcache_entry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->hnext)
		if (e->hash == h && e->keylen == n && memcmp(e->key, k, n) == 0)
			return e;
	return NULL;
}

/* Let go of the least recently used entries idle for FC_INACTIVE_MS (a
   few per call: the cost stays bounded per request). */
static void fc__idle(struct http_fcache *c, uint64_t now_ms)
{
	for (int i = 0; i < 2 && !list_empty(&c->lru); i++) {
		struct http_fcache_entry *e = list_entry(c->lru.prev, struct http_fcache_entry, lru);
		if (now_ms - e->used_ms < FC_INACTIVE_MS)
			return;
		fc__drop(e);
	}
}

struct http_fcache_entry *http_fcache_get(struct http_fcache *c, const struct http_static_req *rq,
					  uint64_t now_ms)
{
	char k[FC_KEY_MAX];
	size_t n = fc__key(rq, k, sizeof(k));

	if (c == NULL || n == 0)
		return NULL;
	fc__idle(c, now_ms);
	uint32_t h = fc__hash(k, n);
	struct http_fcache_entry *e = fc__find(c, k, n, h);
	if (e == NULL)
		return NULL;
	if (now_ms - e->opened_ms >= c->valid_ms) {
		/* Too old to trust: looked up again (and put back). */
		fc__drop(e);
		return NULL;
	}
	if (!e->f.probed && http_static__encodings(rq->accept_encoding) != 0)
		return NULL; /* the siblings are not known yet: the lookup's put replaces it */
	list_remove(&e->lru);
	list_insert_head(&c->lru, &e->lru);
	e->used_ms = now_ms;
	e->refs++;
	return e;
}

/* Room for n more bytes in memory: the bytes of the least recently used
   entries no response reads from are let go (their fds stay). */
static bool fc__mem_room(struct http_fcache *c, size_t n)
{
	struct list *l = c->lru.prev;

	if (n > c->mem_max)
		return false;
	for (int i = 0; i < FC_MEM_SCAN && l != &c->lru && c->mem_used + n > c->mem_max; i++) {
		struct http_fcache_entry *e = list_entry(l, struct http_fcache_entry, lru);
		l = l->prev;
		if (e->mem == 0 || e->refs > 0)
			continue;
		http_static_file_unload(&e->f);
		c->mem_used -= e->mem;
		e->mem = 0;
	}
	return c->mem_used + n <= c->mem_max;
}

struct http_fcache_entry *http_fcache_put(struct http_fcache *c, const struct http_static_req *rq,
					  struct http_static_file *f, uint64_t now_ms)
{
	char k[FC_KEY_MAX];
	size_t n = fc__key(rq, k, sizeof(k));

	if (c == NULL || n == 0 || f->file.fd < 0)
		return NULL;
	struct http_fcache_entry *e = malloc(sizeof(*e) + n);
	if (e == NULL)
		return NULL;
	uint32_t h = fc__hash(k, n);
	struct http_fcache_entry *old = fc__find(c, k, n, h);
	if (old != NULL)
		fc__drop(old);
	size_t mem = http_static_file_mem(f);
	if (mem > 0 && !fc__mem_room(c, mem)) {
		http_static_file_unload(f);
		mem = 0;
	}
	c->mem_used += mem;
	e->mem = mem;
	e->c = c;
	e->refs = 1;
	e->hash = h;
	e->opened_ms = e->used_ms = now_ms;
	e->f = *f;
	http_static_file_init(f);
	e->keylen = n;
	memcpy(e->key, k, n);
	e->hnext = c->buckets[h & (c->nbuckets - 1)];
	c->buckets[h & (c->nbuckets - 1)] = e;
	list_insert_head(&c->lru, &e->lru);
	c->count++;
	while (c->count > c->max)
		fc__drop(list_entry(c->lru.prev, struct http_fcache_entry, lru));
	return e;
}

const struct http_static_file *http_fcache_file(const struct http_fcache_entry *e)
{
	return &e->f;
}

void http_fcache_release(struct http_fcache_entry *e)
{
	if (e != NULL && --e->refs == 0 && e->c == NULL)
		fc__free_entry(e);
}

static void fc__root_drop(struct http_fcache_root *r)
{
	struct http_fcache_root **pp = &r->c->roots;

	while (*pp != r)
		pp = &(*pp)->next;
	*pp = r->next;
	r->c = NULL;
	if (r->refs == 0) {
		close(r->fd);
		free(r);
	}
}

int http_fcache_root(struct http_fcache *c, const char *root, uint64_t now_ms,
		     struct http_fcache_root **ref_out)
{
	*ref_out = NULL;
	if (c == NULL)
		return -1;
	for (struct http_fcache_root *r = c->roots; r; r = r->next) {
		if (strcmp(r->path, root) != 0)
			continue;
		/* A root replaced on disk (a deploy's symlink switched) is
		   seen once this one is too old to trust. */
		if (now_ms - r->opened_ms >= c->valid_ms)
			return -1;
		r->refs++;
		*ref_out = r;
		return r->fd;
	}
	return -1;
}

void http_fcache_root_put(struct http_fcache *c, const char *root, int fd, uint64_t now_ms)
{
	size_t n = strlen(root);
	struct http_fcache_root *r = c != NULL ? malloc(sizeof(*r) + n + 1) : NULL;

	if (r == NULL) {
		close(fd);
		return;
	}
	for (struct http_fcache_root *o = c->roots; o; o = o->next)
		if (strcmp(o->path, root) == 0) {
			fc__root_drop(o);
			break;
		}
	r->c = c;
	r->refs = 0;
	r->fd = fd;
	r->opened_ms = now_ms;
	memcpy(r->path, root, n + 1);
	r->next = c->roots;
	c->roots = r;
}

void http_fcache_root_release(struct http_fcache_root *r)
{
	if (r != NULL && --r->refs == 0 && r->c == NULL) {
		close(r->fd);
		free(r);
	}
}

void http_fcache_flush(struct http_fcache *c)
{
	if (c == NULL)
		return;
	while (!list_empty(&c->lru))
		fc__drop(list_entry(c->lru.next, struct http_fcache_entry, lru));
	while (c->roots != NULL)
		fc__root_drop(c->roots);
}

void http_fcache_free(struct http_fcache *c)
{
	if (c == NULL)
		return;
	http_fcache_flush(c);
	free(c->buckets);
	free(c);
}

size_t http_fcache_count(const struct http_fcache *c)
{
	return c != NULL ? c->count : 0;
}

size_t http_fcache_mem(const struct http_fcache *c)
{
	return c != NULL ? c->mem_used : 0;
}

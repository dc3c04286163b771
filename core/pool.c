/*
 * pool.c - fixed-size buffers from a per-worker free list.
 *
 * Steady-state relaying takes and returns buffers here and never calls
 * malloc. The free lists are capped so a burst does not pin memory forever.
 * Bulk buffers (pbuf_get_big) have a free list of their own; pbuf_put tells
 * them apart by their capacity.
 */
#include <stdlib.h>
#include <string.h>

#include "stream.h"
#include "secret.h"

void pool_init(struct pool *p, uint32_t size, size_t max_free)
{
	p->free = NULL;
	p->nfree = 0;
	p->max_free = max_free;
	p->size = size;
	p->outstanding = 0;
	/* Bulk buffers: 4 x the size (64 KiB for 16 KiB relay buffers), not
	   above POOL_BIG_MAX and never below the size itself. */
	uint64_t big = (uint64_t)size * POOL_BIG_FACTOR;
	if (big > POOL_BIG_MAX)
		big = POOL_BIG_MAX;
	if (big < size)
		big = size;
	p->big_size = (uint32_t)big;
	p->big_free = NULL;
	p->nbig_free = 0;
	p->max_big_free = max_free / POOL_BIG_FACTOR > 0 ? max_free / POOL_BIG_FACTOR : 1;
	p->big_outstanding = 0;
}

/* Free buffers from the list's head until keep are left (*n counts it). */
static void pool__free_beyond(struct pbuf **head, size_t *n, size_t keep)
{
	while (*n > keep) {
		struct pbuf *b = *head;
		*head = b->next;
		free(b);
		(*n)--;
	}
}

void pool_trim(struct pool *p)
{
	pool__free_beyond(&p->free, &p->nfree, POOL_TRIM_KEEP);
	pool__free_beyond(&p->big_free, &p->nbig_free, POOL_TRIM_KEEP_BIG);
}

void pool_destroy(struct pool *p)
{
	pool__free_beyond(&p->free, &p->nfree, 0);
	pool__free_beyond(&p->big_free, &p->nbig_free, 0);
}

static struct pbuf *pbuf__new(struct pool *p, size_t cap)
{
	struct pbuf *b = malloc(sizeof(*b) + cap);
	if (b == NULL)
		return NULL;
	b->pool = p;
	b->cap = (uint32_t)cap;
	return b;
}

/* A buffer from the list (free, nfree), or a new one of cap bytes. */
static struct pbuf *pool__take(struct pool *p, struct pbuf **free_, size_t *nfree, uint32_t cap)
{
	struct pbuf *b = *free_;

	if (b != NULL) {
		*free_ = b->next;
		(*nfree)--;
	} else {
		b = pbuf__new(p, cap);
		if (b == NULL)
			return NULL;
	}
	p->outstanding++;
	b->next = NULL;
	b->st = NULL;
	b->off = 0;
	b->len = 0;
	b->wipe = false;
	return b;
}

struct pbuf *pbuf_get(struct pool *p)
{
	return pool__take(p, &p->free, &p->nfree, p->size);
}

struct pbuf *pbuf_get_big(struct pool *p)
{
	if (p->big_size == p->size)
		return pbuf_get(p);
	struct pbuf *b = pool__take(p, &p->big_free, &p->nbig_free, p->big_size);
	if (b != NULL)
		p->big_outstanding++;
	return b;
}

struct pbuf *pbuf_get_size(struct pool *p, size_t n)
{
	if (n <= p->size)
		return pbuf_get(p);
	struct pbuf *b = pbuf__new(NULL, n);
	if (b == NULL)
		return NULL;
	b->next = NULL;
	b->st = NULL;
	b->off = 0;
	b->len = 0;
	b->wipe = false;
	return b;
}

struct pbuf *pbuf_shrink(struct pbuf *b)
{
	if (b->pool == NULL || b->len > b->cap / 8)
		return b;
	struct pbuf *c = pbuf__new(NULL, b->len);
	if (c == NULL)
		return b;
	c->next = b->next;
	c->st = NULL;
	c->off = 0;
	c->len = b->len;
	c->wipe = b->wipe;
	memcpy(c->data, b->data + b->off, b->len);
	pbuf_put(b);
	return c;
}

void pbuf_put(struct pbuf *b)
{
	if (b == NULL)
		return;
	/* Only data[0 .. off+len) was ever filled (writes consume from the
	   front and never move the end), so wiping that much is enough; the
	   whole 16 KiB cap was most of a login's cleansing time. */
	if (b->wipe)
		secret_wipe(b->data, (size_t)b->off + b->len < b->cap ? (size_t)b->off + b->len : b->cap);
	struct pool *p = b->pool;
	if (p == NULL) {
		free(b);
		return;
	}
	p->outstanding--;
	struct pbuf **free_ = &p->free;
	size_t *nfree = &p->nfree, max = p->max_free;
	if (b->cap != p->size) {
		p->big_outstanding--;
		free_ = &p->big_free;
		nfree = &p->nbig_free;
		max = p->max_big_free;
	}
	if (*nfree >= max) {
		free(b);
		return;
	}
	b->next = *free_;
	*free_ = b;
	(*nfree)++;
}

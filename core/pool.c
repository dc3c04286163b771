/*
 * pool.c - fixed-size buffers from a per-worker free list.
 *
 * Steady-state relaying takes and returns buffers here and never calls
 * malloc. The free list is capped so a burst does not pin memory forever.
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
}

void pool_destroy(struct pool *p)
{
	while (p->free) {
		struct pbuf *b = p->free;
		p->free = b->next;
		free(b);
	}
	p->nfree = 0;
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

struct pbuf *pbuf_get(struct pool *p)
{
	struct pbuf *b = p->free;

	if (b != NULL) {
		p->free = b->next;
		p->nfree--;
	} else {
		b = pbuf__new(p, p->size);
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
	if (p->nfree >= p->max_free) {
		free(b);
		return;
	}
	b->next = p->free;
	p->free = b;
	p->nfree++;
}

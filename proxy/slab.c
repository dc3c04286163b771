/*
 * slab.c - fixed-size blocks packed into 16 KiB chunks, for the long-lived
 * per-connection blocks of one worker (mail sessions).
 *
 * Why: a login storm mallocs and frees tens of KiB per login (route
 * lookup, parser state, TLS handshake) around the session blocks made at
 * the same time; once it is over, each idle session sat alone on its heap
 * pages, among free holes smaller than a page that malloc_trim cannot give
 * back (4.4-5 KiB of RSS per idle plain IMAP session for ~2.1 KiB
 * allocated). Taken from chunks of their own, blocks of sessions made
 * together share pages. Chunks are malloc'd (under M_MMAP_THRESHOLD: no
 * system call per chunk) and freed when their last block is, but one
 * empty chunk is kept so a worker with a connection coming and going does
 * not malloc and free a chunk each time. 16 KiB (7 mail sessions): a
 * session that outlives the others of its chunk pins at most that much
 * (64 KiB chunks packed 0.2 KiB per idle session better, 2.8 against
 * 3.0 KiB, but let a few survivors of a storm pin 64 KiB each). Not
 * thread-safe: one per worker.
 */
#include <stdint.h>
#include <stdlib.h>

#include "slab.h"

struct slab_chunk {
	struct slab_chunk *next, *prev; /* on the slab's list of chunks with room */
	struct slab *slab;
	void *free;                     /* free blocks, linked through their first word */
	uint32_t used;                  /* blocks handed out */
	uint32_t fresh;                 /* blocks never handed out: [fresh, per_chunk) */
	bool listed;                    /* on slab->room */
};

/* Slots start after the header; each slot is the chunk's address (its
   first 16 bytes, as malloc's own block header) and then the block. */
#define SLAB__HDR ((sizeof(struct slab_chunk) + 15) & ~(size_t)15)
#define SLAB__PREFIX 16

void slab_init(struct slab *sl, size_t size)
{
	sl->size = (size + SLAB__PREFIX + 15) & ~(size_t)15;
	sl->per_chunk = (uint32_t)((SLAB_CHUNK - SLAB__HDR) / sl->size);
	sl->room = NULL;
	sl->empty = NULL;
	sl->chunks = 0;
}

static void slab__link(struct slab *sl, struct slab_chunk *c)
{
	c->prev = NULL;
	c->next = sl->room;
	if (sl->room)
		sl->room->prev = c;
	sl->room = c;
	c->listed = true;
}

static void slab__unlink(struct slab *sl, struct slab_chunk *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		sl->room = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->listed = false;
}

void *slab_get(struct slab *sl)
{
	struct slab_chunk *c = sl->room;

	if (sl->per_chunk == 0)
		return NULL;
	if (c == NULL) {
		c = sl->empty;
		sl->empty = NULL;
		if (c == NULL) {
			c = malloc(SLAB_CHUNK);
			if (c == NULL)
				return NULL;
			c->slab = sl;
			c->free = NULL;
			c->used = 0;
			c->fresh = 0;
			sl->chunks++;
		}
		slab__link(sl, c);
	}
	void *b;
	if (c->free != NULL) {
		b = c->free;
		c->free = *(void **)b;
	} else {
		char *slot = (char *)c + SLAB__HDR + (size_t)c->fresh * sl->size;
		*(struct slab_chunk **)slot = c;
		b = slot + SLAB__PREFIX;
		c->fresh++;
	}
	c->used++;
	if (c->used == sl->per_chunk)
		slab__unlink(sl, c);
	return b;
}

void slab_put(struct slab *sl, void *b)
{
	if (b == NULL)
		return;
	struct slab_chunk *c = *(struct slab_chunk **)((char *)b - SLAB__PREFIX);
	*(void **)b = c->free;
	c->free = b;
	c->used--;
	if (!c->listed)
		slab__link(sl, c);
	if (c->used > 0)
		return;
	slab__unlink(sl, c);
	if (sl->empty == NULL) {
		sl->empty = c;
		return;
	}
	sl->chunks--;
	free(c);
}

void slab_destroy(struct slab *sl)
{
	/* Every block has been put back by now (sessions end before their
	   worker): only the kept empty chunk is left. */
	free(sl->empty);
	sl->empty = NULL;
}

/*
 * slab.h - fixed-size blocks packed into chunks of their own (slab.c),
 * for long-lived per-connection blocks. One per worker: not thread-safe.
 */
#ifndef GATEHOUSE_SLAB_H
#define GATEHOUSE_SLAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SLAB_CHUNK 16384

struct slab_chunk;
struct slab {
	size_t size;              /* bytes per slot (the block and its prefix) */
	uint32_t per_chunk;       /* slots per chunk */
	struct slab_chunk *room;  /* chunks with a free slot */
	struct slab_chunk *empty; /* one empty chunk kept for the next block */
	size_t chunks;            /* chunks allocated */
};

/* Blocks of size bytes (16-byte aligned, not zeroed). */
void slab_init(struct slab *sl, size_t size);
/* A block, or NULL (no memory). */
void *slab_get(struct slab *sl);
/* Give b (from slab_get on sl; NULL is ignored) back; a chunk left empty
   is freed unless it is the one kept. */
void slab_put(struct slab *sl, void *b);
/* Free what is kept; every block must have been put back. */
void slab_destroy(struct slab *sl);

#endif

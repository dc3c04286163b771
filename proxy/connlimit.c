/*
 * connlimit.c - concurrent connection caps.
 *
 * A total counter, and a sharded hash of per-address counts: an entry
 * exists only while that address has connections, so memory follows the
 * number of distinct clients connected now, not ever.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connlimit.h"

#define CONNLIMIT_SHARDS 64
#define CONNLIMIT_BUCKETS 256 /* per shard */

struct connlimit_entry {
	struct connlimit_entry *next;
	size_t count;
	char ip[46];
};

struct connlimit_shard {
	pthread_mutex_t lock;
	struct connlimit_entry *buckets[CONNLIMIT_BUCKETS];
};

static atomic_size_t connlimit_total;
static struct connlimit_shard connlimit_shards[CONNLIMIT_SHARDS];
static pthread_once_t connlimit_once = PTHREAD_ONCE_INIT;

static void connlimit__init(void)
{
	for (int i = 0; i < CONNLIMIT_SHARDS; i++)
		pthread_mutex_init(&connlimit_shards[i].lock, NULL);
}

/* FNV-1a: addresses are short; the shard and the bucket use different bits. */
static uint32_t connlimit__hash(const char *ip)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)ip; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

static struct connlimit_entry **connlimit__slot(struct connlimit_shard *sh, uint32_t h, const char *ip)
{
	struct connlimit_entry **e = &sh->buckets[(h >> 8) % CONNLIMIT_BUCKETS];
	while (*e && strcmp((*e)->ip, ip) != 0)
		e = &(*e)->next;
	return e;
}

bool connlimit_acquire(const char *ip, size_t max_total, size_t max_per_ip, const char **which_out)
{
	pthread_once(&connlimit_once, connlimit__init);
	size_t total = atomic_fetch_add(&connlimit_total, 1) + 1;
	if (max_total > 0 && total > max_total) {
		atomic_fetch_sub(&connlimit_total, 1);
		if (which_out)
			*which_out = "total";
		return false;
	}
	uint32_t h = connlimit__hash(ip);
	struct connlimit_shard *sh = &connlimit_shards[h % CONNLIMIT_SHARDS];
	bool ok = true;

	pthread_mutex_lock(&sh->lock);
	struct connlimit_entry **slot = connlimit__slot(sh, h, ip);
	if (*slot == NULL) {
		struct connlimit_entry *e = calloc(1, sizeof(*e));
		if (e != NULL) {
			strncpy(e->ip, ip, sizeof(e->ip) - 1);
			*slot = e;
		}
	}
	if (*slot == NULL) {
		ok = max_per_ip == 0; /* no memory: count nothing, cap only if asked to */
	} else if (max_per_ip > 0 && (*slot)->count >= max_per_ip) {
		ok = false;
	} else {
		(*slot)->count++;
	}
	if (!ok && *slot != NULL && (*slot)->count == 0) {
		struct connlimit_entry *e = *slot;
		*slot = e->next;
		free(e);
	}
	pthread_mutex_unlock(&sh->lock);
	if (!ok) {
		atomic_fetch_sub(&connlimit_total, 1);
		if (which_out)
			*which_out = "per_ip";
	}
	return ok;
}

void connlimit_release(const char *ip)
{
	uint32_t h = connlimit__hash(ip);
	struct connlimit_shard *sh = &connlimit_shards[h % CONNLIMIT_SHARDS];

	pthread_once(&connlimit_once, connlimit__init);
	atomic_fetch_sub(&connlimit_total, 1);
	pthread_mutex_lock(&sh->lock);
	struct connlimit_entry **slot = connlimit__slot(sh, h, ip);
	struct connlimit_entry *e = *slot;
	if (e != NULL && --e->count == 0) {
		*slot = e->next;
		free(e);
	}
	pthread_mutex_unlock(&sh->lock);
}

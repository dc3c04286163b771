/*
 * rcache_l1.c - the in-process route cache in front of memcached.
 *
 * Shared by every worker thread, so a user warmed by one worker is warm for
 * all. Split into shards, each with its own mutex, hash table and LRU list,
 * so concurrent logins rarely wait for each other. Entries expire after
 * their TTL (checked when touched).
 *
 * Bounded, and scan-resistant: a full shard evicts its least recently used
 * entry for a newcomer only for one put in L1_ADMIT_EVERY (or when that entry
 * has expired); the other newcomers are not admitted. Plain LRU thrashes to
 * no hits at all when a site's users cycle through more routes than it
 * holds (each login evicts the route needed soonest); with this admission
 * a cyclic scan over twice the capacity measured ~40 % hits (the best any
 * cache can do there is 50 %), and a route that keeps missing still gets
 * in after a few misses. Memory: one entry is a 64-byte header plus
 * "proto login", host and user with their NULs, ~128 bytes from malloc for
 * a typical route, plus up to two bucket pointers: ~140 bytes, so the
 * default 100,000 entries (50,000 users over IMAP and POP3) take ~14 MiB
 * when full. The buckets of all shards are one calloc, so pages the hash
 * has not touched yet cost no memory. It holds the whole route, canonical user included,
 * which memcached's "ip:port" values cannot.
 *
 * Time is passed in (now_ms) so tests control it.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rcache.h"

#define L1_MAX_SHARDS 16
/* Below this many entries one shard keeps the LRU order exact. */
#define L1_MIN_SHARDED 256
/* A full shard admits one newcomer in this many (see above). */
#define L1_ADMIT_EVERY 8

struct l1_entry {
	struct l1_entry *hnext;         /* hash chain */
	struct l1_entry *prev, *next;   /* LRU list: head is the most recently used */
	uint64_t hash;
	uint64_t expires_ms;
	uint16_t port;
	size_t klen, hlen;              /* data = key NUL host NUL user NUL */
	char data[];
};

struct l1_shard {
	pthread_mutex_t lock;
	struct l1_entry **buckets;
	size_t mask;                    /* buckets - 1, a power of two minus one */
	struct l1_entry *head, *tail;
	size_t count, cap;
	unsigned full_puts;             /* newcomers that met a full shard (admission) */
	char pad[64];                   /* keep neighbouring shards' locks off one cache line */
};

struct rcache_l1 {
	unsigned nshards;
	struct l1_shard *shards;
	struct l1_entry **buckets;      /* every shard's buckets, one allocation */
};

/* FNV-1a over "proto login". */
static uint64_t l1__hash(const char *proto, const char *login)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (const char *p = proto; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
	h = (h ^ ' ') * 0x100000001b3ull;
	for (const char *p = login; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
	return h;
}

struct rcache_l1 *rcache_l1_new(size_t max_entries)
{
	struct rcache_l1 *l1;

	if (max_entries == 0 || (l1 = calloc(1, sizeof(*l1))) == NULL)
		return NULL;
	l1->nshards = max_entries < L1_MIN_SHARDED ? 1 : L1_MAX_SHARDS;
	l1->shards = calloc(l1->nshards, sizeof(*l1->shards));
	if (l1->shards == NULL) {
		free(l1);
		return NULL;
	}
	/* Every shard gets the same power-of-two bucket count. */
	size_t nb = 16, per = max_entries / l1->nshards + 1;
	while (nb < per && nb < ((size_t)1 << 24))
		nb <<= 1;
	l1->buckets = calloc(nb * l1->nshards, sizeof(*l1->buckets));
	if (l1->buckets == NULL) {
		free(l1->shards);
		free(l1);
		return NULL;
	}
	for (unsigned i = 0; i < l1->nshards; i++) {
		struct l1_shard *s = &l1->shards[i];

		s->cap = max_entries / l1->nshards + (i < max_entries % l1->nshards ? 1 : 0);
		s->mask = nb - 1;
		s->buckets = l1->buckets + (size_t)i * nb;
		pthread_mutex_init(&s->lock, NULL);
	}
	return l1;
}

void rcache_l1_free(struct rcache_l1 *l1)
{
	if (l1 == NULL)
		return;
	for (unsigned i = 0; i < l1->nshards; i++) {
		struct l1_shard *s = &l1->shards[i];
		struct l1_entry *e = s->head;
		while (e) {
			struct l1_entry *n = e->next;
			free(e);
			e = n;
		}
		pthread_mutex_destroy(&s->lock);
	}
	free(l1->buckets);
	free(l1->shards);
	free(l1);
}

static struct l1_shard *l1__shard(struct rcache_l1 *l1, uint64_t h)
{
	return &l1->shards[(h >> 32) % l1->nshards];
}

static bool l1__same_key(const struct l1_entry *e, uint64_t h, const char *proto, size_t pl,
			 const char *login, size_t ll)
{
	return e->hash == h && e->klen == pl + 1 + ll && memcmp(e->data, proto, pl) == 0 &&
	       e->data[pl] == ' ' && memcmp(e->data + pl + 1, login, ll) == 0;
}

/* Find the entry and the link that points at it. Shard locked. */
static struct l1_entry **l1__find(struct l1_shard *s, uint64_t h, const char *proto,
				  const char *login)
{
	size_t pl = strlen(proto), ll = strlen(login);
	struct l1_entry **pp = &s->buckets[h & s->mask];

	while (*pp && !l1__same_key(*pp, h, proto, pl, login, ll))
		pp = &(*pp)->hnext;
	return pp;
}

static void l1__lru_unlink(struct l1_shard *s, struct l1_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		s->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		s->tail = e->prev;
	e->prev = e->next = NULL;
}

static void l1__lru_push(struct l1_shard *s, struct l1_entry *e)
{
	e->prev = NULL;
	e->next = s->head;
	if (s->head)
		s->head->prev = e;
	s->head = e;
	if (s->tail == NULL)
		s->tail = e;
}

/* Unlink *pp from its chain and the LRU list and free it. Shard locked. */
static void l1__drop(struct l1_shard *s, struct l1_entry **pp)
{
	struct l1_entry *e = *pp;

	*pp = e->hnext;
	l1__lru_unlink(s, e);
	s->count--;
	free(e);
}

bool rcache_l1_get(struct rcache_l1 *l1, const char *proto, const char *login, uint64_t now_ms,
		   struct route *out)
{
	uint64_t h = l1__hash(proto, login);
	struct l1_shard *s = l1__shard(l1, h);
	bool hit = false;

	pthread_mutex_lock(&s->lock);
	struct l1_entry **pp = l1__find(s, h, proto, login);
	if (*pp != NULL && (*pp)->expires_ms <= now_ms) {
		l1__drop(s, pp);
	} else if (*pp != NULL) {
		struct l1_entry *e = *pp;
		const char *host = e->data + e->klen + 1;

		memset(out, 0, sizeof(*out));
		out->result = ROUTE_OK;
		out->source = ROUTE_SRC_L1;
		memcpy(out->host, host, e->hlen + 1);
		out->port = e->port;
		memcpy(out->user, host + e->hlen + 1, strlen(host + e->hlen + 1) + 1);
		l1__lru_unlink(s, e);
		l1__lru_push(s, e);
		hit = true;
	}
	pthread_mutex_unlock(&s->lock);
	if (hit)
		memcpy(out->reason, "l1 cache", sizeof("l1 cache"));
	return hit;
}

void rcache_l1_put(struct rcache_l1 *l1, const char *proto, const char *login,
		   const struct route *r, uint64_t now_ms, uint64_t ttl_ms)
{
	size_t pl = strlen(proto), ll = strlen(login);
	size_t hl = strnlen(r->host, sizeof(r->host) - 1), ul = strnlen(r->user, sizeof(r->user) - 1);
	uint64_t h = l1__hash(proto, login);
	struct l1_shard *s = l1__shard(l1, h);
	struct l1_entry *e;

	if (ttl_ms == 0 || hl == 0 || ul == 0)
		return;
	/* Allocate before locking: the lock covers only pointer work. */
	e = malloc(sizeof(*e) + pl + 1 + ll + 1 + hl + 1 + ul + 1);
	if (e == NULL)
		return;
	e->hash = h;
	e->expires_ms = now_ms + ttl_ms;
	e->port = r->port;
	e->klen = pl + 1 + ll;
	e->hlen = hl;
	char *d = e->data;
	memcpy(d, proto, pl);
	d[pl] = ' ';
	memcpy(d + pl + 1, login, ll);
	d[e->klen] = '\0';
	d += e->klen + 1;
	memcpy(d, r->host, hl);
	d[hl] = '\0';
	memcpy(d + hl + 1, r->user, ul);
	d[hl + 1 + ul] = '\0';

	pthread_mutex_lock(&s->lock);
	struct l1_entry **pp = l1__find(s, h, proto, login);
	if (*pp != NULL)
		l1__drop(s, pp);
	if (s->count >= s->cap && s->tail != NULL) {
		struct l1_entry *victim = s->tail;

		if (victim->expires_ms > now_ms && s->full_puts++ % L1_ADMIT_EVERY != 0) {
			pthread_mutex_unlock(&s->lock);
			free(e);
			return;
		}
		struct l1_entry **vp = &s->buckets[victim->hash & s->mask];
		while (*vp != victim)
			vp = &(*vp)->hnext;
		l1__drop(s, vp);
	}
	pp = &s->buckets[h & s->mask];
	e->hnext = *pp;
	*pp = e;
	l1__lru_push(s, e);
	s->count++;
	pthread_mutex_unlock(&s->lock);
}

bool rcache_l1_remove(struct rcache_l1 *l1, const char *proto, const char *login)
{
	uint64_t h = l1__hash(proto, login);
	struct l1_shard *s = l1__shard(l1, h);
	bool found = false;

	pthread_mutex_lock(&s->lock);
	struct l1_entry **pp = l1__find(s, h, proto, login);
	if (*pp != NULL) {
		l1__drop(s, pp);
		found = true;
	}
	pthread_mutex_unlock(&s->lock);
	return found;
}

size_t rcache_l1_count(struct rcache_l1 *l1)
{
	size_t n = 0;

	for (unsigned i = 0; i < l1->nshards; i++) {
		pthread_mutex_lock(&l1->shards[i].lock);
		n += l1->shards[i].count;
		pthread_mutex_unlock(&l1->shards[i].lock);
	}
	return n;
}

/* The login of an entry's key "proto kind login pip cip host" equals name,
   or its route's user does (ASCII case-insensitively). */
static bool l1__entry_names(const struct l1_entry *e, const char *name, size_t nl)
{
	const char *k = e->data, *end = e->data + e->klen;
	const char *sp = memchr(k, ' ', (size_t)(end - k));                 /* after proto */
	const char *login = sp ? memchr(sp + 1, ' ', (size_t)(end - sp - 1)) : NULL; /* after kind */

	if (login != NULL) {
		login++;
		const char *le = memchr(login, ' ', (size_t)(end - login));
		size_t ll = le ? (size_t)(le - login) : (size_t)(end - login);
		if (ll == nl && strncasecmp(login, name, nl) == 0)
			return true;
	}
	const char *user = e->data + e->klen + 1 + e->hlen + 1;
	return strcasecmp(user, name) == 0;
}

size_t rcache_l1_purge(struct rcache_l1 *l1, const char *name)
{
	size_t nl = strlen(name), n = 0;

	for (unsigned i = 0; i < l1->nshards; i++) {
		struct l1_shard *s = &l1->shards[i];

		pthread_mutex_lock(&s->lock);
		for (struct l1_entry *e = s->head, *next; e != NULL; e = next) {
			next = e->next;
			if (!l1__entry_names(e, name, nl))
				continue;
			struct l1_entry **pp = &s->buckets[e->hash & s->mask];
			while (*pp != e)
				pp = &(*pp)->hnext;
			l1__drop(s, pp);
			n++;
		}
		pthread_mutex_unlock(&s->lock);
	}
	return n;
}

/*
 * upstream.c - server choice and passive health for upstream groups
 * (include/upstream.h has the rules). Pure: the caller keeps the state
 * (one per worker and group) and says what time it is.
 */
#include <stdlib.h>

#include "upstream.h"

struct upstream_health *upstream_health_new(int nservers)
{
	if (nservers < 1)
		return NULL;
	struct upstream_health *h =
		calloc(1, sizeof(*h) + (size_t)nservers * sizeof(struct upstream_server_health));
	if (h != NULL)
		h->nservers = nservers;
	return h;
}

void upstream_health_free(struct upstream_health *h)
{
	free(h);
}

static bool upstream__tried(const struct upstream_tried *t, int i)
{
	return i < UPSTREAM_MAX_TRIES && (t->bits[i / 64] >> (i % 64) & 1u) != 0;
}

static void upstream__mark(struct upstream_tried *t, int i)
{
	if (i < UPSTREAM_MAX_TRIES) {
		t->bits[i / 64] |= (uint64_t)1 << (i % 64);
		t->n++;
	}
}

bool upstream_down(const struct upstream_health *h, int i, uint64_t now_ms)
{
	return h != NULL && i < h->nservers && h->srv[i].down_until_ms > now_ms;
}

/* FNV-1a of the client address: the same function as the HTTP hash
   (http_ip_hash), so one client keeps its server across both. */
static uint32_t upstream__hash(const char *ip)
{
	uint32_t x = 2166136261u;

	for (const char *p = ip; p != NULL && *p; p++) {
		x ^= (uint8_t)*p;
		x *= 16777619u;
	}
	return x;
}

int upstream_pick(struct upstream_health *h, const struct conf_upstream *u, const char *client_ip,
		  struct upstream_tried *tried, uint64_t now_ms)
{
	int n = u->nservers < UPSTREAM_MAX_TRIES ? u->nservers : UPSTREAM_MAX_TRIES;

	if (h != NULL && h->nservers != u->nservers)
		h = NULL; /* state of another group: ignore it rather than misread it */
	if (n < 1 || tried->n >= n)
		return -1;
	unsigned start;
	if (u->balance == CONF_BALANCE_ROUND_ROBIN)
		start = h != NULL ? h->next % (unsigned)n : 0;
	else
		start = upstream__hash(client_ip) % (unsigned)n;
	/* A group of one is never down: there is nothing else to try. */
	bool health = n > 1;
	for (int k = 0; k < n; k++) {
		int i = (int)((start + (unsigned)k) % (unsigned)n);
		if (upstream__tried(tried, i) || (health && upstream_down(h, i, now_ms)))
			continue;
		upstream__mark(tried, i);
		if (h != NULL && u->balance == CONF_BALANCE_ROUND_ROBIN)
			h->next = (unsigned)i + 1;
		return i;
	}
	return -1;
}

void upstream_failed(struct upstream_health *h, const struct conf_upstream *u, int i,
		     uint64_t now_ms)
{
	if (h == NULL || i < 0 || i >= h->nservers || h->nservers != u->nservers ||
	    u->max_fails <= 0)
		return;
	struct upstream_server_health *sh = &h->srv[i];
	uint64_t window = (uint64_t)(u->fail_timeout * 1000.0);
	if (sh->fails == 0 || now_ms - sh->window_ms >= window) {
		sh->fails = 0;
		sh->window_ms = now_ms;
	}
	if (++sh->fails >= u->max_fails) {
		sh->down_until_ms = now_ms + window;
		sh->fails = 0;
	}
}

void upstream_succeeded(struct upstream_health *h, int i)
{
	if (h == NULL || i < 0 || i >= h->nservers)
		return;
	h->srv[i].fails = 0;
	h->srv[i].down_until_ms = 0;
}

/*
 * rcache.c - the process-wide route cache runtime: one L1 and one memcached
 * client for the current cache settings, shared by every worker thread.
 *
 * A configuration reload that changes the cache settings builds a new
 * runtime (with an empty L1); requests still holding the old one finish
 * with it, and it is freed with its last reference. When the last loop
 * closes (route_worker_close) the current one is dropped too, so nothing is
 * left at exit.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "log.h"
#include "rcache.h"

static pthread_mutex_t rcache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rcache *rcache_current;

/* The settings that shape a runtime, as one string. NULL: no memory. */
static char *rcache__sig(const struct conf *c)
{
	size_t cap = 256 + (size_t)c->cache.nservers * 300;
	char *s = malloc(cap);
	size_t n;

	if (s == NULL)
		return NULL;
	n = (size_t)snprintf(s, cap, "l1=%zu/%g;ttl=%d;hash=%d;dist=%d;timeout=%g;retry=%d;mc=",
			     c->cache.l1_entries, c->cache.l1_ttl, c->cache.ttl, c->cache.hash_keys,
			     (int)c->cache.distribution, c->cache.timeout, c->cache.retry_interval);
	for (int i = 0; i < c->cache.nservers && n < cap; i++)
		n += (size_t)snprintf(s + n, cap - n, "%s:%u,", c->cache.servers[i].host,
				      (unsigned)c->cache.servers[i].port);
	return s;
}

static struct rcache *rcache__new(const struct conf *c, char *sig)
{
	struct rcache *rc = calloc(1, sizeof(*rc));

	if (rc == NULL) {
		free(sig);
		return NULL;
	}
	atomic_init(&rc->refs, 1);
	pthread_mutex_init(&rc->wlock, NULL);
	rc->sig = sig;
	rc->ttl_s = (unsigned)c->cache.ttl;
	rc->l1_ttl_ms = (uint64_t)(c->cache.l1_ttl * 1000.0);
	rc->hash_keys = c->cache.hash_keys;
	if (c->cache.l1_entries > 0 && rc->l1_ttl_ms > 0) {
		rc->l1 = rcache_l1_new(c->cache.l1_entries);
		if (rc->l1 == NULL)
			log_write(LOG_ERROR, "route cache: no memory for %zu L1 entries: L1 is off",
				  c->cache.l1_entries);
	}
	rc->mc = rcache_mc_new(c);
	return rc;
}

struct rcache *rcache_ref(struct rcache *rc)
{
	if (rc != NULL)
		atomic_fetch_add_explicit(&rc->refs, 1, memory_order_relaxed);
	return rc;
}

void rcache_release(struct rcache *rc)
{
	if (rc == NULL || atomic_fetch_sub_explicit(&rc->refs, 1, memory_order_acq_rel) != 1)
		return;
	/* A drainer holds a reference: the queue is empty by now. */
	rcache_l1_free(rc->l1);
	rcache_mc_free(rc->mc);
	pthread_mutex_destroy(&rc->wlock);
	free(rc->sig);
	free(rc);
}

struct rcache *rcache_acquire(const struct conf *c)
{
	bool want_l1 = c->cache.l1_entries > 0 && c->cache.l1_ttl > 0;
	struct rcache *rc, *old = NULL;
	char *sig;

	if (!want_l1 && c->cache.nservers == 0)
		return NULL;
	if ((sig = rcache__sig(c)) == NULL)
		return NULL;
	pthread_mutex_lock(&rcache_lock);
	if (rcache_current != NULL && strcmp(rcache_current->sig, sig) == 0) {
		free(sig);
	} else {
		/* Building does no I/O (libmemcached connects on first use). */
		struct rcache *fresh = rcache__new(c, sig);
		if (fresh != NULL) {
			old = rcache_current;
			rcache_current = fresh;
		}
	}
	rc = rcache_ref(rcache_current);
	pthread_mutex_unlock(&rcache_lock);
	rcache_release(old);
	return rc;
}

void rcache_drop_current(void)
{
	pthread_mutex_lock(&rcache_lock);
	struct rcache *old = rcache_current;
	rcache_current = NULL;
	pthread_mutex_unlock(&rcache_lock);
	rcache_release(old);
}

/* ---- fire-and-forget writes on the thread pool ---- */

/*
 * Writes run one job at a time, in the order they were submitted from any
 * loop, so a delete asked for after an add (a route that just failed) can
 * never land before it. One drainer at a time takes jobs off the queue.
 */
struct rcache_job {
	struct rcache_job *next;
	int n;
	struct rcache_op ops[];
};

struct rcache_drain {
	uv_work_t work;
	struct rcache *rc;
};

static void rcache__drain(uv_work_t *w)
{
	struct rcache_drain *d = w->data;
	struct rcache *rc = d->rc;

	for (;;) {
		pthread_mutex_lock(&rc->wlock);
		struct rcache_job *job = rc->whead;
		if (job == NULL) {
			rc->draining = false;
			pthread_mutex_unlock(&rc->wlock);
			return;
		}
		rc->whead = job->next;
		if (rc->whead == NULL)
			rc->wtail = NULL;
		pthread_mutex_unlock(&rc->wlock);
		for (int i = 0; i < job->n; i++) {
			const struct rcache_op *op = &job->ops[i];
			if (op->kind == RCACHE_OP_ADD)
				rcache_mc_add(rc->mc, &op->key, op->value, op->value_len, rc->ttl_s);
			else
				rcache_mc_delete(rc->mc, &op->key);
		}
		free(job);
	}
}

static void rcache__drained(uv_work_t *w, int status)
{
	struct rcache_drain *d = w->data;

	rcache_release(d->rc);
	free(d);
}

int rcache_submit(uv_loop_t *loop, struct rcache *rc, const struct rcache_op *ops, int n)
{
	struct rcache_job *job;
	struct rcache_drain *d = NULL;
	bool start;

	if (n <= 0 || rc == NULL || rc->mc == NULL)
		return 0;
	job = malloc(sizeof(*job) + (size_t)n * sizeof(job->ops[0]));
	if (job == NULL)
		return -1;
	job->next = NULL;
	job->n = n;
	memcpy(job->ops, ops, (size_t)n * sizeof(job->ops[0]));

	pthread_mutex_lock(&rc->wlock);
	if (rc->wtail)
		rc->wtail->next = job;
	else
		rc->whead = job;
	rc->wtail = job;
	start = !rc->draining;
	if (start)
		rc->draining = true;
	pthread_mutex_unlock(&rc->wlock);
	if (!start)
		return 0;

	d = malloc(sizeof(*d));
	if (d != NULL) {
		d->rc = rcache_ref(rc);
		d->work.data = d;
		if (uv_queue_work(loop, &d->work, rcache__drain, rcache__drained) == 0)
			return 0;
		rcache_release(d->rc);
		free(d);
	}
	/* No drainer: drop what is queued (a cache write is never essential). */
	pthread_mutex_lock(&rc->wlock);
	while ((job = rc->whead) != NULL) {
		rc->whead = job->next;
		free(job);
	}
	rc->wtail = NULL;
	rc->draining = false;
	pthread_mutex_unlock(&rc->wlock);
	return -1;
}

size_t route_purge_l1(const char *name)
{
	size_t n = 0;

	pthread_mutex_lock(&rcache_lock);
	struct rcache *rc = rcache_ref(rcache_current);
	pthread_mutex_unlock(&rcache_lock);
	if (rc != NULL && rc->l1 != NULL)
		n = rcache_l1_purge(rc->l1, name);
	rcache_release(rc);
	return n;
}

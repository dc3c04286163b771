/*
 * throttle.c - login throttling counters (see throttle.h).
 *
 * A check copies what it needs out of the configuration, runs on libuv's
 * thread pool (memcached calls block, bounded by cache.timeout), and
 * answers on the loop. Without memcached the counters live in a fixed
 * table in this process: keyed by a 64-bit hash of the same key memcached
 * would get, probed a bounded number of slots, expired entries reused. A
 * full table allows (fail open) and says so once.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "conf.h"
#include "log.h"
#include "route_int.h"
#include "throttle.h"

/* ---- the in-process counters ---- */

#define THROTTLE__LOCAL_SLOTS 65536u  /* power of two */
#define THROTTLE__LOCAL_PROBES 64

struct throttle_slot {
	uint64_t hash;       /* 0: never used */
	uint64_t count;
	uint64_t expires_ms;
};

static pthread_mutex_t throttle__local_lock = PTHREAD_MUTEX_INITIALIZER;
static struct throttle_slot *throttle__local;
static bool throttle__local_full_said;

static uint64_t throttle__now_ms(void)
{
	return uv_hrtime() / 1000000u;
}

/* FNV-1a, never 0 (0 marks an unused slot). */
static uint64_t throttle__hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ull;
	}
	return h ? h : 1;
}

/*
 * The slot for key (created with count 0 and the window when absent or
 * expired), or NULL when the table is full around it. Lock held.
 */
static struct throttle_slot *throttle__local_slot_raw(const char *raw, size_t len,
						       unsigned window_s, bool create)
{
	uint64_t h = throttle__hash(raw, len), now = throttle__now_ms();
	struct throttle_slot *reuse = NULL;

	if (throttle__local == NULL) {
		if (!create)
			return NULL;
		throttle__local = calloc(THROTTLE__LOCAL_SLOTS, sizeof(*throttle__local));
		if (throttle__local == NULL)
			return NULL;
	}
	for (unsigned i = 0; i < THROTTLE__LOCAL_PROBES; i++) {
		struct throttle_slot *s = &throttle__local[(h + i) & (THROTTLE__LOCAL_SLOTS - 1)];
		bool expired = s->hash != 0 && s->expires_ms <= now;
		if (s->hash == h && !expired)
			return s;
		if (reuse == NULL && (s->hash == 0 || expired))
			reuse = s;
		if (s->hash == 0)
			break;  /* the key was never placed further on */
	}
	if (!create || reuse == NULL)
		return NULL;
	reuse->hash = h;
	reuse->count = 0;
	reuse->expires_ms = now + (uint64_t)window_s * 1000u;
	return reuse;
}

static struct throttle_slot *throttle__local_slot(const struct rcache_key *k, unsigned window_s,
						   bool create)
{
	return throttle__local_slot_raw(k->raw, k->raw_len, window_s, create);
}

/*
 * Addresses this process saw fail a login within throttle.failed_window.
 * Only their connections and logins ask for the failed-login count: an
 * address that never failed here costs no memcached round trip (and no
 * thread-pool hand-off) per connection, so the limit can be on by default.
 * Shared counts still decide: an address that failed on another gatehouse
 * is checked here from its first failure here on. Marks live in the same
 * bounded table as the in-process counters, under their own key prefix.
 */
#define THROTTLE__SEEN_PREFIX "seen-failed "

static void throttle__mark_failed(const char *ip, unsigned window_s)
{
	char raw[80];
	int n = snprintf(raw, sizeof(raw), THROTTLE__SEEN_PREFIX "%s", ip);

	if (n < 0 || (size_t)n >= sizeof(raw))
		return;
	pthread_mutex_lock(&throttle__local_lock);
	struct throttle_slot *s = throttle__local_slot_raw(raw, (size_t)n, window_s, true);
	if (s != NULL)
		s->count++;
	pthread_mutex_unlock(&throttle__local_lock);
}

static bool throttle__seen_failed(const char *ip)
{
	char raw[80];
	int n = snprintf(raw, sizeof(raw), THROTTLE__SEEN_PREFIX "%s", ip ? ip : "");

	if (n < 0 || (size_t)n >= sizeof(raw))
		return true; /* cannot tell: ask */
	pthread_mutex_lock(&throttle__local_lock);
	bool seen = throttle__local_slot_raw(raw, (size_t)n, 0, false) != NULL;
	pthread_mutex_unlock(&throttle__local_lock);
	return seen;
}

static bool throttle__local_incr(const struct rcache_key *k, unsigned window_s, uint64_t *value_out)
{
	pthread_mutex_lock(&throttle__local_lock);
	struct throttle_slot *s = throttle__local_slot(k, window_s, true);
	if (s != NULL)
		*value_out = ++s->count;
	else if (!throttle__local_full_said) {
		throttle__local_full_said = true;
		log_write(LOG_WARN, "throttle: the in-process counter table is full: some logins are "
			  "not counted (configure cache.memcached for large sites)");
	}
	pthread_mutex_unlock(&throttle__local_lock);
	return s != NULL;
}

static uint64_t throttle__local_get(const struct rcache_key *k)
{
	pthread_mutex_lock(&throttle__local_lock);
	struct throttle_slot *s = throttle__local_slot(k, 0, false);
	uint64_t v = s ? s->count : 0;
	pthread_mutex_unlock(&throttle__local_lock);
	return v;
}

void throttle_local_reset(void)
{
	pthread_mutex_lock(&throttle__local_lock);
	free(throttle__local);
	throttle__local = NULL;
	throttle__local_full_said = false;
	pthread_mutex_unlock(&throttle__local_lock);
}

/* ---- a request ---- */

struct throttle_req {
	uv_work_t work;
	struct rcache *rc;         /* a reference; NULL or no mc: local counters */
	bool hashed;
	enum throttle_step step;   /* unless count_failed */
	/* Not a step of the API: the fire-and-forget count of a failed login
	   (throttle_failed); step is unused then. */
	bool count_failed;
	char proto;
	int ip_limit, user_limit, failed_limit;  /* 0: not checked */
	unsigned ip_window, user_window, failed_window;
	char ip[64];
	char user[ROUTE_MAX_USER];
	throttle_cb cb;
	void *arg;
	bool cancelled;
	struct throttle_result res;
};

static bool throttle__incr(struct throttle_req *t, const struct rcache_key *k, unsigned window_s,
		      uint64_t *value_out)
{
	if (t->rc != NULL && t->rc->mc != NULL)
		return rcache_mc_incr(t->rc->mc, k, window_s, value_out) == RCACHE_MC_OK;
	return throttle__local_incr(k, window_s, value_out);
}

/* The counter's value; false when memcached could not say (fail open). */
static bool throttle__get(struct throttle_req *t, const struct rcache_key *k, uint64_t *value_out)
{
	*value_out = 0;
	if (t->rc == NULL || t->rc->mc == NULL) {
		*value_out = throttle__local_get(k);
		return true;
	}
	char v[32];
	size_t n = 0;
	enum rcache_mc_rc r = rcache_mc_get(t->rc->mc, k, v, sizeof(v), &n);
	if (r == RCACHE_MC_MISS)
		return true;
	if (r != RCACHE_MC_OK || n == 0 || n > 19)
		return false;
	uint64_t x = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return false;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	*value_out = x;
	return true;
}

static void throttle__deny(struct throttle_req *t, enum throttle_verdict v, uint64_t count,
			   int limit, bool failed)
{
	t->res.verdict = v;
	t->res.count = count;
	t->res.limit = limit;
	t->res.failed_logins = failed;
}

/* The failed-login count of t->ip against its limit. */
static void throttle__check_failed(struct throttle_req *t)
{
	struct rcache_key k;
	uint64_t n;

	if (t->failed_limit <= 0 || t->res.verdict != THROTTLE_ALLOW)
		return;
	if (!rcache_key_throttle_failed(&k, t->ip, t->hashed)) {
		/* An address that cannot be a key denies (Zimbra: an invalid key denies). */
		throttle__deny(t, THROTTLE_DENY_IP, 0, t->failed_limit, true);
		return;
	}
	if (throttle__get(t, &k, &n) && n >= (uint64_t)t->failed_limit)
		throttle__deny(t, THROTTLE_DENY_IP, n, t->failed_limit, true);
}

static void throttle__work(uv_work_t *w)
{
	struct throttle_req *t = w->data;
	struct rcache_key k;
	uint64_t n;

	if (t->count_failed) {
		if (rcache_key_throttle_failed(&k, t->ip, t->hashed))
			throttle__incr(t, &k, t->failed_window, &n);
		return;
	}
	switch (t->step) {
	case THROTTLE_CONNECT:
		if (t->ip_limit > 0) {
			if (!rcache_key_throttle_ip(&k, t->proto, t->ip, t->hashed))
				throttle__deny(t, THROTTLE_DENY_IP, 0, t->ip_limit, false);
			else if (throttle__incr(t, &k, t->ip_window, &n) && n > (uint64_t)t->ip_limit)
				throttle__deny(t, THROTTLE_DENY_IP, n, t->ip_limit, false);
		}
		throttle__check_failed(t);
		break;
	case THROTTLE_LOGIN:
		if (t->user_limit > 0) {
			if (!rcache_key_throttle_user(&k, t->user, t->hashed))
				throttle__deny(t, THROTTLE_DENY_USER, 0, t->user_limit, false);
			else if (throttle__get(t, &k, &n) && n >= (uint64_t)t->user_limit)
				throttle__deny(t, THROTTLE_DENY_USER, n, t->user_limit, false);
		}
		throttle__check_failed(t);
		break;
	case THROTTLE_SUCCESS:
		if (t->user_limit > 0) {
			if (!rcache_key_throttle_user(&k, t->user, t->hashed))
				throttle__deny(t, THROTTLE_DENY_USER, 0, t->user_limit, false);
			else if (throttle__incr(t, &k, t->user_window, &n) && n > (uint64_t)t->user_limit)
				throttle__deny(t, THROTTLE_DENY_USER, n, t->user_limit, false);
		}
		break;
	}
}

static void throttle__done(uv_work_t *w, int status)
{
	struct throttle_req *t = w->data;

	if (!t->cancelled && t->cb != NULL) {
		if (status < 0)
			t->res.verdict = THROTTLE_ALLOW;  /* never ran: fail open */
		t->cb(&t->res, t->arg);
	}
	rcache_release(t->rc);
	free(t);
}

static int throttle__ip_limit(const struct conf *c, char proto)
{
	if (proto == 'i' && c->throttle.ip_limit_imap > 0)
		return c->throttle.ip_limit_imap;
	if (proto == 'p' && c->throttle.ip_limit_pop3 > 0)
		return c->throttle.ip_limit_pop3;
	return c->throttle.ip_limit;
}

bool throttle_whitelisted(const struct conf *c, const char *ip)
{
	return conf_cidr_match(c->throttle.whitelist, c->throttle.nwhitelist, ip);
}

/* The limits q is held to under c (0: not checked). */
static void throttle__limits(const struct conf *c, const struct throttle_query *q, int *ip_limit,
			int *user_limit, int *failed_limit)
{
	bool white = throttle_whitelisted(c, q->ip);

	*ip_limit = *user_limit = *failed_limit = 0;
	switch (q->step) {
	case THROTTLE_CONNECT:
		*ip_limit = white ? 0 : throttle__ip_limit(c, q->proto);
		*failed_limit = white || !throttle__seen_failed(q->ip) ? 0 : c->throttle.failed_limit;
		break;
	case THROTTLE_LOGIN:
		*user_limit = q->user ? c->throttle.user_limit : 0;
		*failed_limit = white || !throttle__seen_failed(q->ip) ? 0 : c->throttle.failed_limit;
		break;
	case THROTTLE_SUCCESS:
		*user_limit = q->user ? c->throttle.user_limit : 0;
		break;
	}
}

bool throttle_needed(const struct conf *c, const struct throttle_query *q)
{
	int a, b, d;

	throttle__limits(c, q, &a, &b, &d);
	return a > 0 || b > 0 || d > 0;
}

static struct throttle_req *throttle__new(uv_loop_t *loop, struct conf *c, const char *ip,
				     const char *user)
{
	struct throttle_req *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->work.data = t;
	t->rc = route__cache_for(loop, c);
	t->hashed = c->cache.hash_keys;
	t->ip_window = (unsigned)c->throttle.ip_window;
	t->user_window = (unsigned)c->throttle.user_window;
	t->failed_window = (unsigned)c->throttle.failed_window;
	snprintf(t->ip, sizeof(t->ip), "%s", ip ? ip : "");
	if (user != NULL)
		snprintf(t->user, sizeof(t->user), "%s", user);
	return t;
}

static bool throttle__queue(uv_loop_t *loop, struct throttle_req *t)
{
	if (uv_queue_work(loop, &t->work, throttle__work, throttle__done) == 0)
		return true;
	rcache_release(t->rc);
	free(t);
	return false;
}

struct throttle_req *throttle_check(uv_loop_t *loop, struct conf *c, const struct throttle_query *q,
				    throttle_cb cb, void *arg)
{
	struct throttle_req *t = throttle__new(loop, c, q->ip, q->user);

	if (t == NULL)
		return NULL;
	t->step = q->step;
	t->proto = q->proto;
	throttle__limits(c, q, &t->ip_limit, &t->user_limit, &t->failed_limit);
	t->cb = cb;
	t->arg = arg;
	return throttle__queue(loop, t) ? t : NULL;
}

void *throttle_cancel(struct throttle_req *req)
{
	if (req == NULL || req->cancelled)
		return NULL;
	req->cancelled = true;
	return req->arg;
}

void throttle_failed(uv_loop_t *loop, struct conf *c, const char *ip)
{
	if (c->throttle.failed_limit <= 0 || throttle_whitelisted(c, ip))
		return;
	throttle__mark_failed(ip, (unsigned)c->throttle.failed_window);
	struct throttle_req *t = throttle__new(loop, c, ip, NULL);
	if (t == NULL)
		return;
	t->count_failed = true;
	throttle__queue(loop, t);
}

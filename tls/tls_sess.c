/*
 * tls_sess.c - the server session cache shared by every worker's TLS
 * contexts (see tls_int.h).
 *
 * Each worker has contexts of its own (no lock shared by all workers on
 * the handshake path), so OpenSSL's internal cache, which lives in a
 * context, would resume a session ID only on the worker that issued it.
 * This cache sits behind OpenSSL's external-cache callbacks instead: a
 * chained hash of session IDs (server-chosen random bytes, so a client
 * cannot build long chains) and a FIFO list for eviction.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tls_int.h"

struct tls_sess_ent {
	struct tls_sess_ent *hnext;        /* bucket chain */
	struct tls_sess_ent *older, *newer; /* FIFO */
	SSL_SESSION *sess;                 /* our reference */
	unsigned idlen;
	unsigned char id[SSL_MAX_SSL_SESSION_ID_LENGTH];
};

struct tls_sess_cache {
	pthread_mutex_t lock;
	size_t max, n, mask;
	struct tls_sess_ent **buckets;
	struct tls_sess_ent *oldest, *newest;
};

static int tls__ex_sess = -1;

struct tls_sess_cache *tls__sess_new(size_t max)
{
	struct tls_sess_cache *c = calloc(1, sizeof(*c));
	size_t nb = 16;

	if (tls__ex_sess < 0)
		tls__ex_sess = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (c == NULL)
		return NULL;
	while (nb < max / 2 && nb < ((size_t)1 << 20))
		nb <<= 1;
	c->buckets = calloc(nb, sizeof(*c->buckets));
	if (c->buckets == NULL) {
		free(c);
		return NULL;
	}
	c->mask = nb - 1;
	c->max = max;
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

void tls__sess_free(struct tls_sess_cache *c)
{
	if (c == NULL)
		return;
	for (struct tls_sess_ent *e = c->oldest, *next; e; e = next) {
		next = e->newer;
		SSL_SESSION_free(e->sess);
		free(e);
	}
	pthread_mutex_destroy(&c->lock);
	free(c->buckets);
	free(c);
}

size_t tls__sess_count(struct tls_sess_cache *c)
{
	pthread_mutex_lock(&c->lock);
	size_t n = c->n;
	pthread_mutex_unlock(&c->lock);
	return n;
}

static size_t tls__sess_hash(const unsigned char *id, unsigned len)
{
	size_t h = 0xcbf29ce484222325u;

	for (unsigned i = 0; i < len; i++)
		h = (h ^ id[i]) * 0x100000001b3u;
	return h;
}

/* The entry's link in its bucket (lock held): *link is the entry or NULL. */
static struct tls_sess_ent **tls__sess_find(struct tls_sess_cache *c, const unsigned char *id,
					    unsigned len)
{
	struct tls_sess_ent **link = &c->buckets[tls__sess_hash(id, len) & c->mask];

	while (*link && ((*link)->idlen != len || memcmp((*link)->id, id, len) != 0))
		link = &(*link)->hnext;
	return link;
}

/* Unlink e, found at link (lock held); the caller frees it. */
static void tls__sess_unlink(struct tls_sess_cache *c, struct tls_sess_ent **link)
{
	struct tls_sess_ent *e = *link;

	*link = e->hnext;
	if (e->older)
		e->older->newer = e->newer;
	else
		c->oldest = e->newer;
	if (e->newer)
		e->newer->older = e->older;
	else
		c->newest = e->older;
	c->n--;
}

static void tls__sess_drop(struct tls_sess_ent *e)
{
	if (e != NULL) {
		SSL_SESSION_free(e->sess);
		free(e);
	}
}

static struct tls_sess_cache *tls__sess_of(SSL_CTX *ctx)
{
	return tls__ex_sess < 0 ? NULL : SSL_CTX_get_ex_data(ctx, tls__ex_sess);
}

/* A new session: keep it (return 1: the reference OpenSSL passed is ours). */
static int tls__sess_new_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct tls_sess_cache *c = tls__sess_of(SSL_get_SSL_CTX(ssl));
	unsigned len = 0;
	const unsigned char *id = SSL_SESSION_get_id(sess, &len);

	/* TLS 1.3 with tickets: the ticket carries the session, its ID is a dummy. */
	if (SSL_SESSION_get_protocol_version(sess) == TLS1_3_VERSION &&
	    (SSL_get_options(ssl) & SSL_OP_NO_TICKET) == 0)
		return 0;
	if (c == NULL || c->max == 0 || len == 0 || len > SSL_MAX_SSL_SESSION_ID_LENGTH)
		return 0;
	struct tls_sess_ent *e = calloc(1, sizeof(*e)), *victim = NULL;
	if (e == NULL)
		return 0;
	e->sess = sess;
	e->idlen = len;
	memcpy(e->id, id, len);
	pthread_mutex_lock(&c->lock);
	struct tls_sess_ent **link = tls__sess_find(c, id, len);
	if (*link != NULL) {
		pthread_mutex_unlock(&c->lock);
		free(e);
		return 0; /* already there */
	}
	if (c->n >= c->max) {
		victim = c->oldest;
		tls__sess_unlink(c, tls__sess_find(c, victim->id, victim->idlen));
		link = tls__sess_find(c, id, len); /* the chain may have changed */
	}
	*link = e;
	e->older = c->newest;
	if (c->newest)
		c->newest->newer = e;
	else
		c->oldest = e;
	c->newest = e;
	c->n++;
	pthread_mutex_unlock(&c->lock);
	tls__sess_drop(victim);
	return 1;
}

static SSL_SESSION *tls__sess_get_cb(SSL *ssl, const unsigned char *id, int len, int *copy)
{
	struct tls_sess_cache *c = tls__sess_of(SSL_get_SSL_CTX(ssl));
	SSL_SESSION *s = NULL;

	*copy = 0; /* the reference is taken here, under the lock */
	if (c == NULL || len <= 0 || len > SSL_MAX_SSL_SESSION_ID_LENGTH)
		return NULL;
	pthread_mutex_lock(&c->lock);
	struct tls_sess_ent *e = *tls__sess_find(c, id, (unsigned)len);
	if (e != NULL && SSL_SESSION_up_ref(e->sess) == 1)
		s = e->sess;
	pthread_mutex_unlock(&c->lock);
	return s;
}

/* OpenSSL drops a session: timed out, or its connection ended badly. */
static void tls__sess_remove_cb(SSL_CTX *ctx, SSL_SESSION *sess)
{
	struct tls_sess_cache *c = tls__sess_of(ctx);
	unsigned len = 0;
	const unsigned char *id = SSL_SESSION_get_id(sess, &len);
	struct tls_sess_ent *e = NULL;

	if (c == NULL || len == 0)
		return;
	pthread_mutex_lock(&c->lock);
	struct tls_sess_ent **link = tls__sess_find(c, id, len);
	if (*link != NULL) {
		e = *link;
		tls__sess_unlink(c, link);
	}
	pthread_mutex_unlock(&c->lock);
	tls__sess_drop(e);
}

void tls__sess_attach(SSL_CTX *ctx, struct tls_sess_cache *c)
{
	SSL_CTX_set_ex_data(ctx, tls__ex_sess, c);
	if (c == NULL || c->max == 0) {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
		return;
	}
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL |
						SSL_SESS_CACHE_NO_AUTO_CLEAR);
	SSL_CTX_sess_set_new_cb(ctx, tls__sess_new_cb);
	SSL_CTX_sess_set_get_cb(ctx, tls__sess_get_cb);
	SSL_CTX_sess_set_remove_cb(ctx, tls__sess_remove_cb);
}

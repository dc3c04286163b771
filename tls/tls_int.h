/*
 * tls_int.h - what the TLS files share (private to tls/): the connection
 * (tls.c), the server contexts (tls_server.c) and the session cache every
 * worker's contexts share (tls_sess.c).
 */
#ifndef GATEHOUSE_TLS_INT_H
#define GATEHOUSE_TLS_INT_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "stream.h"
#include "tls.h"

struct tls_conn {
	SSL *ssl;
	BIO *bio;          /* both ways, over the chains below (tls.c) */
	struct pool *pool; /* where chain buffers come from (NULL: malloc) */
	struct pbuf *in;   /* ciphertext from the network, not yet read by SSL */
	struct pbuf **in_tail;
	struct pbuf *in_last;
	size_t in_bytes;
	struct pbuf *out;  /* records to the network, not yet taken */
	struct pbuf **out_tail;
	struct pbuf *out_last;
	size_t out_bytes;
	const char *alpn;  /* the only ALPN id accepted, or NULL */
	/* The first error's text (TLS_ERR_CAP bytes, malloc'd by tls__set_err
	   when one happens: an idle connection does not carry it), or NULL. */
	char *err;
};
#define TLS_ERR_CAP 160

/* Record the connection's first error as text (printf format); a later
   one does not replace it. Out of memory: tls_error says "TLS error". */
void tls__set_err(struct tls_conn *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* OpenSSL's last error as text into out (and the error queue cleared). */
void tls__openssl_error(char *out, size_t cap);

/* The connection ssl belongs to (tls__conn's BIO holds it), or NULL. */
struct tls_conn *tls__of(const SSL *ssl);

/* A connection on ctx over the pbuf BIO (NULL: no memory). */
struct tls_conn *tls__conn(SSL_CTX *ctx);

/*
 * The server session cache (session IDs: TLS 1.2 without tickets, TLS 1.3
 * without tickets), one per tls_server, shared by every worker's contexts
 * under one mutex; only handshakes that store or look up a session by ID
 * take it. At most max sessions, the oldest dropped first; OpenSSL checks
 * their timeout on lookup. A context attached to it must not outlive it
 * (connections hold their configuration, which holds the tls_server).
 */
struct tls_sess_cache;

struct tls_sess_cache *tls__sess_new(size_t max);
void tls__sess_free(struct tls_sess_cache *cache);
/* Make ctx use cache (external callbacks, no internal store). */
void tls__sess_attach(SSL_CTX *ctx, struct tls_sess_cache *cache);
/* Sessions held, for tests. */
size_t tls__sess_count(struct tls_sess_cache *cache);

#endif

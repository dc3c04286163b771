/*
 * tls_int.h - what the TLS files share (private to tls/): the connection
 * (tls.c), the server contexts (tls_server.c) and the session cache every
 * worker's contexts share (tls_sess.c).
 */
#ifndef GATEHOUSE_TLS_INT_H
#define GATEHOUSE_TLS_INT_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "tls.h"

struct tls_conn {
	SSL *ssl;
	BIO *rbio;         /* ciphertext from the network */
	BIO *wbio;         /* ciphertext to the network */
	const char *alpn;  /* the only ALPN id accepted, or NULL */
	char err[160];
};

/* OpenSSL's last error as text into out (and the error queue cleared). */
void tls__openssl_error(char *out, size_t cap);

/* A connection on ctx between two memory BIOs (NULL: no memory). */
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

/*
 * tls.h - TLS as bytes in, bytes out.
 *
 * A tls_conn wraps one OpenSSL SSL object over a BIO of pool buffers
 * (struct pbuf): the stream hands it the buffers ciphertext arrived in and
 * sends on the buffers the records were written into, with no copy between
 * (tls.c says how). An idle connection holds no buffer. No sockets here, so handshakes, SNI selection and ALPN checks
 * are unit-tested in memory, and STARTTLS is "start feeding a tls_conn".
 *
 * A tls_server is the set of server contexts built from one config snapshot:
 * the default certificate and one context per virtual host, chosen by SNI
 * (exact name, then wildcard "*.example.com", else the default), built once
 * per worker thread so that no context lock is shared by all workers on the
 * handshake path; ticket keys and the session-ID cache are shared by all.
 * It is immutable once built; connections hold a reference to the SSL_CTX
 * they use, so a reload that builds a new tls_server never disturbs
 * established sessions.
 */
#ifndef GATEHOUSE_TLS_H
#define GATEHOUSE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tls_server;
struct tls_client;
struct tls_conn;

/* A certificate and key, RSA and/or ECDSA (one may be served per client). */
struct tls_cert {
	char *cert;       /* PEM, leaf first then the chain */
	char *key;
	char *ecdsa_cert;
	char *ecdsa_key;
	int line;         /* where it was configured, for messages */
	char *where;      /* setting path: "tls", "vhosts.[0]" */
};

/* A virtual host: the certificate served for these SNI names. */
struct tls_vhost {
	char **names;     /* "mail.example.com" or "*.example.com", lower case */
	int nnames;
	struct tls_cert cert;
};

/* How the server contexts are built: the configuration's `tls` group. */
struct tls_settings {
	struct tls_cert cert;      /* the default certificate */
	int min_version;            /* TLS1_2_VERSION ... */
	int max_version;
	char *ciphers;              /* TLS 1.2 cipher list, NULL = OpenSSL's */
	char *ciphersuites;         /* TLS 1.3, NULL = OpenSSL's */
	char *groups;               /* NULL = OpenSSL's */
	bool session_tickets;
	char *ticket_keys[8];       /* files of 80 bytes; the first encrypts */
	int nticket_keys;
	int session_cache;          /* entries in the shared cache, 0 = off */
	double session_timeout;     /* seconds */
};

/* Return values of the tls_conn functions below zero. */
enum tls_status {
	TLS_WANT = 0,       /* needs more input (or nothing to do) */
	TLS_ERR = -1,       /* fatal: alert sent (take_out), close after flushing */
	TLS_CLOSED = -2,    /* the peer sent close_notify */
};

/*
 * Build the server contexts for s and the nvhosts virtual hosts, one set
 * for each of nworkers workers (the certificates and keys are read now;
 * nothing is kept of s or vhosts).
 * Returns NULL with "FILE:LINE: setting: why" in err, FILE being `file`
 * (the configuration's path), when a file is missing, unreadable, or a key
 * does not match its certificate. Settings with no certificate at all give
 * an empty server (tls_server_ready false).
 */
struct tls_server *tls_server_new(const struct tls_settings *s, const struct tls_vhost *vhosts,
				  int nvhosts, int nworkers, const char *file, char *err,
				  size_t errlen);
void tls_server_free(struct tls_server *srv);
bool tls_server_ready(const struct tls_server *srv);

/*
 * One certificate loaded by a tls_server, for /metrics: whose it is
 * ("default" or the virtual host's first name), its key type ("rsa",
 * "ecdsa" or "other") and its notAfter as a Unix time.
 */
struct tls_cert_expiry {
	const char *name;
	const char *kind;
	int64_t not_after;
};
/* The certificates of srv (NULL: none): sets *n and returns the array. */
const struct tls_cert_expiry *tls_server_certs(const struct tls_server *srv, int *n);

/*
 * A server connection on worker's contexts (0 .. nworkers - 1; any other
 * index is folded in). ALPN protocol ids: "imap", "pop3", "http/1.1", or
 * a list in the server's order of preference, "h2,http/1.1".
 */
struct tls_conn *tls_conn_server(struct tls_server *srv, int worker, const char *alpn);
/*
 * The client side, for backends (upstream.tls) and https lookup servers:
 * one context per config snapshot. verify: check the peer's certificate
 * against ca_file (or the system's CAs when NULL) and its name against
 * host; without it any certificate is accepted (as Zimbra does internally).
 */
struct tls_client *tls_client_new(const char *ca_file, char *err, size_t errlen);
void tls_client_free(struct tls_client *cl);
/* host: sent as SNI when it is a name, and checked when verify is set. */
struct tls_conn *tls_conn_client(struct tls_client *cl, const char *host, bool verify);
void tls_conn_free(struct tls_conn *t);

struct pbuf;
struct pool;
/* Chain buffers come from pool (the stream's; until set: malloc'ed). */
void tls_set_pool(struct tls_conn *t, struct pool *pool);
/* Ciphertext in from the network, copied. Returns 0, or TLS_ERR on no memory. */
int tls_feed(struct tls_conn *t, const uint8_t *p, size_t n);
/* Ciphertext in: b (data[off .. off+len)) joins the input chain, which owns
   it and returns it to its pool once SSL has read it. */
void tls_feed_buf(struct tls_conn *t, struct pbuf *b);
/* Advance the handshake: 1 done, TLS_WANT, or TLS_ERR. */
int tls_handshake(struct tls_conn *t);
/* Plaintext out: bytes read (> 0), TLS_WANT, TLS_CLOSED or TLS_ERR. */
int tls_read(struct tls_conn *t, uint8_t *out, size_t cap);
/* Plaintext in (after the handshake): 0 or TLS_ERR. */
int tls_write(struct tls_conn *t, const uint8_t *p, size_t n);
/* Queue a close_notify. */
void tls_shutdown(struct tls_conn *t);
/* Ciphertext waiting to go to the network. */
size_t tls_pending_out(struct tls_conn *t);
/* All of it: the chain of buffers (linked by next, the caller's now; NULL
   when none). Each is full but the last. */
struct pbuf *tls_take_bufs(struct tls_conn *t);
/* Or a copy of up to cap bytes of it (tests). */
size_t tls_take_out(struct tls_conn *t, uint8_t *out, size_t cap);
/* Plaintext decrypted, or ciphertext not yet read by SSL. */
bool tls_has_plaintext(struct tls_conn *t);

/* For logs: "TLSv1.3", the cipher, the SNI the client sent (or ""), the last error. */
const char *tls_version(const struct tls_conn *t);
const char *tls_cipher(const struct tls_conn *t);
const char *tls_sni(const struct tls_conn *t);
const char *tls_error(const struct tls_conn *t);
bool tls_resumed(const struct tls_conn *t);
/* Did ALPN select the protocol id (e.g. "h2")? */
bool tls_alpn_is(const struct tls_conn *t, const char *id);

#endif

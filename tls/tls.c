/*
 * tls.c - TLS connections driven through a BIO over pool buffers (server
 * and client side), and the client context. The server contexts are tls_server.c's.
 */
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls_int.h"

void tls__openssl_error(char *out, size_t cap)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0)
		snprintf(out, cap, "unknown error");
	else
		ERR_error_string_n(e, out, cap);
	ERR_clear_error();
}

/* ---- client side ---- */

struct tls_client {
	SSL_CTX *ctx;
};

struct tls_client *tls_client_new(const char *ca_file, char *err, size_t errlen)
{
	struct tls_client *cl = calloc(1, sizeof(*cl));
	char why[256];

	if (cl == NULL || (cl->ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		snprintf(err, errlen, "cannot create a TLS client context");
		free(cl);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(cl->ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(cl->ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(cl->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	int ok = ca_file ? SSL_CTX_load_verify_locations(cl->ctx, ca_file, NULL)
			 : SSL_CTX_set_default_verify_paths(cl->ctx);
	if (ok != 1) {
		tls__openssl_error(why, sizeof(why));
		snprintf(err, errlen, "cannot load CA file %s: %s", ca_file ? ca_file : "(system)", why);
		tls_client_free(cl);
		return NULL;
	}
	return cl;
}

void tls_client_free(struct tls_client *cl)
{
	if (cl == NULL)
		return;
	SSL_CTX_free(cl->ctx);
	free(cl);
}

/* ---- the BIO over pool buffers ---- */

/*
 * One BIO per connection, both the SSL's read and write BIO, over two
 * chains of pool buffers (struct pbuf) the connection holds:
 *
 * - in: ciphertext the stream read, in the buffers it was read into.
 *   OpenSSL copies each record straight out of them into its own record
 *   buffer, and a buffer goes back to its pool as soon as it is consumed.
 *   (A memory BIO took a copy first, memmoved and regrew.)
 * - out: records OpenSSL writes, appended straight into pool buffers that
 *   tls_take_bufs hands to the stream for uv_write whole. (A memory BIO
 *   grew a buffer, which BIO_read copied into pool buffers again.)
 *
 * Nothing here grows or is kept once empty: an idle connection holds no
 * buffer, so there is nothing to trim. Semantics are a memory BIO's with
 * eof_return -1: reading an empty chain sets the retry flag (SSL says
 * WANT_READ), writing never blocks, PENDING / WPENDING count the in / out
 * bytes, FLUSH succeeds.
 */

static BIO_METHOD *tls__bio_method;
static int tls__bio_type; /* its BIO_method_type */
static pthread_once_t tls__bio_once = PTHREAD_ONCE_INIT;

/* A buffer for the chains: the pool's, or one of TLS__BUF_SIZE bytes before
   the stream gave its pool (bytes fed by tls_feed, unit tests). */
#define TLS__BUF_SIZE 16384

static struct pbuf *tls__buf(struct tls_conn *t)
{
	static struct pool none; /* size 0: pbuf_get_size mallocs, pool NULL */

	if (t->pool != NULL)
		return pbuf_get(t->pool);
	return pbuf_get_size(&none, TLS__BUF_SIZE);
}

static void tls__chain_put(struct pbuf *b)
{
	while (b) {
		struct pbuf *next = b->next;
		pbuf_put(b);
		b = next;
	}
}

/* Copy up to cap bytes from the front of a chain (head, its tail link
   and its last buffer) into out; emptied buffers go back. Returns the
   bytes copied. */
static size_t tls__chain_copy(struct pbuf **head, struct pbuf ***tail, struct pbuf **last,
			      uint8_t *out, size_t cap)
{
	size_t n = 0;

	while (n < cap && *head != NULL) {
		struct pbuf *b = *head;
		size_t k = b->len < cap - n ? b->len : cap - n;
		memcpy(out + n, b->data + b->off, k);
		n += k;
		b->off += (uint32_t)k;
		b->len -= (uint32_t)k;
		if (b->len == 0) {
			*head = b->next;
			if (*head == NULL) {
				*tail = head;
				*last = NULL;
			}
			pbuf_put(b);
		}
	}
	return n;
}

static int tls__bio_read(BIO *bio, char *out, size_t cap, size_t *got)
{
	struct tls_conn *t = BIO_get_data(bio);

	BIO_clear_retry_flags(bio);
	size_t n = tls__chain_copy(&t->in, &t->in_tail, &t->in_last, (uint8_t *)out, cap);
	t->in_bytes -= n;
	*got = n;
	if (n == 0 && cap > 0) {
		/* Empty is "not yet", never EOF (BIO_set_mem_eof_return(-1)). */
		BIO_set_retry_read(bio);
		return 0;
	}
	return 1;
}

static int tls__bio_write(BIO *bio, const char *p, size_t n, size_t *put)
{
	struct tls_conn *t = BIO_get_data(bio);
	size_t done = 0;

	BIO_clear_retry_flags(bio);
	while (done < n) {
		struct pbuf *last = t->out_last;
		if (last == NULL || last->off + last->len == last->cap) {
			struct pbuf *b = tls__buf(t);
			if (b == NULL)
				break;
			*t->out_tail = b;
			t->out_tail = &b->next;
			t->out_last = last = b;
		}
		size_t room = (size_t)last->cap - last->off - last->len;
		size_t k = n - done < room ? n - done : room;
		memcpy(last->data + last->off + last->len, p + done, k);
		last->len += (uint32_t)k;
		done += k;
	}
	t->out_bytes += done;
	*put = done;
	/* Out of memory: a short write, which SSL_write reports as a failure
	   (no retry flag: it never says WANT_WRITE here). */
	return done > 0 || n == 0;
}

static long tls__bio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
	struct tls_conn *t = BIO_get_data(bio);

	switch (cmd) {
	case BIO_CTRL_PENDING:
		return (long)t->in_bytes;
	case BIO_CTRL_WPENDING:
		return (long)t->out_bytes;
	case BIO_CTRL_EOF:
		return t->in_bytes == 0;
	case BIO_CTRL_FLUSH:
	case BIO_CTRL_DUP:
		return 1;
	case BIO_CTRL_GET_CLOSE:
		return BIO_get_shutdown(bio);
	case BIO_CTRL_SET_CLOSE:
		BIO_set_shutdown(bio, (int)num);
		return 1;
	default:
		return 0;
	}
}

static int tls__bio_create(BIO *bio)
{
	BIO_set_init(bio, 1);
	return 1;
}

static int tls__bio_destroy(BIO *bio)
{
	/* The chains are the connection's: tls_conn_free returns them. */
	BIO_set_data(bio, NULL);
	BIO_set_init(bio, 0);
	return 1;
}

static void tls__bio_init(void)
{
	int type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK;
	BIO_METHOD *m = BIO_meth_new(type, "gatehouse pbuf");

	if (m == NULL || BIO_meth_set_read_ex(m, tls__bio_read) != 1 ||
	    BIO_meth_set_write_ex(m, tls__bio_write) != 1 || BIO_meth_set_ctrl(m, tls__bio_ctrl) != 1 ||
	    BIO_meth_set_create(m, tls__bio_create) != 1 ||
	    BIO_meth_set_destroy(m, tls__bio_destroy) != 1) {
		BIO_meth_free(m);
		return;
	}
	tls__bio_type = type;
	tls__bio_method = m;
}

/* ---- connections ---- */

struct tls_conn *tls__of(const SSL *ssl)
{
	BIO *b = SSL_get_rbio(ssl);

	return b != NULL && BIO_method_type(b) == tls__bio_type ? BIO_get_data(b) : NULL;
}

struct tls_conn *tls__conn(SSL_CTX *ctx)
{
	struct tls_conn *t = calloc(1, sizeof(*t));

	if (pthread_once(&tls__bio_once, tls__bio_init) != 0 || tls__bio_method == NULL || t == NULL) {
		free(t);
		return NULL;
	}
	t->in_tail = &t->in;
	t->out_tail = &t->out;
	t->ssl = SSL_new(ctx);
	t->bio = BIO_new(tls__bio_method);
	if (t->ssl == NULL || t->bio == NULL) {
		SSL_free(t->ssl);
		BIO_free(t->bio);
		free(t);
		return NULL;
	}
	BIO_set_data(t->bio, t);
	/* One BIO both ways: SSL_set_bio takes the one reference. Callbacks
	   find t through it (tls__of): SSL_set_app_data would allocate an
	   ex_data stack (two blocks) that every idle connection keeps. */
	SSL_set_bio(t->ssl, t->bio, t->bio);
	return t;
}

struct tls_conn *tls_conn_client(struct tls_client *cl, const char *host, bool verify)
{
	struct tls_conn *t = cl ? tls__conn(cl->ctx) : NULL;
	unsigned char addr[16];

	if (t == NULL)
		return NULL;
	bool is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
	if (!is_ip)
		SSL_set_tlsext_host_name(t->ssl, host);
	if (verify) {
		SSL_set_verify(t->ssl, SSL_VERIFY_PEER, NULL);
		if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host) != 1
			  : SSL_set1_host(t->ssl, host) != 1) {
			tls_conn_free(t);
			return NULL;
		}
	}
	SSL_set_connect_state(t->ssl);
	return t;
}

void tls_conn_free(struct tls_conn *t)
{
	if (t == NULL)
		return;
	SSL_free(t->ssl); /* frees the BIO */
	tls__chain_put(t->in);
	tls__chain_put(t->out);
	free(t->err);
	free(t);
}

void tls__set_err(struct tls_conn *t, const char *fmt, ...)
{
	if (t->err != NULL)
		return;
	t->err = malloc(TLS_ERR_CAP);
	if (t->err == NULL)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->err, TLS_ERR_CAP, fmt, ap);
	va_end(ap);
}

void tls_set_pool(struct tls_conn *t, struct pool *pool)
{
	t->pool = pool;
}

int tls_feed(struct tls_conn *t, const uint8_t *p, size_t n)
{
	while (n > 0) {
		struct pbuf *last = t->in_last;
		if (last == NULL || last->off + last->len == last->cap) {
			struct pbuf *b = tls__buf(t);
			if (b == NULL) {
				tls__set_err(t, "out of memory");
				return TLS_ERR;
			}
			*t->in_tail = b;
			t->in_tail = &b->next;
			t->in_last = last = b;
		}
		size_t room = (size_t)last->cap - last->off - last->len;
		size_t k = n < room ? n : room;
		memcpy(last->data + last->off + last->len, p, k);
		last->len += (uint32_t)k;
		t->in_bytes += k;
		p += k;
		n -= k;
	}
	return 0;
}

void tls_feed_buf(struct tls_conn *t, struct pbuf *b)
{
	struct pbuf *last = t->in_last;

	if (b->len == 0) {
		pbuf_put(b);
		return;
	}
	/* Small reads while input waits (a trickle, or reading stopped in
	   the middle of one) join the last buffer's room: the chain holds its
	   bytes in full buffers, not a pool buffer per read. */
	if (last != NULL && b->len <= (size_t)last->cap - last->off - last->len) {
		memcpy(last->data + last->off + last->len, b->data + b->off, b->len);
		last->len += b->len;
		t->in_bytes += b->len;
		pbuf_put(b);
		return;
	}
	b->next = NULL;
	*t->in_tail = b;
	t->in_tail = &b->next;
	t->in_last = b;
	t->in_bytes += b->len;
}

/* Classify an SSL_* failure; remember why for the log. */
static int tls__result(struct tls_conn *t, int rc)
{
	int e = SSL_get_error(t->ssl, rc);

	switch (e) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return TLS_WANT;
	case SSL_ERROR_ZERO_RETURN:
		return TLS_CLOSED;
	default:
		if (t->err == NULL) {
			char msg[TLS_ERR_CAP];
			tls__openssl_error(msg, sizeof(msg));
			tls__set_err(t, "%s", msg);
		}
		ERR_clear_error();
		return TLS_ERR;
	}
}

int tls_handshake(struct tls_conn *t)
{
	int rc = SSL_do_handshake(t->ssl);

	if (rc == 1)
		return 1;
	int r = tls__result(t, rc);
	return r == TLS_CLOSED ? TLS_ERR : r;
}

int tls_read(struct tls_conn *t, uint8_t *out, size_t cap)
{
	size_t n = 0;
	int rc = SSL_read_ex(t->ssl, out, cap, &n);

	if (rc == 1)
		return (int)n;
	return tls__result(t, rc);
}

int tls_write(struct tls_conn *t, const uint8_t *p, size_t n)
{
	size_t done = 0;

	while (done < n) {
		size_t w = 0;
		if (SSL_write_ex(t->ssl, p + done, n - done, &w) != 1) {
			tls__result(t, 0); /* memory BIOs never block: any failure is fatal */
			return TLS_ERR;
		}
		done += w;
	}
	return 0;
}

void tls_shutdown(struct tls_conn *t)
{
	if (SSL_is_init_finished(t->ssl))
		SSL_shutdown(t->ssl);
	ERR_clear_error();
}

size_t tls_pending_out(struct tls_conn *t)
{
	return t->out_bytes;
}

struct pbuf *tls_take_bufs(struct tls_conn *t)
{
	struct pbuf *b = t->out;

	t->out = t->out_last = NULL;
	t->out_tail = &t->out;
	t->out_bytes = 0;
	return b;
}

size_t tls_take_out(struct tls_conn *t, uint8_t *out, size_t cap)
{
	size_t n = tls__chain_copy(&t->out, &t->out_tail, &t->out_last, out, cap);

	t->out_bytes -= n;
	return n;
}

bool tls_has_plaintext(struct tls_conn *t)
{
	return SSL_pending(t->ssl) > 0 || t->in_bytes > 0;
}

const char *tls_version(const struct tls_conn *t)
{
	return SSL_get_version(t->ssl);
}

const char *tls_cipher(const struct tls_conn *t)
{
	return SSL_get_cipher_name(t->ssl);
}

const char *tls_sni(const struct tls_conn *t)
{
	const char *s = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
	return s ? s : "";
}

const char *tls_error(const struct tls_conn *t)
{
	return t->err != NULL && t->err[0] ? t->err : "TLS error";
}

bool tls_alpn_is(const struct tls_conn *t, const char *id)
{
	const unsigned char *p = NULL;
	unsigned int n = 0;

	SSL_get0_alpn_selected(t->ssl, &p, &n);
	return p != NULL && n == strlen(id) && memcmp(p, id, n) == 0;
}

bool tls_resumed(const struct tls_conn *t)
{
	return SSL_session_reused(t->ssl) == 1;
}

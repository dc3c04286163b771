/*
 * tls.c - TLS connections driven through memory BIOs (server and client
 * side), and the client context. The server contexts are tls_server.c's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- connections ---- */

struct tls_conn *tls__conn(SSL_CTX *ctx)
{
	struct tls_conn *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->ssl = SSL_new(ctx);
	t->rbio = BIO_new(BIO_s_mem());
	t->wbio = BIO_new(BIO_s_mem());
	if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
		SSL_free(t->ssl);
		BIO_free(t->rbio);
		BIO_free(t->wbio);
		free(t);
		return NULL;
	}
	/* An empty read BIO means "retry", not EOF. */
	BIO_set_mem_eof_return(t->rbio, -1);
	BIO_set_mem_eof_return(t->wbio, -1);
	SSL_set_bio(t->ssl, t->rbio, t->wbio);
	SSL_set_app_data(t->ssl, t);
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
	SSL_free(t->ssl); /* frees both BIOs */
	free(t);
}

int tls_feed(struct tls_conn *t, const uint8_t *p, size_t n)
{
	size_t done = 0;

	while (done < n) {
		int w = BIO_write(t->rbio, p + done, (int)(n - done > 1 << 30 ? 1 << 30 : n - done));
		if (w <= 0) {
			snprintf(t->err, sizeof(t->err), "out of memory");
			return TLS_ERR;
		}
		done += (size_t)w;
	}
	return 0;
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
		if (t->err[0] == '\0')
			tls__openssl_error(t->err, sizeof(t->err));
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
	return BIO_ctrl_pending(t->wbio);
}

size_t tls_take_out(struct tls_conn *t, uint8_t *out, size_t cap)
{
	int n = BIO_read(t->wbio, out, (int)(cap > 1 << 30 ? 1 << 30 : cap));
	return n > 0 ? (size_t)n : 0;
}

void tls_trim(struct tls_conn *t)
{
	/* A memory BIO keeps the buffer it grew to (a handshake flight, a big
	   write) even when empty; an idle connection should not. */
	if (BIO_ctrl_pending(t->rbio) == 0) {
		BIO *b = BIO_new(BIO_s_mem());
		if (b != NULL) {
			BIO_set_mem_eof_return(b, -1);
			SSL_set0_rbio(t->ssl, b);
			t->rbio = b;
		}
	}
	if (BIO_ctrl_pending(t->wbio) == 0) {
		BIO *b = BIO_new(BIO_s_mem());
		if (b != NULL) {
			BIO_set_mem_eof_return(b, -1);
			SSL_set0_wbio(t->ssl, b);
			t->wbio = b;
		}
	}
}

bool tls_has_plaintext(struct tls_conn *t)
{
	return SSL_pending(t->ssl) > 0 || BIO_ctrl_pending(t->rbio) > 0;
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
	return t->err[0] ? t->err : "TLS error";
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

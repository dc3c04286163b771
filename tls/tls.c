/*
 * tls.c - server TLS contexts (default certificate + virtual hosts chosen
 * by SNI), and connections driven through memory BIOs.
 *
 * Every context gets SSL_MODE_RELEASE_BUFFERS: most IMAP connections sit in
 * IDLE for hours, and an idle connection should hold no record buffers.
 * Session resumption: a shared server session cache (the default context is
 * every connection's session context, whatever certificate SNI picked) and
 * session tickets, optionally with key files shared by several gatehouses
 * behind HAProxy so a ticket from one is accepted by the others.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <arpa/inet.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"
#include "secret.h"

#define TLS_TICKET_KEY_FILE_SIZE 80 /* name(16) | AES-256 key(32) | HMAC-SHA256 key(32) */

struct tls_ticket_key {
	unsigned char name[16];
	unsigned char aes[32];
	unsigned char hmac[32];
};

struct tls_name {
	char *name;        /* lower case; for a wildcard the part after "*." */
	bool wildcard;
	SSL_CTX *ctx;
};

struct tls_server {
	SSL_CTX *dflt;
	SSL_CTX **ctxs;    /* every context, for freeing (dflt is ctxs[0]) */
	int nctxs;
	struct tls_name *names;
	int nnames;
	struct tls_ticket_key keys[8];
	int nkeys;
	struct tls_cert_expiry *certs; /* two per context at most (RSA, ECDSA) */
	int ncerts;
};

struct tls_conn {
	SSL *ssl;
	BIO *rbio;         /* ciphertext from the network */
	BIO *wbio;         /* ciphertext to the network */
	const char *alpn;  /* the only ALPN id accepted, or NULL */
	char err[160];
};

static int tls__ex_server = -1;

/* ---- errors ---- */

static void tls__openssl_error(char *out, size_t cap)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0)
		snprintf(out, cap, "unknown error");
	else
		ERR_error_string_n(e, out, cap);
	ERR_clear_error();
}

/* ---- callbacks ---- */

/* SNI: exact name, then the closest wildcard ("*.example.com" for
   "mail.example.com"), else keep the default certificate. */
static int tls__servername(SSL *ssl, int *alert, void *arg)
{
	struct tls_server *srv = arg;
	const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	char name[256];

	if (sni == NULL || srv->nnames == 0)
		return SSL_TLSEXT_ERR_OK;
	size_t n = strlen(sni);
	if (n == 0 || n >= sizeof(name))
		return SSL_TLSEXT_ERR_OK;
	for (size_t i = 0; i <= n; i++)
		name[i] = (char)(sni[i] >= 'A' && sni[i] <= 'Z' ? sni[i] - 'A' + 'a' : sni[i]);
	if (n > 0 && name[n - 1] == '.')
		name[--n] = '\0';
	SSL_CTX *pick = NULL;
	for (int i = 0; i < srv->nnames && !pick; i++)
		if (!srv->names[i].wildcard && strcmp(srv->names[i].name, name) == 0)
			pick = srv->names[i].ctx;
	const char *dot = strchr(name, '.');
	for (int i = 0; i < srv->nnames && !pick && dot; i++)
		if (srv->names[i].wildcard && strcmp(srv->names[i].name, dot + 1) == 0)
			pick = srv->names[i].ctx;
	if (pick && pick != SSL_get_SSL_CTX(ssl))
		SSL_set_SSL_CTX(ssl, pick);
	return SSL_TLSEXT_ERR_OK;
}

/* ALPN: accept only this listener's protocol (ALPACA); no ALPN is fine. */
static int tls__alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		     const unsigned char *in, unsigned int inlen, void *arg)
{
	struct tls_conn *t = SSL_get_app_data(ssl);

	if (t == NULL || t->alpn == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	size_t want = strlen(t->alpn);
	for (unsigned int i = 0; i < inlen;) {
		unsigned int len = in[i];
		if (i + 1 + len > inlen)
			break;
		if (len == want && memcmp(in + i + 1, t->alpn, want) == 0) {
			*out = in + i + 1;
			*outlen = (unsigned char)len;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + len;
	}
	snprintf(t->err, sizeof(t->err), "client offered no ALPN protocol \"%s\"", t->alpn);
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* Session tickets with configured keys: the first encrypts, all decrypt. */
static int tls__ticket(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
		       EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	struct tls_server *srv = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tls__ex_server);
	const struct tls_ticket_key *k = NULL;
	int rc = 1;

	if (srv == NULL || srv->nkeys == 0)
		return -1;
	if (enc) {
		k = &srv->keys[0];
		memcpy(key_name, k->name, 16);
		if (RAND_bytes(iv, 16) != 1)
			return -1;
		if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1)
			return -1;
	} else {
		for (int i = 0; i < srv->nkeys && !k; i++)
			if (memcmp(key_name, srv->keys[i].name, 16) == 0) {
				k = &srv->keys[i];
				rc = i == 0 ? 1 : 2; /* 2: accept, but issue a ticket under the new key */
			}
		if (k == NULL)
			return 0; /* unknown key: full handshake */
		if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1)
			return -1;
	}
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, 32),
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	if (EVP_MAC_CTX_set_params(hctx, params) != 1)
		return -1;
	return rc;
}

/* ---- contexts ---- */

/* Keys are read without a passphrase: OpenSSL's default would prompt on
   the terminal and block the reload (or -t) until someone answers. */
static int tls__no_passphrase(char *buf, int size, int rwflag, void *arg)
{
	return 0;
}

static int tls__load_pair(SSL_CTX *ctx, const char *cert, const char *key, const char *file,
			  const struct tls_cert *cc, const char *what, char *err, size_t errlen)
{
	char why[256];

	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		tls__openssl_error(why, sizeof(why));
		snprintf(err, errlen, "%s:%d: %s.%s: cannot load certificate %s: %s", file, cc->line,
			  cc->where, what, cert, why);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		tls__openssl_error(why, sizeof(why));
		snprintf(err, errlen, "%s:%d: %s.%s: cannot load key %s: %s", file, cc->line,
			  cc->where, what[0] == 'e' ? "ecdsa_key" : "key", key, why);
		return -1;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		tls__openssl_error(why, sizeof(why));
		snprintf(err, errlen, "%s:%d: %s: key %s does not match certificate %s", file,
			  cc->line, cc->where, key, cert);
		return -1;
	}
	return 0;
}

/* Record the certificate just loaded into ctx (the current one) for tls_server_certs. */
static int tls__note_cert(struct tls_server *srv, SSL_CTX *ctx, const char *owner)
{
	X509 *x = SSL_CTX_get0_certificate(ctx);
	EVP_PKEY *pk = x ? X509_get0_pubkey(x) : NULL;
	const ASN1_TIME *na = x ? X509_get0_notAfter(x) : NULL;
	struct tm tm;

	if (na == NULL || ASN1_TIME_to_tm(na, &tm) != 1)
		return 0; /* no usable date: not exported */
	struct tls_cert_expiry *e = &srv->certs[srv->ncerts];
	if ((e->name = strdup(owner)) == NULL)
		return -1;
	e->kind = pk && EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA  ? "rsa"
		  : pk && EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC ? "ecdsa"
								  : "other";
	e->not_after = (int64_t)timegm(&tm);
	srv->ncerts++;
	return 0;
}

static SSL_CTX *tls__ctx(struct tls_server *srv, const struct tls_settings *s, const char *file,
			 const struct tls_cert *cc, const char *owner, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char why[256];

	if (ctx == NULL) {
		tls__openssl_error(why, sizeof(why));
		snprintf(err, errlen, "%s: cannot create a TLS context: %s", file, why);
		return NULL;
	}
	srv->ctxs[srv->nctxs++] = ctx;
	SSL_CTX_set_ex_data(ctx, tls__ex_server, srv);
	SSL_CTX_set_min_proto_version(ctx, s->min_version);
	SSL_CTX_set_max_proto_version(ctx, s->max_version);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
				 SSL_OP_NO_RENEGOTIATION | SSL_OP_SINGLE_ECDH_USE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_default_passwd_cb(ctx, tls__no_passphrase);
	if (!s->session_tickets)
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	if (s->ciphers && SSL_CTX_set_cipher_list(ctx, s->ciphers) != 1) {
		snprintf(err, errlen, "%s: tls.ciphers: no usable cipher in \"%s\"", file, s->ciphers);
		return NULL;
	}
	if (s->ciphersuites && SSL_CTX_set_ciphersuites(ctx, s->ciphersuites) != 1) {
		snprintf(err, errlen, "%s: tls.ciphersuites: no usable suite in \"%s\"", file,
			 s->ciphersuites);
		return NULL;
	}
	if (s->groups && SSL_CTX_set1_groups_list(ctx, s->groups) != 1) {
		snprintf(err, errlen, "%s: tls.groups: unknown group in \"%s\"", file, s->groups);
		return NULL;
	}
	static const unsigned char sid[] = "gatehouse";
	SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
	SSL_CTX_set_session_cache_mode(ctx, s->session_cache > 0 ? SSL_SESS_CACHE_SERVER
								 : SSL_SESS_CACHE_OFF);
	SSL_CTX_sess_set_cache_size(ctx, s->session_cache);
	SSL_CTX_set_timeout(ctx, (long)s->session_timeout);
	SSL_CTX_set_alpn_select_cb(ctx, tls__alpn, NULL);
	if (srv->nkeys > 0)
		SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tls__ticket);
	if (cc->cert && tls__load_pair(ctx, cc->cert, cc->key, file, cc, "cert", err, errlen) < 0)
		return NULL;
	if (cc->cert && tls__note_cert(srv, ctx, owner) < 0)
		goto oom;
	if (cc->ecdsa_cert &&
	    tls__load_pair(ctx, cc->ecdsa_cert, cc->ecdsa_key, file, cc, "ecdsa_cert", err, errlen) < 0)
		return NULL;
	if (cc->ecdsa_cert && tls__note_cert(srv, ctx, owner) < 0)
		goto oom;
	return ctx;
oom:
	snprintf(err, errlen, "%s: out of memory building TLS contexts", file);
	return NULL;
}

static int tls__load_ticket_keys(struct tls_server *srv, const struct tls_settings *s, const char *file,
				 char *err, size_t errlen)
{
	for (int i = 0; i < s->nticket_keys; i++) {
		unsigned char buf[TLS_TICKET_KEY_FILE_SIZE + 1];
		FILE *f = fopen(s->ticket_keys[i], "rb");
		size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;

		if (f)
			fclose(f);
		if (n != TLS_TICKET_KEY_FILE_SIZE) {
			snprintf(err, errlen, "%s: tls.ticket_keys: %s must hold exactly %d bytes (%s)", file,
				 s->ticket_keys[i], TLS_TICKET_KEY_FILE_SIZE,
				 f ? "wrong size" : "cannot read");
			secret_wipe(buf, sizeof(buf));
			return -1;
		}
		memcpy(srv->keys[i].name, buf, 16);
		memcpy(srv->keys[i].aes, buf + 16, 32);
		memcpy(srv->keys[i].hmac, buf + 48, 32);
		secret_wipe(buf, sizeof(buf));
		srv->nkeys = i + 1;
	}
	return 0;
}

struct tls_server *tls_server_new(const struct tls_settings *s, const struct tls_vhost *vhosts,
				  int nvhosts, const char *file, char *err, size_t errlen)
{
	struct tls_server *srv = calloc(1, sizeof(*srv));
	int nnames = 0;

	if (tls__ex_server < 0)
		tls__ex_server = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (srv == NULL)
		goto oom;
	srv->ctxs = calloc((size_t)nvhosts + 1, sizeof(*srv->ctxs));
	for (int i = 0; i < nvhosts; i++)
		nnames += vhosts[i].nnames;
	srv->names = calloc((size_t)nnames + 1, sizeof(*srv->names));
	srv->certs = calloc(2 * ((size_t)nvhosts + 1), sizeof(*srv->certs));
	if (srv->ctxs == NULL || srv->names == NULL || srv->certs == NULL)
		goto oom;
	if (tls__load_ticket_keys(srv, s, file, err, errlen) < 0)
		goto fail;
	if (!s->cert.cert && !s->cert.ecdsa_cert)
		return srv; /* no certificate: nothing to serve */
	if ((srv->dflt = tls__ctx(srv, s, file, &s->cert, "default", err, errlen)) == NULL)
		goto fail;
	SSL_CTX_set_tlsext_servername_callback(srv->dflt, tls__servername);
	SSL_CTX_set_tlsext_servername_arg(srv->dflt, srv);
	for (int i = 0; i < nvhosts; i++) {
		SSL_CTX *ctx = tls__ctx(srv, s, file, &vhosts[i].cert,
					vhosts[i].nnames > 0 ? vhosts[i].names[0] : "vhost", err, errlen);
		if (ctx == NULL)
			goto fail;
		for (int j = 0; j < vhosts[i].nnames; j++) {
			const char *n = vhosts[i].names[j];
			struct tls_name *tn = &srv->names[srv->nnames];
			tn->wildcard = strncmp(n, "*.", 2) == 0;
			tn->name = strdup(tn->wildcard ? n + 2 : n);
			if (tn->name == NULL)
				goto oom;
			tn->ctx = ctx;
			srv->nnames++;
		}
	}
	return srv;

oom:
	snprintf(err, errlen, "%s: out of memory building TLS contexts", file);
fail:
	tls_server_free(srv);
	return NULL;
}

void tls_server_free(struct tls_server *srv)
{
	if (srv == NULL)
		return;
	for (int i = 0; i < srv->nctxs; i++)
		SSL_CTX_free(srv->ctxs[i]); /* connections still using one hold their own reference */
	for (int i = 0; i < srv->nnames; i++)
		free(srv->names[i].name);
	free(srv->names);
	free(srv->ctxs);
	for (int i = 0; i < srv->ncerts; i++)
		free((char *)srv->certs[i].name);
	free(srv->certs);
	secret_wipe(srv->keys, sizeof(srv->keys));
	free(srv);
}

bool tls_server_ready(const struct tls_server *srv)
{
	return srv != NULL && srv->dflt != NULL;
}

const struct tls_cert_expiry *tls_server_certs(const struct tls_server *srv, int *n)
{
	*n = srv ? srv->ncerts : 0;
	return srv ? srv->certs : NULL;
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

static struct tls_conn *tls__conn(SSL_CTX *ctx)
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

struct tls_conn *tls_conn_server(struct tls_server *srv, const char *alpn)
{
	struct tls_conn *t;

	if (!tls_server_ready(srv) || (t = tls__conn(srv->dflt)) == NULL)
		return NULL;
	t->alpn = alpn;
	SSL_set_accept_state(t->ssl);
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

bool tls_resumed(const struct tls_conn *t)
{
	return SSL_session_reused(t->ssl) == 1;
}

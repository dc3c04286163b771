/*
 * tls_server.c - server TLS contexts: the default certificate and virtual
 * hosts chosen by SNI, one set of contexts per worker thread.
 *
 * Every context gets SSL_MODE_RELEASE_BUFFERS: most IMAP connections sit in
 * IDLE for hours, and an idle connection should hold no record buffers.
 *
 * Per worker: OpenSSL 3.0 takes a context's locks (its session-cache lock
 * for every new session, reference counts, statistics) on each handshake;
 * with one context shared by every worker thread those cache lines and
 * locks bounce between cores. Each worker gets its own contexts, built from
 * the same files and settings. What must still be shared is shared without
 * a per-handshake lock: the ticket keys (configured, or random ones made
 * here once per configuration when none are configured, so a ticket
 * resumes on any worker and, with key files, on any gatehouse behind the
 * same balancer) and the session-ID cache (tls_sess.c, locked only by the
 * handshakes that use it). The certificates are parsed once per worker:
 * the cost is the memory of one more set of contexts per worker.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "secret.h"
#include "tls_int.h"

#define TLS_TICKET_KEY_FILE_SIZE 80 /* name(16) | AES-256 key(32) | HMAC-SHA256 key(32) */

struct tls_ticket_key {
	unsigned char name[16];
	unsigned char aes[32];
	unsigned char hmac[32];
};

struct tls_name {
	char *name;        /* lower case; for a wildcard the part after "*." */
	bool wildcard;
	int ctx;           /* index in a worker's ctxs */
};

/* One worker's contexts: ctxs[0] is the default, ctxs[1 + i] vhost i. */
struct tls_ctxset {
	struct tls_server *srv;
	SSL_CTX **ctxs;
	int nctxs;
};

struct tls_server {
	struct tls_ctxset *sets; /* one per worker */
	int nsets;
	struct tls_name *names;
	int nnames;
	struct tls_ticket_key keys[8];
	int nkeys;
	struct tls_sess_cache *cache;
	struct tls_cert_expiry *certs; /* two per context of the first set at most (RSA, ECDSA) */
	int ncerts;
};

static int tls__ex_server = -1;

/* ---- callbacks ---- */

/* SNI: exact name, then the closest wildcard ("*.example.com" for
   "mail.example.com"), else keep the default certificate; always among the
   contexts of the worker the connection was made on (arg). */
static int tls__servername(SSL *ssl, int *alert, void *arg)
{
	struct tls_ctxset *set = arg;
	struct tls_server *srv = set->srv;
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
	int pick = -1;
	for (int i = 0; i < srv->nnames && pick < 0; i++)
		if (!srv->names[i].wildcard && strcmp(srv->names[i].name, name) == 0)
			pick = srv->names[i].ctx;
	const char *dot = strchr(name, '.');
	for (int i = 0; i < srv->nnames && pick < 0 && dot; i++)
		if (srv->names[i].wildcard && strcmp(srv->names[i].name, dot + 1) == 0)
			pick = srv->names[i].ctx;
	if (pick >= 0 && pick < set->nctxs && set->ctxs[pick] != SSL_get_SSL_CTX(ssl))
		SSL_set_SSL_CTX(ssl, set->ctxs[pick]);
	return SSL_TLSEXT_ERR_OK;
}

/* Did the client offer the protocol id want[0..wlen)? Where, in *out. */
static bool tls__alpn_offered(const unsigned char *in, unsigned int inlen, const char *want,
			      size_t wlen, const unsigned char **out)
{
	for (unsigned int i = 0; i < inlen;) {
		unsigned int len = in[i];
		if (i + 1 + len > inlen)
			break;
		if (len == wlen && memcmp(in + i + 1, want, wlen) == 0) {
			*out = in + i + 1;
			return true;
		}
		i += 1 + len;
	}
	return false;
}

/* ALPN: accept only this listener's protocols (ALPACA), in the server's
   order of preference (t->alpn: ids separated by commas, e.g.
   "h2,http/1.1"); no ALPN is fine. */
static int tls__alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		     const unsigned char *in, unsigned int inlen, void *arg)
{
	struct tls_conn *t = tls__of(ssl);

	(void)arg;
	if (t == NULL || t->alpn == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	for (const char *p = t->alpn; *p != '\0';) {
		size_t wlen = strcspn(p, ",");
		if (wlen > 0 && wlen < 256 && tls__alpn_offered(in, inlen, p, wlen, out)) {
			*outlen = (unsigned char)wlen;
			return SSL_TLSEXT_ERR_OK;
		}
		p += wlen;
		if (*p == ',')
			p++;
	}
	tls__set_err(t, "client offered no ALPN protocol \"%s\"", t->alpn);
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
		/* TLS 1.3 clients use a ticket once: without a fresh one after
		   each resumption (OpenSSL sends none for 1), every other
		   connection of theirs would be a full handshake. */
		if (SSL_version(ssl) == TLS1_3_VERSION)
			rc = 2;
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

static SSL_CTX *tls__ctx(struct tls_server *srv, struct tls_ctxset *set,
			 const struct tls_settings *s, const char *file, const struct tls_cert *cc,
			 const char *owner, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char why[256];

	if (ctx == NULL) {
		tls__openssl_error(why, sizeof(why));
		snprintf(err, errlen, "%s: cannot create a TLS context: %s", file, why);
		return NULL;
	}
	set->ctxs[set->nctxs++] = ctx;
	SSL_CTX_set_ex_data(ctx, tls__ex_server, srv);
	SSL_CTX_set_min_proto_version(ctx, s->min_version);
	SSL_CTX_set_max_proto_version(ctx, s->max_version);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
				 SSL_OP_NO_RENEGOTIATION | SSL_OP_SINGLE_ECDH_USE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_default_passwd_cb(ctx, tls__no_passphrase);
	if (!s->session_tickets)
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	/* TLS 1.3: one ticket per handshake, not OpenSSL's two (each is a
	   session copy, its encoding and encryption); a resumed connection
	   gets a new one, so a client never runs short. */
	SSL_CTX_set_num_tickets(ctx, 1);
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
	tls__sess_attach(ctx, srv->cache);
	SSL_CTX_set_timeout(ctx, (long)s->session_timeout);
	SSL_CTX_set_alpn_select_cb(ctx, tls__alpn, NULL);
	if (srv->nkeys > 0)
		SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tls__ticket);
	if (cc->cert && tls__load_pair(ctx, cc->cert, cc->key, file, cc, "cert", err, errlen) < 0)
		return NULL;
	bool note = set == &srv->sets[0]; /* the first worker's speak for all */
	if (cc->cert && note && tls__note_cert(srv, ctx, owner) < 0)
		goto oom;
	if (cc->ecdsa_cert &&
	    tls__load_pair(ctx, cc->ecdsa_cert, cc->ecdsa_key, file, cc, "ecdsa_cert", err, errlen) < 0)
		return NULL;
	if (cc->ecdsa_cert && note && tls__note_cert(srv, ctx, owner) < 0)
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

/* No key files: random keys, made once for every worker's contexts, so a
   ticket from one worker resumes on another (OpenSSL's own keys would be
   one set per context). Tickets issued before a reload stop resuming, as
   with OpenSSL's keys. */
static int tls__random_ticket_key(struct tls_server *srv)
{
	struct tls_ticket_key *k = &srv->keys[0];

	if (RAND_bytes(k->name, sizeof(k->name)) != 1 || RAND_bytes(k->aes, sizeof(k->aes)) != 1 ||
	    RAND_bytes(k->hmac, sizeof(k->hmac)) != 1)
		return -1;
	srv->nkeys = 1;
	return 0;
}

/* One worker's contexts. */
static int tls__build_set(struct tls_server *srv, struct tls_ctxset *set,
			  const struct tls_settings *s, const struct tls_vhost *vhosts, int nvhosts,
			  const char *file, char *err, size_t errlen)
{
	set->srv = srv;
	set->ctxs = calloc((size_t)nvhosts + 1, sizeof(*set->ctxs));
	if (set->ctxs == NULL) {
		snprintf(err, errlen, "%s: out of memory building TLS contexts", file);
		return -1;
	}
	SSL_CTX *dflt = tls__ctx(srv, set, s, file, &s->cert, "default", err, errlen);
	if (dflt == NULL)
		return -1;
	SSL_CTX_set_tlsext_servername_callback(dflt, tls__servername);
	SSL_CTX_set_tlsext_servername_arg(dflt, set);
	for (int i = 0; i < nvhosts; i++)
		if (tls__ctx(srv, set, s, file, &vhosts[i].cert,
			     vhosts[i].nnames > 0 ? vhosts[i].names[0] : "vhost", err, errlen) == NULL)
			return -1;
	return 0;
}

static int tls__names(struct tls_server *srv, const struct tls_vhost *vhosts, int nvhosts)
{
	for (int i = 0; i < nvhosts; i++) {
		for (int j = 0; j < vhosts[i].nnames; j++) {
			const char *n = vhosts[i].names[j];
			struct tls_name *tn = &srv->names[srv->nnames];
			tn->wildcard = strncmp(n, "*.", 2) == 0;
			tn->name = strdup(tn->wildcard ? n + 2 : n);
			if (tn->name == NULL)
				return -1;
			tn->ctx = 1 + i;
			srv->nnames++;
		}
	}
	return 0;
}

struct tls_server *tls_server_new(const struct tls_settings *s, const struct tls_vhost *vhosts,
				  int nvhosts, int nworkers, const char *file, char *err,
				  size_t errlen)
{
	struct tls_server *srv = calloc(1, sizeof(*srv));
	int nnames = 0;

	if (tls__ex_server < 0)
		tls__ex_server = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (srv == NULL)
		goto oom;
	if (nworkers < 1)
		nworkers = 1;
	srv->sets = calloc((size_t)nworkers, sizeof(*srv->sets));
	for (int i = 0; i < nvhosts; i++)
		nnames += vhosts[i].nnames;
	srv->names = calloc((size_t)nnames + 1, sizeof(*srv->names));
	srv->certs = calloc(2 * ((size_t)nvhosts + 1), sizeof(*srv->certs));
	if (srv->sets == NULL || srv->names == NULL || srv->certs == NULL)
		goto oom;
	if (tls__load_ticket_keys(srv, s, file, err, errlen) < 0)
		goto fail;
	if (!s->cert.cert && !s->cert.ecdsa_cert)
		return srv; /* no certificate: nothing to serve */
	if (s->session_tickets && srv->nkeys == 0 && tls__random_ticket_key(srv) < 0)
		goto oom;
	if (s->session_cache > 0 && (srv->cache = tls__sess_new((size_t)s->session_cache)) == NULL)
		goto oom;
	for (int w = 0; w < nworkers; w++) {
		srv->nsets = w + 1;
		if (tls__build_set(srv, &srv->sets[w], s, vhosts, nvhosts, file, err, errlen) < 0)
			goto fail;
	}
	if (tls__names(srv, vhosts, nvhosts) < 0)
		goto oom;
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
	for (int w = 0; w < srv->nsets; w++) {
		/* connections still using a context hold their own reference */
		for (int i = 0; i < srv->sets[w].nctxs; i++)
			SSL_CTX_free(srv->sets[w].ctxs[i]);
		free(srv->sets[w].ctxs);
	}
	free(srv->sets);
	tls__sess_free(srv->cache);
	for (int i = 0; i < srv->nnames; i++)
		free(srv->names[i].name);
	free(srv->names);
	for (int i = 0; i < srv->ncerts; i++)
		free((char *)srv->certs[i].name);
	free(srv->certs);
	secret_wipe(srv->keys, sizeof(srv->keys));
	free(srv);
}

bool tls_server_ready(const struct tls_server *srv)
{
	return srv != NULL && srv->nsets > 0 && srv->sets[0].nctxs > 0;
}

const struct tls_cert_expiry *tls_server_certs(const struct tls_server *srv, int *n)
{
	*n = srv ? srv->ncerts : 0;
	return srv ? srv->certs : NULL;
}

struct tls_conn *tls_conn_server(struct tls_server *srv, int worker, const char *alpn)
{
	struct tls_conn *t;

	if (!tls_server_ready(srv))
		return NULL;
	/* A worker index from an older configuration with more workers still
	   gets contexts (any set serves; its own avoids the shared locks). */
	int w = worker >= 0 ? worker % srv->nsets : 0;
	if ((t = tls__conn(srv->sets[w].ctxs[0])) == NULL)
		return NULL;
	t->alpn = alpn;
	SSL_set_accept_state(t->ssl);
	return t;
}

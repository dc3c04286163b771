/*
 * test_tls.c - TLS as bytes in/out, no sockets: full handshakes between an
 * OpenSSL client on memory BIOs and gatehouse's tls_conn, with certificates
 * made by the test. SNI selection, RSA/ECDSA choice, ALPN, versions,
 * resumption with shared ticket keys and across workers' contexts, data
 * both ways, and config errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "conf.h"
#include "gh.h"
#include "stream.h"
#include "tls.h"

static char dir[64];

static void make_cert(const char *name, const char *cn, bool ec)
{
	char path[128];
	EVP_PKEY *key = ec ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
			   : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	X509 *x = X509_new();

	cr_assert_not_null(key);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	X509_NAME *n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, n);
	cr_assert(X509_sign(x, key, EVP_sha256()) > 0);
	snprintf(path, sizeof(path), "%s/%s.crt", dir, name);
	FILE *f = fopen(path, "w");
	PEM_write_X509(f, x);
	fclose(f);
	snprintf(path, sizeof(path), "%s/%s.key", dir, name);
	f = fopen(path, "w");
	PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(key);
}

static void setup(void)
{
	strcpy(dir, "/tmp/gh-tls-test-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	make_cert("default", "default.test", false);
	make_cert("mail", "mail.example.com rsa", false);
	make_cert("mail-ec", "mail.example.com ecdsa", true);
	make_cert("wild", "wildcard.example.org", false);
	unsigned char k[80];
	char path[128];
	RAND_bytes(k, sizeof(k));
	snprintf(path, sizeof(path), "%s/ticket.key", dir);
	FILE *f = fopen(path, "w");
	fwrite(k, 1, sizeof(k), f);
	fclose(f);
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(tls, .init = setup, .fini = teardown);

/* A config with the certificates above plus `extra`. */
static struct conf *load(const char *extra, char *err, size_t errlen)
{
	char path[128], text[4096];

	snprintf(text, sizeof(text),
		 "tls = { cert = \"%1$s/default.crt\"; key = \"%1$s/default.key\"; %2$s };\n"
		 "vhosts = (\n"
		 "  { names = [\"mail.example.com\"]; cert = \"%1$s/mail.crt\"; key = \"%1$s/mail.key\";\n"
		 "    ecdsa_cert = \"%1$s/mail-ec.crt\"; ecdsa_key = \"%1$s/mail-ec.key\"; },\n"
		 "  { names = [\"*.example.org\"]; cert = \"%1$s/wild.crt\"; key = \"%1$s/wild.key\"; }\n"
		 ");\n"
		 "workers = 3;\n",
		 dir, extra ? extra : "");
	snprintf(path, sizeof(path), "%s/t.conf", dir);
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	return conf_load(path, err, errlen);
}

static struct conf *load_ok(const char *extra)
{
	char err[512];
	struct conf *c = load(extra, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert(tls_server_ready(c->tls_server));
	return c;
}

struct client {
	SSL_CTX *ctx;
	SSL *ssl;
	BIO *rbio, *wbio;
};

static void client_init(struct client *cl, const char *sni, const char *alpn, const char *sigalgs,
			int max_version, SSL_SESSION *resume)
{
	cl->ctx = SSL_CTX_new(TLS_client_method());
	if (max_version)
		SSL_CTX_set_max_proto_version(cl->ctx, max_version);
	if (sigalgs)
		cr_assert(SSL_CTX_set1_sigalgs_list(cl->ctx, sigalgs) == 1);
	cl->ssl = SSL_new(cl->ctx);
	cl->rbio = BIO_new(BIO_s_mem());
	cl->wbio = BIO_new(BIO_s_mem());
	BIO_set_mem_eof_return(cl->rbio, -1);
	SSL_set_bio(cl->ssl, cl->rbio, cl->wbio);
	if (sni)
		SSL_set_tlsext_host_name(cl->ssl, sni);
	if (alpn) {
		unsigned char list[64];
		list[0] = (unsigned char)strlen(alpn);
		memcpy(list + 1, alpn, list[0]);
		SSL_set_alpn_protos(cl->ssl, list, list[0] + 1u);
	}
	if (resume)
		SSL_set_session(cl->ssl, resume);
	SSL_set_connect_state(cl->ssl);
}

static void client_free(struct client *cl)
{
	SSL_free(cl->ssl);
	SSL_CTX_free(cl->ctx);
}

/* Move bytes both ways until neither side has anything to say. */
static void shuttle(struct client *cl, struct tls_conn *t)
{
	uint8_t buf[16384];

	for (int round = 0; round < 64; round++) {
		bool moved = false;
		int n;
		while ((n = BIO_read(cl->wbio, buf, sizeof(buf))) > 0) {
			cr_assert_eq(tls_feed(t, buf, (size_t)n), 0);
			moved = true;
		}
		size_t m;
		while ((m = tls_take_out(t, buf, sizeof(buf))) > 0) {
			BIO_write(cl->rbio, buf, (int)m);
			moved = true;
		}
		if (!moved)
			return;
	}
}

/* Handshake; returns 1 when both sides finished, 0 when it failed. */
static int handshake(struct client *cl, struct tls_conn *t)
{
	for (int i = 0; i < 32; i++) {
		int c = SSL_do_handshake(cl->ssl);
		/* Now: moving bytes resets the BIO flags SSL_get_error reads. */
		int ce = c == 1 ? SSL_ERROR_NONE : SSL_get_error(cl->ssl, c);
		int s = tls_handshake(t);
		shuttle(cl, t);
		if (s == TLS_ERR) {
			cr_log_info("server: %s", tls_error(t));
			return 0;
		}
		if (ce != SSL_ERROR_NONE && ce != SSL_ERROR_WANT_READ) {
			cr_log_info("client: %s", ERR_error_string(ERR_get_error(), NULL));
			return 0;
		}
		if (c == 1 && s == 1)
			return 1;
	}
	return 0;
}

static char *peer_cn(struct client *cl, char *out, size_t cap)
{
	X509 *x = SSL_get1_peer_certificate(cl->ssl);
	cr_assert_not_null(x);
	X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)cap);
	X509_free(x);
	return out;
}

static void expect_cert(struct conf *c, const char *sni, const char *sigalgs, const char *want_cn)
{
	struct client cl;
	char cn[128];
	struct tls_conn *t = tls_conn_server(c->tls_server, 0, "imap");

	client_init(&cl, sni, NULL, sigalgs, 0, NULL);
	cr_assert_eq(handshake(&cl, t), 1, "handshake with SNI %s", sni ? sni : "(none)");
	cr_expect_str_eq(peer_cn(&cl, cn, sizeof(cn)), want_cn, "SNI %s", sni ? sni : "(none)");
	cr_expect_str_eq(tls_sni(t), sni ? sni : "");
	tls_conn_free(t);
	client_free(&cl);
}

Test(tls, sni_picks_exact_then_wildcard_then_default)
{
	struct conf *c = load_ok(NULL);

	expect_cert(c, "mail.example.com", "RSA-PSS+SHA256:RSA+SHA256", "mail.example.com rsa");
	expect_cert(c, "MAIL.Example.COM", "RSA-PSS+SHA256:RSA+SHA256", "mail.example.com rsa");
	expect_cert(c, "imap.example.org", NULL, "wildcard.example.org");
	expect_cert(c, "a.b.example.org", NULL, "default.test"); /* a wildcard covers one label */
	expect_cert(c, "example.org", NULL, "default.test");
	expect_cert(c, "unknown.net", NULL, "default.test");
	expect_cert(c, NULL, NULL, "default.test");
	conf_unref(c);
}

Test(tls, ecdsa_for_clients_that_take_it)
{
	struct conf *c = load_ok(NULL);

	expect_cert(c, "mail.example.com", "ECDSA+SHA256", "mail.example.com ecdsa");
	expect_cert(c, "mail.example.com", NULL, "mail.example.com ecdsa");
	expect_cert(c, "mail.example.com", "RSA-PSS+SHA256:RSA+SHA256", "mail.example.com rsa");
	conf_unref(c);
}

Test(tls, alpn_mismatch_is_refused)
{
	struct conf *c = load_ok(NULL);
	struct client cl;
	struct tls_conn *t = tls_conn_server(c->tls_server, 0, "imap");

	client_init(&cl, NULL, "pop3", NULL, 0, NULL);
	cr_expect_eq(handshake(&cl, t), 0);
	cr_expect_not_null(strstr(tls_error(t), "ALPN"), "%s", tls_error(t));
	tls_conn_free(t);
	client_free(&cl);

	t = tls_conn_server(c->tls_server, 0, "imap");
	client_init(&cl, NULL, "imap", NULL, 0, NULL);
	cr_assert_eq(handshake(&cl, t), 1);
	const unsigned char *sel;
	unsigned int len;
	SSL_get0_alpn_selected(cl.ssl, &sel, &len);
	cr_expect_eq(len, 4);
	cr_expect(memcmp(sel, "imap", 4) == 0);
	tls_conn_free(t);
	client_free(&cl);
	conf_unref(c);
}

Test(tls, old_versions_are_refused)
{
	struct conf *c = load_ok(NULL);
	struct client cl;
	struct tls_conn *t = tls_conn_server(c->tls_server, 0, "imap");

	client_init(&cl, NULL, NULL, NULL, TLS1_1_VERSION, NULL);
	SSL_CTX_set_security_level(cl.ctx, 0);
	SSL_set_security_level(cl.ssl, 0);
	cr_expect_eq(handshake(&cl, t), 0);
	tls_conn_free(t);
	client_free(&cl);
	conf_unref(c);
}

Test(tls, data_both_ways_and_close_notify)
{
	struct conf *c = load_ok(NULL);
	struct client cl;
	struct tls_conn *t = tls_conn_server(c->tls_server, 0, "imap");
	size_t big = 300000;
	uint8_t *data = malloc(big), *got = malloc(big);

	for (size_t i = 0; i < big; i++)
		data[i] = (uint8_t)(i * 7 + 3);
	client_init(&cl, NULL, NULL, NULL, 0, NULL);
	cr_assert_eq(handshake(&cl, t), 1);

	/* Server to client, in one write. */
	cr_assert_eq(tls_write(t, data, big), 0);
	size_t n = 0;
	for (int i = 0; i < 100 && n < big; i++) {
		shuttle(&cl, t);
		size_t r = 0;
		while (SSL_read_ex(cl.ssl, got + n, big - n, &r) == 1)
			n += r;
	}
	cr_assert_eq(n, big);
	cr_assert(memcmp(got, data, big) == 0);

	/* Client to server, read through small buffers. */
	size_t w;
	cr_assert_eq(SSL_write_ex(cl.ssl, data, big, &w), 1);
	shuttle(&cl, t);
	n = 0;
	int r;
	while ((r = tls_read(t, got + n, 1000)) > 0)
		n += (size_t)r;
	cr_assert_eq(r, TLS_WANT);
	cr_assert_eq(n, big);
	cr_assert(memcmp(got, data, big) == 0);
	cr_expect(!tls_has_plaintext(t));

	SSL_shutdown(cl.ssl);
	shuttle(&cl, t);
	cr_expect_eq(tls_read(t, got, 10), TLS_CLOSED);
	free(data);
	free(got);
	tls_conn_free(t);
	client_free(&cl);
	conf_unref(c);
}

/* Two proxies behind HAProxy with the same ticket key file resume each
   other's sessions. */
Test(tls, shared_ticket_keys_resume_across_servers)
{
	char extra[256];
	snprintf(extra, sizeof(extra), "ticket_keys = [ \"%s/ticket.key\" ]; session_cache = 0;", dir);
	struct conf *a = load_ok(extra);
	struct conf *b = load_ok(extra);
	struct conf *other = load_ok("session_cache = 0;");
	struct client cl;
	struct tls_conn *t = tls_conn_server(a->tls_server, 0, "imap");

	client_init(&cl, NULL, NULL, NULL, TLS1_2_VERSION, NULL);
	cr_assert_eq(handshake(&cl, t), 1);
	SSL_SESSION *sess = SSL_get1_session(cl.ssl);
	cr_assert(SSL_SESSION_has_ticket(sess));
	/* A connection freed without close_notify makes its session unusable. */
	SSL_shutdown(cl.ssl);
	tls_conn_free(t);
	client_free(&cl);

	t = tls_conn_server(b->tls_server, 0, "imap");
	client_init(&cl, NULL, NULL, NULL, TLS1_2_VERSION, sess);
	cr_assert_eq(handshake(&cl, t), 1);
	cr_expect(tls_resumed(t), "a ticket from server a must resume on server b");
	tls_conn_free(t);
	client_free(&cl);

	t = tls_conn_server(other->tls_server, 0, "imap");
	client_init(&cl, NULL, NULL, NULL, TLS1_2_VERSION, sess);
	cr_assert_eq(handshake(&cl, t), 1);
	cr_expect(!tls_resumed(t), "a server without the key must not resume");
	tls_conn_free(t);
	client_free(&cl);

	SSL_SESSION_free(sess);
	conf_unref(a);
	conf_unref(b);
	conf_unref(other);
}

/* One handshake on worker w's contexts (SNI mail.example.com); returns
   the session the client keeps (TLS 1.3: with the tickets sent after the
   handshake) and whether the server resumed. Both sides close cleanly. */
static SSL_SESSION *session_on(struct conf *c, int w, int version, SSL_SESSION *resume,
			       bool *resumed_out)
{
	struct client cl;
	struct tls_conn *t = tls_conn_server(c->tls_server, w, "imap");
	uint8_t b[64];
	char cn[128];

	cr_assert_not_null(t);
	client_init(&cl, "mail.example.com", NULL, NULL, version, resume);
	SSL_set_min_proto_version(cl.ssl, version);
	cr_assert_eq(handshake(&cl, t), 1);
	cr_expect_not_null(strstr(peer_cn(&cl, cn, sizeof(cn)), "mail.example.com"), "worker %d: %s", w, cn);
	cr_expect_eq(SSL_read(cl.ssl, b, sizeof(b)), -1); /* takes the tickets */
	ERR_clear_error();
	*resumed_out = tls_resumed(t);
	SSL_SESSION *s = SSL_get1_session(cl.ssl);
	SSL_shutdown(cl.ssl);
	tls_shutdown(t);
	shuttle(&cl, t);
	tls_conn_free(t);
	client_free(&cl);
	return s;
}

/* Each worker has its own contexts, yet a session from one resumes on any
   other: tickets under the keys all of them share (random ones here, none
   configured), and with tickets off the shared session-ID cache. */
Test(tls, sessions_resume_on_every_worker)
{
	static const char *const extras[] = { "session_cache = 0;", "session_tickets = false;" };
	static const int versions[] = { TLS1_2_VERSION, TLS1_3_VERSION };

	for (size_t e = 0; e < ARRAY_SIZE(extras); e++) {
		struct conf *c = load_ok(extras[e]);
		cr_assert_eq(c->workers, 3);
		for (size_t v = 0; v < 2 * ARRAY_SIZE(versions); v++) {
			bool resumed;
			SSL_SESSION *s = session_on(c, (int)(v / 2), versions[v % 2], NULL, &resumed);
			cr_expect(!resumed);
			if (versions[v % 2] == TLS1_2_VERSION) /* TLS 1.3 without tickets: stateful ones */
				cr_expect_eq(SSL_SESSION_has_ticket(s), e == 0, "%s", extras[e]);
			for (int w = 1; w <= 4; w++) { /* 3 and 4: folded onto 0 and 1 */
				SSL_SESSION *again = session_on(c, w, versions[v % 2], s, &resumed);
				cr_expect(resumed, "%s version %x: worker %d's session on worker %d",
					  extras[e], (unsigned)versions[v % 2], (int)(v / 2), w);
				SSL_SESSION_free(s);
				s = again; /* the session of a resumed connection resumes too */
			}
			SSL_SESSION_free(s);
		}
		conf_unref(c);
	}
}

/* The session-ID cache holds at most session_cache sessions, oldest out. */
Test(tls, session_cache_is_bounded)
{
	struct conf *c = load_ok("session_tickets = false; session_cache = 2;");
	SSL_SESSION *s[3];
	bool resumed;

	for (int i = 0; i < 3; i++)
		s[i] = session_on(c, i, TLS1_2_VERSION, NULL, &resumed);
	SSL_SESSION_free(session_on(c, 1, TLS1_2_VERSION, s[0], &resumed));
	cr_expect(!resumed, "the oldest session was dropped");
	SSL_SESSION_free(session_on(c, 0, TLS1_2_VERSION, s[2], &resumed));
	cr_expect(resumed, "the newest session is kept");
	for (int i = 0; i < 3; i++)
		SSL_SESSION_free(s[i]);
	conf_unref(c);
}

Test(tls, bad_files_are_config_errors)
{
	char err[512], extra[256];

	/* A key that does not belong to the certificate. */
	snprintf(extra, sizeof(extra), "ecdsa_cert = \"%1$s/mail-ec.crt\"; ecdsa_key = \"%1$s/wild.key\";", dir);
	cr_assert_null(load(extra, err, sizeof(err)));
	cr_expect_not_null(strstr(err, ":1: tls"), "%s", err);

	snprintf(extra, sizeof(extra), "ecdsa_cert = \"%1$s/missing.crt\"; ecdsa_key = \"%1$s/wild.key\";", dir);
	cr_assert_null(load(extra, err, sizeof(err)));
	cr_expect_not_null(strstr(err, "tls.ecdsa_cert: cannot load certificate"), "%s", err);

	snprintf(extra, sizeof(extra), "ticket_keys = [ \"%s/default.key\" ];", dir);
	cr_assert_null(load(extra, err, sizeof(err)));
	cr_expect_not_null(strstr(err, "tls.ticket_keys"), "%s", err);
}

Test(tls, certificate_expiry_per_vhost_and_key_type)
{
	time_t now = time(NULL);
	struct conf *c = load_ok(NULL);
	int n = 0;
	const struct tls_cert_expiry *e = tls_server_certs(c->tls_server, &n);
	static const char *const want[][2] = {
		{ "default", "rsa" }, { "mail.example.com", "rsa" },
		{ "mail.example.com", "ecdsa" }, { "*.example.org", "rsa" },
	};

	cr_assert_eq(n, 4);
	for (int i = 0; i < n; i++) {
		cr_expect_str_eq(e[i].name, want[i][0]);
		cr_expect_str_eq(e[i].kind, want[i][1]);
		/* make_cert: notAfter one hour from when setup ran */
		cr_expect(e[i].not_after > (int64_t)now + 3500 && e[i].not_after <= (int64_t)now + 3600,
			  "%s %s: %lld", e[i].name, e[i].kind, (long long)e[i].not_after);
	}
	tls_server_certs(NULL, &n);
	cr_expect_eq(n, 0);
	conf_unref(c);
}

/* ---- the BIO over pool buffers ---- */

/* What the client has written, as bytes (records). */
static size_t client_out(struct client *cl, uint8_t *out, size_t cap)
{
	int n = BIO_read(cl->wbio, out, (int)cap);
	return n > 0 ? (size_t)n : 0;
}

static struct pbuf *buf_of(struct pool *p, const uint8_t *data, size_t n)
{
	struct pbuf *b = pbuf_get(p);
	cr_assert_not_null(b);
	cr_assert(n <= b->cap);
	memcpy(b->data, data, n);
	b->len = (uint32_t)n;
	return b;
}

/* Give the client what the server wrote, through tls_take_bufs; check the
   pending count against the chain. */
static void server_to_client(struct client *cl, struct tls_conn *t)
{
	size_t pending = tls_pending_out(t), sum = 0;
	struct pbuf *b = tls_take_bufs(t);
	while (b) {
		struct pbuf *next = b->next;
		sum += b->len;
		BIO_write(cl->rbio, b->data + b->off, (int)b->len);
		pbuf_put(b);
		b = next;
	}
	cr_assert_eq(sum, pending);
	cr_assert_eq(tls_pending_out(t), 0);
}

Test(tls, pbuf_bio_records_split_anywhere_and_nothing_held_idle)
{
	struct conf *c = load_ok(NULL);
	struct client cl;
	struct pool pool;
	uint8_t rec[4096], got[256];

	pool_init(&pool, 1024, 4);
	struct tls_conn *t = tls_conn_server(c->tls_server, 0, "imap");
	tls_set_pool(t, &pool);
	client_init(&cl, NULL, NULL, NULL, 0, NULL);
	cr_assert_eq(handshake(&cl, t), 1);
	/* The handshake's buffers all went back (nothing fed or unsent). */
	cr_assert_eq(pool.outstanding, 0);

	/* Empty input: retry, not EOF; nothing pending. */
	cr_assert_eq(tls_read(t, got, sizeof(got)), TLS_WANT);
	cr_assert(!tls_has_plaintext(t));

	/* One record, split at every byte into two pool buffers. */
	static const char msg[] = "a1 FETCH 1 (BODY[])";
	size_t len = 0, w0;
	cr_assert_eq(SSL_write_ex(cl.ssl, msg, sizeof(msg) - 1, &w0), 1);
	len = client_out(&cl, rec, sizeof(rec));
	cr_assert(len > sizeof(msg));
	tls_feed_buf(t, buf_of(&pool, rec, len));
	cr_assert_eq(tls_read(t, got, sizeof(got)), (int)sizeof(msg) - 1);
	for (size_t k = 1, whole = len; k < whole; k++) {
		size_t w;
		cr_assert_eq(SSL_write_ex(cl.ssl, msg, sizeof(msg) - 1, &w), 1);
		len = client_out(&cl, rec, sizeof(rec));
		cr_assert_eq(len, whole);
		tls_feed_buf(t, buf_of(&pool, rec, k));
		cr_assert(tls_has_plaintext(t)); /* ciphertext waiting */
		cr_assert_eq(tls_read(t, got, sizeof(got)), TLS_WANT, "split at %zu", k);
		/* SSL took the partial record into its own buffer: the pool
		   buffer is back. */
		cr_assert_eq(pool.outstanding, 0);
		tls_feed_buf(t, buf_of(&pool, rec + k, len - k));
		int n = tls_read(t, got, sizeof(got));
		cr_assert_eq(n, (int)sizeof(msg) - 1, "split at %zu", k);
		cr_assert(memcmp(got, msg, sizeof(msg) - 1) == 0);
		cr_assert(!tls_has_plaintext(t));
		cr_assert_eq(pool.outstanding, 0);
	}

	/* Two records in one buffer: the first read consumes it partly. */
	size_t w, r1, r2;
	cr_assert_eq(SSL_write_ex(cl.ssl, "one", 3, &w), 1);
	r1 = client_out(&cl, rec, sizeof(rec));
	cr_assert_eq(SSL_write_ex(cl.ssl, "two", 3, &w), 1);
	r2 = client_out(&cl, rec + r1, sizeof(rec) - r1);
	tls_feed_buf(t, buf_of(&pool, rec, r1 + r2));
	cr_assert_eq(tls_read(t, got, sizeof(got)), 3);
	cr_assert(memcmp(got, "one", 3) == 0);
	cr_assert(tls_has_plaintext(t));
	cr_assert_eq(pool.outstanding, 1); /* the second record's bytes */
	cr_assert_eq(tls_read(t, got, sizeof(got)), 3);
	cr_assert(memcmp(got, "two", 3) == 0);
	cr_assert_eq(tls_read(t, got, sizeof(got)), TLS_WANT);
	cr_assert_eq(pool.outstanding, 0);

	/* Small reads join the last buffer's room instead of holding a pool
	   buffer each (a client trickling a record byte by byte). */
	cr_assert_eq(SSL_write_ex(cl.ssl, msg, sizeof(msg) - 1, &w), 1);
	len = client_out(&cl, rec, sizeof(rec));
	for (size_t i = 0; i < len; i++)
		tls_feed_buf(t, buf_of(&pool, rec + i, 1));
	cr_assert_eq(pool.outstanding, 1);
	cr_assert_eq(tls_read(t, got, sizeof(got)), (int)sizeof(msg) - 1);
	cr_assert_eq(pool.outstanding, 0);

	/* Server to client: a 40 KiB write makes full 16 KiB records straight
	   into 1 KiB pool buffers, every buffer full but the last. */
	static uint8_t big[40000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 13 + 1);
	cr_assert_eq(tls_write(t, big, sizeof(big)), 0);
	cr_assert(tls_pending_out(t) > sizeof(big));
	struct pbuf *chain = tls_take_bufs(t);
	size_t nbufs = 0;
	for (struct pbuf *b = chain; b; b = b->next, nbufs++) {
		if (b->next != NULL)
			cr_assert_eq(b->len, b->cap);
		BIO_write(cl.rbio, b->data + b->off, (int)b->len);
	}
	cr_assert_eq(pool.outstanding, nbufs);
	while (chain) {
		struct pbuf *next = chain->next;
		pbuf_put(chain);
		chain = next;
	}
	size_t n = 0, rr = 0;
	static uint8_t back[40000];
	int records = 0;
	while (n < sizeof(back) && SSL_read_ex(cl.ssl, back + n, sizeof(back) - n, &rr) == 1) {
		n += rr;
		records++;
	}
	cr_assert_eq(n, sizeof(big));
	cr_assert(memcmp(back, big, n) == 0);
	cr_expect_eq(records, 3); /* 16384 + 16384 + 7232 */

	/* close_notify from the server goes out through the chain too. */
	tls_shutdown(t);
	server_to_client(&cl, t);
	cr_assert_eq(SSL_read_ex(cl.ssl, got, sizeof(got), &rr), 0);
	cr_assert_eq(SSL_get_error(cl.ssl, 0), SSL_ERROR_ZERO_RETURN);

	/* Idle: the connection holds no buffer. */
	cr_assert_eq(pool.outstanding, 0);
	tls_conn_free(t);
	client_free(&cl);
	pool_destroy(&pool);
	conf_unref(c);
}

/* Buffers still queued when the connection is freed go back to the pool. */
Test(tls, pbuf_bio_free_returns_queued_buffers)
{
	struct conf *c = load_ok(NULL);
	struct pool pool;
	uint8_t junk[100] = { 0x17, 0x03, 0x03, 0x40, 0x00 };

	pool_init(&pool, 1024, 4);
	struct tls_conn *t = tls_conn_server(c->tls_server, 0, "imap");
	tls_set_pool(t, &pool);
	tls_feed_buf(t, buf_of(&pool, junk, sizeof(junk)));
	cr_assert_eq(pool.outstanding, 1);
	tls_conn_free(t);
	cr_assert_eq(pool.outstanding, 0);
	pool_destroy(&pool);
	conf_unref(c);
}

/*
 * conf_tls.c - the `tls` group, `vhosts`, and the TLS settings of
 * listeners. Certificates are read (and the TLS contexts built) when the
 * snapshot is loaded, so `gatehouse -t` and a SIGHUP reload catch a bad or
 * mismatched file before anything uses it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/stat.h>

#include "conf_int.h"
#include "gh.h"
#include "tls.h"

#define CONF__MAX_VHOSTS 4096
#define CONF__MAX_VHOST_NAMES 256

static const char *const conf__starttls_names[] = {
	[CONF_STARTTLS_OFF] = "off",
	[CONF_STARTTLS_OPTIONAL] = "optional",
	[CONF_STARTTLS_REQUIRED] = "required",
};

static const char *const conf__tls_version_names[] = {"TLSv1.2", "TLSv1.3"};
static const int conf__tls_versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};

int conf__listen_tls(struct conf_ld *ld, const config_setting_t *g, const config_setting_t *ts,
		     const config_setting_t *ss, struct conf_listen *l)
{
	if (ts != NULL) {
		if (config_setting_type(ts) != CONFIG_TYPE_BOOL)
			return conf__fail(ld, ts, NULL, "must be true or false");
		l->tls = config_setting_get_bool(ts) != 0;
	}
	if (ss != NULL) {
		int i = CONF__KEYWORD(ld, ss, conf__starttls_names);
		if (i < 0)
			return -1;
		if (l->tls && i != CONF_STARTTLS_OFF)
			return conf__fail(ld, ss, NULL, "applies to plain listeners, not to tls = true");
		l->starttls = (enum conf_starttls)i;
		l->starttls_set = true;
	}
	return 0;
}

/* A path setting: a non-empty string without control characters. */
static int conf__path_setting(struct conf_ld *ld, const config_setting_t *s, char **dst)
{
	const char *v;

	if (conf__string(ld, s, &v) < 0)
		return -1;
	if (v[0] == '\0')
		return conf__fail(ld, s, NULL, "must not be empty");
	for (const char *p = v; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return conf__fail(ld, s, NULL, "must not contain control characters");
	return conf__set_str(ld, dst, v);
}

/* Read the cert/key members of group g into cc (other members: caller). */
static int conf__cert_member(struct conf_ld *ld, const config_setting_t *s, struct tls_cert *cc,
			     bool *handled)
{
	const char *name = config_setting_name(s);

	*handled = true;
	if (strcmp(name, "cert") == 0)
		return conf__path_setting(ld, s, &cc->cert);
	if (strcmp(name, "key") == 0)
		return conf__path_setting(ld, s, &cc->key);
	if (strcmp(name, "ecdsa_cert") == 0)
		return conf__path_setting(ld, s, &cc->ecdsa_cert);
	if (strcmp(name, "ecdsa_key") == 0)
		return conf__path_setting(ld, s, &cc->ecdsa_key);
	*handled = false;
	return 0;
}

/* Both halves of each pair, and at least one pair. */
static int conf__cert_check(struct conf_ld *ld, const config_setting_t *g, struct tls_cert *cc,
			    bool required)
{
	char where[128];

	conf__path(g, where, sizeof(where));
	cc->line = (int)config_setting_source_line(g);
	if ((cc->where = strdup(where[0] ? where : "tls")) == NULL)
		return conf__oom(ld);
	if (!cc->cert != !cc->key)
		return conf__fail(ld, g, cc->cert ? "key" : "cert", "cert and key go together");
	if (!cc->ecdsa_cert != !cc->ecdsa_key)
		return conf__fail(ld, g, cc->ecdsa_cert ? "ecdsa_key" : "ecdsa_cert",
				  "ecdsa_cert and ecdsa_key go together");
	if (required && !cc->cert && !cc->ecdsa_cert)
		return conf__fail(ld, g, "cert", "required setting is missing");
	return 0;
}

static int conf__protocols(struct conf_ld *ld, const config_setting_t *s)
{
	struct conf *c = ld->c;
	int lo = 0, hi = 0;

	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return conf__fail(ld, s, NULL, "must be an array of strings [ \"TLSv1.2\", \"TLSv1.3\" ]");
	int n = config_setting_length(s);
	if (n == 0)
		return conf__fail(ld, s, NULL, "must name at least one version");
	for (int i = 0; i < n; i++) {
		int k = CONF__KEYWORD(ld, config_setting_get_elem(s, (unsigned)i), conf__tls_version_names);
		if (k < 0)
			return -1;
		int v = conf__tls_versions[k];
		if (lo == 0 || v < lo)
			lo = v;
		if (v > hi)
			hi = v;
	}
	c->tls.min_version = lo;
	c->tls.max_version = hi;
	return 0;
}

static int conf__opt_string(struct conf_ld *ld, const config_setting_t *s, char **dst)
{
	const char *v;

	if (conf__string(ld, s, &v) < 0)
		return -1;
	if (v[0] == '\0') {
		free(*dst);
		*dst = NULL;
		return 0;
	}
	return conf__set_str(ld, dst, v);
}

/* Ciphers, suites and groups are checked against OpenSSL here, where the
   line is known, rather than when the contexts are built. */
static int conf__openssl_list(struct conf_ld *ld, const config_setting_t *s, char **dst,
			      int (*apply)(SSL_CTX *, const char *), const char *what)
{
	if (conf__opt_string(ld, s, dst) < 0)
		return -1;
	if (*dst == NULL)
		return 0;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	int ok = ctx != NULL && apply(ctx, *dst) == 1;
	SSL_CTX_free(ctx);
	ERR_clear_error();
	if (!ok)
		return conf__fail(ld, s, NULL, "no usable %s in \"%s\"", what, *dst);
	return 0;
}

static int conf__set_ciphers(SSL_CTX *ctx, const char *v)
{
	return SSL_CTX_set_cipher_list(ctx, v);
}

static int conf__set_suites(SSL_CTX *ctx, const char *v)
{
	return SSL_CTX_set_ciphersuites(ctx, v);
}

static int conf__set_groups(SSL_CTX *ctx, const char *v)
{
	return (int)SSL_CTX_set1_groups_list(ctx, v);
}

static int conf__ticket_keys(struct conf_ld *ld, const config_setting_t *s)
{
	struct conf *c = ld->c;

	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return conf__fail(ld, s, NULL, "must be an array of file names");
	int n = config_setting_length(s);
	if (n > 8)
		return conf__fail(ld, s, NULL, "must have at most 8 entries");
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		if (conf__path_setting(ld, e, &c->tls.ticket_keys[i]) < 0)
			return -1;
		c->tls.nticket_keys = i + 1;
		struct stat sb;
		if (stat(c->tls.ticket_keys[i], &sb) < 0)
			return conf__fail(ld, e, NULL, "cannot read %s: %s", c->tls.ticket_keys[i],
					  strerror(errno));
		if (sb.st_size != 80)
			return conf__fail(ld, e, NULL, "%s must hold exactly 80 bytes (it has %lld)",
					  c->tls.ticket_keys[i], (long long)sb.st_size);
	}
	return 0;
}

int conf__tls(struct conf_ld *ld, const config_setting_t *g)
{
	struct conf *c = ld->c;

	if (!config_setting_is_group(g))
		return conf__fail(ld, g, NULL, "must be a group { ... }");
	int n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);
		bool handled;
		double v;
		int rc;

		if ((rc = conf__cert_member(ld, s, &c->tls.cert, &handled)) < 0)
			return -1;
		if (handled)
			continue;
		if (strcmp(name, "protocols") == 0)
			rc = conf__protocols(ld, s);
		else if (strcmp(name, "ciphers") == 0)
			rc = conf__openssl_list(ld, s, &c->tls.ciphers, conf__set_ciphers, "cipher");
		else if (strcmp(name, "ciphersuites") == 0)
			rc = conf__openssl_list(ld, s, &c->tls.ciphersuites, conf__set_suites, "suite");
		else if (strcmp(name, "groups") == 0)
			rc = conf__openssl_list(ld, s, &c->tls.groups, conf__set_groups, "group");
		else if (strcmp(name, "ticket_keys") == 0)
			rc = conf__ticket_keys(ld, s);
		else if (strcmp(name, "session_tickets") == 0) {
			if (config_setting_type(s) != CONFIG_TYPE_BOOL)
				return conf__fail(ld, s, NULL, "must be true or false");
			c->tls.session_tickets = config_setting_get_bool(s) != 0;
		} else if (strcmp(name, "session_cache") == 0) {
			rc = conf__number(ld, s, true, 0, 1000000, &v);
			c->tls.session_cache = (int)v;
		} else if (strcmp(name, "session_timeout") == 0) {
			rc = conf__number(ld, s, false, 1, 86400, &v);
			c->tls.session_timeout = v;
		} else
			return conf__fail(ld, s, NULL, "unknown setting");
		if (rc < 0)
			return -1;
	}
	return conf__cert_check(ld, g, &c->tls.cert, false);
}

/* "mail.example.com" or "*.example.com": a DNS name, lower-cased. */
static int conf__vhost_name(struct conf_ld *ld, const config_setting_t *s, char **out)
{
	const char *v;

	if (conf__string(ld, s, &v) < 0)
		return -1;
	const char *h = strncmp(v, "*.", 2) == 0 ? v + 2 : v;
	if (!conf__hostname_ok(h, strlen(h)) || strchr(h, '*'))
		return conf__fail(ld, s, NULL, "must be a host name or *.domain");
	if ((*out = strdup(v)) == NULL)
		return conf__oom(ld);
	for (char *p = *out; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return 0;
}

static int conf__vhost(struct conf_ld *ld, const config_setting_t *g, struct tls_vhost *vh,
		       struct conf_vhost_http *vx)
{
	const config_setting_t *names = NULL;

	if (!config_setting_is_group(g))
		return conf__fail(ld, g, NULL, "must be a group { names = [...]; cert = ...; key = ...; }");
	int n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		bool handled;

		if (conf__cert_member(ld, s, &vh->cert, &handled) < 0)
			return -1;
		if (handled)
			continue;
		if (strcmp(config_setting_name(s), "names") == 0)
			names = s;
		else if (strcmp(config_setting_name(s), "add_headers") == 0) {
			if (conf__headers(ld, s, &vx->headers, &vx->nheaders) < 0)
				return -1;
		} else
			return conf__fail(ld, s, NULL, "unknown setting");
	}
	if (names == NULL)
		return conf__fail(ld, g, "names", "required setting is missing");
	if (!config_setting_is_array(names) && !config_setting_is_list(names))
		return conf__fail(ld, names, NULL, "must be an array of host names");
	int nn = config_setting_length(names);
	if (nn < 1 || nn > CONF__MAX_VHOST_NAMES)
		return conf__fail(ld, names, NULL, "must have 1 to %d names", CONF__MAX_VHOST_NAMES);
	if ((vh->names = calloc((size_t)nn, sizeof(*vh->names))) == NULL)
		return conf__oom(ld);
	for (int i = 0; i < nn; i++) {
		if (conf__vhost_name(ld, config_setting_get_elem(names, (unsigned)i), &vh->names[i]) < 0)
			return -1;
		vh->nnames = i + 1;
	}
	return conf__cert_check(ld, g, &vh->cert, true);
}

int conf__vhosts(struct conf_ld *ld, const config_setting_t *s)
{
	struct conf *c = ld->c;

	if (!config_setting_is_list(s))
		return conf__fail(ld, s, NULL, "must be a list ( { names = [...]; cert = ...; key = ...; }, ... )");
	int n = config_setting_length(s);
	if (n > CONF__MAX_VHOSTS)
		return conf__fail(ld, s, NULL, "must have at most %d entries", CONF__MAX_VHOSTS);
	if (n == 0)
		return 0;
	if ((c->vhosts = calloc((size_t)n, sizeof(*c->vhosts))) == NULL ||
	    (c->vhost_http = calloc((size_t)n, sizeof(*c->vhost_http))) == NULL)
		return conf__oom(ld);
	for (int i = 0; i < n; i++) {
		c->nvhosts = i + 1;
		if (conf__vhost(ld, config_setting_get_elem(s, (unsigned)i), &c->vhosts[i],
				&c->vhost_http[i]) < 0)
			return -1;
	}
	/* A name must pick one certificate. */
	for (int i = 0; i < n; i++)
		for (int j = 0; j < c->vhosts[i].nnames; j++)
			for (int k = 0; k <= i; k++)
				for (int m = 0; m < (k == i ? j : c->vhosts[k].nnames); m++)
					if (strcmp(c->vhosts[i].names[j], c->vhosts[k].names[m]) == 0)
						return conf__fail(ld, config_setting_get_elem(s, (unsigned)i), "names",
								  "%s is already a name of vhosts.[%d]",
								  c->vhosts[i].names[j], k);
	return 0;
}

int conf__upstream(struct conf_ld *ld, const config_setting_t *g)
{
	struct conf *c = ld->c;

	if (!config_setting_is_group(g))
		return conf__fail(ld, g, NULL, "must be a group { ... }");
	int n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);
		bool *flag = strcmp(name, "tls") == 0 ? &c->upstream.tls
			     : strcmp(name, "verify") == 0 ? &c->upstream.verify : NULL;

		if (flag) {
			if (config_setting_type(s) != CONFIG_TYPE_BOOL)
				return conf__fail(ld, s, NULL, "must be true or false");
			*flag = config_setting_get_bool(s) != 0;
		} else if (strcmp(name, "ca") == 0) {
			if (conf__path_setting(ld, s, &c->upstream.ca) < 0)
				return -1;
		} else {
			return conf__fail(ld, s, NULL, "unknown setting");
		}
	}
	return 0;
}

void conf__tls_defaults(struct conf *c)
{
	c->tls.min_version = TLS1_2_VERSION;
	c->tls.max_version = TLS1_3_VERSION;
	c->tls.session_tickets = true;
	c->tls.session_cache = 20480;
	c->tls.session_timeout = 3600.0;
}

static void conf__cert_free(struct tls_cert *cc)
{
	free(cc->cert);
	free(cc->key);
	free(cc->ecdsa_cert);
	free(cc->ecdsa_key);
	free(cc->where);
}

void conf__tls_free(struct conf *c)
{
	tls_server_free(c->tls_server);
	tls_client_free(c->tls_client);
	free(c->upstream.ca);
	conf__cert_free(&c->tls.cert);
	free(c->tls.ciphers);
	free(c->tls.ciphersuites);
	free(c->tls.groups);
	for (int i = 0; i < c->tls.nticket_keys; i++)
		free(c->tls.ticket_keys[i]);
	for (int i = 0; i < c->nvhosts; i++) {
		for (int j = 0; j < c->vhosts[i].nnames; j++)
			free(c->vhosts[i].names[j]);
		free(c->vhosts[i].names);
		conf__cert_free(&c->vhosts[i].cert);
		for (int j = 0; c->vhost_http != NULL && j < c->vhost_http[i].nheaders; j++) {
			free(c->vhost_http[i].headers[j].name);
			free(c->vhost_http[i].headers[j].value);
		}
		if (c->vhost_http != NULL)
			free(c->vhost_http[i].headers);
	}
	free(c->vhosts);
	free(c->vhost_http);
}

/*
 * After the whole file: listeners against the certificate, then read the
 * certificates. Without a certificate a plain listener does not offer
 * STARTTLS (it could not); with one it requires it unless told otherwise,
 * as Carbonio does.
 */
int conf__tls_finish(struct conf_ld *ld)
{
	struct conf *c = ld->c;
	bool have_cert = c->tls.cert.cert || c->tls.cert.ecdsa_cert;

	if (c->nvhosts > 0 && !have_cert) {
		snprintf(ld->err, ld->errlen,
			 "%s:%d: tls.cert: required with vhosts (served to clients without SNI or with an unknown name)",
			 ld->file, c->vhosts[0].cert.line);
		return -1;
	}
	for (int i = 0; i < c->nlisten; i++) {
		struct conf_listen *l = &c->listen[i];
		if (l->tls && !have_cert) {
			snprintf(ld->err, ld->errlen, "%s:%d: listen.[%d].tls: needs a certificate (tls.cert)",
				 ld->file, l->line, i);
			return -1;
		}
		if (!l->tls && !l->starttls_set)
			l->starttls = have_cert ? CONF_STARTTLS_REQUIRED : CONF_STARTTLS_OFF;
		if (!l->tls && l->starttls != CONF_STARTTLS_OFF && !have_cert) {
			snprintf(ld->err, ld->errlen, "%s:%d: listen.[%d].starttls: needs a certificate (tls.cert)",
				 ld->file, l->line, i);
			return -1;
		}
	}
	bool need_client = c->upstream.tls || conf__upstreams_need_tls(c);
	for (int i = 0; i < c->lookup.nservers; i++)
		need_client |= c->lookup.servers[i].tls;
	if (need_client) {
		char why[300];
		c->tls_client = tls_client_new(c->upstream.ca, why, sizeof(why));
		if (c->tls_client == NULL) {
			snprintf(ld->err, ld->errlen, "%s: upstream.ca: %s", ld->file, why);
			return -1;
		}
	}
	if (!have_cert)
		return 0;
	c->tls_server = tls_server_new(&c->tls, c->vhosts, c->nvhosts, c->workers, c->path, ld->err,
				       ld->errlen);
	return c->tls_server ? 0 : -1;
}

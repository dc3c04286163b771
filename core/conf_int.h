/*
 * conf_int.h - what the files of the configuration loader share: the load
 * state, the table-driven group walker, typed setting readers and address
 * parsing. Each feature's settings live in a file of their own
 * (conf_<feature>.c) and are reached through the root table in conf.c.
 * Private to proxy/.
 */
#ifndef GATEHOUSE_CONF_INT_H
#define GATEHOUSE_CONF_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libconfig.h>

#include "conf.h"
#include "gh.h"

#define CONF__MAX_FILE (1024 * 1024)
#define CONF__MAX_ROUTES 65536
#define CONF__MAX_STRING 4096
#define CONF__MAX_CAP_LEN 64
#define CONF__STR2(x) #x
#define CONF__STR(x) CONF__STR2(x)
#define CONF__MAX_CAP_LEN_TEXT CONF__STR(CONF__MAX_CAP_LEN) /* the same, in messages */
#define CONF__MAX_GREETING 200
#define CONF__MAX_URL 1024
#define CONF__MAX_HOSTNAME 253
#define CONF__DEFAULT_LOOKUP_PATH "/service/extension/nginx-lookup"
#define CONF__DEFAULT_LOOKUP_PORT 7072

/* State of one load: where errors go, and the snapshot being filled. */
struct conf_ld {
	const char *file;
	char *err;
	size_t errlen;
	struct conf *c;
	/* routes and listen are parsed after the root walk, once every group
	 * they may depend on has been read, wherever it appears in the file. */
	const config_setting_t *routes;
	const config_setting_t *listen;
	/* The top-level locations name upstream groups: read after the walk. */
	const config_setting_t *locations;
};

enum conf__type {
	CONF__T_INT,    /* int, integral value */
	CONF__T_SIZE,   /* size_t, integral value */
	CONF__T_U16,    /* uint16_t, integral value */
	CONF__T_SECS,   /* double, integer or float accepted */
	CONF__T_BOOL,   /* bool */
	CONF__T_FN,     /* custom handler */
};

struct conf_opt {
	const char *name;
	enum conf__type type;
	size_t off; /* offsetof(struct conf, ...) for the plain types */
	double lo, hi;
	int (*fn)(struct conf_ld *ld, const config_setting_t *s);
};

/* --- typed readers (conf_value.c) --- */

void conf__path(const config_setting_t *s, char *buf, size_t cap);

__attribute__((format(printf, 4, 5)))
int conf__fail(struct conf_ld *ld, const config_setting_t *s, const char *member,
	       const char *fmt, ...);

int conf__oom(struct conf_ld *ld);

bool conf__integral(double v);

void conf__fmt_num(char *buf, size_t cap, double v);

int conf__number(struct conf_ld *ld, const config_setting_t *s, bool integer,
		 double lo, double hi, double *out);

int conf__string(struct conf_ld *ld, const config_setting_t *s, const char **out);

int conf__keyword(struct conf_ld *ld, const config_setting_t *s,
		  const char *const *names, int nnames);
/* conf__keyword over a whole static table of names (its size counted). */
#define CONF__KEYWORD(ld, s, names) conf__keyword(ld, s, names, (int)ARRAY_SIZE(names))
/* Store the index of s's keyword in names into the int-sized enum *dst
   (the array size refuses a member of another size). */
#define CONF__SET_KEYWORD(ld, s, names, dst)                                              \
	conf__set_keyword(ld, s, names, (int)ARRAY_SIZE(names),                             \
			  (int *)(void *)(dst) + 0 * sizeof(char[sizeof(*(dst)) == sizeof(int) ? 1 : -1]))
int conf__set_keyword(struct conf_ld *ld, const config_setting_t *s, const char *const *names,
		      int nnames, int *dst);

int conf__set_str(struct conf_ld *ld, char **dst, const char *v);

int conf__set_text(struct conf_ld *ld, const config_setting_t *s, size_t max, char **dst);

/* What a protocol's capability list differs in (conf__caps). */
struct conf_caps_kind {
	bool (*valid)(const char *v);      /* may be listed at all */
	const char *invalid;               /* complaint when not */
	size_t (*word)(const char *v);     /* the name that duplicates are compared on */
	bool (*reserved)(const char *v, size_t w); /* gatehouse announces it itself */
};

/* Read s, an array of capability strings, into caps/ncaps (CONF_MAX_CAPS
   of them), freeing what they held: each valid, not reserved, no name twice. */
int conf__caps(struct conf_ld *ld, const config_setting_t *s, const struct conf_caps_kind *k,
	       char **caps, int *ncaps);
/* Copy the n default capabilities into caps/ncaps (empty before). -1: no memory. */
int conf__caps_set(const char *const *defaults, int n, char **caps, int *ncaps);

int conf__group(struct conf_ld *ld, const config_setting_t *g,
		const struct conf_opt *opts, size_t nopts);

/* A token character of RFC 9110 (header names, media types). */
bool conf__tchar(unsigned char ch);

/* Header lines added to responses ("Name: value" strings) into *out /
   *n_out (conf_location.c; locations and the http group). */
int conf__headers(struct conf_ld *ld, const config_setting_t *s, struct conf_header **out,
		  int *n_out);

/* --- addresses and URLs, pure (conf_addr.c) --- */

bool conf__hostname_ok(const char *h, size_t len);

bool conf__port(const char *s, size_t len, uint16_t *out);

int conf__split_url(const char *url, char *host_out, char *name_out, size_t cap,
		    uint16_t *port_out, const char **path_out, bool *numeric_out,
		    bool *tls_out, const char **why);

int conf__split_server(const char *v, char *host, size_t cap, uint16_t *port,
		       const char **why);

bool conf__same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b);

/* --- TLS settings (conf_tls.c) --- */

int conf__listen_tls(struct conf_ld *ld, const config_setting_t *g, const config_setting_t *ts,
		     const config_setting_t *ss, struct conf_listen *l);
int conf__tls(struct conf_ld *ld, const config_setting_t *g);
int conf__vhosts(struct conf_ld *ld, const config_setting_t *s);
void conf__tls_defaults(struct conf *c);
void conf__tls_free(struct conf *c);
int conf__tls_finish(struct conf_ld *ld);
int conf__upstream(struct conf_ld *ld, const config_setting_t *g);

/* --- route cache settings (conf_cache.c) --- */

int conf__cache(struct conf_ld *ld, const config_setting_t *s);
void conf__cache_defaults(struct conf *c);
void conf__cache_free(struct conf *c);

/* --- status listener settings (conf_status.c) --- */

int conf__status(struct conf_ld *ld, const config_setting_t *s);
void conf__status_free(struct conf *c);

/* --- PROXY protocol settings (conf_proxy.c) --- */

int conf__trusted_proxies(struct conf_ld *ld, const config_setting_t *s);
/* "10.0.0.0/8", "::1/128"; a bare address means the host alone. 0 or -1. */
int conf__cidr(const char *v, struct conf_cidr *out);
/* A list of at most max of those into a new array (*list_out, *n_out). */
int conf__cidr_list(struct conf_ld *ld, const config_setting_t *s, int max,
		    struct conf_cidr **list_out, int *n_out);
int conf__listen_proxy(struct conf_ld *ld, const config_setting_t *s, struct conf_listen *l);
void conf__proxy_free(struct conf *c);

/* --- POP3 settings (conf_pop3.c) --- */

int conf__pop3(struct conf_ld *ld, const config_setting_t *s);
int conf__pop3_defaults(struct conf_ld *ld);
void conf__pop3_free(struct conf *c);

/* --- login throttling (conf_throttle.c) --- */

int conf__throttle(struct conf_ld *ld, const config_setting_t *s);
int conf__throttle_defaults(struct conf_ld *ld);
void conf__throttle_free(struct conf *c);

/* --- HTTP settings (conf_http.c) --- */

int conf__http(struct conf_ld *ld, const config_setting_t *s);
/* A listener's `mode` (ms, may be NULL), its starttls (ss) and http2
   (h2s): checked against the listener's protocol and TLS. */
int conf__listen_http(struct conf_ld *ld, const config_setting_t *ms, const config_setting_t *ss,
		      const config_setting_t *h2s, struct conf_listen *l);
void conf__http_defaults(struct conf *c);
/* Cross-checks once everything is read: backends for http listeners. */
int conf__http_finish(struct conf_ld *ld);
void conf__http_free(struct conf *c);

/* --- upstream groups and locations (conf_upstream.c, conf_location.c) --- */

/* An upstream name: 1..64 of [A-Za-z0-9_-]. */
bool conf__ident_ok(const char *v);
int conf__upstreams(struct conf_ld *ld, const config_setting_t *s);
/* Does some upstream group speak TLS (so the snapshot needs a client context)? */
bool conf__upstreams_need_tls(const struct conf *c);
void conf__upstreams_free(struct conf *c);
/* Read a locations list into *out (replacing it); upstreams must be read. */
int conf__locations(struct conf_ld *ld, const config_setting_t *s, struct conf_location_table **out);
void conf__location_table_free(struct conf_location_table *t);
/* The top-level table and every listener's. */
void conf__locations_free(struct conf *c);

#endif

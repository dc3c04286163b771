/*
 * core/conf_http.c - the `http` group (the web reverse proxy: backends for
 * the client-IP hash, bounds on request heads, timeouts, the access log) and
 * the `mode` of plain http listeners.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf_int.h"
#include "gh.h"

#define CONF__HTTP_MAX_BACKENDS 256

static const char *const conf__http_mode_names[] = {
	[CONF_HTTP_MODE_REDIRECT] = "redirect",
	[CONF_HTTP_MODE_HTTPS] = "https",
	[CONF_HTTP_MODE_BOTH] = "both",
};

static void conf__http_free_backends(struct conf *c)
{
	for (int i = 0; i < c->http.nbackends; i++)
		free(c->http.backends[i].host);
	free(c->http.backends);
	c->http.backends = NULL;
	c->http.nbackends = 0;
}

static int conf__http_backends(struct conf_ld *ld, const config_setting_t *s)
{
	struct conf *c = ld->c;

	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return conf__fail(ld, s, NULL, "must be an array of strings [ \"ip:port\", ... ]");
	int count = config_setting_length(s);
	if (count > CONF__HTTP_MAX_BACKENDS)
		return conf__fail(ld, s, NULL, "must have at most %d entries", CONF__HTTP_MAX_BACKENDS);
	conf__http_free_backends(c);
	if (count == 0)
		return 0;
	c->http.backends = calloc((size_t)count, sizeof(*c->http.backends));
	if (c->http.backends == NULL)
		return conf__oom(ld);
	for (int i = 0; i < count; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		struct conf_http_backend *b = &c->http.backends[i];
		char host[CONF__MAX_HOSTNAME + 1];
		const char *v, *why = NULL;
		uint16_t port = 0;

		if (conf__string(ld, e, &v) < 0)
			return -1;
		if (conf__split_server(v, host, sizeof(host), &port, &why) < 0)
			return conf__fail(ld, e, NULL, "%s", why);
		if ((b->host = strdup(host)) == NULL)
			return conf__oom(ld);
		/* Without a port: http.backend_port, filled in at the end. */
		b->port = port;
		c->http.nbackends++;
	}
	return 0;
}

static int conf__http_server_name(struct conf_ld *ld, const config_setting_t *s)
{
	const char *v;

	if (conf__string(ld, s, &v) < 0)
		return -1;
	if (!conf__hostname_ok(v, strlen(v)))
		return conf__fail(ld, s, NULL, "must be a host name");
	char *dup = strdup(v);
	if (dup == NULL)
		return conf__oom(ld);
	/* Host headers are compared case-insensitively: keep it lower case. */
	for (char *p = dup; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	free(ld->c->http.server_name);
	ld->c->http.server_name = dup;
	return 0;
}

static int conf__http_access_log(struct conf_ld *ld, const config_setting_t *s)
{
	const char *v;

	if (conf__string(ld, s, &v) < 0)
		return -1;
	if (v[0] == '\0')
		return conf__fail(ld, s, NULL, "must be a file, \"stderr\" or \"off\"");
	for (const char *p = v; *p; p++)
		if ((unsigned char)*p < 0x20)
			return conf__fail(ld, s, NULL, "must not contain control characters");
	free(ld->c->http.access_log);
	ld->c->http.access_log = NULL;
	if (strcmp(v, "off") == 0)
		return 0;
	return conf__set_str(ld, &ld->c->http.access_log, v);
}

static int conf__http_add_headers(struct conf_ld *ld, const config_setting_t *s)
{
	return conf__headers(ld, s, &ld->c->http.add_headers, &ld->c->http.nadd_headers);
}

/* Largest error page file, and how many statuses may have one. */
#define CONF__HTTP_PAGE_MAX 65536
#define CONF__HTTP_MAX_PAGES 64

/* The bytes of a regular file of at most CONF__HTTP_PAGE_MAX (a FIFO or a
   device is refused without blocking). NULL with ld->err set. */
static char *conf__http_page_read(struct conf_ld *ld, const config_setting_t *s, const char *path,
				  size_t *len_out)
{
	struct stat st;
	char *buf = NULL;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);

	if (fd < 0) {
		conf__fail(ld, s, NULL, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		conf__fail(ld, s, NULL, "%s: not a regular file", path);
		goto out;
	}
	if (st.st_size > CONF__HTTP_PAGE_MAX) {
		conf__fail(ld, s, NULL, "%s: larger than %d bytes", path, CONF__HTTP_PAGE_MAX);
		goto out;
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		conf__oom(ld);
		goto out;
	}
	/* One read past the size: a file that grew meanwhile is refused. */
	size_t got = 0;
	for (ssize_t r; got <= (size_t)st.st_size; got += (size_t)r) {
		r = read(fd, buf + got, (size_t)st.st_size + 1 - got);
		if (r < 0 && errno == EINTR) {
			r = 0;
			continue;
		}
		if (r <= 0) {
			if (r < 0) {
				conf__fail(ld, s, NULL, "%s: %s", path, strerror(errno));
				free(buf);
				buf = NULL;
			}
			break;
		}
	}
	if (buf != NULL && got != (size_t)st.st_size) {
		conf__fail(ld, s, NULL, "%s: changed while read", path);
		free(buf);
		buf = NULL;
	}
	*len_out = got;
out:
	close(fd);
	return buf;
}

static int conf__http_page_status(struct conf_ld *ld, const config_setting_t *s, const char *body,
				  size_t len)
{
	struct conf *c = ld->c;
	double d;

	if (conf__number(ld, s, true, 400, 599, &d) < 0)
		return -1;
	for (int i = 0; i < c->http.nerror_pages; i++)
		if (c->http.error_pages[i].status == (int)d)
			return conf__fail(ld, s, NULL, "status %d has a page already", (int)d);
	if (c->http.nerror_pages == CONF__HTTP_MAX_PAGES)
		return conf__fail(ld, s, NULL, "at most %d pages", CONF__HTTP_MAX_PAGES);
	struct conf_error_page *p = &c->http.error_pages[c->http.nerror_pages];
	if ((p->body = malloc(len + 1)) == NULL)
		return conf__oom(ld);
	memcpy(p->body, body, len);
	p->body[len] = '\0';
	p->len = len;
	p->status = (int)d;
	c->http.nerror_pages++;
	return 0;
}

/* error_pages = ( { status = 502 | [ 502, 504 ]; file = "/path"; }, ... ) */
static int conf__http_error_pages(struct conf_ld *ld, const config_setting_t *s)
{
	struct conf *c = ld->c;

	if (!config_setting_is_list(s))
		return conf__fail(ld, s, NULL, "must be a list ( { status = 502; file = \"...\"; } )");
	if ((c->http.error_pages = calloc(CONF__HTTP_MAX_PAGES, sizeof(*c->http.error_pages))) == NULL)
		return conf__oom(ld);
	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const config_setting_t *st = config_setting_get_member(e, "status");
		const config_setting_t *fs = config_setting_get_member(e, "file");
		const char *path;
		size_t len = 0;
		if (!config_setting_is_group(e) || st == NULL || fs == NULL ||
		    config_setting_length(e) != 2)
			return conf__fail(ld, e, NULL, "must be { status = N or [ N, ... ]; file = \"...\"; }");
		if (conf__string(ld, fs, &path) < 0)
			return -1;
		if (path[0] != '/')
			return conf__fail(ld, fs, NULL, "must be an absolute path");
		char *body = conf__http_page_read(ld, fs, path, &len);
		if (body == NULL)
			return -1;
		int rc = 0;
		if (config_setting_is_array(st))
			for (int k = 0; rc == 0 && k < config_setting_length(st); k++)
				rc = conf__http_page_status(ld, config_setting_get_elem(st, (unsigned)k),
							    body, len);
		else
			rc = conf__http_page_status(ld, st, body, len);
		free(body);
		if (rc < 0)
			return -1;
	}
	return 0;
}

int conf_vhost_for_host(const struct conf *c, const char *host, size_t len)
{
	const char *colon = memchr(host, ':', len);
	size_t n = colon != NULL ? (size_t)(colon - host) : len;
	int wild = -1;

	for (int v = 0; v < c->nvhosts; v++)
		for (int k = 0; k < c->vhosts[v].nnames; k++) {
			const char *name = c->vhosts[v].names[k];
			if (name[0] != '*') {
				if (strlen(name) == n && strncasecmp(name, host, n) == 0)
					return v;
				continue;
			}
			/* "*.example.com": one more label, not the bare domain. */
			const char *dot = memchr(host, '.', n);
			size_t rest = dot != NULL ? n - (size_t)(dot + 1 - host) : 0;
			if (wild < 0 && dot != NULL && dot != host && strlen(name + 2) == rest &&
			    strncasecmp(name + 2, dot + 1, rest) == 0)
				wild = v;
		}
	return wild;
}

const struct conf_error_page *conf_http_error_page(const struct conf *c, int status)
{
	for (int i = 0; i < c->http.nerror_pages; i++)
		if (c->http.error_pages[i].status == status)
			return &c->http.error_pages[i];
	return NULL;
}

/* The default types: text that compresses well, as Carbonio's list. */
static const char *const conf__http_ztypes[] = {
	"text/html", "text/plain", "text/css", "text/xml", "text/javascript", "text/csv",
	"text/calendar", "text/vcard", "application/javascript", "application/x-javascript",
	"application/json", "application/xml", "application/soap+xml", "application/xhtml+xml",
	"application/rss+xml", "application/atom+xml", "application/manifest+json",
	"image/svg+xml", "font/ttf", "font/otf",
};
#define CONF__HTTP_MAX_ZTYPES 64

static void conf__http_free_ztypes(struct conf *c)
{
	for (int i = 0; i < c->http.compression.ntypes; i++)
		free(c->http.compression.types[i]);
	free(c->http.compression.types);
	c->http.compression.types = NULL;
	c->http.compression.ntypes = 0;
}

/* A media type "type/subtype" (subtype may be a star): tokens, no parameters. */
static bool conf__http_ztype_ok(const char *v)
{
	const char *slash = strchr(v, '/');

	if (slash == NULL || slash == v || slash[1] == '\0' || strlen(v) > 127)
		return false;
	for (const char *p = v; *p; p++)
		if (p != slash && !conf__tchar((unsigned char)*p))
			return false;
	return strchr(slash + 1, '/') == NULL;
}

static int conf__http_ztypes_set(struct conf_ld *ld, const config_setting_t *s)
{
	struct conf *c = ld->c;

	if (!config_setting_is_array(s))
		return conf__fail(ld, s, NULL, "must be an array of media types [ \"text/html\", ... ]");
	int count = config_setting_length(s);
	if (count > CONF__HTTP_MAX_ZTYPES)
		return conf__fail(ld, s, NULL, "must have at most %d entries", CONF__HTTP_MAX_ZTYPES);
	conf__http_free_ztypes(c);
	if (count > 0 && (c->http.compression.types = calloc((size_t)count, sizeof(char *))) == NULL)
		return conf__oom(ld);
	for (int i = 0; i < count; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v;
		if (conf__string(ld, e, &v) < 0)
			return -1;
		if (!conf__http_ztype_ok(v))
			return conf__fail(ld, e, NULL, "must be a media type \"type/subtype\" or \"type/*\"");
		if ((c->http.compression.types[i] = strdup(v)) == NULL)
			return conf__oom(ld);
		c->http.compression.ntypes++;
	}
	return 0;
}

#define CONF__HZ(m) offsetof(struct conf, http.compression.m)
static const struct conf_opt conf__http_zopts[] = {
	{ "gzip", CONF__T_BOOL, CONF__HZ(gzip), 0, 0, NULL },
	{ "br", CONF__T_BOOL, CONF__HZ(br), 0, 0, NULL },
	{ "gzip_level", CONF__T_INT, CONF__HZ(gzip_level), 1, 9, NULL },
	{ "br_level", CONF__T_INT, CONF__HZ(br_level), 0, 3, NULL },
	{ "min_length", CONF__T_SIZE, CONF__HZ(min_length), 0, 1048576, NULL },
	{ "types", CONF__T_FN, 0, 0, 0, conf__http_ztypes_set },
	{ "max_active", CONF__T_INT, CONF__HZ(max_active), 0, 100000, NULL },
};

static int conf__http_compression(struct conf_ld *ld, const config_setting_t *s)
{
	return conf__group(ld, s, conf__http_zopts, ARRAY_SIZE(conf__http_zopts));
}

static const struct conf_opt conf__http_opts[] = {
	{ "backends", CONF__T_FN, 0, 0, 0, conf__http_backends },
	{ "backend_port", CONF__T_U16, offsetof(struct conf, http.backend_port), 1, 65535, NULL },
	{ "server_name", CONF__T_FN, 0, 0, 0, conf__http_server_name },
	{ "https_port", CONF__T_U16, offsetof(struct conf, http.https_port), 1, 65535, NULL },
	{ "max_header_size", CONF__T_SIZE, offsetof(struct conf, http.max_header_size), 1024, 1048576, NULL },
	{ "max_headers", CONF__T_INT, offsetof(struct conf, http.max_headers), 1, 1000, NULL },
	{ "max_uri", CONF__T_SIZE, offsetof(struct conf, http.max_uri), 64, 1048576, NULL },
	{ "header_timeout", CONF__T_SECS, offsetof(struct conf, http.header_timeout), 0.1, 3600, NULL },
	{ "keepalive_timeout", CONF__T_SECS, offsetof(struct conf, http.keepalive_timeout), 0.1, 86400, NULL },
	{ "backend_timeout", CONF__T_SECS, offsetof(struct conf, http.backend_timeout), 0.1, 86400, NULL },
	{ "backend_keepalive", CONF__T_INT, offsetof(struct conf, http.backend_keepalive), 0, 10000, NULL },
	{ "open_file_cache_max", CONF__T_INT, offsetof(struct conf, http.open_file_cache_max), 1, 100000, NULL },
	{ "open_file_cache_valid", CONF__T_SECS, offsetof(struct conf, http.open_file_cache_valid), 0, 60, NULL },
	{ "open_file_cache_mem", CONF__T_SIZE, offsetof(struct conf, http.open_file_cache_mem), 0, 1073741824, NULL },
	{ "open_file_cache_mem_file", CONF__T_SIZE, offsetof(struct conf, http.open_file_cache_mem_file), 0, 16777216, NULL },
	{ "access_log", CONF__T_FN, 0, 0, 0, conf__http_access_log },
	{ "add_headers", CONF__T_FN, 0, 0, 0, conf__http_add_headers },
	{ "error_pages", CONF__T_FN, 0, 0, 0, conf__http_error_pages },
	{ "compression", CONF__T_FN, 0, 0, 0, conf__http_compression },
	{ "strict_server_names", CONF__T_BOOL, offsetof(struct conf, http.strict_server_names), 0, 0, NULL },
	{ "h2_max_streams", CONF__T_INT, offsetof(struct conf, http.h2_max_streams), 1, 1000, NULL },
	{ "h2_max_requests", CONF__T_INT, offsetof(struct conf, http.h2_max_requests), 0, 100000000, NULL },
	{ "h2_stream_rate", CONF__T_INT, offsetof(struct conf, http.h2_stream_rate), 1, 10000000, NULL },
	{ "h2_websocket", CONF__T_BOOL, offsetof(struct conf, http.h2_websocket), 0, 0, NULL },
};

int conf__http(struct conf_ld *ld, const config_setting_t *s)
{
	return conf__group(ld, s, conf__http_opts, ARRAY_SIZE(conf__http_opts));
}

int conf__listen_http(struct conf_ld *ld, const config_setting_t *ms,
		      const config_setting_t *ss, const config_setting_t *h2s, struct conf_listen *l)
{
	l->mode = CONF_HTTP_MODE_REDIRECT;
	l->http2 = l->proto == CONF_PROTO_HTTP && l->tls; /* as Carbonio: on for TLS http */
	if (h2s != NULL) {
		if (l->proto != CONF_PROTO_HTTP || !l->tls)
			return conf__fail(ld, h2s, NULL, "only for http listeners with tls = true "
					  "(no cleartext HTTP/2)");
		if (config_setting_type(h2s) != CONFIG_TYPE_BOOL)
			return conf__fail(ld, h2s, NULL, "must be true or false");
		l->http2 = config_setting_get_bool(h2s) != 0;
	}
	if (l->proto == CONF_PROTO_HTTP && ss != NULL)
		return conf__fail(ld, ss, NULL, "not for http listeners (use tls = true)");
	if (ms == NULL)
		return 0;
	if (l->proto != CONF_PROTO_HTTP)
		return conf__fail(ld, ms, NULL, "only for http listeners");
	if (l->tls)
		return conf__fail(ld, ms, NULL, "only for plain http listeners (this one has tls = true)");
	int i = CONF__KEYWORD(ld, ms, conf__http_mode_names);
	if (i < 0)
		return -1;
	l->mode = (enum conf_http_mode)i;
	return 0;
}

void conf__http_defaults(struct conf *c)
{
	c->http.backend_port = 8080;
	c->http.https_port = 443;
	c->http.max_header_size = 16384;
	c->http.max_headers = 100;
	c->http.max_uri = 8192;
	c->http.header_timeout = 30.0;
	c->http.keepalive_timeout = 75.0;
	c->http.backend_timeout = 60.0;
	c->http.backend_keepalive = 32;
	c->http.open_file_cache_max = 1000;
	c->http.open_file_cache_valid = 2.0;
	c->http.open_file_cache_mem = 8 << 20;
	c->http.open_file_cache_mem_file = 64 << 10;
	c->http.h2_max_streams = 128;
	c->http.h2_max_requests = 1000;
	c->http.h2_stream_rate = 10000;
	c->http.h2_websocket = true;
	c->http.compression.gzip = true;
	c->http.compression.br = true;
	c->http.compression.gzip_level = 6;
	c->http.compression.br_level = 1;
	c->http.compression.min_length = 256;
	c->http.compression.max_active = 64;
}

int conf__http_finish(struct conf_ld *ld)
{
	struct conf *c = ld->c;
	int first_http = -1;

	/* No types written: the default list. */
	if (c->http.compression.types == NULL) {
		size_t n = ARRAY_SIZE(conf__http_ztypes);
		if ((c->http.compression.types = calloc(n, sizeof(char *))) == NULL)
			return conf__oom(ld);
		for (size_t i = 0; i < n; i++) {
			if ((c->http.compression.types[i] = strdup(conf__http_ztypes[i])) == NULL)
				return conf__oom(ld);
			c->http.compression.ntypes++;
		}
	}
	for (int i = 0; i < c->nlisten; i++) {
		if (c->listen[i].proto != CONF_PROTO_HTTP)
			continue;
		/* STARTTLS does not exist in HTTP: never offer it. */
		c->listen[i].starttls = CONF_STARTTLS_OFF;
		if (first_http < 0)
			first_http = i;
	}
	for (int i = 0; i < c->http.nbackends; i++)
		if (c->http.backends[i].port == 0)
			c->http.backends[i].port = c->http.backend_port;
	/* Without backends, a request with no user in it has nowhere to go;
	   a site that routes everything statically may do without. */
	if (first_http >= 0 && c->http.nbackends == 0 && c->nroutes == 0) {
		snprintf(ld->err, ld->errlen,
			 "%s:%d: http.backends: required with an http listener (the targets of the client-IP hash)",
			 ld->file, c->listen[first_http].line);
		return -1;
	}
	return 0;
}

void conf__http_free(struct conf *c)
{
	conf__http_free_backends(c);
	free(c->http.server_name);
	free(c->http.access_log);
	for (int i = 0; i < c->http.nadd_headers; i++) {
		free(c->http.add_headers[i].name);
		free(c->http.add_headers[i].value);
	}
	for (int i = 0; i < c->http.nerror_pages; i++)
		free(c->http.error_pages[i].body);
	free(c->http.error_pages);
	c->http.error_pages = NULL;
	c->http.nerror_pages = 0;
	free(c->http.add_headers);
	conf__http_free_ztypes(c);
	c->http.add_headers = NULL;
	c->http.nadd_headers = 0;
	c->http.server_name = NULL;
	c->http.access_log = NULL;
}

/*
 * metrics.c - the process-wide counters behind /metrics, and their
 * Prometheus text rendering (exposition format 0.0.4).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "gh.h"
#include "metrics.h"
#include "session.h"
#include "tls.h"

_Static_assert(SESSION_NPHASES <= METRICS_MAX_PHASES, "raise METRICS_MAX_PHASES");

static atomic_uint_fast64_t metrics__accepted[METRICS_NPROTO];
static atomic_int_fast64_t metrics__current[METRICS_NPROTO][METRICS_MAX_PHASES];
static atomic_uint_fast64_t metrics__logins[METRICS_NPROTO][METRICS_NLOGIN];
static atomic_uint_fast64_t metrics__bytes[2]; /* 0: to the backend, 1: to the client */
static atomic_uint_fast64_t metrics__tls[3];   /* ok, failed, resumed */
static atomic_uint_fast64_t metrics__errors[METRICS_NERRORS];
static atomic_uint_fast64_t metrics__http[METRICS_HTTP_CLASSES];
static atomic_uint_fast64_t metrics__max_connections;
/* The certificates of the configuration in use; set by metrics_conf. */
static pthread_mutex_t metrics__certs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metrics_cert metrics__certs[METRICS_MAX_CERTS];
static int metrics__ncerts;

static const char *const metrics__proto_names[] = { "imap", "pop3", "http", "tcp" };
static const char *const metrics__login_names[] = { "ok", "fail", "tempfail", "throttled" };
static const char *const metrics__error_names[] = {
	[METRICS_ERR_BACKEND_CONNECT] = "backend_connect",
	[METRICS_ERR_BACKEND_TLS] = "backend_tls",
	[METRICS_ERR_TIMEOUT_PREAUTH] = "timeout_preauth",
	[METRICS_ERR_TIMEOUT_BACKEND] = "timeout_backend",
	[METRICS_ERR_TIMEOUT_IDLE] = "timeout_idle",
	[METRICS_ERR_THROTTLED] = "throttled",
};
GH_NAMES_CHECK(metrics__proto_names, METRICS_NPROTO);
GH_NAMES_CHECK(metrics__login_names, METRICS_NLOGIN);
GH_NAMES_CHECK(metrics__error_names, METRICS_NERRORS);
_Static_assert(METRICS_NPROTO == CONF_PROTO_COUNT, "one metrics row per enum conf_proto value");

#define RELAXED memory_order_relaxed

static bool metrics__proto_ok(int proto)
{
	return proto >= 0 && proto < METRICS_NPROTO;
}

void metrics_accepted(int proto)
{
	if (metrics__proto_ok(proto))
		atomic_fetch_add_explicit(&metrics__accepted[proto], 1, RELAXED);
}

void metrics_phase(int proto, int from, int to)
{
	if (!metrics__proto_ok(proto) || from == to)
		return;
	if (from >= 0 && from < METRICS_MAX_PHASES)
		atomic_fetch_sub_explicit(&metrics__current[proto][from], 1, RELAXED);
	if (to >= 0 && to < METRICS_MAX_PHASES)
		atomic_fetch_add_explicit(&metrics__current[proto][to], 1, RELAXED);
}

void metrics_login(int proto, const char *result)
{
	if (!metrics__proto_ok(proto) || result == NULL)
		return;
	for (int i = 0; i < METRICS_NLOGIN; i++) {
		if (strcmp(result, metrics__login_names[i]) == 0) {
			atomic_fetch_add_explicit(&metrics__logins[proto][i], 1, RELAXED);
			return;
		}
	}
}

void metrics_relayed(bool to_backend, size_t n)
{
	atomic_fetch_add_explicit(&metrics__bytes[to_backend ? 0 : 1], n, RELAXED);
}

void metrics_tls_handshake(bool ok, bool resumed)
{
	atomic_fetch_add_explicit(&metrics__tls[ok ? 0 : 1], 1, RELAXED);
	if (ok && resumed)
		atomic_fetch_add_explicit(&metrics__tls[2], 1, RELAXED);
}

void metrics_error(enum metrics_error kind)
{
	if ((int)kind >= 0 && kind < METRICS_NERRORS)
		atomic_fetch_add_explicit(&metrics__errors[kind], 1, RELAXED);
}

void metrics_http_response(int status)
{
	int cls = status / 100 - 1;

	if (cls >= 0 && cls < METRICS_HTTP_CLASSES)
		atomic_fetch_add_explicit(&metrics__http[cls], 1, RELAXED);
}

void metrics_conf(const struct conf *c)
{
	int n = 0;
	const struct tls_cert_expiry *e = tls_server_certs(c ? c->tls_server : NULL, &n);

	atomic_store_explicit(&metrics__max_connections, c ? (uint64_t)c->limits.max_connections : 0,
			      RELAXED);
	pthread_mutex_lock(&metrics__certs_lock);
	metrics__ncerts = 0;
	for (int i = 0; i < n && metrics__ncerts < METRICS_MAX_CERTS; i++) {
		struct metrics_cert *mc = &metrics__certs[metrics__ncerts++];
		snprintf(mc->name, sizeof(mc->name), "%s", e[i].name);
		mc->kind = e[i].kind;
		mc->not_after = e[i].not_after;
	}
	pthread_mutex_unlock(&metrics__certs_lock);
}

void metrics_snapshot(struct metrics_snapshot *out)
{
	memset(out, 0, sizeof(*out));
	for (int p = 0; p < METRICS_NPROTO; p++) {
		out->accepted[p] = atomic_load_explicit(&metrics__accepted[p], RELAXED);
		for (int ph = 0; ph < METRICS_MAX_PHASES; ph++)
			out->current[p][ph] = atomic_load_explicit(&metrics__current[p][ph], RELAXED);
		for (int r = 0; r < METRICS_NLOGIN; r++)
			out->logins[p][r] = atomic_load_explicit(&metrics__logins[p][r], RELAXED);
	}
	out->bytes_c2b = atomic_load_explicit(&metrics__bytes[0], RELAXED);
	out->bytes_b2c = atomic_load_explicit(&metrics__bytes[1], RELAXED);
	out->tls_ok = atomic_load_explicit(&metrics__tls[0], RELAXED);
	out->tls_failed = atomic_load_explicit(&metrics__tls[1], RELAXED);
	out->tls_resumed = atomic_load_explicit(&metrics__tls[2], RELAXED);
	for (int e = 0; e < METRICS_NERRORS; e++)
		out->errors[e] = atomic_load_explicit(&metrics__errors[e], RELAXED);
	for (int k = 0; k < METRICS_HTTP_CLASSES; k++)
		out->http_responses[k] = atomic_load_explicit(&metrics__http[k], RELAXED);
	route_stats(&out->route);
	out->max_connections = atomic_load_explicit(&metrics__max_connections, RELAXED);
	pthread_mutex_lock(&metrics__certs_lock);
	memcpy(out->certs, metrics__certs, sizeof(out->certs[0]) * (size_t)metrics__ncerts);
	out->ncerts = metrics__ncerts;
	pthread_mutex_unlock(&metrics__certs_lock);
	out->phase_names = session_phase_names;
	out->nphases = SESSION_NPHASES;
	out->version = GATEHOUSE_VERSION;
}

/* ---- rendering ---- */

/* An append-only text buffer that keeps counting past its capacity. */
struct metrics_out {
	char *buf;
	size_t cap;
	size_t len;
};

__attribute__((format(printf, 2, 3)))
static void metrics__put(struct metrics_out *o, const char *fmt, ...)
{
	va_list ap;
	size_t room = o->len < o->cap ? o->cap - o->len : 0;

	va_start(ap, fmt);
	int n = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len += (size_t)n;
}

static void metrics__family(struct metrics_out *o, const char *name, const char *type,
			    const char *help)
{
	metrics__put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values are lower case ("relay"), the log's phase names upper case. */
static void metrics__lower(char *dst, size_t cap, const char *src)
{
	size_t i = 0;

	for (; src[i] != '\0' && i + 1 < cap; i++)
		dst[i] = (src[i] >= 'A' && src[i] <= 'Z') ? (char)(src[i] - 'A' + 'a') : src[i];
	dst[i] = '\0';
}

/* A label value, with \\, \" and newline escaped as the format requires. */
static void metrics__label(struct metrics_out *o, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			metrics__put(o, "\\%c", *v);
		else if (*v == '\n')
			metrics__put(o, "\\n");
		else
			metrics__put(o, "%c", *v);
	}
}

static void metrics__u64(struct metrics_out *o, const char *name, const char *labels, uint64_t v)
{
	metrics__put(o, "%s%s %" PRIu64 "\n", name, labels, v);
}

static void metrics__lookup_histogram(struct metrics_out *o, const struct route_stats *r)
{
	const char *name = "gatehouse_lookup_duration_seconds";
	uint64_t cum = 0;

	metrics__family(o, name, "histogram", "Latency of answered lookup service requests.");
	for (int b = 0; b < ROUTE_STATS_BUCKETS; b++) {
		cum += r->lookup_ms_buckets[b];
		unsigned ms = route_stats_bucket_ms[b];
		metrics__put(o, "%s_bucket{le=\"%u.%03u\"} %" PRIu64 "\n", name, ms / 1000, ms % 1000,
			     cum);
	}
	cum += r->lookup_ms_buckets[ROUTE_STATS_BUCKETS];
	metrics__put(o, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
	metrics__put(o, "%s_sum %" PRIu64 ".%03u\n", name, r->lookup_ms_sum / 1000,
		     (unsigned)(r->lookup_ms_sum % 1000));
	/* _count equals the +Inf bucket, as Prometheus expects. */
	metrics__put(o, "%s_count %" PRIu64 "\n", name, cum);
}

size_t metrics_render(const struct metrics_snapshot *m, char *buf, size_t cap)
{
	struct metrics_out o = { buf, cap, 0 };
	char l[160];

	if (cap > 0)
		buf[0] = '\0';
	metrics__family(&o, "gatehouse_up", "gauge", "1 while gatehouse is running.");
	metrics__put(&o, "gatehouse_up 1\n");
	metrics__family(&o, "gatehouse_build_info", "gauge", "Build information; the value is 1.");
	metrics__put(&o, "gatehouse_build_info{version=\"%s\"} 1\n", m->version ? m->version : "");

	metrics__family(&o, "gatehouse_connections_accepted_total", "counter",
			"Client connections accepted, by protocol.");
	for (int p = 0; p < METRICS_NPROTO; p++) {
		snprintf(l, sizeof(l), "{protocol=\"%s\"}", metrics__proto_names[p]);
		metrics__u64(&o, "gatehouse_connections_accepted_total", l, m->accepted[p]);
	}
	metrics__family(&o, "gatehouse_connections", "gauge",
			"Client connections open now, by protocol and session phase.");
	for (int p = 0; p < METRICS_NPROTO; p++) {
		for (int ph = 0; ph < m->nphases && ph < METRICS_MAX_PHASES; ph++) {
			int64_t v = m->current[p][ph];
			char phase[32];
			metrics__lower(phase, sizeof(phase), m->phase_names[ph]);
			metrics__put(&o, "gatehouse_connections{protocol=\"%s\",phase=\"%s\"} %" PRId64 "\n",
				     metrics__proto_names[p], phase, v < 0 ? 0 : v);
		}
	}
	metrics__family(&o, "gatehouse_max_connections", "gauge",
			"limits.max_connections: the cap on concurrent client connections, 0 = none.");
	metrics__u64(&o, "gatehouse_max_connections", "", m->max_connections);
	metrics__family(&o, "gatehouse_logins_total", "counter",
			"Login attempts, by protocol and result (as in the audit log).");
	for (int p = 0; p < METRICS_NPROTO; p++) {
		for (int r = 0; r < METRICS_NLOGIN; r++) {
			snprintf(l, sizeof(l), "{protocol=\"%s\",result=\"%s\"}", metrics__proto_names[p],
				 metrics__login_names[r]);
			metrics__u64(&o, "gatehouse_logins_total", l, m->logins[p][r]);
		}
	}
	metrics__family(&o, "gatehouse_relay_bytes_total", "counter",
			"Bytes relayed after login, by direction.");
	metrics__u64(&o, "gatehouse_relay_bytes_total", "{direction=\"client_to_backend\"}", m->bytes_c2b);
	metrics__u64(&o, "gatehouse_relay_bytes_total", "{direction=\"backend_to_client\"}", m->bytes_b2c);
	metrics__family(&o, "gatehouse_tls_handshakes_total", "counter",
			"Client TLS handshakes, by result.");
	metrics__u64(&o, "gatehouse_tls_handshakes_total", "{result=\"ok\"}", m->tls_ok);
	metrics__u64(&o, "gatehouse_tls_handshakes_total", "{result=\"failed\"}", m->tls_failed);
	metrics__family(&o, "gatehouse_tls_resumptions_total", "counter",
			"Client TLS handshakes that resumed a session.");
	metrics__u64(&o, "gatehouse_tls_resumptions_total", "", m->tls_resumed);
	metrics__family(&o, "gatehouse_tls_certificate_expiry_seconds", "gauge",
			"notAfter of each loaded certificate, as a Unix time.");
	for (int i = 0; i < m->ncerts && i < METRICS_MAX_CERTS; i++) {
		metrics__put(&o, "gatehouse_tls_certificate_expiry_seconds{name=\"");
		metrics__label(&o, m->certs[i].name);
		metrics__put(&o, "\",kind=\"%s\"} %" PRId64 "\n",
			     m->certs[i].kind ? m->certs[i].kind : "other", m->certs[i].not_after);
	}
	metrics__family(&o, "gatehouse_errors_total", "counter", "Errors, by kind.");
	for (int e = 0; e < METRICS_NERRORS; e++) {
		snprintf(l, sizeof(l), "{kind=\"%s\"}", metrics__error_names[e]);
		metrics__u64(&o, "gatehouse_errors_total", l, m->errors[e]);
	}
	metrics__family(&o, "gatehouse_http_responses_total", "counter",
			"HTTP responses sent to clients, by status class.");
	for (int k = 0; k < METRICS_HTTP_CLASSES; k++) {
		snprintf(l, sizeof(l), "{class=\"%dxx\"}", k + 1);
		metrics__u64(&o, "gatehouse_http_responses_total", l, m->http_responses[k]);
	}

	const struct route_stats *r = &m->route;
	metrics__family(&o, "gatehouse_route_l1_total", "counter",
			"In-process route cache look-ups, by result.");
	metrics__u64(&o, "gatehouse_route_l1_total", "{result=\"hit\"}", r->l1_hits);
	metrics__u64(&o, "gatehouse_route_l1_total", "{result=\"miss\"}", r->l1_misses);
	metrics__family(&o, "gatehouse_route_memcached_total", "counter",
			"memcached route look-ups by result; error counts failed operations.");
	metrics__u64(&o, "gatehouse_route_memcached_total", "{result=\"hit\"}", r->mc_hits);
	metrics__u64(&o, "gatehouse_route_memcached_total", "{result=\"miss\"}", r->mc_misses);
	metrics__u64(&o, "gatehouse_route_memcached_total", "{result=\"error\"}", r->mc_errors);
	metrics__family(&o, "gatehouse_lookups_total", "counter",
			"Requests to the lookup service started.");
	metrics__u64(&o, "gatehouse_lookups_total", "", r->lookups);
	metrics__family(&o, "gatehouse_lookup_failures_total", "counter",
			"Lookup service requests that got no usable answer.");
	metrics__u64(&o, "gatehouse_lookup_failures_total", "", r->lookup_failures);
	metrics__family(&o, "gatehouse_route_shared_total", "counter",
			"Route resolutions that joined another one's lookup.");
	metrics__u64(&o, "gatehouse_route_shared_total", "", r->shared);
	metrics__family(&o, "gatehouse_route_invalidations_total", "counter",
			"Routes forgotten after a backend refused the connection or the login.");
	metrics__u64(&o, "gatehouse_route_invalidations_total", "", r->invalidations);
	metrics__lookup_histogram(&o, r);
	return o.len;
}

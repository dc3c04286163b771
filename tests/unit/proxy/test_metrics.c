/*
 * Tests for proxy/metrics.c (the exposition text for known counter values,
 * histogram cumulativeness, the counters themselves), proxy/status.c's
 * request handling (whole, one byte at a time, split at every offset) and
 * core/conf_status.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "conf.h"
#include "metrics.h"
#include "status.h"

static const char *const mt_phases[] = { "PREAUTH", "RELAY" };

static void mt_known(struct metrics_snapshot *m)
{
	memset(m, 0, sizeof(*m));
	m->phase_names = mt_phases;
	m->nphases = 2;
	m->version = "9.9.9";
	m->accepted[0] = 12;
	m->accepted[1] = 3;
	m->current[0][0] = 2;
	m->current[0][1] = 5;
	m->current[1][1] = 1;
	m->logins[0][METRICS_LOGIN_OK] = 7;
	m->logins[0][METRICS_LOGIN_FAIL] = 2;
	m->logins[1][METRICS_LOGIN_TEMPFAIL] = 1;
	m->bytes_c2b = 1000;
	m->bytes_b2c = 123456789012ULL;
	m->tls_ok = 4;
	m->tls_failed = 1;
	m->tls_resumed = 2;
	m->errors[METRICS_ERR_BACKEND_CONNECT] = 3;
	m->errors[METRICS_ERR_TIMEOUT_IDLE] = 8;
	m->route.l1_hits = 10;
	m->route.l1_misses = 5;
	m->route.mc_hits = 4;
	m->route.mc_misses = 1;
	m->route.mc_errors = 6;
	m->route.lookups = 9;
	m->route.lookup_failures = 1;
	/* bucket ms: 1, 5, 10, 50, 100, 500, 1000, 5000, then more */
	m->route.lookup_ms_buckets[0] = 1;
	m->route.lookup_ms_buckets[2] = 3;
	m->route.lookup_ms_buckets[7] = 2;
	m->route.lookup_ms_buckets[8] = 1;
	m->route.lookup_ms_count = 7;
	m->route.lookup_ms_sum = 12345;
}

static char *mt_render(const struct metrics_snapshot *m)
{
	size_t need = metrics_render(m, NULL, 0);
	char *buf = malloc(need + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(metrics_render(m, buf, need + 1), need);
	cr_assert_eq(strlen(buf), need);
	return buf;
}

static void mt_has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *p = text;

	while ((p = strstr(p, line)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return;
		p++;
	}
	cr_assert_fail("line not found: %s\n--- text:\n%s", line, text);
}

Test(metrics, known_values_exact_lines)
{
	struct metrics_snapshot m;

	mt_known(&m);
	char *t = mt_render(&m);
	static const char *const lines[] = {
		"# HELP gatehouse_up 1 while gatehouse is running.",
		"# TYPE gatehouse_up gauge",
		"gatehouse_up 1",
		"gatehouse_build_info{version=\"9.9.9\"} 1",
		"# TYPE gatehouse_connections_accepted_total counter",
		"gatehouse_connections_accepted_total{protocol=\"imap\"} 12",
		"gatehouse_connections_accepted_total{protocol=\"pop3\"} 3",
		"# TYPE gatehouse_connections gauge",
		"gatehouse_connections{protocol=\"imap\",phase=\"preauth\"} 2",
		"gatehouse_connections{protocol=\"imap\",phase=\"relay\"} 5",
		"gatehouse_connections{protocol=\"pop3\",phase=\"preauth\"} 0",
		"gatehouse_connections{protocol=\"pop3\",phase=\"relay\"} 1",
		"gatehouse_logins_total{protocol=\"imap\",result=\"ok\"} 7",
		"gatehouse_logins_total{protocol=\"imap\",result=\"fail\"} 2",
		"gatehouse_logins_total{protocol=\"imap\",result=\"tempfail\"} 0",
		"gatehouse_logins_total{protocol=\"pop3\",result=\"tempfail\"} 1",
		"gatehouse_relay_bytes_total{direction=\"client_to_backend\"} 1000",
		"gatehouse_relay_bytes_total{direction=\"backend_to_client\"} 123456789012",
		"gatehouse_tls_handshakes_total{result=\"ok\"} 4",
		"gatehouse_tls_handshakes_total{result=\"failed\"} 1",
		"gatehouse_tls_resumptions_total 2",
		"gatehouse_errors_total{kind=\"backend_connect\"} 3",
		"gatehouse_errors_total{kind=\"backend_tls\"} 0",
		"gatehouse_errors_total{kind=\"timeout_idle\"} 8",
		"gatehouse_route_l1_total{result=\"hit\"} 10",
		"gatehouse_route_l1_total{result=\"miss\"} 5",
		"gatehouse_route_memcached_total{result=\"hit\"} 4",
		"gatehouse_route_memcached_total{result=\"miss\"} 1",
		"gatehouse_route_memcached_total{result=\"error\"} 6",
		"gatehouse_lookups_total 9",
		"gatehouse_lookup_failures_total 1",
		"# TYPE gatehouse_lookup_duration_seconds histogram",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		mt_has_line(t, lines[i]);
	/* No phase beyond nphases, and the text ends with a newline. */
	cr_assert_null(strstr(t, "phase=\"closing\""));
	cr_assert_eq(t[strlen(t) - 1], '\n');
	free(t);
}

Test(metrics, histogram_is_cumulative)
{
	struct metrics_snapshot m;

	mt_known(&m);
	char *t = mt_render(&m);
	const char *h = strstr(t, "gatehouse_lookup_duration_seconds_bucket");
	cr_assert_not_null(h);
	cr_assert_str_eq(h,
		"gatehouse_lookup_duration_seconds_bucket{le=\"0.001\"} 1\n"
		"gatehouse_lookup_duration_seconds_bucket{le=\"0.005\"} 1\n"
		"gatehouse_lookup_duration_seconds_bucket{le=\"0.010\"} 4\n"
		"gatehouse_lookup_duration_seconds_bucket{le=\"0.050\"} 4\n"
		"gatehouse_lookup_duration_seconds_bucket{le=\"0.100\"} 4\n"
		"gatehouse_lookup_duration_seconds_bucket{le=\"0.500\"} 4\n"
		"gatehouse_lookup_duration_seconds_bucket{le=\"1.000\"} 4\n"
		"gatehouse_lookup_duration_seconds_bucket{le=\"5.000\"} 6\n"
		"gatehouse_lookup_duration_seconds_bucket{le=\"+Inf\"} 7\n"
		"gatehouse_lookup_duration_seconds_sum 12.345\n"
		"gatehouse_lookup_duration_seconds_count 7\n");
	free(t);
}

Test(metrics, every_family_has_help_and_type_once)
{
	struct metrics_snapshot m;

	mt_known(&m);
	char *t = mt_render(&m);
	int helps = 0, types = 0;
	for (char *l = strtok(t, "\n"); l != NULL; l = strtok(NULL, "\n")) {
		if (strncmp(l, "# HELP ", 7) == 0)
			helps++;
		else if (strncmp(l, "# TYPE ", 7) == 0)
			types++;
		else
			cr_assert_neq(l[0], '#', "stray comment %s", l);
	}
	cr_assert_eq(helps, types);
	cr_assert_eq(helps, 19); /* 16 + http_responses, max_connections, tls_certificate_expiry */
	free(t);
}

Test(metrics, truncated_render_reports_full_length)
{
	struct metrics_snapshot m;
	char small[64];

	mt_known(&m);
	size_t need = metrics_render(&m, NULL, 0);
	cr_assert_eq(metrics_render(&m, small, sizeof(small)), need);
	cr_assert_eq(strlen(small), sizeof(small) - 1);
}

Test(metrics, counters_and_gauge_move)
{
	struct metrics_snapshot a, b;

	metrics_snapshot(&a);
	metrics_accepted(CONF_PROTO_POP3);
	metrics_phase(CONF_PROTO_POP3, -1, 0);
	metrics_phase(CONF_PROTO_POP3, 0, 6);
	metrics_login(CONF_PROTO_IMAP, "fail");
	metrics_login(CONF_PROTO_IMAP, "bogus");
	metrics_login(7, "ok");
	metrics_relayed(true, 100);
	metrics_relayed(false, 50);
	metrics_tls_handshake(true, true);
	metrics_tls_handshake(false, true);
	metrics_error(METRICS_ERR_TIMEOUT_PREAUTH);
	metrics_snapshot(&b);
	cr_assert_eq(b.accepted[1] - a.accepted[1], 1);
	cr_assert_eq(b.current[1][0] - a.current[1][0], 0);
	cr_assert_eq(b.current[1][6] - a.current[1][6], 1);
	cr_assert_eq(b.logins[0][METRICS_LOGIN_FAIL] - a.logins[0][METRICS_LOGIN_FAIL], 1);
	cr_assert_eq(b.logins[0][METRICS_LOGIN_OK] - a.logins[0][METRICS_LOGIN_OK], 0);
	cr_assert_eq(b.bytes_c2b - a.bytes_c2b, 100);
	cr_assert_eq(b.bytes_b2c - a.bytes_b2c, 50);
	cr_assert_eq(b.tls_ok - a.tls_ok, 1);
	cr_assert_eq(b.tls_failed - a.tls_failed, 1);
	cr_assert_eq(b.tls_resumed - a.tls_resumed, 1);
	cr_assert_eq(b.errors[METRICS_ERR_TIMEOUT_PREAUTH] - a.errors[METRICS_ERR_TIMEOUT_PREAUTH], 1);
	metrics_phase(CONF_PROTO_POP3, 6, -1);
}

/* ---- status_handle ---- */

#define ST_CAP (256 * 1024)

/* The response to req fed whole; the same bytes fed one at a time and split
   at every offset must give no answer before the end and the same answer. */
static char *st_answer(const char *req, bool draining)
{
	size_t n = strlen(req);
	char *out = malloc(ST_CAP), *again = malloc(ST_CAP);

	cr_assert_not_null(out);
	cr_assert_not_null(again);
	size_t len = status_handle(req, n, draining, out, ST_CAP);
	cr_assert_gt(len, 0, "no answer to %s", req);
	out[len] = '\0';
	for (size_t k = 0; k < n; k++) {
		size_t l = status_handle(req, k, draining, again, ST_CAP);
		if (l > 0) {
			/* An answer before the last byte is fine only for a bad request. */
			again[l] = '\0';
			cr_assert(strncmp(again, "HTTP/1.1 400", 12) == 0 || strncmp(out, again, 12) == 0,
				  "prefix of %zu bytes answered %s", k, again);
		}
	}
	free(again);
	return out;
}

Test(status, health_ok_and_draining)
{
	char *r = st_answer("GET /health HTTP/1.1\r\nHost: x\r\n\r\n", false);
	cr_assert_str_eq(r, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
			    "Content-Length: 3\r\nConnection: close\r\n\r\nok\n");
	free(r);
	r = st_answer("GET /health HTTP/1.0\r\n\r\n", true);
	cr_assert_str_eq(r, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; "
			    "charset=utf-8\r\nContent-Length: 9\r\nConnection: close\r\n\r\ndraining\n");
	free(r);
}

Test(status, incomplete_needs_more)
{
	char out[512];
	const char *req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

	for (size_t k = 0; k < strlen(req); k++)
		cr_assert_eq(status_handle(req, k, false, out, sizeof(out)), 0, "answered at %zu", k);
}

Test(status, metrics_content_type_and_body)
{
	char *r = st_answer("GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", false);
	cr_assert(strncmp(r, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4", 56) == 0, "%s", r);
	cr_assert_not_null(strstr(r, "\r\n\r\n# HELP gatehouse_up "));
	cr_assert_not_null(strstr(r, "\ngatehouse_up 1\n"));
	size_t clen = strtoul(strstr(r, "Content-Length: ") + 16, NULL, 10);
	cr_assert_eq(strlen(strstr(r, "\r\n\r\n") + 4), clen);
	free(r);
}

Test(status, errors)
{
	char *r = st_answer("GET /nope HTTP/1.1\r\n\r\n", false);
	cr_assert(strncmp(r, "HTTP/1.1 404 Not Found\r\n", 24) == 0, "%s", r);
	free(r);
	r = st_answer("POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\n", false);
	cr_assert(strncmp(r, "HTTP/1.1 405 Method Not Allowed\r\n", 33) == 0, "%s", r);
	free(r);
	r = st_answer("HEAD /health HTTP/1.1\r\n\r\n", false);
	cr_assert(strncmp(r, "HTTP/1.1 405 ", 13) == 0, "%s", r);
	free(r);
	r = st_answer("GET /health HTTP/9.9\r\n\r\n", false);
	cr_assert(strncmp(r, "HTTP/1.1 400 Bad Request\r\n", 26) == 0, "%s", r);
	free(r);
	r = st_answer("\x01\x02 nonsense\r\n\r\n", false);
	cr_assert(strncmp(r, "HTTP/1.1 400 ", 13) == 0, "%s", r);
	free(r);
}

Test(status, oversized_request)
{
	size_t n = STATUS_MAX_REQUEST + 10;
	char *req = malloc(n + 1), out[512];

	cr_assert_not_null(req);
	memcpy(req, "GET /health HTTP/1.1\r\nX-Pad: ", 29);
	memset(req + 29, 'a', n - 29);
	req[n] = '\0';
	cr_assert_eq(status_handle(req, STATUS_MAX_REQUEST - 1, false, out, sizeof(out)), 0);
	size_t l = status_handle(req, STATUS_MAX_REQUEST, false, out, sizeof(out));
	cr_assert_gt(l, 0);
	cr_assert(strncmp(out, "HTTP/1.1 431 ", 13) == 0);
	free(req);
}

Test(status, small_output_gives_500)
{
	char out[200];
	size_t l = status_handle("GET /metrics HTTP/1.1\r\n\r\n", 25, false, out, sizeof(out));

	cr_assert_gt(l, 0);
	cr_assert(strncmp(out, "HTTP/1.1 500 ", 13) == 0);
}

/* ---- conf_status.c ---- */

static struct conf *mt_load(const char *text, char *err, size_t cap)
{
	char dir[] = "/tmp/gh-conf-status-XXXXXX", file[64];

	cr_assert_not_null(mkdtemp(dir));
	snprintf(file, sizeof(file), "%s/t.conf", dir);
	FILE *f = fopen(file, "w");
	cr_assert_not_null(f);
	fprintf(f, "listen = ( { address = \"127.0.0.1:1143\"; protocol = \"imap\"; } );\n"
		   "routes = ( { match = \"*\"; server = \"127.0.0.1:7143\"; } );\n%s\n", text);
	fclose(f);
	struct conf *c = conf_load(file, err, cap);
	unlink(file);
	rmdir(dir);
	return c;
}

Test(conf_status, default_off_and_address)
{
	char err[512];
	struct conf *c = mt_load("", err, sizeof(err));

	cr_assert_not_null(c, "%s", err);
	cr_assert_null(c->status.address);
	conf_unref(c);
	c = mt_load("status = { address = \"127.0.0.1:9113\"; };", err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert_str_eq(c->status.address, "127.0.0.1:9113");
	cr_assert_gt(c->status.addrlen, 0);
	conf_unref(c);
}

Test(conf_status, bad_address_and_unknown_setting)
{
	char err[512];

	cr_assert_null(mt_load("status = { address = \"nowhere\"; };", err, sizeof(err)));
	cr_assert_not_null(strstr(err, "status.address"), "%s", err);
	cr_assert_null(mt_load("status = { port = 9113; };", err, sizeof(err)));
}

Test(metrics, certificate_expiry_and_max_connections)
{
	struct metrics_snapshot m;

	mt_known(&m);
	m.max_connections = 5000;
	m.ncerts = 3;
	snprintf(m.certs[0].name, sizeof(m.certs[0].name), "default");
	m.certs[0].kind = "rsa";
	m.certs[0].not_after = 1767225600; /* 2026-01-01T00:00:00Z */
	snprintf(m.certs[1].name, sizeof(m.certs[1].name), "*.example.org");
	m.certs[1].kind = "ecdsa";
	m.certs[1].not_after = 4102444800;
	snprintf(m.certs[2].name, sizeof(m.certs[2].name), "we\"ird\\");
	m.certs[2].kind = "other";
	m.certs[2].not_after = 0;
	char *t = mt_render(&m);
	mt_has_line(t, "# TYPE gatehouse_tls_certificate_expiry_seconds gauge");
	mt_has_line(t, "gatehouse_tls_certificate_expiry_seconds{name=\"default\",kind=\"rsa\"} 1767225600");
	mt_has_line(t, "gatehouse_tls_certificate_expiry_seconds{name=\"*.example.org\",kind=\"ecdsa\"} 4102444800");
	mt_has_line(t, "gatehouse_tls_certificate_expiry_seconds{name=\"we\\\"ird\\\\\",kind=\"other\"} 0");
	mt_has_line(t, "# TYPE gatehouse_max_connections gauge");
	mt_has_line(t, "gatehouse_max_connections 5000");
	free(t);

	/* metrics_conf with no configuration: no certificate, no cap */
	metrics_conf(NULL);
	metrics_snapshot(&m);
	cr_expect_eq(m.ncerts, 0);
	cr_expect_eq(m.max_connections, 0);
}

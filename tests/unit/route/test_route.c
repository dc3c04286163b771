/*
 * test_route.c - the asynchronous resolver and lookup client on a real
 * libuv loop, against lookup servers that run in the same loop: failover on
 * refused connections and on silence, hold-down, cancellation. Every test
 * counts callbacks and checks that the loop closes with no live handle.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <uv.h>

#include "conf.h"
#include "route.h"

enum fake_mode { FAKE_ANSWER, FAKE_SILENT };

/* A lookup server inside the test's loop. */
struct fake {
	uv_tcp_t server;
	enum fake_mode mode;
	const char *answer;
	int port;
	int accepted;
	char last_request[2048];
	size_t last_len;
	uv_tcp_t *held[8];   /* silent connections, closed at the end */
	int nheld;
};

struct fake_conn {
	uv_tcp_t tcp;
	struct fake *f;
	uv_write_t w;
	char buf[2048];
	size_t len;
};

static void fake_conn_closed(uv_handle_t *h)
{
	free(h->data);
}

static void fake_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
	struct fake_conn *c = h->data;
	b->base = c->buf + c->len;
	b->len = sizeof(c->buf) - c->len - 1;
}

static void fake_written(uv_write_t *w, int status)
{
	struct fake_conn *c = w->data;
	uv_close((uv_handle_t *)&c->tcp, fake_conn_closed);
}

static void fake_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct fake_conn *c = s->data;

	if (n < 0) {
		uv_close((uv_handle_t *)&c->tcp, fake_conn_closed);
		return;
	}
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	if (strstr(c->buf, "\r\n\r\n") == NULL)
		return;
	memcpy(c->f->last_request, c->buf, c->len + 1);
	c->f->last_len = c->len;
	uv_read_stop(s);
	uv_buf_t out = uv_buf_init((char *)c->f->answer, (unsigned)strlen(c->f->answer));
	c->w.data = c;
	uv_write(&c->w, s, &out, 1, fake_written);
}

static void fake_on_conn(uv_stream_t *srv, int status)
{
	struct fake *f = srv->data;
	struct fake_conn *c = calloc(1, sizeof(*c));

	c->f = f;
	uv_tcp_init(srv->loop, &c->tcp);
	c->tcp.data = c;
	cr_assert_eq(uv_accept(srv, (uv_stream_t *)&c->tcp), 0);
	f->accepted++;
	if (f->mode == FAKE_SILENT) {
		f->held[f->nheld++] = &c->tcp;
		return;
	}
	uv_read_start((uv_stream_t *)&c->tcp, fake_alloc, fake_read);
}

static void fake_start(uv_loop_t *loop, struct fake *f, enum fake_mode mode, const char *answer)
{
	struct sockaddr_in a;
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	memset(f, 0, sizeof(*f));
	f->mode = mode;
	f->answer = answer;
	uv_ip4_addr("127.0.0.1", 0, &a);
	uv_tcp_init(loop, &f->server);
	f->server.data = f;
	cr_assert_eq(uv_tcp_bind(&f->server, (const struct sockaddr *)&a, 0), 0);
	cr_assert_eq(uv_listen((uv_stream_t *)&f->server, 16, fake_on_conn), 0);
	uv_tcp_getsockname(&f->server, (struct sockaddr *)&ss, &len);
	f->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void fake_stop(struct fake *f)
{
	for (int i = 0; i < f->nheld; i++)
		uv_close((uv_handle_t *)f->held[i], fake_conn_closed);
	f->nheld = 0;
	uv_close((uv_handle_t *)&f->server, NULL);
}

/* A port nothing listens on: bind a socket, note its port, close it. */
static int closed_port(void)
{
	uv_loop_t l;
	uv_tcp_t t;
	struct sockaddr_in a;
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	uv_loop_init(&l);
	uv_ip4_addr("127.0.0.1", 0, &a);
	uv_tcp_init(&l, &t);
	uv_tcp_bind(&t, (const struct sockaddr *)&a, 0);
	uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &len);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&l, UV_RUN_DEFAULT);
	uv_loop_close(&l);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static struct conf *load(const char *text)
{
	char path[] = "/tmp/gh-route-test-XXXXXX";
	int fd = mkstemp(path);
	char err[512];

	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	struct conf *c = conf_load(path, err, sizeof(err));
	unlink(path);
	cr_assert_not_null(c, "config: %s", err);
	return c;
}

struct result {
	int calls;
	struct route r;
};

static void on_route(struct route_req *req, const struct route *r, void *arg)
{
	struct result *res = arg;
	res->calls++;
	res->r = *r;
}

static const struct route_query QUERY = {
	.login = "alice@example.com",
	.password = "pw-not-sent",
	.protocol = "imap",
	.client_ip = "192.0.2.7",
	.proxy_ip = "127.0.0.1",
	.attempt = 1,
};

static const char OK_ANSWER[] = "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.21\r\n"
				"Auth-Port: 7143\r\nAuth-User: alice@example.com\r\n\r\n";

/* A loop with the resolver's per-loop state, as a worker sets it up. */
static void start_loop(uv_loop_t *loop)
{
	cr_assert_eq(uv_loop_init(loop), 0);
	cr_assert_eq(route_worker_init(loop), 0);
}

static void finish_loop(uv_loop_t *loop)
{
	uv_run(loop, UV_RUN_DEFAULT);
	route_worker_close(loop);
	/* Every handle the resolver opened must be closed by now. */
	cr_assert_eq(uv_loop_close(loop), 0, "the loop still has live handles");
}

static void stop_when_answered(uv_idle_t *h)
{
	struct result *res = h->data;
	if (res->calls > 0)
		uv_close((uv_handle_t *)h, NULL);
}

/* Run until the resolver answered, leaving the fakes up. */
static void run_until_answer(uv_loop_t *loop, struct result *res)
{
	uv_idle_t idle;

	uv_idle_init(loop, &idle);
	idle.data = res;
	uv_idle_start(&idle, stop_when_answered);
	while (res->calls == 0 || !uv_is_closing((uv_handle_t *)&idle))
		uv_run(loop, UV_RUN_ONCE);
	uv_run(loop, UV_RUN_NOWAIT);
}

Test(route, static_route_answers_once_and_deferred)
{
	uv_loop_t loop;
	struct result res = {0};
	struct conf *c = load("routes = ( { match = \"@example.com\"; server = \"127.0.0.1:7143\"; } );\n");

	start_loop(&loop);
	struct route_req *req = route_resolve(&loop, c, &QUERY, on_route, &res);
	cr_assert_not_null(req);
	cr_assert_eq(res.calls, 0, "the answer must come from the loop, not from route_resolve");
	finish_loop(&loop);
	cr_assert_eq(res.calls, 1);
	cr_assert_eq(res.r.result, ROUTE_OK);
	cr_assert_eq(res.r.source, ROUTE_SRC_STATIC);
	cr_assert_str_eq(res.r.host, "127.0.0.1");
	cr_assert_eq(res.r.port, 7143);
	cr_assert_str_eq(res.r.user, "alice@example.com");
	conf_unref(c);
}

Test(route, no_route_and_no_lookup_is_denied)
{
	uv_loop_t loop;
	struct result res = {0};
	struct conf *c = load("routes = ( { match = \"@other.org\"; server = \"127.0.0.1\"; } );\n");

	start_loop(&loop);
	route_resolve(&loop, c, &QUERY, on_route, &res);
	finish_loop(&loop);
	cr_assert_eq(res.calls, 1);
	cr_assert_eq(res.r.result, ROUTE_DENIED);
	conf_unref(c);
}

Test(route, invalid_name_never_reaches_the_lookup)
{
	uv_loop_t loop;
	struct fake f;
	struct result res = {0};
	char text[256];

	start_loop(&loop);
	fake_start(&loop, &f, FAKE_ANSWER, OK_ANSWER);
	snprintf(text, sizeof(text), "lookup = { servers = [\"http://127.0.0.1:%d/\"]; };\n", f.port);
	struct conf *c = load(text);
	struct route_query q = QUERY;
	q.login = "bad\r\nname";
	route_resolve(&loop, c, &q, on_route, &res);
	run_until_answer(&loop, &res);
	cr_assert_eq(res.calls, 1);
	cr_assert_eq(res.r.result, ROUTE_DENIED);
	cr_assert_eq(f.accepted, 0);
	fake_stop(&f);
	finish_loop(&loop);
	conf_unref(c);
}

Test(route, lookup_answer_and_request_headers)
{
	uv_loop_t loop;
	struct fake f;
	struct result res = {0};
	char text[256];

	start_loop(&loop);
	fake_start(&loop, &f, FAKE_ANSWER, OK_ANSWER);
	snprintf(text, sizeof(text),
		 "lookup = { servers = [\"http://127.0.0.1:%d/service/extension/nginx-lookup\"]; };\n",
		 f.port);
	struct conf *c = load(text);
	route_resolve(&loop, c, &QUERY, on_route, &res);
	run_until_answer(&loop, &res);
	cr_assert_eq(res.calls, 1);
	cr_assert_eq(res.r.result, ROUTE_OK);
	cr_assert_eq(res.r.source, ROUTE_SRC_LOOKUP);
	cr_assert_str_eq(res.r.host, "10.0.0.21");
	cr_assert_eq(res.r.port, 7143);
	cr_assert(strstr(f.last_request, "GET /service/extension/nginx-lookup HTTP/1.0\r\n") == f.last_request);
	cr_assert_not_null(strstr(f.last_request, "\r\nAuth-User: alice@example.com\r\n"));
	cr_assert_not_null(strstr(f.last_request, "\r\nAuth-Pass: _password_\r\n"));
	cr_assert_not_null(strstr(f.last_request, "\r\nClient-IP: 192.0.2.7\r\n"));
	cr_assert_null(strstr(f.last_request, "pw-not-sent"), "the password must not be sent by default");
	fake_stop(&f);
	finish_loop(&loop);
	conf_unref(c);
}

Test(route, failover_on_refused_and_on_silence_then_hold_down)
{
	uv_loop_t loop;
	struct fake silent, good;
	struct result res = {0};
	char text[512];
	int dead = closed_port();

	start_loop(&loop);
	fake_start(&loop, &silent, FAKE_SILENT, NULL);
	fake_start(&loop, &good, FAKE_ANSWER, OK_ANSWER);
	snprintf(text, sizeof(text),
		 "cache = { l1_entries = 0; };\n" /* every resolution asks the lookup */
		 /* 1 s: long enough that a loaded (ASan, CI) machine never times out
		    the good server too, which would make every server "down" and
		    probe the silent one again. */
		 "lookup = { timeout = 1.0; retry_interval = 60.0; servers = [\"http://127.0.0.1:%d/\", "
		 "\"http://127.0.0.1:%d/\", \"http://127.0.0.1:%d/\"]; };\n",
		 dead, silent.port, good.port);
	struct conf *c = load(text);

	/* Whatever the round-robin start, the answer comes from the good one. */
	for (int i = 0; i < 3; i++) {
		res.calls = 0;
		route_resolve(&loop, c, &QUERY, on_route, &res);
		run_until_answer(&loop, &res);
		cr_assert_eq(res.calls, 1);
		cr_assert_eq(res.r.result, ROUTE_OK, "attempt %d: %s", i, res.r.reason);
	}
	/* The silent server was tried at most once: then it was held down. */
	cr_assert_leq(silent.accepted, 1);
	cr_assert_eq(good.accepted, 3);
	fake_stop(&silent);
	fake_stop(&good);
	finish_loop(&loop);
	conf_unref(c);
}

Test(route, all_servers_down_is_a_prompt_tempfail)
{
	uv_loop_t loop;
	struct result res = {0};
	char text[256];

	start_loop(&loop);
	snprintf(text, sizeof(text), "lookup = { timeout = 5.0; servers = [\"http://127.0.0.1:%d/\"]; };\n",
		 closed_port());
	struct conf *c = load(text);
	uint64_t t0 = uv_hrtime();
	route_resolve(&loop, c, &QUERY, on_route, &res);
	finish_loop(&loop);
	cr_assert_eq(res.calls, 1);
	cr_assert_eq(res.r.result, ROUTE_TEMPFAIL);
	cr_assert_lt(uv_hrtime() - t0, 2000000000ull, "a refused connection must not wait for the timeout");
	conf_unref(c);
}

Test(route, cancel_means_no_callback_and_nothing_left_open)
{
	uv_loop_t loop;
	struct fake silent;
	struct result res = {0};
	char text[256];

	start_loop(&loop);
	fake_start(&loop, &silent, FAKE_SILENT, NULL);
	snprintf(text, sizeof(text), "lookup = { timeout = 10.0; servers = [\"http://127.0.0.1:%d/\"]; };\n",
		 silent.port);
	struct conf *c = load(text);
	struct route_req *req = route_resolve(&loop, c, &QUERY, on_route, &res);
	while (silent.accepted == 0)
		uv_run(&loop, UV_RUN_ONCE);
	cr_assert_eq(route_cancel(req), &res, "the argument comes back to the caller");
	cr_assert_null(route_cancel(req), "a second cancel hands nothing back");
	fake_stop(&silent);
	finish_loop(&loop);
	cr_assert_eq(res.calls, 0);
	conf_unref(c);
}

Test(route, cancel_before_the_deferred_answer)
{
	uv_loop_t loop;
	struct result res = {0};
	struct conf *c = load("routes = ( { match = \"*\"; server = \"127.0.0.1\"; } );\n");

	start_loop(&loop);
	struct route_req *req = route_resolve(&loop, c, &QUERY, on_route, &res);
	cr_assert_eq(route_cancel(req), &res, "the argument comes back to the caller");
	finish_loop(&loop);
	cr_assert_eq(res.calls, 0);
	conf_unref(c);
}

/* The callback has the argument already: a cancel from inside it is a
   no-op that hands nothing back (else the argument would have two owners). */
struct cancel_inside {
	int calls;
	void *back;
};

static void on_route_cancel_inside(struct route_req *req, const struct route *r, void *arg)
{
	struct cancel_inside *ci = arg;

	(void)r;
	ci->calls++;
	ci->back = route_cancel(req);
}

Test(route, cancel_inside_the_callback_hands_nothing_back)
{
	uv_loop_t loop;
	struct cancel_inside ci = { 0, &ci };
	struct conf *c = load("routes = ( { match = \"*\"; server = \"127.0.0.1\"; } );\n");

	start_loop(&loop);
	route_resolve(&loop, c, &QUERY, on_route_cancel_inside, &ci);
	finish_loop(&loop);
	cr_assert_eq(ci.calls, 1);
	cr_assert_null(ci.back);
	conf_unref(c);
}

/*
 * test_rcache_io.c - the loop's memcached client against a scripted
 * server: pipelined gets answered in order, a foreign value too big to keep
 * read as a miss without losing the connection, a broken answer failing
 * the connection and holding the server down, a silent server bounded by
 * the timeout.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <criterion/criterion.h>
#include <uv.h>

#include "rcache_io.h"
#include "rct_servers.h"

/* A server that reads `expect` get lines, then writes `answer` and waits
   for the client to close. */
struct script {
	int lfd, port, expect;
	const char *answer;
	size_t answer_len;
	pthread_t thread;
};

static void *script_run(void *arg)
{
	struct script *s = arg;
	int fd = accept(s->lfd, NULL, NULL);
	char buf[4096];
	int lines = 0;

	while (fd >= 0 && lines < s->expect) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			lines += buf[i] == '\n';
	}
	for (size_t off = 0; fd >= 0 && off < s->answer_len;) {
		ssize_t n = write(fd, s->answer + off, s->answer_len - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	while (fd >= 0 && read(fd, buf, sizeof(buf)) > 0)
		;
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void script_start(struct script *s, int expect, const char *answer, size_t len)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);

	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(s->lfd >= 0);
	cr_assert_eq(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(s->lfd, 4), 0);
	cr_assert_eq(getsockname(s->lfd, (struct sockaddr *)&sa, &sl), 0);
	s->port = ntohs(sa.sin_port);
	s->expect = expect;
	s->answer = answer;
	s->answer_len = len;
	cr_assert_eq(pthread_create(&s->thread, NULL, script_run, s), 0);
}

static void script_stop(struct script *s)
{
	pthread_join(s->thread, NULL);
	close(s->lfd);
}

struct got {
	int calls;
	enum rcache_mc_rc rc;
	char val[64];
};

static void on_get(void *arg, enum rcache_mc_rc rc, const char *val, size_t len)
{
	struct got *g = arg;

	g->calls++;
	g->rc = rc;
	snprintf(g->val, sizeof(g->val), "%.*s", (int)len, val ? val : "");
}

static struct rcache *runtime(int port)
{
	char text[256];

	snprintf(text, sizeof(text),
		 "cache = { memcached = [ \"127.0.0.1:%d\" ]; timeout = 0.3; retry_interval = 30; };\n",
		 port);
	struct conf *c = rct_load(text);
	struct rcache *rc = rcache_acquire(c);
	conf_unref(c);
	cr_assert_not_null(rc);
	return rc;
}

static void key(struct rcache_key *k, const char *user)
{
	cr_assert(rcache_key_route_user(k, "imap", user, false));
}

Test(rcache_io, big_foreign_value_is_a_miss_and_the_next_answer_arrives)
{
	static char answer[12000];
	int n = snprintf(answer, sizeof(answer), "VALUE route:proto=imap;user=a@x 0 10000\r\n");
	memset(answer + n, 'v', 10000);
	n += 10000;
	n += snprintf(answer + n, sizeof(answer) - (size_t)n,
		      "\r\nEND\r\nVALUE route:proto=imap;user=b@x 0 13\r\n10.0.0.1:7143\r\nEND\r\n");
	struct script s;
	script_start(&s, 2, answer, (size_t)n);
	struct rcache *rc = runtime(s.port);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct rcache_io *io = rcache_io_new(&loop, rc);
	cr_assert_not_null(io);
	struct rcache_key ka, kb;
	struct got a = {0}, b = {0};
	key(&ka, "a@x");
	key(&kb, "b@x");
	cr_assert_eq(rcache_io_get(io, &ka, on_get, &a), 0);
	cr_assert_eq(rcache_io_get(io, &kb, on_get, &b), 0);
	cr_assert_eq(a.calls + b.calls, 0, "never inside the call");
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(a.calls, 1);
	cr_assert_eq(a.rc, RCACHE_MC_MISS);
	cr_assert_eq(b.calls, 1);
	cr_assert_eq(b.rc, RCACHE_MC_OK);
	cr_assert_str_eq(b.val, "10.0.0.1:7143");
	rcache_io_close(io);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&loop), 0);
	script_stop(&s);
	rcache_release(rc);
	rcache_drop_current();
}

Test(rcache_io, broken_answer_fails_and_holds_the_server_down)
{
	static const char answer[] = "BOGUS\r\n";
	struct script s;
	script_start(&s, 1, answer, sizeof(answer) - 1);
	struct rcache *rc = runtime(s.port);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct rcache_io *io = rcache_io_new(&loop, rc);
	struct rcache_key k;
	struct got g = {0};
	key(&k, "a@x");
	cr_assert_eq(rcache_io_get(io, &k, on_get, &g), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(g.calls, 1);
	cr_assert_eq(g.rc, RCACHE_MC_ERROR);
	/* Held down for retry_interval: no request, no I/O. */
	cr_assert_eq(rcache_io_get(io, &k, on_get, &g), -1);
	rcache_io_close(io);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&loop), 0);
	script_stop(&s);
	rcache_release(rc);
	rcache_drop_current();
}

Test(rcache_io, silent_server_costs_the_timeout)
{
	struct script s;
	script_start(&s, 1000, "", 0); /* reads, never answers */
	struct rcache *rc = runtime(s.port);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct rcache_io *io = rcache_io_new(&loop, rc);
	struct rcache_key k;
	struct got g = {0};
	key(&k, "a@x");
	uint64_t t0 = uv_hrtime();
	cr_assert_eq(rcache_io_get(io, &k, on_get, &g), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	uint64_t ms = (uv_hrtime() - t0) / 1000000u;
	cr_assert_eq(g.calls, 1);
	cr_assert_eq(g.rc, RCACHE_MC_ERROR);
	cr_assert(ms >= 250 && ms < 2000, "%llu ms", (unsigned long long)ms);
	rcache_io_close(io);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&loop), 0);
	script_stop(&s);
	rcache_release(rc);
	rcache_drop_current();
}

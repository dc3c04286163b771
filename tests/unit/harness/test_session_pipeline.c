/*
 * test_session_pipeline.c - HTTP exchanges that own their backend
 * connections, through the session harness: pipelined requests each get a
 * connection of their own at once, a later answer waits for the one before
 * it, a timer that fires before any deadline ends nothing, and a request
 * body read after its head goes to the backend intact, followed by the next
 * request on the same client connection.
 */
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <criterion/criterion.h>

#include "gh_harness.h"

static struct gh_env env;
static struct gh_conn c;

static void setup(void)
{
	char err[512];

	cr_assert_eq(gh_env_init(&env, NULL, err, sizeof(err)), 0, "%s", err);
}

static void teardown(void)
{
	if (c.e != NULL)
		gh_conn_close(&c);
	cr_assert_eq(gh_env_fini(&env), 0, "the loop closed with live handles");
}

TestSuite(session_pipeline, .init = setup, .fini = teardown);

#define OUT ((const char *)c.out.p)
#define BSENT ((const char *)c.bsent.p)

/* The backend connection that received needle (-1: none yet). */
static int backend_with(const char *needle)
{
	for (int i = 0; i < c.nbackends && i < GH_MAX_BACKENDS; i++) {
		if (c.b[i].in.p != NULL && strstr((const char *)c.b[i].in.p, needle) != NULL)
			return i;
	}
	return -1;
}

static bool wait_backends(const char *a, const char *b)
{
	for (int i = 0; i < 500; i++) {
		if (backend_with(a) >= 0 && backend_with(b) >= 0)
			return true;
		gh_step(&c);
	}
	return false;
}

static void answer(int i, const char *body)
{
	char resp[256];
	int n = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s",
			 strlen(body), body);

	cr_assert_eq(send(c.b[i].fd, resp, (size_t)n, MSG_NOSIGNAL), n);
}

Test(session_pipeline, later_answer_waits_for_the_one_before)
{
	cr_assert_eq(gh_conn_open(&c, &env, GH_HTTP, GH_PLAIN, 0), 0);
	c.backend_auto = false;
	gh_sends(&c, "GET /1 HTTP/1.1\r\nHost: mail.a.test\r\n\r\n"
		     "GET /2 HTTP/1.1\r\nHost: mail.a.test\r\n\r\n");
	/* Both are with a backend, each on its own connection, before
	   either is answered. */
	cr_assert(wait_backends("GET /1 ", "GET /2 "), "%s", BSENT);
	int b1 = backend_with("GET /1 "), b2 = backend_with("GET /2 ");
	cr_assert_neq(b1, b2);
	/* A timer that fires before any deadline ends nothing. */
	gh_fire_timer(&c);
	answer(b2, "second");
	gh_settle(&c, 50);
	cr_assert_eq(c.out.len, 0, "the second answer went out first: %s", OUT);
	answer(b1, "first");
	cr_assert(gh_wait_out(&c, "second", 500), "%s", OUT);
	const char *p1 = strstr(OUT, "first"), *p2 = strstr(OUT, "second");
	cr_assert(p1 != NULL && p1 < p2, "%s", OUT);
	cr_assert_eq(gh_count(&c.out, "HTTP/1.1 200 OK"), 2, "%s", OUT);
	/* The connection goes on, on a pooled backend connection. */
	c.backend_auto = true;
	gh_sends(&c, "GET /3 HTTP/1.1\r\nHost: mail.a.test\r\n\r\n");
	for (int i = 0; i < 500 && gh_count(&c.out, "HTTP/1.1 200") < 3; i++)
		gh_step(&c);
	cr_assert_eq(gh_count(&c.out, "HTTP/1.1 200"), 3, "%s", OUT);
	cr_assert_eq(gh_conn_close(&c), 0, "session freed, no handle or buffer left");
}

Test(session_pipeline, body_read_after_its_head_then_the_next_request)
{
	enum { N = 200000 };
	char head[128];
	uint8_t *body = malloc(N);

	cr_assert_not_null(body);
	for (size_t i = 0; i < N; i++)
		body[i] = (uint8_t)(i * 7 + i / 251);
	cr_assert_eq(gh_conn_open(&c, &env, GH_HTTP, GH_PLAIN, 0), 0);
	snprintf(head, sizeof(head), "POST /up HTTP/1.1\r\nHost: mail.a.test\r\nContent-Length: %d\r\n\r\n",
		 N);
	gh_sends(&c, head);
	cr_assert(wait_backends("POST /up ", "POST /up "), "%s", BSENT);
	/* The body in pieces, the last one with the next request behind it. */
	for (size_t off = 0; off < N - 1000; off += 20000) {
		size_t n = N - 1000 - off < 20000 ? N - 1000 - off : 20000;
		gh_send(&c, body + off, n, 0);
		gh_settle(&c, 20);
	}
	const char *next = "GET /after HTTP/1.1\r\nHost: mail.a.test\r\n\r\n";
	size_t nl = strlen(next);
	uint8_t *tail = malloc(1000 + nl);
	cr_assert_not_null(tail);
	memcpy(tail, body + N - 1000, 1000);
	memcpy(tail + 1000, next, nl);
	gh_send(&c, tail, 1000 + nl, 0);
	for (int i = 0; i < 1000 && gh_count(&c.out, "HTTP/1.1 200") < 2; i++)
		gh_step(&c);
	cr_assert_eq(gh_count(&c.out, "HTTP/1.1 200"), 2, "%s", OUT);
	const uint8_t *at = memmem(c.bsent.p, c.bsent.len, "\r\n\r\n", 4);
	cr_assert_not_null(at);
	cr_assert(c.bsent.len >= (size_t)(at + 4 - c.bsent.p) + N);
	cr_assert_eq(memcmp(at + 4, body, N), 0, "the body reached the backend intact");
	cr_assert_not_null(memmem(at + 4 + N, c.bsent.len - (size_t)(at + 4 + N - c.bsent.p),
				  "GET /after HTTP/1.1\r\n", 21), "the next request went on");
	free(tail);
	free(body);
	cr_assert_eq(gh_conn_close(&c), 0, "session freed, no handle or buffer left");
}

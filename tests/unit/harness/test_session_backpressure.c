/*
 * test_session_backpressure.c - security review finding 2: a client that
 * pipelines valid pre-login commands and never reads its answers. Each
 * answer takes a pool buffer (16 KiB) and the queue has no bound, so the
 * session's memory grows with what the client sends.
 *
 * FAILED ON main AT 278b31b (before the issue-14 backpressure
 * fix): the *_bounded tests measure megabytes where they allow 64 KiB.
 * After the fix, the session stops reading while its answers wait, and
 * every answer still arrives, in order, once the client reads.
 */
#include <string.h>

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

TestSuite(session_backpressure, .init = setup, .fini = teardown);

#define LIMIT (64 * 1024)

/*
 * Send cmd n times in chunks of 100 commands without reading, stepping
 * between chunks; return the most the session held (queued bytes plus pool
 * buffers out). Then read, and check every answer came.
 */
static size_t pipeline(enum gh_proto proto, const char *cmd, int n, const char *answer)
{
	size_t most = 0, cl = strlen(cmd);
	char *chunk = malloc(cl * 100);

	cr_assert_not_null(chunk);
	for (int i = 0; i < 100; i++)
		memcpy(chunk + (size_t)i * cl, cmd, cl);
	/* A 4 KiB send buffer on the session's end: the kernel takes little. */
	cr_assert_eq(gh_conn_open(&c, &env, proto, GH_PLAIN, 4096), 0);
	gh_out_clear(&c);
	c.reading = false;
	for (int sent = 0; sent < n; sent += 100) {
		gh_send(&c, chunk, cl * 100, 0);
		for (int k = 0; k < 5; k++) {
			gh_step(&c);
			size_t held = gh_client_queued(&c) + gh_pool_bytes(&c);
			if (held > most)
				most = held;
		}
	}
	free(chunk);
	cr_log_info("%s: the session held at most %zu bytes for a client that does not read",
		    proto == GH_IMAP ? "imap" : "pop3", most);
	/* Whatever the session did meanwhile, a reading client gets it all. */
	c.reading = true;
	for (int i = 0; i < 20000 && gh_count(&c.out, answer) < (size_t)n; i++)
		gh_step(&c);
	cr_expect_eq(gh_count(&c.out, answer), (size_t)n, "every command answered once read");
	cr_assert_not_null(gh_session(&c), "still open");
	cr_assert_eq(gh_conn_close(&c), 0);
	return most;
}

Test(session_backpressure, imap_noop_flood_bounded)
{
	size_t most = pipeline(GH_IMAP, "a NOOP\r\n", 4000, "a OK");

	cr_expect_lt(most, LIMIT, "held %zu bytes for 4000 unread NOOP answers", most);
}

Test(session_backpressure, pop3_noop_flood_bounded)
{
	size_t most = pipeline(GH_POP3, "NOOP\r\n", 4000, "+OK");

	cr_expect_lt(most, LIMIT, "held %zu bytes for 4000 unread NOOP answers", most);
}

/* A client that reads as it goes never makes the session hold much: the
   bound is about unread answers, not about pipelining. */
Test(session_backpressure, imap_reading_client_holds_little)
{
	cr_assert_eq(gh_conn_open(&c, &env, GH_IMAP, GH_PLAIN, 4096), 0);
	gh_out_clear(&c);
	size_t most = 0;
	for (int i = 0; i < 200; i++) {
		gh_sends(&c, "a NOOP\r\nb NOOP\r\n");
		gh_step(&c);
		size_t held = gh_client_queued(&c) + gh_pool_bytes(&c);
		if (held > most)
			most = held;
	}
	gh_settle(&c, 100);
	cr_assert_eq(gh_count(&c.out, "b OK"), 200);
	cr_assert_lt(most, LIMIT, "held %zu", most);
	cr_assert_eq(gh_conn_close(&c), 0);
}

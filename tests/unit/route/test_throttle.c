/*
 * test_throttle.c - login throttling: Zimbra's keys, the throttle group of
 * the config, and the verdicts of the in-process counters on a real loop
 * (memcached's own path runs in tests/e2e/test_throttle.py).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <uv.h>

#include "conf.h"
#include "rcache.h"
#include "throttle.h"

Test(throttle_key, zimbra_spelling)
{
	struct rcache_key k;

	cr_assert(rcache_key_throttle_ip(&k, 'i', "10.0.0.1", false));
	cr_assert_str_eq(k.raw, "throttle:proto=i,ip=10.0.0.1");
	cr_assert(rcache_key_throttle_ip(&k, 'p', "2001:db8::1", false));
	cr_assert_str_eq(k.wire, "throttle:proto=p,ip=2001:db8::1");
	cr_assert(rcache_key_throttle_user(&k, "alice@example.com", false));
	cr_assert_str_eq(k.raw, "throttle:user=alice@example.com");
	cr_assert(rcache_key_throttle_user(&k, "100%real", false));
	cr_assert_str_eq(k.raw, "throttle:user=100%25real", "%% is escaped as Zimbra does");
	cr_assert(rcache_key_throttle_failed(&k, "10.0.0.1", false));
	cr_assert_str_eq(k.raw, "throttle:failed,ip=10.0.0.1");
	cr_assert(rcache_key_throttle_ip(&k, 'i', "10.0.0.1", true));
	cr_assert_eq(k.wire_len, 64, "hashed keys are SHA-256 hex");
}

Test(throttle_key, refuses_what_is_no_address_or_name)
{
	struct rcache_key k;

	cr_assert_not(rcache_key_throttle_ip(&k, 'x', "10.0.0.1", false));
	cr_assert_not(rcache_key_throttle_ip(&k, 'i', "10.0.0.1\r\nflush_all", false));
	cr_assert_not(rcache_key_throttle_ip(&k, 'i', "", false));
	cr_assert_not(rcache_key_throttle_ip(&k, 'i', "host name", false));
	cr_assert_not(rcache_key_throttle_failed(&k, "1.2.3.4 x", false));
	cr_assert_not(rcache_key_throttle_user(&k, "a b", false));
	cr_assert_not(rcache_key_throttle_user(&k, "a\r\nb", false));
	cr_assert_not(rcache_key_throttle_user(&k, "", false));
}

/* ---- config ---- */

static char thr_dir[64];
static char thr_file[128];

static void thr_setup(void)
{
	snprintf(thr_dir, sizeof(thr_dir), "/tmp/gh-throttle-XXXXXX");
	cr_assert_not_null(mkdtemp(thr_dir));
	snprintf(thr_file, sizeof(thr_file), "%s/t.conf", thr_dir);
	throttle_local_reset();
}

static void thr_teardown(void)
{
	unlink(thr_file);
	rmdir(thr_dir);
	throttle_local_reset();
}

static struct conf *thr_try(const char *group, char *err, size_t errlen)
{
	FILE *f = fopen(thr_file, "w");
	cr_assert_not_null(f);
	fprintf(f, "listen = ( { address = \"127.0.0.1:1143\"; protocol = \"imap\"; } );\n%s\n",
		group);
	cr_assert_eq(fclose(f), 0);
	return conf_load(thr_file, err, errlen);
}

static struct conf *thr_load(const char *group)
{
	char err[512] = "";
	struct conf *c = thr_try(group, err, sizeof(err));
	cr_assert_not_null(c, "unexpected error: %s", err);
	return c;
}

static void thr_fails(const char *group, const char *needle)
{
	char err[512] = "";
	struct conf *c = thr_try(group, err, sizeof(err));
	cr_expect_null(c, "loaded, expected \"%s\"", needle);
	if (c != NULL)
		conf_unref(c);
	cr_expect(strstr(err, needle) != NULL, "error \"%s\" lacks \"%s\"", err, needle);
}

TestSuite(throttle_conf, .init = thr_setup, .fini = thr_teardown);

/* Zimbra's limits are off as in Zimbra; the failed-login ceiling (which
   Zimbra lacks) is on, so a connection's failed-login count is checked. */
Test(throttle_conf, defaults_are_zimbras_plus_a_failed_login_ceiling)
{
	struct conf *c = thr_load("");

	cr_assert_eq(c->throttle.ip_limit, 0);
	cr_assert_eq(c->throttle.user_limit, 0);
	cr_assert_eq(c->throttle.failed_limit, 1000);
	cr_assert_eq(c->throttle.failed_window, 3600);
	cr_assert_eq(c->throttle.ip_window, 3600);
	cr_assert_str_eq(c->throttle.ip_message, "Login rejected from this IP");
	cr_assert_str_eq(c->throttle.user_message, "Login rejected for this user");
	/* An address that never failed here is not asked about: no round
	   trip per connection. Its first failure here makes it asked. */
	throttle_local_reset();
	struct throttle_query q = { THROTTLE_CONNECT, 'i', "10.0.0.1", NULL };
	struct throttle_query ql = { THROTTLE_LOGIN, 'i', "10.0.0.1", "u@a.test" };
	cr_assert_not(throttle_needed(c, &q));
	cr_assert_not(throttle_needed(c, &ql));
	uv_loop_t loop;
	cr_assert_eq(uv_loop_init(&loop), 0);
	throttle_failed(&loop, c, "10.0.0.1");
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&loop), 0);
	cr_assert(throttle_needed(c, &q));
	cr_assert(throttle_needed(c, &ql));
	q.ip = "10.0.0.2";
	cr_assert_not(throttle_needed(c, &q));
	q.ip = "10.0.0.1";
	conf_unref(c);
	c = thr_load("throttle = { failed_limit = 0; };");
	cr_assert_not(throttle_needed(c, &q));
	conf_unref(c);
	throttle_local_reset();
}

Test(throttle_conf, settings_and_whitelist)
{
	struct conf *c = thr_load("throttle = { ip_limit = 5; ip_limit_pop3 = 2; ip_window = 60;"
				  " user_limit = 7; failed_limit = 3; failed_window = 30;"
				  " whitelist = [ \"10.0.0.0/8\", \"::1\", \"192.0.2.7\" ];"
				  " user_message = \"Slow down\"; };");

	cr_assert_eq(c->throttle.ip_limit_pop3, 2);
	cr_assert_eq(c->throttle.nwhitelist, 3);
	cr_assert(throttle_whitelisted(c, "10.200.1.1"));
	cr_assert(throttle_whitelisted(c, "::1"));
	cr_assert(throttle_whitelisted(c, "::ffff:192.0.2.7"), "IPv4-mapped counts as IPv4");
	cr_assert_not(throttle_whitelisted(c, "192.0.2.8"));
	cr_assert_not(throttle_whitelisted(c, "not an address"));
	cr_assert_str_eq(c->throttle.user_message, "Slow down");

	struct throttle_query q = { THROTTLE_CONNECT, 'i', "10.0.0.1", NULL };
	cr_assert_not(throttle_needed(c, &q), "whitelisted: no IP or failed-login check");
	q.ip = "192.0.2.8";
	cr_assert(throttle_needed(c, &q));
	q = (struct throttle_query){ THROTTLE_LOGIN, 'i', "10.0.0.1", "alice" };
	cr_assert(throttle_needed(c, &q), "the user limit ignores the whitelist");
	conf_unref(c);
}

Test(throttle_conf, bad_values_name_the_setting)
{
	thr_fails("throttle = { ip_limit = -1; };", "throttle.ip_limit");
	thr_fails("throttle = { ip_window = 0; };", "throttle.ip_window");
	thr_fails("throttle = { whitelist = [ \"10.1.2.3/8\" ]; };", "throttle.whitelist");
	thr_fails("throttle = { whitelist = [ \"example.com\" ]; };", "throttle.whitelist");
	thr_fails("throttle = { ip_message = \"bad\\r\\nline\"; };", "throttle.ip_message");
	thr_fails("throttle = { ip_limt = 5; };", "ip_limt");
}

/* ---- verdicts, in-process counters ---- */

struct thr_run {
	int calls;
	struct throttle_result res;
};

static void thr_cb(const struct throttle_result *res, void *arg)
{
	struct thr_run *r = arg;

	r->calls++;
	r->res = *res;
}

static struct throttle_result thr_check(uv_loop_t *loop, struct conf *c, enum throttle_step step,
					char proto, const char *ip, const char *user)
{
	struct thr_run r = { 0 };
	struct throttle_query q = { step, proto, ip, user };

	cr_assert_not_null(throttle_check(loop, c, &q, thr_cb, &r));
	cr_assert_eq(r.calls, 0, "the callback never runs before throttle_check returns");
	uv_run(loop, UV_RUN_DEFAULT);
	cr_assert_eq(r.calls, 1);
	return r.res;
}

Test(throttle_conf, local_counters_give_zimbras_verdicts)
{
	struct conf *c = thr_load("throttle = { ip_limit = 2; ip_limit_imap = 3; user_limit = 2;"
				  " failed_limit = 2; };");
	uv_loop_t loop;
	cr_assert_eq(uv_loop_init(&loop), 0);

	/* IMAP: its override (3) applies; the 4th connection is refused. */
	for (int i = 1; i <= 3; i++)
		cr_assert_eq(thr_check(&loop, c, THROTTLE_CONNECT, 'i', "192.0.2.1", NULL).verdict,
			     THROTTLE_ALLOW, "connection %d", i);
	struct throttle_result r = thr_check(&loop, c, THROTTLE_CONNECT, 'i', "192.0.2.1", NULL);
	cr_assert_eq(r.verdict, THROTTLE_DENY_IP);
	cr_assert_eq(r.count, 4);
	cr_assert_eq(r.limit, 3);
	cr_assert_not(r.failed_logins);
	/* POP3 counts on its own key, with the general limit (2). */
	cr_assert_eq(thr_check(&loop, c, THROTTLE_CONNECT, 'p', "192.0.2.1", NULL).verdict,
		     THROTTLE_ALLOW);
	cr_assert_eq(thr_check(&loop, c, THROTTLE_CONNECT, 'p', "192.0.2.1", NULL).verdict,
		     THROTTLE_ALLOW);
	cr_assert_eq(thr_check(&loop, c, THROTTLE_CONNECT, 'p', "192.0.2.1", NULL).verdict,
		     THROTTLE_DENY_IP);

	/* Users: LOGIN only reads; SUCCESS counts; over the limit is refused. */
	cr_assert_eq(thr_check(&loop, c, THROTTLE_LOGIN, 'i', "192.0.2.2", "alice").verdict,
		     THROTTLE_ALLOW);
	cr_assert_eq(thr_check(&loop, c, THROTTLE_SUCCESS, 'i', "192.0.2.2", "alice").verdict,
		     THROTTLE_ALLOW);
	cr_assert_eq(thr_check(&loop, c, THROTTLE_SUCCESS, 'i', "192.0.2.2", "alice").verdict,
		     THROTTLE_ALLOW);
	r = thr_check(&loop, c, THROTTLE_LOGIN, 'i', "192.0.2.3", "alice");
	cr_assert_eq(r.verdict, THROTTLE_DENY_USER, "at the limit, the next login is refused");
	cr_assert_eq(r.count, 2);
	cr_assert_eq(thr_check(&loop, c, THROTTLE_SUCCESS, 'i', "192.0.2.3", "alice").verdict,
		     THROTTLE_DENY_USER, "a login counted past the limit is refused");
	cr_assert_eq(thr_check(&loop, c, THROTTLE_LOGIN, 'i', "192.0.2.3", "bob").verdict,
		     THROTTLE_ALLOW);

	/* Failed logins per address. */
	throttle_failed(&loop, c, "192.0.2.4");
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(thr_check(&loop, c, THROTTLE_LOGIN, 'i', "192.0.2.4", "bob").verdict,
		     THROTTLE_ALLOW);
	throttle_failed(&loop, c, "192.0.2.4");
	uv_run(&loop, UV_RUN_DEFAULT);
	r = thr_check(&loop, c, THROTTLE_LOGIN, 'i', "192.0.2.4", "bob");
	cr_assert_eq(r.verdict, THROTTLE_DENY_IP);
	cr_assert(r.failed_logins);
	r = thr_check(&loop, c, THROTTLE_CONNECT, 'i', "192.0.2.4", NULL);
	cr_assert_eq(r.verdict, THROTTLE_DENY_IP, "the next connection is refused too");
	cr_assert(r.failed_logins);

	cr_assert_eq(uv_loop_close(&loop), 0, "no handle left behind");
	conf_unref(c);
}

Test(throttle_conf, cancelled_check_never_calls_back)
{
	struct conf *c = thr_load("throttle = { ip_limit = 1; };");
	uv_loop_t loop;
	struct thr_run r = { 0 };
	struct throttle_query q = { THROTTLE_CONNECT, 'i', "192.0.2.9", NULL };

	cr_assert_eq(uv_loop_init(&loop), 0);
	struct throttle_req *t = throttle_check(&loop, c, &q, thr_cb, &r);
	cr_assert_not_null(t);
	throttle_cancel(t);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(r.calls, 0);
	cr_assert_eq(uv_loop_close(&loop), 0);
	conf_unref(c);
}

/*
 * What a caller lends a check, as the session's held login query: heap
 * memory, freed by the callback. thr_lent_frees counts every way it is
 * freed, so the test sees that it comes back exactly once.
 */
struct thr_lent {
	char password[32];
	int calls;
};

static int thr_lent_frees;

static void thr_lent_free(struct thr_lent *l)
{
	thr_lent_frees++;
	free(l);
}

static void thr_lent_cb(const struct throttle_result *res, void *arg)
{
	(void)res;
	thr_lent_free(arg);
}

/* Issue 14: the session's held query (a password copy) leaked with the
   check it had lent it to. Cancelling now hands the argument back. */
Test(throttle_conf, cancel_hands_the_argument_back)
{
	struct conf *c = thr_load("throttle = { user_limit = 3; };");
	struct throttle_query q = { THROTTLE_LOGIN, 'i', "192.0.2.10", "alice@example.com" };
	uv_loop_t loop;

	thr_lent_frees = 0;
	cr_assert_eq(uv_loop_init(&loop), 0);
	struct thr_lent *l = calloc(1, sizeof(*l));
	cr_assert_not_null(l);
	snprintf(l->password, sizeof(l->password), "secret");
	struct throttle_req *t = throttle_check(&loop, c, &q, thr_lent_cb, l);
	cr_assert_not_null(t);
	void *back = throttle_cancel(t);
	cr_assert_eq(back, l, "the argument comes back to the caller");
	cr_assert_null(throttle_cancel(t), "a second cancel hands nothing back");
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(thr_lent_frees, 0, "the callback never ran");
	if (back != NULL)
		thr_lent_free(back);
	cr_assert_eq(thr_lent_frees, 1);
	cr_assert_eq(uv_loop_close(&loop), 0);
	conf_unref(c);
}

/* Not cancelled: the callback gets the argument back, once. */
Test(throttle_conf, uncancelled_check_returns_the_argument_once)
{
	struct conf *c = thr_load("throttle = { user_limit = 3; };");
	struct throttle_query q = { THROTTLE_LOGIN, 'i', "192.0.2.11", "alice@example.com" };
	uv_loop_t loop;

	thr_lent_frees = 0;
	cr_assert_eq(uv_loop_init(&loop), 0);
	struct thr_lent *l = calloc(1, sizeof(*l));
	cr_assert_not_null(l);
	cr_assert_not_null(throttle_check(&loop, c, &q, thr_lent_cb, l));
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(thr_lent_frees, 1);
	cr_assert_eq(uv_loop_close(&loop), 0);
	conf_unref(c);
}

Test(throttle_conf, cancel_of_null_is_null)
{
	cr_assert_null(throttle_cancel(NULL));
}

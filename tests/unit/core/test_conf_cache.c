/*
 * Tests for core/conf_cache.c: the cache group's defaults, every setting,
 * and the exact text of its errors ("FILE:LINE: cache.setting: message").
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "conf.h"

static char cc_file[64];

static void cc_setup(void)
{
	snprintf(cc_file, sizeof(cc_file), "/tmp/gh-conf-cache-XXXXXX");
	int fd = mkstemp(cc_file);
	cr_assert(fd >= 0);
	close(fd);
}

static void cc_teardown(void)
{
	unlink(cc_file);
}

TestSuite(conf_cache, .init = cc_setup, .fini = cc_teardown);

static void cc_write(const char *text)
{
	FILE *f = fopen(cc_file, "w");

	cr_assert_not_null(f);
	cr_assert_eq(fwrite(text, 1, strlen(text), f), strlen(text));
	cr_assert_eq(fclose(f), 0);
}

static struct conf *cc_load(const char *text)
{
	char err[512] = "";

	cc_write(text);
	struct conf *c = conf_load(cc_file, err, sizeof(err));
	cr_assert_not_null(c, "unexpected error: %s\nfor:\n%s", err, text);
	return c;
}

static void cc_fails(const char *text, const char *suffix)
{
	char err[512] = "", want[600];

	cc_write(text);
	struct conf *c = conf_load(cc_file, err, sizeof(err));
	cr_expect_null(c, "loaded, expected \"%s\" for:\n%s", suffix, text);
	if (c != NULL) {
		conf_unref(c);
		return;
	}
	snprintf(want, sizeof(want), "%s:%s", cc_file, suffix);
	cr_expect_str_eq(err, want, "for:\n%s", text);
}

static void cc_expect_defaults(const struct conf *c)
{
	cr_expect_eq(c->cache.nservers, 0);
	cr_expect_eq(c->cache.ttl, 3600);
	cr_expect_eq(c->cache.hash_keys, false);
	cr_expect_eq(c->cache.distribution, CONF_CACHE_MODULA);
	cr_expect_eq(c->cache.timeout, 0.5);
	cr_expect_eq(c->cache.retry_interval, 10);
	cr_expect_eq(c->cache.l1_entries, 100000);
	cr_expect_eq(c->cache.l1_ttl, 60.0);
}

Test(conf_cache, defaults)
{
	struct conf *c = cc_load("");

	cc_expect_defaults(c);
	conf_unref(c);
	c = cc_load("cache = { };\n");
	cc_expect_defaults(c);
	conf_unref(c);
}

/* The shipped file documents the cache defaults. */
Test(conf_cache, shipped_file_has_the_defaults)
{
	char path[PATH_MAX], err[512] = "";
	const char *rel = "conf/gatehouse.conf";

	if (access(rel, R_OK) == 0) {
		snprintf(path, sizeof(path), "%s", rel);
	} else {
		const char *me = __FILE__;
		const char *tail = strstr(me, "tests/unit/proxy/test_conf_cache.c");
		cr_assert_not_null(tail);
		snprintf(path, sizeof(path), "%.*s%s", (int)(tail - me), me, rel);
	}
	struct conf *c = conf_load(path, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cc_expect_defaults(c);
	conf_unref(c);
}

Test(conf_cache, every_setting)
{
	struct conf *c = cc_load(
		"cache = {\n"
		"  memcached = [ \"10.0.0.7:11311\", \"mc2.example.com\", \"[2001:db8::7]:11211\" ];\n"
		"  ttl = 600;\n"
		"  hash_keys = true;\n"
		"  distribution = \"consistent\";\n"
		"  timeout = 0.25;\n"
		"  retry_interval = 30;\n"
		"  l1_entries = 0;\n"
		"  l1_ttl = 5;\n"
		"};\n");

	cr_assert_eq(c->cache.nservers, 3);
	cr_expect_str_eq(c->cache.servers[0].host, "10.0.0.7");
	cr_expect_eq(c->cache.servers[0].port, 11311);
	cr_expect_str_eq(c->cache.servers[1].host, "mc2.example.com");
	cr_expect_eq(c->cache.servers[1].port, 11211, "the port defaults to 11211");
	cr_expect_str_eq(c->cache.servers[2].host, "2001:db8::7");
	cr_expect_eq(c->cache.servers[2].port, 11211);
	cr_expect_eq(c->cache.ttl, 600);
	cr_expect(c->cache.hash_keys);
	cr_expect_eq(c->cache.distribution, CONF_CACHE_CONSISTENT);
	cr_expect_eq(c->cache.timeout, 0.25);
	cr_expect_eq(c->cache.retry_interval, 30);
	cr_expect_eq(c->cache.l1_entries, 0);
	cr_expect_eq(c->cache.l1_ttl, 5.0);
	conf_unref(c);

	c = cc_load("cache = { distribution = \"modula\"; memcached = [ ]; };\n");
	cr_expect_eq(c->cache.distribution, CONF_CACHE_MODULA);
	cr_expect_eq(c->cache.nservers, 0);
	conf_unref(c);
}

Test(conf_cache, errors)
{
	cc_fails("cache = { mem = 1; };\n", "1: cache.mem: unknown setting");
	cc_fails("cache = 1;\n", "1: cache: must be a group { ... }");
	cc_fails("cache = {\n memcached = \"127.0.0.1\";\n};\n",
		 "2: cache.memcached: must be an array of strings [ ... ]");
	cc_fails("cache = {\n memcached = [ \"127.0.0.1:0\" ];\n};\n",
		 "2: cache.memcached.[0]: bad port (must be 1..65535)");
	cc_fails("cache = {\n memcached = [ \"a\", \"b b\" ];\n};\n",
		 "2: cache.memcached.[1]: bad host name");
	cc_fails("cache = {\n memcached = [ \"::1\" ];\n};\n",
		 "2: cache.memcached.[0]: IPv6 addresses must be written in brackets: [V6]:PORT");
	cc_fails("cache = {\n memcached = [ \"10.0.0.7\", \"10.0.0.7:11211\" ];\n};\n",
		 "2: cache.memcached.[1]: duplicate server 10.0.0.7:11211");
	cc_fails("cache = {\n memcached = [ \"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\", \"h\", \"i\","
		 " \"j\", \"k\", \"l\", \"m\", \"n\", \"o\", \"p\", \"q\" ];\n};\n",
		 "2: cache.memcached: must have at most 16 entries");
	cc_fails("cache = {\n ttl = 0;\n};\n", "2: cache.ttl: must be between 1 and 2592000");
	cc_fails("cache = {\n ttl = 2592001;\n};\n", "2: cache.ttl: must be between 1 and 2592000");
	cc_fails("cache = {\n ttl = 1.5;\n};\n", "2: cache.ttl: must be an integer");
	cc_fails("cache = {\n hash_keys = 1;\n};\n", "2: cache.hash_keys: must be true or false");
	cc_fails("cache = {\n distribution = \"ketama\";\n};\n",
		 "2: cache.distribution: must be one of modula, consistent");
	cc_fails("cache = {\n timeout = 0;\n};\n", "2: cache.timeout: must be between 0.01 and 10");
	cc_fails("cache = {\n retry_interval = 0;\n};\n",
		 "2: cache.retry_interval: must be between 1 and 3600");
	cc_fails("cache = {\n l1_entries = -1;\n};\n",
		 "2: cache.l1_entries: must be between 0 and 10000000");
	cc_fails("cache = {\n l1_ttl = 3601;\n};\n", "2: cache.l1_ttl: must be between 0 and 3600");
}

Test(conf_cache, reload_keeps_nothing_half_built)
{
	/* A failure after some servers were read frees them (no leak under ASan). */
	cc_fails("cache = {\n memcached = [ \"a\", \"b\", \"a:11211\" ];\n};\n",
		 "2: cache.memcached.[2]: duplicate server a:11211");
}

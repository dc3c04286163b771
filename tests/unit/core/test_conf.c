/*
 * Tests for core/conf.c: defaults, every setting, and the exact text of
 * every kind of error ("FILE:LINE: setting.path: what is wrong").
 */
#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "conf.h"

static char conf_t_dir[64];
static char conf_t_file[128];

static void conf_t_setup(void)
{
	snprintf(conf_t_dir, sizeof(conf_t_dir), "/tmp/gh-conf-XXXXXX");
	cr_assert_not_null(mkdtemp(conf_t_dir));
	snprintf(conf_t_file, sizeof(conf_t_file), "%s/t.conf", conf_t_dir);
}

static void conf_t_teardown(void)
{
	unlink(conf_t_file);
	rmdir(conf_t_dir);
}

TestSuite(conf, .init = conf_t_setup, .fini = conf_t_teardown);

static void conf_t_write(const char *text)
{
	FILE *f = fopen(conf_t_file, "w");

	cr_assert_not_null(f);
	cr_assert_eq(fwrite(text, 1, strlen(text), f), strlen(text));
	cr_assert_eq(fclose(f), 0);
}

static struct conf *conf_t_load(const char *text)
{
	char err[512] = "";

	conf_t_write(text);
	struct conf *c = conf_load(conf_t_file, err, sizeof(err));
	cr_assert_not_null(c, "unexpected error: %s\nfor:\n%s", err, text);
	cr_assert_str_eq(err, "");
	return c;
}

/* The load fails with exactly "<file>:" + suffix. */
static void conf_t_fails(const char *text, const char *suffix)
{
	char err[512] = "", want[512];

	conf_t_write(text);
	struct conf *c = conf_load(conf_t_file, err, sizeof(err));
	cr_expect_null(c, "loaded, expected \"%s\" for:\n%s", suffix, text);
	if (c != NULL) {
		conf_unref(c);
		return;
	}
	snprintf(want, sizeof(want), "%s:%s", conf_t_file, suffix);
	cr_expect_str_eq(err, want, "got  \"%s\"\nwant \"%s\"\nfor:\n%s", err, want, text);
}

static void conf_t_expect_defaults(const struct conf *c)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int workers = cores < 1 ? 1 : cores > 64 ? 64 : (int)cores;

	cr_expect_eq(atomic_load(&c->refs), 1);
	cr_expect_eq(c->workers, workers);
	cr_expect_eq(c->log_level, CONF_LOG_INFO);
	cr_expect_null(c->error_log);
	cr_expect_null(c->audit_log);
	cr_expect_eq(c->shutdown_timeout, 10.0);

	cr_expect_eq(c->limits.preauth_timeout, 60.0);
	cr_expect_eq(c->limits.idle_timeout, 2100.0);
	cr_expect_eq(c->limits.connect_timeout, 10.0);
	cr_expect_eq(c->limits.backend_timeout, 30.0);
	cr_expect_eq(c->limits.max_line, 8192);
	cr_expect_eq(c->limits.max_literal, 4096);
	cr_expect_eq(c->limits.max_tag, 64);
	cr_expect_eq(c->limits.max_login, 256);
	cr_expect_eq(c->limits.max_password, 1024);
	cr_expect_eq(c->limits.max_bad_commands, 5);
	cr_expect_eq(c->limits.max_login_failures, 3);
	cr_expect_eq(c->limits.max_auth_wait, 10.0);
	cr_expect_eq(c->limits.auth_failure_delay, 10.0);
	cr_expect_eq(c->throttle.failed_limit, 1000);
	cr_expect_eq(c->throttle.failed_window, 3600);
	cr_expect_eq(c->throttle.user_limit, 0);
	cr_expect_eq(c->limits.relay_buffer, 16384);
	cr_expect_eq(c->limits.relay_high_water, 65536);
	cr_expect_eq(c->limits.preauth_output, 16384);
	cr_expect(c->limits.splice);

	cr_expect_str_eq(c->imap.greeting, "Gatehouse IMAP proxy ready");
	cr_assert_eq(c->imap.ncaps, 6);
	const char *caps[] = { "IMAP4rev1", "ID", "LITERAL+", "SASL-IR", "IDLE", "NAMESPACE" };
	for (int i = 0; i < 6; i++)
		cr_expect_str_eq(c->imap.caps[i], caps[i]);
	cr_expect(c->imap.send_id);
	cr_expect_eq(c->imap.backend_auth, CONF_BACKEND_AUTH_AUTO);
	cr_expect_eq(c->imap.backend_port, 7143);

	cr_expect_eq(c->lookup.nservers, 0);
	cr_expect_eq(c->lookup.timeout, 10.0);
	cr_expect_eq(c->lookup.retry_interval, 60.0);
	cr_expect_not(c->lookup.send_password);

	cr_expect_eq(c->nroutes, 0);

	cr_assert_eq(c->nlisten, 1);
	cr_expect_str_eq(c->listen[0].address, "0.0.0.0:143");
	cr_expect_eq(c->listen[0].proto, CONF_PROTO_IMAP);
	const struct sockaddr_in *sin = (const void *)&c->listen[0].addr;
	cr_expect_eq(c->listen[0].addrlen, sizeof(*sin));
	cr_expect_eq(sin->sin_family, AF_INET);
	cr_expect_eq(ntohs(sin->sin_port), 143);
	cr_expect_eq(sin->sin_addr.s_addr, htonl(INADDR_ANY));
}

Test(conf, empty_file_gives_defaults)
{
	struct conf *c = conf_t_load("");

	conf_t_expect_defaults(c);
	cr_expect_str_eq(c->path, conf_t_file);
	conf_unref(c);
}

Test(conf, comments_only_gives_defaults)
{
	struct conf *c = conf_t_load("# nothing\n// here\n/* at\nall */\n");

	conf_t_expect_defaults(c);
	conf_unref(c);
}

/* The shipped file documents the defaults: it must load and equal them. */
Test(conf, shipped_file_is_the_defaults)
{
	char path[PATH_MAX], err[512] = "";
	const char *rel = "conf/gatehouse.conf";

	if (access(rel, R_OK) == 0) {
		snprintf(path, sizeof(path), "%s", rel);
	} else {
		/* Not run from the source root: find it relative to this file. */
		const char *me = __FILE__;
		const char *tail = strstr(me, "tests/unit/proxy/test_conf.c");
		cr_assert_not_null(tail);
		snprintf(path, sizeof(path), "%.*s%s", (int)(tail - me), me, rel);
	}
	struct conf *c = conf_load(path, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	conf_t_expect_defaults(c);
	conf_unref(c);
}

Test(conf, full_file)
{
	struct conf *c = conf_t_load(
		"workers = 4;\n"
		"log_level = \"debug\";\n"
		"error_log = \"/var/log/gatehouse/error.log\";\n"
		"audit_log = \"off\";\n"
		"shutdown_timeout = 0;\n"
		"limits = {\n"
		"  preauth_timeout = 30;\n"
		"  idle_timeout = 1800.5;\n"
		"  connect_timeout = 0.1;\n"
		"  backend_timeout = 600;\n"
		"  max_line = 65536.0;\n"
		"  max_literal = 65536;\n"
		"  max_tag = 1024;\n"
		"  max_login = 511;\n"
		"  max_password = 8192;\n"
		"  max_bad_commands = 100;\n"
		"  max_login_failures = 1;\n"
		"  max_auth_wait = 0;\n"
		"  relay_buffer = 1024;\n"
		"  relay_high_water = 16777216;\n"
		"};\n"
		"imap = {\n"
		"  greeting = \"Hello there ~!\";\n"
		"  capabilities = [ \"IMAP4rev1\", \"X-GM-EXT-1\", \"QUOTA\" ];\n"
		"  send_id = false;\n"
		"  backend_auth = \"plain\";\n"
		"  backend_port = 993;\n"
		"};\n"
		"lookup = {\n"
		"  servers = [ \"http://127.0.0.1:7072/service/extension/nginx-lookup\",\n"
		"              \"http://[::1]/custom/path?x=1\" ];\n"
		"  timeout = 2.5;\n"
		"  retry_interval = 0;\n"
		"  send_password = true;\n"
		"};\n"
		"routes = (\n"
		"  { match = \"@example.com\"; server = \"10.0.0.21:7993\"; }\n"
		");\n"
		"listen = (\n"
		"  { address = \"127.0.0.1:1143\"; protocol = \"imap\"; },\n"
		"  { address = \"[::1]:1143\"; }\n"
		");\n");

	cr_expect_eq(c->workers, 4);
	cr_expect_eq(c->log_level, CONF_LOG_DEBUG);
	cr_expect_str_eq(c->error_log, "/var/log/gatehouse/error.log");
	cr_expect_str_eq(c->audit_log, "off");
	cr_expect_eq(c->shutdown_timeout, 0.0);
	cr_expect_eq(c->limits.preauth_timeout, 30.0);
	cr_expect_eq(c->limits.idle_timeout, 1800.5);
	cr_expect_eq(c->limits.connect_timeout, 0.1);
	cr_expect_eq(c->limits.backend_timeout, 600.0);
	cr_expect_eq(c->limits.max_line, 65536);
	cr_expect_eq(c->limits.max_literal, 65536);
	cr_expect_eq(c->limits.max_tag, 1024);
	cr_expect_eq(c->limits.max_login, 511);
	cr_expect_eq(c->limits.max_password, 8192);
	cr_expect_eq(c->limits.max_bad_commands, 100);
	cr_expect_eq(c->limits.max_login_failures, 1);
	cr_expect_eq(c->limits.max_auth_wait, 0.0);
	cr_expect_eq(c->limits.relay_buffer, 1024);
	cr_expect_eq(c->limits.relay_high_water, 16777216);
	cr_expect_str_eq(c->imap.greeting, "Hello there ~!");
	cr_assert_eq(c->imap.ncaps, 3);
	cr_expect_str_eq(c->imap.caps[0], "IMAP4rev1");
	cr_expect_str_eq(c->imap.caps[1], "X-GM-EXT-1");
	cr_expect_str_eq(c->imap.caps[2], "QUOTA");
	cr_expect_not(c->imap.send_id);
	cr_expect_eq(c->imap.backend_auth, CONF_BACKEND_AUTH_PLAIN);
	cr_expect_eq(c->imap.backend_port, 993);
	cr_assert_eq(c->lookup.nservers, 2);
	cr_expect_str_eq(c->lookup.servers[0].url,
			 "http://127.0.0.1:7072/service/extension/nginx-lookup");
	cr_expect_str_eq(c->lookup.servers[0].host, "127.0.0.1");
	cr_expect_str_eq(c->lookup.servers[0].path, "/service/extension/nginx-lookup");
	cr_expect_str_eq(c->lookup.servers[1].host, "[::1]");
	cr_expect_str_eq(c->lookup.servers[1].path, "/custom/path?x=1");
	const struct sockaddr_in6 *s6 = (const void *)&c->lookup.servers[1].addr;
	cr_expect_eq(s6->sin6_family, AF_INET6);
	cr_expect_eq(ntohs(s6->sin6_port), 7072);
	cr_expect_eq(c->lookup.timeout, 2.5);
	cr_expect_eq(c->lookup.retry_interval, 0.0);
	cr_expect(c->lookup.send_password);
	cr_assert_eq(c->nroutes, 1);
	cr_expect_str_eq(c->routes[0].match, "@example.com");
	cr_expect_str_eq(c->routes[0].host, "10.0.0.21");
	cr_expect_eq(c->routes[0].port, 7993);
	cr_expect_null(c->routes[0].user);
	cr_assert_eq(c->nlisten, 2);
	cr_expect_str_eq(c->listen[0].address, "127.0.0.1:1143");
	cr_expect_eq(c->listen[0].line, 40);
	cr_expect_str_eq(c->listen[1].address, "[::1]:1143");
	cr_expect_eq(c->listen[1].addr.ss_family, AF_INET6);
	cr_expect_eq(c->listen[1].proto, CONF_PROTO_IMAP);
	conf_unref(c);
}

Test(conf, log_destinations)
{
	struct conf *c = conf_t_load("error_log = \"\"; audit_log = \"/tmp/audit.log\";\n");

	cr_expect_null(c->error_log);
	cr_expect_str_eq(c->audit_log, "/tmp/audit.log");
	conf_unref(c);

	c = conf_t_load("audit_log = \"\";\n");
	cr_expect_null(c->audit_log);
	conf_unref(c);
}

Test(conf, numbers_as_int_or_float)
{
	struct conf *c = conf_t_load(
		"workers = 2.0;\n"
		"shutdown_timeout = 5;\n"
		"limits = { preauth_timeout = 60; max_line = 1e4; max_tag = 16L; };\n"
		"imap = { backend_port = 143.0; };\n");

	cr_expect_eq(c->workers, 2);
	cr_expect_eq(c->shutdown_timeout, 5.0);
	cr_expect_eq(c->limits.preauth_timeout, 60.0);
	cr_expect_eq(c->limits.max_line, 10000);
	cr_expect_eq(c->limits.max_tag, 16);
	cr_expect_eq(c->imap.backend_port, 143);
	conf_unref(c);

	c = conf_t_load("limits = { max_line = 0x400; };\n");
	cr_expect_eq(c->limits.max_line, 1024);
	conf_unref(c);
}

/* A default that another setting makes impossible follows that setting. */
Test(conf, dependent_defaults_follow)
{
	struct conf *c = conf_t_load("limits = { max_line = 1024; relay_buffer = 131072; };\n");

	cr_expect_eq(c->limits.max_literal, 1024);
	cr_expect_eq(c->limits.relay_high_water, 131072);
	conf_unref(c);

	c = conf_t_load("limits = { max_line = 512; max_literal = 512; relay_buffer = 2048;"
			" relay_high_water = 2048; };\n");
	cr_expect_eq(c->limits.max_literal, 512);
	cr_expect_eq(c->limits.relay_high_water, 2048);
	conf_unref(c);
}

/* The splice(2) relay can be switched off; it is on unless said otherwise. */
Test(conf, splice_switch)
{
	struct conf *c = conf_t_load("limits = { splice = false; };\n");

	cr_expect_not(c->limits.splice);
	conf_unref(c);
	c = conf_t_load("limits = { relay_buffer = 2048; };\n");
	cr_expect(c->limits.splice);
	conf_unref(c);
}

Test(conf, workers_zero_means_cores)
{
	struct conf *c = conf_t_load("workers = 0;\n");
	long cores = sysconf(_SC_NPROCESSORS_ONLN);

	cr_expect_eq(c->workers, cores < 1 ? 1 : cores > 64 ? 64 : (int)cores);
	conf_unref(c);
}

Test(conf, file_errors)
{
	char err[512], want[512];
	char missing[160];

	snprintf(missing, sizeof(missing), "%s/missing.conf", conf_t_dir);
	cr_expect_null(conf_load(missing, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: cannot read: No such file or directory", missing);
	cr_expect_str_eq(err, want);

	cr_expect_null(conf_load(conf_t_dir, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: cannot read: Is a directory", conf_t_dir);
	cr_expect_str_eq(err, want);

	/* A tiny error buffer is still NUL-terminated, and no buffer is fine. */
	char small[8];
	memset(small, 'x', sizeof(small));
	cr_expect_null(conf_load(missing, small, sizeof(small)));
	cr_expect_eq(small[7], '\0');
	cr_expect_null(conf_load(missing, NULL, 0));
}

Test(conf, syntax_errors)
{
	conf_t_fails("workers = ;\n", "1: syntax error");
	conf_t_fails("workers = 1;\n\nlimits = {\n", "4: syntax error");
	conf_t_fails("workers = 1;\nworkers = 2;\n", "2: duplicate setting name");
	/* libconfig reports the line where it gave up: the end of the file. */
	conf_t_fails("a = \"unterminated;\n", "2: syntax error");
	conf_t_fails("\n  @include \"/etc/passwd\"\n", "2: @include is not supported");
}

Test(conf, unknown_settings)
{
	conf_t_fails("workers = 1;\nworker = 2;\n", "2: worker: unknown setting");
	conf_t_fails("limits = {\n  max_lines = 1;\n};\n", "2: limits.max_lines: unknown setting");
	conf_t_fails("imap = { greeting = \"x\";\n tls = true; };\n", "2: imap.tls: unknown setting");
	conf_t_fails("lookup = {\n\n server = \"http://a\"; };\n", "3: lookup.server: unknown setting");
	conf_t_fails("routes = (\n { match = \"*\"; server = \"a\"; },\n"
		     " { match = \"x\"; server = \"a\";\n port = 1; }\n);\n",
		     "4: routes.[1].port: unknown setting");
	conf_t_fails("listen = (\n { address = \"*:143\"; ssl = true; }\n);\n",
		     "2: listen.[0].ssl: unknown setting");
	conf_t_fails("smtp = { };\n", "1: smtp: unknown setting");
}

Test(conf, wrong_types)
{
	conf_t_fails("workers = \"4\";\n", "1: workers: must be an integer");
	conf_t_fails("workers = true;\n", "1: workers: must be an integer");
	conf_t_fails("workers = 1.5;\n", "1: workers: must be an integer");
	conf_t_fails("shutdown_timeout = \"10\";\n", "1: shutdown_timeout: must be a number");
	conf_t_fails("log_level = 3;\n", "1: log_level: must be a string");
	conf_t_fails("error_log = false;\n", "1: error_log: must be a string");
	conf_t_fails("limits = 5;\n", "1: limits: must be a group { ... }");
	conf_t_fails("limits = { max_line = [ 1 ]; };\n", "1: limits.max_line: must be an integer");
	conf_t_fails("imap = { send_id = 1; };\n", "1: imap.send_id: must be true or false");
	conf_t_fails("imap = { send_id = \"yes\"; };\n", "1: imap.send_id: must be true or false");
	conf_t_fails("imap = { greeting = 5; };\n", "1: imap.greeting: must be a string");
	conf_t_fails("imap = { capabilities = \"IMAP4rev1\"; };\n",
		     "1: imap.capabilities: must be an array of strings [ ... ]");
	conf_t_fails("imap = { capabilities = [ 1, 2 ]; };\n",
		     "1: imap.capabilities.[0]: must be a string");
	conf_t_fails("imap = ( );\n", "1: imap: must be a group { ... }");
	conf_t_fails("lookup = { servers = \"http://a\"; };\n",
		     "1: lookup.servers: must be an array of strings [ ... ]");
	conf_t_fails("lookup = { send_password = \"false\"; };\n",
		     "1: lookup.send_password: must be true or false");
	conf_t_fails("routes = { match = \"*\"; };\n",
		     "1: routes: must be a list of groups ( { ... }, ... )");
	conf_t_fails("routes = ( \"*\" );\n",
		     "1: routes.[0]: must be a group { match = ...; server = ...; }");
	conf_t_fails("routes = ( { match = 1; server = \"a\"; } );\n",
		     "1: routes.[0].match: must be a string");
	conf_t_fails("listen = [ ];\n", "1: listen: must be a list of groups ( { ... }, ... )");
	conf_t_fails("listen = ( { address = 143; } );\n", "1: listen.[0].address: must be a string");
	conf_t_fails("listen = ( { address = \"*:143\"; protocol = 1; } );\n",
		     "1: listen.[0].protocol: must be a string");
}

Test(conf, ranges)
{
	conf_t_fails("workers = 65;\n", "1: workers: must be between 0 and 64");
	conf_t_fails("workers = -1;\n", "1: workers: must be between 0 and 64");
	conf_t_fails("workers = 99999999999;\n", "1: workers: must be between 0 and 64");
	conf_t_fails("shutdown_timeout = 3600.5;\n", "1: shutdown_timeout: must be between 0 and 3600");
	conf_t_fails("shutdown_timeout = -0.1;\n", "1: shutdown_timeout: must be between 0 and 3600");
	conf_t_fails("limits = { preauth_timeout = 0.5; };\n",
		     "1: limits.preauth_timeout: must be between 1 and 3600");
	conf_t_fails("limits = { idle_timeout = 59; };\n",
		     "1: limits.idle_timeout: must be between 60 and 86400");
	conf_t_fails("limits = { idle_timeout = 86401; };\n",
		     "1: limits.idle_timeout: must be between 60 and 86400");
	conf_t_fails("limits = { connect_timeout = 0.05; };\n",
		     "1: limits.connect_timeout: must be between 0.1 and 600");
	conf_t_fails("limits = { backend_timeout = 601; };\n",
		     "1: limits.backend_timeout: must be between 0.1 and 600");
	conf_t_fails("limits = {\n\n\n\n\n\n  max_line = 511;\n};\n",
		     "7: limits.max_line: must be between 512 and 1048576");
	conf_t_fails("limits = { max_line = 1048577; };\n",
		     "1: limits.max_line: must be between 512 and 1048576");
	conf_t_fails("limits = { max_line = 1e30; };\n",
		     "1: limits.max_line: must be between 512 and 1048576");
	conf_t_fails("limits = { max_line = 600.5; };\n", "1: limits.max_line: must be an integer");
	conf_t_fails("limits = { max_literal = 0; };\n",
		     "1: limits.max_literal: must be between 1 and 1048576");
	conf_t_fails("limits = { max_literal = 8193; };\n",
		     "1: limits.max_literal: must be between 1 and 8192 (limits.max_line)");
	conf_t_fails("limits = {\n max_literal = 2000;\n max_line = 1024; };\n",
		     "2: limits.max_literal: must be between 1 and 1024 (limits.max_line)");
	conf_t_fails("limits = { max_tag = 1025; };\n", "1: limits.max_tag: must be between 1 and 1024");
	conf_t_fails("limits = { max_login = 512; };\n", "1: limits.max_login: must be between 1 and 511");
	conf_t_fails("limits = { max_login = 0; };\n", "1: limits.max_login: must be between 1 and 511");
	conf_t_fails("limits = { max_password = 8193; };\n",
		     "1: limits.max_password: must be between 1 and 8192");
	conf_t_fails("limits = { max_bad_commands = 0; };\n",
		     "1: limits.max_bad_commands: must be between 1 and 100");
	conf_t_fails("limits = { max_login_failures = 101; };\n",
		     "1: limits.max_login_failures: must be between 1 and 100");
	conf_t_fails("limits = { max_auth_wait = 60.5; };\n",
		     "1: limits.max_auth_wait: must be between 0 and 60");
	conf_t_fails("limits = { relay_buffer = 1023; };\n",
		     "1: limits.relay_buffer: must be between 1024 and 1048576");
	conf_t_fails("limits = { relay_high_water = 16777217; };\n",
		     "1: limits.relay_high_water: must be between 1024 and 16777216");
	conf_t_fails("limits = { preauth_output = 512; };\n",
		     "1: limits.preauth_output: must be between 1024 and 1048576");
	conf_t_fails("limits = { relay_buffer = 4096; relay_high_water = 2048; };\n",
		     "1: limits.relay_high_water: must be between 4096 (limits.relay_buffer) and 16777216");
	conf_t_fails("imap = { backend_port = 0; };\n", "1: imap.backend_port: must be between 1 and 65535");
	conf_t_fails("imap = { backend_port = 65536; };\n",
		     "1: imap.backend_port: must be between 1 and 65535");
	conf_t_fails("lookup = { timeout = 0; };\n", "1: lookup.timeout: must be between 0.1 and 600");
	conf_t_fails("lookup = { retry_interval = 3601; };\n",
		     "1: lookup.retry_interval: must be between 0 and 3600");
}

Test(conf, keywords)
{
	static const char *const levels[] = { "error", "warn", "info", "debug" };
	for (int i = 0; i < 4; i++) {
		char text[64];
		snprintf(text, sizeof(text), "log_level = \"%s\";\n", levels[i]);
		struct conf *c = conf_t_load(text);
		cr_expect_eq((int)c->log_level, i);
		conf_unref(c);
	}
	static const char *const auths[] = { "auto", "login", "plain" };
	for (int i = 0; i < 3; i++) {
		char text[64];
		snprintf(text, sizeof(text), "imap = { backend_auth = \"%s\"; };\n", auths[i]);
		struct conf *c = conf_t_load(text);
		cr_expect_eq((int)c->imap.backend_auth, i);
		conf_unref(c);
	}
	conf_t_fails("log_level = \"verbose\";\n",
		     "1: log_level: must be one of error, warn, info, debug");
	conf_t_fails("log_level = \"INFO\";\n", "1: log_level: must be one of error, warn, info, debug");
	conf_t_fails("imap = { backend_auth = \"xoauth2\"; };\n",
		     "1: imap.backend_auth: must be one of auto, login, plain");
	conf_t_fails("listen = ( { address = \"*:25\"; protocol = \"smtp\"; } );\n",
		     "1: listen.[0].protocol: must be one of imap, pop3, http, tcp");
	conf_t_fails("error_log = \"/tmp/a\\nb\";\n", "1: error_log: must not contain control characters");
}

Test(conf, greeting)
{
	char text[400];

	snprintf(text, sizeof(text), "imap = { greeting = \"%0200d\"; };\n", 0);
	struct conf *c = conf_t_load(text);
	cr_expect_eq(strlen(c->imap.greeting), 200);
	conf_unref(c);

	snprintf(text, sizeof(text), "imap = { greeting = \"%0201d\"; };\n", 0);
	conf_t_fails(text, "1: imap.greeting: must be 1 to 200 characters");
	conf_t_fails("imap = { greeting = \"\"; };\n", "1: imap.greeting: must be 1 to 200 characters");
	conf_t_fails("imap = { greeting = \"a\\r\\nb\"; };\n", "1: imap.greeting: must be printable ASCII");
	conf_t_fails("imap = { greeting = \"tab\\there\"; };\n", "1: imap.greeting: must be printable ASCII");
	conf_t_fails("imap = { greeting = \"caf\xc3\xa9\"; };\n", "1: imap.greeting: must be printable ASCII");
}

Test(conf, capabilities)
{
	struct conf *c = conf_t_load("imap = { capabilities = [ ]; };\n");
	cr_expect_eq(c->imap.ncaps, 0);
	conf_unref(c);

	/* A list works as well as an array. */
	c = conf_t_load("imap = { capabilities = ( \"IMAP4rev1\", \"IDLE\" ); };\n");
	cr_expect_eq(c->imap.ncaps, 2);
	conf_unref(c);

	conf_t_fails("imap = { capabilities = [ \"IMAP4rev1\",\n \"STARTTLS\" ]; };\n",
		     "2: imap.capabilities.[1]: STARTTLS is added by gatehouse itself");
	conf_t_fails("imap = { capabilities = [ \"logindisabled\" ]; };\n",
		     "1: imap.capabilities.[0]: logindisabled is added by gatehouse itself");
	conf_t_fails("imap = { capabilities = [ \"AUTH=PLAIN\" ]; };\n",
		     "1: imap.capabilities.[0]: AUTH=PLAIN is added by gatehouse itself");
	conf_t_fails("imap = { capabilities = [ \"IDLE\", \"idle\" ]; };\n",
		     "1: imap.capabilities.[1]: duplicate capability idle");
	conf_t_fails("imap = { capabilities = [ \"A B\" ]; };\n",
		     "1: imap.capabilities.[0]: must be an IMAP atom of 1 to 64 characters");
	conf_t_fails("imap = { capabilities = [ \"\" ]; };\n",
		     "1: imap.capabilities.[0]: must be an IMAP atom of 1 to 64 characters");
	conf_t_fails("imap = { capabilities = [ \"X(\" ]; };\n",
		     "1: imap.capabilities.[0]: must be an IMAP atom of 1 to 64 characters");

	char text[1024] = "imap = { capabilities = [ ";
	for (int i = 0; i <= CONF_MAX_CAPS; i++) {
		size_t n = strlen(text);
		snprintf(text + n, sizeof(text) - n, "%s\"X%d\"", i > 0 ? ", " : "", i);
	}
	strcat(text, " ]; };\n");
	conf_t_fails(text, "1: imap.capabilities: must have at most 32 entries");
}

Test(conf, routes)
{
	struct conf *c = conf_t_load(
		"routes = (\n"
		"  { match = \"@example.com\"; server = \"127.0.0.1:7143\"; },\n"
		"  { match = \"bob@example.com\"; server = \"mail2:7144\"; user = \"robert@example.com\"; },\n"
		"  { match = \"v6@example.com\"; server = \"[2001:db8::1]:993\"; },\n"
		"  { match = \"v6b@example.com\"; server = \"[::1]\"; },\n"
		"  { match = \"carol\"; server = \"mail-3.example.net\"; },\n"
		"  { match = \"*\"; server = \"127.0.0.1\"; }\n"
		");\n"
		"imap = { backend_port = 1143; };\n");

	cr_assert_eq(c->nroutes, 6);
	cr_expect_str_eq(c->routes[0].match, "@example.com");
	cr_expect_str_eq(c->routes[0].host, "127.0.0.1");
	cr_expect_eq(c->routes[0].port, 7143);
	cr_expect_null(c->routes[0].user);
	cr_expect_str_eq(c->routes[1].match, "bob@example.com");
	cr_expect_str_eq(c->routes[1].host, "mail2");
	cr_expect_eq(c->routes[1].port, 7144);
	cr_expect_str_eq(c->routes[1].user, "robert@example.com");
	cr_expect_str_eq(c->routes[2].host, "2001:db8::1");
	cr_expect_eq(c->routes[2].port, 993);
	cr_expect_str_eq(c->routes[3].host, "::1");
	/* No port: the protocol's backend_port, chosen when the route is used
	   (imap.backend_port here, even set later in the file). */
	cr_expect_eq(c->routes[3].port, 0);
	cr_expect_eq(conf_backend_port(c, "imap"), 1143);
	cr_expect_str_eq(c->routes[4].host, "mail-3.example.net");
	cr_expect_eq(c->routes[4].port, 0);
	cr_expect_str_eq(c->routes[5].match, "*");
	cr_expect_eq(c->routes[5].port, 0);
	conf_unref(c);

	c = conf_t_load("routes = ( );\n");
	cr_expect_eq(c->nroutes, 0);
	cr_expect_null(c->routes);
	conf_unref(c);
}

Test(conf, route_errors)
{
	conf_t_fails("routes = (\n { server = \"a\"; }\n);\n", "2: routes.[0].match: required setting is missing");
	conf_t_fails("routes = (\n { match = \"*\"; }\n);\n", "2: routes.[0].server: required setting is missing");
	conf_t_fails("routes = ( { match = \"a b\"; server = \"h\"; } );\n",
		     "1: routes.[0].match: must be \"*\", \"@domain\" or a login name"
		     " (no spaces or control characters)");
	conf_t_fails("routes = ( { match = \"@\"; server = \"h\"; } );\n",
		     "1: routes.[0].match: must be \"*\", \"@domain\" or a login name"
		     " (no spaces or control characters)");
	conf_t_fails("routes = ( { match = \"\"; server = \"h\"; } );\n",
		     "1: routes.[0].match: must be \"*\", \"@domain\" or a login name"
		     " (no spaces or control characters)");
	conf_t_fails("routes = ( { match = \"@a@b\"; server = \"h\"; } );\n",
		     "1: routes.[0].match: must be \"*\", \"@domain\" or a login name"
		     " (no spaces or control characters)");
	conf_t_fails("routes = (\n { match = \"*\"; server = \"h\"; },\n"
		     " { match = \"@x\"; server = \"h\"; },\n { match = \"*\"; server = \"h2\"; }\n);\n",
		     "4: routes.[2].match: duplicate match \"*\" (first at line 2)");
	conf_t_fails("routes = ( { match = \"Bob@X\"; server = \"h\"; },\n { match = \"bob@x\"; server = \"h\"; } );\n",
		     "2: routes.[1].match: duplicate match \"bob@x\" (first at line 1)");
	conf_t_fails("routes = ( { match = \"*\"; server = \"h:0\"; } );\n",
		     "1: routes.[0].server: bad port (must be 1..65535)");
	conf_t_fails("routes = ( { match = \"*\"; server = \"h:65536\"; } );\n",
		     "1: routes.[0].server: bad port (must be 1..65535)");
	conf_t_fails("routes = ( { match = \"*\"; server = \"h:\"; } );\n",
		     "1: routes.[0].server: bad port (must be 1..65535)");
	conf_t_fails("routes = ( { match = \"*\"; server = \"h:7143x\"; } );\n",
		     "1: routes.[0].server: bad port (must be 1..65535)");
	conf_t_fails("routes = ( { match = \"*\"; server = \"[::1]7143\"; } );\n",
		     "1: routes.[0].server: bad port (must be 1..65535)");
	conf_t_fails("routes = ( { match = \"*\"; server = \"::1\"; } );\n",
		     "1: routes.[0].server: IPv6 addresses must be written in brackets: [V6]:PORT");
	conf_t_fails("routes = ( { match = \"*\"; server = \"[::g]:1\"; } );\n",
		     "1: routes.[0].server: bad IPv6 address");
	conf_t_fails("routes = ( { match = \"*\"; server = \"[::1\"; } );\n",
		     "1: routes.[0].server: bad IPv6 address");
	conf_t_fails("routes = ( { match = \"*\"; server = \"\"; } );\n",
		     "1: routes.[0].server: bad host name");
	conf_t_fails("routes = ( { match = \"*\"; server = \"a b\"; } );\n",
		     "1: routes.[0].server: bad host name");
	conf_t_fails("routes = ( { match = \"*\"; server = \":143\"; } );\n",
		     "1: routes.[0].server: bad host name");
	conf_t_fails("routes = ( { match = \"*\"; server = \"h\"; user = \"a b\"; } );\n",
		     "1: routes.[0].user: must be a login name of at most 511 bytes"
		     " without spaces or control characters");
	conf_t_fails("routes = ( { match = \"*\"; server = \"h\"; user = \"\"; } );\n",
		     "1: routes.[0].user: must be a login name of at most 511 bytes"
		     " without spaces or control characters");
}

Test(conf, listen)
{
	struct conf *c = conf_t_load(
		"listen = (\n"
		"  { address = \"*:143\"; },\n"
		"  { address = \"[::1]:143\"; protocol = \"imap\"; },\n"
		"  { address = \"127.0.0.1:1143\"; }\n"
		");\n");

	cr_assert_eq(c->nlisten, 3);
	const struct sockaddr_in *a = (const void *)&c->listen[0].addr;
	cr_expect_str_eq(c->listen[0].address, "*:143");
	cr_expect_eq(a->sin_family, AF_INET);
	cr_expect_eq(a->sin_addr.s_addr, htonl(INADDR_ANY));
	cr_expect_eq(ntohs(a->sin_port), 143);
	cr_expect_eq(c->listen[0].line, 2);
	const struct sockaddr_in6 *b = (const void *)&c->listen[1].addr;
	cr_expect_eq(b->sin6_family, AF_INET6);
	cr_expect_eq(c->listen[1].addrlen, sizeof(*b));
	cr_expect(IN6_IS_ADDR_LOOPBACK(&b->sin6_addr));
	cr_expect_eq(ntohs(b->sin6_port), 143);
	cr_expect_eq(c->listen[1].line, 3);
	a = (const void *)&c->listen[2].addr;
	cr_expect_eq(a->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
	cr_expect_eq(ntohs(a->sin_port), 1143);
	conf_unref(c);
}

Test(conf, listen_errors)
{
	conf_t_fails("listen = (\n { address = \"0.0.0.0:143\"; },\n { address = \"*:143\"; }\n);\n",
		     "3: listen.[1].address: duplicate address (first at line 2)");
	conf_t_fails("listen = ( { address = \"[::1]:143\"; },\n { address = \"[0:0::1]:143\"; } );\n",
		     "2: listen.[1].address: duplicate address (first at line 1)");
	conf_t_fails("listen = ( );\n", "1: listen: must have at least one entry");
	conf_t_fails("listen = (\n { protocol = \"imap\"; }\n);\n",
		     "2: listen.[0].address: required setting is missing");
	static const char *const bad[] = {
		"143", "0.0.0.0", "0.0.0.0:", "0.0.0.0:0", "0.0.0.0:65536", "::1:143", "[::1]",
		"[::1]143", "localhost:143", "1.2.3:143", "[1.2.3.4]:143", ":143", "*:x",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[128];
		snprintf(text, sizeof(text), "listen = ( { address = \"%s\"; } );\n", bad[i]);
		conf_t_fails(text, "1: listen.[0].address: must be IP:PORT, [IPv6]:PORT or *:PORT");
	}

	char text[4096] = "listen = ( ";
	for (int i = 0; i <= CONF_MAX_LISTEN; i++) {
		size_t n = strlen(text);
		snprintf(text + n, sizeof(text) - n, "%s{ address = \"*:%d\"; }", i > 0 ? ", " : "", 1000 + i);
	}
	strcat(text, " );\n");
	conf_t_fails(text, "1: listen: must have at most 32 entries");
}

Test(conf, parse_addr)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;

	cr_expect_eq(conf_parse_addr("192.0.2.1:65535", &ss, &len), 0);
	cr_expect_eq(len, sizeof(struct sockaddr_in));
	cr_expect_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 65535);
	cr_expect_eq(conf_parse_addr("[2001:db8::1]:1", &ss, &len), 0);
	cr_expect_eq(len, sizeof(struct sockaddr_in6));
	cr_expect_eq(conf_parse_addr("[::]:143", &ss, &len), 0);
	cr_expect_eq(conf_parse_addr("*:143", &ss, &len), 0);
	cr_expect_eq(conf_parse_addr("", &ss, &len), -1);
	cr_expect_eq(conf_parse_addr("[]:143", &ss, &len), -1);
	cr_expect_eq(conf_parse_addr("1.2.3.4:143 ", &ss, &len), -1);
	cr_expect_eq(conf_parse_addr("1.2.3.4:+143", &ss, &len), -1);
	cr_expect_eq(conf_parse_addr("1.2.3.4:000143", &ss, &len), -1);
	cr_expect_eq(conf_parse_addr(NULL, &ss, &len), -1);
	cr_expect_str_eq(conf_proto_names[CONF_PROTO_IMAP], "imap");
}

Test(conf, lookup_urls)
{
	struct conf *c = conf_t_load(
		"lookup = { servers = [\n"
		"  \"http://127.0.0.1\",\n"
		"  \"http://127.0.0.1:8080\",\n"
		"  \"http://127.0.0.1/x\",\n"
		"  \"HTTP://[::1]:7073/a/b?c=d\",\n"
		"  \"http://localhost\"\n"
		"]; };\n");

	cr_assert_eq(c->lookup.nservers, 5);
	const struct conf_lookup_server *s = c->lookup.servers;
	cr_expect_str_eq(s[0].url, "http://127.0.0.1");
	cr_expect_str_eq(s[0].host, "127.0.0.1");
	cr_expect_str_eq(s[0].path, "/service/extension/nginx-lookup");
	const struct sockaddr_in *a = (const void *)&s[0].addr;
	cr_expect_eq(s[0].addrlen, sizeof(*a));
	cr_expect_eq(ntohs(a->sin_port), 7072);
	cr_expect_eq(a->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
	a = (const void *)&s[1].addr;
	cr_expect_eq(ntohs(a->sin_port), 8080);
	cr_expect_str_eq(s[1].path, "/service/extension/nginx-lookup");
	cr_expect_str_eq(s[2].path, "/x");
	cr_expect_str_eq(s[3].host, "[::1]");
	cr_expect_str_eq(s[3].path, "/a/b?c=d");
	cr_expect_eq(ntohs(((const struct sockaddr_in6 *)(const void *)&s[3].addr)->sin6_port), 7073);
	cr_expect_str_eq(s[4].host, "localhost");
	cr_expect_gt(s[4].addrlen, 0);
	conf_unref(c);
}

/* Zimbra's 7072 is HTTPS: https:// URLs get TLS and a client context. */
Test(conf, lookup_https)
{
	struct conf *c = conf_t_load("lookup = { servers = [ \"https://127.0.0.1/x\", \"http://127.0.0.1\" ]; };\n");

	cr_assert_not_null(c);
	cr_expect(c->lookup.servers[0].tls);
	cr_expect(!c->lookup.servers[1].tls);
	cr_expect_eq(ntohs(((const struct sockaddr_in *)(const void *)&c->lookup.servers[0].addr)->sin_port), 7072);
	cr_expect_not_null(c->tls_client);
	conf_unref(c);
}

Test(conf, lookup_url_errors)
{
	conf_t_fails("lookup = { servers = [ \"http://127.0.0.1\",\n \"ftp://x\" ]; };\n",
		     "2: lookup.servers.[1]: must be an http:// or https:// URL");
	conf_t_fails("lookup = { servers = [ \"127.0.0.1:7072\" ]; };\n",
		     "1: lookup.servers.[0]: must be an http:// or https:// URL");
	conf_t_fails("lookup = { servers = [ \"http://\" ]; };\n",
		     "1: lookup.servers.[0]: bad host name in URL");
	conf_t_fails("lookup = { servers = [ \"http://user@host/\" ]; };\n",
		     "1: lookup.servers.[0]: bad host name in URL");
	conf_t_fails("lookup = { servers = [ \"http://a b/\" ]; };\n",
		     "1: lookup.servers.[0]: bad host name in URL");
	conf_t_fails("lookup = { servers = [ \"http://h:0/\" ]; };\n",
		     "1: lookup.servers.[0]: bad port in URL");
	conf_t_fails("lookup = { servers = [ \"http://h:99999\" ]; };\n",
		     "1: lookup.servers.[0]: bad port in URL");
	conf_t_fails("lookup = { servers = [ \"http://h:/\" ]; };\n",
		     "1: lookup.servers.[0]: bad port in URL");
	conf_t_fails("lookup = { servers = [ \"http://[::1/\" ]; };\n",
		     "1: lookup.servers.[0]: bad IPv6 address in URL");
	conf_t_fails("lookup = { servers = [ \"http://[zz]/\" ]; };\n",
		     "1: lookup.servers.[0]: bad IPv6 address in URL");
	conf_t_fails("lookup = { servers = [ \"http://[::1]x\" ]; };\n",
		     "1: lookup.servers.[0]: bad URL");
	conf_t_fails("lookup = { servers = [ \"http://h/a b\" ]; };\n",
		     "1: lookup.servers.[0]: bad character in URL path");
	conf_t_fails("lookup = { servers = [ 7072 ]; };\n", "1: lookup.servers.[0]: must be a string");

	/* Names are resolved at load; the resolver's wording is not ours. */
	char err[512], want[512];
	conf_t_write("lookup = { servers = [ \"http://no-such-host.invalid/\" ]; };\n");
	cr_expect_null(conf_load(conf_t_file, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s:1: lookup.servers.[0]: cannot resolve no-such-host.invalid: ",
		 conf_t_file);
	cr_expect_eq(strncmp(err, want, strlen(want)), 0, "%s", err);

	char text[2048] = "lookup = { servers = [ ";
	for (int i = 0; i <= CONF_MAX_LOOKUP_SERVERS; i++) {
		size_t n = strlen(text);
		snprintf(text + n, sizeof(text) - n, "%s\"http://127.0.0.%d\"", i > 0 ? ", " : "", i + 1);
	}
	strcat(text, " ]; };\n");
	conf_t_fails(text, "1: lookup.servers: must have at most 16 entries");
}

Test(conf, refcount)
{
	struct conf *c = conf_t_load("workers = 1;\n");

	cr_expect_eq(atomic_load(&c->refs), 1);
	cr_expect_eq(conf_ref(c), c);
	cr_expect_eq(conf_ref(c), c);
	cr_expect_eq(atomic_load(&c->refs), 3);
	conf_unref(c);
	conf_unref(c);
	cr_expect_eq(atomic_load(&c->refs), 1);
	cr_expect_eq(c->workers, 1);
	/* The last reference frees it (checked by valgrind/ASan). */
	conf_unref(c);
	cr_expect_null(conf_ref(NULL));
	conf_unref(NULL);
}

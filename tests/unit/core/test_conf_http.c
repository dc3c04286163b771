/*
 * Tests for core/conf_http.c: the http group's defaults, settings and
 * errors; listener modes; and the http/httpssl default backend port.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "conf.h"

static char ch_t_dir[64];
static char ch_t_file[128];

static void ch_t_setup(void)
{
	snprintf(ch_t_dir, sizeof(ch_t_dir), "/tmp/gh-conf-http-XXXXXX");
	cr_assert_not_null(mkdtemp(ch_t_dir));
	snprintf(ch_t_file, sizeof(ch_t_file), "%s/t.conf", ch_t_dir);
}

static void ch_t_teardown(void)
{
	unlink(ch_t_file);
	rmdir(ch_t_dir);
}

TestSuite(conf_http, .init = ch_t_setup, .fini = ch_t_teardown);

static void ch_t_write(const char *text)
{
	FILE *f = fopen(ch_t_file, "w");

	cr_assert_not_null(f);
	cr_assert_eq(fwrite(text, 1, strlen(text), f), strlen(text));
	cr_assert_eq(fclose(f), 0);
}

static struct conf *ch_t_load(const char *text)
{
	char err[512] = "";

	ch_t_write(text);
	struct conf *c = conf_load(ch_t_file, err, sizeof(err));
	cr_assert_not_null(c, "unexpected error: %s\nfor:\n%s", err, text);
	return c;
}

static void ch_t_fails(const char *text, const char *suffix)
{
	char err[512] = "", want[512];

	ch_t_write(text);
	struct conf *c = conf_load(ch_t_file, err, sizeof(err));
	cr_expect_null(c, "loaded, expected \"%s\" for:\n%s", suffix, text);
	if (c != NULL) {
		conf_unref(c);
		return;
	}
	snprintf(want, sizeof(want), "%s:%s", ch_t_file, suffix);
	cr_expect_str_eq(err, want, "got  \"%s\"\nwant \"%s\"\nfor:\n%s", err, want, text);
}

Test(conf_http, defaults)
{
	struct conf *c = ch_t_load("");

	cr_assert_eq(c->http.nbackends, 0);
	cr_assert_eq(c->http.backend_port, 8080);
	cr_assert_eq(c->http.https_port, 443);
	cr_assert_eq(c->http.max_header_size, 16384);
	cr_assert_eq(c->http.max_headers, 100);
	cr_assert_eq(c->http.max_uri, 8192);
	cr_assert_float_eq(c->http.header_timeout, 30.0, 1e-9);
	cr_assert_float_eq(c->http.keepalive_timeout, 75.0, 1e-9);
	cr_assert_float_eq(c->http.backend_timeout, 60.0, 1e-9);
	cr_assert_eq(c->http.backend_keepalive, 32);
	cr_assert_eq(c->http.open_file_cache_max, 1000);
	cr_assert_float_eq(c->http.open_file_cache_valid, 2.0, 1e-9);
	cr_assert_null(c->http.access_log);
	cr_assert_null(c->http.server_name);
	cr_assert_eq(conf_backend_port(c, "http"), 8080);
	cr_assert_eq(conf_backend_port(c, "httpssl"), 8080);
	cr_assert_eq(conf_backend_port(c, "imap"), 7143);
	conf_unref(c);
}

Test(conf_http, the_agreed_configuration)
{
	struct conf *c = ch_t_load(
		"listen = (\n"
		"  { address = \"127.0.0.1:8880\"; protocol = \"http\"; mode = \"both\"; },\n"
		"  { address = \"127.0.0.1:8881\"; protocol = \"http\"; },\n"
		"  { address = \"127.0.0.1:8143\"; protocol = \"imap\"; }\n"
		");\n"
		"http = {\n"
		"  backends = [ \"127.0.0.1:8080\", \"127.0.0.2\", \"[::1]:81\" ];\n"
		"  backend_port = 8081; server_name = \"Mail.Example.com\"; https_port = 8443;\n"
		"  max_header_size = 8192; max_headers = 50; max_uri = 4096;\n"
		"  header_timeout = 1.5; keepalive_timeout = 10; backend_timeout = 2.0;\n"
		"  backend_keepalive = 0; access_log = \"/tmp/x.log\";\n"
		"  open_file_cache_max = 10; open_file_cache_valid = 0.5;\n"
		"};\n");

	cr_assert_eq(c->listen[0].proto, CONF_PROTO_HTTP);
	cr_assert_eq(c->http.open_file_cache_max, 10);
	cr_assert_float_eq(c->http.open_file_cache_valid, 0.5, 1e-9);
	cr_assert_eq(c->listen[0].mode, CONF_HTTP_MODE_BOTH);
	cr_assert_eq(c->listen[1].mode, CONF_HTTP_MODE_REDIRECT);
	cr_assert_eq(c->listen[0].starttls, CONF_STARTTLS_OFF);
	cr_assert_eq(c->http.nbackends, 3);
	cr_assert_str_eq(c->http.backends[0].host, "127.0.0.1");
	cr_assert_eq(c->http.backends[0].port, 8080);
	cr_assert_str_eq(c->http.backends[1].host, "127.0.0.2");
	cr_assert_eq(c->http.backends[1].port, 8081, "no port: http.backend_port");
	cr_assert_str_eq(c->http.backends[2].host, "::1");
	cr_assert_eq(c->http.backends[2].port, 81);
	cr_assert_str_eq(c->http.server_name, "mail.example.com");
	cr_assert_eq(c->http.https_port, 8443);
	cr_assert_eq(c->http.max_header_size, 8192);
	cr_assert_eq(c->http.max_headers, 50);
	cr_assert_eq(c->http.max_uri, 4096);
	cr_assert_float_eq(c->http.header_timeout, 1.5, 1e-9);
	cr_assert_eq(c->http.backend_keepalive, 0);
	cr_assert_str_eq(c->http.access_log, "/tmp/x.log");
	cr_assert_eq(conf_backend_port(c, "httpssl"), 8081);
	conf_unref(c);

	c = ch_t_load("http = { access_log = \"off\"; };\n");
	cr_assert_null(c->http.access_log);
	conf_unref(c);
	c = ch_t_load("http = { access_log = \"stderr\"; };\n");
	cr_assert_str_eq(c->http.access_log, "stderr");
	conf_unref(c);
}

Test(conf_http, errors)
{
	ch_t_fails("listen = ( { address = \"127.0.0.1:80\"; protocol = \"http\"; mode = \"mixed\"; } );\n"
		   "http = { backends = [\"127.0.0.1:8080\"]; };\n",
		   "1: listen.[0].mode: must be one of redirect, https, both");
	ch_t_fails("listen = ( { address = \"127.0.0.1:143\"; protocol = \"imap\"; mode = \"both\"; } );\n",
		   "1: listen.[0].mode: only for http listeners");
	ch_t_fails("tls = { cert = \"/nonexistent.pem\"; key = \"/nonexistent.key\"; };\n"
		   "listen = ( { address = \"127.0.0.1:443\"; protocol = \"http\"; tls = true; mode = \"both\"; } );\n",
		   "2: listen.[0].mode: only for plain http listeners (this one has tls = true)");
	ch_t_fails("listen = ( { address = \"127.0.0.1:80\"; protocol = \"http\"; starttls = \"optional\"; } );\n",
		   "1: listen.[0].starttls: not for http listeners (use tls = true)");
	ch_t_fails("listen = ( { address = \"127.0.0.1:80\"; protocol = \"http\"; } );\n",
		   "1: http.backends: required with an http listener (the targets of the client-IP hash)");
	ch_t_fails("http = { backends = [ \"a b:80\" ]; };\n", "1: http.backends.[0]: bad host name");
	ch_t_fails("http = { backends = \"127.0.0.1:80\"; };\n",
		   "1: http.backends: must be an array of strings [ \"ip:port\", ... ]");
	ch_t_fails("http = { max_headers = 0; };\n", "1: http.max_headers: must be between 1 and 1000");
	ch_t_fails("http = { server_name = \"bad name\"; };\n", "1: http.server_name: must be a host name");
	ch_t_fails("http = { access_log = \"\"; };\n",
		   "1: http.access_log: must be a file, \"stderr\" or \"off\"");
	ch_t_fails("http = { colour = 1; };\n", "1: http.colour: unknown setting");
}

/*
 * Tests for core/conf_proxy.c: trusted_proxies, the proxy_protocol listener
 * member, limits.proxy_header_timeout, and conf_proxy_trusted().
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "conf.h"

static char cx_t_dir[64];
static char cx_t_file[128];

static void cx_t_setup(void)
{
	snprintf(cx_t_dir, sizeof(cx_t_dir), "/tmp/gh-conf-proxy-XXXXXX");
	cr_assert_not_null(mkdtemp(cx_t_dir));
	snprintf(cx_t_file, sizeof(cx_t_file), "%s/t.conf", cx_t_dir);
}

static void cx_t_teardown(void)
{
	unlink(cx_t_file);
	rmdir(cx_t_dir);
}

TestSuite(conf_proxy, .init = cx_t_setup, .fini = cx_t_teardown);

static struct conf *cx_t_try(const char *text, char *err, size_t errlen)
{
	FILE *f = fopen(cx_t_file, "w");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(text, 1, strlen(text), f), strlen(text));
	cr_assert_eq(fclose(f), 0);
	return conf_load(cx_t_file, err, errlen);
}

static struct conf *cx_t_load(const char *text)
{
	char err[512] = "";
	struct conf *c = cx_t_try(text, err, sizeof(err));
	cr_assert_not_null(c, "unexpected error: %s\nfor:\n%s", err, text);
	return c;
}

static void cx_t_fails(const char *text, const char *needle)
{
	char err[512] = "";
	struct conf *c = cx_t_try(text, err, sizeof(err));
	cr_expect_null(c, "loaded, expected \"%s\"", needle);
	if (c != NULL)
		conf_unref(c);
	cr_expect(strstr(err, needle) != NULL, "error \"%s\" lacks \"%s\"", err, needle);
}

static bool cx_t_trusted(const struct conf *c, const char *ip)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		cr_assert_eq(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		cr_assert_eq(inet_pton(AF_INET, ip, &a->sin_addr), 1);
	}
	return conf_proxy_trusted(c, (const struct sockaddr *)&ss);
}

#define CX_ROUTES "routes = ( { match = \"*\"; server = \"127.0.0.1:7143\"; } );\n"

Test(conf_proxy, defaults)
{
	struct conf *c = cx_t_load(CX_ROUTES "listen = ( { address = \"127.0.0.1:1143\"; } );\n");
	cr_assert_eq(c->ntrusted_proxies, 0);
	cr_assert(!c->listen[0].proxy_protocol);
	cr_assert_float_eq(c->limits.proxy_header_timeout, 3.0, 1e-9);
	cr_assert(!cx_t_trusted(c, "127.0.0.1"));
	conf_unref(c);
}

Test(conf_proxy, settings)
{
	struct conf *c = cx_t_load(CX_ROUTES
		"trusted_proxies = [ \"127.0.0.1/32\", \"10.0.0.0/8\", \"::1/128\", \"192.168.1.7\", \"172.16.0.0/12\" ];\n"
		"limits = { proxy_header_timeout = 1.5; };\n"
		"listen = ( { address = \"127.0.0.1:1143\"; proxy_protocol = true; },\n"
		"           { address = \"127.0.0.1:1144\"; proxy_protocol = false; } );\n");
	cr_assert_eq(c->ntrusted_proxies, 5);
	cr_assert(c->listen[0].proxy_protocol);
	cr_assert(!c->listen[1].proxy_protocol);
	cr_assert_float_eq(c->limits.proxy_header_timeout, 1.5, 1e-9);
	cr_assert(cx_t_trusted(c, "127.0.0.1"));
	cr_assert(!cx_t_trusted(c, "127.0.0.2"));
	cr_assert(cx_t_trusted(c, "10.255.1.2"));
	cr_assert(!cx_t_trusted(c, "11.0.0.1"));
	cr_assert(cx_t_trusted(c, "::1"));
	cr_assert(!cx_t_trusted(c, "::2"));
	cr_assert(cx_t_trusted(c, "::ffff:10.1.1.1"));
	cr_assert(cx_t_trusted(c, "192.168.1.7"));
	cr_assert(!cx_t_trusted(c, "192.168.1.8"));
	cr_assert(cx_t_trusted(c, "172.31.255.255"));
	cr_assert(!cx_t_trusted(c, "172.32.0.0"));
	conf_unref(c);
}

Test(conf_proxy, errors)
{
	cx_t_fails(CX_ROUTES "trusted_proxies = [ \"10.0.0.1/8\" ];\n"
		   "listen = ( { address = \"127.0.0.1:1143\"; } );\n", "without host bits");
	cx_t_fails(CX_ROUTES "trusted_proxies = [ \"10.0.0.0/33\" ];\n"
		   "listen = ( { address = \"127.0.0.1:1143\"; } );\n", "ADDRESS/PREFIX");
	cx_t_fails(CX_ROUTES "trusted_proxies = [ \"example.com/8\" ];\n"
		   "listen = ( { address = \"127.0.0.1:1143\"; } );\n", "ADDRESS/PREFIX");
	cx_t_fails(CX_ROUTES "trusted_proxies = \"10.0.0.0/8\";\n"
		   "listen = ( { address = \"127.0.0.1:1143\"; } );\n", "must be a list");
	cx_t_fails(CX_ROUTES "listen = ( { address = \"127.0.0.1:1143\"; proxy_protocol = true; } );\n",
		   "needs trusted_proxies");
	cx_t_fails(CX_ROUTES "trusted_proxies = [ \"::1/128\" ];\n"
		   "listen = ( { address = \"127.0.0.1:1143\"; proxy_protocol = 1; } );\n",
		   "must be true or false");
	cx_t_fails(CX_ROUTES "limits = { proxy_header_timeout = 0.0; };\n"
		   "listen = ( { address = \"127.0.0.1:1143\"; } );\n", "proxy_header_timeout");
}

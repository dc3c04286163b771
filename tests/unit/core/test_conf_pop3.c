/*
 * Tests for proxy/conf_pop3.c: the pop3 group's defaults, every setting and
 * the exact text of its errors; POP3 listeners; and the per-protocol default
 * port of static routes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "conf.h"

static char cp_t_dir[64];
static char cp_t_file[128];

static void cp_t_setup(void)
{
	snprintf(cp_t_dir, sizeof(cp_t_dir), "/tmp/gh-conf-pop3-XXXXXX");
	cr_assert_not_null(mkdtemp(cp_t_dir));
	snprintf(cp_t_file, sizeof(cp_t_file), "%s/t.conf", cp_t_dir);
}

static void cp_t_teardown(void)
{
	unlink(cp_t_file);
	rmdir(cp_t_dir);
}

TestSuite(conf_pop3, .init = cp_t_setup, .fini = cp_t_teardown);

static void cp_t_write(const char *text)
{
	FILE *f = fopen(cp_t_file, "w");

	cr_assert_not_null(f);
	cr_assert_eq(fwrite(text, 1, strlen(text), f), strlen(text));
	cr_assert_eq(fclose(f), 0);
}

static struct conf *cp_t_load(const char *text)
{
	char err[512] = "";

	cp_t_write(text);
	struct conf *c = conf_load(cp_t_file, err, sizeof(err));
	cr_assert_not_null(c, "unexpected error: %s\nfor:\n%s", err, text);
	return c;
}

/* The load fails with exactly "<file>:" + suffix. */
static void cp_t_fails(const char *text, const char *suffix)
{
	char err[512] = "", want[512];

	cp_t_write(text);
	struct conf *c = conf_load(cp_t_file, err, sizeof(err));
	cr_expect_null(c, "loaded, expected \"%s\" for:\n%s", suffix, text);
	if (c != NULL) {
		conf_unref(c);
		return;
	}
	snprintf(want, sizeof(want), "%s:%s", cp_t_file, suffix);
	cr_expect_str_eq(err, want, "got  \"%s\"\nwant \"%s\"\nfor:\n%s", err, want, text);
}

Test(conf_pop3, defaults)
{
	struct conf *c = cp_t_load("");
	const char *caps[] = { "TOP", "USER", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE" };

	cr_expect_str_eq(c->pop3.greeting, "POP3 ready");
	cr_assert_eq(c->pop3.ncaps, 6);
	for (int i = 0; i < 6; i++)
		cr_expect_str_eq(c->pop3.caps[i], caps[i]);
	cr_expect_eq(c->pop3.sasl, CONF_SASL_PLAIN | CONF_SASL_LOGIN);
	cr_expect_eq(c->pop3.client_ip_command, CONF_POP3_CLIENT_IP_XOIP);
	cr_expect_eq(c->pop3.backend_auth, CONF_POP3_BACKEND_AUTH_USER);
	cr_expect_not(c->pop3.backend_pipelining);
	cr_expect_eq(c->pop3.backend_port, 7110);
	conf_unref(c);
}

Test(conf_pop3, every_setting)
{
	struct conf *c = cp_t_load(
		"pop3 = {\n"
		"  greeting = \"Zimbra POP3 ready\";\n"
		"  capabilities = [ \"TOP\", \"EXPIRE 31\", \"LOGIN-DELAY 900\", \"X-custom\" ];\n"
		"  sasl_mechanisms = [ \"XOAUTH2\", \"PLAIN\" ];\n"
		"  client_ip_command = \"xclient\";\n"
		"  backend_auth = \"plain\";\n"
		"  backend_pipelining = true;\n"
		"  backend_port = 110;\n"
		"};\n"
		"listen = ( { address = \"127.0.0.1:1110\"; protocol = \"pop3\"; },\n"
		"           { address = \"127.0.0.1:1143\"; protocol = \"imap\"; } );\n");

	cr_expect_str_eq(c->pop3.greeting, "Zimbra POP3 ready");
	cr_assert_eq(c->pop3.ncaps, 4);
	cr_expect_str_eq(c->pop3.caps[1], "EXPIRE 31");
	cr_expect_str_eq(c->pop3.caps[3], "X-custom");
	cr_expect_eq(c->pop3.sasl, CONF_SASL_PLAIN | CONF_SASL_XOAUTH2);
	cr_expect_eq(c->pop3.client_ip_command, CONF_POP3_CLIENT_IP_XCLIENT);
	cr_expect_eq(c->pop3.backend_auth, CONF_POP3_BACKEND_AUTH_PLAIN);
	cr_expect(c->pop3.backend_pipelining);
	cr_expect_eq(c->pop3.backend_port, 110);
	cr_assert_eq(c->nlisten, 2);
	cr_expect_eq(c->listen[0].proto, CONF_PROTO_POP3);
	cr_expect_eq(c->listen[1].proto, CONF_PROTO_IMAP);
	conf_unref(c);

	c = cp_t_load("pop3 = { capabilities = [ ]; sasl_mechanisms = [ ]; client_ip_command = \"none\"; };\n");
	cr_expect_eq(c->pop3.ncaps, 0);
	cr_expect_eq(c->pop3.sasl, 0);
	cr_expect_eq(c->pop3.client_ip_command, CONF_POP3_CLIENT_IP_NONE);
	conf_unref(c);
}

Test(conf_pop3, errors)
{
	cp_t_fails("pop3 = { greeting = \"\"; };\n", "1: pop3.greeting: must be 1 to 200 characters");
	cp_t_fails("pop3 = {\n greeting = \"tab\\there\"; };\n", "2: pop3.greeting: must be printable ASCII");
	cp_t_fails("pop3 = { greeting = 1; };\n", "1: pop3.greeting: must be a string");
	cp_t_fails("pop3 = { capabilities = \"TOP\"; };\n",
		   "1: pop3.capabilities: must be an array of strings [ ... ]");
	cp_t_fails("pop3 = { capabilities = [ \"TOP\", \"\" ]; };\n",
		   "1: pop3.capabilities.[1]: must be a CAPA line of 1 to 64 printable characters"
		   " (NAME or NAME PARAMS)");
	cp_t_fails("pop3 = { capabilities = [ \".\" ]; };\n",
		   "1: pop3.capabilities.[0]: must be a CAPA line of 1 to 64 printable characters"
		   " (NAME or NAME PARAMS)");
	cp_t_fails("pop3 = { capabilities = [ \"EXPIRE  31\" ]; };\n",
		   "1: pop3.capabilities.[0]: must be a CAPA line of 1 to 64 printable characters"
		   " (NAME or NAME PARAMS)");
	cp_t_fails("pop3 = { capabilities = [ \"TOP \" ]; };\n",
		   "1: pop3.capabilities.[0]: must be a CAPA line of 1 to 64 printable characters"
		   " (NAME or NAME PARAMS)");
	cp_t_fails("pop3 = { capabilities = [ \"SASL PLAIN\" ]; };\n",
		   "1: pop3.capabilities.[0]: SASL is added by gatehouse itself");
	cp_t_fails("pop3 = { capabilities = [ \"stls\" ]; };\n",
		   "1: pop3.capabilities.[0]: stls is added by gatehouse itself");
	cp_t_fails("pop3 = { capabilities = [ \"EXPIRE 31\", \"expire 60\" ]; };\n",
		   "1: pop3.capabilities.[1]: duplicate capability expire");
	cp_t_fails("pop3 = { sasl_mechanisms = [ \"CRAM-MD5\" ]; };\n",
		   "1: pop3.sasl_mechanisms.[0]: must be one of PLAIN, LOGIN, XOAUTH2, OAUTHBEARER");
	cp_t_fails("pop3 = { sasl_mechanisms = [ \"plain\" ]; };\n",
		   "1: pop3.sasl_mechanisms.[0]: must be one of PLAIN, LOGIN, XOAUTH2, OAUTHBEARER");
	cp_t_fails("pop3 = { sasl_mechanisms = [ \"LOGIN\", \"LOGIN\" ]; };\n",
		   "1: pop3.sasl_mechanisms.[1]: duplicate mechanism LOGIN");
	cp_t_fails("pop3 = { sasl_mechanisms = \"PLAIN\"; };\n",
		   "1: pop3.sasl_mechanisms: must be an array of strings [ ... ]");
	cp_t_fails("pop3 = { client_ip_command = \"XOIP\"; };\n",
		   "1: pop3.client_ip_command: must be one of xoip, xclient, none");
	cp_t_fails("pop3 = { backend_auth = \"login\"; };\n",
		   "1: pop3.backend_auth: must be one of user, plain");
	cp_t_fails("pop3 = { backend_pipelining = 1; };\n",
		   "1: pop3.backend_pipelining: must be true or false");
	cp_t_fails("pop3 = { backend_port = 0; };\n", "1: pop3.backend_port: must be between 1 and 65535");
	cp_t_fails("pop3 = { backend_port = 65536; };\n",
		   "1: pop3.backend_port: must be between 1 and 65535");
	cp_t_fails("pop3 = {\n send_id = true; };\n", "2: pop3.send_id: unknown setting");
	cp_t_fails("pop3 = 5;\n", "1: pop3: must be a group { ... }");
	cp_t_fails("listen = ( { address = \"127.0.0.1:110\"; protocol = \"pop\"; } );\n",
		   "1: listen.[0].protocol: must be one of imap, pop3, http, tcp");
}

Test(conf_pop3, capabilities_bound)
{
	char text[4096] = "pop3 = { capabilities = [ ";

	for (int i = 0; i < 33; i++) {
		size_t n = strlen(text);
		snprintf(text + n, sizeof(text) - n, "%s\"X-%d\"", i ? ", " : "", i);
	}
	strcat(text, " ]; };\n");
	cp_t_fails(text, "1: pop3.capabilities: must have at most 32 entries");
}

/* A route without a port takes the default of the protocol being routed. */
Test(conf_pop3, route_default_port_per_protocol)
{
	struct conf *c = cp_t_load(
		"routes = ( { match = \"*\"; server = \"127.0.0.1\"; },\n"
		"           { match = \"@x\"; server = \"127.0.0.1:2000\"; } );\n"
		"imap = { backend_port = 1143; };\n"
		"pop3 = { backend_port = 1110; };\n");

	cr_expect_eq(c->routes[0].port, 0);
	cr_expect_eq(c->routes[1].port, 2000);
	cr_expect_eq(conf_backend_port(c, "imap"), 1143);
	cr_expect_eq(conf_backend_port(c, "imapssl"), 1143);
	cr_expect_eq(conf_backend_port(c, "pop3"), 1110);
	cr_expect_eq(conf_backend_port(c, "pop3ssl"), 1110);
	cr_expect_eq(conf_backend_port(c, NULL), 1143);
	conf_unref(c);
}

/*
 * test_rcache_key.c - memcached keys and values of the route cache: the
 * reference's exact strings, raw and hashed; invalid names never make a
 * key; route values in every form, and garbage.
 */
#include <string.h>

#include <criterion/criterion.h>

#include "rcache.h"

static const char ALICE_SHA[] = "0519f96c40c6739a4896e95c02b77ba6eecba0ff988ccb079bdd8186718c7b8b";

Test(rcache_key, route_by_user_raw)
{
	struct rcache_key k;

	cr_assert(rcache_key_route_user(&k, "imap", "alice@example.com", false));
	cr_assert_str_eq(k.raw, "route:proto=imap;user=alice@example.com");
	cr_assert_eq(k.raw_len, strlen(k.raw));
	cr_assert_str_eq(k.wire, k.raw, "a short raw key goes on the wire as it is");
	cr_assert_eq(k.wire_len, k.raw_len);

	cr_assert(rcache_key_route_user(&k, "pop3ssl", "bob", false));
	cr_assert_str_eq(k.wire, "route:proto=pop3ssl;user=bob");
}

Test(rcache_key, alias_and_id_raw)
{
	struct rcache_key k;

	cr_assert(rcache_key_alias(&k, "bob", "192.0.2.7", false));
	cr_assert_str_eq(k.wire, "alias:user=bob;ip=192.0.2.7");
	cr_assert(rcache_key_alias(&k, "bob", "2001:db8::7", false));
	cr_assert_str_eq(k.wire, "alias:user=bob;ip=2001:db8::7");
	cr_assert(rcache_key_route_id(&k, "http", "6d5f0b1e-7c2a-4f7e-9a57-2f7a3c8e1d00", false));
	cr_assert_str_eq(k.wire, "route:proto=http;id=6d5f0b1e-7c2a-4f7e-9a57-2f7a3c8e1d00");
}

Test(rcache_key, hashed_is_sha256_hex_of_the_raw_key)
{
	struct rcache_key k;

	cr_assert(rcache_key_route_user(&k, "imap", "alice@example.com", true));
	cr_assert_str_eq(k.raw, "route:proto=imap;user=alice@example.com",
			 "the raw key still picks the server");
	cr_assert_str_eq(k.wire, ALICE_SHA);
	cr_assert_eq(k.wire_len, 64);

	cr_assert(rcache_key_alias(&k, "bob", "192.0.2.7", true));
	cr_assert_str_eq(k.wire, "aee1b682f8b1a4b5bbdef1b25407f92fd90469f97a31349c2a8c5235350eae12");
	cr_assert(rcache_key_route_id(&k, "http", "6d5f0b1e-7c2a-4f7e-9a57-2f7a3c8e1d00", true));
	cr_assert_str_eq(k.wire, "a1d73cdd55c8cc3f7e7bfa0bf5cdd9c7ca1140e75bc2fb27490f6e67783ee7b8");
}

Test(rcache_key, too_long_for_memcached_is_md5_unless_hashed)
{
	struct rcache_key k;
	char user[241];

	memset(user, 'u', 240);
	user[240] = '\0';
	cr_assert(rcache_key_route_user(&k, "imap", user, false));
	cr_assert_eq(k.raw_len, 262);
	cr_assert_str_eq(k.wire, "ffc443e3959e9716637feb47bc513877");
	cr_assert(rcache_key_route_user(&k, "imap", user, true));
	cr_assert_str_eq(k.wire, "e79edb08170039766e79266e3b8f7d2b0d82091e00cc08ab9f10820650f22028");
}

Test(rcache_key, invalid_parts_make_no_key)
{
	struct rcache_key k;
	char long_name[ROUTE_MAX_USER + 1];
	const char *bad_names[] = {
		"", "alice\r\nset route:proto=imap;user=x 0 0 1", "a b", "tab\tbed", "nul\x01",
		"del\x7f", "cr\r", "lf\n",
	};

	memset(long_name, 'x', ROUTE_MAX_USER);
	long_name[ROUTE_MAX_USER] = '\0';
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		cr_assert_not(rcache_key_route_user(&k, "imap", bad_names[i], false), "%zu", i);
		cr_assert_not(rcache_key_route_user(&k, "imap", bad_names[i], true), "%zu", i);
		cr_assert_not(rcache_key_alias(&k, bad_names[i], "192.0.2.7", false), "%zu", i);
		cr_assert_not(rcache_key_alias(&k, "bob", bad_names[i], false), "%zu", i);
		cr_assert_not(rcache_key_route_id(&k, "http", bad_names[i], true), "%zu", i);
		cr_assert_eq(k.raw_len, 0);
		cr_assert_eq(k.wire_len, 0);
		cr_assert_str_eq(k.wire, "");
	}
	cr_assert_not(rcache_key_route_user(&k, "imap", long_name, false));
	cr_assert_not(rcache_key_route_user(&k, "imap", NULL, false));
	cr_assert_not(rcache_key_alias(&k, "bob", NULL, false));
	/* The protocol is lowercase alphanumeric, from the code, never from a user. */
	cr_assert_not(rcache_key_route_user(&k, "IMAP", "bob", false));
	cr_assert_not(rcache_key_route_user(&k, "im;ap", "bob", false));
	cr_assert_not(rcache_key_route_user(&k, "", "bob", false));
	cr_assert_not(rcache_key_route_user(&k, "imapimapimapimapi", "bob", false));
	/* 8-bit (UTF-8) names are fine. */
	cr_assert(rcache_key_route_user(&k, "imap", "j\xc3\xb6rg@example.com", false));
	cr_assert_str_eq(k.wire, "route:proto=imap;user=j\xc3\xb6rg@example.com");
}

Test(rcache_key, value_format)
{
	char v[RCACHE_MAX_VALUE];

	cr_assert_eq(rcache_value_format(v, sizeof(v), "10.0.0.21", 7143), 14);
	cr_assert_str_eq(v, "10.0.0.21:7143");
	cr_assert_eq(rcache_value_format(v, sizeof(v), "2001:db8::21", 7143), 19);
	cr_assert_str_eq(v, "[2001:db8::21]:7143");
	cr_assert_gt(rcache_value_format(v, sizeof(v), "mail2.example.com", 143), 0);
	cr_assert_str_eq(v, "mail2.example.com:143");
	cr_assert_eq(rcache_value_format(v, 8, "10.0.0.21", 7143), -1);
	cr_assert_eq(rcache_value_format(v, sizeof(v), "", 7143), -1);
	cr_assert_eq(rcache_value_format(v, sizeof(v), "10.0.0.21", 0), -1);
}

static void parses(const char *v, const char *host, unsigned port)
{
	char h[ROUTE_MAX_HOST];
	uint16_t p = 0;

	cr_assert(rcache_value_parse(v, strlen(v), h, sizeof(h), &p), "%s", v);
	cr_assert_str_eq(h, host, "%s", v);
	cr_assert_eq(p, port, "%s", v);
}

Test(rcache_key, value_parse_good)
{
	parses("10.0.0.21:7143", "10.0.0.21", 7143);
	parses("[2001:db8::21]:7143", "2001:db8::21", 7143);
	parses("[::1]:1", "::1", 1);
	parses("mail2.example.com:65535", "mail2.example.com", 65535);
	parses("h:143", "h", 143);
}

Test(rcache_key, value_parse_garbage)
{
	const char *bad[] = {
		"", ":", "10.0.0.21", "10.0.0.21:", ":7143", "10.0.0.21:0", "10.0.0.21:65536",
		"10.0.0.21:99999999", "10.0.0.21:71a3", "10.0.0.21:-1", "10.0.0.21: 7143",
		"2001:db8::21:7143", "[2001:db8::21]", "[2001:db8::21]7143", "[]:7143",
		"[10.0.0.21]:7143", "[2001:db8::21:7143", "a b:7143", "a\r\n:7143", "x/y:7143",
		"VALUE route 0 5",
	};
	char h[ROUTE_MAX_HOST];
	uint16_t p;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_not(rcache_value_parse(bad[i], strlen(bad[i]), h, sizeof(h), &p), "%s", bad[i]);
	/* A length that stops early is honoured (values are not NUL-terminated). */
	cr_assert(rcache_value_parse("10.0.0.21:7143garbage", 14, h, sizeof(h), &p));
	cr_assert_eq(p, 7143);
	/* A host too long for the caller's buffer. */
	cr_assert_not(rcache_value_parse("10.0.0.21:7143", 14, h, 5, &p));
}

/* ---- the keys of a request's context (issue 16) ---- */

Test(rcache_key, login_qualified_as_zimbra_says)
{
	cr_assert(rcache_login_qualified("john@a.test"));
	cr_assert(rcache_login_qualified("a@b"));
	cr_assert_not(rcache_login_qualified("john"));
	cr_assert_not(rcache_login_qualified("john@"), "an '@' as the last byte does not qualify");
	cr_assert_not(rcache_login_qualified(""));
	cr_assert_not(rcache_login_qualified(NULL));
}

Test(rcache_key, route_name_unqualified_mail_carries_the_proxy_address)
{
	struct rcache_key k;

	cr_assert(rcache_key_route_name(&k, "imapssl", "john", "192.0.2.10", false));
	cr_assert_str_eq(k.wire, "route:proto=imapssl;user=john@192.0.2.10");
	cr_assert(rcache_key_route_name(&k, "pop3", "john", "2001:db8::10", false));
	cr_assert_str_eq(k.wire, "route:proto=pop3;user=john@2001:db8::10");
	/* Two VIPs, two keys. */
	struct rcache_key k2;
	cr_assert(rcache_key_route_name(&k2, "imapssl", "john", "192.0.2.11", false));
	cr_assert_str_neq(k2.raw, "route:proto=imapssl;user=john@192.0.2.10");
	/* A qualified name is the plain Zimbra key, whatever the address. */
	cr_assert(rcache_key_route_name(&k, "imap", "john@a.test", "192.0.2.10", false));
	cr_assert_str_eq(k.wire, "route:proto=imap;user=john@a.test");
	cr_assert(rcache_key_route_name(&k, "imap", "john@a.test", NULL, false));
	cr_assert_str_eq(k.wire, "route:proto=imap;user=john@a.test");
	/* Unqualified without a usable address: no key at all. */
	cr_assert_not(rcache_key_route_name(&k, "imap", "john", NULL, false));
	cr_assert_not(rcache_key_route_name(&k, "imap", "john", "", false));
	cr_assert_not(rcache_key_route_name(&k, "imap", "john", "?", false));
	cr_assert_not(rcache_key_route_name(&k, "imap", "john", "1.2.3.4;x", false));
	cr_assert_not(rcache_key_route_name(&k, "imap", "john", "1.2.3.4\r\nflush_all", false));
	/* Hashed: the SHA-256 of the suffixed raw key. */
	cr_assert(rcache_key_route_name(&k, "imap", "john", "192.0.2.10", true));
	cr_assert_str_eq(k.raw, "route:proto=imap;user=john@192.0.2.10");
	cr_assert_eq(k.wire_len, 64);
}

Test(rcache_key, route_name_unqualified_web_has_no_key)
{
	struct rcache_key k;

	cr_assert_not(rcache_key_route_name(&k, "http", "john", "192.0.2.10", false),
		      "the vhost qualified it: cached only through the vhost alias");
	cr_assert_not(rcache_key_route_name(&k, "httpssl", "john", "192.0.2.10", false));
	cr_assert(rcache_key_route_name(&k, "httpssl", "john@a.test", "192.0.2.10", false));
	cr_assert_str_eq(k.wire, "route:proto=httpssl;user=john@a.test");
}

Test(rcache_key, mail_and_web_aliases_are_separate_namespaces)
{
	struct rcache_key k;

	cr_assert(rcache_key_alias_for(&k, "imapssl", "john", "192.0.2.10", NULL, false));
	cr_assert_str_eq(k.wire, "alias:user=john;ip=192.0.2.10");
	cr_assert(rcache_key_alias_for(&k, "pop3", "john", "192.0.2.10", "a.test", false));
	cr_assert_str_eq(k.wire, "alias:user=john;ip=192.0.2.10", "mail ignores the Host");
	cr_assert(rcache_key_alias_for(&k, "httpssl", "john", "192.0.2.10", "mail.a.test", false));
	cr_assert_str_eq(k.wire, "alias:user=john;vhost=mail.a.test");
	cr_assert(rcache_key_alias_web(&k, "john", "mail.b.test:8443", false));
	cr_assert_str_eq(k.wire, "alias:user=john;vhost=mail.b.test:8443");
	/* Without the qualifier, or with a bad one: no key. */
	cr_assert_not(rcache_key_alias_for(&k, "http", "john", "192.0.2.10", NULL, false));
	cr_assert_not(rcache_key_alias_for(&k, "http", "john", "192.0.2.10", "a b", false));
	cr_assert_not(rcache_key_alias_for(&k, "http", "john", "192.0.2.10", "a\r\nb", false));
	cr_assert_not(rcache_key_alias_for(&k, "imap", "john", NULL, "a.test", false));
	cr_assert_not(rcache_key_alias_for(&k, "imap", "john", "not-an-ip", NULL, false));
}

Test(rcache_key, zimbra_login_suffixes)
{
	cr_assert_eq(route_login_suffix("imap", "john/tb"), 3);
	cr_assert_eq(route_login_suffix("imapssl", "john@a.test/wm"), 3);
	cr_assert_eq(route_login_suffix("pop3", "john/ni"), 3);
	cr_assert_eq(route_login_suffix("pop3ssl", "john/ni"), 3);
	cr_assert_eq(route_login_suffix("http", "john/tb"), 0, "mail only");
	cr_assert_eq(route_login_suffix("imap", "/tb"), 0, "nothing left without it");
	cr_assert_eq(route_login_suffix("imap", "john/TB"), 0, "as the mailstore: case matters");
	cr_assert_eq(route_login_suffix("imap", "john/xx"), 0);
	cr_assert_eq(route_login_suffix("imap", "john/tb/"), 0);
	cr_assert_eq(route_login_suffix("imap", "john"), 0);
	cr_assert_eq(route_login_suffix("imap", NULL), 0);
}

/* The admin console's routes (zmauth_admin): Zimbra's own key, never a user's. */
Test(rcache_key, admin_id_is_zimbras_admin_key)
{
	struct rcache_key k, u;
	const char *id = "6d5f0b1e-7c2a-4f7e-9a57-2f7a3c8e1d00";

	cr_assert(rcache_key_route_admin_id(&k, "httpssl", id, false));
	cr_assert_str_eq(k.wire, "route:proto=httpssl;admin=1;id=6d5f0b1e-7c2a-4f7e-9a57-2f7a3c8e1d00");
	cr_assert(rcache_key_route_id_for(&u, "httpssl", id, false, false));
	cr_assert_str_eq(u.wire, "route:proto=httpssl;id=6d5f0b1e-7c2a-4f7e-9a57-2f7a3c8e1d00");
	cr_assert(rcache_key_route_id_for(&u, "httpssl", id, true, false));
	cr_assert_str_eq(u.wire, k.wire);
	/* Hashed: the hash of the admin key, not of the user's. */
	cr_assert(rcache_key_route_admin_id(&k, "httpssl", id, true));
	cr_assert(rcache_key_route_id(&u, "httpssl", id, true));
	cr_assert_eq(k.wire_len, 64);
	cr_assert_str_neq(k.wire, u.wire);
	cr_assert_not(rcache_key_route_admin_id(&k, "httpssl", "a\r\nflush_all", false));
	cr_assert_not(rcache_key_route_admin_id(&k, "HTTP", id, false));
}

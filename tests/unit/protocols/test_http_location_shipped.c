/*
 * The shipped route tables, conf/carbonio.conf and conf/zimbra.conf, as
 * the loader reads them (certificate paths pointed at a test certificate)
 * and the matcher resolves real request paths of a Carbonio / Zimbra
 * deployment: which location each path gets, and what it does there.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "conf.h"
#include "http_location.h"

static char sh_t_dir[64];

static void sh_t_cert(void)
{
	char path[128];
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *x = X509_new();

	cr_assert_not_null(key);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	X509_NAME *n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"t", -1, -1, 0);
	X509_set_issuer_name(x, n);
	cr_assert(X509_sign(x, key, EVP_sha256()) > 0);
	snprintf(path, sizeof(path), "%s/c.crt", sh_t_dir);
	FILE *f = fopen(path, "w");
	PEM_write_X509(f, x);
	fclose(f);
	snprintf(path, sizeof(path), "%s/c.key", sh_t_dir);
	f = fopen(path, "w");
	PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(key);
}

static struct conf *sh_conf;
static struct http_location_scratch *sh_sc;

/* Load conf/<name>.conf with its certificate lines pointed at ours. */
static void sh_t_load(const char *name, const char *cert_dir)
{
	char src[128], dst[160], err[512] = "", from[128];
	static char text[65536];

	strcpy(sh_t_dir, "/tmp/gh-shipped-XXXXXX");
	cr_assert_not_null(mkdtemp(sh_t_dir));
	sh_t_cert();
	snprintf(src, sizeof(src), "conf/%s.conf", name);
	FILE *f = fopen(src, "r");
	cr_assert_not_null(f, "%s (run from the source root)", src);
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	snprintf(dst, sizeof(dst), "%s/t.conf", sh_t_dir);
	f = fopen(dst, "w");
	cr_assert_not_null(f);
	/* "<cert_dir>/nginx." -> "<tmp>/c." (nginx.crt, nginx.key). */
	snprintf(from, sizeof(from), "%s/nginx.", cert_dir);
	for (const char *p = text; *p != '\0';) {
		const char *hit = strstr(p, from);
		if (hit == NULL) {
			fputs(p, f);
			break;
		}
		fwrite(p, 1, (size_t)(hit - p), f);
		fprintf(f, "%s/c.", sh_t_dir);
		p = hit + strlen(from);
	}
	fclose(f);
	sh_conf = conf_load(dst, err, sizeof(err));
	cr_assert_not_null(sh_conf, "%s: %s", src, err);
	sh_sc = http_location_scratch_new();
	cr_assert_not_null(sh_sc);
}

static void sh_t_fini(void)
{
	char cmd[128];

	http_location_scratch_free(sh_sc);
	if (sh_conf != NULL)
		conf_unref(sh_conf);
	sh_conf = NULL;
	sh_sc = NULL;
	if (sh_t_dir[0] != '\0') {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", sh_t_dir);
		cr_assert_eq(system(cmd), 0);
	}
}

TestSuite(http_location_shipped, .fini = sh_t_fini);

static const char *const sh_kinds[] = {
	[CONF_LOC_EXACT] = "= ", [CONF_LOC_PREFIX] = "", [CONF_LOC_PREFIX_STOP] = "^~ ",
	[CONF_LOC_REGEX] = "~ ", [CONF_LOC_REGEX_ICASE] = "~* ",
};

/* The listener on port `port` of the loaded file. */
static const struct conf_listen *sh_t_listener(int port)
{
	char suffix[16];

	snprintf(suffix, sizeof(suffix), ":%d", port);
	for (int i = 0; i < sh_conf->nlisten; i++) {
		const char *a = sh_conf->listen[i].address;
		if (strlen(a) > strlen(suffix) && strcmp(a + strlen(a) - strlen(suffix), suffix) == 0)
			return &sh_conf->listen[i];
	}
	cr_assert_fail("no listener on %d", port);
	return NULL;
}

/*
 * The raw request path, normalized as the request path will be, gets the
 * location written `match` in the file, and `what` describes its action:
 * an upstream's name, "root:<dir>", "return:<status>", "redirect:<target>"
 * or "logout:<target>".
 */
static void sh_t_route(int port, const char *raw, const char *match, const char *what)
{
	const struct conf_location_table *t = conf_http_locations(sh_conf, sh_t_listener(port));
	char path[1024], got[1200], act[512];
	size_t used;

	int n = http_path_normalize((const uint8_t *)raw, strlen(raw), path, sizeof(path), &used);
	cr_assert_gt(n, 0, "%s does not normalize (%d)", raw, n);
	const struct conf_location *l = http_location_match(t, path, (size_t)n, sh_sc);
	cr_assert_not_null(l, ":%d %s: no location", port, raw);
	snprintf(got, sizeof(got), "%s%s", sh_kinds[l->match], l->pattern);
	cr_expect_str_eq(got, match, ":%d %s: location \"%s\", want \"%s\"", port, raw, got, match);
	switch (l->action) {
	case CONF_LOC_UPSTREAM:
		snprintf(act, sizeof(act), "%s", sh_conf->upstreams[l->upstream].name);
		break;
	case CONF_LOC_STATIC:
		snprintf(act, sizeof(act), "root:%s", l->root);
		break;
	case CONF_LOC_RETURN:
		snprintf(act, sizeof(act), "return:%d", l->status);
		break;
	case CONF_LOC_REDIRECT:
		snprintf(act, sizeof(act), "redirect:%s", l->target);
		break;
	case CONF_LOC_LOGOUT:
		snprintf(act, sizeof(act), "logout:%s", l->target);
		break;
	}
	cr_expect_str_eq(act, what, ":%d %s: action \"%s\", want \"%s\"", port, raw, act, what);
}

Test(http_location_shipped, carbonio_443)
{
	sh_t_load("carbonio", "/opt/zextras/conf");
	sh_t_route(443, "/robots.txt", "= /robots.txt", "return:200");
	sh_t_route(443, "/favicon.ico", "= /favicon.ico", "return:404");
	sh_t_route(443, "/", "= /", "redirect:/carbonio/");
	sh_t_route(443, "/?loginOp=logout", "= /", "redirect:/carbonio/");
	sh_t_route(443, "/logout", "~ /logout", "logout:/static/login/");
	sh_t_route(443, "/carbonio/logout", "~ /logout", "logout:/static/login/");
	sh_t_route(443, "/static/login/", "^~ /static/", "root:/opt/zextras/web");
	sh_t_route(443, "/static/login/assets/index-3f2a.js", "^~ /static/", "root:/opt/zextras/web");
	sh_t_route(443, "/.well-known/acme-challenge/tok3n", "^~ /.well-known/",
		   "root:/opt/zextras/.well-known");
	sh_t_route(443, "/meeting/abc", "/meeting",
		   "root:/opt/zextras/web/iris/carbonio-chats-ui/current/meeting");
	sh_t_route(443, "/files/public/link/access/assets/x.css", "/files/public/link/access/assets/",
		   "root:/opt/zextras/web/carbonio-files-public-folder-ui/assets");
	sh_t_route(443, "/files/public/link/access/Zk3", "/files/public/link/access/",
		   "root:/opt/zextras/web/carbonio-files-public-folder-ui");
	sh_t_route(443, "/services/files/graphql", "/services/files/", "files");
	sh_t_route(443, "/services/files/public/download/1", "/services/files/public/", "files");
	sh_t_route(443, "/services/files/link/abc", "/services/files/link/", "files");
	sh_t_route(443, "/services/chats/events", "/services/chats/events", "ws-collaboration");
	sh_t_route(443, "/services/chats/rooms", "/services/chats/", "ws-collaboration");
	sh_t_route(443, "/services/messaging/ws-xmpp", "/services/messaging/ws-xmpp",
		   "message-dispatcher-http");
	sh_t_route(443, "/services/docs/editor/x", "/services/docs/editor/", "docs-editor");
	sh_t_route(443, "/services/docs/files/open/1", "/services/docs/", "docs-connector");
	sh_t_route(443, "/services/tasks/graphql", "/services/tasks/", "tasks");
	sh_t_route(443, "/services/storages/upload", "/services/storages/", "carbonio-storages");
	sh_t_route(443, "/services/catalog/services", "/services/catalog/", "carbonio-catalog");
	sh_t_route(443, "/services/mobile/tokens", "/services/mobile/tokens",
		   "carbonio-notification-push");
	sh_t_route(443, "/services/certificate-manager/x", "/services/certificate-manager/",
		   "carbonio-certificate-manager");
	sh_t_route(443, "/zx/login/v3/account", "^~ /zx/login/", "carbonio-auth");
	sh_t_route(443, "/zx/auth/supported", "^~ /zx/auth/", "carbonio-auth");
	sh_t_route(443, "/zx/ws-chat", "^~ /zx/ws-", "zx");
	sh_t_route(443, "/zx/powerstore/x", "^~ /zx/powerstore/", "return:404");
	sh_t_route(443, "/zx/team/x", "^~ /zx/", "zx");
	sh_t_route(443, "/carbonio/", "~ ^/carbonio(/|$)",
		   "root:/opt/zextras/web/iris/carbonio-shell-ui/current");
	sh_t_route(443, "/carbonio", "~ ^/carbonio(/|$)",
		   "root:/opt/zextras/web/iris/carbonio-shell-ui/current");
	sh_t_route(443, "/carbonio/focus-mode/meetings/1", "~ ^/carbonio/focus-mode/meetings(/|$)",
		   "root:/opt/zextras/web/iris/carbonio-shell-ui/current");
	sh_t_route(443, "/Microsoft-Server-ActiveSync?Cmd=Ping&User=a", "^~ /Microsoft-Server-ActiveSync",
		   "mailstores");
	sh_t_route(443, "/service/soap/NoOpRequest", "^~ /service/soap/NoOpRequest", "mailstores");
	sh_t_route(443, "/service/soap/WaitSetRequest", "^~ /service/soap/WaitSetRequest", "mailstores");
	sh_t_route(443, "/service/soap/SearchRequest", "~* /(service|principals|dav|\\.well-known|home|shf|user|certauth|spnegoauth)/",
		   "mailstores");
	sh_t_route(443, "/service/extension/drive/a/b", "~* /service/extension/drive/(.*)/(.*)$",
		   "mailstores");
	sh_t_route(443, "/autodiscover/autodiscover.xml", "^~ /autodiscover", "mailstores");
	sh_t_route(443, "/EWS/Exchange.asmx", "~* ^/ews/Exchange.asmx", "mailstores");
	sh_t_route(443, "/home/alice@example.com/Inbox?fmt=rss", "~* /(service|principals|dav|\\.well-known|home|shf|user|certauth|spnegoauth)/",
		   "mailstores");
	sh_t_route(443, "/dav/alice@example.com/Calendar/", "~* /(service|principals|dav|\\.well-known|home|shf|user|certauth|spnegoauth)/",
		   "mailstores");
	sh_t_route(443, "/css/common.css", "/", "mailstores");
	/* Normalized first: dot segments and encoded unreserved characters. */
	sh_t_route(443, "/static/../services/files/x", "/services/files/", "files");
	sh_t_route(443, "/%73tatic/x.js", "^~ /static/", "root:/opt/zextras/web");

	/* Long-poll timeouts, and the cookie guard of the shell. */
	const struct conf_location_table *t = conf_http_locations(sh_conf, sh_t_listener(443));
	const struct conf_location *l = http_location_match(t, "/Microsoft-Server-ActiveSync", 28, sh_sc);
	cr_assert_float_eq(l->read_timeout, 3600.0, 1e-9);
	cr_assert(l->websocket);
	l = http_location_match(t, "/carbonio/", 10, sh_sc);
	cr_assert_str_eq(l->require_cookie, "ZM_AUTH_TOKEN");
	cr_assert_str_eq(l->login_redirect, "/static/login/");
	l = http_location_match(t, "/logout", 7, sh_sc);
	cr_assert_eq(l->ncookies, 8);
	cr_assert_eq(l->status, 307);
}

Test(http_location_shipped, carbonio_admin_6071)
{
	sh_t_load("carbonio", "/opt/zextras/conf");
	sh_t_route(6071, "/", "/", "redirect:/carbonioAdmin");
	sh_t_route(6071, "/service/admin/soap/GetInfoRequest", "^~ /service", "admin");
	sh_t_route(6071, "/carbonioAdmin/domains", "/carbonioAdmin",
		   "root:/opt/zextras/admin/iris/carbonio-admin-ui/current");
	sh_t_route(6071, "/login/", "/login", "root:/opt/zextras/admin/login");
	sh_t_route(6071, "/static/x.js", "^~ /static/", "root:/opt/zextras/admin");
	sh_t_route(6071, "/logout", "~ /logout", "logout:/login/");
	sh_t_route(6071, "/services/catalog/x", "/services/catalog/", "carbonio-catalog");
	sh_t_route(6071, "/zx/auth/x", "^~ /zx/", "zx");
	const struct conf_location_table *t = conf_http_locations(sh_conf, sh_t_listener(6071));
	const struct conf_location *l = http_location_match(t, "/service/x", 10, sh_sc);
	cr_assert_str_eq(l->host, "$host:7071");
	cr_assert(sh_conf->upstreams[l->upstream].tls);
	cr_assert_not_null(sh_conf->tls_client);
}

Test(http_location_shipped, zimbra_443_and_9071)
{
	sh_t_load("zimbra", "/opt/zimbra/conf");
	const char *svc = "~* /(service|principals|dav|\\.well-known|home|octopus|shf|user|certauth|"
			  "spnegoauth|zimbra/home|zimbra/user)/";
	sh_t_route(443, "/", "= /", "login");
	sh_t_route(443, "/?loginOp=relogin", "= /", "login");
	sh_t_route(443, "/js/zimbraMail/Startup1_2_all.js", "/", "mailstores");
	sh_t_route(443, "/Microsoft-Server-ActiveSync", "^~ /Microsoft-Server-ActiveSync", "mailstores");
	sh_t_route(443, "/zx/ws-chat", "^~ /zx/ws-", "zx");
	sh_t_route(443, "/zx/auth/x", "^~ /zx/", "zx");
	sh_t_route(443, "/service/soap/NoOpRequest", "^~ /service/soap/NoOpRequest", "mailstores");
	sh_t_route(443, "/service/soap/WaitSetRequest", "^~ /service/soap/WaitSetRequest", "mailstores");
	sh_t_route(443, "/service/extension/drive/a/b", "~* /service/extension/drive/(.*)/(.*)$",
		   "mailstores");
	sh_t_route(443, "/autodiscover/autodiscover.xml", "^~ /autodiscover", "mailstores");
	sh_t_route(443, "/ews/exchange.asmx", "~* ^/ews/Exchange.asmx", "ews");
	sh_t_route(443, "/service/soap/GetInfoRequest", svc, "mailstores");
	sh_t_route(443, "/home/bob/Briefcase/a.pdf", svc, "mailstores");
	sh_t_route(443, "/principals/users/bob@example.com/", svc, "mailstores");
	sh_t_route(443, "/.well-known/caldav", svc, "mailstores");
	sh_t_route(443, "/zimbra/home/bob/x", svc, "mailstores");
	sh_t_route(9071, "/service/admin/soap", "^~ /service", "admin");
	sh_t_route(9071, "/zimbraAdmin/", "/", "admin");

	const struct conf_location_table *t = conf_http_locations(sh_conf, sh_t_listener(443));
	const struct conf_location *l = http_location_match(t, "/service/soap/NoOpRequest", 25, sh_sc);
	cr_assert_float_eq(l->read_timeout, 1220.0, 1e-9);
	l = http_location_match(t, "/ews/Exchange.asmx", 18, sh_sc);
	cr_assert_float_eq(l->read_timeout, 3600.0, 1e-9);
}

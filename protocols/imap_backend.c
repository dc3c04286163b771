/*
 * imap_backend.c - log the user in on the backend, then hand over to the
 * relay.
 *
 * Read the greeting ("* OK", never PREAUTH), then send ID (with the client's
 * address, so the mailstore logs and throttles the real client) and the
 * login in one write: one round trip where nginx needs three. The tagged
 * answer to the login goes to the client under the client's own tag.
 *
 * Credentials go as quoted strings when they can, as LITERAL+ when the
 * backend has it, else as AUTHENTICATE PLAIN (with SASL-IR when offered).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "imap_int.h"
#include "login.h"
#include "sasl.h"
#include "secret.h"

#define IMAP_UNAVAILABLE "NO [UNAVAILABLE] Service temporarily unavailable, try again later"
#define BK_TAG_CAPA "gh0"
#define BK_TAG_ID "gh1"
#define BK_TAG_LOGIN "gh2"

static struct imap_state *bk__st(struct session *s)
{
	return s->proto_state;
}

/* Give up on this backend: the client gets a temporary failure. */
static void bk__tempfail(struct session *s, const char *why)
{
	session_log(s, LOG_WARN, "backend %s: %s", s->backend_addr, why);
	imap_audit(s, "tempfail", why);
	session_close_backend(s);
	imap_login_failed(s, IMAP_UNAVAILABLE, true);
}

void imap_backend_eof(struct session *s, int status)
{
	char why[128];

	snprintf(why, sizeof(why), "backend %s closed during login: %s", s->backend_addr,
		 uv_strerror(status));
	imap_audit(s, "tempfail", why);
	imap_login_failed(s, IMAP_UNAVAILABLE, true);
}

void imap_backend_timeout(struct session *s)
{
	char why[128];

	snprintf(why, sizeof(why), "backend %s: no login answer within %.1f s", s->backend_addr,
		 s->conf->limits.backend_timeout);
	bk__tempfail(s, why);
}

void imap_backend_connected(struct session *s, int status)
{
	struct imap_state *st = bk__st(s);

	if (status < 0) {
		char why[128];
		snprintf(why, sizeof(why), "backend %s: %s", s->backend_addr, uv_strerror(status));
		if (imap_route_unreachable(s, why))
			return;
		imap_audit(s, "tempfail", why);
		imap_login_failed(s, IMAP_UNAVAILABLE, true);
		return;
	}
	st->bk_step = IMAP_BK_GREETING;
	st->bk_caps_known = false;
	st->bk_literal_plus = st->bk_sasl_ir = st->bk_auth_plain = false;
	st->bk_plain_sent = false;
}

/* Note the capabilities we care about from a list of atoms. */
static void bk__caps(struct imap_state *st, const char *p, size_t n)
{
	size_t i = 0;

	st->bk_caps_known = true;
	while (i < n) {
		while (i < n && p[i] == ' ')
			i++;
		size_t b = i;
		while (i < n && p[i] != ' ' && p[i] != ']')
			i++;
		size_t len = i - b;
		if (len == 8 && strncasecmp(p + b, "LITERAL+", 8) == 0)
			st->bk_literal_plus = true;
		else if (len == 7 && strncasecmp(p + b, "SASL-IR", 7) == 0)
			st->bk_sasl_ir = true;
		else if (len == 10 && strncasecmp(p + b, "AUTH=PLAIN", 10) == 0)
			st->bk_auth_plain = true;
		if (i < n && p[i] == ']')
			break;
	}
}

/* Printable ASCII without '"' and '\\' needs no escaping at all; with them
   a quoted string still works. Anything else needs a literal. */
static bool bk__quotable(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

/* Append an IMAP string for s[0..n) to out: quoted, or LITERAL+. */
static size_t bk__string(char *out, const char *s, size_t n, bool quoted)
{
	size_t o = 0;

	if (!quoted) {
		o += (size_t)sprintf(out, "{%zu+}\r\n", n);
		memcpy(out + o, s, n);
		return o + n;
	}
	out[o++] = '"';
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\')
			out[o++] = '\\';
		out[o++] = s[i];
	}
	out[o++] = '"';
	return o;
}

/* The route's user as the backend must see it: with the client's Zimbra
   tag (/tb, /wm, /ni) back on, as Zimbra's proxy sends it. */
static const char *bk__user(const struct imap_state *st, char buf[ROUTE_MAX_USER])
{
	return login_upstream_user(&st->route, "imap", st->authz[0] ? st->authz : st->login, buf);
}

/* The PLAIN message "authz NUL user NUL password", base64-encoded into out. */
static size_t bk__plain_b64(struct session *s, char *out)
{
	struct imap_state *st = bk__st(s);
	char ub[ROUTE_MAX_USER];
	const char *up = bk__user(st, ub);
	const char *authz = st->authz[0] ? up : "";
	const char *user = st->authz[0] ? st->login : up;

	return sasl_plain_encode(authz, strlen(authz), user, strlen(user), st->password,
				 st->password_len, out);
}

/* Choose how the credentials go. false: the backend offers no way. */
static bool bk__choose(struct session *s, bool *need_caps)
{
	struct imap_state *st = bk__st(s);
	enum conf_backend_auth mode = s->conf->imap.backend_auth;
	char ub[ROUTE_MAX_USER];
	const char *up = bk__user(st, ub);
	bool safe = bk__quotable(up, strlen(up)) &&
		    bk__quotable(st->password, st->password_len);

	*need_caps = false;
	if (st->authz[0] || mode == CONF_BACKEND_AUTH_PLAIN) {
		/* Without known caps, the message waits for "+": works everywhere. */
		st->bk_method = st->bk_caps_known && st->bk_sasl_ir ? IMAP_BKM_PLAIN_IR : IMAP_BKM_PLAIN;
		return true;
	}
	if (safe) {
		st->bk_method = IMAP_BKM_LOGIN;
		return true;
	}
	if (!st->bk_caps_known) {
		*need_caps = true;
		return true;
	}
	if (st->bk_literal_plus) {
		st->bk_method = IMAP_BKM_LOGIN;
		return true;
	}
	if (mode == CONF_BACKEND_AUTH_AUTO && st->bk_auth_plain) {
		st->bk_method = st->bk_sasl_ir ? IMAP_BKM_PLAIN_IR : IMAP_BKM_PLAIN;
		return true;
	}
	return false;
}

/* Build ID + login in one buffer and send it; wipe our copy. */
static void bk__send_login(struct session *s)
{
	struct imap_state *st = bk__st(s);
	const struct conf *c = s->conf;
	char ub[ROUTE_MAX_USER];
	const char *up = bk__user(st, ub);
	size_t ul = strlen(up);
	size_t cap = 1024 + 2 * (ul + st->password_len) + SASL_B64_ENCODED_SIZE(2 * ROUTE_MAX_USER + st->password_len + 2);
	char *buf = malloc(cap);
	size_t n = 0;

	if (buf == NULL) {
		session_close(s, "out of memory");
		return;
	}
	if (c->imap.send_id) {
		char via[256];
		if (st->client_name[0])
			snprintf(via, sizeof(via), "%s%s%s,%s(gatehouse/%s)", st->client_name,
				 st->client_version[0] ? "/" : "", st->client_version, s->local_ip,
				 GATEHOUSE_VERSION);
		else
			snprintf(via, sizeof(via), "%s(gatehouse/%s)", s->local_ip, GATEHOUSE_VERSION);
		n += (size_t)snprintf(buf + n, cap - n,
				      BK_TAG_ID " ID (\"X-ORIGINATING-IP\" \"%s\" \"X-ORIGINATING-PORT\" \"%u\""
				      " \"X-CONNECTED-IP\" \"%s\" \"X-CONNECTED-PORT\" \"%u\""
				      " \"X-SESSION-ID\" \"%s\" \"X-VIA\" \"%s\")\r\n",
				      s->client_ip, s->client_port, s->local_ip, s->local_port, s->idstr, via);
	}
	switch (st->bk_method) {
	case IMAP_BKM_LOGIN:
		n += (size_t)snprintf(buf + n, cap - n, BK_TAG_LOGIN " LOGIN ");
		n += bk__string(buf + n, up, ul, bk__quotable(up, ul));
		buf[n++] = ' ';
		n += bk__string(buf + n, st->password, st->password_len,
				bk__quotable(st->password, st->password_len));
		buf[n++] = '\r';
		buf[n++] = '\n';
		break;
	case IMAP_BKM_PLAIN_IR:
		n += (size_t)snprintf(buf + n, cap - n, BK_TAG_LOGIN " AUTHENTICATE PLAIN ");
		n += bk__plain_b64(s, buf + n);
		buf[n++] = '\r';
		buf[n++] = '\n';
		st->bk_plain_sent = true;
		break;
	case IMAP_BKM_PLAIN:
		n += (size_t)snprintf(buf + n, cap - n, BK_TAG_LOGIN " AUTHENTICATE PLAIN\r\n");
		break;
	}
	session_backend_write(s, buf, n, true);
	secret_wipe(buf, cap);
	free(buf);
	st->bk_step = IMAP_BK_LOGIN;
}

static void bk__after_caps(struct session *s)
{
	bool need_caps;

	if (!bk__choose(s, &need_caps)) {
		bk__tempfail(s, "backend offers no way to send these credentials (no LITERAL+ or AUTH=PLAIN)");
		return;
	}
	if (need_caps) {
		bk__st(s)->bk_step = IMAP_BK_CAPA;
		session_backend_write(s, BK_TAG_CAPA " CAPABILITY\r\n", 16, false);
		return;
	}
	bk__send_login(s);
}

static bool bk__prefix(const char *line, size_t n, const char *prefix)
{
	size_t l = strlen(prefix);
	return n >= l && strncasecmp(line, prefix, l) == 0;
}

/* The backend's answer to our login. */
static void bk__login_answer(struct session *s, const char *line, size_t n, size_t linelen)
{
	struct imap_state *st = bk__st(s);
	const char *rest = line + 4; /* after "gh2 " */
	size_t restlen = linelen - 4;

	if (bk__prefix(rest, n - 4, "OK")) {
		/* Keep the line until it is written: it is at the head of s->bin. */
		char *copy = malloc(restlen);
		if (copy == NULL) {
			session_close(s, "out of memory");
			return;
		}
		memcpy(copy, rest, restlen);
		session_backend_consume(s, linelen);
		imap_login_succeeded(s, (const uint8_t *)copy, restlen);
		free(copy);
		return;
	}
	/* NO or BAD: the mailstore refused the password (or the user). The
	   client sees the mailstore's answer under its own tag and may retry. */
	char why[200], text[160];
	size_t tl = n - 4 < sizeof(text) - 1 ? n - 4 : sizeof(text) - 1;
	memcpy(text, rest, tl);
	text[tl] = '\0';
	for (char *p = text; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
	snprintf(why, sizeof(why), "backend rejected the login: %s", text);
	char login[LOG_QUOTE_SIZE(128)];
	session_log(s, LOG_INFO, "login \"%s\" on %s: %s", log_quote(login, sizeof(login), st->login),
		    s->backend_addr, why);
	imap_route_rejected(s);
	imap_audit(s, "fail", why);
	if (!bk__prefix(rest, n - 4, "NO ")) {
		imap_login_rejected(s, "NO [AUTHENTICATIONFAILED] Authentication failed");
		return;
	}
	imap_login_rejected(s, text);
}

/* One complete line from the backend, without CRLF (n), linelen with it. */
static void bk__line(struct session *s, const char *line, size_t n, size_t linelen)
{
	struct imap_state *st = bk__st(s);

	switch (st->bk_step) {
	case IMAP_BK_GREETING:
		if (bk__prefix(line, n, "* OK")) {
			const char *cap = NULL;
			for (size_t i = 4; i + 12 <= n; i++)
				if (strncasecmp(line + i, "[CAPABILITY ", 12) == 0) {
					cap = line + i + 12;
					break;
				}
			if (cap)
				bk__caps(st, cap, n - (size_t)(cap - line));
			bk__after_caps(s);
		} else if (bk__prefix(line, n, "* PREAUTH")) {
			/* Never let a backend log someone in without our login. */
			bk__tempfail(s, "backend greeted with PREAUTH");
		} else {
			bk__tempfail(s, "backend refused the connection or sent an invalid greeting");
		}
		return;
	case IMAP_BK_CAPA:
		if (bk__prefix(line, n, "* CAPABILITY "))
			bk__caps(st, line + 13, n - 13);
		else if (bk__prefix(line, n, BK_TAG_CAPA " "))
			bk__after_caps(s);
		return;
	case IMAP_BK_LOGIN:
		if (bk__prefix(line, n, BK_TAG_LOGIN " ")) {
			bk__login_answer(s, line, n, linelen);
			return;
		}
		if (line[0] == '+' && st->bk_method == IMAP_BKM_PLAIN && !st->bk_plain_sent) {
			size_t cap = SASL_B64_ENCODED_SIZE(2 * ROUTE_MAX_USER + st->password_len + 2) + 2;
			char *b64 = malloc(cap);
			if (b64 == NULL) {
				session_close(s, "out of memory");
				return;
			}
			size_t bl = bk__plain_b64(s, b64);
			b64[bl++] = '\r';
			b64[bl++] = '\n';
			session_backend_write(s, b64, bl, true);
			secret_wipe(b64, cap);
			free(b64);
			st->bk_plain_sent = true;
			return;
		}
		if (line[0] == '+') {
			bk__tempfail(s, "backend asked for a continuation we did not expect");
			return;
		}
		/* Untagged data and the ID answer are not the client's business. */
		return;
	}
}

/* Length of the literal announced at the end of line[0..n) ("{123}" or
   "{123+}"), or -1 if there is none. */
static long bk__literal_at_end(const char *line, size_t n)
{
	if (n < 3 || line[n - 1] != '}')
		return -1;
	size_t i = n - 1;
	if (i > 0 && line[i - 1] == '+')
		i--;
	size_t end = i;
	while (i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9')
		i--;
	if (i == end || i == 0 || line[i - 1] != '{' || end - i > 9)
		return -1;
	return strtol(line + i, NULL, 10);
}

void imap_backend_data(struct session *s)
{
	struct imap_state *st = bk__st(s);
	size_t scan = 0;

	while (s->backend && s->phase == SESSION_BACKEND_LOGIN && st == s->proto_state) {
		const char *buf = (const char *)s->bin;
		const char *lf = memchr(buf + scan, '\n', s->bin_len - scan);
		if (lf == NULL) {
			if (s->bin_len == s->bin_cap)
				bk__tempfail(s, "backend sent an over-long line during login");
			return;
		}
		size_t linelen = (size_t)(lf - buf) + 1;
		size_t n = linelen - 1;
		if (n > 0 && buf[n - 1] == '\r')
			n--;
		/* A literal inside an untagged answer: skip its bytes as part of
		   the line. */
		long lit = bk__literal_at_end(buf, n);
		if (lit >= 0) {
			if (linelen + (size_t)lit >= s->bin_cap) {
				bk__tempfail(s, "backend sent an oversized literal during login");
				return;
			}
			if (s->bin_len < linelen + (size_t)lit)
				return;
			scan = linelen + (size_t)lit;
			continue;
		}
		scan = 0;
		if (buf[0] == '\0' || memchr(buf, '\0', n)) {
			bk__tempfail(s, "backend sent a NUL byte during login");
			return;
		}
		bk__line(s, buf, n, linelen);
		/* On success the relay took over and s->bin is gone. */
		if (s->bin == NULL || s->phase != SESSION_BACKEND_LOGIN || s->backend == NULL)
			return;
		session_backend_consume(s, linelen);
	}
}

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

#define IMAP_BK_TAG_CAPA "gh0"
#define IMAP_BK_TAG_ID "gh1"
#define IMAP_BK_TAG_LOGIN "gh2"

void imap__backend_start(struct session *s)
{
	struct imap_state *st = imap__st(s);

	st->bk_step = IMAP_BK_GREETING;
	st->bk_caps_known = false;
	st->bk_literal_plus = st->bk_sasl_ir = st->bk_auth_plain = false;
	st->bk_plain_sent = false;
}

/* Note the capabilities we care about from a list of atoms. */
static void imap__bk_caps(struct imap_state *st, const char *p, size_t n)
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
static bool imap__bk_quotable(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

/* Append an IMAP string for s[0..n) to out: quoted, or LITERAL+. */
static size_t imap__bk_string(char *out, const char *s, size_t n, bool quoted)
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

/* Choose how the credentials go. false: the backend offers no way. */
static bool imap__bk_choose(struct session *s, bool *need_caps)
{
	struct imap_state *st = imap__st(s);
	enum conf_backend_auth mode = s->conf->imap.backend_auth;
	char ub[ROUTE_MAX_USER];
	const char *up = login_upstream_user(s, ub);
	bool safe = imap__bk_quotable(up, strlen(up)) &&
		    imap__bk_quotable(st->l.password, st->l.password_len);

	*need_caps = false;
	if (st->l.authz[0] || mode == CONF_BACKEND_AUTH_PLAIN) {
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
static void imap__bk_send_login(struct session *s)
{
	struct imap_state *st = imap__st(s);
	const struct conf *c = s->conf;
	char ub[ROUTE_MAX_USER];
	const char *up = login_upstream_user(s, ub);
	size_t ul = strlen(up);
	size_t cap = 1024 + 2 * (ul + st->l.password_len) + LOGIN_PLAIN_B64_MAX(&st->l);
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
				      IMAP_BK_TAG_ID " ID (\"X-ORIGINATING-IP\" \"%s\" \"X-ORIGINATING-PORT\" \"%u\""
				      " \"X-CONNECTED-IP\" \"%s\" \"X-CONNECTED-PORT\" \"%u\""
				      " \"X-SESSION-ID\" \"%s\" \"X-VIA\" \"%s\")\r\n",
				      s->client_ip, s->client_port, s->local_ip, s->local_port, s->idstr, via);
	}
	switch (st->bk_method) {
	case IMAP_BKM_LOGIN:
		n += (size_t)snprintf(buf + n, cap - n, IMAP_BK_TAG_LOGIN " LOGIN ");
		n += imap__bk_string(buf + n, up, ul, imap__bk_quotable(up, ul));
		buf[n++] = ' ';
		n += imap__bk_string(buf + n, st->l.password, st->l.password_len,
				imap__bk_quotable(st->l.password, st->l.password_len));
		buf[n++] = '\r';
		buf[n++] = '\n';
		break;
	case IMAP_BKM_PLAIN_IR:
		n += (size_t)snprintf(buf + n, cap - n, IMAP_BK_TAG_LOGIN " AUTHENTICATE PLAIN ");
		n += login_plain_b64(s, buf + n);
		buf[n++] = '\r';
		buf[n++] = '\n';
		st->bk_plain_sent = true;
		break;
	case IMAP_BKM_PLAIN:
		n += (size_t)snprintf(buf + n, cap - n, IMAP_BK_TAG_LOGIN " AUTHENTICATE PLAIN\r\n");
		break;
	}
	session_backend_write(s, buf, n, true);
	secret_wipe(buf, cap);
	free(buf);
	st->bk_step = IMAP_BK_LOGIN;
}

static void imap__bk_after_caps(struct session *s)
{
	bool need_caps;

	if (!imap__bk_choose(s, &need_caps)) {
		login_backend_tempfail(s, "backend offers no way to send these credentials (no LITERAL+ or AUTH=PLAIN)");
		return;
	}
	if (need_caps) {
		imap__st(s)->bk_step = IMAP_BK_CAPA;
		login_backend_write_lit(s, IMAP_BK_TAG_CAPA " CAPABILITY\r\n");
		return;
	}
	imap__bk_send_login(s);
}

/* The backend's answer to our login. */
static void imap__bk_login_answer(struct session *s, const char *line, size_t n, size_t linelen)
{
	struct imap_state *st = imap__st(s);
	const char *rest = line + 4; /* after "gh2 " */

	if (login_prefix(rest, n - 4, "OK")) {
		login_succeeded(s, rest, linelen - 4, linelen);
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
	session_log(s, LOG_INFO, "login \"%s\" on %s: %s", log_quote(login, sizeof(login), st->l.login),
		    s->backend_addr, why);
	login_route_rejected(s);
	login_audit(s, "fail", why);
	login_rejected(s, login_prefix(rest, n - 4, "NO ") ? text : IMAP_AUTHFAILED);
}

/* One complete line from the backend, without CRLF (n), linelen with it. */
void imap__backend_line(struct session *s, const char *line, size_t n, size_t linelen)
{
	struct imap_state *st = imap__st(s);

	switch (st->bk_step) {
	case IMAP_BK_GREETING:
		if (login_prefix(line, n, "* OK")) {
			const char *cap = NULL;
			for (size_t i = 4; i + 12 <= n; i++)
				if (strncasecmp(line + i, "[CAPABILITY ", 12) == 0) {
					cap = line + i + 12;
					break;
				}
			if (cap)
				imap__bk_caps(st, cap, n - (size_t)(cap - line));
			imap__bk_after_caps(s);
		} else if (login_prefix(line, n, "* PREAUTH")) {
			/* Never let a backend log someone in without our login. */
			login_backend_tempfail(s, "backend greeted with PREAUTH");
		} else {
			login_backend_tempfail(s, "backend refused the connection or sent an invalid greeting");
		}
		return;
	case IMAP_BK_CAPA:
		if (login_prefix(line, n, "* CAPABILITY "))
			imap__bk_caps(st, line + 13, n - 13);
		else if (login_prefix(line, n, IMAP_BK_TAG_CAPA " "))
			imap__bk_after_caps(s);
		return;
	case IMAP_BK_LOGIN:
		if (login_prefix(line, n, IMAP_BK_TAG_LOGIN " ")) {
			imap__bk_login_answer(s, line, n, linelen);
			return;
		}
		if (line[0] == '+' && st->bk_method == IMAP_BKM_PLAIN && !st->bk_plain_sent) {
			size_t cap = LOGIN_PLAIN_B64_MAX(&st->l) + 2;
			char *b64 = malloc(cap);
			if (b64 == NULL) {
				session_close(s, "out of memory");
				return;
			}
			size_t bl = login_plain_b64(s, b64);
			b64[bl++] = '\r';
			b64[bl++] = '\n';
			session_backend_write(s, b64, bl, true);
			secret_wipe(b64, cap);
			free(b64);
			st->bk_plain_sent = true;
			return;
		}
		if (line[0] == '+') {
			login_backend_tempfail(s, "backend asked for a continuation we did not expect");
			return;
		}
		/* Untagged data and the ID answer are not the client's business. */
		return;
	}
}

/*
 * Tests for protocols/pop3_parse.c.
 *
 * Every vector goes through t_run_all(), which feeds it the way the proxy
 * does (bytes of the current line at the head of a buffer, new bytes
 * appended, consumed bytes dropped) three ways: whole, one byte at a time,
 * and split in two at every offset. The event lists must be identical; the
 * whole-input run is then checked against the expectation. Each call gets a
 * private copy of exactly n bytes, so an over-read shows up under ASan.
 *
 * The feeder plays the front end's part in SASL exchanges: after "AUTH mech"
 * without an initial response the next line is a SASL response (two for
 * LOGIN), and after "AUTH LOGIN <user>" one more.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pop3_parse.h"

#define T_MAX_EV 64

enum t_ev_type { T_CMD, T_FATAL };

struct t_ev {
	enum t_ev_type type;
	size_t at; /* absolute input offset of the line's first byte */
	int rc;    /* bytes consumed (T_CMD) or the fatal code */
	struct pop3_cmd cmd;
};

struct t_run {
	const uint8_t *in;
	size_t len;
	struct t_ev ev[T_MAX_EV];
	int nev;
	size_t left; /* input bytes never consumed */
};

static const struct pop3_limits t_lim = { .max_command = POP3_MAX_COMMAND, .max_sasl = 4096 };
static const struct pop3_limits t_small = { .max_command = 16, .max_sasl = 40 };

/* How many SASL lines follow this command (the front end's view). */
static int t_sasl_lines(const uint8_t *line, const struct pop3_cmd *c)
{
	if (c->error != POP3_OK || c->kind != POP3_CMD_AUTH || c->nargs == 0)
		return 0;
	bool login = c->args[0].len == 5 && strncasecmp((const char *)line + c->args[0].off, "LOGIN", 5) == 0;
	if (c->nargs == 1)
		return login ? 2 : 1;
	return c->nargs == 2 && login ? 1 : 0;
}

/* Feed in[0..len) in chunks ending at the offsets cuts[0..ncuts) (last = len). */
static void t_feed(const struct pop3_limits *lim, const uint8_t *in, size_t len,
		   const size_t *cuts, size_t ncuts, struct t_run *r)
{
	struct pop3_parser p;
	size_t head = 0;
	int sasl_left = 0;

	memset(r, 0, sizeof(*r));
	r->in = in;
	r->len = len;
	pop3_parser_init(&p, lim);
	for (size_t i = 0; i < ncuts; i++) {
		for (;;) {
			size_t n = cuts[i] - head;
			uint8_t *buf = malloc(n ? n : 1);
			struct pop3_cmd cmd;
			int rc;

			cr_assert_not_null(buf);
			memcpy(buf, in + head, n);
			rc = pop3_parse(&p, buf, n, &cmd);
			if (rc > 0) {
				cr_assert_leq((size_t)rc, n);
				cr_assert_lt(r->nev, T_MAX_EV, "too many events");
				struct t_ev *e = &r->ev[r->nev++];
				memset(e, 0, sizeof(*e));
				e->type = T_CMD;
				e->at = head;
				e->rc = rc;
				e->cmd = cmd;
				if (sasl_left > 0)
					sasl_left--;
				else
					sasl_left = t_sasl_lines(buf, &cmd);
				if (sasl_left > 0)
					pop3_parser_expect_sasl(&p);
				free(buf);
				head += (size_t)rc;
				continue;
			}
			free(buf);
			if (rc < 0) {
				cr_assert_lt(r->nev, T_MAX_EV);
				r->ev[r->nev].type = T_FATAL;
				r->ev[r->nev].at = head;
				r->ev[r->nev].rc = rc;
				r->nev++;
				r->left = len - head;
				return;
			}
			break;
		}
	}
	r->left = len - head;
}

static void t_same(const struct t_run *a, const struct t_run *b, const char *mode, size_t cut)
{
	cr_assert_eq(a->nev, b->nev, "%s %zu: %d events, whole gave %d", mode, cut, b->nev, a->nev);
	cr_assert_eq(a->left, b->left, "%s %zu: left", mode, cut);
	for (int i = 0; i < a->nev; i++) {
		const struct t_ev *x = &a->ev[i], *y = &b->ev[i];

		cr_assert_eq(x->type, y->type, "%s %zu: event %d type", mode, cut, i);
		cr_assert_eq(x->at, y->at, "%s %zu: event %d at", mode, cut, i);
		cr_assert_eq(x->rc, y->rc, "%s %zu: event %d rc", mode, cut, i);
		if (x->type != T_CMD)
			continue;
		cr_assert_eq(x->cmd.error, y->cmd.error, "%s %zu: event %d error", mode, cut, i);
		cr_assert_eq(x->cmd.kind, y->cmd.kind, "%s %zu: event %d kind", mode, cut, i);
		cr_assert_eq(x->cmd.name.off, y->cmd.name.off, "%s %zu: name", mode, cut);
		cr_assert_eq(x->cmd.name.len, y->cmd.name.len, "%s %zu: name", mode, cut);
		cr_assert_eq(x->cmd.nargs, y->cmd.nargs, "%s %zu: event %d nargs", mode, cut, i);
		for (int j = 0; j < x->cmd.nargs; j++) {
			cr_assert_eq(x->cmd.args[j].off, y->cmd.args[j].off, "%s %zu: arg %d", mode, cut, j);
			cr_assert_eq(x->cmd.args[j].len, y->cmd.args[j].len, "%s %zu: arg %d", mode, cut, j);
		}
	}
}

/* Run whole, byte by byte and split at every offset; return the whole run. */
static struct t_run *t_run_all(const struct pop3_limits *lim, const void *data, size_t len)
{
	const uint8_t *in = data;
	struct t_run *whole = calloc(1, sizeof(*whole));
	struct t_run *other = calloc(1, sizeof(*other));
	size_t *cuts = calloc(len + 1, sizeof(*cuts));
	size_t c[2];

	cr_assert(whole && other && cuts);
	c[0] = len;
	t_feed(lim, in, len, c, 1, whole);

	for (size_t i = 0; i < len; i++)
		cuts[i] = i + 1;
	t_feed(lim, in, len, cuts, len ? len : 1, other);
	t_same(whole, other, "bytewise", 0);

	for (size_t k = 0; k <= len; k++) {
		c[0] = k;
		c[1] = len;
		t_feed(lim, in, len, c, 2, other);
		t_same(whole, other, "split", k);
	}
	free(cuts);
	free(other);
	return whole;
}

#define T_RUN(lim, s) t_run_all((lim), (s), sizeof(s) - 1)

/* Event i is a line with this error, kind, argument count and length. */
static void t_cmd(const struct t_run *r, int i, enum pop3_error err, enum pop3_cmd_kind kind,
		  int nargs, int consumed)
{
	const struct t_ev *e;

	cr_assert_lt(i, r->nev, "event %d missing (%d events)", i, r->nev);
	e = &r->ev[i];
	cr_assert_eq(e->type, T_CMD, "event %d is not a line", i);
	cr_assert_eq(e->cmd.error, err, "event %d: error %d, want %d", i, e->cmd.error, err);
	cr_assert_eq(e->cmd.kind, kind, "event %d: kind %d, want %d", i, e->cmd.kind, kind);
	cr_assert_eq(e->cmd.nargs, nargs, "event %d: %d args, want %d", i, e->cmd.nargs, nargs);
	if (consumed >= 0)
		cr_assert_eq(e->rc, consumed, "event %d: consumed %d, want %d", i, e->rc, consumed);
}

static void t_arg(const struct t_run *r, int i, int j, const char *want)
{
	const struct pop3_cmd *c = &r->ev[i].cmd;
	size_t wl = strlen(want);

	cr_assert_lt(j, c->nargs, "event %d: no arg %d", i, j);
	cr_assert_eq(c->args[j].len, wl, "event %d arg %d: length %u, want %zu", i, j,
		     c->args[j].len, wl);
	cr_assert_eq(memcmp(r->in + r->ev[i].at + c->args[j].off, want, wl), 0,
		     "event %d arg %d: not \"%s\"", i, j, want);
}

static void t_name(const struct t_run *r, int i, const char *want)
{
	const struct pop3_cmd *c = &r->ev[i].cmd;

	cr_assert_eq(c->name.len, strlen(want));
	cr_assert_eq(memcmp(r->in + r->ev[i].at + c->name.off, want, c->name.len), 0);
}

static void t_fatal(const struct t_run *r, int i, size_t at)
{
	cr_assert_eq(r->nev, i + 1, "want %d events, got %d", i + 1, r->nev);
	cr_assert_eq(r->ev[i].type, T_FATAL, "event %d is not fatal", i);
	cr_assert_eq(r->ev[i].rc, POP3_FATAL_LINE_TOO_LONG);
	cr_assert_eq(r->ev[i].at, at);
}

static void t_done(struct t_run *r, int nev, size_t left)
{
	cr_assert_eq(r->nev, nev, "want %d events, got %d", nev, r->nev);
	cr_assert_eq(r->left, left, "want %zu bytes left, got %zu", left, r->left);
	free(r);
}

/* ---- commands ---- */

Test(pop3_parse, every_command)
{
	struct t_run *r = T_RUN(&t_lim, "USER alice@example.com\r\nPASS s3cret\r\nAUTH PLAIN dGVzdA==\r\n"
				 "CAPA\r\nSTLS\r\nNOOP\r\nQUIT\r\nAPOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"
				 "STAT\r\nRETR 1\r\n");

	t_cmd(r, 0, POP3_OK, POP3_CMD_USER, 1, 24);
	t_name(r, 0, "USER");
	t_arg(r, 0, 0, "alice@example.com");
	t_cmd(r, 1, POP3_OK, POP3_CMD_PASS, 1, 13);
	t_arg(r, 1, 0, "s3cret");
	t_cmd(r, 2, POP3_OK, POP3_CMD_AUTH, 2, -1);
	t_arg(r, 2, 0, "PLAIN");
	t_arg(r, 2, 1, "dGVzdA==");
	t_cmd(r, 3, POP3_OK, POP3_CMD_CAPA, 0, 6);
	t_cmd(r, 4, POP3_OK, POP3_CMD_STLS, 0, 6);
	t_cmd(r, 5, POP3_OK, POP3_CMD_NOOP, 0, 6);
	t_cmd(r, 6, POP3_OK, POP3_CMD_QUIT, 0, 6);
	/* APOP is not served: a well-formed command of no interest. */
	t_cmd(r, 7, POP3_OK, POP3_CMD_OTHER, 2, -1);
	t_name(r, 7, "APOP");
	t_arg(r, 7, 0, "mrose");
	t_cmd(r, 8, POP3_OK, POP3_CMD_OTHER, 0, 6);
	t_cmd(r, 9, POP3_OK, POP3_CMD_OTHER, 1, 8);
	t_arg(r, 9, 0, "1");
	t_done(r, 10, 0);
}

Test(pop3_parse, case_insensitive)
{
	struct t_run *r = T_RUN(&t_lim, "user Bob\r\ncApA\r\nQuit\r\npass X Y\r\nauth plain\r\nAbC=\r\n"
				 "sTlS\r\nnoop\r\n");

	t_cmd(r, 0, POP3_OK, POP3_CMD_USER, 1, -1);
	t_name(r, 0, "user");
	t_arg(r, 0, 0, "Bob");
	t_cmd(r, 1, POP3_OK, POP3_CMD_CAPA, 0, -1);
	t_cmd(r, 2, POP3_OK, POP3_CMD_QUIT, 0, -1);
	t_cmd(r, 3, POP3_OK, POP3_CMD_PASS, 1, -1);
	t_arg(r, 3, 0, "X Y");
	t_cmd(r, 4, POP3_OK, POP3_CMD_AUTH, 1, -1);
	t_arg(r, 4, 0, "plain");
	t_cmd(r, 5, POP3_OK, POP3_CMD_SASL, 1, -1);
	t_arg(r, 5, 0, "AbC=");
	t_cmd(r, 6, POP3_OK, POP3_CMD_STLS, 0, -1);
	t_cmd(r, 7, POP3_OK, POP3_CMD_NOOP, 0, -1);
	t_done(r, 8, 0);
}

Test(pop3_parse, missing_arguments)
{
	struct t_run *r = T_RUN(&t_lim, "USER\r\nUSER \r\nPASS\r\nPASS \r\nAUTH\r\nAUTH \r\n");

	for (int i = 0; i < 4; i++)
		t_cmd(r, i, POP3_OK, i < 2 ? POP3_CMD_USER : POP3_CMD_PASS, 0, -1);
	/* "AUTH" alone asks for the mechanism list (RFC 1734). */
	t_cmd(r, 4, POP3_OK, POP3_CMD_AUTH, 0, 6);
	t_cmd(r, 5, POP3_OK, POP3_CMD_AUTH, 0, 7);
	t_done(r, 6, 0);
}

Test(pop3_parse, extra_spaces)
{
	struct t_run *r = T_RUN(&t_lim, "AUTH  PLAIN   eHl6  \r\nNOOP   \r\nUSER  alice\r\n"
				 "PASS  two  spaces \r\nRETR 1 2\r\n");

	t_cmd(r, 0, POP3_OK, POP3_CMD_AUTH, 2, -1);
	t_arg(r, 0, 0, "PLAIN");
	t_arg(r, 0, 1, "eHl6");
	t_cmd(r, 1, POP3_OK, POP3_CMD_NOOP, 0, -1);
	/* USER and PASS keep everything after their one separator. */
	t_cmd(r, 2, POP3_OK, POP3_CMD_USER, 1, -1);
	t_arg(r, 2, 0, " alice");
	t_cmd(r, 3, POP3_OK, POP3_CMD_PASS, 1, -1);
	t_arg(r, 3, 0, " two  spaces ");
	t_cmd(r, 4, POP3_OK, POP3_CMD_OTHER, 2, -1);
	t_done(r, 5, 0);
}

Test(pop3_parse, too_many_arguments)
{
	struct t_run *r = T_RUN(&t_lim, "AUTH a b c d\r\nAUTH a b c d e\r\nNOOP\r\n");

	t_cmd(r, 0, POP3_OK, POP3_CMD_AUTH, 4, -1);
	t_cmd(r, 1, POP3_ERR_TOO_MANY_ARGS, POP3_CMD_OTHER, 0, 16);
	t_cmd(r, 2, POP3_OK, POP3_CMD_NOOP, 0, 6);
	t_done(r, 3, 0);
}

/* ---- line ends and bounds ---- */

Test(pop3_parse, bare_lf_and_pipelining)
{
	struct t_run *r = T_RUN(&t_lim, "USER x\r\nPASS y\r\nSTAT\r\nQUIT\r\nCAPA\nNOOP\nUSER z\n");

	t_cmd(r, 0, POP3_OK, POP3_CMD_USER, 1, 8);
	t_cmd(r, 1, POP3_OK, POP3_CMD_PASS, 1, 8);
	t_arg(r, 1, 0, "y");
	t_cmd(r, 2, POP3_OK, POP3_CMD_OTHER, 0, 6);
	t_cmd(r, 3, POP3_OK, POP3_CMD_QUIT, 0, 6);
	t_cmd(r, 4, POP3_OK, POP3_CMD_CAPA, 0, 5);
	t_cmd(r, 5, POP3_OK, POP3_CMD_NOOP, 0, 5);
	t_cmd(r, 6, POP3_OK, POP3_CMD_USER, 1, 7);
	t_arg(r, 6, 0, "z");
	t_done(r, 7, 0);
}

Test(pop3_parse, bare_cr)
{
	struct t_run *r = T_RUN(&t_lim, "CA\rPA\r\nUSER a\rb\r\nNOOP\r\r\nNOOP\r\n");

	t_cmd(r, 0, POP3_ERR_SYNTAX, POP3_CMD_OTHER, 0, 7);
	t_cmd(r, 1, POP3_ERR_SYNTAX, POP3_CMD_OTHER, 0, 10);
	t_cmd(r, 2, POP3_ERR_SYNTAX, POP3_CMD_OTHER, 0, 7);
	t_cmd(r, 3, POP3_OK, POP3_CMD_NOOP, 0, 6);
	t_done(r, 4, 0);
}

Test(pop3_parse, incomplete_line_needs_more)
{
	struct t_run *r = T_RUN(&t_lim, "NOOP\r\nUSER ali");

	t_cmd(r, 0, POP3_OK, POP3_CMD_NOOP, 0, 6);
	t_done(r, 1, 8);
	r = T_RUN(&t_lim, "CAPA\r");
	t_done(r, 0, 5);
}

/* RFC 2449: 255 octets including CRLF. */
Test(pop3_parse, command_bound_255)
{
	char line[400];

	/* "USER " + 248 + CRLF = 255: fits. */
	snprintf(line, sizeof(line), "USER %0248d\r\nNOOP\r\n", 0);
	struct t_run *r = t_run_all(&t_lim, line, strlen(line));
	t_cmd(r, 0, POP3_OK, POP3_CMD_USER, 1, 255);
	cr_assert_eq(r->ev[0].cmd.args[0].len, 248);
	t_cmd(r, 1, POP3_OK, POP3_CMD_NOOP, 0, 6);
	t_done(r, 2, 0);

	/* With a bare LF one byte more fits. */
	snprintf(line, sizeof(line), "USER %0249d\n", 0);
	r = t_run_all(&t_lim, line, strlen(line));
	t_cmd(r, 0, POP3_OK, POP3_CMD_USER, 1, 255);
	t_done(r, 1, 0);

	/* 256 octets: fatal, whatever the split. */
	snprintf(line, sizeof(line), "NOOP\r\nUSER %0249d\r\nNOOP\r\n", 0);
	r = t_run_all(&t_lim, line, strlen(line));
	t_cmd(r, 0, POP3_OK, POP3_CMD_NOOP, 0, 6);
	t_fatal(r, 1, 6);
	free(r);

	/* A PASS is a command too. */
	snprintf(line, sizeof(line), "PASS %0300d\r\n", 0);
	r = t_run_all(&t_lim, line, strlen(line));
	t_fatal(r, 0, 0);
	free(r);

	/* So is garbage with no line end at all. */
	memset(line, 'x', 300);
	r = t_run_all(&t_lim, line, 300);
	t_fatal(r, 0, 0);
	free(r);
}

Test(pop3_parse, command_bound_is_reached_exactly)
{
	/* max_command 16: 14 bytes + CRLF fit, 15 + CRLF do not. */
	struct t_run *r = T_RUN(&t_small, "USER 123456789\r\nUSER 1234567890\r\n");

	t_cmd(r, 0, POP3_OK, POP3_CMD_USER, 1, 16);
	t_fatal(r, 1, 16);
	free(r);
	/* Nothing more than the bound is ever needed to decide. */
	r = T_RUN(&t_small, "USER 12345678901");
	t_fatal(r, 0, 0);
	free(r);
	r = T_RUN(&t_small, "USER 123456789\r");
	t_done(r, 0, 15);
}

Test(pop3_parse, auth_lines_may_be_long)
{
	size_t tok = 2000;
	char *in = malloc(64 + 2 * tok);

	cr_assert_not_null(in);
	/* A continuation line longer than 255 octets (an XOAUTH2 token). */
	size_t n = (size_t)sprintf(in, "AUTH XOAUTH2\r\n");
	memset(in + n, 'A', tok);
	n += tok;
	n += (size_t)sprintf(in + n, "\r\nNOOP\r\n");
	struct t_run *r = t_run_all(&t_lim, in, n);
	t_cmd(r, 0, POP3_OK, POP3_CMD_AUTH, 1, 14);
	t_cmd(r, 1, POP3_OK, POP3_CMD_SASL, 1, (int)tok + 2);
	cr_assert_eq(r->ev[1].cmd.args[0].len, tok);
	t_cmd(r, 2, POP3_OK, POP3_CMD_NOOP, 0, 6);
	t_done(r, 3, 0);

	/* The same token as an initial response on the AUTH line. */
	n = (size_t)sprintf(in, "AUTH XOAUTH2 ");
	memset(in + n, 'B', tok);
	n += tok;
	n += (size_t)sprintf(in + n, "\r\n");
	r = t_run_all(&t_lim, in, n);
	t_cmd(r, 0, POP3_OK, POP3_CMD_AUTH, 2, (int)n);
	cr_assert_eq(r->ev[0].cmd.args[1].len, tok);
	t_done(r, 1, 0);
	free(in);
}

Test(pop3_parse, sasl_bound)
{
	/* max_sasl 40: 38 + CRLF fit, 39 + CRLF do not. */
	struct t_run *r = T_RUN(&t_small, "AUTH PLAIN\r\n"
				"12345678901234567890123456789012345678\r\n"
				"AUTH PLAIN\r\n"
				"123456789012345678901234567890123456789\r\n");

	t_cmd(r, 0, POP3_OK, POP3_CMD_AUTH, 1, 12);
	t_cmd(r, 1, POP3_OK, POP3_CMD_SASL, 1, 40);
	t_cmd(r, 2, POP3_OK, POP3_CMD_AUTH, 1, 12);
	t_fatal(r, 3, 64);
	free(r);
	/* An AUTH line gets the SASL bound, other commands keep theirs. */
	r = T_RUN(&t_small, "AUTH PLAIN 123456789012345678901234567\r\nNOOP 1234567890123\r\n");
	t_cmd(r, 0, POP3_OK, POP3_CMD_AUTH, 2, 40);
	t_fatal(r, 1, 40);
	free(r);
}

/* ---- SASL responses ---- */

Test(pop3_parse, sasl_lines)
{
	struct t_run *r = T_RUN(&t_lim, "AUTH PLAIN\r\n\r\nAUTH PLAIN\r\n=\r\nAUTH XOAUTH2\r\n*\r\n"
				"AUTH LOGIN\r\nYQ==\r\nYg==\r\nAUTH LOGIN YQ==\r\nYg==\r\nNOOP\r\n");

	t_cmd(r, 0, POP3_OK, POP3_CMD_AUTH, 1, -1);
	/* An empty response is a line like any other, not an empty command. */
	t_cmd(r, 1, POP3_OK, POP3_CMD_SASL, 1, 2);
	t_arg(r, 1, 0, "");
	t_cmd(r, 3, POP3_OK, POP3_CMD_SASL, 1, 3);
	t_arg(r, 3, 0, "=");
	t_cmd(r, 5, POP3_OK, POP3_CMD_SASL, 1, 3);
	t_arg(r, 5, 0, "*");
	t_cmd(r, 6, POP3_OK, POP3_CMD_AUTH, 1, -1);
	t_cmd(r, 7, POP3_OK, POP3_CMD_SASL, 1, -1);
	t_arg(r, 7, 0, "YQ==");
	t_cmd(r, 8, POP3_OK, POP3_CMD_SASL, 1, -1);
	t_arg(r, 8, 0, "Yg==");
	t_cmd(r, 9, POP3_OK, POP3_CMD_AUTH, 2, -1);
	t_cmd(r, 10, POP3_OK, POP3_CMD_SASL, 1, -1);
	t_cmd(r, 11, POP3_OK, POP3_CMD_NOOP, 0, -1);
	t_done(r, 12, 0);
}

Test(pop3_parse, sasl_line_keeps_spaces_and_words)
{
	/* A SASL line is taken whole: "QUIT" there is a (bad) response, not a command. */
	struct t_run *r = T_RUN(&t_lim, "AUTH PLAIN\r\n a b \r\nAUTH PLAIN\r\nQUIT\r\nQUIT\r\n");

	t_cmd(r, 1, POP3_OK, POP3_CMD_SASL, 1, -1);
	t_arg(r, 1, 0, " a b ");
	cr_assert_eq(r->ev[1].cmd.name.len, 0);
	t_cmd(r, 3, POP3_OK, POP3_CMD_SASL, 1, 6);
	t_arg(r, 3, 0, "QUIT");
	t_cmd(r, 4, POP3_OK, POP3_CMD_QUIT, 0, 6);
	t_done(r, 5, 0);
}

/* ---- hostile input ---- */

Test(pop3_parse, nul_bytes)
{
	static const char in[] = "US\0ER a\r\nPASS a\0b\r\nAUTH PLAIN\r\nAB\0C\r\n\0\r\nNOOP\r\n";
	struct t_run *r = t_run_all(&t_lim, in, sizeof(in) - 1);

	t_cmd(r, 0, POP3_ERR_NUL, POP3_CMD_OTHER, 0, 9);
	t_cmd(r, 1, POP3_ERR_NUL, POP3_CMD_OTHER, 0, 10);
	t_cmd(r, 2, POP3_OK, POP3_CMD_AUTH, 1, 12);
	/* A bad SASL line stays a SASL line, with no arguments. */
	t_cmd(r, 3, POP3_ERR_NUL, POP3_CMD_SASL, 0, 6);
	t_cmd(r, 4, POP3_ERR_NUL, POP3_CMD_OTHER, 0, 3);
	t_cmd(r, 5, POP3_OK, POP3_CMD_NOOP, 0, 6);
	t_done(r, 6, 0);
}

Test(pop3_parse, empty_lines)
{
	struct t_run *r = T_RUN(&t_lim, "\r\n\n\r\r\nNOOP\r\n");

	t_cmd(r, 0, POP3_ERR_EMPTY, POP3_CMD_OTHER, 0, 2);
	t_cmd(r, 1, POP3_ERR_EMPTY, POP3_CMD_OTHER, 0, 1);
	t_cmd(r, 2, POP3_ERR_SYNTAX, POP3_CMD_OTHER, 0, 3);
	t_cmd(r, 3, POP3_OK, POP3_CMD_NOOP, 0, 6);
	t_done(r, 4, 0);
}

Test(pop3_parse, garbage)
{
	struct t_run *r = T_RUN(&t_lim, "\xff\xfe garbage\r\n NOOP\r\n\x16\x03\x01\x02\x00\r\n"
				"ABCDEFGHIJKLMNO\r\nABCDEFGHIJKLMNOP x\r\nNO\tOP\r\nGET / HTTP/1.1\r\n"
				"NOOP\r\n");

	t_cmd(r, 0, POP3_ERR_SYNTAX, POP3_CMD_OTHER, 0, 12);
	t_cmd(r, 1, POP3_ERR_SYNTAX, POP3_CMD_OTHER, 0, 7);  /* a leading space */
	t_cmd(r, 2, POP3_ERR_NUL, POP3_CMD_OTHER, 0, 7);     /* a TLS record header */
	t_cmd(r, 3, POP3_OK, POP3_CMD_OTHER, 0, 17);         /* 15-byte keyword: fine */
	t_name(r, 3, "ABCDEFGHIJKLMNO");
	t_cmd(r, 4, POP3_ERR_SYNTAX, POP3_CMD_OTHER, 0, 20); /* 16 bytes: too long */
	t_cmd(r, 5, POP3_ERR_SYNTAX, POP3_CMD_OTHER, 0, 7);  /* a tab */
	t_cmd(r, 6, POP3_OK, POP3_CMD_OTHER, 2, 16);
	t_cmd(r, 7, POP3_OK, POP3_CMD_NOOP, 0, 6);
	t_done(r, 8, 0);
}

Test(pop3_parse, keyword_prefixes_are_not_commands)
{
	struct t_run *r = T_RUN(&t_lim, "USE a\r\nUSERS a\r\nCAP\r\nCAPAB\r\nAUTHX a\r\n");

	for (int i = 0; i < 5; i++)
		t_cmd(r, i, POP3_OK, POP3_CMD_OTHER, 1 - (i == 2 || i == 3), -1);
	t_done(r, 5, 0);
}

Test(pop3_parse, init_copies_limits_from_itself)
{
	struct pop3_parser p;
	struct pop3_cmd cmd;

	pop3_parser_init(&p, &t_small);
	pop3_parser_init(&p, &p.lim);
	cr_assert_eq(p.lim.max_command, 16);
	cr_assert_eq(p.lim.max_sasl, 40);
	cr_assert_eq(pop3_parse(&p, (const uint8_t *)"NOOP\r\n", 6, &cmd), 6);
	cr_assert_eq(cmd.kind, POP3_CMD_NOOP);
	/* The SASL mode lasts one line. */
	pop3_parser_expect_sasl(&p);
	cr_assert_eq(pop3_parse(&p, (const uint8_t *)"NOOP\r\n", 6, &cmd), 6);
	cr_assert_eq(cmd.kind, POP3_CMD_SASL);
	cr_assert_eq(pop3_parse(&p, (const uint8_t *)"NOOP\r\n", 6, NULL), 6);
	cr_assert_eq(pop3_parse(&p, (const uint8_t *)"NOOP\r\n", 6, &cmd), 6);
	cr_assert_eq(cmd.kind, POP3_CMD_NOOP);
}

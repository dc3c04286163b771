/*
 * Tests for protocols/imap_parse.c.
 *
 * Every vector goes through run_all(), which feeds it the way the proxy does
 * (bytes of the current command at the head of a buffer, new bytes appended,
 * consumed bytes dropped) three ways: whole, one byte at a time, and split in
 * two at every offset. The event lists must be identical; the whole-input run
 * is then checked against the expectation. Each call gets a private copy of
 * exactly n bytes, so an over-read shows up under ASan or valgrind.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap_parse.h"

#define T_MAX_EV 96

enum t_ev_type { T_CMD, T_CONT, T_FATAL };

struct t_ev {
	enum t_ev_type type;
	/* Absolute input offset: the command's start (T_CMD, T_FATAL) or the
	 * first byte after the literal's CRLF (T_CONT). */
	size_t at;
	int rc; /* bytes consumed (T_CMD) or the fatal code */
	struct imap_cmd cmd;
};

struct t_run {
	const uint8_t *in;
	size_t len;
	struct t_ev ev[T_MAX_EV];
	int nev;
	size_t left; /* input bytes never consumed */
};

static const struct imap_limits t_lim = { .max_line = 8192, .max_literal = 4096, .max_tag = 32 };
static const struct imap_limits t_small = { .max_line = 64, .max_literal = 16, .max_tag = 8 };

static void t_push(struct t_run *r, enum t_ev_type type, size_t at, int rc, const struct imap_cmd *cmd)
{
	struct t_ev *e;

	cr_assert_lt(r->nev, T_MAX_EV, "too many events");
	e = &r->ev[r->nev++];
	memset(e, 0, sizeof(*e));
	e->type = type;
	e->at = at;
	e->rc = rc;
	if (cmd)
		e->cmd = *cmd;
}

/*
 * Feed in[0..len) in chunks ending at the absolute offsets cuts[0..ncuts),
 * the last of which must be len.
 */
static void t_feed(const struct imap_limits *lim, const uint8_t *in, size_t len,
		   const size_t *cuts, size_t ncuts, struct t_run *r)
{
	struct imap_parser p;
	size_t head = 0;

	memset(r, 0, sizeof(*r));
	r->in = in;
	r->len = len;
	imap_parser_init(&p, lim);
	for (size_t i = 0; i < ncuts; i++) {
		for (;;) {
			size_t n = cuts[i] - head;
			uint8_t *buf = malloc(n ? n : 1);
			struct imap_cmd cmd;
			int rc;

			cr_assert_not_null(buf);
			memcpy(buf, in + head, n);
			rc = imap_parse(&p, buf, n, &cmd);
			free(buf);
			if (rc > 0) {
				cr_assert_leq((size_t)rc, n);
				t_push(r, T_CMD, head, rc, &cmd);
				head += (size_t)rc;
				cr_assert(!p.continuation);
				continue;
			}
			if (rc < 0) {
				t_push(r, T_FATAL, head, rc, NULL);
				r->left = len - head;
				return;
			}
			if (p.continuation) {
				/* White box: pos is where the literal's data begins. */
				t_push(r, T_CONT, head + p.pos, 0, NULL);
				p.continuation = false;
				continue;
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
		cr_assert_eq(x->cmd.tag.off, y->cmd.tag.off, "%s %zu: tag", mode, cut);
		cr_assert_eq(x->cmd.tag.len, y->cmd.tag.len, "%s %zu: tag", mode, cut);
		cr_assert_eq(x->cmd.name.off, y->cmd.name.off, "%s %zu: name", mode, cut);
		cr_assert_eq(x->cmd.name.len, y->cmd.name.len, "%s %zu: name", mode, cut);
		cr_assert_eq(x->cmd.nargs, y->cmd.nargs, "%s %zu: event %d nargs", mode, cut, i);
		for (int j = 0; j < x->cmd.nargs; j++) {
			cr_assert_eq(x->cmd.args[j].type, y->cmd.args[j].type, "%s %zu: arg %d", mode, cut, j);
			cr_assert_eq(x->cmd.args[j].s.off, y->cmd.args[j].s.off, "%s %zu: arg %d", mode, cut, j);
			cr_assert_eq(x->cmd.args[j].s.len, y->cmd.args[j].s.len, "%s %zu: arg %d", mode, cut, j);
		}
	}
}

/* Run whole, byte by byte and split at every offset; return the whole run. */
static struct t_run *t_run_all(const struct imap_limits *lim, const void *data, size_t len)
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

static bool t_span_is(const struct t_run *r, int i, struct imap_span s, const char *want)
{
	return s.len == strlen(want) && memcmp(r->in + r->ev[i].at + s.off, want, s.len) == 0;
}

/* Event i is a command with this error, tag, kind and argument count. */
static void t_cmd(const struct t_run *r, int i, enum imap_error err, const char *tag,
		  enum imap_cmd_kind kind, int nargs, int consumed)
{
	const struct t_ev *e;

	cr_assert_lt(i, r->nev, "event %d missing (%d events)", i, r->nev);
	e = &r->ev[i];
	cr_assert_eq(e->type, T_CMD, "event %d is not a command", i);
	cr_assert_eq(e->cmd.error, err, "event %d: error %d, want %d", i, e->cmd.error, err);
	cr_assert(t_span_is(r, i, e->cmd.tag, tag), "event %d: tag is not \"%s\"", i, tag);
	if (err == IMAP_OK) {
		cr_assert_eq(e->cmd.kind, kind, "event %d: kind %d, want %d", i, e->cmd.kind, kind);
		cr_assert_eq(e->cmd.nargs, nargs, "event %d: %d args, want %d", i, e->cmd.nargs, nargs);
	}
	if (consumed >= 0)
		cr_assert_eq(e->rc, consumed, "event %d: consumed %d, want %d", i, e->rc, consumed);
}

static void t_arg(const struct t_run *r, int i, int j, enum imap_arg_type type, const char *want)
{
	const struct imap_cmd *c = &r->ev[i].cmd;
	char out[512];
	int n;

	cr_assert_lt(j, c->nargs, "event %d: no arg %d", i, j);
	cr_assert_eq(c->args[j].type, type, "event %d arg %d: type %d, want %d", i, j, c->args[j].type, type);
	n = imap_arg_copy(r->in + r->ev[i].at, &c->args[j], out, sizeof(out));
	cr_assert_eq(n, (int)strlen(want), "event %d arg %d: length %d", i, j, n);
	cr_assert_str_eq(out, want);
}

static void t_event(const struct t_run *r, int i, enum t_ev_type type, size_t at, int rc)
{
	cr_assert_lt(i, r->nev, "event %d missing (%d events)", i, r->nev);
	cr_assert_eq(r->ev[i].type, type, "event %d: type %d, want %d", i, r->ev[i].type, type);
	cr_assert_eq(r->ev[i].at, at, "event %d: at %zu, want %zu", i, r->ev[i].at, at);
	if (type == T_FATAL)
		cr_assert_eq(r->ev[i].rc, rc, "event %d: fatal %d, want %d", i, r->ev[i].rc, rc);
}

Test(imap_parse, simple_kinds)
{
	struct t_run *r = T_RUN(&t_lim,
		"a1 CAPABILITY\r\n" "a2 NOOP\r\n" "a3 LOGOUT\r\n" "a4 STARTTLS\r\n"
		"a5 ID NIL\r\n" "a6 LOGIN u p\r\n" "a7 AUTHENTICATE PLAIN\r\n"
		"a8 SELECT INBOX\r\n" "a9 X-FOO[bar a]b\r\n" "a10 X-FOO[bar] x\r\n");

	cr_assert_eq(r->nev, 10);
	t_cmd(r, 0, IMAP_OK, "a1", IMAP_CMD_CAPABILITY, 0, 15);
	t_cmd(r, 1, IMAP_OK, "a2", IMAP_CMD_NOOP, 0, 9);
	t_cmd(r, 2, IMAP_OK, "a3", IMAP_CMD_LOGOUT, 0, 11);
	t_cmd(r, 3, IMAP_OK, "a4", IMAP_CMD_STARTTLS, 0, 13);
	t_cmd(r, 4, IMAP_OK, "a5", IMAP_CMD_ID, 1, -1);
	t_arg(r, 4, 0, IMAP_ARG_ATOM, "NIL");
	t_cmd(r, 5, IMAP_OK, "a6", IMAP_CMD_LOGIN, 2, -1);
	t_arg(r, 5, 0, IMAP_ARG_ATOM, "u");
	t_arg(r, 5, 1, IMAP_ARG_ATOM, "p");
	t_cmd(r, 6, IMAP_OK, "a7", IMAP_CMD_AUTHENTICATE, 1, -1);
	t_arg(r, 6, 0, IMAP_ARG_ATOM, "PLAIN");
	t_cmd(r, 7, IMAP_OK, "a8", IMAP_CMD_OTHER, 1, -1);
	cr_assert(t_span_is(r, 7, r->ev[7].cmd.name, "SELECT"));
	t_cmd(r, 8, IMAP_OK, "a9", IMAP_CMD_OTHER, 1, -1);
	t_arg(r, 8, 0, IMAP_ARG_ATOM, "a]b");
	/* "]" is an ASTRING-CHAR, allowed in tags and arguments, not in atoms. */
	t_cmd(r, 9, IMAP_ERR_SYNTAX, "a10", 0, 0, -1);
	cr_assert_eq(r->left, 0);
	free(r);
}

Test(imap_parse, lowercase_and_near_names)
{
	struct t_run *r = T_RUN(&t_lim,
		"x login User Pass\r\n" "x Capability\r\n" "x nOoP\r\n" "x starttls\r\n"
		"x CAPABILITYX\r\n" "x LOGI a\r\n" "x authenticate plain =\r\n");

	cr_assert_eq(r->nev, 7);
	t_cmd(r, 0, IMAP_OK, "x", IMAP_CMD_LOGIN, 2, -1);
	cr_assert(t_span_is(r, 0, r->ev[0].cmd.name, "login"));
	t_cmd(r, 1, IMAP_OK, "x", IMAP_CMD_CAPABILITY, 0, -1);
	t_cmd(r, 2, IMAP_OK, "x", IMAP_CMD_NOOP, 0, -1);
	t_cmd(r, 3, IMAP_OK, "x", IMAP_CMD_STARTTLS, 0, -1);
	t_cmd(r, 4, IMAP_OK, "x", IMAP_CMD_OTHER, 0, -1);
	t_cmd(r, 5, IMAP_OK, "x", IMAP_CMD_OTHER, 1, -1);
	t_cmd(r, 6, IMAP_OK, "x", IMAP_CMD_AUTHENTICATE, 2, -1);
	t_arg(r, 6, 1, IMAP_ARG_ATOM, "=");
	free(r);
}

Test(imap_parse, quoted_with_escapes)
{
	struct t_run *r = T_RUN(&t_lim,
		"a LOGIN \"us\\\"er\" \"p\\\\ss\"\r\n"
		"b LOGIN \"\" \"a b(c){1}%*]\"\r\n"
		"c LOGIN j\xc3\xb6rg \"p\xc3\xa4ss\tword\"\r\n");

	cr_assert_eq(r->nev, 3);
	t_cmd(r, 0, IMAP_OK, "a", IMAP_CMD_LOGIN, 2, -1);
	t_arg(r, 0, 0, IMAP_ARG_QUOTED, "us\"er");
	t_arg(r, 0, 1, IMAP_ARG_QUOTED, "p\\ss");
	/* The span keeps the escapes; only imap_arg_copy removes them. */
	cr_assert_eq(r->ev[0].cmd.args[0].s.len, 6);
	t_cmd(r, 1, IMAP_OK, "b", IMAP_CMD_LOGIN, 2, -1);
	t_arg(r, 1, 0, IMAP_ARG_QUOTED, "");
	t_arg(r, 1, 1, IMAP_ARG_QUOTED, "a b(c){1}%*]");
	t_cmd(r, 2, IMAP_OK, "c", IMAP_CMD_LOGIN, 2, -1);
	t_arg(r, 2, 0, IMAP_ARG_ATOM, "j\xc3\xb6rg");
	t_arg(r, 2, 1, IMAP_ARG_QUOTED, "p\xc3\xa4ss\tword");
	free(r);
}

Test(imap_parse, quoted_invalid)
{
	struct t_run *r = T_RUN(&t_lim,
		"a LOGIN \"u\\ser\" p\r\n"   /* \s is no escape */
		"b LOGIN \"us\rer\" p\r\n"    /* CR inside */
		"c LOGIN \"abc\r\n"            /* unterminated */
		"d LOGIN \"u\\\r\n"            /* escape at the end */
		"e LOGIN \"us\ner\" p\r\n");  /* LF ends the line */

	cr_assert_eq(r->nev, 6);
	t_cmd(r, 0, IMAP_ERR_SYNTAX, "a", 0, 0, 19);
	t_cmd(r, 1, IMAP_ERR_SYNTAX, "b", 0, 0, 19);
	t_cmd(r, 2, IMAP_ERR_SYNTAX, "c", 0, 0, 14);
	t_cmd(r, 3, IMAP_ERR_SYNTAX, "d", 0, 0, 13);
	t_cmd(r, 4, IMAP_ERR_SYNTAX, "e", 0, 0, 12);
	/* What follows the LF is read as a new (bad) line: 'er"' is no tag. */
	t_cmd(r, 5, IMAP_ERR_SYNTAX, "", 0, 0, 7);
	cr_assert_eq(r->left, 0);
	free(r);
}

Test(imap_parse, literal_sync_login)
{
	static const char in[] = "a LOGIN {4}\r\nuser {6}\r\nsecret\r\nb NOOP\r\n";
	struct t_run *r = T_RUN(&t_lim, in);

	cr_assert_eq(r->nev, 4);
	t_event(r, 0, T_CONT, 13, 0);
	t_event(r, 1, T_CONT, 23, 0);
	t_cmd(r, 2, IMAP_OK, "a", IMAP_CMD_LOGIN, 2, 31);
	t_arg(r, 2, 0, IMAP_ARG_LITERAL, "user");
	t_arg(r, 2, 1, IMAP_ARG_LITERAL, "secret");
	t_cmd(r, 3, IMAP_OK, "b", IMAP_CMD_NOOP, 0, 8);
	free(r);
}

Test(imap_parse, literal_plus_login)
{
	struct t_run *r = T_RUN(&t_lim, "a LOGIN {4+}\r\nuser {7+}\n\"se cr\"\n");

	/* No continuation for LITERAL+; bare LF accepted after "}" and at the end. */
	cr_assert_eq(r->nev, 1);
	t_cmd(r, 0, IMAP_OK, "a", IMAP_CMD_LOGIN, 2, 32);
	t_arg(r, 0, 0, IMAP_ARG_LITERAL, "user");
	/* Literal bytes are data: quotes and spaces are not parsed. */
	t_arg(r, 0, 1, IMAP_ARG_LITERAL, "\"se cr\"");
	free(r);
}

Test(imap_parse, literal_continuation_with_data_present)
{
	static const uint8_t in[] = "a LOGIN {1}\r\nx y\r\n";
	struct imap_parser p;
	struct imap_cmd cmd;

	/* Even with the data in the buffer, the parser stops to ask for "+". */
	imap_parser_init(&p, &t_lim);
	cr_assert_eq(imap_parse(&p, in, sizeof(in) - 1, &cmd), 0);
	cr_assert(p.continuation);
	p.continuation = false;
	cr_assert_eq(imap_parse(&p, in, sizeof(in) - 1, &cmd), (int)sizeof(in) - 1);
	cr_assert_eq(cmd.error, IMAP_OK);
	cr_assert_eq(cmd.nargs, 2);
	cr_assert_eq(cmd.args[0].type, IMAP_ARG_LITERAL);
	cr_assert_eq(cmd.args[0].s.off, 13);
	cr_assert_eq(cmd.args[0].s.len, 1);
	/* The parser reset itself: an empty buffer needs more. */
	cr_assert_eq(imap_parse(&p, in, 0, &cmd), 0);
	cr_assert(!p.continuation);
}

Test(imap_parse, literal_zero_length)
{
	struct t_run *r = T_RUN(&t_lim, "a LOGIN {0}\r\n {0+}\r\n\r\n");

	cr_assert_eq(r->nev, 2);
	t_event(r, 0, T_CONT, 13, 0);
	t_cmd(r, 1, IMAP_OK, "a", IMAP_CMD_LOGIN, 2, 22);
	t_arg(r, 1, 0, IMAP_ARG_LITERAL, "");
	t_arg(r, 1, 1, IMAP_ARG_LITERAL, "");
	free(r);
}

Test(imap_parse, literal_huge_sync)
{
	struct t_run *r = T_RUN(&t_lim,
		"a LOGIN {4294967296}\r\n"
		"b LOGIN x {99999999999999999999}\n"
		"c LOGIN {18446744073709551617}\r\n");

	/* Each line ends at the CRLF after "}", no continuation is asked. */
	cr_assert_eq(r->nev, 3);
	t_cmd(r, 0, IMAP_ERR_LITERAL_TOO_BIG, "a", IMAP_CMD_LOGIN, 0, 22);
	cr_assert_eq(r->ev[0].cmd.kind, IMAP_CMD_LOGIN);
	t_cmd(r, 1, IMAP_ERR_LITERAL_TOO_BIG, "b", IMAP_CMD_LOGIN, 0, 33);
	t_cmd(r, 2, IMAP_ERR_LITERAL_TOO_BIG, "c", IMAP_CMD_LOGIN, 0, 32);
	cr_assert_eq(r->left, 0);
	free(r);
}

Test(imap_parse, literal_huge_plus_is_fatal)
{
	struct t_run *r = T_RUN(&t_lim, "a NOOP\r\na LOGIN {4294967296+}\r\nxxxx");

	cr_assert_eq(r->nev, 2);
	t_cmd(r, 0, IMAP_OK, "a", IMAP_CMD_NOOP, 0, 8);
	t_event(r, 1, T_FATAL, 8, IMAP_FATAL_LITERAL_TOO_BIG);
	free(r);

	r = T_RUN(&t_lim, "a LOGIN {99999999999999999999+}\r\n");
	cr_assert_eq(r->nev, 1);
	t_event(r, 0, T_FATAL, 0, IMAP_FATAL_LITERAL_TOO_BIG);
	free(r);
}

Test(imap_parse, literal_at_limit)
{
	struct t_run *r = T_RUN(&t_small,
		"a LOGIN {16}\r\n0123456789abcdef p\r\n"
		"b LOGIN {17}\r\n"
		"c LOGIN {16+}\r\n0123456789abcdef p\r\n");

	cr_assert_eq(r->nev, 4);
	t_event(r, 0, T_CONT, 14, 0);
	t_cmd(r, 1, IMAP_OK, "a", IMAP_CMD_LOGIN, 2, 34);
	t_arg(r, 1, 0, IMAP_ARG_LITERAL, "0123456789abcdef");
	t_cmd(r, 2, IMAP_ERR_LITERAL_TOO_BIG, "b", 0, 0, 14);
	t_cmd(r, 3, IMAP_OK, "c", IMAP_CMD_LOGIN, 2, 35);
	free(r);

	r = T_RUN(&t_small, "c LOGIN {17+}\r\n0123456789abcdefg p\r\n");
	cr_assert_eq(r->nev, 1);
	t_event(r, 0, T_FATAL, 0, IMAP_FATAL_LITERAL_TOO_BIG);
	free(r);
}

Test(imap_parse, literal_over_line_limit)
{
	const struct imap_limits lim = { .max_line = 40, .max_literal = 4096, .max_tag = 8 };
	/* 14 bytes + 25 of data + LF = 40: fits exactly. One more does not. */
	struct t_run *r = T_RUN(&lim,
		"a LOGIN {25}\r\nabcdefghijklmnopqrstuvwxy\n"
		"a LOGIN {26}\r\n");

	cr_assert_eq(r->nev, 3);
	t_event(r, 0, T_CONT, 14, 0);
	t_cmd(r, 1, IMAP_OK, "a", IMAP_CMD_LOGIN, 1, 40);
	t_cmd(r, 2, IMAP_ERR_LITERAL_TOO_BIG, "a", 0, 0, 14);
	free(r);
}

Test(imap_parse, literal_bad_syntax)
{
	struct t_run *r = T_RUN(&t_lim,
		"a LOGIN {}\r\n" "b LOGIN {+}\r\n" "c LOGIN {1x}\r\n" "d LOGIN {1+x}\r\n"
		"e LOGIN {1}x\r\n" "f LOGIN {1}\rx\r\n" "g LOGIN u{1}\r\n" "h LOGIN {1 }\r\n"
		"i LOGIN {-1}\r\n");

	cr_assert_eq(r->nev, 9);
	for (int i = 0; i < 9; i++)
		cr_assert_eq(r->ev[i].cmd.error, IMAP_ERR_SYNTAX, "line %d", i);
	cr_assert_eq(r->left, 0);
	free(r);
}

Test(imap_parse, after_literal)
{
	struct t_run *r = T_RUN(&t_lim,
		"a LOGIN {1+}\r\nxy\r\n"               /* a byte glued to the data */
		"b X ({1+}\r\nx)\r\n"                  /* ")" may follow */
		"c X {1+}\r\nx\n"                      /* bare LF may follow */
		"d X {1+}\r\nx\"q\"\r\n");             /* a quote may not */

	cr_assert_eq(r->nev, 4);
	t_cmd(r, 0, IMAP_ERR_SYNTAX, "a", 0, 0, 18);
	t_cmd(r, 1, IMAP_OK, "b", IMAP_CMD_OTHER, 3, -1);
	t_arg(r, 1, 0, IMAP_ARG_LPAREN, "(");
	t_arg(r, 1, 1, IMAP_ARG_LITERAL, "x");
	t_arg(r, 1, 2, IMAP_ARG_RPAREN, ")");
	t_cmd(r, 2, IMAP_OK, "c", IMAP_CMD_OTHER, 1, -1);
	t_cmd(r, 3, IMAP_ERR_SYNTAX, "d", 0, 0, -1);
	free(r);
}

Test(imap_parse, nul_in_line)
{
	static const char in[] = "a NO\0OP\r\n" "\0\r\n" "b LOGIN \"x\0\" y\r\n" "c NOOP\r\n";
	struct t_run *r = T_RUN(&t_lim, in);

	cr_assert_eq(r->nev, 4);
	t_cmd(r, 0, IMAP_ERR_NUL, "a", 0, 0, 9);
	t_cmd(r, 1, IMAP_ERR_NUL, "", 0, 0, 3);
	t_cmd(r, 2, IMAP_ERR_NUL, "b", 0, 0, 16);
	t_cmd(r, 3, IMAP_OK, "c", IMAP_CMD_NOOP, 0, 8);
	free(r);
}

Test(imap_parse, nul_in_literal)
{
	static const char in[] =
		"a LOGIN {3+}\r\na\0b p\r\n"
		"b LOGIN {3}\r\na\0b p q\r\n"
		"c LOGIN {1+}\r\n\0bad{5+}\r\n";
	struct t_run *r = T_RUN(&t_lim, in);

	/* The literal's bytes are consumed, then the rest of the line. */
	cr_assert_eq(r->nev, 4);
	t_cmd(r, 0, IMAP_ERR_NUL, "a", 0, 0, 21);
	t_event(r, 1, T_CONT, 21 + 13, 0);
	t_cmd(r, 2, IMAP_ERR_NUL, "b", 0, 0, 22);
	/* The rest of a line skipped for a NUL is still watched for {n+}. */
	t_event(r, 3, T_FATAL, 43, IMAP_FATAL_SKIPPED_LITERAL);
	free(r);
}

Test(imap_parse, bad_tags)
{
	struct t_run *r = T_RUN(&t_small,
		"a+b NOOP\r\n" "+ NOOP\r\n" "* NOOP\r\n" "(a NOOP\r\n" "a\"b NOOP\r\n"
		"a]b[ NOOP\r\n" " NOOP\r\n" "12345678 NOOP\r\n" "123456789 NOOP\r\n"
		"aNOOP\r\n" "a\r\n");

	cr_assert_eq(r->nev, 11);
	for (int i = 0; i < 5; i++)
		t_cmd(r, i, IMAP_ERR_SYNTAX, "", 0, 0, -1);
	t_cmd(r, 5, IMAP_OK, "a]b[", IMAP_CMD_NOOP, 0, -1);
	t_cmd(r, 6, IMAP_ERR_SYNTAX, "", 0, 0, -1);
	t_cmd(r, 7, IMAP_OK, "12345678", IMAP_CMD_NOOP, 0, -1);
	t_cmd(r, 8, IMAP_ERR_TAG_TOO_LONG, "", 0, 0, 16);
	/* Tag without a command: the tag is valid, so it is kept. */
	t_cmd(r, 9, IMAP_ERR_SYNTAX, "aNOOP", 0, 0, -1);
	t_cmd(r, 10, IMAP_ERR_SYNTAX, "a", 0, 0, 3);
	free(r);
}

/* Tags are echoed back: 8-bit bytes are refused there (but not in atoms). */
Test(imap_parse, eight_bit_tags_refused)
{
	struct t_run *r = T_RUN(&t_small, "\xc3\xa9 NOOP\r\n" "a\xff NOOP\r\n" "a LOGIN \xc3\xa9t\xc3\xa9 x\r\n");

	cr_assert_eq(r->nev, 3);
	t_cmd(r, 0, IMAP_ERR_SYNTAX, "", 0, 0, 9);
	t_cmd(r, 1, IMAP_ERR_SYNTAX, "", 0, 0, 9);
	t_cmd(r, 2, IMAP_OK, "a", IMAP_CMD_LOGIN, 2, -1);
	t_arg(r, 2, 0, IMAP_ARG_ATOM, "\xc3\xa9t\xc3\xa9");
	free(r);
}

Test(imap_parse, tag_too_long_long_line)
{
	/* A tag over max_tag is reported as soon as the line ends... */
	struct t_run *r = T_RUN(&t_small, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa NOOP\r\n");

	cr_assert_eq(r->nev, 1);
	t_cmd(r, 0, IMAP_ERR_TAG_TOO_LONG, "", 0, 0, 51);
	free(r);
	/* ...and is still subject to max_line. */
	r = T_RUN(&t_small, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
	cr_assert_eq(r->nev, 1);
	t_event(r, 0, T_FATAL, 0, IMAP_FATAL_LINE_TOO_LONG);
	free(r);
}

static size_t t_build_args(char *buf, size_t cap, const char *head, int nargs, const char *tail)
{
	size_t o = (size_t)snprintf(buf, cap, "%s", head);

	for (int i = 0; i < nargs; i++)
		o += (size_t)snprintf(buf + o, cap - o, " x");
	o += (size_t)snprintf(buf + o, cap - o, "%s", tail);
	cr_assert_lt(o, cap);
	return o;
}

Test(imap_parse, too_many_args)
{
	char buf[512];
	struct t_run *r;
	size_t n;

	n = t_build_args(buf, sizeof(buf), "a X", IMAP_MAX_ARGS, "\r\n");
	r = t_run_all(&t_lim, buf, n);
	cr_assert_eq(r->nev, 1);
	t_cmd(r, 0, IMAP_OK, "a", IMAP_CMD_OTHER, IMAP_MAX_ARGS, (int)n);
	free(r);

	n = t_build_args(buf, sizeof(buf), "a X", IMAP_MAX_ARGS + 1, "\r\n");
	r = t_run_all(&t_lim, buf, n);
	cr_assert_eq(r->nev, 1);
	t_cmd(r, 0, IMAP_ERR_TOO_MANY_ARGS, "a", 0, 0, (int)n);
	free(r);

	/* Parentheses count: 70 atoms + "(" + ")" fit, 71 do not. */
	n = t_build_args(buf, sizeof(buf), "a ID (y", IMAP_MAX_ARGS - 3, ")\r\n");
	r = t_run_all(&t_lim, buf, n);
	t_cmd(r, 0, IMAP_OK, "a", IMAP_CMD_ID, IMAP_MAX_ARGS, (int)n);
	free(r);
	n = t_build_args(buf, sizeof(buf), "a ID (y", IMAP_MAX_ARGS - 2, ")\r\n");
	r = t_run_all(&t_lim, buf, n);
	t_cmd(r, 0, IMAP_ERR_TOO_MANY_ARGS, "a", 0, 0, (int)n);
	free(r);

	/* The literal that does not fit is not parsed, so its bytes would be
	 * taken for commands: fatal. */
	n = t_build_args(buf, sizeof(buf), "a X", IMAP_MAX_ARGS, " {5+}\r\nhello\r\n");
	r = t_run_all(&t_lim, buf, n);
	cr_assert_eq(r->nev, 1);
	t_event(r, 0, T_FATAL, 0, IMAP_FATAL_SKIPPED_LITERAL);
	free(r);
}

Test(imap_parse, id_list_and_nil)
{
	struct t_run *r = T_RUN(&t_lim,
		"a ID (\"name\" \"x\" \"version\" \"1\")\r\n"
		"b ID NIL\r\n"
		"c id ()\r\n");

	cr_assert_eq(r->nev, 3);
	t_cmd(r, 0, IMAP_OK, "a", IMAP_CMD_ID, 6, -1);
	t_arg(r, 0, 0, IMAP_ARG_LPAREN, "(");
	t_arg(r, 0, 1, IMAP_ARG_QUOTED, "name");
	t_arg(r, 0, 2, IMAP_ARG_QUOTED, "x");
	t_arg(r, 0, 3, IMAP_ARG_QUOTED, "version");
	t_arg(r, 0, 4, IMAP_ARG_QUOTED, "1");
	t_arg(r, 0, 5, IMAP_ARG_RPAREN, ")");
	t_cmd(r, 1, IMAP_OK, "b", IMAP_CMD_ID, 1, -1);
	t_arg(r, 1, 0, IMAP_ARG_ATOM, "NIL");
	t_cmd(r, 2, IMAP_OK, "c", IMAP_CMD_ID, 2, -1);
	free(r);
}

Test(imap_parse, parens)
{
	struct t_run *r = T_RUN(&t_lim,
		"a X ((a) (b \"c\")) d\r\n"
		"b X ((a)\r\n" "c X a)\r\n" "d X ( a)\r\n" "e X (a )\r\n"
		"f X (a)(b)\r\n" "g X (a)b\r\n" "h X(a)\r\n" "i X )\r\n" "j X (\r\n");

	cr_assert_eq(r->nev, 10);
	t_cmd(r, 0, IMAP_OK, "a", IMAP_CMD_OTHER, 10, -1);
	t_arg(r, 0, 1, IMAP_ARG_LPAREN, "(");
	t_arg(r, 0, 6, IMAP_ARG_QUOTED, "c");
	t_arg(r, 0, 8, IMAP_ARG_RPAREN, ")");
	t_arg(r, 0, 9, IMAP_ARG_ATOM, "d");
	for (int i = 1; i < 10; i++)
		cr_assert_eq(r->ev[i].cmd.error, IMAP_ERR_SYNTAX, "line %d", i);
	free(r);
}

Test(imap_parse, spacing)
{
	struct t_run *r = T_RUN(&t_lim,
		"a  NOOP\r\n" "a LOGIN u  p\r\n" "a NOOP \r\n" "a LOGIN \"u\"\"p\"\r\n"
		"a NOOP\"x\"\r\n" "a LOGIN u\tp\r\n" "a NOOP\r\n");

	cr_assert_eq(r->nev, 7);
	for (int i = 0; i < 6; i++)
		t_cmd(r, i, IMAP_ERR_SYNTAX, "a", 0, 0, -1);
	t_cmd(r, 6, IMAP_OK, "a", IMAP_CMD_NOOP, 0, 8);
	free(r);
}

Test(imap_parse, empty_lines_and_bare_lf)
{
	struct t_run *r = T_RUN(&t_lim,
		"\r\n" "\n" "a NOOP\n" "b LOGIN u p\n" "\r\r\n" "c NOOP\rb\r\n" "d NOOP\r\n");

	cr_assert_eq(r->nev, 7);
	t_cmd(r, 0, IMAP_ERR_EMPTY, "", 0, 0, 2);
	t_cmd(r, 1, IMAP_ERR_EMPTY, "", 0, 0, 1);
	t_cmd(r, 2, IMAP_OK, "a", IMAP_CMD_NOOP, 0, 7);
	t_cmd(r, 3, IMAP_OK, "b", IMAP_CMD_LOGIN, 2, 12);
	t_cmd(r, 4, IMAP_ERR_SYNTAX, "", 0, 0, 3);
	t_cmd(r, 5, IMAP_ERR_SYNTAX, "c", 0, 0, 10);
	t_cmd(r, 6, IMAP_OK, "d", IMAP_CMD_NOOP, 0, 8);
	free(r);
}

Test(imap_parse, line_length)
{
	/* t_small.max_line is 64. */
	static const char exact[] = "a LOGIN 0123456789012345678901234567890123456789012345678901234\n";
	static const char over[] = "a LOGIN 01234567890123456789012345678901234567890123456789012345\n";
	struct t_run *r;

	cr_assert_eq(sizeof(exact) - 1, 64);
	r = T_RUN(&t_small, exact);
	cr_assert_eq(r->nev, 1);
	t_cmd(r, 0, IMAP_OK, "a", IMAP_CMD_LOGIN, 1, 64);
	free(r);

	r = T_RUN(&t_small, over);
	cr_assert_eq(r->nev, 1);
	t_event(r, 0, T_FATAL, 0, IMAP_FATAL_LINE_TOO_LONG);
	free(r);

	/* No LF at all, and a line that is being skipped. */
	r = T_RUN(&t_small, "a NOOP xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	t_event(r, 0, T_FATAL, 0, IMAP_FATAL_LINE_TOO_LONG);
	free(r);
	r = T_RUN(&t_small, "a NOOP\r\n\"\\x\"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n");
	cr_assert_eq(r->nev, 2);
	t_event(r, 1, T_FATAL, 8, IMAP_FATAL_LINE_TOO_LONG);
	free(r);

	/* Below the limit and incomplete: just more needed. */
	r = T_RUN(&t_small, "a NOOP xxxxxxxxxxxx");
	cr_assert_eq(r->nev, 0);
	cr_assert_eq(r->left, 19);
	free(r);
}

Test(imap_parse, pipelined)
{
	struct t_run *r = T_RUN(&t_lim,
		"a CAPABILITY\r\nb LOGIN {1}\r\nx y\r\nc ID NIL\r\nd LOGOUT\r\ne NO");

	cr_assert_eq(r->nev, 5);
	t_cmd(r, 0, IMAP_OK, "a", IMAP_CMD_CAPABILITY, 0, 14);
	t_event(r, 1, T_CONT, 27, 0);
	t_cmd(r, 2, IMAP_OK, "b", IMAP_CMD_LOGIN, 2, 18);
	cr_assert_eq(r->ev[2].at, 14);
	t_arg(r, 2, 0, IMAP_ARG_LITERAL, "x");
	t_arg(r, 2, 1, IMAP_ARG_ATOM, "y");
	t_cmd(r, 3, IMAP_OK, "c", IMAP_CMD_ID, 1, 10);
	t_cmd(r, 4, IMAP_OK, "d", IMAP_CMD_LOGOUT, 0, 10);
	cr_assert_eq(r->left, 4);
	free(r);
}

Test(imap_parse, skipped_line_with_literal_plus)
{
	struct t_run *r;

	r = T_RUN(&t_lim, "a LOGIN \"x\\y\" {5+}\r\nhello\r\n");
	cr_assert_eq(r->nev, 1);
	t_event(r, 0, T_FATAL, 0, IMAP_FATAL_SKIPPED_LITERAL);
	free(r);

	r = T_RUN(&t_lim, "{5+}\n");
	t_event(r, 0, T_FATAL, 0, IMAP_FATAL_SKIPPED_LITERAL);
	free(r);

	r = T_RUN(&t_lim, "a LOGIN x\"y {{12{5+}\r\n");
	t_event(r, 0, T_FATAL, 0, IMAP_FATAL_SKIPPED_LITERAL);
	free(r);

	/* Not at the end of the line, synchronizing, or broken: plain errors. */
	r = T_RUN(&t_lim,
		"a \x01 {5+} x\r\n" "b \x01 {5}\r\n" "c \x01 {5+}x\r\n" "d \x01 {+}\r\n"
		"e \x01 {5+\r\n" "f \x01 {5+}\r\r\n" "g \x01 5+}\r\n");
	cr_assert_eq(r->nev, 7);
	for (int i = 0; i < 7; i++)
		cr_assert_eq(r->ev[i].cmd.error, IMAP_ERR_SYNTAX, "line %d", i);
	free(r);

	/* A valid {5+} is just a literal. */
	r = T_RUN(&t_lim, "a LOGIN x {5+}\r\nhello\r\n");
	t_cmd(r, 0, IMAP_OK, "a", IMAP_CMD_LOGIN, 2, -1);
	free(r);
}

Test(imap_parse, garbage)
{
	static const uint8_t junk[] = {
		0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x7b, 0x0a,
		0xff, 0xfe, 0x7b, 0x39, 0x2b, 0x7d, 0x0d, 0x0a, 0x22, 0x5c, 0x28, 0x29, 0x0a,
		0x47, 0x45, 0x54, 0x20, 0x2f, 0x20, 0x48, 0x54, 0x54, 0x50, 0x2f, 0x31, 0x2e,
		0x31, 0x0d, 0x0a, 0x0d, 0x0a, 0x80, 0x81, 0x7b, 0x33, 0x7d, 0x0a, 0x41,
	};
	struct t_run *r = t_run_all(&t_lim, junk, sizeof(junk));

	/* A TLS hello, a "{9+}" line that cannot be resynced: fatal. */
	cr_assert_eq(r->nev, 2);
	t_cmd(r, 0, IMAP_ERR_NUL, "", 0, 0, 13);
	t_event(r, 1, T_FATAL, 13, IMAP_FATAL_SKIPPED_LITERAL);
	free(r);

	r = t_run_all(&t_lim, junk + 21, sizeof(junk) - 21);
	cr_assert_eq(r->nev, 4);
	t_cmd(r, 0, IMAP_ERR_SYNTAX, "", 0, 0, 5);
	/* "GET / HTTP/1.1": a tag "GET" and a command named "/". */
	t_cmd(r, 1, IMAP_OK, "GET", IMAP_CMD_OTHER, 1, 16);
	t_cmd(r, 2, IMAP_ERR_EMPTY, "", 0, 0, 2);
	t_cmd(r, 3, IMAP_ERR_SYNTAX, "", 0, 0, 6);
	cr_assert_eq(r->left, 1);
	free(r);
}

/* Short inputs over the bytes that matter, with tight limits. */
Test(imap_parse, random_inputs_agree)
{
	static const char alphabet[] = "a  ()(){}{}++019\r\n\r\n\"\\x]*\0\x80";
	const struct imap_limits lim = { .max_line = 24, .max_literal = 5, .max_tag = 3 };
	uint32_t seed = 12345;
	uint8_t in[40];

	for (int iter = 0; iter < 400; iter++) {
		size_t len;
		struct t_run *r;

		seed = seed * 1103515245u + 12345u;
		len = (seed >> 16) % sizeof(in);
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			in[i] = (uint8_t)alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
		}
		/* Start most inputs like a command so deeper states are reached. */
		if (len > 4 && iter % 2)
			memcpy(in, "t X ", 4);
		r = t_run_all(&lim, in, len);
		for (int i = 0; i < r->nev; i++)
			if (r->ev[i].type == T_CMD)
				cr_assert_leq((size_t)r->ev[i].rc, lim.max_line);
		free(r);
	}
}

Test(imap_parse, arg_copy)
{
	static const uint8_t buf[] = "abc\"d\\\"e\\\\f\"x\0y";
	struct imap_arg atom = { IMAP_ARG_ATOM, { 0, 3 } };
	struct imap_arg quoted = { IMAP_ARG_QUOTED, { 4, 7 } };
	struct imap_arg nul = { IMAP_ARG_LITERAL, { 12, 3 } };
	struct imap_arg bad_esc = { IMAP_ARG_QUOTED, { 4, 2 } };
	char out[16];

	cr_assert_eq(imap_arg_copy(buf, &atom, out, sizeof(out)), 3);
	cr_assert_str_eq(out, "abc");
	/* Exactly enough room: len + 1. */
	cr_assert_eq(imap_arg_copy(buf, &atom, out, 4), 3);
	cr_assert_eq(imap_arg_copy(buf, &atom, out, 3), -1);
	cr_assert_eq(imap_arg_copy(buf, &atom, out, 0), -1);
	cr_assert_eq(imap_arg_copy(buf, &quoted, out, sizeof(out)), 5);
	cr_assert_str_eq(out, "d\"e\\f");
	cr_assert_eq(imap_arg_copy(buf, &quoted, out, 6), 5);
	cr_assert_eq(imap_arg_copy(buf, &quoted, out, 5), -1);
	cr_assert_eq(imap_arg_copy(buf, &nul, out, sizeof(out)), -1);
	cr_assert_eq(imap_arg_copy(buf, &bad_esc, out, sizeof(out)), -1);
}

Test(imap_parse, parse_line)
{
	static const uint8_t l[] = "dXNlcg==\r\nrest";

	cr_assert_eq(imap_parse_line(l, sizeof(l) - 1, 64), 10);
	cr_assert_eq(imap_parse_line(l, 9, 64), 0);
	cr_assert_eq(imap_parse_line(l, 10, 64), 10);
	cr_assert_eq(imap_parse_line((const uint8_t *)"*\n", 2, 64), 2);
	cr_assert_eq(imap_parse_line((const uint8_t *)"\n", 1, 64), 1);
	cr_assert_eq(imap_parse_line(l, 0, 64), 0);
	/* The LF must be within max bytes whatever n is. */
	cr_assert_eq(imap_parse_line(l, 9, 9), 0);
	cr_assert_eq(imap_parse_line(l, 10, 9), IMAP_FATAL_LINE_TOO_LONG);
	cr_assert_eq(imap_parse_line(l, sizeof(l) - 1, 10), 10);
	cr_assert_eq(imap_parse_line(l, sizeof(l) - 1, 9), IMAP_FATAL_LINE_TOO_LONG);
}

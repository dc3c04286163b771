/*
 * pop3_parse.c - resumable parser for POP3 commands before login.
 *
 * One state machine walks the bytes of one line. p->pos is the next byte to
 * look at and every transition is driven by that single byte, so however
 * the input is split across calls each byte is examined once (a byte that
 * ends a token may be handed to the next state in the same call, never
 * re-read in a later one).
 *
 * Errors never stop the scan early: a malformed line is skipped up to its
 * LF, so the caller can answer -ERR and carry on with the next command.
 * Only a line that does not end within its bound is fatal, because after
 * it the stream cannot be told apart into commands any more.
 */
#include "gh.h"
#include "pop3_parse.h"
#include "login_parse.h"

#include <string.h>

/* Offsets are uint32_t: a bound above this could not be represented. */
#define POP3__LINE_CAP ((size_t)INT32_MAX)

enum pop3__state {
	POP3__KEY = 0,    /* at or inside the keyword; it starts at offset 0 */
	POP3__EMPTY_CR,   /* the line began with CR */
	POP3__SP,         /* between words: spaces, a word, or the line end */
	POP3__WORD,       /* inside a word; tok = its start */
	POP3__REST_START, /* USER/PASS after their space, or a SASL line's start */
	POP3__REST,       /* the rest-of-line argument; tok = its start */
	POP3__CR,         /* CR at the end of the line: expect LF */
	POP3__SKIP,       /* an invalid line: skip up to LF */
};

/* What one byte did to the machine. */
enum pop3__act {
	POP3__NEXT,  /* byte used: move on */
	POP3__AGAIN, /* state changed, hand the same byte to the new state */
	POP3__LINE,  /* the byte was the line's LF: the line is complete */
};

static const struct login_keyword pop3__names[] = {
	{ "USER", 4, POP3_CMD_USER },
	{ "PASS", 4, POP3_CMD_PASS },
	{ "AUTH", 4, POP3_CMD_AUTH },
	{ "CAPA", 4, POP3_CMD_CAPA },
	{ "STLS", 4, POP3_CMD_STLS },
	{ "NOOP", 4, POP3_CMD_NOOP },
	{ "QUIT", 4, POP3_CMD_QUIT },
};

static enum pop3_cmd_kind pop3__kind(const uint8_t *s, uint32_t len)
{
	size_t n = ARRAY_SIZE(pop3__names);

	return (enum pop3_cmd_kind)login_keyword(pop3__names, n, s, len, POP3_CMD_OTHER);
}

static size_t pop3__cap(size_t v)
{
	return v > POP3__LINE_CAP ? POP3__LINE_CAP : v;
}

/* Start a line: command mode unless sasl. Keeps the limits. */
static void pop3__reset(struct pop3_parser *p, bool sasl)
{
	struct pop3_limits lim = p->lim;

	memset(p, 0, sizeof(*p));
	p->lim = lim;
	p->sasl = sasl;
	if (sasl) {
		p->cmd.kind = POP3_CMD_SASL;
		p->state = POP3__REST_START;
		p->limit = (uint32_t)lim.max_sasl;
	} else {
		p->state = POP3__KEY;
		p->limit = (uint32_t)lim.max_command;
	}
}

void pop3_parser_init(struct pop3_parser *p, const struct pop3_limits *lim)
{
	/* lim may point into *p: copy it first. */
	struct pop3_limits l = *lim;

	memset(p, 0, sizeof(*p));
	p->lim.max_command = pop3__cap(l.max_command);
	p->lim.max_sasl = pop3__cap(l.max_sasl);
	pop3__reset(p, false);
}

void pop3_parser_expect_sasl(struct pop3_parser *p)
{
	pop3__reset(p, true);
}

/* Switch to skipping the rest of the line, remembering why. */
static enum pop3__act pop3__fail(struct pop3_parser *p, enum pop3_error e)
{
	p->cmd.error = e;
	p->state = POP3__SKIP;
	return POP3__AGAIN;
}

static void pop3__push(struct pop3_parser *p, uint32_t off, uint32_t len)
{
	/* Room was checked when the argument started. */
	struct pop3_span *a = &p->cmd.args[p->cmd.nargs++];

	a->off = off;
	a->len = len;
}

/* CR or LF ends the line: LF completes it, CR waits for its LF. */
static enum pop3__act pop3__eol(struct pop3_parser *p, uint8_t c)
{
	if (c == '\n')
		return POP3__LINE;
	p->state = POP3__CR;
	return POP3__NEXT;
}

/* The keyword ends at p->pos (with byte c: SP, CR or LF). */
static enum pop3__act pop3__keyword_end(struct pop3_parser *p, const uint8_t *buf, uint8_t c)
{
	p->cmd.name.off = 0;
	p->cmd.name.len = p->pos;
	p->cmd.kind = pop3__kind(buf, p->pos);
	/* AUTH may carry an initial response as long as a SASL line. */
	if (p->cmd.kind == POP3_CMD_AUTH && p->lim.max_sasl > p->limit)
		p->limit = (uint32_t)p->lim.max_sasl;
	if (c != ' ')
		return pop3__eol(p, c);
	if (p->cmd.kind == POP3_CMD_USER || p->cmd.kind == POP3_CMD_PASS)
		p->state = POP3__REST_START;
	else
		p->state = POP3__SP;
	return POP3__NEXT;
}

/* Feed the byte c at p->pos to the current state. */
static enum pop3__act pop3__step(struct pop3_parser *p, const uint8_t *buf, uint8_t c)
{
	if (c == 0) {
		/* A NUL outweighs any other complaint about the line. */
		p->cmd.error = POP3_ERR_NUL;
		p->state = POP3__SKIP;
		return POP3__NEXT;
	}

	switch (p->state) {
	case POP3__KEY:
		if (c > 0x20 && c < 0x7f) {
			if (p->pos >= POP3_MAX_KEYWORD)
				return pop3__fail(p, POP3_ERR_SYNTAX);
			return POP3__NEXT;
		}
		if (p->pos == 0) {
			if (c == '\r') {
				p->state = POP3__EMPTY_CR;
				return POP3__NEXT;
			}
			if (c == '\n') {
				p->cmd.error = POP3_ERR_EMPTY;
				return POP3__LINE;
			}
			return pop3__fail(p, POP3_ERR_SYNTAX);
		}
		if (c != ' ' && c != '\r' && c != '\n')
			return pop3__fail(p, POP3_ERR_SYNTAX);
		return pop3__keyword_end(p, buf, c);

	case POP3__EMPTY_CR:
		if (c != '\n')
			return pop3__fail(p, POP3_ERR_SYNTAX);
		p->cmd.error = POP3_ERR_EMPTY;
		return POP3__LINE;

	case POP3__SP:
		if (c == ' ')
			return POP3__NEXT;
		if (c == '\r' || c == '\n')
			return pop3__eol(p, c);
		if (p->cmd.nargs >= POP3_MAX_ARGS)
			return pop3__fail(p, POP3_ERR_TOO_MANY_ARGS);
		p->tok = p->pos;
		p->state = POP3__WORD;
		return POP3__NEXT;

	case POP3__WORD:
		if (c != ' ' && c != '\r' && c != '\n')
			return POP3__NEXT;
		pop3__push(p, p->tok, p->pos - p->tok);
		p->state = POP3__SP;
		return POP3__AGAIN;

	case POP3__REST_START:
		if (c == '\r' || c == '\n') {
			/* "PASS" with nothing after it has no argument; an empty
			   SASL line is a valid (empty) response. */
			if (p->sasl)
				pop3__push(p, p->pos, 0);
			return pop3__eol(p, c);
		}
		p->tok = p->pos;
		p->state = POP3__REST;
		return POP3__NEXT;

	case POP3__REST:
		if (c != '\r' && c != '\n')
			return POP3__NEXT;
		pop3__push(p, p->tok, p->pos - p->tok);
		return pop3__eol(p, c);

	case POP3__CR:
		if (c != '\n')
			return pop3__fail(p, POP3_ERR_SYNTAX);
		return POP3__LINE;

	default: /* POP3__SKIP */
		return c == '\n' ? POP3__LINE : POP3__NEXT;
	}
}

int pop3_parse(struct pop3_parser *p, const uint8_t *buf, size_t n, struct pop3_cmd *cmd_out)
{
	for (;;) {
		/* The bound may grow once the keyword says AUTH: recompute. */
		size_t end = n < p->limit ? n : p->limit;

		if (p->pos >= end)
			break;
		switch (pop3__step(p, buf, buf[p->pos])) {
		case POP3__NEXT:
			p->pos++;
			break;
		case POP3__AGAIN:
			break;
		case POP3__LINE: {
			int len = (int)p->pos + 1;

			if (p->cmd.error != POP3_OK) {
				/* An invalid line carries no command. */
				p->cmd.nargs = 0;
				if (!p->sasl)
					p->cmd.kind = POP3_CMD_OTHER;
			}
			if (cmd_out)
				*cmd_out = p->cmd;
			pop3__reset(p, false);
			return len;
		}
		}
	}
	/* The bound scanned and the line is still not complete. */
	if (p->pos >= p->limit)
		return POP3_FATAL_LINE_TOO_LONG;
	return 0;
}

/*
 * imap_parse.c - resumable parser for IMAP commands before login
 * (RFC 3501 / RFC 9051 grammar, LITERAL+ from RFC 7888).
 *
 * One state machine walks the bytes of one command. p->pos is the next byte
 * to look at and every state transition is driven by that single byte, so
 * however the input is split across calls each byte is examined once (a
 * byte that ends a token may be handed to the next state in the same call,
 * never re-read in a later one). Literal data is skipped in bulk.
 *
 * Errors never stop the scan early: a malformed line is skipped up to its
 * LF, so the caller can answer BAD and carry on with the next command. While
 * skipping, a small tail matcher watches for "{digits+}" CRLF, because the
 * bytes of such a literal follow without a continuation request and would
 * otherwise be read as commands.
 */
#include "gh.h"
#include "imap_parse.h"
#include "login_parse.h"

#include <string.h>

/*
 * Offsets are uint32_t; a limit above this could not be represented, and no
 * sane configuration comes near it.
 */
#define IMAP__LINE_CAP ((size_t)INT32_MAX)

enum imap__state {
	IMAP__TAG = 0,      /* at or inside the tag; tok = 0 */
	IMAP__EMPTY_CR,     /* the line began with CR */
	IMAP__NAME,         /* inside the command name; tok = its start */
	IMAP__ARG_SP,       /* after SP: an argument must start */
	IMAP__ARG_LPAREN,   /* after "(": an argument or ")" */
	IMAP__ATOM,         /* tok = start */
	IMAP__QUOTED,       /* tok = first byte after the opening quote */
	IMAP__QUOTED_ESC,   /* after a backslash inside a quoted string */
	IMAP__LIT_LEN,      /* digits after "{"; tok = offset of "{" */
	IMAP__LIT_CLOSE,    /* after "{n+": expect "}" */
	IMAP__LIT_CR,       /* after "}": expect CR or LF */
	IMAP__LIT_LF,       /* after "}" CR: expect LF */
	IMAP__LIT_DATA,     /* inside literal data up to lit_end */
	IMAP__AFTER_ARG,    /* an argument just ended */
	IMAP__CR,           /* CR at the end of the command: expect LF */
	/*
	 * Skipping an invalid line up to LF. The sub-states track how much of
	 * "{digits+}" CR LF the line currently ends with.
	 */
	IMAP__SKIP,
	IMAP__SKIP_BRACE,
	IMAP__SKIP_DIGITS,
	IMAP__SKIP_PLUS,
	IMAP__SKIP_CLOSE,
	IMAP__SKIP_CR,
};

/* What one byte did to the machine. */
enum imap__act {
	IMAP__NEXT,     /* byte used: move on */
	IMAP__AGAIN,    /* state changed, hand the same byte to the new state */
	IMAP__LINE,     /* the byte was the line's LF: the command is complete */
	IMAP__PAUSE,    /* stop here and return 0 (continuation request) */
	IMAP__FATAL_LIT,
	IMAP__FATAL_SKIP,
};

static const struct login_keyword imap__names[] = {
	{ "CAPABILITY", 10, IMAP_CMD_CAPABILITY },
	{ "NOOP", 4, IMAP_CMD_NOOP },
	{ "LOGOUT", 6, IMAP_CMD_LOGOUT },
	{ "ID", 2, IMAP_CMD_ID },
	{ "LOGIN", 5, IMAP_CMD_LOGIN },
	{ "AUTHENTICATE", 12, IMAP_CMD_AUTHENTICATE },
	{ "STARTTLS", 8, IMAP_CMD_STARTTLS },
};

/* ATOM-CHAR: any CHAR except atom-specials; 8-bit bytes allowed (UTF-8). */
static bool imap__atom_char(uint8_t c)
{
	if (c >= 0x80)
		return true;
	if (c <= 0x20 || c == 0x7f)
		return false;
	switch (c) {
	case '(': case ')': case '{': case '%': case '*': case '"':
	case '\\': case ']':
		return false;
	default:
		return true;
	}
}

/* ASTRING-CHAR = ATOM-CHAR / resp-specials. */
static bool imap__astring_char(uint8_t c)
{
	return c == ']' || imap__atom_char(c);
}

static bool imap__digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static enum imap_cmd_kind imap__kind(const uint8_t *s, uint32_t len)
{
	size_t n = ARRAY_SIZE(imap__names);

	return (enum imap_cmd_kind)login_keyword(imap__names, n, s, len, IMAP_CMD_OTHER);
}

void imap_parser_init(struct imap_parser *p, const struct imap_limits *lim)
{
	/* lim may point into *p (the reset after a command): copy it first. */
	struct imap_limits l = *lim;

	memset(p, 0, sizeof(*p));
	if (l.max_line > IMAP__LINE_CAP)
		l.max_line = IMAP__LINE_CAP;
	p->lim = l;
	p->state = IMAP__TAG;
}

/* Room is reserved before an argument starts, see imap__reserve(). */
static void imap__push(struct imap_parser *p, enum imap_arg_type t, uint32_t off, uint32_t len)
{
	struct imap_arg *a;

	if (p->cmd.nargs >= IMAP_MAX_ARGS)
		return;
	a = &p->cmd.args[p->cmd.nargs++];
	a->type = t;
	a->s.off = off;
	a->s.len = len;
}

/* Switch to skipping the rest of the line, remembering why. */
static enum imap__act imap__fail(struct imap_parser *p, enum imap_error e)
{
	p->cmd.error = e;
	p->state = IMAP__SKIP;
	return IMAP__AGAIN;
}

/*
 * Checked when an argument starts rather than when it ends, so that the
 * "{" of a literal that does not fit is seen by the skip matcher.
 */
static bool imap__reserve(const struct imap_parser *p)
{
	return p->cmd.nargs < IMAP_MAX_ARGS;
}

/* The LF of "{n}" CRLF or "{n+}" CRLF is at p->pos. */
static enum imap__act imap__literal(struct imap_parser *p)
{
	uint64_t data = (uint64_t)p->pos + 1;

	/* The command needs at least one more byte (its LF) after the data. */
	if (p->lit_len > p->lim.max_literal || data + p->lit_len + 1 > p->lim.max_line) {
		if (p->lit_plus)
			return IMAP__FATAL_LIT;
		p->cmd.error = IMAP_ERR_LITERAL_TOO_BIG;
		return IMAP__LINE;
	}
	imap__push(p, IMAP_ARG_LITERAL, (uint32_t)data, (uint32_t)p->lit_len);
	p->lit_end = (uint32_t)(data + p->lit_len);
	p->state = IMAP__LIT_DATA;
	if (p->lit_plus)
		return IMAP__NEXT;
	p->continuation = true;
	return IMAP__PAUSE;
}

/* An argument may start with byte c at p->pos. */
static enum imap__act imap__arg_start(struct imap_parser *p, uint8_t c)
{
	if (c == ')' && p->state == IMAP__ARG_LPAREN) {
		if (!imap__reserve(p))
			return imap__fail(p, IMAP_ERR_TOO_MANY_ARGS);
		imap__push(p, IMAP_ARG_RPAREN, p->pos, 1);
		p->depth--;
		p->state = IMAP__AFTER_ARG;
		return IMAP__NEXT;
	}
	if (c != '(' && c != '"' && c != '{' && !imap__astring_char(c))
		return imap__fail(p, IMAP_ERR_SYNTAX);
	if (!imap__reserve(p))
		return imap__fail(p, IMAP_ERR_TOO_MANY_ARGS);

	switch (c) {
	case '(':
		imap__push(p, IMAP_ARG_LPAREN, p->pos, 1);
		p->depth++;
		p->state = IMAP__ARG_LPAREN;
		break;
	case '"':
		p->tok = p->pos + 1;
		p->state = IMAP__QUOTED;
		break;
	case '{':
		p->tok = p->pos;
		p->lit_len = 0;
		p->state = IMAP__LIT_LEN;
		break;
	default:
		p->tok = p->pos;
		p->state = IMAP__ATOM;
		break;
	}
	return IMAP__NEXT;
}

/* After an argument (or the command name): SP, ")", or the line end. */
static enum imap__act imap__after_arg(struct imap_parser *p, uint8_t c)
{
	switch (c) {
	case ' ':
		p->state = IMAP__ARG_SP;
		return IMAP__NEXT;
	case ')':
		if (p->depth == 0)
			return imap__fail(p, IMAP_ERR_SYNTAX);
		if (!imap__reserve(p))
			return imap__fail(p, IMAP_ERR_TOO_MANY_ARGS);
		imap__push(p, IMAP_ARG_RPAREN, p->pos, 1);
		p->depth--;
		return IMAP__NEXT;
	case '\r':
	case '\n':
		if (p->depth != 0)
			return imap__fail(p, IMAP_ERR_SYNTAX);
		if (c == '\n')
			return IMAP__LINE;
		p->state = IMAP__CR;
		return IMAP__NEXT;
	default:
		return imap__fail(p, IMAP_ERR_SYNTAX);
	}
}

/*
 * Skipping: only the LF matters, plus the "{digits+}" [CR] LF tail matcher.
 * A "{" restarts the matcher from any sub-state.
 */
static enum imap__act imap__skip(struct imap_parser *p, uint8_t c)
{
	if (c == '\n') {
		if (p->state == IMAP__SKIP_CLOSE || p->state == IMAP__SKIP_CR)
			return IMAP__FATAL_SKIP;
		return IMAP__LINE;
	}
	if (c == '{') {
		p->state = IMAP__SKIP_BRACE;
		return IMAP__NEXT;
	}
	switch (p->state) {
	case IMAP__SKIP_BRACE:
	case IMAP__SKIP_DIGITS:
		if (imap__digit(c))
			p->state = IMAP__SKIP_DIGITS;
		else if (c == '+' && p->state == IMAP__SKIP_DIGITS)
			p->state = IMAP__SKIP_PLUS;
		else
			p->state = IMAP__SKIP;
		break;
	case IMAP__SKIP_PLUS:
		p->state = c == '}' ? IMAP__SKIP_CLOSE : IMAP__SKIP;
		break;
	case IMAP__SKIP_CLOSE:
		p->state = c == '\r' ? IMAP__SKIP_CR : IMAP__SKIP;
		break;
	default:
		p->state = IMAP__SKIP;
		break;
	}
	return IMAP__NEXT;
}

/* Feed the byte c at p->pos to the current state. */
static enum imap__act imap__step(struct imap_parser *p, const uint8_t *buf, uint8_t c)
{
	if (c == 0) {
		/*
		 * A NUL outweighs any other complaint about the line; it also
		 * breaks any "{n+}" the skip matcher was following.
		 */
		p->cmd.error = IMAP_ERR_NUL;
		p->state = IMAP__SKIP;
		return IMAP__NEXT;
	}

	switch (p->state) {
	case IMAP__TAG:
		/* Tags are 7-bit (RFC 3501 CHAR): they are echoed back in replies. */
		if (c < 0x80 && imap__astring_char(c) && c != '+') {
			if (p->pos >= p->lim.max_tag)
				return imap__fail(p, IMAP_ERR_TAG_TOO_LONG);
			return IMAP__NEXT;
		}
		if (p->pos == 0) {
			if (c == '\r') {
				p->state = IMAP__EMPTY_CR;
				return IMAP__NEXT;
			}
			if (c == '\n') {
				p->cmd.error = IMAP_ERR_EMPTY;
				return IMAP__LINE;
			}
			return imap__fail(p, IMAP_ERR_SYNTAX);
		}
		if (c != ' ' && c != '\r' && c != '\n')
			return imap__fail(p, IMAP_ERR_SYNTAX);
		p->cmd.tag.off = 0;
		p->cmd.tag.len = p->pos;
		if (c != ' ')
			return imap__fail(p, IMAP_ERR_SYNTAX); /* no command name */
		p->tok = p->pos + 1;
		p->state = IMAP__NAME;
		return IMAP__NEXT;

	case IMAP__EMPTY_CR:
		if (c != '\n')
			return imap__fail(p, IMAP_ERR_SYNTAX);
		p->cmd.error = IMAP_ERR_EMPTY;
		return IMAP__LINE;

	case IMAP__NAME:
		if (imap__atom_char(c))
			return IMAP__NEXT;
		if (p->pos == p->tok)
			return imap__fail(p, IMAP_ERR_SYNTAX);
		p->cmd.name.off = p->tok;
		p->cmd.name.len = p->pos - p->tok;
		p->cmd.kind = imap__kind(buf + p->tok, p->pos - p->tok);
		/* A name is followed like an argument, except by ")" (depth 0). */
		p->state = IMAP__AFTER_ARG;
		return IMAP__AGAIN;

	case IMAP__ARG_SP:
	case IMAP__ARG_LPAREN:
		return imap__arg_start(p, c);

	case IMAP__ATOM:
		if (imap__astring_char(c))
			return IMAP__NEXT;
		imap__push(p, IMAP_ARG_ATOM, p->tok, p->pos - p->tok);
		p->state = IMAP__AFTER_ARG;
		return IMAP__AGAIN;

	case IMAP__QUOTED:
		if (c == '"') {
			imap__push(p, IMAP_ARG_QUOTED, p->tok, p->pos - p->tok);
			p->state = IMAP__AFTER_ARG;
		} else if (c == '\\') {
			p->state = IMAP__QUOTED_ESC;
		} else if (c == '\r' || c == '\n') {
			return imap__fail(p, IMAP_ERR_SYNTAX);
		}
		return IMAP__NEXT;

	case IMAP__QUOTED_ESC:
		if (c != '"' && c != '\\')
			return imap__fail(p, IMAP_ERR_SYNTAX);
		p->state = IMAP__QUOTED;
		return IMAP__NEXT;

	case IMAP__LIT_LEN:
		if (imap__digit(c)) {
			/* Saturate: any value past UINT32_MAX is over every limit. */
			if (p->lit_len <= UINT32_MAX)
				p->lit_len = p->lit_len * 10 + (uint64_t)(c - '0');
			return IMAP__NEXT;
		}
		if ((c != '+' && c != '}') || p->pos == p->tok + 1)
			return imap__fail(p, IMAP_ERR_SYNTAX);
		p->lit_plus = c == '+';
		p->state = p->lit_plus ? IMAP__LIT_CLOSE : IMAP__LIT_CR;
		return IMAP__NEXT;

	case IMAP__LIT_CLOSE:
		if (c != '}')
			return imap__fail(p, IMAP_ERR_SYNTAX);
		p->state = IMAP__LIT_CR;
		return IMAP__NEXT;

	case IMAP__LIT_CR:
		if (c == '\n')
			return imap__literal(p);
		if (c != '\r')
			return imap__fail(p, IMAP_ERR_SYNTAX);
		p->state = IMAP__LIT_LF;
		return IMAP__NEXT;

	case IMAP__LIT_LF:
		if (c != '\n')
			return imap__fail(p, IMAP_ERR_SYNTAX);
		return imap__literal(p);

	case IMAP__AFTER_ARG:
		return imap__after_arg(p, c);

	case IMAP__CR:
		if (c != '\n')
			return imap__fail(p, IMAP_ERR_SYNTAX);
		return IMAP__LINE;

	default:
		return imap__skip(p, c);
	}
}

int imap_parse(struct imap_parser *p, const uint8_t *buf, size_t n, struct imap_cmd *cmd_out)
{
	size_t end = n < p->lim.max_line ? n : p->lim.max_line;

	while (p->pos < end) {
		enum imap__act r;
		int len;

		if (p->state == IMAP__LIT_DATA) {
			uint32_t stop = end < p->lit_end ? (uint32_t)end : p->lit_end;

			if (memchr(buf + p->pos, 0, stop - p->pos))
				p->cmd.error = IMAP_ERR_NUL;
			p->pos = stop;
			if (p->pos == p->lit_end)
				p->state = p->cmd.error == IMAP_OK ? IMAP__AFTER_ARG : IMAP__SKIP;
			continue;
		}

		r = imap__step(p, buf, buf[p->pos]);
		switch (r) {
		case IMAP__NEXT:
			p->pos++;
			break;
		case IMAP__AGAIN:
			break;
		case IMAP__PAUSE:
			p->pos++;
			return 0;
		case IMAP__LINE:
			len = (int)p->pos + 1;
			if (cmd_out)
				*cmd_out = p->cmd;
			imap_parser_init(p, &p->lim);
			return len;
		case IMAP__FATAL_LIT:
			return IMAP_FATAL_LITERAL_TOO_BIG;
		case IMAP__FATAL_SKIP:
			return IMAP_FATAL_SKIPPED_LITERAL;
		}
	}
	/* max_line bytes scanned and the command is still not complete. */
	if (p->pos >= p->lim.max_line)
		return IMAP_FATAL_LINE_TOO_LONG;
	return 0;
}

int imap_arg_copy(const uint8_t *buf, const struct imap_arg *a, char *out, size_t outcap)
{
	const uint8_t *s = buf + a->s.off;
	size_t o = 0;

	if (outcap == 0)
		return -1;
	out[0] = '\0';
	for (uint32_t i = 0; i < a->s.len; i++) {
		uint8_t c = s[i];

		if (a->type == IMAP_ARG_QUOTED && c == '\\') {
			/* The parser admits only \" and \\; anything else is refused. */
			if (++i == a->s.len || (s[i] != '"' && s[i] != '\\'))
				goto fail;
			c = s[i];
		}
		if (c == 0 || o + 1 >= outcap || o >= INT32_MAX)
			goto fail;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return (int)o;
fail:
	out[0] = '\0';
	return -1;
}

int imap_parse_line(const uint8_t *buf, size_t n, size_t max)
{
	size_t lim = n < max ? n : max;
	const uint8_t *lf;

	if (lim > IMAP__LINE_CAP)
		lim = IMAP__LINE_CAP;
	/* Look only within max bytes, so the answer does not depend on how much
	 * happened to arrive at once. */
	lf = memchr(buf, '\n', lim);
	if (lf)
		return (int)(lf - buf) + 1;
	if (n > max)
		return IMAP_FATAL_LINE_TOO_LONG;
	return 0;
}

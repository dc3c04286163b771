/*
 * imap_parse.h - pure, resumable parser for IMAP commands before login.
 *
 * No I/O, no allocation. The caller keeps the bytes of the current command in
 * one buffer, starting at the command's first byte, appends what arrives and
 * calls imap_parse() again with the whole buffer (same head, longer n). The
 * parser remembers how far it got, so every byte is scanned once.
 *
 * Output refers to the buffer by offsets ({off, len} from the buffer head),
 * never pointers, so the caller may move or grow the buffer between calls.
 */
#ifndef GATEHOUSE_IMAP_PARSE_H
#define GATEHOUSE_IMAP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMAP_MAX_ARGS 72 /* ID: 30 pairs + parens, with room to spare */

/* Return values of imap_parse() below zero: the stream cannot be resynced. */
enum imap_fatal {
	IMAP_FATAL_LINE_TOO_LONG = -1,   /* no end of line within max_line bytes */
	IMAP_FATAL_LITERAL_TOO_BIG = -2, /* non-synchronizing {n+} over the limit:
	                                    its bytes will follow and cannot be told
	                                    apart from commands */
	IMAP_FATAL_SKIPPED_LITERAL = -3, /* an invalid line ended with {n+} */
};

/* Why a consumed line is not a valid command (imap_cmd.error). */
enum imap_error {
	IMAP_OK = 0,
	IMAP_ERR_SYNTAX,            /* anything malformed: bad tag, bad char, bad quoting */
	IMAP_ERR_TAG_TOO_LONG,
	IMAP_ERR_TOO_MANY_ARGS,
	IMAP_ERR_LITERAL_TOO_BIG,   /* synchronizing {n} over the limit: line ends at its CRLF,
	                               no continuation is asked, the client must not send it */
	IMAP_ERR_NUL,               /* a NUL byte in the line or in a literal */
	IMAP_ERR_EMPTY,             /* an empty line */
};

enum imap_cmd_kind {
	IMAP_CMD_OTHER = 0, /* a well-formed command gatehouse does not serve pre-auth */
	IMAP_CMD_CAPABILITY,
	IMAP_CMD_NOOP,
	IMAP_CMD_LOGOUT,
	IMAP_CMD_ID,
	IMAP_CMD_LOGIN,
	IMAP_CMD_AUTHENTICATE,
	IMAP_CMD_STARTTLS,
};

enum imap_arg_type {
	IMAP_ARG_ATOM = 0, /* includes NIL; astring chars */
	IMAP_ARG_QUOTED,   /* span is the content between the quotes, escapes still in */
	IMAP_ARG_LITERAL,  /* span is the literal's data */
	IMAP_ARG_LPAREN,
	IMAP_ARG_RPAREN,
};

struct imap_span {
	uint32_t off;
	uint32_t len;
};

struct imap_arg {
	enum imap_arg_type type;
	struct imap_span s;
};

struct imap_cmd {
	struct imap_span tag;  /* len 0 when no valid tag was read */
	struct imap_span name; /* the command word as sent */
	enum imap_cmd_kind kind;
	enum imap_error error; /* IMAP_OK: a well-formed command */
	int nargs;
	struct imap_arg args[IMAP_MAX_ARGS];
};

struct imap_limits {
	size_t max_line;    /* whole command including literals */
	size_t max_literal; /* one literal */
	size_t max_tag;
};

/* Parser state. Fields are private to imap_parse.c except `continuation`. */
struct imap_parser {
	struct imap_limits lim;
	uint32_t pos;        /* next byte to scan */
	uint32_t tok;        /* start of the token being scanned */
	uint64_t lit_len;    /* length announced by the current literal */
	uint32_t lit_end;    /* offset one past the current literal's data */
	int state;
	int depth;           /* parenthesis depth */
	bool lit_plus;       /* current literal is {n+} */
	bool continuation;   /* set: the caller must send "+ ..." now, then clear it */
	struct imap_cmd cmd; /* being built */
};

/* Reset for a new command. Limits are copied. */
void imap_parser_init(struct imap_parser *p, const struct imap_limits *lim);

/*
 * Scan buf[0..n), the current command's bytes from its first byte.
 * Returns:
 *   > 0  the number of bytes of one whole line (through its LF), with the
 *        command in *cmd_out; cmd_out->error says whether it is valid. The
 *        parser is reset for the next command: drop those bytes and call again.
 *   0    need more bytes. If p->continuation is set, a synchronizing literal
 *        was announced: send a continuation request, clear the flag, and call
 *        again (the literal's bytes may already be in the buffer).
 *   < 0  an enum imap_fatal: answer and close the connection.
 */
int imap_parse(struct imap_parser *p, const uint8_t *buf, size_t n, struct imap_cmd *cmd_out);

/*
 * Copy an argument's value into out (NUL-terminated), undoing quoted-string
 * escapes. Returns the value's length, or -1 if it does not fit in outcap-1
 * bytes or contains a NUL. Atoms "NIL" are returned as the three letters.
 */
int imap_arg_copy(const uint8_t *buf, const struct imap_arg *a, char *out, size_t outcap);

/*
 * Find the end of one line (a SASL continuation answer) in buf[0..n).
 * Returns the length through LF (CRLF or bare LF), 0 if no LF yet and n <=
 * max, or IMAP_FATAL_LINE_TOO_LONG when n > max with no LF.
 */
int imap_parse_line(const uint8_t *buf, size_t n, size_t max);

#endif

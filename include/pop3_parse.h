/*
 * pop3_parse.h - pure, resumable parser for POP3 commands before login
 * (RFC 1939, RFC 2449 line bound, RFC 5034 AUTH).
 *
 * No I/O, no allocation. The caller keeps the bytes of the current line in
 * one buffer, starting at the line's first byte, appends what arrives and
 * calls pop3_parse() again with the whole buffer (same head, longer n). The
 * parser remembers how far it got, so every byte is scanned once.
 *
 * Output refers to the buffer by offsets ({off, len} from the buffer head),
 * never pointers, so the caller may move or grow the buffer between calls.
 *
 * Lines end in CRLF; a bare LF is accepted too (as nginx and Dovecot do).
 * A line is bounded: a command by lim.max_command bytes including its line
 * end (RFC 2449: 255), except AUTH and SASL responses, which may carry
 * XOAUTH2 tokens far longer than that, by lim.max_sasl.
 */
#ifndef GATEHOUSE_POP3_PARSE_H
#define GATEHOUSE_POP3_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POP3_MAX_ARGS 4        /* AUTH mechanism [initial-response] needs 2 */
#define POP3_MAX_COMMAND 255   /* RFC 2449 section 4, octets including CRLF */
#define POP3_MAX_KEYWORD 15    /* longer "keywords" are garbage */

/* Return values of pop3_parse() below zero: answer and close. */
enum pop3_fatal {
	POP3_FATAL_LINE_TOO_LONG = -1, /* no line end within the bound */
};

/* Why a complete line is not a valid command (pop3_cmd.error). */
enum pop3_error {
	POP3_OK = 0,
	POP3_ERR_SYNTAX,        /* keyword not printable ASCII or too long, a bare CR */
	POP3_ERR_EMPTY,         /* an empty line (in command mode) */
	POP3_ERR_NUL,           /* a NUL byte anywhere in the line */
	POP3_ERR_TOO_MANY_ARGS, /* more than POP3_MAX_ARGS arguments */
};

enum pop3_cmd_kind {
	POP3_CMD_OTHER = 0, /* a well-formed command gatehouse does not serve pre-auth */
	POP3_CMD_USER,
	POP3_CMD_PASS,
	POP3_CMD_AUTH,
	POP3_CMD_CAPA,
	POP3_CMD_STLS,
	POP3_CMD_NOOP,
	POP3_CMD_QUIT,
	POP3_CMD_SASL,      /* a SASL response line (see pop3_parser_expect_sasl) */
};

struct pop3_span {
	uint32_t off;
	uint32_t len;
};

/*
 * Arguments:
 *   USER, PASS  at most one: everything after the single space that follows
 *               the keyword, up to the line end, spaces included (RFC 1939
 *               lets a password hold spaces; Dovecot reads it the same way).
 *               "PASS" and "PASS " give none.
 *   SASL        exactly one: the whole line without its line end, possibly
 *               empty.
 *   others      words separated by one or more spaces; trailing spaces are
 *               ignored.
 */
struct pop3_cmd {
	enum pop3_cmd_kind kind;
	enum pop3_error error;   /* POP3_OK: a well-formed line */
	struct pop3_span name;   /* the keyword as sent (len 0 for SASL lines) */
	int nargs;
	struct pop3_span args[POP3_MAX_ARGS];
};

struct pop3_limits {
	size_t max_command; /* a command line including its line end */
	size_t max_sasl;    /* an AUTH line or a SASL response, including its line end */
};

/* Parser state. Fields are private to pop3_parse.c. */
struct pop3_parser {
	struct pop3_limits lim;
	uint32_t pos;        /* next byte to scan */
	uint32_t tok;        /* start of the token being scanned */
	uint32_t limit;      /* the bound of the current line */
	int state;
	bool sasl;           /* the current line is a SASL response */
	struct pop3_cmd cmd; /* being built */
};

/* Reset for a new line, in command mode. Limits are copied. */
void pop3_parser_init(struct pop3_parser *p, const struct pop3_limits *lim);

/*
 * The next line is a SASL response (after a "+ " continuation), not a
 * command. Call only between lines (right after init or after a line was
 * returned); it lasts for that one line.
 */
void pop3_parser_expect_sasl(struct pop3_parser *p);

/*
 * Scan buf[0..n), the current line's bytes from its first byte.
 * Returns:
 *   > 0  the number of bytes of one whole line (through its LF), with the
 *        line in *cmd_out; cmd_out->error says whether it is valid. The
 *        parser is reset for the next line (in command mode): drop those
 *        bytes and call again.
 *   0    need more bytes.
 *   < 0  an enum pop3_fatal: answer and close the connection.
 */
int pop3_parse(struct pop3_parser *p, const uint8_t *buf, size_t n, struct pop3_cmd *cmd_out);

#endif

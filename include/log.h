/*
 * log.h - the error log: one line per event, with a level, to stderr or a
 * file. Lines are written with one write(2) so threads do not interleave.
 * Never pass a password or token to these functions.
 */
#ifndef GATEHOUSE_LOG_H
#define GATEHOUSE_LOG_H

#include <stdarg.h>

enum log_level {
	LOG_ERROR = 0,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG,
};

/*
 * Open the error log: path NULL or "" means stderr. Returns 0 or a negative
 * errno. May be called again (reopen on SIGUSR1, new level on reload).
 */
int log_open(const char *path, enum log_level level);

/* Whether messages at this level are written (to skip formatting work). */
int log_enabled(enum log_level level);

/*
 * Write "<time> <level> <message>\n". Messages longer than 2 KiB are cut.
 * Every byte of the formatted message below 0x20, 0x7f and above is written
 * as \xHH, so no argument (however hostile) can end the line or forge
 * another one. Quotes and backslashes are left alone: a client string shown
 * in quotes should still go through log_escape, so that it cannot close its
 * quotes and imitate other fields of the same line.
 */
void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vwrite(enum log_level level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/*
 * Format "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC, now) into buf (>= 25 bytes).
 * Returns the length.
 */
int log_timestamp(char *buf, unsigned long size);

/*
 * Write s[0..n) into out as a log-safe string: '"' and '\\' escaped with a
 * backslash, bytes < 0x20, 0x7f and >= 0x80 as \xHH. Always NUL-terminates;
 * cuts at a whole escape when out is too small. Returns the length written.
 */
unsigned long log_escape(char *out, unsigned long outcap, const char *s, unsigned long n);

/*
 * log_escape of the C string s (NULL as "") into out, for a client string
 * shown in quotes: returns out, so it can be an argument of the log call.
 * Size out as LOG_QUOTE_SIZE(longest input) to keep the whole string.
 */
const char *log_quote(char *out, unsigned long outcap, const char *s);
#define LOG_QUOTE_SIZE(n) (4 * (n) + 1)

/*
 * What log_write does to a message: copy s[0..n) to out, bytes below 0x20,
 * 0x7f and above as \xHH, cutting at a whole escape. No NUL is added.
 * Returns the length written. (For tests; callers use log_write.)
 */
unsigned long log__line_safe(char *out, unsigned long outcap, const char *s, unsigned long n);

#endif

/*
 * test_log.c - the error log keeps one event on one line whatever the
 * arguments hold (security review 4): CR, LF, NUL (through "%.*s"), ESC,
 * DEL and 8-bit bytes come out as \xHH; log_quote also escapes quotes.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static char log_t_path[64];

static void log_t_setup(void)
{
	snprintf(log_t_path, sizeof(log_t_path), "/tmp/gh-unit-log-XXXXXX");
	int fd = mkstemp(log_t_path);
	cr_assert(fd >= 0);
	close(fd);
	cr_assert_eq(log_open(log_t_path, LOG_DEBUG), 0);
}

static void log_t_teardown(void)
{
	log_open(NULL, LOG_INFO);
	unlink(log_t_path);
}

static char *log_t_read(size_t *len_out)
{
	static char buf[16384];
	FILE *f = fopen(log_t_path, "rb");
	cr_assert_not_null(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	*len_out = n;
	return buf;
}

TestSuite(log, .init = log_t_setup, .fini = log_t_teardown);

/* The SASL reproduction: an authcid that carries a whole forged line. */
Test(log, hostile_arguments_stay_on_one_line)
{
	static const char authcid[] = "bob\r\n2026-12-05T00:00:00.000Z info session=deadbeef "
				      "client=10.9.9.9:1 phase=RELAY login \"admin@a.test\"\x1b[2J\xc3\xa9\x7f";
	static const char with_nul[] = "a\0b\nc";
	size_t n;

	log_write(LOG_INFO, "login \"%s\" on 127.0.0.1:1: backend rejected", authcid);
	log_write(LOG_WARN, "raw %.*s end", (int)sizeof(with_nul) - 1, with_nul);
	char *text = log_t_read(&n);
	int lines = 0;
	for (size_t i = 0; i < n; i++)
		lines += text[i] == '\n';
	cr_assert_eq(lines, 2, "%s", text);
	cr_assert_eq(memchr(text, '\r', n), NULL);
	cr_assert_eq(memchr(text, '\x1b', n), NULL);
	for (size_t i = 0; i < n; i++)
		cr_assert((unsigned char)text[i] < 0x7f && ((unsigned char)text[i] >= 0x20 || text[i] == '\n'),
			  "byte 0x%02x at %zu", (unsigned char)text[i], i);
	cr_assert_not_null(strstr(text, "login \"bob\\x0d\\x0a2026-12-05T00:00:00.000Z info session=deadbeef"));
	cr_assert_not_null(strstr(text, "\\x1b[2J\\xc3\\xa9\\x7f\" on 127.0.0.1:1"));
	/* printf stops at a NUL: the rest of that argument is not written. */
	cr_assert_not_null(strstr(text, "raw a end\n"));
}

Test(log, quote_escapes_what_could_close_the_quotes)
{
	char out[LOG_QUOTE_SIZE(32)];

	cr_assert_str_eq(log_quote(out, sizeof(out), "x\" as \"admin\\\n"), "x\\\" as \\\"admin\\\\\\x0a");
	cr_assert_str_eq(log_quote(out, sizeof(out), NULL), "");
	/* Too small: cut at a whole escape, always terminated. */
	char small[6];
	cr_assert_str_eq(log_quote(small, sizeof(small), "ab\ncd"), "ab");
}

Test(log, line_safe_cuts_at_a_whole_escape)
{
	char out[8];

	cr_assert_eq(log__line_safe(out, sizeof(out), "abc\n\n", 5), 7);
	cr_assert_eq(memcmp(out, "abc\\x0a", 7), 0);
	cr_assert_eq(log__line_safe(out, 3, "a\nb", 3), 1);
}

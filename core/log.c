/*
 * log.c - the error log.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static atomic_int log_fd = 2;
static atomic_int log_level = LOG_INFO;

static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

int log_open(const char *path, enum log_level level)
{
	atomic_store(&log_level, (int)level);
	if (path == NULL || path[0] == '\0') {
		int old = atomic_exchange(&log_fd, 2);
		if (old > 2)
			close(old);
		return 0;
	}
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	int old = atomic_exchange(&log_fd, fd);
	if (old > 2)
		close(old);
	return 0;
}

int log_enabled(enum log_level level)
{
	return (int)level <= atomic_load(&log_level);
}

int log_timestamp(char *buf, unsigned long size)
{
	struct timeval tv;
	struct tm tm;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	return snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
			tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			(int)(tv.tv_usec / 1000));
}

unsigned long log_escape(char *out, unsigned long outcap, const char *s, unsigned long n)
{
	static const char hex[] = "0123456789abcdef";
	unsigned long o = 0;

	if (outcap == 0)
		return 0;
	for (unsigned long i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char tmp[4];
		unsigned long k = 0;

		if (c == '"' || c == '\\') {
			tmp[k++] = '\\';
			tmp[k++] = (char)c;
		} else if (c < 0x20 || c >= 0x7f) {
			tmp[k++] = '\\';
			tmp[k++] = 'x';
			tmp[k++] = hex[c >> 4];
			tmp[k++] = hex[c & 15];
		} else {
			tmp[k++] = (char)c;
		}
		if (o + k >= outcap)
			break;
		memcpy(out + o, tmp, k);
		o += k;
	}
	out[o] = '\0';
	return o;
}

const char *log_quote(char *out, unsigned long outcap, const char *s)
{
	log_escape(out, outcap, s ? s : "", s ? strlen(s) : 0);
	return out;
}

unsigned long log__line_safe(char *out, unsigned long outcap, const char *s, unsigned long n)
{
	static const char hex[] = "0123456789abcdef";
	unsigned long o = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f) {
			if (o + 1 > outcap)
				break;
			out[o++] = (char)c;
			continue;
		}
		if (o + 4 > outcap)
			break;
		out[o++] = '\\';
		out[o++] = 'x';
		out[o++] = hex[c >> 4];
		out[o++] = hex[c & 15];
	}
	return o;
}

void log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
	char msg[2048], line[2304 + 3 * 256];
	int n;

	if (!log_enabled(level))
		return;
	int m = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (m < 0)
		m = 0;
	if (m > (int)sizeof(msg) - 1)
		m = (int)sizeof(msg) - 1;
	n = log_timestamp(line, sizeof(line));
	n += snprintf(line + n, sizeof(line) - (size_t)n, " %s ", log_level_names[level]);
	/* One event, one line, whatever a caller passed in: a byte a client
	   chose (a login, an authcid, a path, an SNI name) can neither end the
	   line nor reach the terminal that shows it. */
	n += (int)log__line_safe(line + n, sizeof(line) - (size_t)n - 1, msg, (size_t)m);
	line[n++] = '\n';
	/* One write per line: O_APPEND keeps lines from threads whole. */
	ssize_t w = write(atomic_load(&log_fd), line, (size_t)n);
	(void)w;
}

void log_write(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(level, fmt, ap);
	va_end(ap);
}

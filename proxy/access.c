/*
 * access.c - the HTTP access log. Like the audit log: lines are formatted
 * whole and written with one write(2) on an O_APPEND descriptor, so lines
 * from several workers never interleave.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "access.h"
#include "log.h"
#include "session.h"

static atomic_int access_fd = -1;

int access_open(const char *path)
{
	int fd;

	if (path == NULL || path[0] == '\0' || strcmp(path, "off") == 0)
		fd = -1;
	else if (strcmp(path, "stderr") == 0)
		fd = 2;
	else {
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd < 0)
			return -errno;
	}
	int old = atomic_exchange(&access_fd, fd);
	if (old > 2)
		close(old);
	return 0;
}

void access_log(struct session *s, const struct access_entry *e)
{
	char line[2048], host[300], path[1100];
	int fd = atomic_load(&access_fd);

	if (fd < 0)
		return;
	log_escape(host, sizeof(host), e->host ? e->host : "", e->host ? strlen(e->host) : 0);
	log_escape(path, sizeof(path), e->path ? e->path : "", e->path ? strlen(e->path) : 0);
	int n = log_timestamp(line, sizeof(line));
	n += snprintf(line + n, sizeof(line) - (size_t)n,
		      " session=%s client=%s:%u method=%s host=\"%s\" path=\"%s\" status=%d bytes=%llu"
		      " upstream=%s ms=%llu\n",
		      s->idstr, s->client_ip, s->client_port, e->method ? e->method : "-", host, path,
		      e->status, (unsigned long long)e->bytes,
		      e->upstream && e->upstream[0] ? e->upstream : "-", (unsigned long long)e->ms);
	if (n >= (int)sizeof(line)) {
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	ssize_t w = write(fd, line, (size_t)n);
	(void)w;
}

/*
 * audit.c - the audit log. Lines are formatted in full and written with one
 * write(2) on an O_APPEND descriptor, so lines from several workers never
 * interleave. A worker thread batches its lines: they collect in a
 * thread-local buffer that its loop flushes before it next waits for events
 * (audit_flush from a uv_prepare_t), so a login storm costs one write per
 * loop iteration instead of one per login, and no line waits longer than the
 * iteration that made it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "conf.h"
#include "log.h"
#include "metrics.h"
#include "session.h"

static atomic_int audit_fd = 2;

#define AUDIT_BATCH_BYTES 8192

static __thread struct {
	bool on;
	size_t len;
	char buf[AUDIT_BATCH_BYTES];
} audit__batch;

void audit_batch(bool on)
{
	if (!on)
		audit_flush();
	audit__batch.on = on;
}

void audit_flush(void)
{
	if (audit__batch.len == 0)
		return;
	int fd = atomic_load(&audit_fd);
	if (fd >= 0) {
		ssize_t w = write(fd, audit__batch.buf, audit__batch.len);
		(void)w;
	}
	audit__batch.len = 0;
}

int audit_open(const char *path)
{
	int fd;

	if (path == NULL || path[0] == '\0')
		fd = 2;
	else if (strcmp(path, "off") == 0)
		fd = -1;
	else {
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd < 0)
			return -errno;
	}
	int old = atomic_exchange(&audit_fd, fd);
	if (old > 2)
		close(old);
	return 0;
}

void audit_login(struct session *s, const struct audit_login *a)
{
	char line[2048], login[600], user[600], reason[400];
	int fd = atomic_load(&audit_fd);

	/* Every login result passes here, so /metrics counts it here too. */
	metrics_login((int)s->listener->proto, a->result);
	if (fd < 0)
		return;
	log_escape(login, sizeof(login), a->login ? a->login : "", a->login ? strlen(a->login) : 0);
	log_escape(user, sizeof(user), a->user ? a->user : "", a->user ? strlen(a->user) : 0);
	log_escape(reason, sizeof(reason), a->reason ? a->reason : "", a->reason ? strlen(a->reason) : 0);
	int n = log_timestamp(line, sizeof(line));
	n += snprintf(line + n, sizeof(line) - (size_t)n,
		      " session=%s proto=%s client=%s:%u login=\"%s\" user=\"%s\" result=%s"
		      " reason=\"%s\" backend=%s source=%s latency_ms=%llu\n",
		      s->idstr, s->proto->name, s->client_ip, s->client_port, login, user, a->result,
		      reason, a->backend && a->backend[0] ? a->backend : "-",
		      a->source && a->source[0] ? a->source : "-", (unsigned long long)a->latency_ms);
	if (n >= (int)sizeof(line)) {
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	if (audit__batch.on) {
		if (audit__batch.len + (size_t)n > sizeof(audit__batch.buf))
			audit_flush();
		memcpy(audit__batch.buf + audit__batch.len, line, (size_t)n);
		audit__batch.len += (size_t)n;
		return;
	}
	ssize_t w = write(fd, line, (size_t)n);
	(void)w;
}

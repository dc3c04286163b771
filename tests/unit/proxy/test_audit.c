/*
 * Tests for proxy/audit.c: the line written for a login, batching on a
 * thread (nothing reaches the file before audit_flush, then every line in
 * order), a full batch written before it would overflow, and "off".
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "audit.h"
#include "conf.h"
#include "session.h"

static struct conf_listen at_listener = { .proto = CONF_PROTO_IMAP };
static struct session_proto at_proto = { .name = "imap" };

static void at_session(struct session *s, int n)
{
	memset(s, 0, sizeof(*s));
	s->listener = &at_listener;
	s->proto = &at_proto;
	snprintf(s->idstr, sizeof(s->idstr), "%08x", n);
	snprintf(s->client_ip, sizeof(s->client_ip), "192.0.2.%d", n % 250);
	s->client_port = (uint16_t)(40000 + n);
}

static void at_login(int n)
{
	struct session s;
	char login[32];

	at_session(&s, n);
	snprintf(login, sizeof(login), "user%d@example.com", n);
	struct audit_login a = {
		.login = login, .user = login, .result = "ok", .backend = "10.0.0.5:7143",
		.source = "l1", .latency_ms = 3,
	};
	audit_login(&s, &a);
}

static char *at_read(const char *path)
{
	static char buf[1 << 16];
	int fd = open(path, O_RDONLY);
	cr_assert(fd >= 0);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	cr_assert(n >= 0);
	buf[n] = '\0';
	return buf;
}

static int at_count(const char *text)
{
	int n = 0;
	for (const char *p = text; (p = strchr(p, '\n')) != NULL; p++)
		n++;
	return n;
}

static char at_path[64];

static void at_setup(void)
{
	snprintf(at_path, sizeof(at_path), "/tmp/gh-audit-test-XXXXXX");
	int fd = mkstemp(at_path);
	cr_assert(fd >= 0);
	close(fd);
	cr_assert_eq(audit_open(at_path), 0);
}

static void at_teardown(void)
{
	audit_batch(false);
	audit_open("off");
	unlink(at_path);
}

TestSuite(audit, .init = at_setup, .fini = at_teardown);

Test(audit, unbatched_line_written_at_once)
{
	at_login(7);
	char *t = at_read(at_path);
	cr_assert_eq(at_count(t), 1, "%s", t);
	cr_assert(strstr(t, " session=00000007 proto=imap client=192.0.2.7:40007 "
			    "login=\"user7@example.com\" user=\"user7@example.com\" result=ok "
			    "reason=\"\" backend=10.0.0.5:7143 source=l1 latency_ms=3\n") != NULL,
		  "%s", t);
}

Test(audit, batched_lines_wait_for_flush_in_order)
{
	audit_batch(true);
	for (int i = 0; i < 5; i++)
		at_login(i);
	cr_assert_str_empty(at_read(at_path), "a batched line reached the file early");
	audit_flush();
	char *t = at_read(at_path);
	cr_assert_eq(at_count(t), 5, "%s", t);
	const char *p = t;
	for (int i = 0; i < 5; i++) {
		char want[40];
		snprintf(want, sizeof(want), "login=\"user%d@", i);
		const char *q = strstr(p, want);
		cr_assert(q != NULL, "line %d missing or out of order: %s", i, t);
		p = q;
	}
	audit_flush(); /* nothing left: writes nothing more */
	cr_assert_eq(at_count(at_read(at_path)), 5);
}

Test(audit, full_batch_is_written_before_it_overflows)
{
	audit_batch(true);
	/* About 150 bytes a line: 200 lines overflow an 8 KiB batch many times. */
	for (int i = 0; i < 200; i++)
		at_login(i);
	int early = at_count(at_read(at_path));
	cr_assert(early > 0 && early < 200, "%d lines before the flush", early);
	audit_batch(false); /* flushes */
	char *t = at_read(at_path);
	cr_assert_eq(at_count(t), 200);
	/* Whole lines only: every line starts with a timestamp. */
	for (const char *p = t; *p; p = strchr(p, '\n') + 1)
		cr_assert(p[0] == '2' && p[4] == '-', "torn line at %.40s", p);
}

Test(audit, off_writes_nothing)
{
	audit_open("off");
	audit_batch(true);
	at_login(1);
	audit_flush();
	cr_assert_str_empty(at_read(at_path));
}

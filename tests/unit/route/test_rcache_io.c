/*
 * test_rcache_io.c - the loop's memcached client against a scripted
 * server: pipelined gets answered in order, a foreign value too big to keep
 * read as a miss without losing the connection, a broken answer failing
 * the connection and holding the server down, a silent server bounded by
 * the timeout.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <criterion/criterion.h>
#include <uv.h>

#include "rcache_io.h"
#include "rct_servers.h"

/* A server that reads `expect` get lines, then writes `answer` and waits
   for the client to close. */
struct script {
	int lfd, port, expect;
	const char *answer;
	size_t answer_len;
	pthread_t thread;
};

static void *script_run(void *arg)
{
	struct script *s = arg;
	int fd = accept(s->lfd, NULL, NULL);
	char buf[4096];
	int lines = 0;

	while (fd >= 0 && lines < s->expect) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			lines += buf[i] == '\n';
	}
	for (size_t off = 0; fd >= 0 && off < s->answer_len;) {
		ssize_t n = write(fd, s->answer + off, s->answer_len - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	while (fd >= 0 && read(fd, buf, sizeof(buf)) > 0)
		;
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void script_start(struct script *s, int expect, const char *answer, size_t len)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);

	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(s->lfd >= 0);
	cr_assert_eq(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(s->lfd, 4), 0);
	cr_assert_eq(getsockname(s->lfd, (struct sockaddr *)&sa, &sl), 0);
	s->port = ntohs(sa.sin_port);
	s->expect = expect;
	s->answer = answer;
	s->answer_len = len;
	cr_assert_eq(pthread_create(&s->thread, NULL, script_run, s), 0);
}

static void script_stop(struct script *s)
{
	pthread_join(s->thread, NULL);
	close(s->lfd);
}

struct got {
	int calls;
	enum rcache_mc_rc rc;
	char val[64];
};

static void on_get(void *arg, enum rcache_mc_rc rc, const char *val, size_t len)
{
	struct got *g = arg;

	g->calls++;
	g->rc = rc;
	snprintf(g->val, sizeof(g->val), "%.*s", (int)len, val ? val : "");
}

static struct rcache *runtime(int port)
{
	char text[256];

	snprintf(text, sizeof(text),
		 "cache = { memcached = [ \"127.0.0.1:%d\" ]; timeout = 0.3; retry_interval = 30; };\n",
		 port);
	struct conf *c = rct_load(text);
	struct rcache *rc = rcache_acquire(c);
	conf_unref(c);
	cr_assert_not_null(rc);
	return rc;
}

static void key(struct rcache_key *k, const char *user)
{
	cr_assert(rcache_key_route_user(k, "imap", user, false));
}

Test(rcache_io, big_foreign_value_is_a_miss_and_the_next_answer_arrives)
{
	static char answer[12000];
	int n = snprintf(answer, sizeof(answer), "VALUE route:proto=imap;user=a@x 0 10000\r\n");
	memset(answer + n, 'v', 10000);
	n += 10000;
	n += snprintf(answer + n, sizeof(answer) - (size_t)n,
		      "\r\nEND\r\nVALUE route:proto=imap;user=b@x 0 13\r\n10.0.0.1:7143\r\nEND\r\n");
	struct script s;
	script_start(&s, 2, answer, (size_t)n);
	struct rcache *rc = runtime(s.port);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct rcache_io *io = rcache_io_new(&loop, rc);
	cr_assert_not_null(io);
	struct rcache_key ka, kb;
	struct got a = {0}, b = {0};
	key(&ka, "a@x");
	key(&kb, "b@x");
	cr_assert_eq(rcache_io_get(io, &ka, on_get, &a), 0);
	cr_assert_eq(rcache_io_get(io, &kb, on_get, &b), 0);
	cr_assert_eq(a.calls + b.calls, 0, "never inside the call");
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(a.calls, 1);
	cr_assert_eq(a.rc, RCACHE_MC_MISS);
	cr_assert_eq(b.calls, 1);
	cr_assert_eq(b.rc, RCACHE_MC_OK);
	cr_assert_str_eq(b.val, "10.0.0.1:7143");
	rcache_io_close(io);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&loop), 0);
	script_stop(&s);
	rcache_release(rc);
	rcache_drop_current();
}

Test(rcache_io, broken_answer_fails_and_holds_the_server_down)
{
	static const char answer[] = "BOGUS\r\n";
	struct script s;
	script_start(&s, 1, answer, sizeof(answer) - 1);
	struct rcache *rc = runtime(s.port);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct rcache_io *io = rcache_io_new(&loop, rc);
	struct rcache_key k;
	struct got g = {0};
	key(&k, "a@x");
	cr_assert_eq(rcache_io_get(io, &k, on_get, &g), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(g.calls, 1);
	cr_assert_eq(g.rc, RCACHE_MC_ERROR);
	/* Held down for retry_interval: no request, no I/O. */
	cr_assert_eq(rcache_io_get(io, &k, on_get, &g), -1);
	rcache_io_close(io);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&loop), 0);
	script_stop(&s);
	rcache_release(rc);
	rcache_drop_current();
}

Test(rcache_io, silent_server_costs_the_timeout)
{
	struct script s;
	script_start(&s, 1000, "", 0); /* reads, never answers */
	struct rcache *rc = runtime(s.port);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct rcache_io *io = rcache_io_new(&loop, rc);
	struct rcache_key k;
	struct got g = {0};
	key(&k, "a@x");
	uint64_t t0 = uv_hrtime();
	cr_assert_eq(rcache_io_get(io, &k, on_get, &g), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	uint64_t ms = (uv_hrtime() - t0) / 1000000u;
	cr_assert_eq(g.calls, 1);
	cr_assert_eq(g.rc, RCACHE_MC_ERROR);
	cr_assert(ms >= 250 && ms < 2000, "%llu ms", (unsigned long long)ms);
	rcache_io_close(io);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&loop), 0);
	script_stop(&s);
	rcache_release(rc);
	rcache_drop_current();
}

/* ---- writes are noreply ---- */

static void op_add(struct rcache_op *op, const char *user, const char *value)
{
	memset(op, 0, sizeof(*op));
	op->kind = RCACHE_OP_ADD;
	key(&op->key, user);
	op->value_len = strlen(value);
	memcpy(op->value, value, op->value_len + 1);
}

static void op_delete(struct rcache_op *op, const char *user)
{
	memset(op, 0, sizeof(*op));
	op->kind = RCACHE_OP_DELETE;
	key(&op->key, user);
}

/* A server that honours noreply answers only the gets: the answers after
   the writes belong to the gets, in order. (Waiting for a write's answer,
   the client took the first get's END as the add's and gave the next get's
   value to the wrong login.) */
Test(rcache_io, noreply_writes_are_not_read_and_gets_stay_in_step)
{
	static const char answer[] = "END\r\n"
				     "VALUE route:proto=imap;user=d@x 0 13\r\n10.0.0.4:7143\r\nEND\r\n";
	struct script s;
	/* add a (2 lines), get b, delete c, add c (2 lines), get d */
	script_start(&s, 7, answer, sizeof(answer) - 1);
	struct rcache *rc = runtime(s.port);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct rcache_io *io = rcache_io_new(&loop, rc);
	struct rcache_key kb, kd;
	struct rcache_op ops[2];
	struct got b = {0}, d = {0};
	key(&kb, "b@x");
	key(&kd, "d@x");
	op_add(&ops[0], "a@x", "10.0.0.1:7143");
	cr_assert_eq(rcache_io_submit(io, ops, 1), 0);
	cr_assert_eq(rcache_io_get(io, &kb, on_get, &b), 0);
	op_delete(&ops[0], "c@x");
	op_add(&ops[1], "c@x", "10.0.0.3:7143");
	cr_assert_eq(rcache_io_submit(io, ops, 2), 0);
	cr_assert_eq(rcache_io_get(io, &kd, on_get, &d), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(b.calls, 1);
	cr_assert_eq(b.rc, RCACHE_MC_MISS);
	cr_assert_eq(d.calls, 1);
	cr_assert_eq(d.rc, RCACHE_MC_OK);
	cr_assert_str_eq(d.val, "10.0.0.4:7143");
	/* Still up, not held down: another get makes a request. */
	struct got again = {0};
	cr_assert_eq(rcache_io_get(io, &kb, on_get, &again), 0);
	rcache_io_close(io);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(again.calls, 1);
	cr_assert_eq(uv_loop_close(&loop), 0);
	script_stop(&s);
	rcache_release(rc);
	rcache_drop_current();
}

/* A server that answers a noreply write anyway (an error): the get after it
   cannot tell whose answer it reads, so the connection fails; nothing is
   taken for the wrong get, and the server is held down. */
Test(rcache_io, error_answer_after_noreply_write_fails_the_connection)
{
	static const char answer[] = "SERVER_ERROR out of memory storing object\r\n"
				     "END\r\n"
				     "VALUE route:proto=imap;user=c@x 0 13\r\n10.0.0.3:7143\r\nEND\r\n";
	struct script s;
	script_start(&s, 4, answer, sizeof(answer) - 1);
	struct rcache *rc = runtime(s.port);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct rcache_io *io = rcache_io_new(&loop, rc);
	struct rcache_key kb, kc;
	struct rcache_op op;
	struct got b = {0}, c = {0};
	key(&kb, "b@x");
	key(&kc, "c@x");
	op_add(&op, "a@x", "10.0.0.1:7143");
	cr_assert_eq(rcache_io_submit(io, &op, 1), 0);
	cr_assert_eq(rcache_io_get(io, &kb, on_get, &b), 0);
	cr_assert_eq(rcache_io_get(io, &kc, on_get, &c), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(b.calls, 1);
	cr_assert_eq(b.rc, RCACHE_MC_ERROR);
	cr_assert_eq(c.calls, 1);
	cr_assert_eq(c.rc, RCACHE_MC_ERROR);
	cr_assert_eq(rcache_io_get(io, &kb, on_get, &b), -1, "held down");
	rcache_io_close(io);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&loop), 0);
	script_stop(&s);
	rcache_release(rc);
	rcache_drop_current();
}

/* A value for another key is never a get's answer. */
Test(rcache_io, value_for_another_key_is_refused)
{
	static const char answer[] = "VALUE route:proto=imap;user=b@x 0 13\r\n10.0.0.2:7143\r\nEND\r\n";
	struct script s;
	script_start(&s, 1, answer, sizeof(answer) - 1);
	struct rcache *rc = runtime(s.port);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct rcache_io *io = rcache_io_new(&loop, rc);
	struct rcache_key ka;
	struct got a = {0};
	key(&ka, "a@x");
	cr_assert_eq(rcache_io_get(io, &ka, on_get, &a), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(a.calls, 1);
	cr_assert_eq(a.rc, RCACHE_MC_ERROR);
	cr_assert_str_eq(a.val, "");
	rcache_io_close(io);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&loop), 0);
	script_stop(&s);
	rcache_release(rc);
	rcache_drop_current();
}

/* ---- against the real memcached ---- */

struct real_mc {
	pid_t pid;
	int port;
};

/* memcached on a free loopback port (skips the test when not installed). */
static void real_mc_start(struct real_mc *m)
{
	const char *bin = access("/usr/bin/memcached", X_OK) == 0 ? "/usr/bin/memcached" : NULL;
	if (bin == NULL)
		cr_skip_test("memcached is not installed");
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	m->port = ntohs(sa.sin_port);
	close(fd);
	char port[16];
	snprintf(port, sizeof(port), "%d", m->port);
	m->pid = fork();
	cr_assert(m->pid >= 0);
	if (m->pid == 0) {
		/* Not memcached's own -u: changing user clears the death signal
		   that ends it with a failed test. */
		struct passwd *pw = geteuid() == 0 ? getpwnam("nobody") : NULL;
		if (pw != NULL && (setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0))
			_exit(126);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		execl(bin, bin, "-l", "127.0.0.1", "-p", port, "-U", "0", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 250; i++) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		sa.sin_port = htons((uint16_t)m->port);
		int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		close(fd);
		if (ok)
			return;
		usleep(20000);
	}
	cr_assert_fail("memcached did not start on port %d", m->port);
}

static void real_mc_stop(struct real_mc *m)
{
	kill(m->pid, SIGTERM);
	waitpid(m->pid, NULL, 0);
}

#define REAL_N 120 /* 7 requests each: under RCACHE_IO_MAX_OPS */

/* Gets pipelined between noreply adds and deletes, all in one loop pass,
   many times over: each get sees exactly what the writes before it left
   (memcached runs one connection's commands in order), and the connection
   stays up and in step throughout. */
Test(rcache_io, real_memcached_gets_interleaved_with_noreply_writes)
{
	struct real_mc m;
	real_mc_start(&m);
	struct rcache *rc = runtime(m.port);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct rcache_io *io = rcache_io_new(&loop, rc);
	static struct got g[REAL_N][4];
	memset(g, 0, sizeof(g));
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < REAL_N; i++) {
			char user[64], v1[32], v2[32];
			struct rcache_key k;
			struct rcache_op op;
			snprintf(user, sizeof(user), "u%d.r%d@example.com", i, round);
			snprintf(v1, sizeof(v1), "10.0.%d.%d:7143", i / 250, i % 250);
			snprintf(v2, sizeof(v2), "10.9.9.9:%d", 1000 + i);
			key(&k, user);
			cr_assert_eq(rcache_io_get(io, &k, on_get, &g[i][0]), 0);   /* miss */
			op_add(&op, user, v1);
			cr_assert_eq(rcache_io_submit(io, &op, 1), 0);
			cr_assert_eq(rcache_io_get(io, &k, on_get, &g[i][1]), 0);   /* v1 */
			op_add(&op, user, v2);                                       /* NOT_STORED */
			cr_assert_eq(rcache_io_submit(io, &op, 1), 0);
			cr_assert_eq(rcache_io_get(io, &k, on_get, &g[i][2]), 0);   /* still v1 */
			op_delete(&op, user);
			cr_assert_eq(rcache_io_submit(io, &op, 1), 0);
			cr_assert_eq(rcache_io_get(io, &k, on_get, &g[i][3]), 0);   /* miss */
		}
		uv_run(&loop, UV_RUN_DEFAULT);
		for (int i = 0; i < REAL_N; i++) {
			char v1[32];
			snprintf(v1, sizeof(v1), "10.0.%d.%d:7143", i / 250, i % 250);
			for (int j = 0; j < 4; j++)
				cr_assert_eq(g[i][j].calls, round + 1, "round %d get %d.%d", round, i, j);
			cr_assert_eq(g[i][0].rc, RCACHE_MC_MISS, "get %d.0", i);
			cr_assert_eq(g[i][1].rc, RCACHE_MC_OK, "get %d.1", i);
			cr_assert_str_eq(g[i][1].val, v1);
			cr_assert_eq(g[i][2].rc, RCACHE_MC_OK, "get %d.2", i);
			cr_assert_str_eq(g[i][2].val, v1);
			cr_assert_eq(g[i][3].rc, RCACHE_MC_MISS, "get %d.3", i);
		}
	}
	/* Writes alone are never waited for: the loop ends without an answer. */
	struct rcache_op op;
	op_add(&op, "last@example.com", "10.1.1.1:7143");
	cr_assert_eq(rcache_io_submit(io, &op, 1), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	struct rcache_key k;
	struct got last = {0};
	key(&k, "last@example.com");
	cr_assert_eq(rcache_io_get(io, &k, on_get, &last), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(last.rc, RCACHE_MC_OK);
	cr_assert_str_eq(last.val, "10.1.1.1:7143");
	rcache_io_close(io);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&loop), 0);
	real_mc_stop(&m);
	rcache_release(rc);
	rcache_drop_current();
}

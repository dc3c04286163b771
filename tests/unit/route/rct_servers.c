/*
 * rct_servers.c - see rct_servers.h.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <uv.h>

#include "rct_servers.h"

struct rct_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_write_t w;
	struct rct_srv *srv;
	bool is_mc, answered;
	int handles;
	char buf[4096];
	size_t len;
	char out[2048];
};

static void rct_conn_closed(uv_handle_t *h)
{
	struct rct_conn *c = h->data;
	if (--c->handles == 0)
		free(c);
}

static void rct_conn_close(struct rct_conn *c)
{
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, rct_conn_closed);
	if (!uv_is_closing((uv_handle_t *)&c->timer))
		uv_close((uv_handle_t *)&c->timer, rct_conn_closed);
}

static void rct_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
	struct rct_conn *c = h->data;
	b->base = c->buf + c->len;
	b->len = sizeof(c->buf) - c->len - 1;
}

static void rct_lookup_written(uv_write_t *w, int status)
{
	rct_conn_close(w->data);
}

static void rct_lookup_answer(uv_timer_t *t)
{
	struct rct_conn *c = t->data;

	pthread_mutex_lock(&c->srv->lock);
	snprintf(c->out, sizeof(c->out), "%s", c->srv->answer);
	pthread_mutex_unlock(&c->srv->lock);
	uv_buf_t b = uv_buf_init(c->out, (unsigned)strlen(c->out));
	c->w.data = c;
	uv_write(&c->w, (uv_stream_t *)&c->tcp, &b, 1, rct_lookup_written);
}

static int rct_item(struct rct_srv *s, const char *key)
{
	for (int i = 0; i < s->nitems; i++)
		if (strcmp(s->items[i].key, key) == 0)
			return i;
	return -1;
}

/* One memcached text-protocol command; returns bytes used, 0 if incomplete. */
static size_t rct_mc_command(struct rct_conn *c, char *out, size_t cap)
{
	struct rct_srv *s = c->srv;
	char *eol = strstr(c->buf, "\r\n");
	char cmd[16] = "", key[300] = "";
	unsigned flags = 0, bytes = 0;
	long exp = 0;
	int idx;

	if (eol == NULL)
		return 0;
	size_t line = (size_t)(eol - c->buf) + 2;
	*eol = '\0';
	sscanf(c->buf, "%15s %299s %u %ld %u", cmd, key, &flags, &exp, &bytes);
	size_t used = line;
	pthread_mutex_lock(&s->lock);
	if (s->mc_nlog < RCT_MAX_LOG)
		snprintf(s->mc_log[s->mc_nlog++], sizeof(s->mc_log[0]), "%.300s", c->buf);
	idx = rct_item(s, key);
	if (strcmp(cmd, "get") == 0) {
		if (idx >= 0)
			snprintf(out, cap, "VALUE %s 0 %zu\r\n%s\r\nEND\r\n", key,
				 strlen(s->items[idx].val), s->items[idx].val);
		else
			snprintf(out, cap, "END\r\n");
	} else if (strcmp(cmd, "add") == 0) {
		if (c->len < line + bytes + 2) {
			*eol = '\r';
			s->mc_nlog--;
			pthread_mutex_unlock(&s->lock);
			return 0;
		}
		used = line + bytes + 2;
		if (idx >= 0 || s->nitems == RCT_MAX_ITEMS) {
			snprintf(out, cap, "NOT_STORED\r\n");
		} else {
			snprintf(s->items[s->nitems].key, sizeof(s->items[0].key), "%s", key);
			snprintf(s->items[s->nitems].val, sizeof(s->items[0].val), "%.*s", (int)bytes,
				 c->buf + line);
			s->nitems++;
			snprintf(out, cap, "STORED\r\n");
		}
	} else if (strcmp(cmd, "delete") == 0) {
		if (idx >= 0) {
			s->items[idx] = s->items[--s->nitems];
			snprintf(out, cap, "DELETED\r\n");
		} else {
			snprintf(out, cap, "NOT_FOUND\r\n");
		}
	} else {
		snprintf(out, cap, "ERROR\r\n");
	}
	/* As memcached: a command with noreply is never answered. */
	size_t cl = strlen(c->buf);
	if (cl > 8 && strcmp(c->buf + cl - 8, " noreply") == 0)
		out[0] = '\0';
	pthread_mutex_unlock(&s->lock);
	memmove(c->buf, c->buf + used, c->len - used + 1);
	c->len -= used;
	return used;
}

static void rct_mc_written(uv_write_t *w, int status)
{
	free(w);
}

static void rct_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct rct_conn *c = st->data;

	if (n < 0) {
		rct_conn_close(c);
		return;
	}
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	if (!c->is_mc) {
		if (c->answered || strstr(c->buf, "\r\n\r\n") == NULL)
			return;
		c->answered = true;
		pthread_mutex_lock(&c->srv->lock);
		c->srv->lookups++;
		uint64_t delay = c->srv->delay_ms;
		pthread_mutex_unlock(&c->srv->lock);
		uv_timer_start(&c->timer, rct_lookup_answer, delay, 0);
		return;
	}
	for (;;) {
		char out[1024];
		if (rct_mc_command(c, out, sizeof(out)) == 0)
			return;
		if (out[0] == '\0')
			continue;
		struct { uv_write_t w; char data[1024]; } *wr = malloc(sizeof(*wr));
		memcpy(wr->data, out, sizeof(out));
		uv_buf_t ob = uv_buf_init(wr->data, (unsigned)strlen(wr->data));
		uv_write(&wr->w, st, &ob, 1, rct_mc_written);
	}
}

static void rct_on_conn(uv_stream_t *server, int status)
{
	struct rct_srv *s = server->data;
	struct rct_conn *c = calloc(1, sizeof(*c));

	c->srv = s;
	c->is_mc = server == (uv_stream_t *)&s->mc;
	uv_tcp_init(server->loop, &c->tcp);
	uv_timer_init(server->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->handles = 2;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) == 0)
		uv_read_start((uv_stream_t *)&c->tcp, rct_alloc, rct_read);
	else
		rct_conn_close(c);
}

static int rct_listen(uv_loop_t *loop, uv_tcp_t *t, void *data)
{
	struct sockaddr_in a;
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	uv_ip4_addr("127.0.0.1", 0, &a);
	uv_tcp_init(loop, t);
	t->data = data;
	cr_assert_eq(uv_tcp_bind(t, (const struct sockaddr *)&a, 0), 0);
	cr_assert_eq(uv_listen((uv_stream_t *)t, 128, rct_on_conn), 0);
	uv_tcp_getsockname(t, (struct sockaddr *)&ss, &len);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void rct_close_walk(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, h->data != arg && h->data != NULL ? rct_conn_closed : NULL);
}

static void rct_on_stop(uv_async_t *a)
{
	struct rct_srv *s = a->data;

	/* Connections still open have both handles closed by the walk. */
	uv_walk(&s->loop, rct_close_walk, s);
}

static void rct_srv_run(void *arg)
{
	struct rct_srv *s = arg;

	uv_sem_post(&s->ready);
	uv_run(&s->loop, UV_RUN_DEFAULT);
}

void rct_srv_start(struct rct_srv *s)
{
	/* The client's last "quit" may meet a closed socket: no SIGPIPE (as
	   gatehouse's main ignores it). */
	signal(SIGPIPE, SIG_IGN);
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	uv_sem_init(&s->ready, 0);
	uv_loop_init(&s->loop);
	s->lookup_port = rct_listen(&s->loop, &s->lookup, s);
	s->mc_port = rct_listen(&s->loop, &s->mc, s);
	uv_async_init(&s->loop, &s->stop, rct_on_stop);
	s->stop.data = s;
	snprintf(s->answer, sizeof(s->answer),
		 "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.21\r\n"
		 "Auth-Port: 7143\r\nAuth-User: alice@example.com\r\n\r\n");
	uv_thread_create(&s->thread, rct_srv_run, s);
	uv_sem_wait(&s->ready);
}

void rct_srv_stop(struct rct_srv *s)
{
	uv_async_send(&s->stop);
	uv_thread_join(&s->thread);
	uv_loop_close(&s->loop);
	uv_sem_destroy(&s->ready);
}

int rct_lookups(struct rct_srv *s)
{
	pthread_mutex_lock(&s->lock);
	int n = s->lookups;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* Run loop without blocking until the lookup service has the request. */
void rct_wait_lookup(struct rct_srv *s, uv_loop_t *loop)
{
	while (rct_lookups(s) == 0) {
		uv_run(loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
}

/* Index of the first memcached command starting with prefix, or -1. */
int rct_mc_find(struct rct_srv *s, const char *prefix)
{
	int found = -1;

	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < s->mc_nlog && found < 0; i++)
		if (strncmp(s->mc_log[i], prefix, strlen(prefix)) == 0)
			found = i;
	pthread_mutex_unlock(&s->lock);
	return found;
}

/* rct_mc_find once the command has arrived (at most 2 s): writes are
   noreply, so the client's loop may end before the server has read them. */
int rct_mc_wait(struct rct_srv *s, const char *prefix)
{
	int found = -1;

	for (int i = 0; i < 2000 && (found = rct_mc_find(s, prefix)) < 0; i++)
		usleep(1000);
	return found;
}

/* Wait (at most 2 s) until n commands starting with prefix have arrived. */
int rct_mc_wait_count(struct rct_srv *s, const char *prefix, int n)
{
	int got = 0;

	for (int i = 0; i < 2000 && (got = rct_mc_count_prefix(s, prefix)) < n; i++)
		usleep(1000);
	return got;
}

int rct_mc_count(struct rct_srv *s)
{
	pthread_mutex_lock(&s->lock);
	int n = s->mc_nlog;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* Commands logged that start with prefix. */
int rct_mc_count_prefix(struct rct_srv *s, const char *prefix)
{
	int n = 0;

	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < s->mc_nlog; i++)
		n += strncmp(s->mc_log[i], prefix, strlen(prefix)) == 0;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* ---- the resolver side ---- */

struct conf *rct_load(const char *text)
{
	char path[] = "/tmp/gh-route-cache-XXXXXX";
	int fd = mkstemp(path);
	char err[512];

	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	struct conf *c = conf_load(path, err, sizeof(err));
	unlink(path);
	cr_assert_not_null(c, "config: %s", err);
	return c;
}

struct conf *rct_conf(struct rct_srv *s, const char *cache)
{
	char text[1024];

	snprintf(text, sizeof(text),
		 "lookup = { timeout = 5.0; servers = [\"http://127.0.0.1:%d/\"]; };\n"
		 "cache = { %s };\n", s->lookup_port, cache);
	return rct_load(text);
}


void rct_on_route(struct route_req *req, const struct route *r, void *arg)
{
	struct rct_result *res = arg;
	res->calls++;
	res->r = *r;
}

struct route_query rct_query(const char *login)
{
	return (struct route_query){
		.login = login,
		.protocol = "imap",
		.client_ip = "192.0.2.7",
		.proxy_ip = "127.0.0.1",
		.attempt = 1,
	};
}

void rct_loop_start(uv_loop_t *loop)
{
	cr_assert_eq(uv_loop_init(loop), 0);
	cr_assert_eq(route_worker_init(loop), 0);
}

/* Run until nothing is pending (memcached writes included), then close. */
void rct_loop_finish(uv_loop_t *loop)
{
	uv_run(loop, UV_RUN_DEFAULT);
	route_worker_close(loop);
	cr_assert_eq(uv_loop_close(loop), 0, "the loop still has live handles");
}

/* Resolve login once on a fresh loop; run it to the end. */
struct route rct_resolve_once(struct conf *c, struct route_query q)
{
	uv_loop_t loop;
	struct rct_result res = {0};

	rct_loop_start(&loop);
	cr_assert_not_null(route_resolve(&loop, c, &q, rct_on_route, &res));
	cr_assert_eq(res.calls, 0);
	rct_loop_finish(&loop);
	cr_assert_eq(res.calls, 1);
	return res.r;
}

int rct_closed_port(void)
{
	uv_loop_t l;
	uv_tcp_t t;
	struct sockaddr_in a;
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	uv_loop_init(&l);
	uv_ip4_addr("127.0.0.1", 0, &a);
	uv_tcp_init(&l, &t);
	uv_tcp_bind(&t, (const struct sockaddr *)&a, 0);
	uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &len);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&l, UV_RUN_DEFAULT);
	uv_loop_close(&l);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

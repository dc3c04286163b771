/*
 * worker.c - one thread, one libuv loop, its own SO_REUSEPORT listeners.
 *
 * The kernel spreads new connections over the workers' listening sockets,
 * so workers share nothing on the hot path: a session lives and dies on the
 * loop that accepted it.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "route.h"
#include "session_int.h"
#include "worker.h"

/* Idle relay buffers kept per worker; more are freed when returned. */
#define WORKER_POOL_MAX_FREE 256

static void worker__maybe_exit(struct worker *w);
static void worker__reconcile(struct worker *w);
static void worker__listener_closed(uv_handle_t *h);

static void worker__on_connection(uv_stream_t *server, int status)
{
	struct listener *l = server->data;
	struct worker *w = l->w;

	if (status < 0) {
		log_write(LOG_WARN, "worker %d: accepting on %s: %s", w->id, l->cl->address,
			  uv_strerror(status));
		return;
	}
	struct session *s = session_new(w, l);
	if (s == NULL) {
		log_write(LOG_ERROR, "worker %d: out of memory accepting on %s", w->id, l->cl->address);
		return;
	}
	s->next = w->sessions;
	if (w->sessions)
		w->sessions->prev = s;
	w->sessions = s;
	w->nsessions++;
	if (uv_accept(server, (uv_stream_t *)&s->client.tcp) < 0) {
		session_close(s, "accept failed");
		return;
	}
	session_start(s);
}

void worker_session_gone(struct worker *w, struct session *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else if (w->sessions == s)
		w->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	w->nsessions--;
	worker__maybe_exit(w);
}

/* Bind one listening socket with SO_REUSEPORT (libuv 1.44 has no flag for it). */
static int worker__listen(struct worker *w, struct listener *l, const struct conf_listen *cl,
			  int index)
{
	int fd, one = 1, rc;

	l->w = w;
	l->cl = cl;
	l->index = index;
	fd = socket(cl->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail_errno;
	if (cl->addr.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail_errno;
	if (bind(fd, (const struct sockaddr *)&cl->addr, cl->addrlen) < 0)
		goto fail_errno;
	rc = uv_tcp_init(&w->loop, &l->tcp);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	l->tcp.data = l;
	l->open = true;
	rc = uv_tcp_open(&l->tcp, fd);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return uv_listen((uv_stream_t *)&l->tcp, 511, worker__on_connection);

fail_errno:
	rc = -errno;
	close(fd);
	return rc;
}

static void worker__listener_closed(uv_handle_t *h)
{
	struct listener *l = h->data;

	l->open = false;
}

static void worker__stop_accepting(struct worker *w)
{
	for (int i = 0; i < w->nlisteners; i++) {
		struct listener *l = &w->listeners[i];
		if (l->open && !uv_is_closing((uv_handle_t *)&l->tcp))
			uv_close((uv_handle_t *)&l->tcp, worker__listener_closed);
	}
}

static bool worker__same_addr(const struct conf_listen *a, const struct conf_listen *b)
{
	return a->proto == b->proto && a->addrlen == b->addrlen &&
	       memcmp(&a->addr, &b->addr, a->addrlen) == 0;
}

/*
 * After a reload: keep the listeners the new snapshot still has (pointing
 * them at its entries), close the ones it dropped, bind the ones it added.
 * Established sessions are not touched. main has already checked that the
 * new addresses can be bound.
 */
static void worker__reconcile(struct worker *w)
{
	struct conf *c = w->conf;
	bool kept[CONF_MAX_LISTEN] = {false};

	for (int i = 0; i < w->nlisteners; i++) {
		struct listener *l = &w->listeners[i];
		if (!l->open || uv_is_closing((uv_handle_t *)&l->tcp))
			continue;
		int j = 0;
		while (j < c->nlisten && !worker__same_addr(l->cl, &c->listen[j]))
			j++;
		if (j < c->nlisten) {
			l->cl = &c->listen[j];
			l->index = j;
			kept[j] = true;
		} else {
			log_write(LOG_INFO, "worker %d: no longer listening on %s", w->id, l->cl->address);
			uv_close((uv_handle_t *)&l->tcp, worker__listener_closed);
		}
	}
	for (int j = 0; j < c->nlisten; j++) {
		if (kept[j])
			continue;
		int i = 0;
		while (i < CONF_MAX_LISTEN && w->listeners[i].open)
			i++;
		if (i == CONF_MAX_LISTEN) {
			log_write(LOG_ERROR, "worker %d: no room for listener %s", w->id, c->listen[j].address);
			continue;
		}
		int rc = worker__listen(w, &w->listeners[i], &c->listen[j], j);
		if (rc < 0) {
			log_write(LOG_ERROR, "worker %d: listening on %s: %s", w->id,
				  c->listen[j].address, uv_strerror(rc));
			if (w->listeners[i].open)
				uv_close((uv_handle_t *)&w->listeners[i].tcp, worker__listener_closed);
			continue;
		}
		if (i >= w->nlisteners)
			w->nlisteners = i + 1;
		log_write(LOG_INFO, "worker %d: now listening on %s", w->id, c->listen[j].address);
	}
	/* Every open listener now points into c. */
	conf_unref(w->listen_conf);
	w->listen_conf = conf_ref(c);
}

static void worker__maybe_exit(struct worker *w)
{
	if (w->stopping && w->nsessions == 0 && !uv_is_closing((uv_handle_t *)&w->async))
		uv_close((uv_handle_t *)&w->async, NULL);
}

static void worker__on_async(uv_async_t *a)
{
	struct worker *w = a->data;
	int cmds = atomic_exchange(&w->commands, 0);

	if (cmds & WORKER_CMD_NEW_CONF) {
		struct conf *c = atomic_exchange(&w->pending_conf, NULL);
		if (c) {
			conf_unref(w->conf);
			w->conf = c;
			if (!w->stopping)
				worker__reconcile(w);
		}
	}
	if (cmds & WORKER_CMD_STOP_ACCEPT && !w->stopping) {
		w->stopping = true;
		worker__stop_accepting(w);
		log_write(LOG_DEBUG, "worker %d: stopped accepting, %zu sessions left", w->id,
			  w->nsessions);
	}
	if (cmds & WORKER_CMD_CLOSE_ALL) {
		w->stopping = true;
		worker__stop_accepting(w);
		for (struct session *s = w->sessions; s; s = s->next)
			session_close(s, "shutting down");
	}
	worker__maybe_exit(w);
}

static void worker__run(void *arg)
{
	struct worker *w = arg;
	/* The resolver's per-loop state; shared lookups answer through it. */
	int rrc = route_worker_init(&w->loop);

	if (rrc < 0) {
		snprintf(w->start_error, sizeof(w->start_error), "setting up the route resolver: %s",
			 uv_strerror(rrc));
		w->start_status = rrc;
	}
	for (int i = 0; rrc == 0 && i < w->listen_conf->nlisten; i++) {
		int rc = worker__listen(w, &w->listeners[i], &w->listen_conf->listen[i], i);
		w->nlisteners = i + 1;
		if (rc < 0) {
			snprintf(w->start_error, sizeof(w->start_error), "listening on %s: %s",
				 w->listen_conf->listen[i].address, uv_strerror(rc));
			w->start_status = rc;
			break;
		}
	}
	if (w->start_status < 0) {
		w->stopping = true;
		worker__stop_accepting(w);
		uv_close((uv_handle_t *)&w->async, NULL);
	}
	uv_sem_post(w->started);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	session_http_pool_close(&w->loop);
	route_worker_close(&w->loop);
	if (w->on_exit)
		w->on_exit(w);
}

int worker_start(struct worker *w, int id, struct conf *c, uv_sem_t *started)
{
	int rc;

	w->id = id;
	w->conf = conf_ref(c);
	w->listen_conf = conf_ref(c);
	w->started = started;
	atomic_init(&w->commands, 0);
	atomic_init(&w->pending_conf, NULL);
	pool_init(&w->pool, (uint32_t)c->limits.relay_buffer, WORKER_POOL_MAX_FREE);
	rc = uv_loop_init(&w->loop);
	if (rc < 0)
		goto fail_conf;
	rc = uv_async_init(&w->loop, &w->async, worker__on_async);
	if (rc < 0)
		goto fail_loop;
	w->async.data = w;
	rc = uv_thread_create(&w->thread, worker__run, w);
	if (rc < 0)
		goto fail_async;
	return 0;

fail_async:
	uv_close((uv_handle_t *)&w->async, NULL);
	uv_run(&w->loop, UV_RUN_DEFAULT);
fail_loop:
	uv_loop_close(&w->loop);
fail_conf:
	conf_unref(w->conf);
	w->conf = NULL;
	conf_unref(w->listen_conf);
	w->listen_conf = NULL;
	return rc;
}

void worker_command(struct worker *w, enum worker_command cmd)
{
	atomic_fetch_or(&w->commands, (int)cmd);
	uv_async_send(&w->async);
}

void worker_set_conf(struct worker *w, struct conf *c)
{
	struct conf *old = atomic_exchange(&w->pending_conf, conf_ref(c));
	if (old)
		conf_unref(old);
	worker_command(w, WORKER_CMD_NEW_CONF);
}

void worker_join(struct worker *w)
{
	uv_thread_join(&w->thread);
	int rc = uv_loop_close(&w->loop);
	if (rc < 0)
		log_write(LOG_WARN, "worker %d: loop closed with handles open", w->id);
	struct conf *p = atomic_exchange(&w->pending_conf, NULL);
	if (p)
		conf_unref(p);
	conf_unref(w->conf);
	w->conf = NULL;
	conf_unref(w->listen_conf);
	w->listen_conf = NULL;
	pool_destroy(&w->pool);
}

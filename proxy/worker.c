/*
 * worker.c - one thread, one libuv loop, its own SO_REUSEPORT listeners.
 *
 * The kernel spreads new connections over the workers' listening sockets,
 * so workers share nothing on the hot path: a session lives and dies on the
 * loop that accepted it.
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "audit.h"
#include "gh.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "route.h"
#include "session_int.h"
#include "upstream.h"
#include "worker.h"

/* Idle relay buffers kept per worker; more are freed when returned. 16
   (256 KiB at the default 16 KiB) covers the buffers in flight at any
   moment of a busy worker; a larger list pinned its high-water mark
   forever (256 buffers: 4 MiB per worker after any burst). */
#define WORKER_POOL_MAX_FREE 16

static void worker__maybe_exit(struct worker *w);
static void worker__reconcile(struct worker *w);
static void worker__listener_closed(uv_handle_t *h);

/* How long accepting pauses when the process is out of file descriptors. */
#define WORKER_ACCEPT_BACKOFF_MS 100
/* Connections taken per wakeup, so one busy listener cannot starve the loop
   (epoll is level-triggered: the rest wake it again at once). */
#define WORKER_ACCEPT_BATCH 64

static void worker__on_acceptable(uv_poll_t *p, int status, int events);
static void worker__quiet_trim(uv_timer_t *t);
static void worker__keepalive_sweep(uv_timer_t *t);

/* Logins (or ended sessions) per trim in a burst, and the quiet time after
   one before the last trim; see worker_trim_soon. */
#define WORKER_TRIM_LOGINS 16
#define WORKER_TRIM_QUIET_MS 200

/* Start (or restart after a pause) every listener that is still open. */
static void worker__poll_listeners(struct worker *w)
{
	for (int i = 0; i < w->nlisteners; i++) {
		struct listener *l = &w->listeners[i];
		if (l->open && !uv_is_closing((uv_handle_t *)&l->poll))
			uv_poll_start(&l->poll, UV_READABLE, worker__on_acceptable);
	}
}

static void worker__resume_accept(uv_timer_t *t)
{
	struct worker *w = t->data;

	if (!w->stopping)
		worker__poll_listeners(w);
}

/*
 * Out of descriptors (or kernel memory): stop polling every listener of this
 * worker for a moment. New connections wait in the backlog rather than being
 * accepted and dropped; sessions that end free descriptors meanwhile. One
 * warning per episode, one info line when accepting works again.
 */
static void worker__pause_accept(struct worker *w, struct listener *l, int err)
{
	if (w->accept_pauses++ == 0)
		log_write(LOG_WARN, "worker %d: accepting on %s: %s (%zu sessions): pausing accept "
			  "for %d ms at a time until it works again", w->id, l->cl->address,
			  uv_strerror(-err), w->nsessions, WORKER_ACCEPT_BACKOFF_MS);
	for (int i = 0; i < w->nlisteners; i++) {
		struct listener *o = &w->listeners[i];
		if (o->open && !uv_is_closing((uv_handle_t *)&o->poll))
			uv_poll_stop(&o->poll);
	}
	uv_timer_start(&w->accept_timer, worker__resume_accept, WORKER_ACCEPT_BACKOFF_MS, 0);
}

struct session *worker_take(struct worker *w, struct listener *l, int fd,
			    const struct sockaddr *peer)
{
	struct session *s = session_new(w, l);

	if (s == NULL) {
		log_write(LOG_ERROR, "worker %d: out of memory accepting on %s", w->id, l->cl->address);
		close(fd);
		return NULL;
	}
	list_insert_head(&w->sessions, &s->worker_link);
	w->nsessions++;
	if (uv_tcp_open(&s->client.tcp, fd) < 0) {
		close(fd);
		session_close(s, "accept failed");
		return s;
	}
	session_start(s, peer);
	return s;
}

static void worker__on_acceptable(uv_poll_t *p, int status, int events)
{
	struct listener *l = p->data;
	struct worker *w = l->w;

	if (status < 0) {
		log_write(LOG_WARN, "worker %d: accepting on %s: %s", w->id, l->cl->address,
			  uv_strerror(status));
		return;
	}
	for (int i = 0; i < WORKER_ACCEPT_BATCH && !w->stopping; i++) {
		struct sockaddr_storage peer;
		socklen_t peerlen = sizeof(peer);
		int fd = accept4(l->fd, (struct sockaddr *)&peer, &peerlen,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				worker__pause_accept(w, l, errno);
			else if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_write(LOG_WARN, "worker %d: accepting on %s: %s", w->id,
					  l->cl->address, uv_strerror(-errno));
			return;
		}
		if (w->accept_pauses > 0) {
			log_write(LOG_INFO, "worker %d: accepting again on %s after %u pause(s)", w->id,
				  l->cl->address, w->accept_pauses);
			w->accept_pauses = 0;
		}
		(void)worker_take(w, l, fd, (const struct sockaddr *)&peer);
	}
}

void worker_session_gone(struct worker *w, struct session *s)
{
	GH_ASSERT(!list_empty(&s->worker_link) && w->nsessions > 0);
	list_remove(&s->worker_link);
	w->nsessions--;
	/* A burst of connections that end (a scan, a storm that never logs in)
	   frees their sessions too: trim once the worker is quiet. */
	if (++w->closes_since_trim >= WORKER_TRIM_LOGINS &&
	    !uv_is_closing((uv_handle_t *)&w->trim_timer))
		uv_timer_start(&w->trim_timer, worker__quiet_trim, WORKER_TRIM_QUIET_MS, 0);
	worker__maybe_exit(w);
}

/*
 * Options every client connection wants, set once on the listening socket:
 * Linux copies them to each accepted socket, which saves five setsockopt
 * calls per connection (a tenth of a plain login's system calls).
 * Keepalive: first probe after WORKER_KEEPIDLE s of silence, then one every
 * WORKER_KEEPINTVL s, the peer declared gone after WORKER_KEEPCNT unanswered.
 */
#define WORKER_KEEPIDLE 60
#define WORKER_KEEPINTVL 10
#define WORKER_KEEPCNT 6

static int worker__client_opts(int fd)
{
	static const struct {
		int level, name, value;
	} opts[] = {
		{ IPPROTO_TCP, TCP_NODELAY, 1 },
		{ SOL_SOCKET, SO_KEEPALIVE, 1 },
		{ IPPROTO_TCP, TCP_KEEPIDLE, WORKER_KEEPIDLE },
		{ IPPROTO_TCP, TCP_KEEPINTVL, WORKER_KEEPINTVL },
		{ IPPROTO_TCP, TCP_KEEPCNT, WORKER_KEEPCNT },
	};

	for (size_t i = 0; i < ARRAY_SIZE(opts); i++)
		if (setsockopt(fd, opts[i].level, opts[i].name, &opts[i].value, sizeof(int)) < 0)
			return -errno;
	return 0;
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
	if (bind(fd, (const struct sockaddr *)&cl->addr, cl->addrlen) < 0 || listen(fd, 511) < 0)
		goto fail_errno;
	rc = worker__client_opts(fd);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	rc = uv_poll_init(&w->loop, &l->poll, fd);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	/* From here the descriptor is closed with the handle (listener_closed). */
	l->poll.data = l;
	l->fd = fd;
	l->open = true;
	/* While accepting is paused, a new listener waits for the timer too. */
	if (uv_is_active((uv_handle_t *)&w->accept_timer))
		return 0;
	return uv_poll_start(&l->poll, UV_READABLE, worker__on_acceptable);

fail_errno:
	rc = -errno;
	close(fd);
	return rc;
}

/* Once a stopping worker's listening sockets are all closed, main is told
   (it logs that gatehouse no longer accepts when every worker has). */
static void worker__tell_stopped_accepting(struct worker *w)
{
	if (!w->stopping || w->told_stopped_accepting)
		return;
	for (int i = 0; i < w->nlisteners; i++)
		if (w->listeners[i].open)
			return;
	w->told_stopped_accepting = true;
	if (w->on_stopped_accepting)
		w->on_stopped_accepting(w);
}

static void worker__listener_closed(uv_handle_t *h)
{
	struct listener *l = h->data;

	/* uv_poll_t never closes the descriptor it watches. */
	close(l->fd);
	l->fd = -1;
	l->open = false;
	worker__tell_stopped_accepting(l->w);
}

static void worker__stop_accepting(struct worker *w)
{
	for (int i = 0; i < w->nlisteners; i++) {
		struct listener *l = &w->listeners[i];
		if (l->open && !uv_is_closing((uv_handle_t *)&l->poll))
			uv_close((uv_handle_t *)&l->poll, worker__listener_closed);
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
		if (!l->open || uv_is_closing((uv_handle_t *)&l->poll))
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
			uv_close((uv_handle_t *)&l->poll, worker__listener_closed);
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
				uv_close((uv_handle_t *)&w->listeners[i].poll, worker__listener_closed);
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

/* Close the worker's own handles: its loop then ends once the rest has. */
static void worker__close_handles(struct worker *w)
{
	uv_close((uv_handle_t *)&w->accept_timer, NULL);
	uv_close((uv_handle_t *)&w->trim_timer, NULL);
	uv_close((uv_handle_t *)&w->keepalive_timer, NULL);
	uv_close((uv_handle_t *)&w->flush, NULL);
	uv_close((uv_handle_t *)&w->async, NULL);
}

static void worker__maybe_exit(struct worker *w)
{
	if (w->stopping && w->nsessions == 0 && !uv_is_closing((uv_handle_t *)&w->async))
		worker__close_handles(w);
}

/*
 * After a burst of logins, give the freed login-phase memory back to the
 * system. Each login mallocs and frees tens of KiB (command and backend
 * buffers, parser state, TLS handshake state) between the long-lived session
 * structs, and glibc keeps those holes resident: 1000 clients that log in
 * together and then sit in IDLE measured 16 KiB of RSS per connection,
 * against 4 KiB when they arrive one at a time. malloc_trim(0) returns the
 * free pages inside the heaps (madvise), once the worker has had no login
 * for WORKER_TRIM_QUIET_MS: never during a burst. Trimming inside a storm
 * (it used to run every 50 ms) gave back pages the next logins faulted in
 * again at once: ~57,000 madvise calls in 3 s of a 10,000-user storm, each a
 * TLB shootdown across the worker and pool threads, for memory the storm
 * needed anyway; a storm's heap stays at its high-water mark until it ends.
 * The same quiet trim follows a burst of sessions that ended (16 or more),
 * so a storm of connections that never log in gives its memory back too.
 */
#define WORKER_TRIM_KICK (128 * 1024) /* under M_MMAP_THRESHOLD, over 64 KiB */

/* The burst is over: the free pages, and the free top of the heap. */
static void worker__trim(struct worker *w)
{
	log_write(LOG_DEBUG, "worker %d: returning free heap after %u logins, %u ended sessions",
		  w->id, w->logins_since_trim, w->closes_since_trim);
	w->logins_since_trim = 0;
	w->closes_since_trim = 0;
	pool_trim(&w->pool);
	malloc_trim(0);
	/* malloc_trim returns free pages inside a heap but never the free top
	   of a thread's heap, where everything a storm freed ends up once it
	   coalesces. Freeing a block carved from that top makes glibc shrink
	   the heap down to M_TRIM_THRESHOLD (main.c): after 5000 connections
	   came and went, RSS went back to 6 MiB instead of staying at 28-51. */
	volatile char *kick = malloc(WORKER_TRIM_KICK);
	if (kick != NULL) {
		kick[0] = 0;
		free((void *)kick);
	}
}

static void worker__quiet_trim(uv_timer_t *t)
{
	struct worker *w = t->data;

	if (w->logins_since_trim > 0 || w->closes_since_trim >= WORKER_TRIM_LOGINS)
		worker__trim(w);
}

void worker_trim_soon(struct worker *w)
{
	w->logins_since_trim++;
	if (!uv_is_closing((uv_handle_t *)&w->trim_timer))
		uv_timer_start(&w->trim_timer, worker__quiet_trim, WORKER_TRIM_QUIET_MS, 0);
}

/*
 * TCP keepalive on mail backend connections (limits.backend_keepalive idle
 * seconds, probing at the kernel's interval), set here rather than at
 * connect (backend kind keepalive_later): every half of backend_keepalive
 * the worker sets it on the connections it has not set yet, so a login that
 * ends within seconds never pays the two setsockopt calls, and a lasting
 * one is probed after between 1 and 1.5 times backend_keepalive of silence
 * (the old fixed setting: after 60 s). One pass over the worker's sessions
 * every 30 s by default; each connection is set once.
 */
static unsigned worker__keepalive_period_ms(const struct worker *w)
{
	return (unsigned)w->conf->limits.backend_keepalive * 500u;
}

static void worker__keepalive_sweep(uv_timer_t *t)
{
	struct worker *w = t->data;

	list_foreach(it, &w->sessions) {
		struct session *s = list_entry(it, struct session, worker_link);
		struct backend_conn *bc = (struct backend_conn *)s->backend;
		uv_os_fd_t fd;
		int one = 1, idle = s->conf->limits.backend_keepalive;

		if (bc == NULL || s->closed || s->backend_keepalive_set || !bc->kind->keepalive_later ||
		    bc->st.closing || uv_fileno((uv_handle_t *)&bc->st.tcp, &fd) < 0)
			continue;
		s->backend_keepalive_set = true;
		(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	}
	if (!uv_is_closing((uv_handle_t *)t))
		uv_timer_start(t, worker__keepalive_sweep, worker__keepalive_period_ms(w), 0);
}

/* Before the loop waits: write the audit lines this iteration made. */
static void worker__flush(uv_prepare_t *p)
{
	(void)p;
	audit_flush();
}

void worker_upstream_health_reset(struct worker *w)
{
	for (int i = 0; i < w->nhealth; i++)
		upstream_health_free(w->health[i]);
	free(w->health);
	w->health = NULL;
	w->nhealth = 0;
}

struct upstream_health *worker_upstream_health(struct worker *w, int g)
{
	const struct conf *c = w->conf;

	if (c == NULL || g < 0 || g >= c->nupstreams)
		return NULL;
	if (w->health == NULL) {
		if ((w->health = calloc((size_t)c->nupstreams, sizeof(*w->health))) == NULL)
			return NULL;
		w->nhealth = c->nupstreams;
	}
	if (w->health[g] == NULL)
		w->health[g] = upstream_health_new(c->upstreams[g].nservers);
	return w->health[g];
}

/* Tell the protocols of this worker's sessions under an older
   configuration (all of them when stopping) to drain (proto->drain). */
static void worker__drain(struct worker *w)
{
	list_foreach(it, &w->sessions) {
		struct session *s = list_entry(it, struct session, worker_link);
		if (!s->closed && !s->finishing && s->proto != NULL && s->proto->drain != NULL &&
		    (w->stopping || s->conf != w->conf))
			s->proto->drain(s);
	}
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
			worker_upstream_health_reset(w);
			/* Roots and files opened afresh, with the new bounds;
			   what a response still reads is closed when it ends. */
			http_fcache_free(w->fcache);
			w->fcache = NULL;
			if (!w->stopping)
				worker__reconcile(w);
			/* Sessions of the older configuration let what is in
			   flight finish and take nothing new (HTTP/2: GOAWAY,
			   so the client reconnects under the new one). */
			worker__drain(w);
		}
	}
	if (cmds & WORKER_CMD_STOP_ACCEPT && !w->stopping) {
		w->stopping = true;
		worker__stop_accepting(w);
		worker__tell_stopped_accepting(w); /* no listener was open */
		worker__drain(w);
		log_write(LOG_DEBUG, "worker %d: stopped accepting, %zu sessions left", w->id,
			  w->nsessions);
	}
	if (cmds & WORKER_CMD_CLOSE_ALL) {
		w->stopping = true;
		worker__stop_accepting(w);
		list_foreach(it, &w->sessions)
			session_close(list_entry(it, struct session, worker_link), "shutting down");
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
	uv_prepare_init(&w->loop, &w->flush);
	uv_prepare_start(&w->flush, worker__flush);
	uv_unref((uv_handle_t *)&w->flush);
	audit_batch(true);
	uv_timer_init(&w->loop, &w->trim_timer);
	w->trim_timer.data = w;
	uv_unref((uv_handle_t *)&w->trim_timer);
	uv_timer_init(&w->loop, &w->keepalive_timer);
	w->keepalive_timer.data = w;
	uv_unref((uv_handle_t *)&w->keepalive_timer);
	uv_timer_start(&w->keepalive_timer, worker__keepalive_sweep, worker__keepalive_period_ms(w), 0);
	if (w->start_status < 0) {
		w->stopping = true;
		worker__stop_accepting(w);
		worker__close_handles(w);
	}
	uv_sem_post(w->started);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	audit_batch(false);
	session_http_pool_close(&w->loop);
	http2_worker_close();
	route_worker_close(&w->loop);
	if (w->on_exit)
		w->on_exit(w);
}

int worker_start(struct worker *w, int id, struct conf *c, uv_sem_t *started)
{
	int rc;

	w->id = id;
	list_init(&w->sessions);
	w->conf = conf_ref(c);
	w->listen_conf = conf_ref(c);
	w->started = started;
	metrics_conf(c); /* the same snapshot for every worker: /metrics shows its certificates */
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
	rc = uv_timer_init(&w->loop, &w->accept_timer);
	if (rc < 0)
		goto fail_async;
	w->accept_timer.data = w;
	w->accept_pauses = 0;
	rc = uv_thread_create(&w->thread, worker__run, w);
	if (rc < 0)
		goto fail_timer;
	return 0;

fail_timer:
	uv_close((uv_handle_t *)&w->accept_timer, NULL);
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
	metrics_conf(c);
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
	worker_upstream_health_reset(w);
	http_fcache_free(w->fcache);
	w->fcache = NULL;
	pool_destroy(&w->pool);
	slab_destroy(&w->mail_sessions);
}

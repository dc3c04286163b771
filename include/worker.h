/*
 * worker.h - worker threads: one libuv loop each, with its own SO_REUSEPORT
 * listening sockets, buffer pool and sessions.
 *
 * The main thread starts the workers, forwards signals to them (through a
 * uv_async_t, the only thread-safe libuv call) and joins them.
 */
#ifndef GATEHOUSE_WORKER_H
#define GATEHOUSE_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "conf.h"
#include "http_fcache.h"
#include "list.h"
#include "slab.h"
#include "stream.h"

struct session;
struct worker;

/*
 * A listening socket. gatehouse accepts itself (uv_poll_t on the socket,
 * accept4) rather than through uv_listen, so that running out of file
 * descriptors pauses accepting (connections wait in the kernel's backlog)
 * instead of libuv's EMFILE fallback, which accepts and drops them unseen.
 */
struct listener {
	uv_poll_t poll;
	int fd;                       /* the listening socket, closed with poll */
	struct worker *w;
	const struct conf_listen *cl; /* in w->listen_conf: the addresses bound at start */
	int index;                    /* its place in listen[], to find its settings after a reload */
	bool open;
};

/* Bits of worker.commands, set by the main thread. */
enum worker_command {
	WORKER_CMD_STOP_ACCEPT = 1 << 0, /* close listeners, exit when no session is left */
	WORKER_CMD_CLOSE_ALL = 1 << 1,   /* drain deadline passed: close every session */
	WORKER_CMD_NEW_CONF = 1 << 2,    /* take worker.pending_conf for new sessions */
};

struct worker {
	int id;
	uv_thread_t thread;
	uv_loop_t loop;
	uv_async_t async;
	atomic_int commands;
	struct conf *conf;                  /* for new sessions (a reference) */
	struct conf *listen_conf;           /* the one listeners[].cl point into (a reference) */
	struct conf *_Atomic pending_conf;  /* handed over by the main thread */
	struct listener listeners[CONF_MAX_LISTEN];
	int nlisteners;
	struct pool pool;
	struct slab mail_sessions; /* struct session_mail blocks (session.c; set up at the first) */
	/* Passive health of w->conf's upstream groups (upstream.h), made on
	   first use, dropped when another configuration is adopted. */
	struct upstream_health **health;
	int nhealth;
	/* Static files kept open (http_fcache.h), made on first use with
	   w->conf's bounds, dropped when another configuration is adopted. */
	struct http_fcache *fcache;
	uv_timer_t accept_timer;            /* ends an accept pause (out of descriptors) */
	uv_prepare_t flush;                 /* writes batched audit lines before the loop waits */
	uv_timer_t trim_timer;              /* malloc_trim once logins stop (worker_trim_soon) */
	uv_timer_t keepalive_timer;         /* TCP keepalive on lasting mail backends */
	unsigned logins_since_trim;
	unsigned closes_since_trim;
	unsigned accept_pauses;             /* pauses since accept last succeeded */
	struct list sessions;               /* of session.worker_link */
	size_t nsessions;
	bool stopping;
	int start_status;                   /* 0, or the negative error binding failed with */
	char start_error[256];
	uv_sem_t *started;                  /* posted once listeners are up or failed */
	bool told_stopped_accepting;
	void (*on_exit)(struct worker *w);  /* runs on the worker thread as it ends */
	/* Runs on the worker thread once, when it is stopping and its listening
	   sockets are closed. */
	void (*on_stopped_accepting)(struct worker *w);
	void *main_data;
};

/*
 * Start a worker thread running conf c (a reference is taken). started is
 * posted when its listeners are bound (w->start_status says how it went).
 * Returns 0 or a negative libuv error.
 */
int worker_start(struct worker *w, int id, struct conf *c, uv_sem_t *started);

/* The health state of group g of w->conf (made on first use), or NULL. */
struct upstream_health *worker_upstream_health(struct worker *w, int g);
/* Forget it all (a new configuration; the worker's end). */
void worker_upstream_health_reset(struct worker *w);

/* Ask a worker to do something (thread-safe). */
void worker_command(struct worker *w, enum worker_command cmd);

/* Hand a new config snapshot to a worker (a reference is taken; thread-safe). */
void worker_set_conf(struct worker *w, struct conf *c);

/* Wait for the thread to end and release what it held. */
void worker_join(struct worker *w);

/*
 * Hand an accepted socket fd (non-blocking) from listener l to a new session
 * of w, which owns fd from here (it is closed on every failure). peer: the
 * client's address as accept4 gave it, or NULL to ask the socket. Returns the
 * session, which may already be closing (its memory goes in a later close
 * callback, so the pointer is good until the loop runs), or NULL when out of
 * memory. worker.c calls it on accept; the session test harness
 * (tests/harness) calls it with one end of a socketpair.
 */
struct session *worker_take(struct worker *w, struct listener *l, int fd,
			    const struct sockaddr *peer);

/* Called by session.c when a session is freed. */
void worker_session_gone(struct worker *w, struct session *s);

/*
 * A session of w reached the relay (its login memory is freed): give freed
 * heap pages back to the system now if the burst allows, and in any case once
 * w has had no login for a moment. Loop thread of w only.
 */
void worker_trim_soon(struct worker *w);

#endif

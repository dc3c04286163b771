/*
 * main.c - command line, start-up, signals.
 *
 *   gatehouse -c FILE      run until SIGTERM/SIGINT
 *   gatehouse -t -c FILE   check FILE and exit (0 good, 1 with the reason)
 *   gatehouse -v           print the version
 *
 * The main thread loads the config, starts the workers and then only
 * handles signals: SIGTERM/SIGINT drain (stop accepting, wait for sessions
 * up to shutdown_timeout, then close them), SIGHUP reloads the config for
 * new sessions, SIGUSR1 reopens the logs.
 *
 * Under systemd (Type=notify, built with libsystemd) it tells the service
 * manager READY=1 once every listener is bound, RELOADING=1 / READY=1 around
 * a SIGHUP reload, STOPPING=1 when a drain starts, and WATCHDOG=1 every half
 * WatchdogSec from the main loop. Without NOTIFY_SOCKET these are no-ops.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <uv.h>
#ifdef GATEHOUSE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "access.h"
#include "audit.h"
#include "conf.h"
#include "http.h"
#include "imap.h"
#include "log.h"
#include "pop3.h"
#include "tcp.h"
#include "session.h"
#include "purge.h"
#include "status.h"
#include "worker.h"

#define DEFAULT_CONF "/etc/gatehouse/gatehouse.conf"
#ifdef GATEHOUSE_SYSTEMD
#define MAIN_FEATURES " (systemd)"
#else
#define MAIN_FEATURES ""
#endif

struct main_state {
	uv_loop_t *loop;
	struct conf *conf;
	struct worker *workers;
	int nworkers;
	atomic_int exited;
	atomic_int stopped_accepting; /* workers whose listeners are closed */
	bool told_stopped_accepting;
	uv_async_t exit_async;        /* a worker stopped accepting or exited */
	uv_signal_t sig_term, sig_int, sig_hup, sig_usr1;
	uv_timer_t drain_timer;
	uv_timer_t watchdog_timer;    /* WATCHDOG=1 pings, when systemd asks for them */
	bool draining;
};

static struct main_state M;

/*
 * sd_notify(3) with a printf format; a no-op when built without libsystemd
 * or started without NOTIFY_SOCKET. STATUS= lines show in systemctl status.
 */
#ifdef GATEHOUSE_SYSTEMD
#define main__notify(...) ((void)sd_notifyf(0, __VA_ARGS__))
#else
#define main__notify(...) ((void)0)
#endif

static void main__on_watchdog(uv_timer_t *t)
{
	main__notify("WATCHDOG=1");
}

/* Ping at half the interval systemd gave (WatchdogSec=), if it gave one. */
static void main__start_watchdog(void)
{
	uint64_t usec = 0;

#ifdef GATEHOUSE_SYSTEMD
	if (sd_watchdog_enabled(0, &usec) <= 0)
		usec = 0;
#endif
	if (usec == 0)
		return;
	uint64_t ms = usec / 2000 > 0 ? usec / 2000 : 1;
	uv_timer_start(&M.watchdog_timer, main__on_watchdog, ms, ms);
	log_write(LOG_INFO, "systemd watchdog: pinging every %llu ms", (unsigned long long)ms);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: gatehouse [-t] [-c FILE] | -v\n"
		   "       gatehouse purge [-c FILE] [-n URL]... [-N] [-i IP]... USER...\n"
		   "  -c FILE  configuration file (default " DEFAULT_CONF ")\n"
		   "  -t       check the configuration and exit\n"
		   "  -v       print the version and exit\n");
}

static int open_logs(const struct conf *c)
{
	int rc = log_open(c->error_log, (enum log_level)c->log_level);
	if (rc < 0) {
		fprintf(stderr, "gatehouse: opening error log %s: %s\n", c->error_log, strerror(-rc));
		return rc;
	}
	rc = audit_open(c->audit_log);
	if (rc < 0) {
		log_write(LOG_ERROR, "opening audit log %s: %s", c->audit_log, strerror(-rc));
		return rc;
	}
	rc = access_open(c->http.access_log);
	if (rc < 0) {
		log_write(LOG_ERROR, "opening access log %s: %s", c->http.access_log, strerror(-rc));
		return rc;
	}
	return 0;
}

static void main__close_handles(void)
{
	uv_close((uv_handle_t *)&M.exit_async, NULL);
	uv_close((uv_handle_t *)&M.sig_term, NULL);
	uv_close((uv_handle_t *)&M.sig_int, NULL);
	uv_close((uv_handle_t *)&M.sig_hup, NULL);
	uv_close((uv_handle_t *)&M.sig_usr1, NULL);
	uv_close((uv_handle_t *)&M.drain_timer, NULL);
	uv_close((uv_handle_t *)&M.watchdog_timer, NULL);
	status_stop();
}

static void main__worker_exited(struct worker *w)
{
	atomic_fetch_add(&M.exited, 1);
	uv_async_send(&M.exit_async);
}

static void main__worker_stopped_accepting(struct worker *w)
{
	atomic_fetch_add(&M.stopped_accepting, 1);
	uv_async_send(&M.exit_async);
}

static void main__on_exit_async(uv_async_t *a)
{
	if (!M.told_stopped_accepting && atomic_load(&M.stopped_accepting) == M.nworkers) {
		M.told_stopped_accepting = true;
		log_write(LOG_INFO, "listening sockets closed: no longer accepting connections");
	}
	if (atomic_load(&M.exited) == M.nworkers)
		main__close_handles();
}

static void main__drain_deadline(uv_timer_t *t)
{
	log_write(LOG_INFO, "drain deadline reached: closing the remaining sessions");
	for (int i = 0; i < M.nworkers; i++)
		worker_command(&M.workers[i], WORKER_CMD_CLOSE_ALL);
}

static void main__on_stop(uv_signal_t *h, int signum)
{
	if (M.draining) {
		log_write(LOG_INFO, "signal %d again: closing all sessions now", signum);
		main__drain_deadline(&M.drain_timer);
		return;
	}
	M.draining = true;
	main__notify("STOPPING=1\nSTATUS=draining sessions (signal %d)", signum);
	status_set_draining();
	log_write(LOG_INFO, "signal %d: closing the listening sockets, draining sessions for up to %.1f s",
		  signum, M.conf->shutdown_timeout);
	for (int i = 0; i < M.nworkers; i++)
		worker_command(&M.workers[i], WORKER_CMD_STOP_ACCEPT);
	uv_timer_start(&M.drain_timer, main__drain_deadline,
		       (uint64_t)(M.conf->shutdown_timeout * 1000.0), 0);
}

static bool main__has_listener(const struct conf *c, const struct conf_listen *l)
{
	for (int i = 0; i < c->nlisten; i++)
		if (c->listen[i].proto == l->proto && c->listen[i].addrlen == l->addrlen &&
		    memcmp(&c->listen[i].addr, &l->addr, l->addrlen) == 0)
			return true;
	return false;
}

/*
 * A reload may add listen addresses: check each new one can be bound (the
 * workers bind it with SO_REUSEPORT) before accepting the configuration, so
 * a port taken by another program refuses the reload with the reason.
 */
static int main__check_new_listeners(const struct conf *old, const struct conf *c, char *err,
				     size_t errlen)
{
	for (int i = 0; i < c->nlisten; i++) {
		const struct conf_listen *l = &c->listen[i];
		if (main__has_listener(old, l))
			continue;
		int one = 1, fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
			 setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0 &&
			 bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) == 0;
		int e = errno;
		if (fd >= 0)
			close(fd);
		if (!ok) {
			snprintf(err, errlen, "%s:%d: listen.[%d].address: cannot listen on %s: %s",
				 c->path, l->line, i, l->address, strerror(e));
			return -1;
		}
	}
	return 0;
}

/*
 * Every client is a descriptor, and so is its backend connection (a spliced
 * session holds two more, and its pipes while bytes move): raise the soft
 * open-files limit to the hard one, as a login shell's 1024 would cap
 * gatehouse at a few hundred sessions. Say so when max_connections cannot
 * be reached within the limit. (The hard limit is the administrator's:
 * LimitNOFILE= in the systemd unit, or ulimit -Hn.)
 */
#define MAIN_FDS_PER_SESSION 4
#define MAIN_FDS_SPARE 128

static void main__raise_nofile(const struct conf *c)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? 1048576 : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
			log_write(LOG_INFO, "open files limit raised from %llu to %llu",
				  (unsigned long long)was, (unsigned long long)rl.rlim_cur);
		else
			rl.rlim_cur = was;
	}
	size_t want = c->limits.max_connections * MAIN_FDS_PER_SESSION + MAIN_FDS_SPARE;
	if (c->limits.max_connections > 0 && rl.rlim_cur < want)
		log_write(LOG_WARN,
			  "open files limit %llu is below what max_connections = %zu may need (%zu):"
			  " raise LimitNOFILE / ulimit -n",
			  (unsigned long long)rl.rlim_cur, c->limits.max_connections, want);
}

static void main__on_hup(uv_signal_t *h, int signum)
{
	char err[512];

	main__notify("RELOADING=1");
	struct conf *c = conf_load(M.conf->path, err, sizeof(err));

	if (c == NULL) {
		log_write(LOG_ERROR, "reload refused, keeping the running configuration: %s", err);
		main__notify("READY=1\nSTATUS=reload refused: %s", err);
		return;
	}
	if (main__check_new_listeners(M.conf, c, err, sizeof(err)) < 0) {
		log_write(LOG_ERROR, "reload refused, keeping the running configuration: %s", err);
		main__notify("READY=1\nSTATUS=reload refused: %s", err);
		conf_unref(c);
		return;
	}
	for (int i = 0; i < c->nlisten; i++)
		if (!main__has_listener(M.conf, &c->listen[i]))
			log_write(LOG_INFO, "reload: adding listener %s (%s)", c->listen[i].address,
				  conf_proto_names[c->listen[i].proto]);
	for (int i = 0; i < M.conf->nlisten; i++)
		if (!main__has_listener(c, &M.conf->listen[i]))
			log_write(LOG_INFO, "reload: removing listener %s; its sessions continue",
				  M.conf->listen[i].address);
	if ((M.conf->status.address == NULL) != (c->status.address == NULL) ||
	    (c->status.address != NULL && strcmp(M.conf->status.address, c->status.address) != 0))
		log_write(LOG_WARN, "reload: status listener changes take effect only after a restart");
	else if (c->status.address != NULL &&
		 status_set_purge_from(c->status.purge_from, c->status.npurge_from) < 0)
		log_write(LOG_ERROR, "reload: no memory for status.purge_from (kept the old list)");
	if (open_logs(c) < 0)
		log_write(LOG_ERROR, "reload: could not open the new logs");
	for (int i = 0; i < M.nworkers; i++)
		worker_set_conf(&M.workers[i], c);
	conf_unref(M.conf);
	M.conf = c;
	main__raise_nofile(c);
	log_write(LOG_INFO, "reloaded %s: new sessions use it, established sessions continue",
		  c->path);
	main__notify("READY=1\nSTATUS=running, reloaded %s", c->path);
}

static void main__on_usr1(uv_signal_t *h, int signum)
{
	if (open_logs(M.conf) == 0)
		log_write(LOG_INFO, "logs reopened");
}

static int main__run(struct conf *c)
{
	uv_sem_t started;
	int rc = 0;

	main__raise_nofile(c);
	session_register(CONF_PROTO_IMAP, &imap_proto);
	session_register(CONF_PROTO_POP3, &pop3_proto);
	session_register(CONF_PROTO_HTTP, &http_proto);
	session_register(CONF_PROTO_TCP, &tcp_proto);
	M.loop = uv_default_loop();
	M.conf = c;
	M.nworkers = c->workers;
	M.workers = calloc((size_t)M.nworkers, sizeof(*M.workers));
	if (M.workers == NULL)
		return 1;
	uv_async_init(M.loop, &M.exit_async, main__on_exit_async);
	uv_signal_init(M.loop, &M.sig_term);
	uv_signal_init(M.loop, &M.sig_int);
	uv_signal_init(M.loop, &M.sig_hup);
	uv_signal_init(M.loop, &M.sig_usr1);
	uv_timer_init(M.loop, &M.drain_timer);
	uv_timer_init(M.loop, &M.watchdog_timer);
	uv_signal_start(&M.sig_term, main__on_stop, SIGTERM);
	uv_signal_start(&M.sig_int, main__on_stop, SIGINT);
	uv_signal_start(&M.sig_hup, main__on_hup, SIGHUP);
	uv_signal_start(&M.sig_usr1, main__on_usr1, SIGUSR1);
	uv_sem_init(&started, 0);
	if (c->status.address != NULL) {
		const char *err = NULL;
		if (status_start(M.loop, (const struct sockaddr *)&c->status.addr, &err) < 0) {
			log_write(LOG_ERROR, "status listener on %s: %s", c->status.address, err);
			status_stop();
			M.nworkers = 0;
			rc = 1;
		} else {
			if (status_set_purge_from(c->status.purge_from, c->status.npurge_from) < 0)
				log_write(LOG_ERROR, "status listener: no memory for purge_from");
			log_write(LOG_INFO, "status listener on %s (/metrics, /health, /purge)",
				  c->status.address);
		}
	}

	int nstarted = 0;
	for (int i = 0; rc == 0 && i < M.nworkers; i++) {
		M.workers[i].on_exit = main__worker_exited;
		M.workers[i].on_stopped_accepting = main__worker_stopped_accepting;
		if (worker_start(&M.workers[i], i, c, &started) < 0) {
			log_write(LOG_ERROR, "cannot start worker %d", i);
			rc = 1;
			break;
		}
		nstarted++;
		uv_sem_wait(&started);
		if (M.workers[i].start_status < 0) {
			log_write(LOG_ERROR, "%s", M.workers[i].start_error);
			rc = 1;
			break;
		}
	}
	if (rc != 0) {
		M.nworkers = nstarted;
		M.draining = true;
		for (int i = 0; i < nstarted; i++)
			worker_command(&M.workers[i], WORKER_CMD_CLOSE_ALL);
	} else {
		char addrs[512] = "";
		for (int i = 0; i < c->nlisten; i++) {
			size_t l = strlen(addrs);
			snprintf(addrs + l, sizeof(addrs) - l, "%s%s (%s)", i ? ", " : "",
				 c->listen[i].address, conf_proto_names[c->listen[i].proto]);
		}
		log_write(LOG_INFO, "gatehouse %s started: %d workers, listening on %s",
			  GATEHOUSE_VERSION, M.nworkers, addrs);
		main__notify("READY=1\nSTATUS=running: %d workers, listening on %s", M.nworkers,
			     addrs);
		main__start_watchdog();
	}
	if (M.nworkers == 0)
		main__close_handles();
	uv_run(M.loop, UV_RUN_DEFAULT);
	for (int i = 0; i < M.nworkers; i++)
		worker_join(&M.workers[i]);
	uv_sem_destroy(&started);
	uv_loop_close(M.loop);
	/* Join libuv's thread pool now, while OpenSSL can still free the
	   per-thread state (its error queue) of threads that hashed keys or
	   talked to memcached: left to libuv's exit-time destructor, the pool
	   ends after OpenSSL's atexit cleanup and that state leaks. */
	uv_library_shutdown();
	free(M.workers);
	if (rc == 0)
		log_write(LOG_INFO, "gatehouse stopped");
	conf_unref(M.conf);
	return rc;
}

/*
 * glibc raises its trim threshold each time a large mmapped block is freed
 * (up to 64 MiB), and malloc_trim never shrinks the top of a thread's heap:
 * after a storm of 5000 connections a worker kept its whole free heap top
 * (25-45 MiB) for good, depending on what had been freed before. Fixed
 * thresholds keep the free top of every heap going back beyond 1 MiB.
 */
static void main__malloc_tuning(void)
{
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
	mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
}

int main(int argc, char **argv)
{
	const char *path = DEFAULT_CONF;
	bool test_only = false;
	int opt;
	char err[512];

	if (argc > 1 && strcmp(argv[1], "purge") == 0)
		return purge_main(argc - 1, argv + 1);
	main__malloc_tuning();

	while ((opt = getopt(argc, argv, "c:tvh")) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test_only = true;
			break;
		case 'v':
			printf("gatehouse %s%s\n", GATEHOUSE_VERSION, MAIN_FEATURES);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	struct conf *c = conf_load(path, err, sizeof(err));
	if (c == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (test_only) {
		printf("%s: configuration is valid\n", path);
		conf_unref(c);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	if (open_logs(c) < 0) {
		conf_unref(c);
		return 1;
	}
	return main__run(c);
}

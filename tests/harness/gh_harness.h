/*
 * gh_harness.h - drive one real gatehouse session from a test or a fuzzer:
 * client bytes split where the script says, interleaved with backend
 * answers, write completions, timer expiries and closes.
 *
 * What runs is the production code: a hand-made worker (loop, buffer pool,
 * config) hands one end of a socketpair to worker_take(), as worker.c does
 * with an accepted socket; the harness holds the other end. Routes (a
 * static "*" route and http.backends) point at a loopback listening socket
 * the harness accepts on and answers from, as a mailstore or web server
 * would. TLS clients are OpenSSL on memory BIOs, so a script can put any
 * records, a close_notify or raw garbage into one write() call.
 *
 * Nothing here blocks: every step runs the loop with UV_RUN_NOWAIT and then
 * moves what the sockets hold; waits are bounded numbers of steps.
 *
 * One environment (gh_env) serves any number of connections one after the
 * other (a fuzzer reuses it across inputs); one connection (gh_conn) is
 * open on an environment at a time.
 */
#ifndef GH_HARNESS_H
#define GH_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "conf.h"
#include "session_int.h"
#include "worker.h"

enum gh_proto { GH_IMAP = 0, GH_POP3 = 1, GH_HTTP = 2, GH_TCP = 3 };
/* Listener kinds. IMAP/POP3: starttls "off", starttls "optional", implicit
   TLS. HTTP: plain mode "both", plain mode "redirect", implicit TLS. TCP
   (upstream group "h": the harness backend, which echoes): plain, plain
   with a PROXY v2 header sent upstream, implicit TLS. */
enum gh_mode { GH_PLAIN = 0, GH_STARTTLS = 1, GH_TLS = 2 };

#define GH_NLISTEN 12
#define GH_MAX_BACKENDS 4

/* A growable byte buffer, always NUL-terminated after len (for strstr). */
struct gh_buf {
	uint8_t *p;
	size_t len, cap;
};

struct gh_env {
	char dir[64];                 /* temp dir: certificate, key, config */
	struct conf *conf;
	struct worker w;              /* loop, pool, conf, sessions list, trim timer */
	struct listener l[GH_NLISTEN];/* index proto * 3 + mode; not bound */
	int backend_lfd;              /* 127.0.0.1:backend_port, non-blocking */
	uint16_t backend_port;
	SSL_CTX *cli_ctx;             /* the harness's TLS client */
	int tls_max_version;          /* 0, or e.g. TLS1_2_VERSION for new clients */
};

/* One accepted backend connection and what gatehouse sent on it. */
struct gh_backend {
	int fd;                       /* -1: closed */
	struct gh_buf in;             /* everything received on it */
	size_t done;                  /* how far the auto responder has answered */
	bool eof;                     /* gatehouse closed or shut it down */
	size_t lit_acked;             /* auto: "+ go ahead" sent for literals up to here */
	bool sasl_wait;               /* auto: a continuation was asked for */
	char sasl_tag[64];
};

struct gh_conn {
	struct gh_env *e;
	enum gh_proto proto;
	enum gh_mode mode;
	uint64_t sid;                 /* the session's id (it may be freed: gh_session) */
	int fd;                       /* the client's end; -1 once closed */
	int sfd;                      /* the session's end (owned by its handle) */
	bool reading;                 /* steps read what gatehouse sends (default true) */
	bool eof;                     /* the session's end closed or shut down */
	bool hold;                    /* writes gather in pend until gh_flush */
	struct gh_buf pend;           /* bytes to write to fd (ciphertext when TLS) */
	struct gh_buf out;            /* what gatehouse sent the client, decrypted */

	SSL *ssl;                     /* NULL: plain */
	BIO *rbio, *wbio;
	bool tls_done;                /* handshake finished */
	bool tls_failed;              /* handshake or record error */
	bool tls_peer_closed;         /* got close_notify */

	/* The mailstore / web server. */
	bool backend_auto;            /* answer as a server would (default true) */
	bool backend_login_ok;        /* auto: accept logins (default true) */
	bool backend_reading;         /* read what gatehouse sends (default true) */
	struct gh_backend b[GH_MAX_BACKENDS];
	int nbackends;                /* connections accepted so far */
	struct gh_buf bsent;          /* everything gatehouse sent to any backend */
};

/*
 * Make a temp dir with a self-signed ECDSA certificate, a config with the
 * nine listeners, a static route "*" and http.backends at a new loopback
 * listening socket, plus extra (more top-level settings, or NULL), and a
 * worker around a new loop. Logging is off (GH_HARNESS_LOG=debug|info
 * turns it on). SIGPIPE is ignored. Returns 0, or -1 with err filled.
 */
int gh_env_init(struct gh_env *e, const char *extra, char *err, size_t errlen);

/*
 * Close the worker's handles and the loop, free the config, remove the
 * temp dir. Returns uv_loop_close's result: 0 when no handle was left.
 */
int gh_env_fini(struct gh_env *e);

/* Handles on the loop that are not the harness's own and not closing. */
int gh_env_live_handles(struct gh_env *e);

/*
 * Open a session on listener (proto, mode) through worker_take() with a
 * socketpair, peer 127.0.0.1:40000+n. Implicit TLS: the client handshake is
 * started. Runs the loop until things settle (greeting in c->out, or the
 * handshake done and the greeting read). sndbuf > 0: SO_SNDBUF of the
 * session's end (small: its writes queue until the harness reads).
 * Returns 0 or -1.
 */
int gh_conn_open(struct gh_conn *c, struct gh_env *e, enum gh_proto proto, enum gh_mode mode,
		 int sndbuf);

/*
 * Close the session if it is still open (session_close), close the
 * harness's sockets, run the loop until the session is freed, and close
 * idle pooled HTTP backends. Returns 0 when everything is gone (no session,
 * no live handle, every pool buffer back), else -1. c->e is NULL after.
 */
int gh_conn_close(struct gh_conn *c);

/* The session, or NULL once it has been freed. */
struct session *gh_session(struct gh_conn *c);

/*
 * One step: run the loop once (UV_RUN_NOWAIT), accept backend connections,
 * read and answer on them (auto), read the client's side (when reading),
 * drive the TLS client, flush pend (unless hold). True if any byte moved.
 */
bool gh_step(struct gh_conn *c);
/* Step until 3 steps in a row move nothing, at most max steps. */
void gh_settle(struct gh_conn *c, int max);

/*
 * Client sends data: plain, or as TLS records of at most rec bytes each
 * (rec 0: 16384) once the handshake is done (raw before it). Bytes go to
 * pend; unless hold is set they are written at once (gh_flush).
 */
void gh_send(struct gh_conn *c, const void *data, size_t len, size_t rec);
void gh_sends(struct gh_conn *c, const char *str);
/* Bytes that bypass TLS (garbage, a forged record). */
void gh_send_raw(struct gh_conn *c, const void *data, size_t len);
/* A TLS application-data record header and 32 bytes 0xAA: fails its MAC. */
void gh_send_bad_record(struct gh_conn *c);
/* TLS close_notify (SSL_shutdown). */
void gh_send_close_notify(struct gh_conn *c);
/* Stop holding and write pend with as few write() calls as the socket
   allows (one, normally); what does not fit goes out in later steps. */
void gh_flush(struct gh_conn *c);
/* Start the client handshake (after a STARTTLS/STLS go-ahead). */
void gh_tls_start(struct gh_conn *c);
/* Half-close (SHUT_WR) or close the client's end. */
void gh_client_shutdown(struct gh_conn *c);
void gh_client_close(struct gh_conn *c);

/* Make the session's phase timer fire now, if it is armed. */
void gh_fire_timer(struct gh_conn *c);

/* The newest backend connection still open, or NULL. */
struct gh_backend *gh_backend(struct gh_conn *c);
/* Send bytes from the newest backend connection. */
void gh_backend_send(struct gh_conn *c, const void *data, size_t len);
/* Close (FIN) the newest backend connection. */
void gh_backend_close(struct gh_conn *c);

/* Step until c->out holds needle (true) or max steps passed (false). */
bool gh_wait_out(struct gh_conn *c, const char *needle, int max);
/* Step until the session has been freed (true), at most max steps. */
bool gh_wait_gone(struct gh_conn *c, int max);

/* Bytes the session holds for the client: queued writes and the memory
   of the pool buffers handed out (16 KiB each by default). */
size_t gh_client_queued(struct gh_conn *c);
size_t gh_pool_bytes(struct gh_conn *c);

/* Forget what the client has read so far (c->out becomes ""). */
void gh_out_clear(struct gh_conn *c);

/* Count non-overlapping occurrences of needle in b. */
size_t gh_count(const struct gh_buf *b, const char *needle);

/*
 * Run a fuzz script on a fresh connection of proto (see gh_script.c for the
 * format), then close it. Returns gh_conn_close's result.
 */
int gh_script_run(struct gh_env *e, enum gh_proto proto, const uint8_t *data, size_t size);

#endif

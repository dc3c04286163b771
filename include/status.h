/*
 * status.h - the status listener: GET /metrics (Prometheus text) and
 * GET /health (200 "ok", or 503 "draining" once a drain has started), one
 * request per connection, served on the main thread's loop.
 */
#ifndef GATEHOUSE_STATUS_H
#define GATEHOUSE_STATUS_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

/* Largest request head accepted; a longer one is answered 431. */
#define STATUS_MAX_REQUEST 8192
/* Seconds a client has to send its whole request. */
#define STATUS_READ_TIMEOUT 5.0

/*
 * Answer the request whose first n bytes are req (pure apart from reading
 * the metrics counters for /metrics). Parses with llhttp from the start
 * each time, so the caller may call it again as more bytes arrive.
 * Returns the length of the complete HTTP/1.1 response written to out
 * (cap bytes), or 0 when the request head is not complete yet and n is
 * below STATUS_MAX_REQUEST. 200 /metrics and /health, 503 /health when
 * draining, 404 other paths, 405 other methods, 400 malformed, 431 too
 * long; every response says Connection: close. A response that does not
 * fit in cap is replaced by a 500.
 */
size_t status_handle(const char *req, size_t n, bool draining, char *out, size_t cap);

/*
 * status_handle for a peer that may (admin) or may not purge. POST
 * /purge?user=NAME[&user=NAME...] (names percent-encoded, up to 16, each a
 * valid login: no spaces or control characters) removes every L1 entry of
 * this process whose login or route user is NAME, case-insensitively:
 * 200 with one "purged NAME l1=<count>" line per name; 403 when !admin,
 * 400 for no or bad names, 405 for another method. status_handle is
 * status_handle_from with admin false.
 */
size_t status_handle_from(const char *req, size_t n, bool draining, bool admin, char *out,
			  size_t cap);

struct conf_cidr;

/*
 * Peers besides loopback (127.0.0.0/8, ::1) the listener lets purge
 * (status.purge_from), copied. 0, or -1 when out of memory. Loop thread.
 */
int status_set_purge_from(const struct conf_cidr *list, int n);

/*
 * Listen on addr on loop (the main thread's). Returns 0, or a negative
 * libuv error with a message in *err_out.
 */
int status_start(uv_loop_t *loop, const struct sockaddr *addr, const char **err_out);

/* From now on /health answers 503 draining. Loop thread only. */
void status_set_draining(void);

/* Close the listener and any connection in progress (no-op if not started). */
void status_stop(void);

#endif

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
 * Listen on addr on loop (the main thread's). Returns 0, or a negative
 * libuv error with a message in *err_out.
 */
int status_start(uv_loop_t *loop, const struct sockaddr *addr, const char **err_out);

/* From now on /health answers 503 draining. Loop thread only. */
void status_set_draining(void);

/* Close the listener and any connection in progress (no-op if not started). */
void status_stop(void);

#endif

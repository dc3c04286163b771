/*
 * rcache_io.h - memcached on a worker's loop (rcache_io.c), private to
 * route/: gets and writes of the login path without thread-pool hand-offs.
 */
#ifndef GATEHOUSE_RCACHE_IO_H
#define GATEHOUSE_RCACHE_IO_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "rcache.h"

struct rcache_io;

/* A get's answer: OK with the value (val[0..len), not NUL-terminated), MISS or ERROR. */
typedef void (*rcache_io_cb)(void *arg, enum rcache_mc_rc rc, const char *val, size_t len);

/*
 * A client on loop for rc's memcached servers (a reference to rc), or NULL
 * when this runtime is not served on the loop (no memcached, the consistent
 * distribution, a server given by name, no memory): the pool serves it.
 * No I/O until the first request.
 */
struct rcache_io *rcache_io_new(uv_loop_t *loop, struct rcache *rc);
/* Close: requests still waiting are answered ERROR from the loop later;
   the client frees itself once its handles are closed. */
void rcache_io_close(struct rcache_io *io);
/* io serves rc. */
bool rcache_io_for(const struct rcache_io *io, const struct rcache *rc);

/*
 * Get k. 0: cb runs later, from the loop, exactly once (never inside this
 * call). -1: no request was made (every server held down, too many waiting,
 * no memory): cb never runs; treat it as a miss.
 */
int rcache_io_get(struct rcache_io *io, const struct rcache_key *k, rcache_io_cb cb, void *arg);

/* Send ops[0..n) (adds with rc's TTL, deletes), fire-and-forget, in order,
   with noreply: nothing is read for them (a server held down or too busy
   drops its writes, as on the pool). -1 when some were dropped for want of
   memory. */
int rcache_io_submit(struct rcache_io *io, const struct rcache_op *ops, int n);

#endif

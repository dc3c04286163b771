/*
 * lookup_client.h - the asynchronous lookup client, private to route/.
 */
#ifndef GATEHOUSE_LOOKUP_CLIENT_H
#define GATEHOUSE_LOOKUP_CLIENT_H

#include <uv.h>

#include "lookup.h"

struct conf;
struct lookup_call;

/*
 * Called once with the parsed answer of the first server that gave one
 * (resp != NULL, server = "ip:port" of that server), or with resp == NULL
 * and a reason when no server answered.
 */
typedef void (*lookup_done_cb)(void *arg, const struct lookup_response *resp, const char *server,
			       const char *error);

/*
 * Ask the configured lookup servers for q (strings are copied): round-robin
 * start, each server at most once, failover on connect error, timeout, a
 * malformed answer or a non-200 status; a server that failed is skipped for
 * lookup.retry_interval unless no other is left. Returns NULL on no memory.
 */
struct lookup_call *lookup_start(uv_loop_t *loop, struct conf *c, const struct lookup_query *q,
				 lookup_done_cb cb, void *arg);

/* Give up: cb is not called; memory goes when the handles have closed. */
void lookup_abort(struct lookup_call *call);

/* Close this thread's idle kept-alive connections (its loop then runs their
   close callbacks), when the worker stops. */
void lookup_pool_close(void);

#endif

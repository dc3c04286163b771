/*
 * session_int.h - what the files of proxy/ share about sessions and that
 * protocols must not use.
 */
#ifndef GATEHOUSE_SESSION_INT_H
#define GATEHOUSE_SESSION_INT_H

#include "session.h"

struct listener;

/* A new session for a connection about to be accepted on l (NULL: no memory). */
struct session *session_new(struct worker *w, struct listener *l);
/* The connection is accepted: read addresses, greet, start reading. */
void session_start(struct session *s);
/* The session timer's callback (session.c). */
void session__timer_fired(uv_timer_t *t);
/* Drop one reference (backend.c, for the backend stream and DNS requests). */
void session__release(struct session *s);
/* Switch both streams to relaying (relay.c). */
void relay_start(struct session *s);

#endif

/*
 * imap.h - the IMAP front end (protocols/imap.c) and its backend login
 * replay (protocols/imap_backend.c), as a session_proto table.
 */
#ifndef GATEHOUSE_IMAP_H
#define GATEHOUSE_IMAP_H

#include "session.h"

extern const struct session_proto imap_proto;

#endif

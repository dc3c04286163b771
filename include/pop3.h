/*
 * pop3.h - the POP3 front end (protocols/pop3.c) and its backend login
 * replay (protocols/pop3_backend.c), as a session_proto table.
 */
#ifndef GATEHOUSE_POP3_H
#define GATEHOUSE_POP3_H

#include "session.h"

extern const struct session_proto pop3_proto;

#endif

/*
 * tcp.h - TCP listeners (protocol = "tcp"): Carbonio's XMPP 5222 and
 * address-book LDAPS 8636. Accept (TLS terminated with the vhost
 * certificates when the listener has tls = true), connect to a server of
 * the listener's upstream group (TLS again when the group says so, a PROXY
 * header first when send_proxy_protocol says so), then relay bytes both
 * ways with the mail relay's limits, metrics and audit.
 */
#ifndef GATEHOUSE_TCP_H
#define GATEHOUSE_TCP_H

#include "session.h"

extern const struct session_proto tcp_proto;

#endif

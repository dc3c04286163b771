/*
 * connlimit.h - caps on concurrent client connections, in total and per
 * client address (after any PROXY header, so the real address counts).
 * Process-wide: SO_REUSEPORT spreads one client's connections over all
 * workers. Thread-safe.
 */
#ifndef GATEHOUSE_CONNLIMIT_H
#define GATEHOUSE_CONNLIMIT_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Count a new connection from ip against max_total and max_per_ip (0 = no
 * cap). Returns true and counts it, or false (nothing counted) when a cap
 * is reached. *which_out, when set, says which cap ("total", "per_ip").
 */
bool connlimit_acquire(const char *ip, size_t max_total, size_t max_per_ip, const char **which_out);

/* Forget one connection counted by connlimit_acquire for ip. */
void connlimit_release(const char *ip);

#endif

/*
 * purge.h - `gatehouse purge` (proxy/purge.c).
 */
#ifndef GATEHOUSE_PURGE_H
#define GATEHOUSE_PURGE_H

/* argv[0] is "purge". Exit status: 0, 1 (memcached or a notify failed, or
   the configuration), 2 (usage, bad names). */
int purge_main(int argc, char **argv);

#endif

/*
 * location_match.c - how long the web front door's path work takes: the
 * path normalizer alone, and normalizer + matcher, over real request paths
 * against a location table (conf/carbonio.conf's, 37 locations with 5
 * regexes, or any configuration given). CPU time per path, no I/O.
 *
 *   build/gh-bench-location CONF [ITERATIONS]
 *
 * CONF must load (gatehouse -t): point its certificate at a real one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf.h"
#include "http_location.h"

static const char *const paths[] = {
	"/", "/static/login/assets/index-3f2a.js", "/services/files/graphql",
	"/services/chats/events", "/zx/login/v3/account", "/carbonio/",
	"/Microsoft-Server-ActiveSync?Cmd=Ping&User=alice", "/service/soap/NoOpRequest",
	"/service/soap/SearchRequest", "/home/alice@example.com/Inbox?fmt=rss",
	"/EWS/Exchange.asmx", "/css/common.css", "/logout", "/robots.txt",
};

static double bench_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
	char err[512], out[1024];
	size_t used, np = sizeof(paths) / sizeof(paths[0]);
	long iters = argc > 2 ? atol(argv[2]) : 200000;
	volatile long sink = 0;

	if (argc < 2 || iters <= 0) {
		fprintf(stderr, "usage: %s CONF [ITERATIONS]\n", argv[0]);
		return 2;
	}
	struct conf *c = conf_load(argv[1], err, sizeof(err));
	struct http_location_scratch *sc = http_location_scratch_new();
	if (c == NULL || sc == NULL) {
		fprintf(stderr, "%s\n", c == NULL ? err : "out of memory");
		return 1;
	}
	const struct conf_location_table *t = c->locations;
	for (int match = 0; match < 2; match++) {
		double start = bench_ns();
		for (long i = 0; i < iters; i++) {
			for (size_t k = 0; k < np; k++) {
				int n = http_path_normalize((const uint8_t *)paths[k], strlen(paths[k]), out,
							    sizeof(out), &used);
				const struct conf_location *l =
					match ? http_location_match(t, out, (size_t)n, sc) : NULL;
				sink += l != NULL ? l->line : n;
			}
		}
		printf("%-16s %6.0f ns CPU per path (%zu paths x %ld, %d locations)\n",
		       match ? "normalize+match" : "normalize", (bench_ns() - start) / (double)(iters * (long)np),
		       np, iters, t != NULL ? t->n : 0);
	}
	http_location_scratch_free(sc);
	conf_unref(c);
	return 0;
}

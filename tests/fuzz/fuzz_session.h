/*
 * fuzz_session.h - what the fuzz_session_* targets share: one harness
 * environment (certificate, config, worker, loop) made on the first input
 * and kept for the process, so each input costs a session, not a setup.
 */
#ifndef FUZZ_SESSION_H
#define FUZZ_SESSION_H

#include <stdio.h>
#include <stdlib.h>

#include "gh_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct gh_env fuzz_env;
static bool fuzz_env_ready;

static void fuzz_env_fini(void)
{
	if (gh_env_fini(&fuzz_env) != 0) {
		fprintf(stderr, "fuzz_session: loop closed with live handles\n");
		abort();
	}
}

static int fuzz_session_one(enum gh_proto proto, const uint8_t *data, size_t size)
{
	if (!fuzz_env_ready) {
		char err[512];
		if (gh_env_init(&fuzz_env, NULL, err, sizeof(err)) < 0) {
			fprintf(stderr, "fuzz_session: %s\n", err);
			abort();
		}
		fuzz_env_ready = true;
		atexit(fuzz_env_fini);
	}
	if (gh_script_run(&fuzz_env, proto, data, size) != 0) {
		fprintf(stderr, "fuzz_session: a session, handle or buffer outlived its teardown\n");
		abort();
	}
	return 0;
}

#endif

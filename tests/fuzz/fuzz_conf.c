/*
 * libFuzzer target for core/conf.c: the input is written to a file and
 * loaded. A load either succeeds (and the snapshot is freed) or fails with
 * a message that starts with the file name.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res);

/*
 * Lookup server URLs are resolved at load. A fuzzer must not query DNS (slow,
 * and not reproducible), so numeric hosts only: this wraps libc's resolver.
 */
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res)
{
	static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
	struct addrinfo h;

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
	if (real == NULL)
		return EAI_FAIL;
	memset(&h, 0, sizeof(h));
	if (hints != NULL)
		h = *hints;
	h.ai_flags |= AI_NUMERICHOST;
	return real(node, service, &h, res);
}

const char *__lsan_default_suppressions(void);

/*
 * libconfig 1.5's scanner drops the token it is building when a syntax error
 * interrupts it (a string, "imap = { cap\"IDL\" };"); config_destroy cannot
 * free it. Those leaks are libconfig's, not ours: suppress exactly the
 * scanner's allocation sites.
 */
const char *__lsan_default_suppressions(void)
{
	return "leak:strbuf_append\nleak:libconfig_yylex\n";
}

static char fuzz_path[64];

static void fuzz_cleanup(void)
{
	if (fuzz_path[0] != '\0')
		unlink(fuzz_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];

	if (fuzz_path[0] == '\0') {
		snprintf(fuzz_path, sizeof(fuzz_path), "/tmp/gh-fuzz-conf-XXXXXX");
		int fd = mkstemp(fuzz_path);
		if (fd < 0)
			abort();
		close(fd);
		atexit(fuzz_cleanup);
	}
	FILE *f = fopen(fuzz_path, "wb");
	if (f == NULL)
		abort();
	if (fwrite(data, 1, size, f) != size)
		abort();
	fclose(f);

	memset(err, 'x', sizeof(err));
	struct conf *c = conf_load(fuzz_path, err, sizeof(err));
	if (c != NULL) {
		if (c->workers < 1 || c->nlisten < 1 || c->limits.max_literal > c->limits.max_line)
			abort();
		conf_unref(conf_ref(c));
		conf_unref(c);
	} else if (memchr(err, '\0', sizeof(err)) == NULL
		   || strncmp(err, fuzz_path, strlen(fuzz_path)) != 0) {
		abort();
	}
	return 0;
}

/*
 * libFuzzer target for protocols/http_location.c: the path normalizer takes
 * client bytes. Whatever the input, a normalized path starts with '/',
 * never grows, has no empty, "." or ".." segment, no %XX of an unreserved
 * character and only upper-case hex, normalizes to itself, and gets a
 * location of the table (or none) and a rewrite that fits its bound. The
 * input is read from a private buffer of exactly its size (ASan catches
 * over-reads) and the output is written into one of exactly its bound.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "http_location.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct conf *fz_conf;
static struct http_location_scratch *fz_sc;

static const char fz_text[] =
	"upstreams = ( { name = \"u\"; servers = [ \"127.0.0.1\" ]; } );\n"
	"locations = (\n"
	" { match = \"= /\"; upstream = \"u\"; },\n"
	" { match = \"/\"; upstream = \"u\"; },\n"
	" { match = \"^~ /Microsoft-Server-ActiveSync\"; upstream = \"u\"; },\n"
	" { match = \"^~ /static/\"; root = \"/srv/web\"; rewrite_prefix = \"/\"; },\n"
	" { match = \"/services/chats/events\"; upstream = \"u\"; rewrite_prefix = \"/events/\"; },\n"
	" { match = \"~/logout\"; logout = [ \"ZM_AUTH_TOKEN\" ]; redirect = \"/\"; },\n"
	" { match = \"~* /service/extension/drive/(.*)/(.*)$\"; upstream = \"u\"; },\n"
	" { match = \"~ ^/(a|aa)+$\"; return = 404; },\n"
	" { match = \"~* /(service|principals|dav|\\\\.well-known|home|shf|user)/\"; upstream = \"u\"; }\n"
	");\n";

static void fz_init(void)
{
	char path[] = "/tmp/gh-fuzz-loc-XXXXXX", err[512];
	int fd = mkstemp(path);

	if (fd < 0 || write(fd, fz_text, sizeof(fz_text) - 1) != (ssize_t)(sizeof(fz_text) - 1))
		abort();
	close(fd);
	fz_conf = conf_load(path, err, sizeof(err));
	unlink(path);
	fz_sc = http_location_scratch_new();
	if (fz_conf == NULL || fz_sc == NULL) {
		fprintf(stderr, "fuzz_http_location: %s\n", err);
		abort();
	}
}

static bool fz_unreserved(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
	       || c == '-' || c == '.' || c == '_' || c == '~';
}

static int fz_hex(int c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static void fz_check(const char *out, int rc, size_t consumed)
{
	if (rc <= 0 || (size_t)rc > consumed || strlen(out) != (size_t)rc || out[0] != '/')
		abort();
	for (int i = 0; i < rc; i++) {
		if (out[i] == '%') {
			int hi = i + 2 < rc ? fz_hex(out[i + 1]) : -1;
			int lo = hi >= 0 ? fz_hex(out[i + 2]) : -1;
			if (hi < 0 || lo < 0 || fz_unreserved(hi * 16 + lo))
				abort();
		}
		if (out[i] != '/')
			continue;
		const char *seg = out + i + 1;
		size_t sl = strcspn(seg, "/");
		bool last = seg[sl] == '\0';
		if ((sl == 0 && !last) || (sl == 1 && seg[0] == '.')
		    || (sl == 2 && seg[0] == '.' && seg[1] == '.'))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fz_conf == NULL)
		fz_init();
	uint8_t *copy = malloc(size ? size : 1);
	char *out = malloc(size + 1), *again = malloc(size + 1);
	if (copy == NULL || out == NULL || again == NULL)
		goto done;
	memcpy(copy, data, size);

	size_t used, used2;
	int rc = http_path_normalize(copy, size, out, size + 1, &used);
	if (used > size)
		abort();
	if (rc == HTTP_PATH_ESPACE || (rc < 0 && rc != HTTP_PATH_EBAD && rc != HTTP_PATH_EABOVE))
		abort();
	/* Too little room is refused, never overrun (out has size + 1). */
	if (http_path_normalize(copy, size, out, used, &used2) >= 0)
		abort();
	rc = http_path_normalize(copy, size, out, size + 1, &used);
	if (rc < 0)
		goto done;
	fz_check(out, rc, used);
	if (http_path_normalize((const uint8_t *)out, (size_t)rc, again, (size_t)rc + 1, &used2) != rc
	    || memcmp(out, again, (size_t)rc) != 0)
		abort();

	const struct conf_location_table *t = fz_conf->locations;
	const struct conf_location *l = http_location_match(t, out, (size_t)rc, fz_sc);
	if (l == NULL)
		abort(); /* "/" is a prefix of every normalized path */
	if (l < t->loc || l >= t->loc + t->n)
		abort();
	size_t cap = (size_t)rc + 16;
	char *rw = malloc(cap);
	if (rw != NULL) {
		int n = http_location_rewrite(l, out, (size_t)rc, rw, cap);
		if (n < 0 || (size_t)n >= cap || rw[0] != '/' || strlen(rw) != (size_t)n)
			abort();
		free(rw);
	}
done:
	free(copy);
	free(out);
	free(again);
	return 0;
}

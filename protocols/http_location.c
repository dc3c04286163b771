/*
 * http_location.c - the normalized request path and the location it gets
 * (include/http_location.h): nginx's precedence over a configuration's
 * location table. Pure: no I/O, and no allocation per call (the PCRE2
 * match block is the caller's scratch).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "gh.h"
#include "http_location.h"

/*
 * Bound on the work one regex may do on one path (pcre2's backtracking
 * steps). The patterns are the operator's, the path the client's: a
 * pattern with nested quantifiers must not let a crafted path spin a
 * worker. Real route patterns need a few hundred steps.
 */
#define HTTP_LOC_MATCH_LIMIT 100000
#define HTTP_LOC_DEPTH_LIMIT 1000

struct http_location_scratch {
	pcre2_match_data *md;
	pcre2_match_context *mc;
};

static bool loc__unreserved(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
	       || c == '-' || c == '.' || c == '_' || c == '~';
}

/*
 * The segment that ends at out[o] (after the last '/') is "." or "..":
 * drop it (and for ".." the one before). Returns the new length, or -1
 * when ".." would climb above the root. out[0] is always '/'.
 */
static long loc__dot_segment(char *out, size_t o)
{
	size_t start = o;

	while (start > 0 && out[start - 1] != '/')
		start--;
	size_t seg = o - start;
	if (seg == 1 && out[start] == '.')
		return (long)start;
	if (!(seg == 2 && out[start] == '.' && out[start + 1] == '.'))
		return (long)o;
	/* out[start - 1] is the '/' before ".."; the root has nothing above. */
	if (start == 1)
		return -1;
	size_t prev = start - 1;
	while (prev > 0 && out[prev - 1] != '/')
		prev--;
	return (long)prev;
}

int http_path_normalize(const uint8_t *p, size_t n, char *out, size_t cap, size_t *consumed_out)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i = 0, o = 0;
	long r;

	while (i < n && p[i] != '?' && p[i] != '#')
		i++;
	*consumed_out = i;
	n = i;
	if (n == 0 || p[0] != '/')
		return HTTP_PATH_EBAD;
	if (cap < n + 1)
		return HTTP_PATH_ESPACE;
	out[o++] = '/';
	for (i = 1; i < n; i++) {
		int c = p[i];
		if (c == '%') {
			if (i + 2 >= n)
				return HTTP_PATH_EBAD;
			int hi = gh_hexval(p[i + 1]), lo = gh_hexval(p[i + 2]);
			if (hi < 0 || lo < 0)
				return HTTP_PATH_EBAD;
			i += 2;
			int v = hi * 16 + lo;
			if (loc__unreserved(v)) {
				out[o++] = (char)v;
			} else {
				out[o++] = '%';
				out[o++] = hex[hi];
				out[o++] = hex[lo];
			}
		} else if (c <= 0x20 || c == 0x7f) {
			return HTTP_PATH_EBAD;
		} else if (c != '/') {
			out[o++] = (char)c;
		} else {
			/* A segment ends: drop it if it is a dot segment, and merge
			   empty ones (the output then already ends in '/'). */
			if ((r = loc__dot_segment(out, o)) < 0)
				return HTTP_PATH_EABOVE;
			o = (size_t)r;
			if (out[o - 1] != '/')
				out[o++] = '/';
		}
	}
	/* The last segment: a dot segment leaves the '/' before it. */
	if ((r = loc__dot_segment(out, o)) < 0)
		return HTTP_PATH_EABOVE;
	o = (size_t)r;
	out[o] = '\0';
	return (int)o;
}

struct http_location_scratch *http_location_scratch_new(void)
{
	struct http_location_scratch *sc = calloc(1, sizeof(*sc));

	if (sc == NULL)
		return NULL;
	/* One pair: only whether a regex matches is used, not its groups. */
	sc->md = pcre2_match_data_create(1, NULL);
	sc->mc = pcre2_match_context_create(NULL);
	if (sc->md == NULL || sc->mc == NULL) {
		http_location_scratch_free(sc);
		return NULL;
	}
	pcre2_set_match_limit(sc->mc, HTTP_LOC_MATCH_LIMIT);
	pcre2_set_depth_limit(sc->mc, HTTP_LOC_DEPTH_LIMIT);
	return sc;
}

void http_location_scratch_free(struct http_location_scratch *sc)
{
	if (sc == NULL)
		return;
	pcre2_match_data_free(sc->md);
	pcre2_match_context_free(sc->mc);
	free(sc);
}

static bool loc__regex(const struct conf_location *l, const char *path, size_t len,
		       struct http_location_scratch *sc)
{
	if (sc == NULL || l->re == NULL)
		return false;
	/* >= 0: matched (0 only says the one pair could not hold the groups);
	   NOMATCH or an error (a limit reached): not matched. */
	return pcre2_match(l->re, (PCRE2_SPTR)path, len, 0, 0, sc->md, sc->mc) >= 0;
}

const struct conf_location *http_location_match(const struct conf_location_table *t,
						const char *path, size_t len,
						struct http_location_scratch *sc)
{
	const struct conf_location *longest = NULL;

	if (t == NULL)
		return NULL;
	for (int i = 0; i < t->n; i++) {
		const struct conf_location *l = &t->loc[i];
		if (l->match == CONF_LOC_EXACT) {
			if (l->pattern_len == len && memcmp(l->pattern, path, len) == 0)
				return l;
		} else if (l->match == CONF_LOC_PREFIX || l->match == CONF_LOC_PREFIX_STOP) {
			if (l->pattern_len <= len && memcmp(l->pattern, path, l->pattern_len) == 0
			    && (longest == NULL || l->pattern_len > longest->pattern_len))
				longest = l;
		}
	}
	if (longest != NULL && longest->match == CONF_LOC_PREFIX_STOP)
		return longest;
	for (int i = 0; i < t->n; i++) {
		const struct conf_location *l = &t->loc[i];
		if ((l->match == CONF_LOC_REGEX || l->match == CONF_LOC_REGEX_ICASE)
		    && loc__regex(l, path, len, sc))
			return l;
	}
	return longest;
}

int http_location_rewrite(const struct conf_location *l, const char *path, size_t len,
			  char *out, size_t cap)
{
	const char *head = "";
	size_t hl = 0, skip = 0;

	if (l->rewrite_prefix != NULL
	    && (l->match == CONF_LOC_EXACT || l->match == CONF_LOC_PREFIX
		|| l->match == CONF_LOC_PREFIX_STOP)) {
		head = l->rewrite_prefix;
		hl = strlen(head);
		skip = l->pattern_len <= len ? l->pattern_len : len;
		/* "/events/" + "/x": one '/' at the seam. */
		if (hl > 0 && head[hl - 1] == '/' && skip < len && path[skip] == '/')
			skip++;
	}
	size_t total = hl + (len - skip);
	if (total + 1 > cap)
		return -1;
	memcpy(out, head, hl);
	memcpy(out + hl, path + skip, len - skip);
	out[total] = '\0';
	return (int)total;
}

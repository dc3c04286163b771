/*
 * http_location_answer.c - what a location answers itself (see
 * include/http_location.h): the cookie guard, fixed answers, redirects and
 * logouts, and the header lines it adds. Pure: strings from the snapshot
 * and the request, written into the caller's buffer.
 */
#include <stdio.h>
#include <string.h>

#include "http.h"
#include "http_location.h"

/* Append a formatted piece; false (and nothing more) once cap is reached. */
static bool la__put(char *hdr, size_t cap, size_t *len, const char *a, const char *b,
		    const char *c)
{
	int n = snprintf(hdr + *len, cap - *len, "%s%s%s", a, b, c);

	if (n < 0 || (size_t)n >= cap - *len)
		return false;
	*len += (size_t)n;
	return true;
}

int http_location_add_headers(const struct conf_location *l, char *hdr, size_t cap)
{
	size_t len = 0;

	if (cap == 0)
		return -1;
	hdr[0] = '\0';
	for (int i = 0; i < l->nheaders; i++) {
		if (!la__put(hdr, cap, &len, l->headers[i].name, ": ", l->headers[i].value)
		    || !la__put(hdr, cap, &len, "\r\n", "", ""))
			return -1;
	}
	return (int)len;
}

/* The guard: a non-empty cookie of that name. */
static bool la__has_cookie(const char *cookie, size_t cookie_len, const char *name)
{
	size_t vl = 0;

	return cookie != NULL && http_cookie_find(cookie, cookie_len, name, &vl) != NULL && vl > 0;
}

bool http_location_local(const struct conf_location *l, const char *cookie, size_t cookie_len,
			 char *hdr, size_t cap, struct http_location_answer *out)
{
	size_t len = 0;

	memset(out, 0, sizeof(*out));
	if (cap > 0)
		hdr[0] = '\0';
	if (l->require_cookie != NULL && !la__has_cookie(cookie, cookie_len, l->require_cookie)) {
		out->status = 307;
		out->location = l->login_redirect;
	} else if (l->action == CONF_LOC_RETURN) {
		out->status = l->status;
		out->content_type = l->content_type;
		out->body = l->body;
		out->body_len = strlen(l->body);
	} else if (l->action == CONF_LOC_REDIRECT || l->action == CONF_LOC_LOGOUT) {
		out->status = l->status;
		out->location = l->target;
		for (int i = 0; l->action == CONF_LOC_LOGOUT && i < l->ncookies; i++) {
			if (!la__put(hdr, cap, &len, "Set-Cookie: ", l->cookies[i],
				     "=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0;"
				     " HttpOnly; Secure; SameSite=Strict\r\n"))
				goto full;
		}
	} else {
		return false;
	}
	out->own_len = len;
	int n = http_location_add_headers(l, hdr + len, cap - len);
	if (n < 0)
		goto full;
	out->headers_len = len + (size_t)n;
	return true;
full:
	/* Cannot happen with HTTP_LOCATION_HEADERS_MAX; never a cut header. */
	out->status = 500;
	out->location = NULL;
	out->content_type = NULL;
	out->body = NULL;
	out->body_len = 0;
	out->headers_len = 0;
	out->own_len = 0;
	if (cap > 0)
		hdr[0] = '\0';
	return true;
}

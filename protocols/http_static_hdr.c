/*
 * http_static_hdr.c - the pure header work of static files (see
 * http_static_int.h): no I/O, so unit tests and fuzzers call it directly.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gh.h"
#include "http_static_int.h"

static const struct {
	const char *ext;
	const char *type;
} http_static__types[] = {
	{ "html", "text/html" }, { "htm", "text/html" }, { "css", "text/css" },
	{ "js", "application/javascript" }, { "mjs", "application/javascript" },
	{ "json", "application/json" }, { "map", "application/json" },
	{ "webmanifest", "application/manifest+json" }, { "txt", "text/plain" },
	{ "md", "text/markdown" }, { "csv", "text/csv" }, { "xml", "text/xml" },
	{ "svg", "image/svg+xml" }, { "png", "image/png" }, { "jpg", "image/jpeg" },
	{ "jpeg", "image/jpeg" }, { "gif", "image/gif" }, { "webp", "image/webp" },
	{ "avif", "image/avif" }, { "ico", "image/x-icon" }, { "bmp", "image/bmp" },
	{ "woff", "font/woff" }, { "woff2", "font/woff2" }, { "ttf", "font/ttf" },
	{ "otf", "font/otf" }, { "eot", "application/vnd.ms-fontobject" },
	{ "pdf", "application/pdf" }, { "zip", "application/zip" },
	{ "wasm", "application/wasm" }, { "mp4", "video/mp4" }, { "webm", "video/webm" },
	{ "mp3", "audio/mpeg" }, { "ogg", "audio/ogg" }, { "wav", "audio/wav" },
	{ "pem", "application/x-pem-file" }, { "crt", "application/x-x509-ca-cert" },
};

const char *http_static__mime(const char *path)
{
	const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');

	if (dot != NULL && (slash == NULL || dot > slash)) {
		for (size_t i = 0; i < ARRAY_SIZE(http_static__types); i++)
			if (strcasecmp(dot + 1, http_static__types[i].ext) == 0)
				return http_static__types[i].type;
	}
	return "application/octet-stream";
}

void http_static__etag(char *out, size_t cap, time_t mtime, uint64_t size)
{
	snprintf(out, cap, "\"%llx-%llx\"", (unsigned long long)mtime, (unsigned long long)size);
}

static const char *const http_static__days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char *const http_static__months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
						    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

/* Names written by hand: strftime's %a/%b follow the locale. */
void http_static__date(char *out, size_t cap, time_t t)
{
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL) {
		snprintf(out, cap, "Thu, 01 Jan 1970 00:00:00 GMT");
		return;
	}
	snprintf(out, cap, "%s, %02d %s %04d %02d:%02d:%02d GMT", http_static__days[tm.tm_wday],
		 tm.tm_mday, http_static__months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
		 tm.tm_sec);
}

static int http_static__digits(const char *p, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	return v;
}

bool http_static__parse_date(const char *p, size_t n, time_t *out)
{
	/* "Sun, 06 Nov 1994 08:49:37 GMT" */
	if (n != 29 || p[3] != ',' || p[4] != ' ' || p[7] != ' ' || p[11] != ' ' || p[16] != ' '
	    || p[19] != ':' || p[22] != ':' || memcmp(p + 25, " GMT", 4) != 0)
		return false;
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	tm.tm_mon = -1;
	for (int i = 0; i < 12; i++)
		if (memcmp(p + 8, http_static__months[i], 3) == 0)
			tm.tm_mon = i;
	tm.tm_mday = http_static__digits(p + 5, 2);
	int year = http_static__digits(p + 12, 4);
	tm.tm_hour = http_static__digits(p + 17, 2);
	tm.tm_min = http_static__digits(p + 20, 2);
	tm.tm_sec = http_static__digits(p + 23, 2);
	if (tm.tm_mon < 0 || tm.tm_mday < 1 || tm.tm_mday > 31 || year < 1970 || tm.tm_hour < 0
	    || tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 || tm.tm_sec > 60)
		return false;
	tm.tm_year = year - 1900;
	*out = timegm(&tm);
	return *out != (time_t)-1;
}

static bool http_static__ows(char c)
{
	return c == ' ' || c == '\t';
}

bool http_static__etag_match(struct http_static_hval v, const char *etag)
{
	size_t el = strlen(etag), i = 0;

	while (v.p != NULL && i < v.n) {
		while (i < v.n && (http_static__ows(v.p[i]) || v.p[i] == ','))
			i++;
		size_t start = i;
		while (i < v.n && v.p[i] != ',')
			i++;
		size_t end = i;
		while (end > start && http_static__ows(v.p[end - 1]))
			end--;
		const char *t = v.p + start;
		size_t tl = end - start;
		if (tl == 1 && t[0] == '*')
			return true;
		if (tl > 2 && t[0] == 'W' && t[1] == '/') { /* weak comparison */
			t += 2;
			tl -= 2;
		}
		if (tl == el && memcmp(t, etag, el) == 0)
			return true;
	}
	return false;
}

/* A decimal uint64 of p[0..n), n >= 1; false on overflow or a non-digit. */
static bool http_static__u64(const char *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 19)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	*out = v;
	return true;
}

int http_static__range(struct http_static_hval v, uint64_t size, uint64_t *start, uint64_t *len)
{
	if (v.p == NULL || v.n < 7 || strncasecmp(v.p, "bytes=", 6) != 0)
		return 0;
	const char *p = v.p + 6;
	size_t n = v.n - 6;
	while (n > 0 && http_static__ows(p[n - 1]))
		n--;
	while (n > 0 && http_static__ows(*p)) {
		p++;
		n--;
	}
	const char *dash = memchr(p, '-', n);
	if (dash == NULL || memchr(p, ',', n) != NULL)
		return 0; /* bad, or several ranges: the whole file */
	size_t a = (size_t)(dash - p), b = n - a - 1;
	uint64_t first, last;
	if (a == 0) { /* "-N": the last N bytes */
		if (!http_static__u64(dash + 1, b, &last))
			return 0;
		if (last == 0 || size == 0)
			return -1;
		*len = last < size ? last : size;
		*start = size - *len;
		return 1;
	}
	if (!http_static__u64(p, a, &first))
		return 0;
	if (b == 0)
		last = UINT64_MAX;
	else if (!http_static__u64(dash + 1, b, &last) || last < first)
		return 0;
	if (first >= size)
		return -1;
	if (last >= size)
		last = size - 1;
	*start = first;
	*len = last - first + 1;
	return 1;
}

/* The q of one Accept-Encoding member's parameters ("; q=0.5"): 0..1000. */
static int http_static__q(const char *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++) {
		if ((p[i] == 'q' || p[i] == 'Q') && p[i + 1] == '=') {
			const char *v = p + i + 2;
			size_t vl = n - i - 2;
			if (vl == 0 || (v[0] != '0' && v[0] != '1'))
				return 0;
			int q = (v[0] - '0') * 1000, scale = 100;
			for (size_t k = 2; k < vl && k < 5 && v[1] == '.'; k++, scale /= 10)
				if (v[k] >= '0' && v[k] <= '9')
					q += (v[k] - '0') * scale;
			return q > 1000 ? 1000 : q;
		}
	}
	return 1000;
}

unsigned http_static__encodings(struct http_static_hval v)
{
	int br = -1, gz = -1, star = -1;
	size_t i = 0;

	while (v.p != NULL && i < v.n) {
		while (i < v.n && (http_static__ows(v.p[i]) || v.p[i] == ','))
			i++;
		size_t start = i;
		while (i < v.n && v.p[i] != ',')
			i++;
		const char *m = v.p + start;
		size_t ml = i - start, nl = 0;
		while (nl < ml && m[nl] != ';' && !http_static__ows(m[nl]))
			nl++;
		int q = http_static__q(m + nl, ml - nl);
		if (nl == 2 && strncasecmp(m, "br", 2) == 0)
			br = q;
		else if (nl == 4 && strncasecmp(m, "gzip", 4) == 0)
			gz = q;
		else if (nl == 1 && m[0] == '*')
			star = q;
	}
	if (br < 0)
		br = star > 0 ? star : 0;
	if (gz < 0)
		gz = star > 0 ? star : 0;
	return (br > 0 ? HTTP_STATIC_ENC_BR : 0u) | (gz > 0 ? HTTP_STATIC_ENC_GZIP : 0u);
}

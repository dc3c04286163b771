/*
 * h2_out.c - what goes to the client: response heads (an HTTP/1.1
 * backend's headers made fit for HTTP/2), response bodies held per stream
 * within their bounds and framed as the client's windows open, resets,
 * and the bytes the caller writes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "h2_int.h"

/* Connection-specific headers (RFC 9113 8.2.2): never sent in HTTP/2. */
static bool h2__hop(const struct h2_field *f)
{
	static const char *const hop[] = {
		"connection", "keep-alive", "proxy-connection", "transfer-encoding",
		"upgrade", "te", NULL,
	};

	for (const char *const *p = hop; *p; p++)
		if (f->name_len == strlen(*p) && strncasecmp(f->name, *p, f->name_len) == 0)
			return true;
	return false;
}

/* Is f named by a Connection header among hdr (RFC 9110 7.6.1)? */
static bool h2__named_by_connection(const struct h2_field *hdr, size_t n,
				    const struct h2_field *f)
{
	for (size_t i = 0; i < n; i++) {
		const char *v = hdr[i].value, *end = v + hdr[i].value_len;

		if (hdr[i].name_len != 10 || strncasecmp(hdr[i].name, "connection", 10) != 0)
			continue;
		while (v < end) {
			const char *t;

			while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
				v++;
			t = v;
			while (v < end && *v != ',' && *v != ' ' && *v != '\t')
				v++;
			if ((size_t)(v - t) == f->name_len && strncasecmp(t, f->name, f->name_len) == 0)
				return true;
		}
	}
	return false;
}

ssize_t h2__read_data(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
		      uint32_t *flags, nghttp2_data_source *src, void *arg)
{
	struct h2_stream *s = src->ptr;
	size_t n = len < s->out.len ? len : s->out.len;

	if (n == 0 && !s->out_end) {
		s->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	if (n)
		memcpy(buf, s->out.p + s->out.off, n);
	h2__bytes_drop(&s->out, n);
	s->c->out_total -= n;
	if (s->out.len == 0 && s->out_end)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

/* Fields of an answer whose name/value array and lower-cased names fit
   on the stack. */
#define H2__NV_STACK 48

static int h2__submit(struct h2_stream *s, int status, const struct h2_field *hdr, size_t n,
		      bool end)
{
	nghttp2_data_provider prd = { .source.ptr = s, .read_callback = h2__read_data };
	/* On the stack for the usual answer (libnghttp2 copies the fields);
	   a bigger one gets its own blocks. */
	nghttp2_nv nv_stack[H2__NV_STACK];
	char low_stack[H2__NV_STACK * 32];
	nghttp2_nv *nv = nv_stack;
	size_t names = 0, k = 1;
	char st[4], *low = low_stack;
	int rv = -1;

	for (size_t i = 0; i < n; i++)
		names += hdr[i].name_len;
	if (n + 1 > H2__NV_STACK)
		nv = calloc(n + 1, sizeof(*nv));
	if (names + 1 > sizeof(low_stack))
		low = malloc(names + 1);
	if (!nv || !low)
		goto out;
	snprintf(st, sizeof(st), "%03d", status);
	nv[0] = (nghttp2_nv){ (uint8_t *)":status", (uint8_t *)st, 7, 3, NGHTTP2_NV_FLAG_NONE };
	names = 0;
	for (size_t i = 0; i < n; i++) {
		const struct h2_field *f = &hdr[i];
		char *name = low + names;

		if (f->name_len == 0 || h2__hop(f) || h2__named_by_connection(hdr, n, f))
			continue;
		/* HTTP/2 field names are lower case (RFC 9113 8.2.1). */
		for (size_t j = 0; j < f->name_len; j++)
			name[j] = (char)((f->name[j] >= 'A' && f->name[j] <= 'Z') ?
					 f->name[j] + 32 : f->name[j]);
		if (!nghttp2_check_header_name((uint8_t *)name, f->name_len) ||
		    !nghttp2_check_header_value((const uint8_t *)f->value, f->value_len))
			continue;
		names += f->name_len;
		nv[k++] = (nghttp2_nv){ (uint8_t *)name, (uint8_t *)f->value, f->name_len,
					f->value_len, NGHTTP2_NV_FLAG_NONE };
	}
	/* libnghttp2 copies the fields. An informational answer (100
	   Continue, 103 Early Hints) is a HEADERS frame before the final one. */
	if (status < 200) {
		rv = nghttp2_submit_headers(s->c->ng, NGHTTP2_FLAG_NONE, s->id, NULL, nv, k, NULL) < 0 ?
			     -1 : 0;
		goto out;
	}
	rv = nghttp2_submit_response(s->c->ng, s->id, nv, k, end ? NULL : &prd) == 0 ? 0 : -1;
	if (rv == 0) {
		s->answered = true;
		s->out_end = end;
	}
out:
	if (nv != nv_stack)
		free(nv);
	if (low != low_stack)
		free(low);
	return rv;
}

int h2_respond(struct h2_conn *c, int32_t id, int status, const struct h2_field *hdr, size_t n,
	       bool end)
{
	struct h2_stream *s = h2__stream(c, id);

	/* 101 Switching Protocols does not exist in HTTP/2 (RFC 9113 8.6). */
	if (!s || !s->delivered || s->answered || c->dead || status < 100 || status == 101 ||
	    status > 999)
		return -1;
	return h2__submit(s, status, hdr, n, end);
}

void h2__answer_local(struct h2_stream *s, int status)
{
	if (!s->answered)
		h2__submit(s, status, NULL, 0, true);
}

size_t h2_room(struct h2_conn *c, int32_t id)
{
	struct h2_stream *s = h2__stream(c, id);
	size_t a, b;

	if (!s || !s->answered || s->out_end || c->dead)
		return 0;
	a = c->lim.stream_out - s->out.len;
	b = c->lim.conn_out - c->out_total;
	return a < b ? a : b;
}

static void h2__resume(struct h2_stream *s)
{
	if (s->deferred) {
		s->deferred = false;
		nghttp2_session_resume_data(s->c->ng, s->id);
	}
}

size_t h2_send_data(struct h2_conn *c, int32_t id, const uint8_t *data, size_t n)
{
	size_t room = h2_room(c, id);
	struct h2_stream *s;

	if (n > room)
		n = room;
	if (n == 0)
		return 0;
	s = h2__stream(c, id);
	if (!h2__bytes_put(&s->out, data, n, c->lim.stream_out))
		return 0;
	c->out_total += n;
	h2__resume(s);
	return n;
}

void h2_send_end(struct h2_conn *c, int32_t id)
{
	struct h2_stream *s = h2__stream(c, id);

	if (!s || !s->answered || s->out_end)
		return;
	s->out_end = true;
	h2__resume(s);
}

void h2_reset(struct h2_conn *c, int32_t id, uint32_t code)
{
	struct h2_stream *s = h2__stream(c, id);

	if (!s || c->dead)
		return;
	s->reset_by_us = true;
	nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, id, code);
}

void h2__out_release(struct h2_stream *s)
{
	s->c->out_total -= s->out.len;
	h2__bytes_free(&s->out);
}

size_t h2_output(struct h2_conn *c, uint8_t *out, size_t cap)
{
	size_t n = 0;

	while (n < cap) {
		if (c->pend_len == 0) {
			ssize_t r;

			if (c->dead)
				break;
			h2__release_unconsumed(c);
			r = nghttp2_session_mem_send(c->ng, &c->pend);
			if (r < 0)
				c->dead = true;
			if (r <= 0)
				break;
			c->pend_len = (size_t)r;
			h2__framebuf_touched(c, c->pend + c->pend_len);
		}
		size_t k = cap - n < c->pend_len ? cap - n : c->pend_len;

		memcpy(out + n, c->pend, k);
		c->pend += k;
		c->pend_len -= k;
		n += k;
	}
	return n;
}

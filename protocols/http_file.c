/*
 * http_file.c - a request whose location serves files from a directory
 * (a `root` location): http_static_plan, then http_static_read one piece
 * (at most HTTP_STATIC_PIECE bytes) at a time, both on the worker's
 * thread pool (session_job: the loop never touches the disk). The next
 * piece is read once the client has taken the last one, so a response
 * holds one piece of memory and a client that stops reading holds one
 * piece until its deadline (x->read_timeout without progress) closes it.
 *
 * The plan runs when the exchange is the front (its turn to answer); its
 * state (struct http_file) belongs to the exchange, except while a job
 * runs: then the job has it, and an exchange that ends meanwhile leaves
 * it behind (orphaned) for the job's end to free.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "http_int.h"
#include "http_location.h"
#include "http_static.h"
#include "metrics.h"

struct http_file {
	struct http_exchange *x;   /* NULL: orphaned, freed when its job ends */
	bool running;              /* a job has it */
	bool planned;
	struct http_static_req rq;
	struct http_static_plan plan;
	ssize_t got;               /* the last read's result */
	uint8_t *piece;            /* HTTP_STATIC_PIECE bytes, once a body is read */
	char strs[];               /* the request's strings rq points to */
};

static void http__file_free(struct http_file *f)
{
	http_static_close(&f->plan);
	free(f->piece);
	free(f);
}

void http__file_drop(struct http_exchange *x)
{
	struct http_file *f = x->file;

	x->file = NULL;
	if (f == NULL)
		return;
	if (f->running)
		f->x = NULL; /* the job's end frees it */
	else
		http__file_free(f);
}

/* Copy a request header's value into *o (advanced); rq's view of it. */
static struct http_static_hval http__file_hval(const struct http_exchange *x, const char *name,
					       char **o)
{
	const struct http_header *h = http_header_find(http__src(x), &x->reqh, name);
	struct http_static_hval v = { NULL, 0 };

	if (h == NULL)
		return v;
	memcpy(*o, http__src(x) + h->value.off, h->value.len);
	v.p = *o;
	v.n = h->value.len;
	*o += h->value.len;
	*(*o)++ = '\0';
	return v;
}

static const char *http__file_str(char **o, const char *src, size_t n)
{
	char *p = *o;

	memcpy(p, src, n);
	p[n] = '\0';
	*o += n + 1;
	return p;
}

/* The file state for x's request, its strings copied out of s->in (the
   head is consumed before the plan runs). NULL: no memory, or the
   rewritten path does not fit. */
static struct http_file *http__file_new(struct http_exchange *x)
{
	static const char *const hdrs[] = { "If-None-Match", "If-Modified-Since", "If-Range",
					    "Range", "Accept-Encoding" };
	const struct conf_location *l = x->loc;
	size_t need = 3 * (x->npath_len + 1) + 2 * (l->rewrite_prefix ? strlen(l->rewrite_prefix) : 0)
		      + sizeof(x->method) + 8;
	for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
		const struct http_header *h = http_header_find(http__src(x), &x->reqh, hdrs[i]);
		need += h != NULL ? h->value.len + 1 : 0;
	}
	struct http_file *f = calloc(1, sizeof(*f) + need);
	if (f == NULL)
		return NULL;
	f->plan.fd = -1;
	char *o = f->strs;
	size_t pcap = x->npath_len + (l->rewrite_prefix ? strlen(l->rewrite_prefix) : 0) + 2;
	int n = http_location_rewrite(l, x->npath, x->npath_len, o, pcap);
	if (n < 0) {
		free(f);
		return NULL;
	}
	f->rq.path = o;
	o += n + 1;
	f->rq.client_path = http__file_str(&o, x->npath, x->npath_len);
	f->rq.method = http__file_str(&o, x->method, strlen(x->method));
	f->rq.root = l->root;
	f->rq.index = l->index;
	f->rq.fallback = l->fallback;
	f->rq.cache_control = l->cache_control;
	f->rq.if_none_match = http__file_hval(x, hdrs[0], &o);
	f->rq.if_modified_since = http__file_hval(x, hdrs[1], &o);
	f->rq.if_range = http__file_hval(x, hdrs[2], &o);
	f->rq.range = http__file_hval(x, hdrs[3], &o);
	f->rq.accept_encoding = http__file_hval(x, hdrs[4], &o);
	f->x = x;
	return f;
}

bool http__file_request(struct http_exchange *x)
{
	struct session *s = x->s;

	if (x->loc == NULL || x->loc->action != CONF_LOC_STATIC)
		return false;
	x->file = http__file_new(x);
	if (x->file == NULL) {
		http__answer(x, 500, NULL, NULL, "out of memory (static file)");
		return true;
	}
	x->phase = HTTP_X_FILE;
	x->is_head = x->reqh.method == HTTP_HEAD;
	x->req_done = http_parser_body_done(&x->req);
	/* A body we do not read: answer, then close (nothing after it is
	   parsed, so its bytes are never taken for a request). */
	if (!x->req_done || !x->reqh.keep_alive) {
		x->close_after = true;
		x->conn->phase = HTTP_CONN_DONE;
	}
	if (s->phase != SESSION_HTTP_FORWARD)
		session_set_phase(s, SESSION_HTTP_FORWARD);
	if (http__is_front(x))
		http__file_turn(x);
	return true;
}

/* ---- the jobs ---- */

static void http__file_plan_work(void *arg)
{
	struct http_file *f = arg;

	http_static_plan(&f->rq, &f->plan);
}

static void http__file_read_work(void *arg)
{
	struct http_file *f = arg;

	f->got = http_static_read(&f->plan, f->piece, HTTP_STATIC_PIECE);
}

static void http__file_planned(struct session *s, void *arg);
static void http__file_read_done(struct session *s, void *arg);

/* The jobs' ends, then an HTTP/2 connection's output (http2__after). */
static void http__file_planned_job(struct session *s, void *arg)
{
	http__file_planned(s, arg);
	http2__after(s);
}

static void http__file_read_job(struct session *s, void *arg)
{
	http__file_read_done(s, arg);
	http2__after(s);
}

static void http__file_queue(struct http_exchange *x, bool plan)
{
	struct http_file *f = x->file;

	f->running = true;
	if (session_job(x->s, plan ? http__file_plan_work : http__file_read_work,
			plan ? http__file_planned_job : http__file_read_job, f) < 0) {
		f->running = false;
		if (plan)
			http__answer(x, 500, NULL, NULL, "thread pool refused the file job");
		else
			http__abort(x, "thread pool refused the file job");
	}
}

void http__file_turn(struct http_exchange *x)
{
	if (x->file != NULL && !x->file->running && !x->file->planned)
		http__file_queue(x, true);
}

/* The job ended: the exchange that still owns f, or NULL (f was freed). */
static struct http_exchange *http__file_back(struct session *s, struct http_file *f)
{
	f->running = false;
	if (f->x == NULL || s->closed || f->x->phase != HTTP_X_FILE) {
		if (f->x != NULL)
			f->x->file = NULL;
		http__file_free(f);
		return NULL;
	}
	return f->x;
}

/* A status the plan carries no body for but its own header lines (405:
   Allow, 416: Content-Range): a short page, then close. */
static void http__file_error(struct http_exchange *x, const struct http_static_plan *p)
{
	char resp[HTTP_STATIC_HEADERS_MAX + 256];

	if (p->status == 403 || p->status == 404 || p->status == 500) {
		http__answer(x, p->status, NULL, NULL, p->why);
		return;
	}
	int n = snprintf(resp, sizeof(resp),
			 "HTTP/1.1 %d %s\r\nServer: gatehouse\r\n%.*sContent-Length: 0\r\n"
			 "Connection: close\r\n\r\n",
			 p->status, http_reason(p->status), (int)p->headers_len, p->headers);
	http__answer_raw(x, p->status, resp, n > 0 && (size_t)n < sizeof(resp) ? (size_t)n : 0,
			 p->why);
}

/* The whole response went out. */
static void http__file_end(struct http_exchange *x)
{
	http__file_drop(x);
	x->resp_done = true;
	http__exchange_done(x);
}

/* Read the next piece when the client has taken the last one. */
static void http__file_more(struct http_exchange *x)
{
	struct http_file *f = x->file;

	if (f->plan.sent >= f->plan.length) {
		http__file_end(x);
		return;
	}
	if (f->piece == NULL && (f->piece = malloc(HTTP_STATIC_PIECE)) == NULL) {
		http__abort(x, "out of memory (static file)");
		return;
	}
	http__file_queue(x, false);
}

static void http__file_planned(struct session *s, void *arg)
{
	struct http_exchange *x = http__file_back(s, arg);
	char head[HTTP_STATIC_HEADERS_MAX + HTTP_LOCATION_HEADERS_MAX / 2];

	if (x == NULL)
		return;
	struct http_static_plan *p = &x->file->plan;
	x->file->planned = true;
	if (p->status >= 400) {
		http__file_error(x, p);
		return;
	}
	int n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nServer: gatehouse\r\n%.*s",
			 p->status, http_reason(p->status), (int)p->headers_len, p->headers);
	int a = n > 0 && (size_t)n < sizeof(head)
			? http_location_add_headers(x->loc, head + n, sizeof(head) - (size_t)n) : -1;
	int c = a < 0 ? -1 : snprintf(head + n + a, sizeof(head) - (size_t)(n + a),
				      "Connection: %s\r\n\r\n",
				      x->close_after ? "close" : "keep-alive");
	if (c < 0 || (size_t)(n + a + c) >= sizeof(head)) {
		http__answer(x, 500, NULL, NULL, "static file head too large");
		return;
	}
	x->status = p->status;
	x->resp_head_done = true;
	x->bytes_sent += (uint64_t)(n + a + c);
	http__out(x, head, (size_t)(n + a + c));
	if (s->closed)
		return;
	if (x->is_head)
		p->length = 0;
	http__deadline(x, x->read_timeout);
	http__file_more(x);
}

static void http__file_read_done(struct session *s, void *arg)
{
	struct http_exchange *x = http__file_back(s, arg);

	if (x == NULL)
		return;
	struct http_file *f = x->file;
	if (f->got <= 0) {
		/* The file shrank or failed under us: the length was promised. */
		session_log(s, LOG_WARN, "reading %s: %s", x->path,
			    f->got == 0 ? "file shorter than planned" : strerror((int)-f->got));
		http__abort(x, "static file read failed");
		return;
	}
	x->bytes_sent += (uint64_t)f->got;
	metrics_relayed(false, (size_t)f->got);
	http__deadline(x, x->read_timeout);
	http__out(x, f->piece, (size_t)f->got);
	if (s->closed)
		return;
	/* Taken at once (nothing queued): no write callback will say so. */
	if (http__queued(x) == 0)
		http__file_more(x);
}

void http__file_written(struct http_exchange *x)
{
	struct http_file *f = x->file;

	if (f != NULL && f->planned && !f->running && http__queued(x) == 0)
		http__file_more(x);
}

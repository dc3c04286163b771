/*
 * http_file.c - a request whose location serves files from a directory
 * (a `root` location). The file is first asked of the worker's open-file
 * cache (http_fcache.h) on the loop; a hit is answered from there
 * (http_static_answer, no system call), sent from a posted client_written
 * (never inside the request's parse: rule 1). A miss, or an entry too old
 * to trust, is looked up on the thread pool (http_static_lookup through
 * session_job: opens and fstat never run on the loop) and put in the
 * cache. The body goes one piece (at most HTTP_STATIC_PIECE bytes) at a
 * time: read on the loop when the page cache holds it (preadv2
 * RWF_NOWAIT, which cannot block), else on the pool; the first piece
 * leaves with the head in one write. The next piece is read once the
 * client has taken the last one, so a response holds one piece of memory
 * and a client that stops reading holds one piece until its deadline
 * (x->read_timeout without progress) closes it.
 *
 * The plan runs when the exchange is the front (its turn to answer); its
 * state (struct http_file) belongs to the exchange, except while a job
 * runs: then the job has it, and an exchange that ends meanwhile leaves
 * it behind (orphaned) for the job's end to free.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <unistd.h>

#include "conf.h"
#include "http_fcache.h"
#include "http_int.h"
#include "http_location.h"
#include "http_static.h"
#include "metrics.h"
#include "worker.h"

/* Room kept in front of the body's piece for the response head, so the
   head and the first piece leave in one write. */
#define HTTP_FILE_HEAD_MAX (HTTP_STATIC_HEADERS_MAX + HTTP_ADD_HEADERS_MAX)

/* The loop's buffer for a head and a piece read on the loop: filled and
   written (http__out copies) in one call chain, so one per worker
   thread serves all its responses with no malloc. */
static _Thread_local uint8_t http__file_buf[HTTP_FILE_HEAD_MAX + HTTP_STATIC_PIECE];

struct http_file {
	struct http_exchange *x;   /* NULL: orphaned, freed when its job ends */
	bool running;              /* a job has it */
	bool planned;
	struct http_static_req rq;
	bool ready;                /* planned from the cache: the head is to be sent */
	struct http_static_plan plan;
	struct http_fcache_entry *entry;  /* the cached file the plan reads (a reference) */
	/* The lookup job's root: the cache's (root a reference) or, rootfd
	   -1, opened by the job (root_opened: handed to the cache after). */
	struct http_fcache_root *root;
	int rootfd;
	bool root_opened, found_ok;
	struct http_static_file found; /* the lookup's file, until the cache takes it */
	uint64_t mem_file;         /* the lookup reads files up to this size into memory */
	ssize_t got;               /* the last read's result */
	uint8_t *piece;            /* up to HTTP_STATIC_PIECE bytes, for reads on the pool */
	size_t piece_cap;
	size_t head_len;           /* head bytes in http__file_buf, sent with the first piece */
	char strs[];               /* the request's strings rq points to */
};

static void http__file_free(struct http_file *f)
{
	http_static_close(&f->plan);
	http_fcache_release(f->entry);
	http_fcache_root_release(f->root);
	if (f->root_opened)
		close(f->rootfd);
	http_static_file_close(&f->found, -1);
	free(f->piece);
	free(f);
}

/* The worker's open-file cache (made on first use), NULL when off. */
static struct http_fcache *http__file_cache(struct session *s)
{
	struct worker *w = s->w;
	const struct conf *c = w != NULL ? w->conf : NULL;

	if (w == NULL || c == NULL || c->http.open_file_cache_valid <= 0)
		return NULL;
	if (w->fcache == NULL)
		w->fcache = http_fcache_new((size_t)c->http.open_file_cache_max,
					    (uint64_t)(c->http.open_file_cache_valid * 1000.0),
					    c->http.open_file_cache_mem);
	return w->fcache;
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

/* The file state for x's request, its strings copied out of http__src(x) (the
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
	f->rootfd = -1;
	http_static_file_init(&f->found);
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

	if (f->rootfd < 0) {
		f->rootfd = http_static_root_open(f->rq.root);
		f->root_opened = f->rootfd >= 0;
	}
	f->found_ok = http_static_lookup(&f->rq, f->rootfd, &f->found, &f->plan);
	if (f->found_ok && f->mem_file > 0)
		http_static_file_load(&f->found, f->mem_file);
}

static void http__file_read_work(void *arg)
{
	struct http_file *f = arg;

	f->got = http_static_read(&f->plan, f->piece, f->piece_cap);
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

/* Its turn: from the cache (sent from a posted client_written), else
   looked up on the pool. */
void http__file_turn(struct http_exchange *x)
{
	struct http_file *f = x->file;

	if (f == NULL || f->running || f->planned)
		return;
	struct http_fcache *c = http__file_cache(x->s);
	uint64_t now = session_now(x->s);
	if ((f->entry = http_fcache_get(c, &f->rq, now)) != NULL) {
		http_static_answer(&f->rq, http_fcache_file(f->entry), &f->plan);
		f->planned = f->ready = true;
		session_post_written(x->s);
		return;
	}
	f->rootfd = http_fcache_root(c, f->rq.root, now, &f->root);
	/* Small files' bytes come along for the cache to keep (none without one). */
	const struct conf *cf = x->s->conf;
	f->mem_file = c != NULL && cf->http.open_file_cache_mem > 0 ? cf->http.open_file_cache_mem_file : 0;
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

static void http__file_send(struct http_exchange *x, const uint8_t *body);

/* Read the next piece when the client has taken the last one: on the loop
   when the page cache holds it, else on the pool. */
static void http__file_more(struct http_exchange *x)
{
	struct http_file *f = x->file;
	uint8_t *body = http__file_buf + HTTP_FILE_HEAD_MAX;

	if (f->plan.sent >= f->plan.length) { /* (a head is kept only with a body to follow) */
		http__file_end(x);
		return;
	}
	f->got = http_static_read_cached(&f->plan, body, HTTP_STATIC_PIECE);
	if (f->got != -EAGAIN && f->got != -EOPNOTSUPP) {
		http__file_send(x, body);
		return;
	}
	/* Not in the page cache: the head (if any) now, the piece from the pool. */
	if (f->head_len > 0) {
		f->got = 0;
		http__file_send(x, body);
		if (x->s->closed || x->file != f)
			return;
	}
	if (f->piece == NULL) {
		uint64_t left = f->plan.length - f->plan.sent;
		f->piece_cap = left < HTTP_STATIC_PIECE ? (size_t)left : HTTP_STATIC_PIECE;
		if ((f->piece = malloc(f->piece_cap)) == NULL) {
			http__abort(x, "out of memory (static file)");
			return;
		}
	}
	http__file_queue(x, false);
}

/* The plan is made: its head goes (in front of the body's first piece). */
static void http__file_start(struct http_exchange *x)
{
	struct session *s = x->s;
	struct http_file *f = x->file;
	char head[HTTP_FILE_HEAD_MAX];
	struct http_static_plan *p = &f->plan;

	if (p->status >= 400) {
		http__file_error(x, p);
		return;
	}
	/* Made with copies, not a format: this runs for every response. */
	size_t n = 0;
	const char *reason = http_reason(p->status);
	size_t rl = strlen(reason);
	bool fits = p->status >= 100 && p->status <= 999 && 9 + 4 + rl + 2 + p->headers_len < sizeof(head);
	if (fits) {
		memcpy(head, "HTTP/1.1 ", 9);
		head[9] = (char)('0' + p->status / 100);
		head[10] = (char)('0' + p->status / 10 % 10);
		head[11] = (char)('0' + p->status % 10);
		head[12] = ' ';
		memcpy(head + 13, reason, rl);
		memcpy(head + 13 + rl, "\r\n", 2);
		n = 15 + rl;
		static const char server[] = "Server: gatehouse\r\n";
		fits = n + sizeof(server) - 1 + p->headers_len < sizeof(head);
		if (fits) {
			memcpy(head + n, server, sizeof(server) - 1);
			n += sizeof(server) - 1;
			memcpy(head + n, p->headers, p->headers_len);
			n += p->headers_len;
		}
	}
	/* The operator's headers (http.add_headers, the vhost's, the
	   location's), as on every answer. */
	struct http_resp_edit e;
	http__resp_edit(x, &e);
	int a = fits ? http_add_header_lines(&e, head + n, sizeof(head) - n) : -1;
	const char *conn = x->close_after ? "Connection: close\r\n\r\n"
					  : "Connection: keep-alive\r\n\r\n";
	size_t cl = strlen(conn);
	if (a < 0 || n + (size_t)a + cl > sizeof(head)) {
		http__answer(x, 500, NULL, NULL, "static file head too large");
		return;
	}
	n += (size_t)a;
	memcpy(head + n, conn, cl);
	n += cl;
	x->status = p->status;
	x->resp_head_done = true;
	x->bytes_sent += (uint64_t)n;
	if (x->is_head)
		p->length = 0;
	http__deadline(x, x->read_timeout);
	if (p->length == 0) {
		http__out(x, head, n);
		if (!s->closed)
			http__file_end(x);
		return;
	}
	/* Just before the first piece, to leave with it (this call chain). */
	f->head_len = n;
	memcpy(http__file_buf + HTTP_FILE_HEAD_MAX - f->head_len, head, f->head_len);
	http__file_more(x);
}

static void http__file_planned(struct session *s, void *arg)
{
	struct http_file *f = arg;
	struct http_exchange *x = http__file_back(s, f);

	if (x == NULL)
		return;
	struct http_fcache *c = http__file_cache(s);
	uint64_t now = session_now(s);
	if (f->root_opened)
		http_fcache_root_put(c, f->rq.root, f->rootfd, now);
	f->root_opened = false;
	f->rootfd = -1;
	http_fcache_root_release(f->root);
	f->root = NULL;
	f->planned = true;
	if (f->found_ok) {
		f->entry = http_fcache_put(c, &f->rq, &f->found, now);
		http_static_answer(&f->rq, f->entry != NULL ? http_fcache_file(f->entry) : &f->found,
				   &f->plan);
	}
	http__file_start(x);
}

/* A piece was read into body (f->got; 0 with a head alone to send): out
   it goes, with the head kept just before it (body is then in
   http__file_buf). */
static void http__file_send(struct http_exchange *x, const uint8_t *body)
{
	struct session *s = x->s;
	struct http_file *f = x->file;

	if (f->got < 0 || (f->got == 0 && f->head_len == 0)) {
		/* The file shrank or failed under us: the length was promised. */
		session_log(s, LOG_WARN, "reading %s: %s", x->path,
			    f->got == 0 ? "file shorter than planned" : strerror((int)-f->got));
		http__abort(x, "static file read failed");
		return;
	}
	size_t n = f->head_len + (size_t)f->got;
	x->bytes_sent += (uint64_t)f->got;
	metrics_relayed(false, (size_t)f->got);
	http__deadline(x, x->read_timeout);
	f->head_len = 0;
	http__out(x, body - (n - (size_t)f->got), n);
	if (s->closed || f->got == 0)
		return;
	/* Taken at once (nothing queued): no write callback will say so. */
	if (http__queued(x) == 0)
		http__file_more(x);
}

static void http__file_read_done(struct session *s, void *arg)
{
	struct http_exchange *x = http__file_back(s, arg);

	if (x == NULL)
		return;
	if (x->file->got == 0)
		x->file->got = -EIO; /* 0 is "nothing more", a short file here */
	http__file_send(x, x->file->piece);
}

bool http__file_ready(const struct http_exchange *x)
{
	return x->file != NULL && x->file->ready;
}

void http__file_written(struct http_exchange *x)
{
	struct http_file *f = x->file;

	if (f == NULL || !f->planned || f->running || http__queued(x) != 0)
		return;
	if (f->ready) {
		f->ready = false;
		http__file_start(x);
		return;
	}
	http__file_more(x);
}

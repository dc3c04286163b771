/*
 * libFuzzer target for protocols/imap_parse.c.
 *
 * The first two input bytes choose the limits and seed the split points; the
 * rest is client bytes. They are fed the way the proxy feeds them (bytes of
 * the current command at the head of the buffer, consumed bytes dropped,
 * continuation requests acknowledged) twice: whole, and in pseudo-random
 * chunks. Both runs must produce the same events. Every call gets a private
 * buffer of exactly n bytes so that ASan catches a read past the end.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { EV_CMD, EV_CONT, EV_FATAL };

/* A compact record of one event; the arguments are folded into a hash. */
struct fz_ev {
	int type;
	size_t at;
	int rc;
	int error;
	int kind;
	int nargs;
	struct imap_span tag, name;
	uint64_t args_hash;
};

struct fz_run {
	struct fz_ev *ev;
	size_t nev, cap;
	size_t left;
};

static uint64_t fz_hash_args(const struct imap_cmd *c)
{
	uint64_t h = 1469598103934665603ull;

	for (int i = 0; i < c->nargs; i++) {
		uint32_t v[3] = { (uint32_t)c->args[i].type, c->args[i].s.off, c->args[i].s.len };

		for (int j = 0; j < 3; j++)
			h = (h ^ v[j]) * 1099511628211ull;
	}
	return h;
}

/* Properties that hold for every command returned, whatever the input. */
static void fz_check_cmd(const struct imap_limits *lim, const uint8_t *buf, size_t n, int rc,
			 const struct imap_cmd *c)
{
	int depth = 0;
	char *out;

	if (rc <= 0 || (size_t)rc > n || (size_t)rc > lim->max_line || buf[rc - 1] != '\n')
		abort();
	if (c->nargs < 0 || c->nargs > IMAP_MAX_ARGS)
		abort();
	if (c->tag.len > lim->max_tag || c->tag.off + c->tag.len > (uint32_t)rc)
		abort();
	if (c->error != IMAP_OK)
		return;
	if (c->tag.len == 0 || c->name.len == 0 || c->name.off + c->name.len > (uint32_t)rc)
		abort();
	if (memchr(buf, 0, (size_t)rc))
		abort(); /* a NUL must have made the line invalid */
	out = malloc((size_t)rc + 1);
	if (!out)
		abort();
	for (int i = 0; i < c->nargs; i++) {
		const struct imap_arg *a = &c->args[i];

		if ((uint64_t)a->s.off + a->s.len > (uint64_t)rc)
			abort();
		if (a->type == IMAP_ARG_LPAREN)
			depth++;
		if (a->type == IMAP_ARG_RPAREN && --depth < 0)
			abort();
		if (a->type == IMAP_ARG_LITERAL && a->s.len > lim->max_literal)
			abort();
		if (imap_arg_copy(buf, a, out, (size_t)rc + 1) < 0)
			abort();
	}
	free(out);
	if (depth != 0)
		abort();
}

static void fz_push(struct fz_run *r, int type, size_t at, int rc, const struct imap_cmd *c)
{
	struct fz_ev *e;

	if (r->nev == r->cap)
		abort(); /* more events than bytes + 2: the parser loops */
	e = &r->ev[r->nev++];
	memset(e, 0, sizeof(*e));
	e->type = type;
	e->at = at;
	e->rc = rc;
	if (c) {
		e->error = c->error;
		e->kind = c->kind;
		e->nargs = c->nargs;
		e->tag = c->tag;
		e->name = c->name;
		e->args_hash = fz_hash_args(c);
	}
}

/*
 * Feed in[0..len): all at once (step 0), one byte at a time (step 1), or in
 * chunks of 1..64 bytes whose sizes come from seed (any other step).
 */
static void fz_feed(const struct imap_limits *lim, const uint8_t *in, size_t len, int step,
		    uint32_t seed, struct fz_run *r)
{
	struct imap_parser p;
	size_t head = 0, avail = 0;

	r->nev = 0;
	imap_parser_init(&p, lim);
	do {
		if (step == 0) {
			avail = len;
		} else if (step == 1) {
			avail = avail < len ? avail + 1 : len;
		} else {
			seed ^= seed << 13;
			seed ^= seed >> 17;
			seed ^= seed << 5;
			avail += 1 + seed % 64;
			if (avail > len)
				avail = len;
		}
		for (;;) {
			size_t n = avail - head;
			uint8_t *buf = malloc(n ? n : 1);
			struct imap_cmd cmd;
			int rc;

			if (!buf)
				abort();
			memcpy(buf, in + head, n);
			rc = imap_parse(&p, buf, n, &cmd);
			if (rc > 0) {
				fz_check_cmd(lim, buf, n, rc, &cmd);
				fz_push(r, EV_CMD, head, rc, &cmd);
				head += (size_t)rc;
			} else if (rc < 0) {
				if (rc != IMAP_FATAL_LINE_TOO_LONG && rc != IMAP_FATAL_LITERAL_TOO_BIG &&
				    rc != IMAP_FATAL_SKIPPED_LITERAL)
					abort();
				fz_push(r, EV_FATAL, head, rc, NULL);
				free(buf);
				r->left = len - head;
				return;
			} else if (p.continuation) {
				if (p.pos > n)
					abort();
				fz_push(r, EV_CONT, head + p.pos, 0, NULL);
				p.continuation = false;
			} else {
				/* Needing more with max_line bytes in hand is a bug. */
				if (n >= lim->max_line)
					abort();
				free(buf);
				break;
			}
			free(buf);
		}
	} while (avail < len);
	r->left = len - head;
}

static void fz_same(const struct fz_run *a, const struct fz_run *b)
{
	if (a->nev != b->nev || a->left != b->left)
		abort();
	for (size_t i = 0; i < a->nev; i++)
		if (memcmp(&a->ev[i], &b->ev[i], sizeof(a->ev[i])) != 0)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t lines[4] = { 24, 64, 512, 8192 };
	static const size_t literals[4] = { 0, 5, 100, 4096 };
	static const size_t tags[2] = { 3, 64 };
	struct imap_limits lim;
	struct fz_run whole, split;
	uint32_t seed;
	const uint8_t *in;
	size_t len;

	if (size < 2)
		return 0;
	lim.max_line = lines[data[0] & 3];
	lim.max_literal = literals[(data[0] >> 2) & 3];
	lim.max_tag = tags[(data[0] >> 4) & 1];
	seed = 0x9e3779b9u ^ ((uint32_t)data[1] << 8) ^ data[0];
	in = data + 2;
	len = size - 2;

	/* Each event consumes bytes or follows a literal's LF: len + 2 bound them. */
	whole.cap = split.cap = len + 2;
	whole.ev = calloc(whole.cap, sizeof(*whole.ev));
	split.ev = calloc(split.cap, sizeof(*split.ev));
	if (!whole.ev || !split.ev)
		abort();

	fz_feed(&lim, in, len, 0, 0, &whole);
	fz_feed(&lim, in, len, 2, seed, &split);
	fz_same(&whole, &split);
	/* Small inputs also go one byte at a time: the harshest split. */
	if (len <= 512) {
		fz_feed(&lim, in, len, 1, 0, &split);
		fz_same(&whole, &split);
	}

	/* The SASL-line helper agrees with a plain search for LF. */
	{
		const uint8_t *lf = memchr(in, '\n', len < lim.max_line ? len : lim.max_line);
		int rc = imap_parse_line(in, len, lim.max_line);

		if (lf ? rc != (int)(lf - in) + 1
		       : rc != (len > lim.max_line ? IMAP_FATAL_LINE_TOO_LONG : 0))
			abort();
	}

	free(whole.ev);
	free(split.ev);
	return 0;
}

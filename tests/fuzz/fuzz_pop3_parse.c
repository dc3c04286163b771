/*
 * libFuzzer target for protocols/pop3_parse.c.
 *
 * The first two input bytes choose the limits and seed the split points; the
 * rest is client bytes. They are fed the way the front end feeds them (bytes
 * of the current line at the head of the buffer, consumed bytes dropped, a
 * SASL line expected after "AUTH mech" without an initial response) twice:
 * whole, and in pseudo-random chunks; small inputs also one byte at a time.
 * All runs must produce the same events. Every call gets a private buffer of
 * exactly n bytes so that ASan catches a read past the end.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pop3_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { EV_LINE, EV_FATAL };

struct fz_ev {
	int type;
	size_t at;
	int rc;
	struct pop3_cmd cmd;
};

struct fz_run {
	struct fz_ev *ev;
	size_t nev, cap;
	size_t left;
};

/* Properties that hold for every line returned, whatever the input. */
static void fz_check(const struct pop3_limits *lim, const struct pop3_parser *p, bool sasl,
		     const uint8_t *buf, size_t n, int rc, const struct pop3_cmd *c)
{
	/* An AUTH line (valid or not) and a SASL line may use the larger bound. */
	size_t bound = lim->max_command > lim->max_sasl ? lim->max_command : lim->max_sasl;

	if (!sasl && c->error == POP3_OK && c->kind != POP3_CMD_AUTH)
		bound = lim->max_command;
	if (rc <= 0 || (size_t)rc > n || buf[rc - 1] != '\n' || (size_t)rc > bound)
		abort();
	if (c->nargs < 0 || c->nargs > POP3_MAX_ARGS)
		abort();
	if (sasl != (c->kind == POP3_CMD_SASL))
		abort();
	if (p->sasl)
		abort(); /* every line ends SASL mode */
	if (c->error != POP3_OK) {
		if (c->nargs != 0 || (!sasl && c->kind != POP3_CMD_OTHER))
			abort();
		return;
	}
	if (memchr(buf, 0, (size_t)rc))
		abort(); /* a NUL must have made the line invalid */
	if (sasl ? c->nargs != 1 : c->name.len == 0 || c->name.len > POP3_MAX_KEYWORD)
		abort();
	for (int i = 0; i < c->nargs; i++) {
		const struct pop3_span *a = &c->args[i];

		if ((uint64_t)a->off + a->len >= (uint64_t)rc)
			abort();
		if (memchr(buf + a->off, '\n', a->len) || memchr(buf + a->off, '\r', a->len))
			abort();
		if (c->kind != POP3_CMD_USER && c->kind != POP3_CMD_PASS && !sasl &&
		    (a->len == 0 || memchr(buf + a->off, ' ', a->len)))
			abort(); /* words are non-empty and have no spaces */
	}
}

static void fz_push(struct fz_run *r, int type, size_t at, int rc, const struct pop3_cmd *c)
{
	struct fz_ev *e;

	if (r->nev == r->cap)
		abort(); /* more events than bytes: the parser loops */
	e = &r->ev[r->nev++];
	memset(e, 0, sizeof(*e));
	e->type = type;
	e->at = at;
	e->rc = rc;
	if (c)
		e->cmd = *c;
}

/* After this line, is the next one a SASL response? */
static bool fz_wants_sasl(const uint8_t *buf, const struct pop3_cmd *c)
{
	(void)buf;
	return c->error == POP3_OK && c->kind == POP3_CMD_AUTH && c->nargs == 1;
}

/*
 * Feed in[0..len): all at once (step 0), one byte at a time (step 1), or in
 * chunks of 1..64 bytes whose sizes come from seed (any other step).
 */
static void fz_feed(const struct pop3_limits *lim, const uint8_t *in, size_t len, int step,
		    uint32_t seed, struct fz_run *r)
{
	struct pop3_parser p;
	size_t head = 0, avail = 0;

	r->nev = 0;
	pop3_parser_init(&p, lim);
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
			struct pop3_cmd cmd;
			bool sasl = p.sasl;
			int rc;

			if (!buf)
				abort();
			memcpy(buf, in + head, n);
			rc = pop3_parse(&p, buf, n, &cmd);
			if (rc > 0) {
				fz_check(lim, &p, sasl, buf, n, rc, &cmd);
				fz_push(r, EV_LINE, head, rc, &cmd);
				if (fz_wants_sasl(buf, &cmd))
					pop3_parser_expect_sasl(&p);
				head += (size_t)rc;
			} else if (rc < 0) {
				if (rc != POP3_FATAL_LINE_TOO_LONG)
					abort();
				fz_push(r, EV_FATAL, head, rc, NULL);
				free(buf);
				r->left = len - head;
				return;
			} else {
				/* Needing more with the largest bound in hand is a bug. */
				if (n >= lim->max_sasl && n >= lim->max_command)
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
	static const size_t commands[4] = { 8, 24, POP3_MAX_COMMAND, 1024 };
	static const size_t sasls[4] = { 4, 64, 512, 8192 };
	struct pop3_limits lim;
	struct fz_run whole, split;
	uint32_t seed;
	const uint8_t *in;
	size_t len;

	if (size < 2)
		return 0;
	lim.max_command = commands[data[0] & 3];
	lim.max_sasl = sasls[(data[0] >> 2) & 3];
	seed = 0x9e3779b9u ^ ((uint32_t)data[1] << 8) ^ data[0];
	in = data + 2;
	len = size - 2;

	/* Each event consumes at least one byte, or is the last. */
	whole.cap = split.cap = len + 1;
	whole.ev = calloc(whole.cap, sizeof(*whole.ev));
	split.ev = calloc(split.cap, sizeof(*split.ev));
	if (!whole.ev || !split.ev)
		abort();

	fz_feed(&lim, in, len, 0, 0, &whole);
	fz_feed(&lim, in, len, 2, seed, &split);
	fz_same(&whole, &split);
	if (len <= 512) {
		fz_feed(&lim, in, len, 1, 0, &split);
		fz_same(&whole, &split);
	}
	free(whole.ev);
	free(split.ev);
	return 0;
}

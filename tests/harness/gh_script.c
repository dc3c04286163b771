/*
 * gh_script.c - a fuzz input read as a script of harness operations, so
 * libFuzzer explores orderings of client bytes, backend answers, write
 * completions, timer expiries and closes, and a finding replays as a unit
 * test through the same function.
 *
 * Format: one flags byte, then operations until the input ends (at most
 * GH_SCRIPT_MAX_OPS). Flags: mode = (flags & 3) % 3 (enum gh_mode); 0x04 = a
 * 4 KiB SO_SNDBUF on the session's end (its writes queue when the client
 * does not read); 0x08 = the backend rejects logins; 0x10 = the backend
 * stays silent unless the script speaks for it.
 *
 * An operation is one byte, op % GH_OP_COUNT (enum gh_op below); LEN is one
 * byte, or two when its top bit is set (15 bits, big-endian), clipped to
 * what the input has left.
 */
#include <string.h>

#include "gh_harness.h"

#define GH_SCRIPT_MAX_OPS 256
/* Bytes a script may make the client send in all (REPEAT multiplies). */
#define GH_SCRIPT_MAX_SEND (256 * 1024)

enum gh_op {
	GH_OP_SEND = 0,     /* LEN bytes: client sends them (TLS records when active) */
	GH_OP_RUN,          /* N: (N % 16) + 1 steps */
	GH_OP_BSEND,        /* LEN bytes: the newest backend connection sends them */
	GH_OP_BCLOSE,       /* the newest backend connection closes */
	GH_OP_READ_TOGGLE,  /* the client stops / resumes reading replies */
	GH_OP_TIMER,        /* the session's phase timer fires now (if armed) */
	GH_OP_SHUT_WR,      /* client half-close */
	GH_OP_CLOSE_NOTIFY, /* client TLS close_notify */
	GH_OP_BAD_RECORD,   /* client sends a record whose MAC fails */
	GH_OP_CLOSE,        /* client closes its socket */
	GH_OP_TLS_START,    /* client starts a handshake (after STARTTLS/STLS) */
	GH_OP_HOLD,         /* gather client writes until FLUSH: one write() */
	GH_OP_FLUSH,
	GH_OP_SETTLE,       /* step until quiet (at most 50 steps) */
	GH_OP_LOGIN_TOGGLE, /* the backend accepts / rejects logins */
	GH_OP_RAW,          /* LEN bytes sent around TLS */
	GH_OP_REPEAT,       /* COUNT, LEN prefix, LEN unit: client sends prefix then
			       unit COUNT times, in one go (TLS: records of up to
			       16 KiB); COUNT is coded like LEN but not clipped */
	GH_OP_COUNT
};

struct gh_in {
	const uint8_t *p;
	size_t n;
};

static int gh__byte(struct gh_in *in)
{
	if (in->n == 0)
		return -1;
	in->n--;
	return *in->p++;
}

/* One byte, or two when its top bit is set (15 bits, big-endian). */
static size_t gh__num(struct gh_in *in)
{
	int a = gh__byte(in);
	if (a < 0)
		return 0;
	if (!(a & 0x80))
		return (size_t)a;
	int b = gh__byte(in);
	return ((size_t)(a & 0x7f) << 8) | (size_t)(b < 0 ? 0 : b);
}

/* A length: a number clipped to what the input has left. */
static size_t gh__len(struct gh_in *in)
{
	size_t len = gh__num(in);
	return len < in->n ? len : in->n;
}

int gh_script_run(struct gh_env *e, enum gh_proto proto, const uint8_t *data, size_t size)
{
	struct gh_in in = { data, size };
	struct gh_conn c;
	int flags = gh__byte(&in);
	size_t sent = 0;
	static uint8_t rep[64 * 1024];

	if (flags < 0)
		return 0;
	if (gh_conn_open(&c, e, proto, (enum gh_mode)((flags & 0x03) % 3), flags & 0x04 ? 4096 : 0) < 0)
		return -1;
	c.backend_login_ok = !(flags & 0x08);
	c.backend_auto = !(flags & 0x10);
	for (int ops = 0; ops < GH_SCRIPT_MAX_OPS && in.n > 0; ops++) {
		int op = gh__byte(&in) % GH_OP_COUNT;
		size_t len;
		switch ((enum gh_op)op) {
		case GH_OP_SEND:
		case GH_OP_RAW:
			len = gh__len(&in);
			if (sent + len <= GH_SCRIPT_MAX_SEND) {
				if (op == GH_OP_SEND)
					gh_send(&c, in.p, len, 0);
				else
					gh_send_raw(&c, in.p, len);
				sent += len;
			}
			in.p += len;
			in.n -= len;
			break;
		case GH_OP_REPEAT: {
			size_t times = gh__num(&in), pl, ul;
			const uint8_t *pre, *unit;
			pl = gh__len(&in);
			pre = in.p;
			in.p += pl;
			in.n -= pl;
			ul = gh__len(&in);
			unit = in.p;
			in.p += ul;
			in.n -= ul;
			len = pl + ul * times;
			if (len > 0 && len <= sizeof(rep) && sent + len <= GH_SCRIPT_MAX_SEND) {
				memcpy(rep, pre, pl);
				for (size_t i = 0; i < times; i++)
					memcpy(rep + pl + i * ul, unit, ul);
				gh_send(&c, rep, len, 0);
				sent += len;
			}
			break;
		}
		case GH_OP_RUN: {
			int n = gh__byte(&in);
			for (int i = 0; i < (n < 0 ? 0 : n) % 16 + 1; i++)
				gh_step(&c);
			break;
		}
		case GH_OP_BSEND:
			len = gh__len(&in);
			gh_backend_send(&c, in.p, len);
			in.p += len;
			in.n -= len;
			break;
		case GH_OP_BCLOSE:
			gh_backend_close(&c);
			break;
		case GH_OP_READ_TOGGLE:
			c.reading = !c.reading;
			break;
		case GH_OP_TIMER:
			gh_fire_timer(&c);
			break;
		case GH_OP_SHUT_WR:
			gh_client_shutdown(&c);
			break;
		case GH_OP_CLOSE_NOTIFY:
			gh_send_close_notify(&c);
			break;
		case GH_OP_BAD_RECORD:
			gh_send_bad_record(&c);
			break;
		case GH_OP_CLOSE:
			gh_client_close(&c);
			break;
		case GH_OP_TLS_START:
			gh_tls_start(&c);
			break;
		case GH_OP_HOLD:
			c.hold = true;
			break;
		case GH_OP_FLUSH:
			gh_flush(&c);
			break;
		case GH_OP_SETTLE:
			gh_settle(&c, 50);
			break;
		case GH_OP_LOGIN_TOGGLE:
			c.backend_login_ok = !c.backend_login_ok;
			break;
		case GH_OP_COUNT:
			break;
		}
	}
	gh_flush(&c);
	gh_settle(&c, 100);
	return gh_conn_close(&c);
}

/*
 * h2_raw_t.h - the raw-frame side of the HTTP/2 engine tests
 * (test_h2_attack.c, test_h2_flood.c): one engine, the client bytes being
 * built, and short helpers over h2_t.h. Each including file has its own.
 */
#ifndef GATEHOUSE_H2_RAW_T_H
#define GATEHOUSE_H2_RAW_T_H

#include <criterion/criterion.h>

#include "h2_t.h"

static struct h2t t;
static struct h2t_buf in;

static inline void ha_fini(void)
{
	h2t_free(&t);
	h2t_buf_free(&in);
}

#define HA_REQ(path) ":method", "GET", ":scheme", "https", ":authority", "a.example", ":path", path

static inline void ha_start(const struct h2_limits *lim)
{
	h2t_init(&t, lim);
	h2t_preface(&in);
}

static inline void ha_go(void)
{
	h2t_feed(&t, in.p, in.len);
	in.len = 0;
}

static inline void ha_request(int32_t id, uint8_t flags)
{
	const char *nv[] = { HA_REQ("/"), NULL };

	h2t_headers_frame(&t, &in, id, flags, nv);
}

static inline void ha_goaway_is(uint32_t code, int32_t last)
{
	const struct h2t_frame *g = h2t_goaway(&t);

	cr_assert(g, "a GOAWAY was sent");
	cr_assert_eq(g->code, code, "GOAWAY code %u", g->code);
	cr_assert_eq(g->last_id, last, "GOAWAY last stream %d", g->last_id);
	cr_assert_eq(h2t_count(&t, NGHTTP2_GOAWAY), 1);
	cr_assert_not(h2_want_read(t.c), "nothing more is read");
	cr_assert_not(h2_want_write(t.c), "nothing more is written");
}

static inline void ha_flood(uint8_t type, uint8_t flags, int32_t id, const void *p,
			    size_t len, int count)
{
	for (int i = 0; i < count; i++)
		h2t_frame(&in, type, flags, id, p, len);
}

static inline void ha_small_control(struct h2_limits *lim)
{
	h2_limits_default(lim);
	lim->control = (struct h2_rate){ 50, 10 };
}

#endif

/*
 * gh.h - habits every file shares: ARRAY_SIZE, name tables checked at
 * compile time, and checks for what cannot happen.
 *
 * GH_BUG_ON(cond) states that cond never holds; GH_ASSERT(cond) that it
 * always does. A failed check is a bug in gatehouse, never a client's
 * doing (clients get normal error paths, CONVENTIONS 4), so:
 *   - under test (any sanitizer build, so the fuzz build too, or with
 *     GATEHOUSE_ABORT_ON_BUG set in the environment, as scripts/test.sh
 *     does) it logs "BUG at FILE:LINE: cond" and aborts, so a test or a
 *     fuzzer stops at the bug instead of closing one session quietly;
 *   - otherwise (what operators run, whatever the build type) it logs the
 *     same line at error level, counts it (gh_bugs()), and the program goes
 *     on: the caller's recovery path runs (typically closing the one
 *     session), as one broken invariant must not take down every other
 *     connection. The e2e fixtures fail a test whose log has a BUG line.
 * The condition is evaluated exactly once in both modes (no side effects
 * disappear in release), and GH_BUG_ON yields it, so the recovery path is
 * written once:
 *     if (GH_BUG_ON(s->in_pending != NULL)) { ... close; return; }
 * Both cost one predictable branch when the check holds.
 */
#ifndef GATEHOUSE_GH_H
#define GATEHOUSE_GH_H

#include <stdbool.h>
#include <stdint.h>

/* 0, or a compile error when e is true (usable inside expressions). */
#define GH__ZERO_UNLESS(e) ((size_t)sizeof(struct { int gh__bit : (e) ? -1 : 1; }) * 0)

/* Elements in an array; a compile error when given a pointer. */
#define ARRAY_SIZE(a) \
	(sizeof(a) / sizeof((a)[0]) + \
	 GH__ZERO_UNLESS(__builtin_types_compatible_p(__typeof__(a), __typeof__(&(a)[0]))))

/* The value of a hexadecimal digit, or -1 (escapes in URLs, lookup
   answers, tokens: one helper, not one per parser). */
static inline int gh_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A name table indexed by an enum holds exactly n names (e.g. XXX_N). */
#define GH_NAMES_CHECK(table, n) \
	_Static_assert(ARRAY_SIZE(table) == (n), #table " must hold one name per value")

#if defined(__SANITIZE_ADDRESS__)
#define GH_BUG_ABORTS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GH_BUG_ABORTS 1
#endif
#endif
#ifndef GH_BUG_ABORTS
#define GH_BUG_ABORTS 0
#endif

/*
 * Report a failed check (the macros below call it): log "BUG at file:line:
 * expr", count it, and abort when GH_BUG_ABORTS or GATEHOUSE_ABORT_ON_BUG
 * is set. Returns otherwise.
 */
void gh_bug(const char *file, int line, const char *expr);

/* Failed checks since start (outside tests the program goes on after one). */
uint64_t gh_bugs(void);

#define GH_BUG_ON(cond) \
	(__builtin_expect(!!(cond), 0) ? (gh_bug(__FILE__, __LINE__, #cond), true) : false)

#define GH_ASSERT(cond) \
	((void)(__builtin_expect(!!(cond), 1) ? 0 : (gh_bug(__FILE__, __LINE__, "!(" #cond ")"), 0)))

#endif

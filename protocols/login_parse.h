/*
 * login_parse.h - what the IMAP and POP3 command parsers share: finding a
 * command keyword. Pure (no I/O, no allocation), like the parsers.
 * Private to protocols/.
 */
#ifndef GATEHOUSE_LOGIN_PARSE_H
#define GATEHOUSE_LOGIN_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* A command keyword, in capitals, and the parser's kind for it. */
struct login_keyword {
	const char *name;
	uint32_t len;
	int kind;
};

/*
 * The kind of the keyword s[0..len) in tab[0..n), compared without regard
 * to ASCII case; other when it is none of them.
 */
static inline int login_keyword(const struct login_keyword *tab, size_t n, const uint8_t *s,
				uint32_t len, int other)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t j = 0;

		if (tab[i].len != len)
			continue;
		while (j < len && (s[j] >= 'a' && s[j] <= 'z' ? s[j] - 'a' + 'A' : s[j]) ==
					  (uint8_t)tab[i].name[j])
			j++;
		if (j == len)
			return tab[i].kind;
	}
	return other;
}

#endif

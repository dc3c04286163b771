/*
 * loc_t.h - a configuration snapshot made from text, for the tests of the
 * location matcher and static files: locations come from the real loader,
 * regexes compiled as in production.
 */
#ifndef GATEHOUSE_LOC_T_H
#define GATEHOUSE_LOC_T_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"

static inline struct conf *loc_t_conf(const char *text)
{
	char path[] = "/tmp/gh-loc-t-XXXXXX", err[512] = "";
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	FILE *f = fdopen(fd, "w");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(text, 1, strlen(text), f), strlen(text));
	cr_assert_eq(fclose(f), 0);
	struct conf *c = conf_load(path, err, sizeof(err));
	unlink(path);
	cr_assert_not_null(c, "config did not load: %s\n%s", err, text);
	return c;
}

#endif

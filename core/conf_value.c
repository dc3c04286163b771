/*
 * conf_value.c - reading typed settings: numbers with ranges, strings,
 * keywords, and whole groups through a table, every error as
 * "FILE:LINE: path: message".
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf_int.h"
#include "gh.h"

/* Write the setting path of s: "limits.max_line", "routes.[1].server". */
void conf__path(const config_setting_t *s, char *buf, size_t cap)
{
	const config_setting_t *chain[16];
	size_t depth = 0;

	for (; s != NULL && !config_setting_is_root(s); s = config_setting_parent(s)) {
		if (depth == ARRAY_SIZE(chain))
			break;
		chain[depth++] = s;
	}

	size_t n = 0;
	buf[0] = '\0';
	while (depth > 0 && n < cap) {
		const config_setting_t *e = chain[--depth];
		const char *name = config_setting_name(e);
		const char *dot = n > 0 ? "." : "";
		int w;

		if (name != NULL)
			w = snprintf(buf + n, cap - n, "%s%s", dot, name);
		else
			w = snprintf(buf + n, cap - n, "%s[%d]", dot, config_setting_index(e));
		if (w < 0)
			break;
		n += (size_t)w;
	}
}

/*
 * Report an error about setting s (or about its member `member`, for one
 * that is missing) as "FILE:LINE: path: message". Always returns -1.
 */
__attribute__((format(printf, 4, 5)))
int conf__fail(struct conf_ld *ld, const config_setting_t *s, const char *member,
	       const char *fmt, ...)
{
	char path[256] = "";
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	if (s != NULL)
		conf__path(s, path, sizeof(path));
	if (member != NULL) {
		size_t n = strlen(path);
		snprintf(path + n, sizeof(path) - n, "%s%s", n > 0 ? "." : "", member);
	}

	int line = s != NULL ? (int)config_setting_source_line(s) : 0;
	if (line > 0 && path[0] != '\0')
		snprintf(ld->err, ld->errlen, "%s:%d: %s: %s", ld->file, line, path, msg);
	else if (line > 0)
		snprintf(ld->err, ld->errlen, "%s:%d: %s", ld->file, line, msg);
	else if (path[0] != '\0')
		snprintf(ld->err, ld->errlen, "%s: %s: %s", ld->file, path, msg);
	else
		snprintf(ld->err, ld->errlen, "%s: %s", ld->file, msg);
	return -1;
}

int conf__oom(struct conf_ld *ld)
{
	snprintf(ld->err, ld->errlen, "%s: out of memory", ld->file);
	return -1;
}

/* v has no fraction. Without libm: the core library does not link it. */
bool conf__integral(double v)
{
	/* Beyond +-2^63 every double is integral; the cast would overflow. */
	if (!(v > -9.2e18 && v < 9.2e18))
		return v == v;
	return v == (double)(long long)v;
}

/* Format a bound for messages: integers without a fraction, others with %g. */
void conf__fmt_num(char *buf, size_t cap, double v)
{
	if (conf__integral(v) && v > -1e15 && v < 1e15)
		snprintf(buf, cap, "%.0f", v);
	else
		snprintf(buf, cap, "%g", v);
}

/*
 * Read a number. An integer setting may be written as a float when the value
 * is exact ("max_line = 8192.0"), and a float setting as an integer
 * ("preauth_timeout = 60"): people write both, and neither is ambiguous.
 */
int conf__number(struct conf_ld *ld, const config_setting_t *s, bool integer,
		 double lo, double hi, double *out)
{
	double v;

	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
		v = (double)config_setting_get_int(s);
		break;
	case CONFIG_TYPE_INT64:
		v = (double)config_setting_get_int64(s);
		break;
	case CONFIG_TYPE_FLOAT:
		v = config_setting_get_float(s);
		if (integer && !conf__integral(v))
			return conf__fail(ld, s, NULL, "must be an integer");
		break;
	default:
		return conf__fail(ld, s, NULL, integer ? "must be an integer" : "must be a number");
	}

	/* Written this way round so NaN fails too. */
	if (!(v >= lo && v <= hi)) {
		char a[32], b[32];
		conf__fmt_num(a, sizeof(a), lo);
		conf__fmt_num(b, sizeof(b), hi);
		return conf__fail(ld, s, NULL, "must be between %s and %s", a, b);
	}
	*out = v;
	return 0;
}

int conf__string(struct conf_ld *ld, const config_setting_t *s, const char **out)
{
	const char *v;

	if (config_setting_type(s) != CONFIG_TYPE_STRING || (v = config_setting_get_string(s)) == NULL)
		return conf__fail(ld, s, NULL, "must be a string");
	if (strlen(v) > CONF__MAX_STRING)
		return conf__fail(ld, s, NULL, "must be at most %d bytes", CONF__MAX_STRING);
	*out = v;
	return 0;
}

/* Pick one of names[] (exact, lower case); returns the index or -1. */
int conf__keyword(struct conf_ld *ld, const config_setting_t *s,
		  const char *const *names, int nnames)
{
	const char *v;
	char list[128] = "";

	if (conf__string(ld, s, &v) < 0)
		return -1;
	for (int i = 0; i < nnames; i++) {
		if (strcmp(v, names[i]) == 0)
			return i;
	}
	for (int i = 0; i < nnames; i++) {
		size_t n = strlen(list);
		snprintf(list + n, sizeof(list) - n, "%s%s", i > 0 ? ", " : "", names[i]);
	}
	conf__fail(ld, s, NULL, "must be one of %s", list);
	return -1;
}

/* A one-line text (a greeting): 1..max printable ASCII characters. */
int conf__set_text(struct conf_ld *ld, const config_setting_t *s, size_t max, char **dst)
{
	const char *v;

	if (conf__string(ld, s, &v) < 0)
		return -1;
	size_t len = strlen(v);
	if (len == 0 || len > max)
		return conf__fail(ld, s, NULL, "must be 1 to %zu characters", max);
	for (size_t i = 0; i < len; i++) {
		if (v[i] < 0x20 || v[i] > 0x7e)
			return conf__fail(ld, s, NULL, "must be printable ASCII");
	}
	return conf__set_str(ld, dst, v);
}

/* Replace *dst with a copy of v. */
int conf__set_str(struct conf_ld *ld, char **dst, const char *v)
{
	char *copy = strdup(v);

	if (copy == NULL)
		return conf__oom(ld);
	free(*dst);
	*dst = copy;
	return 0;
}

int conf__set_keyword(struct conf_ld *ld, const config_setting_t *s, const char *const *names,
		      int nnames, int *dst)
{
	int i = conf__keyword(ld, s, names, nnames);

	if (i < 0)
		return -1;
	*dst = i;
	return 0;
}

int conf__caps_set(const char *const *defaults, int n, char **caps, int *ncaps)
{
	for (int i = 0; i < n; i++) {
		if ((caps[*ncaps] = strdup(defaults[i])) == NULL)
			return -1;
		(*ncaps)++;
	}
	return 0;
}

int conf__caps(struct conf_ld *ld, const config_setting_t *s, const struct conf_caps_kind *k,
	       char **caps, int *ncaps)
{
	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return conf__fail(ld, s, NULL, "must be an array of strings [ ... ]");
	int count = config_setting_length(s);
	if (count > CONF_MAX_CAPS)
		return conf__fail(ld, s, NULL, "must have at most %d entries", CONF_MAX_CAPS);

	for (int i = 0; i < *ncaps; i++) {
		free(caps[i]);
		caps[i] = NULL;
	}
	*ncaps = 0;
	for (int i = 0; i < count; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v;

		if (conf__string(ld, e, &v) < 0)
			return -1;
		if (!k->valid(v))
			return conf__fail(ld, e, NULL, "%s", k->invalid);
		size_t w = k->word(v);
		if (k->reserved(v, w))
			return conf__fail(ld, e, NULL, "%.*s is added by gatehouse itself", (int)w, v);
		for (int j = 0; j < *ncaps; j++) {
			if (k->word(caps[j]) == w && strncasecmp(caps[j], v, w) == 0)
				return conf__fail(ld, e, NULL, "duplicate capability %.*s", (int)w, v);
		}
		if ((caps[*ncaps] = strdup(v)) == NULL)
			return conf__oom(ld);
		(*ncaps)++;
	}
	return 0;
}

/* Walk group g: every member must be in opts, and is stored or handled. */
int conf__group(struct conf_ld *ld, const config_setting_t *g,
		const struct conf_opt *opts, size_t nopts)
{
	if (!config_setting_is_group(g))
		return conf__fail(ld, g, NULL, "must be a group { ... }");

	int count = config_setting_length(g);
	for (int i = 0; i < count; i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);
		const struct conf_opt *o = NULL;

		for (size_t k = 0; k < nopts && name != NULL; k++) {
			if (strcmp(opts[k].name, name) == 0) {
				o = &opts[k];
				break;
			}
		}
		if (o == NULL)
			return conf__fail(ld, s, NULL, "unknown setting");

		char *field = (char *)ld->c + o->off;
		double v;
		switch (o->type) {
		case CONF__T_INT:
			if (conf__number(ld, s, true, o->lo, o->hi, &v) < 0)
				return -1;
			*(int *)(void *)field = (int)v;
			break;
		case CONF__T_SIZE:
			if (conf__number(ld, s, true, o->lo, o->hi, &v) < 0)
				return -1;
			*(size_t *)(void *)field = (size_t)v;
			break;
		case CONF__T_U16:
			if (conf__number(ld, s, true, o->lo, o->hi, &v) < 0)
				return -1;
			*(uint16_t *)(void *)field = (uint16_t)v;
			break;
		case CONF__T_SECS:
			if (conf__number(ld, s, false, o->lo, o->hi, &v) < 0)
				return -1;
			*(double *)(void *)field = v;
			break;
		case CONF__T_BOOL:
			if (config_setting_type(s) != CONFIG_TYPE_BOOL)
				return conf__fail(ld, s, NULL, "must be true or false");
			*(bool *)(void *)field = config_setting_get_bool(s) != 0;
			break;
		case CONF__T_FN:
			if (o->fn(ld, s) < 0)
				return -1;
			break;
		}
	}
	return 0;
}

bool conf_name_valid(const char *name, size_t len, size_t max)
{
	if (name == NULL || len == 0 || len > max)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)name[i];

		/* NUL is below 0x20 too; bytes >= 0x80 stay allowed for UTF-8 names. */
		if (ch <= 0x20 || ch == 0x7f)
			return false;
	}
	return true;
}

/*
 * core/conf_throttle.c - the `throttle` group: Zimbra's login throttling
 * (reference §2.7) plus a limit on failed logins per client address.
 *
 *   throttle = {
 *     ip_limit = 0; ip_limit_imap = 0; ip_limit_pop3 = 0; ip_window = 3600;
 *     user_limit = 0; user_window = 3600;
 *     failed_limit = 1000; failed_window = 3600;
 *     whitelist = [ "10.0.0.0/8" ];
 *     ip_message = "Login rejected from this IP";
 *     user_message = "Login rejected for this user";
 *   };
 *
 * Zimbra's limits are off (0) by default, as in Zimbra. failed_limit, which
 * Zimbra does not have, is on: 1000 failed logins per address per hour. It
 * caps one address's guessing (with limits.auth_failure_delay each
 * connection guesses slowly, but nothing else bounds how many connections
 * guess at once), and sits far above what a shared address (NAT, a
 * webmail server) fails by mistake: those can be whitelisted.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "conf_int.h"
#include "gh.h"

#define CONF__MAX_WHITELIST 1024
/* The message follows "* BYE " or "-ERR " on one line. */
#define CONF__MAX_THROTTLE_MESSAGE 200
/* memcached reads a relative expiry above 30 days as a Unix time. */
#define CONF__MAX_WINDOW 2592000

static int conf__whitelist(struct conf_ld *ld, const config_setting_t *s)
{
	return conf__cidr_list(ld, s, CONF__MAX_WHITELIST, &ld->c->throttle.whitelist,
			       &ld->c->throttle.nwhitelist);
}

static int conf__ip_message(struct conf_ld *ld, const config_setting_t *s)
{
	return conf__set_text(ld, s, CONF__MAX_THROTTLE_MESSAGE, &ld->c->throttle.ip_message);
}

static int conf__user_message(struct conf_ld *ld, const config_setting_t *s)
{
	return conf__set_text(ld, s, CONF__MAX_THROTTLE_MESSAGE, &ld->c->throttle.user_message);
}

#define CONF__THR(f) offsetof(struct conf, throttle.f)

static const struct conf_opt conf__throttle_opts[] = {
	{ "ip_limit", CONF__T_INT, CONF__THR(ip_limit), 0, 1000000000, NULL },
	{ "ip_limit_imap", CONF__T_INT, CONF__THR(ip_limit_imap), 0, 1000000000, NULL },
	{ "ip_limit_pop3", CONF__T_INT, CONF__THR(ip_limit_pop3), 0, 1000000000, NULL },
	{ "ip_window", CONF__T_INT, CONF__THR(ip_window), 1, CONF__MAX_WINDOW, NULL },
	{ "user_limit", CONF__T_INT, CONF__THR(user_limit), 0, 1000000000, NULL },
	{ "user_window", CONF__T_INT, CONF__THR(user_window), 1, CONF__MAX_WINDOW, NULL },
	{ "failed_limit", CONF__T_INT, CONF__THR(failed_limit), 0, 1000000000, NULL },
	{ "failed_window", CONF__T_INT, CONF__THR(failed_window), 1, CONF__MAX_WINDOW, NULL },
	{ "whitelist", CONF__T_FN, 0, 0, 0, conf__whitelist },
	{ "ip_message", CONF__T_FN, 0, 0, 0, conf__ip_message },
	{ "user_message", CONF__T_FN, 0, 0, 0, conf__user_message },
};

int conf__throttle(struct conf_ld *ld, const config_setting_t *s)
{
	return conf__group(ld, s, conf__throttle_opts,
			   ARRAY_SIZE(conf__throttle_opts));
}

int conf__throttle_defaults(struct conf_ld *ld)
{
	struct conf *c = ld->c;

	c->throttle.ip_window = 3600;
	c->throttle.user_window = 3600;
	c->throttle.failed_window = 3600;
	c->throttle.failed_limit = 1000;
	if ((c->throttle.ip_message = strdup("Login rejected from this IP")) == NULL ||
	    (c->throttle.user_message = strdup("Login rejected for this user")) == NULL)
		return conf__oom(ld);
	return 0;
}

void conf__throttle_free(struct conf *c)
{
	free(c->throttle.whitelist);
	free(c->throttle.ip_message);
	free(c->throttle.user_message);
	c->throttle.whitelist = NULL;
	c->throttle.ip_message = c->throttle.user_message = NULL;
}

/*
 * core/conf_status.c - the `status` group: where the metrics and health
 * listener binds. It is off unless an address is given.
 */
#include <stdlib.h>

#include "conf_int.h"
#include "gh.h"

static int conf__status_address(struct conf_ld *ld, const config_setting_t *s)
{
	struct conf *c = ld->c;
	const char *v;

	if (conf__string(ld, s, &v) < 0)
		return -1;
	if (conf_parse_addr(v, &c->status.addr, &c->status.addrlen) < 0)
		return conf__fail(ld, s, NULL, "must be ip:port (e.g. \"127.0.0.1:9113\")");
	return conf__set_str(ld, &c->status.address, v);
}

static int conf__status_purge_from(struct conf_ld *ld, const config_setting_t *s)
{
	return conf__cidr_list(ld, s, 64, &ld->c->status.purge_from, &ld->c->status.npurge_from);
}

static const struct conf_opt conf__status_opts[] = {
	{ "address", CONF__T_FN, 0, 0, 0, conf__status_address },
	{ "purge_from", CONF__T_FN, 0, 0, 0, conf__status_purge_from },
};

int conf__status(struct conf_ld *ld, const config_setting_t *s)
{
	return conf__group(ld, s, conf__status_opts,
			   ARRAY_SIZE(conf__status_opts));
}

void conf__status_free(struct conf *c)
{
	free(c->status.address);
	c->status.address = NULL;
	free(c->status.purge_from);
	c->status.purge_from = NULL;
	c->status.npurge_from = 0;
}

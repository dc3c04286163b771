/*
 * proxy/conf_pop3.c - the `pop3` group: what the POP3 front end says before
 * login, and how it logs in to the backend.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf_int.h"
#include "gh.h"


static const char *const conf__pop3_default_caps[] = {
	"TOP", "USER", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE",
};

static const char *const conf__pop3_client_ip_names[] = {
	[CONF_POP3_CLIENT_IP_XOIP] = "xoip",
	[CONF_POP3_CLIENT_IP_XCLIENT] = "xclient",
	[CONF_POP3_CLIENT_IP_NONE] = "none",
};

static const char *const conf__pop3_backend_auth_names[] = {
	[CONF_POP3_BACKEND_AUTH_USER] = "user",
	[CONF_POP3_BACKEND_AUTH_PLAIN] = "plain",
};

static const struct {
	const char *name;
	unsigned bit;
} conf__pop3_mechs[] = {
	{ "PLAIN", CONF_SASL_PLAIN },
	{ "LOGIN", CONF_SASL_LOGIN },
	{ "XOAUTH2", CONF_SASL_XOAUTH2 },
	{ "OAUTHBEARER", CONF_SASL_OAUTHBEARER },
};

static int conf__pop3_greeting(struct conf_ld *ld, const config_setting_t *s)
{
	return conf__set_text(ld, s, CONF__MAX_GREETING, &ld->c->pop3.greeting);
}

/* The length of the first word of a CAPA line (its capability name). */
static size_t conf__pop3_word(const char *v)
{
	return strcspn(v, " ");
}

/*
 * A CAPA line (RFC 2449 section 6): a name, optionally followed by
 * parameters ("EXPIRE 31"). Printable ASCII, single spaces, and never a
 * lone "." (which would end the list early).
 */
static bool conf__pop3_cap_ok(const char *v)
{
	size_t len = strlen(v);

	if (len == 0 || len > CONF__MAX_CAP_LEN || v[0] == ' ' || v[0] == '.' || v[len - 1] == ' ')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (v[i] < 0x20 || v[i] > 0x7e || (v[i] == ' ' && v[i + 1] == ' '))
			return false;
	}
	return true;
}

static void conf__pop3_free_caps(struct conf *c)
{
	for (int i = 0; i < c->pop3.ncaps; i++) {
		free(c->pop3.caps[i]);
		c->pop3.caps[i] = NULL;
	}
	c->pop3.ncaps = 0;
}

/* gatehouse decides these from its SASL mechanisms and the TLS state. */
static bool conf__pop3_reserved(const char *v, size_t w)
{
	return w == 4 && (strncasecmp(v, "SASL", 4) == 0 || strncasecmp(v, "STLS", 4) == 0);
}

static const struct conf_caps_kind conf__pop3_caps_kind = {
	.valid = conf__pop3_cap_ok,
	.invalid = "must be a CAPA line of 1 to " CONF__MAX_CAP_LEN_TEXT
		   " printable characters (NAME or NAME PARAMS)",
	.word = conf__pop3_word,
	.reserved = conf__pop3_reserved,
};

static int conf__pop3_caps(struct conf_ld *ld, const config_setting_t *s)
{
	return conf__caps(ld, s, &conf__pop3_caps_kind, ld->c->pop3.caps, &ld->c->pop3.ncaps);
}

static int conf__pop3_sasl(struct conf_ld *ld, const config_setting_t *s)
{
	struct conf *c = ld->c;
	const size_t nmechs = ARRAY_SIZE(conf__pop3_mechs);

	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return conf__fail(ld, s, NULL, "must be an array of strings [ ... ]");
	c->pop3.sasl = 0;
	int count = config_setting_length(s);
	for (int i = 0; i < count; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v;
		size_t k;

		if (conf__string(ld, e, &v) < 0)
			return -1;
		for (k = 0; k < nmechs; k++) {
			if (strcmp(v, conf__pop3_mechs[k].name) == 0)
				break;
		}
		if (k == nmechs)
			return conf__fail(ld, e, NULL, "must be one of PLAIN, LOGIN, XOAUTH2, OAUTHBEARER");
		if (c->pop3.sasl & conf__pop3_mechs[k].bit)
			return conf__fail(ld, e, NULL, "duplicate mechanism %s", v);
		c->pop3.sasl |= conf__pop3_mechs[k].bit;
	}
	return 0;
}

static int conf__pop3_client_ip(struct conf_ld *ld, const config_setting_t *s)
{
	return CONF__SET_KEYWORD(ld, s, conf__pop3_client_ip_names, &ld->c->pop3.client_ip_command);
}

static int conf__pop3_backend_auth(struct conf_ld *ld, const config_setting_t *s)
{
	return CONF__SET_KEYWORD(ld, s, conf__pop3_backend_auth_names, &ld->c->pop3.backend_auth);
}

static const struct conf_opt conf__pop3_opts[] = {
	{ "greeting", CONF__T_FN, 0, 0, 0, conf__pop3_greeting },
	{ "capabilities", CONF__T_FN, 0, 0, 0, conf__pop3_caps },
	{ "sasl_mechanisms", CONF__T_FN, 0, 0, 0, conf__pop3_sasl },
	{ "client_ip_command", CONF__T_FN, 0, 0, 0, conf__pop3_client_ip },
	{ "backend_auth", CONF__T_FN, 0, 0, 0, conf__pop3_backend_auth },
	{ "backend_pipelining", CONF__T_BOOL, offsetof(struct conf, pop3.backend_pipelining), 0, 0, NULL },
	{ "backend_port", CONF__T_U16, offsetof(struct conf, pop3.backend_port), 1, 65535, NULL },
};

int conf__pop3(struct conf_ld *ld, const config_setting_t *s)
{
	return conf__group(ld, s, conf__pop3_opts, ARRAY_SIZE(conf__pop3_opts));
}

int conf__pop3_defaults(struct conf_ld *ld)
{
	struct conf *c = ld->c;

	c->pop3.sasl = CONF_SASL_PLAIN | CONF_SASL_LOGIN;
	c->pop3.client_ip_command = CONF_POP3_CLIENT_IP_XOIP;
	c->pop3.backend_auth = CONF_POP3_BACKEND_AUTH_USER;
	/* Off: RFC 2449 lets a client pipeline only to a server that announces
	   PIPELINING, and gatehouse does not spend a CAPA round trip to ask. */
	c->pop3.backend_pipelining = false;
	c->pop3.backend_port = 7110;
	if ((c->pop3.greeting = strdup("POP3 ready")) == NULL ||
	    conf__caps_set(conf__pop3_default_caps, (int)ARRAY_SIZE(conf__pop3_default_caps),
			   c->pop3.caps, &c->pop3.ncaps) < 0)
		return conf__oom(ld);
	return 0;
}

void conf__pop3_free(struct conf *c)
{
	free(c->pop3.greeting);
	c->pop3.greeting = NULL;
	conf__pop3_free_caps(c);
}

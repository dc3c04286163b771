/*
 * purge.c - `gatehouse purge [-c FILE] [-n URL]... [-i IP]... USER...`:
 * delete users' routes and aliases in memcached (every key form, every
 * server: route_purge_memcached) and tell running gatehouses to drop them
 * from their L1 (POST /purge on their status listeners). Blocking; runs
 * instead of the proxy.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "conf.h"
#include "gh.h"
#include "purge.h"
#include "route.h"

#ifndef DEFAULT_CONF
#define DEFAULT_CONF "/etc/gatehouse/gatehouse.conf"
#endif

#define PURGE__MAX_IPS 256
#define PURGE__MAX_NOTIFY 64

struct purge__ips {
	char ip[PURGE__MAX_IPS][INET6_ADDRSTRLEN];
	const char *ptr[PURGE__MAX_IPS];
	int n;
};

static void purge__ip_add(struct purge__ips *ips, const char *ip)
{
	for (int i = 0; i < ips->n; i++)
		if (strcmp(ips->ip[i], ip) == 0)
			return;
	if (ips->n == PURGE__MAX_IPS)
		return;
	snprintf(ips->ip[ips->n], sizeof(ips->ip[0]), "%s", ip);
	ips->ptr[ips->n] = ips->ip[ips->n];
	ips->n++;
}

/* The address of sa as text, or false for a wildcard (or no address). */
static bool purge__sa_ip(const struct sockaddr *sa, char *out, size_t cap)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
		return s4->sin_addr.s_addr != htonl(INADDR_ANY) &&
		       inet_ntop(AF_INET, &s4->sin_addr, out, (socklen_t)cap) != NULL;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
		return !IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr) &&
		       inet_ntop(AF_INET6, &s6->sin6_addr, out, (socklen_t)cap) != NULL;
	}
	return false;
}

/* The proxy addresses a route or alias key may carry: every listener's,
   or every address of this host for a wildcard listener. */
static void purge__vips(const struct conf *c, struct purge__ips *ips)
{
	char ip[INET6_ADDRSTRLEN];
	bool wildcard = false;

	for (int i = 0; i < c->nlisten; i++) {
		if (purge__sa_ip((const struct sockaddr *)&c->listen[i].addr, ip, sizeof(ip)))
			purge__ip_add(ips, ip);
		else
			wildcard = true;
	}
	struct ifaddrs *ifa = NULL;
	if (wildcard && getifaddrs(&ifa) == 0) {
		for (struct ifaddrs *p = ifa; p != NULL; p = p->ifa_next)
			if (p->ifa_addr != NULL && purge__sa_ip(p->ifa_addr, ip, sizeof(ip)))
				purge__ip_add(ips, ip);
		freeifaddrs(ifa);
	}
}

static void purge__key_cb(void *arg, const char *server, const char *key, const char *wire,
			  enum route_purge_result r)
{
	const struct conf *c = arg;
	const char *what = r == ROUTE_PURGE_DELETED ? "deleted" :
			   r == ROUTE_PURGE_NOT_FOUND ? "not found" : "error";

	if (c->cache.hash_keys)
		printf("memcached %s: %s %s (%s)\n", server, what, key, wire);
	else
		printf("memcached %s: %s %s\n", server, what, key);
}

/* "http://HOST:PORT[/...]" (HOST may be [v6]) into host and port. */
static bool purge__parse_url(const char *url, char *host, size_t hcap, char *port, size_t pcap)
{
	if (strncmp(url, "http://", 7) != 0)
		return false;
	const char *h = url + 7, *end = h + strcspn(h, "/"), *colon;
	if (*h == '[') {
		const char *rb = memchr(h, ']', (size_t)(end - h));
		if (rb == NULL || rb[1] != ':')
			return false;
		colon = rb + 1;
		h++;
		if ((size_t)(rb - h) >= hcap)
			return false;
		memcpy(host, h, (size_t)(rb - h));
		host[rb - h] = '\0';
	} else {
		colon = memchr(h, ':', (size_t)(end - h));
		if (colon == NULL || (size_t)(colon - h) >= hcap || colon == h)
			return false;
		memcpy(host, h, (size_t)(colon - h));
		host[colon - h] = '\0';
	}
	size_t pl = (size_t)(end - colon - 1);
	if (pl == 0 || pl >= pcap || strspn(colon + 1, "0123456789") < pl)
		return false;
	memcpy(port, colon + 1, pl);
	port[pl] = '\0';
	return true;
}

/* Append s percent-encoded (all but unreserved characters and '@'). */
static size_t purge__escape(char *out, size_t o, size_t cap, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s && o + 4 < cap; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    strchr("-._~@", ch) != NULL) {
			out[o++] = (char)ch;
		} else {
			out[o++] = '%';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		}
	}
	out[o] = '\0';
	return o;
}

/* POST /purge to one status listener. true when it answered 200. */
static bool purge__notify(const char *url, char *const *users, int nusers)
{
	char host[256], port[8], req[8192], resp[8192];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	int fd = -1, e;

	if (!purge__parse_url(url, host, sizeof(host), port, sizeof(port))) {
		printf("notify %s: failed: not http://HOST:PORT\n", url);
		return false;
	}
	if ((e = getaddrinfo(host, port, &hints, &ai)) != 0) {
		printf("notify %s: failed: %s\n", url, gai_strerror(e));
		return false;
	}
	size_t o = (size_t)snprintf(req, sizeof(req), "POST /purge?");
	for (int i = 0; i < nusers; i++) {
		if (i > 0 && o + 1 < sizeof(req))
			req[o++] = '&';
		o += (size_t)snprintf(req + o, sizeof(req) - o, "user=");
		o = purge__escape(req, o, sizeof(req), users[i]);
	}
	int hn = snprintf(req + o, sizeof(req) - o,
			  " HTTP/1.1\r\nHost: %s:%s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
			  host, port);
	if (hn < 0 || (size_t)hn >= sizeof(req) - o) {
		freeaddrinfo(ai);
		printf("notify %s: failed: request too long\n", url);
		return false;
	}
	o += (size_t)hn;

	struct timeval tv = { .tv_sec = 5 };
	const char *err = NULL;
	for (struct addrinfo *p = ai; p != NULL; p = p->ai_next) {
		fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, p->ai_addr, p->ai_addrlen) == 0)
			break;
		err = strerror(errno);
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0) {
		printf("notify %s: failed: %s\n", url, err ? err : "cannot connect");
		return false;
	}
	size_t sent = 0, got = 0;
	ssize_t n;
	while (sent < o && (n = send(fd, req + sent, o - sent, MSG_NOSIGNAL)) > 0)
		sent += (size_t)n;
	while (sent == o && got < sizeof(resp) - 1 && (n = recv(fd, resp + got, sizeof(resp) - 1 - got, 0)) > 0)
		got += (size_t)n;
	close(fd);
	resp[got] = '\0';
	bool ok = got > 12 && strncmp(resp, "HTTP/1.1 200", 12) == 0;
	char *body = strstr(resp, "\r\n\r\n");
	body = body ? body + 4 : resp + got;
	for (char *line = body, *nl; *line; line = nl + 1) {
		nl = line + strcspn(line, "\n");
		bool last = *nl == '\0';
		*nl = '\0';
		if (*line)
			printf("notify %s: %s\n", url, line);
		if (last)
			break;
		if (nl[1] == '\0')
			break;
	}
	if (!ok)
		printf("notify %s: failed: %.*s\n", url, (int)strcspn(resp, "\r\n"),
		       got ? resp : "no answer");
	return ok;
}

static void purge__usage(FILE *f)
{
	fprintf(f, "usage: gatehouse purge [-c FILE] [-n URL]... [-N] [-i IP]... USER...\n"
		   "  -c FILE        configuration file (default " DEFAULT_CONF ")\n"
		   "  -n, --notify URL  a running gatehouse's status listener (http://HOST:PORT),\n"
		   "                 repeatable; default: the status listener of FILE\n"
		   "  -N, --no-notify   notify no gatehouse\n"
		   "  -i, --ip IP    also purge the keys of this proxy address (repeatable)\n");
}

int purge_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "notify", required_argument, NULL, 'n' },
		{ "no-notify", no_argument, NULL, 'N' },
		{ "ip", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = DEFAULT_CONF, *notify[PURGE__MAX_NOTIFY];
	int nnotify = 0, opt, rc = 0;
	bool no_notify = false;
	static struct purge__ips ips;
	char err[512];

	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:n:Ni:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'n':
			if (nnotify == PURGE__MAX_NOTIFY) {
				fprintf(stderr, "purge: at most %d --notify\n", PURGE__MAX_NOTIFY);
				return 2;
			}
			notify[nnotify++] = optarg;
			break;
		case 'N':
			no_notify = true;
			break;
		case 'i': {
			unsigned char buf[16];
			if (inet_pton(AF_INET, optarg, buf) != 1 && inet_pton(AF_INET6, optarg, buf) != 1) {
				fprintf(stderr, "purge: --ip %s: not an IP address\n", optarg);
				return 2;
			}
			purge__ip_add(&ips, optarg);
			break;
		}
		case 'h':
			purge__usage(stdout);
			return 0;
		default:
			purge__usage(stderr);
			return 2;
		}
	}
	if (optind == argc) {
		fprintf(stderr, "purge: no user given\n");
		purge__usage(stderr);
		return 2;
	}
	for (int i = optind; i < argc; i++)
		if (!conf_name_valid(argv[i], strlen(argv[i]), ROUTE_MAX_USER - 1)) {
			fprintf(stderr, "purge: invalid user name (empty, too long, spaces or "
					"control characters): nothing purged\n");
			return 2;
		}
	struct conf *c = conf_load(path, err, sizeof(err));
	if (c == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	purge__vips(c, &ips);

	if (c->cache.nservers == 0)
		printf("memcached: none configured\n");
	for (int i = optind; i < argc && c->cache.nservers > 0; i++) {
		int e = route_purge_memcached(c, argv[i], ips.ptr, ips.n, purge__key_cb, c);
		if (e != 0) {
			if (e < 0)
				printf("memcached: %s: failed (out of memory)\n", argv[i]);
			rc = 1;
		}
	}

	char dflt[300];
	if (nnotify == 0 && !no_notify && c->status.address != NULL) {
		char ip[INET6_ADDRSTRLEN];
		const struct sockaddr *sa = (const struct sockaddr *)&c->status.addr;
		unsigned port = ntohs(sa->sa_family == AF_INET6
					      ? ((const struct sockaddr_in6 *)(const void *)sa)->sin6_port
					      : ((const struct sockaddr_in *)(const void *)sa)->sin_port);
		if (!purge__sa_ip(sa, ip, sizeof(ip)))
			snprintf(ip, sizeof(ip), "%s", sa->sa_family == AF_INET6 ? "::1" : "127.0.0.1");
		snprintf(dflt, sizeof(dflt), strchr(ip, ':') ? "http://[%s]:%u" : "http://%s:%u", ip,
			 port);
		notify[nnotify++] = dflt;
	}
	if (nnotify == 0 && !no_notify)
		printf("notify: no status listener configured and no --notify: L1 entries expire "
		       "after cache.l1_ttl\n");
	for (int i = 0; i < nnotify && !no_notify; i++)
		if (!purge__notify(notify[i], argv + optind, argc - optind))
			rc = 1;
	conf_unref(c);
	return rc;
}

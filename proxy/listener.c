/*
 * listener.c — listening sockets: bind what the configuration names, log
 * the address actually bound (port 0 lets the kernel choose), and hand each
 * accepted connection to a new session.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/listener.h>
#include <event2/util.h>

#include "admission.h"
#include "listener.h"
#include "log.h"
#include "session.h"

#define MAX_LISTENERS (CONFIG_MAX_LISTEN * 4)	/* a name may have several addresses */

static struct evconnlistener *listeners[MAX_LISTENERS];
static struct listener_info infos[MAX_LISTENERS];
static size_t nlisteners;

static void
accepted(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int socklen, void *arg)
{
	(void)l;
	admission_accept(arg, fd, sa, socklen);
}

static bool
is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr)
		    >> 24) == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr);
	return false;
}

static void
accept_error(struct evconnlistener *l, void *arg)
{
	(void)l;
	(void)arg;
	/* EMFILE and the like: the listener goes on, the client retries */
	log_warn(0, "accept failed: %s",
	    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static void
describe(evutil_socket_t fd, char *out, size_t outlen)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[NI_MAXHOST], port[NI_MAXSERV];

	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
	    getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), port,
	    sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(out, outlen, "?");
		return;
	}
	if (ss.ss_family == AF_INET6)
		snprintf(out, outlen, "[%s]:%s", host, port);
	else
		snprintf(out, outlen, "%s:%s", host, port);
}

static int
open_one(struct proxy *proxy, const struct listen_conf *lc)
{
	struct addrinfo hints, *res, *ai;
	const char *host = strcmp(lc->host, "*") == 0 ? NULL : lc->host;
	int err, opened = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	if ((err = getaddrinfo(host, lc->port, &hints, &res)) != 0) {
		log_error(0, "listen %s:%s: %s", lc->host, lc->port, gai_strerror(err));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		struct evconnlistener *l;
		char where[NI_MAXHOST + NI_MAXSERV + 4];

		if (nlisteners == MAX_LISTENERS) {
			log_error(0, "listen %s:%s: too many addresses", lc->host, lc->port);
			freeaddrinfo(res);
			return -1;
		}
		struct listener_info *li = &infos[nlisteners];
		const struct config *cfg = proxy->cfg;

		li->proxy = proxy;
		li->tls = lc->tls;
		li->proxy_protocol = lc->proxy_protocol;
		/* plaintext logins: refused before TLS where TLS is possible and
		 * the network is not this machine's own (require_tls = auto) */
		li->tls_required = cfg->require_tls == REQUIRE_TLS_YES ||
		    (cfg->require_tls == REQUIRE_TLS_AUTO && cfg->tls_cert[0] != '\0' &&
		    !is_loopback(ai->ai_addr));
		/* v6-only, so that "[::]:143" and "0.0.0.0:143" can both be listed */
		/* bound now (as root), accepting once start-up is over */
		l = evconnlistener_new_bind(proxy->base, accepted, li,
		    LEV_OPT_DISABLED |
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE |
		    (ai->ai_family == AF_INET6 ? LEV_OPT_BIND_IPV6ONLY : 0),
		    128, ai->ai_addr, (int)ai->ai_addrlen);
		if (l == NULL) {
			log_error(0, "listen %s:%s: %s", lc->host, lc->port,
			    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
			freeaddrinfo(res);
			return -1;
		}
		evconnlistener_set_error_cb(l, accept_error);
		listeners[nlisteners++] = l;
		describe(evconnlistener_get_fd(l), where, sizeof(where));
		snprintf(li->name, sizeof(li->name), "%.63s", where);
		log_info(0, "listening on %s%s%s%s", where, lc->tls ? " (TLS)" :
		    cfg->tls_cert[0] != '\0' ? " (STARTTLS)" : "",
		    li->tls_required && !lc->tls ? ", login only after STARTTLS" : "",
		    lc->proxy_protocol ? ", PROXY protocol header first" : "");
		if (!lc->tls && cfg->tls_cert[0] == '\0' && !is_loopback(ai->ai_addr))
			log_warn(0, "listening on %s without TLS: passwords cross the "
			    "network in clear (set tls_cert and tls_key)", where);
		opened++;
	}
	freeaddrinfo(res);
	return opened > 0 ? 0 : -1;
}

void
listener_accept_all(void)
{
	size_t i;

	for (i = 0; i < nlisteners; i++)
		evconnlistener_enable(listeners[i]);
}

int
listener_open_all(struct proxy *proxy)
{
	size_t i;

	for (i = 0; i < proxy->cfg->nlisten; i++)
		if (open_one(proxy, &proxy->cfg->listen[i]) != 0)
			return -1;
	return 0;
}

void
listener_close_all(void)
{
	size_t i;

	for (i = 0; i < nlisteners; i++)
		evconnlistener_free(listeners[i]);
	nlisteners = 0;
}

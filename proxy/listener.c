/*
 * listener.c — listening sockets: bind what the configuration names, log
 * the address actually bound (port 0 lets the kernel choose), and hand each
 * accepted connection to a new session.  A reload binds the new lines'
 * sockets before anything changes, then keeps, updates and closes the
 * others in one step: a line that stays keeps its socket, and so does one
 * whose host and port stay while its options change (what its sessions
 * are told follows the new configuration), so no connection is refused
 * meanwhile.  "HOST:0" lines (the kernel chooses the port) keep theirs
 * only when unchanged.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/listener.h>
#include <event2/util.h>

#include "admission.h"
#include "listener.h"
#include "log.h"
#include "session.h"

#define MAX_LISTENERS (CONFIG_MAX_LISTEN * 4)	/* a name may have several addresses */

/* One bound address of a listen line (a name may give several). */
struct bound {
	struct listen_conf conf;	/* its line in the configuration in force */
	unsigned line;			/* the addresses of one line share it */
	struct evconnlistener *ev;
	struct listener_info info;	/* what its sessions are told */
	bool loopback;			/* an address of this machine only */
	char where[NI_MAXHOST + NI_MAXSERV + 4];	/* as bound, for logs */
};

/* A reload: for each new listen line, the line whose sockets it keeps
 * (0: its own new ones); the new sockets, bound, not yet accepting. */
struct listener_plan {
	struct proxy *proxy;
	unsigned keep[CONFIG_MAX_LISTEN];
	struct bound *add[MAX_LISTENERS];
	size_t nadd;
};

static struct bound *bound[MAX_LISTENERS];
static size_t nbound;
static unsigned last_line;	/* numbers the lines bound, 1 and on */
static bool accepting;		/* start-up is over */

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

/* What sessions accepted on b are told, from its line and cfg. */
static void
set_info(struct bound *b, struct proxy *proxy, const struct config *cfg)
{
	struct listener_info *li = &b->info;

	li->proxy = proxy;
	li->tls = b->conf.tls;
	li->proxy_protocol = b->conf.proxy_protocol;
	snprintf(li->name, sizeof(li->name), "%.63s", b->where);
	/* plaintext logins: refused before TLS where TLS is possible and
	 * the network is not this machine's own (require_tls = auto) */
	li->tls_required = cfg->require_tls == REQUIRE_TLS_YES ||
	    (cfg->require_tls == REQUIRE_TLS_AUTO && cfg->tls_cert[0] != '\0' &&
	    !b->loopback);
}

static void
announce(const struct bound *b, const struct config *cfg)
{
	log_info(0, "listening on %s%s%s%s", b->where, b->conf.tls ? " (TLS)" :
	    cfg->tls_cert[0] != '\0' ? " (STARTTLS)" : "",
	    b->info.tls_required && !b->conf.tls ? ", login only after STARTTLS" : "",
	    b->conf.proxy_protocol ? ", PROXY protocol header first" : "");
	if (!b->conf.tls && cfg->tls_cert[0] == '\0' && !b->loopback)
		log_warn(0, "listening on %s without TLS: passwords cross the "
		    "network in clear (set tls_cert and tls_key)", b->where);
}

static void
unbind(struct bound *b)
{
	evconnlistener_free(b->ev);
	free(b);
}

/* Why lc's address could not be bound, in words an administrator can act
 * on: ports below 1024 after the switch to an unprivileged user. */
static void
bind_error(const struct listen_conf *lc, int e, bool reload, char *err,
    size_t errlen)
{
	long port = strtol(lc->port, NULL, 10);

	if (e == EACCES && port > 0 && port < 1024)
		snprintf(err, errlen, "listen %s:%s: %s: a port below 1024 needs root "
		    "or CAP_NET_BIND_SERVICE, %s", lc->host, lc->port, strerror(e),
		    reload ? "which mappend gave up when it switched to its user "
		    "after start: restart mappend to listen there" :
		    "which mappend does not have");
	else
		snprintf(err, errlen, "listen %s:%s: %s", lc->host, lc->port,
		    evutil_socket_error_to_string(e));
}

/*
 * Bind every address of lc, disabled (accepting starts after start-up or
 * with the reload's commit), appending to out (*n entries, at most max).
 * 0, or the reason in err and the bind's errno value (-1: not a bind's
 * error); what was bound stays in out for the caller.
 */
static int
bind_line(const struct listen_conf *lc, struct proxy *proxy, bool reload,
    struct bound **out, size_t *n, size_t max, char *err, size_t errlen)
{
	struct addrinfo hints, *res, *ai;
	const char *host = strcmp(lc->host, "*") == 0 ? NULL : lc->host;
	unsigned line = ++last_line;
	int e, opened = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	if ((e = getaddrinfo(host, lc->port, &hints, &res)) != 0) {
		snprintf(err, errlen, "listen %s:%s: %s", lc->host, lc->port,
		    gai_strerror(e));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		struct bound *b;

		if (*n == max || (b = calloc(1, sizeof *b)) == NULL) {
			snprintf(err, errlen, "listen %s:%s: %s", lc->host, lc->port,
			    *n == max ? "too many addresses" : "out of memory");
			freeaddrinfo(res);
			return -1;
		}
		b->conf = *lc;
		b->line = line;
		b->loopback = is_loopback(ai->ai_addr);
		/* v6-only, so that "[::]:143" and "0.0.0.0:143" can both be listed */
		b->ev = evconnlistener_new_bind(proxy->base, accepted, &b->info,
		    LEV_OPT_DISABLED |
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE |
		    (ai->ai_family == AF_INET6 ? LEV_OPT_BIND_IPV6ONLY : 0),
		    128, ai->ai_addr, (int)ai->ai_addrlen);
		if (b->ev == NULL) {
			e = EVUTIL_SOCKET_ERROR();
			bind_error(lc, e, reload, err, errlen);
			free(b);
			freeaddrinfo(res);
			return e != 0 ? e : -1;
		}
		evconnlistener_set_error_cb(b->ev, accept_error);
		describe(evconnlistener_get_fd(b->ev), b->where, sizeof(b->where));
		out[(*n)++] = b;
		opened++;
	}
	freeaddrinfo(res);
	if (opened == 0) {
		snprintf(err, errlen, "listen %s:%s: no address", lc->host, lc->port);
		return -1;
	}
	return 0;
}

int
listener_open_all(struct proxy *proxy)
{
	const struct config *cfg = proxy->cfg;
	char err[1024];
	size_t i;

	/* bound now (as root), accepting once start-up is over */
	for (i = 0; i < cfg->nlisten; i++) {
		if (bind_line(&cfg->listen[i], proxy, false, bound, &nbound,
		    MAX_LISTENERS, err, sizeof err) != 0) {
			log_error(0, "%s", err);
			return -1;
		}
	}
	for (i = 0; i < nbound; i++) {
		set_info(bound[i], proxy, cfg);
		announce(bound[i], cfg);
	}
	return 0;
}

void
listener_accept_all(void)
{
	size_t i;

	accepting = true;
	for (i = 0; i < nbound; i++)
		evconnlistener_enable(bound[i]->ev);
}

void
listener_close_all(void)
{
	size_t i;

	for (i = 0; i < nbound; i++)
		unbind(bound[i]);
	nbound = 0;
	accepting = false;
}

static bool
same_line(const struct listen_conf *a, const struct listen_conf *b)
{
	return strcasecmp(a->host, b->host) == 0 && strcmp(a->port, b->port) == 0 &&
	    a->tls == b->tls && a->proxy_protocol == b->proxy_protocol;
}

/* The same socket with other options: host and port as written, not 0
 * (each "HOST:0" line has a port of its own). */
static bool
same_socket(const struct listen_conf *a, const struct listen_conf *b)
{
	return strcasecmp(a->host, b->host) == 0 && strcmp(a->port, b->port) == 0 &&
	    strcmp(a->port, "0") != 0;
}

static bool
kept(const struct listener_plan *plan, unsigned line)
{
	size_t i;

	for (i = 0; i < CONFIG_MAX_LISTEN; i++)
		if (plan->keep[i] == line)
			return true;
	return false;
}

/* Which bound line, not kept yet, lc can keep (0: none). */
static unsigned
claim(const struct listener_plan *plan, const struct listen_conf *lc, bool exact)
{
	size_t i;

	for (i = 0; i < nbound; i++) {
		const struct bound *b = bound[i];

		if ((exact ? same_line(&b->conf, lc) : same_socket(&b->conf, lc)) &&
		    !kept(plan, b->line))
			return b->line;
	}
	return 0;
}

/* A port taken by a line the reload removes: it is still bound now. */
static void
hint_removed(const struct listener_plan *plan, const struct listen_conf *lc,
    char *err, size_t errlen)
{
	size_t i, len = strlen(err);

	for (i = 0; i < nbound; i++) {
		const struct listen_conf *old = &bound[i]->conf;

		if (strcmp(old->port, lc->port) == 0 && !kept(plan, bound[i]->line)) {
			snprintf(err + len, errlen - len, " (listen %s:%s, which this "
			    "reload removes, holds it until the reload is done: "
			    "remove it in one reload and add the new line in the next)",
			    old->host, old->port);
			return;
		}
	}
}

int
listener_prepare(struct proxy *proxy, const struct config *cfg,
    struct listener_plan **planp, char *err, size_t errlen)
{
	struct listener_plan *plan = calloc(1, sizeof *plan);
	size_t i, nkept = 0;
	int e;

	*planp = NULL;
	if (plan == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	plan->proxy = proxy;
	/* unchanged lines first, so that an option changed elsewhere cannot
	 * take a socket an unchanged line would keep */
	for (i = 0; i < cfg->nlisten; i++)
		plan->keep[i] = claim(plan, &cfg->listen[i], true);
	for (i = 0; i < cfg->nlisten; i++)
		if (plan->keep[i] == 0)
			plan->keep[i] = claim(plan, &cfg->listen[i], false);
	for (i = 0; i < nbound; i++)
		nkept += kept(plan, bound[i]->line);
	for (i = 0; i < cfg->nlisten; i++) {
		if (plan->keep[i] != 0)
			continue;
		if ((e = bind_line(&cfg->listen[i], proxy, true, plan->add, &plan->nadd,
		    MAX_LISTENERS - nkept, err, errlen)) != 0) {
			if (e == EADDRINUSE)
				hint_removed(plan, &cfg->listen[i], err, errlen);
			listener_abort(plan);
			return -1;
		}
	}
	*planp = plan;
	return 0;
}

void
listener_abort(struct listener_plan *plan)
{
	size_t i;

	if (plan == NULL)
		return;
	for (i = 0; i < plan->nadd; i++)
		unbind(plan->add[i]);
	free(plan);
}

/* "; " between the parts of a summary. */
static void
say(char *out, size_t outlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
say(char *out, size_t outlen, const char *fmt, ...)
{
	size_t len = strlen(out);
	va_list ap;

	if (len > 0 && len + 2 < outlen) {
		memcpy(out + len, "; ", 3);
		len += 2;
	}
	va_start(ap, fmt);
	vsnprintf(out + len, outlen - len, fmt, ap);
	va_end(ap);
}

void
listener_commit(struct listener_plan *plan, const struct config *cfg,
    char *summary, size_t summarylen)
{
	size_t i, n = 0;

	for (i = 0; i < nbound; i++) {
		struct bound *b = bound[i];
		const struct listen_conf *lc = NULL;

		for (size_t j = 0; j < cfg->nlisten && lc == NULL; j++)
			if (plan->keep[j] == b->line)
				lc = &cfg->listen[j];
		if (lc == NULL) {
			/* its sessions go on: they own their connections */
			log_info(0, "no longer listening on %s", b->where);
			say(summary, summarylen, "closed listener %s", b->where);
			unbind(b);
			continue;
		}
		if (lc->tls != b->conf.tls || lc->proxy_protocol != b->conf.proxy_protocol)
			say(summary, summarylen, "listener %s now %s", b->where,
			    lc->tls && lc->proxy_protocol ? "tls proxy_protocol" :
			    lc->tls ? "tls" : lc->proxy_protocol ? "proxy_protocol" :
			    "without options");
		b->conf = *lc;
		set_info(b, plan->proxy, cfg);
		bound[n++] = b;
	}
	for (i = 0; i < plan->nadd; i++) {
		struct bound *b = plan->add[i];

		set_info(b, plan->proxy, cfg);
		announce(b, cfg);
		say(summary, summarylen, "new listener %s", b->where);
		if (accepting)
			evconnlistener_enable(b->ev);
		bound[n++] = b;
	}
	nbound = n;
	free(plan);
}

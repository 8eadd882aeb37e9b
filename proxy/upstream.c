/*
 * upstream.c — connecting to the upstream server without blocking the loop:
 * asynchronous name lookup (evdns), connect, and a connect timeout.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "log.h"
#include "session.h"
#include "upstream.h"

struct upstream_connect {
	struct proxy *proxy;
	uint64_t session;
	struct bufferevent *bev;
	struct event *timer;
	upstream_connected_cb cb;
	void *arg;
};

void
upstream_tune_socket(int fd)
{
	int on = 1;

	/* IMAP is a conversation of short lines: do not let Nagle hold them */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	/* a peer that vanished without a reset is found eventually */
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
}

static void
finish(struct upstream_connect *uc, bool ok, const char *error)
{
	struct bufferevent *bev = uc->bev;
	upstream_connected_cb cb = uc->cb;
	void *arg = uc->arg;

	event_free(uc->timer);
	free(uc);
	if (!ok) {
		bufferevent_free(bev);
		bev = NULL;
	} else {
		bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	}
	cb(bev, error, arg);
}

static void
connect_event(struct bufferevent *bev, short what, void *arg)
{
	struct upstream_connect *uc = arg;
	struct config *cfg = uc->proxy->cfg;
	static char reason[512];
	int dnserr;

	if (what & BEV_EVENT_CONNECTED) {
		upstream_tune_socket(bufferevent_getfd(bev));
		log_debug(uc->session, "connected to upstream %s:%s",
		    cfg->upstream_host, cfg->upstream_port);
		finish(uc, true, NULL);
		return;
	}
	dnserr = bufferevent_socket_get_dns_error(bev);
	if (dnserr != 0)
		snprintf(reason, sizeof(reason), "cannot resolve %.255s: %.200s",
		    cfg->upstream_host, evutil_gai_strerror(dnserr));
	else
		snprintf(reason, sizeof(reason), "cannot connect to %.255s:%.15s: %.200s",
		    cfg->upstream_host, cfg->upstream_port,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	finish(uc, false, reason);
}

static void
connect_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_connect *uc = arg;
	static char reason[512];

	(void)fd;
	(void)what;
	snprintf(reason, sizeof(reason), "connect to %.255s:%.15s timed out after %us",
	    uc->proxy->cfg->upstream_host, uc->proxy->cfg->upstream_port,
	    uc->proxy->cfg->connect_timeout);
	finish(uc, false, reason);
}

struct upstream_connect *
upstream_connect(struct proxy *proxy, uint64_t session,
    upstream_connected_cb cb, void *arg)
{
	struct upstream_connect *uc;
	struct timeval tv = { (time_t)proxy->cfg->connect_timeout, 0 };
	int port = atoi(proxy->cfg->upstream_port);

	if ((uc = calloc(1, sizeof(*uc))) == NULL)
		return NULL;
	uc->proxy = proxy;
	uc->session = session;
	uc->cb = cb;
	uc->arg = arg;
	uc->bev = bufferevent_socket_new(proxy->base, -1,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	uc->timer = evtimer_new(proxy->base, connect_timeout, uc);
	if (uc->bev == NULL || uc->timer == NULL) {
		if (uc->bev != NULL)
			bufferevent_free(uc->bev);
		if (uc->timer != NULL)
			event_free(uc->timer);
		free(uc);
		return NULL;
	}
	bufferevent_setcb(uc->bev, NULL, NULL, connect_event, uc);
	evtimer_add(uc->timer, &tv);
	/* the callback may already have run (and freed uc) when this returns
	 * an error, so only its return value is looked at */
	if (bufferevent_socket_connect_hostname(uc->bev, proxy->dns, AF_UNSPEC,
	    proxy->cfg->upstream_host, port) != 0) {
		/* deferred callbacks: connect_event still runs and reports */
	}
	return uc;
}

void
upstream_connect_cancel(struct upstream_connect *uc)
{
	bufferevent_free(uc->bev);
	event_free(uc->timer);
	free(uc);
}

/*
 * admission.c — an accepted connection on its way to a session.  On a
 * listener with proxy_protocol, the load balancer's header comes first:
 * it is believed only from proxy_protocol_from, must arrive whole within
 * proxy_protocol_timeout, and is read without taking a byte of what
 * follows (the TLS handshake or the client's first command), so the socket
 * then goes to its bufferevent as if it had just been accepted.  A
 * connection whose header is missing, malformed or untrusted is closed
 * without a word: it is not known to speak IMAP.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>

#include "admission.h"
#include "config.h"
#include "log.h"
#include "proxyproto.h"
#include "session.h"
#include "tls.h"
#include "upstream.h"

/* A connection whose PROXY header has not arrived yet. */
struct waiting {
	TAILQ_ENTRY(waiting) entry;
	struct listener_info li;	/* a copy: a reload may remove the listener */
	evutil_socket_t fd;
	struct sockaddr_storage balancer;
	char balancer_text[64];
	struct event *read;
	struct event *deadline;		/* one-shot: bytes trickling in do not extend it */
	struct proxyproto_reader reader;
};

static TAILQ_HEAD(, waiting) waiting_list = TAILQ_HEAD_INITIALIZER(waiting_list);
static unsigned nwaiting;

/* The socket as a plain or TLS bufferevent, then a session over it. */
static void
start_session(const struct listener_info *li, evutil_socket_t fd,
    const struct sockaddr *peer, const struct sockaddr *via)
{
	struct event_base *base = li->proxy->base;
	struct bufferevent *bev = NULL;
	SSL *ssl = NULL;

	if (!li->tls)
		bev = bufferevent_socket_new(base, fd,
		    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	else if ((ssl = tls_server_ssl(li->proxy->cfg)) != NULL)
		bev = bufferevent_openssl_socket_new(base, fd, ssl,
		    BUFFEREVENT_SSL_ACCEPTING,
		    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (bev == NULL) {
		log_error(0, "no memory for a new connection");
		evutil_closesocket(fd);
		if (ssl != NULL)
			SSL_free(ssl);
		return;
	}
	session_begin(li, bev, li->tls, peer, via);
}

/* Forget w; its socket is closed unless keep_fd. */
static void
waiting_free(struct waiting *w, bool keep_fd)
{
	TAILQ_REMOVE(&waiting_list, w, entry);
	nwaiting--;
	if (w->read != NULL)
		event_free(w->read);
	if (w->deadline != NULL)
		event_free(w->deadline);
	if (!keep_fd)
		evutil_closesocket(w->fd);
	free(w);
}

static void
header_readable(evutil_socket_t fd, short what, void *arg)
{
	struct waiting *w = arg;
	struct proxyproto_addr addr;
	struct listener_info li;
	struct sockaddr_storage balancer;
	const char *why = NULL;

	(void)what;
	switch (proxyproto_recv(fd, &w->reader, &addr, &why)) {
	case PROXYPROTO_MORE:
		return;
	case PROXYPROTO_ERROR:
		log_warn(0, "connection from %s closed: %s", w->balancer_text,
		    why != NULL ? why : "bad PROXY protocol header");
		waiting_free(w, false);
		return;
	case PROXYPROTO_DONE:
		break;
	}
	li = w->li;
	balancer = w->balancer;
	waiting_free(w, true);
	/* LOCAL (a health check) and UNKNOWN keep the connection's address */
	if (addr.command == PROXYPROTO_PROXY)
		start_session(&li, fd, (const struct sockaddr *)&addr.src,
		    (const struct sockaddr *)&balancer);
	else
		start_session(&li, fd, (const struct sockaddr *)&balancer,
		    (const struct sockaddr *)&balancer);
}

static void
header_late(evutil_socket_t fd, short what, void *arg)
{
	struct waiting *w = arg;

	(void)fd;
	(void)what;
	log_warn(0, "connection from %s closed: no PROXY protocol header within "
	    "%u seconds", w->balancer_text, w->li.proxy->cfg->proxy_protocol_timeout);
	waiting_free(w, false);
}

/* Wait for the header of a connection from a trusted balancer. */
static void
wait_for_header(const struct listener_info *li, evutil_socket_t fd,
    const struct sockaddr *sa, int socklen, const char *text)
{
	const struct config *cfg = li->proxy->cfg;
	struct timeval tv = { (time_t)cfg->proxy_protocol_timeout, 0 };
	struct waiting *w;

	/* waiting connections hold memory and a descriptor: no more of them
	 * than sessions may exist */
	if (nwaiting >= cfg->max_sessions) {
		log_warn(0, "connection from %s closed: %u connections wait for "
		    "their PROXY header already", text, nwaiting);
		evutil_closesocket(fd);
		return;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		evutil_closesocket(fd);
		return;
	}
	TAILQ_INSERT_TAIL(&waiting_list, w, entry);
	nwaiting++;
	w->li = *li;
	w->fd = fd;
	memcpy(&w->balancer, sa, (size_t)socklen < sizeof(w->balancer) ?
	    (size_t)socklen : sizeof(w->balancer));
	snprintf(w->balancer_text, sizeof(w->balancer_text), "%s", text);
	w->read = event_new(li->proxy->base, fd, EV_READ | EV_PERSIST,
	    header_readable, w);
	w->deadline = evtimer_new(li->proxy->base, header_late, w);
	if (w->read == NULL || w->deadline == NULL ||
	    event_add(w->read, NULL) != 0 || evtimer_add(w->deadline, &tv) != 0)
		waiting_free(w, false);
}

void
admission_accept(const struct listener_info *li, int fd, const struct sockaddr *sa,
    int socklen)
{
	char text[64];

	evutil_make_socket_nonblocking(fd);
	upstream_tune_socket(fd);
	if (!li->proxy_protocol) {
		start_session(li, fd, sa, NULL);
		return;
	}
	log_address(sa, text, sizeof(text), NULL, 0);
	if (!proxyproto_trusted(sa, &li->proxy->cfg->proxy_protocol_from)) {
		log_warn(0, "connection from %s closed: not in proxy_protocol_from, "
		    "its PROXY header is not believed", text);
		evutil_closesocket(fd);
		return;
	}
	wait_for_header(li, fd, sa, socklen, text);
}

unsigned
admission_waiting(void)
{
	return nwaiting;
}

void
admission_close_all(void)
{
	while (!TAILQ_EMPTY(&waiting_list))
		waiting_free(TAILQ_FIRST(&waiting_list), false);
}

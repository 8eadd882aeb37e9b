/*
 * upstream.c — connecting to the upstream server without blocking the loop:
 * asynchronous name lookup (evdns), TCP connect, then TLS as configured
 * (implicit TLS, or STARTTLS after the greeting), all under one connect
 * timeout.  The caller gets a bufferevent that speaks IMAP in the clear to
 * it, with the server's certificate verified.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "log.h"
#include "metrics.h"
#include "session.h"
#include "tls.h"
#include "upstream.h"

/* The greeting and the STARTTLS answer are short; anything longer is not
 * an IMAP server worth talking to. */
#define STARTTLS_LINE_MAX 65536
#define STARTTLS_TAG "mappend.tls"

enum connect_step {
	STEP_TCP,
	STEP_GREETING,		/* STARTTLS: waiting for the greeting */
	STEP_STARTTLS,		/* ...for the answer to STARTTLS */
	STEP_HANDSHAKE,
};

struct upstream_connect {
	struct proxy *proxy;
	const struct config *cfg;	/* a reference: the caller's may go */
	struct backend backend;		/* where to, and how: a copy, the same */
	uint64_t session;
	struct bufferevent *bev;
	struct event *timer;
	enum connect_step step;
	char *greeting;		/* consumed before STARTTLS */
	upstream_connected_cb cb;
	void *arg;
};

static void connect_event(struct bufferevent *, short, void *);

void
upstream_tune_socket(int fd)
{
	int on = 1;

	/* IMAP is a conversation of short lines: do not let Nagle hold them */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	/* a peer that vanished without a reset is found eventually */
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
}

static const char *
tls_name(const struct backend *b)
{
	return b->tls_name[0] != '\0' ? b->tls_name : b->host;
}

/* Close what there is: before TLS the plain layer does not own the socket. */
static void
drop_connection(struct upstream_connect *uc)
{
	evutil_socket_t fd;

	if (uc->bev == NULL)
		return;
	fd = bufferevent_getfd(uc->bev);
	if (uc->backend.tls != UPSTREAM_PLAIN && uc->step != STEP_HANDSHAKE &&
	    fd >= 0)
		evutil_closesocket(fd);
	bufferevent_free(uc->bev);
	uc->bev = NULL;
}

static void
finish(struct upstream_connect *uc, const char *error)
{
	struct bufferevent *bev;
	upstream_connected_cb cb = uc->cb;
	void *arg = uc->arg;
	char *greeting = uc->greeting;

	if (error != NULL) {
		metrics_upstream_connect_error();
		drop_connection(uc);
	}
	bev = uc->bev;
	event_free(uc->timer);
	config_unref(uc->cfg);
	/* the master password is in there */
	explicit_bzero(&uc->backend, sizeof uc->backend);
	free(uc);
	if (bev != NULL)
		bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	cb(bev, greeting, error, arg);
	free(greeting);
}

/* Replace the plain bufferevent by a TLS one on the same socket. */
static void
start_tls(struct upstream_connect *uc)
{
	const struct backend *b = &uc->backend;
	evutil_socket_t fd = bufferevent_getfd(uc->bev);
	SSL *ssl = tls_upstream_ssl(uc->cfg, b, tls_name(b));
	static char reason[300];

	if (ssl == NULL) {
		snprintf(reason, sizeof(reason), "TLS setup failed: %.200s", tls_error());
		finish(uc, reason);
		return;
	}
	/* created without BEV_OPT_CLOSE_ON_FREE: the socket lives on */
	bufferevent_free(uc->bev);
	uc->bev = NULL;
	uc->bev = bufferevent_openssl_socket_new(uc->proxy->base, fd, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (uc->bev == NULL) {
		SSL_free(ssl);
		evutil_closesocket(fd);
		finish(uc, "out of memory");
		return;
	}
	uc->step = STEP_HANDSHAKE;
	bufferevent_setcb(uc->bev, NULL, NULL, connect_event, uc);
	bufferevent_enable(uc->bev, EV_READ | EV_WRITE);
}

/* Why a handshake failed, in words an administrator can act on. */
static const char *
handshake_error(struct upstream_connect *uc)
{
	static char reason[512];
	SSL *ssl = bufferevent_openssl_get_ssl(uc->bev);
	unsigned long e = bufferevent_get_openssl_error(uc->bev);
	long verify = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;

	if (verify != X509_V_OK)
		snprintf(reason, sizeof(reason), "TLS with %.255s: certificate not "
		    "accepted: %s", tls_name(&uc->backend),
		    X509_verify_cert_error_string(verify));
	else if (e != 0)
		snprintf(reason, sizeof(reason), "TLS with %.255s failed: %s",
		    tls_name(&uc->backend), ERR_reason_error_string(e) != NULL ?
		    ERR_reason_error_string(e) : "handshake error");
	else
		snprintf(reason, sizeof(reason), "TLS with %.255s failed: connection "
		    "closed during the handshake", tls_name(&uc->backend));
	return reason;
}

/* STARTTLS: read the greeting, ask, read the answer, then TLS. */
static void
starttls_read(struct bufferevent *bev, void *arg)
{
	struct upstream_connect *uc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	for (;;) {
		size_t len;
		char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);

		if (line == NULL) {
			if (evbuffer_get_length(in) > STARTTLS_LINE_MAX)
				finish(uc, "upstream line too long before STARTTLS");
			return;
		}
		if (uc->step == STEP_GREETING) {
			if (strncmp(line, "* OK", 4) != 0) {
				free(line);
				finish(uc, "upstream greeting is not OK: STARTTLS impossible");
				return;
			}
			uc->greeting = line;
			uc->step = STEP_STARTTLS;
			evbuffer_add_printf(bufferevent_get_output(bev), "%s STARTTLS\r\n",
			    STARTTLS_TAG);
			continue;
		}
		if (strncmp(line, STARTTLS_TAG " ", strlen(STARTTLS_TAG) + 1) != 0) {
			free(line);	/* untagged data before the answer */
			continue;
		}
		if (strncmp(line + strlen(STARTTLS_TAG) + 1, "OK", 2) != 0) {
			static char reason[300];

			snprintf(reason, sizeof(reason), "upstream refused STARTTLS: %.200s", line);
			free(line);
			finish(uc, reason);
			return;
		}
		free(line);
		/* bytes after the OK would be plaintext injected before TLS */
		if (evbuffer_get_length(in) > 0) {
			finish(uc, "upstream sent data after its STARTTLS answer");
			return;
		}
		start_tls(uc);
		return;
	}
}

static void
connect_event(struct bufferevent *bev, short what, void *arg)
{
	struct upstream_connect *uc = arg;
	const struct backend *b = &uc->backend;
	static char reason[512];
	int dnserr;

	if ((what & BEV_EVENT_CONNECTED) && uc->step == STEP_TCP) {
		upstream_tune_socket(bufferevent_getfd(bev));
		log_debug(uc->session, "connected to upstream %s:%s", b->host,
		    b->port);
		switch (b->tls) {
		case UPSTREAM_PLAIN:
			finish(uc, NULL);
			return;
		case UPSTREAM_TLS:
			start_tls(uc);
			return;
		case UPSTREAM_STARTTLS:
			uc->step = STEP_GREETING;
			bufferevent_setcb(bev, starttls_read, NULL, connect_event, uc);
			bufferevent_enable(bev, EV_READ | EV_WRITE);
			return;
		}
	}
	if ((what & BEV_EVENT_CONNECTED) && uc->step == STEP_HANDSHAKE) {
		log_debug(uc->session, "TLS with upstream %s: %s", tls_name(b),
		    SSL_get_version(bufferevent_openssl_get_ssl(bev)));
		finish(uc, NULL);
		return;
	}
	if (uc->step == STEP_HANDSHAKE) {
		finish(uc, handshake_error(uc));
		return;
	}
	if (uc->step != STEP_TCP) {
		finish(uc, "upstream closed the connection before TLS");
		return;
	}
	dnserr = bufferevent_socket_get_dns_error(bev);
	if (dnserr != 0)
		snprintf(reason, sizeof(reason), "cannot resolve %.255s: %.200s",
		    b->host, evutil_gai_strerror(dnserr));
	else
		snprintf(reason, sizeof(reason), "cannot connect to %.255s:%.15s: %.200s",
		    b->host, b->port,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	finish(uc, reason);
}

static void
connect_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_connect *uc = arg;
	static char reason[512];

	(void)fd;
	(void)what;
	snprintf(reason, sizeof(reason), "connect to %.255s:%.15s timed out after %us%s",
	    uc->backend.host, uc->backend.port, uc->cfg->connect_timeout,
	    uc->step == STEP_TCP ? "" : " (TLS or STARTTLS not completed)");
	finish(uc, reason);
}

struct upstream_connect *
upstream_connect(struct proxy *proxy, const struct config *cfg,
    const struct backend *b, uint64_t session, upstream_connected_cb cb, void *arg)
{
	struct upstream_connect *uc;
	struct timeval tv = { (time_t)cfg->connect_timeout, 0 };
	int port = atoi(b->port);
	/* a TLS connection keeps the socket when the plain layer goes */
	int close_flag = b->tls == UPSTREAM_PLAIN ? BEV_OPT_CLOSE_ON_FREE : 0;

	if ((uc = calloc(1, sizeof(*uc))) == NULL)
		return NULL;
	uc->proxy = proxy;
	uc->cfg = config_ref(cfg);
	uc->backend = *b;
	uc->session = session;
	uc->cb = cb;
	uc->arg = arg;
	uc->bev = bufferevent_socket_new(proxy->base, -1,
	    close_flag | BEV_OPT_DEFER_CALLBACKS);
	uc->timer = evtimer_new(proxy->base, connect_timeout, uc);
	if (uc->bev == NULL || uc->timer == NULL) {
		if (uc->bev != NULL)
			bufferevent_free(uc->bev);
		if (uc->timer != NULL)
			event_free(uc->timer);
		config_unref(uc->cfg);
		free(uc);
		return NULL;
	}
	bufferevent_setcb(uc->bev, NULL, NULL, connect_event, uc);
	evtimer_add(uc->timer, &tv);
	/* with deferred callbacks a failure is reported from the loop, after
	 * this returns, so uc is valid for the caller either way */
	(void)bufferevent_socket_connect_hostname(uc->bev, proxy->dns, AF_UNSPEC,
	    b->host, port);
	return uc;
}

void
upstream_connect_cancel(struct upstream_connect *uc)
{
	drop_connection(uc);
	event_free(uc->timer);
	free(uc->greeting);
	config_unref(uc->cfg);
	explicit_bzero(&uc->backend, sizeof uc->backend);
	free(uc);
}

/*
 * backchannel.c — the proxy's own second connection to the upstream: it
 * connects (upstream.c), reads the greeting, logs in (LOGIN, or SASL PLAIN
 * with the master user or the session's PLAIN credentials), then carries
 * its owner's commands one at a time with the same reply_ops as the
 * session's own commands, and logs out when the owner is done.  What the
 * commands mean (a removal, a COPY) is the owner's business.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "backchannel.h"
#include "command.h"
#include "credentials.h"
#include "log.h"
#include "session.h"
#include "upstream.h"

/* Literal data handed to a command's ops at most this much at a time. */
#define LITERAL_PIECE 65536

enum bc_state {
	BC_CONNECTING,
	BC_GREETING,
	BC_AUTH,		/* AUTHENTICATE PLAIN sent: waiting for "+" */
	BC_LOGIN,		/* waiting for the login's answer */
	BC_READY,		/* logged in, no command out */
	BC_BUSY,		/* a command of the owner's is out */
	BC_LOGOUT,		/* closing politely */
	BC_DEAD,		/* failed or closed: freed from the loop */
};

struct backchannel {
	struct proxy *proxy;
	const struct config *cfg;	/* its owner's (a reference: it may outlive it) */
	uint64_t id;
	struct upstream_connect *connecting;
	struct bufferevent *bev;
	struct imap_framer framer;
	struct event *later;		/* reports and frees outside callbacks */
	enum bc_state state;
	struct login login;		/* wiped once sent */
	unsigned long tagn;
	char tag[32];
	const struct reply_ops *ops;	/* the command out */
	void *ops_ctx;
	bool taken;			/* the current response is the command's */
	const struct backchannel_owner *owner;	/* NULL once closed */
	void *owner_ctx;
	char *why;			/* the failure to report */
	bool report_ready;
	bool closed;			/* the owner is done with it */
};

static void bc_read(struct bufferevent *, void *);
static void bc_event(struct bufferevent *, short, void *);

static void
bc_free(struct backchannel *bc)
{
	if (bc->connecting != NULL)
		upstream_connect_cancel(bc->connecting);
	if (bc->bev != NULL)
		bufferevent_free(bc->bev);
	event_free(bc->later);
	login_clear(&bc->login);
	free(bc->why);
	config_unref(bc->cfg);
	free(bc);
}

/* From the loop: tell the owner what happened, free what is finished. */
static void
later(evutil_socket_t fd, short what, void *arg)
{
	struct backchannel *bc = arg;

	(void)fd;
	(void)what;
	if (bc->owner != NULL && bc->why != NULL)
		bc->owner->failed(bc->owner_ctx, bc->why);
	else if (bc->owner != NULL && bc->report_ready)
		bc->owner->ready(bc->owner_ctx);
	bc->report_ready = false;
	if (bc->state == BC_DEAD && bc->closed)
		bc_free(bc);
}

static void
schedule(struct backchannel *bc)
{
	event_active(bc->later, 0, 0);
}

/* The connection is of no more use: say why (unless the owner left). */
static void
fail(struct backchannel *bc, const char *why)
{
	if (bc->state == BC_DEAD)
		return;
	if (bc->bev != NULL) {
		bufferevent_free(bc->bev);
		bc->bev = NULL;
	}
	bc->state = BC_DEAD;
	if (bc->owner != NULL) {
		free(bc->why);
		bc->why = strdup(why != NULL ? why : "second connection failed");
	}
	schedule(bc);
}

static void
send_line(struct backchannel *bc, enum bc_state state, const char *fmt, va_list ap)
{
	struct evbuffer *out = bufferevent_get_output(bc->bev);

	snprintf(bc->tag, sizeof(bc->tag), "mappend.b%lu", ++bc->tagn);
	evbuffer_add_printf(out, "%s ", bc->tag);
	evbuffer_add_vprintf(out, fmt, ap);
	evbuffer_add(out, "\r\n", 2);
	bc->state = state;
}

static void
send_own(struct backchannel *bc, enum bc_state state, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void
send_own(struct backchannel *bc, enum bc_state state, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	send_line(bc, state, fmt, ap);
	va_end(ap);
}

void
backchannel_command(struct backchannel *bc, const struct reply_ops *ops, void *ctx,
    const char *fmt, ...)
{
	va_list ap;

	if (bc->state != BC_READY) {
		fail(bc, "command sent before the connection was ready");
		return;
	}
	bc->ops = ops;
	bc->ops_ctx = ctx;
	va_start(ap, fmt);
	send_line(bc, BC_BUSY, fmt, ap);
	va_end(ap);
}

void
backchannel_close(struct backchannel *bc)
{
	if (bc == NULL)
		return;
	bc->owner = NULL;
	bc->ops = NULL;
	bc->closed = true;
	if (bc->state == BC_READY || bc->state == BC_BUSY) {
		send_own(bc, BC_LOGOUT, "LOGOUT");
		return;
	}
	if (bc->state != BC_LOGOUT) {
		fail(bc, NULL);
		schedule(bc);
	}
}

static void
login(struct backchannel *bc)
{
	if (bc->login.login_args != NULL)
		send_own(bc, BC_LOGIN, "LOGIN %s", bc->login.login_args);
	else
		send_own(bc, BC_AUTH, "AUTHENTICATE PLAIN");
}

/* "+" for AUTHENTICATE PLAIN: the message, then forget it. */
static void
continuation(struct backchannel *bc)
{
	struct evbuffer *out = bufferevent_get_output(bc->bev);

	if (bc->state != BC_AUTH || bc->login.plain_b64 == NULL) {
		fail(bc, "unexpected continuation request");
		return;
	}
	evbuffer_add(out, bc->login.plain_b64, strlen(bc->login.plain_b64));
	evbuffer_add(out, "\r\n", 2);
	login_clear(&bc->login);
	bc->state = BC_LOGIN;
}

static void
tagged(struct backchannel *bc, const char *buf, const struct imap_segment *seg)
{
	const struct reply_ops *ops = bc->ops;
	struct answer a;
	char why[300];

	command_answer(&a, buf, seg);
	switch (bc->state) {
	case BC_AUTH:
	case BC_LOGIN:
		if (!a.ok) {
			snprintf(why, sizeof(why), "login refused: %.*s",
			    (int)(a.len > 200 ? 200 : a.len), a.line);
			fail(bc, why);
			return;
		}
		login_clear(&bc->login);
		bc->state = BC_READY;
		bc->report_ready = true;
		schedule(bc);
		return;
	case BC_BUSY:
		bc->state = BC_READY;
		bc->ops = NULL;
		if (ops != NULL)
			ops->tagged(bc->ops_ctx, &a);
		return;
	case BC_LOGOUT:
		fail(bc, NULL);
		return;
	default:
		fail(bc, "unexpected answer");
		return;
	}
}

/* One response segment: greeting, "+", a tagged answer, or data. */
static void
segment(struct backchannel *bc, const char *buf, const struct imap_segment *seg)
{
	if (!seg->first) {
		if (bc->taken && bc->ops != NULL && bc->ops->untagged != NULL)
			bc->ops->untagged(bc->ops_ctx, buf, seg);
		return;
	}
	bc->taken = false;
	if (bc->state == BC_GREETING) {
		if (seg->ntok >= 2 && imap_tok_is(buf, &seg->tok[1], "OK"))
			login(bc);
		else
			fail(bc, "upstream refused the second connection");
	} else if (imap_tok_is(buf, &seg->tok[0], "+")) {
		continuation(bc);
	} else if (seg->tok[0].len == strlen(bc->tag) &&
	    memcmp(buf + seg->tok[0].off, bc->tag, seg->tok[0].len) == 0) {
		tagged(bc, buf, seg);
	} else if (seg->ntok >= 2 && imap_tok_is(buf, &seg->tok[1], "BYE")) {
		if (bc->state != BC_LOGOUT)
			fail(bc, "upstream said BYE");
	} else if (bc->state == BC_BUSY && bc->ops != NULL && bc->ops->untagged != NULL) {
		bc->taken = bc->ops->untagged(bc->ops_ctx, buf, seg);
	}
}

/* Literal data: to the command that took the response, or dropped. */
static void
literal(struct backchannel *bc, struct evbuffer *in, size_t n)
{
	if (!bc->taken || bc->ops == NULL || bc->ops->literal == NULL) {
		imap_framer_drop(&bc->framer, in, n);
		return;
	}
	if (n > LITERAL_PIECE)
		n = LITERAL_PIECE;
	bc->ops->literal(bc->ops_ctx, (const char *)evbuffer_pullup(in, (ssize_t)n), n);
	if (bc->bev != NULL)
		imap_framer_drop(&bc->framer, in, n);
}

static void
bc_read(struct bufferevent *bev, void *arg)
{
	struct backchannel *bc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (bc->bev != NULL) {
		struct imap_frame f;

		switch (imap_framer_next(&bc->framer, in, &f)) {
		case IMAP_FRAME_MORE:
			return;
		case IMAP_FRAME_FATAL:
		case IMAP_FRAME_BAD:
			fail(bc, f.error);
			return;
		case IMAP_FRAME_LITERAL:
			literal(bc, in, f.len);
			break;
		case IMAP_FRAME_SEGMENT:
			segment(bc, f.buf, &f.seg);
			if (bc->bev != NULL)
				imap_framer_drop(&bc->framer, in, f.len);
			break;
		}
	}
}

static void
bc_event(struct bufferevent *bev, short what, void *arg)
{
	struct backchannel *bc = arg;

	(void)bev;
	if (bc->state == BC_LOGOUT)
		fail(bc, NULL);
	else
		fail(bc, (what & BEV_EVENT_TIMEOUT) ? "second connection timed out" :
		    "second connection lost");
}

static void
connected(struct bufferevent *bev, const char *greeting, const char *error, void *arg)
{
	struct backchannel *bc = arg;
	struct timeval tv = { (time_t)bc->cfg->upstream_idle_timeout, 0 };

	bc->connecting = NULL;
	if (bev == NULL) {
		fail(bc, error);
		return;
	}
	bc->bev = bev;
	bc->state = BC_GREETING;
	bufferevent_setcb(bev, bc_read, NULL, bc_event, bc);
	bufferevent_set_timeouts(bev, &tv, NULL);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	if (greeting != NULL)
		login(bc);	/* read already, before STARTTLS */
}

static char *
dup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

struct backchannel *
backchannel_open(struct proxy *proxy, const struct config *cfg,
    const struct backend *b, uint64_t log_id,
    const struct login *l, const struct backchannel_owner *owner, void *ctx)
{
	struct backchannel *bc = calloc(1, sizeof(*bc));

	if (bc == NULL)
		return NULL;
	bc->proxy = proxy;
	bc->cfg = config_ref(cfg);
	bc->id = log_id;
	bc->owner = owner;
	bc->owner_ctx = ctx;
	bc->later = event_new(proxy->base, -1, 0, later, bc);
	imap_framer_init(&bc->framer, IMAP_MODE_RESPONSE,
	    imap_response_line_max(cfg->max_line_length));
	bc->login.login_args = dup_or_null(l->login_args);
	bc->login.plain_b64 = dup_or_null(l->plain_b64);
	bc->login.user = dup_or_null(l->user);
	if (bc->later == NULL || (bc->login.login_args == NULL &&
	    bc->login.plain_b64 == NULL)) {
		bc->closed = true;
		bc_free(bc);
		return NULL;
	}
	bc->connecting = upstream_connect(proxy, cfg, b, log_id, connected, bc);
	if (bc->connecting == NULL)
		fail(bc, "out of memory");
	return bc;
}

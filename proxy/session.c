/*
 * session.c — the life of one client session: accept, connect upstream,
 * state changes, the queue of commands in flight, timeouts, and a clean end.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

#include "command.h"
#include "credentials.h"
#include "limits.h"
#include "log.h"
#include "metrics.h"
#include "multiappend.h"
#include "reader.h"
#include "relay.h"
#include "response.h"
#include "router.h"
#include "session.h"
#include "splice.h"
#include "tls.h"
#include "upstream.h"

/* Bytes read at once from a socket: large enough to stream literals fast. */
#define READ_CHUNK (256 * 1024)
/* Bytes written at once (libevent's default is 16 KiB). */
#define WRITE_CHUNK (1024 * 1024)
/* Output queued towards one side beyond which the other side is not read. */
#define OUTPUT_HIGH (1024 * 1024)
/* Output drained to this: the side held back by backpressure reads again. */
#define WRITE_LOW (256 * 1024)
/* The first read after a literal the kernel moved: enough for the next
 * response's first line, so that a long literal in it is found before
 * its bytes are read in. */
#define SPLICE_LOOKAHEAD (4 * 1024)
/* The least rest of a literal read on its own (session_literal_rest). */
#define WHOLE_LITERAL_MIN (32 * 1024)
/* How long a closing session may take to flush its last lines. */
#define CLOSE_FLUSH_SECONDS 5

struct session {
	TAILQ_ENTRY(session) entry;
	struct proxy *proxy;
	const struct config *cfg;	/* its own reference: a reload keeps it */
	const struct backend *backend;	/* its upstream: one of cfg's, or
					 * route_backend */
	struct shared_route *route;	/* a route's address, cfg's settings */
	struct front *front;		/* routing: the client's login, until
					 * the relay takes over (router.h) */
	bool reroute;			/* a routed login failed: back to the
					 * front once the relay is quiet */
	uint64_t id;
	char key[48];			/* the id the upstream's logs show too */
	enum session_state state;
	char peer[64];			/* client address for logs */
	char peer_host[48], peer_port[8];
	/* the client's address; admission counts by it, so it may change
	 * (a PROXY header) before session_begin, and never after */
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} peer_sa;
	bool admitted;			/* limits_admit said OK: release once */
	bool client_tls;		/* the client's connection is TLS now */
	bool tls_required;		/* no plaintext login on this listener before TLS */

	struct bufferevent *client;
	struct bufferevent *upstream;
	struct reader *client_reader;	/* plain sockets: large reads (reader.h) */
	struct reader *upstream_reader;
	struct splice *splice;		/* a literal moved by the kernel (splice.h) */
	bool upstream_ending;		/* its end is being handled: no new move */
	struct upstream_connect *connecting;
	struct evbuffer_cb_entry *count_in, *count_out;	/* bytes_in, bytes_out */
	struct event *idle_timer;	/* client inactivity; then the close timer */
	struct event *resume;		/* reads the client's input again, from the loop */
	double client_activity;		/* event_base time of the last client I/O */

	char *selected;			/* mailbox selected upstream, or NULL */
	bool selected_rw;

	struct pending_list pending;	/* commands in flight upstream */
	unsigned npending;
	bool closing;
	bool client_gone;		/* the client left while a job runs on */
	char *end_reason;		/* ending once the job is resolved: the BYE */

	/* for the line that sums the session up when it ends */
	char listener[64];		/* where it came in */
	char *via;			/* the load balancer that named the peer,
					 * or NULL */
	double started;			/* log_clock() */
	uint64_t bytes_in, bytes_out;	/* IMAP bytes from and to the client */
	uint64_t spliced;		/* of bytes_out, moved by the kernel */
	unsigned spliced_literals;
	unsigned commands, multiappends;
	bool starttls;			/* TLS came by STARTTLS */
	bool ended;			/* end_class and end_text are set */
	enum metrics_end end_class;
	char *end_text;			/* NULL: none, or out of memory */

	/* what other files keep for the session */
	struct relay *relay;
	struct response *response;
	struct credentials *creds;
	struct append_job *job;
};

static const char *const state_names[] = {
	[SESSION_CONNECTING] = "connecting",
	[SESSION_GREETING] = "greeting",
	[SESSION_CAPABILITY] = "capability",
	[SESSION_NOT_AUTHENTICATED] = "not-authenticated",
	[SESSION_AUTHENTICATED] = "authenticated",
	[SESSION_SELECTED] = "selected",
	[SESSION_LOGOUT] = "logout",
};

static void session_free(struct session *);
static void session_input_consumed(struct session *);
static void client_read(struct bufferevent *, void *);
static void client_write(struct bufferevent *, void *);
static void client_event(struct bufferevent *, short, void *);
static void upstream_read(struct bufferevent *, void *);
static void upstream_write(struct bufferevent *, void *);
static void upstream_event(struct bufferevent *, short, void *);
static void upstream_input(struct session *);
static void session_client_activity(struct session *);
static void client_input(struct session *);
static void forget_route(struct session *);
static void upstream_free(struct session *);

void
session_enter_state(struct session *s, enum session_state state)
{
	if (s->state == state)
		return;
	log_debug(s->id, "state %s -> %s", state_names[s->state], state_names[state]);
	s->state = state;
}

struct evbuffer *
session_client_output(struct session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->client);

	/* the client left while a job runs on: what it would be told is lost */
	if (s->client_gone)
		evbuffer_drain(out, evbuffer_get_length(out));
	return out;
}

bool
session_same_mailbox(const char *a, const char *b)
{
	if (strcasecmp(a, "INBOX") == 0)
		return strcasecmp(b, "INBOX") == 0;
	return strcmp(a, b) == 0;
}

uint64_t
session_id(const struct session *s)
{
	return s->id;
}

struct proxy *
session_proxy(const struct session *s)
{
	return s->proxy;
}

const struct config *
session_config(const struct session *s)
{
	return s->cfg;
}

const struct backend *
session_backend(const struct session *s)
{
	return s->backend;
}

struct front *
session_front(const struct session *s)
{
	return s->front;
}

void
session_set_front(struct session *s, struct front *f)
{
	s->front = f;
}

/*
 * An address a route named, with the default upstream's settings: one per
 * address and configuration, shared by the sessions routed there (a
 * backend is kilobytes; thousands of sessions go to a handful of servers).
 */
struct shared_route {
	LIST_ENTRY(shared_route) entry;
	const struct config *cfg;	/* whose settings (the sessions' ref) */
	unsigned refs;
	struct backend b;
};

static LIST_HEAD(, shared_route) shared_routes = LIST_HEAD_INITIALIZER(shared_routes);

static struct shared_route *
shared_route_get(const struct config *cfg, const char *host, const char *port)
{
	struct shared_route *r;

	LIST_FOREACH(r, &shared_routes, entry)
		if (r->cfg == cfg && strcmp(r->b.host, host) == 0 &&
		    strcmp(r->b.port, port) == 0) {
			r->refs++;
			return r;
		}
	if ((r = malloc(sizeof(*r))) == NULL)
		return NULL;
	r->cfg = cfg;
	r->refs = 1;
	r->b = cfg->upstream;
	memset(r->b.host, 0, sizeof(r->b.host));
	memset(r->b.tls_name, 0, sizeof(r->b.tls_name));
	snprintf(r->b.host, sizeof(r->b.host), "%s", host);
	snprintf(r->b.port, sizeof(r->b.port), "%s", port);
	LIST_INSERT_HEAD(&shared_routes, r, entry);
	return r;
}

/* The route's backend goes; the default upstream until another. */
static void
forget_route(struct session *s)
{
	struct shared_route *r = s->route;

	s->route = NULL;
	s->backend = &s->cfg->upstream;
	if (r == NULL || --r->refs > 0)
		return;
	LIST_REMOVE(r, entry);
	explicit_bzero(&r->b, sizeof(r->b));	/* a master password */
	free(r);
}

enum session_state
session_state(const struct session *s)
{
	return s->state;
}

bool
session_closing(const struct session *s)
{
	return s->closing;
}

bool
session_client_gone(const struct session *s)
{
	return s->client_gone;
}

bool
session_client_tls(const struct session *s)
{
	return s->client_tls;
}

bool
session_tls_required(const struct session *s)
{
	return s->tls_required;
}

const char *
session_key(const struct session *s)
{
	return s->key;
}

const char *
session_peer(const struct session *s)
{
	return s->peer;
}

const char *
session_peer_host(const struct session *s)
{
	return s->peer_host;
}

const char *
session_peer_port(const struct session *s)
{
	return s->peer_port;
}

bool
session_has_upstream(const struct session *s)
{
	return s->upstream != NULL;
}

const char *
session_selected(const struct session *s, bool *rw)
{
	*rw = s->selected_rw;
	return s->selected;
}

void
session_select(struct session *s, const char *name, size_t len, bool rw)
{
	free(s->selected);
	s->selected = NULL;
	s->selected_rw = false;
	if (name == NULL) {
		session_enter_state(s, SESSION_AUTHENTICATED);
		return;
	}
	if ((s->selected = malloc(len + 1)) != NULL) {
		memcpy(s->selected, name, len);
		s->selected[len] = '\0';
	}
	s->selected_rw = rw;
	session_enter_state(s, SESSION_SELECTED);
}

struct relay *
session_relay(const struct session *s)
{
	return s->relay;
}

struct response *
session_response(const struct session *s)
{
	return s->response;
}

struct credentials *
session_credentials(const struct session *s)
{
	return s->creds;
}

struct append_job *
session_job(const struct session *s)
{
	return s->job;
}

void
session_set_job(struct session *s, struct append_job *job)
{
	s->job = job;
}

void
session_end_class(struct session *s, enum metrics_end class, const char *text)
{
	if (s->ended)
		return;
	s->ended = true;
	s->end_class = class;
	s->end_text = strdup(text);
}

void
session_note_command(struct session *s)
{
	s->commands++;
}

void
session_note_multiappend(struct session *s)
{
	s->multiappends++;
}

bool
session_relaying(const struct session *s)
{
	return s->upstream != NULL && s->state >= SESSION_NOT_AUTHENTICATED;
}

struct evbuffer *
session_client_input(struct session *s)
{
	return bufferevent_get_input(s->client);
}

struct evbuffer *
session_upstream_input(struct session *s)
{
	return s->upstream != NULL ? bufferevent_get_input(s->upstream) : NULL;
}

struct evbuffer *
session_upstream_output(struct session *s)
{
	return bufferevent_get_output(s->upstream);
}

/* The write callbacks below resume the side held back. */
bool
session_output_full(struct session *s, enum session_side to)
{
	struct bufferevent *bev = to == SESSION_CLIENT ? s->client : s->upstream;

	if (to == SESSION_CLIENT && s->client_gone)
		return false;	/* its output is thrown away */
	if (bev == NULL || evbuffer_get_length(bufferevent_get_output(bev)) < OUTPUT_HIGH)
		return false;
	if (to == SESSION_CLIENT)
		session_upstream_reading(s, false);
	else
		session_client_reading(s, false);
	return true;
}

unsigned
session_pending_count(const struct session *s)
{
	return s->npending;
}

struct pending *
session_pending_oldest(const struct session *s)
{
	return TAILQ_FIRST(&s->pending);
}

struct pending *
session_pending_find(const struct session *s, const char *tag, size_t taglen)
{
	struct pending *p;

	TAILQ_FOREACH(p, &s->pending, entry)
		if (p->taglen == taglen && memcmp(p->tag, tag, taglen) == 0)
			return p;
	return NULL;
}

static void
resume_input(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	if (!s->closing && !s->client_gone) {
		client_input(s);
		session_input_consumed(s);
	}
}

void
session_resume_input(struct session *s)
{
	if (!s->closing)
		event_active(s->resume, 0, 0);
}

void
session_reply(struct session *s, const char *fmt, ...)
{
	struct evbuffer *out = session_client_output(s);
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

/* A read buffer must be able to hold a whole line of the longest kind,
 * or a line that long would never be complete. */
static size_t
read_watermark(size_t max_line)
{
	return max_line + READ_CHUNK;
}

void
session_client_reading(struct session *s, bool on)
{
	if (s->client_reader != NULL)
		reader_enable(s->client_reader, on);
	else if (on)
		bufferevent_enable(s->client, EV_READ);
	else
		bufferevent_disable(s->client, EV_READ);
}

void
session_upstream_reading(struct session *s, bool on)
{
	/* a literal being moved by the kernel reads the upstream itself */
	if (s->upstream == NULL || (on && s->splice != NULL))
		return;
	if (s->upstream_reader != NULL)
		reader_enable(s->upstream_reader, on);
	else if (on)
		bufferevent_enable(s->upstream, EV_READ);
	else
		bufferevent_disable(s->upstream, EV_READ);
}

/* Input was consumed: a reader that stopped at its high mark goes on. */
static void
session_input_consumed(struct session *s)
{
	if (s->client_reader != NULL)
		reader_resume(s->client_reader);
	if (s->upstream_reader != NULL)
		reader_resume(s->upstream_reader);
}

/*
 * The move of a literal by the kernel is over or given up: what the pipe
 * still holds goes to the client before anything queued meanwhile, the
 * client's output flows again, and the upstream is read the buffered way
 * (the first read small: the next literal's header comes first).
 */
static void
splice_end(struct session *s)
{
	struct evbuffer *out, *rest = NULL;

	if (s->splice == NULL)
		return;
	if (splice_pending(s->splice) > 0 && !s->client_gone)
		rest = evbuffer_new();
	splice_free(s->splice, rest);
	s->splice = NULL;
	if (rest != NULL) {
		/* a socket bufferevent keeps its output's start frozen */
		out = bufferevent_get_output(s->client);
		evbuffer_unfreeze(out, 1);
		evbuffer_prepend_buffer(out, rest);
		evbuffer_freeze(out, 1);
		evbuffer_free(rest);
	}
	if (!s->client_gone)
		bufferevent_enable(s->client, EV_WRITE);
	if (s->upstream_reader != NULL) {
		reader_limit_next(s->upstream_reader, SPLICE_LOOKAHEAD);
		reader_enable(s->upstream_reader, true);
	}
}

static void
splice_taken(void *arg, size_t n)
{
	relay_upstream_spliced(arg, n);
}

static void
splice_sent(void *arg, size_t n)
{
	struct session *s = arg;

	s->bytes_out += n;
	s->spliced += n;
	session_client_activity(s);
}

/* The same outcome as the buffered path: what ended it is handled by the
 * bufferevents' own event callbacks. */
static void
splice_ended(void *arg, short what)
{
	struct session *s = arg;
	int err = errno;

	splice_end(s);
	if (what == 0) {
		/* the literal is through (or the rest is copied) */
		upstream_input(s);
		return;
	}
	errno = err;
	if (what & BEV_EVENT_READING) {
		s->upstream_ending = true;
		upstream_event(s->upstream, what, s);
	} else {
		client_event(s->client, what, s);
	}
}

static const struct splice_ops splice_ops = {
	.taken = splice_taken,
	.sent = splice_sent,
	.ended = splice_ended,
};

bool
session_splicing(const struct session *s)
{
	return s->splice != NULL;
}

/*
 * Send what is queued towards the client now, as its bufferevent would
 * (which keeps the output's start frozen), so that a literal's move need
 * not wait a round of the event loop for it: true when nothing is left.
 */
static bool
client_output_sent(struct session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->client);

	if (evbuffer_get_length(out) == 0)
		return true;
	evbuffer_unfreeze(out, 1);
	if (evbuffer_write(out, bufferevent_getfd(s->client)) > 0)
		session_client_activity(s);
	evbuffer_freeze(out, 1);
	return evbuffer_get_length(out) == 0;
}

/*
 * Where both sides are plain sockets and it pays, the kernel moves the n
 * bytes.  What is queued towards the client goes first (never reordered):
 * until it has, the upstream is not read, and client_write asks the relay
 * again.  True when the literal went through at once.
 */
static bool
splice_literal(struct session *s, uint64_t n)
{
	struct timeval tv = { (time_t)s->cfg->upstream_idle_timeout, 0 };

	if (s->splice != NULL || !s->cfg->splice || !splice_worth(n) ||
	    s->client_reader == NULL || s->upstream_reader == NULL ||
	    s->closing || s->client_gone || s->upstream_ending)
		return false;
	if (!client_output_sent(s)) {
		reader_enable(s->upstream_reader, false);
		return false;
	}
	s->splice = splice_new(s->proxy->base, bufferevent_getfd(s->upstream),
	    bufferevent_getfd(s->client), n, &tv, &splice_ops, s);
	if (s->splice == NULL)
		return false;	/* no pipe to be had: copied */
	s->spliced_literals++;
	reader_enable(s->upstream_reader, false);
	/* what the proxy writes to the client meanwhile waits behind it */
	bufferevent_disable(s->client, EV_WRITE);
	if (!splice_move(s->splice))
		return false;	/* splice_ended goes on */
	splice_end(s);
	return true;
}

bool
session_literal_rest(struct session *s, uint64_t n)
{
	if (splice_literal(s, n))
		return true;
	/* not moved by the kernel: the next read ends where the literal
	 * does (below WHOLE_LITERAL_MIN a copy costs less than that read) */
	if (s->splice == NULL && s->upstream_reader != NULL && n >= WHOLE_LITERAL_MIN)
		reader_limit_next(s->upstream_reader, n < SIZE_MAX ? (size_t)n : SIZE_MAX);
	return false;
}

static void
upstream_free(struct session *s)
{
	splice_end(s);
	reader_free(s->upstream_reader);
	s->upstream_reader = NULL;
	if (s->upstream != NULL)
		bufferevent_free(s->upstream);
	s->upstream = NULL;
}

static void
session_client_activity(struct session *s)
{
	struct timeval now;

	event_base_gettimeofday_cached(s->proxy->base, &now);
	s->client_activity = (double)now.tv_sec + now.tv_usec / 1e6;
}

/* A command of the client's is in flight (IDLE aside: an idling client
 * is as idle as it gets), or its APPEND is being carried out. */
static bool
client_waits(const struct session *s)
{
	const struct pending *p;

	if (multiappend_in_progress(s))
		return true;
	TAILQ_FOREACH(p, &s->pending, entry)
		if (p->ops == NULL && strcasecmp(p->cmd->name, "IDLE") != 0)
			return true;
	return false;
}

/*
 * The inactivity timer fires at most once per timeout period and re-arms
 * itself for the remainder, so that the hot path only stores a time.
 */
static void
idle_check(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	struct timeval now, tv;
	double idle, limit = s->cfg->client_idle_timeout;

	(void)fd;
	(void)what;
	/* a client waiting for its own command's answer is not idle */
	if (client_waits(s))
		session_client_activity(s);
	event_base_gettimeofday_cached(s->proxy->base, &now);
	idle = (double)now.tv_sec + now.tv_usec / 1e6 - s->client_activity;
	if (idle >= limit) {
		log_info(s->id, "client idle for %.0f seconds, closing", idle);
		session_end_class(s, METRICS_END_IDLE, "client idle");
		session_close(s, "Autologout; idle for too long");
		return;
	}
	tv.tv_sec = (time_t)(limit - idle) + 1;
	tv.tv_usec = 0;
	evtimer_add(s->idle_timer, &tv);
}

struct pending *
session_pending_add(struct session *s, const char *tag, size_t taglen,
    const struct command_entry *cmd)
{
	struct pending *p;

	if ((p = calloc(1, sizeof(*p) + taglen + 1)) == NULL)
		return NULL;
	memcpy(p->tag, tag, taglen);
	p->taglen = taglen;
	p->cmd = cmd;
	TAILQ_INSERT_TAIL(&s->pending, p, entry);
	s->npending++;
	return p;
}

void
session_pending_free(struct session *s, struct pending *p)
{
	unsigned i;

	TAILQ_REMOVE(&s->pending, p, entry);
	s->npending--;
	relay_forget(s, p);
	response_forget(s, p);
	for (i = 0; i < p->nargs; i++) {
		OPENSSL_cleanse(p->arg[i], p->arglen[i]);
		free(p->arg[i]);
	}
	free(p);
}

static void
answer_dropped(void *ctx, const struct answer *a)
{
	(void)ctx;
	(void)a;
}

static const struct reply_ops dropped_ops = { .tagged = answer_dropped };

void
session_forget_ctx(struct session *s, const void *ctx)
{
	struct pending *p;

	if (s == NULL || ctx == NULL)
		return;
	TAILQ_FOREACH(p, &s->pending, entry)
		if (p->ops != NULL && p->ctx == ctx) {
			p->ops = &dropped_ops;
			p->ctx = NULL;
		}
}

struct pending *
session_command_pending(struct session *s, const struct reply_ops *ops, void *ctx)
{
	char tag[32];
	struct pending *p;
	int n;

	/* answers are matched to the oldest command in flight with that tag,
	 * so even a client that chose a tag like ours is told apart */
	n = snprintf(tag, sizeof(tag), "mappend.%llu",
	    (unsigned long long)++s->proxy->next_tag);
	if ((p = session_pending_add(s, tag, (size_t)n, &command_internal)) == NULL)
		return NULL;
	p->ops = ops;
	p->ctx = ctx;
	return p;
}

struct pending *
session_command(struct session *s, const struct reply_ops *ops, void *ctx,
    const char *fmt, ...)
{
	struct evbuffer *out;
	struct pending *p;
	va_list ap;

	if (s->upstream == NULL || (p = session_command_pending(s, ops, ctx)) == NULL)
		return NULL;
	out = bufferevent_get_output(s->upstream);
	evbuffer_add(out, p->tag, p->taglen);
	evbuffer_add(out, " ", 1);
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
	return p;
}

static void
upstream_connected(struct bufferevent *bev, const char *greeting, const char *error,
    void *arg)
{
	struct session *s = arg;
	struct timeval tv = { (time_t)s->cfg->client_idle_timeout, 0 };
	struct timeval upstream_tv = { 0, 0 };

	s->connecting = NULL;
	if (bev == NULL && s->front != NULL) {
		router_upstream_failed(s, s->front, error);
		return;
	}
	if (bev == NULL) {
		log_warn(s->id, "%s", error);
		session_end_class(s, METRICS_END_UPSTREAM, "upstream not available");
		session_close(s, "Upstream server not available");
		return;
	}
	s->upstream = bev;
	bufferevent_setcb(bev, upstream_read, upstream_write, upstream_event, s);
	bufferevent_setwatermark(bev, EV_READ, 0,
	    read_watermark(imap_response_line_max(session_config(s)->max_line_length)));
	bufferevent_set_max_single_read(bev, READ_CHUNK);
	bufferevent_set_max_single_write(bev, WRITE_CHUNK);
	bufferevent_setwatermark(bev, EV_WRITE, WRITE_LOW, 0);
	/* an upstream silent this long is gone, even without a TCP reset */
	upstream_tv.tv_sec = (time_t)s->cfg->upstream_idle_timeout;
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	if (s->backend->tls == UPSTREAM_PLAIN)
		s->upstream_reader = reader_new(bev,
		    read_watermark(imap_response_line_max(session_config(s)->max_line_length)), &upstream_tv,
		    upstream_read, upstream_event, s);
	if (s->upstream_reader == NULL)
		bufferevent_set_timeouts(bev, &upstream_tv, NULL);
	session_enter_state(s, SESSION_GREETING);
	/* the client may not speak before the greeting, but nothing stops a
	 * hostile one: its bytes wait in the buffer until then */
	evtimer_add(s->idle_timer, &tv);
	if (greeting != NULL)
		response_greeting_read(s, greeting);
}

static void
count_in(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct session *s = arg;

	(void)buf;
	s->bytes_in += info->n_added;
}

/* what left the buffer went to the socket (or into TLS) */
static void
count_out(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct session *s = arg;

	(void)buf;
	s->bytes_out += info->n_deleted;
}

/* Stop counting on the client's current bufferevent (replaced after
 * STARTTLS: its plain layer carries TLS records then; or gone). */
static void
stop_counting(struct session *s)
{
	if (s->count_in != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_input(s->client), s->count_in);
	if (s->count_out != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_output(s->client), s->count_out);
	s->count_in = s->count_out = NULL;
}

/* The client side's bufferevent settings, for a new one after STARTTLS too. */
static void
client_setup(struct session *s)
{
	size_t high = read_watermark(s->cfg->max_line_length);

	s->count_in = evbuffer_add_cb(bufferevent_get_input(s->client), count_in, s);
	s->count_out = evbuffer_add_cb(bufferevent_get_output(s->client), count_out, s);
	bufferevent_setcb(s->client, client_read, client_write, client_event, s);
	bufferevent_setwatermark(s->client, EV_READ, 0, high);
	bufferevent_set_max_single_read(s->client, READ_CHUNK);
	bufferevent_set_max_single_write(s->client, WRITE_CHUNK);
	bufferevent_setwatermark(s->client, EV_WRITE, WRITE_LOW, 0);
	bufferevent_enable(s->client, EV_READ | EV_WRITE);
	if (!s->client_tls)
		s->client_reader = reader_new(s->client, high, NULL, client_read,
		    client_event, s);	/* NULL: the bufferevent reads */
}

void
session_starttls(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->client);
	struct bufferevent *tls;
	SSL *ssl = tls_server_ssl(s->cfg);

	/* whatever the client sent behind STARTTLS before the handshake was
	 * written in clear by anyone on the path: it is never executed */
	if (evbuffer_get_length(in) > 0)
		log_info(s->id, "dropped %zu bytes sent in clear after STARTTLS",
		    evbuffer_get_length(in));
	evbuffer_drain(in, evbuffer_get_length(in));
	relay_client_restart(s);
	/* a literal the kernel was moving goes on over TLS, the buffered way */
	splice_end(s);
	stop_counting(s);
	/* the TLS layer reads through the plain bufferevent itself */
	reader_free(s->client_reader);
	s->client_reader = NULL;
	tls = ssl == NULL ? NULL : bufferevent_openssl_filter_new(s->proxy->base,
	    s->client, ssl, BUFFEREVENT_SSL_ACCEPTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (tls == NULL) {
		if (ssl != NULL)
			SSL_free(ssl);
		log_error(s->id, "STARTTLS: %s", tls_error());
		session_close(s, "TLS not available");
		return;
	}
	/* the "OK" is already in the plain layer's output, ahead of TLS */
	s->client = tls;
	s->client_tls = true;
	s->starttls = true;
	client_setup(s);
}

/* The client's address as text: host, port, and "host:port" for logs
 * ("[v6]:port"). */
static void
peer_address(struct session *s, const struct sockaddr *sa)
{
	int port = 0;

	log_address(sa, s->peer, sizeof(s->peer), s->peer_host, sizeof(s->peer_host));
	if (sa->sa_family == AF_INET) {
		port = ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
		memcpy(&s->peer_sa.in, sa, sizeof(struct sockaddr_in));
	} else if (sa->sa_family == AF_INET6) {
		port = ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
		memcpy(&s->peer_sa.in6, sa, sizeof(struct sockaddr_in6));
	} else {
		s->peer_sa.sa.sa_family = sa->sa_family;
	}
	snprintf(s->peer_port, sizeof(s->peer_port), "%d", port);
}

/* Unique across restarts: this process's start and pid, then the id. */
static void
make_key(struct session *s)
{
	static char instance[32];

	if (instance[0] == '\0')
		snprintf(instance, sizeof(instance), "%llx-%lx",
		    (unsigned long long)time(NULL), (unsigned long)getpid());
	snprintf(s->key, sizeof(s->key), "%s-%llu", instance,
	    (unsigned long long)s->id);
}

static void
session_unmake(struct session *s)
{
	if (s->idle_timer != NULL)
		event_free(s->idle_timer);
	if (s->resume != NULL)
		event_free(s->resume);
	relay_free(s->relay);
	response_free(s->response);
	credentials_free(s->creds);
	config_unref(s->cfg);
	free(s->via);
	free(s->end_text);
	free(s);
}

/* A session over the client's connection, or NULL (bev freed). */
static struct session *
session_make(const struct listener_info *li, struct bufferevent *bev, bool tls,
    const struct sockaddr *sa, const struct sockaddr *via)
{
	struct proxy *proxy = li->proxy;
	struct session *s;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		bufferevent_free(bev);
		return NULL;
	}
	s->proxy = proxy;
	s->cfg = config_ref(proxy->cfg);
	s->backend = &s->cfg->upstream;
	s->id = ++proxy->next_session_id;
	make_key(s);
	peer_address(s, sa);
	if (via != NULL) {
		char name[64];

		log_address(via, name, sizeof(name), NULL, 0);
		s->via = strdup(name);	/* for logs only: none when out of memory */
	}
	snprintf(s->listener, sizeof(s->listener), "%s", li->name);
	s->started = log_clock();
	s->tls_required = li->tls_required;
	s->client_tls = tls;
	s->client = bev;
	TAILQ_INIT(&s->pending);
	s->idle_timer = evtimer_new(proxy->base, idle_check, s);
	s->resume = event_new(proxy->base, -1, 0, resume_input, s);
	s->relay = relay_new(s);
	s->response = response_new();
	s->creds = credentials_new();
	if (s->idle_timer == NULL || s->resume == NULL || s->relay == NULL ||
	    s->response == NULL || s->creds == NULL) {
		bufferevent_free(s->client);
		session_unmake(s);
		return NULL;
	}
	return s;
}

void
session_begin(const struct listener_info *li, struct bufferevent *bev, bool tls,
    const struct sockaddr *sa, const struct sockaddr *via)
{
	struct proxy *proxy = li->proxy;
	struct session *s;
	enum limits_verdict v;

	if ((s = session_make(li, bev, tls, sa, via)) == NULL)
		return;
	TAILQ_INSERT_TAIL(&proxy->sessions, s, entry);
	proxy->nsessions++;
	metrics_session_opened();
	client_setup(s);
	session_client_activity(s);
	/* limits.c logs refusals, aggregated: a refused connection's own
	 * lines are debug lines, or a burst would flood the log */
	v = limits_admit(&s->peer_sa.sa, session_config(s),
	    s->client_activity);
	s->admitted = v == LIMITS_OK;	/* released in session_free */
	log_msg(v == LIMITS_OK ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG, s->id,
	    "connection from %s%s%s on %s%s, session %s", s->peer,
	    s->via != NULL ? " via " : "", s->via != NULL ? s->via : "", s->listener,
	    tls ? " (TLS)" : "",
	    s->key);
	if (proxy->shutting_down) {
		session_end_class(s, METRICS_END_SHUTDOWN, "shutting down");
		session_close(s, "Server shutting down");
		return;
	}
	if (v != LIMITS_OK) {
		log_debug(s->id, "refused: %s", limits_name(v));
		session_end_class(s, METRICS_END_LIMIT, limits_name(v));
		session_close(s, limits_reason(v));
		return;
	}
	if (config_routing(s->cfg)) {
		struct timeval tv = { (time_t)s->cfg->client_idle_timeout, 0 };

		/* the client logs in first: then its upstream is known */
		session_enter_state(s, SESSION_NOT_AUTHENTICATED);
		evtimer_add(s->idle_timer, &tv);
		if ((s->front = router_begin(s, true)) == NULL)
			session_close(s, "Out of memory");
		return;
	}
	s->connecting = upstream_connect(proxy, s->cfg, s->backend, s->id,
	    upstream_connected, s);
	if (s->connecting == NULL)
		session_close(s, "Out of memory");
}

int
session_route_to(struct session *s, const struct backend *b, const char *host,
    const char *port)
{
	forget_route(s);
	for (size_t i = 0; b == NULL && i < s->cfg->nbackends; i++)
		if (strcmp(s->cfg->backends[i].host, host) == 0 &&
		    strcmp(s->cfg->backends[i].port, port) == 0)
			b = &s->cfg->backends[i];
	if (b == NULL && strcmp(s->cfg->upstream.host, host) == 0 &&
	    strcmp(s->cfg->upstream.port, port) == 0)
		b = &s->cfg->upstream;
	if (b == NULL) {
		/* an address of the route's: the default upstream's settings */
		if ((s->route = shared_route_get(s->cfg, host, port)) == NULL)
			return -1;
		b = &s->route->b;
	}
	s->backend = b;
	session_enter_state(s, SESSION_CONNECTING);
	s->connecting = upstream_connect(s->proxy, s->cfg, s->backend, s->id,
	    upstream_connected, s);
	return s->connecting != NULL ? 0 : -1;
}

void
session_login_failed(struct session *s)
{
	/* a LOGIN after login fails too, and changes nothing */
	if (config_routing(s->cfg) && s->state == SESSION_NOT_AUTHENTICATED)
		s->reroute = true;
}

/* A routed login failed: the upstream goes, and the front reads the next
 * login, which may be another user's, who lives elsewhere. */
static void
reroute(struct session *s)
{
	s->reroute = false;
	log_debug(s->id, "login failed: back to the front, upstream closed");
	upstream_free(s);
	forget_route(s);
	relay_upstream_restart(s);
	relay_client_restart(s);
	response_reset(s);
	session_enter_state(s, SESSION_NOT_AUTHENTICATED);
	if ((s->front = router_begin(s, false)) == NULL)
		session_close(s, "Out of memory");
}

/* The client's input: the front's until login when routed, the relay's. */
static void
client_input(struct session *s)
{
	if (s->reroute && s->npending == 0 && relay_quiet(s) &&
	    !multiappend_in_progress(s) && s->state == SESSION_NOT_AUTHENTICATED)
		reroute(s);
	if (s->front != NULL && router_client_input(s, s->front))
		return;
	relay_client_input(s);
}

static void
close_flushed(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		session_free(s);
}

static void
close_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	session_free(arg);
}

static void
close_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	session_free(arg);
}

/*
 * Every way a session ends comes here.  An upload half-way upstream is
 * resolved first: the connection to the upstream is given up, what went up
 * is removed on a second connection, the client gets its tagged NO, and
 * the job's end closes the session with this reason.
 */
static bool
end_after_job(struct session *s, const char *bye_reason)
{
	if (s->end_reason != NULL || !multiappend_busy(s))
		return false;
	if ((s->end_reason = strdup(bye_reason != NULL ? bye_reason : "")) == NULL)
		return false;
	log_info(s->id, "ending (%s) once the MULTIAPPEND in progress is resolved",
	    bye_reason != NULL ? bye_reason : "client gone");
	upstream_free(s);
	return multiappend_upstream_gone(s);
}

void
session_close(struct session *s, const char *bye_reason)
{
	struct timeval tv = { CLOSE_FLUSH_SECONDS, 0 };

	if (s->closing)
		return;
	if (bye_reason == NULL)
		session_end_class(s, METRICS_END_CLIENT, "client gone");
	else
		session_end_class(s, METRICS_END_ERROR, bye_reason);
	if (end_after_job(s, bye_reason))
		return;
	if (s->end_reason != NULL)
		bye_reason = *s->end_reason != '\0' ? s->end_reason : NULL;
	s->closing = true;
	session_enter_state(s, SESSION_LOGOUT);
	if (s->connecting != NULL) {
		upstream_connect_cancel(s->connecting);
		s->connecting = NULL;
	}
	upstream_free(s);
	if (bye_reason != NULL && !response_upstream_said_bye(s))
		session_reply(s, "* BYE %s", bye_reason);
	/* flush what the client is owed, then close; a client that does not
	 * read gets CLOSE_FLUSH_SECONDS */
	session_client_reading(s, false);
	bufferevent_disable(s->client, EV_READ);
	bufferevent_setcb(s->client, NULL, close_flushed, close_event, s);
	bufferevent_setwatermark(s->client, EV_WRITE, 0, 0);
	/* never freed here: the callers still look at s->closing */
	event_del(s->idle_timer);
	evtimer_assign(s->idle_timer, s->proxy->base, close_timeout, s);
	if (evbuffer_get_length(bufferevent_get_output(s->client)) == 0 ||
	    s->client_gone)
		tv.tv_sec = 0;
	evtimer_add(s->idle_timer, &tv);
}

/* Who, from where, how much, how long, and how it ended: one line. */
static void
log_summary(struct session *s)
{
	/* what is still queued towards the client was never sent */
	stop_counting(s);
	if (s->spliced_literals > 0)
		log_debug(s->id, "literals moved by the kernel: %u, %llu bytes",
		    s->spliced_literals, (unsigned long long)s->spliced);
	log_msg(s->admitted ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG, s->id,
	    "session end: user=%s from=%s%s%s listener=%s tls=%s "
	    "in=%llu out=%llu duration=%.3fs commands=%u multiappends=%u "
	    "end=%s (%s)", credentials_user(s), s->peer,
	    s->via != NULL ? " via=" : "", s->via != NULL ? s->via : "", s->listener,
	    !s->client_tls ? "no" : s->starttls ? "starttls" : "yes",
	    (unsigned long long)s->bytes_in, (unsigned long long)s->bytes_out,
	    log_clock() - s->started, s->commands, s->multiappends,
	    metrics_end_name(s->end_class), s->end_text != NULL ? s->end_text : "");
}

static void
session_free(struct session *s)
{
	struct pending *p;

	session_end_class(s, METRICS_END_CLIENT, "client gone");
	log_summary(s);
	metrics_session_closed(s->end_class);
	multiappend_free(s);
	/* before the relay and the response handler, which hear of each */
	while ((p = TAILQ_FIRST(&s->pending)) != NULL)
		session_pending_free(s, p);
	if (s->connecting != NULL)
		upstream_connect_cancel(s->connecting);
	upstream_free(s);
	router_free(s->front);
	s->front = NULL;
	forget_route(s);
	reader_free(s->client_reader);
	bufferevent_free(s->client);
	free(s->selected);
	free(s->end_reason);
	TAILQ_REMOVE(&s->proxy->sessions, s, entry);
	s->proxy->nsessions--;
	if (s->admitted)
		limits_release(&s->peer_sa.sa);
	session_unmake(s);	/* the credentials are wiped there */
}

void
session_shutdown_all(struct proxy *proxy, const char *bye_reason)
{
	struct session *s, *next;

	proxy->shutting_down = true;
	for (s = TAILQ_FIRST(&proxy->sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		/* an upload half-way upstream finishes first (all or nothing),
		 * then its session ends */
		if (multiappend_busy(s)) {
			log_info(s->id, "shutting down after the MULTIAPPEND in progress");
			session_end_class(s, METRICS_END_SHUTDOWN, "shutting down");
			continue;
		}
		session_end_class(s, METRICS_END_SHUTDOWN, "shutting down");
		session_close(s, bye_reason);
	}
}

void
session_close_all(struct proxy *proxy, const char *bye_reason)
{
	struct session *s, *next;

	for (s = TAILQ_FIRST(&proxy->sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		session_close(s, bye_reason);
	}
}

bool
session_any_busy(const struct proxy *proxy)
{
	const struct session *s;

	TAILQ_FOREACH(s, &proxy->sessions, entry)
		if (multiappend_busy(s))
			return true;
	return false;
}

static void
client_read(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	(void)bev;
	session_client_activity(s);
	client_input(s);
	session_input_consumed(s);
}

/* Responses were read: relay them, and move an APPEND job on. */
static void
upstream_input(struct session *s)
{
	relay_upstream_input(s);
	multiappend_kick(s);
	session_input_consumed(s);
}

static void
client_write(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	(void)bev;
	session_client_activity(s);
	/* the client caught up: responses held back may flow again */
	if (s->upstream != NULL) {
		session_upstream_reading(s, true);
		upstream_input(s);
	}
}

static void
client_event(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	if (what & BEV_EVENT_CONNECTED) {
		SSL *ssl = bufferevent_openssl_get_ssl(bev);

		log_debug(s->id, "TLS with the client: %s",
		    ssl != NULL ? SSL_get_version(ssl) : "?");
		return;
	}
	if ((what & BEV_EVENT_ERROR) && s->client_tls &&
	    ERR_GET_LIB(bufferevent_get_openssl_error(bev)) != 0) {
		char why[256];

		ERR_error_string_n(bufferevent_get_openssl_error(bev), why, sizeof(why));
		log_info(s->id, "client TLS error: %s", why);
		session_end_class(s, METRICS_END_CLIENT, "client TLS error");
	} else if ((what & BEV_EVENT_EOF) || s->client_tls) {
		log_info(s->id, "client closed the connection");
		session_end_class(s, METRICS_END_CLIENT, "client closed the connection");
	} else {
		log_info(s->id, "client connection error: %s",
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		session_end_class(s, METRICS_END_CLIENT, "client connection error");
	}
	if (!s->closing && multiappend_client_gone(s)) {
		/* an upload is half-way upstream: finish it (all or nothing)
		 * before the session ends; the rest of a literal the kernel
		 * was moving goes where the output goes now */
		s->client_gone = true;
		splice_end(s);
		stop_counting(s);
		session_client_reading(s, false);
		bufferevent_disable(s->client, EV_READ | EV_WRITE);
		session_client_output(s);
		return;
	}
	session_free(s);
}

static void
upstream_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	upstream_input(arg);
}

static void
upstream_write(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	(void)bev;
	/* the upstream caught up: a replay or client input held back may
	 * flow again */
	multiappend_kick(s);
	if (!s->closing && !s->client_gone) {
		session_client_reading(s, true);
		client_input(s);
		session_input_consumed(s);
	}
}

static void
upstream_event(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;
	const char *bye = "Connection to the upstream server lost";

	(void)bev;
	if (what & BEV_EVENT_EOF) {
		/* what was read before the EOF is still delivered */
		upstream_input(s);
		if (s->closing)
			return;
		if (response_upstream_said_bye(s)) {
			log_info(s->id, "upstream closed the connection after BYE");
			session_end_class(s, METRICS_END_UPSTREAM, "upstream said BYE");
		} else {
			log_warn(s->id, "upstream closed the connection");
			session_end_class(s, METRICS_END_UPSTREAM, "upstream closed");
		}
	} else if (what & BEV_EVENT_TIMEOUT) {
		log_warn(s->id, "upstream silent for %u seconds, closing",
		    s->cfg->upstream_idle_timeout);
		session_end_class(s, METRICS_END_UPSTREAM, "upstream silent");
		bye = "Upstream server not responding";
	} else {
		log_warn(s->id, "upstream connection error: %s",
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		session_end_class(s, METRICS_END_UPSTREAM, "upstream connection error");
	}
	upstream_free(s);
	/* an upload half-way upstream is cleaned up on a new connection
	 * first; the job ends the session then */
	if (!multiappend_upstream_gone(s))
		session_close(s, bye);
}

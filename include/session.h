/*
 * session.h — one client session: its life (accept, upstream connect,
 * state, timeouts, a clean end), the daemon's list of sessions, and what
 * the other parts of the proxy may ask of a session.  struct session is
 * private to session.c; the parts that act on a session (relay, response
 * handler, command table, APPEND job, credentials) keep their own state in
 * their own files and reach it through the functions below.
 */
#ifndef MAPPEND_SESSION_H
#define MAPPEND_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "config.h"
#include "metrics.h"

struct append_job;
struct bufferevent;
struct command_entry;
struct credentials;
struct event_base;
struct evbuffer;
struct evdns_base;
struct front;
struct pending;
struct relay;
struct reply_ops;
struct response;
struct session;
struct sockaddr;

/* The daemon: everything sessions share. */
struct proxy {
	struct event_base *base;
	struct evdns_base *dns;
	/* The configuration new sessions take (a reload replaces it); each
	 * session holds a reference to its own, session_config. */
	const struct config *cfg;
	TAILQ_HEAD(, session) sessions;
	unsigned nsessions;
	uint64_t next_session_id;
	uint64_t next_tag;		/* tags of the proxy's own commands */
	bool shutting_down;
};

enum session_state {
	SESSION_CONNECTING,	/* upstream connect in progress */
	SESSION_GREETING,	/* waiting for the upstream's greeting */
	SESSION_CAPABILITY,	/* asking the upstream's capabilities */
	SESSION_NOT_AUTHENTICATED,
	SESSION_AUTHENTICATED,
	SESSION_SELECTED,
	SESSION_LOGOUT,		/* flushing the last output, then closing */
};

/* What a listener tells its sessions. */
struct listener_info {
	struct proxy *proxy;
	bool tls;			/* implicit TLS */
	bool tls_required;		/* plaintext logins refused before TLS */
	bool proxy_protocol;		/* a PROXY header starts each connection */
	char name[64];			/* the address bound, for log lines */
};

/*
 * A session over a client connection that is a bufferevent already (an
 * accepted socket, see admission.h; a bufferevent pair in the fuzzer);
 * tls: it is TLS.  peer: the client; via: the load balancer that named it
 * in a PROXY header, or NULL.  The session copies what it keeps of li.
 */
void session_begin(const struct listener_info *li, struct bufferevent *, bool tls,
    const struct sockaddr *peer, const struct sockaddr *via);
/* STARTTLS was answered OK: drop what the client pipelined behind it and
 * continue over TLS. */
void session_starttls(struct session *);
void session_enter_state(struct session *, enum session_state);
/* A line to the client, CRLF added. */
void session_reply(struct session *, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* End the session: "* BYE reason" (unless NULL), flush, close both sides. */
void session_close(struct session *, const char *bye_reason);
/* Shutting down: end every session with nothing in progress; one whose
 * MULTIAPPEND is half-way upstream ends once that is resolved. */
void session_shutdown_all(struct proxy *, const char *bye_reason);
/* End every session now; half-way MULTIAPPENDs are undone first. */
void session_close_all(struct proxy *, const char *bye_reason);
/* Some session still has a MULTIAPPEND half-way upstream. */
bool session_any_busy(const struct proxy *);
/* Start or stop reading the client (pause during proxy work, backpressure). */
void session_client_reading(struct session *, bool on);
void session_upstream_reading(struct session *, bool on);
/* Read the client's input again soon (from the event loop, not from here). */
void session_resume_input(struct session *);

/* What the other parts ask of a session. */
uint64_t session_id(const struct session *);
struct proxy *session_proxy(const struct session *);
/* The configuration the session started with: everything done for it
 * (its upstream, second connections, limits, timeouts) follows this one. */
const struct config *session_config(const struct session *);
/* Routing (router.h): the session's front until login, or NULL. */
struct front *session_front(const struct session *);
void session_set_front(struct session *, struct front *);
/* Connect to the user's upstream: backend b, or (b NULL) the address
 * host:port, with the settings of the backend at that address, else the
 * default upstream's.  -1 when out of memory. */
int session_route_to(struct session *, const struct backend *b,
    const char *host, const char *port);
/* A login through the relay failed: a routed session goes back to its
 * front once the relay is quiet. */
void session_login_failed(struct session *);
/* The upstream the session talks to, its second connections too: a
 * backend of session_config's (the default one until a route says). */
const struct backend *session_backend(const struct session *);
enum session_state session_state(const struct session *);
bool session_closing(const struct session *);
/* The client left while a job runs on: what it would be told is lost. */
bool session_client_gone(const struct session *);
bool session_client_tls(const struct session *);
/* No plaintext login on this listener before TLS. */
bool session_tls_required(const struct session *);
/* The client's address, for the upstream's ID. */
/* The session's id as the upstream hears it (ID "x-session-id"), unique
 * across restarts: "67a1f2c3-1a2b-17" (start, pid, session). */
const char *session_key(const struct session *);
/* The client's address for log lines: "192.0.2.1:5143", "[::1]:5143". */
const char *session_peer(const struct session *);
const char *session_peer_host(const struct session *);
const char *session_peer_port(const struct session *);
bool session_has_upstream(const struct session *);
/* The upstream is there and greeted: client commands may be relayed. */
bool session_relaying(const struct session *);
/* The mailbox selected upstream (NULL: none), and whether read-write. */
const char *session_selected(const struct session *, bool *rw);
/* A SELECT or EXAMINE was answered OK (name), or none is selected (NULL). */
void session_select(struct session *, const char *name, size_t len, bool rw);

/* The parts other files keep for a session, each opaque here. */
struct relay *session_relay(const struct session *);
struct response *session_response(const struct session *);
struct credentials *session_credentials(const struct session *);
struct append_job *session_job(const struct session *);
void session_set_job(struct session *, struct append_job *);
/* How the session ends, for its last log line and the metrics: the first
 * call wins (the cause, not what followed from it); text is short. */
void session_end_class(struct session *, enum metrics_end, const char *text);
/* A client command began; a MULTIAPPEND (several messages) was handled. */
void session_note_command(struct session *);
void session_note_multiappend(struct session *);

enum session_side { SESSION_CLIENT, SESSION_UPSTREAM };
struct evbuffer *session_client_input(struct session *);
/* The client's output, or a sink when the client is gone. */
struct evbuffer *session_client_output(struct session *);
/* NULL when there is no upstream connection. */
struct evbuffer *session_upstream_input(struct session *);
struct evbuffer *session_upstream_output(struct session *);
/* Output towards side is full: true, and the other side is not read until
 * it drains, so that what one side sends faster than the other takes sits
 * in neither buffer. */
bool session_output_full(struct session *, enum session_side);
/* The relay is at an upstream literal with n bytes still to come and none
 * buffered: the kernel may move them to the client (splice.h; the relay
 * hears of each part, relay_upstream_spliced); otherwise the next read
 * ends where the literal does, so that its buffer goes to the client whole
 * instead of copied.  True when they went through at once (the relay goes
 * on), false when it waits: the relay is called again when the move is
 * over, or the next data is read. */
bool session_literal_rest(struct session *, uint64_t n);
/* A literal is being moved: the relay leaves the upstream alone. */
bool session_splicing(const struct session *);

/* The commands in flight upstream, oldest first. */
struct pending *session_pending_add(struct session *, const char *tag,
    size_t taglen, const struct command_entry *);
void session_pending_free(struct session *, struct pending *);
unsigned session_pending_count(const struct session *);
struct pending *session_pending_oldest(const struct session *);
/* The oldest command in flight with this tag, or NULL. */
struct pending *session_pending_find(const struct session *, const char *tag,
    size_t taglen);
/* Send a command of the proxy's own upstream (tag and CRLF added); ops hear
 * back with ctx.  NULL when out of memory. */
struct pending *session_command(struct session *, const struct reply_ops *,
    void *ctx, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The same, without the command text: the caller writes "tag ..." itself. */
/* ctx is being freed: the answers to its commands still in flight are
 * dropped when they come, never handed to it. */
void session_forget_ctx(struct session *, const void *ctx);
struct pending *session_command_pending(struct session *, const struct reply_ops *,
    void *ctx);
/* Mailbox names as IMAP compares them: INBOX in any case is INBOX. */
bool session_same_mailbox(const char *a, const char *b);

#endif

/*
 * session.h — one client session and the parts that act on it: the relay
 * (framing in both directions), the command table (what the proxy handles
 * itself) and the response handler (what it learns from the upstream).
 * Declarations are grouped by the file that defines them.
 */
#ifndef MAPPEND_SESSION_H
#define MAPPEND_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "capability.h"
#include "config.h"
#include "command.h"
#include "parser.h"

struct bufferevent;
struct evbuffer;
struct event;
struct event_base;
struct evdns_base;
struct reader;
struct relay;
struct sockaddr;
struct upstream_connect;
struct command_entry;
struct pending;
struct append_job;
struct backchannel;

/* The daemon: everything sessions share. */
struct proxy {
	struct event_base *base;
	struct evdns_base *dns;
	struct config *cfg;
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

/* What a second upstream connection needs to log in as the session's user,
 * kept in memory only and wiped when the session ends. */
struct credentials {
	char *user;		/* authentication identity (LOGIN user, PLAIN authcid) */
	char *authzid;		/* PLAIN authorization identity, may be NULL */
	char *password;
	size_t user_len, authzid_len, password_len;
};

struct session {
	TAILQ_ENTRY(session) entry;
	struct proxy *proxy;
	uint64_t id;
	enum session_state state;
	char peer[64];			/* client address for logs */
	char peer_host[48], peer_port[8];
	bool client_tls;		/* the client's connection is TLS now */
	bool tls_required;		/* no plaintext login on this listener before TLS */

	struct bufferevent *client;
	struct bufferevent *upstream;
	struct reader *client_reader;	/* plain sockets: large reads (reader.h) */
	struct reader *upstream_reader;
	struct upstream_connect *connecting;
	struct event *idle_timer;	/* client inactivity; then the close timer */
	struct event *resume;		/* reads the client's input again, from the loop */
	double client_activity;		/* event_base time of the last client I/O */

	struct upstream_caps caps;	/* what the upstream offers now */
	char *selected;			/* mailbox selected upstream, or NULL */
	bool selected_rw;

	struct relay *relay;		/* framing both ways (relay.c) */

	/* upstream responses (response.c) */
	bool resp_drop;			/* the current response is not for the client */
	struct pending *resp_owner;	/* internal command consuming the current response */
	bool upstream_bye;		/* the upstream said BYE: no BYE of ours */
	bool caps_pending;		/* a CAPABILITY of ours is in flight */
	bool preauth;			/* the greeting was PREAUTH */

	struct pending_list pending;
	unsigned npending;
	bool closing;

	struct credentials creds;	/* empty until a login succeeded */
	struct append_job *append;	/* an APPEND being spooled or replayed */
	struct backchannel *backchannel; /* the proxy's second connection */
	bool client_gone;		/* the client left while a job runs on */
};

/* session.c */
/* What a listener tells its sessions. */
struct listener_info {
	struct proxy *proxy;
	bool tls;			/* implicit TLS */
	bool tls_required;		/* plaintext logins refused before TLS */
};

void session_accept(const struct listener_info *, int fd, const struct sockaddr *,
    int socklen);
/* STARTTLS was answered OK: drop what the client pipelined behind it and
 * continue over TLS. */
void session_starttls(struct session *);
void session_enter_state(struct session *, enum session_state);
/* A line to the client, CRLF added. */
void session_reply(struct session *, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* End the session: "* BYE reason" (unless NULL), flush, close both sides. */
void session_close(struct session *, const char *bye_reason);
void session_shutdown_all(struct proxy *, const char *bye_reason);
/* Start or stop reading the client (pause during proxy work, backpressure). */
void session_client_reading(struct session *, bool on);
void session_upstream_reading(struct session *, bool on);
/* Read the client's input again soon (from the event loop, not from here). */
void session_resume_input(struct session *);

uint64_t session_id(const struct session *);
const struct config *session_config(const struct session *);
struct relay *session_relay(const struct session *);
const struct upstream_caps *session_caps(const struct session *);
bool session_closing(const struct session *);
/* The upstream is there and greeted: client commands may be relayed. */
bool session_relaying(const struct session *);

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

/* The commands in flight upstream, oldest first. */
struct pending *session_pending_add(struct session *, const char *tag,
    size_t taglen, const struct command_entry *);
void session_pending_free(struct session *, struct pending *);
unsigned session_pending_count(const struct session *);
/* Send a command of the proxy's own upstream; done gets its tagged answer. */
struct pending *session_internal_command(struct session *,
    void (*done)(struct session *, struct pending *, const struct answer *),
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same, without the command text: the caller writes "tag ..." itself. */
struct pending *session_internal_pending(struct session *,
    void (*done)(struct session *, struct pending *, const struct answer *));
/* Mailbox names as IMAP compares them: INBOX in any case is INBOX. */
bool session_same_mailbox(const char *a, const char *b);

#endif

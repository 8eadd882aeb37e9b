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
#include "parser.h"

struct bufferevent;
struct evbuffer;
struct event;
struct event_base;
struct evdns_base;
struct reader;
struct sockaddr;
struct upstream_connect;

/* Tags longer than this are refused with BAD: no client needs more, and a
 * pipeline of queued commands must stay small. */
#define SESSION_MAX_TAG 128
/* Commands in flight upstream before the proxy stops reading the client. */
#define SESSION_MAX_PIPELINE 1000
/* Astring arguments kept per command (mailbox names, LOGIN credentials). */
#define SESSION_MAX_ARGS 2
#define SESSION_MAX_ARG_LEN 1024

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

enum command_kind {
	CMD_OTHER,
	CMD_APPEND,
	CMD_AUTHENTICATE,
	CMD_CAPABILITY,
	CMD_CLOSE,		/* CLOSE and UNSELECT: leave the selected state */
	CMD_COMPRESS,
	CMD_EXAMINE,
	CMD_IDLE,
	CMD_LOGIN,
	CMD_LOGOUT,
	CMD_SELECT,
	CMD_STARTTLS,
	CMD_INTERNAL,		/* sent by the proxy itself */
};

struct session;
struct pending;
struct append_job;
struct backchannel;

/* What a second upstream connection needs to log in as the session's user,
 * kept in memory only and wiped when the session ends. */
struct credentials {
	char *user;		/* authentication identity (LOGIN user, PLAIN authcid) */
	char *authzid;		/* PLAIN authorization identity, may be NULL */
	char *password;
	size_t user_len, authzid_len, password_len;
};

/* Called when the tagged answer of an internal command arrives. */
typedef void (*pending_done_cb)(struct session *, struct pending *,
    const char *line, const struct imap_segment *seg);
/* Called with each segment of an untagged response that arrives while the
 * internal command is the oldest in flight; true: it is the command's own
 * (consumed, not forwarded to the client). */
typedef bool (*pending_untagged_cb)(struct session *, struct pending *,
    const char *line, const struct imap_segment *seg);

/* A command sent upstream whose tagged answer has not arrived yet. */
struct pending {
	TAILQ_ENTRY(pending) entry;
	enum command_kind kind;
	pending_done_cb done;		/* internal commands only */
	pending_untagged_cb untagged;	/* internal commands only, may be NULL */
	unsigned long cookie;		/* the internal command's own datum */
	unsigned want_args;		/* astring arguments still to capture */
	unsigned nargs;			/* captured astring arguments */
	size_t arglen[SESSION_MAX_ARGS];
	char *arg[SESSION_MAX_ARGS];	/* wiped when freed: may hold a password */
	size_t taglen;
	char tag[];
};

TAILQ_HEAD(pending_list, pending);

/* Who gets the next "+" continuation from the upstream. */
enum plus_owner {
	PLUS_NONE,
	PLUS_CLIENT,		/* the client's own synchronizing literal */
	PLUS_PROXY,		/* a {n+} the proxy turned into {n} */
	PLUS_REPLAY,		/* a literal of a spooled APPEND being replayed */
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
	double client_activity;		/* event_base time of the last client I/O */

	struct upstream_caps caps;	/* what the upstream offers now */
	char *selected;			/* mailbox selected upstream, or NULL */
	bool selected_rw;

	/* client -> upstream */
	struct imap_parser cmd_parser;
	size_t cmd_scanned;
	struct pending *cmd_current;	/* the command being read, NULL between commands */
	uint64_t cmd_literal_left;	/* literal bytes still to move */
	bool cmd_literal_drop;		/* ...to be discarded instead */
	bool cmd_discard;		/* the rest of this command is refused: drop it */
	int cmd_capture_arg;		/* literal being captured into this arg, or -1 */
	enum plus_owner plus;
	bool plus_held;			/* literal held until the upstream's "+" */
	unsigned raw_lines;		/* client lines to pass unparsed (SASL, DONE) */
	bool in_authenticate;		/* an AUTHENTICATE exchange is going on */
	bool auth_wait;			/* ...and the client must wait for "+" or the answer */

	/* upstream -> client */
	struct imap_parser resp_parser;
	size_t resp_scanned;
	uint64_t resp_literal_left;
	bool resp_drop;			/* the current response is not for the client */
	bool upstream_bye;		/* the upstream said BYE: no BYE of ours */
	bool caps_pending;		/* a CAPABILITY of ours is in flight */
	bool preauth;			/* the greeting was PREAUTH */
	bool resume_client;		/* client input may continue after this response */

	struct pending *resp_owner;	/* internal command consuming the current response */

	struct pending_list pending;
	unsigned npending;
	bool closing;

	struct credentials creds;	/* empty until a login succeeded */
	struct append_job *append;	/* an APPEND being spooled or replayed */
	struct backchannel *backchannel; /* the proxy's second connection */
	bool append_reading;		/* ...and its command is still arriving */
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
void session_input_consumed(struct session *);
/* Start or stop reading the client (pause during proxy work, backpressure). */
void session_client_reading(struct session *, bool on);
void session_upstream_reading(struct session *, bool on);
struct pending *session_pending_add(struct session *, const char *tag,
    size_t taglen, enum command_kind);
void session_pending_free(struct session *, struct pending *);
/* Send a command of the proxy's own upstream; done gets its tagged answer. */
struct pending *session_internal_command(struct session *, pending_done_cb done,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same, without the command text: the caller writes "tag ..." itself. */
struct pending *session_internal_pending(struct session *, pending_done_cb done);
/* The client's output, or a sink when the client is gone. */
struct evbuffer *session_client_output(struct session *);
/* Mailbox names as IMAP compares them: INBOX in any case is INBOX. */
bool session_same_mailbox(const char *a, const char *b);

/* relay.c */
void relay_client_input(struct session *);
void relay_upstream_input(struct session *);
/* Output towards one side grew: stop reading the other until it drains. */
bool relay_backpressure(struct session *, struct bufferevent *to);
size_t relay_response_line_max(const struct session *);
/* The command being read was answered early: skip what is left of it. */
void relay_abandon_command(struct session *);

/* multiappend.c */
/* An APPEND command starts (its first segment is about to be handed in). */
enum command_verdict multiappend_begin(struct session *, const char *buf,
    const struct imap_segment *);
/* Each segment of the command, the first included; drains it from in. */
void multiappend_segment(struct session *, struct evbuffer *in, const char *buf,
    size_t len, const struct imap_segment *);
/* n bytes of the current literal, to spool or to drop; drains them. */
void multiappend_literal(struct session *, struct evbuffer *in, size_t n);
/* Move the job on: start it when its turn has come, feed the upstream. */
void multiappend_kick(struct session *);
/* The upstream's "+" for a replayed literal. */
void multiappend_continuation(struct session *);
/* The client's own APPEND (replayed as one command) was answered. */
void multiappend_answered(struct session *, struct pending *);
/* The client left: true when the job keeps the session alive to finish. */
bool multiappend_client_gone(struct session *);
/* The upstream connection broke: true when the job takes over the end of
 * the session (it cleans up on a new connection first). */
bool multiappend_upstream_gone(struct session *);
void multiappend_free(struct session *);
/* Part of an upload is upstream: the session must not end before the job. */
bool multiappend_busy(const struct session *);
/* The client's view: MULTIAPPEND and the APPENDLIMIT it may use. */
uint64_t multiappend_limit(const struct session *);

/* credentials.c */
/* A LOGIN or AUTHENTICATE succeeded: keep what a second connection needs. */
void credentials_learn(struct session *, const struct pending *);
/* A client line of an AUTHENTICATE exchange (a SASL response). */
void credentials_note_sasl(struct session *, const char *line, size_t len);
void credentials_clear(struct credentials *);
/* Can the proxy open a second connection as this session's user? */
bool credentials_usable(const struct session *);

/* command.c */
/* First segment of a client command; decides how the relay treats it. */
enum command_verdict {
	VERDICT_RELAY,		/* forward to the upstream */
	VERDICT_DONE,		/* handled by the proxy, nothing forwarded */
	VERDICT_CLOSE,		/* the session is being closed */
	VERDICT_STARTTLS,	/* answered OK: TLS starts after this line */
};
enum command_verdict command_start(struct session *, const char *buf,
    const struct imap_segment *);
/* Keep the astring arguments the proxy needs (mailbox, credentials). */
void command_capture(struct session *, struct pending *, const char *buf,
    const struct imap_segment *);
/* A literal of this size follows: the argument index it fills, or -1. */
int command_capture_literal(struct session *, struct pending *, uint64_t size);
/* The last segment of a relayed command went upstream. */
void command_sent(struct session *, struct pending *);
/* A continuation line (SASL response, DONE) went upstream. */
void command_raw_line_sent(struct session *);

/* response.c */
/* One upstream response segment: forwards it (rewritten where needed) or
 * consumes it.  Returns false when the session closed. */
bool response_segment(struct session *, const char *buf, size_t len,
    const struct imap_segment *);
/* The greeting was read before the session began (upstream STARTTLS):
 * greet the client, learn the capabilities anew. */
void response_greeting_read(struct session *, const char *greeting);

#endif

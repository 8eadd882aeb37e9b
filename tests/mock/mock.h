/*
 * mock.h — the mock upstream IMAP server used by the integration tests: a
 * real TCP server on one libevent loop, with profiles of legacy servers
 * (with and without UIDPLUS, LITERAL+, MULTIAPPEND), fault injection, and
 * optionally TLS (STARTTLS and implicit) and a Gmail-like XOAUTH2.
 * State is shared by all connections of the process.  Declarations are
 * grouped by the file that defines them.
 */
#ifndef MOCK_H
#define MOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mock_util.h"
#include "parser.h"

struct bufferevent;
struct event;
struct event_base;
struct evbuffer;
struct evbuffer_cb_entry;
struct ssl_ctx_st;

/* Limits: everything a peer can make the mock hold is bounded. */
#define MOCK_LINE_MAX		65536	/* one segment, CRLF included */
#define MOCK_LITERAL_MAX	(1024ULL * 1024 * 1024)	/* message literal */
#define MOCK_ARG_LITERAL_MAX	65536	/* literal outside APPEND's messages */
#define MOCK_ARG_BYTES_MAX	(1024 * 1024)	/* all arguments of one command */
#define MOCK_ARGS_MAX		8192	/* arguments of one command */
#define MOCK_APPEND_MSGS_MAX	10000	/* messages in one APPEND */
#define MOCK_LITERALMINUS_MAX	4096	/* {n+} limit of LITERAL- (RFC 7888) */
#define MOCK_TAG_MAX		128
#define MOCK_KEYWORDS_MAX	64	/* keywords on one message */
#define MOCK_NAME_MAX		1024	/* mailbox, user names */
#define MOCK_DELAY_MAX		600000	/* ms */
#define MOCK_OUTPUT_HIGH	(4 * 1024 * 1024)	/* stop reading above */
#define MOCK_LINGER_MS		2000	/* drain input after a BYE */
#define MOCK_TLS_RAW_HIGH	(256 * 1024)	/* TLS: encrypted, unsent */

enum mock_profile {
	MOCK_PROFILE_LEGACY,
	MOCK_PROFILE_NOUIDPLUS,
	MOCK_PROFILE_NOLITERALPLUS,
	MOCK_PROFILE_LITERALMINUS,
	MOCK_PROFILE_MULTIAPPEND,
};

/* System flags */
#define MOCK_F_ANSWERED	0x01
#define MOCK_F_FLAGGED	0x02
#define MOCK_F_DELETED	0x04
#define MOCK_F_SEEN	0x08
#define MOCK_F_DRAFT	0x10

struct mock_flags {
	unsigned sys;		/* MOCK_F_* */
	unsigned nkw;
	char **kw;		/* keywords, each malloc'd */
};

/* Message bytes, shared by copies and by FETCH output still queued
 * (evbuffer references), hence the reference count. */
struct mock_body {
	unsigned refs;
	size_t len;
	char data[];
};

struct mock_msg {
	uint32_t uid;
	uint64_t modseq;	/* when its flags last changed */
	uint64_t changer;	/* the connection that changed them */
	struct mock_flags flags;
	char date[32];		/* INTERNALDATE, without quotes */
	struct mock_body *body;
};

struct mock_user;

struct mock_mailbox {
	char *name;
	struct mock_user *user;
	uint32_t uidvalidity;
	uint32_t uidnext;
	struct mock_msg **msgs;	/* ascending UIDs */
	size_t nmsgs, cap;
	uint64_t modseq;	/* largest modseq of a flag change */
	uint64_t expunges;	/* messages expunged so far */
	unsigned selected;	/* connections with it selected */
	struct mock_mailbox *next;
};

struct mock_user {
	char *name;
	char *pass;
	struct mock_mailbox *mailboxes;	/* INBOX first */
	uint64_t usage;		/* bytes of all its messages */
	struct mock_user *next;
};

struct mock_stats {
	uint64_t appends;	/* APPEND commands */
	uint64_t messages;	/* messages stored by APPEND */
	uint64_t multi;		/* APPENDs with more than one message */
	uint64_t maxmsgs;	/* most messages in one APPEND */
	uint64_t expunge;	/* EXPUNGE commands */
	uint64_t uidexpunge;	/* UID EXPUNGE commands */
	uint64_t close;		/* CLOSE commands */
	uint64_t logins;	/* successful LOGIN/AUTHENTICATE */
	uint64_t connections;	/* accepted connections */
	uint64_t starttls;	/* STARTTLS commands answered OK */
	uint64_t tls;		/* connections that completed a TLS handshake */
};

/* Faults refer to the k-th APPEND message (1-based) counted since start or
 * since the last XMOCK FAULT; 0 = off. */
struct mock_faults {
	uint64_t count;
	uint64_t append_no;
	char *append_no_text;
	uint64_t append_drop;
	uint64_t append_drop_after;
	uint64_t append_stall_after;	/* stored, then silence */
	uint64_t append_garbage_after;	/* stored, then an answer to no command */
	uint64_t append_longline_after;	/* stored, then a line over 16 MiB */
	bool copy_drop;			/* the next COPY: dropped before it runs */
	bool copy_drop_after;		/* ...or after it ran */
};

struct mock_conn;

struct mock_server {
	struct event_base *base;
	enum mock_profile profile;
	struct mock_user *users;
	char *master_name;		/* NULL: no master user */
	char *master_pass;
	bool greeting_caps;
	bool login_caps;
	bool sasl_ir;			/* advertise SASL-IR */
	bool require_tls;		/* no LOGIN/AUTHENTICATE before TLS */
	const char *oauth_token;	/* the valid XOAUTH2 bearer token */
	struct ssl_ctx_st *tls_ctx;	/* NULL: no TLS (no STARTTLS either) */
	char *extra_caps;		/* advertised as they are, or NULL */
	const char *personal_prefix;	/* new mailboxes live under it, or NULL */
	uint64_t quota;			/* bytes per user, 0 = none */
	uint64_t appendlimit;		/* APPENDLIMIT=n, 0 = none */
	unsigned delay_ms;
	FILE *log;
	struct mock_faults faults;
	struct mock_stats stats;
	uint32_t next_uidvalidity;
	uint64_t next_conn_id;
	uint64_t modseq;
	struct mock_conn *conns;
};

extern struct mock_server mock_srv;

/* One argument of the command being received. */
enum mock_arg_kind {
	MOCK_ARG_ATOM,
	MOCK_ARG_STRING,	/* quoted string or literal, value unquoted */
	MOCK_ARG_LPAREN,
	MOCK_ARG_RPAREN,
};

struct mock_arg {
	enum mock_arg_kind kind;
	bool literal;
	char *s;		/* NUL-terminated value (atoms and strings) */
	size_t len;
	size_t off;		/* offset in its segment (first segment: raw text) */
};

enum mock_conn_state {
	MOCK_ST_NOAUTH,
	MOCK_ST_AUTH,
	MOCK_ST_SELECTED,
	MOCK_ST_LOGOUT,
};

/* What the connection's input is waiting for. */
enum mock_wait {
	MOCK_W_SEGMENT,		/* a command line, or the rest of one */
	MOCK_W_LITERAL,		/* literal bytes */
	MOCK_W_SASL,		/* a SASL response line */
	MOCK_W_IDLE,		/* DONE */
	MOCK_W_DELAY,		/* a tagged answer waits for its timer */
	MOCK_W_CLOSING,		/* flush, then close */
	MOCK_W_STALL,		/* a fault: read and ignore everything, answer nothing */
};

/* Which SASL exchange a MOCK_W_SASL line belongs to. */
enum mock_sasl {
	MOCK_SASL_PLAIN,
	MOCK_SASL_XOAUTH2,
	MOCK_SASL_XOAUTH2_FAILED,	/* the client acknowledges the error */
};

enum mock_sink {
	MOCK_SINK_ARG,		/* literal becomes an argument */
	MOCK_SINK_MSG,		/* literal is an APPEND message */
	MOCK_SINK_DISCARD,	/* the command already failed */
};

struct mock_cmd;
struct mock_append;

struct mock_conn {
	uint64_t id;
	struct bufferevent *bev;	/* raw, or the TLS filter over it */
	struct bufferevent *raw;	/* the socket */
	struct event *raw_flushed;	/* TLS: raw's output drained */
	struct evbuffer_cb_entry *raw_out_cb;
	bool tls;			/* under TLS (handshake maybe pending) */
	bool tls_up;			/* the handshake is complete */
	bool starttls;			/* OK sent: switch to TLS next */
	bool tls_notified;		/* close_notify sent */
	enum mock_sasl sasl;
	struct event *timer;		/* delay and linger */
	struct imap_framer framer;	/* the client's input, framed */
	enum mock_conn_state state;
	enum mock_wait wait;
	bool throttled;			/* output above MOCK_OUTPUT_HIGH */
	bool peer_eof;
	bool close_after;		/* close once the answer is out */
	bool dead;			/* free at the next safe point */
	bool shut;			/* our side shut down (lingering) */

	struct mock_user *user;
	struct mock_mailbox *mbox;	/* selected mailbox */
	bool readonly;
	/* the client's view of the selected mailbox */
	uint32_t *view;			/* UIDs by sequence number - 1 */
	size_t nview, capview;
	uint32_t view_uidnext;
	uint64_t view_modseq;
	uint64_t view_expunges;

	/* the command being received */
	bool in_cmd;
	char tag[MOCK_TAG_MAX + 1];
	const struct mock_cmd *cmd;
	size_t argi;			/* first argument after the name */
	struct mock_arg *args;
	size_t nargs, capargs, argbytes;
	char *line;			/* first segment's text (XMOCK) */
	const char *fail_status;	/* "NO"/"BAD" once the command failed */
	char *fail_text;
	struct mock_append *append;

	/* literal being received */
	enum mock_sink sink;
	uint64_t lit_size;		/* the framer counts what is left */
	char *lit_buf;
	size_t lit_got;

	/* answer of the current command, held until its tagged line */
	struct evbuffer *resp;

	struct mock_conn *next, *prev;
};

/* Command table entry. */
#define MOCK_S_NOAUTH	0x1
#define MOCK_S_AUTH	0x2
#define MOCK_S_SELECTED	0x4
#define MOCK_S_ANY	(MOCK_S_NOAUTH | MOCK_S_AUTH | MOCK_S_SELECTED)

struct mock_cmd {
	const char *name;	/* "FETCH", "UID FETCH" */
	unsigned states;
	bool no_expunge;	/* FETCH/STORE/SEARCH: no EXPUNGE responses */
	void (*exec)(struct mock_conn *);
};

/* mock_store.c */
struct mock_user *mock_store_user_add(const char *name, const char *pass);
struct mock_user *mock_store_user_find(const char *name);
struct mock_mailbox *mock_store_mailbox_find(struct mock_user *u,
    const char *name);
struct mock_mailbox *mock_store_mailbox_create(struct mock_user *u,
    const char *name);
void mock_store_mailbox_delete(struct mock_mailbox *mb);
bool mock_store_is_inbox(const char *name);
size_t mock_store_lower_bound(const struct mock_mailbox *mb, uint32_t uid);
struct mock_msg *mock_store_msg_find(const struct mock_mailbox *mb,
    uint32_t uid);
struct mock_body *mock_store_body_new(size_t len);
void mock_store_body_ref(struct mock_body *b);
void mock_store_body_unref(struct mock_body *b);
/* Takes over flags (moved) and a reference to body; date NULL = now. */
struct mock_msg *mock_store_msg_add(struct mock_mailbox *mb,
    struct mock_body *body, struct mock_flags *flags, const char *date);
/* Removes the message at index i (no notification). */
void mock_store_msg_expunge(struct mock_mailbox *mb, size_t i);
void mock_store_flags_changed(struct mock_mailbox *mb, struct mock_msg *m,
    uint64_t conn_id);
void mock_store_free(void);

/* flags (mock_store.c) */
void mock_flags_free(struct mock_flags *f);
int mock_flags_copy(struct mock_flags *dst, const struct mock_flags *src);
/* Returns -1 when the keyword limit is reached. */
int mock_flags_add_kw(struct mock_flags *f, const char *kw);
/* op: 0 replace, '+' add, '-' remove.  Returns whether f changed, -1 when
 * the keyword limit is reached. */
int mock_flags_apply(struct mock_flags *f, const struct mock_flags *with,
    int op);
bool mock_flags_has_kw(const struct mock_flags *f, const char *kw);
void mock_flags_format(struct evbuffer *out, const struct mock_flags *f);
/* One flag name: 1 system (bit in *bit), 0 keyword, -1 invalid. */
int mock_flag_parse(const char *s, unsigned *bit);

/* mock_session.c */
void mock_conn_new(int fd, bool tls);
void mock_conn_free_all(void);
void mock_conn_untagged(struct mock_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void mock_conn_tagged(struct mock_conn *c, const char *status,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void mock_conn_continue(struct mock_conn *c, const char *text);
void mock_conn_bye(struct mock_conn *c, const char *text);
void mock_conn_drop(struct mock_conn *c);
void mock_conn_fail(struct mock_conn *c, const char *status,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void mock_conn_select(struct mock_conn *c, struct mock_mailbox *mb,
    bool readonly);
void mock_conn_deselect(struct mock_conn *c);
void mock_conn_sync(struct mock_conn *c, bool expunges, struct evbuffer *out);
void mock_conn_wait_line(struct mock_conn *c, enum mock_wait w);
/* A fault: send these bytes (may be none), then never answer again. */
void mock_conn_stall(struct mock_conn *c, const char *bytes, size_t len);
void mock_conn_log(struct mock_conn *c, const char *text, size_t len);
/* A mailbox changed: IDLE connections that have it selected learn now. */
void mock_notify(struct mock_mailbox *mb);
size_t mock_conn_nargs(const struct mock_conn *c);
struct mock_arg *mock_conn_arg(struct mock_conn *c, size_t i);
void mock_conn_args_truncate(struct mock_conn *c, size_t n);

/* mock_commands.c */
const struct mock_cmd *mock_cmd_find(const char *name, const char *sub);
void mock_capabilities(struct evbuffer *out, bool authenticated, bool tls);
bool mock_arg_is_string(const struct mock_arg *a);
bool mock_arg_is(const struct mock_arg *a, const char *word);
int mock_arg_number(const struct mock_arg *a, uint64_t *n);
void mock_put_quoted(struct evbuffer *out, const char *s);
void mock_cmd_auth_line(struct mock_conn *c, const char *line, size_t len);
void mock_cmd_idle_line(struct mock_conn *c, const char *line, size_t len);

/* mock_tls.c */
/* Loads the server context into mock_srv.tls_ctx; false (reason on stderr)
 * when the files are unusable. */
bool mock_tls_init(const char *cert, const char *key);
void mock_tls_free(void);
/* A TLS filter (server side, handshake pending) over raw, which it owns. */
struct bufferevent *mock_tls_filter(struct bufferevent *raw);
/* Sends close_notify if the handshake is complete. */
void mock_tls_close_notify(struct bufferevent *tls);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384 alpn=imap" */
void mock_tls_describe(struct bufferevent *tls, char *buf, size_t len);

/* mock_append.c */
struct mock_append *mock_append_new(void);
void mock_append_free(struct mock_append *a);
/* A literal of an APPEND command was announced: is it a message?  Counts
 * it for the statistics. */
bool mock_append_is_message(struct mock_conn *c);
/* Decide on a message literal; returns true to receive it into c->lit_buf
 * (MOCK_SINK_MSG), false after failing the command. */
bool mock_append_literal(struct mock_conn *c, uint64_t size);
void mock_append_literal_done(struct mock_conn *c);
void mock_cmd_append(struct mock_conn *c);

/* mock_message.c: commands on the selected mailbox's messages */
void mock_cmd_fetch(struct mock_conn *c);
void mock_cmd_uid_fetch(struct mock_conn *c);
void mock_cmd_store(struct mock_conn *c);
void mock_cmd_uid_store(struct mock_conn *c);
void mock_cmd_search(struct mock_conn *c);
void mock_cmd_uid_search(struct mock_conn *c);
void mock_cmd_copy(struct mock_conn *c);
void mock_cmd_uid_copy(struct mock_conn *c);
void mock_cmd_expunge(struct mock_conn *c);
void mock_cmd_uid_expunge(struct mock_conn *c);
void mock_cmd_close(struct mock_conn *c);
/* Parse a flag list or single flag(s) at args [*i..); advances *i. */
int mock_parse_flags(struct mock_conn *c, size_t *i, bool need_parens,
    struct mock_flags *f, const char **why);

#endif

/*
 * command.h — the client commands mappend cares about, as a table whose
 * entries carry their behaviour (tmux's cmd_entry, Dovecot's
 * imap4rev1_commands[]), and the commands in flight upstream.
 *
 * Every client command is looked up here.  A command not in the table is
 * relayed untouched.  An entry may answer the command itself (STARTTLS,
 * COMPRESS), keep arguments (a mailbox, LOGIN credentials), or take the
 * client's input over: APPEND spools it (multiappend.c), AUTHENTICATE and
 * IDLE receive continuation lines.  The relay only moves bytes; what a
 * command means is said here, once.
 */
#ifndef MAPPEND_COMMAND_H
#define MAPPEND_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "parser.h"

struct evbuffer;
struct session;
struct pending;

/* Tags longer than this are refused with BAD: no client needs more, and a
 * pipeline of queued commands must stay small. */
#define COMMAND_MAX_TAG 128
/* Astring arguments kept per command (mailbox names, LOGIN credentials). */
#define COMMAND_MAX_ARGS 2
#define COMMAND_MAX_ARG_LEN 1024

/* What the relay does with a command after its entry saw the first segment. */
enum command_verdict {
	VERDICT_RELAY,		/* forward it upstream */
	VERDICT_DONE,		/* answered by the proxy: drop the rest of it */
	VERDICT_TAKEN,		/* the entry owns the input from this segment on */
	VERDICT_STARTTLS,	/* answered OK: TLS starts after this line */
	VERDICT_CLOSE,		/* the session is being closed */
};

/* The tagged answer to a command, as the entries need it. */
struct answer {
	const char *line;		/* the whole line (CRLF not included) */
	size_t len;
	const struct imap_segment *seg;	/* its tokens */
	bool ok, no, bad;
};

struct command_entry {
	const char *name;
	unsigned args;		/* leading astring arguments to keep */
	/* The first segment arrived; NULL: relay it. */
	enum command_verdict (*start)(struct session *, const char *buf,
	    const struct imap_segment *);
	/* The command owns the client's input (VERDICT_TAKEN): every frame
	 * of it, the first segment included.  It consumes each frame through
	 * fr (parser.h), so that literal counts stay exact. */
	void (*input)(struct session *, struct imap_framer *fr, struct evbuffer *in,
	    const struct imap_frame *);
	/* Its last segment went upstream. */
	void (*sent)(struct session *, struct pending *);
	/* One continuation line of it (SASL response, DONE) goes upstream. */
	void (*line)(struct session *, struct pending *, const char *buf, size_t len);
	/* Its tagged answer arrived, before the client sees it. */
	void (*answered)(struct session *, struct pending *, const struct answer *);
};

/*
 * How one of the proxy's own commands hears back, on whichever connection
 * it went: the session's upstream (session_command) or a second connection
 * (backchannel_command).  ctx is the sender's.
 */
struct reply_ops {
	/* Each segment of an untagged response that arrives while the command
	 * is the oldest in flight; true: it is the command's own, the client
	 * never sees it.  NULL: none is. */
	bool (*untagged)(void *ctx, const char *buf, const struct imap_segment *);
	/* Literal data of a response it took, piece by piece (second
	 * connection only: on the session's, such data is dropped). */
	void (*literal)(void *ctx, const char *data, size_t n);
	/* The tagged answer. */
	void (*tagged)(void *ctx, const struct answer *a);
};

/* A command sent upstream whose tagged answer has not arrived yet. */
struct pending {
	TAILQ_ENTRY(pending) entry;
	const struct command_entry *cmd;	/* the proxy's own: command_internal */
	const struct reply_ops *ops;	/* the proxy's own only */
	void *ctx;			/* ...and their sender's datum */
	unsigned want_args;		/* astring arguments still to capture */
	unsigned nargs;			/* captured astring arguments */
	size_t arglen[COMMAND_MAX_ARGS];
	char *arg[COMMAND_MAX_ARGS];	/* wiped when freed: may hold a password */
	size_t taglen;
	char tag[];
};

TAILQ_HEAD(pending_list, pending);

/* The entry of the commands the proxy sends on its own. */
extern const struct command_entry command_internal;

/* The entry for a command name (an entry that relays for any other). */
const struct command_entry *command_lookup(const char *name, size_t len);
/* Keep the astring arguments the proxy needs (mailbox, credentials). */
void command_capture(struct pending *, const char *buf, const struct imap_segment *);
/* A literal of this size follows: the argument index it fills, or -1. */
int command_capture_literal(struct pending *, uint64_t size);
/* Literal bytes of that argument. */
void command_capture_bytes(struct pending *, int arg, struct evbuffer *in, size_t n);
/* Read the status of a tagged answer line. */
void command_answer(struct answer *, const char *buf, const struct imap_segment *);

#endif

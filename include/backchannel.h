/*
 * backchannel.h — a second upstream connection that the proxy drives itself,
 * logged in as the session's user, to remove the messages of a failed
 * MULTIAPPEND without touching the client's own selected state, or after
 * the client's upstream connection broke.
 */
#ifndef MAPPEND_BACKCHANNEL_H
#define MAPPEND_BACKCHANNEL_H

#include <stddef.h>
#include <stdint.h>

struct session;
struct spool;

/* A message that may have been stored although its UID is unknown (the
 * connection broke before the answer came): found by UID range, size and
 * content. */
struct removal_unknown {
	uint64_t off, size;	/* its bytes in the spool */
};

struct removal {
	const char *mailbox;		/* for logs */
	const char *mailbox_wire;	/* as sent upstream */
	uint32_t *uids;			/* known UIDs to remove */
	size_t nuids;
	uint32_t uidnext;		/* the mailbox's UIDNEXT before; 0 unknown */
	struct removal_unknown *unknown;
	size_t nunknown;
	struct spool *spool;		/* stays open until done is called */
};

/*
 * error is NULL when the work is done; otherwise it says why not (the
 * callee logs every UID it could not remove).  refusal is the upstream's
 * answer ("NO [OVERQUOTA] ...") when it refused the COPY of a staged upload.
 * done is called later, never from inside the call that started the work.
 */
typedef void (*backchannel_done_cb)(struct session *, const char *error,
    const char *refusal);

/* Remove messages.  Copies what it needs from r. */
void backchannel_remove(struct session *, const struct removal *r,
    backchannel_done_cb done);

/* For upstreams without UIDPLUS: COPY every message of the staging mailbox
 * (quoted names) into the target, atomically as RFC 3501 requires of COPY,
 * then delete the staging mailbox, whatever the COPY's outcome. */
void backchannel_copy(struct session *, const char *staging_wire,
    const char *target_wire, backchannel_done_cb done);

/* DELETE a (staging) mailbox. */
void backchannel_delete(struct session *, const char *mailbox_wire,
    backchannel_done_cb done);
/* The session ends: drop the connection, done is not called. */
void backchannel_free(struct session *);

#endif

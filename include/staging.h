/*
 * staging.h — the staging mailbox of a MULTIAPPEND to an upstream without
 * UIDPLUS.  Such a server can neither name the UIDs it assigned nor expunge
 * by UID, so removing exactly our messages from the target is impossible:
 * the messages go into a mailbox of the proxy's own, created for the
 * command, and one COPY (all or nothing by RFC 3501) moves them into the
 * target on a second connection.  The staging mailbox is deleted whatever
 * happens.
 */
#ifndef MAPPEND_STAGING_H
#define MAPPEND_STAGING_H

#include <stddef.h>
#include <stdint.h>

struct backend;
struct config;
struct login;
struct fingerprint;
struct proxy;
struct session;
struct staging;

enum staging_op {
	STAGING_NAME,		/* choose its name (NAMESPACE), create nothing */
	STAGING_CREATE,		/* on the client's own connection */
	STAGING_COPY,		/* second connection: COPY 1:* target, then DELETE */
	STAGING_DELETE,		/* on the client's connection, or a second one */
};

/* error: the operation failed (logged); refusal: the upstream's answer to
 * CREATE or COPY when it refused ("NO [OVERQUOTA] ..."). */
typedef void (*staging_done_cb)(void *ctx, const char *error, const char *refusal);

/* A fresh staging mailbox name under prefix (may be NULL), quoted for the
 * wire; NULL on failure. */
char *staging_name(const char *prefix);
/* The staging mailbox's name (quoted): chosen by NAME. */
const char *staging_mailbox(const struct staging *);

/*
 * Run op: on s's connection for NAME (in the personal namespace) and
 * CREATE, and for DELETE when s is not NULL; otherwise on a second
 * connection to cfg's upstream (the session's configuration; a reference
 * is held) logged in with login (copied: new connections after a
 * broken one use it too).  staging_wire names the staging mailbox (not for
 * CREATE), target_wire COPY's target, msgs the staged messages (COPY: to
 * find out whether a COPY whose answer was lost ran).  done is called
 * later, never from inside this call; NULL when out of memory.
 */
struct staging *staging_start(struct proxy *, const struct config *cfg,
    const struct backend *, uint64_t log_id, struct session *s, const struct login *, enum staging_op,
    const char *staging_wire, const char *target_wire,
    const struct fingerprint *msgs, size_t nmsgs, staging_done_cb,
    void *ctx);
/* Stop (the session ends): nothing is called back. */
void staging_free(struct staging *);

#endif

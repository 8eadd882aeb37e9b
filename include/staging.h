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

#include <stdint.h>

struct login;
struct proxy;
struct session;
struct staging;

enum staging_op {
	STAGING_CREATE,		/* on the client's own connection */
	STAGING_COPY,		/* second connection: COPY 1:* target, then DELETE */
	STAGING_DELETE,		/* on the client's connection, or a second one */
};

/* error: the operation failed (logged); refusal: the upstream's answer to
 * CREATE or COPY when it refused ("NO [OVERQUOTA] ..."). */
typedef void (*staging_done_cb)(void *ctx, const char *error, const char *refusal);

/* A fresh staging mailbox name, quoted for the wire; NULL on failure. */
char *staging_name(void);

/*
 * Run op on the staging mailbox (quoted): on s's connection for CREATE, and
 * for DELETE when s is not NULL; otherwise on a second connection logged in
 * with login.  target_wire is COPY's target.  done is called later, never
 * from inside this call; NULL when out of memory.
 */
struct staging *staging_start(struct proxy *, uint64_t log_id, struct session *s,
    const struct login *, enum staging_op, const char *staging_wire,
    const char *target_wire, staging_done_cb, void *ctx);
/* Stop (the session ends): nothing is called back. */
void staging_free(struct staging *);

#endif

/*
 * rollback.h — removing exactly what a failed MULTIAPPEND added.
 *
 * What to remove is decided by rollback_plan, a pure function of what was
 * sent, answered and seen.  The removal is always the same protocol:
 * UID STORE uids +FLAGS.SILENT (\Deleted), then UID EXPUNGE uids — never
 * EXPUNGE or CLOSE, which would also remove messages the user had marked
 * \Deleted.  It runs on the client's own connection when the client has the
 * mailbox selected read-write and every UID is known (the client sees the
 * EXPUNGEs, its sequence numbers stay right); otherwise on a second
 * connection, which also finds messages whose answer never came: UID
 * SEARCH from the mailbox's UIDNEXT before the upload, RFC822.SIZE, then
 * the content (fingerprint.h), so that a message the client did not send
 * is never taken.  A server may still be storing what a lost connection had
 * sent it: those messages are looked for again until all are found or the
 * mailbox has been quiet for rollback_settle.
 */
#ifndef MAPPEND_ROLLBACK_H
#define MAPPEND_ROLLBACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fingerprint.h"

struct backend;
struct config;
struct login;
struct proxy;
struct rollback;
struct session;

enum upload_state {
	UPLOAD_SPOOLED,		/* not sent */
	UPLOAD_SENT,		/* sent, no answer (yet) */
	UPLOAD_STORED,		/* answered OK */
	UPLOAD_REFUSED,		/* answered NO/BAD: not stored */
};

/* What is known of one message of an upload. */
struct upload_msg {
	enum upload_state state;
	uint32_t uid;		/* from APPENDUID; 0 unknown */
	struct fingerprint fp;	/* its content, to find it when the UID is not */
};

struct rollback_plan {
	uint32_t *uids;			/* stored, UID known: removed by UID */
	size_t nuids;
	struct fingerprint *unknown;	/* stored, UID unknown: looked for first */
	size_t nunknown;
	bool own_connection;		/* may run on the client's connection */
	bool settle;			/* the unknown may still arrive: wait for them */
};

/*
 * From each message's fate: stored with a known UID -> removed by UID;
 * stored without one, or sent when no answer can come any more
 * (answers_lost: the connection broke or was given up) -> looked for.
 * own_connection when nothing is to be looked for, answers can still come,
 * and the client has the mailbox selected read-write (selected_rw);
 * settle when messages are looked for whose answers were lost.
 * 0, or -1 when out of memory.
 */
int rollback_plan(const struct upload_msg *, size_t n, bool answers_lost,
    bool selected_rw, struct rollback_plan *);
bool rollback_plan_empty(const struct rollback_plan *);
void rollback_plan_free(struct rollback_plan *);

/* Which mailbox, as the plan's messages went into it. */
struct rollback_target {
	const char *mailbox;		/* for log lines */
	const char *mailbox_wire;	/* as sent upstream (quoted) */
	uint32_t uidnext;		/* before the upload; 0 unknown */
	const char *user;		/* for log lines */
	uint32_t uidvalidity;		/* the mailbox must still have it; 0: any */
};

/* error is NULL when everything the plan named is gone; otherwise why not
 * (each UID left behind has been logged). */
typedef void (*rollback_done_cb)(void *ctx, const char *error);

/*
 * Carry a plan out: on s's own upstream connection when the plan allows
 * (s may be NULL otherwise), else on a second connection to the backend
 * (copied; of cfg, the session's configuration) logged in with login
 * (copied).  done is
 * called later, never from inside this call; NULL when out of memory.
 */
struct rollback *rollback_start(struct proxy *, const struct config *cfg,
    const struct backend *, uint64_t log_id, struct session *s, const struct login *,
    const struct rollback_plan *, const struct rollback_target *,
    rollback_done_cb, void *ctx);
/* The UIDs found (NULL and 0 with an error). */
typedef void (*rollback_found_cb)(void *ctx, const char *error,
    const uint32_t *uids, size_t n);

/*
 * Only look, on a second connection: which of these messages are in the
 * mailbox among the UIDs from t->uidnext on (by content), e.g.
 * after a COPY whose answer was lost (so waiting, as for a settling plan,
 * for what the server may still be doing).  Nothing is removed.
 */
struct rollback *rollback_find(struct proxy *, const struct config *cfg,
    const struct backend *, uint64_t log_id, const struct login *,
    const struct fingerprint *,
    size_t n, const struct rollback_target *, rollback_found_cb, void *ctx);

/* Stop (the session ends): nothing is called back. */
void rollback_free(struct rollback *);

#endif

/*
 * backchannel.h — a second upstream connection of the proxy's own, logged
 * in as the session's user (or as the master user for it), that carries
 * the proxy's commands one at a time: removals the client's connection
 * cannot take (another mailbox selected, the connection broken, a crash
 * recovered), and the COPY of a staged upload.  It needs no session: crash
 * recovery opens one at start.
 */
#ifndef MAPPEND_BACKCHANNEL_H
#define MAPPEND_BACKCHANNEL_H

#include <stdint.h>

struct backchannel;
struct backend;
struct config;
struct login;
struct proxy;
struct reply_ops;

/* What the owner hears: logged in (ready), or the connection failed at any
 * point (failed: nothing more comes; the owner still closes it).  Never
 * called from inside the call that opened the connection. */
struct backchannel_owner {
	void (*ready)(void *ctx);
	void (*failed)(void *ctx, const char *why);
};

/* Connect to backend b (b's TLS, cfg's timeouts; a reference to cfg is
 * held, b is copied) and log in with l (copied: the caller may clear it).
 * log_id is the session id for log lines (0: the daemon). */
struct backchannel *backchannel_open(struct proxy *, const struct config *cfg,
    const struct backend *b, uint64_t log_id, const struct login *l,
    const struct backchannel_owner *, void *ctx);
/* One command ("tag " and CRLF added) once ready, one at a time: ops hear
 * its untagged data, literal data and tagged answer. */
void backchannel_command(struct backchannel *, const struct reply_ops *, void *ctx,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Done with it: LOGOUT when it can, then it goes away by itself; nothing is
 * called back any more.  NULL is fine. */
void backchannel_close(struct backchannel *);

#endif

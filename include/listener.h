/*
 * listener.h — the sockets clients connect to, one per "listen" line (one
 * per address of a name).
 */
#ifndef MAPPEND_LISTENER_H
#define MAPPEND_LISTENER_H

#include <stddef.h>

struct config;
struct listener_plan;
struct proxy;

/* Open every listener of proxy->cfg; -1 (logged) when one cannot be opened. */
int listener_open_all(struct proxy *);
/* Start accepting on every listener (they are opened disabled, so that
 * start-up, crash recovery included, is over before the first client). */
void listener_accept_all(void);
/* Stop accepting: close every listening socket. */
void listener_close_all(void);

/*
 * A reload, in two steps so that nothing changes unless everything can:
 * listener_prepare binds the sockets of cfg's lines whose host and port
 * are not bound yet (not accepting; -1 with the reason in err, nothing
 * changed), then listener_commit puts cfg's listeners in place (the new
 * ones accept, those no longer in cfg close, those kept follow cfg's
 * options; running sessions are not touched) and appends what changed to
 * summary ("new listener 127.0.0.1:1143; closed listener ..."), or
 * listener_abort closes what prepare bound.
 */
int listener_prepare(struct proxy *, const struct config *cfg,
    struct listener_plan **, char *err, size_t errlen);
void listener_commit(struct listener_plan *, const struct config *cfg,
    char *summary, size_t summarylen);
void listener_abort(struct listener_plan *);

#endif

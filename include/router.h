/*
 * router.h — per-user routing: with route_map or auth_http set, a session
 * starts without an upstream.  Its front answers the client until login
 * (greeting, CAPABILITY, NOOP, ID, LOGOUT, STARTTLS), reads LOGIN or
 * AUTHENTICATE PLAIN / LOGIN, asks the route source where the user lives,
 * connects there and replays the login, whose answer the client then gets
 * as the upstream gave it.  The route sources (the map file, the auth_http
 * endpoint) are the daemon's, replaced on reload.
 */
#ifndef MAPPEND_ROUTER_H
#define MAPPEND_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct front;
struct proxy;
struct router_sources;
struct session;

/* The route sources for cfg (at start, and on reload with the new one): the
 * map file read, the endpoint's client made; NULL with the reason in err.
 * Then in force (commit), or dropped (abort: a failed reload keeps those in
 * force).  Sessions ask the sources in force when their client logs in. */
struct router_sources *router_prepare(struct proxy *, const struct config *cfg,
    char *err, size_t errlen);
void router_commit(struct router_sources *);
void router_abort(struct router_sources *);
/* At exit: everything freed (no session is left). */
void router_shutdown(void);

/* A routed session begins: greet the client, read its login. */
struct front *router_begin(struct session *, bool greet);
void router_free(struct front *);
/*
 * The client's input while the front has it (true), or from now on the
 * relay's (false): once the chosen upstream is greeted, the login is put
 * back at the start of the client's input for the relay to carry.
 */
bool router_client_input(struct session *, struct front *);
/* The upstream chosen could not be reached (or refused the connection):
 * the client's login gets NO [UNAVAILABLE]; the session then ends. */
void router_upstream_failed(struct session *, struct front *, const char *why);
/* The login through the relay failed: the session goes back to its front
 * (and drops the upstream), so that another user is routed anew. */
bool router_login_failed(struct session *);

#endif

/*
 * upstream.h — opening connections to the upstream server: name lookup,
 * connect with a timeout, socket options.  The caller gets a connected
 * bufferevent or the reason there is none.
 */
#ifndef MAPPEND_UPSTREAM_H
#define MAPPEND_UPSTREAM_H

#include <stdint.h>

struct backend;
struct bufferevent;
struct config;
struct proxy;
struct upstream_connect;

/*
 * bev is NULL on failure and error says why; on success the callee owns
 * bev.  greeting is the server's greeting line when it had to be read
 * already (STARTTLS), NULL when it is still to come on bev.
 */
typedef void (*upstream_connected_cb)(struct bufferevent *bev,
    const char *greeting, const char *error, void *arg);

/* To backend b (of cfg, or a copy of one with another address: a route's),
 * with cfg's timeout and b's TLS (a reference to cfg and a copy of b are
 * held until the callback or the cancel). */
struct upstream_connect *upstream_connect(struct proxy *, const struct config *cfg,
    const struct backend *b, uint64_t session, upstream_connected_cb, void *arg);
/* Abandon a connect in progress; the callback is not called. */
void upstream_connect_cancel(struct upstream_connect *);

/* Socket options for a relayed TCP connection (either side). */
void upstream_tune_socket(int fd);

#endif

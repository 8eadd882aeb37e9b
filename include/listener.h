/*
 * listener.h — the sockets clients connect to, one per "listen" line.
 */
#ifndef MAPPEND_LISTENER_H
#define MAPPEND_LISTENER_H

struct proxy;

/* Open every configured listener; -1 (logged) when one cannot be opened. */
int listener_open_all(struct proxy *);
/* Start accepting on every listener (they are opened disabled, so that
 * start-up, crash recovery included, is over before the first client). */
void listener_accept_all(void);
/* Stop accepting: close every listening socket. */
void listener_close_all(void);

#endif

/*
 * listener.h — the sockets clients connect to, one per "listen" line.
 */
#ifndef MAPPEND_LISTENER_H
#define MAPPEND_LISTENER_H

struct proxy;

/* Open every configured listener; -1 (logged) when one cannot be opened. */
int listener_open_all(struct proxy *);
/* Stop accepting: close every listening socket. */
void listener_close_all(void);

#endif

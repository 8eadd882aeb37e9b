/*
 * admission.h — from an accepted socket to a session: where the listener
 * wants one, the PROXY protocol header first (only from the configured
 * networks, within proxy_protocol_timeout), then a plain or TLS bufferevent
 * for session_begin.
 */
#ifndef MAPPEND_ADMISSION_H
#define MAPPEND_ADMISSION_H

#include <sys/socket.h>

struct listener_info;

/* An accepted connection on li; fd is ours from here on. */
void admission_accept(const struct listener_info *li, int fd,
    const struct sockaddr *peer, int socklen);
/* Connections still waiting for their PROXY header. */
unsigned admission_waiting(void);
/* Close them (shutdown). */
void admission_close_all(void);

#endif

/*
 * harness_haproxy.h — a private HAProxy (Debian's haproxy package) in TCP
 * mode in front of mappend, for the PROXY protocol tests.
 *
 * HAProxy cannot bind port 0 and say which port it got, so the harness
 * binds and listens on 127.0.0.1:0 itself and hands each socket to HAProxy
 * by descriptor ("bind fd@3"): no port is ever released and taken again,
 * so no other process can slip in between, and a client may connect before
 * HAProxy has started (the kernel queues it in the socket's backlog).
 *
 * The binary: $HAPROXY_BIN, else haproxy on PATH, /usr/sbin or
 * /usr/local/sbin; missing, the test fails and says how to install it.
 */
#ifndef MAPPEND_TEST_HARNESS_HAPROXY_H
#define MAPPEND_TEST_HARNESS_HAPROXY_H

#include <stddef.h>
#include <sys/types.h>

#define HAPROXY_MAX_FRONTENDS 8

struct haproxy {
	pid_t pid;
	char dir[256];		/* temp dir: haproxy.cfg, haproxy.log */
	char conf[300];
	char log[300];		/* HAProxy's stderr and its traffic log */
	int port[HAPROXY_MAX_FRONTENDS];	/* frontend i on 127.0.0.1 */
	size_t n;
};

/*
 * Start HAProxy with one frontend per entry of servers (NULL-terminated),
 * each relaying to a backend of one server line, e.g.
 * "127.0.0.1:1143 send-proxy-v2".  h->port[i] is frontend i's port.
 * extra: lines appended to every backend (may be NULL).
 */
void haproxy_start(struct haproxy *h, const char *const *servers,
    const char *extra);
/* Stop it (SIGTERM) and remove its directory; a HAProxy that had died on
 * its own fails the test, with its log. */
void haproxy_stop(struct haproxy *h);
/* Its log so far, malloc'ed. */
char *haproxy_log(const struct haproxy *h);

#endif

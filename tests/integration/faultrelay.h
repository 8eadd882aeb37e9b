/*
 * faultrelay.h — a fault-injecting TCP relay for the integration tests.
 *
 * A real server cannot be told to fail at message k the way the mock can,
 * so the relay sits between mappend and the server (mappend's upstream is
 * the relay's port).  It forwards both directions byte for byte and reads
 * along: on the proxy->server stream it notes the tags ("mappend.N") of
 * commands whose text starts "APPEND", on the server->proxy stream it
 * counts the tagged answers to those, and at the k-th answer it does the
 * fault it was armed with.
 *
 * A fault is armed for the next connection the relay accepts and only for
 * that one: every later connection (mappend's second connection for the
 * rollback, a new session) passes cleanly.
 *
 * The relay runs in a forked child (poll loop, blocking writes), driven
 * through a control socket; it dies with the test process.
 */
#ifndef MAPPEND_TEST_FAULTRELAY_H
#define MAPPEND_TEST_FAULTRELAY_H

#include <stdbool.h>
#include <sys/types.h>

enum faultrelay_action {
	FAULTRELAY_NONE,	/* relay only (still counts the answers) */
	FAULTRELAY_DROP,	/* close both connections */
	FAULTRELAY_GARBAGE,	/* FAULTRELAY_GARBAGE_LINE to the proxy, then
				 * nothing more from the server */
	FAULTRELAY_LONGLINE,	/* "* OK xxx..." of FAULTRELAY_LONGLINE_SIZE
				 * bytes to the proxy, then nothing more from
				 * the server */
	FAULTRELAY_STALL,	/* nothing more either way; the sockets stay
				 * open until the proxy closes its own (see
				 * catch_up_ms) */
};

/* with a literal inside: what follows it is the same answer */
#define FAULTRELAY_GARBAGE_LINE \
    "mappend.999999 OK [APPENDUID 1 99] not {5}\r\nyours NIL NIL\r\n"
#define FAULTRELAY_LONGLINE_SIZE ((size_t)17 << 20)	/* over mappend's 16 MiB */

struct faultrelay_fault {
	enum faultrelay_action action;
	unsigned k;		/* at the k-th answer to an APPEND of mappend's */
	bool forward_kth;	/* the k-th answer goes to the proxy first; else
				 * it is withheld (the server stored message k,
				 * the proxy never hears of it) */
	bool crlf;		/* FAULTRELAY_LONGLINE: the line ends with CRLF */
	bool wait_idle;		/* DROP, GARBAGE, LONGLINE: done once the server
				 * has answered every APPEND it was sent (the
				 * answers after the k-th are dropped), and then
				 * nothing more reaches it: it has nothing left
				 * to store once the proxy hears of the fault.
				 * Else done at once, and the server may go on
				 * storing what it had received */
	unsigned catch_up_ms;	/* FAULTRELAY_STALL: 0, what the proxy sends
				 * after the k-th answer is dropped.  Else a
				 * server that catches up late: what the proxy
				 * sends from the (k+1)-th APPEND on is held, and
				 * reaches the server this long after the proxy
				 * has closed its side (then the server's input
				 * ends, and its answers are dropped) */
};

/* What the relay saw since the last arm. */
struct faultrelay_report {
	unsigned accepted;	/* connections accepted (the first had the fault) */
	unsigned answers;	/* answers to APPENDs on the armed connection */
	bool fired;		/* the fault was done */
};

struct faultrelay {
	pid_t pid;
	int port;		/* where mappend connects */
	int ctl;		/* control socket to the child */
};

/* Listen on a loopback port the kernel chooses, relaying to
 * 127.0.0.1:upstream_port. */
void faultrelay_start(struct faultrelay *, int upstream_port);
/* The next connection accepted gets this fault; the counts start again. */
void faultrelay_arm(struct faultrelay *, const struct faultrelay_fault *);
void faultrelay_report(struct faultrelay *, struct faultrelay_report *);
/* Close every connection and end the child. */
void faultrelay_stop(struct faultrelay *);

#endif

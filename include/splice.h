/*
 * splice.h — literal bytes moved by the kernel: what arrives on one plain
 * socket goes to another through a pipe with splice(2), without entering
 * user space.  This file owns the pipes (a few kept for reuse by the whole
 * process), the move loop with its backpressure (the source is not read
 * while the pipe cannot be emptied into the destination) and the size
 * below which a copy costs less.  The owner (session.c) decides when a
 * move may start (the relay's framer is at a literal, both sides are plain
 * sockets, nothing is queued towards the destination) and hears of every
 * byte moved, so that the framer keeps the literal's count.
 */
#ifndef MAPPEND_SPLICE_H
#define MAPPEND_SPLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evbuffer;
struct splice;
struct timeval;

struct splice_ops {
	/* n bytes left the source for the pipe */
	void (*taken)(void *arg, size_t n);
	/* n bytes reached the destination */
	void (*sent)(void *arg, size_t n);
	/*
	 * The move stopped, heard from the event loop once splice_move has
	 * returned false.  what 0: every byte asked for is at the
	 * destination, or the kernel cannot splice these sockets (the rest
	 * goes the buffered way; splice_worth says no from now on).
	 * Otherwise BEV_EVENT_READING with EOF, ERROR or TIMEOUT (the
	 * source), or BEV_EVENT_WRITING | BEV_EVENT_ERROR (the destination),
	 * with errno set where the kernel said why.  The owner calls
	 * splice_free, here or later; the splice does nothing more.
	 */
	void (*ended)(void *arg, short what);
};

/* The least number of bytes still to come for which a move pays (a copy
 * is cheaper below it); false too once the kernel refused to splice. */
bool splice_worth(uint64_t n);

/*
 * A move of n bytes from the socket from to the socket to (both
 * non-blocking, nothing of the n bytes read yet, nothing queued towards
 * to), started by splice_move.  The source is read only while the pipe is
 * empty, and waited for until it holds a good part of the rest; timeout
 * (may be NULL) ends the move after that long without data from the
 * source, as a bufferevent's read timeout would.  NULL when no pipe can be
 * had (the caller copies instead).
 */
struct splice *splice_new(struct event_base *, int from, int to, uint64_t n,
    const struct timeval *timeout, const struct splice_ops *, void *arg);
/* Move what the sockets allow now: true when it is over with what 0 (see
 * ended; ended is not called then), false when the rest waits for the
 * sockets and ended tells the end, from the event loop (an end found here,
 * such as the source's EOF, too: nobody is freed under the caller). */
bool splice_move(struct splice *);
/* Bytes taken from the source that are not at the destination yet. */
size_t splice_pending(const struct splice *);
/* Stop and free: the pending bytes are added to rest (NULL: dropped). */
void splice_free(struct splice *, struct evbuffer *rest);
/* Close the pipes kept for reuse (at exit). */
void splice_pool_free(void);

#endif

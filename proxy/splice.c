/*
 * splice.c — literal bytes moved by the kernel (see splice.h): the pipes,
 * the move loop, and the size below which copying is cheaper.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "splice.h"

/*
 * Below this many bytes still to come a literal is copied: a move costs
 * two system calls per pipe load, the wait for the destination's queue to
 * drain first, and a wakeup of its own; the buffered path reads such a
 * literal with its neighbours in one large read (BENCHMARKS.md, "The
 * threshold").  A build may set another for measuring.
 */
#ifndef SPLICE_MIN
#define SPLICE_MIN (64 * 1024)
#endif
/* The source is waited for until this much of the literal is there (or
 * its rest): each move then carries more, for fewer wakeups and sends. */
#define BATCH (256 * 1024)
/* Per wakeup, so that one busy session does not starve the others. */
#define MOVE_PER_WAKEUP (1024 * 1024)
/* The pipe's capacity asked for (the kernel's pipe-max-size is 1 MiB by
 * default); what a slow client leaves in the kernel is at most this. */
#define PIPE_SIZE (1024 * 1024)
/* Pipes in use at once (two descriptors each, and their capacity in
 * kernel memory); more moves at a time copy instead. */
#define PIPES_MAX 64
/* Empty pipes kept for the next move. */
#define POOL_MAX 8

struct pipe {
	int rd, wr;
	size_t cap;
};

struct splice {
	int from, to;
	struct pipe pipe;
	size_t in_pipe;			/* taken, not yet sent */
	uint64_t left;			/* still to take from the source */
	struct event *rev, *wev;
	bool rarmed, warmed;
	struct timeval timeout;
	bool has_timeout;
	int lowat;			/* the source's SO_RCVLOWAT, 1 by default */
	int ended;			/* found by splice_move, told later */
	const struct splice_ops *ops;
	void *arg;
};

static struct pipe pool[POOL_MAX];
static unsigned npool, nused;
static bool unavailable;		/* the kernel refused: copy from now on */

bool
splice_worth(uint64_t n)
{
	return !unavailable && n >= SPLICE_MIN;
}

static bool
pipe_get(struct pipe *p)
{
	int fd[2];
	int size;

	if (nused >= PIPES_MAX)
		return false;
	if (npool > 0) {
		*p = pool[--npool];
		nused++;
		return true;
	}
	if (pipe2(fd, O_CLOEXEC | O_NONBLOCK) == -1)
		return false;
	p->rd = fd[0];
	p->wr = fd[1];
	/* a larger pipe moves more per system call pair; where the limits
	 * (pipe-max-size, the user's pipe pages) refuse, the default
	 * (64 KiB) stays */
	if ((size = fcntl(p->wr, F_SETPIPE_SZ, PIPE_SIZE)) == -1)
		size = fcntl(p->wr, F_GETPIPE_SZ);
	p->cap = size > 0 ? (size_t)size : 4096;
	nused++;
	return true;
}

/* An empty pipe goes back to the pool; one that is not is closed. */
static void
pipe_put(struct pipe *p, bool empty)
{
	nused--;
	if (empty && npool < POOL_MAX) {
		pool[npool++] = *p;
		return;
	}
	close(p->rd);
	close(p->wr);
}

void
splice_pool_free(void)
{
	while (npool > 0) {
		npool--;
		close(pool[npool].rd);
		close(pool[npool].wr);
	}
}

static void
arm(struct splice *sp, bool read, bool write)
{
	if (read != sp->rarmed) {
		if (read)
			event_add(sp->rev, sp->has_timeout ? &sp->timeout : NULL);
		else
			event_del(sp->rev);
		sp->rarmed = read;
	}
	if (write != sp->warmed) {
		if (write)
			event_add(sp->wev, NULL);
		else
			event_del(sp->wev);
		sp->warmed = write;
	}
}

/* The source is readable (for epoll) once it holds n bytes: a failure
 * only costs wakeups. */
static void
set_lowat(struct splice *sp, int n)
{
	if (n != sp->lowat &&
	    setsockopt(sp->from, SOL_SOCKET, SO_RCVLOWAT, &n, sizeof(n)) == 0)
		sp->lowat = n;
}

/* run's answer while the sockets are waited for */
#define WAITING (-1)

/* Empty the pipe into the destination: 0, WAITING, or how it ended. */
static int
drain(struct splice *sp, size_t *moved)
{
	while (sp->in_pipe > 0) {
		ssize_t n = splice(sp->pipe.rd, NULL, sp->to, NULL, sp->in_pipe,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

		if (n > 0) {
			sp->in_pipe -= (size_t)n;
			*moved += (size_t)n;
			sp->ops->sent(sp->arg, (size_t)n);
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* the destination is full: the source waits too */
			arm(sp, false, true);
			return WAITING;
		} else {
			return BEV_EVENT_WRITING | BEV_EVENT_ERROR;
		}
	}
	return 0;
}

/* Fill the empty pipe from the source: 0, WAITING, or how it ended. */
static int
fill(struct splice *sp)
{
	size_t want = sp->left < sp->pipe.cap ? (size_t)sp->left : sp->pipe.cap;
	ssize_t n;

	do
		n = splice(sp->from, NULL, sp->pipe.wr, NULL, want,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		sp->left -= (uint64_t)n;
		sp->in_pipe = (size_t)n;
		sp->ops->taken(sp->arg, (size_t)n);
		return 0;
	}
	if (n == 0)
		return BEV_EVENT_READING | BEV_EVENT_EOF;
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		set_lowat(sp, sp->left < BATCH ? (int)sp->left : BATCH);
		arm(sp, true, false);
		return WAITING;
	}
	if (errno == EINVAL || errno == ENOSYS || errno == EPERM) {
		/* these sockets cannot be spliced (or a system call filter
		 * says no): nothing is in the pipe, the owner copies the rest */
		unavailable = true;
		return 0;
	}
	return BEV_EVENT_READING | BEV_EVENT_ERROR;
}

/* Move until the sockets make us wait (WAITING, the right event armed),
 * or the end: 0 (done, or splicing unavailable), or an event's flags. */
static int
run(struct splice *sp)
{
	size_t moved = 0;
	int how;

	while (moved < MOVE_PER_WAKEUP) {
		if ((how = drain(sp, &moved)) != 0)
			return how;
		if (sp->left == 0 || unavailable)
			return 0;
		if ((how = fill(sp)) != 0)
			return how;
	}
	/* the budget is spent: the next round of the event loop goes on
	 * (both events are level-triggered) */
	arm(sp, sp->in_pipe == 0, sp->in_pipe > 0);
	return WAITING;
}

static void
move(evutil_socket_t fd, short what, void *arg)
{
	struct splice *sp = arg;
	int how;

	(void)fd;
	if (what & EV_TIMEOUT)
		how = BEV_EVENT_READING | BEV_EVENT_TIMEOUT;
	else if (sp->ended != WAITING)
		how = sp->ended;	/* found by splice_move */
	else if ((how = run(sp)) == WAITING)
		return;
	arm(sp, false, false);
	/* the last thing done here: the owner may free sp */
	sp->ops->ended(sp->arg, (short)how);
}

bool
splice_move(struct splice *sp)
{
	int how = run(sp);

	if (how == WAITING)
		return false;
	arm(sp, false, false);
	if (how == 0)
		return true;
	/* the source's end or an error: told from the event loop, as a
	 * bufferevent tells it, so that nobody is freed under the caller */
	sp->ended = how;
	event_active(sp->rev, EV_READ, 0);
	return false;
}

struct splice *
splice_new(struct event_base *base, int from, int to, uint64_t n,
    const struct timeval *timeout, const struct splice_ops *ops, void *arg)
{
	struct splice *sp;

	if (unavailable || (sp = calloc(1, sizeof(*sp))) == NULL)
		return NULL;
	if (!pipe_get(&sp->pipe)) {
		free(sp);
		return NULL;
	}
	sp->rev = event_new(base, from, EV_READ | EV_PERSIST, move, sp);
	sp->wev = event_new(base, to, EV_WRITE | EV_PERSIST, move, sp);
	if (sp->rev == NULL || sp->wev == NULL) {
		splice_free(sp, NULL);
		return NULL;
	}
	sp->from = from;
	sp->to = to;
	sp->left = n;
	sp->lowat = 1;
	if (timeout != NULL) {
		sp->timeout = *timeout;
		sp->has_timeout = true;
	}
	sp->ops = ops;
	sp->arg = arg;
	sp->ended = WAITING;
	return sp;
}

size_t
splice_pending(const struct splice *sp)
{
	return sp->in_pipe;
}

void
splice_free(struct splice *sp, struct evbuffer *rest)
{
	if (sp == NULL)
		return;
	if (sp->rev != NULL)
		event_free(sp->rev);
	if (sp->wev != NULL)
		event_free(sp->wev);
	set_lowat(sp, 1);
	/* what the pipe still holds is read back (a rare path: the move was
	 * stopped half-way) */
	while (sp->in_pipe > 0) {
		int got;

		if (rest != NULL) {
			got = evbuffer_read(rest, sp->pipe.rd, (int)sp->in_pipe);
		} else {
			char sink[4096];

			got = (int)read(sp->pipe.rd, sink, sp->in_pipe < sizeof(sink) ?
			    sp->in_pipe : sizeof(sink));
		}
		if (got <= 0)
			break;
		sp->in_pipe -= (size_t)got;
	}
	pipe_put(&sp->pipe, sp->in_pipe == 0);
	free(sp);
}

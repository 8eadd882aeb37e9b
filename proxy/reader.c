/*
 * reader.c — large reads for plain sockets; see reader.h for why.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "reader.h"

#define READ_CHUNK (256 * 1024)
/* The least a read asks for: libevent's chain header fits beside it in 4 KiB. */
#define SMALL_READ (4096 - 128)
/* Per wakeup, so that one busy socket does not starve the others. */
#define READ_PER_WAKEUP (1024 * 1024)

struct reader {
	struct bufferevent *bev;
	struct event *ev;
	size_t high;
	struct timeval timeout;
	bool has_timeout;
	bool enabled;		/* the owner wants data */
	bool armed;		/* the event is added */
	size_t next_max;	/* the next read takes at most this (0: no limit) */
	reader_read_cb read_cb;
	reader_event_cb event_cb;
	void *arg;
};

static void
arm(struct reader *r, bool on)
{
	if (on == r->armed)
		return;
	if (on)
		event_add(r->ev, r->has_timeout ? &r->timeout : NULL);
	else
		event_del(r->ev);
	r->armed = on;
}

static bool
below_high(struct reader *r)
{
	return evbuffer_get_length(bufferevent_get_input(r->bev)) < r->high;
}

/*
 * No more than the socket holds (and at least a small chunk, so that an EOF
 * or a few more bytes are seen): a reservation becomes a buffer of twice
 * its size in libevent, and the small reads of an idle session's commands
 * would otherwise each leave a 512 KiB chain, partly touched, on the heap.
 * *all: the read may take everything the socket holds now.
 */
static size_t
sized_to_what_waits(evutil_socket_t fd, size_t want, bool *all)
{
	int waiting;

	*all = false;
	if (ioctl(fd, FIONREAD, &waiting) != 0 || waiting < 0)
		return want;
	*all = (size_t)waiting <= want;
	if ((size_t)waiting < SMALL_READ)
		waiting = SMALL_READ;
	return (size_t)waiting < want ? (size_t)waiting : want;
}

static void
readable(evutil_socket_t fd, short what, void *arg)
{
	struct reader *r = arg;
	struct evbuffer *in = bufferevent_get_input(r->bev);
	size_t total = 0;

	if (what & EV_TIMEOUT) {
		r->armed = false;
		r->event_cb(r->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, r->arg);
		return;
	}
	/* the timeout counts from the last data */
	if (r->has_timeout)
		event_add(r->ev, &r->timeout);
	while (total < READ_PER_WAKEUP) {
		size_t have = evbuffer_get_length(in);
		size_t want = r->high - have < READ_CHUNK ? r->high - have : READ_CHUNK;
		size_t limited = r->next_max;
		struct evbuffer_iovec v[2];
		struct iovec iov[2];
		int i, n;
		ssize_t got;
		size_t asked, short_read;
		bool all;

		if (have >= r->high) {
			arm(r, false);	/* the owner catches up first */
			break;
		}
		if (limited > 0 && limited < want)
			want = limited;
		want = sized_to_what_waits(fd, want, &all);
		/* a socket bufferevent keeps its input's end frozen except
		 * while it reads itself; we read in its place */
		evbuffer_unfreeze(in, 0);
		n = evbuffer_reserve_space(in, (ssize_t)want, v, 2);
		if (n <= 0) {
			evbuffer_freeze(in, 0);
			break;
		}
		/* the space reserved may be larger than asked for */
		asked = 0;
		for (i = 0; i < n; i++) {
			iov[i].iov_base = v[i].iov_base;
			iov[i].iov_len = v[i].iov_len < want - asked ? v[i].iov_len :
			    want - asked;
			asked += iov[i].iov_len;
		}
		got = readv(fd, iov, n);
		if (got <= 0) {
			int err = errno;
			struct bufferevent *bev = r->bev;
			reader_event_cb event_cb = r->event_cb;
			void *owner = r->arg;

			evbuffer_commit_space(in, v, 0);
			evbuffer_freeze(in, 0);
			if (got < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR))
				break;
			arm(r, false);
			/* the owner may free r (and more) in either callback */
			if (total > 0)
				r->read_cb(bev, owner);
			event_cb(bev, BEV_EVENT_READING |
			    (got == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR), owner);
			return;
		}
		/* a read that took all there was need not be followed by one
		 * that finds nothing */
		short_read = (size_t)got < asked || all;
		for (i = 0; i < n; i++) {
			size_t take = (size_t)got < v[i].iov_len ? (size_t)got : v[i].iov_len;

			v[i].iov_len = take;
			got -= (ssize_t)take;
			total += take;
		}
		evbuffer_commit_space(in, v, n);
		evbuffer_freeze(in, 0);
		r->next_max = 0;
		if (short_read || limited > 0)
			break;	/* the socket is empty for now, or the owner
				 * looks at these bytes first */
	}
	if (total > 0)
		r->read_cb(r->bev, r->arg);
}

struct reader *
reader_new(struct bufferevent *bev, size_t high, const struct timeval *timeout,
    reader_read_cb read_cb, reader_event_cb event_cb, void *arg)
{
	struct reader *r;

	/* not a socket (a bufferevent pair in tests): it reads itself */
	if (bufferevent_getfd(bev) < 0 || (r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->ev = event_new(bufferevent_get_base(bev), bufferevent_getfd(bev),
	    EV_READ | EV_PERSIST, readable, r);
	if (r->ev == NULL) {
		free(r);
		return NULL;
	}
	r->bev = bev;
	r->high = high;
	if (timeout != NULL) {
		r->timeout = *timeout;
		r->has_timeout = true;
	}
	r->read_cb = read_cb;
	r->event_cb = event_cb;
	r->arg = arg;
	bufferevent_disable(bev, EV_READ);
	reader_enable(r, true);
	return r;
}

void
reader_enable(struct reader *r, bool on)
{
	r->enabled = on;
	arm(r, on && below_high(r));
}

void
reader_resume(struct reader *r)
{
	if (r->enabled && !r->armed && below_high(r))
		arm(r, true);
}

void
reader_limit_next(struct reader *r, size_t n)
{
	r->next_max = n;
}

void
reader_free(struct reader *r)
{
	if (r == NULL)
		return;
	event_free(r->ev);
	free(r);
}

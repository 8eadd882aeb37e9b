/*
 * relay.c — the delay relay of the upload benchmark: a thread between the
 * client and whatever it talks to, holding every chunk for a while.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "bench.h"

#define READ_CHUNK (256 * KiB)

/*
 * A relay on 127.0.0.1:<kernel-chosen port> in its own thread: every
 * accepted connection gets a connection to the target port, and bytes are
 * forwarded both ways, each chunk released delay_ns after it was read, in
 * order.  Half-closes are passed on once the delayed data has been sent.
 * A direction holding RELAY_MAX_QUEUED bytes stops reading (a bounded
 * "link buffer"; 64 MiB per 10 ms is far above loopback speed).
 */
#define RELAY_MAX_PAIRS 16
#define RELAY_MAX_QUEUED (64 * MiB)

struct chunk {
	struct chunk *next;
	uint64_t due;
	size_t len, off;
	char data[];
};

struct flow {
	struct chunk *head, *tail;
	size_t queued;
	bool eof;		/* the reading side is done */
	bool shut;		/* the writing side has been shut down */
};

struct pair {
	int fd[2];		/* 0: accepted, 1: towards the target */
	struct flow f[2];	/* f[i]: read from fd[i], written to fd[1 - i] */
};

struct relay {
	int lfd, port, target_port;
	uint64_t delay_ns;
	int stop[2];
	pthread_t thread;
	struct pair *pairs[RELAY_MAX_PAIRS];
	int npairs;
	char *rbuf;
};

static void
pair_free(struct pair *p)
{
	int i;

	for (i = 0; i < 2; i++) {
		struct chunk *ch = p->f[i].head, *next;

		for (; ch != NULL; ch = next) {
			next = ch->next;
			free(ch);
		}
		close(p->fd[i]);
	}
	free(p);
}

static void
relay_accept(struct relay *r)
{
	struct pair *p;
	int fd, on = 1;

	fd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd == -1)
		return;
	if (r->npairs == RELAY_MAX_PAIRS) {
		close(fd);
		return;
	}
	p = xmalloc(sizeof(*p));
	memset(p, 0, sizeof(*p));
	p->fd[0] = fd;
	p->fd[1] = tcp_connect(r->target_port);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	set_nonblock(p->fd[0]);
	set_nonblock(p->fd[1]);
	r->pairs[r->npairs++] = p;
}

/* Read once from fd[i]; false when the pair is to be closed. */
static bool
relay_read(struct relay *r, struct pair *p, int i)
{
	struct flow *f = &p->f[i];
	struct chunk *ch;
	ssize_t n = read(p->fd[i], r->rbuf, READ_CHUNK);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	if (n == 0) {
		f->eof = true;
		return true;
	}
	ch = xmalloc(sizeof(*ch) + (size_t)n);
	memcpy(ch->data, r->rbuf, (size_t)n);
	ch->next = NULL;
	ch->len = (size_t)n;
	ch->off = 0;
	ch->due = now_ns() + r->delay_ns;
	if (f->tail != NULL)
		f->tail->next = ch;
	else
		f->head = ch;
	f->tail = ch;
	f->queued += (size_t)n;
	return true;
}

/* Write the due chunks of f[i] to fd[1 - i]; false when the pair is to be
 * closed. */
static bool
relay_write(struct pair *p, int i, uint64_t now)
{
	struct flow *f = &p->f[i];

	while (f->head != NULL && f->head->due <= now) {
		struct chunk *ch = f->head;
		ssize_t n = send(p->fd[1 - i], ch->data + ch->off, ch->len - ch->off,
		    MSG_NOSIGNAL);

		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		ch->off += (size_t)n;
		f->queued -= (size_t)n;
		if (ch->off < ch->len)
			return true;
		f->head = ch->next;
		if (f->head == NULL)
			f->tail = NULL;
		free(ch);
	}
	return true;
}

static void *
relay_main(void *arg)
{
	struct relay *r = arg;
	struct pollfd fds[2 + 2 * RELAY_MAX_PAIRS];

	for (;;) {
		uint64_t now = now_ns(), next = UINT64_MAX;
		struct timespec ts, *tsp = NULL;
		int n = 0, i, k;

		fds[n++] = (struct pollfd){ r->stop[0], POLLIN, 0 };
		fds[n++] = (struct pollfd){ r->lfd, POLLIN, 0 };
		for (k = 0; k < r->npairs; k++) {
			struct pair *p = r->pairs[k];

			for (i = 0; i < 2; i++) {
				struct flow *in = &p->f[i], *out = &p->f[1 - i];
				short ev = 0;

				if (!in->eof && in->queued < RELAY_MAX_QUEUED)
					ev |= POLLIN;
				if (out->head != NULL) {
					if (out->head->due <= now)
						ev |= POLLOUT;
					else if (out->head->due < next)
						next = out->head->due;
				}
				fds[n++] = (struct pollfd){ p->fd[i], ev, 0 };
			}
		}
		if (next != UINT64_MAX) {
			ts.tv_sec = (time_t)((next - now) / 1000000000u);
			ts.tv_nsec = (long)((next - now) % 1000000000u);
			tsp = &ts;
		}
		if (ppoll(fds, (nfds_t)n, tsp, NULL) == -1) {
			if (errno == EINTR)
				continue;
			die("relay: poll: %s", strerror(errno));
		}
		if (fds[0].revents)
			break;
		now = now_ns();
		for (k = 0; k < r->npairs; k++) {
			struct pair *p = r->pairs[k];
			bool keep = true;

			for (i = 0; i < 2 && keep; i++) {
				const struct pollfd *pf = &fds[2 + 2 * k + i];

				if (pf->revents & POLLERR)
					keep = false;
				else if ((pf->events & POLLIN) &&
				    (pf->revents & (POLLIN | POLLHUP)))
					keep = relay_read(r, p, i);
			}
			for (i = 0; i < 2 && keep; i++) {
				/* f[i] goes to fd[1 - i] */
				keep = relay_write(p, i, now);
				if (keep && p->f[i].eof && p->f[i].head == NULL &&
				    !p->f[i].shut) {
					shutdown(p->fd[1 - i], SHUT_WR);
					p->f[i].shut = true;
				}
			}
			if (keep && p->f[0].shut && p->f[1].shut)
				keep = false;
			if (!keep) {
				pair_free(p);
				r->pairs[k] = r->pairs[--r->npairs];
				k--;
			}
		}
		if (fds[1].revents & POLLIN)
			relay_accept(r);
	}
	while (r->npairs > 0)
		pair_free(r->pairs[--r->npairs]);
	return NULL;
}

struct relay *
relay_start(int target_port, unsigned delay_ms)
{
	struct relay *r = xmalloc(sizeof(*r));
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	int on = 1, err;

	memset(r, 0, sizeof(*r));
	r->target_port = target_port;
	r->delay_ns = (uint64_t)delay_ms * 1000000u;
	r->rbuf = xmalloc(READ_CHUNK);
	r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (r->lfd == -1)
		die("socket: %s", strerror(errno));
	setsockopt(r->lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(r->lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(r->lfd, 16) == -1 ||
	    getsockname(r->lfd, (struct sockaddr *)&sin, &sl) == -1)
		die("relay: bind/listen: %s", strerror(errno));
	set_nonblock(r->lfd);
	r->port = ntohs(sin.sin_port);
	if (pipe2(r->stop, O_CLOEXEC) == -1)
		die("pipe: %s", strerror(errno));
	if ((err = pthread_create(&r->thread, NULL, relay_main, r)) != 0)
		die("pthread_create: %s", strerror(err));
	return r;
}

void
relay_stop(struct relay *r)
{
	if (write(r->stop[1], "x", 1) != 1)
		die("relay: write: %s", strerror(errno));
	pthread_join(r->thread, NULL);
	close(r->stop[0]);
	close(r->stop[1]);
	close(r->lfd);
	free(r->rbuf);
	free(r);
}

int
relay_port(const struct relay *r)
{
	return r->port;
}

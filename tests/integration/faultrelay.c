/*
 * faultrelay.c — a fault-injecting TCP relay (see faultrelay.h).
 *
 * The child is one poll loop over the control socket, the listener and the
 * two sockets of each relayed connection.  Writes block: the peers are
 * mappend and a server on loopback, both of which keep reading.
 *
 * Reading along needs only IMAP's framing: a line ends at LF; a line that
 * ends with "{n}" or "{n+}" is followed by n bytes of literal data, and the
 * line after those continues the same command (or response).  Only the
 * first line of a command or response carries its tag.  On the
 * server->proxy stream of the armed connection a line is held until its LF
 * has come, so that the k-th answer can be withheld; literal data passes at
 * once.  Every other stream is forwarded as it is read.  On the
 * proxy->server stream of the armed connection lines are held the same
 * way, so that a stall with catch_up_ms can hold back everything from the
 * (k+1)-th APPEND on, to the byte.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "faultrelay.h"
#include "harness.h"

#define MAXPAIRS 64
#define MAXTAGS 1024

/* Reading one direction along. */
struct scan {
	char *line;		/* the line so far (with its LF once complete) */
	size_t len, cap;
	uint64_t lit;		/* literal bytes still to come */
	bool cont;		/* the next line continues after a literal */
};

struct pair {
	bool used;
	int p, s;		/* proxy side, server side; -1: closed */
	bool armed;		/* the fault is this connection's */
	bool mute_s2p, mute_p2s;	/* that direction is read and dropped */
	struct scan up, down;	/* proxy->server, server->proxy */
	unsigned long tags[MAXTAGS];	/* N of "mappend.N APPEND" not answered */
	size_t ntags;
	unsigned appends;	/* APPENDs of mappend's seen */
	bool hold;		/* proxy->server bytes go to held */
	char *held;
	size_t nheld, capheld;
	long flush_at;		/* when held goes to the server (ms), or 0 */
	bool waiting;		/* the fault waits for the server's answers */
};

static struct pair pairs[MAXPAIRS];
static struct faultrelay_fault fault;
static struct faultrelay_report rep;
static bool arm_next;
static int upstream_port;

/* ---- the child ---- */

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int
send_all(int fd, const void *data, size_t n)
{
	const char *p = data;

	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
read_full(int fd, void *data, size_t n)
{
	char *p = data;

	while (n > 0) {
		ssize_t r = read(fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static void
pair_close(struct pair *pr)
{
	if (pr->p >= 0)
		close(pr->p);
	if (pr->s >= 0)
		close(pr->s);
	free(pr->up.line);
	free(pr->down.line);
	free(pr->held);
	memset(pr, 0, sizeof(*pr));
	pr->p = pr->s = -1;
}

/* "... {123}" or "... {123+}" at the end of a line (LF included in len). */
static bool
literal_header(const char *line, size_t len, uint64_t *n)
{
	size_t end, start;

	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len < 3 || line[len - 1] != '}')
		return false;
	end = len - 1;
	if (line[end - 1] == '+')
		end--;
	for (start = end; start > 0 && isdigit((unsigned char)line[start - 1]); start--)
		;
	if (start == end || start == 0 || line[start - 1] != '{' || end - start > 18)
		return false;
	*n = strtoull(line + start, NULL, 10);
	return true;
}

/* A line that starts with the tag "mappend.N ": N, and the offset of what
 * follows the tag. */
static bool
own_tag(const char *line, size_t len, unsigned long *n, size_t *after)
{
	static const char prefix[] = "mappend.";
	size_t i = sizeof(prefix) - 1;

	if (len <= i || memcmp(line, prefix, i) != 0 ||
	    !isdigit((unsigned char)line[i]))
		return false;
	for (*n = 0; i < len && i < 20 && isdigit((unsigned char)line[i]); i++)
		*n = *n * 10 + (unsigned long)(line[i] - '0');
	if (i >= len || line[i] != ' ')
		return false;
	*after = i + 1;
	return true;
}

enum piece { PIECE_LITERAL, PIECE_PARTIAL, PIECE_LINE };

/* Take the next piece of d[0..n): literal data, or bytes of a line (kept
 * in sc->line, complete when it is PIECE_LINE).  Returns its length. */
static size_t
take(struct scan *sc, const char *d, size_t n, enum piece *what)
{
	const char *lf;
	size_t m;

	if (sc->lit > 0) {
		m = n < sc->lit ? n : (size_t)sc->lit;
		sc->lit -= m;
		*what = PIECE_LITERAL;
		return m;
	}
	lf = memchr(d, '\n', n);
	m = lf != NULL ? (size_t)(lf - d) + 1 : n;
	if (sc->len + m > sc->cap) {
		sc->cap = (sc->len + m) * 2;
		if ((sc->line = realloc(sc->line, sc->cap)) == NULL)
			_exit(3);
	}
	memcpy(sc->line + sc->len, d, m);
	sc->len += m;
	*what = lf != NULL ? PIECE_LINE : PIECE_PARTIAL;
	return m;
}

/* A complete line has been looked at: what comes after it.  Returns
 * whether the line was the first of a command or response. */
static bool
line_done(struct scan *sc)
{
	bool first = !sc->cont;
	uint64_t n = 0;

	sc->cont = literal_header(sc->line, sc->len, &n);
	sc->lit = sc->cont ? n : 0;
	sc->len = 0;
	return first;
}

/* Bytes for the server: sent, or held. */
static int
to_server(struct pair *pr, const char *d, size_t n)
{
	if (!pr->hold)
		return send_all(pr->s, d, n);
	if (pr->nheld + n > pr->capheld) {
		pr->capheld = (pr->nheld + n) * 2;
		if ((pr->held = realloc(pr->held, pr->capheld)) == NULL)
			_exit(3);
	}
	memcpy(pr->held + pr->nheld, d, n);
	pr->nheld += n;
	return 0;
}

/* proxy -> server: on the armed connection lines are held until complete
 * and the tags of mappend's own APPENDs are noted. */
static int
up_data(struct pair *pr, const char *d, size_t n)
{
	if (pr->mute_p2s)
		return 0;
	if (!pr->armed)
		return to_server(pr, d, n);
	while (n > 0) {
		enum piece what;
		size_t m = take(&pr->up, d, n, &what), after;
		unsigned long tag;
		const char *line = pr->up.line;
		size_t len = pr->up.len;

		if (what == PIECE_LITERAL) {
			if (to_server(pr, d, m) != 0)
				return -1;
		} else if (what == PIECE_LINE) {
			if (line_done(&pr->up) && own_tag(line, len, &tag, &after) &&
			    len - after > 6 && strncasecmp(line + after, "APPEND", 6) == 0) {
				if (pr->ntags < MAXTAGS)
					pr->tags[pr->ntags++] = tag;
				if (++pr->appends == fault.k + 1 && fault.catch_up_ms > 0 &&
				    fault.action == FAULTRELAY_STALL)
					pr->hold = true;
			}
			if (to_server(pr, line, len) != 0)
				return -1;
		}
		d += m;
		n -= m;
	}
	return 0;
}

/* The tagged answer to one of the noted APPENDs? */
static bool
answers_append(struct pair *pr, const char *line, size_t len)
{
	unsigned long tag;
	size_t i, after;

	if (!own_tag(line, len, &tag, &after))
		return false;
	for (i = 0; i < pr->ntags; i++) {
		if (pr->tags[i] == tag) {
			pr->tags[i] = pr->tags[--pr->ntags];
			return true;
		}
	}
	return false;
}

static int
send_long_line(int fd, bool crlf)
{
	static char chunk[1 << 20];
	size_t left = FAULTRELAY_LONGLINE_SIZE - 5 - (crlf ? 2 : 0);

	memset(chunk, 'x', sizeof(chunk));
	if (send_all(fd, "* OK ", 5) != 0)
		return -1;
	while (left > 0) {
		size_t m = left < sizeof(chunk) ? left : sizeof(chunk);

		if (send_all(fd, chunk, m) != 0)
			return -1;
		left -= m;
	}
	return crlf ? send_all(fd, "\r\n", 2) : 0;
}

/* The fault itself.  -1: the connection ends. */
static int
fault_done(struct pair *pr)
{
	pr->waiting = false;
	switch (fault.action) {
	case FAULTRELAY_DROP:
		return -1;
	case FAULTRELAY_GARBAGE:
		pr->mute_s2p = true;
		pr->mute_p2s = fault.wait_idle;
		return send_all(pr->p, FAULTRELAY_GARBAGE_LINE,
		    sizeof(FAULTRELAY_GARBAGE_LINE) - 1);
	case FAULTRELAY_LONGLINE:
		pr->mute_s2p = true;
		pr->mute_p2s = fault.wait_idle;
		return send_long_line(pr->p, fault.crlf);
	case FAULTRELAY_STALL:
		pr->mute_s2p = true;
		pr->mute_p2s = fault.catch_up_ms == 0;
		return 0;
	case FAULTRELAY_NONE:
		break;
	}
	return 0;
}

/* The k-th answer (line, len) has come: it goes to the proxy or not, and
 * the fault is done now or once the server has answered every APPEND it
 * was sent. */
static int
fault_begins(struct pair *pr, const char *line, size_t len)
{
	rep.fired = true;
	if (fault.forward_kth && send_all(pr->p, line, len) != 0)
		return -1;
	if (fault.wait_idle && fault.action != FAULTRELAY_STALL && pr->ntags > 0) {
		pr->waiting = true;
		return 0;
	}
	return fault_done(pr);
}

/* server -> proxy: on the armed connection, lines are held until complete
 * and the answers to mappend's APPENDs counted; while the fault waits for
 * the server, what it sends is dropped. */
static int
down_data(struct pair *pr, const char *d, size_t n)
{
	if (!pr->armed)
		return pr->mute_s2p ? 0 : send_all(pr->p, d, n);
	while (n > 0 && !pr->mute_s2p) {
		enum piece what;
		size_t m = take(&pr->down, d, n, &what);
		const char *line = pr->down.line;
		size_t len = pr->down.len;

		if (what == PIECE_LITERAL) {
			if (!pr->waiting && send_all(pr->p, d, m) != 0)
				return -1;
		} else if (what == PIECE_LINE) {
			bool answer = line_done(&pr->down) && answers_append(pr, line, len);

			if (answer)
				rep.answers++;
			if (pr->waiting) {
				if (pr->ntags == 0 && fault_done(pr) != 0)
					return -1;
			} else if (answer && rep.answers == fault.k &&
			    fault.action != FAULTRELAY_NONE) {
				if (fault_begins(pr, line, len) != 0)
					return -1;
			} else if (send_all(pr->p, line, len) != 0) {
				return -1;
			}
		}
		d += m;
		n -= m;
	}
	return 0;
}

/* Held parts of lines go on, and the connection is relayed as is. */
static int
disarm(struct pair *pr)
{
	int rc = 0;

	if (pr->armed && !pr->mute_s2p && pr->down.len > 0)
		rc = send_all(pr->p, pr->down.line, pr->down.len);
	if (rc == 0 && pr->armed && !pr->mute_p2s && pr->up.len > 0)
		rc = to_server(pr, pr->up.line, pr->up.len);
	pr->up.len = pr->down.len = 0;
	pr->armed = false;
	return rc;
}

static void
server_gone(struct pair *pr)
{
	if (pr->mute_s2p) {
		/* the proxy is not to hear of it */
		close(pr->s);
		pr->s = -1;
		if (pr->p < 0)
			pair_close(pr);
		return;
	}
	disarm(pr);
	pair_close(pr);
}

static void
proxy_gone(struct pair *pr)
{
	if (pr->hold && pr->s >= 0) {
		/* the server catches up later; its answers go nowhere */
		close(pr->p);
		pr->p = -1;
		pr->mute_s2p = true;
		pr->flush_at = now_ms() + (long)fault.catch_up_ms;
		return;
	}
	pair_close(pr);
}

/* What was held reaches the server, then its input ends (it goes on until
 * it has read all of it, and closes). */
static void
catch_up(struct pair *pr)
{
	pr->hold = false;
	pr->flush_at = 0;
	if (send_all(pr->s, pr->held, pr->nheld) != 0 || shutdown(pr->s, SHUT_WR) != 0)
		pair_close(pr);
}

static int
connect_upstream(void)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0), on = 1;

	if (fd < 0)
		return -1;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)upstream_port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
		close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	return fd;
}

static void
accept_one(int lfd)
{
	int fd = accept(lfd, NULL, NULL), on = 1;
	struct pair *pr = NULL;
	size_t i;

	if (fd < 0)
		return;
	for (i = 0; i < MAXPAIRS && pr == NULL; i++)
		if (!pairs[i].used)
			pr = &pairs[i];
	if (pr == NULL) {
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	pr->p = fd;
	if ((pr->s = connect_upstream()) < 0) {
		pair_close(pr);
		return;
	}
	pr->used = true;
	rep.accepted++;
	pr->armed = arm_next;
	arm_next = false;
}

/* 'A' + fault: arm (answer 'a'); 'R': the report.  EOF: the end. */
static void
control(int ctl)
{
	char cmd;
	size_t i;

	if (read_full(ctl, &cmd, 1) != 0)
		_exit(0);
	if (cmd == 'A') {
		if (read_full(ctl, &fault, sizeof(fault)) != 0)
			_exit(0);
		for (i = 0; i < MAXPAIRS; i++)
			if (pairs[i].used && disarm(&pairs[i]) != 0)
				pair_close(&pairs[i]);
		memset(&rep, 0, sizeof(rep));
		arm_next = true;
		if (send_all(ctl, "a", 1) != 0)
			_exit(0);
	} else if (cmd == 'R') {
		if (send_all(ctl, &rep, sizeof(rep)) != 0)
			_exit(0);
	} else {
		_exit(2);
	}
}

static void
relay_loop(int lfd, int ctl)
{
	static char buf[65536];
	size_t i;

	for (i = 0; i < MAXPAIRS; i++)
		pairs[i].p = pairs[i].s = -1;
	for (;;) {
		struct pollfd pfd[2 + 2 * MAXPAIRS];
		nfds_t n = 2, j;
		long now = now_ms(), wait = -1;

		pfd[0] = (struct pollfd){ ctl, POLLIN, 0 };
		pfd[1] = (struct pollfd){ lfd, POLLIN, 0 };
		for (i = 0; i < MAXPAIRS; i++) {
			if (!pairs[i].used)
				continue;
			if (pairs[i].flush_at > 0 && pairs[i].flush_at <= now) {
				catch_up(&pairs[i]);
				if (!pairs[i].used)
					continue;
			}
			if (pairs[i].flush_at > 0 &&
			    (wait < 0 || pairs[i].flush_at - now < wait))
				wait = pairs[i].flush_at - now;
			if (pairs[i].p >= 0)
				pfd[n++] = (struct pollfd){ pairs[i].p, POLLIN, 0 };
			if (pairs[i].s >= 0)
				pfd[n++] = (struct pollfd){ pairs[i].s, POLLIN, 0 };
		}
		if (poll(pfd, n, (int)wait) < 0) {
			if (errno == EINTR)
				continue;
			_exit(4);
		}
		if (pfd[0].revents != 0)
			control(ctl);
		/* each socket readable at the poll, if still open */
		for (j = 2; j < n; j++) {
			if (pfd[j].revents == 0)
				continue;
			for (i = 0; i < MAXPAIRS; i++) {
				struct pair *pr = &pairs[i];
				ssize_t r;

				if (!pr->used || (pr->p != pfd[j].fd && pr->s != pfd[j].fd))
					continue;
				r = read(pfd[j].fd, buf, sizeof(buf));
				if (r < 0 && errno == EINTR)
					break;
				if (pr->p == pfd[j].fd) {
					if (r <= 0)
						proxy_gone(pr);
					else if (up_data(pr, buf, (size_t)r) != 0)
						pair_close(pr);
				} else if (r <= 0) {
					server_gone(pr);
				} else if (down_data(pr, buf, (size_t)r) != 0) {
					pair_close(pr);
				}
				break;
			}
		}
		/* last: a new connection's fd may be one closed above */
		if (pfd[1].revents != 0)
			accept_one(lfd);
	}
}

/* ---- the test's side ---- */

void
faultrelay_start(struct faultrelay *fr, int port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int lfd = socket(AF_INET, SOCK_STREAM, 0), sv[2];

	cr_assert_geq(lfd, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(lfd, 64), 0);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fr->port = ntohs(sin.sin_port);
	fr->pid = fork();
	cr_assert_neq(fr->pid, -1, "fork: %s", strerror(errno));
	if (fr->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(sv[0]);
		upstream_port = port;
		relay_loop(lfd, sv[1]);
		_exit(0);
	}
	close(lfd);
	close(sv[1]);
	fr->ctl = sv[0];
}

/* Send a request, read its answer of n bytes. */
static void
request(struct faultrelay *fr, const void *req, size_t reqlen, void *answer, size_t n)
{
	struct pollfd pfd = { fr->ctl, POLLIN, 0 };

	cr_assert_eq(send_all(fr->ctl, req, reqlen), 0, "the fault relay is gone");
	cr_assert_gt(poll(&pfd, 1, HARNESS_TIMEOUT_MS), 0, "the fault relay does not answer");
	cr_assert_eq(read_full(fr->ctl, answer, n), 0, "the fault relay is gone");
}

void
faultrelay_arm(struct faultrelay *fr, const struct faultrelay_fault *f)
{
	char req[1 + sizeof(*f)], ack = 0;

	req[0] = 'A';
	memcpy(req + 1, f, sizeof(*f));
	request(fr, req, sizeof(req), &ack, 1);
	cr_assert_eq(ack, 'a');
}

void
faultrelay_report(struct faultrelay *fr, struct faultrelay_report *r)
{
	request(fr, "R", 1, r, sizeof(*r));
}

void
faultrelay_stop(struct faultrelay *fr)
{
	int status;

	if (fr->pid <= 0)
		return;
	close(fr->ctl);
	kill(fr->pid, SIGKILL);
	waitpid(fr->pid, &status, 0);
	fr->pid = 0;
}

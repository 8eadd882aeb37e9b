/*
 * bench_mappend.c — the benchmarks of BENCHMARKS.md (`make bench`).
 *
 * Run by tests/bench/run.sh, which starts a private legacy-mode Dovecot and
 * mappend in front of it and passes their ports, the test users and
 * mappend's pid.  Measured against that Dovecot, in this order:
 *
 *   sessions (VmRSS after - VmRSS before) / N for N logged-in idle sessions
 *            through mappend, first, while mappend's heap is fresh;
 *   upload   1000 x 4 KiB and 100 x 1 MiB into a fresh mailbox, three ways:
 *            (a) one MULTIAPPEND with {n+} literals through mappend,
 *            (b) one APPEND {n+} at a time directly to Dovecot, each
 *                waiting for its tagged OK (a synchronous client),
 *            (c) all APPENDs {n+} pipelined directly to Dovecot;
 *            without and with a delay in front of whatever the client
 *            talks to (an in-process relay thread holding every chunk for
 *            --delay-ms in each direction).  For (a) also mappend's VmHWM
 *            (peak RSS, reset through /proc/PID/clear_refs first), its CPU
 *            time, and when it had read the whole command (spooling done);
 *   fetch    FETCH 1 BODY.PEEK[] of one 200 MiB message through mappend and
 *            directly, and mappend's VmHWM and CPU time meanwhile.
 *
 * Everything the client sends is built before the clock starts; the clock
 * runs from the first byte written to the last tagged answer read.  The
 * client writes and reads at once (poll on both directions), so a pipelined
 * upload never deadlocks on full socket buffers.  Every upload goes into a
 * mailbox of its own (CREATEd before, its message count checked with STATUS
 * and DELETEd after, all outside the clock); the modes take turns, in an
 * order rotated from run to run.
 *
 * Exit status: 0 when every benchmark ran (targets are reported, never
 * asserted), 1 on an error (a refused command, a lost connection, a wrong
 * message count, ...), 2 on bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define KiB 1024UL
#define MiB (1024UL * 1024UL)

#define IO_TIMEOUT_MS 120000		/* no progress for this long: error */
#define READ_CHUNK (256 * KiB)
#define MAX_RESPONSE_LINE (16 * MiB)

/* ------------------------------------------------------------ utilities */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "bench_mappend: error: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
progress(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		die("out of memory (%zu bytes)", n);
	return p;
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double
median(const double *v, int n)
{
	double s[64];

	if (n <= 0 || n > 64)
		return 0;
	memcpy(s, v, (size_t)n * sizeof(*s));
	qsort(s, (size_t)n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* A growable byte buffer. */
struct buf {
	char *p;
	size_t len, cap;
};

static void
buf_reserve(struct buf *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 4096;

	if (b->len + more <= b->cap)
		return;
	while (cap < b->len + more)
		cap *= 2;
	b->p = realloc(b->p, cap);
	if (b->p == NULL)
		die("out of memory (%zu bytes)", cap);
	b->cap = cap;
}

static void
buf_add(struct buf *b, const void *data, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

static void buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	buf_reserve(b, 256);
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		die("vsnprintf failed");
	if ((size_t)n >= b->cap - b->len) {
		buf_reserve(b, (size_t)n + 1);
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

static void
buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ------------------------------------------------------------- messages */

/*
 * Append one RFC 5322 message of exactly size bytes to b: a few headers
 * (the subject and Message-ID carry id and idx, so every message differs)
 * and lines of up to 72 pseudo-random letters and spaces, CRLF-terminated.
 */
static void
add_message(struct buf *b, size_t size, const char *id, unsigned idx)
{
	char hdr[512];
	int hn;
	size_t left, start = b->len;
	uint32_t x = 2463534242u ^ (idx * 2654435761u);
	char *p;

	hn = snprintf(hdr, sizeof(hdr),
	    "From: Bench Sender <sender@example.org>\r\n"
	    "To: Bench Recipient <recipient@example.org>\r\n"
	    "Subject: mappend benchmark %s message %u\r\n"
	    "Date: Mon, 01 Jan 2024 12:00:00 +0000\r\n"
	    "Message-ID: <bench.%s.%u@example.org>\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n"
	    "\r\n", id, idx, id, idx);
	if (hn < 0 || (size_t)hn + 2 > size)
		die("message size %zu too small", size);
	buf_reserve(b, size);
	memcpy(b->p + b->len, hdr, (size_t)hn);
	b->len += (size_t)hn;
	p = b->p + b->len;
	left = size - (size_t)hn;
	while (left > 0) {
		size_t line = 72, i;

		if (left <= 74)
			line = left - 2;	/* the last line */
		else if (left - 74 < 2)
			line = 60;		/* never leave a single byte */
		for (i = 0; i < line; i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			p[i] = (x & 7) == 0 ? ' ' : (char)('a' + (x >> 8) % 26);
		}
		if (line > 0)
			p[0] = p[0] == ' ' ? 'x' : p[0];
		p[line] = '\r';
		p[line + 1] = '\n';
		p += line + 2;
		left -= line + 2;
	}
	b->len = start + size;
}

/* ----------------------------------------------------------- IMAP client */

/*
 * A client connection with an incremental response reader: responses are
 * cut at LF, a line ending in {n} is followed by n bytes of literal data
 * (counted, not kept), and only each response's first line is looked at.
 */
struct conn {
	int fd;
	char *in;			/* read buffer, READ_CHUNK bytes */
	struct buf line;		/* the current line so far */
	uint64_t lit_left;		/* literal bytes still to come */
	bool cont;			/* inside a response, after a literal */
	char first[512];		/* first line of the current response */
	/* counters */
	uint64_t lit_bytes;		/* literal data received */
	unsigned long responses, tagged, tagged_ok;
	long status_messages;		/* MESSAGES of the last STATUS, or -1 */
	char last_bad[512];		/* the last tagged answer that was not OK */
	char label[64];
};

static int
tcp_connect(int port)
{
	struct sockaddr_in sin;
	int fd, on = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		die("socket: %s", strerror(errno));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		die("connect 127.0.0.1:%d: %s", port, strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	return fd;
}

static void
set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		die("fcntl: %s", strerror(errno));
}

static void
handle_response(struct conn *c)
{
	const char *r = c->first, *sp;

	c->responses++;
	if (r[0] == '*' || r[0] == '+') {
		if (strncmp(r, "* STATUS ", 9) == 0) {
			const char *m = strstr(r, "MESSAGES ");

			if (m != NULL)
				c->status_messages = strtol(m + 9, NULL, 10);
		}
		return;
	}
	c->tagged++;
	sp = strchr(r, ' ');
	if (sp != NULL && strncmp(sp + 1, "OK", 2) == 0 &&
	    (sp[3] == ' ' || sp[3] == '\r' || sp[3] == '\n' || sp[3] == '\0'))
		c->tagged_ok++;
	else
		snprintf(c->last_bad, sizeof(c->last_bad), "%s", r);
}

/* A complete line (with its LF) of the current response. */
static void
handle_line(struct conn *c, const char *l, size_t n)
{
	size_t e = n, d;

	if (!c->cont) {
		size_t k = n < sizeof(c->first) - 1 ? n : sizeof(c->first) - 1;

		memcpy(c->first, l, k);
		c->first[k] = '\0';
		/* no CR/LF in what is printed */
		c->first[strcspn(c->first, "\r\n")] = '\0';
	}
	/* a literal header at the end: {digits} (or ~{digits}) CRLF */
	while (e > 0 && (l[e - 1] == '\n' || l[e - 1] == '\r'))
		e--;
	if (e >= 3 && l[e - 1] == '}') {
		d = e - 1;
		while (d > 0 && l[d - 1] >= '0' && l[d - 1] <= '9')
			d--;
		if (d > 0 && d < e - 1 && l[d - 1] == '{') {
			c->lit_left = strtoull(l + d, NULL, 10);
			c->cont = true;
			return;
		}
	}
	c->cont = false;
	handle_response(c);
}

static void
feed(struct conn *c, const char *p, size_t n)
{
	while (n > 0) {
		const char *lf;
		size_t k;

		if (c->lit_left > 0) {
			k = n < c->lit_left ? n : (size_t)c->lit_left;
			c->lit_left -= k;
			c->lit_bytes += k;
			p += k;
			n -= k;
			continue;
		}
		lf = memchr(p, '\n', n);
		k = lf != NULL ? (size_t)(lf - p) + 1 : n;
		if (c->line.len + k > MAX_RESPONSE_LINE)
			die("%s: response line over %lu bytes", c->label, MAX_RESPONSE_LINE);
		if (lf == NULL) {
			buf_add(&c->line, p, k);
		} else if (c->line.len == 0) {
			handle_line(c, p, k);
		} else {
			buf_add(&c->line, p, k);
			handle_line(c, c->line.p, c->line.len);
			c->line.len = 0;
		}
		p += k;
		n -= k;
	}
}

/*
 * While (a) runs: when has mappend read the whole command?  rchar of
 * /proc/PID/io counts the bytes a process read (sockets and files alike);
 * mappend reads nothing else of note until it has spooled the command (it
 * writes each chunk to the spool as it reads it, and replays only then),
 * so the moment rchar has grown by the command's length is the moment the
 * spooling ended, give or take a millisecond of polling.
 */
struct rchar_watch {
	bool active;
	pid_t pid;
	uint64_t start, target;	/* rchar at the start; bytes to wait for */
	uint64_t done_ns;	/* 0 until reached */
};

static struct rchar_watch watch;
static bool rchar_readable = true;

/* rchar of /proc/pid/io, or -1 (e.g. no ptrace rights). */
static int64_t
proc_rchar(pid_t pid)
{
	char path[64], line[128];
	int64_t v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/io", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "rchar:", 6) == 0) {
			v = strtoll(line + 6, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static void
watch_start(pid_t pid, uint64_t bytes)
{
	int64_t v;

	memset(&watch, 0, sizeof(watch));
	if (!rchar_readable)
		return;
	if ((v = proc_rchar(pid)) < 0) {
		progress("cannot read /proc/%ld/io: no spooling times", (long)pid);
		rchar_readable = false;
		return;
	}
	watch.active = true;
	watch.pid = pid;
	watch.start = (uint64_t)v;
	watch.target = bytes;
}

static void
watch_check(void)
{
	int64_t v;

	if (!watch.active || watch.done_ns != 0)
		return;
	v = proc_rchar(watch.pid);
	if (v >= 0 && (uint64_t)v - watch.start >= watch.target)
		watch.done_ns = now_ns();
}

/*
 * Write out[0..len) while reading responses, until all of it is written and
 * want_tagged more tagged answers and want_responses more responses (of any
 * kind) have arrived.  Returns the number of tagged answers that were OK.
 */
static unsigned long
exchange(struct conn *c, const char *out, size_t len, unsigned long want_tagged,
    unsigned long want_responses)
{
	unsigned long t0 = c->tagged, ok0 = c->tagged_ok, r0 = c->responses;
	size_t off = 0;
	uint64_t progress_ns = now_ns();

	while (off < len || c->tagged - t0 < want_tagged ||
	    c->responses - r0 < want_responses) {
		struct pollfd pfd = { c->fd, POLLIN, 0 };
		int n;

		if (off < len)
			pfd.events |= POLLOUT;
		if (watch.active && watch.done_ns == 0) {
			/* look at mappend's progress every millisecond */
			n = poll(&pfd, 1, 1);
			watch_check();
			if (n == 0 && now_ns() - progress_ns <
			    (uint64_t)IO_TIMEOUT_MS * 1000000u)
				continue;
		} else {
			n = poll(&pfd, 1, IO_TIMEOUT_MS);
		}
		if (n == -1) {
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		if (n == 0)
			die("%s: no progress for %d s (%zu of %zu bytes written, "
			    "%lu of %lu answers)", c->label, IO_TIMEOUT_MS / 1000,
			    off, len, c->tagged - t0, want_tagged);
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = read(c->fd, c->in, READ_CHUNK);

			if (r == 0)
				die("%s: connection closed by the server (last "
				    "response: %s)", c->label, c->first);
			if (r < 0 && errno != EAGAIN && errno != EINTR)
				die("%s: read: %s", c->label, strerror(errno));
			if (r > 0) {
				feed(c, c->in, (size_t)r);
				progress_ns = now_ns();
			}
		}
		if ((pfd.revents & POLLOUT) && off < len) {
			ssize_t w = send(c->fd, out + off, len - off, MSG_NOSIGNAL);

			if (w < 0 && errno != EAGAIN && errno != EINTR)
				die("%s: write: %s", c->label, strerror(errno));
			if (w > 0) {
				off += (size_t)w;
				progress_ns = now_ns();
			}
		}
	}
	return c->tagged_ok - ok0;
}

/* One command (tag C), which must be answered OK. */
static void cmd_ok(struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
cmd_ok(struct conn *c, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	memcpy(line, "C ", 2);
	va_start(ap, fmt);
	n = vsnprintf(line + 2, sizeof(line) - 4, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 4)
		die("command too long");
	memcpy(line + 2 + n, "\r\n", 2);
	if (exchange(c, line, (size_t)n + 4, 1, 0) != 1)
		die("%s: %.*s: %s", c->label, n, line + 2, c->last_bad);
}

/* Connect, read the greeting, log in. */
static struct conn *
conn_open(int port, const char *user, const char *pass, const char *label)
{
	struct conn *c = xmalloc(sizeof(*c));

	memset(c, 0, sizeof(*c));
	c->in = xmalloc(READ_CHUNK);
	c->status_messages = -1;
	snprintf(c->label, sizeof(c->label), "%s", label);
	c->fd = tcp_connect(port);
	set_nonblock(c->fd);
	exchange(c, NULL, 0, 0, 1);
	if (strncmp(c->first, "* OK", 4) != 0)
		die("%s: unexpected greeting: %s", label, c->first);
	cmd_ok(c, "LOGIN \"%s\" \"%s\"", user, pass);
	return c;
}

static void
conn_close(struct conn *c)
{
	if (c == NULL)
		return;
	close(c->fd);
	free(c->in);
	buf_free(&c->line);
	free(c);
}

/* ----------------------------------------------------------- delay relay */

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

static struct relay *
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

static void
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

/* ------------------------------------------------------- /proc/PID/status */

/* A "Key:   N kB" field of /proc/pid/status in KiB, or -1. */
static long
proc_status_kb(pid_t pid, const char *key)
{
	char path[64], line[256];
	size_t kl = strlen(key);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		die("%s: %s (did mappend exit?)", path, strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			v = strtol(line + kl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* utime + stime of a process, in seconds. */
static double
proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		die("%s: %s (did mappend exit?)", path, strerror(errno));
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* after "pid (comm) ": state is field 3, utime 14, stime 15 */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
	    &ut, &st) != 2)
		die("%s: cannot parse", path);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void
loadavg(char *out, size_t n)
{
	FILE *f = fopen("/proc/loadavg", "r");

	snprintf(out, n, "?");
	if (f != NULL) {
		if (fgets(out, (int)n, f) != NULL)
			out[strcspn(out, "\n")] = '\0';
		fclose(f);
	}
}

static bool hwm_resettable = true;

/* Reset the peak RSS (VmHWM) to the current RSS: "5" > clear_refs
 * (Linux >= 4.0; needs ptrace rights over the process). */
static void
reset_hwm(pid_t pid)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/clear_refs", (long)pid);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd == -1 || write(fd, "5", 1) != 1) {
		if (hwm_resettable)
			progress("cannot reset VmHWM via %s (%s): peaks below are "
			    "since mappend started", path, strerror(errno));
		hwm_resettable = false;
	}
	if (fd != -1)
		close(fd);
}

/* ------------------------------------------------------------ benchmarks */

struct opts {
	int mappend_port, dovecot_port;
	pid_t mappend_pid;
	const char *user, *pass, *user2, *pass2;
	int runs;		/* runs of each upload without delay */
	int delay_runs;		/* runs of each upload with delay */
	int fetch_runs;
	unsigned delay_ms;
	int sessions;
	unsigned small_n, big_n, fetch_mib;
	size_t small_size, big_size;
};

static struct opts o;

enum mode { MODE_MULTI, MODE_SYNC, MODE_PIPE, NMODES };
static const char *const mode_name[NMODES] = { "a", "b", "c" };
static const char *const mode_desc[NMODES] = {
	"(a) one MULTIAPPEND through mappend",
	"(b) direct, one APPEND at a time",
	"(c) direct, APPENDs pipelined",
};

#define MAX_RUNS 64

struct upload_result {
	const char *title;
	unsigned n;
	size_t size;
	unsigned delay_ms;
	int runs;
	double t[NMODES][MAX_RUNS];	/* seconds */
	long hwm_kb[MAX_RUNS];		/* mappend's VmHWM during each (a) */
	long rss0_kb[MAX_RUNS];		/* and its VmRSS just before */
	double spool_s[MAX_RUNS];	/* (a): until mappend had read it all */
	double cpu_s[MAX_RUNS];		/* (a): mappend's CPU time */
};

/* What upload_once measures besides the total time, for (a). */
struct upload_extra {
	long hwm_kb, rss0_kb;
	double spool_s, cpu_s;	/* spool_s < 0: unknown */
};

/*
 * One upload of n messages of size bytes into the fresh mailbox box, in the
 * given mode, on a connection to port.  Returns seconds; for MODE_MULTI,
 * *x gets mappend's VmHWM and CPU time, and when mappend had read (and
 * spooled) the whole command.
 */
static double
upload_once(enum mode m, int port, const char *box, unsigned n, size_t size,
    struct upload_extra *x)
{
	struct conn *c;
	struct buf b = { 0 };
	size_t *off = NULL;
	unsigned i;
	uint64_t t0, t1;
	unsigned long ok = 0;
	char label[256];
	double cpu0 = 0;

	snprintf(label, sizeof(label), "%s (%s)", box, mode_desc[m]);
	c = conn_open(port, o.user, o.pass, label);
	cmd_ok(c, "CREATE \"%s\"", box);

	/* everything to send, built before the clock starts */
	if (m == MODE_MULTI) {
		buf_printf(&b, "A APPEND \"%s\"", box);
		for (i = 0; i < n; i++) {
			buf_printf(&b, " (\\Seen) {%zu+}\r\n", size);
			add_message(&b, size, box, i);
		}
		buf_add(&b, "\r\n", 2);
	} else {
		off = xmalloc((n + 1) * sizeof(*off));
		for (i = 0; i < n; i++) {
			off[i] = b.len;
			buf_printf(&b, "A%u APPEND \"%s\" (\\Seen) {%zu+}\r\n", i, box, size);
			add_message(&b, size, box, i);
			buf_add(&b, "\r\n", 2);
		}
		off[n] = b.len;
	}

	if (m == MODE_MULTI) {
		x->rss0_kb = proc_status_kb(o.mappend_pid, "VmRSS");
		reset_hwm(o.mappend_pid);
		cpu0 = proc_cpu_s(o.mappend_pid);
		watch_start(o.mappend_pid, b.len);
	}
	t0 = now_ns();
	switch (m) {
	case MODE_MULTI:
		ok = exchange(c, b.p, b.len, 1, 0) == 1 ? n : 0;
		break;
	case MODE_SYNC:
		for (i = 0; i < n; i++)
			ok += exchange(c, b.p + off[i], off[i + 1] - off[i], 1, 0);
		break;
	case MODE_PIPE:
		ok = exchange(c, b.p, b.len, n, 0);
		break;
	default:
		break;
	}
	t1 = now_ns();
	if (m == MODE_MULTI) {
		x->hwm_kb = proc_status_kb(o.mappend_pid, "VmHWM");
		x->cpu_s = proc_cpu_s(o.mappend_pid) - cpu0;
		x->spool_s = watch.done_ns ? (double)(watch.done_ns - t0) / 1e9 : -1;
		watch.active = false;
	}
	if (ok != n)
		die("%s: %lu of %u APPENDs succeeded; last refusal: %s", label,
		    ok, n, c->last_bad);
	buf_free(&b);
	free(off);

	/* the mailbox must hold exactly n messages */
	c->status_messages = -1;
	cmd_ok(c, "STATUS \"%s\" (MESSAGES)", box);
	if (c->status_messages != (long)n)
		die("%s: mailbox holds %ld messages after the upload, not %u",
		    label, c->status_messages, n);
	cmd_ok(c, "DELETE \"%s\"", box);
	conn_close(c);
	return (double)(t1 - t0) / 1e9;
}

static void
upload_bench(struct upload_result *res, const char *title, unsigned n,
    size_t size, unsigned delay_ms, int runs)
{
	struct relay *to_mappend = NULL, *to_dovecot = NULL;
	int r, k;

	memset(res, 0, sizeof(*res));
	res->title = title;
	res->n = n;
	res->size = size;
	res->delay_ms = delay_ms;
	res->runs = runs;
	if (delay_ms > 0) {
		to_mappend = relay_start(o.mappend_port, delay_ms);
		to_dovecot = relay_start(o.dovecot_port, delay_ms);
	}
	for (r = 0; r < runs; r++) {
		/* the order rotates, so that drift hits every mode alike */
		for (k = 0; k < NMODES; k++) {
			enum mode m = (enum mode)((k + r) % NMODES);
			int port;
			char box[96];
			struct upload_extra x = { -1, -1, -1, 0 };

			if (m == MODE_MULTI)
				port = to_mappend ? to_mappend->port : o.mappend_port;
			else
				port = to_dovecot ? to_dovecot->port : o.dovecot_port;
			snprintf(box, sizeof(box), "bench-%ux%zu-d%u-%s-%d", n, size,
			    delay_ms, mode_name[m], r + 1);
			res->t[m][r] = upload_once(m, port, box, n, size, &x);
			if (m == MODE_MULTI) {
				res->hwm_kb[r] = x.hwm_kb;
				res->rss0_kb[r] = x.rss0_kb;
				res->spool_s[r] = x.spool_s;
				res->cpu_s[r] = x.cpu_s;
			}
			if (m == MODE_MULTI)
				progress("%-28s run %d/%d  %s %8.3f s  (spooled after "
				    "%.3f s; mappend CPU %.2f s, VmHWM %ld KiB)", title,
				    r + 1, runs, mode_name[m], res->t[m][r], x.spool_s,
				    x.cpu_s, x.hwm_kb);
			else
				progress("%-28s run %d/%d  %s %8.3f s", title, r + 1,
				    runs, mode_name[m], res->t[m][r]);
		}
	}
	if (to_mappend != NULL)
		relay_stop(to_mappend);
	if (to_dovecot != NULL)
		relay_stop(to_dovecot);
}

struct fetch_result {
	size_t size;
	int runs;
	double t_mappend[MAX_RUNS], t_direct[MAX_RUNS];
	long hwm_kb;		/* max over the runs through mappend */
	long rss_before_kb;
	double cpu_s[MAX_RUNS];	/* mappend's CPU time per FETCH */
};

static double
fetch_once(struct conn *c)
{
	static const char cmd[] = "F FETCH 1 BODY.PEEK[]\r\n";
	uint64_t t0, t1, lit0 = c->lit_bytes;

	t0 = now_ns();
	if (exchange(c, cmd, sizeof(cmd) - 1, 1, 0) != 1)
		die("%s: FETCH: %s", c->label, c->last_bad);
	t1 = now_ns();
	if (c->lit_bytes - lit0 != o.fetch_mib * MiB)
		die("%s: FETCH returned %" PRIu64 " literal bytes, not %lu", c->label,
		    c->lit_bytes - lit0, o.fetch_mib * MiB);
	return (double)(t1 - t0) / 1e9;
}

static void
fetch_bench(struct fetch_result *res)
{
	static const char box[] = "bench-fetch";
	struct conn *direct, *via;
	struct buf b = { 0 };
	size_t size = o.fetch_mib * MiB;
	int r;

	memset(res, 0, sizeof(*res));
	res->size = size;
	res->runs = o.fetch_runs;

	/* the message goes in directly */
	direct = conn_open(o.dovecot_port, o.user, o.pass, "fetch (direct)");
	cmd_ok(direct, "CREATE \"%s\"", box);
	buf_printf(&b, "A APPEND \"%s\" {%zu+}\r\n", box, size);
	add_message(&b, size, "fetch", 0);
	buf_add(&b, "\r\n", 2);
	progress("fetch: appending one %u MiB message directly", o.fetch_mib);
	if (exchange(direct, b.p, b.len, 1, 0) != 1)
		die("fetch: APPEND of %zu bytes: %s", size, direct->last_bad);
	buf_free(&b);
	cmd_ok(direct, "EXAMINE \"%s\"", box);

	via = conn_open(o.mappend_port, o.user, o.pass, "fetch (mappend)");
	cmd_ok(via, "EXAMINE \"%s\"", box);

	/* a first, untimed FETCH brings the file into the page cache */
	fetch_once(direct);
	res->rss_before_kb = proc_status_kb(o.mappend_pid, "VmRSS");
	res->hwm_kb = 0;
	for (r = 0; r < res->runs; r++) {
		long hwm;
		double cpu0;

		reset_hwm(o.mappend_pid);
		cpu0 = proc_cpu_s(o.mappend_pid);
		res->t_mappend[r] = fetch_once(via);
		res->cpu_s[r] = proc_cpu_s(o.mappend_pid) - cpu0;
		hwm = proc_status_kb(o.mappend_pid, "VmHWM");
		if (hwm > res->hwm_kb)
			res->hwm_kb = hwm;
		res->t_direct[r] = fetch_once(direct);
		progress("fetch %u MiB run %d/%d  mappend %.3f s (CPU %.2f s, VmHWM "
		    "%ld KiB)  direct %.3f s", o.fetch_mib, r + 1, res->runs,
		    res->t_mappend[r], res->cpu_s[r], hwm, res->t_direct[r]);
	}
	conn_close(via);
	cmd_ok(direct, "CLOSE");
	cmd_ok(direct, "DELETE \"%s\"", box);
	conn_close(direct);
}

struct session_result {
	int n;
	long rss_before_kb, rss_after_kb, rss_closed_kb;
	double open_s;
};

static void
sessions_bench(struct session_result *res)
{
	struct conn **c = xmalloc((size_t)o.sessions * sizeof(*c));
	uint64_t t0;
	int i;

	memset(res, 0, sizeof(*res));
	res->n = o.sessions;
	res->rss_before_kb = proc_status_kb(o.mappend_pid, "VmRSS");
	progress("sessions: opening %d logged-in sessions through mappend",
	    o.sessions);
	t0 = now_ns();
	for (i = 0; i < o.sessions; i++) {
		char label[64];

		/* two users: Dovecot allows 1000 connections per user and IP */
		snprintf(label, sizeof(label), "idle session %d", i + 1);
		c[i] = i % 2 ? conn_open(o.mappend_port, o.user2, o.pass2, label)
			     : conn_open(o.mappend_port, o.user, o.pass, label);
	}
	res->open_s = (double)(now_ns() - t0) / 1e9;
	sleep_ms(1000);	/* let mappend settle (its own commands, if any) */
	res->rss_after_kb = proc_status_kb(o.mappend_pid, "VmRSS");
	for (i = 0; i < o.sessions; i++)
		conn_close(c[i]);
	free(c);
	sleep_ms(2000);	/* mappend and Dovecot close their side */
	res->rss_closed_kb = proc_status_kb(o.mappend_pid, "VmRSS");
	progress("sessions: VmRSS %ld KiB before, %ld KiB with %d sessions, "
	    "%ld KiB after closing them", res->rss_before_kb, res->rss_after_kb,
	    o.sessions, res->rss_closed_kb);
}

/* --------------------------------------------------------------- report */

static void
cpu_model(char *out, size_t n)
{
	char line[512];
	FILE *f = fopen("/proc/cpuinfo", "r");

	snprintf(out, n, "unknown");
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "model name", 10) == 0) {
			char *v = strchr(line, ':');

			if (v != NULL) {
				v += strspn(v + 1, " \t") + 1;
				v[strcspn(v, "\n")] = '\0';
				snprintf(out, n, "%s", v);
			}
			break;
		}
	fclose(f);
}

static const char *
size_str(size_t s, char *out, size_t n)
{
	if (s % MiB == 0)
		snprintf(out, n, "%zu MiB", s / MiB);
	else if (s % KiB == 0)
		snprintf(out, n, "%zu KiB", s / KiB);
	else
		snprintf(out, n, "%zu B", s);
	return out;
}

static void
print_runs(const double *t, int n)
{
	int i;

	printf("[");
	for (i = 0; i < n; i++)
		printf("%s%.3f", i ? " " : "", t[i]);
	printf("]");
}

static void
report_uploads(const struct upload_result *u, int nu)
{
	int i, m;

	printf("\nUploads (seconds; median of the runs shown in brackets)\n\n");
	printf("%-28s %10s %10s %10s %7s %7s %8s %8s\n", "", "(a)", "(b)", "(c)",
	    "a/b", "a/c", "b/a", "c/a");
	for (i = 0; i < nu; i++) {
		double med[NMODES];

		for (m = 0; m < NMODES; m++)
			med[m] = median(u[i].t[m], u[i].runs);
		printf("%-28s %10.3f %10.3f %10.3f %7.3f %7.3f %7.1fx %7.1fx\n",
		    u[i].title, med[0], med[1], med[2], med[0] / med[1],
		    med[0] / med[2], med[1] / med[0], med[2] / med[0]);
	}
	printf("\n  (a) one MULTIAPPEND with {n+} literals through mappend\n"
	    "  (b) directly to Dovecot, one APPEND {n+} at a time, each waiting "
	    "for its tagged OK\n"
	    "  (c) directly to Dovecot, all APPENDs {n+} pipelined\n"
	    "  a/b, a/c: time ratios (below 1: (a) faster); b/a, c/a: speed-up "
	    "of (a)\n\n  runs:\n");
	for (i = 0; i < nu; i++) {
		printf("  %-28s", u[i].title);
		for (m = 0; m < NMODES; m++) {
			printf(" %s=", mode_name[m]);
			print_runs(u[i].t[m], u[i].runs);
		}
		printf("\n");
	}
	printf("\n  where (a)'s time goes (medians, seconds): \"spool\" until "
	    "mappend had read\n  the whole command (rchar of /proc/PID/io), "
	    "\"replay\" the rest: the single\n  APPENDs to Dovecot and the "
	    "answer; CPU: mappend's utime+stime\n\n");
	printf("  %-28s %10s %10s %10s %10s\n", "", "(a) total", "spool", "replay",
	    "CPU");
	for (i = 0; i < nu; i++) {
		double tot = median(u[i].t[MODE_MULTI], u[i].runs);
		double sp = median(u[i].spool_s, u[i].runs);

		if (sp < 0)
			printf("  %-28s %10.3f %10s %10s %10.2f\n", u[i].title, tot,
			    "n/a", "n/a", median(u[i].cpu_s, u[i].runs));
		else
			printf("  %-28s %10.3f %10.3f %10.3f %10.2f\n", u[i].title,
			    tot, sp, tot - sp, median(u[i].cpu_s, u[i].runs));
	}
}

/* What a run measures: --phases takes a comma-separated list of these. */
enum {
	PH_SESSIONS = 1 << 0,
	PH_SMALL = 1 << 1,
	PH_BIG = 1 << 2,
	PH_SMALL_DELAY = 1 << 3,
	PH_BIG_DELAY = 1 << 4,
	PH_FETCH = 1 << 5,
	PH_ALL = (1 << 6) - 1,
};
static const char *const phase_names[] = {
	"sessions", "small", "big", "small-delay", "big-delay", "fetch",
};

static unsigned
parse_phases(const char *arg)
{
	char *copy = strdup(arg), *tok, *save = NULL;
	unsigned ph = 0, i;

	if (copy == NULL)
		die("out of memory");
	for (tok = strtok_r(copy, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "all") == 0) {
			ph |= PH_ALL;
			continue;
		}
		for (i = 0; i < sizeof(phase_names) / sizeof(*phase_names); i++)
			if (strcmp(tok, phase_names[i]) == 0)
				break;
		if (i == sizeof(phase_names) / sizeof(*phase_names)) {
			fprintf(stderr, "bench_mappend: unknown phase '%s' (sessions, "
			    "small, big, small-delay, big-delay, fetch, all)\n", tok);
			exit(2);
		}
		ph |= 1u << i;
	}
	free(copy);
	return ph;
}

static long
max_hwm(const struct upload_result *u)
{
	long m = 0;
	int i;

	for (i = 0; i < u->runs; i++)
		if (u->hwm_kb[i] > m)
			m = u->hwm_kb[i];
	return m;
}

/* The most VmHWM grew over the VmRSS before, over the runs. */
static long
max_growth(const struct upload_result *u)
{
	long m = 0;
	int i;

	for (i = 0; i < u->runs; i++)
		if (u->hwm_kb[i] - u->rss0_kb[i] > m)
			m = u->hwm_kb[i] - u->rss0_kb[i];
	return m;
}

static void
usage(const char *argv0)
{
	fprintf(stderr,
	    "usage: %s --mappend-port P --mappend-pid PID --dovecot-port P\n"
	    "       --user U --password PW --user2 U --password2 PW\n"
	    "       [--runs N] [--delay-runs N] [--fetch-runs N] [--fetch-mib N]\n"
	    "       [--delay-ms MS] [--sessions N] [--phases LIST]\n"
	    "LIST: comma-separated sessions, small, big, small-delay, big-delay,\n"
	    "fetch, or all (default).\n"
	    "Normally started by tests/bench/run.sh (make bench), which passes\n"
	    "the ports, users and pid; options given to run.sh are passed on.\n",
	    argv0);
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mappend-port", required_argument, NULL, 'm' },
		{ "mappend-pid", required_argument, NULL, 'p' },
		{ "dovecot-port", required_argument, NULL, 'd' },
		{ "user", required_argument, NULL, 'u' },
		{ "password", required_argument, NULL, 'P' },
		{ "user2", required_argument, NULL, 'U' },
		{ "password2", required_argument, NULL, 'Q' },
		{ "runs", required_argument, NULL, 'r' },
		{ "delay-runs", required_argument, NULL, 'R' },
		{ "fetch-runs", required_argument, NULL, 'F' },
		{ "fetch-mib", required_argument, NULL, 'f' },
		{ "delay-ms", required_argument, NULL, 'D' },
		{ "sessions", required_argument, NULL, 's' },
		{ "phases", required_argument, NULL, 'x' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct upload_result up[4];
	struct fetch_result fr;
	struct session_result sr;
	struct rlimit rl;
	char cpu[256], s1[32], s2[32], title[4][128], load0[128], load1[128];
	unsigned phases = PH_ALL;
	int ch, i, nup = 0, big_idx = -1;
	long rss0;
	double ratio;

	o.runs = 3;
	o.delay_runs = 3;
	o.fetch_runs = 3;
	o.fetch_mib = 200;
	o.delay_ms = 10;
	o.sessions = 1000;
	o.small_n = 1000;
	o.small_size = 4 * KiB;
	o.big_n = 100;
	o.big_size = 1 * MiB;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'm': o.mappend_port = atoi(optarg); break;
		case 'p': o.mappend_pid = (pid_t)atol(optarg); break;
		case 'd': o.dovecot_port = atoi(optarg); break;
		case 'u': o.user = optarg; break;
		case 'P': o.pass = optarg; break;
		case 'U': o.user2 = optarg; break;
		case 'Q': o.pass2 = optarg; break;
		case 'r': o.runs = atoi(optarg); break;
		case 'R': o.delay_runs = atoi(optarg); break;
		case 'F': o.fetch_runs = atoi(optarg); break;
		case 'f': o.fetch_mib = (unsigned)atoi(optarg); break;
		case 'D': o.delay_ms = (unsigned)atoi(optarg); break;
		case 's': o.sessions = atoi(optarg); break;
		case 'x': phases = parse_phases(optarg); break;
		default: usage(argv[0]);
		}
	}
	if (optind != argc || o.mappend_port <= 0 || o.dovecot_port <= 0 ||
	    o.mappend_pid <= 0 || !o.user || !o.pass || !o.user2 || !o.pass2 ||
	    o.runs < 1 || o.runs > MAX_RUNS || o.delay_runs < 1 ||
	    o.delay_runs > MAX_RUNS || o.fetch_runs < 1 || o.fetch_runs > MAX_RUNS ||
	    o.fetch_mib < 1 || o.fetch_mib > 4000 || o.delay_ms < 1 ||
	    o.delay_ms > 10000 || o.sessions < 1 || phases == 0)
		usage(argv[0]);
	signal(SIGPIPE, SIG_IGN);
	/* one descriptor per idle session, and some */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur < (rlim_t)o.sessions + 64) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1 ||
		    rl.rlim_cur < (rlim_t)o.sessions + 64)
			die("RLIMIT_NOFILE %lu is too low for %d sessions",
			    (unsigned long)rl.rlim_cur, o.sessions);
	}
	rss0 = proc_status_kb(o.mappend_pid, "VmRSS");
	loadavg(load0, sizeof(load0));

	/* while mappend is fresh: the idle sessions */
	if (phases & PH_SESSIONS)
		sessions_bench(&sr);

	snprintf(title[0], sizeof(title[0]), "%u x %s", o.small_n,
	    size_str(o.small_size, s1, sizeof(s1)));
	snprintf(title[1], sizeof(title[1]), "%u x %s", o.big_n,
	    size_str(o.big_size, s1, sizeof(s1)));
	snprintf(title[2], sizeof(title[2]), "%.60s, %u ms delay", title[0], o.delay_ms);
	snprintf(title[3], sizeof(title[3]), "%.60s, %u ms delay", title[1], o.delay_ms);
	if (phases & PH_SMALL)
		upload_bench(&up[nup++], title[0], o.small_n, o.small_size, 0, o.runs);
	if (phases & PH_BIG) {
		big_idx = nup;
		upload_bench(&up[nup++], title[1], o.big_n, o.big_size, 0, o.runs);
	}
	if (phases & PH_SMALL_DELAY)
		upload_bench(&up[nup++], title[2], o.small_n, o.small_size,
		    o.delay_ms, o.delay_runs);
	if (phases & PH_BIG_DELAY)
		upload_bench(&up[nup++], title[3], o.big_n, o.big_size, o.delay_ms,
		    o.delay_runs);
	if (phases & PH_FETCH)
		fetch_bench(&fr);

	/* ---- the report */
	loadavg(load1, sizeof(load1));
	cpu_model(cpu, sizeof(cpu));
	printf("\nmappend benchmarks\n==================\n");
	printf("machine: %ld CPUs online, %s\n", sysconf(_SC_NPROCESSORS_ONLN), cpu);
	printf("upstream: private legacy-mode Dovecot on 127.0.0.1:%d, mappend on "
	    "127.0.0.1:%d (pid %ld)\n", o.dovecot_port, o.mappend_port,
	    (long)o.mappend_pid);
	printf("runs: %d per upload without delay, %d with delay, %d per FETCH\n",
	    o.runs, o.delay_runs, o.fetch_runs);
	printf("/proc/loadavg: at start %s; at end %s\n", load0, load1);

	if (nup > 0) {
		report_uploads(up, nup);
		printf("\nmappend memory during the uploads (the highest VmHWM over "
		    "the runs of (a),\nand the most it rose above the VmRSS just "
		    "before the command)\n\n");
		printf("  %-45s %8ld KiB\n", "VmRSS at start (idle, no session)", rss0);
		for (i = 0; i < nup; i++)
			printf("  VmHWM during (a) %-28s %8ld KiB  (%.1f MiB; +%ld KiB)\n",
			    up[i].title, max_hwm(&up[i]), max_hwm(&up[i]) / 1024.0,
			    max_growth(&up[i]));
		printf("  (VmHWM %s before each measured command)\n",
		    hwm_resettable ? "reset through /proc/PID/clear_refs" :
		    "could NOT be reset: figures are peaks since mappend started");
	}

	if (phases & PH_FETCH) {
		printf("\nPass-through: FETCH 1 BODY.PEEK[] of one %s message "
		    "(median of %d; page cache warm)\n\n",
		    size_str(fr.size, s2, sizeof(s2)), fr.runs);
		printf("  through mappend  %8.3f s  %8.1f MiB/s  ", median(fr.t_mappend,
		    fr.runs), (double)fr.size / MiB / median(fr.t_mappend, fr.runs));
		print_runs(fr.t_mappend, fr.runs);
		printf("\n  directly         %8.3f s  %8.1f MiB/s  ", median(fr.t_direct,
		    fr.runs), (double)fr.size / MiB / median(fr.t_direct, fr.runs));
		print_runs(fr.t_direct, fr.runs);
		printf("\n  mappend/direct   %8.2f\n", median(fr.t_mappend, fr.runs) /
		    median(fr.t_direct, fr.runs));
		printf("  mappend CPU time per FETCH: %.2f s (median)\n",
		    median(fr.cpu_s, fr.runs));
		printf("  mappend VmHWM during the FETCH: %ld KiB (%.1f MiB; VmRSS "
		    "before: %ld KiB)\n", fr.hwm_kb, fr.hwm_kb / 1024.0,
		    fr.rss_before_kb);
	}

	if (phases & PH_SESSIONS) {
		printf("\nIdle sessions through mappend\n\n");
		printf("  %d logged-in idle sessions (opened in %.1f s): VmRSS %ld KiB "
		    "-> %ld KiB\n", sr.n, sr.open_s, sr.rss_before_kb,
		    sr.rss_after_kb);
		printf("  per session: %.1f KiB   (VmRSS after closing them all: "
		    "%ld KiB)\n", (double)(sr.rss_after_kb - sr.rss_before_kb) / sr.n,
		    sr.rss_closed_kb);
	}

	printf("\nTargets (reported, not asserted)\n\n");
	if (big_idx >= 0)
		printf("  VmHWM during (a) %s below 32 MiB: %.1f MiB: %s\n", title[1],
		    max_hwm(&up[big_idx]) / 1024.0,
		    max_hwm(&up[big_idx]) < 32 * 1024 ? "met" : "MISSED");
	for (i = 0; i < nup; i++) {
		if (up[i].delay_ms == 0)
			continue;
		ratio = median(up[i].t[MODE_SYNC], up[i].runs) /
		    median(up[i].t[MODE_MULTI], up[i].runs);
		printf("  %s: (a) at least 20x faster than (b): %.1fx: %s\n",
		    up[i].title, ratio, ratio >= 20 ? "met" : "MISSED");
		printf("    (for comparison, pipelining directly, (c), is %.1fx "
		    "faster than (b))\n", median(up[i].t[MODE_SYNC], up[i].runs) /
		    median(up[i].t[MODE_PIPE], up[i].runs));
	}
	return 0;
}

/*
 * client.c — the benchmark's IMAP client, over TCP or TLS (OpenSSL, no
 * certificate checks: the servers are our own on loopback).
 *
 * exchange() writes and reads at once (poll on both directions), so a
 * pipelined upload never deadlocks on full socket buffers; logins_round()
 * drives many short sessions in parallel from one poll loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <openssl/err.h>

#include "bench.h"

#define IO_TIMEOUT_MS 120000		/* no progress for this long: error */
#define READ_CHUNK (256 * KiB)
#define MAX_RESPONSE_LINE (16 * MiB)

static const struct watch_hook *watch;

int
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

void
set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		die("fcntl: %s", strerror(errno));
}

static const char *
ssl_error(void)
{
	static char msg[256];
	unsigned long e = ERR_get_error();

	if (e == 0)
		return errno != 0 ? strerror(errno) : "unknown error";
	ERR_error_string_n(e, msg, sizeof(msg));
	return msg;
}

static SSL_CTX *
client_ctx(void)
{
	static SSL_CTX *ctx;

	if (ctx == NULL) {
		if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
			die("SSL_CTX_new: %s", ssl_error());
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
		    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	}
	return ctx;
}

/* A TLS handshake on the non-blocking socket of c. */
static void
tls_handshake(struct conn *c)
{
	uint64_t t0 = now_ns();

	if ((c->ssl = SSL_new(client_ctx())) == NULL || !SSL_set_fd(c->ssl, c->fd))
		die("%s: SSL_new: %s", c->label, ssl_error());
	SSL_set_connect_state(c->ssl);
	for (;;) {
		struct pollfd pfd = { c->fd, 0, 0 };
		int r = SSL_do_handshake(c->ssl);

		if (r == 1)
			return;
		switch (SSL_get_error(c->ssl, r)) {
		case SSL_ERROR_WANT_READ:
			pfd.events = POLLIN;
			break;
		case SSL_ERROR_WANT_WRITE:
			pfd.events = POLLOUT;
			break;
		default:
			die("%s: TLS handshake: %s", c->label, ssl_error());
		}
		if (now_ns() - t0 > (uint64_t)IO_TIMEOUT_MS * 1000000u)
			die("%s: TLS handshake timed out", c->label);
		if (poll(&pfd, 1, 1000) == -1 && errno != EINTR)
			die("poll: %s", strerror(errno));
	}
}

/* read() or SSL_read(): > 0 bytes, 0 at the end, -1 for "not now". */
static ssize_t
conn_recv(struct conn *c, void *p, size_t n)
{
	ssize_t r;
	int k;

	if (c->ssl == NULL) {
		r = read(c->fd, p, n);
		if (r < 0 && errno != EAGAIN && errno != EINTR)
			die("%s: read: %s", c->label, strerror(errno));
		return r;
	}
	k = SSL_read(c->ssl, p, (int)(n > INT32_MAX ? INT32_MAX : n));
	if (k > 0)
		return k;
	switch (SSL_get_error(c->ssl, k)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		if (errno == 0)
			return 0;	/* the peer closed without close_notify */
		/* fall through */
	default:
		die("%s: TLS read: %s", c->label, ssl_error());
	}
}

/* send() or SSL_write(): bytes written, or -1 for "not now". */
static ssize_t
conn_send(struct conn *c, const void *p, size_t n)
{
	ssize_t w;
	int k;

	if (c->ssl == NULL) {
		w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			die("%s: write: %s", c->label, strerror(errno));
		return w;
	}
	k = SSL_write(c->ssl, p, (int)(n > INT32_MAX ? INT32_MAX : n));
	if (k > 0)
		return k;
	switch (SSL_get_error(c->ssl, k)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return -1;
	default:
		die("%s: TLS write: %s", c->label, ssl_error());
	}
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
	snprintf(c->last_tagged, sizeof(c->last_tagged), "%s", r);
	sp = strchr(r, ' ');
	if (sp != NULL && strncmp(sp + 1, "OK", 2) == 0 &&
	    (sp[3] == ' ' || sp[3] == '\r' || sp[3] == '\n' || sp[3] == '\0'))
		c->tagged_ok++;
	else
		snprintf(c->last_bad, sizeof(c->last_bad), "%s", r);
}

static void
count_stream(struct conn *c, const char *p, size_t n)
{
	c->stream_bytes += n;
	if (c->crc_on)
		c->stream_crc = crc32_update(c->stream_crc, p, n);
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
	if (c->first[0] == '*' || c->first[0] == '+')
		count_stream(c, l, n);
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
			if (c->first[0] == '*' || c->first[0] == '+')
				count_stream(c, p, k);
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

/* Called about every millisecond while an exchange runs (upload.c). */
void
exchange_set_watch(const struct watch_hook *w)
{
	watch = w;
}

/*
 * Write out[0..len) while reading responses, until all of it is written and
 * want_tagged more tagged answers and want_responses more responses (of any
 * kind) have arrived.  Returns the number of tagged answers that were OK.
 */
unsigned long
exchange(struct conn *c, const char *out, size_t len, unsigned long want_tagged,
    unsigned long want_responses)
{
	unsigned long t0 = c->tagged, ok0 = c->tagged_ok, r0 = c->responses;
	size_t off = 0;
	uint64_t progress_ns = now_ns();

	while (off < len || c->tagged - t0 < want_tagged ||
	    c->responses - r0 < want_responses) {
		struct pollfd pfd = { c->fd, POLLIN, 0 };
		bool watching = watch != NULL && !*watch->done;
		int n;

		if (off < len)
			pfd.events |= POLLOUT;
		if (c->ssl != NULL && SSL_has_pending(c->ssl)) {
			/* decrypted bytes wait in OpenSSL: poll would not say */
			n = 1;
			pfd.revents = POLLIN;
		} else if (watching) {
			n = poll(&pfd, 1, 1);
			watch->fn(watch->arg);
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
			ssize_t r = conn_recv(c, c->in, READ_CHUNK);

			if (r == 0)
				die("%s: connection closed by the server (last "
				    "response: %s)", c->label, c->first);
			if (r > 0) {
				feed(c, c->in, (size_t)r);
				progress_ns = now_ns();
			}
		}
		if ((pfd.revents & POLLOUT) && off < len) {
			ssize_t w = conn_send(c, out + off, len - off);

			if (w > 0) {
				off += (size_t)w;
				progress_ns = now_ns();
			}
		}
	}
	return c->tagged_ok - ok0;
}

/* One command (tag C), which must be answered OK. */
void
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

/* Connected (and with TLS, handshaken), nothing read yet. */
struct conn *
conn_new(int port, bool tls, const char *label)
{
	struct conn *c = xmalloc(sizeof(*c));

	memset(c, 0, sizeof(*c));
	c->in = xmalloc(READ_CHUNK);
	c->status_messages = -1;
	snprintf(c->label, sizeof(c->label), "%s", label);
	c->fd = tcp_connect(port);
	set_nonblock(c->fd);
	if (tls)
		tls_handshake(c);
	return c;
}

/* Connect, read the greeting, log in. */
struct conn *
conn_open(int port, bool tls, const char *user, const char *pass,
    const char *label)
{
	struct conn *c = conn_new(port, tls, label);

	exchange(c, NULL, 0, 0, 1);
	if (strncmp(c->first, "* OK", 4) != 0)
		die("%s: unexpected greeting: %s", label, c->first);
	cmd_ok(c, "LOGIN \"%s\" \"%s\"", user, pass);
	return c;
}

void
conn_close(struct conn *c)
{
	if (c == NULL)
		return;
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	close(c->fd);
	free(c->in);
	buf_free(&c->line);
	free(c);
}

/* ------------------------------------------------------ parallel logins */

enum login_state { L_IDLE, L_GREETING, L_LOGIN, L_LOGOUT };

struct login_slot {
	struct conn *c;
	enum login_state st;
	int num;		/* which session of the round */
	unsigned long want;	/* responses (greeting) or tagged answers */
};

static void
slot_send(struct login_slot *s, const char *line)
{
	size_t len = strlen(line), off = 0;

	/* a short line into an empty socket buffer: written at once */
	while (off < len) {
		ssize_t w = conn_send(s->c, line + off, len - off);

		if (w > 0)
			off += (size_t)w;
	}
}

/*
 * total sessions of connect, greeting, LOGIN, LOGOUT (until its tagged
 * answer), parallel at a time, users taking turns; returns the seconds from
 * the first connect to the last LOGOUT answer.
 */
double
logins_round(int port, int total, int parallel, const char *user,
    const char *pass, const char *user2, const char *pass2, const char *label)
{
	struct login_slot *slot = xmalloc((size_t)parallel * sizeof(*slot));
	struct pollfd *pfd = xmalloc((size_t)parallel * sizeof(*pfd));
	char *rbuf = xmalloc(READ_CHUNK);
	char login[256];
	int started = 0, finished = 0, i;
	uint64_t t0 = now_ns();

	memset(slot, 0, (size_t)parallel * sizeof(*slot));
	while (finished < total) {
		int n;

		for (i = 0; i < parallel; i++) {
			struct login_slot *s = &slot[i];

			if (s->st == L_IDLE && started < total) {
				char l[96];

				snprintf(l, sizeof(l), "%s login %d", label, started + 1);
				s->c = conn_new(port, false, l);
				s->st = L_GREETING;
				s->num = started++;
				s->want = 1;
			}
			pfd[i] = (struct pollfd){ s->c != NULL ? s->c->fd : -1, POLLIN, 0 };
		}
		n = poll(pfd, (nfds_t)parallel, IO_TIMEOUT_MS);
		if (n == -1 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if (n == 0)
			die("%s: no progress for %d s", label, IO_TIMEOUT_MS / 1000);
		for (i = 0; i < parallel; i++) {
			struct login_slot *s = &slot[i];
			ssize_t r;

			if (s->c == NULL || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			r = conn_recv(s->c, rbuf, READ_CHUNK);
			if (r == 0)
				die("%s: connection closed by the server (last "
				    "response: %s)", s->c->label, s->c->first);
			if (r < 0)
				continue;
			feed(s->c, rbuf, (size_t)r);
			if (s->st == L_GREETING && s->c->responses >= s->want) {
				if (strncmp(s->c->first, "* OK", 4) != 0)
					die("%s: unexpected greeting: %s", s->c->label,
					    s->c->first);
				snprintf(login, sizeof(login), "L LOGIN \"%s\" \"%s\"\r\n",
				    s->num % 2 ? user2 : user, s->num % 2 ? pass2 : pass);
				slot_send(s, login);
				s->st = L_LOGIN;
				s->want = s->c->tagged + 1;
			} else if (s->st == L_LOGIN && s->c->tagged >= s->want) {
				if (s->c->tagged_ok != 1)
					die("%s: LOGIN: %s", s->c->label, s->c->last_bad);
				slot_send(s, "Q LOGOUT\r\n");
				s->st = L_LOGOUT;
				s->want = s->c->tagged + 1;
			} else if (s->st == L_LOGOUT && s->c->tagged >= s->want) {
				conn_close(s->c);
				s->c = NULL;
				s->st = L_IDLE;
				finished++;
			}
		}
	}
	free(rbuf);
	free(pfd);
	free(slot);
	return (double)(now_ns() - t0) / 1e9;
}

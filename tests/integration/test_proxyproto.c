/*
 * test_proxyproto.c — listeners with proxy_protocol, through the real
 * mappend binary.  Behind a real HAProxy (Debian's, harness_haproxy.c):
 * send-proxy and send-proxy-v2, plain and implicit TLS passed through in
 * TCP mode, a client bound to 127.0.0.2: its address is logged, forwarded
 * upstream (ID "x-originating-ip") and counted by the per-address limit,
 * and the balancer's shown as "via".
 * With raw sockets: an untrusted sender, malformed headers, a missing or
 * trickling header, a header split across writes, LOCAL and UNKNOWN, the
 * client's first bytes in the header's packet (TLS too), the cap on
 * connections waiting for a header, and a plain listener beside them.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "harness_haproxy.h"
#include "proxyproto.h"

static char dir[64];		/* the mock's command log, certificates */
static struct haproxy hp;
static int pp_port, pp_tls_port;	/* mappend's proxy_protocol listeners */

static void
setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/mappend-pp.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void
teardown(void)
{
	char cmd[128];

	haproxy_stop(&hp);
	harness_teardown();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		cr_log_warn("could not remove %s", dir);
}

TestSuite(proxyproto, .init = setup, .fini = teardown, .timeout = 60);

static const char *
in_dir(const char *name)
{
	static char path[8][128];
	static int i;

	i = (i + 1) % 8;
	snprintf(path[i], sizeof(path[i]), "%s/%s", dir, name);
	return path[i];
}

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* The ports of the listeners whose line in mappend's log says "PROXY
 * protocol header first": the first plain one and the first TLS one. */
static void
find_pp_ports(void)
{
	char *log = proxy_log(&px);
	const char *l, *key = "listening on 127.0.0.1:";

	pp_port = pp_tls_port = 0;
	for (l = strstr(log, key); l != NULL; l = strstr(l + 1, key)) {
		const char *eol = strchr(l, '\n');
		size_t len = eol != NULL ? (size_t)(eol - l) : strlen(l);
		int port = atoi(l + strlen(key));

		if (memmem(l, len, "PROXY protocol header first", 27) == NULL)
			continue;
		if (memmem(l, len, "(TLS)", 5) != NULL) {
			if (pp_tls_port == 0)
				pp_tls_port = port;
		} else if (pp_port == 0) {
			pp_port = port;
		}
	}
	free(log);
	cr_assert_gt(pp_port, 0, "no proxy_protocol listener in mappend's log");
}

/*
 * The mock (logging every command it gets) and mappend with a plain
 * listener (the harness's), a proxy_protocol one, with tls a TLS
 * proxy_protocol one too, id_forward_address on; more: further lines.
 */
static void
start(const char *from, bool tls, const char *more)
{
	const char *args[] = { "--log", in_dir("mock.log"), NULL };
	char *conf = NULL;

	if (tls)
		make_certs(dir);
	cr_assert_geq(asprintf(&conf, "listen = 127.0.0.1:0 proxy_protocol\n"
	    "%s%s%s%s%s"
	    "proxy_protocol_from = %s\nid_forward_address = yes\n%s",
	    tls ? "listen = 127.0.0.1:0 tls proxy_protocol\ntls_cert = " : "",
	    tls ? in_dir("server.pem") : "", tls ? "\ntls_key = " : "",
	    tls ? in_dir("server.key") : "", tls ? "\n" : "",
	    from, more != NULL ? more : ""), 0);
	harness_start(args, conf);
	free(conf);
	find_pp_ports();
	if (tls)
		cr_assert_gt(pp_tls_port, 0, "no TLS proxy_protocol listener");
}

/* Connect c from src (a loopback address) to 127.0.0.1:port; returns the
 * client's own port. */
static int
connect_from(struct imapc *c, const char *src, int port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	struct timeval tv = { 10, 0 };

	imapc_connect_from(c, port, src);
	/* imapc_tls blocks in SSL_connect: a handshake that stalls fails */
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	cr_assert_eq(getsockname(c->fd, (struct sockaddr *)&sin, &len), 0);
	return ntohs(sin.sin_port);
}

/* mappend's log once it holds the text fmt gives (5 s at most). */
static char *
log_with(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
log_with(const char *fmt, ...)
{
	char *want = NULL, *log = NULL;
	long deadline = now_ms() + 5000;
	va_list ap;

	va_start(ap, fmt);
	cr_assert_geq(vasprintf(&want, fmt, ap), 0);
	va_end(ap);
	for (;;) {
		log = proxy_log(&px);
		if (strstr(log, want) != NULL)
			break;
		if (now_ms() > deadline)
			cr_assert_fail("mappend's log does not say \"%s\":\n%s", want,
			    log);
		free(log);
		usleep(20 * 1000);
	}
	free(want);
	return log;
}

static char *
mock_log(void)
{
	FILE *f = fopen(in_dir("mock.log"), "r");
	char *text = NULL;
	size_t n = 0;

	if (f == NULL)
		return strdup("");
	if (getdelim(&text, &n, '\0', f) < 0) {
		free(text);
		text = strdup("");
	}
	fclose(f);
	return text;
}

/* The mock's count of connections it accepted ("XMOCK STATS"), those
 * that asked before included, this one not. */
static unsigned long
upstream_connections(void)
{
	struct imapc d;
	char *r, *p;
	unsigned long v;

	imapc_connect(&d, mock.port);
	free(imapc_line(&d));
	r = imapc_command(&d, "st", "XMOCK STATS");
	p = strstr(r, " connections=");
	cr_assert_not_null(p, "%s", r);
	v = strtoul(p + strlen(" connections="), NULL, 10);
	free(r);
	imapc_close(&d);
	return v - 1;
}

/* Nobody but the test asked the upstream anything since before. */
#define NOTHING_UPSTREAM_SINCE(before) \
	cr_assert_eq(upstream_connections(), (before) + 1, "the upstream was contacted")

/* Bytes to a peer that may have closed already: a failure is no error. */
static void
send_anyway(struct imapc *c, const void *bytes, size_t len)
{
	if (send(c->fd, bytes, len, MSG_NOSIGNAL) < 0)
		cr_log_info("send: %s (mappend closed first)", strerror(errno));
}

/* c is closed by mappend without having been sent a single byte. */
static void
expect_closed_silently(struct imapc *c, const char *what)
{
	cr_assert(imapc_wait_closed(c), "%s: mappend did not close the connection", what);
	cr_assert_eq(c->len, 0, "%s: mappend sent %zu bytes: %.*s", what, c->len,
	    (int)c->len, c->buf);
}

static void
expect_greeting(struct imapc *c, const char *what)
{
	char *line = imapc_line(c);

	cr_assert(line != NULL && strncmp(line, "* OK", 4) == 0, "%s: greeting %s",
	    what, line != NULL ? line : "(none: closed or timed out)");
	free(line);
}

/* A PROXY header, built by the code under test's own builder, for
 * src -> dst (numeric IPv4 or IPv6 addresses). */
static int
header(void *buf, size_t len, unsigned version, enum proxyproto_command cmd,
    const char *src, unsigned sport, const char *dst, unsigned dport)
{
	struct proxyproto_addr a;
	int n;

	memset(&a, 0, sizeof(a));
	a.command = cmd;
	if (cmd == PROXYPROTO_PROXY && strchr(src, ':') == NULL) {
		struct sockaddr_in *s = (void *)&a.src, *d = (void *)&a.dst;

		s->sin_family = d->sin_family = AF_INET;
		cr_assert_eq(inet_pton(AF_INET, src, &s->sin_addr), 1);
		cr_assert_eq(inet_pton(AF_INET, dst, &d->sin_addr), 1);
		s->sin_port = htons((uint16_t)sport);
		d->sin_port = htons((uint16_t)dport);
		a.len = sizeof(*s);
	} else if (cmd == PROXYPROTO_PROXY) {
		struct sockaddr_in6 *s = (void *)&a.src, *d = (void *)&a.dst;

		s->sin6_family = d->sin6_family = AF_INET6;
		cr_assert_eq(inet_pton(AF_INET6, src, &s->sin6_addr), 1);
		cr_assert_eq(inet_pton(AF_INET6, dst, &d->sin6_addr), 1);
		s->sin6_port = htons((uint16_t)sport);
		d->sin6_port = htons((uint16_t)dport);
		a.len = sizeof(*s);
	}
	n = proxyproto_build(&a, version, buf, len);
	cr_assert_gt(n, 0);
	return n;
}

/* ---- behind HAProxy ---- */

/*
 * One session from 127.0.0.2 through HAProxy's frontend front to mappend's
 * listener listener: a failed login, a good one, LOGOUT.  Then mappend's
 * log names 127.0.0.2 and the client's port as the client (connection,
 * failed login, session end) and HAProxy's address via as "via", and the
 * upstream was told 127.0.0.2 and that port.
 */
static void
session_through_haproxy(const char *what, const char *via, int front,
    int listener, bool tls)
{
	struct imapc c;
	char *r, *log, *ids, from[64], id[160];
	int port = connect_from(&c, "127.0.0.2", front);

	if (tls)
		cr_assert(imapc_tls(&c, in_dir("ca.pem")),
		    "%s: TLS handshake through HAProxy failed", what);
	expect_greeting(&c, what);
	r = imapc_command(&c, "a", "LOGIN test wrong");
	cr_assert(strncmp(last_line(r), "a NO", 4) == 0, "%s: %s", what, r);
	free(r);
	free(imapc_ok(&c, "b", "LOGIN test secret"));
	free(imapc_ok(&c, "c", "SELECT INBOX"));
	free(imapc_ok(&c, "d", "LOGOUT"));
	imapc_close(&c);

	snprintf(from, sizeof(from), "127.0.0.2:%d", port);
	log = log_with("session end: user=test from=%s via=%s:", from, via);
	cr_assert(strstr(log, tls ? "tls=yes" : "tls=no") != NULL, "%s: %s", what,
	    log);
	free(log);
	log = log_with("connection from %s via %s:", from, via);
	free(log);
	log = log_with("on 127.0.0.1:%d%s, session", listener, tls ? " (TLS)" : "");
	free(log);
	log = log_with("login failed: user=test from=%s ", from);
	free(log);
	ids = mock_log();
	snprintf(id, sizeof(id), "ID (\"x-originating-ip\" \"127.0.0.2\" "
	    "\"x-originating-port\" \"%d\" ", port);
	cr_assert(strstr(ids, id) != NULL, "%s: the upstream was not told %s:\n%s",
	    what, from, ids);
	free(ids);
}

static void
start_haproxy(const char *server_opts, bool tls)
{
	char plain[256], secure[256];
	const char *servers[] = { plain, NULL, NULL };

	snprintf(plain, sizeof(plain), "127.0.0.1:%d %s", pp_port, server_opts);
	if (tls) {
		snprintf(secure, sizeof(secure), "127.0.0.1:%d %s", pp_tls_port,
		    server_opts);
		servers[1] = secure;
	}
	haproxy_start(&hp, servers, NULL);
}

Test(proxyproto, haproxy_send_proxy_v1)
{
	start("127.0.0.1/32", false, NULL);
	start_haproxy("send-proxy", false);
	session_through_haproxy("send-proxy", "127.0.0.1", hp.port[0], pp_port,
	    false);
}

/* every TLV HAProxy can add (those about TLS say "no TLS" here) is
 * skipped */
#define V2_WITH_TLVS "send-proxy-v2 proxy-v2-options ssl,cert-cn,ssl-cipher," \
	"cert-sig,cert-key,authority,crc32c,unique-id"

Test(proxyproto, haproxy_send_proxy_v2)
{
	start("127.0.0.1/32", false, NULL);
	start_haproxy(V2_WITH_TLVS, false);
	session_through_haproxy("send-proxy-v2", "127.0.0.1", hp.port[0], pp_port,
	    false);
}

/* HAProxy in TCP mode passes the TLS bytes through: the header comes
 * before the handshake, and the client checks mappend's certificate. */
Test(proxyproto, haproxy_implicit_tls_v1_and_v2)
{
	start("127.0.0.1/32", true, NULL);
	start_haproxy("send-proxy", true);
	session_through_haproxy("TLS, send-proxy", "127.0.0.1", hp.port[1],
	    pp_tls_port, true);
	haproxy_stop(&hp);
	start_haproxy(V2_WITH_TLVS, true);
	session_through_haproxy("TLS, send-proxy-v2", "127.0.0.1", hp.port[1],
	    pp_tls_port, true);
}

/* Every connection comes from HAProxy's address: max_sessions_per_address
 * counts the one its header names, so 127.0.0.2 is refused a second
 * session while 127.0.0.3 gets one. */
Test(proxyproto, haproxy_limits_count_the_clients_address)
{
	struct imapc a, b, c;
	char *line;

	start("127.0.0.1/32", false, "max_sessions_per_address = 1\n");
	start_haproxy("send-proxy-v2", false);
	connect_from(&a, "127.0.0.2", hp.port[0]);
	expect_greeting(&a, "first from 127.0.0.2");
	connect_from(&b, "127.0.0.2", hp.port[0]);
	line = imapc_line(&b);
	cr_assert(line != NULL && strcmp(line, "* BYE Too many connections from your "
	    "address, try again later") == 0, "second from 127.0.0.2: %s", line);
	free(line);
	connect_from(&c, "127.0.0.3", hp.port[0]);
	expect_greeting(&c, "first from 127.0.0.3");
	free(log_with("refused a connection from 127.0.0.2"));
	imapc_close(&a);
	imapc_close(&b);
	imapc_close(&c);
}

/*
 * HAProxy's own health checks (check-send-proxy) carry a header too: v2 a
 * LOCAL one, v1 one naming the check connection's own addresses.  Each
 * becomes a session with the balancer's address that greets, so the check
 * (expecting "* OK") passes and the servers stay up.  The two servers
 * connect from 127.0.0.3 (v1) and 127.0.0.4 (v2), so the log tells whose
 * checks came; then real traffic passes through both.
 */
Test(proxyproto, haproxy_health_checks_keep_the_servers_up)
{
	static const char *const sources[] = { "127.0.0.3", "127.0.0.4" };
	char v1[128], v2[128], *log, want[64];
	const char *servers[] = { v1, v2, NULL };
	long deadline;
	size_t i;

	start("127.0.0.0/8", false, NULL);
	snprintf(v1, sizeof(v1), "127.0.0.1:%d send-proxy source %s check "
	    "check-send-proxy inter 100ms fall 1", pp_port, sources[0]);
	snprintf(v2, sizeof(v2), "127.0.0.1:%d send-proxy-v2 source %s check "
	    "check-send-proxy inter 100ms fall 1", pp_port, sources[1]);
	haproxy_start(&hp, servers, "    option tcp-check\n"
	    "    tcp-check expect rstring ^\\*\\ OK\n"
	    "    option log-health-checks\n");
	/* three checks of each */
	deadline = now_ms() + 5000;
	for (i = 0; i < 2; i++) {
		snprintf(want, sizeof(want), "session end: user=? from=%s:",
		    sources[i]);
		for (;;) {
			log = proxy_log(&px);
			if (count_substr(log, strlen(log), want) >= 3)
				break;
			cr_assert_lt(now_ms(), deadline, "no three health checks "
			    "from %s in mappend's log:\n%s", sources[i], log);
			free(log);
			usleep(50 * 1000);
		}
		free(log);
	}
	log = haproxy_log(&hp);
	cr_assert(strstr(log, "failed") == NULL && strstr(log, "DOWN") == NULL,
	    "a health check failed:\n%s", log);
	free(log);
	for (i = 0; i < 2; i++)
		session_through_haproxy(i == 0 ? "send-proxy, checked" :
		    "send-proxy-v2, checked", sources[i], hp.port[i], pp_port, false);
}

/* ---- raw sockets ---- */

/* A header is believed from proxy_protocol_from only: from 127.0.0.1 the
 * connection is closed unanswered, from 127.0.0.9 it is a session. */
Test(proxyproto, untrusted_sender_is_closed_without_a_word)
{
	struct imapc c;
	char hdr[128], *log;
	int n = header(hdr, sizeof(hdr), 1, PROXYPROTO_PROXY, "192.0.2.7", 4242,
	    "127.0.0.1", 143);
	int port;
	unsigned long before;

	start("127.0.0.9/32", false, NULL);
	before = upstream_connections();
	port = connect_from(&c, "127.0.0.1", pp_port);
	/* mappend may close it before these arrive */
	send_anyway(&c, hdr, (size_t)n);
	send_anyway(&c, "a LOGIN test secret\r\n", 21);
	expect_closed_silently(&c, "untrusted");
	imapc_close(&c);
	log = log_with("warning: connection from 127.0.0.1:%d closed: not in "
	    "proxy_protocol_from", port);
	cr_assert(strstr(log, "192.0.2.7") == NULL, "the header was believed:\n%s", log);
	free(log);
	NOTHING_UPSTREAM_SINCE(before);

	/* the same bytes from a listed address */
	port = connect_from(&c, "127.0.0.9", pp_port);
	imapc_send_raw(&c, hdr, (size_t)n);
	expect_greeting(&c, "trusted");
	imapc_close(&c);
	free(log_with("connection from 192.0.2.7:4242 via 127.0.0.9:%d", port));
}

/* Not a header, or a bad one: closed unanswered, a warning each, nothing
 * upstream. */
Test(proxyproto, malformed_headers_are_closed_without_a_word)
{
	static const struct {
		const char *what;
		const char *bytes;
		size_t len;
	} cases[] = {
#define CASE(w, b) { w, b, sizeof(b) - 1 }
		CASE("v1 cut short", "PROXY TCP4 1.2.3.4\r\n"),
		CASE("v1 port out of range", "PROXY TCP4 1.2.3.4 5.6.7.8 70000 143\r\n"),
		CASE("v1 family unknown", "PROXY TCP5 1.2.3.4 5.6.7.8 1 143\r\n"),
		CASE("garbage", "\x01\x02\x03\xff\xfe garbage\r\n"),
		CASE("an IMAP command", "a LOGIN x y\r\n"),
		CASE("v2 version 3", "\r\n\r\n\0\r\nQUIT\n\x31\x11\0\x0c"
		    "\xc0\0\x02\x07\x7f\0\0\x01\x10\x92\0\x8f"),
		CASE("v2 family 7", "\r\n\r\n\0\r\nQUIT\n\x21\x71\0\x0c"
		    "\xc0\0\x02\x07\x7f\0\0\x01\x10\x92\0\x8f"),
#undef CASE
	};
	size_t i;
	unsigned long before;
	char *log, *ids;

	start("127.0.0.1/32", false, NULL);
	before = upstream_connections();
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct imapc c;
		int port = connect_from(&c, "127.0.0.1", pp_port);

		imapc_send_raw(&c, cases[i].bytes, cases[i].len);
		/* a client that goes on talking changes nothing */
		send_anyway(&c, "b LOGIN test secret\r\n", 21);
		expect_closed_silently(&c, cases[i].what);
		imapc_close(&c);
		free(log_with("warning: connection from 127.0.0.1:%d closed: ", port));
	}
	NOTHING_UPSTREAM_SINCE(before);
	log = proxy_log(&px);
	cr_assert(strstr(log, ", session ") == NULL, "a session was started:\n%s", log);
	free(log);
	ids = mock_log();
	cr_assert(strstr(ids, "LOGIN") == NULL, "%s", ids);
	free(ids);
}

/* Two connections at proxy_protocol_timeout = 1: one silent, one sending
 * a header a byte every 200 ms (8 s for all of it).  Both are closed
 * unanswered after about a second: trickling does not buy time. */
Test(proxyproto, missing_or_trickling_header_times_out)
{
	static const char slow[] = "PROXY TCP4 192.0.2.7 127.0.0.1 4242 143\r\n";
	struct imapc c[2];
	long start_ms, next_byte, closed[2] = { 0, 0 };
	size_t sent = 0, i;
	int port[2];

	start("127.0.0.1/32", false, "proxy_protocol_timeout = 1\n");
	for (i = 0; i < 2; i++)
		port[i] = connect_from(&c[i], "127.0.0.1", pp_port);
	start_ms = next_byte = now_ms();
	while ((closed[0] == 0 || closed[1] == 0) && now_ms() - start_ms < 5000) {
		struct pollfd pfd[2];

		for (i = 0; i < 2; i++) {
			pfd[i].fd = closed[i] == 0 ? c[i].fd : -1;
			pfd[i].events = POLLIN;
		}
		if (closed[1] == 0 && now_ms() >= next_byte) {
			send(c[1].fd, slow + sent++, 1, MSG_NOSIGNAL);
			next_byte += 200;
		}
		poll(pfd, 2, 20);
		for (i = 0; i < 2; i++) {
			char byte;

			if (pfd[i].fd < 0 ||
			    !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			cr_assert_leq(recv(c[i].fd, &byte, 1, 0), 0,
			    "mappend sent a byte on connection %zu", i);
			closed[i] = now_ms() - start_ms;
		}
	}
	for (i = 0; i < 2; i++) {
		cr_assert(closed[i] >= 900 && closed[i] <= 3000,
		    "%s connection closed after %ld ms (0: not at all), not about 1 s",
		    i == 0 ? "the silent" : "the trickling", closed[i]);
		imapc_close(&c[i]);
		free(log_with("warning: connection from 127.0.0.1:%d closed: no PROXY "
		    "protocol header within 1 seconds", port[i]));
	}
	cr_assert_lt(sent, sizeof(slow) - 1, "the slow header was sent whole");
}

/* Sent in pieces with pauses (inside v2's signature, inside addresses), a
 * header is still one header. */
Test(proxyproto, header_split_across_writes)
{
	unsigned char hdr[256];
	static const size_t cuts[][2] = { { 5, 20 }, { 7, 22 } };
	unsigned version;
	char *ids;

	start("127.0.0.1/32", false, NULL);
	for (version = 1; version <= 2; version++) {
		struct imapc c;
		int n = version == 1 ?
		    header(hdr, sizeof(hdr), 1, PROXYPROTO_PROXY, "2001:db8::7", 4243,
		    "::1", 143) :
		    header(hdr, sizeof(hdr), 2, PROXYPROTO_PROXY, "192.0.2.7", 4242,
		    "127.0.0.1", 143);
		const size_t *cut = cuts[version - 1];
		int port = connect_from(&c, "127.0.0.1", pp_port);

		cr_assert_gt((size_t)n, cut[1]);
		imapc_send_raw(&c, hdr, cut[0]);
		usleep(300 * 1000);
		imapc_send_raw(&c, hdr + cut[0], cut[1] - cut[0]);
		usleep(300 * 1000);
		imapc_send_raw(&c, hdr + cut[1], (size_t)n - cut[1]);
		expect_greeting(&c, version == 1 ? "v1 in pieces" : "v2 in pieces");
		free(imapc_ok(&c, "a", "LOGIN test secret"));
		imapc_close(&c);
		free(log_with("connection from %s via 127.0.0.1:%d on",
		    version == 1 ? "[2001:db8::7]:4243" : "192.0.2.7:4242", port));
	}
	ids = mock_log();
	cr_assert(strstr(ids, "ID (\"x-originating-ip\" \"2001:db8::7\" "
	    "\"x-originating-port\" \"4243\"") != NULL, "%s", ids);
	cr_assert(strstr(ids, "ID (\"x-originating-ip\" \"192.0.2.7\" "
	    "\"x-originating-port\" \"4242\"") != NULL, "%s", ids);
	free(ids);
}

/* v2 LOCAL (a health check) and v1 UNKNOWN: a session with the sender's
 * own address. */
Test(proxyproto, local_and_unknown_keep_the_senders_address)
{
	unsigned version;
	char *ids;

	start("127.0.0.1/32", false, NULL);
	for (version = 1; version <= 2; version++) {
		unsigned char hdr[64];
		struct imapc c;
		int n = header(hdr, sizeof(hdr), version, version == 1 ?
		    PROXYPROTO_UNKNOWN : PROXYPROTO_LOCAL, NULL, 0, NULL, 0);
		int port = connect_from(&c, "127.0.0.1", pp_port);
		char id[128];

		imapc_send_raw(&c, hdr, (size_t)n);
		expect_greeting(&c, version == 1 ? "UNKNOWN" : "LOCAL");
		free(imapc_ok(&c, "a", "LOGIN test secret"));
		free(imapc_ok(&c, "b", "LOGOUT"));
		imapc_close(&c);
		free(log_with("session end: user=test from=127.0.0.1:%d "
		    "via=127.0.0.1:%d ", port, port));
		ids = mock_log();
		snprintf(id, sizeof(id), "ID (\"x-originating-ip\" \"127.0.0.1\" "
		    "\"x-originating-port\" \"%d\"", port);
		cr_assert(strstr(ids, id) != NULL, "%s", ids);
		free(ids);
	}
}

/* The client's first commands in the same packet as the header: none is
 * lost, none is taken for part of the header. */
Test(proxyproto, commands_in_the_headers_packet_are_kept)
{
	unsigned version;

	start("127.0.0.1/32", false, NULL);
	for (version = 1; version <= 2; version++) {
		static const char cmds[] = "a LOGIN test secret\r\nb SELECT INBOX\r\n"
		    "c LOGOUT\r\n";
		char buf[256], *r;
		struct imapc c;
		int n = header(buf, sizeof(buf), version, PROXYPROTO_PROXY,
		    "192.0.2.7", 4000 + version, "127.0.0.1", 143);

		cr_assert_lt((size_t)n + sizeof(cmds), sizeof(buf));
		memcpy(buf + n, cmds, sizeof(cmds) - 1);
		connect_from(&c, "127.0.0.1", pp_port);
		/* one send, one segment on loopback */
		cr_assert_eq(send(c.fd, buf, (size_t)n + sizeof(cmds) - 1, 0),
		    (ssize_t)(n + sizeof(cmds) - 1));
		expect_greeting(&c, version == 1 ? "v1" : "v2");
		r = imapc_until_tagged(&c, "a", NULL);
		cr_assert(r != NULL && tagged_ok(r, "a"), "v%u: %s", version, r);
		free(r);
		r = imapc_until_tagged(&c, "b", NULL);
		cr_assert(r != NULL && tagged_ok(r, "b"), "v%u: %s", version, r);
		free(r);
		r = imapc_until_tagged(&c, "c", NULL);
		cr_assert(r != NULL && tagged_ok(r, "c"), "v%u: %s", version, r);
		free(r);
		imapc_close(&c);
		free(log_with("session end: user=test from=192.0.2.7:%u ",
		    4000 + version));
	}
}

/* On a TLS listener the ClientHello follows the header at once, in the
 * same segment (MSG_MORE holds the header back until it comes): the
 * handshake must find every byte of it. */
Test(proxyproto, tls_handshake_in_the_headers_packet)
{
	unsigned version;

	start("127.0.0.1/32", true, NULL);
	for (version = 1; version <= 2; version++) {
		char hdr[128];
		struct imapc c;
		int n = header(hdr, sizeof(hdr), version, PROXYPROTO_PROXY,
		    "192.0.2.8", 5000 + version, "127.0.0.1", 993);
		int off = 0;

		connect_from(&c, "127.0.0.1", pp_tls_port);
		setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &off, sizeof(off));
		cr_assert_eq(send(c.fd, hdr, (size_t)n, MSG_MORE), n);
		cr_assert(imapc_tls(&c, in_dir("ca.pem")), "v%u: TLS handshake failed",
		    version);
		expect_greeting(&c, version == 1 ? "TLS v1" : "TLS v2");
		free(imapc_ok(&c, "a", "LOGIN test secret"));
		free(imapc_ok(&c, "b", "LOGOUT"));
		imapc_close(&c);
		free(log_with("session end: user=test from=192.0.2.8:%u via=127.0.0.1:",
		    5000 + version));
	}
	{
		char *log = proxy_log(&px);

		cr_assert_eq(count_substr(log, strlen(log), "tls=yes"), 2, "%s", log);
		free(log);
	}
}

/* Connections waiting for their header count against max_sessions: one
 * more is closed at once; those waiting still become sessions. */
Test(proxyproto, waiting_connections_are_capped)
{
	struct imapc c[3];
	char hdr[128];
	int i, port;

	start("127.0.0.1/32", false, "max_sessions = 2\n");
	for (i = 0; i < 2; i++)
		connect_from(&c[i], "127.0.0.1", pp_port);
	port = connect_from(&c[2], "127.0.0.1", pp_port);
	expect_closed_silently(&c[2], "third connection");
	free(log_with("warning: connection from 127.0.0.1:%d closed: 2 connections "
	    "wait for their PROXY header already", port));
	for (i = 0; i < 2; i++) {
		int n = header(hdr, sizeof(hdr), 2, PROXYPROTO_PROXY, "192.0.2.9",
		    6000 + (unsigned)i, "127.0.0.1", 143);

		imapc_send_raw(&c[i], hdr, (size_t)n);
		expect_greeting(&c[i], "waiting connection");
	}
	for (i = 0; i < 3; i++)
		imapc_close(&c[i]);
}

/* A listener without proxy_protocol beside one with it: a header there is
 * not read as one (it is the client's first line), and the address is the
 * connection's. */
Test(proxyproto, plain_listener_beside_is_unchanged)
{
	struct imapc c;
	char *r, *log;
	int port;

	start("127.0.0.1/32", false, NULL);
	port = connect_from(&c, "127.0.0.2", px.port);
	expect_greeting(&c, "plain listener");
	imapc_send(&c, "PROXY TCP4 192.0.2.7 127.0.0.1 4242 143\r\n");
	r = imapc_until_tagged(&c, "PROXY", NULL);
	cr_assert(r != NULL && strncmp(last_line(r), "PROXY BAD", 9) == 0, "%s", r);
	free(r);
	free(imapc_ok(&c, "a", "LOGIN test secret"));
	free(imapc_ok(&c, "b", "LOGOUT"));
	imapc_close(&c);
	log = log_with("session end: user=test from=127.0.0.2:%d listener=127.0.0.1:%d ",
	    port, px.port);
	cr_assert(strstr(log, "192.0.2.7:") == NULL, "%s", log);
	free(log);
	free(log_with("connection from 127.0.0.2:%d on 127.0.0.1:%d, session",
	    port, px.port));
}

/*
 * test_audit.c — who did what, as an administrator reads it after a known
 * session: the line that ends each session (user, address, listener, TLS,
 * bytes each way to the byte, commands, MULTIAPPENDs, how it ended), the
 * line of a failed login (never the password), one line per MULTIAPPEND
 * with its outcome, the session id the upstream hears in ID, and the
 * Prometheus metrics after a known workload.
 */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static char mock_log[64];

static void
teardown(void)
{
	harness_teardown();
	if (mock_log[0] != '\0')
		unlink(mock_log);
}

TestSuite(audit, .fini = teardown, .timeout = 120);

/* The mock (legacy profile, its commands logged) and mappend with the
 * metrics listener and ID forwarding on. */
static void
start(void)
{
	int fd;

	snprintf(mock_log, sizeof(mock_log), "/tmp/mappend-audit-mock.XXXXXX");
	fd = mkstemp(mock_log);
	cr_assert_geq(fd, 0);
	close(fd);
	harness_start((const char *const[]){ "--profile", "legacy", "--log", mock_log,
	    "--mailbox", "Archive", NULL },
	    "metrics_listen = 127.0.0.1:0\nid_forward_address = yes\n");
}

/* A client that counts every byte it sends and receives. */
struct counted {
	struct imapc c;
	size_t sent, received;
};

static void
counted_send(struct counted *k, const char *s, size_t n)
{
	imapc_send_raw(&k->c, s, n);
	k->sent += n;
}

/* Up to the tagged answer for tag; its bytes counted. */
static char *
counted_answer(struct counted *k, const char *tag)
{
	size_t len = 0;
	char *r = imapc_until_tagged(&k->c, tag, &len);

	cr_assert_not_null(r, "no answer for %s", tag);
	k->received += len;
	return r;
}

static char *
counted_command(struct counted *k, const char *tag, const char *text)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "%s %s\r\n", tag, text);

	counted_send(k, line, (size_t)n);
	return counted_answer(k, tag);
}

/* A MULTIAPPEND of n messages of size bytes into mailbox, {n+} literals. */
static char *
counted_multiappend(struct counted *k, const char *tag, const char *mailbox,
    unsigned n, size_t size)
{
	char head[128];
	unsigned i;
	int len;

	len = snprintf(head, sizeof(head), "%s APPEND %s", tag, mailbox);
	counted_send(k, head, (size_t)len);
	for (i = 0; i < n; i++) {
		char *m = make_message(size, i);

		len = snprintf(head, sizeof(head), " {%zu+}\r\n", size);
		counted_send(k, head, (size_t)len);
		counted_send(k, m, size);
		free(m);
	}
	counted_send(k, "\r\n", 2);
	return counted_answer(k, tag);
}

/* The first line of log holding all of needles, malloc'ed; NULL if none. */
static char *
log_line(const char *log, const char *a, const char *b)
{
	const char *p = log;

	while (p != NULL && *p != '\0') {
		const char *end = strchr(p, '\n');
		size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
		char *line = strndup(p, n);

		if (strstr(line, a) != NULL && (b == NULL || strstr(line, b) != NULL))
			return line;
		free(line);
		p = end != NULL ? end + 1 : NULL;
	}
	return NULL;
}

/* Wait until the proxy's log holds a line with a and b; that line. */
static char *
wait_log_line(const char *a, const char *b)
{
	for (int i = 0; i < 500; i++) {
		char *log = proxy_log(&px), *line = log_line(log, a, b);

		free(log);
		if (line != NULL)
			return line;
		usleep(10 * 1000);
	}
	cr_assert_fail("no log line with \"%s\" and \"%s\"", a, b != NULL ? b : "");
	return NULL;
}

/* The value of a metric line "name value" (labels included in name). */
static double
metric(const char *text, const char *name)
{
	char key[256];
	const char *p;

	snprintf(key, sizeof(key), "\n%s ", name);
	p = strstr(text, key);
	cr_assert_not_null(p, "no metric %s in:\n%s", name, text);
	return strtod(p + strlen(key), NULL);
}

/* GET /metrics from the port the log names; the body. */
static char *
get_metrics(void)
{
	char *line = wait_log_line("metrics on http://127.0.0.1:", NULL);
	int port = atoi(strrchr(line, ':') + 1);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
	char *buf = calloc(1, 65536), *body;
	size_t len = 0;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	free(line);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	while (len < 65535 && (n = read(fd, buf + len, 65535 - len)) > 0)
		len += (size_t)n;
	close(fd);
	cr_assert(strncmp(buf, "HTTP/1.0 200", 12) == 0 || strncmp(buf, "HTTP/1.1 200", 12) == 0,
	    "%s", buf);
	body = strstr(buf, "\r\n\r\n");
	cr_assert_not_null(body);
	body = strdup(body + 2);	/* keeps a "\n" before the first name */
	free(buf);
	return body;
}

/* A session with a failed login, a MULTIAPPEND stored, one refused by the
 * upstream and one rolled back, then LOGOUT: every line and every byte. */
Test(audit, a_known_session_in_the_log_and_the_metrics)
{
	struct counted k = { 0 };
	struct imapc d;
	char *r, *line, *greeting, *log, *m, want[256];

	start();
	imapc_connect(&k.c, px.port);
	greeting = imapc_line(&k.c);
	cr_assert_not_null(greeting);
	k.received += strlen(greeting) + 2;
	free(greeting);

	r = counted_command(&k, "a", "LOGIN test not-the-password");
	cr_assert(strstr(r, "a NO") != NULL, "%s", r);
	free(r);
	r = counted_command(&k, "b", "LOGIN test secret");
	cr_assert(tagged_ok(r, "b"), "%s", r);
	free(r);
	r = counted_multiappend(&k, "c", "INBOX", 3, 1000);
	cr_assert(tagged_ok(r, "c"), "%s", r);
	free(r);
	r = counted_multiappend(&k, "d", "Nonexistent", 2, 500);
	cr_assert(strstr(r, "d NO") != NULL, "%s", r);
	free(r);
	/* the second message of the next one is refused: the first is removed */
	direct_connect(&d);
	free(imapc_ok(&d, "f", "XMOCK FAULT APPEND-NO 2"));
	imapc_close(&d);
	r = counted_multiappend(&k, "e", "Archive", 3, 700);
	cr_assert(strstr(r, "e NO") != NULL, "%s", r);
	free(r);
	r = counted_command(&k, "z", "LOGOUT");
	cr_assert(tagged_ok(r, "z"), "%s", r);
	free(r);
	cr_assert(imapc_wait_closed(&k.c));
	imapc_close(&k.c);

	line = wait_log_line("session end: ", NULL);
	snprintf(want, sizeof(want), "in=%zu out=%zu ", k.sent, k.received);
	cr_assert(strstr(line, want) != NULL, "want %s in: %s", want, line);
	cr_assert(strstr(line, "user=test from=127.0.0.1:") != NULL, "%s", line);
	snprintf(want, sizeof(want), "listener=127.0.0.1:%d tls=no", px.port);
	cr_assert(strstr(line, want) != NULL, "want %s in: %s", want, line);
	cr_assert(strstr(line, "commands=6 multiappends=3 end=client (logout)") != NULL,
	    "%s", line);
	free(line);

	log = proxy_log(&px);
	line = log_line(log, "login failed: ", NULL);
	cr_assert_not_null(line, "%s", log);
	cr_assert(strstr(line, "user=test from=127.0.0.1:") != NULL, "%s", line);
	cr_assert(strstr(line, "method=LOGIN") != NULL, "%s", line);
	free(line);
	cr_assert(strstr(log, "not-the-password") == NULL, "a password in the log:\n%s", log);
	cr_assert(strstr(log, "secret") == NULL, "a password in the log:\n%s", log);

	line = log_line(log, "MULTIAPPEND user=test mailbox=\"INBOX\"", NULL);
	cr_assert_not_null(line, "%s", log);
	cr_assert(strstr(line, "messages=3 bytes=3000 ") != NULL, "%s", line);
	cr_assert(strstr(line, "outcome=ok uids=1:3") != NULL, "%s", line);
	free(line);
	line = log_line(log, "MULTIAPPEND user=test mailbox=\"Nonexistent\"", NULL);
	cr_assert_not_null(line, "%s", log);
	cr_assert(strstr(line, "messages=2 bytes=1000 ") != NULL, "%s", line);
	cr_assert(strstr(line, "outcome=refused ") != NULL, "%s", line);
	cr_assert(strstr(line, "stored=0 reason=\"NO [TRYCREATE]") != NULL, "%s", line);
	free(line);
	line = log_line(log, "MULTIAPPEND user=test mailbox=\"Archive\"", NULL);
	cr_assert_not_null(line, "%s", log);
	cr_assert(strstr(line, "messages=3 bytes=2100 ") != NULL, "%s", line);
	cr_assert(strstr(line, "outcome=rolled_back ") != NULL, "%s", line);
	cr_assert(strstr(line, " rollback=") != NULL, "%s", line);
	cr_assert(strstr(line, "reason=\"NO [OVERQUOTA]") != NULL, "%s", line);
	free(line);
	free(log);

	m = get_metrics();
	cr_assert_eq(metric(m, "mappend_sessions_open"), 0, "%s", m);
	cr_assert_eq(metric(m, "mappend_sessions_opened_total"), 1, "%s", m);
	cr_assert_eq(metric(m, "mappend_sessions_closed_total{reason=\"client\"}"), 1, "%s", m);
	cr_assert_eq(metric(m, "mappend_logins_total{result=\"ok\"}"), 1, "%s", m);
	cr_assert_eq(metric(m, "mappend_logins_total{result=\"failed\"}"), 1, "%s", m);
	cr_assert_eq(metric(m, "mappend_multiappends_total{outcome=\"ok\"}"), 1, "%s", m);
	cr_assert_eq(metric(m, "mappend_multiappends_total{outcome=\"refused\"}"), 1, "%s", m);
	cr_assert_eq(metric(m, "mappend_multiappends_total{outcome=\"rolled_back\"}"), 1, "%s", m);
	cr_assert_eq(metric(m, "mappend_multiappends_total{outcome=\"rollback_failed\"}"), 0,
	    "%s", m);
	cr_assert_eq(metric(m, "mappend_rollbacks_total"), 1, "%s", m);
	cr_assert_eq(metric(m, "mappend_rollback_failures_total"), 0, "%s", m);
	cr_assert_eq(metric(m, "mappend_multiappend_duration_seconds_count"), 3, "%s", m);
	cr_assert_eq(metric(m, "mappend_spool_bytes"), 0, "%s", m);
	cr_assert_eq(metric(m, "mappend_upstream_connect_errors_total"), 0, "%s", m);
	/* 3 stored; of the others, what went up before the refusal (LITERAL+
	 * sends ahead of the answers): at least the refused ones */
	cr_assert_geq(metric(m, "mappend_replayed_messages_total"), 3 + 1 + 2, "%s", m);
	cr_assert_geq(metric(m, "mappend_replayed_bytes_total"), 3000 + 500 + 1400, "%s", m);
	free(m);
}

/* The upstream hears the session's id in ID, and the connection line
 * names the same id: the two logs join on it. */
Test(audit, the_upstream_hears_the_session_id)
{
	struct imapc c;
	char *line, *key, *mlog, want[128];
	FILE *f;
	size_t n = 0;

	start();
	proxy_connect(&c);
	free(imapc_ok(&c, "a", "NOOP"));
	line = wait_log_line("connection from 127.0.0.1:", ", session ");
	key = strstr(line, ", session ") + strlen(", session ");
	snprintf(want, sizeof(want), "\"x-session-id\" \"%s\"", key);
	imapc_close(&c);
	f = fopen(mock_log, "r");
	cr_assert_not_null(f);
	mlog = NULL;
	cr_assert_geq(getdelim(&mlog, &n, '\0', f), 0);
	fclose(f);
	cr_assert(strstr(mlog, want) != NULL, "want %s in the mock's log:\n%s", want, mlog);
	cr_assert(strstr(mlog, "\"x-originating-ip\" \"127.0.0.1\"") != NULL, "%s", mlog);
	free(mlog);
	free(line);
}

/* How a session ended is told apart: the upstream went away. */
Test(audit, an_upstream_that_goes_away_ends_the_session_as_upstream)
{
	struct imapc c;
	char *line, *m;

	start();
	proxy_connect(&c);
	kill(mock.pid, SIGKILL);
	waitpid(mock.pid, NULL, 0);
	mock.pid = 0;
	cr_assert(imapc_wait_closed(&c));
	imapc_close(&c);
	line = wait_log_line("session end: ", NULL);
	cr_assert(strstr(line, "user=test ") != NULL, "%s", line);
	cr_assert(strstr(line, "end=upstream (upstream closed)") != NULL, "%s", line);
	free(line);
	m = get_metrics();
	cr_assert_eq(metric(m, "mappend_sessions_closed_total{reason=\"upstream\"}"), 1, "%s", m);
	cr_assert_eq(metric(m, "mappend_sessions_closed_total{reason=\"client\"}"), 0, "%s", m);
	free(m);
}

/*
 * test_faults.c — all or nothing on every path.  A MULTIAPPEND of N = 10
 * messages meets a fault at every message k: the upstream refuses it,
 * drops the connection before or after storing it, answers a command
 * nobody sent, sends a line longer than any response may be, or stalls
 * while the client's idle timer is shorter than the stall; the client
 * leaves while spooling or while the messages go up; the spool disk fills.
 * After each, the target mailbox is exactly as before (UIDs, flags, sizes)
 * or exactly complete, no staging mailbox is left, no byte of any body (a
 * body made of IMAP commands) was executed, and a new session works.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define N 10

TestSuite(faults, .fini = harness_teardown, .timeout = 300);

static bool
tagged(const char *r, const char *tag, const char *status)
{
	const char *l = last_line(r);
	size_t n = strlen(tag);

	return strncmp(l, tag, n) == 0 && l[n] == ' ' &&
	    strncmp(l + n + 1, status, strlen(status)) == 0;
}

static void
login(struct imapc *c, int port)
{
	imapc_connect_login(c, port, "test", "secret");
}

/* Message i: a body made of IMAP commands (if one byte of it were read as
 * a command, the upstream would create "injected" and delete "victim"),
 * different in size and content for each i. */
static size_t size_base = 300;	/* the spool tests want pages: larger */

static size_t body_size(unsigned i) { return size_base + 53 * i; }

static char *
body(unsigned i)
{
	static const char cmds[] = "x1 CREATE injected\r\nx2 DELETE victim\r\n";
	size_t n = body_size(i), k;
	char *b = malloc(n), head[64];
	int h = snprintf(head, sizeof(head), "Message-Id: <%u@faults>\r\n", i);

	cr_assert_not_null(b);
	for (k = 0; k < n; k++)
		b[k] = cmds[k % (sizeof(cmds) - 1)];
	memcpy(b, head, (size_t)h);
	return b;
}

/* The MULTIAPPEND of n messages; sync: each literal waits for "+".  Returns
 * the answer, or NULL when the connection ended without one. */
static char *
multiappend(struct imapc *c, const char *tag, unsigned n, bool sync)
{
	unsigned i;

	imapc_send(c, "%s APPEND INBOX", tag);
	for (i = 0; i < n; i++) {
		char *b = body(i), *line;

		imapc_send(c, " (\\Flagged $f%u) {%zu%s}\r\n", i, body_size(i),
		    sync ? "" : "+");
		if (sync) {
			line = imapc_line(c);
			if (line == NULL || line[0] != '+') {
				free(b);
				return line;	/* refused instead of "+" */
			}
			free(line);
		}
		imapc_send_raw(c, b, body_size(i));
		free(b);
	}
	imapc_send(c, "\r\n");
	return imapc_until_tagged(c, tag, NULL);
}

/* What the upstream holds, seen directly: mailboxes, INBOX's UIDs, flags
 * and sizes. */
static char *
snapshot(struct imapc *d)
{
	char *list = imapc_command(d, "l", "LIST \"\" *"), *r, *out;

	free(imapc_command(d, "x", "EXAMINE INBOX"));
	r = imapc_command(d, "y", "UID FETCH 1:* (UID FLAGS RFC822.SIZE)");
	free(imapc_command(d, "z", "UNSELECT"));
	cr_assert_geq(asprintf(&out, "%s%s", list, r), 0);
	cr_assert_null(strstr(list, "injected"), "a body was executed: %s", list);
	cr_assert_not_null(strstr(list, "victim"), "a body was executed: %s", list);
	cr_assert_null(strstr(list, "mappend-staging"), "staging left: %s", list);
	free(list);
	free(r);
	return out;
}

/* No journal record is left in mappend's spool: every job was resolved. */
static void
no_journal_record(const char *what, unsigned k)
{
	char cmd[400];

	snprintf(cmd, sizeof(cmd), "ls '%s/spool/journal' 2>/dev/null | grep -q '\\.job$'",
	    px.dir);
	cr_assert_neq(system(cmd), 0, "%s k=%u: a journal record is left", what, k);
}

static void
fault(struct imapc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
fault(struct imapc *d, const char *fmt, ...)
{
	va_list ap;
	char *what = NULL, *r;

	va_start(ap, fmt);
	cr_assert_geq(vasprintf(&what, fmt, ap), 0);
	va_end(ap);
	r = imapc_command(d, "f", "XMOCK FAULT %s", what);
	cr_assert(tagged(r, "f", "OK"), "%s: %s", what, r);
	free(r);
	free(what);
}

/* A new session through the proxy works. */
static void
new_session_works(void)
{
	struct imapc c;
	char *r;

	login(&c, px.port);
	r = imapc_command(&c, "n", "NOOP");
	cr_assert(tagged(r, "n", "OK"), "%s", r);
	free(r);
	imapc_close(&c);
}

static void
start(const char *profile, const char *conf)
{
	const char *args[] = { "--profile", profile, NULL };
	struct imapc d;

	mock_start(&mock, args);
	proxy_start(&px, mock.port, conf);
	login(&d, mock.port);
	free(imapc_command(&d, "c", "CREATE victim"));
	imapc_close(&d);
}

/* Each line of an answer is untagged or tagged with tag: no piece of
 * anybody's response reaches the client as a line of its own. */
static void
every_line_is_imap(const char *text, const char *tag, const char *kind,
    unsigned k)
{
	const char *line;
	size_t n = strlen(tag);

	for (line = text; *line != '\0'; line = strchr(line, '\n') + 1) {
		cr_assert(strncmp(line, "* ", 2) == 0 ||
		    (strncmp(line, tag, n) == 0 && line[n] == ' '),
		    "%s k=%u: a line that is no response: %.80s", kind, k, line);
		if (strchr(line, '\n') == NULL)
			break;
	}
}

/*
 * One fault at every k: the client gets NO, the upstream is as before.
 * closes: the upstream connection is lost by the fault, so the NO is
 * [UNAVAILABLE] and a BYE follows.
 */
static void
every_k(const char *kind, bool closes, bool sync)
{
	struct imapc c, d;
	unsigned k;

	login(&d, mock.port);
	for (k = 1; k <= N; k++) {
		char *before = snapshot(&d), *after, *r, *line;

		fault(&d, "%s %u", kind, k);
		login(&c, px.port);
		r = multiappend(&c, "a", N, sync);
		cr_assert_not_null(r, "%s k=%u: no answer", kind, k);
		cr_assert_null(strstr(r, "Autologout"), "%s k=%u: %s", kind, k, r);
		cr_assert_null(strstr(r, "mappend.999999"), "%s k=%u: %s", kind, k, r);
		cr_assert_null(strstr(r, "NIL NIL"), "%s k=%u: %s", kind, k, r);
		every_line_is_imap(r, "a", kind, k);
		/* the upstream's own refusal reaches the client as it was */
		cr_assert(tagged(r, "a", closes ? "NO [UNAVAILABLE]" : "NO [OVERQUOTA]"),
		    "%s k=%u: %.300s", kind, k, r);
		free(r);
		if (closes) {
			line = imapc_line(&c);
			cr_assert(line != NULL && strncmp(line, "* BYE", 5) == 0,
			    "%s k=%u: %s", kind, k, line != NULL ? line : "(none)");
			free(line);
			cr_assert(imapc_wait_closed(&c));
		} else {
			r = imapc_command(&c, "n", "NOOP");
			cr_assert(tagged(r, "n", "OK"), "%s k=%u: %s", kind, k, r);
			free(r);
		}
		imapc_close(&c);
		fault(&d, "CLEAR");
		after = snapshot(&d);
		cr_assert_str_eq(after, before, "%s k=%u: the upstream changed", kind, k);
		no_journal_record(kind, k);
		free(before);
		free(after);
		new_session_works();
	}
	imapc_close(&d);
}

/* The upstream faults at every k, for an upstream that takes {n+} and
 * one that wants a "+" for every literal; no UIDPLUS: through staging. */
static void
upstream_faults(const char *profile)
{
	start(profile, "client_idle_timeout = 1\nupstream_idle_timeout = 2\n");
	every_k("APPEND-NO", false, false);
	every_k("APPEND-DROP", true, false);
	every_k("APPEND-DROP-AFTER", true, false);
	every_k("APPEND-GARBAGE-AFTER", true, false);
	every_k("APPEND-LONGLINE-AFTER", true, false);
	/* silent longer than the client's idle timer: the client waits for
	 * its answer and is not idle; the upstream's timer ends it */
	every_k("APPEND-STALL-AFTER", true, true);
}

Test(faults, upstream_with_literal_plus)
{
	upstream_faults("legacy");
}

Test(faults, upstream_without_literal_plus)
{
	upstream_faults("noliteralplus");
}

Test(faults, upstream_without_uidplus)
{
	upstream_faults("nouidplus");
}

/*
 * No UIDPLUS: the second connection carrying the COPY into the target
 * breaks before the COPY runs (the client gets NO, the target is as
 * before) or after it ran with its answer lost (the messages are in the
 * target: the client gets OK).  The staging mailbox goes either way.
 */
Test(faults, staged_copy_connection_lost)
{
	struct imapc c, d;
	char *before, *after, *r;

	start("nouidplus", NULL);
	login(&d, mock.port);
	before = snapshot(&d);
	fault(&d, "COPY-DROP");
	login(&c, px.port);
	r = multiappend(&c, "a", N, false);
	cr_assert(tagged(r, "a", "NO"), "%s", r);
	free(r);
	after = snapshot(&d);
	cr_assert_str_eq(after, before, "the COPY did not run: nothing may change");
	free(after);

	fault(&d, "COPY-DROP-AFTER");
	r = multiappend(&c, "b", N, false);
	cr_assert(tagged(r, "b", "OK"), "the COPY ran: %s", r);
	free(r);
	after = snapshot(&d);
	cr_assert(count_substr(after, strlen(after), "FETCH (UID") ==
	    count_substr(before, strlen(before), "FETCH (UID") + N, "%s", after);
	free(after);
	free(before);
	imapc_close(&c);
	imapc_close(&d);
	new_session_works();
}

/* Sessions mappend has ended so far. */
static size_t
sessions_closed(void)
{
	char *log = proxy_log(&px);
	size_t n = count_substr(log, strlen(log), ": session end: ");

	free(log);
	return n;
}

/* The client leaves while its messages are spooled (nothing went up) and
 * while they go up after k answers (it never saw OK: all removed). */
Test(faults, client_leaves_at_every_k)
{
	struct imapc c, d;
	unsigned k, i;
	size_t closed;

	start("legacy", NULL);
	login(&d, mock.port);
	for (k = 1; k <= N; k++) {
		char *before = snapshot(&d), *after, *b = body(k - 1);

		login(&c, px.port);
		imapc_send(&c, "a APPEND INBOX");
		for (i = 0; i + 1 < k; i++) {
			char *m = body(i);

			imapc_send(&c, " {%zu+}\r\n", body_size(i));
			imapc_send_raw(&c, m, body_size(i));
			free(m);
		}
		imapc_send(&c, " {%zu+}\r\n", body_size(k - 1));
		imapc_send_raw(&c, b, body_size(k - 1) / 2);
		free(b);
		usleep(50 * 1000);
		closed = sessions_closed();
		imapc_close(&c);
		for (i = 0; i < 300 && sessions_closed() == closed; i++)
			usleep(20 * 1000);
		cr_assert_gt(sessions_closed(), closed, "k=%u: the session never ended", k);
		after = snapshot(&d);
		cr_assert_str_eq(after, before, "k=%u: left while spooling", k);
		free(after);

		/* slow answers: the replay is under way when it leaves */
		free(imapc_command(&d, "dl", "XMOCK DELAY 30"));
		login(&c, px.port);
		imapc_send(&c, "b APPEND INBOX");
		for (i = 0; i < N; i++) {
			char *m = body(i);

			imapc_send(&c, " {%zu+}\r\n", body_size(i));
			imapc_send_raw(&c, m, body_size(i));
			free(m);
		}
		imapc_send(&c, "\r\n");
		usleep(30 * 1000 * k);
		closed = sessions_closed();
		imapc_close(&c);
		free(imapc_command(&d, "dl", "XMOCK DELAY 0"));
		/* the session ends only once its job is resolved */
		for (i = 0; i < 300 && sessions_closed() == closed; i++)
			usleep(50 * 1000);
		cr_assert_gt(sessions_closed(), closed, "k=%u: the job never ended", k);
		after = snapshot(&d);
		cr_assert_str_eq(after, before, "k=%u: left during the replay", k);
		no_journal_record("client left", k);
		free(after);
		free(before);
		new_session_works();
	}
	imapc_close(&d);
}

/* The spool fills up inside message k, for {n+} and {n} literals: NO
 * [UNAVAILABLE], exactly the rest of each literal is dropped, and the
 * session goes on. */
static void
spool_full(bool sync)
{
	struct imapc c, d;
	unsigned k, i;

	size_base = 20000;	/* a tmpfs counts pages: k must be inside message k */
	for (k = 1; k <= N; k++) {
		size_t limit = body_size(k - 1) / 2;
		char *before, *after, *r;

		for (i = 0; i + 1 < k; i++)
			limit += body_size(i);
		mock_start(&mock, NULL);
		proxy_start_spool_limited(&px, mock.port, NULL, limit);
		login(&d, mock.port);
		free(imapc_command(&d, "c", "CREATE victim"));
		before = snapshot(&d);
		login(&c, px.port);
		r = multiappend(&c, "a", N, sync);
		cr_assert_not_null(r, "k=%u: no answer", k);
		cr_assert(tagged(last_line(r), "a", "NO [UNAVAILABLE]") ||
		    tagged(last_line(r), "a", "NO [LIMIT]"), "k=%u: %s", k, r);
		cr_assert_null(strstr(r, "x1 "), "k=%u: a body line ran: %.200s", k, r);
		free(r);
		r = imapc_command(&c, "n", "NOOP");
		cr_assert(tagged(r, "n", "OK"), "k=%u: %s", k, r);
		cr_assert_null(strstr(r, "x1 "), "k=%u: %.200s", k, r);
		free(r);
		after = snapshot(&d);
		cr_assert_str_eq(after, before, "k=%u", k);
		no_journal_record("spool full", k);
		free(before);
		free(after);
		imapc_close(&c);
		imapc_close(&d);
		proxy_stop(&px);
		mock_stop(&mock);
	}
}

Test(faults, spool_full_at_every_k_nonsync)
{
	spool_full(false);
}

Test(faults, spool_full_at_every_k_sync)
{
	spool_full(true);
}

/* A server whose personal namespace has a prefix (Courier: "INBOX.")
 * refuses mailboxes outside it: the staging mailbox goes where NAMESPACE
 * says, and is gone afterwards. */
Test(faults, staging_in_the_personal_namespace)
{
	const char *args[] = { "--profile", "nouidplus", "--personal-prefix", "INBOX.",
	    NULL };
	struct imapc c, d;
	char *r, *list;

	mock_start(&mock, args);
	proxy_start(&px, mock.port, NULL);
	login(&d, mock.port);
	login(&c, px.port);
	r = multiappend(&c, "a", N, false);
	cr_assert(tagged(r, "a", "OK"), "%s", r);
	free(r);
	list = imapc_command(&d, "l", "LIST \"\" *");
	cr_assert_null(strstr(list, "mappend-staging"), "%s", list);
	free(list);
	r = imapc_command(&d, "s", "STATUS INBOX (MESSAGES)");
	cr_assert_not_null(strstr(r, "MESSAGES 10"), "%s", r);
	free(r);
	imapc_close(&c);
	imapc_close(&d);
}

/*
 * SIGTERM while a MULTIAPPEND goes up more slowly than shutdown_timeout
 * allows: past the timeout it is undone (on a second connection), the
 * client gets NO and BYE, mappend exits cleanly, and nothing is left: not
 * in the mailbox, not in the journal.
 */
Test(faults, sigterm_longer_than_shutdown_timeout)
{
	struct imapc c, d;
	char *before, *after, *r, *line, path[400];
	unsigned i;

	start("legacy", "shutdown_timeout = 1\n");
	login(&d, mock.port);
	before = snapshot(&d);
	free(imapc_command(&d, "dl", "XMOCK DELAY 400"));
	login(&c, px.port);
	imapc_send(&c, "a APPEND INBOX");
	for (i = 0; i < N; i++) {
		char *m = body(i);

		imapc_send(&c, " {%zu+}\r\n", body_size(i));
		imapc_send_raw(&c, m, body_size(i));
		free(m);
	}
	imapc_send(&c, "\r\n");
	usleep(600 * 1000);
	kill(px.pid, SIGTERM);
	/* slow for the replay only: once it is given up, the removal is quick */
	for (i = 0; i < 300; i++) {
		char *log = proxy_log(&px);
		bool undoing = strstr(log, "in progress is undone") != NULL;

		free(log);
		if (undoing)
			break;
		usleep(20 * 1000);
	}
	free(imapc_command(&d, "dl", "XMOCK DELAY 0"));
	r = imapc_until_tagged(&c, "a", NULL);
	cr_assert_not_null(r, "no answer before the exit");
	cr_assert(tagged(r, "a", "NO [UNAVAILABLE]"), "%s", r);
	free(r);
	line = imapc_line(&c);
	cr_assert(line != NULL && strncmp(line, "* BYE", 5) == 0, "%s", line);
	free(line);
	cr_assert(imapc_wait_closed(&c));
	imapc_close(&c);
	after = snapshot(&d);
	if (strcmp(after, before) != 0) {
		char *log = proxy_log(&px);

		cr_assert_fail("the upload was not undone:\nbefore %s\nafter %s\nlog:\n%s",
		    before, after, log);
	}
	snprintf(path, sizeof(path), "ls %s/spool/journal | grep -q job", px.dir);
	cr_assert_neq(system(path), 0, "a journal record is left");
	free(before);
	free(after);
	imapc_close(&d);
	proxy_stop(&px);	/* it has exited 0 by now, or does at once */
}

/*
 * test_passthrough.c — the real mappend binary between a scripted client
 * and the mock upstream: greeting, capabilities, literals of every kind,
 * pipelining, IDLE, AUTHENTICATE, disconnects, bad input.  Long FETCH
 * literals take the kernel's path (splice) unless the suite runs with
 * "splice = no" (MAPPEND_TEST_EXTRA_CONF), and the copy path then.
 */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static void
connect_proxy(struct imapc *c)
{
	char *greeting;

	imapc_connect(c, px.port);
	greeting = imapc_line(c);
	cr_assert_not_null(greeting, "no greeting");
	cr_assert(strncmp(greeting, "* OK", 4) == 0, "greeting: %s", greeting);
	free(greeting);
}

/* The capability atoms of a line, with a space before and after each. */
static bool
has_cap(const char *line, const char *cap)
{
	char pat[128];
	const char *end = strchr(line, ']');
	size_t n;
	const char *p;

	snprintf(pat, sizeof(pat), " %s", cap);
	n = strlen(pat);
	for (p = strstr(line, pat); p != NULL; p = strstr(p + 1, pat))
		if ((p[n] == ' ' || p[n] == ']' || p[n] == '\r' || p[n] == '\0') &&
		    (end == NULL || p < end))
			return true;
	return false;
}

/* 180 s for the 160 MiB literal under ASan on a busy machine.  The suite's
 * timeout, not the test's own: with --jobs 2, Criterion 2.4.1's runner
 * leaks 48 bytes for a test with a .timeout of its own, and
 * LeakSanitizer fails the whole run for it. */
TestSuite(passthrough, .fini = harness_teardown, .timeout = 180);

Test(passthrough, capabilities_rewritten_in_all_three_places)
{
	const char *args[] = { "--profile", "noliteralplus", NULL };
	struct imapc c;
	char *greeting, *r;

	harness_start(args, NULL);
	imapc_connect(&c, px.port);
	greeting = imapc_line(&c);
	cr_assert_not_null(greeting);
	cr_assert(strstr(greeting, "* OK [CAPABILITY IMAP4rev1") == greeting, "%s", greeting);
	/* the upstream lacks LITERAL+; every client may use it through us */
	cr_assert(has_cap(greeting, "LITERAL+"), "%s", greeting);
	cr_assert(has_cap(greeting, "MULTIAPPEND"), "%s", greeting);
	cr_assert(has_cap(greeting, "APPENDLIMIT=67108864"), "%s", greeting);
	cr_assert(has_cap(greeting, "AUTH=PLAIN"), "%s", greeting);

	r = imapc_ok(&c, "a", "CAPABILITY");
	cr_assert(strncmp(r, "* CAPABILITY IMAP4rev1", 22) == 0, "%s", r);
	cr_assert(has_cap(r, "LITERAL+"), "%s", r);
	cr_assert(has_cap(r, "MULTIAPPEND"), "%s", r);
	cr_assert_eq(count_substr(r, strlen(r), "LITERAL+"), 1, "%s", r);
	free(r);

	r = imapc_command(&c, "b", "LOGIN test secret");
	cr_assert(strstr(r, "b OK [CAPABILITY IMAP4rev1") != NULL, "%s", r);
	cr_assert(has_cap(strstr(r, "b OK"), "LITERAL+"), "%s", r);
	cr_assert(has_cap(strstr(r, "b OK"), "MULTIAPPEND"), "%s", r);
	cr_assert(!has_cap(strstr(r, "b OK"), "AUTH=PLAIN"), "%s", r);
	free(r);
	free(greeting);
	imapc_close(&c);
}

Test(passthrough, hidden_capabilities_are_removed)
{
	const char *args[] = { "--extra-caps", "COMPRESS=DEFLATE STARTTLS LOGINDISABLED LITERAL- X-KEEP", NULL };
	struct imapc c;
	char *greeting, *r;
	const char *gone[] = { "COMPRESS=DEFLATE", "STARTTLS", "LOGINDISABLED", "LITERAL-" };
	size_t i;

	harness_start(args, NULL);
	imapc_connect(&c, px.port);
	greeting = imapc_line(&c);
	cr_assert_not_null(greeting);
	r = imapc_ok(&c, "a", "CAPABILITY");
	for (i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
		cr_assert(!has_cap(greeting, gone[i]), "%s in %s", gone[i], greeting);
		cr_assert(!has_cap(r, gone[i]), "%s in %s", gone[i], r);
	}
	cr_assert(has_cap(greeting, "X-KEEP"), "%s", greeting);
	cr_assert(has_cap(r, "X-KEEP"), "%s", r);
	free(r);
	free(greeting);
	/* COMPRESS is never relayed, even when asked for */
	r = imapc_command(&c, "c", "COMPRESS DEFLATE");
	cr_assert(strncmp(last_line(r), "c NO", 4) == 0, "%s", r);
	free(r);
	r = imapc_ok(&c, "d", "NOOP");
	free(r);
	imapc_close(&c);
}

/* Append size bytes of message seed to INBOX directly (not through the
 * proxy); the message, malloc'ed. */
static char *
append_directly(size_t size, unsigned seed)
{
	struct imapc direct;
	char *msg = make_message(size, seed), *r;

	direct_connect(&direct);
	imapc_send(&direct, "a APPEND INBOX (\\Seen) {%zu+}\r\n", size);
	imapc_send_raw(&direct, msg, size);
	imapc_send(&direct, "\r\n");
	r = imapc_until_tagged(&direct, "a", NULL);
	cr_assert(strncmp(last_line(r), "a OK", 4) == 0, "%s", r);
	free(r);
	imapc_close(&direct);
	return msg;
}

/* After the session through the proxy ended: the kernel moved literals of
 * it exactly when the suite runs with splice on. */
static void
assert_spliced_as_configured(void)
{
	char *log;

	cr_assert(proxy_log_wait(&px, "session end: "), "the session did not end");
	log = proxy_log(&px);
	if (harness_splice())
		cr_assert(strstr(log, HARNESS_SPLICED) != NULL,
		    "splice is on, yet no literal was moved by the kernel:\n%s", log);
	else
		cr_assert(strstr(log, HARNESS_SPLICED) == NULL,
		    "splice = no, yet a literal was moved by the kernel:\n%s", log);
	free(log);
}

Test(passthrough, login_select_fetch_multi_megabyte_literal)
{
	struct imapc direct, c;
	const size_t size = 6 * 1024 * 1024 + 17;
	char *msg, *r, *body;

	harness_start(NULL, NULL);
	/* the message goes in directly, and comes back out through the proxy */
	msg = append_directly(size, 7);
	direct_connect(&direct);

	connect_proxy(&c);
	imapc_login(&c, "test", "secret");
	r = imapc_ok(&c, "s", "SELECT INBOX");
	cr_assert(strstr(r, "* 1 EXISTS") != NULL, "%s", r);
	free(r);
	r = imapc_command(&c, "f", "UID FETCH 1 (FLAGS BODY.PEEK[])");
	body = strstr(r, "BODY[] {");
	cr_assert_not_null(body, "%.200s", r);
	body = strstr(body, "}\r\n") + 3;
	cr_assert_eq(memcmp(body, msg, size), 0, "the body differs");
	cr_assert(strncmp(last_line(r), "f OK", 4) == 0);
	free(r);
	/* twice more in one command, and a small literal between them */
	r = imapc_command(&c, "g", "UID FETCH 1 (BODY.PEEK[] FLAGS "
	    "BODY.PEEK[HEADER] BODY.PEEK[TEXT])");
	cr_assert(strncmp(last_line(r), "g OK", 4) == 0, "%.300s", last_line(r));
	cr_assert_eq(count_substr(r, strlen(r), msg + size - 200), 2, "the bodies differ");
	cr_assert_neq(strstr(r, "BODY[HEADER] {"), NULL, "%.300s", r);
	free(r);
	free(msg);
	imapc_close(&c);
	imapc_close(&direct);
	assert_spliced_as_configured();
}

/*
 * Under AddressSanitizer, freed memory is kept in a quarantine (256 MiB by
 * default) to catch uses after free: on the copy path every buffer read
 * and written would stay there, and VmRSS would measure the quarantine
 * (~200 MiB for 160 MiB copied), not what mappend holds.  The processes
 * this test starts get a quarantine well below the bound it checks.
 */
static void
small_asan_quarantine(void)
{
#ifdef __SANITIZE_ADDRESS__
	const char *old = getenv("ASAN_OPTIONS");
	char opts[1024];

	snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=4",
	    old != NULL ? old : "", old != NULL && *old != '\0' ? ":" : "");
	cr_assert_eq(setenv("ASAN_OPTIONS", opts, 1), 0);
#endif
}

/* The FETCH of a literal of size bytes through the proxy, read slowly in
 * pieces (each compared): the proxy's memory stays bounded whichever way
 * the literal goes, since a client that does not read stops the reading
 * of the upstream. */
Test(passthrough, long_literal_to_a_slow_client_keeps_memory_bounded)
{
	const char *args[] = { "--appendlimit", "300000000", NULL };
	const size_t size = 160 * 1024 * 1024, piece = 64 * 1024;
	struct imapc c;
	char *msg, *line;
	size_t got = 0, lit;
	long rss0, rss, most = 0;

	small_asan_quarantine();
	harness_start(args, NULL);
	msg = append_directly(size, 11);
	connect_proxy(&c);
	imapc_login(&c, "test", "secret");
	free(imapc_ok(&c, "s", "SELECT INBOX"));
	rss0 = proxy_rss_kib(&px);
	imapc_send(&c, "f UID FETCH 1 (BODY.PEEK[])\r\n");
	line = imapc_line(&c);
	cr_assert_not_null(line);
	cr_assert(strstr(line, "BODY[] {") != NULL, "%s", line);
	lit = strtoul(strstr(line, "BODY[] {") + 8, NULL, 10);
	cr_assert_eq(lit, size, "%s", line);
	free(line);
	while (got < size) {
		size_t n = size - got < piece ? size - got : piece;
		char *data = imapc_bytes(&c, n);

		cr_assert_not_null(data, "the literal stopped after %zu bytes", got);
		cr_assert_eq(memcmp(data, msg + got, n), 0, "bytes %zu.. differ", got);
		free(data);
		got += n;
		if (got % (4 * 1024 * 1024) == 0) {
			rss = proxy_rss_kib(&px);
			most = rss > most ? rss : most;
			usleep(20 * 1000);	/* a client slower than the upstream */
		}
	}
	line = imapc_line(&c);
	cr_assert(line != NULL && strcmp(line, ")") == 0, "%s", line);
	free(line);
	line = imapc_line(&c);
	cr_assert(line != NULL && strncmp(line, "f OK", 4) == 0, "%s", line);
	free(line);
	/* the literal was 160 MiB; a proxy that kept reading the upstream
	 * would have held most of it */
	cr_assert_lt(most - rss0, 48 * 1024, "VmRSS grew from %ld to %ld KiB", rss0, most);
	free(msg);
	imapc_close(&c);
	assert_spliced_as_configured();
}

/* A client that leaves in the middle of a long literal: its session ends,
 * the proxy goes on (and the upstream's rest of the literal is not read
 * into anyone's memory). */
Test(passthrough, client_leaves_in_the_middle_of_a_literal)
{
	const size_t size = 24 * 1024 * 1024;
	struct imapc c;
	char *msg, *line, *data, *r;

	harness_start(NULL, NULL);
	msg = append_directly(size, 5);
	connect_proxy(&c);
	imapc_login(&c, "test", "secret");
	free(imapc_ok(&c, "s", "SELECT INBOX"));
	imapc_send(&c, "f UID FETCH 1 (BODY.PEEK[])\r\n");
	line = imapc_line(&c);
	cr_assert(line != NULL && strstr(line, "BODY[] {") != NULL, "%s", line);
	free(line);
	data = imapc_bytes(&c, 3 * 1024 * 1024 + 5);
	cr_assert_not_null(data);
	cr_assert_eq(memcmp(data, msg, 3 * 1024 * 1024 + 5), 0);
	free(data);
	imapc_close(&c);
	cr_assert(proxy_log_wait(&px, "session end: "), "the session did not end");
	/* the proxy goes on */
	connect_proxy(&c);
	imapc_login(&c, "test", "secret");
	free(imapc_ok(&c, "s", "SELECT INBOX"));
	r = imapc_ok(&c, "f", "UID FETCH 1 (RFC822.SIZE)");
	cr_assert(strstr(r, "RFC822.SIZE 25165824") != NULL, "%s", r);
	free(r);
	imapc_close(&c);
	free(msg);
}

/* The upstream goes away in the middle of a long literal: the client gets
 * what came, then the BYE, then the end of the connection, whichever way
 * the literal went. */
Test(passthrough, upstream_leaves_in_the_middle_of_a_literal)
{
	static const char bye[] = "* BYE Connection to the upstream server lost\r\n";
	const size_t size = 48 * 1024 * 1024;
	struct imapc c;
	char *msg, *line, *data;
	size_t tail;
	int status;

	harness_start(NULL, NULL);
	msg = append_directly(size, 3);
	connect_proxy(&c);
	imapc_login(&c, "test", "secret");
	free(imapc_ok(&c, "s", "SELECT INBOX"));
	imapc_send(&c, "f UID FETCH 1 (BODY.PEEK[])\r\n");
	line = imapc_line(&c);
	cr_assert(line != NULL && strstr(line, "BODY[] {") != NULL, "%s", line);
	free(line);
	data = imapc_bytes(&c, 1024 * 1024);
	cr_assert_not_null(data);
	free(data);
	/* the mock is killed: what it had not written yet is lost */
	kill(mock.pid, SIGKILL);
	waitpid(mock.pid, &status, 0);
	mock.pid = 0;
	cr_assert(imapc_wait_closed(&c), "the proxy kept the client connection open");
	/* everything received after the first MiB, BYE included */
	tail = c.len - c.off;
	cr_assert_geq(tail, sizeof(bye) - 1);
	cr_assert_lt(tail, size, "the whole literal came");
	cr_assert_eq(memcmp(c.buf + c.len - (sizeof(bye) - 1), bye, sizeof(bye) - 1), 0,
	    "the connection did not end with the BYE: %.*s", (int)(sizeof(bye) - 1),
	    c.buf + c.len - (sizeof(bye) - 1));
	cr_assert_eq(memcmp(c.buf + c.off, msg + 1024 * 1024, tail - (sizeof(bye) - 1)), 0,
	    "the bytes before the BYE are not the literal's");
	imapc_close(&c);
	free(msg);
	cr_assert(proxy_log_wait(&px, "upstream closed the connection"),
	    "no log line says the upstream left");
}

Test(passthrough, append_literal_kinds)
{
	struct imapc c;
	char *r;

	harness_start(NULL, NULL);
	connect_proxy(&c);
	imapc_login(&c, "test", "secret");
	/* synchronizing: the upstream's "+" reaches the client */
	imapc_send(&c, "a APPEND INBOX {5}\r\n");
	imapc_expect_plus(&c);
	imapc_send(&c, "hello\r\n");
	r = imapc_until_tagged(&c, "a", NULL);
	cr_assert(strncmp(last_line(r), "a OK [APPENDUID ", 16) == 0, "%s", r);
	free(r);
	/* binary literal8 with a NUL byte */
	imapc_send(&c, "b APPEND INBOX ~{5+}\r\n");
	imapc_send_raw(&c, "a\0b\r\n", 5);
	imapc_send(&c, "\r\n");
	r = imapc_until_tagged(&c, "b", NULL);
	cr_assert_not_null(r);
	free(r);
	/* literals in LOGIN-style arguments and a mailbox literal */
	free(imapc_ok(&c, "c", "SELECT {5+}\r\nINBOX"));
	imapc_close(&c);
}

Test(passthrough, nonsync_literal_made_synchronizing_for_old_upstream)
{
	/* the mock closes the connection if it ever receives {n+} */
	const char *args[] = { "--profile", "noliteralplus", "--no-greeting-caps", NULL };
	struct imapc c;
	char *r, *batch = NULL, *tag;
	size_t i, blen = 0;
	FILE *f;

	harness_start(args, NULL);
	connect_proxy(&c);
	free(imapc_ok(&c, "a", "LOGIN {4+}\r\ntest {6+}\r\nsecret"));
	/* a burst of 20 appends in one write, as a LITERAL+ client sends it */
	f = open_memstream(&batch, &blen);
	for (i = 0; i < 20; i++)
		fprintf(f, "p%zu APPEND INBOX (\\Flagged) {12+}\r\nmessage %03zu\r\n", i, i);
	fclose(f);
	imapc_send_raw(&c, batch, blen);
	for (i = 0; i < 20; i++) {
		cr_assert_geq(asprintf(&tag, "p%zu", i), 0);
		r = imapc_until_tagged(&c, tag, NULL);
		cr_assert_not_null(r, "no answer for %s", tag);
		cr_assert(tagged_ok(r, tag), "%s", r);
		free(r);
		free(tag);
	}
	r = imapc_ok(&c, "s", "SELECT INBOX");
	cr_assert(strstr(r, "* 20 EXISTS") != NULL, "%s", r);
	free(r);
	r = imapc_ok(&c, "f", "FETCH 20 BODY.PEEK[]");
	cr_assert(strstr(r, "message 019") != NULL, "%s", r);
	free(r);
	free(batch);
	imapc_close(&c);
}

Test(passthrough, literal_minus_upstream)
{
	const char *args[] = { "--profile", "literalminus", NULL };
	struct imapc c;
	char *small = make_message(100, 1), *big = make_message(5000, 2), *r;

	harness_start(args, NULL);
	connect_proxy(&c);
	imapc_login(&c, "test", "secret");
	imapc_send(&c, "a APPEND INBOX {100+}\r\n");
	imapc_send_raw(&c, small, 100);
	imapc_send(&c, "\r\nb APPEND INBOX {5000+}\r\n");
	imapc_send_raw(&c, big, 5000);
	imapc_send(&c, "\r\n");
	r = imapc_until_tagged(&c, "b", NULL);
	cr_assert_not_null(r);
	cr_assert(strstr(r, "a OK") != NULL, "%s", r);
	cr_assert(strncmp(last_line(r), "b OK", 4) == 0, "%s", r);
	free(r);
	free(small);
	free(big);
	imapc_close(&c);
}

Test(passthrough, refused_literal_is_not_taken_for_commands)
{
	const char *args[] = { "--profile", "noliteralplus", NULL };
	struct imapc c;
	char *r, *line;

	harness_start(args, NULL);
	connect_proxy(&c);
	imapc_login(&c, "test", "secret");
	/* synchronizing: mappend spools, so the "+" is its own; the upstream
	 * refuses the replayed {n} before its "+", and the client hears why */
	imapc_send(&c, "a APPEND nosuchbox {20}\r\n");
	imapc_expect_plus(&c);
	imapc_send(&c, "a NOOP\r\nb NOOP\r\nxx\r\n\r\n");
	line = imapc_line(&c);
	cr_assert_not_null(line);
	cr_assert(strncmp(line, "a NO [TRYCREATE]", 16) == 0, "%s", line);
	free(line);
	/* non-synchronizing: the data must never be read as commands */
	r = imapc_command(&c, "b", "APPEND nosuchbox {24+}\r\nc LOGOUT\r\nd LOGOUT\r\nxx\r\n");
	cr_assert(strncmp(last_line(r), "b NO [TRYCREATE]", 16) == 0, "%s", r);
	free(r);
	r = imapc_ok(&c, "e", "NOOP");
	free(r);
	imapc_close(&c);
}

Test(passthrough, pipelined_commands_keep_their_order)
{
	struct imapc c;
	char *batch = NULL, *r, *p;
	size_t blen = 0, i;
	FILE *f;

	harness_start(NULL, NULL);
	connect_proxy(&c);
	f = open_memstream(&batch, &blen);
	fprintf(f, "t0 LOGIN test secret\r\n");
	for (i = 1; i < 200; i++) {
		switch (i % 4) {
		case 0: fprintf(f, "t%zu NOOP\r\n", i); break;
		case 1: fprintf(f, "t%zu SELECT INBOX\r\n", i); break;
		case 2: fprintf(f, "t%zu APPEND INBOX {3+}\r\nx%02zu\r\n", i, i % 100); break;
		default: fprintf(f, "t%zu STATUS INBOX (MESSAGES)\r\n", i); break;
		}
	}
	fclose(f);
	imapc_send_raw(&c, batch, blen);
	r = imapc_until_tagged(&c, "t199", NULL);
	cr_assert_not_null(r);
	/* every tagged answer, in the order sent */
	p = r;
	for (i = 0; i < 200; i++) {
		char want[32];

		snprintf(want, sizeof(want), "\nt%zu OK", i);
		if (i == 0)
			p = strstr(r, "t0 OK");
		else
			p = strstr(p, want);
		cr_assert_not_null(p, "answer %zu missing or out of order", i);
	}
	free(r);
	free(batch);
	imapc_close(&c);
}

Test(passthrough, response_line_longer_than_a_read_buffer)
{
	struct imapc direct, c;
	char *batch = NULL, *r;
	size_t blen = 0, i, n = 60000;
	FILE *f;

	harness_start(NULL, NULL);
	direct_connect(&direct);
	f = open_memstream(&batch, &blen);
	for (i = 0; i < n; i++)
		fprintf(f, "a%zu APPEND INBOX {1+}\r\nx\r\n", i);
	fclose(f);
	imapc_send_raw(&direct, batch, blen);
	free(batch);
	batch = NULL;
	cr_assert_geq(asprintf(&batch, "a%zu", n - 1), 0);
	free(imapc_until_tagged(&direct, batch, NULL));
	free(batch);

	/* "* SEARCH 1 2 ... 60000" is about 340 KB: one line, no literal */
	connect_proxy(&c);
	imapc_login(&c, "test", "secret");
	free(imapc_ok(&c, "s", "SELECT INBOX"));
	r = imapc_ok(&c, "u", "UID SEARCH ALL");
	cr_assert_gt(strlen(r), 300000);
	cr_assert(strstr(r, " 59999 60000\r\n") != NULL);
	free(r);
	imapc_close(&c);
	imapc_close(&direct);
}

Test(passthrough, idle_receives_exists_from_another_session)
{
	struct imapc c, other;
	char *r, *line;

	harness_start(NULL, NULL);
	connect_proxy(&c);
	imapc_login(&c, "test", "secret");
	free(imapc_ok(&c, "s", "SELECT INBOX"));
	imapc_send(&c, "i IDLE\r\n");
	imapc_expect_plus(&c);

	direct_connect(&other);
	imapc_send(&other, "a APPEND INBOX {5+}\r\nhello\r\n");
	free(imapc_until_tagged(&other, "a", NULL));

	line = imapc_line(&c);
	cr_assert_not_null(line, "no EXISTS during IDLE");
	cr_assert_str_eq(line, "* 1 EXISTS");
	free(line);
	/* DONE and a command pipelined behind it */
	imapc_send(&c, "DONE\r\nn NOOP\r\n");
	r = imapc_until_tagged(&c, "n", NULL);
	cr_assert_not_null(r);
	cr_assert(strstr(r, "i OK") != NULL, "%s", r);
	cr_assert(strncmp(last_line(r), "n OK", 4) == 0, "%s", r);
	free(r);
	imapc_close(&other);
	imapc_close(&c);
}

Test(passthrough, authenticate_plain_with_continuation)
{
	const char *args[] = { "--sasl-ir", NULL };
	struct imapc c;
	char *r;
	/* "\0test\0secret" */
	const char *creds = "AHRlc3QAc2VjcmV0";

	harness_start(args, NULL);
	connect_proxy(&c);
	imapc_send(&c, "a AUTHENTICATE PLAIN\r\n");
	imapc_expect_plus(&c);
	imapc_send(&c, "%s\r\n", creds);
	r = imapc_until_tagged(&c, "a", NULL);
	cr_assert(strncmp(last_line(r), "a OK", 4) == 0, "%s", r);
	free(r);
	free(imapc_ok(&c, "b", "SELECT INBOX"));
	imapc_close(&c);

	/* SASL-IR: no continuation at all */
	connect_proxy(&c);
	r = imapc_ok(&c, "a", "AUTHENTICATE PLAIN %s", creds);
	free(r);
	imapc_close(&c);

	/* the client cancels the exchange with "*" */
	connect_proxy(&c);
	imapc_send(&c, "a AUTHENTICATE PLAIN\r\n");
	free(imapc_line(&c));
	imapc_send(&c, "*\r\n");
	r = imapc_until_tagged(&c, "a", NULL);
	cr_assert(strncmp(last_line(r), "a BAD", 5) == 0, "%s", r);
	free(r);
	free(imapc_ok(&c, "b", "NOOP"));
	imapc_close(&c);
}

Test(passthrough, client_disconnect_leaves_others_working)
{
	struct imapc a, b;
	char *log;

	harness_start(NULL, NULL);
	connect_proxy(&a);
	imapc_login(&a, "test", "secret");
	/* half a command, then gone */
	imapc_send(&a, "x APPEND INBOX {100+}\r\nonly some bytes");
	imapc_close(&a);
	connect_proxy(&b);
	imapc_login(&b, "test", "secret");
	free(imapc_ok(&b, "s", "STATUS INBOX (MESSAGES)"));
	imapc_close(&b);
	usleep(200 * 1000);
	log = proxy_log(&px);
	cr_assert(strstr(log, "client closed the connection") != NULL, "%s", log);
	free(log);
}

Test(passthrough, upstream_disconnect_ends_session_with_bye)
{
	struct imapc direct, c;
	char *r, *line;

	harness_start(NULL, NULL);
	imapc_connect(&direct, mock.port);
	free(imapc_line(&direct));
	free(imapc_ok(&direct, "f", "XMOCK FAULT APPEND-DROP 1"));
	connect_proxy(&c);
	imapc_login(&c, "test", "secret");
	imapc_send(&c, "a APPEND INBOX {5+}\r\nhello\r\n");
	line = imapc_line(&c);
	cr_assert_not_null(line);
	cr_assert(strncmp(line, "* BYE", 5) == 0, "%s", line);
	free(line);
	cr_assert(imapc_wait_closed(&c), "the proxy kept the client connection open");
	imapc_close(&c);
	/* the proxy itself goes on */
	connect_proxy(&c);
	imapc_login(&c, "test", "secret");
	r = imapc_ok(&c, "n", "NOOP");
	free(r);
	imapc_close(&c);
	imapc_close(&direct);
}

Test(passthrough, upstream_unavailable)
{
	struct imapc c;
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;
	char *line;

	/* a port that was free a moment ago: nothing listens there */
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	getsockname(fd, (struct sockaddr *)&sin, &slen);
	port = ntohs(sin.sin_port);
	close(fd);
	proxy_start(&px, port, NULL);
	imapc_connect(&c, px.port);
	line = imapc_line(&c);
	cr_assert_not_null(line);
	cr_assert(strncmp(line, "* BYE", 5) == 0, "%s", line);
	free(line);
	cr_assert(imapc_wait_closed(&c));
	imapc_close(&c);
}

Test(passthrough, bad_input_gets_bad_or_bye)
{
	static const struct {
		const char *input;
		const char *answer;	/* start of the answer */
		bool closes;
	} cases[] = {
		{ "\001\002\r\n", "* BAD invalid tag", false },
		{ "a FETCH 1 (FLAGS\r\n", "a BAD unbalanced parentheses", false },
		{ "a FETCH 1 FLAGS))\r\n", "a BAD unbalanced parentheses", false },
		{ "a APPEND INBOX {99999999999999999999}\r\n", "a BAD literal size too large", false },
		{ "a APPEND INBOX {-5}\r\n", "a BAD bad literal size", false },
		{ "a APPEND INBOX {12x+}\r\n", "* BYE bad literal size", true },
		{ "a LOGIN \"unterminated\r\n", "a BAD unterminated quoted string", false },
		{ "a SEARCH (TEXT {3+}\r\nabc\r\n", "* BYE unbalanced parentheses", true },
	};
	size_t i;

	harness_start(NULL, NULL);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct imapc c;
		char *line;

		connect_proxy(&c);
		imapc_login(&c, "test", "secret");
		imapc_send(&c, "%s", cases[i].input);
		line = imapc_line(&c);
		cr_assert_not_null(line, "no answer to case %zu", i);
		cr_assert(strncmp(line, cases[i].answer, strlen(cases[i].answer)) == 0,
		    "case %zu: got \"%s\", want \"%s\"", i, line, cases[i].answer);
		free(line);
		if (cases[i].closes) {
			cr_assert(imapc_wait_closed(&c), "case %zu: not closed", i);
		} else {
			free(imapc_ok(&c, "n", "NOOP"));
		}
		imapc_close(&c);
	}
}

/*
 * A tag and spaces, no command name, before login: once read from a token
 * the lexer never wrote (uninitialised with the defaults; with a long tag
 * line just before it in the same read, a crash of the whole daemon).
 */
Test(passthrough, tag_without_command_name_gets_bad)
{
	struct imapc c, other;
	char *line, *input;
	size_t taglen = 2 * 1024 * 1024, n;

	harness_start(NULL, "max_line_length = 16M\n");
	connect_proxy(&other);

	connect_proxy(&c);
	imapc_send(&c, "a  \r\n");
	line = imapc_line(&c);
	cr_assert_not_null(line);
	cr_assert_str_eq(line, "a BAD missing command");
	free(line);
	free(imapc_ok(&c, "n1", "NOOP"));

	/* a long tag line and the short one in one write */
	input = malloc(taglen + 64);
	cr_assert_not_null(input);
	memset(input, 't', taglen);
	n = taglen;
	n += (size_t)sprintf(input + n, " NOOP\r\nb  \r\n");
	imapc_send_raw(&c, input, n);
	free(input);
	line = imapc_line(&c);
	cr_assert_not_null(line);
	cr_assert(strncmp(line, "* BAD Tag longer", 16) == 0, "%s", line);
	free(line);
	line = imapc_line(&c);
	cr_assert_not_null(line, "the daemon died");
	cr_assert_str_eq(line, "b BAD missing command");
	free(line);
	free(imapc_ok(&c, "n2", "NOOP"));
	imapc_close(&c);

	/* nobody else noticed */
	imapc_login(&other, "test", "secret");
	imapc_close(&other);
}

Test(passthrough, nul_and_overlong_lines)
{
	struct imapc c, other;
	char *line, *big;
	size_t n = 70000;

	harness_start(NULL, NULL);
	connect_proxy(&other);
	imapc_login(&other, "test", "secret");

	connect_proxy(&c);
	imapc_send_raw(&c, "a LOGIN te\0st x\r\n", 17);
	line = imapc_line(&c);
	cr_assert_not_null(line);
	cr_assert_str_eq(line, "a BAD NUL byte in line");
	free(line);
	/* a line without CRLF beyond the 64 KiB default */
	big = malloc(n);
	memset(big, 'x', n);
	memcpy(big, "a NOOP ", 7);
	imapc_send_raw(&c, big, n);
	line = imapc_line(&c);
	cr_assert_not_null(line);
	cr_assert_str_eq(line, "* BYE Command line too long");
	free(line);
	cr_assert(imapc_wait_closed(&c));
	imapc_close(&c);
	free(big);

	/* a tag no client needs */
	connect_proxy(&c);
	big = malloc(400);
	memset(big, 't', 300);
	memcpy(big + 300, " NOOP\r\n", 8);
	imapc_send(&c, "%s", big);
	line = imapc_line(&c);
	cr_assert_not_null(line);
	cr_assert(strncmp(line, "* BAD Tag longer", 16) == 0, "%s", line);
	free(line);
	free(big);
	free(imapc_ok(&c, "n", "NOOP"));
	imapc_close(&c);

	/* the other session never noticed */
	free(imapc_ok(&other, "n", "NOOP"));
	imapc_close(&other);
}

Test(passthrough, starttls_is_not_relayed)
{
	struct imapc c;
	char *r;

	harness_start(NULL, NULL);
	connect_proxy(&c);
	r = imapc_command(&c, "a", "STARTTLS");
	cr_assert(strncmp(last_line(r), "a NO", 4) == 0, "%s", r);
	free(r);
	imapc_login(&c, "test", "secret");
	imapc_close(&c);
}

Test(passthrough, capabilities_asked_when_not_told)
{
	const char *args[] = { "--no-greeting-caps", "--no-login-caps", NULL };
	struct imapc c;
	char *r;

	harness_start(args, NULL);
	connect_proxy(&c);
	r = imapc_command(&c, "a", "LOGIN test secret");
	/* the proxy's own CAPABILITY after login is not shown to the client */
	cr_assert(strstr(r, "CAPABILITY") == NULL, "%s", r);
	free(r);
	r = imapc_ok(&c, "b", "CAPABILITY");
	cr_assert(has_cap(r, "LITERAL+"), "%s", r);
	free(r);
	imapc_close(&c);
}

Test(passthrough, client_idle_timeout)
{
	struct imapc c;
	char *line;

	harness_start(NULL, "client_idle_timeout = 1");
	connect_proxy(&c);
	line = imapc_line(&c);
	cr_assert_not_null(line);
	cr_assert(strncmp(line, "* BYE Autologout", 16) == 0, "%s", line);
	free(line);
	cr_assert(imapc_wait_closed(&c));
	imapc_close(&c);
}

Test(passthrough, silent_upstream_times_out)
{
	struct imapc direct, c;
	char *line;

	harness_start(NULL, "upstream_idle_timeout = 1");
	imapc_connect(&direct, mock.port);
	free(imapc_line(&direct));
	free(imapc_ok(&direct, "d", "XMOCK DELAY 5000"));
	imapc_close(&direct);
	connect_proxy(&c);
	imapc_send(&c, "a NOOP\r\n");
	line = imapc_line(&c);
	cr_assert_not_null(line);
	cr_assert_str_eq(line, "* BYE Upstream server not responding");
	free(line);
	cr_assert(imapc_wait_closed(&c));
	imapc_close(&c);
}

Test(passthrough, sigterm_says_bye_and_exits_cleanly)
{
	struct imapc c;
	char *line;
	int status;

	harness_start(NULL, NULL);
	connect_proxy(&c);
	imapc_login(&c, "test", "secret");
	kill(px.pid, SIGTERM);
	line = imapc_line(&c);
	cr_assert_not_null(line);
	cr_assert_str_eq(line, "* BYE Server shutting down");
	free(line);
	cr_assert(imapc_wait_closed(&c));
	cr_assert_eq(waitpid(px.pid, &status, 0), px.pid);
	px.pid = 0;
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
	imapc_close(&c);
}

Test(passthrough, config_check)
{
	char dir[] = "/tmp/mappend-conf.XXXXXX", path[300], cmd[700], out[1024];
	FILE *f, *p;
	size_t n;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/bad.conf", dir);
	f = fopen(path, "w");
	fprintf(f, "listen = 127.0.0.1:1143\n# comment\nupstream = 127.0.0.1:143\nlisten_typo = 1\n");
	fclose(f);
	snprintf(cmd, sizeof(cmd), "%s -t -c %s 2>&1; echo status=$?", getenv("MAPPEND_BIN"), path);
	p = popen(cmd, "r");
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	pclose(p);
	cr_assert(strstr(out, "bad.conf:4: unknown key \"listen_typo\"") != NULL, "%s", out);
	cr_assert(strstr(out, "status=1") != NULL, "%s", out);

	f = fopen(path, "w");
	fprintf(f, "listen = 127.0.0.1:1143\nupstream = 127.0.0.1:143\n");
	fclose(f);
	p = popen(cmd, "r");
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	pclose(p);
	cr_assert(strstr(out, "status=0") != NULL, "%s", out);
	unlink(path);
	rmdir(dir);
}

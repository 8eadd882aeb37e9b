/*
 * test_multiappend.c — MULTIAPPEND through the real mappend binary against
 * the mock upstream, every profile: success, APPENDUID, cancels, TRYCREATE,
 * a refusal or a dropped connection at every position, clients leaving,
 * limits, rollback that spares the user's own \Deleted messages, and the
 * selected mailbox's EXISTS/EXPUNGE.  What the upstream really received is
 * read from the mock's own statistics (XMOCK STATS).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

TestSuite(multiappend, .fini = harness_teardown, .timeout = 120);

struct stats {
	unsigned long appends, messages, multi, maxmsgs, expunge, uidexpunge, close;
};

static struct stats
stats(struct imapc *d)
{
	struct stats st;
	char *r = imapc_command(d, "st", "XMOCK STATS"), *p = strstr(r, "* XMOCK STATS");

	memset(&st, 0, sizeof(st));
	cr_assert_not_null(p, "%s", r);
	cr_assert_eq(sscanf(p, "* XMOCK STATS appends=%lu messages=%lu multi=%lu "
	    "maxmsgs=%lu expunge=%lu uidexpunge=%lu close=%lu", &st.appends,
	    &st.messages, &st.multi, &st.maxmsgs, &st.expunge, &st.uidexpunge,
	    &st.close), 7, "%s", p);
	free(r);
	return st;
}

static void
fault(struct imapc *d, const char *what)
{
	free(imapc_ok(d, "f", "XMOCK FAULT %s", what));
}

/* UIDs, flags and sizes of a mailbox, seen directly at the mock. */
static char *
snapshot(struct imapc *d, const char *mailbox)
{
	char *out;

	free(imapc_ok(d, "x", "EXAMINE %s", mailbox));
	out = imapc_command(d, "y", "UID FETCH 1:* (UID FLAGS RFC822.SIZE)");
	free(imapc_command(d, "z", "UNSELECT"));
	return out;
}

static size_t msg_size(unsigned i) { return 200 + (i * 37) % 500; }

/* " (\Flagged) "date" {n+}" CRLF message, for each message; the command's
 * final CRLF included. */
static char *
multiappend_command(const char *tag, const char *mailbox, unsigned n, bool sync_literals,
    size_t *len)
{
	char *out = NULL;
	size_t olen = 0;
	FILE *f = open_memstream(&out, &olen);
	unsigned i;

	fprintf(f, "%s APPEND %s", tag, mailbox);
	for (i = 0; i < n; i++) {
		char *m = make_message(msg_size(i), i);

		fprintf(f, " (\\Flagged $k%u) \"0%u-Mar-2023 10:%02u:00 +0000\" {%zu%s}\r\n",
		    i, 1 + i % 9, i % 60, msg_size(i), sync_literals ? "" : "+");
		fwrite(m, 1, msg_size(i), f);
		free(m);
	}
	fprintf(f, "\r\n");
	fclose(f);
	*len = olen;
	return out;
}

/* Send a whole MULTIAPPEND of {n+} literals; the answer. */
static char *
multiappend(struct imapc *c, const char *tag, const char *mailbox, unsigned n)
{
	size_t len;
	char *command = multiappend_command(tag, mailbox, n, false, &len), *r;

	imapc_send_raw(c, command, len);
	free(command);
	r = imapc_until_tagged(c, tag, NULL);
	cr_assert_not_null(r, "no answer to the MULTIAPPEND");
	return r;
}

/* The messages as the upstream holds them: every byte, flag and date. */
static void
check_stored(struct imapc *d, const char *mailbox, unsigned first_seq, unsigned n)
{
	char *r = imapc_command(d, "x", "EXAMINE %s", mailbox);
	unsigned i;

	free(r);
	for (i = 0; i < n; i++) {
		char *m = make_message(msg_size(i), i), *body, want[128];

		r = imapc_ok(d, "f", "FETCH %u (FLAGS INTERNALDATE BODY.PEEK[])", first_seq + i);
		snprintf(want, sizeof(want), "$k%u", i);
		cr_assert(strstr(r, want) != NULL && strstr(r, "\\Flagged") != NULL,
		    "message %u flags: %.300s", i, r);
		snprintf(want, sizeof(want), "\"0%u-Mar-2023 10:%02u:00 +0000\"", 1 + i % 9, i % 60);
		cr_assert(strstr(r, want) != NULL, "message %u date: %.300s", i, r);
		body = strstr(r, "BODY[] {");
		cr_assert_not_null(body);
		body = strstr(body, "}\r\n") + 3;
		cr_assert_eq(memcmp(body, m, msg_size(i)), 0, "message %u differs", i);
		free(m);
		free(r);
	}
	free(imapc_command(d, "c", "UNSELECT"));
}

static void
check_success(unsigned n)
{
	struct imapc c, d;
	struct stats st;
	char *r, want[64];

	proxy_connect(&c);
	direct_connect(&d);
	r = multiappend(&c, "A1", "INBOX", n);
	cr_assert(tagged_ok(r, "A1"), "%s", r);
	if (n == 1)
		snprintf(want, sizeof(want), "A1 OK [APPENDUID 1000 1]");
	else
		snprintf(want, sizeof(want), "A1 OK [APPENDUID 1000 1:%u]", n);
	cr_assert(strncmp(last_line(r), want, strlen(want)) == 0, "%s", r);
	free(r);
	st = stats(&d);
	/* the legacy upstream never saw a multi-message APPEND */
	cr_assert_eq(st.multi, 0);
	cr_assert_eq(st.maxmsgs, 1);
	cr_assert_eq(st.appends, n);
	cr_assert_eq(st.messages, n);
	check_stored(&d, "INBOX", 1, n);
	imapc_close(&c);
	imapc_close(&d);
}

Test(multiappend, success_1)
{
	harness_start(NULL, NULL);
	check_success(1);
}

Test(multiappend, success_2)
{
	harness_start(NULL, NULL);
	check_success(2);
}

Test(multiappend, success_50)
{
	harness_start(NULL, NULL);
	check_success(50);
}

Test(multiappend, appenduid_covers_all_new_uids)
{
	struct imapc c;
	char *r;

	harness_start(NULL, NULL);
	proxy_connect(&c);
	r = multiappend(&c, "a", "INBOX", 3);
	cr_assert(strncmp(last_line(r), "a OK [APPENDUID 1000 1:3]", 25) == 0, "%s", r);
	free(r);
	r = multiappend(&c, "b", "INBOX", 4);
	cr_assert(strncmp(last_line(r), "b OK [APPENDUID 1000 4:7]", 25) == 0, "%s", r);
	free(r);
	imapc_close(&c);
}

Test(multiappend, synchronizing_literals_get_plus_from_the_proxy)
{
	struct imapc c, d;
	char *r, *m;
	unsigned i;

	/* the upstream itself wants a "+" for each literal too */
	const char *args[] = { "--profile", "noliteralplus", NULL };

	harness_start(args, NULL);
	proxy_connect(&c);
	direct_connect(&d);
	imapc_send(&c, "a APPEND INBOX");
	for (i = 0; i < 3; i++) {
		imapc_send(&c, " (\\Flagged $k%u) \"0%u-Mar-2023 10:%02u:00 +0000\" {%zu}\r\n",
		    i, 1 + i % 9, i % 60, msg_size(i));
		imapc_expect_plus(&c);
		m = make_message(msg_size(i), i);
		imapc_send_raw(&c, m, msg_size(i));
		free(m);
	}
	imapc_send(&c, "\r\n");
	r = imapc_until_tagged(&c, "a", NULL);
	cr_assert(strncmp(last_line(r), "a OK [APPENDUID 1000 1:3]", 25) == 0, "%s", r);
	free(r);
	check_stored(&d, "INBOX", 1, 3);
	cr_assert_eq(stats(&d).multi, 0);
	imapc_close(&c);
	imapc_close(&d);
}

Test(multiappend, literal_minus_upstream)
{
	const char *args[] = { "--profile", "literalminus", NULL };
	struct imapc c, d;
	char *r, *big = make_message(6000, 1);

	harness_start(args, NULL);
	proxy_connect(&c);
	direct_connect(&d);
	imapc_send(&c, "a APPEND INBOX {6000+}\r\n");
	imapc_send_raw(&c, big, 6000);
	imapc_send(&c, " {6000+}\r\n");
	imapc_send_raw(&c, big, 6000);
	imapc_send(&c, " {5+}\r\nsmall\r\n");
	r = imapc_until_tagged(&c, "a", NULL);
	cr_assert(strncmp(last_line(r), "a OK [APPENDUID 1000 1:3]", 25) == 0, "%s", r);
	free(r);
	free(big);
	imapc_close(&c);
	imapc_close(&d);
}

Test(multiappend, upstream_with_multiappend_gets_one_command)
{
	const char *args[] = { "--profile", "multiappend", NULL };
	struct imapc c, d;
	struct stats st;
	char *r;

	harness_start(args, NULL);
	proxy_connect(&c);
	direct_connect(&d);
	r = multiappend(&c, "a", "INBOX", 5);
	cr_assert(strncmp(last_line(r), "a OK [APPENDUID 1000 1:5]", 25) == 0, "%s", r);
	free(r);
	st = stats(&d);
	cr_assert_eq(st.appends, 1);
	cr_assert_eq(st.multi, 1);
	cr_assert_eq(st.maxmsgs, 5);
	check_stored(&d, "INBOX", 1, 5);
	imapc_close(&c);
	imapc_close(&d);
}

static void
check_cancel(unsigned at, unsigned n)
{
	struct imapc c, d;
	char *out = NULL, *r;
	size_t olen = 0;
	FILE *f = open_memstream(&out, &olen);
	unsigned i;

	fprintf(f, "a APPEND INBOX");
	for (i = 0; i < n; i++) {
		char *m = make_message(msg_size(i), i);

		if (i == at) {
			fprintf(f, " {0+}\r\n");
		} else {
			fprintf(f, " {%zu+}\r\n", msg_size(i));
			fwrite(m, 1, msg_size(i), f);
		}
		free(m);
	}
	fprintf(f, "\r\nb NOOP\r\n");
	fclose(f);
	proxy_connect(&c);
	direct_connect(&d);
	imapc_send_raw(&c, out, olen);
	r = imapc_until_tagged(&c, "b", NULL);
	cr_assert_not_null(r);
	cr_assert(strstr(r, "a NO ") != NULL, "%s", r);
	cr_assert(tagged_ok(r, "b"), "%s", r);
	free(r);
	cr_assert_eq(stats(&d).appends, 0, "nothing may reach the upstream");
	free(out);
	imapc_close(&c);
	imapc_close(&d);
}

Test(multiappend, zero_length_literal_cancels)
{
	struct imapc c;
	char *line;

	harness_start(NULL, NULL);
	check_cancel(0, 4);
	check_cancel(2, 4);
	check_cancel(3, 4);
	/* synchronizing: the NO comes instead of the "+" */
	proxy_connect(&c);
	imapc_send(&c, "a APPEND INBOX {3+}\r\nabc {0}\r\n");
	line = imapc_line(&c);
	cr_assert_not_null(line);
	cr_assert(strncmp(line, "a NO ", 5) == 0, "%s", line);
	free(line);
	free(imapc_command(&c, "b", "NOOP"));
	imapc_close(&c);
}

/* A mailbox name that is a literal of no bytes: no literal data ends it,
 * the message that follows is a message (found by fuzz_session: it was
 * written into the name's one-byte buffer), and the name is refused. */
Test(multiappend, empty_literal_mailbox_name)
{
	struct imapc c;
	char *r, *line;

	harness_start(NULL, NULL);
	proxy_connect(&c);
	imapc_send(&c, "a APPEND {0+}\r\n (\\Seen) {34+}\r\n"
	    "Subject: 0\r\n\r\nx1 CREATE injected\r\n\r\n");
	r = imapc_until_tagged(&c, "a", NULL);
	cr_assert_not_null(r);
	cr_assert(strncmp(last_line(r), "a NO ", 5) == 0, "%s", r);
	free(r);
	/* synchronizing: "+" for the name, then the same */
	imapc_send(&c, "b APPEND {0}\r\n");
	line = imapc_line(&c);
	cr_assert(line != NULL && line[0] == '+', "%s", line);
	free(line);
	imapc_send(&c, " {3+}\r\nabc\r\n");
	r = imapc_until_tagged(&c, "b", NULL);
	cr_assert(r != NULL && strncmp(last_line(r), "b NO ", 5) == 0, "%s", r);
	free(r);
	r = imapc_command(&c, "l", "LIST \"\" \"*\"");
	cr_assert_null(strstr(r, "injected"), "a body was executed: %s", r);
	free(r);
	imapc_close(&c);
}

/* A MULTIAPPEND to a missing mailbox: TRYCREATE, and the mailbox is never
 * created. */
static void
check_trycreate(struct imapc *c, struct imapc *d)
{
	char *r = multiappend(c, "a", "nosuchbox", 3);

	cr_assert(strncmp(last_line(r), "a NO [TRYCREATE]", 16) == 0, "%s", r);
	free(r);
	r = imapc_command(d, "l", "LIST \"\" \"*\"");
	cr_assert(strstr(r, "nosuchbox") == NULL, "the mailbox was created: %s", r);
	free(r);
}

Test(multiappend, missing_mailbox_gives_trycreate)
{
	struct imapc c, d;
	struct stats st;

	harness_start(NULL, NULL);
	proxy_connect(&c);
	direct_connect(&d);
	check_trycreate(&c, &d);
	st = stats(&d);
	cr_assert_eq(st.messages, 0);
	imapc_close(&c);
	imapc_close(&d);
}

/* Messages the user had, one of them \Deleted: a rollback must spare it. */
static void
seed_one(struct imapc *d, const char *tag, const char *flags, const char *body)
{
	char *r;

	/* synchronizing, so that every profile takes it */
	imapc_send(d, "%s APPEND INBOX %s {%zu}\r\n", tag, flags, strlen(body));
	imapc_expect_plus(d);
	imapc_send(d, "%s\r\n", body);
	r = imapc_until_tagged(d, tag, NULL);
	cr_assert(tagged_ok(r, tag), "%s", r);
	free(r);
}

static void
seed(struct imapc *d)
{
	seed_one(d, "s1", "()", "user1");
	seed_one(d, "s2", "(\\Deleted)", "user2");
}

/* The user's own messages, seeded on a connection of their own. */
static void
seed_inbox(void)
{
	struct imapc d;

	direct_connect(&d);
	seed(&d);
	imapc_close(&d);
}

static void
check_refusal_at(unsigned k, unsigned n, bool selected)
{
	struct imapc c, d;
	struct stats st;
	char *before, *after, *r, spec[128];

	proxy_connect(&c);
	direct_connect(&d);
	before = snapshot(&d, "INBOX");
	if (selected)
		free(imapc_command(&c, "s", "SELECT INBOX"));
	snprintf(spec, sizeof(spec), "APPEND-NO %u [OVERQUOTA] Quota exceeded (mock)", k);
	fault(&d, spec);
	r = multiappend(&c, "a", "INBOX", n);
	cr_assert(strncmp(last_line(r), "a NO [OVERQUOTA] Quota exceeded (mock)", 38) == 0,
	    "k=%u: %s", k, r);
	if (selected && k > 1) {
		/* the client saw the EXISTS and then the EXPUNGEs */
		cr_assert(strstr(r, " EXISTS\r\n") != NULL, "k=%u: %s", k, r);
		cr_assert(strstr(r, " EXPUNGE\r\n") != NULL, "k=%u: %s", k, r);
	}
	free(r);
	after = snapshot(&d, "INBOX");
	cr_assert_str_eq(after, before, "k=%u: the mailbox changed", k);
	st = stats(&d);
	cr_assert_eq(st.expunge, 0, "a plain EXPUNGE was used");
	cr_assert_eq(st.close, 0, "CLOSE was used");
	cr_assert_eq(st.multi, 0);
	if (k > 1)
		cr_assert_geq(st.uidexpunge, 1);
	if (selected) {
		/* the client's view: 2 messages, as before */
		r = imapc_command(&c, "n", "NOOP");
		free(r);
		r = imapc_command(&c, "f", "FETCH 1:* (FLAGS)");
		cr_assert(strstr(r, "* 2 FETCH") != NULL && strstr(r, "* 3 FETCH") == NULL,
		    "k=%u: %s", k, r);
		free(r);
	}
	free(before);
	free(after);
	fault(&d, "CLEAR");
	imapc_close(&c);
	imapc_close(&d);
}

Test(multiappend, refusal_at_every_position_selected)
{
	unsigned k;

	harness_start(NULL, NULL);
	seed_inbox();
	for (k = 1; k <= 5; k++)
		check_refusal_at(k, 5, true);
}

Test(multiappend, refusal_at_every_position_not_selected)
{
	unsigned k;

	harness_start(NULL, NULL);
	seed_inbox();
	for (k = 1; k <= 5; k++)
		check_refusal_at(k, 5, false);
}

Test(multiappend, refusal_without_literal_plus_upstream)
{
	const char *args[] = { "--profile", "noliteralplus", NULL };
	unsigned k;

	harness_start(args, NULL);
	seed_inbox();
	for (k = 1; k <= 4; k++)
		check_refusal_at(k, 4, k % 2 == 0);
}

static void
check_drop_at(const char *kind, unsigned k, unsigned n)
{
	struct imapc c, d;
	struct stats st;
	char *before, *after, *r, *line, spec[64];

	char *log = proxy_log(&px);
	size_t found_before = count_substr(log, strlen(log), "of unknown UID found as UID");

	free(log);
	proxy_connect(&c);
	direct_connect(&d);
	before = snapshot(&d, "INBOX");
	snprintf(spec, sizeof(spec), "%s %u", kind, k);
	fault(&d, spec);
	r = multiappend(&c, "a", "INBOX", n);
	cr_assert(strncmp(last_line(r), "a NO [UNAVAILABLE]", 18) == 0, "%s k=%u: %s",
	    kind, k, r);
	free(r);
	line = imapc_line(&c);
	cr_assert_not_null(line);
	cr_assert(strncmp(line, "* BYE", 5) == 0, "%s", line);
	free(line);
	cr_assert(imapc_wait_closed(&c));
	after = snapshot(&d, "INBOX");
	cr_assert_str_eq(after, before, "%s k=%u: the mailbox changed", kind, k);
	st = stats(&d);
	cr_assert_eq(st.expunge, 0);
	cr_assert_eq(st.close, 0);
	if (strcmp(kind, "APPEND-DROP-AFTER") == 0) {
		log = proxy_log(&px);
		/* the message stored without an answer was found by its bytes */
		cr_assert(count_substr(log, strlen(log), "of unknown UID found as UID") >
		    found_before, "%s", log);
		free(log);
	}
	free(before);
	free(after);
	fault(&d, "CLEAR");
	imapc_close(&c);
	imapc_close(&d);
}

Test(multiappend, upstream_drop_at_every_position)
{
	unsigned k;

	harness_start(NULL, NULL);
	seed_inbox();
	for (k = 1; k <= 4; k++)
		check_drop_at("APPEND-DROP", k, 4);
}

Test(multiappend, upstream_drop_after_storing_at_every_position)
{
	unsigned k;

	/* the upstream stores message k and drops before answering: its UID
	 * is found by UIDNEXT, size and content on a new connection */
	harness_start(NULL, NULL);
	seed_inbox();
	for (k = 1; k <= 4; k++)
		check_drop_at("APPEND-DROP-AFTER", k, 4);
}

Test(multiappend, client_leaves_while_spooling)
{
	struct imapc c, d;
	size_t len;
	char *command = multiappend_command("a", "INBOX", 5, false, &len);

	harness_start(NULL, NULL);
	proxy_connect(&c);
	direct_connect(&d);
	imapc_send_raw(&c, command, len / 2);
	usleep(100 * 1000);
	imapc_close(&c);
	usleep(200 * 1000);
	cr_assert_eq(stats(&d).appends, 0, "nothing may reach the upstream");
	free(command);
	imapc_close(&d);
}

Test(multiappend, client_leaves_during_replay)
{
	struct imapc c, d;
	struct stats st;
	size_t len;
	char *command = multiappend_command("a", "INBOX", 5, false, &len), *before, *after;
	unsigned i;

	harness_start(NULL, NULL);
	proxy_connect(&c);
	direct_connect(&d);
	seed(&d);
	before = snapshot(&d, "INBOX");
	/* slow answers: the replay is under way when the client leaves */
	free(imapc_command(&d, "dl", "XMOCK DELAY 200"));
	imapc_send_raw(&c, command, len);
	usleep(300 * 1000);
	imapc_close(&c);
	/* the proxy finishes with nothing: the client never saw OK */
	for (i = 0; i < 100; i++) {
		usleep(100 * 1000);
		st = stats(&d);
		if (st.uidexpunge > 0)
			break;
	}
	free(imapc_command(&d, "dl", "XMOCK DELAY 0"));
	usleep(300 * 1000);
	st = stats(&d);
	cr_assert_gt(st.appends, 0, "the replay had not started");
	cr_assert_geq(st.uidexpunge, 1);
	cr_assert_eq(st.expunge, 0);
	after = snapshot(&d, "INBOX");
	cr_assert_str_eq(after, before);
	free(before);
	free(after);
	free(command);
	imapc_close(&d);
}

Test(multiappend, limits)
{
	const char *conf = "max_message_size = 1000\nmax_messages = 3\n"
	    "max_session_spool = 2500\n";
	struct imapc c, d;
	char *r, *line, *m = make_message(1000, 1);

	harness_start(NULL, conf);
	proxy_connect(&c);
	direct_connect(&d);
	r = imapc_command(&c, "cap", "CAPABILITY");
	cr_assert(strstr(r, " APPENDLIMIT=1000") != NULL, "%s", r);
	free(r);
	/* too big, non-synchronizing: read, dropped, refused */
	imapc_send(&c, "a APPEND INBOX {1001+}\r\n");
	imapc_send_raw(&c, m, 1000);
	imapc_send(&c, "x\r\nb NOOP\r\n");
	r = imapc_until_tagged(&c, "b", NULL);
	cr_assert(strstr(r, "a NO [TOOBIG]") != NULL, "%s", r);
	cr_assert(tagged_ok(r, "b"), "%s", r);
	free(r);
	/* too big, synchronizing: refused before the "+" */
	imapc_send(&c, "c APPEND INBOX (\\Seen) {1001}\r\n");
	line = imapc_line(&c);
	cr_assert(strncmp(line, "c NO [TOOBIG]", 13) == 0, "%s", line);
	free(line);
	/* too many messages */
	r = multiappend(&c, "d", "INBOX", 4);
	cr_assert(strncmp(last_line(r), "d NO [LIMIT]", 12) == 0, "%s", r);
	free(r);
	/* too much for one session */
	imapc_send(&c, "e APPEND INBOX {1000+}\r\n");
	imapc_send_raw(&c, m, 1000);
	imapc_send(&c, " {1000+}\r\n");
	imapc_send_raw(&c, m, 1000);
	imapc_send(&c, " {1000+}\r\n");
	imapc_send_raw(&c, m, 1000);
	imapc_send(&c, "\r\n");
	r = imapc_until_tagged(&c, "e", NULL);
	cr_assert(strncmp(last_line(r), "e NO [LIMIT]", 12) == 0, "%s", r);
	free(r);
	cr_assert_eq(stats(&d).appends, 0, "nothing may reach the upstream");
	free(imapc_command(&c, "n", "NOOP"));
	free(m);
	imapc_close(&c);
	imapc_close(&d);
}

Test(multiappend, upstream_appendlimit_is_respected)
{
	const char *args[] = { "--appendlimit", "500", NULL };
	struct imapc c, d;
	char *r;

	harness_start(args, NULL);
	proxy_connect(&c);
	direct_connect(&d);
	r = imapc_command(&c, "cap", "CAPABILITY");
	cr_assert(strstr(r, " APPENDLIMIT=500") != NULL, "%s", r);
	cr_assert_eq(count_substr(r, strlen(r), "APPENDLIMIT"), 1, "%s", r);
	free(r);
	/* message sizes 200, 237, 274, ... 533 for i = 9 */
	r = multiappend(&c, "a", "INBOX", 10);
	cr_assert(strncmp(last_line(r), "a NO [TOOBIG]", 13) == 0, "%s", r);
	free(r);
	cr_assert_eq(stats(&d).appends, 0);
	imapc_close(&c);
	imapc_close(&d);
}

Test(multiappend, pipelined_commands_wait_their_turn)
{
	struct imapc c;
	size_t len;
	char *command = multiappend_command("b", "INBOX", 3, false, &len), *r, *pa, *pb,
	    *pc, *pd;

	harness_start(NULL, NULL);
	proxy_connect(&c);
	imapc_send(&c, "a SELECT INBOX\r\n");
	imapc_send_raw(&c, command, len);
	imapc_send(&c, "c FETCH 1:* (UID)\r\nd NOOP\r\n");
	r = imapc_until_tagged(&c, "d", NULL);
	pa = strstr(r, "a OK");
	pb = strstr(r, "b OK");
	pc = strstr(r, "c OK");
	pd = strstr(r, "d OK");
	cr_assert(pa && pb && pc && pd && pa < pb && pb < pc && pc < pd, "%s", r);
	/* FETCH after the MULTIAPPEND sees all three */
	cr_assert(strstr(r, "* 3 FETCH (UID 3)") != NULL, "%s", r);
	free(r);
	free(command);
	imapc_close(&c);
}

Test(multiappend, selected_mailbox_sees_exists)
{
	struct imapc c;
	char *r;

	harness_start(NULL, NULL);
	proxy_connect(&c);
	free(imapc_command(&c, "s", "SELECT INBOX"));
	r = multiappend(&c, "a", "INBOX", 3);
	cr_assert(tagged_ok(r, "a"), "%s", r);
	cr_assert(strstr(r, "* 3 EXISTS\r\n") != NULL, "%s", r);
	free(r);
	imapc_close(&c);
}

Test(multiappend, rollback_with_authenticate_plain_credentials)
{
	struct imapc c, d;
	char *r, *before, *after;

	harness_start(NULL, NULL);
	imapc_connect(&c, px.port);
	free(imapc_line(&c));
	/* "\0test\0secret" */
	free(imapc_ok(&c, "l", "AUTHENTICATE PLAIN AHRlc3QAc2VjcmV0"));
	direct_connect(&d);
	seed(&d);
	before = snapshot(&d, "INBOX");
	fault(&d, "APPEND-NO 3");
	r = multiappend(&c, "a", "INBOX", 4);
	cr_assert(strncmp(last_line(r), "a NO", 4) == 0, "%s", r);
	free(r);
	after = snapshot(&d, "INBOX");
	cr_assert_str_eq(after, before);
	cr_assert_eq(stats(&d).uidexpunge, 1);
	free(before);
	free(after);
	imapc_close(&c);
	imapc_close(&d);
}

Test(multiappend, rollback_with_master_user)
{
	const char *args[] = { "--master", "boss:bosspw", NULL };
	struct imapc c, d;
	char *r, *before, *after, *log;

	harness_start(args, "master_user = boss\nmaster_password = bosspw\n");
	proxy_connect(&c);
	direct_connect(&d);
	seed(&d);
	before = snapshot(&d, "INBOX");
	fault(&d, "APPEND-NO 2");
	r = multiappend(&c, "a", "INBOX", 3);
	cr_assert(strncmp(last_line(r), "a NO", 4) == 0, "%s", r);
	free(r);
	after = snapshot(&d, "INBOX");
	cr_assert_str_eq(after, before);
	free(before);
	free(after);
	imapc_close(&c);
	imapc_close(&d);
	log = proxy_log(&px);
	cr_assert(strstr(log, "bosspw") == NULL && strstr(log, "secret") == NULL,
	    "a password reached the log");
	free(log);
}

/* No UIDPLUS: staging mailbox, one COPY, staging deleted. */
static void
check_no_staging_left(struct imapc *d)
{
	char *r = imapc_command(d, "l", "LIST \"\" \"*\"");

	cr_assert(strstr(r, "mappend-staging") == NULL, "staging mailbox left: %s", r);
	free(r);
}

Test(multiappend, nouidplus_success)
{
	const char *args[] = { "--profile", "nouidplus", NULL };
	struct imapc c, d;
	struct stats st;
	char *r;

	harness_start(args, NULL);
	proxy_connect(&c);
	direct_connect(&d);
	free(imapc_command(&c, "s", "SELECT INBOX"));
	r = multiappend(&c, "a", "INBOX", 20);
	cr_assert(strncmp(last_line(r), "a OK Append completed", 21) == 0, "%s", r);
	/* the client has the target open: it hears of the new messages first */
	cr_assert(strstr(r, "* 20 EXISTS\r\n") != NULL, "%s", r);
	free(r);
	st = stats(&d);
	cr_assert_eq(st.multi, 0);
	cr_assert_eq(st.expunge, 0);
	check_stored(&d, "INBOX", 1, 20);
	check_no_staging_left(&d);
	/* one message: no staging, the command goes up as it came */
	r = multiappend(&c, "b", "INBOX", 1);
	cr_assert(tagged_ok(r, "b"), "%s", r);
	free(r);
	imapc_close(&c);
	imapc_close(&d);
}

Test(multiappend, nouidplus_refusal_at_every_position)
{
	const char *args[] = { "--profile", "nouidplus", NULL };
	struct imapc c, d;
	char *before, *after, *r, spec[64];
	unsigned k;

	harness_start(args, NULL);
	proxy_connect(&c);
	direct_connect(&d);
	seed(&d);
	before = snapshot(&d, "INBOX");
	for (k = 1; k <= 4; k++) {
		snprintf(spec, sizeof(spec), "APPEND-NO %u [OVERQUOTA] Quota exceeded (mock)", k);
		fault(&d, spec);
		r = multiappend(&c, "a", "INBOX", 4);
		cr_assert(strncmp(last_line(r), "a NO [OVERQUOTA]", 16) == 0, "k=%u: %s", k, r);
		free(r);
		after = snapshot(&d, "INBOX");
		cr_assert_str_eq(after, before, "k=%u: the mailbox changed", k);
		free(after);
		check_no_staging_left(&d);
	}
	cr_assert_eq(stats(&d).expunge, 0);
	free(before);
	imapc_close(&c);
	imapc_close(&d);
}

Test(multiappend, nouidplus_missing_mailbox)
{
	const char *args[] = { "--profile", "nouidplus", NULL };
	struct imapc c, d;

	harness_start(args, NULL);
	proxy_connect(&c);
	direct_connect(&d);
	check_trycreate(&c, &d);
	check_no_staging_left(&d);
	imapc_close(&c);
	imapc_close(&d);
}

Test(multiappend, nouidplus_upstream_drop)
{
	const char *args[] = { "--profile", "nouidplus", NULL };
	struct imapc c, d;
	char *before, *after, *r, *line;

	harness_start(args, NULL);
	proxy_connect(&c);
	direct_connect(&d);
	seed(&d);
	before = snapshot(&d, "INBOX");
	fault(&d, "APPEND-DROP-AFTER 2");
	r = multiappend(&c, "a", "INBOX", 4);
	cr_assert(strncmp(last_line(r), "a NO [UNAVAILABLE]", 18) == 0, "%s", r);
	free(r);
	line = imapc_line(&c);
	cr_assert(line != NULL && strncmp(line, "* BYE", 5) == 0, "%s", line);
	free(line);
	after = snapshot(&d, "INBOX");
	cr_assert_str_eq(after, before);
	check_no_staging_left(&d);
	free(before);
	free(after);
	imapc_close(&c);
	imapc_close(&d);
}

Test(multiappend, read_only_selection_sees_the_expunges_too)
{
	struct imapc c, d;
	char *r;

	harness_start(NULL, NULL);
	proxy_connect(&c);
	direct_connect(&d);
	seed(&d);
	/* EXAMINE: the rollback cannot run here, it runs on a second
	 * connection; a NOOP brings the client the EXPUNGEs */
	free(imapc_command(&c, "e", "EXAMINE INBOX"));
	fault(&d, "APPEND-NO 3");
	r = multiappend(&c, "a", "INBOX", 3);
	cr_assert(strncmp(last_line(r), "a NO", 4) == 0, "%s", r);
	cr_assert(strstr(r, "* 4 EXISTS\r\n") != NULL, "%s", r);
	cr_assert(strstr(r, "* 4 EXPUNGE\r\n") != NULL && strstr(r, "* 3 EXPUNGE\r\n") != NULL,
	    "%s", r);
	free(r);
	imapc_close(&c);
	imapc_close(&d);
}

Test(multiappend, upstream_drop_after_many_stored)
{
	/* 60 messages, the connection drops right after the upstream stored
	 * the 55th: the UID search answer is longer than the lexer's token
	 * table, and message 55 must still be found by its bytes */
	harness_start(NULL, NULL);
	seed_inbox();
	check_drop_at("APPEND-DROP-AFTER", 55, 60);
}

Test(multiappend, sigterm_waits_for_the_multiappend_in_progress)
{
	struct imapc c, d;
	size_t len;
	char *command = multiappend_command("a", "INBOX", 5, false, &len), *r, *line;
	int status;

	harness_start(NULL, NULL);
	proxy_connect(&c);
	direct_connect(&d);
	free(imapc_command(&d, "dl", "XMOCK DELAY 300"));
	imapc_send_raw(&c, command, len);
	free(command);
	usleep(400 * 1000);
	kill(px.pid, SIGTERM);
	/* the command finishes whole, then the session ends */
	r = imapc_until_tagged(&c, "a", NULL);
	cr_assert_not_null(r);
	cr_assert(strncmp(last_line(r), "a OK [APPENDUID 1000 1:5]", 25) == 0, "%s", r);
	free(r);
	line = imapc_line(&c);
	cr_assert(line != NULL && strcmp(line, "* BYE Server shutting down") == 0, "%s", line);
	free(line);
	cr_assert_eq(waitpid(px.pid, &status, 0), px.pid);
	px.pid = 0;
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	free(imapc_command(&d, "dl", "XMOCK DELAY 0"));
	r = imapc_command(&d, "s", "STATUS INBOX (MESSAGES)");
	cr_assert(strstr(r, "MESSAGES 5)") != NULL, "%s", r);
	free(r);
	imapc_close(&c);
	imapc_close(&d);
}

Test(multiappend, success_in_every_profile)
{
	static const char *const profiles[] = { "legacy", "nouidplus", "noliteralplus",
		"literalminus", "multiappend" };
	static const unsigned counts[] = { 1, 2, 50 };
	size_t p, i;

	for (p = 0; p < sizeof(profiles) / sizeof(profiles[0]); p++) {
		const char *args[] = { "--profile", profiles[p], NULL };
		bool uidplus = strcmp(profiles[p], "nouidplus") != 0;
		unsigned seq = 1;
		struct imapc c, d;

		harness_start(args, NULL);
		proxy_connect(&c);
		direct_connect(&d);
		for (i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
			char *r = multiappend(&c, "A", "INBOX", counts[i]), want[64];

			cr_assert(tagged_ok(r, "A"), "%s N=%u: %s", profiles[p], counts[i], r);
			if (counts[i] == 1)
				snprintf(want, sizeof(want), "A OK [APPENDUID 1000 %u]", seq);
			else
				snprintf(want, sizeof(want), "A OK [APPENDUID 1000 %u:%u]", seq,
				    seq + counts[i] - 1);
			if (uidplus)
				cr_assert(strncmp(last_line(r), want, strlen(want)) == 0,
				    "%s N=%u: %s", profiles[p], counts[i], r);
			else
				cr_assert(strstr(r, "APPENDUID") == NULL, "%s", r);
			free(r);
			check_stored(&d, "INBOX", seq, counts[i]);
			seq += counts[i];
		}
		/* only the upstream with MULTIAPPEND of its own got more than one
		 * message in a command */
		cr_assert_eq(stats(&d).multi, strcmp(profiles[p], "multiappend") == 0 ? 2 : 0,
		    "%s", profiles[p]);
		imapc_close(&c);
		imapc_close(&d);
		harness_teardown();
	}
}

/* A message body made of IMAP commands: if one byte of it were ever read
 * as a command, the upstream would create "injected" and delete "victim". */
static char *
hostile_body(size_t size)
{
	static const char line[] = "x1 CREATE injected\r\nx2 DELETE victim\r\n";
	char *b = malloc(size);
	size_t i;

	cr_assert_not_null(b);
	for (i = 0; i < size; i++)
		b[i] = line[i % (sizeof(line) - 1)];
	return b;
}

/*
 * The spool disk fills up in the middle of a {n+} upload whose bodies are
 * IMAP commands: the client gets NO [UNAVAILABLE], exactly the rest of each
 * literal is read and dropped, nothing in a body is executed, and the
 * session goes on.  (Found on a 1 MiB tmpfs: a partial write was drained
 * twice and the literal count ran past the literal's end.)
 */
Test(multiappend, spool_full_never_executes_message_content)
{
	struct imapc c, d;
	const size_t size = 614400;
	char *body = hostile_body(size), *r;
	unsigned i;

	mock_start(&mock, NULL);
	proxy_start_spool_limited(&px, mock.port, NULL, 1024 * 1024);
	direct_connect(&d);
	free(imapc_command(&d, "c", "CREATE victim"));
	proxy_connect(&c);
	imapc_send(&c, "A APPEND INBOX");
	for (i = 0; i < 3; i++) {
		imapc_send(&c, " {%zu+}\r\n", size);
		imapc_send_raw(&c, body, size);
	}
	imapc_send(&c, "\r\n");
	r = imapc_until_tagged(&c, "A", NULL);
	cr_assert_not_null(r);
	cr_assert(strncmp(last_line(r), "A NO [UNAVAILABLE]", 18) == 0, "%s", r);
	cr_assert_null(strstr(r, "x1 "), "a body line was answered: %.300s", r);
	cr_assert_null(strstr(r, "x2 "), "a body line was answered: %.300s", r);
	free(r);
	/* in step: the next command is the next command */
	r = imapc_ok(&c, "n", "NOOP");
	cr_assert_null(strstr(r, "x1 "), "%.300s", r);
	free(r);
	r = imapc_command(&d, "l", "LIST \"\" *");
	cr_assert_not_null(strstr(r, "victim"), "victim was deleted: %s", r);
	cr_assert_null(strstr(r, "injected"), "injected was created: %s", r);
	free(r);
	cr_assert_eq(stats(&d).appends, 0, "nothing may reach the upstream");
	free(body);
	imapc_close(&c);
	imapc_close(&d);
}

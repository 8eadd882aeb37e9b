/*
 * test_dovecot_faults.c — the fault matrix of test_faults.c against a real
 * Dovecot.  Dovecot runs with --legacy (UIDPLUS and LITERAL+, MULTIAPPEND
 * hidden), mappend has a master user, and between them sits the fault relay
 * (faultrelay.h): a MULTIAPPEND of N = 10 messages, bodies made of IMAP
 * commands, meets at every k the loss of the connection after the k-th
 * answer or instead of it, an answer to a tag nobody sent, a line over 16
 * MiB, a stall longer than the client's idle timer; then Dovecot's own
 * quota refusing message k, and the spool filling inside message k.
 *
 * After each: the client got NO (NO [UNAVAILABLE] and BYE where the
 * upstream connection was lost; a drop right after the N-th answer is OK,
 * all N stored, then BYE); INBOX is exactly as before, seen directly (UIDs,
 * flags, internal dates, the bytes of every message); no body line was
 * executed; no staging mailbox, no journal record; a new session works.
 *
 * Three tests at the end were found failing with the relay (mappend fixed
 * since): a server storing what a lost connection had sent after the
 * rollback first looked, and messages Dovecot stores with other bytes.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faultrelay.h"
#include "harness.h"

#define N 10

static struct dovecot dc;
static struct faultrelay fr;

static void
teardown(void)
{
	harness_teardown();
	faultrelay_stop(&fr);
	dovecot_stop(&dc);
}

TestSuite(dovecot_faults, .fini = teardown, .timeout = 300);

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
	imapc_connect_login(c, port, dc.user, dc.password);
}

/* Message i (from 0): a body made of IMAP commands (if one byte of it were
 * read as a command, Dovecot would create "injected" and delete "victim"),
 * different in size and content for each i; message big_at (from 1) is
 * larger by BIG.  Lines end in CRLF, or in LF alone with bare_lf.  A body
 * never ends in a lone CR: Dovecot drops that byte (see
 * messages_the_server_rewrites). */
#define BIG ((size_t)100 << 10)
static size_t size_base = 300;
static unsigned big_at;
static bool bare_lf;

static size_t
body_size(unsigned i)
{
	return size_base + 53 * i + (i + 1 == big_at ? BIG : 0);
}

static char *
body(unsigned i)
{
	static const char crlf[] = "x1 CREATE injected\r\nx2 DELETE victim\r\n";
	static const char lf[] = "x1 CREATE injected\nx2 DELETE victim\n";
	const char *cmds = bare_lf ? lf : crlf;
	size_t n = body_size(i), k, period = strlen(cmds);
	char *b = malloc(n), head[64];
	int h = snprintf(head, sizeof(head), "Message-Id: <%u@dvfaults>%s", i,
	    bare_lf ? "\n" : "\r\n");

	cr_assert_not_null(b);
	for (k = 0; k < n; k++)
		b[k] = cmds[k % period];
	memcpy(b, head, (size_t)h);
	if (b[n - 1] == '\r')
		b[n - 1] = ' ';
	return b;
}

/* The MULTIAPPEND of n messages with flags and dates; sync: each literal
 * waits for "+".  Returns the answer, or NULL when the connection ended
 * without one. */
static char *
multiappend(struct imapc *c, const char *tag, unsigned n, bool sync)
{
	unsigned i;

	imapc_send(c, "%s APPEND INBOX", tag);
	for (i = 0; i < n; i++) {
		char *b = body(i), *line;

		imapc_send(c, " (\\Flagged $f%u) \"%02u-Mar-2023 10:%02u:00 +0100\" {%zu%s}\r\n",
		    i, i + 1, i, body_size(i), sync ? "" : "+");
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

/* The response without its tagged line (which carries Dovecot's timing). */
static void
drop_tagged(char *r)
{
	*(char *)last_line(r) = '\0';
}

/* \Recent belongs to a session, not to the mailbox. */
static void
drop_recent(char *r)
{
	static const char flag[] = "\\Recent";
	size_t n = sizeof(flag) - 1;
	char *p;

	while ((p = strstr(r, flag)) != NULL) {
		if (p[n] == ' ')
			memmove(p, p + n + 1, strlen(p + n + 1) + 1);
		else if (p > r && p[-1] == ' ')
			memmove(p - 1, p + n, strlen(p + n) + 1);
		else
			memmove(p, p + n, strlen(p + n) + 1);
	}
}

/* LIST's mailbox attributes are Dovecot's to change (\UnMarked comes and
 * goes with its own indexes): only the names are compared. */
static void
drop_list_attributes(char *r)
{
	char *p = r;

	while ((p = strstr(p, "* LIST (")) != NULL) {
		char *end = strchr(p, ')');

		if (end == NULL)
			break;
		memmove(p + 6, end + 1, strlen(end + 1) + 1);
		p += 6;
	}
}

/* What Dovecot holds, seen directly: the mailboxes, and INBOX's UIDs,
 * flags, internal dates and bytes. */
static char *
snapshot(struct imapc *d)
{
	char *list = imapc_command(d, "l", "LIST \"\" *"), *r, *out;

	cr_assert(tagged(list, "l", "OK"), "%s", list);
	cr_assert_null(strstr(list, "injected"), "a body was executed: %s", list);
	cr_assert_not_null(strstr(list, "victim"), "a body was executed: %s", list);
	cr_assert_null(strstr(list, "mappend-staging"), "staging left: %s", list);
	free(imapc_ok(d, "x", "EXAMINE INBOX"));
	r = imapc_ok(d, "y", "UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])");
	free(imapc_ok(d, "z", "UNSELECT"));
	drop_tagged(list);
	drop_list_attributes(list);
	drop_tagged(r);
	drop_recent(r);
	cr_assert_geq(asprintf(&out, "%s%s", list, r), 0);
	free(list);
	free(r);
	return out;
}

/* The journal records left in mappend's spool. */
static size_t
records(void)
{
	char path[400];
	struct dirent *e;
	size_t n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/spool/journal", px.dir);
	if ((d = opendir(path)) == NULL)
		return 0;
	while ((e = readdir(d)) != NULL)
		if (strstr(e->d_name, ".job") != NULL)
			n++;
	closedir(d);
	return n;
}

/* The end of mappend's log, for a failure's report. */
static void
show_log(void)
{
	char *log = proxy_log(&px);
	size_t len = strlen(log);

	cr_log_error("mappend's log ends:\n%s", len > 6000 ? log + len - 6000 : log);
	free(log);
}

/* The FETCH lines of a snapshot (not the bodies), for a failure's report. */
static void
show_uids(const char *name, const char *snap)
{
	const char *p = snap;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	while ((p = strstr(p, " FETCH (UID ")) != NULL) {
		const char *eol = strchr(p, '\n');

		fprintf(f, "*%.*s\n", (int)(eol != NULL ? eol - p - 1 : 80), p);
		p += 12;
	}
	fclose(f);
	cr_log_error("%s:\n%s", name, text);
	free(text);
}

/* snap must be the same as base (snapshots); else the test fails showing
 * both (without the bodies) and mappend's log. */
static void
same_as(const char *base, const char *snap, const char *what, unsigned k,
    const char *when)
{
	size_t at = 0;

	if (strcmp(base, snap) == 0)
		return;
	while (base[at] == snap[at])
		at++;
	at = at > 100 ? at - 100 : 0;
	show_log();
	show_uids("INBOX was", base);
	show_uids("INBOX is", snap);
	cr_log_error("they differ here:\nwas: %.300s\nis:  %.300s", base + at, snap + at);
	cr_assert_fail("%s k=%u: INBOX changed (%s)", what, k, when);
}

/* A new session through mappend (and the relay) works. */
static void
new_session_works(const char *what, unsigned k)
{
	struct imapc c;
	char *r;

	login(&c, px.port);
	r = imapc_command(&c, "n", "STATUS INBOX (MESSAGES)");
	cr_assert(tagged(r, "n", "OK"), "%s k=%u: %s", what, k, r);
	free(r);
	imapc_close(&c);
}

/* Dovecot (opts), the relay in front of it, mappend in front of that with
 * a master user and conf; the user's own messages in INBOX (one \Deleted,
 * which no rollback may take), and the mailbox a body would delete. */
static void
start(const char *opts, const char *conf)
{
	struct imapc d;
	char *all;

	dovecot_start(&dc, opts);
	faultrelay_start(&fr, dc.port);
	cr_assert_geq(asprintf(&all, "master_user = %s\nmaster_password = %s\n%s",
	    dc.master, dc.master_password, conf != NULL ? conf : ""), 0);
	proxy_start(&px, fr.port, all);
	free(all);
	login(&d, dc.port);
	free(imapc_ok(&d, "c", "CREATE victim"));
	free(imapc_ok(&d, "a1", "APPEND INBOX (\\Seen) \"01-Feb-2022 09:00:00 +0000\" "
	    "{23+}\r\nSubject: own 1\r\n\r\nuser1"));
	free(imapc_ok(&d, "a2", "APPEND INBOX (\\Deleted $own) {23+}\r\n"
	    "Subject: own 2\r\n\r\nuser2"));
	free(imapc_ok(&d, "a3", "APPEND INBOX {23+}\r\nSubject: own 3\r\n\r\nuser3"));
	imapc_close(&d);
}

static const char *
action_name(enum faultrelay_action a, bool forward_kth)
{
	switch (a) {
	case FAULTRELAY_DROP:
		return forward_kth ? "drop after the answer" : "drop before the answer";
	case FAULTRELAY_GARBAGE:
		return "garbage";
	case FAULTRELAY_LONGLINE:
		return "long line";
	case FAULTRELAY_STALL:
		return "stall";
	case FAULTRELAY_NONE:
		break;
	}
	return "none";
}

/* After the drop that followed the last answer mappend heard of every
 * message: all N are in INBOX, once each, with their flags. */
static void
all_stored(const char *before, const char *after)
{
	unsigned i;
	char *b;

	cr_assert_eq(count_substr(after, strlen(after), " FETCH (UID "),
	    count_substr(before, strlen(before), " FETCH (UID ") + N, "%s", after);
	for (i = 0; i < N; i++) {
		char id[64];

		snprintf(id, sizeof(id), "Message-Id: <%u@dvfaults>", i);
		cr_assert_eq(count_substr(after, strlen(after), id), 1, "%s", id);
		snprintf(id, sizeof(id), "$f%u", i);
		cr_assert_eq(count_substr(after, strlen(after), id), 1, "%s", id);
		b = body(i);
		cr_assert_not_null(memmem(after, strlen(after), b, body_size(i)),
		    "message %u is not byte for byte what was sent", i);
		free(b);
	}
}

/* The client's MULTIAPPEND of N meets the fault at k; the answer is NO
 * [UNAVAILABLE] (OK when complete: mappend heard every answer), then BYE. */
static void
fault_at(const struct faultrelay_fault *f, const char *what, bool complete)
{
	struct faultrelay_report rep;
	struct imapc c;
	unsigned k = f->k;
	char *r, *line;

	faultrelay_arm(&fr, f);
	login(&c, px.port);
	r = multiappend(&c, "a", N, k % 2 == 0);
	faultrelay_report(&fr, &rep);
	if (r == NULL)
		show_log();
	cr_assert_not_null(r, "%s k=%u: no answer", what, k);
	cr_assert(rep.fired, "%s k=%u: the relay saw %u answers: %s", what, k,
	    rep.answers, r);
	cr_assert_null(strstr(r, "Autologout"), "%s k=%u: %s", what, k, r);
	cr_assert_null(strstr(r, "mappend.999999"), "%s k=%u: %s", what, k, r);
	cr_assert_null(strstr(r, "NIL NIL"), "%s k=%u: %s", what, k, r);
	cr_assert_null(strstr(r, "xxxxxxxx"), "%s k=%u: %.300s", what, k, r);
	if (complete)
		cr_assert(tagged(r, "a", "OK [APPENDUID "), "%s k=%u: %s", what, k, r);
	else
		cr_assert(tagged(r, "a", "NO [UNAVAILABLE]"), "%s k=%u: %s", what, k, r);
	free(r);
	line = imapc_line(&c);
	cr_assert(line != NULL && strncmp(line, "* BYE", 5) == 0,
	    "%s k=%u: %s", what, k, line != NULL ? line : "(none)");
	free(line);
	cr_assert(imapc_wait_closed(&c), "%s k=%u: not closed after BYE", what, k);
	imapc_close(&c);
	/* the rollback went through the relay too */
	cr_assert(complete || rep.accepted >= 2, "%s k=%u: %u connections", what, k,
	    rep.accepted);
}

/*
 * The fault at every k.  The client's literals alternate between {n+}
 * (odd k) and {n} (even k); a long line ends with CRLF for odd k, without
 * for even k.  The relay lets Dovecot store every message it was sent
 * before the fault reaches mappend (wait_idle): the answers after the k-th
 * are lost, so mappend has to find messages k (or k + 1) to N by content,
 * and nothing is stored behind its back later (that race is
 * late_stores_after_the_rollback_looked).  INBOX is compared with what it
 * was before the first k, so a message that turned up late would not pass
 * for the next round's "before".
 */
static void
every_k(enum faultrelay_action action, bool forward_kth)
{
	const char *what = action_name(action, forward_kth);
	struct imapc d;
	char *base, *snap;
	unsigned k;

	start("--legacy", "client_idle_timeout = 1\nupstream_idle_timeout = 2\n");
	login(&d, dc.port);
	base = snapshot(&d);
	for (k = 1; k <= N; k++) {
		struct faultrelay_fault f = { .action = action, .k = k,
		    .forward_kth = forward_kth, .crlf = k % 2 == 1, .wait_idle = true };
		/* mappend heard every answer before the connection went */
		bool complete = forward_kth && k == N;

		snap = snapshot(&d);
		same_as(base, snap, what, k, "before the MULTIAPPEND");
		free(snap);
		fault_at(&f, what, complete);
		snap = snapshot(&d);
		if (complete)
			all_stored(base, snap);
		else
			same_as(base, snap, what, k, "after the NO");
		free(snap);
		cr_assert_eq(records(), 0, "%s k=%u: a journal record is left", what, k);
		new_session_works(what, k);
	}
	if (!forward_kth) {
		/* nothing stored late by the last round either */
		usleep(300 * 1000);
		snap = snapshot(&d);
		same_as(base, snap, what, N, "a moment after the last NO");
		free(snap);
	}
	free(base);
	imapc_close(&d);
}

Test(dovecot_faults, drop_after_the_kth_answer)
{
	every_k(FAULTRELAY_DROP, true);
}

Test(dovecot_faults, drop_instead_of_the_kth_answer)
{
	every_k(FAULTRELAY_DROP, false);
}

Test(dovecot_faults, garbage_instead_of_the_kth_answer)
{
	every_k(FAULTRELAY_GARBAGE, false);
}

Test(dovecot_faults, long_line_instead_of_the_kth_answer)
{
	every_k(FAULTRELAY_LONGLINE, false);
}

/* Silent longer than the client's idle timer: the client waits for its
 * answer and is not idle; the upstream's timer ends it. */
Test(dovecot_faults, stall_instead_of_the_kth_answer)
{
	every_k(FAULTRELAY_STALL, false);
}

/*
 * Dovecot's quota refuses message k (it alone is larger than the quota,
 * the others fit; messages pipelined after it are stored and must go too):
 * the client gets Dovecot's NO [OVERQUOTA] and its session goes on.  For
 * even k the client has INBOX selected (the rollback runs on its own
 * connection), else on a second one through the relay.
 */
Test(dovecot_faults, over_quota_at_k)
{
	static const unsigned ks[] = { 1, 4, 7, 10 };
	struct imapc c, d;
	char *base, *snap;
	size_t i;

	start("--legacy --quota 64k", NULL);
	login(&d, dc.port);
	base = snapshot(&d);
	for (i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) {
		unsigned k = ks[i];
		bool selected = k % 2 == 0;
		struct faultrelay_fault f = { .action = FAULTRELAY_NONE };
		struct faultrelay_report rep;
		char *r, *log, want[64];

		big_at = k;
		faultrelay_arm(&fr, &f);
		login(&c, px.port);
		if (selected)
			free(imapc_ok(&c, "s", "SELECT INBOX"));
		r = multiappend(&c, "a", N, false);
		cr_assert_not_null(r, "k=%u: no answer", k);
		cr_assert(tagged(r, "a", "NO [OVERQUOTA]"), "k=%u: %s", k, r);
		cr_assert_null(strstr(r, "x1 "), "k=%u: %.300s", k, r);
		free(r);
		r = imapc_command(&c, "n", selected ? "FETCH 1:* (FLAGS)" : "NOOP");
		cr_assert(tagged(r, "n", "OK"), "k=%u: %s", k, r);
		if (selected)
			cr_assert(strstr(r, "* 3 FETCH") != NULL && strstr(r, "* 4 FETCH") == NULL,
			    "k=%u: %s", k, r);
		free(r);
		imapc_close(&c);
		faultrelay_report(&fr, &rep);
		cr_assert_geq(rep.answers, k, "k=%u: the relay saw %u answers", k, rep.answers);
		/* the client's own connection, or a second one */
		cr_assert_eq(rep.accepted, selected ? 1 : 2, "k=%u", k);
		log = proxy_log(&px);
		snprintf(want, sizeof(want), "upstream refused message %u of %u", k, N);
		cr_assert_not_null(strstr(log, want), "k=%u: %s", k, log);
		free(log);
		snap = snapshot(&d);
		same_as(base, snap, "quota", k, "after the NO");
		free(snap);
		cr_assert_eq(records(), 0, "k=%u: a journal record is left", k);
		new_session_works("quota", k);
	}
	big_at = 0;
	free(base);
	imapc_close(&d);
}

/* The spool fills up inside message k (a tmpfs counts pages: the bodies
 * are over 20 KiB so that the limit falls inside message k), for {n+} and
 * {n} literals: NO, exactly the rest of each literal is dropped, nothing
 * went upstream, and the session goes on. */
static void
spool_full(bool sync)
{
	const char *what = sync ? "spool full, {n}" : "spool full, {n+}";
	struct imapc c, d;
	unsigned k, i;
	char conf[256], *base, *snap;

	size_base = 20000;
	start("--legacy", NULL);
	proxy_stop(&px);	/* each k has its own spool */
	snprintf(conf, sizeof(conf), "master_user = %s\nmaster_password = %s\n",
	    dc.master, dc.master_password);
	login(&d, dc.port);
	base = snapshot(&d);
	for (k = 1; k <= N; k++) {
		size_t limit = body_size(k - 1) / 2;
		struct faultrelay_fault f = { .action = FAULTRELAY_NONE };
		struct faultrelay_report rep;
		char *r;

		for (i = 0; i + 1 < k; i++)
			limit += body_size(i);
		proxy_start_spool_limited(&px, fr.port, conf, limit);
		faultrelay_arm(&fr, &f);
		login(&c, px.port);
		r = multiappend(&c, "a", N, sync);
		cr_assert_not_null(r, "%s k=%u: no answer", what, k);
		cr_assert(tagged(r, "a", "NO [UNAVAILABLE]") || tagged(r, "a", "NO [LIMIT]"),
		    "%s k=%u: %s", what, k, r);
		cr_assert_null(strstr(r, "x1 "), "%s k=%u: a body line ran: %.200s", what, k, r);
		free(r);
		r = imapc_command(&c, "n", "NOOP");
		cr_assert(tagged(r, "n", "OK"), "%s k=%u: %s", what, k, r);
		cr_assert_null(strstr(r, "x1 "), "%s k=%u: %.200s", what, k, r);
		free(r);
		imapc_close(&c);
		faultrelay_report(&fr, &rep);
		cr_assert_eq(rep.answers, 0, "%s k=%u: %u APPENDs went upstream", what, k,
		    rep.answers);
		snap = snapshot(&d);
		same_as(base, snap, what, k, "after the NO");
		free(snap);
		cr_assert_eq(records(), 0, "%s k=%u: a journal record is left", what, k);
		proxy_stop(&px);
	}
	free(base);
	imapc_close(&d);
}

Test(dovecot_faults, spool_full_at_every_k_nonsync)
{
	spool_full(false);
}

Test(dovecot_faults, spool_full_at_every_k_sync)
{
	spool_full(true);
}

/*
 * Found failing with the relay against Dovecot, fixed since; the
 * assertions are those of the matrix above.
 *
 * A server that stalls after message k and catches up a second after
 * mappend has given up on it (upstream_idle_timeout): the relay holds what
 * mappend sent from the (k+1)-th APPEND on and lets it reach Dovecot then.
 * mappend used to look for the messages of unknown UID once, right after
 * it lost the connection, and what was stored later stayed; now it looks
 * again until the mailbox has been quiet for rollback_settle (5 s).
 */
Test(dovecot_faults, the_server_catches_up_after_the_rollback)
{
	const char *what = "stall, the server catches up";
	struct imapc d;
	char *base, *snap;
	unsigned k;

	start("--legacy", "upstream_idle_timeout = 2\nrollback_settle = 3\n");
	login(&d, dc.port);
	base = snapshot(&d);
	for (k = 1; k < N; k += 4) {
		struct faultrelay_fault f = { .action = FAULTRELAY_STALL, .k = k,
		    .catch_up_ms = 1000 };

		fault_at(&f, what, false);
		snap = snapshot(&d);
		same_as(base, snap, what, k, "after the NO");
		free(snap);
		sleep(2);
		snap = snapshot(&d);
		same_as(base, snap, what, k, "two seconds after the NO");
		free(snap);
		cr_assert_eq(records(), 0, "%s k=%u: a journal record is left", what, k);
	}
	free(base);
	imapc_close(&d);
}

/*
 * The connection is lost early in a MULTIAPPEND of large messages: Dovecot
 * has received more of the pipeline than it has stored, and goes on storing
 * it after mappend's second connection has looked for the messages of
 * unknown UID (SEARCH UID old-UIDNEXT:*): those stayed in INBOX before
 * rollback_settle.  INBOX is compared right after the NO and again a
 * second later.  Nothing is held back here: Dovecot had the bytes before
 * the connection went.  It was a race, lost in some rounds only.
 */
Test(dovecot_faults, late_stores_after_the_rollback_looked)
{
	static const struct { enum faultrelay_action action; bool forward_kth; } kinds[] = {
		{ FAULTRELAY_DROP, false }, { FAULTRELAY_DROP, true },
		{ FAULTRELAY_GARBAGE, false },
	};
	struct faultrelay_fault f = { .k = 1 };
	struct imapc d;
	char *base, *snap, when[64];
	unsigned round;
	size_t i;

	size_base = (size_t)1 << 20;
	start("--legacy", "rollback_settle = 3\n");
	login(&d, dc.port);
	base = snapshot(&d);
	/* k = 1 leaves Dovecot the most to store; a round misses the race at
	 * times, three of each kind rarely do */
	for (round = 1; round <= 3; round++) {
		for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
			const char *what = action_name(kinds[i].action, kinds[i].forward_kth);

			f.action = kinds[i].action;
			f.forward_kth = kinds[i].forward_kth;
			fault_at(&f, what, false);
			snap = snapshot(&d);
			snprintf(when, sizeof(when), "round %u, after the NO", round);
			same_as(base, snap, what, f.k, when);
			free(snap);
			sleep(1);
			snap = snapshot(&d);
			snprintf(when, sizeof(when), "round %u, a second after the NO", round);
			same_as(base, snap, what, f.k, when);
			free(snap);
			cr_assert_eq(records(), 0, "%s: a journal record is left", what);
		}
	}
	free(base);
	imapc_close(&d);
}

/*
 * Dovecot does not store every message byte for byte: a bare LF becomes
 * CRLF (a NUL becomes 0x80, a trailing lone CR is dropped).  A message whose
 * answer was lost was looked for by the size and SHA-256 of the bytes sent,
 * so such a message stayed; it is now compared as fingerprint.h says
 * (without CRs, NUL as 0x80).
 */
Test(dovecot_faults, messages_the_server_rewrites)
{
	struct imapc d;
	char *base, *snap;
	unsigned k;

	bare_lf = true;
	start("--legacy", NULL);
	login(&d, dc.port);
	base = snapshot(&d);
	for (k = 1; k <= N; k += 4) {
		struct faultrelay_fault f = { .action = FAULTRELAY_DROP, .k = k };

		fault_at(&f, "drop before the answer, bare LF", false);
		snap = snapshot(&d);
		same_as(base, snap, "drop before the answer, bare LF", k, "after the NO");
		free(snap);
	}
	free(base);
	imapc_close(&d);
}

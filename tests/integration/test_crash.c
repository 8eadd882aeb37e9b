/*
 * test_crash.c — mappend killed (SIGKILL) in the middle of a MULTIAPPEND,
 * then started again on the same spool: the journal's record is resolved
 * before any client is accepted, as the master user, and the target is
 * exactly as it was before the upload (the client never saw OK); without
 * a master user the record stays and `mappend -R` lists it.  Against the
 * mock (k = 1..N: the upstream stores message k and goes silent, so the
 * crash point is exact, k = N included: all stored, no OK) and against a
 * real Dovecot.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define N 10

static struct dovecot dc;

static void
teardown(void)
{
	harness_teardown();
	dovecot_stop(&dc);
}

TestSuite(crash, .fini = teardown, .timeout = 240);

static void
login(struct imapc *c, int port, const char *user, const char *password)
{
	imapc_connect_login(c, port, user, password);
}

static size_t body_size(unsigned i) { return 4000 + 111 * i; }

/* Send the whole MULTIAPPEND ({n+} literals); no answer is awaited. */
static void
send_multiappend(struct imapc *c, unsigned n, size_t scale)
{
	unsigned i;

	imapc_send(c, "a APPEND INBOX");
	for (i = 0; i < n; i++) {
		size_t size = body_size(i) * scale;
		char *m = make_message(size, i + 7);

		imapc_send(c, " (\\Seen $c%u) {%zu+}\r\n", i, size);
		imapc_send_raw(c, m, size);
		free(m);
	}
	imapc_send(c, "\r\n");
}

/* INBOX's UIDs, flags and sizes, seen directly. */
static char *
snapshot(struct imapc *d)
{
	char *r;

	free(imapc_command(d, "x", "EXAMINE INBOX"));
	r = imapc_command(d, "y", "UID FETCH 1:* (UID FLAGS RFC822.SIZE)");
	free(imapc_command(d, "z", "CLOSE"));
	return r;
}

/* The journal records in mappend's spool. */
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
		if (strstr(e->d_name, ".job") != NULL && strstr(e->d_name, ".tmp") == NULL)
			n++;
	closedir(d);
	return n;
}

static unsigned long
mock_appends(struct imapc *d)
{
	char *r = imapc_command(d, "st", "XMOCK STATS"), *p = strstr(r, "appends=");
	unsigned long n;

	cr_assert_not_null(p, "%s", r);
	n = strtoul(p + 8, NULL, 10);
	free(r);
	return n;
}

/* The crash at message k, then the restart: the target is as before. */
static void
crash_at(unsigned k, bool staging)
{
	struct imapc c, d;
	char *before, *after, *r, *log;
	unsigned long appends;
	unsigned i;

	login(&d, mock.port, "test", "secret");
	before = snapshot(&d);
	appends = mock_appends(&d);
	free(imapc_command(&d, "f", "XMOCK FAULT APPEND-STALL-AFTER %u", k));
	login(&c, px.port, "test", "secret");
	send_multiappend(&c, N, 1);
	for (i = 0; i < 200 && mock_appends(&d) < appends + k; i++)
		usleep(20 * 1000);
	cr_assert_geq(mock_appends(&d), appends + k, "k=%u: the replay did not get "
	    "to message k", k);
	usleep(50 * 1000);
	cr_assert_eq(records(), 1, "k=%u: the upload is in the journal", k);
	proxy_kill(&px);
	imapc_close(&c);
	free(imapc_command(&d, "f", "XMOCK FAULT CLEAR"));

	proxy_restart(&px);
	log = proxy_log(&px);
	cr_assert(strstr(log, "recovered: the upload of 10 messages") != NULL,
	    "k=%u: %s", k, log);
	free(log);
	cr_assert_eq(records(), 0, "k=%u: the record is resolved", k);
	after = snapshot(&d);
	cr_assert_str_eq(after, before, "k=%u: the upload is not undone", k);
	if (staging) {
		r = imapc_command(&d, "l", "LIST \"\" *");
		cr_assert_null(strstr(r, "mappend-staging"), "k=%u: %s", k, r);
		free(r);
	}
	free(before);
	free(after);
	imapc_close(&d);

	/* and it serves again */
	login(&c, px.port, "test", "secret");
	r = imapc_command(&c, "n", "NOOP");
	cr_assert_not_null(strstr(last_line(r), "n OK"), "%s", r);
	free(r);
	imapc_close(&c);
}

static void
start_mock(const char *profile, const char *conf)
{
	const char *args[] = { "--profile", profile, "--master", "boss:bosspw", NULL };

	mock_start(&mock, args);
	proxy_start(&px, mock.port, conf);
}

static const char master_conf[] = "master_user = boss\nmaster_password = bosspw\n";

Test(crash, killed_after_k_answers_every_k)
{
	unsigned k;

	start_mock("legacy", master_conf);
	for (k = 1; k <= N; k++)
		crash_at(k, false);
}

Test(crash, killed_while_staging_without_uidplus)
{
	unsigned k;

	start_mock("nouidplus", master_conf);
	for (k = 1; k <= N; k += 3)
		crash_at(k, true);
}

/* Without a master user the record stays (and says so); -R lists it; a
 * start with a master user resolves it. */
Test(crash, without_master_user_the_record_waits)
{
	struct imapc c, d;
	char *before, *after, *log, line[512];
	FILE *f, *out;
	int status;

	start_mock("legacy", NULL);
	login(&d, mock.port, "test", "secret");
	before = snapshot(&d);
	free(imapc_command(&d, "f", "XMOCK FAULT APPEND-STALL-AFTER 4"));
	login(&c, px.port, "test", "secret");
	send_multiappend(&c, N, 1);
	while (mock_appends(&d) < 4)
		usleep(20 * 1000);
	usleep(50 * 1000);
	proxy_kill(&px);
	imapc_close(&c);
	free(imapc_command(&d, "f", "XMOCK FAULT CLEAR"));

	proxy_restart(&px);
	log = proxy_log(&px);
	cr_assert(strstr(log, "1 upload in the journal wait") != NULL, "%s", log);
	free(log);
	cr_assert_eq(records(), 1);
	snprintf(line, sizeof(line), "'%s' -R -c '%s'", getenv("MAPPEND_BIN"), px.conf);
	out = popen(line, "r");
	cr_assert_not_null(out);
	cr_assert_not_null(fgets(line, sizeof(line), out));
	cr_assert(strncmp(line, "1 upload pending recovery", 25) == 0, "%s", line);
	cr_assert_not_null(fgets(line, sizeof(line), out));
	cr_assert(strstr(line, "user test, mailbox \"INBOX\"") != NULL, "%s", line);
	status = pclose(out);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	/* now with a master user */
	proxy_kill(&px);
	f = fopen(px.conf, "a");
	fputs(master_conf, f);
	fclose(f);
	proxy_restart(&px);
	cr_assert_eq(records(), 0);
	after = snapshot(&d);
	cr_assert_str_eq(after, before);
	free(before);
	free(after);
	imapc_close(&d);
}

/* A real Dovecot: killed while the messages go up, started again. */
Test(crash, dovecot_killed_during_the_replay)
{
	struct imapc c, d;
	char conf[256], *before, *after, *r, *log;
	unsigned i;

	dovecot_start(&dc, "--legacy");
	snprintf(conf, sizeof(conf), "master_user = %s\nmaster_password = %s\n",
	    dc.master, dc.master_password);
	proxy_start(&px, dc.port, conf);
	login(&d, dc.port, dc.user, dc.password);
	before = snapshot(&d);
	login(&c, px.port, dc.user, dc.password);
	/* large enough that the kill lands in the middle */
	send_multiappend(&c, N, 64);
	for (i = 0; i < 500; i++) {
		r = imapc_command(&d, "s", "STATUS INBOX (MESSAGES)");
		if (strstr(r, "MESSAGES 0") == NULL) {
			free(r);
			break;
		}
		free(r);
		usleep(2 * 1000);
	}
	proxy_kill(&px);
	imapc_close(&c);
	r = imapc_command(&d, "s", "STATUS INBOX (MESSAGES)");
	cr_log_info("killed with %s", strstr(r, "MESSAGES"));
	free(r);
	proxy_restart(&px);
	log = proxy_log(&px);
	cr_assert(strstr(log, "recovered: the upload") != NULL ||
	    strstr(log, "recovering") == NULL, "%s", log);
	free(log);
	cr_assert_eq(records(), 0);
	after = snapshot(&d);
	if (strcmp(after, before) != 0) {
		log = proxy_log(&px);
		cr_log_error("mappend's log:\n%s", log);
		free(log);
	}
	cr_assert_str_eq(after, before, "the upload is not undone");
	free(before);
	free(after);
	imapc_close(&d);
}

/*
 * test_log.c — tests for proxy/log.c: line format, timestamps and the
 * journal, level filtering, scrubbing of control characters, truncation.
 * stderr is captured into a temp file.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "capture.h"
#include "log.h"

#define STAMP_RE "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}" \
	"\\.[0-9]{3}[+-][0-9]{2}:[0-9]{2} "
#define STAMP_LEN 30	/* "2026-12-01T16:22:35.123+00:00 " */

/* Checks that every line starts with a timestamp and returns the text
 * without them (static buffer). */
static const char *
strip_stamps(const char *text)
{
	static char out[8192];
	regex_t re;
	size_t o = 0;

	cr_assert_eq(regcomp(&re, STAMP_RE, REG_EXTENDED | REG_NOSUB), 0);
	while (*text != '\0') {
		size_t len = strcspn(text, "\n") + (strchr(text, '\n') ? 1 : 0);

		cr_assert_eq(regexec(&re, text, 0, NULL, 0), 0,
		    "line without a timestamp: %.*s", (int)len, text);
		cr_assert_lt(o + len - STAMP_LEN, sizeof out);
		memcpy(out + o, text + STAMP_LEN, len - STAMP_LEN);
		o += len - STAMP_LEN;
		text += len;
	}
	out[o] = '\0';
	regfree(&re);
	return out;
}

/* What was written, every line's timestamp checked and removed. */
static const char *
capture_end(struct capture *cap)
{
	return strip_stamps(capture_end_raw(cap));
}

static const char *
expect_line(const char *ident, const char *rest)
{
	static char buf[256];

	snprintf(buf, sizeof buf, "%s[%ld]: %s\n", ident, (long)getpid(), rest);
	return buf;
}

Test(log, works_before_init)
{
	struct capture cap;

	cr_assert_eq(log_get_level(), LOG_LEVEL_INFO);
	capture_begin(&cap);
	log_info(0, "hello %d", 42);
	log_debug(0, "not shown");
	cr_assert_str_eq(capture_end(&cap), expect_line("mappend", "info: hello 42"));
}

Test(log, session_id_and_level_names)
{
	struct capture cap;
	char want[512];

	log_init("mytest", LOG_LEVEL_DEBUG, false);
	capture_begin(&cap);
	log_error(1, "e");
	log_warn(42, "w");
	log_info(18446744073709551615ULL, "i");
	log_debug(0, "d");
	snprintf(want, sizeof want,
	    "mytest[%ld]: error: s1: e\n"
	    "mytest[%ld]: warning: s42: w\n"
	    "mytest[%ld]: info: s18446744073709551615: i\n"
	    "mytest[%ld]: debug: d\n",
	    (long)getpid(), (long)getpid(), (long)getpid(), (long)getpid());
	cr_assert_str_eq(capture_end(&cap), want);
}

Test(log, level_filtering)
{
	struct capture cap;
	char want[512];

	log_init("t", LOG_LEVEL_WARNING, false);
	cr_assert_eq(log_get_level(), LOG_LEVEL_WARNING);
	capture_begin(&cap);
	log_debug(0, "debug");
	log_info(0, "info");
	log_warn(0, "warn");
	log_error(0, "error");
	log_set_level(LOG_LEVEL_ERROR);
	log_warn(0, "warn2");
	log_error(0, "error2");
	snprintf(want, sizeof want,
	    "t[%ld]: warning: warn\nt[%ld]: error: error\nt[%ld]: error: error2\n",
	    (long)getpid(), (long)getpid(), (long)getpid());
	cr_assert_str_eq(capture_end(&cap), want);
}

Test(log, set_level_ignores_invalid)
{
	log_set_level(LOG_LEVEL_DEBUG);
	log_set_level((enum log_level)17);
	cr_assert_eq(log_get_level(), LOG_LEVEL_DEBUG);
}

Test(log, level_parse)
{
	cr_assert_eq(log_level_parse("error"), LOG_LEVEL_ERROR);
	cr_assert_eq(log_level_parse("warning"), LOG_LEVEL_WARNING);
	cr_assert_eq(log_level_parse("info"), LOG_LEVEL_INFO);
	cr_assert_eq(log_level_parse("debug"), LOG_LEVEL_DEBUG);
	cr_assert_eq(log_level_parse("warn"), -1);
	cr_assert_eq(log_level_parse(""), -1);
	cr_assert_eq(log_level_parse("INFO "), -1);
	cr_assert_eq(log_level_parse(NULL), -1);
}

Test(log, scrubs_control_characters)
{
	struct capture cap;

	log_init("t", LOG_LEVEL_INFO, false);
	capture_begin(&cap);
	/* a peer's "user name" trying to start a second, forged line */
	log_info(7, "login %s", "bob\r\nt[1]: info: admin logged in\x1b[0m\x7f\t\xc3\xa9");
	cr_assert_str_eq(capture_end(&cap),
	    expect_line("t", "info: s7: login bob??t[1]: info: admin logged in?[0m??\xc3\xa9"));
}

Test(log, truncates_long_lines_in_one_write)
{
	struct capture cap;
	static char big[5000];
	const char *out;
	size_t len;

	memset(big, 'x', sizeof big - 1);
	log_init("t", LOG_LEVEL_INFO, false);
	capture_begin(&cap);
	log_info(3, "%s", big);
	log_info(0, "after");
	out = capture_end(&cap);
	len = strcspn(out, "\n");
	cr_assert_lt(len + STAMP_LEN, 2048);
	cr_assert_gt(len + STAMP_LEN, 2000);
	cr_assert_eq(strncmp(out + len - 4, "x...", 4), 0);
	cr_assert_str_eq(out + len + 1, expect_line("t", "info: after"));
}

Test(log, line_that_just_fits_is_not_truncated)
{
	struct capture cap;
	char msg[2048];
	char prefix[64];
	const char *out;
	size_t room;

	log_init("t", LOG_LEVEL_INFO, false);
	/* the longest message that still fits: 2048 minus timestamp, prefix,
	 * newline, NUL */
	room = 2048 - STAMP_LEN - (size_t)snprintf(prefix, sizeof prefix,
	    "t[%ld]: info: ", (long)getpid()) - 2;
	memset(msg, 'y', room);
	msg[room] = '\0';
	capture_begin(&cap);
	log_info(0, "%s", msg);
	out = capture_end(&cap);
	cr_assert_eq(strlen(out), strlen(prefix) + room + 1);
	cr_assert_eq(strstr(out, "..."), NULL);
}

Test(log, preserves_errno)
{
	struct capture cap;

	log_init("t", LOG_LEVEL_INFO, false);
	capture_begin(&cap);
	errno = ENOENT;
	log_info(0, "open failed: %m");
	cr_assert_eq(errno, ENOENT);
	errno = EACCES;
	log_debug(0, "dropped");
	cr_assert_eq(errno, EACCES);
	cr_assert_str_eq(capture_end(&cap),
	    expect_line("t", "info: open failed: No such file or directory"));
}

Test(log, syslog_mode_leaves_stderr_alone)
{
	struct capture cap;

	log_init("mappend-test", LOG_LEVEL_INFO, true);
	capture_begin(&cap);
	log_info(0, "to syslog (or nowhere, without a syslog daemon)");
	cr_assert_str_eq(capture_end(&cap), "");
	log_init("t", LOG_LEVEL_INFO, false);
}

Test(log, time_format_utc_and_offsets)
{
	struct timespec ts = { 1796142155, 123456789 };	/* 2026-12-01T16:22:35Z */
	char buf[64];
	char *old = getenv("TZ") != NULL ? strdup(getenv("TZ")) : NULL;

	setenv("TZ", "UTC0", 1);
	tzset();
	cr_assert_eq(log_format_time(&ts, buf, sizeof buf), 29);
	cr_assert_str_eq(buf, "2026-12-01T16:22:35.123+00:00");
	/* POSIX TZ: the sign is the other way round */
	setenv("TZ", "IST-5:30", 1);
	tzset();
	log_format_time(&ts, buf, sizeof buf);
	cr_assert_str_eq(buf, "2026-12-01T21:52:35.123+05:30");
	setenv("TZ", "NST3:30", 1);
	tzset();
	log_format_time(&ts, buf, sizeof buf);
	cr_assert_str_eq(buf, "2026-12-01T12:52:35.123-03:30");
	ts.tv_nsec = 999999999;	/* milliseconds are cut, never rounded up */
	log_format_time(&ts, buf, sizeof buf);
	cr_assert_str_eq(buf, "2026-12-01T12:52:35.999-03:30");
	cr_assert_eq(log_format_time(&ts, buf, 29), -1, "29 bytes leave no room for the NUL");
	if (old != NULL)
		setenv("TZ", old, 1);
	else
		unsetenv("TZ");
	tzset();
	free(old);
}

Test(log, stderr_lines_carry_the_current_time)
{
	struct capture cap;
	struct timespec before, after;
	char lo[64], hi[64];
	const char *out;

	unsetenv("JOURNAL_STREAM");
	log_init("t", LOG_LEVEL_INFO, false);
	capture_begin(&cap);
	clock_gettime(CLOCK_REALTIME, &before);
	log_info(0, "now");
	clock_gettime(CLOCK_REALTIME, &after);
	out = capture_end_raw(&cap);
	before.tv_nsec -= before.tv_nsec % 1000000;
	log_format_time(&before, lo, sizeof lo);
	log_format_time(&after, hi, sizeof hi);
	/* same offset, so the strings order like the times */
	cr_assert_geq(strncmp(out, lo, 29), 0, "%s before %s", out, lo);
	cr_assert_leq(strncmp(out, hi, 29), 0, "%s after %s", out, hi);
	cr_assert_str_eq(strip_stamps(out), expect_line("t", "info: now"));
}

/* JOURNAL_STREAM names the captured file: lines go out without a time. */
static void
set_journal_stream(int fd, long ino_delta)
{
	struct stat st;
	char v[64];

	cr_assert_eq(fstat(fd, &st), 0);
	snprintf(v, sizeof v, "%llu:%llu", (unsigned long long)st.st_dev,
	    (unsigned long long)st.st_ino + (unsigned long long)ino_delta);
	setenv("JOURNAL_STREAM", v, 1);
}

Test(log, no_timestamps_under_the_journal)
{
	struct capture cap;

	capture_begin(&cap);
	set_journal_stream(cap.fd, 0);
	cr_assert(log_stderr_is_journal());
	log_init("t", LOG_LEVEL_INFO, false);
	log_info(0, "journal");
	unsetenv("JOURNAL_STREAM");
	log_init("t", LOG_LEVEL_INFO, false);
	cr_assert_str_eq(capture_end_raw(&cap), expect_line("t", "info: journal"));
}

Test(log, journal_stream_of_another_file_is_ignored)
{
	struct capture cap;

	/* a child of a journal-logged service whose stderr went elsewhere */
	capture_begin(&cap);
	set_journal_stream(cap.fd, 1);
	cr_assert(!log_stderr_is_journal());
	log_init("t", LOG_LEVEL_INFO, false);
	log_info(0, "file");
	setenv("JOURNAL_STREAM", "garbage", 1);
	cr_assert(!log_stderr_is_journal());
	setenv("JOURNAL_STREAM", "1:2:3", 1);
	cr_assert(!log_stderr_is_journal());
	unsetenv("JOURNAL_STREAM");
	cr_assert_str_eq(capture_end(&cap), expect_line("t", "info: file"));
}

Test(log, syslog_and_stderr_while_starting)
{
	struct capture cap;

	unsetenv("JOURNAL_STREAM");
	log_init("mappend-test", LOG_LEVEL_INFO, true);
	log_also_stderr(true);
	capture_begin(&cap);
	log_error(0, "listen 127.0.0.1:143: Address already in use");
	log_also_stderr(false);
	log_info(0, "detached: syslog only");
	cr_assert_str_eq(capture_end(&cap), expect_line("mappend-test",
	    "error: listen 127.0.0.1:143: Address already in use"));
	log_init("t", LOG_LEVEL_INFO, false);
}

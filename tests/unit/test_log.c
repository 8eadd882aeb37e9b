/*
 * test_log.c — tests for proxy/log.c: line format, level filtering, scrubbing
 * of control characters, truncation.  stderr is captured into a temp file.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

struct capture {
	int saved_stderr;
	int fd;
	char path[32];
};

static void
capture_begin(struct capture *cap)
{
	snprintf(cap->path, sizeof cap->path, "/tmp/mappend-log-XXXXXX");
	cap->fd = mkstemp(cap->path);
	cr_assert(cap->fd >= 0, "mkstemp: %s", strerror(errno));
	fflush(stderr);
	cap->saved_stderr = dup(STDERR_FILENO);
	cr_assert(cap->saved_stderr >= 0);
	cr_assert(dup2(cap->fd, STDERR_FILENO) >= 0);
}

/* Restores stderr and returns what was written (static buffer). */
static const char *
capture_end(struct capture *cap)
{
	static char buf[8192];
	ssize_t n;

	dup2(cap->saved_stderr, STDERR_FILENO);
	close(cap->saved_stderr);
	lseek(cap->fd, 0, SEEK_SET);
	n = read(cap->fd, buf, sizeof buf - 1);
	close(cap->fd);
	unlink(cap->path);
	cr_assert(n >= 0);
	buf[n] = '\0';
	return buf;
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
	cr_assert_lt(len, 2048);
	cr_assert_gt(len, 2000);
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
	/* the longest message that still fits: 2048 minus prefix, newline, NUL */
	room = 2048 - (size_t)snprintf(prefix, sizeof prefix, "t[%ld]: info: ",
	    (long)getpid()) - 2;
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

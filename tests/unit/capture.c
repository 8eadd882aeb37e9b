/*
 * capture.c — stderr captured into a temp file for the unit tests.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture.h"

void
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

const char *
capture_end_raw(struct capture *cap)
{
	static char buf[16384];
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

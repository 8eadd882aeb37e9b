/*
 * capture.h — what the unit tests' code writes to stderr (log lines),
 * captured into a temp file.
 */
#ifndef MAPPEND_TEST_CAPTURE_H
#define MAPPEND_TEST_CAPTURE_H

struct capture {
	int saved_stderr;
	int fd;
	char path[32];
};

/* stderr goes to a temp file from here on. */
void capture_begin(struct capture *);
/* stderr back; what was written, as is (a static buffer, 16 KiB at most). */
const char *capture_end_raw(struct capture *);

#endif

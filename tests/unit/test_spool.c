/* test_spool.c — spool files and the global budget. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "log.h"
#include "spool.h"

static char dir[64];

static void
setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/mappend-spool.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	log_init("test", LOG_LEVEL_ERROR, false);
	cr_assert_eq(spool_init(dir, 1000), 0);
}

static void
teardown(void)
{
	rmdir(dir);
}

static size_t
entries(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

TestSuite(spool, .init = setup, .fini = teardown);

Test(spool, write_and_read_back)
{
	struct spool *sp = spool_open();
	struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
	char buf[32];

	cr_assert_not_null(sp);
	/* the file never has a name in the directory */
	cr_assert_eq(entries(), 0);
	evbuffer_add(in, "hello ", 6);
	evbuffer_add(in, "world, more", 11);
	cr_assert_eq(spool_write(sp, in, 11, NULL), 0);
	cr_assert_eq(evbuffer_get_length(in), 6, "only what was asked is taken");
	cr_assert_eq(spool_size(sp), 11);
	cr_assert_eq(spool_read(sp, 6, 5, out), 0);
	cr_assert_eq(evbuffer_remove(out, buf, sizeof(buf)), 5);
	cr_assert_eq(memcmp(buf, "world", 5), 0);
	cr_assert_eq(spool_pread(sp, 0, buf, 5), 0);
	cr_assert_eq(memcmp(buf, "hello", 5), 0);
	cr_assert_eq(spool_pread(sp, 8, buf, 10), -1, "beyond the end");
	spool_close(sp);
	cr_assert_eq(entries(), 0);
	evbuffer_free(in);
	evbuffer_free(out);
}

Test(spool, budget)
{
	cr_assert_eq(spool_reserve(600), 0);
	cr_assert_eq(spool_reserve(401), -1);
	cr_assert_eq(spool_reserve(400), 0);
	cr_assert_eq(spool_reserve(1), -1);
	spool_release(1000);
	cr_assert_eq(spool_reserve(1000), 0);
	cr_assert_eq(spool_reserve(UINT64_MAX), -1, "no overflow");
	spool_release(1000);
}

/*
 * A write that fails half-way (here: the file size limit, as a full disk
 * would) still takes exactly n bytes out of the input, so the byte after
 * the literal is the next one read, never a byte of the literal.
 */
Test(spool, failed_write_consumes_exactly_n, .init = setup, .fini = teardown)
{
	struct rlimit lim = { 1000, 1000 };
	struct evbuffer *in = evbuffer_new();
	struct spool *sp = spool_open();
	char body[3000], next[16];

	cr_assert_not_null(sp);
	memset(body, 'x', sizeof(body));
	evbuffer_add(in, body, sizeof(body));
	evbuffer_add(in, "a1 NOOP\r\n", 9);
	signal(SIGXFSZ, SIG_IGN);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
	cr_assert_eq(spool_write(sp, in, sizeof(body), NULL), -1);
	cr_assert_eq(errno, EFBIG);
	cr_assert_eq(spool_size(sp), 1000, "the partial write is kept");
	cr_assert_eq(evbuffer_get_length(in), 9);
	cr_assert_eq(evbuffer_remove(in, next, sizeof(next)), 9);
	cr_assert(memcmp(next, "a1 NOOP\r\n", 9) == 0);
	spool_close(sp);
	evbuffer_free(in);
}

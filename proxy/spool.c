/*
 * spool.c — spool files and the global spool budget.
 *
 * Files are created with O_TMPFILE where the file system supports it, so
 * that they never have a name and vanish when closed, whatever path the
 * process takes (crash included); elsewhere a mkstemp name is unlinked at
 * once.  Writes and reads are plain system calls on the event loop: they
 * move at most one read's worth of bytes (256 KiB) at a time into or out of
 * the page cache, and nothing here calls fsync.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "fingerprint.h"
#include "log.h"
#include "metrics.h"
#include "spool.h"

#define IOV_MAX_USED 16

struct spool {
	int fd;
	uint64_t size;
};

static char spool_dir[4096];
static uint64_t budget, in_use;
static int use_tmpfile = 1;

int
spool_init(const char *dir, uint64_t total_budget)
{
	struct stat st;
	struct spool *probe;

	snprintf(spool_dir, sizeof(spool_dir), "%s", dir);
	budget = total_budget;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		log_error(0, "spool directory %s: %s", dir, strerror(errno));
		return -1;
	}
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		log_error(0, "spool directory %s: not a directory", dir);
		return -1;
	}
	if ((st.st_mode & 0077) != 0)
		log_warn(0, "spool directory %s is accessible to others (mode %o); "
		    "mappend's files are 0600 anyway", dir, st.st_mode & 0777);
	if ((probe = spool_open()) == NULL) {
		log_error(0, "cannot create files in spool directory %s: %s", dir,
		    strerror(errno));
		return -1;
	}
	spool_close(probe);
	log_info(0, "spooling to %s (%s)", dir,
	    use_tmpfile ? "unnamed O_TMPFILE files" : "files unlinked at creation");
	return 0;
}

struct spool *
spool_open(void)
{
	struct spool *sp;
	int fd = -1;

	if (use_tmpfile) {
		fd = open(spool_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL))
			use_tmpfile = 0;
		else if (fd < 0)
			return NULL;
	}
	if (fd < 0) {
		char path[4200];

		snprintf(path, sizeof(path), "%s/mappend.XXXXXX", spool_dir);
		if ((fd = mkostemp(path, O_CLOEXEC)) < 0)
			return NULL;
		unlink(path);
	}
	if ((sp = calloc(1, sizeof(*sp))) == NULL) {
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
	sp->fd = fd;
	return sp;
}

/* Add the first n bytes of iov to fp. */
static void
take_fingerprint(struct fingerprinter *fp, const struct iovec *iov, int nv, size_t n)
{
	int i;

	for (i = 0; i < nv && n > 0; i++) {
		size_t k = iov[i].iov_len < n ? iov[i].iov_len : n;

		fingerprint_add(fp, iov[i].iov_base, k);
		n -= k;
	}
}

/* Write up to n bytes of in to the file, draining what was written. */
static int
write_some(struct spool *sp, struct evbuffer *in, size_t n, struct fingerprinter *fp)
{
	while (n > 0) {
		struct evbuffer_iovec v[IOV_MAX_USED];
		struct iovec iov[IOV_MAX_USED];
		int i, nv = evbuffer_peek(in, (ssize_t)n, NULL, v, IOV_MAX_USED);
		size_t want = 0;
		ssize_t w;

		if (nv <= 0) {
			errno = EINVAL;
			return -1;
		}
		if (nv > IOV_MAX_USED)
			nv = IOV_MAX_USED;
		for (i = 0; i < nv; i++) {
			size_t len = v[i].iov_len;

			if (want + len > n)
				len = n - want;
			iov[i].iov_base = v[i].iov_base;
			iov[i].iov_len = len;
			want += len;
		}
		w = pwritev(sp->fd, iov, nv, (off_t)sp->size);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (w == 0) {
			errno = ENOSPC;
			return -1;
		}
		if (fp != NULL)
			take_fingerprint(fp, iov, nv, (size_t)w);
		evbuffer_drain(in, (size_t)w);
		sp->size += (uint64_t)w;
		n -= (size_t)w;
	}
	return 0;
}

int
spool_write(struct spool *sp, struct evbuffer *in, size_t n, struct fingerprinter *fp)
{
	size_t before = evbuffer_get_length(in), done;
	int err;

	if (write_some(sp, in, n, fp) == 0)
		return 0;
	/* exactly n bytes leave in, whatever was written: the caller counts
	 * them as consumed, and one byte more or less would turn message
	 * content into commands */
	err = errno;
	done = before - evbuffer_get_length(in);
	evbuffer_drain(in, n - done);
	errno = err;
	return -1;
}

uint64_t
spool_size(const struct spool *sp)
{
	return sp->size;
}

int
spool_pread(struct spool *sp, uint64_t off, void *buf, size_t n)
{
	char *p = buf;

	while (n > 0) {
		ssize_t r = pread(sp->fd, p, n, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EIO;	/* the file is shorter than we wrote */
			return -1;
		}
		p += r;
		off += (uint64_t)r;
		n -= (size_t)r;
	}
	return 0;
}

int
spool_read(struct spool *sp, uint64_t off, size_t n, struct evbuffer *out)
{
	struct evbuffer_iovec v[1];

	if (n == 0)
		return 0;
	if (evbuffer_reserve_space(out, (ssize_t)n, v, 1) != 1 || v[0].iov_len < n) {
		errno = ENOMEM;
		return -1;
	}
	if (spool_pread(sp, off, v[0].iov_base, n) != 0)
		return -1;
	v[0].iov_len = n;
	return evbuffer_commit_space(out, v, 1);
}

void
spool_close(struct spool *sp)
{
	if (sp == NULL)
		return;
	close(sp->fd);
	free(sp);
}

int
spool_reserve(uint64_t n)
{
	if (n > budget || in_use > budget - n)
		return -1;
	in_use += n;
	metrics_spool_bytes((int64_t)n);
	return 0;
}

void
spool_release(uint64_t n)
{
	if (n > in_use)
		n = in_use;
	in_use -= n;
	metrics_spool_bytes(-(int64_t)n);
}

void
spool_set_budget(uint64_t total_budget)
{
	/* what is reserved stays so; new reservations are refused until
	 * enough is released */
	budget = total_budget;
}

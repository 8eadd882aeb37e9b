/*
 * pidfile.c — the pid_file.  It is written after the switch to the run-as
 * user, by that user, so that the same user can remove it at exit: its
 * directory must be writable by it (systemd: RuntimeDirectory=).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pidfile.h"

/* The pid in path: > 0, 0 when there is none (absent, empty, garbage), -1
 * with errno when it cannot be read. */
static pid_t
pidfile_read(const char *path)
{
	char buf[32];
	ssize_t n;
	long v;
	char *end;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	errno = 0;
	v = strtol(buf, &end, 10);
	if (errno != 0 || end == buf || (*end != '\n' && *end != '\0') || v <= 0 ||
	    v != (pid_t)v)
		return 0;
	return (pid_t)v;
}

/* The process's name from /proc, for a message that says what runs. */
static void
process_name(pid_t pid, char *out, size_t len)
{
	char path[64];
	FILE *f;

	snprintf(out, len, "?");
	snprintf(path, sizeof path, "/proc/%ld/comm", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return;
	if (fgets(out, (int)len, f) != NULL)
		out[strcspn(out, "\n")] = '\0';
	fclose(f);
}

int
pidfile_check(const char *path, pid_t *pidp, char *err, size_t errlen)
{
	pid_t pid = pidfile_read(path);
	char name[64];

	if (pidp != NULL)
		*pidp = 0;
	if (pid < 0) {
		snprintf(err, errlen, "pid_file %s: %s", path, strerror(errno));
		return -1;
	}
	if (pid == 0 || pid == getpid())
		return 0;
	/* EPERM: it exists, it just belongs to someone else */
	if (kill(pid, 0) != 0 && errno != EPERM)
		return 0;
	if (pidp != NULL)
		*pidp = pid;
	process_name(pid, name, sizeof name);
	snprintf(err, errlen, "pid_file %s names process %ld (%s), which is "
	    "running: is mappend already running with this configuration?  Stop "
	    "it first (or remove %s if that process is not mappend)", path,
	    (long)pid, name, path);
	return -1;
}

int
pidfile_write(const char *path, char *err, size_t errlen)
{
	char buf[32];
	int fd, n;

	/* O_NOFOLLOW: a link planted in a shared directory must not make us
	 * truncate another file */
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, errlen, "pid_file %s: %s", path, strerror(errno));
		return -1;
	}
	fchmod(fd, 0644);	/* readable whatever the umask (UMask=0077) */
	n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
	errno = 0;
	if (write(fd, buf, (size_t)n) != n) {
		snprintf(err, errlen, "pid_file %s: %s", path,
		    errno != 0 ? strerror(errno) : "short write");
		close(fd);
		unlink(path);
		return -1;
	}
	if (close(fd) != 0) {
		snprintf(err, errlen, "pid_file %s: %s", path, strerror(errno));
		unlink(path);
		return -1;
	}
	return 0;
}

int
pidfile_remove(const char *path)
{
	/* another instance may have taken the file over: leave its pid alone */
	if (pidfile_read(path) != getpid())
		return 0;
	return unlink(path);
}

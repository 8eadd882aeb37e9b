/*
 * proc.c — what /proc says of a proxy process: CPU time, page faults,
 * memory, bytes read; which process is nginx's worker; the machine.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

/* The fields after "pid (comm) " of /proc/pid/stat, or false. */
static bool
read_stat(pid_t pid, char *buf, size_t n, const char **rest)
{
	char path[64];
	const char *p;
	size_t got;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return false;
	got = fread(buf, 1, n - 1, f);
	fclose(f);
	buf[got] = '\0';
	if ((p = strrchr(buf, ')')) == NULL)
		return false;
	*rest = p + 1;
	return true;
}

/*
 * sum_exec_runtime (the first field of /proc/pid/task/tid/schedstat, in
 * ns) of every thread: the CPU time the scheduler counted, which
 * utime + stime only give in clock ticks (10 ms).  -1 when not available.
 */
static double
run_time_s(pid_t pid)
{
	char path[64], line[128];
	struct dirent *d;
	double sum = 0;
	bool any = false;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%ld/task", (long)pid);
	if ((dir = opendir(path)) == NULL)
		return -1;
	while ((d = readdir(dir)) != NULL) {
		char tpath[300];
		FILE *f;

		if (d->d_name[0] < '0' || d->d_name[0] > '9')
			continue;
		snprintf(tpath, sizeof(tpath), "/proc/%ld/task/%s/schedstat",
		    (long)pid, d->d_name);
		if ((f = fopen(tpath, "r")) == NULL)
			continue;
		if (fgets(line, sizeof(line), f) != NULL) {
			sum += strtod(line, NULL) / 1e9;
			any = true;
		}
		fclose(f);
	}
	closedir(dir);
	return any ? sum : -1;
}

/* utime + stime, page faults and the run time of a process. */
void
proc_sample(pid_t pid, struct proc_sample *s)
{
	char buf[1024];
	const char *p;
	unsigned long ut = 0, st = 0;

	memset(s, 0, sizeof(*s));
	if (!read_stat(pid, buf, sizeof(buf), &p) ||
	    sscanf(p, " %*c %*d %*d %*d %*d %*d %*u %lu %*u %lu %*u %lu %lu",
	    &s->minflt, &s->majflt, &ut, &st) != 4)
		die("/proc/%ld/stat: %s (did the proxy exit?)", (long)pid,
		    strerror(errno));
	s->cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
	s->run_s = run_time_s(pid);
}

/* A "Key:   N kB" field of /proc/pid/status in KiB, or -1. */
long
proc_status_kb(pid_t pid, const char *key)
{
	char path[64], line[256];
	size_t kl = strlen(key);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		die("%s: %s (did the proxy exit?)", path, strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			v = strtol(line + kl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* rchar of /proc/pid/io, or -1 (e.g. no ptrace rights). */
int64_t
proc_rchar(pid_t pid)
{
	char path[64], line[128];
	int64_t v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/io", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "rchar:", 6) == 0) {
			v = strtoll(line + 6, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* Reset the peak RSS (VmHWM) to the current RSS: "5" > clear_refs
 * (Linux >= 4.0; needs ptrace rights over the process). */
bool
reset_hwm(pid_t pid)
{
	char path[64];
	bool ok;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/clear_refs", (long)pid);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	ok = fd != -1 && write(fd, "5", 1) == 1;
	if (fd != -1)
		close(fd);
	return ok;
}

/* Whether pid is a child of master whose title is nginx's worker's (and
 * not that of a worker shutting down after a reload). */
static bool
is_worker(pid_t pid, pid_t master)
{
	char buf[1024], path[64], title[128];
	const char *p;
	long ppid;
	size_t n;
	FILE *f;

	if (!read_stat(pid, buf, sizeof(buf), &p) ||
	    sscanf(p, " %*c %ld", &ppid) != 1 || ppid != (long)master)
		return false;
	snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return false;
	n = fread(title, 1, sizeof(title) - 1, f);
	fclose(f);
	title[n] = '\0';
	return strncmp(title, "nginx: worker process", 21) == 0 &&
	    strstr(title, "shutting down") == NULL;
}

/* nginx's (only) worker process, or 0 while there is not exactly one. */
pid_t
nginx_worker(pid_t master)
{
	struct dirent *d;
	pid_t found = 0;
	int count = 0;
	DIR *dir;

	if ((dir = opendir("/proc")) == NULL)
		die("/proc: %s", strerror(errno));
	while ((d = readdir(dir)) != NULL) {
		pid_t pid;

		if (d->d_name[0] < '1' || d->d_name[0] > '9')
			continue;
		pid = (pid_t)atol(d->d_name);
		if (is_worker(pid, master)) {
			found = pid;
			count++;
		}
	}
	closedir(dir);
	return count == 1 ? found : 0;
}

/*
 * A fresh worker: SIGHUP makes the master read its configuration again,
 * start a new worker (a fork of the master: none of the old worker's heap)
 * and let the old one finish.  Waits until the old worker is gone.
 */
pid_t
nginx_new_worker(pid_t master)
{
	pid_t old = nginx_worker(master), now = 0;
	int i;

	if (kill(master, SIGHUP) == -1)
		die("nginx master %ld: %s", (long)master, strerror(errno));
	for (i = 0; i < 200; i++) {
		sleep_ms(50);
		now = nginx_worker(master);
		if (now != 0 && now != old && (old == 0 || kill(old, 0) == -1))
			return now;
	}
	die("nginx: no new worker process 10 s after SIGHUP (old worker %ld, "
	    "now %ld)", (long)old, (long)now);
}

void
loadavg(char *out, size_t n)
{
	FILE *f = fopen("/proc/loadavg", "r");

	snprintf(out, n, "?");
	if (f != NULL) {
		if (fgets(out, (int)n, f) != NULL)
			out[strcspn(out, "\n")] = '\0';
		fclose(f);
	}
}

void
cpu_model(char *out, size_t n)
{
	char line[512];
	FILE *f = fopen("/proc/cpuinfo", "r");

	snprintf(out, n, "unknown");
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "model name", 10) == 0) {
			char *v = strchr(line, ':');

			if (v != NULL) {
				v += strspn(v + 1, " \t") + 1;
				v[strcspn(v, "\n")] = '\0';
				snprintf(out, n, "%s", v);
			}
			break;
		}
	fclose(f);
}

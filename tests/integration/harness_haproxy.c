/*
 * harness_haproxy.c — a private HAProxy for the PROXY protocol tests: a
 * generated configuration in a temp dir, run in the foreground (-db), its
 * frontends on sockets the harness bound on 127.0.0.1:0 and passed down by
 * descriptor (see harness_haproxy.h for why).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness_haproxy.h"

/* The first descriptor HAProxy finds its frontends at: fd@3, fd@4, ... */
#define FIRST_FD 3

/* $HAPROXY_BIN, or haproxy in PATH or the sbin directories (not in an
 * unprivileged user's PATH on Debian); NULL when there is none. */
static const char *
find_haproxy(void)
{
	static char found[4096];
	const char *env = getenv("HAPROXY_BIN");
	char *dirs, *dir, *save = NULL;
	const char *path = getenv("PATH");

	if (env != NULL && *env != '\0') {
		cr_assert_eq(access(env, X_OK), 0, "HAPROXY_BIN=%s: %s", env,
		    strerror(errno));
		return env;
	}
	if (asprintf(&dirs, "%s:/usr/sbin:/usr/local/sbin:/sbin",
	    path != NULL ? path : "/usr/bin:/bin") < 0)
		return NULL;
	for (dir = strtok_r(dirs, ":", &save); dir != NULL;
	    dir = strtok_r(NULL, ":", &save)) {
		snprintf(found, sizeof(found), "%s/haproxy", dir);
		if (access(found, X_OK) == 0) {
			free(dirs);
			return found;
		}
	}
	free(dirs);
	return NULL;
}

/* A socket listening on 127.0.0.1, port chosen by the kernel. */
static int
listen_loopback(int *port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0,
	    "bind 127.0.0.1:0: %s", strerror(errno));
	cr_assert_eq(listen(fd, 64), 0, "listen: %s", strerror(errno));
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

static void
write_config(struct haproxy *h, const char *const *servers, const char *extra)
{
	FILE *f = fopen(h->conf, "w");
	size_t i;

	cr_assert_not_null(f, "%s: %s", h->conf, strerror(errno));
	/* one thread: the machine is shared; log each connection to stderr;
	 * a unique id for every connection, for proxy-v2-options unique-id */
	fprintf(f, "global\n"
	    "    nbthread 1\n"
	    "    maxconn 256\n"
	    "    log stderr format raw local0 info\n"
	    "defaults\n"
	    "    mode tcp\n"
	    "    log global\n"
	    "    option tcplog\n"
	    "    timeout connect 5s\n"
	    "    timeout client 60s\n"
	    "    timeout server 60s\n"
	    "    unique-id-format %%{+X}o\\ %%ci:%%cp_%%fi:%%fp_%%Ts_%%rt:%%pid\n");
	for (i = 0; i < h->n; i++)
		fprintf(f, "frontend f%zu\n"
		    "    bind fd@%zu\n"
		    "    default_backend b%zu\n"
		    "backend b%zu\n"
		    "    server s%zu %s\n%s",
		    i, FIRST_FD + i, i, i, i, servers[i], extra != NULL ? extra : "");
	fclose(f);
}

/* Run haproxy with args; the listening sockets become its descriptors 3,
 * 4, ...; stdout and stderr go to h->log; it dies with the test. */
static pid_t
spawn(struct haproxy *h, const char *bin, const int *fds, const char *mode)
{
	const char *argv[] = { bin, mode, "-f", h->conf, NULL };
	int high[HAPROXY_MAX_FRONTENDS], fd;
	pid_t pid = fork();
	size_t i;

	cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
	if (pid > 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* out of the way first, so that no dup2 below lands on a source */
	for (i = 0; i < h->n; i++)
		high[i] = fcntl(fds[i], F_DUPFD, 100);
	for (i = 0; i < h->n; i++) {
		dup2(high[i], (int)(FIRST_FD + i));	/* without FD_CLOEXEC */
		close(high[i]);
	}
	if ((fd = open(h->log, O_WRONLY | O_CREAT | O_APPEND, 0600)) >= 0) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
	}
	execv(bin, (char *const *)argv);
	fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
	_exit(127);
}

char *
haproxy_log(const struct haproxy *h)
{
	FILE *f = fopen(h->log, "r");
	char *text = NULL;
	size_t n = 0;

	if (f == NULL || getdelim(&text, &n, '\0', f) < 0) {
		free(text);
		text = strdup("");
	}
	if (f != NULL)
		fclose(f);
	cr_assert_not_null(text);
	return text;
}

void
haproxy_start(struct haproxy *h, const char *const *servers, const char *extra)
{
	const char *bin = find_haproxy();
	int fds[HAPROXY_MAX_FRONTENDS], status;
	size_t i;
	pid_t check;

	cr_assert_not_null(bin, "haproxy not found: the PROXY protocol tests need "
	    "Debian's haproxy (make deps as root, or apt-get install haproxy; "
	    "HAPROXY_BIN names another binary)");
	memset(h, 0, sizeof(*h));
	while (servers[h->n] != NULL) {
		cr_assert_lt(h->n, HAPROXY_MAX_FRONTENDS);
		h->n++;
	}
	snprintf(h->dir, sizeof(h->dir), "/tmp/mappend-haproxy.XXXXXX");
	cr_assert_not_null(mkdtemp(h->dir));
	snprintf(h->conf, sizeof(h->conf), "%s/haproxy.cfg", h->dir);
	snprintf(h->log, sizeof(h->log), "%s/haproxy.log", h->dir);
	for (i = 0; i < h->n; i++)
		fds[i] = listen_loopback(&h->port[i]);
	write_config(h, servers, extra);

	/* a configuration HAProxy refuses fails here, with its reasons */
	check = spawn(h, bin, fds, "-c");
	cr_assert_eq(waitpid(check, &status, 0), check);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char *log = haproxy_log(h);

		cr_assert_fail("haproxy -c refused %s (status %d):\n%s", h->conf,
		    status, log);
	}
	h->pid = spawn(h, bin, fds, "-db");
	/* HAProxy holds the only copies: should it die, clients are refused
	 * instead of waiting in a backlog nobody reads */
	for (i = 0; i < h->n; i++)
		close(fds[i]);
}

void
haproxy_stop(struct haproxy *h)
{
	int status;
	pid_t pid = h->pid;
	bool died;
	char cmd[400];

	if (pid <= 0)
		return;
	h->pid = 0;
	died = waitpid(pid, &status, WNOHANG) == pid;
	if (!died) {
		kill(pid, SIGTERM);
		waitpid(pid, &status, 0);
	}
	if (died) {
		char *log = haproxy_log(h);

		cr_log_error("haproxy log:\n%s", log);
		free(log);
		cr_assert_fail("haproxy exited on its own (status %d)", status);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir);
	if (system(cmd) != 0)
		cr_log_warn("could not remove %s", h->dir);
}

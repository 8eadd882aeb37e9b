/*
 * test_admin.c — mappend as an administrator meets it: the command line
 * (-V, -h, a bad option), -t on configurations that start would trip over,
 * the pid file, start-up errors of a daemon on stderr, the switch to an
 * unprivileged user after reading a root-only key, the warning about a
 * readable master_password, a reload after the switch (a port below 1024
 * refused with the reason), and make install / uninstall with man pages
 * that render.  Tests that need root say so and skip when not root; the
 * unprivileged user is the system's "nobody".
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* A temp dir others may pass through (nobody needs to reach files in it). */
static char dir[64];
static pid_t daemon_pid;	/* a mappend left running by a failed test */

static void
setup(void)
{
	snprintf(dir, sizeof dir, "/tmp/mappend-admin.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	chmod(dir, 0711);
}

static void
teardown(void)
{
	char cmd[128];

	if (daemon_pid > 0)
		kill(daemon_pid, SIGKILL);
	mock_stop(&mock);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		cr_log_warn("could not remove %s", dir);
}

TestSuite(admin, .init = setup, .fini = teardown, .timeout = 120);

static bool
is_root(void)
{
	return geteuid() == 0;
}

#define NEED_ROOT(what) do { \
	if (!is_root()) { \
		cr_skip_test("%s needs root (not root: skipped)", what); \
		return; \
	} \
} while (0)

/* dir/name; the last 64 results stay valid, so keep a copy of a path
 * needed across many calls. */
static const char *
path_in(const char *name)
{
	static char paths[64][256];
	static int i;

	i = (i + 1) % 64;
	snprintf(paths[i], sizeof paths[i], "%s/%s", dir, name);
	return paths[i];
}

#define PATH_IN(var, name) char var[256]; snprintf(var, sizeof var, "%s/%s", dir, name)

static void
write_file(const char *path, mode_t mode, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
write_file(const char *path, mode_t mode, const char *fmt, ...)
{
	va_list ap;
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
	cr_assert_eq(chmod(path, mode), 0);
}

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	size_t n;

	if (f == NULL)
		return strdup("");
	buf = malloc(65536);
	cr_assert_not_null(buf);
	n = fread(buf, 1, 65535, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static long ms_now(void);

/* The log once it holds want (the test fails after the harness's timeout
 * otherwise); malloc'ed. */
static char *
wait_log(const char *path, const char *want)
{
	long deadline = ms_now() + HARNESS_TIMEOUT_MS;
	char *log;

	for (;;) {
		log = slurp(path);
		if (strstr(log, want) != NULL)
			return log;
		if (ms_now() > deadline)
			cr_assert_fail("no \"%s\" in the log:\n%s", want, log);
		free(log);
		usleep(10 * 1000);
	}
}

static long
ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Become nobody for good (in a child about to exec). */
static void
become_nobody(void)
{
	struct passwd *pw = getpwnam("nobody");

	if (pw == NULL || setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 ||
	    setuid(pw->pw_uid) != 0)
		_exit(126);
}

struct run {
	int status;		/* exit status; -1 when killed */
	char *out, *err;
};

/* Run mappend with these arguments (NULL-terminated) to completion. */
static void
run_mappend(struct run *r, bool as_nobody, const char *arg, ...)
{
	const char *argv[16];
	const char *outp = path_in("run.out"), *errp = path_in("run.err");
	long deadline = ms_now() + HARNESS_TIMEOUT_MS;
	va_list ap;
	size_t n = 0;
	int status;
	pid_t pid;

	argv[n++] = getenv("MAPPEND_BIN");
	cr_assert_not_null(argv[0], "MAPPEND_BIN is not set: run the tests with make");
	va_start(ap, arg);
	for (; arg != NULL && n < 15; arg = va_arg(ap, const char *))
		argv[n++] = arg;
	va_end(ap);
	argv[n] = NULL;
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(o, STDOUT_FILENO);
		dup2(e, STDERR_FILENO);
		if (as_nobody)
			become_nobody();
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (ms_now() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			cr_assert_fail("mappend %s did not exit", argv[1]);
		}
		usleep(10 * 1000);
	}
	r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	r->out = slurp(outp);
	r->err = slurp(errp);
}

static void
run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

/* mappend -t -c conf: the status, stderr holding want (when not NULL). */
static void
check_t(const char *conf, bool as_nobody, int want_status, const char *want)
{
	struct run r;

	run_mappend(&r, as_nobody, "-t", "-c", conf, NULL);
	cr_assert_eq(r.status, want_status, "-t exit %d, want %d; stderr:\n%s",
	    r.status, want_status, r.err);
	if (want != NULL)
		cr_assert_not_null(strstr(r.err, want), "want \"%s\" in:\n%s", want,
		    r.err);
	if (want_status == 0)
		cr_assert_not_null(strstr(r.out, "is valid"), "%s", r.out);
	run_free(&r);
}

/* --- the command line --- */

Test(admin, version)
{
	struct run r;

	run_mappend(&r, false, "-V", NULL);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(strncmp(r.out, "mappend ", 8), 0, "%s", r.out);
	cr_assert_neq(strncmp(r.out, "mappend unknown", 15), 0, "no version: %s", r.out);
	cr_assert_not_null(strstr(r.out, "\nOpenSSL 3."), "%s", r.out);
	cr_assert_not_null(strstr(r.out, "\nlibevent 2."), "%s", r.out);
	cr_assert_str_eq(r.err, "");
	run_free(&r);
}

Test(admin, help)
{
	struct run r;

	run_mappend(&r, false, "-h", NULL);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(strncmp(r.out, "usage: mappend [-fhRtV] [-c config]\n", 36), 0,
	    "%s", r.out);
	cr_assert_not_null(strstr(r.out, "  -V "), "%s", r.out);
	cr_assert_not_null(strstr(r.out, "  -R "), "%s", r.out);
	cr_assert_str_eq(r.err, "");
	run_free(&r);
}

Test(admin, bad_option)
{
	struct run r;

	run_mappend(&r, false, "-x", NULL);
	cr_assert_eq(r.status, 2);
	cr_assert_str_eq(r.out, "");
	cr_assert_not_null(strstr(r.err, "mappend: unknown option -x\nusage: mappend"),
	    "%s", r.err);
	run_free(&r);
	run_mappend(&r, false, "-c", NULL);
	cr_assert_eq(r.status, 2);
	cr_assert_not_null(strstr(r.err, "-c needs an argument"), "%s", r.err);
	run_free(&r);
	run_mappend(&r, false, "-f", "extra", NULL);
	cr_assert_eq(r.status, 2);
	cr_assert_not_null(strstr(r.err, "unexpected argument \"extra\""), "%s", r.err);
	run_free(&r);
}

/* --- -t --- */

/* A valid base configuration in dir, plus more lines. */
static const char *
conf_with(const char *more)
{
	const char *conf = path_in("mappend.conf");

	write_file(conf, 0600, "listen = 127.0.0.1:0\nupstream = 127.0.0.1:143\n"
	    "spool_dir = %s/spool\n%s\n", dir, more);
	return conf;
}

static const char *
certs_dir(void)
{
	static char certs[300];

	snprintf(certs, sizeof certs, "%s/certs", dir);
	make_certs(certs);
	return certs;
}

Test(admin, check_valid_config)
{
	check_t(conf_with(""), false, 0, NULL);
}

Test(admin, check_missing_key)
{
	char more[1024];
	const char *certs = certs_dir();

	snprintf(more, sizeof more, "tls_cert = %s/server.pem\ntls_key = %s/nokey.key\n",
	    certs, certs);
	check_t(conf_with(more), false, 1, "tls_key ");
	check_t(path_in("mappend.conf"), false, 1, "/nokey.key: No such file or directory\n");
}

Test(admin, check_unreadable_key)
{
	char more[1024], conf[300];
	const char *certs = certs_dir();
	struct passwd *pw = getpwnam("nobody");

	snprintf(more, sizeof more, "tls_cert = %s/server.pem\ntls_key = %s/server.key\n",
	    certs, certs);
	snprintf(conf, sizeof conf, "%s", conf_with(more));
	if (!is_root()) {
		/* our own key, made unreadable */
		cr_assert_eq(chmod(path_in("certs/server.key"), 0), 0);
		check_t(conf, false, 1, "/server.key: Permission denied\n");
		return;
	}
	/* -t as nobody, who is to start it: the key is root's, 0600 */
	cr_assert_not_null(pw);
	chmod(certs, 0711);
	chmod(conf, 0644);
	cr_assert_eq(mkdir(path_in("spool"), 0700), 0);
	cr_assert_eq(chown(path_in("spool"), pw->pw_uid, pw->pw_gid), 0);
	check_t(conf, true, 1, "/server.key: Permission denied\n");
}

Test(admin, check_key_unreadable_by_run_user_warns)
{
	char more[1024];
	const char *certs = certs_dir();

	NEED_ROOT("user = nobody");
	snprintf(more, sizeof more, "user = nobody\ntls_cert = %s/server.pem\n"
	    "tls_key = %s/server.key\n", certs, certs);
	/* start reads it as root: valid, but a reload will fail, and -t says so */
	check_t(conf_with(more), false, 0, "mappend: warning: tls_key ");
	check_t(path_in("mappend.conf"), false, 0, "user nobody cannot read it "
	    "(Permission denied): it is read as root at start, but a reload on "
	    "SIGHUP will fail");
}

/* The file itself is read again on SIGHUP, as the run-as user. */
Test(admin, check_config_unreadable_by_run_user_warns)
{
	struct passwd *pw = getpwnam("nobody");
	PATH_IN(conf, "mappend.conf");

	NEED_ROOT("user = nobody");
	cr_assert_not_null(pw);
	conf_with("user = nobody\n");
	check_t(conf, false, 0, "mappend.conf: user nobody cannot read it (Permission "
	    "denied): a reload on SIGHUP reads it as that user and will fail; "
	    "install it 0640, group ");
	cr_assert_eq(chown(conf, 0, pw->pw_gid), 0);
	cr_assert_eq(chmod(conf, 0640), 0);
	{
		struct run r;

		run_mappend(&r, false, "-t", "-c", conf, NULL);
		cr_assert_eq(r.status, 0, "%s", r.err);
		cr_assert_null(strstr(r.err, "cannot read it"), "%s", r.err);
		run_free(&r);
	}
}

Test(admin, check_mismatched_cert_and_key)
{
	char more[1024];
	const char *certs = certs_dir();

	snprintf(more, sizeof more, "tls_cert = %s/server.pem\ntls_key = %s/server2.key\n",
	    certs, certs);
	check_t(conf_with(more), false, 1, "/server2.key does not match tls_cert ");
}

Test(admin, check_missing_spool_parent)
{
	char more[512];

	snprintf(more, sizeof more, "spool_dir = %s/no/spool\n", dir);
	/* the later spool_dir line is a duplicate: write the file by hand */
	write_file(path_in("mappend.conf"), 0600, "listen = 127.0.0.1:0\n"
	    "upstream = 127.0.0.1:143\n%s", more);
	check_t(path_in("mappend.conf"), false, 1, "/no/spool: its parent directory ");
	check_t(path_in("mappend.conf"), false, 1, "/no does not exist: create it, "
	    "or choose another spool_dir\n");
}

Test(admin, check_duplicate_listen)
{
	write_file(path_in("mappend.conf"), 0600, "listen = 127.0.0.1:1143\n"
	    "upstream = 127.0.0.1:143\n# twice\nlisten = 127.0.0.1:1143\n");
	check_t(path_in("mappend.conf"), false, 1, "mappend.conf:4: listen "
	    "127.0.0.1:1143 is already on line 1: remove one of them\n");
}

Test(admin, check_upstream_ca_file)
{
	char more[512];

	snprintf(more, sizeof more, "upstream_tls = tls\nupstream_ca_file = %s/ca.pem\n",
	    dir);
	check_t(conf_with(more), false, 1, "upstream_ca_file ");
	check_t(path_in("mappend.conf"), false, 1, "/ca.pem: No such file or directory\n");
	write_file(path_in("ca.pem"), 0644, "not a certificate\n");
	check_t(path_in("mappend.conf"), false, 1, "upstream_ca_file ");
}

Test(admin, check_accounts_and_pid_file_directory)
{
	char more[512];

	check_t(conf_with("user = no-such-user-here\n"), false, 1,
	    "user = no-such-user-here: no such user");
	snprintf(more, sizeof more, "pid_file = %s/run/mappend.pid\n", dir);
	check_t(conf_with(more), false, 1, "/run does not exist");
	if (!is_root())
		return;
	/* root's 0711 dir: nobody could not remove its pid file there */
	snprintf(more, sizeof more, "user = nobody\npid_file = %s/mappend.pid\n", dir);
	check_t(conf_with(more), false, 1, "user nobody cannot write in ");
	/* and nobody cannot switch to anyone */
	chmod(conf_with("user = root\n"), 0644);
	check_t(path_in("mappend.conf"), true, 1, "only root can switch");
}

/* --- master_password in a file others can read --- */

Test(admin, readable_secret_warns)
{
	PATH_IN(conf, "mappend.conf");
	struct run r;

	conf_with("master_user = m\nmaster_password = secret\n");
	chmod(conf, 0644);
	check_t(conf, false, 0, "mappend: warning: ");
	check_t(conf, false, 0, "mappend.conf holds master_password and every user "
	    "can read it (mode 0644): chmod o-r ");
	chmod(conf, 0640);
	run_mappend(&r, false, "-t", "-c", conf, NULL);
	cr_assert_eq(r.status, 0);
	cr_assert_null(strstr(r.err, "master_password"), "%s", r.err);
	run_free(&r);
	if (is_root()) {
		/* group daemon is neither root's nor mappend's */
		struct group *gr = getgrnam("daemon");

		cr_assert_not_null(gr);
		cr_assert_eq(chown(conf, 0, gr->gr_gid), 0);
		check_t(conf, false, 0, "holds master_password and group daemon can "
		    "read it (mode 0640)");
		/* the run-as group may read it */
		cr_assert_eq(chown(conf, 0, 0), 0);
		check_t(conf_with("master_user = m\nmaster_password = secret\n"
		    "user = nobody\ngroup = daemon\n"), false, 0, NULL);
		chmod(conf, 0640);
		cr_assert_eq(chown(conf, 0, gr->gr_gid), 0);
		run_mappend(&r, false, "-t", "-c", conf, NULL);
		cr_assert_null(strstr(r.err, "master_password"), "%s", r.err);
		run_free(&r);
	} else {
		cr_log_info("group-readable case needs root: skipped");
	}
	/* without a secret, nothing to say */
	conf_with("");
	chmod(conf, 0644);
	run_mappend(&r, false, "-t", "-c", conf, NULL);
	cr_assert_null(strstr(r.err, "master_password"), "%s", r.err);
	run_free(&r);
}

/* --- running --- */

/* Wait until log shows "mappend started"; the port of the first listener
 * (TLS if want_tls) in *port.  False when the process exited first. */
static bool
wait_started(pid_t pid, const char *log, bool want_tls, int *port)
{
	long deadline = ms_now() + HARNESS_TIMEOUT_MS;
	int status;

	for (;;) {
		char *text = slurp(log);
		const char *l = strstr(text, "listening on 127.0.0.1:");

		if (l != NULL && strstr(text, "mappend started") != NULL) {
			for (; l != NULL; l = strstr(l + 1, "listening on 127.0.0.1:")) {
				const char *eol = strchr(l, '\n'), *tls = strstr(l, "(TLS)");
				bool is_tls = tls != NULL && (eol == NULL || tls < eol);

				if (is_tls == want_tls) {
					*port = atoi(l + strlen("listening on 127.0.0.1:"));
					break;
				}
			}
			free(text);
			return true;
		}
		free(text);
		if (pid > 0 && waitpid(pid, &status, WNOHANG) == pid)
			return false;
		cr_assert_lt(ms_now(), deadline, "mappend did not start");
		usleep(10 * 1000);
	}
}

/* mappend -f -c conf, stderr to log; returns its pid once started. */
static pid_t
start_foreground(const char *conf, const char *log, bool want_tls, int *port)
{
	const char *bin = getenv("MAPPEND_BIN");
	pid_t pid = fork();

	cr_assert_neq(pid, -1);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		dup2(fd, STDERR_FILENO);
		execl(bin, bin, "-f", "-c", conf, (char *)NULL);
		_exit(127);
	}
	daemon_pid = pid;
	if (!wait_started(pid, log, want_tls, port)) {
		char *text = slurp(log);

		daemon_pid = 0;
		cr_assert_fail("mappend exited at start:\n%s", text);
	}
	return pid;
}

/* SIGTERM and a clean exit. */
static void
stop(pid_t pid)
{
	int status;

	kill(pid, SIGTERM);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	daemon_pid = 0;
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
}

static long
read_pid(const char *path)
{
	char *text = slurp(path);
	long pid = atol(text);

	free(text);
	return pid;
}

Test(admin, pid_file_written_and_removed)
{
	char more[512];
	PATH_IN(pidf, "mappend.pid");
	PATH_IN(log, "mappend.log");
	PATH_IN(conf, "mappend.conf");
	struct stat st;
	struct run r;
	pid_t pid;
	int port;

	snprintf(more, sizeof more, "pid_file = %s\n", pidf);
	conf_with(more);
	check_t(conf, false, 0, NULL);
	pid = start_foreground(conf, log, false, &port);
	cr_assert_eq(read_pid(pidf), (long)pid);
	cr_assert_eq(stat(pidf, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0644);
	/* a second start finds the first and refuses, before binding */
	run_mappend(&r, false, "-f", "-c", conf, NULL);
	cr_assert_eq(r.status, 1, "%s", r.err);
	cr_assert_not_null(strstr(r.err, "names process "), "%s", r.err);
	cr_assert_not_null(strstr(r.err, "which is running"), "%s", r.err);
	run_free(&r);
	cr_assert_eq(read_pid(pidf), (long)pid, "the refused start touched the file");
	stop(pid);
	cr_assert_neq(stat(pidf, &st), 0, "pid file left behind");
	cr_assert_eq(errno, ENOENT);

	/* a stale file (no such process) is taken over */
	write_file(pidf, 0644, "999999999\n");
	pid = start_foreground(conf, path_in("mappend2.log"), false, &port);
	cr_assert_eq(read_pid(pidf), (long)pid);
	stop(pid);
	cr_assert_neq(access(pidf, F_OK), 0);
}

/* A port that is taken: a socket of ours listening on it. */
static int
taken_port(int *fd)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof sin;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	*fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(bind(*fd, (struct sockaddr *)&sin, sizeof sin), 0);
	cr_assert_eq(listen(*fd, 1), 0);
	cr_assert_eq(getsockname(*fd, (struct sockaddr *)&sin, &len), 0);
	return ntohs(sin.sin_port);
}

Test(admin, daemon_startup_error_reaches_stderr)
{
	char conf[300], more[512];
	struct run r;
	int fd, port = taken_port(&fd);

	snprintf(more, sizeof more, "pid_file = %s/mappend.pid\n", dir);
	snprintf(conf, sizeof conf, "%s", conf_with(more));
	write_file(conf, 0600, "listen = 127.0.0.1:%d\nupstream = 127.0.0.1:143\n"
	    "spool_dir = %s/spool\n%s", port, dir, more);
	/* no -f: a daemon, whose parent must wait and tell */
	run_mappend(&r, false, "-c", conf, NULL);
	cr_assert_eq(r.status, 1, "status %d; stderr:\n%s", r.status, r.err);
	cr_assert_not_null(strstr(r.err, "error: listen 127.0.0.1:"), "%s", r.err);
	cr_assert_not_null(strstr(r.err, ": Address already in use\n"), "%s", r.err);
	cr_assert_neq(access(path_in("mappend.pid"), F_OK), 0);
	run_free(&r);
	close(fd);
}

Test(admin, daemon_parent_exits_when_child_runs)
{
	char more[512];
	PATH_IN(pidf, "mappend.pid");
	PATH_IN(conf, "mappend.conf");
	struct run r;
	long pid;

	snprintf(more, sizeof more, "pid_file = %s\n", pidf);
	conf_with(more);
	run_mappend(&r, false, "-c", conf, NULL);
	cr_assert_eq(r.status, 0, "%s", r.err);
	/* the parent said what the daemon did until it detached */
	cr_assert_not_null(strstr(r.err, "mappend started"), "%s", r.err);
	pid = read_pid(pidf);
	cr_assert_gt(pid, 0, "no pid file once the parent exited");
	daemon_pid = (pid_t)pid;
	cr_assert_eq(kill((pid_t)pid, 0), 0, "the daemon is not running");
	kill((pid_t)pid, SIGTERM);
	for (int i = 0; i < 500 && access(pidf, F_OK) == 0; i++)
		usleep(10 * 1000);
	cr_assert_neq(access(pidf, F_OK), 0, "pid file left behind");
	daemon_pid = 0;
	run_free(&r);
}

/* "Uid:\tA\tB\tC\tD" of /proc/PID/status, as a string. */
static char *
status_line(pid_t pid, const char *key)
{
	char path[64], *text, *l, *end;

	snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
	text = slurp(path);
	l = strstr(text, key);
	cr_assert_not_null(l, "%s: no %s", path, key);
	end = strchr(l, '\n');
	if (end != NULL)
		*end = '\0';
	l = strdup(l);
	free(text);
	return l;
}

Test(admin, privilege_drop_after_reading_root_only_key)
{
	const char *mock_args[] = { NULL };
	char more[1024], line[256], *s, *log;
	const char *certs;
	PATH_IN(conf, "mappend.conf");
	PATH_IN(logp, "mappend.log");
	struct passwd *pw;
	struct stat st;
	struct imapc c;
	pid_t pid;
	int port;

	NEED_ROOT("the switch to another user");
	pw = getpwnam("nobody");
	cr_assert_not_null(pw, "no user nobody");
	mock_start(&mock, mock_args);
	/* the key in a directory only root may enter, itself 0600 */
	certs = certs_dir();
	cr_assert_eq(chmod(certs, 0700), 0);
	cr_assert_eq(stat(path_in("certs/server.key"), &st), 0);
	cr_assert_eq(st.st_uid, 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	snprintf(more, sizeof more, "user = nobody\nlisten = 127.0.0.1:0 tls\n"
	    "tls_cert = %s/server.pem\ntls_key = %s/server.key\n", certs, certs);
	write_file(conf, 0600, "listen = 127.0.0.1:0\nupstream = 127.0.0.1:%d\n"
	    "spool_dir = %s/spool\n%s", mock.port, dir, more);
	pid = start_foreground(conf, logp, true, &port);

	/* a reload reads the file as nobody, who cannot: refused, and why */
	kill(pid, SIGHUP);
	log = wait_log(logp, "reload refused: ");
	cr_assert_not_null(strstr(log, "/mappend.conf: Permission denied: mappend "
	    "runs as user nobody now and reads it as that user (install it 0640, "
	    "group "), "%s", log);
	free(log);
	cr_assert_eq(chown(conf, 0, pw->pw_gid), 0);
	cr_assert_eq(chmod(conf, 0640), 0);

	/* every id of the process is nobody's, saved ones included */
	snprintf(line, sizeof line, "Uid:\t%ld\t%ld\t%ld\t%ld", (long)pw->pw_uid,
	    (long)pw->pw_uid, (long)pw->pw_uid, (long)pw->pw_uid);
	s = status_line(pid, "Uid:");
	cr_log_info("%s", s);
	cr_assert_str_eq(s, line);
	free(s);
	snprintf(line, sizeof line, "Gid:\t%ld\t%ld\t%ld\t%ld", (long)pw->pw_gid,
	    (long)pw->pw_gid, (long)pw->pw_gid, (long)pw->pw_gid);
	s = status_line(pid, "Gid:");
	cr_log_info("%s", s);
	cr_assert_str_eq(s, line);
	free(s);
	s = status_line(pid, "Groups:");
	cr_log_info("%s", s);
	for (char *tok = strtok(s + strlen("Groups:"), " \t"); tok != NULL;
	    tok = strtok(NULL, " \t"))
		cr_assert_neq(atol(tok), 0, "root's group kept");
	free(s);
	s = status_line(pid, "CapEff:");
	cr_assert_str_eq(s, "CapEff:\t0000000000000000");
	free(s);

	/* the spool was created for nobody */
	cr_assert_eq(stat(path_in("spool"), &st), 0);
	cr_assert_eq(st.st_uid, pw->pw_uid);
	cr_assert_eq(st.st_mode & 0777, 0700);

	/* the key was read before the switch: TLS works */
	imapc_connect(&c, port);
	cr_assert(imapc_tls(&c, path_in("certs/ca.pem")), "TLS handshake failed");
	s = imapc_line(&c);
	cr_assert_not_null(s);
	cr_assert_eq(strncmp(s, "* OK", 4), 0, "%s", s);
	free(s);

	/* a reload now reads the key as nobody: refused with the reason, the
	 * old pair stays, the session goes on */
	kill(pid, SIGHUP);
	log = wait_log(logp, "reload refused: tls_cert ");
	cr_assert_not_null(strstr(log, "running as user nobody (uid "), "%s", log);
	cr_assert_not_null(strstr(log, "user nobody cannot read it"), "%s", log);
	cr_assert_not_null(strstr(log, "/server.pem: Permission denied: mappend runs "
	    "as user nobody now and reads it as that user; make it readable by a "
	    "group of nobody's, e.g. ssl-cert"), "%s", log);
	free(log);
	imapc_send(&c, "a NOOP\r\n");
	s = imapc_until_tagged(&c, "a", NULL);
	cr_assert_not_null(s);
	cr_assert_eq(strncmp(last_line(s), "a OK", 4), 0, "%s", s);
	free(s);
	imapc_close(&c);
	stop(pid);
}

/* After the switch to nobody, a reload can still add a listener on a high
 * port, but not on one below 1024: refused, with why. */
Test(admin, reload_after_switch_low_port_refused)
{
	const char *mock_args[] = { NULL };
	PATH_IN(conf, "mappend.conf");
	PATH_IN(logp, "mappend.log");
	struct passwd *pw;
	struct imapc c;
	char *log, *s;
	pid_t pid;
	int port;

	NEED_ROOT("the switch to another user");
	pw = getpwnam("nobody");
	cr_assert_not_null(pw, "no user nobody");
	mock_start(&mock, mock_args);
	write_file(conf, 0640, "user = nobody\nlisten = 127.0.0.1:0\nupstream = "
	    "127.0.0.1:%d\nspool_dir = %s/spool\n", mock.port, dir);
	cr_assert_eq(chown(conf, 0, pw->pw_gid), 0);
	pid = start_foreground(conf, logp, false, &port);
	imapc_connect_login(&c, port, "test", "secret");

	write_file(conf, 0640, "user = nobody\nlisten = 127.0.0.1:0\nlisten = "
	    "127.0.0.2:0\nupstream = 127.0.0.1:%d\nspool_dir = %s/spool\n", mock.port,
	    dir);
	kill(pid, SIGHUP);
	free(wait_log(logp, "info: reloaded "));

	write_file(conf, 0640, "user = nobody\nlisten = 127.0.0.1:0\nlisten = "
	    "127.0.0.2:0\nlisten = 127.0.0.1:993\nupstream = 127.0.0.1:%d\n"
	    "spool_dir = %s/spool\nmax_sessions = 1\n", mock.port, dir);
	kill(pid, SIGHUP);
	log = wait_log(logp, "reload refused: ");
	cr_assert_not_null(strstr(log, "reload refused: listen 127.0.0.1:993: "
	    "Permission denied: a port below 1024 needs root or CAP_NET_BIND_SERVICE, "
	    "which mappend gave up when it switched to its user after start: restart "
	    "mappend to listen there; the running configuration stays\n"), "%s", log);
	free(log);
	/* nothing of it applied: max_sessions is still 1000 */
	imapc_send(&c, "a NOOP\r\n");
	s = imapc_until_tagged(&c, "a", NULL);
	cr_assert(s != NULL && strncmp(last_line(s), "a OK", 4) == 0, "%s", s);
	free(s);
	{
		struct imapc d;

		imapc_connect_login(&d, port, "test", "secret");
		imapc_close(&d);
	}
	imapc_close(&c);
	stop(pid);
}

Test(admin, root_without_user_warns)
{
	char *log;
	pid_t pid;
	int port;

	NEED_ROOT("running as root");
	pid = start_foreground(conf_with(""), path_in("mappend.log"), false, &port);
	stop(pid);
	log = slurp(path_in("mappend.log"));
	cr_assert_not_null(strstr(log, "warning: user is not set: mappend runs as "
	    "root; set user = mappend"), "%s", log);
	free(log);
}

/* --- make install / uninstall --- */

/* Run a shell command from the repository's root; its output in out. */
static int
sh(char **out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
sh(char **out, const char *fmt, ...)
{
	char cmd[2048], full[2200];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	snprintf(full, sizeof full, "( %s ) >'%s' 2>&1", cmd, path_in("sh.out"));
	rc = system(full);
	*out = slurp(path_in("sh.out"));
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

Test(admin, make_install_and_uninstall)
{
	const char *root = path_in("root");
	static const struct { const char *path; mode_t mode; } files[] = {
		{ "/usr/local/sbin/mappend", 0755 },
		{ "/etc/mappend/mappend.conf.sample", 0640 },
		{ "/usr/local/share/man/man8/mappend.8", 0644 },
		{ "/usr/local/share/man/man5/mappend.conf.5", 0644 },
		{ "/usr/local/lib/systemd/system/mappend.service", 0644 },
		{ "/usr/local/lib/sysusers.d/mappend.conf", 0644 },
		{ "/usr/local/lib/tmpfiles.d/mappend.conf", 0644 },
	};
	char path[512], *out;
	struct stat st;

	/* a make of our own: not the sanitizer build the tests may run under */
	cr_assert_eq(sh(&out, "env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s "
	    "install DESTDIR='%s'", root), 0, "make install:\n%s", out);
	free(out);
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		snprintf(path, sizeof path, "%s%s", root, files[i].path);
		cr_assert_eq(stat(path, &st), 0, "%s not installed", files[i].path);
		cr_assert_eq(st.st_mode & 07777, files[i].mode, "%s: mode %o",
		    files[i].path, st.st_mode & 07777);
	}
	/* the unit names the installed paths */
	snprintf(path, sizeof path, "%s/usr/local/lib/systemd/system/mappend.service", root);
	out = slurp(path);
	cr_assert_not_null(strstr(out, "ExecStart=/usr/local/sbin/mappend -f -c "
	    "/etc/mappend/mappend.conf\n"), "%s", out);
	cr_assert_null(strstr(out, "@SBINDIR@"), "unreplaced placeholder");
	cr_assert_null(strstr(out, "@SYSCONFDIR@"), "unreplaced placeholder");
	free(out);

	/* the man pages render, without a warning from the formatter */
	for (int i = 0; i < 2; i++) {
		const char *page = i == 0 ? "man8/mappend.8" : "man5/mappend.conf.5";

		cr_assert_eq(sh(&out, "groff -mandoc -Tutf8 -ww '%s/usr/local/share/man/%s' "
		    "2>&1 >/dev/null", root, page), 0, "%s: %s", page, out);
		cr_assert_str_eq(out, "", "groff about %s: %s", page, out);
		free(out);
		cr_assert_eq(sh(&out, "groff -mandoc -Tutf8 -P-cbou "
		    "'%s/usr/local/share/man/%s'", root, page), 0);
		cr_assert_not_null(strstr(out, "DESCRIPTION"), "%s: %s", page, out);
		cr_assert_not_null(strstr(out, i == 0 ? "-t" : "master_password"));
		free(out);
		if (sh(&out, "command -v mandoc") == 0) {
			free(out);
			cr_assert_eq(sh(&out, "mandoc -T lint -W warning "
			    "'%s/usr/local/share/man/%s'", root, page), 0, "%s", out);
		}
		free(out);
	}

	/* an administrator's own configuration survives uninstall */
	snprintf(path, sizeof path, "%s/etc/mappend/mappend.conf", root);
	write_file(path, 0640, "# mine\n");
	cr_assert_eq(sh(&out, "env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s "
	    "uninstall DESTDIR='%s'", root), 0, "make uninstall:\n%s", out);
	free(out);
	cr_assert_eq(unlink(path), 0, "the administrator's mappend.conf was removed");
	cr_assert_eq(sh(&out, "find '%s' -type f -o -type l", root), 0);
	cr_assert_str_eq(out, "", "left installed:\n%s", out);
	free(out);
}

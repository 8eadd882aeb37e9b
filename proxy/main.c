/*
 * main.c — command line, start-up, the event loop and signals.
 *
 * Start-up does everything that can fail while the terminal (or systemd)
 * still sees stderr: configuration, spool, certificates, listeners, the
 * switch to the run-as user; only then does a daemon detach, and its parent
 * exits 0 only once the child has written its pid file and is running.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>

#include "admission.h"
#include "checks.h"
#include "config.h"
#include "limits.h"
#include "listener.h"
#include "metrics.h"
#include "log.h"
#include "pidfile.h"
#include "privileges.h"
#include "recovery.h"
#include "reload.h"
#include "router.h"
#include "journal.h"
#include "session.h"
#include "splice.h"
#include "spool.h"
#include "tls.h"

#ifndef MAPPEND_VERSION
#define MAPPEND_VERSION "unknown"	/* the Makefile passes VERSION */
#endif
#ifndef DEFAULT_CONFIG
#define DEFAULT_CONFIG "/etc/mappend/mappend.conf"	/* SYSCONFDIR's */
#endif
/* How long SIGTERM waits for sessions with nothing in progress to take
 * their BYE, before exiting. */
#define SHUTDOWN_GRACE_SECONDS 10

static struct proxy proxy;
static struct reload_origin origin;	/* how it was started, for SIGHUP */
static struct event *shutdown_timer;
static struct timeval shutdown_started;

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: mappend [-fhRtV] [-c config]\n"
	    "  -c FILE  configuration file (default " DEFAULT_CONFIG ")\n"
	    "  -f       stay in the foreground (log to stderr unless log = syslog)\n"
	    "  -h       print this help and exit\n"
	    "  -R       list the uploads a crash left for recovery, and exit\n"
	    "  -t       check the configuration and what start needs, and exit\n"
	    "  -V       print the versions of mappend, OpenSSL and libevent\n");
}

/* Run-time library versions, and the compile-time ones where they differ
 * (a library upgraded under the binary). */
static void
version(void)
{
	const char *ssl = OpenSSL_version(OPENSSL_VERSION);
	const char *ev = event_get_version();

	printf("mappend %s\n", MAPPEND_VERSION);
	printf("%s", ssl);
	if (strcmp(ssl, OPENSSL_VERSION_TEXT) != 0)
		printf(" (built with %s)", OPENSSL_VERSION_TEXT);
	printf("\nlibevent %s", ev);
	if (strcmp(ev, LIBEVENT_VERSION) != 0)
		printf(" (built with %s)", LIBEVENT_VERSION);
	printf("\n");
}

/*
 * SIGTERM drains: sessions with nothing in progress got their BYE; a
 * MULTIAPPEND half-way upstream has shutdown_timeout to finish, then it is
 * undone (its session closed through its job: a rollback on a second
 * connection), and mappend exits when that is over, or shutdown_timeout
 * (at least 10 s) later at the latest (the journal covers what is left).
 */
static void
shutdown_check(evutil_socket_t fd, short what, void *arg)
{
	static bool undoing;
	struct timeval now;
	long elapsed, limit = (long)proxy.cfg->shutdown_timeout;

	(void)fd;
	(void)what;
	(void)arg;
	event_base_gettimeofday_cached(proxy.base, &now);
	elapsed = now.tv_sec - shutdown_started.tv_sec;
	if (proxy.nsessions == 0) {
		event_base_loopexit(proxy.base, NULL);
	} else if (!undoing && elapsed >= limit) {
		undoing = true;
		log_warn(0, "%u sessions still open after %lds: what they have in "
		    "progress is undone", proxy.nsessions, limit);
		session_close_all(&proxy, "Server shutting down");
	} else if (elapsed >= limit + (limit > SHUTDOWN_GRACE_SECONDS ? limit :
	    SHUTDOWN_GRACE_SECONDS) ||
	    (!session_any_busy(&proxy) && elapsed >= SHUTDOWN_GRACE_SECONDS)) {
		log_warn(0, "%u sessions still open after %lds, exiting (uploads left "
		    "half-way are undone at the next start)", proxy.nsessions, elapsed);
		event_base_loopexit(proxy.base, NULL);
	}
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct timeval tick = { 0, 100 * 1000 };

	(void)what;
	(void)arg;
	if (sig == SIGHUP) {
		reload_run(&proxy, &origin);
		return;
	}
	if (proxy.shutting_down) {
		log_info(0, "second %s: exiting now", strsignal((int)sig));
		event_base_loopexit(proxy.base, NULL);
		return;
	}
	log_info(0, "%s: closing %u sessions and exiting", strsignal((int)sig),
	    proxy.nsessions);
	listener_close_all();
	admission_close_all();
	session_shutdown_all(&proxy, "Server shutting down");
	event_base_gettimeofday_cached(proxy.base, &shutdown_started);
	shutdown_timer = event_new(proxy.base, -1, EV_PERSIST, shutdown_check, NULL);
	event_add(shutdown_timer, &tick);
}

/*
 * Detach.  The parent waits on a pipe until the child reports that it is
 * running (a byte) or dies (end of file), so that its exit status tells the
 * truth; the child's errors until then go to the inherited stderr.
 */
static int
daemonize(int *ready_fd)
{
	int fds[2];
	char c;
	ssize_t n;
	pid_t pid;
	int status;

	if (pipe2(fds, O_CLOEXEC) != 0)
		return -1;
	fflush(NULL);
	switch (pid = fork()) {
	case -1:
		return -1;
	case 0:
		close(fds[0]);
		*ready_fd = fds[1];
		return setsid() == -1 ? -1 : 0;
	default:
		break;
	}
	close(fds[1]);
	while ((n = read(fds[0], &c, 1)) < 0 && errno == EINTR)
		;
	if (n == 1)
		_exit(0);
	/* the child said why on stderr; its status is ours */
	if (waitpid(pid, &status, 0) == pid && WIFEXITED(status))
		_exit(WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : 1);
	fprintf(stderr, "mappend: the daemon died during start-up\n");
	_exit(1);
}

/* Tell the waiting parent we are up, and let go of the terminal. */
static void
daemon_ready(int ready_fd)
{
	int fd;

	if (ready_fd < 0)
		return;
	if (chdir("/") != 0)
		log_warn(0, "chdir /: %s", strerror(errno));
	while (write(ready_fd, "", 1) < 0 && errno == EINTR)
		;
	close(ready_fd);
	if ((fd = open("/dev/null", O_RDWR)) >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	log_also_stderr(false);
}

/*
 * The spool directory, before the switch: created (one level, 0700) and
 * given to the run-as user when it does not exist.  One that exists is
 * left as it is: chown'ing a directory the administrator named by mistake
 * (/var/tmp) would be worse than refusing.
 */
static int
spool_prepare(const struct config *cfg, const struct run_as *ra)
{
	struct stat st;

	if (!ra->switching || stat(cfg->spool_dir, &st) == 0 || errno != ENOENT)
		return 0;
	if (mkdir(cfg->spool_dir, 0700) != 0) {
		log_error(0, "spool directory %s: %s", cfg->spool_dir, strerror(errno));
		return -1;
	}
	if (chown(cfg->spool_dir, ra->uid, ra->gid) != 0) {
		log_error(0, "spool directory %s: chown to %s:%s: %s", cfg->spool_dir,
		    ra->user, ra->group, strerror(errno));
		return -1;
	}
	log_info(0, "created spool directory %s for user %s", cfg->spool_dir,
	    ra->user);
	return 0;
}

/*
 * A streamed literal goes through 256 KiB read chains that libevent frees
 * as soon as they are written.  With glibc's defaults each such chunk is
 * mmap'ed and munmap'ed, or the heap top is trimmed and grown again, so
 * every read faults its pages in anew: 20,000 page faults and most of the
 * proxy's CPU per 50 MiB FETCH (BENCHMARKS.md).  Memory freed stays mapped
 * instead, up to 64 MiB of free heap, and is reused by the next read.
 */
static void
keep_buffers_mapped(void)
{
	mallopt(M_MMAP_THRESHOLD, 16 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
}

static int
check_only(const char *path, const struct config *cfg, const struct run_as *ra)
{
	int errors = checks_run(path, cfg, ra, false);

	if (errors > 0) {
		fprintf(stderr, "mappend: %s: %d problem%s, start would fail\n", path,
		    errors, errors == 1 ? "" : "s");
		return 1;
	}
	printf("mappend: configuration %s is valid\n", path);
	return 0;
}

/* What the command line asks for. */
struct options {
	const char *path;
	bool foreground, test_only, list_recovery;
};

/* -1: go on; otherwise the exit status. */
static int
parse_options(int argc, char **argv, struct options *opt)
{
	int ch;

	opt->path = DEFAULT_CONFIG;
	while ((ch = getopt(argc, argv, ":c:fhRtV")) != -1) {
		switch (ch) {
		case 'c':
			opt->path = optarg;
			break;
		case 'f':
			opt->foreground = true;
			break;
		case 't':
			opt->test_only = true;
			break;
		case 'R':
			opt->list_recovery = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			version();
			return 0;
		case ':':
			fprintf(stderr, "mappend: -%c needs an argument\n", optopt);
			usage(stderr);
			return 2;
		default:
			fprintf(stderr, "mappend: unknown option -%c\n", optopt);
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "mappend: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	return -1;
}

static int
event_loop_new(void)
{
	TAILQ_INIT(&proxy.sessions);
	if ((proxy.base = event_base_new()) == NULL) {
		log_error(0, "cannot create the event loop");
		return -1;
	}
	proxy.dns = evdns_base_new(proxy.base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
	    EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (proxy.dns == NULL) {
		log_warn(0, "no name servers configured: the upstream must be an address");
		proxy.dns = evdns_base_new(proxy.base, 0);
	}
	return 0;
}

/* Everything start-up does that can fail; 0 when mappend may serve. */
static int
start_up(const struct options *opt, struct config *cfg, struct run_as *ra,
    int *ready_fd)
{
	struct router_sources *routes;
	char err[1024];

	/* as root: what the run-as user could not do */
	if (event_loop_new() != 0 ||
	    limits_init(proxy.base, LIMITS_WARNING_WINDOW) != 0 ||
	    spool_prepare(cfg, ra) != 0 ||
	    tls_init(cfg) != 0 || listener_open_all(&proxy) != 0 ||
	    metrics_start(proxy.base, cfg) != 0)
		return -1;
	if ((routes = router_prepare(&proxy, cfg, err, sizeof err)) == NULL) {
		log_error(0, "%s", err);
		return -1;
	}
	router_commit(routes);
	if (priv_drop(ra, err, sizeof err) != 0) {
		log_error(0, "%s", err);
		return -1;
	}
	if (ra->switching)
		log_info(0, "running as user %s (uid %ld), group %s (gid %ld)", ra->user,
		    (long)ra->uid, ra->group, (long)ra->gid);
	/* as the run-as user: the spool is checked by the one who uses it */
	if (spool_init(cfg->spool_dir, cfg->max_total_spool) != 0 ||
	    journal_init(cfg->spool_dir) != 0)
		return -1;
	if (!opt->foreground && (daemonize(ready_fd) != 0 ||
	    event_reinit(proxy.base) != 0)) {
		log_error(0, "cannot become a daemon: %s", strerror(errno));
		return -1;
	}
	if (cfg->pid_file[0] != '\0' && pidfile_write(cfg->pid_file, err, sizeof err) != 0) {
		log_error(0, "%s", err);
		return -1;
	}
	return 0;
}

/* Serve until a signal says stop. */
static int
serve(int ready_fd)
{
	const int signos[3] = { SIGTERM, SIGINT, SIGHUP };
	struct event *signals[3];
	int i;

	for (i = 0; i < 3; i++) {
		signals[i] = evsignal_new(proxy.base, signos[i], on_signal, NULL);
		evsignal_add(signals[i], NULL);
	}
	/* uploads a crash left half-way are undone before any client comes */
	if (recovery_run(&proxy) != 0)
		return 1;
	listener_accept_all();
	log_info(0, "mappend started, upstream %s:%s (version %s)",
	    proxy.cfg->upstream.host, proxy.cfg->upstream.port, MAPPEND_VERSION);
	daemon_ready(ready_fd);
	log_also_stderr(false);
	event_base_dispatch(proxy.base);
	log_info(0, "mappend stopped");
	for (i = 0; i < 3; i++) {
		event_free(signals[i]);
		/* exiting already: another signal must not cut the clean-up
		 * short (the pid file would stay, the status be the signal's) */
		signal(signos[i], SIG_IGN);
	}
	return 0;
}

/* The configuration in force now (a reload may have replaced the start's;
 * pid_file is the start's all the same). */
static void
shut_down(void)
{
	const struct config *cfg = proxy.cfg;

	if (shutdown_timer != NULL)
		event_free(shutdown_timer);
	listener_close_all();
	admission_close_all();
	limits_free();	/* writes what its open windows counted */
	metrics_stop();
	router_shutdown();
	evdns_base_free(proxy.dns, 0);
	event_base_free(proxy.base);
	splice_pool_free();
	journal_close();
	if (cfg->pid_file[0] != '\0' && pidfile_remove(cfg->pid_file) != 0)
		log_warn(0, "pid_file %s: cannot remove it: %s", cfg->pid_file,
		    strerror(errno));
	proxy.cfg = NULL;
	config_unref(cfg);
}

int
main(int argc, char **argv)
{
	struct config *cfg;
	struct options opt = { 0 };
	struct run_as ra;
	char err[1024];
	int rc, ready_fd = -1;

	if ((rc = parse_options(argc, argv, &opt)) >= 0)
		return rc;
	keep_buffers_mapped();
	log_init("mappend", LOG_LEVEL_INFO, false);
	/* the daemon's from the start: sessions will hold references to it */
	if ((proxy.cfg = cfg = config_new()) == NULL) {
		fprintf(stderr, "mappend: out of memory\n");
		return 1;
	}
	if (config_load(opt.path, cfg, err, sizeof(err)) != 0 ||
	    priv_resolve(cfg, &ra, err, sizeof err) != 0) {
		fprintf(stderr, "mappend: %s\n", err);
		return 1;
	}
	if (opt.test_only)
		return check_only(opt.path, cfg, &ra);
	if (opt.list_recovery)
		return recovery_list(cfg, stdout) == 0 ? 0 : 1;
	if (cfg->pid_file[0] != '\0' && pidfile_check(cfg->pid_file, NULL, err,
	    sizeof err) != 0) {
		fprintf(stderr, "mappend: %s\n", err);
		return 1;
	}
	/* a daemon has no stderr once detached: syslog, and until then both */
	log_init("mappend", cfg->log_level, cfg->log_syslog || !opt.foreground);
	log_also_stderr(cfg->log_syslog || !opt.foreground);
	signal(SIGPIPE, SIG_IGN);
	/* until the loop handles it: a reload during start-up is moot (the
	 * file was just read), and must not kill mappend */
	signal(SIGHUP, SIG_IGN);
	checks_run(opt.path, cfg, &ra, true);
	origin = (struct reload_origin){ opt.path, ra, opt.foreground };
	if (start_up(&opt, cfg, &ra, &ready_fd) != 0)
		return 1;
	rc = serve(ready_fd);
	shut_down();
	return rc;
}

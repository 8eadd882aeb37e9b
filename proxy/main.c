/*
 * main.c — command line, configuration, the event loop and signals.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "session.h"
#include "spool.h"
#include "tls.h"

#define DEFAULT_CONFIG "/etc/mappend/mappend.conf"
/* How long SIGTERM waits for sessions to say goodbye before exiting. */
#define SHUTDOWN_GRACE_SECONDS 10

static struct proxy proxy;
static struct event *shutdown_timer;
static struct timeval shutdown_started;

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: mappend [-ft] [-c config]\n"
	    "  -c FILE  configuration file (default " DEFAULT_CONFIG ")\n"
	    "  -f       stay in the foreground\n"
	    "  -t       check the configuration and exit\n");
}

static void
shutdown_check(evutil_socket_t fd, short what, void *arg)
{
	struct timeval now;

	(void)fd;
	(void)what;
	(void)arg;
	event_base_gettimeofday_cached(proxy.base, &now);
	if (proxy.nsessions == 0) {
		event_base_loopexit(proxy.base, NULL);
	} else if (now.tv_sec - shutdown_started.tv_sec >= SHUTDOWN_GRACE_SECONDS) {
		log_warn(0, "%u sessions still open after %ds, exiting", proxy.nsessions,
		    SHUTDOWN_GRACE_SECONDS);
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
		/* the certificate and key, read again from their files */
		log_info(0, "SIGHUP: reloading the TLS certificate");
		tls_reload(proxy.cfg);
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
	session_shutdown_all(&proxy, "Server shutting down");
	event_base_gettimeofday_cached(proxy.base, &shutdown_started);
	shutdown_timer = event_new(proxy.base, -1, EV_PERSIST, shutdown_check, NULL);
	event_add(shutdown_timer, &tick);
}

static int
daemonize(void)
{
	int fd;

	switch (fork()) {
	case -1:
		return -1;
	case 0:
		break;
	default:
		_exit(0);
	}
	if (setsid() == -1)
		return -1;
	if (chdir("/") != 0)
		return -1;
	if ((fd = open("/dev/null", O_RDWR)) >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static struct config cfg;
	const char *path = DEFAULT_CONFIG;
	bool foreground = false, test_only = false;
	struct event *signals[3];
	const int signos[3] = { SIGTERM, SIGINT, SIGHUP };
	char err[1024];
	int ch, i;

	while ((ch = getopt(argc, argv, "c:fth")) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'f':
			foreground = true;
			break;
		case 't':
			test_only = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	log_init("mappend", LOG_LEVEL_INFO, false);
	if (config_load(path, &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "mappend: %s\n", err);
		return 1;
	}
	if (test_only) {
		printf("mappend: configuration %s is valid\n", path);
		return 0;
	}
	/* a daemon has no stderr: it logs to syslog whatever the file says */
	log_init("mappend", cfg.log_level, cfg.log_syslog || !foreground);
	signal(SIGPIPE, SIG_IGN);

	proxy.cfg = &cfg;
	TAILQ_INIT(&proxy.sessions);
	if ((proxy.base = event_base_new()) == NULL) {
		log_error(0, "cannot create the event loop");
		return 1;
	}
	proxy.dns = evdns_base_new(proxy.base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
	    EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (proxy.dns == NULL) {
		log_warn(0, "no name servers configured: the upstream must be an address");
		proxy.dns = evdns_base_new(proxy.base, 0);
	}
	if (spool_init(cfg.spool_dir, cfg.max_total_spool) != 0)
		return 1;
	if (tls_init(&cfg) != 0)
		return 1;
	if (listener_open_all(&proxy) != 0)
		return 1;
	if (!foreground && (daemonize() != 0 || event_reinit(proxy.base) != 0)) {
		log_error(0, "cannot become a daemon: %s", strerror(errno));
		return 1;
	}
	for (i = 0; i < 3; i++) {
		signals[i] = evsignal_new(proxy.base, signos[i], on_signal, NULL);
		evsignal_add(signals[i], NULL);
	}
	log_info(0, "mappend started, upstream %s:%s", cfg.upstream_host,
	    cfg.upstream_port);
	event_base_dispatch(proxy.base);
	log_info(0, "mappend stopped");

	for (i = 0; i < 3; i++)
		event_free(signals[i]);
	if (shutdown_timer != NULL)
		event_free(shutdown_timer);
	listener_close_all();
	evdns_base_free(proxy.dns, 0);
	event_base_free(proxy.base);
	tls_free();
	return 0;
}

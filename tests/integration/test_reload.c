/*
 * test_reload.c — SIGHUP re-reads the whole configuration: new sessions get
 * the new settings (a lower max_sessions, another upstream, require_tls,
 * log_level), listeners come and go without a refused connection on the
 * ones that stay, running sessions keep theirs to the end (a MULTIAPPEND
 * across the reload finishes with its own limits, and is undone on its own
 * upstream when it fails), keys that need a restart keep their running
 * values with a warning, and a file that does not load (a syntax error, a
 * missing certificate, a port taken, a metrics address taken) is refused
 * whole with the reason logged, the old configuration staying in force.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define N 5			/* messages in a MULTIAPPEND */

static struct mock mock2;	/* a second upstream */
static char certs[64];

static void
teardown(void)
{
	char cmd[128];

	harness_teardown();
	mock_stop(&mock2);
	if (certs[0] != '\0') {
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", certs);
		if (system(cmd) != 0)
			cr_log_warn("could not remove %s", certs);
	}
}

TestSuite(reload, .fini = teardown, .timeout = 120);

/* ---- the configuration, rewritten, and SIGHUP ---- */

/* px's configuration file: the harness's spool and settling, then text. */
static void
write_conf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
write_conf(const char *fmt, ...)
{
	FILE *f = fopen(px.conf, "w");
	va_list ap;

	cr_assert_not_null(f);
	fprintf(f, "spool_dir = %s/spool\nconnect_timeout = 5\nrollback_settle = 1\n",
	    px.dir);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

/* The log from offset on, once it holds want; malloc'ed. */
static char *
log_until(size_t offset, const char *want)
{
	for (int i = 0; i < 750; i++) {
		char *log = proxy_log(&px);

		if (strlen(log) >= offset && strstr(log + offset, want) != NULL) {
			char *tail = strdup(log + offset);

			free(log);
			return tail;
		}
		free(log);
		usleep(20 * 1000);
	}
	cr_assert_fail("no \"%s\" in the log after a reload:\n%s", want, proxy_log(&px));
	return NULL;
}

static size_t
log_length(void)
{
	char *log = proxy_log(&px);
	size_t n = strlen(log);

	free(log);
	return n;
}

/* SIGHUP with the file as it is now; what the log says about it (from the
 * reload's own lines on), malloc'ed.  ok: "reloaded", else "reload refused". */
static char *
sighup(bool ok)
{
	size_t at = log_length();
	char *tail;

	cr_assert_eq(kill(px.pid, SIGHUP), 0);
	tail = log_until(at, ok ? "info: reloaded " : "error: reload refused: ");
	if (ok)
		cr_assert_null(strstr(tail, "reload refused"), "%s", tail);
	else
		cr_assert_null(strstr(tail, "info: reloaded "), "%s", tail);
	return tail;
}

/* The port of the last "listening on addr:PORT" in text (0: none). */
static int
listening_port(const char *text, const char *addr)
{
	char key[64];
	const char *p, *last = NULL;

	snprintf(key, sizeof key, "listening on %s:", addr);
	for (p = strstr(text, key); p != NULL; p = strstr(p + 1, key))
		last = p;
	return last != NULL ? atoi(last + strlen(key)) : 0;
}

static const char *
path_of_ca(void)
{
	static char path[128];

	snprintf(path, sizeof path, "%s/ca.pem", certs);
	return path;
}

/* ---- clients ---- */

static int
connect_errno(const char *addr, int port, int *fd)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int on = 1;

	sin.sin_port = htons((uint16_t)port);
	cr_assert_eq(inet_pton(AF_INET, addr, &sin.sin_addr), 1);
	*fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(*fd, 0);
	if (connect(*fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
		int e = errno;

		close(*fd);
		*fd = -1;
		return e;
	}
	setsockopt(*fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
	return 0;
}

/* imapc_connect to another loopback address. */
static void
connect_to(struct imapc *c, const char *addr, int port)
{
	int e;

	memset(c, 0, sizeof *c);
	e = connect_errno(addr, port, &c->fd);
	cr_assert_eq(e, 0, "connect to %s:%d: %s", addr, port, strerror(e));
}

static void
refused_at(const char *addr, int port)
{
	int fd, e = connect_errno(addr, port, &fd);

	if (fd >= 0)
		close(fd);
	cr_assert_eq(e, ECONNREFUSED, "%s:%d still accepts (%s)", addr, port,
	    e == 0 ? "connected" : strerror(e));
}

/* A session logged in as the mock's user, its greeting checked. */
static void
session_at(struct imapc *c, const char *addr, int port)
{
	char *line;

	connect_to(c, addr, port);
	line = imapc_line(c);
	cr_assert(line != NULL && strncmp(line, "* OK", 4) == 0, "greeting: %s",
	    line != NULL ? line : "(none)");
	free(line);
	imapc_login(c, "test", "secret");
}

/* The next connection is refused at the limit: "* BYE", then closed. */
static void
bye_at(const char *addr, int port)
{
	struct imapc c;
	char *line;

	connect_to(&c, addr, port);
	line = imapc_line(&c);
	cr_assert(line != NULL && strncmp(line, "* BYE Too many connections", 26) == 0,
	    "%s:%d: %s", addr, port, line != NULL ? line : "(nothing)");
	free(line);
	cr_assert(imapc_wait_closed(&c));
	imapc_close(&c);
}

/* The session still answers, selected state and all. */
static void
still_works(struct imapc *c)
{
	free(imapc_ok(c, "n", "NOOP"));
	free(imapc_ok(c, "s", "SELECT INBOX"));
	free(imapc_ok(c, "u", "UNSELECT"));
}

/* ---- (a) a lower limit and a new listener, a session open across ---- */

Test(reload, lower_limit_and_new_listener_while_a_session_stays)
{
	struct imapc a, b, c;
	char *log;
	int port2;

	harness_start(NULL, NULL);
	session_at(&a, "127.0.0.1", px.port);
	free(imapc_ok(&a, "s", "SELECT INBOX"));
	write_conf("listen = 127.0.0.1:0\nlisten = 127.0.0.2:0\nupstream = 127.0.0.1:%d\n"
	    "log_level = debug\nmax_sessions = 2\n", mock.port);
	log = sighup(true);
	port2 = listening_port(log, "127.0.0.2");
	cr_assert_gt(port2, 0, "%s", log);
	cr_assert_not_null(strstr(log, ": changed listen, max_sessions; new listener "
	    "127.0.0.2:"), "%s", log);
	free(log);

	/* the old session, selected before the reload, goes on */
	free(imapc_ok(&a, "n", "NOOP"));
	still_works(&a);
	/* the new listener accepts; the old one kept its socket */
	session_at(&b, "127.0.0.2", port2);
	still_works(&b);
	/* a third session is one too many now: on either listener */
	bye_at("127.0.0.1", px.port);
	bye_at("127.0.0.2", port2);
	imapc_close(&b);
	session_at(&c, "127.0.0.1", px.port);
	still_works(&c);
	still_works(&a);
	imapc_close(&c);
	imapc_close(&a);
}

/* ---- (b) a listener removed: closed, its session goes on ---- */

Test(reload, removed_listener_closes_and_its_session_goes_on)
{
	struct imapc a, b;
	char *log;
	int port2;

	harness_start(NULL, "listen = 127.0.0.2:0\n");
	log = proxy_log(&px);
	port2 = listening_port(log, "127.0.0.2");
	free(log);
	cr_assert_gt(port2, 0);
	session_at(&a, "127.0.0.1", px.port);
	session_at(&b, "127.0.0.2", port2);

	/* the first line goes */
	write_conf("listen = 127.0.0.2:0\nupstream = 127.0.0.1:%d\nlog_level = debug\n",
	    mock.port);
	log = sighup(true);
	cr_assert_not_null(strstr(log, "no longer listening on 127.0.0.1:"), "%s", log);
	cr_assert_not_null(strstr(log, ": changed listen; closed listener 127.0.0.1:"),
	    "%s", log);
	cr_assert_null(strstr(log, "listening on 127.0.0.2:"), "the kept listener "
	    "was bound again: %s", log);
	free(log);
	refused_at("127.0.0.1", px.port);
	still_works(&a);
	still_works(&b);
	imapc_close(&b);
	session_at(&b, "127.0.0.2", port2);
	still_works(&b);
	imapc_close(&b);
	still_works(&a);
	imapc_close(&a);
}

/* ---- (c) a file that does not load: refused whole, the old stays ---- */

/* mappend's open files: a refused reload leaves none of its own. */
static size_t
open_files(void)
{
	char cmd[128], *line = NULL;
	size_t len = 0, n = 0;
	FILE *f;

	snprintf(cmd, sizeof cmd, "ls /proc/%ld/fd", (long)px.pid);
	f = popen(cmd, "r");
	cr_assert_not_null(f);
	while (getline(&line, &len, f) > 0)
		n++;
	free(line);
	pclose(f);
	return n;
}

/* The settings of the start are in force: one listener, two sessions. */
static void
old_settings_work(void)
{
	struct imapc a, b;

	session_at(&a, "127.0.0.1", px.port);
	session_at(&b, "127.0.0.1", px.port);
	bye_at("127.0.0.1", px.port);
	still_works(&a);
	imapc_close(&b);
	imapc_close(&a);
}

/* The file as it is now is refused: what the log says about it.  Nothing
 * it bound is left open (the new listener on 127.0.0.2, bound before what
 * failed, is closed again), and the old settings are in force. */
static char *
refused_whole(void)
{
	size_t before = open_files();
	char *log = sighup(false);

	cr_assert_null(strstr(log, "listening on 127.0.0.2"), "%s", log);
	cr_assert_eq(open_files(), before, "a refused reload left files open");
	old_settings_work();
	return log;
}

Test(reload, syntax_error_refused)
{
	char *log;

	harness_start(NULL, "max_sessions = 2\n");
	write_conf("listen = 127.0.0.1:0\nlisten = 127.0.0.2:0\nupstream = "
	    "127.0.0.1:%d\nlog_level = debug\nmax_sessions = 5\nmax_sesions = 6\n",
	    mock.port);
	log = refused_whole();
	cr_assert_not_null(strstr(log, "error: reload refused: "), "%s", log);
	cr_assert_not_null(strstr(log, "/mappend.conf:9: unknown key \"max_sesions\"; "
	    "the running configuration stays\n"), "%s", log);
	free(log);
}

Test(reload, missing_certificate_refused)
{
	char *log;

	harness_start(NULL, "max_sessions = 2\n");
	write_conf("listen = 127.0.0.1:0\nlisten = 127.0.0.2:0\nupstream = "
	    "127.0.0.1:%d\nlog_level = debug\nmax_sessions = 5\n"
	    "tls_cert = %s/none.pem\ntls_key = %s/none.key\n", mock.port, px.dir,
	    px.dir);
	log = refused_whole();
	cr_assert_not_null(strstr(log, "error: reload refused: tls_cert "), "%s", log);
	cr_assert_not_null(strstr(log, "/none.pem: No such file or directory; the "
	    "running configuration stays\n"), "%s", log);
	free(log);
}

/* A port taken: the other new listener, bound first, is closed again and
 * nothing else changes. */
Test(reload, port_taken_refused_and_nothing_changes)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof sin;
	char *log;
	int fd, taken;

	harness_start(NULL, "max_sessions = 2\n");
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	cr_assert_eq(listen(fd, 1), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	taken = ntohs(sin.sin_port);
	write_conf("listen = 127.0.0.1:0\nlisten = 127.0.0.2:0\nlisten = "
	    "127.0.0.1:%d\nupstream = 127.0.0.1:%d\nlog_level = debug\n"
	    "max_sessions = 5\n", taken, mock.port);
	log = refused_whole();
	cr_assert_not_null(strstr(log, "reload refused: listen 127.0.0.1:"), "%s", log);
	cr_assert_not_null(strstr(log, ": Address already in use; the running "
	    "configuration stays"), "%s", log);
	free(log);
	close(fd);
}

/* The metrics listener is the last thing that can fail: the new listener
 * bound before it is closed again. */
Test(reload, metrics_address_taken_refused)
{
	char *log;

	harness_start(NULL, "max_sessions = 2\n");
	write_conf("listen = 127.0.0.1:0\nlisten = 127.0.0.2:0\nupstream = "
	    "127.0.0.1:%d\nlog_level = debug\nmax_sessions = 5\n"
	    "metrics_listen = 127.0.0.1:%d\n", mock.port, mock.port);
	log = refused_whole();
	cr_assert_not_null(strstr(log, "reload refused: metrics_listen 127.0.0.1:"),
	    "%s", log);
	free(log);
}

/* ---- (d) log_level ---- */

static size_t
count_in_log(size_t from, const char *what)
{
	char *log = proxy_log(&px);
	size_t n = strlen(log) > from ? count_substr(log + from, strlen(log + from),
	    what) : 0;

	free(log);
	return n;
}

Test(reload, log_level_takes_effect)
{
	struct imapc a;
	size_t at;
	char *log;

	harness_start(NULL, NULL);
	write_conf("listen = 127.0.0.1:0\nupstream = 127.0.0.1:%d\nlog_level = warning\n",
	    mock.port);
	/* the line about the reload is seen at the old level */
	log = sighup(true);
	cr_assert_not_null(strstr(log, ": changed log_level\n"), "%s", log);
	free(log);
	at = log_length();
	session_at(&a, "127.0.0.1", px.port);
	still_works(&a);
	imapc_close(&a);
	usleep(100 * 1000);
	cr_assert_eq(count_in_log(at, "connection from"), 0);
	cr_assert_eq(count_in_log(at, "debug: "), 0);

	write_conf("listen = 127.0.0.1:0\nupstream = 127.0.0.1:%d\nlog_level = info\n",
	    mock.port);
	/* and at the new one */
	free(sighup(true));
	at = log_length();
	session_at(&a, "127.0.0.1", px.port);
	still_works(&a);
	imapc_close(&a);
	free(log_until(at, "info: s"));
	cr_assert_gt(count_in_log(at, "connection from"), 0);
	cr_assert_eq(count_in_log(at, "debug: "), 0);
}

/* ---- (e) another upstream for new sessions ---- */

Test(reload, new_upstream_for_new_sessions_only)
{
	const char *args2[] = { "--mailbox", "only-on-two", NULL };
	struct imapc a, b;
	char *r;

	harness_start(NULL, NULL);
	mock_start(&mock2, args2);
	session_at(&a, "127.0.0.1", px.port);
	write_conf("listen = 127.0.0.1:0\nupstream = 127.0.0.1:%d\nlog_level = debug\n",
	    mock2.port);
	r = sighup(true);
	cr_assert_not_null(strstr(r, ": changed upstream\n"), "%s", r);
	free(r);
	session_at(&b, "127.0.0.1", px.port);
	r = imapc_ok(&b, "l", "LIST \"\" *");
	cr_assert_not_null(strstr(r, "only-on-two"), "new session not on the new "
	    "upstream: %s", r);
	free(r);
	r = imapc_ok(&a, "l", "LIST \"\" *");
	cr_assert_null(strstr(r, "only-on-two"), "old session moved: %s", r);
	free(r);
	still_works(&a);
	imapc_close(&a);
	imapc_close(&b);
}

/* ---- (f) a MULTIAPPEND across the reload ---- */

static size_t body_size(unsigned i) { return 200 + 37 * i; }

static char *
body(unsigned i)
{
	size_t n = body_size(i), k;
	char *b = malloc(n);

	cr_assert_not_null(b);
	for (k = 0; k < n; k++)
		b[k] = (char)('a' + (k + i) % 26);
	memcpy(b, "Subject: x\r\n\r\n", 14);
	return b;
}

/* The command of n messages, sent whole (non-synchronizing literals). */
static void
send_multiappend(struct imapc *c, const char *tag, unsigned n)
{
	imapc_send(c, "%s APPEND INBOX", tag);
	for (unsigned i = 0; i < n; i++) {
		char *b = body(i);

		imapc_send(c, " {%zu+}\r\n", body_size(i));
		imapc_send_raw(c, b, body_size(i));
		free(b);
	}
	imapc_send(c, "\r\n");
}

static char *
messages(int port)
{
	struct imapc d;
	char *r;

	imapc_connect_login(&d, port, "test", "secret");
	r = imapc_ok(&d, "s", "STATUS INBOX (MESSAGES)");
	imapc_close(&d);
	return r;
}

/* Slow answers: the reload comes while the messages go up one by one.  The
 * upload ends as it would have (its session's max_messages and upstream),
 * the session's next MULTIAPPEND too; a new session has the new limit. */
Test(reload, multiappend_across_sighup_completes)
{
	struct imapc a, b, d;
	char *r;

	harness_start(NULL, NULL);
	mock_start(&mock2, NULL);
	session_at(&a, "127.0.0.1", px.port);
	imapc_connect_login(&d, mock.port, "test", "secret");
	free(imapc_ok(&d, "dl", "XMOCK DELAY 150"));
	send_multiappend(&a, "m", N);
	usleep(300 * 1000);
	write_conf("listen = 127.0.0.1:0\nupstream = 127.0.0.1:%d\nlog_level = debug\n"
	    "max_messages = 2\n", mock2.port);
	free(sighup(true));
	r = imapc_until_tagged(&a, "m", NULL);
	cr_assert_not_null(r, "no answer");
	cr_assert(tagged_ok(r, "m"), "%s", r);
	cr_assert_not_null(strstr(r, "[APPENDUID "), "%s", r);
	free(r);
	free(imapc_ok(&d, "dl", "XMOCK DELAY 0"));
	imapc_close(&d);
	/* its own limit still: 1000 */
	send_multiappend(&a, "m2", N);
	r = imapc_until_tagged(&a, "m2", NULL);
	cr_assert(r != NULL && tagged_ok(r, "m2"), "%s", r);
	free(r);
	r = messages(mock.port);
	cr_assert_not_null(strstr(r, "MESSAGES 10)"), "%s", r);
	free(r);
	r = messages(mock2.port);
	cr_assert_not_null(strstr(r, "MESSAGES 0)"), "%s", r);
	free(r);
	/* a new session: the new upstream and the new limit */
	session_at(&b, "127.0.0.1", px.port);
	send_multiappend(&b, "m3", N);
	r = imapc_until_tagged(&b, "m3", NULL);
	cr_assert(r != NULL && strncmp(last_line(r), "m3 NO", 5) == 0, "%s", r);
	free(r);
	imapc_close(&b);
	imapc_close(&a);
}

/*
 * The upstream stalls half-way; the reload names another upstream and a
 * longer upstream_idle_timeout.  The session's own timeout ends the wait,
 * and the removal runs on a second connection to the session's upstream,
 * not the new one: nothing is left behind.
 */
Test(reload, multiappend_undone_on_its_own_upstream)
{
	struct imapc a, d;
	char *r, *line;

	harness_start(NULL, "upstream_idle_timeout = 2\n");
	mock_start(&mock2, NULL);
	imapc_connect_login(&d, mock.port, "test", "secret");
	free(imapc_ok(&d, "f", "XMOCK FAULT APPEND-STALL-AFTER 3"));
	session_at(&a, "127.0.0.1", px.port);
	send_multiappend(&a, "m", N);
	free(log_until(0, "APPEND preparing -> sending"));
	write_conf("listen = 127.0.0.1:0\nupstream = 127.0.0.1:%d\nlog_level = debug\n"
	    "upstream_idle_timeout = 60\n", mock2.port);
	free(sighup(true));
	r = imapc_until_tagged(&a, "m", NULL);
	cr_assert_not_null(r, "no answer");
	cr_assert(strncmp(last_line(r), "m NO [UNAVAILABLE]", 18) == 0, "%s", r);
	free(r);
	line = imapc_line(&a);
	cr_assert(line != NULL && strncmp(line, "* BYE", 5) == 0, "%s", line);
	free(line);
	imapc_close(&a);
	free(imapc_ok(&d, "c", "XMOCK FAULT CLEAR"));
	r = imapc_ok(&d, "s", "STATUS INBOX (MESSAGES)");
	cr_assert_not_null(strstr(r, "MESSAGES 0)"), "left behind: %s", r);
	free(r);
	imapc_close(&d);
	r = proxy_log(&px);
	cr_assert_not_null(strstr(r, "on a second connection"), "%s", r);
	free(r);
	r = messages(mock2.port);
	cr_assert_not_null(strstr(r, "MESSAGES 0)"), "%s", r);
	free(r);
}

/* ---- (g) keys that need a restart ---- */

Test(reload, restart_keys_warned_and_the_rest_applied)
{
	char *log, other[400], pidf[400];
	struct imapc a;
	struct stat st;

	harness_start(NULL, NULL);
	snprintf(other, sizeof other, "%s/other-spool", px.dir);
	snprintf(pidf, sizeof pidf, "%s/mappend.pid", px.dir);
	/* written by hand: spool_dir is not the harness's */
	{
		FILE *f = fopen(px.conf, "w");

		cr_assert_not_null(f);
		fprintf(f, "listen = 127.0.0.1:0\nupstream = 127.0.0.1:%d\nlog_level = "
		    "debug\nconnect_timeout = 5\nspool_dir = %s\npid_file = %s\n"
		    "max_sessions = 1\nrollback_settle = 1\n", mock.port, other, pidf);
		fclose(f);
	}
	log = sighup(true);
	cr_assert_not_null(strstr(log, "warning: reload: spool_dir = \""), "%s", log);
	cr_assert_not_null(strstr(log, "/other-spool\" takes effect at the next "
	    "restart; until then mappend keeps spool_dir = \""), "%s", log);
	cr_assert_not_null(strstr(log, "warning: reload: pid_file = \""), "%s", log);
	cr_assert_not_null(strstr(log, ": changed max_sessions; spool_dir needs a "
	    "restart; pid_file needs a restart\n"), "%s", log);
	free(log);
	cr_assert_neq(stat(other, &st), 0, "the new spool_dir was used");
	cr_assert_neq(stat(pidf, &st), 0, "the new pid_file was written");
	/* the limit was applied all the same */
	session_at(&a, "127.0.0.1", px.port);
	bye_at("127.0.0.1", px.port);
	still_works(&a);
	imapc_close(&a);
	/* the same file again: the running values stay, nothing else changed */
	log = sighup(true);
	cr_assert_not_null(strstr(log, ": spool_dir needs a restart; pid_file needs a "
	    "restart\n"), "%s", log);
	free(log);
}

/* ---- what a listener tells its sessions ---- */

/* require_tls = yes on a listener that stays: new sessions may not log in
 * before STARTTLS, an old one still may (its listener said so). */
Test(reload, require_tls_for_new_sessions)
{
	struct imapc a, b;
	char conf[1024], *r;

	snprintf(certs, sizeof certs, "/tmp/mappend-certs.XXXXXX");
	cr_assert_not_null(mkdtemp(certs));
	make_certs(certs);
	snprintf(conf, sizeof conf, "tls_cert = %s/server.pem\ntls_key = %s/server.key\n",
	    certs, certs);
	harness_start(NULL, conf);
	connect_to(&a, "127.0.0.1", px.port);
	free(imapc_line(&a));
	write_conf("listen = 127.0.0.1:0\nupstream = 127.0.0.1:%d\nlog_level = debug\n"
	    "%srequire_tls = yes\n", mock.port, conf);
	r = sighup(true);
	cr_assert_not_null(strstr(r, ": changed require_tls\n"), "%s", r);
	free(r);
	connect_to(&b, "127.0.0.1", px.port);
	free(imapc_line(&b));
	r = imapc_command(&b, "c", "CAPABILITY");
	cr_assert_not_null(strstr(r, "LOGINDISABLED"), "%s", r);
	free(r);
	r = imapc_command(&b, "l", "LOGIN test secret");
	cr_assert_not_null(strstr(last_line(r), "l NO [PRIVACYREQUIRED]"), "%s", r);
	free(r);
	imapc_close(&b);
	r = imapc_command(&a, "c", "CAPABILITY");
	cr_assert_null(strstr(r, "LOGINDISABLED"), "%s", r);
	free(r);
	imapc_login(&a, "test", "secret");
	still_works(&a);
	imapc_close(&a);
}

/* A line whose options change keeps its socket (host and port the same):
 * new connections speak TLS from the first byte, the old one goes on in
 * the clear. */
Test(reload, options_changed_on_the_same_socket)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof sin;
	struct imapc a, b;
	char conf[1024], *r;
	int fd, port;

	snprintf(certs, sizeof certs, "/tmp/mappend-certs.XXXXXX");
	cr_assert_not_null(mkdtemp(certs));
	make_certs(certs);
	/* a port the kernel chose, for a line that must name one */
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	port = ntohs(sin.sin_port);
	close(fd);
	snprintf(conf, sizeof conf, "tls_cert = %s/server.pem\ntls_key = %s/server.key\n",
	    certs, certs);
	harness_start(NULL, conf);
	write_conf("listen = 127.0.0.1:0\nlisten = 127.0.0.2:%d\nupstream = "
	    "127.0.0.1:%d\nlog_level = debug\n%s", port, mock.port, conf);
	free(sighup(true));
	session_at(&a, "127.0.0.2", port);

	write_conf("listen = 127.0.0.1:0\nlisten = 127.0.0.2:%d tls\nupstream = "
	    "127.0.0.1:%d\nlog_level = debug\n%s", port, mock.port, conf);
	r = sighup(true);
	cr_assert_not_null(strstr(r, ": changed listen; listener 127.0.0.2:"), "%s", r);
	cr_assert_not_null(strstr(r, " now tls\n"), "%s", r);
	cr_assert_null(strstr(r, "listening on 127.0.0.2"), "bound again: %s", r);
	free(r);
	connect_to(&b, "127.0.0.2", port);
	cr_assert(imapc_tls(&b, path_of_ca()), "no TLS on the changed listener");
	r = imapc_line(&b);
	cr_assert(r != NULL && strncmp(r, "* OK", 4) == 0, "%s", r);
	free(r);
	imapc_login(&b, "test", "secret");
	still_works(&b);
	imapc_close(&b);
	still_works(&a);
	imapc_close(&a);
}

Test(reload, unchanged_file)
{
	char *log;

	harness_start(NULL, NULL);
	log = sighup(true);
	cr_assert_not_null(strstr(log, ".conf: no change\n"), "%s", log);
	cr_assert_null(strstr(log, "listening on"), "%s", log);
	free(log);
}

/*
 * log.c — one line per event, on stderr or syslog, each written whole so that
 * lines never interleave, and scrubbed so that a peer cannot forge lines.
 * Lines on stderr start with an ISO 8601 time, except under systemd's
 * journal, which stamps them itself.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* Long enough for any sane line, short enough for the stack and for one
 * atomic write to a pipe (PIPE_BUF is 4096 on Linux). */
#define LOG_LINE_MAX 2048

static const char *const level_names[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARNING] = "warning",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

static const int level_priorities[] = {
	[LOG_LEVEL_ERROR] = LOG_ERR,
	[LOG_LEVEL_WARNING] = LOG_WARNING,
	[LOG_LEVEL_INFO] = LOG_INFO,
	[LOG_LEVEL_DEBUG] = LOG_DEBUG,
};

/* Usable before log_init: the daemon logs config errors before it has one. */
static char log_ident[64] = "mappend";
static enum log_level log_level = LOG_LEVEL_INFO;
static bool log_syslog;
/* while starting a daemon: syslog and the terminal that started it */
static bool log_stderr_too;
static bool log_timestamps = true;

static bool
log_level_valid(enum log_level level)
{
	return (unsigned)level <= LOG_LEVEL_DEBUG;
}

bool
log_stderr_is_journal(void)
{
	const char *v = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	int end = 0;

	/* systemd.exec(5): "DEV:INODE" of the stream it connected; a child
	 * whose stderr was redirected inherits the variable, hence the check */
	if (v == NULL || sscanf(v, "%llu:%llu%n", &dev, &ino, &end) != 2 ||
	    v[end] != '\0')
		return false;
	if (fstat(STDERR_FILENO, &st) != 0)
		return false;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

void
log_address(const struct sockaddr *sa, char *buf, size_t len, char *host,
    size_t hostlen)
{
	char h[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)sa;

		inet_ntop(AF_INET, &sin->sin_addr, h, sizeof(h));
		port = ntohs(sin->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)sa;

		inet_ntop(AF_INET6, &sin6->sin6_addr, h, sizeof(h));
		port = ntohs(sin6->sin6_port);
	}
	snprintf(buf, len, sa->sa_family == AF_INET6 ? "[%s]:%d" : "%s:%d", h, port);
	if (host != NULL)
		snprintf(host, hostlen, "%s", h);
}

double
log_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void
log_init(const char *ident, enum log_level level, bool use_syslog)
{
	if (log_syslog)
		closelog();
	/* openlog keeps the pointer, so the ident lives in our static copy */
	if (ident != NULL && *ident != '\0')
		snprintf(log_ident, sizeof log_ident, "%s", ident);
	log_set_level(level);
	log_syslog = use_syslog;
	log_stderr_too = false;
	log_timestamps = !log_stderr_is_journal();
	if (log_syslog)
		openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void
log_set_level(enum log_level level)
{
	if (log_level_valid(level))
		log_level = level;
}

void
log_also_stderr(bool on)
{
	log_stderr_too = on;
}

enum log_level
log_get_level(void)
{
	return log_level;
}

int
log_level_parse(const char *name)
{
	if (name == NULL)
		return -1;
	for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
		if (strcmp(name, level_names[i]) == 0)
			return (int)i;
	}
	return -1;
}

int
log_format_time(const struct timespec *ts, char *buf, size_t len)
{
	struct tm tm;
	long off;
	char date[32];
	int n;

	if (localtime_r(&ts->tv_sec, &tm) == NULL)
		return -1;
	if (strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		return -1;
	off = tm.tm_gmtoff / 60;
	n = snprintf(buf, len, "%s.%03ld%c%02ld:%02ld", date, ts->tv_nsec / 1000000,
	    off < 0 ? '-' : '+', labs(off) / 60, labs(off) % 60);
	return n < 0 || (size_t)n >= len ? -1 : n;
}

/* Replace what a terminal or a log reader would take as structure. */
static void
log_scrub(char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 || ch == 0x7f)
			s[i] = '?';
	}
}

void
log_msg(enum log_level level, uint64_t session, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	size_t cap = sizeof line - 1;	/* room for the newline */
	size_t stamp_len = 0, ident_len, len;
	int saved_errno = errno;	/* callers log, then look at errno */
	int n;
	va_list ap;

	if (!log_level_valid(level) || level > log_level)
		return;

	if (log_timestamps && (!log_syslog || log_stderr_too)) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		if ((n = log_format_time(&ts, line, cap)) > 0) {
			line[n] = ' ';
			stamp_len = (size_t)n + 1;
		}
	}
	n = snprintf(line + stamp_len, cap - stamp_len, "%s[%ld]: ", log_ident,
	    (long)getpid());
	if (n < 0)
		goto out;
	ident_len = stamp_len + (size_t)n;
	len = ident_len;
	if (session != 0)
		n = snprintf(line + len, cap - len, "%s: s%" PRIu64 ": ",
		    level_names[level], session);
	else
		n = snprintf(line + len, cap - len, "%s: ", level_names[level]);
	if (n < 0)
		goto out;
	len += (size_t)n;

	/* %m must see the caller's errno */
	errno = saved_errno;
	va_start(ap, fmt);
	n = vsnprintf(line + len, cap - len, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= cap - len) {
		/* vsnprintf filled the buffer up to cap - 1 bytes */
		log_scrub(line + len, cap - 1 - len);
		len = cap - 1;
		memcpy(line + len - 3, "...", 3);
	} else {
		log_scrub(line + len, (size_t)n);
		len += (size_t)n;
	}

	if (log_syslog) {
		line[len] = '\0';
		syslog(level_priorities[level], "%s", line + ident_len);
	}
	if (!log_syslog || log_stderr_too) {
		line[len++] = '\n';
		/* one write per line: concurrent writers never interleave */
		while (write(STDERR_FILENO, line, len) < 0 && errno == EINTR)
			;
	}
out:
	errno = saved_errno;
}

/*
 * log.h — log lines to stderr or syslog, each carrying the session id.
 * Callers never pass passwords, tokens or message contents.
 */
#ifndef MAPPEND_LOG_H
#define MAPPEND_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct timespec;

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARNING, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/*
 * ident: program name for syslog and stderr lines.  Lines on stderr start
 * with the local time (ISO 8601, milliseconds, UTC offset), unless stderr is
 * systemd's journal, which adds its own.
 */
void log_init(const char *ident, enum log_level level, bool use_syslog);
/* With syslog: write every line to stderr as well, so that a daemon's
 * start-up errors reach the terminal that started it (until it detaches). */
void log_also_stderr(bool on);
/* Is stderr the journal stream systemd gave us (JOURNAL_STREAM)? */
bool log_stderr_is_journal(void);
/* "2026-12-01T16:22:35.123+01:00" into buf; its length, -1 if too short. */
int log_format_time(const struct timespec *, char *buf, size_t len);
struct sockaddr;
/* An IPv4 or IPv6 address with its port for log lines, "192.0.2.1:143" or
 * "[2001:db8::1]:143"; host alone (without port) into host if not NULL. */
void log_address(const struct sockaddr *, char *buf, size_t len, char *host,
    size_t hostlen);
/* Seconds on the monotonic clock: durations in log lines and metrics. */
double log_clock(void);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* "error", "warning", "info", "debug"; -1 when unknown */
int log_level_parse(const char *name);

/* session 0: the daemon itself; otherwise "s<id>" starts the line */
void log_msg(enum log_level level, uint64_t session, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(sid, ...) log_msg(LOG_LEVEL_ERROR, (sid), __VA_ARGS__)
#define log_warn(sid, ...)  log_msg(LOG_LEVEL_WARNING, (sid), __VA_ARGS__)
#define log_info(sid, ...)  log_msg(LOG_LEVEL_INFO, (sid), __VA_ARGS__)
#define log_debug(sid, ...) \
	do { if (log_get_level() >= LOG_LEVEL_DEBUG) log_msg(LOG_LEVEL_DEBUG, (sid), __VA_ARGS__); } while (0)

#endif

/*
 * metrics.h — the daemon's counters, and an optional HTTP listener that
 * serves them to Prometheus (text exposition format 0.0.4) at /metrics.
 * The counting functions cost a few additions and may be called whether or
 * not the listener runs; counts live as long as the process (a reload keeps
 * them, as Prometheus expects of counters).
 */
#ifndef MAPPEND_METRICS_H
#define MAPPEND_METRICS_H

#include <stdbool.h>
#include <stdint.h>

struct config;
struct event_base;
struct evbuffer;

/* How a session ended: the "reason" label of mappend_sessions_closed_total. */
enum metrics_end {
	METRICS_END_CLIENT,	/* the client logged out or went away */
	METRICS_END_IDLE,	/* client_idle_timeout: autologout */
	METRICS_END_UPSTREAM,	/* the upstream went away, refused or timed out */
	METRICS_END_SHUTDOWN,	/* SIGTERM */
	METRICS_END_LIMIT,	/* refused at a limit (max_sessions, ...) */
	METRICS_END_ERROR,	/* protocol error, out of memory, anything else */
	METRICS_END_COUNT
};

/* How a MULTIAPPEND ended: the "outcome" label of mappend_multiappends_total. */
enum metrics_outcome {
	METRICS_MA_OK,			/* all stored, tagged OK */
	METRICS_MA_REFUSED,		/* NO, and none of it was stored: refused
					 * by mappend or by the upstream */
	METRICS_MA_ROLLED_BACK,		/* failed half-way, what was stored removed */
	METRICS_MA_ROLLBACK_FAILED,	/* failed half-way, something left behind */
	METRICS_MA_CLIENT_GONE,		/* the client left while it ran */
	METRICS_MA_COUNT
};

/* The label values, for log lines that should use the same words. */
const char *metrics_end_name(enum metrics_end);
const char *metrics_outcome_name(enum metrics_outcome);

void metrics_session_opened(void);
void metrics_session_closed(enum metrics_end);
void metrics_login(bool ok);
/* One MULTIAPPEND (several messages; emulated, or passed to an upstream
 * with MULTIAPPEND of its own), however it ended: seconds from its command line to its
 * tagged answer (or to the end of the job when the client left); messages
 * and message bytes sent upstream (0 when refused before the replay). */
void metrics_multiappend(enum metrics_outcome, double seconds,
    unsigned messages, uint64_t bytes);
/* A rollback finished: ok when everything it had to remove is gone. */
void metrics_rollback(bool ok);
/* Journal records resolved at start. */
void metrics_recovery(unsigned n);
void metrics_upstream_connect_error(void);
/* Spool space reserved (+) or released (-). */
void metrics_spool_bytes(int64_t delta);

/*
 * Listen on metrics_listen, if set (-1 logged when the address cannot be
 * bound; a non-loopback address is logged as a warning).  Calling it again,
 * e.g. on a reload, moves the listener only if the address changed: the new
 * one is bound before the old one closes, so a failure keeps the old.
 */
int metrics_start(struct event_base *, const struct config *);
/* Close the listener (the counts stay). */
void metrics_stop(void);
/* The port it listens on (metrics_listen with port 0), -1 when off. */
int metrics_port(void);

/* Every metric, HELP and TYPE lines included, appended to out (what
 * /metrics answers).  -1 when out of memory. */
int metrics_render(struct evbuffer *out);
/* s as a label value ("\\" "\"" and newline escaped) appended to out;
 * every label value goes through it. */
int metrics_append_label_value(struct evbuffer *out, const char *s);

#endif

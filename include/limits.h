/*
 * limits.h — admission of new client connections: max_sessions for all,
 * and per client address max_sessions_per_address and a connection rate
 * (a token bucket: connection_rate_per_address tokens a second, at most
 * connection_burst_per_address).  Refusals are logged aggregated: the
 * first of a kind at once, the others as one summary line per window.
 *
 * An address is an IPv4 or IPv6 address without its port; an IPv4-mapped
 * IPv6 address (::ffff:192.0.2.7) is the IPv4 address.
 */
#ifndef MAPPEND_LIMITS_H
#define MAPPEND_LIMITS_H

#include <stdint.h>

struct config;
struct event_base;
struct sockaddr;

/* Addresses with no session that the table keeps for their token buckets;
 * beyond that the one unseen longest is forgotten (limits.c says why). */
#define LIMITS_IDLE_MAX 65536
/* Seconds over which refusals of one kind are summed up in one line. */
#define LIMITS_WARNING_WINDOW 60.0

enum limits_verdict {
	LIMITS_OK,
	LIMITS_TOO_MANY_SESSIONS,	/* max_sessions, all addresses together */
	LIMITS_TOO_MANY_FROM_ADDRESS,	/* max_sessions_per_address */
	LIMITS_TOO_FAST,		/* connection_rate_per_address */
};
#define LIMITS_NVERDICTS 4

/*
 * The summaries' timer runs on base, one window every window seconds
 * (LIMITS_WARNING_WINDOW; tests choose less).  Without it (the fuzzer,
 * unit tests) admission works the same and summaries wait for
 * limits_flush.  0, or -1 when the timers cannot be made.
 */
int limits_init(struct event_base *base, double window);
/* Write what the open windows counted, and close them. */
void limits_flush(void);
/* limits_flush, then free everything (at exit). */
void limits_free(void);

/*
 * May a connection from client (its address, or the one a PROXY header
 * gave) begin at time now (seconds, any fixed origin, never going back
 * much)?  LIMITS_OK counts it as a session of that address until
 * limits_release; any other verdict is a refusal, logged here.
 */
enum limits_verdict limits_admit(const struct sockaddr *client,
    const struct config *cfg, double now);
/* A session admitted with LIMITS_OK ended: exactly once per LIMITS_OK,
 * with the same address. */
void limits_release(const struct sockaddr *client);
/* The "* BYE" text for a refusal (NULL for LIMITS_OK). */
const char *limits_reason(enum limits_verdict);
/* The configuration key behind a refusal, "max_sessions_per_address" (for
 * log lines; NULL for LIMITS_OK). */
const char *limits_name(enum limits_verdict);

/* For tests and metrics. */
struct limits_stats {
	unsigned sessions;		/* admitted and not released */
	size_t addresses;		/* entries in the table */
	size_t idle;			/* of them without a session */
	uint64_t refused[LIMITS_NVERDICTS];	/* since start, by verdict */
	uint64_t window[LIMITS_NVERDICTS];	/* in the open window, after
						 * the one logged at once */
};
void limits_get_stats(struct limits_stats *);
/* Sessions open from client's address. */
unsigned limits_sessions_from(const struct sockaddr *client);

#endif

/*
 * test_limits.c — tests for proxy/limits.c: sessions per address and in
 * all, IPv4-mapped IPv6 as IPv4, the token bucket over time the test
 * controls (refill, burst, fractional rates, a clock that goes back),
 * release exactly once, entries dropped and the table's cap, and refusals
 * in the log: the first at once, the rest in one summary per window, by
 * limits_flush and by the window's timer (stderr captured, capture.h).
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "capture.h"
#include "config.h"
#include "limits.h"
#include "log.h"

static struct config cfg;

static void
setup(void)
{
	config_defaults(&cfg);
}

static void
teardown(void)
{
	limits_free();
}

TestSuite(limits, .init = setup, .fini = teardown);

/* An address with a port: AF_INET6 when ip has a ':'. */
static const struct sockaddr *
addr_port(const char *ip, int port)
{
	static struct sockaddr_storage ss[8];
	static int i;
	struct sockaddr_storage *s = &ss[i++ % 8];

	memset(s, 0, sizeof *s);
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)s;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		cr_assert_eq(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1, "%s", ip);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)s;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		cr_assert_eq(inet_pton(AF_INET, ip, &sin->sin_addr), 1, "%s", ip);
	}
	return (const struct sockaddr *)s;
}

static const struct sockaddr *
addr(const char *ip)
{
	return addr_port(ip, 40000);
}

/* The n-th address of 10.0.0.0/8. */
static const struct sockaddr *
addr_n(unsigned n)
{
	char ip[32];

	snprintf(ip, sizeof ip, "10.%u.%u.%u", (n >> 16) & 255, (n >> 8) & 255,
	    n & 255);
	return addr(ip);
}

static size_t
count_lines(const char *text, const char *needle)
{
	size_t n = 0;

	for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static enum limits_verdict
admit(const char *ip, double now)
{
	return limits_admit(addr(ip), &cfg, now);
}

static struct limits_stats
stats(void)
{
	struct limits_stats st;

	limits_get_stats(&st);
	return st;
}

/* --- sessions --- */

Test(limits, reasons)
{
	cr_assert_null(limits_reason(LIMITS_OK));
	cr_assert_str_eq(limits_reason(LIMITS_TOO_MANY_SESSIONS),
	    "Too many connections, try again later");
	cr_assert_str_eq(limits_reason(LIMITS_TOO_MANY_FROM_ADDRESS),
	    "Too many connections from your address, try again later");
	cr_assert_str_eq(limits_reason(LIMITS_TOO_FAST),
	    "Too many new connections from your address, try again later");
	cr_assert_null(limits_name(LIMITS_OK));
	cr_assert_str_eq(limits_name(LIMITS_TOO_MANY_SESSIONS), "max_sessions");
	cr_assert_str_eq(limits_name(LIMITS_TOO_MANY_FROM_ADDRESS),
	    "max_sessions_per_address");
	cr_assert_str_eq(limits_name(LIMITS_TOO_FAST), "connection_rate_per_address");
}

Test(limits, per_address_count)
{
	cfg.max_sessions_per_address = 2;
	cr_assert_eq(admit("192.0.2.7", 0), LIMITS_OK);
	cr_assert_eq(admit("192.0.2.7", 0), LIMITS_OK);
	cr_assert_eq(admit("192.0.2.7", 0), LIMITS_TOO_MANY_FROM_ADDRESS);
	cr_assert_eq(limits_sessions_from(addr("192.0.2.7")), 2);
	/* another address is another count */
	cr_assert_eq(admit("192.0.2.8", 0), LIMITS_OK);
	cr_assert_eq(admit("2001:db8::7", 0), LIMITS_OK);
	cr_assert_eq(admit("2001:db8::7", 0), LIMITS_OK);
	cr_assert_eq(admit("2001:db8::7", 0), LIMITS_TOO_MANY_FROM_ADDRESS);
	cr_assert_eq(admit("2001:db8::8", 0), LIMITS_OK);
	cr_assert_eq(stats().sessions, 6);
	/* one ends: one more may begin */
	limits_release(addr("192.0.2.7"));
	cr_assert_eq(limits_sessions_from(addr("192.0.2.7")), 1);
	cr_assert_eq(admit("192.0.2.7", 1), LIMITS_OK);
	cr_assert_eq(admit("192.0.2.7", 1), LIMITS_TOO_MANY_FROM_ADDRESS);
	cr_assert_eq(stats().refused[LIMITS_TOO_MANY_FROM_ADDRESS], 3);
}

Test(limits, off_by_default)
{
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(admit("192.0.2.7", 0), LIMITS_OK, "connection %d", i);
	cr_assert_eq(admit("192.0.2.7", 0), LIMITS_TOO_MANY_SESSIONS);
	cr_assert_eq(limits_sessions_from(addr("192.0.2.7")), 1000);
}

Test(limits, port_does_not_count)
{
	cfg.max_sessions_per_address = 1;
	cr_assert_eq(limits_admit(addr_port("192.0.2.7", 1), &cfg, 0), LIMITS_OK);
	cr_assert_eq(limits_admit(addr_port("192.0.2.7", 2), &cfg, 0),
	    LIMITS_TOO_MANY_FROM_ADDRESS);
	limits_release(addr_port("192.0.2.7", 3));
	cr_assert_eq(stats().sessions, 0);
}

Test(limits, ipv4_mapped_is_ipv4)
{
	cfg.max_sessions_per_address = 2;
	cr_assert_eq(admit("192.0.2.7", 0), LIMITS_OK);
	cr_assert_eq(admit("::ffff:192.0.2.7", 0), LIMITS_OK);
	cr_assert_eq(admit("::ffff:192.0.2.7", 0), LIMITS_TOO_MANY_FROM_ADDRESS);
	cr_assert_eq(admit("192.0.2.7", 0), LIMITS_TOO_MANY_FROM_ADDRESS);
	cr_assert_eq(limits_sessions_from(addr("::ffff:192.0.2.7")), 2);
	cr_assert_eq(stats().addresses, 1);
	/* released in the other spelling */
	limits_release(addr("::ffff:192.0.2.7"));
	limits_release(addr("192.0.2.7"));
	cr_assert_eq(limits_sessions_from(addr("192.0.2.7")), 0);
	cr_assert_eq(stats().sessions, 0);
	/* IPv4-compatible (::192.0.2.7) and NAT64 are other addresses */
	cr_assert_eq(admit("::192.0.2.7", 0), LIMITS_OK);
	cr_assert_eq(admit("64:ff9b::192.0.2.7", 0), LIMITS_OK);
	cr_assert_eq(limits_sessions_from(addr("192.0.2.7")), 0);
}

Test(limits, max_sessions_for_all)
{
	cfg.max_sessions = 3;
	cfg.max_sessions_per_address = 2;
	cr_assert_eq(admit("192.0.2.1", 0), LIMITS_OK);
	cr_assert_eq(admit("192.0.2.1", 0), LIMITS_OK);
	cr_assert_eq(admit("192.0.2.2", 0), LIMITS_OK);
	cr_assert_eq(admit("192.0.2.3", 0), LIMITS_TOO_MANY_SESSIONS);
	cr_assert_eq(admit("192.0.2.1", 0), LIMITS_TOO_MANY_SESSIONS);
	limits_release(addr("192.0.2.2"));
	cr_assert_eq(admit("192.0.2.3", 0), LIMITS_OK);
	cr_assert_eq(stats().refused[LIMITS_TOO_MANY_SESSIONS], 2);
}

Test(limits, refused_for_all_makes_no_entry)
{
	struct capture cap;
	const char *log;

	cfg.max_sessions = 1;
	cr_assert_eq(admit("192.0.2.1", 0), LIMITS_OK);
	capture_begin(&cap);
	for (unsigned i = 0; i < 5000; i++)
		cr_assert_eq(limits_admit(addr_n(i), &cfg, 0), LIMITS_TOO_MANY_SESSIONS);
	cr_assert_eq(stats().addresses, 1);
	limits_flush();
	log = capture_end_raw(&cap);
	cr_assert_eq(count_lines(log, "refused a connection from 10.0.0.0: 1 session "
	    "is the configured maximum (max_sessions)"), 1, "%s", log);
	/* every address once: none is named as the one refused most */
	cr_assert_eq(count_lines(log, "refused 4999 more connections in the last "
	    "1 s: max_sessions (no address stands out)\n"), 1, "%s", log);
}

/* --- release --- */

Test(limits, release_exactly_once)
{
	struct capture cap;
	const char *log;

	cr_assert_eq(admit("192.0.2.7", 0), LIMITS_OK);
	limits_release(addr("192.0.2.7"));
	cr_assert_eq(stats().sessions, 0);
	cr_assert_eq(stats().addresses, 0);
	/* a second release, and one never admitted: said, and nothing counted */
	capture_begin(&cap);
	limits_release(addr("192.0.2.7"));
	limits_release(addr("2001:db8::1"));
	log = capture_end_raw(&cap);
	cr_assert_eq(count_lines(log, "error: limits: a session from 192.0.2.7 "
	    "ended that was not admitted"), 1, "%s", log);
	cr_assert_eq(count_lines(log, "error: limits: a session from 2001:db8::1 "
	    "ended that was not admitted"), 1, "%s", log);
	cr_assert_eq(stats().sessions, 0);
	/* the count did not go below zero: the limit still holds */
	cfg.max_sessions_per_address = 1;
	cr_assert_eq(admit("192.0.2.7", 0), LIMITS_OK);
	cr_assert_eq(admit("192.0.2.7", 0), LIMITS_TOO_MANY_FROM_ADDRESS);
	cr_assert_eq(stats().sessions, 1);
}

Test(limits, release_of_one_of_many)
{
	cr_assert_eq(admit("192.0.2.7", 0), LIMITS_OK);
	cr_assert_eq(admit("192.0.2.7", 0), LIMITS_OK);
	limits_release(addr("192.0.2.7"));
	cr_assert_eq(limits_sessions_from(addr("192.0.2.7")), 1);
	cr_assert_eq(stats().addresses, 1);
	limits_release(addr("192.0.2.7"));
	cr_assert_eq(stats().addresses, 0);
}

/* --- the token bucket --- */

Test(limits, burst_then_rate)
{
	cfg.connection_rate_per_address = 1;
	cfg.connection_burst_per_address = 3;
	cr_assert_eq(admit("192.0.2.7", 100), LIMITS_OK);
	cr_assert_eq(admit("192.0.2.7", 100), LIMITS_OK);
	cr_assert_eq(admit("192.0.2.7", 100.1), LIMITS_OK);
	cr_assert_eq(admit("192.0.2.7", 100.2), LIMITS_TOO_FAST);
	/* another address has its own bucket */
	cr_assert_eq(admit("192.0.2.8", 100.2), LIMITS_OK);
	cr_assert_eq(admit("192.0.2.7", 100.9), LIMITS_TOO_FAST);
	cr_assert_eq(admit("192.0.2.7", 101.0), LIMITS_OK);
	cr_assert_eq(admit("192.0.2.7", 101.0), LIMITS_TOO_FAST);
	cr_assert_eq(admit("192.0.2.7", 102.0), LIMITS_OK);
	/* a long pause refills to the burst, not beyond */
	cr_assert_eq(admit("192.0.2.7", 1000), LIMITS_OK);
	cr_assert_eq(admit("192.0.2.7", 1000), LIMITS_OK);
	cr_assert_eq(admit("192.0.2.7", 1000), LIMITS_OK);
	cr_assert_eq(admit("192.0.2.7", 1000), LIMITS_TOO_FAST);
	cr_assert_eq(stats().refused[LIMITS_TOO_FAST], 4);
}

Test(limits, fractional_rates)
{
	cfg.connection_rate_per_address = 0.5;
	cfg.connection_burst_per_address = 1;
	cr_assert_eq(admit("192.0.2.7", 0), LIMITS_OK);
	cr_assert_eq(admit("192.0.2.7", 1), LIMITS_TOO_FAST);
	cr_assert_eq(admit("192.0.2.7", 1.9), LIMITS_TOO_FAST);
	cr_assert_eq(admit("192.0.2.7", 2), LIMITS_OK);
	cr_assert_eq(admit("192.0.2.7", 3), LIMITS_TOO_FAST);
	cr_assert_eq(admit("192.0.2.7", 4), LIMITS_OK);

	/* 0.1 a second, refilled in steps of 0.1 s: 1 token after 10 s,
	 * whatever the rounding of the steps */
	cfg.connection_rate_per_address = 0.1;
	cr_assert_eq(admit("192.0.2.8", 0), LIMITS_OK);
	for (int i = 1; i < 100; i++)
		cr_assert_eq(admit("192.0.2.8", i * 0.1), LIMITS_TOO_FAST, "at %.1f s",
		    i * 0.1);
	cr_assert_eq(admit("192.0.2.8", 10.0), LIMITS_OK);
	/* 0.2 a second, looked at every 0.1 s: the steps add up to
	 * 0.9999999999999999 tokens at 5 s, which is 1 */
	cfg.connection_rate_per_address = 0.2;
	cr_assert_eq(admit("192.0.2.10", 0), LIMITS_OK);
	for (int i = 1; i < 50; i++)
		cr_assert_eq(admit("192.0.2.10", i * 0.1), LIMITS_TOO_FAST, "at %.1f s",
		    i * 0.1);
	cr_assert_eq(admit("192.0.2.10", 50 * 0.1), LIMITS_OK);

	/* more than one a second */
	cfg.connection_rate_per_address = 20;
	cfg.connection_burst_per_address = 1;
	cr_assert_eq(admit("192.0.2.9", 0), LIMITS_OK);
	cr_assert_eq(admit("192.0.2.9", 0.04), LIMITS_TOO_FAST);
	cr_assert_eq(admit("192.0.2.9", 0.05), LIMITS_OK);
}

Test(limits, refused_connections_take_no_token)
{
	cfg.connection_rate_per_address = 1;
	cfg.connection_burst_per_address = 1;
	cfg.max_sessions_per_address = 1;
	cr_assert_eq(admit("192.0.2.7", 0), LIMITS_OK);
	/* refused for the session count while the bucket refills */
	for (int i = 0; i < 50; i++)
		cr_assert_eq(admit("192.0.2.7", 1 + i * 0.01),
		    LIMITS_TOO_MANY_FROM_ADDRESS);
	limits_release(addr("192.0.2.7"));
	cr_assert_eq(admit("192.0.2.7", 2), LIMITS_OK);
	limits_release(addr("192.0.2.7"));
	/* refused as too fast, again and again: the next token still comes
	 * a second after the last one taken */
	for (int i = 0; i < 9; i++)
		cr_assert_eq(admit("192.0.2.7", 2 + i * 0.1), LIMITS_TOO_FAST);
	cr_assert_eq(admit("192.0.2.7", 3), LIMITS_OK);
}

Test(limits, clock_going_back)
{
	cfg.connection_rate_per_address = 1;
	cfg.connection_burst_per_address = 1;
	cr_assert_eq(admit("192.0.2.7", 1000), LIMITS_OK);
	/* back by an hour: nothing refilled, nothing lost */
	cr_assert_eq(admit("192.0.2.7", -2600), LIMITS_TOO_FAST);
	cr_assert_eq(admit("192.0.2.7", -2599.5), LIMITS_TOO_FAST);
	cr_assert_eq(admit("192.0.2.7", -2599), LIMITS_OK);
}

/* --- the table --- */

Test(limits, entries_go_when_full)
{
	/* no rate: an address without sessions is forgotten at once */
	cr_assert_eq(admit("192.0.2.7", 0), LIMITS_OK);
	limits_release(addr("192.0.2.7"));
	cr_assert_eq(stats().addresses, 0);

	/* with a rate: kept until its bucket is full again */
	cfg.connection_rate_per_address = 1;
	cfg.connection_burst_per_address = 2;
	cr_assert_eq(admit("192.0.2.7", 0), LIMITS_OK);
	limits_release(addr("192.0.2.7"));
	cr_assert_eq(stats().addresses, 1);
	cr_assert_eq(stats().idle, 1);
	cr_assert_eq(admit("192.0.2.8", 0.5), LIMITS_OK);
	cr_assert_eq(stats().addresses, 2, "192.0.2.7's bucket is not full yet");
	cr_assert_eq(admit("192.0.2.8", 1.0), LIMITS_OK);
	cr_assert_eq(stats().addresses, 1, "192.0.2.7's bucket is full");
	cr_assert_eq(limits_sessions_from(addr("192.0.2.8")), 2);
	/* refilled before its last session ends: gone at once */
	cr_assert_eq(admit("192.0.2.9", 10), LIMITS_OK);
	limits_release(addr("192.0.2.8"));
	limits_release(addr("192.0.2.8"));
	cr_assert_eq(stats().addresses, 1);
	cr_assert_eq(stats().idle, 0);
}

Test(limits, table_cap_forgets_the_oldest_idle)
{
	unsigned n;

	cfg.max_sessions = 10;
	cfg.max_sessions_per_address = 1;
	cfg.connection_rate_per_address = 0.001;	/* a token in 1000 s */
	cfg.connection_burst_per_address = 1;
	/* the first: out of tokens, and no session */
	cr_assert_eq(admit("192.0.2.1", 0), LIMITS_OK);
	limits_release(addr("192.0.2.1"));
	cr_assert_eq(admit("192.0.2.1", 1), LIMITS_TOO_FAST);
	/* one with a session open all along */
	cr_assert_eq(admit("192.0.2.2", 1), LIMITS_OK);
	/* a flood of addresses, one connection each */
	for (n = 0; n < LIMITS_IDLE_MAX + 100; n++) {
		cr_assert_eq(limits_admit(addr_n(n), &cfg, 2), LIMITS_OK, "%u", n);
		limits_release(addr_n(n));
		cr_assert_leq(stats().idle, LIMITS_IDLE_MAX);
	}
	cr_assert_eq(stats().idle, LIMITS_IDLE_MAX);
	cr_assert_eq(stats().addresses, LIMITS_IDLE_MAX + 1);
	/* the session count is never forgotten */
	cr_assert_eq(limits_sessions_from(addr("192.0.2.2")), 1);
	cr_assert_eq(admit("192.0.2.2", 3), LIMITS_TOO_MANY_FROM_ADDRESS);
	/* the oldest idle ones were forgotten: a fresh bucket */
	cr_assert_eq(admit("192.0.2.1", 3), LIMITS_OK);
	cr_assert_eq(limits_admit(addr_n(0), &cfg, 3), LIMITS_OK);
	/* the newest are still known: out of tokens */
	cr_assert_eq(limits_admit(addr_n(n - 1), &cfg, 3), LIMITS_TOO_FAST);
	cr_assert_eq(stats().sessions, 3);
}

Test(limits, other_families_are_one_address)
{
	struct sockaddr_storage un = { .ss_family = AF_UNIX };

	cfg.max_sessions_per_address = 1;
	cr_assert_eq(limits_admit((struct sockaddr *)&un, &cfg, 0), LIMITS_OK);
	cr_assert_eq(limits_admit((struct sockaddr *)&un, &cfg, 0),
	    LIMITS_TOO_MANY_FROM_ADDRESS);
	limits_release((struct sockaddr *)&un);
	cr_assert_eq(stats().sessions, 0);
}

/* --- refusals in the log --- */

Test(limits, first_refusal_at_once_then_one_summary)
{
	struct capture cap;
	const char *log;

	cfg.max_sessions_per_address = 1;
	cr_assert_eq(admit("192.0.2.7", 0), LIMITS_OK);
	cr_assert_eq(admit("192.0.2.8", 0), LIMITS_OK);
	capture_begin(&cap);
	cr_assert_eq(admit("192.0.2.7", 0), LIMITS_TOO_MANY_FROM_ADDRESS);
	for (int i = 0; i < 3990; i++)
		admit("192.0.2.7", 0.01 * i);
	for (int i = 0; i < 10; i++)
		admit("192.0.2.8", 40 + i);
	cr_assert_eq(stats().window[LIMITS_TOO_MANY_FROM_ADDRESS], 4000);
	cr_assert_eq(stats().refused[LIMITS_TOO_MANY_FROM_ADDRESS], 4001);
	limits_flush();
	log = capture_end_raw(&cap);
	cr_assert_eq(count_lines(log, "\n"), 2, "%s", log);
	cr_assert_eq(count_lines(log, "warning: refused a connection from 192.0.2.7: "
	    "it has 1 session, the configured maximum per address "
	    "(max_sessions_per_address); more such refusals are summed up every "
	    "60 s\n"), 1, "%s", log);
	cr_assert_eq(count_lines(log, "warning: refused 4000 more connections in the "
	    "last 49 s: max_sessions_per_address (most from 192.0.2.7: 3990)\n"), 1,
	    "%s", log);
	cr_assert_eq(stats().window[LIMITS_TOO_MANY_FROM_ADDRESS], 0);

	/* the window is over: the next refusal is logged at once again */
	capture_begin(&cap);
	admit("192.0.2.8", 100);
	limits_flush();
	log = capture_end_raw(&cap);
	cr_assert_eq(count_lines(log, "\n"), 1, "%s", log);
	cr_assert_eq(count_lines(log, "refused a connection from 192.0.2.8"), 1);
}

Test(limits, each_kind_its_own_window)
{
	struct capture cap;
	const char *log;

	cfg.max_sessions = 2;
	cfg.max_sessions_per_address = 1;
	cfg.connection_rate_per_address = 1;
	cfg.connection_burst_per_address = 1;
	cr_assert_eq(admit("192.0.2.1", 0), LIMITS_OK);
	limits_release(addr("192.0.2.1"));
	cr_assert_eq(admit("2001:db8::2", 0), LIMITS_OK);
	capture_begin(&cap);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(admit("192.0.2.1", 0), LIMITS_TOO_FAST);
		cr_assert_eq(admit("2001:db8::2", 0), LIMITS_TOO_MANY_FROM_ADDRESS);
	}
	cr_assert_eq(admit("192.0.2.3", 0), LIMITS_OK);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(admit("192.0.2.4", 0), LIMITS_TOO_MANY_SESSIONS);
	limits_flush();
	log = capture_end_raw(&cap);
	cr_assert_eq(count_lines(log, "\n"), 6, "%s", log);
	cr_assert_eq(count_lines(log, "refused a connection from 192.0.2.1: its "
	    "connections come faster than 1 a second after a burst of 1 "
	    "(connection_rate_per_address, connection_burst_per_address)"), 1,
	    "%s", log);
	cr_assert_eq(count_lines(log, "refused a connection from 2001:db8::2: it "
	    "has 1 session, the configured maximum per address"), 1, "%s", log);
	cr_assert_eq(count_lines(log, "refused a connection from 192.0.2.4: 2 "
	    "sessions is the configured maximum (max_sessions)"), 1, "%s", log);
	cr_assert_eq(count_lines(log, "refused 2 more connections in the last 1 s: "
	    "connection_rate_per_address (most from 192.0.2.1: 2)"), 1, "%s", log);
	cr_assert_eq(count_lines(log, "refused 2 more connections in the last 1 s: "
	    "max_sessions_per_address (most from 2001:db8::2: 2)"), 1, "%s", log);
	cr_assert_eq(count_lines(log, "refused 2 more connections in the last 1 s: "
	    "max_sessions (most from 192.0.2.4: 2)"), 1, "%s", log);
}

Test(limits, top_address_among_many)
{
	struct capture cap;
	const char *log;

	cfg.max_sessions = 1;
	cr_assert_eq(admit("192.0.2.1", 0), LIMITS_OK);
	capture_begin(&cap);
	/* 1000 addresses once each, one address 300 times between them */
	for (unsigned i = 0; i < 1000; i++) {
		limits_admit(addr_n(i), &cfg, 0);
		if (i % 3 == 0)
			admit("198.51.100.9", 0);
	}
	cr_assert_eq(stats().window[LIMITS_TOO_MANY_SESSIONS], 1333);
	limits_flush();
	log = capture_end_raw(&cap);
	/* Space-Saving finds it, and counts it exactly: never the least */
	cr_assert_eq(count_lines(log, "refused 1333 more connections in the last "
	    "1 s: max_sessions (most from 198.51.100.9: 334)\n"), 1, "%s", log);
}

static void
stop_loop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

/* Run base for about seconds. */
static void
run_for(struct event_base *base, double seconds)
{
	struct timeval tv = { (time_t)seconds,
	    (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6) };
	struct event *stop = evtimer_new(base, stop_loop, base);

	evtimer_add(stop, &tv);
	event_base_dispatch(base);
	event_free(stop);
}

Test(limits, window_timer)
{
	struct event_base *base = event_base_new();
	struct capture cap;
	const char *log;

	cr_assert_not_null(base);
	cr_assert_eq(limits_init(base, 0.1), 0);
	cfg.max_sessions_per_address = 1;
	cr_assert_eq(admit("192.0.2.7", 0), LIMITS_OK);
	capture_begin(&cap);
	for (int i = 0; i < 500; i++)
		admit("192.0.2.7", 0);
	/* the first window ends with a summary; a second, empty, one closes
	 * without a line */
	run_for(base, 0.6);
	log = capture_end_raw(&cap);
	cr_assert_eq(count_lines(log, "\n"), 2, "%s", log);
	cr_assert_eq(count_lines(log, "summed up every 0.1 s"), 1, "%s", log);
	cr_assert_eq(count_lines(log, "refused 499 more connections in the last 0.1 s: "
	    "max_sessions_per_address (most from 192.0.2.7: 499)"), 1, "%s", log);
	/* closed: the next refusal is logged at once */
	capture_begin(&cap);
	admit("192.0.2.7", 1);
	admit("192.0.2.7", 1);
	log = capture_end_raw(&cap);
	cr_assert_eq(count_lines(log, "\n"), 1, "%s", log);
	/* limits_free writes what the open window counted */
	capture_begin(&cap);
	limits_free();
	log = capture_end_raw(&cap);
	cr_assert_eq(count_lines(log, "refused 1 more connection in the last 1 s"),
	    1, "%s", log);
	event_base_free(base);
}

Test(limits, window_goes_on_while_refusals_do)
{
	struct event_base *base = event_base_new();
	struct capture cap;
	const char *log;

	cr_assert_eq(limits_init(base, 0.2), 0);
	cfg.max_sessions_per_address = 1;
	cr_assert_eq(admit("192.0.2.7", 0), LIMITS_OK);
	capture_begin(&cap);
	/* refusals across three windows: one line at once, one a window */
	for (int w = 0; w < 3; w++) {
		for (int i = 0; i < 100; i++)
			admit("192.0.2.7", w);
		run_for(base, 0.25);
	}
	limits_free();
	log = capture_end_raw(&cap);
	cr_assert_eq(count_lines(log, "\n"), 4, "%s", log);
	cr_assert_eq(count_lines(log, "refused 99 more connections"), 1, "%s", log);
	cr_assert_eq(count_lines(log, "refused 100 more connections"), 2, "%s", log);
	event_base_free(base);
}

/*
 * limits.c — admission of new client connections: whether one may begin
 * (max_sessions, max_sessions_per_address, connection_rate_per_address),
 * the table of client addresses that decides it, and the log lines of
 * refusals, aggregated.
 *
 * The table holds an entry per address with open sessions (their count and
 * a token bucket), and for a while after its last session ended while its
 * bucket is not full: forgetting it at once would hand the address a full
 * burst again.  An entry without sessions whose bucket has filled up is
 * dropped.  Memory is bounded: entries with sessions number at most
 * max_sessions (only admitted connections make entries; refused ones never
 * do), and entries without any at most LIMITS_IDLE_MAX; beyond that the
 * one unseen longest is forgotten.  Failing closed instead (refusing new
 * addresses while the table is full) would let anyone with many addresses
 * lock every other client out; forgetting costs at most a fresh burst for
 * an address unseen while 65536 others came and went, and never the count
 * of an address's open sessions.  Addresses are hashed with SipHash under
 * a random key, so that a client cannot choose addresses that collide.
 *
 * Each accept costs one hash lookup and, for a new address, one entry.
 */
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/util.h>
#include <openssl/rand.h>

#include "config.h"
#include "limits.h"
#include "log.h"

#define TABLE_MIN_BUCKETS 64
/* Counters of the addresses refused most in a window (Space-Saving). */
#define TOP_COUNTERS 8
/* Token arithmetic in doubles: 0.1 a second for 10 s is 1 token. */
#define TOKEN_EPSILON 1e-9
/* Idle entries dropped per admission when their buckets are full. */
#define PRUNE_PER_ADMIT 2

struct limits_entry {
	struct limits_entry *next;		/* hash chain */
	TAILQ_ENTRY(limits_entry) idle;		/* without sessions: oldest first */
	unsigned char addr[16];			/* IPv6, or IPv4-mapped IPv6 */
	unsigned sessions;
	double tokens;				/* as of last */
	double last;
};

TAILQ_HEAD(entry_list, limits_entry);

struct top_counter {
	unsigned char addr[16];
	uint64_t count;
	uint64_t error;		/* count may exceed the truth by this much */
};

/* Refusals of one kind: the first logged at once, the rest summed up. */
struct refusals {
	struct event *timer;
	bool open;		/* a window runs */
	double since;		/* its start, in admission time */
	double last;		/* the latest refusal counted in it */
	uint64_t count;		/* refused in it after the one logged */
	struct top_counter top[TOP_COUNTERS];
	size_t ntop;
};

static struct {
	struct limits_entry **bucket;
	size_t nbuckets;		/* a power of two, or 0 before the first */
	size_t n;
	struct entry_list idle;
	size_t nidle;
	unsigned sessions;		/* admitted, not released */
	uint64_t key[2];		/* SipHash key */
	bool keyed;

	/* the configuration and time of the latest admission */
	double rate, now;
	unsigned burst;

	double window;			/* seconds */
	struct refusals warn[LIMITS_NVERDICTS];
	uint64_t refused[LIMITS_NVERDICTS];
} lim = { .idle = TAILQ_HEAD_INITIALIZER(lim.idle), .window = LIMITS_WARNING_WINDOW };

static const char *const reasons[LIMITS_NVERDICTS] = {
	[LIMITS_TOO_MANY_SESSIONS] = "Too many connections, try again later",
	[LIMITS_TOO_MANY_FROM_ADDRESS] =
	    "Too many connections from your address, try again later",
	[LIMITS_TOO_FAST] = "Too many new connections from your address, "
	    "try again later",
};

/* The configuration key behind each refusal, as the summaries name it. */
static const char *const keys[LIMITS_NVERDICTS] = {
	[LIMITS_TOO_MANY_SESSIONS] = "max_sessions",
	[LIMITS_TOO_MANY_FROM_ADDRESS] = "max_sessions_per_address",
	[LIMITS_TOO_FAST] = "connection_rate_per_address",
};

const char *
limits_reason(enum limits_verdict v)
{
	return (unsigned)v < LIMITS_NVERDICTS ? reasons[v] : NULL;
}

const char *
limits_name(enum limits_verdict v)
{
	return (unsigned)v < LIMITS_NVERDICTS ? keys[v] : NULL;
}

/* --- addresses --- */

/* IPv4 as IPv4-mapped IPv6, so that both spellings are one address; any
 * other family (a socket pair in tests) is all zeros, "::". */
static void
address_key(const struct sockaddr *sa, unsigned char key[16])
{
	memset(key, 0, 16);
	if (sa == NULL)
		return;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)sa;

		key[10] = key[11] = 0xff;
		memcpy(key + 12, &sin->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)sa;

		memcpy(key, &sin6->sin6_addr, 16);
	}
}

static const char *
address_text(const unsigned char key[16], char *buf, size_t len)
{
	static const unsigned char mapped[12] = { [10] = 0xff, [11] = 0xff };

	if (memcmp(key, mapped, sizeof mapped) == 0)
		evutil_inet_ntop(AF_INET, key + 12, buf, len);
	else
		evutil_inet_ntop(AF_INET6, key, buf, len);
	return buf;
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND do { \
	v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
	v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2; \
	v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0; \
	v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
} while (0)

/* SipHash-2-4 of the 16 bytes of an address (words in host order). */
static uint64_t
address_hash(const unsigned char addr[16])
{
	uint64_t v0 = UINT64_C(0x736f6d6570736575) ^ lim.key[0];
	uint64_t v1 = UINT64_C(0x646f72616e646f6d) ^ lim.key[1];
	uint64_t v2 = UINT64_C(0x6c7967656e657261) ^ lim.key[0];
	uint64_t v3 = UINT64_C(0x7465646279746573) ^ lim.key[1];
	uint64_t m, b = (uint64_t)16 << 56;

	for (int i = 0; i < 2; i++) {
		memcpy(&m, addr + 8 * i, 8);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* --- the table --- */

static void
table_key(void)
{
	if (lim.keyed)
		return;
	if (RAND_bytes((unsigned char *)lim.key, sizeof lim.key) != 1) {
		/* still a table, only easier to flood with chosen addresses */
		lim.key[0] = (uint64_t)time(NULL) * UINT64_C(0x9e3779b97f4a7c15);
		lim.key[1] = (uint64_t)getpid() * UINT64_C(0xc2b2ae3d27d4eb4f);
	}
	lim.keyed = true;
}

static struct limits_entry **
slot_of(const unsigned char addr[16])
{
	return &lim.bucket[address_hash(addr) & (lim.nbuckets - 1)];
}

static struct limits_entry *
lookup(const unsigned char addr[16])
{
	struct limits_entry *e;

	if (lim.nbuckets == 0)
		return NULL;
	for (e = *slot_of(addr); e != NULL; e = e->next)
		if (memcmp(e->addr, addr, 16) == 0)
			return e;
	return NULL;
}

/* Twice the buckets once there are as many entries as buckets; when that
 * fails the chains only get longer. */
static int
table_grow(void)
{
	size_t old = lim.nbuckets, n = old == 0 ? TABLE_MIN_BUCKETS : old * 2;
	struct limits_entry **prev = lim.bucket, *e, *next;

	if (old != 0 && lim.n < old)
		return 0;
	if ((lim.bucket = calloc(n, sizeof *lim.bucket)) == NULL) {
		lim.bucket = prev;
		return old != 0 ? 0 : -1;
	}
	table_key();
	lim.nbuckets = n;
	for (size_t i = 0; i < old; i++) {
		for (e = prev[i]; e != NULL; e = next) {
			struct limits_entry **slot = slot_of(e->addr);

			next = e->next;
			e->next = *slot;
			*slot = e;
		}
	}
	free(prev);
	return 0;
}

static struct limits_entry *
entry_new(const unsigned char addr[16], double now)
{
	struct limits_entry *e, **slot;

	if (table_grow() != 0 || (e = calloc(1, sizeof *e)) == NULL)
		return NULL;
	memcpy(e->addr, addr, 16);
	e->tokens = lim.burst;
	e->last = now;
	slot = slot_of(addr);
	e->next = *slot;
	*slot = e;
	lim.n++;
	return e;
}

static void
idle_remove(struct limits_entry *e)
{
	TAILQ_REMOVE(&lim.idle, e, idle);
	lim.nidle--;
}

/* Out of the table; the caller took it off the idle list. */
static void
entry_free(struct limits_entry *e)
{
	struct limits_entry **p;

	for (p = slot_of(e->addr); *p != e; p = &(*p)->next)
		;
	*p = e->next;
	lim.n--;
	free(e);
}

/* --- token buckets --- */

static void
refill(struct limits_entry *e, double now)
{
	/* a clock that went back refills nothing, and counts from now on */
	if (lim.rate > 0 && now > e->last) {
		e->tokens += (now - e->last) * lim.rate;
		if (e->tokens > lim.burst)
			e->tokens = lim.burst;
	}
	e->last = now;
}

/* Forgetting it would change nothing: a new entry starts full. */
static bool
bucket_full(const struct limits_entry *e, double now)
{
	double elapsed = now > e->last ? now - e->last : 0;

	return lim.rate <= 0 ||
	    e->tokens + elapsed * lim.rate >= lim.burst - TOKEN_EPSILON;
}

/* An entry's last session ended, or a refusal touched it: it goes to the
 * end of the idle list, making room at its head when the list is full. */
static void
idle_touch(struct limits_entry *e, bool was_idle)
{
	struct limits_entry *oldest;

	if (was_idle)
		idle_remove(e);
	if (lim.nidle >= LIMITS_IDLE_MAX) {
		oldest = TAILQ_FIRST(&lim.idle);
		idle_remove(oldest);
		entry_free(oldest);
	}
	TAILQ_INSERT_TAIL(&lim.idle, e, idle);
	lim.nidle++;
}

/* Idle entries whose buckets have filled up are dropped, oldest first,
 * a few at a time. */
static void
prune(double now)
{
	struct limits_entry *e;

	for (int i = 0; i < PRUNE_PER_ADMIT; i++) {
		if ((e = TAILQ_FIRST(&lim.idle)) == NULL || !bucket_full(e, now))
			return;
		idle_remove(e);
		entry_free(e);
	}
}

/* --- refusals in the log --- */

/* Space-Saving: an address refused more than 1/TOP_COUNTERS of the
 * window's refusals is certainly among the counters. */
static void
top_add(struct refusals *r, const unsigned char addr[16])
{
	struct top_counter *min = NULL;

	for (size_t i = 0; i < r->ntop; i++) {
		if (memcmp(r->top[i].addr, addr, 16) == 0) {
			r->top[i].count++;
			return;
		}
		if (min == NULL || r->top[i].count < min->count)
			min = &r->top[i];
	}
	if (r->ntop < TOP_COUNTERS) {
		min = &r->top[r->ntop++];
		min->count = min->error = 0;
	} else {
		min->error = min->count;
	}
	memcpy(min->addr, addr, 16);
	min->count++;
}

static void
summary(enum limits_verdict v, double seconds)
{
	struct refusals *r = &lim.warn[v];
	const struct top_counter *top = &r->top[0];
	char addr[INET6_ADDRSTRLEN], most[96];
	uint64_t sure;

	for (size_t i = 1; i < r->ntop; i++)
		if (r->top[i].count > top->count)
			top = &r->top[i];
	/* counts the counters cannot tell apart name no address */
	sure = top->count - top->error;
	if (sure >= 2 || sure == r->count)
		snprintf(most, sizeof most, "most from %s: %s%llu",
		    address_text(top->addr, addr, sizeof addr),
		    top->error > 0 ? "at least " : "", (unsigned long long)sure);
	else
		snprintf(most, sizeof most, "no address stands out");
	log_warn(0, "refused %llu more connection%s in the last %g s: %s (%s)",
	    (unsigned long long)r->count, r->count == 1 ? "" : "s", seconds,
	    keys[v], most);
	r->count = 0;
	r->ntop = 0;
}

/* Whole seconds from since to last, rounded up; 1 at least. */
static double
span(double since, double last)
{
	double s = last - since, whole = (double)(long long)s;

	if (whole < s)
		whole += 1;
	return whole < 1 ? 1 : whole;
}

static void
window_timeval(struct timeval *tv)
{
	tv->tv_sec = (time_t)lim.window;
	tv->tv_usec = (suseconds_t)((lim.window - (double)tv->tv_sec) * 1e6);
}

/* A window ended: its summary, and another window while refusals go on. */
static void
window_end(evutil_socket_t fd, short what, void *arg)
{
	enum limits_verdict v = (enum limits_verdict)(intptr_t)arg;
	struct refusals *r = &lim.warn[v];
	struct timeval tv;

	(void)fd;
	(void)what;
	if (r->count == 0) {
		r->open = false;
		return;
	}
	summary(v, lim.window);
	r->since += lim.window;
	window_timeval(&tv);
	evtimer_add(r->timer, &tv);
}

static void
log_first(enum limits_verdict v, const char *addr, const struct config *cfg)
{
	char why[160];

	switch (v) {
	case LIMITS_TOO_MANY_SESSIONS:
		snprintf(why, sizeof why, "%u session%s is the configured "
		    "maximum (max_sessions)", cfg->max_sessions,
		    cfg->max_sessions == 1 ? "" : "s");
		break;
	case LIMITS_TOO_MANY_FROM_ADDRESS:
		snprintf(why, sizeof why, "it has %u session%s, the configured "
		    "maximum per address (max_sessions_per_address)",
		    cfg->max_sessions_per_address,
		    cfg->max_sessions_per_address == 1 ? "" : "s");
		break;
	default:
		snprintf(why, sizeof why, "its connections come faster than %g "
		    "a second after a burst of %u (connection_rate_per_address, "
		    "connection_burst_per_address)",
		    cfg->connection_rate_per_address,
		    cfg->connection_burst_per_address);
		break;
	}
	log_warn(0, "refused a connection from %s: %s; more such refusals are "
	    "summed up every %g s", addr, why, lim.window);
}

static enum limits_verdict
refuse(enum limits_verdict v, const unsigned char addr[16],
    const struct config *cfg, double now)
{
	struct refusals *r = &lim.warn[v];
	char text[INET6_ADDRSTRLEN];
	struct timeval tv;

	lim.refused[v]++;
	if (r->open) {
		r->count++;
		r->last = now;
		top_add(r, addr);
		return v;
	}
	log_first(v, address_text(addr, text, sizeof text), cfg);
	r->open = true;
	r->since = r->last = now;
	r->count = 0;
	r->ntop = 0;
	if (r->timer != NULL) {
		window_timeval(&tv);
		evtimer_add(r->timer, &tv);
	}
	return v;
}

/* --- the interface --- */

int
limits_init(struct event_base *base, double window)
{
	lim.window = window;
	table_key();
	for (int v = LIMITS_OK + 1; v < LIMITS_NVERDICTS; v++) {
		lim.warn[v].timer = evtimer_new(base, window_end, (void *)(intptr_t)v);
		if (lim.warn[v].timer == NULL) {
			log_error(0, "cannot create the timers of refusal warnings");
			return -1;
		}
	}
	return 0;
}

void
limits_flush(void)
{
	for (int v = LIMITS_OK + 1; v < LIMITS_NVERDICTS; v++) {
		struct refusals *r = &lim.warn[v];

		if (!r->open)
			continue;
		if (r->count > 0)
			summary((enum limits_verdict)v, span(r->since, r->last));
		r->open = false;
		if (r->timer != NULL)
			event_del(r->timer);
	}
}

void
limits_free(void)
{
	struct limits_entry *e, *next;

	limits_flush();
	for (size_t i = 0; i < lim.nbuckets; i++)
		for (e = lim.bucket[i]; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	free(lim.bucket);
	for (int v = 0; v < LIMITS_NVERDICTS; v++)
		if (lim.warn[v].timer != NULL)
			event_free(lim.warn[v].timer);
	memset(&lim, 0, sizeof lim);
	TAILQ_INIT(&lim.idle);
	lim.window = LIMITS_WARNING_WINDOW;
}

enum limits_verdict
limits_admit(const struct sockaddr *client, const struct config *cfg, double now)
{
	unsigned char addr[16];
	struct limits_entry *e;

	address_key(client, addr);
	lim.rate = cfg->connection_rate_per_address;
	lim.burst = cfg->connection_burst_per_address;
	lim.now = now;
	prune(now);
	if (lim.sessions >= cfg->max_sessions)
		return refuse(LIMITS_TOO_MANY_SESSIONS, addr, cfg, now);
	if ((e = lookup(addr)) != NULL) {
		refill(e, now);
		if (cfg->max_sessions_per_address > 0 &&
		    e->sessions >= cfg->max_sessions_per_address)
			return refuse(LIMITS_TOO_MANY_FROM_ADDRESS, addr, cfg, now);
		if (lim.rate > 0 && e->tokens < 1 - TOKEN_EPSILON) {
			/* only sessionless entries are idle ones */
			if (e->sessions == 0)
				idle_touch(e, true);
			return refuse(LIMITS_TOO_FAST, addr, cfg, now);
		}
		if (e->sessions == 0)
			idle_remove(e);
	} else if ((e = entry_new(addr, now)) == NULL) {
		log_error(0, "out of memory for the table of client addresses");
		return refuse(LIMITS_TOO_MANY_SESSIONS, addr, cfg, now);
	}
	if (lim.rate > 0)
		e->tokens -= 1;
	e->sessions++;
	lim.sessions++;
	return LIMITS_OK;
}

void
limits_release(const struct sockaddr *client)
{
	unsigned char addr[16];
	char text[INET6_ADDRSTRLEN];
	struct limits_entry *e;

	address_key(client, addr);
	if ((e = lookup(addr)) == NULL || e->sessions == 0) {
		log_error(0, "limits: a session from %s ended that was not "
		    "admitted", address_text(addr, text, sizeof text));
		return;
	}
	e->sessions--;
	lim.sessions--;
	if (e->sessions > 0)
		return;
	/* bucket_full at the latest admission's time: full then, full now */
	if (bucket_full(e, lim.now))
		entry_free(e);
	else
		idle_touch(e, false);
}

void
limits_get_stats(struct limits_stats *st)
{
	memset(st, 0, sizeof *st);
	st->sessions = lim.sessions;
	st->addresses = lim.n;
	st->idle = lim.nidle;
	for (int v = 0; v < LIMITS_NVERDICTS; v++) {
		st->refused[v] = lim.refused[v];
		st->window[v] = lim.warn[v].count;
	}
}

unsigned
limits_sessions_from(const struct sockaddr *client)
{
	unsigned char addr[16];
	struct limits_entry *e;

	address_key(client, addr);
	return (e = lookup(addr)) != NULL ? e->sessions : 0;
}

/*
 * metrics.c — the counters the rest of the daemon bumps, rendered in
 * Prometheus's text exposition format (0.0.4), and the small evhttp server
 * that answers GET /metrics with them when metrics_listen is set.  One
 * process, one loop: the counters are plain integers, never locked.  The
 * label values are fixed sets (enums), so a typo in a caller cannot make up
 * a new time series.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "config.h"
#include "log.h"
#include "metrics.h"

#define CONTENT_TYPE "text/plain; version=0.0.4"
#define HTTP_TIMEOUT 10			/* seconds, for a scrape to arrive and leave */
#define HTTP_MAX_HEADERS 8192		/* a scraper sends a few short headers */
#define HTTP_MAX_BODY 1024		/* GET and HEAD have none */
#define MAX_SOCKETS 8			/* "*" and names may give several addresses */

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const char *const end_names[METRICS_END_COUNT] = {
	"client", "idle", "upstream", "shutdown", "limit", "error",
};

static const char *const outcome_names[METRICS_MA_COUNT] = {
	"ok", "refused", "rolled_back", "rollback_failed", "client_gone",
};

/* Upper bounds of the duration histogram, seconds; +Inf is implied.  The
 * text is what "le" shows, the number what is compared. */
static const struct {
	double le;
	const char *text;
} buckets[] = {
	{ 0.1, "0.1" }, { 0.5, "0.5" }, { 1, "1" }, { 5, "5" }, { 10, "10" },
	{ 30, "30" }, { 60, "60" }, { 300, "300" },
};

static struct {
	uint64_t sessions_opened;
	uint64_t sessions_closed[METRICS_END_COUNT];
	uint64_t logins_ok;
	uint64_t logins_failed;
	uint64_t multiappends[METRICS_MA_COUNT];
	uint64_t replayed_messages;
	uint64_t replayed_bytes;
	uint64_t rollbacks;
	uint64_t rollback_failures;
	uint64_t recoveries;
	int64_t spool_bytes;
	uint64_t connect_errors;
	/* per bucket, not cumulative; the last one is (300, +Inf) */
	uint64_t duration[NELEM(buckets) + 1];
	double duration_sum;
	uint64_t duration_count;
} m;

/* The HTTP side: one evhttp with its sockets, and the address it was
 * started for (a reload with the same address changes nothing). */
static struct evhttp *http;
static char http_host[256];
static char http_port[16];
static int http_bound_port = -1;

const char *
metrics_end_name(enum metrics_end e)
{
	return (unsigned)e < METRICS_END_COUNT ? end_names[e] : "error";
}

const char *
metrics_outcome_name(enum metrics_outcome o)
{
	return (unsigned)o < METRICS_MA_COUNT ? outcome_names[o] : "refused";
}

void
metrics_session_opened(void)
{
	m.sessions_opened++;
}

void
metrics_session_closed(enum metrics_end e)
{
	/* an out-of-range value is a caller's bug; count it, as an error */
	m.sessions_closed[(unsigned)e < METRICS_END_COUNT ? e : METRICS_END_ERROR]++;
}

void
metrics_login(bool ok)
{
	if (ok)
		m.logins_ok++;
	else
		m.logins_failed++;
}

void
metrics_multiappend(enum metrics_outcome o, double seconds, unsigned messages,
    uint64_t bytes)
{
	size_t i;

	m.multiappends[(unsigned)o < METRICS_MA_COUNT ? o : METRICS_MA_REFUSED]++;
	m.replayed_messages += messages;
	m.replayed_bytes += bytes;
	/* a clock that stepped back must not make the sum shrink (or NaN) */
	if (!(seconds >= 0) || isinf(seconds))
		seconds = 0;
	for (i = 0; i < NELEM(buckets) && seconds > buckets[i].le; i++)
		;
	m.duration[i]++;
	m.duration_sum += seconds;
	m.duration_count++;
}

void
metrics_rollback(bool ok)
{
	m.rollbacks++;
	if (!ok)
		m.rollback_failures++;
}

void
metrics_recovery(unsigned n)
{
	m.recoveries += n;
}

void
metrics_upstream_connect_error(void)
{
	m.connect_errors++;
}

void
metrics_spool_bytes(int64_t delta)
{
	m.spool_bytes += delta;
}

/*
 * The text format.
 */

int
metrics_append_label_value(struct evbuffer *out, const char *s)
{
	for (; *s != '\0'; s++) {
		const char *esc = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" :
		    *s == '\n' ? "\\n" : NULL;

		if (esc != NULL ? evbuffer_add(out, esc, 2) != 0 :
		    evbuffer_add(out, s, 1) != 0)
			return -1;
	}
	return 0;
}

/* HELP text escapes only "\" and newline (the format says so). */
static int
help_type(struct evbuffer *out, const char *name, const char *type,
    const char *help)
{
	if (evbuffer_add_printf(out, "# HELP %s ", name) < 0)
		return -1;
	for (; *help != '\0'; help++) {
		const char *esc = *help == '\\' ? "\\\\" : *help == '\n' ? "\\n" : NULL;

		if (esc != NULL ? evbuffer_add(out, esc, 2) != 0 :
		    evbuffer_add(out, help, 1) != 0)
			return -1;
	}
	return evbuffer_add_printf(out, "\n# TYPE %s %s\n", name, type) < 0 ? -1 : 0;
}

static int
sample(struct evbuffer *out, const char *name, uint64_t v)
{
	return evbuffer_add_printf(out, "%s %" PRIu64 "\n", name, v) < 0 ? -1 : 0;
}

/* name{label="value"} v */
static int
sample_label(struct evbuffer *out, const char *name, const char *label,
    const char *value, const char *v)
{
	if (evbuffer_add_printf(out, "%s{%s=\"", name, label) < 0 ||
	    metrics_append_label_value(out, value) < 0 ||
	    evbuffer_add_printf(out, "\"} %s\n", v) < 0)
		return -1;
	return 0;
}

static int
scalar(struct evbuffer *out, const char *name, const char *type,
    const char *help, uint64_t v)
{
	return help_type(out, name, type, help) < 0 || sample(out, name, v) < 0 ?
	    -1 : 0;
}

/* A counter with one label over a fixed set of values, every value shown
 * (a series that appears only once non-zero breaks rate()). */
static int
labelled(struct evbuffer *out, const char *name, const char *help,
    const char *label, const char *const *values, const uint64_t *counts,
    size_t n)
{
	char v[32];

	if (help_type(out, name, "counter", help) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		snprintf(v, sizeof v, "%" PRIu64, counts[i]);
		if (sample_label(out, name, label, values[i], v) < 0)
			return -1;
	}
	return 0;
}

static int
histogram(struct evbuffer *out)
{
	static const char *const name = "mappend_multiappend_duration_seconds";
	uint64_t cumulative = 0;
	char v[32], bucket[64];

	if (help_type(out, name, "histogram", "Time from a MULTIAPPEND's command "
	    "to its tagged answer, spooling and replay included.") < 0)
		return -1;
	snprintf(bucket, sizeof bucket, "%s_bucket", name);
	for (size_t i = 0; i <= NELEM(buckets); i++) {
		cumulative += m.duration[i];
		snprintf(v, sizeof v, "%" PRIu64, cumulative);
		if (sample_label(out, bucket, "le", i < NELEM(buckets) ?
		    buckets[i].text : "+Inf", v) < 0)
			return -1;
	}
	if (evbuffer_add_printf(out, "%s_sum %.9g\n", name, m.duration_sum) < 0 ||
	    evbuffer_add_printf(out, "%s_count %" PRIu64 "\n", name,
	    m.duration_count) < 0)
		return -1;
	return 0;
}

int
metrics_render(struct evbuffer *out)
{
	static const char *const login_names[] = { "ok", "failed" };
	uint64_t logins[2] = { m.logins_ok, m.logins_failed };
	uint64_t closed = 0;

	for (size_t i = 0; i < METRICS_END_COUNT; i++)
		closed += m.sessions_closed[i];

	if (help_type(out, "mappend_sessions_open", "gauge",
	    "Client sessions open now.") < 0 ||
	    evbuffer_add_printf(out, "mappend_sessions_open %" PRId64 "\n",
	    (int64_t)(m.sessions_opened - closed)) < 0 ||
	    scalar(out, "mappend_sessions_opened_total", "counter",
	    "Client sessions started.", m.sessions_opened) < 0 ||
	    labelled(out, "mappend_sessions_closed_total", "Client sessions "
	    "ended, by how they ended.", "reason", end_names, m.sessions_closed,
	    METRICS_END_COUNT) < 0 ||
	    labelled(out, "mappend_logins_total", "LOGIN and AUTHENTICATE "
	    "answers, by result.", "result", login_names, logins, 2) < 0 ||
	    labelled(out, "mappend_multiappends_total", "MULTIAPPEND commands "
	    "emulated, by outcome.", "outcome", outcome_names, m.multiappends,
	    METRICS_MA_COUNT) < 0 ||
	    scalar(out, "mappend_replayed_messages_total", "counter",
	    "Messages of MULTIAPPENDs sent upstream as single APPENDs.",
	    m.replayed_messages) < 0 ||
	    scalar(out, "mappend_replayed_bytes_total", "counter",
	    "Message bytes of MULTIAPPENDs sent upstream.", m.replayed_bytes) < 0 ||
	    scalar(out, "mappend_rollbacks_total", "counter",
	    "Rollbacks of MULTIAPPENDs that failed half-way.", m.rollbacks) < 0 ||
	    scalar(out, "mappend_rollback_failures_total", "counter",
	    "Rollbacks that left messages behind (logged with their UIDs).",
	    m.rollback_failures) < 0 ||
	    scalar(out, "mappend_journal_recoveries_total", "counter",
	    "Crash journal records resolved at start.", m.recoveries) < 0 ||
	    help_type(out, "mappend_spool_bytes", "gauge",
	    "Spool space in use by MULTIAPPENDs, bytes.") < 0 ||
	    evbuffer_add_printf(out, "mappend_spool_bytes %" PRId64 "\n",
	    m.spool_bytes) < 0 ||
	    scalar(out, "mappend_upstream_connect_errors_total", "counter",
	    "Connections to the upstream server that failed.",
	    m.connect_errors) < 0 ||
	    histogram(out) < 0)
		return -1;
	return 0;
}

/*
 * HTTP.
 */

static void
reply_text(struct evhttp_request *req, int code, const char *reason,
    const char *text)
{
	struct evbuffer *body = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "text/plain; charset=utf-8");
	if (body == NULL || evbuffer_add(body, text, strlen(text)) != 0) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
	} else {
		evhttp_send_reply(req, code, reason, body);
	}
	if (body != NULL)
		evbuffer_free(body);
}

static void
handle(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type type = evhttp_request_get_command(req);
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	struct evbuffer *body;
	char len[32];

	(void)arg;
	if (path == NULL || strcmp(path, "/metrics") != 0) {
		reply_text(req, HTTP_NOTFOUND, "Not Found",
		    "Not found: mappend's metrics are at /metrics\n");
		return;
	}
	if (type != EVHTTP_REQ_GET && type != EVHTTP_REQ_HEAD) {
		evhttp_add_header(headers, "Allow", "GET, HEAD");
		reply_text(req, 405, "Method Not Allowed",
		    "Method not allowed: use GET or HEAD\n");
		return;
	}
	if ((body = evbuffer_new()) == NULL || metrics_render(body) < 0) {
		if (body != NULL)
			evbuffer_free(body);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evhttp_add_header(headers, "Content-Type", CONTENT_TYPE);
	evhttp_add_header(headers, "Cache-Control", "no-store");
	/* HEAD: the headers GET would have, no body (evhttp would send one) */
	if (type == EVHTTP_REQ_HEAD) {
		snprintf(len, sizeof len, "%zu", evbuffer_get_length(body));
		evhttp_add_header(headers, "Content-Length", len);
		evbuffer_drain(body, evbuffer_get_length(body));
	}
	evhttp_send_reply(req, HTTP_OK, "OK", body);
	evbuffer_free(body);
}

static bool
is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)sa;

		return ntohl(sin->sin_addr.s_addr) >> 24 == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)sa;
		const unsigned char *b = sin6->sin6_addr.s6_addr;

		return IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr) ||
		    (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) && b[12] == 127);
	}
	return false;
}

/* "127.0.0.1:9143" or "[::1]:9143" of a bound socket; its port. */
static int
describe(evutil_socket_t fd, char *out, size_t outlen, bool *loopback)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	char host[NI_MAXHOST], port[NI_MAXSERV];

	*loopback = false;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
	    getnameinfo((struct sockaddr *)&ss, len, host, sizeof host, port,
	    sizeof port, NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(out, outlen, "?");
		return -1;
	}
	*loopback = is_loopback((struct sockaddr *)&ss);
	snprintf(out, outlen, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
	    host, port);
	return ss.ss_family == AF_INET6 ?
	    ntohs(((struct sockaddr_in6 *)(void *)&ss)->sin6_port) :
	    ntohs(((struct sockaddr_in *)(void *)&ss)->sin_port);
}

/* A new evhttp on every address host:port names; NULL logged. */
static struct evhttp *
bind_http(struct event_base *base, const char *host, const char *port,
    int *bound_port)
{
	struct addrinfo hints, *res, *ai;
	struct evhttp *h;
	int err, n = 0;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	if ((err = getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, port, &hints,
	    &res)) != 0) {
		log_error(0, "metrics_listen %s:%s: %s", host, port, gai_strerror(err));
		return NULL;
	}
	if ((h = evhttp_new(base)) == NULL) {
		log_error(0, "metrics_listen %s:%s: out of memory", host, port);
		freeaddrinfo(res);
		return NULL;
	}
	evhttp_set_gencb(h, handle, NULL);
	/* every method evhttp parses reaches handle, which answers 405 */
	evhttp_set_allowed_methods(h, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD |
	    EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT |
	    EVHTTP_REQ_PATCH);
	evhttp_set_timeout(h, HTTP_TIMEOUT);
	evhttp_set_max_headers_size(h, HTTP_MAX_HEADERS);
	evhttp_set_max_body_size(h, HTTP_MAX_BODY);

	for (ai = res; ai != NULL && n < MAX_SOCKETS; ai = ai->ai_next) {
		struct evconnlistener *l;
		char where[NI_MAXHOST + NI_MAXSERV + 4];
		bool loopback;
		int p;

		/* v6-only, as the IMAP listeners: "*" gives 0.0.0.0 and :: */
		l = evconnlistener_new_bind(base, NULL, NULL,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE |
		    (ai->ai_family == AF_INET6 ? LEV_OPT_BIND_IPV6ONLY : 0),
		    16, ai->ai_addr, (int)ai->ai_addrlen);
		if (l == NULL || evhttp_bind_listener(h, l) == NULL) {
			log_error(0, "metrics_listen %s:%s: %s", host, port,
			    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
			if (l != NULL)
				evconnlistener_free(l);
			evhttp_free(h);
			freeaddrinfo(res);
			return NULL;
		}
		p = describe(evconnlistener_get_fd(l), where, sizeof where, &loopback);
		if (n++ == 0)
			*bound_port = p;
		log_info(0, "metrics on http://%s/metrics", where);
		if (!loopback)
			log_warn(0, "metrics on %s, not a loopback address: anyone who "
			    "can reach it sees mappend's counters (no authentication)",
			    where);
	}
	freeaddrinfo(res);
	if (n == 0) {
		log_error(0, "metrics_listen %s:%s: no address to listen on", host,
		    port);
		evhttp_free(h);
		return NULL;
	}
	return h;
}

int
metrics_start(struct event_base *base, const struct config *cfg)
{
	struct evhttp *h;
	int port = -1;

	if (cfg->metrics_host[0] == '\0') {
		metrics_stop();
		return 0;
	}
	/* a reload with the same address keeps the sockets (port 0 too) */
	if (http != NULL && strcmp(http_host, cfg->metrics_host) == 0 &&
	    strcmp(http_port, cfg->metrics_port) == 0)
		return 0;
	if ((h = bind_http(base, cfg->metrics_host, cfg->metrics_port, &port)) == NULL)
		return -1;
	metrics_stop();
	http = h;
	http_bound_port = port;
	snprintf(http_host, sizeof http_host, "%s", cfg->metrics_host);
	snprintf(http_port, sizeof http_port, "%s", cfg->metrics_port);
	return 0;
}

void
metrics_stop(void)
{
	if (http != NULL)
		evhttp_free(http);
	http = NULL;
	http_bound_port = -1;
	http_host[0] = http_port[0] = '\0';
}

int
metrics_port(void)
{
	return http_bound_port;
}

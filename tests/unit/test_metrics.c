/*
 * test_metrics.c — tests for proxy/metrics.c: the exposition text byte for
 * byte when nothing happened, the numbers after a known workload, the
 * histogram's bucket edges, label escaping, the shape of every line, and
 * the HTTP listener over a real loopback socket (GET, HEAD, 404, 405, a
 * reload that keeps or moves it, an address that cannot be bound).
 * Criterion runs each test in a process of its own, so every test starts
 * from zero counts.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "config.h"
#include "log.h"
#include "metrics.h"

/* metrics_render into a NUL-terminated string (free it). */
static char *
render(void)
{
	struct evbuffer *b = evbuffer_new();
	size_t len;
	char *s;

	cr_assert_not_null(b);
	cr_assert_eq(metrics_render(b), 0);
	len = evbuffer_get_length(b);
	s = malloc(len + 1);
	cr_assert_not_null(s);
	cr_assert_eq(evbuffer_remove(b, s, len), (int)len);
	s[len] = '\0';
	evbuffer_free(b);
	return s;
}

/* text holds line as a whole line. */
static void
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return;
	}
	cr_assert_fail("no line \"%s\" in:\n%s", line, text);
}

static const char empty[] =
    "# HELP mappend_sessions_open Client sessions open now.\n"
    "# TYPE mappend_sessions_open gauge\n"
    "mappend_sessions_open 0\n"
    "# HELP mappend_sessions_opened_total Client sessions started.\n"
    "# TYPE mappend_sessions_opened_total counter\n"
    "mappend_sessions_opened_total 0\n"
    "# HELP mappend_sessions_closed_total Client sessions ended, by how they ended.\n"
    "# TYPE mappend_sessions_closed_total counter\n"
    "mappend_sessions_closed_total{reason=\"client\"} 0\n"
    "mappend_sessions_closed_total{reason=\"idle\"} 0\n"
    "mappend_sessions_closed_total{reason=\"upstream\"} 0\n"
    "mappend_sessions_closed_total{reason=\"shutdown\"} 0\n"
    "mappend_sessions_closed_total{reason=\"limit\"} 0\n"
    "mappend_sessions_closed_total{reason=\"error\"} 0\n"
    "# HELP mappend_logins_total LOGIN and AUTHENTICATE answers, by result.\n"
    "# TYPE mappend_logins_total counter\n"
    "mappend_logins_total{result=\"ok\"} 0\n"
    "mappend_logins_total{result=\"failed\"} 0\n"
    "# HELP mappend_multiappends_total MULTIAPPEND commands emulated, by outcome.\n"
    "# TYPE mappend_multiappends_total counter\n"
    "mappend_multiappends_total{outcome=\"ok\"} 0\n"
    "mappend_multiappends_total{outcome=\"refused\"} 0\n"
    "mappend_multiappends_total{outcome=\"rolled_back\"} 0\n"
    "mappend_multiappends_total{outcome=\"rollback_failed\"} 0\n"
    "mappend_multiappends_total{outcome=\"client_gone\"} 0\n"
    "# HELP mappend_replayed_messages_total Messages of MULTIAPPENDs sent "
    "upstream as single APPENDs.\n"
    "# TYPE mappend_replayed_messages_total counter\n"
    "mappend_replayed_messages_total 0\n"
    "# HELP mappend_replayed_bytes_total Message bytes of MULTIAPPENDs sent "
    "upstream.\n"
    "# TYPE mappend_replayed_bytes_total counter\n"
    "mappend_replayed_bytes_total 0\n"
    "# HELP mappend_rollbacks_total Rollbacks of MULTIAPPENDs that failed "
    "half-way.\n"
    "# TYPE mappend_rollbacks_total counter\n"
    "mappend_rollbacks_total 0\n"
    "# HELP mappend_rollback_failures_total Rollbacks that left messages "
    "behind (logged with their UIDs).\n"
    "# TYPE mappend_rollback_failures_total counter\n"
    "mappend_rollback_failures_total 0\n"
    "# HELP mappend_journal_recoveries_total Crash journal records resolved "
    "at start.\n"
    "# TYPE mappend_journal_recoveries_total counter\n"
    "mappend_journal_recoveries_total 0\n"
    "# HELP mappend_spool_bytes Spool space in use by MULTIAPPENDs, bytes.\n"
    "# TYPE mappend_spool_bytes gauge\n"
    "mappend_spool_bytes 0\n"
    "# HELP mappend_upstream_connect_errors_total Connections to the upstream "
    "server that failed.\n"
    "# TYPE mappend_upstream_connect_errors_total counter\n"
    "mappend_upstream_connect_errors_total 0\n"
    "# HELP mappend_multiappend_duration_seconds Time from a MULTIAPPEND's "
    "command to its tagged answer, spooling and replay included.\n"
    "# TYPE mappend_multiappend_duration_seconds histogram\n"
    "mappend_multiappend_duration_seconds_bucket{le=\"0.1\"} 0\n"
    "mappend_multiappend_duration_seconds_bucket{le=\"0.5\"} 0\n"
    "mappend_multiappend_duration_seconds_bucket{le=\"1\"} 0\n"
    "mappend_multiappend_duration_seconds_bucket{le=\"5\"} 0\n"
    "mappend_multiappend_duration_seconds_bucket{le=\"10\"} 0\n"
    "mappend_multiappend_duration_seconds_bucket{le=\"30\"} 0\n"
    "mappend_multiappend_duration_seconds_bucket{le=\"60\"} 0\n"
    "mappend_multiappend_duration_seconds_bucket{le=\"300\"} 0\n"
    "mappend_multiappend_duration_seconds_bucket{le=\"+Inf\"} 0\n"
    "mappend_multiappend_duration_seconds_sum 0\n"
    "mappend_multiappend_duration_seconds_count 0\n";

Test(metrics, nothing_happened_yet)
{
	char *s = render();

	cr_assert_str_eq(s, empty);
	free(s);
}

static bool
is_name_char(char ch, bool first)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
	    ch == ':' || (!first && ch >= '0' && ch <= '9');
}

/*
 * Every line is "# HELP name text", "# TYPE name type" or a sample
 * "name[{l="v",...}] value"; a sample's family was announced by HELP and
 * TYPE right before its first sample; every name starts with mappend_.
 */
static void
check_shape(const char *text)
{
	char family[128] = "";
	const char *p = text;

	cr_assert(*text != '\0' && text[strlen(text) - 1] == '\n');
	while (*p != '\0') {
		const char *eol = strchr(p, '\n'), *q = p;
		char name[128];
		size_t n = 0;

		cr_assert_not_null(eol);
		if (strncmp(p, "# HELP ", 7) == 0 || strncmp(p, "# TYPE ", 7) == 0) {
			bool type = p[2] == 'T';

			for (q = p + 7; q < eol && *q != ' '; q++)
				name[n++] = *q;
			name[n] = '\0';
			cr_assert(strncmp(name, "mappend_", 8) == 0, "%s", name);
			if (type) {
				cr_assert_str_eq(name, family, "TYPE without its HELP");
				cr_assert(strncmp(q, " counter\n", 9) == 0 ||
				    strncmp(q, " gauge\n", 7) == 0 ||
				    strncmp(q, " histogram\n", 11) == 0);
			} else {
				snprintf(family, sizeof family, "%s", name);
			}
			p = eol + 1;
			continue;
		}
		cr_assert_neq(*p, '#', "a comment: %.*s", (int)(eol - p), p);
		for (; q < eol && is_name_char(*q, q == p); q++)
			name[n++] = *q;
		name[n] = '\0';
		/* the family, or the family's _bucket, _sum and _count */
		cr_assert(strncmp(name, family, strlen(family)) == 0 &&
		    family[0] != '\0', "sample %s outside its family %s", name, family);
		if (*q == '{') {
			for (q++; *q != '}'; ) {
				cr_assert(is_name_char(*q, true));
				while (is_name_char(*q, false))
					q++;
				cr_assert(q[0] == '=' && q[1] == '"');
				for (q += 2; *q != '"'; q++) {
					cr_assert(*q != '\n' && q < eol);
					if (*q == '\\')
						q++;
				}
				q++;
				if (*q == ',')
					q++;
			}
			q++;
		}
		cr_assert_eq(*q, ' ', "%.*s", (int)(eol - p), p);
		q++;
		cr_assert(q < eol);
		char *end;
		(void)strtod(q, &end);
		cr_assert_eq(end, eol, "value of %.*s", (int)(eol - p), p);
		p = eol + 1;
	}
}

Test(metrics, a_known_workload)
{
	char *s;

	for (int i = 0; i < 5; i++)
		metrics_session_opened();
	metrics_session_closed(METRICS_END_CLIENT);
	metrics_session_closed(METRICS_END_CLIENT);
	metrics_session_closed(METRICS_END_IDLE);
	metrics_session_closed(METRICS_END_LIMIT);
	metrics_login(true);
	metrics_login(true);
	metrics_login(false);
	metrics_multiappend(METRICS_MA_OK, 0.5, 10, 20480);
	metrics_multiappend(METRICS_MA_ROLLED_BACK, 2, 3, 3000);
	metrics_multiappend(METRICS_MA_REFUSED, 0.01, 0, 0);
	metrics_multiappend(METRICS_MA_ROLLBACK_FAILED, 40, 7, 7);
	metrics_multiappend(METRICS_MA_CLIENT_GONE, 1, 1, 1);
	metrics_rollback(true);
	metrics_rollback(false);
	metrics_recovery(2);
	metrics_recovery(0);
	metrics_upstream_connect_error();
	metrics_spool_bytes(5000);
	metrics_spool_bytes(-1000);
	s = render();
	check_shape(s);
	has_line(s, "mappend_sessions_open 1");
	has_line(s, "mappend_sessions_opened_total 5");
	has_line(s, "mappend_sessions_closed_total{reason=\"client\"} 2");
	has_line(s, "mappend_sessions_closed_total{reason=\"idle\"} 1");
	has_line(s, "mappend_sessions_closed_total{reason=\"upstream\"} 0");
	has_line(s, "mappend_sessions_closed_total{reason=\"limit\"} 1");
	has_line(s, "mappend_logins_total{result=\"ok\"} 2");
	has_line(s, "mappend_logins_total{result=\"failed\"} 1");
	has_line(s, "mappend_multiappends_total{outcome=\"ok\"} 1");
	has_line(s, "mappend_multiappends_total{outcome=\"refused\"} 1");
	has_line(s, "mappend_multiappends_total{outcome=\"rolled_back\"} 1");
	has_line(s, "mappend_multiappends_total{outcome=\"rollback_failed\"} 1");
	has_line(s, "mappend_multiappends_total{outcome=\"client_gone\"} 1");
	has_line(s, "mappend_replayed_messages_total 21");
	has_line(s, "mappend_replayed_bytes_total 23488");
	has_line(s, "mappend_rollbacks_total 2");
	has_line(s, "mappend_rollback_failures_total 1");
	has_line(s, "mappend_journal_recoveries_total 2");
	has_line(s, "mappend_upstream_connect_errors_total 1");
	has_line(s, "mappend_spool_bytes 4000");
	has_line(s, "mappend_multiappend_duration_seconds_bucket{le=\"0.1\"} 1");
	has_line(s, "mappend_multiappend_duration_seconds_bucket{le=\"0.5\"} 2");
	has_line(s, "mappend_multiappend_duration_seconds_bucket{le=\"1\"} 3");
	has_line(s, "mappend_multiappend_duration_seconds_bucket{le=\"5\"} 4");
	has_line(s, "mappend_multiappend_duration_seconds_bucket{le=\"30\"} 4");
	has_line(s, "mappend_multiappend_duration_seconds_bucket{le=\"60\"} 5");
	has_line(s, "mappend_multiappend_duration_seconds_bucket{le=\"+Inf\"} 5");
	has_line(s, "mappend_multiappend_duration_seconds_sum 43.51");
	has_line(s, "mappend_multiappend_duration_seconds_count 5");
	free(s);
}

/* A bucket's bound belongs to it (le: less or equal); what a clock gone
 * backwards or mad gives counts as 0 s and never spoils the sum. */
Test(metrics, histogram_edges)
{
	static const double d[] = {
		0, 0.1, 0.1000001, 0.5, 1, 5, 10, 30, 60, 300, 300.5, 1e9,
		-3, 0.0 / 0.0, 1.0 / 0.0,
	};
	char *s;

	for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
		metrics_multiappend(METRICS_MA_OK, d[i], 1, 1);
	s = render();
	check_shape(s);
	has_line(s, "mappend_multiappend_duration_seconds_bucket{le=\"0.1\"} 5");
	has_line(s, "mappend_multiappend_duration_seconds_bucket{le=\"0.5\"} 7");
	has_line(s, "mappend_multiappend_duration_seconds_bucket{le=\"1\"} 8");
	has_line(s, "mappend_multiappend_duration_seconds_bucket{le=\"5\"} 9");
	has_line(s, "mappend_multiappend_duration_seconds_bucket{le=\"10\"} 10");
	has_line(s, "mappend_multiappend_duration_seconds_bucket{le=\"30\"} 11");
	has_line(s, "mappend_multiappend_duration_seconds_bucket{le=\"60\"} 12");
	has_line(s, "mappend_multiappend_duration_seconds_bucket{le=\"300\"} 13");
	has_line(s, "mappend_multiappend_duration_seconds_bucket{le=\"+Inf\"} 15");
	has_line(s, "mappend_multiappend_duration_seconds_count 15");
	has_line(s, "mappend_multiappend_duration_seconds_sum 1.00000071e+09");
	free(s);
}

Test(metrics, label_values_escaped)
{
	struct evbuffer *b = evbuffer_new();
	char out[64];
	size_t n;

	cr_assert_eq(metrics_append_label_value(b, "a\"b\\c\nd"), 0);
	n = evbuffer_get_length(b);
	cr_assert_eq(evbuffer_remove(b, out, n), (int)n);
	out[n] = '\0';
	cr_assert_str_eq(out, "a\\\"b\\\\c\\nd");
	cr_assert_eq(metrics_append_label_value(b, ""), 0);
	cr_assert_eq(evbuffer_get_length(b), 0);
	evbuffer_free(b);
}

Test(metrics, label_names)
{
	cr_assert_str_eq(metrics_end_name(METRICS_END_CLIENT), "client");
	cr_assert_str_eq(metrics_end_name(METRICS_END_SHUTDOWN), "shutdown");
	cr_assert_str_eq(metrics_end_name(METRICS_END_ERROR), "error");
	cr_assert_str_eq(metrics_outcome_name(METRICS_MA_ROLLBACK_FAILED),
	    "rollback_failed");
	cr_assert_str_eq(metrics_outcome_name(METRICS_MA_CLIENT_GONE),
	    "client_gone");
	/* a value outside the set is a caller's bug, never a new series */
	metrics_session_closed((enum metrics_end)99);
	metrics_multiappend((enum metrics_outcome)-1, 1, 0, 0);
	char *s = render();
	check_shape(s);
	has_line(s, "mappend_sessions_closed_total{reason=\"error\"} 1");
	has_line(s, "mappend_multiappends_total{outcome=\"refused\"} 1");
	free(s);
}

/*
 * HTTP, from a client on the same loop.
 */

struct reply {
	struct event_base *base;
	int code;
	char content_type[128];
	char content_length[32];
	char allow[64];
	char *body;
	size_t len;
};

static void
copy_header(struct evhttp_request *req, const char *name, char *out, size_t len)
{
	const char *v = evhttp_find_header(evhttp_request_get_input_headers(req),
	    name);

	snprintf(out, len, "%s", v != NULL ? v : "");
}

static void
on_reply(struct evhttp_request *req, void *arg)
{
	struct reply *r = arg;
	struct evbuffer *in;

	event_base_loopexit(r->base, NULL);
	if (req == NULL || evhttp_request_get_response_code(req) == 0) {
		r->code = -1;
		return;
	}
	r->code = evhttp_request_get_response_code(req);
	copy_header(req, "Content-Type", r->content_type, sizeof r->content_type);
	copy_header(req, "Content-Length", r->content_length,
	    sizeof r->content_length);
	copy_header(req, "Allow", r->allow, sizeof r->allow);
	in = evhttp_request_get_input_buffer(req);
	r->len = evbuffer_get_length(in);
	r->body = malloc(r->len + 1);
	cr_assert_not_null(r->body);
	evbuffer_remove(in, r->body, r->len);
	r->body[r->len] = '\0';
}

static struct reply
request(struct event_base *base, const char *host, int port,
    enum evhttp_cmd_type type, const char *uri)
{
	struct reply r = { .base = base, .code = 0 };
	struct evhttp_connection *c;
	struct evhttp_request *req;

	c = evhttp_connection_base_new(base, NULL, host, (unsigned short)port);
	cr_assert_not_null(c);
	evhttp_connection_set_timeout(c, 5);
	req = evhttp_request_new(on_reply, &r);
	cr_assert_not_null(req);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Host", host);
	cr_assert_eq(evhttp_make_request(c, req, type, uri), 0);
	cr_assert_eq(event_base_dispatch(base), 0);
	evhttp_connection_free(c);
	return r;
}

static struct event_base *
setup_base(struct config *cfg, const char *host, const char *port)
{
	struct event_base *base = event_base_new();

	cr_assert_not_null(base);
	log_init("test", LOG_LEVEL_ERROR, false);
	config_defaults(cfg);
	snprintf(cfg->metrics_host, sizeof cfg->metrics_host, "%s", host);
	snprintf(cfg->metrics_port, sizeof cfg->metrics_port, "%s", port);
	return base;
}

Test(metrics, http_get_head_and_errors)
{
	struct config cfg;
	struct event_base *base = setup_base(&cfg, "127.0.0.1", "0");
	struct reply r;
	char *want;
	int port;

	metrics_session_opened();
	metrics_login(false);
	cr_assert_eq(metrics_start(base, &cfg), 0);
	port = metrics_port();
	cr_assert_gt(port, 0);

	r = request(base, "127.0.0.1", port, EVHTTP_REQ_GET, "/metrics");
	cr_assert_eq(r.code, 200);
	cr_assert_str_eq(r.content_type, "text/plain; version=0.0.4");
	want = render();
	cr_assert_str_eq(r.body, want);
	check_shape(r.body);
	has_line(r.body, "mappend_sessions_open 1");
	has_line(r.body, "mappend_logins_total{result=\"failed\"} 1");
	free(r.body);

	/* HEAD: GET's headers and length, no body */
	r = request(base, "127.0.0.1", port, EVHTTP_REQ_HEAD, "/metrics");
	cr_assert_eq(r.code, 200);
	cr_assert_str_eq(r.content_type, "text/plain; version=0.0.4");
	cr_assert_eq(strtoul(r.content_length, NULL, 10), strlen(want));
	cr_assert_eq(r.len, 0);
	free(r.body);
	free(want);

	/* a query string is still /metrics */
	r = request(base, "127.0.0.1", port, EVHTTP_REQ_GET, "/metrics?name[]=x");
	cr_assert_eq(r.code, 200);
	free(r.body);

	r = request(base, "127.0.0.1", port, EVHTTP_REQ_GET, "/");
	cr_assert_eq(r.code, 404);
	cr_assert_not_null(strstr(r.body, "/metrics"));
	free(r.body);
	r = request(base, "127.0.0.1", port, EVHTTP_REQ_GET, "/metrics/");
	cr_assert_eq(r.code, 404);
	free(r.body);
	r = request(base, "127.0.0.1", port, EVHTTP_REQ_GET, "/metricsx");
	cr_assert_eq(r.code, 404);
	free(r.body);

	r = request(base, "127.0.0.1", port, EVHTTP_REQ_POST, "/metrics");
	cr_assert_eq(r.code, 405);
	cr_assert_str_eq(r.allow, "GET, HEAD");
	free(r.body);
	r = request(base, "127.0.0.1", port, EVHTTP_REQ_DELETE, "/metrics");
	cr_assert_eq(r.code, 405);
	free(r.body);

	metrics_stop();
	cr_assert_eq(metrics_port(), -1);
	r = request(base, "127.0.0.1", port, EVHTTP_REQ_GET, "/metrics");
	cr_assert_eq(r.code, -1, "still answering after metrics_stop");
	event_base_free(base);
}

/* What the server sends for a raw request, to its close (at most 2 s). */
static char *
raw_exchange(struct event_base *base, int port, const char *req)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct timespec t0, t;
	char *out = calloc(1, 65536);
	size_t len = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_not_null(out);
	cr_assert_geq(fd, 0);
	sin.sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	cr_assert_eq(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		ssize_t n;

		event_base_loop(base, EVLOOP_NONBLOCK);
		n = read(fd, out + len, 65535 - len);
		if (n == 0)
			break;
		if (n > 0) {
			len += (size_t)n;
			continue;
		}
		cr_assert(errno == EAGAIN || errno == ECONNRESET, "%s",
		    strerror(errno));
		if (errno == ECONNRESET)
			break;
		clock_gettime(CLOCK_MONOTONIC, &t);
		cr_assert_lt(t.tv_sec - t0.tv_sec, 3, "no close from the server");
		usleep(1000);
	}
	close(fd);
	return out;
}

/* On the wire: HEAD has no body; an unknown method and oversized headers
 * are refused by evhttp itself. */
Test(metrics, http_on_the_wire)
{
	struct config cfg;
	struct event_base *base = setup_base(&cfg, "127.0.0.1", "0");
	char *resp, *big;
	int port;

	cr_assert_eq(metrics_start(base, &cfg), 0);
	port = metrics_port();
	resp = raw_exchange(base, port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n"
	    "Connection: close\r\n\r\n");
	cr_assert(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", resp);
	cr_assert_not_null(strstr(resp, "\r\nContent-Type: text/plain; "
	    "version=0.0.4\r\n"), "%s", resp);
	cr_assert_not_null(strstr(resp, "\r\nContent-Length: "), "%s", resp);
	/* nothing after the blank line */
	cr_assert_not_null(strstr(resp, "\r\n\r\n"));
	cr_assert_str_eq(strstr(resp, "\r\n\r\n"), "\r\n\r\n", "%s", resp);
	free(resp);

	resp = raw_exchange(base, port, "GET /metrics HTTP/1.0\r\n\r\n");
	cr_assert(strncmp(resp, "HTTP/1.0 200 OK\r\n", 17) == 0, "%s", resp);
	cr_assert_not_null(strstr(resp, "\r\n\r\n# HELP mappend_sessions_open "));
	free(resp);

	resp = raw_exchange(base, port, "BREW /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
	cr_assert(strncmp(resp, "HTTP/1.1 200", 12) != 0, "%s", resp);
	free(resp);

	big = malloc(20000);
	cr_assert_not_null(big);
	snprintf(big, 20000, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: %0*d\r\n\r\n",
	    16000, 0);
	resp = raw_exchange(base, port, big);
	cr_assert(strncmp(resp, "HTTP/1.1 200", 12) != 0, "%.40s", resp);
	free(resp);
	free(big);
	metrics_stop();
	event_base_free(base);
}

Test(metrics, http_ipv6_loopback)
{
	struct config cfg;
	struct event_base *base = setup_base(&cfg, "::1", "0");
	struct reply r;

	cr_assert_eq(metrics_start(base, &cfg), 0);
	r = request(base, "::1", metrics_port(), EVHTTP_REQ_GET, "/metrics");
	cr_assert_eq(r.code, 200);
	free(r.body);
	metrics_stop();
	event_base_free(base);
}

Test(metrics, off_by_default)
{
	struct config cfg;
	struct event_base *base = event_base_new();

	config_defaults(&cfg);
	cr_assert_str_eq(cfg.metrics_host, "");
	cr_assert_eq(metrics_start(base, &cfg), 0);
	cr_assert_eq(metrics_port(), -1);
	/* counting works without the listener */
	metrics_login(true);
	metrics_stop();
	event_base_free(base);
}

/* A reload: the same address keeps the socket (and its kernel-chosen port);
 * another one moves it; one that cannot be bound keeps the old; none stops. */
Test(metrics, reload_keeps_or_moves)
{
	struct config cfg;
	struct event_base *base = setup_base(&cfg, "127.0.0.1", "0");
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t slen = sizeof sin;
	struct reply r;
	int port, port2, busy, fd;

	cr_assert_eq(metrics_start(base, &cfg), 0);
	port = metrics_port();
	cr_assert_eq(metrics_start(base, &cfg), 0);
	cr_assert_eq(metrics_port(), port);

	snprintf(cfg.metrics_host, sizeof cfg.metrics_host, "127.0.0.2");
	cr_assert_eq(metrics_start(base, &cfg), 0);
	port2 = metrics_port();
	r = request(base, "127.0.0.2", port2, EVHTTP_REQ_GET, "/metrics");
	cr_assert_eq(r.code, 200);
	free(r.body);
	r = request(base, "127.0.0.1", port, EVHTTP_REQ_GET, "/metrics");
	cr_assert_eq(r.code, -1, "the old address still answers");

	/* a port someone else holds */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	cr_assert_eq(listen(fd, 1), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &slen), 0);
	busy = ntohs(sin.sin_port);
	snprintf(cfg.metrics_host, sizeof cfg.metrics_host, "127.0.0.1");
	snprintf(cfg.metrics_port, sizeof cfg.metrics_port, "%d", busy);
	cr_assert_eq(metrics_start(base, &cfg), -1);
	cr_assert_eq(metrics_port(), port2);
	r = request(base, "127.0.0.2", port2, EVHTTP_REQ_GET, "/metrics");
	cr_assert_eq(r.code, 200);
	free(r.body);
	close(fd);

	cfg.metrics_host[0] = '\0';
	cr_assert_eq(metrics_start(base, &cfg), 0);
	cr_assert_eq(metrics_port(), -1);
	event_base_free(base);
}

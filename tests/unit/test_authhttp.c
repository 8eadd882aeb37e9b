/*
 * test_authhttp.c — tests for proxy/authhttp.c: authhttp_parse rule by rule
 * from a table of headers, the URL and extra headers authhttp_new accepts,
 * and queries against endpoints in the test's own loop on 127.0.0.1: an
 * evhttp server answering as each test wants (or never), and a raw one that
 * records the request byte for byte and sends answers evhttp would not
 * (repeated headers, a header block too long, a close without an answer).
 * The cache is watched through the number of requests the endpoint saw.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "authhttp.h"

/*
 * authhttp_parse from a table.
 */

struct table {
	const char *const *h;	/* name, value, name, value, ..., NULL */
};

static const char *
lookup(void *ctx, const char *name)
{
	const struct table *t = ctx;
	const char *v = NULL;

	for (size_t i = 0; t->h[i] != NULL; i += 2)
		if (strcasecmp(t->h[i], name) == 0)
			v = t->h[i + 1];
	return v;
}

static struct authhttp_answer
parse(int code, const char *const *h)
{
	struct table t = { h };
	struct authhttp_answer a;

	authhttp_parse(code, lookup, &t, &a);
	return a;
}

#define H(...) ((const char *const[]){ __VA_ARGS__, NULL })

/* UNAVAILABLE, and nothing but the reason filled in. */
static void
assert_unavailable(const struct authhttp_answer *a)
{
	cr_assert_eq(a->status, AUTHHTTP_UNAVAILABLE);
	cr_assert_neq(a->error[0], '\0');
	cr_assert_str_empty(a->host);
	cr_assert_str_empty(a->port);
	cr_assert(!a->has_user && !a->has_pass);
	for (size_t i = 0; i < sizeof a->pass; i++)
		cr_assert_eq(a->pass[i], '\0');
}

Test(authhttp_parse, ok)
{
	struct authhttp_answer a = parse(200, H("Auth-Status", "OK",
	    "Auth-Server", "192.0.2.1", "Auth-Port", "143"));

	cr_assert_eq(a.status, AUTHHTTP_OK);
	cr_assert_str_eq(a.host, "192.0.2.1");
	cr_assert_str_eq(a.port, "143");
	cr_assert_str_empty(a.error);
	cr_assert_str_empty(a.error_code);
	cr_assert_eq(a.wait, 0);
	cr_assert(!a.has_user && !a.has_pass && !a.cached && !a.again);

	/* IPv6 without brackets, as nginx reads it; the port's zeros go */
	a = parse(200, H("Auth-Status", "OK", "Auth-Server", "2001:db8::1",
	    "Auth-Port", "0993", "Auth-Error-Code", "x"));
	cr_assert_eq(a.status, AUTHHTTP_OK);
	cr_assert_str_eq(a.host, "2001:db8::1");
	cr_assert_str_eq(a.port, "993");
	cr_assert_str_eq(a.error_code, "x");
	a = parse(200, H("Auth-Status", "OK", "Auth-Server", "10.0.0.1",
	    "Auth-Port", "65535"));
	cr_assert_eq(a.status, AUTHHTTP_OK);
	a = parse(200, H("Auth-Status", "OK", "Auth-Server", "10.0.0.1",
	    "Auth-Port", "1"));
	cr_assert_eq(a.status, AUTHHTTP_OK);
}

/* nginx reads no status code; an OK is believed in any 2xx here (nginx's
 * own http block answers 204), never in another. */
Test(authhttp_parse, ok_needs_2xx)
{
	const char *const *ok = H("Auth-Status", "OK", "Auth-Server", "192.0.2.1",
	    "Auth-Port", "143");
	struct authhttp_answer a;

	cr_assert_eq(parse(204, ok).status, AUTHHTTP_OK);
	cr_assert_eq(parse(299, ok).status, AUTHHTTP_OK);
	static const int bad[] = { 0, -1, 100, 199, 300, 302, 403, 500, 503 };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		a = parse(bad[i], ok);
		assert_unavailable(&a);
	}
}

Test(authhttp_parse, refusal)
{
	struct authhttp_answer a = parse(200, H("Auth-Status",
	    "Invalid login or password", "Auth-Wait", "3", "Auth-Error-Code",
	    "535 5.7.0", "Auth-Server", "192.0.2.1", "Auth-Port", "143"));

	cr_assert_eq(a.status, AUTHHTTP_REFUSED);
	cr_assert_str_eq(a.error, "Invalid login or password");
	cr_assert_str_eq(a.error_code, "535 5.7.0");
	cr_assert_eq(a.wait, 3);
	cr_assert_str_empty(a.host);
	cr_assert_str_empty(a.port);

	/* no Auth-Wait: nginx answers and closes */
	a = parse(200, H("Auth-Status", "Go away"));
	cr_assert_eq(a.status, AUTHHTTP_REFUSED);
	cr_assert_str_eq(a.error, "Go away");
	cr_assert_eq(a.wait, 0);
	cr_assert_str_empty(a.error_code);

	/* whatever the code: a refusal only denies */
	a = parse(403, H("Auth-Status", "Forbidden here", "Auth-Wait", "2"));
	cr_assert_eq(a.status, AUTHHTTP_REFUSED);
	cr_assert_eq(a.wait, 2);
	a = parse(500, H("Auth-Status", "Down"));
	cr_assert_eq(a.status, AUTHHTTP_REFUSED);

	/* nginx compares exactly: "ok" is a refusal's text */
	a = parse(200, H("Auth-Status", "ok", "Auth-Server", "192.0.2.1",
	    "Auth-Port", "143"));
	cr_assert_eq(a.status, AUTHHTTP_REFUSED);
	cr_assert_str_eq(a.error, "ok");

	/* an empty text still says something to the client */
	a = parse(200, H("Auth-Status", ""));
	cr_assert_eq(a.status, AUTHHTTP_REFUSED);
	cr_assert_str_eq(a.error, "Authentication failed");
}

Test(authhttp_parse, auth_wait)
{
	static const struct {
		const char *v;
		unsigned want;
	} cases[] = {
		{ "0", 0 }, { "3", 3 }, { "007", 7 }, { "3600", 3600 },
		{ "3601", 3600 }, { "99999999999999999999999", 3600 },
		/* what nginx cannot read as a number it ignores */
		{ "", 0 }, { "-1", 0 }, { "+3", 0 }, { "3s", 0 }, { "1 2", 0 },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct authhttp_answer a = parse(200, H("Auth-Status", "No",
		    "Auth-Wait", cases[i].v));

		cr_assert_eq(a.status, AUTHHTTP_REFUSED);
		cr_assert_eq(a.wait, cases[i].want, "Auth-Wait \"%s\": %u",
		    cases[i].v, a.wait);
	}
}

Test(authhttp_parse, unavailable)
{
	const char *const *cases[] = {
		H("Auth-Server", "192.0.2.1", "Auth-Port", "143"),
		H("Auth-Status", "OK"),
		H("Auth-Status", "OK", "Auth-Server", "192.0.2.1"),
		H("Auth-Status", "OK", "Auth-Port", "143"),
		H("Auth-Status", "OK", "Auth-Server", "", "Auth-Port", "143"),
		H("Auth-Status", "OK", "Auth-Server", "192.0.2.1", "Auth-Port", ""),
		/* an address, never a name, as nginx */
		H("Auth-Status", "OK", "Auth-Server", "imap.example.com",
		    "Auth-Port", "143"),
		H("Auth-Status", "OK", "Auth-Server", "[2001:db8::1]",
		    "Auth-Port", "143"),
		H("Auth-Status", "OK", "Auth-Server", "192.0.2.1:143",
		    "Auth-Port", "143"),
		H("Auth-Status", "OK", "Auth-Server", "192.0.2.256",
		    "Auth-Port", "143"),
		H("Auth-Status", "OK", "Auth-Server", "192.0.2.1", "Auth-Port", "0"),
		H("Auth-Status", "OK", "Auth-Server", "192.0.2.1",
		    "Auth-Port", "65536"),
		H("Auth-Status", "OK", "Auth-Server", "192.0.2.1",
		    "Auth-Port", "99999999999999999999"),
		H("Auth-Status", "OK", "Auth-Server", "192.0.2.1", "Auth-Port", "-1"),
		H("Auth-Status", "OK", "Auth-Server", "192.0.2.1", "Auth-Port", "+143"),
		H("Auth-Status", "OK", "Auth-Server", "192.0.2.1", "Auth-Port", "14a"),
		H("Auth-Status", "OK", "Auth-Server", "192.0.2.1", "Auth-Port", "imap"),
		/* nothing goes upstream as nobody */
		H("Auth-Status", "OK", "Auth-Server", "192.0.2.1", "Auth-Port", "143",
		    "Auth-User", "", "Auth-Pass", "secret"),
		/* a line break inside a value is no answer (nginx: invalid
		 * header), and would break the client's line */
		H("Auth-Status", "No\rway"),
		H("Auth-Status", "No\nway"),
		H("Auth-Status", "OK", "Auth-Server", "192.0.2.1", "Auth-Port", "143",
		    "Auth-Pass", "se\r\ncret"),
		H("Auth-Status", "OK", "Auth-Server", "192.0.2.1", "Auth-Port", "143",
		    "Auth-Error-Code", "a\nb"),
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct authhttp_answer a = parse(200, cases[i]);

		assert_unavailable(&a);
	}
}

/* Longer than the field: UNAVAILABLE, never cut. */
Test(authhttp_parse, field_bounds)
{
	char s255[256], s256[257], s31[32], s32[33];
	struct authhttp_answer a;

	memset(s255, 'x', 255);
	s255[255] = '\0';
	memset(s256, 'x', 256);
	s256[256] = '\0';
	memset(s31, '5', 31);
	s31[31] = '\0';
	memset(s32, '5', 32);
	s32[32] = '\0';

	a = parse(200, H("Auth-Status", s255));
	cr_assert_eq(a.status, AUTHHTTP_REFUSED);
	cr_assert_str_eq(a.error, s255);
	a = parse(200, H("Auth-Status", s256));
	assert_unavailable(&a);

	a = parse(200, H("Auth-Status", "No", "Auth-Error-Code", s31));
	cr_assert_eq(a.status, AUTHHTTP_REFUSED);
	cr_assert_str_eq(a.error_code, s31);
	a = parse(200, H("Auth-Status", "No", "Auth-Error-Code", s32));
	assert_unavailable(&a);

	a = parse(200, H("Auth-Status", "OK", "Auth-Server", "192.0.2.1",
	    "Auth-Port", "143", "Auth-User", s255, "Auth-Pass", s255,
	    "Auth-Error-Code", s31));
	cr_assert_eq(a.status, AUTHHTTP_OK);
	cr_assert_str_eq(a.user, s255);
	cr_assert_str_eq(a.pass, s255);
	cr_assert_str_eq(a.error_code, s31);
	a = parse(200, H("Auth-Status", "OK", "Auth-Server", "192.0.2.1",
	    "Auth-Port", "143", "Auth-User", s256));
	assert_unavailable(&a);
	a = parse(200, H("Auth-Status", "OK", "Auth-Server", "192.0.2.1",
	    "Auth-Port", "143", "Auth-User", "u", "Auth-Pass", s256));
	assert_unavailable(&a);
	a = parse(200, H("Auth-Status", "OK", "Auth-Server", "192.0.2.1",
	    "Auth-Port", "143", "Auth-Error-Code", s32));
	assert_unavailable(&a);
	a = parse(200, H("Auth-Status", "OK", "Auth-Server", s256,
	    "Auth-Port", "143"));
	assert_unavailable(&a);
	/* the port is read, not kept: its zeros are no length */
	a = parse(200, H("Auth-Status", "OK", "Auth-Server", "192.0.2.1",
	    "Auth-Port", "00000000000000000000143"));
	cr_assert_eq(a.status, AUTHHTTP_OK);
	cr_assert_str_eq(a.port, "143");
}

/* Auth-User and Auth-Pass replace what goes upstream, as sent (nginx does
 * not unescape them). */
Test(authhttp_parse, replacement_login)
{
	struct authhttp_answer a = parse(200, H("Auth-Status", "OK",
	    "Auth-Server", "192.0.2.1", "Auth-Port", "143",
	    "Auth-User", "real%20user@example.com", "Auth-Pass", "up stream"));

	cr_assert_eq(a.status, AUTHHTTP_OK);
	cr_assert(a.has_user && a.has_pass);
	cr_assert_str_eq(a.user, "real%20user@example.com");
	cr_assert_str_eq(a.pass, "up stream");

	/* an empty password is a password */
	a = parse(200, H("Auth-Status", "OK", "Auth-Server", "192.0.2.1",
	    "Auth-Port", "143", "Auth-Pass", ""));
	cr_assert_eq(a.status, AUTHHTTP_OK);
	cr_assert(!a.has_user && a.has_pass);
	cr_assert_str_empty(a.pass);

	/* a refusal carries none of it */
	a = parse(200, H("Auth-Status", "No", "Auth-User", "u", "Auth-Pass", "p"));
	cr_assert_eq(a.status, AUTHHTTP_REFUSED);
	cr_assert(!a.has_user && !a.has_pass);
	cr_assert_str_empty(a.pass);
}

/* "Auth-Status: WAIT": nginx waits Auth-Wait seconds and asks again. */
Test(authhttp_parse, wait_status)
{
	struct authhttp_answer a = parse(200, H("Auth-Status", "WAIT",
	    "Auth-Wait", "2", "Auth-Server", "192.0.2.1", "Auth-Port", "143"));

	cr_assert_eq(a.status, AUTHHTTP_UNAVAILABLE);
	cr_assert(a.again);
	cr_assert_eq(a.wait, 2);
	cr_assert_str_empty(a.host);
	a = parse(200, H("Auth-Status", "WAIT"));
	cr_assert(a.again);
	cr_assert_eq(a.wait, 0);
	a = parse(503, H("Auth-Status", "WAIT"));
	cr_assert_eq(a.status, AUTHHTTP_UNAVAILABLE);
	cr_assert(!a.again);
}

/* evhttp's header list as nginx reads repeated headers. */
Test(authhttp_parse, evhttp_headers)
{
	struct evkeyvalq h;
	struct authhttp_answer a;

	TAILQ_INIT(&h);
	cr_assert_null(authhttp_header(&h, "Auth-Status"));
	evhttp_add_header(&h, "auth-status", "OK");
	evhttp_add_header(&h, "AUTH-SERVER", "192.0.2.1");
	evhttp_add_header(&h, "Auth-Port", "1");
	evhttp_add_header(&h, "Auth-Port", "2");
	cr_assert_str_eq(authhttp_header(&h, "Auth-Status"), "OK");
	cr_assert_str_eq(authhttp_header(&h, "auth-port"), "2");
	authhttp_parse(200, authhttp_header, &h, &a);
	cr_assert_eq(a.status, AUTHHTTP_OK);
	cr_assert_str_eq(a.host, "192.0.2.1");
	cr_assert_str_eq(a.port, "2");
	/* a WAIT anywhere beats the OKs */
	evhttp_add_header(&h, "Auth-Status", "WAIT");
	evhttp_add_header(&h, "Auth-Status", "OK");
	cr_assert_str_eq(authhttp_header(&h, "Auth-Status"), "WAIT");
	/* a refusal anywhere beats both; the last refusal's text */
	evhttp_add_header(&h, "Auth-Status", "First");
	evhttp_add_header(&h, "Auth-Status", "Second");
	evhttp_add_header(&h, "Auth-Status", "OK");
	cr_assert_str_eq(authhttp_header(&h, "Auth-Status"), "Second");
	authhttp_parse(200, authhttp_header, &h, &a);
	cr_assert_eq(a.status, AUTHHTTP_REFUSED);
	cr_assert_str_eq(a.error, "Second");
	evhttp_clear_headers(&h);
}

/*
 * authhttp_new.
 */

static void
new_fails(const char *url, const char *const *extra, const char *why)
{
	struct event_base *base = event_base_new();
	struct authhttp_options o = { .url = url, .extra_headers = extra };
	char err[512] = "";

	cr_assert_null(authhttp_new(base, NULL, &o, err, sizeof err), "%s", url);
	cr_assert_not_null(strstr(err, why), "%s: \"%s\" lacks \"%s\"",
	    url != NULL ? url : "NULL", err, why);
	event_base_free(base);
}

static void
new_works(const char *url, const char *const *extra)
{
	struct event_base *base = event_base_new();
	struct authhttp_options o = { .url = url, .extra_headers = extra,
	    .cache_entries = 4, .cache_ttl = 10 };
	char err[512] = "";
	struct authhttp *ah = authhttp_new(base, NULL, &o, err, sizeof err);

	cr_assert_not_null(ah, "%s: %s", url, err);
	authhttp_free(ah);
	event_base_free(base);
}

Test(authhttp_new, urls)
{
	new_works("http://127.0.0.1:9000/auth", NULL);
	new_works("http://auth.example.com", NULL);
	new_works("http://[::1]:8080/a/b?c=d&e", NULL);
	/* nginx's auth_http takes a URL without its scheme too */
	new_works("127.0.0.1:9000/auth", NULL);
	new_works("localhost", NULL);

	new_fails(NULL, NULL, "no URL");
	new_fails("https://auth.example.com/", NULL, "only http://");
	new_fails("unix:/run/auth.sock:/auth", NULL, "only http://");
	new_fails("ftp://h/", NULL, "only http://");
	new_fails("http://", NULL, "no host");
	new_fails("http:///auth", NULL, "no host");
	new_fails("http://h:0/", NULL, "bad port");
	new_fails("http://h:65536/", NULL, "bad port");
	new_fails("http://h:/", NULL, "bad port");
	new_fails("http://h:8x/", NULL, "bad port");
	new_fails("http://[::1/", NULL, "IPv6");
	new_fails("http://[nothing]/", NULL, "IPv6");
	new_fails("http://[::1]x/", NULL, "bad port");
	new_fails("http://h?x=1", NULL, "query");
	new_fails("http://u:p@h/", NULL, "user");
	new_fails("http://h/a b", NULL, "space");
	new_fails("http://h/\xc3\xa9", NULL, "8-bit");
	new_fails("http://h\r/", NULL, "control");
	new_fails("http://a,b/", NULL, "bad character");
}

Test(authhttp_new, extra_headers)
{
	new_works("http://h/", H("X-Auth-Key: secret", "X-Empty:", "A:b\tc"));
	new_fails("http://h/", H("X-Ok: 1", "NoColon"), "\"NoColon\": not");
	new_fails("http://h/", H(": v"), "not \"Name: value\"");
	new_fails("http://h/", H("Bad Name: v"), "bad character in the name");
	new_fails("http://h/", H("X: a\r\nInjected: 1"), "control character");
	new_fails("http://h/", H("X: a\nb"), "control character");
}

/*
 * Endpoints in the test's loop.
 */

struct reply {
	int code;		/* 0: never answer */
	const char *headers[12];	/* "Name", "value", ..., NULL */
	size_t body;		/* bytes of body */
};

/* An evhttp server: the reply is replies[n] for the n-th request (the
 * last one again after the end). */
struct endpoint {
	struct evhttp *http;
	int port;
	int requests;
	char uri[256];
	char headers[24][512];	/* "Name: value" of the last request */
	size_t nheaders;
	const struct reply *replies;
	size_t nreplies;
	struct evhttp_request *pending[16];	/* never answered */
	size_t npending;
	/* called when a request arrives (before the reply) */
	void (*on_request)(struct endpoint *);
	void *arg;
};

static void
endpoint_handle(struct evhttp_request *req, void *arg)
{
	struct endpoint *ep = arg;
	const struct reply *r;
	struct evkeyval *h;
	struct evbuffer *body;
	size_t i = (size_t)ep->requests;

	ep->requests++;
	snprintf(ep->uri, sizeof ep->uri, "%s", evhttp_request_get_uri(req));
	ep->nheaders = 0;
	TAILQ_FOREACH(h, evhttp_request_get_input_headers(req), next) {
		cr_assert_lt(ep->nheaders, 24);
		snprintf(ep->headers[ep->nheaders++], sizeof ep->headers[0], "%s: %s",
		    h->key, h->value);
	}
	if (ep->on_request != NULL)
		ep->on_request(ep);
	r = &ep->replies[i < ep->nreplies ? i : ep->nreplies - 1];
	if (r->code == 0) {
		cr_assert_lt(ep->npending, 16);
		ep->pending[ep->npending++] = req;
		return;
	}
	for (size_t k = 0; r->headers[k] != NULL; k += 2)
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    r->headers[k], r->headers[k + 1]);
	body = evbuffer_new();
	cr_assert_not_null(body);
	for (size_t n = 0; n < r->body; n++)
		evbuffer_add(body, "x", 1);
	evhttp_send_reply(req, r->code, "Whatever", body);
	evbuffer_free(body);
}

static void
endpoint_start(struct endpoint *ep, struct event_base *base,
    const struct reply *replies, size_t n)
{
	struct evhttp_bound_socket *s;
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;

	/* the daemon ignores it (main.c); the endpoint here writes a body
	 * the client does not read */
	signal(SIGPIPE, SIG_IGN);
	memset(ep, 0, sizeof *ep);
	ep->replies = replies;
	ep->nreplies = n;
	ep->http = evhttp_new(base);
	cr_assert_not_null(ep->http);
	evhttp_set_gencb(ep->http, endpoint_handle, ep);
	s = evhttp_bind_socket_with_handle(ep->http, "127.0.0.1", 0);
	cr_assert_not_null(s);
	cr_assert_eq(getsockname(evhttp_bound_socket_get_fd(s),
	    (struct sockaddr *)&sin, &len), 0);
	ep->port = ntohs(sin.sin_port);
}

/* A request never answered is answered now: evhttp keeps one whose
 * connection has gone for the reply that frees it. */
static void
endpoint_stop(struct endpoint *ep)
{
	for (size_t i = 0; i < ep->npending; i++)
		evhttp_send_reply(ep->pending[i], 500, "Bye", NULL);
	evhttp_free(ep->http);
}

/* Has the last request a header line exactly so? */
static bool
endpoint_saw(const struct endpoint *ep, const char *line)
{
	for (size_t i = 0; i < ep->nheaders; i++)
		if (strcmp(ep->headers[i], line) == 0)
			return true;
	return false;
}

/* A raw server: records the request's bytes, answers with answer (NULL:
 * closes), then closes. */
struct raw {
	struct evconnlistener *l;
	int port;
	int connections;
	const char *answer;
	char request[8192];
	size_t len;
	struct bufferevent *bevs[16];
};

static void
raw_forget(struct raw *r, struct bufferevent *bev)
{
	for (size_t i = 0; i < 16; i++)
		if (r->bevs[i] == bev)
			r->bevs[i] = NULL;
	bufferevent_free(bev);
}

static void
raw_event(struct bufferevent *bev, short what, void *arg)
{
	(void)what;
	raw_forget(arg, bev);
}

static void
raw_written(struct bufferevent *bev, void *arg)
{
	raw_forget(arg, bev);
}

static void
raw_read(struct bufferevent *bev, void *arg)
{
	struct raw *r = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n = evbuffer_get_length(in);

	cr_assert_lt(r->len + n, sizeof r->request);
	evbuffer_remove(in, r->request + r->len, n);
	r->len += n;
	r->request[r->len] = '\0';
	if (strstr(r->request, "\r\n\r\n") == NULL)
		return;
	if (r->answer == NULL) {
		raw_forget(r, bev);
		return;
	}
	bufferevent_write(bev, r->answer, strlen(r->answer));
	bufferevent_setcb(bev, NULL, raw_written, raw_event, r);
}

static void
raw_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct raw *r = arg;
	struct bufferevent *bev;

	(void)sa;
	(void)salen;
	bev = bufferevent_socket_new(evconnlistener_get_base(l), fd,
	    BEV_OPT_CLOSE_ON_FREE);
	cr_assert_not_null(bev);
	cr_assert_lt(r->connections, 16);
	r->bevs[r->connections++] = bev;
	r->len = 0;
	bufferevent_setcb(bev, raw_read, NULL, raw_event, r);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* On 127.0.0.1, or on ::1 (false when there is none). */
static bool
raw_listen(struct raw *r, struct event_base *base, const char *answer,
    bool ipv6)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	struct sockaddr *sa = ipv6 ? (struct sockaddr *)&sin6 :
	    (struct sockaddr *)&sin;
	socklen_t len = ipv6 ? sizeof sin6 : sizeof sin;

	signal(SIGPIPE, SIG_IGN);
	memset(r, 0, sizeof *r);
	r->answer = answer;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin6.sin6_addr = in6addr_loopback;
	r->l = evconnlistener_new_bind(base, raw_accept, r,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 8, sa, (int)len);
	if (r->l == NULL)
		return false;
	cr_assert_eq(getsockname(evconnlistener_get_fd(r->l), sa, &len), 0);
	r->port = ntohs(ipv6 ? sin6.sin6_port : sin.sin_port);
	return true;
}

static void
raw_start(struct raw *r, struct event_base *base, const char *answer)
{
	cr_assert(raw_listen(r, base, answer, false));
}

static void
raw_stop(struct raw *r)
{
	for (size_t i = 0; i < 16; i++)
		if (r->bevs[i] != NULL)
			bufferevent_free(r->bevs[i]);
	evconnlistener_free(r->l);
}

/*
 * Queries.
 */

struct result {
	int calls;
	struct authhttp_answer a;
	struct authhttp **free_me;	/* authhttp_free'd from the callback */
};

static void
on_answer(const struct authhttp_answer *a, void *arg)
{
	struct result *r = arg;

	r->calls++;
	r->a = *a;
	if (r->free_me != NULL) {
		authhttp_free(*r->free_me);
		*r->free_me = NULL;
	}
}

static void
guard_fired(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(bool *)arg = true;
}

/* Runs the loop until r has n answers (5 s at most). */
static void
wait_for(struct event_base *base, const struct result *r, int n)
{
	struct timeval five = { 5, 0 };
	bool expired = false;
	struct event *guard = evtimer_new(base, guard_fired, &expired);

	cr_assert_not_null(guard);
	evtimer_add(guard, &five);
	while (r->calls < n && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(guard);
	cr_assert_eq(r->calls, n, "%d answers, not %d, after 5 s", r->calls, n);
}

/* Runs the loop for ms milliseconds. */
static void
spin(struct event_base *base, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static struct authhttp *
client(struct event_base *base, int port, const char *path, size_t entries,
    unsigned ttl, unsigned timeout)
{
	struct authhttp_options o = { .timeout = timeout, .cache_entries = entries,
	    .cache_ttl = ttl };
	char url[128], err[256];
	struct authhttp *ah;

	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
	o.url = url;
	ah = authhttp_new(base, NULL, &o, err, sizeof err);
	cr_assert_not_null(ah, "%s", err);
	return ah;
}

static struct authhttp_request
login(const char *user, const char *pass)
{
	return (struct authhttp_request){ .method = "plain", .user = user,
	    .pass = pass, .attempt = 1, .client_ip = "192.0.2.42" };
}

/* One query, run to its answer. */
static struct authhttp_answer
ask(struct event_base *base, struct authhttp *ah,
    const struct authhttp_request *req)
{
	struct result r = { 0 };

	cr_assert_not_null(authhttp_query(ah, req, on_answer, &r));
	cr_assert_eq(r.calls, 0, "called before authhttp_query returned");
	wait_for(base, &r, 1);
	return r.a;
}

static const struct reply ok_reply[] = {
	{ 200, { "Auth-Status", "OK", "Auth-Server", "192.0.2.7",
	    "Auth-Port", "1143", NULL }, 0 },
};

Test(authhttp, ok_route)
{
	struct event_base *base = event_base_new();
	struct endpoint ep;
	struct authhttp *ah;
	struct authhttp_request req = login("alice", "secret");
	struct authhttp_answer a;
	struct authhttp_stats st;

	endpoint_start(&ep, base, ok_reply, 1);
	ah = client(base, ep.port, "/auth", 0, 0, 5);
	a = ask(base, ah, &req);
	cr_assert_eq(a.status, AUTHHTTP_OK, "%s", a.error);
	cr_assert_str_eq(a.host, "192.0.2.7");
	cr_assert_str_eq(a.port, "1143");
	cr_assert(!a.cached);
	cr_assert_eq(ep.requests, 1);
	cr_assert_str_eq(ep.uri, "/auth");
	cr_assert(endpoint_saw(&ep, "Auth-User: alice"));
	cr_assert(endpoint_saw(&ep, "Auth-Pass: secret"));
	cr_assert(endpoint_saw(&ep, "Auth-Protocol: imap"));
	/* no cache: the same login asks again */
	a = ask(base, ah, &req);
	cr_assert_eq(a.status, AUTHHTTP_OK);
	cr_assert_eq(ep.requests, 2);
	authhttp_stats(ah, &st);
	cr_assert_eq(st.queries, 2);
	cr_assert_eq(st.ok, 2);
	cr_assert_eq(st.cache_hits + st.refused + st.unavailable, 0);
	authhttp_free(ah);
	endpoint_stop(&ep);
	event_base_free(base);
}

/* nginx's own http block as the endpoint answers 204; a body is ignored,
 * however long. */
Test(authhttp, no_content_and_long_body)
{
	static const struct reply replies[] = {
		{ 204, { "Auth-Status", "OK", "Auth-Server", "::1",
		    "Auth-Port", "143", NULL }, 0 },
		{ 200, { "Auth-Status", "OK", "Auth-Server", "192.0.2.7",
		    "Auth-Port", "143", NULL }, 1 << 20 },
	};
	struct event_base *base = event_base_new();
	struct endpoint ep;
	struct authhttp *ah;
	struct authhttp_request req = login("alice", "secret");
	struct authhttp_answer a;

	endpoint_start(&ep, base, replies, 2);
	ah = client(base, ep.port, "/", 0, 0, 5);
	a = ask(base, ah, &req);
	cr_assert_eq(a.status, AUTHHTTP_OK, "%s", a.error);
	cr_assert_str_eq(a.host, "::1");
	a = ask(base, ah, &req);
	cr_assert_eq(a.status, AUTHHTTP_OK, "%s", a.error);
	cr_assert_str_eq(a.host, "192.0.2.7");
	authhttp_free(ah);
	endpoint_stop(&ep);
	event_base_free(base);
}

Test(authhttp, refusal)
{
	static const struct reply replies[] = {
		{ 200, { "Auth-Status", "Invalid login or password", "Auth-Wait", "3",
		    "Auth-Error-Code", "535 5.7.8", NULL }, 0 },
	};
	struct event_base *base = event_base_new();
	struct endpoint ep;
	struct authhttp *ah;
	struct authhttp_request req = login("alice", "wrong");
	struct authhttp_answer a;
	struct authhttp_stats st;

	endpoint_start(&ep, base, replies, 1);
	ah = client(base, ep.port, "/auth", 16, 60, 5);
	a = ask(base, ah, &req);
	cr_assert_eq(a.status, AUTHHTTP_REFUSED, "%s", a.error);
	cr_assert_str_eq(a.error, "Invalid login or password");
	cr_assert_str_eq(a.error_code, "535 5.7.8");
	cr_assert_eq(a.wait, 3);
	/* refusals are not cached */
	a = ask(base, ah, &req);
	cr_assert_eq(a.status, AUTHHTTP_REFUSED);
	cr_assert(!a.cached);
	cr_assert_eq(ep.requests, 2);
	authhttp_stats(ah, &st);
	cr_assert_eq(st.refused, 2);
	cr_assert_eq(st.cache_hits, 0);
	authhttp_free(ah);
	endpoint_stop(&ep);
	event_base_free(base);
}

/* What is not an answer: a 500, a 200 without Auth-Status, an OK without
 * a server. */
Test(authhttp, not_an_answer)
{
	static const struct reply replies[] = {
		{ 500, { NULL }, 10 },
		{ 200, { "Content-Type", "text/html", NULL }, 10 },
		{ 200, { "Auth-Status", "OK", "Auth-Port", "143", NULL }, 0 },
		{ 302, { "Auth-Status", "OK", "Auth-Server", "192.0.2.1",
		    "Auth-Port", "143", "Location", "/elsewhere", NULL }, 0 },
	};
	struct event_base *base = event_base_new();
	struct endpoint ep;
	struct authhttp *ah;
	struct authhttp_request req = login("alice", "secret");
	struct authhttp_answer a;
	struct authhttp_stats st;

	endpoint_start(&ep, base, replies, 4);
	ah = client(base, ep.port, "/auth", 16, 60, 5);
	for (int i = 0; i < 4; i++) {
		a = ask(base, ah, &req);
		cr_assert_eq(a.status, AUTHHTTP_UNAVAILABLE, "reply %d", i);
		cr_assert_neq(a.error[0], '\0');
		cr_assert_null(strstr(a.error, "secret"), "%s", a.error);
	}
	cr_assert_eq(ep.requests, 4);
	authhttp_stats(ah, &st);
	cr_assert_eq(st.unavailable, 4);
	authhttp_free(ah);
	endpoint_stop(&ep);
	event_base_free(base);
}

Test(authhttp, timeout)
{
	static const struct reply never[] = { { 0, { NULL }, 0 } };
	struct event_base *base = event_base_new();
	struct endpoint ep;
	struct authhttp *ah;
	struct authhttp_request req = login("alice", "secret");
	struct authhttp_answer a;

	endpoint_start(&ep, base, never, 1);
	ah = client(base, ep.port, "/auth", 0, 0, 1);
	a = ask(base, ah, &req);
	cr_assert_eq(a.status, AUTHHTTP_UNAVAILABLE);
	cr_assert_not_null(strstr(a.error, "no answer in 1 s"), "%s", a.error);
	cr_assert_eq(ep.requests, 1);
	authhttp_free(ah);
	endpoint_stop(&ep);
	event_base_free(base);
}

Test(authhttp, connection_refused)
{
	struct event_base *base = event_base_new();
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof sin;
	struct authhttp *ah;
	struct authhttp_request req = login("alice", "secret");
	struct authhttp_answer a;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	/* a port where nothing listens: bound, read back, closed */
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	ah = client(base, ntohs(sin.sin_port), "/auth", 0, 0, 5);
	a = ask(base, ah, &req);
	cr_assert_eq(a.status, AUTHHTTP_UNAVAILABLE);
	cr_assert_not_null(strstr(a.error, "127.0.0.1"), "%s", a.error);
	authhttp_free(ah);
	event_base_free(base);
}

/* The whole request, byte for byte, as nginx 1.22 to 1.29 sends it for an
 * IMAP login over TLS behind a PROXY header: user and password escaped
 * (space, "%" and bytes below 0x20; 8-bit bytes and DEL as they are), the
 * configured headers last. */
Test(authhttp, request_exactly_as_nginx)
{
	static const char *const extra[] = { "X-Auth-Key: shared secret",
	    "X-Other:v", NULL };
	static const char want[] =
	    "GET /auth?x=1&y HTTP/1.0\r\n"
	    "Host: 127.0.0.1\r\n"
	    "Auth-Method: plain\r\n"
	    "Auth-User: j%20doe%25\xc3\xbc%01\r\n"
	    "Auth-Pass: p%25w%20%09\x7f\xe2\x82\xac%0D%0A\r\n"
	    "Auth-Protocol: imap\r\n"
	    "Auth-Login-Attempt: 2\r\n"
	    "Client-IP: 192.0.2.42\r\n"
	    "Client-Host: [UNAVAILABLE]\r\n"
	    "Proxy-Protocol-Addr: 198.51.100.7\r\n"
	    "Proxy-Protocol-Port: 50123\r\n"
	    "Proxy-Protocol-Server-Addr: 203.0.113.1\r\n"
	    "Proxy-Protocol-Server-Port: 993\r\n"
	    "Auth-SSL: on\r\n"
	    "Auth-SSL-Protocol: TLSv1.3\r\n"
	    "Auth-SSL-Cipher: TLS_AES_256_GCM_SHA384\r\n"
	    "X-Auth-Key: shared secret\r\n"
	    "X-Other: v\r\n"
	    "\r\n";
	struct event_base *base = event_base_new();
	struct raw raw;
	struct authhttp_options o = { .timeout = 5, .extra_headers = extra };
	struct authhttp_request req = {
		.method = "plain", .user = "j doe%\xc3\xbc\x01",
		.pass = "p%w \t\x7f\xe2\x82\xac\r\n", .attempt = 2,
		.client_ip = "192.0.2.42", .client_tls = true,
		.tls_protocol = "TLSv1.3", .tls_cipher = "TLS_AES_256_GCM_SHA384",
		.proxy_addr = "198.51.100.7", .proxy_port = 50123,
		.proxy_server_addr = "203.0.113.1", .proxy_server_port = 993,
	};
	struct authhttp *ah;
	struct authhttp_answer a;
	char url[128], err[256];

	raw_start(&raw, base, "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n"
	    "Auth-Server: 192.0.2.1\r\nAuth-Port: 143\r\n\r\n");
	snprintf(url, sizeof url, "http://127.0.0.1:%d/auth?x=1&y", raw.port);
	o.url = url;
	ah = authhttp_new(base, NULL, &o, err, sizeof err);
	cr_assert_not_null(ah, "%s", err);
	a = ask(base, ah, &req);
	cr_assert_eq(a.status, AUTHHTTP_OK, "%s", a.error);
	cr_assert_eq(raw.len, sizeof want - 1, "got:\n%s", raw.request);
	cr_assert(memcmp(raw.request, want, raw.len) == 0, "got:\n%s",
	    raw.request);
	authhttp_free(ah);
	raw_stop(&raw);
	event_base_free(base);
}

/* A plaintext client: no Auth-SSL; a name for Client-Host is sent as is;
 * no path in the URL asks for "/". */
Test(authhttp, request_plaintext)
{
	static const char want[] =
	    "GET / HTTP/1.0\r\n"
	    "Host: 127.0.0.1\r\n"
	    "Auth-Method: plain\r\n"
	    "Auth-User: alice\r\n"
	    "Auth-Pass: secret\r\n"
	    "Auth-Protocol: imap\r\n"
	    "Auth-Login-Attempt: 1\r\n"
	    "Client-IP: 2001:db8::42\r\n"
	    "Client-Host: client.example.org\r\n"
	    "\r\n";
	struct event_base *base = event_base_new();
	struct raw raw;
	struct authhttp_request req = login("alice", "secret");
	struct authhttp *ah;
	struct authhttp_answer a;

	req.client_ip = "2001:db8::42";
	req.client_host = "client.example.org";
	raw_start(&raw, base, "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n"
	    "Auth-Server: 192.0.2.1\r\nAuth-Port: 143\r\n\r\n");
	ah = client(base, raw.port, "", 0, 0, 5);
	a = ask(base, ah, &req);
	cr_assert_eq(a.status, AUTHHTTP_OK, "%s", a.error);
	cr_assert_str_eq(raw.request, want);
	authhttp_free(ah);
	raw_stop(&raw);
	event_base_free(base);
}

/* An IPv6 endpoint: Host carries the brackets, as nginx's does. */
Test(authhttp, request_ipv6_host)
{
	static const char head[] = "GET /a HTTP/1.0\r\nHost: [::1]\r\n";
	struct event_base *base = event_base_new();
	struct raw raw;
	struct authhttp_options o = { .timeout = 5 };
	struct authhttp_request req = login("alice", "secret");
	struct authhttp *ah;
	struct authhttp_answer a;
	char url[128], err[256];

	if (!raw_listen(&raw, base, "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n"
	    "Auth-Server: ::1\r\nAuth-Port: 143\r\n\r\n", true)) {
		event_base_free(base);
		cr_skip_test("no IPv6 loopback here");
	}
	snprintf(url, sizeof url, "http://[::1]:%d/a", raw.port);
	o.url = url;
	ah = authhttp_new(base, NULL, &o, err, sizeof err);
	cr_assert_not_null(ah, "%s", err);
	a = ask(base, ah, &req);
	cr_assert_eq(a.status, AUTHHTTP_OK, "%s", a.error);
	cr_assert_str_eq(a.host, "::1");
	cr_assert(strncmp(raw.request, head, strlen(head)) == 0, "%s",
	    raw.request);
	authhttp_free(ah);
	raw_stop(&raw);
	event_base_free(base);
}

/* Fields that cannot go into a header are not sent; the answer says so,
 * later, like any other. */
Test(authhttp, request_not_sendable)
{
	struct event_base *base = event_base_new();
	struct endpoint ep;
	struct authhttp *ah;
	struct authhttp_request req = login("alice", "secret");
	struct authhttp_answer a;

	endpoint_start(&ep, base, ok_reply, 1);
	ah = client(base, ep.port, "/auth", 16, 60, 5);
	req.client_ip = NULL;
	a = ask(base, ah, &req);
	cr_assert_eq(a.status, AUTHHTTP_UNAVAILABLE);
	req = login("alice", "secret");
	req.client_host = "evil\r\nAuth-Status: OK";
	a = ask(base, ah, &req);
	cr_assert_eq(a.status, AUTHHTTP_UNAVAILABLE);
	req = login("alice", "secret");
	req.method = "";
	a = ask(base, ah, &req);
	cr_assert_eq(a.status, AUTHHTTP_UNAVAILABLE);
	req = login(NULL, "secret");
	a = ask(base, ah, &req);
	cr_assert_eq(a.status, AUTHHTTP_UNAVAILABLE);
	cr_assert_eq(ep.requests, 0);
	authhttp_free(ah);
	endpoint_stop(&ep);
	event_base_free(base);
}

/* Answers evhttp would not send: repeated headers (nginx: the last one
 * counts, and any refusing Auth-Status refuses), names in any case, a
 * header block too long, a close without an answer, garbage. */
static struct authhttp_answer
raw_answer(const char *answer, int *connections)
{
	struct event_base *base = event_base_new();
	struct raw raw;
	struct authhttp_request req = login("alice", "secret");
	struct authhttp *ah;
	struct authhttp_answer a;

	raw_start(&raw, base, answer);
	ah = client(base, raw.port, "/auth", 0, 0, 2);
	a = ask(base, ah, &req);
	if (connections != NULL)
		*connections = raw.connections;
	authhttp_free(ah);
	raw_stop(&raw);
	event_base_free(base);
	return a;
}

Test(authhttp, raw_answers)
{
	static char big[AUTHHTTP_MAX_HEADERS + 512];
	struct authhttp_answer a;
	int n;

	a = raw_answer("HTTP/1.0 200 OK\r\nauth-status: OK\r\nAUTH-SERVER: "
	    "192.0.2.1\r\nAuth-Port: 1\r\nAuth-Port: 2\r\n\r\n", NULL);
	cr_assert_eq(a.status, AUTHHTTP_OK, "%s", a.error);
	cr_assert_str_eq(a.port, "2");

	a = raw_answer("HTTP/1.0 200 OK\r\nAuth-Status: Bad one\r\n"
	    "Auth-Status: OK\r\nAuth-Server: 192.0.2.1\r\nAuth-Port: 143\r\n"
	    "\r\n", NULL);
	cr_assert_eq(a.status, AUTHHTTP_REFUSED);
	cr_assert_str_eq(a.error, "Bad one");

	/* spaces around a value go, as nginx trims them */
	a = raw_answer("HTTP/1.1 200 OK\r\nAuth-Status:   No entry   \r\n"
	    "Auth-Wait: 1 \r\nContent-Length: 5\r\n\r\nhello", NULL);
	cr_assert_eq(a.status, AUTHHTTP_REFUSED);
	cr_assert_str_eq(a.error, "No entry");
	cr_assert_eq(a.wait, 1);

	/* no end of the headers, then the close */
	a = raw_answer("HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n", NULL);
	cr_assert_eq(a.status, AUTHHTTP_UNAVAILABLE);

	a = raw_answer(NULL, &n);
	cr_assert_eq(a.status, AUTHHTTP_UNAVAILABLE);
	cr_assert_not_null(strstr(a.error, "closed"), "%s", a.error);
	cr_assert_eq(n, 1);

	a = raw_answer("SMTP/1.0 go away\r\n\r\n", NULL);
	cr_assert_eq(a.status, AUTHHTTP_UNAVAILABLE);

	snprintf(big, sizeof big, "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n"
	    "Auth-Server: 192.0.2.1\r\nAuth-Port: 143\r\nX-Padding: ");
	memset(big + strlen(big), 'p', AUTHHTTP_MAX_HEADERS);
	strcat(big, "\r\n\r\n");
	a = raw_answer(big, NULL);
	cr_assert_eq(a.status, AUTHHTTP_UNAVAILABLE);
}

/* Auth-Status: WAIT is asked again (the same request, not a new attempt),
 * a few times. */
Test(authhttp, wait_then_ok)
{
	static const struct reply replies[] = {
		{ 200, { "Auth-Status", "WAIT", "Auth-Wait", "0", NULL }, 0 },
		{ 200, { "Auth-Status", "WAIT", "Auth-Wait", "1", NULL }, 0 },
		{ 200, { "Auth-Status", "OK", "Auth-Server", "192.0.2.9",
		    "Auth-Port", "143", NULL }, 0 },
	};
	struct event_base *base = event_base_new();
	struct endpoint ep;
	struct authhttp *ah;
	struct authhttp_request req = login("alice", "secret");
	struct authhttp_answer a;

	endpoint_start(&ep, base, replies, 3);
	ah = client(base, ep.port, "/auth", 0, 0, 5);
	a = ask(base, ah, &req);
	cr_assert_eq(a.status, AUTHHTTP_OK, "%s", a.error);
	cr_assert_str_eq(a.host, "192.0.2.9");
	cr_assert(!a.again);
	cr_assert_eq(ep.requests, 3);
	cr_assert(endpoint_saw(&ep, "Auth-Login-Attempt: 1"));
	cr_assert(endpoint_saw(&ep, "Auth-Pass: secret"));
	authhttp_free(ah);
	endpoint_stop(&ep);
	event_base_free(base);
}

Test(authhttp, wait_forever)
{
	static const struct reply replies[] = {
		{ 200, { "Auth-Status", "WAIT", NULL }, 0 },
	};
	struct event_base *base = event_base_new();
	struct endpoint ep;
	struct authhttp *ah;
	struct authhttp_request req = login("alice", "secret");
	struct authhttp_answer a;

	endpoint_start(&ep, base, replies, 1);
	ah = client(base, ep.port, "/auth", 0, 0, 5);
	a = ask(base, ah, &req);
	cr_assert_eq(a.status, AUTHHTTP_UNAVAILABLE);
	cr_assert(!a.again);
	cr_assert_eq(ep.requests, 1 + AUTHHTTP_WAIT_ROUNDS);
	authhttp_free(ah);
	endpoint_stop(&ep);
	event_base_free(base);
}

/*
 * The cache.
 */

Test(authhttp, cache_hit)
{
	static const struct reply replies[] = {
		{ 200, { "Auth-Status", "OK", "Auth-Server", "192.0.2.7",
		    "Auth-Port", "143", "Auth-User", "alice@upstream",
		    "Auth-Pass", "master-secret", NULL }, 0 },
	};
	struct event_base *base = event_base_new();
	struct endpoint ep;
	struct authhttp *ah;
	struct authhttp_request req = login("alice", "secret");
	struct authhttp_answer a;
	struct authhttp_stats st;

	endpoint_start(&ep, base, replies, 1);
	ah = client(base, ep.port, "/auth", 16, 60, 5);
	a = ask(base, ah, &req);
	cr_assert_eq(a.status, AUTHHTTP_OK, "%s", a.error);
	cr_assert(!a.cached);
	req.attempt = 2;
	req.client_ip = "192.0.2.43";
	a = ask(base, ah, &req);
	cr_assert_eq(a.status, AUTHHTTP_OK);
	cr_assert(a.cached);
	cr_assert_str_eq(a.host, "192.0.2.7");
	cr_assert_str_eq(a.port, "143");
	/* the replacement is what goes upstream: kept */
	cr_assert(a.has_user && a.has_pass);
	cr_assert_str_eq(a.user, "alice@upstream");
	cr_assert_str_eq(a.pass, "master-secret");
	cr_assert_eq(ep.requests, 1);
	authhttp_stats(ah, &st);
	cr_assert_eq(st.queries, 2);
	cr_assert_eq(st.cache_hits, 1);
	cr_assert_eq(st.ok, 2);
	authhttp_free(ah);
	endpoint_stop(&ep);
	event_base_free(base);
}

/* The key is the user, the password, the method and TLS or not. */
Test(authhttp, cache_key)
{
	struct event_base *base = event_base_new();
	struct endpoint ep;
	struct authhttp *ah;
	struct authhttp_request req = login("alice", "secret");
	struct authhttp_answer a;

	endpoint_start(&ep, base, ok_reply, 1);
	ah = client(base, ep.port, "/auth", 16, 60, 5);
	a = ask(base, ah, &req);
	cr_assert(!a.cached);
	req.pass = "other";
	a = ask(base, ah, &req);
	cr_assert(!a.cached);
	cr_assert_eq(ep.requests, 2);
	req = login("bob", "secret");
	a = ask(base, ah, &req);
	cr_assert(!a.cached);
	req = login("alice", "secret");
	req.method = "login";
	a = ask(base, ah, &req);
	cr_assert(!a.cached);
	req = login("alice", "secret");
	req.client_tls = true;
	a = ask(base, ah, &req);
	cr_assert(!a.cached);
	cr_assert_eq(ep.requests, 5);
	/* the boundaries between the parts are kept */
	req = login("alice", "secretx");
	a = ask(base, ah, &req);
	cr_assert(!a.cached);
	req = login("alicesecret", "");
	a = ask(base, ah, &req);
	cr_assert(!a.cached);
	cr_assert_eq(ep.requests, 7);
	/* and each is there */
	req = login("alice", "secret");
	a = ask(base, ah, &req);
	cr_assert(a.cached);
	req.pass = "other";
	a = ask(base, ah, &req);
	cr_assert(a.cached);
	cr_assert_eq(ep.requests, 7);
	authhttp_free(ah);
	endpoint_stop(&ep);
	event_base_free(base);
}

Test(authhttp, cache_ttl)
{
	struct event_base *base = event_base_new();
	struct endpoint ep;
	struct authhttp *ah;
	struct authhttp_request req = login("alice", "secret");
	struct authhttp_answer a;

	endpoint_start(&ep, base, ok_reply, 1);
	ah = client(base, ep.port, "/auth", 16, 1, 5);
	a = ask(base, ah, &req);
	cr_assert(!a.cached);
	a = ask(base, ah, &req);
	cr_assert(a.cached);
	spin(base, 1100);
	a = ask(base, ah, &req);
	cr_assert_eq(a.status, AUTHHTTP_OK);
	cr_assert(!a.cached);
	cr_assert_eq(ep.requests, 2);
	authhttp_free(ah);
	endpoint_stop(&ep);
	event_base_free(base);
}

/* Two entries: the least recently used one goes. */
Test(authhttp, cache_lru)
{
	struct event_base *base = event_base_new();
	struct endpoint ep;
	struct authhttp *ah;
	struct authhttp_request a1 = login("a", "1"), b1 = login("b", "1"),
	    c1 = login("c", "1");

	endpoint_start(&ep, base, ok_reply, 1);
	ah = client(base, ep.port, "/auth", 2, 60, 5);
	cr_assert(!ask(base, ah, &a1).cached);
	cr_assert(!ask(base, ah, &b1).cached);
	cr_assert(ask(base, ah, &a1).cached);	/* a is the newer now */
	cr_assert(!ask(base, ah, &c1).cached);	/* b goes */
	cr_assert_eq(ep.requests, 3);
	cr_assert(ask(base, ah, &a1).cached);
	cr_assert(ask(base, ah, &c1).cached);
	cr_assert(!ask(base, ah, &b1).cached);	/* asked again; a goes */
	cr_assert_eq(ep.requests, 4);
	cr_assert(!ask(base, ah, &a1).cached);
	cr_assert_eq(ep.requests, 5);
	authhttp_free(ah);
	endpoint_stop(&ep);
	event_base_free(base);
}

/* A refusal after an OK (the password changed between two queries asked
 * at once) removes the OK. */
Test(authhttp, refusal_forgets_ok)
{
	static const struct reply replies[] = {
		{ 200, { "Auth-Status", "OK", "Auth-Server", "192.0.2.7",
		    "Auth-Port", "143", NULL }, 0 },
		{ 200, { "Auth-Status", "Password changed", NULL }, 0 },
	};
	struct event_base *base = event_base_new();
	struct endpoint ep;
	struct authhttp *ah;
	struct authhttp_request req = login("alice", "secret");
	struct result r1 = { 0 }, r2 = { 0 };
	struct authhttp_answer a;

	endpoint_start(&ep, base, replies, 2);
	ah = client(base, ep.port, "/auth", 16, 60, 5);
	cr_assert_not_null(authhttp_query(ah, &req, on_answer, &r1));
	cr_assert_not_null(authhttp_query(ah, &req, on_answer, &r2));
	wait_for(base, &r1, 1);
	wait_for(base, &r2, 1);
	cr_assert_eq(ep.requests, 2);
	cr_assert_eq(r1.a.status + r2.a.status,
	    AUTHHTTP_OK + AUTHHTTP_REFUSED);
	a = ask(base, ah, &req);
	cr_assert(!a.cached);
	cr_assert_eq(ep.requests, 3);
	authhttp_free(ah);
	endpoint_stop(&ep);
	event_base_free(base);
}

/*
 * Cancelling and freeing.
 */

struct cancel_ctx {
	struct authhttp_query *q;
	struct authhttp *ah;
};

/* On the endpoint's side: the request has arrived, the answer not left. */
static void
cancel_on_request(struct endpoint *ep)
{
	struct cancel_ctx *c = ep->arg;

	if (c->q != NULL)
		authhttp_cancel(c->q);
	if (c->ah != NULL)
		authhttp_free(c->ah);
	c->q = NULL;
	c->ah = NULL;
}

Test(authhttp, cancel_before_answer)
{
	struct event_base *base = event_base_new();
	struct endpoint ep;
	struct cancel_ctx c = { 0 };
	struct authhttp *ah;
	struct authhttp_request req = login("alice", "secret");
	struct result r = { 0 };
	struct authhttp_stats st;

	endpoint_start(&ep, base, ok_reply, 1);
	ep.on_request = cancel_on_request;
	ep.arg = &c;
	ah = client(base, ep.port, "/auth", 16, 60, 1);
	c.q = authhttp_query(ah, &req, on_answer, &r);
	cr_assert_not_null(c.q);
	spin(base, 1500);	/* past the timeout */
	cr_assert_eq(ep.requests, 1);
	cr_assert_eq(r.calls, 0);
	authhttp_stats(ah, &st);
	cr_assert_eq(st.queries, 1);
	cr_assert_eq(st.ok + st.refused + st.unavailable, 0);
	/* cancelled at once, and a cache hit before its delivery */
	c.q = authhttp_query(ah, &req, on_answer, &r);
	authhttp_cancel(c.q);
	spin(base, 100);
	cr_assert_eq(r.calls, 0);
	ep.on_request = NULL;
	cr_assert_eq(ask(base, ah, &req).cached, false);
	c.q = authhttp_query(ah, &req, on_answer, &r);
	authhttp_cancel(c.q);
	spin(base, 100);
	cr_assert_eq(r.calls, 0);
	authhttp_free(ah);
	endpoint_stop(&ep);
	event_base_free(base);
}

Test(authhttp, free_with_queries_in_flight)
{
	static const struct reply never[] = { { 0, { NULL }, 0 } };
	struct event_base *base = event_base_new();
	struct endpoint ep;
	struct authhttp *ah;
	struct authhttp_request req = login("alice", "secret");
	struct result r = { 0 };
	struct cancel_ctx c = { 0 };

	endpoint_start(&ep, base, never, 1);
	ah = client(base, ep.port, "/auth", 16, 60, 1);
	for (int i = 0; i < 3; i++)
		cr_assert_not_null(authhttp_query(ah, &req, on_answer, &r));
	spin(base, 200);
	cr_assert_eq(ep.requests, 3);
	authhttp_free(ah);
	spin(base, 1500);
	cr_assert_eq(r.calls, 0);

	/* freed while the endpoint reads the request, and right after the
	 * query (nothing sent yet) */
	ah = client(base, ep.port, "/auth", 16, 60, 1);
	ep.on_request = cancel_on_request;
	ep.arg = &c;
	c.ah = ah;
	cr_assert_not_null(authhttp_query(ah, &req, on_answer, &r));
	spin(base, 1500);
	cr_assert_null(c.ah);
	ah = client(base, ep.port, "/auth", 16, 60, 1);
	cr_assert_not_null(authhttp_query(ah, &req, on_answer, &r));
	authhttp_free(ah);
	spin(base, 200);
	cr_assert_eq(r.calls, 0);
	endpoint_stop(&ep);
	event_base_free(base);
}

/* The callback may free everything, its own client included. */
Test(authhttp, free_from_callback)
{
	struct event_base *base = event_base_new();
	struct endpoint ep;
	struct authhttp_request req = login("alice", "secret");
	struct authhttp *ah;
	struct result r = { .free_me = &ah }, other = { .free_me = &ah };

	endpoint_start(&ep, base, ok_reply, 1);
	ah = client(base, ep.port, "/auth", 16, 60, 5);
	cr_assert_not_null(authhttp_query(ah, &req, on_answer, &r));
	cr_assert_not_null(authhttp_query(ah, &req, on_answer, &other));
	while (r.calls + other.calls == 0)
		event_base_loop(base, EVLOOP_ONCE);
	cr_assert_null(ah);
	spin(base, 200);
	cr_assert_eq(r.calls + other.calls, 1);
	endpoint_stop(&ep);
	event_base_free(base);
}

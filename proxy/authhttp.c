/*
 * authhttp.c — the client side of nginx's mail auth_http protocol (read in
 * nginx's src/mail/ngx_mail_auth_http_module.c and its documentation): the
 * GET a login sends, the answer's headers read into a route or a refusal,
 * and a small cache of successful answers.  One HTTP/1.0 connection per
 * request, as nginx does; the answer's body is never read.  A query owns
 * one timer that is first its timeout, then the delivery of its answer,
 * so the caller is always called from the loop and never from inside
 * evhttp (which may then be freed at once).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>	/* the request's HTTP version: no setter */
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "authhttp.h"
#include "log.h"

#define DEFAULT_TIMEOUT 60	/* nginx's auth_http_timeout */
#define UNAVAILABLE_HOST "[UNAVAILABLE]"

/* A cached OK answer. */
struct entry {
	TAILQ_ENTRY(entry) lru;		/* most recently used first */
	struct entry *next;		/* in its hash bucket */
	unsigned char key[SHA256_DIGEST_LENGTH];
	char user[256];
	double expires;			/* log_clock() */
	struct authhttp_answer answer;	/* with Auth-Pass's replacement */
};

/* An auth_http_header: sent after nginx's own headers. */
struct extra {
	char *name, *value;
};

struct authhttp {
	struct event_base *base;
	struct evdns_base *dns;
	char host[256];			/* to connect to: no brackets */
	char host_header[258];		/* as nginx: the URL's host, no port */
	unsigned short port;
	char *path;
	unsigned timeout;
	struct extra *extra;
	size_t nextra;
	TAILQ_HEAD(, authhttp_query) queries;
	/* the cache: a hash of the key into buckets, and the LRU order */
	unsigned char salt[32];		/* so a memory dump holds no plain
					 * SHA-256 of a password to look up */
	size_t max_entries, nentries;
	unsigned ttl;
	struct entry **buckets;
	size_t nbuckets;		/* a power of two */
	TAILQ_HEAD(entry_lru, entry) lru;
	struct authhttp_stats stats;
};

enum query_state {
	Q_ASKING,	/* the timer is the timeout */
	Q_ANSWERED,	/* answer is final or WAIT; the timer fires at once */
	Q_PAUSED,	/* Auth-Status: WAIT; the timer asks again */
};

struct authhttp_query {
	TAILQ_ENTRY(authhttp_query) link;
	struct authhttp *ah;
	authhttp_cb cb;
	void *arg;
	enum query_state state;
	struct event *timer;
	struct evhttp_connection *evcon;
	const char *failure;		/* evhttp's error, for the log */
	unsigned rounds;		/* WAIT answers so far */
	/* the request's headers, "Name\0value\0" each, the escaped password
	 * among them: kept for a WAIT's second round, wiped */
	char *headers;
	size_t headers_len;
	bool cacheable;
	unsigned char key[SHA256_DIGEST_LENGTH];
	char user[256];
	struct authhttp_answer answer;
};

static void query_timer(evutil_socket_t, short, void *);

/*
 * The answer.
 */

static void
unavailable(struct authhttp_answer *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Whatever was read so far is wiped: an UNAVAILABLE answer holds no pass. */
static void
unavailable(struct authhttp_answer *out, const char *fmt, ...)
{
	va_list ap;

	OPENSSL_cleanse(out, sizeof *out);
	out->status = AUTHHTTP_UNAVAILABLE;
	va_start(ap, fmt);
	vsnprintf(out->error, sizeof out->error, fmt, ap);
	va_end(ap);
}

/* A header's value into a field; false when it does not fit. */
static bool
copy_value(char *dst, size_t len, const char *v)
{
	size_t n = strlen(v);

	if (n >= len)
		return false;
	memcpy(dst, v, n + 1);
	return true;
}

/* Auth-Wait: nginx ignores what is not a number; a long wait is capped. */
static unsigned
parse_wait(const char *v)
{
	unsigned n = 0;

	if (v == NULL || *v == '\0')
		return 0;
	for (; *v != '\0'; v++) {
		if (*v < '0' || *v > '9')
			return 0;
		if (n <= AUTHHTTP_WAIT_MAX)
			n = n * 10 + (unsigned)(*v - '0');
	}
	return n > AUTHHTTP_WAIT_MAX ? AUTHHTTP_WAIT_MAX : n;
}

/* Auth-Port: decimal, 1-65535 (leading zeros as nginx takes them). */
static int
parse_port(const char *v)
{
	long n = 0;

	if (*v == '\0')
		return -1;
	for (; *v != '\0'; v++) {
		if (*v < '0' || *v > '9')
			return -1;
		n = n * 10 + (*v - '0');
		if (n > 65535)
			return -1;
	}
	return n >= 1 ? (int)n : -1;
}

static bool
is_address(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static void
parse_refusal(const char *status, const char *(*header)(void *, const char *),
    void *ctx, struct authhttp_answer *out)
{
	const char *code = header(ctx, "Auth-Error-Code");

	/* nginx shows an empty text as it is; the client gets one here */
	if (!copy_value(out->error, sizeof out->error,
	    *status != '\0' ? status : "Authentication failed")) {
		unavailable(out, "Auth-Status longer than %zu bytes",
		    sizeof out->error - 1);
		return;
	}
	if (code != NULL && !copy_value(out->error_code, sizeof out->error_code,
	    code)) {
		unavailable(out, "Auth-Error-Code longer than %zu bytes",
		    sizeof out->error_code - 1);
		return;
	}
	out->wait = parse_wait(header(ctx, "Auth-Wait"));
	out->status = AUTHHTTP_REFUSED;
}

/* Auth-User and Auth-Pass replace what goes upstream (used as they are:
 * nginx does not unescape them). */
static bool
parse_login(const char *(*header)(void *, const char *), void *ctx,
    struct authhttp_answer *out)
{
	const char *user = header(ctx, "Auth-User");
	const char *pass = header(ctx, "Auth-Pass");

	if (user != NULL) {
		if (*user == '\0' || !copy_value(out->user, sizeof out->user, user)) {
			unavailable(out, "Auth-User empty or longer than %zu bytes",
			    sizeof out->user - 1);
			return false;
		}
		out->has_user = true;
	}
	if (pass != NULL) {
		if (!copy_value(out->pass, sizeof out->pass, pass)) {
			unavailable(out, "Auth-Pass longer than %zu bytes",
			    sizeof out->pass - 1);
			return false;
		}
		out->has_pass = true;
	}
	return true;
}

static void
parse_ok(const char *(*header)(void *, const char *), void *ctx,
    struct authhttp_answer *out)
{
	const char *server = header(ctx, "Auth-Server");
	const char *port = header(ctx, "Auth-Port");
	const char *code = header(ctx, "Auth-Error-Code");
	int p;

	if (server == NULL || *server == '\0' || port == NULL || *port == '\0') {
		unavailable(out, "Auth-Status OK without Auth-Server or Auth-Port");
		return;
	}
	if (!copy_value(out->host, sizeof out->host, server) ||
	    !is_address(server)) {
		unavailable(out, "Auth-Server is not an IP address: \"%.64s\"",
		    server);
		return;
	}
	if ((p = parse_port(port)) < 0) {
		unavailable(out, "Auth-Port is not a port: \"%.16s\"", port);
		return;
	}
	snprintf(out->port, sizeof out->port, "%d", p);
	if (code != NULL && !copy_value(out->error_code, sizeof out->error_code,
	    code)) {
		unavailable(out, "Auth-Error-Code longer than %zu bytes",
		    sizeof out->error_code - 1);
		return;
	}
	if (parse_login(header, ctx, out))
		out->status = AUTHHTTP_OK;
}

/*
 * nginx reads no status code: a refusal is believed whatever the code (it
 * denies, and Auth-Wait slows a guesser down), an OK only in a 2xx answer
 * (nginx's own http block answers 204 with add_header); a missing
 * Auth-Status is no OK here (nginx goes on when server and port are set).
 */
void
authhttp_parse(int http_code, const char *(*header)(void *ctx, const char *name),
    void *ctx, struct authhttp_answer *out)
{
	static const char *const names[] = {
		"Auth-Status", "Auth-Server", "Auth-Port", "Auth-Wait",
		"Auth-Error-Code", "Auth-User", "Auth-Pass",
	};
	const char *status = header(ctx, "Auth-Status");

	memset(out, 0, sizeof *out);
	/* nginx ends a header at a CR: one inside a value is no answer, and
	 * would end a line of the client's */
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		const char *v = header(ctx, names[i]);

		if (v != NULL && strpbrk(v, "\r\n") != NULL) {
			unavailable(out, "line break in %s", names[i]);
			return;
		}
	}
	if (status == NULL) {
		unavailable(out, "no Auth-Status in the answer (HTTP %d)", http_code);
		return;
	}
	if (strcmp(status, "OK") != 0 && strcmp(status, "WAIT") != 0) {
		parse_refusal(status, header, ctx, out);
		return;
	}
	if (http_code < 200 || http_code > 299) {
		unavailable(out, "HTTP status %d", http_code);
		return;
	}
	if (strcmp(status, "WAIT") == 0) {
		/* nginx waits Auth-Wait seconds, then asks again */
		unavailable(out, "the endpoint asked to wait (Auth-Status: WAIT)");
		out->wait = parse_wait(header(ctx, "Auth-Wait"));
		out->again = true;
		return;
	}
	parse_ok(header, ctx, out);
}

/* The last of a repeated header counts, except that any Auth-Status that
 * is neither OK nor WAIT refuses, and a WAIT beats an OK: nginx's reading. */
const char *
authhttp_header(void *headers, const char *name)
{
	struct evkeyvalq *list = headers;
	struct evkeyval *h;
	const char *last = NULL, *refusal = NULL, *wait = NULL;
	bool status = strcasecmp(name, "Auth-Status") == 0;

	TAILQ_FOREACH(h, list, next) {
		if (strcasecmp(h->key, name) != 0)
			continue;
		last = h->value;
		if (status && strcmp(last, "WAIT") == 0)
			wait = last;
		else if (status && strcmp(last, "OK") != 0)
			refusal = last;
	}
	return refusal != NULL ? refusal : wait != NULL ? wait : last;
}

/*
 * The cache.
 */

/* SHA-256 over the salt, the method, the user, the password and the TLS
 * flag (an endpoint may refuse logins without TLS). */
static bool
cache_key(const struct authhttp *ah, const struct authhttp_request *r,
    unsigned char key[SHA256_DIGEST_LENGTH])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char tls = r->client_tls;
	bool ok;

	ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(md, ah->salt, sizeof ah->salt) == 1 &&
	    EVP_DigestUpdate(md, r->method, strlen(r->method) + 1) == 1 &&
	    EVP_DigestUpdate(md, r->user, strlen(r->user) + 1) == 1 &&
	    EVP_DigestUpdate(md, r->pass, strlen(r->pass) + 1) == 1 &&
	    EVP_DigestUpdate(md, &tls, 1) == 1 &&
	    EVP_DigestFinal_ex(md, key, NULL) == 1;
	EVP_MD_CTX_free(md);
	return ok;
}

static struct entry **
bucket(const struct authhttp *ah, const unsigned char *key)
{
	size_t h;

	memcpy(&h, key, sizeof h);
	return &ah->buckets[h & (ah->nbuckets - 1)];
}

static void
cache_remove(struct authhttp *ah, struct entry *e)
{
	struct entry **p;

	for (p = bucket(ah, e->key); *p != e; p = &(*p)->next)
		;
	*p = e->next;
	TAILQ_REMOVE(&ah->lru, e, lru);
	ah->nentries--;
	OPENSSL_cleanse(e, sizeof *e);
	free(e);
}

/* The live entry for key, made the most recently used; expired ones go. */
static struct entry *
cache_find(struct authhttp *ah, const unsigned char *key, const char *user)
{
	struct entry *e;

	if (ah->buckets == NULL)
		return NULL;
	for (e = *bucket(ah, key); e != NULL; e = e->next) {
		if (CRYPTO_memcmp(e->key, key, sizeof e->key) == 0 &&
		    strcmp(e->user, user) == 0)
			break;
	}
	if (e == NULL)
		return NULL;
	if (log_clock() >= e->expires) {
		cache_remove(ah, e);
		return NULL;
	}
	TAILQ_REMOVE(&ah->lru, e, lru);
	TAILQ_INSERT_HEAD(&ah->lru, e, lru);
	return e;
}

/* An OK answer is kept (replacing the key's old one); the least recently
 * used entry makes room.  Out of memory: not kept. */
static void
cache_put(struct authhttp *ah, const struct authhttp_query *q)
{
	struct entry *e, **b;

	if ((e = cache_find(ah, q->key, q->user)) != NULL)
		cache_remove(ah, e);
	if (ah->nentries >= ah->max_entries)
		cache_remove(ah, TAILQ_LAST(&ah->lru, entry_lru));
	if ((e = calloc(1, sizeof *e)) == NULL)
		return;
	memcpy(e->key, q->key, sizeof e->key);
	memcpy(e->user, q->user, sizeof e->user);
	e->expires = log_clock() + ah->ttl;
	e->answer = q->answer;
	b = bucket(ah, e->key);
	e->next = *b;
	*b = e;
	TAILQ_INSERT_HEAD(&ah->lru, e, lru);
	ah->nentries++;
}

/* The endpoint's last word: a refusal forgets the key's OK. */
static void
cache_forget(struct authhttp *ah, const struct authhttp_query *q)
{
	struct entry *e = cache_find(ah, q->key, q->user);

	if (e != NULL)
		cache_remove(ah, e);
}

/*
 * The request.
 */

/* nginx's escaping of Auth-User and Auth-Pass: space, "%" and the bytes
 * below 0x20 as %XX; everything else (8-bit bytes too) as it is.  Returns
 * the length; dst NULL only counts. */
static size_t
escape(char *dst, const char *src)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (const unsigned char *s = (const unsigned char *)src; *s != '\0'; s++) {
		if (*s <= ' ' || *s == '%') {
			if (dst != NULL) {
				dst[n] = '%';
				dst[n + 1] = hex[*s >> 4];
				dst[n + 2] = hex[*s & 0xf];
			}
			n += 3;
		} else {
			if (dst != NULL)
				dst[n] = (char)*s;
			n++;
		}
	}
	return n;
}

/* A value that may go into a header line as it is: no control bytes. */
static bool
header_safe(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < ' ' || *s == 0x7f)
			return false;
	return true;
}

/* The header block being built; grown by copy so no password is left
 * behind in a freed block. */
struct hbuf {
	char *p;
	size_t len, cap;
	bool failed;
};

static char *
hbuf_room(struct hbuf *b, size_t n)
{
	char *p;
	size_t cap;

	if (b->failed)
		return NULL;
	if (b->cap - b->len < n) {
		cap = b->cap * 2 + n + 256;
		if ((p = malloc(cap)) == NULL) {
			b->failed = true;
			return NULL;
		}
		if (b->p != NULL) {
			memcpy(p, b->p, b->len);
			OPENSSL_cleanse(b->p, b->cap);
			free(b->p);
		}
		b->p = p;
		b->cap = cap;
	}
	return b->p + b->len;
}

static void
hbuf_add(struct hbuf *b, const char *name, const char *value, bool escaped)
{
	size_t nlen = strlen(name) + 1;
	size_t vlen = (escaped ? escape(NULL, value) : strlen(value)) + 1;
	char *p = hbuf_room(b, nlen + vlen);

	if (p == NULL)
		return;
	memcpy(p, name, nlen);
	if (escaped) {
		escape(p + nlen, value);
		p[nlen + vlen - 1] = '\0';
	} else {
		memcpy(p + nlen, value, vlen);
	}
	b->len += nlen + vlen;
}

static void
hbuf_port(struct hbuf *b, const char *name, unsigned port)
{
	char v[16];

	snprintf(v, sizeof v, "%u", port);
	hbuf_add(b, name, v, false);
}

/* Which field of the request cannot be sent, or NULL. */
static const char *
request_invalid(const struct authhttp_request *r)
{
	if (r->user == NULL || r->pass == NULL)
		return "no user or password";
	if (!header_safe(r->method))
		return "bad method";
	if (!header_safe(r->client_ip))
		return "bad client_ip";
	if (r->client_host != NULL && !header_safe(r->client_host))
		return "bad client_host";
	if ((r->tls_protocol != NULL && !header_safe(r->tls_protocol)) ||
	    (r->tls_cipher != NULL && !header_safe(r->tls_cipher)))
		return "bad TLS protocol or cipher";
	if (r->proxy_addr != NULL && (!header_safe(r->proxy_addr) ||
	    !header_safe(r->proxy_server_addr)))
		return "bad PROXY header addresses";
	return NULL;
}

/* nginx's headers, in nginx's order, then the configured ones. */
static bool
build_headers(struct authhttp_query *q, const struct authhttp_request *r)
{
	struct authhttp *ah = q->ah;
	struct hbuf b = { NULL, 0, 0, false };

	hbuf_add(&b, "Host", ah->host_header, false);
	hbuf_add(&b, "Auth-Method", r->method, false);
	hbuf_add(&b, "Auth-User", r->user, true);
	hbuf_add(&b, "Auth-Pass", r->pass, true);
	hbuf_add(&b, "Auth-Protocol", "imap", false);
	hbuf_port(&b, "Auth-Login-Attempt", r->attempt);
	hbuf_add(&b, "Client-IP", r->client_ip, false);
	hbuf_add(&b, "Client-Host", r->client_host != NULL ? r->client_host :
	    UNAVAILABLE_HOST, false);
	if (r->proxy_addr != NULL) {
		hbuf_add(&b, "Proxy-Protocol-Addr", r->proxy_addr, false);
		hbuf_port(&b, "Proxy-Protocol-Port", r->proxy_port);
		hbuf_add(&b, "Proxy-Protocol-Server-Addr", r->proxy_server_addr,
		    false);
		hbuf_port(&b, "Proxy-Protocol-Server-Port", r->proxy_server_port);
	}
	if (r->client_tls) {
		hbuf_add(&b, "Auth-SSL", "on", false);
		if (r->tls_protocol != NULL)
			hbuf_add(&b, "Auth-SSL-Protocol", r->tls_protocol, false);
		if (r->tls_cipher != NULL)
			hbuf_add(&b, "Auth-SSL-Cipher", r->tls_cipher, false);
	}
	for (size_t i = 0; i < ah->nextra; i++)
		hbuf_add(&b, ah->extra[i].name, ah->extra[i].value, false);
	if (b.failed) {
		if (b.p != NULL)
			OPENSSL_cleanse(b.p, b.cap);
		free(b.p);
		return false;
	}
	q->headers = b.p;
	q->headers_len = b.len;
	return true;
}

/*
 * A query.
 */

/* Its answer is in q->answer: deliver it on the next turn of the loop. */
static void
answered(struct authhttp_query *q)
{
	static const struct timeval now = { 0, 0 };

	q->state = Q_ANSWERED;
	evtimer_add(q->timer, &now);
}

static int
on_headers(struct evhttp_request *req, void *arg)
{
	struct authhttp_query *q = arg;

	authhttp_parse(evhttp_request_get_response_code(req), authhttp_header,
	    evhttp_request_get_input_headers(req), &q->answer);
	answered(q);
	/* the body is never read: evhttp drops the connection */
	return -1;
}

static void
on_error(enum evhttp_request_error error, void *arg)
{
	struct authhttp_query *q = arg;

	switch (error) {
	case EVREQ_HTTP_TIMEOUT:
		q->failure = "timed out";
		break;
	case EVREQ_HTTP_EOF:
		q->failure = "closed the connection without an answer";
		break;
	case EVREQ_HTTP_INVALID_HEADER:
		q->failure = "sent no HTTP answer, a bad one or one too long";
		break;
	default:
		q->failure = "connection failed";
		break;
	}
}

/* evhttp is done with the request (on_headers may have come first). */
static void
on_done(struct evhttp_request *req, void *arg)
{
	struct authhttp_query *q = arg;

	if (q->state != Q_ASKING)
		return;
	if (req == NULL || evhttp_request_get_response_code(req) == 0)
		unavailable(&q->answer, "http://%s:%u: %s", q->ah->host_header,
		    q->ah->port, q->failure != NULL ? q->failure :
		    "no connection");
	else
		authhttp_parse(evhttp_request_get_response_code(req), authhttp_header,
		    evhttp_request_get_input_headers(req), &q->answer);
	answered(q);
}

static bool
send_request(struct authhttp_query *q)
{
	struct authhttp *ah = q->ah;
	struct timeval tv = { (time_t)ah->timeout, 0 };
	struct evhttp_request *req;
	struct evkeyvalq *out;

	q->failure = NULL;
	/* one connection per request, as nginx: the endpoint may expect it */
	q->evcon = evhttp_connection_base_new(ah->base, ah->dns, ah->host, ah->port);
	if (q->evcon == NULL)
		return false;
	/* the query's own timer decides; evhttp's is a backstop */
	evhttp_connection_set_timeout(q->evcon, (int)ah->timeout + 1);
	evhttp_connection_set_retries(q->evcon, 0);
	evhttp_connection_set_max_headers_size(q->evcon, AUTHHTTP_MAX_HEADERS);
	if ((req = evhttp_request_new(on_done, q)) == NULL)
		return false;
	evhttp_request_set_header_cb(req, on_headers);
	evhttp_request_set_error_cb(req, on_error);
	req->major = 1;
	req->minor = 0;
	out = evhttp_request_get_output_headers(req);
	for (size_t i = 0; i < q->headers_len; ) {
		const char *name = q->headers + i;
		const char *value = name + strlen(name) + 1;

		if (evhttp_add_header(out, name, value) != 0) {
			evhttp_request_free(req);
			return false;
		}
		i = (size_t)(value - q->headers) + strlen(value) + 1;
	}
	q->state = Q_ASKING;
	evtimer_add(q->timer, &tv);
	/* a failure here has freed req or left it to a connection error */
	return evhttp_make_request(q->evcon, req, EVHTTP_REQ_GET, ah->path) == 0;
}

static void
drop_connection(struct authhttp_query *q)
{
	/* frees the request still on it, without its callbacks */
	if (q->evcon != NULL)
		evhttp_connection_free(q->evcon);
	q->evcon = NULL;
}

static void
query_free(struct authhttp_query *q)
{
	TAILQ_REMOVE(&q->ah->queries, q, link);
	drop_connection(q);
	if (q->timer != NULL)
		event_free(q->timer);
	if (q->headers != NULL)
		OPENSSL_cleanse(q->headers, q->headers_len);
	free(q->headers);
	OPENSSL_cleanse(q, sizeof *q);
	free(q);
}

/* The answer to the caller; the query is gone before the callback runs,
 * so that the callback may free everything. */
static void
deliver(struct authhttp_query *q)
{
	struct authhttp *ah = q->ah;
	struct authhttp_answer answer = q->answer;
	authhttp_cb cb = q->cb;
	void *arg = q->arg;

	answer.again = false;
	if (answer.status == AUTHHTTP_OK && !answer.cached && q->cacheable)
		cache_put(ah, q);
	else if (answer.status == AUTHHTTP_REFUSED && q->cacheable)
		cache_forget(ah, q);
	ah->stats.cache_hits += answer.cached;
	ah->stats.ok += answer.status == AUTHHTTP_OK;
	ah->stats.refused += answer.status == AUTHHTTP_REFUSED;
	ah->stats.unavailable += answer.status == AUTHHTTP_UNAVAILABLE;
	query_free(q);
	cb(&answer, arg);
	OPENSSL_cleanse(&answer, sizeof answer);
}

static void
ask(struct authhttp_query *q)
{
	drop_connection(q);
	if (!send_request(q)) {
		drop_connection(q);
		unavailable(&q->answer, "http://%s:%u: cannot start a request "
		    "(out of memory?)", q->ah->host_header, q->ah->port);
		answered(q);
	}
}

static void
query_timer(evutil_socket_t fd, short what, void *arg)
{
	struct authhttp_query *q = arg;
	struct timeval tv = { 0, 0 };

	(void)fd;
	(void)what;
	switch (q->state) {
	case Q_ASKING:
		unavailable(&q->answer, "http://%s:%u: no answer in %u s",
		    q->ah->host_header, q->ah->port, q->ah->timeout);
		deliver(q);
		return;
	case Q_PAUSED:
		ask(q);
		return;
	case Q_ANSWERED:
		break;
	}
	if (!q->answer.again || ++q->rounds > AUTHHTTP_WAIT_ROUNDS) {
		deliver(q);
		return;
	}
	drop_connection(q);
	q->state = Q_PAUSED;
	tv.tv_sec = (time_t)q->answer.wait;
	evtimer_add(q->timer, &tv);
}

struct authhttp_query *
authhttp_query(struct authhttp *ah, const struct authhttp_request *r,
    authhttp_cb cb, void *arg)
{
	struct authhttp_query *q;
	const char *bad;
	struct entry *e;

	if ((q = calloc(1, sizeof *q)) == NULL)
		return NULL;
	q->ah = ah;
	q->cb = cb;
	q->arg = arg;
	TAILQ_INSERT_TAIL(&ah->queries, q, link);
	if ((q->timer = evtimer_new(ah->base, query_timer, q)) == NULL) {
		query_free(q);
		return NULL;
	}
	ah->stats.queries++;
	if ((bad = request_invalid(r)) != NULL) {
		unavailable(&q->answer, "request not sent: %s", bad);
		answered(q);
		return q;
	}
	q->cacheable = ah->buckets != NULL &&
	    copy_value(q->user, sizeof q->user, r->user) && cache_key(ah, r, q->key);
	if (q->cacheable && (e = cache_find(ah, q->key, q->user)) != NULL) {
		q->answer = e->answer;
		q->answer.cached = true;
		answered(q);
		return q;
	}
	if (!build_headers(q, r)) {
		query_free(q);
		return NULL;
	}
	ask(q);
	return q;
}

void
authhttp_cancel(struct authhttp_query *q)
{
	if (q != NULL)
		query_free(q);
}

void
authhttp_stats(const struct authhttp *ah, struct authhttp_stats *out)
{
	*out = ah->stats;
}

/*
 * The endpoint.
 */

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static bool
is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

/* HOST[:PORT] at s, up to end: ah's host, Host header and port. */
static const char *
parse_authority(struct authhttp *ah, const char *s, const char *end)
{
	const char *h = s, *colon;
	size_t n;
	long port = 80;

	if (*s == '[') {
		unsigned char a[sizeof(struct in6_addr)];
		const char *close = memchr(s, ']', (size_t)(end - s));

		if (close == NULL || (n = (size_t)(close - s - 1)) == 0 ||
		    n >= sizeof ah->host)
			return "bad IPv6 address";
		memcpy(ah->host, s + 1, n);
		ah->host[n] = '\0';
		if (inet_pton(AF_INET6, ah->host, a) != 1)
			return "bad IPv6 address";
		colon = close + 1;
	} else {
		for (colon = s; colon < end && *colon != ':'; colon++)
			if (!is_name_char(*colon))
				return "bad character in the host";
		if ((n = (size_t)(colon - s)) == 0 || n >= sizeof ah->host)
			return "no host, or one too long";
		memcpy(ah->host, s, n);
		ah->host[n] = '\0';
	}
	snprintf(ah->host_header, sizeof ah->host_header, "%.*s",
	    (int)(colon - h), h);
	if (colon < end) {
		if (*colon != ':' || colon + 1 == end)
			return "bad port";
		port = 0;
		for (const char *p = colon + 1; p < end; p++) {
			if (*p < '0' || *p > '9' || (port = port * 10 + *p - '0') > 65535)
				return "bad port";
		}
		if (port == 0)
			return "bad port";
	}
	ah->port = (unsigned short)port;
	return NULL;
}

/* [http://]HOST[:PORT][/PATH]: nginx's auth_http takes the scheme or not. */
static const char *
parse_url(struct authhttp *ah, const char *url)
{
	const char *s = url, *slash, *why;

	if (strncmp(s, "http://", 7) == 0)
		s += 7;
	else if (strstr(s, "://") != NULL || strncmp(s, "unix:", 5) == 0)
		return "only http:// is supported";
	for (const char *p = s; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
			return "space, control or 8-bit byte (escape it as %XX)";
	slash = strchr(s, '/');
	if (slash == NULL)
		slash = s + strlen(s);
	if (memchr(s, '@', (size_t)(slash - s)) != NULL ||
	    memchr(s, '?', (size_t)(slash - s)) != NULL)
		return "user or query before the path";
	if ((why = parse_authority(ah, s, slash)) != NULL)
		return why;
	ah->path = strdup(*slash == '/' ? slash : "/");
	return ah->path == NULL ? "out of memory" : NULL;
}

static bool
is_token_char(char c)
{
	return is_name_char(c) || (c != '\0' && strchr("!#$%&'*+^`|~", c) != NULL);
}

/* "Name: value" as nginx's auth_http_header sends it. */
static const char *
parse_extra(struct extra *x, const char *s)
{
	const char *colon = strchr(s, ':'), *v;

	if (colon == NULL || colon == s)
		return "not \"Name: value\"";
	for (const char *p = s; p < colon; p++)
		if (!is_token_char(*p))
			return "bad character in the name";
	for (v = colon + 1; *v == ' '; v++)
		;
	for (const char *p = v; *p != '\0'; p++)
		if (((unsigned char)*p < ' ' && *p != '\t') || *p == 0x7f)
			return "control character in the value";
	x->name = strndup(s, (size_t)(colon - s));
	x->value = strdup(v);
	return x->name == NULL || x->value == NULL ? "out of memory" : NULL;
}

/* Everything from the options; false with err set. */
static bool
setup(struct authhttp *ah, const struct authhttp_options *o, char *err,
    size_t errlen)
{
	const char *why;
	size_t n = 0;

	if (o->url == NULL) {
		set_err(err, errlen, "auth_http: no URL");
		return false;
	}
	if ((why = parse_url(ah, o->url)) != NULL) {
		set_err(err, errlen, "auth_http %.200s: %s", o->url, why);
		return false;
	}
	ah->timeout = o->timeout > 0 ? o->timeout : DEFAULT_TIMEOUT;
	if (o->extra_headers != NULL)
		while (o->extra_headers[n] != NULL)
			n++;
	if (n > 0 && (ah->extra = calloc(n, sizeof *ah->extra)) == NULL)
		goto nomem;
	for (; ah->nextra < n; ah->nextra++) {
		/* counted first: a half-made one is freed with the rest */
		why = parse_extra(&ah->extra[ah->nextra], o->extra_headers[ah->nextra]);
		if (why != NULL) {
			set_err(err, errlen, "auth_http header \"%.200s\": %s",
			    o->extra_headers[ah->nextra++], why);
			return false;
		}
	}
	if (o->cache_entries == 0 || o->cache_ttl == 0)
		return true;
	ah->max_entries = o->cache_entries;
	ah->ttl = o->cache_ttl;
	for (ah->nbuckets = 16; ah->nbuckets < ah->max_entries &&
	    ah->nbuckets < ((size_t)1 << 30); ah->nbuckets *= 2)
		;
	if ((ah->buckets = calloc(ah->nbuckets, sizeof *ah->buckets)) == NULL ||
	    RAND_bytes(ah->salt, sizeof ah->salt) != 1)
		goto nomem;
	return true;
nomem:
	set_err(err, errlen, "auth_http: out of memory");
	return false;
}

struct authhttp *
authhttp_new(struct event_base *base, struct evdns_base *dns,
    const struct authhttp_options *o, char *err, size_t errlen)
{
	struct authhttp *ah = calloc(1, sizeof *ah);

	if (ah == NULL) {
		set_err(err, errlen, "auth_http: out of memory");
		return NULL;
	}
	ah->base = base;
	ah->dns = dns;
	TAILQ_INIT(&ah->queries);
	TAILQ_INIT(&ah->lru);
	if (!setup(ah, o, err, errlen)) {
		authhttp_free(ah);
		return NULL;
	}
	return ah;
}

void
authhttp_free(struct authhttp *ah)
{
	if (ah == NULL)
		return;
	while (!TAILQ_EMPTY(&ah->queries))
		query_free(TAILQ_FIRST(&ah->queries));
	while (!TAILQ_EMPTY(&ah->lru))
		cache_remove(ah, TAILQ_FIRST(&ah->lru));
	free(ah->buckets);
	for (size_t i = 0; i < ah->nextra; i++) {
		free(ah->extra[i].name);
		free(ah->extra[i].value);
	}
	free(ah->extra);
	free(ah->path);
	OPENSSL_cleanse(ah, sizeof *ah);
	free(ah);
}

/*
 * authhttp.h — a client of nginx's mail auth_http protocol, unchanged, so
 * that a site's endpoint for nginx's mail proxy tells mappend where a user
 * lives: one GET per login with the credentials in headers, an answer in
 * headers (Auth-Status, Auth-Server, Auth-Port, ...), the body ignored.
 * Successful answers may be cached, keyed by the user and a hash of the
 * password, never the password itself.  Nothing here is logged: answers
 * carry the reasons, and passwords never reach a log line.  An endpoint
 * that closes early may raise SIGPIPE: the daemon ignores it (main.c).
 */
#ifndef MAPPEND_AUTHHTTP_H
#define MAPPEND_AUTHHTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evdns_base;

struct authhttp;	/* one endpoint: URL, timeouts, cache */
struct authhttp_query;	/* one request in flight */

/* Auth-Wait above this many seconds counts as this many. */
#define AUTHHTTP_WAIT_MAX 3600
/* "Auth-Status: WAIT" rounds a query waits through before it gives up. */
#define AUTHHTTP_WAIT_ROUNDS 5
/* The answer's header block, at most (nginx reads 1 KiB of it). */
#define AUTHHTTP_MAX_HEADERS 8192

struct authhttp_request {
	const char *method;	/* "plain" (LOGIN, AUTHENTICATE PLAIN and LOGIN) */
	const char *user, *pass;
	unsigned attempt;	/* Auth-Login-Attempt, from 1 */
	const char *client_ip;	/* numeric */
	const char *client_host; /* NULL: "[UNAVAILABLE]" */
	bool client_tls;	/* Auth-SSL: on */
	/* What nginx sends besides, when known (NULL: not sent) */
	const char *tls_protocol;	/* Auth-SSL-Protocol, "TLSv1.3" */
	const char *tls_cipher;		/* Auth-SSL-Cipher */
	/* A PROXY header's addresses: the four Proxy-Protocol-* headers */
	const char *proxy_addr;		/* numeric, the client */
	unsigned proxy_port;
	const char *proxy_server_addr;	/* numeric, where it connected to */
	unsigned proxy_server_port;
};

enum authhttp_status { AUTHHTTP_OK, AUTHHTTP_REFUSED, AUTHHTTP_UNAVAILABLE };

struct authhttp_answer {
	enum authhttp_status status;
	char host[256], port[16];	/* OK: where the user lives (an IPv4 or
					 * IPv6 address; the port in decimal) */
	char error[256];	/* REFUSED: Auth-Status's text; UNAVAILABLE: why
				 * (for the log, never with a secret in it) */
	char error_code[32];	/* Auth-Error-Code, "" when none */
	/* REFUSED: Auth-Wait, seconds before the NO; 0 (none) means nginx
	 * answers at once and closes the connection: the endpoint's way to
	 * end a session after too many attempts */
	unsigned wait;
	bool has_user, has_pass;	/* Auth-User / Auth-Pass given */
	char user[256];
	char pass[256];		/* wiped with explicit_bzero/OPENSSL_cleanse
				 * by whoever is done with it */
	bool cached;		/* came from the cache */
	/* authhttp_parse only: "Auth-Status: WAIT", ask again after wait
	 * seconds (status is UNAVAILABLE); a query does so by itself */
	bool again;
};

typedef void (*authhttp_cb)(const struct authhttp_answer *, void *arg);

struct authhttp_options {
	/* [http://]HOST[:PORT][/PATH], as nginx's auth_http takes it; HOST a
	 * name, an IPv4 address or [IPv6]; PORT 80 by default */
	const char *url;
	unsigned timeout;	/* seconds, connect + answer; 0: nginx's 60 */
	/* OK answers kept, least recently used out first, keyed by the user
	 * and a salted SHA-256 of method, password and TLS or not; the
	 * client's address is not in the key (an endpoint that decides by
	 * it is asked on a miss only) */
	size_t cache_entries;	/* 0: no cache */
	unsigned cache_ttl;	/* seconds; 0: no cache */
	const char *const *extra_headers; /* "Name: value" strings,
					 * NULL-terminated, or NULL */
};

/* NULL + err on a bad URL or extra header (or out of memory).  With a
 * name in the URL, dns resolves it at every request; without dns, a name
 * blocks the loop while it is looked up. */
struct authhttp *authhttp_new(struct event_base *, struct evdns_base *,
    const struct authhttp_options *, char *err, size_t errlen);
/* Cancels what is in flight: no callback after. */
void authhttp_free(struct authhttp *);
/*
 * Ask; the callback is always called later from the event loop (never
 * before this returns), exactly once, unless cancelled.  The answer lives
 * until the callback returns.  NULL when out of memory.
 */
struct authhttp_query *authhttp_query(struct authhttp *,
    const struct authhttp_request *, authhttp_cb, void *arg);
/* Before the callback only: no callback after. */
void authhttp_cancel(struct authhttp_query *);
/*
 * Pure: an answer from an HTTP status code and a header lookup function
 * (the fuzz target and the tests drive it without sockets).  header(ctx,
 * name) gives the header's value, trimmed, or NULL when there is none.
 * A refusal counts whatever the code, an OK only in a 2xx answer; no
 * Auth-Status, or a value too long for its field, is UNAVAILABLE.
 */
void authhttp_parse(int http_code,
    const char *(*header)(void *ctx, const char *name), void *ctx,
    struct authhttp_answer *out);
/* The header function for evhttp's headers (ctx a struct evkeyvalq *),
 * read as nginx reads them: names in any case, the last of a repeated
 * header, but any Auth-Status neither OK nor WAIT before a WAIT before OK. */
const char *authhttp_header(void *headers, const char *name);

/* Counters for metrics and benchmarks: queries asked, answers given
 * (cancelled queries have none), and of those from the cache. */
struct authhttp_stats {
	uint64_t queries, cache_hits, ok, refused, unavailable;
};
void authhttp_stats(const struct authhttp *, struct authhttp_stats *);

#endif

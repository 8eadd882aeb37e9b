/*
 * config.h — the configuration file: "key = value" lines, "#" comments.
 * Every key, its default and its meaning are documented in etc/mappend.conf.
 */
#ifndef MAPPEND_CONFIG_H
#define MAPPEND_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"
#include "proxyproto.h"

#define CONFIG_MAX_LISTEN 16

struct listen_conf {
	char host[256];		/* numeric address or name; "*" = all */
	char port[16];		/* "0" lets the kernel choose (tests) */
	bool tls;		/* "listen = HOST:PORT tls": implicit TLS (993 style) */
	bool proxy_protocol;	/* "... proxy_protocol": a PROXY header (v1 or v2)
				 * starts every connection, before TLS */
	unsigned line;		/* where in the file, for messages */
};

enum require_tls {
	REQUIRE_TLS_AUTO,	/* on for listeners not on a loopback address */
	REQUIRE_TLS_YES,
	REQUIRE_TLS_NO,
};

enum upstream_tls {
	UPSTREAM_PLAIN,
	UPSTREAM_STARTTLS,
	UPSTREAM_TLS,
};

#define CONFIG_MAX_BACKENDS 32
#define CONFIG_MAX_AUTH_HEADERS 8
#define BACKEND_NAME_MAX 64

/*
 * An upstream server and how the proxy talks to it.  The keys at the top
 * of the file make the default one; a "[backend NAME]" section another,
 * which takes the top's settings for what it does not say (but never its
 * address or TLS name).
 */
struct backend {
	char name[BACKEND_NAME_MAX];	/* "" for the default */
	char host[256];			/* upstream = HOST:PORT */
	char port[16];
	enum upstream_tls tls;		/* upstream_tls = plain|starttls|tls */
	bool tls_verify;		/* upstream_tls_verify, default yes; no
					 * logs a warning at start */
	char ca_file[4096];		/* upstream_ca_file; default: the
					 * system's CA store */
	char tls_name[256];		/* upstream_tls_name: to verify and send
					 * (SNI); default the host */
	/* A master user of the upstream (SASL PLAIN with the session's user
	 * as authorization identity) for the proxy's second connection;
	 * empty: the session's own LOGIN / AUTHENTICATE PLAIN credentials */
	char master_user[256];
	char master_password[256];
	unsigned line;			/* where its section starts; 0: the top */
};

struct config {
	struct listen_conf listen[CONFIG_MAX_LISTEN];
	size_t nlisten;			/* listen = HOST:PORT, repeatable, required */

	/* The default upstream: upstream = HOST:PORT (required) and the
	 * upstream_* and master_* keys at the top of the file */
	struct backend upstream;
	/* [backend NAME] sections: more upstreams a route may name */
	struct backend backends[CONFIG_MAX_BACKENDS];
	size_t nbackends;

	unsigned connect_timeout;	/* seconds, default 10 */
	unsigned client_idle_timeout;	/* seconds, default 1800 (RFC 3501: >= 30 min) */
	unsigned upstream_idle_timeout;	/* seconds, default 1860: a little over the client's */
	unsigned shutdown_timeout;	/* seconds, default 60: MULTIAPPENDs finish on SIGTERM */
	unsigned rollback_settle;	/* seconds, default 5: a lost connection's messages may still arrive */

	enum log_level log_level;	/* log_level = error|warning|info|debug, default info */
	bool log_syslog;		/* log = stderr|syslog, default stderr */

	size_t max_line_length;		/* bytes, default 65536 */
	unsigned max_sessions;		/* default 1000 */
	/* Per client address (the PROXY header's where a listener reads one):
	 * sessions at once, 0 = no limit (the default); new connections a
	 * second, a token bucket of connection_burst_per_address (default
	 * 10), 0 = no limit (the default) */
	unsigned max_sessions_per_address;
	double connection_rate_per_address;
	unsigned connection_burst_per_address;
	/* splice = yes|no, default yes: long literals between plain sockets
	 * moved by the kernel (splice.h); no: always copied */
	bool splice;

	char spool_dir[4096];		/* default /var/spool/mappend */
	uint64_t max_message_size;	/* bytes, default 64M (APPENDLIMIT) */
	unsigned max_messages;		/* per APPEND command, default 1000 */
	uint64_t max_session_spool;	/* bytes, default 1G */
	uint64_t max_total_spool;	/* bytes, default 4G */


	/* TLS towards clients: STARTTLS on plain listeners, and "tls" listeners */
	char tls_cert[4096];		/* certificate chain, PEM, leaf first */
	char tls_key[4096];		/* its private key, PEM */
	enum require_tls require_tls;	/* refuse plaintext logins before TLS */


	/* ID (RFC 2971): tell the upstream the client's address
	 * (x-originating-ip/-port), as Dovecot's trusted proxies expect */
	bool id_forward_address;

	/* Start-up and privileges (see mappend(8)).  Names are resolved at
	 * start, so that the file still loads where the user does not exist. */
	char user[64];			/* run as this user after start; "" = don't switch */
	char group[64];			/* and this group; "" = the user's own */
	char pid_file[4096];		/* "" = none */

	/* PROXY protocol: the networks whose headers are believed (required
	 * when a listen line has proxy_protocol; repeatable, comma lists) */
	struct cidr_list proxy_protocol_from;
	unsigned proxy_protocol_timeout;	/* seconds for the header, default 5 */

	/* Routing (router.h): each user to the upstream a source names, after
	 * login; neither set: every session goes to the default upstream */
	char route_map[4096];		/* route_map = PATH: a map file */
	char auth_http[1024];		/* auth_http = URL: nginx's protocol */
	bool route_oauth;		/* the front reads XOAUTH2, OAUTHBEARER */
	char route_capabilities[512];	/* more atoms the front lists */
	unsigned auth_http_timeout;	/* seconds, default 5 */
	char auth_http_header[CONFIG_MAX_AUTH_HEADERS][512];	/* "Name: value" */
	size_t nauth_http_headers;
	unsigned auth_http_cache;	/* answers kept, default 1000; 0 = none */
	unsigned auth_http_cache_ttl;	/* seconds, default 60 */

	/* metrics_listen = HOST:PORT: Prometheus metrics over HTTP at /metrics;
	 * metrics_host "" = off (the default) */
	char metrics_host[256];
	char metrics_port[16];
};

/* Defaults, no file read. */
void config_defaults(struct config *c);
/* Users are routed (route_map or auth_http is set). */
bool config_routing(const struct config *);
/* The backend called name ("" or "default": the default one), or NULL. */
const struct backend *config_backend(const struct config *, const char *name);

/*
 * Configurations the daemon uses live on the heap with a reference count:
 * the daemon holds the current one (for new sessions), each session the
 * one it started with, so a reload never changes a running session's
 * settings.  config_new: defaults and one reference, NULL when out of
 * memory.  config_ref and config_unref take only config_new's objects;
 * config_unref(NULL) is fine.
 */
struct config *config_new(void);
const struct config *config_ref(const struct config *);
void config_unref(const struct config *);
/* Something built from the configuration that lives exactly as long as it
 * (tls.c's OpenSSL contexts): free_fn(obj) runs with the last reference. */
void config_attach(const struct config *, void *obj, void (*free_fn)(void *));
void *config_attached(const struct config *);

/*
 * What a reload changes: the names of the keys whose values differ
 * between a and b, as "key, key" into out ("" when none), and their
 * number.  listen compares the set of lines, whatever their order; keys
 * that need a restart are named too.
 */
size_t config_changed_keys(const struct config *a, const struct config *b,
    char *out, size_t outlen);
/*
 * Keys that cannot change while mappend runs (user, group, pid_file,
 * spool_dir): for each whose value differs, fn(key, old value, new value,
 * arg) is called and next takes cur's value, so that the configuration a
 * reload puts in place says what is really in force.
 */
void config_keep_restart_keys(struct config *next, const struct config *cur,
    void (*fn)(const char *key, const char *was, const char *now, void *arg),
    void *arg);

/*
 * Read path into c (defaults first).  On failure returns -1 and writes
 * "PATH:LINE: reason" (or "PATH: reason") into err.
 */
int config_load(const char *path, struct config *c, char *err, size_t errlen);
/* The same from an open stream (a file, or memory: fmemopen); name is what
 * errors call it. */
int config_load_stream(FILE *f, const char *name, struct config *c, char *err,
    size_t errlen);

/* Sizes take K, M, G suffixes (powers of 1024); durations take s, m, h. */
int config_parse_size(const char *s, uint64_t *out);
int config_parse_duration(const char *s, unsigned *out);

#endif

/*
 * config.c — reads the "key = value" configuration file into struct config.
 * Every mistake is refused at load with "PATH:LINE: reason", so the daemon
 * never starts (or reloads) with a setting the user did not mean.  Also
 * the life of a configuration in use (a reference count), and what a
 * reload changes (the keys that differ, those that need a restart).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"

#define CONFIG_LINE_MAX 4096
#define DURATION_MAX (86400u * 7)
#define LINE_LENGTH_MIN 1024
#define LINE_LENGTH_MAX (16u * 1024 * 1024)
#define COUNT_MAX 1000000u
#define RATE_DECIMALS 3

void
config_defaults(struct config *c)
{
	memset(c, 0, sizeof *c);
	c->connect_timeout = 10;
	c->client_idle_timeout = 1800;
	c->upstream_idle_timeout = 1860;
	c->shutdown_timeout = 60;
	c->rollback_settle = 5;
	c->proxy_protocol_timeout = 5;
	c->log_level = LOG_LEVEL_INFO;
	c->log_syslog = false;
	c->max_line_length = 65536;
	c->max_sessions = 1000;
	c->connection_burst_per_address = 10;
	snprintf(c->spool_dir, sizeof c->spool_dir, "%s", "/var/spool/mappend");
	c->max_message_size = UINT64_C(64) << 20;
	c->max_messages = 1000;
	c->max_session_spool = UINT64_C(1) << 30;
	c->max_total_spool = UINT64_C(4) << 30;
	c->require_tls = REQUIRE_TLS_AUTO;
	c->upstream.tls = UPSTREAM_PLAIN;
	c->upstream.tls_verify = true;
	c->auth_http_timeout = 5;
	c->auth_http_cache = 1000;
	c->auth_http_cache_ttl = 60;
	c->splice = true;
}

static bool
is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

static bool
is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

/* Decimal digits only (no sign, no spaces): strtoull would accept both. */
static int
parse_decimal(const char **sp, uint64_t *out)
{
	const char *s = *sp;
	uint64_t v = 0;

	if (!is_digit(*s))
		return -1;
	for (; is_digit(*s); s++) {
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*sp = s;
	*out = v;
	return 0;
}

/* Syntax and overflow only; each key checks its own range. */
int
config_parse_size(const char *s, uint64_t *out)
{
	uint64_t v;
	unsigned shift = 0;

	if (s == NULL || parse_decimal(&s, &v) < 0)
		return -1;
	switch (*s) {
	case '\0':
		break;
	case 'k': case 'K':
		shift = 10;
		break;
	case 'm': case 'M':
		shift = 20;
		break;
	case 'g': case 'G':
		shift = 30;
		break;
	default:
		return -1;
	}
	if (shift != 0 && s[1] != '\0')
		return -1;
	if (v > (UINT64_MAX >> shift))
		return -1;
	*out = v << shift;
	return 0;
}

/* Syntax and overflow only; each key checks its own range. */
int
config_parse_duration(const char *s, unsigned *out)
{
	uint64_t v;
	unsigned mult = 1;

	if (s == NULL || parse_decimal(&s, &v) < 0)
		return -1;
	switch (*s) {
	case '\0':
	case 's': case 'S':
		break;
	case 'm': case 'M':
		mult = 60;
		break;
	case 'h': case 'H':
		mult = 3600;
		break;
	default:
		return -1;
	}
	if (*s != '\0' && s[1] != '\0')
		return -1;
	if (v > UINT_MAX / mult)
		return -1;
	*out = (unsigned)v * mult;
	return 0;
}

/*
 * Key setters: NULL when the value was stored, otherwise the hint that
 * follows "bad value for KEY: "VALUE"" — what the user should write instead.
 */

#define HINT_DURATION "expected a duration from 1 second to 7 days: " \
	"seconds, or a number with suffix s, m or h, e.g. 30m"
#define HINT_SIZE "expected a number of bytes from 1 to 2^64-1, " \
	"with optional suffix K, M or G (powers of 1024), e.g. 64M"
#define HINT_COUNT "expected a number from 1 to 1000000"

static const char *
set_duration(const char *v, unsigned *out)
{
	unsigned d;

	if (config_parse_duration(v, &d) < 0 || d < 1 || d > DURATION_MAX)
		return HINT_DURATION;
	*out = d;
	return NULL;
}

static const char *
set_size(const char *v, uint64_t *out)
{
	uint64_t n;

	if (config_parse_size(v, &n) < 0 || n < 1)
		return HINT_SIZE;
	*out = n;
	return NULL;
}

static const char *
set_count(const char *v, unsigned *out)
{
	uint64_t n;

	if (parse_decimal(&v, &n) < 0 || *v != '\0' || n < 1 || n > COUNT_MAX)
		return HINT_COUNT;
	*out = (unsigned)n;
	return NULL;
}

static bool
host_name_valid(const char *h)
{
	if (*h == '\0')
		return false;
	for (; *h != '\0'; h++) {
		char ch = *h;
		if (!(ch >= 'a' && ch <= 'z') && !(ch >= 'A' && ch <= 'Z') &&
		    !is_digit(ch) && ch != '.' && ch != '-' && ch != '_')
			return false;
	}
	return true;
}

/* An IPv6 literal, with an optional "%zone" for link-local addresses. */
static bool
ipv6_valid(const char *h)
{
	char addr[INET6_ADDRSTRLEN];
	struct in6_addr in6;
	const char *zone = strchr(h, '%');
	size_t len = zone != NULL ? (size_t)(zone - h) : strlen(h);

	if (len == 0 || len >= sizeof addr)
		return false;
	if (zone != NULL && !host_name_valid(zone + 1))
		return false;
	memcpy(addr, h, len);
	addr[len] = '\0';
	return inet_pton(AF_INET6, addr, &in6) == 1;
}

/*
 * HOST:PORT or [IPV6]:PORT into host (brackets removed) and port (canonical
 * decimal).  The host is resolved later; here only its shape is checked.
 */
static const char *
parse_host_port(const char *v, bool listen, char *host, size_t hostlen,
    char *port, size_t portlen)
{
	const char *usage = listen ?
	    "expected HOST:PORT, e.g. 127.0.0.1:1143, [::1]:1143 or *:1143" :
	    "expected HOST:PORT, e.g. 127.0.0.1:143, [::1]:143 or imap.example.com:143";
	const char *hend, *p;
	char h[256];
	size_t hlen;
	uint64_t n;
	unsigned min_port = listen ? 0 : 1;
	bool bracketed = *v == '[';

	if (bracketed) {
		hend = strchr(v, ']');
		if (hend == NULL || hend[1] != ':')
			return usage;
		v++;
		p = hend + 2;
	} else {
		hend = strrchr(v, ':');
		if (hend == NULL)
			return usage;
		p = hend + 1;
	}
	hlen = (size_t)(hend - v);
	if (hlen == 0)
		return usage;
	if (hlen >= sizeof h || hlen >= hostlen)
		return "host name too long: at most 255 characters";
	memcpy(h, v, hlen);
	h[hlen] = '\0';

	if (bracketed) {
		if (!ipv6_valid(h))
			return "not an IPv6 address between the brackets";
	} else if (strchr(h, ':') != NULL) {
		return "an IPv6 address needs brackets, e.g. [::1]:143";
	} else if (strcmp(h, "*") == 0) {
		if (!listen)
			return "\"*\" (all addresses) only makes sense for listen; "
			    "expected the upstream server's host name or address";
	} else if (!host_name_valid(h)) {
		return "the host may hold only letters, digits, '.', '-' and '_'";
	}

	if (parse_decimal(&p, &n) < 0 || *p != '\0' || n < min_port || n > 65535)
		return listen ? "the port must be a number from 0 to 65535" :
		    "the port must be a number from 1 to 65535";

	snprintf(host, hostlen, "%s", h);
	snprintf(port, portlen, "%u", (unsigned)n);
	return NULL;
}

/*
 * "HOST:PORT", then options in any order, each at most once: "tls"
 * (implicit TLS) and "proxy_protocol" (a PROXY header before anything else,
 * TLS included).
 */
static const char *
set_listen(struct config *c, const char *v)
{
	struct listen_conf *l = &c->listen[c->nlisten];
	const char *hint, *p;
	char addr[600];
	size_t alen = strcspn(v, " \t"), n = 0;

	memset(l, 0, sizeof(*l));
	if (alen >= sizeof(addr))
		return "address too long";
	memcpy(addr, v, alen);
	addr[alen] = '\0';
	for (p = v + alen;; p += n) {
		p += strspn(p, " \t");
		if (*p == '\0')
			break;
		n = strcspn(p, " \t");
		if (n == 3 && strncmp(p, "tls", n) == 0 && !l->tls)
			l->tls = true;
		else if (n == 14 && strncmp(p, "proxy_protocol", n) == 0 &&
		    !l->proxy_protocol)
			l->proxy_protocol = true;
		else
			return "expected HOST:PORT, optionally followed by \"tls\" "
			    "for implicit TLS and \"proxy_protocol\" for a PROXY "
			    "protocol header (e.g. \"0.0.0.0:993 tls\")";
	}
	hint = parse_host_port(addr, true, l->host, sizeof l->host, l->port,
	    sizeof l->port);
	if (hint == NULL)
		c->nlisten++;
	return hint;
}

static const char *
set_upstream(struct backend *b, const char *v)
{
	return parse_host_port(v, false, b->host,
	    sizeof b->host, b->port, sizeof b->port);
}

static const char *
set_connect_timeout(struct config *c, const char *v)
{
	return set_duration(v, &c->connect_timeout);
}

static const char *
set_client_idle_timeout(struct config *c, const char *v)
{
	return set_duration(v, &c->client_idle_timeout);
}

static const char *
set_upstream_idle_timeout(struct config *c, const char *v)
{
	return set_duration(v, &c->upstream_idle_timeout);
}

static const char *
set_shutdown_timeout(struct config *c, const char *v)
{
	return set_duration(v, &c->shutdown_timeout);
}

static const char *
set_log_level(struct config *c, const char *v)
{
	int level = log_level_parse(v);

	if (level < 0)
		return "expected error, warning, info or debug";
	c->log_level = (enum log_level)level;
	return NULL;
}

static const char *
set_log(struct config *c, const char *v)
{
	if (strcmp(v, "stderr") == 0)
		c->log_syslog = false;
	else if (strcmp(v, "syslog") == 0)
		c->log_syslog = true;
	else
		return "expected stderr or syslog";
	return NULL;
}

static const char *
set_max_line_length(struct config *c, const char *v)
{
	uint64_t n;

	if (config_parse_size(v, &n) < 0 || n < LINE_LENGTH_MIN ||
	    n > LINE_LENGTH_MAX)
		return "expected a number of bytes from 1024 to 16M, "
		    "with optional suffix K or M, e.g. 64K";
	c->max_line_length = (size_t)n;
	return NULL;
}

static const char *
set_max_sessions(struct config *c, const char *v)
{
	return set_count(v, &c->max_sessions);
}

static const char *
set_max_sessions_per_address(struct config *c, const char *v)
{
	uint64_t n;

	if (parse_decimal(&v, &n) < 0 || *v != '\0' || n > COUNT_MAX)
		return "expected a number from 0 (no limit) to 1000000";
	c->max_sessions_per_address = (unsigned)n;
	return NULL;
}

/*
 * Connections a second: digits with at most RATE_DECIMALS after a point,
 * kept as thousandths and divided once, so the same text always gives the
 * same double and "%.3f" writes it back.
 */
static const char *
set_connection_rate_per_address(struct config *c, const char *v)
{
	const char *hint = "expected connections a second: 0 (no limit), or "
	    "from 0.001 to 1000000 with at most 3 decimals, e.g. 0.5 or 10";
	uint64_t whole, frac = 0;
	int decimals = 0;

	if (parse_decimal(&v, &whole) < 0 || whole > COUNT_MAX)
		return hint;
	if (*v == '.') {
		for (v++; is_digit(*v) && decimals < RATE_DECIMALS; v++, decimals++)
			frac = frac * 10 + (uint64_t)(*v - '0');
		if (decimals == 0)
			return hint;
		for (; decimals < RATE_DECIMALS; decimals++)
			frac *= 10;
	}
	if (*v != '\0' || (whole == COUNT_MAX && frac > 0))
		return hint;
	c->connection_rate_per_address = (double)(whole * 1000 + frac) / 1000.0;
	return NULL;
}

static const char *
set_connection_burst_per_address(struct config *c, const char *v)
{
	return set_count(v, &c->connection_burst_per_address);
}

static const char *
set_spool_dir(struct config *c, const char *v)
{
	if (v[0] != '/')
		return "expected an absolute path, starting with \"/\"";
	if (strlen(v) >= sizeof c->spool_dir)
		return "path too long: at most 4095 bytes";
	snprintf(c->spool_dir, sizeof c->spool_dir, "%s", v);
	return NULL;
}

static const char *
set_max_message_size(struct config *c, const char *v)
{
	return set_size(v, &c->max_message_size);
}

static const char *
set_max_messages(struct config *c, const char *v)
{
	return set_count(v, &c->max_messages);
}

static const char *
set_max_session_spool(struct config *c, const char *v)
{
	return set_size(v, &c->max_session_spool);
}

static const char *
set_max_total_spool(struct config *c, const char *v)
{
	return set_size(v, &c->max_total_spool);
}

static const char *
set_string(const char *v, char *out, size_t outlen)
{
	if (v[0] == '\0')
		return "expected a value";
	if (strlen(v) >= outlen)
		return "value too long: at most 255 bytes";
	snprintf(out, outlen, "%s", v);
	return NULL;
}

static const char *
set_master_user(struct backend *b, const char *v)
{
	return set_string(v, b->master_user, sizeof b->master_user);
}

static const char *
set_master_password(struct backend *b, const char *v)
{
	return set_string(v, b->master_password, sizeof b->master_password);
}

static const char *
set_path(const char *v, char *out, size_t outlen)
{
	if (v[0] != '/')
		return "expected an absolute path, starting with \"/\"";
	if (strlen(v) >= outlen)
		return "path too long";
	snprintf(out, outlen, "%s", v);
	return NULL;
}

static const char *
set_tls_cert(struct config *c, const char *v)
{
	return set_path(v, c->tls_cert, sizeof c->tls_cert);
}

static const char *
set_tls_key(struct config *c, const char *v)
{
	return set_path(v, c->tls_key, sizeof c->tls_key);
}

static const char *
set_yes_no(const char *v, bool *out)
{
	if (strcmp(v, "yes") == 0)
		*out = true;
	else if (strcmp(v, "no") == 0)
		*out = false;
	else
		return "expected yes or no";
	return NULL;
}

static const char *
set_require_tls(struct config *c, const char *v)
{
	if (strcmp(v, "auto") == 0)
		c->require_tls = REQUIRE_TLS_AUTO;
	else if (strcmp(v, "yes") == 0)
		c->require_tls = REQUIRE_TLS_YES;
	else if (strcmp(v, "no") == 0)
		c->require_tls = REQUIRE_TLS_NO;
	else
		return "expected auto, yes or no";
	return NULL;
}

static const char *
set_upstream_tls(struct backend *b, const char *v)
{
	if (strcmp(v, "plain") == 0)
		b->tls = UPSTREAM_PLAIN;
	else if (strcmp(v, "starttls") == 0)
		b->tls = UPSTREAM_STARTTLS;
	else if (strcmp(v, "tls") == 0)
		b->tls = UPSTREAM_TLS;
	else
		return "expected plain, starttls or tls";
	return NULL;
}

static const char *
set_upstream_tls_verify(struct backend *b, const char *v)
{
	return set_yes_no(v, &b->tls_verify);
}

static const char *
set_upstream_ca_file(struct backend *b, const char *v)
{
	return set_path(v, b->ca_file, sizeof b->ca_file);
}

static const char *
set_upstream_tls_name(struct backend *b, const char *v)
{
	return set_string(v, b->tls_name, sizeof b->tls_name);
}

static const char *
set_id_forward_address(struct config *c, const char *v)
{
	return set_yes_no(v, &c->id_forward_address);
}

static const char *
set_splice(struct config *c, const char *v)
{
	return set_yes_no(v, &c->splice);
}

/* What useradd accepts on Debian, so that a typo is caught here and not
 * at start as "no such user". */
static const char *
set_account(const char *v, char *out, size_t outlen)
{
	size_t len = strlen(v);

	if (len >= outlen)
		return "name too long: at most 63 characters";
	if (v[0] == '-' || v[0] == '.')
		return "a user or group name may not start with '-' or '.'";
	for (const char *p = v; *p != '\0'; p++) {
		char ch = *p;
		if (!(ch >= 'a' && ch <= 'z') && !(ch >= 'A' && ch <= 'Z') &&
		    !is_digit(ch) && ch != '.' && ch != '-' && ch != '_' &&
		    !(ch == '$' && p[1] == '\0'))
			return "expected a user or group name: letters, digits, "
			    "'.', '-' and '_'";
	}
	snprintf(out, outlen, "%s", v);
	return NULL;
}

static const char *
set_user(struct config *c, const char *v)
{
	return set_account(v, c->user, sizeof c->user);
}

static const char *
set_group(struct config *c, const char *v)
{
	return set_account(v, c->group, sizeof c->group);
}

static const char *
set_pid_file(struct config *c, const char *v)
{
	const char *bad = set_path(v, c->pid_file, sizeof c->pid_file);

	if (bad != NULL)
		return bad;
	/* an absolute path is not empty: its last byte is there */
	if (v[strlen(v) - 1] == '/') {
		c->pid_file[0] = '\0';
		return "expected a file name, not a directory";
	}
	return NULL;
}

/* The reason for a list element names the element, so it is formatted
 * here; parse_line uses it before the next key is read. */
static char list_hint[512];

static const char *
set_proxy_protocol_from(struct config *c, const char *v)
{
	if (proxyproto_cidr_parse(&c->proxy_protocol_from, v, list_hint,
	    sizeof list_hint) < 0)
		return list_hint;
	return NULL;
}

static const char *
set_rollback_settle(struct config *c, const char *v)
{
	return set_duration(v, &c->rollback_settle);
}

static const char *
set_proxy_protocol_timeout(struct config *c, const char *v)
{
	return set_duration(v, &c->proxy_protocol_timeout);
}

static const char *
set_route_map(struct config *c, const char *v)
{
	return set_path(v, c->route_map, sizeof c->route_map);
}

/* http://HOST[:PORT]/PATH: nginx's auth_http speaks plain HTTP only. */
static const char *
set_auth_http(struct config *c, const char *v)
{
	const char *host = v + 7;

	if (strncmp(v, "http://", 7) != 0 || *host == '\0' || *host == '/')
		return "expected http://HOST[:PORT]/PATH";
	if (strlen(v) >= sizeof c->auth_http)
		return "URL too long";
	for (const char *p = v; *p != '\0'; p++)
		if (*p == ' ' || *p == '\t')
			return "a URL holds no spaces";
	snprintf(c->auth_http, sizeof c->auth_http, "%s", v);
	return NULL;
}

/* Capability atoms the front adds to its own: what every backend offers
 * after login, so that clients that do not ask again still know. */
static const char *
set_route_capabilities(struct config *c, const char *v)
{
	static const char *const own[] = { "IMAP4rev1", "LITERAL+", "SASL-IR", "ID",
	    "MULTIAPPEND", "STARTTLS", "LOGINDISABLED", NULL };
	char copy[512], *tok, *save = NULL;

	if (strlen(v) >= sizeof c->route_capabilities)
		return "value too long: at most 511 bytes";
	snprintf(copy, sizeof copy, "%s", v);
	for (tok = strtok_r(copy, " \t", &save); tok != NULL;
	    tok = strtok_r(NULL, " \t", &save)) {
		if (strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		    "0123456789=+-._") != strlen(tok))
			return "expected capability atoms separated by spaces";
		if (strncasecmp(tok, "AUTH=", 5) == 0)
			return "the front's AUTH= mechanisms are its own (route_oauth)";
		for (size_t i = 0; own[i] != NULL; i++)
			if (strcasecmp(tok, own[i]) == 0)
				return "IMAP4rev1, LITERAL+, SASL-IR, ID, MULTIAPPEND, "
				    "STARTTLS and LOGINDISABLED are the front's own";
	}
	snprintf(c->route_capabilities, sizeof c->route_capabilities, "%s", v);
	return NULL;
}

static const char *
set_route_oauth(struct config *c, const char *v)
{
	return set_yes_no(v, &c->route_oauth);
}

static const char *
set_auth_http_timeout(struct config *c, const char *v)
{
	return set_duration(v, &c->auth_http_timeout);
}

/* "Name: value", sent with every request (a shared secret, say). */
static const char *
set_auth_http_header(struct config *c, const char *v)
{
	const char *colon = strchr(v, ':');
	size_t name = colon != NULL ? (size_t)(colon - v) : 0;

	if (colon == NULL || name == 0 || strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789-") != name)
		return "expected \"Name: value\" (letters, digits and '-' in the name)";
	if (strlen(v) >= sizeof c->auth_http_header[0])
		return "header too long: at most 511 bytes";
	snprintf(c->auth_http_header[c->nauth_http_headers++],
	    sizeof c->auth_http_header[0], "%s", v);
	return NULL;
}

static const char *
set_auth_http_cache(struct config *c, const char *v)
{
	uint64_t n;

	if (parse_decimal(&v, &n) < 0 || *v != '\0' || n > COUNT_MAX)
		return "expected a number from 0 (no cache) to 1000000";
	c->auth_http_cache = (unsigned)n;
	return NULL;
}

static const char *
set_auth_http_cache_ttl(struct config *c, const char *v)
{
	return set_duration(v, &c->auth_http_cache_ttl);
}

static const char *
set_metrics_listen(struct config *c, const char *v)
{
	return parse_host_port(v, true, c->metrics_host, sizeof c->metrics_host,
	    c->metrics_port, sizeof c->metrics_port);
}

/* A key sets the configuration, or (set_backend) a backend: the default
 * one at the top of the file, the section's inside a [backend NAME]. */
struct config_key {
	const char *name;
	const char *(*set)(struct config *, const char *);
	size_t max_count;	/* times the key may appear */
	const char *(*set_backend)(struct backend *, const char *);
};

static const struct config_key config_keys[] = {
	{ "listen", set_listen, CONFIG_MAX_LISTEN, NULL },
	{ "upstream", NULL, 1, set_upstream },
	{ "connect_timeout", set_connect_timeout, 1, NULL },
	{ "client_idle_timeout", set_client_idle_timeout, 1, NULL },
	{ "upstream_idle_timeout", set_upstream_idle_timeout, 1, NULL },
	{ "shutdown_timeout", set_shutdown_timeout, 1, NULL },
	{ "rollback_settle", set_rollback_settle, 1, NULL },
	{ "log_level", set_log_level, 1, NULL },
	{ "log", set_log, 1, NULL },
	{ "max_line_length", set_max_line_length, 1, NULL },
	{ "max_sessions", set_max_sessions, 1, NULL },
	{ "max_sessions_per_address", set_max_sessions_per_address, 1, NULL },
	{ "connection_rate_per_address", set_connection_rate_per_address, 1, NULL },
	{ "connection_burst_per_address", set_connection_burst_per_address, 1, NULL },
	{ "splice", set_splice, 1, NULL },
	{ "spool_dir", set_spool_dir, 1, NULL },
	{ "max_message_size", set_max_message_size, 1, NULL },
	{ "max_messages", set_max_messages, 1, NULL },
	{ "max_session_spool", set_max_session_spool, 1, NULL },
	{ "max_total_spool", set_max_total_spool, 1, NULL },
	{ "master_user", NULL, 1, set_master_user },
	{ "master_password", NULL, 1, set_master_password },
	{ "tls_cert", set_tls_cert, 1, NULL },
	{ "tls_key", set_tls_key, 1, NULL },
	{ "require_tls", set_require_tls, 1, NULL },
	{ "upstream_tls", NULL, 1, set_upstream_tls },
	{ "upstream_tls_verify", NULL, 1, set_upstream_tls_verify },
	{ "upstream_ca_file", NULL, 1, set_upstream_ca_file },
	{ "upstream_tls_name", NULL, 1, set_upstream_tls_name },
	{ "id_forward_address", set_id_forward_address, 1, NULL },
	{ "user", set_user, 1, NULL },
	{ "group", set_group, 1, NULL },
	{ "pid_file", set_pid_file, 1, NULL },
	{ "proxy_protocol_from", set_proxy_protocol_from, PROXYPROTO_MAX_NETWORKS, NULL },
	{ "proxy_protocol_timeout", set_proxy_protocol_timeout, 1, NULL },
	{ "metrics_listen", set_metrics_listen, 1, NULL },
	{ "route_map", set_route_map, 1, NULL },
	{ "auth_http", set_auth_http, 1, NULL },
	{ "route_oauth", set_route_oauth, 1, NULL },
	{ "route_capabilities", set_route_capabilities, 1, NULL },
	{ "auth_http_timeout", set_auth_http_timeout, 1, NULL },
	{ "auth_http_header", set_auth_http_header, CONFIG_MAX_AUTH_HEADERS, NULL },
	{ "auth_http_cache", set_auth_http_cache, 1, NULL },
	{ "auth_http_cache_ttl", set_auth_http_cache_ttl, 1, NULL },
};

#define NKEYS (sizeof config_keys / sizeof config_keys[0])

/* What config_load knows while reading one file. */
struct config_reader {
	const char *path;
	unsigned line;			/* 0: the error is about the whole file */
	size_t count[NKEYS];		/* times each key was seen */
	unsigned first_line[NKEYS];	/* where each key was first seen */
	struct backend *section;	/* inside [backend NAME], or NULL */
	size_t section_count[NKEYS];	/* the same for the section's keys */
	unsigned section_line[NKEYS];
	char *err;
	size_t errlen;
};

static int
config_error(struct config_reader *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
config_error(struct config_reader *r, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (r->err == NULL || r->errlen == 0)
		return -1;
	if (r->line != 0)
		n = snprintf(r->err, r->errlen, "%s:%u: ", r->path, r->line);
	else
		n = snprintf(r->err, r->errlen, "%s: ", r->path);
	if (n < 0 || (size_t)n >= r->errlen)
		return -1;
	va_start(ap, fmt);
	vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

/*
 * One line into buf without its newline (and without a CR before it).
 * Returns 1 for a line, 0 at end of file, -1 on error (reported).
 */
static int
read_line(struct config_reader *r, FILE *f, char *buf, size_t buflen)
{
	size_t len = 0;
	int ch;

	while ((ch = getc(f)) != EOF && ch != '\n') {
		if (len + 1 >= buflen) {
			r->line++;
			return config_error(r, "line too long: at most %d bytes",
			    CONFIG_LINE_MAX);
		}
		buf[len++] = (char)ch;
	}
	if (ferror(f)) {
		r->line = 0;
		return config_error(r, "cannot read: %s", strerror(errno));
	}
	if (ch == EOF && len == 0)
		return 0;
	r->line++;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	buf[len] = '\0';
	for (size_t i = 0; i < len; i++) {
		unsigned char b = (unsigned char)buf[i];
		if ((b < 0x20 && b != '\t') || b == 0x7f)
			return config_error(r, "control character 0x%02x in line; "
			    "only printable text and tabs are allowed", b);
	}
	return 1;
}

static char *
trim(char *s)
{
	char *end;

	while (is_space(*s))
		s++;
	end = s + strlen(s);
	while (end > s && is_space(end[-1]))
		end--;
	*end = '\0';
	return s;
}

/*
 * The value after "=", in place: a "quoted" value is taken as is (so it may
 * hold "#" or spaces); otherwise it ends at a "#" that follows whitespace.
 * Returns NULL after reporting an error.
 */
static char *
parse_value(struct config_reader *r, const char *key, char *v)
{
	char *end;

	while (is_space(*v))
		v++;
	if (*v == '"') {
		v++;
		end = strchr(v, '"');
		if (end == NULL) {
			config_error(r, "missing closing '\"' in value for %s", key);
			return NULL;
		}
		*end = '\0';
		for (end++; is_space(*end); end++)
			;
		if (*end != '\0' && *end != '#') {
			config_error(r, "unexpected text after the quoted value "
			    "for %s: \"%s\"", key, end);
			return NULL;
		}
		return v;
	}
	for (end = v; *end != '\0'; end++) {
		if (*end == '#' && (end == v || is_space(end[-1]))) {
			*end = '\0';
			break;
		}
	}
	v = trim(v);
	if (*v == '\0') {
		config_error(r, "missing value for %s", key);
		return NULL;
	}
	return v;
}

static bool
backend_name_valid(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len >= BACKEND_NAME_MAX || strcmp(n, "default") == 0)
		return false;
	return strspn(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789_.-") == len;
}

/* A section is over (another begins, or the file ends): what it must say. */
static int
end_section(struct config_reader *r)
{
	const struct backend *b = r->section;
	unsigned line = r->line;

	if (b == NULL)
		return 0;
	r->line = b->line;
	if (b->host[0] == '\0')
		return config_error(r, "[backend %s] has no \"upstream = HOST:PORT\"",
		    b->name);
	if ((b->master_user[0] == '\0') != (b->master_password[0] == '\0'))
		return config_error(r, "[backend %s]: master_user and "
		    "master_password go together: set both or neither", b->name);
	r->line = line;
	r->section = NULL;
	return 0;
}

/*
 * "[backend NAME]": the keys that follow, up to the next section, set that
 * backend.  It starts as the top of the file says (the top comes first:
 * other keys are refused inside a section), without its address and TLS
 * name, which belong to one server.
 */
static int
begin_section(struct config_reader *r, struct config *c, char *s)
{
	size_t len = strlen(s);
	char *name;
	struct backend *b;

	if (s[len - 1] != ']')
		return config_error(r, "a section is \"[backend NAME]\"");
	s[len - 1] = '\0';
	s = trim(s + 1);
	if (strncmp(s, "backend", 7) != 0 || !is_space(s[7]))
		return config_error(r, "unknown section \"[%s]\" (expected "
		    "\"[backend NAME]\")", s);
	name = trim(s + 8);
	if (!backend_name_valid(name))
		return config_error(r, "bad backend name \"%s\" (letters, digits, "
		    "'_', '.' and '-', at most %d bytes; \"default\" is the top "
		    "of the file)", name, BACKEND_NAME_MAX - 1);
	if (end_section(r) < 0)
		return -1;
	for (size_t i = 0; i < c->nbackends; i++)
		if (strcmp(c->backends[i].name, name) == 0)
			return config_error(r, "[backend %s] is already on line %u",
			    name, c->backends[i].line);
	if (c->nbackends == CONFIG_MAX_BACKENDS)
		return config_error(r, "too many backends: at most %d",
		    CONFIG_MAX_BACKENDS);
	b = &c->backends[c->nbackends++];
	*b = c->upstream;
	memset(b->host, 0, sizeof b->host);
	memset(b->port, 0, sizeof b->port);
	memset(b->tls_name, 0, sizeof b->tls_name);
	memset(b->name, 0, sizeof b->name);
	snprintf(b->name, sizeof b->name, "%s", name);
	b->line = r->line;
	r->section = b;
	memset(r->section_count, 0, sizeof r->section_count);
	return 0;
}

static int
parse_line(struct config_reader *r, struct config *c, char *line)
{
	const struct config_key *k = NULL;
	char *s = trim(line), *eq, *key, *value;
	const char *hint;
	size_t i, *count;
	unsigned *first;

	if (*s == '\0' || *s == '#')
		return 0;
	if (*s == '[')
		return begin_section(r, c, s);
	eq = strchr(s, '=');
	if (eq == NULL)
		return config_error(r, "missing \"=\" in \"%s\" "
		    "(expected \"key = value\")", s);
	*eq = '\0';
	key = trim(s);
	if (*key == '\0')
		return config_error(r, "missing key before \"=\" "
		    "(expected \"key = value\")");

	for (i = 0; i < NKEYS; i++) {
		if (strcmp(key, config_keys[i].name) == 0) {
			k = &config_keys[i];
			break;
		}
	}
	if (k == NULL)
		return config_error(r, "unknown key \"%s\"", key);

	value = parse_value(r, key, eq + 1);
	if (value == NULL)
		return -1;

	if (r->section != NULL && k->set_backend == NULL)
		return config_error(r, "%s cannot be set for one backend: it "
		    "belongs above the first [backend] section", key);
	count = r->section != NULL ? r->section_count : r->count;
	first = r->section != NULL ? r->section_line : r->first_line;
	if (count[i] >= k->max_count) {
		if (k->max_count == 1)
			return config_error(r, "duplicate key \"%s\" "
			    "(already set on line %u)", key, first[i]);
		return config_error(r, "too many \"%s\" lines: at most %zu",
		    key, k->max_count);
	}
	if (count[i]++ == 0)
		first[i] = r->line;

	if (k->set_backend != NULL)
		hint = k->set_backend(r->section != NULL ? r->section :
		    &c->upstream, value);
	else
		hint = k->set(c, value);
	if (hint != NULL)
		return config_error(r, "bad value for %s: \"%s\" (%s)", key,
		    value, hint);
	if (k->set == set_listen)
		c->listen[c->nlisten - 1].line = r->line;
	return 0;
}

static size_t
key_index(const char *name)
{
	size_t i;

	for (i = 0; i < NKEYS; i++) {
		if (strcmp(config_keys[i].name, name) == 0)
			break;
	}
	return i;
}

/* The IPv4 or IPv6 address of a numeric host, family 0 for names and "*". */
struct listen_addr {
	int family;
	unsigned char a[16];
};

static struct listen_addr
listen_addr(const char *host)
{
	struct listen_addr la = { 0, { 0 } };
	char h[256];

	snprintf(h, sizeof h, "%s", host);
	h[strcspn(h, "%")] = '\0';	/* the zone does not change the address */
	if (inet_pton(AF_INET, h, la.a) == 1)
		la.family = AF_INET;
	else if (inet_pton(AF_INET6, h, la.a) == 1)
		la.family = AF_INET6;
	return la;
}

static bool
addr_is_any(const struct listen_addr *la)
{
	static const unsigned char zero[16];

	return la->family != 0 && memcmp(la->a, zero, la->family == AF_INET ? 4 : 16) == 0;
}

enum overlap { OVERLAP_NONE, OVERLAP_SAME, OVERLAP_WILDCARD };

/*
 * Would binding both fail with "Address already in use"?  The same address
 * twice, or a wildcard (0.0.0.0, [::], "*" for both) and an address of its
 * family: Linux refuses those pairs even with SO_REUSEADDR.  Port 0 (the
 * kernel chooses) never clashes; names are compared as written.
 */
static enum overlap
listen_overlap(const struct listen_conf *x, const struct listen_conf *y)
{
	struct listen_addr ax, ay;
	bool star_x = strcmp(x->host, "*") == 0, star_y = strcmp(y->host, "*") == 0;

	if (strcmp(x->port, y->port) != 0 || strcmp(x->port, "0") == 0)
		return OVERLAP_NONE;
	if (strcasecmp(x->host, y->host) == 0)
		return OVERLAP_SAME;
	ax = listen_addr(x->host);
	ay = listen_addr(y->host);
	if (star_x || star_y)
		return (star_x ? ay.family : ax.family) != 0 ? OVERLAP_WILDCARD :
		    OVERLAP_NONE;
	if (ax.family == 0 || ax.family != ay.family)
		return OVERLAP_NONE;
	if (memcmp(ax.a, ay.a, sizeof ax.a) == 0)
		return OVERLAP_SAME;
	return addr_is_any(&ax) || addr_is_any(&ay) ? OVERLAP_WILDCARD :
	    OVERLAP_NONE;
}

/* "HOST:PORT", IPv6 in brackets: as the user writes it. */
static const char *
listen_name(const struct listen_conf *l, char *buf, size_t len)
{
	snprintf(buf, len, strchr(l->host, ':') != NULL ? "[%s]:%s" : "%s:%s",
	    l->host, l->port);
	return buf;
}

static int
check_listen(struct config_reader *r, const struct config *c)
{
	char na[300], nb[300];

	for (size_t i = 0; i < c->nlisten; i++) {
		for (size_t j = 0; j < i; j++) {
			const struct listen_conf *a = &c->listen[j], *b = &c->listen[i];
			enum overlap o = listen_overlap(a, b);
			bool respelled;

			if (o == OVERLAP_NONE)
				continue;
			r->line = b->line;
			listen_name(a, na, sizeof na);
			listen_name(b, nb, sizeof nb);
			respelled = strcmp(na, nb) != 0;
			if (o == OVERLAP_SAME)
				return config_error(r, "listen %s is already on line %u"
				    "%s%s%s: remove one of them", nb, a->line,
				    respelled ? " (as " : "", respelled ? na : "",
				    respelled ? ")" : "");
			return config_error(r, "listen %s overlaps listen %s on line "
			    "%u (a wildcard address takes the port on every address "
			    "of its family): keep one of them", nb, na, a->line);
		}
	}
	return 0;
}

/*
 * A PROXY header names any address its sender likes, so a listener that
 * reads one must know whose to believe; and networks without a listener
 * that reads headers are a listen line that lacks its option.
 */
static int
check_proxy_protocol(struct config_reader *r, const struct config *c)
{
	char name[300];
	bool any = false;

	for (size_t i = 0; i < c->nlisten; i++) {
		const struct listen_conf *l = &c->listen[i];

		if (!l->proxy_protocol)
			continue;
		any = true;
		if (c->proxy_protocol_from.n == 0) {
			r->line = l->line;
			return config_error(r, "listen %s has proxy_protocol but "
			    "proxy_protocol_from is not set: from whom? A PROXY "
			    "header names any client address its sender likes; add "
			    "proxy_protocol_from = the load balancers' networks, "
			    "e.g. 10.0.0.0/8", listen_name(l, name, sizeof name));
		}
	}
	if (!any && c->proxy_protocol_from.n > 0) {
		r->line = r->first_line[key_index("proxy_protocol_from")];
		return config_error(r, "proxy_protocol_from is set but no listen "
		    "line has proxy_protocol: add \"proxy_protocol\" to the listen "
		    "lines the load balancer connects to, or remove "
		    "proxy_protocol_from");
	}
	r->line = 0;
	return 0;
}

/* The metrics listener may not take a port a listen line needs. */
static int
check_metrics_listen(struct config_reader *r, const struct config *c)
{
	struct listen_conf m;
	char na[300], nb[300];

	if (c->metrics_host[0] == '\0')
		return 0;
	memset(&m, 0, sizeof m);
	snprintf(m.host, sizeof m.host, "%s", c->metrics_host);
	snprintf(m.port, sizeof m.port, "%s", c->metrics_port);
	for (size_t i = 0; i < c->nlisten; i++) {
		const struct listen_conf *l = &c->listen[i];

		if (listen_overlap(l, &m) == OVERLAP_NONE)
			continue;
		r->line = r->first_line[key_index("metrics_listen")];
		return config_error(r, "metrics_listen %s takes the address of "
		    "listen %s on line %u: choose another port",
		    listen_name(&m, na, sizeof na), listen_name(l, nb, sizeof nb),
		    l->line);
	}
	return 0;
}

/* Checks that involve more than one key, or none that was written. */
static int
check_config(struct config_reader *r, const struct config *c)
{
	r->line = 0;
	if (r->count[key_index("listen")] == 0)
		return config_error(r, "missing required key \"listen\" "
		    "(add e.g. \"listen = 127.0.0.1:1143\")");
	if (r->count[key_index("upstream")] == 0)
		return config_error(r, "missing required key \"upstream\" "
		    "(add e.g. \"upstream = 127.0.0.1:143\")");
	if (c->max_message_size > c->max_session_spool)
		return config_error(r, "max_message_size (%" PRIu64 " bytes) is "
		    "larger than max_session_spool (%" PRIu64 " bytes); lower "
		    "max_message_size or raise max_session_spool",
		    c->max_message_size, c->max_session_spool);
	if (c->max_session_spool > c->max_total_spool)
		return config_error(r, "max_session_spool (%" PRIu64 " bytes) is "
		    "larger than max_total_spool (%" PRIu64 " bytes); lower "
		    "max_session_spool or raise max_total_spool",
		    c->max_session_spool, c->max_total_spool);
	if (c->max_sessions_per_address > c->max_sessions)
		return config_error(r, "max_sessions_per_address (%u) is larger than "
		    "max_sessions (%u): it would never refuse anything; lower "
		    "max_sessions_per_address or raise max_sessions",
		    c->max_sessions_per_address, c->max_sessions);
	if ((c->upstream.master_user[0] == '\0') != (c->upstream.master_password[0] == '\0'))
		return config_error(r, "master_user and master_password go "
		    "together: set both or neither");
	if ((c->tls_cert[0] == '\0') != (c->tls_key[0] == '\0'))
		return config_error(r, "tls_cert and tls_key go together: set both "
		    "or neither");
	if (c->require_tls == REQUIRE_TLS_YES && c->tls_cert[0] == '\0')
		return config_error(r, "require_tls = yes needs tls_cert and tls_key: "
		    "without them no client could ever log in");
	for (size_t i = 0; i < c->nlisten; i++)
		if (c->listen[i].tls && c->tls_cert[0] == '\0')
			return config_error(r, "listen %s:%s is a tls listener, but "
			    "tls_cert and tls_key are not set", c->listen[i].host,
			    c->listen[i].port);
	if (c->group[0] != '\0' && c->user[0] == '\0')
		return config_error(r, "group = %s needs user: mappend switches to "
		    "a group only together with a user", c->group);
	if (c->route_map[0] != '\0' && c->auth_http[0] != '\0')
		return config_error(r, "route_map and auth_http are two sources of "
		    "routes: set one of them");
	if (c->auth_http[0] == '\0' && c->nauth_http_headers > 0)
		return config_error(r, "auth_http_header needs auth_http");
	if (check_proxy_protocol(r, c) < 0)
		return -1;
	if (check_listen(r, c) < 0)
		return -1;
	return check_metrics_listen(r, c);
}

int
config_load_stream(FILE *f, const char *name, struct config *c, char *err,
    size_t errlen)
{
	/* Filled aside and copied on success: a failed reload keeps the old. */
	struct config tmp;
	struct config_reader r = { .path = name, .err = err, .errlen = errlen };
	char line[CONFIG_LINE_MAX + 1];
	int rc;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	config_defaults(&tmp);
	while ((rc = read_line(&r, f, line, sizeof line)) > 0) {
		if (parse_line(&r, &tmp, line) < 0) {
			rc = -1;
			break;
		}
	}
	if (rc == 0)
		rc = end_section(&r);
	if (rc < 0 || check_config(&r, &tmp) < 0)
		return -1;
	*c = tmp;
	return 0;
}

int
config_load(const char *path, struct config *c, char *err, size_t errlen)
{
	struct config_reader r = { .path = path, .err = err, .errlen = errlen };
	FILE *f;
	int rc;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	f = fopen(path, "r");
	if (f == NULL)
		return config_error(&r, "cannot open: %s", strerror(errno));
	rc = config_load_stream(f, path, c, err, errlen);
	fclose(f);
	return rc;
}

bool
config_routing(const struct config *c)
{
	return c->route_map[0] != '\0' || c->auth_http[0] != '\0';
}

const struct backend *
config_backend(const struct config *c, const char *name)
{
	if (name[0] == '\0' || strcmp(name, "default") == 0)
		return &c->upstream;
	for (size_t i = 0; i < c->nbackends; i++)
		if (strcmp(c->backends[i].name, name) == 0)
			return &c->backends[i];
	return NULL;
}

/* ---- configurations on the heap, counted ---- */

struct config_box {
	unsigned refs;
	void *attached;
	void (*attached_free)(void *);
	struct config c;
};

/* The count is not part of the configuration's value: the box is always
 * writable, whatever its users may do with the configuration. */
static struct config_box *
box_of(const struct config *c)
{
	return (struct config_box *)(void *)((char *)(uintptr_t)c -
	    offsetof(struct config_box, c));
}

struct config *
config_new(void)
{
	struct config_box *b = calloc(1, sizeof *b);

	if (b == NULL)
		return NULL;
	b->refs = 1;
	config_defaults(&b->c);
	return &b->c;
}

const struct config *
config_ref(const struct config *c)
{
	box_of(c)->refs++;
	return c;
}

void
config_unref(const struct config *c)
{
	struct config_box *b;

	if (c == NULL)
		return;
	b = box_of(c);
	if (--b->refs > 0)
		return;
	if (b->attached_free != NULL)
		b->attached_free(b->attached);
	/* master_password is in there */
	explicit_bzero(&b->c, sizeof b->c);
	free(b);
}

void
config_attach(const struct config *c, void *obj, void (*free_fn)(void *))
{
	struct config_box *b = box_of(c);

	if (b->attached_free != NULL)
		b->attached_free(b->attached);
	b->attached = obj;
	b->attached_free = free_fn;
}

void *
config_attached(const struct config *c)
{
	return box_of(c)->attached;
}

/* ---- what a reload changes ---- */

#define FIELD(f) offsetof(struct config, f), sizeof(((struct config *)0)->f)

/* Where each key keeps its value: one or two fields, compared byte for
 * byte (config_defaults zeroes every byte first).  A key missing here is
 * reported as changed at every reload, so that it is noticed. */
static const struct config_field {
	const char *key;
	size_t off, len, off2, len2;
	bool restart;		/* cannot change while mappend runs */
} config_fields[] = {
	{ "listen", FIELD(nlisten), 0, 0, false },	/* and the lines: below */
	{ "upstream", FIELD(upstream.host), FIELD(upstream.port), false },
	{ "connect_timeout", FIELD(connect_timeout), 0, 0, false },
	{ "client_idle_timeout", FIELD(client_idle_timeout), 0, 0, false },
	{ "upstream_idle_timeout", FIELD(upstream_idle_timeout), 0, 0, false },
	{ "shutdown_timeout", FIELD(shutdown_timeout), 0, 0, false },
	{ "rollback_settle", FIELD(rollback_settle), 0, 0, false },
	{ "log_level", FIELD(log_level), 0, 0, false },
	{ "log", FIELD(log_syslog), 0, 0, false },
	{ "max_line_length", FIELD(max_line_length), 0, 0, false },
	{ "max_sessions", FIELD(max_sessions), 0, 0, false },
	{ "max_sessions_per_address", FIELD(max_sessions_per_address), 0, 0, false },
	{ "connection_rate_per_address", FIELD(connection_rate_per_address), 0, 0, false },
	{ "connection_burst_per_address", FIELD(connection_burst_per_address), 0, 0, false },
	{ "splice", FIELD(splice), 0, 0, false },
	{ "spool_dir", FIELD(spool_dir), 0, 0, true },
	{ "max_message_size", FIELD(max_message_size), 0, 0, false },
	{ "max_messages", FIELD(max_messages), 0, 0, false },
	{ "max_session_spool", FIELD(max_session_spool), 0, 0, false },
	{ "max_total_spool", FIELD(max_total_spool), 0, 0, false },
	{ "master_user", FIELD(upstream.master_user), 0, 0, false },
	{ "master_password", FIELD(upstream.master_password), 0, 0, false },
	{ "tls_cert", FIELD(tls_cert), 0, 0, false },
	{ "tls_key", FIELD(tls_key), 0, 0, false },
	{ "require_tls", FIELD(require_tls), 0, 0, false },
	{ "upstream_tls", FIELD(upstream.tls), 0, 0, false },
	{ "upstream_tls_verify", FIELD(upstream.tls_verify), 0, 0, false },
	{ "upstream_ca_file", FIELD(upstream.ca_file), 0, 0, false },
	{ "upstream_tls_name", FIELD(upstream.tls_name), 0, 0, false },
	{ "id_forward_address", FIELD(id_forward_address), 0, 0, false },
	{ "user", FIELD(user), 0, 0, true },
	{ "group", FIELD(group), 0, 0, true },
	{ "pid_file", FIELD(pid_file), 0, 0, true },
	{ "proxy_protocol_from", FIELD(proxy_protocol_from), 0, 0, false },
	{ "proxy_protocol_timeout", FIELD(proxy_protocol_timeout), 0, 0, false },
	{ "metrics_listen", FIELD(metrics_host), FIELD(metrics_port), false },
	{ "route_map", FIELD(route_map), 0, 0, false },
	{ "auth_http", FIELD(auth_http), 0, 0, false },
	{ "route_oauth", FIELD(route_oauth), 0, 0, false },
	{ "route_capabilities", FIELD(route_capabilities), 0, 0, false },
	{ "auth_http_timeout", FIELD(auth_http_timeout), 0, 0, false },
	{ "auth_http_header", FIELD(auth_http_header), FIELD(nauth_http_headers), false },
	{ "auth_http_cache", FIELD(auth_http_cache), 0, 0, false },
	{ "auth_http_cache_ttl", FIELD(auth_http_cache_ttl), 0, 0, false },
};

#define NFIELDS (sizeof config_fields / sizeof config_fields[0])

static const struct config_field *
field_of(const char *key)
{
	for (size_t i = 0; i < NFIELDS; i++)
		if (strcmp(config_fields[i].key, key) == 0)
			return &config_fields[i];
	return NULL;
}

static bool
same_bytes(const struct config *a, const struct config *b, size_t off, size_t len)
{
	return memcmp((const char *)a + off, (const char *)b + off, len) == 0;
}

static bool
same_listen_line(const struct listen_conf *x, const struct listen_conf *y)
{
	return strcmp(x->host, y->host) == 0 && strcmp(x->port, y->port) == 0 &&
	    x->tls == y->tls && x->proxy_protocol == y->proxy_protocol;
}

static size_t
listen_count(const struct config *c, const struct listen_conf *l)
{
	size_t n = 0;

	for (size_t i = 0; i < c->nlisten; i++)
		n += same_listen_line(&c->listen[i], l);
	return n;
}

/* The same listen lines, in any order ("HOST:0" may be there twice: the
 * kernel chooses a port for each). */
static bool
same_listen(const struct config *a, const struct config *b)
{
	if (a->nlisten != b->nlisten)
		return false;
	for (size_t i = 0; i < a->nlisten; i++)
		if (listen_count(a, &a->listen[i]) != listen_count(b, &a->listen[i]))
			return false;
	return true;
}

static bool
same_value(const struct config *a, const struct config *b, const char *key)
{
	const struct config_field *f = field_of(key);

	if (f == NULL)
		return false;
	if (strcmp(key, "listen") == 0)
		return same_listen(a, b);
	return same_bytes(a, b, f->off, f->len) &&
	    (f->len2 == 0 || same_bytes(a, b, f->off2, f->len2));
}

size_t
config_changed_keys(const struct config *a, const struct config *b, char *out,
    size_t outlen)
{
	size_t n = 0, used = 0;
	bool full = outlen == 0;

	for (size_t i = 0; i < NKEYS; i++) {
		const char *key = config_keys[i].name;
		int w;

		if (same_value(a, b, key))
			continue;
		n++;
		if (full)
			continue;
		/* whole names only: a cut one would name another key */
		w = snprintf(out + used, outlen - used, "%s%s", used > 0 ? ", " : "", key);
		if (w > 0 && (size_t)w < outlen - used)
			used += (size_t)w;
		else
			full = true;
	}
	/* the sections, as one: their keys are the top's names again */
	if (a->nbackends != b->nbackends || memcmp(a->backends, b->backends,
	    a->nbackends * sizeof a->backends[0]) != 0) {
		int w;

		n++;
		if (!full) {
			w = snprintf(out + used, outlen - used, "%s[backend]",
			    used > 0 ? ", " : "");
			if (w > 0 && (size_t)w < outlen - used)
				used += (size_t)w;
		}
	}
	if (outlen > 0)
		out[used] = '\0';
	return n;
}

void
config_keep_restart_keys(struct config *next, const struct config *cur,
    void (*fn)(const char *key, const char *was, const char *now, void *arg),
    void *arg)
{
	for (size_t i = 0; i < NFIELDS; i++) {
		const struct config_field *f = &config_fields[i];

		/* each of them is one string */
		if (!f->restart || same_bytes(next, cur, f->off, f->len))
			continue;
		fn(f->key, (const char *)cur + f->off, (const char *)next + f->off, arg);
		memcpy((char *)next + f->off, (const char *)cur + f->off, f->len);
	}
}

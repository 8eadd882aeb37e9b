/*
 * fuzz_config.c — config_load_stream on any text (through fmemopen).
 *
 * A load that succeeds gives a configuration the daemon can trust without
 * checking again: every key in its range, the cross-key rules of
 * check_config, strings terminated and free of control characters; and
 * writing it back out as a file loads the very same configuration.  A load
 * that fails says why, starting with the file's name, and leaves the
 * caller's configuration as it was (a failed reload keeps the old one).
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"

#define NAME "fuzz.conf"

/* Terminated inside its array, printable (tabs allowed). */
static void
check_string(const char *s, size_t size)
{
	size_t i, len = strnlen(s, size);

	CHECK(len < size);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
	}
}

/* Canonical decimal from lo to hi: what getaddrinfo and logs will see. */
static void
check_port(const char *port, size_t size, unsigned long lo)
{
	char *end;
	unsigned long n;

	check_string(port, size);
	CHECK(port[0] >= '0' && port[0] <= '9');
	CHECK(port[0] != '0' || port[1] == '\0');
	n = strtoul(port, &end, 10);
	CHECK(*end == '\0' && n >= lo && n <= 65535);
}

static void
check_host(const char *host, size_t size, bool listen)
{
	struct in6_addr a6;
	char addr[256];
	size_t i, len;

	check_string(host, size);
	len = strlen(host);
	CHECK(len > 0);
	if (strcmp(host, "*") == 0) {
		CHECK(listen);
		return;
	}
	if (strchr(host, ':') != NULL) {
		/* an IPv6 address, maybe with a zone */
		len = strcspn(host, "%");
		memcpy(addr, host, len);
		addr[len] = '\0';
		CHECK(inet_pton(AF_INET6, addr, &a6) == 1);
		return;
	}
	for (i = 0; i < len; i++)
		CHECK(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "0123456789.-_", host[i]) != NULL);
}

static void
check_path(const char *path, size_t size, bool may_be_empty)
{
	check_string(path, size);
	CHECK(path[0] == '/' || (may_be_empty && path[0] == '\0'));
}

/* An upstream: where, how, as whom; a section's has a name of its own. */
static void
check_backend(const struct backend *b, bool top)
{
	size_t len = strnlen(b->name, sizeof(b->name));

	CHECK(len < sizeof(b->name));
	CHECK(top ? len == 0 : (len > 0 && strcmp(b->name, "default") != 0 &&
	    strspn(b->name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789_.-") == len));
	CHECK(top ? b->line == 0 : b->line > 0);
	check_host(b->host, sizeof(b->host), false);
	check_port(b->port, sizeof(b->port), 1);
	check_string(b->master_user, sizeof(b->master_user));
	check_string(b->master_password, sizeof(b->master_password));
	CHECK((b->master_user[0] == '\0') == (b->master_password[0] == '\0'));
	CHECK(b->tls == UPSTREAM_PLAIN || b->tls == UPSTREAM_STARTTLS ||
	    b->tls == UPSTREAM_TLS);
	check_path(b->ca_file, sizeof(b->ca_file), true);
	check_string(b->tls_name, sizeof(b->tls_name));
}

static void
check_loaded(const struct config *c)
{
	size_t i;

	CHECK(c->nlisten >= 1 && c->nlisten <= CONFIG_MAX_LISTEN);
	for (i = 0; i < c->nlisten; i++) {
		check_host(c->listen[i].host, sizeof(c->listen[i].host), true);
		check_port(c->listen[i].port, sizeof(c->listen[i].port), 0);
		CHECK(!c->listen[i].tls || c->tls_cert[0] != '\0');
	}
	check_backend(&c->upstream, true);
	check_path(c->route_map, sizeof(c->route_map), true);
	check_string(c->auth_http, sizeof(c->auth_http));
	CHECK(c->auth_http[0] == '\0' || strncmp(c->auth_http, "http://", 7) == 0);
	CHECK(c->route_map[0] == '\0' || c->auth_http[0] == '\0');
	CHECK(c->nauth_http_headers <= CONFIG_MAX_AUTH_HEADERS);
	CHECK(c->nauth_http_headers == 0 || c->auth_http[0] != '\0');
	for (i = 0; i < c->nauth_http_headers; i++) {
		check_string(c->auth_http_header[i], sizeof(c->auth_http_header[i]));
		CHECK(strchr(c->auth_http_header[i], ':') != NULL);
	}
	CHECK(c->auth_http_timeout >= 1 && c->auth_http_timeout <= 7 * 86400);
	CHECK(c->auth_http_cache <= 1000000);
	CHECK(c->auth_http_cache_ttl >= 1 && c->auth_http_cache_ttl <= 7 * 86400);
	CHECK(config_routing(c) == (c->route_map[0] != '\0' || c->auth_http[0] != '\0'));
	CHECK(c->nbackends <= CONFIG_MAX_BACKENDS);
	for (i = 0; i < c->nbackends; i++) {
		check_backend(&c->backends[i], false);
		CHECK(config_backend(c, c->backends[i].name) == &c->backends[i]);
	}
	CHECK(config_backend(c, "") == &c->upstream);
	CHECK(c->connect_timeout >= 1 && c->connect_timeout <= 7 * 86400);
	CHECK(c->client_idle_timeout >= 1 && c->client_idle_timeout <= 7 * 86400);
	CHECK(c->upstream_idle_timeout >= 1 && c->upstream_idle_timeout <= 7 * 86400);
	CHECK(c->log_level >= LOG_LEVEL_ERROR && c->log_level <= LOG_LEVEL_DEBUG);
	CHECK(c->max_line_length >= 1024 && c->max_line_length <= 16 * 1024 * 1024);
	CHECK(c->max_sessions >= 1 && c->max_sessions <= 1000000);
	CHECK(c->max_sessions_per_address <= c->max_sessions);
	/* thousandths, from 0 to 1000000: exactly what "%.3f" writes back */
	CHECK(c->connection_rate_per_address >= 0 &&
	    c->connection_rate_per_address <= 1000000);
	CHECK(c->connection_burst_per_address >= 1 &&
	    c->connection_burst_per_address <= 1000000);
	CHECK(c->max_messages >= 1 && c->max_messages <= 1000000);
	check_path(c->spool_dir, sizeof(c->spool_dir), false);
	CHECK(c->max_message_size >= 1);
	CHECK(c->max_message_size <= c->max_session_spool);
	CHECK(c->max_session_spool <= c->max_total_spool);
	check_path(c->tls_cert, sizeof(c->tls_cert), true);
	check_path(c->tls_key, sizeof(c->tls_key), true);
	CHECK((c->tls_cert[0] == '\0') == (c->tls_key[0] == '\0'));
	CHECK(c->require_tls == REQUIRE_TLS_AUTO || c->require_tls == REQUIRE_TLS_YES ||
	    c->require_tls == REQUIRE_TLS_NO);
	CHECK(c->require_tls != REQUIRE_TLS_YES || c->tls_cert[0] != '\0');
}

/*
 * "key = value" that reads back as v: quoted when it holds no '"',
 * otherwise bare when that keeps it whole; false when neither can.
 */
static bool
put(FILE *f, const char *key, const char *v)
{
	size_t len = strlen(v);
	const char *hash;

	if (len == 0)
		return true;	/* the default: not written */
	if (strchr(v, '"') == NULL) {
		fprintf(f, "%s = \"%s\"\n", key, v);
		return true;
	}
	if (v[0] == '"' || v[0] == ' ' || v[0] == '\t' || v[len - 1] == ' ' ||
	    v[len - 1] == '\t')
		return false;
	for (hash = strchr(v, '#'); hash != NULL; hash = strchr(hash + 1, '#'))
		if (hash[-1] == ' ' || hash[-1] == '\t')
			return false;
	fprintf(f, "%s = %s\n", key, v);
	return true;
}

static void
put_upstream(FILE *f, const struct backend *b)
{
	bool v6 = strchr(b->host, ':') != NULL;

	fprintf(f, "upstream = %s%s%s:%s\n", v6 ? "[" : "", b->host, v6 ? "]" : "",
	    b->port);
}

static bool
put_tls(FILE *f, const struct backend *b)
{
	static const char *const up_tls[] = { "plain", "starttls", "tls" };
	bool ok = true;

	fprintf(f, "upstream_tls = %s\n", up_tls[b->tls]);
	fprintf(f, "upstream_tls_verify = %s\n", b->tls_verify ? "yes" : "no");
	ok &= put(f, "upstream_ca_file", b->ca_file);
	ok &= put(f, "upstream_tls_name", b->tls_name);
	return ok;
}

/* The loaded configuration as a file; false when a value cannot be one. */
static bool
write_config(FILE *f, const struct config *c)
{
	static const char *const levels[] = { "error", "warning", "info", "debug" };
	static const char *const require[] = { "auto", "yes", "no" };
	bool ok = true;
	size_t i;

	for (i = 0; i < c->nlisten; i++) {
		const struct listen_conf *l = &c->listen[i];
		bool v6 = strchr(l->host, ':') != NULL;

		fprintf(f, "listen = %s%s%s:%s%s%s\n", v6 ? "[" : "", l->host,
		    v6 ? "]" : "", l->port, l->tls ? " tls" : "",
		    l->proxy_protocol ? " proxy_protocol" : "");
	}
	for (i = 0; i < c->proxy_protocol_from.n; i++) {
		const struct proxyproto_net *n = &c->proxy_protocol_from.net[i];
		char addr[INET6_ADDRSTRLEN];

		CHECK(inet_ntop(n->family, n->addr, addr, sizeof(addr)) != NULL);
		fprintf(f, "proxy_protocol_from = %s/%u\n", addr, n->prefix);
	}
	fprintf(f, "proxy_protocol_timeout = %u\n", c->proxy_protocol_timeout);
	if (c->metrics_host[0] != '\0') {
		bool v6 = strchr(c->metrics_host, ':') != NULL;

		fprintf(f, "metrics_listen = %s%s%s:%s\n", v6 ? "[" : "",
		    c->metrics_host, v6 ? "]" : "", c->metrics_port);
	}
	put_upstream(f, &c->upstream);
	fprintf(f, "connect_timeout = %u\n", c->connect_timeout);
	fprintf(f, "client_idle_timeout = %us\n", c->client_idle_timeout);
	fprintf(f, "upstream_idle_timeout = %u\n", c->upstream_idle_timeout);
	fprintf(f, "shutdown_timeout = %u\n", c->shutdown_timeout);
	fprintf(f, "rollback_settle = %u\n", c->rollback_settle);
	fprintf(f, "log_level = %s\n", levels[c->log_level]);
	fprintf(f, "log = %s   # comment\n", c->log_syslog ? "syslog" : "stderr");
	fprintf(f, "max_line_length = %zu\n", c->max_line_length);
	fprintf(f, "max_sessions = %u\n", c->max_sessions);
	fprintf(f, "max_sessions_per_address = %u\n", c->max_sessions_per_address);
	fprintf(f, "connection_rate_per_address = %.3f\n",
	    c->connection_rate_per_address);
	fprintf(f, "connection_burst_per_address = %u\n",
	    c->connection_burst_per_address);
	fprintf(f, "splice = %s\n", c->splice ? "yes" : "no");
	ok &= put(f, "spool_dir", c->spool_dir);
	fprintf(f, "max_message_size = %llu\n", (unsigned long long)c->max_message_size);
	fprintf(f, "max_messages = %u\n", c->max_messages);
	fprintf(f, "max_session_spool = %llu\n", (unsigned long long)c->max_session_spool);
	fprintf(f, "max_total_spool = %llu\n", (unsigned long long)c->max_total_spool);
	ok &= put(f, "master_user", c->upstream.master_user);
	ok &= put(f, "master_password", c->upstream.master_password);
	ok &= put(f, "tls_cert", c->tls_cert);
	ok &= put(f, "tls_key", c->tls_key);
	fprintf(f, "require_tls = %s\n", require[c->require_tls]);
	ok &= put_tls(f, &c->upstream);
	fprintf(f, "id_forward_address = %s\n", c->id_forward_address ? "yes" : "no");
	ok &= put(f, "user", c->user);
	ok &= put(f, "group", c->group);
	ok &= put(f, "pid_file", c->pid_file);
	ok &= put(f, "route_map", c->route_map);
	ok &= put(f, "auth_http", c->auth_http);
	fprintf(f, "route_oauth = %s\n", c->route_oauth ? "yes" : "no");
	ok &= put(f, "route_capabilities", c->route_capabilities);
	fprintf(f, "auth_http_timeout = %u\n", c->auth_http_timeout);
	for (i = 0; i < c->nauth_http_headers; i++)
		ok &= put(f, "auth_http_header", c->auth_http_header[i]);
	fprintf(f, "auth_http_cache = %u\n", c->auth_http_cache);
	fprintf(f, "auth_http_cache_ttl = %u\n", c->auth_http_cache_ttl);
	/* sections last: what follows one belongs to it */
	for (i = 0; i < c->nbackends; i++) {
		const struct backend *b = &c->backends[i];

		fprintf(f, "\n[backend %s]\n", b->name);
		put_upstream(f, b);
		ok &= put(f, "master_user", b->master_user);
		ok &= put(f, "master_password", b->master_password);
		ok &= put_tls(f, b);
	}
	return ok;
}

static void
check_round_trip(const struct config *c)
{
	struct config back;
	char *text = NULL, err[512];
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	bool ok;

	CHECK(f != NULL);
	ok = write_config(f, c);
	fclose(f);
	if (ok) {
		f = fmemopen(text, len, "r");
		CHECK(f != NULL);
		memset(&back, 0, sizeof(back));
		if (config_load_stream(f, NAME, &back, err, sizeof(err)) != 0) {
			fprintf(stderr, "%s\n--- did not load back:\n%s\n", err, text);
			CHECK(!"a loaded configuration loads back");
		}
		fclose(f);
		/* where each listen line stood is the one thing that may move */
		for (size_t i = 0; i < back.nlisten; i++)
			back.listen[i].line = c->listen[i].line;
		for (size_t i = 0; i < back.nbackends; i++)
			back.backends[i].line = c->backends[i].line;
		CHECK(memcmp(&back, c, sizeof(back)) == 0);
	}
	free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config c, before;
	char err[1024];
	char *copy;
	FILE *f;
	int rc;

	if (size == 0)
		return 0;	/* fmemopen needs a buffer */
	if ((copy = malloc(size)) == NULL)
		return 0;
	memcpy(copy, data, size);
	f = fmemopen(copy, size, "r");
	CHECK(f != NULL);
	memset(&c, 0x5a, sizeof(c));
	memcpy(&before, &c, sizeof(c));
	memset(err, 'x', sizeof(err));
	rc = config_load_stream(f, NAME, &c, err, sizeof(err));
	fclose(f);
	free(copy);
	CHECK(rc == 0 || rc == -1);
	CHECK(strnlen(err, sizeof(err)) < sizeof(err));
	if (rc == 0) {
		CHECK(err[0] == '\0');
		check_loaded(&c);
		check_round_trip(&c);
	} else {
		CHECK(strncmp(err, NAME ":", strlen(NAME) + 1) == 0);
		CHECK(strlen(err) > strlen(NAME) + 2);
		CHECK(memcmp(&c, &before, sizeof(c)) == 0);
	}
	return 0;
}

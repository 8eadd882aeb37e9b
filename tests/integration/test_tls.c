/*
 * test_tls.c — TLS on both sides through the real mappend binary: implicit
 * TLS and STARTTLS listeners, the STARTTLS injection bug, LOGINDISABLED
 * before TLS, upstream TLS and STARTTLS with a valid chain, a wrong name, an
 * untrusted CA and verification turned off, certificate reload on SIGHUP,
 * SASL exchanges and ID.  Certificates are generated per test run.
 */
#include <criterion/criterion.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static char certs[64];

static void
setup(void)
{
	snprintf(certs, sizeof(certs), "/tmp/mappend-certs.XXXXXX");
	cr_assert_not_null(mkdtemp(certs));
	make_certs(certs);
}

static void
teardown(void)
{
	char cmd[128];

	harness_teardown();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", certs);
	if (system(cmd) != 0)
		cr_log_warn("could not remove %s", certs);
}

TestSuite(tls, .init = setup, .fini = teardown, .timeout = 60);

static const char *
cert(const char *name)
{
	static char path[8][256];
	static int i;

	i = (i + 1) % 8;
	snprintf(path[i], sizeof(path[i]), "%s/%s", certs, name);
	return path[i];
}

/* A config fragment with the client-side certificate. */
static char *
server_conf(const char *more)
{
	char *conf = NULL;

	cr_assert_geq(asprintf(&conf, "listen = 127.0.0.1:0 tls\ntls_cert = %s\n"
	    "tls_key = %s\n%s", cert("server.pem"), cert("server.key"),
	    more != NULL ? more : ""), 0);
	return conf;
}

static void
login_and_select(struct imapc *c)
{
	free(imapc_ok(c, "L", "LOGIN test secret"));
	free(imapc_ok(c, "S", "SELECT INBOX"));
}

/* "XMOCK STATS" field by name */
static unsigned long
stat_of(const char *name)
{
	struct imapc d;
	char *r, *p, key[64];
	unsigned long v = 0;

	imapc_connect(&d, mock.port);
	free(imapc_line(&d));
	r = imapc_command(&d, "st", "XMOCK STATS");
	snprintf(key, sizeof(key), " %s=", name);
	p = strstr(r, key);
	cr_assert_not_null(p, "no %s in %s", name, r);
	v = strtoul(p + strlen(key), NULL, 10);
	free(r);
	imapc_close(&d);
	return v;
}

Test(tls, implicit_tls_listener)
{
	struct imapc c;
	char *conf = server_conf(NULL), *line;

	harness_start(NULL, conf);
	cr_assert_gt(px.tls_port, 0);
	imapc_connect(&c, px.tls_port);
	cr_assert(imapc_tls(&c, cert("ca.pem")), "TLS handshake failed");
	line = imapc_line(&c);
	cr_assert(line != NULL && strncmp(line, "* OK", 4) == 0, "%s", line);
	/* already TLS: no STARTTLS offered */
	cr_assert(strstr(line, "STARTTLS") == NULL, "%s", line);
	free(line);
	login_and_select(&c);
	imapc_close(&c);
	free(conf);
}

Test(tls, starttls_on_the_plain_listener)
{
	struct imapc c;
	char *conf = server_conf("require_tls = no\n"), *line, *r;

	harness_start(NULL, conf);
	imapc_connect(&c, px.port);
	line = imapc_line(&c);
	cr_assert(strstr(line, " STARTTLS") != NULL, "%s", line);
	free(line);
	free(imapc_ok(&c, "a", "STARTTLS"));
	cr_assert(imapc_tls(&c, cert("ca.pem")), "TLS handshake failed");
	/* RFC 3501: the client asks again; STARTTLS is gone */
	r = imapc_command(&c, "b", "CAPABILITY");
	cr_assert(strstr(r, "STARTTLS") == NULL, "%s", r);
	cr_assert(strstr(r, " MULTIAPPEND") != NULL, "%s", r);
	free(r);
	r = imapc_command(&c, "c", "STARTTLS");
	cr_assert(strncmp(last_line(r), "c BAD", 5) == 0, "%s", r);
	free(r);
	login_and_select(&c);
	imapc_close(&c);
	/* the upstream never saw the client's STARTTLS */
	cr_assert_eq(stat_of("starttls"), 0);
	free(conf);
}

Test(tls, starttls_injection_is_not_executed)
{
	struct imapc c;
	char *conf = server_conf("require_tls = no\n"), *line, *r;

	harness_start(NULL, conf);
	imapc_connect(&c, px.port);
	free(imapc_line(&c));
	/* a man in the middle appends a command to the client's STARTTLS */
	imapc_send(&c, "a STARTTLS\r\nb LOGIN test secret\r\nx SELECT INBOX\r\n");
	line = imapc_line(&c);
	cr_assert_str_eq(line, "a OK Begin TLS negotiation now");
	free(line);
	cr_assert(imapc_tls(&c, cert("ca.pem")), "TLS handshake failed");
	r = imapc_ok(&c, "c", "NOOP");
	cr_assert(strstr(r, "b OK") == NULL && strstr(r, "x OK") == NULL, "%s", r);
	free(r);
	r = imapc_command(&c, "d", "SELECT INBOX");
	/* still not logged in: the injected LOGIN never ran */
	cr_assert(!tagged_ok(r, "d"), "%s", r);
	free(r);
	imapc_close(&c);
	cr_assert_eq(stat_of("logins"), 0);
	free(conf);
}

Test(tls, plaintext_login_refused_before_tls)
{
	struct imapc c;
	char *conf = server_conf("require_tls = yes\n"), *line, *r;

	harness_start(NULL, conf);
	imapc_connect(&c, px.port);
	line = imapc_line(&c);
	cr_assert(strstr(line, " LOGINDISABLED") != NULL, "%s", line);
	cr_assert(strstr(line, " STARTTLS") != NULL, "%s", line);
	cr_assert(strstr(line, "AUTH=PLAIN") == NULL, "%s", line);
	free(line);
	r = imapc_command(&c, "a", "LOGIN test secret");
	cr_assert(strncmp(last_line(r), "a NO [PRIVACYREQUIRED]", 22) == 0, "%s", r);
	free(r);
	r = imapc_command(&c, "b", "AUTHENTICATE PLAIN AHRlc3QAc2VjcmV0");
	cr_assert(strncmp(last_line(r), "b NO [PRIVACYREQUIRED]", 22) == 0, "%s", r);
	free(r);
	r = imapc_command(&c, "c", "STARTTLS");
	free(r);
	cr_assert(imapc_tls(&c, cert("ca.pem")));
	r = imapc_command(&c, "d", "CAPABILITY");
	cr_assert(strstr(r, "LOGINDISABLED") == NULL, "%s", r);
	cr_assert(strstr(r, "AUTH=PLAIN") != NULL, "%s", r);
	free(r);
	login_and_select(&c);
	imapc_close(&c);
	cr_assert_eq(stat_of("logins"), 1);
	free(conf);
}

Test(tls, loopback_listener_allows_plaintext_by_default)
{
	struct imapc c;
	char *conf = server_conf(NULL), *line;

	harness_start(NULL, conf);
	imapc_connect(&c, px.port);
	line = imapc_line(&c);
	cr_assert(strstr(line, "LOGINDISABLED") == NULL, "%s", line);
	free(line);
	login_and_select(&c);
	imapc_close(&c);
	free(conf);
}

/* mappend in front of the mock's implicit TLS port with its certificate */
static void
start_tls_upstream(const char *leaf, const char *more)
{
	char key[128], *conf = NULL;
	const char *args[] = { "--tls-cert", NULL, "--tls-key", NULL, "--listen-tls",
		"127.0.0.1:0", NULL };

	snprintf(key, sizeof(key), "%.*s.key", (int)(strlen(leaf) - 4), leaf);
	args[1] = cert(leaf);
	args[3] = cert(key);
	mock_start(&mock, args);
	cr_assert_gt(mock.tls_port, 0);
	cr_assert_geq(asprintf(&conf, "upstream_tls = tls\nupstream_ca_file = %s\n"
	    "upstream_tls_name = localhost\n%s", cert("ca.pem"), more), 0);
	proxy_start(&px, mock.tls_port, conf);
	free(conf);
}

Test(tls, upstream_tls_with_a_valid_chain)
{
	struct imapc c;

	start_tls_upstream("server.pem", "");
	imapc_connect(&c, px.port);
	free(imapc_line(&c));
	login_and_select(&c);
	imapc_close(&c);
	cr_assert_eq(stat_of("tls"), 1);
}

static void
expect_refused(const char *why)
{
	struct imapc c;
	char *line, *log;
	unsigned i;

	imapc_connect(&c, px.port);
	line = imapc_line(&c);
	cr_assert(line != NULL && strncmp(line, "* BYE", 5) == 0, "%s", line);
	free(line);
	imapc_close(&c);
	for (i = 0; i < 50; i++) {
		log = proxy_log(&px);
		if (strstr(log, why) != NULL)
			break;
		free(log);
		log = NULL;
		usleep(20 * 1000);
	}
	cr_assert_not_null(log, "the log does not say \"%s\"", why);
	free(log);
}

Test(tls, upstream_with_a_wrong_name_is_refused)
{
	start_tls_upstream("wrong.pem", "");
	expect_refused("certificate not accepted: hostname mismatch");
}

Test(tls, upstream_with_an_untrusted_ca_is_refused)
{
	start_tls_upstream("untrusted.pem", "");
	expect_refused("certificate not accepted: unable to get local issuer certificate");
}

Test(tls, upstream_verification_turned_off)
{
	struct imapc c;
	char *log;

	start_tls_upstream("untrusted.pem", "upstream_tls_verify = no\n");
	imapc_connect(&c, px.port);
	free(imapc_line(&c));
	login_and_select(&c);
	imapc_close(&c);
	log = proxy_log(&px);
	cr_assert(strstr(log, "warning: upstream_tls_verify = no") != NULL, "%s", log);
	free(log);
}

Test(tls, upstream_starttls)
{
	const char *args[] = { "--tls-cert", NULL, "--tls-key", NULL, "--require-tls", NULL };
	struct imapc c;
	char *conf = NULL, *line, *r;

	args[1] = cert("server.pem");
	args[3] = cert("server.key");
	cr_assert_geq(asprintf(&conf, "upstream_tls = starttls\nupstream_ca_file = %s\n"
	    "upstream_tls_name = localhost\n", cert("ca.pem")), 0);
	harness_start(args, conf);
	imapc_connect(&c, px.port);
	line = imapc_line(&c);
	/* the upstream's list before TLS is not passed on */
	cr_assert(strncmp(line, "* OK", 4) == 0 && strstr(line, "LOGINDISABLED") == NULL,
	    "%s", line);
	free(line);
	r = imapc_command(&c, "a", "CAPABILITY");
	cr_assert(strstr(r, "LOGINDISABLED") == NULL && strstr(r, "AUTH=PLAIN") != NULL,
	    "%s", r);
	free(r);
	login_and_select(&c);
	imapc_close(&c);
	cr_assert_eq(stat_of("starttls"), 1);
	free(conf);
}

Test(tls, rollback_over_a_tls_upstream)
{
	struct imapc c, d;
	char *r;

	start_tls_upstream("server.pem", "");
	imapc_connect(&d, mock.port);
	free(imapc_line(&d));
	free(imapc_command(&d, "f", "XMOCK FAULT APPEND-NO 2"));
	imapc_connect(&c, px.port);
	free(imapc_line(&c));
	r = imapc_command(&c, "L", "LOGIN test secret");
	free(r);
	imapc_send(&c, "a APPEND INBOX {3+}\r\none {3+}\r\ntwo {5+}\r\nthree\r\n");
	r = imapc_until_tagged(&c, "a", NULL);
	cr_assert(strncmp(last_line(r), "a NO", 4) == 0, "%s", r);
	free(r);
	/* the second connection removed message 1 over TLS */
	r = imapc_command(&d, "l", "LOGIN test secret");
	free(r);
	r = imapc_command(&d, "s", "STATUS INBOX (MESSAGES)");
	cr_assert(strstr(r, "MESSAGES 0") != NULL, "%s", r);
	free(r);
	cr_assert_eq(stat_of("uidexpunge"), 1);
	imapc_close(&c);
	imapc_close(&d);
}

/* The serial number of the certificate the proxy presents. */
static long
served_serial(void)
{
	struct imapc c;
	X509 *x;
	long serial;

	imapc_connect(&c, px.tls_port);
	cr_assert(imapc_tls(&c, cert("ca.pem")));
	x = SSL_get1_peer_certificate(c.ssl);
	cr_assert_not_null(x);
	serial = ASN1_INTEGER_get(X509_get_serialNumber(x));
	X509_free(x);
	imapc_close(&c);
	return serial;
}

static long
file_serial(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x;
	long serial;

	cr_assert_not_null(f);
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	cr_assert_not_null(x);
	serial = ASN1_INTEGER_get(X509_get_serialNumber(x));
	X509_free(x);
	return serial;
}

static void
copy_file(const char *from, const char *to)
{
	char cmdline[512];

	snprintf(cmdline, sizeof(cmdline), "cp '%s' '%s'", from, to);
	cr_assert_eq(system(cmdline), 0);
}

Test(tls, certificate_reload_on_sighup)
{
	struct imapc old;
	char *conf = NULL, *log;
	unsigned i;

	/* the configured paths hold server.pem first */
	copy_file(cert("server.pem"), cert("live.pem"));
	copy_file(cert("server.key"), cert("live.key"));
	cr_assert_geq(asprintf(&conf, "listen = 127.0.0.1:0 tls\ntls_cert = %s\n"
	    "tls_key = %s\n", cert("live.pem"), cert("live.key")), 0);
	harness_start(NULL, conf);
	cr_assert_eq(served_serial(), file_serial(cert("server.pem")));
	/* a session that stays open across the reloads */
	imapc_connect(&old, px.tls_port);
	cr_assert(imapc_tls(&old, cert("ca.pem")));
	free(imapc_line(&old));

	copy_file(cert("server2.pem"), cert("live.pem"));
	copy_file(cert("server2.key"), cert("live.key"));
	kill(px.pid, SIGHUP);
	for (i = 0; i < 100 && served_serial() != file_serial(cert("server2.pem")); i++)
		usleep(20 * 1000);
	cr_assert_eq(served_serial(), file_serial(cert("server2.pem")));

	/* a broken certificate is refused; the one in use stays */
	copy_file(cert("ca.key"), cert("live.pem"));
	kill(px.pid, SIGHUP);
	for (i = 0; i < 100; i++) {
		log = proxy_log(&px);
		if (strstr(log, "reload refused: tls_cert ") != NULL)
			break;
		free(log);
		log = NULL;
		usleep(20 * 1000);
	}
	cr_assert_not_null(log, "no log line about the refused certificate");
	free(log);
	cr_assert_eq(served_serial(), file_serial(cert("server2.pem")));

	free(imapc_ok(&old, "n", "NOOP"));
	imapc_close(&old);
	free(conf);
}

Test(tls, xoauth2_through_the_proxy)
{
	const char *args[] = { "--sasl-ir", NULL };
	struct imapc c;
	char *r;
	/* user=test^Aauth=Bearer mock-token^A^A */
	const char *good = "dXNlcj10ZXN0AWF1dGg9QmVhcmVyIG1vY2stdG9rZW4BAQ==";
	/* user=test^Aauth=Bearer wrong^A^A */
	const char *bad = "dXNlcj10ZXN0AWF1dGg9QmVhcmVyIHdyb25nAQE=";

	harness_start(args, NULL);
	imapc_connect(&c, px.port);
	free(imapc_line(&c));
	/* a refused token: the server's error comes as a continuation, the
	 * client answers with an empty line */
	imapc_send(&c, "a AUTHENTICATE XOAUTH2 %s\r\n", bad);
	imapc_expect_plus(&c);
	imapc_send(&c, "\r\n");
	r = imapc_until_tagged(&c, "a", NULL);
	cr_assert(strncmp(last_line(r), "a NO", 4) == 0, "%s", r);
	free(r);
	/* and a good one */
	free(imapc_ok(&c, "b", "AUTHENTICATE XOAUTH2 %s", good));
	free(imapc_ok(&c, "s", "SELECT INBOX"));
	imapc_close(&c);
}

Test(tls, id_carries_the_client_address)
{
	char logfile[128], *conf, *r, *text = NULL;
	const char *args[] = { "--log", logfile, NULL };
	struct imapc c;
	FILE *f;
	size_t n = 0;

	snprintf(logfile, sizeof(logfile), "%s/mock.log", certs);
	conf = strdup("id_forward_address = yes\n");
	harness_start(args, conf);
	imapc_connect(&c, px.port);
	free(imapc_line(&c));
	/* the client's own ID passes through too, and the answer to ours
	 * never reaches it */
	r = imapc_ok(&c, "i", "ID (\"name\" \"test-client\")");
	cr_assert_eq(count_substr(r, strlen(r), "* ID "), 1, "%s", r);
	free(r);
	imapc_close(&c);
	f = fopen(logfile, "r");
	cr_assert_not_null(f);
	cr_assert_geq(getdelim(&text, &n, '\0', f), 0);
	fclose(f);
	cr_assert(strstr(text, "ID (\"x-originating-ip\" \"127.0.0.1\" "
	    "\"x-originating-port\" \"") != NULL, "%s", text);
	cr_assert(strstr(text, "ID (\"name\" \"test-client\")") != NULL, "%s", text);
	free(text);
	free(conf);
}

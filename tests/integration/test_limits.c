/*
 * test_limits.c — admission with the real mappend in front of the mock:
 * max_sessions_per_address (a third connection from 127.0.0.1 refused with
 * its BYE while 127.0.0.2 still gets in, and one more once a session
 * ended), max_sessions for all, connection_rate_per_address (a burst, a
 * refusal, a token back a second later), and a burst of 500 refused
 * connections written to the log as two lines, the second at exit; behind
 * a load balancer, the address its PROXY header names is the one counted.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "proxyproto.h"

TestSuite(limits, .fini = harness_teardown, .timeout = 60);

#define BYE_ADDRESS "* BYE Too many connections from your address, try again later"
#define BYE_ALL "* BYE Too many connections, try again later"
#define BYE_FAST "* BYE Too many new connections from your address, try again later"

/* The first line mappend sends: the upstream's greeting or a BYE. */
static char *
first_line(struct imapc *c)
{
	char *line = imapc_line(c);

	cr_assert_not_null(line, "no first line from mappend");
	return line;
}

static void
expect_greeting(struct imapc *c)
{
	char *line = first_line(c);

	cr_assert(strncmp(line, "* OK", 4) == 0, "expected a greeting: %s", line);
	free(line);
}

/* A BYE with this text, then the connection closed. */
static void
expect_bye(struct imapc *c, const char *bye)
{
	char *line = first_line(c);

	cr_assert_str_eq(line, bye);
	free(line);
	cr_assert(imapc_wait_closed(c), "not closed after the BYE");
}

static void
connect_from(struct imapc *c, const char *source)
{
	imapc_connect_from(c, px.port, source);
}

/* Lines of text holding needle. */
static size_t
lines_with(const char *text, const char *needle)
{
	size_t n = 0;

	for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/* SIGTERM, a clean exit (sanitizers quiet), and its whole log, malloc'ed;
 * the temp dir is removed. */
static char *
stop_and_read_log(void)
{
	char cmd[400], *log;
	int status;

	kill(px.pid, SIGTERM);
	cr_assert_eq(waitpid(px.pid, &status, 0), px.pid);
	px.pid = 0;
	log = proxy_log(&px);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "status %d, log:\n%s", status, log);
	cr_assert(strstr(log, "Sanitizer") == NULL &&
	    strstr(log, "runtime error") == NULL, "%s", log);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", px.dir);
	if (system(cmd) != 0)
		cr_log_warn("could not remove %s", px.dir);
	return log;
}

Test(limits, sessions_per_address)
{
	struct imapc a1, a2, a3, b1, again;
	bool in = false;

	harness_start(NULL, "max_sessions_per_address = 2\n");
	connect_from(&a1, "127.0.0.1");
	expect_greeting(&a1);
	connect_from(&a2, "127.0.0.1");
	expect_greeting(&a2);
	connect_from(&a3, "127.0.0.1");
	expect_bye(&a3, BYE_ADDRESS);
	imapc_close(&a3);
	/* another address of the loopback network has its own count */
	connect_from(&b1, "127.0.0.2");
	expect_greeting(&b1);
	/* the first sessions still work */
	free(imapc_ok(&a1, "a", "NOOP"));
	free(imapc_ok(&b1, "b", "NOOP"));

	/* one ends: one more gets in, once mappend has seen it end */
	imapc_close(&a1);
	for (int i = 0; i < 250 && !in; i++) {
		char *line;

		connect_from(&again, "127.0.0.1");
		line = first_line(&again);
		in = strncmp(line, "* OK", 4) == 0;
		if (!in) {
			cr_assert_str_eq(line, BYE_ADDRESS);
			imapc_close(&again);
			usleep(20 * 1000);
		}
		free(line);
	}
	cr_assert(in, "no session from 127.0.0.1 after one of two ended");
	free(imapc_ok(&again, "c", "NOOP"));
	/* and it counts again: two open */
	connect_from(&a3, "127.0.0.1");
	expect_bye(&a3, BYE_ADDRESS);
	imapc_close(&a3);
	imapc_close(&again);
	imapc_close(&a2);
	imapc_close(&b1);
}

Test(limits, max_sessions_for_all)
{
	struct imapc a, b, c;

	harness_start(NULL, "max_sessions = 2\n");
	connect_from(&a, "127.0.0.1");
	expect_greeting(&a);
	connect_from(&b, "127.0.0.2");
	expect_greeting(&b);
	connect_from(&c, "127.0.0.3");
	expect_bye(&c, BYE_ALL);
	imapc_close(&c);
	imapc_close(&a);
	imapc_close(&b);
}

Test(limits, connection_rate)
{
	struct imapc c[4], late[2];

	harness_start(NULL, "connection_rate_per_address = 1\n"
	    "connection_burst_per_address = 3\n");
	/* connected before any is read: mappend admits them back to back */
	for (int i = 0; i < 4; i++)
		connect_from(&c[i], "127.0.0.1");
	for (int i = 0; i < 3; i++)
		expect_greeting(&c[i]);
	expect_bye(&c[3], BYE_FAST);
	/* another address has its own bucket */
	connect_from(&late[0], "127.0.0.2");
	expect_greeting(&late[0]);
	imapc_close(&late[0]);

	/* a token comes back in a second: one more gets in, the next not */
	usleep(1200 * 1000);
	connect_from(&late[0], "127.0.0.1");
	connect_from(&late[1], "127.0.0.1");
	expect_greeting(&late[0]);
	expect_bye(&late[1], BYE_FAST);
	for (int i = 0; i < 4; i++)
		imapc_close(&c[i]);
	imapc_close(&late[0]);
	imapc_close(&late[1]);
}

Test(limits, refusals_logged_aggregated)
{
	struct imapc kept, c;
	char *log;
	const char *started;

	harness_start(NULL, "max_sessions_per_address = 1\n");
	connect_from(&kept, "127.0.0.1");
	expect_greeting(&kept);
	for (int i = 0; i < 500; i++) {
		connect_from(&c, "127.0.0.1");
		expect_bye(&c, BYE_ADDRESS);
		imapc_close(&c);
	}
	/* while it runs: the first refusal, at once, and nothing more */
	log = proxy_log(&px);
	cr_assert_eq(lines_with(log, "warning: refused"), 1, "%s", log);
	cr_assert_eq(lines_with(log, "warning: refused a connection from 127.0.0.1: "
	    "it has 1 session, the configured maximum per address "
	    "(max_sessions_per_address); more such refusals are summed up every "
	    "60 s\n"), 1, "%s", log);
	free(log);
	imapc_close(&kept);

	/* at exit the open window is summed up: two lines for 500 refusals */
	log = stop_and_read_log();
	cr_assert_eq(lines_with(log, "warning: refused"), 2, "%s", log);
	cr_assert(strstr(log, "warning: refused 499 more connections in the last ") !=
	    NULL, "%s", log);
	cr_assert(strstr(log, " s: max_sessions_per_address (most from 127.0.0.1: "
	    "499)\n") != NULL, "%s", log);
	/* and no other warning since start */
	started = strstr(log, "mappend started");
	cr_assert_not_null(started);
	cr_assert_eq(lines_with(started, "warning:"), 2, "%s", started);
	/* nor any other line per refused connection above debug (the harness
	 * logs debug lines): the kept session's own and a few of the daemon's */
	cr_assert_lt(lines_with(started, "]: info: "), 10, "%s", started);
	free(log);
}

/* A PROXY v2 header naming client, sent on a fresh connection to px. */
static void
connect_proxied(struct imapc *c, const char *client)
{
	struct proxyproto_addr a = { .version = 2, .command = PROXYPROTO_PROXY,
	    .len = sizeof(struct sockaddr_in) };
	struct sockaddr_in *src = (struct sockaddr_in *)&a.src;
	struct sockaddr_in *dst = (struct sockaddr_in *)&a.dst;
	unsigned char hdr[PROXYPROTO_MAX];
	int n;

	src->sin_family = dst->sin_family = AF_INET;
	cr_assert_eq(inet_pton(AF_INET, client, &src->sin_addr), 1);
	src->sin_port = htons(40000);
	dst->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	dst->sin_port = htons((uint16_t)px.port);
	n = proxyproto_build(&a, 2, hdr, sizeof(hdr));
	cr_assert_gt(n, 0);
	imapc_connect(c, px.port);
	imapc_send_raw(c, hdr, (size_t)n);
}

/* Behind a load balancer every connection comes from its address: the
 * limit counts the address the PROXY header names. */
Test(limits, counted_by_the_address_a_proxy_header_names)
{
	struct imapc a, b, c;
	char *log;

	harness_start(NULL, "listen = 127.0.0.1:0 proxy_protocol\n"
	    "proxy_protocol_from = 127.0.0.0/8\n"
	    "max_sessions_per_address = 1\n");
	/* the generated config's own listener comes first: px.port is it;
	 * the log names the second */
	log = proxy_log(&px);
	{
		const char *p = strstr(log, ", PROXY protocol header first");
		const char *q = p;

		cr_assert_not_null(p, "%s", log);
		while (q > log && q[-1] != ':')
			q--;
		px.port = atoi(q);
	}
	free(log);
	connect_proxied(&a, "192.0.2.7");
	expect_greeting(&a);
	connect_proxied(&b, "192.0.2.7");
	expect_bye(&b, BYE_ADDRESS);
	connect_proxied(&c, "192.0.2.8");
	expect_greeting(&c);
	log = proxy_log(&px);
	cr_assert(strstr(log, "connection from 192.0.2.7:40000 via 127.0.0.1:") != NULL,
	    "%s", log);
	cr_assert(strstr(log, "refused a connection from 192.0.2.7") != NULL, "%s", log);
	free(log);
	imapc_close(&a);
	imapc_close(&b);
	imapc_close(&c);
}

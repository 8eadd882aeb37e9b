/*
 * test_routing.c — per-user routing through the real mappend: two mock
 * upstreams, the users routed by a map file or by an auth_http endpoint
 * (a small HTTP server of this file's, speaking nginx's protocol), every
 * login kind, a failed login routed anew, a route changed by SIGHUP, a
 * backend down, the endpoint refusing, down and slow, and a MULTIAPPEND
 * and its rollback on each backend.  Which upstream a session reached is
 * read from the mocks' own counters (XMOCK STATS, directly).
 */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "faultrelay.h"
#include "harness.h"
#include "harness_haproxy.h"

/* Two upstreams; harness's mock is the first. */
static struct mock second;
static char map_path[300];

static void
stop_second(void)
{
	mock_stop(&second);
	harness_teardown();
	if (map_path[0] != '\0')
		unlink(map_path);
}


static const char *const users[] = {
	"--user", "alice:pa", "--user", "bob@b.example:pb", "--user",
	"carol:pc", "--user", "test:secret", "--master", "boss:pw", NULL
};

/* A counter of XMOCK STATS ("logins=", "appends=") of the mock on port,
 * read on a connection of its own (which logs in too). */
static unsigned long
mock_stat(int port, const char *key)
{
	struct imapc d;
	char *r, *p;
	unsigned long n;

	imapc_connect_login(&d, port, "test", "secret");
	r = imapc_command(&d, "s", "XMOCK STATS");
	p = strstr(r, key);
	cr_assert_not_null(p, "%s", r);
	n = strtoul(p + strlen(key), NULL, 10);
	free(r);
	imapc_close(&d);
	return n;
}

/* Logins the upstream on port saw so far, but for these probes' own. */
static unsigned
logins(int port)
{
	static int probed_port[4];
	static unsigned probes[4];
	unsigned i;

	for (i = 0; i < 3 && probed_port[i] != 0 && probed_port[i] != port; i++)
		;
	probed_port[i] = port;
	probes[i]++;
	return (unsigned)mock_stat(port, "logins=") - probes[i];
}

static void
write_map(const char *text)
{
	FILE *f = fopen(map_path, "w");

	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

/* Both mocks, the map (a format: %d is the second's port), mappend routing
 * by it; "bee" is the second. */
static void
start_map(const char *map_fmt)
{
	char conf[1024], map[1024];

	mock_start(&second, users);
	mock_start(&mock, users);
	snprintf(map_path, sizeof(map_path), "/tmp/mappend-routes.%d", (int)getpid());
	snprintf(map, sizeof(map), map_fmt, second.port);
	write_map(map);
	snprintf(conf, sizeof(conf), "route_map = %s\nroute_capabilities = IDLE "
	    "UIDPLUS\n[backend bee]\nupstream = 127.0.0.1:%d\n", map_path,
	    second.port);
	proxy_start(&px, mock.port, conf);
}

/* The client's login (a command line) gets a NO holding want, then BYE and
 * the close. */
static void
login_refused_with_bye(struct imapc *c, const char *login, const char *want)
{
	char *r, *line;

	imapc_send(c, "l %s\r\n", login);
	r = imapc_until_tagged(c, "l", NULL);
	cr_assert(r != NULL && strstr(r, want) != NULL, "%s", r);
	free(r);
	line = imapc_line(c);
	cr_assert(line != NULL && strncmp(line, "* BYE", 5) == 0, "%s", line);
	free(line);
	cr_assert(imapc_wait_closed(c));
}

/* A session through port, greeted by mappend's front. */
static void
connect_front_at(struct imapc *c, int port)
{
	char *g;

	imapc_connect(c, port);
	g = imapc_line(c);
	cr_assert_not_null(g);
	cr_assert(strncmp(g, "* OK [CAPABILITY IMAP4rev1 ", 27) == 0, "%s", g);
	cr_assert_not_null(strstr(g, " AUTH=PLAIN"), "%s", g);
	free(g);
}

static void
connect_front(struct imapc *c)
{
	connect_front_at(c, px.port);
}

static void
login_ok(struct imapc *c, const char *user, const char *pass)
{
	char *r = imapc_command(c, "l", "LOGIN \"%s\" \"%s\"", user, pass);

	cr_assert(tagged_ok(r, "l"), "%s", r);
	free(r);
}

Test(routing, map_sends_each_user_to_its_upstream)
{
	struct imapc c;
	char *r;

	start_map("# users of the second server\n@b.example bee\n"
	    "carol 127.0.0.1:%d\n* default\n");
	connect_front(&c);
	r = imapc_command(&c, "c", "CAPABILITY");
	cr_assert(tagged_ok(r, "c"), "%s", r);
	cr_assert_not_null(strstr(r, " MULTIAPPEND AUTH=PLAIN AUTH=LOGIN IDLE UIDPLUS"),
	    "the front's own and route_capabilities: %s", r);
	free(r);
	r = imapc_command(&c, "n", "NOOP");
	cr_assert(tagged_ok(r, "n"), "%s", r);
	free(r);
	r = imapc_command(&c, "x", "SELECT INBOX");
	cr_assert(strstr(r, "x BAD") != NULL, "%s", r);
	free(r);
	login_ok(&c, "bob@b.example", "pb");
	r = imapc_command(&c, "s", "SELECT INBOX");
	cr_assert(tagged_ok(r, "s"), "%s", r);
	free(r);
	imapc_close(&c);
	cr_assert_eq(logins(second.port), 1);
	cr_assert_eq(logins(mock.port), 0);

	connect_front(&c);
	login_ok(&c, "alice", "pa");
	imapc_close(&c);
	cr_assert_eq(logins(mock.port), 1, "the default upstream");

	connect_front(&c);
	login_ok(&c, "carol", "pc");
	imapc_close(&c);
	cr_assert_eq(logins(second.port), 2, "an address of the map's");
}

Test(routing, every_login_kind)
{
	struct imapc c;
	char *r, *line;

	start_map("@b.example bee\n");
	/* LOGIN with a synchronizing literal and a {n+} */
	connect_front(&c);
	imapc_send(&c, "l LOGIN {13}\r\n");
	line = imapc_line(&c);
	cr_assert(line != NULL && line[0] == '+', "%s", line);
	free(line);
	imapc_send(&c, "bob@b.example {2+}\r\npb\r\n");
	r = imapc_until_tagged(&c, "l", NULL);
	cr_assert(tagged_ok(r, "l"), "%s", r);
	free(r);
	imapc_close(&c);
	/* AUTHENTICATE PLAIN with an initial response: "\0bob@b.example\0pb" */
	connect_front(&c);
	r = imapc_command(&c, "a", "AUTHENTICATE PLAIN AGJvYkBiLmV4YW1wbGUAcGI=");
	cr_assert(tagged_ok(r, "a"), "%s", r);
	cr_assert(r[0] != '+' && strstr(r, "\n+") == NULL,
	    "the upstream's \"+\" reached the client: %s", r);
	free(r);
	imapc_close(&c);
	/* ...and after a "+" */
	connect_front(&c);
	imapc_send(&c, "a AUTHENTICATE PLAIN\r\n");
	line = imapc_line(&c);
	cr_assert(line != NULL && line[0] == '+', "%s", line);
	free(line);
	imapc_send(&c, "AGJvYkBiLmV4YW1wbGUAcGI=\r\n");
	r = imapc_until_tagged(&c, "a", NULL);
	cr_assert(tagged_ok(r, "a"), "%s", r);
	cr_assert(r[0] != '+' && strstr(r, "\n+") == NULL,
	    "the upstream's \"+\" reached the client: %s", r);
	free(r);
	imapc_close(&c);
	/* AUTHENTICATE LOGIN: the user, then the password */
	connect_front(&c);
	imapc_send(&c, "a AUTHENTICATE LOGIN\r\n");
	free(imapc_line(&c));
	imapc_send(&c, "Ym9iQGIuZXhhbXBsZQ==\r\n");
	free(imapc_line(&c));
	imapc_send(&c, "cGI=\r\n");
	r = imapc_until_tagged(&c, "a", NULL);
	cr_assert(tagged_ok(r, "a"), "%s", r);
	free(r);
	imapc_close(&c);
	/* a master user logs in for bob: routed by the authorization
	 * identity, whose mailbox it opens ("bob@b.example\0boss\0pw") */
	connect_front(&c);
	r = imapc_command(&c, "a", "AUTHENTICATE PLAIN Ym9iQGIuZXhhbXBsZQBib3NzAHB3");
	cr_assert(tagged_ok(r, "a"), "%s", r);
	free(r);
	imapc_close(&c);
	cr_assert_eq(logins(second.port), 5);
	cr_assert_eq(logins(mock.port), 0);
	/* a mechanism the front cannot read */
	connect_front(&c);
	r = imapc_command(&c, "a", "AUTHENTICATE XOAUTH2 dXNlcj0=");
	cr_assert(strstr(r, "a NO [CANNOT]") != NULL, "%s", r);
	free(r);
	imapc_close(&c);
}

/* OAuth with route_oauth: the user comes from XOAUTH2's user= or
 * OAUTHBEARER's a=, and the client's message goes upstream as it came. */
Test(routing, oauth_mechanisms)
{
	const char *args[] = { "--user", "bob@b.example:pb", "--user", "test:secret",
	    "--oauth-token", "tok123", NULL };
	struct imapc c;
	char conf[512], *r, *line;
	FILE *mf;

	mock_start(&second, args);
	mock_start(&mock, args);
	snprintf(map_path, sizeof(map_path), "/tmp/mappend-routes.%d", (int)getpid());
	mf = fopen(map_path, "w");
	cr_assert_not_null(mf);
	fputs("@b.example bee\n", mf);
	fclose(mf);
	snprintf(conf, sizeof(conf), "route_map = %s\nroute_oauth = yes\n"
	    "[backend bee]\nupstream = 127.0.0.1:%d\n", map_path, second.port);
	proxy_start(&px, mock.port, conf);
	connect_front(&c);
	r = imapc_command(&c, "c", "CAPABILITY");
	cr_assert_not_null(strstr(r, " AUTH=XOAUTH2 AUTH=OAUTHBEARER"), "%s", r);
	free(r);
	/* user=bob@b.example, auth=Bearer tok123 */
	r = imapc_command(&c, "a", "AUTHENTICATE XOAUTH2 "
	    "dXNlcj1ib2JAYi5leGFtcGxlAWF1dGg9QmVhcmVyIHRvazEyMwEB");
	cr_assert(tagged_ok(r, "a"), "%s", r);
	free(r);
	imapc_close(&c);
	cr_assert_eq(logins(second.port), 1);
	/* a wrong token: the server's error challenge, an empty answer, NO */
	connect_front(&c);
	imapc_send(&c, "a AUTHENTICATE XOAUTH2 "
	    "dXNlcj1ib2JAYi5leGFtcGxlAWF1dGg9QmVhcmVyIHdyb25nAQE=\r\n");
	line = imapc_line(&c);
	cr_assert(line != NULL && line[0] == '+', "%s", line);
	free(line);
	imapc_send(&c, "\r\n");
	r = imapc_until_tagged(&c, "a", NULL);
	cr_assert(r != NULL && strstr(r, "a NO") != NULL, "%s", r);
	free(r);
	imapc_close(&c);
	/* OAUTHBEARER "n,a=bob@b.example,": routed by a= (the mock has no
	 * OAUTHBEARER: its refusal comes from the second upstream) */
	connect_front(&c);
	r = imapc_command(&c, "o", "AUTHENTICATE OAUTHBEARER "
	    "bixhPWJvYkBiLmV4YW1wbGUsAWF1dGg9QmVhcmVyIHRvazEyMwEB");
	cr_assert(r != NULL && strstr(r, "o NO") != NULL, "%s", r);
	free(r);
	cr_assert(proxy_log_wait(&px, "route: user bob@b.example to bee"));
	/* without a=, no user to route */
	r = imapc_command(&c, "p", "AUTHENTICATE OAUTHBEARER "
	    "biwsAWF1dGg9QmVhcmVyIHRvazEyMwEB");
	cr_assert(r != NULL && strstr(r, "p NO [AUTHENTICATIONFAILED]") != NULL,
	    "%s", r);
	free(r);
	imapc_close(&c);
	cr_assert_eq(logins(mock.port), 0);
}

/* A wrong password: the client hears the upstream's NO, and its next
 * login (another user's, elsewhere) is routed anew. */
Test(routing, failed_login_is_routed_anew)
{
	struct imapc c;
	char *r;

	start_map("@b.example bee\n");
	connect_front(&c);
	r = imapc_command(&c, "l", "LOGIN bob@b.example wrong");
	cr_assert(strstr(r, "l NO") != NULL, "%s", r);
	free(r);
	login_ok(&c, "alice", "pa");
	r = imapc_command(&c, "s", "SELECT INBOX");
	cr_assert(tagged_ok(r, "s"), "%s", r);
	free(r);
	imapc_close(&c);
	cr_assert_eq(logins(mock.port), 1);
	cr_assert_eq(logins(second.port), 0, "the failed login counts no login");
}

Test(routing, sighup_changes_a_route)
{
	struct imapc c;

	start_map("alice default\n");
	connect_front(&c);
	login_ok(&c, "alice", "pa");
	imapc_close(&c);
	cr_assert_eq(logins(mock.port), 1);
	write_map("alice bee\n");
	cr_assert_eq(kill(px.pid, SIGHUP), 0);
	cr_assert(proxy_log_wait(&px, "reloaded"));
	connect_front(&c);
	login_ok(&c, "alice", "pa");
	imapc_close(&c);
	cr_assert_eq(logins(second.port), 1);
}

Test(routing, backend_down)
{
	struct imapc c;
	char map[128];
	int port;

	/* a port nothing listens on */
	{
		struct mock gone;

		mock_start(&gone, NULL);
		port = gone.port;
		mock_stop(&gone);
	}
	snprintf(map, sizeof(map), "alice 127.0.0.1:%d\n", port);
	start_map(map);
	connect_front(&c);
	login_refused_with_bye(&c, "LOGIN alice pa", "l NO [UNAVAILABLE]");
	imapc_close(&c);
}

/* A MULTIAPPEND on the second backend, and one whose rollback runs there:
 * the second connection and the undo follow the session's upstream. */
Test(routing, multiappend_and_rollback_on_the_routed_backend)
{
	struct imapc c, d;
	char *r;

	start_map("@b.example bee\n");
	connect_front(&c);
	login_ok(&c, "bob@b.example", "pb");
	imapc_send(&c, "a APPEND INBOX {5+}\r\nhello {5+}\r\nworld\r\n");
	r = imapc_until_tagged(&c, "a", NULL);
	cr_assert(r != NULL && strstr(r, "a OK [APPENDUID ") != NULL, "%s", r);
	free(r);
	/* the second fails the second message of the next one */
	imapc_connect_login(&d, second.port, "test", "secret");
	r = imapc_command(&d, "f", "XMOCK FAULT APPEND-NO 2");
	cr_assert(tagged_ok(r, "f"), "%s", r);
	free(r);
	imapc_send(&c, "b APPEND INBOX {5+}\r\nthree {4+}\r\nfour\r\n");
	r = imapc_until_tagged(&c, "b", NULL);
	cr_assert(r != NULL && strstr(r, "b NO") != NULL, "%s", r);
	free(r);
	r = imapc_command(&d, "s", "XMOCK STATS");
	cr_assert_null(strstr(r, "uidexpunge=0 "), "the undo ran there: %s", r);
	free(r);
	imapc_close(&d);
	r = imapc_command(&c, "s", "SELECT INBOX");
	cr_assert_not_null(strstr(r, "* 2 EXISTS"), "as before the NO: %s", r);
	free(r);
	imapc_close(&c);
	cr_assert_eq(logins(mock.port), 0, "nothing went to the default upstream");
}

/* ---- auth_http: an endpoint of this file's, in a child process ---- */

static pid_t endpoint_pid;
/* Where the endpoint sends users: second_user to second_port, everybody
 * else to first_port (set before start_endpoint). */
static const char *second_user = "bob@b.example";
static int first_port, second_port;
static int endpoint_port;
static char endpoint_log[300];

static void
stop_endpoint(void)
{
	if (endpoint_pid > 0) {
		kill(endpoint_pid, SIGKILL);
		waitpid(endpoint_pid, NULL, 0);
		endpoint_pid = 0;
	}
	if (endpoint_log[0] != '\0')
		unlink(endpoint_log);
	stop_second();
}

/* The value of header name in req, into out ("" when absent). */
static void
header(const char *req, const char *name, char *out, size_t len)
{
	const char *p = strstr(req, name);
	size_t n = 0;

	out[0] = '\0';
	if (p == NULL)
		return;
	p += strlen(name);
	while (p[n] != '\r' && p[n] != '\n' && p[n] != '\0' && n + 1 < len)
		n++;
	memcpy(out, p, n);
	out[n] = '\0';
}

/* One request, one answer, as nginx's endpoints do: users "refused" (may
 * try again), "denied" (may not), "broken" and "slow" get what their
 * names say, bob@b.example the second
 * upstream, everybody else the first.  Each request's user is logged. */
static void
serve_endpoint(int lfd)
{
	for (;;) {
		char req[4096], user[256], answer[512];
		size_t n = 0;
		ssize_t k;
		int fd = accept(lfd, NULL, NULL);
		FILE *log;

		if (fd < 0)
			continue;
		while (n + 1 < sizeof(req) && (k = read(fd, req + n,
		    sizeof(req) - 1 - n)) > 0) {
			n += (size_t)k;
			req[n] = '\0';
			if (strstr(req, "\r\n\r\n") != NULL)
				break;
		}
		req[n] = '\0';
		header(req, "\r\nAuth-User: ", user, sizeof(user));
		if ((log = fopen(endpoint_log, "a")) != NULL) {
			fprintf(log, "%s\n", user);
			fclose(log);
		}
		if (strcmp(user, "slow") == 0) {
			sleep(3);
			close(fd);
			continue;
		}
		if (strcmp(user, "refused") == 0)
			snprintf(answer, sizeof(answer), "HTTP/1.0 200 OK\r\n"
			    "Auth-Status: Invalid login or password\r\n"
			    "Auth-Wait: 1\r\n\r\n");
		else if (strcmp(user, "denied") == 0)
			snprintf(answer, sizeof(answer), "HTTP/1.0 200 OK\r\n"
			    "Auth-Status: Go away\r\n\r\n");
		else if (strcmp(user, "broken") == 0)
			snprintf(answer, sizeof(answer), "HTTP/1.0 500 Oops\r\n\r\n");
		else
			snprintf(answer, sizeof(answer), "HTTP/1.0 200 OK\r\n"
			    "Auth-Status: OK\r\nAuth-Server: 127.0.0.1\r\n"
			    "Auth-Port: %d\r\n\r\n", strcmp(user, second_user) == 0 ?
			    second_port : first_port);
		if (write(fd, answer, strlen(answer)) < 0)
			_exit(1);
		close(fd);
	}
}

static void
start_endpoint(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);

	snprintf(endpoint_log, sizeof(endpoint_log), "/tmp/mappend-endpoint.%d",
	    (int)getpid());
	unlink(endpoint_log);
	cr_assert(lfd >= 0);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(lfd, 16), 0);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
	endpoint_port = ntohs(sin.sin_port);
	endpoint_pid = fork();
	cr_assert(endpoint_pid >= 0);
	if (endpoint_pid == 0)
		serve_endpoint(lfd);
	close(lfd);
}

/* Requests the endpoint had for user. */
static unsigned
asked(const char *user)
{
	FILE *f = fopen(endpoint_log, "r");
	char line[300];
	unsigned n = 0;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		n += strcmp(line, user) == 0;
	}
	fclose(f);
	return n;
}

/* Both mocks, the endpoint (or a port where nothing answers), mappend. */
static void
start_http(bool endpoint_up)
{
	char conf[512];

	mock_start(&second, users);
	mock_start(&mock, users);
	if (endpoint_up) {
		first_port = mock.port;
		second_port = second.port;
		start_endpoint();
	} else {
		struct mock gone;

		mock_start(&gone, NULL);
		endpoint_port = gone.port;
		mock_stop(&gone);
	}
	snprintf(conf, sizeof(conf), "auth_http = http://127.0.0.1:%d/auth\n"
	    "auth_http_timeout = 1\nauth_http_header = X-Secret: s3\n",
	    endpoint_port);
	proxy_start(&px, mock.port, conf);
}


Test(routing, auth_http_routes_and_caches)
{
	struct imapc c;

	start_http(true);
	connect_front(&c);
	login_ok(&c, "bob@b.example", "pb");
	imapc_close(&c);
	cr_assert_eq(logins(second.port), 1);
	connect_front(&c);
	login_ok(&c, "alice", "pa");
	imapc_close(&c);
	connect_front(&c);
	login_ok(&c, "alice", "pa");
	imapc_close(&c);
	cr_assert_eq(logins(mock.port), 2);
	cr_assert_eq(asked("alice"), 1, "the second login came from the cache");
	cr_assert_eq(asked("bob@b.example"), 1);
}

Test(routing, auth_http_refusal_waits_and_the_session_goes_on)
{
	struct imapc c;
	char *r;

	start_http(true);
	connect_front(&c);
	r = imapc_command(&c, "l", "LOGIN refused x");
	cr_assert(r != NULL && strstr(r, "l NO [AUTHENTICATIONFAILED] Invalid login "
	    "or password") != NULL, "%s", r);
	free(r);
	cr_assert(proxy_log_wait(&px, "login refused by auth_http: user=refused"));
	login_ok(&c, "alice", "pa");
	imapc_close(&c);
	cr_assert_eq(asked("refused"), 1);
}

/* A refusal without Auth-Wait ends the session, as with nginx. */
Test(routing, auth_http_refusal_without_wait_ends_the_session)
{
	struct imapc c;

	start_http(true);
	connect_front(&c);
	login_refused_with_bye(&c, "LOGIN denied x",
	    "l NO [AUTHENTICATIONFAILED] Go away");
	imapc_close(&c);
}

Test(routing, auth_http_endpoint_broken_slow_or_down)
{
	struct imapc c;
	char *r;

	start_http(true);
	connect_front(&c);
	r = imapc_command(&c, "l", "LOGIN broken x");
	cr_assert(r != NULL && strstr(r, "l NO [UNAVAILABLE]") != NULL, "%s", r);
	free(r);
	r = imapc_command(&c, "l", "LOGIN slow x");
	cr_assert(r != NULL && strstr(r, "l NO [UNAVAILABLE]") != NULL, "%s", r);
	free(r);
	imapc_close(&c);
}

Test(routing, auth_http_endpoint_down)
{
	struct imapc c;
	char *r;

	start_http(false);
	connect_front(&c);
	r = imapc_command(&c, "l", "LOGIN alice pa");
	cr_assert(r != NULL && strstr(r, "l NO [UNAVAILABLE]") != NULL, "%s", r);
	free(r);
	imapc_close(&c);
	cr_assert_eq(logins(mock.port), 0);
}

/* ---- two real Dovecots ---- */

static struct dovecot d1, d2;
static struct faultrelay relay2;

static void
stop_dovecots(void)
{
	if (endpoint_pid > 0) {
		kill(endpoint_pid, SIGKILL);
		waitpid(endpoint_pid, NULL, 0);
		endpoint_pid = 0;
	}
	if (endpoint_log[0] != '\0')
		unlink(endpoint_log);
	proxy_stop(&px);
	faultrelay_stop(&relay2);
	dovecot_stop(&d1);
	dovecot_stop(&d2);
	if (map_path[0] != '\0')
		unlink(map_path);
}


/* Messages in user's INBOX of the server at port, seen directly. */
static unsigned
inbox_at(int port, const char *user, const char *pass)
{
	struct imapc c;
	char *r, *p;
	unsigned n;

	imapc_connect_login(&c, port, user, pass);
	r = imapc_command(&c, "s", "STATUS INBOX (MESSAGES)");
	p = strstr(r, "MESSAGES ");
	cr_assert_not_null(p, "%s", r);
	n = (unsigned)strtoul(p + 9, NULL, 10);
	free(r);
	imapc_close(&c);
	return n;
}

/* A MULTIAPPEND of n messages of different sizes, sent whole. */
static void
send_upload(struct imapc *c, const char *tag, unsigned n)
{
	unsigned i;

	imapc_send(c, "%s APPEND INBOX", tag);
	for (i = 0; i < n; i++) {
		char *m = make_message(300 + 50 * i, i + 3);

		imapc_send(c, " {%u+}\r\n", 300 + 50 * i);
		imapc_send_raw(c, m, 300 + 50 * i);
		free(m);
	}
	imapc_send(c, "\r\n");
}

static char *
upload(struct imapc *c, const char *tag, unsigned n)
{
	send_upload(c, tag, n);
	return imapc_until_tagged(c, tag, NULL);
}

/*
 * alice lives on the first Dovecot (the default upstream), bob on the
 * second (a backend with its own master user, behind a fault relay): each
 * one's MULTIAPPEND lands on their own server only, and the one that fails
 * half-way on the second is undone there, by that server's master user.
 */
Test(routing, dovecot_users_on_two_servers)
{
	struct faultrelay_fault f = { .action = FAULTRELAY_DROP, .k = 2,
	    .forward_kth = true };
	struct imapc c;
	char conf[1024], map[256], *r;
	FILE *mf;

	/* legacy: no MULTIAPPEND, mappend's emulation at work */
	dovecot_start(&d1, "--legacy");
	dovecot_start(&d2, "--legacy");
	faultrelay_start(&relay2, d2.port);
	snprintf(map_path, sizeof(map_path), "/tmp/mappend-routes.%d", (int)getpid());
	snprintf(map, sizeof(map), "%s default\n%s second\n", d1.user, d2.user2);
	mf = fopen(map_path, "w");
	cr_assert_not_null(mf);
	fputs(map, mf);
	fclose(mf);
	snprintf(conf, sizeof(conf), "route_map = %s\nmaster_user = %s\n"
	    "master_password = %s\n[backend second]\nupstream = 127.0.0.1:%d\n"
	    "master_user = %s\nmaster_password = %s\n", map_path, d1.master,
	    d1.master_password, relay2.port, d2.master, d2.master_password);
	proxy_start(&px, d1.port, conf);

	connect_front(&c);
	login_ok(&c, d1.user, d1.password);
	r = upload(&c, "a", 3);
	cr_assert(r != NULL && strstr(r, "a OK [APPENDUID ") != NULL, "%s", r);
	free(r);
	imapc_close(&c);
	cr_assert_eq(inbox_at(d1.port, d1.user, d1.password), 3);
	cr_assert_eq(inbox_at(d2.port, d2.user, d2.password), 0);

	connect_front(&c);
	login_ok(&c, d2.user2, d2.password2);
	r = upload(&c, "b", 4);
	cr_assert(r != NULL && strstr(r, "b OK [APPENDUID ") != NULL, "%s", r);
	free(r);
	imapc_close(&c);
	cr_assert_eq(inbox_at(d2.port, d2.user2, d2.password2), 4);
	cr_assert_eq(inbox_at(d1.port, d1.user2, d1.password2), 0);

	/* the second server's connection drops after message 2 of 5 */
	faultrelay_arm(&relay2, &f);
	connect_front(&c);
	login_ok(&c, d2.user2, d2.password2);
	r = upload(&c, "c", 5);
	cr_assert(r != NULL && strstr(r, "c NO [UNAVAILABLE]") != NULL, "%s", r);
	free(r);
	imapc_close(&c);
	cr_assert(proxy_log_wait(&px, "rolled back on a second connection"));
	cr_assert_eq(inbox_at(d2.port, d2.user2, d2.password2), 4,
	    "the half-way upload was undone on the second server");
	cr_assert_eq(inbox_at(d1.port, d1.user2, d1.password2), 0);
}

/* The same two Dovecots routed by an auth_http endpoint: each user's
 * upload lands on their own server. */
Test(routing, dovecot_auth_http_sends_each_user_home)
{
	struct imapc c;
	char conf[512], *r;

	dovecot_start(&d1, "--legacy");
	dovecot_start(&d2, "--legacy");
	first_port = d1.port;
	second_port = d2.port;
	second_user = d2.user2;
	start_endpoint();
	snprintf(conf, sizeof(conf), "auth_http = http://127.0.0.1:%d/auth\n"
	    "master_user = %s\nmaster_password = %s\n", endpoint_port, d1.master,
	    d1.master_password);
	proxy_start(&px, d1.port, conf);
	connect_front(&c);
	login_ok(&c, d2.user2, d2.password2);
	r = upload(&c, "a", 2);
	cr_assert(r != NULL && strstr(r, "a OK [APPENDUID ") != NULL, "%s", r);
	free(r);
	imapc_close(&c);
	connect_front(&c);
	login_ok(&c, d1.user, d1.password);
	r = upload(&c, "b", 3);
	cr_assert(r != NULL && strstr(r, "b OK [APPENDUID ") != NULL, "%s", r);
	free(r);
	imapc_close(&c);
	cr_assert_eq(inbox_at(d2.port, d2.user2, d2.password2), 2);
	cr_assert_eq(inbox_at(d1.port, d1.user2, d1.password2), 0);
	cr_assert_eq(inbox_at(d1.port, d1.user, d1.password), 3);
	cr_assert_eq(inbox_at(d2.port, d2.user, d2.password), 0);
	cr_assert_eq(asked(d2.user2), 1);
	cr_assert_eq(asked(d1.user), 1);
}

/* ---- two instances behind one HAProxy ---- */

static struct proxy_proc px2;
static struct haproxy hp;



/* The proxy_protocol listener's port, from the instance's log. */
static int
pp_port(const struct proxy_proc *p)
{
	char *log = proxy_log(p);
	const char *l, *key = "listening on 127.0.0.1:";
	int port = 0;

	for (l = strstr(log, key); l != NULL && port == 0; l = strstr(l + 1, key)) {
		const char *eol = strchr(l, '\n');

		if (eol != NULL && memmem(l, (size_t)(eol - l), "PROXY protocol",
		    14) != NULL)
			port = atoi(l + strlen(key));
	}
	free(log);
	cr_assert_gt(port, 0, "no proxy_protocol listener in the log");
	return port;
}

static unsigned long
appends_of(int port)
{
	return mock_stat(port, "appends=");
}

/*
 * Two mappend instances (their own spools) behind one HAProxy with
 * send-proxy-v2, routing by one map: bob's MULTIAPPEND to the second
 * upstream is half-way when his instance is SIGKILLed; the other instance
 * serves alice meanwhile; restarted, the first recovers its journal against
 * the second upstream (where the upload went), and every mailbox is as it
 * should be, seen directly.
 */
Test(routing, one_crashes_mid_replay_the_other_serves)
{
	const char *args[] = { "--user", "alice:pa", "--user", "bob@b.example:pb",
	    "--user", "test:secret", "--master", "boss:pw", NULL };
	char conf[1024], s1[128], s2[128], *r, *log;
	const char *servers[] = { s1, s2, NULL };
	struct imapc c1, c2, d;
	unsigned long appends;
	unsigned i;
	FILE *mf;

	mock_start(&second, args);
	mock_start(&mock, args);
	snprintf(map_path, sizeof(map_path), "/tmp/mappend-routes.%d", (int)getpid());
	mf = fopen(map_path, "w");
	cr_assert_not_null(mf);
	fputs("@b.example bee\n* default\n", mf);
	fclose(mf);
	snprintf(conf, sizeof(conf), "listen = 127.0.0.1:0 proxy_protocol\n"
	    "proxy_protocol_from = 127.0.0.1\nroute_map = %s\nmaster_user = boss\n"
	    "master_password = pw\n[backend bee]\nupstream = 127.0.0.1:%d\n",
	    map_path, second.port);
	proxy_start(&px, mock.port, conf);
	proxy_start(&px2, mock.port, conf);
	snprintf(s1, sizeof(s1), "127.0.0.1:%d send-proxy-v2", pp_port(&px));
	snprintf(s2, sizeof(s2), "127.0.0.1:%d send-proxy-v2", pp_port(&px2));
	haproxy_start(&hp, servers, NULL);

	/* bob's upload stalls on the second upstream after message 3 */
	imapc_connect_login(&d, second.port, "test", "secret");
	free(imapc_command(&d, "f", "XMOCK FAULT APPEND-STALL-AFTER 3"));
	appends = appends_of(second.port);
	connect_front_at(&c1, hp.port[0]);
	login_ok(&c1, "bob@b.example", "pb");
	send_upload(&c1, "a", 10);
	for (i = 0; i < 250 && appends_of(second.port) < appends + 3; i++)
		usleep(20 * 1000);
	cr_assert_geq(appends_of(second.port), appends + 3, "the replay did not "
	    "get to message 3");
	usleep(50 * 1000);
	proxy_kill(&px);
	imapc_close(&c1);
	free(imapc_command(&d, "f", "XMOCK FAULT CLEAR"));
	imapc_close(&d);
	cr_assert_gt(inbox_at(second.port, "bob@b.example", "pb"), 0,
	    "the crash left stored messages to recover");

	/* the other instance serves on */
	connect_front_at(&c2, hp.port[1]);
	login_ok(&c2, "alice", "pa");
	send_upload(&c2, "b", 5);
	r = imapc_until_tagged(&c2, "b", NULL);
	cr_assert(r != NULL && strstr(r, "b OK [APPENDUID ") != NULL, "%s", r);
	free(r);
	imapc_close(&c2);

	/* the first comes back and undoes bob's upload where it went */
	proxy_restart(&px);
	log = proxy_log(&px);
	cr_assert_not_null(strstr(log, "recovered: the upload of 10 messages"),
	    "%s", log);
	free(log);
	cr_assert_eq(inbox_at(second.port, "bob@b.example", "pb"), 0);
	cr_assert_eq(inbox_at(mock.port, "bob@b.example", "pb"), 0);
	cr_assert_eq(inbox_at(mock.port, "alice", "pa"), 5);
	cr_assert_eq(inbox_at(second.port, "alice", "pa"), 0);
}

/* Everything a test may have started, whichever it was: one suite, one
 * timeout (with several, Criterion 2.4.1's runner leaks 48 bytes under
 * --jobs 2, and LeakSanitizer fails the run for it). */
static void
stop_all(void)
{
	haproxy_stop(&hp);
	proxy_stop(&px2);
	faultrelay_stop(&relay2);
	stop_dovecots();
	stop_endpoint();
}

TestSuite(routing, .fini = stop_all, .timeout = 240);

/*
 * mock_main.c — mock_imapd's command line, listeners and signals.  The only
 * lines on stdout are "PORT <n>" once the listener is bound and, with
 * --listen-tls, "TLSPORT <n>" after it; diagnostics go to stderr.  SIGTERM
 * and SIGINT end the loop and everything is freed, so that a sanitizer build
 * reports real leaks only.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "mock.h"

struct mock_server mock_srv;

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: mock_imapd [--listen HOST:PORT] [--profile legacy|nouidplus|"
	    "noliteralplus|literalminus|multiappend]\n"
	    "                  [--user NAME:PASS]... [--master NAME:PASS] "
	    "[--mailbox NAME]...\n"
	    "                  [--no-greeting-caps] [--no-login-caps] "
	    "[--sasl-ir] [--appendlimit BYTES]\n"
	    "                  [--extra-caps \"CAP ...\"]\n"
	    "                  [--append-no K[:TEXT]] [--append-drop K] "
	    "[--append-drop-after K]\n"
	    "                  [--delay MS] [--quota BYTES] [--log FILE]\n"
	    "                  [--tls-cert FILE --tls-key FILE "
	    "[--listen-tls HOST:PORT]] [--require-tls]\n"
	    "                  [--oauth-token TOKEN]\n");
}

static void __attribute__((format(printf, 1, 2), noreturn))
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mock_imapd: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(2);
}

static uint64_t
number(const char *s, uint64_t max, const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > max)
		die("bad number for %s", what);
	return v;
}

/* "NAME:PASS" -> two strings (the password may hold ":") */
static void
split_pair(const char *arg, char **name, char **pass, const char *what)
{
	const char *colon = strchr(arg, ':');

	if (colon == NULL || colon == arg)
		die("%s: NAME:PASS expected", what);
	if ((*name = strndup(arg, (size_t)(colon - arg))) == NULL ||
	    (*pass = strdup(colon + 1)) == NULL)
		exit(1);
}

/* --extra-caps "A B": advertised everywhere, implemented nowhere (tests of
 * the proxy's capability filter).  Repeatable; atoms joined by spaces. */
static void
extra_caps(const char *arg)
{
	char *joined;
	size_t i;

	for (i = 0; arg[i] != '\0'; i++)
		if ((unsigned char)arg[i] < 0x20 || arg[i] == 0x7f ||
		    strchr("()[]{}\"\\", arg[i]) != NULL)
			die("--extra-caps: bad character in '%s'", arg);
	if (arg[0] == '\0')
		return;
	if (mock_srv.extra_caps == NULL) {
		joined = strdup(arg);
	} else if (asprintf(&joined, "%s %s", mock_srv.extra_caps, arg) < 0) {
		joined = NULL;
	}
	if (joined == NULL)
		exit(1);
	free(mock_srv.extra_caps);
	mock_srv.extra_caps = joined;
}

/* arg: non-NULL for the implicit-TLS listener */
static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	(void)l;
	(void)sa;
	(void)salen;
	evutil_make_socket_nonblocking(fd);
	mock_conn_new(fd, arg != NULL);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	event_base_loopexit(mock_srv.base, NULL);
}

static struct evconnlistener *
listen_on(const char *spec, const char *opt, bool tls)
{
	char host[256], port[16];
	const char *colon = strrchr(spec, ':');
	struct addrinfo hints, *res = NULL;
	struct evconnlistener *l;
	size_t hlen;
	int err;

	if (colon == NULL || (size_t)(colon - spec) >= sizeof(host) ||
	    strlen(colon + 1) >= sizeof(port) || colon[1] == '\0')
		die("%s: HOST:PORT expected, got %s", opt, spec);
	hlen = (size_t)(colon - spec);
	memcpy(host, spec, hlen);
	host[hlen] = '\0';
	if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
		memmove(host, host + 1, hlen - 2);
		host[hlen - 2] = '\0';
	}
	strcpy(port, colon + 1);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((err = getaddrinfo(host, port, &hints, &res)) != 0)
		die("%s: %s", opt, gai_strerror(err));
	l = evconnlistener_new_bind(mock_srv.base, accept_cb,
	    tls ? (void *)&mock_srv : NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 128, res->ai_addr,
	    (int)res->ai_addrlen);
	freeaddrinfo(res);
	if (l == NULL)
		die("cannot listen on %s", spec);
	return l;
}

static int
bound_port(struct evconnlistener *l)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&ss,
	    &len) != 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

enum {
	OPT_LISTEN = 256, OPT_PROFILE, OPT_USER, OPT_MASTER, OPT_MAILBOX,
	OPT_NO_GREETING_CAPS, OPT_NO_LOGIN_CAPS, OPT_APPEND_NO, OPT_APPEND_DROP,
	OPT_APPEND_DROP_AFTER, OPT_DELAY, OPT_QUOTA, OPT_LOG, OPT_SASL_IR,
	OPT_APPENDLIMIT, OPT_EXTRA_CAPS, OPT_PERSONAL_PREFIX, OPT_TLS_CERT, OPT_TLS_KEY,
	OPT_LISTEN_TLS, OPT_REQUIRE_TLS, OPT_OAUTH_TOKEN, OPT_HELP,
};

static const struct option options[] = {
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "profile", required_argument, NULL, OPT_PROFILE },
	{ "user", required_argument, NULL, OPT_USER },
	{ "master", required_argument, NULL, OPT_MASTER },
	{ "mailbox", required_argument, NULL, OPT_MAILBOX },
	{ "no-greeting-caps", no_argument, NULL, OPT_NO_GREETING_CAPS },
	{ "no-login-caps", no_argument, NULL, OPT_NO_LOGIN_CAPS },
	{ "append-no", required_argument, NULL, OPT_APPEND_NO },
	{ "append-drop", required_argument, NULL, OPT_APPEND_DROP },
	{ "append-drop-after", required_argument, NULL, OPT_APPEND_DROP_AFTER },
	{ "delay", required_argument, NULL, OPT_DELAY },
	{ "quota", required_argument, NULL, OPT_QUOTA },
	{ "log", required_argument, NULL, OPT_LOG },
	{ "sasl-ir", no_argument, NULL, OPT_SASL_IR },
	{ "appendlimit", required_argument, NULL, OPT_APPENDLIMIT },
	{ "extra-caps", required_argument, NULL, OPT_EXTRA_CAPS },
	{ "personal-prefix", required_argument, NULL, OPT_PERSONAL_PREFIX },
	{ "tls-cert", required_argument, NULL, OPT_TLS_CERT },
	{ "tls-key", required_argument, NULL, OPT_TLS_KEY },
	{ "listen-tls", required_argument, NULL, OPT_LISTEN_TLS },
	{ "require-tls", no_argument, NULL, OPT_REQUIRE_TLS },
	{ "oauth-token", required_argument, NULL, OPT_OAUTH_TOKEN },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

static const char *const profiles[] = {
	[MOCK_PROFILE_LEGACY] = "legacy",
	[MOCK_PROFILE_NOUIDPLUS] = "nouidplus",
	[MOCK_PROFILE_NOLITERALPLUS] = "noliteralplus",
	[MOCK_PROFILE_LITERALMINUS] = "literalminus",
	[MOCK_PROFILE_MULTIAPPEND] = "multiappend",
};

int
main(int argc, char **argv)
{
	const char *listen_spec = "127.0.0.1:0", *log_path = NULL;
	const char *tls_cert = NULL, *tls_key = NULL, *listen_tls = NULL;
	char **users = NULL, **mailboxes = NULL;
	size_t nusers = 0, nmailboxes = 0, i;
	struct evconnlistener *listener, *tls_listener = NULL;
	struct event *sigterm, *sigint;
	struct mock_user *u;
	int opt, port, tls_port = -1;

	mock_srv.greeting_caps = true;
	mock_srv.login_caps = true;
	mock_srv.next_uidvalidity = 1000;
	mock_srv.profile = MOCK_PROFILE_LEGACY;
	mock_srv.oauth_token = "mock-token";
	users = calloc((size_t)argc + 1, sizeof(*users));
	mailboxes = calloc((size_t)argc + 1, sizeof(*mailboxes));
	if (users == NULL || mailboxes == NULL)
		return 1;

	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		char *colon;

		switch (opt) {
		case OPT_LISTEN:
			listen_spec = optarg;
			break;
		case OPT_PROFILE:
			for (i = 0; i < sizeof(profiles) / sizeof(profiles[0]); i++)
				if (strcmp(optarg, profiles[i]) == 0)
					break;
			if (i == sizeof(profiles) / sizeof(profiles[0]))
				die("unknown profile %s", optarg);
			mock_srv.profile = (enum mock_profile)i;
			break;
		case OPT_USER:
			users[nusers++] = optarg;
			break;
		case OPT_MASTER:
			free(mock_srv.master_name);
			free(mock_srv.master_pass);
			split_pair(optarg, &mock_srv.master_name,
			    &mock_srv.master_pass, "--master");
			break;
		case OPT_MAILBOX:
			if (optarg[0] == '\0' || strlen(optarg) > MOCK_NAME_MAX)
				die("bad mailbox name '%s'", optarg);
			mailboxes[nmailboxes++] = optarg;
			break;
		case OPT_NO_GREETING_CAPS:
			mock_srv.greeting_caps = false;
			break;
		case OPT_NO_LOGIN_CAPS:
			mock_srv.login_caps = false;
			break;
		case OPT_SASL_IR:
			mock_srv.sasl_ir = true;
			break;
		case OPT_APPEND_NO:
			if ((colon = strchr(optarg, ':')) != NULL) {
				*colon = '\0';
				free(mock_srv.faults.append_no_text);
				if ((mock_srv.faults.append_no_text =
				    strdup(colon + 1)) == NULL)
					return 1;
			}
			mock_srv.faults.append_no = number(optarg, UINT64_MAX,
			    "--append-no");
			break;
		case OPT_APPEND_DROP:
			mock_srv.faults.append_drop = number(optarg, UINT64_MAX,
			    "--append-drop");
			break;
		case OPT_APPEND_DROP_AFTER:
			mock_srv.faults.append_drop_after = number(optarg,
			    UINT64_MAX, "--append-drop-after");
			break;
		case OPT_DELAY:
			mock_srv.delay_ms = (unsigned)number(optarg,
			    MOCK_DELAY_MAX, "--delay");
			break;
		case OPT_QUOTA:
			mock_srv.quota = number(optarg, UINT64_MAX, "--quota");
			break;
		case OPT_APPENDLIMIT:
			mock_srv.appendlimit = number(optarg, UINT64_MAX,
			    "--appendlimit");
			break;
		case OPT_EXTRA_CAPS:
			extra_caps(optarg);
			break;
		case OPT_PERSONAL_PREFIX:
			/* Courier-like: NAMESPACE says it, CREATE wants it */
			mock_srv.personal_prefix = optarg;
			extra_caps("NAMESPACE");
			break;
		case OPT_LOG:
			log_path = optarg;
			break;
		case OPT_TLS_CERT:
			tls_cert = optarg;
			break;
		case OPT_TLS_KEY:
			tls_key = optarg;
			break;
		case OPT_LISTEN_TLS:
			listen_tls = optarg;
			break;
		case OPT_REQUIRE_TLS:
			mock_srv.require_tls = true;
			break;
		case OPT_OAUTH_TOKEN:
			if (optarg[0] == '\0')
				die("%s", "--oauth-token: empty token");
			mock_srv.oauth_token = optarg;
			break;
		case OPT_HELP:
			usage(stdout);
			free(users);
			free(mailboxes);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if ((tls_cert == NULL) != (tls_key == NULL))
		die("%s", "--tls-cert and --tls-key go together");
	if (listen_tls != NULL && tls_cert == NULL)
		die("%s", "--listen-tls needs --tls-cert and --tls-key");
	if (tls_cert != NULL && !mock_tls_init(tls_cert, tls_key))
		exit(2);

	if (nusers == 0)
		mock_store_user_add("test", "secret");
	for (i = 0; i < nusers; i++) {
		char *name, *pass;

		split_pair(users[i], &name, &pass, "--user");
		mock_store_user_add(name, pass);
		free(name);
		free(pass);
	}
	for (u = mock_srv.users; u != NULL; u = u->next)
		for (i = 0; i < nmailboxes; i++)
			mock_store_mailbox_create(u, mailboxes[i]);
	free(users);
	free(mailboxes);

	if (log_path != NULL && (mock_srv.log = fopen(log_path, "a")) == NULL)
		die("cannot open log %s", log_path);

	signal(SIGPIPE, SIG_IGN);
	if ((mock_srv.base = event_base_new()) == NULL)
		die("%s", "event_base_new failed");
	listener = listen_on(listen_spec, "--listen", false);
	if ((port = bound_port(listener)) < 0)
		die("%s", "getsockname failed");
	if (listen_tls != NULL) {
		tls_listener = listen_on(listen_tls, "--listen-tls", true);
		if ((tls_port = bound_port(tls_listener)) < 0)
			die("%s", "getsockname failed");
	}
	sigterm = evsignal_new(mock_srv.base, SIGTERM, signal_cb, NULL);
	sigint = evsignal_new(mock_srv.base, SIGINT, signal_cb, NULL);
	if (sigterm == NULL || sigint == NULL ||
	    evsignal_add(sigterm, NULL) != 0 || evsignal_add(sigint, NULL) != 0)
		die("%s", "cannot handle signals");

	printf("PORT %d\n", port);
	if (tls_port >= 0)
		printf("TLSPORT %d\n", tls_port);
	fflush(stdout);

	event_base_dispatch(mock_srv.base);

	mock_conn_free_all();
	evconnlistener_free(listener);
	if (tls_listener != NULL)
		evconnlistener_free(tls_listener);
	event_free(sigterm);
	event_free(sigint);
	event_base_free(mock_srv.base);
	mock_store_free();
	free(mock_srv.master_name);
	free(mock_srv.master_pass);
	free(mock_srv.faults.append_no_text);
	free(mock_srv.extra_caps);
	mock_tls_free();
	if (mock_srv.log != NULL)
		fclose(mock_srv.log);
	return 0;
}

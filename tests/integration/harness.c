/*
 * harness.c — processes and a scripted client for the integration tests.
 * Failures are Criterion assertions, so a test stops with the reason.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "harness.h"

static const char *
env_path(const char *name)
{
	const char *v = getenv(name);

	cr_assert(v != NULL && *v != '\0', "%s is not set: run the tests with make", name);
	return v;
}

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* fork+exec with stdout to out_fd (or inherited when -1) and stderr to
 * err_path (or inherited); the child dies with the test process.  A
 * non-zero fsize_limit is the child's RLIMIT_FSIZE (SIGXFSZ ignored, so a
 * write past it fails with EFBIG as on a full disk). */
static pid_t
spawn_limited(const char *const *argv, int out_fd, const char *err_path,
    size_t fsize_limit)
{
	pid_t pid = fork();

	cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fsize_limit > 0) {
			struct rlimit lim = { fsize_limit, fsize_limit };

			signal(SIGXFSZ, SIG_IGN);
			setrlimit(RLIMIT_FSIZE, &lim);
		}
		if (out_fd >= 0)
			dup2(out_fd, STDOUT_FILENO);
		if (err_path != NULL) {
			int fd = open(err_path, O_WRONLY | O_CREAT | O_APPEND, 0600);

			if (fd >= 0)
				dup2(fd, STDERR_FILENO);
		}
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

static pid_t
spawn(const char *const *argv, int out_fd, const char *err_path)
{
	return spawn_limited(argv, out_fd, err_path, 0);
}

void
mock_start(struct mock *m, const char *const *args)
{
	const char *argv[64];
	size_t n = 0;
	int fds[2];
	char line[128];
	size_t got = 0;
	long deadline = now_ms() + HARNESS_TIMEOUT_MS;
	bool want_tls = false;

	argv[n++] = env_path("MAPPEND_MOCK");
	argv[n++] = "--listen";
	argv[n++] = "127.0.0.1:0";
	while (args != NULL && *args != NULL && n < 62) {
		if (strcmp(*args, "--listen-tls") == 0)
			want_tls = true;
		argv[n++] = *args++;
	}
	argv[n] = NULL;
	cr_assert_eq(pipe(fds), 0);
	m->pid = spawn(argv, fds[1], NULL);
	close(fds[1]);
	/* "PORT n\n", then "TLSPORT n\n" with a TLS listener */
	memset(line, 0, sizeof(line));
	while (got < sizeof(line) - 1 && (want_tls ? strstr(line, "TLSPORT ") == NULL ||
	    strchr(strstr(line, "TLSPORT "), '\n') == NULL : memchr(line, '\n', got) == NULL)) {
		struct pollfd pfd = { fds[0], POLLIN, 0 };
		ssize_t r;

		cr_assert_gt(poll(&pfd, 1, (int)(deadline - now_ms())), 0,
		    "mock did not report its port");
		r = read(fds[0], line + got, sizeof(line) - 1 - got);
		cr_assert_gt(r, 0, "mock exited before reporting its port");
		got += (size_t)r;
	}
	line[got] = '\0';
	close(fds[0]);
	cr_assert_eq(sscanf(line, "PORT %d", &m->port), 1, "mock said: %s", line);
	m->tls_port = 0;
	if (want_tls)
		cr_assert_eq(sscanf(strstr(line, "TLSPORT "), "TLSPORT %d", &m->tls_port), 1);
}

void
mock_stop(struct mock *m)
{
	int status;

	if (m->pid <= 0)
		return;
	kill(m->pid, SIGTERM);
	waitpid(m->pid, &status, 0);
	m->pid = 0;
}

static char *
read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	if (f == NULL)
		return strdup("");
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	cr_assert_not_null(buf);
	n = (long)fread(buf, 1, (size_t)n, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

char *
proxy_log(const struct proxy_proc *p)
{
	return read_file(p->log);
}

bool
proxy_log_wait(const struct proxy_proc *p, const char *text)
{
	long deadline = now_ms() + HARNESS_TIMEOUT_MS;

	for (;;) {
		char *log = proxy_log(p);
		bool found = strstr(log, text) != NULL;

		free(log);
		if (found)
			return true;
		if (now_ms() > deadline)
			return false;
		usleep(10 * 1000);
	}
}

bool
harness_splice(void)
{
	const char *extra = getenv("MAPPEND_TEST_EXTRA_CONF");
	regex_t re;
	bool off;

	if (extra == NULL)
		return true;
	cr_assert_eq(regcomp(&re, "^[ \t]*splice[ \t]*=[ \t]*no[ \t]*$",
	    REG_EXTENDED | REG_NOSUB | REG_NEWLINE), 0);
	off = regexec(&re, extra, 0, NULL, 0) == 0;
	regfree(&re);
	return !off;
}

long
proxy_rss_kib(const struct proxy_proc *p)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)p->pid);
	f = fopen(path, "r");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	cr_assert_geq(kib, 0, "no VmRSS in %s", path);
	return kib;
}

static void proxy_spawn(struct proxy_proc *, size_t starts);

void
proxy_start(struct proxy_proc *p, int upstream_port, const char *extra_conf)
{
	proxy_start_spool_limited(p, upstream_port, extra_conf, 0);
}

/* The spool holds at most bytes: a tmpfs of that size when we may mount
 * one (root), else a file size limit on the process. */
static size_t
limit_spool(struct proxy_proc *p, const char *spool, size_t bytes)
{
	char opts[64];

	snprintf(opts, sizeof(opts), "size=%zu,mode=0700", bytes);
	if (geteuid() == 0 && mount("tmpfs", spool, "tmpfs", 0, opts) == 0) {
		p->spool_mounted = true;
		cr_log_info("spool on a tmpfs of %zu bytes (a really full disk)", bytes);
		return 0;
	}
	cr_log_info("spool limited by RLIMIT_FSIZE = %zu bytes (not root: no tmpfs)",
	    bytes);
	return bytes;
}

void
proxy_start_spool_limited(struct proxy_proc *p, int upstream_port,
    const char *extra_conf, size_t spool_bytes)
{
	size_t fsize_limit = 0;
	FILE *f;

	memset(p, 0, sizeof(*p));
	snprintf(p->dir, sizeof(p->dir), "/tmp/mappend-test.XXXXXX");
	cr_assert_not_null(mkdtemp(p->dir));
	snprintf(p->conf, sizeof(p->conf), "%s/mappend.conf", p->dir);
	snprintf(p->log, sizeof(p->log), "%s/mappend.log", p->dir);
	f = fopen(p->conf, "w");
	cr_assert_not_null(f);
	fprintf(f, "listen = 127.0.0.1:0\n");
	if (upstream_port > 0)
		fprintf(f, "upstream = 127.0.0.1:%d\n", upstream_port);
	fprintf(f, "spool_dir = %s/spool\nlog_level = debug\nconnect_timeout = 5\n",
	    p->dir);
	/* upstreams on loopback settle within a second (rollback.h); a test
	 * of a slower one says so */
	if (extra_conf == NULL || strstr(extra_conf, "rollback_settle") == NULL)
		fprintf(f, "rollback_settle = 1\n");
	if (getenv("MAPPEND_TEST_EXTRA_CONF") != NULL)
		fprintf(f, "%s\n", getenv("MAPPEND_TEST_EXTRA_CONF"));
	/* last: it may end in [backend] sections */
	fprintf(f, "%s\n", extra_conf != NULL ? extra_conf : "");
	fclose(f);
	{
		char spool[300];

		snprintf(spool, sizeof(spool), "%s/spool", p->dir);
		mkdir(spool, 0700);
		if (spool_bytes > 0)
			fsize_limit = limit_spool(p, spool, spool_bytes);
	}
	p->fsize_limit = fsize_limit;
	proxy_spawn(p, 0);
}

/* Run mappend on p's configuration and wait until its starts-th start is
 * logged (the log is appended to by every start). */
static void
proxy_spawn(struct proxy_proc *p, size_t starts)
{
	const char *argv[6];
	long deadline = now_ms() + HARNESS_TIMEOUT_MS;

	argv[0] = env_path("MAPPEND_BIN");
	argv[1] = "-f";
	argv[2] = "-c";
	argv[3] = p->conf;
	argv[4] = NULL;
	p->port = p->tls_port = 0;
	p->pid = spawn_limited(argv, -1, p->log, p->fsize_limit);
	for (;;) {
		char *whole = proxy_log(p), *log = whole;
		const char *at;
		int status;
		size_t k;

		for (k = 0; k < starts && log != NULL; k++)
			if ((log = strstr(log, "mappend started")) != NULL)
				log++;
		if (log == NULL)
			log = whole + strlen(whole);
		at = strstr(log, "listening on 127.0.0.1:");
		if (at != NULL && strstr(log, "mappend started") != NULL) {
			const char *l;

			for (l = at; l != NULL; l = strstr(l + 1, "listening on 127.0.0.1:")) {
				int port = atoi(l + strlen("listening on 127.0.0.1:"));
				const char *eol = strchr(l, '\n');
				const char *tls = strstr(l, "(TLS)");

				if (tls != NULL && (eol == NULL || tls < eol)) {
					if (p->tls_port == 0)
						p->tls_port = port;
				} else if (p->port == 0) {
					p->port = port;
				}
			}
			free(whole);
			break;
		}
		if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
			p->pid = 0;
			cr_assert_fail("mappend exited at start:\n%s", whole);
		}
		free(whole);
		cr_assert_lt(now_ms(), deadline, "mappend did not start listening");
		usleep(10 * 1000);
	}
}

void
proxy_kill(struct proxy_proc *p)
{
	int status;

	if (p->pid <= 0)
		return;
	kill(p->pid, SIGKILL);
	waitpid(p->pid, &status, 0);
	p->pid = 0;
}

void
proxy_restart(struct proxy_proc *p)
{
	char *log = proxy_log(p);
	size_t starts = count_substr(log, strlen(log), "mappend started");

	free(log);
	cr_assert_eq(p->pid, 0, "restart a stopped or killed mappend");
	proxy_spawn(p, starts);
}

/*
 * An assertion that fails in a suite's .fini is only logged by Criterion
 * (the test still passes), so a bad exit of mappend is also written where
 * make can see it: the file MAPPEND_TEST_FAILURES names.
 */
static void
note_failure(const struct proxy_proc *p, int status, const char *log)
{
	const char *path = getenv("MAPPEND_TEST_FAILURES");
	size_t len = strlen(log);
	FILE *f;

	if (path == NULL || *path == '\0' || (f = fopen(path, "a")) == NULL)
		return;
	fprintf(f, "mappend in %s did not exit cleanly (status %d); its log ends:\n%s\n",
	    p->dir, status, len > 4000 ? log + len - 4000 : log);
	fclose(f);
}

void
proxy_stop(struct proxy_proc *p)
{
	int status = 0;
	char *log;

	if (p->pid <= 0)
		return;
	kill(p->pid, SIGTERM);
	waitpid(p->pid, &status, 0);
	p->pid = 0;
	log = proxy_log(p);
	if (p->spool_mounted) {
		char spool[300];

		snprintf(spool, sizeof(spool), "%s/spool", p->dir);
		umount2(spool, MNT_DETACH);
		p->spool_mounted = false;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
	    strstr(log, "runtime error") != NULL || strstr(log, "Sanitizer") != NULL) {
		note_failure(p, status, log);
		cr_log_error("mappend log:\n%s", log);
		free(log);
		cr_assert_fail("mappend did not exit cleanly (status %d)", status);
	}
	free(log);
	{
		char cmd[400];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", p->dir);
		if (system(cmd) != 0)
			cr_log_warn("could not remove %s", p->dir);
	}
}

struct mock mock;
struct proxy_proc px;

void
harness_start(const char *const *mock_args, const char *conf)
{
	mock_start(&mock, mock_args);
	proxy_start(&px, mock.port, conf);
}

void
harness_teardown(void)
{
	proxy_stop(&px);
	mock_stop(&mock);
}

void
dovecot_start(struct dovecot *d, const char *opts)
{
	char cmd[1024], line[256];
	FILE *f;

	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/mappend-dovecot.XXXXXX");
	cr_assert_not_null(mkdtemp(d->dir));
	snprintf(cmd, sizeof(cmd), "'%s' start '%s/dc' %s",
	    env_path("MAPPEND_DOVECOT_SH"), d->dir, opts != NULL ? opts : "");
	f = popen(cmd, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		sscanf(line, "port=%d", &d->port);
		sscanf(line, "user=%63s", d->user);
		sscanf(line, "password=%63s", d->password);
		sscanf(line, "user2=%63s", d->user2);
		sscanf(line, "password2=%63s", d->password2);
		sscanf(line, "master=%63s", d->master);
		sscanf(line, "master_password=%63s", d->master_password);
		sscanf(line, "tls_port=%d", &d->tls_port);
	}
	cr_assert_eq(pclose(f), 0, "dovecot.sh start failed");
	cr_assert_gt(d->port, 0);
	d->running = true;
}

void
dovecot_stop(struct dovecot *d)
{
	char cmd[1024];

	if (!d->running)
		return;
	snprintf(cmd, sizeof(cmd), "'%s' stop '%s/dc' >/dev/null 2>&1; rm -rf '%s'",
	    env_path("MAPPEND_DOVECOT_SH"), d->dir, d->dir);
	if (system(cmd) != 0)
		cr_log_warn("could not stop dovecot in %s", d->dir);
	d->running = false;
}

void
imapc_connect(struct imapc *c, int port)
{
	imapc_connect_from(c, port, NULL);
}

void
imapc_connect_from(struct imapc *c, int port, const char *source)
{
	struct sockaddr_in sin;
	int on = 1;

	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(c->fd, 0);
	if (source != NULL) {
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		cr_assert_eq(inet_pton(AF_INET, source, &sin.sin_addr), 1, "%s", source);
		cr_assert_eq(bind(c->fd, (struct sockaddr *)&sin, sizeof(sin)), 0,
		    "bind to %s: %s", source, strerror(errno));
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)), 0,
	    "connect to port %d: %s", port, strerror(errno));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

bool
imapc_tls(struct imapc *c, const char *cafile)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl;

	cr_assert_not_null(ctx);
	cr_assert_eq(SSL_CTX_load_verify_locations(ctx, cafile, NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	ssl = SSL_new(ctx);
	SSL_set_tlsext_host_name(ssl, "localhost");
	SSL_set1_host(ssl, "localhost");
	SSL_set_fd(ssl, c->fd);
	c->ctx = ctx;
	if (SSL_connect(ssl) != 1) {
		SSL_free(ssl);
		return false;
	}
	c->ssl = ssl;
	return true;
}

void
make_certs(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "tests/tls/gen-certs.sh '%s'", dir);
	cr_assert_eq(system(cmd), 0, "gen-certs.sh failed");
}

void
imapc_close(struct imapc *c)
{
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	if (c->ctx != NULL)
		SSL_CTX_free(c->ctx);
	c->ssl = c->ctx = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	c->off = c->len = c->cap = 0;
}

void
imapc_send_raw(struct imapc *c, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t w = c->ssl != NULL ? SSL_write(c->ssl, p, (int)(len > 65536 ? 65536 : len)) :
		    send(c->fd, p, len, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		cr_assert_gt(w, 0, "send: %s", strerror(errno));
		p += w;
		len -= (size_t)w;
	}
}

void
imapc_send(struct imapc *c, const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	cr_assert_geq(n, 0);
	imapc_send_raw(c, s, (size_t)n);
	free(s);
}

/* Read more into the buffer; false on timeout or EOF. */
static bool
fill(struct imapc *c, long deadline)
{
	struct pollfd pfd = { c->fd, POLLIN, 0 };
	ssize_t r;
	long left = deadline - now_ms();

	if (c->eof || left <= 0)
		return false;
	if ((c->ssl == NULL || SSL_pending(c->ssl) == 0) && poll(&pfd, 1, (int)left) <= 0)
		return false;
	if (c->off > 0 && c->cap - c->len < 65536) {
		/* reuse the room of what was consumed */
		memmove(c->buf, c->buf + c->off, c->len - c->off);
		c->len -= c->off;
		c->off = 0;
	}
	if (c->cap - c->len < 65536) {
		c->cap = c->cap * 2 + 65536;
		c->buf = realloc(c->buf, c->cap);
		cr_assert_not_null(c->buf);
	}
	if (c->ssl != NULL) {
		r = SSL_read(c->ssl, c->buf + c->len, (int)(c->cap - c->len));
		if (r <= 0 && SSL_get_error(c->ssl, (int)r) == SSL_ERROR_WANT_READ)
			return true;	/* a record not complete yet */
	} else {
		r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
	}
	if (r <= 0) {
		c->eof = true;
		return false;
	}
	c->len += (size_t)r;
	return true;
}

static char *
take(struct imapc *c, size_t n, size_t skip)
{
	char *out = malloc(n + 1);

	cr_assert_not_null(out);
	memcpy(out, c->buf + c->off, n);
	out[n] = '\0';
	c->off += n + skip;
	if (c->off == c->len)
		c->off = c->len = 0;
	return out;
}

char *
imapc_line(struct imapc *c)
{
	long deadline = now_ms() + HARNESS_TIMEOUT_MS;

	for (;;) {
		char *lf = c->len > c->off ? memchr(c->buf + c->off, '\n', c->len - c->off) : NULL;

		if (lf != NULL) {
			size_t n = (size_t)(lf - (c->buf + c->off));
			char *line = take(c, n, 1);

			if (n > 0 && line[n - 1] == '\r')
				line[n - 1] = '\0';
			return line;
		}
		if (!fill(c, deadline))
			return NULL;
	}
}

char *
imapc_bytes(struct imapc *c, size_t n)
{
	long deadline = now_ms() + HARNESS_TIMEOUT_MS;

	while (c->len - c->off < n)
		if (!fill(c, deadline))
			return NULL;
	return take(c, n, 0);
}

/* A line ending with {n} or {n+} announces n bytes of literal data. */
static bool
literal_size(const char *line, size_t *n)
{
	size_t len = strlen(line);
	const char *open;

	if (len < 3 || line[len - 1] != '}')
		return false;
	open = strrchr(line, '{');
	if (open == NULL)
		return false;
	return sscanf(open, "{%zu", n) == 1;
}

static size_t
capacity_for(size_t n)
{
	size_t cap = 256;

	while (cap < n)
		cap *= 2;
	return cap;
}

/* The text buffer always has capacity_for(len + 1) bytes, so that a
 * response of many lines is not copied once per line. */
static void
append(char **text, size_t *len, const char *data, size_t n)
{
	size_t need = *len + n + 1;

	if (*text == NULL || capacity_for(need) != capacity_for(*len + 1))
		*text = realloc(*text, capacity_for(need));
	cr_assert_not_null(*text);
	memcpy(*text + *len, data, n);
	*len += n;
	(*text)[*len] = '\0';
}

char *
imapc_until_tagged(struct imapc *c, const char *tag, size_t *lenp)
{
	char *text = NULL, *line;
	size_t len = 0, taglen = strlen(tag), n;

	append(&text, &len, "", 0);
	for (;;) {
		bool tagged;

		if ((line = imapc_line(c)) == NULL)
			goto fail;
		tagged = strncmp(line, tag, taglen) == 0 && line[taglen] == ' ';
		append(&text, &len, line, strlen(line));
		append(&text, &len, "\r\n", 2);
		/* literal data, then the rest of the response line */
		while (!tagged && literal_size(line, &n)) {
			char *data = imapc_bytes(c, n);

			free(line);
			if (data == NULL)
				goto fail;
			append(&text, &len, data, n);
			free(data);
			if ((line = imapc_line(c)) == NULL)
				goto fail;
			append(&text, &len, line, strlen(line));
			append(&text, &len, "\r\n", 2);
		}
		free(line);
		if (tagged) {
			if (lenp != NULL)
				*lenp = len;
			return text;
		}
	}
fail:
	cr_log_error("no tagged answer for %s; got so far: %.2000s", tag, text);
	free(text);
	return NULL;
}

bool
imapc_wait_closed(struct imapc *c)
{
	long deadline = now_ms() + HARNESS_TIMEOUT_MS;

	while (!c->eof)
		if (!fill(c, deadline) && !c->eof)
			return false;
	return true;
}

/* Send "tag command" and wait for the answer; with must_be_ok the tagged
 * status must be OK. */
static char *
vcommand(struct imapc *c, const char *tag, bool must_be_ok, const char *fmt, va_list ap)
{
	char *text = NULL, *r;

	cr_assert_geq(vasprintf(&text, fmt, ap), 0);
	imapc_send(c, "%s %s\r\n", tag, text);
	r = imapc_until_tagged(c, tag, NULL);
	cr_assert_not_null(r, "no answer to %s", text);
	if (must_be_ok)
		cr_assert(tagged_ok(r, tag), "%s: %s", text, r);
	free(text);
	return r;
}

char *
imapc_command(struct imapc *c, const char *tag, const char *fmt, ...)
{
	va_list ap;
	char *r;

	va_start(ap, fmt);
	r = vcommand(c, tag, false, fmt, ap);
	va_end(ap);
	return r;
}

char *
imapc_ok(struct imapc *c, const char *tag, const char *fmt, ...)
{
	va_list ap;
	char *r;

	va_start(ap, fmt);
	r = vcommand(c, tag, true, fmt, ap);
	va_end(ap);
	return r;
}

bool
tagged_ok(const char *response, const char *tag)
{
	const char *l = last_line(response);
	size_t n = strlen(tag);

	return strncmp(l, tag, n) == 0 && strncmp(l + n, " OK", 3) == 0;
}

void
imapc_expect_plus(struct imapc *c)
{
	char *line = imapc_line(c);

	cr_assert_not_null(line, "no continuation request");
	cr_assert_eq(line[0], '+', "not a continuation request: %s", line);
	free(line);
}

void
imapc_login(struct imapc *c, const char *user, const char *password)
{
	char *r;

	imapc_send(c, "L1 LOGIN \"%s\" \"%s\"\r\n", user, password);
	r = imapc_until_tagged(c, "L1", NULL);
	cr_assert_not_null(r, "no answer to LOGIN");
	cr_assert(strncmp(last_line(r), "L1 OK", 5) == 0, "LOGIN failed: %s", r);
	free(r);
}

void
imapc_connect_login(struct imapc *c, int port, const char *user, const char *password)
{
	imapc_connect(c, port);
	free(imapc_line(c));
	imapc_login(c, user, password);
}

void
proxy_connect(struct imapc *c)
{
	imapc_connect_login(c, px.port, "test", "secret");
}

void
direct_connect(struct imapc *c)
{
	imapc_connect_login(c, mock.port, "test", "secret");
}

const char *
last_line(const char *text)
{
	size_t len = strlen(text);
	const char *p;

	if (len >= 2 && text[len - 2] == '\r')
		len -= 2;
	for (p = text + len; p > text; p--)
		if (p[-1] == '\n')
			return p;
	return text;
}

char *
make_message(size_t size, unsigned seed)
{
	char *m = malloc(size + 1);
	size_t n;

	cr_assert_not_null(m);
	n = (size_t)snprintf(m, size + 1,
	    "From: test%u@example.org\r\nSubject: message %u\r\n\r\n", seed, seed);
	while (n < size) {
		size_t i, line = size - n < 78 ? size - n : 78;

		for (i = 0; i + 2 < line; i++)
			m[n + i] = (char)('a' + (seed + n + i) % 26);
		if (line >= 2) {
			m[n + line - 2] = '\r';
			m[n + line - 1] = '\n';
		} else {
			m[n] = 'z';
		}
		n += line;
	}
	m[size] = '\0';
	return m;
}

size_t
count_substr(const char *haystack, size_t len, const char *needle)
{
	size_t n = 0, nl = strlen(needle);
	const char *p = haystack, *end = haystack + len;

	while (p < end) {
		const char *q = memmem(p, (size_t)(end - p), needle, nl);

		if (q == NULL)
			break;
		n++;
		p = q + nl;
	}
	return n;
}

/*
 * harness.h — what the integration tests and benchmarks share: starting the
 * real mappend binary, the mock upstream and a private Dovecot on loopback
 * ports the kernel chose, and a small scripted IMAP client.
 *
 * The binaries come from the environment the Makefile exports:
 * MAPPEND_BIN, MAPPEND_MOCK, MAPPEND_DOVECOT_SH.  MAPPEND_TEST_EXTRA_CONF,
 * when set, is appended to every configuration proxy_start writes (the
 * suites run once more with "splice = no" that way, see .ci/run).
 */
#ifndef MAPPEND_TEST_HARNESS_H
#define MAPPEND_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define HARNESS_TIMEOUT_MS 15000

struct mock {
	pid_t pid;
	int port;
	int tls_port;		/* with --listen-tls */
};

struct proxy_proc {
	pid_t pid;
	int port;		/* the first plain listener */
	int tls_port;		/* the first "tls" listener, if any */
	char dir[256];		/* temp dir: config, log, spool */
	char conf[300];
	char log[300];
	bool spool_mounted;	/* a tmpfs of ours is on dir/spool */
	size_t fsize_limit;	/* RLIMIT_FSIZE for it, 0: none */
};

struct dovecot {
	char dir[256];
	int port;
	int tls_port;		/* with --ssl */
	char user[64], password[64];
	char user2[64], password2[64];
	char master[64], master_password[64];
	bool running;
};

/* A scripted IMAP client over a blocking socket with timeouts. */
struct imapc {
	int fd;
	void *ssl;		/* SSL * once TLS is on */
	void *ctx;		/* SSL_CTX * */
	char *buf;		/* bytes read; buf[off..len) not yet consumed */
	size_t off, len, cap;
	bool eof;
};

/*
 * The test's own mock and mappend: every test runs in a process of its own,
 * so one of each per test.  harness_start starts both, harness_teardown
 * stops both (the suites' .fini, or called from a suite's own).
 */
extern struct mock mock;
extern struct proxy_proc px;

/* The mock with mock_args (NULL-terminated, may be NULL), then mappend in
 * front of it with conf appended to its config (may be NULL). */
void harness_start(const char *const *mock_args, const char *conf);
/* proxy_stop (exit status and sanitizer output checked), then mock_stop. */
void harness_teardown(void);

/* Start the mock with these arguments (NULL-terminated); --listen is added. */
void mock_start(struct mock *, const char *const *args);
void mock_stop(struct mock *);

/* Start mappend in front of upstream_port (0: extra_conf names the
 * upstream); extra_conf lines are appended to the generated config (may be
 * NULL). */
void proxy_start(struct proxy_proc *, int upstream_port, const char *extra_conf);
/* The same with a spool that holds at most spool_bytes: a tmpfs of that
 * size when the tests run as root, else a file size limit on mappend (the
 * test output says which). */
void proxy_start_spool_limited(struct proxy_proc *, int upstream_port,
    const char *extra_conf, size_t spool_bytes);
/* SIGKILL: a crash, no questions asked. */
void proxy_kill(struct proxy_proc *);
/* Start a killed mappend again on the same configuration and spool; the
 * port changes. */
void proxy_restart(struct proxy_proc *);
/* SIGTERM, wait, and check it exited 0 (sanitizer reports make it fail). */
void proxy_stop(struct proxy_proc *);
/* The proxy's log so far, malloc'ed. */
char *proxy_log(const struct proxy_proc *);
/* Wait until the proxy's log holds text (true), or HARNESS_TIMEOUT_MS. */
bool proxy_log_wait(const struct proxy_proc *, const char *text);
/* The configurations proxy_start writes leave splice on (the default):
 * long literals between plain sockets are moved by the kernel. */
bool harness_splice(void);
/* What mappend's log says at a session's end when the kernel moved
 * literals of it (debug level, which the harness's configurations use). */
#define HARNESS_SPLICED "literals moved by the kernel: "
/* mappend's resident memory now (VmRSS of /proc/PID/status), KiB. */
long proxy_rss_kib(const struct proxy_proc *);

/* opts: extra arguments for dovecot.sh start, e.g. "--legacy --rawlog" */
void dovecot_start(struct dovecot *, const char *opts);
void dovecot_stop(struct dovecot *);

void imapc_connect(struct imapc *, int port);
/* The same from another local address (127.0.0.2: Linux routes all of
 * 127/8 to the loopback interface). */
void imapc_connect_from(struct imapc *, int port, const char *source);
/*
 * Start TLS on the connection (after STARTTLS's OK, or at once for an
 * implicit TLS port), verifying the server against cafile for the name
 * "localhost".  Returns false when the handshake fails.
 */
bool imapc_tls(struct imapc *, const char *cafile);
/* Generate the test certificates (tests/tls/gen-certs.sh) into dir. */
void make_certs(const char *dir);
void imapc_close(struct imapc *);
void imapc_send(struct imapc *, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void imapc_send_raw(struct imapc *, const void *data, size_t len);
/* One line without its CRLF, malloc'ed; NULL on timeout or EOF. */
char *imapc_line(struct imapc *);
/* Read exactly n bytes (literal data), malloc'ed; NULL on timeout or EOF. */
char *imapc_bytes(struct imapc *, size_t n);
/*
 * Everything up to and including the tagged response for tag, literals
 * included (a line ending in {n} is followed by n bytes); malloc'ed, NUL
 * terminated, length in *len when len is not NULL.  NULL on timeout/EOF.
 */
char *imapc_until_tagged(struct imapc *, const char *tag, size_t *len);
/* Wait for the peer to close; true when it did within the timeout. */
bool imapc_wait_closed(struct imapc *);
/* Log in through c as user/password and check the OK. */
void imapc_login(struct imapc *, const char *user, const char *password);
/* Connect to port, read past the greeting (unchecked), log in. */
void imapc_connect_login(struct imapc *, int port, const char *user,
    const char *password);
/* The same as the mock's user test/secret, through px or to the mock. */
void proxy_connect(struct imapc *);
void direct_connect(struct imapc *);

/*
 * Send "tag command" (command from fmt) and return everything up to and
 * including the tagged answer, malloc'ed; the test fails with the command's
 * text when no answer comes.
 */
char *imapc_command(struct imapc *, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same, and the tagged answer must be OK (the test fails showing the
 * whole answer). */
char *imapc_ok(struct imapc *, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Whether the last line of response is "tag OK ...". */
bool tagged_ok(const char *response, const char *tag);
/* Read one line: it must be a continuation request ("+ ..."). */
void imapc_expect_plus(struct imapc *);

/* The tagged line (last line) of a response text. */
const char *last_line(const char *text);
/* A message of about size bytes with a recognisable body. */
char *make_message(size_t size, unsigned seed);
/* Count non-overlapping occurrences of needle in haystack. */
size_t count_substr(const char *haystack, size_t len, const char *needle);

#endif

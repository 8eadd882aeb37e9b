/*
 * bench.h — what the parts of the benchmark program (`make bench`) share.
 *
 *   util.c      errors, time, statistics, byte buffers, test messages, CRC32
 *   client.c    a small IMAP client over TCP or TLS: one connection driven
 *               by exchange(), many by logins_round()
 *   proc.c      what /proc says of a proxy process (CPU, faults, memory),
 *               nginx's worker process
 *   relay.c     the delay relay (a thread holding every chunk for a while)
 *   upload.c    MULTIAPPEND through mappend against direct APPENDs
 *   proxies.c   mappend and nginx side by side: FETCH, idle sessions, logins
 *   recovery.c  SIGKILL during a MULTIAPPEND, the restart with the journal
 *   tlsmem.c    what OpenSSL itself keeps per server-side TLS connection
 *   bench_mappend.c   options, the order of the phases, the report
 */
#ifndef BENCH_H
#define BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#define KiB 1024UL
#define MiB (1024UL * 1024UL)

#define MAX_RUNS 64

/* util.c */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *xmalloc(size_t n);
uint64_t now_ns(void);
void sleep_ms(long ms);
double median(const double *v, int n);
double minimum(const double *v, int n);

/* A growable byte buffer. */
struct buf {
	char *p;
	size_t len, cap;
};

void buf_reserve(struct buf *b, size_t more);
void buf_add(struct buf *b, const void *data, size_t n);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_free(struct buf *b);
void add_message(struct buf *b, size_t size, const char *id, unsigned idx);
uint32_t crc32_update(uint32_t crc, const void *p, size_t n);

/* client.c */

/*
 * A client connection with an incremental response reader: responses are
 * cut at LF, a line ending in {n} is followed by n bytes of literal data
 * (counted, not kept), and only each response's first line is looked at.
 * Every byte of an untagged response ("*" or "+" and its literals and
 * continuation lines) is counted in stream_bytes and, when crc_on, added to
 * stream_crc: what a FETCH returned, without the tagged answer (whose text
 * carries Dovecot's timings).
 */
struct conn {
	int fd;
	SSL *ssl;			/* NULL: plain TCP */
	char *in;			/* read buffer */
	struct buf line;		/* the current line so far */
	uint64_t lit_left;		/* literal bytes still to come */
	bool cont;			/* inside a response, after a literal */
	char first[512];		/* first line of the current response */
	/* counters */
	uint64_t lit_bytes;		/* literal data received */
	uint64_t stream_bytes;		/* untagged responses, literals included */
	uint32_t stream_crc;
	bool crc_on;
	unsigned long responses, tagged, tagged_ok;
	long status_messages;		/* MESSAGES of the last STATUS, or -1 */
	char last_tagged[512];		/* the last tagged answer */
	char last_bad[512];		/* the last tagged answer that was not OK */
	char label[64];
};

struct watch_hook {
	void (*fn)(void *arg);		/* called about every millisecond */
	void *arg;
	bool *done;			/* fn is called while *done is false */
};

int tcp_connect(int port);
void set_nonblock(int fd);
struct conn *conn_new(int port, bool tls, const char *label);
struct conn *conn_open(int port, bool tls, const char *user, const char *pass,
    const char *label);
void conn_close(struct conn *c);
unsigned long exchange(struct conn *c, const char *out, size_t len,
    unsigned long want_tagged, unsigned long want_responses);
void exchange_set_watch(const struct watch_hook *w);
void cmd_ok(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
double logins_round(int port, int total, int parallel, const char *user,
    const char *pass, const char *user2, const char *pass2, const char *label);

/* proc.c */
struct proc_sample {
	double cpu_s;		/* utime + stime (clock ticks) */
	double run_s;		/* sum_exec_runtime of every thread (ns), or -1 */
	unsigned long minflt, majflt;
};

void proc_sample(pid_t pid, struct proc_sample *s);
long proc_status_kb(pid_t pid, const char *key);
int64_t proc_rchar(pid_t pid);
bool reset_hwm(pid_t pid);
pid_t nginx_worker(pid_t master);
pid_t nginx_new_worker(pid_t master);
void loadavg(char *out, size_t n);
void cpu_model(char *out, size_t n);

/* relay.c */
struct relay;
struct relay *relay_start(int target_port, unsigned delay_ms);
int relay_port(const struct relay *r);
void relay_stop(struct relay *r);

/* the options, shared by the phases (bench_mappend.c) */
struct opts {
	int dovecot_port;
	const char *user, *pass, *user2, *pass2;
	/* the main mappend: plain and TLS listeners */
	int mappend_port, mappend_tls_port;
	pid_t mappend_pid;
	/* a mappend with splice = no (plain listener): the copy path beside
	 * the main one's in the FETCH phase; 0 when not given */
	int mcopy_port;
	pid_t mcopy_pid;
	/* fresh mappend instances for the idle sessions */
	int idle_port, idle_tls_port;
	pid_t idle_pid, idle_tls_pid;
	/* nginx: the master, its mail servers */
	pid_t nginx_pid;
	int nginx_port, nginx_tls_port;		/* proxy_buffer 256k */
	int nginxd_port, nginxd_tls_port;	/* proxy_buffer default */
	int runs;		/* rounds of FETCH and logins */
	int upload_runs;	/* runs of each upload without delay */
	int delay_runs;		/* runs of each upload with delay */
	unsigned delay_ms;
	int sessions;
	int logins, login_clients;
	unsigned small_n, big_n, fetch_mib;
	size_t fetch_msg_size;	/* the FETCH's messages, default 256 KiB */
	const char *perf_out;	/* perf record of mappend during the FETCHes */
	/* a mappend of its own with a master user, for the crash journal */
	const char *rec_bin, *rec_conf, *rec_log;
	pid_t rec_pid;
	int rec_port;
	size_t small_size, big_size;
	/* mappend instances that route: a route map; auth_http without and
	 * with its cache (0: not given) */
	int route_map_port, route_http_port, route_cached_port;
	pid_t route_map_pid, route_http_pid, route_cached_pid;
	/* one that routes its users to two mock upstreams, for many idle
	 * sessions */
	int route_idle_port, route_idle_sessions;
	pid_t route_idle_pid;
	/* the TLS listeners' certificate and key: OpenSSL's own share of a
	 * TLS session (tlsmem.c); NULL when not given */
	const char *tls_cert, *tls_key;
};

extern struct opts o;

/* tlsmem.c: KiB of heap per server-side TLS connection after its handshake,
 * over n connections; version gets the protocol and cipher. */
double tls_server_kib(const char *cert, const char *key, int n, char *version,
    size_t vlen);

/* upload.c */
enum mode { MODE_MULTI, MODE_SYNC, MODE_PIPE, NMODES };

struct upload_result {
	const char *title;
	unsigned n;
	size_t size;
	unsigned delay_ms;
	int runs;
	double t[NMODES][MAX_RUNS];	/* seconds */
	long hwm_kb[MAX_RUNS];		/* mappend's VmHWM during each (a) */
	long rss0_kb[MAX_RUNS];		/* and its VmRSS just before */
	double spool_s[MAX_RUNS];	/* (a): until mappend had read it all */
	double cpu_s[MAX_RUNS];		/* (a): mappend's CPU time */
};

extern bool hwm_resettable;

void upload_bench(struct upload_result *res, const char *title, unsigned n,
    size_t size, unsigned delay_ms, int runs);
void report_uploads(const struct upload_result *u, int nu, long rss0_kb);
long upload_max_hwm(const struct upload_result *u);

/* recovery.c */
struct recovery_result {
	bool done;
	unsigned n;
	long fsyncs;		/* per successful MULTIAPPEND, -1 unknown */
	long at_kill, after;	/* messages stored then, and left */
	double start_s;
	bool recovered;
};

void recovery_bench(struct recovery_result *);
void report_recovery(const struct recovery_result *);

/* proxies.c */
/* The paths of every phase, then the FETCH phase's extra one: mappend with
 * splice = no, the copy path of the same binary. */
enum path_id { P_DIRECT, P_MAPPEND, P_NGINX, P_NGINXD, NPATHS, P_MCOPY = NPATHS,
    NFPATHS };
extern const char *const path_name[NFPATHS];

struct fetch_result {
	bool tls;
	int runs, npaths;
	int path[NFPATHS];		/* which paths, in this order */
	size_t msgs, msg_size;
	uint64_t bytes;			/* of the untagged stream, every path */
	uint32_t crc;
	double wall[NFPATHS][MAX_RUNS];
	double cpu[NFPATHS][MAX_RUNS];	/* the proxy's utime + stime */
	double run[NFPATHS][MAX_RUNS];	/* its sum_exec_runtime, or -1 */
	double minflt[NFPATHS][MAX_RUNS];
	long hwm_kb[NFPATHS];		/* VmHWM during the rounds */
	long rss_kb[NFPATHS];		/* VmRSS before them */
};

struct idle_result {
	bool done;
	int n;
	pid_t pid;
	long rss_before_kb, rss_after_kb;
	double open_s;
};

struct login_result {
	int runs, total, parallel;
	double rate[NPATHS][MAX_RUNS];		/* logins per second */
	double cpu_ms[NPATHS][MAX_RUNS];	/* proxy CPU per login */
};

void fetch_bench(struct fetch_result *res, bool tls);

/* routed.c */
enum routed_path { R_FIXED, R_MAP, R_HTTP, R_CACHED, R_NGINX, NRPATHS };
extern const char *const routed_name[NRPATHS];

struct routed_result {
	bool done;
	int runs, total, parallel;
	double rate[NRPATHS][MAX_RUNS];		/* logins per second */
	double cpu_ms[NRPATHS][MAX_RUNS];	/* proxy CPU per login */
};

void routed_bench(struct routed_result *);
void report_routed(const struct routed_result *);
void routed_idle_bench(struct idle_result *);
void report_routed_idle(const struct idle_result *);
void idle_bench(struct idle_result res[NPATHS][2]);
void login_bench(struct login_result *res);

#endif

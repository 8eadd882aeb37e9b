/*
 * bench_mappend.c — the benchmarks of BENCHMARKS.md (`make bench`): options,
 * the order of the phases, and the report.
 *
 * Run by tests/bench/run.sh, which starts a private legacy-mode Dovecot,
 * mappend in front of it (plain and TLS listeners), two fresh mappend
 * instances for the idle sessions, and nginx's mail proxy (one worker; mail
 * servers with proxy_buffer 256k and with the default, plain and TLS), and
 * passes their ports and pids.  Phases, in this order:
 *
 *   idle       memory per logged-in idle session, plain and TLS, of mappend
 *              and nginx (each set on a fresh process)
 *   fetch      FETCH 1:* (BODY.PEEK[]) of 50 MiB in 256 KiB messages:
 *              direct, mappend, mappend with splice = no (the copy path),
 *              nginx 256k, nginx default in rounds; the proxy's CPU time
 *              and page faults, the wall time
 *   fetch-tls  the same through the proxies' TLS listeners
 *   logins     connect, greeting, LOGIN, LOGOUT: logins per second
 *   small, big, small-delay, big-delay
 *              uploads (upload.c): one MULTIAPPEND through mappend against
 *              direct APPENDs, one at a time and pipelined
 *
 * Exit status: 0 when every benchmark ran (targets are reported, never
 * asserted), 1 on an error (a refused command, a lost connection, a wrong
 * message count or FETCH stream, a proxy gone), 2 on bad usage.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"

struct opts o;

/* What a run measures: --only takes a comma-separated list of these. */
enum {
	PH_IDLE = 1 << 0,
	PH_FETCH = 1 << 1,
	PH_FETCH_TLS = 1 << 2,
	PH_LOGINS = 1 << 3,
	PH_SMALL = 1 << 4,
	PH_BIG = 1 << 5,
	PH_SMALL_DELAY = 1 << 6,
	PH_BIG_DELAY = 1 << 7,
	PH_RECOVERY = 1 << 8,
	PH_ROUTED = 1 << 9,
	PH_ROUTED_IDLE = 1 << 10,
	PH_ALL = (1 << 11) - 1,
	PH_UPLOADS = PH_SMALL | PH_BIG | PH_SMALL_DELAY | PH_BIG_DELAY,
};
static const char *const phase_names[] = {
	"idle", "fetch", "fetch-tls", "logins", "small", "big", "small-delay",
	"big-delay", "recovery", "routed", "routed-idle",
};
#define NPHASES (sizeof(phase_names) / sizeof(*phase_names))

static void
usage(const char *argv0, int status)
{
	fprintf(status == 0 ? stdout : stderr,
"usage: tests/bench/run.sh BUILD_DIR [options]     (make bench BENCH_ARGS='...')\n"
"\n"
"Options (defaults: the full set that make bench runs):\n"
"  --only LIST        comma-separated phases: idle, fetch, fetch-tls, logins,\n"
"                     small, big, small-delay, big-delay, recovery, routed,\n"
"                     routed-idle;\n"
"                     uploads\n"
"                     (the four upload phases); all (default)\n"
"  --runs N           rounds of each FETCH and logins path (default 9)\n"
"  --fetch-mib N      size of the FETCH in MiB, as N x 4 messages of 256 KiB\n"
"                     (default 50)\n"
"  --fetch-kib N      size of the FETCH's messages in KiB (default 256; the\n"
"                     FETCH is still --fetch-mib)\n"
"  --sessions N       idle sessions per set (default and most: 1000, what\n"
"                     the private Dovecot takes at once)\n"
"  --logins N         logins per round and path (default 200)\n"
"  --login-clients N  of them in parallel (default 8)\n"
"  --upload-runs N    runs of each upload without delay (default 3)\n"
"  --delay-runs N     runs of each upload with delay (default 3)\n"
"  --delay-ms MS      the delay each way for the delay cases (default 10)\n"
"  --big-kib N        size of the 100 messages of the big upload (default 256)\n"
"  --perf FILE        perf record -g of mappend during the timed FETCHes into\n"
"                     FILE (FILE.tls for fetch-tls, FILE.copy for the\n"
"                     splice = no instance); perf's own CPU disturbs\n"
"                     the figures: for profiles only\n"
"  --help             this text\n"
"\n"
"Quick run: --only fetch,idle,logins --runs 3 --sessions 100 --fetch-mib 10\n"
"\n"
"run.sh passes the rest (%s): --dovecot-port P --user U --password PW\n"
"--user2 U --password2 PW --mappend-port P --mappend-tls-port P\n"
"--mappend-pid PID --idle-port P --idle-pid PID --idle-tls-port P\n"
"--idle-tls-pid PID --nginx-pid PID --nginx-port P --nginx-tls-port P\n"
"--nginx-default-port P --nginx-default-tls-port P; optionally\n"
"--mappend-copy-port P --mappend-copy-pid PID (a mappend with splice = no);\n"
"--route-map-port P --route-map-pid PID --route-http-port P\n"
"--route-http-pid PID --route-cached-port P --route-cached-pid PID (routing\n"
"instances, for the routed phase); --route-idle-port P --route-idle-pid PID\n"
"--route-idle-sessions N (the routed-idle phase); --tls-cert FILE --tls-key\n"
"FILE (OpenSSL's own share of a TLS session, in the idle report)\n",
	    argv0);
	exit(status);
}

static unsigned
parse_phases(const char *arg)
{
	char *copy = strdup(arg), *tok, *save = NULL;
	unsigned ph = 0, i;

	if (copy == NULL)
		die("out of memory");
	for (tok = strtok_r(copy, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "all") == 0) {
			ph |= PH_ALL;
			continue;
		}
		if (strcmp(tok, "uploads") == 0) {
			ph |= PH_UPLOADS;
			continue;
		}
		for (i = 0; i < NPHASES; i++)
			if (strcmp(tok, phase_names[i]) == 0)
				break;
		if (i == NPHASES) {
			fprintf(stderr, "bench_mappend: unknown phase '%s' (idle, fetch, "
			    "fetch-tls, logins, small, big, small-delay, big-delay, "
			    "recovery, routed, uploads, all)\n", tok);
			exit(2);
		}
		ph |= 1u << i;
	}
	free(copy);
	return ph;
}

static const char *
size_str(size_t s, char *out, size_t n)
{
	if (s % MiB == 0)
		snprintf(out, n, "%zu MiB", s / MiB);
	else if (s % KiB == 0)
		snprintf(out, n, "%zu KiB", s / KiB);
	else
		snprintf(out, n, "%zu B", s);
	return out;
}

/* ---------------------------------------------------------------- report */

/* The CPU figures of a path: sum_exec_runtime where every round had it. */
static const double *
fetch_cpu(const struct fetch_result *f, int p)
{
	int r;

	for (r = 0; r < f->runs; r++)
		if (f->run[p][r] < 0)
			return f->cpu[p];
	return f->run[p];
}

static void
report_fetch(const struct fetch_result *f)
{
	int k;

	char size[32];

	printf("\nPass-through: FETCH 1:* (BODY.PEEK[]) of %zu x %s%s "
	    "(%d rounds, paths in turn)\n", f->msgs,
	    size_str(f->msg_size, size, sizeof(size)), f->tls ?
	    ", client side over TLS" : "", f->runs);
	printf("  every path returned %llu bytes of untagged responses, CRC32 "
	    "%08x\n\n", (unsigned long long)f->bytes, (unsigned)f->crc);
	printf("  %-14s %9s %9s %8s %9s %9s %9s %9s %9s %9s\n", "", "wall min",
	    "median", "/direct", "CPU min", "median", "ticks", "minflt", "VmRSS",
	    "VmHWM");
	printf("  %-14s %9s %9s %8s %9s %9s %9s %9s %9s %9s\n", "", "s", "s",
	    "(min)", "s", "s", "med. s", "median", "KiB", "KiB");
	for (k = 0; k < f->npaths; k++) {
		int p = f->path[k];
		double wmin = minimum(f->wall[p], f->runs);
		char ratio[16] = "-";

		if (!f->tls && p != P_DIRECT)
			snprintf(ratio, sizeof(ratio), "%.3f", wmin /
			    minimum(f->wall[P_DIRECT], f->runs));
		if (p == P_DIRECT) {
			printf("  %-14s %9.3f %9.3f %8s %9s %9s %9s %9s %9s %9s\n",
			    path_name[p], wmin, median(f->wall[p], f->runs), ratio,
			    "-", "-", "-", "-", "-", "-");
			continue;
		}
		printf("  %-14s %9.3f %9.3f %8s %9.4f %9.4f %9.2f %9.0f %9ld %9ld\n",
		    path_name[p], wmin, median(f->wall[p], f->runs), ratio,
		    minimum(fetch_cpu(f, p), f->runs),
		    median(fetch_cpu(f, p), f->runs), median(f->cpu[p], f->runs),
		    median(f->minflt[p], f->runs), f->rss_kb[p], f->hwm_kb[p]);
	}
	printf("\n  CPU: the proxy process's (nginx: its worker's) run time from "
	    "/proc/PID/task/*/schedstat\n  (ns); \"ticks\": utime+stime of "
	    "/proc/PID/stat, the same time in 10 ms steps; minflt:\n  minor page "
	    "faults of the process per FETCH (/proc/PID/stat); VmRSS before the "
	    "rounds,\n  VmHWM after them (nginx's two paths share one worker)\n");
	for (k = 0; k < f->npaths; k++)
		if (f->path[k] == P_MCOPY)
			printf("  mappend copy: a second mappend, splice = no (every "
			    "literal copied through user space)\n");
}

static double
idle_kib(const struct idle_result *r)
{
	return (double)(r->rss_after_kb - r->rss_before_kb) / r->n;
}

static void
report_idle(struct idle_result idle[NPATHS][2])
{
	int p, t;

	printf("\nIdle sessions: logged in, then idle (each set on a fresh "
	    "process)\n\n");
	printf("  %-22s %9s %9s %9s %12s %9s\n", "", "sessions", "VmRSS", "after",
	    "per session", "opened in");
	for (p = P_MAPPEND; p < NPATHS; p++)
		for (t = 0; t < 2; t++) {
			const struct idle_result *r = &idle[p][t];
			char name[64];

			if (!r->done)
				continue;
			snprintf(name, sizeof(name), "%s, %s", path_name[p],
			    t ? "TLS" : "plain");
			printf("  %-22s %9d %6ld KiB %6ld KiB %8.1f KiB %7.1f s\n",
			    name, r->n, r->rss_before_kb, r->rss_after_kb,
			    idle_kib(r), r->open_s);
		}
	printf("\n  per session: (VmRSS with the sessions - VmRSS before) / "
	    "sessions, of mappend\n  or nginx's worker; kernel socket buffers "
	    "are not in it\n");
	if (o.tls_cert != NULL && o.tls_key != NULL && idle[P_MAPPEND][1].done) {
		char version[96];
		double kib = tls_server_kib(o.tls_cert, o.tls_key, o.sessions, version,
		    sizeof(version));

		printf("  of a TLS session, OpenSSL's own state: %.1f KiB per connection\n"
		    "  (its heap per server-side SSL after the handshake, %d of them in this\n"
		    "  program, set up as mappend's, SSL_MODE_RELEASE_BUFFERS; %s)\n",
		    kib, o.sessions, version);
	}
}

static void
report_logins(const struct login_result *l)
{
	int p;

	printf("\nLogins: connect, greeting, LOGIN, LOGOUT; %d per round, %d in "
	    "parallel, %d rounds\n\n", l->total, l->parallel, l->runs);
	printf("  %-14s %10s %10s %10s %14s\n", "", "min /s", "median /s",
	    "max /s", "proxy CPU ms");
	for (p = 0; p < NPATHS; p++) {
		double mx = 0;
		int r;

		for (r = 0; r < l->runs; r++)
			if (l->rate[p][r] > mx)
				mx = l->rate[p][r];
		printf("  %-14s %10.0f %10.0f %10.0f ", path_name[p],
		    minimum(l->rate[p], l->runs), median(l->rate[p], l->runs), mx);
		if (p == P_DIRECT)
			printf("%14s\n", "-");
		else
			printf("%14.3f\n", median(l->cpu_ms[p], l->runs));
	}
	printf("\n  proxy CPU ms: median per login of the proxy process (nginx: "
	    "its worker,\n  which also answers its own auth_http request)\n");
}

/* One row of the summary: a figure, the four paths, the ratios, the target. */
struct row {
	const char *what;
	const char *unit;	/* printf format of a value */
	double v[NPATHS];	/* < 0: not measured */
	const char *target;
	double limit;		/* the ratio or value the target allows */
	int against;		/* the target compares mappend with this path, or
				 * -1: mappend's value itself */
};

static void
print_value(const char *fmt, double v)
{
	char s[32];

	if (v < 0)
		snprintf(s, sizeof(s), "-");
	else
		snprintf(s, sizeof(s), fmt, v);
	printf(" %10s", s);
}

static void
print_ratio(double a, double b)
{
	if (a < 0 || b <= 0)
		printf(" %7s", "-");
	else
		printf(" %7.2f", a / b);
}

static void
print_row(const struct row *r)
{
	int p;

	printf("  %-34s", r->what);
	for (p = 0; p < NPATHS; p++)
		print_value(r->unit, r->v[p]);
	print_ratio(r->v[P_MAPPEND], r->v[P_NGINX]);
	print_ratio(r->v[P_MAPPEND], r->v[P_NGINXD]);
	print_ratio(r->v[P_MAPPEND], r->v[P_DIRECT]);
	if (r->target != NULL) {
		double x = r->against < 0 ? r->v[P_MAPPEND] :
		    r->v[P_MAPPEND] / r->v[r->against];
		bool have = r->v[P_MAPPEND] >= 0 &&
		    (r->against < 0 || r->v[r->against] > 0);

		printf("  %-22s %s", r->target, !have ? "n/a" :
		    x <= r->limit ? "met" : "MISSED");
	}
	printf("\n");
}

static void
init_row(struct row *r, const char *what, const char *unit)
{
	int p;

	memset(r, 0, sizeof(*r));
	r->what = what;
	r->unit = unit;
	for (p = 0; p < NPATHS; p++)
		r->v[p] = -1;
	r->against = -1;
}

/* The same FETCH through mappend with splice = no, in mappend's column:
 * before and after in one run. */
static void
report_copy_rows(const struct fetch_result *f)
{
	struct row r;
	int p;

	init_row(&r, "FETCH, splice = no: CPU s (med.)", "%.4f");
	r.v[P_MAPPEND] = median(fetch_cpu(f, P_MCOPY), f->runs);
	for (p = P_NGINX; p < NPATHS; p++)
		r.v[p] = median(fetch_cpu(f, p), f->runs);
	r.target = "<= 0.5x nginx 256k";
	r.limit = 0.5;
	r.against = P_NGINX;
	print_row(&r);
	init_row(&r, "FETCH, splice = no: wall s (min)", "%.3f");
	for (p = 0; p < NPATHS; p++)
		r.v[p] = minimum(f->wall[p == P_MAPPEND ? P_MCOPY : p], f->runs);
	r.target = "<= 1.05x direct";
	r.limit = 1.05;
	r.against = P_DIRECT;
	print_row(&r);
}

static void
report_summary(unsigned phases, const struct fetch_result *f,
    const struct fetch_result *ft, struct idle_result idle[NPATHS][2],
    const struct login_result *l, const struct upload_result *up, int nup)
{
	struct row r;
	char s[32];
	int p, i;

	printf("\nSummary: mappend beside nginx and direct, from this run\n"
	    "(targets of issue 12, reported, never asserted)\n\n");
	printf("  %-34s %10s %10s %10s %10s %7s %7s %7s  %s\n", "", "direct",
	    "mappend", "nginx 256k", "nginx dflt", "m/n256", "m/ndflt", "m/dir",
	    "target");
	if (phases & PH_FETCH) {
		init_row(&r, "FETCH: proxy CPU s (median)", "%.4f");
		for (p = P_MAPPEND; p < NPATHS; p++)
			r.v[p] = median(fetch_cpu(f, p), f->runs);
		r.target = "<= 0.5x nginx 256k";
		r.limit = 0.5;
		r.against = P_NGINX;
		print_row(&r);
		init_row(&r, "FETCH: proxy CPU s (min)", "%.4f");
		for (p = P_MAPPEND; p < NPATHS; p++)
			r.v[p] = minimum(fetch_cpu(f, p), f->runs);
		print_row(&r);
		init_row(&r, "FETCH: wall s (min)", "%.3f");
		for (p = 0; p < NPATHS; p++)
			r.v[p] = minimum(f->wall[p], f->runs);
		r.target = "<= 1.05x direct";
		r.limit = 1.05;
		r.against = P_DIRECT;
		print_row(&r);
		init_row(&r, "FETCH: wall s (median)", "%.3f");
		for (p = 0; p < NPATHS; p++)
			r.v[p] = median(f->wall[p], f->runs);
		print_row(&r);
		init_row(&r, "FETCH: page faults (median)", "%.0f");
		for (p = P_MAPPEND; p < NPATHS; p++)
			r.v[p] = median(f->minflt[p], f->runs);
		print_row(&r);
		if (o.mcopy_port != 0)
			report_copy_rows(f);
	}
	if (phases & PH_FETCH_TLS) {
		init_row(&r, "FETCH over TLS: CPU s (median)", "%.4f");
		for (p = P_MAPPEND; p < NPATHS; p++)
			r.v[p] = median(fetch_cpu(ft, p), ft->runs);
		r.target = "<= 1.0x nginx 256k";
		r.limit = 1.0;
		r.against = P_NGINX;
		print_row(&r);
		init_row(&r, "FETCH over TLS: page faults (med.)", "%.0f");
		for (p = P_MAPPEND; p < NPATHS; p++)
			r.v[p] = median(ft->minflt[p], ft->runs);
		print_row(&r);
	}
	if (phases & PH_IDLE) {
		init_row(&r, "idle session, plain: KiB", "%.1f");
		for (p = P_MAPPEND; p < NPATHS; p++)
			r.v[p] = idle_kib(&idle[p][0]);
		r.target = "<= 4 KiB";
		r.limit = 4;
		print_row(&r);
		init_row(&r, "idle session, TLS: KiB", "%.1f");
		for (p = P_MAPPEND; p < NPATHS; p++)
			r.v[p] = idle_kib(&idle[p][1]);
		r.target = "<= 12 KiB";
		r.limit = 12;
		print_row(&r);
	}
	if (phases & PH_LOGINS) {
		init_row(&r, "logins per second (median)", "%.0f");
		for (p = 0; p < NPATHS; p++)
			r.v[p] = median(l->rate[p], l->runs);
		print_row(&r);
		init_row(&r, "logins: proxy CPU ms per login", "%.3f");
		for (p = P_MAPPEND; p < NPATHS; p++)
			r.v[p] = median(l->cpu_ms[p], l->runs);
		print_row(&r);
	}
	for (i = 0; i < nup; i++) {
		char what[64], text[96];
		double a = median(up[i].t[MODE_MULTI], up[i].runs);
		double c = median(up[i].t[MODE_PIPE], up[i].runs);
		double limit = up[i].size <= 4 * KiB ? 1.05 : 1.10;

		if (up[i].delay_ms != 0)
			continue;
		snprintf(what, sizeof(what), "upload %s: a/c", up[i].title);
		snprintf(text, sizeof(text), "a/c = %.3f  (a %.3f s, c %.3f s)",
		    a / c, a, c);
		printf("  %-34s %-67s", what, text);
		/* the targets are for these two sizes */
		if ((up[i].n == 1000 && up[i].size == 4 * KiB) ||
		    (up[i].n == 100 && up[i].size == 256 * KiB))
			printf("  <= %.2f                %s", limit, a / c <= limit ?
			    "met" : "MISSED");
		printf("\n");
	}
	printf("\n  m/n256, m/ndflt, m/dir: mappend's figure divided by nginx "
	    "256k's, nginx default's,\n  direct's.  CPU: of the proxy process "
	    "(nginx: its worker) per FETCH of %zu x %s.\n",
	    (size_t)o.fetch_mib * MiB / o.fetch_msg_size,
	    size_str(o.fetch_msg_size, s, sizeof(s)));
	if (nup > 0)
		printf("  Uploads: (a) one MULTIAPPEND via mappend, (c) pipelined "
		    "APPENDs directly (medians).\n");
}

/* ------------------------------------------------------------------ main */

static int
num(const char *arg, int lo, int hi, const char *what, const char *argv0)
{
	char *end;
	long v = strtol(arg, &end, 10);

	if (*arg == '\0' || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "bench_mappend: %s: '%s' is not a number from %d to "
		    "%d\n", what, arg, lo, hi);
		usage(argv0, 2);
	}
	return (int)v;
}

int
main(int argc, char **argv)
{
	enum {
		O_DOVECOT = 256, O_USER, O_PASS, O_USER2, O_PASS2, O_MPORT,
		O_MTLS, O_MPID, O_IPORT, O_IPID, O_ITPORT, O_ITPID, O_NPID,
		O_NPORT, O_NTLS, O_NDPORT, O_NDTLS, O_ONLY, O_RUNS, O_FETCH_MIB,
		O_SESSIONS, O_LOGINS, O_LCLIENTS, O_URUNS, O_DRUNS, O_DELAY,
		O_BIG_KIB, O_PERF, O_RBIN, O_RCONF, O_RLOG, O_RPID, O_RPORT, O_RMPORT,
		O_RMPID, O_RHPORT, O_RHPID, O_RCPORT, O_RCPID, O_RIPORT, O_RIPID,
		O_RISESS, O_HELP,
		O_CPORT, O_CPID, O_FETCH_KIB, O_TLS_CERT, O_TLS_KEY,
	};
	static const struct option longopts[] = {
		{ "dovecot-port", required_argument, NULL, O_DOVECOT },
		{ "user", required_argument, NULL, O_USER },
		{ "password", required_argument, NULL, O_PASS },
		{ "user2", required_argument, NULL, O_USER2 },
		{ "password2", required_argument, NULL, O_PASS2 },
		{ "mappend-port", required_argument, NULL, O_MPORT },
		{ "mappend-tls-port", required_argument, NULL, O_MTLS },
		{ "mappend-pid", required_argument, NULL, O_MPID },
		{ "idle-port", required_argument, NULL, O_IPORT },
		{ "idle-pid", required_argument, NULL, O_IPID },
		{ "idle-tls-port", required_argument, NULL, O_ITPORT },
		{ "idle-tls-pid", required_argument, NULL, O_ITPID },
		{ "nginx-pid", required_argument, NULL, O_NPID },
		{ "nginx-port", required_argument, NULL, O_NPORT },
		{ "nginx-tls-port", required_argument, NULL, O_NTLS },
		{ "nginx-default-port", required_argument, NULL, O_NDPORT },
		{ "nginx-default-tls-port", required_argument, NULL, O_NDTLS },
		{ "only", required_argument, NULL, O_ONLY },
		{ "phases", required_argument, NULL, O_ONLY },
		{ "runs", required_argument, NULL, O_RUNS },
		{ "fetch-mib", required_argument, NULL, O_FETCH_MIB },
		{ "fetch-kib", required_argument, NULL, O_FETCH_KIB },
		{ "mappend-copy-port", required_argument, NULL, O_CPORT },
		{ "mappend-copy-pid", required_argument, NULL, O_CPID },
		{ "sessions", required_argument, NULL, O_SESSIONS },
		{ "logins", required_argument, NULL, O_LOGINS },
		{ "login-clients", required_argument, NULL, O_LCLIENTS },
		{ "upload-runs", required_argument, NULL, O_URUNS },
		{ "delay-runs", required_argument, NULL, O_DRUNS },
		{ "delay-ms", required_argument, NULL, O_DELAY },
		{ "big-kib", required_argument, NULL, O_BIG_KIB },
		{ "perf", required_argument, NULL, O_PERF },
		{ "recovery-bin", required_argument, NULL, O_RBIN },
		{ "recovery-conf", required_argument, NULL, O_RCONF },
		{ "recovery-log", required_argument, NULL, O_RLOG },
		{ "recovery-pid", required_argument, NULL, O_RPID },
		{ "recovery-port", required_argument, NULL, O_RPORT },
		{ "route-map-port", required_argument, NULL, O_RMPORT },
		{ "route-map-pid", required_argument, NULL, O_RMPID },
		{ "route-http-port", required_argument, NULL, O_RHPORT },
		{ "route-http-pid", required_argument, NULL, O_RHPID },
		{ "route-cached-port", required_argument, NULL, O_RCPORT },
		{ "route-cached-pid", required_argument, NULL, O_RCPID },
		{ "route-idle-port", required_argument, NULL, O_RIPORT },
		{ "route-idle-pid", required_argument, NULL, O_RIPID },
		{ "route-idle-sessions", required_argument, NULL, O_RISESS },
		{ "tls-cert", required_argument, NULL, O_TLS_CERT },
		{ "tls-key", required_argument, NULL, O_TLS_KEY },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	static struct fetch_result fr, frt;
	static struct idle_result idle[NPATHS][2];
	static struct login_result lr;
	static struct upload_result up[4];
	static struct recovery_result rr;
	static struct routed_result rt;
	static struct idle_result ri;
	struct rlimit rl;
	char cpu[256], s1[32], title[4][128], load0[128], load1[128];
	unsigned phases = PH_ALL;
	int ch, nup = 0, most;
	long rss0;

	o.runs = 9;
	o.upload_runs = 3;
	o.delay_runs = 3;
	o.fetch_mib = 50;
	o.fetch_msg_size = 256 * KiB;
	o.delay_ms = 10;
	o.sessions = 1000;
	o.logins = 200;
	o.login_clients = 8;
	o.small_n = 1000;
	o.small_size = 4 * KiB;
	o.big_n = 100;
	o.big_size = 256 * KiB;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case O_DOVECOT: o.dovecot_port = num(optarg, 1, 65535, "port", argv[0]); break;
		case O_USER: o.user = optarg; break;
		case O_PASS: o.pass = optarg; break;
		case O_USER2: o.user2 = optarg; break;
		case O_PASS2: o.pass2 = optarg; break;
		case O_MPORT: o.mappend_port = num(optarg, 1, 65535, "port", argv[0]); break;
		case O_MTLS: o.mappend_tls_port = num(optarg, 1, 65535, "port", argv[0]); break;
		case O_MPID: o.mappend_pid = num(optarg, 1, INT32_MAX, "pid", argv[0]); break;
		case O_IPORT: o.idle_port = num(optarg, 1, 65535, "port", argv[0]); break;
		case O_IPID: o.idle_pid = num(optarg, 1, INT32_MAX, "pid", argv[0]); break;
		case O_ITPORT: o.idle_tls_port = num(optarg, 1, 65535, "port", argv[0]); break;
		case O_ITPID: o.idle_tls_pid = num(optarg, 1, INT32_MAX, "pid", argv[0]); break;
		case O_NPID: o.nginx_pid = num(optarg, 1, INT32_MAX, "pid", argv[0]); break;
		case O_NPORT: o.nginx_port = num(optarg, 1, 65535, "port", argv[0]); break;
		case O_NTLS: o.nginx_tls_port = num(optarg, 1, 65535, "port", argv[0]); break;
		case O_NDPORT: o.nginxd_port = num(optarg, 1, 65535, "port", argv[0]); break;
		case O_NDTLS: o.nginxd_tls_port = num(optarg, 1, 65535, "port", argv[0]); break;
		case O_ONLY: phases = parse_phases(optarg); break;
		case O_RUNS: o.runs = num(optarg, 1, MAX_RUNS, "--runs", argv[0]); break;
		case O_FETCH_MIB: o.fetch_mib = (unsigned)num(optarg, 1, 2000, "--fetch-mib", argv[0]); break;
		case O_FETCH_KIB: o.fetch_msg_size = (size_t)num(optarg, 1, 65536, "--fetch-kib", argv[0]) * KiB; break;
		case O_CPORT: o.mcopy_port = num(optarg, 1, 65535, "port", argv[0]); break;
		case O_CPID: o.mcopy_pid = num(optarg, 1, INT32_MAX, "pid", argv[0]); break;
		case O_SESSIONS: o.sessions = num(optarg, 1, 1000, "--sessions", argv[0]); break;
		case O_LOGINS: o.logins = num(optarg, 1, 100000, "--logins", argv[0]); break;
		case O_LCLIENTS: o.login_clients = num(optarg, 1, 500, "--login-clients", argv[0]); break;
		case O_URUNS: o.upload_runs = num(optarg, 1, MAX_RUNS, "--upload-runs", argv[0]); break;
		case O_DRUNS: o.delay_runs = num(optarg, 1, MAX_RUNS, "--delay-runs", argv[0]); break;
		case O_DELAY: o.delay_ms = (unsigned)num(optarg, 1, 10000, "--delay-ms", argv[0]); break;
		case O_BIG_KIB: o.big_size = (size_t)num(optarg, 1, 65536, "--big-kib", argv[0]) * KiB; break;
		case O_PERF: o.perf_out = optarg; break;
		case O_RBIN: o.rec_bin = optarg; break;
		case O_RCONF: o.rec_conf = optarg; break;
		case O_RLOG: o.rec_log = optarg; break;
		case O_RPID: o.rec_pid = num(optarg, 1, INT32_MAX, "pid", argv[0]); break;
		case O_RPORT: o.rec_port = num(optarg, 1, 65535, "port", argv[0]); break;
		case O_RMPORT: o.route_map_port = num(optarg, 1, 65535, "port", argv[0]); break;
		case O_RMPID: o.route_map_pid = num(optarg, 1, INT32_MAX, "pid", argv[0]); break;
		case O_RHPORT: o.route_http_port = num(optarg, 1, 65535, "port", argv[0]); break;
		case O_RHPID: o.route_http_pid = num(optarg, 1, INT32_MAX, "pid", argv[0]); break;
		case O_RCPORT: o.route_cached_port = num(optarg, 1, 65535, "port", argv[0]); break;
		case O_RCPID: o.route_cached_pid = num(optarg, 1, INT32_MAX, "pid", argv[0]); break;
		case O_RIPORT: o.route_idle_port = num(optarg, 1, 65535, "port", argv[0]); break;
		case O_RIPID: o.route_idle_pid = num(optarg, 1, INT32_MAX, "pid", argv[0]); break;
		case O_RISESS: o.route_idle_sessions = num(optarg, 1, 9500, "--route-idle-sessions", argv[0]); break;
		case O_TLS_CERT: o.tls_cert = optarg; break;
		case O_TLS_KEY: o.tls_key = optarg; break;
		case O_HELP: case 'h': usage(argv[0], 0); break;
		default: usage(argv[0], 2);
		}
	}
	if (optind != argc || !o.dovecot_port || !o.user || !o.pass || !o.user2 ||
	    !o.pass2 || !o.mappend_port || !o.mappend_tls_port || !o.mappend_pid ||
	    !o.idle_port || !o.idle_pid || !o.idle_tls_port || !o.idle_tls_pid ||
	    !o.nginx_pid || !o.nginx_port || !o.nginx_tls_port || !o.nginxd_port ||
	    !o.nginxd_tls_port || phases == 0 || (!o.mcopy_port != !o.mcopy_pid) ||
	    o.fetch_msg_size > (size_t)o.fetch_mib * MiB)
		usage(argv[0], 2);
	signal(SIGPIPE, SIG_IGN);
	/* one descriptor per idle session, and some */
	most = o.sessions > o.route_idle_sessions ? o.sessions : o.route_idle_sessions;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur < (rlim_t)most + 64) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1 ||
		    rl.rlim_cur < (rlim_t)most + 64)
			die("RLIMIT_NOFILE %lu is too low for %d sessions",
			    (unsigned long)rl.rlim_cur, most);
	}
	rss0 = proc_status_kb(o.mappend_pid, "VmRSS");
	loadavg(load0, sizeof(load0));

	/* first: it reloads nginx, and mappend's idle instances are fresh */
	if (phases & PH_IDLE)
		idle_bench(idle);
	if (phases & PH_FETCH)
		fetch_bench(&fr, false);
	if (phases & PH_FETCH_TLS)
		fetch_bench(&frt, true);
	if (phases & PH_LOGINS)
		login_bench(&lr);
	if ((phases & PH_ROUTED) && o.route_map_pid != 0 && o.route_http_pid != 0 &&
	    o.route_cached_pid != 0)
		routed_bench(&rt);
	if ((phases & PH_ROUTED_IDLE) && o.route_idle_pid != 0)
		routed_idle_bench(&ri);

	snprintf(title[0], sizeof(title[0]), "%u x %s", o.small_n,
	    size_str(o.small_size, s1, sizeof(s1)));
	snprintf(title[1], sizeof(title[1]), "%u x %s", o.big_n,
	    size_str(o.big_size, s1, sizeof(s1)));
	snprintf(title[2], sizeof(title[2]), "%.60s, %u ms delay", title[0], o.delay_ms);
	snprintf(title[3], sizeof(title[3]), "%.60s, %u ms delay", title[1], o.delay_ms);
	if (phases & PH_SMALL)
		upload_bench(&up[nup++], title[0], o.small_n, o.small_size, 0,
		    o.upload_runs);
	if (phases & PH_BIG)
		upload_bench(&up[nup++], title[1], o.big_n, o.big_size, 0,
		    o.upload_runs);
	if (phases & PH_SMALL_DELAY)
		upload_bench(&up[nup++], title[2], o.small_n, o.small_size,
		    o.delay_ms, o.delay_runs);
	if (phases & PH_BIG_DELAY)
		upload_bench(&up[nup++], title[3], o.big_n, o.big_size, o.delay_ms,
		    o.delay_runs);
	if ((phases & PH_RECOVERY) && o.rec_bin != NULL && o.rec_port != 0)
		recovery_bench(&rr);

	/* ---- the report */
	loadavg(load1, sizeof(load1));
	cpu_model(cpu, sizeof(cpu));
	printf("\nmappend benchmarks\n==================\n");
	printf("machine: %ld CPUs online, %s\n", sysconf(_SC_NPROCESSORS_ONLN), cpu);
	printf("upstream: private legacy-mode Dovecot on 127.0.0.1:%d\n"
	    "mappend on 127.0.0.1:%d, TLS :%d (pid %ld); idle-session instances "
	    "pids %ld, %ld\nnginx (master %ld, 1 worker): proxy_buffer 256k on :%d, "
	    "TLS :%d; default on :%d, TLS :%d\n", o.dovecot_port, o.mappend_port,
	    o.mappend_tls_port, (long)o.mappend_pid, (long)o.idle_pid,
	    (long)o.idle_tls_pid, (long)o.nginx_pid, o.nginx_port,
	    o.nginx_tls_port, o.nginxd_port, o.nginxd_tls_port);
	printf("rounds: %d per FETCH and logins path; %d per upload without "
	    "delay, %d with\n", o.runs, o.upload_runs, o.delay_runs);
	printf("/proc/loadavg: at start %s; at end %s\n", load0, load1);

	if (phases & PH_IDLE)
		report_idle(idle);
	if (phases & PH_FETCH)
		report_fetch(&fr);
	if (phases & PH_FETCH_TLS)
		report_fetch(&frt);
	if (phases & PH_LOGINS)
		report_logins(&lr);
	if (rt.done)
		report_routed(&rt);
	if (ri.done)
		report_routed_idle(&ri);
	if (nup > 0)
		report_uploads(up, nup, rss0);
	for (int i = 0; i < nup; i++)
		if (up[i].delay_ms != 0)
			printf("\n  %s: (a) %.1fx faster than (b) (pipelining "
			    "directly, (c): %.1fx)", up[i].title,
			    median(up[i].t[MODE_SYNC], up[i].runs) /
			    median(up[i].t[MODE_MULTI], up[i].runs),
			    median(up[i].t[MODE_SYNC], up[i].runs) /
			    median(up[i].t[MODE_PIPE], up[i].runs));
	if (nup > 0)
		printf("\n");
	if (rr.done)
		report_recovery(&rr);
	report_summary(phases, &fr, &frt, idle, &lr, up, nup);
	return 0;
}

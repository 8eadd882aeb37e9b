/*
 * proxies.c — mappend and nginx's mail proxy side by side, against the same
 * Dovecot: CPU and page faults of the proxy per FETCH and the FETCH's wall
 * time against the direct one; memory per idle session; logins per second.
 *
 * Paths: direct to Dovecot, through mappend, through nginx with
 * proxy_buffer 256k, through nginx with the default proxy_buffer (one nginx,
 * one worker, both mail servers in it).  Rounds take the paths in turn, in
 * an order rotated from round to round, so that drift of the machine's
 * speed (other work, frequency, caches) hits every path alike.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

const char *const path_name[NFPATHS] = {
	"direct", "mappend", "nginx 256k", "nginx default", "mappend copy",
};

static int
path_port(int p, bool tls)
{
	switch (p) {
	case P_DIRECT:
		return tls ? 0 : o.dovecot_port;
	case P_MAPPEND:
		return tls ? o.mappend_tls_port : o.mappend_port;
	case P_MCOPY:
		return tls ? 0 : o.mcopy_port;
	case P_NGINX:
		return tls ? o.nginx_tls_port : o.nginx_port;
	default:
		return tls ? o.nginxd_tls_port : o.nginxd_port;
	}
}

/* The process whose CPU a path costs: mappend, nginx's worker, or 0. */
static pid_t
path_pid(int p)
{
	pid_t w;

	if (p == P_DIRECT)
		return 0;
	if (p == P_MAPPEND)
		return o.mappend_pid;
	if (p == P_MCOPY)
		return o.mcopy_pid;
	if ((w = nginx_worker(o.nginx_pid)) == 0)
		die("nginx (master %ld) has no single worker process",
		    (long)o.nginx_pid);
	return w;
}

/* ---------------------------------------------------------------- FETCH */

static const char fetch_cmd[] = "F FETCH 1:* (BODY.PEEK[])\r\n";

/* One FETCH of the whole mailbox; its untagged stream's length, and its
 * CRC32 when crc. */
static uint64_t
fetch_once(struct conn *c, bool crc, uint32_t *crc_out)
{
	c->stream_bytes = 0;
	c->stream_crc = 0;
	c->crc_on = crc;
	if (exchange(c, fetch_cmd, sizeof(fetch_cmd) - 1, 1, 0) != 1)
		die("%s: FETCH: %s", c->label, c->last_bad);
	c->crc_on = false;
	if (crc_out != NULL)
		*crc_out = c->stream_crc;
	return c->stream_bytes;
}

/*
 * --perf FILE: `perf record -g` of a mappend while the timed FETCHes run
 * (it idles while the other paths take their turn, so the samples are its
 * FETCHes); suffix tells the instances' files apart.  perf costs CPU too:
 * a profiling run, not one for the figures.
 */
static pid_t
perf_start(pid_t target, const char *suffix)
{
	char out[1024], pidarg[32];
	pid_t pid;

	if (o.perf_out == NULL || target == 0)
		return 0;
	snprintf(out, sizeof(out), "%s%s", o.perf_out, suffix);
	snprintf(pidarg, sizeof(pidarg), "%ld", (long)target);
	if ((pid = fork()) == -1)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		execlp("perf", "perf", "record", "-q", "-g", "-o", out, "-p", pidarg,
		    (char *)NULL);
		fprintf(stderr, "bench: perf: %s\n", strerror(errno));
		_exit(127);
	}
	progress("perf record of mappend (pid %s) into %s", pidarg, out);
	sleep_ms(1000);	/* perf attaches */
	return pid;
}

static void
perf_stop(pid_t pid)
{
	int st;

	if (pid == 0)
		return;
	kill(pid, SIGINT);
	/* perf writes its file and ends by the same signal */
	if (waitpid(pid, &st, 0) == -1 || (WIFEXITED(st) && WEXITSTATUS(st) != 0) ||
	    (WIFSIGNALED(st) && WTERMSIG(st) != SIGINT))
		progress("perf record did not end cleanly (status %d)", st);
}

/* The mailbox box with n messages of size bytes, appended directly. */
static void
fill_mailbox(const char *box, size_t n, size_t size)
{
	struct conn *c = conn_open(o.dovecot_port, false, o.user, o.pass,
	    "fetch mailbox (direct)");
	struct buf b = { 0 };
	size_t i;

	cmd_ok(c, "CREATE \"%s\"", box);
	for (i = 0; i < n; i++) {
		buf_printf(&b, "A%zu APPEND \"%s\" {%zu+}\r\n", i, box, size);
		add_message(&b, size, box, (unsigned)i);
		buf_add(&b, "\r\n", 2);
	}
	if (exchange(c, b.p, b.len, n, 0) != n)
		die("fetch: APPEND into %s: %s", box, c->last_bad);
	buf_free(&b);
	conn_close(c);
}

static void
drop_mailbox(const char *box)
{
	struct conn *c = conn_open(o.dovecot_port, false, o.user, o.pass,
	    "fetch mailbox (direct)");

	cmd_ok(c, "DELETE \"%s\"", box);
	conn_close(c);
}

/*
 * FETCH 1:* (BODY.PEEK[]) of fetch_mib MiB in messages of fetch_msg_size
 * (256 KiB) on every path (with tls: the proxies' TLS listeners; mappend
 * with splice = no beside mappend when run.sh started one: plain only,
 * since TLS is copied anyway).  A first, untimed round on
 * every path checks that each returns the same bytes (count and CRC32 of
 * the untagged responses) and warms the page cache; the timed rounds
 * check the count.
 */
void
fetch_bench(struct fetch_result *res, bool tls)
{
	const char *box = tls ? "bench-fetch-tls" : "bench-fetch";
	struct conn *c[NFPATHS] = { NULL };
	char login_answer[NFPATHS][512];
	pid_t pid[NFPATHS] = { 0 }, perf, perf_copy = 0;
	int i, k, r;

	memset(res, 0, sizeof(*res));
	res->tls = tls;
	res->runs = o.runs;
	res->msg_size = o.fetch_msg_size;
	res->msgs = (size_t)o.fetch_mib * MiB / o.fetch_msg_size;
	for (i = tls ? P_MAPPEND : P_DIRECT; i < NPATHS; i++) {
		res->path[res->npaths++] = i;
		if (i == P_MAPPEND && !tls && o.mcopy_port != 0)
			res->path[res->npaths++] = P_MCOPY;
	}

	progress("fetch%s: %zu messages of %zu bytes into %s, directly", tls ?
	    " (TLS)" : "", res->msgs, res->msg_size, box);
	fill_mailbox(box, res->msgs, res->msg_size);
	for (k = 0; k < res->npaths; k++) {
		int p = res->path[k];
		char label[64];

		snprintf(label, sizeof(label), "fetch%s via %s", tls ? " (TLS)" : "",
		    path_name[p]);
		c[p] = conn_open(path_port(p, tls), tls, o.user, o.pass, label);
		snprintf(login_answer[p], sizeof(login_answer[p]), "%s",
		    c[p]->last_tagged);
		cmd_ok(c[p], "EXAMINE \"%s\"", box);
		pid[p] = path_pid(p);
	}
	/* nginx passes Dovecot's answer to LOGIN on as it came */
	if (!tls)
		for (i = P_NGINX; i <= P_NGINXD; i++)
			if (strcmp(login_answer[i], login_answer[P_DIRECT]) != 0)
				die("LOGIN via %s answered \"%s\", directly \"%s\"",
				    path_name[i], login_answer[i],
				    login_answer[P_DIRECT]);

	/* the untimed round: the same bytes on every path */
	for (k = 0; k < res->npaths; k++) {
		int p = res->path[k];
		uint32_t crc;
		uint64_t n = fetch_once(c[p], true, &crc);

		if (k == 0) {
			res->bytes = n;
			res->crc = crc;
		} else if (n != res->bytes || crc != res->crc) {
			die("FETCH via %s: %" PRIu64 " bytes, CRC32 %08" PRIx32 "; "
			    "via %s: %" PRIu64 " bytes, CRC32 %08" PRIx32,
			    path_name[p], n, crc, path_name[res->path[0]],
			    res->bytes, res->crc);
		}
		progress("fetch%s check via %-13s %" PRIu64 " bytes, CRC32 %08"
		    PRIx32, tls ? " (TLS)" : "", path_name[p], n, crc);
	}
	if (res->bytes < res->msgs * res->msg_size)
		die("FETCH returned %" PRIu64 " bytes for %zu messages of %zu",
		    res->bytes, res->msgs, res->msg_size);

	for (k = 0; k < res->npaths; k++) {
		int p = res->path[k];

		if (pid[p] != 0) {
			res->rss_kb[p] = proc_status_kb(pid[p], "VmRSS");
			reset_hwm(pid[p]);
		}
	}
	perf = perf_start(pid[P_MAPPEND], tls ? ".tls" : "");
	if (!tls && o.mcopy_port != 0)
		perf_copy = perf_start(pid[P_MCOPY], ".copy");
	for (r = 0; r < res->runs; r++) {
		for (k = 0; k < res->npaths; k++) {
			int p = res->path[(k + r) % res->npaths];
			struct proc_sample s0 = { 0 }, s1 = { 0 };
			uint64_t t0, t1, n;

			if (pid[p] != 0)
				proc_sample(pid[p], &s0);
			t0 = now_ns();
			n = fetch_once(c[p], false, NULL);
			t1 = now_ns();
			if (pid[p] != 0)
				proc_sample(pid[p], &s1);
			if (n != res->bytes)
				die("FETCH via %s: %" PRIu64 " bytes, not %" PRIu64,
				    path_name[p], n, res->bytes);
			res->wall[p][r] = (double)(t1 - t0) / 1e9;
			res->cpu[p][r] = s1.cpu_s - s0.cpu_s;
			res->run[p][r] = s0.run_s < 0 || s1.run_s < 0 ? -1 :
			    s1.run_s - s0.run_s;
			res->minflt[p][r] = (double)(s1.minflt - s0.minflt);
			progress("fetch%s round %d/%d  %-13s %.3f s  CPU %.3f s "
			    "(ticks %.2f)  minflt %.0f", tls ? " (TLS)" : "", r + 1,
			    res->runs, path_name[p], res->wall[p][r], res->run[p][r],
			    res->cpu[p][r], res->minflt[p][r]);
		}
	}
	perf_stop(perf);
	perf_stop(perf_copy);
	for (k = 0; k < res->npaths; k++) {
		int p = res->path[k];

		if (pid[p] != 0) {
			res->hwm_kb[p] = proc_status_kb(pid[p], "VmHWM");
			if (path_pid(p) != pid[p])
				die("%s: its process changed during the FETCHes",
				    path_name[p]);
		}
		conn_close(c[p]);
	}
	drop_mailbox(box);
}

/* -------------------------------------------------------- idle sessions */

static void
idle_set(struct idle_result *res, int p, bool tls, pid_t pid, int port)
{
	struct conn **c = xmalloc((size_t)o.sessions * sizeof(*c));
	uint64_t t0;
	int i;

	memset(res, 0, sizeof(*res));
	res->done = true;
	res->n = o.sessions;
	res->pid = pid;
	sleep_ms(500);	/* a fresh process: let it settle */
	res->rss_before_kb = proc_status_kb(pid, "VmRSS");
	progress("idle: %d logged-in%s sessions via %s (pid %ld)", o.sessions,
	    tls ? " TLS" : "", path_name[p], (long)pid);
	t0 = now_ns();
	for (i = 0; i < o.sessions; i++) {
		char label[64];

		/* two users: Dovecot allows 1000 connections per user and IP */
		snprintf(label, sizeof(label), "idle session %d via %s", i + 1,
		    path_name[p]);
		c[i] = i % 2 ? conn_open(port, tls, o.user2, o.pass2, label)
			     : conn_open(port, tls, o.user, o.pass, label);
	}
	res->open_s = (double)(now_ns() - t0) / 1e9;
	sleep_ms(1000);	/* let the proxy settle (its own commands, if any) */
	res->rss_after_kb = proc_status_kb(pid, "VmRSS");
	for (i = 0; i < o.sessions; i++)
		conn_close(c[i]);
	free(c);
	progress("idle: via %s%s: VmRSS %ld -> %ld KiB: %.1f KiB per session",
	    path_name[p], tls ? " (TLS)" : "", res->rss_before_kb,
	    res->rss_after_kb, (double)(res->rss_after_kb - res->rss_before_kb) /
	    o.sessions);
	sleep_ms(2000);	/* the proxy and Dovecot close their side */
}

/*
 * Memory per logged-in idle session, each set on a fresh process (freed
 * heap of an earlier set would be reused and hide the cost): mappend's
 * idle instances (one plain, one TLS, started by run.sh for this only),
 * nginx's worker new after a reload (SIGHUP) before each set.
 */
void
idle_bench(struct idle_result res[NPATHS][2])
{
	int p, t;

	memset(res, 0, sizeof(struct idle_result) * NPATHS * 2);
	idle_set(&res[P_MAPPEND][0], P_MAPPEND, false, o.idle_pid, o.idle_port);
	idle_set(&res[P_MAPPEND][1], P_MAPPEND, true, o.idle_tls_pid,
	    o.idle_tls_port);
	for (p = P_NGINX; p < NPATHS; p++)
		for (t = 0; t < 2; t++)
			idle_set(&res[p][t], p, t, nginx_new_worker(o.nginx_pid),
			    path_port(p, t));
}

/* --------------------------------------------------------------- logins */

void
login_bench(struct login_result *res)
{
	pid_t pid[NPATHS];
	int p, r, k;

	memset(res, 0, sizeof(*res));
	res->runs = o.runs;
	res->total = o.logins;
	res->parallel = o.login_clients;
	for (p = 0; p < NPATHS; p++)
		pid[p] = path_pid(p);
	for (r = 0; r < res->runs; r++) {
		for (k = 0; k < NPATHS; k++) {
			struct proc_sample s0 = { 0 }, s1 = { 0 };
			char label[64];
			double t, cpu;

			p = (k + r) % NPATHS;
			snprintf(label, sizeof(label), "logins via %s", path_name[p]);
			if (pid[p] != 0)
				proc_sample(pid[p], &s0);
			t = logins_round(path_port(p, false), res->total,
			    res->parallel, o.user, o.pass, o.user2, o.pass2, label);
			if (pid[p] != 0)
				proc_sample(pid[p], &s1);
			cpu = s0.run_s >= 0 && s1.run_s >= 0 ? s1.run_s - s0.run_s :
			    s1.cpu_s - s0.cpu_s;
			res->rate[p][r] = res->total / t;
			res->cpu_ms[p][r] = pid[p] != 0 ? cpu * 1e3 / res->total : 0;
			progress("logins round %d/%d  %-13s %.0f/s  (%.3f s; proxy CPU "
			    "%.3f ms per login)", r + 1, res->runs, path_name[p],
			    res->rate[p][r], t, res->cpu_ms[p][r]);
		}
	}
}

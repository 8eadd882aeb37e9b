/*
 * upload.c — uploads into a fresh mailbox, three ways: (a) one MULTIAPPEND
 * with {n+} literals through mappend, (b) one APPEND {n+} at a time
 * directly to Dovecot, each waiting for its tagged OK, (c) all APPENDs {n+}
 * pipelined directly to Dovecot; without and with a delay in front of
 * whatever the client talks to.  For (a) also mappend's VmHWM, its CPU
 * time, and when it had read the whole command (spooling done).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

bool hwm_resettable = true;

/*
 * While (a) runs: when has mappend read the whole command?  rchar of
 * /proc/PID/io counts the bytes a process read (sockets and files alike);
 * mappend reads nothing else of note until it has spooled the command (it
 * writes each chunk to the spool as it reads it, and replays only then),
 * so the moment rchar has grown by the command's length is the moment the
 * spooling ended, give or take a millisecond of polling.
 */
struct rchar_watch {
	bool active;
	bool done;		/* reached, or not watching */
	pid_t pid;
	uint64_t start, target;	/* rchar at the start; bytes to wait for */
	uint64_t done_ns;	/* 0 until reached */
};

static struct rchar_watch watch = { .done = true };
static bool rchar_readable = true;

static void watch_check(void *arg);
static const struct watch_hook hook = { watch_check, NULL, &watch.done };

static void
watch_start(pid_t pid, uint64_t bytes)
{
	int64_t v;

	memset(&watch, 0, sizeof(watch));
	watch.done = true;
	if (!rchar_readable)
		return;
	if ((v = proc_rchar(pid)) < 0) {
		progress("cannot read /proc/%ld/io: no spooling times", (long)pid);
		rchar_readable = false;
		return;
	}
	watch.active = true;
	watch.done = false;
	watch.pid = pid;
	watch.start = (uint64_t)v;
	watch.target = bytes;
}

static void
watch_check(void *arg)
{
	int64_t v;

	(void)arg;
	if (!watch.active || watch.done)
		return;
	v = proc_rchar(watch.pid);
	if (v >= 0 && (uint64_t)v - watch.start >= watch.target) {
		watch.done_ns = now_ns();
		watch.done = true;
	}
}

static const char *const mode_name[NMODES] = { "a", "b", "c" };
static const char *const mode_desc[NMODES] = {
	"(a) one MULTIAPPEND through mappend",
	"(b) direct, one APPEND at a time",
	"(c) direct, APPENDs pipelined",
};

/* What upload_once measures besides the total time, for (a). */
struct upload_extra {
	long hwm_kb, rss0_kb;
	double spool_s, cpu_s;	/* spool_s < 0: unknown */
	unsigned long faults;	/* minor page faults */
};

/*
 * One upload of n messages of size bytes into the fresh mailbox box, in the
 * given mode, on a connection to port.  Returns seconds; for MODE_MULTI,
 * *x gets mappend's VmHWM and CPU time, and when mappend had read (and
 * spooled) the whole command.
 */
static double
upload_once(enum mode m, int port, const char *box, unsigned n, size_t size,
    struct upload_extra *x)
{
	struct conn *c;
	struct buf b = { 0 };
	size_t *off = NULL;
	unsigned i;
	uint64_t t0, t1;
	unsigned long ok = 0;
	char label[256];
	struct proc_sample p0, p1;

	snprintf(label, sizeof(label), "%s (%s)", box, mode_desc[m]);
	c = conn_open(port, false, o.user, o.pass, label);
	cmd_ok(c, "CREATE \"%s\"", box);

	/* everything to send, built before the clock starts */
	if (m == MODE_MULTI) {
		buf_printf(&b, "A APPEND \"%s\"", box);
		for (i = 0; i < n; i++) {
			buf_printf(&b, " (\\Seen) {%zu+}\r\n", size);
			add_message(&b, size, box, i);
		}
		buf_add(&b, "\r\n", 2);
	} else {
		off = xmalloc((n + 1) * sizeof(*off));
		for (i = 0; i < n; i++) {
			off[i] = b.len;
			buf_printf(&b, "A%u APPEND \"%s\" (\\Seen) {%zu+}\r\n", i, box, size);
			add_message(&b, size, box, i);
			buf_add(&b, "\r\n", 2);
		}
		off[n] = b.len;
	}

	if (m == MODE_MULTI) {
		x->rss0_kb = proc_status_kb(o.mappend_pid, "VmRSS");
		if (!reset_hwm(o.mappend_pid) && hwm_resettable) {
			progress("cannot reset mappend's VmHWM through "
			    "/proc/PID/clear_refs: peaks below are since it started");
			hwm_resettable = false;
		}
		proc_sample(o.mappend_pid, &p0);
		watch_start(o.mappend_pid, b.len);
		exchange_set_watch(&hook);
	}
	t0 = now_ns();
	switch (m) {
	case MODE_MULTI:
		ok = exchange(c, b.p, b.len, 1, 0) == 1 ? n : 0;
		break;
	case MODE_SYNC:
		for (i = 0; i < n; i++)
			ok += exchange(c, b.p + off[i], off[i + 1] - off[i], 1, 0);
		break;
	case MODE_PIPE:
		ok = exchange(c, b.p, b.len, n, 0);
		break;
	default:
		break;
	}
	t1 = now_ns();
	if (m == MODE_MULTI) {
		exchange_set_watch(NULL);
		x->hwm_kb = proc_status_kb(o.mappend_pid, "VmHWM");
		proc_sample(o.mappend_pid, &p1);
		/* the scheduler's run time (ns) where there is one */
		x->cpu_s = p1.run_s >= 0 && p0.run_s >= 0 ? p1.run_s - p0.run_s :
		    p1.cpu_s - p0.cpu_s;
		x->faults = p1.minflt - p0.minflt;
		x->spool_s = watch.done_ns ? (double)(watch.done_ns - t0) / 1e9 : -1;
		watch.active = false;
		watch.done = true;
	}
	if (ok != n)
		die("%s: %lu of %u APPENDs succeeded; last refusal: %s", label,
		    ok, n, c->last_bad);
	buf_free(&b);
	free(off);

	/* the mailbox must hold exactly n messages */
	c->status_messages = -1;
	cmd_ok(c, "STATUS \"%s\" (MESSAGES)", box);
	if (c->status_messages != (long)n)
		die("%s: mailbox holds %ld messages after the upload, not %u",
		    label, c->status_messages, n);
	cmd_ok(c, "DELETE \"%s\"", box);
	conn_close(c);
	return (double)(t1 - t0) / 1e9;
}

void
upload_bench(struct upload_result *res, const char *title, unsigned n,
    size_t size, unsigned delay_ms, int runs)
{
	struct relay *to_mappend = NULL, *to_dovecot = NULL;
	int r, k;

	memset(res, 0, sizeof(*res));
	res->title = title;
	res->n = n;
	res->size = size;
	res->delay_ms = delay_ms;
	res->runs = runs;
	if (delay_ms > 0) {
		to_mappend = relay_start(o.mappend_port, delay_ms);
		to_dovecot = relay_start(o.dovecot_port, delay_ms);
	}
	for (r = 0; r < runs; r++) {
		/* the order rotates, so that drift hits every mode alike */
		for (k = 0; k < NMODES; k++) {
			enum mode m = (enum mode)((k + r) % NMODES);
			int port;
			char box[96];
			struct upload_extra x = { -1, -1, -1, 0, 0 };

			if (m == MODE_MULTI)
				port = to_mappend ? relay_port(to_mappend) : o.mappend_port;
			else
				port = to_dovecot ? relay_port(to_dovecot) : o.dovecot_port;
			snprintf(box, sizeof(box), "bench-%ux%zu-d%u-%s-%d", n, size,
			    delay_ms, mode_name[m], r + 1);
			res->t[m][r] = upload_once(m, port, box, n, size, &x);
			if (m == MODE_MULTI) {
				res->hwm_kb[r] = x.hwm_kb;
				res->rss0_kb[r] = x.rss0_kb;
				res->spool_s[r] = x.spool_s;
				res->cpu_s[r] = x.cpu_s;
			}
			if (m == MODE_MULTI)
				progress("%-28s run %d/%d  %s %8.3f s  (spooled after "
				    "%.3f s; mappend CPU %.4f s, %lu faults, VmHWM %ld KiB)",
				    title, r + 1, runs, mode_name[m], res->t[m][r], x.spool_s,
				    x.cpu_s, x.faults, x.hwm_kb);
			else
				progress("%-28s run %d/%d  %s %8.3f s", title, r + 1,
				    runs, mode_name[m], res->t[m][r]);
		}
	}
	if (to_mappend != NULL)
		relay_stop(to_mappend);
	if (to_dovecot != NULL)
		relay_stop(to_dovecot);
}

static void
print_runs(const double *t, int n)
{
	int i;

	printf("[");
	for (i = 0; i < n; i++)
		printf("%s%.3f", i ? " " : "", t[i]);
	printf("]");
}

long
upload_max_hwm(const struct upload_result *u)
{
	long m = 0;
	int i;

	for (i = 0; i < u->runs; i++)
		if (u->hwm_kb[i] > m)
			m = u->hwm_kb[i];
	return m;
}

/* The most VmHWM grew over the VmRSS before, over the runs. */
static long
max_growth(const struct upload_result *u)
{
	long m = 0;
	int i;

	for (i = 0; i < u->runs; i++)
		if (u->hwm_kb[i] - u->rss0_kb[i] > m)
			m = u->hwm_kb[i] - u->rss0_kb[i];
	return m;
}

void
report_uploads(const struct upload_result *u, int nu, long rss0_kb)
{
	int i, m;

	printf("\nUploads (seconds; median of the runs shown in brackets)\n\n");
	printf("%-28s %10s %10s %10s %7s %7s %8s %8s\n", "", "(a)", "(b)", "(c)",
	    "a/b", "a/c", "b/a", "c/a");
	for (i = 0; i < nu; i++) {
		double med[NMODES];

		for (m = 0; m < NMODES; m++)
			med[m] = median(u[i].t[m], u[i].runs);
		printf("%-28s %10.3f %10.3f %10.3f %7.3f %7.3f %7.1fx %7.1fx\n",
		    u[i].title, med[0], med[1], med[2], med[0] / med[1],
		    med[0] / med[2], med[1] / med[0], med[2] / med[0]);
	}
	printf("\n  (a) one MULTIAPPEND with {n+} literals through mappend\n"
	    "  (b) directly to Dovecot, one APPEND {n+} at a time, each waiting "
	    "for its tagged OK\n"
	    "  (c) directly to Dovecot, all APPENDs {n+} pipelined\n"
	    "  a/b, a/c: time ratios (below 1: (a) faster); b/a, c/a: speed-up "
	    "of (a)\n\n  runs:\n");
	for (i = 0; i < nu; i++) {
		printf("  %-28s", u[i].title);
		for (m = 0; m < NMODES; m++) {
			printf(" %s=", mode_name[m]);
			print_runs(u[i].t[m], u[i].runs);
		}
		printf("\n");
	}
	printf("\n  where (a)'s time goes (medians, seconds): \"spool\" until "
	    "mappend had read\n  the whole command (rchar of /proc/PID/io), "
	    "\"replay\" the rest: the single\n  APPENDs to Dovecot and the "
	    "answer; CPU: mappend's run time (schedstat)\n\n");
	printf("  %-28s %10s %10s %10s %10s\n", "", "(a) total", "spool", "replay",
	    "CPU");
	for (i = 0; i < nu; i++) {
		double tot = median(u[i].t[MODE_MULTI], u[i].runs);
		double sp = median(u[i].spool_s, u[i].runs);

		if (sp < 0)
			printf("  %-28s %10.3f %10s %10s %10.4f\n", u[i].title, tot,
			    "n/a", "n/a", median(u[i].cpu_s, u[i].runs));
		else
			printf("  %-28s %10.3f %10.3f %10.3f %10.4f\n", u[i].title,
			    tot, sp, tot - sp, median(u[i].cpu_s, u[i].runs));
	}
	printf("\nmappend memory during the uploads (the highest VmHWM over "
	    "the runs of (a),\nand the most it rose above the VmRSS just "
	    "before the command)\n\n");
	printf("  %-45s %8ld KiB\n", "VmRSS at start (idle, no session)", rss0_kb);
	for (i = 0; i < nu; i++)
		printf("  VmHWM during (a) %-28s %8ld KiB  (%.1f MiB; +%ld KiB)\n",
		    u[i].title, upload_max_hwm(&u[i]), upload_max_hwm(&u[i]) / 1024.0,
		    max_growth(&u[i]));
	printf("  (VmHWM %s before each measured command)\n",
	    hwm_resettable ? "reset through /proc/PID/clear_refs" :
	    "could NOT be reset: figures are peaks since mappend started");
}

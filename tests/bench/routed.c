/*
 * routed.c — logins through mappend instances that route each user after
 * login (a route map; nginx's auth_http endpoint without and with the
 * answer cache) beside the fixed-upstream instance and nginx's mail proxy,
 * round-robin in the same rounds: what routing costs a login.
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"

const char *const routed_name[NRPATHS] = {
	"mappend fixed", "route_map", "auth_http", "auth_http+cache", "nginx",
};

/* Where path p listens, and the process whose CPU it costs. */
static void
routed_path(int p, int *port, pid_t *pid)
{
	const int ports[NRPATHS] = { o.mappend_port, o.route_map_port,
	    o.route_http_port, o.route_cached_port, o.nginx_port };
	const pid_t pids[NRPATHS] = { o.mappend_pid, o.route_map_pid,
	    o.route_http_pid, o.route_cached_pid, 0 };

	*port = ports[p];
	*pid = pids[p];
	if (p == R_NGINX && (*pid = nginx_worker(o.nginx_pid)) == 0)
		die("nginx (master %ld) has no single worker process",
		    (long)o.nginx_pid);
}

void
routed_bench(struct routed_result *res)
{
	pid_t pid[NRPATHS];
	int port[NRPATHS], p, r, k;

	memset(res, 0, sizeof(*res));
	res->runs = o.runs;
	res->total = o.logins;
	res->parallel = o.login_clients;
	for (p = 0; p < NRPATHS; p++)
		routed_path(p, &port[p], &pid[p]);
	for (r = 0; r < res->runs; r++) {
		for (k = 0; k < NRPATHS; k++) {
			struct proc_sample s0 = { 0 }, s1 = { 0 };
			char label[64];
			double t, cpu;

			p = (k + r) % NRPATHS;
			snprintf(label, sizeof(label), "routed logins via %s",
			    routed_name[p]);
			proc_sample(pid[p], &s0);
			t = logins_round(port[p], res->total, res->parallel,
			    o.user, o.pass, o.user2, o.pass2, label);
			proc_sample(pid[p], &s1);
			cpu = s0.run_s >= 0 && s1.run_s >= 0 ? s1.run_s - s0.run_s :
			    s1.cpu_s - s0.cpu_s;
			res->rate[p][r] = res->total / t;
			res->cpu_ms[p][r] = cpu * 1e3 / res->total;
			progress("routed logins round %d/%d  %-16s %.0f/s  (proxy CPU "
			    "%.3f ms per login)", r + 1, res->runs, routed_name[p],
			    res->rate[p][r], res->cpu_ms[p][r]);
		}
	}
	res->done = true;
}

void
report_routed(const struct routed_result *l)
{
	double fixed = median(l->rate[R_FIXED], l->runs);
	int p;

	printf("\nLogins with routing: connect, greeting, LOGIN, LOGOUT; %d per "
	    "round, %d in parallel, %d rounds\n\n", l->total, l->parallel, l->runs);
	printf("  %-16s %10s %10s %10s %10s %14s\n", "", "min /s", "median /s",
	    "max /s", "/ fixed", "proxy CPU ms");
	for (p = 0; p < NRPATHS; p++) {
		double mx = 0, med = median(l->rate[p], l->runs);
		int r;

		for (r = 0; r < l->runs; r++)
			if (l->rate[p][r] > mx)
				mx = l->rate[p][r];
		printf("  %-16s %10.0f %10.0f %10.0f %10.2f %14.3f\n", routed_name[p],
		    minimum(l->rate[p], l->runs), med, mx,
		    fixed > 0 ? med / fixed : 0, median(l->cpu_ms[p], l->runs));
	}
	printf("\n  route_map: the two users among 10,000 lines; auth_http: nginx's "
	    "own http\n  server answers (the one nginx's mail proxy asks too); "
	    "proxy CPU ms: median\n  per login of the proxy process (nginx: its "
	    "worker, which also answers\n  every auth_http request, its own and "
	    "mappend's)\n");
}

/*
 * Idle sessions through the routing instance: each logged in, half to
 * either upstream (alice@a.example, bob@b.example), all held at once; the
 * instance's VmRSS before and after.
 */
void
routed_idle_bench(struct idle_result *res)
{
	int n = o.route_idle_sessions, i;
	struct conn **c = xmalloc((size_t)n * sizeof(*c));
	uint64_t t0;

	memset(res, 0, sizeof(*res));
	res->n = n;
	res->pid = o.route_idle_pid;
	sleep_ms(500);
	res->rss_before_kb = proc_status_kb(res->pid, "VmRSS");
	progress("routed idle: %d logged-in sessions over two upstreams", n);
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		char label[64];

		snprintf(label, sizeof(label), "routed idle session %d", i + 1);
		c[i] = i % 2 ? conn_open(o.route_idle_port, false, "bob@b.example",
		    "pb", label) : conn_open(o.route_idle_port, false,
		    "alice@a.example", "pa", label);
	}
	res->open_s = (double)(now_ns() - t0) / 1e9;
	sleep_ms(1000);
	res->rss_after_kb = proc_status_kb(res->pid, "VmRSS");
	for (i = 0; i < n; i++)
		conn_close(c[i]);
	free(c);
	res->done = true;
	progress("routed idle: VmRSS %ld -> %ld KiB: %.1f KiB per session",
	    res->rss_before_kb, res->rss_after_kb,
	    (double)(res->rss_after_kb - res->rss_before_kb) / n);
}

void
report_routed_idle(const struct idle_result *r)
{
	printf("\nIdle sessions with routing: %d logged-in sessions held at once "
	    "by one instance,\nhalf routed to each of two upstreams (mock "
	    "servers)\n\n", r->n);
	printf("  VmRSS %ld KiB before, %ld KiB with them: %.1f KiB per session; "
	    "opened in %.1f s\n", r->rss_before_kb, r->rss_after_kb,
	    (double)(r->rss_after_kb - r->rss_before_kb) / r->n, r->open_s);
}

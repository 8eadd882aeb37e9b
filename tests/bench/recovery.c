/*
 * recovery.c — the crash journal under load: a MULTIAPPEND of 1,000
 * messages through a mappend of its own (with a master user), SIGKILL once
 * the upstream has stored a tenth of them, then the same mappend started
 * again.  Measured: how long the start takes (the journal is resolved before
 * clients are accepted; it includes the settle time for what the dead
 * process had pipelined), how many messages were stored at the kill and are
 * left after the start (0: undone), and the journal's fsyncs per
 * MULTIAPPEND (strace of a normal one, when strace is there).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

/* Count of occurrences of needle in the file at path. */
static unsigned
count_in_file(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	char line[4096];
	unsigned n = 0;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, needle) != NULL)
			n++;
	fclose(f);
	return n;
}

static long
messages(struct conn *d, const char *box)
{
	d->status_messages = -1;
	cmd_ok(d, "STATUS \"%s\" (MESSAGES)", box);
	return d->status_messages;
}

static pid_t
start_again(void)
{
	pid_t pid = fork();
	int fd;

	if (pid < 0)
		die("fork: %m");
	if (pid == 0) {
		if ((fd = open(o.rec_log, O_WRONLY | O_APPEND)) >= 0)
			dup2(fd, STDERR_FILENO);
		execl(o.rec_bin, o.rec_bin, "-f", "-c", o.rec_conf, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* The strace of one small MULTIAPPEND through the recovery instance: how
 * many fsync(2) calls it made (-1 without strace). */
static long
fsyncs_per_multiappend(void)
{
	char cmd[512], out[64];
	struct conn *c;
	FILE *f;
	long n = -1;
	pid_t tracer;
	unsigned i;
	struct buf b = { 0 };
	unsigned long ok;

	snprintf(out, sizeof(out), "/tmp/mappend-fsync.%ld", (long)getpid());
	snprintf(cmd, sizeof(cmd), "exec strace -f -qq -e trace=fsync,fdatasync -o %s "
	    "-p %ld 2>/dev/null", out, (long)o.rec_pid);
	if (system("command -v strace >/dev/null 2>&1") != 0)
		return -1;
	if ((tracer = fork()) == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	sleep_ms(500);
	c = conn_open(o.rec_port, false, o.user, o.pass, "fsync count");
	buf_printf(&b, "A APPEND INBOX");
	for (i = 0; i < 10; i++) {
		buf_printf(&b, " {%lu+}\r\n", 4 * KiB);
		add_message(&b, 4 * KiB, "fsync", i);
	}
	buf_add(&b, "\r\n", 2);
	ok = c->tagged_ok;
	if (exchange(c, b.p, b.len, 1, 0) != 1 || c->tagged_ok != ok + 1)
		die("fsync count: the MULTIAPPEND failed: %s", c->last_tagged);
	conn_close(c);
	buf_free(&b);
	sleep_ms(200);
	kill(tracer, SIGINT);
	waitpid(tracer, NULL, 0);
	snprintf(cmd, sizeof(cmd), "grep -c 'fsync\\|fdatasync' %s 2>/dev/null", out);
	if ((f = popen(cmd, "r")) != NULL) {
		if (fscanf(f, "%ld", &n) != 1)
			n = -1;
		pclose(f);
	}
	unlink(out);
	return n;
}

void
recovery_bench(struct recovery_result *r)
{
	const char *box = "INBOX";
	struct conn *d, *c;
	struct buf b = { 0 };
	unsigned i, starts;
	uint64_t t0;
	size_t sent = 0;
	long before;

	memset(r, 0, sizeof(*r));
	r->n = 1000;
	r->fsyncs = fsyncs_per_multiappend();
	progress("recovery: MULTIAPPEND of %u x 4 KiB, SIGKILL at a tenth stored", r->n);
	d = conn_open(o.dovecot_port, false, o.user, o.pass, "direct (recovery)");
	before = messages(d, box);
	c = conn_open(o.rec_port, false, o.user, o.pass, "recovery");
	buf_printf(&b, "R APPEND %s", box);
	for (i = 0; i < r->n; i++) {
		buf_printf(&b, " (\\Seen) {%lu+}\r\n", 4 * KiB);
		add_message(&b, 4 * KiB, "recovery", i);
	}
	buf_add(&b, "\r\n", 2);
	set_nonblock(c->fd);
	while (sent < b.len) {
		ssize_t w = write(c->fd, b.p + sent, b.len - sent);

		if (w > 0)
			sent += (size_t)w;
		else
			sleep_ms(1);
		if (messages(d, box) - before >= (long)r->n / 10)
			break;
	}
	while (messages(d, box) - before < (long)r->n / 10)
		sleep_ms(1);
	kill(o.rec_pid, SIGKILL);
	while (kill(o.rec_pid, 0) == 0)
		sleep_ms(1);
	r->at_kill = messages(d, box) - before;
	conn_close(c);
	buf_free(&b);

	starts = count_in_file(o.rec_log, "mappend started");
	t0 = now_ns();
	o.rec_pid = start_again();
	while (count_in_file(o.rec_log, "mappend started") == starts) {
		if (waitpid(o.rec_pid, NULL, WNOHANG) == o.rec_pid)
			die("recovery: mappend exited at start (see %s)", o.rec_log);
		sleep_ms(5);
	}
	r->start_s = (double)(now_ns() - t0) / 1e9;
	sleep_ms(200);
	r->after = messages(d, box) - before;
	r->recovered = count_in_file(o.rec_log, "recovered: the upload") > 0;
	r->done = true;
	conn_close(d);
	kill(o.rec_pid, SIGTERM);
	waitpid(o.rec_pid, NULL, 0);
}

void
report_recovery(const struct recovery_result *r)
{
	printf("\nCrash journal\n-------------\n");
	if (r->fsyncs >= 0)
		printf("  fsync calls per successful MULTIAPPEND (strace): %ld\n", r->fsyncs);
	printf("  SIGKILL during a MULTIAPPEND of %u x 4 KiB: %ld stored at the kill; "
	    "restart with the journal resolved took %.2f s (rollback_settle = 5 s of "
	    "it: messages never stored are looked for until the mailbox has been "
	    "quiet that long); %ld left after it%s\n", r->n, r->at_kill,
	    r->start_s, r->after, r->recovered ? "" : " (NOT recovered)");
}

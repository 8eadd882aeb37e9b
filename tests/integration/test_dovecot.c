/*
 * test_dovecot.c — the same session against a real Dovecot (Debian's
 * dovecot-imapd, a private instance on a loopback port) directly and
 * through mappend: the client must not see a difference beyond the
 * capability list and Dovecot's timings.
 */
#include <criterion/criterion.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static struct dovecot dc;

static void
teardown(void)
{
	harness_teardown();
	dovecot_stop(&dc);
}

TestSuite(dovecot, .fini = teardown, .timeout = 240);

/* Replace every match of pattern in *text with repl. */
static void
replace_all(char **text, const char *pattern, const char *repl)
{
	regex_t re;
	regmatch_t m;
	char *out = NULL;
	size_t olen = 0;
	FILE *f = open_memstream(&out, &olen);
	const char *p = *text;

	cr_assert_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NEWLINE), 0);
	while (regexec(&re, p, 1, &m, 0) == 0 && m.rm_eo > 0) {
		fwrite(p, 1, (size_t)m.rm_so, f);
		fputs(repl, f);
		p += m.rm_eo;
	}
	fputs(p, f);
	fclose(f);
	regfree(&re);
	free(*text);
	*text = out;
}

static void
step(FILE *log, struct imapc *c, const char *tag, const char *cmd)
{
	char *r;

	/* an empty cmd ends a command already begun: its tag is sent */
	if (*cmd == '\0') {
		imapc_send(c, "\r\n");
		r = imapc_until_tagged(c, tag, NULL);
		cr_assert_not_null(r, "no answer to %s", cmd);
	} else {
		r = imapc_command(c, tag, "%s", cmd);
	}
	fputs(r, log);
	free(r);
}

/* One session; returns its transcript with what legitimately differs
 * between runs (timings, UIDVALIDITY, the user) normalised. */
static char *
scenario(int port, const char *user, const char *password)
{
	struct imapc c;
	char *text = NULL, *line, *msg = make_message(3000, 5), *big;
	size_t len = 0;
	FILE *log = open_memstream(&text, &len);
	/* long enough for the kernel's path through mappend (splice) */
	const size_t big_size = 1536 * 1024;

	imapc_connect(&c, port);
	line = imapc_line(&c);
	cr_assert_not_null(line);
	free(line);		/* the greeting's list is compared elsewhere */
	imapc_send(&c, "a LOGIN %s %s\r\n", user, password);
	free(imapc_until_tagged(&c, "a", NULL));
	step(log, &c, "b", "SELECT INBOX");
	/* a synchronizing literal waits for the server's "+" */
	imapc_send(&c, "c APPEND INBOX (\\Seen) \"01-Feb-2024 10:00:00 +0100\" {3000}\r\n");
	line = imapc_line(&c);
	cr_assert_not_null(line);
	cr_assert_eq(line[0], '+', "%s", line);
	fprintf(log, "%s\r\n", line);
	free(line);
	imapc_send_raw(&c, msg, 3000);
	step(log, &c, "c", "");
	step(log, &c, "d", "APPEND INBOX \"01-Feb-2024 11:00:00 +0100\" {11+}\r\nhello world");
	big = make_message(big_size, 9);
	imapc_send(&c, "d2 APPEND INBOX \"01-Feb-2024 12:00:00 +0100\" {%zu+}\r\n", big_size);
	imapc_send_raw(&c, big, big_size);
	step(log, &c, "d2", "");
	free(big);
	step(log, &c, "e", "NOOP");
	step(log, &c, "f", "FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])");
	step(log, &c, "g", "UID SEARCH ALL");
	step(log, &c, "h", "STORE 2 +FLAGS (\\Deleted)");
	step(log, &c, "i", "LIST \"\" \"*\"");
	step(log, &c, "j", "STATUS INBOX (MESSAGES UNSEEN)");
	step(log, &c, "k", "CREATE Archive");
	step(log, &c, "l", "COPY 1 Archive");
	step(log, &c, "m", "EXPUNGE");
	step(log, &c, "n", "SEARCH TEXT {5+}\r\nhello");
	step(log, &c, "o", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
	step(log, &c, "p", "UNSELECT");
	step(log, &c, "q", "BOGUS command");
	step(log, &c, "r", "LOGOUT");
	cr_assert(imapc_wait_closed(&c), "not closed after LOGOUT");
	imapc_close(&c);
	fclose(log);
	free(msg);
	replace_all(&text, "\\([0-9.]+ \\+ [0-9.]+( \\+ [0-9.]+)? secs\\)", "(T)");
	replace_all(&text, "UIDVALIDITY [0-9]+", "UIDVALIDITY V");
	replace_all(&text, "APPENDUID [0-9]+", "APPENDUID V");
	replace_all(&text, "COPYUID [0-9]+", "COPYUID V");
	/* the text of a continuation request is the server's (or mappend's) */
	replace_all(&text, "^\\+ [^\r]*", "+");
	return text;
}

static char *
capabilities(int port, const char *user, const char *password, char **greeting)
{
	struct imapc c;
	char *r;

	imapc_connect(&c, port);
	*greeting = imapc_line(&c);
	imapc_login(&c, user, password);
	r = imapc_command(&c, "c", "CAPABILITY");
	imapc_close(&c);
	return r;
}

/* The capability atoms of a list, sorted, as one string. */
static int
cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *
cap_set(const char *text, const char *after)
{
	const char *start = strstr(text, after);
	char *copy, *tok, *save, *atoms[256], *out;
	size_t n = 0, i, len = 0;

	cr_assert_not_null(start, "%s not in %s", after, text);
	start += strlen(after);
	copy = strndup(start, strcspn(start, "]\r\n"));
	for (tok = strtok_r(copy, " ", &save); tok != NULL && n < 256;
	    tok = strtok_r(NULL, " ", &save))
		atoms[n++] = tok;
	qsort(atoms, n, sizeof(atoms[0]), cmp);
	for (i = 0; i < n; i++)
		len += strlen(atoms[i]) + 1;
	out = calloc(1, len + 1);
	for (i = 0; i < n; i++) {
		strcat(out, atoms[i]);
		strcat(out, " ");
	}
	free(copy);
	return out;
}

Test(dovecot, same_session_directly_and_through_the_proxy)
{
	char *direct, *proxied, *log;

	dovecot_start(&dc, "--legacy");
	proxy_start(&px, dc.port, NULL);
	direct = scenario(dc.port, dc.user2, dc.password2);
	proxied = scenario(px.port, dc.user, dc.password);
	cr_assert_str_eq(proxied, direct);
	/* the long literal took the kernel's path through mappend (the copy
	 * path with splice = no) */
	cr_assert(proxy_log_wait(&px, "session end: "), "the session did not end");
	log = proxy_log(&px);
	cr_assert_eq(strstr(log, HARNESS_SPLICED) != NULL, harness_splice(),
	    "splice %s, the log:\n%s", harness_splice() ? "on" : "off", log);
	free(log);
	/* and the session did what it was meant to */
	cr_assert(strstr(direct, "* 2 EXISTS") != NULL, "%s", direct);
	cr_assert(strstr(direct, "hello world") != NULL, "%s", direct);
	cr_assert(strstr(direct, "q BAD") != NULL, "%s", direct);
	cr_assert(strstr(direct, "* BYE") != NULL, "%s", direct);
	free(direct);
	free(proxied);
}

/* The sorted set the proxy should show for a sorted set of Dovecot's. */
static char *
adjust(const char *set)
{
	char *copy = strdup(set), *tok, *save, *out, *sorted;

	out = calloc(1, strlen(set) + 64);
	for (tok = strtok_r(copy, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save)) {
		if (strcmp(tok, "CATENATE") == 0 || strncmp(tok, "UTF8=", 5) == 0)
			continue;
		strcat(out, tok);
		strcat(out, " ");
	}
	strcat(out, "MULTIAPPEND APPENDLIMIT=67108864");
	sorted = cap_set(out, "");
	free(copy);
	free(out);
	return sorted;
}

Test(dovecot, capability_lists_differ_only_as_designed)
{
	char *dg, *pg, *d, *p, *ds, *ps, *want;

	dovecot_start(&dc, "--legacy");
	proxy_start(&px, dc.port, NULL);
	d = capabilities(dc.port, dc.user, dc.password, &dg);
	p = capabilities(px.port, dc.user, dc.password, &pg);
	/* Dovecot's list without CATENATE (it changes APPEND's syntax), with
	 * MULTIAPPEND and APPENDLIMIT (the configured 64M default); Dovecot in
	 * legacy mode has LITERAL+ itself */
	ds = cap_set(dg, "[CAPABILITY ");
	ps = cap_set(pg, "[CAPABILITY ");
	cr_assert(strstr(ds, " CATENATE ") != NULL, "%s", ds);
	want = adjust(ds);
	cr_assert_str_eq(ps, want);
	free(want);
	free(ds);
	free(ps);
	ds = cap_set(d, "* CAPABILITY ");
	ps = cap_set(p, "* CAPABILITY ");
	cr_assert(strstr(ds, "MULTIAPPEND") == NULL, "legacy mode shows %s", ds);
	cr_assert(strstr(ds, "LITERAL+") != NULL, "%s", ds);
	want = adjust(ds);
	cr_assert_str_eq(ps, want);
	free(want);
	free(ds);
	free(ps);
	free(d);
	free(p);
	free(dg);
	free(pg);
}

Test(dovecot, idle_and_authenticate_through_the_proxy)
{
	struct imapc c, other;
	char *line, *r, *b64 = NULL;
	char raw[128];
	size_t n;
	static const char tbl[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0;

	dovecot_start(&dc, "--legacy");
	proxy_start(&px, dc.port, NULL);
	/* AUTHENTICATE PLAIN with a continuation */
	n = (size_t)snprintf(raw, sizeof(raw), "%c%s%c%s", 0, dc.user, 0, dc.password);
	b64 = calloc(1, n * 2 + 4);
	for (i = 0; i < n; i += 3) {
		unsigned v = (unsigned char)raw[i] << 16;

		if (i + 1 < n)
			v |= (unsigned char)raw[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)raw[i + 2];
		b64[o++] = tbl[(v >> 18) & 63];
		b64[o++] = tbl[(v >> 12) & 63];
		b64[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
		b64[o++] = i + 2 < n ? tbl[v & 63] : '=';
	}
	imapc_connect(&c, px.port);
	free(imapc_line(&c));
	imapc_send(&c, "a AUTHENTICATE PLAIN\r\n");
	imapc_expect_plus(&c);
	imapc_send(&c, "%s\r\n", b64);
	r = imapc_until_tagged(&c, "a", NULL);
	cr_assert(strncmp(last_line(r), "a OK", 4) == 0, "%s", r);
	free(r);
	imapc_send(&c, "b SELECT INBOX\r\n");
	free(imapc_until_tagged(&c, "b", NULL));
	imapc_send(&c, "i IDLE\r\n");
	imapc_expect_plus(&c);
	/* another session delivers: the idling client hears of it */
	imapc_connect_login(&other, dc.port, dc.user, dc.password);
	imapc_send(&other, "x APPEND INBOX {5+}\r\nhello\r\n");
	free(imapc_until_tagged(&other, "x", NULL));
	for (;;) {
		line = imapc_line(&c);
		cr_assert_not_null(line, "no EXISTS during IDLE");
		if (strcmp(line, "* 1 EXISTS") == 0)
			break;
		free(line);
	}
	free(line);
	imapc_send(&c, "DONE\r\n");
	r = imapc_until_tagged(&c, "i", NULL);
	cr_assert(strncmp(last_line(r), "i OK", 4) == 0, "%s", r);
	free(r);
	imapc_close(&other);
	imapc_close(&c);
	free(b64);
}

/*
 * MULTIAPPEND emulation against the real Dovecot, MULTIAPPEND hidden from
 * its capability list.  Dovecot would still execute a multi-message APPEND
 * that reaches it, so each test reads Dovecot's raw log of the proxy's
 * session: one message per APPEND, or the emulation proved nothing.
 */
static size_t
message_size(unsigned i)
{
	return 10000 + (i * 131) % 3000;
}

static char *
build_multiappend(const char *tag, unsigned n, size_t *len)
{
	char *out = NULL;
	size_t olen = 0;
	FILE *f = open_memstream(&out, &olen);
	unsigned i;

	fprintf(f, "%s APPEND INBOX", tag);
	for (i = 0; i < n; i++) {
		char *m = make_message(message_size(i), 1000 + i);

		fprintf(f, " (\\Flagged $m%u) \"%02u-Jan-2024 08:%02u:%02u +0000\" {%zu+}\r\n",
		    i, 1 + i % 28, i % 60, (i * 7) % 60, message_size(i));
		fwrite(m, 1, message_size(i), f);
		free(m);
	}
	fprintf(f, "\r\n");
	fclose(f);
	*len = olen;
	return out;
}

/* Every .in file of the user's raw log, concatenated. */
static char *
rawlog_in(const char *user)
{
	char cmd[700], *text = NULL;
	size_t len = 0, n;
	char buf[65536];
	FILE *p, *out = open_memstream(&text, &len);

	snprintf(cmd, sizeof(cmd), "cat %s/dc/rawlog/%s/*.in 2>/dev/null", dc.dir, user);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	while ((n = fread(buf, 1, sizeof(buf), p)) > 0)
		fwrite(buf, 1, n, out);
	pclose(p);
	fclose(out);
	return text;
}

/* The mailbox as a client sees it: UIDs, flags, dates, sizes. */
static char *
mailbox_state(struct imapc *d)
{
	char *r;

	imapc_send(d, "x EXAMINE INBOX\r\n");
	free(imapc_until_tagged(d, "x", NULL));
	r = imapc_command(d, "y", "UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)");
	imapc_send(d, "z UNSELECT\r\n");
	free(imapc_until_tagged(d, "z", NULL));
	/* \Recent belongs to a session, not to the mailbox */
	replace_all(&r, " ?\\\\Recent", "");
	replace_all(&r, "\\([0-9.]+ \\+ [0-9.]+( \\+ [0-9.]+)? secs\\)", "(T)");
	return r;
}

Test(dovecot, multiappend_of_100_is_byte_identical_upstream)
{
	struct imapc c, d;
	size_t len, n;
	char *command, *r, *log;
	unsigned i;

	dovecot_start(&dc, "--legacy --rawlog");
	proxy_start(&px, dc.port, NULL);
	imapc_connect_login(&c, px.port, dc.user, dc.password);
	command = build_multiappend("A", 100, &len);
	imapc_send_raw(&c, command, len);
	free(command);
	r = imapc_until_tagged(&c, "A", NULL);
	cr_assert_not_null(r);
	cr_assert(strstr(last_line(r), "A OK [APPENDUID ") == last_line(r), "%s", r);
	cr_assert(strstr(last_line(r), " 1:100] ") != NULL, "%s", r);
	free(r);
	imapc_close(&c);

	imapc_connect_login(&d, dc.port, dc.user, dc.password);
	r = imapc_command(&d, "s", "EXAMINE INBOX");
	cr_assert(strstr(r, "* 100 EXISTS") != NULL, "%s", r);
	free(r);
	for (i = 0; i < 100; i++) {
		char *m = make_message(message_size(i), 1000 + i), *body, want[96];

		snprintf(want, sizeof(want), "f%u", i);
		r = imapc_command(&d, want, "FETCH %u (FLAGS INTERNALDATE BODY.PEEK[])", i + 1);
		snprintf(want, sizeof(want), "$m%u", i);
		cr_assert(strstr(r, want) != NULL && strstr(r, "\\Flagged") != NULL,
		    "flags of %u: %.300s", i, r);
		snprintf(want, sizeof(want), "INTERNALDATE \"%02u-Jan-2024 08:%02u:%02u +0000\"",
		    1 + i % 28, i % 60, (i * 7) % 60);
		cr_assert(strstr(r, want) != NULL, "date of %u: %.300s", i, r);
		body = strstr(r, "BODY[] {");
		cr_assert_not_null(body, "%.300s", r);
		cr_assert_eq(strtoul(body + 8, NULL, 10), message_size(i));
		body = strstr(body, "}\r\n") + 3;
		cr_assert_eq(memcmp(body, m, message_size(i)), 0, "message %u differs", i);
		free(m);
		free(r);
	}
	imapc_close(&d);
	/* what Dovecot received: 100 APPENDs of one message each */
	log = rawlog_in(dc.user);
	n = count_substr(log, strlen(log), " APPEND ");
	cr_assert_eq(n, 100, "%zu APPEND commands reached Dovecot", n);
	cr_assert_eq(count_substr(log, strlen(log), "+}"), 100);
	free(log);
}

Test(dovecot, multiappend_over_quota_leaves_mailbox_as_before)
{
	struct imapc c, d;
	size_t len, n;
	char *command, *r, *before, *after, *log;

	/* 10 messages of about 11.5 KB each: the quota is crossed half-way */
	dovecot_start(&dc, "--legacy --rawlog --quota 80k");
	proxy_start(&px, dc.port, NULL);
	imapc_connect_login(&d, dc.port, dc.user, dc.password);
	/* the user's own messages, one marked \Deleted */
	imapc_send(&d, "a APPEND INBOX {5+}\r\nuser1\r\nb APPEND INBOX (\\Deleted) {5+}\r\nuser2\r\n");
	free(imapc_until_tagged(&d, "b", NULL));
	before = mailbox_state(&d);

	imapc_connect_login(&c, px.port, dc.user, dc.password);
	/* not selected: the rollback runs on the proxy's second connection */
	command = build_multiappend("Q", 10, &len);
	imapc_send_raw(&c, command, len);
	free(command);
	r = imapc_until_tagged(&c, "Q", NULL);
	cr_assert_not_null(r);
	cr_assert(strncmp(last_line(r), "Q NO [OVERQUOTA]", 16) == 0, "%s", r);
	free(r);
	after = mailbox_state(&d);
	cr_assert_str_eq(after, before, "the mailbox changed:\n%s\nwas:\n%s", after, before);
	free(after);

	/* selected: the rollback runs on the client's own connection, and the
	 * client sees EXISTS and then EXPUNGE */
	imapc_send(&c, "s SELECT INBOX\r\n");
	free(imapc_until_tagged(&c, "s", NULL));
	command = build_multiappend("R", 10, &len);
	imapc_send_raw(&c, command, len);
	free(command);
	r = imapc_until_tagged(&c, "R", NULL);
	cr_assert(strncmp(last_line(r), "R NO [OVERQUOTA]", 16) == 0, "%s", r);
	cr_assert(strstr(r, " EXISTS\r\n") != NULL, "%s", r);
	cr_assert(strstr(r, " EXPUNGE\r\n") != NULL, "%s", r);
	free(r);
	r = imapc_command(&c, "n", "FETCH 1:* (FLAGS)");
	cr_assert(strstr(r, "* 2 FETCH") != NULL && strstr(r, "* 3 FETCH") == NULL, "%s", r);
	cr_assert(strstr(r, "\\Deleted") != NULL, "the user's \\Deleted message is gone: %s", r);
	free(r);
	after = mailbox_state(&d);
	cr_assert_str_eq(after, before, "the mailbox changed:\n%s\nwas:\n%s", after, before);
	free(after);
	free(before);
	imapc_close(&c);
	imapc_close(&d);
	log = rawlog_in(dc.user);
	/* never a plain EXPUNGE or CLOSE, only UID EXPUNGE of our own UIDs */
	n = count_substr(log, strlen(log), "UID EXPUNGE ");
	cr_assert_eq(n, 2, "%zu UID EXPUNGE", n);
	cr_assert_eq(count_substr(log, strlen(log), " EXPUNGE\r"), 0);
	cr_assert_eq(count_substr(log, strlen(log), " CLOSE\r"), 0);
	free(log);
}

/*
 * TLS towards a Dovecot with "ssl = required".  Dovecot counts a connection
 * from 127.0.0.1 to 127.0.0.1 as secure, so the harness also listens on
 * 127.0.0.2, where plaintext logins are refused: that address proves TLS
 * was really used.
 */
static void
dovecot_tls(char *certdir, size_t len, const char *more)
{
	char opts[300];

	snprintf(certdir, len, "/tmp/mappend-dcerts.XXXXXX");
	cr_assert_not_null(mkdtemp(certdir));
	make_certs(certdir);
	snprintf(opts, sizeof(opts), "--legacy --ssl %s %s", certdir, more);
	dovecot_start(&dc, opts);
	cr_assert_gt(dc.tls_port, 0);
}

static void
remove_dir(const char *dir)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		cr_log_warn("could not remove %s", dir);
}

/* The config lines for an upstream at 127.0.0.2:port over TLS (mode "tls"
 * or "starttls"), verified with the test CA; malloc'ed. */
static char *
tls_upstream_conf(const char *mode, int port, const char *certdir)
{
	char *conf = NULL;

	cr_assert_geq(asprintf(&conf, "upstream = 127.0.0.2:%d\nupstream_tls = %s\n"
	    "upstream_ca_file = %s/ca.pem\nupstream_tls_name = localhost\n", port, mode,
	    certdir), 0);
	return conf;
}

/* mappend, its upstream given by the config lines */
static void
proxy_to(const char *upstream_conf)
{
	proxy_start(&px, 0, upstream_conf);
}

static char *
login_through_proxy(void)
{
	struct imapc c;
	char *r, *line;

	imapc_connect(&c, px.port);
	line = imapc_line(&c);
	cr_assert_not_null(line);
	free(line);
	r = imapc_command(&c, "a", "LOGIN %s %s", dc.user, dc.password);
	if (tagged_ok(r, "a")) {
		free(r);
		r = imapc_command(&c, "b", "SELECT INBOX");
	}
	imapc_close(&c);
	return r;
}

Test(dovecot, tls_required_upstream_through_implicit_tls)
{
	char certdir[64], *conf = NULL, *r;

	dovecot_tls(certdir, sizeof(certdir), "");
	conf = tls_upstream_conf("tls", dc.tls_port, certdir);
	proxy_to(conf);
	r = login_through_proxy();
	cr_assert(strncmp(last_line(r), "b OK [READ-WRITE]", 17) == 0, "%s", r);
	free(r);
	free(conf);
	remove_dir(certdir);
}

Test(dovecot, tls_required_upstream_through_starttls)
{
	char certdir[64], *conf = NULL, *r;

	dovecot_tls(certdir, sizeof(certdir), "");
	/* without TLS Dovecot refuses the login: the test means something */
	cr_assert_geq(asprintf(&conf, "upstream = 127.0.0.2:%d\n", dc.port), 0);
	proxy_to(conf);
	r = login_through_proxy();
	cr_assert(strncmp(last_line(r), "a NO [PRIVACYREQUIRED]", 22) == 0, "%s", r);
	free(r);
	free(conf);
	proxy_stop(&px);

	conf = tls_upstream_conf("starttls", dc.port, certdir);
	proxy_to(conf);
	r = login_through_proxy();
	cr_assert(strncmp(last_line(r), "b OK [READ-WRITE]", 17) == 0, "%s", r);
	free(r);
	free(conf);
	remove_dir(certdir);
}

Test(dovecot, client_tls_to_a_tls_only_dovecot)
{
	char certdir[64], *conf = NULL, *r, *line;
	struct imapc c;

	dovecot_tls(certdir, sizeof(certdir), "--quota 40k");
	/* both sides TLS: a client on mappend's TLS port, mappend on Dovecot's */
	cr_assert_geq(asprintf(&conf, "upstream = 127.0.0.2:%d\nupstream_tls = tls\n"
	    "upstream_ca_file = %s/ca.pem\nupstream_tls_name = localhost\n"
	    "listen = 127.0.0.1:0 tls\ntls_cert = %s/server.pem\ntls_key = %s/server.key\n"
	    "master_user = %s\nmaster_password = %s\n", dc.tls_port, certdir, certdir,
	    certdir, dc.master, dc.master_password), 0);
	proxy_to(conf);
	imapc_connect(&c, px.tls_port);
	cr_assert(imapc_tls(&c, strcat(strcpy((char[128]){0}, certdir), "/ca.pem")));
	line = imapc_line(&c);
	free(line);
	free(imapc_ok(&c, "a", "LOGIN %s %s", dc.user, dc.password));
	/* a MULTIAPPEND whose rollback needs the second connection (TLS
	 * too, as the master user) */
	imapc_send(&c, "b APPEND INBOX {5+}\r\nhello {5+}\r\nworld\r\n");
	r = imapc_until_tagged(&c, "b", NULL);
	cr_assert(strncmp(last_line(r), "b OK [APPENDUID ", 16) == 0, "%s", r);
	free(r);
	{
		size_t len;
		char *command = build_multiappend("c", 10, &len);

		imapc_send_raw(&c, command, len);
		free(command);
	}
	r = imapc_until_tagged(&c, "c", NULL);
	cr_assert(strncmp(last_line(r), "c NO [OVERQUOTA]", 16) == 0, "%s", r);
	free(r);
	r = imapc_command(&c, "d", "STATUS INBOX (MESSAGES)");
	cr_assert(strstr(r, "MESSAGES 2)") != NULL, "the rollback left messages: %s", r);
	free(r);
	imapc_close(&c);
	free(conf);
	remove_dir(certdir);
}

/* mappend's log and Dovecot's join: the session id mappend logs is the
 * one Dovecot logs for the login (ID "x-session-id" from a trusted
 * network), next to the client's own address. */
Test(dovecot, both_logs_name_the_same_session)
{
	struct imapc c;
	char *log, *p, key[64], want[128], cmd[400], dlog[65536];
	size_t n = 0;
	FILE *f;

	dovecot_start(&dc, "--legacy");
	proxy_start(&px, dc.port, "id_forward_address = yes\n");
	imapc_connect_login(&c, px.port, dc.user, dc.password);
	free(imapc_ok(&c, "a", "NOOP"));
	imapc_close(&c);
	log = proxy_log(&px);
	p = strstr(log, ", session ");
	cr_assert_not_null(p, "%s", log);
	p += strlen(", session ");
	snprintf(key, sizeof(key), "%.*s", (int)strcspn(p, "\r\n"), p);
	free(log);
	snprintf(want, sizeof(want), "session=<%s>", key);
	snprintf(cmd, sizeof(cmd), "cat %s/dc/dovecot.log", dc.dir);
	for (int i = 0; i < 100; i++) {
		f = popen(cmd, "r");
		cr_assert_not_null(f);
		n = fread(dlog, 1, sizeof(dlog) - 1, f);
		pclose(f);
		dlog[n] = '\0';
		if (strstr(dlog, want) != NULL)
			break;
		usleep(20 * 1000);
	}
	cr_assert(strstr(dlog, want) != NULL, "want %s in Dovecot's log:\n%s", want, dlog);
	p = strstr(dlog, want);
	while (p > dlog && p[-1] != '\n')
		p--;
	cr_assert(strncmp(strstr(p, "rip="), "rip=127.0.0.1,", 14) == 0, "%.*s",
	    (int)strcspn(p, "\n"), p);
}

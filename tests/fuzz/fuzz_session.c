/*
 * fuzz_session.c — a whole session driven without sockets: the client and
 * every upstream connection are bufferevent pairs, the fuzzer writes
 * arbitrary bytes into either side and closes either when it likes, and
 * the real relay, command table, response handler, MULTIAPPEND job,
 * rollback, staging and second connections act on them.  The upstream
 * connector is this file's (link seam: upstream.c is not linked), so
 * nothing leaves the process.
 *
 * Input: records of [kind][length, 2 bytes][bytes].
 *   kind % 5 == 0  bytes from the client
 *   kind % 5 == 1  bytes from the session's upstream connection
 *   kind % 5 == 2  bytes from the newest second connection
 *   kind % 5 == 3  the client closes
 *   kind % 5 == 4  the newest upstream connection closes
 * The first byte's top bit: the session is routed (router.c): its front
 * answers until login, a route map names the upstream.
 * After each record the event loop runs until it has nothing left to do.
 *
 * Checked beyond "no crash, no leak, no sanitizer report":
 * - what the client receives frames cleanly as IMAP responses (the proxy
 *   forwards only what it parsed, and its own lines are well formed);
 * - the answers to the proxy's own commands (tags "mappend.") never reach
 *   the client, unless the client itself used such a tag;
 * - what goes to an upstream never loses its framing (no line over the
 *   longest line the client may send, literal counts in step);
 * - the session ends when both sides are gone, whatever state it was in.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "fuzz.h"
#include "journal.h"
#include "log.h"
#include "router.h"
#include "session.h"
#include "spool.h"
#include "upstream.h"

#define MAX_UPSTREAMS 16
#define LOOP_ROUNDS 64

/* One upstream connection as the fuzzer holds it. */
struct fake_upstream {
	struct bufferevent *ours;	/* the fuzzer's end */
	struct imap_framer seen;	/* what the proxy sent, framed */
};

struct upstream_connect {
	struct event *ev;
	struct bufferevent *proxy_end;
	upstream_connected_cb cb;
	void *arg;
};

static struct proxy proxy;
static struct config *cfg;
static struct config *cfg_routed;	/* route_map, two backends */
static struct fake_upstream ups[MAX_UPSTREAMS];
static size_t nups;
static bool closing_all;		/* the input is over: connections fail */
static struct bufferevent *client;	/* the fuzzer's end of the client */
static struct imap_framer client_seen;	/* what the client received */
static bool client_used_our_tags;

/* ---- the link seam: upstream.c's functions ---- */

void
upstream_tune_socket(int fd)
{
	(void)fd;
}

static void
connect_done(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_connect *uc = arg;
	struct bufferevent *bev = uc->proxy_end;
	upstream_connected_cb cb = uc->cb;
	void *cbarg = uc->arg;

	(void)fd;
	(void)what;
	event_free(uc->ev);
	free(uc);
	cb(bev, NULL, bev == NULL ? "connection refused (fuzz)" : NULL, cbarg);
}

struct upstream_connect *
upstream_connect(struct proxy *p, const struct config *c,
    const struct backend *b, uint64_t session, upstream_connected_cb cb,
    void *arg)
{
	struct upstream_connect *uc = calloc(1, sizeof(*uc));
	struct bufferevent *pair[2];

	(void)c;
	(void)b;
	(void)session;
	if (uc == NULL)
		return NULL;
	uc->cb = cb;
	uc->arg = arg;
	uc->ev = event_new(p->base, -1, 0, connect_done, uc);
	if (!closing_all && nups < MAX_UPSTREAMS &&
	    bufferevent_pair_new(p->base, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS, pair) == 0) {
		uc->proxy_end = pair[0];
		ups[nups].ours = pair[1];
		imap_framer_init(&ups[nups].seen, IMAP_MODE_COMMAND, 16u << 20);
		bufferevent_enable(pair[1], EV_READ | EV_WRITE);
		nups++;
	}
	event_active(uc->ev, 0, 0);
	return uc;
}

void
upstream_connect_cancel(struct upstream_connect *uc)
{
	event_free(uc->ev);
	if (uc->proxy_end != NULL)
		bufferevent_free(uc->proxy_end);
	free(uc);
}

/* ---- checks on what the proxy sent ---- */

/* Everything the client has received so far: responses, framed. */
static void
check_client_output(void)
{
	struct evbuffer *in = bufferevent_get_input(client);
	struct imap_frame f;

	for (;;) {
		switch (imap_framer_next(&client_seen, in, &f)) {
		case IMAP_FRAME_MORE:
			return;
		case IMAP_FRAME_FATAL:
		case IMAP_FRAME_BAD:
			fprintf(stderr, "client got: %.*s (%s)\n", (int)f.len,
			    f.buf != NULL ? f.buf : "", f.error);
			CHECK(!"the client received something that is not IMAP");
			return;
		case IMAP_FRAME_LITERAL:
			imap_framer_drop(&client_seen, in, f.len);
			break;
		case IMAP_FRAME_SEGMENT:
			if (f.seg.first && f.seg.ntok >= 1 && !client_used_our_tags &&
			    f.seg.tok[0].len > 8 &&
			    strncmp(f.buf + f.seg.tok[0].off, "mappend.", 8) == 0)
				CHECK(!"an answer to the proxy's own command reached the client");
			imap_framer_drop(&client_seen, in, f.len);
			break;
		}
	}
}

/* What the proxy sent an upstream: framing stays in step. */
static void
check_upstream_output(struct fake_upstream *u)
{
	struct evbuffer *in = bufferevent_get_input(u->ours);
	struct imap_frame f;

	for (;;) {
		switch (imap_framer_next(&u->seen, in, &f)) {
		case IMAP_FRAME_MORE:
			return;
		case IMAP_FRAME_FATAL:
			CHECK(!"the proxy sent an upstream a line over 16 MiB");
			return;
		case IMAP_FRAME_BAD:		/* SASL responses, DONE: raw lines */
		case IMAP_FRAME_SEGMENT:
		case IMAP_FRAME_LITERAL:
			imap_framer_drop(&u->seen, in, f.len);
			break;
		}
	}
}

static void
settle(void)
{
	size_t i;
	int r;

	for (r = 0; r < LOOP_ROUNDS; r++) {
		event_base_loop(proxy.base, EVLOOP_NONBLOCK);
		if (client != NULL)
			check_client_output();
		for (i = 0; i < nups; i++)
			if (ups[i].ours != NULL)
				check_upstream_output(&ups[i]);
	}
}

/* ---- setup and one run ---- */

/* The routed configuration: a map file in dir, a second backend. */
static void
setup_routing(const char *dir)
{
	char conf[512], path[300], err[256] = "";
	struct router_sources *rs;
	FILE *f;

	snprintf(path, sizeof(path), "%s/routes", dir);
	if ((f = fopen(path, "w")) == NULL)
		abort();
	fputs("@b.example bee\ncarol 127.0.0.1:3\n* default\n", f);
	fclose(f);
	snprintf(conf, sizeof(conf), "listen = 127.0.0.1:0\nupstream = 127.0.0.1:1\n"
	    "route_map = %s\nroute_oauth = yes\nspool_dir = %s\n[backend bee]\n"
	    "upstream = 127.0.0.1:2\nmaster_user = boss\nmaster_password = pw\n",
	    path, dir);
	f = fmemopen(conf, strlen(conf), "r");
	if (f == NULL || (cfg_routed = config_new()) == NULL ||
	    config_load_stream(f, "fuzz-routed", cfg_routed, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_session: %s\n", err);
		abort();
	}
	fclose(f);
	cfg_routed->max_line_length = 4096;
	if ((rs = router_prepare(&proxy, cfg_routed, err, sizeof(err))) == NULL) {
		fprintf(stderr, "fuzz_session: %s\n", err);
		abort();
	}
	router_commit(rs);
}

static void
setup(void)
{
	static const char conf[] = "listen = 127.0.0.1:0\nupstream = 127.0.0.1:1\n"
	    "master_user = boss\nmaster_password = pw\n";
	char dir[] = "/dev/shm/mappend-fuzz.XXXXXX", err[256] = "";
	FILE *f;

	if (mkdtemp(dir) == NULL) {
		strcpy(dir, "/tmp/mappend-fuzz.XXXXXX");
		if (mkdtemp(dir) == NULL)
			abort();
	}
	/* FUZZ_SESSION_DEBUG=1: the session's log on stderr, to read a finding */
	log_init("fuzz", getenv("FUZZ_SESSION_DEBUG") != NULL ? LOG_LEVEL_DEBUG :
	    LOG_LEVEL_ERROR, false);
	f = fmemopen((void *)conf, strlen(conf), "r");
	/* sessions take references to it, as to the daemon's */
	if (f == NULL || (cfg = config_new()) == NULL ||
	    config_load_stream(f, "fuzz", cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_session: %s\n", err);
		abort();
	}
	fclose(f);
	snprintf(cfg->spool_dir, sizeof(cfg->spool_dir), "%s", dir);
	cfg->max_line_length = 4096;
	if (spool_init(cfg->spool_dir, cfg->max_total_spool) != 0 ||
	    journal_init(cfg->spool_dir) != 0)
		abort();
	proxy.cfg = cfg;
	proxy.base = event_base_new();
	TAILQ_INIT(&proxy.sessions);
	if (proxy.base == NULL)
		abort();
	setup_routing(dir);
}

/* A peer closes its end: the other end sees EOF, as with a socket. */
static void
hang_up(struct bufferevent **bev)
{
	if (*bev == NULL)
		return;
	bufferevent_flush(*bev, EV_WRITE, BEV_FINISHED);
	bufferevent_free(*bev);
	*bev = NULL;
}

static void
close_upstream(size_t i)
{
	if (i < nups)
		hang_up(&ups[i].ours);
}

/* The end of the input: every connection goes, the session must too. */
static void
end_run(void)
{
	size_t i;
	int r;

	closing_all = true;
	hang_up(&client);
	for (r = 0; r < 8; r++) {
		for (i = 0; i < nups; i++)
			close_upstream(i);
		settle();
		if (proxy.nsessions == 0)
			break;
	}
	if (proxy.nsessions > 0)
		session_close_all(&proxy, NULL);
	for (r = 0; r < 8 && proxy.nsessions > 0; r++) {
		for (i = 0; i < nups; i++)
			close_upstream(i);
		settle();
	}
	CHECK(proxy.nsessions == 0);
	nups = 0;
	closing_all = false;
	/* bufferevents are finalized from the loop: before the leak check */
	settle();
}

static void
feed(struct bufferevent *to, const uint8_t *p, size_t n)
{
	if (to != NULL)
		bufferevent_write(to, p, n);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	static const struct listener_info li = { .proxy = &proxy, .name = "fuzz" };
	struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(1234),
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct bufferevent *pair[2];
	size_t at = 0;

	if (!ready) {
		setup();
		ready = true;
	}
	if (bufferevent_pair_new(proxy.base, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS, pair) != 0)
		return 0;
	/* the same input, the same tags: mappend.1, mappend.2 ... */
	proxy.next_tag = 0;
	proxy.next_session_id = 0;
	client = pair[1];
	bufferevent_enable(client, EV_READ | EV_WRITE);
	imap_framer_init(&client_seen, IMAP_MODE_RESPONSE, 16u << 20);
	client_used_our_tags = false;
	proxy.cfg = size > 0 && (data[0] & 0x80) ? cfg_routed : cfg;
	session_begin(&li, pair[0], false, (const struct sockaddr *)&peer, NULL);
	settle();
	while (at + 3 <= size) {
		unsigned kind = data[at] % 5;
		size_t len = (size_t)data[at + 1] | (size_t)data[at + 2] << 8;

		at += 3;
		if (len > size - at)
			len = size - at;
		switch (kind) {
		case 0:
			if (memmem(data + at, len, "mappend.", 8) != NULL)
				client_used_our_tags = true;
			feed(client, data + at, len);
			break;
		case 1:
			feed(nups > 0 ? ups[0].ours : NULL, data + at, len);
			break;
		case 2:
			feed(nups > 1 ? ups[nups - 1].ours : NULL, data + at, len);
			break;
		case 3:
			hang_up(&client);
			break;
		case 4:
			if (nups > 0)
				close_upstream(nups - 1);
			break;
		}
		at += len;
		settle();
	}
	end_run();
	return 0;
}

/*
 * mock_session.c — one mock IMAP connection: framing with the project's
 * lexer (segments and literals), the arguments of the command being
 * received, literal policy per profile, answers (held for --delay), the
 * client's view of its selected mailbox (EXISTS/EXPUNGE/FETCH updates), IDLE
 * notifications, the switch to TLS (at accept or after STARTTLS) and an
 * orderly close.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "mock.h"

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);
static void conn_raw_flushed_cb(evutil_socket_t fd, short what, void *arg);
static void conn_process(struct mock_conn *c);
static void output_flushed(struct mock_conn *c);
static void maybe_finish(struct mock_conn *c);

static void
oom(void)
{
	fprintf(stderr, "mock_imapd: out of memory\n");
	exit(1);
}

/* Bytes written but not yet handed to the kernel: under TLS, the filter's
 * output drains into raw's, which drains into the socket. */
static size_t
out_pending(struct mock_conn *c)
{
	size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));

	if (c->bev != c->raw)
		n += evbuffer_get_length(bufferevent_get_output(c->raw));
	return n;
}

/* raw's output changed: once it is empty, tell the connection (outside of
 * libevent's own write path, so that the connection may be freed). */
static void
raw_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
    void *arg)
{
	struct mock_conn *c = arg;

	if (info->n_deleted > 0 && evbuffer_get_length(buf) == 0)
		event_active(c->raw_flushed, EV_TIMEOUT, 0);
}

/* Puts the connection under TLS: the handshake reads and writes raw from
 * here on, and c->bev is the filter. */
static void
conn_tls_on(struct mock_conn *c)
{
	struct bufferevent *f = mock_tls_filter(c->raw);

	if (f == NULL)
		oom();
	/* the filter encrypts ahead only this far, so that the throttle on
	 * c->bev's output holds for TLS too */
	bufferevent_setwatermark(c->raw, EV_WRITE, 0, MOCK_TLS_RAW_HIGH);
	c->raw_flushed = event_new(mock_srv.base, -1, 0, conn_raw_flushed_cb,
	    c);
	c->raw_out_cb = evbuffer_add_cb(bufferevent_get_output(c->raw),
	    raw_out_cb, c);
	if (c->raw_flushed == NULL || c->raw_out_cb == NULL)
		oom();
	c->bev = f;
	c->tls = true;
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* STARTTLS was answered OK and the answer is in raw's output.  Whatever the
 * client sent after the STARTTLS line, before the handshake, is discarded:
 * executing it after the handshake would let a man in the middle inject
 * commands into the protected session (CVE-2011-0411 and friends). */
static void
conn_start_tls(struct mock_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->raw);
	size_t n = evbuffer_get_length(in);
	char note[80];

	c->starttls = false;
	if (n > 0) {
		snprintf(note, sizeof(note), "<%zu bytes after STARTTLS "
		    "discarded>", n);
		mock_conn_log(c, note, strlen(note));
		evbuffer_drain(in, n);
	}
	imap_framer_init(&c->framer, IMAP_MODE_COMMAND, MOCK_LINE_MAX);
	conn_tls_on(c);
}

void
mock_conn_new(int fd, bool tls)
{
	struct mock_conn *c = calloc(1, sizeof(*c));
	struct evbuffer *greet;

	if (c == NULL)
		oom();
	c->id = ++mock_srv.next_conn_id;
	c->raw = bufferevent_socket_new(mock_srv.base, fd,
	    BEV_OPT_CLOSE_ON_FREE);
	c->bev = c->raw;
	c->timer = evtimer_new(mock_srv.base, conn_timer_cb, c);
	c->resp = evbuffer_new();
	if (c->raw == NULL || c->timer == NULL || c->resp == NULL)
		oom();
	imap_framer_init(&c->framer, IMAP_MODE_COMMAND, MOCK_LINE_MAX);
	c->state = MOCK_ST_NOAUTH;
	c->wait = MOCK_W_SEGMENT;
	c->next = mock_srv.conns;
	if (c->next != NULL)
		c->next->prev = c;
	mock_srv.conns = c;
	mock_srv.stats.connections++;

	if (tls) {
		conn_tls_on(c);	/* the greeting goes out after the handshake */
	} else {
		bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb,
		    conn_event_cb, c);
		bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	}
	greet = bufferevent_get_output(c->bev);
	if (mock_srv.greeting_caps) {
		evbuffer_add_printf(greet, "* OK [");
		mock_capabilities(greet, false, c->tls);
		evbuffer_add_printf(greet, "] mock ready\r\n");
	} else {
		evbuffer_add_printf(greet, "* OK mock ready\r\n");
	}
}

/* ---- the command being received ---- */

static void
args_free_from(struct mock_conn *c, size_t from)
{
	size_t i;

	for (i = from; i < c->nargs; i++) {
		c->argbytes -= c->args[i].len;
		free(c->args[i].s);
	}
	if (from < c->nargs)
		c->nargs = from;
}

static void
cmd_end(struct mock_conn *c)
{
	args_free_from(c, 0);
	free(c->args);
	c->args = NULL;
	c->nargs = c->capargs = c->argbytes = 0;
	free(c->line);
	c->line = NULL;
	free(c->fail_text);
	c->fail_text = NULL;
	c->fail_status = NULL;
	mock_append_free(c->append);
	c->append = NULL;
	if (c->sink == MOCK_SINK_ARG)
		free(c->lit_buf);
	c->lit_buf = NULL;
	c->sink = MOCK_SINK_DISCARD;
	c->cmd = NULL;
	c->argi = 0;
	c->in_cmd = false;
}

size_t
mock_conn_nargs(const struct mock_conn *c)
{
	return c->nargs > c->argi ? c->nargs - c->argi : 0;
}

struct mock_arg *
mock_conn_arg(struct mock_conn *c, size_t i)
{
	if (c->argi + i >= c->nargs)
		return NULL;
	return &c->args[c->argi + i];
}

void
mock_conn_args_truncate(struct mock_conn *c, size_t n)
{
	args_free_from(c, c->argi + n);
}

void
mock_conn_fail(struct mock_conn *c, const char *status, const char *fmt, ...)
{
	va_list ap;

	if (c->fail_status != NULL)
		return;		/* the first reason is the one reported */
	va_start(ap, fmt);
	if (vasprintf(&c->fail_text, fmt, ap) < 0)
		oom();
	va_end(ap);
	c->fail_status = status;
}

/* Adds one argument; the value is copied (or, for a literal, taken). */
static void
arg_push(struct mock_conn *c, enum mock_arg_kind kind, char *s, size_t len,
    size_t off, bool literal)
{
	struct mock_arg *a;

	if (c->nargs == MOCK_ARGS_MAX ||
	    c->argbytes + len > MOCK_ARG_BYTES_MAX) {
		mock_conn_fail(c, "BAD", "command too long");
		free(s);
		return;
	}
	if (c->nargs == c->capargs) {
		size_t cap = c->capargs ? c->capargs * 2 : 16;
		struct mock_arg *n = realloc(c->args, cap * sizeof(*n));

		if (n == NULL)
			oom();
		c->args = n;
		c->capargs = cap;
	}
	a = &c->args[c->nargs++];
	a->kind = kind;
	a->literal = literal;
	a->s = s;
	a->len = len;
	a->off = off;
	c->argbytes += len;
}

static void
add_tokens(struct mock_conn *c, const char *buf,
    const struct imap_segment *seg, unsigned from)
{
	unsigned i;

	for (i = from; i < seg->ntok && c->fail_status == NULL; i++) {
		const struct imap_token *t = &seg->tok[i];
		char *s;
		int n;

		switch (t->kind) {
		case IMAP_TOK_LPAREN:
			arg_push(c, MOCK_ARG_LPAREN, NULL, 0, t->off, false);
			break;
		case IMAP_TOK_RPAREN:
			arg_push(c, MOCK_ARG_RPAREN, NULL, 0, t->off, false);
			break;
		case IMAP_TOK_LITERAL:
			break;	/* its data comes as an argument later */
		case IMAP_TOK_QUOTED:
			if ((s = malloc(t->len + 1)) == NULL)
				oom();
			n = imap_unquote(buf, t, s, t->len);
			if (n < 0) {
				free(s);
				mock_conn_fail(c, "BAD", "bad quoted string");
				break;
			}
			s[n] = '\0';
			if (memchr(s, '\0', (size_t)n) != NULL) {
				free(s);
				mock_conn_fail(c, "BAD", "NUL in string");
				break;
			}
			arg_push(c, MOCK_ARG_STRING, s, (size_t)n, t->off, false);
			break;
		default:	/* atoms (and anything atom-like) */
			if ((s = malloc(t->len + 1)) == NULL)
				oom();
			memcpy(s, buf + t->off, t->len);
			s[t->len] = '\0';
			arg_push(c, MOCK_ARG_ATOM, s, t->len, t->off, false);
			break;
		}
	}
}

static bool
cmd_start(struct mock_conn *c, const char *buf,
    const struct imap_segment *seg)
{
	const struct imap_token *t = &seg->tok[0];

	c->in_cmd = true;
	if (t->len > MOCK_TAG_MAX) {
		strcpy(c->tag, "*");
		mock_conn_fail(c, "BAD", "tag too long");
		return true;
	}
	memcpy(c->tag, buf + t->off, t->len);
	c->tag[t->len] = '\0';
	if ((c->line = malloc(seg->eol + 1)) == NULL)
		oom();
	memcpy(c->line, buf, seg->eol);
	c->line[seg->eol] = '\0';
	return true;
}

static unsigned
state_bit(const struct mock_conn *c)
{
	switch (c->state) {
	case MOCK_ST_NOAUTH:
		return MOCK_S_NOAUTH;
	case MOCK_ST_AUTH:
		return MOCK_S_AUTH;
	case MOCK_ST_SELECTED:
		return MOCK_S_SELECTED;
	default:
		return 0;
	}
}

static void
cmd_identify(struct mock_conn *c)
{
	struct mock_arg *name = c->nargs > 0 ? &c->args[0] : NULL;
	struct mock_arg *sub = c->nargs > 1 ? &c->args[1] : NULL;
	bool uid;

	if (name == NULL || name->kind != MOCK_ARG_ATOM) {
		mock_conn_fail(c, "BAD", "missing command");
		return;
	}
	uid = mock_arg_is(name, "UID");
	if (uid && (sub == NULL || sub->kind != MOCK_ARG_ATOM)) {
		mock_conn_fail(c, "BAD", "UID needs a command");
		return;
	}
	c->argi = uid ? 2 : 1;
	c->cmd = mock_cmd_find(name->s, uid ? sub->s : NULL);

	/* what the upstream received, whatever the outcome */
	if (!uid && mock_arg_is(name, "APPEND"))
		mock_srv.stats.appends++;
	else if (!uid && mock_arg_is(name, "EXPUNGE"))
		mock_srv.stats.expunge++;
	else if (!uid && mock_arg_is(name, "CLOSE"))
		mock_srv.stats.close++;
	else if (uid && mock_arg_is(sub, "EXPUNGE"))
		mock_srv.stats.uidexpunge++;

	if (c->cmd == NULL) {
		mock_conn_fail(c, "BAD", "unknown command");
		return;
	}
	if (!(c->cmd->states & state_bit(c))) {
		mock_conn_fail(c, "BAD", "command not valid in this state");
		return;
	}
	if (c->cmd->exec == mock_cmd_append)
		c->append = mock_append_new();
}

/* A segment ends with a literal header: decide how to take the literal. */
static void
literal_header(struct mock_conn *c, const struct imap_segment *seg)
{
	uint64_t n = seg->literal;
	bool nonsync = (seg->literal_flags & IMAP_LIT_NONSYNC) != 0;
	bool is_msg;

	if (nonsync && mock_srv.profile == MOCK_PROFILE_NOLITERALPLUS) {
		mock_conn_bye(c, "non-synchronizing literal not supported");
		return;
	}
	if (nonsync && mock_srv.profile == MOCK_PROFILE_LITERALMINUS &&
	    n > MOCK_LITERALMINUS_MAX) {
		mock_conn_bye(c, "non-synchronizing literal larger than 4096 "
		    "bytes (LITERAL-)");
		return;
	}
	is_msg = c->append != NULL && mock_append_is_message(c);
	if (c->fail_status == NULL) {
		if (seg->literal_flags & IMAP_LIT_BINARY)
			mock_conn_fail(c, "BAD", "literal8 not supported");
		else if (is_msg)
			mock_append_literal(c, n);
		else if (n > MOCK_ARG_LITERAL_MAX ||
		    c->argbytes + n > MOCK_ARG_BYTES_MAX)
			mock_conn_fail(c, "BAD", "literal too large");
	}
	if (c->fail_status != NULL) {
		if (!nonsync) {
			/* refused instead of "+": the client sends no data
			 * and the line is over */
			imap_framer_reset_line(&c->framer);
			mock_conn_tagged(c, c->fail_status, "%s", c->fail_text);
			return;
		}
		if (n > MOCK_LITERAL_MAX) {
			mock_conn_bye(c, "literal too large");
			return;
		}
		c->sink = MOCK_SINK_DISCARD;
	} else if (is_msg) {
		c->sink = MOCK_SINK_MSG;	/* lit_buf set by the append */
	} else {
		c->sink = MOCK_SINK_ARG;
		if ((c->lit_buf = malloc(n + 1)) == NULL)
			oom();
	}
	c->lit_size = n;
	c->lit_got = 0;
	c->wait = MOCK_W_LITERAL;
	if (!nonsync)
		mock_conn_continue(c, "Ready for literal data");
}

/* Literal bytes the framer found: kept or dropped. */
static void
literal_take(struct mock_conn *c, struct evbuffer *in, size_t n)
{
	if (c->sink == MOCK_SINK_DISCARD) {
		imap_framer_drop(&c->framer, in, n);
	} else {
		evbuffer_remove(in, c->lit_buf + c->lit_got, n);
		imap_framer_consumed(&c->framer, n);
	}
	c->lit_got += n;
}

/* The literal is complete. */
static void
literal_done(struct mock_conn *c)
{
	char note[64];

	snprintf(note, sizeof(note), "<literal %llu bytes>",
	    (unsigned long long)c->lit_size);
	mock_conn_log(c, note, strlen(note));
	c->wait = MOCK_W_SEGMENT;
	switch (c->sink) {
	case MOCK_SINK_ARG:
		c->lit_buf[c->lit_got] = '\0';
		arg_push(c, MOCK_ARG_STRING, c->lit_buf, c->lit_got, 0, true);
		c->lit_buf = NULL;
		break;
	case MOCK_SINK_MSG:
		c->lit_buf = NULL;
		mock_append_literal_done(c);
		break;
	case MOCK_SINK_DISCARD:
		break;
	}
	c->sink = MOCK_SINK_DISCARD;
}

static void
parse_error(struct mock_conn *c, const char *buf, size_t len, const char *why)
{
	size_t n = 0;

	if (c->in_cmd) {
		mock_conn_tagged(c, "BAD", "%s", why);
		return;
	}
	while (n < len && buf[n] != ' ' && buf[n] != '\r' && buf[n] != '\n')
		n++;
	c->in_cmd = true;
	if (n > 0 && n <= MOCK_TAG_MAX && imap_valid_tag(buf, n)) {
		memcpy(c->tag, buf, n);
		c->tag[n] = '\0';
	} else {
		strcpy(c->tag, "*");
	}
	mock_conn_tagged(c, "BAD", "%s", why);
}

static void
segment(struct mock_conn *c, const char *buf, size_t len,
    const struct imap_segment *seg)
{
	mock_conn_log(c, buf, len);
	if (seg->first) {
		if (seg->ntok == 0)
			return;	/* empty line */
		cmd_start(c, buf, seg);
	}
	if (seg->truncated)
		mock_conn_fail(c, "BAD", "too many arguments");
	add_tokens(c, buf, seg, seg->first ? 1 : 0);
	if (seg->first && c->fail_status == NULL)
		cmd_identify(c);
	if (!seg->last) {
		literal_header(c, seg);
		return;
	}
	if (c->fail_status != NULL)
		mock_conn_tagged(c, c->fail_status, "%s", c->fail_text);
	else
		c->cmd->exec(c);
}

/* ---- output ---- */

static void
start_close(struct mock_conn *c)
{
	cmd_end(c);
	evtimer_del(c->timer);
	c->wait = MOCK_W_CLOSING;
	c->throttled = false;
	if (!c->peer_eof)
		bufferevent_enable(c->bev, EV_READ);	/* drain, see linger */
	if (out_pending(c) == 0)
		output_flushed(c);
}

static void
answer_out(struct mock_conn *c)
{
	bufferevent_write_buffer(c->bev, c->resp);
	c->wait = MOCK_W_SEGMENT;
	if (c->close_after)
		start_close(c);
}

void
mock_conn_untagged(struct mock_conn *c, const char *fmt, ...)
{
	va_list ap;

	evbuffer_add(c->resp, "* ", 2);
	va_start(ap, fmt);
	evbuffer_add_vprintf(c->resp, fmt, ap);
	va_end(ap);
	evbuffer_add(c->resp, "\r\n", 2);
}

void
mock_conn_tagged(struct mock_conn *c, const char *status, const char *fmt,
    ...)
{
	va_list ap;

	if (c->dead || c->wait == MOCK_W_CLOSING || c->wait == MOCK_W_STALL)
		return;
	mock_conn_sync(c, c->cmd == NULL || !c->cmd->no_expunge, c->resp);
	evbuffer_add_printf(c->resp, "%s %s ", c->tag[0] ? c->tag : "*",
	    status);
	va_start(ap, fmt);
	evbuffer_add_vprintf(c->resp, fmt, ap);
	va_end(ap);
	evbuffer_add(c->resp, "\r\n", 2);
	cmd_end(c);
	if (mock_srv.delay_ms > 0) {
		struct timeval tv = {
			.tv_sec = mock_srv.delay_ms / 1000,
			.tv_usec = (mock_srv.delay_ms % 1000) * 1000,
		};

		c->wait = MOCK_W_DELAY;
		bufferevent_disable(c->bev, EV_READ);
		evtimer_add(c->timer, &tv);
	} else {
		answer_out(c);
	}
}

void
mock_conn_continue(struct mock_conn *c, const char *text)
{
	evbuffer_add_printf(bufferevent_get_output(c->bev), "+ %s\r\n", text);
}

void
mock_conn_bye(struct mock_conn *c, const char *text)
{
	if (c->wait == MOCK_W_CLOSING)
		return;
	evbuffer_drain(c->resp, evbuffer_get_length(c->resp));
	evbuffer_add_printf(bufferevent_get_output(c->bev), "* BYE %s\r\n",
	    text);
	start_close(c);
}

void
mock_conn_drop(struct mock_conn *c)
{
	if (c->wait == MOCK_W_CLOSING)
		return;
	evbuffer_drain(c->resp, evbuffer_get_length(c->resp));
	start_close(c);
}

void
mock_conn_stall(struct mock_conn *c, const char *bytes, size_t len)
{
	if (c->wait == MOCK_W_CLOSING)
		return;
	evbuffer_drain(c->resp, evbuffer_get_length(c->resp));
	evbuffer_add(bufferevent_get_output(c->bev), bytes, len);
	cmd_end(c);
	c->wait = MOCK_W_STALL;
}

void
mock_conn_wait_line(struct mock_conn *c, enum mock_wait w)
{
	c->wait = w;
}

void
mock_conn_log(struct mock_conn *c, const char *text, size_t len)
{
	if (mock_srv.log == NULL)
		return;
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		len--;
	fprintf(mock_srv.log, "c%llu %.*s\n", (unsigned long long)c->id,
	    (int)len, text);
	fflush(mock_srv.log);
}

/* ---- the client's view of its selected mailbox ---- */

static void
view_reserve(struct mock_conn *c, size_t n)
{
	uint32_t *v;
	size_t cap;

	if (n <= c->capview)
		return;
	cap = c->capview ? c->capview : 64;
	while (cap < n)
		cap *= 2;
	if ((v = realloc(c->view, cap * sizeof(*v))) == NULL)
		oom();
	c->view = v;
	c->capview = cap;
}

void
mock_conn_select(struct mock_conn *c, struct mock_mailbox *mb, bool readonly)
{
	size_t i;

	mock_conn_deselect(c);
	c->mbox = mb;
	mb->selected++;
	c->readonly = readonly;
	view_reserve(c, mb->nmsgs);
	for (i = 0; i < mb->nmsgs; i++)
		c->view[i] = mb->msgs[i]->uid;
	c->nview = mb->nmsgs;
	c->view_uidnext = mb->uidnext;
	c->view_modseq = mb->modseq;
	c->view_expunges = mb->expunges;
	c->state = MOCK_ST_SELECTED;
}

void
mock_conn_deselect(struct mock_conn *c)
{
	if (c->mbox != NULL)
		c->mbox->selected--;
	c->mbox = NULL;
	c->nview = 0;
	if (c->state == MOCK_ST_SELECTED)
		c->state = MOCK_ST_AUTH;
}

static void
view_remove(struct mock_conn *c, size_t i)
{
	memmove(c->view + i, c->view + i + 1,
	    (c->nview - i - 1) * sizeof(*c->view));
	c->nview--;
}

void
mock_conn_sync(struct mock_conn *c, bool expunges, struct evbuffer *out)
{
	struct mock_mailbox *mb = c->mbox;
	size_t i, before;

	if (mb == NULL)
		return;
	/* Descending, so that every number sent is still the current one. */
	if (expunges && c->view_expunges != mb->expunges) {
		for (i = c->nview; i-- > 0;) {
			if (mock_store_msg_find(mb, c->view[i]) != NULL)
				continue;
			evbuffer_add_printf(out, "* %zu EXPUNGE\r\n", i + 1);
			view_remove(c, i);
		}
		c->view_expunges = mb->expunges;
	}
	if (c->view_uidnext != mb->uidnext) {
		before = c->nview;
		i = mock_store_lower_bound(mb, c->view_uidnext);
		view_reserve(c, c->nview + (mb->nmsgs - i));
		for (; i < mb->nmsgs; i++)
			c->view[c->nview++] = mb->msgs[i]->uid;
		c->view_uidnext = mb->uidnext;
		if (c->nview != before)
			evbuffer_add_printf(out, "* %zu EXISTS\r\n", c->nview);
	}
	if (c->view_modseq != mb->modseq) {
		for (i = 0; i < c->nview; i++) {
			struct mock_msg *m = mock_store_msg_find(mb, c->view[i]);

			if (m == NULL || m->modseq <= c->view_modseq ||
			    m->changer == c->id)
				continue;
			evbuffer_add_printf(out, "* %zu FETCH (FLAGS ", i + 1);
			mock_flags_format(out, &m->flags);
			evbuffer_add(out, ")\r\n", 3);
		}
		c->view_modseq = mb->modseq;
	}
}

void
mock_notify(struct mock_mailbox *mb)
{
	struct mock_conn *c;

	for (c = mock_srv.conns; c != NULL; c = c->next) {
		if (c->mbox != mb || c->wait != MOCK_W_IDLE || c->dead)
			continue;
		mock_conn_sync(c, true, c->resp);
		bufferevent_write_buffer(c->bev, c->resp);
	}
}

/* ---- life cycle ---- */

static void
conn_free(struct mock_conn *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		mock_srv.conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	mock_conn_deselect(c);
	cmd_end(c);
	free(c->view);
	evbuffer_free(c->resp);
	event_free(c->timer);
	if (c->raw_out_cb != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_output(c->raw),
		    c->raw_out_cb);
	if (c->raw_flushed != NULL)
		event_free(c->raw_flushed);
	bufferevent_free(c->bev);	/* a TLS filter frees raw too */
	free(c);
}

void
mock_conn_free_all(void)
{
	while (mock_srv.conns != NULL)
		conn_free(mock_srv.conns);
}

/* After EOF from the peer: close once nothing is left to say. */
static void
maybe_finish(struct mock_conn *c)
{
	if (c->dead || !c->peer_eof)
		return;
	if (c->wait == MOCK_W_DELAY || c->throttled)
		return;
	if (out_pending(c) == 0)
		c->dead = true;
}

static void
conn_process(struct mock_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer *out = bufferevent_get_output(c->bev);

	while (!c->dead) {
		struct imap_frame f;

		if (c->wait == MOCK_W_CLOSING || c->wait == MOCK_W_STALL) {
			evbuffer_drain(in, evbuffer_get_length(in));
			break;
		}
		if (c->wait == MOCK_W_DELAY || c->throttled)
			break;
		if (c->starttls) {
			/* in and out belong to the plain text from here */
			conn_start_tls(c);
			break;
		}
		if (evbuffer_get_length(out) > MOCK_OUTPUT_HIGH) {
			c->throttled = true;
			bufferevent_disable(c->bev, EV_READ);
			break;
		}
		if (c->wait == MOCK_W_LITERAL &&
		    imap_framer_literal_left(&c->framer) == 0) {
			literal_done(c);
			continue;
		}
		imap_framer_set_mode(&c->framer, c->wait == MOCK_W_SASL ||
		    c->wait == MOCK_W_IDLE ? IMAP_MODE_RAW : IMAP_MODE_COMMAND);
		switch (imap_framer_next(&c->framer, in, &f)) {
		case IMAP_FRAME_MORE:
			break;
		case IMAP_FRAME_FATAL:
			mock_conn_bye(c, f.error);
			continue;
		case IMAP_FRAME_LITERAL:
			literal_take(c, in, f.len);
			continue;
		case IMAP_FRAME_BAD:
			mock_conn_log(c, f.buf, f.len);
			parse_error(c, f.buf, f.len, f.error);
			imap_framer_drop(&c->framer, in, f.len);
			continue;
		case IMAP_FRAME_SEGMENT:
			if (c->wait == MOCK_W_SASL)
				mock_cmd_auth_line(c, f.buf, f.len);
			else if (c->wait == MOCK_W_IDLE)
				mock_cmd_idle_line(c, f.buf, f.len);
			else
				segment(c, f.buf, f.len, &f.seg);
			imap_framer_drop(&c->framer, in, f.len);
			continue;
		}
		break;
	}
	maybe_finish(c);
}

/* The handshake is complete.  Called at the first read too: libevent
 * passes on data that came with the client's Finished before it reports
 * the handshake, and the statistics must count it before any command. */
static void
tls_established(struct mock_conn *c)
{
	char note[128], tls[96];

	if (c->tls_up)
		return;
	c->tls_up = true;
	mock_srv.stats.tls++;
	mock_tls_describe(c->bev, tls, sizeof(tls));
	snprintf(note, sizeof(note), "<TLS %s>", tls);
	mock_conn_log(c, note, strlen(note));
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct mock_conn *c = arg;

	(void)bev;
	if (c->tls)
		tls_established(c);
	conn_process(c);
	if (c->dead)
		conn_free(c);
}

/* The output buffer is empty: finish a close, or read again after
 * throttling.  Never frees c (callers hold it). */
static void
output_flushed(struct mock_conn *c)
{
	if (c->wait == MOCK_W_CLOSING) {
		if (c->peer_eof) {
			c->dead = true;
		} else if (c->tls && !c->tls_notified) {
			/* close_notify first; back here once it is out */
			c->tls_notified = true;
			mock_tls_close_notify(c->bev);
			if (out_pending(c) == 0)
				output_flushed(c);
		} else if (!c->shut) {
			/* Half-close and keep reading for a while: closing
			 * with unread input would reset the connection and
			 * could destroy the BYE before the peer reads it. */
			struct timeval tv = { MOCK_LINGER_MS / 1000,
			    (MOCK_LINGER_MS % 1000) * 1000 };

			shutdown(bufferevent_getfd(c->raw), SHUT_WR);
			c->shut = true;
			evtimer_add(c->timer, &tv);
		}
		return;
	}
	if (c->throttled) {
		c->throttled = false;
		if (!c->peer_eof && c->wait != MOCK_W_DELAY)
			bufferevent_enable(c->bev, EV_READ);
		conn_process(c);
	}
	maybe_finish(c);
}

static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct mock_conn *c = arg;

	(void)bev;
	if (out_pending(c) != 0)
		return;		/* TLS: conn_raw_flushed_cb comes later */
	output_flushed(c);
	if (c->dead)
		conn_free(c);
}

static void
conn_raw_flushed_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_write_cb(NULL, arg);
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct mock_conn *c = arg;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		tls_established(c);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		conn_free(c);
		return;
	}
	if (!(what & BEV_EVENT_EOF))
		return;
	c->peer_eof = true;
	if (c->wait == MOCK_W_STALL) {
		conn_free(c);
		return;
	}
	if (c->wait == MOCK_W_CLOSING) {
		/* a BYE still queued goes out first (output_flushed) */
		if (out_pending(c) == 0)
			conn_free(c);
		return;
	}
	conn_process(c);
	if (c->dead)
		conn_free(c);
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mock_conn *c = arg;

	(void)fd;
	(void)what;
	if (c->wait == MOCK_W_CLOSING) {
		conn_free(c);	/* linger over */
		return;
	}
	if (c->wait != MOCK_W_DELAY)
		return;
	answer_out(c);
	if (c->wait != MOCK_W_CLOSING && !c->peer_eof)
		bufferevent_enable(c->bev, EV_READ);
	conn_process(c);
	if (c->dead)
		conn_free(c);
}

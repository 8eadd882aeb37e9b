/*
 * relay.c — moving bytes between the client and the upstream with IMAP
 * framing: the framer (parser.h) cuts each stream into segments and literal
 * data; client segments go to the command table, upstream segments to the
 * response handler, and literal data is moved by count from one evbuffer
 * chain to the other without being copied or looked at.  The rest of a long
 * upstream literal not read yet may go from socket to socket by the kernel
 * (the session asks splice.c); the framer still counts every byte of it.
 *
 * The relay keeps the client side's input mode: commands, or a command that
 * owns the input (its entry takes every frame, or one continuation line at
 * a time, or nothing until it says so).  It knows nothing of what commands
 * mean, APPEND included.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "capability.h"
#include "command.h"
#include "log.h"
#include "relay.h"
#include "response.h"
#include "session.h"

/* Commands in flight upstream before the proxy stops reading the client. */
#define MAX_PIPELINE 1000

enum input_mode {
	INPUT_COMMANDS,		/* lines are commands: looked up, relayed */
	INPUT_TAKEN,		/* the owner's entry takes every frame */
	INPUT_LINE,		/* the next line is the owner's, relayed as it is */
	INPUT_WAIT,		/* nothing is read until the owner says */
	INPUT_DISCARD,		/* the rest of the current command is dropped */
};

/* Who gets the next "+" from the upstream. */
enum plus_owner {
	PLUS_NONE,
	PLUS_CLIENT,		/* the client's own synchronizing literal */
	PLUS_PROXY,		/* a {n+} the relay turned into {n} */
	PLUS_OWNER,		/* plus_fn's (an APPEND replay, AUTHENTICATE) */
};

struct relay {
	struct session *s;
	struct imap_framer cmd;		/* client -> upstream */
	struct imap_framer resp;	/* upstream -> client */
	enum input_mode mode;
	const struct command_entry *owner;	/* TAKEN, LINE, WAIT */
	struct pending *owner_pending;		/* LINE, WAIT */
	struct pending *current;	/* the relayed command being read */
	int capture_arg;		/* literal kept into this argument, or -1 */
	unsigned holds;			/* RELAY_HOLD_* */
	enum plus_owner plus;
	relay_plus_cb plus_fn;
	void *plus_arg;
	bool held;			/* the client's literal waits for our "+" */
};

struct relay *
relay_new(struct session *s)
{
	struct relay *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->s = s;
	imap_framer_init(&r->cmd, IMAP_MODE_COMMAND,
	    session_config(s)->max_line_length);
	imap_framer_init(&r->resp, IMAP_MODE_RESPONSE,
	    imap_response_line_max(session_config(s)->max_line_length));
	r->capture_arg = -1;
	return r;
}

void
relay_free(struct relay *r)
{
	free(r);
}

void
relay_upstream_restart(struct session *s)
{
	struct relay *r = session_relay(s);

	imap_framer_init(&r->resp, IMAP_MODE_RESPONSE,
	    imap_response_line_max(session_config(s)->max_line_length));
	r->plus = PLUS_NONE;
	r->plus_fn = NULL;
	r->held = false;
}

void
relay_client_restart(struct session *s)
{
	struct relay *r = session_relay(s);

	imap_framer_init(&r->cmd, IMAP_MODE_COMMAND,
	    session_config(s)->max_line_length);
	r->mode = INPUT_COMMANDS;
}

void
relay_hold(struct session *s, unsigned reason, bool on)
{
	struct relay *r = session_relay(s);

	if (on)
		r->holds |= reason;
	else
		r->holds &= ~reason;
}

static void
set_mode(struct relay *r, enum input_mode mode, const struct command_entry *owner,
    struct pending *p)
{
	r->mode = mode;
	r->owner = owner;
	r->owner_pending = p;
}

void
relay_release_input(struct session *s)
{
	set_mode(session_relay(s), INPUT_COMMANDS, NULL, NULL);
}

void
relay_expect_line(struct session *s, struct pending *p)
{
	set_mode(session_relay(s), INPUT_LINE, p->cmd, p);
}

void
relay_wait_input(struct session *s, struct pending *p)
{
	set_mode(session_relay(s), INPUT_WAIT, p->cmd, p);
}

void
relay_expect_plus(struct session *s, relay_plus_cb fn, void *arg)
{
	struct relay *r = session_relay(s);

	r->plus = fn != NULL ? PLUS_OWNER : PLUS_NONE;
	r->plus_fn = fn;
	r->plus_arg = arg;
}

bool
relay_quiet(const struct session *s)
{
	const struct relay *r = session_relay(s);

	return r->plus == PLUS_NONE && !r->held;
}

/*
 * A command in flight is gone.  If it is the one the client is still
 * sending (answered early), a client waiting for "+" gives the command up;
 * a {n+} the relay made synchronizing is sent on by the client but not
 * wanted upstream, so the rest of the command is dropped; otherwise the
 * upstream consumes the rest as it sees fit, and the relay goes on.
 */
void
relay_forget(struct session *s, struct pending *p)
{
	struct relay *r = session_relay(s);

	if (r == NULL)
		return;
	if (r->owner_pending == p)
		set_mode(r, INPUT_COMMANDS, NULL, NULL);
	if (r->plus == PLUS_OWNER && r->plus_arg == p)
		relay_expect_plus(s, NULL, NULL);
	if (r->current != p)
		return;
	r->current = NULL;
	r->capture_arg = -1;
	r->held = false;
	if (r->plus == PLUS_CLIENT) {
		imap_framer_reset_line(&r->cmd);
	} else if (r->plus == PLUS_PROXY) {
		imap_framer_skip_literal(&r->cmd);
		r->mode = INPUT_DISCARD;
	}
	r->plus = PLUS_NONE;
}

/*
 * The text of a segment that failed to parse ends with "+}": a
 * non-synchronizing literal follows whose size cannot be trusted, so the
 * bytes that come next cannot be told from commands.
 */
static bool
ends_with_nonsync_header(const char *buf, size_t len)
{
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	return len >= 2 && buf[len - 1] == '}' && buf[len - 2] == '+';
}

void
relay_client_syntax_error(struct session *s, struct imap_framer *fr,
    struct evbuffer *in, const struct imap_frame *f)
{
	size_t taglen = 0;

	log_info(session_id(s), "client protocol error: %s", f->error);
	if (!f->seg.first || ends_with_nonsync_header(f->buf, f->len)) {
		/* part of the command is upstream already, or the client is
		 * sending bytes of unknown length: no way back in step */
		session_close(s, f->error);
		return;
	}
	while (taglen < f->len && f->buf[taglen] != ' ' && f->buf[taglen] != '\r' &&
	    f->buf[taglen] != '\n')
		taglen++;
	if (taglen > COMMAND_MAX_TAG || !imap_valid_tag(f->buf, taglen))
		session_reply(s, "* BAD %s", f->error);
	else
		session_reply(s, "%.*s BAD %s", (int)taglen, f->buf, f->error);
	imap_framer_drop(fr, in, f->len);
}

bool
relay_discard_segment(struct imap_framer *fr, struct evbuffer *in,
    const struct imap_frame *f)
{
	imap_framer_drop(fr, in, f->len);
	if (f->seg.last)
		return true;
	if (f->seg.literal_flags & IMAP_LIT_NONSYNC) {
		imap_framer_skip_literal(fr);
		return false;
	}
	/* the client waits for a "+" that will not come */
	imap_framer_reset_line(fr);
	return true;
}

/* A segment of a command answered by the proxy: dropped, with its literal. */
static void
discard_segment(struct relay *r, struct evbuffer *in, const struct imap_frame *f)
{
	if (relay_discard_segment(&r->cmd, in, f))
		r->mode = INPUT_COMMANDS;
}

/* The next segment of a command being relayed upstream. */
static void
relay_segment(struct session *s, struct relay *r, struct evbuffer *in,
    const struct imap_frame *f)
{
	struct evbuffer *out = session_upstream_output(s);
	const struct imap_segment *seg = &f->seg;
	struct pending *p = r->current;
	bool nonsync = (seg->literal_flags & IMAP_LIT_NONSYNC) != 0;

	if (p != NULL)
		command_capture(p, f->buf, seg);
	if (seg->last) {
		imap_framer_move(&r->cmd, in, out, f->len);
		r->current = NULL;
		if (p != NULL && p->cmd->sent != NULL)
			p->cmd->sent(s, p);
		return;
	}
	if (nonsync && !capability_nonsync_ok(response_caps(s), seg->literal)) {
		/* the upstream needs a "+" first: ask for it ourselves, and
		 * hold the data the client sends on regardless */
		imap_framer_move(&r->cmd, in, out, seg->literal_off);
		imap_framer_drop(&r->cmd, in, f->len - seg->literal_off);
		evbuffer_add_printf(out, "%s{%llu}\r\n",
		    (seg->literal_flags & IMAP_LIT_BINARY) ? "~" : "",
		    (unsigned long long)seg->literal);
		r->plus = PLUS_PROXY;
		r->held = true;
	} else {
		imap_framer_move(&r->cmd, in, out, f->len);
		if (!nonsync)
			r->plus = PLUS_CLIENT;
	}
	r->capture_arg = p != NULL ? command_capture_literal(p, seg->literal) : -1;
}

/* The first segment of a command: its table entry decides. */
static void
start_command(struct session *s, struct relay *r, struct evbuffer *in,
    const struct imap_frame *f)
{
	const struct imap_token *tag = &f->seg.tok[0], *name = &f->seg.tok[1];
	const struct command_entry *e;
	enum command_verdict verdict;
	struct pending *p;

	if (tag->len > COMMAND_MAX_TAG) {
		session_reply(s, "* BAD Tag longer than %d bytes", COMMAND_MAX_TAG);
		r->mode = INPUT_DISCARD;
		discard_segment(r, in, f);
		return;
	}
	session_note_command(s);
	e = command_lookup(f->buf + name->off, name->len);
	verdict = e->start != NULL ? e->start(s, f->buf, &f->seg) : VERDICT_RELAY;
	switch (verdict) {
	case VERDICT_CLOSE:
		return;
	case VERDICT_TAKEN:
		set_mode(r, INPUT_TAKEN, e, NULL);
		e->input(s, &r->cmd, in, f);
		return;
	case VERDICT_STARTTLS:
		imap_framer_drop(&r->cmd, in, f->len);
		session_starttls(s);
		return;
	case VERDICT_DONE:
		r->mode = INPUT_DISCARD;
		discard_segment(r, in, f);
		return;
	case VERDICT_RELAY:
		break;
	}
	p = session_pending_add(s, f->buf + tag->off, tag->len, e);
	if (p == NULL) {
		session_close(s, "Out of memory");
		return;
	}
	p->want_args = e->args;
	r->current = p;
	relay_segment(s, r, in, f);
}

/* A continuation line of the command that owns the input. */
static void
owner_line(struct session *s, struct relay *r, struct evbuffer *in,
    const struct imap_frame *f)
{
	struct pending *p = r->owner_pending;
	const struct command_entry *e = r->owner;

	set_mode(r, INPUT_COMMANDS, NULL, NULL);
	if (e != NULL && e->line != NULL)
		e->line(s, p, f->buf, f->len);
	imap_framer_move(&r->cmd, in, session_upstream_output(s), f->len);
}

static void
client_segment(struct session *s, struct relay *r, struct evbuffer *in,
    const struct imap_frame *f)
{
	switch (r->mode) {
	case INPUT_TAKEN:
		r->owner->input(s, &r->cmd, in, f);
		return;
	case INPUT_LINE:
		owner_line(s, r, in, f);
		return;
	case INPUT_DISCARD:
		discard_segment(r, in, f);
		return;
	case INPUT_WAIT:
	case INPUT_COMMANDS:
		break;
	}
	if (!f->seg.first) {
		relay_segment(s, r, in, f);
	} else if (f->seg.ntok == 0) {
		imap_framer_drop(&r->cmd, in, f->len);	/* an empty line */
	} else {
		start_command(s, r, in, f);
	}
}

static void
client_literal(struct session *s, struct relay *r, struct evbuffer *in,
    const struct imap_frame *f)
{
	if (r->mode == INPUT_TAKEN) {
		r->owner->input(s, &r->cmd, in, f);
		return;
	}
	if (r->mode == INPUT_DISCARD || r->current == NULL) {
		imap_framer_drop(&r->cmd, in, f->len);
		return;
	}
	command_capture_bytes(r->current, r->capture_arg, in, f->len);
	imap_framer_move(&r->cmd, in, session_upstream_output(s), f->len);
	if (imap_framer_literal_left(&r->cmd) == 0)
		r->capture_arg = -1;
}

/* May the client's next command be read now? */
static bool
may_start_command(struct session *s, const struct relay *r)
{
	return r->holds == 0 && session_pending_count(s) < MAX_PIPELINE;
}

void
relay_client_input(struct session *s)
{
	struct relay *r = session_relay(s);
	struct evbuffer *in = session_client_input(s);

	if (session_closing(s) || !session_relaying(s))
		return;
	while (!session_closing(s) && !r->held && r->mode != INPUT_WAIT) {
		struct imap_frame f;

		if (r->mode == INPUT_COMMANDS && !imap_framer_in_line(&r->cmd) &&
		    !may_start_command(s, r))
			return;
		if (r->mode != INPUT_TAKEN && session_output_full(s, SESSION_UPSTREAM))
			return;
		imap_framer_set_mode(&r->cmd, r->mode == INPUT_LINE ? IMAP_MODE_RAW :
		    IMAP_MODE_COMMAND);
		switch (imap_framer_next(&r->cmd, in, &f)) {
		case IMAP_FRAME_MORE:
			return;
		case IMAP_FRAME_FATAL:
			log_info(session_id(s), "client input: %s (at most %zu bytes)",
			    f.error, r->cmd.max_line);
			session_close(s, strcmp(f.error, "line too long") == 0 ?
			    "Command line too long" : "Internal error");
			return;
		case IMAP_FRAME_BAD:
			relay_client_syntax_error(s, &r->cmd, in, &f);
			break;
		case IMAP_FRAME_LITERAL:
			client_literal(s, r, in, &f);
			break;
		case IMAP_FRAME_SEGMENT:
			client_segment(s, r, in, &f);
			break;
		}
	}
}

/* A "+" from the upstream: for whoever waits for it. */
static bool
continuation(struct session *s, struct relay *r)
{
	enum plus_owner plus = r->plus;
	relay_plus_cb fn = r->plus_fn;

	r->plus = PLUS_NONE;
	r->plus_fn = NULL;
	switch (plus) {
	case PLUS_PROXY:
		/* ours: the held literal may go now */
		r->held = false;
		session_resume_input(s);
		return false;
	case PLUS_OWNER:
		return fn(s, r->plus_arg);
	case PLUS_CLIENT:
	case PLUS_NONE:
		break;
	}
	return true;
}

static void
upstream_segment(struct session *s, struct relay *r, struct evbuffer *in,
    const struct imap_frame *f)
{
	bool forward;

	switch (response_segment(s, f->buf, f->len, &f->seg)) {
	case RESPONSE_CONTINUATION:
		forward = continuation(s, r);
		break;
	case RESPONSE_FORWARD:
		forward = true;
		break;
	case RESPONSE_DROP:
	default:
		forward = false;
		break;
	}
	if (session_closing(s) || session_upstream_input(s) != in)
		return;
	if (forward) {
		imap_framer_move(&r->resp, in, session_client_output(s), f->len);
		return;
	}
	imap_framer_drop(&r->resp, in, f->len);
	imap_framer_skip_literal(&r->resp);
}

void
relay_upstream_spliced(struct session *s, size_t n)
{
	imap_framer_consumed(&session_relay(s)->resp, n);
}

void
relay_upstream_input(struct session *s)
{
	struct relay *r = session_relay(s);
	struct evbuffer *in;

	if (session_closing(s) || session_splicing(s) ||
	    (in = session_upstream_input(s)) == NULL)
		return;
	/* an answer may end the upstream (a protocol error while a MULTIAPPEND
	 * is resolved): nothing after it is read, whatever is buffered */
	while (!session_closing(s) && session_upstream_input(s) == in) {
		struct imap_frame f;

		if (session_output_full(s, SESSION_CLIENT))
			return;
		switch (imap_framer_next(&r->resp, in, &f)) {
		case IMAP_FRAME_MORE:
			/* the rest of a long literal may go by the kernel,
			 * or is read up to its end */
			if (imap_framer_literal_wanted(&r->resp) > 0 &&
			    session_literal_rest(s,
			    imap_framer_literal_wanted(&r->resp)))
				break;
			return;
		case IMAP_FRAME_FATAL:
		case IMAP_FRAME_BAD:
			log_warn(session_id(s), "upstream protocol error: %s", f.error);
			session_close(s, "Upstream protocol error");
			return;
		case IMAP_FRAME_LITERAL:
			imap_framer_move(&r->resp, in, session_client_output(s), f.len);
			break;
		case IMAP_FRAME_SEGMENT:
			upstream_segment(s, r, in, &f);
			break;
		}
	}
}

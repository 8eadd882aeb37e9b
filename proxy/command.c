/*
 * command.c — the client commands the proxy cares about, as a table whose
 * entries carry what the proxy does with each: answer it itself (STARTTLS,
 * COMPRESS), refuse it (LOGIN before TLS where TLS is required), keep its
 * arguments (a mailbox, credentials), learn from its answer (logged in,
 * selected), or own the client's input for a while (AUTHENTICATE's SASL
 * lines, IDLE's DONE; APPEND's entry lives in multiappend.c).  Everything
 * not in the table is relayed untouched.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "capability.h"
#include "command.h"
#include "credentials.h"
#include "log.h"
#include "metrics.h"
#include "multiappend.h"
#include "relay.h"
#include "response.h"
#include "session.h"
#include "tls.h"

static void
reply_tagged(struct session *s, const struct imap_segment *seg, const char *buf,
    const char *text)
{
	const struct imap_token *tag = &seg->tok[0];

	session_reply(s, "%.*s %s", (int)tag->len, buf + tag->off, text);
}

/* COMPRESS is never offered: compression would hide the stream from us. */
static enum command_verdict
compress_start(struct session *s, const char *buf, const struct imap_segment *seg)
{
	reply_tagged(s, seg, buf, "NO COMPRESS is not available through this proxy");
	return VERDICT_DONE;
}

/* STARTTLS is the proxy's own: the upstream never sees it. */
static enum command_verdict
starttls_start(struct session *s, const char *buf, const struct imap_segment *seg)
{
	if (!tls_server_available(session_config(s))) {
		reply_tagged(s, seg, buf, "NO STARTTLS is not available on this listener");
		return VERDICT_DONE;
	}
	if (session_client_tls(s)) {
		reply_tagged(s, seg, buf, "BAD TLS is active already");
		return VERDICT_DONE;
	}
	if (seg->ntok != 2 || !seg->last) {
		reply_tagged(s, seg, buf, "BAD STARTTLS takes no arguments");
		return VERDICT_DONE;
	}
	if (session_pending_count(s) > 0 || session_state(s) != SESSION_NOT_AUTHENTICATED) {
		reply_tagged(s, seg, buf, "BAD STARTTLS only before login, with no "
		    "command in progress");
		return VERDICT_DONE;
	}
	reply_tagged(s, seg, buf, "OK Begin TLS negotiation now");
	return VERDICT_STARTTLS;
}

static enum command_verdict
login_start(struct session *s, const char *buf, const struct imap_segment *seg)
{
	if (session_tls_required(s) && !session_client_tls(s)) {
		reply_tagged(s, seg, buf, "NO [PRIVACYREQUIRED] LOGIN is disabled "
		    "until STARTTLS");
		return VERDICT_DONE;
	}
	return VERDICT_RELAY;
}

/* Logged in: the new state, and the capabilities after login (asked for
 * when the answer did not list them). */
static void
logged_in(struct session *s, const struct answer *a)
{
	session_enter_state(s, SESSION_AUTHENTICATED);
	if (imap_code(a->line, a->seg, "CAPABILITY") == NULL)
		response_query_capabilities(s);
}

/* A login answered: counted, and a failure logged (never the password). */
static void
login_result(struct session *s, struct pending *p, const struct answer *a)
{
	size_t off = a->seg->ntok >= 2 ? a->seg->tok[1].off : 0, end = a->len;
	char user[256];

	metrics_login(a->ok);
	if (a->ok)
		return;
	session_login_failed(s);
	while (end > off && (a->line[end - 1] == '\r' || a->line[end - 1] == '\n'))
		end--;
	credentials_attempted_user(p, user, sizeof(user));
	log_info(session_id(s), "login failed: user=%s from=%s method=%s: %.*s",
	    user, session_peer(s), p->cmd->name, (int)(end - off), a->line + off);
}

static void
login_answered(struct session *s, struct pending *p, const struct answer *a)
{
	login_result(s, p, a);
	if (!a->ok)
		return;
	credentials_from_login(s, p);
	logged_in(s, a);
}

static enum command_verdict
authenticate_start(struct session *s, const char *buf,
    const struct imap_segment *seg)
{
	if (session_tls_required(s) && !session_client_tls(s) && seg->ntok >= 3 &&
	    capability_mechanism_in_clear(buf + seg->tok[2].off, seg->tok[2].len)) {
		reply_tagged(s, seg, buf, "NO [PRIVACYREQUIRED] This mechanism is "
		    "disabled until STARTTLS");
		return VERDICT_DONE;
	}
	return VERDICT_RELAY;
}

/* A SASL challenge: the client answers with one line. */
static bool
authenticate_plus(struct session *s, void *arg)
{
	relay_expect_line(s, arg);
	session_resume_input(s);
	return true;
}

/* The client waits for a challenge or the answer; lines come one per "+". */
static void
authenticate_sent(struct session *s, struct pending *p)
{
	relay_wait_input(s, p);
	relay_expect_plus(s, authenticate_plus, p);
}

static void
authenticate_line(struct session *s, struct pending *p, const char *buf, size_t len)
{
	credentials_note_sasl(p, buf, len);
	authenticate_sent(s, p);
}

static void
authenticate_answered(struct session *s, struct pending *p, const struct answer *a)
{
	login_result(s, p, a);
	if (!a->ok)
		return;
	credentials_from_authenticate(s, p);
	logged_in(s, a);
}

/* The session ends as the client asked, whatever the upstream says next. */
static enum command_verdict
logout_start(struct session *s, const char *buf, const struct imap_segment *seg)
{
	(void)buf;
	(void)seg;
	session_end_class(s, METRICS_END_CLIENT, "logout");
	return VERDICT_RELAY;
}

/* The next line is DONE, whenever the client sends it. */
static void
idle_sent(struct session *s, struct pending *p)
{
	relay_expect_line(s, p);
}

/* The mailbox selected (read-write unless the answer says READ-ONLY), or
 * none after a failure. */
static void
selected(struct session *s, struct pending *p, const struct answer *a, bool rw)
{
	if (a->bad)
		return;		/* not executed: nothing changed */
	if (!a->ok || p->nargs < 1) {
		/* a failed SELECT leaves no mailbox selected (RFC 3501 6.3.1) */
		session_select(s, NULL, 0, false);
		return;
	}
	session_select(s, p->arg[0], p->arglen[0],
	    rw && imap_code(a->line, a->seg, "READ-ONLY") == NULL);
}

static void
select_answered(struct session *s, struct pending *p, const struct answer *a)
{
	selected(s, p, a, true);
}

static void
examine_answered(struct session *s, struct pending *p, const struct answer *a)
{
	selected(s, p, a, false);
}

/* CLOSE and UNSELECT leave the selected state. */
static void
close_answered(struct session *s, struct pending *p, const struct answer *a)
{
	(void)p;
	if (a->ok)
		session_select(s, NULL, 0, false);
}

static const struct command_entry relayed = { .name = "(relayed)" };
const struct command_entry command_internal = { .name = "(the proxy's own)" };

static const struct command_entry authenticate_entry = {
	.name = "AUTHENTICATE", .args = 2,	/* mechanism, initial response */
	.start = authenticate_start, .sent = authenticate_sent,
	.line = authenticate_line, .answered = authenticate_answered,
};
static const struct command_entry close_entry = {
	.name = "CLOSE", .answered = close_answered,
};
static const struct command_entry compress_entry = {
	.name = "COMPRESS", .start = compress_start,
};
static const struct command_entry examine_entry = {
	.name = "EXAMINE", .args = 1, .answered = examine_answered,
};
static const struct command_entry idle_entry = {
	.name = "IDLE", .sent = idle_sent,
};
static const struct command_entry login_entry = {
	.name = "LOGIN", .args = 2, .start = login_start, .answered = login_answered,
};
static const struct command_entry logout_entry = {
	.name = "LOGOUT", .start = logout_start,
};
static const struct command_entry select_entry = {
	.name = "SELECT", .args = 1, .answered = select_answered,
};
static const struct command_entry starttls_entry = {
	.name = "STARTTLS", .start = starttls_start,
};
static const struct command_entry unselect_entry = {
	.name = "UNSELECT", .answered = close_answered,
};

static const struct command_entry *const commands[] = {
	&multiappend_command,
	&authenticate_entry,
	&close_entry,
	&compress_entry,
	&examine_entry,
	&idle_entry,
	&login_entry,
	&logout_entry,
	&select_entry,
	&starttls_entry,
	&unselect_entry,
};

const struct command_entry *
command_lookup(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strlen(commands[i]->name) == len &&
		    strncasecmp(commands[i]->name, name, len) == 0)
			return commands[i];
	return &relayed;
}

void
command_answer(struct answer *a, const char *buf, const struct imap_segment *seg)
{
	memset(a, 0, sizeof(*a));
	a->line = buf;
	a->len = seg->eol;
	a->seg = seg;
	if (seg->ntok >= 2) {
		a->ok = imap_tok_is(buf, &seg->tok[1], "OK");
		a->no = imap_tok_is(buf, &seg->tok[1], "NO");
		a->bad = imap_tok_is(buf, &seg->tok[1], "BAD");
	}
}

static bool
add_arg(struct pending *p, size_t size)
{
	if ((p->arg[p->nargs] = malloc(size > 0 ? size : 1)) == NULL) {
		p->want_args = 0;
		return false;
	}
	p->arglen[p->nargs] = 0;
	p->nargs++;
	p->want_args--;
	return true;
}

void
command_capture(struct pending *p, const char *buf, const struct imap_segment *seg)
{
	unsigned i = seg->first ? 2 : 0;

	for (; i < seg->ntok && p->want_args > 0; i++) {
		const struct imap_token *t = &seg->tok[i];
		int n;

		if (t->kind == IMAP_TOK_LITERAL)
			return;		/* command_capture_literal takes it */
		if (t->kind != IMAP_TOK_ATOM && t->kind != IMAP_TOK_QUOTED) {
			p->want_args = 0;
			return;
		}
		if (t->len > COMMAND_MAX_ARG_LEN + 2 || !add_arg(p, t->len)) {
			p->want_args = 0;
			return;
		}
		n = imap_unquote(buf, t, p->arg[p->nargs - 1], t->len);
		p->arglen[p->nargs - 1] = n > 0 ? (size_t)n : 0;
	}
}

int
command_capture_literal(struct pending *p, uint64_t size)
{
	if (p->want_args == 0)
		return -1;
	if (size > COMMAND_MAX_ARG_LEN || !add_arg(p, (size_t)size)) {
		p->want_args = 0;
		return -1;
	}
	return (int)p->nargs - 1;
}

void
command_capture_bytes(struct pending *p, int i, struct evbuffer *in, size_t n)
{
	if (i < 0 || p->arg[i] == NULL)
		return;
	evbuffer_copyout(in, p->arg[i] + p->arglen[i], n);
	p->arglen[i] += n;
}

/*
 * command.c — the client commands the proxy cares about, as a table.
 * Everything not in the table is relayed untouched; entries say what the
 * proxy must remember of a command (arguments, continuation lines) or
 * answer itself.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "capability.h"
#include "log.h"
#include "session.h"
#include "tls.h"

struct command_entry {
	const char *name;
	enum command_kind kind;
	unsigned args;		/* leading astring arguments to keep */
};

static const struct command_entry commands[] = {
	{ "APPEND", CMD_APPEND, 1 },
	{ "AUTHENTICATE", CMD_AUTHENTICATE, 2 },	/* mechanism, initial response */
	{ "CAPABILITY", CMD_CAPABILITY, 0 },
	{ "CLOSE", CMD_CLOSE, 0 },
	{ "COMPRESS", CMD_COMPRESS, 0 },
	{ "EXAMINE", CMD_EXAMINE, 1 },
	{ "IDLE", CMD_IDLE, 0 },
	{ "LOGIN", CMD_LOGIN, 2 },
	{ "LOGOUT", CMD_LOGOUT, 0 },
	{ "SELECT", CMD_SELECT, 1 },
	{ "STARTTLS", CMD_STARTTLS, 0 },
	{ "UNSELECT", CMD_CLOSE, 0 },
};

static const struct command_entry *
lookup(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strlen(commands[i].name) == len &&
		    strncasecmp(commands[i].name, name, len) == 0)
			return &commands[i];
	return NULL;
}

/* STARTTLS is the proxy's own: the upstream never sees it. */
static enum command_verdict
starttls(struct session *s, const char *buf, const struct imap_segment *seg)
{
	const struct imap_token *tag = &seg->tok[0];

	if (!tls_server_available()) {
		session_reply(s, "%.*s NO STARTTLS is not available on this listener",
		    (int)tag->len, buf + tag->off);
		return VERDICT_DONE;
	}
	if (s->client_tls) {
		session_reply(s, "%.*s BAD TLS is active already", (int)tag->len,
		    buf + tag->off);
		return VERDICT_DONE;
	}
	if (seg->ntok != 2 || !seg->last) {
		session_reply(s, "%.*s BAD STARTTLS takes no arguments", (int)tag->len,
		    buf + tag->off);
		return VERDICT_DONE;
	}
	if (s->npending > 0 || s->state < SESSION_NOT_AUTHENTICATED ||
	    s->state > SESSION_NOT_AUTHENTICATED) {
		session_reply(s, "%.*s BAD STARTTLS only before login, with no "
		    "command in progress", (int)tag->len, buf + tag->off);
		return VERDICT_DONE;
	}
	session_reply(s, "%.*s OK Begin TLS negotiation now", (int)tag->len,
	    buf + tag->off);
	return VERDICT_STARTTLS;
}

enum command_verdict
command_start(struct session *s, const char *buf, const struct imap_segment *seg)
{
	const struct imap_token *tag = &seg->tok[0], *name = &seg->tok[1];
	const struct command_entry *e;
	struct pending *p;

	if (tag->len > SESSION_MAX_TAG) {
		session_reply(s, "* BAD Tag longer than %d bytes", SESSION_MAX_TAG);
		return VERDICT_DONE;
	}
	e = lookup(buf + name->off, name->len);
	switch (e != NULL ? e->kind : CMD_OTHER) {
	case CMD_COMPRESS:
		/* never offered: compression would hide the stream from us */
		session_reply(s, "%.*s NO COMPRESS is not available through this proxy",
		    (int)tag->len, buf + tag->off);
		return VERDICT_DONE;
	case CMD_STARTTLS:
		return starttls(s, buf, seg);
	case CMD_LOGIN:
		if (s->tls_required && !s->client_tls) {
			session_reply(s, "%.*s NO [PRIVACYREQUIRED] LOGIN is disabled "
			    "until STARTTLS", (int)tag->len, buf + tag->off);
			return VERDICT_DONE;
		}
		break;
	case CMD_AUTHENTICATE:
		if (s->tls_required && !s->client_tls && seg->ntok >= 3 &&
		    capability_mechanism_in_clear(buf + seg->tok[2].off, seg->tok[2].len)) {
			session_reply(s, "%.*s NO [PRIVACYREQUIRED] This mechanism is "
			    "disabled until STARTTLS", (int)tag->len, buf + tag->off);
			return VERDICT_DONE;
		}
		break;
	case CMD_APPEND:
		return multiappend_begin(s, buf, seg);
	default:
		break;
	}
	p = session_pending_add(s, buf + tag->off, tag->len,
	    e != NULL ? e->kind : CMD_OTHER);
	if (p == NULL) {
		session_close(s, "Out of memory");
		return VERDICT_CLOSE;
	}
	p->want_args = e != NULL ? e->args : 0;
	s->cmd_current = p;
	return VERDICT_RELAY;
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
command_capture(struct session *s, struct pending *p, const char *buf,
    const struct imap_segment *seg)
{
	unsigned i = seg->first ? 2 : 0;

	(void)s;
	for (; i < seg->ntok && p->want_args > 0; i++) {
		const struct imap_token *t = &seg->tok[i];
		int n;

		if (t->kind == IMAP_TOK_LITERAL)
			return;		/* command_capture_literal takes it */
		if (t->kind != IMAP_TOK_ATOM && t->kind != IMAP_TOK_QUOTED) {
			p->want_args = 0;
			return;
		}
		if (t->len > SESSION_MAX_ARG_LEN + 2 || !add_arg(p, t->len)) {
			p->want_args = 0;
			return;
		}
		n = imap_unquote(buf, t, p->arg[p->nargs - 1], t->len);
		p->arglen[p->nargs - 1] = n > 0 ? (size_t)n : 0;
	}
}

int
command_capture_literal(struct session *s, struct pending *p, uint64_t size)
{
	(void)s;
	if (p == NULL || p->want_args == 0)
		return -1;
	if (size > SESSION_MAX_ARG_LEN || !add_arg(p, (size_t)size)) {
		p->want_args = 0;
		return -1;
	}
	return (int)p->nargs - 1;
}

void
command_sent(struct session *s, struct pending *p)
{
	switch (p->kind) {
	case CMD_IDLE:
		/* the next line is DONE, whenever the client sends it */
		s->raw_lines = 1;
		break;
	case CMD_AUTHENTICATE:
		/* client lines are SASL responses, one per "+" */
		s->in_authenticate = true;
		s->auth_wait = true;
		break;
	default:
		break;
	}
}

void
command_raw_line_sent(struct session *s)
{
	if (s->in_authenticate)
		s->auth_wait = true;
}

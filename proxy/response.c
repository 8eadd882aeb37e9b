/*
 * response.c — what the proxy does with each upstream response: forward
 * it, rewrite the capabilities in it, learn the session's state from the
 * answers to the client's commands, and take the answers to its own.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "log.h"
#include "session.h"
#include "tls.h"

static struct evbuffer *
upstream_in(struct session *s)
{
	return bufferevent_get_input(s->upstream);
}

static void
forward(struct session *s, size_t len)
{
	evbuffer_remove_buffer(upstream_in(s), session_client_output(s), len);
}

static void
drop(struct session *s, size_t len)
{
	evbuffer_drain(upstream_in(s), len);
}

static void
capability_policy(const struct session *s, struct capability_policy *policy)
{
	memset(policy, 0, sizeof(*policy));
	policy->multiappend = true;
	policy->appendlimit = multiappend_limit(s);
	policy->starttls = !s->client_tls && tls_server_available();
	policy->logindisabled = !s->client_tls && s->tls_required;
}

/* Forward buf with list_off..list_off+list_len replaced by the client's
 * view of that capability list, and learn the list. */
static void
forward_capabilities(struct session *s, const char *buf, size_t len,
    size_t list_off, size_t list_len)
{
	struct evbuffer *out = session_client_output(s);
	struct capability_policy policy;

	capability_learn(&s->caps, buf + list_off, list_len);
	capability_policy(s, &policy);
	evbuffer_add(out, buf, list_off);
	capability_rewrite(&policy, buf + list_off, list_len, out);
	evbuffer_add(out, buf + list_off + list_len, len - list_off - list_len);
	drop(s, len);
}

/* The [CAPABILITY ...] code of a status response, if it has one. */
static const struct imap_token *
capability_code(const char *buf, const struct imap_segment *seg)
{
	unsigned i;

	for (i = 0; i < seg->ntok; i++) {
		const struct imap_token *t = &seg->tok[i];

		if (t->kind == IMAP_TOK_CODE && t->len >= 10 &&
		    strncasecmp(buf + t->off, "CAPABILITY", 10) == 0 &&
		    (t->len == 10 || buf[t->off + 10] == ' '))
			return t;
	}
	return NULL;
}

/* The response code's first word, e.g. "READ-ONLY" */
static bool
has_code(const char *buf, const struct imap_segment *seg, const char *word)
{
	size_t n = strlen(word);
	unsigned i;

	for (i = 0; i < seg->ntok; i++) {
		const struct imap_token *t = &seg->tok[i];

		if (t->kind == IMAP_TOK_CODE && t->len >= n &&
		    strncasecmp(buf + t->off, word, n) == 0 &&
		    (t->len == n || buf[t->off + n] == ' '))
			return true;
	}
	return false;
}

/* Forward a status response, its capability code rewritten if it has one. */
static void
forward_status(struct session *s, const char *buf, size_t len,
    const struct imap_segment *seg)
{
	const struct imap_token *code = capability_code(buf, seg);

	if (code == NULL) {
		forward(s, len);
		return;
	}
	if (code->len == 10)
		forward_capabilities(s, buf, len, code->off + 10, 0);
	else
		forward_capabilities(s, buf, len, code->off + 11, code->len - 11);
}

static void
capability_done(struct session *s, struct pending *p, const char *buf,
    const struct imap_segment *seg)
{
	(void)p;
	(void)buf;
	(void)seg;
	s->caps_pending = false;
	if (!s->caps.known) {
		/* no answer we understood: assume a plain IMAP4rev1 server */
		log_warn(s->id, "upstream did not list its capabilities");
		s->caps.known = true;
	}
	if (s->state == SESSION_CAPABILITY)
		session_enter_state(s, s->preauth ? SESSION_AUTHENTICATED :
		    SESSION_NOT_AUTHENTICATED);
	s->resume_client = true;
}

static bool
capability_untagged(struct session *s, struct pending *p, const char *buf,
    const struct imap_segment *seg)
{
	const struct imap_token *word = &seg->tok[1];
	size_t off;

	(void)p;
	if (!seg->first || seg->ntok < 2 || !seg->last ||
	    !imap_tok_is(buf, word, "CAPABILITY"))
		return false;
	off = word->off + word->len;
	if (off < seg->eol)
		off++;
	capability_learn(&s->caps, buf + off, seg->eol - off);
	return true;
}

/* Capabilities change after login and STARTTLS; ask when not told. */
static void
query_capabilities(struct session *s)
{
	struct pending *p;

	memset(&s->caps, 0, sizeof(s->caps));
	if ((p = session_internal_command(s, capability_done, "CAPABILITY")) == NULL) {
		session_close(s, "Out of memory");
		return;
	}
	p->untagged = capability_untagged;
	s->caps_pending = true;
}

static bool
id_untagged(struct session *s, struct pending *p, const char *buf,
    const struct imap_segment *seg)
{
	(void)s;
	(void)p;
	/* the upstream's ID answer belongs to our ID, not to the client */
	return seg->first && seg->ntok >= 2 && imap_tok_is(buf, &seg->tok[1], "ID");
}

static void
id_done(struct session *s, struct pending *p, const char *buf,
    const struct imap_segment *seg)
{
	(void)p;
	if (seg->ntok < 2 || !imap_tok_is(buf, &seg->tok[1], "OK"))
		log_debug(s->id, "upstream did not take the client's address in ID");
}

/* The greeting is through: tell the upstream who the client is (where
 * configured), learn the capabilities, and let the client speak. */
static void
after_greeting(struct session *s, bool preauth)
{
	struct pending *p;

	s->preauth = preauth;
	if (s->proxy->cfg->id_forward_address) {
		p = session_internal_command(s, id_done, "ID (\"x-originating-ip\" \"%s\" "
		    "\"x-originating-port\" \"%s\")", s->peer_host, s->peer_port);
		if (p == NULL) {
			session_close(s, "Out of memory");
			return;
		}
		p->untagged = id_untagged;
	}
	if (!s->caps.known) {
		session_enter_state(s, SESSION_CAPABILITY);
		query_capabilities(s);
		return;
	}
	session_enter_state(s, preauth ? SESSION_AUTHENTICATED :
	    SESSION_NOT_AUTHENTICATED);
	s->resume_client = true;
}

static bool
greeting(struct session *s, const char *buf, size_t len,
    const struct imap_segment *seg)
{
	bool preauth;

	if (seg->ntok < 2 || !imap_tok_is(buf, &seg->tok[0], "*")) {
		log_warn(s->id, "upstream greeting is not an untagged response");
		session_close(s, "Upstream protocol error");
		return false;
	}
	if (imap_tok_is(buf, &seg->tok[1], "BYE")) {
		log_warn(s->id, "upstream refused the connection: %.*s",
		    (int)(seg->eol > 200 ? 200 : seg->eol), buf);
		s->upstream_bye = true;
		forward(s, len);
		return true;
	}
	preauth = imap_tok_is(buf, &seg->tok[1], "PREAUTH");
	if (!preauth && !imap_tok_is(buf, &seg->tok[1], "OK")) {
		log_warn(s->id, "unexpected upstream greeting");
		session_close(s, "Upstream protocol error");
		return false;
	}
	forward_status(s, buf, len, seg);
	after_greeting(s, preauth);
	return !s->closing;
}

void
response_greeting_read(struct session *s, const char *greeting)
{
	const char *text = greeting + 4, *close;

	/* the capabilities it listed were those before TLS: drop them, the
	 * client asks again and gets the list after TLS */
	while (*text == ' ')
		text++;
	if (*text == '[' && (close = strchr(text, ']')) != NULL) {
		text = close + 1;
		while (*text == ' ')
			text++;
	}
	session_reply(s, "* OK %s", text);
	memset(&s->caps, 0, sizeof(s->caps));
	after_greeting(s, false);
	relay_client_input(s);
}

static void
continuation(struct session *s, size_t len)
{
	switch (s->plus) {
	case PLUS_PROXY:
		/* ours: the held literal may go now */
		drop(s, len);
		s->plus = PLUS_NONE;
		s->plus_held = false;
		s->resume_client = true;
		return;
	case PLUS_REPLAY:
		drop(s, len);
		s->plus = PLUS_NONE;
		multiappend_continuation(s);
		return;
	case PLUS_CLIENT:
		s->plus = PLUS_NONE;
		break;
	case PLUS_NONE:
		if (s->in_authenticate) {
			/* a SASL challenge: the client answers with one line */
			s->raw_lines = 1;
			s->auth_wait = false;
			s->resume_client = true;
		}
		break;
	}
	forward(s, len);
}

static void
untagged(struct session *s, const char *buf, size_t len,
    const struct imap_segment *seg)
{
	const struct imap_token *word = &seg->tok[1];
	struct pending *oldest = TAILQ_FIRST(&s->pending);

	/* untagged data belongs to the oldest command in flight: when that is
	 * one of ours, it may be its own answer */
	if (oldest != NULL && oldest->untagged != NULL &&
	    oldest->untagged(s, oldest, buf, seg)) {
		s->resp_owner = oldest;
		s->resp_drop = true;
		drop(s, len);
		return;
	}
	if (seg->ntok >= 2 && seg->last && imap_tok_is(buf, word, "CAPABILITY")) {
		size_t off = word->off + word->len;

		if (off < seg->eol)
			off++;
		forward_capabilities(s, buf, len, off, seg->eol - off);
		return;
	}
	if (seg->ntok >= 2 && imap_tok_is(buf, word, "BYE"))
		s->upstream_bye = true;
	if (seg->ntok >= 2 && seg->tok[seg->ntok - 1].kind == IMAP_TOK_TEXT) {
		forward_status(s, buf, len, seg);
		return;
	}
	forward(s, len);
}

static struct pending *
find_pending(struct session *s, const char *tag, size_t taglen)
{
	struct pending *p;

	TAILQ_FOREACH(p, &s->pending, entry)
		if (p->taglen == taglen && memcmp(p->tag, tag, taglen) == 0)
			return p;
	return NULL;
}

static void
select_answered(struct session *s, struct pending *p, bool ok, bool bad,
    const char *buf, const struct imap_segment *seg)
{
	if (bad)
		return;		/* not executed: nothing changed */
	free(s->selected);
	s->selected = NULL;
	if (!ok || p->nargs < 1) {
		/* a failed SELECT leaves no mailbox selected (RFC 3501 6.3.1) */
		session_enter_state(s, SESSION_AUTHENTICATED);
		return;
	}
	if ((s->selected = malloc(p->arglen[0] + 1)) != NULL) {
		memcpy(s->selected, p->arg[0], p->arglen[0]);
		s->selected[p->arglen[0]] = '\0';
	}
	s->selected_rw = p->kind == CMD_SELECT && !has_code(buf, seg, "READ-ONLY");
	session_enter_state(s, SESSION_SELECTED);
}

/* What the answer to a client command tells about the session. */
static void
client_answered(struct session *s, struct pending *p, const char *buf,
    const struct imap_segment *seg)
{
	bool ok = seg->ntok >= 2 && imap_tok_is(buf, &seg->tok[1], "OK");
	bool bad = seg->ntok >= 2 && imap_tok_is(buf, &seg->tok[1], "BAD");

	switch (p->kind) {
	case CMD_AUTHENTICATE:
		s->in_authenticate = false;
		s->auth_wait = false;
		s->raw_lines = 0;
		/* FALLTHROUGH */
	case CMD_LOGIN:
		if (ok) {
			credentials_learn(s, p);
			session_enter_state(s, SESSION_AUTHENTICATED);
			if (capability_code(buf, seg) == NULL)
				query_capabilities(s);
		}
		break;
	case CMD_SELECT:
	case CMD_EXAMINE:
		select_answered(s, p, ok, bad, buf, seg);
		break;
	case CMD_CLOSE:
		if (ok) {
			free(s->selected);
			s->selected = NULL;
			session_enter_state(s, SESSION_AUTHENTICATED);
		}
		break;
	case CMD_IDLE:
		s->raw_lines = 0;
		break;
	case CMD_APPEND:
		multiappend_answered(s, p);
		break;
	default:
		break;
	}
}

static bool
tagged(struct session *s, const char *buf, size_t len,
    const struct imap_segment *seg)
{
	const struct imap_token *tag = &seg->tok[0];
	struct pending *p = find_pending(s, buf + tag->off, tag->len);

	if (p == NULL) {
		log_debug(s->id, "upstream answered an unknown tag");
		forward_status(s, buf, len, seg);
		return true;
	}
	if (p->kind == CMD_INTERNAL) {
		/* buf lives in the input buffer: read it before dropping it */
		p->done(s, p, buf, seg);
		session_pending_free(s, p);
		if (s->closing)
			return false;
		drop(s, len);
		return true;
	}
	client_answered(s, p, buf, seg);
	forward_status(s, buf, len, seg);
	if (p == s->cmd_current)
		relay_abandon_command(s);
	session_pending_free(s, p);
	s->resume_client = true;
	return !s->closing;
}

bool
response_segment(struct session *s, const char *buf, size_t len,
    const struct imap_segment *seg)
{
	if (!seg->first) {
		if (s->resp_owner != NULL)
			s->resp_owner->untagged(s, s->resp_owner, buf, seg);
		if (s->resp_drop)
			drop(s, len);
		else
			forward(s, len);
		return true;
	}
	s->resp_drop = false;
	s->resp_owner = NULL;
	if (s->state == SESSION_GREETING)
		return greeting(s, buf, len, seg);
	if (imap_tok_is(buf, &seg->tok[0], "+")) {
		continuation(s, len);
		return true;
	}
	if (imap_tok_is(buf, &seg->tok[0], "*")) {
		untagged(s, buf, len, seg);
		return !s->closing;
	}
	return tagged(s, buf, len, seg);
}

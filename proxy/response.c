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
#include "multiappend.h"
#include "relay.h"
#include "response.h"
#include "session.h"
#include "tls.h"

static void
capability_policy(const struct session *s, struct capability_policy *policy)
{
	memset(policy, 0, sizeof(*policy));
	policy->multiappend = true;
	policy->appendlimit = multiappend_limit(s);
	policy->starttls = !s->client_tls && tls_server_available();
	policy->logindisabled = !s->client_tls && s->tls_required;
}

/* Send the client buf with list_off..list_off+list_len replaced by its
 * view of that capability list, and learn the list.  The original is
 * dropped. */
static enum response_action
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
	return RESPONSE_DROP;
}

/* Forward a status response, its capability code rewritten if it has one. */
static enum response_action
forward_status(struct session *s, const char *buf, size_t len,
    const struct imap_segment *seg)
{
	const struct imap_token *code = imap_code(buf, seg, "CAPABILITY");

	if (code == NULL)
		return RESPONSE_FORWARD;
	if (code->len == 10)
		return forward_capabilities(s, buf, len, code->off + 10, 0);
	return forward_capabilities(s, buf, len, code->off + 11, code->len - 11);
}

static void
capability_done(struct session *s, struct pending *p, const struct answer *a)
{
	(void)p;
	(void)a;
	s->caps_pending = false;
	relay_hold(s, RELAY_HOLD_CAPABILITY, false);
	if (!s->caps.known) {
		/* no answer we understood: assume a plain IMAP4rev1 server */
		log_warn(s->id, "upstream did not list its capabilities");
		s->caps.known = true;
	}
	if (s->state == SESSION_CAPABILITY)
		session_enter_state(s, s->preauth ? SESSION_AUTHENTICATED :
		    SESSION_NOT_AUTHENTICATED);
	session_resume_input(s);
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
void
response_query_capabilities(struct session *s)
{
	struct pending *p;

	memset(&s->caps, 0, sizeof(s->caps));
	if ((p = session_internal_command(s, capability_done, "CAPABILITY")) == NULL) {
		session_close(s, "Out of memory");
		return;
	}
	p->untagged = capability_untagged;
	s->caps_pending = true;
	relay_hold(s, RELAY_HOLD_CAPABILITY, true);
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
id_done(struct session *s, struct pending *p, const struct answer *a)
{
	(void)p;
	if (!a->ok)
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
		response_query_capabilities(s);
		return;
	}
	session_enter_state(s, preauth ? SESSION_AUTHENTICATED :
	    SESSION_NOT_AUTHENTICATED);
	session_resume_input(s);
}

static enum response_action
greeting(struct session *s, const char *buf, size_t len,
    const struct imap_segment *seg)
{
	enum response_action action;
	bool preauth;

	if (seg->ntok < 2 || !imap_tok_is(buf, &seg->tok[0], "*")) {
		log_warn(s->id, "upstream greeting is not an untagged response");
		session_close(s, "Upstream protocol error");
		return RESPONSE_DROP;
	}
	if (imap_tok_is(buf, &seg->tok[1], "BYE")) {
		log_warn(s->id, "upstream refused the connection: %.*s",
		    (int)(seg->eol > 200 ? 200 : seg->eol), buf);
		s->upstream_bye = true;
		return RESPONSE_FORWARD;
	}
	preauth = imap_tok_is(buf, &seg->tok[1], "PREAUTH");
	if (!preauth && !imap_tok_is(buf, &seg->tok[1], "OK")) {
		log_warn(s->id, "unexpected upstream greeting");
		session_close(s, "Upstream protocol error");
		return RESPONSE_DROP;
	}
	action = forward_status(s, buf, len, seg);
	after_greeting(s, preauth);
	return action;
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
}

static enum response_action
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
		return RESPONSE_DROP;
	}
	if (seg->ntok >= 2 && seg->last && imap_tok_is(buf, word, "CAPABILITY")) {
		size_t off = word->off + word->len;

		if (off < seg->eol)
			off++;
		return forward_capabilities(s, buf, len, off, seg->eol - off);
	}
	if (seg->ntok >= 2 && imap_tok_is(buf, word, "BYE"))
		s->upstream_bye = true;
	if (seg->ntok >= 2 && seg->tok[seg->ntok - 1].kind == IMAP_TOK_TEXT)
		return forward_status(s, buf, len, seg);
	return RESPONSE_FORWARD;
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

static enum response_action
tagged(struct session *s, const char *buf, size_t len,
    const struct imap_segment *seg)
{
	const struct imap_token *tag = &seg->tok[0];
	struct pending *p = find_pending(s, buf + tag->off, tag->len);
	enum response_action action;
	struct answer a;

	if (p == NULL) {
		log_debug(s->id, "upstream answered an unknown tag");
		return forward_status(s, buf, len, seg);
	}
	/* buf lives in the input buffer: read it before it is consumed */
	command_answer(&a, buf, seg);
	if (p->cmd == &command_internal) {
		p->done(s, p, &a);
		session_pending_free(s, p);
		return RESPONSE_DROP;
	}
	if (p->cmd->answered != NULL)
		p->cmd->answered(s, p, &a);
	action = forward_status(s, buf, len, seg);
	session_pending_free(s, p);
	session_resume_input(s);
	return action;
}

enum response_action
response_segment(struct session *s, const char *buf, size_t len,
    const struct imap_segment *seg)
{
	if (!seg->first) {
		if (s->resp_owner != NULL)
			s->resp_owner->untagged(s, s->resp_owner, buf, seg);
		return s->resp_drop ? RESPONSE_DROP : RESPONSE_FORWARD;
	}
	s->resp_drop = false;
	s->resp_owner = NULL;
	if (s->state == SESSION_GREETING)
		return greeting(s, buf, len, seg);
	if (imap_tok_is(buf, &seg->tok[0], "+"))
		return RESPONSE_CONTINUATION;
	if (imap_tok_is(buf, &seg->tok[0], "*"))
		return untagged(s, buf, len, seg);
	return tagged(s, buf, len, seg);
}

/*
 * response.c — what the proxy does with each upstream response: forward
 * it, rewrite the capabilities in it, learn from the answers to the
 * client's commands (through their table entries), and take the answers to
 * its own commands.  It keeps what the session learns from the upstream:
 * the capabilities, whether it said BYE, and which response of the proxy's
 * own is being read.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "capability.h"
#include "command.h"
#include "log.h"
#include "multiappend.h"
#include "relay.h"
#include "response.h"
#include "router.h"
#include "session.h"
#include "tls.h"

struct response {
	struct upstream_caps caps;	/* what the upstream offers now */
	struct pending *owner;		/* own command consuming the current response */
	bool drop;			/* the current response is not for the client */
	bool upstream_bye;		/* the upstream said BYE: no BYE of ours */
	bool preauth;			/* the greeting was PREAUTH */
};

struct response *
response_new(void)
{
	return calloc(1, sizeof(struct response));
}

void
response_free(struct response *r)
{
	free(r);
}

const struct upstream_caps *
response_caps(const struct session *s)
{
	return &session_response(s)->caps;
}

bool
response_upstream_said_bye(const struct session *s)
{
	return session_response(s)->upstream_bye;
}

void
response_reset(struct session *s)
{
	struct response *r = session_response(s);

	memset(r, 0, sizeof(*r));
}

void
response_forget(struct session *s, struct pending *p)
{
	struct response *r = session_response(s);

	if (r != NULL && r->owner == p)
		r->owner = NULL;
}

static void
capability_policy(const struct session *s, struct capability_policy *policy)
{
	memset(policy, 0, sizeof(*policy));
	policy->multiappend = true;
	policy->appendlimit = multiappend_limit(s);
	policy->starttls = !session_client_tls(s) &&
	    tls_server_available(session_config(s));
	policy->logindisabled = !session_client_tls(s) && session_tls_required(s);
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

	capability_learn(&session_response(s)->caps, buf + list_off, list_len);
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
capability_done(void *ctx, const struct answer *a)
{
	struct session *s = ctx;
	struct response *r = session_response(s);

	(void)a;
	relay_hold(s, RELAY_HOLD_CAPABILITY, false);
	if (!r->caps.known) {
		/* no answer we understood: assume a plain IMAP4rev1 server */
		log_warn(session_id(s), "upstream did not list its capabilities");
		r->caps.known = true;
	}
	if (session_state(s) == SESSION_CAPABILITY)
		session_enter_state(s, r->preauth ? SESSION_AUTHENTICATED :
		    SESSION_NOT_AUTHENTICATED);
	session_resume_input(s);
}

static bool
capability_untagged(void *ctx, const char *buf, const struct imap_segment *seg)
{
	struct session *s = ctx;
	const struct imap_token *word = &seg->tok[1];
	size_t off;

	if (!seg->first || seg->ntok < 2 || !seg->last ||
	    !imap_tok_is(buf, word, "CAPABILITY"))
		return false;
	off = word->off + word->len;
	if (off < seg->eol)
		off++;
	capability_learn(&session_response(s)->caps, buf + off, seg->eol - off);
	return true;
}

static const struct reply_ops capability_ops = {
	.untagged = capability_untagged, .tagged = capability_done,
};

/* Capabilities change after login and STARTTLS; ask when not told. */
void
response_query_capabilities(struct session *s)
{
	memset(&session_response(s)->caps, 0, sizeof(struct upstream_caps));
	if (session_command(s, &capability_ops, s, "CAPABILITY") == NULL) {
		session_close(s, "Out of memory");
		return;
	}
	relay_hold(s, RELAY_HOLD_CAPABILITY, true);
}

/* The upstream's ID answer belongs to our ID, not to the client. */
static bool
id_untagged(void *ctx, const char *buf, const struct imap_segment *seg)
{
	(void)ctx;
	return seg->first && seg->ntok >= 2 && imap_tok_is(buf, &seg->tok[1], "ID");
}

static void
id_done(void *ctx, const struct answer *a)
{
	struct session *s = ctx;

	if (!a->ok)
		log_debug(session_id(s), "upstream did not take the client's address in ID");
}

static const struct reply_ops id_ops = { .untagged = id_untagged, .tagged = id_done };

/* The greeting is through: tell the upstream who the client is (where
 * configured), learn the capabilities, and let the client speak. */
static void
after_greeting(struct session *s, bool preauth)
{
	struct response *r = session_response(s);

	r->preauth = preauth;
	if (session_config(s)->id_forward_address &&
	    session_command(s, &id_ops, s, "ID (\"x-originating-ip\" \"%s\" "
	    "\"x-originating-port\" \"%s\" \"x-session-id\" \"%s\")",
	    session_peer_host(s), session_peer_port(s), session_key(s)) == NULL) {
		session_close(s, "Out of memory");
		return;
	}
	if (!r->caps.known) {
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
		log_warn(session_id(s), "upstream greeting is not an untagged response");
		session_close(s, "Upstream protocol error");
		return RESPONSE_DROP;
	}
	if (imap_tok_is(buf, &seg->tok[1], "BYE")) {
		log_warn(session_id(s), "upstream refused the connection: %.*s",
		    (int)(seg->eol > 200 ? 200 : seg->eol), buf);
		if (session_front(s) != NULL) {
			/* the client was greeted by the front: its login hears */
			router_upstream_failed(s, session_front(s),
			    "the upstream refused the connection");
			return RESPONSE_DROP;
		}
		session_response(s)->upstream_bye = true;
		return RESPONSE_FORWARD;
	}
	preauth = imap_tok_is(buf, &seg->tok[1], "PREAUTH");
	if (session_front(s) != NULL && (preauth ||
	    !imap_tok_is(buf, &seg->tok[1], "OK"))) {
		router_upstream_failed(s, session_front(s), preauth ?
		    "the upstream greeted with PREAUTH: no login to carry" :
		    "unexpected upstream greeting");
		return RESPONSE_DROP;
	}
	if (!preauth && !imap_tok_is(buf, &seg->tok[1], "OK")) {
		log_warn(session_id(s), "unexpected upstream greeting");
		session_close(s, "Upstream protocol error");
		return RESPONSE_DROP;
	}
	if (session_front(s) != NULL) {
		/* a routed client was greeted by the front already */
		const struct imap_token *code = imap_code(buf, seg, "CAPABILITY");

		if (code != NULL && code->len > 11)
			capability_learn(&session_response(s)->caps,
			    buf + code->off + 11, code->len - 11);
		action = RESPONSE_DROP;
	} else {
		action = forward_status(s, buf, len, seg);
	}
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
	memset(&session_response(s)->caps, 0, sizeof(struct upstream_caps));
	after_greeting(s, false);
}

static enum response_action
untagged(struct session *s, const char *buf, size_t len,
    const struct imap_segment *seg)
{
	struct response *r = session_response(s);
	const struct imap_token *word = &seg->tok[1];
	struct pending *oldest = session_pending_oldest(s);

	/* untagged data belongs to the oldest command in flight: when that is
	 * one of ours, it may be its own answer */
	if (oldest != NULL && oldest->ops != NULL && oldest->ops->untagged != NULL &&
	    oldest->ops->untagged(oldest->ctx, buf, seg)) {
		r->owner = oldest;
		r->drop = true;
		return RESPONSE_DROP;
	}
	if (seg->ntok >= 2 && seg->last && imap_tok_is(buf, word, "CAPABILITY")) {
		size_t off = word->off + word->len;

		if (off < seg->eol)
			off++;
		return forward_capabilities(s, buf, len, off, seg->eol - off);
	}
	if (seg->ntok >= 2 && imap_tok_is(buf, word, "BYE"))
		r->upstream_bye = true;
	if (seg->ntok >= 2 && seg->tok[seg->ntok - 1].kind == IMAP_TOK_TEXT)
		return forward_status(s, buf, len, seg);
	return RESPONSE_FORWARD;
}

static enum response_action
tagged(struct session *s, const char *buf, size_t len,
    const struct imap_segment *seg)
{
	const struct imap_token *tag = &seg->tok[0];
	struct pending *p = session_pending_find(s, buf + tag->off, tag->len);
	enum response_action action;
	struct answer a;

	if (p == NULL) {
		/* nobody asked: the upstream is out of step (or not IMAP), and
		 * its lines must not reach the client as answers */
		log_warn(session_id(s), "upstream protocol error: an answer to "
		    "\"%.*s\", which is no command in flight",
		    (int)(tag->len > 64 ? 64 : tag->len), buf + tag->off);
		session_close(s, "Upstream protocol error");
		return RESPONSE_DROP;
	}
	/* buf lives in the input buffer: read it before it is consumed */
	command_answer(&a, buf, seg);
	if (p->ops != NULL) {
		const struct reply_ops *ops = p->ops;
		void *ctx = p->ctx;

		session_pending_free(s, p);
		ops->tagged(ctx, &a);
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
	struct response *r = session_response(s);
	enum response_action action;

	if (!seg->first) {
		if (r->owner != NULL)
			r->owner->ops->untagged(r->owner->ctx, buf, seg);
		return r->drop ? RESPONSE_DROP : RESPONSE_FORWARD;
	}
	r->drop = false;
	r->owner = NULL;
	if (session_state(s) == SESSION_GREETING)
		action = greeting(s, buf, len, seg);
	else if (imap_tok_is(buf, &seg->tok[0], "+"))
		action = RESPONSE_CONTINUATION;
	else if (imap_tok_is(buf, &seg->tok[0], "*"))
		action = untagged(s, buf, len, seg);
	else
		action = tagged(s, buf, len, seg);
	/* a response is forwarded or dropped whole: what follows a literal
	 * in a dropped one (an answer to nobody, a reply of ours) must not
	 * reach the client as a line of its own */
	if (action == RESPONSE_DROP)
		r->drop = true;
	return action;
}

/*
 * backchannel.c — the proxy's own second connection to the upstream, to
 * remove the messages of a failed MULTIAPPEND: log in as the session's user,
 * SELECT the mailbox, find messages whose UID is unknown (UID SEARCH from the
 * old UIDNEXT, then RFC822.SIZE, then the bytes themselves compared with the
 * spool: a message the client did not send is never taken), then
 * UID STORE +FLAGS.SILENT (\Deleted) and UID EXPUNGE of exactly those UIDs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "backchannel.h"
#include "credentials.h"
#include "log.h"
#include "relay.h"
#include "session.h"
#include "spool.h"
#include "upstream.h"

#define COMPARE_CHUNK 65536
/* New UIDs looked at for messages of unknown UID: the upload's own are a
 * handful; a mailbox that grew by more than this meanwhile is not searched
 * further, and the log says what may be left. */
#define CANDIDATES_MAX 10000

enum bc_step {
	BC_CONNECTING,
	BC_GREETING,
	BC_AUTH,		/* AUTHENTICATE PLAIN, waiting for "+" then OK */
	BC_LOGIN,
	BC_SELECT,
	BC_SEARCH,
	BC_SIZES,
	BC_BODY,
	BC_STORE,
	BC_EXPUNGE,
	BC_COPY,
	BC_CLOSE,
	BC_DELETE,
	BC_LOGOUT,
};

struct backchannel {
	struct session *s;
	struct upstream_connect *connecting;
	struct bufferevent *bev;
	struct event *later;		/* reports the result outside callbacks */
	struct imap_framer framer;
	bool lit_compare;		/* the literal is a body to compare */
	enum bc_step step;
	unsigned long tagn;
	char tag[32];
	char *auth_b64;			/* the SASL PLAIN message, wiped after */

	char *mailbox, *mailbox_wire;	/* the mailbox to SELECT */
	char *target_wire;		/* COPY's target; NULL: removing */
	bool delete_only;		/* only DELETE mailbox_wire */
	char *refusal;			/* the upstream's answer to the COPY */
	uint32_t *remove;		/* UIDs to remove */
	size_t nremove, capremove;
	uint32_t uidnext;
	struct removal_unknown *unknown;
	size_t nunknown;
	bool *matched;			/* unknown[i] found */
	struct spool *spool;

	uint32_t *cand, *cand_size;	/* UIDs from the search, their sizes */
	size_t ncand;
	size_t ui, ci;			/* unknown and candidate being compared */
	bool body_equal;
	uint64_t body_done;
	uint32_t fetch_uid;		/* UID of the FETCH response being read */
	uint64_t fetch_size;

	backchannel_done_cb done;
	char *error;
};

static void bc_read(struct bufferevent *, void *);
static void bc_event(struct bufferevent *, short, void *);
static void next_compare(struct backchannel *);

static void
bc_free(struct backchannel *bc)
{
	if (bc->connecting != NULL)
		upstream_connect_cancel(bc->connecting);
	if (bc->bev != NULL)
		bufferevent_free(bc->bev);
	if (bc->later != NULL)
		event_free(bc->later);
	if (bc->auth_b64 != NULL) {
		OPENSSL_cleanse(bc->auth_b64, strlen(bc->auth_b64));
		free(bc->auth_b64);
	}
	free(bc->mailbox);
	free(bc->mailbox_wire);
	free(bc->target_wire);
	free(bc->refusal);
	free(bc->remove);
	free(bc->unknown);
	free(bc->matched);
	free(bc->cand);
	free(bc->cand_size);
	free(bc->error);
	free(bc);
}

void
backchannel_free(struct session *s)
{
	if (s->backchannel == NULL)
		return;
	bc_free(s->backchannel);
	s->backchannel = NULL;
}

static void
report(evutil_socket_t fd, short what, void *arg)
{
	struct backchannel *bc = arg;
	struct session *s = bc->s;
	backchannel_done_cb done = bc->done;
	char *error = bc->error, *refusal = bc->refusal;

	(void)fd;
	(void)what;
	bc->error = NULL;
	bc->refusal = NULL;
	s->backchannel = NULL;
	bc_free(bc);
	done(s, error, refusal);
	free(error);
	free(refusal);
}

/* Log what stays behind, and report (from the event loop, not from here). */
static void
finish(struct backchannel *bc, const char *error)
{
	struct timeval now = { 0, 0 };
	size_t i;

	if (bc->bev != NULL) {
		bufferevent_free(bc->bev);
		bc->bev = NULL;
	}
	if (error != NULL) {
		struct session *s = bc->s;

		bc->error = strdup(error);
		for (i = 0; i < bc->nremove; i++)
			log_error(s->id, "message UID %u stays in \"%s\" of user %s: %s",
			    bc->remove[i], bc->mailbox,
			    s->creds.user != NULL ? s->creds.user : "?", error);
		for (i = 0; i < bc->nunknown; i++)
			if (!bc->matched[i])
				log_error(s->id, "a message of %llu bytes may stay in \"%s\" "
				    "of user %s, its UID unknown: %s",
				    (unsigned long long)bc->unknown[i].size, bc->mailbox,
				    s->creds.user != NULL ? s->creds.user : "?", error);
	}
	bc->later = evtimer_new(bc->s->proxy->base, report, bc);
	evtimer_add(bc->later, &now);
}

static void
send_command(struct backchannel *bc, enum bc_step step, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void
send_command(struct backchannel *bc, enum bc_step step, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(bc->bev);
	va_list ap;

	snprintf(bc->tag, sizeof(bc->tag), "mappend.b%lu", ++bc->tagn);
	evbuffer_add_printf(out, "%s ", bc->tag);
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
	bc->step = step;
}

/* "1:3,7" of UIDs (any order) */
static void
add_set(struct evbuffer *out, const uint32_t *uids, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		evbuffer_add_printf(out, i ? ",%u" : "%u", uids[i]);
}

static void
remove_found(struct backchannel *bc)
{
	struct evbuffer *out = bufferevent_get_output(bc->bev);

	if (bc->nremove == 0) {
		send_command(bc, BC_LOGOUT, "LOGOUT");
		return;
	}
	snprintf(bc->tag, sizeof(bc->tag), "mappend.b%lu", ++bc->tagn);
	evbuffer_add_printf(out, "%s UID STORE ", bc->tag);
	add_set(out, bc->remove, bc->nremove);
	evbuffer_add_printf(out, " +FLAGS.SILENT (\\Deleted)\r\n");
	bc->step = BC_STORE;
}

static void
expunge(struct backchannel *bc)
{
	struct evbuffer *out = bufferevent_get_output(bc->bev);

	snprintf(bc->tag, sizeof(bc->tag), "mappend.b%lu", ++bc->tagn);
	evbuffer_add_printf(out, "%s UID EXPUNGE ", bc->tag);
	add_set(out, bc->remove, bc->nremove);
	evbuffer_add(out, "\r\n", 2);
	bc->step = BC_EXPUNGE;
}

static bool
add_remove(struct backchannel *bc, uint32_t uid)
{
	if (bc->nremove == bc->capremove) {
		size_t cap = bc->capremove ? bc->capremove * 2 : 16;
		uint32_t *r = realloc(bc->remove, cap * sizeof(*r));

		if (r == NULL)
			return false;
		bc->remove = r;
		bc->capremove = cap;
	}
	bc->remove[bc->nremove++] = uid;
	return true;
}

static bool
known(const struct backchannel *bc, uint32_t uid)
{
	size_t i;

	for (i = 0; i < bc->nremove; i++)
		if (bc->remove[i] == uid)
			return true;
	return false;
}

/* Messages of unknown UID: look from the old UIDNEXT on. */
static void
search_unknown(struct backchannel *bc)
{
	if (bc->nunknown == 0) {
		remove_found(bc);
		return;
	}
	if (bc->uidnext == 0) {
		log_error(bc->s->id, "cannot look for messages of unknown UID in \"%s\": "
		    "its UIDNEXT before the upload is not known", bc->mailbox);
		remove_found(bc);
		return;
	}
	send_command(bc, BC_SEARCH, "UID SEARCH UID %u:*", bc->uidnext);
}

static void
ask_sizes(struct backchannel *bc)
{
	struct evbuffer *out;

	if (bc->ncand == 0) {
		remove_found(bc);
		return;
	}
	out = bufferevent_get_output(bc->bev);
	snprintf(bc->tag, sizeof(bc->tag), "mappend.b%lu", ++bc->tagn);
	evbuffer_add_printf(out, "%s UID FETCH ", bc->tag);
	add_set(out, bc->cand, bc->ncand);
	evbuffer_add_printf(out, " (RFC822.SIZE)\r\n");
	bc->step = BC_SIZES;
}

/* The next (unknown message, candidate of the same size) pair to compare
 * byte for byte; candidates are taken in UID order, messages in the order
 * they were sent, so a match keeps both orders. */
static void
next_compare(struct backchannel *bc)
{
	for (; bc->ui < bc->nunknown; bc->ui++, bc->ci = 0) {
		for (; bc->ci < bc->ncand; bc->ci++) {
			if (bc->cand[bc->ci] == 0 ||
			    bc->cand_size[bc->ci] != bc->unknown[bc->ui].size)
				continue;
			bc->body_equal = true;
			bc->body_done = 0;
			send_command(bc, BC_BODY, "UID FETCH %u (BODY.PEEK[])",
			    bc->cand[bc->ci]);
			return;
		}
	}
	remove_found(bc);
}

static void
login(struct backchannel *bc)
{
	struct session *s = bc->s;
	const struct config *cfg = s->proxy->cfg;
	const char *authz, *authc, *pass;
	size_t authz_len, authc_len, pass_len, raw_len;
	unsigned char *raw;

	if (cfg->master_user[0] == '\0' && s->creds.authzid == NULL) {
		/* the client logged in with LOGIN: so does this connection,
		 * which works on servers without AUTH=PLAIN too */
		char *quser = imap_quote(s->creds.user, s->creds.user_len);
		char *qpass = imap_quote(s->creds.password, s->creds.password_len);

		if (quser != NULL && qpass != NULL) {
			send_command(bc, BC_LOGIN, "LOGIN %s %s", quser, qpass);
			OPENSSL_cleanse(qpass, strlen(qpass));
		}
		free(quser);
		free(qpass);
		if (bc->step == BC_LOGIN)
			return;
	}
	if (cfg->master_user[0] != '\0') {
		authz = s->creds.authzid != NULL ? s->creds.authzid : s->creds.user;
		authz_len = s->creds.authzid != NULL ? s->creds.authzid_len : s->creds.user_len;
		authc = cfg->master_user;
		authc_len = strlen(authc);
		pass = cfg->master_password;
		pass_len = strlen(pass);
	} else {
		authz = s->creds.authzid;
		authz_len = s->creds.authzid_len;
		authc = s->creds.user;
		authc_len = s->creds.user_len;
		pass = s->creds.password;
		pass_len = s->creds.password_len;
	}
	/* SASL PLAIN: authzid NUL authcid NUL password, in base64 */
	raw_len = authz_len + authc_len + pass_len + 2;
	raw = malloc(raw_len);
	bc->auth_b64 = malloc(4 * ((raw_len + 2) / 3) + 1);
	if (raw == NULL || bc->auth_b64 == NULL) {
		free(raw);
		finish(bc, "out of memory");
		return;
	}
	if (authz_len > 0)
		memcpy(raw, authz, authz_len);
	raw[authz_len] = '\0';
	memcpy(raw + authz_len + 1, authc, authc_len);
	raw[authz_len + 1 + authc_len] = '\0';
	memcpy(raw + authz_len + 2 + authc_len, pass, pass_len);
	EVP_EncodeBlock((unsigned char *)bc->auth_b64, raw, (int)raw_len);
	OPENSSL_cleanse(raw, raw_len);
	free(raw);
	send_command(bc, BC_AUTH, "AUTHENTICATE PLAIN");
}

static bool
is_ok(const char *buf, const struct imap_segment *seg)
{
	return seg->ntok >= 2 && imap_tok_is(buf, &seg->tok[1], "OK");
}

/* The tagged answer to the step's command. */
static void
step_done(struct backchannel *bc, const char *buf, const struct imap_segment *seg)
{
	char why[300];

	if (bc->step == BC_COPY) {
		if (!is_ok(buf, seg)) {
			size_t off = seg->ntok >= 2 ? seg->tok[1].off : 0;

			bc->refusal = strndup(buf + off, seg->eol - off);
		}
		send_command(bc, BC_CLOSE, "CLOSE");
		return;
	}
	if (bc->step == BC_DELETE && !is_ok(buf, seg)) {
		log_error(bc->s->id, "could not delete the staging mailbox %s: %.*s",
		    bc->mailbox_wire, (int)(seg->eol > 200 ? 200 : seg->eol), buf);
		send_command(bc, BC_LOGOUT, "LOGOUT");
		return;
	}
	if (!is_ok(buf, seg) && bc->step != BC_LOGOUT && bc->step != BC_BODY) {
		snprintf(why, sizeof(why), "upstream answered %.*s", (int)
		    (seg->eol > 200 ? 200 : seg->eol), buf);
		finish(bc, why);
		return;
	}
	switch (bc->step) {
	case BC_AUTH:
	case BC_LOGIN:
		if (bc->delete_only)
			send_command(bc, BC_DELETE, "DELETE %s", bc->mailbox_wire);
		else
			send_command(bc, BC_SELECT, "SELECT %s", bc->mailbox_wire);
		break;
	case BC_SELECT:
		if (bc->target_wire != NULL)
			send_command(bc, BC_COPY, "COPY 1:* %s", bc->target_wire);
		else
			search_unknown(bc);
		break;
	case BC_CLOSE:
		/* our own staging mailbox: CLOSE may expunge what it likes */
		send_command(bc, BC_DELETE, "DELETE %s", bc->mailbox_wire);
		break;
	case BC_DELETE:
		send_command(bc, BC_LOGOUT, "LOGOUT");
		break;
	case BC_SEARCH:
		ask_sizes(bc);
		break;
	case BC_SIZES:
		next_compare(bc);
		break;
	case BC_BODY:
		if (is_ok(buf, seg) && bc->body_equal &&
		    bc->body_done == bc->unknown[bc->ui].size) {
			log_info(bc->s->id, "message %zu of unknown UID found as UID %u",
			    bc->ui + 1, bc->cand[bc->ci]);
			if (!add_remove(bc, bc->cand[bc->ci])) {
				finish(bc, "out of memory");
				return;
			}
			bc->matched[bc->ui] = true;
			bc->cand[bc->ci] = 0;	/* taken */
			bc->ui++;
			bc->ci = 0;
		} else {
			bc->ci++;
		}
		next_compare(bc);
		break;
	case BC_STORE:
		expunge(bc);
		break;
	case BC_EXPUNGE: {
		size_t i, left = 0;

		for (i = 0; i < bc->nunknown; i++)
			if (!bc->matched[i])
				left++;
		bc->nremove = 0;	/* gone: nothing to report as left */
		if (left > 0 && bc->uidnext == 0) {
			finish(bc, "messages of unknown UID could not be looked for");
			return;
		}
		send_command(bc, BC_LOGOUT, "LOGOUT");
		break;
	}
	case BC_LOGOUT:
		finish(bc, NULL);
		break;
	default:
		finish(bc, "unexpected answer");
		break;
	}
}

/* Untagged data the steps need: SEARCH results, FETCH sizes and bodies. */
static void
untagged(struct backchannel *bc, const char *buf, const struct imap_segment *seg)
{
	unsigned i;

	if (seg->first && seg->ntok >= 2 && bc->step == BC_SEARCH &&
	    imap_tok_is(buf, &seg->tok[1], "SEARCH")) {
		/* the numbers are read from the text itself: a long result has
		 * more of them than the lexer records as tokens */
		const char *p = buf + seg->tok[1].off + seg->tok[1].len, *end = buf + seg->eol;

		while (p < end) {
			uint64_t uid = 0;
			unsigned digits = 0;

			while (p < end && *p == ' ')
				p++;
			for (; p < end && *p >= '0' && *p <= '9' && digits < 11; p++, digits++)
				uid = uid * 10 + (uint64_t)(*p - '0');
			while (p < end && *p != ' ')
				p++;	/* not a plain number: skipped */
			if (digits == 0 || uid == 0 || uid > UINT32_MAX || uid < bc->uidnext ||
			    known(bc, (uint32_t)uid))
				continue;
			if (bc->ncand == CANDIDATES_MAX) {
				log_warn(bc->s->id, "more than %d new messages in \"%s\": "
				    "only the first are compared", CANDIDATES_MAX, bc->mailbox);
				return;
			}
			if (bc->ncand == 0) {
				bc->cand = calloc(CANDIDATES_MAX, sizeof(*bc->cand));
				bc->cand_size = calloc(CANDIDATES_MAX, sizeof(*bc->cand_size));
			}
			if (bc->cand == NULL || bc->cand_size == NULL) {
				finish(bc, "out of memory");
				return;
			}
			bc->cand[bc->ncand] = (uint32_t)uid;
			bc->cand_size[bc->ncand++] = 0;
		}
		return;
	}
	if (bc->step != BC_SIZES && bc->step != BC_BODY)
		return;
	if (seg->first) {
		bc->fetch_uid = 0;
		bc->fetch_size = 0;
		if (seg->ntok < 3 || !imap_tok_is(buf, &seg->tok[2], "FETCH"))
			return;
	}
	for (i = 0; i + 1 < seg->ntok; i++) {
		uint64_t n;

		if (imap_tok_number(buf, &seg->tok[i + 1], &n) != 0 || n > UINT32_MAX)
			continue;
		if (imap_tok_is(buf, &seg->tok[i], "UID"))
			bc->fetch_uid = (uint32_t)n;
		else if (imap_tok_is(buf, &seg->tok[i], "RFC822.SIZE"))
			bc->fetch_size = n;
	}
	if (bc->step == BC_SIZES && bc->fetch_uid != 0) {
		for (i = 0; i < bc->ncand; i++)
			if (bc->cand[i] == bc->fetch_uid)
				bc->cand_size[i] = (uint32_t)bc->fetch_size;
	}
	if (bc->step == BC_BODY && !seg->last) {
		/* the body literal follows: compare it as it comes */
		bc->lit_compare = true;
		if (seg->literal != bc->unknown[bc->ui].size)
			bc->body_equal = false;
	}
}

/* Literal bytes: a body being compared with the spool, or to be dropped. */
static void
literal_data(struct backchannel *bc, struct evbuffer *in, size_t n)
{
	static unsigned char mine[COMPARE_CHUNK], theirs[COMPARE_CHUNK];

	while (n > 0) {
		size_t k = n < COMPARE_CHUNK ? n : COMPARE_CHUNK;

		if (bc->lit_compare && bc->body_equal &&
		    bc->body_done + k <= bc->unknown[bc->ui].size) {
			evbuffer_remove(in, theirs, k);
			if (spool_pread(bc->spool, bc->unknown[bc->ui].off + bc->body_done,
			    mine, k) != 0 || memcmp(mine, theirs, k) != 0)
				bc->body_equal = false;
		} else {
			evbuffer_drain(in, k);
			bc->body_equal = false;
		}
		bc->body_done += k;
		n -= k;
	}
}

/* One response segment, the tagged answer of the step's command or not. */
static void
bc_segment(struct backchannel *bc, const char *buf, const struct imap_segment *seg)
{
	if (seg->first && bc->step == BC_GREETING) {
		if (seg->ntok >= 2 && imap_tok_is(buf, &seg->tok[1], "OK"))
			login(bc);
		else
			finish(bc, "upstream refused the second connection");
	} else if (seg->first && imap_tok_is(buf, &seg->tok[0], "+")) {
		if (bc->step == BC_AUTH && bc->auth_b64 != NULL) {
			struct evbuffer *out = bufferevent_get_output(bc->bev);

			evbuffer_add(out, bc->auth_b64, strlen(bc->auth_b64));
			evbuffer_add(out, "\r\n", 2);
			OPENSSL_cleanse(bc->auth_b64, strlen(bc->auth_b64));
			free(bc->auth_b64);
			bc->auth_b64 = NULL;
		} else {
			finish(bc, "unexpected continuation request");
		}
	} else if (seg->first && seg->tok[0].len == strlen(bc->tag) &&
	    memcmp(buf + seg->tok[0].off, bc->tag, seg->tok[0].len) == 0) {
		step_done(bc, buf, seg);
	} else if (!seg->first || imap_tok_is(buf, &seg->tok[0], "*")) {
		if (seg->first && seg->ntok >= 2 && imap_tok_is(buf, &seg->tok[1], "BYE") &&
		    bc->step != BC_LOGOUT) {
			finish(bc, "upstream said BYE");
			return;
		}
		untagged(bc, buf, seg);
	}
}

static void
bc_read(struct bufferevent *bev, void *arg)
{
	struct backchannel *bc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (bc->bev != NULL && bc->later == NULL) {
		struct imap_frame f;

		switch (imap_framer_next(&bc->framer, in, &f)) {
		case IMAP_FRAME_MORE:
			return;
		case IMAP_FRAME_FATAL:
		case IMAP_FRAME_BAD:
			finish(bc, f.error);
			return;
		case IMAP_FRAME_LITERAL:
			literal_data(bc, in, f.len);
			imap_framer_consumed(&bc->framer, f.len);
			if (imap_framer_literal_left(&bc->framer) == 0)
				bc->lit_compare = false;
			break;
		case IMAP_FRAME_SEGMENT:
			bc_segment(bc, f.buf, &f.seg);
			if (bc->bev != NULL)
				imap_framer_drop(&bc->framer, in, f.len);
			break;
		}
	}
}

static void
bc_event(struct bufferevent *bev, short what, void *arg)
{
	struct backchannel *bc = arg;

	(void)bev;
	if (bc->step == BC_LOGOUT) {
		finish(bc, NULL);
		return;
	}
	finish(bc, (what & BEV_EVENT_TIMEOUT) ? "second connection timed out" :
	    "second connection lost");
}

static void
connected(struct bufferevent *bev, const char *greeting, const char *error, void *arg)
{
	struct backchannel *bc = arg;
	struct timeval tv = { (time_t)bc->s->proxy->cfg->upstream_idle_timeout, 0 };

	bc->connecting = NULL;
	if (bev == NULL) {
		finish(bc, error);
		return;
	}
	bc->bev = bev;
	bc->step = BC_GREETING;
	bufferevent_setcb(bev, bc_read, NULL, bc_event, bc);
	bufferevent_set_timeouts(bev, &tv, NULL);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	if (greeting != NULL)
		login(bc);	/* read already, before STARTTLS */
}

static struct backchannel *
bc_new(struct session *s, backchannel_done_cb done)
{
	struct backchannel *bc = calloc(1, sizeof(*bc));

	if (bc == NULL) {
		session_close(s, "Out of memory");
		return NULL;
	}
	bc->s = s;
	bc->done = done;
	s->backchannel = bc;
	imap_framer_init(&bc->framer, IMAP_MODE_RESPONSE, relay_response_line_max(s));
	return bc;
}

static void
bc_connect(struct backchannel *bc)
{
	struct session *s = bc->s;

	if (!credentials_usable(s)) {
		finish(bc, "no credentials for a second connection (the client did not "
		    "log in with LOGIN or AUTHENTICATE PLAIN, and no master_user is set)");
		return;
	}
	bc->connecting = upstream_connect(s->proxy, s->id, connected, bc);
	if (bc->connecting == NULL)
		finish(bc, "out of memory");
}

void
backchannel_remove(struct session *s, const struct removal *r, backchannel_done_cb done)
{
	struct backchannel *bc = bc_new(s, done);
	size_t i;

	if (bc == NULL)
		return;
	bc->mailbox = strdup(r->mailbox);
	bc->mailbox_wire = strdup(r->mailbox_wire);
	bc->uidnext = r->uidnext;
	bc->spool = r->spool;
	bc->nunknown = r->nunknown;
	bc->unknown = calloc(r->nunknown + 1, sizeof(*bc->unknown));
	bc->matched = calloc(r->nunknown + 1, sizeof(*bc->matched));
	if (bc->mailbox == NULL || bc->mailbox_wire == NULL || bc->unknown == NULL ||
	    bc->matched == NULL) {
		finish(bc, "out of memory");
		return;
	}
	memcpy(bc->unknown, r->unknown, r->nunknown * sizeof(*bc->unknown));
	for (i = 0; i < r->nuids; i++)
		if (!add_remove(bc, r->uids[i])) {
			finish(bc, "out of memory");
			return;
		}
	log_info(s->id, "removing %zu message%s from \"%s\" on a second connection",
	    bc->nremove + bc->nunknown, bc->nremove + bc->nunknown == 1 ? "" : "s",
	    bc->mailbox);
	bc_connect(bc);
}

void
backchannel_copy(struct session *s, const char *staging_wire, const char *target_wire,
    backchannel_done_cb done)
{
	struct backchannel *bc = bc_new(s, done);

	if (bc == NULL)
		return;
	bc->mailbox = strdup(staging_wire);
	bc->mailbox_wire = strdup(staging_wire);
	bc->target_wire = strdup(target_wire);
	bc->matched = calloc(1, sizeof(*bc->matched));
	if (bc->mailbox == NULL || bc->mailbox_wire == NULL || bc->target_wire == NULL ||
	    bc->matched == NULL) {
		finish(bc, "out of memory");
		return;
	}
	bc_connect(bc);
}

void
backchannel_delete(struct session *s, const char *mailbox_wire, backchannel_done_cb done)
{
	struct backchannel *bc = bc_new(s, done);

	if (bc == NULL)
		return;
	bc->delete_only = true;
	bc->mailbox = strdup(mailbox_wire);
	bc->mailbox_wire = strdup(mailbox_wire);
	bc->matched = calloc(1, sizeof(*bc->matched));
	if (bc->mailbox == NULL || bc->mailbox_wire == NULL || bc->matched == NULL) {
		finish(bc, "out of memory");
		return;
	}
	bc_connect(bc);
}

/*
 * rollback.c — removing exactly what a failed MULTIAPPEND added: the plan
 * (a pure function of what is known of each message) and the one protocol
 * that carries it out, on the client's own connection or on a second one
 * (see rollback.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "backchannel.h"
#include "command.h"
#include "credentials.h"
#include "log.h"
#include "rollback.h"
#include "session.h"
#include "uidset.h"

/* New UIDs looked at for messages of unknown UID: the upload's own are a
 * handful; a mailbox that grew by more than this meanwhile is not searched
 * further, and the log says what may be left. */
#define CANDIDATES_MAX 10000

/* While settling, the mailbox is looked at this often; the wait ends at
 * rollback_settle without a new message, or this many times it at most. */
#define SETTLE_POLL_MS 250
#define SETTLE_CAP_FACTOR 10

int
rollback_plan(const struct upload_msg *msgs, size_t n, bool answers_lost,
    bool selected_rw, struct rollback_plan *plan)
{
	size_t i;

	memset(plan, 0, sizeof(*plan));
	plan->uids = calloc(n + 1, sizeof(*plan->uids));
	plan->unknown = calloc(n + 1, sizeof(*plan->unknown));
	if (plan->uids == NULL || plan->unknown == NULL) {
		rollback_plan_free(plan);
		return -1;
	}
	for (i = 0; i < n; i++) {
		const struct upload_msg *m = &msgs[i];
		struct fingerprint *u;

		if (m->state == UPLOAD_STORED && m->uid != 0) {
			plan->uids[plan->nuids++] = m->uid;
		} else if (m->state == UPLOAD_STORED ||
		    (m->state == UPLOAD_SENT && answers_lost)) {
			u = &plan->unknown[plan->nunknown++];
			*u = m->fp;
		}
	}
	plan->own_connection = plan->nunknown == 0 && !answers_lost && selected_rw;
	plan->settle = plan->nunknown > 0 && answers_lost;
	return 0;
}

bool
rollback_plan_empty(const struct rollback_plan *plan)
{
	return plan->nuids == 0 && plan->nunknown == 0;
}

void
rollback_plan_free(struct rollback_plan *plan)
{
	free(plan->uids);
	free(plan->unknown);
	memset(plan, 0, sizeof(*plan));
}

struct rollback {
	struct proxy *proxy;
	const struct config *cfg;	/* for a second connection (a reference) */
	struct backend backend;		/* where it goes (a copy) */
	uint64_t id;
	struct session *s;		/* the client's connection, or NULL */
	struct backchannel *bc;		/* or the second connection */
	struct event *later;		/* reports the end from the loop */
	char *mailbox, *mailbox_wire, *user;
	uint32_t uidnext;
	uint32_t uidvalidity;		/* expected; 0: any */
	uint32_t seen_uidvalidity;	/* what SELECT said */
	uint32_t *remove;		/* UIDs to remove: the plan's, then found ones */
	size_t nremove;
	struct fingerprint *unknown;
	size_t nunknown;
	bool *matched;			/* unknown[i] found */

	uint32_t *cand, *cand_size;	/* UIDs from the searches, their sizes */
	size_t ncand;
	size_t cbase;			/* the first candidate of this search */
	uint32_t next_uid;		/* the next search starts here */
	size_t ui, ci;			/* unknown and candidate being compared */

	/* Settling: the server may still store what a lost connection had
	 * sent, so the search is repeated while the mailbox keeps growing. */
	bool settle;
	struct event *poll;
	double settle_started, last_growth;	/* monotonic seconds */
	struct fingerprinter body;	/* of the body being fetched */
	bool body_ok;			/* its FETCH looked right so far */

	char *error;
	rollback_done_cb done;
	rollback_found_cb found;	/* only looking: what was found */
	void *ctx;
};

static void search_unknown(struct rollback *);
static void next_compare(struct rollback *);
static void settle_or_remove(struct rollback *);
static void remove_uids(struct rollback *);
static const struct reply_ops search_ops;

static char *
dup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

void
rollback_free(struct rollback *rb)
{
	if (rb == NULL)
		return;
	session_forget_ctx(rb->s, rb);	/* a STORE or EXPUNGE may be in flight */
	backchannel_close(rb->bc);
	if (rb->later != NULL)
		event_free(rb->later);
	if (rb->poll != NULL)
		event_free(rb->poll);
	fingerprinter_free(&rb->body);
	free(rb->mailbox);
	free(rb->mailbox_wire);
	free(rb->user);
	free(rb->remove);
	free(rb->unknown);
	free(rb->matched);
	free(rb->cand);
	free(rb->cand_size);
	free(rb->error);
	config_unref(rb->cfg);
	explicit_bzero(&rb->backend, sizeof rb->backend);	/* a master password */
	free(rb);
}

static void
report(evutil_socket_t fd, short what, void *arg)
{
	struct rollback *rb = arg;

	(void)fd;
	(void)what;
	if (rb->found != NULL)
		rb->found(rb->ctx, rb->error, rb->error == NULL ? rb->remove : NULL,
		    rb->error == NULL ? rb->nremove : 0);
	else
		rb->done(rb->ctx, rb->error);
}

/* The end: log what stays behind, and report from the loop. */
static void
finish(struct rollback *rb, const char *error)
{
	size_t i;

	backchannel_close(rb->bc);
	rb->bc = NULL;
	event_del(rb->poll);	/* a failure while settling */
	if (error != NULL && rb->error == NULL && rb->found != NULL) {
		rb->error = strdup(error);
	} else if (error != NULL && rb->error == NULL) {
		rb->error = strdup(error);
		for (i = 0; i < rb->nremove; i++)
			log_error(rb->id, "message UID %u stays in \"%s\" of user %s: %s",
			    rb->remove[i], rb->mailbox, rb->user, error);
		for (i = 0; i < rb->nunknown; i++)
			if (!rb->matched[i])
				log_error(rb->id, "a message of %llu bytes may stay in \"%s\" "
				    "of user %s, its UID unknown: %s",
				    (unsigned long long)rb->unknown[i].size, rb->mailbox,
				    rb->user, error);
	}
	event_active(rb->later, 0, 0);
}

/* One command of the protocol, on whichever connection it runs. */
static void
send_command(struct rollback *rb, const struct reply_ops *ops, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void
send_command(struct rollback *rb, const struct reply_ops *ops, const char *fmt, ...)
{
	char *text = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&text, fmt, ap);
	va_end(ap);
	if (n < 0) {
		finish(rb, "out of memory");
		return;
	}
	if (rb->bc != NULL)
		backchannel_command(rb->bc, ops, rb, "%s", text);
	else if (session_command(rb->s, ops, rb, "%s", text) == NULL)
		finish(rb, "out of memory");
	free(text);
}

/* The step's answer was not OK: the rollback stops there. */
static bool
refused(struct rollback *rb, const struct answer *a)
{
	char why[300];

	if (a->ok)
		return false;
	snprintf(why, sizeof(why), "upstream answered %.*s",
	    (int)(a->len > 200 ? 200 : a->len), a->line);
	finish(rb, why);
	return true;
}

/* Everything found is gone; an unknown message not found was never
 * stored, unless it could not be looked for. */
static void
removed(struct rollback *rb)
{
	size_t i, left = 0;

	rb->nremove = 0;	/* gone: nothing to report as left */
	for (i = 0; i < rb->nunknown; i++)
		if (!rb->matched[i])
			left++;
	if (left > 0 && rb->uidnext == 0) {
		finish(rb, "messages of unknown UID could not be looked for");
		return;
	}
	finish(rb, NULL);
}

static void
expunged(void *ctx, const struct answer *a)
{
	struct rollback *rb = ctx;
	char *set;

	if (refused(rb, a))
		return;
	set = uidset_format(rb->remove, rb->nremove);
	log_info(rb->id, "rolled back: removed UIDs %s from \"%s\"",
	    set != NULL ? set : "?", rb->mailbox);
	free(set);
	removed(rb);
}

static const struct reply_ops expunge_ops = { .tagged = expunged };

static void
stored(void *ctx, const struct answer *a)
{
	struct rollback *rb = ctx;
	char *set;

	if (refused(rb, a))
		return;
	if ((set = uidset_format(rb->remove, rb->nremove)) == NULL) {
		finish(rb, "out of memory");
		return;
	}
	send_command(rb, &expunge_ops, "UID EXPUNGE %s", set);
	free(set);
}

static const struct reply_ops store_ops = { .tagged = stored };

/* The protocol itself, written once: flag exactly these UIDs, then expunge
 * exactly these UIDs. */
static void
remove_uids(struct rollback *rb)
{
	char *set;

	if (rb->found != NULL) {
		finish(rb, NULL);	/* only looking: rb->remove is what was found */
		return;
	}
	if (rb->nremove == 0) {
		removed(rb);
		return;
	}
	if ((set = uidset_format(rb->remove, rb->nremove)) == NULL) {
		finish(rb, "out of memory");
		return;
	}
	send_command(rb, &store_ops, "UID STORE %s +FLAGS.SILENT (\\Deleted)", set);
	free(set);
}

static bool
known(const struct rollback *rb, uint32_t uid)
{
	size_t i;

	for (i = 0; i < rb->nremove; i++)
		if (rb->remove[i] == uid)
			return true;
	return false;
}

/* "* SEARCH 7 8 9": the UIDs from the old UIDNEXT on, ours excluded.  The
 * numbers are read from the text itself: a long result has more of them
 * than the lexer records as tokens. */
static bool
search_data(void *ctx, const char *buf, const struct imap_segment *seg)
{
	struct rollback *rb = ctx;
	const struct imap_token *word;
	size_t n, i, off, kept;
	bool more = false;

	if (!seg->first || seg->ntok < 2 || !imap_tok_is(buf, &seg->tok[1], "SEARCH"))
		return false;
	word = &seg->tok[1];
	off = word->off + word->len;
	n = uidset_parse_search(buf + off, seg->eol - off, rb->next_uid,
	    rb->cand + rb->ncand, CANDIDATES_MAX - rb->ncand, &more);
	for (i = 0, kept = rb->ncand; i < n; i++) {
		uint32_t uid = rb->cand[rb->ncand + i];

		if (uid != UINT32_MAX && uid + 1 > rb->next_uid)
			rb->next_uid = uid + 1;
		if (!known(rb, uid))
			rb->cand[kept++] = uid;
	}
	rb->ncand = kept;
	if (more)
		log_warn(rb->id, "more than %d new messages in \"%s\": only the first "
		    "are compared", CANDIDATES_MAX, rb->mailbox);
	return true;
}

/* "* 3 FETCH (UID 9 RFC822.SIZE 1234)": a candidate's size. */
static bool
size_data(void *ctx, const char *buf, const struct imap_segment *seg)
{
	struct rollback *rb = ctx;
	uint32_t uid = 0, size = 0;
	size_t i;

	if (!seg->first || seg->ntok < 3 || !imap_tok_is(buf, &seg->tok[2], "FETCH"))
		return false;
	(void)imap_number_item(buf, seg, "UID", &uid);
	(void)imap_number_item(buf, seg, "RFC822.SIZE", &size);
	for (i = rb->cbase; uid != 0 && i < rb->ncand; i++)
		if (rb->cand[i] == uid)
			rb->cand_size[i] = size;
	return true;
}

static void
sizes_done(void *ctx, const struct answer *a)
{
	struct rollback *rb = ctx;

	if (!refused(rb, a))
		next_compare(rb);
}

static const struct reply_ops size_ops = { .untagged = size_data, .tagged = sizes_done };

static void
searched(void *ctx, const struct answer *a)
{
	struct rollback *rb = ctx;
	char *set;

	if (refused(rb, a))
		return;
	if (rb->ncand == rb->cbase) {
		next_compare(rb);	/* nothing new: settles or ends */
		return;
	}
	rb->last_growth = log_clock();
	if ((set = uidset_format(rb->cand + rb->cbase, rb->ncand - rb->cbase)) == NULL) {
		finish(rb, "out of memory");
		return;
	}
	send_command(rb, &size_ops, "UID FETCH %s (RFC822.SIZE)", set);
	free(set);
}

static const struct reply_ops search_ops = { .untagged = search_data, .tagged = searched };

/* The FETCH of a candidate's body: its literal is hashed as it comes. */
static bool
body_data(void *ctx, const char *buf, const struct imap_segment *seg)
{
	struct rollback *rb = ctx;

	(void)buf;
	if (seg->first && (seg->ntok < 3 || !imap_tok_is(buf, &seg->tok[2], "FETCH")))
		return false;
	if (!seg->last && !fingerprint_size_fits(&rb->unknown[rb->ui], seg->literal))
		rb->body_ok = false;
	return true;
}

static void
body_bytes(void *ctx, const char *data, size_t n)
{
	struct rollback *rb = ctx;

	fingerprint_add(&rb->body, data, n);
}

static void
body_done(void *ctx, const struct answer *a)
{
	struct rollback *rb = ctx;
	struct fingerprint got;
	bool same;

	same = fingerprint_end(&rb->body, &got) == 0 && a->ok && rb->body_ok &&
	    fingerprint_same(&rb->unknown[rb->ui], &got);
	if (same) {
		log_info(rb->id, "message %zu of unknown UID found as UID %u",
		    rb->ui + 1, rb->cand[rb->ci]);
		rb->remove[rb->nremove++] = rb->cand[rb->ci];
		rb->matched[rb->ui] = true;
		rb->cand[rb->ci] = 0;	/* taken */
		rb->ui++;
		rb->ci = rb->cbase;
	} else {
		rb->ci++;
	}
	next_compare(rb);
}

static const struct reply_ops body_ops = {
	.untagged = body_data, .literal = body_bytes, .tagged = body_done,
};

/* The next (unknown message, candidate of the same size) pair to compare,
 * among this search's candidates; candidates are taken in UID order,
 * messages in the order they were sent, so a match keeps both orders. */
static void
next_compare(struct rollback *rb)
{
	for (; rb->ui < rb->nunknown; rb->ui++, rb->ci = rb->cbase) {
		if (rb->matched[rb->ui])
			continue;
		for (; rb->ci < rb->ncand; rb->ci++) {
			if (rb->cand[rb->ci] == 0 ||
			    !fingerprint_size_fits(&rb->unknown[rb->ui], rb->cand_size[rb->ci]))
				continue;
			rb->body_ok = true;
			fingerprint_begin(&rb->body);
			send_command(rb, &body_ops, "UID FETCH %u (BODY.PEEK[])",
			    rb->cand[rb->ci]);
			return;
		}
	}
	settle_or_remove(rb);
}

static size_t
unmatched(const struct rollback *rb)
{
	size_t i, n = 0;

	for (i = 0; i < rb->nunknown; i++)
		if (!rb->matched[i])
			n++;
	return n;
}

/* A search and its comparisons are done.  Messages still missing may yet
 * be stored by the server (it is working through what the lost connection
 * sent): look again after a while, until the mailbox has stopped growing
 * for rollback_settle; then what is missing was never stored. */
static void
settle_or_remove(struct rollback *rb)
{
	struct timeval poll = { 0, SETTLE_POLL_MS * 1000 };
	size_t missing = unmatched(rb);
	double now = log_clock(), quiet = rb->cfg->rollback_settle;

	if (!rb->settle || missing == 0) {
		remove_uids(rb);
		return;
	}
	if (rb->settle_started == 0) {
		rb->settle_started = now;
		if (rb->last_growth == 0)
			rb->last_growth = now;
		log_info(rb->id, "%zu message%s sent on the lost connection %s not in "
		    "\"%s\" (yet): looking again until nothing new arrives for %us",
		    missing, missing == 1 ? "" : "s", missing == 1 ? "is" : "are",
		    rb->mailbox, rb->cfg->rollback_settle);
	}
	if (now - rb->last_growth >= quiet ||
	    now - rb->settle_started >= quiet * SETTLE_CAP_FACTOR) {
		log_info(rb->id, "%zu message%s sent on the lost connection not in "
		    "\"%s\" after %.1fs: never stored", missing, missing == 1 ? "" : "s",
		    rb->mailbox, now - rb->settle_started);
		remove_uids(rb);
		return;
	}
	if (event_add(rb->poll, &poll) != 0)
		finish(rb, "cannot set a timer");
}

static void
nooped(void *ctx, const struct answer *a)
{
	struct rollback *rb = ctx;

	if (refused(rb, a))
		return;
	rb->cbase = rb->ncand;
	rb->ui = 0;
	rb->ci = rb->cbase;
	send_command(rb, &search_ops, "UID SEARCH UID %u:*", rb->next_uid);
}

static const struct reply_ops noop_ops = { .tagged = nooped };

/* The server is given a NOOP first: a new message shows in the mailbox
 * the second connection has selected at the latest then. */
static void
look_again(evutil_socket_t fd, short what, void *arg)
{
	struct rollback *rb = arg;

	(void)fd;
	(void)what;
	send_command(rb, &noop_ops, "NOOP");
}

/* Messages of unknown UID: look from the old UIDNEXT on. */
static void
search_unknown(struct rollback *rb)
{
	if (rb->nunknown == 0) {
		remove_uids(rb);
		return;
	}
	if (rb->uidnext == 0) {
		log_error(rb->id, "cannot look for messages of unknown UID in \"%s\": "
		    "its UIDNEXT before the upload is not known", rb->mailbox);
		if (rb->found != NULL)
			finish(rb, "UIDNEXT before the upload is not known");
		else
			remove_uids(rb);
		return;
	}
	send_command(rb, &search_ops, "UID SEARCH UID %u:*", rb->uidnext);
}

/* "* OK [UIDVALIDITY n]" of the SELECT. */
static bool
select_data(void *ctx, const char *buf, const struct imap_segment *seg)
{
	struct rollback *rb = ctx;
	const struct imap_token *code = seg->first ? imap_code(buf, seg, "UIDVALIDITY") : NULL;
	unsigned long v;

	if (code != NULL && sscanf(buf + code->off + 11, "%lu", &v) == 1 && v <= UINT32_MAX)
		rb->seen_uidvalidity = (uint32_t)v;
	return false;
}

static void
selected(void *ctx, const struct answer *a)
{
	struct rollback *rb = ctx;

	if (!a->ok && (imap_code(a->line, a->seg, "NONEXISTENT") != NULL ||
	    imap_code(a->line, a->seg, "TRYCREATE") != NULL)) {
		/* no such mailbox: nothing can have gone into it */
		log_info(rb->id, "\"%s\" does not exist: nothing to remove", rb->mailbox);
		rb->nremove = 0;
		finish(rb, NULL);
		return;
	}
	if (refused(rb, a))
		return;
	if (rb->uidvalidity != 0 && rb->seen_uidvalidity != rb->uidvalidity) {
		/* the mailbox was deleted and made anew: nothing in it is ours
		 * (a retried upload may be: it is left alone) */
		log_warn(rb->id, "\"%s\" has a new UIDVALIDITY (%u, was %u): nothing of "
		    "the upload can be in it, nothing is removed", rb->mailbox,
		    rb->seen_uidvalidity, rb->uidvalidity);
		rb->nremove = 0;
		finish(rb, NULL);
		return;
	}
	search_unknown(rb);
}

static const struct reply_ops select_ops = { .untagged = select_data, .tagged = selected };

static void
bc_ready(void *ctx)
{
	struct rollback *rb = ctx;

	send_command(rb, &select_ops, "SELECT %s", rb->mailbox_wire);
}

static void
bc_failed(void *ctx, const char *why)
{
	finish(ctx, why);
}

static const struct backchannel_owner bc_owner = { bc_ready, bc_failed };

static struct rollback *
rollback_new(struct proxy *proxy, const struct config *cfg,
    const struct backend *b, uint64_t log_id,
    const struct rollback_plan *plan, const struct rollback_target *t,
    rollback_done_cb done, void *ctx)
{
	struct rollback *rb = calloc(1, sizeof(*rb));
	size_t n = plan->nuids + plan->nunknown + 1;

	if (rb == NULL)
		return NULL;
	rb->proxy = proxy;
	rb->cfg = config_ref(cfg);
	rb->backend = *b;
	rb->id = log_id;
	rb->done = done;
	rb->ctx = ctx;
	rb->uidnext = t->uidnext;
	rb->next_uid = t->uidnext;
	rb->uidvalidity = t->uidvalidity;
	rb->settle = plan->settle;
	rb->later = event_new(proxy->base, -1, 0, report, rb);
	rb->poll = evtimer_new(proxy->base, look_again, rb);
	(void)fingerprinter_init(&rb->body);	/* body.md checked below */
	rb->mailbox = dup_or_null(t->mailbox);
	rb->mailbox_wire = dup_or_null(t->mailbox_wire);
	rb->user = dup_or_null(t->user != NULL ? t->user : "?");
	rb->remove = calloc(n, sizeof(*rb->remove));
	rb->unknown = calloc(plan->nunknown + 1, sizeof(*rb->unknown));
	rb->matched = calloc(plan->nunknown + 1, sizeof(*rb->matched));
	if (plan->nunknown > 0) {
		rb->cand = calloc(CANDIDATES_MAX, sizeof(*rb->cand));
		rb->cand_size = calloc(CANDIDATES_MAX, sizeof(*rb->cand_size));
	}
	if (rb->later == NULL || rb->poll == NULL || rb->body.md == NULL || rb->mailbox == NULL ||
	    rb->mailbox_wire == NULL || rb->user == NULL || rb->remove == NULL ||
	    rb->unknown == NULL || rb->matched == NULL ||
	    (plan->nunknown > 0 && (rb->cand == NULL || rb->cand_size == NULL))) {
		rollback_free(rb);
		return NULL;
	}
	if (plan->nuids > 0)
		memcpy(rb->remove, plan->uids, plan->nuids * sizeof(*rb->remove));
	rb->nremove = plan->nuids;
	if (plan->nunknown > 0)
		memcpy(rb->unknown, plan->unknown, plan->nunknown * sizeof(*rb->unknown));
	rb->nunknown = plan->nunknown;
	return rb;
}

/* The second connection: open it (done/found hear of a failure). */
static void
open_second(struct rollback *rb, const struct login *login)
{
	if (login == NULL) {
		finish(rb, "no credentials for a second connection (the client did not "
		    "log in with LOGIN or AUTHENTICATE PLAIN, and no master_user is set)");
		return;
	}
	if ((rb->bc = backchannel_open(rb->proxy, rb->cfg, &rb->backend, rb->id, login, &bc_owner,
	    rb)) == NULL)
		finish(rb, "out of memory");
}

struct rollback *
rollback_find(struct proxy *proxy, const struct config *cfg,
    const struct backend *b, uint64_t log_id,
    const struct login *login, const struct fingerprint *msgs, size_t n,
    const struct rollback_target *t, rollback_found_cb found, void *ctx)
{
	struct rollback_plan plan = { .unknown = (struct fingerprint *)msgs,
	    .nunknown = n, .settle = true };
	struct rollback *rb = rollback_new(proxy, cfg, b, log_id, &plan, t, NULL,
	    ctx);

	if (rb == NULL)
		return NULL;
	rb->found = found;
	open_second(rb, login);
	return rb;
}

struct rollback *
rollback_start(struct proxy *proxy, const struct config *cfg,
    const struct backend *b, uint64_t log_id,
    struct session *s, const struct login *login, const struct rollback_plan *plan,
    const struct rollback_target *t, rollback_done_cb done, void *ctx)
{
	struct rollback *rb = rollback_new(proxy, cfg, b, log_id, plan, t, done,
	    ctx);

	if (rb == NULL)
		return NULL;
	if (plan->own_connection && s != NULL) {
		rb->s = s;
		remove_uids(rb);
		return rb;
	}
	log_info(log_id, "removing %zu message%s from \"%s\" on a second connection",
	    plan->nuids + plan->nunknown, plan->nuids + plan->nunknown == 1 ? "" : "s",
	    t->mailbox);
	open_second(rb, login);
	return rb;
}

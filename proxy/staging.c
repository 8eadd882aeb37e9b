/*
 * staging.c — the staging mailbox of a MULTIAPPEND to an upstream without
 * UIDPLUS: its name (in the user's personal namespace, which NAMESPACE
 * tells: Courier wants "INBOX."), its creation, the one COPY into the
 * target, and its deletion on every path (see staging.h).
 *
 * The COPY runs on a second connection.  If that connection breaks, what
 * happened is found out on a new one: before the COPY was sent it did not
 * run; after, its answer is lost and it may have run, so the target is
 * searched for the staged messages (from its UIDNEXT before the COPY, by
 * content: rollback_find).  All found: it ran.  None: it did not.
 * Some (a server that broke COPY's atomicity): those are removed again.
 * The staging mailbox is deleted in every case, on a new connection when
 * the one that had it broke.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "backchannel.h"
#include "capability.h"
#include "command.h"
#include "credentials.h"
#include "log.h"
#include "parser.h"
#include "response.h"
#include "rollback.h"
#include "session.h"
#include "staging.h"

/* Second connections opened to delete the staging mailbox after the one
 * that had it broke. */
#define DELETE_ATTEMPTS 2

enum copy_step {
	COPY_NOT_SENT,
	COPY_SENT,		/* its answer may be lost */
	COPY_ANSWERED,
};

struct staging {
	struct proxy *proxy;
	const struct config *cfg;	/* for second connections (a reference) */
	struct backend backend;		/* where they go (a copy) */
	uint64_t id;
	struct session *s;		/* the client's connection, or NULL */
	struct backchannel *bc;
	struct event *later;
	enum staging_op op;
	char *staging_wire, *target_wire, *target;
	char *prefix;			/* the personal namespace's, from NAMESPACE */
	struct login login;		/* for a new connection (wiped when freed) */
	bool have_login;
	struct fingerprint *msgs;	/* COPY: the staged messages */
	size_t nmsgs;
	uint32_t target_uidnext;	/* before the COPY */
	enum copy_step copy;
	bool copied;			/* the messages are in the target */
	bool deleting;			/* only the DELETE is left */
	unsigned attempts;
	struct rollback *look;		/* a search or removal in the target */
	char *error, *refusal;
	staging_done_cb done;
	void *ctx;
};

static void begin(struct staging *);
static void delete_again(struct staging *, const char *why);

char *
staging_name(const char *prefix)
{
	unsigned char rnd[8];
	char name[512];

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return NULL;
	snprintf(name, sizeof(name), "%smappend-staging-%02x%02x%02x%02x%02x%02x%02x%02x",
	    prefix != NULL ? prefix : "",
	    rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	return imap_quote(name, strlen(name));
}

const char *
staging_mailbox(const struct staging *st)
{
	return st->staging_wire;
}

void
staging_free(struct staging *st)
{
	if (st == NULL)
		return;
	session_forget_ctx(st->s, st);	/* a CREATE or DELETE may be in flight */
	backchannel_close(st->bc);
	rollback_free(st->look);
	if (st->later != NULL)
		event_free(st->later);
	login_clear(&st->login);
	free(st->staging_wire);
	free(st->target_wire);
	free(st->target);
	free(st->prefix);
	free(st->msgs);
	free(st->error);
	free(st->refusal);
	config_unref(st->cfg);
	explicit_bzero(&st->backend, sizeof st->backend);	/* a master password */
	free(st);
}

static void
report(evutil_socket_t fd, short what, void *arg)
{
	struct staging *st = arg;

	(void)fd;
	(void)what;
	st->done(st->ctx, st->error, st->refusal);
}

static void
finish(struct staging *st, const char *error)
{
	backchannel_close(st->bc);
	st->bc = NULL;
	if (error != NULL && st->error == NULL)
		st->error = strdup(error);
	event_active(st->later, 0, 0);
}

/* The upstream's answer as refusal text: "NO [CODE] text". */
static void
keep_refusal(struct staging *st, const struct answer *a)
{
	size_t off = a->seg->ntok >= 2 ? a->seg->tok[1].off : 0;

	free(st->refusal);
	st->refusal = strndup(a->line + off, a->len - off);
}

/* A command with arguments of its own shape. */
static int
session_command_text(struct staging *st, const struct reply_ops *ops,
    const char *fmt, const char *arg)
{
	char *text = NULL;

	if (asprintf(&text, fmt, arg) < 0)
		return -1;
	if (st->bc != NULL)
		backchannel_command(st->bc, ops, st, "%s", text);
	else if (session_command(st->s, ops, st, "%s", text) == NULL) {
		free(text);
		return -1;
	}
	free(text);
	return 0;
}

static void
send_command(struct staging *st, const struct reply_ops *ops, const char *verb,
    const char *arg)
{
	const char *sep = *arg != '\0' ? " " : "";

	if (st->bc != NULL)
		backchannel_command(st->bc, ops, st, "%s%s%s", verb, sep, arg);
	else if (session_command(st->s, ops, st, "%s%s%s", verb, sep, arg) == NULL)
		finish(st, "out of memory");
}

/* The end of a COPY: what the client is told follows st->copied. */
static void
copy_over(struct staging *st, const char *error)
{
	if (!st->copied && st->refusal == NULL && st->error == NULL)
		st->error = strdup(error != NULL ? error : "the COPY did not run");
	finish(st, NULL);
}

static void
deleted(void *ctx, const struct answer *a)
{
	struct staging *st = ctx;

	if (!a->ok)
		log_error(st->id, "could not delete the staging mailbox %s: %.*s",
		    st->staging_wire, (int)(a->len > 200 ? 200 : a->len), a->line);
	if (st->op == STAGING_COPY)
		copy_over(st, NULL);
	else
		finish(st, NULL);
}

static const struct reply_ops delete_ops = { .tagged = deleted };

/* CLOSE of our own staging mailbox may expunge what it likes. */
static void
closed(void *ctx, const struct answer *a)
{
	struct staging *st = ctx;

	(void)a;
	send_command(st, &delete_ops, "DELETE", st->staging_wire);
}

static const struct reply_ops close_ops = { .tagged = closed };

static void
copied(void *ctx, const struct answer *a)
{
	struct staging *st = ctx;

	st->copy = COPY_ANSWERED;
	st->copied = a->ok;
	if (!a->ok)
		keep_refusal(st, a);
	send_command(st, &close_ops, "CLOSE", "");
}

static const struct reply_ops copy_ops = { .tagged = copied };

/* "* STATUS target (UIDNEXT n)": where the COPY's messages will start. */
static bool
status_data(void *ctx, const char *buf, const struct imap_segment *seg)
{
	struct staging *st = ctx;

	if (seg->first && (seg->ntok < 2 || !imap_tok_is(buf, &seg->tok[1], "STATUS")))
		return false;
	(void)imap_number_item(buf, seg, "UIDNEXT", &st->target_uidnext);
	return true;
}

static void
status_done(void *ctx, const struct answer *a)
{
	struct staging *st = ctx;

	(void)a;	/* a missing target shows in the COPY's answer */
	st->copy = COPY_SENT;
	send_command(st, &copy_ops, "COPY 1:*", st->target_wire);
}

static const struct reply_ops status_ops = {
	.untagged = status_data, .tagged = status_done,
};

static void
selected(void *ctx, const struct answer *a)
{
	struct staging *st = ctx;
	char why[300];

	if (!a->ok) {
		snprintf(why, sizeof(why), "upstream answered %.*s",
		    (int)(a->len > 200 ? 200 : a->len), a->line);
		delete_again(st, why);
		return;
	}
	if (session_command_text(st, &status_ops, "STATUS %s (UIDNEXT)",
	    st->target_wire) != 0)
		finish(st, "out of memory");
}

static const struct reply_ops select_ops = { .tagged = selected };

static void
created(void *ctx, const struct answer *a)
{
	struct staging *st = ctx;

	if (!a->ok) {
		keep_refusal(st, a);
		log_warn(st->id, "cannot create the staging mailbox %s: %.*s",
		    st->staging_wire, (int)a->len, a->line);
	}
	finish(st, NULL);
}

static const struct reply_ops create_ops = { .tagged = created };

/* "* NAMESPACE (("INBOX." ".")) NIL NIL": the personal prefix. */
static bool
namespace_data(void *ctx, const char *buf, const struct imap_segment *seg)
{
	struct staging *st = ctx;
	char prefix[256];
	int n;

	if (!seg->first || seg->ntok < 2 || !imap_tok_is(buf, &seg->tok[1], "NAMESPACE"))
		return false;
	if (seg->ntok >= 5 && seg->tok[2].kind == IMAP_TOK_LPAREN &&
	    seg->tok[3].kind == IMAP_TOK_LPAREN &&
	    (n = imap_unquote(buf, &seg->tok[4], prefix, sizeof(prefix) - 1)) > 0 &&
	    seg->tok[4].kind == IMAP_TOK_QUOTED) {
		prefix[n] = '\0';
		free(st->prefix);
		st->prefix = strdup(prefix);
	}
	return true;
}

static void
namespace_done(void *ctx, const struct answer *a)
{
	struct staging *st = ctx;

	(void)a;
	free(st->staging_wire);
	if ((st->staging_wire = staging_name(st->prefix)) == NULL)
		finish(st, "out of memory");
	else
		finish(st, NULL);
}

static const struct reply_ops namespace_ops = {
	.untagged = namespace_data, .tagged = namespace_done,
};

static void
begin(struct staging *st)
{
	if (st->deleting) {
		send_command(st, &delete_ops, "DELETE", st->staging_wire);
		return;
	}
	switch (st->op) {
	case STAGING_NAME:
		if (response_caps(st->s)->namespace)
			send_command(st, &namespace_ops, "NAMESPACE", "");
		else
			namespace_done(st, NULL);
		break;
	case STAGING_CREATE:
		send_command(st, &create_ops, "CREATE", st->staging_wire);
		break;
	case STAGING_COPY:
		send_command(st, &select_ops, "SELECT", st->staging_wire);
		break;
	case STAGING_DELETE:
		send_command(st, &delete_ops, "DELETE", st->staging_wire);
		break;
	}
}

static void bc_ready(void *);
static void bc_failed(void *, const char *);
static const struct backchannel_owner bc_owner = { bc_ready, bc_failed };

static void
open_second(struct staging *st)
{
	st->attempts++;
	if (!st->have_login) {
		finish(st, "no credentials for a second connection");
		return;
	}
	if ((st->bc = backchannel_open(st->proxy, st->cfg, &st->backend, st->id,
	    &st->login, &bc_owner, st)) == NULL)
		finish(st, "out of memory");
}

/* The connection that had the staging mailbox broke: delete it on a new
 * one (the outcome of a COPY is known by now). */
static void
delete_again(struct staging *st, const char *why)
{
	backchannel_close(st->bc);
	st->bc = NULL;
	if (st->attempts >= DELETE_ATTEMPTS) {
		log_error(st->id, "the staging mailbox %s is left behind: %s",
		    st->staging_wire, why);
		if (st->op == STAGING_COPY)
			copy_over(st, why);
		else
			finish(st, why);
		return;
	}
	log_info(st->id, "deleting the staging mailbox %s on a new connection (%s)",
	    st->staging_wire, why);
	st->deleting = true;
	open_second(st);
}

/* Removed again: a COPY that put only part of the upload in the target. */
static void
partial_removed(void *ctx, const char *error)
{
	struct staging *st = ctx;

	rollback_free(st->look);
	st->look = NULL;
	if (error != NULL)
		log_error(st->id, "part of a COPY stays in %s: %s", st->target_wire, error);
	delete_again(st, "the COPY's connection broke");
}

/* After a COPY whose answer was lost: what of it is in the target. */
static void
found_in_target(void *ctx, const char *error, const uint32_t *uids, size_t n)
{
	struct staging *st = ctx;
	struct rollback_plan plan = { .uids = (uint32_t *)uids, .nuids = n };
	struct rollback_target t = { .mailbox = st->target,
	    .mailbox_wire = st->target_wire, .user = st->login.user };
	struct rollback *look = st->look;

	st->look = NULL;
	st->copied = error == NULL && n == st->nmsgs;
	log_info(st->id, "the COPY whose answer was lost %s (%zu of %zu messages "
	    "found in %s)", st->copied ? "ran" : "did not run", n, st->nmsgs,
	    st->target_wire);
	if (error != NULL)
		log_error(st->id, "looking for the COPY's messages in %s: %s",
		    st->target_wire, error);
	if (error == NULL && n > 0 && !st->copied)
		st->look = rollback_start(st->proxy, st->cfg, &st->backend, st->id, NULL, &st->login,
		    &plan, &t, partial_removed, st);
	rollback_free(look);	/* uids and error were its: not used below */
	if (st->look == NULL)
		delete_again(st, "the COPY's connection broke");
}

static void
bc_ready(void *ctx)
{
	begin(ctx);
}

static void
bc_failed(void *ctx, const char *why)
{
	struct staging *st = ctx;
	struct rollback_target t = { .mailbox = st->target,
	    .mailbox_wire = st->target_wire, .uidnext = st->target_uidnext,
	    .user = st->login.user };

	backchannel_close(st->bc);
	st->bc = NULL;
	if (st->op != STAGING_COPY || st->copy != COPY_SENT || st->deleting) {
		delete_again(st, why);
		return;
	}
	log_warn(st->id, "the connection carrying the COPY into %s broke (%s): "
	    "looking whether it ran", st->target_wire, why);
	st->look = rollback_find(st->proxy, st->cfg, &st->backend, st->id, &st->login, st->msgs,
	    st->nmsgs, &t, found_in_target, st);
	if (st->look == NULL)
		finish(st, "out of memory");
}

static int
copy_in(struct staging *st, const char *staging_wire, const char *target_wire,
    const struct login *login, const struct fingerprint *msgs, size_t n)
{
	st->staging_wire = strdup(staging_wire != NULL ? staging_wire : "");
	st->target_wire = strdup(target_wire != NULL ? target_wire : "");
	st->target = strdup(target_wire != NULL ? target_wire : "");
	st->msgs = calloc(n + 1, sizeof(*st->msgs));
	if (st->staging_wire == NULL || st->target_wire == NULL || st->target == NULL ||
	    st->msgs == NULL)
		return -1;
	if (n > 0)
		memcpy(st->msgs, msgs, n * sizeof(*msgs));
	st->nmsgs = n;
	if (login != NULL) {
		st->login.login_args = login->login_args ? strdup(login->login_args) : NULL;
		st->login.plain_b64 = login->plain_b64 ? strdup(login->plain_b64) : NULL;
		st->login.user = strdup(login->user != NULL ? login->user : "?");
		st->have_login = st->login.user != NULL &&
		    (st->login.login_args != NULL || st->login.plain_b64 != NULL);
	}
	return 0;
}

struct staging *
staging_start(struct proxy *proxy, const struct config *cfg,
    const struct backend *b, uint64_t log_id,
    struct session *s, const struct login *login, enum staging_op op,
    const char *staging_wire, const char *target_wire,
    const struct fingerprint *msgs, size_t nmsgs, staging_done_cb done,
    void *ctx)
{
	struct staging *st = calloc(1, sizeof(*st));

	if (st == NULL)
		return NULL;
	st->proxy = proxy;
	st->cfg = config_ref(cfg);
	st->backend = *b;
	st->id = log_id;
	st->op = op;
	st->done = done;
	st->ctx = ctx;
	st->later = event_new(proxy->base, -1, 0, report, st);
	if (st->later == NULL ||
	    copy_in(st, staging_wire, target_wire, login, msgs, nmsgs) != 0) {
		staging_free(st);
		return NULL;
	}
	if (s != NULL && op != STAGING_COPY) {
		st->s = s;
		begin(st);
		return st;
	}
	open_second(st);
	return st;
}

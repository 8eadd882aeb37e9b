/*
 * staging.c — the staging mailbox of a MULTIAPPEND to an upstream without
 * UIDPLUS: its name, its creation, the one COPY into the target and its
 * deletion on every path (see staging.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "backchannel.h"
#include "command.h"
#include "log.h"
#include "parser.h"
#include "session.h"
#include "staging.h"

struct staging {
	uint64_t id;
	struct session *s;		/* the client's connection, or NULL */
	struct backchannel *bc;
	struct event *later;
	enum staging_op op;
	char *staging_wire, *target_wire;
	char *error, *refusal;
	staging_done_cb done;
	void *ctx;
};

char *
staging_name(void)
{
	unsigned char rnd[8];
	char name[64];

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return NULL;
	snprintf(name, sizeof(name), "mappend-staging-%02x%02x%02x%02x%02x%02x%02x%02x",
	    rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	return imap_quote(name, strlen(name));
}

void
staging_free(struct staging *st)
{
	if (st == NULL)
		return;
	backchannel_close(st->bc);
	if (st->later != NULL)
		event_free(st->later);
	free(st->staging_wire);
	free(st->target_wire);
	free(st->error);
	free(st->refusal);
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

static void
deleted(void *ctx, const struct answer *a)
{
	struct staging *st = ctx;

	if (!a->ok)
		log_error(st->id, "could not delete the staging mailbox %s: %.*s",
		    st->staging_wire, (int)(a->len > 200 ? 200 : a->len), a->line);
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

	if (!a->ok)
		keep_refusal(st, a);
	send_command(st, &close_ops, "CLOSE", "");
}

static const struct reply_ops copy_ops = { .tagged = copied };

static void
selected(void *ctx, const struct answer *a)
{
	struct staging *st = ctx;
	char why[300];

	if (!a->ok) {
		snprintf(why, sizeof(why), "upstream answered %.*s",
		    (int)(a->len > 200 ? 200 : a->len), a->line);
		finish(st, why);
		return;
	}
	send_command(st, &copy_ops, "COPY 1:*", st->target_wire);
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

static void
begin(struct staging *st)
{
	switch (st->op) {
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

static void
bc_ready(void *ctx)
{
	begin(ctx);
}

static void
bc_failed(void *ctx, const char *why)
{
	finish(ctx, why);
}

static const struct backchannel_owner bc_owner = { bc_ready, bc_failed };

struct staging *
staging_start(struct proxy *proxy, uint64_t log_id, struct session *s,
    const struct login *login, enum staging_op op, const char *staging_wire,
    const char *target_wire, staging_done_cb done, void *ctx)
{
	struct staging *st = calloc(1, sizeof(*st));

	if (st == NULL)
		return NULL;
	st->id = log_id;
	st->op = op;
	st->done = done;
	st->ctx = ctx;
	st->later = event_new(proxy->base, -1, 0, report, st);
	st->staging_wire = strdup(staging_wire);
	st->target_wire = strdup(target_wire != NULL ? target_wire : "");
	if (st->later == NULL || st->staging_wire == NULL || st->target_wire == NULL) {
		staging_free(st);
		return NULL;
	}
	if (s != NULL && op != STAGING_COPY) {
		st->s = s;
		begin(st);
		return st;
	}
	if (login == NULL) {
		finish(st, "no credentials for a second connection");
		return st;
	}
	if ((st->bc = backchannel_open(proxy, log_id, login, &bc_owner, st)) == NULL)
		finish(st, "out of memory");
	return st;
}

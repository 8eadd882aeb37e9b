/*
 * recovery.c — at start, before any client is accepted, the uploads a
 * crash left in the journal are undone: none of their clients saw OK.  As
 * the master user for each record's user, on a connection of its own, the
 * same protocol as any rollback (rollback.c) removes exactly that upload's
 * messages — known UIDs, and the others found from the recorded UIDNEXT by
 * size and SHA-256 — and a leftover staging mailbox is deleted.  A record
 * is removed once its upload is gone; one that cannot be resolved now
 * stays for the next start.  Clients are accepted only afterwards, so that
 * a client retrying the same upload cannot have its new copy taken for the
 * old one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "credentials.h"
#include "journal.h"
#include "log.h"
#include "metrics.h"
#include "parser.h"
#include "recovery.h"
#include "rollback.h"
#include "session.h"
#include "staging.h"

struct recovery;

/* One record being resolved. */
struct recovering {
	struct recovery *rec;
	struct journal_entry *e;
	struct backend backend;		/* that received it (rec->cfg's) */
	struct login login;
	char *mailbox_wire, *staging_wire;
	struct rollback *rollback;
	struct staging *staging;
	bool failed;
};

struct recovery {
	struct proxy *proxy;
	const struct config *cfg;	/* the start's (a reference) */
	struct journal_entry *entries;
	size_t n, left;
	struct recovering *items;
	struct event *start, *deadline;
	bool over;
};

static void
item_done(struct recovering *it)
{
	struct journal_entry *e = it->e;

	if (!it->failed && journal_remove(e->path) == 0) {
		metrics_recovery(1);
		log_info(0, "recovered: the upload of %zu message%s to \"%s\" of user %s "
		    "(session %llu before the restart) is undone", e->nmsgs,
		    e->nmsgs == 1 ? "" : "s", e->mailbox, e->user,
		    (unsigned long long)e->session);
	} else {
		log_error(0, "recovery of %s (user %s, \"%s\") not finished: the record "
		    "stays for the next start", e->path, e->user, e->mailbox);
	}
	if (--it->rec->left == 0)
		event_base_loopbreak(it->rec->proxy->base);
}

static void
staging_deleted(void *ctx, const char *error, const char *refusal)
{
	struct recovering *it = ctx;

	(void)refusal;
	if (error != NULL) {
		log_error(0, "recovery: the staging mailbox %s of user %s: %s",
		    it->staging_wire, it->e->user, error);
		it->failed = true;
	}
	item_done(it);
}

static void
rolled_back(void *ctx, const char *error)
{
	struct recovering *it = ctx;
	struct proxy *proxy = it->rec->proxy;

	if (error != NULL) {
		log_error(0, "recovery: \"%s\" of user %s: %s", it->e->mailbox,
		    it->e->user, error);
		it->failed = true;
	}
	if (it->staging_wire == NULL) {
		item_done(it);
		return;
	}
	it->staging = staging_start(proxy, it->rec->cfg, &it->backend, 0, NULL,
	    &it->login, STAGING_DELETE, it->staging_wire, NULL, NULL, 0, staging_deleted, it);
	if (it->staging == NULL) {
		it->failed = true;
		item_done(it);
	}
}

/*
 * The backend that received e's upload, by the name recorded, into out;
 * false when the configuration has none of that name, or it is at another
 * address now (its credentials are not sent to a server it no longer
 * names).  With routing on, an upload to an address a route named (no
 * backend of its own) goes back to that address with the default
 * upstream's settings, as its session did.
 */
static bool
record_backend(const struct config *cfg, const struct journal_entry *e,
    struct backend *out)
{
	const struct backend *b = config_backend(cfg,
	    e->backend != NULL ? e->backend : "");
	const char *colon = strrchr(e->upstream, ':');
	char mine[300];
	size_t hostlen;

	if (b == NULL || colon == NULL)
		return false;
	*out = *b;
	snprintf(mine, sizeof(mine), "%s:%s", b->host, b->port);
	if (strcmp(mine, e->upstream) == 0)
		return true;
	hostlen = (size_t)(colon - e->upstream);
	if (e->backend != NULL || !config_routing(cfg) || hostlen == 0 ||
	    hostlen >= sizeof(out->host) || strlen(colon + 1) >= sizeof(out->port))
		return false;
	memset(out->host, 0, sizeof(out->host));
	memset(out->tls_name, 0, sizeof(out->tls_name));
	memcpy(out->host, e->upstream, hostlen);
	snprintf(out->port, sizeof(out->port), "%s", colon + 1);
	return true;
}

/* Start resolving one record; false when it cannot be now. */
static bool
start_item(struct recovery *rec, struct recovering *it)
{
	struct journal_entry *e = it->e;
	struct backend *b = &it->backend;
	struct rollback_plan plan;
	struct rollback_target t;

	if (!record_backend(rec->cfg, e, b)) {
		log_error(0, "recovery: %s is an upload to %s%s%s, not to a "
		    "configured upstream: left as it is", e->path, e->upstream,
		    e->backend != NULL ? " as backend " : "",
		    e->backend != NULL ? e->backend : "");
		return false;
	}
	it->mailbox_wire = imap_quote(e->mailbox, strlen(e->mailbox));
	it->staging_wire = e->staging != NULL ? strdup(e->staging) : NULL;
	if (it->mailbox_wire == NULL || (e->staging != NULL && it->staging_wire == NULL) ||
	    credentials_master_login(b, e->user, &it->login) != 0 ||
	    rollback_plan(e->msgs, e->nmsgs, true, false, &plan) != 0)
		return false;
	t = (struct rollback_target){ .mailbox = e->mailbox,
	    .mailbox_wire = it->mailbox_wire, .uidnext = e->uidnext, .user = e->user,
	    .uidvalidity = e->uidvalidity };
	log_info(0, "recovering %s: %zu message%s of user %s in \"%s\"%s", e->path,
	    e->nmsgs, e->nmsgs == 1 ? "" : "s", e->user, e->mailbox,
	    e->staging != NULL ? ", and its staging mailbox" : "");
	it->rollback = rollback_start(rec->proxy, rec->cfg, b, 0, NULL, &it->login,
	    &plan, &t, rolled_back, it);
	rollback_plan_free(&plan);
	return it->rollback != NULL;
}

/* Every record at once, from the loop; each rollback waits for what the
 * upstream may still be storing of it (rollback_settle). */
static void
start_all(evutil_socket_t fd, short what, void *arg)
{
	struct recovery *rec = arg;
	struct timeval tv = { RECOVERY_SECONDS + 10 * (time_t)rec->cfg->rollback_settle, 0 };
	size_t i;

	(void)fd;
	(void)what;
	for (i = 0; i < rec->n; i++) {
		rec->items[i].rec = rec;
		rec->items[i].e = &rec->entries[i];
		if (start_item(rec, &rec->items[i]))
			rec->left++;
	}
	if (rec->left == 0)
		event_base_loopbreak(rec->proxy->base);
	else
		evtimer_add(rec->deadline, &tv);
}

static void
too_long(evutil_socket_t fd, short what, void *arg)
{
	struct recovery *rec = arg;

	(void)fd;
	(void)what;
	log_error(0, "recovery did not finish in time: what is left stays in the "
	    "journal for the next start");
	rec->over = true;
	event_base_loopbreak(rec->proxy->base);
}

static void
recovery_free(struct recovery *rec)
{
	size_t i;

	for (i = 0; i < rec->n; i++) {
		rollback_free(rec->items[i].rollback);
		staging_free(rec->items[i].staging);
		login_clear(&rec->items[i].login);
		/* a master password is in there */
		explicit_bzero(&rec->items[i].backend, sizeof(rec->items[i].backend));
		free(rec->items[i].mailbox_wire);
		free(rec->items[i].staging_wire);
	}
	free(rec->items);
	if (rec->start != NULL)
		event_free(rec->start);
	if (rec->deadline != NULL)
		event_free(rec->deadline);
	journal_entries_free(rec->entries, rec->n);
	config_unref(rec->cfg);
}

static bool
any_master_user(const struct config *cfg)
{
	bool any = cfg->upstream.master_user[0] != '\0';

	for (size_t i = 0; i < cfg->nbackends; i++)
		any |= cfg->backends[i].master_user[0] != '\0';
	return any;
}

int
recovery_run(struct proxy *proxy)
{
	const struct config *cfg = proxy->cfg;
	struct recovery rec = { .proxy = proxy };
	struct timeval now = { 0, 0 };

	if (journal_scan(cfg->spool_dir, &rec.entries, &rec.n) != 0) {
		log_error(0, "cannot read the journal in %s", cfg->spool_dir);
		return -1;
	}
	if (rec.n == 0)
		return 0;
	if (!any_master_user(cfg)) {
		log_warn(0, "%zu upload%s in the journal wait for recovery, which needs a "
		    "master_user: `mappend -R` lists them", rec.n, rec.n == 1 ? "" : "s");
		journal_entries_free(rec.entries, rec.n);
		return 0;
	}
	log_info(0, "recovering %zu upload%s left by a crash before accepting clients",
	    rec.n, rec.n == 1 ? "" : "s");
	/* the loop runs: a reload may replace proxy->cfg meanwhile */
	rec.cfg = config_ref(cfg);
	rec.items = calloc(rec.n, sizeof(*rec.items));
	rec.start = evtimer_new(proxy->base, start_all, &rec);
	rec.deadline = evtimer_new(proxy->base, too_long, &rec);
	if (rec.items == NULL || rec.start == NULL || rec.deadline == NULL) {
		recovery_free(&rec);
		return -1;
	}
	evtimer_add(rec.start, &now);
	event_base_dispatch(proxy->base);
	recovery_free(&rec);
	return 0;
}

int
recovery_list(const struct config *cfg, FILE *out)
{
	struct journal_entry *entries;
	size_t n, i, k, stored;

	if (journal_scan(cfg->spool_dir, &entries, &n) != 0) {
		fprintf(out, "mappend: cannot read the journal in %s\n", cfg->spool_dir);
		return -1;
	}
	fprintf(out, "%zu upload%s pending recovery in %s/journal\n", n,
	    n == 1 ? "" : "s", cfg->spool_dir);
	for (i = 0; i < n; i++) {
		const struct journal_entry *e = &entries[i];

		for (k = 0, stored = 0; k < e->nmsgs; k++)
			if (e->msgs[k].state == UPLOAD_STORED)
				stored++;
		fprintf(out, "%s: user %s, mailbox \"%s\" on %s, %zu messages (%zu UIDs "
		    "known), UIDVALIDITY %u, UIDNEXT before %u%s%s\n", e->path, e->user,
		    e->mailbox, e->upstream, e->nmsgs, stored, e->uidvalidity, e->uidnext,
		    e->staging != NULL ? ", staging " : "",
		    e->staging != NULL ? e->staging : "");
	}
	journal_entries_free(entries, n);
	return 0;
}

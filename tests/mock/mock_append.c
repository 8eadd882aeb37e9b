/*
 * mock_append.c — APPEND, the command the tests are about.  Each message
 * literal is decided on when its header arrives (a refusal replaces the "+"
 * of a synchronizing literal; a refused {n+} is read and discarded), counted
 * for fault injection when its data has arrived, and stored only when the
 * whole command has arrived: one message in the legacy profiles, any number
 * atomically in the multiappend profile (RFC 3502).
 */
#include <stdlib.h>
#include <string.h>

#include "mock.h"

struct mock_pending {
	struct mock_flags flags;
	char date[32];
	struct mock_body *body;
};

struct mock_append {
	char *mailbox;
	size_t groups;		/* message literals announced */
	size_t group_start;	/* argument where the current group starts */
	struct mock_pending *msgs;
	size_t nmsgs, cap;
	uint64_t bytes;
};

struct mock_append *
mock_append_new(void)
{
	struct mock_append *a = calloc(1, sizeof(*a));

	if (a == NULL) {
		fprintf(stderr, "mock_imapd: out of memory\n");
		exit(1);
	}
	return a;
}

static void
pending_free(struct mock_pending *p)
{
	mock_flags_free(&p->flags);
	mock_store_body_unref(p->body);
	p->body = NULL;
}

void
mock_append_free(struct mock_append *a)
{
	size_t i;

	if (a == NULL)
		return;
	for (i = 0; i < a->nmsgs; i++)
		pending_free(&a->msgs[i]);
	free(a->msgs);
	free(a->mailbox);
	free(a);
}

bool
mock_append_is_message(struct mock_conn *c)
{
	struct mock_append *a = c->append;

	if (a->groups == 0 && mock_conn_nargs(c) == 0)
		return false;	/* the mailbox name itself is a literal */
	a->groups++;
	if (a->groups == 2)
		mock_srv.stats.multi++;
	if (a->groups > mock_srv.stats.maxmsgs)
		mock_srv.stats.maxmsgs = a->groups;
	return true;
}

static const char *
check_room(struct mock_conn *c, uint64_t more)
{
	if (mock_srv.quota > 0 &&
	    c->user->usage + more > mock_srv.quota)
		return "[OVERQUOTA] Quota exceeded";
	return NULL;
}

/* [flag-list] [date-time] before a message literal */
static int
parse_group(struct mock_conn *c, struct mock_pending *p, const char **why)
{
	struct mock_append *a = c->append;
	size_t i = a->group_start, n = mock_conn_nargs(c);
	struct mock_arg *arg = mock_conn_arg(c, i);

	if (arg != NULL && arg->kind == MOCK_ARG_LPAREN) {
		if (mock_parse_flags(c, &i, true, &p->flags, why) < 0)
			return -1;
		arg = mock_conn_arg(c, i);
	}
	if (arg != NULL && arg->kind == MOCK_ARG_STRING && !arg->literal) {
		if (!mock_datetime_valid(arg->s, arg->len)) {
			*why = "invalid date-time";
			return -1;
		}
		snprintf(p->date, sizeof(p->date), "%s", arg->s);
		i++;
	}
	if (i != n) {
		*why = "invalid APPEND arguments";
		return -1;
	}
	return 0;
}

bool
mock_append_literal(struct mock_conn *c, uint64_t size)
{
	struct mock_append *a = c->append;
	struct mock_pending p;
	const char *why = NULL, *room;
	struct mock_arg *mbox;

	memset(&p, 0, sizeof(p));
	if (a->groups > 1 && mock_srv.profile != MOCK_PROFILE_MULTIAPPEND) {
		mock_conn_fail(c, "BAD", "more than one message in APPEND "
		    "(no MULTIAPPEND)");
		return false;
	}
	if (a->groups > MOCK_APPEND_MSGS_MAX) {
		mock_conn_fail(c, "NO", "[LIMIT] too many messages in APPEND");
		return false;
	}
	if (a->groups == 1) {
		mbox = mock_conn_arg(c, 0);
		if (!mock_arg_is_string(mbox) || strlen(mbox->s) != mbox->len) {
			mock_conn_fail(c, "BAD", "APPEND needs a mailbox name");
			return false;
		}
		if ((a->mailbox = strdup(mbox->s)) == NULL)
			exit(1);
		a->group_start = 1;
	}
	if (parse_group(c, &p, &why) < 0) {
		mock_flags_free(&p.flags);
		mock_conn_fail(c, "BAD", "%s", why);
		return false;
	}
	if (mock_store_mailbox_find(c->user, a->mailbox) == NULL)
		why = "[TRYCREATE] Mailbox does not exist";
	else if (size == 0)
		why = "APPEND cancelled (zero-length message)";
	else if (size > MOCK_LITERAL_MAX ||
	    (mock_srv.appendlimit > 0 && size > mock_srv.appendlimit))
		why = "[TOOBIG] Message too large";
	else if ((room = check_room(c, a->bytes + size)) != NULL)
		why = room;
	else if ((p.body = mock_store_body_new((size_t)size)) == NULL)
		why = "[SERVERBUG] out of memory";
	if (why != NULL) {
		mock_flags_free(&p.flags);
		mock_conn_fail(c, "NO", "%s", why);
		return false;
	}
	if (a->nmsgs == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 4;
		struct mock_pending *n = realloc(a->msgs, cap * sizeof(*n));

		if (n == NULL)
			exit(1);
		a->msgs = n;
		a->cap = cap;
	}
	a->msgs[a->nmsgs++] = p;
	a->bytes += size;
	c->lit_buf = p.body->data;
	mock_conn_args_truncate(c, a->group_start);
	return true;
}

/* Stores every received message; fills uids (nmsgs entries). */
static const char *
commit(struct mock_conn *c, uint32_t *uids, struct mock_mailbox **mbp)
{
	struct mock_append *a = c->append;
	struct mock_mailbox *mb;
	const char *why;
	size_t i;

	/* another connection may have deleted it meanwhile */
	if ((mb = mock_store_mailbox_find(c->user, a->mailbox)) == NULL)
		return "[TRYCREATE] Mailbox does not exist";
	if ((why = check_room(c, a->bytes)) != NULL)
		return why;
	for (i = 0; i < a->nmsgs; i++) {
		struct mock_pending *p = &a->msgs[i];
		struct mock_msg *m;

		m = mock_store_msg_add(mb, p->body, &p->flags, p->date);
		uids[i] = m->uid;
		pending_free(p);
	}
	mock_srv.stats.messages += a->nmsgs;
	a->nmsgs = 0;
	a->bytes = 0;
	*mbp = mb;
	mock_notify(mb);
	return NULL;
}

/* Faults after message k is stored: its answer is lost with the
 * connection, never comes, or something no IMAP client can take comes
 * instead. */
static void
stored_then_fault(struct mock_conn *c, uint64_t k)
{
	struct mock_faults *f = &mock_srv.faults;
	uint32_t *uids = calloc(c->append->nmsgs + 1, sizeof(*uids));
	struct mock_mailbox *mb;
	/* with a literal inside: what follows it is the same answer */
	static const char garbage[] =
	    "mappend.999999 OK [APPENDUID 1 99] Append {9}\r\n"
	    "completed NIL NIL\r\n";
	char *line;
	size_t n = (size_t)17 << 20;

	if (uids == NULL)
		exit(1);
	if (c->fail_status == NULL)
		commit(c, uids, &mb);
	free(uids);
	if (f->append_drop_after == k) {
		mock_conn_drop(c);
	} else if (f->append_stall_after == k) {
		mock_conn_stall(c, NULL, 0);
	} else if (f->append_garbage_after == k) {
		/* an answer to a tag nobody sent, that looks like ours */
		mock_conn_stall(c, garbage, sizeof(garbage) - 1);
	} else {
		if ((line = malloc(n)) == NULL)
			exit(1);
		memcpy(line, "* OK ", 5);
		memset(line + 5, 'x', n - 7);
		memcpy(line + n - 2, "\r\n", 2);
		mock_conn_stall(c, line, n);
		free(line);
	}
}

void
mock_append_literal_done(struct mock_conn *c)
{
	struct mock_append *a = c->append;
	struct mock_faults *f = &mock_srv.faults;
	uint64_t k = ++f->count;

	if (f->append_drop == k) {
		/* the message arrived and is forgotten: no answer */
		pending_free(&a->msgs[--a->nmsgs]);
		mock_conn_drop(c);
		return;
	}
	if (f->append_no == k) {
		mock_conn_fail(c, "NO", "%s", f->append_no_text != NULL ?
		    f->append_no_text : "[OVERQUOTA] Quota exceeded (mock)");
		return;
	}
	if (f->append_drop_after == k || f->append_stall_after == k ||
	    f->append_garbage_after == k || f->append_longline_after == k)
		stored_then_fault(c, k);
}

void
mock_cmd_append(struct mock_conn *c)
{
	struct mock_append *a = c->append;
	struct mock_mailbox *mb = NULL;
	uint32_t *uids;
	const char *why;
	char *set;
	size_t need, n = a->nmsgs;

	if (a->groups == 0) {
		mock_conn_tagged(c, "BAD", "APPEND needs a mailbox and a "
		    "message literal");
		return;
	}
	if (mock_conn_nargs(c) != a->group_start) {
		mock_conn_tagged(c, "BAD", "unexpected arguments after the "
		    "message");
		return;
	}
	if ((uids = calloc(n + 1, sizeof(*uids))) == NULL)
		exit(1);
	if ((why = commit(c, uids, &mb)) != NULL) {
		free(uids);
		mock_conn_tagged(c, "NO", "%s", why);
		return;
	}
	if (mock_srv.profile == MOCK_PROFILE_NOUIDPLUS) {
		free(uids);
		mock_conn_tagged(c, "OK", "Append completed");
		return;
	}
	need = mock_uidset_format(uids, n, NULL, 0) + 1;
	if ((set = malloc(need)) == NULL)
		exit(1);
	mock_uidset_format(uids, n, set, need);
	mock_conn_tagged(c, "OK", "[APPENDUID %u %s] Append completed",
	    mb->uidvalidity, set);
	free(set);
	free(uids);
}

/*
 * mock_store.c — the mock's mail store, in memory and shared by every
 * connection: users, their mailboxes, messages with UIDs, flags, internal
 * dates and bodies.  Nothing here talks to a socket; a change that other
 * connections must hear about is announced by the caller (mock_notify).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>

#include "mock.h"

static void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);

	if (p == NULL) {
		fprintf(stderr, "mock_imapd: out of memory\n");
		exit(1);
	}
	return p;
}

static char *
xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL) {
		fprintf(stderr, "mock_imapd: out of memory\n");
		exit(1);
	}
	return p;
}

struct mock_user *
mock_store_user_add(const char *name, const char *pass)
{
	struct mock_user *u, **tail;

	if ((u = mock_store_user_find(name)) != NULL) {
		free(u->pass);
		u->pass = xstrdup(pass);
		return u;
	}
	u = xcalloc(1, sizeof(*u));
	u->name = xstrdup(name);
	u->pass = xstrdup(pass);
	for (tail = &mock_srv.users; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = u;
	mock_store_mailbox_create(u, "INBOX");
	return u;
}

struct mock_user *
mock_store_user_find(const char *name)
{
	struct mock_user *u;

	for (u = mock_srv.users; u != NULL; u = u->next)
		if (strcmp(u->name, name) == 0)
			return u;
	return NULL;
}

bool
mock_store_is_inbox(const char *name)
{
	return strcasecmp(name, "INBOX") == 0;
}

struct mock_mailbox *
mock_store_mailbox_find(struct mock_user *u, const char *name)
{
	struct mock_mailbox *mb;

	if (mock_store_is_inbox(name))
		name = "INBOX";
	for (mb = u->mailboxes; mb != NULL; mb = mb->next)
		if (strcmp(mb->name, name) == 0)
			return mb;
	return NULL;
}

struct mock_mailbox *
mock_store_mailbox_create(struct mock_user *u, const char *name)
{
	struct mock_mailbox *mb, **tail;

	if (mock_store_is_inbox(name))
		name = "INBOX";
	if (mock_store_mailbox_find(u, name) != NULL)
		return NULL;
	mb = xcalloc(1, sizeof(*mb));
	mb->name = xstrdup(name);
	mb->user = u;
	mb->uidvalidity = mock_srv.next_uidvalidity++;
	mb->uidnext = 1;
	for (tail = &u->mailboxes; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = mb;
	return mb;
}

static void
msg_free(struct mock_msg *m)
{
	mock_flags_free(&m->flags);
	mock_store_body_unref(m->body);
	free(m);
}

static void
mailbox_free(struct mock_mailbox *mb)
{
	size_t i;

	for (i = 0; i < mb->nmsgs; i++) {
		mb->user->usage -= mb->msgs[i]->body->len;
		msg_free(mb->msgs[i]);
	}
	free(mb->msgs);
	free(mb->name);
	free(mb);
}

void
mock_store_mailbox_delete(struct mock_mailbox *mb)
{
	struct mock_mailbox **pp;

	for (pp = &mb->user->mailboxes; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == mb) {
			*pp = mb->next;
			break;
		}
	}
	mailbox_free(mb);
}

size_t
mock_store_lower_bound(const struct mock_mailbox *mb, uint32_t uid)
{
	size_t lo = 0, hi = mb->nmsgs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (mb->msgs[mid]->uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct mock_msg *
mock_store_msg_find(const struct mock_mailbox *mb, uint32_t uid)
{
	size_t i = mock_store_lower_bound(mb, uid);

	if (i < mb->nmsgs && mb->msgs[i]->uid == uid)
		return mb->msgs[i];
	return NULL;
}

struct mock_body *
mock_store_body_new(size_t len)
{
	struct mock_body *b = malloc(sizeof(*b) + len + 1);

	if (b == NULL)
		return NULL;
	b->refs = 1;
	b->len = len;
	b->data[len] = '\0';
	return b;
}

void
mock_store_body_ref(struct mock_body *b)
{
	b->refs++;
}

void
mock_store_body_unref(struct mock_body *b)
{
	if (b != NULL && --b->refs == 0)
		free(b);
}

static void
date_now(char out[32])
{
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	if (strftime(out, 32, "%d-%b-%Y %H:%M:%S %z", &tm) == 0)
		strcpy(out, "01-Jan-1970 00:00:00 +0000");
}

struct mock_msg *
mock_store_msg_add(struct mock_mailbox *mb, struct mock_body *body,
    struct mock_flags *flags, const char *date)
{
	struct mock_msg *m = xcalloc(1, sizeof(*m));

	if (mb->nmsgs == mb->cap) {
		size_t cap = mb->cap ? mb->cap * 2 : 16;
		struct mock_msg **n = realloc(mb->msgs, cap * sizeof(*n));

		if (n == NULL) {
			fprintf(stderr, "mock_imapd: out of memory\n");
			exit(1);
		}
		mb->msgs = n;
		mb->cap = cap;
	}
	m->uid = mb->uidnext++;
	m->flags = *flags;
	memset(flags, 0, sizeof(*flags));
	if (date != NULL && date[0] != '\0')
		snprintf(m->date, sizeof(m->date), "%s", date);
	else
		date_now(m->date);
	mock_store_body_ref(body);
	m->body = body;
	mb->msgs[mb->nmsgs++] = m;
	mb->user->usage += body->len;
	return m;
}

void
mock_store_msg_expunge(struct mock_mailbox *mb, size_t i)
{
	struct mock_msg *m = mb->msgs[i];

	mb->user->usage -= m->body->len;
	memmove(mb->msgs + i, mb->msgs + i + 1,
	    (mb->nmsgs - i - 1) * sizeof(*mb->msgs));
	mb->nmsgs--;
	mb->expunges++;
	msg_free(m);
}

void
mock_store_flags_changed(struct mock_mailbox *mb, struct mock_msg *m,
    uint64_t conn_id)
{
	m->modseq = ++mock_srv.modseq;
	m->changer = conn_id;
	mb->modseq = m->modseq;
}

void
mock_store_free(void)
{
	struct mock_user *u, *un;
	struct mock_mailbox *mb, *mn;

	for (u = mock_srv.users; u != NULL; u = un) {
		un = u->next;
		for (mb = u->mailboxes; mb != NULL; mb = mn) {
			mn = mb->next;
			mailbox_free(mb);
		}
		free(u->name);
		free(u->pass);
		free(u);
	}
	mock_srv.users = NULL;
}

/* ---- flags ---- */

static const struct {
	const char *name;
	unsigned bit;
} sys_flags[] = {
	{ "\\Answered", MOCK_F_ANSWERED },
	{ "\\Flagged", MOCK_F_FLAGGED },
	{ "\\Deleted", MOCK_F_DELETED },
	{ "\\Seen", MOCK_F_SEEN },
	{ "\\Draft", MOCK_F_DRAFT },
};

void
mock_flags_free(struct mock_flags *f)
{
	unsigned i;

	for (i = 0; i < f->nkw; i++)
		free(f->kw[i]);
	free(f->kw);
	memset(f, 0, sizeof(*f));
}

int
mock_flags_copy(struct mock_flags *dst, const struct mock_flags *src)
{
	unsigned i;

	memset(dst, 0, sizeof(*dst));
	dst->sys = src->sys;
	for (i = 0; i < src->nkw; i++)
		if (mock_flags_add_kw(dst, src->kw[i]) < 0)
			return -1;
	return 0;
}

bool
mock_flags_has_kw(const struct mock_flags *f, const char *kw)
{
	unsigned i;

	for (i = 0; i < f->nkw; i++)
		if (strcasecmp(f->kw[i], kw) == 0)
			return true;
	return false;
}

int
mock_flags_add_kw(struct mock_flags *f, const char *kw)
{
	char **n;

	if (mock_flags_has_kw(f, kw))
		return 0;
	if (f->nkw == MOCK_KEYWORDS_MAX)
		return -1;
	if ((n = realloc(f->kw, (f->nkw + 1) * sizeof(*n))) == NULL)
		return -1;
	f->kw = n;
	f->kw[f->nkw++] = xstrdup(kw);
	return 0;
}

static bool
flags_remove_kw(struct mock_flags *f, const char *kw)
{
	unsigned i;

	for (i = 0; i < f->nkw; i++) {
		if (strcasecmp(f->kw[i], kw) == 0) {
			free(f->kw[i]);
			f->kw[i] = f->kw[--f->nkw];
			return true;
		}
	}
	return false;
}

static bool
flags_equal(const struct mock_flags *a, const struct mock_flags *b)
{
	unsigned i;

	if (a->sys != b->sys || a->nkw != b->nkw)
		return false;
	for (i = 0; i < a->nkw; i++)
		if (!mock_flags_has_kw(b, a->kw[i]))
			return false;
	return true;
}

int
mock_flags_apply(struct mock_flags *f, const struct mock_flags *with, int op)
{
	unsigned i;
	bool changed = false;

	if (op == 0) {
		struct mock_flags n;

		if (flags_equal(f, with))
			return 0;
		if (mock_flags_copy(&n, with) < 0) {
			mock_flags_free(&n);
			return -1;
		}
		mock_flags_free(f);
		*f = n;
		return 1;
	}
	if (op == '+') {
		if ((f->sys | with->sys) != f->sys)
			changed = true;
		f->sys |= with->sys;
		for (i = 0; i < with->nkw; i++) {
			if (mock_flags_has_kw(f, with->kw[i]))
				continue;
			if (mock_flags_add_kw(f, with->kw[i]) < 0)
				return -1;
			changed = true;
		}
		return changed;
	}
	if (f->sys & with->sys)
		changed = true;
	f->sys &= ~with->sys;
	for (i = 0; i < with->nkw; i++)
		if (flags_remove_kw(f, with->kw[i]))
			changed = true;
	return changed;
}

void
mock_flags_format(struct evbuffer *out, const struct mock_flags *f)
{
	size_t i;
	bool first = true;

	evbuffer_add(out, "(", 1);
	for (i = 0; i < sizeof(sys_flags) / sizeof(sys_flags[0]); i++) {
		if (!(f->sys & sys_flags[i].bit))
			continue;
		evbuffer_add_printf(out, "%s%s", first ? "" : " ",
		    sys_flags[i].name);
		first = false;
	}
	for (i = 0; i < f->nkw; i++) {
		evbuffer_add_printf(out, "%s%s", first ? "" : " ", f->kw[i]);
		first = false;
	}
	evbuffer_add(out, ")", 1);
}

int
mock_flag_parse(const char *s, unsigned *bit)
{
	size_t i;

	if (s[0] == '\\') {
		for (i = 0; i < sizeof(sys_flags) / sizeof(sys_flags[0]); i++) {
			if (strcasecmp(s, sys_flags[i].name) == 0) {
				*bit = sys_flags[i].bit;
				return 1;
			}
		}
		return -1;	/* \Recent and unknown system flags */
	}
	if (s[0] == '\0' || strlen(s) > 100)
		return -1;
	for (i = 0; s[i] != '\0'; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch <= 0x20 || ch >= 0x7f || strchr("(){%*\"\\]", ch))
			return -1;
	}
	return 0;
}

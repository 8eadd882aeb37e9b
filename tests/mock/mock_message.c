/*
 * mock_message.c — commands on the messages of the selected mailbox:
 * FETCH, STORE, SEARCH, COPY (and their UID forms), EXPUNGE, UID EXPUNGE
 * and CLOSE.  Sequence numbers are the connection's view; bodies go out as
 * references to the stored bytes, so a large FETCH costs no copy.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "mock.h"

static void
oom(void)
{
	fprintf(stderr, "mock_imapd: out of memory\n");
	exit(1);
}

/* ---- flags and sets ---- */

static int
flag_into(const char *s, struct mock_flags *f, const char **why)
{
	unsigned bit;

	switch (mock_flag_parse(s, &bit)) {
	case 1:
		f->sys |= bit;
		return 0;
	case 0:
		if (mock_flags_add_kw(f, s) < 0) {
			*why = "too many keywords";
			return -1;
		}
		return 0;
	default:
		*why = "invalid flag";
		return -1;
	}
}

int
mock_parse_flags(struct mock_conn *c, size_t *i, bool need_parens,
    struct mock_flags *f, const char **why)
{
	struct mock_arg *a = mock_conn_arg(c, *i);

	if (a != NULL && a->kind == MOCK_ARG_LPAREN) {
		for ((*i)++; (a = mock_conn_arg(c, *i)) != NULL; (*i)++) {
			if (a->kind == MOCK_ARG_RPAREN) {
				(*i)++;
				return 0;
			}
			if (a->kind != MOCK_ARG_ATOM) {
				*why = "invalid flag list";
				return -1;
			}
			if (flag_into(a->s, f, why) < 0)
				return -1;
		}
		*why = "unterminated flag list";
		return -1;
	}
	if (need_parens || a == NULL || a->kind != MOCK_ARG_ATOM) {
		*why = "flag list expected";
		return -1;
	}
	for (; (a = mock_conn_arg(c, *i)) != NULL && a->kind == MOCK_ARG_ATOM;
	    (*i)++)
		if (flag_into(a->s, f, why) < 0)
			return -1;
	return 0;
}

static uint32_t
view_star(const struct mock_conn *c, bool uid)
{
	if (!uid)
		return (uint32_t)c->nview;
	return c->nview ? c->view[c->nview - 1] : 0;
}

/* Parse a set argument against the view. */
static int
parse_set(struct mock_conn *c, const struct mock_arg *a, bool uid,
    struct mock_seqset *set, const char **why)
{
	if (a == NULL || a->kind != MOCK_ARG_ATOM) {
		*why = "sequence set expected";
		return -1;
	}
	if (mock_seqset_parse(a->s, a->len, view_star(c, uid), set, why) < 0)
		return -1;
	if (!uid && (c->nview == 0 || mock_seqset_max(set) > c->nview)) {
		mock_seqset_free(set);
		*why = "invalid message sequence number";
		return -1;
	}
	return 0;
}

static bool
in_set(const struct mock_conn *c, const struct mock_seqset *set, size_t i,
    bool uid)
{
	return mock_seqset_contains(set, uid ? c->view[i] : (uint32_t)(i + 1));
}

/* ---- message text ---- */

static size_t
header_len(const struct mock_body *b)
{
	const char *p = memmem(b->data, b->len, "\r\n\r\n", 4);

	if (p != NULL)
		return (size_t)(p - b->data) + 4;
	if ((p = memmem(b->data, b->len, "\n\n", 2)) != NULL)
		return (size_t)(p - b->data) + 2;
	return b->len;
}

static bool
ci_contains(const char *hay, size_t hlen, const char *needle)
{
	size_t nlen = strlen(needle), i, j;

	if (nlen == 0)
		return true;
	for (i = 0; i + nlen <= hlen; i++) {
		for (j = 0; j < nlen; j++)
			if (tolower((unsigned char)hay[i + j]) !=
			    tolower((unsigned char)needle[j]))
				break;
		if (j == nlen)
			return true;
	}
	return false;
}

/* A header field whose (unfolded) value contains value. */
static bool
header_has(const struct mock_body *b, const char *field, const char *value)
{
	const char *p = b->data, *end = b->data + header_len(b);
	size_t flen = strlen(field);

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *next = eol ? eol + 1 : end;

		if ((size_t)(end - p) > flen && p[flen] == ':' &&
		    strncasecmp(p, field, flen) == 0) {
			const char *v = p + flen + 1;

			/* continuation lines start with a blank */
			while (next < end && (*next == ' ' || *next == '\t')) {
				eol = memchr(next, '\n', (size_t)(end - next));
				next = eol ? eol + 1 : end;
			}
			if (ci_contains(v, (size_t)(next - v), value))
				return true;
		}
		p = next;
	}
	return false;
}

static void
body_cleanup(const void *data, size_t len, void *arg)
{
	(void)data;
	(void)len;
	mock_store_body_unref(arg);
}

static void
put_body(struct evbuffer *out, struct mock_body *b, size_t off, size_t len)
{
	if (len == 0)
		return;
	mock_store_body_ref(b);
	if (evbuffer_add_reference(out, b->data + off, len, body_cleanup,
	    b) < 0) {
		mock_store_body_unref(b);
		evbuffer_add(out, b->data + off, len);
	}
}

/* ---- FETCH ---- */

enum fetch_kind { FI_UID, FI_FLAGS, FI_DATE, FI_SIZE, FI_BODY };
enum fetch_section { SEC_ALL, SEC_HEADER, SEC_TEXT };

struct fetch_item {
	enum fetch_kind kind;
	enum fetch_section section;
	bool peek;
	bool partial;
	uint64_t poff, plen;
	char name[32];		/* how the item is named in the response */
};

#define FETCH_ITEMS_MAX 32

static int
parse_body_item(const char *s, struct fetch_item *it)
{
	const char *p, *close;
	size_t slen;

	it->kind = FI_BODY;
	if (strncasecmp(s, "BODY.PEEK[", 10) == 0) {
		it->peek = true;
		p = s + 10;
	} else if (strncasecmp(s, "BODY[", 5) == 0) {
		p = s + 5;
	} else {
		return -1;
	}
	if ((close = strchr(p, ']')) == NULL)
		return -1;
	slen = (size_t)(close - p);
	if (slen == 0)
		it->section = SEC_ALL;
	else if (slen == 6 && strncasecmp(p, "HEADER", 6) == 0)
		it->section = SEC_HEADER;
	else if (slen == 4 && strncasecmp(p, "TEXT", 4) == 0)
		it->section = SEC_TEXT;
	else
		return -1;
	snprintf(it->name, sizeof(it->name), "BODY[%s]",
	    it->section == SEC_ALL ? "" :
	    it->section == SEC_HEADER ? "HEADER" : "TEXT");
	p = close + 1;
	if (*p == '\0')
		return 0;
	/* <offset.length> */
	{
		unsigned long long o, l;
		int used = 0;

		if (sscanf(p, "<%llu.%llu>%n", &o, &l, &used) != 2 ||
		    p[used] != '\0' || l == 0)
			return -1;
		it->partial = true;
		it->poff = o;
		it->plen = l;
		snprintf(it->name + strlen(it->name),
		    sizeof(it->name) - strlen(it->name), "<%llu>", o);
	}
	return 0;
}

static int
parse_item(const char *s, struct fetch_item *items, size_t *n)
{
	struct fetch_item it;

	memset(&it, 0, sizeof(it));
	if (strcasecmp(s, "FAST") == 0) {
		return parse_item("FLAGS", items, n) < 0 ||
		    parse_item("INTERNALDATE", items, n) < 0 ||
		    parse_item("RFC822.SIZE", items, n) < 0 ? -1 : 0;
	}
	if (*n == FETCH_ITEMS_MAX)
		return -1;
	if (strcasecmp(s, "UID") == 0) {
		it.kind = FI_UID;
	} else if (strcasecmp(s, "FLAGS") == 0) {
		it.kind = FI_FLAGS;
	} else if (strcasecmp(s, "INTERNALDATE") == 0) {
		it.kind = FI_DATE;
	} else if (strcasecmp(s, "RFC822.SIZE") == 0) {
		it.kind = FI_SIZE;
	} else if (strcasecmp(s, "RFC822") == 0) {
		it.kind = FI_BODY;
		strcpy(it.name, "RFC822");
	} else if (strcasecmp(s, "RFC822.HEADER") == 0) {
		it.kind = FI_BODY;
		it.section = SEC_HEADER;
		it.peek = true;
		strcpy(it.name, "RFC822.HEADER");
	} else if (strcasecmp(s, "RFC822.TEXT") == 0) {
		it.kind = FI_BODY;
		it.section = SEC_TEXT;
		strcpy(it.name, "RFC822.TEXT");
	} else if (parse_body_item(s, &it) < 0) {
		return -1;
	}
	items[(*n)++] = it;
	return 0;
}

static void
fetch_one(struct mock_conn *c, size_t idx, struct mock_msg *m,
    const struct fetch_item *items, size_t n, bool uid)
{
	struct evbuffer *out = c->resp;
	bool want_uid = uid, want_flags = false, seen = false, first = true;
	size_t i;

	for (i = 0; i < n; i++) {
		if (items[i].kind == FI_UID)
			want_uid = false;	/* already asked for */
		if (items[i].kind == FI_FLAGS)
			want_flags = true;
		if (items[i].kind == FI_BODY && !items[i].peek)
			seen = true;
	}
	if (seen && !c->readonly && !(m->flags.sys & MOCK_F_SEEN)) {
		m->flags.sys |= MOCK_F_SEEN;
		mock_store_flags_changed(c->mbox, m, c->id);
	} else {
		seen = false;
	}
	evbuffer_add_printf(out, "* %zu FETCH (", idx + 1);
	if (want_uid) {
		evbuffer_add_printf(out, "UID %u", m->uid);
		first = false;
	}
	for (i = 0; i < n; i++) {
		const struct fetch_item *it = &items[i];
		size_t off = 0, len = m->body->len, h;

		if (!first)
			evbuffer_add(out, " ", 1);
		first = false;
		switch (it->kind) {
		case FI_UID:
			evbuffer_add_printf(out, "UID %u", m->uid);
			break;
		case FI_FLAGS:
			evbuffer_add_printf(out, "FLAGS ");
			mock_flags_format(out, &m->flags);
			break;
		case FI_DATE:
			evbuffer_add_printf(out, "INTERNALDATE \"%s\"", m->date);
			break;
		case FI_SIZE:
			evbuffer_add_printf(out, "RFC822.SIZE %zu",
			    m->body->len);
			break;
		case FI_BODY:
			h = header_len(m->body);
			if (it->section == SEC_HEADER) {
				len = h;
			} else if (it->section == SEC_TEXT) {
				off = h;
				len = m->body->len - h;
			}
			if (it->partial) {
				if (it->poff >= len) {
					off += len;
					len = 0;
				} else {
					off += (size_t)it->poff;
					len -= (size_t)it->poff;
					if (it->plen < len)
						len = (size_t)it->plen;
				}
			}
			evbuffer_add_printf(out, "%s {%zu}\r\n", it->name, len);
			put_body(out, m->body, off, len);
			break;
		}
	}
	if (seen && !want_flags) {
		evbuffer_add_printf(out, "%sFLAGS ", first ? "" : " ");
		mock_flags_format(out, &m->flags);
	}
	evbuffer_add(out, ")\r\n", 3);
}

static void
fetch(struct mock_conn *c, bool uid)
{
	struct fetch_item items[FETCH_ITEMS_MAX];
	struct mock_seqset set;
	struct mock_arg *a;
	size_t n = 0, i, nargs = mock_conn_nargs(c);
	const char *why;
	bool changed = false;

	if (parse_set(c, mock_conn_arg(c, 0), uid, &set, &why) < 0) {
		mock_conn_tagged(c, "BAD", "%s", why);
		return;
	}
	a = mock_conn_arg(c, 1);
	if (a != NULL && a->kind == MOCK_ARG_ATOM && nargs == 2) {
		if (parse_item(a->s, items, &n) < 0)
			goto bad;
	} else if (a != NULL && a->kind == MOCK_ARG_LPAREN &&
	    mock_conn_arg(c, nargs - 1)->kind == MOCK_ARG_RPAREN &&
	    nargs > 3) {
		for (i = 2; i < nargs - 1; i++) {
			a = mock_conn_arg(c, i);
			if (a->kind != MOCK_ARG_ATOM ||
			    parse_item(a->s, items, &n) < 0)
				goto bad;
		}
	} else {
		goto bad;
	}
	for (i = 0; i < c->nview; i++) {
		struct mock_msg *m;
		uint64_t before;

		if (!in_set(c, &set, i, uid))
			continue;
		if ((m = mock_store_msg_find(c->mbox, c->view[i])) == NULL)
			continue;	/* expunged meanwhile */
		before = m->modseq;
		fetch_one(c, i, m, items, n, uid);
		changed |= m->modseq != before;
	}
	mock_seqset_free(&set);
	if (changed)
		mock_notify(c->mbox);
	mock_conn_tagged(c, "OK", "%sFETCH completed", uid ? "UID " : "");
	return;
bad:
	mock_seqset_free(&set);
	mock_conn_tagged(c, "BAD", "invalid or unsupported FETCH items");
}

void
mock_cmd_fetch(struct mock_conn *c)
{
	fetch(c, false);
}

void
mock_cmd_uid_fetch(struct mock_conn *c)
{
	fetch(c, true);
}

/* ---- STORE ---- */

static void
store(struct mock_conn *c, bool uid)
{
	struct mock_seqset set;
	struct mock_flags f;
	struct mock_arg *item = mock_conn_arg(c, 1);
	const char *why = NULL, *name;
	size_t i, argi = 2;
	bool silent = false, changed = false, limit = false;
	int op = 0;

	memset(&f, 0, sizeof(f));
	if (parse_set(c, mock_conn_arg(c, 0), uid, &set, &why) < 0) {
		mock_conn_tagged(c, "BAD", "%s", why);
		return;
	}
	if (item == NULL || item->kind != MOCK_ARG_ATOM)
		goto bad;
	name = item->s;
	if (*name == '+' || *name == '-')
		op = *name++;
	if (strncasecmp(name, "FLAGS", 5) != 0)
		goto bad;
	if (strcasecmp(name + 5, ".SILENT") == 0)
		silent = true;
	else if (name[5] != '\0')
		goto bad;
	if (mock_parse_flags(c, &argi, false, &f, &why) < 0 ||
	    argi != mock_conn_nargs(c))
		goto bad;
	if (c->readonly) {
		mock_seqset_free(&set);
		mock_flags_free(&f);
		mock_conn_tagged(c, "NO", "[READ-ONLY] Mailbox is read-only");
		return;
	}
	for (i = 0; i < c->nview; i++) {
		struct mock_msg *m;
		int r;

		if (!in_set(c, &set, i, uid))
			continue;
		if ((m = mock_store_msg_find(c->mbox, c->view[i])) == NULL)
			continue;
		if ((r = mock_flags_apply(&m->flags, &f, op)) < 0)
			limit = true;
		if (r != 0) {
			mock_store_flags_changed(c->mbox, m, c->id);
			changed = true;
		}
		if (silent)
			continue;
		evbuffer_add_printf(c->resp, "* %zu FETCH (", i + 1);
		if (uid)
			evbuffer_add_printf(c->resp, "UID %u ", m->uid);
		evbuffer_add_printf(c->resp, "FLAGS ");
		mock_flags_format(c->resp, &m->flags);
		evbuffer_add(c->resp, ")\r\n", 3);
	}
	mock_seqset_free(&set);
	mock_flags_free(&f);
	if (changed)
		mock_notify(c->mbox);
	if (limit)
		mock_conn_tagged(c, "NO", "[LIMIT] too many keywords");
	else
		mock_conn_tagged(c, "OK", "%sSTORE completed",
		    uid ? "UID " : "");
	return;
bad:
	mock_seqset_free(&set);
	mock_flags_free(&f);
	mock_conn_tagged(c, "BAD", "%s", why ? why : "invalid STORE arguments");
}

void
mock_cmd_store(struct mock_conn *c)
{
	store(c, false);
}

void
mock_cmd_uid_store(struct mock_conn *c)
{
	store(c, true);
}

/* ---- SEARCH ---- */

enum skind {
	SK_ALL, SK_NONE, SK_FLAG, SK_UNFLAG, SK_KEYWORD, SK_UNKEYWORD,
	SK_LARGER, SK_SMALLER, SK_UID, SK_SEQ, SK_NOT, SK_OR, SK_AND,
	SK_HEADER, SK_BODY, SK_TEXT,
};

struct skey {
	enum skind kind;
	unsigned bit;
	uint64_t n;
	const char *s, *s2;	/* point into the command's arguments */
	struct mock_seqset set;
	int a, b;		/* children */
};

struct search {
	struct mock_conn *c;
	bool uid;
	struct skey *k;
	size_t nk, capk;
	size_t i;		/* next argument */
	unsigned depth;
	const char *why;
};

#define SEARCH_DEPTH_MAX 32

static int
skey_new(struct search *s, enum skind kind)
{
	if (s->nk == s->capk) {
		size_t cap = s->capk ? s->capk * 2 : 16;
		struct skey *n = realloc(s->k, cap * sizeof(*n));

		if (n == NULL)
			oom();
		s->k = n;
		s->capk = cap;
	}
	memset(&s->k[s->nk], 0, sizeof(s->k[0]));
	s->k[s->nk].kind = kind;
	return (int)s->nk++;
}

static int search_list(struct search *s, bool paren);

static const char *
search_string(struct search *s)
{
	struct mock_arg *a = mock_conn_arg(s->c, s->i);

	if (!mock_arg_is_string(a)) {
		s->why = "search string expected";
		return NULL;
	}
	s->i++;
	return a->s;
}

static int
search_key(struct search *s)
{
	static const struct {
		const char *name;
		unsigned bit;
		bool set;
	} flag_keys[] = {
		{ "ANSWERED", MOCK_F_ANSWERED, true },
		{ "DELETED", MOCK_F_DELETED, true },
		{ "DRAFT", MOCK_F_DRAFT, true },
		{ "FLAGGED", MOCK_F_FLAGGED, true },
		{ "SEEN", MOCK_F_SEEN, true },
		{ "UNANSWERED", MOCK_F_ANSWERED, false },
		{ "UNDELETED", MOCK_F_DELETED, false },
		{ "UNDRAFT", MOCK_F_DRAFT, false },
		{ "UNFLAGGED", MOCK_F_FLAGGED, false },
		{ "UNSEEN", MOCK_F_SEEN, false },
	};
	static const char *const header_keys[] = { "FROM", "TO", "CC", "BCC",
	    "SUBJECT" };
	struct mock_arg *a = mock_conn_arg(s->c, s->i);
	int k, x;
	size_t j;

	if (a == NULL) {
		s->why = "search key expected";
		return -1;
	}
	if (++s->depth > SEARCH_DEPTH_MAX) {
		s->why = "search keys nested too deeply";
		return -1;
	}
	s->i++;
	if (a->kind == MOCK_ARG_LPAREN) {
		k = search_list(s, true);
		goto out;
	}
	if (a->kind != MOCK_ARG_ATOM) {
		s->why = "search key expected";
		return -1;
	}
	for (j = 0; j < sizeof(flag_keys) / sizeof(flag_keys[0]); j++) {
		if (strcasecmp(a->s, flag_keys[j].name) == 0) {
			k = skey_new(s, flag_keys[j].set ? SK_FLAG : SK_UNFLAG);
			s->k[k].bit = flag_keys[j].bit;
			goto out;
		}
	}
	for (j = 0; j < sizeof(header_keys) / sizeof(header_keys[0]); j++) {
		if (strcasecmp(a->s, header_keys[j]) == 0) {
			k = skey_new(s, SK_HEADER);
			s->k[k].s = header_keys[j];
			if ((s->k[k].s2 = search_string(s)) == NULL)
				return -1;
			goto out;
		}
	}
	if (mock_arg_is(a, "ALL") || mock_arg_is(a, "OLD")) {
		k = skey_new(s, SK_ALL);
	} else if (mock_arg_is(a, "NEW") || mock_arg_is(a, "RECENT")) {
		k = skey_new(s, SK_NONE);	/* nothing is \Recent here */
	} else if (mock_arg_is(a, "KEYWORD") || mock_arg_is(a, "UNKEYWORD")) {
		k = skey_new(s, mock_arg_is(a, "KEYWORD") ? SK_KEYWORD :
		    SK_UNKEYWORD);
		if ((s->k[k].s = search_string(s)) == NULL)
			return -1;
	} else if (mock_arg_is(a, "LARGER") || mock_arg_is(a, "SMALLER")) {
		k = skey_new(s, mock_arg_is(a, "LARGER") ? SK_LARGER :
		    SK_SMALLER);
		if (mock_arg_number(mock_conn_arg(s->c, s->i), &s->k[k].n) < 0) {
			s->why = "number expected";
			return -1;
		}
		s->i++;
	} else if (mock_arg_is(a, "HEADER")) {
		k = skey_new(s, SK_HEADER);
		if ((s->k[k].s = search_string(s)) == NULL ||
		    (s->k[k].s2 = search_string(s)) == NULL)
			return -1;
	} else if (mock_arg_is(a, "BODY") || mock_arg_is(a, "TEXT")) {
		k = skey_new(s, mock_arg_is(a, "BODY") ? SK_BODY : SK_TEXT);
		if ((s->k[k].s = search_string(s)) == NULL)
			return -1;
	} else if (mock_arg_is(a, "UID")) {
		k = skey_new(s, SK_UID);
		if (parse_set(s->c, mock_conn_arg(s->c, s->i), true,
		    &s->k[k].set, &s->why) < 0)
			return -1;
		s->i++;
	} else if (mock_arg_is(a, "NOT")) {
		k = skey_new(s, SK_NOT);
		if ((x = search_key(s)) < 0)
			return -1;
		s->k[k].a = x;
	} else if (mock_arg_is(a, "OR")) {
		k = skey_new(s, SK_OR);
		if ((x = search_key(s)) < 0)
			return -1;
		s->k[k].a = x;
		if ((x = search_key(s)) < 0)
			return -1;
		s->k[k].b = x;
	} else if (isdigit((unsigned char)a->s[0]) || a->s[0] == '*') {
		k = skey_new(s, SK_SEQ);
		if (parse_set(s->c, a, false, &s->k[k].set, &s->why) < 0)
			return -1;
	} else {
		s->why = "unsupported search key";
		return -1;
	}
out:
	s->depth--;
	return k;
}

/* Keys ANDed, up to the end of the command or the closing ")". */
static int
search_list(struct search *s, bool paren)
{
	int all = -1, k, and;

	for (;;) {
		struct mock_arg *a = mock_conn_arg(s->c, s->i);

		if (a == NULL) {
			if (paren) {
				s->why = "unbalanced parentheses";
				return -1;
			}
			break;
		}
		if (a->kind == MOCK_ARG_RPAREN) {
			if (!paren) {
				s->why = "unbalanced parentheses";
				return -1;
			}
			s->i++;
			break;
		}
		if ((k = search_key(s)) < 0)
			return -1;
		if (all < 0) {
			all = k;
		} else {
			and = skey_new(s, SK_AND);
			s->k[and].a = all;
			s->k[and].b = k;
			all = and;
		}
	}
	if (all < 0) {
		s->why = "search key expected";
		return -1;
	}
	return all;
}

static bool
search_match(const struct search *s, int k, const struct mock_msg *m,
    size_t idx)
{
	const struct skey *key = &s->k[k];
	const struct mock_body *b = m->body;
	size_t h;

	switch (key->kind) {
	case SK_ALL:
		return true;
	case SK_NONE:
		return false;
	case SK_FLAG:
		return (m->flags.sys & key->bit) != 0;
	case SK_UNFLAG:
		return (m->flags.sys & key->bit) == 0;
	case SK_KEYWORD:
		return mock_flags_has_kw(&m->flags, key->s);
	case SK_UNKEYWORD:
		return !mock_flags_has_kw(&m->flags, key->s);
	case SK_LARGER:
		return b->len > key->n;
	case SK_SMALLER:
		return b->len < key->n;
	case SK_UID:
		return mock_seqset_contains(&key->set, m->uid);
	case SK_SEQ:
		return mock_seqset_contains(&key->set, (uint32_t)(idx + 1));
	case SK_NOT:
		return !search_match(s, key->a, m, idx);
	case SK_OR:
		return search_match(s, key->a, m, idx) ||
		    search_match(s, key->b, m, idx);
	case SK_AND:
		return search_match(s, key->a, m, idx) &&
		    search_match(s, key->b, m, idx);
	case SK_HEADER:
		return header_has(b, key->s, key->s2);
	case SK_BODY:
		h = header_len(b);
		return ci_contains(b->data + h, b->len - h, key->s);
	case SK_TEXT:
		return ci_contains(b->data, b->len, key->s);
	}
	return false;
}

static void
search(struct mock_conn *c, bool uid)
{
	struct search s;
	int root;
	size_t i;

	memset(&s, 0, sizeof(s));
	s.c = c;
	s.uid = uid;
	if (mock_arg_is(mock_conn_arg(c, 0), "CHARSET")) {
		struct mock_arg *cs = mock_conn_arg(c, 1);

		if (!mock_arg_is_string(cs) || (strcasecmp(cs->s, "UTF-8") != 0 &&
		    strcasecmp(cs->s, "US-ASCII") != 0)) {
			mock_conn_tagged(c, "NO", "[BADCHARSET (UTF-8 US-ASCII)] "
			    "unsupported charset");
			return;
		}
		s.i = 2;
	}
	root = search_list(&s, false);
	if (root >= 0) {
		evbuffer_add_printf(c->resp, "* SEARCH");
		for (i = 0; i < c->nview; i++) {
			struct mock_msg *m = mock_store_msg_find(c->mbox,
			    c->view[i]);

			if (m != NULL && search_match(&s, root, m, i))
				evbuffer_add_printf(c->resp, " %u",
				    uid ? m->uid : (uint32_t)(i + 1));
		}
		evbuffer_add(c->resp, "\r\n", 2);
	}
	for (i = 0; i < s.nk; i++)
		mock_seqset_free(&s.k[i].set);
	free(s.k);
	if (root < 0)
		mock_conn_tagged(c, "BAD", "%s", s.why);
	else
		mock_conn_tagged(c, "OK", "%sSEARCH completed",
		    uid ? "UID " : "");
}

void
mock_cmd_search(struct mock_conn *c)
{
	search(c, false);
}

void
mock_cmd_uid_search(struct mock_conn *c)
{
	search(c, true);
}

/* ---- COPY ---- */

static void
copy(struct mock_conn *c, bool uid)
{
	struct mock_seqset set;
	struct mock_mailbox *dst;
	struct mock_arg *name = mock_conn_arg(c, 1);
	const char *why;
	uint32_t *src_uids, *dst_uids;
	size_t i, n = 0;
	uint64_t bytes = 0;

	if (!mock_arg_is_string(name) || mock_conn_nargs(c) != 2) {
		mock_conn_tagged(c, "BAD", "COPY needs a set and a mailbox");
		return;
	}
	if (parse_set(c, mock_conn_arg(c, 0), uid, &set, &why) < 0) {
		mock_conn_tagged(c, "BAD", "%s", why);
		return;
	}
	if ((dst = mock_store_mailbox_find(c->user, name->s)) == NULL) {
		mock_seqset_free(&set);
		mock_conn_tagged(c, "NO", "[TRYCREATE] Mailbox does not exist");
		return;
	}
	src_uids = calloc(c->nview + 1, sizeof(*src_uids));
	dst_uids = calloc(c->nview + 1, sizeof(*dst_uids));
	if (src_uids == NULL || dst_uids == NULL)
		oom();
	for (i = 0; i < c->nview; i++) {
		struct mock_msg *m;

		if (in_set(c, &set, i, uid) &&
		    (m = mock_store_msg_find(c->mbox, c->view[i])) != NULL) {
			src_uids[n++] = m->uid;
			bytes += m->body->len;
		}
	}
	mock_seqset_free(&set);
	if (mock_srv.quota > 0 && c->user->usage + bytes > mock_srv.quota) {
		free(src_uids);
		free(dst_uids);
		mock_conn_tagged(c, "NO", "[OVERQUOTA] Quota exceeded");
		return;
	}
	for (i = 0; i < n; i++) {
		struct mock_msg *m = mock_store_msg_find(c->mbox, src_uids[i]);
		struct mock_flags f;

		if (mock_flags_copy(&f, &m->flags) < 0)
			oom();
		dst_uids[i] = mock_store_msg_add(dst, m->body, &f, m->date)->uid;
	}
	if (n > 0)
		mock_notify(dst);
	if (n > 0 && mock_srv.profile != MOCK_PROFILE_NOUIDPLUS) {
		size_t ls = mock_uidset_format(src_uids, n, NULL, 0) + 1;
		size_t ld = mock_uidset_format(dst_uids, n, NULL, 0) + 1;
		char *s = malloc(ls), *d = malloc(ld);

		if (s == NULL || d == NULL)
			oom();
		mock_uidset_format(src_uids, n, s, ls);
		mock_uidset_format(dst_uids, n, d, ld);
		mock_conn_tagged(c, "OK", "[COPYUID %u %s %s] %sCOPY completed",
		    dst->uidvalidity, s, d, uid ? "UID " : "");
		free(s);
		free(d);
	} else {
		mock_conn_tagged(c, "OK", "%sCOPY completed", uid ? "UID " : "");
	}
	free(src_uids);
	free(dst_uids);
}

/* Faults for the staging of uploads to servers without UIDPLUS: the
 * connection breaks before the COPY runs, or after it ran. */
void
mock_cmd_copy(struct mock_conn *c)
{
	struct mock_faults *f = &mock_srv.faults;

	if (f->copy_drop) {
		f->copy_drop = false;
		mock_conn_drop(c);
		return;
	}
	copy(c, false);
	if (f->copy_drop_after) {
		f->copy_drop_after = false;
		mock_conn_drop(c);
	}
}

void
mock_cmd_uid_copy(struct mock_conn *c)
{
	copy(c, true);
}

/* ---- EXPUNGE, UID EXPUNGE, CLOSE ---- */

/* Removes \Deleted messages (only those in set, when given). */
static void
expunge(struct mock_mailbox *mb, const struct mock_seqset *set)
{
	size_t i;
	bool any = false;

	for (i = mb->nmsgs; i-- > 0;) {
		struct mock_msg *m = mb->msgs[i];

		if (!(m->flags.sys & MOCK_F_DELETED))
			continue;
		if (set != NULL && !mock_seqset_contains(set, m->uid))
			continue;
		mock_store_msg_expunge(mb, i);
		any = true;
	}
	if (any)
		mock_notify(mb);
}

void
mock_cmd_expunge(struct mock_conn *c)
{
	if (mock_conn_nargs(c) != 0) {
		mock_conn_tagged(c, "BAD", "unexpected arguments");
		return;
	}
	if (c->readonly) {
		mock_conn_tagged(c, "NO", "[READ-ONLY] Mailbox is read-only");
		return;
	}
	expunge(c->mbox, NULL);
	mock_conn_tagged(c, "OK", "EXPUNGE completed");
}

void
mock_cmd_uid_expunge(struct mock_conn *c)
{
	struct mock_seqset set;
	const char *why;

	if (mock_conn_nargs(c) != 1 ||
	    parse_set(c, mock_conn_arg(c, 0), true, &set, &why) < 0) {
		mock_conn_tagged(c, "BAD", "UID EXPUNGE needs a UID set");
		return;
	}
	if (c->readonly) {
		mock_seqset_free(&set);
		mock_conn_tagged(c, "NO", "[READ-ONLY] Mailbox is read-only");
		return;
	}
	expunge(c->mbox, &set);
	mock_seqset_free(&set);
	mock_conn_tagged(c, "OK", "UID EXPUNGE completed");
}

void
mock_cmd_close(struct mock_conn *c)
{
	struct mock_mailbox *mb = c->mbox;
	bool readonly = c->readonly;

	if (mock_conn_nargs(c) != 0) {
		mock_conn_tagged(c, "BAD", "unexpected arguments");
		return;
	}
	/* deselect first: CLOSE expunges without EXPUNGE responses */
	mock_conn_deselect(c);
	if (!readonly)
		expunge(mb, NULL);
	mock_conn_tagged(c, "OK", "CLOSE completed");
}

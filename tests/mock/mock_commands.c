/*
 * mock_commands.c — the mock's command table, capabilities per profile,
 * and the commands that do not touch messages: CAPABILITY, NOOP, CHECK,
 * LOGOUT, STARTTLS, LOGIN, AUTHENTICATE (PLAIN, XOAUTH2), ID, NAMESPACE,
 * SELECT, EXAMINE, CREATE, DELETE, LIST, STATUS, UNSELECT, IDLE and the
 * test-only XMOCK.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "mock.h"

/* ---- argument helpers ---- */

bool
mock_arg_is_string(const struct mock_arg *a)
{
	return a != NULL && (a->kind == MOCK_ARG_ATOM ||
	    a->kind == MOCK_ARG_STRING);
}

bool
mock_arg_is(const struct mock_arg *a, const char *word)
{
	return a != NULL && a->kind == MOCK_ARG_ATOM &&
	    strcasecmp(a->s, word) == 0;
}

int
mock_arg_number(const struct mock_arg *a, uint64_t *n)
{
	uint64_t v = 0;
	size_t i;

	if (a == NULL || a->kind != MOCK_ARG_ATOM || a->len == 0 ||
	    a->len > 19)
		return -1;
	for (i = 0; i < a->len; i++) {
		if (a->s[i] < '0' || a->s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(a->s[i] - '0');
	}
	*n = v;
	return 0;
}

void
mock_put_quoted(struct evbuffer *out, const char *s)
{
	evbuffer_add(out, "\"", 1);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			evbuffer_add(out, "\\", 1);
		evbuffer_add(out, s, 1);
	}
	evbuffer_add(out, "\"", 1);
}

/* A string argument usable as a name: no NUL, no control characters. */
static const char *
name_arg(struct mock_conn *c, size_t i)
{
	struct mock_arg *a = mock_conn_arg(c, i);
	size_t k;

	if (!mock_arg_is_string(a) || strlen(a->s) != a->len ||
	    a->len > MOCK_NAME_MAX)
		return NULL;
	for (k = 0; k < a->len; k++)
		if ((unsigned char)a->s[k] < 0x20 || a->s[k] == 0x7f)
			return NULL;
	return a->s;
}

static bool
no_args(struct mock_conn *c)
{
	if (mock_conn_nargs(c) == 0)
		return true;
	mock_conn_tagged(c, "BAD", "unexpected arguments");
	return false;
}

/* ---- capabilities ---- */

/* Before authentication the list depends on the connection: STARTTLS only
 * while it can be used, and with --require-tls no way to log in before TLS
 * (RFC 3501 6.2.3: LOGINDISABLED). */
void
mock_capabilities(struct evbuffer *out, bool authenticated, bool tls)
{
	enum mock_profile p = mock_srv.profile;

	evbuffer_add_printf(out, "CAPABILITY IMAP4rev1");
	if (p == MOCK_PROFILE_LITERALMINUS)
		evbuffer_add_printf(out, " LITERAL-");
	else if (p != MOCK_PROFILE_NOLITERALPLUS)
		evbuffer_add_printf(out, " LITERAL+");
	if (p != MOCK_PROFILE_NOUIDPLUS)
		evbuffer_add_printf(out, " UIDPLUS");
	evbuffer_add_printf(out, " IDLE ID UNSELECT");
	if (p == MOCK_PROFILE_MULTIAPPEND)
		evbuffer_add_printf(out, " MULTIAPPEND");
	if (mock_srv.appendlimit > 0)
		evbuffer_add_printf(out, " APPENDLIMIT=%llu",
		    (unsigned long long)mock_srv.appendlimit);
	if (mock_srv.extra_caps != NULL)
		evbuffer_add_printf(out, " %s", mock_srv.extra_caps);
	if (authenticated)
		return;
	if (mock_srv.tls_ctx != NULL && !tls)
		evbuffer_add_printf(out, " STARTTLS");
	if (mock_srv.require_tls && !tls)
		evbuffer_add_printf(out, " LOGINDISABLED");
	else
		evbuffer_add_printf(out, " AUTH=PLAIN AUTH=XOAUTH2");
	if (mock_srv.sasl_ir)
		evbuffer_add_printf(out, " SASL-IR");
}

static void
cmd_capability(struct mock_conn *c)
{
	if (!no_args(c))
		return;
	evbuffer_add(c->resp, "* ", 2);
	mock_capabilities(c->resp, c->state != MOCK_ST_NOAUTH, c->tls);
	evbuffer_add(c->resp, "\r\n", 2);
	mock_conn_tagged(c, "OK", "CAPABILITY completed");
}

static void
cmd_noop(struct mock_conn *c)
{
	if (no_args(c))
		mock_conn_tagged(c, "OK", "%s completed", c->cmd->name);
}

static void
cmd_logout(struct mock_conn *c)
{
	if (!no_args(c))
		return;
	mock_conn_untagged(c, "BYE logging out");
	c->close_after = true;
	mock_conn_deselect(c);
	c->state = MOCK_ST_LOGOUT;
	mock_conn_tagged(c, "OK", "LOGOUT completed");
}

static void
cmd_id(struct mock_conn *c)
{
	mock_conn_untagged(c, "ID (\"name\" \"mock\")");
	mock_conn_tagged(c, "OK", "ID completed");
}

static void
cmd_namespace(struct mock_conn *c)
{
	if (!no_args(c))
		return;
	if (mock_srv.personal_prefix != NULL)
		mock_conn_untagged(c, "NAMESPACE ((\"%s\" \".\")) NIL NIL",
		    mock_srv.personal_prefix);
	else
		mock_conn_untagged(c, "NAMESPACE ((\"\" \"/\")) NIL NIL");
	mock_conn_tagged(c, "OK", "NAMESPACE completed");
}

/* ---- TLS ---- */

/* The answer goes out in plain text; mock_session.c switches the
 * connection to TLS once it is out (and drops what came after the line). */
static void
cmd_starttls(struct mock_conn *c)
{
	if (!no_args(c))
		return;
	if (c->tls) {
		mock_conn_tagged(c, "BAD", "TLS is already active");
		return;
	}
	c->starttls = true;
	mock_srv.stats.starttls++;
	mock_conn_tagged(c, "OK", "Begin TLS negotiation now");
}

/* ---- login ---- */

/* --require-tls: true after refusing the command (before TLS). */
static bool
privacy_required(struct mock_conn *c, const char *what)
{
	if (!mock_srv.require_tls || c->tls)
		return false;
	mock_conn_tagged(c, "NO", "[PRIVACYREQUIRED] %s is not allowed "
	    "without TLS", what);
	return true;
}

static void
login_ok(struct mock_conn *c, struct mock_user *u)
{
	c->user = u;
	c->state = MOCK_ST_AUTH;
	mock_srv.stats.logins++;
	if (mock_srv.login_caps) {
		struct evbuffer *caps = evbuffer_new();
		char *text;
		size_t n;

		if (caps == NULL)
			exit(1);
		mock_capabilities(caps, true, c->tls);
		n = evbuffer_get_length(caps);
		text = (char *)evbuffer_pullup(caps, (ev_ssize_t)n);
		mock_conn_tagged(c, "OK", "[%.*s] Logged in", (int)n, text);
		evbuffer_free(caps);
	} else {
		mock_conn_tagged(c, "OK", "Logged in");
	}
}

static void
cmd_login(struct mock_conn *c)
{
	const char *user = name_arg(c, 0);
	struct mock_arg *pass = mock_conn_arg(c, 1);
	struct mock_user *u;

	if (privacy_required(c, "LOGIN"))
		return;
	if (user == NULL || !mock_arg_is_string(pass) ||
	    mock_conn_nargs(c) != 2) {
		mock_conn_tagged(c, "BAD", "LOGIN needs a user name and a "
		    "password");
		return;
	}
	u = mock_store_user_find(user);
	if (u == NULL || strlen(u->pass) != pass->len ||
	    memcmp(u->pass, pass->s, pass->len) != 0) {
		mock_conn_tagged(c, "NO", "[AUTHENTICATIONFAILED] "
		    "Authentication failed");
		return;
	}
	login_ok(c, u);
}

/* SASL PLAIN (RFC 4616): authzid NUL authcid NUL passwd. */
static void
auth_plain(struct mock_conn *c, const char *b64, size_t len)
{
	unsigned char buf[1024];
	const char *part[3];
	size_t plen[3], i, start = 0;
	unsigned nparts = 0;
	long n;
	struct mock_user *u = NULL;

	if (len == 1 && b64[0] == '=')
		len = 0;	/* empty initial response */
	n = mock_base64_decode(b64, len, buf, sizeof(buf));
	if (n < 0) {
		mock_conn_tagged(c, "BAD", "invalid base64");
		return;
	}
	for (i = 0; i <= (size_t)n && nparts < 3; i++) {
		if (i == (size_t)n || buf[i] == '\0') {
			part[nparts] = (const char *)buf + start;
			plen[nparts++] = i - start;
			start = i + 1;
		}
	}
	if (nparts != 3 || start != (size_t)n + 1) {
		mock_conn_tagged(c, "NO", "[AUTHENTICATIONFAILED] "
		    "Authentication failed");
		return;
	}
#define PART_IS(k, s) (strlen(s) == plen[k] && memcmp(part[k], s, plen[k]) == 0)
	if (mock_srv.master_name != NULL && PART_IS(1, mock_srv.master_name) &&
	    PART_IS(2, mock_srv.master_pass) && plen[0] > 0) {
		/* master user: log in as the authorization identity */
		for (u = mock_srv.users; u != NULL; u = u->next)
			if (PART_IS(0, u->name))
				break;
	} else {
		for (u = mock_srv.users; u != NULL; u = u->next)
			if (PART_IS(1, u->name))
				break;
		if (u != NULL && (!PART_IS(2, u->pass) ||
		    (plen[0] > 0 && !PART_IS(0, u->name))))
			u = NULL;
	}
#undef PART_IS
	if (u == NULL) {
		mock_conn_tagged(c, "NO", "[AUTHENTICATIONFAILED] "
		    "Authentication failed");
		return;
	}
	login_ok(c, u);
}

/* The error Gmail sends for a bad or expired token, as a continuation:
 * {"status":"401","schemes":"bearer","scope":"https://mail.google.com/"} */
static const char xoauth2_error[] =
    "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJodHRwczovL21h"
    "aWwuZ29vZ2xlLmNvbS8ifQ==";

/* XOAUTH2 (Google's): "user=" user ^A "auth=Bearer " token ^A ^A.  A token
 * other than --oauth-token, or an unknown user, gets the error above as a
 * continuation; the client answers it (with an empty line) and then gets
 * the tagged NO, as from Gmail. */
static void
auth_xoauth2(struct mock_conn *c, const char *b64, size_t len)
{
	unsigned char buf[4096];
	char user[MOCK_NAME_MAX + 1];
	const char *p, *end, *sep, *token;
	size_t ulen, tlen;
	struct mock_user *u;
	long n;

	n = mock_base64_decode(b64, len, buf, sizeof(buf));
	if (n < 0) {
		mock_conn_tagged(c, "BAD", "invalid base64");
		return;
	}
	p = (const char *)buf;
	end = p + n;
	if (n < 7 || memcmp(p, "user=", 5) != 0 ||
	    (sep = memchr(p, '\x01', (size_t)n)) == NULL)
		goto malformed;
	ulen = (size_t)(sep - (p + 5));
	if (ulen == 0 || ulen > MOCK_NAME_MAX ||
	    memchr(p + 5, '\0', ulen) != NULL)
		goto malformed;
	memcpy(user, p + 5, ulen);
	user[ulen] = '\0';
	p = sep + 1;
	if (end - p < 12 || memcmp(p, "auth=", 5) != 0 ||
	    strncasecmp(p + 5, "Bearer ", 7) != 0)
		goto malformed;
	token = p + 12;
	if ((sep = memchr(token, '\x01', (size_t)(end - token))) == NULL ||
	    end - sep != 2 || sep[1] != '\x01')
		goto malformed;
	tlen = (size_t)(sep - token);
	u = mock_store_user_find(user);
	if (u == NULL || tlen != strlen(mock_srv.oauth_token) ||
	    memcmp(token, mock_srv.oauth_token, tlen) != 0) {
		c->sasl = MOCK_SASL_XOAUTH2_FAILED;
		mock_conn_continue(c, xoauth2_error);
		mock_conn_wait_line(c, MOCK_W_SASL);
		return;
	}
	login_ok(c, u);
	return;
malformed:
	mock_conn_tagged(c, "BAD", "Invalid SASL argument");
}

/* One client response (initial or after "+") of the mechanism under way. */
static void
sasl_response(struct mock_conn *c, const char *b64, size_t len)
{
	switch (c->sasl) {
	case MOCK_SASL_PLAIN:
		auth_plain(c, b64, len);
		break;
	case MOCK_SASL_XOAUTH2:
		auth_xoauth2(c, b64, len);
		break;
	case MOCK_SASL_XOAUTH2_FAILED:
		mock_conn_tagged(c, "NO", "[AUTHENTICATIONFAILED] Invalid "
		    "credentials");
		break;
	}
}

static void
cmd_authenticate(struct mock_conn *c)
{
	struct mock_arg *mech = mock_conn_arg(c, 0);
	struct mock_arg *ir = mock_conn_arg(c, 1);

	if (privacy_required(c, "AUTHENTICATE"))
		return;
	if (mech == NULL || mech->kind != MOCK_ARG_ATOM ||
	    mock_conn_nargs(c) > 2) {
		mock_conn_tagged(c, "BAD", "AUTHENTICATE needs a mechanism");
		return;
	}
	if (mock_arg_is(mech, "PLAIN")) {
		c->sasl = MOCK_SASL_PLAIN;
	} else if (mock_arg_is(mech, "XOAUTH2")) {
		c->sasl = MOCK_SASL_XOAUTH2;
	} else {
		mock_conn_tagged(c, "NO", "Unsupported authentication "
		    "mechanism");
		return;
	}
	if (ir != NULL) {
		if (ir->kind != MOCK_ARG_ATOM) {
			mock_conn_tagged(c, "BAD", "invalid initial response");
			return;
		}
		sasl_response(c, ir->s, ir->len);
		return;
	}
	mock_conn_continue(c, "");
	mock_conn_wait_line(c, MOCK_W_SASL);
}

void
mock_cmd_auth_line(struct mock_conn *c, const char *line, size_t len)
{
	mock_conn_log(c, line, len);
	mock_conn_wait_line(c, MOCK_W_SEGMENT);
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	if (len == 1 && line[0] == '*') {
		mock_conn_tagged(c, "BAD", "Authentication cancelled");
		return;
	}
	sasl_response(c, line, len);
}

/* ---- mailboxes ---- */

static void
cmd_select(struct mock_conn *c)
{
	bool examine = strcmp(c->cmd->name, "EXAMINE") == 0;
	const char *name = name_arg(c, 0);
	struct mock_mailbox *mb;

	if (name == NULL || mock_conn_nargs(c) != 1) {
		mock_conn_tagged(c, "BAD", "%s needs a mailbox name",
		    c->cmd->name);
		return;
	}
	mock_conn_deselect(c);
	if ((mb = mock_store_mailbox_find(c->user, name)) == NULL) {
		mock_conn_tagged(c, "NO", "[NONEXISTENT] Mailbox does not "
		    "exist");
		return;
	}
	mock_conn_select(c, mb, examine);
	mock_conn_untagged(c, "FLAGS (\\Answered \\Flagged \\Deleted \\Seen "
	    "\\Draft)");
	mock_conn_untagged(c, "OK [PERMANENTFLAGS (%s)] Flags permitted",
	    examine ? "" : "\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*");
	mock_conn_untagged(c, "%zu EXISTS", c->nview);
	mock_conn_untagged(c, "0 RECENT");
	mock_conn_untagged(c, "OK [UIDVALIDITY %u] UIDs valid",
	    mb->uidvalidity);
	mock_conn_untagged(c, "OK [UIDNEXT %u] Predicted next UID",
	    mb->uidnext);
	mock_conn_tagged(c, "OK", "[%s] %s completed",
	    examine ? "READ-ONLY" : "READ-WRITE", c->cmd->name);
}

static void
cmd_create(struct mock_conn *c)
{
	const char *arg = name_arg(c, 0);
	char name[MOCK_NAME_MAX + 1];
	size_t len;

	if (arg == NULL || mock_conn_nargs(c) != 1) {
		mock_conn_tagged(c, "BAD", "CREATE needs a mailbox name");
		return;
	}
	len = strlen(arg);
	memcpy(name, arg, len + 1);
	if (len > 1 && name[len - 1] == '/')
		name[--len] = '\0';	/* "a/": a name for children */
	if (len == 0 || strpbrk(name, "*%") != NULL || name[0] == '/') {
		mock_conn_tagged(c, "NO", "[CANNOT] Invalid mailbox name");
		return;
	}
	if (mock_srv.personal_prefix != NULL &&
	    strncmp(name, mock_srv.personal_prefix, strlen(mock_srv.personal_prefix)) != 0) {
		mock_conn_tagged(c, "NO", "[CANNOT] Mailboxes live under %s",
		    mock_srv.personal_prefix);
		return;
	}
	if (mock_store_mailbox_create(c->user, name) == NULL) {
		mock_conn_tagged(c, "NO", "[ALREADYEXISTS] Mailbox exists");
		return;
	}
	mock_conn_tagged(c, "OK", "CREATE completed");
}

static void
cmd_delete(struct mock_conn *c)
{
	const char *name = name_arg(c, 0);
	struct mock_mailbox *mb;

	if (name == NULL || mock_conn_nargs(c) != 1) {
		mock_conn_tagged(c, "BAD", "DELETE needs a mailbox name");
		return;
	}
	if (mock_store_is_inbox(name)) {
		mock_conn_tagged(c, "NO", "[CANNOT] INBOX cannot be deleted");
		return;
	}
	if ((mb = mock_store_mailbox_find(c->user, name)) == NULL) {
		mock_conn_tagged(c, "NO", "[NONEXISTENT] Mailbox does not "
		    "exist");
		return;
	}
	if (mb->selected > 0) {
		/* simpler than RFC 2180's choices, and enough for tests */
		mock_conn_tagged(c, "NO", "[INUSE] Mailbox is selected");
		return;
	}
	mock_store_mailbox_delete(mb);
	mock_conn_tagged(c, "OK", "DELETE completed");
}

static void
cmd_list(struct mock_conn *c)
{
	const char *ref = name_arg(c, 0), *pat = name_arg(c, 1);
	struct mock_mailbox *mb;
	char *full, *upper;
	size_t i;

	if (ref == NULL || pat == NULL || mock_conn_nargs(c) != 2) {
		mock_conn_tagged(c, "BAD", "LIST needs a reference and a "
		    "pattern");
		return;
	}
	if (pat[0] == '\0') {
		mock_conn_untagged(c, "LIST (\\Noselect) \"/\" \"\"");
		mock_conn_tagged(c, "OK", "LIST completed");
		return;
	}
	if (asprintf(&full, "%s%s", ref, pat) < 0)
		exit(1);
	if ((upper = strdup(full)) == NULL)
		exit(1);
	for (i = 0; upper[i] != '\0'; i++)
		if (upper[i] >= 'a' && upper[i] <= 'z')
			upper[i] = (char)(upper[i] - 'a' + 'A');
	for (mb = c->user->mailboxes; mb != NULL; mb = mb->next) {
		bool inbox = strcmp(mb->name, "INBOX") == 0;

		if (!mock_list_match(full, mb->name, '/') &&
		    !(inbox && mock_list_match(upper, mb->name, '/')))
			continue;
		evbuffer_add_printf(c->resp, "* LIST () \"/\" ");
		mock_put_quoted(c->resp, mb->name);
		evbuffer_add(c->resp, "\r\n", 2);
	}
	free(full);
	free(upper);
	mock_conn_tagged(c, "OK", "LIST completed");
}

static void
cmd_status(struct mock_conn *c)
{
	const char *name = name_arg(c, 0);
	struct mock_mailbox *mb;
	struct evbuffer *items;
	size_t i, n = mock_conn_nargs(c), k;
	char *text;

	if (name == NULL || n < 3 ||
	    mock_conn_arg(c, 1)->kind != MOCK_ARG_LPAREN ||
	    mock_conn_arg(c, n - 1)->kind != MOCK_ARG_RPAREN) {
		mock_conn_tagged(c, "BAD", "STATUS needs a mailbox and items");
		return;
	}
	if ((mb = mock_store_mailbox_find(c->user, name)) == NULL) {
		mock_conn_tagged(c, "NO", "[NONEXISTENT] Mailbox does not "
		    "exist");
		return;
	}
	if ((items = evbuffer_new()) == NULL)
		exit(1);
	for (i = 2; i < n - 1; i++) {
		struct mock_arg *a = mock_conn_arg(c, i);
		size_t unseen = 0;

		if (i > 2)
			evbuffer_add(items, " ", 1);
		if (mock_arg_is(a, "MESSAGES")) {
			evbuffer_add_printf(items, "MESSAGES %zu", mb->nmsgs);
		} else if (mock_arg_is(a, "RECENT")) {
			evbuffer_add_printf(items, "RECENT 0");
		} else if (mock_arg_is(a, "UIDNEXT")) {
			evbuffer_add_printf(items, "UIDNEXT %u", mb->uidnext);
		} else if (mock_arg_is(a, "UIDVALIDITY")) {
			evbuffer_add_printf(items, "UIDVALIDITY %u",
			    mb->uidvalidity);
		} else if (mock_arg_is(a, "UNSEEN")) {
			for (k = 0; k < mb->nmsgs; k++)
				if (!(mb->msgs[k]->flags.sys & MOCK_F_SEEN))
					unseen++;
			evbuffer_add_printf(items, "UNSEEN %zu", unseen);
		} else {
			evbuffer_free(items);
			mock_conn_tagged(c, "BAD", "unknown STATUS item");
			return;
		}
	}
	evbuffer_add_printf(c->resp, "* STATUS ");
	mock_put_quoted(c->resp, mb->name);
	k = evbuffer_get_length(items);
	text = (char *)evbuffer_pullup(items, (ev_ssize_t)k);
	evbuffer_add_printf(c->resp, " (%.*s)\r\n", (int)k, text ? text : "");
	evbuffer_free(items);
	mock_conn_tagged(c, "OK", "STATUS completed");
}

static void
cmd_unselect(struct mock_conn *c)
{
	if (!no_args(c))
		return;
	mock_conn_deselect(c);
	mock_conn_tagged(c, "OK", "UNSELECT completed");
}

/* ---- IDLE ---- */

static void
cmd_idle(struct mock_conn *c)
{
	if (!no_args(c))
		return;
	mock_conn_continue(c, "idling");
	mock_conn_sync(c, true, c->resp);
	bufferevent_write_buffer(c->bev, c->resp);
	mock_conn_wait_line(c, MOCK_W_IDLE);
}

void
mock_cmd_idle_line(struct mock_conn *c, const char *line, size_t len)
{
	mock_conn_log(c, line, len);
	mock_conn_wait_line(c, MOCK_W_SEGMENT);
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	if (len == 4 && strncasecmp(line, "DONE", 4) == 0)
		mock_conn_tagged(c, "OK", "IDLE terminated");
	else
		mock_conn_tagged(c, "BAD", "expected DONE");
}

/* ---- XMOCK: test control ---- */

static void
xmock_fault(struct mock_conn *c)
{
	struct mock_arg *kind = mock_conn_arg(c, 1), *karg = mock_conn_arg(c, 2);
	struct mock_faults *f = &mock_srv.faults;
	size_t n = mock_conn_nargs(c);
	uint64_t k = 0;

	if (mock_arg_is(kind, "CLEAR") && n == 2) {
		f->append_no = f->append_drop = f->append_drop_after = 0;
		f->append_stall_after = f->append_garbage_after = 0;
		f->append_longline_after = 0;
		f->copy_drop = f->copy_drop_after = false;
		free(f->append_no_text);
		f->append_no_text = NULL;
		f->count = 0;
		mock_conn_tagged(c, "OK", "faults cleared");
		return;
	}
	if ((mock_arg_is(kind, "COPY-DROP") || mock_arg_is(kind, "COPY-DROP-AFTER")) &&
	    n == 2) {
		if (mock_arg_is(kind, "COPY-DROP"))
			f->copy_drop = true;
		else
			f->copy_drop_after = true;
		mock_conn_tagged(c, "OK", "fault set");
		return;
	}
	if (mock_arg_number(karg, &k) < 0 || k == 0) {
		mock_conn_tagged(c, "BAD", "XMOCK FAULT APPEND-NO|APPEND-DROP|"
		    "APPEND-DROP-AFTER|APPEND-STALL-AFTER|APPEND-GARBAGE-AFTER|"
		    "APPEND-LONGLINE-AFTER k [text] | CLEAR");
		return;
	}
	if (mock_arg_is(kind, "APPEND-NO")) {
		struct mock_arg *t = mock_conn_arg(c, 3);
		char *text = NULL;

		if (n == 4 && t->kind == MOCK_ARG_STRING && !t->literal) {
			text = strdup(t->s);
		} else if (n > 3 && c->line != NULL) {
			/* the rest of the line as written: may hold [CODE] */
			const char *rest = c->line + karg->off + karg->len;

			while (*rest == ' ')
				rest++;
			text = strdup(rest);
		}
		free(f->append_no_text);
		f->append_no_text = text;
		f->append_no = k;
	} else if (mock_arg_is(kind, "APPEND-DROP") && n == 3) {
		f->append_drop = k;
	} else if (mock_arg_is(kind, "APPEND-DROP-AFTER") && n == 3) {
		f->append_drop_after = k;
	} else if (mock_arg_is(kind, "APPEND-STALL-AFTER") && n == 3) {
		f->append_stall_after = k;
	} else if (mock_arg_is(kind, "APPEND-GARBAGE-AFTER") && n == 3) {
		f->append_garbage_after = k;
	} else if (mock_arg_is(kind, "APPEND-LONGLINE-AFTER") && n == 3) {
		f->append_longline_after = k;
	} else {
		mock_conn_tagged(c, "BAD", "unknown fault");
		return;
	}
	f->count = 0;
	mock_conn_tagged(c, "OK", "fault set");
}

static void
cmd_xmock(struct mock_conn *c)
{
	struct mock_arg *what = mock_conn_arg(c, 0);
	const struct mock_stats *s = &mock_srv.stats;
	uint64_t ms;

	if (mock_arg_is(what, "FAULT")) {
		xmock_fault(c);
	} else if (mock_arg_is(what, "STATS") && mock_conn_nargs(c) == 1) {
		mock_conn_untagged(c, "XMOCK STATS appends=%llu messages=%llu "
		    "multi=%llu maxmsgs=%llu expunge=%llu uidexpunge=%llu "
		    "close=%llu logins=%llu connections=%llu starttls=%llu "
		    "tls=%llu",
		    (unsigned long long)s->appends,
		    (unsigned long long)s->messages,
		    (unsigned long long)s->multi,
		    (unsigned long long)s->maxmsgs,
		    (unsigned long long)s->expunge,
		    (unsigned long long)s->uidexpunge,
		    (unsigned long long)s->close,
		    (unsigned long long)s->logins,
		    (unsigned long long)s->connections,
		    (unsigned long long)s->starttls,
		    (unsigned long long)s->tls);
		mock_conn_tagged(c, "OK", "XMOCK completed");
	} else if (mock_arg_is(what, "DELAY") && mock_conn_nargs(c) == 2 &&
	    mock_arg_number(mock_conn_arg(c, 1), &ms) == 0 &&
	    ms <= MOCK_DELAY_MAX) {
		mock_srv.delay_ms = (unsigned)ms;
		mock_conn_tagged(c, "OK", "delay set");
	} else {
		mock_conn_tagged(c, "BAD", "XMOCK FAULT ... | STATS | DELAY ms");
	}
}

/* ---- the table ---- */

#define ANY	MOCK_S_ANY
#define AUTH	(MOCK_S_AUTH | MOCK_S_SELECTED)
#define SEL	MOCK_S_SELECTED

static const struct mock_cmd commands[] = {
	{ "CAPABILITY",		ANY,		false,	cmd_capability },
	{ "NOOP",		ANY,		false,	cmd_noop },
	{ "LOGOUT",		ANY,		false,	cmd_logout },
	{ "ID",			ANY,		false,	cmd_id },
	{ "XMOCK",		ANY,		false,	cmd_xmock },
	{ "STARTTLS",		MOCK_S_NOAUTH,	false,	cmd_starttls },
	{ "LOGIN",		MOCK_S_NOAUTH,	false,	cmd_login },
	{ "AUTHENTICATE",	MOCK_S_NOAUTH,	false,	cmd_authenticate },
	{ "NAMESPACE",		AUTH,		false,	cmd_namespace },
	{ "SELECT",		AUTH,		false,	cmd_select },
	{ "EXAMINE",		AUTH,		false,	cmd_select },
	{ "CREATE",		AUTH,		false,	cmd_create },
	{ "DELETE",		AUTH,		false,	cmd_delete },
	{ "LIST",		AUTH,		false,	cmd_list },
	{ "STATUS",		AUTH,		false,	cmd_status },
	{ "APPEND",		AUTH,		false,	mock_cmd_append },
	{ "IDLE",		AUTH,		false,	cmd_idle },
	{ "CHECK",		SEL,		false,	cmd_noop },
	{ "CLOSE",		SEL,		false,	mock_cmd_close },
	{ "UNSELECT",		SEL,		false,	cmd_unselect },
	{ "EXPUNGE",		SEL,		false,	mock_cmd_expunge },
	{ "FETCH",		SEL,		true,	mock_cmd_fetch },
	{ "STORE",		SEL,		true,	mock_cmd_store },
	{ "SEARCH",		SEL,		true,	mock_cmd_search },
	{ "COPY",		SEL,		false,	mock_cmd_copy },
	{ "UID FETCH",		SEL,		false,	mock_cmd_uid_fetch },
	{ "UID STORE",		SEL,		false,	mock_cmd_uid_store },
	{ "UID SEARCH",		SEL,		false,	mock_cmd_uid_search },
	{ "UID COPY",		SEL,		false,	mock_cmd_uid_copy },
	{ "UID EXPUNGE",	SEL,		false,	mock_cmd_uid_expunge },
};

const struct mock_cmd *
mock_cmd_find(const char *name, const char *sub)
{
	char full[64];
	size_t i;

	if (strlen(name) + (sub ? strlen(sub) + 1 : 0) >= sizeof(full))
		return NULL;
	snprintf(full, sizeof(full), "%s%s%s", name, sub ? " " : "",
	    sub ? sub : "");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcasecmp(commands[i].name, full) != 0)
			continue;
		/* without UIDPLUS, UID EXPUNGE does not exist */
		if (commands[i].exec == mock_cmd_uid_expunge &&
		    mock_srv.profile == MOCK_PROFILE_NOUIDPLUS)
			return NULL;
		/* without a certificate, STARTTLS does not exist */
		if (commands[i].exec == cmd_starttls &&
		    mock_srv.tls_ctx == NULL)
			return NULL;
		return &commands[i];
	}
	return NULL;
}

/*
 * credentials.c — what a second upstream connection needs to log in as the
 * session's user: the LOGIN arguments, or the parts of a SASL PLAIN message,
 * and the login built from them (or from the master user).  Kept in memory
 * only, never logged, wiped when replaced or when the session ends.  Other
 * SASL mechanisms are relayed without being understood and leave nothing
 * here; a configured master user covers those sessions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "command.h"
#include "config.h"
#include "credentials.h"
#include "parser.h"
#include "session.h"

struct credentials {
	char *user;		/* authentication identity (LOGIN user, PLAIN authcid) */
	char *authzid;		/* PLAIN authorization identity, may be NULL */
	char *password;
	size_t user_len, authzid_len, password_len;
};

void
credentials_wipe(char **p, size_t *len)
{
	if (*p != NULL) {
		OPENSSL_cleanse(*p, *len);
		free(*p);
	}
	*p = NULL;
	*len = 0;
}

static void
wipe_string(char **p)
{
	size_t len = *p != NULL ? strlen(*p) : 0;

	credentials_wipe(p, &len);
}

static void
clear(struct credentials *c)
{
	credentials_wipe(&c->user, &c->user_len);
	credentials_wipe(&c->authzid, &c->authzid_len);
	credentials_wipe(&c->password, &c->password_len);
}

struct credentials *
credentials_new(void)
{
	return calloc(1, sizeof(struct credentials));
}

void
credentials_free(struct credentials *c)
{
	if (c == NULL)
		return;
	clear(c);
	free(c);
}

static char *
dup_bytes(const char *s, size_t len)
{
	char *out = malloc(len + 1);

	if (out != NULL) {
		memcpy(out, s, len);
		out[len] = '\0';
	}
	return out;
}

static void
set(char **field, size_t *flen, const char *s, size_t len)
{
	*field = dup_bytes(s, len);
	*flen = *field != NULL ? len : 0;
}

/* A SASL PLAIN message decoded: authzid NUL authcid NUL password. */
struct plain {
	unsigned char *raw;	/* the decoded bytes: wiped by plain_free */
	size_t rawlen;
	const char *authz, *authc, *pass, *end;
};

static void
plain_free(struct plain *pl)
{
	if (pl->raw != NULL)
		OPENSSL_cleanse(pl->raw, pl->rawlen);
	free(pl->raw);
	pl->raw = NULL;
}

/* 0 with pl's parts set, or -1 (not base64, or not three parts). */
static int
plain_parse(const char *b64, size_t len, struct plain *pl)
{
	int n;

	memset(pl, 0, sizeof(*pl));
	if (len == 0 || len % 4 != 0 || (pl->raw = malloc(len)) == NULL)
		return -1;
	pl->rawlen = len;
	n = EVP_DecodeBlock(pl->raw, (const unsigned char *)b64, (int)len);
	if (n < 0) {
		plain_free(pl);
		return -1;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes */
	if (len >= 1 && b64[len - 1] == '=')
		n--;
	if (len >= 2 && b64[len - 2] == '=')
		n--;
	pl->authz = (const char *)pl->raw;
	pl->end = pl->authz + n;
	pl->authc = memchr(pl->authz, '\0', (size_t)n);
	pl->pass = pl->authc != NULL ?
	    memchr(pl->authc + 1, '\0', (size_t)(pl->end - pl->authc - 1)) : NULL;
	if (pl->authc == NULL || pl->pass == NULL) {
		plain_free(pl);
		return -1;
	}
	pl->authc++;
	pl->pass++;
	return 0;
}

int
sasl_plain_decode(const char *b64, size_t len, struct sasl_plain *out)
{
	struct plain pl;

	memset(out, 0, sizeof(*out));
	if (plain_parse(b64, len, &pl) != 0)
		return -1;
	out->authzid_len = (size_t)(pl.authc - 1 - pl.authz);
	out->authcid_len = (size_t)(pl.pass - 1 - pl.authc);
	out->password_len = (size_t)(pl.end - pl.pass);
	out->authzid = dup_bytes(pl.authz, out->authzid_len);
	out->authcid = dup_bytes(pl.authc, out->authcid_len);
	out->password = dup_bytes(pl.pass, out->password_len);
	plain_free(&pl);
	if (out->authzid == NULL || out->authcid == NULL || out->password == NULL) {
		sasl_plain_clear(out);
		return -1;
	}
	return 0;
}

void
sasl_plain_clear(struct sasl_plain *sp)
{
	credentials_wipe(&sp->authzid, &sp->authzid_len);
	credentials_wipe(&sp->authcid, &sp->authcid_len);
	credentials_wipe(&sp->password, &sp->password_len);
}

char *
sasl_b64_decode(const char *b64, size_t len, size_t *outlen)
{
	unsigned char *raw;
	int n;

	if (len % 4 != 0 || (raw = malloc(len + 1)) == NULL)
		return NULL;
	n = len == 0 ? 0 : EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)len);
	if (n >= 0 && len >= 1 && b64[len - 1] == '=')
		n--;
	if (n >= 0 && len >= 2 && b64[len - 2] == '=')
		n--;
	if (n < 0 || memchr(raw, '\0', (size_t)n) != NULL) {
		OPENSSL_cleanse(raw, len + 1);
		free(raw);
		return NULL;
	}
	raw[n] = '\0';
	*outlen = (size_t)n;
	return (char *)raw;
}

static void
learn_plain(struct credentials *c, const char *b64, size_t len)
{
	struct plain pl;

	if (plain_parse(b64, len, &pl) != 0)
		return;
	clear(c);
	set(&c->user, &c->user_len, pl.authc, (size_t)(pl.pass - 1 - pl.authc));
	if (pl.authc - 1 > pl.authz)
		set(&c->authzid, &c->authzid_len, pl.authz,
		    (size_t)(pl.authc - 1 - pl.authz));
	set(&c->password, &c->password_len, pl.pass, (size_t)(pl.end - pl.pass));
	plain_free(&pl);
}

void
credentials_from_login(struct session *s, const struct pending *p)
{
	struct credentials *c = session_credentials(s);

	if (p->nargs != 2)
		return;
	clear(c);
	set(&c->user, &c->user_len, p->arg[0], p->arglen[0]);
	set(&c->password, &c->password_len, p->arg[1], p->arglen[1]);
}

/* AUTHENTICATE PLAIN: the message is the initial response or the client's
 * line after "+" (credentials_note_sasl put it in arg 1). */
void
credentials_from_authenticate(struct session *s, const struct pending *p)
{
	if (p->nargs == 2 && p->arglen[0] == 5 && strncasecmp(p->arg[0], "PLAIN", 5) == 0)
		learn_plain(session_credentials(s), p->arg[1], p->arglen[1]);
}

void
credentials_note_sasl(struct pending *p, const char *line, size_t len)
{
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	if (p->nargs < 1 || len > COMMAND_MAX_ARG_LEN)
		return;
	if (p->nargs == 2) {
		OPENSSL_cleanse(p->arg[1], p->arglen[1]);
		free(p->arg[1]);
		p->nargs = 1;
	}
	if ((p->arg[1] = dup_bytes(line, len)) == NULL)
		return;
	p->arglen[1] = len;
	p->nargs = 2;
}

bool
credentials_usable(const struct session *s)
{
	const struct credentials *c = session_credentials(s);

	if (session_backend(s)->master_user[0] != '\0')
		return c->user != NULL || c->authzid != NULL;
	return c->user != NULL && c->password != NULL;
}

void
credentials_attempted_user(const struct pending *p, char *out, size_t len)
{
	struct plain pl;

	snprintf(out, len, "?");
	if (p->nargs >= 1 && p->cmd != NULL && strcmp(p->cmd->name, "LOGIN") == 0) {
		snprintf(out, len, "%.*s", (int)p->arglen[0], p->arg[0]);
	} else if (p->nargs == 2 && p->arglen[0] == 5 &&
	    strncasecmp(p->arg[0], "PLAIN", 5) == 0 &&
	    plain_parse(p->arg[1], p->arglen[1], &pl) == 0) {
		/* the identity acted for first, as credentials_user says it */
		if (pl.authc - 1 > pl.authz)
			snprintf(out, len, "%.*s*%.*s", (int)(pl.authc - 1 - pl.authz),
			    pl.authz, (int)(pl.pass - 1 - pl.authc), pl.authc);
		else
			snprintf(out, len, "%.*s", (int)(pl.pass - 1 - pl.authc), pl.authc);
		plain_free(&pl);
	} else if (p->nargs >= 1) {
		snprintf(out, len, "? (%.*s)", (int)p->arglen[0], p->arg[0]);
	}
}

const char *
credentials_user(const struct session *s)
{
	const struct credentials *c = session_credentials(s);

	if (c->authzid != NULL)
		return c->authzid;
	return c->user != NULL ? c->user : "?";
}

/* SASL PLAIN: authzid NUL authcid NUL password, in base64. */
static char *
plain_message(const char *authz, size_t authz_len, const char *authc,
    size_t authc_len, const char *pass, size_t pass_len)
{
	size_t raw_len = authz_len + authc_len + pass_len + 2;
	unsigned char *raw = malloc(raw_len);
	char *b64 = malloc(4 * ((raw_len + 2) / 3) + 1);

	if (raw == NULL || b64 == NULL) {
		free(raw);
		free(b64);
		return NULL;
	}
	if (authz_len > 0)
		memcpy(raw, authz, authz_len);
	raw[authz_len] = '\0';
	memcpy(raw + authz_len + 1, authc, authc_len);
	raw[authz_len + 1 + authc_len] = '\0';
	memcpy(raw + authz_len + 2 + authc_len, pass, pass_len);
	EVP_EncodeBlock((unsigned char *)b64, raw, (int)raw_len);
	OPENSSL_cleanse(raw, raw_len);
	free(raw);
	return b64;
}

int
credentials_master_login(const struct backend *b, const char *user, struct login *l)
{
	memset(l, 0, sizeof(*l));
	if (b->master_user[0] == '\0')
		return -1;
	l->plain_b64 = plain_message(user, strlen(user), b->master_user,
	    strlen(b->master_user), b->master_password, strlen(b->master_password));
	l->user = strdup(user);
	if (l->plain_b64 == NULL || l->user == NULL) {
		login_clear(l);
		return -1;
	}
	return 0;
}

int
credentials_plain_login(const char *authzid, const char *user, const char *pass,
    struct login *l)
{
	memset(l, 0, sizeof(*l));
	l->plain_b64 = plain_message(authzid, strlen(authzid), user, strlen(user),
	    pass, strlen(pass));
	l->user = strdup(authzid[0] != '\0' ? authzid : user);
	if (l->plain_b64 == NULL || l->user == NULL) {
		login_clear(l);
		return -1;
	}
	return 0;
}

/* The client logged in with LOGIN: so does the second connection, which
 * works on servers without AUTH=PLAIN too. */
static int
login_as_client(const struct credentials *c, struct login *l)
{
	char *quser = imap_quote(c->user, c->user_len);
	char *qpass = imap_quote(c->password, c->password_len);

	if (quser != NULL && qpass != NULL &&
	    asprintf(&l->login_args, "%s %s", quser, qpass) < 0)
		l->login_args = NULL;
	free(quser);
	wipe_string(&qpass);
	return l->login_args != NULL ? 0 : -1;
}

int
credentials_login(const struct session *s, struct login *l)
{
	const struct credentials *c = session_credentials(s);
	const struct backend *b = session_backend(s);

	memset(l, 0, sizeof(*l));
	if (!credentials_usable(s))
		return -1;
	if (b->master_user[0] != '\0')
		return credentials_master_login(b, credentials_user(s), l);
	l->user = strdup(credentials_user(s));
	if (l->user != NULL && c->authzid == NULL && login_as_client(c, l) == 0)
		return 0;
	if (l->user != NULL && l->login_args == NULL)
		l->plain_b64 = plain_message(c->authzid, c->authzid_len, c->user,
		    c->user_len, c->password, c->password_len);
	if (l->user == NULL || (l->login_args == NULL && l->plain_b64 == NULL)) {
		login_clear(l);
		return -1;
	}
	return 0;
}

void
login_clear(struct login *l)
{
	wipe_string(&l->login_args);
	wipe_string(&l->plain_b64);
	free(l->user);
	l->user = NULL;
}

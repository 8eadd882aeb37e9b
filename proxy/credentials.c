/*
 * credentials.c — what a second upstream connection needs to log in as the
 * session's user: the LOGIN arguments, or the parts of a SASL PLAIN message.
 * Kept in memory only, never logged, wiped when replaced or when the
 * session ends.  Other SASL mechanisms are relayed without being understood
 * and leave nothing here; a configured master user covers those sessions.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "credentials.h"
#include "session.h"

static void
wipe(char **p, size_t *len)
{
	if (*p != NULL) {
		OPENSSL_cleanse(*p, *len);
		free(*p);
	}
	*p = NULL;
	*len = 0;
}

void
credentials_clear(struct credentials *c)
{
	wipe(&c->user, &c->user_len);
	wipe(&c->authzid, &c->authzid_len);
	wipe(&c->password, &c->password_len);
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

/* authzid NUL authcid NUL password, from base64 */
static void
learn_plain(struct session *s, const char *b64, size_t len)
{
	unsigned char *raw;
	const char *authz, *authc, *pass, *end;
	int n;

	if (len == 0 || len % 4 != 0 || (raw = malloc(len)) == NULL)
		return;
	n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)len);
	if (n < 0) {
		free(raw);
		return;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes */
	if (len >= 1 && b64[len - 1] == '=')
		n--;
	if (len >= 2 && b64[len - 2] == '=')
		n--;
	authz = (const char *)raw;
	end = authz + n;
	authc = memchr(authz, '\0', (size_t)n);
	pass = authc != NULL ? memchr(authc + 1, '\0', (size_t)(end - authc - 1)) : NULL;
	if (authc != NULL && pass != NULL) {
		authc++;
		pass++;
		credentials_clear(&s->creds);
		s->creds.user = dup_bytes(authc, (size_t)(pass - 1 - authc));
		s->creds.user_len = (size_t)(pass - 1 - authc);
		if (authc - 1 > authz) {
			s->creds.authzid = dup_bytes(authz, (size_t)(authc - 1 - authz));
			s->creds.authzid_len = (size_t)(authc - 1 - authz);
		}
		s->creds.password = dup_bytes(pass, (size_t)(end - pass));
		s->creds.password_len = (size_t)(end - pass);
	}
	OPENSSL_cleanse(raw, len);
	free(raw);
}

void
credentials_from_login(struct session *s, const struct pending *p)
{
	if (p->nargs != 2)
		return;
	credentials_clear(&s->creds);
	s->creds.user = dup_bytes(p->arg[0], p->arglen[0]);
	s->creds.user_len = p->arglen[0];
	s->creds.password = dup_bytes(p->arg[1], p->arglen[1]);
	s->creds.password_len = p->arglen[1];
}

/* AUTHENTICATE PLAIN: the message is the initial response or the client's
 * line after "+" (credentials_note_sasl put it in arg 1). */
void
credentials_from_authenticate(struct session *s, const struct pending *p)
{
	if (p->nargs == 2 && p->arglen[0] == 5 && strncasecmp(p->arg[0], "PLAIN", 5) == 0)
		learn_plain(s, p->arg[1], p->arglen[1]);
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
	if (s->proxy->cfg->master_user[0] != '\0')
		return s->creds.user != NULL || s->creds.authzid != NULL;
	return s->creds.user != NULL && s->creds.password != NULL;
}

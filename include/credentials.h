/*
 * credentials.h — what a second upstream connection needs to log in as
 * the session's user, and how it logs in: the session's own LOGIN or
 * AUTHENTICATE PLAIN credentials, or the configured master user with the
 * session's user as authorization identity.  Kept in memory only, never
 * logged, wiped when replaced or when the session ends.
 */
#ifndef MAPPEND_CREDENTIALS_H
#define MAPPEND_CREDENTIALS_H

#include <stdbool.h>
#include <stddef.h>

struct backend;
struct config;
struct credentials;
struct pending;
struct session;

/* How a connection of the proxy's own logs in: one of the two is set. */
struct login {
	char *login_args;	/* LOGIN's arguments, quoted: "user" "password" */
	char *plain_b64;	/* AUTHENTICATE PLAIN's message, base64 */
	char *user;		/* for log lines: the user the connection acts for */
};

struct credentials *credentials_new(void);
/* Wipe and free. */
void credentials_free(struct credentials *);

/* A LOGIN or an AUTHENTICATE succeeded: keep what a second connection
 * needs (LOGIN's arguments; PLAIN's message, other mechanisms leave none). */
void credentials_from_login(struct session *, const struct pending *);
void credentials_from_authenticate(struct session *, const struct pending *);
/* A client line of p's AUTHENTICATE exchange (a SASL response). */
void credentials_note_sasl(struct pending *, const char *line, size_t len);

/* Can the proxy open a second connection as this session's user? */
bool credentials_usable(const struct session *);
/* The session's user for log lines ("?" when none is known). */
const char *credentials_user(const struct session *);
/* The user a LOGIN or AUTHENTICATE command in flight tries to log in as,
 * for the log line of a failed login (never the password): "user",
 * "authzid*authcid" for PLAIN with an authorization identity, "? (MECH)"
 * for other mechanisms. */
void credentials_attempted_user(const struct pending *, char *out, size_t len);

/* How a second connection logs in for this session; -1 when it cannot
 * (no credentials, out of memory). */
int credentials_login(const struct session *, struct login *);
/* As backend b's master user for user (crash recovery); -1 without a
 * master user. */
int credentials_master_login(const struct backend *b, const char *user,
    struct login *);
/* AUTHENTICATE PLAIN's message for these (authzid "" for none). */
int credentials_plain_login(const char *authzid, const char *user,
    const char *pass, struct login *);
/* Wipe *p's len bytes, free it, and set both to nothing. */
void credentials_wipe(char **p, size_t *len);
/* Wipe and free what a login holds. */
void login_clear(struct login *);

/* SASL PLAIN's message (base64) in its parts, each malloc'ed and
 * NUL-terminated (the lengths count what they hold: a NUL inside is the
 * caller's to refuse); wiped by sasl_plain_clear.  -1 when it is not one. */
struct sasl_plain {
	char *authzid, *authcid, *password;
	size_t authzid_len, authcid_len, password_len;
};
int sasl_plain_decode(const char *b64, size_t len, struct sasl_plain *);
void sasl_plain_clear(struct sasl_plain *);
/* One base64 line (AUTHENTICATE LOGIN's answers) decoded, NUL-terminated;
 * NULL when it is not base64 or holds a NUL.  The caller wipes it. */
char *sasl_b64_decode(const char *b64, size_t len, size_t *outlen);

#endif

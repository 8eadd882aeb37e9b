/*
 * credentials.h — what a second upstream connection needs to log in as
 * the session's user: kept in memory only, never logged, wiped when the
 * session ends.
 */
#ifndef MAPPEND_CREDENTIALS_H
#define MAPPEND_CREDENTIALS_H

#include <stdbool.h>
#include <stddef.h>

struct credentials;
struct pending;
struct session;

/* A LOGIN or an AUTHENTICATE succeeded: keep what a second connection
 * needs (LOGIN's arguments; PLAIN's message, other mechanisms leave none). */
void credentials_from_login(struct session *, const struct pending *);
void credentials_from_authenticate(struct session *, const struct pending *);
/* A client line of p's AUTHENTICATE exchange (a SASL response). */
void credentials_note_sasl(struct pending *, const char *line, size_t len);
void credentials_clear(struct credentials *);
/* Can the proxy open a second connection as this session's user? */
bool credentials_usable(const struct session *);

#endif

/*
 * capability.h — what the upstream offers, and the capability list the
 * client is told instead: the upstream's list without what would blind the
 * proxy or what the proxy does itself, plus what the proxy adds.
 */
#ifndef MAPPEND_CAPABILITY_H
#define MAPPEND_CAPABILITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

struct upstream_caps {
	bool known;		/* a list has been seen */
	bool literal_plus;	/* LITERAL+: {n+} of any size */
	bool literal_minus;	/* LITERAL-: {n+} up to 4096 bytes */
	bool uidplus;
	bool multiappend;
	bool idle;
	bool sasl_ir;
	bool starttls;
	bool logindisabled;
	bool auth_plain;
	bool namespace;		/* NAMESPACE (RFC 2342) */
	uint64_t appendlimit;	/* APPENDLIMIT=n, 0 when none or without a value */
};

/* What the proxy adds to the list the client sees. */
struct capability_policy {
	bool multiappend;	/* MULTIAPPEND (the emulation, or the upstream's own) */
	uint64_t appendlimit;	/* APPENDLIMIT=n when non-zero */
	bool starttls;		/* the proxy's own STARTTLS is on offer */
	bool logindisabled;	/* no plaintext login yet: LOGINDISABLED, and the
				 * AUTH= mechanisms that send secrets are hidden */
};

/* SASL mechanisms that put a password or a bearer token on the wire as it
 * is: refused before TLS where TLS is required. */
bool capability_mechanism_in_clear(const char *mech, size_t len);

/* Largest {n+} the upstream takes without a "+" first. */
#define LITERAL_MINUS_MAX 4096

/* Learn caps from a capability list: atoms separated by spaces. */
void capability_learn(struct upstream_caps *, const char *list, size_t len);

/* Write the client's view of list into out (no CRLF). */
void capability_rewrite(const struct capability_policy *, const char *list,
    size_t len, struct evbuffer *out);

/* May a {n+} of this size go to the upstream as it is? */
bool capability_nonsync_ok(const struct upstream_caps *, uint64_t size);

#endif

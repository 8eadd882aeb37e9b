/*
 * tls.h — OpenSSL contexts: one for the client side (certificate and key
 * from the configuration), one for the upstream side (certificate
 * verification with host name check), both per configuration: a reload's
 * new configuration gets its own.
 */
#ifndef MAPPEND_TLS_H
#define MAPPEND_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

struct backend;
struct config;

/* Load what tls_init would (certificate, key and their match, the
 * upstream's CA file) without keeping it: -1 with the reason in err. */
int tls_check(const struct config *, char *err, size_t errlen);
/*
 * Build the contexts cfg asks for and attach them to it (they go with its
 * last reference): the client side's from tls_cert and tls_key, read now;
 * the upstream side's, shared with old's (may be NULL) when upstream_tls_verify
 * and upstream_ca_file are the same.  -1 with the reason in err.
 */
int tls_prepare(const struct config *cfg, const struct config *old, char *err,
    size_t errlen);
/* Log the warning about upstream_tls_verify = no, unless old said it. */
void tls_warn_unverified(const struct config *cfg, const struct config *old);
/* At start: tls_prepare(cfg, NULL), errors and the warning logged; 0 or -1. */
int tls_init(const struct config *);

/* Can clients of a session under cfg get TLS (a certificate is configured)? */
bool tls_server_available(const struct config *cfg);
/* A new SSL for an accepted client under cfg, NULL on error. */
SSL *tls_server_ssl(const struct config *cfg);

/* A new SSL for a connection to backend b of cfg (b may be a copy made for
 * a route: it is found by name): SNI and name check for name (a host name
 * or an IP address), NULL on error. */
SSL *tls_upstream_ssl(const struct config *cfg, const struct backend *b,
    const char *name);

/* The last OpenSSL error of this thread, as text, for logs. */
const char *tls_error(void);

#endif

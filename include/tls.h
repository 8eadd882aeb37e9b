/*
 * tls.h — OpenSSL contexts: one for the client side (certificate and key
 * from the configuration, reloaded on SIGHUP), one for the upstream side
 * (certificate verification with host name check).
 */
#ifndef MAPPEND_TLS_H
#define MAPPEND_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

struct config;

/* Load what tls_init would (certificate, key and their match, the
 * upstream's CA file) without keeping it: -1 with the reason in err. */
int tls_check(const struct config *, char *err, size_t errlen);
/* Build the contexts the configuration asks for; -1 (logged) on error. */
int tls_init(const struct config *);
/* Load the certificate and key again; on any error the old ones stay. */
int tls_reload(const struct config *);
void tls_free(void);

/* Can clients get TLS (a certificate is configured)? */
bool tls_server_available(void);
/* A new SSL for an accepted client, NULL on error. */
SSL *tls_server_ssl(void);

/* A new SSL for a connection to the upstream: SNI and name check for
 * name (a host name or an IP address), NULL on error. */
SSL *tls_upstream_ssl(const char *name);

/* The last OpenSSL error of this thread, as text, for logs. */
const char *tls_error(void);

#endif

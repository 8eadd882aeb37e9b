/*
 * tls.c — OpenSSL contexts for both sides.
 *
 * Client side: TLS 1.2 and newer, OpenSSL's default ciphers, ALPN "imap"
 * accepted.  Upstream side: the peer's chain is verified against the
 * system store or a configured CA file, and its name against the
 * configured one.
 *
 * The contexts belong to a configuration (config_attach) and live as long
 * as it does: a session uses those of the configuration it started with,
 * STARTTLS included, and a reload builds the new configuration's before it
 * is put in place (the certificate and key are read again; the upstream's
 * context is shared when its settings did not change).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "log.h"
#include "tls.h"

/* What tls_prepare attaches to a configuration. */
struct tls_contexts {
	SSL_CTX *server;	/* NULL: no tls_cert */
	/* per backend: [0] the default, [1 + i] backends[i]; NULL for plain.
	 * Backends that trust alike share one (a reference each). */
	SSL_CTX *upstream[1 + CONFIG_MAX_BACKENDS];
};

static size_t
nbackends(const struct config *cfg)
{
	return 1 + cfg->nbackends;
}

/* Backend i of the contexts' numbering. */
static const struct backend *
backend_at(const struct config *cfg, size_t i)
{
	return i == 0 ? &cfg->upstream : &cfg->backends[i - 1];
}

const char *
tls_error(void)
{
	static char buf[256];
	unsigned long e = ERR_get_error();

	if (e == 0)
		return "unknown TLS error";
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return buf;
}

/* ALPN: "imap" if the client offers it; other lists are not refused. */
static int
select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char imap[] = "\x04imap";

	(void)ssl;
	(void)arg;
	if (SSL_select_next_proto((unsigned char **)out, outlen, imap, sizeof(imap) - 1,
	    in, inlen) == OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_OK;
	return SSL_TLSEXT_ERR_NOACK;
}

/* The client side's context; NULL with the reason in err. */
static SSL_CTX *
server_context(const struct config *cfg, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		snprintf(err, errlen, "TLS: %s", tls_error());
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* idle sessions give their buffers back */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
		snprintf(err, errlen, "tls_cert %s: %s", cfg->tls_cert, tls_error());
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1) {
		unsigned long e = ERR_peek_error();

		/* OpenSSL checks the pair here already; say it the admin's way */
		if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
		    ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
			snprintf(err, errlen, "tls_key %s does not match tls_cert %s "
			    "(a key of another certificate?)", cfg->tls_key,
			    cfg->tls_cert);
		else
			snprintf(err, errlen, "tls_key %s: %s", cfg->tls_key, tls_error());
		ERR_clear_error();
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "tls_key %s does not match tls_cert %s: %s",
		    cfg->tls_key, cfg->tls_cert, tls_error());
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* The upstream side's context; NULL with the reason in err. */
static SSL_CTX *
upstream_context(const struct backend *b, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		snprintf(err, errlen, "TLS: %s", tls_error());
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (b->ca_file[0] != '\0') {
		if (SSL_CTX_load_verify_locations(ctx, b->ca_file, NULL) != 1) {
			snprintf(err, errlen, "%s%s%supstream_ca_file %s: %s",
			    b->name[0] != '\0' ? "[backend " : "", b->name,
			    b->name[0] != '\0' ? "] " : "", b->ca_file, tls_error());
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		snprintf(err, errlen, "cannot load the system's CA certificates: %s",
		    tls_error());
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, b->tls_verify ? SSL_VERIFY_PEER :
	    SSL_VERIFY_NONE, NULL);
	return ctx;
}

int
tls_check(const struct config *cfg, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	if (cfg->tls_cert[0] != '\0') {
		if ((ctx = server_context(cfg, err, errlen)) == NULL)
			return -1;
		SSL_CTX_free(ctx);
	}
	for (size_t i = 0; i < nbackends(cfg); i++) {
		const struct backend *b = backend_at(cfg, i);

		if (b->tls == UPSTREAM_PLAIN && b->ca_file[0] == '\0')
			continue;
		if ((ctx = upstream_context(b, err, errlen)) == NULL)
			return -1;
		SSL_CTX_free(ctx);
	}
	return 0;
}

static void
contexts_free(void *p)
{
	struct tls_contexts *c = p;

	SSL_CTX_free(c->server);
	for (size_t i = 0; i < 1 + CONFIG_MAX_BACKENDS; i++)
		SSL_CTX_free(c->upstream[i]);
	free(c);
}

static const struct tls_contexts *
contexts(const struct config *cfg)
{
	return config_attached(cfg);
}

/* The upstream's context depends on these only (the name to verify is set
 * per connection). */
static bool
same_upstream_trust(const struct backend *a, const struct backend *b)
{
	return a->tls_verify == b->tls_verify && strcmp(a->ca_file, b->ca_file) == 0;
}

/* A context that trusts as b does, from those made already (c) or the
 * previous configuration's (o, old): a new reference, or NULL. */
static SSL_CTX *
shared_context(const struct backend *b, const struct config *cfg,
    const struct tls_contexts *c, const struct config *old,
    const struct tls_contexts *o)
{
	for (size_t i = 0; i < nbackends(cfg); i++)
		if (c->upstream[i] != NULL &&
		    same_upstream_trust(b, backend_at(cfg, i)) &&
		    SSL_CTX_up_ref(c->upstream[i]) == 1)
			return c->upstream[i];
	for (size_t i = 0; o != NULL && i < nbackends(old); i++)
		if (o->upstream[i] != NULL &&
		    same_upstream_trust(b, backend_at(old, i)) &&
		    SSL_CTX_up_ref(o->upstream[i]) == 1)
			return o->upstream[i];
	return NULL;
}

int
tls_prepare(const struct config *cfg, const struct config *old, char *err,
    size_t errlen)
{
	const struct tls_contexts *o = old != NULL ? contexts(old) : NULL;
	struct tls_contexts *c = calloc(1, sizeof *c);

	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (cfg->tls_cert[0] != '\0' &&
	    (c->server = server_context(cfg, err, errlen)) == NULL) {
		contexts_free(c);
		return -1;
	}
	for (size_t i = 0; i < nbackends(cfg); i++) {
		const struct backend *b = backend_at(cfg, i);

		if (b->tls == UPSTREAM_PLAIN)
			continue;
		if ((c->upstream[i] = shared_context(b, cfg, c, old, o)) == NULL &&
		    (c->upstream[i] = upstream_context(b, err, errlen)) == NULL) {
			contexts_free(c);
			return -1;
		}
	}
	config_attach(cfg, c, contexts_free);
	return 0;
}

static bool
unverified(const struct backend *b)
{
	return b != NULL && b->tls != UPSTREAM_PLAIN && !b->tls_verify;
}

void
tls_warn_unverified(const struct config *cfg, const struct config *old)
{
	for (size_t i = 0; i < nbackends(cfg); i++) {
		const struct backend *b = backend_at(cfg, i);

		if (!unverified(b) || (old != NULL &&
		    unverified(config_backend(old, b->name))))
			continue;	/* nothing to say, or said already */
		log_warn(0, "%s%s%supstream_tls_verify = no: the upstream's "
		    "certificate is NOT checked; anyone on the path can read and "
		    "change the traffic, passwords included",
		    b->name[0] != '\0' ? "[backend " : "", b->name,
		    b->name[0] != '\0' ? "] " : "");
	}
}

int
tls_init(const struct config *cfg)
{
	char err[1024];

	if (tls_prepare(cfg, NULL, err, sizeof err) != 0) {
		log_error(0, "%s", err);
		return -1;
	}
	tls_warn_unverified(cfg, NULL);
	return 0;
}

bool
tls_server_available(const struct config *cfg)
{
	const struct tls_contexts *c = contexts(cfg);

	return c != NULL && c->server != NULL;
}

SSL *
tls_server_ssl(const struct config *cfg)
{
	return tls_server_available(cfg) ? SSL_new(contexts(cfg)->server) : NULL;
}

/* The context of cfg's backend that b is (or was copied from). */
static SSL_CTX *
backend_context(const struct config *cfg, const struct backend *b)
{
	const struct tls_contexts *c = contexts(cfg);
	const struct backend *mine = config_backend(cfg, b->name);

	if (c == NULL || mine == NULL)
		return NULL;
	return c->upstream[mine == &cfg->upstream ? 0 :
	    (size_t)(mine - cfg->backends) + 1];
}

SSL *
tls_upstream_ssl(const struct config *cfg, const struct backend *b,
    const char *name)
{
	SSL_CTX *ctx = backend_context(cfg, b);
	SSL *ssl;
	unsigned char addr[16];
	bool is_ip = inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;

	if (ctx == NULL || (ssl = SSL_new(ctx)) == NULL)
		return NULL;
	/* SNI carries host names only, never addresses (RFC 6066) */
	if (!is_ip)
		SSL_set_tlsext_host_name(ssl, name);
	if (b->tls_verify) {
		X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
		int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name) :
		    X509_VERIFY_PARAM_set1_host(param, name, 0);

		if (ok != 1) {
			SSL_free(ssl);
			return NULL;
		}
	}
	return ssl;
}

/*
 * mock_tls.c — the mock's TLS: one server context from --tls-cert and
 * --tls-key (TLS 1.2 and later; ALPN "imap" accepted when offered), and the
 * filter bufferevent that puts a connection under TLS, at accept (implicit
 * TLS) or after STARTTLS.  Both use a filter over the socket's bufferevent,
 * so that a connection has one shape whichever way it got its TLS.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>

#include "mock.h"

static void
tls_error(const char *what, const char *path)
{
	unsigned long e = ERR_get_error();
	char reason[256] = "unknown error";

	if (e != 0)
		ERR_error_string_n(e, reason, sizeof(reason));
	fprintf(stderr, "mock_imapd: %s %s: %s\n", what, path, reason);
	ERR_clear_error();
}

/* Selects "imap" from the client's list, or continues without ALPN. */
static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	unsigned int i;

	(void)ssl;
	(void)arg;
	for (i = 0; i < inlen && i + 1u + in[i] <= inlen; i += 1u + in[i]) {
		if (in[i] == 4 && memcmp(in + i + 1, "imap", 4) == 0) {
			*out = in + i + 1;
			*outlen = 4;
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_NOACK;
}

bool
mock_tls_init(const char *cert, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		tls_error("cannot create a TLS context", "");
		return false;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* a file with the leaf followed by its chain works too */
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		tls_error("cannot load certificate", cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		tls_error("cannot load private key", key);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		tls_error("private key does not match certificate", cert);
		goto fail;
	}
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	mock_srv.tls_ctx = ctx;
	return true;
fail:
	SSL_CTX_free(ctx);
	return false;
}

void
mock_tls_free(void)
{
	SSL_CTX_free(mock_srv.tls_ctx);
	mock_srv.tls_ctx = NULL;
}

struct bufferevent *
mock_tls_filter(struct bufferevent *raw)
{
	SSL *ssl = SSL_new(mock_srv.tls_ctx);
	struct bufferevent *f;

	if (ssl == NULL)
		return NULL;
	/* frees ssl itself when it fails */
	f = bufferevent_openssl_filter_new(mock_srv.base, raw, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (f == NULL)
		return NULL;
	/* a client that closes without close_notify is an EOF, as in
	 * plain text, not an error */
	bufferevent_openssl_set_allow_dirty_shutdown(f, 1);
	return f;
}

void
mock_tls_close_notify(struct bufferevent *tls)
{
	SSL *ssl = bufferevent_openssl_get_ssl(tls);

	if (ssl != NULL && SSL_is_init_finished(ssl))
		SSL_shutdown(ssl);
	ERR_clear_error();
}

void
mock_tls_describe(struct bufferevent *tls, char *buf, size_t len)
{
	SSL *ssl = bufferevent_openssl_get_ssl(tls);
	const unsigned char *alpn = NULL;
	unsigned int alpnlen = 0;

	if (ssl == NULL) {
		snprintf(buf, len, "no TLS");
		return;
	}
	SSL_get0_alpn_selected(ssl, &alpn, &alpnlen);
	snprintf(buf, len, "%s %s alpn=%.*s", SSL_get_version(ssl),
	    SSL_get_cipher_name(ssl), alpn != NULL ? (int)alpnlen : 4,
	    alpn != NULL ? (const char *)alpn : "none");
}

/*
 * tlsmem.c — what OpenSSL itself keeps per server-side TLS connection once
 * the handshake is over: the share of an idle TLS session's memory that no
 * proxy can give back.  n connections over socketpairs, the server side set
 * up as mappend's (proxy/tls.c: TLS 1.2 and newer, SSL_MODE_RELEASE_BUFFERS,
 * no renegotiation), one command and answer each, then the heap in use
 * (mallinfo2, every arena) with the n server objects alive against before.
 */
#include <fcntl.h>
#include <malloc.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "bench.h"

static size_t
heap_in_use(void)
{
	struct mallinfo2 m = mallinfo2();

	return m.uordblks + m.hblkhd;
}

/* A handshake and one exchange on a fresh pair; NULL on failure. */
static SSL *
connected_server(SSL_CTX *sctx, SSL_CTX *cctx, int *fd)
{
	SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
	char buf[64];
	int sv[2], i;

	if (s == NULL || c == NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		die("tlsmem: out of resources");
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	SSL_set_fd(s, sv[0]);
	SSL_set_fd(c, sv[1]);
	SSL_set_accept_state(s);
	SSL_set_connect_state(c);
	for (i = 0; i < 50 && !(SSL_is_init_finished(s) && SSL_is_init_finished(c)); i++) {
		(void)SSL_do_handshake(c);
		(void)SSL_do_handshake(s);
	}
	if (!SSL_is_init_finished(s) || !SSL_is_init_finished(c))
		die("tlsmem: no TLS handshake");
	/* the client reads its tickets; the buffers are released after use */
	(void)SSL_write(c, "a NOOP\r\n", 8);
	(void)SSL_read(s, buf, sizeof(buf));
	(void)SSL_write(s, "a OK\r\n", 6);
	(void)SSL_read(c, buf, sizeof(buf));
	SSL_free(c);
	close(sv[1]);
	*fd = sv[0];
	return s;
}

double
tls_server_kib(const char *cert, const char *key, int n, char *version, size_t vlen)
{
	SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL **srv = xmalloc((size_t)n * sizeof(*srv));
	int *fds = xmalloc((size_t)n * sizeof(*fds));
	size_t before, after;
	int i, warm;

	if (sctx == NULL || cctx == NULL ||
	    SSL_CTX_use_certificate_chain_file(sctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(sctx, key, SSL_FILETYPE_PEM) != 1)
		die("tlsmem: cannot load %s and %s", cert, key);
	SSL_CTX_set_min_proto_version(sctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(sctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(sctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(cctx, SSL_MODE_RELEASE_BUFFERS);
	/* OpenSSL makes some things once, at the first handshake */
	for (i = 0; i < 2; i++) {
		SSL *s = connected_server(sctx, cctx, &warm);

		SSL_free(s);
		close(warm);
	}
	before = heap_in_use();
	for (i = 0; i < n; i++)
		srv[i] = connected_server(sctx, cctx, &fds[i]);
	after = heap_in_use();
	snprintf(version, vlen, "%s, %s", SSL_get_version(srv[0]),
	    SSL_CIPHER_get_name(SSL_get_current_cipher(srv[0])));
	for (i = 0; i < n; i++) {
		SSL_free(srv[i]);
		close(fds[i]);
	}
	free(srv);
	free(fds);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	return after > before ? (double)(after - before) / n / 1024 : 0;
}

/*
 * proxyproto.h — the PROXY protocol (HAProxy's doc/proxy-protocol.txt),
 * versions 1 and 2, receiving side: the header a load balancer puts before
 * the client's first byte, naming the client's real address.  A pure parser
 * over bytes, with two readers around it (an evbuffer, or a socket that no
 * byte past the header is taken from), the networks a header is believed
 * from, and a builder for tests.  Nothing here knows about sessions.
 */
#ifndef MAPPEND_PROXYPROTO_H
#define MAPPEND_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>
#include <sys/socket.h>

struct evbuffer;

/* The spec's longest v1 line, CRLF included. */
#define PROXYPROTO_V1_MAX 107
/*
 * Our bound on a v2 header: 16 bytes plus up to 2032 of addresses and TLVs
 * (the spec allows 65535).  Real senders stay far below: HAProxy's SSL and
 * unique-id TLVs, AWS, GCP and Azure ids take a few hundred bytes at most.
 * Also the most any reader holds or looks at before it decides.
 */
#define PROXYPROTO_MAX 2048

/* Most networks in all proxy_protocol_from lines together. */
#define PROXYPROTO_MAX_NETWORKS 64

enum proxyproto_result {
	PROXYPROTO_MORE,	/* a header so far; its end has not arrived */
	PROXYPROTO_DONE,	/* a complete header, consumed; *out filled */
	PROXYPROTO_ERROR,	/* not a header, or a bad one; *why says which */
};

enum proxyproto_command {
	/* src and dst hold the client's address and the one it connected to */
	PROXYPROTO_PROXY,
	/* v2 LOCAL: the balancer's own connection (a health check); keep the
	 * connection's own addresses */
	PROXYPROTO_LOCAL,
	/* v1 UNKNOWN; v2 PROXY with UNSPEC, AF_UNIX or DGRAM (which the spec
	 * says to treat as UNSPEC): keep the connection's own addresses */
	PROXYPROTO_UNKNOWN,
};

struct proxyproto_addr {
	unsigned version;		/* 1 or 2 */
	enum proxyproto_command command;
	/* PROXYPROTO_PROXY only: AF_INET or AF_INET6 with port, both of the
	 * same family; otherwise ss_family is AF_UNSPEC and len is 0 */
	struct sockaddr_storage src;	/* the client */
	struct sockaddr_storage dst;	/* the address it connected to */
	socklen_t len;			/* of src and of dst */
	size_t header_len;		/* bytes the header took */
};

/*
 * The header at the start of buf[0..len): DONE with *used its length (all
 * of it, and nothing after it), MORE when buf is the start of a header that
 * goes on (only ever when len < PROXYPROTO_MAX), ERROR as soon as the bytes
 * cannot start a header (an IMAP command fails at its first byte).  *out is
 * written only on DONE.  why, on ERROR: a static sentence for the log.
 */
enum proxyproto_result proxyproto_parse(const void *buf, size_t len,
    struct proxyproto_addr *out, size_t *used, const char **why);

/*
 * The same at the start of in: on DONE the header, and only it, is drained
 * from in; the bytes after it (the client's) stay.  Call again when more has
 * arrived; it looks at PROXYPROTO_MAX bytes at most.
 */
enum proxyproto_result proxyproto_read(struct evbuffer *in,
    struct proxyproto_addr *out, const char **why);

/*
 * A reader on a non-blocking socket that never takes a byte past the
 * header (it peeks, then takes only header bytes), so that afterwards the
 * socket can be given as it is to a TLS or plain bufferevent.  One per
 * connection, zeroed before the first call; call on each read event.
 * MORE also when nothing could be read (EAGAIN).  ERROR when the peer
 * closed or reading failed (errno kept, why says which) or the header is bad.
 */
struct proxyproto_reader {
	size_t len;			/* header bytes taken so far */
	unsigned char buf[PROXYPROTO_MAX];
};
enum proxyproto_result proxyproto_recv(int fd, struct proxyproto_reader *r,
    struct proxyproto_addr *out, const char **why);

/*
 * The header for a (version 1 or 2) into buf[0..len): its length, or -1
 * when it does not fit or a cannot be sent in that version (LOCAL in v1).
 * For tests, and for sending one to a server that wants it.
 */
int proxyproto_build(const struct proxyproto_addr *a, unsigned version,
    void *buf, size_t len);

/* The networks headers are accepted from (proxy_protocol_from). */
struct proxyproto_net {
	int family;			/* AF_INET or AF_INET6 */
	unsigned prefix;		/* bits: 0..32 or 0..128 */
	unsigned char addr[16];		/* network byte order; bits after prefix 0 */
};
struct cidr_list {
	size_t n;
	struct proxyproto_net net[PROXYPROTO_MAX_NETWORKS];
};

/*
 * Append "10.0.0.0/8, ::1/128, 192.0.2.7" to l: networks separated by
 * commas, a bare address meaning that host.  0 or -1 with the reason in
 * why (e.g. host bits set after the prefix, too many networks); on -1 l is
 * as it was.
 */
int proxyproto_cidr_parse(struct cidr_list *l, const char *s, char *why,
    size_t whylen);

/* Is peer in one of l's networks?  An IPv4-mapped IPv6 peer
 * (::ffff:10.1.2.3) counts as its IPv4 address too.  AF_UNIX never is. */
bool proxyproto_trusted(const struct sockaddr *peer, const struct cidr_list *l);

#endif

/*
 * proxyproto.c — the PROXY protocol header, v1 (one text line) and v2
 * (binary), read from the start of a connection a load balancer opened.
 * The parser looks at bytes only and decides as early as it can: a
 * connection that starts with anything but a header is refused at its first
 * byte that cannot belong to one, and a header is never taken for longer
 * than the spec (v1) or our bound (v2) allows.  A header is believed only
 * from the networks of proxy_protocol_from, which the caller checks with
 * proxyproto_trusted before it reads one.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>

#include "proxyproto.h"

#define V1_PREFIX "PROXY "
#define V1_PREFIX_LEN 6
#define V2_HEADER_LEN 16
#define V2_VERSION 0x2
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_FAM_UNSPEC 0x0
#define V2_FAM_INET 0x1
#define V2_FAM_INET6 0x2
#define V2_FAM_UNIX 0x3
#define V2_PROTO_UNSPEC 0x0
#define V2_PROTO_STREAM 0x1
#define V2_PROTO_DGRAM 0x2
#define V2_INET_LEN 12		/* 2 * 4 address bytes + 2 * 2 port bytes */
#define V2_INET6_LEN 36		/* 2 * 16 + 2 * 2 */
#define V2_UNIX_LEN 216		/* 2 * 108 */
#define V2_TLV_HEADER_LEN 3	/* type, 16-bit length */
#define V4_TEXT_MAX 15		/* 255.255.255.255 */
#define V6_TEXT_MAX 45		/* what inet_pton reads: ffff:...:255.255.255.255 */
#define PORT_TEXT_MAX 5

static const unsigned char v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

static enum proxyproto_result
fail(const char **why, const char *reason)
{
	if (why != NULL)
		*why = reason;
	return PROXYPROTO_ERROR;
}

/* Why the first byte cannot start a header: a hint for the log, since the
 * usual cause is a balancer not configured to send one. */
static const char *
not_a_header(unsigned char first)
{
	if (first == 0x16)
		return "no PROXY protocol header: the connection starts with a TLS "
		    "handshake (is the load balancer sending the header?)";
	return "no PROXY protocol header: the connection starts with something "
	    "else (is the load balancer sending the header?)";
}

static size_t
min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

static bool
is_digit(unsigned char ch)
{
	return ch >= '0' && ch <= '9';
}

static bool
is_hex(unsigned char ch)
{
	return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/*
 * Version 1: "PROXY TCP4 SRC DST SPORT DPORT\r\n", "PROXY TCP6 ...",
 * "PROXY UNKNOWN[ anything]\r\n", single spaces, at most 107 bytes.
 */

enum v1_proto { V1_NONE, V1_TCP4, V1_TCP6, V1_UNKNOWN };

enum v1_field { F_PROXY, F_PROTO, F_SRC, F_DST, F_SPORT, F_DPORT, F_COUNT };

static const char *const v1_protos[] = { "TCP4", "TCP6", "UNKNOWN" };

/* A port: decimal, no leading zero, 0..65535.  partial: only its start
 * has arrived, so it need only be able to become one. */
static bool
v1_port_ok(const unsigned char *f, size_t n, bool partial, uint16_t *port)
{
	unsigned v = 0;

	if (n == 0)
		return partial;
	if (n > PORT_TEXT_MAX || (f[0] == '0' && n > 1))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(f[i]))
			return false;
		v = v * 10 + (unsigned)(f[i] - '0');
	}
	if (v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

/* An address of the line's family: dotted decimal without leading zeros for
 * TCP4 (no octal confusion), what inet_pton takes for TCP6.  A partial one
 * is checked for its characters and length only. */
static bool
v1_addr_ok(enum v1_proto proto, const unsigned char *f, size_t n, bool partial,
    void *addr)
{
	char text[V6_TEXT_MAX + 1];
	size_t max = proto == V1_TCP4 ? V4_TEXT_MAX : V6_TEXT_MAX;

	if (n == 0)
		return partial;
	if (n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = f[i];

		if (proto == V1_TCP4) {
			if (!is_digit(ch) && ch != '.')
				return false;
			/* a "0" that starts a number and is followed by a digit */
			if (ch == '0' && (i == 0 || f[i - 1] == '.') && i + 1 < n &&
			    is_digit(f[i + 1]))
				return false;
		} else if (!is_hex(ch) && ch != ':' && ch != '.') {
			return false;
		}
	}
	if (partial)
		return true;
	memcpy(text, f, n);
	text[n] = '\0';
	return inet_pton(proto == V1_TCP4 ? AF_INET : AF_INET6, text, addr) == 1;
}

/* The protocol word, or (partial) the start of one. */
static enum v1_proto
v1_proto(const unsigned char *f, size_t n, bool partial)
{
	for (size_t i = 0; i < sizeof v1_protos / sizeof v1_protos[0]; i++) {
		size_t len = strlen(v1_protos[i]);

		if (partial ? n <= len && memcmp(f, v1_protos[i], n) == 0 :
		    n == len && memcmp(f, v1_protos[i], n) == 0)
			return (enum v1_proto)(i + 1);
	}
	return V1_NONE;
}

static void
set_inet(struct sockaddr_storage *ss, int family, const void *addr,
    uint16_t port)
{
	memset(ss, 0, sizeof *ss);
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)(void *)ss;

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, addr, 4);
		sin->sin_port = htons(port);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)ss;

		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, addr, 16);
		sin6->sin6_port = htons(port);
	}
}

static void
addr_init(struct proxyproto_addr *a, unsigned version,
    enum proxyproto_command command)
{
	memset(a, 0, sizeof *a);
	a->version = version;
	a->command = command;
	a->src.ss_family = AF_UNSPEC;
	a->dst.ss_family = AF_UNSPEC;
}

/* The fields of a v1 line, as read so far. */
struct v1_fields {
	enum v1_proto proto;
	unsigned char src[16], dst[16];
	uint16_t sport, dport;
};

/*
 * Field k (F_PROTO...), f[0..len); partial: it may be cut short.  0 to go
 * on, 1 when the line says no more (UNKNOWN), -1 with *why.
 */
static int
v1_field(struct v1_fields *v, int k, const unsigned char *f, size_t len,
    bool partial, const char **why)
{
	switch (k) {
	case F_PROTO:
		v->proto = v1_proto(f, len, partial);
		if (v->proto == V1_NONE) {
			*why = "v1: unknown protocol (expected TCP4, TCP6 or "
			    "UNKNOWN after \"PROXY \")";
			return -1;
		}
		/* the spec: whatever follows UNKNOWN is ignored */
		return v->proto == V1_UNKNOWN && !partial ? 1 : 0;
	case F_SRC:
		if (v1_addr_ok(v->proto, f, len, partial, v->src))
			return 0;
		*why = v->proto == V1_TCP4 ?
		    "v1: bad source address (expected a dotted-quad "
		    "IPv4 address without leading zeros)" :
		    "v1: bad source address (expected an IPv6 address)";
		return -1;
	case F_DST:
		if (v1_addr_ok(v->proto, f, len, partial, v->dst))
			return 0;
		*why = v->proto == V1_TCP4 ?
		    "v1: bad destination address (expected a "
		    "dotted-quad IPv4 address without leading zeros)" :
		    "v1: bad destination address (expected an IPv6 "
		    "address)";
		return -1;
	case F_SPORT:
		if (v1_port_ok(f, len, partial, &v->sport))
			return 0;
		*why = "v1: bad source port (expected 0 to 65535, "
		    "no leading zeros)";
		return -1;
	default:
		if (v1_port_ok(f, len, partial, &v->dport))
			return 0;
		*why = "v1: bad destination port (expected 0 to 65535, "
		    "no leading zeros)";
		return -1;
	}
}

static void
v1_fill(struct proxyproto_addr *a, const struct v1_fields *v)
{
	addr_init(a, 1, PROXYPROTO_PROXY);
	if (v->proto == V1_TCP4) {
		set_inet(&a->src, AF_INET, v->src, v->sport);
		set_inet(&a->dst, AF_INET, v->dst, v->dport);
		a->len = sizeof(struct sockaddr_in);
	} else {
		set_inet(&a->src, AF_INET6, v->src, v->sport);
		set_inet(&a->dst, AF_INET6, v->dst, v->dport);
		a->len = sizeof(struct sockaddr_in6);
	}
}

/*
 * The line p[0..n), CRLF excluded.  complete: the CRLF followed it;
 * otherwise it is what has arrived so far, and its last field may be cut
 * short.  0 (a filled, when complete), or -1 with *why.
 */
static int
v1_line(const unsigned char *p, size_t n, bool complete,
    struct proxyproto_addr *a, const char **why)
{
	struct v1_fields v = { .proto = V1_NONE };
	size_t pos = V1_PREFIX_LEN;
	int k = F_PROTO, r;

	if (n < V1_PREFIX_LEN)		/* the caller checked what there is */
		return 0;
	for (;;) {
		const unsigned char *f = p + pos, *sp = memchr(f, ' ', n - pos);
		size_t len = sp != NULL ? (size_t)(sp - f) : n - pos;
		bool last = sp == NULL;

		r = v1_field(&v, k, f, len, last && !complete, why);
		if (r < 0)
			return -1;
		if (r > 0) {		/* UNKNOWN */
			if (complete)
				addr_init(a, 1, PROXYPROTO_UNKNOWN);
			return 0;
		}
		if (last)
			break;
		pos += len + 1;
		if (++k == F_COUNT) {
			*why = "v1: too many fields (expected PROXY TCP4|TCP6 SRC DST "
			    "SPORT DPORT)";
			return -1;
		}
	}
	if (!complete)
		return 0;
	if (k != F_DPORT) {
		*why = "v1: missing fields (expected PROXY TCP4|TCP6 SRC DST "
		    "SPORT DPORT)";
		return -1;
	}
	v1_fill(a, &v);
	return 0;
}

static enum proxyproto_result
v1_parse(const unsigned char *p, size_t len, struct proxyproto_addr *out,
    size_t *used, const char **why)
{
	struct proxyproto_addr a;
	size_t n = min_size(len, PROXYPROTO_V1_MAX), i;

	if (memcmp(p, V1_PREFIX, min_size(n, V1_PREFIX_LEN)) != 0)
		return fail(why, not_a_header(p[0]));
	/* a lone CR or LF never ends the line (the spec insists) */
	for (i = 0; i < n; i++) {
		if (p[i] == '\n')
			return fail(why, "v1: a line feed without carriage return");
		if (p[i] == '\r')
			break;
	}
	if (i < n && i + 1 < n) {
		if (p[i + 1] != '\n')
			return fail(why, "v1: a carriage return without line feed");
		if (v1_line(p, i, true, &a, why) < 0)
			return PROXYPROTO_ERROR;
		a.header_len = i + 2;
		*out = a;
		*used = a.header_len;
		return PROXYPROTO_DONE;
	}
	if (n == PROXYPROTO_V1_MAX)
		return fail(why, "v1: no CRLF within the first 107 bytes");
	if (v1_line(p, i, false, &a, why) < 0)
		return PROXYPROTO_ERROR;
	return PROXYPROTO_MORE;
}

/*
 * Version 2: 12 bytes of signature, version and command, family and
 * transport, the length of the rest (addresses, then TLVs).
 */

static uint16_t
get16(const unsigned char *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* TLVs fill [off, end) exactly: each one's value inside the header.  Their
 * number is bounded by the header's length (3 bytes each at least). */
static int
v2_tlvs_ok(const unsigned char *p, size_t off, size_t end)
{
	size_t vlen;

	while (off < end) {
		if (end - off < V2_TLV_HEADER_LEN)
			return -1;
		vlen = get16(p + off + 1);
		off += V2_TLV_HEADER_LEN;
		if (vlen > end - off)
			return -1;
		off += vlen;
	}
	return 0;
}

static enum proxyproto_result
v2_parse(const unsigned char *p, size_t len, struct proxyproto_addr *out,
    size_t *used, const char **why)
{
	struct proxyproto_addr a;
	unsigned cmd, fam, proto;
	size_t total, need = 0;

	if (memcmp(p, v2_sig, min_size(len, sizeof v2_sig)) != 0)
		return fail(why, not_a_header(p[0]));
	if (len <= sizeof v2_sig)
		return PROXYPROTO_MORE;
	if (p[12] >> 4 != V2_VERSION)
		return fail(why, "v2: unknown version (expected 2)");
	cmd = p[12] & 0x0f;
	if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
		return fail(why, "v2: unknown command (expected LOCAL or PROXY)");
	if (len < 14)
		return PROXYPROTO_MORE;
	fam = p[13] >> 4;
	proto = p[13] & 0x0f;
	if (fam > V2_FAM_UNIX)
		return fail(why, "v2: unknown address family");
	if (proto > V2_PROTO_DGRAM)
		return fail(why, "v2: unknown transport protocol");
	if (len < V2_HEADER_LEN)
		return PROXYPROTO_MORE;
	total = V2_HEADER_LEN + (size_t)get16(p + 14);
	if (total > PROXYPROTO_MAX)
		return fail(why, "v2: header longer than mappend accepts "
		    "(2048 bytes: addresses and TLVs)");
	/* the address block's size where family and transport define it */
	if (fam != V2_FAM_UNSPEC && proto != V2_PROTO_UNSPEC)
		need = fam == V2_FAM_INET ? V2_INET_LEN :
		    fam == V2_FAM_INET6 ? V2_INET6_LEN : V2_UNIX_LEN;
	/* LOCAL: the family is ignored, the block skipped whatever it holds */
	if (cmd == V2_CMD_LOCAL)
		need = 0;
	if (total - V2_HEADER_LEN < need)
		return fail(why, "v2: address block shorter than its family needs");
	if (len < total)
		return PROXYPROTO_MORE;
	if (need > 0 && v2_tlvs_ok(p, V2_HEADER_LEN + need, total) < 0)
		return fail(why, "v2: a TLV runs past the end of the header");

	if (cmd == V2_CMD_LOCAL) {
		addr_init(&a, 2, PROXYPROTO_LOCAL);
	} else if (proto == V2_PROTO_STREAM && fam == V2_FAM_INET) {
		const unsigned char *b = p + V2_HEADER_LEN;

		addr_init(&a, 2, PROXYPROTO_PROXY);
		set_inet(&a.src, AF_INET, b, get16(b + 8));
		set_inet(&a.dst, AF_INET, b + 4, get16(b + 10));
		a.len = sizeof(struct sockaddr_in);
	} else if (proto == V2_PROTO_STREAM && fam == V2_FAM_INET6) {
		const unsigned char *b = p + V2_HEADER_LEN;

		addr_init(&a, 2, PROXYPROTO_PROXY);
		set_inet(&a.src, AF_INET6, b, get16(b + 32));
		set_inet(&a.dst, AF_INET6, b + 16, get16(b + 34));
		a.len = sizeof(struct sockaddr_in6);
	} else {
		/* UNSPEC, AF_UNIX, DGRAM: the spec says fall back to UNSPEC */
		addr_init(&a, 2, PROXYPROTO_UNKNOWN);
	}
	a.header_len = total;
	*out = a;
	*used = total;
	return PROXYPROTO_DONE;
}

enum proxyproto_result
proxyproto_parse(const void *buf, size_t len, struct proxyproto_addr *out,
    size_t *used, const char **why)
{
	const unsigned char *p = buf;
	const char *ignored;

	if (why == NULL)
		why = &ignored;
	if (len == 0)
		return PROXYPROTO_MORE;
	if (p[0] == V1_PREFIX[0])
		return v1_parse(p, len, out, used, why);
	if (p[0] == v2_sig[0])
		return v2_parse(p, len, out, used, why);
	return fail(why, not_a_header(p[0]));
}

enum proxyproto_result
proxyproto_read(struct evbuffer *in, struct proxyproto_addr *out,
    const char **why)
{
	unsigned char buf[PROXYPROTO_MAX];
	size_t n = min_size(evbuffer_get_length(in), sizeof buf), used = 0;
	enum proxyproto_result r;
	ev_ssize_t got;

	got = evbuffer_copyout(in, buf, n);
	if (got < 0 || (size_t)got != n)
		return fail(why, "cannot read the input buffer");
	r = proxyproto_parse(buf, n, out, &used, why);
	if (r == PROXYPROTO_DONE && evbuffer_drain(in, used) != 0)
		return fail(why, "cannot drain the input buffer");
	return r;
}

/* Take exactly n bytes that a peek has shown are there into buf. */
static int
take(int fd, unsigned char *buf, size_t n)
{
	while (n > 0) {
		ssize_t got = recv(fd, buf, n, 0);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return -1;
		buf += got;
		n -= (size_t)got;
	}
	return 0;
}

enum proxyproto_result
proxyproto_recv(int fd, struct proxyproto_reader *r,
    struct proxyproto_addr *out, const char **why)
{
	enum proxyproto_result res;
	size_t used = 0;
	ssize_t got;

	/* parse never answers MORE on a full buffer, so there is room */
	if (r->len >= sizeof r->buf)
		return fail(why, "PROXY protocol header too long");
	do
		got = recv(fd, r->buf + r->len, sizeof r->buf - r->len, MSG_PEEK);
	while (got < 0 && errno == EINTR);
	if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return PROXYPROTO_MORE;
	if (got < 0)
		return fail(why, "cannot read the PROXY protocol header");
	if (got == 0)
		return fail(why, "connection closed before the end of the PROXY "
		    "protocol header");

	res = proxyproto_parse(r->buf, r->len + (size_t)got, out, &used, why);
	switch (res) {
	case PROXYPROTO_MORE:
		/* all of it is header: its end is still to come */
		if (take(fd, r->buf + r->len, (size_t)got) < 0)
			return fail(why, "cannot read the PROXY protocol header");
		r->len += (size_t)got;
		break;
	case PROXYPROTO_DONE:
		if (take(fd, r->buf + r->len, used - r->len) < 0)
			return fail(why, "cannot read the PROXY protocol header");
		r->len = used;
		break;
	case PROXYPROTO_ERROR:
		break;
	}
	return res;
}

static int
build_v1(const struct proxyproto_addr *a, char *buf, size_t len)
{
	char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
	const void *s, *d;
	unsigned sport, dport;
	int family = a->src.ss_family, n;

	if (a->command == PROXYPROTO_UNKNOWN) {
		n = snprintf(buf, len, "PROXY UNKNOWN\r\n");
		return n < 0 || (size_t)n >= len ? -1 : n;
	}
	if (a->command != PROXYPROTO_PROXY || family != a->dst.ss_family)
		return -1;
	if (family == AF_INET) {
		const struct sockaddr_in *si = (const void *)&a->src;
		const struct sockaddr_in *di = (const void *)&a->dst;

		s = &si->sin_addr;
		d = &di->sin_addr;
		sport = ntohs(si->sin_port);
		dport = ntohs(di->sin_port);
	} else if (family == AF_INET6) {
		const struct sockaddr_in6 *si = (const void *)&a->src;
		const struct sockaddr_in6 *di = (const void *)&a->dst;

		s = &si->sin6_addr;
		d = &di->sin6_addr;
		sport = ntohs(si->sin6_port);
		dport = ntohs(di->sin6_port);
	} else {
		return -1;
	}
	if (inet_ntop(family, s, src, sizeof src) == NULL ||
	    inet_ntop(family, d, dst, sizeof dst) == NULL)
		return -1;
	n = snprintf(buf, len, "PROXY %s %s %s %u %u\r\n",
	    family == AF_INET ? "TCP4" : "TCP6", src, dst, sport, dport);
	return n < 0 || (size_t)n >= len ? -1 : n;
}

static int
build_v2(const struct proxyproto_addr *a, unsigned char *buf, size_t len)
{
	int family = a->src.ss_family;
	size_t alen = 0;

	if (len < V2_HEADER_LEN)
		return -1;
	memcpy(buf, v2_sig, sizeof v2_sig);
	buf[12] = V2_VERSION << 4 |
	    (a->command == PROXYPROTO_LOCAL ? V2_CMD_LOCAL : V2_CMD_PROXY);
	buf[13] = V2_FAM_UNSPEC << 4 | V2_PROTO_UNSPEC;
	if (a->command == PROXYPROTO_PROXY) {
		if (family != a->dst.ss_family)
			return -1;
		if (family == AF_INET) {
			const struct sockaddr_in *si = (const void *)&a->src;
			const struct sockaddr_in *di = (const void *)&a->dst;

			alen = V2_INET_LEN;
			if (len < V2_HEADER_LEN + alen)
				return -1;
			buf[13] = V2_FAM_INET << 4 | V2_PROTO_STREAM;
			memcpy(buf + 16, &si->sin_addr, 4);
			memcpy(buf + 20, &di->sin_addr, 4);
			memcpy(buf + 24, &si->sin_port, 2);
			memcpy(buf + 26, &di->sin_port, 2);
		} else if (family == AF_INET6) {
			const struct sockaddr_in6 *si = (const void *)&a->src;
			const struct sockaddr_in6 *di = (const void *)&a->dst;

			alen = V2_INET6_LEN;
			if (len < V2_HEADER_LEN + alen)
				return -1;
			buf[13] = V2_FAM_INET6 << 4 | V2_PROTO_STREAM;
			memcpy(buf + 16, &si->sin6_addr, 16);
			memcpy(buf + 32, &di->sin6_addr, 16);
			memcpy(buf + 48, &si->sin6_port, 2);
			memcpy(buf + 50, &di->sin6_port, 2);
		} else {
			return -1;
		}
	}
	buf[14] = (unsigned char)(alen >> 8);
	buf[15] = (unsigned char)alen;
	return (int)(V2_HEADER_LEN + alen);
}

int
proxyproto_build(const struct proxyproto_addr *a, unsigned version, void *buf,
    size_t len)
{
	if (version == 1)
		return build_v1(a, buf, len);
	if (version == 2)
		return build_v2(a, buf, len);
	return -1;
}

/*
 * Networks.
 */

static void
whyf(char *why, size_t whylen, const char *elem, size_t elen, const char *what)
{
	if (why != NULL && whylen > 0)
		snprintf(why, whylen, "\"%.*s\": %s", (int)elen, elem, what);
}

/* Is s[0..n) a decimal without leading zero at most max?  Into *v. */
static bool
prefix_ok(const char *s, size_t n, unsigned max, unsigned *v)
{
	unsigned x = 0;

	if (n == 0 || n > 3 || (s[0] == '0' && n > 1))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit((unsigned char)s[i]))
			return false;
		x = x * 10 + (unsigned)(s[i] - '0');
	}
	if (x > max)
		return false;
	*v = x;
	return true;
}

/* Are the bits of addr after prefix all zero? */
static bool
host_bits_zero(const unsigned char *addr, size_t bytes, unsigned prefix)
{
	for (size_t i = 0; i < bytes; i++) {
		unsigned start = (unsigned)i * 8;
		unsigned char mask;

		if (start + 8 <= prefix)
			continue;
		mask = start >= prefix ? 0xff : (unsigned char)(0xff >> (prefix - start));
		if (addr[i] & mask)
			return false;
	}
	return true;
}

/* One "ADDR" or "ADDR/PREFIX" into *net; NULL or the reason. */
static const char *
parse_net(const char *s, size_t n, struct proxyproto_net *net, char *suggest,
    size_t suggestlen)
{
	char text[V6_TEXT_MAX + 1];
	const char *slash = memchr(s, '/', n);
	size_t alen = slash != NULL ? (size_t)(slash - s) : n;
	unsigned max;

	memset(net, 0, sizeof *net);
	if (alen == 0 || alen > V6_TEXT_MAX)
		return "expected an IPv4 or IPv6 address, optionally with /PREFIX";
	memcpy(text, s, alen);
	text[alen] = '\0';
	if (inet_pton(AF_INET, text, net->addr) == 1) {
		net->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, text, net->addr) == 1) {
		net->family = AF_INET6;
		max = 128;
	} else {
		return "expected an IPv4 or IPv6 address (no brackets, no host "
		    "names), optionally with /PREFIX";
	}
	net->prefix = max;
	if (slash != NULL && !prefix_ok(slash + 1, n - alen - 1, max, &net->prefix))
		return net->family == AF_INET ?
		    "expected a prefix length from 0 to 32 after \"/\"" :
		    "expected a prefix length from 0 to 128 after \"/\"";
	if (!host_bits_zero(net->addr, max / 8, net->prefix)) {
		unsigned char masked[16];
		char a[INET6_ADDRSTRLEN];

		memcpy(masked, net->addr, sizeof masked);
		for (size_t i = 0; i < max / 8; i++) {
			unsigned start = (unsigned)i * 8;

			if (start >= net->prefix)
				masked[i] = 0;
			else if (start + 8 > net->prefix)
				masked[i] &= (unsigned char)(0xff << (start + 8 - net->prefix));
		}
		if (inet_ntop(net->family, masked, a, sizeof a) == NULL)
			a[0] = '\0';
		snprintf(suggest, suggestlen, "bits set after the prefix length "
		    "(did you mean %s/%u?)", a, net->prefix);
		return suggest;
	}
	return NULL;
}

static bool
is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

int
proxyproto_cidr_parse(struct cidr_list *l, const char *s, char *why,
    size_t whylen)
{
	struct proxyproto_net nets[PROXYPROTO_MAX_NETWORKS];
	char suggest[160];
	size_t n = 0;

	for (;;) {
		const char *e, *comma = strchr(s, ',');
		const char *end = comma != NULL ? comma : s + strlen(s);
		const char *reason;

		while (s < end && is_blank(*s))
			s++;
		e = end;
		while (e > s && is_blank(e[-1]))
			e--;
		if (e == s) {
			if (why != NULL && whylen > 0)
				snprintf(why, whylen, "an empty entry; expected "
				    "networks separated by commas, e.g. "
				    "10.0.0.0/8, ::1/128");
			return -1;
		}
		if (l->n + n >= PROXYPROTO_MAX_NETWORKS) {
			if (why != NULL && whylen > 0)
				snprintf(why, whylen, "too many networks: at most %d "
				    "in all proxy_protocol_from lines together",
				    PROXYPROTO_MAX_NETWORKS);
			return -1;
		}
		reason = parse_net(s, (size_t)(e - s), &nets[n], suggest,
		    sizeof suggest);
		if (reason != NULL) {
			whyf(why, whylen, s, (size_t)(e - s), reason);
			return -1;
		}
		n++;
		if (comma == NULL)
			break;
		s = comma + 1;
	}
	memcpy(&l->net[l->n], nets, n * sizeof nets[0]);
	l->n += n;
	return 0;
}

static bool
is_v4mapped_net(const struct proxyproto_net *net)
{
	static const unsigned char mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
	};

	return net->family == AF_INET6 && net->prefix >= 96 &&
	    memcmp(net->addr, mapped, sizeof mapped) == 0;
}

static bool
net_match(const struct proxyproto_net *net, int family, const unsigned char *addr)
{
	unsigned full = net->prefix / 8, rest = net->prefix % 8;
	unsigned char mask;

	if (net->family != family)
		return false;
	if (memcmp(net->addr, addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	mask = (unsigned char)(0xff << (8 - rest));
	return (net->addr[full] & mask) == (addr[full] & mask);
}

bool
proxyproto_trusted(const struct sockaddr *peer, const struct cidr_list *l)
{
	unsigned char v4[4], v6[16];
	bool is4;

	if (peer == NULL || l == NULL)
		return false;
	/* an IPv4 client is the same client whether the socket shows it as
	 * 10.1.2.3 or ::ffff:10.1.2.3: both match 10.0.0.0/8 and
	 * ::ffff:10.0.0.0/104, and neither matches ::/0 */
	if (peer->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)peer;

		memcpy(v4, &sin->sin_addr, 4);
		memset(v6, 0, 10);
		v6[10] = v6[11] = 0xff;
		memcpy(v6 + 12, v4, 4);
		is4 = true;
	} else if (peer->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)peer;

		memcpy(v6, &sin6->sin6_addr, 16);
		memcpy(v4, v6 + 12, 4);
		is4 = IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr);
	} else {
		return false;
	}
	for (size_t i = 0; i < l->n; i++) {
		const struct proxyproto_net *net = &l->net[i];

		if (net->family == AF_INET) {
			if (is4 && net_match(net, AF_INET, v4))
				return true;
		} else if (!is4 || is_v4mapped_net(net)) {
			if (net_match(net, AF_INET6, v6))
				return true;
		}
	}
	return false;
}

/*
 * test_proxyproto.c — tests for proxy/proxyproto.c: every v1 and v2 form,
 * each split at every byte (MORE until complete, then DONE taking exactly
 * the header), malformed and oversized headers, what is not a header at all
 * (an IMAP command, a TLS handshake), the socket reader that leaves the
 * client's bytes in the socket, headers built and read back, random
 * mutations of good headers, and the networks headers are believed from.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "proxyproto.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const unsigned char v2sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

/* A v2 header: signature, ver_cmd, fam, then body[0..blen) as the block. */
static size_t
v2(unsigned char *out, unsigned char ver_cmd, unsigned char fam,
    const unsigned char *body, size_t blen)
{
	memcpy(out, v2sig, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	out[14] = (unsigned char)(blen >> 8);
	out[15] = (unsigned char)blen;
	if (blen > 0)
		memcpy(out + 16, body, blen);
	return 16 + blen;
}

static enum proxyproto_result
parse(const void *buf, size_t len, struct proxyproto_addr *a, size_t *used,
    const char **why)
{
	*why = NULL;
	*used = 0;
	return proxyproto_parse(buf, len, a, used, why);
}

/* "a.b.c.d:port" or "[v6]:port" of a parsed address. */
static const char *
fmt(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)ss;

		inet_ntop(AF_INET, &s->sin_addr, host, sizeof host);
		snprintf(buf, len, "%s:%u", host, ntohs(s->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)ss;

		inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof host);
		snprintf(buf, len, "[%s]:%u", host, ntohs(s->sin6_port));
	} else {
		snprintf(buf, len, "-");
	}
	return buf;
}

static bool
same_addr(const struct proxyproto_addr *a, const struct proxyproto_addr *b)
{
	return a->version == b->version && a->command == b->command &&
	    a->len == b->len && a->header_len == b->header_len &&
	    memcmp(&a->src, &b->src, sizeof a->src) == 0 &&
	    memcmp(&a->dst, &b->dst, sizeof a->dst) == 0;
}

/*
 * hdr[0..hlen) is a complete header: every proper prefix is MORE, the whole
 * is DONE taking hlen bytes, also with client bytes after it, and fed one
 * byte at a time through an evbuffer it stops at exactly its end.
 */
static void
expect_header(const void *hdr, size_t hlen, struct proxyproto_addr *a)
{
	static const char after[] = "a1 CAPABILITY\r\n";
	unsigned char buf[PROXYPROTO_MAX + sizeof after];
	struct evbuffer *in = evbuffer_new();
	struct proxyproto_addr b;
	const char *why;
	size_t used;

	cr_assert_leq(hlen, PROXYPROTO_MAX);
	for (size_t k = 0; k < hlen; k++)
		cr_assert_eq(parse(hdr, k, &b, &used, &why), PROXYPROTO_MORE,
		    "prefix of %zu bytes (of %zu): %s", k, hlen,
		    why != NULL ? why : "not MORE");
	cr_assert_eq(parse(hdr, hlen, a, &used, &why), PROXYPROTO_DONE,
	    "complete header refused: %s", why != NULL ? why : "MORE");
	cr_assert_eq(used, hlen);
	cr_assert_eq(a->header_len, hlen);

	memcpy(buf, hdr, hlen);
	memcpy(buf + hlen, after, sizeof after - 1);
	cr_assert_eq(parse(buf, hlen + sizeof after - 1, &b, &used, &why),
	    PROXYPROTO_DONE);
	cr_assert_eq(used, hlen);
	cr_assert(same_addr(&b, a));

	cr_assert_not_null(in);
	for (size_t k = 0; k < hlen; k++) {
		cr_assert_eq(evbuffer_add(in, buf + k, 1), 0);
		cr_assert_eq(proxyproto_read(in, &b, &why),
		    k + 1 < hlen ? PROXYPROTO_MORE : PROXYPROTO_DONE,
		    "after byte %zu of %zu", k + 1, hlen);
		/* nothing is taken before the header is whole */
		cr_assert_eq(evbuffer_get_length(in), k + 1 < hlen ? k + 1 : 0);
	}
	cr_assert(same_addr(&b, a));
	/* and with the client's bytes already there: they stay */
	cr_assert_eq(evbuffer_add(in, buf, hlen + sizeof after - 1), 0);
	cr_assert_eq(proxyproto_read(in, &b, &why), PROXYPROTO_DONE);
	cr_assert_eq(evbuffer_get_length(in), sizeof after - 1);
	cr_assert_eq(memcmp(evbuffer_pullup(in, -1), after, sizeof after - 1), 0);
	evbuffer_free(in);
}

static void
expect_text(const char *hdr, struct proxyproto_addr *a)
{
	expect_header(hdr, strlen(hdr), a);
}

static void
expect_addrs(const struct proxyproto_addr *a, const char *src, const char *dst)
{
	char s[80], d[80];

	cr_assert_eq(a->command, PROXYPROTO_PROXY);
	cr_assert_str_eq(fmt(&a->src, s, sizeof s), src);
	cr_assert_str_eq(fmt(&a->dst, d, sizeof d), dst);
	cr_assert_eq(a->len, a->src.ss_family == AF_INET ?
	    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
}

/* Refused, with a reason containing want; no prefix of it is DONE. */
static void
expect_error_len(const void *hdr, size_t len, const char *want)
{
	struct proxyproto_addr a;
	const char *why;
	size_t used;

	cr_assert_eq(parse(hdr, len, &a, &used, &why), PROXYPROTO_ERROR,
	    "accepted: \"%.*s\"", (int)len, (const char *)hdr);
	cr_assert_not_null(why);
	cr_assert_not_null(strstr(why, want), "reason \"%s\", expected \"%s\"",
	    why, want);
	for (size_t k = 0; k < len; k++)
		cr_assert_neq(parse(hdr, k, &a, &used, &why), PROXYPROTO_DONE);
}

static void
expect_error(const char *hdr, const char *want)
{
	expect_error_len(hdr, strlen(hdr), want);
}

/* The shortest prefix that is refused: how early a bad header is noticed. */
static size_t
error_at(const void *hdr, size_t len)
{
	struct proxyproto_addr a;
	const char *why;
	size_t used;

	for (size_t k = 1; k <= len; k++)
		if (parse(hdr, k, &a, &used, &why) == PROXYPROTO_ERROR)
			return k;
	return 0;
}

Test(proxyproto, v1_tcp4)
{
	struct proxyproto_addr a;

	expect_text("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", &a);
	cr_assert_eq(a.version, 1);
	expect_addrs(&a, "192.168.0.1:56324", "192.168.0.11:443");
	expect_text("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", &a);
	expect_addrs(&a, "0.0.0.0:0", "255.255.255.255:65535");
	expect_text("PROXY TCP4 10.0.0.100 10.20.30.40 9 10\r\n", &a);
	expect_addrs(&a, "10.0.0.100:9", "10.20.30.40:10");
}

Test(proxyproto, v1_tcp6)
{
	struct proxyproto_addr a;

	expect_text("PROXY TCP6 2001:db8::1 ::1 40000 143\r\n", &a);
	cr_assert_eq(a.version, 1);
	expect_addrs(&a, "[2001:db8::1]:40000", "[::1]:143");
	/* upper case hex, all groups, an embedded IPv4 address */
	expect_text("PROXY TCP6 2001:DB8:0:0:0:0:0:2 ::ffff:192.0.2.1 1 2\r\n", &a);
	expect_addrs(&a, "[2001:db8::2]:1", "[::ffff:192.0.2.1]:2");
	/* the longest line the spec lists for TCP6: 104 bytes */
	const char *longest = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	cr_assert_eq(strlen(longest), 104);
	expect_text(longest, &a);
}

Test(proxyproto, v1_unknown)
{
	struct proxyproto_addr a;
	char worst[PROXYPROTO_V1_MAX + 2];

	expect_text("PROXY UNKNOWN\r\n", &a);
	cr_assert_eq(a.version, 1);
	cr_assert_eq(a.command, PROXYPROTO_UNKNOWN);
	cr_assert_eq(a.src.ss_family, AF_UNSPEC);
	cr_assert_eq(a.len, 0);
	/* what follows UNKNOWN is ignored, whatever it is */
	expect_text("PROXY UNKNOWN ffff:f::f ffff:f::f 65535 65535\r\n", &a);
	cr_assert_eq(a.command, PROXYPROTO_UNKNOWN);
	expect_text("PROXY UNKNOWN some text the receiver ignores\r\n", &a);
	cr_assert_eq(a.command, PROXYPROTO_UNKNOWN);

	/* the spec's worst case is 107 bytes: accepted; 108 is not */
	snprintf(worst, sizeof worst, "PROXY UNKNOWN %-91s\r\n", "x");
	cr_assert_eq(strlen(worst), 107);
	expect_text(worst, &a);
	snprintf(worst, sizeof worst, "PROXY UNKNOWN %-92s\r\n", "x");
	expect_error(worst, "no CRLF within the first 107 bytes");
}

Test(proxyproto, v1_malformed)
{
	static const struct {
		const char *hdr, *why;
	} bad[] = {
		{ "PROXY TCP4 01.2.3.4 1.2.3.4 1 2\r\n", "bad source address" },
		{ "PROXY TCP4 1.2.3.4 1.2.3.04 1 2\r\n", "bad destination address" },
		{ "PROXY TCP4 1.2.3.4 1.2.3.00 1 2\r\n", "bad destination address" },
		{ "PROXY TCP4 256.1.1.1 1.2.3.4 1 2\r\n", "bad source address" },
		{ "PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n", "bad source address" },
		{ "PROXY TCP4 1.2.3.4. 1.2.3.4 1 2\r\n", "bad source address" },
		{ "PROXY TCP4 1.2.3.4 1.2.3.4.5 1 2\r\n", "bad destination address" },
		{ "PROXY TCP4 ::1 ::1 1 2\r\n", "bad source address" },
		{ "PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "bad source address" },
		{ "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "bad source address" },
		{ "PROXY TCP6 1::2::3 ::1 1 2\r\n", "bad source address" },
		{ "PROXY TCP6 [::1] ::1 1 2\r\n", "bad source address" },
		{ "PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n", "bad source port" },
		{ "PROXY TCP4 1.2.3.4 1.2.3.4 1 00\r\n", "bad destination port" },
		{ "PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", "bad source port" },
		{ "PROXY TCP4 1.2.3.4 1.2.3.4 1 99999\r\n", "bad destination port" },
		{ "PROXY TCP4 1.2.3.4 1.2.3.4 100000 2\r\n", "bad source port" },
		{ "PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n", "bad source port" },
		{ "PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n", "bad source port" },
		{ "PROXY TCP4 1.2.3.4 1.2.3.4 0x1 2\r\n", "bad source port" },
		{ "PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n", "too many fields" },
		{ "PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n", "too many fields" },
		{ "PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n", "bad source address" },
		{ "PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n", "bad destination address" },
		{ "PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", "missing fields" },
		{ "PROXY TCP4 1.2.3.4\r\n", "missing fields" },
		{ "PROXY TCP4\r\n", "missing fields" },
		{ "PROXY\r\n", "no PROXY protocol header" },
		{ "PROXY \r\n", "unknown protocol" },
		{ "PROXY  UNKNOWN\r\n", "unknown protocol" },
		{ "PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", "unknown protocol" },
		{ "PROXY tcp4 1.2.3.4 1.2.3.4 1 2\r\n", "unknown protocol" },
		{ "PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n", "unknown protocol" },
		{ "PROXY UNKNOWNX\r\n", "unknown protocol" },
		{ "PROXY\tTCP4 1.2.3.4 1.2.3.4 1 2\r\n", "no PROXY protocol header" },
		{ "proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", "no PROXY protocol header" },
		{ "PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", "line feed without carriage" },
		{ "PROXY TCP4 1.2.3.4 1.2.3.4 1 2\r\r\n", "carriage return without" },
		{ "PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX", "carriage return without" },
		{ "PROXY UNKNOWN\n", "line feed without carriage" },
		{ "PROXY UNKNOWN x\ny\r\n", "line feed without carriage" },
		{ "PROXY UNKNOWN x\ry\r\n", "carriage return without" },
	};

	for (size_t i = 0; i < NELEM(bad); i++)
		expect_error(bad[i].hdr, bad[i].why);
	/* a NUL inside an address */
	expect_error_len("PROXY TCP4 1.2.3\0.4 1.2.3.4 1 2\r\n", 33,
	    "bad source address");
}

/* A bad field is noticed when its bad byte arrives, not at the CRLF: a
 * balancer's mistake (or a stranger) is refused at once. */
Test(proxyproto, v1_errors_early)
{
	static const struct {
		const char *hdr;
		size_t at;
	} early[] = {
		{ "PROXX TCP4 1.2.3.4 1.2.3.4 1 2\r\n", 5 },
		{ "PROXY TCP7 1.2.3.4 1.2.3.4 1 2\r\n", 10 },
		{ "PROXY TCP4 1.2.3.4x 1.2.3.4 1 2\r\n", 19 },
		{ "PROXY TCP4 01.2.3.4 1.2.3.4 1 2\r\n", 13 },
		{ "PROXY TCP4 1.2.3.4 1.2.3.4 012 2\r\n", 29 },
		{ "PROXY TCP4 1.2.3.4 1.2.3.4 70000 2\r\n", 32 },
		{ "PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n", 31 },
		{ "PROXY TCP6 2001:db8::g ::1 1 2\r\n", 22 },
	};

	for (size_t i = 0; i < NELEM(early); i++)
		cr_assert_eq(error_at(early[i].hdr, strlen(early[i].hdr)),
		    early[i].at, "\"%s\": refused at byte %zu, expected %zu",
		    early[i].hdr, error_at(early[i].hdr, strlen(early[i].hdr)),
		    early[i].at);
}

Test(proxyproto, v1_oversize)
{
	char line[256];
	struct proxyproto_addr a;
	const char *why;
	size_t used;

	/* 106 bytes without CRLF may still end at 107; 107 cannot */
	snprintf(line, sizeof line, "PROXY UNKNOWN %-92s", "x");
	cr_assert_eq(strlen(line), 106);
	cr_assert_eq(parse(line, 106, &a, &used, &why), PROXYPROTO_MORE);
	snprintf(line, sizeof line, "PROXY UNKNOWN %-93s", "x");
	cr_assert_eq(strlen(line), 107);
	cr_assert_eq(parse(line, 107, &a, &used, &why), PROXYPROTO_ERROR);
	cr_assert_str_eq(why, "v1: no CRLF within the first 107 bytes");
	/* a CR as byte 107 leaves no room for its LF */
	line[106] = '\r';
	cr_assert_eq(parse(line, 107, &a, &used, &why), PROXYPROTO_ERROR);
	/* however much more is there */
	memset(line, 'x', sizeof line);
	memcpy(line, "PROXY UNKNOWN ", 14);
	cr_assert_eq(parse(line, sizeof line, &a, &used, &why), PROXYPROTO_ERROR);
}

Test(proxyproto, not_a_header)
{
	static const char *const imap[] = {
		"a1 LOGIN user secret\r\n", "a1 CAPABILITY\r\n", "1 NOOP\r\n",
		"GET / HTTP/1.1\r\n", "\r\n", "P\r\n", "PROXY", "QUIT\r\n",
	};
	static const unsigned char tls[] = { 0x16, 0x03, 0x01, 0x02, 0x00 };
	struct proxyproto_addr a;
	const char *why;
	size_t used;

	/* an IMAP command is refused at its first byte */
	cr_assert_eq(parse("a", 1, &a, &used, &why), PROXYPROTO_ERROR);
	cr_assert_not_null(strstr(why, "no PROXY protocol header"));
	for (size_t i = 0; i < NELEM(imap); i++) {
		size_t len = strlen(imap[i]);
		enum proxyproto_result r = parse(imap[i], len, &a, &used, &why);

		/* "\r\n" and "PROXY" could still be the start of one */
		if (strcmp(imap[i], "\r\n") == 0 || strcmp(imap[i], "PROXY") == 0)
			cr_assert_eq(r, PROXYPROTO_MORE, "%s", imap[i]);
		else
			cr_assert_eq(r, PROXYPROTO_ERROR, "%s", imap[i]);
	}
	cr_assert_eq(parse(tls, sizeof tls, &a, &used, &why), PROXYPROTO_ERROR);
	cr_assert_not_null(strstr(why, "TLS handshake"), "%s", why);
	/* nothing yet is nothing yet */
	cr_assert_eq(parse("", 0, &a, &used, &why), PROXYPROTO_MORE);
	/* the NULL why is allowed */
	cr_assert_eq(proxyproto_parse("x", 1, &a, &used, NULL), PROXYPROTO_ERROR);
}

Test(proxyproto, v2_inet)
{
	static const unsigned char body[] = {
		192, 0, 2, 1,  198, 51, 100, 7,  0xc3, 0x50,  0x00, 0x8f,
	};
	unsigned char h[64];
	struct proxyproto_addr a;
	size_t n = v2(h, 0x21, 0x11, body, sizeof body);

	expect_header(h, n, &a);
	cr_assert_eq(a.version, 2);
	expect_addrs(&a, "192.0.2.1:50000", "198.51.100.7:143");
}

Test(proxyproto, v2_inet6)
{
	unsigned char body[36], h[64];
	struct proxyproto_addr a;
	size_t n;

	inet_pton(AF_INET6, "2001:db8::5", body);
	inet_pton(AF_INET6, "2001:db8:1::1", body + 16);
	body[32] = 0xff; body[33] = 0xff;
	body[34] = 0x03; body[35] = 0xe1;
	n = v2(h, 0x21, 0x21, body, sizeof body);
	expect_header(h, n, &a);
	expect_addrs(&a, "[2001:db8::5]:65535", "[2001:db8:1::1]:993");
}

Test(proxyproto, v2_local_and_unspec)
{
	unsigned char h[300], body[216];
	struct proxyproto_addr a;
	size_t n;

	/* LOCAL: a health check; the block is skipped whatever it holds */
	n = v2(h, 0x20, 0x00, NULL, 0);
	expect_header(h, n, &a);
	cr_assert_eq(a.command, PROXYPROTO_LOCAL);
	cr_assert_eq(a.src.ss_family, AF_UNSPEC);
	memset(body, 0xab, sizeof body);
	n = v2(h, 0x20, 0x11, body, 5);
	expect_header(h, n, &a);
	cr_assert_eq(a.command, PROXYPROTO_LOCAL);

	/* PROXY with UNSPEC, AF_UNIX or DGRAM: the connection's own addresses */
	n = v2(h, 0x21, 0x00, NULL, 0);
	expect_header(h, n, &a);
	cr_assert_eq(a.command, PROXYPROTO_UNKNOWN);
	n = v2(h, 0x21, 0x00, body, 7);
	expect_header(h, n, &a);
	cr_assert_eq(a.command, PROXYPROTO_UNKNOWN);
	memset(body, 0, sizeof body);
	n = v2(h, 0x21, 0x31, body, 216);
	expect_header(h, n, &a);
	cr_assert_eq(a.command, PROXYPROTO_UNKNOWN);
	n = v2(h, 0x21, 0x12, body, 12);
	expect_header(h, n, &a);
	cr_assert_eq(a.command, PROXYPROTO_UNKNOWN);
	n = v2(h, 0x21, 0x10, body, 0);		/* INET, UNSPEC transport */
	expect_header(h, n, &a);
	cr_assert_eq(a.command, PROXYPROTO_UNKNOWN);
}

Test(proxyproto, v2_tlvs)
{
	unsigned char body[PROXYPROTO_MAX], h[PROXYPROTO_MAX + 16];
	struct proxyproto_addr a;
	size_t n, blen;

	/* TCP4 and three TLVs: ALPN "imap", NOOP empty, a unique id */
	memcpy(body, "\x0a\x00\x00\x01\x0a\x00\x00\x02\x30\x39\x00\x8f", 12);
	blen = 12;
	memcpy(body + blen, "\x01\x00\x04imap", 7);
	blen += 7;
	memcpy(body + blen, "\x04\x00\x00", 3);
	blen += 3;
	memcpy(body + blen, "\x05\x00\x05" "abcde", 8);
	blen += 8;
	n = v2(h, 0x21, 0x11, body, blen);
	expect_header(h, n, &a);
	expect_addrs(&a, "10.0.0.1:12345", "10.0.0.2:143");

	/* a TLV whose value runs past the header */
	body[12 + 7 + 3 + 2] = 6;
	n = v2(h, 0x21, 0x11, body, blen);
	expect_error_len(h, n, "TLV runs past");
	/* a TLV cut inside its own three-byte header */
	n = v2(h, 0x21, 0x11, body, 12 + 2);
	expect_error_len(h, n, "TLV runs past");

	/* the largest header we take: 2048 bytes, one big TLV */
	memset(body + 12, 0, sizeof body - 12);
	body[12] = 0xe0;
	blen = PROXYPROTO_MAX - 16;
	body[13] = (unsigned char)((blen - 15) >> 8);
	body[14] = (unsigned char)(blen - 15);
	n = v2(h, 0x21, 0x11, body, blen);
	cr_assert_eq(n, PROXYPROTO_MAX);
	expect_header(h, n, &a);
}

Test(proxyproto, v2_oversize)
{
	unsigned char h[16];
	struct proxyproto_addr a;
	const char *why;
	size_t used;

	/* one byte over our bound: refused once the length is known */
	v2(h, 0x21, 0x11, NULL, 0);
	h[14] = (PROXYPROTO_MAX - 16 + 1) >> 8;
	h[15] = (PROXYPROTO_MAX - 16 + 1) & 0xff;
	cr_assert_eq(parse(h, 15, &a, &used, &why), PROXYPROTO_MORE);
	cr_assert_eq(parse(h, 16, &a, &used, &why), PROXYPROTO_ERROR);
	cr_assert_not_null(strstr(why, "longer than mappend accepts"));
	h[14] = h[15] = 0xff;	/* the protocol's own maximum */
	cr_assert_eq(parse(h, 16, &a, &used, &why), PROXYPROTO_ERROR);
}

Test(proxyproto, v2_malformed)
{
	unsigned char h[64], body[36] = { 0 };
	size_t n;

	n = v2(h, 0x11, 0x11, body, 12);	/* version 1 */
	expect_error_len(h, n, "unknown version");
	n = v2(h, 0x31, 0x11, body, 12);	/* version 3 */
	expect_error_len(h, n, "unknown version");
	n = v2(h, 0x22, 0x11, body, 12);	/* command 2 */
	expect_error_len(h, n, "unknown command");
	n = v2(h, 0x2f, 0x11, body, 12);
	expect_error_len(h, n, "unknown command");
	n = v2(h, 0x21, 0x41, body, 12);	/* family 4 */
	expect_error_len(h, n, "unknown address family");
	n = v2(h, 0x21, 0x13, body, 12);	/* transport 3 */
	expect_error_len(h, n, "unknown transport protocol");
	n = v2(h, 0x21, 0x11, body, 11);	/* IPv4 needs 12 */
	expect_error_len(h, n, "address block shorter");
	n = v2(h, 0x21, 0x21, body, 35);	/* IPv6 needs 36 */
	expect_error_len(h, n, "address block shorter");
	n = v2(h, 0x21, 0x31, body, 36);	/* UNIX needs 216 */
	expect_error_len(h, n, "address block shorter");
	/* the signature wrong in its last byte */
	n = v2(h, 0x21, 0x11, body, 12);
	h[11] = 'X';
	expect_error_len(h, n, "no PROXY protocol header");
	cr_assert_eq(error_at(h, n), 12);
	/* the wrong version is noticed at byte 13, before any length */
	n = v2(h, 0x11, 0x11, body, 12);
	cr_assert_eq(error_at(h, n), 13);
}

Test(proxyproto, build_and_read_back)
{
	static const char *const lines[] = {
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
		"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
		"PROXY TCP6 2001:db8::1 ::1 40000 143\r\n",
		"PROXY TCP6 fe80::1:2:3:4 ff02::1 1 2\r\n",
		"PROXY UNKNOWN\r\n",
	};
	char text[PROXYPROTO_V1_MAX + 1];
	unsigned char bin[PROXYPROTO_MAX];
	struct proxyproto_addr a, b;
	const char *why;
	size_t used;
	int n;

	for (size_t i = 0; i < NELEM(lines); i++) {
		cr_assert_eq(parse(lines[i], strlen(lines[i]), &a, &used, &why),
		    PROXYPROTO_DONE, "%s", lines[i]);
		/* canonical text comes back byte for byte */
		n = proxyproto_build(&a, 1, text, sizeof text);
		cr_assert_eq(n, (int)strlen(lines[i]));
		cr_assert_str_eq(text, lines[i]);
		/* and as v2, the same addresses */
		n = proxyproto_build(&a, 2, bin, sizeof bin);
		cr_assert_gt(n, 0);
		cr_assert_eq(parse(bin, (size_t)n, &b, &used, &why), PROXYPROTO_DONE);
		cr_assert_eq(b.command, a.command);
		cr_assert_eq(memcmp(&b.src, &a.src, sizeof a.src), 0);
		cr_assert_eq(memcmp(&b.dst, &a.dst, sizeof a.dst), 0);
	}
	/* LOCAL exists in v2 only; nothing fits in too small a buffer */
	memset(&a, 0, sizeof a);
	a.command = PROXYPROTO_LOCAL;
	cr_assert_eq(proxyproto_build(&a, 1, text, sizeof text), -1);
	cr_assert_eq(proxyproto_build(&a, 2, bin, sizeof bin), 16);
	cr_assert_eq(parse(bin, 16, &b, &used, &why), PROXYPROTO_DONE);
	cr_assert_eq(b.command, PROXYPROTO_LOCAL);
	cr_assert_eq(parse(lines[0], strlen(lines[0]), &a, &used, &why),
	    PROXYPROTO_DONE);
	cr_assert_eq(proxyproto_build(&a, 1, text, 20), -1);
	cr_assert_eq(proxyproto_build(&a, 2, bin, 27), -1);
	cr_assert_eq(proxyproto_build(&a, 3, bin, sizeof bin), -1);
}

/* A tiny deterministic generator, so that a failure can be replayed. */
static uint32_t rng_state = 2463534242u;

static uint32_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

/*
 * What a fuzzer would check, over random mutations of good headers: DONE
 * takes exactly the header (the same with more bytes after it, and one
 * byte less is MORE), MORE never on input as long as the bound, an
 * accepted address built back as v1 reads back the same.
 */
Test(proxyproto, mutations_keep_the_promises)
{
	static const char *const seeds[] = {
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
		"PROXY TCP6 2001:db8::1 ::1 40000 143\r\n",
		"PROXY UNKNOWN x y\r\n",
	};
	static const char alphabet[] = "PROXYTCUNKW46 .:0123456789abcdefABCDEF\r\n\t";
	unsigned char buf[PROXYPROTO_MAX + 64], seed[PROXYPROTO_MAX];
	unsigned char body[40] = { 10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2 };
	size_t nseeds = NELEM(seeds) + 2, seedlen;
	unsigned done = 0;

	for (unsigned iter = 0; iter < 40000; iter++) {
		struct proxyproto_addr a, b;
		enum proxyproto_result r;
		const char *why;
		size_t s = rng() % nseeds, len, used;

		if (s < NELEM(seeds)) {
			seedlen = strlen(seeds[s]);
			memcpy(seed, seeds[s], seedlen);
		} else {
			seedlen = v2(seed, 0x21, s == NELEM(seeds) ? 0x11 : 0x21,
			    body, s == NELEM(seeds) ? 12 : 36);
		}
		memcpy(buf, seed, seedlen);
		len = seedlen;
		for (unsigned k = rng() % 4; k > 0; k--) {
			size_t at = rng() % (len + 1);

			switch (rng() % 4) {
			case 0:		/* replace a byte */
				if (at < len)
					buf[at] = rng() % 2 ? (unsigned char)rng() :
					    (unsigned char)alphabet[rng() %
					    (sizeof alphabet - 1)];
				break;
			case 1:		/* cut */
				len = at;
				break;
			case 2:		/* insert */
				if (len < sizeof buf - 1) {
					memmove(buf + at + 1, buf + at, len - at);
					buf[at] = (unsigned char)alphabet[rng() %
					    (sizeof alphabet - 1)];
					len++;
				}
				break;
			default:	/* client bytes after it */
				while (len < sizeof buf && rng() % 8 != 0)
					buf[len++] = (unsigned char)rng();
				break;
			}
		}

		r = parse(buf, len, &a, &used, &why);
		if (r == PROXYPROTO_MORE) {
			cr_assert_lt(len, PROXYPROTO_MAX);
			if (buf[0] == 'P')
				cr_assert_lt(len, PROXYPROTO_V1_MAX);
			continue;
		}
		if (r == PROXYPROTO_ERROR) {
			cr_assert_not_null(why);
			continue;
		}
		done++;
		cr_assert_leq(used, len);
		cr_assert_leq(used, PROXYPROTO_MAX);
		cr_assert_eq(used, a.header_len);
		/* the header alone is the same header; a byte less is not one yet */
		cr_assert_eq(parse(buf, a.header_len, &b, &used, &why),
		    PROXYPROTO_DONE);
		cr_assert(same_addr(&a, &b));
		cr_assert_eq(parse(buf, a.header_len - 1, &b, &used, &why),
		    PROXYPROTO_MORE);
		if (a.command == PROXYPROTO_PROXY) {
			char text[PROXYPROTO_V1_MAX + 1];
			int n = proxyproto_build(&a, 1, text, sizeof text);

			cr_assert_gt(n, 0);
			cr_assert_eq(parse(text, (size_t)n, &b, &used, &why),
			    PROXYPROTO_DONE, "%s: %s", text, why);
			cr_assert_eq(memcmp(&a.src, &b.src, sizeof a.src), 0);
			cr_assert_eq(memcmp(&a.dst, &b.dst, sizeof a.dst), 0);
			/* dotted quads without leading zeros have one spelling:
			 * formatted back, a TCP4 line is the line that came */
			if (memcmp(buf, "PROXY TCP4", 10) == 0)
				cr_assert(a.header_len == (size_t)n &&
				    memcmp(buf, text, (size_t)n) == 0,
				    "%.*s read back as %s", (int)a.header_len, buf, text);
		}
	}
	/* the mutations left enough good headers to mean something */
	cr_assert_gt(done, 5000, "only %u accepted", done);
}

static void
nonblocking_pair(int sv[2])
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cr_assert_eq(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
}

/* The socket reader takes the header and not one byte of what follows, fed
 * one byte at a time, v1 and v2; what follows is still in the socket. */
Test(proxyproto, recv_leaves_the_rest_in_the_socket)
{
	static const char v1[] = "PROXY TCP4 192.0.2.1 192.0.2.2 1234 993\r\n";
	static const unsigned char hello[] = { 0x16, 0x03, 0x01, 0x00, 0x05 };
	unsigned char h2[64], body[12] = { 192, 0, 2, 1, 192, 0, 2, 2, 4, 210, 3, 225 };
	const unsigned char *hdrs[2] = { (const unsigned char *)v1, h2 };
	size_t lens[2] = { sizeof v1 - 1, v2(h2, 0x21, 0x11, body, sizeof body) };

	for (size_t t = 0; t < 2; t++) {
		struct proxyproto_reader *r = calloc(1, sizeof *r);
		struct proxyproto_addr a;
		unsigned char rest[16];
		const char *why = NULL;
		int sv[2];

		cr_assert_not_null(r);
		nonblocking_pair(sv);
		/* nothing there yet */
		cr_assert_eq(proxyproto_recv(sv[0], r, &a, &why), PROXYPROTO_MORE);
		for (size_t k = 0; k < lens[t]; k++) {
			cr_assert_eq(write(sv[1], hdrs[t] + k, 1), 1);
			if (k + 1 == lens[t])	/* the client's first bytes with it */
				cr_assert_eq(write(sv[1], hello, sizeof hello),
				    (ssize_t)sizeof hello);
			cr_assert_eq(proxyproto_recv(sv[0], r, &a, &why),
			    k + 1 < lens[t] ? PROXYPROTO_MORE : PROXYPROTO_DONE,
			    "byte %zu: %s", k, why != NULL ? why : "");
		}
		expect_addrs(&a, "192.0.2.1:1234", "192.0.2.2:993");
		cr_assert_eq(r->len, lens[t]);
		cr_assert_eq(read(sv[0], rest, sizeof rest), (ssize_t)sizeof hello);
		cr_assert_eq(memcmp(rest, hello, sizeof hello), 0);
		close(sv[0]);
		close(sv[1]);
		free(r);
	}
}

Test(proxyproto, recv_errors)
{
	struct proxyproto_reader *r = calloc(1, sizeof *r);
	struct proxyproto_addr a;
	const char *why = NULL;
	char c;
	int sv[2];

	cr_assert_not_null(r);
	/* closed half-way */
	nonblocking_pair(sv);
	cr_assert_eq(write(sv[1], "PROXY TCP4 ", 11), 11);
	cr_assert_eq(proxyproto_recv(sv[0], r, &a, &why), PROXYPROTO_MORE);
	close(sv[1]);
	cr_assert_eq(proxyproto_recv(sv[0], r, &a, &why), PROXYPROTO_ERROR);
	cr_assert_not_null(strstr(why, "closed before the end"));
	close(sv[0]);

	/* a client that speaks IMAP at once: refused, nothing taken */
	memset(r, 0, sizeof *r);
	nonblocking_pair(sv);
	cr_assert_eq(write(sv[1], "a1 NOOP\r\n", 9), 9);
	cr_assert_eq(proxyproto_recv(sv[0], r, &a, &why), PROXYPROTO_ERROR);
	cr_assert_not_null(strstr(why, "no PROXY protocol header"));
	cr_assert_eq(read(sv[0], &c, 1), 1);
	cr_assert_eq(c, 'a');
	close(sv[0]);
	close(sv[1]);

	/* not a socket */
	memset(r, 0, sizeof *r);
	cr_assert_eq(proxyproto_recv(-1, r, &a, &why), PROXYPROTO_ERROR);
	cr_assert_eq(errno, EBADF);
	free(r);
}

/*
 * Networks.
 */

static void
cidr_ok(struct cidr_list *l, const char *s)
{
	char why[512] = "";

	cr_assert_eq(proxyproto_cidr_parse(l, s, why, sizeof why), 0,
	    "\"%s\" refused: %s", s, why);
}

static void
cidr_bad(const char *s, const char *want)
{
	struct cidr_list l = { 0 };
	char why[512] = "";

	cidr_ok(&l, "192.0.2.0/24");
	cr_assert_eq(proxyproto_cidr_parse(&l, s, why, sizeof why), -1,
	    "\"%s\" accepted", s);
	cr_assert_str_eq(why, want);
	cr_assert_eq(l.n, 1, "a refused list changed what was there");
}

static bool
trusted(const struct cidr_list *l, const char *addr)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof ss);
	if (strchr(addr, ':') != NULL) {
		struct sockaddr_in6 *s = (void *)&ss;

		s->sin6_family = AF_INET6;
		cr_assert_eq(inet_pton(AF_INET6, addr, &s->sin6_addr), 1);
	} else {
		struct sockaddr_in *s = (void *)&ss;

		s->sin_family = AF_INET;
		cr_assert_eq(inet_pton(AF_INET, addr, &s->sin_addr), 1);
	}
	return proxyproto_trusted((struct sockaddr *)&ss, l);
}

Test(proxyproto, cidr_lists)
{
	struct cidr_list l = { 0 };

	cidr_ok(&l, "10.0.0.0/8, ::1/128");
	cr_assert_eq(l.n, 2);
	cr_assert_eq(l.net[0].family, AF_INET);
	cr_assert_eq(l.net[0].prefix, 8);
	cr_assert_eq(l.net[1].family, AF_INET6);
	cr_assert_eq(l.net[1].prefix, 128);
	/* lines add up; bare addresses are hosts; blanks around commas */
	cidr_ok(&l, "192.0.2.7,\t2001:db8::/32 ,0.0.0.0/0");
	cr_assert_eq(l.n, 5);
	cr_assert_eq(l.net[2].prefix, 32);
	cr_assert_eq(l.net[3].prefix, 32);
	cr_assert_eq(l.net[4].prefix, 0);
	cidr_ok(&l, "::/0");
	cidr_ok(&l, "::ffff:10.0.0.0/104");
	cidr_ok(&l, "10.1.2.128/25");
	cr_assert_eq(l.n, 8);
}

Test(proxyproto, cidr_refused)
{
	struct cidr_list l = { 0 };
	char why[512];

	cidr_bad("10.0.0.1/8", "\"10.0.0.1/8\": bits set after the prefix length "
	    "(did you mean 10.0.0.0/8?)");
	cidr_bad("2001:db8::1/32", "\"2001:db8::1/32\": bits set after the prefix "
	    "length (did you mean 2001:db8::/32?)");
	cidr_bad("10.1.2.129/25", "\"10.1.2.129/25\": bits set after the prefix "
	    "length (did you mean 10.1.2.128/25?)");
	cidr_bad("10.0.0.0/33", "\"10.0.0.0/33\": expected a prefix length from 0 "
	    "to 32 after \"/\"");
	cidr_bad("::/129", "\"::/129\": expected a prefix length from 0 to 128 "
	    "after \"/\"");
	cidr_bad("10.0.0.0/08", "\"10.0.0.0/08\": expected a prefix length from 0 "
	    "to 32 after \"/\"");
	cidr_bad("10.0.0.0/", "\"10.0.0.0/\": expected a prefix length from 0 to 32 "
	    "after \"/\"");
	cidr_bad("10.0.0.0/8/8", "\"10.0.0.0/8/8\": expected a prefix length from 0 "
	    "to 32 after \"/\"");
	cidr_bad("10.0.0.0/ 8", "\"10.0.0.0/ 8\": expected a prefix length from 0 "
	    "to 32 after \"/\"");
	cidr_bad("lb.example.org", "\"lb.example.org\": expected an IPv4 or IPv6 "
	    "address (no brackets, no host names), optionally with /PREFIX");
	cidr_bad("[::1]/128", "\"[::1]/128\": expected an IPv4 or IPv6 address (no "
	    "brackets, no host names), optionally with /PREFIX");
	cidr_bad("fe80::1%eth0", "\"fe80::1%eth0\": expected an IPv4 or IPv6 "
	    "address (no brackets, no host names), optionally with /PREFIX");
	cidr_bad("010.0.0.0/8", "\"010.0.0.0/8\": expected an IPv4 or IPv6 address "
	    "(no brackets, no host names), optionally with /PREFIX");
	cidr_bad("10.0.0.0 8", "\"10.0.0.0 8\": expected an IPv4 or IPv6 address "
	    "(no brackets, no host names), optionally with /PREFIX");
	cidr_bad("/8", "\"/8\": expected an IPv4 or IPv6 address, optionally with "
	    "/PREFIX");
	cidr_bad("10.0.0.0/8,", "an empty entry; expected networks separated by "
	    "commas, e.g. 10.0.0.0/8, ::1/128");
	cidr_bad("10.0.0.0/8,, ::1", "an empty entry; expected networks separated "
	    "by commas, e.g. 10.0.0.0/8, ::1/128");
	/* the good ones before a bad one are not kept either */
	cidr_bad("172.16.0.0/12, 10.0.0.0/33", "\"10.0.0.0/33\": expected a prefix "
	    "length from 0 to 32 after \"/\"");

	/* 64 in all */
	for (int i = 0; i < PROXYPROTO_MAX_NETWORKS; i++) {
		char net[32];

		snprintf(net, sizeof net, "10.%d.0.0/16", i);
		cidr_ok(&l, net);
	}
	cr_assert_eq(proxyproto_cidr_parse(&l, "192.0.2.1", why, sizeof why), -1);
	cr_assert_str_eq(why, "too many networks: at most 64 in all "
	    "proxy_protocol_from lines together");
	cr_assert_eq(l.n, PROXYPROTO_MAX_NETWORKS);
}

Test(proxyproto, trusted_sources)
{
	struct cidr_list l = { 0 }, none = { 0 }, all6 = { 0 }, mapped = { 0 };
	struct sockaddr_un un = { .sun_family = AF_UNIX };

	cidr_ok(&l, "10.0.0.0/8, 192.0.2.7, 198.51.100.128/25, ::1, 2001:db8::/32");
	cr_assert(trusted(&l, "10.0.0.0"));
	cr_assert(trusted(&l, "10.255.255.255"));
	cr_assert(!trusted(&l, "11.0.0.1"));
	cr_assert(!trusted(&l, "9.255.255.255"));
	cr_assert(trusted(&l, "192.0.2.7"));
	cr_assert(!trusted(&l, "192.0.2.6"));
	cr_assert(!trusted(&l, "192.0.2.8"));
	cr_assert(trusted(&l, "198.51.100.128"));
	cr_assert(trusted(&l, "198.51.100.255"));
	cr_assert(!trusted(&l, "198.51.100.127"));
	cr_assert(trusted(&l, "::1"));
	cr_assert(!trusted(&l, "::2"));
	cr_assert(trusted(&l, "2001:db8:ffff::1"));
	cr_assert(!trusted(&l, "2001:db9::1"));
	/* a dual-stack socket's view of an IPv4 client */
	cr_assert(trusted(&l, "::ffff:10.1.2.3"));
	cr_assert(!trusted(&l, "::ffff:11.1.2.3"));
	/* an IPv4 address is not in an IPv6 network (nor the reverse) */
	cr_assert(!trusted(&l, "::a00:1"));
	cidr_ok(&all6, "::/0");
	cr_assert(trusted(&all6, "2001:db8::1"));
	cr_assert(!trusted(&all6, "10.0.0.1"));
	cr_assert(!trusted(&all6, "::ffff:10.0.0.1"));
	/* written as mapped, it still means those IPv4 clients */
	cidr_ok(&mapped, "::ffff:10.0.0.0/104");
	cr_assert(trusted(&mapped, "10.9.9.9"));
	cr_assert(trusted(&mapped, "::ffff:10.9.9.9"));
	cr_assert(!trusted(&mapped, "11.9.9.9"));
	/* nobody, without a list; never a unix socket */
	cr_assert(!trusted(&none, "127.0.0.1"));
	cr_assert(!proxyproto_trusted((struct sockaddr *)&un, &l));
	cr_assert(!proxyproto_trusted(NULL, &l));
}

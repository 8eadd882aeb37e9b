/*
 * routemap.c — the static route map (routemap.h).  The file is read whole
 * into one buffer and checked line by line; each accepted key (lowercased)
 * and target is packed, NUL-terminated, to the front of that same buffer,
 * and an array of offsets into it is sorted by key for the binary search.
 * Two allocations per map, whatever its size.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "routemap.h"

#define FILE_MAX ((size_t)256 * 1024 * 1024)
#define LINE_MAX_LEN 1024
#define KEY_MAX 255
#define BACKEND_NAME_MAX 63
#define HOST_MAX (ROUTEMAP_HOST_SIZE - 1)
#define SHOWN_MAX 64		/* bytes of a field an error message repeats */
#define ROUTES_FIRST 1024

/*
 * Offsets, not pointers: the strings move when their buffer is shrunk.
 * The key's first 8 bytes, big-endian and NUL-padded, order routes as the
 * keys do: most comparisons, sorting or looking up, end there without
 * reading the strings.
 */
struct route {
	uint32_t prefix[2];
	uint32_t key;
	uint32_t target;
	uint32_t line;		/* for the message about a duplicate */
};

struct routemap {
	char *strings;
	struct route *routes;	/* sorted by key */
	size_t n;
	const char *fallback;	/* the target of "*"; NULL without one */
};

/* What a load knows while it reads one file. */
struct loader {
	const char *name;
	char *err;
	size_t errlen;
	char *buf;		/* the file, then the packed strings */
	size_t len;
	size_t packed;		/* bytes of strings at the front of buf */
	struct route *routes;
	size_t n, cap;
	uint32_t line;		/* the line being read */
};

static void
load_error(struct loader *l, uint32_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "NAME:LINE: reason", or "NAME: reason" for line 0 (the whole file). */
static void
load_error(struct loader *l, uint32_t line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (l->err == NULL || l->errlen == 0)
		return;
	if (line != 0)
		n = snprintf(l->err, l->errlen, "%s:%u: ", l->name, (unsigned)line);
	else
		n = snprintf(l->err, l->errlen, "%s: ", l->name);
	if (n < 0 || (size_t)n >= l->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(l->err + n, l->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

struct shown {
	char s[SHOWN_MAX + 4];
};

/* A field as an error message repeats it: short, and anything but
 * printable ASCII as '?', so that the log line stays one line of text. */
static const char *
show(struct shown *out, const char *s, size_t len)
{
	size_t i, n = len > SHOWN_MAX ? SHOWN_MAX : len;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		out->s[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	snprintf(out->s + n, sizeof(out->s) - n, "%s", n < len ? "..." : "");
	return out->s;
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Printable ASCII but the space: what a target may hold. */
static bool
printable(char c)
{
	return (unsigned char)c > ' ' && (unsigned char)c < 0x7f;
}

static bool
is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

static bool
names_only(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (!is_name_char(s[i]))
			return false;
	return true;
}

static unsigned char
lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* The first 8 bytes of s (ASCII lowercased) as struct route keeps them. */
static void
prefix_of(const char *s, uint32_t prefix[2])
{
	size_t i;

	prefix[0] = prefix[1] = 0;
	for (i = 0; i < 8 && s[i] != '\0'; i++)
		prefix[i / 4] |= (uint32_t)lower((unsigned char)s[i]) << (24 - 8 * (i % 4));
}

/*
 * s against a key of the map, ASCII case ignored in s (keys are lowercase)
 * as strcmp would order them; sprefix is s's prefix_of.
 */
static int
key_cmp(const char *s, const uint32_t sprefix[2], const struct route *r,
    const char *strings)
{
	const unsigned char *a, *b;
	int c;

	if (sprefix[0] != r->prefix[0])
		return sprefix[0] < r->prefix[0] ? -1 : 1;
	if (sprefix[1] != r->prefix[1])
		return sprefix[1] < r->prefix[1] ? -1 : 1;
	/* no NUL in a key: the same prefix ending early is the same key */
	if ((sprefix[1] & 0xff) == 0)
		return 0;
	a = (const unsigned char *)s + 8;
	b = (const unsigned char *)strings + r->key + 8;
	while ((c = lower(*a) - *b) == 0 && *b != '\0') {
		a++;
		b++;
	}
	return c;
}

/* An IPv6 literal, with an optional "%zone" for link-local addresses. */
static bool
ipv6_valid(const char *h, size_t len)
{
	char addr[INET6_ADDRSTRLEN];
	struct in6_addr in6;
	const char *zone = memchr(h, '%', len);
	size_t alen = zone != NULL ? (size_t)(zone - h) : len;

	if (alen == 0 || alen >= sizeof(addr))
		return false;
	if (zone != NULL && (zone + 1 == h + len ||
	    !names_only(zone + 1, len - alen - 1)))
		return false;
	memcpy(addr, h, alen);
	addr[alen] = '\0';
	return inet_pton(AF_INET6, addr, &in6) == 1;
}

/*
 * "HOST:PORT" or "[IPV6]:PORT", s[0..len) holding a ':' and only printable
 * ASCII: the host (brackets off) and the port as pieces of s.  NULL, or
 * why it is not an address.
 */
static const char *
split_address(const char *s, size_t len, const char **host, size_t *hostlen,
    const char **port, size_t *portlen)
{
	static const char port_hint[] = "the port must be a number from 1 to 65535";
	const char *h = s, *p, *end = s + len, *close;
	size_t hlen, plen, i;
	unsigned long n = 0;

	if (s[0] == '[') {
		close = memchr(s, ']', len);
		if (close == NULL || close + 1 == end || close[1] != ':')
			return "expected [IPV6]:PORT";
		h = s + 1;
		hlen = (size_t)(close - h);
		p = close + 2;
		if (hlen > HOST_MAX)
			return "host too long: at most 255 bytes";
		if (!ipv6_valid(h, hlen))
			return "not an IPv6 address between the brackets";
	} else {
		p = memchr(s, ':', len);
		hlen = (size_t)(p - s);
		p++;
		if (memchr(p, ':', (size_t)(end - p)) != NULL)
			return "an IPv6 address needs brackets, e.g. [2001:db8::1]:143";
		if (hlen == 0)
			return "expected HOST:PORT";
		if (hlen > HOST_MAX)
			return "host too long: at most 255 bytes";
		if (!names_only(h, hlen))
			return "the host may hold only letters, digits, '.', '-' and '_'";
	}
	plen = (size_t)(end - p);
	/* no leading zero: "0143" is not silently port 143 (nor octal 99) */
	if (plen == 0 || plen > 5 || p[0] == '0')
		return port_hint;
	for (i = 0; i < plen; i++) {
		if (p[i] < '0' || p[i] > '9')
			return port_hint;
		n = n * 10 + (unsigned long)(p[i] - '0');
	}
	if (n > 65535)
		return port_hint;
	*host = h;
	*hostlen = hlen;
	*port = p;
	*portlen = plen;
	return NULL;
}

/* NULL, or why k[0..len) cannot be a key. */
static const char *
check_key(const char *k, size_t len)
{
	size_t i;

	/* never empty: a field has at least one byte */
	if (len > KEY_MAX)
		return "too long: at most 255 bytes";
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)k[i];

		if (c < 0x20 || c == 0x7f)
			return "control character in the key";
	}
	if (len == 1 && k[0] == '*')
		return NULL;
	/* no wildcards: "*@example.com" would never match anybody */
	if (memchr(k, '*', len) != NULL)
		return "'*' is the default and stands alone; a domain is "
		    "written @example.com";
	if (k[0] == '@' && len == 1)
		return "'@' alone; a domain is written @example.com";
	/* the domain looked up is what follows a login name's last '@' */
	if (k[0] == '@' && memchr(k + 1, '@', len - 1) != NULL)
		return "a domain holds one '@'";
	return NULL;
}

/* NULL, or why t[0..len) can be neither a backend name nor an address. */
static const char *
check_target(const char *t, size_t len)
{
	const char *h, *p;
	size_t hlen, plen, i;

	for (i = 0; i < len; i++)
		if (!printable(t[i]))
			return "only printable ASCII";
	if (memchr(t, ':', len) != NULL)
		return split_address(t, len, &h, &hlen, &p, &plen);
	if (len > BACKEND_NAME_MAX)
		return "a backend name holds at most 63 bytes";
	if (!names_only(t, len))
		return "a backend name may hold only letters, digits, '.', '-' "
		    "and '_'; an address is HOST:PORT";
	return NULL;
}

/*
 * Up to three fields of a line (a third only to be refused); a '#' that
 * starts a field starts the comment.
 */
static size_t
split_fields(char *s, size_t len, char **field, size_t *flen)
{
	size_t i = 0, n = 0;

	while (n < 3) {
		while (i < len && is_blank(s[i]))
			i++;
		if (i == len || s[i] == '#')
			break;
		field[n] = s + i;
		while (i < len && !is_blank(s[i]))
			i++;
		flen[n] = (size_t)(s + i - field[n]);
		n++;
	}
	return n;
}

/* src[0..len) to dst, NUL-terminated; dst <= src, so a forward copy. */
static void
pack(char *dst, const char *src, size_t len, bool fold)
{
	size_t i;

	for (i = 0; i < len; i++)
		dst[i] = fold ? (char)lower((unsigned char)src[i]) : src[i];
	dst[len] = '\0';
}

/*
 * One line (without its line ending) of l->buf.  An entry's strings are
 * packed at l->packed, which never passes the line's start: a line is at
 * least as long as what it gives, the bytes between the fields and the
 * line ending (or the spare byte at the buffer's end) paying for the NULs.
 * 0, 1 for a mistake (reported), -1 out of memory (reported).
 */
static int
parse_line(struct loader *l, char *s, size_t len)
{
	struct shown a, b;
	struct route *r;
	char *field[3];
	size_t flen[3];
	const char *why;

	if (len > LINE_MAX_LEN) {
		load_error(l, l->line, "line too long: at most %d bytes", LINE_MAX_LEN);
		return 1;
	}
	switch (split_fields(s, len, field, flen)) {
	case 0:
		return 0;
	case 1:
		load_error(l, l->line, "missing target after \"%s\"",
		    show(&a, field[0], flen[0]));
		return 1;
	case 3:
		load_error(l, l->line, "more than two fields: \"%s\" after the "
		    "target (a comment starts with '#')", show(&a, field[2], flen[2]));
		return 1;
	}
	if ((why = check_key(field[0], flen[0])) != NULL) {
		load_error(l, l->line, "bad key \"%s\": %s",
		    show(&a, field[0], flen[0]), why);
		return 1;
	}
	if ((why = check_target(field[1], flen[1])) != NULL) {
		load_error(l, l->line, "bad target \"%s\" for \"%s\": %s",
		    show(&a, field[1], flen[1]), show(&b, field[0], flen[0]), why);
		return 1;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap == 0 ? ROUTES_FIRST : l->cap * 2;

		if ((r = reallocarray(l->routes, cap, sizeof(*r))) == NULL) {
			load_error(l, 0, "%s", strerror(ENOMEM));
			return -1;
		}
		l->routes = r;
		l->cap = cap;
	}
	r = &l->routes[l->n++];
	r->line = l->line;
	r->key = (uint32_t)l->packed;
	pack(l->buf + l->packed, field[0], flen[0], true);
	prefix_of(l->buf + l->packed, r->prefix);
	l->packed += flen[0] + 1;
	r->target = (uint32_t)l->packed;
	pack(l->buf + l->packed, field[1], flen[1], false);
	l->packed += flen[1] + 1;
	return 0;
}

/* Every line in turn: 0, 1 after a mistake, -1 out of memory. */
static int
parse(struct loader *l)
{
	size_t pos = 0;
	int rc;

	while (pos < l->len) {
		char *s = l->buf + pos, *nl = memchr(s, '\n', l->len - pos);
		size_t len = nl != NULL ? (size_t)(nl - s) : l->len - pos;

		pos += len + (nl != NULL);
		l->line++;
		if (len > 0 && s[len - 1] == '\r')
			len--;
		if ((rc = parse_line(l, s, len)) != 0)
			return rc;
	}
	return 0;
}

/* The whole stream into l->buf, with a spare byte after it. */
static int
read_all(struct loader *l, FILE *f, size_t hint)
{
	/* room for the file, its spare byte and one more to see the end */
	size_t cap = hint + 2, got;
	char *nbuf;
	int e;

	if (cap < 4096)
		cap = 4096;
	if ((l->buf = malloc(cap)) == NULL) {
		load_error(l, 0, "%s", strerror(ENOMEM));
		return -1;
	}
	for (;;) {
		if (l->len == cap - 1) {
			cap = cap > (FILE_MAX + 2) / 2 ? FILE_MAX + 2 : cap * 2;
			if ((nbuf = realloc(l->buf, cap)) == NULL) {
				load_error(l, 0, "%s", strerror(ENOMEM));
				return -1;
			}
			l->buf = nbuf;
		}
		got = fread(l->buf + l->len, 1, cap - 1 - l->len, f);
		l->len += got;
		if (l->len > FILE_MAX) {
			load_error(l, 0, "%s (at most 256 MiB)", strerror(EFBIG));
			return -1;
		}
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		e = errno != 0 ? errno : EIO;
		load_error(l, 0, "%s", strerror(e));
		return -1;
	}
	return 0;
}

/*
 * Routes in key_cmp's order (both keys are lowercase already: strcmp is
 * enough after the prefix), then by line: of equal keys, the first in the
 * file first.  No two routes are equal.
 */
static int
route_cmp(const struct route *x, const struct route *y, const char *strings)
{
	int c;

	if (x->prefix[0] != y->prefix[0])
		return x->prefix[0] < y->prefix[0] ? -1 : 1;
	if (x->prefix[1] != y->prefix[1])
		return x->prefix[1] < y->prefix[1] ? -1 : 1;
	if ((x->prefix[1] & 0xff) != 0 &&
	    (c = strcmp(strings + x->key + 8, strings + y->key + 8)) != 0)
		return c;
	return x->line < y->line ? -1 : x->line > y->line;
}

static void
route_swap(struct route *a, struct route *b)
{
	struct route t = *a;

	*a = *b;
	*b = t;
}

static void
sift_down(struct route *r, size_t i, size_t n, const char *s)
{
	size_t c;

	while ((c = 2 * i + 1) < n) {
		if (c + 1 < n && route_cmp(&r[c], &r[c + 1], s) < 0)
			c++;
		if (route_cmp(&r[i], &r[c], s) >= 0)
			return;
		route_swap(&r[i], &r[c]);
		i = c;
	}
}

/*
 * Introsort: quicksort (median of three), heapsort past depth levels so
 * that no file makes the load quadratic, insertion sort for short runs.
 * Our own rather than qsort_r: the comparison inlined and no scratch copy
 * of the array, a million routes sort in a third of the time.
 */
static void
sort_routes(struct route *r, size_t n, unsigned depth, const char *s)
{
	struct route pivot, v;
	size_t i, j, m;

	while (n > 16) {
		if (depth-- == 0) {
			for (i = n / 2; i-- > 0;)
				sift_down(r, i, n, s);
			for (i = n - 1; i > 0; i--) {
				route_swap(&r[0], &r[i]);
				sift_down(r, 0, i, s);
			}
			return;
		}
		m = n / 2;
		if (route_cmp(&r[m], &r[0], s) < 0)
			route_swap(&r[m], &r[0]);
		if (route_cmp(&r[n - 1], &r[m], s) < 0) {
			route_swap(&r[n - 1], &r[m]);
			if (route_cmp(&r[m], &r[0], s) < 0)
				route_swap(&r[m], &r[0]);
		}
		/* r[0] < pivot < r[n - 1] stop both scans: no bound checks */
		pivot = r[m];
		i = 0;
		j = n - 1;
		for (;;) {
			while (route_cmp(&r[i], &pivot, s) < 0)
				i++;
			while (route_cmp(&pivot, &r[j], s) < 0)
				j--;
			if (i >= j)
				break;
			route_swap(&r[i], &r[j]);
			i++;
			j--;
		}
		/* r[0..j] <= pivot <= r[j+1..n): recurse into the smaller */
		if (j + 1 < n - j - 1) {
			sort_routes(r, j + 1, depth, s);
			r += j + 1;
			n -= j + 1;
		} else {
			sort_routes(r + j + 1, n - j - 1, depth, s);
			n = j + 1;
		}
	}
	for (i = 1; i < n; i++) {
		v = r[i];
		for (j = i; j > 0 && route_cmp(&v, &r[j - 1], s) < 0; j--)
			r[j] = r[j - 1];
		r[j] = v;
	}
}

/*
 * A key given twice, with the routes sorted: the one whose second line
 * comes first in the file is reported, unless another mistake (on
 * bad_line, 0 for none) comes before it.  0, or -1 when there is one.
 */
static int
check_duplicates(struct loader *l, uint32_t bad_line)
{
	const char *s = l->buf;
	const struct route *r = l->routes;
	size_t i, first = 0, dup = 0, dup_first = 0;
	struct shown a;

	for (i = 1; i < l->n; i++) {
		if (key_cmp(s + r[i].key, r[i].prefix, &r[i - 1], s) != 0) {
			first = i;
			continue;
		}
		/* equal keys are sorted by line: i is a second occurrence */
		if (dup == 0 || r[i].line < r[dup].line) {
			dup = i;
			dup_first = first;
		}
	}
	if (dup == 0)
		return 0;
	if (bad_line == 0 || r[dup].line < bad_line)
		load_error(l, r[dup].line, "duplicate key \"%s\" (first on line %u)",
		    show(&a, s + r[dup].key, strlen(s + r[dup].key)),
		    (unsigned)r[dup_first].line);
	return -1;
}

/* The route whose key is key, ASCII case ignored; NULL when none. */
static const struct route *
find(const struct routemap *m, const char *key)
{
	size_t lo = 0, hi = m->n;
	uint32_t prefix[2];

	prefix_of(key, prefix);
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = key_cmp(key, prefix, &m->routes[mid], m->strings);

		if (c == 0)
			return &m->routes[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static struct routemap *
load(FILE *f, size_t hint, const char *name, char *err, size_t errlen)
{
	struct loader l = { .name = name, .err = err, .errlen = errlen };
	struct routemap *m = NULL;
	const struct route *def;
	void *shrunk;
	unsigned depth;
	size_t n;
	int rc = 0;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (read_all(&l, f, hint) < 0 || (rc = parse(&l)) < 0)
		goto fail;
	for (n = l.n, depth = 0; n > 1; n /= 2)
		depth += 2;
	sort_routes(l.routes, l.n, depth, l.buf);
	/* a mistake stopped the reading: a duplicate before it comes first */
	if (check_duplicates(&l, rc != 0 ? l.line : 0) < 0 || rc != 0)
		goto fail;
	if ((m = calloc(1, sizeof(*m))) == NULL) {
		load_error(&l, 0, "%s", strerror(ENOMEM));
		goto fail;
	}
	/* the comments and the blanks go back to the allocator */
	if ((shrunk = realloc(l.buf, l.packed > 0 ? l.packed : 1)) != NULL)
		l.buf = shrunk;
	if (l.n > 0 && l.n < l.cap &&
	    (shrunk = reallocarray(l.routes, l.n, sizeof(*l.routes))) != NULL)
		l.routes = shrunk;
	m->strings = l.buf;
	m->routes = l.routes;
	m->n = l.n;
	if ((def = find(m, "*")) != NULL)
		m->fallback = m->strings + def->target;
	return m;
fail:
	free(l.buf);
	free(l.routes);
	return NULL;
}

struct routemap *
routemap_load_stream(FILE *f, const char *name, char *err, size_t errlen)
{
	return load(f, 0, name, err, errlen);
}

struct routemap *
routemap_load(const char *path, char *err, size_t errlen)
{
	struct loader l = { .name = path, .err = err, .errlen = errlen };
	struct routemap *m;
	struct stat st;
	size_t hint = 0;
	FILE *f;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if ((f = fopen(path, "r")) == NULL) {
		load_error(&l, 0, "%s", strerror(errno));
		return NULL;
	}
	/* a regular file's size is known: refused before it is read */
	if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode)) {
		if ((uintmax_t)st.st_size > FILE_MAX) {
			load_error(&l, 0, "%s (at most 256 MiB)", strerror(EFBIG));
			fclose(f);
			return NULL;
		}
		hint = (size_t)st.st_size;
	}
	m = load(f, hint, path, err, errlen);
	fclose(f);
	return m;
}

void
routemap_free(struct routemap *m)
{
	if (m == NULL)
		return;
	free(m->strings);
	free(m->routes);
	free(m);
}

const char *
routemap_lookup(const struct routemap *m, const char *user)
{
	const struct route *r;
	const char *at;

	if (m == NULL || user == NULL)
		return NULL;
	if ((r = find(m, user)) != NULL)
		return m->strings + r->target;
	/* "@example.com" is the very key of the user's domain */
	if ((at = strrchr(user, '@')) != NULL && (r = find(m, at)) != NULL)
		return m->strings + r->target;
	return m->fallback;
}

size_t
routemap_entries(const struct routemap *m)
{
	return m != NULL ? m->n : 0;
}

bool
routemap_target_address(const char *target, char *host, size_t hostlen,
    char *port, size_t portlen)
{
	const char *h, *p;
	size_t len, hlen, plen, i;

	if (target == NULL || strchr(target, ':') == NULL)
		return false;
	len = strlen(target);
	for (i = 0; i < len; i++)
		if (!printable(target[i]))
			return false;
	if (split_address(target, len, &h, &hlen, &p, &plen) != NULL ||
	    hlen >= hostlen || plen >= portlen)
		return false;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	memcpy(port, p, plen);
	port[plen] = '\0';
	return true;
}

/*
 * util.c — errors and progress lines, time, statistics, byte buffers, the
 * test messages and CRC32 for the benchmark program.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

/* ------------------------------------------------------------ utilities */

void
die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "bench_mappend: error: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

void
progress(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		die("out of memory (%zu bytes)", n);
	return p;
}

uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double
median(const double *v, int n)
{
	double s[64];

	if (n <= 0 || n > 64)
		return 0;
	memcpy(s, v, (size_t)n * sizeof(*s));
	qsort(s, (size_t)n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

double
minimum(const double *v, int n)
{
	double m;
	int i;

	if (n <= 0)
		return 0;
	for (m = v[0], i = 1; i < n; i++)
		if (v[i] < m)
			m = v[i];
	return m;
}

void
buf_reserve(struct buf *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 4096;

	if (b->len + more <= b->cap)
		return;
	while (cap < b->len + more)
		cap *= 2;
	b->p = realloc(b->p, cap);
	if (b->p == NULL)
		die("out of memory (%zu bytes)", cap);
	b->cap = cap;
}

void
buf_add(struct buf *b, const void *data, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

void
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	buf_reserve(b, 256);
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		die("vsnprintf failed");
	if ((size_t)n >= b->cap - b->len) {
		buf_reserve(b, (size_t)n + 1);
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

void
buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ------------------------------------------------------------- messages */

/*
 * Append one RFC 5322 message of exactly size bytes to b: a few headers
 * (the subject and Message-ID carry id and idx, so every message differs)
 * and lines of up to 72 pseudo-random letters and spaces, CRLF-terminated.
 */
void
add_message(struct buf *b, size_t size, const char *id, unsigned idx)
{
	char hdr[512];
	int hn;
	size_t left, start = b->len;
	uint32_t x = 2463534242u ^ (idx * 2654435761u);
	char *p;

	hn = snprintf(hdr, sizeof(hdr),
	    "From: Bench Sender <sender@example.org>\r\n"
	    "To: Bench Recipient <recipient@example.org>\r\n"
	    "Subject: mappend benchmark %s message %u\r\n"
	    "Date: Mon, 01 Jan 2024 12:00:00 +0000\r\n"
	    "Message-ID: <bench.%s.%u@example.org>\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n"
	    "\r\n", id, idx, id, idx);
	if (hn < 0 || (size_t)hn + 2 > size)
		die("message size %zu too small", size);
	buf_reserve(b, size);
	memcpy(b->p + b->len, hdr, (size_t)hn);
	b->len += (size_t)hn;
	p = b->p + b->len;
	left = size - (size_t)hn;
	while (left > 0) {
		size_t line = 72, i;

		if (left <= 74)
			line = left - 2;	/* the last line */
		else if (left - 74 < 2)
			line = 60;		/* never leave a single byte */
		for (i = 0; i < line; i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			p[i] = (x & 7) == 0 ? ' ' : (char)('a' + (x >> 8) % 26);
		}
		if (line > 0)
			p[0] = p[0] == ' ' ? 'x' : p[0];
		p[line] = '\r';
		p[line + 1] = '\n';
		p += line + 2;
		left -= line + 2;
	}
	b->len = start + size;
}


/*
 * CRC-32 (IEEE 802.3, as zlib's crc32()), one table lookup per byte.  Slow
 * (a few hundred MB/s), so it runs only in the untimed rounds: a timed
 * round's client should do as little as it can besides reading.
 */
uint32_t
crc32_update(uint32_t crc, const void *p, size_t n)
{
	static uint32_t table[256];
	static bool ready;
	const unsigned char *b = p;

	if (!ready) {
		uint32_t i, k, c;

		for (i = 0; i < 256; i++) {
			for (c = i, k = 0; k < 8; k++)
				c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
			table[i] = c;
		}
		ready = true;
	}
	crc = ~crc;
	while (n-- > 0)
		crc = table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

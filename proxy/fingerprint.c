/*
 * fingerprint.c — the content of a message compared the way a server may
 * have rewritten it (see fingerprint.h).
 */
#include <stdint.h>
#include <string.h>

#include "fingerprint.h"

/* Bytes given to the digest at once, CRs taken out. */
#define CHUNK 4096

int
fingerprinter_init(struct fingerprinter *f)
{
	memset(f, 0, sizeof(*f));
	return (f->md = EVP_MD_CTX_new()) != NULL ? 0 : -1;
}

void
fingerprinter_free(struct fingerprinter *f)
{
	EVP_MD_CTX_free(f->md);
	f->md = NULL;
}

void
fingerprint_begin(struct fingerprinter *f)
{
	f->size = f->canon_len = f->lines = 0;
	f->failed = EVP_DigestInit_ex(f->md, EVP_sha256(), NULL) != 1;
}

/* The number of LFs in p[0, n), eight bytes at a time: a byte's high bit
 * in t is clear exactly when the byte equals LF. */
static uint64_t
count_lf(const unsigned char *p, size_t n)
{
	const uint64_t low7 = 0x7f7f7f7f7f7f7f7fULL, high = 0x8080808080808080ULL;
	const uint64_t lfs = 0x0a0a0a0a0a0a0a0aULL;
	uint64_t count = 0;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w, t;

		memcpy(&w, p + i, 8);
		w ^= lfs;
		t = ((w & low7) + low7) | w;
		count += (uint64_t)__builtin_popcountll(~t & high);
	}
	for (; i < n; i++)
		count += p[i] == '\n';
	return count;
}

/* Canonical bytes gathered into chunks for the digest. */
struct canon {
	unsigned char out[CHUNK];
	size_t k;
	bool nuls;		/* the input has NULs: each becomes 0x80 */
};

static void
canon_flush(struct fingerprinter *f, struct canon *c)
{
	if (c->k == 0)
		return;
	f->failed |= EVP_DigestUpdate(f->md, c->out, c->k) != 1;
	f->canon_len += c->k;
	c->k = 0;
}

/* A run without CRs, copied whole. */
static void
canon_put(struct fingerprinter *f, struct canon *c, const unsigned char *p, size_t n)
{
	while (n > 0) {
		size_t take = sizeof(c->out) - c->k < n ? sizeof(c->out) - c->k : n;
		size_t i;

		memcpy(c->out + c->k, p, take);
		if (c->nuls)
			for (i = 0; i < take; i++)
				if (c->out[c->k + i] == '\0')
					c->out[c->k + i] = 0x80;
		c->k += take;
		p += take;
		n -= take;
		if (c->k == sizeof(c->out))
			canon_flush(f, c);
	}
}

void
fingerprint_add(struct fingerprinter *f, const void *data, size_t n)
{
	const unsigned char *p = data;
	struct canon c;

	c.k = 0;
	c.nuls = memchr(p, '\0', n) != NULL;	/* rare */
	f->size += n;
	f->lines += count_lf(p, n);
	/* the runs between CRs (a line each, mostly) */
	while (n > 0) {
		const unsigned char *cr = memchr(p, '\r', n);
		size_t run = cr != NULL ? (size_t)(cr - p) : n;

		canon_put(f, &c, p, run);
		p += run;
		n -= run;
		if (n > 0) {
			p++;	/* the CR */
			n--;
		}
	}
	canon_flush(f, &c);
}

int
fingerprint_end(struct fingerprinter *f, struct fingerprint *out)
{
	unsigned dlen = 0;

	memset(out, 0, sizeof(*out));
	out->size = f->size;
	out->canon_len = f->canon_len;
	out->lines = f->lines;
	if (f->failed || EVP_DigestFinal_ex(f->md, out->digest, &dlen) != 1 ||
	    dlen != FINGERPRINT_DIGEST_LEN) {
		memset(out->digest, 0, sizeof(out->digest));
		return -1;
	}
	return 0;
}

/* A rewritten copy loses CRs at most down to the content itself, and
 * gains one CR per LF at most. */
bool
fingerprint_size_fits(const struct fingerprint *fp, uint64_t stored_size)
{
	return stored_size == fp->size ||
	    (stored_size >= fp->canon_len && stored_size <= fp->size + fp->lines);
}

bool
fingerprint_same(const struct fingerprint *a, const struct fingerprint *b)
{
	static const unsigned char zero[FINGERPRINT_DIGEST_LEN];

	return a->canon_len == b->canon_len &&
	    memcmp(a->digest, zero, sizeof(zero)) != 0 &&
	    memcmp(a->digest, b->digest, sizeof(a->digest)) == 0;
}

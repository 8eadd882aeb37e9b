/*
 * fingerprint.c — the content of a message compared the way a server may
 * have rewritten it (see fingerprint.h).
 */
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

void
fingerprint_add(struct fingerprinter *f, const void *data, size_t n)
{
	const unsigned char *p = data;
	unsigned char out[CHUNK];
	size_t i, k = 0;

	f->size += n;
	for (i = 0; i < n; i++) {
		unsigned char ch = p[i];

		if (ch == '\r')
			continue;
		if (ch == '\n')
			f->lines++;
		out[k++] = ch == '\0' ? 0x80 : ch;
		if (k == sizeof(out)) {
			f->failed |= EVP_DigestUpdate(f->md, out, k) != 1;
			f->canon_len += k;
			k = 0;
		}
	}
	if (k > 0) {
		f->failed |= EVP_DigestUpdate(f->md, out, k) != 1;
		f->canon_len += k;
	}
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

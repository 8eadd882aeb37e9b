/*
 * fingerprint.h — a message known by its content, whatever line ends the
 * server stored it with.
 *
 * A message whose UID is unknown (its answer was lost) is looked for among
 * the mailbox's new messages by content.  Servers do not always store the
 * bytes they were sent: Dovecot turns a bare LF into CRLF, a NUL into 0x80
 * and drops a trailing lone CR.  So the content is compared as read with
 * every CR left out and NUL as 0x80: the SHA-256 of those bytes and their
 * count; the number of LFs bounds the size a rewritten copy can have.
 */
#ifndef MAPPEND_FINGERPRINT_H
#define MAPPEND_FINGERPRINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define FINGERPRINT_DIGEST_LEN 32	/* SHA-256 */

struct fingerprint {
	uint64_t size;		/* the bytes as sent */
	uint64_t canon_len;	/* without CRs */
	uint64_t lines;		/* LFs */
	unsigned char digest[FINGERPRINT_DIGEST_LEN];	/* of the bytes without CRs */
};

/* A fingerprint being taken, the bytes given in any pieces. */
struct fingerprinter {
	EVP_MD_CTX *md;
	uint64_t size, canon_len, lines;
	bool failed;
};

/* 0, or -1 when out of memory. */
int fingerprinter_init(struct fingerprinter *);
void fingerprinter_free(struct fingerprinter *);
/* Start again on a new message. */
void fingerprint_begin(struct fingerprinter *);
void fingerprint_add(struct fingerprinter *, const void *, size_t);
/* 0, or -1 when the digest could not be computed (out is zeroed). */
int fingerprint_end(struct fingerprinter *, struct fingerprint *out);

/* Could a stored message of this RFC822.SIZE be fp, rewritten? */
bool fingerprint_size_fits(const struct fingerprint *fp, uint64_t stored_size);
/* The same content (b taken from what the server has stored). */
bool fingerprint_same(const struct fingerprint *a, const struct fingerprint *b);

#endif

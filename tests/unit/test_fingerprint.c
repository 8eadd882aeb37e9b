/* test_fingerprint.c — a message's content, compared the way a server may
 * have rewritten it. */
#include <criterion/criterion.h>
#include <string.h>

#include "fingerprint.h"

static struct fingerprint
print_of(const char *data, size_t n, size_t piece)
{
	struct fingerprinter f;
	struct fingerprint fp;
	size_t off;

	cr_assert_eq(fingerprinter_init(&f), 0);
	fingerprint_begin(&f);
	for (off = 0; off < n; off += piece)
		fingerprint_add(&f, data + off, n - off < piece ? n - off : piece);
	cr_assert_eq(fingerprint_end(&f, &fp), 0);
	fingerprinter_free(&f);
	return fp;
}

#define PRINT(s) print_of(s, sizeof(s) - 1, sizeof(s))

/* What Dovecot stores for a message with bare LFs, a NUL and a trailing CR
 * is the same message. */
Test(fingerprint, rewritten_line_ends_are_the_same_content)
{
	struct fingerprint sent = PRINT("Subject: a\nX: b\0c\r\n\nbody\nend\r");
	struct fingerprint stored = PRINT("Subject: a\r\nX: b\x80" "c\r\n\r\nbody\r\nend");

	cr_assert_eq(sent.size, 29);
	cr_assert_eq(sent.lines, 4);
	cr_assert_eq(sent.canon_len, 27);
	cr_assert(fingerprint_same(&sent, &stored));
	cr_assert(fingerprint_size_fits(&sent, stored.size), "%llu",
	    (unsigned long long)stored.size);
	cr_assert(fingerprint_size_fits(&sent, sent.size));
}

Test(fingerprint, other_content_differs)
{
	struct fingerprint a = PRINT("Subject: a\r\n\r\nbody\r\n");
	struct fingerprint b = PRINT("Subject: a\r\n\r\nbodY\r\n");
	struct fingerprint c = PRINT("Subject: a\r\n\r\nbody\r\n\r\n");

	cr_assert(!fingerprint_same(&a, &b));
	cr_assert(!fingerprint_same(&a, &c), "one line more");
	cr_assert(!fingerprint_size_fits(&a, a.canon_len - 1));
	cr_assert(!fingerprint_size_fits(&a, a.size + a.lines + 1));
}

/* The bytes may come in any pieces: at most one byte, or across the
 * fingerprinter's own chunk. */
Test(fingerprint, pieces_do_not_matter)
{
	static char big[10000];
	struct fingerprint whole, bytes;
	size_t i;

	for (i = 0; i < sizeof(big); i++)
		big[i] = i % 50 == 48 ? '\r' : i % 50 == 49 ? '\n' : (char)('a' + i % 26);
	whole = print_of(big, sizeof(big), sizeof(big));
	bytes = print_of(big, sizeof(big), 1);
	cr_assert(fingerprint_same(&whole, &bytes));
	cr_assert_eq(whole.canon_len, 9800);
	cr_assert_eq(whole.lines, 200);
}

/* A digest that could not be computed (zeroes) never matches. */
Test(fingerprint, no_digest_never_matches)
{
	struct fingerprint a, b;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	cr_assert(!fingerprint_same(&a, &b));
}

/* Against the definition, on bytes dense with CR, LF and NUL (every path
 * of the fingerprinter, whatever the pieces): the SHA-256 of the bytes
 * with every CR left out and NUL as 0x80, their count, and the LFs. */
Test(fingerprint, matches_the_definition_in_any_pieces)
{
	static unsigned char data[20000], canon[20000];
	static const size_t pieces[] = { 1, 3, 8, 4095, 4097, 9000, sizeof(data) };
	unsigned char digest[FINGERPRINT_DIGEST_LEN];
	size_t i, k = 0, lines = 0, p;
	unsigned seed = 12345;

	for (i = 0; i < sizeof(data); i++) {
		seed = seed * 1103515245 + 12345;
		/* long runs of text, then bursts of the special bytes */
		data[i] = (seed >> 16) % 7 == 0 ? "\r\n\0\r\r\n"[(seed >> 8) % 6] :
		    (unsigned char)('A' + (seed >> 20) % 50);
		if (i >= 10000 && i < 14000)
			data[i] = data[i] == '\0' ? 'z' : data[i];	/* a NUL-free stretch */
		if (data[i] == '\n')
			lines++;
		if (data[i] != '\r')
			canon[k++] = data[i] == '\0' ? 0x80 : data[i];
	}
	cr_assert_eq(EVP_Digest(canon, k, digest, NULL, EVP_sha256(), NULL), 1);
	for (p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++) {
		struct fingerprint fp = print_of((const char *)data, sizeof(data), pieces[p]);

		cr_assert_eq(fp.size, sizeof(data));
		cr_assert_eq(fp.canon_len, k, "pieces of %zu", pieces[p]);
		cr_assert_eq(fp.lines, lines, "pieces of %zu", pieces[p]);
		cr_assert_eq(memcmp(fp.digest, digest, sizeof(digest)), 0, "pieces of %zu",
		    pieces[p]);
	}
	/* and a NUL-free text, the fast path */
	for (i = 0; i < sizeof(data); i++)
		data[i] = i % 73 == 71 ? '\r' : i % 73 == 72 ? '\n' : (unsigned char)('a' + i % 26);
	for (i = 0, k = 0; i < sizeof(data); i++)
		if (data[i] != '\r')
			canon[k++] = data[i];
	cr_assert_eq(EVP_Digest(canon, k, digest, NULL, EVP_sha256(), NULL), 1);
	for (p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++) {
		struct fingerprint fp = print_of((const char *)data, sizeof(data), pieces[p]);

		cr_assert_eq(fp.canon_len, k);
		cr_assert_eq(memcmp(fp.digest, digest, sizeof(digest)), 0, "pieces of %zu",
		    pieces[p]);
	}
}

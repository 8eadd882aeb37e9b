/*
 * mock_util.h — pure helpers of the mock IMAP server: sequence sets, uid-set
 * formatting, base64, date-time syntax, LIST patterns.  No I/O and no
 * libevent, so that tests/unit/test_mock_store.c can test them alone.
 */
#ifndef MOCK_UTIL_H
#define MOCK_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mock_range {
	uint32_t lo, hi;
};

/* Sorted, merged, non-overlapping ranges. */
struct mock_seqset {
	struct mock_range *r;
	size_t n;
};

/* A 64 KiB line holds at most ~32k ranges; more than this is refused. */
#define MOCK_SEQSET_MAX_RANGES 16384

/*
 * Parse a sequence set ("1,3:5,7:*") of len bytes.  star is the value of
 * "*" (the largest number in use; 0 in an empty mailbox, where "*" then
 * matches nothing).  Numbers are 1..4294967295; "n:m" and "m:n" are the same
 * range.  Returns 0, or -1 with *why set to a static reason.
 */
int mock_seqset_parse(const char *s, size_t len, uint32_t star,
    struct mock_seqset *set, const char **why);
void mock_seqset_free(struct mock_seqset *set);
bool mock_seqset_contains(const struct mock_seqset *set, uint32_t v);
/* Largest member, 0 when empty. */
uint32_t mock_seqset_max(const struct mock_seqset *set);

/*
 * Write v[0..n) as an IMAP set keeping their order: runs of consecutive
 * increasing values become "lo:hi", others are joined by ",".  Returns the
 * length of the full text (as snprintf does); out is always NUL-terminated
 * when outlen > 0.
 */
size_t mock_uidset_format(const uint32_t *v, size_t n, char *out,
    size_t outlen);

/* Base64 (RFC 4648, padding required when the length is not a multiple of
 * 4).  Returns the decoded length, or -1 on bad input or when out is too
 * small. */
long mock_base64_decode(const char *in, size_t len, unsigned char *out,
    size_t outlen);

/* IMAP date-time contents (without quotes): "dd-Mon-yyyy hh:mm:ss +zzzz",
 * the day also as " d" or "d". */
bool mock_datetime_valid(const char *s, size_t len);

/* LIST matching: "*" matches anything, "%" anything but delim; other
 * bytes compare exactly. */
bool mock_list_match(const char *pattern, const char *name, char delim);

#endif

/*
 * fuzz_uidset.c — proxy/uidset.c against simple references written here.
 *
 * Input: data[0] picks the check, data[1] a bound (max) and data[2..5] a
 * minimum UID for SEARCH; the rest is UIDs (4 bytes each) or text.
 *   0  UIDs -> uidset_format -> uidset_parse gives them back, and one UID
 *      fewer room is refused
 *   1  text -> uidset_parse agrees with the reference; what it accepts
 *      formats and parses back to the same UIDs
 *   2  "APPENDUID " + text, and text as a whole code: the reference again
 *   3  SEARCH text: the reference again
 * Outputs are heap arrays of exactly max elements, so a write past the
 * bound is AddressSanitizer's to see.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "uidset.h"

#define HEADER 6

/* A number as the grammar has it; the text is a separate piece here. */
static bool
ref_number(const char *s, size_t len, uint32_t *v)
{
	uint64_t n = 0;
	size_t i;

	if (len == 0 || len > 10 || s[0] == '0')
		return false;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		n = n * 10 + (uint64_t)(s[i] - '0');
	}
	if (n > UINT32_MAX)
		return false;
	*v = (uint32_t)n;
	return true;
}

/* Comma-separated pieces, each NUMBER or NUMBER:NUMBER; counted first. */
static int
ref_parse(const char *s, size_t len, uint32_t *out, size_t max, size_t *n)
{
	uint64_t total = 0;
	int pass;

	for (pass = 0; pass < 2; pass++) {
		size_t start = 0;

		*n = 0;
		while (start <= len) {
			const char *comma = memchr(s + start, ',', len - start);
			size_t end = comma != NULL ? (size_t)(comma - s) : len;
			const char *colon = memchr(s + start, ':', end - start);
			uint32_t a, b, u;

			if (colon == NULL) {
				if (!ref_number(s + start, end - start, &a))
					return -1;
				b = a;
			} else {
				size_t c = (size_t)(colon - s);

				if (!ref_number(s + start, c - start, &a) ||
				    !ref_number(s + c + 1, end - c - 1, &b))
					return -1;
			}
			if (a > b) {
				u = a;
				a = b;
				b = u;
			}
			if (pass == 0) {
				total += (uint64_t)b - a + 1;
			} else {
				for (u = a;; u++) {
					out[(*n)++] = u;
					if (u == b)
						break;
				}
			}
			start = end + 1;
		}
		if (total > max)
			return -1;
	}
	return 0;
}

static int
ref_appenduid(const char *s, size_t len, uint32_t *validity, uint32_t *out,
    size_t max, size_t *n)
{
	static const char keyword[] = "appenduid ";
	const char *sp;
	size_t i, k = sizeof(keyword) - 1;

	*n = 0;
	if (len < k)
		return -1;
	for (i = 0; i < k; i++) {
		char c = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];

		if (c != keyword[i])
			return -1;
	}
	sp = memchr(s + k, ' ', len - k);
	if (sp == NULL || !ref_number(s + k, (size_t)(sp - s) - k, validity))
		return -1;
	i = (size_t)(sp - s) + 1;
	return ref_parse(s + i, len - i, out, max, n);
}

/* Words between spaces; a word with a parenthesis changes the depth, and
 * only words at depth 0 can be numbers. */
static size_t
ref_search(const char *s, size_t len, uint32_t min, uint32_t *out, size_t max,
    bool *more)
{
	size_t start = 0, stored = 0, depth = 0, i;

	*more = false;
	while (start < len) {
		const char *sp = memchr(s + start, ' ', len - start);
		size_t end = sp != NULL ? (size_t)(sp - s) : len;
		uint32_t v;
		bool number = depth == 0 && ref_number(s + start, end - start, &v);

		for (i = start; i < end; i++) {
			if (s[i] == '(')
				depth++;
			if (s[i] == ')' && depth > 0)
				depth--;
		}
		if (number && v >= min) {
			if (stored < max)
				out[stored++] = v;
			else
				*more = true;
		}
		start = end + 1;
	}
	return stored;
}

static void
check_same(int rc, const uint32_t *out, size_t n, int ref_rc,
    const uint32_t *ref, size_t ref_n)
{
	CHECK(rc == ref_rc);
	if (rc == 0) {
		CHECK(n == ref_n);
		CHECK(n == 0 || memcmp(out, ref, n * sizeof(*out)) == 0);
	}
}

static void
format_round_trip(const uint32_t *uids, size_t n)
{
	char *s = uidset_format(uids, n);
	uint32_t *back = malloc((n + 1) * sizeof(*back));
	size_t nback = 0;

	CHECK(s != NULL && back != NULL);
	CHECK(strspn(s, "0123456789:,") == strlen(s));
	if (n == 0) {
		CHECK(s[0] == '\0');
	} else {
		CHECK(uidset_parse(s, strlen(s), back, n, &nback) == 0);
		CHECK(nback == n && memcmp(back, uids, n * sizeof(*uids)) == 0);
		CHECK(uidset_parse(s, strlen(s), back, n - 1, &nback) == -1);
		/* runs are compressed: no "a,a+1" left in the text */
		CHECK(strlen(s) <= n * 11);
	}
	free(back);
	free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data + HEADER;
	size_t len, max, n = 0, ref_n = 0, i;
	uint32_t *out, *ref, min, validity = 0, ref_validity = 0;
	bool more = false, ref_more = false;
	char *code;

	if (size < HEADER)
		return 0;
	len = size - HEADER;
	max = data[1];
	memcpy(&min, data + 2, 4);
	out = malloc(max * sizeof(*out));
	ref = malloc(max * sizeof(*ref));
	CHECK((out != NULL && ref != NULL) || max == 0);

	switch (data[0] & 3) {
	case 0: {
		uint32_t *uids = malloc((len / 4 + 1) * sizeof(*uids));

		CHECK(uids != NULL);
		for (i = 0; i < len / 4; i++) {
			memcpy(&uids[i], text + 4 * i, 4);
			/* small numbers make runs */
			if (data[0] & 4)
				uids[i] %= 64;
			if (uids[i] == 0)
				uids[i] = 1;
		}
		format_round_trip(uids, len / 4);
		free(uids);
		break;
	}
	case 1:
		check_same(uidset_parse(text, len, out, max, &n), out, n,
		    ref_parse(text, len, ref, max, &ref_n), ref, ref_n);
		if (n > 0) {
			char *s = uidset_format(out, n);
			size_t m;

			CHECK(s != NULL);
			CHECK(uidset_parse(s, strlen(s), ref, n, &m) == 0);
			CHECK(m == n && memcmp(ref, out, n * sizeof(*out)) == 0);
			free(s);
		}
		break;
	case 2:
		check_same(uidset_parse_appenduid(text, len, &validity, out, max, &n),
		    out, n, ref_appenduid(text, len, &ref_validity, ref, max, &ref_n),
		    ref, ref_n);
		if (n > 0)
			CHECK(validity == ref_validity);
		code = malloc(len + 10);
		CHECK(code != NULL);
		memcpy(code, "APPENDUID ", 10);
		memcpy(code + 10, text, len);
		check_same(uidset_parse_appenduid(code, len + 10, &validity, out, max, &n),
		    out, n, ref_appenduid(code, len + 10, &ref_validity, ref, max, &ref_n),
		    ref, ref_n);
		if (n > 0)
			CHECK(validity == ref_validity && validity != 0);
		free(code);
		break;
	case 3:
		n = uidset_parse_search(text, len, min, out, max, &more);
		ref_n = ref_search(text, len, min, ref, max, &ref_more);
		CHECK(n == ref_n && more == ref_more && n <= max);
		CHECK(n == 0 || memcmp(out, ref, n * sizeof(*out)) == 0);
		break;
	}
	free(out);
	free(ref);
	return 0;
}

/*
 * uidset.c — UID sets: formatting the ones mappend sends (APPENDUID towards
 * the client, UID STORE / UID EXPUNGE / UID FETCH upstream) and reading the
 * ones servers send (APPENDUID codes, SEARCH answers).  One number reader
 * serves all of them, so that "0", "007" and 4294967296 mean the same
 * (nothing) everywhere.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "uidset.h"

/* "4294967295:4294967295," */
#define ELEMENT_MAX 22

/*
 * An nz-number (RFC 3501: digit-nz *DIGIT) at s[*i] that fits 32 bits;
 * *i moves past it.  -1 when there is none there.
 */
static int
read_nz(const char *s, size_t len, size_t *i, uint32_t *v)
{
	size_t j = *i;
	uint64_t n = 0;

	if (j >= len || s[j] < '1' || s[j] > '9')
		return -1;
	for (; j < len && s[j] >= '0' && s[j] <= '9'; j++) {
		n = n * 10 + (uint64_t)(s[j] - '0');
		if (n > UINT32_MAX)
			return -1;
	}
	*i = j;
	*v = (uint32_t)n;
	return 0;
}

char *
uidset_format(const uint32_t *uids, size_t n)
{
	char *out, *o;
	size_t i = 0;

	if (n > (SIZE_MAX - 1) / ELEMENT_MAX)
		return NULL;
	if ((out = malloc(n * ELEMENT_MAX + 1)) == NULL)
		return NULL;
	o = out;
	*o = '\0';
	while (i < n) {
		size_t j = i;

		/* UINT32_MAX + 1 wraps to 0: never the next of a run */
		while (j + 1 < n && uids[j] != UINT32_MAX && uids[j + 1] == uids[j] + 1)
			j++;
		if (j == i)
			o += sprintf(o, "%s%u", i > 0 ? "," : "", uids[i]);
		else
			o += sprintf(o, "%s%u:%u", i > 0 ? "," : "", uids[i], uids[j]);
		i = j + 1;
	}
	return out;
}

int
uidset_parse(const char *s, size_t len, uint32_t *out, size_t max, size_t *n)
{
	size_t i = 0;

	*n = 0;
	for (;;) {
		uint32_t a, b, lo, hi, u;

		if (read_nz(s, len, &i, &a) < 0)
			return -1;
		b = a;
		if (i < len && s[i] == ':') {
			i++;
			if (read_nz(s, len, &i, &b) < 0)
				return -1;
		}
		lo = a < b ? a : b;
		hi = a < b ? b : a;
		/* counted before anything is written: "1:4294967295" must
		 * not loop four billion times to find out it does not fit */
		if ((uint64_t)hi - lo + 1 > max - *n)
			return -1;
		for (u = lo;; u++) {
			out[(*n)++] = u;
			if (u == hi)
				break;
		}
		if (i == len)
			return 0;
		if (s[i] != ',')
			return -1;
		i++;
	}
}

int
uidset_parse_appenduid(const char *code, size_t len, uint32_t *uidvalidity,
    uint32_t *out, size_t max, size_t *n)
{
	static const char keyword[] = "APPENDUID ";
	size_t i = sizeof(keyword) - 1;

	*n = 0;
	if (len < i || strncasecmp(code, keyword, i) != 0)
		return -1;
	if (read_nz(code, len, &i, uidvalidity) < 0 || i >= len || code[i] != ' ')
		return -1;
	i++;
	return uidset_parse(code + i, len - i, out, max, n);
}

size_t
uidset_parse_search(const char *text, size_t len, uint32_t min,
    uint32_t *out, size_t max, bool *more)
{
	size_t i = 0, stored = 0, depth = 0;

	*more = false;
	while (i < len) {
		size_t start, k;
		uint32_t v = 0;
		bool number;

		while (i < len && text[i] == ' ')
			i++;
		if (i == len)
			break;
		start = i;
		number = depth == 0 && read_nz(text, len, &i, &v) == 0 &&
		    (i == len || text[i] == ' ');
		while (i < len && text[i] != ' ')
			i++;
		/* parentheses hold data about the result (CONDSTORE's
		 * "(MODSEQ 123)"), never UIDs */
		for (k = start; k < i; k++) {
			if (text[k] == '(')
				depth++;
			else if (text[k] == ')' && depth > 0)
				depth--;
		}
		if (!number || v < min)
			continue;
		if (stored < max)
			out[stored++] = v;
		else
			*more = true;
	}
	return stored;
}

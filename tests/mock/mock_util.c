/*
 * mock_util.c — pure helpers of the mock IMAP server (see mock_util.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mock_util.h"

static int
range_cmp(const void *a, const void *b)
{
	const struct mock_range *x = a, *y = b;

	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	if (x->hi != y->hi)
		return x->hi < y->hi ? -1 : 1;
	return 0;
}

/* One set member: a number or "*".  Advances *i. */
static int
seq_number(const char *s, size_t len, size_t *i, uint32_t star, uint32_t *v,
    const char **why)
{
	uint64_t n = 0;
	size_t start = *i;

	if (*i < len && s[*i] == '*') {
		(*i)++;
		*v = star;
		return 0;
	}
	while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
		n = n * 10 + (uint64_t)(s[*i] - '0');
		if (n > UINT32_MAX) {
			*why = "number out of range in sequence set";
			return -1;
		}
		(*i)++;
	}
	if (*i == start) {
		*why = "bad sequence set";
		return -1;
	}
	if (n == 0) {
		*why = "0 in sequence set";
		return -1;
	}
	*v = (uint32_t)n;
	return 0;
}

int
mock_seqset_parse(const char *s, size_t len, uint32_t star,
    struct mock_seqset *set, const char **why)
{
	size_t i = 0, cap = 0, k, out;
	struct mock_range *r = NULL;

	set->r = NULL;
	set->n = 0;
	if (len == 0) {
		*why = "empty sequence set";
		return -1;
	}
	while (i < len) {
		uint32_t lo, hi;

		if (seq_number(s, len, &i, star, &lo, why) < 0)
			goto fail;
		hi = lo;
		if (i < len && s[i] == ':') {
			i++;
			if (seq_number(s, len, &i, star, &hi, why) < 0)
				goto fail;
		}
		if (i < len) {
			if (s[i] != ',' || i + 1 == len) {
				*why = "bad sequence set";
				goto fail;
			}
			i++;
		}
		if (set->n == MOCK_SEQSET_MAX_RANGES) {
			*why = "too many ranges in sequence set";
			goto fail;
		}
		if (set->n == cap) {
			struct mock_range *nr;

			cap = cap ? cap * 2 : 8;
			if ((nr = realloc(r, cap * sizeof(*r))) == NULL) {
				*why = "out of memory";
				goto fail;
			}
			r = nr;
		}
		r[set->n].lo = lo < hi ? lo : hi;
		r[set->n].hi = lo < hi ? hi : lo;
		set->n++;
	}
	qsort(r, set->n, sizeof(*r), range_cmp);
	for (k = 1, out = 0; k < set->n; k++) {
		if (r[out].hi == UINT32_MAX || r[k].lo <= r[out].hi + 1) {
			if (r[k].hi > r[out].hi)
				r[out].hi = r[k].hi;
		} else {
			r[++out] = r[k];
		}
	}
	set->n = out + 1;
	set->r = r;
	return 0;
fail:
	free(r);
	set->n = 0;
	return -1;
}

void
mock_seqset_free(struct mock_seqset *set)
{
	free(set->r);
	set->r = NULL;
	set->n = 0;
}

bool
mock_seqset_contains(const struct mock_seqset *set, uint32_t v)
{
	size_t lo = 0, hi = set->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v < set->r[mid].lo)
			hi = mid;
		else if (v > set->r[mid].hi)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

uint32_t
mock_seqset_max(const struct mock_seqset *set)
{
	return set->n ? set->r[set->n - 1].hi : 0;
}

size_t
mock_uidset_format(const uint32_t *v, size_t n, char *out, size_t outlen)
{
	size_t i = 0, total = 0;
	char part[32];

	if (outlen > 0)
		out[0] = '\0';
	while (i < n) {
		size_t j = i, plen;

		while (j + 1 < n && v[j] != UINT32_MAX && v[j + 1] == v[j] + 1)
			j++;
		if (j > i)
			snprintf(part, sizeof(part), "%s%u:%u", total ? "," : "",
			    v[i], v[j]);
		else
			snprintf(part, sizeof(part), "%s%u", total ? "," : "",
			    v[i]);
		plen = strlen(part);
		if (total + plen < outlen)
			memcpy(out + total, part, plen + 1);
		else if (outlen > 0 && total < outlen)
			out[total] = '\0';
		total += plen;
		i = j + 1;
	}
	return total;
}

static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long
mock_base64_decode(const char *in, size_t len, unsigned char *out,
    size_t outlen)
{
	size_t i, o = 0;

	if (len % 4 != 0)
		return -1;
	for (i = 0; i < len; i += 4) {
		int v[4], k, pad = 0;
		uint32_t w;

		for (k = 0; k < 4; k++) {
			unsigned char c = (unsigned char)in[i + k];

			if (c == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			if (pad > 0 || (v[k] = b64_value(c)) < 0)
				return -1;
		}
		w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 |
		    (uint32_t)v[2] << 6 | (uint32_t)v[3];
		if (o + (size_t)(3 - pad) > outlen)
			return -1;
		out[o++] = (unsigned char)(w >> 16);
		if (pad < 2)
			out[o++] = (unsigned char)(w >> 8);
		if (pad < 1)
			out[o++] = (unsigned char)w;
	}
	return (long)o;
}

static bool
digits(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

bool
mock_datetime_valid(const char *s, size_t len)
{
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr",
	    "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	size_t i, day_len;
	int day, hh, mm, ss, m;

	/* day: "dd", " d" or "d" */
	if (len >= 2 && s[0] == ' ' && digits(s + 1, 1)) {
		day = s[1] - '0';
		day_len = 2;
	} else if (len >= 2 && digits(s, 2)) {
		day = (s[0] - '0') * 10 + (s[1] - '0');
		day_len = 2;
	} else if (len >= 1 && digits(s, 1)) {
		day = s[0] - '0';
		day_len = 1;
	} else {
		return false;
	}
	s += day_len;
	len -= day_len;
	/* "-Mon-yyyy hh:mm:ss +zzzz" is 24 bytes */
	if (len != 24 || day < 1 || day > 31 || s[0] != '-' || s[4] != '-' ||
	    s[9] != ' ' || s[12] != ':' || s[15] != ':' || s[18] != ' ' ||
	    (s[19] != '+' && s[19] != '-'))
		return false;
	for (m = 0, i = 0; i < 12; i++)
		if (strncasecmp(s + 1, months[i], 3) == 0)
			m = (int)i + 1;
	if (m == 0 || !digits(s + 5, 4) || !digits(s + 10, 2) ||
	    !digits(s + 13, 2) || !digits(s + 16, 2) || !digits(s + 20, 4))
		return false;
	hh = (s[10] - '0') * 10 + (s[11] - '0');
	mm = (s[13] - '0') * 10 + (s[14] - '0');
	ss = (s[16] - '0') * 10 + (s[17] - '0');
	return hh < 24 && mm < 60 && ss < 61;
}

bool
mock_list_match(const char *pattern, const char *name, char delim)
{
	/* dp[j]: pattern[0..j) matches the name prefix seen so far.  Quadratic
	 * at worst, never exponential, whatever the pattern. */
	size_t plen = strlen(pattern), j;
	bool *dp, *next, ok;
	const char *n;

	if ((dp = calloc(2 * (plen + 1), sizeof(*dp))) == NULL)
		return false;
	next = dp + plen + 1;
	dp[0] = true;
	for (j = 1; j <= plen; j++)
		dp[j] = dp[j - 1] && (pattern[j - 1] == '*' || pattern[j - 1] == '%');
	for (n = name; *n != '\0'; n++) {
		bool *t;

		next[0] = false;
		for (j = 1; j <= plen; j++) {
			char pc = pattern[j - 1];

			if (pc == '*')
				next[j] = next[j - 1] || dp[j];
			else if (pc == '%')
				next[j] = next[j - 1] || (dp[j] && *n != delim);
			else
				next[j] = dp[j - 1] && pc == *n;
		}
		t = dp;
		dp = next;
		next = t;
	}
	ok = dp[plen];
	free(dp < next ? dp : next);
	return ok;
}

/*
 * test_uidset.c — tests for proxy/uidset.c: formatting runs in order, the
 * strict uid-set grammar (ranges both ways, zero, overflow, empty elements,
 * "*"), the bound on what a set may name, APPENDUID codes and SEARCH text.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "uidset.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static void
expect_format(const uint32_t *uids, size_t n, const char *want)
{
	char *s = uidset_format(uids, n);

	cr_assert_not_null(s);
	cr_assert_str_eq(s, want);
	free(s);
}

/* Parses s (NUL-terminated) into out; returns what uidset_parse returns. */
static int
parse(const char *s, uint32_t *out, size_t max, size_t *n)
{
	return uidset_parse(s, strlen(s), out, max, n);
}

static void
expect_parse(const char *s, const uint32_t *want, size_t nwant)
{
	uint32_t out[64];
	size_t n, i;

	cr_assert_eq(parse(s, out, NELEM(out), &n), 0, "\"%s\" refused", s);
	cr_assert_eq(n, nwant, "\"%s\": %zu UIDs, expected %zu", s, n, nwant);
	for (i = 0; i < n; i++)
		cr_assert_eq(out[i], want[i], "\"%s\": UID %zu is %u, expected %u",
		    s, i, out[i], want[i]);
}

static void
expect_refused(const char *s)
{
	uint32_t out[64];
	size_t n;

	cr_assert_eq(parse(s, out, NELEM(out), &n), -1, "\"%s\" accepted", s);
}

Test(uidset, format_runs)
{
	static const uint32_t a[] = { 1, 2, 3, 7 };
	static const uint32_t b[] = { 5 };
	static const uint32_t c[] = { 1, 3, 5, 6, 8, 9, 10, 4294967295 };

	expect_format(a, NELEM(a), "1:3,7");
	expect_format(b, NELEM(b), "5");
	expect_format(c, NELEM(c), "1,3,5:6,8:10,4294967295");
	expect_format(NULL, 0, "");
}

Test(uidset, format_keeps_order)
{
	static const uint32_t down[] = { 3, 2, 1 };
	static const uint32_t mixed[] = { 10, 11, 12, 4, 5, 1 };
	static const uint32_t dup[] = { 7, 7, 8 };
	/* the largest UID is not followed by 0 in a run */
	static const uint32_t wrap[] = { 4294967294, 4294967295, 0 };

	expect_format(down, NELEM(down), "3,2,1");
	expect_format(mixed, NELEM(mixed), "10:12,4:5,1");
	expect_format(dup, NELEM(dup), "7,7:8");
	expect_format(wrap, NELEM(wrap), "4294967294:4294967295,0");
}

Test(uidset, parse_forms)
{
	static const uint32_t one[] = { 3955 };
	static const uint32_t up[] = { 1, 2, 3, 7 };
	static const uint32_t down[] = { 5, 6, 7, 2 };
	static const uint32_t max[] = { 4294967294, 4294967295 };

	expect_parse("3955", one, NELEM(one));
	expect_parse("1:3,7", up, NELEM(up));
	expect_parse("7:5,2", down, NELEM(down));
	expect_parse("4294967295:4294967294", max, NELEM(max));
	expect_parse("4:4", (const uint32_t[]){ 4 }, 1);
}

Test(uidset, parse_refuses_bad_syntax)
{
	static const char *const bad[] = {
		"", "0", "0:5", "5:0", "01", "1,02", "4294967296", "1:4294967296",
		"99999999999999999999", "1,,2", ",1", "1,", ":1", "1:", "1::2",
		"1:2:3", "*", "1:*", "*:4", " 1", "1 ", "1, 2", "-1", "+1", "1;2",
		"1a",
	};
	size_t i;

	for (i = 0; i < NELEM(bad); i++)
		expect_refused(bad[i]);
}

Test(uidset, parse_respects_max)
{
	uint32_t out[4];
	size_t n;

	cr_assert_eq(uidset_parse("1:4", 3, out, 4, &n), 0);
	cr_assert_eq(n, 4);
	cr_assert_eq(uidset_parse("1:5", 3, out, 4, &n), -1);
	cr_assert_eq(uidset_parse("1,2,3,4,5", 9, out, 4, &n), -1);
	cr_assert_eq(uidset_parse("1:3,9:8", 7, out, 4, &n), -1);
	/* four billion UIDs are refused at once, not counted one by one */
	cr_assert_eq(uidset_parse("1:4294967295", 12, out, 4, &n), -1);
	cr_assert_eq(uidset_parse("7", 1, NULL, 0, &n), -1);
}

Test(uidset, parse_uses_len_not_nul)
{
	uint32_t out[4];
	size_t n;

	cr_assert_eq(uidset_parse("12,9", 2, out, 4, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(out[0], 12);
	cr_assert_eq(uidset_parse("1\0" "2", 3, out, 4, &n), -1);
}

Test(uidset, appenduid)
{
	uint32_t out[8], validity = 0;
	size_t n;
	const char *single = "APPENDUID 38505 3955";
	const char *set = "appendUID 1 4:6,2";
	static const char *const bad[] = {
		"APPENDUID 38505", "APPENDUID 38505 ", "APPENDUID 0 5", "APPENDUID 5 0",
		"APPENDUID  1 5", "APPENDUID 1  5", "APPENDUID 1 5 ", "APPENDUID 1 *",
		"APPENDUID 4294967296 1", "APPENDUIDX 1 5", "COPYUID 1 2 3", "APPENDUID",
		"", "APPENDUID 1 1:9",
	};
	size_t i;

	cr_assert_eq(uidset_parse_appenduid(single, strlen(single), &validity, out,
	    NELEM(out), &n), 0);
	cr_assert_eq(validity, 38505);
	cr_assert_eq(n, 1);
	cr_assert_eq(out[0], 3955);
	cr_assert_eq(uidset_parse_appenduid(set, strlen(set), &validity, out,
	    NELEM(out), &n), 0);
	cr_assert_eq(validity, 1);
	cr_assert_eq(n, 4);
	cr_assert(out[0] == 4 && out[1] == 5 && out[2] == 6 && out[3] == 2);
	for (i = 0; i < NELEM(bad); i++)
		cr_assert_eq(uidset_parse_appenduid(bad[i], strlen(bad[i]), &validity,
		    out, NELEM(out), &n), -1, "\"%s\" accepted", bad[i]);
}

Test(uidset, search_skips_junk)
{
	uint32_t out[8];
	bool more = true;
	const char *text = " 2 84 0 007 4294967296 4294967295 12a (MODSEQ 123) 9 "
	    "-3 +4 x5 5) (6 7) 11";
	size_t n = uidset_parse_search(text, strlen(text), 1, out, NELEM(out), &more);

	cr_assert_eq(n, 5);
	cr_assert(!more);
	cr_assert(out[0] == 2 && out[1] == 84 && out[2] == 4294967295 &&
	    out[3] == 9 && out[4] == 11);
}

Test(uidset, search_min_and_max)
{
	uint32_t out[2];
	bool more = false;
	const char *text = "3 10 4 11 12";
	size_t n;

	n = uidset_parse_search(text, strlen(text), 10, out, NELEM(out), &more);
	cr_assert_eq(n, 2);
	cr_assert(out[0] == 10 && out[1] == 11);
	cr_assert(more, "12 was left out");
	n = uidset_parse_search(text, strlen(text), 11, out, NELEM(out), &more);
	cr_assert_eq(n, 2);
	cr_assert(!more, "nothing matching was left out");
	n = uidset_parse_search("", 0, 1, out, NELEM(out), &more);
	cr_assert_eq(n, 0);
	cr_assert(!more);
	n = uidset_parse_search("5", 1, 1, NULL, 0, &more);
	cr_assert_eq(n, 0);
	cr_assert(more);
}

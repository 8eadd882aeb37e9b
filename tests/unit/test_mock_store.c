/*
 * test_mock_store.c — tests for the mock IMAP server's pure helpers
 * (tests/mock/mock_util.c): sequence sets, uid-set formatting, base64,
 * date-time syntax and LIST patterns.  The unit binary does not link
 * tests/mock/, so the helpers are compiled into this file.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "../mock/mock_util.h"

static struct mock_seqset
parse_ok(const char *s, uint32_t star)
{
	struct mock_seqset set;
	const char *why = NULL;

	cr_assert_eq(mock_seqset_parse(s, strlen(s), star, &set, &why), 0,
	    "\"%s\": %s", s, why ? why : "");
	return set;
}

static void
parse_bad(const char *s, uint32_t star)
{
	struct mock_seqset set;
	const char *why = NULL;

	cr_assert_eq(mock_seqset_parse(s, strlen(s), star, &set, &why), -1,
	    "\"%s\" accepted", s);
	cr_assert_not_null(why);
	cr_assert_null(set.r);
	cr_assert_eq(set.n, 0);
}

Test(mock_seqset, single_and_ranges)
{
	struct mock_seqset set = parse_ok("1,3:5,9", 10);

	cr_assert_eq(set.n, 3);
	cr_assert(mock_seqset_contains(&set, 1));
	cr_assert_not(mock_seqset_contains(&set, 2));
	cr_assert(mock_seqset_contains(&set, 3));
	cr_assert(mock_seqset_contains(&set, 4));
	cr_assert(mock_seqset_contains(&set, 5));
	cr_assert_not(mock_seqset_contains(&set, 6));
	cr_assert(mock_seqset_contains(&set, 9));
	cr_assert_not(mock_seqset_contains(&set, 10));
	cr_assert_eq(mock_seqset_max(&set), 9);
	mock_seqset_free(&set);
}

Test(mock_seqset, star_and_reversed_ranges)
{
	struct mock_seqset set = parse_ok("7:*", 4);	/* = 4:7 */

	cr_assert_eq(set.n, 1);
	cr_assert_eq(set.r[0].lo, 4);
	cr_assert_eq(set.r[0].hi, 7);
	mock_seqset_free(&set);

	set = parse_ok("*", 12);
	cr_assert(mock_seqset_contains(&set, 12));
	cr_assert_not(mock_seqset_contains(&set, 11));
	mock_seqset_free(&set);

	set = parse_ok("5:2", 10);
	cr_assert_eq(set.r[0].lo, 2);
	cr_assert_eq(set.r[0].hi, 5);
	mock_seqset_free(&set);
}

Test(mock_seqset, empty_mailbox_star_matches_nothing)
{
	struct mock_seqset set = parse_ok("*", 0);

	cr_assert_not(mock_seqset_contains(&set, 1));
	cr_assert_eq(mock_seqset_max(&set), 0);
	mock_seqset_free(&set);
}

Test(mock_seqset, merged_and_sorted)
{
	struct mock_seqset set = parse_ok("9,1:3,2:5,6,20:30,10,8", 100);

	/* 1:6 (overlap and adjacency), 8:10, 20:30 */
	cr_assert_eq(set.n, 3);
	cr_assert_eq(set.r[0].lo, 1);
	cr_assert_eq(set.r[0].hi, 6);
	cr_assert_eq(set.r[1].lo, 8);
	cr_assert_eq(set.r[1].hi, 10);
	cr_assert_eq(set.r[2].lo, 20);
	cr_assert_eq(set.r[2].hi, 30);
	cr_assert_not(mock_seqset_contains(&set, 7));
	cr_assert(mock_seqset_contains(&set, 8));
	mock_seqset_free(&set);
}

Test(mock_seqset, full_uid_range)
{
	struct mock_seqset set = parse_ok("1:4294967295,4294967295,5", 3);

	cr_assert_eq(set.n, 1);
	cr_assert(mock_seqset_contains(&set, 4294967295u));
	cr_assert(mock_seqset_contains(&set, 1));
	mock_seqset_free(&set);
}

Test(mock_seqset, rejects_garbage)
{
	parse_bad("", 5);
	parse_bad("0", 5);
	parse_bad("1:0", 5);
	parse_bad("4294967296", 5);
	parse_bad("99999999999999999999999", 5);
	parse_bad("1,", 5);
	parse_bad(",1", 5);
	parse_bad("1,,2", 5);
	parse_bad("1::2", 5);
	parse_bad("1:", 5);
	parse_bad(":1", 5);
	parse_bad("a", 5);
	parse_bad("1 2", 5);
	parse_bad("**", 5);
	parse_bad("-1", 5);
}

Test(mock_seqset, bounded_range_count)
{
	size_t n = MOCK_SEQSET_MAX_RANGES + 1, i;
	char *s = malloc(n * 2);
	struct mock_seqset set;
	const char *why = NULL;

	cr_assert_not_null(s);
	for (i = 0; i < n; i++) {
		s[2 * i] = '1';
		s[2 * i + 1] = ',';
	}
	cr_assert_eq(mock_seqset_parse(s, n * 2 - 1, 1, &set, &why), -1);
	cr_assert_str_eq(why, "too many ranges in sequence set");
	/* one fewer is fine and merges into one range */
	cr_assert_eq(mock_seqset_parse(s, n * 2 - 3, 1, &set, &why), 0);
	cr_assert_eq(set.n, 1);
	mock_seqset_free(&set);
	free(s);
}

Test(mock_uidset, runs_become_ranges_in_order)
{
	uint32_t a[] = { 1, 2, 3 }, b[] = { 4, 6 }, c[] = { 7, 8, 10, 11, 12,
	    3 }, d[] = { 5 };
	char out[64];

	cr_assert_eq(mock_uidset_format(a, 3, out, sizeof(out)), 3);
	cr_assert_str_eq(out, "1:3");
	mock_uidset_format(b, 2, out, sizeof(out));
	cr_assert_str_eq(out, "4,6");
	mock_uidset_format(c, 6, out, sizeof(out));
	cr_assert_str_eq(out, "7:8,10:12,3");
	mock_uidset_format(d, 1, out, sizeof(out));
	cr_assert_str_eq(out, "5");
	cr_assert_eq(mock_uidset_format(d, 0, out, sizeof(out)), 0);
	cr_assert_str_eq(out, "");
}

Test(mock_uidset, length_like_snprintf)
{
	uint32_t a[] = { 100, 200, 300 };
	char out[6];

	cr_assert_eq(mock_uidset_format(a, 3, NULL, 0), 11);
	cr_assert_eq(mock_uidset_format(a, 3, out, sizeof(out)), 11);
	cr_assert_eq(strlen(out) < sizeof(out), true);
}

Test(mock_base64, plain_credentials)
{
	unsigned char out[64];
	/* "\0test\0secret" */
	long n = mock_base64_decode("AHRlc3QAc2VjcmV0", 16, out, sizeof(out));

	cr_assert_eq(n, 12);
	cr_assert(memcmp(out, "\0test\0secret", 12) == 0);
}

Test(mock_base64, padding_and_errors)
{
	unsigned char out[8];

	cr_assert_eq(mock_base64_decode("YQ==", 4, out, sizeof(out)), 1);
	cr_assert_eq(out[0], 'a');
	cr_assert_eq(mock_base64_decode("YWI=", 4, out, sizeof(out)), 2);
	cr_assert_eq(mock_base64_decode("", 0, out, sizeof(out)), 0);
	cr_assert_eq(mock_base64_decode("YQ=", 3, out, sizeof(out)), -1);
	cr_assert_eq(mock_base64_decode("Y===", 4, out, sizeof(out)), -1);
	cr_assert_eq(mock_base64_decode("YQ==YQ==", 8, out, sizeof(out)), -1);
	cr_assert_eq(mock_base64_decode("Y!==", 4, out, sizeof(out)), -1);
	cr_assert_eq(mock_base64_decode("YWJjZGVmZ2hpams=", 16, out,
	    sizeof(out)), -1);	/* 11 bytes do not fit in 8 */
}

Test(mock_datetime, valid_forms)
{
	cr_assert(mock_datetime_valid("17-Jul-1996 02:44:25 -0700", 26));
	cr_assert(mock_datetime_valid(" 5-Jul-2020 10:11:12 +0200", 26));
	cr_assert(mock_datetime_valid("5-jul-2020 10:11:12 +0200", 25));
}

Test(mock_datetime, invalid_forms)
{
	cr_assert_not(mock_datetime_valid("", 0));
	cr_assert_not(mock_datetime_valid("bad date", 8));
	cr_assert_not(mock_datetime_valid("32-Jul-1996 02:44:25 -0700", 26));
	cr_assert_not(mock_datetime_valid("17-Jux-1996 02:44:25 -0700", 26));
	cr_assert_not(mock_datetime_valid("17-Jul-1996 24:44:25 -0700", 26));
	cr_assert_not(mock_datetime_valid("17-Jul-1996 02:44:25 0700", 25));
	cr_assert_not(mock_datetime_valid("17-Jul-1996 02:44:25 -0700 ", 27));
}

Test(mock_list, wildcards)
{
	cr_assert(mock_list_match("*", "INBOX", '/'));
	cr_assert(mock_list_match("*", "a/b/c", '/'));
	cr_assert(mock_list_match("%", "Sent", '/'));
	cr_assert_not(mock_list_match("%", "a/b", '/'));
	cr_assert(mock_list_match("a/%", "a/b", '/'));
	cr_assert_not(mock_list_match("a/%", "a/b/c", '/'));
	cr_assert(mock_list_match("a/*", "a/b/c", '/'));
	cr_assert(mock_list_match("*c", "a/b/c", '/'));
	cr_assert(mock_list_match("%/%", "a/b", '/'));
	cr_assert(mock_list_match("Sent", "Sent", '/'));
	cr_assert_not(mock_list_match("Sent", "sent", '/'));
	cr_assert_not(mock_list_match("", "x", '/'));
	cr_assert(mock_list_match("", "", '/'));
	cr_assert(mock_list_match("*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%b",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", '/'));
}

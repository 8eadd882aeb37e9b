/*
 * test_routemap.c — tests for proxy/routemap.c: a user's own entry before
 * its domain's before the default, case, the last '@', targets as names and
 * addresses, every mistake with its line, comments and CRLF, files that
 * cannot be read, and a map of 200,000 entries.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "routemap.h"

static char map_path[64];

static void
write_map(const char *text, size_t len)
{
	int fd;

	snprintf(map_path, sizeof(map_path), "/tmp/mappend-routemap-XXXXXX");
	fd = mkstemp(map_path);
	cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
	cr_assert_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
}

/* len bytes of text loaded as a map file; err gets the error, if any. */
static struct routemap *
load_len(const char *text, size_t len, char *err, size_t errlen)
{
	struct routemap *m;

	write_map(text, len);
	m = routemap_load(map_path, err, errlen);
	unlink(map_path);
	return m;
}

static struct routemap *
load_ok(const char *text)
{
	char err[1024] = "x";
	struct routemap *m = load_len(text, strlen(text), err, sizeof(err));

	cr_assert_not_null(m, "refused: %s", err);
	cr_assert_str_eq(err, "");
	return m;
}

/* suffix is what follows the path: ":3: bad key ..." */
static void
load_fails_len(const char *text, size_t len, const char *suffix)
{
	char err[1024] = "", want[1024];
	struct routemap *m = load_len(text, len, err, sizeof(err));

	cr_assert_null(m, "loaded: \"%s\"", text);
	snprintf(want, sizeof(want), "%s%s", map_path, suffix);
	cr_assert_str_eq(err, want);
}

static void
load_fails(const char *text, const char *suffix)
{
	load_fails_len(text, strlen(text), suffix);
}

static void
expect_route(const struct routemap *m, const char *user, const char *want)
{
	const char *got = routemap_lookup(m, user);

	if (want == NULL) {
		cr_assert_null(got, "\"%s\" went to \"%s\"", user, got);
		return;
	}
	cr_assert_not_null(got, "\"%s\" went nowhere, expected \"%s\"", user, want);
	cr_assert_str_eq(got, want, "\"%s\" went to \"%s\", expected \"%s\"", user,
	    got, want);
}

Test(routemap, user_before_domain_before_default)
{
	struct routemap *m = load_ok(
	    "alice@example.com\tbackend-2\n"
	    "@example.com backend-1\n"
	    "*  imap.example.net:143\n");

	cr_assert_eq(routemap_entries(m), 3);
	expect_route(m, "alice@example.com", "backend-2");
	expect_route(m, "bob@example.com", "backend-1");
	expect_route(m, "bob@example.org", "imap.example.net:143");
	expect_route(m, "bob", "imap.example.net:143");
	/* a domain is the whole part after '@', not a suffix of it */
	expect_route(m, "bob@sub.example.com", "imap.example.net:143");
	expect_route(m, "bob@xexample.com", "imap.example.net:143");
	expect_route(m, "alice@example.co", "imap.example.net:143");
	expect_route(m, "alice", "imap.example.net:143");
	routemap_free(m);
}

Test(routemap, no_default_means_no_target)
{
	struct routemap *m = load_ok("alice@example.com b1\n@example.org b2\n");

	expect_route(m, "alice@example.com", "b1");
	expect_route(m, "carol@example.org", "b2");
	expect_route(m, "carol@example.net", NULL);
	expect_route(m, "carol", NULL);
	expect_route(m, "", NULL);
	expect_route(m, "*", NULL);
	routemap_free(m);
}

Test(routemap, case_is_ignored)
{
	struct routemap *m = load_ok(
	    "Alice@Example.COM b1\n"
	    "@EXAMPLE.org b2\n"
	    "POSTMASTER b3\n");

	expect_route(m, "alice@example.com", "b1");
	expect_route(m, "ALICE@EXAMPLE.COM", "b1");
	expect_route(m, "aLiCe@eXaMpLe.CoM", "b1");
	expect_route(m, "Bob@Example.Org", "b2");
	expect_route(m, "postmaster", "b3");
	expect_route(m, "PostMaster", "b3");
	routemap_free(m);
}

Test(routemap, targets_keep_their_case)
{
	struct routemap *m = load_ok("alice Backend-A\n* IMAP.Example.NET:993\n");

	expect_route(m, "ALICE", "Backend-A");
	expect_route(m, "bob", "IMAP.Example.NET:993");
	routemap_free(m);
}

Test(routemap, the_domain_follows_the_last_at)
{
	struct routemap *m = load_ok(
	    "@example.com b1\n"
	    "a@b@example.com b3\n"
	    "@x.example b4\n");

	expect_route(m, "a@b@example.com", "b3");
	expect_route(m, "c@b@example.com", "b1");
	expect_route(m, "c@example.com@x.example", "b4");
	expect_route(m, "@example.com", "b1");
	routemap_free(m);
}

Test(routemap, a_user_without_domain_matches_only_itself)
{
	struct routemap *m = load_ok("postmaster b1\n@example.com b2\n* b3\n");

	expect_route(m, "postmaster", "b1");
	expect_route(m, "postmaster@example.com", "b2");
	expect_route(m, "postmaster@example.org", "b3");
	expect_route(m, "postmasters", "b3");
	expect_route(m, "postmaste", "b3");
	routemap_free(m);
}

Test(routemap, names_never_stored_find_only_the_default)
{
	static const char *const names[] = {
		"", "@", "@@", "*", "\xc3\xa9", "a\xff@example.com", "\x01", "a b",
		"alice@example.com ", " alice@example.com", "alice@example.com\r",
	};
	struct routemap *m = load_ok("alice@example.com b1\n@example.org b2\n");
	struct routemap *d = load_ok("alice@example.com b1\n* b9\n");
	char *longname = malloc(100000);
	size_t i;

	cr_assert_not_null(longname);
	memset(longname, 'a', 99999);
	longname[99999] = '\0';
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		expect_route(m, names[i], NULL);
		expect_route(d, names[i], "b9");
	}
	expect_route(m, longname, NULL);
	expect_route(d, longname, "b9");
	/* a very long name whose domain is known */
	memcpy(longname + 99999 - 12, "@example.org", 12);
	expect_route(m, longname, "b2");
	expect_route(m, NULL, NULL);
	expect_route(NULL, "alice@example.com", NULL);
	free(longname);
	routemap_free(m);
	routemap_free(d);
}

Test(routemap, eight_bit_keys_match_as_bytes)
{
	struct routemap *m = load_ok("j\xc3\xb6rg@example.com b1\n@\xc3\xa9t\xc3\xa9.example b2\n");

	expect_route(m, "j\xc3\xb6rg@example.com", "b1");
	expect_route(m, "J\xc3\xb6RG@EXAMPLE.COM", "b1");
	expect_route(m, "j\xc3\x96rg@example.com", NULL);	/* no Unicode case */
	expect_route(m, "x@\xc3\xa9t\xc3\xa9.example", "b2");
	routemap_free(m);
}

Test(routemap, address_targets)
{
	struct routemap *m = load_ok(
	    "a [2001:db8::7]:143\n"
	    "b [fe80::1%eth0]:993\n"
	    "c imap.example.net:143\n"
	    "d 192.0.2.1:65535\n"
	    "e backend.1\n");
	char host[ROUTEMAP_HOST_SIZE], port[ROUTEMAP_PORT_SIZE];

	expect_route(m, "a", "[2001:db8::7]:143");
	cr_assert(routemap_target_address(routemap_lookup(m, "a"), host,
	    sizeof(host), port, sizeof(port)));
	cr_assert_str_eq(host, "2001:db8::7");
	cr_assert_str_eq(port, "143");
	cr_assert(routemap_target_address(routemap_lookup(m, "b"), host,
	    sizeof(host), port, sizeof(port)));
	cr_assert_str_eq(host, "fe80::1%eth0");
	cr_assert_str_eq(port, "993");
	cr_assert(routemap_target_address(routemap_lookup(m, "c"), host,
	    sizeof(host), port, sizeof(port)));
	cr_assert_str_eq(host, "imap.example.net");
	cr_assert_str_eq(port, "143");
	cr_assert(routemap_target_address(routemap_lookup(m, "d"), host,
	    sizeof(host), port, sizeof(port)));
	cr_assert_str_eq(host, "192.0.2.1");
	cr_assert_str_eq(port, "65535");
	strcpy(host, "untouched");
	cr_assert_not(routemap_target_address(routemap_lookup(m, "e"), host,
	    sizeof(host), port, sizeof(port)));
	cr_assert_str_eq(host, "untouched");
	routemap_free(m);
}

Test(routemap, target_address_refuses_what_the_file_would)
{
	static const char *const bad[] = {
		"backend", "", ":143", "host:", "host:0", "host:65536", "host:0143",
		"host:14a", "host:+14", "host:-1", "a:b:143", "2001:db8::1:143",
		"[2001:db8::1]", "[2001:db8::1]143", "[2001:db8::1]:", "[]:143",
		"[192.0.2.1]:143", "[::1%]:143", "[::1%a b]:143", "h st:143",
		"h\tst:143", "h\xc3\xa9:143", "host:143 ", "[::1]:143:1",
	};
	char host[ROUTEMAP_HOST_SIZE], port[ROUTEMAP_PORT_SIZE];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_not(routemap_target_address(bad[i], host, sizeof(host),
		    port, sizeof(port)), "\"%s\" is an address", bad[i]);
	cr_assert_not(routemap_target_address(NULL, host, sizeof(host), port,
	    sizeof(port)));
	/* too small to hold them */
	cr_assert_not(routemap_target_address("imap:143", host, 4, port, sizeof(port)));
	cr_assert(routemap_target_address("imap:143", host, 5, port, 4));
	cr_assert_not(routemap_target_address("imap:143", host, 5, port, 3));
}

Test(routemap, comments_blanks_and_crlf)
{
	struct routemap *m = load_ok(
	    "# a generated map\r\n"
	    "\r\n"
	    "   \t  \n"
	    "  # indented comment\n"
	    "alice b1 # trailing comment\r\n"
	    "bob\tb2\t#\r\n"
	    "a#b b3\n"		/* '#' inside a field is part of it */
	    "\tcarol   b4   \r\n"
	    "dave b5\r");	/* the last line without its LF */

	cr_assert_eq(routemap_entries(m), 5);
	expect_route(m, "alice", "b1");
	expect_route(m, "bob", "b2");
	expect_route(m, "a#b", "b3");
	expect_route(m, "a", NULL);
	expect_route(m, "carol", "b4");
	expect_route(m, "dave", "b5");
	routemap_free(m);
}

Test(routemap, empty_files_are_maps_without_entries)
{
	static const char *const texts[] = { "", "\n", "# nothing yet\n", "\r\n\r\n" };
	size_t i;

	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct routemap *m = load_ok(texts[i]);

		cr_assert_eq(routemap_entries(m), 0);
		expect_route(m, "alice@example.com", NULL);
		expect_route(m, "", NULL);
		routemap_free(m);
	}
}

Test(routemap, field_count)
{
	load_fails("alice b1\nbob\n", ":2: missing target after \"bob\"");
	load_fails("bob # b1\n", ":1: missing target after \"bob\"");
	load_fails("\n\nbob b1 b2\n", ":3: more than two fields: \"b2\" after the "
	    "target (a comment starts with '#')");
	load_fails("bob b1 b2 # x\n", ":1: more than two fields: \"b2\" after the "
	    "target (a comment starts with '#')");
}

Test(routemap, bad_keys)
{
	char key[300], line[400];

	load_fails("@ b1\n", ":1: bad key \"@\": '@' alone; a domain is written "
	    "@example.com");
	load_fails("ok b0\n*@example.com b1\n", ":2: bad key \"*@example.com\": "
	    "'*' is the default and stands alone; a domain is written @example.com");
	load_fails("** b1\n", ":1: bad key \"**\": '*' is the default and stands "
	    "alone; a domain is written @example.com");
	load_fails("@b@example.com b1\n", ":1: bad key \"@b@example.com\": a domain "
	    "holds one '@'");
	load_fails("al\x01ice b1\n", ":1: bad key \"al?ice\": control character "
	    "in the key");
	load_fails("al\x7f b1\n", ":1: bad key \"al?\": control character in the key");
	load_fails("al\rice b1\n", ":1: bad key \"al?ice\": control character in the key");
	load_fails_len("al\0ice b1\n", 10, ":1: bad key \"al?ice\": control "
	    "character in the key");
	/* whitespace other than space and tab is a control character too */
	load_fails("al\vice b1\n", ":1: bad key \"al?ice\": control character in the key");
	memset(key, 'k', 255);
	key[255] = '\0';
	snprintf(line, sizeof(line), "%s b1\n", key);
	routemap_free(load_ok(line));
	snprintf(line, sizeof(line), "k%s b1\n", key);
	load_fails(line, ":1: bad key \"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
	    "kkkkkkkkkkkkkk...\": too long: at most 255 bytes");
}

Test(routemap, bad_targets)
{
	char name[80], host[300], line[400];

	load_fails("a b1\nb back/end\n", ":2: bad target \"back/end\" for \"b\": a "
	    "backend name may hold only letters, digits, '.', '-' and '_'; an "
	    "address is HOST:PORT");
	load_fails("a b\xc3\xa9\n", ":1: bad target \"b??\" for \"a\": only printable "
	    "ASCII");
	load_fails("a b\rc\n", ":1: bad target \"b?c\" for \"a\": only printable ASCII");
	load_fails("a host:0\n", ":1: bad target \"host:0\" for \"a\": the port must "
	    "be a number from 1 to 65535");
	load_fails("a host:65536\n", ":1: bad target \"host:65536\" for \"a\": the "
	    "port must be a number from 1 to 65535");
	load_fails("a host:0143\n", ":1: bad target \"host:0143\" for \"a\": the "
	    "port must be a number from 1 to 65535");
	load_fails("a host:\n", ":1: bad target \"host:\" for \"a\": the port must "
	    "be a number from 1 to 65535");
	load_fails("a host:imap\n", ":1: bad target \"host:imap\" for \"a\": the "
	    "port must be a number from 1 to 65535");
	load_fails("a :143\n", ":1: bad target \":143\" for \"a\": expected HOST:PORT");
	load_fails("a ho/st:143\n", ":1: bad target \"ho/st:143\" for \"a\": the "
	    "host may hold only letters, digits, '.', '-' and '_'");
	load_fails("a 2001:db8::1:143\n", ":1: bad target \"2001:db8::1:143\" for "
	    "\"a\": an IPv6 address needs brackets, e.g. [2001:db8::1]:143");
	load_fails("a [2001:db8::1]\n", ":1: bad target \"[2001:db8::1]\" for \"a\": "
	    "expected [IPV6]:PORT");
	load_fails("a [2001:db8::1]143:\n", ":1: bad target \"[2001:db8::1]143:\" "
	    "for \"a\": expected [IPV6]:PORT");
	load_fails("a [192.0.2.1]:143\n", ":1: bad target \"[192.0.2.1]:143\" for "
	    "\"a\": not an IPv6 address between the brackets");
	load_fails("a [::1%]:143\n", ":1: bad target \"[::1%]:143\" for \"a\": not "
	    "an IPv6 address between the brackets");

	memset(name, 'n', 63);
	name[63] = '\0';
	snprintf(line, sizeof(line), "a %s\n", name);
	routemap_free(load_ok(line));
	snprintf(line, sizeof(line), "a n%s\n", name);
	load_fails(line, ":1: bad target \"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
	    "nnnnnnnnnnnnnnnnnnnnn\" for \"a\": a backend name holds at most 63 bytes");

	memset(host, 'h', 255);
	host[255] = '\0';
	snprintf(line, sizeof(line), "a %s:143\n", host);
	routemap_free(load_ok(line));
	snprintf(line, sizeof(line), "a h%s:143\n", host);
	load_fails(line, ":1: bad target \"hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh"
	    "hhhhhhhhhhhhhhhhhhh...\" for \"a\": host too long: at most 255 bytes");
}

Test(routemap, long_lines)
{
	char line[1100];

	/* 1024 bytes, the line ending not counted */
	memset(line, ' ', sizeof(line));
	memcpy(line, "a b1", 4);
	memcpy(line + 1024, "\r\n", 3);
	routemap_free(load_ok(line));
	line[1024] = '\0';
	routemap_free(load_ok(line));
	line[1024] = ' ';
	memcpy(line + 1025, "\r\n", 3);
	load_fails(line, ":1: line too long: at most 1024 bytes");
	line[1025] = '\0';
	load_fails(line, ":1: line too long: at most 1024 bytes");
	memcpy(line, "# comments too ", 15);
	load_fails(line, ":1: line too long: at most 1024 bytes");
}

Test(routemap, duplicates_name_the_first_line)
{
	load_fails("alice b1\n@example.com b2\n# x\nalice b3\n",
	    ":4: duplicate key \"alice\" (first on line 1)");
	load_fails("* b1\n* b1\n", ":2: duplicate key \"*\" (first on line 1)");
	load_fails("@Example.com b1\n@example.COM b2\n",
	    ":2: duplicate key \"@example.com\" (first on line 1)");
	/* the earliest repetition in the file, whatever the keys' order */
	load_fails("zed b1\nann b1\nzed b2\nann b2\nann b3\n",
	    ":3: duplicate key \"zed\" (first on line 1)");
	load_fails("ann b1\nzed b1\nzed b2\nann b2\nann b3\n",
	    ":3: duplicate key \"zed\" (first on line 2)");
	load_fails("ann b1\nann b2\nann b3\n", ":2: duplicate key \"ann\" (first on line 1)");
}

Test(routemap, the_first_mistake_is_reported)
{
	load_fails("alice b1\nalice b2\nbob\n",
	    ":2: duplicate key \"alice\" (first on line 1)");
	load_fails("alice b1\nbob\nalice b2\n", ":2: missing target after \"bob\"");
}

Test(routemap, files_that_cannot_be_read)
{
	char dir[64], err[1024], want[1024];
	int fd;

	cr_assert_null(routemap_load("/nonexistent/mappend/routes", err, sizeof(err)));
	cr_assert_str_eq(err, "/nonexistent/mappend/routes: No such file or directory");

	snprintf(dir, sizeof(dir), "/tmp/mappend-routemap-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_null(routemap_load(dir, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: Is a directory", dir);
	cr_assert_str_eq(err, want);
	rmdir(dir);

	/* sparse: refused by its size before anything is read */
	snprintf(map_path, sizeof(map_path), "/tmp/mappend-routemap-XXXXXX");
	fd = mkstemp(map_path);
	cr_assert(fd >= 0);
	cr_assert_eq(ftruncate(fd, 256 * 1024 * 1024 + 1), 0);
	close(fd);
	cr_assert_null(routemap_load(map_path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: File too large (at most 256 MiB)", map_path);
	cr_assert_str_eq(err, want);
	unlink(map_path);

	/* no room for the message is no reason to crash */
	cr_assert_null(routemap_load("/nonexistent/mappend/routes", NULL, 0));
	cr_assert_null(routemap_load("/nonexistent/mappend/routes", err, 1));
	cr_assert_str_eq(err, "");
}

Test(routemap, streams_are_named_by_the_caller)
{
	char text[] = "alice b1\n\nbob [::1]:143 extra\n", err[256];
	FILE *f = fmemopen(text, strlen(text), "r");
	struct routemap *m;

	cr_assert_not_null(f);
	cr_assert_null(routemap_load_stream(f, "routes.map", err, sizeof(err)));
	fclose(f);
	cr_assert_str_eq(err, "routes.map:3: more than two fields: \"extra\" after "
	    "the target (a comment starts with '#')");

	text[strlen(text) - 7] = '\0';	/* "extra" removed */
	f = fmemopen(text, strlen(text), "r");
	cr_assert_not_null(f);
	m = routemap_load_stream(f, "routes.map", err, sizeof(err));
	fclose(f);
	cr_assert_not_null(m, "%s", err);
	expect_route(m, "BOB", "[::1]:143");
	routemap_free(m);
}

Test(routemap, null_is_fine)
{
	routemap_free(NULL);
	cr_assert_eq(routemap_entries(NULL), 0);
	cr_assert_null(routemap_lookup(NULL, "alice"));
}

/* Entry i of the generated map: keys in no particular order, some domains. */
static void
generated(size_t i, char *key, size_t keylen, char *target, size_t targetlen)
{
	size_t k = (i * 7919) % 200000;

	if (k % 1000 == 0)
		snprintf(key, keylen, "@dom%zu.example", k / 1000);
	else
		snprintf(key, keylen, "user%zu@dom%zu.example", k, k % 250);
	if (k % 3 == 0)
		snprintf(target, targetlen, "backend-%zu", k % 17);
	else if (k % 3 == 1)
		snprintf(target, targetlen, "imap%zu.example.net:%zu", k % 5, 143 + k % 3);
	else
		snprintf(target, targetlen, "[2001:db8::%zx]:993", k % 4096);
}

Test(routemap, two_hundred_thousand_entries, .timeout = 60)
{
	char key[64], target[64], upper[80];
	char *text = NULL;
	size_t len = 0, i, j;
	FILE *f = open_memstream(&text, &len);
	struct routemap *m;

	cr_assert_not_null(f);
	fprintf(f, "# generated\n* default-backend\n");
	for (i = 0; i < 200000; i++) {
		generated(i, key, sizeof(key), target, sizeof(target));
		fprintf(f, "%s\t%s\n", key, target);
	}
	fclose(f);
	/* a stream of unknown size is read in growing steps: the same map */
	f = fmemopen(text, len, "r");
	cr_assert_not_null(f);
	m = routemap_load_stream(f, "generated", NULL, 0);
	fclose(f);
	cr_assert_not_null(m);
	cr_assert_eq(routemap_entries(m), 200001);
	generated(4242, key, sizeof(key), target, sizeof(target));
	expect_route(m, key, target);
	routemap_free(m);
	write_map(text, len);
	free(text);
	m = routemap_load(map_path, NULL, 0);
	unlink(map_path);
	cr_assert_not_null(m);
	cr_assert_eq(routemap_entries(m), 200001);
	for (i = 0; i < 200000; i++) {
		generated(i, key, sizeof(key), target, sizeof(target));
		if (key[0] == '@') {
			/* a user of the domain without an entry of its own */
			snprintf(upper, sizeof(upper), "nobody%s", key);
			expect_route(m, upper, target);
		}
		for (j = 0; key[j] != '\0'; j++)
			upper[j] = (char)(key[j] >= 'a' && key[j] <= 'z' ? key[j] - 32 :
			    key[j]);
		upper[j] = '\0';
		cr_assert_str_eq(routemap_lookup(m, key), target);
		cr_assert_str_eq(routemap_lookup(m, upper), target);
	}
	expect_route(m, "user0@dom0.example", "backend-0");
	expect_route(m, "user200000@dom0.example", "backend-0");
	expect_route(m, "user1@dom999.example", "default-backend");
	routemap_free(m);
}

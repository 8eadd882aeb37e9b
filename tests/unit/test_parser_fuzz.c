/*
 * test_parser_fuzz.c — what the fuzzers (tests/fuzz) found in proxy/parser.c,
 * one test per finding, against the promises of parser.h ("What a caller
 * may rely on"); tests/fuzz/lexdrive.c checks the same promises.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "parser.h"

static int
parse_response(const char *line, struct imap_segment *seg)
{
	struct imap_parser p;

	imap_parser_init(&p, IMAP_MODE_RESPONSE);
	return imap_parse_segment(&p, line, strlen(line), seg);
}

/*
 * parser.h: "a first segment has ntok >= 1 and tok[0] is "+", "*" or a
 * tag".  The response lexer takes any run of non-delimiters as tok[0]
 * (lex_response_start uses run_length, not imap_valid_tag), so bytes no
 * tag may hold (8-bit, '"', '{', '%', '+', control characters) come back
 * as a "tag" of a successful parse.  response.c only compares it with the
 * tags in flight, so nothing breaks today; either the lexer refuses such a
 * line or parser.h says "a run of non-delimiters".
 */
Test(parser_fuzz, response_tag_is_a_tag)
{
	static const char *const lines[] = {
		"\x96 OK done\r\n", "a\"b OK done\r\n", "{5} NO x\r\n", "a%b BAD x\r\n",
		"a+ OK done\r\n", "a\x01 OK done\r\n",
	};
	struct imap_segment seg;
	size_t i;

	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		if (parse_response(lines[i], &seg) != 0)
			continue;	/* refused: the promise holds */
		cr_assert_geq(seg.ntok, 1);
		cr_assert(imap_valid_tag(lines[i], seg.tok[0].len),
		    "line %zu: tok[0] \"%.*s\" is not a tag", i, (int)seg.tok[0].len,
		    lines[i]);
	}
}

/*
 * parser.h: "a status word (OK, NO, BAD, BYE, PREAUTH) is tok[1] and is
 * followed by at most one CODE and one TEXT token, never by a literal".
 * lex_response_start skips one space after the tag; with two, run_length
 * sees an empty word, the line goes to lex_args as data, and the status
 * word comes back as tok[1] followed by atoms and, at the end of the line,
 * a literal header: "a1  OK {5}" makes the relay take the next 5 bytes of
 * the stream as literal data (the "* OK hello {5}" trap the README says the
 * lexer avoids).  RFC 3501 has exactly one SP there, so refusing the line
 * or reading it as a status response both keep the promise.
 */
Test(parser_fuzz, status_after_two_spaces)
{
	static const char *const lines[] = {
		"a1  OK {5}\r\n", "*  OK [ALERT] hello {5}\r\n", "*  BYE going {3+}\r\n",
	};
	struct imap_segment seg;
	size_t i;

	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		if (parse_response(lines[i], &seg) != 0)
			continue;
		cr_assert(seg.last, "line %zu: a status response announces a %llu-byte "
		    "literal", i, (unsigned long long)seg.literal);
		if (seg.ntok >= 2 && seg.tok[1].kind == IMAP_TOK_ATOM &&
		    imap_tok_is(lines[i], &seg.tok[1], "OK"))
			cr_assert_leq(seg.ntok, 4, "line %zu: OK followed by data", i);
	}
}

/* The same root: "* OK  [CAPABILITY ...]" with two spaces before the code
 * came back without a CODE token, so the list reached the client without
 * being rewritten. */
Test(parser_fuzz, code_after_two_spaces)
{
	struct imap_segment seg;
	const char *line = "*  OK  [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] hi\r\n";

	cr_assert_eq(parse_response(line, &seg), 0);
	cr_assert_geq(seg.ntok, 3);
	cr_assert_eq(seg.tok[2].kind, IMAP_TOK_CODE);
	cr_assert(imap_code(line, &seg, "CAPABILITY") != NULL);
}

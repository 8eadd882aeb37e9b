/* test_parser.c — the IMAP lexer: tokens, literal forms, framing, errors. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "parser.h"

/* Tokenize one complete segment; returns 0 or -1 (p->error set). */
static int
parse1(struct imap_parser *p, const char *text, struct imap_segment *seg)
{
	return imap_parse_segment(p, text, strlen(text), seg);
}

static char *
tok_text(const char *buf, const struct imap_token *t)
{
	static char out[256];

	snprintf(out, sizeof(out), "%.*s", (int)t->len, buf + t->off);
	return out;
}

static void
expect_tokens(const char *buf, const struct imap_segment *seg,
    const char *const *want, size_t nwant)
{
	size_t i;

	cr_assert_eq(seg->ntok, nwant, "%u tokens, expected %zu", seg->ntok, nwant);
	for (i = 0; i < nwant; i++)
		cr_assert_str_eq(tok_text(buf, &seg->tok[i]), want[i], "token %zu", i);
}

Test(parser, command_tokens)
{
	struct imap_parser p;
	struct imap_segment seg;
	const char *line = "a1 FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)] UID) \"q \\\"x\\\\\"\r\n";
	const char *want[] = { "a1", "FETCH", "1:*", "(", "FLAGS",
		"BODY.PEEK[HEADER.FIELDS", "(", "FROM", "TO", ")", "]", "UID", ")",
		"\"q \\\"x\\\\\"" };

	imap_parser_init(&p, IMAP_MODE_COMMAND);
	cr_assert_eq(parse1(&p, line, &seg), 0, "%s", p.error);
	cr_assert(seg.first && seg.last);
	expect_tokens(line, &seg, want, sizeof(want) / sizeof(want[0]));
	cr_assert_eq(seg.tok[3].kind, IMAP_TOK_LPAREN);
	cr_assert_eq(seg.tok[13].kind, IMAP_TOK_QUOTED);
	cr_assert_eq(seg.eol, strlen(line) - 2);
}

Test(parser, literal_forms)
{
	static const struct {
		const char *line;
		uint64_t size;
		unsigned flags;
	} cases[] = {
		{ "a APPEND box {5}\r\n", 5, 0 },
		{ "a APPEND box {5+}\r\n", 5, IMAP_LIT_NONSYNC },
		{ "a APPEND box ~{7}\r\n", 7, IMAP_LIT_BINARY },
		{ "a APPEND box ~{7+}\r\n", 7, IMAP_LIT_BINARY | IMAP_LIT_NONSYNC },
		{ "a APPEND box (\\Seen) \"1-Jan-2020 00:00:00 +0000\" {0}\r\n", 0, 0 },
		{ "a APPEND box {9223372036854775807}\r\n", 9223372036854775807ULL, 0 },
		{ "a LOGIN {4}\n", 4, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct imap_parser p;
		struct imap_segment seg;

		imap_parser_init(&p, IMAP_MODE_COMMAND);
		cr_assert_eq(parse1(&p, cases[i].line, &seg), 0, "%s: %s",
		    cases[i].line, p.error);
		cr_assert(!seg.last, "%s", cases[i].line);
		cr_assert_eq(seg.literal, cases[i].size, "%s", cases[i].line);
		cr_assert_eq(seg.literal_flags, cases[i].flags, "%s", cases[i].line);
		cr_assert_eq(seg.tok[seg.ntok - 1].kind, IMAP_TOK_LITERAL);
		cr_assert_eq(cases[i].line[seg.literal_off],
		    (cases[i].flags & IMAP_LIT_BINARY) ? '~' : '{');
		cr_assert(p.in_line);
	}
}

Test(parser, command_continues_after_literal)
{
	struct imap_parser p;
	struct imap_segment seg;
	const char *s1 = "a APPEND box (\\Seen) {3+}\r\n";
	const char *s2 = " (\\Flagged) ~{4}\r\n";
	const char *s3 = "\r\n";

	imap_parser_init(&p, IMAP_MODE_COMMAND);
	cr_assert_eq(parse1(&p, s1, &seg), 0);
	cr_assert(seg.first && !seg.last);
	cr_assert_eq(parse1(&p, s2, &seg), 0, "%s", p.error);
	cr_assert(!seg.first && !seg.last);
	cr_assert_eq(seg.ntok, 4);
	cr_assert_eq(seg.literal, 4);
	cr_assert_eq(parse1(&p, s3, &seg), 0);
	cr_assert(!seg.first && seg.last);
	cr_assert_eq(seg.ntok, 0);
	/* the next segment starts a new command */
	cr_assert_eq(parse1(&p, "b NOOP\r\n", &seg), 0);
	cr_assert(seg.first && seg.last);
}

Test(parser, parentheses_across_literal)
{
	struct imap_parser p;
	struct imap_segment seg;

	imap_parser_init(&p, IMAP_MODE_COMMAND);
	cr_assert_eq(parse1(&p, "a SEARCH (TEXT {3}\r\n", &seg), 0);
	cr_assert_eq(parse1(&p, " SUBJECT x)\r\n", &seg), 0, "%s", p.error);
	cr_assert(seg.last);
	cr_assert_eq(parse1(&p, "a SEARCH (TEXT {3}\r\n", &seg), 0);
	cr_assert_eq(parse1(&p, "\r\n", &seg), -1);
	cr_assert_str_eq(p.error, "unbalanced parentheses");
}

Test(parser, bad_literal_sizes)
{
	static const struct {
		const char *line;
		const char *error;
	} cases[] = {
		{ "a APPEND box {-1}\r\n", "bad literal size" },
		{ "a APPEND box {}\r\n", "bad literal size" },
		{ "a APPEND box {1a}\r\n", "bad literal size" },
		{ "a APPEND box {5 }\r\n", "bad literal size" },
		{ "a APPEND box {+}\r\n", "bad literal size" },
		{ "a APPEND box {5++}\r\n", "bad literal size" },
		{ "a APPEND box {5\r\n", "bad literal size" },
		{ "a APPEND box {99999999999999999999}\r\n", "literal size too large" },
		{ "a APPEND box {9223372036854775808}\r\n", "literal size too large" },
		{ "a APPEND box {5} x\r\n", "literal header must end the line" },
		{ "a APPEND box ~{5}x\r\n", "literal header must end the line" },
		{ "a APPEND box{5}\r\n", "unexpected character in atom" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct imap_parser p;
		struct imap_segment seg;

		imap_parser_init(&p, IMAP_MODE_COMMAND);
		cr_assert_eq(parse1(&p, cases[i].line, &seg), -1, "%s", cases[i].line);
		cr_assert_str_eq(p.error, cases[i].error, "%s", cases[i].line);
		/* after an error the next segment starts a new line */
		cr_assert(!p.in_line);
	}
}

Test(parser, command_errors)
{
	static const struct {
		const char *line;
		const char *error;
	} cases[] = {
		{ "a FETCH 1 (FLAGS\r\n", "unbalanced parentheses" },
		{ "a FETCH 1 FLAGS)\r\n", "unbalanced parentheses" },
		{ "a FETCH 1 ((FLAGS)\r\n", "unbalanced parentheses" },
		{ "* LOGIN a b\r\n", "invalid tag" },
		{ "+ LOGIN a b\r\n", "invalid tag" },
		{ "a+ NOOP\r\n", "invalid tag" },
		{ "(a NOOP\r\n", "invalid tag" },
		{ " NOOP\r\n", "invalid tag" },
		{ "a\r\n", "missing command" },
		{ "a \r\n", "missing command" },
		/* a tag and spaces: no command name (found by fuzzing; callers
		 * read tok[1] of every accepted command start) */
		{ "a  \r\n", "missing command" },
		{ "a   NOOP\r\n", "missing command" },
		{ "a (NOOP)\r\n", "missing command" },
		{ "a \"NOOP\"\r\n", "invalid command name" },
		{ "a {4}\r\n", "invalid command name" },
		{ "a {4+}\r\n", "invalid command name" },
		{ "a NO]OP\r\n", "invalid command name" },
		{ "a\tNOOP\r\n", "invalid tag" },
		{ "a LOGIN \"unterminated\r\n", "unterminated quoted string" },
		{ "a LOGIN \"bad \\x escape\"\r\n", "bad escape in quoted string" },
		{ "a LOGIN us\001er pw\r\n", "control character in line" },
		{ "a LOGIN us\"er pw\r\n", "unexpected character in atom" },
		{ "a NOOP\rx\r\n", "control character in line" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct imap_parser p;
		struct imap_segment seg;

		imap_parser_init(&p, IMAP_MODE_COMMAND);
		cr_assert_eq(parse1(&p, cases[i].line, &seg), -1, "%s", cases[i].line);
		cr_assert_str_eq(p.error, cases[i].error, "%s", cases[i].line);
	}
}

/* What parser.h promises every caller, on lines that parse. */
Test(parser, command_start_always_has_tag_and_name)
{
	static const char *const lines[] = {
		"a NOOP\r\n", "a NOOP \r\n", "a  \r\n", "a \r\n", "a\r\n",
		"x LOGIN {3}\r\n", "x {3}\r\n", "x (a)\r\n", "x ]\r\n",
		"x UID FETCH 1 (FLAGS)\r\n", "\r\n", " \r\n",
	};
	size_t i;

	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		struct imap_parser p;
		struct imap_segment seg;

		imap_parser_init(&p, IMAP_MODE_COMMAND);
		memset(&seg, 0xa5, sizeof(seg));	/* no stale tokens count */
		if (parse1(&p, lines[i], &seg) != 0) {
			cr_assert(seg.first, "%s: first not set on failure", lines[i]);
			continue;
		}
		cr_assert(seg.first);
		if (seg.ntok == 0)
			continue;
		cr_assert_geq(seg.ntok, 2, "%s", lines[i]);
		cr_assert_eq(seg.tok[0].kind, IMAP_TOK_ATOM, "%s", lines[i]);
		cr_assert_eq(seg.tok[1].kind, IMAP_TOK_ATOM, "%s", lines[i]);
		cr_assert_gt(seg.tok[1].len, 0, "%s", lines[i]);
		cr_assert_leq(seg.tok[1].off + seg.tok[1].len, seg.eol, "%s", lines[i]);
	}
}

/* A failure before anything was parsed still says whether the segment
 * starts a line: the relay decides between BAD and BYE on it. */
Test(parser, failure_sets_first)
{
	struct imap_parser p;
	struct imap_segment seg;

	imap_parser_init(&p, IMAP_MODE_COMMAND);
	memset(&seg, 0, sizeof(seg));
	cr_assert_eq(imap_parse_segment(&p, "a NOOP", 6, &seg), -1);
	cr_assert(seg.first);
	cr_assert_eq(parse1(&p, "a APPEND x {3}\r\n", &seg), 0);
	memset(&seg, 0xff, sizeof(seg));
	cr_assert_eq(imap_parse_segment(&p, "abc", 3, &seg), -1);
	cr_assert(!seg.first);
	cr_assert_eq(seg.ntok, 0);
}

Test(parser, nul_byte_refused)
{
	struct imap_parser p;
	struct imap_segment seg;
	const char line[] = "a LOGIN u\0x pw\r\n";

	imap_parser_init(&p, IMAP_MODE_COMMAND);
	cr_assert_eq(imap_parse_segment(&p, line, sizeof(line) - 1, &seg), -1);
	cr_assert_str_eq(p.error, "NUL byte in line");
}

Test(parser, deep_nesting_refused)
{
	struct imap_parser p;
	struct imap_segment seg;
	char line[512];
	size_t i, n = 0;

	n += (size_t)snprintf(line, sizeof(line), "a SEARCH ");
	for (i = 0; i < 100; i++)
		line[n++] = '(';
	memcpy(line + n, "\r\n", 3);
	imap_parser_init(&p, IMAP_MODE_COMMAND);
	cr_assert_eq(parse1(&p, line, &seg), -1);
	cr_assert_str_eq(p.error, "parentheses nested too deeply");
}

Test(parser, empty_command_line)
{
	struct imap_parser p;
	struct imap_segment seg;

	imap_parser_init(&p, IMAP_MODE_COMMAND);
	cr_assert_eq(parse1(&p, "\r\n", &seg), 0);
	cr_assert(seg.first && seg.last);
	cr_assert_eq(seg.ntok, 0);
}

Test(parser, raw_mode)
{
	struct imap_parser p;
	struct imap_segment seg;
	const char *line = "dGVzdAB0ZXN0AHNlY3JldA== {5}\r\n";

	imap_parser_init(&p, IMAP_MODE_RAW);
	cr_assert_eq(parse1(&p, line, &seg), 0);
	cr_assert(seg.first && seg.last);
	cr_assert_eq(seg.ntok, 1);
	cr_assert_eq(seg.tok[0].kind, IMAP_TOK_TEXT);
	cr_assert_str_eq(tok_text(line, &seg.tok[0]), "dGVzdAB0ZXN0AHNlY3JldA== {5}");
}

Test(parser, responses)
{
	struct imap_parser p;
	struct imap_segment seg;
	const char *greet = "* OK [CAPABILITY IMAP4rev1 LITERAL+] ready {5}\r\n";
	const char *tagged = "a1 NO [TRYCREATE] no such mailbox\r\n";
	const char *cont = "+ Ready for literal data\r\n";
	const char *bare = "+\r\n";
	const char *exists = "* 23 EXISTS\r\n";
	const char *caps = "* CAPABILITY IMAP4rev1 COMPRESS=DEFLATE\r\n";
	const char *nocode = "* BYE [unterminated code\r\n";

	imap_parser_init(&p, IMAP_MODE_RESPONSE);
	cr_assert_eq(parse1(&p, greet, &seg), 0);
	cr_assert(seg.last, "resp-text never holds a literal");
	cr_assert_eq(seg.ntok, 4);
	cr_assert_eq(seg.tok[2].kind, IMAP_TOK_CODE);
	cr_assert_str_eq(tok_text(greet, &seg.tok[2]), "CAPABILITY IMAP4rev1 LITERAL+");
	cr_assert_eq(seg.tok[3].kind, IMAP_TOK_TEXT);
	cr_assert_str_eq(tok_text(greet, &seg.tok[3]), "ready {5}");

	cr_assert_eq(parse1(&p, tagged, &seg), 0);
	cr_assert_str_eq(tok_text(tagged, &seg.tok[0]), "a1");
	cr_assert(imap_tok_is(tagged, &seg.tok[1], "no"));
	cr_assert_str_eq(tok_text(tagged, &seg.tok[2]), "TRYCREATE");

	cr_assert_eq(parse1(&p, cont, &seg), 0);
	cr_assert_eq(seg.ntok, 2);
	cr_assert_str_eq(tok_text(cont, &seg.tok[1]), "Ready for literal data");
	cr_assert_eq(parse1(&p, bare, &seg), 0);
	cr_assert_eq(seg.ntok, 2);
	cr_assert_eq(seg.tok[1].len, 0);

	cr_assert_eq(parse1(&p, exists, &seg), 0);
	cr_assert_eq(seg.ntok, 3);
	cr_assert_eq(parse1(&p, caps, &seg), 0);
	cr_assert_eq(seg.ntok, 4);
	cr_assert_eq(parse1(&p, nocode, &seg), 0);
	cr_assert_eq(seg.tok[seg.ntok - 1].kind, IMAP_TOK_TEXT);
}

Test(parser, fetch_response_with_literals)
{
	struct imap_parser p;
	struct imap_segment seg;

	imap_parser_init(&p, IMAP_MODE_RESPONSE);
	cr_assert_eq(parse1(&p, "* 1 FETCH (UID 7 BODY[] {12}\r\n", &seg), 0);
	cr_assert(!seg.last);
	cr_assert_eq(seg.literal, 12);
	cr_assert_eq(parse1(&p, " BODY[HEADER] ~{3}\r\n", &seg), 0);
	cr_assert(!seg.last);
	cr_assert_eq(seg.literal_flags, IMAP_LIT_BINARY);
	cr_assert_eq(parse1(&p, ")\r\n", &seg), 0);
	cr_assert(seg.last);
	/* the OK after it is a new response with text */
	cr_assert_eq(parse1(&p, "a OK done {3}\r\n", &seg), 0);
	cr_assert(seg.first && seg.last);
}

Test(parser, responses_are_lenient_about_parentheses)
{
	struct imap_parser p;
	struct imap_segment seg;

	imap_parser_init(&p, IMAP_MODE_RESPONSE);
	cr_assert_eq(parse1(&p, "* 1 FETCH (FLAGS (\\Seen)\r\n", &seg), 0);
	cr_assert(seg.last);
	cr_assert_eq(parse1(&p, "* LIST () \"/\" foo)\r\n", &seg), 0);
	cr_assert_eq(parse1(&p, "\r\n", &seg), -1);
	cr_assert_str_eq(p.error, "response without tag");
}

Test(parser, segment_must_end_with_lf)
{
	struct imap_parser p;
	struct imap_segment seg;

	imap_parser_init(&p, IMAP_MODE_COMMAND);
	cr_assert_eq(imap_parse_segment(&p, "a NOOP", 6, &seg), -1);
	cr_assert_eq(imap_parse_segment(&p, "a NO\nOP\n", 8, &seg), -1);
}

Test(parser, token_truncation_still_checks_the_line)
{
	struct imap_parser p;
	struct imap_segment seg;
	char line[2048];
	size_t n = 0, i;

	n += (size_t)snprintf(line, sizeof(line), "a SEARCH");
	for (i = 0; i < 200; i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, " %zu", i);
	snprintf(line + n, sizeof(line) - n, " (x\r\n");
	imap_parser_init(&p, IMAP_MODE_COMMAND);
	cr_assert_eq(parse1(&p, line, &seg), -1);
	cr_assert_str_eq(p.error, "unbalanced parentheses");
	snprintf(line + n, sizeof(line) - n, " {3}\r\n");
	cr_assert_eq(parse1(&p, line, &seg), 0);
	cr_assert(seg.truncated);
	cr_assert_eq(seg.ntok, IMAP_SEGMENT_TOKENS);
	cr_assert_eq(seg.literal, 3, "the literal is found beyond the recorded tokens");
}

Test(parser, helpers)
{
	const char *buf = "\"a\\\"b\\\\c\" atom 12345 123x \"\"";
	struct imap_token q = { IMAP_TOK_QUOTED, 0, 9 };
	struct imap_token a = { IMAP_TOK_ATOM, 10, 4 };
	struct imap_token n = { IMAP_TOK_ATOM, 15, 5 };
	struct imap_token bad = { IMAP_TOK_ATOM, 21, 4 };
	struct imap_token empty = { IMAP_TOK_QUOTED, 26, 2 };
	char out[16];
	uint64_t v;

	cr_assert_eq(imap_unquote(buf, &q, out, sizeof(out)), 5);
	cr_assert_eq(memcmp(out, "a\"b\\c", 5), 0);
	cr_assert_eq(imap_unquote(buf, &q, out, 4), -1);
	cr_assert_eq(imap_unquote(buf, &a, out, sizeof(out)), 4);
	cr_assert_eq(imap_unquote(buf, &empty, out, sizeof(out)), 0);
	cr_assert(imap_tok_is(buf, &a, "ATOM"));
	cr_assert(!imap_tok_is(buf, &a, "ATO"));
	cr_assert_eq(imap_tok_number(buf, &n, &v), 0);
	cr_assert_eq(v, 12345);
	cr_assert_eq(imap_tok_number(buf, &bad, &v), -1);
	cr_assert(imap_valid_tag("A001", 4));
	cr_assert(imap_valid_tag("a]b.c-d", 7));
	cr_assert(!imap_valid_tag("a+", 2));
	cr_assert(!imap_valid_tag("a*", 2));
	cr_assert(!imap_valid_tag("", 0));
	cr_assert(!imap_valid_tag("a\x80", 2));
}

/*
 * Framing through an evbuffer, the way the relay does it: find a segment,
 * tokenize it, move the literal that follows by count.  The trace of what
 * was recognised must not depend on how the bytes were split on arrival.
 */
struct framer {
	struct imap_parser p;
	struct evbuffer *in;
	size_t scanned;
	uint64_t literal_left;
	char trace[8192];
	size_t tlen;
};

static void
trace_add(struct framer *f, const char *s, size_t n)
{
	cr_assert_lt(f->tlen + n, sizeof(f->trace));
	size_t i;

	/* NUL bytes of literal8 data would end the string comparisons */
	for (i = 0; i < n; i++)
		f->trace[f->tlen + i] = s[i] == '\0' ? '@' : s[i];
	f->tlen += n;
	f->trace[f->tlen] = '\0';
}

static void
framer_run(struct framer *f, size_t max_line)
{
	for (;;) {
		struct imap_segment seg;
		size_t len, have = evbuffer_get_length(f->in), i;
		char tmp[64];
		const char *buf;
		int r;

		if (f->literal_left > 0) {
			size_t n = have < f->literal_left ? have : (size_t)f->literal_left;
			char chunk[4096];

			if (n == 0)
				return;
			cr_assert_leq(n, sizeof(chunk));
			evbuffer_remove(f->in, chunk, n);
			trace_add(f, chunk, n);
			f->literal_left -= n;
			if (f->literal_left == 0)
				trace_add(f, ">", 1);
			continue;
		}
		r = imap_next_segment(f->in, max_line, &f->scanned, &len);
		if (r == 0)
			return;
		if (r < 0) {
			trace_add(f, "[too long]", 10);
			evbuffer_drain(f->in, have);
			f->scanned = 0;
			return;
		}
		buf = (const char *)evbuffer_pullup(f->in, (ssize_t)len);
		if (imap_parse_segment(&f->p, buf, len, &seg) < 0) {
			trace_add(f, "[error ", 7);
			trace_add(f, f->p.error, strlen(f->p.error));
			trace_add(f, "]", 1);
		} else {
			trace_add(f, seg.first ? "{" : "", seg.first ? 1 : 0);
			for (i = 0; i < seg.ntok; i++) {
				snprintf(tmp, sizeof(tmp), "%d:", (int)seg.tok[i].kind);
				trace_add(f, tmp, strlen(tmp));
				trace_add(f, buf + seg.tok[i].off, seg.tok[i].len);
				trace_add(f, "|", 1);
			}
			if (!seg.last) {
				snprintf(tmp, sizeof(tmp), "lit%llu/%u<",
				    (unsigned long long)seg.literal, seg.literal_flags);
				trace_add(f, tmp, strlen(tmp));
				f->literal_left = seg.literal;
				if (seg.literal == 0)
					trace_add(f, ">", 1);
			} else {
				trace_add(f, "}\n", 2);
			}
		}
		evbuffer_drain(f->in, len);
		f->scanned = 0;
	}
}

static void
framer_trace(enum imap_mode mode, const char *data, size_t len,
    const size_t *cuts, size_t ncuts, size_t max_line, char *out, size_t outlen)
{
	struct framer f;
	size_t pos = 0, c;

	memset(&f, 0, sizeof(f));
	imap_parser_init(&f.p, mode);
	f.in = evbuffer_new();
	for (c = 0; c <= ncuts; c++) {
		size_t next = c < ncuts ? cuts[c] : len;

		evbuffer_add(f.in, data + pos, next - pos);
		pos = next;
		framer_run(&f, max_line);
	}
	cr_assert_eq(f.literal_left, 0);
	cr_assert_eq(evbuffer_get_length(f.in), 0, "input left over");
	evbuffer_free(f.in);
	snprintf(out, outlen, "%s", f.trace);
}

static const char command_stream[] =
    "a1 LOGIN {5}\r\nalice \"s\\\"ecret\"\r\n"
    "a2 APPEND INBOX (\\Seen) \"01-Jan-2020 10:00:00 +0000\" {12+}\r\nSubject: x\r\n"
    " (\\Draft) ~{6}\r\nab\r\n\0c\r\n"
    "a3 SEARCH (OR TEXT {3}\r\n{(} UID 1:*)\r\n"
    "a4 FETCH 1 (FLAGS\r\n"
    "a5 NOOP\r\n"
    "a6 APPEND box {0}\r\n\r\n"
    "a7 BAD {1x}\r\n"
    "a8 LOGOUT\r\n";

static const char response_stream[] =
    "* OK [CAPABILITY IMAP4rev1 LITERAL+] hello {3}\r\n"
    "+ go ahead\r\n"
    "* 3 FETCH (UID 9 BODY[] {10}\r\n0123456789 FLAGS (\\Seen))\r\n"
    "* 4 FETCH (BODY[1] ~{4}\r\n\0\r\n\n)\r\n"
    "* 5 EXISTS\r\n"
    "a1 OK [APPENDUID 1 7] done\r\n";

static void
check_all_splits(enum imap_mode mode, const char *data, size_t len)
{
	static char whole[8192], split[8192];
	size_t k, cuts[2];

	framer_trace(mode, data, len, NULL, 0, 1024, whole, sizeof(whole));
	cr_assert_gt(strlen(whole), 0);
	for (k = 1; k < len; k++) {
		cuts[0] = k;
		framer_trace(mode, data, len, cuts, 1, 1024, split, sizeof(split));
		cr_assert_str_eq(split, whole, "split at byte %zu", k);
	}
	for (k = 1; k + 7 < len; k += 3) {
		cuts[0] = k;
		cuts[1] = k + 7;
		framer_trace(mode, data, len, cuts, 2, 1024, split, sizeof(split));
		cr_assert_str_eq(split, whole, "split at bytes %zu and %zu", k, k + 7);
	}
}

Test(parser, command_stream_split_at_every_byte)
{
	check_all_splits(IMAP_MODE_COMMAND, command_stream, sizeof(command_stream) - 1);
}

Test(parser, response_stream_split_at_every_byte)
{
	check_all_splits(IMAP_MODE_RESPONSE, response_stream, sizeof(response_stream) - 1);
}

Test(parser, byte_by_byte)
{
	static char whole[8192], split[8192];
	size_t cuts[sizeof(command_stream)], k, n = sizeof(command_stream) - 1;

	for (k = 0; k + 1 < n; k++)
		cuts[k] = k + 1;
	framer_trace(IMAP_MODE_COMMAND, command_stream, n, NULL, 0, 1024, whole, sizeof(whole));
	framer_trace(IMAP_MODE_COMMAND, command_stream, n, cuts, n - 1, 1024, split, sizeof(split));
	cr_assert_str_eq(split, whole);
	/* what the stream must have produced */
	cr_assert(strstr(whole, "lit5/0<alice>") != NULL, "%s", whole);
	cr_assert(strstr(whole, "lit12/1<Subject: x\r\n>") != NULL);
	cr_assert(strstr(whole, "[error unbalanced parentheses]") != NULL);
	cr_assert(strstr(whole, "[error bad literal size]") != NULL);
	cr_assert(strstr(whole, "{0:a8|0:LOGOUT|}") != NULL);
}

Test(parser, over_long_line)
{
	struct evbuffer *in = evbuffer_new();
	char big[5000];
	size_t scanned = 0, len = 0;

	memset(big, 'x', sizeof(big));
	evbuffer_add(in, "a NOOP ", 7);
	cr_assert_eq(imap_next_segment(in, 4096, &scanned, &len), 0);
	evbuffer_add(in, big, 3000);
	cr_assert_eq(imap_next_segment(in, 4096, &scanned, &len), 0);
	cr_assert_eq(scanned, 3007, "the scan resumes where it stopped");
	evbuffer_add(in, big, 2000);
	cr_assert_eq(imap_next_segment(in, 4096, &scanned, &len), -1);
	evbuffer_free(in);

	/* an LF beyond the limit is still too long */
	in = evbuffer_new();
	scanned = 0;
	evbuffer_add(in, big, 4096);
	evbuffer_add(in, "\n", 1);
	cr_assert_eq(imap_next_segment(in, 4096, &scanned, &len), -1);
	evbuffer_free(in);

	/* exactly at the limit is fine */
	in = evbuffer_new();
	scanned = 0;
	evbuffer_add(in, big, 4095);
	evbuffer_add(in, "\n", 1);
	cr_assert_eq(imap_next_segment(in, 4096, &scanned, &len), 1);
	cr_assert_eq(len, 4096);
	evbuffer_free(in);
}

Test(parser, quote)
{
	char *q = imap_quote("a\"b\\c d", 7);

	cr_assert_str_eq(q, "\"a\\\"b\\\\c d\"");
	free(q);
	q = imap_quote("", 0);
	cr_assert_str_eq(q, "\"\"");
	free(q);
	cr_assert_null(imap_quote("a\r\nb", 4));
	cr_assert_null(imap_quote("a\0b", 3));
}

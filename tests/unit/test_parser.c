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
	struct imap_framer fr;
	struct evbuffer *in;
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
trace_segment(struct framer *f, const struct imap_frame *fr)
{
	const struct imap_segment *seg = &fr->seg;
	char tmp[64];
	size_t i;

	trace_add(f, seg->first ? "{" : "", seg->first ? 1 : 0);
	for (i = 0; i < seg->ntok; i++) {
		snprintf(tmp, sizeof(tmp), "%d:", (int)seg->tok[i].kind);
		trace_add(f, tmp, strlen(tmp));
		trace_add(f, fr->buf + seg->tok[i].off, seg->tok[i].len);
		trace_add(f, "|", 1);
	}
	if (!seg->last) {
		snprintf(tmp, sizeof(tmp), "lit%llu/%u<",
		    (unsigned long long)seg->literal, seg->literal_flags);
		trace_add(f, tmp, strlen(tmp));
		if (seg->literal == 0)
			trace_add(f, ">", 1);
	} else {
		trace_add(f, "}\n", 2);
	}
}

/* The framer as the relay drives it: every frame consumed exactly. */
static void
framer_run(struct framer *f)
{
	for (;;) {
		struct imap_frame fr;
		char chunk[4096];

		switch (imap_framer_next(&f->fr, f->in, &fr)) {
		case IMAP_FRAME_MORE:
			return;
		case IMAP_FRAME_FATAL:
			trace_add(f, "[too long]", 10);
			evbuffer_drain(f->in, evbuffer_get_length(f->in));
			imap_framer_init(&f->fr, f->fr.parser.mode, f->fr.max_line);
			return;
		case IMAP_FRAME_LITERAL:
			cr_assert_leq(fr.len, sizeof(chunk));
			evbuffer_remove(f->in, chunk, fr.len);
			imap_framer_consumed(&f->fr, fr.len);
			trace_add(f, chunk, fr.len);
			if (imap_framer_literal_left(&f->fr) == 0)
				trace_add(f, ">", 1);
			break;
		case IMAP_FRAME_BAD:
			trace_add(f, "[error ", 7);
			trace_add(f, fr.error, strlen(fr.error));
			trace_add(f, "]", 1);
			imap_framer_drop(&f->fr, f->in, fr.len);
			break;
		case IMAP_FRAME_SEGMENT:
			trace_segment(f, &fr);
			imap_framer_drop(&f->fr, f->in, fr.len);
			break;
		}
	}
}

static void
framer_trace(enum imap_mode mode, const char *data, size_t len,
    const size_t *cuts, size_t ncuts, size_t max_line, char *out, size_t outlen)
{
	struct framer f;
	size_t pos = 0, c;

	memset(&f, 0, sizeof(f));
	imap_framer_init(&f.fr, mode, max_line);
	f.in = evbuffer_new();
	for (c = 0; c <= ncuts; c++) {
		size_t next = c < ncuts ? cuts[c] : len;

		evbuffer_add(f.in, data + pos, next - pos);
		pos = next;
		framer_run(&f);
	}
	cr_assert_eq(imap_framer_literal_left(&f.fr), 0);
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

/* Feed text to a fresh framer whose max line is 4096; the frame kind. */
static enum imap_frame_kind
frame_of(struct imap_framer *fr, struct evbuffer *in, const char *text, size_t n)
{
	struct imap_frame f;

	evbuffer_add(in, text, n);
	return imap_framer_next(fr, in, &f);
}

Test(parser, over_long_line)
{
	struct imap_framer fr;
	struct evbuffer *in = evbuffer_new();
	char big[5000];

	memset(big, 'x', sizeof(big));
	imap_framer_init(&fr, IMAP_MODE_COMMAND, 4096);
	cr_assert_eq(frame_of(&fr, in, "a NOOP ", 7), IMAP_FRAME_MORE);
	cr_assert_eq(frame_of(&fr, in, big, 3000), IMAP_FRAME_MORE);
	cr_assert_eq(fr.scanned, 3007, "the scan resumes where it stopped");
	cr_assert_eq(frame_of(&fr, in, big, 2000), IMAP_FRAME_FATAL);
	evbuffer_free(in);

	/* an LF beyond the limit is still too long */
	in = evbuffer_new();
	imap_framer_init(&fr, IMAP_MODE_COMMAND, 4096);
	evbuffer_add(in, big, 4096);
	cr_assert_eq(frame_of(&fr, in, "\n", 1), IMAP_FRAME_FATAL);
	evbuffer_free(in);

	/* exactly at the limit is fine (as a line of one atom it is BAD: no
	 * command name, but framed) */
	in = evbuffer_new();
	imap_framer_init(&fr, IMAP_MODE_RAW, 4096);
	evbuffer_add(in, big, 4095);
	cr_assert_eq(frame_of(&fr, in, "\n", 1), IMAP_FRAME_SEGMENT);
	evbuffer_free(in);
}

/* The framer refuses to go on when a caller consumed the wrong count:
 * framing out of step ends the connection, never reads data as lines. */
Test(parser, framer_misuse_is_fatal)
{
	struct imap_framer fr;
	struct evbuffer *in = evbuffer_new();
	struct imap_frame f;

	imap_framer_init(&fr, IMAP_MODE_COMMAND, 4096);
	evbuffer_add(in, "a APPEND x {3+}\r\nabcb NOOP\r\n", 28);
	cr_assert_eq(imap_framer_next(&fr, in, &f), IMAP_FRAME_SEGMENT);
	/* the segment not consumed: the next call is FATAL */
	cr_assert_eq(imap_framer_next(&fr, in, &f), IMAP_FRAME_FATAL);

	imap_framer_init(&fr, IMAP_MODE_COMMAND, 4096);
	evbuffer_drain(in, evbuffer_get_length(in));
	evbuffer_add(in, "a APPEND x {3+}\r\nabcb NOOP\r\n", 28);
	cr_assert_eq(imap_framer_next(&fr, in, &f), IMAP_FRAME_SEGMENT);
	imap_framer_drop(&fr, in, f.len);
	cr_assert_eq(imap_framer_next(&fr, in, &f), IMAP_FRAME_LITERAL);
	cr_assert_eq(f.len, 3);
	/* one byte too many taken from the literal */
	imap_framer_drop(&fr, in, 4);
	cr_assert_eq(imap_framer_next(&fr, in, &f), IMAP_FRAME_FATAL);
	evbuffer_free(in);
}

/* A literal the caller does not want is dropped by the framer, to the
 * byte: what follows is the next line, whatever the literal held. */
Test(parser, framer_skips_literal_exactly)
{
	struct imap_framer fr;
	struct evbuffer *in = evbuffer_new();
	struct imap_frame f;
	const char text[] = "a APPEND x {20+}\r\nb DELETE victim\r\n123\r\nc NOOP\r\n";

	imap_framer_init(&fr, IMAP_MODE_COMMAND, 4096);
	evbuffer_add(in, text, sizeof(text) - 1);
	cr_assert_eq(imap_framer_next(&fr, in, &f), IMAP_FRAME_SEGMENT);
	imap_framer_drop(&fr, in, f.len);
	cr_assert_eq(imap_framer_next(&fr, in, &f), IMAP_FRAME_LITERAL);
	imap_framer_drop(&fr, in, 5);	/* part of it taken */
	imap_framer_skip_literal(&fr);
	cr_assert_eq(imap_framer_next(&fr, in, &f), IMAP_FRAME_SEGMENT);
	cr_assert(!f.seg.first, "the rest of the APPEND line");
	imap_framer_drop(&fr, in, f.len);
	cr_assert_eq(imap_framer_next(&fr, in, &f), IMAP_FRAME_SEGMENT);
	cr_assert(f.seg.first);
	cr_assert(imap_tok_is(f.buf, &f.seg.tok[0], "c"), "%.*s", (int)f.len, f.buf);
	evbuffer_free(in);
}

/* A literal whose bytes never enter the buffer (the kernel moved them):
 * the framer is told their count, says how many are still wanted, and
 * frames the rest of the response after them; a skipped literal is not
 * wanted, and a count beyond the literal is fatal. */
Test(parser, framer_counts_literal_bytes_moved_outside)
{
	struct imap_framer fr;
	struct evbuffer *in = evbuffer_new();
	struct imap_frame f;
	const char head[] = "* 1 FETCH (BODY[] {100000}\r\nabc";

	imap_framer_init(&fr, IMAP_MODE_RESPONSE, 4096);
	cr_assert_eq(imap_framer_literal_wanted(&fr), 0);
	evbuffer_add(in, head, sizeof(head) - 1);
	cr_assert_eq(imap_framer_next(&fr, in, &f), IMAP_FRAME_SEGMENT);
	/* the segment itself is not consumed yet: nothing may go around it */
	cr_assert_eq(imap_framer_literal_wanted(&fr), 0);
	imap_framer_drop(&fr, in, f.len);
	cr_assert_eq(imap_framer_literal_wanted(&fr), 100000);
	cr_assert_eq(imap_framer_next(&fr, in, &f), IMAP_FRAME_LITERAL);
	cr_assert_eq(f.len, 3);
	imap_framer_drop(&fr, in, 3);
	cr_assert_eq(imap_framer_next(&fr, in, &f), IMAP_FRAME_MORE);
	cr_assert_eq(imap_framer_literal_wanted(&fr), 99997);
	/* moved outside the buffer, in two parts */
	imap_framer_consumed(&fr, 60000);
	cr_assert_eq(imap_framer_literal_wanted(&fr), 39997);
	imap_framer_consumed(&fr, 39997);
	cr_assert_eq(imap_framer_literal_wanted(&fr), 0);
	cr_assert(imap_framer_in_line(&fr), "the response goes on after its literal");
	evbuffer_add(in, ")\r\n* 2 FETCH (FLAGS ())\r\n", 25);
	cr_assert_eq(imap_framer_next(&fr, in, &f), IMAP_FRAME_SEGMENT);
	cr_assert(!f.seg.first && f.seg.last);
	imap_framer_drop(&fr, in, f.len);
	cr_assert_eq(imap_framer_next(&fr, in, &f), IMAP_FRAME_SEGMENT);
	cr_assert(f.seg.first && f.seg.last);
	imap_framer_drop(&fr, in, f.len);

	/* skipped: none of it is wanted */
	evbuffer_add(in, head, sizeof(head) - 1);
	cr_assert_eq(imap_framer_next(&fr, in, &f), IMAP_FRAME_SEGMENT);
	imap_framer_drop(&fr, in, f.len);
	imap_framer_skip_literal(&fr);
	cr_assert_eq(imap_framer_literal_wanted(&fr), 0);
	cr_assert_eq(imap_framer_literal_left(&fr), 100000);

	/* one byte more than the literal holds */
	imap_framer_init(&fr, IMAP_MODE_RESPONSE, 4096);
	evbuffer_drain(in, evbuffer_get_length(in));
	evbuffer_add(in, head, sizeof(head) - 4);
	cr_assert_eq(imap_framer_next(&fr, in, &f), IMAP_FRAME_SEGMENT);
	imap_framer_drop(&fr, in, f.len);
	imap_framer_consumed(&fr, 100001);
	cr_assert_eq(imap_framer_literal_wanted(&fr), 0);
	cr_assert_eq(imap_framer_next(&fr, in, &f), IMAP_FRAME_FATAL);
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

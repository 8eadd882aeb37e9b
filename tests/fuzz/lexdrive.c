/*
 * lexdrive.c — feeds a byte stream to the lexer the way relay.c does, and
 * checks every promise of parser.h's "What a caller may rely on" on every
 * segment, plus the framing the relay builds on it: the framer (parser.h)
 * under a line limit, literal bytes consumed by count, a bad command start
 * answered and skipped, anything else ending the stream (the relay's BYE).  The stream is fed twice, whole and in pieces, and
 * the two runs must see the same segments, tokens and literals.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "fuzz.h"

#define GUARD 0xa5	/* fills a segment before each call */

/*
 * What the first feeding saw, as bytes; the second one is compared with it
 * as it goes.  Kept between runs: fresh allocations per run cost more than
 * the lexing (AddressSanitizer fills and quarantines each one).
 */
struct trace {
	unsigned char *buf;
	size_t len, cap;
	bool compare;		/* check against buf[pos..] instead of adding */
	size_t pos;
};

enum event {
	EV_SEGMENT = 1,
	EV_ERROR,	/* the segment failed to parse */
	EV_TOO_LONG,	/* no LF within the longest line */
	EV_END,
};

struct record {
	uint64_t event, first, last, truncated, ntok;
	uint64_t len, eol, literal, literal_flags, literal_off;
	uint64_t hash;		/* of the segment's bytes */
	uint64_t error;		/* parser's static reason text */
};

struct feed {
	enum imap_mode mode;
	size_t max_line;
	struct imap_framer fr;
	struct evbuffer *in;
	bool ended;		/* the relay would have sent BYE */
	bool expect_first;
	bool abandon;		/* every third synchronizing literal refused */
	unsigned sync_literals;
	long depth;		/* parentheses open in the current command */
	bool depth_known;	/* no segment of it was truncated */
	struct trace *trace;
};

void
fuzz_fail(const char *what, const char *file, int line)
{
	fprintf(stderr, "\n*** broken promise at %s:%d: %s\n", file, line, what);
	abort();
}

static void
trace_add(struct trace *t, const void *p, size_t n)
{
	if (t->compare) {
		/* the pieces must see what the whole stream saw */
		CHECK(t->pos + n <= t->len);
		CHECK(memcmp(t->buf + t->pos, p, n) == 0);
		t->pos += n;
		return;
	}
	if (t->len + n > t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 65536;

		while (cap < t->len + n)
			cap *= 2;
		t->buf = realloc(t->buf, cap);
		CHECK(t->buf != NULL);
		t->cap = cap;
	}
	memcpy(t->buf + t->len, p, n);
	t->len += n;
}

static uint64_t
hash_bytes(const char *s, size_t n)
{
	uint64_t h = 14695981039346656037ULL;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
	return h;
}

/* Like relay.c: a failed line ending in "+}" announced bytes of unknown
 * length that cannot be told from commands. */
static bool
nonsync_header_at_end(const char *buf, size_t len)
{
	size_t end = len;

	while (end > 0 && (buf[end - 1] == '\n' || buf[end - 1] == '\r'))
		end--;
	return end >= 2 && memcmp(buf + end - 2, "+}", 2) == 0;
}

/* The status words parser.h names, by the public helper. */
static bool
is_status(const char *buf, const struct imap_token *t)
{
	return imap_tok_is(buf, t, "OK") || imap_tok_is(buf, t, "NO") ||
	    imap_tok_is(buf, t, "BAD") || imap_tok_is(buf, t, "BYE") ||
	    imap_tok_is(buf, t, "PREAUTH");
}

/* "{" digits ["+"] "}", optionally after "~", is exactly buf[off..end). */
static void
check_literal_header(const char *buf, size_t off, size_t end, uint64_t size,
    unsigned flags)
{
	size_t i = off;
	uint64_t n = 0;
	unsigned want = 0;

	if (buf[i] == '~') {
		want |= IMAP_LIT_BINARY;
		i++;
	}
	CHECK(i < end && buf[i] == '{');
	for (i++; i < end && buf[i] >= '0' && buf[i] <= '9'; i++) {
		uint64_t d = (uint64_t)(buf[i] - '0');

		CHECK(n <= (IMAP_LITERAL_MAX - d) / 10);
		n = n * 10 + d;
	}
	if (i < end && buf[i] == '+') {
		want |= IMAP_LIT_NONSYNC;
		i++;
	}
	CHECK(i + 1 == end && buf[i] == '}');
	CHECK(n == size);
	CHECK(flags == want);
}

/* An atom's helpers must agree with its bytes. */
static void
check_atom_helpers(const char *buf, const struct imap_token *t)
{
	char word[64], out[64];
	uint64_t n = 0, want = 0;
	bool digits = t->len > 0 && t->len <= 19;
	size_t i;

	for (i = 0; i < t->len && digits; i++) {
		char c = buf[t->off + i];

		if (c < '0' || c > '9')
			digits = false;
		else
			want = want * 10 + (uint64_t)(c - '0');
	}
	if (digits) {
		CHECK(imap_tok_number(buf, t, &n) == 0 && n == want);
	} else {
		CHECK(imap_tok_number(buf, t, &n) == -1);
	}
	if (t->len < sizeof(word) && memchr(buf + t->off, '\0', t->len) == NULL) {
		memcpy(word, buf + t->off, t->len);
		word[t->len] = '\0';
		CHECK(imap_tok_is(buf, t, word));
		word[t->len > 0 ? t->len - 1 : 0] = '\0';
		CHECK(t->len == 0 || !imap_tok_is(buf, t, word));
		CHECK(imap_unquote(buf, t, out, sizeof(out)) == (int)t->len);
		CHECK(memcmp(out, buf + t->off, t->len) == 0);
	}
}

static void
check_token(const struct feed *f, const char *buf, const struct imap_token *t,
    bool ok)
{
	static char unquoted[65536];
	int n;

	switch (t->kind) {
	case IMAP_TOK_LPAREN:
	case IMAP_TOK_RPAREN:
		CHECK(t->len == 1);
		CHECK(buf[t->off] == (t->kind == IMAP_TOK_LPAREN ? '(' : ')'));
		break;
	case IMAP_TOK_QUOTED:
		CHECK(t->len >= 2 && buf[t->off] == '"' && buf[t->off + t->len - 1] == '"');
		/* command.c unquotes mailbox names and logins */
		if (t->len - 2 > sizeof(unquoted))
			break;
		n = imap_unquote(buf, t, unquoted, t->len - 2);
		CHECK(n >= 0 && (size_t)n <= t->len - 2);
		CHECK(memchr(unquoted, '\r', (size_t)n) == NULL);
		CHECK(memchr(unquoted, '\0', (size_t)n) == NULL);
		break;
	case IMAP_TOK_ATOM:
		CHECK(t->len >= 1);
		CHECK(memchr(buf + t->off, ' ', t->len) == NULL);
		CHECK(memchr(buf + t->off, '(', t->len) == NULL);
		CHECK(memchr(buf + t->off, ')', t->len) == NULL);
		if (ok && f->mode == IMAP_MODE_COMMAND)
			CHECK(memchr(buf + t->off, '\0', t->len) == NULL);
		check_atom_helpers(buf, t);
		break;
	case IMAP_TOK_LITERAL:
		break;		/* checked with the segment */
	case IMAP_TOK_CODE:
		CHECK(f->mode == IMAP_MODE_RESPONSE);
		CHECK(t->off >= 1 && buf[t->off - 1] == '[' && buf[t->off + t->len] == ']');
		CHECK(memchr(buf + t->off, ']', t->len) == NULL);
		break;
	case IMAP_TOK_TEXT:
		CHECK(f->mode == IMAP_MODE_RESPONSE);
		break;
	default:
		CHECK(!"token of unknown kind");
	}
}

/* Commands: tag SP name, both atoms, as tok[0] and tok[1]. */
static void
check_command_start(const char *buf, const struct imap_segment *seg)
{
	const struct imap_token *tag = &seg->tok[0], *name = &seg->tok[1];
	size_t i;

	if (seg->ntok == 0) {
		CHECK(seg->eol == 0 && seg->last);
		return;
	}
	CHECK(seg->ntok >= 2);
	CHECK(tag->kind == IMAP_TOK_ATOM && tag->off == 0);
	CHECK(imap_valid_tag(buf, tag->len));
	CHECK(name->kind == IMAP_TOK_ATOM && name->len >= 1);
	CHECK(name->off == tag->len + 1 && buf[tag->len] == ' ');
	for (i = 0; i < name->len; i++) {
		unsigned char c = (unsigned char)buf[name->off + i];

		CHECK(c > 0x20 && c < 0x7f && strchr("(){%*\"\\]", c) == NULL);
	}
}

/* Responses: "+", "*" or a tag first; a status word only before a code
 * and a text. */
static void
check_response_start(const char *buf, const struct imap_segment *seg)
{
	const struct imap_token *t0 = &seg->tok[0];
	unsigned i = 2;

	CHECK(seg->ntok >= 1);
	CHECK(t0->kind == IMAP_TOK_ATOM && t0->off == 0);
	if (t0->len == 1 && buf[0] == '+') {
		CHECK(seg->last && seg->ntok == 2 && seg->tok[1].kind == IMAP_TOK_TEXT);
		return;
	}
	/* parser.h promises a tag (test_parser_fuzz.c, response_tag_is_a_tag) */
	CHECK((t0->len == 1 && buf[0] == '*') || imap_valid_tag(buf, t0->len));
	if (seg->ntok < 2 || !is_status(buf, &seg->tok[1]))
		return;
	/* a status word is one, however many spaces come before it
	 * (test_parser_fuzz.c, status_after_two_spaces) */
	CHECK(seg->last);
	if (i < seg->ntok && seg->tok[i].kind == IMAP_TOK_CODE)
		i++;
	if (i < seg->ntok && seg->tok[i].kind == IMAP_TOK_TEXT)
		i++;
	CHECK(i == seg->ntok);
}

/* A raw line is one text token, whatever it holds. */
static void
check_raw(const char *buf, size_t len, size_t eol)
{
	struct imap_parser p;
	struct imap_segment seg;

	imap_parser_init(&p, IMAP_MODE_RAW);
	CHECK(imap_parse_segment(&p, buf, len, &seg) == 0);
	CHECK(seg.first && seg.last && seg.ntok == 1 && !seg.truncated);
	CHECK(seg.tok[0].kind == IMAP_TOK_TEXT && seg.tok[0].off == 0);
	CHECK(seg.tok[0].len == eol && seg.eol == eol);
}

static void
check_segment(struct feed *f, const char *buf, size_t len,
    const struct imap_segment *seg, int rc)
{
	size_t eol = len - 1, i;
	bool ok = rc == 0;
	unsigned char guard[sizeof(seg->tok[0])];

	if (eol > 0 && buf[eol - 1] == '\r')
		eol--;
	CHECK(rc == 0 || rc == -1);
	CHECK(ok || (f->fr.parser.error != NULL && f->fr.parser.error[0] != '\0'));
	CHECK(seg->first == f->expect_first);
	CHECK(seg->ntok <= IMAP_SEGMENT_TOKENS);
	CHECK(!seg->truncated || seg->ntok == IMAP_SEGMENT_TOKENS);
	/* only tok[0 .. ntok) are written */
	memset(guard, GUARD, sizeof(guard));
	for (i = seg->ntok; i < IMAP_SEGMENT_TOKENS; i++)
		CHECK(memcmp(&seg->tok[i], guard, sizeof(guard)) == 0);
	CHECK(seg->eol < len);
	if (ok)
		CHECK(seg->eol == eol);
	for (i = 0; i < seg->ntok; i++) {
		const struct imap_token *t = &seg->tok[i];

		CHECK((uint64_t)t->off + t->len <= seg->eol);
		check_token(f, buf, t, ok);
		CHECK(seg->first || (t->kind != IMAP_TOK_CODE && t->kind != IMAP_TOK_TEXT));
		if (t->kind == IMAP_TOK_LITERAL)
			CHECK(ok && !seg->last && i + 1 == seg->ntok);
	}
	if (!ok || seg->last) {
		/* nothing survives from an earlier call */
		CHECK(seg->literal == 0 && seg->literal_flags == 0 && seg->literal_off == 0);
		CHECK(ok || !seg->last);
	} else {
		CHECK(seg->literal <= IMAP_LITERAL_MAX);
		CHECK(seg->literal_off < seg->eol);
		check_literal_header(buf, seg->literal_off, seg->eol, seg->literal,
		    seg->literal_flags);
		if (!seg->truncated) {
			const struct imap_token *t = &seg->tok[seg->ntok - 1];

			CHECK(seg->ntok >= 1 && t->kind == IMAP_TOK_LITERAL);
			CHECK(t->off == seg->literal_off && t->off + t->len == seg->eol);
		}
	}
	if (ok && seg->first && f->mode == IMAP_MODE_COMMAND)
		check_command_start(buf, seg);
	if (ok && seg->first && f->mode == IMAP_MODE_RESPONSE)
		check_response_start(buf, seg);
	if (ok && f->mode == IMAP_MODE_COMMAND) {
		/* strict: parentheses balance within a command */
		if (seg->first) {
			f->depth = 0;
			f->depth_known = true;
		}
		if (seg->truncated)
			f->depth_known = false;
		for (i = 0; i < seg->ntok && f->depth_known; i++) {
			if (seg->tok[i].kind == IMAP_TOK_LPAREN)
				f->depth++;
			else if (seg->tok[i].kind == IMAP_TOK_RPAREN)
				f->depth--;
			CHECK(f->depth >= 0);
		}
		if (seg->last && f->depth_known)
			CHECK(f->depth == 0);
	}
	/* the parser's own state agrees with the segment */
	CHECK(f->fr.parser.in_line == (ok && !seg->last));
	check_raw(buf, len, eol);
}

static void
record(struct feed *f, enum event ev, const char *buf, size_t len,
    const struct imap_segment *seg)
{
	struct record r;

	memset(&r, 0, sizeof(r));
	r.event = ev;
	r.len = len;
	if (buf != NULL)
		r.hash = hash_bytes(buf, len);
	if (seg != NULL) {
		r.first = seg->first;
		r.last = seg->last;
		r.truncated = seg->truncated;
		r.ntok = seg->ntok;
		r.eol = seg->eol;
		r.literal = seg->literal;
		r.literal_flags = seg->literal_flags;
		r.literal_off = seg->literal_off;
	}
	if (ev == EV_ERROR)
		r.error = (uint64_t)(uintptr_t)f->fr.parser.error;
	if (ev == EV_END) {
		r.literal = imap_framer_literal_left(&f->fr);
		r.len = f->ended ? 0 : evbuffer_get_length(f->in);
		r.first = f->fr.parser.in_line;
	}
	trace_add(f->trace, &r, sizeof(r));
	if (seg != NULL)
		trace_add(f->trace, seg->tok, seg->ntok * sizeof(seg->tok[0]));
}

/* A segment (or a segment that failed to parse) the framer found. */
static void
segment(struct feed *f, const struct imap_frame *fr)
{
	const struct imap_segment *seg = &fr->seg;
	const char *buf = fr->buf;
	size_t len = fr->len;
	int rc = fr->kind == IMAP_FRAME_SEGMENT ? 0 : -1;

	CHECK(buf[len - 1] == '\n' && memchr(buf, '\n', len - 1) == NULL);
	check_segment(f, buf, len, seg, rc);
	record(f, rc == 0 ? EV_SEGMENT : EV_ERROR, buf, len, seg);
	if (rc < 0) {
		if (f->mode != IMAP_MODE_COMMAND || !seg->first ||
		    nonsync_header_at_end(buf, len)) {
			f->ended = true;
			return;
		}
		/* "tag BAD reason", and the next line is a new command */
		imap_framer_drop(&f->fr, f->in, len);
		f->expect_first = true;
		return;
	}
	imap_framer_drop(&f->fr, f->in, len);
	f->expect_first = seg->last;
	if (seg->last)
		return;
	CHECK(imap_framer_literal_left(&f->fr) == seg->literal);
	if (f->abandon && f->mode == IMAP_MODE_COMMAND &&
	    !(seg->literal_flags & IMAP_LIT_NONSYNC) &&
	    ++f->sync_literals % 3 == 0) {
		/* the upstream refused the command before its "+": the client
		 * sends no literal, and its next line is a new command */
		imap_framer_reset_line(&f->fr);
		f->expect_first = true;
	}
}

/* What has arrived so far, as far as it goes. */
static void
feed_process(struct feed *f)
{
	while (!f->ended) {
		size_t have = evbuffer_get_length(f->in);
		struct imap_frame fr;
		const char *buf;

		/* an unwritten field shows: UBSan refuses the bool, the checks
		 * the rest */
		memset(&fr, GUARD, sizeof(fr));
		switch (imap_framer_next(&f->fr, f->in, &fr)) {
		case IMAP_FRAME_MORE:
			CHECK(imap_framer_literal_left(&f->fr) > 0 ? have == 0 :
			    have < f->max_line);
			/* (only short ones: fed byte by byte, this is quadratic) */
			if (imap_framer_literal_left(&f->fr) == 0 && have > 0 && have <= 256)
				CHECK(memchr(evbuffer_pullup(f->in, -1), '\n', have) == NULL);
			return;
		case IMAP_FRAME_FATAL:
			CHECK(have >= f->max_line);
			buf = (const char *)evbuffer_pullup(f->in, (ssize_t)f->max_line);
			CHECK(memchr(buf, '\n', f->max_line) == NULL);
			record(f, EV_TOO_LONG, NULL, 0, NULL);
			f->ended = true;
			return;
		case IMAP_FRAME_LITERAL:
			CHECK(fr.len >= 1 && fr.len <= have &&
			    fr.len <= imap_framer_literal_left(&f->fr));
			imap_framer_drop(&f->fr, f->in, fr.len);
			break;
		case IMAP_FRAME_BAD:
		case IMAP_FRAME_SEGMENT:
			CHECK(fr.len >= 1 && fr.len <= f->max_line && fr.len <= have);
			segment(f, &fr);
			break;
		}
	}
	evbuffer_drain(f->in, evbuffer_get_length(f->in));
}

static void
feed_init(struct feed *f, enum imap_mode mode, size_t max_line,
    struct trace *trace)
{
	memset(f, 0, sizeof(*f));
	f->trace = trace;
	f->mode = mode;
	f->max_line = max_line;
	f->expect_first = true;
	imap_framer_init(&f->fr, mode, max_line);
	f->in = evbuffer_new();
	CHECK(f->in != NULL);
}

static void
feed_finish(struct feed *f)
{
	record(f, EV_END, NULL, 0, NULL);
	evbuffer_free(f->in);
}

void
lexdrive_run(const uint8_t *data, size_t size, enum imap_mode mode)
{
	static const size_t max_lines[8] = { 8, 16, 40, 100, 512, 1024, 4096, 65536 };
	static struct trace trace;
	struct feed whole, pieces;
	const char *s = (const char *)data + LEXDRIVE_CONTROL;
	size_t n, max_line, at = 0;
	unsigned how, seed;
	bool abandon;

	if (size < LEXDRIVE_CONTROL)
		return;
	max_line = max_lines[data[0] & 7];
	how = (data[0] >> 3) & 3;
	abandon = (data[0] & 0x20) != 0;
	seed = (unsigned)data[1] << 8 | data[2];
	n = size - LEXDRIVE_CONTROL;

	trace.len = 0;
	trace.compare = false;
	feed_init(&whole, mode, max_line, &trace);
	whole.abandon = abandon;
	evbuffer_add(whole.in, s, n);
	feed_process(&whole);
	feed_finish(&whole);

	trace.compare = true;
	trace.pos = 0;
	feed_init(&pieces, mode, max_line, &trace);
	pieces.abandon = abandon;
	while (at < n) {
		size_t k;

		if (how == 1) {
			k = 1;
		} else if (how == 2) {
			seed = seed * 1103515245u + 12345u;
			k = 1 + (seed >> 16) % 64;
		} else {
			k = at == 0 ? seed % (n + 1) : n - at;
			if (k == 0)
				k = n;
		}
		if (k > n - at)
			k = n - at;
		evbuffer_add(pieces.in, s + at, k);
		at += k;
		feed_process(&pieces);
	}
	feed_finish(&pieces);

	CHECK(trace.pos == trace.len);
}

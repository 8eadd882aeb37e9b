/*
 * parser.c — IMAP lexing for commands and responses, one segment at a time.
 *
 * A segment is the text between two points where the byte stream changes
 * kind: a line start or the end of a literal, up to the next LF.  Literal
 * data never passes through here; the caller moves it by count.  What must
 * survive a literal (parenthesis depth, the part of the grammar the line is
 * in) lives in struct imap_parser.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "parser.h"

#define MAX_DEPTH 64		/* deeper nesting is refused: no legitimate use */
#define MAX_LITERAL_DIGITS 19	/* INT64_MAX has 19 digits */

void
imap_parser_init(struct imap_parser *p, enum imap_mode mode)
{
	memset(p, 0, sizeof(*p));
	p->mode = mode;
}

void
imap_parser_reset_line(struct imap_parser *p)
{
	p->in_line = false;
	p->depth = 0;
	p->line_tokens = 0;
	p->resp_part = IMAP_RESP_ARGS;
}

static int
fail(struct imap_parser *p, const char *why)
{
	p->error = why;
	imap_parser_reset_line(p);
	return -1;
}

static void
add_token(struct imap_segment *seg, enum imap_tok kind, size_t off, size_t len)
{
	if (seg->ntok == IMAP_SEGMENT_TOKENS) {
		seg->truncated = true;
		return;
	}
	seg->tok[seg->ntok].kind = kind;
	seg->tok[seg->ntok].off = (uint32_t)off;
	seg->tok[seg->ntok].len = (uint32_t)len;
	seg->ntok++;
}

static bool
is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/* ASTRING-CHAR except "+": ATOM-CHAR or "]" (RFC 3501 formal syntax). */
static bool
is_tag_char(unsigned char c)
{
	if (is_ctl(c) || c >= 0x80)
		return false;
	return strchr("(){ %*\"\\+", c) == NULL;
}

bool
imap_valid_tag(const char *s, size_t len)
{
	size_t i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++)
		if (!is_tag_char((unsigned char)s[i]))
			return false;
	return true;
}

/* Length of the run of non-delimiters at buf[i..end). */
static size_t
run_length(const char *buf, size_t i, size_t end)
{
	size_t j = i;

	while (j < end && buf[j] != ' ' && buf[j] != '(' && buf[j] != ')')
		j++;
	return j - i;
}

/*
 * A literal header at buf[i..end): "{" digits ["+"] "}" or the same after
 * "~", and nothing after it on the line.  Returns 1 when it is one (seg is
 * filled), 0 when buf[i] does not start one, -1 on a malformed header.
 */
static int
lex_literal(struct imap_parser *p, const char *buf, size_t i, size_t end,
    struct imap_segment *seg)
{
	size_t j = i, digits = 0;
	uint64_t n = 0;
	unsigned flags = 0;

	if (buf[j] == '~') {
		if (j + 1 >= end || buf[j + 1] != '{')
			return 0;
		flags |= IMAP_LIT_BINARY;
		j++;
	}
	if (buf[j] != '{')
		return 0;
	for (j++; j < end && buf[j] >= '0' && buf[j] <= '9'; j++) {
		if (++digits > MAX_LITERAL_DIGITS)
			return fail(p, "literal size too large");
		n = n * 10 + (uint64_t)(buf[j] - '0');
	}
	if (digits == 0)
		return fail(p, "bad literal size");
	if (n > IMAP_LITERAL_MAX)
		return fail(p, "literal size too large");
	if (j < end && buf[j] == '+') {
		flags |= IMAP_LIT_NONSYNC;
		j++;
	}
	if (j >= end || buf[j] != '}')
		return fail(p, "bad literal size");
	if (j + 1 != end)
		return fail(p, "literal header must end the line");
	add_token(seg, IMAP_TOK_LITERAL, i, end - i);
	seg->literal = n;
	seg->literal_flags = flags;
	seg->literal_off = (uint32_t)i;
	return 1;
}

/* A quoted string at buf[i]; returns its length with both quotes or -1. */
static long
lex_quoted(struct imap_parser *p, const char *buf, size_t i, size_t end)
{
	size_t j;

	for (j = i + 1; j < end; j++) {
		unsigned char c = (unsigned char)buf[j];

		if (c == '"')
			return (long)(j + 1 - i);
		if (c == '\\') {
			if (j + 1 >= end || (buf[j + 1] != '"' && buf[j + 1] != '\\'))
				return fail(p, "bad escape in quoted string");
			j++;
		} else if (c == '\0' || c == '\r') {
			return fail(p, "control character in quoted string");
		}
	}
	return fail(p, "unterminated quoted string");
}

/*
 * Arguments: atoms, quoted strings, parentheses and a final literal header.
 * Strict for commands (they come from anyone); liberal for responses, where
 * only the framing matters and a picky proxy would only break sessions.
 */
static int
lex_args(struct imap_parser *p, const char *buf, size_t i, size_t end,
    struct imap_segment *seg, bool strict)
{
	while (i < end) {
		unsigned char c = (unsigned char)buf[i];
		long qlen;
		size_t n, k;
		int r;

		if (c == ' ') {
			i++;
			continue;
		}
		if (c == '(') {
			if (++p->depth > MAX_DEPTH)
				return fail(p, "parentheses nested too deeply");
			add_token(seg, IMAP_TOK_LPAREN, i, 1);
			i++;
			continue;
		}
		if (c == ')') {
			if (p->depth == 0) {
				if (strict)
					return fail(p, "unbalanced parentheses");
			} else {
				p->depth--;
			}
			add_token(seg, IMAP_TOK_RPAREN, i, 1);
			i++;
			continue;
		}
		if (c == '"') {
			if ((qlen = lex_quoted(p, buf, i, end)) < 0)
				return -1;
			add_token(seg, IMAP_TOK_QUOTED, i, (size_t)qlen);
			i += (size_t)qlen;
			continue;
		}
		if (c == '{' || c == '~') {
			if ((r = lex_literal(p, buf, i, end, seg)) < 0)
				return -1;
			if (r == 1) {
				p->line_tokens++;
				return 1;
			}
		}
		n = run_length(buf, i, end);
		for (k = i; k < i + n; k++) {
			unsigned char a = (unsigned char)buf[k];

			if (a == '\0')
				return fail(p, "NUL byte in line");
			if (!strict)
				continue;
			if (is_ctl(a))
				return fail(p, "control character in line");
			if (a == '"' || a == '{')
				return fail(p, "unexpected character in atom");
		}
		add_token(seg, IMAP_TOK_ATOM, i, n);
		p->line_tokens++;
		i += n;
	}
	return 0;
}

/* resp-text after OK/NO/BAD/BYE/PREAUTH: an optional [code], then text. */
static void
lex_resp_text(const char *buf, size_t i, size_t end, struct imap_segment *seg)
{
	if (i < end && buf[i] == '[') {
		const char *close = memchr(buf + i, ']', end - i);

		if (close != NULL) {
			size_t clen = (size_t)(close - buf) - i - 1;

			add_token(seg, IMAP_TOK_CODE, i + 1, clen);
			i += clen + 2;
			if (i < end && buf[i] == ' ')
				i++;
		}
	}
	add_token(seg, IMAP_TOK_TEXT, i, end - i);
}

static bool
is_status_word(const char *s, size_t len)
{
	static const char *const words[] = { "OK", "NO", "BAD", "BYE", "PREAUTH" };
	size_t k;

	for (k = 0; k < sizeof(words) / sizeof(words[0]); k++)
		if (strlen(words[k]) == len && strncasecmp(s, words[k], len) == 0)
			return true;
	return false;
}

static int
lex_response_start(struct imap_parser *p, const char *buf, size_t end,
    struct imap_segment *seg)
{
	size_t i = 0, n;

	if (end > 0 && buf[0] == '+') {
		add_token(seg, IMAP_TOK_ATOM, 0, 1);
		i = (end > 1 && buf[1] == ' ') ? 2 : 1;
		add_token(seg, IMAP_TOK_TEXT, i, end - i);
		p->resp_part = IMAP_RESP_TEXT;
		return 0;
	}
	/* "*" or a tag: a server only ever echoes tags its client sent */
	n = run_length(buf, 0, end);
	if (n == 0)
		return fail(p, "response without tag");
	if (!(n == 1 && buf[0] == '*') && !imap_valid_tag(buf, n))
		return fail(p, "invalid tag in response");
	add_token(seg, IMAP_TOK_ATOM, 0, n);
	/* one space by the grammar; more are tolerated, and never turn a
	 * status response into data that could announce a literal */
	for (i = n; i < end && buf[i] == ' '; i++)
		;
	n = run_length(buf, i, end);
	if (n > 0 && is_status_word(buf + i, n)) {
		add_token(seg, IMAP_TOK_ATOM, i, n);
		/* a code after more than one space is still a code: a
		 * capability list in it must be seen to be rewritten */
		for (i += n; i < end && buf[i] == ' '; i++)
			;
		p->resp_part = IMAP_RESP_TEXT;
		lex_resp_text(buf, i, end, seg);
		return 0;
	}
	return lex_args(p, buf, i, end, seg, false);
}

/* A command name is an atom (letters in practice); NULL or why not. */
static const char *
command_name_error(const char *s, size_t len)
{
	size_t i;

	if (len == 0)
		return "missing command";
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (is_ctl(c))
			return c == '\0' ? "NUL byte in line" : "control character in line";
		if (c >= 0x80 || strchr("(){%*\"\\]", c) != NULL)
			return "invalid command name";
	}
	return NULL;
}

/*
 * tag SP name [SP args]: the tag and the name are always the first two
 * tokens of a command's first segment, so that every reader of tok[0] and
 * tok[1] may rely on them (parser.h).
 */
static int
lex_command_start(struct imap_parser *p, const char *buf, size_t end,
    struct imap_segment *seg)
{
	const char *why;
	size_t n, name;

	if (end == 0)
		return 0;	/* an empty line: the caller decides */
	n = run_length(buf, 0, end);
	if (n == 0 || !imap_valid_tag(buf, n))
		return fail(p, "invalid tag");
	add_token(seg, IMAP_TOK_ATOM, 0, n);
	if (n == end || buf[n] != ' ')
		return fail(p, "missing command");
	name = run_length(buf, n + 1, end);
	if ((why = command_name_error(buf + n + 1, name)) != NULL)
		return fail(p, why);
	add_token(seg, IMAP_TOK_ATOM, n + 1, name);
	return lex_args(p, buf, n + 1 + name, end, seg, true);
}

int
imap_parse_segment(struct imap_parser *p, const char *buf, size_t len,
    struct imap_segment *seg)
{
	size_t end;
	int r;

	/* every field is set before any failure: callers read seg->first to
	 * tell a bad command start from a bad continuation */
	seg->ntok = 0;
	seg->truncated = false;
	seg->first = !p->in_line;
	seg->last = false;
	seg->eol = 0;
	seg->literal = 0;
	seg->literal_flags = 0;
	seg->literal_off = 0;
	p->error = NULL;
	if (len == 0 || buf[len - 1] != '\n')
		return fail(p, "segment without line end");
	end = len - 1;
	if (end > 0 && buf[end - 1] == '\r')
		end--;
	seg->eol = end;
	if (seg->first)
		imap_parser_reset_line(p);
	if (memchr(buf, '\n', end) != NULL)
		return fail(p, "line feed inside a line");

	if (seg->first && p->mode == IMAP_MODE_RAW) {
		add_token(seg, IMAP_TOK_TEXT, 0, end);
		r = 0;
	} else if (seg->first && p->mode == IMAP_MODE_RESPONSE) {
		r = lex_response_start(p, buf, end, seg);
	} else if (seg->first) {
		r = lex_command_start(p, buf, end, seg);
	} else {
		r = lex_args(p, buf, 0, end, seg, p->mode == IMAP_MODE_COMMAND);
	}
	if (r < 0)
		return -1;
	if (r == 1) {
		seg->last = false;
		p->in_line = true;
		return 0;
	}
	if (p->depth != 0 && p->mode == IMAP_MODE_COMMAND)
		return fail(p, "unbalanced parentheses");
	seg->last = true;
	imap_parser_reset_line(p);
	return 0;
}

/*
 * Find the next segment at the start of in: returns 1 and sets *len (LF
 * included), 0 when no LF has arrived yet and fewer than max bytes are
 * buffered, -1 when max bytes arrived without an LF (line too long).
 * *scanned keeps the search position between calls so that a long line
 * arriving in small pieces is not scanned again from its start.
 */
static int
next_segment(struct evbuffer *in, size_t max, size_t *scanned, size_t *len)
{
	struct evbuffer_ptr start, found;
	size_t have = evbuffer_get_length(in);

	if (*scanned > have)
		*scanned = 0;
	if (evbuffer_ptr_set(in, &start, *scanned, EVBUFFER_PTR_SET) != 0)
		return 0;
	found = evbuffer_search(in, "\n", 1, &start);
	if (found.pos < 0) {
		*scanned = have;
		return have >= max ? -1 : 0;
	}
	if ((size_t)found.pos + 1 > max)
		return -1;
	*len = (size_t)found.pos + 1;
	return 1;
}

#define RESPONSE_LINE_MIN (16 * 1024 * 1024)

size_t
imap_response_line_max(size_t command_line_max)
{
	return command_line_max > RESPONSE_LINE_MIN ? command_line_max :
	    RESPONSE_LINE_MIN;
}

void
imap_framer_init(struct imap_framer *fr, enum imap_mode mode, size_t max_line)
{
	memset(fr, 0, sizeof(*fr));
	imap_parser_init(&fr->parser, mode);
	fr->max_line = max_line;
}

static enum imap_frame_kind
fatal(struct imap_frame *f, const char *why)
{
	f->kind = IMAP_FRAME_FATAL;
	f->error = why;
	f->len = 0;
	return f->kind;
}

enum imap_frame_kind
imap_framer_next(struct imap_framer *fr, struct evbuffer *in,
    struct imap_frame *f)
{
	size_t len;
	int r;

	f->buf = NULL;
	f->len = 0;
	f->error = NULL;
	f->seg.first = !fr->parser.in_line;
	f->seg.ntok = 0;
	if (fr->broken || fr->segment_owed > 0)
		return fatal(f, "internal error: framing out of step");
	while (fr->literal_left > 0) {
		size_t have = evbuffer_get_length(in);
		size_t n = have < fr->literal_left ? have : (size_t)fr->literal_left;

		if (n == 0)
			return f->kind = IMAP_FRAME_MORE;
		if (!fr->literal_skip) {
			f->len = n;
			return f->kind = IMAP_FRAME_LITERAL;
		}
		evbuffer_drain(in, n);
		fr->literal_left -= n;
	}
	fr->literal_skip = false;
	r = next_segment(in, fr->max_line, &fr->scanned, &len);
	if (r == 0)
		return f->kind = IMAP_FRAME_MORE;
	if (r < 0)
		return fatal(f, "line too long");
	fr->scanned = 0;
	fr->segment_owed = len;
	f->len = len;
	f->buf = (const char *)evbuffer_pullup(in, (ssize_t)len);
	if (f->buf == NULL)
		return fatal(f, "out of memory");
	if (imap_parse_segment(&fr->parser, f->buf, len, &f->seg) < 0) {
		f->error = fr->parser.error;
		return f->kind = IMAP_FRAME_BAD;
	}
	if (!f->seg.last)
		fr->literal_left = f->seg.literal;
	return f->kind = IMAP_FRAME_SEGMENT;
}

/* n bytes of the current frame are gone from in. */
static void
account(struct imap_framer *fr, size_t n)
{
	if (fr->segment_owed > 0) {
		if (n > fr->segment_owed)
			fr->broken = true;
		else
			fr->segment_owed -= n;
		return;
	}
	if (n > fr->literal_left)
		fr->broken = true;
	else
		fr->literal_left -= n;
}

void
imap_framer_move(struct imap_framer *fr, struct evbuffer *in,
    struct evbuffer *out, size_t n)
{
	evbuffer_remove_buffer(in, out, n);
	account(fr, n);
}

void
imap_framer_drop(struct imap_framer *fr, struct evbuffer *in, size_t n)
{
	evbuffer_drain(in, n);
	account(fr, n);
}

void
imap_framer_consumed(struct imap_framer *fr, size_t n)
{
	account(fr, n);
}

void
imap_framer_skip_literal(struct imap_framer *fr)
{
	if (fr->literal_left > 0)
		fr->literal_skip = true;
}

void
imap_framer_reset_line(struct imap_framer *fr)
{
	fr->literal_left = 0;
	fr->literal_skip = false;
	imap_parser_reset_line(&fr->parser);
}

void
imap_framer_set_mode(struct imap_framer *fr, enum imap_mode mode)
{
	fr->parser.mode = mode;
}

bool
imap_framer_in_line(const struct imap_framer *fr)
{
	return fr->parser.in_line || fr->literal_left > 0;
}

uint64_t
imap_framer_literal_left(const struct imap_framer *fr)
{
	return fr->literal_left;
}

uint64_t
imap_framer_literal_wanted(const struct imap_framer *fr)
{
	if (fr->broken || fr->segment_owed > 0 || fr->literal_skip)
		return 0;
	return fr->literal_left;
}

bool
imap_tok_is(const char *buf, const struct imap_token *t, const char *word)
{
	return t->kind == IMAP_TOK_ATOM && strlen(word) == t->len &&
	    strncasecmp(buf + t->off, word, t->len) == 0;
}

const struct imap_token *
imap_code(const char *buf, const struct imap_segment *seg, const char *word)
{
	size_t n = strlen(word);
	unsigned i;

	for (i = 0; i < seg->ntok; i++) {
		const struct imap_token *t = &seg->tok[i];

		if (t->kind == IMAP_TOK_CODE && t->len >= n &&
		    strncasecmp(buf + t->off, word, n) == 0 &&
		    (t->len == n || buf[t->off + n] == ' '))
			return t;
	}
	return NULL;
}

int
imap_unquote(const char *buf, const struct imap_token *t, char *out,
    size_t outlen)
{
	const char *s = buf + t->off;
	size_t i, o = 0;

	if (t->kind == IMAP_TOK_ATOM) {
		if (t->len > outlen)
			return -1;
		memcpy(out, s, t->len);
		return (int)t->len;
	}
	if (t->kind != IMAP_TOK_QUOTED || t->len < 2)
		return -1;
	for (i = 1; i + 1 < t->len; i++) {
		if (s[i] == '\\')
			i++;
		if (o == outlen)
			return -1;
		out[o++] = s[i];
	}
	return (int)o;
}

char *
imap_quote(const char *s, size_t len)
{
	char *out = malloc(len * 2 + 3), *o = out;
	size_t i;

	if (out == NULL)
		return NULL;
	*o++ = '"';
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\0' || c == '\r' || c == '\n') {
			free(out);
			return NULL;
		}
		if (c == '"' || c == '\\')
			*o++ = '\\';
		*o++ = (char)c;
	}
	*o++ = '"';
	*o = '\0';
	return out;
}

int
imap_number_item(const char *buf, const struct imap_segment *seg, const char *word,
    uint32_t *value)
{
	unsigned i;
	uint64_t n;

	for (i = 0; i + 1 < seg->ntok; i++)
		if (imap_tok_is(buf, &seg->tok[i], word) &&
		    imap_tok_number(buf, &seg->tok[i + 1], &n) == 0 && n <= UINT32_MAX) {
			*value = (uint32_t)n;
			return 0;
		}
	return -1;
}

int
imap_tok_number(const char *buf, const struct imap_token *t, uint64_t *n)
{
	uint64_t v = 0;
	size_t i;

	if (t->kind != IMAP_TOK_ATOM || t->len == 0 || t->len > 19)
		return -1;
	for (i = 0; i < t->len; i++) {
		char c = buf[t->off + i];

		if (c < '0' || c > '9')
			return -1;
		v = v * 10 + (uint64_t)(c - '0');
	}
	*n = v;
	return 0;
}

/*
 * parser.h — the IMAP lexer, shared by both directions (client commands and
 * server responses) and by the mock upstream.
 *
 * IMAP is framed by segments: a run of text that ends with LF (normally CRLF).
 * A segment either ends the command/response, or ends with a literal header
 * ({n}, {n+}, ~{n}, ~{n+}) after which exactly n bytes of literal data follow
 * and then the next segment of the same command/response.  Quoted strings and
 * atoms never contain CR or LF, so outside literal data every LF ends a
 * segment: the caller finds segments (imap_next_segment), moves literal data
 * by count without looking at it, and asks the parser to tokenize each
 * segment.  The parser keeps what must survive between segments of one line
 * (parenthesis depth, where in the grammar the line is) and is the only code
 * that knows IMAP's lexical rules.
 */
#ifndef MAPPEND_PARSER_H
#define MAPPEND_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

enum imap_mode {
	IMAP_MODE_COMMAND,	/* tag SP name *(SP arg), literals anywhere */
	IMAP_MODE_RESPONSE,	/* "*" / "+" / tag, resp-text without literals */
	IMAP_MODE_RAW,		/* one opaque line: SASL responses, IDLE's DONE */
};

enum imap_tok {
	IMAP_TOK_ATOM,		/* atom-ish run: atoms, numbers, \Flags, BODY[...] parts, sequence sets */
	IMAP_TOK_QUOTED,	/* off/len cover the quotes too; see imap_unquote */
	IMAP_TOK_LITERAL,	/* the literal header itself; data follows the segment */
	IMAP_TOK_LPAREN,
	IMAP_TOK_RPAREN,
	IMAP_TOK_CODE,		/* response code: the bytes between "[" and "]" */
	IMAP_TOK_TEXT,		/* free text up to (not including) CRLF */
};

#define IMAP_LIT_NONSYNC 0x1	/* {n+}: the sender does not wait for "+" */
#define IMAP_LIT_BINARY  0x2	/* ~{n}: literal8 (RFC 3516), may hold NUL */

/* Tokens recorded per segment; a longer segment is still parsed and checked
 * completely, only the tokens beyond this count are not recorded. */
#define IMAP_SEGMENT_TOKENS 48

struct imap_token {
	enum imap_tok kind;
	uint32_t off;		/* offset in the segment */
	uint32_t len;
};

struct imap_segment {
	struct imap_token tok[IMAP_SEGMENT_TOKENS];
	unsigned ntok;
	bool truncated;		/* more tokens than IMAP_SEGMENT_TOKENS */
	bool first;		/* the segment starts a command/response */
	bool last;		/* its line end also ends the command/response */
	size_t eol;		/* offset of the CR (or bare LF) that ends the text */
	/* when !last: the literal that follows the segment */
	uint64_t literal;
	unsigned literal_flags;	/* IMAP_LIT_* */
	uint32_t literal_off;	/* offset of "{" (or "~" for literal8) */
};

struct imap_parser {
	enum imap_mode mode;	/* applies from the next line start */
	bool in_line;		/* a literal interrupted the current line */
	unsigned depth;		/* open "(" in the current line */
	unsigned line_tokens;	/* tokens seen so far in the current line */
	enum {
		IMAP_RESP_ARGS,	/* data: literals allowed */
		IMAP_RESP_TEXT,	/* after OK/NO/BAD/BYE/PREAUTH or "+" */
	} resp_part;
	const char *error;	/* reason of the last failure, static text */
};

/* The longest response line a server may send: data responses such as
 * SEARCH of a large mailbox are much longer than any sane command, so at
 * least 16 MiB, or the commands' own limit when that is more. */
size_t imap_response_line_max(size_t command_line_max);

/* The largest literal the lexer accepts at all; policy limits are the
 * caller's.  RFC 9051 allows 63-bit literal sizes. */
#define IMAP_LITERAL_MAX ((uint64_t)INT64_MAX)

void imap_parser_init(struct imap_parser *p, enum imap_mode mode);

/* Forget the current line: the next segment starts a new command/response.
 * Used when a command is abandoned (a synchronizing literal refused). */
void imap_parser_reset_line(struct imap_parser *p);

/*
 * Tokenize one segment: buf[0..len) ends with LF.  Returns 0 and fills seg,
 * or -1 with p->error set (the line is then abandoned; where it was the
 * first segment, the caller still knows the line's end and can answer BAD).
 * After a segment that is not last, the caller moves seg->literal bytes and
 * calls imap_parse_segment again for the rest of the line.
 *
 * What a caller may rely on:
 * - On return, whatever the result, seg->first, ntok, truncated, last,
 *   literal* are set for this segment; nothing survives from an earlier
 *   call.  Only tok[0 .. ntok) are written: read no token at or beyond ntok.
 * - Every recorded token lies inside the text: off + len <= eol < len.
 * - A literal header is always the last recorded token of a segment that is
 *   not last (unless truncated), and it ends the text: literal_off < eol.
 * - Commands (IMAP_MODE_COMMAND), on success: a first segment has ntok == 0
 *   (an empty line) or ntok >= 2 with tok[0] a valid tag and tok[1] the
 *   command name, both atoms.
 * - Responses (IMAP_MODE_RESPONSE), on success: a first segment has
 *   ntok >= 1 and tok[0] is "+", "*" or a tag; a status word (OK, NO, BAD,
 *   BYE, PREAUTH) is tok[1] and is followed by at most one CODE and one TEXT
 *   token, never by a literal.
 * - Raw lines (IMAP_MODE_RAW): one TEXT token.
 */
int imap_parse_segment(struct imap_parser *p, const char *buf, size_t len,
    struct imap_segment *seg);

/*
 * The framer: the one loop that cuts a stream of IMAP into segments and
 * literal data, for every connection that speaks IMAP (both directions of
 * a session, the proxy's second connection, the mock upstream).  It owns
 * the literal byte count, so that no caller can drift from it:
 *
 *	while ((k = imap_framer_next(&fr, in, &f)) != IMAP_FRAME_MORE) {
 *		SEGMENT: look at f.seg / f.buf, then consume exactly f.len
 *		         bytes (move, drop, or consumed after taking them);
 *		LITERAL: f.len bytes of the current literal are buffered:
 *		         consume up to f.len (fewer is fine: the rest comes
 *		         again at the next call);
 *		BAD:     f.buf does not parse (f.error); f.seg.first says
 *		         whether it started a line; consume f.len, or give up;
 *		FATAL:   no way back in step (line too long, framing misused).
 *	}
 *
 * A segment that is not last is followed by its literal: the framer counts
 * it down as the caller consumes it.  A caller that wants the rest of the
 * literal gone calls imap_framer_skip_literal and the framer drops it;
 * one whose peer gave a command up (a "+" that never comes) calls
 * imap_framer_reset_line.
 */
enum imap_frame_kind {
	IMAP_FRAME_MORE,	/* nothing complete: wait for input */
	IMAP_FRAME_SEGMENT,
	IMAP_FRAME_LITERAL,
	IMAP_FRAME_BAD,
	IMAP_FRAME_FATAL,
};

struct imap_frame {
	enum imap_frame_kind kind;
	const char *buf;	/* SEGMENT, BAD: the segment, contiguous */
	size_t len;		/* bytes of this frame at the start of in */
	struct imap_segment seg;	/* SEGMENT; BAD: seg.first */
	const char *error;	/* BAD, FATAL: static text */
};

struct imap_framer {
	struct imap_parser parser;
	size_t max_line;	/* longest segment: longer ones are FATAL */
	size_t scanned;		/* bytes searched for LF so far */
	size_t segment_owed;	/* bytes of the last segment not consumed */
	uint64_t literal_left;	/* bytes of the current literal to come */
	bool literal_skip;	/* ...which the framer drops itself */
	bool broken;		/* consumed more than a frame held: FATAL */
};

void imap_framer_init(struct imap_framer *, enum imap_mode, size_t max_line);
/* The next frame at the start of in (see above). */
enum imap_frame_kind imap_framer_next(struct imap_framer *, struct evbuffer *in,
    struct imap_frame *);
/* Consume n bytes of the current frame: moved to out, dropped, or taken by
 * the caller itself (consumed: the caller removed them from in, or, of a
 * literal whose buffered bytes are all consumed, they never entered in:
 * the kernel moved them, see imap_framer_literal_wanted). */
void imap_framer_move(struct imap_framer *, struct evbuffer *in,
    struct evbuffer *out, size_t n);
void imap_framer_drop(struct imap_framer *, struct evbuffer *in, size_t n);
void imap_framer_consumed(struct imap_framer *, size_t n);
/* The rest of the current literal is not wanted: dropped as it arrives. */
void imap_framer_skip_literal(struct imap_framer *);
/* Forget the current line and its literal: the next byte starts a line. */
void imap_framer_reset_line(struct imap_framer *);
/* The mode of the next line (IMAP_MODE_RAW for one SASL response...). */
void imap_framer_set_mode(struct imap_framer *, enum imap_mode);
/* Inside a command/response (a literal or the segment after one)? */
bool imap_framer_in_line(const struct imap_framer *);
/* Bytes of the current literal still to come, skipped ones included. */
uint64_t imap_framer_literal_left(const struct imap_framer *);
/* Bytes of the current literal still to come that the caller gets: 0 when
 * there is none, it is skipped, or a segment is not consumed yet.  With in
 * empty, the caller may have them moved around in (splice) and report each
 * part with imap_framer_consumed. */
uint64_t imap_framer_literal_wanted(const struct imap_framer *);

/* Helpers over tokens of a tokenized segment. */
bool imap_tok_is(const char *buf, const struct imap_token *t, const char *word);
/* astring value: an atom as is, a quoted string unescaped.  Returns the
 * length written (no NUL added) or -1 when out is too small or t is not an
 * atom or quoted string. */
int imap_unquote(const char *buf, const struct imap_token *t, char *out,
    size_t outlen);
/* The response code of a status response whose first word is word
 * ("READ-ONLY", "CAPABILITY" ...), or NULL. */
const struct imap_token *imap_code(const char *buf, const struct imap_segment *seg,
    const char *word);
/* A number item of a data response, "... UIDNEXT 42 ...": 0 and *value
 * set when the segment has word followed by a number <= UINT32_MAX. */
int imap_number_item(const char *buf, const struct imap_segment *seg,
    const char *word, uint32_t *value);
/* Decimal number token (0 .. UINT64 range guarded); -1 when not a number. */
int imap_tok_number(const char *buf, const struct imap_token *t, uint64_t *n);
/* Tag syntax: 1*<ASTRING-CHAR except "+"> */
bool imap_valid_tag(const char *s, size_t len);
/* s as a quoted string, malloc'ed and NUL-terminated; NULL when it cannot
 * be one (NUL, CR, LF) or out of memory. */
char *imap_quote(const char *s, size_t len);

#endif

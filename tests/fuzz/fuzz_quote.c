/*
 * fuzz_quote.c — imap_quote, then the lexer reading the result inside a
 * command line and a response line, then imap_unquote, gives back the
 * original bytes; what cannot be a quoted string (NUL, CR, LF) is refused.
 * The emulation and the second connection send mailbox names and
 * passwords this way.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

/* line = prefix + q + "\r\n"; the quoted string must be token k. */
static void
lex_back(enum imap_mode mode, const char *prefix, unsigned k, const char *q,
    size_t qlen, const uint8_t *orig, size_t size)
{
	struct imap_parser p;
	struct imap_segment seg;
	size_t plen = strlen(prefix), len = plen + qlen + 2;
	char *line = malloc(len), *out = malloc(size + 1);
	int n;

	CHECK(line != NULL && out != NULL);
	memcpy(line, prefix, plen);
	memcpy(line + plen, q, qlen);
	memcpy(line + plen + qlen, "\r\n", 2);
	imap_parser_init(&p, mode);
	CHECK(imap_parse_segment(&p, line, len, &seg) == 0);
	CHECK(seg.first && seg.last && seg.ntok == k + 1);
	CHECK(seg.tok[k].kind == IMAP_TOK_QUOTED);
	CHECK(seg.tok[k].off == plen && seg.tok[k].len == qlen);
	n = imap_unquote(line, &seg.tok[k], out, size);
	CHECK(n >= 0 && (size_t)n == size && memcmp(out, orig, size) == 0);
	if (size > 0)
		CHECK(imap_unquote(line, &seg.tok[k], out, size - 1) == -1);
	free(line);
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	char *q = imap_quote(s, size);
	size_t i, specials = 0;
	bool quotable = true;

	for (i = 0; i < size; i++) {
		if (s[i] == '\0' || s[i] == '\r' || s[i] == '\n')
			quotable = false;
		if (s[i] == '"' || s[i] == '\\')
			specials++;
	}
	if (!quotable) {
		CHECK(q == NULL);
		return 0;
	}
	CHECK(q != NULL);
	CHECK(strlen(q) == size + specials + 2);
	lex_back(IMAP_MODE_COMMAND, "a1 SELECT ", 2, q, strlen(q), data, size);
	lex_back(IMAP_MODE_COMMAND, "a1 LOGIN (x) ", 5, q, strlen(q), data, size);
	lex_back(IMAP_MODE_RESPONSE, "* LIST () \"/\" ", 5, q, strlen(q), data, size);
	free(q);
	return 0;
}

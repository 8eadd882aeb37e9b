/*
 * uidset.h — UID sets (RFC 4315) as IMAP writes them, "1:3,7": the one
 * formatter and the readers of what servers send (a uid-set, an APPENDUID
 * response code, the numbers of a SEARCH answer).  Pure functions on
 * memory; nothing here knows about sessions or buffers.
 */
#ifndef MAPPEND_UIDSET_H
#define MAPPEND_UIDSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "1:3,7": consecutive ascending runs compressed, order kept (not sorted),
 * no zero expected; malloc'ed, "" for n == 0, NULL when out of memory. */
char *uidset_format(const uint32_t *uids, size_t n);

/* A uid-set (RFC 4315: uniqueid / uniqueid ":" uniqueid, comma separated, no
 * "*", nz-number <= 4294967295, a range in either order meaning low..high)
 * expanded in order into out[0..max); *n set.  0, or -1 on bad syntax or when
 * it names more than max UIDs.  Strict as the grammar: no empty set or
 * element, no zero, no leading zero, no space.  On -1, out and *n hold
 * whatever was read before the failure and must not be used. */
int uidset_parse(const char *s, size_t len, uint32_t *out, size_t max, size_t *n);

/* The text of a response code "APPENDUID <uidvalidity> <uid-set>" (keyword
 * case-insensitive; uidvalidity nz-number).  0 or -1 as above.  The single
 * form of RFC 4315 ("APPENDUID 38505 3955") is a uid-set of one. */
int uidset_parse_appenduid(const char *code, size_t len, uint32_t *uidvalidity,
    uint32_t *out, size_t max, size_t *n);

/* The numbers of a SEARCH answer's text (what follows the word SEARCH):
 * plain nz-numbers <= UINT32_MAX that are >= min are stored in out[0..max);
 * anything else (e.g. "(MODSEQ 123)", oversized numbers) is skipped.  Returns
 * the count stored; *more is set when further matching numbers were left out.
 * Words are separated by spaces; a word is a plain number when it is all
 * digits without a leading zero, and nothing inside parentheses is one. */
size_t uidset_parse_search(const char *text, size_t len, uint32_t min,
    uint32_t *out, size_t max, bool *more);

#endif

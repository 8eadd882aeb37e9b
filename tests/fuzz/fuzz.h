/*
 * fuzz.h — what the libFuzzer targets in tests/fuzz share: the entry point's
 * prototype, a CHECK that stops the run on a broken promise (a crash alone
 * is not the only finding), and the lexer driver that feeds a stream the
 * way the relay does (lexdrive.c).
 */
#ifndef MAPPEND_FUZZ_H
#define MAPPEND_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Prints what broke and where, then aborts: libFuzzer saves the input. */
void fuzz_fail(const char *what, const char *file, int line)
    __attribute__((noreturn));

#define CHECK(cond) do {						\
	if (!(cond))							\
		fuzz_fail(#cond, __FILE__, __LINE__);			\
} while (0)

/*
 * The lexer targets' input: three control bytes, then the byte stream.
 *   data[0] bits 0-2   the longest line (one of 8 sizes, 8 bytes to 64 KiB)
 *   data[0] bits 3-4   how the stream arrives the second time: split at one
 *                      point, byte by byte, or in chunks of varying size
 *   data[0] bit 5      every third synchronizing literal is refused (the
 *                      parser is reset, no literal bytes follow)
 *   data[1], data[2]   the split point / chunk pattern
 * The stream is fed once whole and once in pieces; both must give the same
 * segments, tokens and literal sizes.
 */
#define LEXDRIVE_CONTROL 3

void lexdrive_run(const uint8_t *data, size_t size, enum imap_mode mode);

#endif

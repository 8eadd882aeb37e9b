/*
 * fuzz_response_lexer.c — server responses as the relay reads them (see
 * lexdrive.c for the input layout and what is checked).
 */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	lexdrive_run(data, size, IMAP_MODE_RESPONSE);
	return 0;
}

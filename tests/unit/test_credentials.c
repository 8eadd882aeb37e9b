/* test_credentials.c — the SASL readers the routing front uses on what a
 * client sends before login: PLAIN's message and a base64 line. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "credentials.h"

Test(credentials, plain_message_parts)
{
	struct sasl_plain sp;

	/* "\0bob@b.example\0pb" */
	cr_assert_eq(sasl_plain_decode("AGJvYkBiLmV4YW1wbGUAcGI=", 24, &sp), 0);
	cr_assert_eq(sp.authzid_len, 0);
	cr_assert_str_eq(sp.authcid, "bob@b.example");
	cr_assert_str_eq(sp.password, "pb");
	cr_assert_eq(sp.password_len, 2);
	sasl_plain_clear(&sp);
	cr_assert_null(sp.password);
	/* "alice\0boss\0pw": an authorization identity */
	cr_assert_eq(sasl_plain_decode("YWxpY2UAYm9zcwBwdw==", 20, &sp), 0);
	cr_assert_str_eq(sp.authzid, "alice");
	cr_assert_str_eq(sp.authcid, "boss");
	cr_assert_str_eq(sp.password, "pw");
	sasl_plain_clear(&sp);
}

Test(credentials, plain_message_refused)
{
	struct sasl_plain sp;

	cr_assert_eq(sasl_plain_decode("", 0, &sp), -1);
	cr_assert_eq(sasl_plain_decode("YWJj", 4, &sp), -1, "no NUL: not PLAIN");
	cr_assert_eq(sasl_plain_decode("YWIAYw==", 8, &sp), -1, "one NUL");
	cr_assert_eq(sasl_plain_decode("!!!!", 4, &sp), -1, "not base64");
	cr_assert_eq(sasl_plain_decode("YWJ", 3, &sp), -1, "not a multiple of 4");
	cr_assert_null(sp.authcid);
}

Test(credentials, base64_line)
{
	size_t n = 99;
	char *s = sasl_b64_decode("Ym9iQGIuZXhhbXBsZQ==", 20, &n);

	cr_assert_not_null(s);
	cr_assert_str_eq(s, "bob@b.example");
	cr_assert_eq(n, 13);
	credentials_wipe(&s, &n);
	cr_assert_null(s);
	cr_assert_eq(n, 0);
	s = sasl_b64_decode("", 0, &n);
	cr_assert_not_null(s, "an empty line is an empty answer");
	cr_assert_eq(n, 0);
	free(s);
	cr_assert_null(sasl_b64_decode("AGE=", 4, &n), "a NUL inside");
	cr_assert_null(sasl_b64_decode("Y*==", 4, &n));
	cr_assert_null(sasl_b64_decode("Ym9", 3, &n));
}

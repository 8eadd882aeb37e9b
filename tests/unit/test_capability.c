/* test_capability.c — learning the upstream's capabilities and the list the
 * client is told instead. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "capability.h"

static char *
rewrite(const struct capability_policy *policy, const char *list)
{
	struct evbuffer *out = evbuffer_new();
	size_t n;
	char *s;

	capability_rewrite(policy, list, strlen(list), out);
	n = evbuffer_get_length(out);
	s = malloc(n + 1);
	evbuffer_remove(out, s, n);
	s[n] = '\0';
	evbuffer_free(out);
	return s;
}

Test(capability, learn)
{
	struct upstream_caps c;
	const char *list = "IMAP4rev1 literal+ UIDPLUS IDLE SASL-IR STARTTLS "
	    "LOGINDISABLED AUTH=PLAIN APPENDLIMIT=35651584 MULTIAPPEND";

	capability_learn(&c, list, strlen(list));
	cr_assert(c.known && c.literal_plus && c.uidplus && c.idle && c.sasl_ir);
	cr_assert(c.starttls && c.logindisabled && c.auth_plain && c.multiappend);
	cr_assert(!c.literal_minus);
	cr_assert_eq(c.appendlimit, 35651584);
	capability_learn(&c, "IMAP4rev1 LITERAL- APPENDLIMIT", 30);
	cr_assert(c.literal_minus && !c.literal_plus && !c.uidplus);
	cr_assert_eq(c.appendlimit, 0, "APPENDLIMIT without a value");
}

Test(capability, nonsync_ok)
{
	struct upstream_caps c;

	capability_learn(&c, "LITERAL-", 8);
	cr_assert(capability_nonsync_ok(&c, 4096));
	cr_assert(!capability_nonsync_ok(&c, 4097));
	capability_learn(&c, "LITERAL+", 8);
	cr_assert(capability_nonsync_ok(&c, 1ULL << 40));
	capability_learn(&c, "IMAP4rev1", 9);
	cr_assert(!capability_nonsync_ok(&c, 1));
}

Test(capability, rewrite_hides_and_adds)
{
	struct capability_policy policy = { .multiappend = true, .appendlimit = 1000 };
	char *s = rewrite(&policy, "IMAP4rev1 COMPRESS=DEFLATE  STARTTLS LITERAL- CATENATE "
	    "UTF8=ACCEPT APPENDLIMIT=5000 X-KEEP AUTH=PLAIN");

	cr_assert_str_eq(s, "IMAP4rev1 X-KEEP AUTH=PLAIN LITERAL+ MULTIAPPEND APPENDLIMIT=1000");
	free(s);
	memset(&policy, 0, sizeof(policy));
	s = rewrite(&policy, "");
	cr_assert_str_eq(s, "LITERAL+");
	free(s);
}

Test(capability, rewrite_before_tls)
{
	struct capability_policy policy = { .starttls = true, .logindisabled = true };
	char *s = rewrite(&policy, "IMAP4rev1 AUTH=PLAIN AUTH=LOGIN AUTH=XOAUTH2 "
	    "AUTH=OAUTHBEARER AUTH=SCRAM-SHA-256 SASL-IR");

	cr_assert_str_eq(s, "IMAP4rev1 AUTH=SCRAM-SHA-256 SASL-IR STARTTLS LOGINDISABLED LITERAL+");
	free(s);
	cr_assert(capability_mechanism_in_clear("plain", 5));
	cr_assert(!capability_mechanism_in_clear("SCRAM-SHA-1", 11));
}

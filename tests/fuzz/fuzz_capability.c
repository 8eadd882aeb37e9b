/*
 * fuzz_capability.c — capability_learn and capability_rewrite on any list.
 *
 * Input: one policy byte (bit 0 MULTIAPPEND, bit 1 STARTTLS, bit 2
 * LOGINDISABLED, bit 3 an APPENDLIMIT from the next 8 bytes), then the
 * upstream's list.  What the client is told must hold what the proxy
 * promises (README, "What the client sees"): hidden capabilities only as
 * the proxy adds them, LITERAL+ exactly once, MULTIAPPEND and APPENDLIMIT
 * exactly as the policy says, no secret-sending AUTH= before TLS, clean
 * spacing, and nothing the upstream did not say except what the policy
 * adds; nothing the upstream said that is not hidden is lost.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "capability.h"
#include "fuzz.h"

struct atom {
	const char *s;
	size_t len;
};

static char
upper(char c)
{
	return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

static bool
same(const struct atom *a, const char *word)
{
	size_t i;

	if (a->len != strlen(word))
		return false;
	for (i = 0; i < a->len; i++)
		if (upper(a->s[i]) != word[i])
			return false;
	return true;
}

static bool
starts(const struct atom *a, const char *prefix)
{
	struct atom head = { a->s, strlen(prefix) };

	return a->len >= head.len && same(&head, prefix);
}

/* The README's list of what the client never gets from the upstream. */
static bool
hidden(const struct atom *a)
{
	return starts(a, "COMPRESS=") || same(a, "STARTTLS") ||
	    same(a, "LOGINDISABLED") || same(a, "LITERAL+") || same(a, "LITERAL-") ||
	    same(a, "MULTIAPPEND") || same(a, "APPENDLIMIT") ||
	    starts(a, "APPENDLIMIT=") || same(a, "CATENATE") || starts(a, "UTF8=");
}

static bool
secret_mechanism(const struct atom *a)
{
	return same(a, "AUTH=PLAIN") || same(a, "AUTH=LOGIN") ||
	    same(a, "AUTH=XOAUTH2") || same(a, "AUTH=OAUTHBEARER");
}

/* Splits s at spaces; empty atoms are kept when keep_empty (to find them). */
static size_t
split(const char *s, size_t len, struct atom *out, size_t max, bool keep_empty)
{
	size_t i = 0, n = 0;

	while (i <= len) {
		size_t j = i;

		while (j < len && s[j] != ' ')
			j++;
		if ((j > i || keep_empty) && n < max) {
			out[n].s = s + i;
			out[n].len = j - i;
			n++;
		}
		i = j + 1;
	}
	return n;
}

static size_t
count(const struct atom *a, size_t n, const char *word)
{
	size_t i, c = 0;

	for (i = 0; i < n; i++)
		c += same(&a[i], word);
	return c;
}

static bool
exact(const struct atom *a, const char *word)
{
	return a->len == strlen(word) && memcmp(a->s, word, a->len) == 0;
}

static bool
listed(const struct atom *a, const struct atom *list, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (list[i].len == a->len && memcmp(list[i].s, a->s, a->len) == 0)
			return true;
	return false;
}

/* What learning must find, read here independently. */
static void
check_learned(const struct upstream_caps *c, const struct atom *in, size_t nin)
{
	uint64_t limit = 0;
	size_t i;

	CHECK(c->known);
	CHECK(c->literal_plus == (count(in, nin, "LITERAL+") > 0));
	CHECK(c->literal_minus == (count(in, nin, "LITERAL-") > 0));
	CHECK(c->uidplus == (count(in, nin, "UIDPLUS") > 0));
	CHECK(c->multiappend == (count(in, nin, "MULTIAPPEND") > 0));
	CHECK(c->idle == (count(in, nin, "IDLE") > 0));
	CHECK(c->sasl_ir == (count(in, nin, "SASL-IR") > 0));
	CHECK(c->starttls == (count(in, nin, "STARTTLS") > 0));
	CHECK(c->logindisabled == (count(in, nin, "LOGINDISABLED") > 0));
	CHECK(c->auth_plain == (count(in, nin, "AUTH=PLAIN") > 0));
	for (i = 0; i < nin; i++) {
		const char *v = in[i].s + 12;
		size_t k, vlen = in[i].len - 12;
		uint64_t n = 0;

		if (!starts(&in[i], "APPENDLIMIT="))
			continue;
		/* the last one counts; a bad value means none */
		for (k = 0; k < vlen && v[k] >= '0' && v[k] <= '9'; k++)
			;
		if (vlen == 0 || k != vlen || vlen > 19) {
			limit = 0;
			continue;
		}
		for (k = 0; k < vlen; k++)
			n = n * 10 + (uint64_t)(v[k] - '0');
		limit = n;
	}
	CHECK(c->appendlimit == limit);
	CHECK(capability_nonsync_ok(c, 0) == (c->literal_plus || c->literal_minus));
	CHECK(capability_nonsync_ok(c, LITERAL_MINUS_MAX) == (c->literal_plus || c->literal_minus));
	CHECK(capability_nonsync_ok(c, LITERAL_MINUS_MAX + 1) == c->literal_plus);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct capability_policy policy;
	struct upstream_caps caps;
	struct evbuffer *ev;
	struct atom *in, *out;
	const char *list;
	char *s, limit[40];
	size_t len, nin, nout, i, n;

	if (size < 1)
		return 0;
	memset(&policy, 0, sizeof(policy));
	policy.multiappend = data[0] & 1;
	policy.starttls = (data[0] & 2) != 0;
	policy.logindisabled = (data[0] & 4) != 0;
	list = (const char *)data + 1;
	len = size - 1;
	if ((data[0] & 8) && len >= 8) {
		memcpy(&policy.appendlimit, list, 8);
		list += 8;
		len -= 8;
	}

	in = calloc(len + 1, sizeof(*in));
	out = calloc(len + 16, sizeof(*out));
	CHECK(in != NULL && out != NULL);
	nin = split(list, len, in, len + 1, false);
	capability_learn(&caps, list, len);
	check_learned(&caps, in, nin);

	ev = evbuffer_new();
	CHECK(ev != NULL);
	capability_rewrite(&policy, list, len, ev);
	n = evbuffer_get_length(ev);
	s = (char *)evbuffer_pullup(ev, -1);
	CHECK(n > 0 && s != NULL);
	CHECK(s[0] != ' ' && s[n - 1] != ' ');
	CHECK(memmem(s, n, "  ", 2) == NULL);
	nout = split(s, n, out, len + 16, true);
	for (i = 0; i < nout; i++)
		CHECK(out[i].len > 0);

	/* exactly what the policy adds */
	snprintf(limit, sizeof(limit), "APPENDLIMIT=%llu",
	    (unsigned long long)policy.appendlimit);
	CHECK(count(out, nout, "LITERAL+") == 1);
	CHECK(count(out, nout, "MULTIAPPEND") == (size_t)policy.multiappend);
	CHECK(count(out, nout, "STARTTLS") == (size_t)policy.starttls);
	CHECK(count(out, nout, "LOGINDISABLED") == (size_t)policy.logindisabled);
	for (i = 0, n = 0; i < nout; i++) {
		if (same(&out[i], "APPENDLIMIT") || starts(&out[i], "APPENDLIMIT=")) {
			CHECK(policy.appendlimit > 0 && exact(&out[i], limit));
			n++;
		}
	}
	CHECK(n == (size_t)(policy.appendlimit > 0));

	/* every atom is the upstream's or the proxy's; hidden ones only the
	 * proxy's own, in its own spelling */
	for (i = 0; i < nout; i++) {
		bool added = exact(&out[i], "LITERAL+") ||
		    (policy.multiappend && exact(&out[i], "MULTIAPPEND")) ||
		    (policy.starttls && exact(&out[i], "STARTTLS")) ||
		    (policy.logindisabled && exact(&out[i], "LOGINDISABLED")) ||
		    (policy.appendlimit > 0 && exact(&out[i], limit));

		CHECK(added || (listed(&out[i], in, nin) && !hidden(&out[i])));
		if (policy.logindisabled)
			CHECK(!secret_mechanism(&out[i]));
	}
	/* and nothing of the upstream's is lost that is not hidden */
	for (i = 0; i < nin; i++)
		if (!hidden(&in[i]) && !(policy.logindisabled && secret_mechanism(&in[i])))
			CHECK(listed(&in[i], out, nout));

	evbuffer_free(ev);
	free(in);
	free(out);
	return 0;
}

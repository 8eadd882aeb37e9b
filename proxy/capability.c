/*
 * capability.c — reading the upstream's capabilities and rewriting the list
 * the client sees, wherever it appears (greeting, CAPABILITY response,
 * [CAPABILITY] code of a tagged OK: the relay calls us for all three).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "capability.h"

/*
 * Removed from the client's view:
 * COMPRESS=*      the proxy must keep reading the stream;
 * STARTTLS, LOGINDISABLED   TLS towards the client is the proxy's own;
 * LITERAL+, LITERAL-, MULTIAPPEND, APPENDLIMIT   re-added by the proxy
 *                 with what it implements itself;
 * CATENATE, UTF8=ACCEPT, UTF8=ONLY   they change APPEND's syntax, and every
 *                 APPEND goes through the proxy's spool.
 * A trailing '*' matches any suffix.
 */
static const char *const hidden[] = {
	"COMPRESS=*", "STARTTLS", "LOGINDISABLED", "LITERAL+", "LITERAL-",
	"MULTIAPPEND", "APPENDLIMIT", "APPENDLIMIT=*", "CATENATE", "UTF8=*",
};

static bool
matches(const char *cap, size_t len, const char *pattern)
{
	size_t plen = strlen(pattern);

	if (plen > 0 && pattern[plen - 1] == '*')
		return len >= plen - 1 && strncasecmp(cap, pattern, plen - 1) == 0;
	return len == plen && strncasecmp(cap, pattern, len) == 0;
}

static bool
is_hidden(const char *cap, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++)
		if (matches(cap, len, hidden[i]))
			return true;
	return false;
}

/* Calls fn for each space-separated atom of list. */
static void
each_cap(const char *list, size_t len,
    void (*fn)(const char *cap, size_t caplen, void *arg), void *arg)
{
	size_t i = 0;

	while (i < len) {
		size_t j;

		while (i < len && list[i] == ' ')
			i++;
		for (j = i; j < len && list[j] != ' '; j++)
			;
		if (j > i)
			fn(list + i, j - i, arg);
		i = j;
	}
}

static uint64_t
parse_limit(const char *s, size_t len)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0 || len > 19)
		return 0;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	return v;
}

static void
learn_one(const char *cap, size_t len, void *arg)
{
	struct upstream_caps *c = arg;

	if (matches(cap, len, "LITERAL+"))
		c->literal_plus = true;
	else if (matches(cap, len, "LITERAL-"))
		c->literal_minus = true;
	else if (matches(cap, len, "UIDPLUS"))
		c->uidplus = true;
	else if (matches(cap, len, "MULTIAPPEND"))
		c->multiappend = true;
	else if (matches(cap, len, "IDLE"))
		c->idle = true;
	else if (matches(cap, len, "SASL-IR"))
		c->sasl_ir = true;
	else if (matches(cap, len, "STARTTLS"))
		c->starttls = true;
	else if (matches(cap, len, "LOGINDISABLED"))
		c->logindisabled = true;
	else if (matches(cap, len, "AUTH=PLAIN"))
		c->auth_plain = true;
	else if (matches(cap, len, "NAMESPACE"))
		c->namespace = true;
	else if (matches(cap, len, "APPENDLIMIT=*"))
		c->appendlimit = parse_limit(cap + 12, len - 12);
}

void
capability_learn(struct upstream_caps *c, const char *list, size_t len)
{
	memset(c, 0, sizeof(*c));
	c->known = true;
	each_cap(list, len, learn_one, c);
}

struct rewrite {
	struct evbuffer *out;
	bool first;
	const struct capability_policy *policy;
};

static void
emit(struct rewrite *r, const char *cap, size_t len)
{
	if (!r->first)
		evbuffer_add(r->out, " ", 1);
	evbuffer_add(r->out, cap, len);
	r->first = false;
}

static const char *const clear_mechanisms[] = {
	"PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER",
};

bool
capability_mechanism_in_clear(const char *mech, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof(clear_mechanisms) / sizeof(clear_mechanisms[0]); i++)
		if (matches(mech, len, clear_mechanisms[i]))
			return true;
	return false;
}

static void
rewrite_one(const char *cap, size_t len, void *arg)
{
	struct rewrite *r = arg;

	if (is_hidden(cap, len))
		return;
	if (r->policy->logindisabled && len > 5 && strncasecmp(cap, "AUTH=", 5) == 0 &&
	    capability_mechanism_in_clear(cap + 5, len - 5))
		return;
	emit(r, cap, len);
}

void
capability_rewrite(const struct capability_policy *policy, const char *list,
    size_t len, struct evbuffer *out)
{
	struct rewrite r = { out, true, policy };

	each_cap(list, len, rewrite_one, &r);
	if (policy->starttls)
		emit(&r, "STARTTLS", 8);
	if (policy->logindisabled)
		emit(&r, "LOGINDISABLED", 13);
	/* every client may send {n+}: the relay turns it into {n} when the
	 * upstream needs that */
	emit(&r, "LITERAL+", 8);
	if (policy->multiappend)
		emit(&r, "MULTIAPPEND", 11);
	if (policy->appendlimit > 0) {
		char buf[40];
		int n = snprintf(buf, sizeof(buf), "APPENDLIMIT=%llu",
		    (unsigned long long)policy->appendlimit);

		emit(&r, buf, (size_t)n);
	}
}

bool
capability_nonsync_ok(const struct upstream_caps *c, uint64_t size)
{
	return c->literal_plus || (c->literal_minus && size <= LITERAL_MINUS_MAX);
}

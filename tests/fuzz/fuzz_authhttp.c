/*
 * fuzz_authhttp.c — authhttp_parse on any answer, read two ways: through
 * evhttp's header list and authhttp_header (what a query does), and
 * through a plain table that hands over any bytes but NUL, line breaks
 * included (what evhttp would never pass on).
 *
 * Input: one byte picks the HTTP status code, then "Name: value" lines
 * separated by "\n" (a line without ":" is a name with an empty value).
 * Whatever the answer, the result keeps authhttp.h's promises: one of the
 * three statuses; strings ended within their arrays; OK only in a 2xx
 * answer whose Auth-Status is OK, with an IP address and a port 1-65535 in
 * decimal, and the replacement login exactly as sent; a refusal with a
 * text, the one sent (or the default for an empty one), no line break in
 * it; UNAVAILABLE with a reason and nothing else, the password's bytes
 * zero; Auth-Wait within its bound and only where it means something.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "authhttp.h"
#include "fuzz.h"

#define MAX_HEADERS 64

static const int codes[] = {
	200, 200, 200, 200, 204, 299, 0, -1, 100, 199, 300, 302, 401, 403, 500, 503,
};

struct table {
	char *name[MAX_HEADERS], *value[MAX_HEADERS];
	size_t n;
};

/* Last one wins, names in any case. */
static const char *
table_header(void *ctx, const char *name)
{
	struct table *t = ctx;
	const char *v = NULL;

	for (size_t i = 0; i < t->n; i++)
		if (strcasecmp(t->name[i], name) == 0)
			v = t->value[i];
	return v;
}

static bool
terminated(const char *s, size_t size)
{
	return memchr(s, '\0', size) != NULL;
}

static bool
is_port(const char *s)
{
	long n = 0;

	if (s[0] < '1' || s[0] > '9' || strlen(s) > 5)
		return false;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return false;
		n = n * 10 + (*s - '0');
	}
	return n >= 1 && n <= 65535;
}

static bool
is_address(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static bool
same(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* The promises, against what lookup tells of the answer. */
static void
check(int code, const struct authhttp_answer *a,
    const char *(*lookup)(void *, const char *), void *ctx)
{
	const char *status = lookup(ctx, "Auth-Status");
	const char *ecode = lookup(ctx, "Auth-Error-Code");

	CHECK(terminated(a->host, sizeof a->host));
	CHECK(terminated(a->port, sizeof a->port));
	CHECK(terminated(a->error, sizeof a->error));
	CHECK(terminated(a->error_code, sizeof a->error_code));
	CHECK(terminated(a->user, sizeof a->user));
	CHECK(terminated(a->pass, sizeof a->pass));
	CHECK(!a->cached);
	CHECK(a->wait <= AUTHHTTP_WAIT_MAX);
	CHECK(!a->again || a->status == AUTHHTTP_UNAVAILABLE);
	CHECK(a->wait == 0 || a->status == AUTHHTTP_REFUSED || a->again);

	switch (a->status) {
	case AUTHHTTP_OK:
		CHECK(code >= 200 && code <= 299);
		CHECK(same(status, "OK"));
		CHECK(a->host[0] != '\0' && is_address(a->host));
		CHECK(same(a->host, lookup(ctx, "Auth-Server")));
		CHECK(is_port(a->port));
		CHECK(a->error[0] == '\0');
		CHECK(a->has_user == (lookup(ctx, "Auth-User") != NULL));
		CHECK(a->has_pass == (lookup(ctx, "Auth-Pass") != NULL));
		CHECK(!a->has_user || (a->user[0] != '\0' &&
		    same(a->user, lookup(ctx, "Auth-User"))));
		CHECK(!a->has_pass || same(a->pass, lookup(ctx, "Auth-Pass")));
		CHECK(same(a->error_code, ecode != NULL ? ecode : ""));
		break;
	case AUTHHTTP_REFUSED:
		CHECK(status != NULL && !same(status, "OK") && !same(status, "WAIT"));
		CHECK(a->error[0] != '\0');
		CHECK(same(a->error, status[0] != '\0' ? status :
		    "Authentication failed"));
		CHECK(strpbrk(a->error, "\r\n") == NULL);
		CHECK(same(a->error_code, ecode != NULL ? ecode : ""));
		CHECK(a->host[0] == '\0' && a->port[0] == '\0');
		CHECK(!a->has_user && !a->has_pass && a->pass[0] == '\0');
		break;
	case AUTHHTTP_UNAVAILABLE:
		CHECK(a->error[0] != '\0');
		CHECK(a->host[0] == '\0' && a->port[0] == '\0');
		CHECK(a->error_code[0] == '\0');
		CHECK(!a->has_user && !a->has_pass);
		for (size_t i = 0; i < sizeof a->pass; i++)
			CHECK(a->pass[i] == '\0');
		CHECK(!a->again || (same(status, "WAIT") && code >= 200 &&
		    code <= 299));
		break;
	default:
		fuzz_fail("a status outside the three", __FILE__, __LINE__);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct table t = { .n = 0 };
	struct evkeyvalq list;
	struct authhttp_answer a;
	char *text, *line, *next;
	int code;

	if (size < 1)
		return 0;
	code = codes[data[0] % (sizeof codes / sizeof codes[0])];
	text = malloc(size);
	CHECK(text != NULL);
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';	/* a NUL inside ends the text early */

	TAILQ_INIT(&list);
	for (line = text; line != NULL && t.n < MAX_HEADERS; line = next) {
		char *colon, *value;

		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if ((colon = strchr(line, ':')) != NULL) {
			*colon = '\0';
			for (value = colon + 1; *value == ' '; value++)
				;
		} else {
			value = line + strlen(line);
		}
		t.name[t.n] = line;
		t.value[t.n++] = value;
		/* evhttp refuses some (a CR or LF in the name, say): skipped */
		(void)evhttp_add_header(&list, line, value);
	}

	authhttp_parse(code, table_header, &t, &a);
	check(code, &a, table_header, &t);
	authhttp_parse(code, authhttp_header, &list, &a);
	check(code, &a, authhttp_header, &list);

	evhttp_clear_headers(&list);
	free(text);
	return 0;
}

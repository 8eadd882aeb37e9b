/*
 * fuzz_routemap.c — routemap_load_stream on any bytes (through fmemopen),
 * against a reference reading of the lines written here.
 *
 * A map that loads has one entry per line with two fields, and every one
 * of them is found again: a user's key by itself in any ASCII case, a
 * domain's by a user no key can name, the default by such a name without
 * '@'; what any name finds is a target of the file and a valid one (a
 * backend name, or an address whose pieces are checked here).  A map that
 * fails names the file, a line that exists and, when the reference sees a
 * line of the wrong shape, a line no later than that one (the first
 * mistake is the one reported); a line with one field or three cannot
 * load.
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "routemap.h"

#define NAME "fuzz.map"

struct ref_entry {
	const char *key;
	const char *target;
};

struct ref {
	char *text;		/* the input, fields NUL-terminated in place */
	struct ref_entry *e;
	size_t n;
	unsigned lines;
	unsigned bad_line;	/* the first line of the wrong shape, 0 if none */
	const char *fallback;	/* the target of "*" */
};

static bool
blank(char c)
{
	return c == ' ' || c == '\t';
}

/* The lines as routemap.h describes them: fields, comments, CRLF.
 * r->text holds size + 1 bytes, r->e room for size / 2 + 1 entries. */
static void
ref_read(struct ref *r, size_t size)
{
	size_t pos = 0;

	while (pos < size) {
		char *s = r->text + pos, *nl = memchr(s, '\n', size - pos);
		size_t len = nl != NULL ? (size_t)(nl - s) : size - pos, i = 0;
		size_t start[3], end[3], nf = 0;

		pos += len + (nl != NULL);
		r->lines++;
		if (len > 0 && s[len - 1] == '\r')
			len--;
		while (nf < 3) {
			while (i < len && blank(s[i]))
				i++;
			if (i == len || s[i] == '#')
				break;
			start[nf] = i;
			while (i < len && !blank(s[i]))
				i++;
			end[nf++] = i;
		}
		if (len > 1024 || nf == 1 || nf == 3) {
			if (r->bad_line == 0)
				r->bad_line = r->lines;
			continue;
		}
		if (nf == 0)
			continue;
		/* the byte after a field is a blank, CR, LF or the spare */
		s[end[0]] = '\0';
		s[end[1]] = '\0';
		r->e[r->n].key = s + start[0];
		r->e[r->n].target = s + start[1];
		r->n++;
	}
}

static bool
name_chars(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "0123456789._-", s[i]) == NULL || s[i] == '\0')
			return false;
	return true;
}

/* A target the file may hold, checked without routemap.c's own code
 * except for the split into host and port. */
static void
check_target(const char *t)
{
	char host[ROUTEMAP_HOST_SIZE], port[ROUTEMAP_PORT_SIZE], addr[256];
	struct in6_addr a6;
	size_t len = strlen(t), alen, i;
	unsigned long n = 0;

	CHECK(len > 0);
	if (strchr(t, ':') == NULL) {
		CHECK(len <= 63 && name_chars(t, len));
		CHECK(!routemap_target_address(t, host, sizeof(host), port,
		    sizeof(port)));
		return;
	}
	CHECK(routemap_target_address(t, host, sizeof(host), port, sizeof(port)));
	/* the pieces put back together are the target */
	if (t[0] == '[') {
		CHECK(strlen(host) + strlen(port) + 3 == len);
		CHECK(strncmp(t + 1, host, strlen(host)) == 0);
		CHECK(strncmp(t + strlen(host) + 1, "]:", 2) == 0);
		alen = strcspn(host, "%");
		CHECK(alen > 0 && alen < sizeof(addr));
		memcpy(addr, host, alen);
		addr[alen] = '\0';
		CHECK(inet_pton(AF_INET6, addr, &a6) == 1);
		if (host[alen] == '%')
			CHECK(host[alen + 1] != '\0' &&
			    name_chars(host + alen + 1, strlen(host + alen + 1)));
	} else {
		CHECK(strlen(host) + strlen(port) + 1 == len);
		CHECK(strncmp(t, host, strlen(host)) == 0 && t[strlen(host)] == ':');
		CHECK(host[0] != '\0' && name_chars(host, strlen(host)));
	}
	CHECK(strcmp(t + len - strlen(port), port) == 0);
	CHECK(port[0] >= '1' && port[0] <= '9' && strlen(port) <= 5);
	for (i = 0; port[i] != '\0'; i++) {
		CHECK(port[i] >= '0' && port[i] <= '9');
		n = n * 10 + (unsigned long)(port[i] - '0');
	}
	CHECK(n >= 1 && n <= 65535);
}

/* What a name finds: nothing only without a default, else a target of
 * the file (the very string of the map, stable across lookups). */
static const char *
check_lookup(const struct routemap *m, const struct ref *r, const char *user)
{
	const char *t = routemap_lookup(m, user);
	size_t i;

	if (t == NULL) {
		CHECK(r->fallback == NULL);
		return NULL;
	}
	check_target(t);
	for (i = 0; i < r->n; i++)
		if (strcmp(r->e[i].target, t) == 0)
			break;
	CHECK(i < r->n);
	CHECK(routemap_lookup(m, user) == t);
	return t;
}

static void
check_found(const struct routemap *m, const struct ref *r, const char *user,
    const char *want)
{
	const char *t = check_lookup(m, r, user);

	CHECK(t != NULL && strcmp(t, want) == 0);
}

/* s with its ASCII letters' case swapped. */
static void
swap_case(char *out, const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		out[i] = s[i] >= 'a' && s[i] <= 'z' ? (char)(s[i] - 32) :
		    s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] + 32) : s[i];
	out[i] = '\0';
}

static void
check_loaded(const struct routemap *m, struct ref *r)
{
	char name[1200];
	size_t i;

	CHECK(routemap_entries(m) == r->n);
	for (i = 0; i < r->n; i++)
		if (strcmp(r->e[i].key, "*") == 0)
			r->fallback = r->e[i].target;
	/* no key holds a control byte: \x01 names nobody */
	if (r->fallback != NULL) {
		check_found(m, r, "\x01", r->fallback);
		check_found(m, r, "", r->fallback);
	} else {
		CHECK(routemap_lookup(m, "\x01") == NULL);
		CHECK(routemap_lookup(m, "\x01@\x01") == NULL);
	}
	for (i = 0; i < r->n; i++) {
		const char *key = r->e[i].key, *target = r->e[i].target;

		check_target(target);
		if (strcmp(key, "*") == 0)
			continue;
		if (key[0] == '@') {
			snprintf(name, sizeof(name), "\x01%s", key);
			check_found(m, r, name, target);
			swap_case(name + 1, key);
			check_found(m, r, name, target);
			snprintf(name, sizeof(name), "a@b%s", key);
			check_found(m, r, name + 3, target);
			check_lookup(m, r, name);
			continue;
		}
		check_found(m, r, key, target);
		swap_case(name, key);
		check_found(m, r, name, target);
		/* names near the key: found or not, never anything odd */
		snprintf(name, sizeof(name), "%sx", key);
		check_lookup(m, r, name);
		snprintf(name, sizeof(name), "%.*s", (int)(strlen(key) - 1), key);
		check_lookup(m, r, name);
		snprintf(name, sizeof(name), "\xc3%s@", key);
		check_lookup(m, r, name);
	}
}

/* "fuzz.map:LINE: reason": a stream in memory is always read whole, so
 * never "fuzz.map: reason". */
static void
check_refused(const char *err, const struct ref *r)
{
	const char *p = err + strlen(NAME) + 1;
	unsigned long line, first;
	char *end;

	CHECK(strncmp(err, NAME ":", strlen(NAME) + 1) == 0);
	CHECK(strlen(err) > strlen(NAME) + 2);
	CHECK(*p != ' ');
	line = strtoul(p, &end, 10);
	CHECK(end != p && strncmp(end, ": ", 2) == 0);
	CHECK(line >= 1 && line <= r->lines);
	CHECK(r->bad_line == 0 || line <= r->bad_line);
	if ((p = strstr(end, "(first on line ")) != NULL) {
		first = strtoul(p + 15, &end, 10);
		CHECK(first >= 1 && first < line && *end == ')');
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ref r = { 0 };
	struct routemap *m;
	char err[512], *copy;
	FILE *f;

	if (size == 0)
		return 0;	/* fmemopen needs a buffer */
	if ((copy = malloc(size)) == NULL || (r.text = malloc(size + 1)) == NULL ||
	    (r.e = calloc(size / 2 + 1, sizeof(*r.e))) == NULL) {
		free(copy);
		free(r.text);
		return 0;
	}
	memcpy(copy, data, size);
	f = fmemopen(copy, size, "r");
	CHECK(f != NULL);
	memset(err, 'x', sizeof(err));
	m = routemap_load_stream(f, NAME, err, sizeof(err));
	fclose(f);
	free(copy);
	CHECK(strnlen(err, sizeof(err)) < sizeof(err));
	memcpy(r.text, data, size);
	r.text[size] = '\0';
	ref_read(&r, size);
	if (m != NULL) {
		CHECK(err[0] == '\0');
		CHECK(r.bad_line == 0);
		check_loaded(m, &r);
		routemap_free(m);
	} else {
		check_refused(err, &r);
	}
	free(r.text);
	free(r.e);
	return 0;
}

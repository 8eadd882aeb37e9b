/*
 * routemap.h — the static route map: which upstream a login name goes to.
 * A text file an administrator writes or generates, loaded whole and
 * checked at once, then asked with a binary search.  No global state: a
 * reload loads a second map and frees the first.
 *
 * The file, one entry per line:
 *
 *	# comment
 *	alice@example.com	backend-2	# the user's own entry
 *	@example.com		backend-1	# every user in the domain
 *	postmaster		[2001:db8::7]:143
 *	*			imap.example.net:143	# the default
 *
 * KEY and TARGET are separated by spaces or tabs.  "#" starts a comment
 * at the start of a line or after whitespace (elsewhere it is part of the
 * field); blank lines are ignored; a CR before the LF is dropped.  A line
 * holds at most 1024 bytes (the line ending not counted), the file at
 * most 256 MiB.
 *
 * KEY: "user@example.com" or "user" — one login name, exactly; "@example.com"
 * — a domain: every login name whose part after its last '@' is
 * "example.com"; "*" — the default.  At most 255 bytes, no control bytes;
 * '*' only alone; a domain holds one '@' and something after it.  Bytes
 * above 0x7f are taken as they are.  ASCII case is ignored.
 *
 * TARGET: a backend name ([A-Za-z0-9_.-], 1 to 63 bytes) or an address,
 * "HOST:PORT" (HOST of [A-Za-z0-9_.-]) or "[IPV6]:PORT" (a "%zone" allowed),
 * HOST at most 255 bytes, PORT from 1 to 65535 without leading zeros.
 * Kept as written.
 *
 * The first mistake in the file refuses the whole map, with
 * "PATH:LINE: reason" (a key given twice names the line that gave it
 * first), or "PATH: reason" when the file cannot be read at all.
 */
#ifndef MAPPEND_ROUTEMAP_H
#define MAPPEND_ROUTEMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Buffers that hold any host and port routemap_target_address gives. */
#define ROUTEMAP_HOST_SIZE 256
#define ROUTEMAP_PORT_SIZE 6

struct routemap;

/* The map in the file at path; NULL with err set ("PATH:LINE: reason" or
 * "PATH: reason") when it cannot be used.  err may be NULL. */
struct routemap *routemap_load(const char *path, char *err, size_t errlen);

/* The same from an open stream, read to its end; name is what errors call
 * it.  The stream is not closed. */
struct routemap *routemap_load_stream(FILE *f, const char *name, char *err,
    size_t errlen);

/* NULL is fine. */
void routemap_free(struct routemap *m);

/* The target for a login name: the user's own entry, else its domain's
 * (the part after the LAST '@'), else the default; NULL when none matches.
 * Any string may be asked (empty, 8-bit, long).  The returned string lives
 * as long as the map. */
const char *routemap_lookup(const struct routemap *m, const char *user);

/* Entries in the map, the default included; 0 for NULL. */
size_t routemap_entries(const struct routemap *m);

/* True when target is an address (HOST:PORT or [IPV6]:PORT, as the file
 * allows) rather than a backend name: host (without brackets) and port are
 * set.  False for a backend name, for anything that is not a valid
 * address and when host or port does not fit; they are then left alone. */
bool routemap_target_address(const char *target, char *host, size_t hostlen,
    char *port, size_t portlen);

#endif

/*
 * relay.h — the two pumps of a session: client commands to the upstream,
 * upstream responses to the client, framed by parser.h's framer.  The
 * relay moves bytes; commands that own the client's input (command.h) and
 * the response handler (response.h) decide what the bytes mean.
 */
#ifndef MAPPEND_RELAY_H
#define MAPPEND_RELAY_H

#include <stdbool.h>
#include <stddef.h>

struct command_entry;
struct config;
struct evbuffer;
struct imap_frame;
struct imap_framer;
struct pending;
struct session;
struct relay;

/* Reasons for the next client command to wait (several may hold at once). */
#define RELAY_HOLD_CAPABILITY	0x1	/* the proxy asks the upstream's capabilities */
#define RELAY_HOLD_APPEND	0x2	/* an APPEND waits for its turn or is replayed */

/* "+" from the upstream for an owner: true to pass the line on to the client. */
typedef bool (*relay_plus_cb)(struct session *, void *arg);

struct relay *relay_new(struct session *);
void relay_free(struct relay *);

/* Read and relay what the client sent / what the upstream sent. */
void relay_client_input(struct session *);
void relay_upstream_input(struct session *);
/* n bytes of the upstream's current literal went to the client outside the
 * buffers (moved by the kernel): the framer counts them. */
void relay_upstream_spliced(struct session *, size_t n);
/* The client's connection starts over (STARTTLS): nothing of it is kept. */
void relay_client_restart(struct session *);
/* A new upstream connection: its responses are read from a line start. */
void relay_upstream_restart(struct session *);
/* The client's command line is bad (f is IMAP_FRAME_BAD of framer fr): BAD,
 * tagged when the tag can be read, or the session closes when the client
 * cannot be kept in step. */
void relay_client_syntax_error(struct session *, struct imap_framer *fr,
    struct evbuffer *in, const struct imap_frame *f);
/* A segment of a command answered without the upstream: dropped, and its
 * literal (skipped as it comes when {n+}; a synchronizing one never comes,
 * no "+" being sent).  True when the command is over. */
bool relay_discard_segment(struct imap_framer *fr, struct evbuffer *in,
    const struct imap_frame *f);

/* Hold new client commands back for a reason, or let them go again. */
void relay_hold(struct session *, unsigned reason, bool on);

/* Input ownership (command.h): the current command's entry releases the
 * input it took (VERDICT_TAKEN); p's next client line is a continuation
 * line relayed as it is; p's client must wait (nothing read) until then. */
void relay_release_input(struct session *);
void relay_expect_line(struct session *, struct pending *);
void relay_wait_input(struct session *, struct pending *);

/* The next "+" from the upstream is fn's (NULL: nobody's any more). */
void relay_expect_plus(struct session *, relay_plus_cb fn, void *arg);
/* No "+" is awaited and no client literal is held: a "+" now would be
 * nobody's, so one the caller waits for cannot be confused. */
bool relay_quiet(const struct session *);

/* A command in flight is gone (answered, or the session ends). */
void relay_forget(struct session *, struct pending *);

#endif

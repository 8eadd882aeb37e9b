/*
 * response.h — what the proxy does with each upstream response: forward
 * it, rewrite the capabilities in it, learn the session's state from the
 * answers to the client's commands, and take the answers to its own.
 */
#ifndef MAPPEND_RESPONSE_H
#define MAPPEND_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

struct imap_segment;
struct pending;
struct response;
struct session;
struct upstream_caps;

struct response *response_new(void);
void response_free(struct response *);

enum response_action {
	RESPONSE_FORWARD,	/* the segment goes to the client as it is */
	RESPONSE_DROP,		/* consumed here (or replaced): dropped, its literal too */
	RESPONSE_CONTINUATION,	/* a "+": the relay knows whose it is */
};

/* One upstream response segment, still in the upstream's input. */
enum response_action response_segment(struct session *, const char *buf,
    size_t len, const struct imap_segment *);
/* The greeting was read before the session began (upstream STARTTLS):
 * greet the client, learn the capabilities anew. */
void response_greeting_read(struct session *, const char *greeting);
/* Capabilities change after login: ask the upstream for them. */
void response_query_capabilities(struct session *);
/* What the upstream offers now. */
const struct upstream_caps *response_caps(const struct session *);
/* The upstream said BYE: the client heard it, no BYE of ours follows. */
bool response_upstream_said_bye(const struct session *);
/* A new upstream connection follows: nothing learnt of the old one holds. */
void response_reset(struct session *);
/* A command in flight is gone. */
void response_forget(struct session *, struct pending *);

#endif

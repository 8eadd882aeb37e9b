/*
 * multiappend.h — APPEND, the reason mappend exists: its entry in the
 * command table, and the few hooks the session's life needs.
 */
#ifndef MAPPEND_MULTIAPPEND_H
#define MAPPEND_MULTIAPPEND_H

#include <stdbool.h>
#include <stdint.h>

struct session;

/* The APPEND entry of the command table. */
extern const struct command_entry multiappend_command;

/* Move the job on: answers arrived, or the upstream can take more. */
void multiappend_kick(struct session *);
/* The client left: true when the job keeps the session alive to finish. */
bool multiappend_client_gone(struct session *);
/* The upstream connection broke: true when the job takes over the end of
 * the session (it cleans up on a new connection first). */
bool multiappend_upstream_gone(struct session *);
void multiappend_free(struct session *);
/* Part of an upload is upstream: the session must not end before the job. */
bool multiappend_busy(const struct session *);
/* An APPEND has been read and is being carried out: its client waits. */
bool multiappend_in_progress(const struct session *);
/* The client's view: the APPENDLIMIT it may use. */
uint64_t multiappend_limit(const struct session *);

#endif

/*
 * recovery.h — resolving at start what the crash journal (journal.h) holds:
 * uploads half-way upstream when the process died.  None of their clients
 * saw OK, so each is removed again, as the master user.
 */
#ifndef MAPPEND_RECOVERY_H
#define MAPPEND_RECOVERY_H

#include <stdio.h>

struct config;
struct proxy;

/* How long start-up waits for recovery before accepting clients anyway
 * (what is left stays in the journal), beyond the longest a rollback may
 * wait for the upstream to settle (ten times rollback_settle): commands
 * a dead process had pipelined (whole APPENDs in the server's socket
 * buffer) are still executed after it died, and are found and undone as
 * they arrive. */
#define RECOVERY_SECONDS 60

/* Resolve every record before clients are accepted (runs the event loop
 * until done).  Without a master user the records stay, with a warning.
 * -1 (logged) when the journal cannot be read. */
int recovery_run(struct proxy *);
/* mappend -R: what is pending, one line per upload. */
int recovery_list(const struct config *, FILE *out);

#endif

/*
 * journal.h — the crash journal of MULTIAPPENDs in progress.
 *
 * Before the first byte of a replay goes upstream, a record of the upload
 * is durable in the spool directory (file and directory fsync'd): the user,
 * the mailbox, its UIDVALIDITY and UIDNEXT before the replay, each
 * message's size and SHA-256, the staging mailbox if any.  UIDs are added
 * as the answers arrive, without fsync (a UID lost in a crash is found
 * again by size and digest).  The record goes when the job is resolved —
 * durably before a tagged OK, so that a crash can never take back an
 * upload the client was told is stored.  A record left by a crash is
 * resolved at the next start (recovery.c).  Never a password.
 */
#ifndef MAPPEND_JOURNAL_H
#define MAPPEND_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rollback.h"

struct journal_record;

/* One upload, as recorded. */
struct journal_entry {
	char *path;			/* the record's file */
	uint64_t session;
	char *user, *mailbox;		/* as the client wrote the mailbox */
	char *upstream;			/* host:port that received the upload */
	char *backend;			/* its settings: a [backend] name, or
					 * NULL for the default upstream's */
	char *staging;			/* no UIDPLUS: the staging mailbox, or NULL */
	uint32_t uidvalidity;		/* of the mailbox; 0 unknown */
	uint32_t uidnext;		/* before the replay; 0 unknown */
	struct upload_msg *msgs;	/* state UPLOAD_SENT, or STORED with a UID */
	size_t nmsgs;
};

/* The journal directory in spool_dir, and the lock that keeps a second
 * process off it; -1 (logged) when another process holds it. */
int journal_init(const char *spool_dir);
/* Release the lock (at exit). */
void journal_close(void);

/* Record an upload before it goes upstream (fsync'd); NULL with errno. */
struct journal_record *journal_begin(const struct journal_entry *);
/* Message index got UID uid (appended, not synced). */
void journal_note_uid(struct journal_record *, size_t index, uint32_t uid);
/* The job is resolved: remove the record; durable: fsync the directory
 * too (before a tagged OK).  -1 with errno when it could not be removed. */
int journal_end(struct journal_record *, bool durable);
/* Forget the record in memory, leave the file for recovery. */
void journal_keep(struct journal_record *);

/* The records in the journal of spool_dir (no lock needed); -1 with errno. */
int journal_scan(const char *spool_dir, struct journal_entry **, size_t *n);
/* Remove a recovered record's file. */
int journal_remove(const char *path);
void journal_entries_free(struct journal_entry *, size_t n);

#endif

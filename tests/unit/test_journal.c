/* test_journal.c — the crash journal: records written whole, read back,
 * removed; a torn UID line; the lock against a second process. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "journal.h"
#include "log.h"

static char dir[64];

static void
setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/mappend-journal.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	log_init("test", LOG_LEVEL_ERROR, false);
	cr_assert_eq(journal_init(dir), 0);
}

static void
teardown(void)
{
	char cmd[128];

	journal_close();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(journal, .init = setup, .fini = teardown);

static struct journal_entry
entry(struct upload_msg *msgs, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		memset(&msgs[i], 0, sizeof(msgs[i]));
		msgs[i].fp.size = 100 + i;
		msgs[i].fp.canon_len = 90 + i;
		msgs[i].fp.lines = 10;
		memset(msgs[i].fp.digest, (int)(0xa0 + i), sizeof(msgs[i].fp.digest));
	}
	return (struct journal_entry){ .session = 42, .user = "us\"er 1",
	    .mailbox = "Sent Items/2026 \xc3\xa9t\xc3\xa9", .upstream = "imap.example:143",
	    .staging = NULL, .uidvalidity = 7, .uidnext = 1000, .msgs = msgs, .nmsgs = n };
}

Test(journal, a_record_is_read_back_with_its_uids)
{
	struct upload_msg msgs[3];
	struct journal_entry e = entry(msgs, 3), *got;
	struct journal_record *r = journal_begin(&e);
	size_t n;

	cr_assert_not_null(r);
	journal_note_uid(r, 0, 1000);
	journal_note_uid(r, 2, 1002);
	cr_assert_eq(journal_scan(dir, &got, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(got[0].user, e.user);
	cr_assert_str_eq(got[0].mailbox, e.mailbox);
	cr_assert_str_eq(got[0].upstream, e.upstream);
	cr_assert_null(got[0].staging);
	cr_assert_null(got[0].backend, "the default upstream's: no name");
	cr_assert_eq(got[0].session, 42);
	cr_assert_eq(got[0].uidvalidity, 7);
	cr_assert_eq(got[0].uidnext, 1000);
	cr_assert_eq(got[0].nmsgs, 3);
	cr_assert_eq(got[0].msgs[0].state, UPLOAD_STORED);
	cr_assert_eq(got[0].msgs[0].uid, 1000);
	cr_assert_eq(got[0].msgs[1].state, UPLOAD_SENT, "no UID: may be stored");
	cr_assert_eq(got[0].msgs[2].uid, 1002);
	cr_assert_eq(got[0].msgs[1].fp.size, 101);
	cr_assert_eq(got[0].msgs[1].fp.canon_len, 91);
	cr_assert_eq(got[0].msgs[1].fp.lines, 10);
	cr_assert(fingerprint_same(&got[0].msgs[2].fp, &msgs[2].fp));
	journal_entries_free(got, n);
	cr_assert_eq(journal_end(r, true), 0);
	cr_assert_eq(journal_scan(dir, &got, &n), 0);
	cr_assert_eq(n, 0, "a resolved upload leaves nothing");
	free(got);
}

/* An upload to a [backend] section's server names it, so that recovery
 * goes there with its settings. */
Test(journal, a_record_names_its_backend)
{
	struct upload_msg msgs[1];
	struct journal_entry e = entry(msgs, 1), *got;
	struct journal_record *r;
	size_t n;

	e.backend = "new cluster\n#2";
	r = journal_begin(&e);
	cr_assert_not_null(r);
	cr_assert_eq(journal_scan(dir, &got, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(got[0].backend, e.backend);
	journal_entries_free(got, n);
	cr_assert_eq(journal_end(r, true), 0);
}

/* A crash in the middle of appending a UID line leaves a torn line: the
 * record is still read, without that UID. */
Test(journal, a_torn_uid_line_is_ignored)
{
	struct upload_msg msgs[2];
	struct journal_entry e = entry(msgs, 2), *got;
	struct journal_record *r = journal_begin(&e);
	char path[256];
	size_t n;
	int fd;

	cr_assert_not_null(r);
	cr_assert_eq(journal_scan(dir, &got, &n), 0);
	snprintf(path, sizeof(path), "%s", got[0].path);
	journal_entries_free(got, n);
	fd = open(path, O_WRONLY | O_APPEND);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "uid 1 5", 7), 7);
	close(fd);
	cr_assert_eq(journal_scan(dir, &got, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(got[0].msgs[1].state, UPLOAD_SENT);
	journal_entries_free(got, n);
	journal_keep(r);
	cr_assert_eq(journal_remove(path), 0);
}

/* A half-written record (a crash before the rename) is never read. */
Test(journal, a_record_is_all_or_nothing)
{
	char path[256];
	struct journal_entry *got;
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/journal/0123456789abcdef.job.tmp", dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "mappend-journal 2\nsession 1\n");
	fclose(f);
	snprintf(path, sizeof(path), "%s/journal/fedcba9876543210.job", dir);
	f = fopen(path, "w");
	fprintf(f, "mappend-journal 2\nsession 1\nuser 61\n");	/* no end */
	fclose(f);
	cr_assert_eq(journal_scan(dir, &got, &n), 0);
	cr_assert_eq(n, 0);
	free(got);
}

Test(journal, a_second_process_is_kept_off)
{
	/* flock locks belong to the open file: a second open is refused as a
	 * second process would be */
	cr_assert_eq(journal_init(dir), -1);
}

/*
 * journal.c — the crash journal (journal.h): one small text file per
 * MULTIAPPEND in progress under SPOOL/journal/, written to a temporary name,
 * fsync'd, renamed into place and the directory fsync'd, so that a record
 * either exists whole or not at all.  Strings (user, mailbox) are written in
 * hex: they may hold any byte but CR, LF and NUL, and the file stays one
 * field per line.  A lock file keeps a second process off the journal.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "journal.h"
#include "log.h"

#define JOURNAL_MAGIC "mappend-journal 2"	/* 2: messages by fingerprint */
#define RECORD_SUFFIX ".job"
#define LINE_MAX_LEN 4096

struct journal_record {
	char *path;
	int fd;		/* open for appending UIDs */
};

static char journal_dir[4200];
static int lock_fd = -1;

static void
dir_path(const char *spool_dir, char *out, size_t len)
{
	snprintf(out, len, "%s/journal", spool_dir);
}

int
journal_init(const char *spool_dir)
{
	char lock[4300], pid[32];
	int fd, n;

	dir_path(spool_dir, journal_dir, sizeof(journal_dir));
	if (mkdir(journal_dir, 0700) != 0 && errno != EEXIST) {
		log_error(0, "journal directory %s: %s", journal_dir, strerror(errno));
		return -1;
	}
	snprintf(lock, sizeof(lock), "%s/mappend.lock", spool_dir);
	if ((fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		log_error(0, "lock file %s: %s", lock, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		n = (int)read(fd, pid, sizeof(pid) - 1);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		log_error(0, "spool directory %s is in use by another mappend (pid %s): "
		    "each instance needs a spool of its own", spool_dir,
		    pid[0] != '\0' ? pid : "?");
		close(fd);
		return -1;
	}
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
		log_warn(0, "cannot write the pid into %s: %s", lock, strerror(errno));
	journal_close();
	lock_fd = fd;
	return 0;
}

void
journal_close(void)
{
	if (lock_fd >= 0)
		close(lock_fd);
	lock_fd = -1;
}

static int
fsync_dir(void)
{
	int fd = open(journal_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r;

	if (fd < 0)
		return -1;
	r = fsync(fd);
	close(fd);
	return r;
}

static void
put_hex(FILE *f, const unsigned char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		fprintf(f, "%02x", s[i]);
}

static void
put_string(FILE *f, const char *key, const char *value)
{
	fprintf(f, "%s ", key);
	put_hex(f, (const unsigned char *)value, strlen(value));
	fputc('\n', f);
}

static int
write_record(FILE *f, const struct journal_entry *e)
{
	size_t i;

	fprintf(f, "%s\nsession %llu\n", JOURNAL_MAGIC, (unsigned long long)e->session);
	put_string(f, "user", e->user);
	put_string(f, "mailbox", e->mailbox);
	put_string(f, "upstream", e->upstream);
	if (e->backend != NULL)
		put_string(f, "backend", e->backend);
	if (e->staging != NULL)
		put_string(f, "staging", e->staging);
	fprintf(f, "uidvalidity %u\nuidnext %u\nmessages %zu\n", e->uidvalidity,
	    e->uidnext, e->nmsgs);
	for (i = 0; i < e->nmsgs; i++) {
		const struct fingerprint *fp = &e->msgs[i].fp;

		fprintf(f, "msg %zu %llu %llu %llu ", i, (unsigned long long)fp->size,
		    (unsigned long long)fp->canon_len, (unsigned long long)fp->lines);
		put_hex(f, fp->digest, FINGERPRINT_DIGEST_LEN);
		fputc('\n', f);
	}
	fprintf(f, "end\n");
	return fflush(f) == 0 && fsync(fileno(f)) == 0 ? 0 : -1;
}

struct journal_record *
journal_begin(const struct journal_entry *e)
{
	struct journal_record *r = calloc(1, sizeof(*r));
	unsigned char rnd[8];
	char tmp[4400];
	FILE *f = NULL;
	int err;

	if (r == NULL || RAND_bytes(rnd, sizeof(rnd)) != 1 ||
	    asprintf(&r->path, "%s/%02x%02x%02x%02x%02x%02x%02x%02x" RECORD_SUFFIX,
	    journal_dir, rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6],
	    rnd[7]) < 0) {
		free(r);
		errno = ENOMEM;
		return NULL;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", r->path);
	if ((r->fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0 ||
	    (f = fdopen(dup(r->fd), "w")) == NULL || write_record(f, e) != 0 ||
	    rename(tmp, r->path) != 0 || fsync_dir() != 0) {
		err = errno;
		if (f != NULL)
			fclose(f);
		if (r->fd >= 0)
			close(r->fd);
		unlink(tmp);
		free(r->path);
		free(r);
		errno = err;
		return NULL;
	}
	fclose(f);
	lseek(r->fd, 0, SEEK_END);
	return r;
}

void
journal_note_uid(struct journal_record *r, size_t index, uint32_t uid)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "uid %zu %u\n", index, uid);

	/* not synced: a UID lost in a crash is found again by its digest */
	if (r != NULL && write(r->fd, line, (size_t)n) != n)
		log_debug(0, "journal %s: %s", r->path, strerror(errno));
}

static void
record_free(struct journal_record *r)
{
	close(r->fd);
	free(r->path);
	free(r);
}

int
journal_end(struct journal_record *r, bool durable)
{
	int rc = 0;

	if (r == NULL)
		return 0;
	if (unlink(r->path) != 0 || (durable && fsync_dir() != 0))
		rc = -1;
	record_free(r);
	return rc;
}

void
journal_keep(struct journal_record *r)
{
	if (r != NULL)
		record_free(r);
}

int
journal_remove(const char *path)
{
	return unlink(path) == 0 ? fsync_dir() : -1;
}

/* ---- reading records back ---- */

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decode hex into out (len / 2 bytes); -1 on a bad digit. */
static int
unhex(const char *hex, size_t len, unsigned char *out)
{
	size_t i;

	if (len % 2 != 0)
		return -1;
	for (i = 0; i < len; i += 2) {
		int hi = hex_value(hex[i]), lo = hex_value(hex[i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i / 2] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

static char *
unhex_string(const char *hex)
{
	size_t len = strlen(hex);
	char *out = malloc(len / 2 + 1);

	if (out == NULL || unhex(hex, len, (unsigned char *)out) != 0 ||
	    memchr(out, '\0', len / 2) != NULL) {
		free(out);
		return NULL;
	}
	out[len / 2] = '\0';
	return out;
}

/* One "key value" line into e; -1 when it makes no sense. */
static int
parse_line(struct journal_entry *e, const char *key, const char *value)
{
	unsigned long long a, b, c, d;
	char digest[2 * FINGERPRINT_DIGEST_LEN + 1];
	unsigned uid;
	size_t i, n;

	if (strcmp(key, "user") == 0)
		return (e->user = unhex_string(value)) != NULL ? 0 : -1;
	if (strcmp(key, "mailbox") == 0)
		return (e->mailbox = unhex_string(value)) != NULL ? 0 : -1;
	if (strcmp(key, "upstream") == 0)
		return (e->upstream = unhex_string(value)) != NULL ? 0 : -1;
	if (strcmp(key, "staging") == 0)
		return (e->staging = unhex_string(value)) != NULL ? 0 : -1;
	if (strcmp(key, "backend") == 0)
		return e->backend == NULL &&
		    (e->backend = unhex_string(value)) != NULL ? 0 : -1;
	if (strcmp(key, "session") == 0)
		return sscanf(value, "%llu", &a) == 1 ? (e->session = a, 0) : -1;
	if (strcmp(key, "uidvalidity") == 0)
		return sscanf(value, "%u", &e->uidvalidity) == 1 ? 0 : -1;
	if (strcmp(key, "uidnext") == 0)
		return sscanf(value, "%u", &e->uidnext) == 1 ? 0 : -1;
	if (strcmp(key, "messages") == 0) {
		if (e->msgs != NULL || sscanf(value, "%zu", &n) != 1 || n > 1000000)
			return -1;
		e->nmsgs = n;
		return (e->msgs = calloc(n + 1, sizeof(*e->msgs))) != NULL ? 0 : -1;
	}
	if (strcmp(key, "msg") == 0) {
		if (sscanf(value, "%zu %llu %llu %llu %64s", &i, &b, &c, &d, digest) != 5 ||
		    i >= e->nmsgs || c > b || d > c ||
		    strlen(digest) != 2 * FINGERPRINT_DIGEST_LEN ||
		    unhex(digest, strlen(digest), e->msgs[i].fp.digest) != 0)
			return -1;
		e->msgs[i].fp.size = b;
		e->msgs[i].fp.canon_len = c;
		e->msgs[i].fp.lines = d;
		e->msgs[i].state = UPLOAD_SENT;	/* may have been stored */
		return 0;
	}
	if (strcmp(key, "uid") == 0) {
		if (sscanf(value, "%zu %u", &i, &uid) != 2 || i >= e->nmsgs || uid == 0)
			return -1;
		e->msgs[i].state = UPLOAD_STORED;
		e->msgs[i].uid = uid;
		return 0;
	}
	return strcmp(key, "end") == 0 ? 0 : -1;
}

static void
entry_clear(struct journal_entry *e)
{
	free(e->path);
	free(e->user);
	free(e->mailbox);
	free(e->upstream);
	free(e->backend);
	free(e->staging);
	free(e->msgs);
	memset(e, 0, sizeof(*e));
}

/* A record read back; -1 when it is not one (a torn UID line at the end is
 * ignored: UIDs are appended without sync). */
static int
read_record(const char *path, struct journal_entry *e)
{
	FILE *f = fopen(path, "r");
	char line[LINE_MAX_LEN];
	bool ended = false, ok = true;

	memset(e, 0, sizeof(*e));
	if (f == NULL)
		return -1;
	if (fgets(line, sizeof(line), f) == NULL ||
	    strncmp(line, JOURNAL_MAGIC "\n", sizeof(JOURNAL_MAGIC)) != 0)
		ok = false;
	while (ok && fgets(line, sizeof(line), f) != NULL) {
		char *sp, *nl = strchr(line, '\n');

		if (nl == NULL)
			break;		/* torn last line */
		*nl = '\0';
		sp = strchr(line, ' ');
		if (sp != NULL)
			*sp++ = '\0';
		if (parse_line(e, line, sp != NULL ? sp : "") != 0)
			ok = ended && strcmp(line, "uid") == 0 ? ok : false;
		if (strcmp(line, "end") == 0)
			ended = true;
	}
	fclose(f);
	if (!ok || !ended || e->user == NULL || e->mailbox == NULL ||
	    e->upstream == NULL || e->msgs == NULL || (e->path = strdup(path)) == NULL) {
		entry_clear(e);
		return -1;
	}
	return 0;
}

int
journal_scan(const char *spool_dir, struct journal_entry **out, size_t *n)
{
	char dir[4200], path[8500];
	struct journal_entry *list = NULL, *more;
	struct dirent *d;
	size_t count = 0, len;
	DIR *dp;

	*out = NULL;
	*n = 0;
	dir_path(spool_dir, dir, sizeof(dir));
	if ((dp = opendir(dir)) == NULL)
		return errno == ENOENT ? 0 : -1;
	while ((d = readdir(dp)) != NULL) {
		len = strlen(d->d_name);
		if (len <= strlen(RECORD_SUFFIX) ||
		    strcmp(d->d_name + len - strlen(RECORD_SUFFIX), RECORD_SUFFIX) != 0)
			continue;
		if ((more = realloc(list, (count + 1) * sizeof(*list))) == NULL)
			break;
		list = more;
		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		if (read_record(path, &list[count]) != 0) {
			log_error(0, "journal record %s cannot be read: left as it is", path);
			continue;
		}
		count++;
	}
	closedir(dp);
	*out = list;
	*n = count;
	return 0;
}

void
journal_entries_free(struct journal_entry *list, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		entry_clear(&list[i]);
	free(list);
}

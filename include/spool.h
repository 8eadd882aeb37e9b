/*
 * spool.h — the disk spool of a multi-message APPEND: one unnamed file per
 * command (gone from the file system from the start, and from the disk when
 * closed), written from the client's input buffer and read back in chunks
 * into the upstream's output buffer.  A global budget bounds what all
 * sessions hold on disk together.
 */
#ifndef MAPPEND_SPOOL_H
#define MAPPEND_SPOOL_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct fingerprinter;
struct spool;

/* Check (and create, mode 0700) the spool directory at start; -1 logged. */
int spool_init(const char *dir, uint64_t total_budget);

/* A new spool file; NULL with errno set. */
struct spool *spool_open(void);
/* Move n bytes (n <= what in holds) from in to the end of the file, and
 * add them to the fingerprint fp (may be NULL); -1 with errno (ENOSPC...).
 * Exactly n bytes leave in either way: on failure those not written are
 * discarded, so a literal's byte count stays exact. */
int spool_write(struct spool *, struct evbuffer *in, size_t n,
    struct fingerprinter *fp);
uint64_t spool_size(const struct spool *);
/* Add the file's bytes [off, off+n) to out; -1 with errno. */
int spool_read(struct spool *, uint64_t off, size_t n, struct evbuffer *out);
/* Copy the file's bytes [off, off+n) into buf; -1 with errno. */
int spool_pread(struct spool *, uint64_t off, void *buf, size_t n);
void spool_close(struct spool *);

/* The global budget: reserve before spooling, release when done. */
int spool_reserve(uint64_t n);
void spool_release(uint64_t n);
/* A reload's max_total_spool: for every reservation from now on. */
void spool_set_budget(uint64_t total_budget);

#endif

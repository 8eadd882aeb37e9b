/*
 * reader.h — reading a plain socket into its bufferevent's input buffer in
 * large gulps.  libevent 2.1 reads at most 4 KiB per wakeup (evbuffer_read's
 * EVBUFFER_MAX_READ; 2.2 made it configurable), which costs several system
 * calls per 4 KiB on a stream of literals; a reader reads up to 256 KiB at
 * once instead, and hands the bufferevent's own callbacks the result.  The
 * bufferevent keeps doing the writing.  TLS connections read through
 * OpenSSL's bufferevent as before.
 */
#ifndef MAPPEND_READER_H
#define MAPPEND_READER_H

#include <stdbool.h>
#include <stddef.h>

struct bufferevent;
struct reader;
struct timeval;

typedef void (*reader_read_cb)(struct bufferevent *, void *);
typedef void (*reader_event_cb)(struct bufferevent *, short, void *);

/* Takes over reading bev (its EV_READ is disabled); the input stops growing
 * at high bytes; timeout (may be NULL) reports BEV_EVENT_TIMEOUT after that
 * long without data.  NULL when bev has no socket or out of memory: the
 * bufferevent then goes on reading itself. */
struct reader *reader_new(struct bufferevent *bev, size_t high,
    const struct timeval *timeout, reader_read_cb, reader_event_cb, void *arg);
void reader_enable(struct reader *, bool on);
/* The owner consumed input: read again if reading had stopped at high. */
void reader_resume(struct reader *);
/* The next read takes at most n bytes, and the owner sees them before
 * more is read: after a literal the kernel moved (splice.h), the next
 * literal's header is found before its bytes are read in. */
void reader_limit_next(struct reader *, size_t n);
/* Give reading back to the bufferevent (STARTTLS) and free the reader. */
void reader_free(struct reader *);

#endif

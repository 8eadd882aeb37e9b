/*
 * multiappend.c — APPEND, the reason mappend exists.
 *
 * Every message literal of an APPEND is spooled to disk before anything
 * goes upstream; limits are checked as each literal is announced, so a
 * refusal costs the upstream nothing.  Then:
 *
 * - one message, or an upstream with MULTIAPPEND of its own: the command is
 *   replayed upstream as it came, under the client's tag, and the upstream's
 *   answer is the client's answer;
 * - several messages to an upstream without MULTIAPPEND: once the commands
 *   before it are answered, the messages go up as single APPENDs of the
 *   proxy's own (pipelined where the upstream takes {n+}), and the client
 *   gets one tagged answer: OK with one APPENDUID for all of them, or NO
 *   after exactly the messages this command added have been removed again
 *   (UID STORE +FLAGS.SILENT (\Deleted), UID EXPUNGE of their UIDs).
 *   An upstream without UIDPLUS can name neither the UIDs nor expunge by
 *   UID, so there the messages go into a fresh staging mailbox of the
 *   proxy's own, and one COPY (atomic by RFC 3501) moves them all into the
 *   target on a second connection; the staging mailbox is deleted either way.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <openssl/rand.h>

#include "backchannel.h"
#include "credentials.h"
#include "log.h"
#include "multiappend.h"
#include "relay.h"
#include "session.h"
#include "spool.h"

/* Bytes read from the spool into the upstream's output at a time. */
#define SEND_CHUNK (256 * 1024)
/* Longest flag list and date of one message, as the client wrote them. */
#define ATTRS_MAX 4096

enum msg_state {
	MSG_SPOOLED,
	MSG_SENT,		/* sent, answer outstanding */
	MSG_STORED,
	MSG_REFUSED,
};

struct append_msg {
	uint64_t off, size;	/* in the spool file */
	unsigned lit_flags;	/* IMAP_LIT_BINARY is kept */
	char *attrs;		/* flags and date as written, may be NULL */
	size_t attrs_len;
	uint32_t uid;		/* from APPENDUID; 0 unknown */
	enum msg_state state;
};

enum append_state {
	APPEND_READING,		/* the command still arrives */
	APPEND_QUEUED,		/* read; waits for its turn */
	APPEND_PREPARING,	/* asking the mailbox's UIDNEXT */
	APPEND_SENDING,
	APPEND_ROLLBACK,
};

struct append_job {
	enum append_state state;
	bool emulated;		/* several single APPENDs of our own */
	char tag[COMMAND_MAX_TAG + 1];
	size_t taglen;
	char *mailbox;		/* decoded, NUL-terminated */
	size_t mailbox_len;
	char *mailbox_wire;	/* as a quoted string */
	char *staging_wire;	/* no UIDPLUS: the staging mailbox, quoted */
	bool mailbox_literal;	/* its bytes are arriving */

	struct spool *spool;
	uint64_t reserved;	/* of the global spool budget */
	struct append_msg *msgs;
	unsigned nmsgs, cap;

	char *refusal;		/* "NO [TOOBIG] ..." to answer instead */
	bool discarding;	/* reading the rest of the command to drop it */

	unsigned next;		/* next message to send */
	unsigned cur;		/* message whose literal is being sent */
	uint64_t cur_off, cur_left;
	bool in_literal;
	bool wait_plus;
	bool sending_done;
	struct pending *one;	/* the client's APPEND replayed as one command */
	unsigned sent, answered;
	char *failure;		/* the upstream's reason, "NO [CODE] text" */
	uint32_t uidvalidity;
	uint32_t uidnext;	/* before the replay; 0 unknown */
	bool upstream_lost;
};

static void pump(struct session *);
static bool replay_plus(struct session *, void *);
static void maybe_finish(struct session *);
static void fail(struct session *);

static struct append_job *
job_of(struct session *s)
{
	return s->append;
}

uint64_t
multiappend_limit(const struct session *s)
{
	uint64_t limit = s->proxy->cfg->max_message_size;

	if (s->caps.appendlimit > 0 && s->caps.appendlimit < limit)
		limit = s->caps.appendlimit;
	return limit;
}

static void
job_free(struct append_job *job)
{
	unsigned i;

	for (i = 0; i < job->nmsgs; i++)
		free(job->msgs[i].attrs);
	free(job->msgs);
	spool_close(job->spool);
	spool_release(job->reserved);
	free(job->mailbox);
	free(job->mailbox_wire);
	free(job->staging_wire);
	free(job->refusal);
	free(job->failure);
	free(job);
}

bool
multiappend_busy(const struct session *s)
{
	const struct append_job *job = s->append;

	return job != NULL && job->state >= APPEND_PREPARING;
}

void
multiappend_free(struct session *s)
{
	if (s->append == NULL)
		return;
	job_free(s->append);
	s->append = NULL;
}

/* The job is over: the client may go on (its input is read again by the
 * loop that called us), or the session ends. */
static void
end_job(struct session *s)
{
	bool lost = s->append->upstream_lost;

	multiappend_free(s);
	relay_hold(s, RELAY_HOLD_APPEND, false);
	if (s->client_gone)
		session_close(s, NULL);
	else if (lost)
		session_close(s, "Connection to the upstream server lost");
	else if (s->proxy->shutting_down)
		session_close(s, "Server shutting down");
	else
		session_resume_input(s);
}

static char *
vformat(const char *fmt, va_list ap)
{
	char *out = NULL;

	if (vasprintf(&out, fmt, ap) < 0)
		return NULL;
	return out;
}

/* Answer the client now with the refusal and forget the command. */
static void
answer_refusal(struct session *s)
{
	struct append_job *job = job_of(s);

	session_reply(s, "%.*s %s", (int)job->taglen, job->tag,
	    job->refusal != NULL ? job->refusal : "NO APPEND failed");
	relay_release_input(s);
	end_job(s);
}

/*
 * The command cannot succeed.  If the client waits for a "+" for the literal
 * that follows, it gets the answer now and gives the command up; if it sends
 * a non-synchronizing literal, that literal and the rest of the command are
 * read and dropped first, never taken for commands.
 */
static void
refuse(struct session *s, struct imap_framer *fr, const struct imap_segment *seg,
    const char *fmt, ...)
{
	struct append_job *job = job_of(s);
	va_list ap;

	if (job->refusal == NULL) {
		va_start(ap, fmt);
		job->refusal = vformat(fmt, ap);
		va_end(ap);
	}
	log_info(s->id, "APPEND refused: %s", job->refusal != NULL ? job->refusal : "?");
	/* the spool is of no use any more */
	spool_close(job->spool);
	job->spool = NULL;
	spool_release(job->reserved);
	job->reserved = 0;
	if (seg->last) {
		answer_refusal(s);
	} else if (!(seg->literal_flags & IMAP_LIT_NONSYNC)) {
		imap_framer_reset_line(fr);
		answer_refusal(s);
	} else if (seg->literal > s->proxy->cfg->max_session_spool) {
		/* too much to read only to throw away */
		log_info(s->id, "non-synchronizing literal of %llu bytes refused",
		    (unsigned long long)seg->literal);
		session_close(s, "Literal too large");
	} else {
		job->discarding = true;
		imap_framer_skip_literal(fr);
	}
}

static bool
set_mailbox(struct append_job *job, const char *name, size_t len)
{
	free(job->mailbox);
	if ((job->mailbox = malloc(len + 1)) == NULL)
		return false;
	memcpy(job->mailbox, name, len);
	job->mailbox[len] = '\0';
	job->mailbox_len = len;
	job->mailbox_wire = imap_quote(name, len);
	return job->mailbox_wire != NULL;
}

static enum command_verdict
multiappend_start(struct session *s, const char *buf, const struct imap_segment *seg)
{
	struct append_job *job;
	const struct imap_token *tag = &seg->tok[0];

	if ((job = calloc(1, sizeof(*job))) == NULL) {
		session_close(s, "Out of memory");
		return VERDICT_CLOSE;
	}
	memcpy(job->tag, buf + tag->off, tag->len);
	job->taglen = tag->len;
	s->append = job;
	return VERDICT_TAKEN;
}

/* Flag list and date-time before a literal: "(" atoms ")" and a quoted
 * string, each optional, in that order. */
static bool
valid_attrs(const struct imap_segment *seg, unsigned i, unsigned end)
{
	if (i < end && seg->tok[i].kind == IMAP_TOK_LPAREN) {
		for (i++; i < end && seg->tok[i].kind == IMAP_TOK_ATOM; i++)
			;
		if (i >= end || seg->tok[i].kind != IMAP_TOK_RPAREN)
			return false;
		i++;
	}
	if (i < end && seg->tok[i].kind == IMAP_TOK_QUOTED)
		i++;
	return i == end;
}

/* The command is complete: its turn comes when the relay lets it. */
static void
finish_reading(struct session *s)
{
	struct append_job *job = job_of(s);

	relay_release_input(s);
	relay_hold(s, RELAY_HOLD_APPEND, true);
	job->state = APPEND_QUEUED;
	job->emulated = job->nmsgs > 1 && !s->caps.multiappend;
	log_debug(s->id, "APPEND of %u message%s (%llu bytes) spooled, %s",
	    job->nmsgs, job->nmsgs == 1 ? "" : "s",
	    (unsigned long long)spool_size(job->spool),
	    job->emulated ? "emulating MULTIAPPEND" : "replaying as one command");
	multiappend_kick(s);
}

/* A message literal is announced: check it against every limit. */
static void
message_literal(struct session *s, struct imap_framer *fr, const char *buf,
    const struct imap_segment *seg, unsigned first_attr)
{
	struct append_job *job = job_of(s);
	const struct config *cfg = s->proxy->cfg;
	uint64_t size = seg->literal, limit = multiappend_limit(s);
	uint64_t spooled = job->spool != NULL ? spool_size(job->spool) : 0;
	struct append_msg *m;
	size_t off, end;

	if (size == 0) {
		refuse(s, fr, seg, "NO Zero-length message literal: APPEND cancelled");
		return;
	}
	if (size > limit) {
		refuse(s, fr, seg, "NO [TOOBIG] Message of %llu bytes is larger than the "
		    "limit of %llu bytes", (unsigned long long)size,
		    (unsigned long long)limit);
		return;
	}
	if (job->nmsgs + 1 > cfg->max_messages) {
		refuse(s, fr, seg, "NO [LIMIT] More than %u messages in one APPEND",
		    cfg->max_messages);
		return;
	}
	if (spooled + size > cfg->max_session_spool) {
		refuse(s, fr, seg, "NO [LIMIT] This APPEND is larger than the %llu bytes "
		    "a session may upload at once",
		    (unsigned long long)cfg->max_session_spool);
		return;
	}
	if (spool_reserve(size) != 0) {
		refuse(s, fr, seg, "NO [LIMIT] The proxy's spool is full, try again later");
		return;
	}
	job->reserved += size;
	if (job->spool == NULL && (job->spool = spool_open()) == NULL) {
		log_error(s->id, "cannot create a spool file: %s", strerror(errno));
		refuse(s, fr, seg, "NO [UNAVAILABLE] The proxy cannot store the upload: %s",
		    strerror(errno));
		return;
	}
	if (job->nmsgs == job->cap) {
		unsigned cap = job->cap ? job->cap * 2 : 8;
		struct append_msg *msgs = realloc(job->msgs, cap * sizeof(*msgs));

		if (msgs == NULL) {
			refuse(s, fr, seg, "NO [SERVERBUG] Out of memory");
			return;
		}
		job->msgs = msgs;
		job->cap = cap;
	}
	m = &job->msgs[job->nmsgs++];
	memset(m, 0, sizeof(*m));
	m->off = spooled;
	m->size = size;
	m->lit_flags = seg->literal_flags & IMAP_LIT_BINARY;
	/* flags and date exactly as the client wrote them */
	off = first_attr < seg->ntok ? seg->tok[first_attr].off : seg->literal_off;
	end = seg->literal_off;
	while (end > off && buf[end - 1] == ' ')
		end--;
	if (end > off) {
		if (end - off > ATTRS_MAX) {
			refuse(s, fr, seg, "BAD Flags and date of a message longer than %d bytes",
			    ATTRS_MAX);
			return;
		}
		if ((m->attrs = malloc(end - off)) == NULL) {
			refuse(s, fr, seg, "NO [SERVERBUG] Out of memory");
			return;
		}
		memcpy(m->attrs, buf + off, end - off);
		m->attrs_len = end - off;
	}
	if (!(seg->literal_flags & IMAP_LIT_NONSYNC))
		session_reply(s, "+ Ready for literal data");
}

static void
append_segment(struct session *s, struct imap_framer *fr, struct evbuffer *in,
    const char *buf, size_t len, const struct imap_segment *seg)
{
	struct append_job *job = job_of(s);
	unsigned i = seg->first ? 2 : 0, end = seg->ntok;

	if (job->discarding) {
		imap_framer_drop(fr, in, len);
		if (seg->last || !(seg->literal_flags & IMAP_LIT_NONSYNC)) {
			if (!seg->last)
				imap_framer_reset_line(fr);
			answer_refusal(s);
			return;
		}
		if (seg->literal > s->proxy->cfg->max_session_spool)
			session_close(s, "Literal too large");
		else
			imap_framer_skip_literal(fr);
		return;
	}
	if (!seg->last && !seg->truncated)
		end--;		/* the literal token */
	if (job->mailbox == NULL) {
		const struct imap_token *t = i < seg->ntok ? &seg->tok[i] : NULL;
		char name[COMMAND_MAX_ARG_LEN];
		int n;

		if (t != NULL && t->kind == IMAP_TOK_LITERAL) {
			if (seg->literal > COMMAND_MAX_ARG_LEN) {
				refuse(s, fr, seg, "BAD Mailbox name longer than %d bytes",
				    COMMAND_MAX_ARG_LEN);
			} else if ((job->mailbox = calloc(1, seg->literal + 1)) == NULL) {
				refuse(s, fr, seg, "NO [SERVERBUG] Out of memory");
			} else {
				job->mailbox_literal = true;
				if (!(seg->literal_flags & IMAP_LIT_NONSYNC))
					session_reply(s, "+ Ready for literal data");
			}
			imap_framer_drop(fr, in, len);
			return;
		}
		if (t == NULL || (n = imap_unquote(buf, t, name, sizeof(name))) < 0) {
			refuse(s, fr, seg, "BAD Missing or invalid mailbox name");
			imap_framer_drop(fr, in, len);
			return;
		}
		if (!set_mailbox(job, name, (size_t)n)) {
			refuse(s, fr, seg, "NO Mailbox name not supported by this proxy");
			imap_framer_drop(fr, in, len);
			return;
		}
		i++;
	}
	if (seg->last) {
		if (i < seg->ntok || job->nmsgs == 0)
			refuse(s, fr, seg, "BAD Missing message literal");
		else
			finish_reading(s);
		imap_framer_drop(fr, in, len);
		return;
	}
	if (!seg->truncated && !valid_attrs(seg, i, end)) {
		refuse(s, fr, seg, "BAD Invalid flags or date-time before a message");
		imap_framer_drop(fr, in, len);
		return;
	}
	message_literal(s, fr, buf, seg, i);
	imap_framer_drop(fr, in, len);
}

/* n bytes of the current literal: the mailbox name, or a message to spool.
 * Each byte is consumed exactly once, through fr. */
static void
append_literal(struct session *s, struct imap_framer *fr, struct evbuffer *in,
    size_t n)
{
	struct append_job *job = job_of(s);

	if (job->mailbox_literal) {
		evbuffer_remove(in, job->mailbox + job->mailbox_len, n);
		imap_framer_consumed(fr, n);
		job->mailbox_len += n;
		if (imap_framer_literal_left(fr) == 0) {
			/* the whole name is in */
			char *name = job->mailbox;

			job->mailbox = NULL;
			job->mailbox_literal = false;
			if (!set_mailbox(job, name, job->mailbox_len)) {
				free(job->refusal);
				job->refusal = strdup("NO Mailbox name not supported by this proxy");
				job->discarding = true;
			}
			free(name);
		}
		return;
	}
	if (job->discarding) {
		imap_framer_drop(fr, in, n);
		return;
	}
	if (spool_write(job->spool, in, n) != 0) {
		int err = errno;

		/* spool_write took exactly n bytes out of in either way; the
		 * rest of the literal is dropped by the framer as it comes */
		imap_framer_consumed(fr, n);
		imap_framer_skip_literal(fr);
		log_error(s->id, "spool write failed: %s", strerror(err));
		if (job->refusal == NULL && asprintf(&job->refusal,
		    "NO [UNAVAILABLE] The proxy cannot store the upload: %s",
		    strerror(err)) < 0)
			job->refusal = NULL;
		job->discarding = true;
		spool_close(job->spool);
		job->spool = NULL;
		spool_release(job->reserved);
		job->reserved = 0;
		return;
	}
	imap_framer_consumed(fr, n);
}

/* The command's input, frame by frame, while it arrives. */
static void
multiappend_input(struct session *s, struct imap_framer *fr, struct evbuffer *in,
    const struct imap_frame *f)
{
	if (f->kind == IMAP_FRAME_LITERAL)
		append_literal(s, fr, in, f->len);
	else
		append_segment(s, fr, in, f->buf, f->len, &f->seg);
}

/* Whether a literal of this size may go up without waiting for "+". */
static bool
nonsync_ok(const struct session *s, uint64_t size)
{
	return capability_nonsync_ok(&s->caps, size);
}

static void replay_answered(struct session *, struct pending *, const struct answer *);

static void
begin_message(struct session *s, unsigned i)
{
	struct append_job *job = job_of(s);
	struct evbuffer *out = bufferevent_get_output(s->upstream);
	struct append_msg *m = &job->msgs[i];
	bool nonsync = nonsync_ok(s, m->size);

	if (job->emulated) {
		struct pending *p = session_internal_pending(s, replay_answered);

		if (p == NULL) {
			session_close(s, "Out of memory");
			return;
		}
		p->cookie = i;
		evbuffer_add_printf(out, "%s APPEND %s", p->tag,
		    job->staging_wire != NULL ? job->staging_wire : job->mailbox_wire);
		m->state = MSG_SENT;
		job->sent++;
	} else if (i == 0) {
		evbuffer_add_printf(out, "%.*s APPEND %s", (int)job->taglen, job->tag,
		    job->mailbox_wire);
	}
	if (m->attrs_len > 0) {
		evbuffer_add(out, " ", 1);
		evbuffer_add(out, m->attrs, m->attrs_len);
	}
	evbuffer_add_printf(out, " %s{%llu%s}\r\n",
	    (m->lit_flags & IMAP_LIT_BINARY) ? "~" : "",
	    (unsigned long long)m->size, nonsync ? "+" : "");
	job->cur = i;
	job->cur_off = m->off;
	job->cur_left = m->size;
	job->in_literal = true;
	if (!nonsync) {
		job->wait_plus = true;
		relay_expect_plus(s, replay_plus, job);
	}
}

static void
end_message(struct session *s)
{
	struct append_job *job = job_of(s);

	job->in_literal = false;
	if (job->emulated || job->cur + 1 == job->nmsgs)
		evbuffer_add(bufferevent_get_output(s->upstream), "\r\n", 2);
}

/* Feed the upstream as its output drains. */
static void
pump(struct session *s)
{
	struct append_job *job = job_of(s);
	struct evbuffer *out = bufferevent_get_output(s->upstream);

	while (!s->closing && s->append == job && job->state == APPEND_SENDING) {
		if (job->wait_plus || session_output_full(s, SESSION_UPSTREAM))
			return;
		if (job->cur_left > 0) {
			size_t n = job->cur_left < SEND_CHUNK ? (size_t)job->cur_left : SEND_CHUNK;

			if (spool_read(job->spool, job->cur_off, n, out) != 0) {
				log_error(s->id, "spool read failed: %s", strerror(errno));
				session_close(s, "Internal error in the proxy's spool");
				return;
			}
			job->cur_off += n;
			job->cur_left -= n;
			continue;
		}
		if (job->in_literal) {
			end_message(s);
			continue;
		}
		if (job->next < job->nmsgs && job->failure == NULL) {
			begin_message(s, job->next++);
			continue;
		}
		if (!job->emulated) {
			/* all of it is on its way; the upstream's answer to the
			 * client's tag is relayed like any other */
			end_job(s);
			return;
		}
		job->sending_done = true;
		maybe_finish(s);
		return;
	}
}

static void
start_one(struct session *s)
{
	struct append_job *job = job_of(s);

	job->one = session_pending_add(s, job->tag, job->taglen, &multiappend_command);
	if (job->one == NULL) {
		session_close(s, "Out of memory");
		return;
	}
	job->state = APPEND_SENDING;
	pump(s);
}

static bool
status_untagged(struct session *s, struct pending *p, const char *buf,
    const struct imap_segment *seg)
{
	struct append_job *job = job_of(s);
	unsigned i;

	(void)p;
	if (seg->first && (seg->ntok < 2 || !imap_tok_is(buf, &seg->tok[1], "STATUS")))
		return false;
	for (i = 0; i + 1 < seg->ntok; i++) {
		uint64_t n;

		if (imap_tok_is(buf, &seg->tok[i], "UIDNEXT") &&
		    imap_tok_number(buf, &seg->tok[i + 1], &n) == 0 && n <= UINT32_MAX)
			job->uidnext = (uint32_t)n;
	}
	return true;
}

static void
status_done(struct session *s, struct pending *p, const struct answer *a)
{
	struct append_job *job = job_of(s);

	(void)p;
	(void)a;
	/* a missing mailbox shows in the first APPEND's answer, passed on */
	job->state = APPEND_SENDING;
	pump(s);
}

static void
staging_created(struct session *s, struct pending *p, const struct answer *a)
{
	struct append_job *job = job_of(s);

	(void)p;
	if (!a->ok) {
		log_warn(s->id, "cannot create the staging mailbox %s: %.*s",
		    job->staging_wire, (int)a->len, a->line);
		free(job->staging_wire);
		job->staging_wire = NULL;
		free(job->failure);
		job->failure = strdup("NO [CANNOT] The proxy could not create its "
		    "staging mailbox for this MULTIAPPEND");
		fail(s);
		return;
	}
	job->state = APPEND_SENDING;
	pump(s);
}

/* No UIDPLUS: the upload goes into a staging mailbox first. */
static void
start_staging(struct session *s)
{
	struct append_job *job = job_of(s);
	unsigned char rnd[8];
	char name[64];

	if (!credentials_usable(s)) {
		free(job->failure);
		job->failure = strdup("NO [CANNOT] This server lacks UIDPLUS: MULTIAPPEND "
		    "through mappend then needs a LOGIN or AUTHENTICATE PLAIN login, or a "
		    "configured master user");
		log_warn(s->id, "MULTIAPPEND refused: upstream without UIDPLUS and no "
		    "credentials for a second connection");
		fail(s);
		return;
	}
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		session_close(s, "Internal error");
		return;
	}
	snprintf(name, sizeof(name), "mappend-staging-%02x%02x%02x%02x%02x%02x%02x%02x",
	    rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	job->staging_wire = imap_quote(name, strlen(name));
	job->state = APPEND_PREPARING;
	if (job->staging_wire == NULL ||
	    session_internal_command(s, staging_created, "CREATE %s",
	    job->staging_wire) == NULL)
		session_close(s, "Out of memory");
}

/* Several messages, all or nothing: the upstream's state must be known,
 * so the commands before this one are answered first. */
static void
start_emulation(struct session *s)
{
	struct append_job *job = job_of(s);
	struct pending *p;

	if (!s->caps.uidplus) {
		start_staging(s);
		return;
	}
	job->state = APPEND_PREPARING;
	p = session_internal_command(s, status_done, "STATUS %s (UIDNEXT)",
	    job->mailbox_wire);
	if (p == NULL) {
		session_close(s, "Out of memory");
		return;
	}
	p->untagged = status_untagged;
}

void
multiappend_kick(struct session *s)
{
	struct append_job *job = job_of(s);
	bool quiet;

	if (job == NULL || s->closing || s->upstream == NULL)
		return;
	quiet = session_pending_count(s) == 0 && !s->caps_pending && relay_quiet(s);
	switch (job->state) {
	case APPEND_QUEUED:
		if (!job->emulated) {
			/* a "+" we wait for must not be confused with one owed
			 * to a command still in flight */
			bool all_nonsync = true;
			unsigned i;

			for (i = 0; i < job->nmsgs; i++)
				if (!nonsync_ok(s, job->msgs[i].size))
					all_nonsync = false;
			if (all_nonsync || quiet)
				start_one(s);
			return;
		}
		if (quiet)
			start_emulation(s);
		return;
	case APPEND_SENDING:
		pump(s);
		return;
	default:
		return;
	}
}

/* The upstream's "+" for a replayed literal: ours, not the client's. */
static bool
replay_plus(struct session *s, void *arg)
{
	struct append_job *job = arg;

	job->wait_plus = false;
	pump(s);
	return false;
}

/* The client's APPEND, replayed as one command, was answered. */
static void
multiappend_answered(struct session *s, struct pending *p, const struct answer *a)
{
	struct append_job *job = job_of(s);

	(void)a;
	if (job == NULL || job->one != p)
		return;
	/* answered before all of it went up (a refused synchronizing
	 * literal): the rest is not wanted */
	if (job->wait_plus)
		relay_expect_plus(s, NULL, NULL);
	end_job(s);
}

/* "APPENDUID uidvalidity uid" in the answer's response code */
static void
parse_appenduid(const char *buf, const struct imap_segment *seg, uint32_t *validity,
    uint32_t *uid)
{
	unsigned i;

	for (i = 0; i < seg->ntok; i++) {
		const struct imap_token *t = &seg->tok[i];
		unsigned long long v, u;
		char code[64];

		if (t->kind != IMAP_TOK_CODE || t->len >= sizeof(code))
			continue;
		memcpy(code, buf + t->off, t->len);
		code[t->len] = '\0';
		if (sscanf(code, "APPENDUID %llu %llu", &v, &u) == 2 &&
		    v <= UINT32_MAX && u > 0 && u <= UINT32_MAX) {
			*validity = (uint32_t)v;
			*uid = (uint32_t)u;
		}
	}
}

static void
replay_answered(struct session *s, struct pending *p, const struct answer *a)
{
	struct append_job *job = job_of(s);
	struct append_msg *m = &job->msgs[p->cookie];

	job->answered++;
	if (a->ok) {
		m->state = MSG_STORED;
		parse_appenduid(a->line, a->seg, &job->uidvalidity, &m->uid);
	} else {
		m->state = MSG_REFUSED;
		if (job->failure == NULL) {
			size_t off = a->seg->ntok >= 2 ? a->seg->tok[1].off : 0;

			job->failure = strndup(a->line + off, a->len - off);
			log_info(s->id, "upstream refused message %lu of %u: %s",
			    p->cookie + 1, job->nmsgs, job->failure);
		}
	}
	maybe_finish(s);
}

/* "1:3,7" from the UIDs of the stored messages, in append order. */
static char *
uid_set(const struct append_job *job, size_t *count)
{
	char *out = NULL;
	size_t len = 0, n = 0;
	FILE *f = open_memstream(&out, &len);
	unsigned i;
	uint32_t start = 0, prev = 0;

	if (f == NULL)
		return NULL;
	for (i = 0; i < job->nmsgs; i++) {
		uint32_t uid = job->msgs[i].uid;

		if (job->msgs[i].state != MSG_STORED || uid == 0)
			continue;
		if (n > 0 && uid == prev + 1) {
			prev = uid;
			n++;
			continue;
		}
		if (n > 0)
			fprintf(f, start == prev ? "%u," : "%u:%u,", start, prev);
		start = prev = uid;
		n++;
	}
	if (n > 0)
		fprintf(f, start == prev ? "%u" : "%u:%u", start, prev);
	fclose(f);
	*count = n;
	return out;
}

static void
succeed(struct session *s)
{
	struct append_job *job = job_of(s);
	size_t n = 0;
	char *set = uid_set(job, &n);

	if (s->caps.uidplus && set != NULL && n == job->nmsgs)
		session_reply(s, "%.*s OK [APPENDUID %u %s] Append completed",
		    (int)job->taglen, job->tag, job->uidvalidity, set);
	else
		session_reply(s, "%.*s OK Append completed", (int)job->taglen, job->tag);
	log_info(s->id, "MULTIAPPEND of %u messages to \"%s\" done%s%s", job->nmsgs,
	    job->mailbox, set != NULL && *set ? ", UIDs " : "", set != NULL ? set : "");
	free(set);
	end_job(s);
}

/* The client's answer after a failure; the mailbox is as it was (or the
 * log says which UIDs could not be removed). */
static void
fail(struct session *s)
{
	struct append_job *job = job_of(s);

	if (!s->client_gone)
		session_reply(s, "%.*s %s", (int)job->taglen, job->tag,
		    job->failure != NULL ? job->failure : "NO Append failed");
	end_job(s);
}

static void
rollback_expunged(struct session *s, struct pending *p, const struct answer *a)
{
	struct append_job *job = job_of(s);
	size_t n = 0;
	char *set = uid_set(job, &n);

	(void)p;
	if (a->ok)
		log_info(s->id, "rolled back: removed UIDs %s from \"%s\"", set, job->mailbox);
	else
		log_error(s->id, "rollback failed: UIDs %s left in \"%s\" of user %s: %.*s",
		    set, job->mailbox, s->creds.user != NULL ? s->creds.user : "?",
		    (int)a->len, a->line);
	free(set);
	fail(s);
}

static void
rollback_stored(struct session *s, struct pending *p, const struct answer *a)
{
	struct append_job *job = job_of(s);
	size_t n = 0;
	char *set;

	(void)p;
	if (!a->ok) {
		rollback_expunged(s, p, a);
		return;
	}
	set = uid_set(job, &n);
	if (set == NULL ||
	    session_internal_command(s, rollback_expunged, "UID EXPUNGE %s", set) == NULL)
		session_close(s, "Out of memory");
	free(set);
}

static void
noop_then_fail(struct session *s, struct pending *p, const struct answer *a)
{
	(void)p;
	(void)a;
	fail(s);
}

static void
remote_rollback_done(struct session *s, const char *error, const char *refusal)
{
	struct append_job *job = job_of(s);

	(void)refusal;
	if (error != NULL)
		log_error(s->id, "rollback on a second connection failed: %s", error);
	else
		log_info(s->id, "rolled back on a second connection: \"%s\" is as before",
		    job->mailbox);
	/* a client that has the mailbox open (read-only) hears of the
	 * EXPUNGEs before the tagged NO, so its view stays right */
	if (!s->client_gone && !job->upstream_lost && s->upstream != NULL &&
	    s->selected != NULL && session_same_mailbox(s->selected, job->mailbox)) {
		if (session_internal_command(s, noop_then_fail, "NOOP") == NULL)
			session_close(s, "Out of memory");
		return;
	}
	fail(s);
}

static void
rollback(struct session *s)
{
	struct append_job *job = job_of(s);
	struct removal r;
	size_t n = 0, i, k = 0;
	char *set = uid_set(job, &n);
	bool unknown = false;

	job->state = APPEND_ROLLBACK;
	for (i = 0; i < job->nmsgs; i++) {
		enum msg_state st = job->msgs[i].state;

		if ((st == MSG_STORED && job->msgs[i].uid == 0) ||
		    (st == MSG_SENT && job->upstream_lost))
			unknown = true;
	}
	if (n == 0 && !unknown) {
		free(set);
		fail(s);
		return;
	}
	/* the client has the mailbox open read-write: it sees the EXPUNGEs
	 * right here, and its sequence numbers stay right */
	if (!unknown && !job->upstream_lost && s->upstream != NULL &&
	    s->selected != NULL && s->selected_rw &&
	    session_same_mailbox(s->selected, job->mailbox)) {
		if (session_internal_command(s, rollback_stored,
		    "UID STORE %s +FLAGS.SILENT (\\Deleted)", set) == NULL)
			session_close(s, "Out of memory");
		free(set);
		return;
	}
	free(set);
	memset(&r, 0, sizeof(r));
	r.mailbox = job->mailbox;
	r.mailbox_wire = job->mailbox_wire;
	r.uidnext = job->uidnext;
	r.spool = job->spool;
	r.uids = calloc(job->nmsgs, sizeof(*r.uids));
	r.unknown = calloc(job->nmsgs, sizeof(*r.unknown));
	if (r.uids == NULL || r.unknown == NULL) {
		free(r.uids);
		free(r.unknown);
		session_close(s, "Out of memory");
		return;
	}
	for (i = 0; i < job->nmsgs; i++) {
		struct append_msg *m = &job->msgs[i];

		if (m->state == MSG_STORED && m->uid != 0) {
			r.uids[r.nuids++] = m->uid;
		} else if ((m->state == MSG_STORED && m->uid == 0) ||
		    (m->state == MSG_SENT && job->upstream_lost)) {
			r.unknown[k].off = m->off;
			r.unknown[k].size = m->size;
			k++;
		}
	}
	r.nunknown = k;
	backchannel_remove(s, &r, remote_rollback_done);
	free(r.uids);
	free(r.unknown);
}

static void
staging_deleted(struct session *s, struct pending *p, const struct answer *a)
{
	struct append_job *job = job_of(s);

	(void)p;
	if (!a->ok)
		log_error(s->id, "could not delete the staging mailbox %s: %.*s",
		    job->staging_wire, (int)a->len, a->line);
	fail(s);
}

static void
staged_noop_done(struct session *s, struct pending *p, const struct answer *a)
{
	(void)p;
	(void)a;
	succeed(s);
}

static void
staging_copied(struct session *s, const char *error, const char *refusal)
{
	struct append_job *job = job_of(s);

	if (error != NULL || refusal != NULL) {
		if (error != NULL)
			log_error(s->id, "copying the staged upload into \"%s\" failed: %s",
			    job->mailbox, error);
		free(job->failure);
		job->failure = strdup(refusal != NULL ? refusal :
		    "NO [UNAVAILABLE] The proxy could not complete the upload");
		fail(s);
		return;
	}
	/* the client has the target open: let it hear of the new messages
	 * before the tagged OK */
	if (!s->client_gone && s->upstream != NULL && s->selected != NULL &&
	    session_same_mailbox(s->selected, job->mailbox)) {
		if (session_internal_command(s, staged_noop_done, "NOOP") == NULL)
			session_close(s, "Out of memory");
		return;
	}
	succeed(s);
}

/* Everything is in the staging mailbox, or something was refused. */
static void
finish_staging(struct session *s)
{
	struct append_job *job = job_of(s);

	job->state = APPEND_ROLLBACK;
	if (job->failure == NULL && !s->client_gone) {
		backchannel_copy(s, job->staging_wire, job->mailbox_wire, staging_copied);
		return;
	}
	if (s->upstream == NULL ||
	    session_internal_command(s, staging_deleted, "DELETE %s",
	    job->staging_wire) == NULL) {
		log_error(s->id, "the staging mailbox %s of user %s is left behind",
		    job->staging_wire, s->creds.user != NULL ? s->creds.user : "?");
		fail(s);
	}
}

static void
maybe_finish(struct session *s)
{
	struct append_job *job = job_of(s);

	if (job == NULL || job->state != APPEND_SENDING)
		return;
	if (!job->sending_done && job->failure == NULL)
		return;
	if (job->in_literal || job->wait_plus || job->cur_left > 0)
		return;		/* a literal must be finished first */
	if (job->answered < job->sent)
		return;
	job->sending_done = true;
	if (job->staging_wire != NULL) {
		finish_staging(s);
		return;
	}
	if (job->failure == NULL && !s->client_gone)
		succeed(s);
	else
		rollback(s);
}

bool
multiappend_client_gone(struct session *s)
{
	struct append_job *job = job_of(s);

	if (job == NULL)
		return false;
	if (job->state == APPEND_READING || job->state == APPEND_QUEUED ||
	    !job->emulated) {
		/* nothing of it went upstream, or it is the upstream's own
		 * command now: nothing to finish */
		multiappend_free(s);
		return false;
	}
	log_info(s->id, "client left during MULTIAPPEND: it never saw OK, "
	    "so the messages are removed again");
	if (job->failure == NULL)
		job->failure = strdup("NO Client disconnected");
	return true;
}

static void
staging_dropped(struct session *s, const char *error, const char *refusal)
{
	struct append_job *job = job_of(s);

	(void)refusal;
	if (error != NULL)
		log_error(s->id, "the staging mailbox %s of user %s is left behind: %s",
		    job->staging_wire, s->creds.user != NULL ? s->creds.user : "?", error);
	fail(s);
}

bool
multiappend_upstream_gone(struct session *s)
{
	struct append_job *job = job_of(s);

	if (job == NULL || !job->emulated || job->state == APPEND_READING ||
	    job->state == APPEND_QUEUED)
		return false;
	job->upstream_lost = true;
	if (s->backchannel != NULL)
		return true;	/* the second connection finishes the job */
	free(job->failure);
	job->failure = strdup("NO [UNAVAILABLE] Connection to the upstream server "
	    "lost; nothing was appended");
	job->in_literal = false;
	job->wait_plus = false;
	job->cur_left = 0;
	job->sending_done = true;
	job->answered = job->sent;
	if (job->staging_wire != NULL) {
		/* the target was never touched: only the staging mailbox goes */
		job->state = APPEND_ROLLBACK;
		backchannel_delete(s, job->staging_wire, staging_dropped);
		return true;
	}
	if (job->state == APPEND_PREPARING) {
		fail(s);
		return true;
	}
	rollback(s);
	return true;
}

const struct command_entry multiappend_command = {
	.name = "APPEND",
	.start = multiappend_start,
	.input = multiappend_input,
	.answered = multiappend_answered,
};

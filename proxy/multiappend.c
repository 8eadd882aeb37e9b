/*
 * multiappend.c — APPEND, the reason mappend exists.
 *
 * The command's entry in the table takes the client's input over: every
 * message literal is spooled to disk before anything goes upstream, and
 * limits are checked as each literal is announced, so a refusal costs the
 * upstream nothing.  Then the job takes its turn:
 *
 * - one message, or an upstream with MULTIAPPEND of its own: the command is
 *   replayed upstream as it came, under the client's tag, and the upstream's
 *   answer is the client's answer;
 * - several messages to an upstream without MULTIAPPEND: once the commands
 *   before it are answered, the messages go up as single APPENDs of the
 *   proxy's own (pipelined where the upstream takes {n+}), and the client
 *   gets one tagged answer: OK with one APPENDUID for all of them, or NO
 *   after exactly the messages this command added have been removed again
 *   (rollback.c).  An upstream without UIDPLUS gets them in a staging
 *   mailbox first (staging.c).
 *
 * The job's state changes in one logged place (enter_state), and its fate
 * is decided in one: resolve() finishes it or rolls it back.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "capability.h"
#include "command.h"
#include "credentials.h"
#include "fingerprint.h"
#include "journal.h"
#include "log.h"
#include "metrics.h"
#include "multiappend.h"
#include "relay.h"
#include "response.h"
#include "rollback.h"
#include "session.h"
#include "spool.h"
#include "staging.h"
#include "uidset.h"

/* Bytes read from the spool into the upstream's output at a time. */
#define SEND_CHUNK (256 * 1024)
/* Longest flag list and date of one message, as the client wrote them. */
#define ATTRS_MAX 4096

struct append_job;

struct append_msg {
	struct upload_msg u;	/* state, UID, size, digest: what a rollback needs */
	uint64_t off;		/* in the spool file */
	unsigned lit_flags;	/* IMAP_LIT_BINARY is kept */
	char *attrs;		/* flags and date as written, may be NULL */
	size_t attrs_len;
	struct append_job *job;
};

enum job_state {
	JOB_READING,		/* the command still arrives */
	JOB_QUEUED,		/* read; waits for its turn */
	JOB_PREPARING,		/* asking UIDNEXT, or creating the staging mailbox */
	JOB_SENDING,		/* the messages go upstream */
	JOB_FINISHING,		/* stored: the staged COPY, or a NOOP before OK */
	JOB_ROLLBACK,		/* removing what it added */
};

/* What the job waits for on the client's own upstream connection: when
 * that connection breaks, the answer will never come. */
enum here_wait {
	HERE_NONE,
	HERE_STATUS,		/* STATUS for UIDNEXT */
	HERE_STAGING,		/* CREATE of the staging mailbox */
	HERE_ROLLBACK,		/* UID STORE / UID EXPUNGE */
	HERE_NOOP_OK,		/* NOOP, then OK */
	HERE_NOOP_NO,		/* NOOP, then NO */
};

static const char *const state_names[] = {
	[JOB_READING] = "reading",
	[JOB_QUEUED] = "queued",
	[JOB_PREPARING] = "preparing",
	[JOB_SENDING] = "sending",
	[JOB_FINISHING] = "finishing",
	[JOB_ROLLBACK] = "rollback",
};

struct append_job {
	struct session *s;
	enum job_state state;
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
	struct fingerprinter fp;	/* of the message being spooled */

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

	enum here_wait here;
	struct journal_record *record;	/* in the journal while unresolved */
	bool keep_record;		/* not resolved cleanly: left for recovery */
	struct rollback *rollback;
	bool rollback_remote;	/* ...on a second connection */
	struct staging *staging;

	/* for its log line and the metrics */
	double t_command, t_spooled;	/* log_clock() at its start and when read */
	bool succeeded;			/* answered OK */
	bool rolled_back;		/* a rollback ran and removed all it had to */
};

static void pump(struct append_job *);
static void resolve(struct append_job *);
static void succeed(struct append_job *);
static void fail(struct append_job *);
static void rollback(struct append_job *);
static void finish_staging(struct append_job *);
static char *stored_uids(const struct append_job *, size_t *);

static void
enter_state(struct append_job *job, enum job_state state)
{
	if (job->state == state)
		return;
	log_debug(session_id(job->s), "APPEND %s -> %s", state_names[job->state],
	    state_names[state]);
	job->state = state;
}

uint64_t
multiappend_limit(const struct session *s)
{
	uint64_t limit = session_config(s)->max_message_size;
	const struct upstream_caps *caps = response_caps(s);

	if (caps->appendlimit > 0 && caps->appendlimit < limit)
		limit = caps->appendlimit;
	return limit;
}

static void
release_spool(struct append_job *job)
{
	spool_close(job->spool);
	job->spool = NULL;
	spool_release(job->reserved);
	job->reserved = 0;
}

static void
job_free(struct append_job *job)
{
	unsigned i;

	rollback_free(job->rollback);
	staging_free(job->staging);
	journal_keep(job->record);	/* unresolved: the next start resolves it */
	for (i = 0; i < job->nmsgs; i++)
		free(job->msgs[i].attrs);
	free(job->msgs);
	fingerprinter_free(&job->fp);
	release_spool(job);
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
	const struct append_job *job = session_job(s);

	return job != NULL && job->state >= JOB_PREPARING;
}

bool
multiappend_in_progress(const struct session *s)
{
	const struct append_job *job = session_job(s);

	return job != NULL && job->state != JOB_READING;
}

void
multiappend_free(struct session *s)
{
	struct append_job *job = session_job(s);

	if (job == NULL)
		return;
	session_set_job(s, NULL);
	job_free(job);
}

static enum metrics_outcome
outcome(const struct append_job *job)
{
	if (job->succeeded)
		return METRICS_MA_OK;
	if (job->keep_record)
		return METRICS_MA_ROLLBACK_FAILED;	/* something may be left */
	if (session_client_gone(job->s))
		return METRICS_MA_CLIENT_GONE;
	/* the messages stored were removed again; otherwise none was */
	return job->rolled_back ? METRICS_MA_ROLLED_BACK : METRICS_MA_REFUSED;
}

/* One line and the metrics per MULTIAPPEND (several messages), whatever
 * its end: who, where, how much, how long, and how it ended. */
static void
account(struct append_job *job)
{
	struct session *s = job->s;
	enum metrics_outcome o = outcome(job);
	double now = log_clock();
	double spooled = job->t_spooled > 0 ? job->t_spooled : now;
	uint64_t bytes = 0, sent_bytes = 0;
	unsigned i, stored = 0;
	size_t n = 0;
	char *uids, detail[1024] = "";

	if (job->nmsgs < 2)
		return;		/* an APPEND, or refused at its first message */
	uids = stored_uids(job, &n);
	for (i = 0; i < job->nmsgs; i++) {
		bytes += job->msgs[i].u.fp.size;
		if (i < job->sent || !job->emulated)
			sent_bytes += job->msgs[i].u.fp.size;
		stored += job->msgs[i].u.state == UPLOAD_STORED;
	}
	session_note_multiappend(s);
	metrics_multiappend(o, now - job->t_command, job->emulated ? job->sent :
	    job->nmsgs, job->emulated || job->one != NULL ? sent_bytes : 0);
	if (o == METRICS_MA_OK && uids != NULL && *uids != '\0')
		snprintf(detail, sizeof(detail), " uids=%s", uids);
	else if (o != METRICS_MA_OK)
		snprintf(detail, sizeof(detail), " sent=%u stored=%u%s reason=\"%s\"",
		    job->emulated ? job->sent : 0, stored,
		    job->keep_record ? " rollback=failed" : !job->rolled_back ? "" :
		    job->staging_wire != NULL ? " rollback=staging-deleted" :
		    job->rollback_remote ? " rollback=second-connection" :
		    " rollback=same-connection",
		    job->failure != NULL ? job->failure : job->refusal != NULL ?
		    job->refusal : "");
	log_info(session_id(s), "MULTIAPPEND user=%s mailbox=\"%s\" messages=%u "
	    "bytes=%llu spool=%.3fs replay=%.3fs%s outcome=%s%s",
	    credentials_user(s), job->mailbox != NULL ? job->mailbox : "",
	    job->nmsgs, (unsigned long long)bytes, spooled - job->t_command,
	    now - spooled, job->emulated ? "" : " (by the upstream)",
	    metrics_outcome_name(o), detail);
	free(uids);
}

/* The job is over: the client may go on, or the session ends. */
static void
end_job(struct append_job *job)
{
	struct session *s = job->s;
	bool lost = job->upstream_lost;

	account(job);
	multiappend_free(s);
	relay_hold(s, RELAY_HOLD_APPEND, false);
	if (session_client_gone(s))
		session_close(s, NULL);
	else if (lost)
		session_close(s, "Connection to the upstream server lost");
	else if (session_proxy(s)->shutting_down)
		session_close(s, "Server shutting down");
	else
		session_resume_input(s);
}

static void
set_text(char **field, const char *text)
{
	free(*field);
	*field = text != NULL ? strdup(text) : NULL;
}

/* ---- reading the command ---- */

/* Answer the client now with the refusal and forget the command. */
static void
answer_refusal(struct append_job *job)
{
	session_reply(job->s, "%.*s %s", (int)job->taglen, job->tag,
	    job->refusal != NULL ? job->refusal : "NO APPEND failed");
	relay_release_input(job->s);
	end_job(job);
}

/*
 * The command cannot succeed.  If the client waits for a "+" for the literal
 * that follows, it gets the answer now and gives the command up; if it sends
 * a non-synchronizing literal, that literal and the rest of the command are
 * read and dropped first, never taken for commands.
 */
static void
refuse(struct append_job *job, struct imap_framer *fr, const struct imap_segment *seg,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void
refuse(struct append_job *job, struct imap_framer *fr, const struct imap_segment *seg,
    const char *fmt, ...)
{
	struct session *s = job->s;
	va_list ap;

	if (job->refusal == NULL) {
		va_start(ap, fmt);
		if (vasprintf(&job->refusal, fmt, ap) < 0)
			job->refusal = NULL;
		va_end(ap);
	}
	log_info(session_id(s), "APPEND refused: %s",
	    job->refusal != NULL ? job->refusal : "?");
	release_spool(job);	/* of no use any more */
	if (seg->last) {
		answer_refusal(job);
	} else if (!(seg->literal_flags & IMAP_LIT_NONSYNC)) {
		imap_framer_reset_line(fr);
		answer_refusal(job);
	} else if (seg->literal > session_config(s)->max_session_spool) {
		/* too much to read only to throw away */
		log_info(session_id(s), "non-synchronizing literal of %llu bytes refused",
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
	free(job->mailbox_wire);
	job->mailbox_wire = NULL;
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
	const struct imap_token *tag = &seg->tok[0];
	struct append_job *job;

	if ((job = calloc(1, sizeof(*job))) == NULL ||
	    fingerprinter_init(&job->fp) != 0) {
		if (job != NULL)
			fingerprinter_free(&job->fp);
		free(job);
		session_close(s, "Out of memory");
		return VERDICT_CLOSE;
	}
	job->s = s;
	job->t_command = log_clock();
	memcpy(job->tag, buf + tag->off, tag->len);
	job->taglen = tag->len;
	session_set_job(s, job);
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
finish_reading(struct append_job *job)
{
	struct session *s = job->s;

	relay_release_input(s);
	relay_hold(s, RELAY_HOLD_APPEND, true);
	job->t_spooled = log_clock();
	enter_state(job, JOB_QUEUED);
	job->emulated = job->nmsgs > 1 && !response_caps(s)->multiappend;
	log_debug(session_id(s), "APPEND of %u message%s (%llu bytes) spooled, %s",
	    job->nmsgs, job->nmsgs == 1 ? "" : "s",
	    (unsigned long long)spool_size(job->spool),
	    job->emulated ? "emulating MULTIAPPEND" : "replaying as one command");
	multiappend_kick(s);
}

/* A message literal is announced: NULL when it is within every limit,
 * otherwise the refusal. */
static const char *
over_limit(struct append_job *job, uint64_t size, char *why, size_t whylen)
{
	const struct config *cfg = session_config(job->s);
	uint64_t limit = multiappend_limit(job->s);
	uint64_t spooled = job->spool != NULL ? spool_size(job->spool) : 0;

	if (size == 0)
		return "NO Zero-length message literal: APPEND cancelled";
	if (size > limit)
		snprintf(why, whylen, "NO [TOOBIG] Message of %llu bytes is larger than "
		    "the limit of %llu bytes", (unsigned long long)size,
		    (unsigned long long)limit);
	else if (job->nmsgs + 1 > cfg->max_messages)
		snprintf(why, whylen, "NO [LIMIT] More than %u messages in one APPEND",
		    cfg->max_messages);
	else if (spooled + size > cfg->max_session_spool)
		snprintf(why, whylen, "NO [LIMIT] This APPEND is larger than the %llu "
		    "bytes a session may upload at once",
		    (unsigned long long)cfg->max_session_spool);
	else if (spool_reserve(size) != 0)
		return "NO [LIMIT] The proxy's spool is full, try again later";
	else
		return NULL;
	return why;
}

/* Room for one more message; NULL when out of memory. */
static struct append_msg *
add_message(struct append_job *job)
{
	struct append_msg *m;

	if (job->nmsgs == job->cap) {
		unsigned cap = job->cap ? job->cap * 2 : 8;
		struct append_msg *msgs = realloc(job->msgs, cap * sizeof(*msgs));

		if (msgs == NULL)
			return NULL;
		job->msgs = msgs;
		job->cap = cap;
	}
	m = &job->msgs[job->nmsgs++];
	memset(m, 0, sizeof(*m));
	m->job = job;
	return m;
}

/* A message literal is announced: check it against every limit. */
static void
message_literal(struct append_job *job, struct imap_framer *fr, const char *buf,
    const struct imap_segment *seg, unsigned first_attr)
{
	struct session *s = job->s;
	uint64_t size = seg->literal;
	struct append_msg *m;
	size_t off, end;
	char why[200];
	const char *no;

	if ((no = over_limit(job, size, why, sizeof(why))) != NULL) {
		refuse(job, fr, seg, "%s", no);
		return;
	}
	job->reserved += size;
	if (job->spool == NULL && (job->spool = spool_open()) == NULL) {
		log_error(session_id(s), "cannot create a spool file: %s", strerror(errno));
		refuse(job, fr, seg, "NO [UNAVAILABLE] The proxy cannot store the "
		    "upload: %s", strerror(errno));
		return;
	}
	if ((m = add_message(job)) == NULL) {
		refuse(job, fr, seg, "NO [SERVERBUG] Out of memory");
		return;
	}
	m->off = spool_size(job->spool);
	fingerprint_begin(&job->fp);
	m->u.fp.size = size;
	m->lit_flags = seg->literal_flags & IMAP_LIT_BINARY;
	/* flags and date exactly as the client wrote them */
	off = first_attr < seg->ntok ? seg->tok[first_attr].off : seg->literal_off;
	end = seg->literal_off;
	while (end > off && buf[end - 1] == ' ')
		end--;
	if (end - off > ATTRS_MAX) {
		refuse(job, fr, seg, "BAD Flags and date of a message longer than %d "
		    "bytes", ATTRS_MAX);
		return;
	}
	if (end > off) {
		if ((m->attrs = malloc(end - off)) == NULL) {
			refuse(job, fr, seg, "NO [SERVERBUG] Out of memory");
			return;
		}
		memcpy(m->attrs, buf + off, end - off);
		m->attrs_len = end - off;
	}
	if (!(seg->literal_flags & IMAP_LIT_NONSYNC))
		session_reply(s, "+ Ready for literal data");
}

static void mailbox_literal_done(struct append_job *);

/* The mailbox name, the first argument; false when the segment is used up
 * (refused, or the name comes as a literal). */
static bool
read_mailbox(struct append_job *job, struct imap_framer *fr, const char *buf,
    const struct imap_segment *seg, unsigned *i)
{
	const struct imap_token *t = *i < seg->ntok ? &seg->tok[*i] : NULL;
	char name[COMMAND_MAX_ARG_LEN];
	int n;

	if (t != NULL && t->kind == IMAP_TOK_LITERAL) {
		if (seg->literal > COMMAND_MAX_ARG_LEN) {
			refuse(job, fr, seg, "BAD Mailbox name longer than %d bytes",
			    COMMAND_MAX_ARG_LEN);
		} else if ((job->mailbox = calloc(1, seg->literal + 1)) == NULL) {
			refuse(job, fr, seg, "NO [SERVERBUG] Out of memory");
		} else {
			job->mailbox_literal = true;
			if (!(seg->literal_flags & IMAP_LIT_NONSYNC))
				session_reply(job->s, "+ Ready for literal data");
			/* {0}: no literal data comes to end it (found by
			 * fuzz_session: the next literal, a message, was
			 * written into the name) */
			if (seg->literal == 0)
				mailbox_literal_done(job);
		}
		return false;
	}
	if (t == NULL || (n = imap_unquote(buf, t, name, sizeof(name))) < 0) {
		refuse(job, fr, seg, "BAD Missing or invalid mailbox name");
		return false;
	}
	if (!set_mailbox(job, name, (size_t)n)) {
		refuse(job, fr, seg, "NO Mailbox name not supported by this proxy");
		return false;
	}
	(*i)++;
	return true;
}

/* The rest of a refused command: read and dropped. */
static void
discard_segment(struct append_job *job, struct imap_framer *fr,
    const struct imap_segment *seg)
{
	if (seg->last || !(seg->literal_flags & IMAP_LIT_NONSYNC)) {
		if (!seg->last)
			imap_framer_reset_line(fr);
		answer_refusal(job);
		return;
	}
	if (seg->literal > session_config(job->s)->max_session_spool)
		session_close(job->s, "Literal too large");
	else
		imap_framer_skip_literal(fr);
}

/* One segment of the command (it is consumed by the caller afterwards:
 * buf must stay readable until then). */
static void
append_segment(struct append_job *job, struct imap_framer *fr,
    const struct imap_frame *f)
{
	const struct imap_segment *seg = &f->seg;
	unsigned i = seg->first ? 2 : 0, end = seg->ntok;

	if (job->discarding) {
		discard_segment(job, fr, seg);
		return;
	}
	if (!seg->last && !seg->truncated)
		end--;		/* the literal token */
	if (job->mailbox == NULL && !read_mailbox(job, fr, f->buf, seg, &i))
		return;
	if (seg->last) {
		if (i < seg->ntok || job->nmsgs == 0)
			refuse(job, fr, seg, "BAD Missing message literal");
		else
			finish_reading(job);
		return;
	}
	if (seg->truncated || !valid_attrs(seg, i, end)) {
		refuse(job, fr, seg, "BAD Invalid flags or date-time before a message");
		return;
	}
	message_literal(job, fr, f->buf, seg, i);
}

/* The whole mailbox name has arrived as a literal. */
static void
mailbox_literal_done(struct append_job *job)
{
	char *name = job->mailbox;

	job->mailbox = NULL;
	job->mailbox_literal = false;
	if (!set_mailbox(job, name, job->mailbox_len)) {
		set_text(&job->refusal, "NO Mailbox name not supported by this proxy");
		job->discarding = true;
	}
	free(name);
}

/* n bytes of the current literal: the mailbox name, or a message to spool.
 * Each byte is consumed exactly once, through fr. */
static void
append_literal(struct append_job *job, struct imap_framer *fr, struct evbuffer *in,
    size_t n)
{
	int err;

	if (job->mailbox_literal) {
		evbuffer_remove(in, job->mailbox + job->mailbox_len, n);
		imap_framer_consumed(fr, n);
		job->mailbox_len += n;
		if (imap_framer_literal_left(fr) == 0)
			mailbox_literal_done(job);
		return;
	}
	if (job->discarding) {
		imap_framer_drop(fr, in, n);
		return;
	}
	if (spool_write(job->spool, in, n, &job->fp) == 0) {
		struct append_msg *m = &job->msgs[job->nmsgs - 1];

		imap_framer_consumed(fr, n);
		if (imap_framer_literal_left(fr) == 0)
			(void)fingerprint_end(&job->fp, &m->u.fp);	/* a zero digest never matches */
		return;
	}
	/* spool_write took exactly n bytes out of in either way; the rest of
	 * the literal is dropped by the framer as it comes */
	err = errno;
	imap_framer_consumed(fr, n);
	imap_framer_skip_literal(fr);
	log_error(session_id(job->s), "spool write failed: %s", strerror(err));
	if (job->refusal == NULL && asprintf(&job->refusal, "NO [UNAVAILABLE] The "
	    "proxy cannot store the upload: %s", strerror(err)) < 0)
		job->refusal = NULL;
	job->discarding = true;
	release_spool(job);
}

/* The command's input, frame by frame, while it arrives. */
static void
multiappend_input(struct session *s, struct imap_framer *fr, struct evbuffer *in,
    const struct imap_frame *f)
{
	struct append_job *job = session_job(s);

	if (f->kind == IMAP_FRAME_LITERAL) {
		append_literal(job, fr, in, f->len);
		return;
	}
	/* the job may end here (a refusal answered): only fr is used after */
	append_segment(job, fr, f);
	imap_framer_drop(fr, in, f->len);
}

/* ---- replaying it upstream ---- */

/* Whether a literal of this size may go up without waiting for "+". */
static bool
nonsync_ok(const struct append_job *job, uint64_t size)
{
	return capability_nonsync_ok(response_caps(job->s), size);
}

/* The upstream's "+" for a replayed literal: ours, not the client's. */
static bool
replay_plus(struct session *s, void *arg)
{
	struct append_job *job = arg;

	(void)s;
	job->wait_plus = false;
	pump(job);
	return false;
}

/* "APPENDUID uidvalidity uid" in an answer's response code. */
static void
read_appenduid(struct append_job *job, const struct answer *a, uint32_t *uid)
{
	const struct imap_token *code = imap_code(a->line, a->seg, "APPENDUID");
	uint32_t validity, uids[1];
	size_t n = 0;

	if (code != NULL && uidset_parse_appenduid(a->line + code->off, code->len,
	    &validity, uids, 1, &n) == 0 && n == 1) {
		job->uidvalidity = validity;
		*uid = uids[0];
	}
}

static void
replay_answered(void *ctx, const struct answer *a)
{
	struct append_msg *m = ctx;
	struct append_job *job = m->job;

	job->answered++;
	if (a->ok) {
		m->u.state = UPLOAD_STORED;
		read_appenduid(job, a, &m->u.uid);
		if (m->u.uid != 0)
			journal_note_uid(job->record, (size_t)(m - job->msgs), m->u.uid);
	} else {
		m->u.state = UPLOAD_REFUSED;
		if (job->failure == NULL) {
			size_t off = a->seg->ntok >= 2 ? a->seg->tok[1].off : 0;

			job->failure = strndup(a->line + off, a->len - off);
			log_info(session_id(job->s), "upstream refused message %zu of %u: %s",
			    (size_t)(m - job->msgs) + 1, job->nmsgs, job->failure);
		}
	}
	resolve(job);
}

static const struct reply_ops replay_ops = { .tagged = replay_answered };

static void
begin_message(struct append_job *job, unsigned i)
{
	struct session *s = job->s;
	struct evbuffer *out = session_upstream_output(s);
	struct append_msg *m = &job->msgs[i];
	bool nonsync = nonsync_ok(job, m->u.fp.size);

	if (job->emulated) {
		struct pending *p = session_command_pending(s, &replay_ops, m);

		if (p == NULL) {
			session_close(s, "Out of memory");
			return;
		}
		evbuffer_add_printf(out, "%s APPEND %s", p->tag,
		    job->staging_wire != NULL ? job->staging_wire : job->mailbox_wire);
		m->u.state = UPLOAD_SENT;
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
	    (unsigned long long)m->u.fp.size, nonsync ? "+" : "");
	job->cur = i;
	job->cur_off = m->off;
	job->cur_left = m->u.fp.size;
	job->in_literal = true;
	if (!nonsync) {
		job->wait_plus = true;
		relay_expect_plus(s, replay_plus, job);
	}
}

static void
end_message(struct append_job *job)
{
	job->in_literal = false;
	if (job->emulated || job->cur + 1 == job->nmsgs)
		evbuffer_add(session_upstream_output(job->s), "\r\n", 2);
}

/* Feed the upstream as its output drains. */
static void
pump(struct append_job *job)
{
	struct session *s = job->s;
	struct evbuffer *out = session_upstream_output(s);

	while (!session_closing(s) && job->state == JOB_SENDING) {
		if (job->wait_plus || session_output_full(s, SESSION_UPSTREAM))
			return;
		if (job->cur_left > 0) {
			size_t n = job->cur_left < SEND_CHUNK ? (size_t)job->cur_left : SEND_CHUNK;

			if (spool_read(job->spool, job->cur_off, n, out) != 0) {
				log_error(session_id(s), "spool read failed: %s", strerror(errno));
				session_close(s, "Internal error in the proxy's spool");
				return;
			}
			job->cur_off += n;
			job->cur_left -= n;
		} else if (job->in_literal) {
			end_message(job);
		} else if (job->next < job->nmsgs && job->failure == NULL) {
			begin_message(job, job->next++);
		} else if (!job->emulated) {
			/* all of it is on its way; the upstream's answer to the
			 * client's tag is relayed like any other */
			end_job(job);
			return;
		} else {
			job->sending_done = true;
			resolve(job);
			return;
		}
	}
}

static void
start_one(struct append_job *job)
{
	job->one = session_pending_add(job->s, job->tag, job->taglen, &multiappend_command);
	if (job->one == NULL) {
		session_close(job->s, "Out of memory");
		return;
	}
	enter_state(job, JOB_SENDING);
	pump(job);
}

static bool
status_untagged(void *ctx, const char *buf, const struct imap_segment *seg)
{
	struct append_job *job = ctx;

	if (seg->first && (seg->ntok < 2 || !imap_tok_is(buf, &seg->tok[1], "STATUS")))
		return false;
	(void)imap_number_item(buf, seg, "UIDNEXT", &job->uidnext);
	(void)imap_number_item(buf, seg, "UIDVALIDITY", &job->uidvalidity);
	return true;
}

/* Durable before upstream: the upload is in the journal before its first
 * byte goes up.  false (answered) when it cannot be recorded. */
static bool
record_upload(struct append_job *job)
{
	struct session *s = job->s;
	const struct backend *b = session_backend(s);
	struct upload_msg *msgs = calloc(job->nmsgs + 1, sizeof(*msgs));
	char upstream[300];
	struct journal_entry e;
	unsigned i;

	snprintf(upstream, sizeof(upstream), "%s:%s", b->host, b->port);
	for (i = 0; msgs != NULL && i < job->nmsgs; i++)
		msgs[i] = job->msgs[i].u;
	e = (struct journal_entry){ .session = session_id(s),
	    .user = (char *)credentials_user(s), .mailbox = job->mailbox,
	    .upstream = upstream, .staging = job->staging_wire,
	    .backend = b->name[0] != '\0' ? (char *)b->name : NULL,
	    .uidvalidity = job->uidvalidity, .uidnext = job->uidnext,
	    .msgs = msgs, .nmsgs = job->nmsgs };
	if (msgs == NULL || (job->record = journal_begin(&e)) == NULL) {
		log_error(session_id(s), "cannot record the upload in the journal: %s",
		    strerror(errno));
		free(msgs);
		set_text(&job->failure, "NO [UNAVAILABLE] The proxy cannot record the "
		    "upload safely, try again later");
		fail(job);
		return false;
	}
	free(msgs);
	return true;
}

/* A missing mailbox shows in the first APPEND's answer, passed on. */
static void
start_sending(struct append_job *job)
{
	enter_state(job, JOB_SENDING);
	pump(job);
}

static void
staging_created(void *ctx, const char *error, const char *refusal)
{
	struct append_job *job = ctx;
	bool failed = error != NULL || refusal != NULL;

	staging_free(job->staging);	/* error and refusal are its */
	job->staging = NULL;
	job->here = HERE_NONE;
	if (failed) {
		set_text(&job->failure, "NO [CANNOT] The proxy could not create its "
		    "staging mailbox for this MULTIAPPEND");
		fail(job);
		return;
	}
	start_sending(job);
}

/* The name is known and recorded: the staging mailbox is created (a crash
 * from here on leaves a record that names it). */
static void
staging_named(void *ctx, const char *error, const char *refusal)
{
	struct append_job *job = ctx;
	struct session *s = job->s;

	(void)refusal;
	if (error == NULL)
		set_text(&job->staging_wire, staging_mailbox(job->staging));
	staging_free(job->staging);
	job->staging = NULL;
	job->here = HERE_NONE;
	if (job->staging_wire == NULL) {
		set_text(&job->failure, "NO [CANNOT] The proxy could not create its "
		    "staging mailbox for this MULTIAPPEND");
		fail(job);
		return;
	}
	if (!record_upload(job))
		return;
	job->here = HERE_STAGING;
	if ((job->staging = staging_start(session_proxy(s), session_config(s),
	    session_backend(s), session_id(s), s, NULL, STAGING_CREATE, job->staging_wire, NULL, NULL,
	    0, staging_created, job)) == NULL)
		session_close(s, "Out of memory");
}

/* No UIDPLUS: the upload goes into a staging mailbox first. */
static void
start_staging(struct append_job *job)
{
	struct session *s = job->s;

	if (!credentials_usable(s)) {
		set_text(&job->failure, "NO [CANNOT] This server lacks UIDPLUS: "
		    "MULTIAPPEND through mappend then needs a LOGIN or AUTHENTICATE "
		    "PLAIN login, or a configured master user");
		log_warn(session_id(s), "MULTIAPPEND refused: upstream without UIDPLUS "
		    "and no credentials for a second connection");
		fail(job);
		return;
	}
	job->here = HERE_STAGING;
	if ((job->staging = staging_start(session_proxy(s), session_config(s),
	    session_backend(s), session_id(s), s, NULL, STAGING_NAME, NULL, NULL, NULL, 0, staging_named,
	    job)) == NULL)
		session_close(s, "Out of memory");
}

/* The target's UIDVALIDITY and UIDNEXT are known. */
static void
status_done(void *ctx, const struct answer *a)
{
	struct append_job *job = ctx;

	(void)a;
	job->here = HERE_NONE;
	if (!response_caps(job->s)->uidplus)
		start_staging(job);
	else if (record_upload(job))
		start_sending(job);
}

static const struct reply_ops status_ops = {
	.untagged = status_untagged, .tagged = status_done,
};

/* Several messages, all or nothing: the upstream's state must be known,
 * so the commands before this one are answered first. */
static void
start_emulation(struct append_job *job)
{
	struct session *s = job->s;

	enter_state(job, JOB_PREPARING);
	job->here = HERE_STATUS;
	if (session_command(s, &status_ops, job, "STATUS %s (UIDNEXT UIDVALIDITY)",
	    job->mailbox_wire) == NULL)
		session_close(s, "Out of memory");
}

/* A "+" the replay waits for must not be confused with one owed to a
 * command still in flight: replayed as it came, the command only goes
 * when all of it is non-synchronizing or nothing is in flight. */
static bool
may_start(const struct append_job *job, bool quiet)
{
	unsigned i;

	if (job->emulated || quiet)
		return quiet;
	for (i = 0; i < job->nmsgs; i++)
		if (!nonsync_ok(job, job->msgs[i].u.fp.size))
			return false;
	return true;
}

void
multiappend_kick(struct session *s)
{
	struct append_job *job = session_job(s);
	bool quiet;

	if (job == NULL || session_closing(s) || !session_has_upstream(s))
		return;
	quiet = session_pending_count(s) == 0 && relay_quiet(s);
	if (job->state == JOB_QUEUED && may_start(job, quiet)) {
		if (job->emulated)
			start_emulation(job);
		else
			start_one(job);
	} else if (job->state == JOB_SENDING) {
		pump(job);
	}
}

/* The client's APPEND, replayed as one command, was answered. */
static void
multiappend_answered(struct session *s, struct pending *p, const struct answer *a)
{
	struct append_job *job = session_job(s);

	if (job == NULL || job->one != p)
		return;
	/* answered before all of it went up (a refused synchronizing
	 * literal): the rest is not wanted */
	if (job->wait_plus)
		relay_expect_plus(s, NULL, NULL);
	job->succeeded = a->ok;
	end_job(job);
}

/* ---- the outcome ---- */

/* The UIDs of the stored messages, in append order; *n of them. */
static char *
stored_uids(const struct append_job *job, size_t *n)
{
	uint32_t *uids = calloc(job->nmsgs + 1, sizeof(*uids));
	char *set;
	unsigned i;

	*n = 0;
	if (uids == NULL)
		return NULL;
	for (i = 0; i < job->nmsgs; i++)
		if (job->msgs[i].u.state == UPLOAD_STORED && job->msgs[i].u.uid != 0)
			uids[(*n)++] = job->msgs[i].u.uid;
	set = uidset_format(uids, *n);
	free(uids);
	return set;
}

static void
succeed(struct append_job *job)
{
	struct session *s = job->s;
	size_t n = 0;
	char *set;

	/* durably out of the journal before the OK: a crash after it must not
	 * take the upload back */
	if (journal_end(job->record, true) != 0) {
		job->record = NULL;
		log_error(session_id(s), "cannot remove the upload's journal record: "
		    "%s; the upload is undone instead", strerror(errno));
		set_text(&job->failure, "NO [UNAVAILABLE] The proxy could not complete "
		    "the upload safely");
		if (job->staging_wire != NULL)
			fail(job);	/* the record was kept by nobody: see log */
		else
			rollback(job);
		return;
	}
	job->record = NULL;
	set = stored_uids(job, &n);

	if (response_caps(s)->uidplus && set != NULL && n == job->nmsgs)
		session_reply(s, "%.*s OK [APPENDUID %u %s] Append completed",
		    (int)job->taglen, job->tag, job->uidvalidity, set);
	else
		session_reply(s, "%.*s OK Append completed", (int)job->taglen, job->tag);
	job->succeeded = true;
	free(set);
	end_job(job);
}

/* The client's answer after a failure; the mailbox is as it was (or the
 * log says which UIDs could not be removed). */
static void
fail(struct append_job *job)
{
	if (job->keep_record) {
		log_error(session_id(job->s), "the upload's journal record stays: it is "
		    "resolved at the next start");
		journal_keep(job->record);
	} else {
		journal_end(job->record, false);
	}
	job->record = NULL;
	if (!session_client_gone(job->s))
		session_reply(job->s, "%.*s %s", (int)job->taglen, job->tag,
		    job->failure != NULL ? job->failure : "NO Append failed");
	end_job(job);
}

/* The target mailbox is selected on the client's usable connection
 * (read_write: for writing). */
static bool
target_selected(const struct append_job *job, bool read_write)
{
	bool rw = false;
	const char *selected = session_selected(job->s, &rw);

	return !job->upstream_lost && session_has_upstream(job->s) &&
	    selected != NULL && session_same_mailbox(selected, job->mailbox) &&
	    (rw || !read_write);
}

static void
noop_done(void *ctx, const struct answer *a)
{
	struct append_job *job = ctx;
	enum here_wait here = job->here;

	(void)a;
	job->here = HERE_NONE;
	if (here == HERE_NOOP_OK)
		succeed(job);
	else
		fail(job);
}

static const struct reply_ops noop_ops = { .tagged = noop_done };

/* A client that has the target open hears of the change (EXISTS, EXPUNGE)
 * before the tagged answer, so its view stays right; then the answer. */
static void
tell_then_answer(struct append_job *job, bool ok)
{
	if (!session_client_gone(job->s) && target_selected(job, false)) {
		job->here = ok ? HERE_NOOP_OK : HERE_NOOP_NO;
		if (session_command(job->s, &noop_ops, job, "NOOP") == NULL)
			session_close(job->s, "Out of memory");
	} else if (ok) {
		succeed(job);
	} else {
		fail(job);
	}
}

static void
rolled_back(void *ctx, const char *error)
{
	struct append_job *job = ctx;

	/* error belongs to the rollback: used before it is freed */
	job->keep_record = error != NULL;
	job->rolled_back = error == NULL;
	metrics_rollback(error == NULL);
	if (error != NULL)
		log_error(session_id(job->s), "rollback failed: %s", error);
	else if (job->rollback_remote)
		log_info(session_id(job->s), "rolled back on a second connection: "
		    "\"%s\" is as before", job->mailbox);
	rollback_free(job->rollback);
	job->rollback = NULL;
	job->here = HERE_NONE;
	if (job->rollback_remote)
		tell_then_answer(job, false);
	else
		fail(job);
}

/* Remove exactly what this command added, then answer NO. */
static void
rollback(struct append_job *job)
{
	struct session *s = job->s;
	struct upload_msg *msgs = calloc(job->nmsgs + 1, sizeof(*msgs));
	struct rollback_plan plan;
	struct rollback_target t;
	struct login login;
	unsigned i;
	int have_login;

	enter_state(job, JOB_ROLLBACK);
	for (i = 0; msgs != NULL && i < job->nmsgs; i++)
		msgs[i] = job->msgs[i].u;
	if (msgs == NULL || rollback_plan(msgs, job->nmsgs, job->upstream_lost,
	    target_selected(job, true), &plan) != 0) {
		free(msgs);
		session_close(s, "Out of memory");
		return;
	}
	free(msgs);
	if (rollback_plan_empty(&plan)) {
		rollback_plan_free(&plan);
		fail(job);
		return;
	}
	t = (struct rollback_target){ .mailbox = job->mailbox,
	    .mailbox_wire = job->mailbox_wire, .uidnext = job->uidnext,
	    .user = credentials_user(s), .uidvalidity = job->uidvalidity };
	have_login = plan.own_connection ? -1 : credentials_login(s, &login);
	job->rollback_remote = !plan.own_connection;
	job->here = plan.own_connection ? HERE_ROLLBACK : HERE_NONE;
	job->rollback = rollback_start(session_proxy(s), session_config(s),
	    session_backend(s), session_id(s), s, have_login == 0 ? &login : NULL, &plan, &t,
	    rolled_back, job);
	if (have_login == 0)
		login_clear(&login);
	rollback_plan_free(&plan);
	if (job->rollback == NULL)
		session_close(s, "Out of memory");
}

static void
staging_copied(void *ctx, const char *error, const char *refusal)
{
	struct append_job *job = ctx;
	bool failed = error != NULL || refusal != NULL;

	if (error != NULL)
		log_error(session_id(job->s), "copying the staged upload into "
		    "\"%s\" failed: %s", job->mailbox, error);
	if (failed)
		set_text(&job->failure, refusal != NULL ? refusal :
		    "NO [UNAVAILABLE] The proxy could not complete the upload");
	staging_free(job->staging);	/* error and refusal are its */
	job->staging = NULL;
	if (failed)
		fail(job);
	else
		tell_then_answer(job, true);
}

static void
staging_dropped(void *ctx, const char *error, const char *refusal)
{
	struct append_job *job = ctx;

	(void)refusal;
	if (error != NULL)
		log_error(session_id(job->s), "the staging mailbox %s of user %s is "
		    "left behind: %s", job->staging_wire, credentials_user(job->s), error);
	job->keep_record = error != NULL;
	job->rolled_back = error == NULL;
	metrics_rollback(error == NULL);
	staging_free(job->staging);	/* error is its */
	job->staging = NULL;
	job->here = HERE_NONE;
	fail(job);
}

/* Everything is in the staging mailbox, or something went wrong: one COPY
 * into the target, or the staging mailbox goes. */
static void
finish_staging(struct append_job *job)
{
	struct session *s = job->s;
	bool copy = job->failure == NULL && !session_client_gone(s);
	bool here = !copy && !job->upstream_lost && session_has_upstream(s);
	struct fingerprint *msgs = calloc(job->nmsgs + 1, sizeof(*msgs));
	struct login login;
	int have_login = here ? -1 : credentials_login(s, &login);
	unsigned i;

	enter_state(job, copy ? JOB_FINISHING : JOB_ROLLBACK);
	job->here = here ? HERE_STAGING : HERE_NONE;
	for (i = 0; msgs != NULL && i < job->nmsgs; i++) {
		msgs[i] = job->msgs[i].u.fp;
	}
	if (msgs != NULL)
		job->staging = staging_start(session_proxy(s), session_config(s),
		    session_backend(s), session_id(s), here ? s : NULL, have_login == 0 ? &login : NULL,
		    copy ? STAGING_COPY : STAGING_DELETE, job->staging_wire,
		    job->mailbox_wire, msgs, job->nmsgs,
		    copy ? staging_copied : staging_dropped, job);
	free(msgs);
	if (have_login == 0)
		login_clear(&login);
	if (job->staging == NULL)
		session_close(s, "Out of memory");
}

/*
 * The one place that decides a job's fate, once every message sent has
 * its answer (or none can come any more): finish it, or undo it.
 */
static void
resolve(struct append_job *job)
{
	if (job->state != JOB_SENDING)
		return;
	if (!job->sending_done && job->failure == NULL && !job->upstream_lost)
		return;
	if (!job->upstream_lost && (job->in_literal || job->wait_plus ||
	    job->cur_left > 0 || job->answered < job->sent))
		return;		/* a literal or an answer is still to come */
	job->sending_done = true;
	if (job->staging_wire != NULL)
		finish_staging(job);
	else if (job->failure == NULL && !session_client_gone(job->s))
		succeed(job);
	else
		rollback(job);
}

/* ---- the session's hooks ---- */

bool
multiappend_client_gone(struct session *s)
{
	struct append_job *job = session_job(s);

	if (job == NULL)
		return false;
	if (job->state == JOB_READING || job->state == JOB_QUEUED || !job->emulated) {
		/* nothing of it went upstream, or it is the upstream's own
		 * command now: nothing to finish */
		multiappend_free(s);
		return false;
	}
	log_info(session_id(s), "client left during MULTIAPPEND: it never saw OK, "
	    "so the messages are removed again");
	if (job->failure == NULL)
		job->failure = strdup("NO Client disconnected");
	return true;
}

/*
 * The client's upstream connection broke.  What went up is removed on a
 * second connection (rollback.c finds even the messages whose answer was
 * lost); work already on a second connection goes on; an answer the job
 * waited for on the broken connection will never come, so the job moves on
 * without it.
 */
bool
multiappend_upstream_gone(struct session *s)
{
	struct append_job *job = session_job(s);
	enum here_wait here;

	if (job == NULL || !job->emulated || job->state == JOB_READING ||
	    job->state == JOB_QUEUED)
		return false;
	job->upstream_lost = true;
	set_text(&job->failure, "NO [UNAVAILABLE] Connection to the upstream server "
	    "lost; nothing was appended");
	here = job->here;
	job->here = HERE_NONE;
	switch (here) {
	case HERE_STATUS:
		fail(job);
		break;
	case HERE_STAGING:	/* the CREATE or DELETE may have run */
		if (job->staging_wire == NULL && job->staging != NULL &&
		    *staging_mailbox(job->staging) != '\0')
			set_text(&job->staging_wire, staging_mailbox(job->staging));
		staging_free(job->staging);
		job->staging = NULL;
		if (job->staging_wire != NULL)
			finish_staging(job);
		else
			fail(job);
		break;
	case HERE_ROLLBACK:	/* again, on a second connection */
		rollback_free(job->rollback);
		job->rollback = NULL;
		rollback(job);
		break;
	case HERE_NOOP_OK:
		succeed(job);
		break;
	case HERE_NOOP_NO:
		fail(job);
		break;
	case HERE_NONE:
		resolve(job);
		break;
	}
	return true;
}

const struct command_entry multiappend_command = {
	.name = "APPEND",
	.start = multiappend_start,
	.input = multiappend_input,
	.answered = multiappend_answered,
};

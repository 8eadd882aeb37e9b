/*
 * relay.c — moving bytes between the client and the upstream with IMAP
 * framing: segments are tokenized and handed to the command table or the
 * response handler, literal data is moved by count from one evbuffer chain
 * to the other without being copied or looked at.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "log.h"
#include "session.h"

/* Output queued towards one side beyond which the other side is not read;
 * the write low watermark (session.c) says when to go on. */
#define OUTPUT_HIGH (1024 * 1024)

/* The longest upstream response line: data responses such as SEARCH of a
 * large mailbox are much longer than any sane command. */
#define RESPONSE_LINE_MAX (16 * 1024 * 1024)

/*
 * Output towards one side is full: stop reading the other side until it
 * drains (the write callbacks in session.c resume it), so that what one
 * side sends faster than the other takes sits in neither buffer.
 */
bool
relay_backpressure(struct session *s, struct bufferevent *to)
{
	if (to == s->client && s->client_gone)
		return false;	/* its output is thrown away */
	if (evbuffer_get_length(bufferevent_get_output(to)) < OUTPUT_HIGH)
		return false;
	if (to == s->client)
		session_upstream_reading(s, false);
	else
		session_client_reading(s, false);
	return true;
}

size_t
relay_response_line_max(const struct session *s)
{
	size_t max = s->proxy->cfg->max_line_length;

	return max > RESPONSE_LINE_MAX ? max : RESPONSE_LINE_MAX;
}

/* Store literal bytes of an argument the proxy keeps (mailbox, login). */
static void
capture_literal(struct session *s, struct evbuffer *in, size_t n)
{
	struct pending *p = s->cmd_current;
	int i = s->cmd_capture_arg;

	if (p == NULL || i < 0 || p->arg[i] == NULL)
		return;
	evbuffer_copyout(in, p->arg[i] + p->arglen[i], n);
	p->arglen[i] += n;
}

/*
 * The text of a segment that failed to parse ends with "+}": a
 * non-synchronizing literal follows whose size cannot be trusted, so the
 * bytes that come next cannot be told from commands.
 */
static bool
ends_with_nonsync_header(const char *buf, size_t len)
{
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	return len >= 2 && buf[len - 1] == '}' && buf[len - 2] == '+';
}

static void
client_syntax_error(struct session *s, struct evbuffer *in, const char *buf,
    size_t len, bool first)
{
	const char *why = s->cmd_parser.error;
	size_t taglen = 0;

	log_info(s->id, "client protocol error: %s", why);
	if (!first || ends_with_nonsync_header(buf, len)) {
		/* part of the command is upstream already, or the client is
		 * sending bytes of unknown length: no way back in step */
		session_close(s, why);
		return;
	}
	while (taglen < len && buf[taglen] != ' ' && buf[taglen] != '\r' &&
	    buf[taglen] != '\n')
		taglen++;
	if (taglen > SESSION_MAX_TAG || !imap_valid_tag(buf, taglen))
		session_reply(s, "* BAD %s", why);
	else
		session_reply(s, "%.*s BAD %s", (int)taglen, buf, why);
	evbuffer_drain(in, len);
}

/*
 * The command being read was answered while the client was still sending
 * it.  A client waiting for "+" gives the command up; a {n+} the proxy made
 * synchronizing is sent on by the client but not wanted upstream, so the
 * rest of the command is dropped; otherwise the upstream consumes the rest
 * as it sees fit, and the relay goes on forwarding it.
 */
void
relay_abandon_command(struct session *s)
{
	enum plus_owner plus = s->plus;

	s->cmd_current = NULL;
	s->cmd_capture_arg = -1;
	s->plus = PLUS_NONE;
	s->plus_held = false;
	if (plus == PLUS_CLIENT) {
		s->cmd_literal_left = 0;
		imap_parser_reset_line(&s->cmd_parser);
	} else if (plus == PLUS_PROXY) {
		s->cmd_discard = true;
		s->cmd_literal_drop = true;
	}
}

/* The next segment of a command being relayed upstream. */
static void
relay_command_segment(struct session *s, struct evbuffer *in,
    struct evbuffer *out, size_t len, const struct imap_segment *seg)
{
	struct pending *p = s->cmd_current;
	bool nonsync = (seg->literal_flags & IMAP_LIT_NONSYNC) != 0;

	if (s->cmd_discard) {
		evbuffer_drain(in, len);
		if (seg->last) {
			s->cmd_discard = false;
		} else if (nonsync) {
			s->cmd_literal_left = seg->literal;
			s->cmd_literal_drop = true;
		} else {
			/* it waits for a "+" that will not come */
			s->cmd_discard = false;
			imap_parser_reset_line(&s->cmd_parser);
		}
		return;
	}
	if (seg->last) {
		evbuffer_remove_buffer(in, out, len);
		s->cmd_current = NULL;
		if (p != NULL)
			command_sent(s, p);
		return;
	}
	if (nonsync && !capability_nonsync_ok(&s->caps, seg->literal)) {
		/* the upstream needs a "+" first: ask for it ourselves, and
		 * hold the data the client sends on regardless */
		evbuffer_remove_buffer(in, out, seg->literal_off);
		evbuffer_drain(in, len - seg->literal_off);
		evbuffer_add_printf(out, "%s{%llu}\r\n",
		    (seg->literal_flags & IMAP_LIT_BINARY) ? "~" : "",
		    (unsigned long long)seg->literal);
		s->plus = PLUS_PROXY;
		s->plus_held = true;
	} else {
		evbuffer_remove_buffer(in, out, len);
		if (!nonsync)
			s->plus = PLUS_CLIENT;
	}
	s->cmd_literal_left = seg->literal;
	s->cmd_literal_drop = false;
	s->cmd_capture_arg = command_capture_literal(s, p, seg->literal);
}

static void client_input(struct session *);

void
relay_client_input(struct session *s)
{
	client_input(s);
	session_input_consumed(s);
}

static void
client_input(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->client);
	struct evbuffer *out;
	size_t max_line = s->proxy->cfg->max_line_length;

	if (s->closing || s->upstream == NULL || s->state < SESSION_NOT_AUTHENTICATED)
		return;
	out = bufferevent_get_output(s->upstream);
	while (!s->closing && !s->plus_held) {
		struct imap_segment seg;
		enum command_verdict verdict;
		const char *buf;
		size_t len;
		int r;

		if (s->cmd_literal_left > 0) {
			size_t have = evbuffer_get_length(in);
			size_t n = have < s->cmd_literal_left ? have : (size_t)s->cmd_literal_left;

			if (n == 0)
				return;
			if (s->append_reading) {
				s->cmd_literal_left -= n;
				multiappend_literal(s, in, n);
				continue;
			}
			if (s->cmd_literal_drop) {
				evbuffer_drain(in, n);
			} else {
				if (relay_backpressure(s, s->upstream))
					return;
				capture_literal(s, in, n);
				evbuffer_remove_buffer(in, out, n);
			}
			s->cmd_literal_left -= n;
			if (s->cmd_literal_left == 0)
				s->cmd_capture_arg = -1;
			continue;
		}
		if (!s->cmd_parser.in_line) {
			/* between commands: the places where the proxy may
			 * make the client wait */
			if (s->auth_wait || s->caps_pending || s->append != NULL ||
			    s->npending >= SESSION_MAX_PIPELINE ||
			    relay_backpressure(s, s->upstream))
				return;
		}
		r = imap_next_segment(in, max_line, &s->cmd_scanned, &len);
		if (r == 0)
			return;
		if (r < 0) {
			log_info(s->id, "client line longer than %zu bytes", max_line);
			session_close(s, "Command line too long");
			return;
		}
		s->cmd_scanned = 0;
		buf = (const char *)evbuffer_pullup(in, (ssize_t)len);
		if (s->raw_lines > 0 && !s->cmd_parser.in_line) {
			/* a SASL response or IDLE's DONE: not a command */
			s->raw_lines--;
			if (s->in_authenticate)
				credentials_note_sasl(s, buf, len);
			evbuffer_remove_buffer(in, out, len);
			command_raw_line_sent(s);
			continue;
		}
		if (imap_parse_segment(&s->cmd_parser, buf, len, &seg) < 0) {
			client_syntax_error(s, in, buf, len, seg.first);
			continue;
		}
		if (seg.first) {
			if (seg.ntok == 0) {	/* empty line: ignored */
				evbuffer_drain(in, len);
				continue;
			}
			verdict = command_start(s, buf, &seg);
			if (verdict == VERDICT_CLOSE)
				return;
			if (s->append_reading) {
				multiappend_segment(s, in, buf, len, &seg);
				continue;
			}
			if (verdict == VERDICT_STARTTLS) {
				evbuffer_drain(in, len);
				session_starttls(s);
				return;
			}
			if (verdict == VERDICT_DONE) {
				/* answered by the proxy; whatever of the command
				 * is still to come is dropped */
				s->cmd_discard = true;
				relay_command_segment(s, in, out, len, &seg);
				continue;
			}
		}
		if (s->append_reading) {
			multiappend_segment(s, in, buf, len, &seg);
			continue;
		}
		if (s->cmd_current != NULL)
			command_capture(s, s->cmd_current, buf, &seg);
		relay_command_segment(s, in, out, len, &seg);
	}
}

static void upstream_input(struct session *);

void
relay_upstream_input(struct session *s)
{
	upstream_input(s);
	session_input_consumed(s);
}

static void
upstream_input(struct session *s)
{
	struct evbuffer *in, *out;
	size_t max_line;

	if (s->closing || s->upstream == NULL)
		return;
	in = bufferevent_get_input(s->upstream);
	out = session_client_output(s);
	max_line = relay_response_line_max(s);
	while (!s->closing) {
		struct imap_segment seg;
		const char *buf;
		size_t len;
		int r;

		if (s->resp_literal_left > 0) {
			size_t have = evbuffer_get_length(in);
			size_t n = have < s->resp_literal_left ? have : (size_t)s->resp_literal_left;

			if (n == 0)
				break;
			if (s->resp_drop) {
				evbuffer_drain(in, n);
			} else {
				if (relay_backpressure(s, s->client))
					break;
				evbuffer_remove_buffer(in, out, n);
			}
			s->resp_literal_left -= n;
			continue;
		}
		if (relay_backpressure(s, s->client))
			break;
		r = imap_next_segment(in, max_line, &s->resp_scanned, &len);
		if (r == 0)
			break;
		if (r < 0) {
			log_warn(s->id, "upstream response line longer than %zu bytes", max_line);
			session_close(s, "Upstream protocol error");
			return;
		}
		s->resp_scanned = 0;
		buf = (const char *)evbuffer_pullup(in, (ssize_t)len);
		if (imap_parse_segment(&s->resp_parser, buf, len, &seg) < 0) {
			log_warn(s->id, "upstream protocol error: %s", s->resp_parser.error);
			session_close(s, "Upstream protocol error");
			return;
		}
		if (!response_segment(s, buf, len, &seg))
			return;
		if (!seg.last)
			s->resp_literal_left = seg.literal;
	}
	multiappend_kick(s);
	if (s->resume_client && !s->closing) {
		s->resume_client = false;
		relay_client_input(s);
	}
}

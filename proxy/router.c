/*
 * router.c — the front of a routed session and the route sources.
 *
 * Until login the client talks to the front: it is greeted with what the
 * front itself offers, and CAPABILITY, NOOP, ID, LOGOUT and STARTTLS are
 * answered here.  LOGIN and AUTHENTICATE PLAIN / LOGIN are read whole (the
 * front says "+" for a synchronizing literal and asks for SASL lines), the
 * user's upstream is asked of the map file or the auth_http endpoint, and
 * the session connects there.  Once that upstream is greeted, the login is
 * written back at the start of the client's input, as LOGIN or
 * AUTHENTICATE PLAIN, and the relay carries it like any command of the
 * client's: the answer, the credentials for the second connection, the
 * capabilities after login all come the usual way.  Nothing of the login
 * is logged but the user name.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "authhttp.h"
#include "capability.h"
#include "config.h"
#include "credentials.h"
#include "log.h"
#include "metrics.h"
#include "parser.h"
#include "relay.h"
#include "response.h"
#include "router.h"
#include "routemap.h"
#include "session.h"
#include "tls.h"

#define FRONT_TAG_MAX 64
/* A login's user and password: more is no login anybody has. */
#define FRONT_ARG_MAX 1024
/* An OAuth SASL message, base64 (bearer tokens run to a few KiB). */
#define FRONT_SASL_MAX 16384
/* Failed logins at the front before the session ends. */
#define FRONT_ATTEMPTS_MAX 3

enum front_state {
	FRONT_COMMANDS,		/* reading the client's commands */
	FRONT_SASL,		/* AUTHENTICATE: the client's next line */
	FRONT_ROUTING,		/* asking where the user lives */
	FRONT_WAITING,		/* a refusal's Auth-Wait */
	FRONT_CONNECTING,	/* to the user's upstream, until it is greeted */
};

enum front_method {
	METHOD_LOGIN, METHOD_PLAIN, METHOD_SASL_LOGIN, METHOD_XOAUTH2,
	METHOD_OAUTHBEARER,
};

/* The auth_http endpoint in force, counted: a reload replaces it, and the
 * queries in flight keep theirs until they are answered. */
struct endpoint {
	struct authhttp *http;
	unsigned users;		/* queries in flight, plus one while current */
};

struct front {
	struct imap_framer framer;
	enum front_state state;
	enum front_method method;
	char tag[FRONT_TAG_MAX + 1];
	/* LOGIN's arguments as they come: a literal is read into arg[nargs] */
	char *arg[2];
	size_t arglen[2], nargs;
	int literal_arg;		/* the literal being read, or -1 */
	char *authzid, *user, *pass;	/* the login, wiped when done */
	size_t authzid_len, user_len, pass_len;
	char *sasl;			/* OAuth: the client's message, base64,
					 * replayed as it came (pass: its token) */
	size_t sasl_len;
	unsigned attempts;
	struct endpoint *ep;		/* a query in flight */
	struct authhttp_query *query;
	struct event *wait;		/* Auth-Wait */
	char refusal[300];
};

static struct routemap *route_map;
static struct endpoint *endpoint;

/* ---- the sources ---- */

static void
endpoint_release(struct endpoint *ep)
{
	if (ep != NULL && --ep->users == 0) {
		authhttp_free(ep->http);
		free(ep);
	}
}

static struct endpoint *
endpoint_new(struct proxy *proxy, const struct config *cfg, char *err,
    size_t errlen)
{
	const char *headers[CONFIG_MAX_AUTH_HEADERS + 1];
	struct authhttp_options o = { .url = cfg->auth_http,
	    .timeout = cfg->auth_http_timeout, .cache_entries = cfg->auth_http_cache,
	    .cache_ttl = cfg->auth_http_cache_ttl, .extra_headers = headers };
	struct endpoint *ep = calloc(1, sizeof(*ep));
	size_t i;

	for (i = 0; i < cfg->nauth_http_headers; i++)
		headers[i] = cfg->auth_http_header[i];
	headers[i] = NULL;
	if (ep == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if ((ep->http = authhttp_new(proxy->base, proxy->dns, &o, err,
	    errlen)) == NULL) {
		free(ep);
		return NULL;
	}
	ep->users = 1;
	return ep;
}

struct router_sources {
	struct routemap *map;
	struct endpoint *ep;
	char map_path[4096];
};

struct router_sources *
router_prepare(struct proxy *proxy, const struct config *cfg, char *err,
    size_t errlen)
{
	struct router_sources *rs = calloc(1, sizeof(*rs));

	if (rs == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(rs->map_path, sizeof(rs->map_path), "%s", cfg->route_map);
	if ((cfg->route_map[0] != '\0' &&
	    (rs->map = routemap_load(cfg->route_map, err, errlen)) == NULL) ||
	    (cfg->auth_http[0] != '\0' &&
	    (rs->ep = endpoint_new(proxy, cfg, err, errlen)) == NULL)) {
		router_abort(rs);
		return NULL;
	}
	return rs;
}

void
router_abort(struct router_sources *rs)
{
	if (rs == NULL)
		return;
	routemap_free(rs->map);
	endpoint_release(rs->ep);
	free(rs);
}

void
router_commit(struct router_sources *rs)
{
	routemap_free(route_map);
	route_map = rs->map;
	endpoint_release(endpoint);
	endpoint = rs->ep;
	if (route_map != NULL)
		log_info(0, "route map %s: %zu entr%s", rs->map_path,
		    routemap_entries(route_map),
		    routemap_entries(route_map) == 1 ? "y" : "ies");
	free(rs);
}

void
router_shutdown(void)
{
	routemap_free(route_map);
	route_map = NULL;
	endpoint_release(endpoint);
	endpoint = NULL;
}

/* ---- the front ---- */


/* Forget the login read so far: the next command starts afresh. */
static void
forget_login(struct front *f)
{
	for (size_t i = 0; i < f->nargs; i++)
		credentials_wipe(&f->arg[i], &f->arglen[i]);
	f->nargs = 0;
	f->literal_arg = -1;
	credentials_wipe(&f->authzid, &f->authzid_len);
	credentials_wipe(&f->user, &f->user_len);
	credentials_wipe(&f->pass, &f->pass_len);
	credentials_wipe(&f->sasl, &f->sasl_len);
	f->tag[0] = '\0';
}

static void
capabilities(struct session *s, char *out, size_t len)
{
	const struct config *cfg = session_config(s);
	bool tls = session_client_tls(s);
	bool clear_ok = tls || !session_tls_required(s);

	snprintf(out, len, "IMAP4rev1 LITERAL+ SASL-IR ID MULTIAPPEND%s%s%s%s%s",
	    !tls && tls_server_available(cfg) ? " STARTTLS" : "",
	    clear_ok ? " AUTH=PLAIN AUTH=LOGIN" : " LOGINDISABLED",
	    clear_ok && cfg->route_oauth ? " AUTH=XOAUTH2 AUTH=OAUTHBEARER" : "",
	    cfg->route_capabilities[0] != '\0' ? " " : "", cfg->route_capabilities);
}

struct front *
router_begin(struct session *s, bool greet)
{
	struct front *f = calloc(1, sizeof(*f));
	char caps[800];

	if (f == NULL)
		return NULL;
	imap_framer_init(&f->framer, IMAP_MODE_COMMAND,
	    session_config(s)->max_line_length);
	f->literal_arg = -1;
	if (greet) {
		capabilities(s, caps, sizeof(caps));
		session_reply(s, "* OK [CAPABILITY %s] mappend ready", caps);
	}
	return f;
}

void
router_free(struct front *f)
{
	if (f == NULL)
		return;
	if (f->query != NULL)
		authhttp_cancel(f->query);
	if (f->ep != NULL)
		endpoint_release(f->ep);
	if (f->wait != NULL)
		event_free(f->wait);
	forget_login(f);
	free(f);
}

static void
reply(struct session *s, struct front *f, const char *text)
{
	session_reply(s, "%s %s", f->tag, text);
}

/* The login is over at the front (refused, or unreadable): the client may
 * try again, a few times. */
static void
login_refused(struct session *s, struct front *f, const char *text)
{
	reply(s, f, text);
	metrics_login(false);
	forget_login(f);
	f->state = FRONT_COMMANDS;
	if (++f->attempts >= FRONT_ATTEMPTS_MAX) {
		session_end_class(s, METRICS_END_CLIENT, "too many failed logins");
		session_close(s, "Too many failed logins");
		return;
	}
	session_resume_input(s);
}

/* Whose mailbox the login opens: PLAIN's authorization identity, if any. */
static const char *
routed_user(const struct front *f)
{
	return f->authzid != NULL ? f->authzid : f->user;
}

/* Where the user goes: a backend's name or an address.  NULL target: the
 * default upstream. */
static void
connect_to(struct session *s, struct front *f, const char *target)
{
	const struct config *cfg = session_config(s);
	const struct backend *b;
	char host[256], port[16];

	if (target == NULL || (b = config_backend(cfg, target)) != NULL) {
		b = target == NULL ? &cfg->upstream : b;
		log_info(session_id(s), "route: user %s to %s%s%s:%s", routed_user(f),
		    b->name[0] != '\0' ? b->name : "", b->name[0] != '\0' ? " at " : "",
		    b->host, b->port);
		host[0] = port[0] = '\0';
	} else if (routemap_target_address(target, host, sizeof(host), port,
	    sizeof(port))) {
		b = NULL;
		log_info(session_id(s), "route: user %s to %s:%s", routed_user(f),
		    host, port);
	} else {
		log_error(session_id(s), "route: user %s to \"%s\", which is no "
		    "[backend] of the configuration", routed_user(f), target);
		reply(s, f, "NO [UNAVAILABLE] No server for this user");
		session_end_class(s, METRICS_END_ERROR, "no route");
		session_close(s, "No server for this user");
		return;
	}
	f->state = FRONT_CONNECTING;
	if (session_route_to(s, b, host, port) != 0) {
		reply(s, f, "NO [UNAVAILABLE] Out of memory");
		session_close(s, "Out of memory");
	}
}

static void
wait_over(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	struct front *f = session_front(s);

	(void)fd;
	(void)what;
	if (f != NULL && !session_closing(s))
		login_refused(s, f, f->refusal);
}

static void
answered(const struct authhttp_answer *a, void *arg)
{
	struct session *s = arg;
	struct front *f = session_front(s);
	char target[300];
	struct timeval tv = { (time_t)a->wait, 0 };

	f->query = NULL;
	endpoint_release(f->ep);
	f->ep = NULL;
	if (session_closing(s))
		return;		/* the client left meanwhile */
	switch (a->status) {
	case AUTHHTTP_OK:
		if (a->has_user || a->has_pass) {
			/* the endpoint says what the upstream gets */
			if (a->has_user) {
				credentials_wipe(&f->user, &f->user_len);
				f->user = strdup(a->user);
				f->user_len = f->user != NULL ? strlen(f->user) : 0;
			}
			if (a->has_pass) {
				credentials_wipe(&f->pass, &f->pass_len);
				f->pass = strdup(a->pass);
				f->pass_len = f->pass != NULL ? strlen(f->pass) : 0;
			}
			if (f->user == NULL || f->pass == NULL) {
				reply(s, f, "NO [UNAVAILABLE] Out of memory");
				session_close(s, "Out of memory");
				return;
			}
		}
		snprintf(target, sizeof(target), strchr(a->host, ':') != NULL ?
		    "[%s]:%s" : "%s:%s", a->host, a->port);
		connect_to(s, f, target);
		return;
	case AUTHHTTP_REFUSED:
		log_info(session_id(s), "login refused by auth_http: user=%s from=%s: %s",
		    f->user, session_peer(s), a->error);
		snprintf(f->refusal, sizeof(f->refusal), "NO [AUTHENTICATIONFAILED] %s",
		    a->error[0] != '\0' ? a->error : "Authentication failed");
		if (a->wait == 0) {
			/* as nginx: a refusal without Auth-Wait ends the session
			 * (how an endpoint stops a client after its last try) */
			reply(s, f, f->refusal);
			metrics_login(false);
			session_end_class(s, METRICS_END_CLIENT, "login refused");
			session_close(s, "Login refused");
			return;
		}
		f->state = FRONT_WAITING;
		if (f->wait == NULL &&
		    (f->wait = evtimer_new(session_proxy(s)->base, wait_over, s)) == NULL) {
			login_refused(s, f, f->refusal);
			return;
		}
		if (tv.tv_sec > 60)
			tv.tv_sec = 60;
		evtimer_add(f->wait, &tv);
		return;
	case AUTHHTTP_UNAVAILABLE:
		break;
	}
	log_warn(session_id(s), "auth_http: %s", a->error);
	login_refused(s, f, "NO [UNAVAILABLE] Login service not available");
}

/* The login is read: ask where the user lives. */
static void
route(struct session *s, struct front *f)
{
	static const char *const methods[] = { "plain", "plain", "login",
	    "xoauth2", "oauthbearer" };
	struct authhttp_request rq = { .method = methods[f->method], .user = f->user,
	    .pass = f->pass, .attempt = f->attempts + 1,
	    .client_ip = session_peer_host(s), .client_host = NULL,
	    .client_tls = session_client_tls(s) };

	f->state = FRONT_ROUTING;
	if (endpoint == NULL) {
		/* the mailbox's owner: PLAIN's authorization identity, if any */
		connect_to(s, f, route_map != NULL ?
		    routemap_lookup(route_map, routed_user(f)) : NULL);
		return;
	}
	f->ep = endpoint;
	endpoint->users++;
	if ((f->query = authhttp_query(endpoint->http, &rq, answered, s)) == NULL) {
		endpoint_release(f->ep);
		f->ep = NULL;
		login_refused(s, f, "NO [UNAVAILABLE] Out of memory");
	}
}

static bool
set_login(struct front *f, const char *authzid, size_t authzid_len,
    const char *user, size_t user_len, const char *pass, size_t pass_len)
{
	if (user_len == 0 || user_len > FRONT_ARG_MAX || pass_len > FRONT_ARG_MAX ||
	    authzid_len > FRONT_ARG_MAX || memchr(user, '\0', user_len) != NULL ||
	    memchr(pass, '\0', pass_len) != NULL)
		return false;
	f->user = strndup(user, user_len);
	f->pass = strndup(pass, pass_len);
	f->authzid = authzid_len > 0 ? strndup(authzid, authzid_len) : NULL;
	f->user_len = user_len;
	f->pass_len = pass_len;
	f->authzid_len = authzid_len;
	return f->user != NULL && f->pass != NULL &&
	    (authzid_len == 0 || f->authzid != NULL);
}

/* AUTHENTICATE PLAIN's message: the user routed is the one whose mailbox
 * it opens, the authorization identity when there is one. */
static bool
take_plain(struct front *f, const char *b64, size_t len)
{
	struct sasl_plain sp;
	bool ok;

	if (sasl_plain_decode(b64, len, &sp) != 0)
		return false;
	ok = set_login(f, sp.authzid, sp.authzid_len, sp.authcid, sp.authcid_len,
	    sp.password, sp.password_len);
	sasl_plain_clear(&sp);
	return ok;
}

/* The value of key in an OAuth message's \x01-separated parts p..end (up
 * to the next \x01), or NULL. */
static const char *
oauth_value(const char *p, const char *end, const char *key, size_t *len)
{
	size_t klen = strlen(key);

	while (p < end) {
		const char *next = memchr(p, '\x01', (size_t)(end - p));
		const char *stop = next != NULL ? next : end;
		const char *v;

		if ((size_t)(stop - p) >= klen && memcmp(p, key, klen) == 0) {
			v = p + klen;
			*len = (size_t)(stop - v);
			return v;
		}
		if (next == NULL)
			break;
		p = next + 1;
	}
	return NULL;
}

/* An OAuth message: XOAUTH2's "user=U\x01auth=Bearer T\x01\x01", or
 * OAUTHBEARER's (RFC 7628) "n,a=U,\x01auth=Bearer T\x01\x01", U escaped
 * there as =2C and =3D.  The user routed, the token as the password, and
 * the message kept to replay. */
static bool
take_oauth(struct front *f, const char *b64, size_t len)
{
	char *raw, user[FRONT_ARG_MAX + 1];
	const char *u = NULL, *t, *end;
	size_t rawlen, ulen = 0, tlen = 0, n = 0, i;
	bool ok = false;

	if (len > FRONT_SASL_MAX || (raw = sasl_b64_decode(b64, len, &rawlen)) == NULL)
		return false;
	end = raw + rawlen;
	if (f->method == METHOD_XOAUTH2) {
		u = oauth_value(raw, end, "user=", &ulen);
	} else if (rawlen > 2 && (raw[0] == 'n' || raw[0] == 'y') && raw[1] == ',') {
		u = strncmp(raw + 2, "a=", 2) == 0 ? raw + 4 : NULL;
		if (u != NULL) {
			const char *comma = memchr(u, ',', (size_t)(end - u));

			ulen = comma != NULL ? (size_t)(comma - u) : 0;
		}
	}
	t = oauth_value(raw, end, "auth=Bearer ", &tlen);
	/* OAUTHBEARER's saslname escapes "," and "=" */
	for (i = 0; u != NULL && i < ulen && n < FRONT_ARG_MAX; i++) {
		if (u[i] == '=' && f->method == METHOD_OAUTHBEARER) {
			if (i + 2 >= ulen)
				break;
			if (u[i + 1] == '2' && u[i + 2] == 'C')
				user[n++] = ',';
			else if (u[i + 1] == '3' && u[i + 2] == 'D')
				user[n++] = '=';
			else
				break;
			i += 2;
			continue;
		}
		user[n++] = u[i];
	}
	if (u != NULL && ulen > 0 && i == ulen && t != NULL && tlen > 0 &&
	    tlen <= FRONT_SASL_MAX) {
		user[n] = '\0';
		f->user = strndup(user, n);
		f->user_len = n;
		f->pass = strndup(t, tlen);
		f->pass_len = tlen;
		f->sasl = strndup(b64, len);
		f->sasl_len = len;
		ok = f->user != NULL && f->pass != NULL && f->sasl != NULL &&
		    memchr(user, '\0', n) == NULL;
	}
	OPENSSL_cleanse(user, sizeof(user));
	credentials_wipe(&raw, &rawlen);
	return ok;
}

/* One SASL line of the client's (without CRLF). */
static void
sasl_line(struct session *s, struct front *f, const char *line, size_t len)
{
	char *raw;
	size_t rawlen;

	f->state = FRONT_COMMANDS;
	if (len == 1 && line[0] == '*') {
		reply(s, f, "BAD AUTHENTICATE cancelled");
		forget_login(f);
		return;
	}
	if (f->method == METHOD_PLAIN) {
		if (!take_plain(f, line, len)) {
			login_refused(s, f, "BAD Not a SASL PLAIN message");
			return;
		}
		route(s, f);
		return;
	}
	if (f->method == METHOD_XOAUTH2 || f->method == METHOD_OAUTHBEARER) {
		if (!take_oauth(f, line, len)) {
			login_refused(s, f, "NO [AUTHENTICATIONFAILED] No user in the "
			    "message (user= / a=): it cannot be routed");
			return;
		}
		route(s, f);
		return;
	}
	/* SASL LOGIN: the user, then the password, each in base64 */
	if ((raw = sasl_b64_decode(line, len, &rawlen)) == NULL ||
	    rawlen > FRONT_ARG_MAX) {
		if (raw != NULL)
			credentials_wipe(&raw, &rawlen);
		login_refused(s, f, "BAD Not base64");
		return;
	}
	if (f->user == NULL) {
		f->user = raw;
		f->user_len = rawlen;
		f->state = FRONT_SASL;
		session_reply(s, "+ UGFzc3dvcmQ6");	/* "Password:" */
		return;
	}
	f->pass = raw;
	f->pass_len = rawlen;
	if (f->user_len == 0) {
		login_refused(s, f, "NO [AUTHENTICATIONFAILED] Authentication failed");
		return;
	}
	route(s, f);
}

static void
authenticate(struct session *s, struct front *f, const char *buf,
    const struct imap_segment *seg)
{
	const struct imap_token *mech = &seg->tok[2];

	if (seg->ntok < 3 || seg->ntok > 4 || !seg->last ||
	    mech->kind != IMAP_TOK_ATOM) {
		reply(s, f, "BAD AUTHENTICATE mechanism [initial-response]");
		return;
	}
	if (imap_tok_is(buf, mech, "PLAIN"))
		f->method = METHOD_PLAIN;
	else if (imap_tok_is(buf, mech, "LOGIN"))
		f->method = METHOD_SASL_LOGIN;
	else if (session_config(s)->route_oauth && imap_tok_is(buf, mech, "XOAUTH2"))
		f->method = METHOD_XOAUTH2;
	else if (session_config(s)->route_oauth &&
	    imap_tok_is(buf, mech, "OAUTHBEARER"))
		f->method = METHOD_OAUTHBEARER;
	else {
		reply(s, f, "NO [CANNOT] This mechanism is not offered here");
		return;
	}
	if (session_tls_required(s) && !session_client_tls(s)) {
		reply(s, f, "NO [PRIVACYREQUIRED] This mechanism is disabled until "
		    "STARTTLS");
		return;
	}
	f->state = FRONT_SASL;
	if (seg->ntok == 4) {
		const struct imap_token *ir = &seg->tok[3];

		if (ir->kind != IMAP_TOK_ATOM) {
			f->state = FRONT_COMMANDS;
			reply(s, f, "BAD The initial response is base64");
			return;
		}
		/* "=" is an empty initial response */
		sasl_line(s, f, buf + ir->off, ir->len == 1 &&
		    buf[ir->off] == '=' ? 0 : ir->len);
		return;
	}
	session_reply(s, f->method == METHOD_SASL_LOGIN ? "+ VXNlcm5hbWU6" : "+ ");
}

/* A LOGIN argument, atom or quoted string. */
static bool
login_arg(struct front *f, const char *buf, const struct imap_token *t)
{
	char tmp[FRONT_ARG_MAX + 3];
	int n;

	if (f->nargs >= 2 || (t->kind != IMAP_TOK_ATOM && t->kind != IMAP_TOK_QUOTED) ||
	    t->len > FRONT_ARG_MAX + 2)
		return false;
	n = imap_unquote(buf, t, tmp, sizeof(tmp));
	if (n < 0 || (f->arg[f->nargs] = malloc((size_t)n + 1)) == NULL) {
		OPENSSL_cleanse(tmp, sizeof(tmp));
		return false;
	}
	memcpy(f->arg[f->nargs], tmp, (size_t)n);
	f->arg[f->nargs][n] = '\0';
	f->arglen[f->nargs++] = (size_t)n;
	OPENSSL_cleanse(tmp, sizeof(tmp));
	return true;
}

/* The tokens of a LOGIN segment; a literal last is read next. */
static bool
login_segment(struct session *s, struct front *f, const char *buf,
    const struct imap_segment *seg)
{
	unsigned i = seg->first ? 2 : 0;

	for (; i < seg->ntok; i++) {
		const struct imap_token *t = &seg->tok[i];

		if (t->kind == IMAP_TOK_LITERAL) {
			if (f->nargs >= 2 || seg->literal > FRONT_ARG_MAX ||
			    (f->arg[f->nargs] = malloc((size_t)seg->literal + 1)) == NULL)
				return false;
			f->arglen[f->nargs] = 0;
			f->literal_arg = (int)f->nargs++;
			if (!(seg->literal_flags & IMAP_LIT_NONSYNC))
				session_reply(s, "+ Ready for literal data");
			return true;
		}
		if (!login_arg(f, buf, t))
			return false;
	}
	return true;
}

static void
login_done(struct session *s, struct front *f)
{
	if (f->nargs != 2 || !set_login(f, NULL, 0, f->arg[0], f->arglen[0],
	    f->arg[1], f->arglen[1])) {
		login_refused(s, f, "BAD LOGIN user password");
		return;
	}
	f->method = METHOD_LOGIN;
	route(s, f);
}

static void
starttls(struct session *s, struct front *f, const struct imap_segment *seg)
{
	if (!tls_server_available(session_config(s)))
		reply(s, f, "NO STARTTLS is not available on this listener");
	else if (session_client_tls(s))
		reply(s, f, "BAD TLS is active already");
	else if (seg->ntok != 2 || !seg->last)
		reply(s, f, "BAD STARTTLS takes no arguments");
	else {
		reply(s, f, "OK Begin TLS negotiation now");
		imap_framer_init(&f->framer, IMAP_MODE_COMMAND,
		    session_config(s)->max_line_length);
		session_starttls(s);
	}
}

/* LOGIN's segments: true while its literal is read (the segment is then
 * consumed by the caller), false when the command is over or refused. */
static bool
login(struct session *s, struct front *f, const char *buf,
    const struct imap_segment *seg)
{
	if (seg->first && session_tls_required(s) && !session_client_tls(s)) {
		reply(s, f, "NO [PRIVACYREQUIRED] LOGIN is disabled until STARTTLS");
		return false;
	}
	if (!login_segment(s, f, buf, seg)) {
		login_refused(s, f, "BAD LOGIN user password");
		return false;
	}
	if (seg->last) {
		login_done(s, f);
		return false;
	}
	return true;
}

/* A first segment: the command.  True when its literal is wanted. */
static bool
command(struct session *s, struct front *f, const char *buf,
    const struct imap_segment *seg)
{
	const struct imap_token *name = &seg->tok[1];
	char caps[800];

	snprintf(f->tag, sizeof(f->tag), "%.*s", (int)seg->tok[0].len,
	    buf + seg->tok[0].off);
	session_note_command(s);
	if (imap_tok_is(buf, name, "LOGIN"))
		return login(s, f, buf, seg);
	if (!seg->last) {
		/* nothing else the front knows takes a literal */
		reply(s, f, "BAD Log in first");
		return false;
	}
	if (imap_tok_is(buf, name, "CAPABILITY")) {
		capabilities(s, caps, sizeof(caps));
		session_reply(s, "* CAPABILITY %s", caps);
		reply(s, f, "OK CAPABILITY completed");
	} else if (imap_tok_is(buf, name, "NOOP")) {
		reply(s, f, "OK NOOP completed");
	} else if (imap_tok_is(buf, name, "ID")) {
		session_reply(s, "* ID NIL");
		reply(s, f, "OK ID completed");
	} else if (imap_tok_is(buf, name, "LOGOUT")) {
		session_reply(s, "* BYE Logging out");
		reply(s, f, "OK LOGOUT completed");
		session_end_class(s, METRICS_END_CLIENT, "logout");
		session_close(s, NULL);
	} else if (imap_tok_is(buf, name, "STARTTLS")) {
		starttls(s, f, seg);
	} else if (imap_tok_is(buf, name, "AUTHENTICATE")) {
		authenticate(s, f, buf, seg);
	} else {
		reply(s, f, "BAD Log in first");
	}
	return false;
}

/*
 * The login, as the relay carries it: LOGIN where the upstream takes it and
 * no authorization identity is asked for, else AUTHENTICATE PLAIN, with an
 * initial response where the upstream takes one (SASL-IR), else with the
 * message on the next line (the relay waits for the upstream's "+", which
 * the client then sees too).  NULL when out of memory.
 */
static struct evbuffer *
login_command(struct session *s, struct front *f)
{
	const struct upstream_caps *caps = response_caps(s);
	struct evbuffer *cmd = evbuffer_new();
	char *quser = NULL, *qpass = NULL;

	if (cmd == NULL)
		return NULL;
	if (f->sasl != NULL) {
		/* OAuth: the client's own message, to the upstream's judgement */
		evbuffer_add_printf(cmd, "%s AUTHENTICATE %s%s%s\r\n", f->tag,
		    f->method == METHOD_XOAUTH2 ? "XOAUTH2" : "OAUTHBEARER",
		    caps->sasl_ir ? " " : "\r\n", f->sasl);
		return cmd;
	}
	if (f->authzid != NULL || (caps->logindisabled && caps->auth_plain)) {
		struct login l = { 0 };
		int rc;

		/* credentials.c builds the message as the second connection does */
		rc = credentials_plain_login(f->authzid != NULL ? f->authzid : "",
		    f->user, f->pass, &l);
		if (rc == 0 && evbuffer_add_printf(cmd, "%s AUTHENTICATE PLAIN%s%s\r\n",
		    f->tag, caps->sasl_ir ? " " : "\r\n", l.plain_b64) < 0)
			rc = -1;
		login_clear(&l);
		if (rc != 0) {
			evbuffer_free(cmd);
			return NULL;
		}
		return cmd;
	}
	quser = imap_quote(f->user, f->user_len);
	qpass = imap_quote(f->pass, f->pass_len);
	if (quser != NULL && qpass != NULL)
		evbuffer_add_printf(cmd, "%s LOGIN %s %s\r\n", f->tag, quser, qpass);
	else
		/* CR or LF in them: literals, which the relay turns into
		 * synchronizing ones where the upstream wants that */
		evbuffer_add_printf(cmd, "%s LOGIN {%zu+}\r\n%s {%zu+}\r\n%s\r\n",
		    f->tag, f->user_len, f->user, f->pass_len, f->pass);
	if (quser != NULL)
		OPENSSL_cleanse(quser, strlen(quser));
	if (qpass != NULL)
		OPENSSL_cleanse(qpass, strlen(qpass));
	free(quser);
	free(qpass);
	return cmd;
}

/* The upstream is greeted: the login goes to the relay, ahead of whatever
 * the client sent behind it. */
static bool
hand_over(struct session *s, struct front *f)
{
	struct evbuffer *cmd = login_command(s, f);
	struct evbuffer *in = session_client_input(s);

	if (cmd == NULL || evbuffer_prepend_buffer(in, cmd) != 0) {
		if (cmd != NULL)
			evbuffer_free(cmd);
		reply(s, f, "NO [UNAVAILABLE] Out of memory");
		session_close(s, "Out of memory");
		return true;
	}
	evbuffer_free(cmd);
	session_set_front(s, NULL);
	router_free(f);
	return false;
}

/* A SASL line of the client's, taken off the input. */
static void
sasl_frame(struct session *s, struct front *f, struct evbuffer *in,
    const struct imap_frame *fr)
{
	char *line;
	size_t len = fr->len;

	if (len > FRONT_SASL_MAX + 2 || (line = malloc(len)) == NULL) {
		imap_framer_drop(&f->framer, in, len);
		f->state = FRONT_COMMANDS;
		login_refused(s, f, "BAD SASL response too long");
		return;
	}
	evbuffer_remove(in, line, len);
	imap_framer_consumed(&f->framer, len);
	sasl_line(s, f, line, fr->seg.eol);
	credentials_wipe(&line, &len);
}

bool
router_client_input(struct session *s, struct front *f)
{
	struct evbuffer *in = session_client_input(s);

	while (!session_closing(s)) {
		struct imap_frame fr;
		bool wanted;

		switch (f->state) {
		case FRONT_COMMANDS:
		case FRONT_SASL:
			break;
		case FRONT_CONNECTING:
			if (session_relaying(s))
				return hand_over(s, f);
			return true;
		case FRONT_ROUTING:
		case FRONT_WAITING:
			return true;
		}
		imap_framer_set_mode(&f->framer, f->state == FRONT_SASL ?
		    IMAP_MODE_RAW : IMAP_MODE_COMMAND);
		switch (imap_framer_next(&f->framer, in, &fr)) {
		case IMAP_FRAME_MORE:
			return true;
		case IMAP_FRAME_FATAL:
			log_info(session_id(s), "client input: %s", fr.error);
			session_close(s, "Command line too long");
			return true;
		case IMAP_FRAME_BAD:
			forget_login(f);
			f->state = FRONT_COMMANDS;
			relay_client_syntax_error(s, &f->framer, in, &fr);
			continue;
		case IMAP_FRAME_LITERAL:
			if (f->literal_arg >= 0) {
				evbuffer_remove(in, f->arg[f->literal_arg] +
				    f->arglen[f->literal_arg], fr.len);
				imap_framer_consumed(&f->framer, fr.len);
				f->arglen[f->literal_arg] += fr.len;
			} else {
				imap_framer_drop(&f->framer, in, fr.len);
			}
			continue;
		case IMAP_FRAME_SEGMENT:
			break;
		}
		if (f->state == FRONT_SASL) {
			sasl_frame(s, f, in, &fr);
			continue;
		}
		if (fr.seg.first && fr.seg.ntok == 0) {
			imap_framer_drop(&f->framer, in, fr.len);
			continue;	/* an empty line */
		}
		if (fr.seg.first) {
			forget_login(f);
			wanted = command(s, f, fr.buf, &fr.seg);
		} else {
			/* LOGIN after a literal: the rest of its arguments */
			f->literal_arg = -1;
			wanted = f->nargs > 0 && login(s, f, fr.buf, &fr.seg);
		}
		if (session_closing(s))
			return true;
		if (wanted)
			imap_framer_drop(&f->framer, in, fr.len);
		else
			(void)relay_discard_segment(&f->framer, in, &fr);
	}
	return true;
}

void
router_upstream_failed(struct session *s, struct front *f, const char *why)
{
	log_warn(session_id(s), "route: user %s: %s", f->user != NULL ? f->user :
	    "?", why);
	reply(s, f, "NO [UNAVAILABLE] The server for this user is not available");
	session_end_class(s, METRICS_END_UPSTREAM, "upstream not available");
	session_close(s, "Server not available");
}

/*
 * reload.c — SIGHUP: read the configuration file again and put it in
 * place whole, or refuse it whole.
 *
 * Everything that can fail comes first and changes nothing that is in use:
 * the file is loaded into a new configuration, checked as -t would check
 * what a running mappend reads (checks.c), its TLS contexts are built, its
 * new listeners bound, the metrics listener moved (it keeps the old one
 * when it cannot).  Then, in one step of the event loop, the listeners
 * change, the new configuration becomes the one new sessions take, and
 * the old one goes when its last session does: a running session keeps
 * its limits, timeouts, upstream and certificate to its end.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "checks.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "reload.h"
#include "router.h"
#include "session.h"
#include "spool.h"
#include "tls.h"

#define SUMMARY_MAX 2048

static void
refused(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
refused(const char *fmt, ...)
{
	char why[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	log_error(0, "reload refused: %s; the running configuration stays", why);
}

/* Everything that can fail; nothing in use changes.  0, or -1 with the
 * reason in err. */
static int
prepare(struct proxy *proxy, const struct reload_origin *o, const struct config *cfg,
    struct listener_plan **plan, struct router_sources **routes, char *err,
    size_t errlen)
{
	if (checks_reload(o->path, cfg, &o->ra, err, errlen) > 0 ||
	    tls_prepare(cfg, proxy->cfg, err, errlen) != 0 ||
	    (*routes = router_prepare(proxy, cfg, err, errlen)) == NULL)
		return -1;
	if (listener_prepare(proxy, cfg, plan, err, errlen) != 0) {
		router_abort(*routes);
		*routes = NULL;
		return -1;
	}
	/* last: on success it has moved its listener already */
	if (metrics_start(proxy->base, cfg) != 0) {
		router_abort(*routes);
		*routes = NULL;
		listener_abort(*plan);
		*plan = NULL;
		snprintf(err, errlen, "metrics_listen %s:%s cannot be opened (the "
		    "error is logged above)", cfg->metrics_host, cfg->metrics_port);
		return -1;
	}
	return 0;
}

/* "; " between the parts of the summary. */
static void
summary_add(char *summary, const char *part)
{
	size_t len = strlen(summary);

	snprintf(summary + len, SUMMARY_MAX - len, "%s%s", len > 0 ? "; " : "", part);
}

/* A key that needs a restart: the running value stays. */
static void
restart_key(const char *key, const char *was, const char *now, void *arg)
{
	char part[128];

	log_warn(0, "reload: %s = \"%s\" takes effect at the next restart; until "
	    "then mappend keeps %s = \"%s\"", key, now, key, was);
	snprintf(part, sizeof part, "%s needs a restart", key);
	summary_add(arg, part);
}

/* log and log_level, at the more verbose of the two levels for now: the
 * line about the reload is seen whichever way log_level went.  A daemon
 * has no stderr: it logs to syslog whatever "log" says, as at start. */
static void
apply_logs(const struct config *cfg, const struct config *old, bool foreground)
{
	bool was = old->log_syslog || !foreground, now = cfg->log_syslog || !foreground;
	enum log_level level = cfg->log_level > old->log_level ? cfg->log_level :
	    old->log_level;

	if (was != now)
		log_init("mappend", level, now);
	else
		log_set_level(level);
}

/* Nothing can fail from here on. */
static void
commit(struct proxy *proxy, const struct reload_origin *o, struct config *cfg,
    struct listener_plan *plan, struct router_sources *routes)
{
	const struct config *old = proxy->cfg;
	char summary[SUMMARY_MAX] = "", restart[SUMMARY_MAX] = "", changed[1024];
	char part[1100];

	config_keep_restart_keys(cfg, old, restart_key, restart);
	if (config_changed_keys(old, cfg, changed, sizeof changed) > 0) {
		snprintf(part, sizeof part, "changed %s", changed);
		summary_add(summary, part);
	}
	listener_commit(plan, cfg, summary, sizeof summary);
	router_commit(routes);
	if (restart[0] != '\0')
		summary_add(summary, restart);
	spool_set_budget(cfg->max_total_spool);
	tls_warn_unverified(cfg, old);
	proxy->cfg = cfg;
	apply_logs(cfg, old, o->foreground);
	log_info(0, "reloaded %s: %s", o->path, summary[0] != '\0' ? summary :
	    "no change");
	log_set_level(cfg->log_level);
	config_unref(old);	/* its sessions hold it until they end */
}

int
reload_run(struct proxy *proxy, const struct reload_origin *o)
{
	struct listener_plan *plan = NULL;
	struct router_sources *routes = NULL;
	struct config *cfg;
	char err[2048];

	if (proxy->shutting_down) {
		refused("mappend is shutting down");
		return -1;
	}
	/* read as the user mappend switched to, unlike at start */
	if (o->ra.switching && access(o->path, R_OK) != 0 && errno == EACCES) {
		refused("%s: %s: mappend runs as user %s now and reads it as that "
		    "user (install it 0640, group %s)", o->path, strerror(errno),
		    o->ra.user, o->ra.group);
		return -1;
	}
	if ((cfg = config_new()) == NULL) {
		refused("out of memory");
		return -1;
	}
	if (config_load(o->path, cfg, err, sizeof err) != 0 ||
	    prepare(proxy, o, cfg, &plan, &routes, err, sizeof err) != 0) {
		refused("%s", err);
		config_unref(cfg);	/* and the TLS contexts built for it */
		return -1;
	}
	commit(proxy, o, cfg, plan, routes);
	return 0;
}

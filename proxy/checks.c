/*
 * checks.c — "mappend -t": everything start would trip over, found without
 * starting.  Each check asks the question start asks, as the process that
 * will ask it: files read at start are checked as the user who starts
 * mappend, what is used later (the spool, the pid file, the certificate
 * reloaded on SIGHUP) as the user it switches to.  Listen lines given
 * twice are refused by config.c already.  A reload asks the questions that
 * still make sense in a running mappend, as the process itself.
 */
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checks.h"
#include "config.h"
#include "log.h"
#include "privileges.h"
#include "routemap.h"
#include "tls.h"

enum checks_when {
	CHECKS_TEST,		/* -t: every check, printed */
	CHECKS_START,		/* at start: warnings only, to the log */
	CHECKS_RELOAD,		/* SIGHUP: warnings logged, the first error kept */
};

struct checker {
	enum checks_when when;
	int errors;
	char *err;		/* CHECKS_RELOAD: the first error */
	size_t errlen;
};

static void
report(struct checker *ck, bool fatal, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
report(struct checker *ck, bool fatal, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	if (ck->when == CHECKS_START && fatal)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (fatal)
		ck->errors++;
	if (ck->when == CHECKS_RELOAD && fatal) {
		/* the reason the reload is refused */
		if (ck->errors == 1)
			snprintf(ck->err, ck->errlen, "%s", msg);
		return;
	}
	if (ck->when == CHECKS_TEST)
		fprintf(stderr, "mappend: %s%s\n", fatal ? "" : "warning: ", msg);
	else
		log_warn(0, "%s", msg);
}

static void
parent_dir(const char *path, char *out, size_t len)
{
	char copy[4096];

	snprintf(copy, sizeof copy, "%s", path);
	snprintf(out, len, "%s", dirname(copy));
}

/*
 * A certificate or key: read at start by whoever starts mappend, and again
 * on SIGHUP by the user it switched to (who is the process by then).
 * Returns false when start or the reload would fail.
 */
static bool
check_reload_file(struct checker *ck, const struct run_as *ra, const char *key,
    const char *path)
{
	int e;

	if (access(path, R_OK) != 0) {
		e = errno;
		if (ck->when == CHECKS_RELOAD && e == EACCES && ra->switching)
			report(ck, true, "%s %s: %s: mappend runs as user %s now and "
			    "reads it as that user; make it readable by a group of "
			    "%s's, e.g. ssl-cert (see mappend(8))", key, path,
			    strerror(e), ra->user, ra->user);
		else
			report(ck, true, "%s %s: %s", key, path, strerror(e));
		return false;
	}
	if (ck->when == CHECKS_RELOAD)
		return true;
	if (ra->switching && (e = priv_access(ra, path, R_OK)) != 0)
		report(ck, false, "%s %s: user %s cannot read it (%s): it is read "
		    "as root at start, but a reload on SIGHUP will fail; make it "
		    "readable by a group of %s's, e.g. ssl-cert (see mappend(8))",
		    key, path, ra->user, strerror(e), ra->user);
	return true;
}

static void
check_tls(struct checker *ck, const struct config *cfg, const struct run_as *ra)
{
	char err[1024];
	bool readable = true;

	if (cfg->tls_cert[0] != '\0') {
		readable &= check_reload_file(ck, ra, "tls_cert", cfg->tls_cert);
		readable &= check_reload_file(ck, ra, "tls_key", cfg->tls_key);
	}
	for (size_t i = 0; i <= cfg->nbackends; i++) {
		const struct backend *b = i == 0 ? &cfg->upstream :
		    &cfg->backends[i - 1];

		if (b->ca_file[0] == '\0' || access(b->ca_file, R_OK) == 0)
			continue;
		report(ck, true, "%s%s%supstream_ca_file %s: %s",
		    i > 0 ? "[backend " : "", b->name, i > 0 ? "] " : "",
		    b->ca_file, strerror(errno));
		readable = false;
	}
	/* the files open: do they hold a matching pair, a usable CA?  (A
	 * reload loads them itself next.) */
	if (readable && ck->when == CHECKS_TEST && tls_check(cfg, err, sizeof err) != 0)
		report(ck, true, "%s", err);
}

/* mappend creates the spool directory (one level, as the user who starts
 * it) and hands it to the run-as user; an existing one must be usable. */
static void
check_spool(struct checker *ck, const struct config *cfg, const struct run_as *ra)
{
	const char *dir = cfg->spool_dir;
	char parent[4096];
	struct stat st;
	int e;

	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			report(ck, true, "spool_dir %s: not a directory", dir);
		else if ((e = priv_access(ra, dir, R_OK | W_OK | X_OK)) != 0)
			report(ck, true, "spool_dir %s: user %s cannot create files "
			    "there (%s; owner uid %ld, mode %04o): chown %s %s",
			    dir, ra->user, strerror(e), (long)st.st_uid,
			    (unsigned)(st.st_mode & 07777), ra->user, dir);
		return;
	}
	if (errno != ENOENT) {
		report(ck, true, "spool_dir %s: %s", dir, strerror(errno));
		return;
	}
	parent_dir(dir, parent, sizeof parent);
	if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode)) {
		report(ck, true, "spool_dir %s: its parent directory %s does not "
		    "exist: create it, or choose another spool_dir", dir, parent);
		return;
	}
	if (access(parent, W_OK | X_OK) != 0)
		report(ck, true, "spool_dir %s cannot be created: %s: %s", dir,
		    parent, strerror(errno));
	else if (ra->switching && (e = priv_access(ra, parent, X_OK)) != 0)
		report(ck, true, "spool_dir %s: user %s cannot reach it through "
		    "%s (%s)", dir, ra->user, parent, strerror(e));
}

/* Written after the switch and removed at exit, both by the run-as user. */
static void
check_pid_file(struct checker *ck, const struct config *cfg, const struct run_as *ra)
{
	char dir[4096];
	struct stat st;
	int e;

	if (cfg->pid_file[0] == '\0')
		return;
	parent_dir(cfg->pid_file, dir, sizeof dir);
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		report(ck, true, "pid_file %s: directory %s does not exist (systemd "
		    "creates one with RuntimeDirectory=)", cfg->pid_file, dir);
	else if ((e = priv_access(ra, dir, W_OK | X_OK)) != 0)
		report(ck, true, "pid_file %s: user %s cannot write in %s (%s), "
		    "and mappend writes the file as that user and removes it at "
		    "exit: use a directory of its own, e.g. /run/mappend/",
		    cfg->pid_file, ra->user, dir, strerror(e));
}

/* The route map: every line right, and readable after a switch (it is
 * read again on SIGHUP). */
static void
check_routes(struct checker *ck, const struct config *cfg, const struct run_as *ra)
{
	struct routemap *map;
	char err[1024];

	if (cfg->route_map[0] == '\0' ||
	    !check_reload_file(ck, ra, "route_map", cfg->route_map))
		return;
	if (ck->when != CHECKS_TEST)
		return;		/* the start and a reload read it themselves */
	if ((map = routemap_load(cfg->route_map, err, sizeof err)) == NULL)
		report(ck, true, "%s", err);
	routemap_free(map);
}

int
checks_run(const char *conf_path, const struct config *cfg, const struct run_as *ra,
    bool start)
{
	struct checker ck = { start ? CHECKS_START : CHECKS_TEST, 0, NULL, 0 };
	char msg[1024];
	int e;

	if (!start) {
		check_spool(&ck, cfg, ra);
		check_pid_file(&ck, cfg, ra);
	}
	check_tls(&ck, cfg, ra);
	check_routes(&ck, cfg, ra);
	if (priv_secret_exposed(conf_path, cfg, ra, msg, sizeof msg))
		report(&ck, false, "%s", msg);
	if (ra->switching && (e = priv_access(ra, conf_path, R_OK)) != 0)
		report(&ck, false, "%s: user %s cannot read it (%s): a reload on "
		    "SIGHUP reads it as that user and will fail; install it 0640, "
		    "group %s", conf_path, ra->user, strerror(e), ra->group);
	if (geteuid() == 0 && !ra->switching)
		report(&ck, false, "user is not set: mappend runs as root; set "
		    "user = mappend (see mappend.conf(5))");
	return ck.errors;
}

int
checks_reload(const char *conf_path, const struct config *cfg,
    const struct run_as *ra, char *err, size_t errlen)
{
	struct checker ck = { CHECKS_RELOAD, 0, err, errlen };
	char msg[1024];

	/* user, group, spool_dir and pid_file do not change on a reload */
	check_tls(&ck, cfg, ra);
	check_routes(&ck, cfg, ra);
	if (priv_secret_exposed(conf_path, cfg, ra, msg, sizeof msg))
		report(&ck, false, "%s", msg);
	return ck.errors;
}

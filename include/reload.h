/*
 * reload.h — SIGHUP: the configuration file read again and put in place
 * whole, or refused whole with the reason logged (the running one stays).
 */
#ifndef MAPPEND_RELOAD_H
#define MAPPEND_RELOAD_H

#include <stdbool.h>

#include "privileges.h"

struct proxy;

/* What a reload needs to know of how mappend was started. */
struct reload_origin {
	const char *path;	/* the configuration file (-c) */
	struct run_as ra;	/* who mappend runs as (resolved at start) */
	bool foreground;	/* -f: logs may stay on stderr */
};

/*
 * Read o->path into a new configuration and put it in place for new
 * sessions (running ones keep theirs): listeners, TLS contexts, log
 * settings, the metrics listener, the spool budget.  Keys that need a
 * restart keep their running values, with a warning.  One line says what
 * changed ("reloaded PATH: ..."), or why nothing did ("reload refused:
 * ..."); 0 or -1.
 */
int reload_run(struct proxy *, const struct reload_origin *o);

#endif

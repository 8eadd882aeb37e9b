/*
 * privileges.h — who mappend runs as.  Started as root with "user" set,
 * mappend binds its listeners and reads its certificate and key as root,
 * then switches to that user and group for good (see mappend(8)).
 */
#ifndef MAPPEND_PRIVILEGES_H
#define MAPPEND_PRIVILEGES_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct config;

struct run_as {
	bool switching;		/* root now, uid/gid after priv_drop */
	uid_t uid;		/* who mappend runs as once started */
	gid_t gid;
	char user[64];		/* names, for messages */
	char group[64];
};

/* Look up "user" and "group" (or take the current ids when user is not
 * set); -1 with the reason in err. */
int priv_resolve(const struct config *, struct run_as *, char *err, size_t errlen);
/* access(path, mode) as the run-as user with its groups, checked in a
 * child process that really switches; 0 or an errno value. */
int priv_access(const struct run_as *, const char *path, int mode);
/* Switch to the run-as user and group for good (supplementary groups from
 * the group database, as login does), then check that root cannot be had
 * back; -1 with the reason in err.  Does nothing unless switching. */
int priv_drop(const struct run_as *, char *err, size_t errlen);
/* A warning in msg (returns true) when the configuration file holds
 * master_password and users other than root and the run-as user or group
 * can read it. */
bool priv_secret_exposed(const char *path, const struct config *,
    const struct run_as *, char *msg, size_t msglen);

#endif

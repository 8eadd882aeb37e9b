/*
 * privileges.c — the run-as user: looked up once at start, used for the
 * checks of -t (in a child process that really switches, so that groups,
 * ACLs and the directories on the way count as they will), and switched to
 * for good after start-up.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "privileges.h"

int
priv_resolve(const struct config *cfg, struct run_as *ra, char *err, size_t errlen)
{
	struct passwd *pw;
	struct group *gr;

	memset(ra, 0, sizeof *ra);
	if (cfg->user[0] == '\0') {
		ra->uid = geteuid();
		ra->gid = getegid();
		pw = getpwuid(ra->uid);
		gr = getgrgid(ra->gid);
		snprintf(ra->user, sizeof ra->user, "%s", pw != NULL ? pw->pw_name : "?");
		snprintf(ra->group, sizeof ra->group, "%s", gr != NULL ? gr->gr_name : "?");
		return 0;
	}
	errno = 0;
	if ((pw = getpwnam(cfg->user)) == NULL) {
		snprintf(err, errlen, "user = %s: %s", cfg->user, errno != 0 ?
		    strerror(errno) : "no such user (create it: systemd-sysusers, "
		    "or useradd --system)");
		return -1;
	}
	ra->uid = pw->pw_uid;
	ra->gid = pw->pw_gid;
	snprintf(ra->user, sizeof ra->user, "%s", cfg->user);
	if (cfg->group[0] != '\0') {
		errno = 0;
		if ((gr = getgrnam(cfg->group)) == NULL) {
			snprintf(err, errlen, "group = %s: %s", cfg->group, errno != 0 ?
			    strerror(errno) : "no such group");
			return -1;
		}
		ra->gid = gr->gr_gid;
		snprintf(ra->group, sizeof ra->group, "%s", cfg->group);
	} else {
		gr = getgrgid(ra->gid);
		snprintf(ra->group, sizeof ra->group, "%s", gr != NULL ? gr->gr_name : "?");
	}
	if (geteuid() == 0) {
		ra->switching = ra->uid != 0 || ra->gid != 0;
		return 0;
	}
	if (ra->uid != geteuid() || ra->gid != getegid()) {
		snprintf(err, errlen, "user = %s%s%s: only root can switch to another "
		    "user or group, and mappend runs as uid %ld gid %ld (start it as "
		    "root, or remove user and group)", cfg->user,
		    cfg->group[0] != '\0' ? ", group = " : "", cfg->group,
		    (long)geteuid(), (long)getegid());
		return -1;
	}
	return 0;
}

int
priv_drop(const struct run_as *ra, char *err, size_t errlen)
{
	if (!ra->switching)
		return 0;
	/* the user's own groups from /etc/group (e.g. ssl-cert), so that an
	 * administrator grants access to keys the Debian way: adduser */
	if (initgroups(ra->user, ra->gid) != 0) {
		snprintf(err, errlen, "cannot set the groups of user %s: %s", ra->user,
		    strerror(errno));
		return -1;
	}
	if (setresgid(ra->gid, ra->gid, ra->gid) != 0) {
		snprintf(err, errlen, "cannot switch to group %s (gid %ld): %s",
		    ra->group, (long)ra->gid, strerror(errno));
		return -1;
	}
	if (setresuid(ra->uid, ra->uid, ra->uid) != 0) {
		snprintf(err, errlen, "cannot switch to user %s (uid %ld): %s",
		    ra->user, (long)ra->uid, strerror(errno));
		return -1;
	}
	/* a switch that left a saved root id behind would be no switch */
	if (getuid() != ra->uid || geteuid() != ra->uid || getgid() != ra->gid ||
	    getegid() != ra->gid || (ra->uid != 0 && setuid(0) == 0)) {
		snprintf(err, errlen, "switching to user %s left root privileges "
		    "behind; refusing to run", ra->user);
		return -1;
	}
	return 0;
}

int
priv_access(const struct run_as *ra, const char *path, int mode)
{
	char err[256];
	pid_t pid;
	int status;

	if (!ra->switching)
		return access(path, mode) == 0 ? 0 : errno;
	if ((pid = fork()) == -1)
		return errno;
	if (pid == 0) {
		if (priv_drop(ra, err, sizeof err) != 0)
			_exit(EPERM);
		_exit(access(path, mode) == 0 ? 0 : errno);
	}
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			return errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : EPERM;
}

bool
priv_secret_exposed(const char *path, const struct config *cfg,
    const struct run_as *ra, char *msg, size_t msglen)
{
	struct stat st;
	struct group *gr;

	bool secret = cfg->upstream.master_password[0] != '\0';

	for (size_t i = 0; i < cfg->nbackends; i++)
		secret |= cfg->backends[i].master_password[0] != '\0';
	if (!secret || stat(path, &st) != 0)
		return false;
	if ((st.st_mode & S_IROTH) != 0) {
		snprintf(msg, msglen, "%s holds master_password and every user can "
		    "read it (mode %04o): chmod o-r %s (0640, group %s, is enough "
		    "for mappend)", path, (unsigned)(st.st_mode & 07777), path,
		    ra->group);
		return true;
	}
	/* root's group and mappend's own are trusted; any other is a set of
	 * users who could log in to every mailbox with the master password */
	if ((st.st_mode & S_IRGRP) != 0 && st.st_gid != 0 && st.st_gid != ra->gid) {
		gr = getgrgid(st.st_gid);
		snprintf(msg, msglen, "%s holds master_password and group %s can read "
		    "it (mode %04o): chgrp %s %s, or chmod g-r", path,
		    gr != NULL ? gr->gr_name : "?", (unsigned)(st.st_mode & 07777),
		    ra->group, path);
		return true;
	}
	return false;
}

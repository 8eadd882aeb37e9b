/*
 * pidfile.h — the pid_file: mappend refuses to start over a running
 * process, writes its pid once start-up has succeeded and removes the file
 * when it exits cleanly.
 */
#ifndef MAPPEND_PIDFILE_H
#define MAPPEND_PIDFILE_H

#include <stddef.h>
#include <sys/types.h>

/* -1 with the reason in err when path names a live process (its pid in
 * *pid, when pid is not NULL); 0 when it is absent, empty or stale. */
int pidfile_check(const char *path, pid_t *pid, char *err, size_t errlen);
/* Write getpid() to path (0644); -1 with the reason in err. */
int pidfile_write(const char *path, char *err, size_t errlen);
/* Remove path if it still holds our pid; -1 (errno set) when it could not. */
int pidfile_remove(const char *path);

#endif

/*
 * checks.h — what start needs, checked without starting: "mappend -t".
 */
#ifndef MAPPEND_CHECKS_H
#define MAPPEND_CHECKS_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct run_as;

/*
 * With start false (-t): check the files, directories and accounts that
 * start will need, as the user that will need them, and print one line per
 * problem to stderr ("mappend: reason", or "mappend: warning: reason").
 * With start true: only the warnings, logged.  Returns the number of
 * errors (warnings do not count).
 */
int checks_run(const char *conf_path, const struct config *, const struct run_as *,
    bool start);
/*
 * On SIGHUP, for a configuration about to replace the running one: the
 * checks that make sense in a running mappend, as the process itself (the
 * user it switched to): the certificate, key and CA file readable.
 * Warnings are logged; the first error goes to err.  Returns the number of
 * errors.
 */
int checks_reload(const char *conf_path, const struct config *,
    const struct run_as *, char *err, size_t errlen);

#endif

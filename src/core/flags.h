/*
 * Command lines: the original's Go-style flags under the legacy names
 * ("drafter-nat -host-interface eth0"), and GNU-style long options of the
 * subcommands ("drafter nat --host-interface=eth0 -c FILE"). Both set the
 * same struct config through the schema (schema.h).
 */
#ifndef DRAFTER_FLAGS_H
#define DRAFTER_FLAGS_H

#include <stdbool.h>
#include <stdio.h>

#include "core/config.h"

enum { FLAGS_OK = 0, FLAGS_HELP = 1 };

/*
 * Go flag syntax: -flag, --flag, -flag=value, -flag value; booleans as
 * -flag or -flag=false; "--" ends the flags; -h, -help, --help ask for help.
 * argv[0] is the legacy name. Returns FLAGS_OK, FLAGS_HELP, or -EINVAL with
 * the one-line message in ERR.
 */
int flags_parse_go(struct config *cfg, int argc, char **argv, struct config_error *err);

/*
 * Subcommand form, first pass: find "-c FILE"/"--config FILE" and -h/--help
 * before the config file is read. *PATH points into argv.
 */
int flags_scan(enum drafter_tool tool, int argc, char **argv, const char **path, bool *help,
               struct config_error *err);
/* Second pass: apply the long options over what the config file set. */
int flags_parse_long(struct config *cfg, int argc, char **argv, struct config_error *err);

/* "Usage of drafter-nat:" and each flag with type and default, as Go prints it. */
void flags_usage_go(enum drafter_tool tool, const char *prog, FILE *out);
/* "drafter nat --help". */
void flags_usage_long(enum drafter_tool tool, FILE *out);

/* Go's strconv.Quote for ASCII and UTF-8 text (the usage shows defaults so). */
void flags_go_quote(const char *s, FILE *out);

#endif

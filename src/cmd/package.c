/*
 * drafter package: options are parsed and validated now; the command itself
 * is not available yet.
 */
#include "config.h"

#include <errno.h>

#include "cmd/cmds.h"
#include "core/config.h"
#include "core/log.h"

int cmd_package(int argc, char **argv)
{
	struct config cfg;
	int r;

	r = config_setup(&cfg, TOOL_PACKAGE, argc, argv);
	if (r != 0) {
		config_free(&cfg);
		return r > 0 ? 0 : 1;
	}
	log_error("'%s' is not available yet in this version of drafter", argv[0]);
	config_free(&cfg);
	return 1;
}

/*
 * drafter config check: validate a configuration file the way the commands
 * would read it, and print the effective settings in drafter.conf syntax.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmds.h"
#include "core/config.h"
#include "core/log.h"
#include "core/util.h"

static void usage(FILE *out)
{
	fprintf(out,
	        "Usage: drafter config check [-c FILE] [--tool NAME]\n"
	        "\n"
	        "Check a configuration file and print the effective settings in drafter.conf\n"
	        "syntax. Without -c the file is looked up as the commands do: ./drafter.conf,\n"
	        "then /etc/drafter/drafter.conf. Without --tool the file is checked for every\n"
	        "command and the settings common to all of them are printed.\n"
	        "\n"
	        "Options:\n"
	        "  -c, --config FILE                     the file to check\n"
	        "      --tool NAME                       check and print for one command: nat, "
	        "forward,\n"
	        "                                        snapshot, package, run, registry, peer, "
	        "terminate\n"
	        "  -h, --help                            show this help and exit\n");
}

/* Load PATH over TOOL's defaults and check it; ALL: one of a check of every tool. */
static int load(struct config *cfg, enum drafter_tool tool, const char *path, bool all)
{
	struct config_error err = {0};
	char msg[1024];
	int r;

	config_init(cfg, tool);
	if (path) {
		r = config_load_file(cfg, path, &err);
		if (r < 0)
			goto fail;
	}
	if (tool == TOOL__MAX)
		return 0;
	r = config_validate(cfg, &err);
	if (r < 0)
		goto fail;
	return 0;
fail:
	config_error_format(&err, msg, sizeof msg);
	if (all && r == -EINVAL && !err.line)
		log_error("%s (checked for 'drafter %s')", msg, tool_name(tool));
	else
		log_error("%s", msg);
	return r;
}

static int check(int argc, char **argv)
{
	const char *path = NULL, *tool_arg = NULL;
	enum drafter_tool tool = TOOL__MAX;
	struct config cfg;
	int r;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (str_eq(a, "-h") || str_eq(a, "--help")) {
			usage(stdout);
			return 0;
		} else if ((str_eq(a, "-c") || str_eq(a, "--config")) && i + 1 < argc) {
			path = argv[++i];
		} else if (str_startswith(a, "--config=")) {
			path = a + 9;
		} else if (str_eq(a, "--tool") && i + 1 < argc) {
			tool_arg = argv[++i];
		} else if (str_startswith(a, "--tool=")) {
			tool_arg = a + 7;
		} else {
			log_error("unknown argument '%s' for 'drafter config check'", a);
			fprintf(stderr, "Run 'drafter config --help' for usage.\n");
			return 2;
		}
	}
	if (tool_arg) {
		for (tool = 0; tool < TOOL__MAX; tool++)
			if (str_eq(tool_name(tool), tool_arg) ||
			    str_eq(tool_legacy_name(tool), tool_arg))
				break;
		if (tool == TOOL__MAX) {
			log_error("unknown command '%s' for --tool: expected nat, forward, "
			          "snapshot, package, "
			          "run, registry, peer or terminate",
			          tool_arg);
			return 2;
		}
	}
	if (!path) {
		if (access("drafter.conf", F_OK) == 0)
			path = "drafter.conf";
		else if (access("/etc/drafter/drafter.conf", F_OK) == 0)
			path = "/etc/drafter/drafter.conf";
		else
			log_info("no configuration file found; showing the defaults");
	}

	if (tool == TOOL__MAX) {
		/* A file is shared by all commands: it must be right for each. */
		for (enum drafter_tool t = 0; t < TOOL__MAX; t++) {
			r = load(&cfg, t, path, true);
			config_free(&cfg);
			if (r < 0)
				return 1;
		}
	}
	r = load(&cfg, tool, path, false);
	if (r == 0)
		config_dump(&cfg, stdout);
	config_free(&cfg);
	return r < 0 ? 1 : 0;
}

int cmd_config(int argc, char **argv)
{
	if (argc < 2 || str_eq(argv[1], "-h") || str_eq(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (str_eq(argv[1], "check"))
		return check(argc - 1, argv + 1);
	log_error("unknown 'drafter config' command '%s'", argv[1]);
	usage(stderr);
	return 2;
}

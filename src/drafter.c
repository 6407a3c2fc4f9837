/*
 * main(): find the command from argv[0] (a legacy "drafter-<tool>" name) or
 * from argv[1] (a subcommand), then hand over to it. The table below is the
 * only list of commands; --help prints it.
 */
#include "config.h"

#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>

#include "cmd/cmds.h"
#include "core/log.h"
#include "core/util.h"

struct drafter_cmd {
	const char *name;
	const char *legacy; /* the original's tool name, or NULL */
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct drafter_cmd commands[] = {
    {"nat", "drafter-nat", cmd_nat, "create network namespaces with NAT'd guest networking"},
    {"forward", "drafter-forwarder", cmd_forward,
     "forward host ports to ports of guests in namespaces"},
    {"snapshot", "drafter-snapshotter", cmd_snapshot,
     "boot a blueprint and snapshot it into a package"},
    {"package", "drafter-packager", cmd_package,
     "archive package devices into a .tar.zst, or extract them"},
    {"run", "drafter-runner", cmd_run, "resume a VM from a package; suspend it back on exit"},
    {"registry", "drafter-registry", cmd_registry, "serve a package's devices to peers"},
    {"peer", "drafter-peer", cmd_peer,
     "start a VM from a registry, a peer or local files; migrate it"},
    {"terminate", "drafter-terminator", cmd_terminate,
     "pull a running VM's devices from a peer into files"},
    {"config", NULL, cmd_config, "check a configuration file and print the effective settings"},
};

static void usage(FILE *out)
{
	fprintf(out, "Usage: drafter [--version] [--help] <command> [options]\n"
	             "       drafter help <command>\n"
	             "\n"
	             "Commands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\nLegacy names (the original's flags):");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (commands[i].legacy)
			fprintf(out, "%s %s", i % 4 == 0 ? "\n " : "", commands[i].legacy);
	fprintf(out, "\n\nSee drafter(1), drafter-<command>(1) and drafter.conf(5).\n");
}

static const struct drafter_cmd *find_command(const char *name, bool legacy)
{
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
		const char *n = legacy ? commands[i].legacy : commands[i].name;
		if (n && strcmp(n, name) == 0)
			return &commands[i];
	}
	return NULL;
}

int main(int argc, char **argv)
{
	const struct drafter_cmd *cmd;
	const char *base;

	setlocale(LC_CTYPE, "");
	base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];

	if (str_startswith(base, "drafter-")) {
		cmd = find_command(base, true);
		if (!cmd) {
			log_error("unknown command name '%s'", base);
			usage(stderr);
			return 127;
		}
		log_set_prog(cmd->legacy);
		argv[0] = (char *)cmd->legacy;
		return cmd->fn(argc, argv);
	}

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (str_eq(argv[1], "--help") || str_eq(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	if (str_eq(argv[1], "--version") || str_eq(argv[1], "-V")) {
		printf("drafter %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (str_eq(argv[1], "help")) {
		if (argc < 3) {
			usage(stdout);
			return 0;
		}
		cmd = find_command(argv[2], false);
		if (!cmd) {
			log_error("unknown command '%s'", argv[2]);
			usage(stderr);
			return 127;
		}
		char *help_argv[] = {(char *)cmd->name, (char *)"--help", NULL};
		return cmd->fn(2, help_argv);
	}
	if (argv[1][0] == '-') {
		log_error("unknown option '%s'", argv[1]);
		usage(stderr);
		return 2;
	}
	cmd = find_command(argv[1], false);
	if (!cmd) {
		log_error("unknown command '%s'", argv[1]);
		usage(stderr);
		return 127;
	}
	argv[1] = (char *)cmd->name;
	return cmd->fn(argc - 1, argv + 1);
}

/*
 * The subcommands. To add one: write src/cmd/<name>.c exporting
 * "int cmd_<name>(int argc, char **argv)", declare it here, add it to the
 * table in src/drafter.c and to drafter_SOURCES, and give it a man page.
 *
 * argv[0] is the name the command was called by: the subcommand name
 * ("nat") or the legacy name ("drafter-nat"); config_setup() uses it to pick
 * the option syntax. The return value is the process exit status.
 */
#ifndef DRAFTER_CMDS_H
#define DRAFTER_CMDS_H

int cmd_nat(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_package(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_registry(int argc, char **argv);
int cmd_peer(int argc, char **argv);
int cmd_terminate(int argc, char **argv);
int cmd_config(int argc, char **argv);

#endif

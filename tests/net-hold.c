/*
 * net-hold: drives the packet-holding API the VM layer uses, for the tests.
 *
 *   net-hold [-p] NETNS [QUEUE_MAX [MAX_WINDOW]]
 *
 * Without -p, starts holding the guest traffic of NETNS (prepare and engage
 * at once) and prints "holding"; with -p, only prepares and prints
 * "prepared". Then reads commands, one a line, on stdin:
 *   engage     prints "engaged in MS ms" (the time net_hold_engage took)
 *   engage-nowait  net_hold_engage_nowait, prints "engage posted"
 *   disengage  prints "disengaged held=N expired=0|1"
 *   mac MAC    the guest's MAC for the next disengage, prints "mac set"
 *   release    (or end of file) releases, prints what was held, and exits.
 * MAX_WINDOW is a duration such as "1s" or "500ms".
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/net/addr.h"
#include "core/net/hold.h"
#include "core/util.h"

static int usage(void)
{
	fprintf(stderr, "usage: net-hold [-p] NETNS [QUEUE_MAX [MAX_WINDOW]]\n");
	return 2;
}

/* Runs one command line; 1 when it was "release" (or end of file). */
static int command(struct net_hold *h, char *line)
{
	struct net_hold_stats st = { 0 };
	int r;

	if (str_eq(line, "engage\n")) {
		uint64_t t = now_ns();
		r = net_hold_engage(h);
		t = now_ns() - t;
		if (r < 0)
			fprintf(stderr, "net-hold: cannot engage: %s\n", strerror(-r));
		else
			printf("engaged in %.3f ms\n", (double)t / 1e6);
		return 0;
	}
	if (str_eq(line, "engage-nowait\n")) {
		net_hold_engage_nowait(h);
		printf("engage posted\n");
		return 0;
	}
	if (str_eq(line, "disengage\n")) {
		r = net_hold_disengage(h, &st);
		printf("disengaged held=%" PRIu64 " expired=%d\n", st.held, st.expired);
		if (r < 0)
			fprintf(stderr, "net-hold: disengage failed: %s\n", strerror(-r));
		return 0;
	}
	if (strncmp(line, "mac ", 4) == 0) {
		uint8_t mac[6];
		line[strcspn(line, "\n")] = 0;
		if (net_mac_parse(line + 4, mac) < 0) {
			fprintf(stderr, "net-hold: invalid MAC '%s'\n", line + 4);
			return 0;
		}
		net_hold_set_guest_mac(h, mac);
		printf("mac set\n");
		return 0;
	}
	if (!str_eq(line, "release\n") && *line)
		fprintf(stderr, "net-hold: unknown command '%s'\n", line);
	return str_eq(line, "release\n") || !*line;
}

int main(int argc, char **argv)
{
	struct net_hold_opts opts = { 0 };
	struct net_hold_stats st;
	struct net_hold *h;
	bool prepare_only = argc > 1 && str_eq(argv[1], "-p");
	char line[64];
	int r;

	if (prepare_only) {
		argc--;
		argv++;
	}
	if (argc < 2 || argc > 4)
		return usage();
	if (argc > 2 && parse_u32(argv[2], &opts.queue_max) < 0) {
		fprintf(stderr, "net-hold: invalid queue length '%s'\n", argv[2]);
		return 2;
	}
	if (argc > 3 && parse_duration_ns(argv[3], &opts.max_window_ns) < 0) {
		fprintf(stderr, "net-hold: invalid duration '%s'\n", argv[3]);
		return 2;
	}
	r = prepare_only ? net_hold_prepare(argv[1], &opts, &h) : net_hold_start_opts(argv[1], &opts, &h);
	if (r < 0) {
		fprintf(stderr, "net-hold: cannot hold the traffic of '%s': %s\n", argv[1], strerror(-r));
		return 1;
	}
	printf("%s\n", prepare_only ? "prepared" : "holding");
	fflush(stdout);
	do {
		if (!fgets(line, sizeof line, stdin))
			line[0] = 0;
		r = command(h, line);
		fflush(stdout);
	} while (!r);
	r = net_hold_release(h, &st);
	printf("released held=%" PRIu64 " expired=%d compat=%d engage=%.3fms\n", st.held, st.expired, st.compat,
	       (double)st.engage_ns / 1e6);
	if (r < 0) {
		fprintf(stderr, "net-hold: release failed: %s\n", strerror(-r));
		return 1;
	}
	return 0;
}

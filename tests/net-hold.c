/*
 * net-hold: drives the packet-holding API the VM layer uses, for the tests.
 *
 *   net-hold NETNS [QUEUE_MAX [MAX_WINDOW]]
 *
 * Starts holding the guest traffic of NETNS, prints "holding", waits for a
 * line (or end of file) on stdin, releases, and prints what was held.
 * MAX_WINDOW is a duration such as "1s" or "500ms".
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/net/hold.h"
#include "core/util.h"

int main(int argc, char **argv)
{
	struct net_hold_opts opts = { 0 };
	struct net_hold_stats st;
	struct net_hold *h;
	char line[64];
	int r;

	if (argc < 2 || argc > 4) {
		fprintf(stderr, "usage: net-hold NETNS [QUEUE_MAX [MAX_WINDOW]]\n");
		return 2;
	}
	if (argc > 2 && parse_u32(argv[2], &opts.queue_max) < 0) {
		fprintf(stderr, "net-hold: invalid queue length '%s'\n", argv[2]);
		return 2;
	}
	if (argc > 3 && parse_duration_ns(argv[3], &opts.max_window_ns) < 0) {
		fprintf(stderr, "net-hold: invalid duration '%s'\n", argv[3]);
		return 2;
	}
	r = net_hold_start_opts(argv[1], &opts, &h);
	if (r < 0) {
		fprintf(stderr, "net-hold: cannot hold the traffic of '%s': %s\n", argv[1], strerror(-r));
		return 1;
	}
	printf("holding\n");
	fflush(stdout);
	(void)!fgets(line, sizeof line, stdin);
	r = net_hold_release(h, &st);
	printf("released held=%" PRIu64 " expired=%d compat=%d\n", st.held, st.expired, st.compat);
	if (r < 0) {
		fprintf(stderr, "net-hold: release failed: %s\n", strerror(-r));
		return 1;
	}
	return 0;
}

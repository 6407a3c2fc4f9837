/*
 * net-forward-raw: the forward core without the configuration layer, for
 * the tests of what the core supports beyond the original's flags
 * (wildcard external addresses).
 *
 *   net-forward-raw HOST_VETH_CIDR NETNS PORT PROTO EXTERNAL_ADDR [...]
 *
 * Prints "ready" once the rules are in, removes them at end of stdin.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "core/net/forward.h"
#include "core/util.h"

int main(int argc, char **argv)
{
	struct cfg_port_forward fw[16];
	struct cfg_forward cfg = { .forwards = fw };
	struct net_forward f;
	char line[64];
	int r;

	if (argc < 6 || (argc - 2) % 4 != 0 || (size_t)(argc - 2) / 4 > ARRAY_SIZE(fw)) {
		fprintf(stderr, "usage: net-forward-raw HOST_VETH_CIDR NETNS PORT PROTO EXTERNAL_ADDR...\n");
		return 2;
	}
	cfg.host_veth_cidr = argv[1];
	for (int i = 2; i + 3 < argc; i += 4) {
		struct cfg_port_forward *p = &fw[cfg.n_forwards++];
		uint32_t port;
		memset(p, 0, sizeof *p);
		p->netns = argv[i];
		if (parse_u32(argv[i + 1], &port) < 0 || port > 65535) {
			fprintf(stderr, "net-forward-raw: bad port '%s'\n", argv[i + 1]);
			return 2;
		}
		p->internal_port = (uint16_t)port;
		p->protocol = str_eq(argv[i + 2], "udp") ? PROTO_UDP : PROTO_TCP;
		p->external_addr = argv[i + 3];
	}
	r = net_forward_plan(&cfg, &f);
	if (r == 0)
		r = net_forward_up(&f);
	if (r < 0) {
		fprintf(stderr, "net-forward-raw: %s: %s\n", f.err, strerror(-r));
		net_forward_free(&f);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	(void)!fgets(line, sizeof line, stdin);
	r = net_forward_down(&f);
	net_forward_free(&f);
	return r < 0 ? 1 : 0;
}

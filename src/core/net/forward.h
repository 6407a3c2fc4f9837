/*
 * drafter forward: host address:port -> a port of the guest in a namespace,
 * as nftables DNAT in a table of drafter's own per forwarder process
 * ("inet drafter_fwd_<pid>"), so several forwarders run side by side and each
 * removes exactly its own rules. The namespace's veth address is found inside
 * the namespace; nat's allow-incoming rule carries the traffic on to the guest.
 */
#ifndef DRAFTER_NET_FORWARD_H
#define DRAFTER_NET_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/net/addr.h"

struct net_fwd {
	char netns[64];
	uint8_t proto;            /* IPPROTO_TCP or IPPROTO_UDP */
	struct net_addr ext;      /* external address; any = every local address */
	uint16_t ext_port;
	struct net_addr target;   /* the namespace's veth address */
	uint16_t port;            /* port inside the guest */
};

struct net_forward {
	char table[64];
	struct net_fwd *fwd;
	size_t n;
	bool table_created;
	char err[512];
};

/*
 * Check every forward and resolve it (namespace, addresses, ports) before
 * anything is changed. HOST_VETH_CIDR is the range nat took the veth
 * addresses from. On error F->err is the line to show.
 */
int net_forward_plan(const struct cfg_forward *cfg, struct net_forward *f);
int net_forward_up(struct net_forward *f);
int net_forward_down(struct net_forward *f);
void net_forward_free(struct net_forward *f);

/* Delete the tables of forwarders that are no longer running; returns how many. */
int net_forward_remove_stale(void);

#endif

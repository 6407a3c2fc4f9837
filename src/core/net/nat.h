/*
 * drafter nat: N network namespaces that each offer a guest the identical
 * network (tap0 with the same gateway, netmask and MAC, optionally an IPv6
 * ULA subnet), reachable from the host through a veth pair with unique
 * addresses and NATed out of the host interface. Rules live in nftables
 * tables drafter owns: "inet drafter_nat_<prefix>" on the host and
 * "inet drafter" in every namespace.
 */
#ifndef DRAFTER_NET_NAT_H
#define DRAFTER_NET_NAT_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/config.h"
#include "core/net/addr.h"

/* Hard cap on the number of namespaces (the original's). */
#define NET_NAT_MAX_NAMESPACES 256
/* Directory of the state files that let a later run clean up after a crash. */
#define NET_STATE_DIR "/run/drafter"

struct net_nat_ns {
	char name[IFNAMSIZ];
	char veth_host[IFNAMSIZ]; /* <name>-veth1, on the host */
	char veth_ns[IFNAMSIZ];   /* <name>-veth0, in the namespace */
	struct net_addr hvi;      /* namespace end of the veth (host-veth-cidr) */
	struct net_addr hve;      /* host end of the veth */
	struct net_addr nvi;      /* the namespace's unique address (namespace-veth-cidr) */
	struct net_addr hvi6, hve6, nvi6;
	bool created;             /* the namespace exists and is ours to remove */
	bool veth_created;        /* the veth pair too */
};

struct net_nat {
	char host_if[IFNAMSIZ];
	char prefix[IFNAMSIZ];
	char table[64];           /* host table, family inet */
	char tap[IFNAMSIZ];
	struct net_prefix host_veth, ns_veth, blocked;
	struct net_addr gw, guest;
	unsigned netmask;
	uint8_t mac[6];
	bool allow_incoming;
	bool ipv6;
	struct net_prefix ula;    /* the configured prefix, /64 or shorter */
	struct net_prefix guest6_net, ns6_net, veth6_space;
	struct net_addr gw6, guest6;
	size_t count;
	struct net_nat_ns *ns;
	/* What to restore on the host. */
	char old_ip_forward[8], old_ip6_forwarding[8], old_accept_ra[8];
	bool host_table_created;
	bool state_written;
	/* Human-readable description of the step that failed. */
	char err[512];
};

/*
 * Check CFG and compute every name and address; nothing is changed yet.
 * On error, N->err says which setting is wrong.
 */
int net_nat_plan(const struct cfg_nat *cfg, struct net_nat *n);
void net_nat_free(struct net_nat *n);

/*
 * Leftovers of an earlier run with the same prefix: returns 1 when there are
 * some (and *PID is its process, 0 if unknown), 0 when there are none,
 * -EBUSY when that run is still alive.
 */
int net_nat_find_leftovers(const struct net_nat *n, pid_t *pid);
/* Remove whatever a run with this prefix left behind (namespaces, links,
 * tables, sysctls, state file). */
int net_nat_cleanup(struct net_nat *n);

/* Create everything. On failure N->err names the step; call net_nat_down. */
int net_nat_up(struct net_nat *n);
/* Remove everything net_nat_up created; safe after a partial net_nat_up. */
int net_nat_down(struct net_nat *n);

#endif

/*
 * Links, addresses and routes through libnl-route, and the guest's TAP
 * through /dev/net/tun. Every function works in the namespace of the socket
 * it is given (or, for the TAP, of the calling thread); libnl's NLE_* codes
 * are turned into -errno here.
 */
#ifndef DRAFTER_NET_LINK_H
#define DRAFTER_NET_LINK_H

#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/net/addr.h"

struct nl_sock;

/* A NETLINK_ROUTE socket in the calling thread's namespace. */
int net_nl_open(struct nl_sock **out);
void net_nl_close(struct nl_sock *sk);

/* ifindex (> 0) of NAME, or -ENODEV. */
int net_link_index(struct nl_sock *sk, const char *name);
int net_link_up(struct nl_sock *sk, const char *name);
int net_link_set_mac(struct nl_sock *sk, const char *name, const uint8_t mac[6]);
/* 0 when the link did not exist. */
int net_link_delete(struct nl_sock *sk, const char *name);
/*
 * Forget the neighbour entries on interface IFNAME that have no link-layer
 * address to use (being resolved, or failed): the next packet to such an
 * address resolves it afresh, at once, instead of waiting for the entry's
 * next probe. Entries with an address stay: packets to them leave at once,
 * where a forgotten one would queue every packet behind a new resolution,
 * and the kernel's queue for that keeps only the latest few hundred.
 */
int net_neigh_flush_unresolved(struct nl_sock *sk, const char *ifname);
/*
 * Tell IFNAME's neighbour table that ADDR is at link-layer address MAC, in
 * state STALE: used at once, confirmed by the kernel later. -EADDRNOTAVAIL
 * when ADDR lies on none of IFNAME's subnets.
 */
int net_neigh_set(struct nl_sock *sk, const char *ifname, const struct net_addr *addr,
		  const uint8_t mac[6]);
/* A veth pair NAME <-> PEER, the peer created directly in namespace PEER_NSFD. */
int net_veth_create(struct nl_sock *sk, const char *name, const char *peer, int peer_nsfd);

/* Add ADDR/PLEN to IFNAME (IPv6 without duplicate address detection). */
int net_addr_add(struct nl_sock *sk, const char *ifname, const struct net_addr *addr, unsigned plen);
/* Route DST via GW (NULL: directly connected) out of IFNAME (NULL: any). */
int net_route_add(struct nl_sock *sk, const struct net_prefix *dst, const struct net_addr *gw,
		  const char *ifname);
/* Interface of the main table's default route for FAMILY; -ENOENT if none. */
int net_default_route_ifname(struct nl_sock *sk, int family, char name[IFNAMSIZ]);
/*
 * The first address of FAMILY on a non-loopback link that lies inside
 * WITHIN (NULL: any global address). With ON_IFINDEX > 0 only that link is
 * considered. *IFINDEX gets the link it was found on.
 */
int net_addr_find(struct nl_sock *sk, int family, const struct net_prefix *within,
		  int on_ifindex, struct net_addr *out, int *ifindex);

/* Create a persistent TAP NAME (vnet headers, no packet info) in the calling
 * thread's namespace; -EEXIST if a link of that name exists. */
int net_tap_create(const char *name);
/* Attach to an existing TAP; returns the fd. VNET_HDR selects virtio headers. */
int net_tap_open(const char *name, bool vnet_hdr);

/* Whether ADDR is one of this namespace's addresses (can be bound). */
bool net_addr_is_local(const struct net_addr *addr);

#endif

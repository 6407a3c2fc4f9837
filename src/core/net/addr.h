/*
 * Address arithmetic for the guest networks: parsing CIDRs, MACs and
 * addresses, carving per-namespace subnets out of the configured ranges, and
 * formatting them back. Pure functions, no kernel calls, so that the
 * allocation scheme can be unit-tested on its own.
 */
#ifndef DRAFTER_NET_ADDR_H
#define DRAFTER_NET_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NET_ADDR_STRLEN 64

struct net_addr {
	int family;       /* AF_INET or AF_INET6 */
	uint8_t a[16];    /* network byte order; IPv4 uses the first 4 bytes */
};

struct net_prefix {
	struct net_addr addr; /* the network address (host bits cleared) */
	unsigned plen;
};

/* Length of the address in bytes (4 or 16). */
size_t net_addr_len(const struct net_addr *a);

/* "10.0.8.1", "fd00::1" (no brackets). -EINVAL on anything else. */
int net_addr_parse(const char *s, struct net_addr *out);
/* "10.0.8.0/22", "fd64::/48"; a bare address is a host prefix. Host bits
 * set in the address are refused (-EINVAL) unless ALLOW_HOST_BITS. */
int net_prefix_parse(const char *s, bool allow_host_bits, struct net_prefix *out);

void net_addr_format(const struct net_addr *a, char *buf, size_t len);
/* "10.0.8.0/22" */
void net_prefix_format(const struct net_prefix *p, char *buf, size_t len);

bool net_addr_eq(const struct net_addr *a, const struct net_addr *b);
bool net_prefix_contains(const struct net_prefix *p, const struct net_addr *a);
/* Whether A and B have the same first PLEN bits (false across families). */
bool net_addr_same_subnet(const struct net_addr *a, const struct net_addr *b, unsigned plen);
bool net_addr_is_any(const struct net_addr *a);
bool net_addr_is_loopback(const struct net_addr *a);

/* Address N inside P (P's network address plus N); -ERANGE when outside P. */
int net_prefix_host(const struct net_prefix *p, uint64_t n, struct net_addr *out);
/* The N-th subnet of length SUB_PLEN inside P; -ERANGE when there is none. */
int net_prefix_subnet(const struct net_prefix *p, unsigned sub_plen, uint64_t n,
		      struct net_prefix *out);
/* Number of subnets of length SUB_PLEN in P, saturated at UINT32_MAX. */
uint64_t net_prefix_count(const struct net_prefix *p, unsigned sub_plen);

/* "02:0e:d9:fd:68:3d" */
int net_mac_parse(const char *s, uint8_t mac[6]);

/* Split "127.0.0.1:3333", "[::1]:8080", "localhost:80" into host (without
 * brackets) and port (1-65535). -EINVAL on a malformed value, -ERANGE on a
 * port out of range. */
int net_hostport_split(const char *s, char *host, size_t hostlen, uint16_t *port);

#endif

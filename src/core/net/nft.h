/*
 * A small nftables client on libmnl + libnftnl: build one atomic batch of
 * tables, chains and rules, commit it, and list or delete tables. drafter
 * only ever touches tables it created itself (their names start with
 * "drafter"), so teardown is deleting a table.
 */
#ifndef DRAFTER_NET_NFT_H
#define DRAFTER_NET_NFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/net/addr.h"

struct nftnl_rule;
struct nft_batch;

/* Chain priorities as nft(8) names them. */
#define NFT_PRIO_DSTNAT (-100)
#define NFT_PRIO_FILTER 0
#define NFT_PRIO_SRCNAT 100

int nft_batch_new(struct nft_batch **out);
void nft_batch_free(struct nft_batch *b);

/* FAMILY is NFPROTO_INET, NFPROTO_IPV4 or NFPROTO_IPV6. */
void nft_batch_add_table(struct nft_batch *b, int family, const char *table);
void nft_batch_del_table(struct nft_batch *b, int family, const char *table);
/* A base chain: TYPE "nat" or "filter", HOOK NF_INET_*, policy accept. */
void nft_batch_add_chain(struct nft_batch *b, int family, const char *table,
			 const char *chain, const char *type, unsigned hook, int prio);
/* Appends R (built with nft_rule_*) to its chain; takes ownership of R. */
void nft_batch_add_rule(struct nft_batch *b, struct nftnl_rule *r);
/* Number of table/chain/rule messages queued so far. */
size_t nft_batch_size(const struct nft_batch *b);

/*
 * Send the batch in the calling thread's network namespace. All or nothing:
 * the kernel applies every message or none. Returns 0 or the -errno of the
 * first message the kernel refused.
 */
int nft_batch_commit(struct nft_batch *b);

/* Rule builder. Matches are anded in the order they are added. */
struct nftnl_rule *nft_rule_new(int family, const char *table, const char *chain);
void nft_rule_iifname(struct nftnl_rule *r, const char *ifname, bool negate);
void nft_rule_oifname(struct nftnl_rule *r, const char *ifname, bool negate);
/* Matches the layer-3 protocol (IPv4 or IPv6 per P's family) and the source
 * or destination against prefix P. */
void nft_rule_saddr(struct nftnl_rule *r, const struct net_prefix *p);
void nft_rule_daddr(struct nftnl_rule *r, const struct net_prefix *p);
void nft_rule_nfproto(struct nftnl_rule *r, int family /* AF_INET/AF_INET6 */);
void nft_rule_l4proto(struct nftnl_rule *r, uint8_t proto /* IPPROTO_TCP/UDP */);
void nft_rule_dport(struct nftnl_rule *r, uint16_t port);
/* ct state established,related */
void nft_rule_ct_established(struct nftnl_rule *r);
/* fib daddr type local: the destination is one of this host's addresses. */
void nft_rule_daddr_local(struct nftnl_rule *r);
void nft_rule_accept(struct nftnl_rule *r);
void nft_rule_drop(struct nftnl_rule *r);
/* snat/dnat to ADDR (PORT 0: keep the port). */
void nft_rule_snat(struct nftnl_rule *r, const struct net_addr *addr, uint16_t port);
void nft_rule_dnat(struct nftnl_rule *r, const struct net_addr *addr, uint16_t port);
void nft_rule_masquerade(struct nftnl_rule *r);
/*
 * Hand packets to NFQUEUE queue NUM, letting them pass when no program is
 * bound (bypass). COMPAT uses the xtables NFQUEUE target through nft's
 * compatibility layer instead of the native queue expression, for kernels
 * built without CONFIG_NFT_QUEUE; it needs an ip or ip6 family table.
 */
void nft_rule_queue(struct nftnl_rule *r, uint16_t num, bool compat);
void nft_rule_counter(struct nftnl_rule *r);

/* Tables of the calling thread's namespace. */
struct nft_table_id {
	int family;
	char name[256];
};
/* All tables (any family) whose name starts with PREFIX; caller frees *OUT. */
int nft_list_tables(const char *prefix, struct nft_table_id **out, size_t *n);
/* Delete one table; 0 when it did not exist. */
int nft_delete_table(int family, const char *table);

const char *nft_family_name(int family);

#endif

/*
 * Unit tests of the networking module against the kernel, inside a network
 * namespace of the test's own (unshare): links, addresses, routes and TAPs
 * through libnl and /dev/net/tun, nftables batches (all or nothing), listing
 * and deleting tables, named namespaces and running code inside them, and
 * the packet-holding API's start/release cycle.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <linux/netfilter.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <netlink/netlink.h>

#include "core/net/hold.h"
#include "core/net/link.h"
#include "core/net/netns.h"
#include "core/net/nft.h"
#include "core/util.h"
#include "tests/tap.h"

static unsigned long long ns_inode(void)
{
	struct stat st;

	return stat("/proc/thread-self/ns/net", &st) == 0 ? (unsigned long long)st.st_ino : 0;
}

static int in_ns(void *arg)
{
	*(unsigned long long *)arg = ns_inode();
	return 42;
}

static bool has_table(const char *name)
{
	struct nft_table_id *t = NULL;
	size_t n = 0;
	bool found = false;

	if (nft_list_tables("drafter_unit", &t, &n) < 0)
		return false;
	for (size_t i = 0; i < n; i++)
		found |= str_eq(t[i].name, name);
	free(t);
	return found;
}

static void test_links(void)
{
	struct nl_sock *sk = NULL;
	struct net_addr a, gw, found;
	struct net_prefix any = { .addr = { .family = AF_INET } }, within;
	char ifname[IFNAMSIZ] = "";
	uint8_t mac[6] = { 0x02, 0, 0, 0, 0, 0x42 };
	int idx = 0, fd;

	is_int(net_nl_open(&sk), 0, "netlink socket");
	is_int(net_link_up(sk, "lo"), 0, "lo up");
	is_int(net_link_index(sk, "nosuch0"), -ENODEV, "an unknown link is -ENODEV");
	is_int(net_veth_create(sk, "ut-a", "ut-b", -1), 0, "veth pair");
	is_int(net_veth_create(sk, "ut-a", "ut-c", -1), -EEXIST, "a second pair of that name is -EEXIST");
	ok(net_link_index(sk, "ut-b") > 0, "the peer exists");
	is_int(net_link_set_mac(sk, "ut-a", mac), 0, "set a MAC");
	net_addr_parse("10.9.0.1", &a);
	is_int(net_addr_add(sk, "ut-a", &a, 24), 0, "add an IPv4 address");
	net_addr_parse("fd09::1", &a);
	is_int(net_addr_add(sk, "ut-a", &a, 64), 0, "add an IPv6 address");
	is_int(net_link_up(sk, "ut-a"), 0, "up");
	is_int(net_link_up(sk, "ut-b"), 0, "peer up");
	is_int(net_default_route_ifname(sk, AF_INET, ifname), -ENOENT, "no default route yet");
	net_addr_parse("10.9.0.254", &gw);
	is_int(net_route_add(sk, &any, &gw, "ut-a"), 0, "default route");
	is_int(net_default_route_ifname(sk, AF_INET, ifname), 0, "default route found");
	is_str(ifname, "ut-a", "on its interface");
	net_prefix_parse("10.9.0.0/16", false, &within);
	is_int(net_addr_find(sk, AF_INET, &within, 0, &found, &idx), 0, "address in a range found");
	ok(idx == net_link_index(sk, "ut-a"), "on the right link");
	is_int(net_addr_find(sk, AF_INET6, NULL, idx, &found, NULL), 0, "IPv6 address on that link found");
	net_addr_parse("fd09::1", &a);
	ok(net_addr_eq(&found, &a), "and it is the global one, not link-local");
	net_prefix_parse("10.10.0.0/16", false, &within);
	is_int(net_addr_find(sk, AF_INET, &within, 0, &found, NULL), -EADDRNOTAVAIL, "none in another range");
	net_addr_parse("10.9.0.1", &a);
	ok(net_addr_is_local(&a), "10.9.0.1 is local");
	net_addr_parse("10.9.0.2", &a);
	ok(!net_addr_is_local(&a), "10.9.0.2 is not");

	if (access("/dev/net/tun", R_OK | W_OK) == 0) {
		is_int(net_tap_create("ut-tap"), 0, "TAP created");
		is_int(net_tap_create("ut-tap"), -EEXIST, "a second TAP of that name is -EEXIST");
		fd = net_tap_open("ut-tap", true);
		ok(fd >= 0, "a VMM-style open attaches to it");
		if (fd >= 0)
			close(fd);
		ok(net_link_index(sk, "ut-tap") > 0, "it is persistent");
		is_int(net_link_delete(sk, "ut-tap"), 0, "TAP deleted");
	} else {
		skip("no /dev/net/tun");
		skip("no /dev/net/tun");
		skip("no /dev/net/tun");
		skip("no /dev/net/tun");
		skip("no /dev/net/tun");
	}
	is_int(net_link_delete(sk, "ut-a"), 0, "veth deleted");
	is_int(net_link_index(sk, "ut-b"), -ENODEV, "with its peer");
	is_int(net_link_delete(sk, "ut-a"), 0, "deleting what is gone is not an error");
	net_nl_close(sk);
}

static void test_nft(void)
{
	struct nft_batch *b;
	struct nftnl_rule *r;
	struct net_prefix p4, p6;
	struct net_addr a4, a6;
	int rc;

	net_prefix_parse("10.0.15.0/24", false, &p4);
	net_prefix_parse("fd00::/64", false, &p6);
	net_addr_parse("10.0.8.1", &a4);
	net_addr_parse("fd00::2", &a6);

	nft_batch_new(&b);
	nft_batch_add_table(b, NFPROTO_INET, "drafter_unit");
	nft_batch_add_chain(b, NFPROTO_INET, "drafter_unit", "pre", "nat", NF_INET_PRE_ROUTING, NFT_PRIO_DSTNAT);
	nft_batch_add_chain(b, NFPROTO_INET, "drafter_unit", "post", "nat", NF_INET_POST_ROUTING, NFT_PRIO_SRCNAT);
	nft_batch_add_chain(b, NFPROTO_INET, "drafter_unit", "fwd", "filter", NF_INET_FORWARD, NFT_PRIO_FILTER);
	r = nft_rule_new(NFPROTO_INET, "drafter_unit", "pre");
	nft_rule_iifname(r, "veth0", false);
	nft_rule_daddr(r, &p4);
	nft_rule_l4proto(r, IPPROTO_TCP);
	nft_rule_dport(r, 3333);
	nft_rule_dnat(r, &a4, 6379);
	nft_batch_add_rule(b, r);
	r = nft_rule_new(NFPROTO_INET, "drafter_unit", "pre");
	nft_rule_nfproto(r, AF_INET6);
	nft_rule_daddr_local(r);
	nft_rule_l4proto(r, IPPROTO_UDP);
	nft_rule_dport(r, 53);
	nft_rule_dnat(r, &a6, 0);
	nft_batch_add_rule(b, r);
	r = nft_rule_new(NFPROTO_INET, "drafter_unit", "post");
	nft_rule_oifname(r, "eth0", true);
	nft_rule_saddr(r, &p6);
	nft_rule_snat(r, &a6, 0);
	nft_batch_add_rule(b, r);
	r = nft_rule_new(NFPROTO_INET, "drafter_unit", "post");
	nft_rule_saddr(r, &p4);
	nft_rule_masquerade(r);
	nft_batch_add_rule(b, r);
	r = nft_rule_new(NFPROTO_INET, "drafter_unit", "fwd");
	nft_rule_ct_established(r);
	nft_rule_counter(r);
	nft_rule_accept(r);
	nft_batch_add_rule(b, r);
	r = nft_rule_new(NFPROTO_INET, "drafter_unit", "fwd");
	nft_rule_saddr(r, &p4);
	nft_rule_daddr(r, &p4);
	nft_rule_drop(r);
	nft_batch_add_rule(b, r);
	is_int(nft_batch_size(b), 10, "ten messages queued");
	is_int(nft_batch_commit(b), 0, "a batch with every kind of rule is accepted");
	nft_batch_free(b);
	ok(has_table("drafter_unit"), "the table is listed");

	/* The compat NFQUEUE target (what hold uses on kernels without the
	 * native queue expression) in an ip table. */
	nft_batch_new(&b);
	nft_batch_add_table(b, NFPROTO_IPV4, "drafter_unit_q");
	nft_batch_add_chain(b, NFPROTO_IPV4, "drafter_unit_q", "fwd", "filter", NF_INET_FORWARD, -300);
	r = nft_rule_new(NFPROTO_IPV4, "drafter_unit_q", "fwd");
	nft_rule_oifname(r, "tap0", false);
	nft_rule_queue(r, 17490, true);
	nft_batch_add_rule(b, r);
	rc = nft_batch_commit(b);
	nft_batch_free(b);
	ok(rc == 0 || rc == -ENOENT || rc == -EOPNOTSUPP, "compat NFQUEUE rule: %d", rc);

	/* All or nothing: a bad rule takes the new table down with it. */
	nft_batch_new(&b);
	nft_batch_add_table(b, NFPROTO_INET, "drafter_unit2");
	r = nft_rule_new(NFPROTO_INET, "drafter_unit2", "nosuchchain");
	nft_rule_accept(r);
	nft_batch_add_rule(b, r);
	is_int(nft_batch_commit(b), -ENOENT, "a rule in a missing chain fails the batch with -ENOENT");
	nft_batch_free(b);
	ok(!has_table("drafter_unit2"), "and the batch's table was not created");

	is_int(nft_delete_table(NFPROTO_INET, "drafter_unit"), 0, "table deleted");
	ok(!has_table("drafter_unit"), "and no longer listed");
	is_int(nft_delete_table(NFPROTO_INET, "drafter_unit"), 0, "deleting a missing table is not an error");
	(void)nft_delete_table(NFPROTO_IPV4, "drafter_unit_q");
}

static void test_netns(void)
{
	char name[64], buf[16];
	unsigned long long inside = 0;
	char **names = NULL;
	size_t n = 0;
	int fd;

	snprintf(name, sizeof name, "drafter-unit-%ld", (long)getpid());
	is_int(netns_create(name), 0, "named namespace created");
	ok(netns_exists(name), "it exists under /run/netns");
	is_int(netns_create(name), -EEXIST, "creating it again is -EEXIST");
	fd = netns_open(name);
	ok(fd >= 0, "it opens");
	is_int(netns_run(fd, in_ns, &inside), 42, "code runs inside and returns its result");
	ok(inside && inside != ns_inode(), "in another namespace than the caller's");
	close(fd);

	/* Holding: one holder per namespace; release with nothing held. */
	struct net_hold *h = NULL, *h2 = NULL;
	struct net_hold_stats st;
	is_int(net_hold_start("drafter-unit-no-such-ns", &h), -ENOENT, "hold in a missing namespace: -ENOENT");
	is_int(net_hold_start(name, &h), 0, "hold starts");
	is_int(net_hold_start(name, &h2), -EBUSY, "a second holder of the same namespace: -EBUSY");
	is_int(net_hold_release(h, &st), 0, "release");
	is_int(st.held, 0, "nothing was held");
	ok(!st.expired, "the window did not expire");
	is_int(net_hold_start(name, &h), 0, "hold starts again after release");
	is_int(net_hold_release(h, NULL), 0, "and releases");

	snprintf(buf, sizeof buf, "%ld", (long)getpid());
	is_int(netns_list_numbered("drafter-unit-", &names, &n), 0, "numbered names listed");
	bool listed = false;
	for (size_t i = 0; i < n; i++)
		listed |= strstr(names[i], buf) != NULL;
	ok(listed, "ours among them");
	netns_names_free(names, n);
	is_int(netns_delete(name), 0, "namespace deleted");
	ok(!netns_exists(name), "gone");
	is_int(netns_open(name), -ENOENT, "opening it is -ENOENT");
	is_int(netns_delete(name), 0, "deleting it again is not an error");
}

static void test_sysctl(void)
{
	char v[16];

	is_int(net_sysctl_write("/proc/sys/net/ipv4/ip_forward", "1"), 0, "sysctl written");
	is_int(net_sysctl_read("/proc/sys/net/ipv4/ip_forward", v, sizeof v), 0, "sysctl read");
	is_str(v, "1", "value kept, newline stripped");
	is_int(net_sysctl_read("/proc/sys/net/nosuch", v, sizeof v), -ENOENT, "a missing sysctl is -ENOENT");
}

int main(void)
{
	if (geteuid() != 0 || unshare(CLONE_NEWNET) < 0) {
		printf("1..0 # SKIP needs root to create a network namespace\n");
		return 0; /* "1..0 # SKIP" is the skip; tap-driver counts exit 77 as an error */
	}
	test_links();
	test_nft();
	test_netns();
	test_sysctl();
	return done_testing();
}

/*
 * drafter nat (see nat.h): plan the addresses, build the namespaces with
 * libnl and /dev/net/tun, install drafter's own nftables tables, and take it
 * all down again. A state file under /run/drafter records the run's pid and
 * the host settings it changed, so that a later run can clean up after one
 * that was killed.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <linux/netfilter.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <netlink/netlink.h>

#include "core/io.h"
#include "core/net/link.h"
#include "core/net/nat.h"
#include "core/net/netns.h"
#include "core/net/nft.h"
#include "core/util.h"

#define NS_TABLE "drafter"
#define DEFAULT_ULA "fd00:100:100::/64"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct nl_sock *, net_nl_close)

static int fail(struct net_nat *n, int r, const char *fmt, ...) _printf_(3, 4);
static int fail(struct net_nat *n, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(n->err, sizeof n->err, fmt, ap);
	va_end(ap);
	return r;
}

static bool valid_name_chars(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-' || *s == '.'))
			return false;
	return true;
}

static int parse_prefix_setting(struct net_nat *n, const char *key, const char *v,
				int family, struct net_prefix *out)
{
	if (str_empty(v) || net_prefix_parse(v, false, out) < 0 || out->addr.family != family)
		return fail(n, -EINVAL, "invalid %s '%s': expected an %s network in CIDR notation",
			    key, v ? v : "", family == AF_INET ? "IPv4" : "IPv6");
	return 0;
}

int net_nat_plan(const struct cfg_nat *cfg, struct net_nat *n)
{
	uint64_t max, hosts;
	int r;

	memset(n, 0, sizeof *n);
	const char *prefix = str_empty(cfg->namespace_prefix) ? "ark" : cfg->namespace_prefix;
	if (!valid_name_chars(prefix) || strlen(prefix) >= sizeof n->prefix)
		return fail(n, -EINVAL, "invalid namespace prefix '%s': use letters, digits, '_', '-' and '.'",
			    prefix);
	snprintf(n->prefix, sizeof n->prefix, "%s", prefix);
	snprintf(n->table, sizeof n->table, "drafter_nat_%s", prefix);
	for (char *p = n->table; *p; p++)
		if (*p == '-' || *p == '.')
			*p = '_';

	const char *tap = str_empty(cfg->namespace_interface) ? "tap0" : cfg->namespace_interface;
	if (strlen(tap) >= IFNAMSIZ || !valid_name_chars(tap))
		return fail(n, -EINVAL, "invalid namespace interface '%s'", tap);
	snprintf(n->tap, sizeof n->tap, "%s", tap);

	if (!str_empty(cfg->host_interface)) {
		if (strlen(cfg->host_interface) >= IFNAMSIZ)
			return fail(n, -EINVAL, "invalid host interface '%s'", cfg->host_interface);
		snprintf(n->host_if, sizeof n->host_if, "%s", cfg->host_interface);
	}

	r = parse_prefix_setting(n, "host veth CIDR", cfg->host_veth_cidr ? cfg->host_veth_cidr : "10.0.8.0/22",
				 AF_INET, &n->host_veth);
	if (r < 0)
		return r;
	r = parse_prefix_setting(n, "namespace veth CIDR",
				 cfg->namespace_veth_cidr ? cfg->namespace_veth_cidr : "10.0.15.0/24",
				 AF_INET, &n->ns_veth);
	if (r < 0)
		return r;
	r = parse_prefix_setting(n, "blocked subnet CIDR",
				 cfg->blocked_subnet_cidr ? cfg->blocked_subnet_cidr : "10.0.15.0/24",
				 AF_INET, &n->blocked);
	if (r < 0)
		return r;
	if (n->host_veth.plen > 30)
		return fail(n, -EINVAL, "host veth CIDR '%s' is too small: it must hold at least one /30",
			    cfg->host_veth_cidr);
	if (n->ns_veth.plen > 30)
		return fail(n, -EINVAL, "namespace veth CIDR '%s' is too small", cfg->namespace_veth_cidr);

	const char *gw = str_empty(cfg->namespace_interface_gateway) ? "172.100.100.1"
								      : cfg->namespace_interface_gateway;
	const char *ip = str_empty(cfg->namespace_interface_ip) ? "172.100.100.2" : cfg->namespace_interface_ip;
	if (net_addr_parse(gw, &n->gw) < 0 || n->gw.family != AF_INET)
		return fail(n, -EINVAL, "invalid namespace interface gateway '%s'", gw);
	if (net_addr_parse(ip, &n->guest) < 0 || n->guest.family != AF_INET)
		return fail(n, -EINVAL, "invalid namespace interface IP '%s'", ip);
	n->netmask = cfg->namespace_interface_netmask ? cfg->namespace_interface_netmask : 30;
	if (n->netmask < 1 || n->netmask > 30)
		return fail(n, -EINVAL, "invalid namespace interface netmask %u: expected 1 to 30", n->netmask);
	{
		struct net_prefix gnet = { .addr = n->gw, .plen = n->netmask };
		struct net_prefix tmp;
		char b[NET_ADDR_STRLEN];
		net_prefix_format(&gnet, b, sizeof b);
		net_prefix_parse(b, true, &tmp);
		if (!net_prefix_contains(&tmp, &n->guest) || net_addr_eq(&n->gw, &n->guest))
			return fail(n, -EINVAL, "namespace interface IP '%s' is not a host in gateway '%s'/%u's network",
				    ip, gw, n->netmask);
	}
	const char *mac = str_empty(cfg->namespace_interface_mac) ? "02:0e:d9:fd:68:3d" : cfg->namespace_interface_mac;
	if (net_mac_parse(mac, n->mac) < 0)
		return fail(n, -EINVAL, "invalid namespace interface MAC '%s'", mac);
	n->allow_incoming = cfg->allow_incoming_traffic;

	/* As many namespaces as both ranges allow, at most the original's 256. */
	hosts = n->ns_veth.plen >= 31 ? 0 : ((uint64_t)1 << (32 - n->ns_veth.plen)) - 2;
	max = net_prefix_count(&n->host_veth, 30);
	if (hosts < max)
		max = hosts;
	if (max > NET_NAT_MAX_NAMESPACES)
		max = NET_NAT_MAX_NAMESPACES;
	n->count = cfg->namespace_count ? cfg->namespace_count : max;
	if (n->count > max)
		return fail(n, -ERANGE, "namespace count %zu is more than the veth ranges allow (%" PRIu64 ")",
			    n->count, max);
	{
		char longest[64];
		snprintf(longest, sizeof longest, "%s%zu-veth1", n->prefix, n->count - 1);
		if (strlen(longest) >= IFNAMSIZ)
			return fail(n, -ENAMETOOLONG,
				    "namespace prefix '%s' is too long: interface name '%s' exceeds %d characters",
				    n->prefix, longest, IFNAMSIZ - 1);
	}

	n->ipv6 = cfg->ipv6;
	if (n->ipv6) {
		const char *ula = str_empty(cfg->ipv6_prefix) ? DEFAULT_ULA : cfg->ipv6_prefix;
		r = parse_prefix_setting(n, "IPv6 prefix", ula, AF_INET6, &n->ula);
		if (r < 0)
			return r;
		if (n->ula.plen > 64)
			return fail(n, -EINVAL, "IPv6 prefix '%s' is too small: a /64 or larger is needed", ula);
		/*
		 * All of it lives in the prefix's first /64: the guest network is
		 * the whole /64 on the TAP; the namespaces' unique addresses come
		 * from its second /80 and the veth links (/126 each) from its third.
		 * Those are only ever routed on the host, never inside a namespace.
		 */
		net_prefix_subnet(&n->ula, 64, 0, &n->guest6_net);
		net_prefix_subnet(&n->guest6_net, 80, 1, &n->ns6_net);
		net_prefix_subnet(&n->guest6_net, 80, 2, &n->veth6_space);
		net_prefix_host(&n->guest6_net, 1, &n->gw6);
		net_prefix_host(&n->guest6_net, 2, &n->guest6);
	}

	n->ns = xcalloc(n->count, sizeof *n->ns);
	for (size_t i = 0; i < n->count; i++) {
		struct net_nat_ns *ns = &n->ns[i];
		struct net_prefix sub;

		char name[64];

		/* Lengths were checked above against the longest name. */
		snprintf(name, sizeof name, "%s%zu", n->prefix, i);
		snprintf(ns->name, sizeof ns->name, "%.15s", name);
		snprintf(name, sizeof name, "%s%zu-veth1", n->prefix, i);
		snprintf(ns->veth_host, sizeof ns->veth_host, "%.15s", name);
		snprintf(name, sizeof name, "%s%zu-veth0", n->prefix, i);
		snprintf(ns->veth_ns, sizeof ns->veth_ns, "%.15s", name);
		net_prefix_subnet(&n->host_veth, 30, i, &sub);
		net_prefix_host(&sub, 1, &ns->hvi);
		net_prefix_host(&sub, 2, &ns->hve);
		net_prefix_host(&n->ns_veth, i + 1, &ns->nvi);
		if (n->ipv6) {
			net_prefix_subnet(&n->veth6_space, 126, i, &sub);
			net_prefix_host(&sub, 1, &ns->hvi6);
			net_prefix_host(&sub, 2, &ns->hve6);
			net_prefix_host(&n->ns6_net, i + 1, &ns->nvi6);
		}
	}
	return 0;
}

void net_nat_free(struct net_nat *n)
{
	free(n->ns);
	n->ns = NULL;
}

/* ---- state file ---- */

static void state_path(const struct net_nat *n, char *buf, size_t len)
{
	snprintf(buf, len, NET_STATE_DIR "/nat-%s.state", n->prefix);
}

/* Identity of the calling thread's network namespace. */
static unsigned long long netns_id(void)
{
	struct stat st;

	return stat("/proc/thread-self/ns/net", &st) == 0 ? (unsigned long long)st.st_ino : 0;
}

static int write_state(struct net_nat *n)
{
	char path[256], tmp[300];
	_cleanup_fclose_ FILE *f = NULL;

	if (mkdir_parents(NET_STATE_DIR "/x") < 0)
		return -errno;
	state_path(n, path, sizeof path);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fprintf(f, "pid=%ld\nnetns=%llu\ncount=%zu\nhost_interface=%s\nip_forward=%s\nipv6_forwarding=%s\naccept_ra=%s\n",
		(long)getpid(), netns_id(), n->count, n->host_if, n->old_ip_forward, n->old_ip6_forwarding,
		n->old_accept_ra);
	if (fflush(f) != 0 || ferror(f))
		return -EIO;
	if (rename(tmp, path) < 0)
		return -errno;
	n->state_written = true;
	return 0;
}

struct state {
	long pid;
	unsigned long long netns;
	char host_if[IFNAMSIZ];
	char ip_forward[8], ip6_forwarding[8], accept_ra[8];
};

static int read_state_file(const char *path, struct state *st)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	char line[256];

	memset(st, 0, sizeof *st);
	if (!f)
		return -errno;
	while (fgets(line, sizeof line, f)) {
		char *eq = strchr(line, '='), *v;
		int64_t pid;
		uint64_t id;
		if (!eq)
			continue;
		*eq = '\0';
		v = eq + 1;
		v[strcspn(v, "\n")] = '\0';
		if (str_eq(line, "pid") && parse_i64(v, &pid) == 0 && pid > 0 && pid < INT32_MAX)
			st->pid = (long)pid;
		else if (str_eq(line, "netns") && parse_u64(v, &id) == 0)
			st->netns = id;
		else if (str_eq(line, "host_interface"))
			snprintf(st->host_if, sizeof st->host_if, "%s", v);
		else if (str_eq(line, "ip_forward"))
			snprintf(st->ip_forward, sizeof st->ip_forward, "%s", v);
		else if (str_eq(line, "ipv6_forwarding"))
			snprintf(st->ip6_forwarding, sizeof st->ip6_forwarding, "%s", v);
		else if (str_eq(line, "accept_ra"))
			snprintf(st->accept_ra, sizeof st->accept_ra, "%s", v);
	}
	return 0;
}

/* A live drafter process (a reused pid running something else is not). */
static bool pid_alive(long pid)
{
	char path[64], comm[32];

	if (pid <= 0 || (kill((pid_t)pid, 0) < 0 && errno != EPERM))
		return false;
	snprintf(path, sizeof path, "/proc/%ld/comm", pid);
	if (read_small_file(path, comm, sizeof comm) <= 0)
		return true; /* cannot tell: assume it is */
	return str_startswith(comm, "drafter");
}

/* Another live drafter nat (any prefix) in this network namespace still
 * needs its forwarding switched on. */
static bool other_nat_alive(const struct net_nat *n)
{
	DIR *d = opendir(NET_STATE_DIR);
	struct dirent *de;
	bool alive = false;
	char mine[256];

	if (!d)
		return false;
	state_path(n, mine, sizeof mine);
	while (!alive && (de = readdir(d))) {
		char path[512];
		struct state st;
		if (!str_startswith(de->d_name, "nat-") || !strstr(de->d_name, ".state"))
			continue;
		snprintf(path, sizeof path, NET_STATE_DIR "/%s", de->d_name);
		if (str_eq(path, mine) || read_state_file(path, &st) < 0)
			continue;
		alive = st.pid != getpid() && pid_alive(st.pid) && st.netns == netns_id();
	}
	closedir(d);
	return alive;
}

/* ---- sysctls ---- */

static void accept_ra_path(const char *ifname, char *buf, size_t len)
{
	snprintf(buf, len, "/proc/sys/net/ipv6/conf/%s/accept_ra", ifname);
}

static void restore_sysctls(const struct net_nat *n, const char *host_if, const char *ip_forward,
			    const char *ip6_forwarding, const char *accept_ra)
{
	char path[128];

	if (other_nat_alive(n))
		return;
	/* Only what drafter switched on is switched back off. */
	if (str_eq(ip_forward, "0"))
		(void)net_sysctl_write("/proc/sys/net/ipv4/ip_forward", "0");
	if (str_eq(ip6_forwarding, "0"))
		(void)net_sysctl_write("/proc/sys/net/ipv6/conf/all/forwarding", "0");
	if (!str_empty(accept_ra) && !str_empty(host_if)) {
		accept_ra_path(host_if, path, sizeof path);
		(void)net_sysctl_write(path, accept_ra);
	}
}

/* ---- leftovers ---- */

static bool host_table_exists(const struct net_nat *n)
{
	struct nft_table_id *t = NULL;
	size_t c = 0;
	bool found = false;

	if (nft_list_tables(n->table, &t, &c) < 0)
		return false;
	for (size_t i = 0; i < c; i++)
		found |= str_eq(t[i].name, n->table);
	free(t);
	return found;
}

int net_nat_find_leftovers(const struct net_nat *n, pid_t *pid)
{
	char path[256];
	struct state st;
	char **names = NULL;
	size_t c = 0;

	*pid = 0;
	state_path(n, path, sizeof path);
	if (read_state_file(path, &st) == 0) {
		*pid = (pid_t)st.pid;
		if (st.pid != getpid() && pid_alive(st.pid))
			return -EBUSY;
		return 1;
	}
	if (host_table_exists(n))
		return 2;
	if (netns_list_numbered(n->prefix, &names, &c) == 0 && c > 0) {
		netns_names_free(names, c);
		return 2;
	}
	return 0;
}

int net_nat_cleanup(struct net_nat *n)
{
	_cleanup_(net_nl_closep) struct nl_sock *sk = NULL;
	char path[256];
	struct state st;
	char **names = NULL;
	size_t c = 0;
	bool have_state;
	int r, ret = 0;

	state_path(n, path, sizeof path);
	have_state = read_state_file(path, &st) == 0;

	r = nft_delete_table(NFPROTO_INET, n->table);
	if (r < 0)
		ret = fail(n, r, "cannot delete nftables table 'inet %s'", n->table);

	r = net_nl_open(&sk);
	if (r < 0)
		return fail(n, r, "cannot open a netlink socket");
	(void)netns_list_numbered(n->prefix, &names, &c);
	for (size_t i = 0; i < c; i++) {
		char veth[64];
		snprintf(veth, sizeof veth, "%s-veth1", names[i]);
		if (strlen(veth) < IFNAMSIZ)
			(void)net_link_delete(sk, veth);
		r = netns_delete(names[i]);
		if (r < 0 && !ret)
			ret = fail(n, r, "cannot delete namespace '%s'", names[i]);
	}
	netns_names_free(names, c);
	/* A run killed between creating a veth and its namespace's file. */
	for (size_t i = 0; i < n->count; i++)
		(void)net_link_delete(sk, n->ns[i].veth_host);

	if (have_state) {
		/* Sysctls are per network namespace: only the one it ran in. */
		if (st.netns == netns_id())
			restore_sysctls(n, st.host_if, st.ip_forward, st.ip6_forwarding, st.accept_ra);
		if (unlink(path) < 0 && errno != ENOENT && !ret)
			ret = fail(n, -errno, "cannot remove '%s'", path);
	}
	return ret;
}

/* ---- per-namespace setup, run inside the namespace ---- */

struct ns_ctx {
	struct net_nat *n;
	struct net_nat_ns *ns;
	char err[256];
};

static int ns_fail(struct ns_ctx *c, int r, const char *fmt, ...) _printf_(3, 4);
static int ns_fail(struct ns_ctx *c, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof c->err, fmt, ap);
	va_end(ap);
	return r;
}

static int ns_setup_tap(void *arg)
{
	struct ns_ctx *c = arg;
	struct net_nat *n = c->n;
	_cleanup_(net_nl_closep) struct nl_sock *sk = NULL;
	int r;

	r = net_sysctl_write("/proc/sys/net/ipv4/ip_forward", "1");
	if (r < 0)
		return ns_fail(c, r, "cannot enable IPv4 forwarding");
	if (n->ipv6) {
		r = net_sysctl_write("/proc/sys/net/ipv6/conf/all/forwarding", "1");
		if (r < 0)
			return ns_fail(c, r, "cannot enable IPv6 forwarding");
	}
	r = net_nl_open(&sk);
	if (r < 0)
		return ns_fail(c, r, "cannot open a netlink socket");
	r = net_link_up(sk, "lo");
	if (r < 0)
		return ns_fail(c, r, "cannot bring up 'lo'");
	r = net_tap_create(n->tap);
	if (r < 0)
		return ns_fail(c, r, "cannot create TAP '%s'", n->tap);
	r = net_link_set_mac(sk, n->tap, n->mac);
	if (r < 0)
		return ns_fail(c, r, "cannot set the MAC address of '%s'", n->tap);
	r = net_addr_add(sk, n->tap, &n->gw, n->netmask);
	if (r < 0)
		return ns_fail(c, r, "cannot add the gateway address to '%s'", n->tap);
	if (n->ipv6) {
		r = net_addr_add(sk, n->tap, &n->gw6, 64);
		if (r < 0)
			return ns_fail(c, r, "cannot add the IPv6 gateway address to '%s'", n->tap);
	}
	r = net_link_up(sk, n->tap);
	if (r < 0)
		return ns_fail(c, r, "cannot bring up '%s'", n->tap);
	return 0;
}

static struct net_prefix host_prefix(const struct net_addr *a)
{
	struct net_prefix p = { .addr = *a, .plen = (unsigned)net_addr_len(a) * 8 };
	return p;
}

static void ns_rules(struct net_nat *n, struct net_nat_ns *ns, struct nft_batch *b, bool v6)
{
	const int F = NFPROTO_INET;
	struct net_prefix nvi = host_prefix(v6 ? &ns->nvi6 : &ns->nvi);
	struct net_prefix hvi = host_prefix(v6 ? &ns->hvi6 : &ns->hvi);
	struct net_prefix guest = host_prefix(v6 ? &n->guest6 : &n->guest);
	const struct net_addr *nvia = v6 ? &ns->nvi6 : &ns->nvi;
	struct nftnl_rule *r;

	/* Traffic for the namespace's unique address goes to the guest. */
	r = nft_rule_new(F, NS_TABLE, "prerouting");
	nft_rule_iifname(r, ns->veth_ns, false);
	nft_rule_daddr(r, &nvi);
	nft_rule_dnat(r, &guest.addr, 0);
	nft_batch_add_rule(b, r);
	/* The guest's traffic leaves with the namespace's unique address. */
	r = nft_rule_new(F, NS_TABLE, "postrouting");
	nft_rule_oifname(r, ns->veth_ns, false);
	nft_rule_saddr(r, &guest);
	nft_rule_snat(r, nvia, 0);
	nft_batch_add_rule(b, r);
	if (n->allow_incoming) {
		r = nft_rule_new(F, NS_TABLE, "prerouting");
		nft_rule_daddr(r, &hvi);
		nft_rule_dnat(r, &guest.addr, 0);
		nft_batch_add_rule(b, r);
		r = nft_rule_new(F, NS_TABLE, "postrouting");
		nft_rule_daddr(r, &guest);
		nft_rule_masquerade(r);
		nft_batch_add_rule(b, r);
	}
}

static int ns_setup_veth(void *arg)
{
	struct ns_ctx *c = arg;
	struct net_nat *n = c->n;
	struct net_nat_ns *ns = c->ns;
	_cleanup_(net_nl_closep) struct nl_sock *sk = NULL;
	struct nft_batch *b = NULL;
	struct net_prefix any4 = { .addr = { .family = AF_INET } }, any6 = { .addr = { .family = AF_INET6 } };
	int r;

	r = net_nl_open(&sk);
	if (r < 0)
		return ns_fail(c, r, "cannot open a netlink socket");
	r = net_addr_add(sk, ns->veth_ns, &ns->hvi, 30);
	if (r < 0)
		return ns_fail(c, r, "cannot add an address to '%s'", ns->veth_ns);
	if (n->ipv6) {
		r = net_addr_add(sk, ns->veth_ns, &ns->hvi6, 126);
		if (r < 0)
			return ns_fail(c, r, "cannot add an IPv6 address to '%s'", ns->veth_ns);
	}
	r = net_link_up(sk, ns->veth_ns);
	if (r < 0)
		return ns_fail(c, r, "cannot bring up '%s'", ns->veth_ns);
	r = net_route_add(sk, &any4, &ns->hve, ns->veth_ns);
	if (r < 0)
		return ns_fail(c, r, "cannot add the default route");
	if (n->ipv6) {
		r = net_route_add(sk, &any6, &ns->hve6, ns->veth_ns);
		if (r < 0)
			return ns_fail(c, r, "cannot add the IPv6 default route");
	}

	nft_batch_new(&b);
	nft_batch_add_table(b, NFPROTO_INET, NS_TABLE);
	nft_batch_add_chain(b, NFPROTO_INET, NS_TABLE, "prerouting", "nat", NF_INET_PRE_ROUTING,
			    NFT_PRIO_DSTNAT);
	nft_batch_add_chain(b, NFPROTO_INET, NS_TABLE, "postrouting", "nat", NF_INET_POST_ROUTING,
			    NFT_PRIO_SRCNAT);
	ns_rules(n, ns, b, false);
	if (n->ipv6)
		ns_rules(n, ns, b, true);
	r = nft_batch_commit(b);
	nft_batch_free(b);
	if (r < 0)
		return ns_fail(c, r, "cannot add the nftables rules");
	return 0;
}

/* ---- host side ---- */

static int host_base_rules(struct net_nat *n)
{
	const int F = NFPROTO_INET;
	struct nft_batch *b;
	struct nftnl_rule *r;
	int ret;

	nft_batch_new(&b);
	nft_batch_add_table(b, F, n->table);
	nft_batch_add_chain(b, F, n->table, "postrouting", "nat", NF_INET_POST_ROUTING, NFT_PRIO_SRCNAT);
	nft_batch_add_chain(b, F, n->table, "forward", "filter", NF_INET_FORWARD, NFT_PRIO_FILTER);
	nft_batch_add_chain(b, F, n->table, "input", "filter", NF_INET_LOCAL_IN, NFT_PRIO_FILTER);

	/* Masquerade what comes from the namespaces, and only that. */
	const struct net_prefix *srcs[] = { &n->ns_veth, &n->host_veth, n->ipv6 ? &n->ula : NULL };
	for (size_t i = 0; i < ARRAY_SIZE(srcs); i++) {
		if (!srcs[i])
			continue;
		r = nft_rule_new(F, n->table, "postrouting");
		nft_rule_oifname(r, n->host_if, false);
		nft_rule_saddr(r, srcs[i]);
		nft_rule_masquerade(r);
		nft_batch_add_rule(b, r);
	}

	r = nft_rule_new(F, n->table, "forward");
	nft_rule_ct_established(r);
	nft_rule_accept(r);
	nft_batch_add_rule(b, r);

	/*
	 * The blocked subnet: a namespace reaches neither another namespace's
	 * unique address nor any veth address, and nothing from the veth range
	 * reaches the namespaces' addresses.
	 */
	struct {
		const struct net_prefix *src, *dst;
	} drops[] = {
		{ &n->blocked, &n->blocked },
		{ &n->blocked, &n->host_veth },
		{ &n->host_veth, &n->blocked },
		{ n->ipv6 ? &n->ns6_net : NULL, &n->ns6_net },
		{ n->ipv6 ? &n->ns6_net : NULL, &n->veth6_space },
		{ n->ipv6 ? &n->veth6_space : NULL, &n->ns6_net },
	};
	for (size_t i = 0; i < ARRAY_SIZE(drops); i++) {
		if (!drops[i].src)
			continue;
		r = nft_rule_new(F, n->table, "forward");
		nft_rule_saddr(r, drops[i].src);
		nft_rule_daddr(r, drops[i].dst);
		nft_rule_drop(r);
		nft_batch_add_rule(b, r);
	}
	ret = nft_batch_commit(b);
	nft_batch_free(b);
	if (ret == 0)
		n->host_table_created = true;
	return ret;
}

static int host_ns_rules(struct net_nat *n, struct net_nat_ns *ns)
{
	const int F = NFPROTO_INET;
	struct nft_batch *b;
	struct nftnl_rule *r;
	int ret;

	nft_batch_new(&b);
	r = nft_rule_new(F, n->table, "forward");
	nft_rule_iifname(r, ns->veth_host, false);
	nft_rule_oifname(r, n->host_if, false);
	nft_rule_accept(r);
	nft_batch_add_rule(b, r);
	/* A namespace may talk to the host over its own veth only. */
	for (int v6 = 0; v6 <= (n->ipv6 ? 1 : 0); v6++) {
		struct net_prefix hve = host_prefix(v6 ? &ns->hve6 : &ns->hve);
		r = nft_rule_new(F, n->table, "input");
		nft_rule_iifname(r, ns->veth_host, false);
		nft_rule_daddr(r, &hve);
		nft_rule_accept(r);
		nft_batch_add_rule(b, r);
	}
	ret = nft_batch_commit(b);
	nft_batch_free(b);
	return ret;
}

static int host_input_drops(struct net_nat *n)
{
	const int F = NFPROTO_INET;
	struct nft_batch *b;
	struct nftnl_rule *r;
	int ret;

	nft_batch_new(&b);
	r = nft_rule_new(F, n->table, "input");
	nft_rule_saddr(r, &n->blocked);
	nft_rule_daddr(r, &n->host_veth);
	nft_rule_drop(r);
	nft_batch_add_rule(b, r);
	if (n->ipv6) {
		r = nft_rule_new(F, n->table, "input");
		nft_rule_saddr(r, &n->ns6_net);
		nft_rule_daddr(r, &n->veth6_space);
		nft_rule_drop(r);
		nft_batch_add_rule(b, r);
	}
	ret = nft_batch_commit(b);
	nft_batch_free(b);
	return ret;
}

static int enable_sysctl(const char *path, char *old, size_t oldlen)
{
	int r = net_sysctl_read(path, old, oldlen);

	if (r < 0)
		return r;
	if (str_eq(old, "1"))
		return 0;
	return net_sysctl_write(path, "1");
}

static int setup_ns(struct net_nat *n, struct nl_sock *sk, struct net_nat_ns *ns)
{
	_cleanup_close_ int fd = -EBADF;
	struct ns_ctx c = { .n = n, .ns = ns };
	char a[NET_ADDR_STRLEN];
	int r;

	r = netns_create(ns->name);
	if (r < 0)
		return fail(n, r, "cannot create namespace '%s'", ns->name);
	ns->created = true;
	fd = netns_open(ns->name);
	if (fd < 0)
		return fail(n, fd, "cannot open namespace '%s'", ns->name);
	r = netns_run(fd, ns_setup_tap, &c);
	if (r < 0)
		return fail(n, r, "namespace '%s': %s", ns->name, c.err);
	r = net_veth_create(sk, ns->veth_host, ns->veth_ns, fd);
	if (r < 0)
		return fail(n, r, "cannot create veth pair '%s'", ns->veth_host);
	ns->veth_created = true;
	r = net_addr_add(sk, ns->veth_host, &ns->hve, 30);
	if (r < 0) {
		net_addr_format(&ns->hve, a, sizeof a);
		return fail(n, r, "cannot add address '%s' to '%s'", a, ns->veth_host);
	}
	if (n->ipv6) {
		r = net_addr_add(sk, ns->veth_host, &ns->hve6, 126);
		if (r < 0)
			return fail(n, r, "cannot add an IPv6 address to '%s'", ns->veth_host);
	}
	r = net_link_up(sk, ns->veth_host);
	if (r < 0)
		return fail(n, r, "cannot bring up '%s'", ns->veth_host);
	r = netns_run(fd, ns_setup_veth, &c);
	if (r < 0)
		return fail(n, r, "namespace '%s': %s", ns->name, c.err);

	struct net_prefix nvi = host_prefix(&ns->nvi);
	r = net_route_add(sk, &nvi, &ns->hvi, ns->veth_host);
	if (r < 0) {
		net_addr_format(&ns->nvi, a, sizeof a);
		return fail(n, r, "cannot add a route to '%s'", a);
	}
	if (n->ipv6) {
		struct net_prefix nvi6 = host_prefix(&ns->nvi6);
		r = net_route_add(sk, &nvi6, &ns->hvi6, ns->veth_host);
		if (r < 0) {
			net_addr_format(&ns->nvi6, a, sizeof a);
			return fail(n, r, "cannot add a route to '%s'", a);
		}
	}
	r = host_ns_rules(n, ns);
	if (r < 0)
		return fail(n, r, "cannot add the host's nftables rules for '%s'", ns->name);
	return 0;
}

int net_nat_up(struct net_nat *n)
{
	_cleanup_(net_nl_closep) struct nl_sock *sk = NULL;
	int r;

	r = net_nl_open(&sk);
	if (r < 0)
		return fail(n, r, "cannot open a netlink socket");
	if (str_empty(n->host_if)) {
		r = net_default_route_ifname(sk, AF_INET, n->host_if);
		if (r == -ENOENT)
			return fail(n, -ENETUNREACH, "cannot find the host interface: there is no default route");
		if (r < 0)
			return fail(n, r, "cannot find the host interface");
	} else {
		r = net_link_index(sk, n->host_if);
		if (r < 0)
			return fail(n, r, "cannot use host interface '%s'", n->host_if);
	}

	/* Record what is about to change before changing it. */
	r = net_sysctl_read("/proc/sys/net/ipv4/ip_forward", n->old_ip_forward, sizeof n->old_ip_forward);
	if (r < 0)
		return fail(n, r, "cannot read '/proc/sys/net/ipv4/ip_forward'");
	if (n->ipv6) {
		char path[128];
		if (access("/proc/sys/net/ipv6", F_OK) < 0)
			return fail(n, -EAFNOSUPPORT, "cannot give the guests IPv6: IPv6 is disabled on this host "
				    "(use --no-ipv6)");
		r = net_sysctl_read("/proc/sys/net/ipv6/conf/all/forwarding", n->old_ip6_forwarding,
				    sizeof n->old_ip6_forwarding);
		if (r < 0)
			return fail(n, r, "cannot read the IPv6 forwarding setting");
		accept_ra_path(n->host_if, path, sizeof path);
		if (net_sysctl_read(path, n->old_accept_ra, sizeof n->old_accept_ra) == 0 &&
		    !str_eq(n->old_accept_ra, "1"))
			n->old_accept_ra[0] = '\0'; /* only 1 needs changing */
	}
	r = write_state(n);
	if (r < 0)
		return fail(n, r, "cannot write the state file in '" NET_STATE_DIR "'");

	r = enable_sysctl("/proc/sys/net/ipv4/ip_forward", n->old_ip_forward, sizeof n->old_ip_forward);
	if (r < 0)
		return fail(n, r, "cannot enable IPv4 forwarding");
	if (n->ipv6) {
		char path[128];
		/* Forwarding hosts ignore router advertisements unless accept_ra is 2. */
		if (str_eq(n->old_accept_ra, "1")) {
			accept_ra_path(n->host_if, path, sizeof path);
			(void)net_sysctl_write(path, "2");
		}
		r = enable_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", n->old_ip6_forwarding,
				  sizeof n->old_ip6_forwarding);
		if (r < 0)
			return fail(n, r, "cannot enable IPv6 forwarding");
	}

	r = host_base_rules(n);
	if (r < 0)
		return fail(n, r, "cannot add nftables table 'inet %s'", n->table);
	for (size_t i = 0; i < n->count; i++) {
		r = setup_ns(n, sk, &n->ns[i]);
		if (r < 0)
			return r;
	}
	r = host_input_drops(n);
	if (r < 0)
		return fail(n, r, "cannot add the host's nftables rules");
	return 0;
}

static int ns_teardown(void *arg)
{
	struct ns_ctx *c = arg;
	_cleanup_(net_nl_closep) struct nl_sock *sk = NULL;

	if (net_nl_open(&sk) < 0)
		return 0;
	(void)net_link_delete(sk, c->n->tap);
	(void)net_link_delete(sk, c->ns->veth_ns);
	return 0;
}

int net_nat_down(struct net_nat *n)
{
	_cleanup_(net_nl_closep) struct nl_sock *sk = NULL;
	int r, ret = 0;

	if (n->host_table_created) {
		r = nft_delete_table(NFPROTO_INET, n->table);
		if (r < 0)
			ret = fail(n, r, "cannot delete nftables table 'inet %s'", n->table);
		n->host_table_created = false;
	}
	r = net_nl_open(&sk);
	for (size_t i = n->count; i-- > 0;) {
		struct net_nat_ns *ns = &n->ns[i];
		if (r == 0 && ns->veth_created)
			(void)net_link_delete(sk, ns->veth_host);
		ns->veth_created = false;
		if (!ns->created)
			continue;
		int fd = netns_open(ns->name);
		if (fd >= 0) {
			struct ns_ctx c = { .n = n, .ns = ns };
			(void)netns_run(fd, ns_teardown, &c);
			close(fd);
		}
		int d = netns_delete(ns->name);
		if (d < 0 && !ret)
			ret = fail(n, d, "cannot delete namespace '%s'", ns->name);
		ns->created = false;
	}
	if (n->state_written) {
		char path[256];
		restore_sysctls(n, n->host_if, n->old_ip_forward, n->old_ip6_forwarding, n->old_accept_ra);
		state_path(n, path, sizeof path);
		(void)unlink(path);
		n->state_written = false;
	}
	return ret;
}

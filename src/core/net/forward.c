/*
 * Port forwards (see forward.h). Everything is checked and resolved first;
 * then one nftables batch adds the whole table, so a forwarder either has all
 * its rules or none.
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/netfilter.h>

#include <netlink/netlink.h>

#include "core/net/forward.h"
#include "core/net/link.h"
#include "core/net/netns.h"
#include "core/net/nft.h"
#include "core/util.h"

#define FWD_TABLE_PREFIX "drafter_fwd_"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct nl_sock *, net_nl_close)

static int fail(struct net_forward *f, int r, const char *fmt, ...) _printf_(3, 4);
static int fail(struct net_forward *f, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(f->err, sizeof f->err, fmt, ap);
	va_end(ap);
	return r;
}

struct find_ctx {
	const struct net_prefix *within;
	int family;
	struct net_addr out;
};

/* Inside the namespace: its veth address in the host veth range (and, for
 * IPv6, the global IPv6 address on that same link). */
static int find_target(void *arg)
{
	struct find_ctx *c = arg;
	struct nl_sock *sk = NULL;
	struct net_addr v4;
	int ifindex = 0, r;

	r = net_nl_open(&sk);
	if (r < 0)
		return r;
	r = net_addr_find(sk, AF_INET, c->within, 0, &v4, &ifindex);
	if (r == 0) {
		if (c->family == AF_INET)
			c->out = v4;
		else
			r = net_addr_find(sk, AF_INET6, NULL, ifindex, &c->out, NULL);
	}
	net_nl_close(sk);
	return r;
}

static int resolve(const char *host, struct net_addr *out)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG };
	struct addrinfo *res = NULL;
	int r;

	if (net_addr_parse(host, out) == 0)
		return 0;
	r = getaddrinfo(host, NULL, &hints, &res);
	if (r != 0 || !res)
		return -ENOENT;
	memset(out, 0, sizeof *out);
	out->family = res->ai_family;
	if (res->ai_family == AF_INET)
		memcpy(out->a, &((struct sockaddr_in *)res->ai_addr)->sin_addr, 4);
	else
		memcpy(out->a, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, 16);
	freeaddrinfo(res);
	return 0;
}

int net_forward_plan(const struct cfg_forward *cfg, struct net_forward *f)
{
	struct net_prefix hv;
	int r;

	memset(f, 0, sizeof *f);
	snprintf(f->table, sizeof f->table, FWD_TABLE_PREFIX "%ld", (long)getpid());
	if (str_empty(cfg->host_veth_cidr) || net_prefix_parse(cfg->host_veth_cidr, false, &hv) < 0 ||
	    hv.addr.family != AF_INET)
		return fail(f, -EINVAL, "invalid host veth CIDR '%s'", cfg->host_veth_cidr ? cfg->host_veth_cidr : "");
	if (cfg->n_forwards > 4096)
		return fail(f, -E2BIG, "too many port forwards (%zu)", cfg->n_forwards);
	f->fwd = xcalloc(cfg->n_forwards ? cfg->n_forwards : 1, sizeof *f->fwd);

	for (size_t i = 0; i < cfg->n_forwards; i++) {
		const struct cfg_port_forward *c = &cfg->forwards[i];
		struct net_fwd *w = &f->fwd[f->n];
		char host[256];
		const char *ext = c->external_addr ? c->external_addr : "";
		const char *ns = c->netns ? c->netns : "";

		if (str_empty(ns) || strchr(ns, '/') || strlen(ns) >= sizeof w->netns || str_eq(ns, ".") ||
		    str_eq(ns, ".."))
			return fail(f, -EINVAL, "invalid namespace '%s' in port forward %zu", ns, i + 1);
		snprintf(w->netns, sizeof w->netns, "%s", ns);
		if (c->internal_port == 0)
			return fail(f, -ERANGE, "internal port 0 of port forward %zu is out of range (1-65535)", i + 1);
		w->port = c->internal_port;
		w->proto = c->protocol == PROTO_UDP ? IPPROTO_UDP : IPPROTO_TCP;

		r = net_hostport_split(ext, host, sizeof host, &w->ext_port);
		if (r == -ERANGE)
			return fail(f, r, "port of external address '%s' is out of range (1-65535)", ext);
		if (r < 0)
			return fail(f, r, "invalid external address '%s': expected HOST:PORT", ext);
		r = resolve(host, &w->ext);
		if (r < 0)
			return fail(f, -EADDRNOTAVAIL, "cannot resolve external address '%s'", host);
		if (w->ext.family == AF_INET6 && net_addr_is_loopback(&w->ext))
			return fail(f, -EADDRNOTAVAIL,
				    "cannot forward from '%s': Linux never routes traffic from ::1 off the host; "
				    "use 127.0.0.1 or another address", ext);
		if (!net_addr_is_any(&w->ext) && !net_addr_is_local(&w->ext))
			return fail(f, -EADDRNOTAVAIL,
				    "cannot forward from '%s': the address is not one of this host's", ext);

		_cleanup_close_ int fd = netns_open(w->netns);
		if (fd == -ENOENT)
			return fail(f, -ENOENT, "cannot forward to namespace '%s': no such namespace", w->netns);
		if (fd < 0)
			return fail(f, fd, "cannot open namespace '%s'", w->netns);
		struct find_ctx fc = { .within = &hv, .family = w->ext.family };
		r = netns_run(fd, find_target, &fc);
		if (r < 0) {
			char p[NET_ADDR_STRLEN];
			net_prefix_format(&hv, p, sizeof p);
			if (w->ext.family == AF_INET6)
				return fail(f, -EADDRNOTAVAIL,
					    "cannot forward to namespace '%s': it has no IPv6 address on its veth in '%s'",
					    w->netns, p);
			return fail(f, -EADDRNOTAVAIL,
				    "cannot forward to namespace '%s': it has no address in '%s'", w->netns, p);
		}
		w->target = fc.out;
		f->n++;
	}
	return 0;
}

static void add_match(struct nftnl_rule *r, const struct net_fwd *w)
{
	struct net_prefix ext = { .addr = w->ext, .plen = (unsigned)net_addr_len(&w->ext) * 8 };

	if (net_addr_is_any(&w->ext)) {
		nft_rule_nfproto(r, w->ext.family);
		nft_rule_daddr_local(r);
	} else {
		nft_rule_daddr(r, &ext);
	}
	nft_rule_l4proto(r, w->proto);
	nft_rule_dport(r, w->ext_port);
}

int net_forward_up(struct net_forward *f)
{
	const int F = NFPROTO_INET;
	struct nft_batch *b;
	bool localnet = false;
	int r;

	for (size_t i = 0; i < f->n; i++)
		if (f->fwd[i].ext.family == AF_INET &&
		    (net_addr_is_loopback(&f->fwd[i].ext) || net_addr_is_any(&f->fwd[i].ext)))
			localnet = true;
	if (localnet) {
		/* Lets 127.0.0.0/8 traffic be routed off the host after DNAT. */
		r = net_sysctl_write("/proc/sys/net/ipv4/conf/all/route_localnet", "1");
		if (r == 0)
			r = net_sysctl_write("/proc/sys/net/ipv4/conf/lo/route_localnet", "1");
		if (r < 0)
			return fail(f, r, "cannot enable route_localnet");
	}

	nft_batch_new(&b);
	nft_batch_add_table(b, F, f->table);
	nft_batch_add_chain(b, F, f->table, "prerouting", "nat", NF_INET_PRE_ROUTING, NFT_PRIO_DSTNAT);
	nft_batch_add_chain(b, F, f->table, "output", "nat", NF_INET_LOCAL_OUT, NFT_PRIO_DSTNAT);
	nft_batch_add_chain(b, F, f->table, "postrouting", "nat", NF_INET_POST_ROUTING, NFT_PRIO_SRCNAT);
	nft_batch_add_chain(b, F, f->table, "forward", "filter", NF_INET_FORWARD, NFT_PRIO_FILTER);
	for (size_t i = 0; i < f->n; i++) {
		const struct net_fwd *w = &f->fwd[i];
		struct net_prefix t = { .addr = w->target, .plen = (unsigned)net_addr_len(&w->target) * 8 };
		struct nftnl_rule *rule;
		const char *dnat_chains[] = { "prerouting", "output" };

		for (size_t c = 0; c < ARRAY_SIZE(dnat_chains); c++) {
			rule = nft_rule_new(F, f->table, dnat_chains[c]);
			add_match(rule, w);
			nft_rule_dnat(rule, &w->target, w->port);
			nft_batch_add_rule(b, rule);
		}
		/* The namespace answers the host's veth address, so replies return. */
		rule = nft_rule_new(F, f->table, "postrouting");
		nft_rule_daddr(rule, &t);
		nft_rule_l4proto(rule, w->proto);
		nft_rule_dport(rule, w->port);
		nft_rule_masquerade(rule);
		nft_batch_add_rule(b, rule);
		if (!net_addr_is_loopback(&w->ext)) {
			rule = nft_rule_new(F, f->table, "forward");
			nft_rule_daddr(rule, &t);
			nft_rule_accept(rule);
			nft_batch_add_rule(b, rule);
			rule = nft_rule_new(F, f->table, "forward");
			nft_rule_saddr(rule, &t);
			nft_rule_accept(rule);
			nft_batch_add_rule(b, rule);
		}
	}
	r = nft_batch_commit(b);
	nft_batch_free(b);
	if (r < 0)
		return fail(f, r, "cannot add nftables table 'inet %s'", f->table);
	f->table_created = true;
	return 0;
}

int net_forward_down(struct net_forward *f)
{
	int r;

	if (!f->table_created)
		return 0;
	r = nft_delete_table(NFPROTO_INET, f->table);
	if (r < 0)
		return fail(f, r, "cannot delete nftables table 'inet %s'", f->table);
	f->table_created = false;
	return 0;
}

void net_forward_free(struct net_forward *f)
{
	free(f->fwd);
	f->fwd = NULL;
}

int net_forward_remove_stale(void)
{
	struct nft_table_id *t = NULL;
	size_t n = 0;
	int removed = 0, r;

	r = nft_list_tables(FWD_TABLE_PREFIX, &t, &n);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		int64_t pid;
		if (parse_i64(t[i].name + strlen(FWD_TABLE_PREFIX), &pid) < 0 || pid <= 0 || pid > INT32_MAX)
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno == EPERM)
			continue;
		if (nft_delete_table(t[i].family, t[i].name) == 0)
			removed++;
	}
	free(t);
	return removed;
}

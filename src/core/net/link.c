/*
 * Links, addresses, routes (libnl-route) and TAP devices (/dev/net/tun); see
 * link.h. libnl reports NLE_* codes; they become -errno at this boundary.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/route.h>

#include "core/net/link.h"
#include "core/nlerr.h"
#include "core/util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct rtnl_link *, rtnl_link_put)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct rtnl_addr *, rtnl_addr_put)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct rtnl_route *, rtnl_route_put)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct nl_addr *, nl_addr_put)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct nl_cache *, nl_cache_free)

int net_nl_open(struct nl_sock **out)
{
	struct nl_sock *sk = nl_socket_alloc();
	int r;

	if (!sk)
		return -ENOMEM;
	r = nl_connect(sk, NETLINK_ROUTE);
	if (r < 0) {
		nl_socket_free(sk);
		return nlerr_to_errno(r);
	}
	/* nl_connect() does not set close-on-exec; drafter forks VMMs. */
	(void)fcntl(nl_socket_get_fd(sk), F_SETFD, FD_CLOEXEC);
	*out = sk;
	return 0;
}

void net_nl_close(struct nl_sock *sk)
{
	if (sk)
		nl_socket_free(sk);
}

static struct nl_addr *to_nl(const struct net_addr *a, unsigned plen)
{
	struct nl_addr *n = nl_addr_build(a->family, a->a, net_addr_len(a));

	if (!n)
		abort();
	nl_addr_set_prefixlen(n, (int)plen);
	return n;
}

int net_link_index(struct nl_sock *sk, const char *name)
{
	_cleanup_(rtnl_link_putp) struct rtnl_link *l = NULL;
	int r;

	r = rtnl_link_get_kernel(sk, 0, name, &l);
	if (r < 0)
		return r == -NLE_OBJ_NOTFOUND || r == -NLE_NODEV ? -ENODEV : nlerr_to_errno(r);
	return rtnl_link_get_ifindex(l);
}

struct neigh_flush {
	struct nl_sock *sk;
	int ifindex;
	int r;
};

static void neigh_flush_one(struct nl_object *obj, void *arg)
{
	struct rtnl_neigh *n = (struct rtnl_neigh *)obj;
	struct neigh_flush *f = arg;
	int r;

	if (rtnl_neigh_get_ifindex(n) != f->ifindex ||
	    !(rtnl_neigh_get_state(n) & (NUD_INCOMPLETE | NUD_FAILED)))
		return;
	r = rtnl_neigh_delete(f->sk, n, 0);
	if (r < 0 && r != -NLE_OBJ_NOTFOUND && f->r == 0)
		f->r = nlerr_to_errno(r);
}

int net_neigh_flush_unresolved(struct nl_sock *sk, const char *ifname)
{
	struct nl_cache *cache = NULL;
	struct neigh_flush f = { .sk = sk };
	int r;

	f.ifindex = net_link_index(sk, ifname);
	if (f.ifindex < 0)
		return f.ifindex;
	r = rtnl_neigh_alloc_cache(sk, &cache);
	if (r < 0)
		return nlerr_to_errno(r);
	nl_cache_foreach(cache, neigh_flush_one, &f);
	nl_cache_free(cache);
	return f.r;
}

/* The local address of A, when it is one of FAMILY. */
static bool addr_local(struct rtnl_addr *a, int family, struct net_addr *out)
{
	struct nl_addr *local = rtnl_addr_get_local(a);

	*out = (struct net_addr){ .family = family };
	if (rtnl_addr_get_family(a) != family || !local || nl_addr_get_len(local) != net_addr_len(out))
		return false;
	memcpy(out->a, nl_addr_get_binary_addr(local), net_addr_len(out));
	return true;
}

/* Whether ADDR lies on one of the subnets of the addresses on link IFINDEX. */
static int on_link(struct nl_sock *sk, int ifindex, const struct net_addr *addr)
{
	_cleanup_(nl_cache_freep) struct nl_cache *addrs = NULL;
	int r = rtnl_addr_alloc_cache(sk, &addrs);

	if (r < 0)
		return nlerr_to_errno(r);
	for (struct nl_object *o = nl_cache_get_first(addrs); o; o = nl_cache_get_next(o)) {
		struct rtnl_addr *a = (struct rtnl_addr *)o;
		struct net_addr mine;

		if (rtnl_addr_get_ifindex(a) == ifindex && addr_local(a, addr->family, &mine) &&
		    net_addr_same_subnet(&mine, addr, (unsigned)rtnl_addr_get_prefixlen(a)))
			return 1;
	}
	return 0;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct rtnl_neigh *, rtnl_neigh_put)

int net_neigh_set(struct nl_sock *sk, const char *ifname, const struct net_addr *addr,
		  const uint8_t mac[6])
{
	_cleanup_(rtnl_neigh_putp) struct rtnl_neigh *n = NULL;
	_cleanup_(nl_addr_putp) struct nl_addr *dst = NULL;
	_cleanup_(nl_addr_putp) struct nl_addr *ll = NULL;
	int ifindex = net_link_index(sk, ifname);
	int r;

	if (ifindex < 0)
		return ifindex;
	r = on_link(sk, ifindex, addr);
	if (r <= 0)
		return r < 0 ? r : -EADDRNOTAVAIL;
	n = rtnl_neigh_alloc();
	ll = nl_addr_build(AF_LLC, mac, 6);
	if (!n || !ll)
		return -ENOMEM;
	dst = to_nl(addr, (unsigned)net_addr_len(addr) * 8);
	rtnl_neigh_set_ifindex(n, ifindex);
	rtnl_neigh_set_family(n, addr->family);
	rtnl_neigh_set_dst(n, dst);
	rtnl_neigh_set_lladdr(n, ll);
	rtnl_neigh_set_state(n, NUD_STALE);
	return nlerr_to_errno(rtnl_neigh_add(sk, n, NLM_F_CREATE | NLM_F_REPLACE));
}

static int link_change(struct nl_sock *sk, const char *name, struct rtnl_link *change)
{
	_cleanup_(rtnl_link_putp) struct rtnl_link *l = NULL;
	int r;

	r = rtnl_link_get_kernel(sk, 0, name, &l);
	if (r < 0)
		return r == -NLE_OBJ_NOTFOUND ? -ENODEV : nlerr_to_errno(r);
	return nlerr_to_errno(rtnl_link_change(sk, l, change, 0));
}

int net_link_up(struct nl_sock *sk, const char *name)
{
	_cleanup_(rtnl_link_putp) struct rtnl_link *c = rtnl_link_alloc();

	if (!c)
		return -ENOMEM;
	rtnl_link_set_flags(c, IFF_UP);
	return link_change(sk, name, c);
}

int net_link_set_mac(struct nl_sock *sk, const char *name, const uint8_t mac[6])
{
	_cleanup_(rtnl_link_putp) struct rtnl_link *c = rtnl_link_alloc();
	_cleanup_(nl_addr_putp) struct nl_addr *a = nl_addr_build(AF_LLC, mac, 6);

	if (!c || !a)
		return -ENOMEM;
	rtnl_link_set_addr(c, a);
	return link_change(sk, name, c);
}

int net_link_delete(struct nl_sock *sk, const char *name)
{
	_cleanup_(rtnl_link_putp) struct rtnl_link *l = rtnl_link_alloc();
	int r;

	if (!l)
		return -ENOMEM;
	rtnl_link_set_name(l, name);
	r = rtnl_link_delete(sk, l);
	if (r == -NLE_OBJ_NOTFOUND || r == -NLE_NODEV)
		return 0;
	return nlerr_to_errno(r);
}

int net_veth_create(struct nl_sock *sk, const char *name, const char *peer, int peer_nsfd)
{
	_cleanup_(rtnl_link_putp) struct rtnl_link *veth = rtnl_link_veth_alloc();
	struct rtnl_link *p;

	if (!veth)
		return -ENOMEM;
	rtnl_link_set_name(veth, name);
	p = rtnl_link_veth_get_peer(veth);
	rtnl_link_set_name(p, peer);
	/* Born inside the namespace: the peer is never visible on the host. */
	if (peer_nsfd >= 0)
		rtnl_link_set_ns_fd(p, peer_nsfd);
	rtnl_link_put(p);
	return nlerr_to_errno(rtnl_link_add(sk, veth, NLM_F_CREATE | NLM_F_EXCL));
}

int net_addr_add(struct nl_sock *sk, const char *ifname, const struct net_addr *addr, unsigned plen)
{
	_cleanup_(rtnl_addr_putp) struct rtnl_addr *a = rtnl_addr_alloc();
	_cleanup_(nl_addr_putp) struct nl_addr *local = NULL;
	int idx = net_link_index(sk, ifname);

	if (idx < 0)
		return idx;
	if (!a)
		return -ENOMEM;
	local = to_nl(addr, plen);
	rtnl_addr_set_ifindex(a, idx);
	rtnl_addr_set_local(a, local);
	if (addr->family == AF_INET6)
		rtnl_addr_set_flags(a, IFA_F_NODAD);
	return nlerr_to_errno(rtnl_addr_add(sk, a, NLM_F_CREATE | NLM_F_REPLACE));
}

int net_route_add(struct nl_sock *sk, const struct net_prefix *dst, const struct net_addr *gw,
		  const char *ifname)
{
	_cleanup_(rtnl_route_putp) struct rtnl_route *rt = rtnl_route_alloc();
	_cleanup_(nl_addr_putp) struct nl_addr *d = NULL;
	struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
	int r;

	if (!rt || !nh) {
		if (nh)
			rtnl_route_nh_free(nh);
		return -ENOMEM;
	}
	d = to_nl(&dst->addr, dst->plen);
	rtnl_route_set_family(rt, (uint8_t)dst->addr.family);
	rtnl_route_set_dst(rt, d);
	rtnl_route_set_table(rt, RT_TABLE_MAIN);
	rtnl_route_set_protocol(rt, RTPROT_STATIC);
	rtnl_route_set_scope(rt, gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK);
	if (gw) {
		_cleanup_(nl_addr_putp) struct nl_addr *g = to_nl(gw, (unsigned)net_addr_len(gw) * 8);
		rtnl_route_nh_set_gateway(nh, g);
	}
	if (ifname) {
		int idx = net_link_index(sk, ifname);
		if (idx < 0) {
			rtnl_route_nh_free(nh);
			return idx;
		}
		rtnl_route_nh_set_ifindex(nh, idx);
	}
	rtnl_route_add_nexthop(rt, nh); /* the route owns NH now */
	r = rtnl_route_add(sk, rt, NLM_F_CREATE | NLM_F_EXCL);
	return nlerr_to_errno(r);
}

int net_default_route_ifname(struct nl_sock *sk, int family, char name[IFNAMSIZ])
{
	_cleanup_(nl_cache_freep) struct nl_cache *routes = NULL;
	_cleanup_(nl_cache_freep) struct nl_cache *links = NULL;
	int best_if = 0;
	uint32_t best_prio = UINT32_MAX;
	int r;

	r = rtnl_route_alloc_cache(sk, family, 0, &routes);
	if (r < 0)
		return nlerr_to_errno(r);
	for (struct nl_object *o = nl_cache_get_first(routes); o; o = nl_cache_get_next(o)) {
		struct rtnl_route *rt = (struct rtnl_route *)o;
		struct nl_addr *dst = rtnl_route_get_dst(rt);
		struct rtnl_nexthop *nh;

		if (rtnl_route_get_table(rt) != RT_TABLE_MAIN || rtnl_route_get_type(rt) != RTN_UNICAST)
			continue;
		if (dst && nl_addr_get_prefixlen(dst) != 0)
			continue;
		if (rtnl_route_get_nnexthops(rt) < 1)
			continue;
		nh = rtnl_route_nexthop_n(rt, 0);
		if (rtnl_route_get_priority(rt) < best_prio || !best_if) {
			best_prio = rtnl_route_get_priority(rt);
			best_if = rtnl_route_nh_get_ifindex(nh);
		}
	}
	if (best_if <= 0)
		return -ENOENT;
	r = rtnl_link_alloc_cache(sk, AF_UNSPEC, &links);
	if (r < 0)
		return nlerr_to_errno(r);
	if (!rtnl_link_i2name(links, best_if, name, IFNAMSIZ))
		return -ENODEV;
	return 0;
}

int net_addr_find(struct nl_sock *sk, int family, const struct net_prefix *within,
		  int on_ifindex, struct net_addr *out, int *ifindex)
{
	_cleanup_(nl_cache_freep) struct nl_cache *addrs = NULL;
	int r;

	r = rtnl_addr_alloc_cache(sk, &addrs);
	if (r < 0)
		return nlerr_to_errno(r);
	for (struct nl_object *o = nl_cache_get_first(addrs); o; o = nl_cache_get_next(o)) {
		struct rtnl_addr *a = (struct rtnl_addr *)o;
		struct net_addr cand;

		if (!addr_local(a, family, &cand))
			continue;
		if (on_ifindex > 0 && rtnl_addr_get_ifindex(a) != on_ifindex)
			continue;
		if (rtnl_addr_get_scope(a) != RT_SCOPE_UNIVERSE)
			continue; /* loopback (host scope) and link-local */
		if (net_addr_is_loopback(&cand))
			continue;
		if (within && !net_prefix_contains(within, &cand))
			continue;
		*out = cand;
		if (ifindex)
			*ifindex = rtnl_addr_get_ifindex(a);
		return 0;
	}
	return -EADDRNOTAVAIL;
}

static int tun_attach(const char *name, int flags)
{
	_cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	struct ifreq ifr = { 0 };

	if (fd < 0)
		return -errno;
	if (strlen(name) >= IFNAMSIZ)
		return -ENAMETOOLONG;
	strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
	ifr.ifr_flags = (short)flags;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		return -errno;
	return TAKE_FD(fd);
}

int net_tap_create(const char *name)
{
	_cleanup_close_ int fd = -EBADF;
	_cleanup_close_ int probe = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = { 0 };

	/* TUNSETIFF would attach to an existing device; creating must be new. */
	if (probe >= 0) {
		strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
		if (ioctl(probe, SIOCGIFINDEX, &ifr) == 0)
			return -EEXIST;
	}
	fd = tun_attach(name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
	if (fd < 0)
		return fd;
	if (ioctl(fd, TUNSETPERSIST, 1) < 0)
		return -errno;
	return 0;
}

int net_tap_open(const char *name, bool vnet_hdr)
{
	return tun_attach(name, IFF_TAP | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0));
}

bool net_addr_is_local(const struct net_addr *addr)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	_cleanup_close_ int fd = socket(addr->family, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return false;
	if (addr->family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, addr->a, 4);
		sl = sizeof *s4;
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, addr->a, 16);
		sl = sizeof *s6;
	}
	return bind(fd, (struct sockaddr *)&ss, sl) == 0;
}

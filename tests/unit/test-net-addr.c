/*
 * Unit tests of the networking module's pure parts: address arithmetic, the
 * namespace address plan of drafter nat, and the checks drafter forward makes
 * before it touches anything.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/net/addr.h"
#include "core/net/forward.h"
#include "core/net/nat.h"
#include "tests/tap.h"

static const char *fmt_addr(const struct net_addr *a)
{
	static char buf[4][NET_ADDR_STRLEN];
	static int i;

	i = (i + 1) % 4;
	net_addr_format(a, buf[i], sizeof buf[i]);
	return buf[i];
}

static const char *fmt_prefix(const struct net_prefix *p)
{
	static char buf[4][NET_ADDR_STRLEN + 8];
	static int i;

	i = (i + 1) % 4;
	net_prefix_format(p, buf[i], sizeof buf[i]);
	return buf[i];
}

static void test_parse(void)
{
	struct net_addr a;
	struct net_prefix p;

	is_int(net_addr_parse("10.0.8.1", &a), 0, "IPv4 address parses");
	is_int(a.family, AF_INET, "as IPv4");
	is_int(net_addr_parse("fd00::1", &a), 0, "IPv6 address parses");
	is_int(a.family, AF_INET6, "as IPv6");
	is_int(net_addr_parse("10.0.8", &a), -EINVAL, "a short IPv4 address is refused");
	is_int(net_addr_parse("[::1]", &a), -EINVAL, "brackets are not part of an address");

	is_int(net_prefix_parse("10.0.8.0/22", false, &p), 0, "CIDR parses");
	is_int(p.plen, 22, "prefix length");
	is_int(net_prefix_parse("10.0.8.1/22", false, &p), -EINVAL, "host bits are refused");
	is_int(net_prefix_parse("10.0.8.1/22", true, &p), 0, "host bits allowed on request");
	is_str(fmt_prefix(&p), "10.0.8.0/22", "and cleared");
	is_int(net_prefix_parse("10.0.8.0/33", false, &p), -EINVAL, "/33 is refused");
	is_int(net_prefix_parse("10.0.8.0/", false, &p), -EINVAL, "an empty length is refused");
	is_int(net_prefix_parse("10.0.8.0/-1", false, &p), -EINVAL, "a negative length is refused");
	is_int(net_prefix_parse("10.0.8.7", false, &p), 0, "a bare address is a host prefix");
	is_int(p.plen, 32, "of length 32");
	is_int(net_prefix_parse("fd00:100:100::/64", false, &p), 0, "IPv6 CIDR parses");
	is_int(net_prefix_parse("fd00::/129", false, &p), -EINVAL, "/129 is refused");
}

static void test_subnets(void)
{
	struct net_prefix p, s;
	struct net_addr a;

	net_prefix_parse("10.0.8.0/22", false, &p);
	is_int(net_prefix_count(&p, 30), 256, "a /22 holds 256 /30s");
	is_int(net_prefix_subnet(&p, 30, 0, &s), 0, "first /30");
	is_str(fmt_prefix(&s), "10.0.8.0/30", "is the start of the range");
	net_prefix_subnet(&p, 30, 1, &s);
	is_str(fmt_prefix(&s), "10.0.8.4/30", "second /30");
	net_prefix_subnet(&p, 30, 255, &s);
	is_str(fmt_prefix(&s), "10.0.11.252/30", "last /30");
	is_int(net_prefix_subnet(&p, 30, 256, &s), -ERANGE, "one past the last /30 is out of range");
	is_int(net_prefix_subnet(&p, 20, 0, &s), -ERANGE, "a subnet larger than the range is refused");

	is_int(net_prefix_host(&p, 1, &a), 0, "host 1");
	is_str(fmt_addr(&a), "10.0.8.1", "is network + 1");
	is_int(net_prefix_host(&p, 1024, &a), -ERANGE, "host 1024 of a /22 is out of range");
	ok(net_prefix_contains(&p, &(struct net_addr){ .family = AF_INET, .a = { 10, 0, 11, 255 } }),
	   "10.0.11.255 is in 10.0.8.0/22");
	ok(!net_prefix_contains(&p, &(struct net_addr){ .family = AF_INET, .a = { 10, 0, 12, 0 } }),
	   "10.0.12.0 is not");
	struct net_addr x, y;
	net_addr_parse("172.100.100.1", &x);
	net_addr_parse("172.100.100.2", &y);
	ok(net_addr_same_subnet(&x, &y, 30), "172.100.100.1 and .2 share a /30");
	ok(!net_addr_same_subnet(&x, &y, 31), "but not a /31");
	ok(net_addr_same_subnet(&x, &y, 0), "everything shares a /0");
	net_addr_parse("fd00:100:100::2", &y);
	ok(!net_addr_same_subnet(&x, &y, 0), "no subnet across families");
	net_addr_parse("fd00:100:100:0:ffff::1", &x);
	ok(net_addr_same_subnet(&x, &y, 64), "fd00:100:100::2 and fd00:100:100:0:ffff::1 share a /64");
	ok(!net_addr_same_subnet(&x, &y, 65), "but not a /65");

	net_prefix_parse("fd00:100:100::/64", false, &p);
	is_int(net_prefix_subnet(&p, 80, 2, &s), 0, "third /80 of a /64");
	is_str(fmt_prefix(&s), "fd00:100:100:0:2::/80", "has the subnet bits in the fifth group");
	struct net_prefix v;
	net_prefix_subnet(&s, 126, 1, &v);
	is_str(fmt_prefix(&v), "fd00:100:100:0:2::4/126", "second /126 in it");
	net_prefix_subnet(&s, 126, 255, &v);
	is_str(fmt_prefix(&v), "fd00:100:100:0:2::3fc/126", "256th /126 crosses a byte boundary");
	net_addr_parse("::1", &a);
	ok(net_addr_is_loopback(&a), "::1 is loopback");
	net_addr_parse("127.0.0.5", &a);
	ok(net_addr_is_loopback(&a), "127.0.0.5 is loopback");
	net_addr_parse("0.0.0.0", &a);
	ok(net_addr_is_any(&a), "0.0.0.0 is the wildcard");
	net_addr_parse("::", &a);
	ok(net_addr_is_any(&a), ":: is the wildcard");
}

static void test_mac_hostport(void)
{
	uint8_t mac[6];
	char host[64];
	uint16_t port;

	is_int(net_mac_parse("02:0e:d9:fd:68:3d", mac), 0, "MAC parses");
	ok(mac[0] == 0x02 && mac[5] == 0x3d, "with the right bytes");
	is_int(net_mac_parse("02:0e:d9:fd:68", mac), -EINVAL, "a short MAC is refused");
	is_int(net_mac_parse("02:0e:d9:fd:68:3g", mac), -EINVAL, "a non-hex MAC is refused");
	is_int(net_mac_parse("02:0e:d9:fd:68:3d:", mac), -EINVAL, "trailing junk is refused");

	is_int(net_hostport_split("127.0.0.1:3333", host, sizeof host, &port), 0, "host:port splits");
	is_str(host, "127.0.0.1", "host");
	is_int(port, 3333, "port");
	is_int(net_hostport_split("[::1]:8080", host, sizeof host, &port), 0, "[v6]:port splits");
	is_str(host, "::1", "without brackets");
	is_int(net_hostport_split("::1:8080", host, sizeof host, &port), -EINVAL, "bare IPv6 is refused");
	is_int(net_hostport_split("127.0.0.1:70000", host, sizeof host, &port), -ERANGE, "port 70000 is out of range");
	is_int(net_hostport_split("127.0.0.1:0", host, sizeof host, &port), -ERANGE, "port 0 is out of range");
	is_int(net_hostport_split("127.0.0.1", host, sizeof host, &port), -EINVAL, "no port is refused");
	is_int(net_hostport_split(":80", host, sizeof host, &port), -EINVAL, "no host is refused");
	is_int(net_hostport_split("localhost:x", host, sizeof host, &port), -EINVAL, "a named port is refused");
}

static struct cfg_nat nat_defaults(void)
{
	struct cfg_nat c = {
		.host_interface = "",
		.host_veth_cidr = "10.0.8.0/22",
		.namespace_veth_cidr = "10.0.15.0/24",
		.blocked_subnet_cidr = "10.0.15.0/24",
		.namespace_prefix = "ark",
		.namespace_count = 2,
		.namespace_interface = "tap0",
		.namespace_interface_gateway = "172.100.100.1",
		.namespace_interface_ip = "172.100.100.2",
		.namespace_interface_netmask = 30,
		.namespace_interface_mac = "02:0e:d9:fd:68:3d",
		.allow_incoming_traffic = true,
		.ipv6 = true,
		.ipv6_prefix = "fd00:100:100::/64",
	};
	return c;
}

static void test_nat_plan(void)
{
	struct cfg_nat c = nat_defaults();
	struct net_nat n;

	is_int(net_nat_plan(&c, &n), 0, "the default plan is valid");
	is_int(n.count, 2, "two namespaces");
	is_str(n.ns[1].name, "ark1", "namespace name");
	is_str(n.ns[1].veth_host, "ark1-veth1", "host veth name");
	is_str(n.ns[1].veth_ns, "ark1-veth0", "namespace veth name");
	is_str(fmt_addr(&n.ns[0].hvi), "10.0.8.1", "ns0: namespace end of the veth");
	is_str(fmt_addr(&n.ns[0].hve), "10.0.8.2", "ns0: host end of the veth");
	is_str(fmt_addr(&n.ns[0].nvi), "10.0.15.1", "ns0: unique address");
	is_str(fmt_addr(&n.ns[1].hvi), "10.0.8.5", "ns1: namespace end of the veth");
	is_str(fmt_addr(&n.ns[1].hve), "10.0.8.6", "ns1: host end of the veth");
	is_str(fmt_addr(&n.ns[1].nvi), "10.0.15.2", "ns1: unique address");
	is_str(fmt_addr(&n.gw6), "fd00:100:100::1", "IPv6 gateway");
	is_str(fmt_addr(&n.guest6), "fd00:100:100::2", "IPv6 guest");
	is_str(fmt_addr(&n.ns[1].hvi6), "fd00:100:100:0:2::5", "ns1: IPv6 namespace end of the veth");
	is_str(fmt_addr(&n.ns[1].hve6), "fd00:100:100:0:2::6", "ns1: IPv6 host end of the veth");
	is_str(fmt_addr(&n.ns[1].nvi6), "fd00:100:100:0:1::2", "ns1: IPv6 unique address");
	is_str(n.table, "drafter_nat_ark", "host table name");
	net_nat_free(&n);

	c.namespace_count = 0;
	is_int(net_nat_plan(&c, &n), 0, "count 0 = as many as the ranges allow");
	is_int(n.count, 254, "254 for a /24 of unique addresses (the original's count)");
	net_nat_free(&n);

	c.namespace_count = 300;
	is_int(net_nat_plan(&c, &n), -ERANGE, "300 namespaces are refused");
	ok(strstr(n.err, "300") != NULL, "the message names the count: %s", n.err);
	net_nat_free(&n);

	c = nat_defaults();
	c.namespace_prefix = "abcdefghijk";
	is_int(net_nat_plan(&c, &n), -ENAMETOOLONG, "a prefix that makes interface names too long is refused");
	net_nat_free(&n);
	c.namespace_prefix = "a/b";
	is_int(net_nat_plan(&c, &n), -EINVAL, "a prefix with '/' is refused");
	net_nat_free(&n);

	c = nat_defaults();
	c.namespace_interface_mac = "zz:0e:d9:fd:68:3d";
	is_int(net_nat_plan(&c, &n), -EINVAL, "a bad MAC is refused");
	net_nat_free(&n);
	c = nat_defaults();
	c.namespace_interface_ip = "172.100.101.2";
	is_int(net_nat_plan(&c, &n), -EINVAL, "a guest outside the gateway's network is refused");
	net_nat_free(&n);
	c = nat_defaults();
	c.host_veth_cidr = "10.0.8.0/31";
	is_int(net_nat_plan(&c, &n), -EINVAL, "a host veth range smaller than a /30 is refused");
	net_nat_free(&n);
	c = nat_defaults();
	c.ipv6_prefix = "fd00:100:100::/96";
	is_int(net_nat_plan(&c, &n), -EINVAL, "an IPv6 prefix longer than /64 is refused");
	net_nat_free(&n);
	c.ipv6 = false;
	is_int(net_nat_plan(&c, &n), 0, "without IPv6 the prefix does not matter");
	net_nat_free(&n);
}

static void test_forward_plan(void)
{
	struct cfg_port_forward fw = { .netns = "ark0", .internal_port = 6379, .protocol = PROTO_TCP };
	struct cfg_forward c = { .host_veth_cidr = "10.0.8.0/22", .forwards = &fw, .n_forwards = 1 };
	struct net_forward f;

	fw.external_addr = "127.0.0.1:0";
	is_int(net_forward_plan(&c, &f), -ERANGE, "external port 0 is refused");
	net_forward_free(&f);
	fw.external_addr = "127.0.0.1";
	is_int(net_forward_plan(&c, &f), -EINVAL, "an external address without a port is refused");
	net_forward_free(&f);
	fw.external_addr = "[::1]:3333";
	is_int(net_forward_plan(&c, &f), -EADDRNOTAVAIL, "::1 is refused");
	ok(strstr(f.err, "::1") != NULL, "with a reason: %s", f.err);
	net_forward_free(&f);
	fw.external_addr = "192.0.2.99:3333";
	is_int(net_forward_plan(&c, &f), -EADDRNOTAVAIL, "an address that is not local is refused");
	ok(strstr(f.err, "192.0.2.99") != NULL, "naming it: %s", f.err);
	net_forward_free(&f);
	fw.external_addr = "127.0.0.1:3333";
	fw.netns = "..";
	is_int(net_forward_plan(&c, &f), -EINVAL, "namespace '..' is refused");
	net_forward_free(&f);
	fw.netns = "drafter-unit-no-such-ns";
	is_int(net_forward_plan(&c, &f), -ENOENT, "an unknown namespace is refused");
	ok(strstr(f.err, "no such namespace") != NULL, "as such: %s", f.err);
	net_forward_free(&f);
	fw.netns = "ark0";
	fw.internal_port = 0;
	is_int(net_forward_plan(&c, &f), -ERANGE, "internal port 0 is refused");
	net_forward_free(&f);
	fw.internal_port = 1;
	c.host_veth_cidr = "fd00::/64";
	is_int(net_forward_plan(&c, &f), -EINVAL, "an IPv6 host veth range is refused");
	net_forward_free(&f);
}

int main(void)
{
	test_parse();
	test_subnets();
	test_mac_hostport();
	test_nat_plan();
	test_forward_plan();
	return done_testing();
}

/*
 * The settings table and the value checks every way into struct config goes
 * through (config file, legacy Go flags, subcommand options, JSON values).
 * Help texts are drafter's own; names, types and defaults follow the
 * original's command reference so that its command lines keep working.
 */
#include <config.h> /* autoconf's; "config.h" here would be core/config.h */

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "core/schema.h"
#include "core/util.h"

#define B(t)    TOOL_BIT(TOOL_##t)
#define VMT     (B(SNAPSHOT) | B(RUN) | B(PEER))
#define OFF(m)  offsetof(struct config, m)
#define DOFF(m) offsetof(struct cfg_device, m)
#define POFF(m) offsetof(struct cfg_port_forward, m)

/* Field shorthands: key, type, format, offset, range. */
#define S_STR(k, fmt, m)                                                                           \
	{                                                                                          \
		k, NULL, FT_STRING, fmt, OFF(m), 0, 0                                              \
	}
#define S_BOOL(k, m)                                                                               \
	{                                                                                          \
		k, NULL, FT_BOOL, FF_ANY, OFF(m), 0, 0                                             \
	}
#define S_U32(k, m, lo, hi)                                                                        \
	{                                                                                          \
		k, NULL, FT_U32, FF_ANY, OFF(m), lo, hi                                            \
	}
#define S_I32(k, m, lo, hi)                                                                        \
	{                                                                                          \
		k, NULL, FT_I32, FF_ANY, OFF(m), lo, hi                                            \
	}
#define S_DUR(k, m)                                                                                \
	{                                                                                          \
		k, NULL, FT_DURATION, FF_ANY, OFF(m), 0, 0                                         \
	}

const struct setting schema_settings[] = {
    /* Common to every tool. */
    {{"log_level", NULL, FT_LOGLEVEL, FF_ANY, OFF(log_level), 0, 0},
     "log-level",
     0,
     TOOLS_ALL,
     "string",
     "LEVEL",
     "messages to show: error, warn, info or debug"},
    {S_BOOL("log_json", log_json), "log-json", 0, TOOLS_ALL, "", NULL,
     "write log messages as JSON lines"},
    {{"devices", NULL, FT_DEVICES, FF_ANY, OFF(devices), 0, 0},
     "devices",
     TOOLS_DEVICES,
     TOOLS_DEVICES,
     "string",
     "JSON",
     "devices of the VM as a JSON list (replaces the configured list)"},

    /* nat */
    {S_STR("nat.host_interface", FF_IFNAME_OPT, nat.host_interface), "host-interface", B(NAT),
     B(NAT), "string", "NAME",
     "host interface towards the outside world (empty: the interface of the default route)"},
    {S_STR("nat.host_veth_cidr", FF_CIDR4, nat.host_veth_cidr), "host-veth-cidr", B(NAT), B(NAT),
     "string", "CIDR", "address range of the host ends of the veth pairs"},
    {S_STR("nat.namespace_veth_cidr", FF_CIDR4, nat.namespace_veth_cidr), "namespace-veth-cidr",
     B(NAT), B(NAT), "string", "CIDR", "address range the guests' traffic is translated to"},
    {S_STR("nat.blocked_subnet_cidr", FF_CIDR4, nat.blocked_subnet_cidr), "blocked-subnet-cidr",
     B(NAT), B(NAT), "string", "CIDR",
     "address range that namespaces may not reach each other through"},
    {S_STR("nat.namespace_prefix", FF_NSPREFIX, nat.namespace_prefix), "namespace-prefix", B(NAT),
     B(NAT), "string", "PREFIX", "namespace names are this prefix followed by a number"},
    {S_U32("nat.namespace_count", nat.namespace_count, 1, 256), "namespace-count", 0, B(NAT), NULL,
     "N", "number of namespaces to create"},
    {S_STR("nat.namespace_interface", FF_IFNAME, nat.namespace_interface), "namespace-interface",
     B(NAT), B(NAT), "string", "NAME", "name of the tap interface inside each namespace"},
    {S_STR("nat.namespace_interface_gateway", FF_IP4, nat.namespace_interface_gateway),
     "namespace-interface-gateway", B(NAT), B(NAT), "string", "ADDRESS",
     "address of the tap interface: the guest's gateway"},
    {S_STR("nat.namespace_interface_ip", FF_IP4, nat.namespace_interface_ip),
     "namespace-interface-ip", B(NAT), B(NAT), "string", "ADDRESS",
     "address of the guest behind the tap interface"},
    {S_U32("nat.namespace_interface_netmask", nat.namespace_interface_netmask, 0, 32),
     "namespace-interface-netmask", B(NAT), B(NAT), "uint", "BITS",
     "prefix length of the guest network"},
    {S_STR("nat.namespace_interface_mac", FF_MAC, nat.namespace_interface_mac),
     "namespace-interface-mac", B(NAT), B(NAT), "string", "MAC",
     "MAC address of the guest interface"},
    {S_BOOL("nat.allow_incoming_traffic", nat.allow_incoming_traffic), "allow-incoming-traffic",
     B(NAT), B(NAT), "", NULL,
     "let the host reach each guest through its namespace's veth address"},
    {S_BOOL("nat.ipv6", nat.ipv6), "ipv6", 0, B(NAT), NULL, NULL,
     "give the guest networks IPv6 as well"},
    {S_STR("nat.ipv6_prefix", FF_CIDR6_OPT, nat.ipv6_prefix), "ipv6-prefix", 0, B(NAT), NULL,
     "CIDR", "IPv6 prefix (ULA) of the guest networks"},
    {S_BOOL("nat.cleanup", nat.cleanup), "cleanup", 0, B(NAT), NULL, NULL,
     "remove what an earlier run left behind, then exit"},

    /* forward */
    {S_STR("forward.host_veth_cidr", FF_CIDR4, forward.host_veth_cidr), "host-veth-cidr",
     B(FORWARD), B(FORWARD), "string", "CIDR",
     "address range of the host ends of the veth pairs (as given to nat)"},
    {{"forward.port_forwards", NULL, FT_FORWARDS, FF_ANY, OFF(forward.forwards), 0, 0},
     "port-forwards",
     B(FORWARD),
     B(FORWARD),
     "string",
     "JSON",
     "port forwards as a JSON list of {netns, internalPort, protocol, externalAddr}; "
     "a wildcard external address (0.0.0.0, [::]) forwards from every local address"},

    /* vm */
    {{"vm.vmm", NULL, FT_VMM, FF_ANY, OFF(vm.vmm), 0, 0},
     "vmm",
     0,
     VMT,
     NULL,
     "KIND",
     "virtual machine monitor: auto, qemu or firecracker"},
    {S_STR("vm.qemu_bin", FF_NONEMPTY, vm.qemu_bin), "qemu-bin", 0, VMT, NULL, "PATH",
     "QEMU binary"},
    {S_STR("vm.firecracker_bin", FF_NONEMPTY, vm.firecracker_bin), "firecracker-bin", VMT, VMT,
     "string", "PATH", "Firecracker binary"},
    {S_STR("vm.jailer_bin", FF_NONEMPTY, vm.jailer_bin), "jailer-bin", VMT, VMT, "string", "PATH",
     "Firecracker's jailer binary"},
    {S_STR("vm.chroot_base_dir", FF_NONEMPTY, vm.chroot_base_dir), "chroot-base-dir", VMT, VMT,
     "chroot", "DIR", "directory the jailer's chroot directories are made in"},
    {S_U32("vm.uid", vm.uid, 0, 4294967294), "uid", VMT, VMT, "int", "UID",
     "user ID the VMM runs as"},
    {S_U32("vm.gid", vm.gid, 0, 4294967294), "gid", VMT, VMT, "int", "GID",
     "group ID the VMM runs as"},
    {S_I32("vm.numa_node", vm.numa_node, 0, 4095), "numa-node", VMT, VMT, "int", "NODE",
     "NUMA node the VMM runs on"},
    {S_U32("vm.cgroup_version", vm.cgroup_version, 1, 2), "cgroup-version", VMT, VMT, "int", "1|2",
     "cgroup version the jailer uses"},
    {S_STR("vm.netns", FF_DEVNAME, vm.netns), "netns", VMT, VMT, "string", "NAME",
     "network namespace the VM runs in"},
    {S_BOOL("vm.enable_input", vm.enable_input), "enable-input", VMT, VMT, "", NULL,
     "connect standard input to the VM's console"},
    {S_BOOL("vm.enable_output", vm.enable_output), "enable-output", VMT, VMT, "", NULL,
     "copy the VM's console output to standard output"},
    {S_DUR("vm.resume_timeout", vm.resume_timeout_ns), "resume-timeout", VMT, VMT, "duration",
     "DURATION", "how long to wait for the guest agent and liveness check after a start or resume"},
    {S_DUR("vm.rescue_timeout", vm.rescue_timeout_ns), "rescue-timeout", B(RUN) | B(PEER),
     B(RUN) | B(PEER), "duration", "DURATION",
     "how long suspending the VM on the way out may take"},
    {S_U32("vm.cpu_count", vm.cpu_count, 1, 255), "cpu-count", B(SNAPSHOT), B(SNAPSHOT), "int", "N",
     "number of virtual CPUs"},
    {S_U32("vm.memory_size", vm.memory_size, 1, 1048576), "memory-size", B(SNAPSHOT), B(SNAPSHOT),
     "int", "MIB", "guest memory in MiB"},
    {S_STR("vm.cpu_template", FF_NONEMPTY, vm.cpu_template), "cpu-template", B(SNAPSHOT),
     B(SNAPSHOT), "string", "NAME", "Firecracker CPU template (None, T2, C3, ...)"},
    {S_STR("vm.boot_args", FF_ANY, vm.boot_args), "boot-args", B(SNAPSHOT), B(SNAPSHOT), "string",
     "ARGS", "kernel command line"},
    {S_STR("vm.interface", FF_IFNAME, vm.interface), "interface", B(SNAPSHOT), B(SNAPSHOT),
     "string", "NAME", "tap interface in the network namespace the VM uses"},
    {S_STR("vm.mac", FF_MAC, vm.mac), "mac", B(SNAPSHOT), B(SNAPSHOT), "string", "MAC",
     "MAC address of the VM's network interface"},
    {S_U32("vm.agent_vsock_port", vm.agent_vsock_port, 1, 4294967294), "agent-vsock-port",
     B(SNAPSHOT), VMT, "int", "PORT", "vsock port of the guest agent"},
    {S_U32("vm.liveness_vsock_port", vm.liveness_vsock_port, 1, 4294967294), "liveness-vsock-port",
     B(SNAPSHOT), VMT, "int", "PORT", "vsock port the guest reports liveness on"},

    /* package */
    {S_STR("package.path", FF_NONEMPTY, package.path), "package-path", B(PACKAGE), B(PACKAGE),
     "string", "PATH", "package file (.tar.zst)"},
    {S_BOOL("package.extract", package.extract), "extract", B(PACKAGE), B(PACKAGE), "", NULL,
     "extract the package into the devices' paths instead of creating it"},
    {{"package.level", NULL, FT_I32, FF_NONZERO, OFF(package.level), -7, 19},
     "level",
     0,
     B(PACKAGE),
     NULL,
     "N",
     "zstd compression level: 1 to 19, or -7 to -1 for faster"},
    {S_U32("package.threads", package.threads, 0, 256), "threads", 0, B(PACKAGE), NULL, "N",
     "zstd worker threads (0: one per CPU)"},

    /* transport */
    {S_STR("transport.laddr", FF_ADDR_OPT, transport.laddr), "laddr", B(REGISTRY), B(REGISTRY),
     "string", "ADDRESS", "address to serve the devices on (host:port or unix:PATH)"},
    {S_STR("transport.laddr", FF_ADDR_OPT, transport.laddr), "laddr", B(PEER), B(PEER), "string",
     "ADDRESS",
     "address to serve the VM on for migration (host:port or unix:PATH; empty: do not serve)"},
    {S_STR("transport.raddr", FF_ADDR_OPT, transport.raddr), "raddr", B(PEER), B(PEER), "string",
     "ADDRESS", "address of the registry or peer to start from (empty: start from local files)"},
    {S_STR("transport.raddr", FF_ADDR_OPT, transport.raddr), "raddr", B(TERMINATE), B(TERMINATE),
     "string", "ADDRESS", "address of the peer to pull the devices from"},
    {S_U32("transport.concurrency", transport.concurrency, 1, 65536), "concurrency",
     B(REGISTRY) | B(PEER), B(REGISTRY) | B(PEER) | B(TERMINATE), "int", "N",
     "number of blocks in flight at once in a migration"},
    {{"transport.exposure", NULL, FT_EXPOSURE, FF_ANY, OFF(transport.exposure), 0, 0},
     "exposure",
     0,
     B(RUN) | B(PEER),
     NULL,
     "KIND",
     "how devices are shown to the VMM: auto, fuse, nbd or file"},
    {S_STR("transport.mount_dir", FF_NONEMPTY, transport.mount_dir), "mount-dir", 0,
     B(RUN) | B(PEER), NULL, "DIR", "directory for the FUSE mounts of the devices"},
    {S_BOOL("transport.json", transport.json), "json", 0, B(PEER), "", NULL,
     "print each migration's summary as one JSON line on standard output"},
    {S_BOOL("transport.postcopy", transport.postcopy), "postcopy", 0, B(PEER), "", NULL,
     "migrating away: hand the VM over before any block the destination did not ask for, everything is post-copied"},
    {S_DUR("transport.timeout", transport.timeout_ns), "timeout", 0,
     B(REGISTRY) | B(PEER) | B(TERMINATE), NULL, "DURATION",
     "give up a migration when the other side sends nothing for this long (0: never)"},
    {S_STR("transport.tls.certificate", FF_ANY, transport.tls.certificate), "tls-cert", 0,
     B(REGISTRY) | B(PEER) | B(TERMINATE), NULL, "FILE",
     "PEM certificate of this side (enables TLS)"},
    {S_STR("transport.tls.key", FF_ANY, transport.tls.key), "tls-key", 0,
     B(REGISTRY) | B(PEER) | B(TERMINATE), NULL, "FILE", "PEM private key of the certificate"},
    {S_STR("transport.tls.ca", FF_ANY, transport.tls.ca), "tls-ca", 0,
     B(REGISTRY) | B(PEER) | B(TERMINATE), NULL, "FILE",
     "PEM CA bundle that verifies the other side (enables TLS)"},
    {S_BOOL("transport.tls.verify_peer", transport.tls.verify_peer), "tls-verify-peer", 0,
     B(REGISTRY) | B(PEER) | B(TERMINATE), NULL, NULL,
     "servers require a client certificate; clients verify the server's certificate"},
    {S_STR("transport.tls.server_name", FF_ANY, transport.tls.server_name), "tls-server-name", 0,
     B(PEER) | B(TERMINATE), NULL, "NAME", "name the server's certificate must carry"},
};
const size_t schema_n_settings = ARRAY_SIZE(schema_settings);

#define D_STR(k, j, fmt, m)                                                                        \
	{                                                                                          \
		k, j, FT_STRING, fmt, DOFF(m), 0, 0                                                \
	}
const struct field schema_device_fields[] = {
    D_STR("name", "name", FF_DEVNAME, name),
    D_STR("input", "input", FF_ANY, input),
    D_STR("output", "output", FF_ANY, output),
    D_STR("path", "path", FF_ANY, path),
    D_STR("base", "base", FF_ANY, base),
    D_STR("overlay", "overlay", FF_PATHS, overlay),
    D_STR("state", "state", FF_PATHS, state),
    {"block_size", "blockSize", FT_SIZE32, FF_POW2, DOFF(block_size), 4096, 16 << 20},
    {"expiry", "expiry", FT_DURATION, FF_ANY, DOFF(expiry_ns), 0, 0},
    {"max_dirty_blocks", "maxDirtyBlocks", FT_U32, FF_ANY, DOFF(max_dirty_blocks), 0, 4294967295},
    {"min_cycles", "minCycles", FT_U32, FF_ANY, DOFF(min_cycles), 0, 1000000},
    {"max_cycles", "maxCycles", FT_U32, FF_ANY, DOFF(max_cycles), 0, 1000000},
    {"cycle_throttle", "cycleThrottle", FT_DURATION, FF_ANY, DOFF(cycle_throttle_ns), 0, 0},
    {"make_migratable", "makeMigratable", FT_BOOL, FF_ANY, DOFF(make_migratable), 0, 0},
    {"shared", "shared", FT_BOOL, FF_ANY, DOFF(shared), 0, 0},
    {"shared_base", "sharedbase", FT_BOOL, FF_ANY, DOFF(shared_base), 0, 0},
    {"s3.sync", "s3sync", FT_BOOL, FF_ANY, DOFF(s3.sync), 0, 0},
    D_STR("s3.access_key", "s3accesskey", FF_ANY, s3.access_key),
    D_STR("s3.secret_key", "s3secretkey", FF_ANY, s3.secret_key),
    D_STR("s3.endpoint", "s3endpoint", FF_ANY, s3.endpoint),
    D_STR("s3.bucket", "s3bucket", FF_ANY, s3.bucket),
    {"s3.secure", "s3secure", FT_BOOL, FF_ANY, DOFF(s3.secure), 0, 0},
    {"s3.concurrency", "s3concurrency", FT_U32, FF_ANY, DOFF(s3.concurrency), 0, 4096},
    /* The original reads it but it only changes internals; accepted, ignored. */
    {NULL, "skipsilo", FT_IGNORED, FF_ANY, 0, 0, 0},
};
const size_t schema_n_device_fields = ARRAY_SIZE(schema_device_fields);

const struct field schema_forward_fields[] = {
    {"netns", "netns", FT_STRING, FF_DEVNAME, POFF(netns), 0, 0},
    {"internal_port", "internalPort", FT_U16, FF_ANY, POFF(internal_port), 1, 65535},
    {"protocol", "protocol", FT_PROTOCOL, FF_ANY, POFF(protocol), 0, 0},
    {"external_addr", "externalAddr", FT_STRING, FF_HOSTPORT, POFF(external_addr), 0, 0},
};
const size_t schema_n_forward_fields = ARRAY_SIZE(schema_forward_fields);

static const char *const vmm_names[] = {"auto", "qemu", "firecracker"};
static const char *const exposure_names[] = {"auto", "fuse", "nbd", "file"};
static const char *const protocol_names[] = {"tcp", "udp"};
static const char *const level_names[] = {"error", "warn", "info", "debug"};

const char *schema_vmm_name(enum cfg_vmm v)
{
	return (unsigned)v < ARRAY_SIZE(vmm_names) ? vmm_names[v] : "?";
}

const char *schema_exposure_name(enum cfg_exposure e)
{
	return (unsigned)e < ARRAY_SIZE(exposure_names) ? exposure_names[e] : "?";
}

const char *schema_protocol_name(enum cfg_protocol p)
{
	return (unsigned)p < ARRAY_SIZE(protocol_names) ? protocol_names[p] : "?";
}

const char *schema_log_level_name(int level)
{
	return (unsigned)level < ARRAY_SIZE(level_names) ? level_names[level] : "?";
}

static int enum_lookup(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (str_eq(names[i], s))
			return (int)i;
	return -1;
}

/* Format checks. */

static bool is_ifname(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 15 || str_eq(s, ".") || str_eq(s, ".."))
		return false;
	for (; *s; s++)
		if (*s == '/' || *s == ':' || isspace((unsigned char)*s) ||
		    !isprint((unsigned char)*s))
			return false;
	return true;
}

static bool is_prefix_len(const char *s, unsigned max)
{
	uint32_t v;

	if (!isdigit((unsigned char)*s) || strlen(s) > 3)
		return false;
	return parse_u32(s, &v) == 0 && v <= max;
}

static bool is_cidr(const char *s, int af)
{
	char buf[INET6_ADDRSTRLEN + 8];
	unsigned char addr[16];
	const char *slash = strchr(s, '/');
	size_t n;

	if (!slash)
		return false;
	n = (size_t)(slash - s);
	if (n == 0 || n >= sizeof buf)
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	/* IPv6 guest networks are carved out of one /64, so nothing longer. */
	return inet_pton(af, buf, addr) == 1 && is_prefix_len(slash + 1, af == AF_INET ? 32 : 64);
}

static bool is_mac(const char *s)
{
	if (strlen(s) != 17)
		return false;
	for (int i = 0; i < 17; i++) {
		if (i % 3 == 2) {
			if (s[i] != ':')
				return false;
		} else if (!isxdigit((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

static bool is_name(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max || str_eq(s, ".") || str_eq(s, ".."))
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("_.+-", *s))
			return false;
	return true;
}

static bool is_port(const char *s, bool allow_zero)
{
	uint32_t v;

	if (!*s || strlen(s) > 5)
		return false;
	for (const char *p = s; *p; p++)
		if (!isdigit((unsigned char)*p))
			return false;
	return parse_u32(s, &v) == 0 && v <= 65535 && (allow_zero || v > 0);
}

/*
 * "host:port", "[v6]:port" or ":port". With EXPLICIT the host must be given;
 * a wildcard host (0.0.0.0, [::]) is allowed and means every local address,
 * which the original's forwarder refused.
 */
static bool is_hostport(const char *s, bool explicit)
{
	const char *colon;
	char host[256];
	size_t n;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		unsigned char a[16];

		if (!close || close[1] != ':')
			return false;
		n = (size_t)(close - s - 1);
		if (n == 0 || n >= sizeof host)
			return false;
		memcpy(host, s + 1, n);
		host[n] = '\0';
		if (inet_pton(AF_INET6, host, a) != 1)
			return false;
		return is_port(close + 2, !explicit);
	}
	colon = strrchr(s, ':');
	if (!colon || memchr(s, ':', (size_t)(colon - s)))
		return false; /* bare IPv6 needs brackets */
	n = (size_t)(colon - s);
	if (n >= sizeof host)
		return false;
	memcpy(host, s, n);
	host[n] = '\0';
	if (explicit && n == 0)
		return false;
	for (const char *p = host; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr(".-_", *p))
			return false;
	return is_port(colon + 1, !explicit);
}

int field_check_format(enum field_format fmt, const char *s)
{
	bool good = true;

	if (strlen(s) > SCHEMA_MAX_STRING)
		return -EINVAL;
	switch (fmt) {
	case FF_ANY:
	case FF_PATHS:
	case FF_NONZERO:
	case FF_POW2:
		break;
	case FF_NONEMPTY:
		good = *s != '\0';
		break;
	case FF_IFNAME:
		good = is_ifname(s);
		break;
	case FF_IFNAME_OPT:
		good = !*s || is_ifname(s);
		break;
	case FF_CIDR4:
		good = is_cidr(s, AF_INET);
		break;
	case FF_CIDR6_OPT:
		good = !*s || is_cidr(s, AF_INET6);
		break;
	case FF_IP4: {
		unsigned char a[4];
		good = inet_pton(AF_INET, s, a) == 1;
		break;
	}
	case FF_MAC:
		good = is_mac(s);
		break;
	case FF_NSPREFIX:
		/* "<prefix>255-veth0" must still fit in an interface name. */
		good = is_name(s, 6);
		break;
	case FF_ADDR_OPT:
		if (str_startswith(s, "unix:"))
			good = s[5] != '\0';
		else
			good = !*s || is_hostport(s, false);
		break;
	case FF_HOSTPORT:
		good = is_hostport(s, true);
		break;
	case FF_DEVNAME:
		good = is_name(s, 255);
		break;
	}
	return good ? 0 : -EINVAL;
}

static const char *format_expected(enum field_format fmt)
{
	switch (fmt) {
	case FF_NONEMPTY:
		return "a non-empty string";
	case FF_IFNAME:
		return "an interface name (1 to 15 characters, no '/', ':' or spaces)";
	case FF_IFNAME_OPT:
		return "an interface name (1 to 15 characters, no '/', ':' or spaces) or \"\"";
	case FF_CIDR4:
		return "an IPv4 CIDR such as \"10.0.8.0/22\"";
	case FF_CIDR6_OPT:
		return "an IPv6 CIDR of /64 or shorter such as \"fd00:100:100::/64\", or \"\"";
	case FF_IP4:
		return "an IPv4 address such as \"172.100.100.1\"";
	case FF_MAC:
		return "a MAC address such as \"02:0e:d9:fd:68:3d\"";
	case FF_NSPREFIX:
		return "a prefix of 1 to 6 letters, digits, '_', '.', '+' or '-'";
	case FF_ADDR_OPT:
		return "an address such as \"localhost:1337\", \"[::1]:1337\", \":1600\" or "
		       "\"unix:/run/x.sock\", or \"\"";
	case FF_HOSTPORT:
		return "a host and port such as \"127.0.0.1:3333\" or \"0.0.0.0:3333\"";
	case FF_DEVNAME:
		return "a name of letters, digits, '_', '.', '+' or '-'";
	default:
		return "a string";
	}
}

void field_expected(const struct field *f, char *buf, size_t len)
{
	switch (f->type) {
	case FT_STRING:
		snprintf(buf, len, "%s", format_expected(f->fmt));
		break;
	case FT_BOOL:
		snprintf(buf, len, "true or false");
		break;
	case FT_U32:
	case FT_I32:
	case FT_U16:
		if (f->fmt == FF_NONZERO)
			snprintf(buf, len, "an integer between %" PRId64 " and %" PRId64 ", not 0",
			         f->min, f->max);
		else
			snprintf(buf, len, "an integer between %" PRId64 " and %" PRId64, f->min,
			         f->max);
		break;
	case FT_DURATION:
		snprintf(buf, len, "a duration such as \"500ms\", \"1m0s\" or \"1h\"");
		break;
	case FT_SIZE32:
		snprintf(buf, len,
		         "a power of two between %" PRId64 " and %" PRId64
		         " bytes, such as 65536 or \"64KiB\"",
		         f->min, f->max);
		break;
	case FT_VMM:
		snprintf(buf, len, "one of auto, qemu, firecracker");
		break;
	case FT_EXPOSURE:
		snprintf(buf, len, "one of auto, fuse, nbd, file");
		break;
	case FT_LOGLEVEL:
		snprintf(buf, len, "one of error, warn, info, debug");
		break;
	case FT_PROTOCOL:
		snprintf(buf, len, "tcp or udp");
		break;
	case FT_DEVICES:
	case FT_FORWARDS:
		snprintf(buf, len, "a list");
		break;
	case FT_IGNORED:
		snprintf(buf, len, "anything");
		break;
	}
}

static int fail(const struct field *f, char *why, size_t whylen)
{
	field_expected(f, why, whylen);
	return -EINVAL;
}

int field_set_int(const struct field *f, void *obj, int64_t v, char *why, size_t whylen)
{
	void *p = field_ptr(f, obj);

	switch (f->type) {
	case FT_U32:
	case FT_I32:
	case FT_U16:
	case FT_SIZE32:
		if (v < f->min || v > f->max)
			return fail(f, why, whylen);
		if (f->fmt == FF_NONZERO && v == 0)
			return fail(f, why, whylen);
		if ((f->fmt == FF_POW2 || f->type == FT_SIZE32) && (v & (v - 1)) != 0)
			return fail(f, why, whylen);
		if (f->type == FT_I32)
			*(int32_t *)p = (int32_t)v;
		else if (f->type == FT_U16)
			*(uint16_t *)p = (uint16_t)v;
		else
			*(uint32_t *)p = (uint32_t)v;
		return 0;
	case FT_DURATION:
		if (v < 0)
			return fail(f, why, whylen);
		*(uint64_t *)p = (uint64_t)v;
		return 0;
	case FT_IGNORED:
		return 0;
	default:
		return fail(f, why, whylen);
	}
}

int field_set_bool(const struct field *f, void *obj, bool v, char *why, size_t whylen)
{
	if (f->type == FT_IGNORED)
		return 0;
	if (f->type != FT_BOOL)
		return fail(f, why, whylen);
	*(bool *)field_ptr(f, obj) = v;
	return 0;
}

int field_set_text(const struct field *f, void *obj, const char *text, bool go_duration, char *why,
                   size_t whylen)
{
	void *p = field_ptr(f, obj);
	int64_t v;
	int i;

	switch (f->type) {
	case FT_STRING:
		if (field_check_format(f->fmt, text) < 0)
			return fail(f, why, whylen);
		free(*(char **)p);
		*(char **)p = xstrdup(text);
		return 0;
	case FT_BOOL: {
		bool b;
		if (parse_bool(text, &b) < 0)
			return fail(f, why, whylen);
		*(bool *)p = b;
		return 0;
	}
	case FT_U32:
	case FT_I32:
	case FT_U16:
		if (parse_i64(text, &v) < 0)
			return fail(f, why, whylen);
		return field_set_int(f, obj, v, why, whylen);
	case FT_SIZE32: {
		uint64_t u;
		if (parse_size(text, &u) < 0 || u > INT64_MAX)
			return fail(f, why, whylen);
		return field_set_int(f, obj, (int64_t)u, why, whylen);
	}
	case FT_DURATION: {
		uint64_t ns;
		/* Go's time.ParseDuration wants a unit on anything but 0. */
		if (go_duration && !str_eq(text, "0") && parse_u64(text, &ns) == 0)
			return fail(f, why, whylen);
		if (parse_duration_ns(text, &ns) < 0 || ns > INT64_MAX)
			return fail(f, why, whylen);
		*(uint64_t *)p = ns;
		return 0;
	}
	case FT_VMM:
		if ((i = enum_lookup(vmm_names, ARRAY_SIZE(vmm_names), text)) < 0)
			return fail(f, why, whylen);
		*(enum cfg_vmm *)p = (enum cfg_vmm)i;
		return 0;
	case FT_EXPOSURE:
		if ((i = enum_lookup(exposure_names, ARRAY_SIZE(exposure_names), text)) < 0)
			return fail(f, why, whylen);
		*(enum cfg_exposure *)p = (enum cfg_exposure)i;
		return 0;
	case FT_PROTOCOL:
		if ((i = enum_lookup(protocol_names, ARRAY_SIZE(protocol_names), text)) < 0)
			return fail(f, why, whylen);
		*(enum cfg_protocol *)p = (enum cfg_protocol)i;
		return 0;
	case FT_LOGLEVEL:
		if ((i = enum_lookup(level_names, ARRAY_SIZE(level_names), text)) < 0)
			return fail(f, why, whylen);
		*(int *)p = i;
		return 0;
	case FT_IGNORED:
		return 0;
	case FT_DEVICES:
	case FT_FORWARDS:
		break;
	}
	return fail(f, why, whylen);
}

/* Quote S the way the config file writes strings. */
static void quote(const char *s, char *buf, size_t len)
{
	size_t o = 0;

	if (len < 3) {
		if (len)
			buf[0] = '\0';
		return;
	}
	buf[o++] = '"';
	for (; *s && o + 6 < len; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else if (c == '\t') {
			buf[o++] = '\\';
			buf[o++] = 't';
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(buf + o, len - o, "\\x%02x", c);
		} else {
			buf[o++] = (char)c;
		}
	}
	buf[o++] = '"';
	buf[o] = '\0';
}

void field_format_value(const struct field *f, const void *obj, char *buf, size_t len)
{
	const void *p = (const char *)obj + f->offset;
	char tmp[64];

	switch (f->type) {
	case FT_STRING: {
		const char *s = *(char *const *)p;
		quote(s ? s : "", buf, len);
		break;
	}
	case FT_BOOL:
		snprintf(buf, len, "%s", *(const bool *)p ? "true" : "false");
		break;
	case FT_U32:
	case FT_SIZE32:
		snprintf(buf, len, "%" PRIu32, *(const uint32_t *)p);
		break;
	case FT_I32:
		snprintf(buf, len, "%" PRId32, *(const int32_t *)p);
		break;
	case FT_U16:
		snprintf(buf, len, "%" PRIu16, *(const uint16_t *)p);
		break;
	case FT_DURATION:
		format_duration(*(const uint64_t *)p, tmp, sizeof tmp);
		snprintf(buf, len, "\"%s\"", tmp);
		break;
	case FT_VMM:
		snprintf(buf, len, "\"%s\"", schema_vmm_name(*(const enum cfg_vmm *)p));
		break;
	case FT_EXPOSURE:
		snprintf(buf, len, "\"%s\"", schema_exposure_name(*(const enum cfg_exposure *)p));
		break;
	case FT_PROTOCOL:
		snprintf(buf, len, "\"%s\"", schema_protocol_name(*(const enum cfg_protocol *)p));
		break;
	case FT_LOGLEVEL:
		snprintf(buf, len, "\"%s\"", schema_log_level_name(*(const int *)p));
		break;
	case FT_IGNORED:
	case FT_DEVICES:
	case FT_FORWARDS:
		snprintf(buf, len, "()");
		break;
	}
}

bool field_is_zero(const struct field *f, const void *obj)
{
	const void *p = (const char *)obj + f->offset;

	switch (f->type) {
	case FT_STRING: {
		const char *s = *(char *const *)p;
		return !s || !*s;
	}
	case FT_BOOL:
		return !*(const bool *)p;
	case FT_U32:
	case FT_SIZE32:
		return *(const uint32_t *)p == 0;
	case FT_I32:
		return *(const int32_t *)p == 0;
	case FT_U16:
		return *(const uint16_t *)p == 0;
	case FT_DURATION:
		return *(const uint64_t *)p == 0;
	default:
		return false;
	}
}

const struct setting *schema_find_key(const char *key)
{
	for (size_t i = 0; i < schema_n_settings; i++)
		if (str_eq(schema_settings[i].f.key, key))
			return &schema_settings[i];
	return NULL;
}

const struct setting *schema_find_flag(const char *flag, enum drafter_tool tool, bool legacy)
{
	for (size_t i = 0; i < schema_n_settings; i++) {
		const struct setting *s = &schema_settings[i];
		unsigned mask = legacy ? s->legacy : s->tools;
		if (s->flag && str_eq(s->flag, flag) && (mask & TOOL_BIT(tool)))
			return s;
	}
	return NULL;
}

static const struct field *find_field(const struct field *t, size_t n, const char *key, bool json)
{
	for (size_t i = 0; i < n; i++) {
		/* Go's JSON decoder matches field names case-insensitively. */
		if (json ? (t[i].json && strcasecmp(t[i].json, key) == 0) : str_eq(t[i].key, key))
			return &t[i];
	}
	return NULL;
}

const struct field *schema_find_device_field(const char *key, bool json)
{
	return find_field(schema_device_fields, schema_n_device_fields, key, json);
}

const struct field *schema_find_forward_field(const char *key, bool json)
{
	return find_field(schema_forward_fields, schema_n_forward_fields, key, json);
}

unsigned schema_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned row[64];

	if (la >= ARRAY_SIZE(row) || lb >= ARRAY_SIZE(row))
		return 1000;
	for (size_t j = 0; j <= lb; j++)
		row[j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++) {
		unsigned prev = row[0];
		row[0] = (unsigned)i;
		for (size_t j = 1; j <= lb; j++) {
			unsigned cur = row[j];
			unsigned cost = a[i - 1] == b[j - 1] ? 0 : 1;
			unsigned best = prev + cost;
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			prev = cur;
		}
	}
	return row[lb];
}

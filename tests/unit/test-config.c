/*
 * Configuration: the original's defaults per tool, loading valid files,
 * every class of file error with its file:line:key message, the rules across
 * settings, the printed settings read back unchanged, and config_setup()'s
 * file lookup and option overrides.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "core/util.h"
#include "tests/tap.h"

/*
 * libconfig 1.5 does not free a string it was scanning when a syntax error
 * stops the parse (fixed in later releases); the damaged-file test hits this.
 * LeakSanitizer reads this hook when the test runs under ASan.
 */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:strbuf_append\n";
}

static char dir[] = "/tmp/drafter-test-config.XXXXXX";

static char *write_file(const char *name, const char *content)
{
	char *path;
	FILE *f;

	if (asprintf(&path, "%s/%s", dir, name) < 0)
		abort();
	f = fopen(path, "we");
	if (!f)
		abort();
	fputs(content, f);
	fclose(f);
	return path;
}

/* Load CONTENT as a file for TOOL and validate; the formatted error in MSG. */
static int load(enum drafter_tool tool, const char *content, struct config *cfg, char *msg,
                size_t len)
{
	struct config_error err = {0};
	char *path = write_file("t.conf", content);
	int r;

	config_init(cfg, tool);
	msg[0] = '\0';
	r = config_load_file(cfg, path, &err);
	if (r == 0)
		r = config_validate(cfg, &err);
	if (r < 0)
		config_error_format(&err, msg, len);
	free(path);
	return r;
}

static void test_defaults(void)
{
	static const char *const names[] = {"state", "memory", "kernel", "disk", "config", "oci"};
	struct config cfg;

	config_init(&cfg, TOOL_NAT);
	is_int(cfg.n_devices, 0, "nat has no devices");
	is_str(cfg.nat.host_veth_cidr, "10.0.8.0/22", "nat host-veth-cidr");
	is_str(cfg.nat.namespace_prefix, "ark", "nat prefix");
	is_int(cfg.nat.namespace_interface_netmask, 30, "nat netmask");
	ok(cfg.nat.allow_incoming_traffic, "allow incoming by default");
	is_str(cfg.nat.host_interface, "", "host interface: the default route's");
	config_free(&cfg);

	for (enum drafter_tool t = TOOL_SNAPSHOT; t < TOOL__MAX; t++) {
		config_init(&cfg, t);
		is_int(cfg.n_devices, 6, "%s: six default devices", tool_name(t));
		for (size_t i = 0; i < cfg.n_devices && i < 6; i++)
			is_str(cfg.devices[i].name, names[i], "%s: device %zu is %s", tool_name(t),
			       i, names[i]);
		config_free(&cfg);
	}
	config_init(&cfg, TOOL_SNAPSHOT);
	is_str(cfg.devices[2].input, "out/blueprint/vmlinux", "snapshot kernel input");
	is_str(cfg.devices[0].input, "", "snapshot state has no input");
	is_str(cfg.devices[3].output, "out/package/rootfs.ext4", "snapshot disk output");
	config_free(&cfg);
	config_init(&cfg, TOOL_PACKAGE);
	is_str(cfg.devices[5].path, "out/blueprint/oci.ext4",
	       "packager oci path (as the original)");
	is_str(cfg.package.path, "out/app.tar.zst", "package path");
	is_int(cfg.package.level, 3, "zstd level 3");
	config_free(&cfg);
	config_init(&cfg, TOOL_PEER);
	is_str(cfg.devices[1].overlay, "out/overlay/memory.bin", "peer overlay");
	is_str(cfg.devices[1].state, "out/state/memory.bin", "peer state");
	is_int(cfg.devices[1].block_size, 65536, "block size 64 KiB");
	is_int((long long)cfg.devices[1].cycle_throttle_ns, 500000000, "cycle throttle 500ms");
	is_str(cfg.transport.laddr, "localhost:1337", "peer laddr");
	is_str(cfg.transport.raddr, "localhost:1337", "peer raddr");
	is_int((long long)cfg.vm.rescue_timeout_ns, 60000000000LL, "peer rescue timeout 1m");
	config_free(&cfg);
	config_init(&cfg, TOOL_RUN);
	is_int((long long)cfg.vm.rescue_timeout_ns, 5000000000LL, "runner rescue timeout 5s");
	config_free(&cfg);
	config_init(&cfg, TOOL_REGISTRY);
	is_str(cfg.transport.laddr, ":1600", "registry laddr");
	config_free(&cfg);
}

static const char full_file[] =
    "log_level = \"debug\";\n"
    "log_json = true;\n"
    "nat = {\n"
    "  host_interface = \"eth1\";\n"
    "  host_veth_cidr = \"10.10.0.0/22\";\n"
    "  namespace_veth_cidr = \"10.20.0.0/24\";\n"
    "  blocked_subnet_cidr = \"10.20.0.0/24\";\n"
    "  namespace_prefix = \"vm\";\n"
    "  namespace_count = 4;\n"
    "  namespace_interface = \"tap9\";\n"
    "  namespace_interface_gateway = \"192.168.0.1\";\n"
    "  namespace_interface_ip = \"192.168.0.2\";\n"
    "  namespace_interface_netmask = 24;\n"
    "  namespace_interface_mac = \"02:00:00:00:00:09\";\n"
    "  allow_incoming_traffic = false;\n"
    "  ipv6 = false;\n"
    "  ipv6_prefix = \"fd12::/64\";\n"
    "  cleanup = true;\n"
    "};\n"
    "forward = {\n"
    "  host_veth_cidr = \"10.10.0.0/22\";\n"
    "  port_forwards = (\n"
    "    { netns = \"vm0\"; internal_port = 80; protocol = \"tcp\"; external_addr = "
    "\"127.0.0.1:8080\"; },\n"
    "    { netns = \"vm1\"; internal_port = \"53\"; protocol = \"udp\"; external_addr = "
    "\"[::1]:5353\"; }\n"
    "  );\n"
    "};\n"
    "vm = {\n"
    "  vmm = \"qemu\"; qemu_bin = \"/usr/bin/qemu\"; firecracker_bin = \"/fc\"; jailer_bin = "
    "\"/j\";\n"
    "  chroot_base_dir = \"/srv\"; uid = 1000; gid = 1001; numa_node = 1; cgroup_version = 1;\n"
    "  netns = \"vm0\"; enable_input = true; enable_output = false;\n"
    "  resume_timeout = \"30s\"; rescue_timeout = 2000000000;\n"
    "  cpu_count = 2; memory_size = 512; cpu_template = \"T2\"; boot_args = \"console=hvc0\";\n"
    "  interface = \"tap9\"; mac = \"02:00:00:00:00:09\"; agent_vsock_port = 100; "
    "liveness_vsock_port = 101;\n"
    "};\n"
    "package = { path = \"p.tar.zst\"; extract = true; level = 19; threads = 2; };\n"
    "transport = {\n"
    "  laddr = \"[::]:1600\"; raddr = \"unix:/run/d.sock\"; concurrency = 64; exposure = "
    "\"fuse\";\n"
    "  mount_dir = \"/mnt/d\";\n"
    "  tls = { certificate = \"c.pem\"; key = \"k.pem\"; ca = \"ca.pem\"; verify_peer = true;\n"
    "          server_name = \"peer\"; };\n"
    "};\n"
    "devices = (\n"
    "  { name = \"memory\"; path = \"pkg/memory.bin\"; input = \"in\"; output = \"out\"; base = "
    "\"b\";\n"
    "    overlay = \"o1 o2\"; state = \"s1 s2\"; block_size = \"1MiB\"; expiry = \"2s\";\n"
    "    max_dirty_blocks = 50; min_cycles = 2; max_cycles = 4; cycle_throttle = 100000000;\n"
    "    make_migratable = false; shared = true; shared_base = true;\n"
    "    s3 = { sync = true; access_key = \"a\"; secret_key = \"s\"; endpoint = \"minio:9000\";\n"
    "           bucket = \"b\"; secure = true; concurrency = 16; };\n"
    "  },\n"
    "  { name = \"disk\"; path = \"pkg/rootfs.ext4\"; block_size = 4096; }\n"
    ");\n";

static void test_full_file(void)
{
	struct config cfg;
	char msg[1024];
	struct cfg_device *d;

	is_int(load(TOOL_PEER, full_file, &cfg, msg, sizeof msg), 0, "a file with every key loads");
	if (msg[0])
		diag("%s", msg);
	is_int(cfg.log_level, LOG_LVL_DEBUG, "log_level");
	ok(cfg.log_json, "log_json");
	is_str(cfg.nat.host_interface, "eth1", "nat.host_interface");
	is_int(cfg.nat.namespace_count, 4, "nat.namespace_count");
	is_int(cfg.nat.namespace_interface_netmask, 24, "nat.namespace_interface_netmask");
	ok(!cfg.nat.allow_incoming_traffic && !cfg.nat.ipv6 && cfg.nat.cleanup, "nat booleans");
	is_str(cfg.nat.ipv6_prefix, "fd12::/64", "nat.ipv6_prefix");
	is_int(cfg.forward.n_forwards, 2, "two port forwards");
	ok(cfg.forward.forwards[1].internal_port == 53 &&
	       cfg.forward.forwards[1].protocol == PROTO_UDP &&
	       str_eq(cfg.forward.forwards[1].external_addr, "[::1]:5353"),
	   "second forward");
	ok(cfg.vm.vmm == VMM_QEMU && cfg.vm.uid == 1000 && cfg.vm.gid == 1001 &&
	       cfg.vm.numa_node == 1 && cfg.vm.cgroup_version == 1 && cfg.vm.enable_input &&
	       !cfg.vm.enable_output,
	   "vm values");
	is_int((long long)cfg.vm.resume_timeout_ns, 30000000000LL, "duration from a string");
	is_int((long long)cfg.vm.rescue_timeout_ns, 2000000000LL, "duration from an integer (ns)");
	ok(cfg.vm.cpu_count == 2 && cfg.vm.memory_size == 512 && cfg.vm.agent_vsock_port == 100 &&
	       cfg.vm.liveness_vsock_port == 101,
	   "vm numbers");
	ok(cfg.package.extract && cfg.package.level == 19 && cfg.package.threads == 2, "package");
	ok(cfg.transport.concurrency == 64 && cfg.transport.exposure == EXPOSE_FUSE, "transport");
	is_str(cfg.transport.raddr, "unix:/run/d.sock", "unix: address");
	ok(cfg.transport.tls.verify_peer && str_eq(cfg.transport.tls.server_name, "peer"), "tls");
	is_int(cfg.n_devices, 2, "two devices");
	d = &cfg.devices[0];
	is_int(d->block_size, 1 << 20, "block_size from \"1MiB\"");
	is_int(cfg.devices[1].block_size, 4096, "block_size from an integer");
	is_int((long long)d->expiry_ns, 2000000000LL, "expiry");
	ok(d->max_dirty_blocks == 50 && d->min_cycles == 2 && d->max_cycles == 4, "cycles");
	ok(!d->make_migratable && d->shared && d->shared_base, "device booleans");
	ok(d->s3.sync && d->s3.secure && d->s3.concurrency == 16 &&
	       str_eq(d->s3.endpoint, "minio:9000"),
	   "s3 group");
	is_str(cfg.devices[1].base, "pkg/rootfs.ext4", "peer: path stands in for a missing base");
	is_str(d->base, "b", "peer: an explicit base stays");
	config_free(&cfg);
}

struct bad_case {
	enum drafter_tool tool;
	const char *content;
	const char *message; /* after "<file>:" */
};

static const struct bad_case bad_cases[] = {
    /* libconfig syntax */
    {TOOL_NAT, "nat = {\n  namespace_count = ;\n};\n", "2: syntax error"},
    {TOOL_NAT, "log_level = \"info\";\nlog_level = \"debug\";\n", "2: duplicate setting name"},
    /* unknown keys */
    {TOOL_NAT, "lgo_level = \"info\";\n",
     "1: 'lgo_level': unknown key (did you mean 'log_level'?)"},
    {TOOL_NAT, "\nvm = {\n  cpu_cont = 2;\n};\n",
     "3: 'vm.cpu_cont': unknown key (did you mean 'cpu_count'?)"},
    {TOOL_NAT, "vmm = { };\n", "1: 'vmm': unknown key (did you mean 'vm'?)"},
    {TOOL_NAT, "frobnicate = 1;\n", "1: 'frobnicate': unknown key"},
    {TOOL_NAT, "transport = { tls = { cert = \"x\"; }; };\n",
     "1: 'transport.tls.cert': unknown key"},
    {TOOL_PACKAGE, "devices = (\n { name = \"a\";\n   pth = \"x\"; }\n);\n",
     "3: 'devices[0].pth': unknown key (did you mean 'path'?)"},
    {TOOL_PEER, "devices = ( { name = \"a\"; path = \"p\";\n s3 = { buckt = \"b\"; }; } );\n",
     "2: 'devices[0].s3.buckt': unknown key (did you mean 'bucket'?)"},
    /* types */
    {TOOL_SNAPSHOT, "vm = {\n  cpu_count = \"x\";\n};\n",
     "2: 'vm.cpu_count': expected an integer between 1 and 255, got \"x\""},
    {TOOL_NAT, "log_json = 1;\n", "1: 'log_json': expected true or false, got 1"},
    {TOOL_NAT, "vm = { cpu_count = 1.5; };\n",
     "1: 'vm.cpu_count': expected an integer between 1 and 255, got 1.5"},
    {TOOL_NAT, "package = { path = { }; };\n",
     "1: 'package.path': expected a non-empty string, got a group"},
    {TOOL_NAT, "nat = 5;\n", "1: 'nat': expected a group { ... }"},
    {TOOL_NAT, "vm = { vmm = \"kvm\"; };\n",
     "1: 'vm.vmm': expected one of auto, qemu, firecracker, got \"kvm\""},
    {TOOL_NAT, "log_level = \"loud\";\n",
     "1: 'log_level': expected one of error, warn, info, debug, got \"loud\""},
    /* ranges and formats */
    {TOOL_NAT, "nat = { namespace_interface_netmask = 33; };\n",
     "1: 'nat.namespace_interface_netmask': expected an integer between 0 and 32, got 33"},
    {TOOL_NAT, "nat = { namespace_count = 0; };\n",
     "1: 'nat.namespace_count': expected an integer between 1 and 256, got 0"},
    {TOOL_NAT, "package = { level = 0; };\n",
     "1: 'package.level': expected an integer between -7 and 19, not 0, got 0"},
    {TOOL_NAT, "package = { level = 20; };\n",
     "1: 'package.level': expected an integer between -7 and 19, not 0, got 20"},
    {TOOL_NAT, "nat = { host_veth_cidr = \"10.0.8.0/40\"; };\n",
     "1: 'nat.host_veth_cidr': expected an IPv4 CIDR such as \"10.0.8.0/22\", got \"10.0.8.0/40\""},
    {TOOL_NAT, "nat = { namespace_interface_mac = \"02:0e:d9:fd:68\"; };\n",
     "1: 'nat.namespace_interface_mac': expected a MAC address"},
    {TOOL_NAT, "nat = { namespace_interface_ip = \"172.100.100.256\"; };\n",
     "1: 'nat.namespace_interface_ip': expected an IPv4 address"},
    {TOOL_NAT, "nat = { ipv6_prefix = \"fd00::/80\"; };\n",
     "1: 'nat.ipv6_prefix': expected an IPv6 CIDR"},
    {TOOL_NAT, "nat = { host_interface = \"an-interface-name-too-long\"; };\n",
     "1: 'nat.host_interface': expected an interface name"},
    {TOOL_NAT, "nat = { namespace_prefix = \"toolong7\"; };\n",
     "1: 'nat.namespace_prefix': expected a prefix of 1 to 6"},
    {TOOL_NAT, "transport = { laddr = \"localhost\"; };\n",
     "1: 'transport.laddr': expected an address"},
    {TOOL_NAT, "transport = { raddr = \"host:65536\"; };\n",
     "1: 'transport.raddr': expected an address"},
    {TOOL_NAT, "transport = { concurrency = 0; };\n",
     "1: 'transport.concurrency': expected an integer between 1 and 65536, got 0"},
    {TOOL_NAT, "vm = { resume_timeout = \"soon\"; };\n",
     "1: 'vm.resume_timeout': expected a duration such as \"500ms\", \"1m0s\" or \"1h\", got "
     "\"soon\""},
    {TOOL_NAT, "vm = { resume_timeout = -1; };\n", "1: 'vm.resume_timeout': expected a duration"},
    {TOOL_NAT, "vm = { cgroup_version = 3; };\n",
     "1: 'vm.cgroup_version': expected an integer between 1 and 2, got 3"},
    {TOOL_NAT, "vm = { uid = -1; };\n",
     "1: 'vm.uid': expected an integer between 0 and 4294967294, got -1"},
    {TOOL_NAT, "vm = { cpu_count = 2147483647; };\n",
     "1: 'vm.cpu_count': expected an integer between 1 and 255, got 2147483647"},
    {TOOL_NAT, "vm = {\n  uid = 1;  rescue_timeout = 5000000000;\n};\n",
     "2: 'vm.rescue_timeout': number too large for libconfig"},
    {TOOL_NAT, "vm = { cpu_count = 99999999999; };\n",
     "1: 'vm.cpu_count': number too large for libconfig"},
    {TOOL_NAT, "vm = { cpu_count = 99999999999L; };\n",
     "1: 'vm.cpu_count': expected an integer between 1 and 255, got 99999999999"},
    /* devices */
    {TOOL_PACKAGE, "devices = { };\n", "1: 'devices': expected a list ( { ... }, ... )"},
    {TOOL_PACKAGE, "devices = ( \"disk\" );\n", "1: 'devices[0]': expected a group { ... }"},
    {TOOL_PACKAGE, "devices = (\n  { path = \"x\"; }\n);\n",
     "2: 'devices[0]': a device needs a name"},
    {TOOL_PACKAGE,
     "devices = (\n  { name = \"a\"; path = \"x\"; },\n  { name = \"a\"; path = \"y\"; }\n);\n",
     "3: 'devices[1]': duplicate device name 'a'"},
    {TOOL_PACKAGE, "devices = ( { name = \"../a\"; path = \"x\"; } );\n",
     "1: 'devices[0].name': expected a name of letters"},
    {TOOL_PEER, "devices = ( { name = \"a\"; path = \"x\"; block_size = \"3KiB\"; } );\n",
     "1: 'devices[0].block_size': expected a power of two between 4096 and 16777216 bytes, such as "
     "65536 or \"64KiB\", got \"3KiB\""},
    {TOOL_PEER, "devices = ( { name = \"a\"; path = \"x\"; block_size = \"32MiB\"; } );\n",
     "1: 'devices[0].block_size': expected a power of two"},
    {TOOL_PEER, "devices = ( { name = \"a\"; path = \"x\"; block_size = 2048; } );\n",
     "1: 'devices[0].block_size': expected a power of two"},
    {TOOL_PEER,
     "devices = (\n { name = \"a\"; path = \"x\"; min_cycles = 9; max_cycles = 3; }\n);\n",
     "2: 'devices[0]': min_cycles (9) is greater than max_cycles (3)"},
    {TOOL_PEER, "devices = ( { name = \"a\"; path = \"x\"; expiry = \"1 s\"; } );\n",
     "1: 'devices[0].expiry': expected a duration"},
    {TOOL_PEER, "devices = ( { name = \"a\"; path = \"x\"; s3 = 1; } );\n",
     "1: 'devices[0].s3': expected a group { ... }"},
    /* port forwards */
    {TOOL_FORWARD,
     "forward = { port_forwards = ( { netns = \"ark0\"; internal_port = 70000; external_addr = "
     "\"127.0.0.1:1\"; } ); };\n",
     "1: 'forward.port_forwards[0].internal_port': expected an integer between 1 and 65535, got "
     "70000"},
    {TOOL_FORWARD,
     "forward = { port_forwards = ( { netns = \"ark0\"; internal_port = 80; external_addr = "
     "\":80\"; } ); };\n",
     "1: 'forward.port_forwards[0].external_addr': expected a host and port"},
    {TOOL_FORWARD,
     "forward = { port_forwards = ( { netns = \"ark0\"; internal_port = 80; protocol = \"sctp\"; "
     "external_addr = \"127.0.0.1:80\"; } ); };\n",
     "1: 'forward.port_forwards[0].protocol': expected tcp or udp, got \"sctp\""},
    {TOOL_FORWARD, "forward = { port_forwards = ( { netns = \"ark0\"; } ); };\n",
     "1: 'forward.port_forwards[0]': a port forward needs netns, internal_port and external_addr"},
};

/* Rules across settings: checked on the merged result, not tied to a line. */
static const struct bad_case invalid_cases[] = {
    {TOOL_PEER, "transport = { tls = { key = \"k.pem\"; }; };\n",
     "'transport.tls.certificate': a TLS certificate and its key go together: set both or neither"},
    {TOOL_PEER, "transport = { tls = { server_name = \"x\"; }; };\n",
     "'transport.tls.server_name': needs TLS: set a certificate, a CA or verify_peer"},
    {TOOL_PEER,
     "transport = { tls = { certificate = \"c\"; key = \"k\"; verify_peer = true; }; };\n",
     "'transport.tls.verify_peer': verifying clients needs a CA (transport.tls.ca)"},
    {TOOL_NAT, "nat = { namespace_interface_ip = \"172.100.101.2\"; };\n",
     "'nat.namespace_interface_ip': 172.100.101.2 is not in the /30 network of the gateway "
     "172.100.100.1"},
    {TOOL_NAT, "nat = { namespace_interface_ip = \"172.100.100.1\"; };\n",
     "'nat.namespace_interface_ip': the guest address is the same as the gateway (172.100.100.1)"},
    {TOOL_NAT, "nat = { host_veth_cidr = \"10.0.8.0/28\"; };\n",
     "'nat.namespace_count': 10 namespaces need more /30 networks than 10.0.8.0/28 holds"},
    {TOOL_PACKAGE, "devices = ( { name = \"a\"; base = \"x\"; } );\n",
     "'devices[0]': device 'a' has no path"},
    {TOOL_REGISTRY, "devices = ( { name = \"a\"; } );\n",
     "'devices[0]': device 'a' has no input (or path)"},
    {TOOL_SNAPSHOT, "devices = ( { name = \"a\"; input = \"i\"; } );\n",
     "'devices[0]': device 'a' has no output (or path)"},
    {TOOL_PEER,
     "devices = ( { name = \"a\"; path = \"p\"; overlay = \"o1 o2\"; state = \"s1\"; } );\n",
     "'devices[0]': device 'a': overlay and state must list as many files"},
    {TOOL_PEER, "devices = ( { name = \"a\"; path = \"p\"; s3 = { sync = true; }; } );\n",
     "'devices[0]': device 'a': s3.sync needs s3.endpoint and s3.bucket"},
    {TOOL_PACKAGE, "devices = ( );\n", "'devices': no devices are configured"},
    {TOOL_REGISTRY, "transport = { laddr = \"\"; };\n",
     "'transport.laddr': the registry needs an address to listen on"},
    {TOOL_TERMINATE, "transport = { raddr = \"\"; };\n",
     "'transport.raddr': terminate needs the address of a peer"},
    {TOOL_FORWARD,
     "forward = { port_forwards = ( { netns = \"a\"; internal_port = 1; external_addr = "
     "\"127.0.0.1:1\"; },"
     " { netns = \"b\"; internal_port = 2; external_addr = \"127.0.0.1:1\"; } ); };\n",
     "'forward.port_forwards': tcp 127.0.0.1:1 is forwarded twice"},
};

static void test_errors(void)
{
	char want[1024], msg[1024];
	struct config cfg;

	for (size_t i = 0; i < ARRAY_SIZE(bad_cases); i++) {
		const struct bad_case *c = &bad_cases[i];
		int r = load(c->tool, c->content, &cfg, msg, sizeof msg);

		snprintf(want, sizeof want, "%s/t.conf:%s", dir, c->message);
		ok(r == -EINVAL && str_startswith(msg, want), "error: %s", c->message);
		if (!str_startswith(msg, want))
			diag("got '%s'", msg);
		config_free(&cfg);
	}
	for (size_t i = 0; i < ARRAY_SIZE(invalid_cases); i++) {
		const struct bad_case *c = &invalid_cases[i];
		int r = load(c->tool, c->content, &cfg, msg, sizeof msg);

		snprintf(want, sizeof want, "%s/t.conf: %s", dir, c->message);
		ok(r == -EINVAL && str_eq(msg, want), "%s: %s", tool_name(c->tool), c->message);
		if (!str_eq(msg, want))
			diag("got '%s'", msg);
		config_free(&cfg);
	}

	/* A client may verify the server against the system's CAs. */
	is_int(load(TOOL_TERMINATE,
	            "transport = { tls = { certificate = \"c\"; key = \"k\"; verify_peer = true; }; };\n",
	            &cfg, msg, sizeof msg),
	       0, "terminate: verify_peer without a CA uses the system's CAs");
	config_free(&cfg);

	/* Files that cannot be read. */
	{
		struct config_error err = {0};
		char path[256], big[4096];
		FILE *f;

		snprintf(path, sizeof path, "%s/missing.conf", dir);
		config_init(&cfg, TOOL_NAT);
		is_int(config_load_file(&cfg, path, &err), -ENOENT, "a missing file");
		config_error_format(&err, msg, sizeof msg);
		snprintf(want, sizeof want, "%s: cannot read the file: No such file or directory",
		         path);
		is_str(msg, want, "names the file and the cause");
		config_free(&cfg);

		config_init(&cfg, TOOL_NAT);
		is_int(config_load_file(&cfg, dir, &err), -EINVAL, "a directory");
		config_error_format(&err, msg, sizeof msg);
		snprintf(want, sizeof want, "%s: not a regular file", dir);
		is_str(msg, want, "is refused");
		config_free(&cfg);

		snprintf(path, sizeof path, "%s/big.conf", dir);
		f = fopen(path, "we");
		memset(big, '#', sizeof big);
		big[sizeof big - 1] = '\n';
		for (int i = 0; i < 300; i++)
			fwrite(big, 1, sizeof big, f);
		fclose(f);
		config_init(&cfg, TOOL_NAT);
		is_int(config_load_file(&cfg, path, &err), -EFBIG, "a file over 1 MiB is refused");
		config_free(&cfg);
	}
}

static void test_include(void)
{
	struct config cfg;
	char msg[512];
	char *inc = write_file("inc.conf", "vm = { cpu_count = 3; };\n");

	is_int(load(TOOL_SNAPSHOT, "@include \"inc.conf\"\nlog_level = \"warn\";\n", &cfg, msg,
	            sizeof msg),
	       0, "@include relative to the file");
	is_int(cfg.vm.cpu_count, 3, "included value");
	config_free(&cfg);
	free(write_file("inc.conf", "vm = {\n  cpu_count = 0;\n};\n"));
	load(TOOL_SNAPSHOT, "@include \"inc.conf\"\n", &cfg, msg, sizeof msg);
	{
		char want[512];
		snprintf(want, sizeof want, "%s:2: 'vm.cpu_count'", inc);
		ok(str_startswith(msg, want), "an error in an included file names that file: %s",
		   msg);
	}
	config_free(&cfg);
	free(inc);
}

static __attribute__((noinline)) char *dump(const struct config *cfg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	config_dump(cfg, f);
	fclose(f);
	/* The first line names the source; compare the settings only. */
	return buf;
}

static void test_dump_roundtrip(void)
{
	for (enum drafter_tool t = 0; t < TOOL__MAX; t++) {
		for (int with_file = 0; with_file < 2; with_file++) {
			struct config a, b;
			char msg[1024];
			char *da, *db;
			int r = 0;

			if (with_file)
				r = load(t, full_file, &a, msg, sizeof msg);
			else
				config_init(&a, t);
			if (r < 0) {
				ok(0, "%s: the full file loads: %s", tool_name(t), msg);
				config_free(&a);
				continue;
			}
			da = dump(&a);
			r = load(t, da, &b, msg, sizeof msg);
			if (r < 0)
				diag("%s", msg);
			db = dump(&b);
			is_int(r, 0, "%s%s: the printed settings load", tool_name(t),
			       with_file ? " (full file)" : "");
			ok(str_eq(strchr(da, '\n'), strchr(db, '\n')),
			   "%s%s: and print the same again", tool_name(t),
			   with_file ? " (full file)" : "");
			free(da);
			free(db);
			config_free(&a);
			config_free(&b);
		}
	}
}

/* config_setup(): the lookup, overrides, and the legacy names reading no file. */
static void test_setup(void)
{
	struct config cfg;
	char cwd[4096];
	char *p;

	if (!getcwd(cwd, sizeof cwd))
		abort();
	if (chdir(dir) < 0)
		abort();
	free(write_file("drafter.conf",
	                "nat = { namespace_count = 7; namespace_prefix = \"dc\"; };\n"));
	free(write_file("other.conf", "nat = { namespace_count = 5; };\n"));
	p = write_file("tls.conf", "transport = { tls = { certificate = \"c.pem\"; }; };\n");

	{
		char *argv[] = {(char *)"nat", NULL};
		is_int(config_setup(&cfg, TOOL_NAT, 1, argv), 0, "setup reads ./drafter.conf");
		is_int(cfg.nat.namespace_count, 7, "value from ./drafter.conf");
		is_str(cfg.source, "drafter.conf", "source recorded");
		config_free(&cfg);
	}
	{
		char *argv[] = {(char *)"nat", (char *)"--namespace-count", (char *)"3", NULL};
		is_int(config_setup(&cfg, TOOL_NAT, 3, argv), 0, "an option");
		is_int(cfg.nat.namespace_count, 3, "overrides the file");
		is_str(cfg.nat.namespace_prefix, "dc", "other file values stay");
		config_free(&cfg);
	}
	{
		char *argv[] = {(char *)"nat", (char *)"-c", (char *)"other.conf", NULL};
		is_int(config_setup(&cfg, TOOL_NAT, 3, argv), 0, "-c FILE");
		is_int(cfg.nat.namespace_count, 5, "reads that file instead");
		is_str(cfg.nat.namespace_prefix, "ark", "and not ./drafter.conf");
		config_free(&cfg);
	}
	{
		char *argv[] = {(char *)"nat", (char *)"--config=other.conf", NULL};
		is_int(config_setup(&cfg, TOOL_NAT, 2, argv), 0, "--config=FILE");
		is_int(cfg.nat.namespace_count, 5, "reads that file");
		config_free(&cfg);
	}
	{
		char *argv[] = {(char *)"drafter-nat", NULL};
		is_int(config_setup(&cfg, TOOL_NAT, 1, argv), 0, "legacy name");
		is_int(cfg.nat.namespace_count, 10, "reads no config file");
		ok(cfg.source == NULL, "no source");
		config_free(&cfg);
	}
	{
		char *argv[] = {(char *)"peer", (char *)"-c", p, NULL};
		int saved = dup(2), devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
		int r;
		dup2(devnull, 2);
		r = config_setup(&cfg, TOOL_PEER, 3, argv);
		dup2(saved, 2);
		close(saved);
		close(devnull);
		is_int(r, -EINVAL, "a certificate without a key fails after merging");
		config_free(&cfg);
	}
	{
		char *argv[] = {(char *)"peer",      (char *)"-c",    p,
		                (char *)"--tls-key", (char *)"k.pem", NULL};
		is_int(config_setup(&cfg, TOOL_PEER, 5, argv), 0,
		       "the option completes the file's TLS settings");
		ok(cfg_tls_enabled(&cfg.transport.tls), "TLS on");
		config_free(&cfg);
	}
	{
		char *argv[] = {(char *)"nat", (char *)"-c", (char *)"missing.conf", NULL};
		int saved = dup(2), devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
		int r;
		dup2(devnull, 2);
		r = config_setup(&cfg, TOOL_NAT, 3, argv);
		dup2(saved, 2);
		close(saved);
		close(devnull);
		is_int(r, -ENOENT, "-c with a missing file fails");
		config_free(&cfg);
	}
	log_set_level(LOG_LVL_INFO);
	log_set_json(false);
	free(p);
	if (chdir(cwd) < 0)
		abort();
}

/*
 * Damaged files: bytes of the full file flipped, deleted or duplicated at
 * seeded random places. Every load must end in success or in a negative
 * errno with a message; under ASan this also finds memory errors.
 */
static void test_damaged(void)
{
	size_t len = strlen(full_file);
	char *buf = xcalloc(1, len * 2 + 1);
	int good = 0, bad = 0, broken = 0;
	unsigned seed = 12345;

	for (int i = 0; i < 1500; i++) {
		struct config cfg;
		char msg[1024];
		size_t n = len;
		int r;

		memcpy(buf, full_file, len + 1);
		for (int k = 0; k < 1 + i % 4; k++) {
			size_t at;
			seed = seed * 1103515245u + 12345u;
			at = (seed >> 8) % n;
			switch ((seed >> 4) % 3) {
			case 0:
				buf[at] = (char)(" \"{}();=,.#/-0129azAZ_\n"[(seed >> 16) % 24]);
				break;
			case 1:
				memmove(buf + at, buf + at + 1, n - at);
				n--;
				break;
			default:
				memmove(buf + at + 1, buf + at, n - at + 1);
				n++;
				break;
			}
		}
		buf[n] = '\0';
		r = load((enum drafter_tool)(i % TOOL__MAX), buf, &cfg, msg, sizeof msg);
		if (r == 0)
			good++;
		else if (r < 0 && msg[0])
			bad++;
		else
			broken++;
		config_free(&cfg);
	}
	free(buf);
	is_int(broken, 0,
	       "1500 damaged files: each loads or fails with a message (%d loaded, %d refused)",
	       good, bad);
	ok(bad > 1000, "most damaged files are refused");
}

int main(void)
{
	if (!mkdtemp(dir))
		return 99;
	test_defaults();
	test_full_file();
	test_errors();
	test_include();
	test_dump_roundtrip();
	test_setup();
	test_damaged();
	{
		char cmd[256];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			diag("could not remove %s", dir);
	}
	return done_testing();
}

/*
 * The in-memory plan every command works from. Both ways in fill these same
 * structures: the libconfig file (drafter <subcommand>, see drafter.conf(5))
 * and the original's Go-style flags (drafter-<legacy name>, see flags.h).
 * Nothing below the command layer knows which one was used.
 */
#ifndef DRAFTER_CONFIG_H
#define DRAFTER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum drafter_tool {
	TOOL_NAT,
	TOOL_FORWARD,
	TOOL_SNAPSHOT,
	TOOL_PACKAGE,
	TOOL_RUN,
	TOOL_REGISTRY,
	TOOL_PEER,
	TOOL_TERMINATE,
	TOOL__MAX,
};

/* Subcommand name ("nat") and legacy name ("drafter-nat") of a tool. */
const char *tool_name(enum drafter_tool tool);
const char *tool_legacy_name(enum drafter_tool tool);

/* S3 settings of a device (the original's FAQ); parsed and carried, see docs/. */
struct cfg_s3 {
	bool sync;
	char *access_key;
	char *secret_key;
	char *endpoint; /* host:port */
	char *bucket;
	bool secure;
	uint32_t concurrency;
};

/*
 * One device of a VM. Every tool uses the fields it needs: snapshot
 * input/output, package and run path, peer base/overlay/state, registry
 * input, terminate output. After config_setup() the field the tool reads is
 * set (a config file's "path" fills it when missing); unset strings are "".
 */
struct cfg_device {
	char *name;
	char *input;
	char *output;
	char *path;
	char *base;
	char *overlay;
	char *state;
	uint32_t block_size;    /* bytes, default 65536 */
	uint64_t expiry_ns;     /* volatility window, default 1s */
	uint32_t max_dirty_blocks; /* default 200 */
	uint32_t min_cycles;    /* default 5 */
	uint32_t max_cycles;    /* default 20 */
	uint64_t cycle_throttle_ns; /* default 500ms */
	bool make_migratable;   /* default true */
	bool shared;            /* default false */
	bool shared_base;       /* default false */
	struct cfg_s3 s3;
};

struct cfg_tls {
	char *certificate; /* PEM certificate of this side */
	char *key;         /* PEM private key of this side */
	char *ca;          /* CA bundle that verifies the peer */
	bool verify_peer;  /* server: require a client certificate; client: verify the server */
	char *server_name; /* name the server certificate must carry (client side) */
};

/* TLS is in use when a certificate or a CA is configured. */
bool cfg_tls_enabled(const struct cfg_tls *tls);

struct cfg_nat {
	char *host_interface;      /* empty: interface of the default route */
	char *host_veth_cidr;      /* "10.0.8.0/22" */
	char *namespace_veth_cidr; /* "10.0.15.0/24" */
	char *blocked_subnet_cidr; /* "10.0.15.0/24" */
	char *namespace_prefix;    /* "ark" */
	uint32_t namespace_count;  /* number of namespaces, default 10 */
	char *namespace_interface;         /* "tap0" */
	char *namespace_interface_gateway; /* "172.100.100.1" */
	char *namespace_interface_ip;      /* "172.100.100.2" */
	uint32_t namespace_interface_netmask; /* 30 */
	char *namespace_interface_mac;     /* "02:0e:d9:fd:68:3d" */
	bool allow_incoming_traffic;       /* true */
	bool ipv6;                         /* true: guest network also carries IPv6 */
	char *ipv6_prefix;                 /* ULA prefix of the guest networks */
	bool cleanup;                      /* remove an earlier run's leftovers and exit */
};

enum cfg_protocol { PROTO_TCP, PROTO_UDP };

struct cfg_port_forward {
	char *netns;
	uint16_t internal_port;
	enum cfg_protocol protocol;
	char *external_addr; /* "127.0.0.1:3333", "[::]:8080" */
};

struct cfg_forward {
	char *host_veth_cidr;
	struct cfg_port_forward *forwards;
	size_t n_forwards;
};

enum cfg_vmm { VMM_AUTO, VMM_QEMU, VMM_FIRECRACKER };

struct cfg_vm {
	enum cfg_vmm vmm;
	char *qemu_bin;        /* "qemu-system-x86_64" */
	char *firecracker_bin; /* "firecracker" */
	char *jailer_bin;      /* "jailer" */
	char *chroot_base_dir; /* "out/vms" */
	uint32_t uid, gid;
	int32_t numa_node;
	uint32_t cgroup_version; /* 2 */
	char *netns;             /* "ark0" */
	bool enable_input;       /* false */
	bool enable_output;      /* true */
	uint64_t resume_timeout_ns; /* 1m */
	uint64_t rescue_timeout_ns; /* runner 5s, peer 1m */
	uint32_t cpu_count;      /* 1 */
	uint32_t memory_size;    /* MiB, 1024 */
	char *cpu_template;      /* "None" */
	char *boot_args;
	char *interface;         /* "tap0" */
	char *mac;               /* "02:0e:d9:fd:68:3d" */
	uint32_t agent_vsock_port;    /* 26 */
	uint32_t liveness_vsock_port; /* 25 */
};

struct cfg_package {
	char *path;          /* "out/app.tar.zst" */
	bool extract;
	int32_t level;       /* zstd level, default 3 */
	uint32_t threads;    /* zstd workers, 0 = one per core */
};

enum cfg_exposure { EXPOSE_AUTO, EXPOSE_FUSE, EXPOSE_NBD, EXPOSE_FILE };

struct cfg_transport {
	char *laddr;          /* listen address; empty disables */
	char *raddr;          /* remote address; empty disables */
	uint32_t concurrency; /* 4096 */
	enum cfg_exposure exposure;
	char *mount_dir;      /* where FUSE mounts go, default "out/mnt" */
	bool json;            /* peer: migration summary as a JSON line on stdout */
	bool postcopy;        /* peer as a source: hand over at once, no pre-copy */
	uint64_t timeout_ns;  /* a silent migration peer fails the session after this, 30s; 0: never */
	struct cfg_tls tls;
};

struct config {
	enum drafter_tool tool;
	char *source;           /* config file that was read, NULL if none */
	int log_level;          /* enum log_level */
	bool log_json;
	struct cfg_device *devices;
	size_t n_devices;
	struct cfg_nat nat;
	struct cfg_forward forward;
	struct cfg_vm vm;
	struct cfg_package package;
	struct cfg_transport transport;
};

/*
 * Where a failure was found: file and line for the config file, the flag for
 * the command line, the offset for JSON values; message says what was expected.
 */
struct config_error {
	char file[512];
	int line;
	char key[128];
	char message[512];
};

/*
 * Fill CFG with the original's defaults for TOOL (including its default
 * devices); TOOL__MAX gives the defaults shared by every tool and no devices.
 * libconfig exports a config_init() of its own, so ours links under another
 * name; callers write config_init(cfg, tool) all the same.
 */
void drafter_config_init(struct config *cfg, enum drafter_tool tool);
#define config_init(cfg, tool) drafter_config_init((cfg), (tool))
void config_free(struct config *cfg);

/*
 * Finish and check the merged settings for cfg->tool: a device's "path"
 * stands in for the field the tool reads when that is not set (input for
 * registry, base for peer, output for snapshot and terminate), then required
 * fields and rules across settings are checked. -EINVAL with ERR filled.
 */
int config_validate(struct config *cfg, struct config_error *err);

/* Load a libconfig file over CFG. -EINVAL with ERR filled on a bad file. */
int config_load_file(struct config *cfg, const char *path, struct config_error *err);

/* Format ERR as the one line the user sees (without the program prefix). */
void config_error_format(const struct config_error *err, char *buf, size_t len);

/* Print the effective settings in drafter.conf syntax. */
void config_dump(const struct config *cfg, FILE *out);

/* The device called NAME, or NULL. */
struct cfg_device *config_find_device(const struct config *cfg, const char *name);

/*
 * The command layer's entry: set CFG up for TOOL from argv. argv[0] decides
 * the syntax: a legacy name ("drafter-packager") takes the original's flags;
 * otherwise the subcommand's options, "-c FILE", and the config file lookup
 * (-c, ./drafter.conf, /etc/drafter/drafter.conf). Prints help or the one
 * error line itself. Returns 0 to go on, 1 when help was printed (exit 0),
 * a negative errno on error (exit non-zero). On a usage error (unknown
 * option, bad value on the command line) it exits with status 2 itself, as
 * Go's flag package does. On success the log level and format are applied.
 * Every string in CFG is non-NULL (empty when unset).
 */
int config_setup(struct config *cfg, enum drafter_tool tool, int argc, char **argv);

#endif

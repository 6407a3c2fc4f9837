/*
 * The plan every command works from: the original's defaults per tool,
 * freeing, the rules that span several settings, the printed form of the
 * effective settings, and config_setup(), which puts the config file and the
 * command line together for a command.
 */
#include <config.h> /* autoconf's; "config.h" here would be core/config.h */

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/flags.h"
#include "core/log.h"
#include "core/schema.h"
#include "core/util.h"

static const char *const tool_names[TOOL__MAX] = {
    "nat", "forward", "snapshot", "package", "run", "registry", "peer", "terminate",
};
static const char *const tool_legacy_names[TOOL__MAX] = {
    "drafter-nat",    "drafter-forwarder", "drafter-snapshotter", "drafter-packager",
    "drafter-runner", "drafter-registry",  "drafter-peer",        "drafter-terminator",
};

const char *tool_name(enum drafter_tool tool)
{
	return (unsigned)tool < TOOL__MAX ? tool_names[tool] : "config";
}

const char *tool_legacy_name(enum drafter_tool tool)
{
	return (unsigned)tool < TOOL__MAX ? tool_legacy_names[tool] : "drafter";
}

bool cfg_tls_enabled(const struct cfg_tls *tls)
{
	/* verify_peer alone: a client verifying the server against the system's CAs. */
	return !str_empty(tls->certificate) || !str_empty(tls->ca) || tls->verify_peer;
}

/* The original's device names, in its order, and their file names. */
static const struct {
	const char *name;
	const char *file;
} known_devices[] = {
    {"state", "state.bin"},  {"memory", "memory.bin"},  {"kernel", "vmlinux"},
    {"disk", "rootfs.ext4"}, {"config", "config.json"}, {"oci", "oci.ext4"},
};

static char *joinpath(const char *dir, const char *file)
{
	char *s;

	if (asprintf(&s, "%s/%s", dir, file) < 0)
		abort();
	return s;
}

/* Replace the string at P (strings in struct config are never NULL). */
static void set_str(char **p, char *v)
{
	free(*p);
	*p = v;
}

void config_device_defaults(struct cfg_device *d)
{
	memset(d, 0, sizeof *d);
	for (size_t i = 0; i < schema_n_device_fields; i++)
		if (schema_device_fields[i].type == FT_STRING)
			*(char **)field_ptr(&schema_device_fields[i], d) = xstrdup("");
	d->block_size = 65536;
	d->expiry_ns = 1000000000ULL;
	d->max_dirty_blocks = 200;
	d->min_cycles = 5;
	d->max_cycles = 20;
	d->cycle_throttle_ns = 500000000ULL;
	d->make_migratable = true;
}

static void default_devices(struct config *cfg)
{
	size_t n = ARRAY_SIZE(known_devices);

	if (cfg->tool == TOOL_NAT || cfg->tool == TOOL_FORWARD || cfg->tool >= TOOL__MAX)
		return;
	cfg->devices = xcalloc(n, sizeof *cfg->devices);
	cfg->n_devices = n;
	for (size_t i = 0; i < n; i++) {
		struct cfg_device *d = &cfg->devices[i];
		const char *file = known_devices[i].file;
		bool oci = str_eq(known_devices[i].name, "oci");
		bool blueprint_input = oci || str_eq(known_devices[i].name, "kernel") ||
		                       str_eq(known_devices[i].name, "disk");

		config_device_defaults(d);
		set_str(&d->name, xstrdup(known_devices[i].name));
		switch (cfg->tool) {
		case TOOL_SNAPSHOT:
			if (blueprint_input)
				set_str(&d->input, joinpath("out/blueprint", file));
			set_str(&d->output, joinpath("out/package", file));
			break;
		case TOOL_PACKAGE:
		case TOOL_RUN:
			/* The original's default takes oci from the blueprint here. */
			set_str(&d->path, joinpath(oci ? "out/blueprint" : "out/package", file));
			break;
		case TOOL_REGISTRY:
			set_str(&d->input, joinpath(oci ? "out/blueprint" : "out/package", file));
			break;
		case TOOL_PEER:
			set_str(&d->base, joinpath("out/package", file));
			set_str(&d->overlay, joinpath("out/overlay", file));
			set_str(&d->state, joinpath("out/state", file));
			break;
		case TOOL_TERMINATE:
			set_str(&d->output, joinpath("out/package", file));
			break;
		default:
			break;
		}
	}
}

void drafter_config_init(struct config *cfg, enum drafter_tool tool)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->tool = tool;
	cfg->log_level = LOG_LVL_INFO;

	cfg->nat.host_interface = xstrdup("");
	cfg->nat.host_veth_cidr = xstrdup("10.0.8.0/22");
	cfg->nat.namespace_veth_cidr = xstrdup("10.0.15.0/24");
	cfg->nat.blocked_subnet_cidr = xstrdup("10.0.15.0/24");
	cfg->nat.namespace_prefix = xstrdup("ark");
	cfg->nat.namespace_count = 10;
	cfg->nat.namespace_interface = xstrdup("tap0");
	cfg->nat.namespace_interface_gateway = xstrdup("172.100.100.1");
	cfg->nat.namespace_interface_ip = xstrdup("172.100.100.2");
	cfg->nat.namespace_interface_netmask = 30;
	cfg->nat.namespace_interface_mac = xstrdup("02:0e:d9:fd:68:3d");
	cfg->nat.allow_incoming_traffic = true;
	cfg->nat.ipv6 = true;
	cfg->nat.ipv6_prefix = xstrdup("fd00:100:100::/64");

	cfg->forward.host_veth_cidr = xstrdup("10.0.8.0/22");
	cfg->forward.forwards = xcalloc(1, sizeof *cfg->forward.forwards);
	cfg->forward.n_forwards = 1;
	cfg->forward.forwards[0].netns = xstrdup("ark0");
	cfg->forward.forwards[0].internal_port = 6379;
	cfg->forward.forwards[0].protocol = PROTO_TCP;
	cfg->forward.forwards[0].external_addr = xstrdup("127.0.0.1:3333");

	cfg->vm.vmm = VMM_AUTO;
	cfg->vm.qemu_bin = xstrdup("qemu-system-x86_64");
	cfg->vm.firecracker_bin = xstrdup("firecracker");
	cfg->vm.jailer_bin = xstrdup("jailer");
	cfg->vm.chroot_base_dir = xstrdup("out/vms");
	cfg->vm.cgroup_version = 2;
	cfg->vm.netns = xstrdup("ark0");
	cfg->vm.enable_output = true;
	cfg->vm.resume_timeout_ns = 60000000000ULL;
	cfg->vm.rescue_timeout_ns = tool == TOOL_RUN ? 5000000000ULL : 60000000000ULL;
	cfg->vm.cpu_count = 1;
	cfg->vm.memory_size = 1024;
	cfg->vm.cpu_template = xstrdup("None");
	cfg->vm.boot_args = xstrdup(
	    "console=ttyS0 panic=1 pci=off modules=ext4 rootfstype=ext4 root=/dev/vda i8042.noaux "
	    "i8042.nomux i8042.nopnp i8042.dumbkbd rootflags=rw printk.devkmsg=on "
	    "printk_ratelimit=0 "
	    "printk_ratelimit_burst=0");
	cfg->vm.interface = xstrdup("tap0");
	cfg->vm.mac = xstrdup("02:0e:d9:fd:68:3d");
	cfg->vm.agent_vsock_port = 26;
	cfg->vm.liveness_vsock_port = 25;

	cfg->package.path = xstrdup("out/app.tar.zst");
	cfg->package.level = 3;

	cfg->transport.laddr = xstrdup(tool == TOOL_REGISTRY ? ":1600"
	                               : tool == TOOL_PEER   ? "localhost:1337"
	                                                     : "");
	cfg->transport.raddr =
	    xstrdup(tool == TOOL_PEER || tool == TOOL_TERMINATE ? "localhost:1337" : "");
	cfg->transport.concurrency = 4096;
	cfg->transport.exposure = EXPOSE_AUTO;
	cfg->transport.mount_dir = xstrdup("out/mnt");
	cfg->transport.timeout_ns = 30000000000ULL;
	cfg->transport.tls.certificate = xstrdup("");
	cfg->transport.tls.key = xstrdup("");
	cfg->transport.tls.ca = xstrdup("");
	cfg->transport.tls.server_name = xstrdup("");

	default_devices(cfg);
}

static void free_strings(const struct field *t, size_t n, void *obj)
{
	for (size_t i = 0; i < n; i++) {
		if (t[i].type == FT_STRING) {
			char **p = field_ptr(&t[i], obj);
			free(*p);
			*p = NULL;
		}
	}
}

void config_device_free(struct cfg_device *d)
{
	free_strings(schema_device_fields, schema_n_device_fields, d);
}

void config_free_devices(struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_devices; i++)
		config_device_free(&cfg->devices[i]);
	free(cfg->devices);
	cfg->devices = NULL;
	cfg->n_devices = 0;
}

void config_free_forwards(struct config *cfg)
{
	for (size_t i = 0; i < cfg->forward.n_forwards; i++)
		free_strings(schema_forward_fields, schema_n_forward_fields,
		             &cfg->forward.forwards[i]);
	free(cfg->forward.forwards);
	cfg->forward.forwards = NULL;
	cfg->forward.n_forwards = 0;
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < schema_n_settings; i++) {
		const struct field *f = &schema_settings[i].f;
		if (f->type == FT_STRING) {
			char **p = field_ptr(f, cfg);
			free(*p);
			*p = NULL;
		}
	}
	config_free_devices(cfg);
	config_free_forwards(cfg);
	free(cfg->source);
	cfg->source = NULL;
}

struct cfg_device *config_find_device(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_devices; i++)
		if (str_eq(cfg->devices[i].name, name))
			return &cfg->devices[i];
	return NULL;
}

void config_error_set(struct config_error *err, const char *file, int line, const char *key,
                      const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	snprintf(err->file, sizeof err->file, "%s", file ? file : "");
	err->line = line;
	snprintf(err->key, sizeof err->key, "%s", key ? key : "");
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
}

void config_error_format(const struct config_error *err, char *buf, size_t len)
{
	if (err->file[0] && err->line > 0 && err->key[0])
		snprintf(buf, len, "%s:%d: '%s': %s", err->file, err->line, err->key, err->message);
	else if (err->file[0] && err->line > 0)
		snprintf(buf, len, "%s:%d: %s", err->file, err->line, err->message);
	else if (err->file[0] && err->key[0])
		snprintf(buf, len, "%s: '%s': %s", err->file, err->key, err->message);
	else if (err->file[0])
		snprintf(buf, len, "%s: %s", err->file, err->message);
	else if (err->key[0])
		snprintf(buf, len, "'%s': %s", err->key, err->message);
	else
		snprintf(buf, len, "%s", err->message);
}

/* Validation of the merged settings. */

static size_t count_words(const char *s)
{
	size_t n = 0;
	bool in = false;

	for (; s && *s; s++) {
		bool sp = *s == ' ' || *s == '\t';
		if (!sp && !in)
			n++;
		in = !sp;
	}
	return n;
}

/* The field TOOL reads a device's file from, and its name in messages. */
static char **device_main_field(struct cfg_device *d, enum drafter_tool tool, const char **key)
{
	switch (tool) {
	case TOOL_SNAPSHOT:
	case TOOL_TERMINATE:
		*key = "output";
		return &d->output;
	case TOOL_PACKAGE:
	case TOOL_RUN:
		*key = "path";
		return &d->path;
	case TOOL_REGISTRY:
		*key = "input";
		return &d->input;
	case TOOL_PEER:
		*key = "base";
		return &d->base;
	default:
		*key = NULL;
		return NULL;
	}
}

static int validate_devices(struct config *cfg, struct config_error *err)
{
	const char *src = cfg->source;
	char key[64];

	if (cfg->n_devices > SCHEMA_MAX_DEVICES)
		return config_error_set(err, src, 0, "devices", "at most %d devices are supported",
		                        SCHEMA_MAX_DEVICES),
		       -EINVAL;
	if ((TOOLS_DEVICES & TOOL_BIT(cfg->tool)) && cfg->n_devices == 0)
		return config_error_set(err, src, 0, "devices", "no devices are configured"),
		       -EINVAL;

	for (size_t i = 0; i < cfg->n_devices; i++) {
		struct cfg_device *d = &cfg->devices[i];
		const char *fkey;
		char **main;

		snprintf(key, sizeof key, "devices[%zu]", i);
		if (str_empty(d->name) || field_check_format(FF_DEVNAME, d->name) < 0)
			return config_error_set(err, src, 0, key,
			                        "a device needs a name of letters, "
			                        "digits, '_', '.', '+' or '-'"),
			       -EINVAL;
		for (size_t j = 0; j < i; j++)
			if (str_eq(cfg->devices[j].name, d->name))
				return config_error_set(err, src, 0, key,
				                        "duplicate device name '%s'", d->name),
				       -EINVAL;
		if (d->min_cycles > d->max_cycles)
			return config_error_set(err, src, 0, key,
			                        "device '%s': min_cycles (%" PRIu32
			                        ") is greater than max_cycles (%" PRIu32 ")",
			                        d->name, d->min_cycles, d->max_cycles),
			       -EINVAL;
		if (d->s3.sync && (str_empty(d->s3.endpoint) || str_empty(d->s3.bucket)))
			return config_error_set(
			           err, src, 0, key,
			           "device '%s': s3.sync needs s3.endpoint and s3.bucket", d->name),
			       -EINVAL;

		main = device_main_field(d, cfg->tool, &fkey);
		if (!main)
			continue;
		/* One devices list can serve every tool: "path" stands in. */
		if (str_empty(*main) && !str_empty(d->path)) {
			free(*main);
			*main = xstrdup(d->path);
		}
		/*
		 * A peer that migrates in may keep a device nowhere (the
		 * original's --raddr without --path): it lives in a temporary
		 * file and its changes are discarded at exit.
		 */
		if (str_empty(*main) && cfg->tool == TOOL_PEER && !str_empty(cfg->transport.raddr) &&
		    str_empty(d->overlay))
			continue;
		if (str_empty(*main))
			return config_error_set(err, src, 0, key, "device '%s' has no %s%s",
			                        d->name, fkey,
			                        str_eq(fkey, "path") ? "" : " (or path)"),
			       -EINVAL;
		if (cfg->tool == TOOL_PEER && count_words(d->overlay) != count_words(d->state))
			return config_error_set(
			           err, src, 0, key,
			           "device '%s': overlay and state must list as many files",
			           d->name),
			       -EINVAL;
	}
	return 0;
}

static int validate_nat(struct config *cfg, struct config_error *err)
{
	struct cfg_nat *n = &cfg->nat;
	struct in_addr ip, gw;
	uint32_t mask, prefix = 0;
	const char *slash;

	if (inet_pton(AF_INET, n->namespace_interface_ip, &ip) != 1 ||
	    inet_pton(AF_INET, n->namespace_interface_gateway, &gw) != 1)
		return 0; /* reported by the field checks */
	if (n->namespace_interface_netmask > 32)
		return 0;
	mask = n->namespace_interface_netmask ? ~0u << (32 - n->namespace_interface_netmask) : 0;
	if (ip.s_addr == gw.s_addr)
		return config_error_set(err, cfg->source, 0, "nat.namespace_interface_ip",
		                        "the guest address is the same as the gateway (%s)",
		                        n->namespace_interface_gateway),
		       -EINVAL;
	if ((ntohl(ip.s_addr) & mask) != (ntohl(gw.s_addr) & mask))
		return config_error_set(err, cfg->source, 0, "nat.namespace_interface_ip",
		                        "%s is not in the /%" PRIu32 " network of the gateway %s",
		                        n->namespace_interface_ip, n->namespace_interface_netmask,
		                        n->namespace_interface_gateway),
		       -EINVAL;
	slash = strchr(n->host_veth_cidr, '/');
	if (slash && parse_u32(slash + 1, &prefix) == 0 && prefix <= 30 &&
	    n->namespace_count > (1ULL << (30 - prefix)))
		return config_error_set(err, cfg->source, 0, "nat.namespace_count",
		                        "%" PRIu32
		                        " namespaces need more /30 networks than %s holds",
		                        n->namespace_count, n->host_veth_cidr),
		       -EINVAL;
	if (slash && prefix > 30)
		return config_error_set(err, cfg->source, 0, "nat.host_veth_cidr",
		                        "%s is too small: each namespace needs a /30",
		                        n->host_veth_cidr),
		       -EINVAL;
	return 0;
}

static int validate_forward(struct config *cfg, struct config_error *err)
{
	struct cfg_forward *f = &cfg->forward;

	if (f->n_forwards > SCHEMA_MAX_FORWARDS)
		return config_error_set(err, cfg->source, 0, "forward.port_forwards",
		                        "at most %d port forwards are supported",
		                        SCHEMA_MAX_FORWARDS),
		       -EINVAL;
	for (size_t i = 0; i < f->n_forwards; i++)
		for (size_t j = 0; j < i; j++)
			if (f->forwards[i].protocol == f->forwards[j].protocol &&
			    str_eq(f->forwards[i].external_addr, f->forwards[j].external_addr))
				return config_error_set(
				           err, cfg->source, 0, "forward.port_forwards",
				           "%s %s is forwarded twice",
				           schema_protocol_name(f->forwards[i].protocol),
				           f->forwards[i].external_addr),
				       -EINVAL;
	return 0;
}

static int validate_tls(struct config *cfg, struct config_error *err)
{
	struct cfg_tls *t = &cfg->transport.tls;

	if (str_empty(t->certificate) != str_empty(t->key))
		return config_error_set(
		           err, cfg->source, 0,
		           str_empty(t->key) ? "transport.tls.key" : "transport.tls.certificate",
		           "a TLS certificate and its key go together: set both or neither"),
		       -EINVAL;
	if (!cfg_tls_enabled(t) && !str_empty(t->server_name))
		return config_error_set(err, cfg->source, 0, "transport.tls.server_name",
		                        "needs TLS: set a certificate, a CA or verify_peer"),
		       -EINVAL;
	/* A client may verify against the system's CAs; a server needs its own. */
	if (t->verify_peer && str_empty(t->ca) &&
	    (cfg->tool == TOOL_REGISTRY ||
	     (cfg->tool == TOOL_PEER && !str_empty(cfg->transport.laddr))))
		return config_error_set(err, cfg->source, 0, "transport.tls.verify_peer",
		                        "verifying clients needs a CA (transport.tls.ca)"),
		       -EINVAL;
	return 0;
}

static int validate_transport(struct config *cfg, struct config_error *err)
{
	if (cfg->tool == TOOL_REGISTRY && str_empty(cfg->transport.laddr))
		return config_error_set(err, cfg->source, 0, "transport.laddr",
		                        "the registry needs an address to listen on"),
		       -EINVAL;
	if (cfg->tool == TOOL_TERMINATE && str_empty(cfg->transport.raddr))
		return config_error_set(err, cfg->source, 0, "transport.raddr",
		                        "terminate needs the address of a peer"),
		       -EINVAL;
	/* The bounds of what a KEEPALIVE can announce (docs/protocol.md). */
	if (cfg->transport.timeout_ns &&
	    (cfg->transport.timeout_ns < 1000000000ULL || cfg->transport.timeout_ns > 86400000000000ULL))
		return config_error_set(err, cfg->source, 0, "transport.timeout",
		                        "expected 0 (never) or a duration from 1s to 24h"),
		       -EINVAL;
	return validate_tls(cfg, err);
}

/* Every single value against its schema entry (values set in code included). */
static int validate_fields(struct config *cfg, struct config_error *err)
{
	char want[256], got[256];

	for (size_t i = 0; i < schema_n_settings; i++) {
		const struct field *f = &schema_settings[i].f;
		const char *s;

		if (f->type != FT_STRING)
			continue;
		s = *(char **)field_ptr(f, cfg);
		if (field_check_format(f->fmt, s ? s : "") < 0) {
			field_expected(f, want, sizeof want);
			field_format_value(f, cfg, got, sizeof got);
			return config_error_set(err, cfg->source, 0, f->key, "expected %s, got %s",
			                        want, got),
			       -EINVAL;
		}
	}
	return 0;
}

int config_validate(struct config *cfg, struct config_error *err)
{
	int r;

	if ((r = validate_fields(cfg, err)) < 0)
		return r;
	if ((r = validate_devices(cfg, err)) < 0)
		return r;
	if ((r = validate_nat(cfg, err)) < 0)
		return r;
	if ((r = validate_forward(cfg, err)) < 0)
		return r;
	return validate_transport(cfg, err);
}

/* Printing the effective settings. */

static void dump_fields(const struct field *t, size_t n, const void *obj, const char *prefix,
                        const char *indent, FILE *out)
{
	char buf[SCHEMA_MAX_STRING * 2 + 16];
	size_t plen = strlen(prefix);

	for (size_t i = 0; i < n; i++) {
		const struct field *f = &t[i];
		if (!f->key || f->type == FT_IGNORED || !str_startswith(f->key, prefix) ||
		    strchr(f->key + plen, '.'))
			continue;
		field_format_value(f, obj, buf, sizeof buf);
		fprintf(out, "%s%s = %s;\n", indent, f->key + plen, buf);
	}
}

/* Keys whose default differs between commands. */
static bool tool_dependent(const char *key)
{
	return str_eq(key, "transport.laddr") || str_eq(key, "transport.raddr") ||
	       str_eq(key, "vm.rescue_timeout");
}

/* DEF: the defaults shared by every command, when printing for no command. */
static void dump_settings_group(const struct config *cfg, const struct config *def,
                                const char *prefix, const char *indent, FILE *out)
{
	char buf[SCHEMA_MAX_STRING * 2 + 16];
	size_t plen = strlen(prefix);

	for (size_t i = 0; i < schema_n_settings; i++) {
		const struct field *f = &schema_settings[i].f;
		bool dup = false;

		if (!str_startswith(f->key, prefix) || strchr(f->key + plen, '.') ||
		    f->type == FT_DEVICES || f->type == FT_FORWARDS)
			continue;
		for (size_t j = 0; j < i; j++)
			dup |= str_eq(schema_settings[j].f.key, f->key);
		if (dup)
			continue;
		field_format_value(f, cfg, buf, sizeof buf);
		if (def && tool_dependent(f->key)) {
			/* Left at the shared default: a comment, so that the output still
			 * gives each command its own default. */
			char dbuf[256];

			field_format_value(f, def, dbuf, sizeof dbuf);
			if (str_eq(buf, dbuf)) {
				fprintf(out, "%s#%s = %s;  # default depends on the command\n",
				        indent, f->key + plen, buf);
				continue;
			}
		}
		fprintf(out, "%s%s = %s;\n", indent, f->key + plen, buf);
	}
}

void config_dump(const struct config *cfg, FILE *out)
{
	static const char *const groups[] = {"nat", "forward", "vm", "package", "transport"};
	struct config defaults, *def = NULL;
	char prefix[32];

	if (cfg->tool >= TOOL__MAX) {
		config_init(&defaults, TOOL__MAX);
		def = &defaults;
	}

	fprintf(out, "# drafter %s: effective settings%s%s\n", tool_name(cfg->tool),
	        cfg->source ? " from " : " (defaults)", cfg->source ? cfg->source : "");
	dump_settings_group(cfg, def, "", "", out);
	for (size_t g = 0; g < ARRAY_SIZE(groups); g++) {
		fprintf(out, "\n%s = {\n", groups[g]);
		snprintf(prefix, sizeof prefix, "%s.", groups[g]);
		dump_settings_group(cfg, def, prefix, "  ", out);
		if (str_eq(groups[g], "forward")) {
			fprintf(out, "  port_forwards = (");
			for (size_t i = 0; i < cfg->forward.n_forwards; i++) {
				fprintf(out, "%s\n    {\n", i ? "," : "");
				dump_fields(schema_forward_fields, schema_n_forward_fields,
				            &cfg->forward.forwards[i], "", "      ", out);
				fprintf(out, "    }");
			}
			fprintf(out, "%s);\n", cfg->forward.n_forwards ? "\n  " : "");
		}
		if (str_eq(groups[g], "transport")) {
			fprintf(out, "  tls = {\n");
			dump_settings_group(cfg, def, "transport.tls.", "    ", out);
			fprintf(out, "  };\n");
		}
		fprintf(out, "};\n");
	}
	if (def)
		config_free(def);
	if (cfg->tool >= TOOL__MAX && cfg->n_devices == 0) {
		fprintf(out, "\n# devices: each command's default list (see --tool COMMAND)\n");
		return;
	}
	fprintf(out, "\ndevices = (");
	for (size_t i = 0; i < cfg->n_devices; i++) {
		fprintf(out, "%s\n  {\n", i ? "," : "");
		dump_fields(schema_device_fields, schema_n_device_fields, &cfg->devices[i], "",
		            "    ", out);
		fprintf(out, "    s3 = {\n");
		dump_fields(schema_device_fields, schema_n_device_fields, &cfg->devices[i], "s3.",
		            "      ", out);
		fprintf(out, "    };\n  }");
	}
	fprintf(out, "%s);\n", cfg->n_devices ? "\n" : "");
}

/* The command layer's entry. */

static const char *const default_paths[] = {"drafter.conf", "/etc/drafter/drafter.conf"};

static _Noreturn void usage_error(struct config *cfg, const char *help,
                                  const struct config_error *err)
{
	char msg[1024];

	config_error_format(err, msg, sizeof msg);
	log_error("%s", msg);
	fprintf(stderr, "Run '%s' for usage.\n", help);
	config_free(cfg);
	/* Go's flag package exits 2 on a usage error; so do both syntaxes. */
	exit(2);
}

int config_setup(struct config *cfg, enum drafter_tool tool, int argc, char **argv)
{
	struct config_error err = {0};
	const char *prog = argc > 0 && argv[0] ? argv[0] : tool_name(tool);
	const char *path = NULL;
	char help[128], msg[1024];
	bool legacy = str_startswith(prog, "drafter-");
	bool want_help = false;
	int r;

	config_init(cfg, tool);
	if (legacy) {
		snprintf(help, sizeof help, "%s -h", prog);
		r = flags_parse_go(cfg, argc, argv, &err);
		if (r == FLAGS_HELP) {
			flags_usage_go(tool, prog, stdout);
			return 1;
		}
		if (r < 0)
			usage_error(cfg, help, &err);
	} else {
		snprintf(help, sizeof help, "drafter %s --help", tool_name(tool));
		r = flags_scan(tool, argc, argv, &path, &want_help, &err);
		if (r < 0)
			usage_error(cfg, help, &err);
		if (want_help) {
			flags_usage_long(tool, stdout);
			return 1;
		}
		if (!path) {
			for (size_t i = 0; i < ARRAY_SIZE(default_paths); i++)
				if (access(default_paths[i], F_OK) == 0) {
					path = default_paths[i];
					break;
				}
		}
		if (path) {
			r = config_load_file(cfg, path, &err);
			if (r < 0) {
				config_error_format(&err, msg, sizeof msg);
				log_error("%s", msg);
				return r;
			}
		}
		r = flags_parse_long(cfg, argc, argv, &err);
		if (r < 0)
			usage_error(cfg, help, &err);
	}
	r = config_validate(cfg, &err);
	if (r < 0) {
		config_error_format(&err, msg, sizeof msg);
		log_error("%s", msg);
		return r;
	}
	log_set_level((enum log_level)cfg->log_level);
	log_set_json(cfg->log_json);
	return 0;
}

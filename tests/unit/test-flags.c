/*
 * Legacy flag parsing: every flag of every tool in the original's command
 * reference (name, Go type, default as "-h" shows it, a value that sets it,
 * a value that is refused), Go flag syntax, JSON values with their error
 * offsets, and the subcommand options.
 */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfgjson.h"
#include "core/config.h"
#include "core/flags.h"
#include "core/schema.h"
#include "core/util.h"
#include "tests/tap.h"

/* The original's reference (seeds 000, "Reference"): one row per flag. */
struct ref {
	enum drafter_tool tool;
	const char *flag;
	const char *gotype; /* "" for booleans */
	const char *def;    /* as "(default ...)" shows it; NULL: no default shown */
	const char *good;   /* a value to set */
	const char *expect; /* the value afterwards, as the config file writes it */
	const char *bad;    /* a refused value, or NULL when anything goes */
};

#define BOOT_ARGS                                                                                  \
	"console=ttyS0 panic=1 pci=off modules=ext4 rootfstype=ext4 root=/dev/vda i8042.noaux "    \
	"i8042.nomux i8042.nopnp i8042.dumbkbd rootflags=rw printk.devkmsg=on printk_ratelimit=0 " \
	"printk_ratelimit_burst=0"

/* Flags shared by the runner and the peer (and mostly the snapshotter). */
#define VM_FLAGS(T)                                                                                \
	{T, "cgroup-version", "int", "2", "1", "1", "3"},                                          \
	    {T, "chroot-base-dir", "chroot", "\"out/vms\"", "/srv/vms", "\"/srv/vms\"", ""},       \
	    {T, "enable-input", "", NULL, "true", "true", "yes"},                                  \
	    {T, "enable-output", "", "true", "false", "false", "no"},                              \
	    {T, "firecracker-bin", "string", "\"firecracker\"", "/opt/fc", "\"/opt/fc\"", ""},     \
	    {T, "gid", "int", NULL, "1000", "1000", "-1"},                                         \
	    {T, "jailer-bin", "string", "\"jailer\"", "/opt/jailer", "\"/opt/jailer\"", ""},       \
	    {T, "netns", "string", "\"ark0\"", "ark7", "\"ark7\"", "a/b"},                         \
	    {T, "numa-node", "int", NULL, "1", "1", "-1"},                                         \
	    {T, "resume-timeout", "duration", "1m0s", "30s", "\"30s\"", "30"},                     \
	{                                                                                          \
		T, "uid", "int", NULL, "1000", "1000", "x"                                         \
	}

static const struct ref refs[] = {
    {TOOL_NAT, "allow-incoming-traffic", "", "true", "false", "false", "maybe"},
    {TOOL_NAT, "blocked-subnet-cidr", "string", "\"10.0.15.0/24\"", "10.1.0.0/16",
     "\"10.1.0.0/16\"", "10.1.0.0/33"},
    {TOOL_NAT, "host-interface", "string", NULL, "eth0", "\"eth0\"", "a/b"},
    {TOOL_NAT, "host-veth-cidr", "string", "\"10.0.8.0/22\"", "10.2.0.0/22", "\"10.2.0.0/22\"",
     "10.2.0.0"},
    {TOOL_NAT, "namespace-interface", "string", "\"tap0\"", "tap1", "\"tap1\"",
     "a-name-longer-than-15"},
    {TOOL_NAT, "namespace-interface-gateway", "string", "\"172.100.100.1\"", "172.16.0.1",
     "\"172.16.0.1\"", "300.1.1.1"},
    {TOOL_NAT, "namespace-interface-ip", "string", "\"172.100.100.2\"", "172.16.0.2",
     "\"172.16.0.2\"", "x"},
    {TOOL_NAT, "namespace-interface-mac", "string", "\"02:0e:d9:fd:68:3d\"", "02:00:00:00:00:01",
     "\"02:00:00:00:00:01\"", "02:00:00:00:00"},
    {TOOL_NAT, "namespace-interface-netmask", "uint", "30", "24", "24", "33"},
    {TOOL_NAT, "namespace-prefix", "string", "\"ark\"", "vm", "\"vm\"", "has space"},
    {TOOL_NAT, "namespace-veth-cidr", "string", "\"10.0.15.0/24\"", "10.3.0.0/24",
     "\"10.3.0.0/24\"", "abc"},

    {TOOL_FORWARD, "host-veth-cidr", "string", "\"10.0.8.0/22\"", "10.9.0.0/22", "\"10.9.0.0/22\"",
     "10.9.0.0/99"},
    {TOOL_FORWARD, "port-forwards", "string", "", NULL, NULL, "["},

    {TOOL_SNAPSHOT, "agent-vsock-port", "int", "26", "1026", "1026", "x"},
    {TOOL_SNAPSHOT, "boot-args", "string", "\"" BOOT_ARGS "\"", "console=hvc0", "\"console=hvc0\"",
     NULL},
    {TOOL_SNAPSHOT, "cpu-count", "int", "1", "4", "4", "0"},
    {TOOL_SNAPSHOT, "cpu-template", "string", "\"None\"", "T2", "\"T2\"", ""},
    {TOOL_SNAPSHOT, "devices", "string", "", NULL, NULL, "{}"},
    {TOOL_SNAPSHOT, "interface", "string", "\"tap0\"", "tap3", "\"tap3\"", ""},
    {TOOL_SNAPSHOT, "liveness-vsock-port", "int", "25", "2500", "2500", "25x"},
    {TOOL_SNAPSHOT, "mac", "string", "\"02:0e:d9:fd:68:3d\"", "02:11:22:33:44:55",
     "\"02:11:22:33:44:55\"", "zz:11:22:33:44:55"},
    {TOOL_SNAPSHOT, "memory-size", "int", "1024", "2048", "2048", "0"},
    VM_FLAGS(TOOL_SNAPSHOT),

    {TOOL_PACKAGE, "devices", "string", "", NULL, NULL, "[{\"name\":1}]"},
    {TOOL_PACKAGE, "extract", "", NULL, "true", "true", "2"},
    {TOOL_PACKAGE, "package-path", "string", "\"out/app.tar.zst\"", "x.tar.zst", "\"x.tar.zst\"",
     ""},

    {TOOL_RUN, "devices", "string", "", NULL, NULL, "[1]"},
    VM_FLAGS(TOOL_RUN),
    {TOOL_RUN, "rescue-timeout", "duration", "5s", "1m30s", "\"1m30s\"", "soon"},

    {TOOL_REGISTRY, "concurrency", "int", "4096", "16", "16", "0"},
    {TOOL_REGISTRY, "devices", "string", "", NULL, NULL, "[]x"},
    {TOOL_REGISTRY, "laddr", "string", "\":1600\"", "127.0.0.1:0", "\"127.0.0.1:0\"", "nohostport"},

    {TOOL_PEER, "concurrency", "int", "4096", "8", "8", "-5"},
    {TOOL_PEER, "devices", "string", "", NULL, NULL, "[{\"name\":\"a\",\"blockSize\":1000}]"},
    {TOOL_PEER, "laddr", "string", "\"localhost:1337\"", "", "\"\"", "localhost:99999"},
    {TOOL_PEER, "raddr", "string", "\"localhost:1337\"", "[::1]:1337", "\"[::1]:1337\"",
     "::1:1337"},
    VM_FLAGS(TOOL_PEER),
    {TOOL_PEER, "rescue-timeout", "duration", "1m0s", "2m", "\"2m0s\"", "-1s"},

    {TOOL_TERMINATE, "devices", "string", "", NULL, NULL, "[{\"name\":\"a\",\"output\":false}]"},
    {TOOL_TERMINATE, "raddr", "string", "\"localhost:1337\"", "unix:/run/peer.sock",
     "\"unix:/run/peer.sock\"", "unix:"},
};

static const char *const legacy[TOOL__MAX] = {
    "drafter-nat",    "drafter-forwarder", "drafter-snapshotter", "drafter-packager",
    "drafter-runner", "drafter-registry",  "drafter-peer",        "drafter-terminator",
};

static __attribute__((noinline)) char *usage_of(enum drafter_tool tool)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	flags_usage_go(tool, legacy[tool], f);
	fclose(f);
	return buf;
}

/* Parse ARGS (NULL-terminated) under TOOL's legacy name into CFG. */
static int parse(struct config *cfg, enum drafter_tool tool, struct config_error *err, ...)
{
	char *argv[16];
	int argc = 0;
	va_list ap;

	argv[argc++] = (char *)legacy[tool];
	va_start(ap, err);
	for (char *a; (a = va_arg(ap, char *)) && argc < 15;)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	config_init(cfg, tool);
	memset(err, 0, sizeof *err);
	return flags_parse_go(cfg, argc, argv, err);
}

static int parse_long(struct config *cfg, enum drafter_tool tool, struct config_error *err, ...)
{
	char *argv[16];
	int argc = 0;
	va_list ap;

	argv[argc++] = (char *)tool_name(tool);
	va_start(ap, err);
	for (char *a; (a = va_arg(ap, char *)) && argc < 15;)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	config_init(cfg, tool);
	memset(err, 0, sizeof *err);
	return flags_parse_long(cfg, argc, argv, err);
}

static void value_of(const struct config *cfg, const char *flag, char *buf, size_t len)
{
	const struct setting *s = schema_find_flag(flag, cfg->tool, true);

	if (!s)
		s = schema_find_flag(flag, cfg->tool, false);
	if (!s) {
		snprintf(buf, len, "(no such flag)");
		return;
	}
	field_format_value(&s->f, cfg, buf, len);
}

static void test_reference(void)
{
	for (enum drafter_tool t = 0; t < TOOL__MAX; t++) {
		char *usage = usage_of(t);
		int want = 0, got = 0;
		char head[64];

		snprintf(head, sizeof head, "Usage of %s:\n", legacy[t]);
		ok(str_startswith(usage, head), "%s -h starts with '%s'", legacy[t],
		   "Usage of ...:");
		for (const char *p = usage; (p = strstr(p, "\n  -")); p++)
			got++;
		for (size_t i = 0; i < ARRAY_SIZE(refs); i++)
			want += refs[i].tool == t && refs[i].flag;
		is_int(got, want, "%s -h lists exactly the %d flags of the reference", legacy[t],
		       want);

		for (size_t i = 0; i < ARRAY_SIZE(refs); i++) {
			const struct ref *r = &refs[i];
			char line[256], def[1024], val[1024];
			struct config cfg;
			struct config_error err;
			const char *at;
			char *eol;

			if (r->tool != t || !r->flag)
				continue;
			snprintf(line, sizeof line, "\n  -%s%s%s\n    \t", r->flag,
			         *r->gotype ? " " : "", r->gotype);
			at = strstr(usage, line);
			ok(at != NULL, "%s: -%s is listed with type '%s'", legacy[t], r->flag,
			   r->gotype);
			if (r->def && *r->def) {
				snprintf(def, sizeof def, "(default %s)\n", r->def);
				eol = at ? strchr(at + strlen(line), '\n') : NULL;
				ok(at && eol &&
				       strncmp(eol + 1 - strlen(def), def, strlen(def)) == 0,
				   "%s: -%s defaults to %s", legacy[t], r->flag, r->def);
			} else if (!r->def) {
				eol = at ? strchr(at + strlen(line), '\n') : NULL;
				ok(at && eol && !memmem(at, (size_t)(eol - at), "(default", 8),
				   "%s: -%s shows no default", legacy[t], r->flag);
			}
			if (r->good) {
				char arg[512];
				snprintf(arg, sizeof arg, "-%s=%s", r->flag, r->good);
				is_int(parse(&cfg, t, &err, arg, NULL), 0, "%s %s is accepted",
				       legacy[t], arg);
				value_of(&cfg, r->flag, val, sizeof val);
				is_str(val, r->expect, "%s %s sets the value", legacy[t], arg);
				config_free(&cfg);
			}
			if (r->bad) {
				char arg[512];
				snprintf(arg, sizeof arg, "--%s=%s", r->flag, r->bad);
				is_int(parse(&cfg, t, &err, arg, NULL), -EINVAL, "%s %s is refused",
				       legacy[t], arg);
				ok(strstr(err.message, r->flag) != NULL,
				   "the error names the flag: %s", err.message);
				config_free(&cfg);
			}
		}
		free(usage);
	}
}

/* The default --devices strings of the reference, rebuilt from its rules. */
static void test_default_devices(void)
{
	static const char *const names[] = {"state", "memory", "kernel", "disk", "config", "oci"};
	static const char *const files[] = {"state.bin",   "memory.bin",  "vmlinux",
	                                    "rootfs.ext4", "config.json", "oci.ext4"};
	char want[8192];

	for (enum drafter_tool t = TOOL_SNAPSHOT; t < TOOL__MAX; t++) {
		struct config cfg;
		size_t o = 0;
		char *got;

		o += (size_t)snprintf(want + o, sizeof want - o, "[");
		for (int i = 0; i < 6; i++) {
			bool bp = i >= 2 && i != 4; /* kernel, disk, oci come from the blueprint */
			const char *pkgdir = i == 5 ? "out/blueprint" : "out/package";
			o += (size_t)snprintf(want + o, sizeof want - o, "%s{\"name\":\"%s\"",
			                      i ? "," : "", names[i]);
			switch (t) {
			case TOOL_SNAPSHOT:
				o += (size_t)snprintf(
				    want + o, sizeof want - o,
				    ",\"input\":\"%s%s\",\"output\":\"out/package/%s\"",
				    bp ? "out/blueprint/" : "", bp ? files[i] : "", files[i]);
				break;
			case TOOL_PACKAGE:
			case TOOL_RUN:
				o += (size_t)snprintf(want + o, sizeof want - o,
				                      ",\"path\":\"%s/%s\"", pkgdir, files[i]);
				break;
			case TOOL_REGISTRY:
				o += (size_t)snprintf(want + o, sizeof want - o,
				                      ",\"input\":\"%s/%s\",\"blockSize\":65536",
				                      pkgdir, files[i]);
				break;
			case TOOL_PEER:
				o += (size_t)snprintf(
				    want + o, sizeof want - o,
				    ",\"base\":\"out/package/%s\",\"overlay\":\"out/overlay/%s\","
				    "\"state\":\"out/state/%s\",\"blockSize\":65536,"
				    "\"expiry\":1000000000,\"maxDirtyBlocks\":200,\"minCycles\":5,"
				    "\"maxCycles\":20,\"cycleThrottle\":500000000",
				    files[i], files[i], files[i]);
				break;
			case TOOL_TERMINATE:
				o += (size_t)snprintf(want + o, sizeof want - o,
				                      ",\"output\":\"out/package/%s\"", files[i]);
				break;
			default:
				break;
			}
			o += (size_t)snprintf(want + o, sizeof want - o, "}");
		}
		snprintf(want + o, sizeof want - o, "]");
		config_init(&cfg, t);
		got = cfgjson_devices_string(&cfg);
		is_str(got, want, "%s: default --devices is the reference's", legacy[t]);
		free(got);

		/* The -h text shows it Go-quoted. */
		{
			char *usage = usage_of(t), *q = NULL;
			size_t ql = 0;
			FILE *f = open_memstream(&q, &ql);
			fputs("(default ", f);
			flags_go_quote(want, f);
			fputs(")\n", f);
			fclose(f);
			ok(strstr(usage, q) != NULL, "%s -h shows the default devices quoted",
			   legacy[t]);
			free(q);
			free(usage);
		}
		config_free(&cfg);
	}
	{
		struct config cfg;
		char *got;
		config_init(&cfg, TOOL_FORWARD);
		got = cfgjson_forwards_string(&cfg);
		is_str(got,
		       "[{\"netns\":\"ark0\",\"internalPort\":\"6379\",\"protocol\":\"tcp\","
		       "\"externalAddr\":\"127.0.0.1:3333\"}]",
		       "default --port-forwards is the reference's");
		free(got);
		config_free(&cfg);
	}
}

static void test_go_syntax(void)
{
	struct config cfg;
	struct config_error err;

	is_int(parse(&cfg, TOOL_PACKAGE, &err, "-package-path", "a.tar.zst", NULL), 0,
	       "-flag value");
	is_str(cfg.package.path, "a.tar.zst", "-flag value sets it");
	config_free(&cfg);
	is_int(parse(&cfg, TOOL_PACKAGE, &err, "--package-path", "b.tar.zst", NULL), 0,
	       "--flag value");
	is_str(cfg.package.path, "b.tar.zst", "--flag value sets it");
	config_free(&cfg);
	is_int(parse(&cfg, TOOL_PACKAGE, &err, "--package-path=c=d", NULL), 0, "--flag=value");
	is_str(cfg.package.path, "c=d", "only the first '=' splits");
	config_free(&cfg);

	is_int(parse(&cfg, TOOL_PACKAGE, &err, "-extract", "-package-path", "x", NULL), 0,
	       "a boolean does not take the next argument");
	ok(cfg.package.extract && str_eq(cfg.package.path, "x"), "-extract -package-path x");
	config_free(&cfg);
	is_int(parse(&cfg, TOOL_PACKAGE, &err, "-extract=false", NULL), 0, "-flag=false");
	ok(!cfg.package.extract, "-extract=false clears it");
	config_free(&cfg);
	for (const char *const *b =
	         (const char *const[]){"1", "t", "T", "TRUE", "true", "True", NULL};
	     *b; b++) {
		char arg[32];
		snprintf(arg, sizeof arg, "-extract=%s", *b);
		parse(&cfg, TOOL_PACKAGE, &err, arg, NULL);
		ok(cfg.package.extract, "Go boolean spelling %s", arg);
		config_free(&cfg);
	}
	is_int(parse(&cfg, TOOL_PACKAGE, &err, "-extract", "stray", NULL), -EINVAL,
	       "an argument after the flags is refused");
	is_str(err.message, "unexpected argument 'stray'", "and named");
	config_free(&cfg);

	is_int(parse(&cfg, TOOL_PACKAGE, &err, "--", NULL), 0, "-- ends the flags");
	config_free(&cfg);
	is_int(parse(&cfg, TOOL_PACKAGE, &err, "--", "-extract", NULL), -EINVAL,
	       "after --, a flag is an argument");
	config_free(&cfg);

	for (const char *const *h = (const char *const[]){"-h", "-help", "--help", "--h", NULL}; *h;
	     h++) {
		is_int(parse(&cfg, TOOL_NAT, &err, *h, NULL), FLAGS_HELP, "%s asks for help", *h);
		config_free(&cfg);
	}

	is_int(parse(&cfg, TOOL_NAT, &err, "-bogus", NULL), -EINVAL, "unknown flag");
	is_str(err.message, "flag provided but not defined: -bogus",
	       "Go's message for an unknown flag");
	config_free(&cfg);
	is_int(parse(&cfg, TOOL_NAT, &err, "-package-path", "x", NULL), -EINVAL,
	       "another tool's flag is unknown");
	config_free(&cfg);
	is_int(parse(&cfg, TOOL_PACKAGE, &err, "-package-path", NULL), -EINVAL, "missing value");
	is_str(err.message, "flag needs an argument: -package-path",
	       "Go's message for a missing value");
	config_free(&cfg);
	is_int(parse(&cfg, TOOL_PACKAGE, &err, "---extract", NULL), -EINVAL, "three dashes");
	is_str(err.message, "bad flag syntax: ---extract", "Go's message for bad syntax");
	config_free(&cfg);
	is_int(parse(&cfg, TOOL_SNAPSHOT, &err, "-cpu-count", "x", NULL), -EINVAL, "bad integer");
	is_str(err.message,
	       "invalid value \"x\" for flag -cpu-count: expected an integer between 1 and 255",
	       "bad value message");
	config_free(&cfg);
	is_int(parse(&cfg, TOOL_SNAPSHOT, &err, "-resume-timeout", "1h2m3.5s", NULL), 0,
	       "Go duration");
	is_int((long long)cfg.vm.resume_timeout_ns, 3723500000000LL, "1h2m3.5s in ns");
	config_free(&cfg);
	is_int(parse(&cfg, TOOL_SNAPSHOT, &err, "-resume-timeout", "0", NULL), 0, "duration 0");
	config_free(&cfg);
	is_int(parse(&cfg, TOOL_SNAPSHOT, &err, "-enable-output=false", "-enable-input", NULL), 0,
	       "two booleans");
	ok(cfg.vm.enable_input && !cfg.vm.enable_output, "both set");
	config_free(&cfg);
}

static void test_json(void)
{
	struct config cfg;
	struct config_error err;
	const char *peer =
	    "[{\"name\":\"memory\",\"base\":\"b\",\"overlay\":\"o1 o2\",\"state\":\"s1 s2\","
	    "\"blockSize\":1048576,\"expiry\":2000000000,\"maxDirtyBlocks\":10,\"minCycles\":1,"
	    "\"maxCycles\":3,\"cycleThrottle\":250000000,\"makeMigratable\":false,\"shared\":true,"
	    "\"sharedbase\":true,\"s3sync\":true,\"s3accesskey\":\"ak\",\"s3secretkey\":\"sk\","
	    "\"s3endpoint\":\"minio:9000\",\"s3bucket\":\"bkt\",\"s3secure\":true,"
	    "\"s3concurrency\":8,"
	    "\"skipsilo\":true}]";
	struct cfg_device *d;

	is_int(parse(&cfg, TOOL_PEER, &err, "--devices", peer, NULL), 0,
	       "peer devices, every field");
	is_int(cfg.n_devices, 1, "one device replaces the defaults");
	d = cfg.devices;
	is_str(d->name, "memory", "name");
	is_str(d->base, "b", "base");
	is_str(d->overlay, "o1 o2", "overlay layers");
	is_str(d->state, "s1 s2", "state files");
	is_int(d->block_size, 1048576, "blockSize");
	is_int((long long)d->expiry_ns, 2000000000LL, "expiry in ns");
	is_int(d->max_dirty_blocks, 10, "maxDirtyBlocks");
	is_int(d->min_cycles, 1, "minCycles");
	is_int(d->max_cycles, 3, "maxCycles");
	is_int((long long)d->cycle_throttle_ns, 250000000LL, "cycleThrottle in ns");
	ok(!d->make_migratable && d->shared && d->shared_base,
	   "makeMigratable, shared, sharedbase");
	ok(d->s3.sync && d->s3.secure, "s3sync, s3secure");
	is_str(d->s3.access_key, "ak", "s3accesskey");
	is_str(d->s3.secret_key, "sk", "s3secretkey");
	is_str(d->s3.endpoint, "minio:9000", "s3endpoint");
	is_str(d->s3.bucket, "bkt", "s3bucket");
	is_int(d->s3.concurrency, 8, "s3concurrency");
	config_free(&cfg);

	is_int(parse(&cfg, TOOL_PEER, &err, "--devices",
	             "[{\"name\":\"memory\",\"base\":\"b\",\"blockSize\":\"16KiB\"}]", NULL),
	       0, "blockSize as a size string");
	is_int(cfg.devices[0].block_size, 16384, "\"16KiB\" is 16384 bytes");
	config_free(&cfg);
	is_int(parse(&cfg, TOOL_PEER, &err, "--devices",
	             "[{\"name\":\"memory\",\"base\":\"b\",\"blockSize\":\"48KiB\"}]", NULL),
	       -EINVAL, "a size string that is not a power of two is refused");
	config_free(&cfg);

	is_int(parse(&cfg, TOOL_REGISTRY, &err, "-devices",
	             "[{\"NAME\":\"disk\",\"Input\":\"i\",\"BLOCKSIZE\":4096}]", NULL),
	       0, "field names match case-insensitively, as in Go");
	ok(cfg.n_devices == 1 && str_eq(cfg.devices[0].input, "i") &&
	       cfg.devices[0].block_size == 4096,
	   "and set the fields");
	config_free(&cfg);
	is_int(parse(&cfg, TOOL_RUN, &err, "-devices",
	             "[{\"name\":\"disk\",\"path\":\"p\",\"shared\":true}]", NULL),
	       0, "runner devices: name, path, shared");
	ok(cfg.devices[0].shared && str_eq(cfg.devices[0].path, "p"), "set");
	config_free(&cfg);
	is_int(parse(&cfg, TOOL_PEER, &err, "-devices",
	             "[{\"name\":\"d\",\"expiry\":\"2s\",\"cycleThrottle\":\"100ms\"}]", NULL),
	       0, "durations as strings too");
	ok(cfg.devices[0].expiry_ns == 2000000000ULL &&
	       cfg.devices[0].cycle_throttle_ns == 100000000ULL,
	   "parsed");
	config_free(&cfg);

	/* Malformed JSON: the offset of the fault. */
	is_int(
	    parse(&cfg, TOOL_PACKAGE, &err, "-devices", "[{\"name\":\"state\",\"path\":}]", NULL),
	    -EINVAL, "malformed JSON");
	is_str(err.message,
	       "invalid value for flag -devices: malformed JSON at offset 24: unexpected character",
	       "reported with its offset");
	config_free(&cfg);
	parse(&cfg, TOOL_PACKAGE, &err, "-devices", "[{\"name\":\"state\"", NULL);
	is_str(
	    err.message,
	    "invalid value for flag -devices: malformed JSON at offset 16: unexpected end of input",
	    "truncated JSON");
	config_free(&cfg);
	parse(&cfg, TOOL_PACKAGE, &err, "-devices", "[] []", NULL);
	ok(strstr(err.message, "malformed JSON at offset 3") != NULL, "trailing data: %s",
	   err.message);
	config_free(&cfg);
	parse(&cfg, TOOL_PACKAGE, &err, "-devices", "[{'name':'x'}]", NULL);
	ok(strstr(err.message, "malformed JSON at offset ") != NULL,
	   "single quotes are not JSON: %s", err.message);
	config_free(&cfg);

	/* Types and fields. */
	parse(&cfg, TOOL_PACKAGE, &err, "-devices", "[{\"name\":5}]", NULL);
	ok(strstr(err.message, "field \"name\" of device 1: expected") &&
	       strstr(err.message, "got 5"),
	   "wrong type names the field: %s", err.message);
	config_free(&cfg);
	parse(&cfg, TOOL_PEER, &err, "-devices", "[{\"name\":\"a\",\"blockSize\":\"big\"}]", NULL);
	ok(strstr(err.message, "field \"blockSize\" of device 1") != NULL, "%s", err.message);
	config_free(&cfg);
	parse(&cfg, TOOL_PEER, &err, "-devices", "[{\"name\":\"a\",\"blockSize\":3000}]", NULL);
	ok(strstr(err.message, "power of two") != NULL, "block size must be a power of two: %s",
	   err.message);
	config_free(&cfg);
	parse(&cfg, TOOL_PEER, &err, "-devices", "[{\"name\":\"a\",\"makeMigratable\":\"yes\"}]",
	      NULL);
	ok(strstr(err.message,
	          "field \"makeMigratable\" of device 1: expected true or false, got \"yes\"") !=
	       NULL,
	   "%s", err.message);
	config_free(&cfg);
	parse(&cfg, TOOL_PACKAGE, &err, "-devices", "[{\"name\":\"a\",\"pth\":\"x\"}]", NULL);
	ok(strstr(err.message, "device 1: unknown field \"pth\"") != NULL, "unknown field: %s",
	   err.message);
	config_free(&cfg);
	parse(&cfg, TOOL_PACKAGE, &err, "-devices", "[{\"path\":\"x\"}]", NULL);
	ok(strstr(err.message, "field \"name\" is missing") != NULL, "name required: %s",
	   err.message);
	config_free(&cfg);
	parse(&cfg, TOOL_PACKAGE, &err, "-devices", "[{\"name\":\"a\"},{\"name\":\"a\"}]", NULL);
	ok(strstr(err.message, "device 2: duplicate device name \"a\"") != NULL, "%s", err.message);
	config_free(&cfg);
	parse(&cfg, TOOL_PACKAGE, &err, "-devices", "[{\"name\":\"../x\"}]", NULL);
	ok(strstr(err.message, "field \"name\"") != NULL, "a name with '/' is refused: %s",
	   err.message);
	config_free(&cfg);
	parse(&cfg, TOOL_PEER, &err, "-devices",
	      "[{\"name\":\"a\",\"minCycles\":9,\"maxCycles\":2}]", NULL);
	ok(strstr(err.message, "minCycles (9) is greater than maxCycles (2)") != NULL, "%s",
	   err.message);
	config_free(&cfg);
	parse(&cfg, TOOL_PACKAGE, &err, "-devices", "{\"name\":\"a\"}", NULL);
	ok(strstr(err.message, "expected a JSON list of devices, got an object") != NULL, "%s",
	   err.message);
	config_free(&cfg);

	/* Port forwards. */
	is_int(parse(&cfg, TOOL_FORWARD, &err, "--port-forwards",
	             "[{\"netns\":\"ark1\",\"internalPort\":\"80\",\"protocol\":\"udp\","
	             "\"externalAddr\":\"[::1]:8080\"},"
	             "{\"netns\":\"ark2\",\"internalPort\":22,\"protocol\":\"tcp\","
	             "\"externalAddr\":\"192.168.1.2:2222\"}]",
	             NULL),
	       0, "two port forwards");
	ok(cfg.forward.n_forwards == 2 && str_eq(cfg.forward.forwards[0].netns, "ark1") &&
	       cfg.forward.forwards[0].internal_port == 80 &&
	       cfg.forward.forwards[0].protocol == PROTO_UDP &&
	       str_eq(cfg.forward.forwards[0].external_addr, "[::1]:8080") &&
	       cfg.forward.forwards[1].internal_port == 22,
	   "fields set (internalPort as string or number)");
	config_free(&cfg);
	parse(&cfg, TOOL_FORWARD, &err, "--port-forwards",
	      "[{\"netns\":\"ark0\",\"internalPort\":\"80\",\"protocol\":\"tcp\",\"externalAddr\":"
	      "\"0.0.0.0:80\"}]",
	      NULL);
	ok(cfg.forward.n_forwards == 1 && str_eq(cfg.forward.forwards[0].external_addr, "0.0.0.0:80"),
	   "wildcard address accepted (unlike the original)");
	config_free(&cfg);
	parse(&cfg, TOOL_FORWARD, &err, "--port-forwards",
	      "[{\"netns\":\"ark0\",\"internalPort\":\"80\",\"protocol\":\"tcp\",\"externalAddr\":"
	      "\":80\"}]",
	      NULL);
	ok(strstr(err.message, "field \"externalAddr\"") != NULL, "address without a host refused: %s",
	   err.message);
	config_free(&cfg);
	parse(&cfg, TOOL_FORWARD, &err, "--port-forwards",
	      "[{\"netns\":\"ark0\",\"internalPort\":\"0\",\"protocol\":\"tcp\",\"externalAddr\":"
	      "\"127.0.0.1:80\"}]",
	      NULL);
	ok(strstr(err.message, "field \"internalPort\"") != NULL, "port 0 refused: %s",
	   err.message);
	config_free(&cfg);
	parse(&cfg, TOOL_FORWARD, &err, "--port-forwards",
	      "[{\"netns\":\"ark0\",\"internalPort\":\"80\",\"protocol\":\"icmp\",\"externalAddr\":"
	      "\"127.0.0.1:80\"}]",
	      NULL);
	ok(strstr(err.message, "field \"protocol\"") != NULL, "protocol checked: %s", err.message);
	config_free(&cfg);
	parse(&cfg, TOOL_FORWARD, &err, "--port-forwards", "[{\"netns\":\"ark0\"}]", NULL);
	ok(strstr(err.message, "required") != NULL, "missing fields: %s", err.message);
	config_free(&cfg);
}

static void test_long_options(void)
{
	struct config cfg;
	struct config_error err;

	is_int(parse_long(&cfg, TOOL_NAT, &err, "--host-interface", "eth0", "--namespace-count=3",
	                  "--no-ipv6", "--ipv6-prefix", "fd01::/64", "--cleanup", NULL),
	       0, "nat options");
	ok(str_eq(cfg.nat.host_interface, "eth0") && cfg.nat.namespace_count == 3 &&
	       !cfg.nat.ipv6 && str_eq(cfg.nat.ipv6_prefix, "fd01::/64") && cfg.nat.cleanup,
	   "set");
	config_free(&cfg);
	is_int(parse_long(&cfg, TOOL_NAT, &err, "--ipv6=false", NULL), 0, "--bool=false");
	ok(!cfg.nat.ipv6, "cleared");
	config_free(&cfg);
	is_int(parse_long(&cfg, TOOL_NAT, &err, "--no-ipv6=true", NULL), -EINVAL,
	       "--no-x=value refused");
	config_free(&cfg);
	is_int(parse_long(&cfg, TOOL_PACKAGE, &err, "-x", "--level", "-5", "--threads", "4", NULL),
	       0, "package -x, --level, --threads");
	ok(cfg.package.extract && cfg.package.level == -5 && cfg.package.threads == 4, "set");
	config_free(&cfg);
	is_int(parse_long(&cfg, TOOL_PACKAGE, &err, "--level", "0", NULL), -EINVAL,
	       "level 0 refused");
	config_free(&cfg);
	is_int(parse_long(&cfg, TOOL_PACKAGE, &err, "--level", "20", NULL), -EINVAL,
	       "level 20 refused");
	config_free(&cfg);
	is_int(parse_long(&cfg, TOOL_PEER, &err, "--vmm", "qemu", "--qemu-bin", "/q", "--exposure",
	                  "file", "--mount-dir", "/m", "--laddr", ":0", "--raddr", "",
	                  "--concurrency", "7", NULL),
	       0, "peer options");
	ok(cfg.vm.vmm == VMM_QEMU && str_eq(cfg.vm.qemu_bin, "/q") &&
	       cfg.transport.exposure == EXPOSE_FILE && str_eq(cfg.transport.mount_dir, "/m") &&
	       str_eq(cfg.transport.laddr, ":0") && str_eq(cfg.transport.raddr, "") &&
	       cfg.transport.concurrency == 7,
	   "set");
	config_free(&cfg);
	is_int(parse_long(&cfg, TOOL_PEER, &err, "--tls-cert", "c.pem", "--tls-key", "k.pem",
	                  "--tls-ca", "ca.pem", "--tls-verify-peer", "--tls-server-name", "peer1",
	                  NULL),
	       0, "TLS options");
	ok(str_eq(cfg.transport.tls.certificate, "c.pem") &&
	       str_eq(cfg.transport.tls.key, "k.pem") && str_eq(cfg.transport.tls.ca, "ca.pem") &&
	       cfg.transport.tls.verify_peer && str_eq(cfg.transport.tls.server_name, "peer1") &&
	       cfg_tls_enabled(&cfg.transport.tls),
	   "set");
	config_free(&cfg);
	is_int(parse_long(&cfg, TOOL_RUN, &err, "--log-level", "debug", "--log-json", NULL), 0,
	       "log options");
	ok(cfg.log_level == 3 && cfg.log_json, "set");
	config_free(&cfg);
	is_int(parse_long(&cfg, TOOL_RUN, &err, "--vmm", "kvm", NULL), -EINVAL, "bad enum");
	is_str(err.message,
	       "invalid value \"kvm\" for option --vmm: expected one of auto, qemu, firecracker",
	       "message");
	config_free(&cfg);
	is_int(parse_long(&cfg, TOOL_PACKAGE, &err, "--vmm", "qemu", NULL), -EINVAL,
	       "an option of another tool is refused");
	is_str(err.message, "unknown option '--vmm' for 'drafter package'", "message");
	config_free(&cfg);
	is_int(parse_long(&cfg, TOOL_PACKAGE, &err, "--package-pth", "x", NULL), -EINVAL, "typo");
	is_str(
	    err.message,
	    "unknown option '--package-pth' for 'drafter package' (did you mean '--package-path'?)",
	    "did you mean");
	config_free(&cfg);
	is_int(parse_long(&cfg, TOOL_PACKAGE, &err, "-q", NULL), -EINVAL, "unknown short option");
	config_free(&cfg);
	is_int(parse_long(&cfg, TOOL_PACKAGE, &err, "file", NULL), -EINVAL, "stray argument");
	config_free(&cfg);
	is_int(parse_long(&cfg, TOOL_PACKAGE, &err, "--package-path", NULL), -EINVAL,
	       "missing value");
	is_str(err.message, "option '--package-path' needs a value", "message");
	config_free(&cfg);
	is_int(parse_long(&cfg, TOOL_PACKAGE, &err, "--devices",
	                  "[{\"name\":\"a\",\"path\":\"p\"}]", NULL),
	       0, "--devices JSON in the subcommand form");
	ok(cfg.n_devices == 1 && str_eq(cfg.devices[0].path, "p"), "set");
	config_free(&cfg);
	is_int(parse_long(&cfg, TOOL_SNAPSHOT, &err, "--resume-timeout", "90", NULL), -EINVAL,
	       "a duration needs a unit on the command line");
	config_free(&cfg);

	{
		const char *path = NULL;
		bool help = false;
		char *argv[] = {(char *)"nat", (char *)"--bogus", (char *)"-c", (char *)"f.conf",
		                NULL};
		char *argv2[] = {(char *)"nat", (char *)"--bogus", (char *)"--help", NULL};
		char *argv3[] = {(char *)"nat", (char *)"--boot-args", (char *)"-c", NULL};

		memset(&err, 0, sizeof err);
		is_int(flags_scan(TOOL_NAT, 4, argv, &path, &help, &err), -EINVAL,
		       "the first pass finds unknown options too");
		help = false;
		is_int(flags_scan(TOOL_NAT, 3, argv2, &path, &help, &err), 0, "--help wins");
		ok(help, "help asked for");
		path = NULL;
		help = false;
		is_int(flags_scan(TOOL_SNAPSHOT, 3, argv3, &path, &help, &err), 0,
		       "an option's value is not taken for -c");
		ok(path == NULL, "no config file");
	}
}

/*
 * The command lines of the original's tutorial (README, "Tutorial"), with
 * their multi-line JSON, parse and validate unchanged.
 */
static void test_tutorial(void)
{
	static const char snapshot_devices[] =
	    "[\n  {\n    \"name\": \"state\",\n    \"output\": \"out/package/state.bin\"\n  },\n"
	    "  {\n    \"name\": \"memory\",\n    \"output\": \"out/package/memory.bin\"\n  },\n"
	    "  {\n    \"name\": \"kernel\",\n    \"input\": \"out/blueprint/vmlinux\",\n"
	    "    \"output\": \"out/package/vmlinux\"\n  },\n"
	    "  {\n    \"name\": \"disk\",\n    \"input\": \"out/blueprint/rootfs.ext4\",\n"
	    "    \"output\": \"out/package/rootfs.ext4\"\n  },\n"
	    "  {\n    \"name\": \"config\",\n    \"output\": \"out/package/config.json\"\n  },\n"
	    "  {\n    \"name\": \"oci\",\n    \"input\": \"out/blueprint/oci.ext4\",\n"
	    "    \"output\": \"out/package/oci.ext4\"\n  }\n]";
	static const char path_devices[] =
	    "[\n  {\n    \"name\": \"state\",\n    \"path\": \"out/package/state.bin\"\n  },\n"
	    "  {\n    \"name\": \"memory\",\n    \"path\": \"out/package/memory.bin\"\n  },\n"
	    "  {\n    \"name\": \"kernel\",\n    \"path\": \"out/package/vmlinux\"\n  },\n"
	    "  {\n    \"name\": \"disk\",\n    \"path\": \"out/package/rootfs.ext4\"\n  },\n"
	    "  {\n    \"name\": \"config\",\n    \"path\": \"out/package/config.json\"\n  },\n"
	    "  {\n    \"name\": \"oci\",\n    \"path\": \"out/blueprint/oci.ext4\"\n  }\n]";
	static const char forwards[] =
	    "[\n  {\n    \"netns\": \"ark0\",\n    \"internalPort\": \"6379\",\n"
	    "    \"protocol\": \"tcp\",\n    \"externalAddr\": \"127.0.0.1:3333\"\n  },\n"
	    "  {\n    \"netns\": \"ark0\",\n    \"internalPort\": \"6379\",\n"
	    "    \"protocol\": \"tcp\",\n    \"externalAddr\": \"192.168.12.31:3333\"\n  }\n]";
	struct config_error err;
	struct config cfg;

	is_int(parse(&cfg, TOOL_NAT, &err, "--host-interface", "wlp0s20f3", NULL), 0,
	       "tutorial: drafter-nat --host-interface wlp0s20f3");
	is_int(config_validate(&cfg, &err), 0, "validates");
	config_free(&cfg);

	is_int(parse(&cfg, TOOL_SNAPSHOT, &err, "--netns", "ark0", "--devices", snapshot_devices,
	             NULL),
	       0, "tutorial: drafter-snapshotter --netns ark0 --devices '[...]'");
	is_int(config_validate(&cfg, &err), 0, "validates");
	ok(cfg.n_devices == 6 && str_eq(cfg.devices[3].input, "out/blueprint/rootfs.ext4") &&
	       str_eq(cfg.devices[5].output, "out/package/oci.ext4") &&
	       str_eq(cfg.devices[0].input, ""),
	   "six devices with inputs and outputs");
	config_free(&cfg);

	is_int(parse(&cfg, TOOL_PACKAGE, &err, "--package-path", "out/valkey.tar.zst", "--devices",
	             path_devices, NULL),
	       0, "tutorial: drafter-packager --package-path out/valkey.tar.zst --devices '[...]'");
	is_int(config_validate(&cfg, &err), 0, "validates");
	ok(cfg.n_devices == 6 && !cfg.package.extract &&
	       str_eq(cfg.package.path, "out/valkey.tar.zst") &&
	       str_eq(cfg.devices[5].path, "out/blueprint/oci.ext4"),
	   "package path and devices");
	config_free(&cfg);

	is_int(parse(&cfg, TOOL_PACKAGE, &err, "--package-path", "out/drafteros.tar.zst",
	             "--extract", "--devices", path_devices, NULL),
	       0, "tutorial: drafter-packager --package-path ... --extract --devices '[...]'");
	ok(cfg.package.extract, "extract set");
	config_free(&cfg);

	is_int(parse(&cfg, TOOL_RUN, &err, "--netns", "ark0", "--devices", path_devices, NULL), 0,
	       "tutorial: drafter-runner --netns ark0 --devices '[...]'");
	is_int(config_validate(&cfg, &err), 0, "validates");
	config_free(&cfg);

	is_int(parse(&cfg, TOOL_FORWARD, &err, "--port-forwards", forwards, NULL), 0,
	       "tutorial: drafter-forwarder --port-forwards '[...]' (two forwards)");
	is_int(config_validate(&cfg, &err), 0, "validates");
	ok(cfg.forward.n_forwards == 2 &&
	       str_eq(cfg.forward.forwards[1].external_addr, "192.168.12.31:3333") &&
	       cfg.forward.forwards[1].internal_port == 6379,
	   "both forwards");
	config_free(&cfg);
}

/* Guards for later edits of the schema table. */
static void test_schema_table(void)
{
	int problems = 0;

	for (size_t i = 0; i < schema_n_settings; i++) {
		const struct setting *s = &schema_settings[i];
		bool is_bool = s->f.type == FT_BOOL;

		if (!s->f.key || !s->help || !*s->help) {
			problems++;
			diag("entry %zu: no key or help", i);
		}
		if (s->legacy && (!s->gotype || (is_bool != !*s->gotype))) {
			problems++;
			diag("%s: legacy flag without a Go type word", s->f.key);
		}
		if (s->legacy & ~s->tools) {
			problems++;
			diag("%s: a legacy flag that the subcommand lacks", s->f.key);
		}
		if (s->tools && !is_bool && !s->arg) {
			problems++;
			diag("%s: option without a placeholder", s->f.key);
		}
		if (s->f.key && !schema_find_key(s->f.key))
			problems++;
		for (size_t j = 0; j < i; j++)
			if (s->flag && schema_settings[j].flag &&
			    str_eq(s->flag, schema_settings[j].flag) &&
			    ((s->tools & schema_settings[j].tools) ||
			     (s->legacy & schema_settings[j].legacy))) {
				problems++;
				diag("--%s defined twice for one tool", s->flag);
			}
	}
	is_int(problems, 0, "the schema table is consistent (%zu settings)", schema_n_settings);
}

/* Damaged --devices values: each is accepted or refused with a message. */
static void test_damaged_json(void)
{
	struct config def;
	char *good, *buf;
	size_t len;
	int accepted = 0, refused = 0, broken = 0;
	unsigned seed = 4242;

	config_init(&def, TOOL_PEER);
	good = cfgjson_devices_string(&def);
	config_free(&def);
	len = strlen(good);
	buf = xcalloc(1, len + 1);
	for (int i = 0; i < 2000; i++) {
		struct config cfg;
		struct config_error err;
		char arg[8192];
		int r;

		memcpy(buf, good, len + 1);
		for (int k = 0; k < 1 + i % 3; k++) {
			seed = seed * 1103515245u + 12345u;
			buf[(seed >> 8) % len] = "\"{}[],:0-9a\\ tfn."[(seed >> 20) % 18];
		}
		snprintf(arg, sizeof arg, "-devices=%s", buf);
		r = parse(&cfg, TOOL_PEER, &err, arg, NULL);
		if (r == 0)
			accepted++;
		else if (r == -EINVAL && err.message[0])
			refused++;
		else
			broken++;
		config_free(&cfg);
	}
	free(buf);
	free(good);
	is_int(broken, 0,
	       "2000 damaged -devices values: accepted or refused with a message (%d, %d)",
	       accepted, refused);
}

int main(void)
{
	test_reference();
	test_default_devices();
	test_go_syntax();
	test_json();
	test_long_options();
	test_tutorial();
	test_schema_table();
	test_damaged_json();
	return done_testing();
}

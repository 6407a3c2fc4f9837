/*
 * The settings schema: one table entry per setting of struct config, shared
 * by the config file loader (conffile.c), the command-line parsers (flags.c),
 * the JSON values of the legacy flags (json.c), validation and config_dump().
 * A setting is defined once here, so a key, a flag and its checks can never
 * drift apart.
 */
#ifndef DRAFTER_SCHEMA_H
#define DRAFTER_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/util.h"

enum field_type {
	FT_STRING,
	FT_BOOL,
	FT_U32,
	FT_I32,
	FT_U16,
	FT_DURATION, /* uint64_t nanoseconds */
	FT_SIZE32,   /* uint32_t bytes, "64KiB" accepted */
	FT_VMM,      /* enum cfg_vmm */
	FT_EXPOSURE, /* enum cfg_exposure */
	FT_LOGLEVEL, /* int (enum log_level) */
	FT_PROTOCOL, /* enum cfg_protocol */
	FT_IGNORED,  /* accepted and dropped (the original's skipsilo) */
	FT_DEVICES,  /* the devices list (JSON on the command line) */
	FT_FORWARDS, /* the port forwards list (JSON on the command line) */
};

/* What a string value must look like. */
enum field_format {
	FF_ANY,
	FF_NONEMPTY,
	FF_IFNAME,     /* network interface name */
	FF_IFNAME_OPT, /* same, or empty */
	FF_CIDR4,      /* "10.0.8.0/22" */
	FF_CIDR6_OPT,  /* "fd00::/64" or empty */
	FF_IP4,        /* "172.100.100.1" */
	FF_MAC,        /* "02:0e:d9:fd:68:3d" */
	FF_NSPREFIX,   /* namespace prefix: short, [A-Za-z0-9_.-] */
	FF_ADDR_OPT,   /* transport address "host:port", ":port", "unix:PATH" or empty */
	FF_HOSTPORT,   /* "127.0.0.1:3333", "[::1]:80": an explicit host and port */
	FF_DEVNAME,    /* device name: a tar entry and a file name */
	FF_PATHS,      /* one path or several separated by spaces (overlay layers) */
	FF_NONZERO,    /* integers: 0 is not allowed (zstd level) */
	FF_POW2,       /* integers: a power of two (block size) */
};

/* One value: where it lives in its struct and what it accepts. */
struct field {
	const char *key;  /* name in the config file ("cpu_count", "vm.cpu_count") */
	const char *json; /* name in the legacy JSON values, NULL if none */
	enum field_type type;
	enum field_format fmt;
	size_t offset;
	int64_t min, max; /* integer range; durations: max 0 = unlimited */
};

/* A top-level setting of struct config, with its command-line form. */
struct setting {
	struct field f;     /* f.key is the full path: "nat.host_interface" */
	const char *flag;   /* option name ("host-interface"); NULL: file only */
	unsigned legacy;    /* bit per tool: flag of the original's tool */
	unsigned tools;     /* bit per tool: option of "drafter <tool>" */
	const char *gotype; /* type word in the Go-style usage ("string", "int", ...) */
	const char *arg;    /* placeholder in "drafter <tool> --help" */
	const char *help;
};

#define TOOL_BIT(t) (1u << (t))
#define TOOLS_ALL   ((1u << TOOL__MAX) - 1)
#define TOOLS_DEVICES                                                                              \
	(TOOL_BIT(TOOL_SNAPSHOT) | TOOL_BIT(TOOL_PACKAGE) | TOOL_BIT(TOOL_RUN) |                   \
	 TOOL_BIT(TOOL_REGISTRY) | TOOL_BIT(TOOL_PEER) | TOOL_BIT(TOOL_TERMINATE))

/* Limits on what a file or a flag can make drafter allocate. */
#define SCHEMA_MAX_DEVICES  64
#define SCHEMA_MAX_FORWARDS 1024
#define SCHEMA_MAX_STRING   4096
#define SCHEMA_MAX_JSON     (1024 * 1024)

extern const struct setting schema_settings[];
extern const size_t schema_n_settings;
extern const struct field schema_device_fields[];
extern const size_t schema_n_device_fields;
extern const struct field schema_forward_fields[];
extern const size_t schema_n_forward_fields;

/* Address of a field's value inside OBJ. */
static inline void *field_ptr(const struct field *f, void *obj)
{
	return (char *)obj + f->offset;
}

/*
 * Set a field from text (a command-line value, a JSON or config string).
 * GO_DURATION: durations need a unit, except "0" (Go's time.ParseDuration).
 * On failure returns -EINVAL and writes what was expected into WHY.
 */
int field_set_text(const struct field *f, void *obj, const char *text, bool go_duration, char *why,
                   size_t whylen);
/* Set an integer, boolean field from a number (config file, JSON). */
int field_set_int(const struct field *f, void *obj, int64_t v, char *why, size_t whylen);
int field_set_bool(const struct field *f, void *obj, bool v, char *why, size_t whylen);
/* Describe what the field accepts ("an integer between 1 and 256"). */
void field_expected(const struct field *f, char *buf, size_t len);
/* Check a string against a format; 0 or -EINVAL. */
int field_check_format(enum field_format fmt, const char *s);
/* The value as the config file writes it ("\"tap0\"", "30", "true", "\"1m0s\""). */
void field_format_value(const struct field *f, const void *obj, char *buf, size_t len);
/* True when the value is the zero value of its type (Go hides such defaults). */
bool field_is_zero(const struct field *f, const void *obj);

/* Setting lookups. */
const struct setting *schema_find_key(const char *key);
const struct setting *schema_find_flag(const char *flag, enum drafter_tool tool, bool legacy);
const struct field *schema_find_device_field(const char *key, bool json);
const struct field *schema_find_forward_field(const char *key, bool json);

/* Levenshtein distance, for "did you mean". */
unsigned schema_distance(const char *a, const char *b);

/* Helpers of the config module shared with the loaders. */
void config_error_set(struct config_error *err, const char *file, int line, const char *key,
                      const char *fmt, ...) _printf_(5, 6);
void config_device_defaults(struct cfg_device *d);
void config_device_free(struct cfg_device *d);
void config_free_devices(struct config *cfg);
void config_free_forwards(struct config *cfg);

/* Enum names. */
const char *schema_vmm_name(enum cfg_vmm v);
const char *schema_exposure_name(enum cfg_exposure e);
const char *schema_protocol_name(enum cfg_protocol p);
const char *schema_log_level_name(int level);

#endif

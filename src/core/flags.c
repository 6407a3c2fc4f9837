/*
 * The two command-line syntaxes. Under a legacy name drafter parses the way
 * Go's flag package does, so the original's command lines and scripts keep
 * working; as "drafter <tool>" it takes GNU-style long options that override
 * single values of the config file. Which flags exist, and how their values
 * are checked, comes from the schema.
 */
#include <config.h> /* autoconf's; "config.h" here would be core/config.h */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfgjson.h"
#include "core/config.h"
#include "core/flags.h"
#include "core/schema.h"
#include "core/util.h"

static const char *const tool_descriptions[TOOL__MAX] = {
    "Create network namespaces that give VMs NAT'd network access; remove them on exit.",
    "Forward host addresses and ports to ports of guests in network namespaces.",
    "Boot a blueprint, wait for the guest to come up, and snapshot it into a package.",
    "Archive the devices of a package into one .tar.zst file, or extract them again.",
    "Resume a VM from a package; on exit suspend it and write its state back.",
    "Serve the devices of a package to peers over the network.",
    "Start a VM from a registry, another peer or local files, and serve it for migration.",
    "Pull the devices of a running VM from a peer into local files.",
};

static int apply_value(struct config *cfg, const struct setting *s, const char *text,
                       const char *dash, struct config_error *err)
{
	const char *kind = dash[1] ? "option" : "flag";
	char why[512];
	int r;

	if (s->f.type == FT_DEVICES) {
		struct cfg_device *devs;
		size_t n;

		r = cfgjson_parse_devices(text, &devs, &n, why, sizeof why);
		if (r == 0) {
			config_free_devices(cfg);
			cfg->devices = devs;
			cfg->n_devices = n;
		}
	} else if (s->f.type == FT_FORWARDS) {
		struct cfg_port_forward *fw;
		size_t n;

		r = cfgjson_parse_forwards(text, &fw, &n, why, sizeof why);
		if (r == 0) {
			config_free_forwards(cfg);
			cfg->forward.forwards = fw;
			cfg->forward.n_forwards = n;
		}
	} else {
		r = field_set_text(&s->f, cfg, text, true, why, sizeof why);
		if (r < 0) {
			config_error_set(err, NULL, 0, NULL,
			                 "invalid value \"%.200s\" for %s %s%s: expected %s", text,
			                 kind, dash, s->flag, why);
			return r;
		}
		return 0;
	}
	if (r < 0)
		config_error_set(err, NULL, 0, NULL, "invalid value for %s %s%s: %s", kind, dash,
		                 s->flag, why);
	return r;
}

int flags_parse_go(struct config *cfg, int argc, char **argv, struct config_error *err)
{
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *name, *eq, *value = NULL;
		const struct setting *s;
		char buf[128];
		size_t n;

		if (a[0] != '-' || a[1] == '\0')
			break;
		if (str_eq(a, "--")) {
			i++;
			break;
		}
		name = a + 1;
		if (*name == '-')
			name++;
		if (*name == '\0' || *name == '-' || *name == '=') {
			config_error_set(err, NULL, 0, NULL, "bad flag syntax: %s", a);
			return -EINVAL;
		}
		eq = strchr(name, '=');
		n = eq ? (size_t)(eq - name) : strlen(name);
		if (n >= sizeof buf) {
			config_error_set(err, NULL, 0, NULL,
			                 "flag provided but not defined: -%.64s", name);
			return -EINVAL;
		}
		memcpy(buf, name, n);
		buf[n] = '\0';
		if (eq)
			value = eq + 1;

		s = schema_find_flag(buf, cfg->tool, true);
		if (!s) {
			if (str_eq(buf, "h") || str_eq(buf, "help"))
				return FLAGS_HELP;
			config_error_set(err, NULL, 0, NULL, "flag provided but not defined: -%s",
			                 buf);
			return -EINVAL;
		}
		if (s->f.type == FT_BOOL) {
			bool b = true;

			/* A boolean never takes the next argument, as in Go. */
			if (value && parse_bool(value, &b) < 0) {
				config_error_set(err, NULL, 0, NULL,
				                 "invalid boolean value \"%.200s\" for -%s: "
				                 "expected true or false",
				                 value, buf);
				return -EINVAL;
			}
			*(bool *)field_ptr(&s->f, cfg) = b;
			continue;
		}
		if (!value) {
			if (i + 1 >= argc) {
				config_error_set(err, NULL, 0, NULL, "flag needs an argument: -%s",
				                 buf);
				return -EINVAL;
			}
			value = argv[++i];
		}
		if (apply_value(cfg, s, value, "-", err) < 0)
			return -EINVAL;
	}
	if (i < argc) {
		/* The original ignores arguments after the flags; a typo should not pass. */
		config_error_set(err, NULL, 0, NULL, "unexpected argument '%.200s'", argv[i]);
		return -EINVAL;
	}
	return FLAGS_OK;
}

/* The option a "--name" or "--no-name" argument refers to for TOOL. */
static const struct setting *find_long(enum drafter_tool tool, const char *name, bool *negated)
{
	const struct setting *s = schema_find_flag(name, tool, false);

	*negated = false;
	if (!s && str_startswith(name, "no-")) {
		s = schema_find_flag(name + 3, tool, false);
		if (s && s->f.type != FT_BOOL)
			return NULL;
		*negated = s != NULL;
	}
	return s;
}

static void suggest(enum drafter_tool tool, const char *name, char *buf, size_t len)
{
	unsigned best = 3;
	const char *found = NULL;

	buf[0] = '\0';
	for (size_t i = 0; i < schema_n_settings; i++) {
		const struct setting *s = &schema_settings[i];
		unsigned d;

		if (!s->flag || !(s->tools & TOOL_BIT(tool)))
			continue;
		d = schema_distance(name, s->flag);
		if (d < best) {
			best = d;
			found = s->flag;
		}
	}
	if (found)
		snprintf(buf, len, " (did you mean '--%s'?)", found);
}

/*
 * Walk the subcommand's arguments. With CFG NULL only -c and --help are
 * looked for (the first pass); otherwise every option is applied.
 */
static int walk_long(struct config *cfg, enum drafter_tool tool, int argc, char **argv,
                     const char **path, bool *help, struct config_error *err)
{
	const char *cmd = tool_name(tool);

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *eq, *value = NULL;
		const struct setting *s;
		char name[128], hint[128];
		bool negated;
		size_t n;

		if (str_eq(a, "--")) {
			if (i + 1 < argc) {
				config_error_set(err, NULL, 0, NULL,
				                 "unexpected argument '%.200s' for 'drafter %s'",
				                 argv[i + 1], cmd);
				return -EINVAL;
			}
			break;
		}
		if (str_eq(a, "-h") || str_eq(a, "--help")) {
			if (help)
				*help = true;
			continue;
		}
		if (str_eq(a, "-c") || str_eq(a, "--config")) {
			if (i + 1 >= argc) {
				config_error_set(err, NULL, 0, NULL,
				                 "option '%s' needs a file name", a);
				return -EINVAL;
			}
			if (path)
				*path = argv[i + 1];
			i++;
			continue;
		}
		if (str_startswith(a, "--config=")) {
			if (!a[9]) {
				config_error_set(err, NULL, 0, NULL,
				                 "option '--config' needs a file name");
				return -EINVAL;
			}
			if (path)
				*path = a + 9;
			continue;
		}
		if (str_eq(a, "-x") && tool == TOOL_PACKAGE) {
			if (cfg)
				cfg->package.extract = true;
			continue;
		}
		if (!str_startswith(a, "--")) {
			if (a[0] == '-' && a[1])
				config_error_set(err, NULL, 0, NULL,
				                 "unknown option '%.64s' for 'drafter %s'", a, cmd);
			else
				config_error_set(err, NULL, 0, NULL,
				                 "unexpected argument '%.200s' for 'drafter %s'", a,
				                 cmd);
			return -EINVAL;
		}
		eq = strchr(a + 2, '=');
		n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		if (n >= sizeof name)
			n = sizeof name - 1;
		memcpy(name, a + 2, n);
		name[n] = '\0';
		if (eq)
			value = eq + 1;
		s = find_long(tool, name, &negated);
		if (!s) {
			suggest(tool, name, hint, sizeof hint);
			config_error_set(err, NULL, 0, NULL,
			                 "unknown option '--%s' for 'drafter %s'%s", name, cmd,
			                 hint);
			return -EINVAL;
		}
		if (s->f.type == FT_BOOL) {
			bool b = !negated;

			if (value && (negated || parse_bool(value, &b) < 0)) {
				config_error_set(err, NULL, 0, NULL,
				                 "invalid value \"%.200s\" for option --%s: "
				                 "expected true or false",
				                 value, name);
				return -EINVAL;
			}
			if (cfg)
				*(bool *)field_ptr(&s->f, cfg) = b;
			continue;
		}
		if (!value) {
			if (i + 1 >= argc) {
				config_error_set(err, NULL, 0, NULL, "option '--%s' needs a value",
				                 name);
				return -EINVAL;
			}
			value = argv[++i];
		}
		if (cfg && apply_value(cfg, s, value, "--", err) < 0)
			return -EINVAL;
	}
	return 0;
}

int flags_scan(enum drafter_tool tool, int argc, char **argv, const char **path, bool *help,
               struct config_error *err)
{
	/* Help wins over any mistake on the line, as with most tools. */
	for (int i = 1; i < argc && !str_eq(argv[i], "--"); i++)
		if (str_eq(argv[i], "-h") || str_eq(argv[i], "--help")) {
			*help = true;
			return 0;
		}
	return walk_long(NULL, tool, argc, argv, path, help, err);
}

int flags_parse_long(struct config *cfg, int argc, char **argv, struct config_error *err)
{
	return walk_long(cfg, cfg->tool, argc, argv, NULL, NULL, err);
}

void flags_go_quote(const char *s, FILE *out)
{
	fputc('"', out);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		switch (c) {
		case '"':
			fputs("\\\"", out);
			break;
		case '\\':
			fputs("\\\\", out);
			break;
		case '\n':
			fputs("\\n", out);
			break;
		case '\t':
			fputs("\\t", out);
			break;
		case '\r':
			fputs("\\r", out);
			break;
		default:
			if (c < 0x20 || c == 0x7f)
				fprintf(out, "\\x%02x", c);
			else
				fputc(c, out);
		}
	}
	fputc('"', out);
}

static int cmp_flag(const void *a, const void *b)
{
	const struct setting *const *x = a, *const *y = b;
	return strcmp((*x)->flag, (*y)->flag);
}

/* The default of S for TOOL as Go prints it, or NULL for a zero value. */
static char *go_default(const struct setting *s, const struct config *def, bool *quoted)
{
	char buf[256];

	*quoted = true;
	switch (s->f.type) {
	case FT_DEVICES:
		return def->n_devices ? cfgjson_devices_string(def) : NULL;
	case FT_FORWARDS:
		return def->forward.n_forwards ? cfgjson_forwards_string(def) : NULL;
	case FT_STRING:
		if (field_is_zero(&s->f, def))
			return NULL;
		return xstrdup(*(char *const *)field_ptr(&s->f, (void *)def));
	case FT_DURATION:
		if (field_is_zero(&s->f, def))
			return NULL;
		*quoted = false;
		format_duration(*(const uint64_t *)field_ptr(&s->f, (void *)def), buf, sizeof buf);
		return xstrdup(buf);
	default:
		if (field_is_zero(&s->f, def))
			return NULL;
		*quoted = false;
		field_format_value(&s->f, def, buf, sizeof buf);
		return xstrdup(buf);
	}
}

void flags_usage_go(enum drafter_tool tool, const char *prog, FILE *out)
{
	const struct setting *list[128];
	struct config def;
	size_t n = 0;

	config_init(&def, tool);
	for (size_t i = 0; i < schema_n_settings && n < ARRAY_SIZE(list); i++)
		if (schema_settings[i].flag && (schema_settings[i].legacy & TOOL_BIT(tool)))
			list[n++] = &schema_settings[i];
	qsort(list, n, sizeof list[0], cmp_flag);

	fprintf(out, "Usage of %s:\n", prog);
	for (size_t i = 0; i < n; i++) {
		const struct setting *s = list[i];
		bool quoted;
		char *d;
		int len;

		len = fprintf(out, "  -%s", s->flag);
		if (s->gotype && *s->gotype)
			len += fprintf(out, " %s", s->gotype);
		/* Go puts the text of a one-letter boolean on the same line. */
		fputs(len <= 4 ? "\t" : "\n    \t", out);
		fputs(s->help, out);
		d = go_default(s, &def, &quoted);
		if (d) {
			fputs(" (default ", out);
			if (quoted)
				flags_go_quote(d, out);
			else
				fputs(d, out);
			fputc(')', out);
			free(d);
		}
		fputc('\n', out);
	}
	config_free(&def);
}

static void print_option(FILE *out, const char *spec, const char *help, const char *def)
{
	int len = fprintf(out, "  %s", spec);

	if (len > 36)
		fprintf(out, "\n%38s", "");
	else
		fprintf(out, "%*s", 38 - len, "");
	fputs(help, out);
	if (def)
		fprintf(out, " (default: %s)", def);
	fputc('\n', out);
}

void flags_usage_long(enum drafter_tool tool, FILE *out)
{
	struct config def;
	char spec[128], val[512];

	config_init(&def, tool);
	fprintf(out,
	        "Usage: drafter %s [-c FILE] [OPTIONS]\n"
	        "       %s [FLAGS]   (the original's flags; see '%s -h')\n"
	        "\n%s\n"
	        "\nSettings come from the config file (-c FILE, else ./drafter.conf, else\n"
	        "/etc/drafter/drafter.conf; see drafter.conf(5)); options override them.\n"
	        "\nOptions:\n",
	        tool_name(tool), tool_legacy_name(tool), tool_legacy_name(tool),
	        (unsigned)tool < TOOL__MAX ? tool_descriptions[tool] : "");
	print_option(out, "-c, --config FILE", "read settings from FILE", NULL);
	if (tool == TOOL_PACKAGE)
		print_option(out, "-x, --extract",
		             "extract the package into the devices' paths instead of creating it",
		             NULL);
	for (size_t i = 0; i < schema_n_settings; i++) {
		const struct setting *s = &schema_settings[i];
		const char *d = NULL;

		if (!s->flag || !(s->tools & TOOL_BIT(tool)))
			continue;
		if (tool == TOOL_PACKAGE && str_eq(s->flag, "extract"))
			continue;
		if (s->f.type == FT_BOOL) {
			snprintf(spec, sizeof spec, "    --%s, --no-%s", s->flag, s->flag);
			d = *(bool *)field_ptr(&s->f, &def) ? "true" : "false";
		} else {
			snprintf(spec, sizeof spec, "    --%s %s", s->flag,
			         s->arg ? s->arg : "VALUE");
			if (s->f.type != FT_DEVICES && s->f.type != FT_FORWARDS &&
			    !field_is_zero(&s->f, &def)) {
				field_format_value(&s->f, &def, val, sizeof val);
				d = val;
			}
		}
		print_option(out, spec, s->help, d);
	}
	print_option(out, "-h, --help", "show this help and exit", NULL);
	config_free(&def);
}

/*
 * Reading drafter.conf (libconfig syntax) into struct config. libconfig has
 * no schema, so every setting it hands back is checked against ours: unknown
 * keys are errors (with a "did you mean"), values are type- and
 * range-checked, and every error names the file, the line and the key.
 */
#include <config.h> /* autoconf's; "config.h" here would be core/config.h */

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <libconfig.h>

#include "core/config.h"
#include "core/schema.h"
#include "core/util.h"

#define MAX_FILE_SIZE (1024 * 1024)

static const char *const groups[] = {"nat",     "forward",   "vm",
                                     "package", "transport", "transport.tls"};

static void lc_destroy(config_t *lc)
{
	config_destroy(lc);
}

struct loader {
	struct config *cfg;
	const char *file;
	const char *dir;  /* where relative @include names are found */
	const char *text; /* the main file's content */
	struct config_error *err;
	char buf[1024];
};

/* The file a setting came from: the main file or an @include'd one. */
static const char *src_file(struct loader *l, const config_setting_t *s)
{
	const char *f = config_setting_source_file(s);

	if (!f || str_eq(f, l->file))
		return l->file;
	if (f[0] == '/')
		return f;
	snprintf(l->buf, sizeof l->buf, "%s/%s", l->dir, f);
	return l->buf;
}

/* Line LINE (from 1) of the file a setting came from, into BUF. */
static bool source_line(struct loader *l, const config_setting_t *s, char *buf, size_t len)
{
	const char *f = config_setting_source_file(s);
	int line = config_setting_source_line(s);

	if (!f || str_eq(f, l->file)) {
		const char *p = l->text;
		for (int i = 1; i < line && p; i++) {
			p = strchr(p, '\n');
			if (p)
				p++;
		}
		if (!p)
			return false;
		snprintf(buf, len, "%.*s", (int)strcspn(p, "\n"), p);
		return true;
	} else {
		_cleanup_fclose_ FILE *in = fopen(src_file(l, s), "re");
		for (int i = 1; in && fgets(buf, (int)len, in); i++)
			if (i == line)
				return true;
		return false;
	}
}

/*
 * libconfig 1.5 reads an integer without an L suffix with atoi(), so
 * 5000000000 silently becomes 705032704. Compare the value with the literal
 * in the file, so that such a number is an error instead of a surprise.
 */
static bool int_truncated(struct loader *l, const config_setting_t *s)
{
	const char *name = config_setting_name(s);
	char line[4096];
	bool seen = false;
	size_t n;

	if (config_setting_type(s) != CONFIG_TYPE_INT || !name ||
	    !source_line(l, s, line, sizeof line))
		return false;
	n = strlen(name);
	for (const char *p = line; (p = strstr(p, name)); p += n) {
		const char *q = p + n;
		long long v;
		char *end;

		if (p > line && (isalnum((unsigned char)p[-1]) || p[-1] == '_'))
			continue;
		while (*q == ' ' || *q == '\t')
			q++;
		if (*q != '=' && *q != ':')
			continue;
		q++;
		while (*q == ' ' || *q == '\t')
			q++;
		errno = 0;
		if (q[0] == '0' && (q[1] == 'x' || q[1] == 'X'))
			v = strtoll(q, &end, 16);
		else
			v = strtoll(q, &end, 10);
		if (end == q)
			continue;
		/* The same name may appear more than once on a line (list entries). */
		if (errno != ERANGE && v == config_setting_get_int(s))
			return false;
		seen = true;
	}
	return seen;
}

static void describe(const config_setting_t *s, char *buf, size_t len)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_STRING:
		snprintf(buf, len, "\"%.200s\"", config_setting_get_string(s));
		break;
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		snprintf(buf, len, "%lld", (long long)config_setting_get_int64(s));
		break;
	case CONFIG_TYPE_FLOAT:
		snprintf(buf, len, "%g", config_setting_get_float(s));
		break;
	case CONFIG_TYPE_BOOL:
		snprintf(buf, len, "%s", config_setting_get_bool(s) ? "true" : "false");
		break;
	case CONFIG_TYPE_GROUP:
		snprintf(buf, len, "a group");
		break;
	case CONFIG_TYPE_LIST:
		snprintf(buf, len, "a list");
		break;
	case CONFIG_TYPE_ARRAY:
		snprintf(buf, len, "an array");
		break;
	default:
		snprintf(buf, len, "nothing");
	}
}

static int bad(struct loader *l, const config_setting_t *s, const char *key, const char *fmt, ...)
    _printf_(4, 5);
static int bad(struct loader *l, const config_setting_t *s, const char *key, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	config_error_set(l->err, src_file(l, s), config_setting_source_line(s), key, "%s", msg);
	return -EINVAL;
}

/* Set field F of OBJ from libconfig setting S; KEY names it in messages. */
static int set_field(struct loader *l, const struct field *f, void *obj, const config_setting_t *s,
                     const char *key)
{
	char why[256], got[256];
	int type = config_setting_type(s);
	int r = -EINVAL;

	switch (type) {
	case CONFIG_TYPE_STRING:
		/* Text where text makes sense: strings, names, "500ms", "64KiB". */
		if (f->type != FT_BOOL && f->type != FT_U32 && f->type != FT_I32)
			r = field_set_text(f, obj, config_setting_get_string(s), false, why,
			                   sizeof why);
		break;
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		if (int_truncated(l, s))
			return bad(l, s, key,
			           "number too large for libconfig: write it as a string "
			           "(\"5s\", \"64KiB\") or with an L suffix");
		r = field_set_int(f, obj, config_setting_get_int64(s), why, sizeof why);
		break;
	case CONFIG_TYPE_BOOL:
		r = field_set_bool(f, obj, config_setting_get_bool(s), why, sizeof why);
		break;
	default:
		break;
	}
	if (r < 0) {
		field_expected(f, why, sizeof why);
		describe(s, got, sizeof got);
		return bad(l, s, key, "expected %s, got %s", why, got);
	}
	return 0;
}

/* "unknown key 'x'" with the closest known name when there is one. */
static int unknown(struct loader *l, const config_setting_t *s, const char *key,
                   const char *const *cands, size_t n)
{
	const char *name = config_setting_name(s);
	const char *best = NULL;
	unsigned bestd = 3;

	for (size_t i = 0; i < n; i++) {
		unsigned d = schema_distance(name, cands[i]);
		if (d < bestd) {
			bestd = d;
			best = cands[i];
		}
	}
	if (best)
		return bad(l, s, key, "unknown key (did you mean '%s'?)", best);
	return bad(l, s, key, "unknown key");
}

/* Known names one level below PREFIX ("" for the top level, "vm." ...). */
static size_t names_below(const char *prefix, const char **out, size_t max)
{
	size_t n = 0, plen = strlen(prefix);

	for (size_t i = 0; i < schema_n_settings && n < max; i++) {
		const char *k = schema_settings[i].f.key;
		if (str_startswith(k, prefix) && !strchr(k + plen, '.'))
			out[n++] = k + plen;
	}
	for (size_t i = 0; i < ARRAY_SIZE(groups) && n < max; i++)
		if (str_startswith(groups[i], prefix) && !strchr(groups[i] + plen, '.'))
			out[n++] = groups[i] + plen;
	return n;
}

static int load_list_entries(struct loader *l, const config_setting_t *list, const char *key,
                             const struct field *table, size_t ntable, size_t elem_size, size_t max,
                             void **out, size_t *nout);

static int load_devices(struct loader *l, const config_setting_t *s)
{
	struct cfg_device *devs = NULL;
	size_t n = 0;
	int r;

	r = load_list_entries(l, s, "devices", schema_device_fields, schema_n_device_fields,
	                      sizeof *devs, SCHEMA_MAX_DEVICES, (void **)&devs, &n);
	if (r < 0)
		return r;
	config_free_devices(l->cfg);
	l->cfg->devices = devs;
	l->cfg->n_devices = n;
	return 0;
}

static int load_forwards(struct loader *l, const config_setting_t *s)
{
	struct cfg_port_forward *fw = NULL;
	size_t n = 0;
	int r;

	r = load_list_entries(l, s, "forward.port_forwards", schema_forward_fields,
	                      schema_n_forward_fields, sizeof *fw, SCHEMA_MAX_FORWARDS,
	                      (void **)&fw, &n);
	if (r < 0)
		return r;
	config_free_forwards(l->cfg);
	l->cfg->forward.forwards = fw;
	l->cfg->forward.n_forwards = n;
	return 0;
}

/* One group of an entry (a device, a port forward); "s3" nests once. */
static int load_entry_group(struct loader *l, const config_setting_t *g, const char *key,
                            const char *prefix, const struct field *table, size_t ntable, void *obj)
{
	int n = config_setting_length(g);

	for (int i = 0; i < n; i++) {
		const config_setting_t *c = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(c);
		const char *cands[64];
		size_t nc = 0;
		char full[128], ckey[256];
		const struct field *f = NULL;
		int r;

		snprintf(full, sizeof full, "%s%s", prefix, name);
		snprintf(ckey, sizeof ckey, "%s.%s", key, full);
		if (!*prefix && str_eq(name, "s3") && table == schema_device_fields) {
			if (config_setting_type(c) != CONFIG_TYPE_GROUP)
				return bad(l, c, ckey, "expected a group { ... }");
			r = load_entry_group(l, c, key, "s3.", table, ntable, obj);
			if (r < 0)
				return r;
			continue;
		}
		for (size_t k = 0; k < ntable; k++)
			if (table[k].key && str_eq(table[k].key, full))
				f = &table[k];
		if (!f) {
			size_t plen = strlen(prefix);
			for (size_t k = 0; k < ntable && nc < ARRAY_SIZE(cands); k++)
				if (table[k].key && str_startswith(table[k].key, prefix) &&
				    !strchr(table[k].key + plen, '.'))
					cands[nc++] = table[k].key + plen;
			if (!*prefix && table == schema_device_fields)
				cands[nc++] = "s3";
			return unknown(l, c, ckey, cands, nc);
		}
		r = set_field(l, f, obj, c, ckey);
		if (r < 0)
			return r;
	}
	return 0;
}

static int load_list_entries(struct loader *l, const config_setting_t *list, const char *key,
                             const struct field *table, size_t ntable, size_t elem_size, size_t max,
                             void **out, size_t *nout)
{
	bool devices = table == schema_device_fields;
	int n, r = 0;
	char *arr;

	if (!config_setting_is_aggregate(list) || config_setting_type(list) == CONFIG_TYPE_GROUP)
		return bad(l, list, key, "expected a list ( { ... }, ... )");
	n = config_setting_length(list);
	if ((size_t)n > max)
		return bad(l, list, key, "more than %zu entries", max);
	arr = xcalloc(n ? (size_t)n : 1, elem_size);
	for (int i = 0; i < n && r == 0; i++) {
		const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
		void *obj = arr + (size_t)i * elem_size;
		char ekey[64];

		snprintf(ekey, sizeof ekey, "%s[%d]", key, i);
		if (devices)
			config_device_defaults(obj);
		if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
			r = bad(l, e, ekey, "expected a group { ... }");
			break;
		}
		r = load_entry_group(l, e, ekey, "", table, ntable, obj);
		if (r < 0)
			break;
		if (devices) {
			struct cfg_device *d = obj;
			if (str_empty(d->name)) {
				r = bad(l, e, ekey, "a device needs a name");
				break;
			}
			for (int j = 0; j < i; j++)
				if (str_eq(((struct cfg_device *)(void *)arr)[j].name, d->name)) {
					r = bad(l, e, ekey, "duplicate device name '%s'", d->name);
					break;
				}
			if (r == 0 && d->min_cycles > d->max_cycles)
				r = bad(l, e, ekey,
				        "min_cycles (%" PRIu32
				        ") is greater than max_cycles (%" PRIu32 ")",
				        d->min_cycles, d->max_cycles);
		} else {
			struct cfg_port_forward *p = obj;
			if (str_empty(p->netns) || !p->internal_port || str_empty(p->external_addr))
				r = bad(
				    l, e, ekey,
				    "a port forward needs netns, internal_port and external_addr");
		}
	}
	if (r < 0) {
		for (int i = 0; i < n; i++) {
			void *obj = arr + (size_t)i * elem_size;
			if (devices) {
				config_device_free(obj);
			} else {
				struct cfg_port_forward *p = obj;
				free(p->netns);
				free(p->external_addr);
			}
		}
		free(arr);
		return r;
	}
	*out = arr;
	*nout = (size_t)n;
	return 0;
}

static int load_group(struct loader *l, const config_setting_t *g, const char *prefix)
{
	int n = config_setting_length(g);

	for (int i = 0; i < n; i++) {
		const config_setting_t *c = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(c);
		const struct setting *s;
		char full[128];
		bool is_group = false;
		int r;

		snprintf(full, sizeof full, "%s%s", prefix, name);
		for (size_t k = 0; k < ARRAY_SIZE(groups); k++)
			is_group |= str_eq(groups[k], full);
		if (is_group) {
			char sub[sizeof full + 1];
			if (config_setting_type(c) != CONFIG_TYPE_GROUP)
				return bad(l, c, full, "expected a group { ... }");
			snprintf(sub, sizeof sub, "%s.", full);
			r = load_group(l, c, sub);
		} else if (str_eq(full, "devices")) {
			r = load_devices(l, c);
		} else if (str_eq(full, "forward.port_forwards")) {
			r = load_forwards(l, c);
		} else if ((s = schema_find_key(full))) {
			r = set_field(l, &s->f, l->cfg, c, full);
		} else {
			const char *cands[64];
			size_t nc = names_below(prefix, cands, ARRAY_SIZE(cands));
			r = unknown(l, c, full, cands, nc);
		}
		if (r < 0)
			return r;
	}
	return 0;
}

int config_load_file(struct config *cfg, const char *path, struct config_error *err)
{
	_cleanup_(lc_destroy) config_t lc;
	_cleanup_free_ char *dir = NULL, *text = NULL;
	_cleanup_fclose_ FILE *f = NULL;
	struct loader l = {.cfg = cfg, .file = path, .err = err};
	struct stat st;
	size_t got;

	/* libconfig's own init; ours is drafter_config_init() behind a macro. */
	(config_init)(&lc);

	f = fopen(path, "re");
	if (!f) {
		int e = errno;
		config_error_set(err, path, 0, NULL, "cannot read the file: %s", strerror(e));
		return -e;
	}
	if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
		config_error_set(err, path, 0, NULL, "not a regular file");
		return -EINVAL;
	}
	if (st.st_size > MAX_FILE_SIZE) {
		config_error_set(err, path, 0, NULL, "larger than %d bytes", MAX_FILE_SIZE);
		return -EFBIG;
	}
	text = xcalloc(1, (size_t)st.st_size + 1);
	got = fread(text, 1, (size_t)st.st_size, f);
	if (ferror(f)) {
		config_error_set(err, path, 0, NULL, "cannot read the file: %s", strerror(EIO));
		return -EIO;
	}
	text[got] = '\0';
	if (strlen(text) != got) {
		config_error_set(err, path, 0, NULL, "not a text file (it holds NUL bytes)");
		return -EINVAL;
	}
	dir = xstrdup(path);
	l.dir = dirname(dir);
	l.text = text;
	config_set_include_dir(&lc, l.dir);
	if (config_read_string(&lc, text) != CONFIG_TRUE) {
		const char *ef = config_error_file(&lc);
		char incl[1024];

		if (ef && ef[0] != '/') {
			snprintf(incl, sizeof incl, "%s/%s", l.dir, ef);
			ef = incl;
		}
		config_error_set(err, ef ? ef : path, config_error_line(&lc), NULL, "%s",
		                 config_error_text(&lc));
		return -EINVAL;
	}
	free(cfg->source);
	cfg->source = xstrdup(path);
	return load_group(&l, config_root_setting(&lc), "");
}

/*
 * --devices and --port-forwards: JSON values of the original's flags, read
 * with json-c's strict tokener so that a malformed value is reported with
 * the byte offset where it went wrong. Field names match case-insensitively,
 * as Go's decoder does; an unknown field is an error so that a typo does not
 * pass silently.
 */
#include <config.h> /* autoconf's; "config.h" here would be core/config.h */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "core/cfgjson.h"
#include "core/config.h"
#include "core/schema.h"
#include "core/util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct json_object *, json_object_put)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct json_tokener *, json_tokener_free)

static const char *json_kind(struct json_object *o)
{
	switch (json_object_get_type(o)) {
	case json_type_null:
		return "null";
	case json_type_boolean:
		return "a boolean";
	case json_type_double:
	case json_type_int:
		return "a number";
	case json_type_string:
		return "a string";
	case json_type_object:
		return "an object";
	case json_type_array:
		return "a list";
	}
	return "something else";
}

static int parse_text(const char *text, struct json_object **out, char *why, size_t whylen)
{
	_cleanup_(json_tokener_freep) struct json_tokener *tok = NULL;
	struct json_object *o;
	enum json_tokener_error jerr;
	size_t len = strlen(text);

	if (len > SCHEMA_MAX_JSON) {
		snprintf(why, whylen, "JSON value longer than %d bytes", SCHEMA_MAX_JSON);
		return -EINVAL;
	}
	tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, text, (int)len);
	jerr = json_tokener_get_error(tok);
	if (!o || jerr != json_tokener_success) {
		json_object_put(o);
		if (jerr == json_tokener_continue || jerr == json_tokener_success)
			snprintf(why, whylen,
			         "malformed JSON at offset %zu: unexpected end of input", len);
		else
			snprintf(why, whylen, "malformed JSON at offset %zu: %s",
			         json_tokener_get_parse_end(tok), json_tokener_error_desc(jerr));
		return -EINVAL;
	}
	if (json_tokener_get_parse_end(tok) < len) {
		json_object_put(o);
		snprintf(why, whylen,
		         "malformed JSON at offset %zu: unexpected data after the value",
		         json_tokener_get_parse_end(tok));
		return -EINVAL;
	}
	*out = o;
	return 0;
}

/* Set one field from a JSON value; WHAT names the entry in messages. */
static int set_json_field(const struct field *f, void *obj, struct json_object *v, const char *what,
                          char *why, size_t whylen)
{
	char want[256], inner[256];
	enum json_type t = json_object_get_type(v);
	int r = -EINVAL;

	if (f->type == FT_IGNORED || t == json_type_null)
		return 0;
	switch (f->type) {
	case FT_STRING:
	case FT_PROTOCOL:
		if (t == json_type_string)
			r = field_set_text(f, obj, json_object_get_string(v), false, inner,
			                   sizeof inner);
		break;
	case FT_BOOL:
		if (t == json_type_boolean)
			r = field_set_bool(f, obj, json_object_get_boolean(v), inner, sizeof inner);
		break;
	case FT_U16:
	case FT_SIZE32:
		/*
		 * The original takes internalPort as a string, and sizes as a
		 * number of bytes; both forms are accepted for both ("64KiB").
		 */
		if (t == json_type_string)
			r = field_set_text(f, obj, json_object_get_string(v), false, inner,
			                   sizeof inner);
		else if (t == json_type_int)
			r = field_set_int(f, obj, json_object_get_int64(v), inner, sizeof inner);
		break;
	case FT_DURATION:
		/* Nanoseconds as in the original; "500ms" strings are accepted as well. */
		if (t == json_type_string)
			r = field_set_text(f, obj, json_object_get_string(v), true, inner,
			                   sizeof inner);
		else if (t == json_type_int)
			r = field_set_int(f, obj, json_object_get_int64(v), inner, sizeof inner);
		break;
	default:
		if (t == json_type_int)
			r = field_set_int(f, obj, json_object_get_int64(v), inner, sizeof inner);
		break;
	}
	if (r < 0) {
		field_expected(f, want, sizeof want);
		if (t == json_type_string)
			snprintf(why, whylen, "field \"%s\" of %s: expected %s, got \"%.64s\"",
			         f->json, what, want, json_object_get_string(v));
		else if (t == json_type_int)
			snprintf(why, whylen, "field \"%s\" of %s: expected %s, got %" PRId64,
			         f->json, what, want, json_object_get_int64(v));
		else
			snprintf(why, whylen, "field \"%s\" of %s: expected %s, got %s", f->json,
			         what, want, json_kind(v));
	}
	return r;
}

static int parse_entry(struct json_object *e, const char *what, void *obj,
                       const struct field *(*find)(const char *, bool), char *why, size_t whylen)
{
	if (!json_object_is_type(e, json_type_object)) {
		snprintf(why, whylen, "%s: expected an object, got %s", what, json_kind(e));
		return -EINVAL;
	}
	json_object_object_foreach(e, k, v)
	{
		const struct field *f = find(k, true);
		int r;

		if (!f) {
			snprintf(why, whylen, "%s: unknown field \"%.64s\"", what, k);
			return -EINVAL;
		}
		r = set_json_field(f, obj, v, what, why, whylen);
		if (r < 0)
			return r;
	}
	return 0;
}

static int parse_list(const char *text, struct json_object **list, size_t max, const char *kind,
                      char *why, size_t whylen)
{
	int r = parse_text(text, list, why, whylen);

	if (r < 0)
		return r;
	if (!json_object_is_type(*list, json_type_array)) {
		snprintf(why, whylen, "expected a JSON list of %s, got %s", kind, json_kind(*list));
		json_object_put(*list);
		*list = NULL;
		return -EINVAL;
	}
	if (json_object_array_length(*list) > max) {
		snprintf(why, whylen, "more than %zu %s", max, kind);
		json_object_put(*list);
		*list = NULL;
		return -EINVAL;
	}
	return 0;
}

int cfgjson_parse_devices(const char *text, struct cfg_device **out, size_t *n, char *why,
                          size_t whylen)
{
	_cleanup_(json_object_putp) struct json_object *list = NULL;
	struct cfg_device *devs;
	size_t count;
	int r;

	r = parse_list(text, &list, SCHEMA_MAX_DEVICES, "devices", why, whylen);
	if (r < 0)
		return r;
	count = json_object_array_length(list);
	devs = xcalloc(count ? count : 1, sizeof *devs);
	for (size_t i = 0; i < count; i++)
		config_device_defaults(&devs[i]);
	for (size_t i = 0; i < count; i++) {
		char what[64];

		snprintf(what, sizeof what, "device %zu", i + 1);
		r = parse_entry(json_object_array_get_idx(list, i), what, &devs[i],
		                schema_find_device_field, why, whylen);
		if (r == 0 && str_empty(devs[i].name)) {
			snprintf(why, whylen, "%s: field \"name\" is missing", what);
			r = -EINVAL;
		}
		for (size_t j = 0; r == 0 && j < i; j++)
			if (str_eq(devs[j].name, devs[i].name)) {
				snprintf(why, whylen, "%s: duplicate device name \"%s\"", what,
				         devs[i].name);
				r = -EINVAL;
			}
		if (r == 0 && devs[i].min_cycles > devs[i].max_cycles) {
			snprintf(why, whylen,
			         "%s: minCycles (%" PRIu32 ") is greater than maxCycles (%" PRIu32
			         ")",
			         what, devs[i].min_cycles, devs[i].max_cycles);
			r = -EINVAL;
		}
		if (r < 0) {
			for (size_t j = 0; j < count; j++)
				config_device_free(&devs[j]);
			free(devs);
			return r;
		}
	}
	*out = devs;
	*n = count;
	return 0;
}

static void free_forwards(struct cfg_port_forward *fw, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(fw[i].netns);
		free(fw[i].external_addr);
	}
	free(fw);
}

int cfgjson_parse_forwards(const char *text, struct cfg_port_forward **out, size_t *n, char *why,
                           size_t whylen)
{
	_cleanup_(json_object_putp) struct json_object *list = NULL;
	struct cfg_port_forward *fw;
	size_t count;
	int r;

	r = parse_list(text, &list, SCHEMA_MAX_FORWARDS, "port forwards", why, whylen);
	if (r < 0)
		return r;
	count = json_object_array_length(list);
	fw = xcalloc(count ? count : 1, sizeof *fw);
	for (size_t i = 0; i < count; i++) {
		char what[64];

		snprintf(what, sizeof what, "port forward %zu", i + 1);
		r = parse_entry(json_object_array_get_idx(list, i), what, &fw[i],
		                schema_find_forward_field, why, whylen);
		if (r == 0 && (str_empty(fw[i].netns) || !fw[i].internal_port ||
		               str_empty(fw[i].external_addr))) {
			snprintf(why, whylen,
			         "%s: fields \"netns\", \"internalPort\" and \"externalAddr\" are "
			         "required",
			         what);
			r = -EINVAL;
		}
		if (r < 0) {
			free_forwards(fw, count);
			return r;
		}
	}
	*out = fw;
	*n = count;
	return 0;
}

/* The JSON fields each original tool's default --devices value shows. */
static const char *const *tool_device_fields(enum drafter_tool tool)
{
	static const char *const snapshot[] = {"name", "input", "output", NULL};
	static const char *const package[] = {"name", "path", NULL};
	static const char *const registry[] = {"name", "input", "blockSize", NULL};
	static const char *const peer[] = {
	    "name",           "base",      "overlay",   "state",         "blockSize", "expiry",
	    "maxDirtyBlocks", "minCycles", "maxCycles", "cycleThrottle", NULL};
	static const char *const terminate[] = {"name", "output", NULL};
	static const char *const none[] = {NULL};

	switch (tool) {
	case TOOL_SNAPSHOT:
		return snapshot;
	case TOOL_PACKAGE:
	case TOOL_RUN:
		return package;
	case TOOL_REGISTRY:
		return registry;
	case TOOL_PEER:
		return peer;
	case TOOL_TERMINATE:
		return terminate;
	default:
		return none;
	}
}

static struct json_object *field_to_json(const struct field *f, const void *obj)
{
	const void *p = (const char *)obj + f->offset;

	switch (f->type) {
	case FT_STRING: {
		const char *s = *(char *const *)p;
		return json_object_new_string(s ? s : "");
	}
	case FT_BOOL:
		return json_object_new_boolean(*(const bool *)p);
	case FT_U32:
	case FT_SIZE32:
		return json_object_new_int64(*(const uint32_t *)p);
	case FT_DURATION:
		return json_object_new_int64((int64_t) * (const uint64_t *)p);
	case FT_U16: {
		char buf[8];
		snprintf(buf, sizeof buf, "%" PRIu16, *(const uint16_t *)p);
		return json_object_new_string(buf);
	}
	case FT_PROTOCOL:
		return json_object_new_string(schema_protocol_name(*(const enum cfg_protocol *)p));
	default:
		return json_object_new_null();
	}
}

static char *to_string(struct json_object *o)
{
	return xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	                                                     JSON_C_TO_STRING_NOSLASHESCAPE));
}

char *cfgjson_devices_string(const struct config *cfg)
{
	_cleanup_(json_object_putp) struct json_object *list = json_object_new_array();
	const char *const *names = tool_device_fields(cfg->tool);

	for (size_t i = 0; i < cfg->n_devices; i++) {
		struct json_object *o = json_object_new_object();
		for (size_t k = 0; names[k]; k++) {
			const struct field *f = schema_find_device_field(names[k], true);
			json_object_object_add(o, names[k], field_to_json(f, &cfg->devices[i]));
		}
		json_object_array_add(list, o);
	}
	return to_string(list);
}

char *cfgjson_forwards_string(const struct config *cfg)
{
	_cleanup_(json_object_putp) struct json_object *list = json_object_new_array();

	for (size_t i = 0; i < cfg->forward.n_forwards; i++) {
		struct json_object *o = json_object_new_object();
		for (size_t k = 0; k < schema_n_forward_fields; k++) {
			const struct field *f = &schema_forward_fields[k];
			json_object_object_add(o, f->json,
			                       field_to_json(f, &cfg->forward.forwards[i]));
		}
		json_object_array_add(list, o);
	}
	return to_string(list);
}

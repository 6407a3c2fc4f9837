/*
 * The JSON values of the original's flags: --devices and --port-forwards.
 * Parsing reports a malformed value with its byte offset and a wrong type
 * with the field's name; rendering produces the original's default strings
 * for the Go-style usage.
 */
#ifndef DRAFTER_CFGJSON_H
#define DRAFTER_CFGJSON_H

#include <stddef.h>

#include "core/config.h"

/*
 * Parse a JSON list of devices. Unset fields get the device defaults.
 * -EINVAL with the reason in WHY. On success *OUT (n entries) is owned by
 * the caller (config_device_free each, then free).
 */
int cfgjson_parse_devices(const char *text, struct cfg_device **out, size_t *n, char *why,
                          size_t whylen);
int cfgjson_parse_forwards(const char *text, struct cfg_port_forward **out, size_t *n, char *why,
                           size_t whylen);

/* The devices of CFG as JSON with the fields cfg->tool's original takes. */
char *cfgjson_devices_string(const struct config *cfg);
char *cfgjson_forwards_string(const struct config *cfg);

#endif

/*
 * Host side of the guest agent: the original's panrpc wire format, one JSON
 * object per line. The host calls BeforeSuspend/AfterResume and matches the
 * response by call id; empty lines (the guest announcing that it reopened a
 * virtio-serial port) and unrelated messages are skipped.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <json-c/json.h>

#include "core/io.h"
#include "core/log.h"
#include "core/util.h"
#include "core/vm/vm.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put)

/* A version 4 UUID, the call ids the original's host uses. */
static int new_call_id(char id[37])
{
	uint8_t b[16];
	int r = random_bytes(b, sizeof b);

	if (r < 0)
		return r;
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(id, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
		 b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
	return 0;
}

char *vm_agent_request(const char *id, const char *function)
{
	_cleanup_(json_object_putp) json_object *root = json_object_new_object();
	json_object *req = json_object_new_object();
	char *s;

	json_object_object_add(req, "call", json_object_new_string(id));
	json_object_object_add(req, "function", json_object_new_string(function));
	json_object_object_add(req, "args", json_object_new_array());
	json_object_object_add(root, "request", req);
	json_object_object_add(root, "response", NULL);
	if (asprintf(&s, "%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN)) < 0)
		return NULL;
	return s;
}

int vm_agent_parse_response(const char *line, const char *id, char *err, size_t errlen)
{
	_cleanup_(json_object_putp) json_object *root = NULL;
	json_object *resp, *call, *e;

	root = json_tokener_parse(line);
	if (!root || !json_object_is_type(root, json_type_object))
		return -EINVAL;
	if (!json_object_object_get_ex(root, "response", &resp) || !resp)
		return 0; /* a request from the guest, or null: not for us */
	if (!json_object_is_type(resp, json_type_object))
		return -EINVAL;
	if (!json_object_object_get_ex(resp, "call", &call) || !json_object_is_type(call, json_type_string) ||
	    !str_eq(json_object_get_string(call), id))
		return 0;
	if (err && errlen)
		err[0] = 0;
	if (json_object_object_get_ex(resp, "err", &e) && e) {
		if (!json_object_is_type(e, json_type_string))
			return -EINVAL;
		if (err && errlen)
			snprintf(err, errlen, "%s", json_object_get_string(e));
	}
	return 1;
}

int vm_agent_call(int fd, int pidfd, const char *function, uint64_t deadline_ns, char *err, size_t errlen)
{
	_cleanup_free_ char *req = NULL, *buf = NULL;
	char id[37];
	size_t len = 0;
	bool skipping = false; /* inside an over-long line we are dropping */
	int r;

	if (err && errlen)
		err[0] = 0;
	r = new_call_id(id);
	if (r < 0)
		return r;
	req = vm_agent_request(id, function);
	if (!req)
		return -ENOMEM;
	r = send_all(fd, req, strlen(req));
	if (r < 0)
		return r == -EPIPE ? -ECONNRESET : r;
	log_debug("agent: called %s (%s)", function, id);

	buf = xcalloc(1, VM_AGENT_MAX_LINE + 1);
	for (;;) {
		char *nl;
		ssize_t n;

		r = vm_wait_readable(fd, pidfd, deadline_ns);
		if (r < 0)
			return r;
		n = recv(fd, buf + len, VM_AGENT_MAX_LINE - len, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return errno == ECONNRESET ? -ECONNRESET : -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		len += (size_t)n;
		buf[len] = 0;
		while ((nl = memchr(buf, '\n', len))) {
			size_t linelen = (size_t)(nl - buf);
			*nl = 0;
			if (!skipping && linelen > 0) {
				r = vm_agent_parse_response(buf, id, err, errlen);
				if (r < 0)
					log_debug("agent: ignoring a line that is not JSON");
				if (r == 1)
					return err && errlen && err[0] ? -EREMOTEIO : 0;
			}
			skipping = false;
			memmove(buf, nl + 1, len - linelen - 1);
			len -= linelen + 1;
			buf[len] = 0;
		}
		if (len == VM_AGENT_MAX_LINE) {
			/* A line longer than the limit cannot be a response of ours. */
			skipping = true;
			len = 0;
		}
	}
}

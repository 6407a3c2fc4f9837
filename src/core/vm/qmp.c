/*
 * QMP client for the QEMU driver. QEMU's monitor is on one end of a
 * socketpair that drafter passes to it at start, so there is no socket path
 * to wait for or to leave behind.
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
#include "core/vm/qmp.h"
#include "core/vm/vm.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put)

/* Read one line (without the newline) into a json object. */
static int read_msg(struct qmp *q, json_object **out, uint64_t deadline_ns)
{
	for (;;) {
		char *nl = q->len ? memchr(q->buf, '\n', q->len) : NULL;
		if (nl) {
			size_t l = (size_t)(nl - q->buf);
			*nl = 0;
			json_object *o = l ? json_tokener_parse(q->buf) : NULL;
			memmove(q->buf, nl + 1, q->len - l - 1);
			q->len -= l + 1;
			if (l == 0)
				continue;
			if (!o)
				return -EBADMSG;
			*out = o;
			return 0;
		}
		if (q->len >= QMP_MAX_LINE)
			return -E2BIG;
		int r = vm_wait_readable(q->fd, -1, deadline_ns);
		if (r < 0)
			return r;
		ssize_t n = recv(q->fd, q->buf + q->len, QMP_MAX_LINE - q->len, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		q->len += (size_t)n;
	}
}

/* When QEMU sent an event (realtime, ns), 0 if it does not say. */
static uint64_t event_time(json_object *msg)
{
	json_object *ts, *sec, *usec;

	if (!json_object_object_get_ex(msg, "timestamp", &ts) || !json_object_object_get_ex(ts, "seconds", &sec) ||
	    !json_object_object_get_ex(ts, "microseconds", &usec) || json_object_get_int64(sec) <= 0)
		return 0;
	return (uint64_t)json_object_get_int64(sec) * 1000000000ULL + (uint64_t)json_object_get_int64(usec) * 1000ULL;
}

/* Remember the last migration status: its event may overtake a command's answer. */
static void note_event(struct qmp *q, json_object *msg)
{
	json_object *ev, *data, *st;
	uint64_t t = event_time(msg);

	if (!json_object_object_get_ex(msg, "event", &ev))
		return;
	log_debug("qmp: event %s at %.6f", json_object_get_string(ev), (double)t / 1e9);
	if (str_eq(json_object_get_string(ev), "STOP")) {
		q->stop_ns = t;
		q->before_stop_ns = q->last_event_ns;
		q->resumed = false;
	} else if (str_eq(json_object_get_string(ev), "RESUME")) {
		q->resumed = true;
	}
	q->last_event_ns = t;
	if (str_eq(json_object_get_string(ev), "MIGRATION") && json_object_object_get_ex(msg, "data", &data) &&
	    json_object_object_get_ex(data, "status", &st))
		snprintf(q->mig_status, sizeof q->mig_status, "%s", json_object_get_string(st));
}

int qmp_open(struct qmp *q, int fd, int pidfd, uint64_t deadline_ns)
{
	_cleanup_(json_object_putp) json_object *greeting = NULL;
	char err[256];
	int r;

	q->fd = fd;
	q->pidfd = pidfd;
	q->len = 0;
	q->mig_status[0] = 0;
	q->buf = xcalloc(1, QMP_MAX_LINE + 1);
	r = read_msg(q, &greeting, deadline_ns);
	if (r < 0)
		return r;
	if (!json_object_object_get_ex(greeting, "QMP", NULL))
		return -EPROTO;
	return qmp_call(q, "qmp_capabilities", NULL, -1, NULL, err, sizeof err, deadline_ns);
}

void qmp_close(struct qmp *q)
{
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -EBADF;
	free(q->buf);
	q->buf = NULL;
	q->len = 0;
}

static int send_line(struct qmp *q, const char *line, int send_fd)
{
	size_t len = strlen(line);
	struct iovec iov = { .iov_base = (void *)line, .iov_len = len };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (send_fd >= 0) {
		memset(&u, 0, sizeof u);
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof u.buf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &send_fd, sizeof(int));
	}
	/* The descriptor travels with the first byte; the rest follows plainly. */
	do
		n = sendmsg(q->fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return send_all(q->fd, line + n, len - (size_t)n);
}

int qmp_call(struct qmp *q, const char *cmd, json_object *args, int send_fd, json_object **ret, char *err,
	     size_t errlen, uint64_t deadline_ns)
{
	_cleanup_(json_object_putp) json_object *req = json_object_new_object();
	_cleanup_free_ char *line = NULL;
	int r;

	if (err && errlen)
		err[0] = 0;
	json_object_object_add(req, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(req, "arguments", json_object_get(args));
	if (asprintf(&line, "%s\n", json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN)) < 0)
		return -ENOMEM;
	r = send_line(q, line, send_fd);
	if (r < 0)
		return r;
	for (;;) {
		_cleanup_(json_object_putp) json_object *msg = NULL;
		json_object *v;

		r = read_msg(q, &msg, deadline_ns);
		if (r < 0)
			return r;
		if (json_object_object_get_ex(msg, "event", &v)) {
			note_event(q, msg);
			continue;
		}
		if (json_object_object_get_ex(msg, "return", &v)) {
			if (ret)
				*ret = json_object_get(v);
			return 0;
		}
		if (json_object_object_get_ex(msg, "error", &v)) {
			json_object *desc;
			if (err && errlen && json_object_object_get_ex(v, "desc", &desc))
				snprintf(err, errlen, "%s", json_object_get_string(desc));
			log_debug("qmp: %s failed: %s", cmd, err ? err : "");
			return -EIO;
		}
	}
}

int qmp_callf(struct qmp *q, const char *cmd, const char *args_json, char *err, size_t errlen, uint64_t deadline_ns)
{
	_cleanup_(json_object_putp) json_object *args = NULL;

	if (args_json) {
		args = json_tokener_parse(args_json);
		if (!args)
			return -EINVAL;
	}
	return qmp_call(q, cmd, args, -1, NULL, err, errlen, deadline_ns);
}

int qmp_wait_migration(struct qmp *q, char *err, size_t errlen, uint64_t deadline_ns)
{
	/* The "events" capability makes QEMU send MIGRATION events; wait for the last one. */
	for (;;) {
		_cleanup_(json_object_putp) json_object *msg = NULL;
		int r;

		if (str_eq(q->mig_status, "completed"))
			return 0;
		if (str_eq(q->mig_status, "failed") || str_eq(q->mig_status, "cancelled")) {
			_cleanup_(json_object_putp) json_object *ret = NULL;
			json_object *e;

			if (err && errlen)
				snprintf(err, errlen, "%s", q->mig_status);
			r = qmp_call(q, "query-migrate", NULL, -1, &ret, NULL, 0, deadline_ns);
			if (r == 0 && err && errlen && json_object_object_get_ex(ret, "error-desc", &e))
				snprintf(err, errlen, "%s", json_object_get_string(e));
			return -EIO;
		}
		r = read_msg(q, &msg, deadline_ns);
		if (r < 0)
			return r;
		note_event(q, msg);
	}
}

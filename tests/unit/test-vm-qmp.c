/*
 * The QMP client against a scripted monitor on a socketpair: greeting and
 * capabilities, answers matched past interleaved events, error texts, a
 * MIGRATION event that overtakes the command's answer, the time stamps of a
 * running guest's migration (STOP and the event before it), RESUME, a
 * failed migration's reason, descriptor passing with getfd, an over-long line and a monitor
 * that hangs up.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/util.h"
#include "core/vm/qmp.h"
#include "core/vm/vm.h"
#include "tests/tap.h"

#define SEC 1000000000ULL

struct monitor {
	int fd;
	int passed_fd;     /* descriptor received with getfd */
	char passed[32];   /* what was read from it */
	bool huge;         /* answer the second command with an over-long line */
};

static void say(int fd, const char *s)
{
	(void)!write(fd, s, strlen(s));
}

/* Read one command line; also collect a descriptor passed along with it. */
static int read_cmd(struct monitor *m, char *buf, size_t len)
{
	size_t n = 0;

	while (n < len - 1) {
		char c;
		union {
			char b[CMSG_SPACE(sizeof(int))];
			struct cmsghdr a;
		} u;
		struct iovec iov = { .iov_base = &c, .iov_len = 1 };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b };
		ssize_t r = recvmsg(m->fd, &mh, 0);
		if (r <= 0)
			return -1;
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		if (cm && cm->cmsg_type == SCM_RIGHTS)
			memcpy(&m->passed_fd, CMSG_DATA(cm), sizeof(int));
		if (c == '\n')
			break;
		buf[n++] = c;
	}
	buf[n] = 0;
	return 0;
}

static void *monitor_main(void *arg)
{
	struct monitor *m = arg;
	char cmd[4096];
	int count = 0;

	say(m->fd, "{\"QMP\": {\"version\": {}, \"capabilities\": [\"oob\"]}}\n");
	while (read_cmd(m, cmd, sizeof cmd) == 0) {
		count++;
		if (strstr(cmd, "qmp_capabilities")) {
			say(m->fd, "{\"return\": {}}\n");
		} else if (strstr(cmd, "\"stop\"")) {
			/* An event before the answer. */
			say(m->fd, "{\"event\": \"STOP\", \"timestamp\": {}}\n{\"return\": {}}\n");
		} else if (strstr(cmd, "bogus")) {
			say(m->fd, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command bogus has not been found\"}}\n");
		} else if (strstr(cmd, "getfd")) {
			if (m->passed_fd >= 0) {
				ssize_t n = read(m->passed_fd, m->passed, sizeof m->passed - 1);
				if (n > 0)
					m->passed[n] = 0;
			}
			say(m->fd, "{\"return\": {}}\n");
		} else if (strstr(cmd, "fd:good")) {
			/* The end of the migration overtakes the command's own answer. */
			say(m->fd, "{\"event\": \"MIGRATION\", \"data\": {\"status\": \"setup\"}}\n"
				   "{\"event\": \"MIGRATION\", \"data\": {\"status\": \"completed\"}}\n"
				   "{\"return\": {}}\n");
		} else if (strstr(cmd, "fd:running")) {
			/* QEMU's migrate of a running guest: set up, then STOP, then the state. */
			say(m->fd, "{\"return\": {}}\n"
				   "{\"timestamp\": {\"seconds\": 100, \"microseconds\": 100}, \"event\": \"MIGRATION\", \"data\": {\"status\": \"setup\"}}\n"
				   "{\"timestamp\": {\"seconds\": 100, \"microseconds\": 300}, \"event\": \"MIGRATION\", \"data\": {\"status\": \"active\"}}\n"
				   "{\"timestamp\": {\"seconds\": 100, \"microseconds\": 450}, \"event\": \"STOP\"}\n"
				   "{\"timestamp\": {\"seconds\": 100, \"microseconds\": 900}, \"event\": \"MIGRATION\", \"data\": {\"status\": \"completed\"}}\n");
		} else if (strstr(cmd, "\"cont\"")) {
			say(m->fd, "{\"timestamp\": {\"seconds\": 101, \"microseconds\": 0}, \"event\": \"RESUME\"}\n{\"return\": {}}\n");
		} else if (strstr(cmd, "fd:bad")) {
			say(m->fd, "{\"return\": {}}\n");
			say(m->fd, "{\"event\": \"MIGRATION\", \"data\": {\"status\": \"active\"}}\n"
				   "{\"event\": \"MIGRATION\", \"data\": {\"status\": \"failed\"}}\n");
		} else if (strstr(cmd, "query-migrate")) {
			say(m->fd, "{\"return\": {\"status\": \"failed\", \"error-desc\": \"Unable to write to socket: Broken pipe\"}}\n");
		} else if (strstr(cmd, "huge")) {
			size_t len = QMP_MAX_LINE + 10;
			char *big = xcalloc(1, len + 1);
			memset(big, 'x', len);
			(void)!write(m->fd, big, len);
			free(big);
		} else if (strstr(cmd, "hangup")) {
			break;
		} else {
			say(m->fd, "{\"return\": {}}\n");
		}
	}
	shutdown(m->fd, SHUT_RDWR);
	return NULL;
}

int main(void)
{
	struct monitor m = { .passed_fd = -1 };
	struct qmp q = { .fd = -1 };
	pthread_t th;
	int sv[2], pfd[2];
	char err[256];

	signal(SIGPIPE, SIG_IGN);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 1;
	m.fd = sv[1];
	pthread_create(&th, NULL, monitor_main, &m);

	is_int(qmp_open(&q, sv[0], -1, now_ns() + 5 * SEC), 0, "greeting read, capabilities negotiated");
	is_int(qmp_callf(&q, "stop", NULL, err, sizeof err, now_ns() + 5 * SEC), 0, "answer found past an event");
	is_int(qmp_callf(&q, "bogus", NULL, err, sizeof err, now_ns() + 5 * SEC), -EIO, "error answer");
	is_str(err, "The command bogus has not been found", "error text kept");
	is_int(qmp_callf(&q, "stop", "{not json", err, sizeof err, now_ns() + 5 * SEC), -EINVAL, "bad arguments refused locally");

	ok(pipe2(pfd, O_CLOEXEC) == 0 && write(pfd[1], "state bytes", 11) == 11, "a pipe with data");
	json_object *args = json_object_new_object();
	json_object_object_add(args, "fdname", json_object_new_string("state"));
	is_int(qmp_call(&q, "getfd", args, pfd[0], NULL, err, sizeof err, now_ns() + 5 * SEC), 0, "getfd with a descriptor");
	json_object_put(args);
	is_str(m.passed, "state bytes", "the descriptor arrived and reads the pipe");

	q.mig_status[0] = 0;
	is_int(qmp_callf(&q, "migrate", "{\"uri\":\"fd:good\"}", err, sizeof err, now_ns() + 5 * SEC), 0, "migrate started");
	is_int(qmp_wait_migration(&q, err, sizeof err, now_ns() + 5 * SEC), 0,
	       "completion seen although its event came before the answer");
	q.mig_status[0] = 0;
	ok(!q.resumed, "no RESUME yet");
	is_int(qmp_callf(&q, "cont", NULL, err, sizeof err, now_ns() + 5 * SEC), 0, "cont");
	ok(q.resumed, "RESUME noted");
	is_int(qmp_callf(&q, "migrate", "{\"uri\":\"fd:running\"}", err, sizeof err, now_ns() + 5 * SEC), 0,
	       "migrate of a running guest started");
	is_int(qmp_wait_migration(&q, err, sizeof err, now_ns() + 5 * SEC), 0, "and completed");
	ok(q.stop_ns == 100000450000ULL, "STOP's time stamp kept (%llu)", (unsigned long long)q.stop_ns);
	ok(q.before_stop_ns == 100000300000ULL, "and the one of the event before it (%llu)",
	   (unsigned long long)q.before_stop_ns);
	ok(!q.resumed, "STOP undoes RESUME");
	q.mig_status[0] = 0;
	is_int(qmp_callf(&q, "migrate", "{\"uri\":\"fd:bad\"}", err, sizeof err, now_ns() + 5 * SEC), 0, "second migrate started");
	is_int(qmp_wait_migration(&q, err, sizeof err, now_ns() + 5 * SEC), -EIO, "failed migration");
	is_str(err, "Unable to write to socket: Broken pipe", "its reason from query-migrate");

	is_int(qmp_callf(&q, "huge", NULL, err, sizeof err, now_ns() + 5 * SEC), -E2BIG, "over-long line refused");
	qmp_close(&q);
	pthread_join(th, NULL);
	close(sv[1]);

	/* A monitor that hangs up. */
	struct monitor m2 = { .passed_fd = -1 };
	struct qmp q2 = { .fd = -1 };
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 1;
	m2.fd = sv[1];
	pthread_create(&th, NULL, monitor_main, &m2);
	is_int(qmp_open(&q2, sv[0], -1, now_ns() + 5 * SEC), 0, "second monitor");
	is_int(qmp_callf(&q2, "hangup", NULL, err, sizeof err, now_ns() + 5 * SEC), -ECONNRESET, "hang-up seen");
	qmp_close(&q2);
	pthread_join(th, NULL);
	close(sv[1]);
	if (m.passed_fd >= 0)
		close(m.passed_fd);
	close(pfd[0]);
	close(pfd[1]);
	return done_testing();
}
